//! Graded tests of labs 4b and 4c on the server side: the `Kv*` handlers
//! of `kv/server/src/txn_api.rs` check their requests and run the
//! transaction commands. The commands themselves are graded in
//! `kv/transaction/tests/project4{a,b,c}.rs`.
//!
//! The server runs over an in-memory `MemStorage`, so a test can tell
//! whether a request wrote anything.

use std::sync::Arc;

use tinykv_engine::Cf;
use tinykv_proto::kvrpcpb::{Action, KvPair, LockInfo, ScanRequest, ScanResponse};
use tinykv_server::Server;
use tinykv_server::limits::{MAX_KEY_SIZE_BYTES, MAX_SCAN_LIMIT, MAX_VALUE_SIZE_BYTES};
use tinykv_transaction::MemStorage;
use tinykv_transaction::requests::{self, PrewriteBuilder};
use tinykv_transaction::ts::compose;

#[path = "../../../raft/tests/harness/deadline.rs"]
mod deadline;

const DOC: &str = "see docs/src/lab4-transactions.md, \"The server\"";

fn server() -> (MemStorage, Server) {
    let storage = MemStorage::new();
    (storage.clone(), Server::new(Arc::new(storage)))
}

/// `KvScan` through `server`, given 5 s: a scanner that never moves past a
/// key fails here with a message instead of hanging until the runner's
/// timeout kills the suite.
fn scan_in_time(server: &Server, req: ScanRequest) -> ScanResponse {
    let what = format!(
        "KvScan from {:?}, limit {}, at {}",
        req.start_key.escape_ascii().to_string(),
        req.limit,
        req.version
    );
    let server = server.clone();
    let hint = format!(
        "Scanner::next must consume every lock and write entry of the key it looks at, or it \
         finds the same key again forever; {DOC}"
    );
    deadline::within(&what, std::time::Duration::from_secs(5), &hint, move || server.kv_scan(req))
}

/// The value of `key` at `ts` through `KvGet`, which must not fail.
fn get(server: &Server, key: &[u8], ts: u64) -> Option<Vec<u8>> {
    let resp = server.kv_get(requests::get(key, ts));
    assert!(
        resp.region_error.is_none() && resp.error.is_none(),
        "KvGet {key:?} at {ts}: {resp:?}; {DOC}"
    );
    (!resp.not_found).then_some(resp.value)
}

#[test]
fn kv_get_prewrite_and_commit_go_through_the_server_4b() {
    let (_, server) = server();
    let prewrite = PrewriteBuilder::new(b"k1", 10).put(b"k1", b"v1").put(b"k2", b"v2").build();
    let resp = server.kv_prewrite(prewrite);
    assert!(resp.errors.is_empty() && resp.region_error.is_none(), "KvPrewrite: {resp:?}; {DOC}");

    let locked = server.kv_get(requests::get(b"k2", 11));
    let want = LockInfo {
        primary_lock: b"k1".to_vec(),
        lock_version: 10,
        key: b"k2".to_vec(),
        lock_ttl: requests::DEFAULT_TTL_MS,
    };
    assert_eq!(
        locked.error.and_then(|e| e.locked),
        Some(want),
        "KvGet of a prewritten key must report the lock; {DOC}"
    );

    let resp = server.kv_commit(requests::commit(10, 12, &[b"k1", b"k2"]));
    assert!(resp.error.is_none() && resp.region_error.is_none(), "KvCommit: {resp:?}; {DOC}");
    assert_eq!(get(&server, b"k1", 13), Some(b"v1".to_vec()), "k1 after the commit at 12; {DOC}");
    assert_eq!(get(&server, b"k2", 13), Some(b"v2".to_vec()), "k2 after the commit at 12; {DOC}");
    assert_eq!(get(&server, b"k1", 11), None, "k1 before the commit at 12; {DOC}");
}

