//! Reference tests of the raft crate (instructor-only, not graded).
//!
//! A small deterministic in-test network drives `RawNode`s: it handles
//! every `Ready` the way the contract says (persist into the node's
//! `MemoryStorage`, send, apply, advance) and delivers messages until the
//! cluster is quiet. Links can be cut (isolate a node) and, for the seeded
//! random test, messages dropped and reordered.
//!
//! The last section tests the graded suites' harness itself (its budgets:
//! a stuck run fails fast and says what did not happen); it lives here
//! because it needs the reference solution, and this file is not handed out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use raft::{Config, Error, MemoryStorage, Raft, RawNode, Rng, StateRole, Storage};

/// The graded suites' harness, for its own tests at the end of this file.
mod harness;

/// What a node applied: index -> (term, data).
type Applied = BTreeMap<u64, (u64, Vec<u8>)>;

struct Network {
    nodes: BTreeMap<u64, RawNode<MemoryStorage>>,
    stores: BTreeMap<u64, MemoryStorage>,
    applied: BTreeMap<u64, Applied>,
    queue: VecDeque<Message>,
    isolated: BTreeSet<u64>,
    /// Cut links, both directions.
    cut: BTreeSet<(u64, u64)>,
    /// Drops and reorders messages when set (the random test).
    chaos: Option<(Rng, u64)>,
    /// Every leader seen, by term (election safety).
    leaders: BTreeMap<u64, u64>,
}

fn config(id: u64, seed: u64) -> Config {
    let mut c = Config::new(id, vec![]);
    c.seed = seed;
    c
}

impl Network {
    fn new(n: u64, seed: u64) -> Network {
        let peers: Vec<u64> = (1..=n).collect();
        let mut net = Network {
            nodes: BTreeMap::new(),
            stores: BTreeMap::new(),
            applied: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            cut: BTreeSet::new(),
            chaos: None,
            leaders: BTreeMap::new(),
        };
        for &id in &peers {
            net.add(id, MemoryStorage::new_with_conf_state(peers.clone()), seed);
        }
        net
    }

    fn add(&mut self, id: u64, store: MemoryStorage, seed: u64) {
        let node = RawNode::new(&config(id, seed), store.clone()).unwrap();
        self.nodes.insert(id, node);
        self.stores.insert(id, store);
        self.applied.entry(id).or_default();
    }

    /// Crash and restart: only what the store holds survives.
    fn restart(&mut self, id: u64, seed: u64) {
        let store = self.stores[&id].clone();
        let node = RawNode::new(&config(id, seed), store).unwrap();
        self.nodes.insert(id, node);
    }

    fn node(&self, id: u64) -> &Raft<MemoryStorage> {
        &self.nodes[&id].raft
    }

    fn node_mut(&mut self, id: u64) -> &mut RawNode<MemoryStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Handles the Ready of every node once.
    fn handle_readies(&mut self) -> bool {
        let mut any = false;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.nodes.get_mut(&id).unwrap();
            if !node.has_ready() {
                continue;
            }
            any = true;
            let rd = node.ready();
            let store = &self.stores[&id];
            if let Some(hs) = &rd.hard_state {
                store.set_hard_state(*hs);
            }
            if rd.snapshot.metadata.as_ref().is_some_and(|m| m.index > 0) {
                store.apply_snapshot(rd.snapshot.clone()).unwrap();
            }
            store.append(&rd.entries).unwrap();
            self.queue.extend(rd.messages.iter().cloned());
            let applied = self.applied.get_mut(&id).unwrap();
            for e in &rd.committed_entries {
                let before = applied.insert(e.index, (e.term, e.data.clone()));
                if let Some((term, data)) = before {
                    assert!(
                        term == e.term && data == e.data,
                        "node {id} applied index {} twice with different entries",
                        e.index
                    );
                }
                if e.entry_type() == EntryType::EntryConfChange {
                    let cc = ConfChange::decode(e.data.as_slice()).unwrap();
                    let cs = node.apply_conf_change(&cc);
                    store.wl().set_conf_state(cs);
                }
            }
            node.advance(rd);
            if node.raft.state == StateRole::Leader {
                let (term, leader) = (node.raft.term, node.raft.id);
                let seen = *self.leaders.entry(term).or_insert(leader);
                assert_eq!(seen, leader, "election safety: two leaders in term {term}");
            }
        }
        any
    }

    fn delivers(&mut self, m: &Message) -> bool {
        if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
            return false;
        }
        if self.cut.contains(&(m.from, m.to)) || self.cut.contains(&(m.to, m.from)) {
            return false;
        }
        if !self.nodes.contains_key(&m.to) {
            return false;
        }
        match &mut self.chaos {
            Some((rng, drop_percent)) => rng.range(0, 100) as u64 >= *drop_percent,
            None => true,
        }
    }

    /// Handles Readies and delivers messages until the cluster is quiet.
    fn process(&mut self) {
        for _ in 0..100_000 {
            let handled = self.handle_readies();
            if self.queue.is_empty() {
                if !handled {
                    return;
                }
                continue;
            }
            let m = match &mut self.chaos {
                Some((rng, _)) => {
                    let i = rng.range(0, self.queue.len());
                    self.queue.remove(i).unwrap()
                }
                None => self.queue.pop_front().unwrap(),
            };
            if self.delivers(&m) {
                let to = m.to;
                let _ = self.node_mut(to).step(m);
            }
        }
        panic!("the network did not become quiet");
    }

    fn tick(&mut self, id: u64, ticks: usize) {
        for _ in 0..ticks {
            self.node_mut(id).tick();
            self.process();
        }
    }

    fn tick_all(&mut self, ticks: usize) {
        for _ in 0..ticks {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node_mut(id).tick();
            }
            self.process();
        }
    }

    fn campaign(&mut self, id: u64) {
        self.node_mut(id).campaign().unwrap();
        self.process();
    }

    fn propose(&mut self, id: u64, data: &[u8]) -> raft::Result<()> {
        let r = self.node_mut(id).propose(data.to_vec());
        self.process();
        r
    }

    fn heartbeat(&mut self, leader: u64) {
        let hb = self.node(leader).heartbeat_timeout;
        self.tick(leader, hb);
    }

    fn leaders(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.raft.state == StateRole::Leader)
            .map(|n| n.raft.id)
            .collect()
    }

    fn data_applied(&self, id: u64) -> Vec<Vec<u8>> {
        self.applied[&id].values().filter(|(_, d)| !d.is_empty()).map(|(_, d)| d.clone()).collect()
    }

    /// State machine safety: nodes that applied an index applied the same entry.
    fn check_applied_agree(&self) {
        let mut seen: BTreeMap<u64, (u64, &Vec<u8>, u64)> = BTreeMap::new();
        for (&id, applied) in &self.applied {
            for (&index, (term, data)) in applied {
                let (t, d, other) = *seen.entry(index).or_insert((*term, data, id));
                assert!(
                    t == *term && d == data,
                    "nodes {other} and {id} applied different entries at index {index}: \
                     term {t} vs {term}"
                );
            }
        }
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, ..Default::default() }
}

