//! The simulated cluster: stores, network, clients and virtual time.
//!
//! Everything runs on one thread. An event queue ordered by (virtual time,
//! sequence number) holds what happens next: a store's tick, a raft
//! message arriving, a client command arriving, an answer arriving, a
//! client's timeout or next operation. [`Cluster::step`] takes the earliest
//! event and hands it to the same [`Store`] code the server runs; whatever
//! the store asks for (messages, answers) becomes new events. All
//! randomness (latencies, drops, client choices, raft's election timeouts)
//! comes from the seed, so a seed replays exactly; [`Cluster::digest`]
//! fingerprints the run to check it.
//!
//! Stores keep their data on [`MemoryDisk`]s: a crash
//! ([`Cluster::crash_store`]) loses exactly the writes that were not
//! synced, and a restart starts the store again from what survived.
//! [`Cluster::crash_at_write`] cuts the power in the middle of a chosen
//! later write instead: between persisting and applying, in the middle of
//! applying a snapshot, during log GC.
//!
//! Background tasks (snapshots, log GC) run as events a little later than
//! they were asked for. A snapshot travels with its raft message: the
//! sender's files are read when the message is sent, the bytes cross the
//! simulated network (and can be lost, delayed or corrupted on the way),
//! and the receiver writes and checks them before the message is handed
//! to its store. Snapshot files live on a [`MemoryFs`] per store, next to
//! its memory disks: a crash loses what was not synced, or (by chance, or
//! when a test asks, [`Cluster::crash_in_snapshot_io`]) leaves files torn.
//! With [`EngineKind::Fjall`] they are real files in a temporary directory.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use raft::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prost::Message as _;
use raft::eraftpb::MessageType;
use tinykv_engine::fs::{CrashPolicy, CrashReport, ReadableFile, WritableFile};
use tinykv_engine::{
    Cf, Engine, FileSystem, FjallConfig, FjallEngine, MemoryDisk, MemoryFs, RealFs, WriteBatch,
};
use tinykv_proto::metapb::{self, Peer};
use tinykv_proto::raft_cmdpb::{
    CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
    SnapRequest,
};
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RaftSnapshotData, RegionLocalState};
use tinykv_proto::schedulerpb::{AskSplitRequest, AskSplitResponse, RegionHeartbeatResponse};
use tinykv_raftstore::bootstrap::{bootstrap_region, bootstrap_store, first_region};
use tinykv_raftstore::error::response_error;
use tinykv_raftstore::{
    CmdResponse, Context, Engines, SCHEDULER_TOKEN, SchedulerTask, SnapKey, SnapManager, Store,
    Task, Token, run_task,
};
use tinykv_scheduler::{
    MemStorage, MockScheduler, RaftCluster, ScheduleConfig, ScheduleError, Scheduled as Operated,
};

use crate::capture;
use crate::history::{FaultRecord, History, OpKind, OpRecord, OpResult};
use crate::livelock::{MAX_SAME_REJECTIONS, Rejection, RejectionStreaks};
use crate::network::{NetConfig, Network, SCHEDULER_NODE};
use crate::region_cache::RegionCache;

/// The region a new cluster starts with.
pub const FIRST_REGION: u64 = 1;
/// The client id the `must_*` helpers use.
pub const HARNESS_CLIENT: u64 = 0;

/// Virtual microseconds in a millisecond.
pub const MS: u64 = 1_000;
/// Virtual microseconds in a second.
pub const SEC: u64 = 1_000_000;

/// How often the real scheduler's clock ticks (virtual us).
pub const SCHEDULER_TICK_US: u64 = 100 * MS;

/// Which engine the simulated stores keep their data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// [`MemoryDisk`]s: deterministic, and a crash loses exactly the
    /// unsynced writes (or all but the oldest few).
    Memory,
    /// Real fjall databases in a temporary directory. A crash of a store
    /// drops its in-memory state only (fjall keeps every write, synced or
    /// not, while the process lives), so the crash tests check less; this
    /// runs the raftstore on the engine the server uses.
    Fjall,
}

impl EngineKind {
    /// `TINYKV_SIM_ENGINE`: `memory` (the default) or `fjall`.
    ///
    /// # Panics
    ///
    /// For any other value.
    pub fn from_env() -> EngineKind {
        match std::env::var("TINYKV_SIM_ENGINE").as_deref() {
            Err(_) | Ok("" | "memory") => EngineKind::Memory,
            Ok("fjall") => EngineKind::Fjall,
            Ok(other) => {
                panic!("TINYKV_SIM_ENGINE={other:?}: expected \"memory\" or \"fjall\"")
            }
        }
    }
}

/// How a simulated cluster is set up.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The seed of everything random.
    pub seed: u64,
    /// Number of stores (ids `1..=stores`), each with a peer of the first
    /// region.
    pub stores: u64,
    /// The stores' raftstore config (its seed is derived from `seed`).
    pub store: tinykv_raftstore::Config,
    /// The network between stores.
    pub net: NetConfig,
    /// How long a client waits for an answer before it tries another
    /// store.
    pub request_timeout_us: u64,
    /// Where the stores keep their data.
    pub engine: EngineKind,
    /// A background task runs up to this long after it was asked for.
    pub max_task_delay_us: u64,
    /// The stores that hold the first region: `1..=first_region_stores`
    /// (0: all of them). The others start empty.
    pub first_region_stores: u64,
    /// Which scheduler runs: the mock (labs 3b and before) or the real one
    /// (lab 3c), with these settings.
    pub scheduler: SchedulerChoice,
}

/// Which scheduler a simulated cluster runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SchedulerChoice {
    /// The [`MockScheduler`]: operators only when a test asks for them,
    /// and every heartbeat checked against the raftstore's invariants.
    #[default]
    Mock,
    /// The real scheduler core ([`RaftCluster`]), on virtual time (ms) and
    /// an in-memory storage: it chooses operators itself (replica checker,
    /// balance-leader, balance-region).
    Real(ScheduleConfig),
}

impl ClusterConfig {
    /// `stores` stores, a reliable network, seed `seed`.
    pub fn new(stores: u64, seed: u64) -> ClusterConfig {
        ClusterConfig {
            seed,
            stores,
            store: tinykv_raftstore::Config::default(),
            net: NetConfig::default(),
            request_timeout_us: 500 * MS,
            engine: EngineKind::from_env(),
            max_task_delay_us: 5 * MS,
            first_region_stores: 0,
            scheduler: SchedulerChoice::Mock,
        }
    }
}

/// Something that happens at a point of virtual time.
#[derive(Debug)]
enum Event {
    /// A store's raft tick; ignored if the store restarted since.
    Tick { store: u64, incarnation: u64 },
    /// A raft message reaches a store.
    Deliver { to: u64, msg: Box<RaftMessage> },
    /// A client command reaches a store.
    Command { store: u64, token: Token, req: Box<RaftCmdRequest> },
    /// An answer reaches its client.
    /// `read` holds a scan's rows, read when the store answered (the
    /// store may crash before the answer arrives).
    Answer { token: Token, resp: Box<CmdResponse>, read: Option<OpResult> },
    /// A client gives up waiting for the answer to `token`.
    Timeout { client: u64, token: Token },
    /// A store's background task runs; ignored if the store restarted.
    Task { store: u64, incarnation: u64, task: Box<Task> },
    /// A raft message carrying a snapshot reaches a store, with the bytes
    /// of the snapshot's files.
    DeliverSnapshot { to: u64, msg: Box<RaftMessage>, data: Vec<u8> },
    /// A store's heartbeat reaches the scheduler.
    ToScheduler { from: u64, task: Box<SchedulerTask> },
    /// The scheduler's answer (an operator) reaches a store.
    FromScheduler { to: u64, resp: Box<RegionHeartbeatResponse> },
    /// The scheduler's answer to an `AskSplit` (the new region's ids)
    /// reaches the store that asked.
    SplitIds { to: u64, region: Box<metapb::Region>, split_key: Vec<u8>, resp: AskSplitResponse },
    /// The real scheduler's clock ticks (it runs its schedulers when due).
    SchedulerTick,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One simulated store: its disks survive crashes, the running store does
/// not.
struct SimStore {
    kv_disk: MemoryDisk,
    raft_disk: MemoryDisk,
    /// With [`EngineKind::Fjall`], the store's engines (kept open across
    /// crashes); `None` with memory disks.
    fjall: Option<(Arc<dyn Engine>, Arc<dyn Engine>)>,
    /// Crash plans for the engines' writes (see [`Cluster::crash_at_write`]).
    crash: CrashPlan,
    /// The snapshot files' directory (kept across crashes).
    snap_dir: std::path::PathBuf,
    /// The file system the snapshot files live on, with memory disks (it
    /// crashes with them); `None` with fjall (real files, kept by a crash
    /// as fjall keeps its writes).
    snap_fs: Option<MemoryFs>,
    /// The snapshot manager of the running store.
    snaps: Option<Arc<SnapManager>>,
    store: Option<Store>,
    /// Bumped at every restart, so the old incarnation's ticks are ignored.
    incarnation: u64,
}

/// An operation a client is working on.
#[derive(Debug)]
struct Pending {
    /// Its record in the history.
    record: usize,
    /// The attempt in flight.
    token: Token,
    /// Attempts so far.
    attempts: u32,
    /// Attempts that got no answer before the client's timeout.
    unanswered: u32,
    /// Attempts answered with an error.
    refused: u32,
    /// What the last refused attempt was told (the error's message), for
    /// the failure message of an operation that never succeeds.
    last_refusal: Option<String>,
    /// The region the attempt went to.
    region_id: u64,
    /// A scan goes region by region: where the next region's part starts,
    /// and the rows of the parts done.
    scan: Option<ScanProgress>,
}

#[derive(Debug, Default)]
struct ScanProgress {
    cursor: Vec<u8>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Client {
    /// The store it believes leads each region, by region id.
    leaders: BTreeMap<u64, u64>,
    /// The regions it knows of (filled from the scheduler on a miss,
    /// refreshed from region errors).
    regions: RegionCache,
    op: Option<Pending>,
    /// The history record of its last finished operation.
    last_done: Option<usize>,
}

/// Collects what a store asks for while it handles one input.
#[derive(Default)]
struct Effects {
    sent: Vec<RaftMessage>,
    answers: Vec<(Token, CmdResponse)>,
    tasks: Vec<Task>,
    reports: Vec<SchedulerTask>,
}

impl Context for Effects {
    fn send(&mut self, msg: RaftMessage) {
        self.sent.push(msg);
    }

    fn respond(&mut self, token: Token, resp: CmdResponse) {
        if token != SCHEDULER_TOKEN {
            self.answers.push((token, resp));
        }
    }

    fn schedule(&mut self, task: Task) {
        self.tasks.push(task);
    }

