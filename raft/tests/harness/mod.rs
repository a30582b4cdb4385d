//! The graded suites' deterministic message network (labs 2aa, 2ab).
//!
//! Nodes are bare [`Raft`]s (no `RawNode`, no `Ready`): the network steps a
//! message into its target, takes everything the target pushed onto
//! `msgs`, and keeps delivering, in FIFO order, until nothing is left (the
//! network is quiet). The same test with the same seed always delivers the
//! same messages in the same order.
//!
//! Filters, applied to every message taken off the queue (local messages,
//! `MsgHup`, `MsgBeat`, `MsgPropose`, are never dropped by `drop`/`cut`):
//! - `drop(from, to, p)`: drop a message on that link with probability `p`
//!   (seeded RNG); `cut(a, b)`: both directions, always; `isolate(id)`: cut
//!   `id` from every other node;
//! - `ignore(t)`: drop every message of type `t`;
//! - `set_hook(f)`: `f(&m)` returning `false` drops `m`;
//! - `recover()`: clear drops, cuts and ignores (not the hook).
//!
//! Building a network:
//! ```ignore
//! let mut net = Network::new(vec![None, None, None]);          // 3 fresh nodes, ids 1..=3
//! let mut net = Network::new(vec![Some(r1), None, None]);      // node 1 given
//! let mut net = Network::from_specs(vec![Spec::Fresh, Spec::BlackHole, Spec::Fresh], |_| {});
//! let mut net = Network::new_with_config(vec![None; 3], |cfg| cfg.election_tick = 20);
//! ```
//! A fresh node `i` of an `n`-node network has id `i` (1-based), members
//! `1..=n`, election tick 10, heartbeat tick 1 and seed [`seed()`].
//!
//! Every delivered message is also appended to `net.trace`.
#![allow(dead_code)]

pub mod chaos;
pub mod deadline;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft::eraftpb::{Entry, HardState, Message, MessageType};
use raft::{Config, MemoryStorage, Raft, StateRole, is_local_msg};

/// The seed of this run: `TINYKV_SEED` if set (the `labs` tool sets it for
/// `--seed`), else a fixed default.
pub fn seed() -> u64 {
    match std::env::var("TINYKV_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("TINYKV_SEED={s:?} is not a u64")),
        Err(_) => DEFAULT_SEED,
    }
}

/// The seed used when `TINYKV_SEED` is unset.
pub const DEFAULT_SEED: u64 = 1;

/// Where the lab document explains a behaviour, for failure messages.
pub fn hint(section: &str) -> String {
    hint_in("lab2a-raft.md", section)
}

/// Like [`hint`], for a section of another chapter of `docs/src`.
pub fn hint_in(chapter: &str, section: &str) -> String {
    format!("See docs/src/{chapter}, \"{section}\".")
}

/// The replay context of a seeded test, for failure messages: the `labs`
/// tool picks `TINYKV_SEED=<n>` up for its replay commands.
pub fn ctx(seed: u64) -> String {
    format!("(TINYKV_SEED={seed})")
}

/// [`hint`] and [`ctx`] together, for a seeded test's failure message.
pub fn hint_seeded(section: &str, seed: u64) -> String {
    format!("{} {}", hint(section), ctx(seed))
}

/// Panics with "`what`: expected `want`, got `got`. See ..." unless equal.
#[track_caller]
pub fn expect_eq<T: PartialEq + std::fmt::Debug>(
    got: T,
    want: T,
    what: impl std::fmt::Display,
    section: &str,
) {
    expect_eq_in("lab2a-raft.md", got, want, what, section);
}

/// Like [`expect_eq`], pointing to a section of another chapter.
pub fn expect_eq_in<T: PartialEq + std::fmt::Debug>(
    chapter: &str,
    got: T,
    want: T,
    what: impl std::fmt::Display,
    section: &str,
) {
    if got != want {
        panic!("{what}: expected {want:?}, got {got:?}. {}", hint_in(chapter, section));
    }
}

// ----- message and entry builders ----------------------------------------

/// A message of type `t` from `from` to `to` with term `term`.
pub fn msg(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    let mut m = Message { from, to, term, ..Default::default() };
    m.set_msg_type(t);
    m
}

/// An empty entry of `term` at `index`.
pub fn entry(term: u64, index: u64) -> Entry {
    Entry { term, index, ..Default::default() }
}

/// An entry of `term` at `index` carrying `data`.
pub fn entry_with_data(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry { term, index, data: data.to_vec(), ..Default::default() }
}

/// Entries at indexes 1, 2, ... with the given terms.
pub fn entries_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms.iter().enumerate().map(|(i, &t)| entry(t, i as u64 + 1)).collect()
}

