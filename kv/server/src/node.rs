//! The production driver of the raftstore: one store on a real thread,
//! with a real clock, fjall engines and a gRPC transport.
//!
//! The same [`Store`] code runs here and in the simulator; only the
//! driver differs. Here:
//!
//! - one **store thread** owns the [`Store`]. It takes inputs from a
//!   bounded queue (raft messages from the network, client commands) and
//!   ticks the store every `raft_base_tick_ms` of wall-clock time;
//! - the store's [`Context`] puts outgoing raft messages on the
//!   `Transport`, which keeps one gRPC `Raft` stream per peer store and
//!   never blocks the store thread (a full queue drops the message: raft
//!   copes with loss), and answers commands through per-command channels.
//!   A broken stream is reconnected within a fraction of the election
//!   timeout ([`LinkTiming`]), so that a store that restarts hears from
//!   the leader before it would campaign;
//! - [`NodeHandle`] is how the rest of the server (the gRPC `Raft` and
//!   `Snapshot` handlers, the raft-backed storage) talks to the store
//!   thread;
//! - two **worker threads** run the store's background tasks: the region
//!   worker builds and applies snapshots, the log GC worker deletes
//!   compacted raft log entries. Their results come back through the
//!   store thread's input queue;
//! - a snapshot message travels as a `Snapshot` client stream: the
//!   message first, then the snapshot's files in chunks. The receiver
//!   writes and checks the files before it hands the message to its store.
//!
//! The store thread logs (at `info`) every change of a region's raft term
//! or leader as it sees it, one line each:
//! `store 2: region 1: term 6, leader peer 2 on store 2` or
//! `store 1: region 1: term 7, no leader`. `tests/leader_stability.rs`
//! reads these lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message as _;
use tinykv_engine::{FjallConfig, FjallEngine};
use tinykv_proto::eraftpb::MessageType;
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;
use tinykv_proto::raft_serverpb::{RaftMessage, RaftSnapshotData, SnapshotChunk, SnapshotMeta};
use tinykv_proto::schedulerpb::{
    AskSplitResponse, RegionHeartbeatRequest, RegionHeartbeatResponse,
};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_raftstore::bootstrap::{
    bootstrap_region, bootstrap_store, first_region, load_store_ident,
};
use tinykv_raftstore::{
    CmdResponse, Context, Engines, Peer, SchedulerTask, SnapKey, SnapManager, Store, Task,
    TaskResult, Token, run_task,
};
use tokio::sync::mpsc as tmpsc;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::scheduler_client::SchedulerClient;

/// Inputs queued for the store thread at most.
pub const INPUT_QUEUE: usize = 4096;
/// Raft messages queued per peer store at most.
pub const SEND_QUEUE: usize = 4096;
/// Reports to the scheduler queued at most.
pub const REPORT_QUEUE: usize = 4096;
/// Bytes of snapshot file data per `Snapshot` stream chunk.
pub const SNAPSHOT_CHUNK: usize = 1024 * 1024;

/// How the transport keeps its links to the other stores up: derived
/// from the raft timing by [`LinkTiming::for_raft`].
///
/// The one thing it must guarantee is that a store that restarts hears
/// from the leader within its election timeout. A restarted follower that
/// hears nothing campaigns in a higher term, and the leader steps down
/// when it sees that term, however healthy it is: this raft has neither
/// Pre-Vote nor check-quorum (the labs do not ask for them). The
/// transport used to wait up to 1 s between reconnects (doubling from
/// 50 ms): a follower stopped for 2 s campaigned 160 ms after its restart,
/// while its leader's next connect was still 550 ms away, and the leader
/// lost its term in every restart (`tests/leader_stability.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// The first wait before trying again, after a connect failed or a
    /// stream ended.
    pub retry_min: Duration,
    /// The longest wait between two connect attempts (the waits double from
    /// `retry_min`): a quarter of the shortest election timeout, so a link
    /// to a restarted store is back, and a heartbeat on it, well within the
    /// store's first election timeout.
    pub retry_max: Duration,
    /// How long one connect attempt may take: half the shortest election
    /// timeout (an attempt to a host that drops the connection request
    /// gives up and tries again, rather than wait for TCP's own retries).
    pub connect_timeout: Duration,
    /// An HTTP/2 ping goes out on a link that received nothing for this
    /// long...
    pub keep_alive_interval: Duration,
    /// ...and a link whose ping gets no answer within this time is closed
    /// and reconnected (a peer that vanished without closing its
    /// connections, e.g. a host that lost power).
    pub keep_alive_timeout: Duration,
}

impl LinkTiming {
    /// The timing for stores whose raft runs with `cfg`: with the default
    /// config (election timeout 100–200 ms), retries after 5, 10, 20,
    /// then every 25 ms, a 50 ms connect timeout, pings after 1 s of
    /// silence that must be answered within 1 s.
    pub fn for_raft(cfg: &tinykv_raftstore::Config) -> LinkTiming {
        let ticks = u64::try_from(cfg.raft_election_timeout_ticks).unwrap_or(u64::MAX);
        let election = Duration::from_millis(cfg.raft_base_tick_ms.saturating_mul(ticks));
        let retry_max = election / 4;
        LinkTiming {
            retry_min: (retry_max / 5).max(Duration::from_millis(1)),
            retry_max,
            connect_timeout: election / 2,
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(1),
        }
    }