fn msg(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    let mut m = raft::new_message(to, t);
    m.from = from;
    m.term = term;
    m
}

// ----- the raft log --------------------------------------------------------

fn log_with(stored: &[(u64, u64)]) -> raft::RaftLog<MemoryStorage> {
    let store = MemoryStorage::new();
    store.append(&stored.iter().map(|&(i, t)| entry(i, t)).collect::<Vec<_>>()).unwrap();
    raft::RaftLog::new(store).unwrap()
}

#[test]
fn raft_log_stable_and_unstable_parts() {
    let mut log = log_with(&[(1, 1), (2, 1), (3, 2)]);
    assert_eq!((log.first_index(), log.last_index(), log.stabled), (1, 3, 3));
    assert!(log.unstable_entries().is_empty());
    assert_eq!(log.append(&[entry(4, 2), entry(5, 3)]), 5);
    assert_eq!(log.unstable_entries(), &[entry(4, 2), entry(5, 3)]);
    assert_eq!(
        log.entries(2, 6).unwrap(),
        vec![entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 3)]
    );
    assert_eq!((log.term(5), log.term(6)), (Ok(3), Err(Error::Unavailable)));
    // A conflict inside the persisted part makes its suffix unstable again.
    assert_eq!(log.find_conflict(&[entry(2, 1), entry(3, 3)]), 3);
    assert_eq!(log.append(&[entry(3, 3)]), 3);
    assert_eq!((log.stabled, log.unstable_entries()), (2, &[entry(3, 3)][..]));
    log.store.append(&[entry(3, 3)]).unwrap();
    log.stable_to(3, 3);
    assert_eq!((log.stabled, log.unstable_entries().len()), (3, 0));
    log.stable_to(3, 2);
    assert_eq!(log.stabled, 3, "a stale stable_to is ignored");
}

#[test]
fn raft_log_commit_apply_and_up_to_date() {
    let mut log = log_with(&[(1, 1), (2, 1), (3, 2)]);
    assert!(!log.maybe_commit(2, 2), "entry 2 is of term 1");
    assert!(log.maybe_commit(2, 1));
    assert_eq!(log.next_committed_entries(), vec![entry(1, 1), entry(2, 1)]);
    log.applied_to(1);
    assert_eq!(log.next_committed_entries(), vec![entry(2, 1)]);
    assert!(log.has_next_committed_entries());
    log.applied_to(2);
    assert!(!log.has_next_committed_entries());
    assert!(log.is_up_to_date(3, 2) && log.is_up_to_date(1, 3));
    assert!(!log.is_up_to_date(2, 2) && !log.is_up_to_date(9, 1));
    assert_eq!(log.maybe_append(3, 2, 5, &[entry(4, 3)]), Some(4));
    assert_eq!(log.committed, 4, "min(leader commit, last new index)");
    assert_eq!(log.maybe_append(4, 2, 5, &[]), None, "term mismatch at 4");
}

#[test]
#[should_panic(expected = "applied_to")]
fn raft_log_applied_past_committed_panics() {
    let mut log = log_with(&[(1, 1)]);
    log.applied_to(1);
}

