//! The production driver end to end: three stores in one process, each on
//! its own fjall engines and an ephemeral loopback port, talking raft over
//! gRPC. Writes and reads go through the raw API; one store is stopped and
//! restarted, and nothing acknowledged may be lost. With a small log GC
//! limit, a store that was stopped while the others wrote catches up by a
//! snapshot sent over the `Snapshot` stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use tinykv_engine::{Cf, Engine, FjallConfig, FjallEngine, keys};
use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    BatchRollbackRequest, CheckTxnStatusRequest, CommitRequest, GetRequest, Mutation, Op,
    PrewriteRequest, RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest,
    ResolveLockRequest, ScanRequest,
};
use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{PeerState, RaftApplyState, RaftLocalState, RegionLocalState};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_server::node::{Node, NodeConfig};
use tinykv_server::raft_storage::RaftStorage;
use tinykv_server::{Server, TinyKvService, serve_service};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

struct RunningStore {
    node: Node,
    stop_grpc: oneshot::Sender<()>,
    grpc: tokio::task::JoinHandle<()>,
}

struct TestCluster {
    rt: Runtime,
    dir: tempfile::TempDir,
    addrs: BTreeMap<u64, SocketAddr>,
    running: BTreeMap<u64, RunningStore>,
    /// Log GC limit of every store (`None`: the default).
    gc_limit: Option<u64>,
}

impl TestCluster {
    fn new(n: u64) -> TestCluster {
        TestCluster::with_gc_limit(n, None)
    }