    /// The gRPC endpoint of the store at `addr` (`HOST:PORT`) with this
    /// timing.
    ///
    /// # Errors
    ///
    /// If `addr` does not make a URI.
    fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("{addr:?} is not a HOST:PORT address: {e}"))?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            // Raft messages are small: none may wait for Nagle's
            // algorithm to meet the peer's delayed ACK (40 ms). tonic's
            // default, said here because the transport depends on it.
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keep_alive_interval)
            .keep_alive_timeout(self.keep_alive_timeout)
            .keep_alive_while_idle(true))
    }
}

/// How one store of a static cluster is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This store's id.
    pub store_id: u64,
    /// Where its two engines live (`<dir>/kv` and `<dir>/raft`).
    pub data_dir: PathBuf,
    /// Every store of the cluster (this one included) and its gRPC address.
    /// A fresh data directory is bootstrapped with one region that has a
    /// peer on each of them (peer id = store id).
    pub stores: BTreeMap<u64, String>,
    /// The raftstore's config.
    pub raft: tinykv_raftstore::Config,
    /// The engines' config.
    pub fjall: FjallConfig,
    /// The scheduler this store has joined ([`crate::scheduler_client::join`]),
    /// if it runs in a cluster with one: its reports go there and its
    /// operators come from there, and the other stores' addresses are
    /// looked up there (`stores` then lists this store only). `None`: a
    /// static cluster, whose data directory is bootstrapped here.
    pub scheduler: Option<SchedulerClient>,
}

enum Input {
    Raft(Box<RaftMessage>),
    TaskResult(Box<TaskResult>),
    Command(Box<RaftCmdRequest>, mpsc::Sender<CmdResponse>),
    Region(u64, mpsc::Sender<Option<Region>>),
    RegionForKey(Vec<u8>, mpsc::Sender<Option<Region>>),
    /// The scheduler's answer to a region heartbeat (an operator's step).
    FromScheduler(Box<RegionHeartbeatResponse>),
    /// The scheduler's answer to an `AskSplit`: the new region's ids.
    SplitIds(Box<Region>, Vec<u8>, AskSplitResponse),
    Stop,
}

/// A handle on a running store thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    store_id: u64,
    tx: SyncSender<Input>,
    snaps: Arc<SnapManager>,
    /// Becomes `true` when the store stops.
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Raft(_) => f.write_str("Raft"),
            Input::TaskResult(r) => write!(f, "TaskResult({r:?})"),
            Input::Command(..) => f.write_str("Command"),
            Input::Region(..) => f.write_str("Region"),
            Input::RegionForKey(..) => f.write_str("RegionForKey"),
            Input::FromScheduler(_) => f.write_str("FromScheduler"),
            Input::SplitIds(..) => f.write_str("SplitIds"),
            Input::Stop => f.write_str("Stop"),
        }
    }
}

/// Why a command got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The store thread's queue is full.
    #[error("store {0} is overloaded (its input queue is full)")]
    Busy(u64),
    /// The store thread has stopped.
    #[error("store {0} is stopped")]
    Stopped(u64),
    /// No answer within the timeout (e.g. no quorum).
    #[error("store {0} did not answer within {1:?}")]
    Timeout(u64, Duration),
}

impl NodeHandle {
    /// This store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// Hands a raft message from the network to the store (dropped if the
    /// queue is full: raft copes with loss).
    ///
    /// # Errors
    ///
    /// [`NodeError::Stopped`] once the store thread has stopped.
    pub fn deliver(&self, msg: RaftMessage) -> Result<(), NodeError> {
        match self.tx.try_send(Input::Raft(Box::new(msg))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                log::warn!("store {}: input queue full, a raft message is dropped", self.store_id);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(NodeError::Stopped(self.store_id)),
        }
    }

