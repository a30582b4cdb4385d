//! Graded suite of lab 4c: `KvBatchRollback`, `KvCheckTxnStatus`,
//! `KvResolveLock` and `KvScan` of `TxnStore`, and the `Scanner`.
//!
//! Each test builds the column families by hand in a `MemStorage` (the
//! exact byte layout of `docs/src/lab4-transactions.md`: values in
//! `default` under the start ts, locks in `lock` under the raw key, write
//! records in `write` under the commit ts, rollback records under the
//! rolled back transaction's start ts), runs one or more commands through
//! a `TxnStore` over that storage, and checks the response and the exact
//! contents of the column families (or that nothing was written).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tinykv_engine::Cf;
use tinykv_proto::kvrpcpb::{
    Action, BatchRollbackResponse, CheckTxnStatusResponse, KeyError, KvPair, LockInfo,
    PrewriteResponse, ResolveLockResponse, ScanResponse, WriteConflict,
};
use tinykv_storage::{Context, Modify, Storage, StorageReader};
use tinykv_transaction::codec::encode_key;
use tinykv_transaction::mem_storage::Pairs;
use tinykv_transaction::requests::{self, PrewriteBuilder};
use tinykv_transaction::ts::{LOGICAL_BITS, compose};
use tinykv_transaction::{Lock, MemStorage, ScanItem, Scanner, TxnStore, Write, WriteKind};

// ----- helpers ---------------------------------------------------------------

#[path = "../../../raft/tests/harness/deadline.rs"]
mod deadline;

const DOC: &str = "see docs/src/lab4-transactions.md, \"Lab 4c\"";

/// The largest logical part of a timestamp.
const MAX_LOGICAL: u64 = (1 << LOGICAL_BITS) - 1;

/// A physical time (ms) for the TTL tests, far from 0.
const NOW_MS: u64 = 1_700_000_000_000;

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

/// The lock of the transaction started at `ts`, as stored.
fn lock_of(primary: &[u8], ts: u64, ttl: u64, kind: WriteKind) -> Lock {
    Lock { primary: primary.to_vec(), ts, ttl, kind }
}

/// What a prewrite of `key = value` by the txn started at `start` leaves:
/// the value in `default` and a Put lock with TTL `ttl`.
fn prewritten_put(s: &MemStorage, key: &[u8], value: &[u8], primary: &[u8], start: u64, ttl: u64) {
    s.put_prewritten(key, value, &lock_of(primary, start, ttl, WriteKind::Put));
}

/// Expected pairs, put in key order (as `MemStorage::pairs` gives them).
fn sorted(mut pairs: Pairs) -> Pairs {
    pairs.sort();
    pairs
}

fn pair(key: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (key.to_vec(), value.to_vec())
}

/// A value in `default`: `key` written by the txn started at `start`.
fn value_at(key: &[u8], start: u64, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    pair(&encode_key(key, start), value)
}

/// A record in `write`: the txn started at `start` did `kind` to `key`,
/// committed at `commit`.
fn write_at(key: &[u8], commit: u64, start: u64, kind: WriteKind) -> (Vec<u8>, Vec<u8>) {
    pair(&encode_key(key, commit), &Write { start_ts: start, kind }.to_bytes())
}

/// The rollback record of the txn started at `start` on `key`.
fn rollback_at(key: &[u8], start: u64) -> (Vec<u8>, Vec<u8>) {
    write_at(key, start, start, WriteKind::Rollback)
}

/// A lock in `lock`, under the raw key.
fn lock_at(key: &[u8], lock: &Lock) -> (Vec<u8>, Vec<u8>) {
    pair(key, &lock.to_bytes())
}

fn no_pairs() -> Pairs {
    Vec::new()
}

fn no_writes() -> Vec<Modify> {
    Vec::new()
}

fn rollback(store: &TxnStore, start: u64, keys: &[&[u8]]) -> BatchRollbackResponse {
    store.kv_batch_rollback(&requests::batch_rollback(start, keys))
}

fn check_status(
    store: &TxnStore,
    primary: &[u8],
    lock_ts: u64,
    now: u64,
) -> CheckTxnStatusResponse {
    store.kv_check_txn_status(&requests::check_txn_status(primary, lock_ts, now))
}

fn resolve(store: &TxnStore, start: u64, commit: u64) -> ResolveLockResponse {
    store.kv_resolve_lock(&requests::resolve_lock(start, commit))
}

/// How long a scan may take before it counts as looping forever.
const SCAN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the scan `f` with [`SCAN_LIMIT`]: a `Scanner::next` that loops
/// without consuming the key's lock or write entries fails here with a
/// message naming `what`, instead of hanging until the runner kills the
/// test.
fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let hint = format!(
        "Scanner::next must consume every lock and write entry of the key it looks at, or it \
         finds the same key again forever; {DOC}"
    );
    deadline::within(what, SCAN_LIMIT, &hint, f)
}

/// `KvScan`, on a store over the same storage (see [`without_hanging`]).
fn scan(store: &TxnStore, start_key: &[u8], limit: u32, version: u64) -> ScanResponse {
    let req = requests::scan(start_key, limit, version);
    let storage = store.storage.clone();
    let what = format!("a scan from \"{}\", limit {limit}, at {version}", start_key.escape_ascii());
    without_hanging(&what, move || TxnStore::new(storage).kv_scan(&req))
}

fn ok_rollback() -> BatchRollbackResponse {
    BatchRollbackResponse::default()
}

fn ok_resolve() -> ResolveLockResponse {
    ResolveLockResponse::default()
}

fn status(lock_ttl: u64, commit_version: u64, action: Action) -> CheckTxnStatusResponse {
    CheckTxnStatusResponse { region_error: None, lock_ttl, commit_version, action: action as i32 }
}

/// Whether `error` is a key error with `abort` set.
fn is_abort(error: Option<&KeyError>) -> bool {
    error.is_some_and(|e| !e.abort.is_empty())
}

/// A scanned value.
fn kv(key: &[u8], value: &[u8]) -> KvPair {
    KvPair { error: None, key: key.to_vec(), value: value.to_vec() }
}

/// A scanned key locked by the txn started at `ts`: no value, a `locked`
/// error with the lock's `LockInfo`.
fn locked_kv(key: &[u8], primary: &[u8], ts: u64, ttl: u64) -> KvPair {
    let info = LockInfo {
        primary_lock: primary.to_vec(),
        lock_version: ts,
        key: key.to_vec(),
        lock_ttl: ttl,
    };
    KvPair {
        error: Some(KeyError { locked: Some(info), ..Default::default() }),
        key: key.to_vec(),
        value: Vec::new(),
    }
}

fn scanned(pairs: Vec<KvPair>) -> ScanResponse {
    ScanResponse { region_error: None, pairs }
}

/// A storage that, when a command asks for its second reader, first
/// applies `meanwhile` (as if another command had run between the first
/// read and the second) and forgets the write log. `KvResolveLock` reads
/// the `lock` CF with its first reader; the second is the one the commit
/// or rollback it hands the keys to reads with, under the latches.
#[derive(Debug)]
struct MeanwhileStorage {
    inner: MemStorage,
    readers: AtomicUsize,
    meanwhile: Mutex<Option<Vec<Modify>>>,
}

impl Storage for MeanwhileStorage {
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> tinykv_storage::Result<()> {
        self.inner.write(ctx, batch)
    }