#[test]
fn raft_log_restore_from_snapshot() {
    let mut log = log_with(&[(1, 1), (2, 1)]);
    let snap = Snapshot {
        data: vec![],
        metadata: Some(raft::eraftpb::SnapshotMetadata { conf_state: None, index: 10, term: 4 }),
    };
    log.restore(snap);
    assert_eq!((log.first_index(), log.last_index(), log.committed, log.applied), (11, 10, 10, 10));
    assert_eq!((log.term(10), log.term(9)), (Ok(4), Err(Error::Compacted)));
    assert_eq!(log.entries(5, 11), Err(Error::Compacted));
    assert_eq!(log.append(&[entry(11, 4)]), 11);
    assert_eq!(log.entries(11, 12).unwrap(), vec![entry(11, 4)]);
}

// ----- elections ------------------------------------------------------

#[test]
fn single_node_campaign_wins_and_commits() {
    let mut net = Network::new(1, 1);
    net.campaign(1);
    let r = net.node(1);
    assert_eq!(r.state, StateRole::Leader);
    assert_eq!(r.term, 1);
    assert_eq!(r.raft_log.committed, 1, "the no-op entry commits at once");
    net.propose(1, b"x").unwrap();
    assert_eq!(net.data_applied(1), vec![b"x".to_vec()]);
}

#[test]
fn three_node_election() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    assert_eq!(net.leaders(), vec![1]);
    for id in 1..=3 {
        let r = net.node(id);
        assert_eq!((r.term, r.lead), (1, 1), "node {id}");
        assert_eq!(r.raft_log.committed, 1, "node {id} learns the no-op is committed");
    }
    assert_eq!(net.node(2).state, StateRole::Follower);
}

#[test]
fn election_by_ticking_elects_one_leader() {
    for seed in 0..10 {
        let mut net = Network::new(5, seed);
        net.tick_all(40);
        assert_eq!(net.leaders().len(), 1, "seed {seed}: {:?}", net.leaders());
    }
}

#[test]
fn randomized_timeout_in_range_and_reset() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut r = Raft::new(&config(1, 9), store).unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        r.become_follower(r.term + 1, 0);
        let t = r.randomized_election_timeout();
        assert!((10..20).contains(&t), "timeout {t} outside [10, 20)");
        seen.insert(t);
    }
    assert!(seen.len() > 5, "timeouts are random: {seen:?}");
}

#[test]
fn one_vote_per_term_and_up_to_date_check() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    store.append(&[entry(1, 1), entry(2, 2)]).unwrap();
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    let vote = |r: &mut Raft<MemoryStorage>, from, term, index, log_term| {
        let mut m = msg(from, 1, MessageType::MsgRequestVote, term);
        m.index = index;
        m.log_term = log_term;
        r.step(m).unwrap();
        let resp = r.msgs.pop().unwrap();
        assert_eq!(resp.msg_type(), MessageType::MsgRequestVoteResponse);
        !resp.reject
    };
    assert!(!vote(&mut r, 2, 3, 5, 1), "older last term loses");
    assert!(!vote(&mut r, 2, 3, 1, 2), "same last term, shorter log loses");
    assert!(vote(&mut r, 2, 3, 2, 2), "as up to date wins");
    assert!(!vote(&mut r, 3, 3, 9, 9), "already voted for 2 in term 3");
    assert!(vote(&mut r, 2, 3, 2, 2), "the same candidate again");
    assert!(vote(&mut r, 3, 4, 9, 9), "a new term, a new vote");
}

#[test]
fn candidate_steps_down_on_append_of_same_term() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    r.campaign();
    assert_eq!(r.state, StateRole::Candidate);
    let term = r.term;
    r.step(msg(2, 1, MessageType::MsgHeartbeat, term)).unwrap();
    assert_eq!((r.state, r.lead, r.term), (StateRole::Follower, 2, term));
}

#[test]
fn beat_and_hup_only_act_where_they_should() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    r.step(raft::new_message(0, MessageType::MsgBeat)).unwrap();
    assert!(r.msgs.is_empty(), "a follower ignores MsgBeat");
    r.become_candidate();
    r.become_leader();
    r.msgs.clear();
    let term = r.term;
    r.step(raft::new_message(0, MessageType::MsgHup)).unwrap();
    assert_eq!((r.state, r.term), (StateRole::Leader, term), "MsgHup on a leader is a no-op");
    r.step(raft::new_message(0, MessageType::MsgBeat)).unwrap();
    let kinds: Vec<_> = r.msgs.iter().map(|m| (m.to, m.msg_type())).collect();
    assert_eq!(kinds, vec![(2, MessageType::MsgHeartbeat), (3, MessageType::MsgHeartbeat)]);
}

#[test]
fn reconnected_stale_leader_steps_down() {
    let mut net = Network::new(3, 3);
    net.campaign(1);
    net.isolated.insert(1);
    // The stale leader keeps a proposal it cannot commit.
    net.propose(1, b"lost").unwrap();
    net.campaign(2);
    assert_eq!(net.node(2).state, StateRole::Leader);
    net.propose(2, b"kept").unwrap();
    net.isolated.clear();
    let committed_before = net.node(1).raft_log.committed;
    net.heartbeat(2);
    let r = net.node(1);
    assert_eq!((r.state, r.lead), (StateRole::Follower, 2));
    assert_eq!(r.term, net.node(2).term);
    assert!(committed_before <= 1);
    for id in 1..=3 {
        assert_eq!(net.data_applied(id), vec![b"kept".to_vec()], "node {id}");
    }
    net.check_applied_agree();
}