    /// Runs a command and waits up to `timeout` for its answer.
    ///
    /// # Errors
    ///
    /// [`NodeError`] if the command could not be queued or got no answer.
    pub fn call(&self, req: RaftCmdRequest, timeout: Duration) -> Result<CmdResponse, NodeError> {
        let (tx, rx) = mpsc::channel();
        self.tx.try_send(Input::Command(Box::new(req), tx)).map_err(|e| match e {
            TrySendError::Full(_) => NodeError::Busy(self.store_id),
            TrySendError::Disconnected(_) => NodeError::Stopped(self.store_id),
        })?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => NodeError::Timeout(self.store_id, timeout),
            RecvTimeoutError::Disconnected => NodeError::Stopped(self.store_id),
        })
    }

    /// The store's snapshot files (the `Snapshot` handler receives into
    /// them).
    pub fn snaps(&self) -> &Arc<SnapManager> {
        &self.snaps
    }

    /// Receives a snapshot message and its files from a peer store's
    /// `Snapshot` stream (`chunks`: the bytes after the message), checks
    /// them, and hands the message to the store.
    ///
    /// # Errors
    ///
    /// What was wrong with the snapshot (nothing is kept then), or
    /// [`NodeError::Stopped`].
    pub async fn receive_snapshot<S>(&self, msg: RaftMessage, mut chunks: S) -> Result<(), String>
    where
        S: tokio_stream::Stream<Item = Result<Vec<u8>, String>> + Unpin,
    {
        use tokio_stream::StreamExt as _;
        let key = snapshot_key(&msg).ok_or("the first chunk carries no snapshot message")?;
        let meta = snapshot_meta(&msg)?;
        let snaps = self.snaps.clone();
        if snaps.in_use(key, tinykv_raftstore::SnapKind::Received) {
            // A second copy while the first is still being received or
            // applied (the leader sent it again before it heard of the
            // first): writing it would collide with the first.
            log::info!(
                "store {}: snapshot {key} is being received or applied; a second copy is dropped",
                self.store_id
            );
            return Ok(());
        }
        // A complete copy that is not in use had its message lost or
        // refused (a full input queue, a range that overlapped a region
        // then): `receive` checks this transfer against it without
        // writing, and the message is delivered again. Dropping it instead
        // would leave the peer waiting for a snapshot forever.
        let mut receiver = snaps.receive(key, &meta).map_err(|e| e.to_string())?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            receiver = tokio::task::spawn_blocking(move || {
                receiver.write(&chunk).map(|()| receiver).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
        }
        tokio::task::spawn_blocking(move || receiver.finish().map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())??;
        log::info!("store {}: received snapshot {key}", self.store_id);
        self.deliver(msg).map_err(|e| e.to_string())
    }

    /// Waits until the store has stopped (for long-lived streams that must
    /// end with it).
    pub async fn wait_stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The region `region_id` as this store's peer knows it.
    ///
    /// # Errors
    ///
    /// [`NodeError::Stopped`].
    pub fn region(&self, region_id: u64) -> Result<Option<Region>, NodeError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Input::Region(region_id, tx))
            .map_err(|_| NodeError::Stopped(self.store_id))?;
        rx.recv().map_err(|_| NodeError::Stopped(self.store_id))
    }

    /// The region of this store whose range holds `key` (lab 3b: a store
    /// holds many regions once they split).
    ///
    /// # Errors
    ///
    /// [`NodeError::Stopped`].
    pub fn region_for_key(&self, key: &[u8]) -> Result<Option<Region>, NodeError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Input::RegionForKey(key.to_vec(), tx))
            .map_err(|_| NodeError::Stopped(self.store_id))?;
        rx.recv().map_err(|_| NodeError::Stopped(self.store_id))
    }
}

/// A running store: its thread and transport. Dropping it stops both.
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    thread: Option<JoinHandle<()>>,
    stopped: watch::Sender<bool>,
}

impl Node {
    /// Opens (bootstrapping a fresh directory) and starts store
    /// `cfg.store_id`; outgoing raft messages go through tasks spawned on
    /// `runtime`.
    ///
    /// # Errors
    ///
    /// A message saying what failed (engines, bootstrap, start).
    pub fn start(cfg: &NodeConfig, runtime: &tokio::runtime::Handle) -> Result<Node, String> {
        let engines = open_engines(&cfg.data_dir, cfg.fjall.clone())?;
        Node::start_on(cfg, engines, runtime)
    }