    fn report(&mut self, task: SchedulerTask) {
        self.reports.push(task);
    }
}

/// Which engine of a store a planned crash hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineSide {
    /// Data, apply state, region state.
    Kv,
    /// Raft log, raft state.
    Raft,
}

/// When a store's power goes out: at the n-th write (from the time of
/// arming) to its kv or raft engine. Shared with the engines' wrappers.
#[derive(Debug, Clone, Default)]
struct CrashPlan {
    /// Writes to the kv engine until the crash (0: none planned).
    kv: Arc<AtomicU64>,
    /// Writes to the raft engine until the crash (0: none planned).
    raft: Arc<AtomicU64>,
    /// Set once the power is out: every later write fails too.
    down: Arc<AtomicBool>,
    /// Armed when the kv engine writes a snapshot's `Applying` region
    /// state: crash at the n-th following write to that side.
    after_snapshot: Arc<std::sync::Mutex<Option<(EngineSide, u64)>>>,
    /// Writes to either engine until the crash (0: none planned).
    any: Arc<AtomicU64>,
    /// Armed when a snapshot message is delivered: `any` is set to it.
    on_snapshot_delivered: Arc<AtomicU64>,
    /// Crash at the next log GC batch (`Some(0)`), or at the n-th raft
    /// write after it (`Some(n)`).
    at_log_gc: Arc<std::sync::Mutex<Option<u64>>>,
    /// A crash in the middle of snapshot file work.
    snap_io: Arc<std::sync::Mutex<SnapIoPlan>>,
}

/// Which snapshot file work a planned crash hits
/// ([`Cluster::crash_in_snapshot_io`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotIo {
    /// A leader's worker writes the files of a snapshot it generates.
    Build,
    /// A store writes the files of a snapshot that arrived.
    Receive,
}

/// What of the snapshot files' unsynced state survives a planned crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsCrash {
    /// Nothing: unsynced bytes and directory changes are lost.
    Lose,
    /// Every unsynced directory change (create, rename, remove) survives,
    /// and each file keeps only part of its unsynced bytes: a torn file.
    Tear,
}

/// A crash at the n-th sync (file or directory) of one kind of snapshot
/// file work.
#[derive(Debug, Default)]
struct SnapIoPlan {
    /// The work, the syncs left until the crash, and what survives it.
    armed: Option<(SnapshotIo, u64, FsCrash)>,
    /// The snapshot file work the store is doing now, if any.
    now: Option<SnapshotIo>,
    /// What survives the crash that just struck, for the driver.
    struck: Option<FsCrash>,
}

impl CrashPlan {
    fn disarm(&self) {
        self.kv.store(0, Ordering::Relaxed);
        self.raft.store(0, Ordering::Relaxed);
        self.down.store(false, Ordering::Relaxed);
        *self.after_snapshot.lock().expect("crash plan") = None;
        self.any.store(0, Ordering::Relaxed);
        self.on_snapshot_delivered.store(0, Ordering::Relaxed);
        *self.at_log_gc.lock().expect("crash plan") = None;
        *self.snap_io.lock().expect("crash plan") = SnapIoPlan::default();
    }

    /// Runs `f` as snapshot file work of kind `io` (an armed
    /// [`SnapIoPlan`] counts only the syncs of its kind of work).
    fn in_snapshot_io<T>(&self, io: SnapshotIo, f: impl FnOnce() -> T) -> T {
        self.snap_io.lock().expect("crash plan").now = Some(io);
        let out = f();
        self.snap_io.lock().expect("crash plan").now = None;
        out
    }

    /// A snapshot file is synced: true if the power goes out now.
    fn on_snapshot_sync(&self) -> bool {
        let mut plan = self.snap_io.lock().expect("crash plan");
        let Some((io, left, keep)) = plan.armed else { return false };
        if plan.now != Some(io) {
            return false;
        }
        if left > 1 {
            plan.armed = Some((io, left - 1, keep));
            return false;
        }
        plan.armed = None;
        plan.struck = Some(keep);
        self.down.store(true, Ordering::Relaxed);
        true
    }

    /// Counts a write down on `countdown`: true if the power goes out now.
    fn tick_down(countdown: &AtomicU64) -> bool {
        let left = countdown.load(Ordering::Relaxed);
        if left > 0 {
            countdown.store(left - 1, Ordering::Relaxed);
        }
        left == 1
    }

    fn countdown(&self, side: EngineSide) -> &AtomicU64 {
        match side {
            EngineSide::Kv => &self.kv,
            EngineSide::Raft => &self.raft,
        }
    }
}

/// Whether `batch` is the log GC worker's: only deletes of log entries.
fn deletes_log_entries(batch: &WriteBatch) -> bool {
    !batch.is_empty()
        && batch.ops().iter().all(|op| match op {
            tinykv_engine::WriteOp::Delete { cf: Cf::Meta, key } => {
                tinykv_engine::keys::decode_raft_log_key(key).is_ok()
            }
            _ => false,
        })
}

/// Whether `batch` stores a snapshot: puts a region state `Applying`.
fn stores_snapshot(batch: &WriteBatch) -> bool {
    batch.ops().iter().any(|op| match op {
        tinykv_engine::WriteOp::Put { cf: Cf::Meta, key, value } => {
            tinykv_engine::keys::decode_region_state_key(key).is_ok()
                && RegionLocalState::decode(value.as_slice())
                    .is_ok_and(|s| s.state() == PeerState::Applying)
        }
        _ => false,
    })
}

/// What the snapshot transfers did, for tests to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Snapshot messages sent (with their files).
    pub sent: u64,
    /// Received intact and handed to the store.
    pub delivered: u64,
    /// Rejected by the receiver (the reasons are in `rejections`).
    pub rejected: u64,
    /// Why each rejected snapshot was rejected.
    pub rejections: Vec<String>,
    /// Bytes of snapshot files sent.
    pub bytes: u64,
}

/// The simulated cluster. See the module docs.
pub struct Cluster {
    cfg: ClusterConfig,
    now: u64,
    rng: Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    stores: BTreeMap<u64, SimStore>,
    /// The network between stores (change its cuts and rates at will).
    pub net: Network,
    /// The mock scheduler: what the cluster knows about its regions (from
    /// the stores' heartbeats, over the simulated network), and the
    /// operators the test asked for. It checks every heartbeat; a breach
    /// of its invariants fails the run (see [`tinykv_scheduler::Breach`]).
    pub scheduler: MockScheduler,
    /// The real scheduler, with [`SchedulerChoice::Real`] (the mock is
    /// then unused): it takes the heartbeats and chooses operators itself.
    pub pd: Option<RaftCluster>,
    /// Its storage, kept across [`restart_scheduler`](Self::restart_scheduler).
    pd_storage: MemStorage,
    /// Stores killed for good ([`kill_store`](Self::kill_store)).
    dead: std::collections::BTreeSet<u64>,
    next_token: Token,
    /// The client and store of each attempt in flight.
    tokens: BTreeMap<Token, (u64, u64)>,
    clients: BTreeMap<u64, Client>,
    /// Answers to direct calls ([`Cluster::call`]), by token.
    direct: BTreeMap<Token, Option<CmdResponse>>,
    /// Every client operation and injected fault so far.
    pub history: History,
    /// The stores' snapshot files and (with [`EngineKind::Fjall`]) fjall
    /// databases.
    dir: tempfile::TempDir,
    /// What the snapshot transfers did.
    pub snapshot_stats: SnapshotStats,
    /// Corrupts one byte of the next snapshot sent, when set.
    corrupt_next_snapshot: bool,
    /// Identical append rejections in a row: a livelock fails the run.
    rejections: RejectionStreaks,
    digest: u64,
    events: u64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("seed", &self.cfg.seed)
            .field("now_us", &self.now)
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("events", &self.events)
            .finish()
    }
}

impl Cluster {
    /// Bootstraps `cfg.stores` stores with one region (peer id = store id)
    /// and starts them.
    pub fn new(cfg: ClusterConfig) -> Cluster {
        let holders =
            if cfg.first_region_stores == 0 { cfg.stores } else { cfg.first_region_stores };
        let peers: Vec<(u64, u64)> = (1..=holders).map(|id| (id, id)).collect();
        let region = first_region(FIRST_REGION, &peers);
        let mut c = Cluster {
            scheduler: MockScheduler::new(),
            pd: None,
            pd_storage: MemStorage::default(),
            dead: std::collections::BTreeSet::new(),
            rng: Rng::new(cfg.seed, 0x5151),
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            stores: BTreeMap::new(),
            net: Network::new(cfg.net.clone()),
            next_token: 1,
            tokens: BTreeMap::new(),
            clients: BTreeMap::new(),
            direct: BTreeMap::new(),
            history: History::default(),
            dir: tempfile::tempdir().expect("a temporary directory for the stores"),
            snapshot_stats: SnapshotStats::default(),
            corrupt_next_snapshot: false,
            rejections: RejectionStreaks::default(),
            digest: 0xCBF2_9CE4_8422_2325,
            events: 0,
            cfg,
        };
        for id in 1..=c.cfg.stores {
            c.scheduler.put_store(metapb::Store {
                id,
                address: format!("store{id}"),
                ..Default::default()
            });
        }
        c.scheduler.bootstrap(region.clone()).expect("the mock scheduler takes the first region");
        if let SchedulerChoice::Real(config) = c.cfg.scheduler.clone() {
            c.open_scheduler(config);
            let pd = c.pd.as_mut().expect("just opened");
            let first = metapb::Store { id: 1, address: "store1".into(), ..Default::default() };
            pd.bootstrap(first, region.clone()).expect("the scheduler takes the first region");
            for id in 2..=c.cfg.stores {
                let store =
                    metapb::Store { id, address: format!("store{id}"), ..Default::default() };
                pd.put_store(store).expect("the scheduler takes the stores");
            }
            c.schedule(SCHEDULER_TICK_US, Event::SchedulerTick);
        }
        for id in 1..=c.cfg.stores {
            let s = c.new_sim_store(id);
            let engines = s.engines();
            bootstrap_store(&engines, 1, id).expect("bootstrap store");
            if id <= holders {
                bootstrap_region(&engines, &region).expect("bootstrap region");
            }
            c.stores.insert(id, s);
            c.start_store(id);
        }
        c
    }

    // ----- time and events ---------------------------------------------------------

