//! Lab 1 graded suite: the standalone storage and the raw API.
//!
//! Run it with `make project1` (or `cargo run -p labs -- test 1`). Each test
//! names the behaviour it checks; a failure says what was expected, what
//! happened, and which section of `docs/src/lab1-standalone-kv.md` explains
//! it.
//!
//! The tests drive the handlers of `kv/server/src/raw_api.rs` directly, and
//! look at the data through the storage reader of
//! `kv/storage/src/standalone.rs`, both on a real on-disk engine in a
//! temporary directory. The last test goes through a real gRPC server.

use std::sync::Arc;

use tinykv_proto::kvrpcpb::{
    KvPair, RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest,
};
use tinykv_server::Server;
use tinykv_storage::{Cf, Context, StandaloneConfig, StandaloneStorage, Storage};

const DOC: &str = "docs/src/lab1-standalone-kv.md";

/// A server over a fresh standalone storage in a temporary directory.
struct Fixture {
    server: Server,
    storage: Arc<StandaloneStorage>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (server, storage) = open(dir.path());
        Fixture { server, storage, dir }
    }

    fn put(&self, cf: &str, key: &[u8], value: &[u8]) {
        let resp = self.server.raw_put(put_req(cf, key, value));
        assert!(
            resp.error.is_empty() && resp.region_error.is_none(),
            "raw_put({cf}, {:?}, {:?}) should succeed, but it answered error {:?}.\nSee {DOC}, \"Step 2: the raw API\".",
            show(key),
            show(value),
            resp.error
        );
    }

    fn delete(&self, cf: &str, key: &[u8]) {
        let resp = self.server.raw_delete(delete_req(cf, key));
        assert!(
            resp.error.is_empty() && resp.region_error.is_none(),
            "raw_delete({cf}, {:?}) should succeed, but it answered error {:?}.\nSee {DOC}, \"Step 2: the raw API\".",
            show(key),
            resp.error
        );
    }

    /// `Some(value)`, or `None` when the server says not found.
    fn get(&self, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        let resp = self.server.raw_get(get_req(cf, key));
        assert!(
            resp.error.is_empty() && resp.region_error.is_none(),
            "raw_get({cf}, {:?}) should succeed, but it answered error {:?}.\nSee {DOC}, \"Step 2: the raw API\".",
            show(key),
            resp.error
        );
        if resp.not_found {
            assert!(
                resp.value.is_empty(),
                "raw_get({cf}, {:?}) answered not_found but also a value {:?}",
                show(key),
                show(&resp.value)
            );
            None
        } else {
            Some(resp.value)
        }
    }

    fn scan(&self, cf: &str, start: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let resp = self.server.raw_scan(scan_req(cf, start, limit));
        assert!(
            resp.error.is_empty() && resp.region_error.is_none(),
            "raw_scan({cf}, start {:?}, limit {limit}) should succeed, but it answered error {:?}.\nSee {DOC}, \"Step 2: the raw API\".",
            show(start),
            resp.error
        );
        pairs(resp.kvs)
    }

    /// Every pair of every data column family, read through a fresh reader.
    fn dump(&self) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        dump(self.storage.as_ref())
    }
}

fn open(dir: &std::path::Path) -> (Server, Arc<StandaloneStorage>) {
    let storage = StandaloneStorage::open(&StandaloneConfig::for_tests(dir))
        .unwrap_or_else(|e| panic!("open the standalone storage in {}: {e}", dir.display()));
    let storage = Arc::new(storage);
    (Server::new(storage.clone()), storage)
}

fn dump(storage: &dyn Storage) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let reader = storage.reader(&Context::default()).expect("storage.reader() should succeed");
    let mut all = Vec::new();
    for cf in Cf::DATA {
        for pair in reader.iter_cf(cf, b"") {
            let (key, value) = pair.expect("iterating a reader should succeed");
            all.push((cf, key, value));
        }
    }
    all
}

