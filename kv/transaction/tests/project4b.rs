//! Graded suite of lab 4b: the Percolator commands `KvGet`, `KvPrewrite`
//! and `KvCommit` of `TxnStore`, and their latches.
//!
//! Each test builds the column families by hand in a `MemStorage` (the
//! exact byte layout of `docs/src/lab4-transactions.md`: values in
//! `default` under the start ts, locks in `lock` under the raw key, write
//! records in `write` under the commit ts), runs one or more commands
//! through a `TxnStore` over that storage, and checks the response and the
//! exact contents of the column families (or that nothing was written).

use std::collections::BTreeSet;
use std::sync::Arc;

use tinykv_engine::Cf;
use tinykv_proto::kvrpcpb::{
    CommitRequest, CommitResponse, GetRequest, GetResponse, KeyError, LockInfo, Mutation, Op,
    PrewriteRequest, PrewriteResponse, WriteConflict,
};
use tinykv_storage::Modify;
use tinykv_transaction::codec::{decode_user_key, encode_key};
use tinykv_transaction::mem_storage::Pairs;
use tinykv_transaction::{Lock, MemStorage, TxnStore, Write, WriteKind};

// ----- helpers ---------------------------------------------------------------

const DOC: &str = "see docs/src/lab4-transactions.md, \"Lab 4b\"";

/// Asserts `got == want`; the message names the situation, what was
/// expected, what happened, and the chapter.
macro_rules! check_eq {
    ($got:expr, $want:expr, $($what:tt)+) => {{
        let (got, want) = (&$got, &$want);
        assert!(
            got == want,
            "{}: expected {:?}, got {:?}; {}",
            format_args!($($what)+),
            want,
            got,
            DOC
        );
    }};
}

/// An empty storage and a `TxnStore` over it (the two share the data).
fn setup() -> (MemStorage, TxnStore) {
    let s = MemStorage::new();
    let store = TxnStore::new(Arc::new(s.clone()));
    (s, store)
}

/// A `Put` mutation of `key` to `value`.
fn put_req(key: &[u8], value: &[u8]) -> Mutation {
    Mutation { op: Op::Put as i32, key: key.to_vec(), value: value.to_vec() }
}

/// A `Del` mutation of `key`.
fn del_req(key: &[u8]) -> Mutation {
    Mutation { op: Op::Del as i32, key: key.to_vec(), value: Vec::new() }
}

fn prewrite(
    store: &TxnStore,
    muts: Vec<Mutation>,
    primary: &[u8],
    start: u64,
    ttl: u64,
) -> PrewriteResponse {
    store.kv_prewrite(&PrewriteRequest {
        mutations: muts,
        primary_lock: primary.to_vec(),
        start_version: start,
        lock_ttl: ttl,
        ..Default::default()
    })
}

fn commit(store: &TxnStore, keys: &[&[u8]], start: u64, commit: u64) -> CommitResponse {
    store.kv_commit(&CommitRequest {
        start_version: start,
        keys: keys.iter().map(|k| k.to_vec()).collect(),
        commit_version: commit,
        ..Default::default()
    })
}

fn get(store: &TxnStore, key: &[u8], version: u64) -> GetResponse {
    store.kv_get(&GetRequest { key: key.to_vec(), version, ..Default::default() })
}

/// The lock of the transaction started at `ts` on `key`, as stored.
fn lock_of(primary: &[u8], ts: u64, ttl: u64, kind: WriteKind) -> Lock {
    Lock { primary: primary.to_vec(), ts, ttl, kind }
}

/// What a prewrite of `key = value` by the txn started at `start` leaves:
/// the value in `default` and a Put lock.
fn prewritten_put(s: &MemStorage, key: &[u8], value: &[u8], primary: &[u8], start: u64) {
    s.put_prewritten(key, value, &lock_of(primary, start, 100, WriteKind::Put));
}

fn pair(key: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (key.to_vec(), value.to_vec())
}

fn no_pairs() -> Pairs {
    Vec::new()
}

fn no_writes() -> Vec<Modify> {
    Vec::new()
}

fn locked_info(primary: &[u8], ts: u64, key: &[u8], ttl: u64) -> KeyError {
    KeyError {
        locked: Some(LockInfo {
            primary_lock: primary.to_vec(),
            lock_version: ts,
            key: key.to_vec(),
            lock_ttl: ttl,
        }),
        ..Default::default()
    }
}