    /// The current virtual time, in microseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The seed of the run.
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// A fingerprint of every event handled so far: two runs of one seed
    /// have the same digest.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Events handled so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The simulation's RNG (for tests that make random choices).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: self.now + delay, seq: self.seq, event }));
    }

    fn mix(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
            }
        }
    }

    /// Handles the next event; false if there is none.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() else { return false };
        self.now = at;
        self.events += 1;
        capture::set_time(at);
        match event {
            Event::Tick { store, incarnation } => self.on_tick(store, incarnation),
            Event::Deliver { to, msg } => self.on_deliver(to, *msg),
            Event::Command { store, token, req } => self.on_command(store, token, *req),
            Event::Answer { token, resp, read } => self.on_answer(token, *resp, read),
            Event::Timeout { client, token } => self.on_timeout(client, token),
            Event::Task { store, incarnation, task } => self.on_task(store, incarnation, *task),
            Event::DeliverSnapshot { to, msg, data } => self.on_deliver_snapshot(to, *msg, data),
            Event::ToScheduler { from, task } => self.on_to_scheduler(from, *task),
            Event::FromScheduler { to, resp } => self.on_from_scheduler(to, *resp),
            Event::SplitIds { to, region, split_key, resp } => {
                self.on_split_ids(to, *region, split_key, resp);
            }
            Event::SchedulerTick => self.on_scheduler_tick(),
        }
        true
    }

    /// A new store's disks (not bootstrapped, not started).
    fn new_sim_store(&self, id: u64) -> SimStore {
        let dir = self.dir.path();
        let fjall = (self.cfg.engine == EngineKind::Fjall).then(|| {
            let open = |name: &str| -> Arc<dyn Engine> {
                let path = dir.join(format!("store{id}-{name}"));
                Arc::new(FjallEngine::open(path, FjallConfig::for_tests()).expect("open fjall"))
            };
            (open("kv"), open("raft"))
        });
        SimStore {
            kv_disk: MemoryDisk::new(),
            raft_disk: MemoryDisk::new(),
            fjall,
            crash: CrashPlan::default(),
            snap_dir: dir.join(format!("store{id}-snap")),
            snap_fs: (self.cfg.engine == EngineKind::Memory).then(MemoryFs::new),
            snaps: None,
            store: None,
            incarnation: 0,
        }
    }

    /// Runs every event up to virtual time `until`.
    pub fn run_until(&mut self, until: u64) {
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `us` virtual microseconds.
    pub fn run_for(&mut self, us: u64) {
        self.run_until(self.now + us);
    }

    // ----- stores ------------------------------------------------------------------

    fn start_store(&mut self, id: u64) {
        let mut cfg = self.cfg.store.clone();
        cfg.seed = self.cfg.seed ^ id.wrapping_mul(0x9E37_79B9) ^ self.now;
        let s = self.stores.get_mut(&id).expect("store exists");
        s.crash.disarm();
        let engines = s.engines();
        capture::set_node(id);
        let snaps = SnapManager::open_on(s.snapshot_fs(), &s.snap_dir).unwrap_or_else(|e| {
            panic!("store {id}: cannot open its snapshot files: {e} (seed {})", self.cfg.seed)
        });
        let leftovers = snaps.leftovers_removed();
        let snaps = Arc::new(snaps);
        let store = Store::start(cfg, engines, snaps.clone())
            .unwrap_or_else(|e| panic!("store {id} failed to start: {e} (seed {})", self.cfg.seed));
        capture::set_node(0);
        s.snaps = Some(snaps);
        s.store = Some(store);
        s.incarnation += 1;
        let incarnation = s.incarnation;
        // A random phase, so the stores' clocks are not in lockstep.
        let phase = self.rng.next_u64() % (self.cfg.store.raft_base_tick_ms * MS);
        self.schedule(phase, Event::Tick { store: id, incarnation });
        if leftovers > 0 {
            self.fault(format!(
                "store {id} removed {leftovers} snapshot files left by interrupted writes"
            ));
        }
    }

    /// Crashes store `id` for good: it never restarts
    /// ([`restart_store`](Self::restart_store) does nothing for it), as a
    /// machine that is gone.
    pub fn kill_store(&mut self, id: u64) {
        self.fault(format!("store {id} dies for good"));
        self.dead.insert(id);
        self.crash_store(id);
    }

    /// Crashes store `id`: its in-memory state is gone and its disks lose
    /// the writes that were not synced: all of them, or (at random) all
    /// but the oldest few, as if some had reached the disk before the power
    /// went out. Messages and commands sent to it are lost until
    /// [`restart_store`](Self::restart_store).
    pub fn crash_store(&mut self, id: u64) {
        let keep_kv = self.rng.range(0, 3);
        let keep_raft = self.rng.range(0, 3);
        let s = self.stores.get_mut(&id).expect("store exists");
        s.snaps = None;
        if s.store.take().is_some() {
            let (kv, raft) = (s.kv_disk.unsynced_batches(), s.raft_disk.unsynced_batches());
            let keep_kv = if keep_kv == 0 { 0 } else { self.rng.range(0, kv + 1) };
            let keep_raft = if keep_raft == 0 { 0 } else { self.rng.range(0, raft + 1) };
            let s = self.stores.get_mut(&id).unwrap();
            // (With fjall, the disks are unused and this does nothing.)
            s.kv_disk.crash_keeping(keep_kv);
            s.raft_disk.crash_keeping(keep_raft);
            let files = self.crash_snapshot_files(id, None);
            self.fault(format!(
                "store {id} crashed (unsynced batches kept: kv {keep_kv} of {kv}, raft {keep_raft} \
                 of {raft}){files}"
            ));
        }
    }

    /// Arms a crash of store `id` in the middle of its next raft engine
    /// write (the write is lost). Messages the store sent before that
    /// write are delivered; the store then stays down until
    /// [`restart_store`](Self::restart_store).
    pub fn crash_at_next_raft_write(&mut self, id: u64) {
        self.crash_at_write(id, EngineSide::Raft, 1);
    }

    /// Arms a crash of store `id` in the middle of its `n`-th write
    /// (counting from now, `n >= 1`) to its `side` engine, whichever part
    /// of the store makes it: handling a `Ready`, applying a snapshot,
    /// deleting compacted log entries. That write and every unsynced one
    /// are lost; what the store sent before is delivered. The store stays
    /// down until [`restart_store`](Self::restart_store).
    pub fn crash_at_write(&mut self, id: u64, side: EngineSide, n: u64) {
        self.stores[&id].crash.countdown(side).store(n.max(1), Ordering::Relaxed);
    }

    /// Arms a crash of store `id` at the `n`-th write to its `side` engine
    /// after it next stores a snapshot (writes the snapshot's kv batch):
    /// `(Raft, 1)` falls between the snapshot's two batches, `(Kv, n)` in
    /// the middle of writing the snapshot's data.
    pub fn crash_after_snapshot_stored(&mut self, id: u64, side: EngineSide, n: u64) {
        let plan = &self.stores[&id].crash;
        *plan.after_snapshot.lock().expect("crash plan") = Some((side, n.max(1)));
    }

    /// Arms a crash of store `id` at its `n`-th write, to either engine,
    /// while it handles the next snapshot message that makes it write at
    /// least `n` times (a snapshot that raft ignores does not count).
    /// Storing a snapshot takes two writes (a kv batch and a raft batch),
    /// so `n = 2` cuts the power between them, whatever their order.
    pub fn crash_after_snapshot_delivered(&mut self, id: u64, n: u64) {
        self.stores[&id].crash.on_snapshot_delivered.store(n.max(1), Ordering::Relaxed);
    }

    /// Arms a crash of store `id` at its next log GC (the worker's batch
    /// that deletes compacted entries) with `n = 0`, or at its `n`-th raft
    /// write after that batch (`n = 2`: after the next `Ready` made the
    /// deletions durable).
    pub fn crash_at_log_gc(&mut self, id: u64, n: u64) {
        *self.stores[&id].crash.at_log_gc.lock().expect("crash plan") = Some(n);
    }

    /// The raft engine of store `id`, as it is now (also when the store is
    /// down).
    pub fn raft_engine(&self, id: u64) -> Arc<dyn Engine> {
        let s = &self.stores[&id];
        match &s.fjall {
            Some((_, raft)) => raft.clone(),
            None => Arc::new(s.raft_disk.open()),
        }
    }

    /// Arms a crash of store `id` at the `n`-th sync (`n >= 1`; of a file
    /// or of the directory) of its next snapshot file work of kind
    /// `during`: building a snapshot's files, or writing the files of one
    /// that arrived. The sync does not happen; `keep` says what of the
    /// unsynced state survives. The store stays down until
    /// [`restart_store`](Self::restart_store). With fjall the files are
    /// real and keep everything.
    pub fn crash_in_snapshot_io(&mut self, id: u64, during: SnapshotIo, n: u64, keep: FsCrash) {
        let plan = &self.stores[&id].crash;
        plan.snap_io.lock().expect("crash plan").armed = Some((during, n.max(1), keep));
    }

    /// The simulated file system of store `id`'s snapshot files (also when
    /// the store is down); `None` with fjall, where they are real files.
    pub fn snap_fs(&self, id: u64) -> Option<&MemoryFs> {
        self.stores.get(&id)?.snap_fs.as_ref()
    }

    /// Crashes store `id`'s snapshot files: what survives is `keep`, or
    /// chosen at random (each unsynced directory change survives or not,
    /// each file keeps a random part of its unsynced bytes). The random
    /// choices are drawn only for unsynced state, so a crash with none
    /// draws nothing. Returns what to add to the crash's fault line.
    fn crash_snapshot_files(&mut self, id: u64, keep: Option<FsCrash>) -> String {
        let Some(fs) = self.stores[&id].snap_fs.clone() else { return String::new() };
        let report = match keep {
            Some(FsCrash::Lose) => fs.crash(),
            Some(FsCrash::Tear) => fs.crash_with(&mut TearFiles(&mut self.rng)),
            None => fs.crash_with(&mut RandomLoss(&mut self.rng)),
        };
        describe_file_loss(&report)
    }

    /// Corrupts one byte of the next snapshot sent (the receiver must
    /// reject it).
    pub fn corrupt_next_snapshot(&mut self) {
        self.corrupt_next_snapshot = true;
    }

    /// The snapshot manager of running store `id`.
    pub fn snaps(&self, id: u64) -> Option<&Arc<SnapManager>> {
        self.stores.get(&id)?.snaps.as_ref()
    }

    /// Starts a crashed store again from what its disks kept.
    pub fn restart_store(&mut self, id: u64) {
        if self.stores[&id].store.is_none() && !self.dead.contains(&id) {
            self.fault(format!("store {id} restarted"));
            self.start_store(id);
        }
    }

    /// Whether store `id` is running.
    pub fn is_up(&self, id: u64) -> bool {
        self.stores.get(&id).is_some_and(|s| s.store.is_some())
    }

    /// The running store `id`, to look at.
    pub fn store(&self, id: u64) -> Option<&Store> {
        self.stores.get(&id)?.store.as_ref()
    }

    /// The store ids.
    pub fn store_ids(&self) -> Vec<u64> {
        self.stores.keys().copied().collect()
    }

    /// The kv engine of store `id`, as it is now (also when the store is
    /// down), to check what it holds.
    pub fn kv_engine(&self, id: u64) -> Arc<dyn Engine> {
        let s = &self.stores[&id];
        match &s.fjall {
            Some((kv, _)) => kv.clone(),
            None => Arc::new(s.kv_disk.open()),
        }
    }

    /// Unsynced batches the stores' disks have lost in crashes so far.
    pub fn lost_batches(&self) -> u64 {
        self.stores
            .values()
            .map(|s| s.kv_disk.stats().lost_batches + s.raft_disk.stats().lost_batches)
            .sum()
    }

    /// The largest applied − truncated index of any peer on a running
    /// store (how many applied entries a log still holds), with its store.
    pub fn max_log_gap(&self) -> (u64, u64) {
        let mut worst = (0, 0);
        for (&id, s) in &self.stores {
            let Some(store) = &s.store else { continue };
            for peer in store.peers() {
                let ps = peer.storage();
                let gap = ps.applied_index().saturating_sub(ps.truncated().index);
                if gap > worst.0 {
                    worst = (gap, id);
                }
            }
        }
        worst
    }

    /// The raft log entries store `id` holds on disk (all regions),
    /// compacted or not: what log GC has not deleted yet.
    pub fn raft_log_entries(&self, id: u64) -> u64 {
        let s = &self.stores[&id];
        let raft: Arc<dyn Engine> = match &s.fjall {
            Some((_, raft)) => raft.clone(),
            None => Arc::new(s.raft_disk.open()),
        };
        let (start, _) = tinykv_engine::keys::raft_log_range(0);
        let (_, end) = tinykv_engine::keys::raft_log_range(u64::MAX);
        let snap = raft.snapshot();
        snap.iter(Cf::Meta, &start, Some(&end))
            .filter(|kv| {
                kv.as_ref().is_ok_and(|(k, _)| tinykv_engine::keys::decode_raft_log_key(k).is_ok())
            })
            .count() as u64
    }

    /// Records a fault for the report's timeline.
    pub fn fault(&mut self, what: String) {
        log::info!("fault at {}us: {what}", self.now);
        self.history.faults.push(FaultRecord { at_us: self.now, what });
    }

    /// The store whose peer leads the first region in the highest term.
    pub fn leader(&self) -> Option<u64> {
        self.leader_of(FIRST_REGION)
    }

    /// The store whose peer leads region `region_id` in the highest term,
    /// if any.
    pub fn leader_of(&self, region_id: u64) -> Option<u64> {
        self.stores
            .iter()
            .filter_map(|(&id, s)| {
                let peer = s.store.as_ref()?.peer(region_id)?;
                peer.is_leader().then_some((peer.term(), id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn with_store(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut Store, &mut Effects) -> tinykv_raftstore::Result<()>,
    ) {
        let mut fx = Effects::default();
        let Some(store) = self.stores.get_mut(&id).and_then(|s| s.store.as_mut()) else { return };
        capture::set_node(id);
        let result = f(store, &mut fx);
        capture::set_node(0);
        if let Err(e) = result {
            if !e.to_string().contains(CRASH_MARK) {
                panic!("store {id} failed: {e} (seed {}, at {}us)", self.cfg.seed, self.now);
            }
            // The power went out in the middle of a write. What the store
            // sent before that is on the wire; what it would have answered
            // or left to its workers is not.
            fx.answers.clear();
            fx.tasks.clear();
            fx.reports.clear();
            self.power_loss(id, "in the middle of a write");
        }
        for msg in fx.sent {
            self.send(id, msg);
        }
        for (token, resp) in fx.answers {
            let delay = self.net.latency(&mut self.rng);
            let read = self.read_now(token, &resp);
            self.schedule(delay, Event::Answer { token, resp: Box::new(resp), read });
        }
        for task in fx.reports {
            for delay in self.net.route(id, SCHEDULER_NODE, &mut self.rng) {
                let task = Box::new(task.clone());
                self.schedule(delay, Event::ToScheduler { from: id, task });
            }
        }
        let incarnation = self.stores[&id].incarnation;
        for task in fx.tasks {
            let delay = self.rng.next_u64() % (self.cfg.max_task_delay_us + 1);
            self.schedule(delay, Event::Task { store: id, incarnation, task: Box::new(task) });
        }
    }

    /// Store `id` lost power during a write: it is down, and both disks
    /// lose their unsynced writes.
    fn power_loss(&mut self, id: u64, during: &str) {
        let s = self.stores.get_mut(&id).unwrap();
        s.store = None;
        s.snaps = None;
        s.kv_disk.crash();
        s.raft_disk.crash();
        let keep = s.crash.snap_io.lock().expect("crash plan").struck.take();
        let files = self.crash_snapshot_files(id, keep);
        self.fault(format!("store {id} crashed {during}{files}"));
    }

    fn on_task(&mut self, id: u64, incarnation: u64, task: Task) {
        let s = &self.stores[&id];
        let (Some(store), Some(snaps)) = (&s.store, &s.snaps) else { return };
        if s.incarnation != incarnation {
            return;
        }
        let (engines, snaps, plan) = (store.engines().clone(), snaps.clone(), s.crash.clone());
        self.mix(&[self.now, 6, id, task.region_id()]);
        let what = format!("{task:?}");
        capture::set_node(id);
        let result = if matches!(task, Task::GenSnapshot { .. }) {
            plan.in_snapshot_io(SnapshotIo::Build, || run_task(task, &engines, &snaps))
        } else {
            run_task(task, &engines, &snaps)
        };
        capture::set_node(0);
        // (A crash in snapshot file work whose error is only logged, such
        // as deleting superseded files, stops the store all the same.)
        if format!("{result:?}").contains(CRASH_MARK) || plan.down.load(Ordering::Relaxed) {
            self.power_loss(id, &format!("in the middle of {what}"));
            return;
        }
        self.with_store(id, |s, fx| s.on_task_result(result, fx));
    }

    fn send(&mut self, from: u64, msg: RaftMessage) {
        let to = msg.to_peer.map_or(0, |p| p.store_id);
        let is_snapshot =
            msg.message.as_ref().is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot);
        if is_snapshot {
            return self.send_snapshot(from, to, msg);
        }
        let delays = self.net.route(from, to, &mut self.rng);
        for delay in delays {
            self.schedule(delay, Event::Deliver { to, msg: Box::new(msg.clone()) });
        }
    }

    /// Fails the run when `msg`, delivered to store `to`, is the same append
    /// rejection, from one follower to one leader, [`MAX_SAME_REJECTIONS`]
    /// times in a row (rejections the network drops do not count; see
    /// [`crate::livelock`]).
    fn check_rejection_streak(&mut self, from: u64, to: u64, msg: &RaftMessage) {
        let Some(m) = msg.message.as_ref() else { return };
        if m.msg_type() != MessageType::MsgAppendResponse {
            return;
        }
        let rej =
            m.reject.then_some(Rejection { term: m.term, index: m.index, log_term: m.log_term });
        let streak = self.rejections.record(msg.region_id, from, to, rej);
        if streak >= MAX_SAME_REJECTIONS {
            panic!(
                "livelock in region {}: store {from} rejected the same append from store {to} \
                 {streak} times in a row (term {}, index {}, log term {}), and the leader sent \
                 it again each time. A rejected append should move the leader's next index \
                 back (lab 2ab, Raft::handle_append_response), and a follower's log and raft \
                 state must survive its restarts (lab 2b, PeerStorage::save_ready_state). \
                 (seed {})",
                msg.region_id, m.term, m.index, m.log_term, self.cfg.seed
            );
        }
    }

    /// Reads the files of the snapshot in `msg` from the sender and puts
    /// them on the wire with the message.
    fn send_snapshot(&mut self, from: u64, to: u64, msg: RaftMessage) {
        let Some(key) = snapshot_key(&msg) else {
            log::warn!("store {from} sends a snapshot message without a snapshot");
            return;
        };
        let Some(snaps) = self.stores[&from].snaps.clone() else { return };
        capture::set_node(from);
        let data = match read_snapshot(&snaps, key) {
            Ok(data) => data,
            Err(e) => {
                log::warn!("cannot send snapshot {key}: {e}");
                capture::set_node(0);
                return;
            }
        };
        capture::set_node(0);
        let mut data = data;
        if std::mem::take(&mut self.corrupt_next_snapshot) {
            if data.is_empty() {
                self.corrupt_next_snapshot = true;
            } else {
                let at = self.rng.range(0, data.len());
                data[at] ^= 0x5A;
                self.fault(format!("snapshot {key} corrupted in transit (byte {at})"));
            }
        }
        self.snapshot_stats.sent += 1;
        self.snapshot_stats.bytes += data.len() as u64;
        self.mix(&[self.now, 7, from, to, key.index, data.len() as u64]);
        for delay in self.net.route(from, to, &mut self.rng) {
            let (msg, data) = (Box::new(msg.clone()), data.clone());
            self.schedule(delay, Event::DeliverSnapshot { to, msg, data });
        }
    }

    /// The receiver writes and checks the snapshot's files, then gets the
    /// message; a transfer that does not check out is dropped.
    fn on_deliver_snapshot(&mut self, to: u64, msg: RaftMessage, data: Vec<u8>) {
        let Some(snaps) = self.stores.get(&to).and_then(|s| s.snaps.clone()) else { return };
        let Some(key) = snapshot_key(&msg) else { return };
        let meta = snapshot_meta(&msg);
        capture::set_node(to);
        let plan = self.stores[&to].crash.clone();
        let received = plan.in_snapshot_io(SnapshotIo::Receive, || {
            snaps.receive(key, &meta).and_then(|mut r| {
                r.write(&data)?;
                r.finish()
            })
        });
        capture::set_node(0);
        if received.as_ref().is_err_and(|e| e.to_string().contains(CRASH_MARK))
            || plan.down.load(Ordering::Relaxed)
        {
            self.power_loss(to, &format!("while receiving snapshot {key}"));
            return;
        }
        match received {
            Ok(()) => {
                self.snapshot_stats.delivered += 1;
                let n = plan.on_snapshot_delivered.swap(0, Ordering::Relaxed);
                plan.any.store(n, Ordering::Relaxed);
                self.on_deliver(to, msg);
                if n > 0 && self.is_up(to) {
                    // The store did not store this snapshot then and there
                    // (raft ignored it, say): wait for the next one.
                    plan.any.store(0, Ordering::Relaxed);
                    plan.on_snapshot_delivered.store(n, Ordering::Relaxed);
                }
            }
            Err(e) => {
                self.snapshot_stats.rejected += 1;
                self.snapshot_stats.rejections.push(e.to_string());
                self.fault(format!("store {to} rejected snapshot {key}: {e}"));
            }
        }
    }

    fn on_tick(&mut self, id: u64, incarnation: u64) {
        if self.stores.get(&id).is_none_or(|s| s.incarnation != incarnation || s.store.is_none()) {
            return;
        }
        self.mix(&[self.now, 1, id]);
        self.with_store(id, |s, fx| s.on_tick(fx));
        let interval = self.cfg.store.raft_base_tick_ms * MS;
        self.schedule(interval, Event::Tick { store: id, incarnation });
    }

    fn on_deliver(&mut self, to: u64, msg: RaftMessage) {
        let m = msg.message.as_ref().map_or((0, 0, 0), |m| (m.msg_type as u64, m.term, m.index));
        let from = msg.from_peer.map_or(0, |p| p.store_id);
        self.mix(&[self.now, 2, to, from, m.0, m.1, m.2]);
        if capture::is_on()
            && self.is_up(to)
            && let Some(rm) = &msg.message
        {
            capture::set_node(to);
            log::debug!(
                "recv {:?} from store {from}: term {} log_term {} index {} commit {} entries {}{}",
                rm.msg_type(),
                rm.term,
                rm.log_term,
                rm.index,
                rm.commit,
                rm.entries.len(),
                if rm.reject { " reject" } else { "" }
            );
        }
        if self.is_up(to) {
            self.check_rejection_streak(from, to, &msg);
        }
        self.with_store(to, |s, fx| s.on_raft_message(msg, fx));
    }

    fn on_command(&mut self, id: u64, token: Token, req: RaftCmdRequest) {
        self.mix(&[self.now, 3, id, token]);
        if capture::is_on() && self.is_up(id) {
            capture::set_node(id);
            let kinds: Vec<_> = req.requests.iter().map(|r| r.cmd_type()).collect();
            log::debug!("command {token}: {kinds:?}");
        }
        self.with_store(id, |s, fx| s.on_command(req, token, fx));
    }

    /// A store's heartbeat reaches the scheduler; an operator in its answer
    /// goes back over the network.
    ///
    /// # Panics
    ///
    /// When the heartbeat breaches the mock scheduler's invariants (no
    /// correct store sends it), naming the breach and the seed.
    fn on_to_scheduler(&mut self, from: u64, task: SchedulerTask) {
        if self.pd.is_some() {
            self.on_to_real_scheduler(from, task);
            return;
        }
        match task {
            SchedulerTask::RegionHeartbeat(req) => {
                let epoch = req.region.as_ref().and_then(|r| r.region_epoch).unwrap_or_default();
                let region_id = req.region.as_ref().map_or(0, |r| r.id);
                self.mix(&[self.now, 8, from, region_id, epoch.conf_ver, epoch.version]);
                match self.scheduler.on_region_heartbeat(req) {
                    Ok(Some(resp)) => {
                        for delay in self.net.route(SCHEDULER_NODE, from, &mut self.rng) {
                            let resp = Box::new(resp.clone());
                            self.schedule(delay, Event::FromScheduler { to: from, resp });
                        }
                    }
                    Ok(None) => {}
                    Err(breach) => panic!(
                        "the mock scheduler caught a region heartbeat from store {from} that no \
                         correct store sends:\n{breach}\n(seed {}, at {}us)",
                        self.cfg.seed, self.now
                    ),
                }
            }
            SchedulerTask::AskSplit { region, split_key, .. } => {
                self.mix(&[self.now, 11, from, region.id]);
                let req = AskSplitRequest { region: Some(region.clone()), ..Default::default() };
                match self.scheduler.ask_split(req) {
                    Ok(resp) => {
                        for delay in self.net.route(SCHEDULER_NODE, from, &mut self.rng) {
                            let (region, split_key) = (Box::new(region.clone()), split_key.clone());
                            let resp = resp.clone();
                            self.schedule(
                                delay,
                                Event::SplitIds { to: from, region, split_key, resp },
                            );
                        }
                    }
                    // A stale ask (the region changed since the check):
                    // the next check asks again if it must.
                    Err(e) => {
                        log::info!("the scheduler refused a split of region {}: {e}", region.id)
                    }
                }
            }
            SchedulerTask::StoreHeartbeat(req) => {
                self.mix(&[self.now, 9, from]);
                if let Err(e) = self.scheduler.on_store_heartbeat(req) {
                    panic!(
                        "the mock scheduler refused store {from}'s heartbeat: {e} (seed {})",
                        self.cfg.seed
                    );
                }
            }
        }
    }

    /// A store's heartbeat reaches the real scheduler: it may answer with
    /// an operator's step, or with a split's ids. A stale or refused
    /// report is logged; it is not a failure (the real scheduler is not a
    /// checker).
    fn on_to_real_scheduler(&mut self, from: u64, task: SchedulerTask) {
        let now_ms = self.now / MS;
        match task {
            SchedulerTask::RegionHeartbeat(req) => {
                let epoch = req.region.as_ref().and_then(|r| r.region_epoch).unwrap_or_default();
                let region_id = req.region.as_ref().map_or(0, |r| r.id);
                self.mix(&[self.now, 8, from, region_id, epoch.conf_ver, epoch.version]);
                let pd = self.pd.as_mut().expect("a real scheduler");
                let resp = match pd.on_region_heartbeat(&req, now_ms) {
                    Ok(resp) => resp,
                    Err(e) => {
                        log::debug!("the scheduler refused a heartbeat from store {from}: {e}");
                        None
                    }
                };
                if let Some(resp) = resp {
                    for delay in self.net.route(SCHEDULER_NODE, from, &mut self.rng) {
                        let resp = Box::new(resp.clone());
                        self.schedule(delay, Event::FromScheduler { to: from, resp });
                    }
                }
            }
            SchedulerTask::AskSplit { region, split_key, .. } => {
                self.mix(&[self.now, 11, from, region.id]);
                let pd = self.pd.as_mut().expect("a real scheduler");
                match pd.ask_split(Some(region.clone())) {
                    Ok(resp) => {
                        for delay in self.net.route(SCHEDULER_NODE, from, &mut self.rng) {
                            let (region, split_key) = (Box::new(region.clone()), split_key.clone());
                            let resp = resp.clone();
                            self.schedule(
                                delay,
                                Event::SplitIds { to: from, region, split_key, resp },
                            );
                        }
                    }
                    Err(e) => {
                        log::info!("the scheduler refused a split of region {}: {e}", region.id)
                    }
                }
            }
            SchedulerTask::StoreHeartbeat(req) => {
                self.mix(&[self.now, 9, from]);
                let stats = req.stats.unwrap_or_default();
                let pd = self.pd.as_mut().expect("a real scheduler");
                if let Err(e) = pd.on_store_heartbeat(stats, now_ms) {
                    log::warn!("the scheduler refused store {from}'s heartbeat: {e}");
                }
            }
        }
    }

    /// The real scheduler's clock ticks: it runs its checkers and
    /// schedulers when they are due.
    fn on_scheduler_tick(&mut self) {
        let Some(pd) = self.pd.as_mut() else { return };
        if let Err(e) = pd.tick(self.now / MS) {
            panic!("the scheduler failed: {e} (seed {})", self.cfg.seed);
        }
        let running = pd.operators().running().count() as u64;
        self.mix(&[self.now, 13, running]);
        self.schedule(SCHEDULER_TICK_US, Event::SchedulerTick);
    }

    /// Opens the real scheduler on its (in-memory) storage at the present
    /// time: a fresh one the first time, the same cluster after a restart.
    fn open_scheduler(&mut self, config: ScheduleConfig) {
        let storage = Box::new(self.pd_storage.clone());
        let pd = RaftCluster::open(storage, config, 1, self.now / MS)
            .unwrap_or_else(|e| panic!("the scheduler cannot open: {e} (seed {})", self.cfg.seed));
        self.pd = Some(pd);
    }

    /// Restarts the real scheduler: what it kept in memory is gone (leaders,
    /// sizes, operators, when stores last reported), what it persisted
    /// (stores, regions, id and timestamp bounds) is read back.
    ///
    /// # Panics
    ///
    /// With the mock scheduler.
    pub fn restart_scheduler(&mut self) {
        let SchedulerChoice::Real(config) = self.cfg.scheduler.clone() else {
            panic!("restart_scheduler needs SchedulerChoice::Real")
        };
        self.fault("the scheduler restarts".to_string());
        self.pd = None;
        self.open_scheduler(config);
    }

    /// Adds a new, empty store to the cluster (the next id) and starts
    /// it; with the real scheduler, the store is put there first, so it
    /// can take regions. Returns its id.
    pub fn add_store(&mut self) -> u64 {
        let id = self.stores.keys().max().copied().unwrap_or(0) + 1;
        if let Some(pd) = self.pd.as_mut() {
            let store = metapb::Store { id, address: format!("store{id}"), ..Default::default() };
            pd.put_store(store).expect("the scheduler takes a new store");
        }
        self.scheduler.put_store(metapb::Store {
            id,
            address: format!("store{id}"),
            ..Default::default()
        });
        let s = self.new_sim_store(id);
        bootstrap_store(&s.engines(), 1, id).expect("bootstrap store");
        self.stores.insert(id, s);
        self.start_store(id);
        self.fault(format!("store {id} joins the cluster"));
        id
    }

    /// The highest client id that has started an operation (0 if none):
    /// a second workload on this cluster starts above it.
    pub fn clients_started(&self) -> u64 {
        self.clients.keys().max().copied().unwrap_or(0)
    }

    /// The region that holds `key`, as the scheduler knows it.
    pub fn scheduler_region_by_key(&self, key: &[u8]) -> Option<metapb::Region> {
        match &self.pd {
            Some(pd) => pd.region_by_key(key).map(|r| r.region.clone()),
            None => self.scheduler.region_by_key(key).cloned(),
        }
    }

    fn on_split_ids(
        &mut self,
        to: u64,
        region: metapb::Region,
        split_key: Vec<u8>,
        resp: AskSplitResponse,
    ) {
        self.mix(&[self.now, 12, to, region.id, resp.new_region_id]);
        self.with_store(to, |s, fx| s.on_ask_split_response(region, split_key, resp, fx));
    }

    /// Asks for a split of `region_id` at `split_key` now, as its leader's
    /// split check would (new ids from the scheduler, proposed by the
    /// leader's store); the report's timeline shows it. Returns the new
    /// region's id (`None`: no leader, or the scheduler refused).
    pub fn ask_split(&mut self, region_id: u64, split_key: &[u8]) -> Option<u64> {
        let store = self.leader_of(region_id)?;
        let region = self.store(store)?.peer(region_id)?.region().clone();
        let req = AskSplitRequest { region: Some(region.clone()), ..Default::default() };
        let resp = self.scheduler.ask_split(req).ok()?;
        let new_region_id = resp.new_region_id;
        self.fault(format!(
            "split region {region_id} at {:?} (new region {new_region_id}, proposed on store {store})",
            crate::history::show(split_key)
        ));
        let delay = self.net.latency(&mut self.rng);
        let (region, split_key) = (Box::new(region), split_key.to_vec());
        self.schedule(delay, Event::SplitIds { to: store, region, split_key, resp });
        Some(new_region_id)
    }

    fn on_from_scheduler(&mut self, to: u64, resp: RegionHeartbeatResponse) {
        self.mix(&[self.now, 10, to, resp.region_id]);
        self.with_store(to, |s, fx| s.on_region_heartbeat_response(resp, fx));
    }

    /// Hands `msg` to store `to` after one network latency (cuts and
    /// drops do not apply), as if a delayed copy of an old message arrived
    /// now: for tests of stale messages.
    pub fn deliver_raw(&mut self, to: u64, msg: RaftMessage) {
        self.fault(format!("an injected raft message reaches store {to}"));
        let delay = self.net.latency(&mut self.rng);
        self.schedule(delay, Event::Deliver { to, msg: Box::new(msg) });
    }

    // ----- operators (the scheduler's, asked for by a test) ------------------------

    /// Asks the scheduler for a new peer of `region_id` on `store_id`; the
    /// report's timeline shows it. Returns the new peer (`None`: the
    /// store has one already, nothing to do).
    ///
    /// # Errors
    ///
    /// The scheduler's refusal (a conf change in flight, an unknown
    /// store, ...).
    pub fn ask_add_peer(
        &mut self,
        region_id: u64,
        store_id: u64,
    ) -> Result<Option<Peer>, ScheduleError> {
        let scheduled = self.scheduler.add_peer(region_id, store_id)?;
        let peer = match scheduled {
            Operated::Pending(op) => Some(op.peer()),
            Operated::AlreadyDone => None,
        };
        if let Some(p) = peer {
            self.fault(format!(
                "conf change: add peer {} on store {store_id} (region {region_id})",
                p.id
            ));
        }
        Ok(peer)
    }

    /// Asks the scheduler to remove the peer of `region_id` on `store_id`;
    /// false if there is none (nothing to do).
    ///
    /// # Errors
    ///
    /// The scheduler's refusal (a conf change in flight, the last peer).
    pub fn ask_remove_peer(
        &mut self,
        region_id: u64,
        store_id: u64,
    ) -> Result<bool, ScheduleError> {
        let pending =
            matches!(self.scheduler.remove_peer(region_id, store_id)?, Operated::Pending(_));
        if pending {
            self.fault(format!(
                "conf change: remove the peer on store {store_id} (region {region_id})"
            ));
        }
        Ok(pending)
    }

    /// Asks the scheduler to move the leadership of `region_id` to its
    /// peer on `store_id`.
    ///
    /// # Errors
    ///
    /// The scheduler's refusal (no peer there, a conf change in flight).
    pub fn ask_transfer_leader(
        &mut self,
        region_id: u64,
        store_id: u64,
    ) -> Result<(), ScheduleError> {
        self.scheduler.transfer_leader(region_id, store_id)?;
        self.fault(format!("transfer leader of region {region_id} to store {store_id}"));
        Ok(())
    }

    /// Runs the simulation until `done` holds, or panics after
    /// `deadline_us` of virtual time saying `what` did not happen.
    fn run_until_true(
        &mut self,
        what: &str,
        deadline_us: u64,
        mut done: impl FnMut(&mut Cluster) -> bool,
    ) {
        let until = self.now + deadline_us;
        while !done(self) {
            if self.now > until || !self.step() {
                panic!(
                    "{what} did not happen within {}ms of virtual time (seed {}, at {}ms)",
                    deadline_us / MS,
                    self.cfg.seed,
                    self.now / MS
                );
            }
        }
    }

    /// Retries `ask` while a conf change of the region is in flight, then
    /// returns what it gave.
    fn ask_when_free<T>(
        &mut self,
        what: &str,
        mut ask: impl FnMut(&mut Cluster) -> Result<T, ScheduleError>,
    ) -> T {
        let until = self.now + 20 * SEC;
        loop {
            match ask(self) {
                Ok(v) => return v,
                Err(ScheduleError::ChangeInFlight { .. }) if self.now < until => {
                    self.run_for(10 * MS)
                }
                Err(e) => panic!("{what}: the scheduler refused: {e} (seed {})", self.cfg.seed),
            }
        }
    }

    /// Adds a peer of `region_id` on `store_id` through the scheduler and
    /// waits (up to 20 s of virtual time) until the scheduler sees it in
    /// the region; returns it. (It may still be catching up: see
    /// [`must_have_peer`](Self::must_have_peer).)
    pub fn must_add_peer(&mut self, region_id: u64, store_id: u64) -> Peer {
        let what = format!("adding a peer of region {region_id} on store {store_id}");
        let peer = self.ask_when_free(&what, |c| c.ask_add_peer(region_id, store_id));
        let peer = peer.unwrap_or_else(|| {
            panic!("{what}: store {store_id} has one already (seed {})", self.cfg.seed)
        });
        self.run_until_true(&what, 20 * SEC, |c| {
            c.scheduler.operator(region_id).is_none()
                && c.scheduler_peer(region_id, store_id) == Some(peer)
        });
        peer
    }

    /// Removes the peer of `region_id` on `store_id` through the scheduler
    /// and waits until the scheduler sees it gone.
    pub fn must_remove_peer(&mut self, region_id: u64, store_id: u64) {
        let what = format!("removing the peer of region {region_id} on store {store_id}");
        self.ask_when_free(&what, |c| c.ask_remove_peer(region_id, store_id));
        self.run_until_true(&what, 20 * SEC, |c| {
            c.scheduler.operator(region_id).is_none()
                && c.scheduler_peer(region_id, store_id).is_none()
        });
    }

    /// Moves the leadership of `region_id` to its peer on `store_id`
    /// through the scheduler, and waits until that store's peer leads (as
    /// the stores say, not the heartbeats), asking again if the operator
    /// was dropped before it worked.
    pub fn must_transfer_leader(&mut self, region_id: u64, store_id: u64) {
        let what = format!("moving the leadership of region {region_id} to store {store_id}");
        self.ask_when_free(&what, |c| c.ask_transfer_leader(region_id, store_id));
        self.run_until_true(&what, 20 * SEC, |c| {
            if c.leader_of(region_id) == Some(store_id) {
                return true;
            }
            if c.scheduler.operator(region_id).is_none() {
                // Seen done from a stale heartbeat, or replaced: ask again.
                let _ = c.scheduler.transfer_leader(region_id, store_id);
            }
            false
        });
    }

    /// Waits until store `store_id` holds peer `peer_id` of `region_id`,
    /// initialized (it has the region's data).
    pub fn must_have_peer(&mut self, region_id: u64, store_id: u64, peer_id: u64) {
        let what = format!("store {store_id} holding peer {peer_id} of region {region_id}");
        self.run_until_true(&what, 20 * SEC, |c| {
            c.store(store_id)
                .and_then(|s| s.peer(region_id))
                .is_some_and(|p| p.meta.id == peer_id && p.is_initialized() && !p.applying_snapshot)
        });
    }

    /// Waits until store `store_id` holds no peer of `region_id` (a removed
    /// peer is destroyed).
    pub fn must_none_peer(&mut self, region_id: u64, store_id: u64) {
        let what = format!("store {store_id} destroying its peer of region {region_id}");
        self.run_until_true(&what, 20 * SEC, |c| {
            c.store(store_id).is_some_and(|s| s.peer(region_id).is_none())
        });
    }

    /// The peer of `region_id` on `store_id`, as the scheduler knows the
    /// region.
    pub fn scheduler_peer(&self, region_id: u64, store_id: u64) -> Option<Peer> {
        self.scheduler.region(region_id)?.peers.iter().find(|p| p.store_id == store_id).copied()
    }

    // ----- clients -----------------------------------------------------------------

    /// Starts operation `kind` for `client` (which must be idle); it runs
    /// as events are handled. See [`op_done`](Self::op_done).
    pub fn start_op(&mut self, client: u64, kind: OpKind) {
        let c = self.clients.entry(client).or_default();
        assert!(c.op.is_none(), "client {client} already has an operation in flight");
        let scan = match &kind {
            OpKind::Scan { start, .. } => {
                Some(ScanProgress { cursor: start.clone(), rows: vec![] })
            }
            _ => None,
        };
        let record = self.new_record(client, kind);
        let c = self.clients.get_mut(&client).unwrap();
        c.op = Some(Pending {
            record,
            token: 0,
            attempts: 0,
            unanswered: 0,
            refused: 0,
            last_refusal: None,
            region_id: 0,
            scan,
        });
        self.attempt(client);
    }

    /// A new history record for `client`'s `kind`, called now, unanswered.
    fn new_record(&mut self, client: u64, kind: OpKind) -> usize {
        self.history.ops.push(OpRecord {
            client,
            kind,
            result: None,
            call_us: self.now,
            ret_us: None,
        });
        self.history.ops.len() - 1
    }

    /// Whether `client` has no operation in flight.
    pub fn op_done(&self, client: u64) -> bool {
        self.clients.get(&client).is_none_or(|c| c.op.is_none())
    }

    /// The record of `client`'s last finished operation.
    pub fn last_done(&self, client: u64) -> Option<&OpRecord> {
        let i = self.clients.get(&client)?.last_done?;
        self.history.ops.get(i)
    }

    /// The result of `client`'s last finished operation.
    pub fn last_result(&self, client: u64) -> Option<OpResult> {
        self.last_done(client)?.result.clone()
    }

    /// Abandons `client`'s operation (its outcome stays unknown).
    pub fn abandon_op(&mut self, client: u64) {
        if let Some(c) = self.clients.get_mut(&client)
            && let Some(p) = c.op.take()
        {
            self.tokens.remove(&p.token);
        }
    }

    /// The store a client tries next for `region`: the leader it believes
    /// in, else one of the region's stores (as the scheduler knows them) at
    /// random.
    fn pick_store(&mut self, client: u64, region: Option<&metapb::Region>) -> u64 {
        let region_id = region.map_or(0, |r| r.id);
        if let Some(&l) = self.clients[&client].leaders.get(&region_id) {
            return l;
        }
        let mut ids: Vec<u64> =
            region.map(|r| r.peers.iter().map(|p| p.store_id).collect()).unwrap_or_default();
        if ids.is_empty() {
            ids = self.store_ids();
        }
        ids[self.rng.range(0, ids.len())]
    }

    /// The key whose region `client`'s operation goes to next: its key,
    /// or where the rest of its scan starts.
    fn pending_key(&self, client: u64) -> Vec<u8> {
        let p = self.clients[&client].op.as_ref().unwrap();
        match &p.scan {
            Some(scan) => scan.cursor.clone(),
            None => op_key(&self.history.ops[p.record].kind).to_vec(),
        }
    }

    /// The region of `key` for `client`: from its cache, else from the
    /// scheduler (and then cached).
    fn client_region(&mut self, client: u64, key: &[u8]) -> Option<metapb::Region> {
        if let Some(r) = self.clients[&client].regions.find(key) {
            return Some(r.clone());
        }
        let region = self.scheduler_region_by_key(key)?;
        self.clients.get_mut(&client).unwrap().regions.insert(region.clone());
        Some(region)
    }

    fn attempt(&mut self, client: u64) {
        let record = self.clients[&client].op.as_ref().unwrap().record;
        let kind = self.history.ops[record].kind.clone();
        let key = self.pending_key(client);
        let token = self.next_token;
        self.next_token += 1;
        let Some(region) = self.client_region(client, &key) else {
            // No region is known to hold the key (the scheduler has not
            // heard of both halves of a split yet): wait, then look again.
            // The wait ends like a timeout of an attempt never sent.
            let p = self.clients.get_mut(&client).unwrap().op.as_mut().unwrap();
            p.token = token;
            let backoff = 10 * MS + self.rng.next_u64() % (40 * MS);
            self.schedule(backoff, Event::Timeout { client, token });
            return;
        };
        let store = self.pick_store(client, Some(&region));
        self.tokens.insert(token, (client, store));
        let c = self.clients.get_mut(&client).unwrap();
        let p = c.op.as_mut().unwrap();
        p.token = token;
        p.attempts += 1;
        p.region_id = region.id;
        let req = command_in(&region, store, &kind, &key);
        let delay = self.net.latency(&mut self.rng);
        self.schedule(delay, Event::Command { store, token, req: Box::new(req) });
        let timeout = self.cfg.request_timeout_us;
        self.schedule(timeout, Event::Timeout { client, token });
    }

    /// Sends `req` to store `store` once (no retries) without waiting;
    /// [`answer`](Self::answer) takes its answer once it arrived.
    pub fn call_async(&mut self, store: u64, req: RaftCmdRequest) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        self.direct.insert(token, None);
        let delay = self.net.latency(&mut self.rng);
        self.schedule(delay, Event::Command { store, token, req: Box::new(req) });
        token
    }

    /// The answer to [`call_async`](Self::call_async)'s `token`, if it has
    /// arrived (taken: a second call gives `None`).
    pub fn answer(&mut self, token: Token) -> Option<CmdResponse> {
        if self.direct.get(&token).is_some_and(Option::is_some) {
            return self.direct.remove(&token).flatten();
        }
        None
    }

    /// Sends `req` to store `store` once (no retries) and runs the
    /// simulation until its answer arrives or `timeout_us` passes (`None`).
    pub fn call(
        &mut self,
        store: u64,
        req: RaftCmdRequest,
        timeout_us: u64,
    ) -> Option<CmdResponse> {
        let token = self.next_token;
        self.next_token += 1;
        self.direct.insert(token, None);
        let delay = self.net.latency(&mut self.rng);
        self.schedule(delay, Event::Command { store, token, req: Box::new(req) });
        let until = self.now + timeout_us;
        while self.direct[&token].is_none() {
            if self.queue.peek().is_none_or(|Reverse(s)| s.at > until) {
                self.run_until(until);
                break;
            }
            self.step();
        }
        self.direct.remove(&token).flatten()
    }

    /// The command a client sends to `store` for `kind`, in the region
    /// the scheduler knows for the operation's key: a header naming the
    /// region, the store's peer and the region's epoch, and one request.
    ///
    /// # Panics
    ///
    /// If no region holds the operation's key.
    pub fn command(&self, store: u64, kind: &OpKind) -> RaftCmdRequest {
        let key = op_key(kind);
        let region = self
            .scheduler_region_by_key(key)
            .unwrap_or_else(|| panic!("no region holds key {key:?}"));
        command_in(&region, store, kind, key)
    }

    fn current(&self, client: u64, token: Token) -> bool {
        self.clients.get(&client).and_then(|c| c.op.as_ref()).is_some_and(|p| p.token == token)
    }

    fn on_timeout(&mut self, client: u64, token: Token) {
        if !self.current(client, token) {
            return;
        }
        self.mix(&[self.now, 4, client, token]);
        // A timeout (the attempt is still in flight, unanswered) or the end
        // of a back-off after an error answer (the attempt is answered).
        let unanswered = self.tokens.remove(&token).is_some();
        if unanswered {
            // The attempt may still take effect, even after a retry of the
            // same operation has: the store does not deduplicate retries.
            // So it stays in the history as an operation of unknown
            // outcome, and the retry is a new operation.
            let old = self.clients[&client].op.as_ref().unwrap().record;
            let record = self.new_record(client, self.history.ops[old].kind.clone());
            let p = self.clients.get_mut(&client).unwrap().op.as_mut().unwrap();
            p.record = record;
            p.unanswered += 1;
        }
        // The store may be down or cut off, or the region moved: forget
        // both and try another.
        let c = self.clients.get_mut(&client).unwrap();
        c.leaders.clear();
        let region_id = c.op.as_ref().map_or(0, |p| p.region_id);
        c.regions.evict(region_id);
        self.attempt(client);
    }

    /// A client scan's rows in the answering region, read from the
    /// answer's engine snapshot while the answering store still runs (as a
    /// server reads them before it replies).
    fn read_now(&self, token: Token, resp: &CmdResponse) -> Option<OpResult> {
        let (client, _) = self.tokens.get(&token)?;
        let p = self.clients.get(client)?.op.as_ref()?;
        let OpKind::Scan { end, .. } = &self.history.ops[p.record].kind else { return None };
        let cursor = &p.scan.as_ref()?.cursor;
        let ok = response_error(&resp.resp).is_none();
        ok.then(|| OpResult::Rows(scan_part(cursor, end, resp)))
    }

    fn on_answer(&mut self, token: Token, resp: CmdResponse, read: Option<OpResult>) {
        if let Some(slot) = self.direct.get_mut(&token) {
            *slot = Some(resp);
            return;
        }
        let Some((client, store)) = self.tokens.remove(&token) else { return };
        if !self.current(client, token) {
            return;
        }
        self.mix(&[self.now, 5, client, token]);
        if let Some(err) = response_error(&resp.resp) {
            return self.on_region_error(client, token, err.clone());
        }
        let c = self.clients.get_mut(&client).unwrap();
        let p = c.op.as_mut().unwrap();
        c.leaders.insert(p.region_id, store);
        let kind = &self.history.ops[p.record].kind;
        if let (Some(scan), OpKind::Scan { end, .. }) = (p.scan.as_mut(), kind) {
            let region = snap_region(&resp).unwrap_or_default();
            if !region_holds(&region, &scan.cursor) {
                // The region split between the epoch check and the read:
                // the part read is not the one asked for. Look again.
                let region_id = p.region_id;
                c.regions.evict(region_id);
                return self.attempt(client);
            }
            if let Some(OpResult::Rows(rows)) = read {
                scan.rows.extend(rows);
            }
            let region_end = region.end_key;
            let finished = region_end.is_empty() || (!end.is_empty() && region_end >= *end);
            if !finished {
                // The rest of the range is in the next region.
                scan.cursor = region_end;
                return self.attempt(client);
            }
        }
        let p = c.op.take().unwrap();
        c.last_done = Some(p.record);
        let record = &mut self.history.ops[p.record];
        record.ret_us = Some(self.now);
        record.result = Some(match p.scan {
            Some(scan) => OpResult::Rows(scan.rows),
            None => read_result(&record.kind, &resp),
        });
    }

    /// A store refused `client`'s attempt: learn what the error says (a
    /// leader, the regions after a split), forget what it proves wrong,
    /// and try again, at once if it learned where to go, else after a
    /// back-off (an election may be on).
    fn on_region_error(&mut self, client: u64, token: Token, err: tinykv_proto::errorpb::Error) {
        let c = self.clients.get_mut(&client).unwrap();
        let region_id = c.op.as_ref().map_or(0, |p| p.region_id);
        if let Some(p) = c.op.as_mut() {
            p.refused += 1;
            p.last_refusal = Some(err.message.clone());
        }
        // Whatever the error, the client's view of the leaders is stale.
        c.leaders.clear();
        if let Some(nl) = &err.not_leader
            && let Some(leader) = nl.leader
        {
            c.leaders.insert(nl.region_id, leader.store_id);
            return self.attempt(client);
        }
        if let Some(stale) = &err.epoch_not_match {
            let known =
                c.regions.find_id(region_id).map_or(0, |r| r.region_epoch.map_or(0, |e| e.version));
            let newer = stale
                .current_regions
                .iter()
                .any(|r| r.region_epoch.is_some_and(|e| e.version > known));
            c.regions.evict(region_id);
            for r in &stale.current_regions {
                c.regions.insert(r.clone());
            }
            if newer {
                return self.attempt(client);
            }
        }
        // Any other refusal (key_not_in_region, region_not_found, a peer
        // that is not the one the client named after a conf change, ...)
        // means the cached region is wrong: ask the scheduler next time.
        c.regions.evict(region_id);
        // The wait ends like a timeout.
        let backoff = 10 * MS + self.rng.next_u64() % (40 * MS);
        self.schedule(backoff, Event::Timeout { client, token });
    }

    /// Runs `kind` as `client` until it succeeds (retrying through
    /// elections and faults), or panics after `deadline_us` of virtual
    /// time, saying what its attempts got (no answer, or which refusal).
    /// Returns the result.
    pub fn run_op(&mut self, client: u64, kind: OpKind, deadline_us: u64) -> OpResult {
        let what = kind.to_string();
        self.start_op(client, kind);
        let until = self.now + deadline_us;
        while !self.op_done(client) {
            if self.queue.peek().is_none_or(|Reverse(s)| s.at > until) {
                let p = self.clients[&client].op.as_ref().expect("the operation in flight");
                panic!(
                    "client {client}'s {what} did not succeed within {} ms of virtual time: {} \
                     (seed {})",
                    deadline_us / MS,
                    describe_attempts(p, self.cfg.request_timeout_us),
                    self.cfg.seed
                );
            }
            self.step();
        }
        self.last_result(client).expect("a finished operation has a result")
    }

    // ----- the TinyKV-style harness calls ------------------------------------

    fn must(&mut self, kind: OpKind) -> OpResult {
        self.run_op(HARNESS_CLIENT, kind, 20 * SEC)
    }

    /// Puts `key` = `value` through the cluster, retrying until it
    /// succeeds (panics, naming the seed, after 20 s of virtual time).
    pub fn must_put(&mut self, key: &[u8], value: &[u8]) {
        self.must(OpKind::Put { key: key.to_vec(), value: value.to_vec() });
    }

    /// Reads `key` through the cluster (linearizable: through the log).
    pub fn must_get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self.must(OpKind::Get { key: key.to_vec() }) {
            OpResult::Value(v) => v,
            other => panic!("a get answered {other:?}"),
        }
    }

    /// Deletes `key` through the cluster.
    pub fn must_delete(&mut self, key: &[u8]) {
        self.must(OpKind::Delete { key: key.to_vec() });
    }

    /// The pairs with keys in `[start, end)` (an empty end is unbounded).
    pub fn scan(&mut self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self.must(OpKind::Scan { start: start.to_vec(), end: end.to_vec() }) {
            OpResult::Rows(rows) => rows,
            other => panic!("a scan answered {other:?}"),
        }
    }
}

impl SimStore {
    /// The store's engines (new handles on its memory disks, or its fjall
    /// databases), which crash as the store's [`CrashPlan`] says.
    fn engines(&self) -> Engines {
        let (kv, raft): (Arc<dyn Engine>, Arc<dyn Engine>) = match &self.fjall {
            Some((kv, raft)) => (kv.clone(), raft.clone()),
            None => (Arc::new(self.kv_disk.open()), Arc::new(self.raft_disk.open())),
        };
        let wrap = |inner, side| -> Arc<dyn Engine> {
            Arc::new(CrashingEngine { inner, side, plan: self.crash.clone() })
        };
        Engines::new(wrap(kv, EngineSide::Kv), wrap(raft, EngineSide::Raft))
    }

    /// The file system for the store's snapshot files (its [`MemoryFs`], or
    /// the real one with fjall), which crashes as the store's
    /// [`CrashPlan`] says.
    fn snapshot_fs(&self) -> Arc<dyn FileSystem> {
        let inner: Arc<dyn FileSystem> = match &self.snap_fs {
            Some(fs) => Arc::new(fs.clone()),
            None => Arc::new(RealFs),
        };
        Arc::new(CrashingFs { inner, plan: self.crash.clone() })
    }
}

/// An engine whose write fails as if the power went out in the middle of
/// it, when its countdown reaches that write; once the power is out,
/// every write fails. (The driver then crashes the disks.)
#[derive(Debug)]
struct CrashingEngine {
    inner: Arc<dyn Engine>,
    side: EngineSide,
    plan: CrashPlan,
}

impl Engine for CrashingEngine {
    fn write(&self, batch: WriteBatch) -> tinykv_engine::Result<()> {
        let side_out = CrashPlan::tick_down(self.plan.countdown(self.side));
        let any_out = CrashPlan::tick_down(&self.plan.any);
        if side_out || any_out {
            self.plan.down.store(true, Ordering::Relaxed);
        }
        if self.plan.down.load(Ordering::Relaxed) {
            return Err(tinykv_engine::Error::Engine(CRASH_MARK.into()));
        }
        let snapshot = self.side == EngineSide::Kv && stores_snapshot(&batch);
        let mut after_gc = None;
        if self.side == EngineSide::Raft && deletes_log_entries(&batch) {
            let mut at = self.plan.at_log_gc.lock().expect("plan");
            if *at == Some(0) {
                *at = None;
                self.plan.down.store(true, Ordering::Relaxed);
                return Err(tinykv_engine::Error::Engine(CRASH_MARK.into()));
            }
            after_gc = at.take();
        }
        self.inner.write(batch)?;
        if let Some(n) = after_gc {
            self.plan.raft.store(n, Ordering::Relaxed);
        }
        if snapshot && let Some((side, n)) = self.plan.after_snapshot.lock().expect("plan").take() {
            self.plan.countdown(side).store(n, Ordering::Relaxed);
        }
        Ok(())
    }

    fn snapshot(&self) -> Box<dyn tinykv_engine::Snapshot> {
        self.inner.snapshot()
    }

    fn sync(&self) -> tinykv_engine::Result<()> {
        if self.plan.down.load(Ordering::Relaxed) {
            return Err(tinykv_engine::Error::Engine(CRASH_MARK.into()));
        }
        self.inner.sync()
    }

    fn get(&self, cf: Cf, key: &[u8]) -> tinykv_engine::Result<Option<Vec<u8>>> {
        self.inner.get(cf, key)
    }
}

/// The error text of a write interrupted by a simulated crash.
const CRASH_MARK: &str = "simulated power loss during the write";

fn power_is_out() -> std::io::Error {
    std::io::Error::other(CRASH_MARK)
}

/// A file system whose sync fails as if the power went out in the middle
/// of it, when the store's [`SnapIoPlan`] says so; once the power is out
/// (here or in an engine), every change fails. Reads pass through.
#[derive(Debug)]
struct CrashingFs {
    inner: Arc<dyn FileSystem>,
    plan: CrashPlan,
}

impl CrashingFs {
    fn check(plan: &CrashPlan, sync: bool) -> std::io::Result<()> {
        if (sync && plan.on_snapshot_sync()) || plan.down.load(Ordering::Relaxed) {
            return Err(power_is_out());
        }
        Ok(())
    }
}

/// A file of a [`CrashingFs`].
#[derive(Debug)]
struct CrashingFile {
    inner: Box<dyn WritableFile>,
    plan: CrashPlan,
}

impl std::io::Write for CrashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CrashingFs::check(&self.plan, false)?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        CrashingFs::check(&self.plan, false)?;
        self.inner.flush()
    }
}

