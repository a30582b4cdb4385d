//! Property tests: seeded random runs of whole clusters that check the Raft
//! safety properties after every step.
//!
//! A run is a few hundred virtual ticks of a 3- or 5-node cluster on a
//! hostile network: every message is delayed by 0 to 3 ticks (so messages
//! are reordered), some are dropped and some are delivered twice, and the
//! network is partitioned (into two sides, around one node, or one way
//! only) and healed again. Depending on the lab, clients propose entries,
//! nodes crash and restart from their storage, compact their logs, change
//! the membership and transfer leadership. Everything random comes from
//! one seeded generator, so a seed replays exactly.
//!
//! After every delivered message and every tick the run checks:
//! - **election safety**: at most one leader per term, ever;
//! - **one vote per term**: a node never grants its vote to two
//!   candidates in one term (even across a crash), and its persisted term
//!   never goes down;
//! - **log matching**: two entries with the same index and term hold the
//!   same data and follow entries of the same term (so, by induction, the
//!   logs are identical up to there);
//! - **leader completeness**: a leader's log holds every entry committed
//!   in an earlier term;
//! - **state machine safety**: no two nodes apply different entries at one
//!   index, and each node applies indexes in order, once.
//!
//! Then the faults heal, and the run checks **liveness**: one leader
//! emerges and a last proposal is applied by every member.
//!
//! `TINYKV_SEED=<n>` runs that seed alone; otherwise a test runs
//! [`SEEDS`] seeds. A failure names the seed, the property, what happened
//! in the last steps, and the replay command. `CHAOS_TRACE=1` also prints
//! every step of the run as it happens.
//!
//! # Budgets
//!
//! A run never waits for something that may not happen: everything it
//! waits for has a budget counted in steps (never the wall clock), and
//! running out of it is a failure that names what did not happen, so a
//! buggy node fails in well under a second instead of hanging until the
//! runner kills the test:
//! - [`MAX_READY_ROUNDS`] `Ready`/`advance` rounds after one step: a node
//!   whose `advance` does not record what its `Ready` handed out (entries
//!   stable, committed entries applied) has a `Ready` forever;
//! - [`MAX_DELIVERIES_PER_TICK`] deliveries in one tick: a message storm;
//! - [`HEAL_TICKS`] ticks after the heal to elect a leader, then to apply
//!   the last proposal everywhere (the message says which did not happen).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use raft::{Config, MemoryStorage, Raft, RawNode, Rng, StateRole, Storage};

/// How many seeds a property test runs when `TINYKV_SEED` is unset.
pub const SEEDS: u64 = 200;

/// Ticks of faults before the heal.
const CHAOS_TICKS: u64 = 300;
/// Ticks the cluster gets, once healed, to elect a leader and apply the
/// last proposal everywhere.
pub const HEAL_TICKS: u64 = 300;
/// Where the log of a cluster with membership changes starts (after a
/// bootstrap snapshot).
const BOOTSTRAP_INDEX: u64 = 5;
/// A node's election timeout, in ticks.
const ELECTION_TICK: usize = 10;
/// Deliveries within one tick beyond which the network is said to storm.
pub const MAX_DELIVERIES_PER_TICK: usize = 20_000;
/// `Ready`/`advance` rounds a node may need after one step (a tick, a
/// message, a proposal) before it has nothing left to report. The
/// reference needs at most 2 (a `Ready` with a snapshot, then one with the
/// committed entries after it); more means `advance` forgets something.
pub const MAX_READY_ROUNDS: usize = 10;

/// A deliberate break of the run, for the harness's own tests: they check
/// that a stuck run fails fast and says why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sabotage {
    /// An honest run.
    #[default]
    None,
    /// Every message is lost, healed or not: no leader can be elected.
    DropEverything,
    /// The application hands `advance` its `Ready` without the entries, as
    /// if `advance` skipped marking them stable: the node's `Ready` never
    /// empties.
    AdvanceWithoutEntries,
}

/// What a run does besides electing leaders. Each lab turns on what it
/// builds; the earlier labs' features stay on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// Drive nodes through `RawNode` and its `Ready` (lab 2ac); otherwise
    /// bare `Raft`s whose messages are taken from `msgs`.
    pub raw_node: bool,
    /// Clients propose entries, which are committed and applied (lab 2ab).
    pub proposals: bool,
    /// Nodes crash and restart from their storage (needs `raw_node`).
    pub restarts: bool,
    /// Nodes compact their logs, so laggards need snapshots (lab 2c).
    pub compaction: bool,
    /// Members are added and removed (lab 3a).
    pub membership: bool,
    /// Leaders are asked to hand over to another member (lab 3a).
    pub transfers: bool,
    /// Appends carry at most 1 to 3 entries and at most 1 or 2 may be
    /// unanswered (`max_entries_per_msg`, `max_inflight_msgs`, drawn from
    /// the seed), so a pipelining leader's window is full most of the time.
    pub small_windows: bool,
}

/// Totals over the seeds of one test, to show the runs did something.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub runs: u64,
    pub terms_with_leader: u64,
    pub entries_applied: u64,
    pub restarts: u64,
    pub snapshots_applied: u64,
    pub conf_changes_applied: u64,
    pub leader_changes: u64,
    pub messages_delivered: u64,
    /// The fingerprint of the run (of the last seed, for one seed).
    pub digest: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.runs += o.runs;
        self.terms_with_leader += o.terms_with_leader;
        self.entries_applied += o.entries_applied;
        self.restarts += o.restarts;
        self.snapshots_applied += o.snapshots_applied;
        self.conf_changes_applied += o.conf_changes_applied;
        self.leader_changes += o.leader_changes;
        self.messages_delivered += o.messages_delivered;
        self.digest = o.digest;
    }
}