    /// Starts store `cfg.store_id` on engines already open (and, with a
    /// scheduler, already joined to its cluster).
    ///
    /// # Errors
    ///
    /// A message saying what failed.
    pub fn start_on(
        cfg: &NodeConfig,
        engines: Engines,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Node, String> {
        if cfg.scheduler.is_none() {
            bootstrap_if_fresh(cfg, &engines)?;
        }
        let snap_dir = cfg.data_dir.join("snap");
        let snaps = SnapManager::open(&snap_dir).map_err(|e| {
            format!("cannot open the snapshot directory {}: {e}", snap_dir.display())
        })?;
        let snaps = Arc::new(snaps);
        let store = Store::start(cfg.raft.clone(), engines.clone(), snaps.clone())
            .map_err(|e| format!("store {} cannot start: {e}", cfg.store_id))?;
        let timing = LinkTiming::for_raft(&cfg.raft);
        let resolver = cfg.scheduler.clone();
        let transport =
            Transport::new(cfg.store_id, &cfg.stores, timing, snaps.clone(), runtime, resolver);
        let (tx, rx) = mpsc::sync_channel(INPUT_QUEUE);
        let store_id = cfg.store_id;
        let reports = cfg.scheduler.clone().map(|client| {
            let (reports_tx, reports_rx) = tmpsc::channel(REPORT_QUEUE);
            runtime.spawn(run_reports(client, store_id, reports_rx, tx.clone()));
            reports_tx
        });
        let workers = Workers::start(store_id, &engines, &snaps, &tx)?;
        let tick = Duration::from_millis(cfg.raft.raft_base_tick_ms);
        let thread = std::thread::Builder::new()
            .name(format!("store-{store_id}"))
            .spawn(move || run_store(store, transport, workers, reports, rx, tick))
            .map_err(|e| format!("cannot start the store thread: {e}"))?;
        let (stopped, stopped_rx) = watch::channel(false);
        let handle = NodeHandle { store_id, tx, snaps, stopped: stopped_rx };
        Ok(Node { handle, thread: Some(thread), stopped })
    }

    /// The handle to talk to the store.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops the store thread and waits for it (the engines are closed
    /// when it returns).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.handle.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.stopped.send(true);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The store's two engines in `dir` (`kv` and `raft`), created if missing.
///
/// # Errors
///
/// Which engine failed to open, and why.
pub fn open_engines(dir: &Path, fjall: FjallConfig) -> Result<Engines, String> {
    let open = |sub: &str| {
        FjallEngine::open(dir.join(sub), fjall.clone())
            .map_err(|e| format!("cannot open the {sub} engine in {}: {e}", dir.display()))
    };
    Ok(Engines::new(Arc::new(open("kv")?), Arc::new(open("raft")?)))
}

/// Bootstraps the store and the first region on a fresh data directory.
fn bootstrap_if_fresh(cfg: &NodeConfig, engines: &Engines) -> Result<(), String> {
    let ident = load_store_ident(engines).map_err(|e| e.to_string())?;
    if let Some(ident) = ident {
        if ident.store_id != cfg.store_id {
            return Err(format!(
                "{} holds store {}, not store {}",
                cfg.data_dir.display(),
                ident.store_id,
                cfg.store_id
            ));
        }
        return Ok(());
    }
    if !cfg.stores.contains_key(&cfg.store_id) {
        return Err(format!("store {} is not in the cluster's store list", cfg.store_id));
    }
    let peers: Vec<(u64, u64)> = cfg.stores.keys().map(|&id| (id, id)).collect();
    bootstrap_region(engines, &first_region(1, &peers)).map_err(|e| e.to_string())?;
    bootstrap_store(engines, 1, cfg.store_id).map_err(|e| e.to_string())?;
    log::info!("store {}: bootstrapped region 1 with stores {:?}", cfg.store_id, cfg.stores.keys());
    Ok(())
}

/// The store thread's context: outgoing messages, answers, tasks.
struct ThreadContext<'a> {
    transport: &'a Transport,
    workers: &'a Workers,
    pending: &'a mut BTreeMap<Token, mpsc::Sender<CmdResponse>>,
    /// Where reports to the scheduler go (`None`: no scheduler).
    reports: Option<&'a tmpsc::Sender<SchedulerTask>>,
}

impl Context for ThreadContext<'_> {
    fn send(&mut self, msg: RaftMessage) {
        self.transport.send(msg);
    }

    fn respond(&mut self, token: Token, resp: CmdResponse) {
        if let Some(tx) = self.pending.remove(&token) {
            let _ = tx.send(resp);
        }
    }

    fn schedule(&mut self, task: Task) {
        self.workers.schedule(task);
    }

    /// To the scheduler's link ([`run_reports`]), never waiting: a full
    /// queue drops the report (heartbeats repeat, a split check asks
    /// again). In a static cluster there is no scheduler, and heartbeats
    /// go nowhere.
    fn report(&mut self, task: SchedulerTask) {
        match self.reports {
            Some(reports) => {
                if let Err(e) = reports.try_send(task) {
                    log::debug!("a report to the scheduler is dropped: {e}");
                }
            }
            None => log::trace!("no scheduler to report to: {task:?}"),
        }
    }
}