fn value_resp(value: &[u8]) -> GetResponse {
    GetResponse { value: value.to_vec(), ..Default::default() }
}

fn not_found() -> GetResponse {
    GetResponse { not_found: true, ..Default::default() }
}

fn ok_prewrite() -> PrewriteResponse {
    PrewriteResponse::default()
}

fn ok_commit() -> CommitResponse {
    CommitResponse::default()
}

// ----- KvGet -----------------------------------------------------------------

/// A value committed before the read's version is returned, and KvGet
/// writes nothing.
#[test]
fn get_value_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"v", 5, 6);
    s.clear_written();
    check_eq!(get(&store, b"k", 10), value_resp(b"v"), "KvGet(k, 10), k = v committed at 6");
    check_eq!(s.written(), no_writes(), "KvGet must write nothing");
}

/// A value is visible at exactly its commit ts and not just below it.
#[test]
fn get_value_at_its_ts_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"v", 5, 6);
    check_eq!(get(&store, b"k", 6), value_resp(b"v"), "KvGet(k, 6), k = v committed at 6");
    check_eq!(get(&store, b"k", 5), not_found(), "KvGet(k, 5), k = v started 5, committed at 6");
}

/// Reading an empty storage answers not_found, no value, no error.
#[test]
fn get_empty_4b() {
    let (_s, store) = setup();
    check_eq!(get(&store, b"k", 10), not_found(), "KvGet(k, 10) on an empty storage");
}

/// A key never written answers not_found even when other keys are written.
#[test]
fn get_none_4b() {
    let (s, store) = setup();
    s.put_committed(b"k1", b"v1", 1, 2);
    s.put_committed(b"k3", b"v3", 1, 2);
    s.put_committed(b"k2a", b"v2a", 1, 2);
    check_eq!(get(&store, b"k2", 10), not_found(), "KvGet(k2, 10), only k1, k2a, k3 written");
}

/// With several versions (and a rollback), each read version sees the
/// newest write committed at or before it.
#[test]
fn get_versions_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"v2", 1, 2);
    s.put_committed(b"k", b"v5", 4, 5);
    s.put_write_record(b"k", WriteKind::Rollback, 6, 6);
    s.put_committed(b"k", b"v9", 7, 9);
    check_eq!(get(&store, b"k", 1), not_found(), "KvGet(k, 1), first commit at 2");
    for (version, want) in [(2, "v2"), (3, "v2"), (4, "v2"), (5, "v5"), (6, "v5"), (8, "v5")] {
        check_eq!(
            get(&store, b"k", version),
            value_resp(want.as_bytes()),
            "KvGet(k, {version}), commits: v2@2, v5@5, rollback@6, v9@9"
        );
    }
    for version in [9, 10, 100] {
        check_eq!(
            get(&store, b"k", version),
            value_resp(b"v9"),
            "KvGet(k, {version}), commits: v2@2, v5@5, rollback@6, v9@9"
        );
    }
}

/// A delete committed at or before the version hides the value; before the
/// delete the value is still read.
#[test]
fn get_deleted_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"v", 1, 2);
    s.put_write_record(b"k", WriteKind::Delete, 4, 5);
    check_eq!(get(&store, b"k", 10), not_found(), "KvGet(k, 10), v@2, deleted@5");
    check_eq!(get(&store, b"k", 5), not_found(), "KvGet(k, 5), v@2, deleted@5");
    check_eq!(get(&store, b"k", 4), value_resp(b"v"), "KvGet(k, 4), v@2, deleted@5");
}

/// A lock with ts <= version answers locked with the exact LockInfo and no
/// value; a lock with ts > version is ignored and the old value is read.
#[test]
fn get_locked_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"old", 1, 2);
    s.put_fixture(vec![Modify::put(Cf::Default, &encode_key(b"k", 5), b"new")]);
    s.put_lock(b"k", &lock_of(b"pk", 5, 3000, WriteKind::Put));
    s.clear_written();
    for version in [5, 10] {
        let resp = get(&store, b"k", version);
        check_eq!(
            resp.error,
            Some(locked_info(b"pk", 5, b"k", 3000)),
            "KvGet(k, {version}), k locked by the txn started at 5 (primary pk, ttl 3000)"
        );
        check_eq!(resp.value, Vec::<u8>::new(), "KvGet(k, {version}) of a locked key: no value");
        check_eq!(resp.region_error, None, "KvGet(k, {version}): no region error");
    }
    check_eq!(
        get(&store, b"k", 4),
        value_resp(b"old"),
        "KvGet(k, 4), old@2, lock of the txn started at 5 (later than the read)"
    );
    check_eq!(s.written(), no_writes(), "KvGet must write nothing");
}