fn get_req(cf: &str, key: &[u8]) -> RawGetRequest {
    RawGetRequest { key: key.to_vec(), cf: cf.to_string(), ..Default::default() }
}

fn put_req(cf: &str, key: &[u8], value: &[u8]) -> RawPutRequest {
    RawPutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        cf: cf.to_string(),
        ..Default::default()
    }
}

fn delete_req(cf: &str, key: &[u8]) -> RawDeleteRequest {
    RawDeleteRequest { key: key.to_vec(), cf: cf.to_string(), ..Default::default() }
}

fn scan_req(cf: &str, start: &[u8], limit: u32) -> RawScanRequest {
    RawScanRequest { start_key: start.to_vec(), limit, cf: cf.to_string(), ..Default::default() }
}

fn pairs(kvs: Vec<KvPair>) -> Vec<(Vec<u8>, Vec<u8>)> {
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn kv(key: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (key.as_bytes().to_vec(), value.as_bytes().to_vec())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> String {
    let items: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}={}", show(k), show(v))).collect();
    format!("[{}]", items.join(", "))
}

/// Asserts that a scan returned exactly `want`, with a readable message.
fn expect_scan(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)], what: &str) {
    assert!(
        got == want,
        "{what}:\n  expected {}\n  got      {}\nSee {DOC}, \"Step 2: the raw API\" (raw_scan).",
        show_pairs(want),
        show_pairs(got)
    );
}

#[test]
fn raw_get_after_put_1() {
    let f = Fixture::new();
    f.put("default", b"k1", b"v1");
    assert_eq!(
        f.get("default", b"k1").as_deref(),
        Some(&b"v1"[..]),
        "raw_get must return the value raw_put stored. See {DOC}, \"Step 2: the raw API\"."
    );
    f.put("default", b"k1", b"v2");
    assert_eq!(
        f.get("default", b"k1").as_deref(),
        Some(&b"v2"[..]),
        "a second raw_put of the same key must replace the value. See {DOC}, \"Step 2: the raw API\"."
    );
    f.put("default", b"empty", b"");
    assert_eq!(
        f.get("default", b"empty").as_deref(),
        Some(&b""[..]),
        "an empty value is a value: raw_get must return it, not report not-found."
    );
}

#[test]
fn raw_get_missing_key_not_found_1() {
    let f = Fixture::new();
    let resp = f.server.raw_get(get_req("default", b"missing"));
    assert!(
        resp.error.is_empty(),
        "a missing key is not an error: expected an empty `error`, got {:?}. See {DOC}, \"Step 2: the raw API\".",
        resp.error
    );
    assert!(
        resp.not_found,
        "raw_get of a key never written must set not_found = true. See {DOC}, \"Step 2: the raw API\"."
    );
    f.put("default", b"k1", b"v1");
    f.put("lock", b"k2", b"v2");
    assert_eq!(
        f.get("default", b"k2"),
        None,
        "k2 was written to `lock`, so raw_get of k2 in `default` must report not found"
    );
    assert_eq!(
        f.get("default", b"k0"),
        None,
        "raw_get of a key before every stored key must report not found"
    );
    assert_eq!(f.get("default", b"k10"), None, "raw_get must match the key exactly, not by prefix");
}

#[test]
fn raw_put_visible_through_reader_1() {
    let f = Fixture::new();
    f.put("default", b"a", b"1");
    f.put("write", b"b", b"2");
    let reader = f.storage.reader(&Context::default()).expect("reader");
    assert_eq!(
        reader.get_cf(Cf::Default, b"a").expect("get_cf"),
        Some(b"1".to_vec()),
        "a value written by raw_put must be visible through StandaloneStorage::reader().get_cf. See {DOC}, \"Step 1: the standalone storage\"."
    );
    assert_eq!(reader.get_cf(Cf::Write, b"b").expect("get_cf"), Some(b"2".to_vec()));
    assert_eq!(
        reader.get_cf(Cf::Default, b"b").expect("get_cf"),
        None,
        "b was put in `write` only"
    );
    let in_write: Vec<_> = reader.iter_cf(Cf::Write, b"").map(|p| p.expect("iter_cf")).collect();
    expect_scan(&in_write, &[kv("b", "2")], "iter_cf(write) over the whole column family");
}

