//! Graded suite of lab 4a: `MvccTxn`.
//!
//! Each test builds the column families by hand in a `MemStorage` (the
//! exact byte layout of `docs/src/lab4-transactions.md`), runs one
//! `MvccTxn` method at a start timestamp, and checks what it read or the
//! exact modifications it collected.

use tinykv_engine::Cf;
use tinykv_storage::{Context, Modify, Storage};
use tinykv_transaction::codec::encode_key;
use tinykv_transaction::{Lock, MemStorage, MvccTxn, Write, WriteKind};

// ----- helpers ---------------------------------------------------------------

fn store() -> MemStorage {
    MemStorage::new()
}

fn txn(s: &MemStorage, start_ts: u64) -> MvccTxn {
    MvccTxn::new(s.reader(&Context::default()).expect("a reader"), start_ts)
}

fn get(s: &MemStorage, key: &[u8], start_ts: u64) -> Option<Vec<u8>> {
    txn(s, start_ts).get_value(key).expect("get_value")
}

const DOC: &str = "see docs/src/lab4-transactions.md, \"Lab 4a\"";

// ----- writing: exact modifications -----------------------------------------

/// `put_write` records the write in the `write` CF under the key encoded
/// with the **commit** ts, as kind byte plus big-endian start ts.
#[test]
fn put_write_uses_the_commit_ts_and_exact_bytes_4a() {
    let s = store();
    let mut t = txn(&s, 10);
    t.put_write(b"k", 12, &Write { start_ts: 10, kind: WriteKind::Put });
    let want = Modify::put(Cf::Write, &encode_key(b"k", 12), &[1, 0, 0, 0, 0, 0, 0, 0, 10]);
    assert_eq!(t.writes(), &[want], "put_write(k, commit 12, Put@10): {DOC}");
}

/// `put_lock` puts the lock's bytes in the `lock` CF under the raw key.
#[test]
fn put_lock_writes_the_exact_bytes_4a() {
    let s = store();
    let mut t = txn(&s, 5);
    let lock = Lock { primary: b"pk".to_vec(), ts: 5, ttl: 100, kind: WriteKind::Delete };
    t.put_lock(b"k", &lock);
    assert_eq!(t.writes(), &[Modify::put(Cf::Lock, b"k", &lock.to_bytes())], "{DOC}");
}

/// `delete_lock` deletes the raw key from the `lock` CF.
#[test]
fn delete_lock_removes_the_lock_4a() {
    let s = store();
    let mut t = txn(&s, 5);
    t.delete_lock(b"k");
    assert_eq!(t.writes(), &[Modify::delete(Cf::Lock, b"k")], "{DOC}");
}

/// `put_value` puts the value in `default` under the key encoded with the
/// transaction's **start** ts.
#[test]
fn put_value_uses_the_start_ts_4a() {
    let s = store();
    let mut t = txn(&s, 7);
    t.put_value(b"k", b"v");
    assert_eq!(t.writes(), &[Modify::put(Cf::Default, &encode_key(b"k", 7), b"v")], "{DOC}");
}

/// `delete_value` deletes this transaction's value (start ts).
#[test]
fn delete_value_removes_this_txns_value_4a() {
    let s = store();
    let mut t = txn(&s, 7);
    t.delete_value(b"k");
    assert_eq!(t.writes(), &[Modify::delete(Cf::Default, &encode_key(b"k", 7))], "{DOC}");
}

/// Modifications accumulate in order and nothing reaches the storage
/// until the caller writes them.
#[test]
fn writes_are_collected_in_order_not_applied_4a() {
    let s = store();
    let mut t = txn(&s, 3);
    t.put_value(b"a", b"1");
    t.put_lock(b"a", &Lock { primary: b"a".to_vec(), ts: 3, ttl: 1, kind: WriteKind::Put });
    t.delete_lock(b"a");
    let cfs: Vec<Cf> = t.writes().iter().map(Modify::cf).collect();
    assert_eq!(cfs, vec![Cf::Default, Cf::Lock, Cf::Lock], "the order of the calls: {DOC}");
    assert!(s.written().is_empty(), "an MvccTxn must not write to the storage itself: {DOC}");
}

// ----- locks --------------------------------------------------------------------

/// `get_lock` parses what is in the `lock` CF at the raw key.
#[test]
fn get_lock_reads_what_put_lock_wrote_4a() {
    let s = store();
    let lock = Lock { primary: b"p".to_vec(), ts: 4, ttl: 50, kind: WriteKind::Put };
    s.put_fixture(vec![Modify::put(Cf::Lock, b"k", &lock.to_bytes())]);
    assert_eq!(txn(&s, 9).get_lock(b"k").expect("get_lock"), Some(lock), "{DOC}");
}