    fn reader(&self, ctx: &Context) -> tinykv_storage::Result<Box<dyn StorageReader>> {
        if self.readers.fetch_add(1, Ordering::SeqCst) == 1
            && let Some(batch) = self.meanwhile.lock().expect("the batch").take()
        {
            self.inner.put_fixture(batch);
            self.inner.clear_written();
        }
        self.inner.reader(ctx)
    }
}

/// A `TxnStore` over `s` that applies `meanwhile` before its second reader
/// (see [`MeanwhileStorage`]).
fn store_with_meanwhile(s: &MemStorage, meanwhile: Vec<Modify>) -> TxnStore {
    TxnStore::new(Arc::new(MeanwhileStorage {
        inner: s.clone(),
        readers: AtomicUsize::new(0),
        meanwhile: Mutex::new(Some(meanwhile)),
    }))
}

// ----- KvBatchRollback ---------------------------------------------------------

/// A rollback of no keys succeeds and writes nothing.
#[test]
fn rollback_empty_4c() {
    let (s, store) = setup();
    s.put_committed(b"k", b"v", 1, 2);
    s.clear_written();
    check_eq!(rollback(&store, 5, &[]), ok_rollback(), "rollback of no keys (start 5)");
    check_eq!(s.written(), no_writes(), "a rollback of no keys must write nothing");
}

/// Rolling back a prewritten Put removes the lock and the value and writes
/// a rollback record at encode_key(key, start); an older committed version
/// stays.
#[test]
fn rollback_one_4c() {
    let (s, store) = setup();
    s.put_committed(b"k", b"old", 1, 2);
    prewritten_put(&s, b"k", b"v", b"k", 5, 100);
    check_eq!(rollback(&store, 5, &[b"k"]), ok_rollback(), "rollback k (start 5), k prewritten");
    check_eq!(
        s.pairs(Cf::Default),
        vec![value_at(b"k", 1, b"old")],
        "default after rolling back k = v (start 5) over old@2: the txn's value is gone"
    );
    check_eq!(s.pairs(Cf::Lock), no_pairs(), "lock after rolling back k (start 5): gone");
    check_eq!(
        s.pairs(Cf::Write),
        sorted(vec![rollback_at(b"k", 5), write_at(b"k", 2, 1, WriteKind::Put)]),
        "write after rolling back k (start 5) over old@2: Write {{ start_ts: 5, Rollback }} at \
         encode_key(k, 5), the old record stays"
    );
}

/// Rolling back a Delete lock (which has no value) removes the lock and
/// writes a rollback record; the older committed value stays.
#[test]
fn rollback_delete_lock_4c() {
    let (s, store) = setup();
    s.put_committed(b"k", b"old", 1, 2);
    s.put_lock(b"k", &lock_of(b"k", 5, 100, WriteKind::Delete));
    check_eq!(
        rollback(&store, 5, &[b"k"]),
        ok_rollback(),
        "rollback k (start 5), k prewritten as a Delete"
    );
    check_eq!(
        s.pairs(Cf::Default),
        vec![value_at(b"k", 1, b"old")],
        "default after rolling back a Delete of k (start 5): the older value stays"
    );
    check_eq!(s.pairs(Cf::Lock), no_pairs(), "lock after rolling back a Delete of k: gone");
    check_eq!(
        s.pairs(Cf::Write),
        sorted(vec![rollback_at(b"k", 5), write_at(b"k", 2, 1, WriteKind::Put)]),
        "write after rolling back a Delete of k (start 5) over old@2"
    );
}

/// The same key twice in one request: no error, and the key ends rolled
/// back once (the second copy must not see the first's rollback as a
/// reason to fail).
#[test]
fn rollback_duplicate_keys_4c() {
    let (s, store) = setup();
    prewritten_put(&s, b"k", b"v", b"k", 5, 100);
    s.clear_written();
    check_eq!(rollback(&store, 5, &[b"k", b"k"]), ok_rollback(), "rollback k, k (start 5)");
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, no_pairs()),
            (Cf::Lock, no_pairs()),
            (Cf::Write, vec![rollback_at(b"k", 5)])
        ],
        "the storage after rolling back k, k (start 5), k prewritten"
    );
}

/// A key the transaction never prewrote (its prewrite may still arrive)
/// gets a rollback record anyway; other transactions' data stays.
#[test]
fn rollback_missing_prewrite_writes_a_rollback_record_4c() {
    let (s, store) = setup();
    s.put_committed(b"k", b"old", 1, 2);
    check_eq!(
        rollback(&store, 5, &[b"k", b"x"]),
        ok_rollback(),
        "rollback k, x (start 5), neither prewritten"
    );
    check_eq!(
        s.pairs(Cf::Write),
        sorted(vec![
            rollback_at(b"k", 5),
            write_at(b"k", 2, 1, WriteKind::Put),
            rollback_at(b"x", 5),
        ]),
        "write after rolling back k, x (start 5) without a prewrite: a rollback record for each"
    );
    check_eq!(
        s.pairs(Cf::Default),
        vec![value_at(b"k", 1, b"old")],
        "default after rolling back k, x without a prewrite: unchanged"
    );
    check_eq!(s.pairs(Cf::Lock), no_pairs(), "lock after rolling back k, x: none");
}

/// A key the transaction committed cannot be rolled back: an abort error,
/// and nothing written, not even for the request's other keys.
#[test]
fn rollback_committed_is_an_abort_4c() {
    let (s, store) = setup();
    s.put_committed(b"k", b"v", 5, 7);
    s.clear_written();
    let resp = rollback(&store, 5, &[b"k"]);
    assert!(
        is_abort(resp.error.as_ref()) && resp.region_error.is_none(),
        "rollback k (start 5), k committed by that txn at 7: expected an error with abort set, \
         got {resp:?}; {DOC}"
    );
    check_eq!(s.written(), no_writes(), "a rollback of a committed key must write nothing");

    let (s, store) = setup();
    prewritten_put(&s, b"a", b"1", b"a", 5, 100);
    s.put_committed(b"b", b"2", 5, 7);
    let before = s.contents();
    s.clear_written();
    let resp = rollback(&store, 5, &[b"a", b"b"]);
    assert!(
        is_abort(resp.error.as_ref()) && resp.region_error.is_none(),
        "rollback a, b (start 5), a prewritten, b committed by that txn at 7: expected an error \
         with abort set, got {resp:?}; {DOC}"
    );
    check_eq!(
        s.written(),
        no_writes(),
        "rollback a, b with b committed: nothing at all may be written, not even for a"
    );
    check_eq!(s.contents(), before, "the storage after a rollback that aborted");
}

/// Rolling back again is no error and changes nothing.
#[test]
fn rollback_duplicate_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"old", 1, 2);
    prewritten_put(&s, b"a", b"1", b"a", 5, 100);
    check_eq!(rollback(&store, 5, &[b"a", b"b"]), ok_rollback(), "rollback a, b (start 5)");
    let after_first = s.contents();
    check_eq!(
        after_first,
        vec![
            (Cf::Default, vec![value_at(b"a", 1, b"old")]),
            (Cf::Lock, no_pairs()),
            (
                Cf::Write,
                sorted(vec![
                    rollback_at(b"a", 5),
                    write_at(b"a", 2, 1, WriteKind::Put),
                    rollback_at(b"b", 5),
                ])
            ),
        ],
        "the storage after rolling back a (prewritten), b (not) at start 5"
    );
    check_eq!(
        rollback(&store, 5, &[b"a", b"b"]),
        ok_rollback(),
        "rollback a, b (start 5) a second time"
    );
    check_eq!(s.contents(), after_first, "the storage after rolling back a, b twice");
}