#[test]
fn dueling_candidates_resolve() {
    let mut net = Network::new(3, 5);
    net.cut.insert((1, 3));
    net.campaign(1);
    assert_eq!(net.node(1).state, StateRole::Leader);
    net.campaign(3);
    assert_eq!(net.node(3).state, StateRole::Candidate, "node 2 refuses: 3's log is behind");
    net.cut.clear();
    net.tick_all(60);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_ne!(leaders[0], 3, "a node with a stale log cannot win");
    net.propose(leaders[0], b"x").unwrap();
    for id in 1..=3 {
        assert_eq!(net.data_applied(id), vec![b"x".to_vec()], "node {id}");
    }
}

#[test]
fn isolated_follower_disrupts_leader_on_return() {
    let mut net = Network::new(3, 2);
    net.campaign(1);
    net.isolated.insert(3);
    net.tick(3, 40);
    assert!(net.node(3).term > 1, "the isolated node keeps campaigning");
    net.isolated.clear();
    net.tick(3, 40);
    assert!(net.node(1).term > 1, "its higher term makes the leader step down");
}

// ----- replication ----------------------------------------------------

#[test]
fn replication_commits_on_majority_and_catches_up() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.isolated.insert(3);
    net.propose(1, b"a").unwrap();
    net.propose(1, b"b").unwrap();
    assert_eq!(net.node(1).raft_log.committed, 3);
    assert_eq!(net.node(2).raft_log.committed, 3);
    assert_eq!(net.node(3).raft_log.last_index(), 1);
    net.isolated.clear();
    net.heartbeat(1);
    assert_eq!(net.data_applied(3), vec![b"a".to_vec(), b"b".to_vec()]);
    net.check_applied_agree();
}

#[test]
fn no_commit_without_quorum() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.isolated.extend([2, 3]);
    net.propose(1, b"a").unwrap();
    assert_eq!(net.node(1).raft_log.committed, 1);
    net.isolated.clear();
    net.heartbeat(1);
    assert_eq!(net.node(1).raft_log.committed, 2);
}

#[test]
fn follower_log_conflict_is_repaired() {
    // The paper's Figure 7 flavour: a follower with extra entries of old
    // terms and a follower missing entries, repaired by the new leader.
    let leader_log =
        [(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 5), (7, 5), (8, 6), (9, 6), (10, 6)];
    let follower_logs: [&[(u64, u64)]; 4] = [
        &[(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 5), (7, 5), (8, 6), (9, 6)],
        &[(1, 1), (2, 1), (3, 1), (4, 4)],
        &[
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 4),
            (5, 4),
            (6, 5),
            (7, 5),
            (8, 6),
            (9, 6),
            (10, 6),
            (11, 6),
            (12, 7),
        ],
        &[(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2), (7, 3), (8, 3), (9, 3), (10, 3), (11, 3)],
    ];
    for (case, follower_log) in follower_logs.iter().enumerate() {
        let mut net = Network { nodes: BTreeMap::new(), ..Network::new(0, 0) };
        for (id, log) in [(1u64, &leader_log[..]), (2, follower_log), (3, &[][..])] {
            let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
            let ents: Vec<Entry> = log.iter().map(|&(i, t)| entry(i, t)).collect();
            store.append(&ents).unwrap();
            store.set_hard_state(HardState { term: 7, vote: 0, commit: 0 });
            net.add(id, store, 1);
        }
        // Node 3 votes for the leader, node 2 (longer in some cases) need not.
        net.campaign(1);
        assert_eq!(net.node(1).state, StateRole::Leader, "case {case}");
        net.heartbeat(1);
        let leader_entries = net.node(1).raft_log.entries(1, 12).unwrap();
        for id in [2, 3] {
            let r = net.node(id);
            assert_eq!(r.raft_log.last_index(), 11, "case {case} node {id}");
            assert_eq!(r.raft_log.entries(1, 12).unwrap(), leader_entries, "case {case} node {id}");
            assert_eq!(r.raft_log.committed, 11, "case {case} node {id}");
        }
    }
}

#[test]
fn leader_commits_only_current_term_by_counting() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    store.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    store.set_hard_state(HardState { term: 2, vote: 0, commit: 0 });
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    r.become_candidate();
    r.become_leader();
    assert_eq!((r.term, r.raft_log.last_index()), (3, 3), "a no-op of term 3 at index 3");
    let mut resp = msg(2, 1, MessageType::MsgAppendResponse, 3);
    resp.index = 2;
    r.step(resp.clone()).unwrap();
    assert_eq!(r.raft_log.committed, 0, "entry 2 is of term 1: replicas are not counted");
    resp.index = 3;
    r.step(resp).unwrap();
    assert_eq!(r.raft_log.committed, 3, "the no-op of term 3 commits, and entry 2 with it");
}