/// An unlocked key has no lock, even when another key is locked.
#[test]
fn get_lock_of_an_unlocked_key_is_none_4a() {
    let s = store();
    let lock = Lock { primary: b"p".to_vec(), ts: 4, ttl: 50, kind: WriteKind::Put };
    s.put_fixture(vec![Modify::put(Cf::Lock, b"k1", &lock.to_bytes())]);
    assert_eq!(txn(&s, 9).get_lock(b"k2").expect("get_lock"), None, "{DOC}");
}

// ----- reading at the start ts -----------------------------------------------

/// A value committed before the start ts is read.
#[test]
fn get_value_simple_4a() {
    let s = store();
    s.put_committed(b"k", b"v", 5, 6);
    assert_eq!(get(&s, b"k", 10), Some(b"v".to_vec()), "committed at 6, read at 10: {DOC}");
    assert_eq!(get(&s, b"k", 6), Some(b"v".to_vec()), "committed at 6, read at 6: {DOC}");
}

/// A key never written has no value.
#[test]
fn get_value_missing_4a() {
    let s = store();
    s.put_committed(b"k1", b"v", 5, 6);
    s.put_committed(b"k3", b"v", 5, 6);
    assert_eq!(get(&s, b"k2", 10), None, "k2 was never written (k1 and k3 were): {DOC}");
}

/// A value committed after the start ts is invisible, even if its
/// transaction started before.
#[test]
fn get_value_too_early_4a() {
    let s = store();
    s.put_committed(b"k", b"v", 5, 8);
    assert_eq!(get(&s, b"k", 7), None, "started at 5, committed at 8, read at 7: {DOC}");
}

/// Of two committed values, the newer one (by commit ts) is read.
#[test]
fn get_value_overwritten_4a() {
    let s = store();
    s.put_committed(b"k", b"old", 2, 3);
    s.put_committed(b"k", b"new", 4, 5);
    assert_eq!(get(&s, b"k", 10), Some(b"new".to_vec()), "{DOC}");
}

/// A value overwritten after the start ts is still the one read.
#[test]
fn get_value_not_overwritten_4a() {
    let s = store();
    s.put_committed(b"k", b"old", 2, 3);
    s.put_committed(b"k", b"new", 4, 9);
    assert_eq!(get(&s, b"k", 6), Some(b"old".to_vec()), "new committed at 9, read at 6: {DOC}");
}

/// A delete committed before the start ts hides the older value.
#[test]
fn get_value_deleted_4a() {
    let s = store();
    s.put_committed(b"k", b"v", 2, 3);
    s.put_write_record(b"k", WriteKind::Delete, 4, 5);
    assert_eq!(get(&s, b"k", 10), None, "deleted at 5, read at 10: {DOC}");
}

/// A delete committed after the start ts does not hide the value.
#[test]
fn get_value_not_deleted_4a() {
    let s = store();
    s.put_committed(b"k", b"v", 2, 3);
    s.put_write_record(b"k", WriteKind::Delete, 4, 9);
    assert_eq!(get(&s, b"k", 6), Some(b"v".to_vec()), "deleted at 9, read at 6: {DOC}");
}

/// A rollback wrote nothing: the read goes on to the older write.
#[test]
fn get_value_skips_a_rollback_4a() {
    let s = store();
    s.put_committed(b"k", b"v", 2, 3);
    s.put_write_record(b"k", WriteKind::Rollback, 5, 5);
    assert_eq!(get(&s, b"k", 10), Some(b"v".to_vec()), "rolled back at 5: {DOC}");
}

/// Keys that share a prefix, or whose encodings sit next to each other,
/// are not confused.
#[test]
fn get_value_does_not_read_a_neighbouring_key_4a() {
    let s = store();
    s.put_committed(b"k", b"short", 2, 3);
    s.put_committed(b"k\x00", b"zero", 2, 3);
    s.put_committed(b"ka", b"longer", 2, 3);
    assert_eq!(get(&s, b"k", 10), Some(b"short".to_vec()), "{DOC}");
    assert_eq!(get(&s, b"k\x00", 10), Some(b"zero".to_vec()), "{DOC}");
    assert_eq!(get(&s, b"k\x01", 10), None, "{DOC}");
    let s2 = store();
    s2.put_committed(b"ka", b"v", 2, 3);
    assert_eq!(get(&s2, b"k", 10), None, "only ka was written: {DOC}");
    // One transaction (start 5) wrote k and ka; ka's commit (6) is visible
    // at 7, k's (9) is not. Reading k at 7 must not follow ka's record.
    let s3 = store();
    s3.put_committed(b"k", b"k's value", 5, 9);
    s3.put_committed(b"ka", b"ka's value", 5, 6);
    assert_eq!(get(&s3, b"k", 7), None, "k committed at 9, read at 7 (ka committed at 6): {DOC}");
}