/// `MsgRequestVote` from `from` to `to` in `term`, for a candidate whose
/// last entry is (`index`, `log_term`).
pub fn vote_req(from: u64, to: u64, term: u64, log_term: u64, index: u64) -> Message {
    let mut m = msg(from, to, MessageType::MsgRequestVote, term);
    m.log_term = log_term;
    m.index = index;
    m
}

/// `MsgRequestVoteResponse` from `from` to `to` in `term`.
pub fn vote_resp(from: u64, to: u64, term: u64, reject: bool) -> Message {
    let mut m = msg(from, to, MessageType::MsgRequestVoteResponse, term);
    m.reject = reject;
    m
}

/// `MsgAppend` from `from` to `to` in `term`: `ents` after (`index`,
/// `log_term`), with the leader's `commit`.
pub fn append(
    from: u64,
    to: u64,
    term: u64,
    log_term: u64,
    index: u64,
    ents: Vec<Entry>,
    commit: u64,
) -> Message {
    let mut m = msg(from, to, MessageType::MsgAppend, term);
    m.log_term = log_term;
    m.index = index;
    m.entries = ents;
    m.commit = commit;
    m
}

/// `MsgHeartbeat` from `from` to `to` in `term` with `commit`.
pub fn heartbeat(from: u64, to: u64, term: u64, commit: u64) -> Message {
    let mut m = msg(from, to, MessageType::MsgHeartbeat, term);
    m.commit = commit;
    m
}

/// A local `MsgPropose` to `id` carrying one entry of `data`.
pub fn propose_msg(id: u64, data: &[u8]) -> Message {
    let mut m = msg(id, id, MessageType::MsgPropose, 0);
    m.entries = vec![Entry { data: data.to_vec(), ..Default::default() }];
    m
}

// ----- node builders -----------------------------------------------------

/// The config of a fresh test node: election tick 10, heartbeat tick 1,
/// seed [`seed()`]; membership from the storage.
pub fn config(id: u64) -> Config {
    let mut c = Config::new(id, vec![]);
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.seed = seed();
    c
}

/// A fresh node `id` of the cluster `peers` with the given ticks.
pub fn new_raft(
    id: u64,
    peers: Vec<u64>,
    election: usize,
    heartbeat: usize,
) -> Raft<MemoryStorage> {
    let mut c = config(id);
    c.election_tick = election;
    c.heartbeat_tick = heartbeat;
    Raft::new(&c, MemoryStorage::new_with_conf_state(peers)).expect("Raft::new")
}

/// Node `id` of the cluster `peers` whose stored log holds entries of the
/// given terms at indexes 1, 2, ... and whose stored term is `term`
/// (no vote, nothing committed).
pub fn raft_with_log(id: u64, peers: Vec<u64>, terms: &[u64], term: u64) -> Raft<MemoryStorage> {
    let store = MemoryStorage::new_with_conf_state(peers);
    store.append(&entries_with_terms(terms)).expect("MemoryStorage::append");
    store.set_hard_state(HardState { term, vote: 0, commit: 0 });
    Raft::new(&config(id), store).expect("Raft::new")
}

/// Takes the messages `r` queued.
pub fn take_msgs(r: &mut Raft<MemoryStorage>) -> Vec<Message> {
    std::mem::take(&mut r.msgs)
}

/// A readable one-line summary of a message, for failure messages.
pub fn describe(m: &Message) -> String {
    format!(
        "{:?} {}->{} term {} log_term {} index {} commit {} reject {} entries {}",
        m.msg_type(),
        m.from,
        m.to,
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.reject,
        m.entries.len()
    )
}

/// [`describe`] for a list of messages.
pub fn describe_all(ms: &[Message]) -> String {
    let v: Vec<String> = ms.iter().map(describe).collect();
    format!("[{}]", v.join("; "))
}

// ----- the network --------------------------------------------------------

/// A node of the network.
pub enum Node {
    /// A raft node.
    Raft(Box<Raft<MemoryStorage>>),
    /// Swallows every message sent to it and never says anything.
    BlackHole,
}

/// How to build one node of a network (see [`Network::from_specs`]).
// A test builds a handful of these; boxing the node buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Spec {
    /// A fresh node with the default config (after the config closure).
    Fresh,
    /// This node (its id must be its position, 1-based).
    Raft(Raft<MemoryStorage>),
    /// A black hole.
    BlackHole,
}

impl From<Option<Raft<MemoryStorage>>> for Spec {
    fn from(r: Option<Raft<MemoryStorage>>) -> Spec {
        match r {
            Some(r) => Spec::Raft(r),
            None => Spec::Fresh,
        }
    }
}

