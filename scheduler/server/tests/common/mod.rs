//! Helpers shared by the tests of `tinykv-scheduler`: a scheduler served
//! in-process on a loopback port (the same `open_cluster` and `serve` as
//! the binary, on a clock the test moves), the real binary as a child
//! process that is killed when the test ends however it ends, and a few
//! request builders.
#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tinykv_engine::FjallConfig;
use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store};
use tinykv_proto::schedulerpb::scheduler_client::SchedulerClient;
use tinykv_proto::schedulerpb::{ErrorType, RequestHeader, ResponseHeader};
use tinykv_scheduler::{RaftCluster, ScheduleConfig};
use tinykv_scheduler_server::service::TICK_INTERVAL;
use tinykv_scheduler_server::{SchedulerService, open_cluster, release, serve};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A multi-threaded runtime small enough for a 2-core machine. Create it
/// *after* the temporary directory, so that on a failure it is dropped
/// (and the scheduler with it) before the directory is removed.
pub fn runtime() -> tokio::runtime::Runtime {
    let _ = env_logger::builder().is_test(true).try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A clock the test moves by hand (ms).
#[derive(Clone, Debug)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    /// A clock at `start_ms`.
    pub fn at(start_ms: u64) -> TestClock {
        TestClock(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Moves it on by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Now.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// As the service's clock.
    pub fn clock(&self) -> tinykv_scheduler_server::Clock {
        let time = Arc::clone(&self.0);
        Arc::new(move || time.load(Ordering::SeqCst))
    }
}

/// Whether the in-process scheduler runs its ticker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticker {
    /// `RaftCluster::tick` every 100 ms, as in the binary.
    On,
    /// No background ticks: the test calls `tick` itself (or never).
    Off,
}

/// A scheduler served in-process on `127.0.0.1:0`, on a fjall engine in a
/// directory the test owns. [`stop`](Self::stop) it to reopen the same
/// directory.
pub struct TestScheduler {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A direct handle on the core (for what gRPC cannot do: admin
    /// operators, the core's counts).
    pub cluster: Arc<Mutex<RaftCluster>>,
    /// The cluster's id.
    pub cluster_id: u64,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    ticker: Option<JoinHandle<()>>,
}

impl TestScheduler {
    /// Opens the scheduler in `dir` (small fjall settings) and serves it.
    pub async fn start(
        dir: &Path,
        config: ScheduleConfig,
        clock: &TestClock,
        ticker: Ticker,
    ) -> TestScheduler {
        let (engine, cluster) =
            open_cluster(dir, FjallConfig::for_tests(), config, None, clock.now_ms())
                .expect("open the scheduler");
        // The core's storage holds the engine; nothing else may, so that a
        // stop closes it.
        drop(engine);
        let cluster_id = cluster.cluster_id();
        let cluster = Arc::new(Mutex::new(cluster));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let service =
            SchedulerService::new(Arc::clone(&cluster), addr.to_string()).with_clock(clock.clock());
        let ticker = (ticker == Ticker::On).then(|| service.spawn_ticker(TICK_INTERVAL));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, service, async {
            let _ = stopped.await;
        }));
        TestScheduler { addr, cluster, cluster_id, stop: Some(stop), served: Some(served), ticker }
    }

    /// A new client connection.
    pub async fn client(&self) -> SchedulerClient<Channel> {
        client(&self.addr.to_string()).await
    }

    /// Stops serving and closes the engine (so `dir` can be opened again).
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let mut served = self.served.take().expect("running");
        // As the binary does: a client that keeps an idle connection open
        // gets 5 s, then the connections are closed.
        match tokio::time::timeout(Duration::from_secs(5), &mut served).await {
            Ok(result) => result.expect("join the server").expect("serve"),
            Err(_) => served.abort(),
        }
        if let Some(ticker) = self.ticker.take() {
            ticker.await.expect("the ticker ends without a panic");
        }
        let cluster = Arc::clone(&self.cluster);
        drop(self);
        let core = release(cluster, Duration::from_secs(10)).await.expect("release the core");
        drop(core);
    }
}

/// A client of the scheduler at `addr`.
pub async fn client(addr: &str) -> SchedulerClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match SchedulerClient::connect(format!("http://{addr}")).await {
            Ok(client) => return client.max_decoding_message_size(8 << 20),
            Err(e) if Instant::now() < deadline => {
                log::debug!("connect to {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to the scheduler at {addr}: {e}"),
        }
    }
}

/// A request header for `cluster_id`.
pub fn header(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader { cluster_id })
}