// ----- this transaction's write ------------------------------------------------

/// `current_write` finds the write by this transaction's start ts, with
/// its commit ts, among other transactions' writes.
#[test]
fn current_write_finds_this_txns_write_4a() {
    let s = store();
    s.put_write_record(b"k", WriteKind::Put, 1, 2);
    s.put_write_record(b"k", WriteKind::Delete, 5, 8);
    s.put_write_record(b"k", WriteKind::Put, 9, 12);
    let found = txn(&s, 5).current_write(b"k").expect("current_write");
    assert_eq!(found, Some((Write { start_ts: 5, kind: WriteKind::Delete }, 8)), "{DOC}");
    let rollback = store();
    rollback.put_write_record(b"k", WriteKind::Rollback, 6, 6);
    let found = txn(&rollback, 6).current_write(b"k").expect("current_write");
    assert_eq!(found, Some((Write { start_ts: 6, kind: WriteKind::Rollback }, 6)), "{DOC}");
}

/// No write of this transaction: `None`, also when other transactions
/// (earlier and later) and other keys have writes.
#[test]
fn current_write_of_another_txn_is_none_4a() {
    let s = store();
    s.put_write_record(b"k", WriteKind::Put, 1, 2);
    s.put_write_record(b"k", WriteKind::Put, 9, 12);
    s.put_write_record(b"k2", WriteKind::Put, 5, 6);
    assert_eq!(txn(&s, 5).current_write(b"k").expect("current_write"), None, "{DOC}");
}

// ----- the newest write ------------------------------------------------------------

/// `most_recent_write` is the write with the highest commit ts, whatever
/// the transaction's start ts.
#[test]
fn most_recent_write_is_the_newest_4a() {
    let s = store();
    s.put_write_record(b"k", WriteKind::Put, 1, 2);
    s.put_write_record(b"k", WriteKind::Delete, 5, 8);
    s.put_write_record(b"k", WriteKind::Rollback, 3, 3);
    let found = txn(&s, 1).most_recent_write(b"k").expect("most_recent_write");
    assert_eq!(found, Some((Write { start_ts: 5, kind: WriteKind::Delete }, 8)), "{DOC}");
}

/// A key with no write has none, even when a neighbouring key has one.
#[test]
fn most_recent_write_of_an_unwritten_key_is_none_4a() {
    let s = store();
    s.put_write_record(b"ka", WriteKind::Put, 1, 2);
    s.put_write_record(b"j", WriteKind::Put, 1, 2);
    assert_eq!(txn(&s, 9).most_recent_write(b"k").expect("most_recent_write"), None, "{DOC}");
}

/// The raw API may write anything into the `write` CF. A record whose key
/// is not an MVCC key belongs to no user key: the reads of a key next to
/// it (or whose seek lands on it) see the key's own versions, or nothing,
/// instead of failing.
#[test]
fn raw_records_in_the_write_cf_belong_to_no_key_4a() {
    let s = store();
    s.put_committed(b"k1", b"v1", 5, 6);
    // "k1 raw" sorts right after every version of k1, and right where a
    // read of "k1 r" starts; "zz" is past everything.
    s.put_fixture(vec![
        Modify::put(Cf::Write, b"k1 raw", b"not a write record"),
        Modify::put(Cf::Write, b"zz", b"junk"),
    ]);
    let what = "with raw records \"k1 raw\" and \"zz\" in the write CF";
    let t = txn(&s, 10);
    assert_eq!(
        t.get_value(b"k1").ok(),
        Some(Some(b"v1".to_vec())),
        "get_value(k1) at 10 {what}: {DOC}"
    );
    for key in [&b"k1 r"[..], b"k2", b"zzz"] {
        assert_eq!(
            t.get_value(key).ok(),
            Some(None),
            "get_value({}) at 10 {what} must be Ok(None) (version_of gives None for a key that is not \
             an MVCC key: stop there): {DOC}",
            key.escape_ascii()
        );
        assert_eq!(
            t.most_recent_write(key).ok(),
            Some(None),
            "most_recent_write({}) {what}: {DOC}",
            key.escape_ascii()
        );
        assert_eq!(
            t.current_write(key).ok(),
            Some(None),
            "current_write({}) {what}: {DOC}",
            key.escape_ascii()
        );
    }
    let t5 = txn(&s, 5);
    let put5 = Write { start_ts: 5, kind: WriteKind::Put };
    assert_eq!(
        t5.current_write(b"k1").ok(),
        Some(Some((put5, 6))),
        "current_write(k1) of the txn at 5 {what}: {DOC}"
    );
    assert_eq!(
        t5.most_recent_write(b"k1").ok(),
        Some(Some((put5, 6))),
        "most_recent_write(k1) {what}: {DOC}"
    );
}