// ----- KvPrewrite --------------------------------------------------------------

/// A prewrite with no mutations succeeds and writes nothing.
#[test]
fn prewrite_empty_4b() {
    let (s, store) = setup();
    check_eq!(prewrite(&store, vec![], b"pk", 5, 100), ok_prewrite(), "prewrite of nothing");
    check_eq!(s.written(), no_writes(), "prewrite of nothing must write nothing");
}

/// A prewrite of one Put writes the exact value (start ts) and lock bytes.
#[test]
fn prewrite_single_4b() {
    let (s, store) = setup();
    let resp = prewrite(&store, vec![put_req(b"k", b"v")], b"k", 5, 3000);
    check_eq!(resp, ok_prewrite(), "prewrite k = v at 5");
    check_eq!(
        s.pairs(Cf::Default),
        vec![pair(&encode_key(b"k", 5), b"v")],
        "default after prewrite k = v at 5: the value under the start ts"
    );
    let mut lock = b"k".to_vec();
    lock.push(1);
    lock.extend_from_slice(&5u64.to_be_bytes());
    lock.extend_from_slice(&3000u64.to_be_bytes());
    check_eq!(
        s.pairs(Cf::Lock),
        vec![pair(b"k", &lock)],
        "lock after prewrite k = v at 5 (primary k, Put, ttl 3000) under the raw key"
    );
    check_eq!(s.pairs(Cf::Write), no_pairs(), "write after a prewrite: nothing");
}

/// A key locked by another transaction: a locked error with the exact
/// LockInfo, and nothing written.
#[test]
fn prewrite_locked_4b() {
    let (s, store) = setup();
    s.put_lock(b"k", &lock_of(b"other", 3, 50, WriteKind::Put));
    s.clear_written();
    let resp = prewrite(&store, vec![put_req(b"k", b"v")], b"k", 5, 100);
    check_eq!(
        resp,
        PrewriteResponse { errors: vec![locked_info(b"other", 3, b"k", 50)], region_error: None },
        "prewrite k at 5, k locked by the txn started at 3 (primary other, ttl 50)"
    );
    check_eq!(s.written(), no_writes(), "a failed prewrite must write nothing");
}

/// A write committed at or after the start ts: a WriteConflict with the
/// exact fields, and nothing written.
#[test]
fn prewrite_written_conflict_4b() {
    for conflict_ts in [5, 7] {
        let (s, store) = setup();
        s.put_committed(b"k", b"old", 2, conflict_ts);
        s.clear_written();
        let resp = prewrite(&store, vec![put_req(b"k", b"v")], b"pk", 5, 100);
        let want = KeyError {
            conflict: Some(WriteConflict {
                start_ts: 5,
                conflict_ts,
                key: b"k".to_vec(),
                primary: b"pk".to_vec(),
            }),
            ..Default::default()
        };
        check_eq!(
            resp,
            PrewriteResponse { errors: vec![want], region_error: None },
            "prewrite k at 5 (primary pk), k committed at {conflict_ts}"
        );
        check_eq!(s.written(), no_writes(), "a conflicting prewrite must write nothing");
    }
}

/// A write committed before the start ts is no conflict: the prewrite
/// succeeds and writes its value and lock.
#[test]
fn prewrite_written_no_conflict_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"old", 2, 4);
    let resp = prewrite(&store, vec![put_req(b"k", b"v")], b"k", 5, 100);
    check_eq!(resp, ok_prewrite(), "prewrite k at 5, k committed at 4");
    check_eq!(
        s.pairs(Cf::Default),
        vec![pair(&encode_key(b"k", 5), b"v"), pair(&encode_key(b"k", 2), b"old")],
        "default after prewrite k = v at 5 over old@4"
    );
    check_eq!(
        s.pairs(Cf::Lock),
        vec![pair(b"k", &lock_of(b"k", 5, 100, WriteKind::Put).to_bytes())],
        "lock after prewrite k = v at 5"
    );
}