impl WritableFile for CrashingFile {
    fn sync(&mut self) -> std::io::Result<()> {
        CrashingFs::check(&self.plan, true)?;
        self.inner.sync()
    }
}

impl FileSystem for CrashingFs {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        CrashingFs::check(&self.plan, false)?;
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn create(&self, path: &std::path::Path) -> std::io::Result<Box<dyn WritableFile>> {
        CrashingFs::check(&self.plan, false)?;
        let inner = self.inner.create(path)?;
        Ok(Box::new(CrashingFile { inner, plan: self.plan.clone() }))
    }

    fn open(&self, path: &std::path::Path) -> std::io::Result<Box<dyn ReadableFile>> {
        self.inner.open(path)
    }

    fn exists(&self, path: &std::path::Path) -> bool {
        self.inner.exists(path)
    }

    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        CrashingFs::check(&self.plan, false)?;
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        CrashingFs::check(&self.plan, false)?;
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        CrashingFs::check(&self.plan, true)?;
        self.inner.sync_dir(dir)
    }
}

/// An ordinary crash of snapshot files: each unsynced directory change
/// reached the disk or not, each file a random prefix of its unsynced
/// bytes (all drawn from the simulation's RNG).
struct RandomLoss<'a>(&'a mut Rng);

impl CrashPolicy for RandomLoss<'_> {
    fn keeps_change(&mut self, _path: &std::path::Path) -> bool {
        self.0.range(0, 2) == 1
    }

    fn kept_bytes(&mut self, _path: &std::path::Path, unsynced: u64) -> u64 {
        self.0.next_u64() % (unsynced + 1)
    }
}

