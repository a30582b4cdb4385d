//! The production driver end to end: three stores in one process, each on
//! its own fjall engines and an ephemeral loopback port, talking raft over
//! gRPC. Writes and reads go through the raw API; one store is stopped and
//! restarted, and nothing acknowledged may be lost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv_engine::FjallConfig;
use tinykv_proto::kvrpcpb::{RawGetRequest, RawPutRequest};
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
}

impl TestCluster {
    fn new(n: u64) -> TestCluster {
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
        let mut c = TestCluster { rt, dir, addrs, running: BTreeMap::new() };
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
            raft: tinykv_raftstore::Config { seed: id, ..Default::default() },
            fjall: FjallConfig::for_tests(),
        }
    }

    fn start(&mut self, id: u64, listener: TcpListener) {
        let node = Node::start(&self.config(id), self.rt.handle()).unwrap();
        let storage = RaftStorage::new(node.handle(), Duration::from_secs(3));
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