/// Runs the property test `test` of `lab` over its seeds and returns the
/// totals. Panics, naming the seed and the replay command, on the first
/// seed that breaks a property (or panics inside raft).
pub fn check_seeds(test: &str, lab: &str, features: Features) -> Stats {
    check_seeds_sabotaged(test, lab, features, Sabotage::None)
}

/// [`check_seeds`] with a deliberate break (the harness's own tests).
pub fn check_seeds_sabotaged(
    test: &str,
    lab: &str,
    features: Features,
    sabotage: Sabotage,
) -> Stats {
    let seeds: Vec<u64> = match std::env::var("TINYKV_SEED") {
        Ok(s) => {
            vec![s.trim().parse().unwrap_or_else(|_| panic!("TINYKV_SEED={s:?} is not a u64"))]
        }
        Err(_) => (1..=SEEDS).collect(),
    };
    let mut total = Stats::default();
    for &seed in &seeds {
        let run = catch_unwind(AssertUnwindSafe(|| Sim::new(seed, features, sabotage).run()));
        match run {
            Ok(stats) => total.add(&stats),
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("(a panic without a message)");
                panic!(
                    "{test}: seed {seed} of {} failed (TINYKV_SEED={seed}):\n{what}\n\n\
                     Replay just this seed:\n  make project{lab} TEST={test} SEED={seed}\n  \
                     TINYKV_SEED={seed} cargo test -p raft --test project{lab} {test}\n\
                     See docs/src/lab2a-raft.md, \"Property tests\".",
                    seeds.len()
                );
            }
        }
    }
    eprintln!("{test}: {} seeds passed: {total:?}", seeds.len());
    total
}

/// Runs one seed and returns its stats (with the run's digest); panics as
/// [`check_seeds`] does.
pub fn run_one(seed: u64, features: Features) -> Stats {
    Sim::new(seed, features, Sabotage::None).run()
}

// ----- the state machine ------------------------------------------------------

/// What a node applied, index -> (term, data): the replicated state machine.
type Applied = BTreeMap<u64, (u64, Vec<u8>)>;

/// A snapshot's data: the applied entries, encoded as the entries of a
/// message (a convenient protobuf list).
fn encode_state(applied: &Applied) -> Vec<u8> {
    let entries = applied
        .iter()
        .map(|(&index, (term, data))| Entry {
            index,
            term: *term,
            data: data.clone(),
            ..Entry::default()
        })
        .collect();
    Message { entries, ..Message::default() }.encode_to_vec()
}

fn decode_state(data: &[u8]) -> Applied {
    let m = Message::decode(data).expect("harness: a snapshot's data does not decode");
    m.entries.into_iter().map(|e| (e.index, (e.term, e.data))).collect()
}

// ----- nodes ------------------------------------------------------------------

/// What a `Ready` held, to say what a node keeps handing out again.
#[derive(Debug, Clone, PartialEq)]
struct ReadyDigest {
    /// (index, term) of `entries`.
    entries: Vec<(u64, u64)>,
    /// The indexes of `committed_entries`.
    committed: Vec<u64>,
    hard_state: Option<HardState>,
    soft_state: bool,
    snapshot_index: u64,
    messages: usize,
}

impl ReadyDigest {
    fn of(rd: &raft::Ready) -> ReadyDigest {
        ReadyDigest {
            entries: rd.entries.iter().map(|e| (e.index, e.term)).collect(),
            committed: rd.committed_entries.iter().map(|e| e.index).collect(),
            hard_state: rd.hard_state,
            soft_state: rd.soft_state.is_some(),
            snapshot_index: rd.snapshot.metadata.as_ref().map_or(0, |m| m.index),
            messages: rd.messages.len(),
        }
    }

    /// What `self`, a `Ready` taken after `prev` was advanced, hands out
    /// again.
    fn repeats(&self, prev: &ReadyDigest) -> String {
        let mut again = Vec::new();
        let span = |v: &[(u64, u64)]| match (v.first(), v.last()) {
            (Some(a), Some(b)) if a == b => format!("({}, term {})", a.0, a.1),
            (Some(a), Some(b)) => format!("({}, term {})..=({}, term {})", a.0, a.1, b.0, b.1),
            _ => String::new(),
        };
        if !self.entries.is_empty() && self.entries.first() == prev.entries.first() {
            again.push(format!(
                "the entries {} again (not marked stable on advance?)",
                span(&self.entries)
            ));
        }
        if !self.committed.is_empty() && self.committed.first() == prev.committed.first() {
            again.push(format!(
                "the committed entries {}..={} again (not marked applied on advance?)",
                self.committed[0],
                self.committed[self.committed.len() - 1]
            ));
        }
        if let Some(hs) = self.hard_state
            && self.hard_state == prev.hard_state
        {
            again.push(format!("the hard state {hs:?} again"));
        }
        if self.snapshot_index > 0 && self.snapshot_index == prev.snapshot_index {
            again.push(format!("the snapshot at index {} again", self.snapshot_index));
        }
        if self.soft_state && prev.soft_state {
            again.push("a soft state again".to_string());
        }
        if again.is_empty() {
            again.push(format!("a Ready of {self:?} after one of {prev:?}"));
        }
        format!("its Ready holds {}", again.join(", "))
    }
}

enum Driver {
    Bare(Box<Raft<MemoryStorage>>),
    Raw(Box<RawNode<MemoryStorage>>),
}