/// [`FsCrash::Tear`]: every directory change survives, and each file keeps
/// a random part of its unsynced bytes, at least one and not all of them
/// when it has two or more.
struct TearFiles<'a>(&'a mut Rng);

impl CrashPolicy for TearFiles<'_> {
    fn keeps_change(&mut self, _path: &std::path::Path) -> bool {
        true
    }

    fn kept_bytes(&mut self, _path: &std::path::Path, unsynced: u64) -> u64 {
        if unsynced < 2 { 0 } else { 1 + self.0.next_u64() % (unsynced - 1) }
    }
}

/// What a crash did to snapshot files, for a fault line ("" if nothing).
fn describe_file_loss(report: &CrashReport) -> String {
    if report.lost_changes == 0 && report.lost_bytes == 0 {
        return String::new();
    }
    let mut out = format!(
        "; snapshot files lost {} unsynced directory changes and {} unsynced bytes",
        report.lost_changes, report.lost_bytes
    );
    if !report.torn.is_empty() {
        let names: Vec<_> = report.torn.iter().filter_map(|p| p.file_name()?.to_str()).collect();
        out += &format!(", torn: {}", names.join(", "));
    }
    out
}

/// The snapshot a snapshot message carries.
fn snapshot_key(msg: &RaftMessage) -> Option<SnapKey> {
    let meta = msg.message.as_ref()?.snapshot.as_ref()?.metadata.as_ref()?;
    Some(SnapKey::new(msg.region_id, meta.term, meta.index))
}