#[test]
fn bad_transactional_requests_change_nothing_4b() {
    let (storage, server) = server();
    let big_value = vec![7u8; MAX_VALUE_SIZE_BYTES + 1];
    let prewrite = PrewriteBuilder::new(b"k1", 10)
        .put(b"k1", b"fine")
        .put(b"", b"empty key")
        .put(b"k3", &big_value)
        .build();
    let resp = server.kv_prewrite(prewrite);
    let aborts: Vec<&str> = resp.errors.iter().map(|e| e.abort.as_str()).collect();
    assert_eq!(aborts.len(), 2, "one abort error per bad mutation, got {resp:?}; {DOC}");
    assert!(
        aborts[0].contains("empty key"),
        "the first error should name the empty key: {aborts:?}; {DOC}"
    );
    assert!(
        aborts[1].contains("value of"),
        "the second error should name the value size: {aborts:?}; {DOC}"
    );
    assert!(
        storage.written().is_empty(),
        "a prewrite with a bad mutation wrote {:?}; {DOC}",
        storage.written()
    );

    let huge_key = vec![b'k'; MAX_KEY_SIZE_BYTES + 1];
    let get = server.kv_get(requests::get(&huge_key, 11));
    assert!(
        get.error.is_some_and(|e| e.abort.contains("larger than the limit")),
        "KvGet of an oversized key; {DOC}"
    );
    let commit = server.kv_commit(requests::commit(10, 12, &[b"k1", b""]));
    assert!(
        commit.error.is_some_and(|e| e.abort.contains("empty key")),
        "KvCommit with an empty key; {DOC}"
    );

    // The protocol's other constraints: a primary key (else the lock can
    // never be recovered), an op of the enum, and commit after start.
    let mut no_primary = PrewriteBuilder::new(b"k1", 10).put(b"k1", b"v").build();
    no_primary.primary_lock.clear();
    let resp = server.kv_prewrite(no_primary);
    assert!(
        resp.errors.iter().any(|e| e.abort.contains("primary_lock")),
        "KvPrewrite with an empty primary_lock must be an abort naming it (check_mutations), \
         got {resp:?}; {DOC}"
    );
    for op in [2, 3, 4, 7] {
        let mut bad_op = PrewriteBuilder::new(b"k1", 10).put(b"k1", b"v").build();
        bad_op.mutations[0].op = op;
        let resp = server.kv_prewrite(bad_op);
        assert!(
            resp.errors.len() == 1 && !resp.errors[0].abort.is_empty(),
            "KvPrewrite with mutation op {op} (only Put = 0 and Del = 1 are prewrites) must be \
             one abort, got {resp:?}; {DOC}"
        );
    }
    assert!(storage.written().is_empty(), "bad requests wrote {:?}; {DOC}", storage.written());

    let fine = PrewriteBuilder::new(b"k1", 10).put(b"k1", b"v").build();
    let resp = server.kv_prewrite(fine);
    assert!(resp.errors.is_empty() && resp.region_error.is_none(), "{resp:?}");
    let before = storage.written().len();
    for commit_version in [10, 9] {
        let commit = server.kv_commit(requests::commit(10, commit_version, &[b"k1"]));
        assert!(
            commit.error.as_ref().is_some_and(|e| e.abort.contains("commit_version")),
            "KvCommit at commit_version {commit_version} of a transaction started at 10 must be \
             an abort (a commit comes after the start; use check_commit), got {commit:?}; {DOC}"
        );
    }
    assert_eq!(
        storage.written().len(),
        before,
        "a KvCommit with commit_version <= start_version wrote {:?}; {DOC}",
        &storage.written()[before..]
    );
    let read = server.kv_get(requests::get(b"k1", 20));
    assert!(
        read.error.is_some_and(|e| e.locked.is_some()),
        "k1 must still be only prewritten (locked) after the refused commits; {DOC}"
    );
}