/// A lock of another transaction on the key stays, with its value; this
/// transaction still gets its rollback record.
#[test]
fn rollback_leaves_another_txns_lock_4c() {
    let (s, store) = setup();
    prewritten_put(&s, b"k", b"v3", b"p", 3, 100);
    check_eq!(
        rollback(&store, 5, &[b"k"]),
        ok_rollback(),
        "rollback k (start 5), k locked by the txn started at 3"
    );
    check_eq!(
        s.pairs(Cf::Lock),
        vec![lock_at(b"k", &lock_of(b"p", 3, 100, WriteKind::Put))],
        "lock after rolling back k for txn 5: the lock of txn 3 stays"
    );
    check_eq!(
        s.pairs(Cf::Default),
        vec![value_at(b"k", 3, b"v3")],
        "default after rolling back k for txn 5: the value of txn 3 stays"
    );
    check_eq!(
        s.pairs(Cf::Write),
        vec![rollback_at(b"k", 5)],
        "write after rolling back k for txn 5: a rollback record for txn 5"
    );
}

/// After a rollback, a (late or repeated) prewrite of the same transaction
/// fails with a write conflict and writes nothing.
#[test]
fn rollback_then_prewrite_fails_4c() {
    let (s, store) = setup();
    prewritten_put(&s, b"a", b"1", b"a", 5, 100);
    check_eq!(
        rollback(&store, 5, &[b"a", b"b"]),
        ok_rollback(),
        "rollback a (prewritten), b (not yet) at start 5"
    );
    s.clear_written();
    for key in [&b"a"[..], b"b"] {
        let req = PrewriteBuilder::new(b"a", 5).put(key, b"late").ttl(100).build();
        let want = KeyError {
            conflict: Some(WriteConflict {
                start_ts: 5,
                conflict_ts: 5,
                key: key.to_vec(),
                primary: b"a".to_vec(),
            }),
            ..Default::default()
        };
        check_eq!(
            store.kv_prewrite(&req),
            PrewriteResponse { errors: vec![want], region_error: None },
            "prewrite {key:?} at 5 after the txn started at 5 rolled it back"
        );
    }
    check_eq!(s.written(), no_writes(), "a prewrite after a rollback must write nothing");
}

/// The rollback latches its keys (sorted, deduplicated).
#[test]
fn rollback_latches_its_keys_4c() {
    let (s, store) = setup();
    prewritten_put(&s, b"a", b"1", b"a", 5, 100);
    check_eq!(rollback(&store, 5, &[b"b", b"a", b"b"]), ok_rollback(), "rollback b, a, b");
    let acquired = store.latches.acquired();
    assert!(
        acquired.contains(&vec![b"a".to_vec(), b"b".to_vec()]),
        "rollback b, a, b: expected the latches [a, b] to be acquired, got acquired() = \
         {acquired:?}; {DOC}"
    );
}

// ----- KvCheckTxnStatus --------------------------------------------------------

/// An expired primary lock is rolled back: lock and value gone, a
/// rollback record, action TtlExpireRollback, ttl and commit version 0.
#[test]
fn check_txn_status_ttl_expired_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 3);
    let (old_start, old_commit) = (compose(NOW_MS - 20, 0), compose(NOW_MS - 10, 0));
    s.put_committed(b"p", b"old", old_start, old_commit);
    prewritten_put(&s, b"p", b"v", b"p", lock_ts, 10);
    let now = compose(NOW_MS + 100, 0);
    check_eq!(
        check_status(&store, b"p", lock_ts, now),
        status(0, 0, Action::TtlExpireRollback),
        "check status of p (lock ts {lock_ts}, ttl 10 ms) 100 ms later"
    );
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, vec![value_at(b"p", old_start, b"old")]),
            (Cf::Lock, no_pairs()),
            (
                Cf::Write,
                sorted(vec![
                    rollback_at(b"p", lock_ts),
                    write_at(b"p", old_commit, old_start, WriteKind::Put)
                ])
            ),
        ],
        "the storage after an expired primary lock on p was rolled back"
    );
}

/// A live primary lock: its TTL is answered, nothing else, nothing written.
#[test]
fn check_txn_status_ttl_not_expired_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 3);
    prewritten_put(&s, b"p", b"v", b"p", lock_ts, 3000);
    s.clear_written();
    let now = compose(NOW_MS + 100, 0);
    check_eq!(
        check_status(&store, b"p", lock_ts, now),
        status(3000, 0, Action::NoAction),
        "check status of p (lock ts {lock_ts}, ttl 3000 ms) 100 ms later"
    );
    check_eq!(s.written(), no_writes(), "check status of a live lock must write nothing");
}

/// The TTL counts whole milliseconds of the physical parts: a lock taken
/// at compose(p, 0) with TTL 10 lives at compose(p + 9, max logical) and
/// has expired at compose(p + 10, 0).
#[test]
fn check_txn_status_ttl_boundary_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 0);
    prewritten_put(&s, b"p", b"v", b"p", lock_ts, 10);
    s.clear_written();
    let alive = compose(NOW_MS + 9, MAX_LOGICAL);
    check_eq!(
        check_status(&store, b"p", lock_ts, alive),
        status(10, 0, Action::NoAction),
        "check status of p (lock at compose(p, 0), ttl 10) at compose(p + 9, {MAX_LOGICAL})"
    );
    check_eq!(s.written(), no_writes(), "check status of a live lock must write nothing");
    let expired = compose(NOW_MS + 10, 0);
    check_eq!(
        check_status(&store, b"p", lock_ts, expired),
        status(0, 0, Action::TtlExpireRollback),
        "check status of p (lock at compose(p, 0), ttl 10) at compose(p + 10, 0)"
    );
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, no_pairs()),
            (Cf::Lock, no_pairs()),
            (Cf::Write, vec![rollback_at(b"p", lock_ts)])
        ],
        "the storage after the lock on p expired at compose(p + 10, 0)"
    );
}

/// The logical part of the lock's ts does not count either: a lock taken
/// at compose(p, max logical) with TTL 10 has expired at compose(p + 10, 0).
#[test]
fn check_txn_status_ttl_ignores_logical_parts_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, MAX_LOGICAL);
    prewritten_put(&s, b"p", b"v", b"p", lock_ts, 10);
    s.clear_written();
    check_eq!(
        check_status(&store, b"p", lock_ts, compose(NOW_MS + 9, MAX_LOGICAL)),
        status(10, 0, Action::NoAction),
        "check status of p (lock at compose(p, {MAX_LOGICAL}), ttl 10) at compose(p + 9, \
         {MAX_LOGICAL})"
    );
    check_eq!(s.written(), no_writes(), "check status of a live lock must write nothing");
    check_eq!(
        check_status(&store, b"p", lock_ts, compose(NOW_MS + 10, 0)),
        status(0, 0, Action::TtlExpireRollback),
        "check status of p (lock at compose(p, {MAX_LOGICAL}), ttl 10) at compose(p + 10, 0)"
    );
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, no_pairs()),
            (Cf::Lock, no_pairs()),
            (Cf::Write, vec![rollback_at(b"p", lock_ts)])
        ],
        "the storage after the lock on p expired at compose(p + 10, 0)"
    );
}