/// Several keys, one of them conflicting: exactly one error (that key's)
/// and nothing written at all, not even for the other keys.
#[test]
fn prewrite_multiple_4b() {
    let (s, store) = setup();
    s.put_committed(b"b", b"old", 2, 6);
    s.clear_written();
    let muts = vec![put_req(b"a", b"1"), put_req(b"b", b"2"), del_req(b"c"), put_req(b"d", b"4")];
    let resp = prewrite(&store, muts, b"a", 5, 100);
    let want = KeyError {
        conflict: Some(WriteConflict {
            start_ts: 5,
            conflict_ts: 6,
            key: b"b".to_vec(),
            primary: b"a".to_vec(),
        }),
        ..Default::default()
    };
    check_eq!(
        resp,
        PrewriteResponse { errors: vec![want], region_error: None },
        "prewrite a, b, c, d at 5, b committed at 6"
    );
    check_eq!(s.written(), no_writes(), "a prewrite with an error must write nothing at all");
}

/// The same transaction prewrites a key twice: the second value wins and
/// there is one lock.
#[test]
fn prewrite_overwrite_4b() {
    let (s, store) = setup();
    check_eq!(
        prewrite(&store, vec![put_req(b"k", b"first")], b"k", 5, 100),
        ok_prewrite(),
        "first prewrite k = first at 5"
    );
    check_eq!(
        prewrite(&store, vec![put_req(b"k", b"second")], b"k", 5, 100),
        ok_prewrite(),
        "second prewrite k = second at 5 (same txn: its own lock is no conflict)"
    );
    check_eq!(
        s.pairs(Cf::Default),
        vec![pair(&encode_key(b"k", 5), b"second")],
        "default after prewriting k twice at 5"
    );
    check_eq!(
        s.pairs(Cf::Lock),
        vec![pair(b"k", &lock_of(b"k", 5, 100, WriteKind::Put).to_bytes())],
        "lock after prewriting k twice at 5"
    );
}

/// Three keys including a Del: values for the Puts, a lock per key, the
/// Del's lock of kind Delete and no value for it.
#[test]
fn prewrite_multiple_keys_4b() {
    let (s, store) = setup();
    let muts = vec![put_req(b"c", b"3"), del_req(b"b"), put_req(b"a", b"1")];
    check_eq!(prewrite(&store, muts, b"a", 5, 200), ok_prewrite(), "prewrite c, b (Del), a at 5");
    check_eq!(
        s.pairs(Cf::Default),
        vec![pair(&encode_key(b"a", 5), b"1"), pair(&encode_key(b"c", 5), b"3")],
        "default after prewrite c = 3, del b, a = 1 at 5: values of the Puts only"
    );
    check_eq!(
        s.pairs(Cf::Lock),
        vec![
            pair(b"a", &lock_of(b"a", 5, 200, WriteKind::Put).to_bytes()),
            pair(b"b", &lock_of(b"a", 5, 200, WriteKind::Delete).to_bytes()),
            pair(b"c", &lock_of(b"a", 5, 200, WriteKind::Put).to_bytes()),
        ],
        "lock after prewrite c = 3, del b, a = 1 at 5 (primary a, ttl 200)"
    );
    check_eq!(s.pairs(Cf::Write), no_pairs(), "write after a prewrite: nothing");
}

// ----- KvCommit ------------------------------------------------------------------

/// A commit with no keys succeeds and writes nothing.
#[test]
fn commit_empty_4b() {
    let (s, store) = setup();
    check_eq!(commit(&store, &[], 5, 6), ok_commit(), "commit of no keys");
    check_eq!(s.written(), no_writes(), "commit of no keys must write nothing");
}

/// Committing a prewritten key writes the exact write record at the commit
/// ts, deletes the lock and keeps the value.
#[test]
fn commit_single_4b() {
    let (s, store) = setup();
    prewritten_put(&s, b"k", b"v", b"k", 5);
    check_eq!(commit(&store, &[b"k"], 5, 7), ok_commit(), "commit k (start 5) at 7");
    check_eq!(
        s.pairs(Cf::Write),
        vec![pair(&encode_key(b"k", 7), &[1, 0, 0, 0, 0, 0, 0, 0, 5])],
        "write after commit k (start 5) at 7: Put, start 5, under the commit ts"
    );
    check_eq!(s.pairs(Cf::Lock), no_pairs(), "lock after commit k: gone");
    check_eq!(
        s.pairs(Cf::Default),
        vec![pair(&encode_key(b"k", 5), b"v")],
        "default after commit k: the value stays under the start ts"
    );
}