#[test]
fn kv_scan_and_the_recovery_commands_go_through_the_server_4c() {
    let (storage, server) = server();
    storage.put_committed(b"a", b"1", 5, 6);
    storage.put_committed(b"b", b"2", 5, 6);
    // A transaction that took a lock at physical time 1000 ms, TTL 10 ms, and died.
    let started = compose(1000, 0);
    let prewrite =
        PrewriteBuilder::new(b"c", started).put(b"c", b"3").put(b"d", b"4").ttl(10).build();
    assert!(server.kv_prewrite(prewrite).errors.is_empty(), "KvPrewrite; {DOC}");

    let now = compose(2000, 0);
    let scan = scan_in_time(&server, requests::scan(b"", 10, now));
    assert!(scan.region_error.is_none(), "KvScan: {scan:?}; {DOC}");
    let keys: Vec<(&[u8], bool)> =
        scan.pairs.iter().map(|p| (p.key.as_slice(), p.error.is_some())).collect();
    assert_eq!(
        keys,
        vec![(&b"a"[..], false), (b"b", false), (b"c", true), (b"d", true)],
        "KvScan sees a, b and the locks on c, d; {DOC}"
    );
    let limited = scan_in_time(&server, requests::scan(b"b", 1, now));
    assert_eq!(
        limited.pairs,
        vec![KvPair { key: b"b".to_vec(), value: b"2".to_vec(), error: None }],
        "KvScan from b, limit 1; {DOC}"
    );

    let status = server.kv_check_txn_status(requests::check_txn_status(b"c", started, now));
    assert!(status.region_error.is_none(), "KvCheckTxnStatus: {status:?}; {DOC}");
    assert_eq!(
        status.action(),
        Action::TtlExpireRollback,
        "the primary's lock expired at 1010 ms; {DOC}"
    );

    let resolve = server.kv_resolve_lock(requests::resolve_lock(started, 0));
    assert!(
        resolve.error.is_none() && resolve.region_error.is_none(),
        "KvResolveLock: {resolve:?}; {DOC}"
    );
    assert!(storage.pairs(Cf::Lock).is_empty(), "no lock may be left after the resolve; {DOC}");
    let scan = scan_in_time(&server, requests::scan(b"", 10, now));
    assert_eq!(scan.pairs.len(), 2, "only a and b are left: {scan:?}; {DOC}");

    // A transaction that rolls itself back.
    let own = compose(3000, 0);
    assert!(
        server
            .kv_prewrite(PrewriteBuilder::new(b"e", own).put(b"e", b"5").build())
            .errors
            .is_empty()
    );
    let rollback = server.kv_batch_rollback(requests::batch_rollback(own, &[b"e"]));
    assert!(
        rollback.error.is_none() && rollback.region_error.is_none(),
        "KvBatchRollback: {rollback:?}; {DOC}"
    );
    assert!(storage.pairs(Cf::Lock).is_empty(), "the rollback must remove the lock on e; {DOC}");
    assert_eq!(get(&server, b"e", compose(4000, 0)), None, "e was rolled back; {DOC}");
}

#[test]
fn bad_scan_and_recovery_requests_are_clear_errors_4c() {
    let (storage, server) = server();
    let scan = scan_in_time(&server, requests::scan(b"", MAX_SCAN_LIMIT + 1, 10));
    let message = scan.region_error.map(|e| e.message).unwrap_or_default();
    assert!(message.contains("scan limit"), "KvScan over the limit: {message:?}; {DOC}");
    let huge_key = vec![b'k'; MAX_KEY_SIZE_BYTES + 1];
    let scan = scan_in_time(&server, requests::scan(&huge_key, 1, 10));
    assert!(scan.region_error.is_some(), "KvScan with an oversized start key; {DOC}");
    let scan = scan_in_time(&server, requests::scan(b"", 0, 10));
    assert!(
        scan.region_error.is_none() && scan.pairs.is_empty(),
        "a scan with limit 0 is fine and empty, got {scan:?}; {DOC}"
    );
    let scan = scan_in_time(&server, requests::scan(b"", MAX_SCAN_LIMIT, 10));
    assert!(
        scan.region_error.is_none(),
        "a scan with limit {MAX_SCAN_LIMIT} (the maximum itself) is fine, got {:?}; {DOC}",
        scan.region_error
    );

    let status = server.kv_check_txn_status(requests::check_txn_status(b"", 10, 20));
    let message = status.region_error.map(|e| e.message).unwrap_or_default();
    assert!(
        message.contains("empty key"),
        "KvCheckTxnStatus of an empty primary: {message:?}; {DOC}"
    );
    let rollback = server.kv_batch_rollback(requests::batch_rollback(10, &[b"fine", b""]));
    assert!(
        rollback.error.is_some_and(|e| e.abort.contains("empty key")),
        "KvBatchRollback with an empty key; {DOC}"
    );
    assert!(storage.written().is_empty(), "bad requests wrote {:?}; {DOC}", storage.written());

    let fine = PrewriteBuilder::new(b"k1", 10).put(b"k1", b"v").build();
    assert!(server.kv_prewrite(fine).errors.is_empty());
    let before = storage.written().len();
    for commit_version in [10, 9] {
        let resolve = server.kv_resolve_lock(requests::resolve_lock(10, commit_version));
        assert!(
            resolve.error.as_ref().is_some_and(|e| e.abort.contains("commit_version")),
            "KvResolveLock committing at {commit_version} a transaction started at 10 must be \
             an abort (0 rolls back; a commit comes after the start; use check_resolve), \
             got {resolve:?}; {DOC}"
        );
    }
    assert_eq!(
        storage.written().len(),
        before,
        "a bad KvResolveLock wrote {:?}; {DOC}",
        &storage.written()[before..]
    );
}