/// A transaction rolled back on its primary: all zero, NoAction, nothing
/// written.
#[test]
fn check_txn_status_rolled_back_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 3);
    s.put_committed(b"p", b"old", compose(NOW_MS - 20, 0), compose(NOW_MS - 10, 0));
    s.put_write_record(b"p", WriteKind::Rollback, lock_ts, lock_ts);
    s.clear_written();
    check_eq!(
        check_status(&store, b"p", lock_ts, compose(NOW_MS + 100, 0)),
        status(0, 0, Action::NoAction),
        "check status of p (lock ts {lock_ts}), rolled back by that txn"
    );
    check_eq!(s.written(), no_writes(), "check status of a rolled back txn must write nothing");
}

/// A transaction committed on its primary: its commit ts, NoAction,
/// nothing written (also when a later transaction wrote the key since, and
/// for a committed Delete).
#[test]
fn check_txn_status_committed_4c() {
    for kind in [WriteKind::Put, WriteKind::Delete] {
        let (s, store) = setup();
        let lock_ts = compose(NOW_MS, 3);
        let commit_ts = compose(NOW_MS + 1, 0);
        s.put_write_record(b"p", kind, lock_ts, commit_ts);
        s.put_committed(b"p", b"later", compose(NOW_MS + 2, 0), compose(NOW_MS + 3, 0));
        s.clear_written();
        check_eq!(
            check_status(&store, b"p", lock_ts, compose(NOW_MS + 100, 0)),
            status(0, commit_ts, Action::NoAction),
            "check status of p (lock ts {lock_ts}), a {kind:?} of that txn committed at \
             {commit_ts}, a later txn committed p after it"
        );
        check_eq!(s.written(), no_writes(), "check status of a committed txn must write nothing");
    }
}

/// Neither lock nor write of the transaction on its primary: a rollback
/// record is written (so it can never commit), LockNotExistRollback.
#[test]
fn check_txn_status_no_lock_no_write_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 3);
    let (old_start, old_commit) = (compose(NOW_MS - 20, 0), compose(NOW_MS - 10, 0));
    s.put_committed(b"p", b"old", old_start, old_commit);
    check_eq!(
        check_status(&store, b"p", lock_ts, compose(NOW_MS + 1, 0)),
        status(0, 0, Action::LockNotExistRollback),
        "check status of p (lock ts {lock_ts}), no lock and no write of that txn"
    );
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, vec![value_at(b"p", old_start, b"old")]),
            (Cf::Lock, no_pairs()),
            (
                Cf::Write,
                sorted(vec![
                    rollback_at(b"p", lock_ts),
                    write_at(b"p", old_commit, old_start, WriteKind::Put)
                ])
            ),
        ],
        "the storage after check status of p found no lock and no write of that txn"
    );
}

/// A lock of another transaction on the primary (even an expired one) is
/// not this transaction's: it stays, and the primary is treated as having
/// no lock (a rollback record for this transaction).
#[test]
fn check_txn_status_another_txns_lock_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 3);
    let other_ts = compose(NOW_MS - 50, 0);
    prewritten_put(&s, b"p", b"theirs", b"p", other_ts, 1);
    check_eq!(
        check_status(&store, b"p", lock_ts, compose(NOW_MS + 100, 0)),
        status(0, 0, Action::LockNotExistRollback),
        "check status of p (lock ts {lock_ts}), p locked by the txn started at {other_ts} \
         (expired)"
    );
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, vec![value_at(b"p", other_ts, b"theirs")]),
            (Cf::Lock, vec![lock_at(b"p", &lock_of(b"p", other_ts, 1, WriteKind::Put))]),
            (Cf::Write, vec![rollback_at(b"p", lock_ts)]),
        ],
        "the storage after check status of p for another txn than the lock's"
    );
}

/// Check status latches the primary.
#[test]
fn check_txn_status_latches_the_primary_4c() {
    let (s, store) = setup();
    let lock_ts = compose(NOW_MS, 3);
    prewritten_put(&s, b"p", b"v", b"p", lock_ts, 10);
    check_eq!(
        check_status(&store, b"p", lock_ts, compose(NOW_MS + 100, 0)),
        status(0, 0, Action::TtlExpireRollback),
        "check status of p (lock ts {lock_ts}, ttl 10 ms) 100 ms later"
    );
    let acquired = store.latches.acquired();
    assert!(
        acquired.contains(&vec![b"p".to_vec()]),
        "check status of p: expected the latch [p] to be acquired, got acquired() = \
         {acquired:?}; {DOC}"
    );
}

// ----- KvResolveLock -------------------------------------------------------------

/// The transaction has no locks: nothing to do, nothing written (other
/// transactions' data and locks stay).
#[test]
fn resolve_empty_4c() {
    for commit in [0, 8] {
        let (s, store) = setup();
        s.put_committed(b"a", b"1", 5, 6);
        prewritten_put(&s, b"b", b"2", b"b", 3, 100);
        s.clear_written();
        check_eq!(
            resolve(&store, 5, commit),
            ok_resolve(),
            "resolve txn 5 (commit {commit}), no locks of txn 5"
        );
        check_eq!(s.written(), no_writes(), "resolve of a txn without locks must write nothing");
    }
}

/// Three prewritten keys of the txn (one a Delete).
fn three_locked_keys(s: &MemStorage) {
    prewritten_put(s, b"a", b"1", b"a", 5, 100);
    s.put_lock(b"b", &lock_of(b"a", 5, 100, WriteKind::Delete));
    prewritten_put(s, b"c", b"3", b"a", 5, 100);
}

/// Resolve with a commit ts: every lock of the txn becomes a write record
/// of its kind at the commit ts; locks gone, values stay.
#[test]
fn resolve_commit_4c() {
    let (s, store) = setup();
    three_locked_keys(&s);
    check_eq!(resolve(&store, 5, 8), ok_resolve(), "resolve txn 5 at commit 8, locks on a, b, c");
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, vec![value_at(b"a", 5, b"1"), value_at(b"c", 5, b"3")]),
            (Cf::Lock, no_pairs()),
            (
                Cf::Write,
                vec![
                    write_at(b"a", 8, 5, WriteKind::Put),
                    write_at(b"b", 8, 5, WriteKind::Delete),
                    write_at(b"c", 8, 5, WriteKind::Put),
                ]
            ),
        ],
        "the storage after resolving txn 5 (a = 1, del b, c = 3) at commit 8"
    );
}

/// Resolve with commit version 0: every lock of the txn is rolled back;
/// locks and values gone, rollback records.
#[test]
fn resolve_rollback_4c() {
    let (s, store) = setup();
    three_locked_keys(&s);
    check_eq!(resolve(&store, 5, 0), ok_resolve(), "resolve txn 5 with rollback, locks on a, b, c");
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, no_pairs()),
            (Cf::Lock, no_pairs()),
            (Cf::Write, vec![rollback_at(b"a", 5), rollback_at(b"b", 5), rollback_at(b"c", 5)]),
        ],
        "the storage after resolving txn 5 (a = 1, del b, c = 3) with rollback"
    );
}