struct Node {
    driver: Option<Driver>,
    /// Survives crashes.
    store: MemoryStorage,
    /// The state machine; durable, updated atomically with `applied`.
    state: Applied,
    applied: u64,
    /// The commit index last seen (it must not go down while the node is up).
    committed: u64,
    /// The term of each log entry as last checked (index -> term; index 0
    /// unused): what changed since is checked after every step.
    seen_terms: Vec<u64>,
    /// The highest term the node has been seen in (across crashes).
    term: u64,
    /// Ticks left before a crashed node restarts.
    down_for: u64,
}

impl Node {
    fn raft(&self) -> Option<&Raft<MemoryStorage>> {
        match self.driver.as_ref()? {
            Driver::Bare(r) => Some(r),
            Driver::Raw(n) => Some(&n.raft),
        }
    }
}

// ----- the network --------------------------------------------------------------

struct InFlight {
    at: u64,
    msg: Message,
}

/// How the network is cut.
#[derive(Debug, Clone, PartialEq)]
enum Partition {
    None,
    /// Messages cross only within a side.
    Split(BTreeSet<u64>),
    /// Messages from `.0` to `.1` are dropped (the other way works).
    OneWay(u64, u64),
}

// ----- the simulation ------------------------------------------------------------

struct Sim {
    seed: u64,
    f: Features,
    sabotage: Sabotage,
    rng: Rng,
    now: u64,
    nodes: BTreeMap<u64, Node>,
    /// Removed members: their nodes are destroyed for good.
    destroyed: BTreeSet<u64>,
    next_id: u64,
    flight: Vec<InFlight>,
    partition: Partition,
    drop_percent: usize,
    dup_percent: usize,
    proposed: u64,
    /// The last steps, for the failure message.
    recent: Vec<String>,
    stats: Stats,

    // What the checks remember.
    leaders: BTreeMap<u64, u64>,
    votes: BTreeMap<(u64, u64), u64>,
    persisted: BTreeMap<u64, HardState>,
    /// (index, term) -> (data, type, term of the entry before).
    entries: BTreeMap<(u64, u64), (Vec<u8>, i32, u64)>,
    /// index -> (term, term of the node that first saw it committed).
    committed: BTreeMap<u64, (u64, u64)>,
    /// Every applied entry: index -> (term, data).
    applied: Applied,
    /// The last leader seen, to count leader changes.
    last_leader: u64,
    /// An FNV-1a digest of every step noted: the run's fingerprint.
    digest: u64,
}

impl Sim {
    fn new(seed: u64, f: Features, sabotage: Sabotage) -> Sim {
        assert!(!f.restarts || f.raw_node, "harness: restarts need RawNode");
        let mut rng = Rng::new(seed, 0xC4A05);
        let n = if rng.range(0, 2) == 0 { 3 } else { 5 };
        let mut sim = Sim {
            seed,
            f,
            sabotage,
            rng,
            now: 0,
            nodes: BTreeMap::new(),
            destroyed: BTreeSet::new(),
            next_id: n + 1,
            flight: Vec::new(),
            partition: Partition::None,
            drop_percent: 5,
            dup_percent: 2,
            proposed: 0,
            recent: Vec::new(),
            stats: Stats { runs: 1, ..Stats::default() },
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            persisted: BTreeMap::new(),
            entries: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied: Applied::new(),
            last_leader: 0,
            digest: 0xCBF2_9CE4_8422_2325,
        };
        let peers: Vec<u64> = (1..=n).collect();
        for &id in &peers {
            let store = sim.bootstrap_store(&peers);
            sim.add_node(id, store);
        }
        sim
    }

    /// The storage a founding member starts from. With membership changes
    /// it holds a snapshot at index 5 (as the raftstore bootstraps a
    /// region): a node added later starts empty and must receive a
    /// snapshot, because the founding membership is in no log entry. (Had
    /// it replayed the log from index 1, it would have built its membership
    /// from the `AddNode` entries alone, itself included, and could lead
    /// a cluster of one.)
    fn bootstrap_store(&self, peers: &[u64]) -> MemoryStorage {
        if !self.f.membership {
            return MemoryStorage::new_with_conf_state(peers.to_vec());
        }
        let store = MemoryStorage::new();
        let meta = raft::eraftpb::SnapshotMetadata {
            conf_state: Some(raft::eraftpb::ConfState { nodes: peers.to_vec() }),
            index: BOOTSTRAP_INDEX,
            term: BOOTSTRAP_INDEX,
        };
        let snap = Snapshot { data: encode_state(&Applied::new()), metadata: Some(meta) };
        store.apply_snapshot(snap).expect("bootstrap snapshot");
        store
    }

    fn config(&self, id: u64, applied: u64) -> Config {
        let mut c = Config::new(id, vec![]);
        c.election_tick = ELECTION_TICK;
        c.heartbeat_tick = 1;
        c.applied = applied;
        c.seed = self.seed ^ self.now.wrapping_mul(0x9E37);
        if self.f.small_windows {
            c.max_entries_per_msg = 1 + self.seed % 3;
            c.max_inflight_msgs = 1 + (self.seed / 3 % 2) as usize;
        }
        c
    }

    fn start(&self, id: u64, store: &MemoryStorage, applied: u64) -> Driver {
        let c = self.config(id, applied);
        if self.f.raw_node {
            Driver::Raw(Box::new(RawNode::new(&c, store.clone()).expect("RawNode::new")))
        } else {
            Driver::Bare(Box::new(Raft::new(&c, store.clone()).expect("Raft::new")))
        }
    }

    fn add_node(&mut self, id: u64, store: MemoryStorage) {
        let applied = store.rl().hard_state().commit;
        let driver = self.start(id, &store, applied);
        let node = Node {
            driver: Some(driver),
            store,
            state: Applied::new(),
            applied,
            committed: 0,
            seen_terms: vec![0],
            term: 0,
            down_for: 0,
        };
        self.nodes.insert(id, node);
        self.after_step(id);
    }