/// A tiny SplitMix64, the network's own (drops only).
struct NetRng(u64);

impl NetRng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Hook type: return `false` to drop the message.
pub type Hook = Box<dyn FnMut(&Message) -> bool>;

/// The deterministic network. See the module docs.
pub struct Network {
    pub nodes: BTreeMap<u64, Node>,
    /// The storage of every raft node (shared with the node).
    pub storage: BTreeMap<u64, MemoryStorage>,
    /// Every message delivered so far (after the filters), in order.
    pub trace: Vec<Message>,
    /// The seed of the network's RNG.
    pub seed: u64,
    dropm: BTreeMap<(u64, u64), f64>,
    ignorem: BTreeSet<MessageType>,
    hook: Option<Hook>,
    rng: NetRng,
}

/// More deliveries than this in one `send` means the network never quiets.
const MAX_DELIVERIES: usize = 200_000;

impl Network {
    /// `None`: a fresh node. See the module docs.
    pub fn new(peers: Vec<Option<Raft<MemoryStorage>>>) -> Network {
        Network::new_with_config(peers, |_| {})
    }

    /// As [`Network::new`], with `f` applied to the config of every fresh node.
    pub fn new_with_config(
        peers: Vec<Option<Raft<MemoryStorage>>>,
        f: impl FnMut(&mut Config),
    ) -> Network {
        Network::from_specs(peers.into_iter().map(Spec::from).collect(), f)
    }

    /// `n` fresh nodes (`vec![None; n]` does not compile: `Raft` is not `Clone`).
    pub fn fresh(n: u64) -> Network {
        Network::with_black_holes(n, &[])
    }

    /// `n` fresh nodes, except the ids in `holes`, which are black holes.
    pub fn with_black_holes(n: u64, holes: &[u64]) -> Network {
        let specs = (1..=n)
            .map(|id| if holes.contains(&id) { Spec::BlackHole } else { Spec::Fresh })
            .collect();
        Network::from_specs(specs, |_| {})
    }

    /// The general constructor: node `i` (1-based) is built from `specs[i-1]`;
    /// `f` adjusts the config of every fresh node.
    pub fn from_specs(specs: Vec<Spec>, mut f: impl FnMut(&mut Config)) -> Network {
        let seed = seed();
        let n = specs.len() as u64;
        let ids: Vec<u64> = (1..=n).collect();
        let mut net = Network {
            nodes: BTreeMap::new(),
            storage: BTreeMap::new(),
            trace: Vec::new(),
            seed,
            dropm: BTreeMap::new(),
            ignorem: BTreeSet::new(),
            hook: None,
            rng: NetRng(seed ^ 0x005E_ED0F_7E57),
        };
        for (id, spec) in ids.iter().copied().zip(specs) {
            match spec {
                Spec::Fresh => {
                    let store = MemoryStorage::new_with_conf_state(ids.clone());
                    let mut c = config(id);
                    f(&mut c);
                    let r = Raft::new(&c, store.clone()).expect("Raft::new");
                    net.nodes.insert(id, Node::Raft(Box::new(r)));
                    net.storage.insert(id, store);
                }
                Spec::Raft(r) => {
                    assert_eq!(r.id, id, "harness: node at position {id} has id {}", r.id);
                    net.storage.insert(id, r.raft_log.store.clone());
                    net.nodes.insert(id, Node::Raft(Box::new(r)));
                }
                Spec::BlackHole => {
                    net.nodes.insert(id, Node::BlackHole);
                }
            }
        }
        net
    }