/// Locks of other transactions (before, between and after the txn's keys)
/// stay, with their values, whether the txn commits or rolls back.
#[test]
fn resolve_leaves_other_txns_locks_4c() {
    for commit in [8, 0] {
        let (s, store) = setup();
        prewritten_put(&s, b"a", b"other3", b"a", 3, 100);
        prewritten_put(&s, b"b", b"1", b"b", 5, 100);
        prewritten_put(&s, b"c", b"other7", b"c", 7, 100);
        prewritten_put(&s, b"d", b"2", b"b", 5, 100);
        prewritten_put(&s, b"e", b"other4", b"e", 4, 100);
        check_eq!(
            resolve(&store, 5, commit),
            ok_resolve(),
            "resolve txn 5 (commit {commit}), locks of txn 5 on b, d and of txns 3, 7, 4 on a, c, e"
        );
        let theirs = vec![
            lock_at(b"a", &lock_of(b"a", 3, 100, WriteKind::Put)),
            lock_at(b"c", &lock_of(b"c", 7, 100, WriteKind::Put)),
            lock_at(b"e", &lock_of(b"e", 4, 100, WriteKind::Put)),
        ];
        check_eq!(
            s.pairs(Cf::Lock),
            theirs,
            "lock after resolving txn 5 (commit {commit}): the other txns' locks stay"
        );
        let mut default = vec![
            value_at(b"a", 3, b"other3"),
            value_at(b"c", 7, b"other7"),
            value_at(b"e", 4, b"other4"),
        ];
        let write = if commit == 0 {
            vec![rollback_at(b"b", 5), rollback_at(b"d", 5)]
        } else {
            default.extend([value_at(b"b", 5, b"1"), value_at(b"d", 5, b"2")]);
            vec![write_at(b"b", 8, 5, WriteKind::Put), write_at(b"d", 8, 5, WriteKind::Put)]
        };
        check_eq!(
            s.pairs(Cf::Default),
            sorted(default),
            "default after resolving txn 5 (commit {commit}): the other txns' values stay"
        );
        check_eq!(
            s.pairs(Cf::Write),
            write,
            "write after resolving txn 5 (commit {commit}): records for b and d only"
        );
    }
}

/// The txn already committed some keys (a partly resolved txn): resolving
/// at the same commit ts commits the rest and leaves the committed keys
/// alone.
#[test]
fn resolve_commit_already_committed_keys_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 5, 8);
    prewritten_put(&s, b"b", b"2", b"a", 5, 100);
    check_eq!(resolve(&store, 5, 8), ok_resolve(), "resolve txn 5 at 8, a already committed at 8");
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, vec![value_at(b"a", 5, b"1"), value_at(b"b", 5, b"2")]),
            (Cf::Lock, no_pairs()),
            (
                Cf::Write,
                vec![write_at(b"a", 8, 5, WriteKind::Put), write_at(b"b", 8, 5, WriteKind::Put)]
            ),
        ],
        "the storage after resolving txn 5 at 8 with a already committed"
    );
}

/// The txn already rolled back some keys: resolving with rollback rolls
/// back the rest and leaves the rolled back keys alone.
#[test]
fn resolve_rollback_already_rolled_back_keys_4c() {
    let (s, store) = setup();
    s.put_write_record(b"a", WriteKind::Rollback, 5, 5);
    prewritten_put(&s, b"b", b"2", b"a", 5, 100);
    check_eq!(
        resolve(&store, 5, 0),
        ok_resolve(),
        "resolve txn 5 with rollback, a already rolled back"
    );
    check_eq!(
        s.contents(),
        vec![
            (Cf::Default, no_pairs()),
            (Cf::Lock, no_pairs()),
            (Cf::Write, vec![rollback_at(b"a", 5), rollback_at(b"b", 5)]),
        ],
        "the storage after resolving txn 5 with rollback, a already rolled back"
    );
}

/// A lock resolved the same way meanwhile (after the lock CF was read,
/// before the keys were latched) is fine: no error, nothing written for it.
#[test]
fn resolve_lock_resolved_meanwhile_the_same_way_4c() {
    // Committed at 8 meanwhile; resolve at 8.
    let s = MemStorage::new();
    prewritten_put(&s, b"k", b"v", b"k", 5, 100);
    let commit_k = vec![
        Modify::delete(Cf::Lock, b"k"),
        Modify::put(
            Cf::Write,
            &encode_key(b"k", 8),
            &Write { start_ts: 5, kind: WriteKind::Put }.to_bytes(),
        ),
    ];
    s.clear_written();
    let store = store_with_meanwhile(&s, commit_k);
    check_eq!(
        resolve(&store, 5, 8),
        ok_resolve(),
        "resolve txn 5 at 8, k committed at 8 meanwhile"
    );
    check_eq!(s.written(), no_writes(), "resolve of a lock committed meanwhile must write nothing");

    // Rolled back meanwhile; resolve with rollback.
    let s = MemStorage::new();
    prewritten_put(&s, b"k", b"v", b"k", 5, 100);
    let rollback_k = vec![
        Modify::delete(Cf::Lock, b"k"),
        Modify::delete(Cf::Default, &encode_key(b"k", 5)),
        Modify::put(Cf::Write, &rollback_at(b"k", 5).0, &rollback_at(b"k", 5).1),
    ];
    s.clear_written();
    let store = store_with_meanwhile(&s, rollback_k);
    check_eq!(
        resolve(&store, 5, 0),
        ok_resolve(),
        "resolve txn 5 with rollback, k rolled back meanwhile"
    );
    check_eq!(
        s.written(),
        no_writes(),
        "resolve of a lock rolled back meanwhile must write nothing"
    );
}

/// Resolving with rollback a key that got committed meanwhile (after the
/// lock CF was read, before the keys were latched): the rollback's abort
/// error is the resolve's, and nothing is written.
#[test]
fn resolve_rollback_of_a_key_committed_meanwhile_is_an_abort_4c() {
    let s = MemStorage::new();
    prewritten_put(&s, b"a", b"1", b"a", 5, 100);
    prewritten_put(&s, b"b", b"2", b"a", 5, 100);
    let commit_a = vec![
        Modify::delete(Cf::Lock, b"a"),
        Modify::put(
            Cf::Write,
            &encode_key(b"a", 8),
            &Write { start_ts: 5, kind: WriteKind::Put }.to_bytes(),
        ),
    ];
    s.clear_written();
    let store = store_with_meanwhile(&s, commit_a);
    let resp = resolve(&store, 5, 0);
    assert!(
        is_abort(resp.error.as_ref()) && resp.region_error.is_none(),
        "resolve txn 5 with rollback, locks on a and b, a committed at 8 meanwhile: expected an \
         error with abort set, got {resp:?}; {DOC}"
    );
    check_eq!(s.written(), no_writes(), "a resolve that aborted must write nothing");
}