    // ----- failure reporting -----

    fn note(&mut self, what: String) {
        for b in what.bytes().chain(self.now.to_le_bytes()) {
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        if self.recent.len() == 40 {
            self.recent.remove(0);
        }
        if std::env::var_os("CHAOS_TRACE").is_some() {
            eprintln!("t={} {what}", self.now);
        }
        self.recent.push(format!("t={} {what}", self.now));
    }

    fn summary(&self) -> String {
        let mut s = String::new();
        for (id, n) in &self.nodes {
            match n.raft() {
                Some(r) => {
                    let _ = write!(
                        s,
                        "\n  node {id}: {:?} term {} vote {} lead {} last {} committed {} applied {}",
                        r.state,
                        r.term,
                        r.vote,
                        r.lead,
                        r.raft_log.last_index(),
                        r.raft_log.committed,
                        n.applied
                    );
                }
                None => {
                    let _ = write!(s, "\n  node {id}: down for {} more ticks", n.down_for);
                }
            }
        }
        s
    }

    fn fail(&self, property: &str, what: String) -> ! {
        let sabotage = match self.sabotage {
            Sabotage::None => String::new(),
            s => format!(" (a sabotaged run: {s:?})"),
        };
        panic!(
            "{property} violated at tick {}{sabotage}: {what}\nnodes:{}\nlast steps:\n  {}",
            self.now,
            self.summary(),
            self.recent.join("\n  ")
        );
    }

    // ----- driving one node -----

    fn driver(&mut self, id: u64) -> Option<&mut Driver> {
        self.nodes.get_mut(&id)?.driver.as_mut()
    }

    /// Collects what node `id` produced: messages, persisted state, applied
    /// entries. Called after anything happens to the node.
    fn after_step(&mut self, id: u64) {
        let mut out = Vec::new();
        let mut conf_changes = Vec::new();
        match self.driver(id) {
            None => return,
            Some(Driver::Bare(r)) => out = std::mem::take(&mut r.msgs),
            Some(Driver::Raw(_)) => self.handle_readies(id, &mut out, &mut conf_changes),
        }
        if let Some(Driver::Bare(_)) = self.driver(id)
            && self.f.proposals
        {
            self.apply_bare(id, &mut conf_changes);
        }
        let mut granted_vote = false;
        for m in out {
            granted_vote |= m.msg_type() == MessageType::MsgRequestVoteResponse && !m.reject;
            self.send(m);
        }
        self.check_node(id);
        for cc in conf_changes {
            self.on_conf_change_applied(cc);
        }
        // A node that just granted its vote sometimes crashes at once and
        // comes back within the election: had the vote not been persisted,
        // it could vote again in the same term.
        if granted_vote && self.f.restarts && self.rng.range(0, 100) < 20 {
            let down_for = 1 + self.rng.range(0, 3) as u64;
            self.crash(id, down_for);
        }
    }

    /// Handles node `id`'s `Ready`s until it has none, within
    /// [`MAX_READY_ROUNDS`] rounds.
    fn handle_readies(&mut self, id: u64, out: &mut Vec<Message>, ccs: &mut Vec<ConfChange>) {
        let mut last: Option<ReadyDigest> = None;
        for _ in 0..MAX_READY_ROUNDS {
            let Some(digest) = self.handle_ready(id, out, ccs) else { return };
            last = Some(digest);
        }
        let Some(Driver::Raw(node)) = self.driver(id) else { return };
        if !node.has_ready() {
            return;
        }
        let again = ReadyDigest::of(&node.ready());
        let last = last.expect("MAX_READY_ROUNDS > 0");
        self.fail(
            "Ready/advance makes progress",
            format!(
                "node {id} still has a Ready after {MAX_READY_ROUNDS} Ready/advance rounds with \
                 nothing new stepped in: {}. {}",
                again.repeats(&last),
                "advance must record what the Ready handed out (entries persisted up to the last \
                 one, committed entries applied up to the last one, the hard state, the \
                 snapshot); see docs/src/lab2a-raft.md, \"Part C (2ac): the Ready contract\""
            ),
        );
    }

    /// Handles one `Ready` of a `RawNode` as its contract says; what it
    /// held, or None if there was none.
    fn handle_ready(
        &mut self,
        id: u64,
        out: &mut Vec<Message>,
        ccs: &mut Vec<ConfChange>,
    ) -> Option<ReadyDigest> {
        let Some(Driver::Raw(node)) = self.driver(id) else { return None };
        if !node.has_ready() {
            return None;
        }
        let mut rd = node.ready();
        let digest = ReadyDigest::of(&rd);
        if let Some(hs) = rd.hard_state {
            self.check_hard_state(id, hs);
            self.nodes[&id].store.set_hard_state(hs);
        }
        let snap_index = rd.snapshot.metadata.as_ref().map_or(0, |m| m.index);
        if snap_index > 0 {
            self.install_snapshot(id, &rd.snapshot);
        }
        self.check_new_entries(id, &rd.entries);
        self.nodes[&id].store.append(&rd.entries).expect("append to MemoryStorage");
        out.extend(rd.messages.iter().cloned());
        for e in &rd.committed_entries {
            if let Some(cc) = self.apply(id, e) {
                let Some(Driver::Raw(node)) = self.driver(id) else { unreachable!() };
                let cs = node.apply_conf_change(&cc);
                self.nodes[&id].store.wl().set_conf_state(cs);
                ccs.push(cc);
            }
        }
        if self.sabotage == Sabotage::AdvanceWithoutEntries {
            rd.entries.clear();
        }
        let Some(Driver::Raw(node)) = self.driver(id) else { unreachable!() };
        node.advance(rd);
        Some(digest)
    }

    /// Applies a bare node's newly committed entries.
    fn apply_bare(&mut self, id: u64, ccs: &mut Vec<ConfChange>) {
        let Some(Driver::Bare(r)) = self.driver(id) else { return };
        let ents = r.raft_log.next_committed_entries();
        let Some(last) = ents.last().map(|e| e.index) else { return };
        for e in &ents {
            if let Some(cc) = self.apply(id, e) {
                ccs.push(cc);
            }
        }
        let Some(Driver::Bare(r)) = self.driver(id) else { unreachable!() };
        r.raft_log.applied_to(last);
    }

    /// Applies one committed entry to node `id`'s state machine (state
    /// machine safety), returning its conf change, if it is one.
    fn apply(&mut self, id: u64, e: &Entry) -> Option<ConfChange> {
        let node = &self.nodes[&id];
        if e.index != node.applied + 1 {
            self.fail(
                "state machine safety",
                format!(
                    "node {id} applied index {} right after index {} (applied out of order, twice, or with a gap)",
                    e.index, node.applied
                ),
            );
        }
        self.check_applied_entry(id, e.index, e.term, &e.data);
        let node = self.nodes.get_mut(&id).unwrap();
        node.applied = e.index;
        node.state.insert(e.index, (e.term, e.data.clone()));
        self.stats.entries_applied += 1;
        if e.entry_type() != EntryType::EntryConfChange {
            return None;
        }
        let cc = ConfChange::decode(e.data.as_slice()).expect("a conf change entry decodes");
        self.stats.conf_changes_applied += 1;
        self.note(format!(
            "node {id} applied {:?} {} at index {}",
            cc.change_type(),
            cc.node_id,
            e.index
        ));
        Some(cc)
    }

    fn install_snapshot(&mut self, id: u64, snap: &Snapshot) {
        let meta = snap.metadata.clone().unwrap_or_default();
        let state = decode_state(&snap.data);
        for (&index, (term, data)) in &state {
            self.check_applied_entry(id, index, *term, data);
        }
        if meta.index < self.nodes[&id].applied {
            self.fail(
                "state machine safety",
                format!(
                    "node {id} was handed a snapshot at index {} after applying up to {}: \
                     it would go back in time",
                    meta.index, self.nodes[&id].applied
                ),
            );
        }
        let node = self.nodes.get_mut(&id).unwrap();
        node.store.apply_snapshot(snap.clone()).expect("MemoryStorage::apply_snapshot");
        node.state = state;
        node.applied = meta.index;
        self.stats.snapshots_applied += 1;
        self.note(format!(
            "node {id} applied a snapshot at index {} term {}",
            meta.index, meta.term
        ));
    }

    fn on_conf_change_applied(&mut self, cc: ConfChange) {
        let id = cc.node_id;
        match cc.change_type() {
            ConfChangeType::AddNode => {
                if !self.nodes.contains_key(&id) && !self.destroyed.contains(&id) {
                    self.note(format!("node {id} created (added)"));
                    self.add_node(id, MemoryStorage::new());
                }
            }
            ConfChangeType::RemoveNode => {
                if self.nodes.remove(&id).is_some() {
                    self.note(format!("node {id} destroyed (removed)"));
                    self.destroyed.insert(id);
                }
            }
        }
    }

    // ----- the network -----

    fn send(&mut self, m: Message) {
        // Without proposals (lab 2aa) the leader's side of replication
        // (lab 2ab's `handle_append_response`) is left out, as in the
        // election tests: a student who has done 2aa alone passes 2aa.
        if !self.f.proposals && m.msg_type() == MessageType::MsgAppendResponse {
            return;
        }
        if m.msg_type() == MessageType::MsgRequestVoteResponse && !m.reject {
            let granted = *self.votes.entry((m.from, m.term)).or_insert(m.to);
            if granted != m.to {
                self.fail(
                    "one vote per term",
                    format!(
                        "node {} granted its vote in term {} to node {granted}, then to node {}",
                        m.from, m.term, m.to
                    ),
                );
            }
        }
        let delay = self.rng.range(0, 4) as u64;
        let copies = if self.rng.range(0, 100) < self.dup_percent { 2 } else { 1 };
        for _ in 0..copies {
            self.flight.push(InFlight { at: self.now + delay, msg: m.clone() });
        }
    }

    fn link_up(&self, from: u64, to: u64) -> bool {
        match &self.partition {
            Partition::None => true,
            Partition::Split(side) => side.contains(&from) == side.contains(&to),
            Partition::OneWay(a, b) => !(from == *a && to == *b),
        }
    }

    /// Delivers the due messages, in random order, until none is due.
    fn deliver_due(&mut self) {
        let mut delivered = 0;
        loop {
            let due: Vec<usize> =
                (0..self.flight.len()).filter(|&i| self.flight[i].at <= self.now).collect();
            if due.is_empty() {
                return;
            }
            let pick = due[self.rng.range(0, due.len())];
            let m = self.flight.swap_remove(pick).msg;
            delivered += 1;
            if delivered > MAX_DELIVERIES_PER_TICK {
                self.fail(
                    "the network quiets down",
                    format!("over {MAX_DELIVERIES_PER_TICK} deliveries in one tick"),
                );
            }
            let lost = self.rng.range(0, 100) < self.drop_percent
                || self.sabotage == Sabotage::DropEverything;
            if lost || !self.link_up(m.from, m.to) {
                continue;
            }
            let to = m.to;
            let Some(driver) = self.driver(to) else { continue };
            let summary = format!(
                "{:?} {}->{} term {} index {} commit {} entries {}{}",
                m.msg_type(),
                m.from,
                m.to,
                m.term,
                m.index,
                m.commit,
                m.entries.len(),
                if m.reject { " reject" } else { "" }
            );
            let _ = match driver {
                Driver::Bare(r) => r.step(m),
                Driver::Raw(n) => n.step(m),
            };
            self.stats.messages_delivered += 1;
            self.note(summary);
            self.after_step(to);
        }
    }

    // ----- the checks -----

    /// A hard state about to be persisted: terms never go down, a vote is
    /// never changed within a term, commit never goes down.
    fn check_hard_state(&mut self, id: u64, hs: HardState) {
        if let Some(prev) = self.persisted.get(&id) {
            let bad = hs.term < prev.term
                || (hs.term == prev.term && prev.vote != 0 && hs.vote != prev.vote)
                || hs.commit < prev.commit;
            if bad {
                self.fail(
                    "persisted state only moves forward",
                    format!(
                        "node {id} persisted term {} vote {} commit {} after term {} vote {} commit {}",
                        hs.term, hs.vote, hs.commit, prev.term, prev.vote, prev.commit
                    ),
                );
            }
        }
        self.persisted.insert(id, hs);
    }

    /// Log matching, on entries about to be persisted.
    fn check_new_entries(&mut self, id: u64, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let prev_term = {
            let r = self.nodes[&id].raft().unwrap();
            r.raft_log.term(first.index - 1).unwrap_or(0)
        };
        self.check_entries(id, prev_term, ents);
    }

    fn check_entries(&mut self, id: u64, mut prev_term: u64, ents: &[Entry]) {
        for e in ents {
            let value = (e.data.clone(), e.entry_type, prev_term);
            let known = self.entries.entry((e.index, e.term)).or_insert_with(|| value.clone());
            if *known != value {
                let known = known.clone();
                self.fail(
                    "log matching",
                    format!(
                        "node {id} has entry index {} term {} with data {:?} after an entry of term {}, \
                         another node had data {:?} after term {}",
                        e.index,
                        e.term,
                        String::from_utf8_lossy(&e.data),
                        prev_term,
                        String::from_utf8_lossy(&known.0),
                        known.2
                    ),
                );
            }
            prev_term = e.term;
        }
    }

    fn check_applied_entry(&mut self, id: u64, index: u64, term: u64, data: &[u8]) {
        let known = self.applied.entry(index).or_insert_with(|| (term, data.to_vec()));
        if known.0 != term || known.1 != data {
            let known = known.clone();
            self.fail(
                "state machine safety",
                format!(
                    "node {id} applied index {index} term {term} data {:?}; \
                     another node applied term {} data {:?} there",
                    String::from_utf8_lossy(data),
                    known.0,
                    String::from_utf8_lossy(&known.1)
                ),
            );
        }
    }

    /// The checks on one node's current state.
    fn check_node(&mut self, id: u64) {
        let Some(r) = self.nodes.get(&id).and_then(Node::raft) else { return };
        let (term, state, committed) = (r.term, r.state, r.raft_log.committed);
        // Election safety.
        if state == StateRole::Leader {
            match self.leaders.get(&term) {
                Some(&first) if first != id => self.fail(
                    "election safety",
                    format!("nodes {first} and {id} both lead term {term}"),
                ),
                Some(_) => {}
                None => {
                    // A new leader: its log must already hold every
                    // committed entry (a leader never drops entries later).
                    self.leaders.insert(term, id);
                    self.note(format!("node {id} leads term {term}"));
                    self.check_leader_completeness(id);
                    if self.last_leader != id {
                        self.last_leader = id;
                        self.stats.leader_changes += 1;
                    }
                }
            }
        }
        // Terms never go down, not even across a crash.
        let node = self.nodes.get_mut(&id).unwrap();
        if term < node.term {
            let was = node.term;
            self.fail(
                "terms only move forward",
                format!("node {id} went from term {was} to {term}"),
            );
        }
        node.term = term;
        // The commit index of a running node never goes down.
        if committed < node.committed {
            let was = node.committed;
            self.fail(
                "commit only moves forward",
                format!("node {id} committed went from {was} to {committed}"),
            );
        }
        node.committed = committed;
        self.check_log_changes(id);
        if self.f.proposals {
            self.record_committed(id);
        }
    }

    /// Records the entries node `id` has committed since last time.
    fn record_committed(&mut self, id: u64) {
        let r = self.nodes[&id].raft().unwrap();
        let (term, committed) = (r.term, r.raft_log.committed);
        let from =
            self.committed.last_key_value().map_or(1, |(i, _)| i + 1).max(r.raft_log.first_index());
        if from > committed {
            return;
        }
        let ents = r.raft_log.entries(from, committed + 1).unwrap_or_default();
        for e in ents {
            self.committed.insert(e.index, (e.term, term));
        }
    }

    /// Every entry committed in a term before the leader's is in its log.
    fn check_leader_completeness(&mut self, id: u64) {
        let r = self.nodes[&id].raft().unwrap();
        let first = r.raft_log.first_index();
        let mut missing = None;
        for (&index, &(term, seen_in)) in self.committed.range(first..) {
            if seen_in < r.term && r.raft_log.term(index).ok() != Some(term) {
                missing = Some((index, term, seen_in, r.raft_log.term(index).ok()));
                break;
            }
        }
        if let Some((index, term, seen_in, has)) = missing {
            let term_now = r.term;
            self.fail(
                "leader completeness",
                format!(
                    "node {id} leads term {term_now} but its log has {} at index {index}, where an entry \
                     of term {term} was committed by term {seen_in}",
                    has.map_or("nothing".to_string(), |t| format!("term {t}"))
                ),
            );
        }
    }

    /// Log matching on the entries of node `id`'s log that changed since
    /// the last check (found by walking down from the last index to the
    /// first entry whose term is unchanged).
    fn check_log_changes(&mut self, id: u64) {
        let node = &self.nodes[&id];
        let Some(r) = node.raft() else { return };
        let log = &r.raft_log;
        let (first, last) = (log.first_index(), log.last_index());
        let mut low = last + 1;
        while low > first {
            let j = low - 1;
            if node.seen_terms.get(j as usize).is_some_and(|&t| log.term(j).ok() == Some(t)) {
                break;
            }
            low = j;
        }
        if low > last {
            return;
        }
        let prev_term = log.term(low - 1).unwrap_or(0);
        let ents = log.entries(low, last + 1).unwrap_or_default();
        let seen = &mut self.nodes.get_mut(&id).unwrap().seen_terms;
        seen.resize(low as usize, 0);
        seen.extend(ents.iter().map(|e| e.term));
        self.check_entries(id, prev_term, &ents);
    }

    /// Log matching over every running node's whole log.
    fn check_logs(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let Some(r) = self.nodes[&id].raft() else { continue };
            let log = &r.raft_log;
            let (first, last) = (log.first_index(), log.last_index());
            if last < first {
                continue;
            }
            let prev_term = log.term(first - 1).unwrap_or(0);
            let ents = log.entries(first, last + 1).unwrap_or_default();
            self.check_entries(id, prev_term, &ents);
        }
    }

