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
//!   copes with loss), and answers commands through per-command channels;
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
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_raftstore::bootstrap::{
    bootstrap_region, bootstrap_store, first_region, load_store_ident,
};
use tinykv_raftstore::{
    CmdResponse, Context, Engines, SnapKey, SnapManager, Store, Task, TaskResult, Token, run_task,
};
use tokio::sync::mpsc as tmpsc;
use tokio::sync::watch;

/// Inputs queued for the store thread at most.
pub const INPUT_QUEUE: usize = 4096;
/// Raft messages queued per peer store at most.
pub const SEND_QUEUE: usize = 4096;
/// Bytes of snapshot file data per `Snapshot` stream chunk.
pub const SNAPSHOT_CHUNK: usize = 1024 * 1024;

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
}

enum Input {
    Raft(Box<RaftMessage>),
    TaskResult(Box<TaskResult>),
    Command(Box<RaftCmdRequest>, mpsc::Sender<CmdResponse>),
    Region(u64, mpsc::Sender<Option<Region>>),
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
        bootstrap_if_fresh(cfg, &engines)?;
        let snap_dir = cfg.data_dir.join("snap");
        let snaps = SnapManager::open(&snap_dir).map_err(|e| {
            format!("cannot open the snapshot directory {}: {e}", snap_dir.display())
        })?;
        let snaps = Arc::new(snaps);
        let store = Store::start(cfg.raft.clone(), engines.clone(), snaps.clone())
            .map_err(|e| format!("store {} cannot start: {e}", cfg.store_id))?;
        let transport = Transport::new(cfg.store_id, &cfg.stores, snaps.clone(), runtime);
        let (tx, rx) = mpsc::sync_channel(INPUT_QUEUE);
        let store_id = cfg.store_id;
        let workers = Workers::start(store_id, &engines, &snaps, &tx)?;
        let tick = Duration::from_millis(cfg.raft.raft_base_tick_ms);
        let thread = std::thread::Builder::new()
            .name(format!("store-{store_id}"))
            .spawn(move || run_store(store, transport, workers, rx, tick))
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

fn open_engines(dir: &Path, fjall: FjallConfig) -> Result<Engines, String> {
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

fn run_store(
    mut store: Store,
    transport: Transport,
    workers: Workers,
    rx: Receiver<Input>,
    tick: Duration,
) {
    let id = store.store_id();
    let mut pending: BTreeMap<Token, mpsc::Sender<CmdResponse>> = BTreeMap::new();
    let mut next_token: Token = 1;
    let mut next_tick = Instant::now() + tick;
    log::info!("store {id}: running");
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let input = match rx.recv_timeout(wait) {
            Ok(input) => Some(input),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut ctx =
            ThreadContext { transport: &transport, workers: &workers, pending: &mut pending };
        let result = match input {
            None => {
                next_tick += tick;
                if next_tick < Instant::now() {
                    // Fell behind (a slow disk): don't try to catch up.
                    next_tick = Instant::now() + tick;
                }
                store.on_tick(&mut ctx)
            }
            Some(Input::Raft(msg)) => store.on_raft_message(*msg, &mut ctx),
            Some(Input::TaskResult(result)) => store.on_task_result(*result, &mut ctx),
            Some(Input::Command(req, reply)) => {
                let token = next_token;
                next_token += 1;
                ctx.pending.insert(token, reply);
                store.on_command(*req, token, &mut ctx)
            }
            Some(Input::Region(region_id, reply)) => {
                let _ = reply.send(store.peer(region_id).map(|p| p.region().clone()));
                Ok(())
            }
            Some(Input::Stop) => break,
        };
        if let Err(e) = result {
            // An engine failure: the store cannot go on safely.
            log::error!("store {id}: stopping after an engine failure: {e}");
            break;
        }
    }
    // A worker blocked on a full input queue gets an error once `rx` is
    // gone, and ends.
    drop(rx);
    workers.stop();
    log::info!("store {id}: stopped");
}

/// Outgoing raft messages: one bounded queue and one gRPC stream per peer
/// store.
struct Transport {
    store_id: u64,
    queues: BTreeMap<u64, tmpsc::Sender<RaftMessage>>,
    addrs: BTreeMap<u64, String>,
    snaps: Arc<SnapManager>,
    runtime: tokio::runtime::Handle,
    dropped: Mutex<u64>,
}

impl Transport {
    fn new(
        store_id: u64,
        stores: &BTreeMap<u64, String>,
        snaps: Arc<SnapManager>,
        rt: &tokio::runtime::Handle,
    ) -> Transport {
        let mut queues = BTreeMap::new();
        for (&id, addr) in stores {
            if id == store_id {
                continue;
            }
            let (tx, rx) = tmpsc::channel(SEND_QUEUE);
            rt.spawn(stream_to(store_id, id, addr.clone(), rx));
            queues.insert(id, tx);
        }
        Transport {
            store_id,
            queues,
            addrs: stores.clone(),
            snaps,
            runtime: rt.clone(),
            dropped: Mutex::new(0),
        }
    }

    fn send(&self, msg: RaftMessage) {
        let to = msg.to_peer.map_or(0, |p| p.store_id);
        if msg.message.as_ref().is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot) {
            return self.send_snapshot(to, msg);
        }
        let Some(q) = self.queues.get(&to) else {
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

impl Transport {
    /// Sends a snapshot message and its files on a `Snapshot` stream of
    /// its own (lost if anything fails: the leader sends another).
    fn send_snapshot(&self, to: u64, msg: RaftMessage) {
        let (Some(addr), Some(key)) = (self.addrs.get(&to), snapshot_key(&msg)) else {
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
        let (from, url) = (self.store_id, format!("http://{addr}"));
        self.runtime.spawn(async move {
            match send_snapshot(url, msg, sender).await {
                Ok(bytes) => {
                    log::info!("store {from}: sent snapshot {key} ({bytes} bytes) to store {to}")
                }
                Err(e) => log::warn!("store {from}: snapshot {key} to store {to} failed: {e}"),
            }
        });
    }
}

async fn send_snapshot(
    url: String,
    msg: RaftMessage,
    mut sender: tinykv_raftstore::snap::SnapSender,
) -> Result<u64, String> {
    let mut client = TinyKvClient::connect(url).await.map_err(|e| e.to_string())?;
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
/// reconnecting after failures (messages in between are lost).
async fn stream_to(from: u64, to: u64, addr: String, mut rx: tmpsc::Receiver<RaftMessage>) {
    let url = format!("http://{addr}");
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut client = match TinyKvClient::connect(url.clone()).await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("store {from}: cannot reach store {to} at {addr}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Drop what queued up meanwhile: it is stale.
                while rx.try_recv().is_ok() {}
                if rx.is_closed() {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let (tx, stream_rx) = tmpsc::channel(SEND_QUEUE);
        let call = tokio::spawn(async move {
            client.raft(tokio_stream::wrappers::ReceiverStream::new(stream_rx)).await
        });
        loop {
            let Some(msg) = rx.recv().await else {
                drop(tx);
                let _ = call.await;
                return;
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
        if let Ok(Err(status)) = call.await {
            log::debug!("store {from}: stream to store {to} ended: {status}");
        }
    }
}