#[test]
fn raw_same_key_in_two_cfs_independent_1() {
    let f = Fixture::new();
    f.put("default", b"key", b"in-default");
    f.put("lock", b"key", b"in-lock");
    f.put("write", b"key", b"in-write");
    let want = [("default", "in-default"), ("lock", "in-lock"), ("write", "in-write")];
    for (cf, value) in want {
        assert_eq!(
            f.get(cf, b"key").as_deref(),
            Some(value.as_bytes()),
            "the same key in different column families names different values; `{cf}` lost its own. See {DOC}, \"Column families\"."
        );
    }
    f.delete("lock", b"key");
    assert_eq!(f.get("lock", b"key"), None, "the delete in `lock` must remove the key there");
    assert_eq!(
        f.get("default", b"key").as_deref(),
        Some(&b"in-default"[..]),
        "a delete in `lock` must not touch `default`"
    );
    assert_eq!(
        f.get("write", b"key").as_deref(),
        Some(&b"in-write"[..]),
        "a delete in `lock` must not touch `write`"
    );
    expect_scan(
        &f.scan("write", b"", 10),
        &[kv("key", "in-write")],
        "raw_scan of `write` must see only `write`'s pairs",
    );
}

#[test]
fn raw_get_after_delete_1() {
    let f = Fixture::new();
    f.put("default", b"k1", b"v1");
    f.put("default", b"k2", b"v2");
    f.delete("default", b"k1");
    assert_eq!(
        f.get("default", b"k1"),
        None,
        "raw_get after raw_delete must report not found. See {DOC}, \"Step 2: the raw API\"."
    );
    assert_eq!(
        f.get("default", b"k2").as_deref(),
        Some(&b"v2"[..]),
        "deleting k1 must not touch k2"
    );
    f.put("default", b"k1", b"again");
    assert_eq!(
        f.get("default", b"k1").as_deref(),
        Some(&b"again"[..]),
        "a key can be written again after a delete"
    );
}

#[test]
fn raw_delete_1() {
    let f = Fixture::new();
    f.put("default", b"a", b"1");
    f.put("default", b"b", b"2");
    f.delete("default", b"a");
    let reader = f.storage.reader(&Context::default()).expect("reader");
    assert_eq!(
        reader.get_cf(Cf::Default, b"a").expect("get_cf"),
        None,
        "after raw_delete the key must be gone from the storage itself (checked through a fresh reader). See {DOC}, \"Step 1: the standalone storage\"."
    );
    let resp = f.server.raw_delete(delete_req("default", b"never-written"));
    assert!(
        resp.error.is_empty(),
        "deleting a missing key must succeed, got error {:?}",
        resp.error
    );
    assert_eq!(
        f.dump(),
        vec![(Cf::Default, b"b".to_vec(), b"2".to_vec())],
        "after deleting `a` (and a missing key) only `b` must remain"
    );
}