    /// The ids of every node (raft nodes and black holes).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the raft nodes.
    pub fn raft_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, n)| matches!(n, Node::Raft(_))).map(|(id, _)| *id).collect()
    }

    /// Node `id`. Panics if it is not a raft node.
    pub fn peer(&self, id: u64) -> &Raft<MemoryStorage> {
        match self.nodes.get(&id) {
            Some(Node::Raft(r)) => r,
            _ => panic!("harness: node {id} is not a raft node"),
        }
    }

    /// Node `id`, mutably. Panics if it is not a raft node.
    pub fn peer_mut(&mut self, id: u64) -> &mut Raft<MemoryStorage> {
        match self.nodes.get_mut(&id) {
            Some(Node::Raft(r)) => r,
            _ => panic!("harness: node {id} is not a raft node"),
        }
    }

    /// The role of node `id`.
    pub fn state(&self, id: u64) -> StateRole {
        self.peer(id).state
    }

    /// The term of node `id`.
    pub fn term(&self, id: u64) -> u64 {
        self.peer(id).term
    }

    /// The leader of the highest term among the raft nodes, if any node of
    /// that term leads.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| match n {
                Node::Raft(r) if r.state == StateRole::Leader => Some((r.term, *id)),
                _ => None,
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Every raft node's (id, role, term), for failure messages.
    pub fn summary(&self) -> String {
        let v: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| match n {
                Node::Raft(r) => format!("{id}: {:?} term {} lead {}", r.state, r.term, r.lead),
                Node::BlackHole => format!("{id}: black hole"),
            })
            .collect();
        v.join(", ")
    }

    // ----- filters -------------------------------------------------------

    /// Drops messages from `from` to `to` with probability `perc` (0.0..=1.0).
    pub fn drop(&mut self, from: u64, to: u64, perc: f64) {
        self.dropm.insert((from, to), perc);
    }

    /// Cuts the link between `a` and `b`, both directions.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.drop(a, b, 1.0);
        self.drop(b, a, 1.0);
    }

    /// Cuts `id` from every other node.
    pub fn isolate(&mut self, id: u64) {
        for other in self.ids() {
            if other != id {
                self.cut(id, other);
            }
        }
    }

    /// Drops every message of type `t`.
    pub fn ignore(&mut self, t: MessageType) {
        self.ignorem.insert(t);
    }

    /// Clears drops, cuts and ignores (the hook stays).
    pub fn recover(&mut self) {
        self.dropm.clear();
        self.ignorem.clear();
    }

    /// Sets the hook: it sees every message that passed the other filters
    /// and returns `false` to drop it.
    pub fn set_hook(&mut self, hook: impl FnMut(&Message) -> bool + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Removes the hook.
    pub fn clear_hook(&mut self) {
        self.hook = None;
    }

    fn passes(&mut self, m: &Message) -> bool {
        if self.ignorem.contains(&m.msg_type()) {
            return false;
        }
        if !is_local_msg(m.msg_type())
            && let Some(&p) = self.dropm.get(&(m.from, m.to))
        {
            // Always draw, so that the RNG stream does not depend on p.
            let x = self.rng.next_f64();
            if x < p {
                return false;
            }
        }
        match self.hook.as_mut() {
            Some(h) => h(m),
            None => true,
        }
    }

    // ----- delivery ------------------------------------------------------

    /// Delivers `msgs` and everything they cause, in FIFO order, until the
    /// network is quiet. A step's error (e.g. a dropped proposal) is ignored.
    pub fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: VecDeque<Message> = msgs.into();
        let mut delivered = 0usize;
        while let Some(m) = queue.pop_front() {
            if !self.passes(&m) {
                continue;
            }
            delivered += 1;
            assert!(
                delivered <= MAX_DELIVERIES,
                "harness: the network did not quiet down after {MAX_DELIVERIES} messages; \
                 last: {}; nodes: {}",
                describe(&m),
                self.summary()
            );
            self.trace.push(m.clone());
            if let Some(Node::Raft(r)) = self.nodes.get_mut(&m.to) {
                let _ = r.step(m);
                queue.extend(std::mem::take(&mut r.msgs));
            }
        }
    }

    /// Delivers whatever the raft nodes have queued (in id order), until quiet.
    pub fn flush(&mut self) {
        let mut pending = Vec::new();
        for n in self.nodes.values_mut() {
            if let Node::Raft(r) = n {
                pending.extend(std::mem::take(&mut r.msgs));
            }
        }
        self.send(pending);
    }

    /// `MsgHup` to `id`: start an election there.
    pub fn hup(&mut self, id: u64) {
        self.send(vec![msg(id, id, MessageType::MsgHup, 0)]);
    }

    /// `MsgBeat` to `id`: a leader sends heartbeats.
    pub fn beat(&mut self, id: u64) {
        self.send(vec![msg(id, id, MessageType::MsgBeat, 0)]);
    }

    /// `MsgPropose` of one entry of `data` to `id`.
    pub fn propose(&mut self, id: u64, data: &[u8]) {
        self.send(vec![propose_msg(id, data)]);
    }

    /// Ticks node `id` `n` times, delivering what each tick causes.
    pub fn tick(&mut self, id: u64, n: usize) {
        for _ in 0..n {
            let r = self.peer_mut(id);
            r.tick();
            let out = std::mem::take(&mut r.msgs);
            self.send(out);
        }
    }

    /// Ticks every raft node once (in id order), then delivers everything.
    pub fn tick_all(&mut self) {
        let mut out = Vec::new();
        for n in self.nodes.values_mut() {
            if let Node::Raft(r) = n {
                r.tick();
                out.extend(std::mem::take(&mut r.msgs));
            }
        }
        self.send(out);
    }
}
