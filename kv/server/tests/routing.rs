//! Routing by key on the production store (lab 3b): one store holding two
//! regions, `[, "m")` and `["m", +inf)`, as if region 1 had split. Raw
//! requests that name no region go to the region of their key, and a scan
//! from the start returns the keys of both regions in order. (The server
//! cannot split by itself before lab 3c, so the test writes the two
//! regions into the store's engines before it starts.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv_engine::{FjallConfig, FjallEngine};
use tinykv_proto::kvrpcpb::{Context, RawGetRequest, RawPutRequest, RawScanRequest};
use tinykv_proto::metapb::{Peer, Region, RegionEpoch};
use tinykv_raftstore::Engines;
use tinykv_raftstore::bootstrap::{bootstrap_region, bootstrap_store};
use tinykv_server::Server;
use tinykv_server::node::{Node, NodeConfig};
use tinykv_server::raft_storage::RaftStorage;
use tinykv_storage::{Modify, Storage};

fn region(id: u64, peer: u64, start: &[u8], end: &[u8]) -> Region {
    Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver: 1, version: 2 }),
        peers: vec![Peer { id: peer, store_id: 1 }],
    }
}

/// A store whose data directory holds regions 1 `[, m)` and 2 `[m, +inf)`.
fn start_store(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> Node {
    {
        let open = |sub: &str| FjallEngine::open(dir.join(sub), FjallConfig::for_tests()).unwrap();
        let engines = Engines::new(Arc::new(open("kv")), Arc::new(open("raft")));
        bootstrap_region(&engines, &region(1, 1, b"", b"m")).unwrap();
        bootstrap_region(&engines, &region(2, 2, b"m", b"")).unwrap();
        bootstrap_store(&engines, 1, 1).unwrap();
    }
    let cfg = NodeConfig {
        store_id: 1,
        data_dir: dir.to_path_buf(),
        stores: BTreeMap::from([(1, "127.0.0.1:1".to_string())]),
        raft: tinykv_raftstore::Config { seed: 1, ..Default::default() },
        fjall: FjallConfig::for_tests(),
        scheduler: None,
    };
    Node::start(&cfg, rt.handle()).unwrap()
}

/// Puts `key` = `value` through the raw API with no region named,
/// retrying while the regions elect their leaders.
fn put(server: &Server, key: &[u8], value: &[u8]) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = server.raw_put(RawPutRequest {
            context: Some(Context::default()),
            key: key.to_vec(),
            value: value.to_vec(),
            cf: "default".into(),
        });
        if resp.error.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "put {key:?} kept failing: {resp:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scan(server: &Server, start: &[u8]) -> Vec<Vec<u8>> {
    let resp = server.raw_scan(RawScanRequest {
        context: Some(Context::default()),
        start_key: start.to_vec(),
        limit: 100,
        cf: "default".into(),
    });
    assert!(resp.error.is_empty(), "scan from {start:?}: {resp:?}");
    resp.kvs.into_iter().map(|kv| kv.key).collect()
}

#[test]
fn requests_without_a_region_are_routed_by_key() {
    let _ = env_logger::builder().is_test(true).try_init();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = start_store(dir.path(), &rt);
    let storage = RaftStorage::new(node.handle(), Duration::from_secs(5));
    let server = Server::new(Arc::new(storage.clone()));

    for key in [&b"a"[..], b"k", b"n", b"z"] {
        put(&server, key, b"v");
    }
    let at = |key: &[u8]| node.handle().region_for_key(key).unwrap().map(|r| r.id);
    assert_eq!((at(b"a"), at(b"l"), at(b"m"), at(b"z")), (Some(1), Some(1), Some(2), Some(2)));

    // Reads go to each key's region; scans cross from one to the next.
    let get = |key: &[u8]| {
        server.raw_get(RawGetRequest {
            context: Some(Context::default()),
            key: key.to_vec(),
            cf: "default".into(),
        })
    };
    assert_eq!(get(b"z").value, b"v".to_vec(), "{:?}", get(b"z"));
    assert!(get(b"y").not_found, "{:?}", get(b"y"));
    assert_eq!(scan(&server, b""), [b"a".to_vec(), b"k".to_vec(), b"n".to_vec(), b"z".to_vec()]);
    assert_eq!(scan(&server, b"l"), [b"n".to_vec(), b"z".to_vec()]);
    assert_eq!(scan(&server, b"o"), [b"z".to_vec()]);

    // A request that names region 1 stays there: "z" is not its key.
    let resp = server.raw_get(RawGetRequest {
        context: Some(Context { region_id: 1, ..Default::default() }),
        key: b"z".to_vec(),
        cf: "default".into(),
    });
    let region_error = resp.region_error.expect("a region error");
    assert_eq!(region_error.key_not_in_region.map(|e| e.region_id), Some(1));

    // A request that names region 1 at an older epoch (before the split,
    // version 1) hears epoch_not_match with the regions as they are; at
    // the current epoch it is served.
    let at_version = |version: u64| {
        let epoch = RegionEpoch { conf_ver: 1, version };
        let context = Context { region_id: 1, region_epoch: Some(epoch), ..Default::default() };
        server.raw_get(RawGetRequest {
            context: Some(context),
            key: b"a".to_vec(),
            cf: "default".into(),
        })
    };
    let stale = at_version(1);
    let mismatch = stale.region_error.and_then(|e| e.epoch_not_match);
    let current: Vec<u64> =
        mismatch.expect("epoch_not_match").current_regions.iter().map(|r| r.id).collect();
    assert!(current.contains(&1), "the current regions name region 1: {current:?}");
    let fresh = at_version(2);
    assert!(fresh.region_error.is_none(), "{fresh:?}");
    assert_eq!(fresh.value, b"v".to_vec());

    // One write cannot span two regions (one command, one region).
    let both = vec![
        Modify::Put { cf: tinykv_engine::Cf::Default, key: b"b".to_vec(), value: b"x".to_vec() },
        Modify::Put { cf: tinykv_engine::Cf::Default, key: b"x".to_vec(), value: b"x".to_vec() },
    ];
    let err = storage.write(&Context::default(), both).unwrap_err();
    let key_not_in_region = err.region_error().and_then(|e| e.key_not_in_region.clone());
    assert_eq!(key_not_in_region.map(|e| e.key), Some(b"x".to_vec()), "{err}");
    assert!(get(b"b").not_found, "the refused write wrote b");
    node.stop();
}