#[test]
fn raw_scan_from_start_with_limit_1() {
    let f = Fixture::new();
    // Written out of order on purpose: the scan must come back sorted.
    for (key, value) in [("k3", "v3"), ("k1", "v1"), ("k5", "v5"), ("k2", "v2"), ("k4", "v4")] {
        f.put("default", key.as_bytes(), value.as_bytes());
    }
    f.put("lock", b"k0", b"other-cf");
    expect_scan(
        &f.scan("default", b"k2", 3),
        &[kv("k2", "v2"), kv("k3", "v3"), kv("k4", "v4")],
        "raw_scan(start k2, limit 3)",
    );
    expect_scan(
        &f.scan("default", b"", 10),
        &[kv("k1", "v1"), kv("k2", "v2"), kv("k3", "v3"), kv("k4", "v4"), kv("k5", "v5")],
        "raw_scan(start \"\", limit 10) must return every pair in key order",
    );
    expect_scan(
        &f.scan("default", b"k25", 2),
        &[kv("k3", "v3"), kv("k4", "v4")],
        "raw_scan(start k25, limit 2) starts at the first key >= k25",
    );
    expect_scan(
        &f.scan("default", b"k4", 100),
        &[kv("k4", "v4"), kv("k5", "v5")],
        "raw_scan with a limit beyond the end returns what there is",
    );
    expect_scan(
        &f.scan("default", b"k6", 5),
        &[],
        "raw_scan starting after the last key returns nothing",
    );
    expect_scan(&f.scan("default", b"k1", 1), &[kv("k1", "v1")], "raw_scan(start k1, limit 1)");
}

#[test]
fn raw_scan_sees_new_key_1() {
    let f = Fixture::new();
    f.put("default", b"k1", b"v1");
    f.put("default", b"k3", b"v3");
    expect_scan(
        &f.scan("default", b"", 10),
        &[kv("k1", "v1"), kv("k3", "v3")],
        "raw_scan before the new key",
    );
    f.put("default", b"k2", b"v2");
    expect_scan(
        &f.scan("default", b"", 10),
        &[kv("k1", "v1"), kv("k2", "v2"), kv("k3", "v3")],
        "a scan started after raw_put must see the new key in its place",
    );
    f.put("default", b"k1", b"v1-new");
    expect_scan(
        &f.scan("default", b"k1", 1),
        &[kv("k1", "v1-new")],
        "a scan must see the latest value of an overwritten key",
    );
}

#[test]
fn raw_scan_skips_deleted_key_1() {
    let f = Fixture::new();
    for key in ["k1", "k2", "k3", "k4"] {
        f.put("default", key.as_bytes(), b"v");
    }
    f.delete("default", b"k2");
    f.delete("default", b"k4");
    expect_scan(
        &f.scan("default", b"", 10),
        &[kv("k1", "v"), kv("k3", "v")],
        "raw_scan must skip deleted keys",
    );
    expect_scan(
        &f.scan("default", b"k2", 1),
        &[kv("k3", "v")],
        "a scan that starts at a deleted key must begin at the next live key",
    );
}

#[test]
fn reader_snapshot_isolation_1() {
    let f = Fixture::new();
    f.put("default", b"a", b"1");
    f.put("default", b"b", b"2");
    let reader = f.storage.reader(&Context::default()).expect("reader");
    let early_iter = reader.iter_cf(Cf::Default, b"");
    // Change the data after the reader (and one iterator) exist.
    f.delete("default", b"a");
    f.put("default", b"b", b"changed");
    f.put("default", b"c", b"3");

    let see = |what: &str| {
        format!(
            "{what}: a reader must see the data as it was when it was created, not later writes. See {DOC}, \"Snapshots\"."
        )
    };
    assert_eq!(
        reader.get_cf(Cf::Default, b"a").expect("get_cf"),
        Some(b"1".to_vec()),
        "{}",
        see("deleted key a")
    );
    assert_eq!(
        reader.get_cf(Cf::Default, b"b").expect("get_cf"),
        Some(b"2".to_vec()),
        "{}",
        see("overwritten key b")
    );
    assert_eq!(reader.get_cf(Cf::Default, b"c").expect("get_cf"), None, "{}", see("new key c"));
    let old: Vec<_> = early_iter.map(|p| p.expect("iterate")).collect();
    expect_scan(&old, &[kv("a", "1"), kv("b", "2")], "an iterator opened before the writes");
    let late: Vec<_> = reader.iter_cf(Cf::Default, b"").map(|p| p.expect("iterate")).collect();
    expect_scan(
        &late,
        &[kv("a", "1"), kv("b", "2")],
        "an iterator opened from the old reader after the writes",
    );

    let fresh = f.storage.reader(&Context::default()).expect("reader");
    let now: Vec<_> = fresh.iter_cf(Cf::Default, b"").map(|p| p.expect("iterate")).collect();
    expect_scan(&now, &[kv("b", "changed"), kv("c", "3")], "a reader created after the writes");
}