    // ----- the workload and the faults -----

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| {
                n.raft().filter(|r| r.state == StateRole::Leader).map(|r| (r.term, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn propose(&mut self, id: u64, data: Vec<u8>) {
        let Some(driver) = self.driver(id) else { return };
        let _ = match driver {
            Driver::Bare(r) => {
                let mut m = Message { from: id, to: id, ..Message::default() };
                m.set_msg_type(MessageType::MsgPropose);
                m.entries = vec![Entry { data, ..Entry::default() }];
                r.step(m)
            }
            Driver::Raw(n) => n.propose(data),
        };
        self.after_step(id);
    }

    fn random_node(&mut self) -> u64 {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        ids[self.rng.range(0, ids.len())]
    }

    /// One random fault or client action (or none).
    fn act(&mut self) {
        let roll = self.rng.range(0, 1000);
        match roll {
            0..=299 if self.f.proposals => {
                // Mostly the newest leader, sometimes a stale one (cut off
                // by a partition: its entries must never commit), sometimes
                // a follower (which drops the proposal).
                let leaders: Vec<u64> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.raft().is_some_and(|r| r.state == StateRole::Leader))
                    .map(|(&id, _)| id)
                    .collect();
                let target = match self.rng.range(0, 10) {
                    0..=5 if !leaders.is_empty() => self.leader().unwrap(),
                    6..=8 if !leaders.is_empty() => leaders[self.rng.range(0, leaders.len())],
                    _ => self.random_node(),
                };
                self.proposed += 1;
                let data = format!("s{}-p{}", self.seed, self.proposed).into_bytes();
                self.note(format!("propose p{} at node {target}", self.proposed));
                self.propose(target, data);
            }
            300..=329 => {
                let ids: Vec<u64> = self.nodes.keys().copied().collect();
                let side: BTreeSet<u64> =
                    ids.iter().copied().filter(|_| self.rng.range(0, 2) == 0).collect();
                self.note(format!("partition: {side:?} | the rest"));
                self.partition = Partition::Split(side);
            }
            330..=344 => {
                let (a, b) = (self.random_node(), self.random_node());
                self.note(format!("one-way partition: {a} -> {b} dropped"));
                self.partition = Partition::OneWay(a, b);
            }
            345..=399 => {
                if self.partition != Partition::None {
                    self.note("partition healed".to_string());
                }
                self.partition = Partition::None;
            }
            400..=419 if self.f.restarts => {
                let id = self.random_node();
                let down_for = 1 + self.rng.range(0, 3 * ELECTION_TICK) as u64;
                self.crash(id, down_for);
            }
            420..=469 if self.f.compaction => {
                let id = self.random_node();
                self.compact(id);
            }
            470..=484 if self.f.membership => self.change_membership(),
            485..=499 if self.f.transfers => {
                if let Some(l) = self.leader() {
                    let members: Vec<u64> =
                        self.nodes[&l].raft().unwrap().prs.keys().copied().collect();
                    let to = members[self.rng.range(0, members.len())];
                    self.note(format!("transfer leadership from {l} to {to}"));
                    if let Some(Driver::Raw(n)) = self.driver(l) {
                        n.transfer_leader(to);
                    }
                    self.after_step(l);
                }
            }
            _ => {}
        }
    }

    /// Node `id` snapshots its state machine and drops its log up to what
    /// it applied (as the raftstore's log GC does).
    fn compact(&mut self, id: u64) {
        let node = &self.nodes[&id];
        if node.driver.is_none() || node.applied < node.store.first_index().unwrap_or(1) + 5 {
            return;
        }
        let (applied, data) = (node.applied, encode_state(&node.state));
        let mut store = node.store.wl();
        if store.create_snapshot(applied, None, data).is_ok() {
            store.compact(applied).expect("compact to applied");
            drop(store);
            self.note(format!("node {id} compacted its log to {applied}"));
        }
    }

    fn change_membership(&mut self) {
        let Some(l) = self.leader() else { return };
        let members: Vec<u64> = self.nodes[&l].raft().unwrap().prs.keys().copied().collect();
        let add = members.len() <= 3 || (members.len() < 5 && self.rng.range(0, 2) == 0);
        let cc = if add {
            let id = self.next_id;
            self.next_id += 1;
            ConfChange { change_type: ConfChangeType::AddNode as i32, node_id: id, context: vec![] }
        } else {
            let others: Vec<u64> = members.into_iter().filter(|&m| m != l).collect();
            let id = others[self.rng.range(0, others.len())];
            ConfChange {
                change_type: ConfChangeType::RemoveNode as i32,
                node_id: id,
                context: vec![],
            }
        };
        self.note(format!("propose {:?} {} at leader {l}", cc.change_type(), cc.node_id));
        if let Some(Driver::Raw(n)) = self.driver(l) {
            let _ = n.propose_conf_change(cc);
        }
        self.after_step(l);
    }

    /// One tick of virtual time: restart crashed nodes that are due, tick
    /// every running node, deliver what is due.
    fn tick(&mut self) {
        self.now += 1;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let node = &self.nodes[&id];
            if node.driver.is_none() {
                let node = self.nodes.get_mut(&id).unwrap();
                node.down_for = node.down_for.saturating_sub(1);
                if node.down_for == 0 {
                    self.restart(id);
                }
            }
        }
        for &id in &ids {
            match self.driver(id) {
                Some(Driver::Bare(r)) => r.tick(),
                Some(Driver::Raw(n)) => n.tick(),
                None => continue,
            }
            self.after_step(id);
        }
        self.deliver_due();
        self.check_logs();
    }

    /// Crashes node `id` for `down_for` ticks: its memory is lost, its
    /// storage stays.
    fn crash(&mut self, id: u64, down_for: u64) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if node.driver.take().is_some() {
            node.down_for = down_for;
            self.stats.restarts += 1;
            self.note(format!("node {id} crashed for {down_for} ticks"));
        }
    }