/// Resolving with a commit ts a key that got rolled back meanwhile: the
/// commit's abort error is the resolve's, and nothing is written.
#[test]
fn resolve_commit_of_a_key_rolled_back_meanwhile_is_an_abort_4c() {
    let s = MemStorage::new();
    prewritten_put(&s, b"a", b"1", b"a", 5, 100);
    prewritten_put(&s, b"b", b"2", b"a", 5, 100);
    let rollback_b = vec![
        Modify::delete(Cf::Lock, b"b"),
        Modify::delete(Cf::Default, &encode_key(b"b", 5)),
        Modify::put(Cf::Write, &rollback_at(b"b", 5).0, &rollback_at(b"b", 5).1),
    ];
    s.clear_written();
    let store = store_with_meanwhile(&s, rollback_b);
    let resp = resolve(&store, 5, 8);
    assert!(
        is_abort(resp.error.as_ref()) && resp.region_error.is_none(),
        "resolve txn 5 at 8, locks on a and b, b rolled back meanwhile: expected an error with \
         abort set, got {resp:?}; {DOC}"
    );
    check_eq!(s.written(), no_writes(), "a resolve that aborted must write nothing");
}

// ----- KvScan ----------------------------------------------------------------------

/// Scanning an empty storage gives no pairs.
#[test]
fn scan_empty_4c() {
    let (_s, store) = setup();
    check_eq!(scan(&store, b"", 10, 100), scanned(vec![]), "scan from \"\" (limit 10) of nothing");
}

/// A limit of 0 gives no pairs.
#[test]
fn scan_limit_zero_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_committed(b"b", b"2", 1, 2);
    check_eq!(scan(&store, b"", 0, 100), scanned(vec![]), "scan from \"\" with limit 0");
}

/// Several keys with several versions each: the newest version committed
/// at or before the scan's ts, one per key, in key order.
#[test]
fn scan_all_4c() {
    let (s, store) = setup();
    s.put_committed(b"c", b"c1", 1, 2);
    s.put_committed(b"a", b"a1", 1, 2);
    s.put_committed(b"a", b"a2", 3, 4);
    s.put_committed(b"b", b"b1", 2, 3);
    s.put_committed(b"c", b"c2", 4, 6);
    s.put_committed(b"a", b"a3", 5, 7);
    s.put_committed(b"b", b"b2", 6, 8);
    s.clear_written();
    check_eq!(
        scan(&store, b"", 100, 10),
        scanned(vec![kv(b"a", b"a3"), kv(b"b", b"b2"), kv(b"c", b"c2")]),
        "scan from \"\" at 10: a = a1@2, a2@4, a3@7; b = b1@3, b2@8; c = c1@2, c2@6"
    );
    check_eq!(
        scan(&store, b"", 100, 6),
        scanned(vec![kv(b"a", b"a2"), kv(b"b", b"b1"), kv(b"c", b"c2")]),
        "scan from \"\" at 6: a = a1@2, a2@4, a3@7; b = b1@3, b2@8; c = c1@2, c2@6"
    );
    check_eq!(s.written(), no_writes(), "a scan must write nothing");
}

/// The scan stops after `limit` pairs.
#[test]
fn scan_limit_4c() {
    let (s, store) = setup();
    for (i, key) in [b"a", b"b", b"c", b"d", b"e"].into_iter().enumerate() {
        s.put_committed(key, &[b'0' + i as u8], 1, 2);
        s.put_committed(key, b"newer", 3, 4);
    }
    for limit in 1..=4u32 {
        let want: Vec<KvPair> =
            [b"a", b"b", b"c", b"d"][..limit as usize].iter().map(|k| kv(*k, b"newer")).collect();
        check_eq!(
            scan(&store, b"", limit, 10),
            scanned(want),
            "scan from \"\" at 10 with limit {limit}, keys a to e"
        );
    }
    check_eq!(scan(&store, b"", 5, 10).pairs.len(), 5, "pairs of a scan with limit 5, keys a to e");
    check_eq!(scan(&store, b"", 6, 10).pairs.len(), 5, "pairs of a scan with limit 6, keys a to e");
    check_eq!(
        scan(&store, b"", 3, 2),
        scanned(vec![kv(b"a", b"0"), kv(b"b", b"1"), kv(b"c", b"2")]),
        "scan from \"\" at 2 with limit 3, keys a to e"
    );
}

/// A key whose visible write is a Delete is skipped (and does not count
/// toward the limit); before the delete its value shows.
#[test]
fn scan_deleted_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_committed(b"b", b"2", 1, 2);
    s.put_write_record(b"b", WriteKind::Delete, 4, 5);
    s.put_committed(b"c", b"3", 1, 2);
    s.put_write_record(b"d", WriteKind::Delete, 4, 5);
    s.put_committed(b"e", b"5", 1, 2);
    check_eq!(
        scan(&store, b"", 3, 10),
        scanned(vec![kv(b"a", b"1"), kv(b"c", b"3"), kv(b"e", b"5")]),
        "scan from \"\" at 10 with limit 3: b deleted at 5, d only a delete at 5"
    );
    check_eq!(
        scan(&store, b"", 10, 4),
        scanned(vec![kv(b"a", b"1"), kv(b"b", b"2"), kv(b"c", b"3"), kv(b"e", b"5")]),
        "scan from \"\" at 4: b deleted at 5 (later than the scan)"
    );
}

/// Versions committed after the scan's ts are invisible: the older one
/// shows, and a key with only newer versions is left out.
#[test]
fn scan_newer_versions_invisible_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"old", 1, 2);
    s.put_committed(b"a", b"new", 6, 9);
    s.put_committed(b"b", b"later", 6, 9);
    s.put_committed(b"c", b"old", 1, 5);
    s.put_committed(b"c", b"new", 5, 6);
    check_eq!(
        scan(&store, b"", 10, 5),
        scanned(vec![kv(b"a", b"old"), kv(b"c", b"old")]),
        "scan from \"\" at 5: a = old@2, new@9; b = later@9; c = old@5, new@6"
    );
}

/// A rollback record is skipped: the older version shows.
#[test]
fn scan_skips_rollback_records_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"old", 1, 2);
    s.put_write_record(b"a", WriteKind::Rollback, 6, 6);
    s.put_write_record(b"b", WriteKind::Rollback, 6, 6);
    s.put_committed(b"c", b"c", 1, 2);
    check_eq!(
        scan(&store, b"", 10, 10),
        scanned(vec![kv(b"a", b"old"), kv(b"c", b"c")]),
        "scan from \"\" at 10: a = old@2, rollback@6; b = rollback@6 only; c = c@2"
    );
}

/// A key locked by a txn started at or before the scan's ts: a pair with
/// the `locked` error (the lock's LockInfo) and no value, once, counting
/// toward the limit.
#[test]
fn scan_locked_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_committed(b"b", b"2", 1, 2);
    prewritten_put(&s, b"b", b"new", b"pk", 5, 3000);
    s.put_committed(b"c", b"3", 1, 2);
    s.put_committed(b"d", b"4", 1, 2);
    for version in [5, 10] {
        check_eq!(
            scan(&store, b"", 10, version),
            scanned(vec![
                kv(b"a", b"1"),
                locked_kv(b"b", b"pk", 5, 3000),
                kv(b"c", b"3"),
                kv(b"d", b"4"),
            ]),
            "scan from \"\" at {version}: b = 2@2 and locked by the txn started at 5 (primary \
             pk, ttl 3000)"
        );
    }
    check_eq!(
        scan(&store, b"", 2, 10),
        scanned(vec![kv(b"a", b"1"), locked_kv(b"b", b"pk", 5, 3000)]),
        "scan from \"\" at 10 with limit 2: b locked at 5 counts toward the limit"
    );
    check_eq!(
        scan(&store, b"b", 1, 10),
        scanned(vec![locked_kv(b"b", b"pk", 5, 3000)]),
        "scan from b at 10 with limit 1: b locked at 5"
    );
}