#[test]
fn unknown_cf_is_a_clear_error_1() {
    let f = Fixture::new();
    f.put("default", b"k", b"v");
    let before = f.dump();
    let clear = |op: &str, error: &str| {
        assert!(
            error.contains("unknown column family") && error.contains("nope"),
            "{op} with column family \"nope\" must answer an error that says `unknown column family \"nope\"`; got error {error:?}. \
             Use tinykv_server::limits::parse_cf. See {DOC}, \"Bad input\"."
        );
    };
    clear("raw_put", &f.server.raw_put(put_req("nope", b"k", b"x")).error);
    clear("raw_get", &f.server.raw_get(get_req("nope", b"k")).error);
    clear("raw_delete", &f.server.raw_delete(delete_req("nope", b"k")).error);
    clear("raw_scan", &f.server.raw_scan(scan_req("nope", b"", 10)).error);
    let meta = f.server.raw_put(put_req("meta", b"k", b"x")).error;
    assert!(
        !meta.is_empty(),
        "`meta` holds the store's own state; clients must not write it (got no error)"
    );
    assert_eq!(f.dump(), before, "a request with an unknown column family must change nothing");
}

#[test]
fn bad_input_is_rejected_and_changes_nothing_1() {
    use tinykv_server::limits::{MAX_KEY_SIZE_BYTES, MAX_SCAN_LIMIT, MAX_VALUE_SIZE_BYTES};
    let f = Fixture::new();
    f.put("default", b"k", b"v");
    let before = f.dump();
    let big_key = vec![b'k'; MAX_KEY_SIZE_BYTES + 1];
    let big_value = vec![b'v'; MAX_VALUE_SIZE_BYTES + 1];
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "raw_put with an empty key",
            f.server.raw_put(put_req("default", b"", b"x")).error,
            "empty key",
        ),
        (
            "raw_put with an oversized key",
            f.server.raw_put(put_req("default", &big_key, b"x")).error,
            "larger than the limit",
        ),
        (
            "raw_put with an oversized value",
            f.server.raw_put(put_req("default", b"k", &big_value)).error,
            "larger than the limit",
        ),
        (
            "raw_delete with an empty key",
            f.server.raw_delete(delete_req("default", b"")).error,
            "empty key",
        ),
        ("raw_get with an empty key", f.server.raw_get(get_req("default", b"")).error, "empty key"),
        ("raw_scan with limit 0", f.server.raw_scan(scan_req("default", b"", 0)).error, "limit"),
        (
            "raw_scan with a huge limit",
            f.server.raw_scan(scan_req("default", b"", MAX_SCAN_LIMIT + 1)).error,
            "limit",
        ),
    ];
    for (what, error, must_say) in cases {
        assert!(
            error.contains(must_say),
            "{what} must be rejected with an error that says {must_say:?}; got error {error:?}. \
             Use the checks in tinykv_server::limits. See {DOC}, \"Bad input\"."
        );
    }
    assert_eq!(
        f.dump(),
        before,
        "rejected requests must change nothing (a value limit checked after writing is too late)"
    );
    let ok_value = vec![b'v'; MAX_VALUE_SIZE_BYTES];
    f.put("default", b"big", &ok_value);
    assert_eq!(
        f.get("default", b"big").map(|v| v.len()),
        Some(MAX_VALUE_SIZE_BYTES),
        "a value exactly at the limit is accepted"
    );
}