#[test]
fn append_handling_table() {
    // (prev index, prev term, leader commit, entries) -> (reject, last index, commit)
    type Case = (u64, u64, u64, Vec<Entry>, bool, u64, u64);
    let cases: Vec<Case> = vec![
        (2, 3, 2, vec![], true, 2, 0),             // prev term mismatch
        (3, 3, 3, vec![], true, 2, 0),             // prev index past the end
        (1, 1, 1, vec![], false, 2, 1),            // commit = leader commit
        (0, 0, 1, vec![entry(1, 2)], false, 1, 1), // truncate and replace
        (2, 2, 3, vec![entry(3, 2), entry(4, 2)], false, 4, 3),
        (2, 2, 4, vec![entry(3, 2)], false, 3, 3), // commit = min(leader, last new)
        (1, 1, 4, vec![entry(2, 2)], false, 2, 2), // matching suffix kept
    ];
    for (i, (index, log_term, commit, ents, reject, last, committed)) in
        cases.into_iter().enumerate()
    {
        let store = MemoryStorage::new_with_conf_state(vec![1, 2]);
        store.append(&[entry(1, 1), entry(2, 2)]).unwrap();
        let mut r = Raft::new(&config(1, 1), store).unwrap();
        r.become_follower(2, 2);
        let mut m = msg(2, 1, MessageType::MsgAppend, 2);
        m.index = index;
        m.log_term = log_term;
        m.commit = commit;
        m.entries = ents;
        r.step(m).unwrap();
        let resp = r.msgs.pop().unwrap();
        assert_eq!(resp.reject, reject, "case {i}");
        assert_eq!(r.raft_log.last_index(), last, "case {i}");
        assert_eq!(r.raft_log.committed, committed, "case {i}");
    }
}

// ----- RawNode ----------------------------------------------------------

#[test]
fn rawnode_ready_advance_cycle_and_restart() {
    let store = MemoryStorage::new_with_conf_state(vec![1]);
    let mut node = RawNode::new(&config(1, 1), store.clone()).unwrap();
    assert!(!node.has_ready(), "a fresh node has nothing to do");
    node.campaign().unwrap();
    let rd = node.ready();
    assert_eq!(rd.soft_state.map(|s| (s.lead, s.raft_state)), Some((1, StateRole::Leader)));
    assert_eq!(rd.hard_state, Some(HardState { term: 1, vote: 1, commit: 1 }));
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.committed_entries, rd.entries, "the no-op is unstable and committed");
    store.set_hard_state(rd.hard_state.unwrap());
    store.append(&rd.entries).unwrap();
    node.advance(rd);
    assert!(!node.has_ready(), "nothing left after advance");

    node.propose(b"p".to_vec()).unwrap();
    let rd = node.ready();
    assert_eq!(rd.soft_state, None, "no role change");
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.entries[0].data, b"p");
    assert_eq!(rd.committed_entries, rd.entries);
    store.set_hard_state(rd.hard_state.unwrap());
    store.append(&rd.entries).unwrap();
    node.advance(rd);
    assert!(!node.has_ready());

    // Restart: the committed entries come back exactly once.
    let mut node = RawNode::new(&config(1, 1), store.clone()).unwrap();
    let rd = node.ready();
    assert_eq!(rd.hard_state, None);
    assert!(rd.entries.is_empty());
    assert_eq!(rd.committed_entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2]);
    node.advance(rd);
    assert!(!node.has_ready());
    // Restarting with `applied` skips what was applied.
    let mut c = config(1, 1);
    c.applied = 2;
    let node = RawNode::new(&c, store).unwrap();
    assert!(!node.has_ready());
}

#[test]
fn rawnode_rejects_local_messages_and_unknown_responders() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2]);
    let mut node = RawNode::new(&config(1, 1), store).unwrap();
    assert_eq!(node.step(raft::new_message(1, MessageType::MsgHup)), Err(Error::StepLocalMsg));
    let resp = msg(9, 1, MessageType::MsgAppendResponse, 0);
    assert_eq!(node.step(resp), Err(Error::StepPeerNotFound));
    assert_eq!(
        node.propose(b"x".to_vec()),
        Err(Error::ProposalDropped),
        "followers do not forward"
    );
}

// ----- snapshots ------------------------------------------------------