    fn with_gc_limit(n: u64, gc_limit: Option<u64>) -> TestCluster {
        let _ = env_logger::builder().is_test(true).try_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
            listeners.insert(id, l);
        }
        let addrs = listeners.iter().map(|(&id, l)| (id, l.local_addr().unwrap())).collect();
        let mut c = TestCluster { rt, dir, addrs, running: BTreeMap::new(), gc_limit };
        for (id, l) in listeners {
            c.start(id, l);
        }
        c
    }

    fn config(&self, id: u64) -> NodeConfig {
        NodeConfig {
            store_id: id,
            data_dir: self.dir.path().join(format!("store{id}")),
            stores: self.addrs.iter().map(|(&id, a)| (id, a.to_string())).collect(),
            raft: tinykv_raftstore::Config {
                seed: id,
                raft_log_gc_count_limit: self.gc_limit.unwrap_or(1000),
                raft_log_gc_tick_interval: if self.gc_limit.is_some() { 1 } else { 10 },
                ..Default::default()
            },
            fjall: FjallConfig::for_tests(),
            scheduler: None,
        }
    }

    fn start(&mut self, id: u64, listener: TcpListener) {
        let node = Node::start(&self.config(id), self.rt.handle()).unwrap();
        let storage = RaftStorage::new(node.handle(), Duration::from_secs(3))
            .with_addresses(self.config(id).stores);
        let service = TinyKvService::new(Server::new(Arc::new(storage))).with_node(node.handle());
        let (stop_grpc, stopped) = oneshot::channel::<()>();
        let grpc = self.rt.spawn(async move {
            serve_service(listener, service, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        self.running.insert(id, RunningStore { node, stop_grpc, grpc });
    }

    /// Stops the store, then its gRPC server (whose raft streams end once
    /// the store is gone).
    fn stop(&mut self, id: u64) {
        let s = self.running.remove(&id).expect("running");
        s.node.stop();
        let _ = s.stop_grpc.send(());
        let grpc = s.grpc;
        let done =
            self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), grpc).await });
        assert!(done.is_ok(), "store {id}'s gRPC server did not shut down within 10 s");
    }

    fn restart(&mut self, id: u64) {
        let l = self.rt.block_on(TcpListener::bind(self.addrs[&id])).unwrap();
        self.start(id, l);
    }

    fn client(&self, id: u64) -> Option<TinyKvClient<tonic::transport::Channel>> {
        self.rt.block_on(TinyKvClient::connect(format!("http://{}", self.addrs[&id]))).ok()
    }

    /// Puts through whichever running store leads, retrying for 20 s.
    fn put(&self, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            for &id in self.running.keys() {
                let Some(mut c) = self.client(id) else { continue };
                let req = RawPutRequest {
                    key: key.into(),
                    value: value.into(),
                    cf: "default".into(),
                    ..Default::default()
                };
                match self.rt.block_on(c.raw_put(req)) {
                    Ok(r) if r.get_ref().error.is_empty() => return,
                    Ok(r) => last = r.into_inner().error,
                    Err(s) => last = s.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("put {key} failed for 20 s; last error: {last}");
    }

    /// Gets through whichever running store leads, retrying for 20 s.
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            for &id in self.running.keys() {
                let Some(mut c) = self.client(id) else { continue };
                let req =
                    RawGetRequest { key: key.into(), cf: "default".into(), ..Default::default() };
                match self.rt.block_on(c.raw_get(req)) {
                    Ok(r) if r.get_ref().error.is_empty() => {
                        let r = r.into_inner();
                        return (!r.not_found).then_some(r.value);
                    }
                    Ok(r) => last = r.into_inner().error,
                    Err(s) => last = s.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("get {key} failed for 20 s; last error: {last}");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

#[test]
fn three_stores_over_grpc_survive_a_restart() {
    let mut c = TestCluster::new(3);
    for i in 0..30 {
        c.put(&format!("k{i:03}"), &format!("v{i}"));
    }
    for i in 0..30 {
        assert_eq!(c.get(&format!("k{i:03}")), Some(format!("v{i}").into_bytes()), "k{i:03}");
    }
    // Stop store 1; the other two keep serving.
    c.stop(1);
    for i in 30..60 {
        c.put(&format!("k{i:03}"), &format!("v{i}"));
    }
    // Restart it, then stop store 2: stores 1 and 3 must now form the
    // quorum, so store 1 must have recovered its log and caught up.
    c.restart(1);
    c.stop(2);
    for i in 0..60 {
        assert_eq!(
            c.get(&format!("k{i:03}")),
            Some(format!("v{i}").into_bytes()),
            "k{i:03} was acknowledged, then lost"
        );
    }
    c.put("after", "restart");
    assert_eq!(c.get("after"), Some(b"restart".to_vec()));
}

/// What a stopped store keeps on disk: the data of region 1, its apply
/// state and region state, and the received snapshot files left over.
struct OnDisk {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    apply: RaftApplyState,
    region: RegionLocalState,
    /// The last index of the raft log.
    last_index: u64,
    snapshot_files: usize,
}

fn on_disk(c: &TestCluster, id: u64) -> OnDisk {
    let dir = c.dir.path().join(format!("store{id}"));
    let kv = FjallEngine::open(dir.join("kv"), FjallConfig::for_tests()).unwrap();
    let snap = kv.snapshot();
    let data = snap.iter(Cf::Default, b"", None).map(|kv| kv.unwrap()).collect();
    let get = |key: &[u8]| snap.get(Cf::Meta, key).unwrap().expect("a local state");
    let apply = RaftApplyState::decode(get(&keys::apply_state_key(1)).as_slice()).unwrap();
    let region = RegionLocalState::decode(get(&keys::region_state_key(1)).as_slice()).unwrap();
    let raft = FjallEngine::open(dir.join("raft"), FjallConfig::for_tests()).unwrap();
    let raft_state = raft.get(Cf::Meta, &keys::raft_state_key(1)).unwrap().expect("raft state");
    let last_index = RaftLocalState::decode(raft_state.as_slice()).unwrap().last_index;
    let snapshot_files = received_snapshot_files(c, id);
    OnDisk { data, apply, region, last_index, snapshot_files }
}

/// How many received snapshot files store `id` has on disk.
fn received_snapshot_files(c: &TestCluster, id: u64) -> usize {
    let dir = c.dir.path().join(format!("store{id}")).join("snap");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("rev_"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_stopped_store_catches_up_by_snapshot_over_grpc() {
    const LIMIT: u64 = 20;
    let mut c = TestCluster::with_gc_limit(3, Some(LIMIT));
    for i in 0..10 {
        c.put(&format!("k{i:03}"), &format!("v{i}"));
    }
    c.stop(3);
    let before = on_disk(&c, 3);
    // Far past the GC limit: the others compact their logs beyond all
    // that store 3 has.
    for i in 10..150 {
        c.put(&format!("k{i:03}"), &format!("v{i}"));
    }
    // Store 1's log no longer holds what store 3 lacks (the entry after
    // store 3's last one is compacted): store 3 needs a snapshot.
    c.stop(1);
    let leader_side = on_disk(&c, 1);
    let compacted = leader_side.apply.truncated_state.unwrap_or_default().index;
    assert!(
        compacted > before.last_index,
        "store 1 should have compacted its log past store 3's last index {}, it is truncated \
         at {compacted}",
        before.last_index
    );
    c.restart(1);
    c.restart(3);
    // Stores 1 and 3 must now be the quorum: store 3 has to catch up, and
    // the entries it lacks are gone from the others' logs.
    c.stop(2);
    c.put("after", "snapshot");
    for i in 0..150 {
        assert_eq!(c.get(&format!("k{i:03}")), Some(format!("v{i}").into_bytes()), "k{i:03}");
    }
    // The applied snapshot's files go when it is applied; a second copy
    // that arrived after it (the leader may send one more before it hears
    // of the first) goes at the store's next two file sweeps, about 2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received_snapshot_files(&c, 3) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    c.stop(3);
    let after = on_disk(&c, 3);
    let truncated = |d: &OnDisk| d.apply.truncated_state.unwrap_or_default().index;
    assert!(
        truncated(&after) > before.last_index,
        "store 3 caught up, so its log must start past its old end {}; it is truncated at {}",
        before.last_index,
        truncated(&after)
    );
    assert_eq!(after.region.state(), PeerState::Normal, "store 3's region after the snapshot");
    for i in 0..150 {
        let key = format!("k{i:03}").into_bytes();
        assert_eq!(after.data.get(&key), Some(&format!("v{i}").into_bytes()), "k{i:03} on store 3");
    }
    assert_eq!(after.data.get(b"after".as_slice()), Some(&b"snapshot".to_vec()));
    assert_eq!(
        after.snapshot_files, 0,
        "received snapshot files must be deleted once applied or passed (within 10 s)"
    );
}

/// A snapshot stream that does not check out (wrong checksum, fewer bytes
/// than announced, no message) is refused with a clear error, and the
/// store goes on as before.
#[test]
fn a_bad_snapshot_stream_is_rejected_with_a_clear_error() {
    use tinykv_proto::eraftpb::{Message, MessageType, Snapshot, SnapshotMetadata};
    use tinykv_proto::metapb;
    use tinykv_proto::raft_serverpb::{
        RaftMessage, RaftSnapshotData, SnapshotCfFile, SnapshotChunk, SnapshotMeta,
    };

    let c = TestCluster::new(3);
    c.put("k", "v");
    let region = metapb::Region { id: 1, ..Default::default() };
    let meta = SnapshotMeta {
        cf_files: ["default", "lock", "write"]
            .iter()
            .map(|cf| SnapshotCfFile {
                cf: cf.to_string(),
                size: if *cf == "default" { 10 } else { 0 },
                checksum: if *cf == "default" { 0x1234_5678 } else { 0 },
            })
            .collect(),
    };
    let data =
        RaftSnapshotData { region: Some(region), file_size: 10, data: vec![], meta: Some(meta) };
    let msg = RaftMessage {
        region_id: 1,
        from_peer: Some(metapb::Peer { id: 1, store_id: 1 }),
        to_peer: Some(metapb::Peer { id: 2, store_id: 2 }),
        message: Some(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            snapshot: Some(Snapshot {
                data: data.encode_to_vec(),
                metadata: Some(SnapshotMetadata { conf_state: None, index: 900, term: 900 }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let send = |chunks: Vec<SnapshotChunk>| -> String {
        let mut client = c.client(2).expect("store 2 is up");
        let stream = tokio_stream::iter(chunks);
        match c.rt.block_on(client.snapshot(stream)) {
            Ok(_) => "accepted".into(),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        }
    };
    let chunk =
        |message: Option<RaftMessage>, data: &[u8]| SnapshotChunk { message, data: data.to_vec() };
    let wrong = send(vec![chunk(Some(msg.clone()), b"0123456789")]);
    assert!(wrong.contains("InvalidArgument") && wrong.contains("checksum"), "{wrong}");
    let short = send(vec![chunk(Some(msg.clone()), b"01234")]);
    assert!(short.contains("InvalidArgument") && short.contains("truncated"), "{short}");
    let headless = send(vec![chunk(None, b"0123456789")]);
    assert!(headless.contains("InvalidArgument") && headless.contains("no message"), "{headless}");
    assert_eq!(c.get("k"), Some(b"v".to_vec()), "the store goes on as before");
    c.put("k2", "v2");
    assert_eq!(c.get("k2"), Some(b"v2".to_vec()));
}

/// The leader's store id, once a read through it succeeds (retrying for
/// 20 s).
fn leader(c: &TestCluster) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for &id in c.running.keys() {
            let Some(mut client) = c.client(id) else { continue };
            let req =
                RawGetRequest { key: b"k".to_vec(), cf: "default".into(), ..Default::default() };
            if let Ok(r) = c.rt.block_on(client.raw_get(req))
                && r.get_ref().region_error.is_none()
                && r.get_ref().error.is_empty()
            {
                return id;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no store served a read for 20 s");
}

/// Every RPC with a `region_error` field, sent to `store`: what each
/// answered (`None` when it succeeded), by name. Raw answers also carry
/// the message in `error`.
fn region_errors_of_every_rpc(
    c: &TestCluster,
    store: u64,
) -> Vec<(&'static str, Option<errorpb::Error>, String)> {
    let mut client = c.client(store).expect("connect");
    let rt = &c.rt;
    let key = b"k".to_vec();
    let ctx = None;
    let mutation = Mutation { op: Op::Put as i32, key: key.clone(), value: b"v".to_vec() };
    let mut out = Vec::new();
    macro_rules! call {
        ($name:literal, $rpc:ident, $req:expr, raw) => {{
            let r = rt.block_on(client.$rpc($req)).expect($name).into_inner();
            out.push(($name, r.region_error, r.error));
        }};
        ($name:literal, $rpc:ident, $req:expr) => {{
            let r = rt.block_on(client.$rpc($req)).expect($name).into_inner();
            out.push(($name, r.region_error, String::new()));
        }};
    }
    call!(
        "RawGet",
        raw_get,
        RawGetRequest { context: ctx, key: key.clone(), cf: "default".into() },
        raw
    );
    call!(
        "RawPut",
        raw_put,
        RawPutRequest {
            context: ctx,
            key: key.clone(),
            value: b"v".to_vec(),
            cf: "default".into()
        },
        raw
    );
    call!(
        "RawDelete",
        raw_delete,
        RawDeleteRequest { context: ctx, key: key.clone(), cf: "default".into() },
        raw
    );
    call!(
        "RawScan",
        raw_scan,
        RawScanRequest { context: ctx, start_key: vec![], limit: 10, cf: "default".into() },
        raw
    );
    call!("KvGet", kv_get, GetRequest { context: ctx, key: key.clone(), version: 10 });
    call!(
        "KvScan",
        kv_scan,
        ScanRequest { context: ctx, start_key: vec![], limit: 10, version: 10 }
    );
    call!(
        "KvPrewrite",
        kv_prewrite,
        PrewriteRequest {
            context: ctx,
            mutations: vec![mutation],
            primary_lock: key.clone(),
            start_version: 10,
            lock_ttl: 100
        }
    );
    call!(
        "KvCommit",
        kv_commit,
        CommitRequest {
            context: ctx,
            start_version: 10,
            keys: vec![key.clone()],
            commit_version: 11
        }
    );
    call!(
        "KvCheckTxnStatus",
        kv_check_txn_status,
        CheckTxnStatusRequest {
            context: ctx,
            primary_key: key.clone(),
            lock_ts: 10,
            current_ts: 12
        }
    );
    call!(
        "KvBatchRollback",
        kv_batch_rollback,
        BatchRollbackRequest { context: ctx, start_version: 10, keys: vec![key.clone()] }
    );
    call!(
        "KvResolveLock",
        kv_resolve_lock,
        ResolveLockRequest { context: ctx, start_version: 10, commit_version: 0 }
    );
    out
}

/// A follower answers every raw and transactional RPC with the structured
/// not-leader error: the region, the leader's peer and its store's
/// address, in `region_error` (raw RPCs: its message in `error` too).
#[test]
fn followers_answer_every_rpc_with_a_structured_not_leader_error() {
    let c = TestCluster::new(3);
    c.put("k", "v");
    let mut last = String::new();
    for _attempt in 0..10 {
        let leader = leader(&c);
        let want = errorpb::NotLeader {
            region_id: 1,
            leader: Some(metapb::Peer { id: leader, store_id: leader }),
            leader_address: c.addrs[&leader].to_string(),
        };
        let mut moved = false;
        for follower in (1..=3).filter(|&id| id != leader) {
            for (rpc, region_error, error) in region_errors_of_every_rpc(&c, follower) {
                let Some(e) = region_error else {
                    panic!(
                        "{rpc} to follower {follower} answered no region_error (error {error:?}); \
                         it must answer region_error.not_leader"
                    );
                };
                let Some(not_leader) = &e.not_leader else {
                    panic!("{rpc} to follower {follower}: region_error has no not_leader: {e:?}");
                };
                if not_leader != &want {
                    // An election in between: look for the leader again.
                    last = format!("{rpc} to follower {follower}: {not_leader:?}, want {want:?}");
                    moved = true;
                    continue;
                }
                assert!(
                    e.message.contains(&want.leader_address),
                    "{rpc}: the message should name the leader's address: {:?}",
                    e.message
                );
                if rpc.starts_with("Raw") {
                    assert_eq!(error, e.message, "{rpc}: a raw answer's `error` holds the message");
                }
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the leader kept moving; last mismatch: {last}");
}

/// A scan whose pairs would not fit in one gRPC message answers the pairs
/// that fit in the byte budget instead of a transport error, raw and
/// transactional alike, on the replicated store.
#[test]
fn a_scan_larger_than_a_grpc_message_answers_a_page() {
    let c = TestCluster::new(3);
    let value = vec![b'x'; tinykv_server::limits::MAX_VALUE_SIZE_BYTES];
    for i in 0..10 {
        c.put(&format!("k{i}"), std::str::from_utf8(&value).unwrap());
    }
    let leader = leader(&c);
    let mut client = c.client(leader).unwrap();
    let req =
        RawScanRequest { start_key: vec![], limit: 10, cf: "default".into(), ..Default::default() };
    let scan = c.rt.block_on(client.raw_scan(req)).expect("RawScan of 10 MiB").into_inner();
    assert!(scan.error.is_empty(), "{}", scan.error);
    let bytes: usize = scan.kvs.iter().map(|p| p.key.len() + p.value.len()).sum();
    assert!(
        !scan.kvs.is_empty() && bytes <= tinykv_storage::MAX_SCAN_BYTES,
        "{} pairs, {bytes} bytes",
        scan.kvs.len()
    );
    // The same data as committed transactions (one key per transaction:
    // a prewrite request is bounded by the message size too).
    for i in 0..10u64 {
        let key = format!("t{i}").into_bytes();
        let mutation = Mutation { op: Op::Put as i32, key: key.clone(), value: value.clone() };
        let (start, commit) = (100 + 2 * i, 101 + 2 * i);
        let pw = PrewriteRequest {
            mutations: vec![mutation],
            primary_lock: key.clone(),
            start_version: start,
            lock_ttl: 1000,
            ..Default::default()
        };
        let r = c.rt.block_on(client.kv_prewrite(pw)).expect("KvPrewrite").into_inner();
        assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
        let cm = CommitRequest {
            start_version: start,
            keys: vec![key],
            commit_version: commit,
            ..Default::default()
        };
        let r = c.rt.block_on(client.kv_commit(cm)).expect("KvCommit").into_inner();
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
    }
    let req =
        ScanRequest { start_key: b"t".to_vec(), limit: 10, version: 1000, ..Default::default() };
    let scan = c.rt.block_on(client.kv_scan(req)).expect("KvScan of 10 MiB").into_inner();
    assert!(scan.region_error.is_none(), "{:?}", scan.region_error);
    let bytes: usize = scan.pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
    assert!(
        !scan.pairs.is_empty() && bytes <= tinykv_storage::MAX_SCAN_BYTES,
        "{} pairs, {bytes} bytes",
        scan.pairs.len()
    );
}