/// The store's two worker threads. Their task queues are not bounded by a
/// number, but by the store: a peer has at most one snapshot being built
/// and one being applied at a time, and a log GC task per `CompactLog`.
/// The store thread never waits for a worker; a worker waits for room in
/// the store's input queue to hand back a result (results are never
/// dropped: a peer would wait for them forever).
struct Workers {
    region: mpsc::Sender<Task>,
    gc: mpsc::Sender<Task>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    fn start(
        store_id: u64,
        engines: &Engines,
        snaps: &Arc<SnapManager>,
        results: &SyncSender<Input>,
    ) -> Result<Workers, String> {
        let mut threads = Vec::new();
        let mut spawn = |name: &str| -> Result<mpsc::Sender<Task>, String> {
            let (tx, rx) = mpsc::channel::<Task>();
            let (engines, snaps, results) = (engines.clone(), snaps.clone(), results.clone());
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{store_id}"))
                .spawn(move || {
                    for task in rx {
                        let result = run_task(task, &engines, &snaps);
                        if results.send(Input::TaskResult(Box::new(result))).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
            threads.push(thread);
            Ok(tx)
        };
        let region = spawn("region-worker")?;
        let gc = spawn("raftlog-gc")?;
        Ok(Workers { region, gc, threads })
    }

    fn schedule(&self, task: Task) {
        let queue = if task.is_snapshot_task() { &self.region } else { &self.gc };
        if let Err(e) = queue.send(task) {
            log::warn!("a worker has stopped; {:?} is dropped", e.0);
        }
    }

    /// Closes the queues and waits for the threads.
    fn stop(self) {
        drop(self.region);
        drop(self.gc);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The most inputs the store thread takes in one round before its peers
/// handle their `Ready`s: enough to share a synced raft write among many
/// clients' proposals, few enough that the round's answers are not held up.
const MAX_BATCH: usize = 256;

/// The store thread: rounds of inputs until `Stop` or an engine failure.
/// A round takes the first input (waiting until the next tick at most)
/// and every input already queued behind it, up to [`MAX_BATCH`], steps
/// the raft messages and commands among them without handling Readies,
/// and then lets each stepped peer handle one `Ready` for the whole round
/// ([`Store::handle_readies`]). A tick that falls due is taken before the
/// next round, however busy the queue.
fn run_store(
    mut store: Store,
    transport: Transport,
    workers: Workers,
    reports: Option<tmpsc::Sender<SchedulerTask>>,
    rx: Receiver<Input>,
    tick: Duration,
) {
    let id = store.store_id();
    let mut pending: BTreeMap<Token, mpsc::Sender<CmdResponse>> = BTreeMap::new();
    let mut next_token: Token = 1;
    let mut next_tick = Instant::now() + tick;
    let mut leaders = LeaderLog::default();
    log::info!("store {id}: running");
    leaders.observe_all(&store);
    loop {
        let mut ctx = ThreadContext {
            transport: &transport,
            workers: &workers,
            pending: &mut pending,
            reports: reports.as_ref(),
        };
        let mut result = Ok(());
        let now = Instant::now();
        if now >= next_tick {
            next_tick += tick;
            if next_tick < now {
                // Fell behind (a slow disk): don't try to catch up.
                next_tick = now + tick;
            }
            result = store.on_tick(&mut ctx);
        }
        let mut stop = false;
        if result.is_ok() {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut input = match rx.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut taken = 0;
            while let Some(next) = input.take() {
                taken += 1;
                let step = take_input(&mut store, next, &mut ctx, &mut next_token);
                stop = step.is_none();
                result = step.unwrap_or(Ok(()));
                if stop || result.is_err() || taken == MAX_BATCH {
                    break;
                }
                input = rx.try_recv().ok();
            }
            result = result.and_then(|()| store.handle_readies(&mut ctx));
        }
        leaders.observe_all(&store);
        if let Err(e) = result {
            // An engine failure: the store cannot go on safely.
            log::error!("store {id}: stopping after an engine failure: {e}");
            break;
        }
        if stop {
            break;
        }
    }
    // A worker blocked on a full input queue gets an error once `rx` is
    // gone, and ends.
    drop(rx);
    workers.stop();
    log::info!("store {id}: stopped");
}

/// Takes one input of a round: raft messages and commands are stepped
/// (their Readies wait for the end of the round); other inputs first let
/// the round's peers handle their Readies, so that they see the store as
/// the earlier inputs left it. `None` for `Stop`.
fn take_input(
    store: &mut Store,
    input: Input,
    ctx: &mut ThreadContext<'_>,
    next_token: &mut Token,
) -> Option<tinykv_raftstore::error::Result<()>> {
    let deferred = matches!(input, Input::Raft(_) | Input::Command(..));
    if !deferred && let Err(e) = store.handle_readies(ctx) {
        return Some(Err(e));
    }
    Some(match input {
        Input::Raft(msg) => store.step_raft_message(*msg, ctx),
        Input::TaskResult(result) => store.on_task_result(*result, ctx),
        Input::Command(req, reply) => {
            let token = *next_token;
            *next_token += 1;
            ctx.pending.insert(token, reply);
            store.propose(*req, token, ctx);
            Ok(())
        }
        Input::Region(region_id, reply) => {
            let _ = reply.send(store.peer(region_id).map(|p| p.region().clone()));
            Ok(())
        }
        Input::RegionForKey(key, reply) => {
            let _ = reply.send(store.meta().region_for_key(&key).cloned());
            Ok(())
        }
        Input::FromScheduler(resp) => store.on_region_heartbeat_response(*resp, ctx),
        Input::SplitIds(region, split_key, resp) => {
            store.on_ask_split_response(*region, split_key, resp, ctx)
        }
        Input::Stop => return None,
    })
}

/// What the store thread last logged about each region's term and leader.
#[derive(Debug, Default)]
struct LeaderLog {
    /// Region id → (term, leader's peer id, 0 if unknown).
    seen: BTreeMap<u64, (u64, u64)>,
}

impl LeaderLog {
    /// Logs the changes of every peer's term or leader (after a round).
    fn observe_all(&mut self, store: &Store) {
        for peer in store.peers() {
            self.note(peer);
        }
    }

    fn note(&mut self, peer: &Peer) {
        let leader = peer.leader();
        let now = (peer.term(), leader.map_or(0, |p| p.id));
        if self.seen.insert(peer.region_id(), now) == Some(now) {
            return;
        }
        let (store, region, term) = (peer.store_id(), peer.region_id(), now.0);
        match leader {
            Some(l) => log::info!(
                "store {store}: region {region}: term {term}, leader peer {} on store {}",
                l.id,
                l.store_id
            ),
            None => log::info!("store {store}: region {region}: term {term}, no leader"),
        }
    }
}

/// Outgoing raft messages: one bounded queue and one gRPC stream per peer
/// store. In a static cluster every address is known from the start; with
/// a scheduler, the first message to a store opens its queue and looks
/// its address up there ([`resolve_then_stream`]).
struct Transport {
    store_id: u64,
    /// Store id → its queue. Invariant: one stream task per queue.
    queues: Mutex<BTreeMap<u64, tmpsc::Sender<RaftMessage>>>,
    /// Store id → its address, as far as known.
    addrs: Arc<Mutex<BTreeMap<u64, String>>>,
    timing: LinkTiming,
    snaps: Arc<SnapManager>,
    runtime: tokio::runtime::Handle,
    /// Where unknown stores' addresses are looked up (`None`: a static
    /// cluster).
    resolver: Option<SchedulerClient>,
    dropped: Mutex<u64>,
}

impl Transport {
    fn new(
        store_id: u64,
        stores: &BTreeMap<u64, String>,
        timing: LinkTiming,
        snaps: Arc<SnapManager>,
        rt: &tokio::runtime::Handle,
        resolver: Option<SchedulerClient>,
    ) -> Transport {
        let mut queues = BTreeMap::new();
        for (&id, addr) in stores {
            if id == store_id {
                continue;
            }
            let endpoint = match timing.endpoint(addr) {
                Ok(endpoint) => endpoint,
                Err(e) => {
                    log::error!("store {store_id}: no raft messages to store {id}: {e}");
                    continue;
                }
            };
            let (tx, rx) = tmpsc::channel(SEND_QUEUE);
            rt.spawn(stream_to(store_id, id, endpoint, timing, rx));
            queues.insert(id, tx);
        }
        Transport {
            store_id,
            queues: Mutex::new(queues),
            addrs: Arc::new(Mutex::new(stores.clone())),
            timing,
            snaps,
            runtime: rt.clone(),
            resolver,
            dropped: Mutex::new(0),
        }
    }

    /// The queue to store `to`: opened now (with a stream task that looks
    /// its address up) if the scheduler can tell where it is.
    fn queue(&self, to: u64) -> Option<tmpsc::Sender<RaftMessage>> {
        let mut queues = self.queues.lock().expect("transport queues");
        if let Some(q) = queues.get(&to) {
            return Some(q.clone());
        }
        let resolver = self.resolver.clone()?;
        let (tx, rx) = tmpsc::channel(SEND_QUEUE);
        let (from, timing, addrs) = (self.store_id, self.timing, self.addrs.clone());
        self.runtime.spawn(resolve_then_stream(from, to, resolver, addrs, timing, rx));
        queues.insert(to, tx.clone());
        Some(tx)
    }

    fn send(&self, msg: RaftMessage) {
        let to = msg.to_peer.map_or(0, |p| p.store_id);
        if msg.message.as_ref().is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot) {
            return self.send_snapshot(to, msg);
        }
        let Some(q) = self.queue(to) else {
            log::warn!("store {}: no address for store {to}", self.store_id);
            return;
        };
        if q.try_send(msg).is_err() {
            let mut d = self.dropped.lock().expect("transport counter");
            *d += 1;
            if d.is_power_of_two() {
                log::warn!("store {}: {} raft messages to store {to} dropped", self.store_id, *d);
            }
        }
    }
}

/// Looks the address of store `to` up with the scheduler (again every
/// 500 ms until it knows one), then keeps a `Raft` stream to it like
/// [`stream_to`].
async fn resolve_then_stream(
    from: u64,
    to: u64,
    resolver: SchedulerClient,
    addrs: Arc<Mutex<BTreeMap<u64, String>>>,
    timing: LinkTiming,
    mut rx: tmpsc::Receiver<RaftMessage>,
) {
    let endpoint = loop {
        match resolver.get_store(to).await {
            Ok(Some(store)) if !store.address.is_empty() => match timing.endpoint(&store.address) {
                Ok(endpoint) => {
                    log::info!("store {from}: store {to} is at {}", store.address);
                    addrs.lock().expect("transport addresses").insert(to, store.address);
                    break endpoint;
                }
                Err(e) => log::warn!("store {from}: store {to}'s address: {e}"),
            },
            Ok(_) => log::debug!("store {from}: the scheduler knows no address of store {to}"),
            Err(e) => log::debug!("store {from}: cannot look store {to} up: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // What queued up meanwhile is stale.
        while rx.try_recv().is_ok() {}
        if rx.is_closed() {
            return;
        }
    };
    stream_to(from, to, endpoint, timing, rx).await;
}

impl Transport {
    /// Sends a snapshot message and its files on a `Snapshot` stream of
    /// its own (lost if anything fails: the leader sends another).
    fn send_snapshot(&self, to: u64, msg: RaftMessage) {
        let addr = self.addrs.lock().expect("transport addresses").get(&to).cloned();
        if addr.is_none() {
            // Opens the queue, which looks the address up for next time.
            let _ = self.queue(to);
        }
        let (Some(addr), Some(key)) = (addr, snapshot_key(&msg)) else {
            log::warn!("store {}: cannot send a snapshot to store {to}", self.store_id);
            return;
        };
        // Opened here, on the store thread, so the files are in use (and
        // kept) from the moment raft handed the snapshot out.
        let sender = match self.snaps.open_send(key) {
            Ok(sender) => sender,
            Err(e) => {
                log::warn!("store {}: cannot send snapshot {key}: {e}", self.store_id);
                return;
            }
        };
        let endpoint = match self.timing.endpoint(&addr) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                log::warn!("store {}: cannot send snapshot {key}: {e}", self.store_id);
                return;
            }
        };
        let from = self.store_id;
        self.runtime.spawn(async move {
            match send_snapshot(endpoint, msg, sender).await {
                Ok(bytes) => {
                    log::info!("store {from}: sent snapshot {key} ({bytes} bytes) to store {to}")
                }
                Err(e) => log::warn!("store {from}: snapshot {key} to store {to} failed: {e}"),
            }
        });
    }
}

async fn send_snapshot(
    endpoint: Endpoint,
    msg: RaftMessage,
    mut sender: tinykv_raftstore::snap::SnapSender,
) -> Result<u64, String> {
    let mut client = TinyKvClient::new(endpoint.connect().await.map_err(|e| e.to_string())?);
    let (tx, rx) = tmpsc::channel::<SnapshotChunk>(4);
    let call = tokio::spawn(async move {
        client.snapshot(tokio_stream::wrappers::ReceiverStream::new(rx)).await
    });
    let mut bytes = 0u64;
    let mut first = Some(msg);
    loop {
        let (chunk, back) = tokio::task::spawn_blocking(move || {
            let chunk = sender.next_chunk(SNAPSHOT_CHUNK);
            (chunk, sender)
        })
        .await
        .map_err(|e| e.to_string())?;
        sender = back;
        let data = chunk.map_err(|e| e.to_string())?;
        let done = data.is_none();
        let data = data.unwrap_or_default();
        bytes += data.len() as u64;
        if !done || first.is_some() {
            let chunk = SnapshotChunk { message: first.take(), data };
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        if done {
            break;
        }
    }
    drop(tx);
    call.await.map_err(|e| e.to_string())?.map_err(|s| s.message().to_string())?;
    Ok(bytes)
}

/// Carries a store's reports to the scheduler and its answers back to the
/// store thread, until the store stops (`reports` closes).
///
/// Region heartbeats go on one long-lived `RegionHeartbeat` stream, and
/// its answers (operators' steps) come back on it; a broken stream is
/// opened again within a second, and the heartbeats meanwhile are dropped
/// (the next ones carry the same news). Store heartbeats and split asks
/// are calls of their own, run concurrently, so a slow one holds nothing
/// up. An answer that finds the store's input queue full is dropped: the
/// scheduler repeats its operators, and a split check asks again.
async fn run_reports(
    client: SchedulerClient,
    store_id: u64,
    mut reports: tmpsc::Receiver<SchedulerTask>,
    input: SyncSender<Input>,
) {
    let mut stream: Option<tmpsc::Sender<RegionHeartbeatRequest>> = None;
    let mut next_open = tokio::time::Instant::now();
    while let Some(task) = reports.recv().await {
        match task {
            SchedulerTask::RegionHeartbeat(req) => {
                if stream.as_ref().is_none_or(tmpsc::Sender::is_closed)
                    && tokio::time::Instant::now() >= next_open
                {
                    next_open = tokio::time::Instant::now() + Duration::from_secs(1);
                    stream = open_heartbeats(&client, store_id, input.clone()).await;
                }
                if let Some(tx) = &stream
                    && tx.try_send(req).is_err()
                {
                    log::debug!("store {store_id}: a region heartbeat is dropped");
                }
            }
            SchedulerTask::StoreHeartbeat(req) => {
                let client = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.store_heartbeat(req).await {
                        log::warn!("store {store_id}: store heartbeat: {e}");
                    }
                });
            }
            SchedulerTask::AskSplit { region, split_key, .. } => {
                let (client, input) = (client.clone(), input.clone());
                tokio::spawn(async move {
                    match client.ask_split(region.clone()).await {
                        Ok(resp) => {
                            let ids = Input::SplitIds(Box::new(region), split_key, resp);
                            if input.try_send(ids).is_err() {
                                log::warn!("store {store_id}: a split's ids are dropped");
                            }
                        }
                        Err(e) => {
                            log::info!("store {store_id}: split of region {}: {e}", region.id)
                        }
                    }
                });
            }
        }
    }
}

/// Opens a region heartbeat stream; a task hands its answers to the store
/// thread until it ends. `None` if it cannot be opened now.
async fn open_heartbeats(
    client: &SchedulerClient,
    store_id: u64,
    input: SyncSender<Input>,
) -> Option<tmpsc::Sender<RegionHeartbeatRequest>> {
    let (tx, rx) = tmpsc::channel(REPORT_QUEUE);
    let mut answers = match client.region_heartbeats(rx).await {
        Ok(answers) => answers,
        Err(e) => {
            log::warn!("store {store_id}: cannot open the region heartbeat stream: {e}");
            return None;
        }
    };
    log::info!("store {store_id}: region heartbeat stream to the scheduler open");
    tokio::spawn(async move {
        loop {
            match answers.message().await {
                Ok(Some(resp)) => {
                    if input.try_send(Input::FromScheduler(Box::new(resp))).is_err() {
                        log::debug!("store {store_id}: an operator is dropped (queue full)");
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    log::warn!("store {store_id}: region heartbeat stream: {}", status.message());
                    break;
                }
            }
        }
    });
    Some(tx)
}

/// The snapshot a snapshot message carries.
fn snapshot_key(msg: &RaftMessage) -> Option<SnapKey> {
    let meta = msg.message.as_ref()?.snapshot.as_ref()?.metadata.as_ref()?;
    Some(SnapKey::new(msg.region_id, meta.term, meta.index))
}

/// The file list of the snapshot a snapshot message carries.
fn snapshot_meta(msg: &RaftMessage) -> Result<SnapshotMeta, String> {
    let data = msg.message.as_ref().and_then(|m| m.snapshot.as_ref()).map_or(&[][..], |s| &s.data);
    let data = RaftSnapshotData::decode(data)
        .map_err(|e| format!("the snapshot's data does not decode: {e}"))?;
    data.meta.ok_or_else(|| "the snapshot's data lists no files".to_string())
}

/// Keeps a `Raft` stream open to store `to` and forwards `rx` into it,
/// until the store's transport is dropped.
///
/// A failed connect is tried again after `timing.retry_min`, the wait
/// doubling up to `timing.retry_max`, for as long as the peer is down; a
/// stream that ends is reconnected after `retry_min` (after a longer wait
/// if it ended at once). A stream ends when the peer stops or its
/// connection breaks, and that is noticed when it happens, not when the
/// next message is sent into it. Messages queued while no stream is up are
/// dropped, stale (raft sends fresh heartbeats and appends); those queued
/// while a connect is under way go out once it succeeds. So the leader's
/// heartbeats reach a restarted store at most `retry_max` plus a heartbeat
/// interval after it listens: within its election timeout.
async fn stream_to(
    from: u64,
    to: u64,
    endpoint: Endpoint,
    timing: LinkTiming,
    mut rx: tmpsc::Receiver<RaftMessage>,
) {
    let mut retry = timing.retry_min;
    loop {
        match endpoint.connect().await {
            Ok(channel) => {
                log::info!("store {from}: raft stream to store {to} connected");
                let opened = Instant::now();
                match forward(TinyKvClient::new(channel), &mut rx).await {
                    Forwarded::Closed => return,
                    Forwarded::Ended(why) => {
                        log::info!("store {from}: raft stream to store {to} ended: {why}");
                    }
                }
                if opened.elapsed() >= timing.retry_max {
                    retry = timing.retry_min;
                }
            }
            Err(e) => {
                log::debug!("store {from}: cannot reach store {to} at {}: {e}", endpoint.uri())
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(timing.retry_max);
        // Drop what queued up meanwhile: it is stale.
        while rx.try_recv().is_ok() {}
        if rx.is_closed() {
            return;
        }
    }
}

/// How [`forward`] ended.
enum Forwarded {
    /// The transport was dropped (the store stopped); the stream was ended
    /// cleanly.
    Closed,
    /// The stream ended, for the reason given.
    Ended(String),
}

/// Forwards `rx` into one `Raft` stream on `client` until the stream ends
/// or `rx` closes.
async fn forward(
    mut client: TinyKvClient<Channel>,
    rx: &mut tmpsc::Receiver<RaftMessage>,
) -> Forwarded {
    let (tx, stream_rx) = tmpsc::channel(SEND_QUEUE);
    let mut call = tokio::spawn(async move {
        client.raft(tokio_stream::wrappers::ReceiverStream::new(stream_rx)).await
    });
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    drop(tx);
                    let _ = call.await;
                    return Forwarded::Closed;
                };
                if tx.send(msg).await.is_err() {
                    // The call has ended (and dropped its receiver).
                    return Forwarded::Ended(why_ended(call.await));
                }
            }
            // Watched all along: a dead peer is noticed at once, and the
            // first message after it is not lost in a dead stream.
            ended = &mut call => return Forwarded::Ended(why_ended(ended)),
        }
    }
}

/// Why a `Raft` call ended, in words.
fn why_ended<T>(ended: Result<Result<T, tonic::Status>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Ok(_)) => "the peer closed it".to_string(),
        Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restarted store must hear from the leader within its first
    /// election timeout: the longest wait between two connect attempts,
    /// plus a heartbeat interval, must fit well inside it.
    #[test]
    fn a_reconnect_and_a_heartbeat_fit_in_half_an_election_timeout() {
        let cfg = tinykv_raftstore::Config::default();
        let t = LinkTiming::for_raft(&cfg);
        let ms = Duration::from_millis;
        assert_eq!((t.retry_min, t.retry_max, t.connect_timeout), (ms(5), ms(25), ms(50)));
        let ticks = |n: usize| ms(cfg.raft_base_tick_ms * u64::try_from(n).expect("few ticks"));
        let election = ticks(cfg.raft_election_timeout_ticks);
        let heartbeat = ticks(cfg.raft_heartbeat_ticks);
        assert!(
            t.retry_max + heartbeat < election / 2,
            "{t:?}: a restarted store may campaign before the leader's link is back"
        );
    }
}