#[test]
fn lagging_node_catches_up_by_snapshot() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.isolated.insert(3);
    for i in 0..10u8 {
        net.propose(1, &[i]).unwrap();
    }
    let applied = net.node(1).raft_log.applied;
    assert_eq!(applied, 11);
    for id in [1, 2] {
        let store = &net.stores[&id];
        store.create_snapshot(applied, None, b"state".to_vec()).unwrap();
        store.compact(applied).unwrap();
    }
    // The first try finds the snapshot not ready; a later heartbeat retries.
    net.stores[&1].wl().set_snapshot_unavailable(1);
    net.isolated.clear();
    net.heartbeat(1);
    net.heartbeat(1);
    let r3 = net.node(3);
    assert_eq!(r3.raft_log.committed, 11);
    assert_eq!(net.stores[&3].first_index().unwrap(), 12, "node 3's log starts after the snapshot");
    assert_eq!(net.stores[&3].rl().hard_state().commit, 11);
    net.propose(1, b"after").unwrap();
    assert_eq!(net.data_applied(3).last().unwrap(), b"after");
    assert_eq!(net.node(3).prs.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn restore_sets_membership_and_ignores_older_snapshots() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2]);
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    let snap = |index, term, nodes: Vec<u64>| Snapshot {
        data: vec![],
        metadata: Some(raft::eraftpb::SnapshotMetadata {
            conf_state: Some(raft::eraftpb::ConfState { nodes }),
            index,
            term,
        }),
    };
    let mut m = msg(2, 1, MessageType::MsgSnapshot, 5);
    m.snapshot = Some(snap(11, 4, vec![1, 2, 3]));
    r.step(m).unwrap();
    assert_eq!((r.lead, r.term), (2, 5), "the leader is learned from the snapshot");
    assert_eq!((r.raft_log.last_index(), r.raft_log.last_term()), (11, 4));
    assert_eq!(r.raft_log.committed, 11);
    assert_eq!(r.prs.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(!r.restore(snap(10, 4, vec![1])), "older snapshot ignored");
    assert_eq!(r.prs.len(), 3);
}

#[test]
fn restart_from_snapshot_plus_entries() {
    let store = MemoryStorage::new();
    store
        .apply_snapshot(Snapshot {
            data: b"state".to_vec(),
            metadata: Some(raft::eraftpb::SnapshotMetadata {
                conf_state: Some(raft::eraftpb::ConfState { nodes: vec![1, 2, 3] }),
                index: 5,
                term: 2,
            }),
        })
        .unwrap();
    store.append(&[entry(6, 2), entry(7, 3)]).unwrap();
    store.set_hard_state(HardState { term: 3, vote: 1, commit: 7 });
    let mut node = RawNode::new(&config(1, 1), store).unwrap();
    let r = &node.raft;
    assert_eq!((r.term, r.vote, r.raft_log.committed, r.raft_log.applied), (3, 1, 7, 5));
    assert_eq!((r.raft_log.first_index(), r.raft_log.last_index()), (6, 7));
    assert_eq!(r.prs.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    let rd = node.ready();
    assert_eq!(rd.committed_entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![6, 7]);
    assert_eq!(rd.snapshot, Snapshot::default(), "the stored snapshot is not handed out again");
}

// ----- membership and leader transfer -----------------------------------

#[test]
fn add_node_through_conf_change() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.add(4, MemoryStorage::new(), 1);
    let cc =
        ConfChange { change_type: ConfChangeType::AddNode as i32, node_id: 4, context: vec![] };
    net.node_mut(1).propose_conf_change(cc.clone()).unwrap();
    net.process();
    assert_eq!(net.node(1).prs.len(), 4);
    net.propose(1, b"x").unwrap();
    net.heartbeat(1);
    assert_eq!(net.data_applied(4), vec![cc.encode_to_vec(), b"x".to_vec()]);
    assert!(net.node(4).prs.contains_key(&4), "node 4 learned it is a member");
    // A duplicate AddNode is harmless.
    net.node_mut(1).propose_conf_change(cc).unwrap();
    net.process();
    assert_eq!(net.node(1).prs.len(), 4);
    net.check_applied_agree();
}

#[test]
fn pending_conf_change_blocks_a_second_one() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.isolated.extend([2, 3]);
    let cc = |id| ConfChange {
        change_type: ConfChangeType::RemoveNode as i32,
        node_id: id,
        context: vec![],
    };
    net.node_mut(1).propose_conf_change(cc(3)).unwrap();
    assert_eq!(net.node_mut(1).propose_conf_change(cc(2)), Err(Error::ProposalDropped));
    net.isolated.clear();
    net.heartbeat(1);
    assert_eq!(net.node(1).prs.len(), 2, "node 3 removed once applied");
    net.node_mut(1).propose_conf_change(cc(2)).unwrap();
}

#[test]
fn removing_a_node_lowers_the_quorum() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2]);
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    r.become_candidate();
    r.become_leader();
    let mut ok = msg(2, 1, MessageType::MsgAppendResponse, 1);
    ok.index = 1;
    r.step(ok).unwrap();
    assert_eq!(r.raft_log.committed, 1);
    let mut prop = raft::new_message(0, MessageType::MsgPropose);
    prop.entries = vec![Entry { data: b"x".to_vec(), ..Default::default() }];
    r.step(prop).unwrap();
    assert_eq!(r.raft_log.committed, 1, "needs node 2");
    r.remove_node(2);
    assert_eq!(r.raft_log.committed, 2, "a quorum of one now");
}