#[test]
fn data_survives_close_and_reopen_1() {
    let f = Fixture::new();
    f.put("default", b"kept", b"1");
    f.put("write", b"kept", b"2");
    f.put("default", b"gone", b"3");
    f.delete("default", b"gone");
    let Fixture { server, storage, dir } = f;
    drop(server);
    drop(storage);

    let (server, storage) = open(dir.path());
    let reopened = Fixture { server, storage, dir };
    assert_eq!(
        reopened.dump(),
        vec![
            (Cf::Default, b"kept".to_vec(), b"1".to_vec()),
            (Cf::Write, b"kept".to_vec(), b"2".to_vec())
        ],
        "after closing and reopening the storage, every acknowledged write (and delete) must be there. See {DOC}, \"Durability\"."
    );
}

#[test]
fn storage_write_is_atomic_and_durable_1() {
    use tinykv_engine::MemoryDisk;
    use tinykv_storage::Modify;

    // A simulated disk: `crash()` loses every write that was not synced.
    let disk = MemoryDisk::new();
    let storage = StandaloneStorage::with_engine(Arc::new(disk.open()), true);
    let ctx = Context::default();
    storage
        .write(&ctx, vec![Modify::put(Cf::Default, b"seed", b"0")])
        .expect("StandaloneStorage::write should succeed");
    let batches_before = disk.stats().batches;
    let modifications = vec![
        Modify::put(Cf::Default, b"a", b"1"),
        Modify::put(Cf::Lock, b"a", b"lock-1"),
        Modify::delete(Cf::Default, b"seed"),
        Modify::put(Cf::Write, b"b", b"2"),
    ];
    storage.write(&ctx, modifications).expect("StandaloneStorage::write should succeed");
    let batches = disk.stats().batches - batches_before;
    assert_eq!(
        batches, 1,
        "one Storage::write of 4 modifications must reach the engine as ONE atomic WriteBatch, \
         but the engine saw {batches} batches (a crash between them would leave half a write). \
         See {DOC}, \"Step 1: the standalone storage\"."
    );
    let want = dump(&storage);

    disk.crash();
    drop(storage);
    let reopened = StandaloneStorage::with_engine(Arc::new(disk.open()), true);
    assert_eq!(
        dump(&reopened),
        want,
        "after a crash, every write that StandaloneStorage::write acknowledged must still be there: \
         mark the batch synced when sync_writes is set. See {DOC}, \"Durability\"."
    );
}

#[test]
fn raw_calls_through_grpc_server_1() {
    use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;

    let f = Fixture::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(tinykv_server::serve(listener, f.server.clone(), async {
            let _ = stopped.await;
        }));

        let mut client = TinyKvClient::connect(format!("http://{addr}")).await.expect("connect to the server");
        let grpc = |what: &str, status: tonic::Status| -> ! {
            panic!("{what} through gRPC failed with status {status:?}. The handler probably panicked; see {DOC}, \"Step 2: the raw API\".")
        };
        for (key, value) in [("b", "2"), ("a", "1"), ("c", "3")] {
            let resp = client
                .raw_put(put_req("default", key.as_bytes(), value.as_bytes()))
                .await
                .unwrap_or_else(|s| grpc("RawPut", s))
                .into_inner();
            assert!(resp.error.is_empty(), "RawPut through gRPC answered error {:?}", resp.error);
        }
        let got = client.raw_get(get_req("default", b"a")).await.unwrap_or_else(|s| grpc("RawGet", s)).into_inner();
        assert_eq!(got.value, b"1", "RawGet through gRPC must return the value RawPut stored");
        client.raw_delete(delete_req("default", b"b")).await.unwrap_or_else(|s| grpc("RawDelete", s));
        let missing = client.raw_get(get_req("default", b"b")).await.unwrap_or_else(|s| grpc("RawGet", s)).into_inner();
        assert!(missing.not_found, "RawGet through gRPC after RawDelete must report not found");
        let scan = client.raw_scan(scan_req("default", b"", 10)).await.unwrap_or_else(|s| grpc("RawScan", s)).into_inner();
        expect_scan(&pairs(scan.kvs), &[kv("a", "1"), kv("c", "3")], "RawScan through gRPC");
        let bad = client.raw_put(put_req("bogus", b"k", b"v")).await.unwrap_or_else(|s| grpc("RawPut", s)).into_inner();
        assert!(bad.error.contains("unknown column family"), "RawPut with a bad column family through gRPC must answer a clear error, got {:?}", bad.error);

        stop.send(()).expect("server still running");
        serving.await.expect("server task").expect("server shut down cleanly");
    });
    assert_eq!(
        f.get("default", b"c").as_deref(),
        Some(&b"3"[..]),
        "writes through gRPC reach the same storage"
    );
}