    fn restart(&mut self, id: u64) {
        let node = &self.nodes[&id];
        let driver = self.start(id, &node.store.clone(), node.applied);
        let node = self.nodes.get_mut(&id).unwrap();
        node.driver = Some(driver);
        node.committed = 0;
        self.note(format!("node {id} restarted from its storage"));
        self.after_step(id);
    }

    // ----- a whole run -----

    fn run(mut self) -> Stats {
        for _ in 0..CHAOS_TICKS {
            self.act();
            self.tick();
        }
        self.heal()
    }

    /// Ends the faults and checks that the cluster recovers: one leader,
    /// and a last proposal applied by every member.
    fn heal(mut self) -> Stats {
        self.note("all faults healed".to_string());
        self.partition = Partition::None;
        self.drop_percent = 0;
        self.dup_percent = 0;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.nodes[&id].driver.is_none() {
                self.restart(id);
            }
        }
        let last = format!("s{}-last", self.seed).into_bytes();
        let has_last = |n: &Node| n.state.values().any(|(_, d)| *d == last);
        // The first leader seen after the heal: (id, term, tick).
        let mut first_leader: Option<(u64, u64, u64)> = None;
        for _ in 0..HEAL_TICKS {
            self.tick();
            let Some(l) = self.leader() else { continue };
            let term = self.nodes[&l].raft().unwrap().term;
            first_leader.get_or_insert((l, term, self.now));
            let members: Vec<u64> = self.nodes[&l].raft().unwrap().prs.keys().copied().collect();
            let done = members.iter().all(|m| {
                self.nodes.get(m).is_some_and(|n| {
                    has_last(n) || (!self.f.proposals && n.raft().is_some_and(|r| r.lead == l))
                })
            });
            if done {
                self.stats.terms_with_leader = self.leaders.len() as u64;
                self.stats.digest = self.digest;
                return self.stats;
            }
            if self.f.proposals && !has_last(&self.nodes[&l]) && self.now.is_multiple_of(5) {
                self.propose(l, last.clone());
            }
        }
        let what = self.liveness_failure(first_leader, &last);
        self.fail("liveness", what)
    }

    /// What did not happen within [`HEAL_TICKS`] ticks of the heal: no
    /// leader at all, or a leader whose members did not all apply (or, with
    /// no proposals, follow it).
    fn liveness_failure(&self, first_leader: Option<(u64, u64, u64)>, last: &[u8]) -> String {
        let heal = self.now - HEAL_TICKS;
        let Some((first, first_term, at)) = first_leader else {
            return format!(
                "no leader elected within {HEAL_TICKS} ticks of the heal at tick {heal} (every \
                 node restarted, no partition, no drops)"
            );
        };
        let Some(l) = self.leader() else {
            return format!(
                "node {first} was elected leader of term {first_term} at tick {at}, but at tick {} \
                 (the end of the {HEAL_TICKS} ticks after the heal) no node leads",
                self.now
            );
        };
        let r = self.nodes[&l].raft().unwrap();
        let behind: Vec<u64> = r
            .prs
            .keys()
            .copied()
            .filter(|m| {
                self.nodes.get(m).is_none_or(|n| {
                    if self.f.proposals {
                        !n.state.values().any(|(_, d)| d == last)
                    } else {
                        n.raft().is_none_or(|p| p.lead != l)
                    }
                })
            })
            .collect();
        let lacks = if self.f.proposals {
            format!(
                "members {behind:?} have not applied the last proposal {:?} (proposed to the \
                 leader every 5 ticks until it has applied it)",
                String::from_utf8_lossy(last)
            )
        } else {
            format!("members {behind:?} do not follow it")
        };
        format!(
            "{HEAL_TICKS} ticks after the heal at tick {heal}, node {l} leads term {} (the first \
             leader after the heal was node {first} of term {first_term}, at tick {at}), but {lacks}",
            r.term
        )
    }
}