/// Committing over an older committed version keeps both; reads at or
/// after the commit ts see the new value, reads before it the old one.
#[test]
fn commit_overwrite_4b() {
    let (s, store) = setup();
    s.put_committed(b"k", b"old", 1, 2);
    prewritten_put(&s, b"k", b"new", b"k", 5);
    check_eq!(commit(&store, &[b"k"], 5, 7), ok_commit(), "commit k (start 5) at 7 over old@2");
    check_eq!(
        s.pairs(Cf::Write),
        vec![
            pair(&encode_key(b"k", 7), &Write { start_ts: 5, kind: WriteKind::Put }.to_bytes()),
            pair(&encode_key(b"k", 2), &Write { start_ts: 1, kind: WriteKind::Put }.to_bytes()),
        ],
        "write after commit k at 7 over old@2: both versions"
    );
    check_eq!(
        s.pairs(Cf::Default),
        vec![pair(&encode_key(b"k", 5), b"new"), pair(&encode_key(b"k", 1), b"old")],
        "default after commit k at 7 over old@2: both values"
    );
    check_eq!(get(&store, b"k", 7), value_resp(b"new"), "KvGet(k, 7), new committed at 7");
    check_eq!(get(&store, b"k", 20), value_resp(b"new"), "KvGet(k, 20), new committed at 7");
    check_eq!(get(&store, b"k", 6), value_resp(b"old"), "KvGet(k, 6), new committed at 7");
}

/// Committing several keys (one a Delete) writes a record of the lock's
/// kind for each and deletes their locks; a key not in the request keeps
/// its lock.
#[test]
fn commit_multiple_keys_4b() {
    let (s, store) = setup();
    prewritten_put(&s, b"a", b"1", b"a", 5);
    s.put_lock(b"b", &lock_of(b"a", 5, 100, WriteKind::Delete));
    prewritten_put(&s, b"c", b"3", b"a", 5);
    prewritten_put(&s, b"d", b"4", b"a", 5);
    check_eq!(commit(&store, &[b"c", b"a", b"b"], 5, 8), ok_commit(), "commit c, a, b at 8");
    let rec = |kind| Write { start_ts: 5, kind }.to_bytes();
    check_eq!(
        s.pairs(Cf::Write),
        vec![
            pair(&encode_key(b"a", 8), &rec(WriteKind::Put)),
            pair(&encode_key(b"b", 8), &rec(WriteKind::Delete)),
            pair(&encode_key(b"c", 8), &rec(WriteKind::Put)),
        ],
        "write after commit a, b (Delete lock), c (start 5) at 8"
    );
    check_eq!(
        s.pairs(Cf::Lock),
        vec![pair(b"d", &lock_of(b"a", 5, 100, WriteKind::Put).to_bytes())],
        "lock after commit a, b, c: only d (not in the request) is still locked"
    );
    check_eq!(get(&store, b"a", 8), value_resp(b"1"), "KvGet(a, 8) after the commit");
    check_eq!(get(&store, b"b", 8), not_found(), "KvGet(b, 8) after committing its delete");
    check_eq!(get(&store, b"c", 8), value_resp(b"3"), "KvGet(c, 8) after the commit");
}

/// Committing a key again after it was committed is no error and leaves
/// the write record in place.
#[test]
fn commit_recommit_key_4b() {
    let (s, store) = setup();
    prewritten_put(&s, b"k", b"v", b"k", 5);
    check_eq!(commit(&store, &[b"k"], 5, 7), ok_commit(), "commit k (start 5) at 7");
    check_eq!(commit(&store, &[b"k"], 5, 7), ok_commit(), "commit k (start 5) at 7 again");
    check_eq!(
        s.pairs(Cf::Write),
        vec![pair(&encode_key(b"k", 7), &Write { start_ts: 5, kind: WriteKind::Put }.to_bytes())],
        "write after committing k twice"
    );
    check_eq!(s.pairs(Cf::Lock), no_pairs(), "lock after committing k twice: none");
}