#[test]
fn leader_transfer_cases() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.node_mut(1).transfer_leader(2);
    net.process();
    assert_eq!(net.leaders(), vec![2], "to an up-to-date follower");

    // Requested via a follower, to a slow follower that catches up first.
    net.isolated.insert(3);
    net.propose(2, b"a").unwrap();
    net.isolated.clear();
    net.node_mut(1).transfer_leader(3);
    net.process();
    assert_eq!(net.leaders(), vec![3]);
    assert_eq!(net.data_applied(3), vec![b"a".to_vec()]);

    // To itself and to a non-member: nothing happens.
    let term = net.node(3).term;
    net.node_mut(3).transfer_leader(3);
    net.node_mut(3).transfer_leader(9);
    net.process();
    assert_eq!((net.leaders(), net.node(3).term), (vec![3], term));
    assert_eq!(net.node(3).lead_transferee, None);

    // Proposals are refused while transferring; the transfer is abandoned
    // after an election timeout.
    net.isolated.insert(1);
    net.node_mut(3).transfer_leader(1);
    net.process();
    assert_eq!(net.node(3).lead_transferee, Some(1));
    assert_eq!(net.propose(3, b"b"), Err(Error::ProposalDropped));
    let et = net.node(3).election_timeout;
    net.tick(3, et);
    assert_eq!(net.node(3).lead_transferee, None);
    net.propose(3, b"b").unwrap();
}

#[test]
fn leader_transfer_edge_cases() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    // A second target replaces the first while neither can answer.
    net.isolated.extend([2, 3]);
    net.node_mut(1).transfer_leader(2);
    assert_eq!(net.node(1).lead_transferee, Some(2));
    net.node_mut(1).transfer_leader(3);
    assert_eq!(net.node(1).lead_transferee, Some(3));
    // Transferring back to the leader cancels.
    net.node_mut(1).transfer_leader(1);
    assert_eq!(net.node(1).lead_transferee, None);
    // A higher-term vote request abandons a pending transfer.
    net.node_mut(1).transfer_leader(2);
    let mut vote = msg(3, 1, MessageType::MsgRequestVote, 5);
    vote.index = 9;
    vote.log_term = 9;
    net.node_mut(1).step(vote).unwrap();
    assert_eq!((net.node(1).state, net.node(1).lead_transferee), (StateRole::Follower, None));

    // To a removed node: nothing.
    let mut net = Network::new(3, 1);
    net.campaign(1);
    let cc =
        ConfChange { change_type: ConfChangeType::RemoveNode as i32, node_id: 3, context: vec![] };
    net.node_mut(1).propose_conf_change(cc).unwrap();
    net.process();
    net.node_mut(1).transfer_leader(3);
    net.process();
    assert_eq!((net.leaders(), net.node(1).lead_transferee), (vec![1], None));
}

#[test]
fn leader_transfer_after_snapshot() {
    let mut net = Network::new(3, 1);
    net.campaign(1);
    net.isolated.insert(3);
    for i in 0..5u8 {
        net.propose(1, &[i]).unwrap();
    }
    let applied = net.node(1).raft_log.applied;
    let store = &net.stores[&1];
    store.create_snapshot(applied, None, b"state".to_vec()).unwrap();
    store.compact(applied).unwrap();
    net.isolated.clear();
    net.node_mut(1).transfer_leader(3);
    net.process();
    assert_eq!(net.leaders(), vec![3], "the target got the snapshot, then took over");
    net.propose(3, b"y").unwrap();
    assert_eq!(net.data_applied(1).last().unwrap(), b"y");
}

#[test]
fn timeout_now_at_a_non_member_does_nothing() {
    let store = MemoryStorage::new_with_conf_state(vec![2, 3]);
    let mut r = Raft::new(&config(1, 1), store).unwrap();
    r.step(msg(2, 1, MessageType::MsgTimeoutNow, 1)).unwrap();
    assert_eq!(r.state, StateRole::Follower);
    assert!(r.msgs.is_empty());
}

// ----- seeded random network ---------------------------------------------

/// One random run: ticks, proposals, partitions, crashes, drops and
/// reordering, then a heal. Returns every leader by term and what each node
/// applied.
fn random_run(seed: u64) -> (BTreeMap<u64, u64>, BTreeMap<u64, Applied>) {
    let mut rng = Rng::new(seed, 1000);
    let n = if seed.is_multiple_of(2) { 3 } else { 5 };
    let mut net = Network::new(n, seed);
    net.chaos = Some((Rng::new(seed, 2000), 10));
    let mut proposed = 0u32;
    for _ in 0..400 {
        match rng.range(0, 100) {
            0..=39 => net.tick_all(1),
            40..=59 => {
                let id = rng.range(1, n as usize + 1) as u64;
                net.tick(id, 1);
            }
            60..=84 => {
                for leader in net.leaders() {
                    proposed += 1;
                    let _ = net.propose(leader, format!("{seed}-{proposed}").as_bytes());
                }
            }
            85..=87 => {
                let id = rng.range(1, n as usize + 1) as u64;
                net.restart(id, seed);
            }
            88..=96 => {
                net.isolated.clear();
                let id = rng.range(1, n as usize + 1) as u64;
                net.isolated.insert(id);
            }
            _ => net.isolated.clear(),
        }
        net.check_applied_agree();
    }
    // Heal: a leader emerges and a new entry reaches everyone.
    net.isolated.clear();
    net.chaos = None;
    net.tick_all(50);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "seed {seed}: one leader after healing, got {leaders:?}");
    net.propose(leaders[0], b"final").unwrap();
    net.tick_all(2);
    for id in 1..=n {
        assert_eq!(
            net.data_applied(id).last().map(Vec::as_slice),
            Some(&b"final"[..]),
            "seed {seed} node {id}"
        );
    }
    net.check_applied_agree();
    (net.leaders, net.applied)
}