/// A lock taken after the scan's ts does not matter: the value shows.
#[test]
fn scan_ignores_later_locks_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_committed(b"b", b"2", 1, 2);
    prewritten_put(&s, b"b", b"new", b"pk", 5, 3000);
    prewritten_put(&s, b"c", b"new", b"pk", 5, 3000);
    s.put_committed(b"d", b"4", 1, 2);
    check_eq!(
        scan(&store, b"", 10, 4),
        scanned(vec![kv(b"a", b"1"), kv(b"b", b"2"), kv(b"d", b"4")]),
        "scan from \"\" at 4: b = 2@2 and locked at 5, c only locked at 5"
    );
}

/// A locked key with no committed version yet is still reported.
#[test]
fn scan_locked_key_without_versions_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    prewritten_put(&s, b"b", b"new", b"a", 5, 100);
    s.put_lock(b"c", &lock_of(b"a", 5, 100, WriteKind::Delete));
    s.put_lock(b"e", &lock_of(b"e", 3, 50, WriteKind::Put));
    s.put_committed(b"d", b"4", 1, 2);
    check_eq!(
        scan(&store, b"", 10, 10),
        scanned(vec![
            kv(b"a", b"1"),
            locked_kv(b"b", b"a", 5, 100),
            locked_kv(b"c", b"a", 5, 100),
            kv(b"d", b"4"),
            locked_kv(b"e", b"e", 3, 50),
        ]),
        "scan from \"\" at 10: b, c locked at 5 and e at 3, none committed"
    );
}

/// A start key in the middle: the keys before it are left out, whether the
/// start key exists or not.
#[test]
fn scan_from_the_middle_4c() {
    let (s, store) = setup();
    for key in [&b"a"[..], b"b", b"ba", b"c", b"d"] {
        s.put_committed(key, key, 1, 2);
        s.put_committed(key, b"invisible", 11, 12);
    }
    s.put_lock(b"a", &lock_of(b"a", 3, 100, WriteKind::Put));
    s.put_lock(b"bb", &lock_of(b"bb", 3, 100, WriteKind::Put));
    check_eq!(
        scan(&store, b"b", 10, 10),
        scanned(vec![
            kv(b"b", b"b"),
            kv(b"ba", b"ba"),
            locked_kv(b"bb", b"bb", 3, 100),
            kv(b"c", b"c"),
            kv(b"d", b"d"),
        ]),
        "scan from b at 10: a (locked), b, ba, bb (locked), c, d"
    );
    check_eq!(
        scan(&store, b"bab", 2, 10),
        scanned(vec![locked_kv(b"bb", b"bb", 3, 100), kv(b"c", b"c")]),
        "scan from bab (no such key) at 10, limit 2: a (locked), b, ba, bb (locked), c, d"
    );
    check_eq!(
        scan(&store, b"d\0", 10, 10),
        scanned(vec![]),
        "scan from d\\0 at 10: every key is before it"
    );
}

/// Keys that are prefixes of each other and binary keys (0x00, 0xFF bytes,
/// 8-byte group boundaries) come out in raw byte order, values and locks
/// merged.
#[test]
fn scan_binary_and_prefix_keys_4c() {
    let (s, store) = setup();
    let keys: [&[u8]; 11] = [
        b"",
        b"\x00",
        b"a",
        b"a\x00",
        b"a\x00\x00",
        b"ab",
        b"1234567",
        b"12345678",
        b"12345678\x00",
        b"\xff",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ];
    let locked: [&[u8]; 3] = [b"a\x00", b"12345678", b"\xff"];
    for key in keys {
        if locked.contains(&key) {
            s.put_lock(key, &lock_of(b"pk", 4, 9, WriteKind::Put));
        } else {
            s.put_committed(key, &[key, b"!"].concat(), 1, 2);
        }
    }
    let mut sorted_keys = keys.to_vec();
    sorted_keys.sort();
    let want: Vec<KvPair> = sorted_keys
        .iter()
        .map(|key| {
            if locked.contains(key) {
                locked_kv(key, b"pk", 4, 9)
            } else {
                kv(key, &[*key, b"!"].concat())
            }
        })
        .collect();
    check_eq!(
        scan(&store, b"", 100, 10),
        scanned(want.clone()),
        "scan from \"\" at 10 over prefix and binary keys (some locked at 4)"
    );
    check_eq!(
        scan(&store, b"a\x00", 3, 10),
        scanned(want[6..9].to_vec()),
        "scan from a\\0 at 10 with limit 3 over prefix and binary keys"
    );
}

/// A scan writes nothing, even over locks, deletes and rollbacks.
#[test]
fn scan_writes_nothing_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_write_record(b"a", WriteKind::Rollback, 3, 3);
    prewritten_put(&s, b"b", b"2", b"b", 4, 1);
    s.put_write_record(b"c", WriteKind::Delete, 1, 2);
    let before = s.contents();
    s.clear_written();
    for (start, limit, version) in [(&b""[..], 10, 10), (b"b", 1, 3), (b"", 0, 10)] {
        let _ = scan(&store, start, limit, version);
    }
    check_eq!(s.written(), no_writes(), "scans must write nothing");
    check_eq!(s.contents(), before, "the storage after scans");
}

/// Scans agree with a model of the data on generated keys, versions,
/// deletes, rollbacks and locks (a fixed seed).
#[test]
fn scan_matches_a_model_4c() {
    /// A small deterministic generator (no dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }
    const SEED: u64 = 0x4c4c_4c4c;
    println!("scan_matches_a_model_4c: seed {SEED:#x}");
    let mut g = Lcg(SEED);
    let alphabet = [0x00u8, b'a', b'b', 0xFF];
    let (s, store) = setup();
    // The model: per key, its writes (commit, start, kind, value) and lock.
    type Versions = Vec<(u64, u64, WriteKind, Vec<u8>)>;
    let mut model: BTreeMap<Vec<u8>, (Versions, Option<Lock>)> = BTreeMap::new();
    for _ in 0..60 {
        let len = (g.next() % 4) as usize;
        let key: Vec<u8> = (0..len).map(|_| alphabet[(g.next() % 4) as usize]).collect();
        let entry = model.entry(key.clone()).or_default();
        let start = 1 + 3 * (g.next() % 20);
        let used = entry.0.iter().any(|v| v.1 == start || v.0 == start + 1 || v.0 == start);
        let lock_used = entry.1.as_ref().is_some_and(|l| l.ts == start);
        if used || lock_used {
            continue;
        }
        match g.next() % 5 {
            0 | 1 => {
                let value = format!("{key:?}@{start}").into_bytes();
                s.put_committed(&key, &value, start, start + 1);
                entry.0.push((start + 1, start, WriteKind::Put, value));
            }
            2 => {
                s.put_write_record(&key, WriteKind::Delete, start, start + 1);
                entry.0.push((start + 1, start, WriteKind::Delete, vec![]));
            }
            3 => {
                s.put_write_record(&key, WriteKind::Rollback, start, start);
                entry.0.push((start, start, WriteKind::Rollback, vec![]));
            }
            _ => {
                if entry.1.is_none() {
                    let lock = lock_of(b"pk", start, start * 10, WriteKind::Put);
                    prewritten_put(&s, &key, b"uncommitted", b"pk", start, start * 10);
                    entry.1 = Some(lock);
                }
            }
        }
    }
    for version in [0, 1, 2, 10, 20, 31, 45, 61, 100] {
        for start_key in [&b""[..], b"a", b"a\xff", b"b", b"\xff"] {
            let mut want = Vec::new();
            for (key, (versions, lock)) in model.range(start_key.to_vec()..) {
                if let Some(lock) = lock.as_ref().filter(|l| l.ts <= version) {
                    want.push(locked_kv(key, &lock.primary, lock.ts, lock.ttl));
                    continue;
                }
                let visible = versions
                    .iter()
                    .filter(|v| v.0 <= version && v.2 != WriteKind::Rollback)
                    .max_by_key(|v| v.0);
                if let Some((_, _, WriteKind::Put, value)) = visible {
                    want.push(kv(key, value));
                }
            }
            for limit in [1, 3, 1000] {
                let mut want = want.clone();
                want.truncate(limit);
                check_eq!(
                    scan(&store, start_key, limit as u32, version),
                    scanned(want),
                    "scan from {start_key:?} at {version} with limit {limit} over generated data \
                     (seed {SEED:#x}; model {model:?})"
                );
            }
        }
    }
}