/// The transaction was rolled back on the key: committing is an abort
/// error and writes nothing.
#[test]
fn commit_rolled_back_is_an_error_4b() {
    let (s, store) = setup();
    s.put_write_record(b"k", WriteKind::Rollback, 5, 5);
    s.clear_written();
    let resp = commit(&store, &[b"k"], 5, 7);
    let aborted = resp.error.as_ref().is_some_and(|e| !e.abort.is_empty());
    assert!(
        aborted,
        "commit k (start 5) at 7, k rolled back by that txn: expected an error with abort set, \
         got {resp:?}; {DOC}"
    );
    check_eq!(s.written(), no_writes(), "a commit of a rolled back txn must write nothing");
}

/// A key locked by another transaction: a retryable error, and nothing
/// written, not even for the request's keys this transaction did lock.
#[test]
fn commit_locked_by_another_txn_is_retryable_4b() {
    let (s, store) = setup();
    prewritten_put(&s, b"a", b"1", b"a", 5);
    prewritten_put(&s, b"b", b"2", b"b", 3);
    s.clear_written();
    let resp = commit(&store, &[b"a", b"b"], 5, 7);
    let retryable = resp.error.as_ref().is_some_and(|e| !e.retryable.is_empty());
    assert!(
        retryable,
        "commit a, b (start 5) at 7, b locked by the txn started at 3: expected an error with \
         retryable set, got {resp:?}; {DOC}"
    );
    check_eq!(s.written(), no_writes(), "a commit with an error must write nothing");
}

/// This transaction's key was committed (by someone who resolved its
/// lock) and another transaction has locked the key since: committing it
/// again is no error and changes nothing.
#[test]
fn commit_committed_key_locked_by_another_txn_is_ok_4b() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 5, 7);
    prewritten_put(&s, b"a", b"2", b"a", 9);
    s.clear_written();
    check_eq!(
        commit(&store, &[b"a"], 5, 7),
        ok_commit(),
        "commit a (start 5) at 7, a committed at 7 and now locked by the txn started at 9"
    );
    check_eq!(s.written(), no_writes(), "a commit of an already committed key must write nothing");
}

/// This transaction was rolled back on the key (its lock expired and
/// someone cleaned it up) and another transaction has locked the key
/// since: the commit must learn it is too late (`abort`), not retry.
#[test]
fn commit_rolled_back_key_locked_by_another_txn_is_an_abort_4b() {
    let (s, store) = setup();
    s.put_write_record(b"a", WriteKind::Rollback, 5, 5);
    prewritten_put(&s, b"a", b"2", b"a", 9);
    s.clear_written();
    let resp = commit(&store, &[b"a"], 5, 10);
    let abort = resp.error.as_ref().is_some_and(|e| !e.abort.is_empty());
    assert!(
        abort,
        "commit a (start 5) at 10, a rolled back for start 5 and now locked by the txn started \
         at 9: expected an error with abort set, got {resp:?}; {DOC}"
    );
    check_eq!(s.written(), no_writes(), "a commit with an error must write nothing");
}

/// Committing twice leaves the storage exactly as after the first commit.
#[test]
fn commit_repeated_is_idempotent_4b() {
    let (s, store) = setup();
    prewritten_put(&s, b"a", b"1", b"a", 5);
    s.put_lock(b"b", &lock_of(b"a", 5, 100, WriteKind::Delete));
    check_eq!(commit(&store, &[b"a", b"b"], 5, 7), ok_commit(), "commit a, b (start 5) at 7");
    let after_first = s.contents();
    check_eq!(commit(&store, &[b"a", b"b"], 5, 7), ok_commit(), "commit a, b at 7 again");
    check_eq!(s.contents(), after_first, "the storage after a repeated commit");
}

/// A commit of keys never prewritten (no lock, no write of this txn)
/// writes nothing and is no error.
#[test]
fn commit_without_prewrite_writes_nothing_4b() {
    let (s, store) = setup();
    s.put_committed(b"b", b"other", 1, 2);
    s.put_committed(b"c", b"later", 8, 9);
    s.clear_written();
    check_eq!(commit(&store, &[b"a", b"b", b"c"], 5, 7), ok_commit(), "commit a, b, c at 7");
    check_eq!(s.written(), no_writes(), "a commit of keys never prewritten must write nothing");
}