#[test]
fn random_networks_keep_raft_safety() {
    let (mut terms_with_leader, mut entries_applied) = (0, 0);
    for seed in 0..40u64 {
        let (leaders, applied) = random_run(seed);
        terms_with_leader += leaders.len();
        entries_applied += applied.values().map(BTreeMap::len).sum::<usize>();
    }
    eprintln!(
        "random networks: {terms_with_leader} terms with a leader, {entries_applied} entries applied"
    );
    assert!(terms_with_leader > 80, "the random runs change leaders: {terms_with_leader}");
    assert!(entries_applied > 1000, "the random runs commit entries: {entries_applied}");
}

#[test]
fn same_seed_same_run() {
    assert_eq!(random_run(7), random_run(7), "a run depends on its seed only");
    assert_ne!(random_run(7).0, random_run(8).0);
}

// ----- the graded harness's budgets --------------------------------------------

/// Runs the harness's property test with `sabotage` and returns its panic
/// message (it must panic).
fn sabotaged_run_message(
    lab: &str,
    features: harness::chaos::Features,
    sabotage: harness::chaos::Sabotage,
) -> String {
    let test = format!("sabotaged_{lab}");
    let run = std::panic::catch_unwind(|| {
        harness::chaos::check_seeds_sabotaged(&test, lab, features, sabotage)
    });
    let payload = run.expect_err("a sabotaged run must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("the failure carries a message")
}

/// The seed the harness runs first (`TINYKV_SEED`, else 1).
fn first_seed() -> u64 {
    std::env::var("TINYKV_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1)
}

fn expect_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "expected {part:?} in the failure message:\n{message}");
    }
}

/// A cluster that never hears a message elects no leader: the run stops at
/// the end of its heal budget (tick 300 + 300, not when the runner's
/// timeout kills it) and says what did not happen, with the seed and the
/// replay commands.
#[test]
fn harness_stuck_cluster_fails_fast_naming_what_did_not_happen() {
    use harness::chaos::{Features, HEAL_TICKS, Sabotage};
    let seed = first_seed();
    for (lab, f) in [
        ("2aa", Features::default()),
        (
            "2ac",
            Features { raw_node: true, proposals: true, restarts: true, ..Features::default() },
        ),
    ] {
        let m = sabotaged_run_message(lab, f, Sabotage::DropEverything);
        expect_contains(
            &m,
            &[
                &format!("sabotaged_{lab}: seed {seed} of "),
                &format!("(TINYKV_SEED={seed})"),
                "liveness violated at tick 600 (a sabotaged run: DropEverything)",
                &format!("no leader elected within {HEAL_TICKS} ticks of the heal at tick 300"),
                "last steps:",
                &format!(
                    "TINYKV_SEED={seed} cargo test -p raft --test project{lab} sabotaged_{lab}"
                ),
                &format!("make project{lab} TEST=sabotaged_{lab} SEED={seed}"),
            ],
        );
    }
}

/// A node whose `advance` does not mark the `Ready`'s entries stable has a
/// `Ready` forever: the harness stops after `MAX_READY_ROUNDS` rounds
/// instead of looping, and names the entries handed out again.
#[test]
fn harness_ready_that_never_empties_fails_fast() {
    use harness::chaos::{Features, MAX_READY_ROUNDS, Sabotage};
    let seed = first_seed();
    let f = Features { raw_node: true, proposals: true, ..Features::default() };
    let m = sabotaged_run_message("2ac", f, Sabotage::AdvanceWithoutEntries);
    expect_contains(
        &m,
        &[
            &format!("sabotaged_2ac: seed {seed} of "),
            "Ready/advance makes progress violated at tick ",
            " (a sabotaged run: AdvanceWithoutEntries): node ",
            &format!("still has a Ready after {MAX_READY_ROUNDS} Ready/advance rounds"),
            "again (not marked stable on advance?)",
            &format!("TINYKV_SEED={seed} cargo test -p raft --test project2ac sabotaged_2ac"),
        ],
    );
}

/// The reference leader pipelines (raft/src/progress.rs): with appends of
/// 1 to 3 entries and 1 or 2 of them unanswered, its windows are full
/// most of the time, so bounded appends, full pipelines, rejections back
/// to probing and lost answers all happen; the hostile network, crashes,
/// compaction, membership changes and transfers keep every safety
/// property, and the cluster still converges once healed.
#[test]
fn pipelining_with_small_windows_keeps_raft_safe() {
    let f = harness::chaos::Features {
        raw_node: true,
        proposals: true,
        restarts: true,
        compaction: true,
        membership: true,
        transfers: true,
        small_windows: true,
    };
    let stats =
        harness::chaos::check_seeds("pipelining_with_small_windows_keeps_raft_safe", "2ab", f);
    assert!(stats.entries_applied >= 10 * stats.runs, "the runs should apply entries: {stats:?}");
}