/// The file list of the snapshot a snapshot message carries (empty if it
/// does not decode: the receiver then rejects it).
fn snapshot_meta(msg: &RaftMessage) -> tinykv_proto::raft_serverpb::SnapshotMeta {
    let data = msg.message.as_ref().and_then(|m| m.snapshot.as_ref()).map(|s| s.data.as_slice());
    data.and_then(|d| RaftSnapshotData::decode(d).ok()).and_then(|d| d.meta).unwrap_or_default()
}

/// All the bytes of generated snapshot `key`'s files.
fn read_snapshot(snaps: &SnapManager, key: SnapKey) -> Result<Vec<u8>, String> {
    let mut sender = snaps.open_send(key).map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(usize::try_from(sender.total_size()).unwrap_or(0));
    while let Some(chunk) = sender.next_chunk(64 * 1024).map_err(|e| e.to_string())? {
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// The command for `kind` (at `key`: where a scan's next part starts) to
/// `store`, in `region`: a header naming the region, the store's peer and
/// the region's epoch, and one request.
fn command_in(region: &metapb::Region, store: u64, kind: &OpKind, key: &[u8]) -> RaftCmdRequest {
    let _ = key;
    let peer = region.peers.iter().find(|p| p.store_id == store).copied();
    let header = RaftRequestHeader {
        region_id: region.id,
        peer,
        region_epoch: region.region_epoch,
        term: 0,
    };
    let cf = Cf::Default.name().to_string();
    let request = match kind {
        OpKind::Put { key, value } => Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest { cf, key: key.clone(), value: value.clone() }),
            ..Default::default()
        },
        OpKind::Get { key } => Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest { cf, key: key.clone() }),
            ..Default::default()
        },
        OpKind::Delete { key } => Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest { cf, key: key.clone() }),
            ..Default::default()
        },
        OpKind::Scan { .. } => Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        },
    };
    RaftCmdRequest { header: Some(header), requests: vec![request], admin_request: None }
}