// ----- latches ---------------------------------------------------------------------

/// Every key prewrite and commit modify is in a latched set, and each
/// command latches the (sorted, deduplicated) keys of its request.
#[test]
fn every_modified_key_was_latched_4b() {
    let (s, store) = setup();
    s.put_committed(b"other", b"x", 1, 2);
    s.clear_written();
    let muts = vec![put_req(b"c", b"3"), del_req(b"a"), put_req(b"b", b"2")];
    check_eq!(prewrite(&store, muts, b"c", 5, 100), ok_prewrite(), "prewrite c, a (Del), b at 5");
    check_eq!(commit(&store, &[b"b", b"c", b"a", b"b"], 5, 7), ok_commit(), "commit b, c, a, b");
    let acquired = store.latches.acquired();
    let abc: Vec<Vec<u8>> = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    let sets_with_abc = acquired.iter().filter(|set| **set == abc).count();
    assert!(
        sets_with_abc >= 2,
        "prewrite of c, a, b and commit of b, c, a, b: expected each to latch [a, b, c] \
         (sorted, deduplicated), got acquired() = {acquired:?}; {DOC}"
    );
    let latched: BTreeSet<Vec<u8>> = acquired.iter().flatten().cloned().collect();
    let written = s.written();
    assert!(
        !written.is_empty(),
        "prewrite and commit of a, b, c: expected modifications, got none; {DOC}"
    );
    for m in &written {
        let user_key = match m.cf() {
            Cf::Lock => m.key().to_vec(),
            _ => decode_user_key(m.key()).expect("an MVCC key in default or write"),
        };
        assert!(
            latched.contains(&user_key),
            "expected every modified key to be latched; {m:?} modifies {user_key:?}, latched: \
             {latched:?}; {DOC}"
        );
    }
}

/// What a [`LatchWatch`] storage saw held when a command used it.
#[derive(Debug, Clone, PartialEq)]
enum Access {
    /// A reader was made while these keys were latched.
    Read { held: Vec<Vec<u8>> },
    /// A batch modifying these user keys was written while these keys
    /// were latched.
    Write { modified: Vec<Vec<u8>>, held: Vec<Vec<u8>> },
}

/// A storage that, on each `reader` and `write`, notes which keys its
/// store has latched at that moment (the store is set after it is built,
/// since `TxnStore::new` takes the storage).
#[derive(Debug, Default)]
struct LatchWatch {
    inner: MemStorage,
    store: std::sync::OnceLock<std::sync::Weak<TxnStore>>,
    seen: std::sync::Mutex<Vec<Access>>,
}

impl LatchWatch {
    fn held(&self) -> Vec<Vec<u8>> {
        let store = self.store.get().and_then(std::sync::Weak::upgrade);
        store.map(|s| s.latches.held()).unwrap_or_default()
    }

    fn note(&self, access: Access) {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(access);
    }
}

impl tinykv_storage::Storage for LatchWatch {
    fn write(
        &self,
        ctx: &tinykv_storage::Context,
        batch: Vec<Modify>,
    ) -> tinykv_storage::Result<()> {
        let modified: BTreeSet<Vec<u8>> = batch
            .iter()
            .map(|m| match m.cf() {
                Cf::Lock => m.key().to_vec(),
                _ => decode_user_key(m.key()).expect("an MVCC key in default or write"),
            })
            .collect();
        self.note(Access::Write { modified: modified.into_iter().collect(), held: self.held() });
        self.inner.write(ctx, batch)
    }

    fn reader(
        &self,
        ctx: &tinykv_storage::Context,
    ) -> tinykv_storage::Result<Box<dyn tinykv_storage::StorageReader>> {
        self.note(Access::Read { held: self.held() });
        self.inner.reader(ctx)
    }
}

/// Runs `command` on a store over `s` and returns its answer and what the
/// storage saw latched at each read and write.
fn watch_latches<A>(s: &MemStorage, command: impl FnOnce(&TxnStore) -> A) -> (A, Vec<Access>) {
    let watch = Arc::new(LatchWatch { inner: s.clone(), ..LatchWatch::default() });
    let store = Arc::new(TxnStore::new(watch.clone()));
    watch.store.set(Arc::downgrade(&store)).expect("set once");
    let answer = command(&store);
    let seen = watch.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    (answer, seen)
}