/// A storage that refuses every call with a region error, as the
/// replicated store does on a follower.
#[derive(Debug)]
struct RefusingStorage(tinykv_storage::errorpb::Error);

impl Storage for RefusingStorage {
    fn write(&self, _: &Context, _: Vec<tinykv_storage::Modify>) -> tinykv_storage::Result<()> {
        Err(tinykv_storage::Error::region(self.0.clone()))
    }

    fn reader(
        &self,
        _: &Context,
    ) -> tinykv_storage::Result<Box<dyn tinykv_storage::StorageReader>> {
        Err(tinykv_storage::Error::region(self.0.clone()))
    }
}

#[test]
fn region_errors_reach_the_client_intact_1() {
    use tinykv_proto::errorpb::{Error, NotLeader};
    use tinykv_proto::metapb::Peer;

    let refusal = Error {
        message: "not the leader of region 1; the leader is peer 2 on store 2".into(),
        not_leader: Some(NotLeader {
            region_id: 1,
            leader: Some(Peer { id: 2, store_id: 2 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let server = Server::new(Arc::new(RefusingStorage(refusal.clone())));
    let check = |rpc: &str, region_error: Option<Error>, error: String| {
        assert!(
            region_error.as_ref() == Some(&refusal),
            "{rpc} on a storage that refuses with a region error must answer it, intact, in \
             region_error (so a client can act on not_leader), and answered region_error {region_error:?}.\n\
             Use raw_api::failed(&err); see {DOC}, \"Errors\"."
        );
        assert!(
            error == refusal.message,
            "{rpc} must also put the region error's message in `error` (a client that reads only \
             `error` must not take it for success); expected {:?}, got {error:?}.\nSee {DOC}, \"Errors\".",
            refusal.message
        );
    };
    let r = server.raw_get(get_req("default", b"k"));
    check("raw_get", r.region_error, r.error);
    let r = server.raw_put(put_req("default", b"k", b"v"));
    check("raw_put", r.region_error, r.error);
    let r = server.raw_delete(delete_req("default", b"k"));
    check("raw_delete", r.region_error, r.error);
    let r = server.raw_scan(scan_req("default", b"", 10));
    assert!(r.kvs.is_empty(), "raw_scan that failed must return no pairs");
    check("raw_scan", r.region_error, r.error);
    // A bad request is not a region error.
    let r = server.raw_get(get_req("bogus", b"k"));
    assert!(
        r.region_error.is_none() && r.error.contains("unknown column family"),
        "a bad column family is the client's mistake, not a region error: expected only `error`, \
         got region_error {:?}, error {:?}",
        r.region_error,
        r.error
    );
}

/// A storage that records the context of every call, then refuses it.
#[derive(Debug, Default)]
struct RecordingStorage(std::sync::Mutex<Vec<Context>>);

impl RecordingStorage {
    fn refuse(&self, ctx: &Context) -> tinykv_storage::Error {
        self.0.lock().unwrap().push(*ctx);
        tinykv_storage::Error::region(tinykv_storage::errorpb::Error {
            message: "recorded".into(),
            ..Default::default()
        })
    }
}

impl Storage for RecordingStorage {
    fn write(&self, ctx: &Context, _: Vec<tinykv_storage::Modify>) -> tinykv_storage::Result<()> {
        Err(self.refuse(ctx))
    }

    fn reader(
        &self,
        ctx: &Context,
    ) -> tinykv_storage::Result<Box<dyn tinykv_storage::StorageReader>> {
        Err(self.refuse(ctx))
    }
}

#[test]
fn the_request_context_reaches_the_storage_1() {
    use tinykv_proto::metapb::{Peer, RegionEpoch};

    // The replicated storage of lab 2b routes by the context (region,
    // epoch, peer): a handler that drops it sends every request to the
    // wrong place, even though the standalone storage ignores it.
    let ctx = Context {
        region_id: 7,
        region_epoch: Some(RegionEpoch { conf_ver: 3, version: 5 }),
        peer: Some(Peer { id: 9, store_id: 2 }),
        ..Default::default()
    };
    let storage = Arc::new(RecordingStorage::default());
    let server = Server::new(storage.clone());
    server.raw_get(RawGetRequest { context: Some(ctx), ..get_req("default", b"k") });
    server.raw_put(RawPutRequest { context: Some(ctx), ..put_req("default", b"k", b"v") });
    server.raw_delete(RawDeleteRequest { context: Some(ctx), ..delete_req("default", b"k") });
    server.raw_scan(RawScanRequest { context: Some(ctx), ..scan_req("default", b"", 10) });
    // Without a context, the storage gets the default one.
    server.raw_get(get_req("default", b"k"));
    let seen = storage.0.lock().unwrap().clone();
    let want = vec![ctx, ctx, ctx, ctx, Context::default()];
    assert!(
        seen == want,
        "raw_get, raw_put, raw_delete and raw_scan must hand the request's context to the \
         storage unchanged (and Context::default() when the request has none).\n\
         storage got: {seen:?}\nexpected:    {want:?}\nSee {DOC}, \"Step 2: the raw API\"."
    );
}

#[test]
fn raw_scan_stops_at_the_byte_budget_1() {
    use tinykv_server::limits::MAX_VALUE_SIZE_BYTES;
    use tinykv_storage::MAX_SCAN_BYTES;

    let f = Fixture::new();
    let value = |i: u8| vec![b'a' + i; MAX_VALUE_SIZE_BYTES];
    for i in 0..10u8 {
        f.put("default", format!("k{i}").as_bytes(), &value(i));
    }
    // Ten 1 MiB values: more than one answer may carry. Keys and values of
    // one answer stay within MAX_SCAN_BYTES, and the scan stops *before*
    // the pair that would cross it, so it returns the first three.
    let mut start = Vec::new();
    let mut seen = Vec::new();
    for round in 0..10 {
        let got = f.scan("default", &start, 10);
        let bytes: usize = got.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            bytes <= MAX_SCAN_BYTES,
            "raw_scan answered {} pairs with {bytes} bytes of keys and values; an answer may carry \
             at most MAX_SCAN_BYTES = {MAX_SCAN_BYTES} (count them with a ScanBudget).\nSee {DOC}, \"Step 2: the raw API\".",
            got.len()
        );
        if got.is_empty() {
            break;
        }
        if round == 0 {
            assert_eq!(
                got.len(),
                3,
                "the first scan of ten 1 MiB values with limit 10 should stop before the fourth pair \
                 (it would cross the {MAX_SCAN_BYTES}-byte budget), and return the three before it.\n\
                 See {DOC}, \"Step 2: the raw API\"."
            );
        }
        start = got.last().map(|(k, _)| [k.as_slice(), &[0]].concat()).unwrap();
        seen.extend(got.into_iter().map(|(k, v)| (show(&k), v == value(k[1] - b'0'))));
    }
    let want: Vec<(String, bool)> = (0..10).map(|i| (format!("k{i}"), true)).collect();
    assert_eq!(
        seen, want,
        "scanning on from each answer's last key must give every pair once, in order, with its value"
    );
    // A single pair larger than what is left still comes back alone.
    let one = f.scan("default", b"k9", 1);
    assert_eq!(one.len(), 1, "a scan with room for a pair must return at least one");
}