/// What the attempts of an operation that never succeeded got, for its
/// failure message.
fn describe_attempts(p: &Pending, timeout_us: u64) -> String {
    let (unanswered, refused) = (p.unanswered, p.refused);
    let mut s = format!(
        "{} attempts, {unanswered} got no answer within the client's {} ms timeout, {refused} \
         were refused",
        p.attempts,
        timeout_us / MS
    );
    if let Some(last) = &p.last_refusal {
        s.push_str(&format!(" (the last with \"{last}\")"));
    }
    s.push_str(match (unanswered, refused) {
        (0, _) => ": the stores answer, but never with success (no leader elected?)",
        (_, 0) => ": no store answered (all down or cut off, or the leader never answers?)",
        _ => "",
    });
    s
}

/// Whether `key` lies in `region`'s range.
fn region_holds(region: &metapb::Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key && (region.end_key.is_empty() || key < &region.end_key[..])
}

/// The region a `Snap` answer was read in.
fn snap_region(resp: &CmdResponse) -> Option<metapb::Region> {
    resp.resp.responses.first()?.snap.as_ref()?.region.clone()
}

/// The rows of a scan's part in the answering region: from `cursor` to
/// `end` or the region's end, whichever comes first.
fn scan_part(cursor: &[u8], end: &[u8], resp: &CmdResponse) -> Vec<(Vec<u8>, Vec<u8>)> {
    let snap = resp.snap.as_ref().unwrap_or_else(|| {
        panic!(
            "the answer to a scan (a Snap command) carries no snapshot: was it meant for another \
             command? {:?}",
            resp.resp
        )
    });
    let region_end = snap_region(resp).map(|r| r.end_key).unwrap_or_default();
    let stop = match (end.is_empty(), region_end.is_empty()) {
        (true, true) => None,
        (true, false) => Some(region_end),
        (false, true) => Some(end.to_vec()),
        (false, false) => Some(end.to_vec().min(region_end)),
    };
    snap.iter(Cf::Default, cursor, stop.as_deref())
        .map(|kv| kv.expect("reading a snapshot"))
        .collect()
}

/// The key whose region an operation goes to.
fn op_key(kind: &OpKind) -> &[u8] {
    match kind {
        OpKind::Put { key, .. } | OpKind::Get { key } | OpKind::Delete { key } => key,
        OpKind::Scan { start, .. } => start,
    }
}

/// What a successful answer means for `kind`.
fn read_result(kind: &OpKind, resp: &CmdResponse) -> OpResult {
    match kind {
        OpKind::Put { .. } | OpKind::Delete { .. } => OpResult::Done,
        OpKind::Get { .. } => {
            let value =
                resp.resp.responses.first().and_then(|r| r.get.as_ref()).map(|g| g.value.clone());
            OpResult::Value(value.filter(|v| !v.is_empty()))
        }
        OpKind::Scan { start, end } => OpResult::Rows(scan_part(start, end, resp)),
    }
}