/// Asserts that `what` read only while `keys` were latched, and wrote one
/// batch, of those keys, while they were still latched.
fn check_latched_throughout(what: &str, keys: &[&[u8]], seen: &[Access]) {
    let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    let latched = |held: &[Vec<u8>]| keys.iter().all(|k| held.contains(k));
    let writes: Vec<_> = seen.iter().filter(|a| matches!(a, Access::Write { .. })).collect();
    assert!(
        writes.len() == 1,
        "{what}: expected one write to the storage, got {} (accesses: {seen:?}); {DOC}",
        writes.len()
    );
    for access in seen {
        match access {
            Access::Read { held } => assert!(
                latched(held),
                "{what}: it read the storage while only {held:?} were latched, expected {keys:?}: \
                 take the latches before making the reader (the MvccTxn), or another command \
                 can change the keys between this one's check and its write; {DOC} \
                 (\"Latches\")"
            ),
            Access::Write { modified, held } => {
                assert!(
                    latched(held),
                    "{what}: its batch (of keys {modified:?}) reached the storage while only \
                     {held:?} were latched, expected {keys:?}: hold the latch guard until the \
                     write is done (a command that released them early lets another one \
                     read the old data, see no lock, and write over it); {DOC} (\"Latches\", \
                     \"Hints (4b)\")"
                );
                check_eq!(*modified, keys, "{what}: the user keys its batch modifies");
            }
        }
    }
}

/// A prewrite reads and writes with every mutation's key latched (a
/// prewrite that let the guard go before its write lets a second prewrite
/// of the key see no lock and lock it too).
#[test]
fn prewrite_holds_its_latches_until_its_write_is_stored_4b() {
    let (s, _) = setup();
    let what = "the prewrite of k, j at 10";
    let (answer, seen) = watch_latches(&s, |store| {
        prewrite(store, vec![put_req(b"k", b"10"), put_req(b"j", b"10")], b"k", 10, 100)
    });
    check_eq!(answer, ok_prewrite(), "{what}");
    check_latched_throughout(what, &[b"j", b"k"], &seen);
    let lock = lock_of(b"k", 10, 100, WriteKind::Put).to_bytes();
    check_eq!(s.pairs(Cf::Lock), vec![pair(b"j", &lock), pair(b"k", &lock)], "the lock CF");
}

/// A commit reads and writes with its keys latched (a commit that let
/// the guard go before its write lets a rollback or another commit of
/// the key read the lock it is about to remove).
#[test]
fn commit_holds_its_latches_until_its_write_is_stored_4b() {
    let (s, _) = setup();
    prewritten_put(&s, b"k", b"10", b"k", 10);
    let what = "the commit of k (started at 10) at 15";
    let (answer, seen) = watch_latches(&s, |store| commit(store, &[b"k"], 10, 15));
    check_eq!(answer, ok_commit(), "{what}");
    check_latched_throughout(what, &[b"k"], &seen);
    check_eq!(s.pairs(Cf::Lock), Vec::<(Vec<u8>, Vec<u8>)>::new(), "the lock CF after the commit");
}

/// A mutation whose op is neither `Put` nor `Del` (the server refuses
/// them, but `TxnStore` is also called directly): an `abort` error that
/// names the op, one per such mutation, and nothing is written, not even
/// the good mutation's lock.
#[test]
fn prewrite_of_another_op_is_an_abort_4b() {
    let (s, store) = setup();
    for op in [Op::Rollback, Op::Lock] {
        let bad = Mutation { op: op as i32, key: b"b".to_vec(), value: Vec::new() };
        let got = prewrite(&store, vec![put_req(b"a", b"1"), bad], b"a", 10, 100);
        let what = format!("a prewrite at 10 of a Put of a and a {op:?} of b");
        assert!(
            got.region_error.is_none() && got.errors.len() == 1,
            "{what}: expected one KeyError (for b), got {got:?}; {DOC}"
        );
        let abort = &got.errors[0].abort;
        assert!(
            abort.contains(&format!("{op:?}")),
            "{what}: expected an abort naming {op:?}, got {:?}; {DOC}",
            got.errors[0]
        );
        check_eq!(s.written(), no_writes(), "{what}: the storage writes");
    }
}