/// Asserts that `header` carries no error; `what` names the call.
#[track_caller]
pub fn assert_ok(header: &Option<ResponseHeader>, what: &str) {
    let header = header.as_ref().unwrap_or_else(|| panic!("{what}: the response has no header"));
    if let Some(error) = &header.error {
        panic!("{what}: expected success, got {:?}: {}", error.r#type(), error.message);
    }
}

/// Asserts that `header` carries an error of `error_type` whose message
/// contains `says`; `what` names the call.
#[track_caller]
pub fn assert_refused(
    header: &Option<ResponseHeader>,
    error_type: ErrorType,
    says: &str,
    what: &str,
) {
    let header = header.as_ref().unwrap_or_else(|| panic!("{what}: the response has no header"));
    let Some(error) = &header.error else {
        panic!("{what}: expected a {error_type:?} error saying {says:?}, got success");
    };
    assert_eq!(error.r#type(), error_type, "{what}: error type (message: {})", error.message);
    assert!(
        error.message.contains(says),
        "{what}: the message should say {says:?}, it says {:?}",
        error.message
    );
}

/// Store `id` at a made-up address.
pub fn store(id: u64) -> Store {
    Store { id, address: format!("127.0.0.1:{}", 20160 + id), ..Default::default() }
}

/// A region with `peers` (peer id, store id).
pub fn region(
    id: u64,
    start: &[u8],
    end: &[u8],
    (conf_ver, version): (u64, u64),
    peers: &[(u64, u64)],
) -> Region {
    Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver, version }),
        peers: peers.iter().map(|&(id, store_id)| Peer { id, store_id }).collect(),
    }
}

/// The `tinykv-scheduler` binary as a child process. Dropping it kills
/// the process (SIGKILL) and reaps it, so a failing test leaves nothing
/// running.
pub struct SchedulerProcess {
    child: Child,
    /// The address it printed.
    pub addr: String,
    /// Its stderr (logs), read by a background thread.
    log: Arc<Mutex<Vec<String>>>,
}

impl SchedulerProcess {
    /// Starts it on `data_dir`, listening on a free loopback port, and
    /// waits (at most 60 s) for the address it prints.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> SchedulerProcess {
        let dir = data_dir.to_str().expect("a UTF-8 path");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tinykv-scheduler"))
            .args(["--data-dir", dir, "--addr", "127.0.0.1:0"])
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinykv-scheduler");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = SchedulerProcess { child, addr: String::new(), log };
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| {
            panic!("tinykv-scheduler printed no address ({e}); its log:\n{}", process.log_text())
        });
        process.addr = line
            .strip_prefix("tinykv-scheduler listening on ")
            .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"))
            .to_string();
        process
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL tinykv-scheduler");
        self.child.wait().expect("reap tinykv-scheduler");
    }

    /// SIGTERM, and wait (at most 30 s) for it to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        // Polling try_wait keeps us off a crate like wait-timeout for
        // one call.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "tinykv-scheduler did not exit 30 s after SIGTERM; its log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One end of a bidirectional stream: requests go through `tx`, answers
/// come from `rx`.
pub struct Duplex<Req, Resp> {
    tx: Option<tokio::sync::mpsc::Sender<Req>>,
    rx: tonic::Streaming<Resp>,
}

impl<Req, Resp> Duplex<Req, Resp> {
    /// Sends one request.
    pub async fn send(&mut self, request: Req) {
        let tx = self.tx.as_ref().expect("the stream is still open");
        tx.send(request).await.unwrap_or_else(|_| panic!("the stream's request side is closed"));
    }

    /// The next answer, waiting at most 10 s.
    pub async fn next(&mut self) -> Resp {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.message()).await {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => panic!("the stream ended; an answer was expected"),
            Ok(Err(status)) => panic!("the stream failed: {status}"),
            Err(_) => panic!("no answer within 10 s"),
        }
    }

    /// Closes the request side and returns every answer still to come: the
    /// server answers every request before it ends the stream, so once
    /// this returns, every request sent has been handled.
    pub async fn finish(mut self) -> Vec<Resp> {
        drop(self.tx.take());
        let mut rest = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.rx.message()).await {
                Ok(Ok(Some(answer))) => rest.push(answer),
                Ok(Ok(None)) => return rest,
                Ok(Err(status)) => panic!("the stream failed: {status}"),
                Err(_) => panic!("the stream did not end within 60 s of closing it"),
            }
        }
    }
}

/// A region heartbeat stream.
pub type HeartbeatStream = Duplex<
    tinykv_proto::schedulerpb::RegionHeartbeatRequest,
    tinykv_proto::schedulerpb::RegionHeartbeatResponse,
>;

/// Opens a region heartbeat stream on `client`.
pub async fn heartbeat_stream(client: &mut SchedulerClient<Channel>) -> HeartbeatStream {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    let answers = client.region_heartbeat(requests).await.expect("open RegionHeartbeat");
    Duplex { tx: Some(tx), rx: answers.into_inner() }
}

/// A TSO stream.
pub type TsoStream =
    Duplex<tinykv_proto::schedulerpb::TsoRequest, tinykv_proto::schedulerpb::TsoResponse>;

/// Opens a TSO stream on `client`.
pub async fn tso_stream(client: &mut SchedulerClient<Channel>) -> TsoStream {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    let answers = client.tso(requests).await.expect("open Tso");
    Duplex { tx: Some(tx), rx: answers.into_inner() }
}

/// A heartbeat of `region` from its peer on `leader_store`.
pub fn heartbeat(
    cluster_id: u64,
    region: &Region,
    leader_store: u64,
) -> tinykv_proto::schedulerpb::RegionHeartbeatRequest {
    let leader = region.peers.iter().find(|p| p.store_id == leader_store).copied();
    tinykv_proto::schedulerpb::RegionHeartbeatRequest {
        header: header(cluster_id),
        region: Some(region.clone()),
        leader: Some(leader.expect("the leader store holds a peer")),
        ..Default::default()
    }
}