// ----- Scanner ----------------------------------------------------------------------

/// The Scanner yields Value and Locked items in key order, then None, and
/// None again after that.
#[test]
fn scanner_yields_items_then_none_4c() {
    let (s, _store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_committed(b"a", b"1b", 3, 4);
    s.put_write_record(b"b", WriteKind::Delete, 1, 2);
    s.put_committed(b"c", b"3", 1, 2);
    prewritten_put(&s, b"c", b"new", b"c", 5, 77);
    s.put_committed(b"d", b"4", 1, 2);
    s.put_write_record(b"d", WriteKind::Rollback, 6, 6);
    s.put_lock(b"e", &lock_of(b"c", 5, 77, WriteKind::Delete));
    s.put_lock(b"f", &lock_of(b"f", 50, 1, WriteKind::Put));
    let (items, ends) = without_hanging("Scanner from \"\" at 10", move || {
        let reader = s.reader(&Context::default()).expect("an in-memory reader");
        let mut scanner = Scanner::new(reader, b"", 10);
        let items: Vec<_> =
            (0..4).map(|_| scanner.next().expect("Scanner::next over good data")).collect();
        let ends: Vec<_> =
            (0..3).map(|_| scanner.next().expect("Scanner::next at the end")).collect();
        (items, ends)
    });
    check_eq!(
        items,
        vec![
            Some((b"a".to_vec(), ScanItem::Value(b"1b".to_vec()))),
            Some((b"c".to_vec(), ScanItem::Locked(lock_of(b"c", 5, 77, WriteKind::Put)))),
            Some((b"d".to_vec(), ScanItem::Value(b"4".to_vec()))),
            Some((b"e".to_vec(), ScanItem::Locked(lock_of(b"c", 5, 77, WriteKind::Delete)))),
        ],
        "Scanner from \"\" at 10: a = 1@2, 1b@4; b deleted; c = 3@2 locked at 5; d = 4@2, \
         rollback@6; e locked at 5; f locked at 50"
    );
    for (call, end) in (1..).zip(ends) {
        check_eq!(end, None, "Scanner::next call {call} after the last item");
    }
}

/// A Scanner from a start key at a ts yields the same items as the scan.
#[test]
fn scanner_from_a_start_key_4c() {
    let (s, _store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    s.put_committed(b"b", b"2", 1, 2);
    s.put_committed(b"b", b"2new", 7, 8);
    s.put_lock(b"bb", &lock_of(b"x", 3, 5, WriteKind::Put));
    s.put_committed(b"c", b"3", 1, 2);
    let items = without_hanging("Scanner from b at 5", move || {
        let reader = s.reader(&Context::default()).expect("an in-memory reader");
        let mut scanner = Scanner::new(reader, b"b", 5);
        let mut items = Vec::new();
        while let Some(item) = scanner.next().expect("Scanner::next over good data") {
            items.push(item);
            assert!(
                items.len() <= 10,
                "Scanner from b at 5 over 3 keys: more than 10 items; {DOC}"
            );
        }
        items
    });
    check_eq!(
        items,
        vec![
            (b"b".to_vec(), ScanItem::Value(b"2".to_vec())),
            (b"bb".to_vec(), ScanItem::Locked(lock_of(b"x", 3, 5, WriteKind::Put))),
            (b"c".to_vec(), ScanItem::Value(b"3".to_vec())),
        ],
        "Scanner from b at 5: a = 1@2; b = 2@2, 2new@8; bb locked at 3; c = 3@2"
    );
}

/// The raw API may write anything into the `lock` and `write` CFs. A
/// record that does not decode belongs to no transaction and no key: a
/// resolve of a transaction, and a scan over it, still work for every
/// other key.
#[test]
fn scan_and_resolve_skip_records_that_do_not_decode_4c() {
    let (s, store) = setup();
    s.put_committed(b"a", b"1", 1, 2);
    prewritten_put(&s, b"b", b"2", b"b", 10, 100);
    s.put_committed(b"c", b"3", 1, 2);
    s.put_fixture(vec![
        Modify::put(Cf::Lock, b"a0", b"not a lock"),
        Modify::put(Cf::Write, b"b raw", b"not a write record"),
    ]);
    let what = "with a raw record \"a0\" in the lock CF and \"b raw\" in the write CF";
    check_eq!(
        scan(&store, b"", 10, 5),
        scanned(vec![kv(b"a", b"1"), kv(b"c", b"3")]),
        "scan from \"\" at 5 {what}"
    );
    check_eq!(resolve(&store, 10, 11), ok_resolve(), "resolve the txn at 10, commit at 11, {what}");
    check_eq!(
        scan(&store, b"", 10, 20),
        scanned(vec![kv(b"a", b"1"), kv(b"b", b"2"), kv(b"c", b"3")]),
        "scan from \"\" at 20 after the resolve, {what}"
    );
}

/// A scan's answer carries at most `MAX_SCAN_BYTES` of keys and values
/// (it must fit in one gRPC message): it stops before the pair that
/// would cross the budget, and never answers nothing while pairs are left.
#[test]
fn scan_stops_at_the_byte_budget_4c() {
    let (s, store) = setup();
    let big = vec![b'v'; 1024 * 1024];
    for key in [b"a", b"b", b"c", b"d", b"e", b"f"] {
        s.put_committed(key, &big, 1, 2);
    }
    let first = scan(&store, b"", 10, 5);
    let bytes: usize = first.pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
    assert!(
        bytes <= tinykv_storage::MAX_SCAN_BYTES && first.pairs.len() == 3,
        "a scan of six 1 MiB values with limit 10 must stop before the fourth pair (it would \
         cross MAX_SCAN_BYTES = {}; count the pairs with a ScanBudget): got {} pairs, {bytes} \
         bytes; {DOC}",
        tinykv_storage::MAX_SCAN_BYTES,
        first.pairs.len()
    );
    let rest = scan(&store, b"c\0", 10, 5);
    let keys: Vec<&[u8]> = rest.pairs.iter().map(|p| p.key.as_slice()).collect();
    check_eq!(keys, vec![&b"d"[..], b"e", b"f"], "the keys of the scan from \"c\\0\"");
}
