//! Lab 2ac graded suite: the `RawNode` / `Ready` contract.
//!
//! Run with `make project2ac`. The tests drive a `RawNode` the way the store
//! of lab 2b will: take a `Ready`, persist what it says into the
//! `MemoryStorage`, apply its committed entries, `advance`. A failure says
//! what was expected, what happened, and where `docs/src/lab2a-raft.md`
//! explains it.

mod harness;

use raft::eraftpb::{Entry, HardState, MessageType};
use raft::{Config, MemoryStorage, RawNode, Ready, StateRole, Storage};

const SECTION: &str = "See docs/src/lab2a-raft.md, \"Part C (2ac): the Ready contract\".";

fn config(id: u64, peers: Vec<u64>) -> Config {
    Config { election_tick: 10, heartbeat_tick: 1, seed: 7, ..Config::new(id, peers) }
}

fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry { term, index, data: data.to_vec(), ..Default::default() }
}

/// Persists a `Ready` the way the contract says (hard state, then entries),
/// and returns it for inspection. Does not advance.
fn persist(storage: &MemoryStorage, rd: &Ready) {
    if let Some(hs) = &rd.hard_state {
        storage.set_hard_state(*hs);
    }
    storage.append(&rd.entries).expect("append the Ready's entries to MemoryStorage");
}

/// Handles every pending `Ready` and returns the data of the entries it
/// applied, in order.
fn drain(node: &mut RawNode<MemoryStorage>, storage: &MemoryStorage) -> Vec<Vec<u8>> {
    let mut applied = Vec::new();
    for _ in 0..10 {
        if !node.has_ready() {
            return applied;
        }
        let rd = node.ready();
        persist(storage, &rd);
        applied.extend(rd.committed_entries.iter().map(|e| e.data.clone()));
        node.advance(rd);
    }
    panic!(
        "has_ready() stayed true after 10 Ready/advance rounds with nothing new happening. {SECTION}"
    );
}

fn data_of(entries: &[Entry]) -> Vec<(u64, Vec<u8>)> {
    entries.iter().map(|e| (e.index, e.data.clone())).collect()
}

#[test]
fn first_ready_after_campaign_and_proposal_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1]);
    let mut node = RawNode::new(&config(1, vec![1]), storage.clone()).expect("RawNode::new");
    assert!(!node.has_ready(), "a fresh node with an empty log has nothing to report. {SECTION}");

    node.campaign().expect("campaign");
    let rd = node.ready();
    let soft = rd.soft_state.expect(
        "the Ready after winning an election must carry the new soft state (leader 1, Leader)",
    );
    assert_eq!(
        (soft.lead, soft.raft_state),
        (1, StateRole::Leader),
        "soft state after a single-node campaign. {SECTION}"
    );
    let hs = rd
        .hard_state
        .expect("the Ready after a campaign must carry the new hard state (term 1, vote 1)");
    assert_eq!((hs.term, hs.vote), (1, 1), "hard state after a single-node campaign. {SECTION}");
    assert_eq!(
        rd.entries.len(),
        1,
        "the new leader's noop must be in Ready.entries, to be persisted. {SECTION}"
    );
    persist(&storage, &rd);
    node.advance(rd);
    drain(&mut node, &storage);

    node.propose(b"somedata".to_vec()).expect("propose on the leader");
    assert!(node.has_ready(), "after a proposal, has_ready() must be true. {SECTION}");
    let rd = node.ready();
    assert_eq!(
        data_of(&rd.entries),
        vec![(2, b"somedata".to_vec())],
        "Ready.entries must hold exactly the new, unstable entry (index 2, after the noop). {SECTION}"
    );
    assert_eq!(
        data_of(&rd.committed_entries),
        vec![(2, b"somedata".to_vec())],
        "a single-node cluster commits a proposal at once: the same Ready must list it in committed_entries. {SECTION}"
    );
    assert_eq!(
        rd.hard_state.as_ref().map(|hs| hs.commit),
        Some(2),
        "the hard state must report commit index 2. {SECTION}"
    );
    assert!(
        rd.soft_state.is_none(),
        "the soft state did not change, so Ready.soft_state must be None, got {:?}. {SECTION}",
        rd.soft_state
    );
    persist(&storage, &rd);
    node.advance(rd);
    assert!(
        !node.has_ready(),
        "after advance with nothing new, has_ready() must be false. {SECTION}"
    );
}

#[test]
fn advance_marks_entries_stable_and_applied_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1]);
    let mut node = RawNode::new(&config(1, vec![1]), storage.clone()).expect("RawNode::new");
    node.campaign().expect("campaign");
    drain(&mut node, &storage);
    for i in 0..3u8 {
        node.propose(vec![b'a' + i]).expect("propose");
    }
    let rd = node.ready();
    assert_eq!(rd.entries.len(), 3, "three proposals, three unstable entries. {SECTION}");
    assert_eq!(rd.committed_entries.len(), 3, "three committed entries to apply. {SECTION}");
    persist(&storage, &rd);
    node.advance(rd);
    let log = &node.raft().raft_log;
    assert_eq!(
        log.stabled, 4,
        "after advance, every entry handed out in Ready.entries is stable (stabled = 4). {SECTION}"
    );
    assert_eq!(
        log.applied, 4,
        "after advance, every committed entry handed out is applied (applied = 4). {SECTION}"
    );
    assert!(
        log.unstable_entries().is_empty(),
        "no unstable entries remain after advance. {SECTION}"
    );
    let rd = node.ready();
    assert!(
        rd.entries.is_empty() && rd.committed_entries.is_empty(),
        "a Ready after advance must not repeat entries already handed out; got entries {:?}, committed {:?}. {SECTION}",
        data_of(&rd.entries),
        data_of(&rd.committed_entries)
    );
}

#[test]
fn ready_carries_vote_requests_with_the_hard_state_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&config(1, vec![1, 2, 3]), storage).expect("RawNode::new");
    node.campaign().expect("campaign");
    assert!(node.has_ready(), "a campaign must produce a Ready. {SECTION}");
    let rd = node.ready();
    let hs = rd.hard_state.expect(
        "the Ready of a campaign must carry the new hard state (term 1, vote 1), so the vote is persisted before the requests go out",
    );
    assert_eq!(
        (hs.term, hs.vote),
        (1, 1),
        "hard state after campaigning in a 3-node cluster. {SECTION}"
    );
    let mut targets: Vec<u64> = rd
        .messages
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgRequestVote)
        .map(|m| m.to)
        .collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        vec![2, 3],
        "Ready.messages must hold the vote requests to 2 and 3. {SECTION}"
    );
    assert!(rd.committed_entries.is_empty(), "nothing is committed yet. {SECTION}");
    node.advance(rd);
    assert!(
        !node.has_ready(),
        "the messages moved into the Ready; after advance nothing is left. {SECTION}"
    );
}

#[test]
fn restart_yields_exactly_the_committed_entries_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1]);
    let entries = [entry(1, 1, b""), entry(1, 2, b"foo"), entry(1, 3, b"bar")];
    storage.append(&entries).expect("append");
    storage.set_hard_state(HardState { term: 1, vote: 1, commit: 2 });

    let mut node =
        RawNode::new(&config(1, vec![1]), storage).expect("RawNode::new after a restart");
    assert!(
        node.has_ready(),
        "a restarted node with committed, unapplied entries has a Ready. {SECTION}"
    );
    let rd = node.ready();
    assert_eq!(
        data_of(&rd.committed_entries),
        vec![(1, b"".to_vec()), (2, b"foo".to_vec())],
        "after a restart, Ready.committed_entries must be exactly the committed entries 1..=2 (entry 3 is not committed). {SECTION}"
    );
    assert!(
        rd.entries.is_empty(),
        "entries read back from storage are stable: Ready.entries must be empty, got {:?}. {SECTION}",
        data_of(&rd.entries)
    );
    assert!(
        rd.hard_state.is_none(),
        "the hard state equals the stored one: Ready.hard_state must be None, got {:?}. {SECTION}",
        rd.hard_state
    );
    node.advance(rd);
    assert!(!node.has_ready(), "after applying the committed entries nothing is left. {SECTION}");
}

#[test]
fn restart_skips_entries_already_applied_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1]);
    storage
        .append(&[entry(1, 1, b"a"), entry(1, 2, b"b"), entry(1, 3, b"c"), entry(1, 4, b"d")])
        .expect("append");
    storage.set_hard_state(HardState { term: 1, vote: 1, commit: 3 });
    let cfg = Config { applied: 2, ..config(1, vec![1]) };
    let mut node = RawNode::new(&cfg, storage).expect("RawNode::new");
    let rd = node.ready();
    assert_eq!(
        data_of(&rd.committed_entries),
        vec![(3, b"c".to_vec())],
        "with Config.applied = 2 and commit 3, only entry 3 is left to apply. {SECTION}"
    );
}

#[test]
fn restarted_leader_commits_new_proposals_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1]);
    let mut node = RawNode::new(&config(1, vec![1]), storage.clone()).expect("RawNode::new");
    node.campaign().expect("campaign");
    drain(&mut node, &storage);
    node.propose(b"before".to_vec()).expect("propose");
    assert_eq!(
        drain(&mut node, &storage),
        vec![b"before".to_vec()],
        "the proposal is applied once. {SECTION}"
    );
    drop(node);

    // Restart from what was persisted, as if the process had stopped.
    let cfg = Config { applied: storage.rl().hard_state().commit, ..config(1, vec![1]) };
    let mut node = RawNode::new(&cfg, storage.clone()).expect("RawNode::new after a restart");
    assert!(
        drain(&mut node, &storage).is_empty(),
        "nothing applied before the restart is applied again. {SECTION}"
    );
    node.campaign().expect("campaign after a restart");
    let applied = drain(&mut node, &storage);
    assert_eq!(
        applied,
        vec![Vec::<u8>::new()],
        "the new term's noop is applied after the restart. {SECTION}"
    );
    assert_eq!(
        node.raft().term,
        2,
        "a restarted node continues from its persisted term. {SECTION}"
    );
    node.propose(b"after".to_vec()).expect("propose after restart");
    assert_eq!(
        drain(&mut node, &storage),
        vec![b"after".to_vec()],
        "proposals after a restart are committed and applied once. {SECTION}"
    );
}

#[test]
fn heartbeat_tick_gives_a_ready_with_only_messages_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&config(1, vec![1, 2, 3]), storage.clone()).expect("RawNode::new");
    node.campaign().expect("campaign");
    drain(&mut node, &storage);
    let mut vote = raft::new_message(1, MessageType::MsgRequestVoteResponse);
    vote.from = 2;
    vote.term = 1;
    node.step(vote).expect("step a granted vote");
    assert_eq!(
        node.raft().state,
        StateRole::Leader,
        "two of three votes make node 1 leader. {SECTION}"
    );
    drain(&mut node, &storage);
    assert!(!node.has_ready(), "everything was handled. {SECTION}");

    node.tick(); // heartbeat_tick is 1
    assert!(
        node.has_ready(),
        "a heartbeat tick on a leader queues heartbeats: has_ready() must be true when there are messages to send, even if nothing else changed. {SECTION}"
    );
    let rd = node.ready();
    let mut beats: Vec<u64> = rd
        .messages
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgHeartbeat)
        .map(|m| m.to)
        .collect();
    beats.sort_unstable();
    assert_eq!(beats, vec![2, 3], "the Ready must carry the heartbeats to 2 and 3. {SECTION}");
    assert!(
        rd.entries.is_empty() && rd.hard_state.is_none(),
        "a heartbeat changes no entries and no hard state. {SECTION}"
    );
    node.advance(rd);
}

/// The application persists a `Ready` while the node keeps stepping
/// messages. A newer leader may replace the entries of that `Ready` before
/// `advance`: advance must then leave the new entries unstable (they are
/// not in storage yet), so the next `Ready` hands them out. Marking
/// everything stable up to the old last index instead loses them: storage
/// keeps the replaced entries, and the node reads those back.
#[test]
fn advance_keeps_entries_replaced_after_the_ready_unstable_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&config(1, vec![1, 2, 3]), storage.clone()).expect("RawNode::new");
    let append = |from: u64, term: u64, prev: (u64, u64), entries: Vec<Entry>| {
        let mut m = raft::new_message(1, MessageType::MsgAppend);
        (m.from, m.term, m.index, m.log_term, m.entries) = (from, term, prev.0, prev.1, entries);
        m
    };
    let first = vec![entry(1, 1, b"a"), entry(1, 2, b"b"), entry(1, 3, b"c")];
    node.step(append(2, 1, (0, 0), first)).expect("step leader 2's append");
    let rd = node.ready();
    assert_eq!(
        data_of(&rd.entries),
        vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())],
        "follower 1 after an append of (1,1) (2,1) (3,1) from leader 2 of term 1: Ready.entries. {SECTION}"
    );
    // While the application persists `rd`, leader 3 of term 2 replaces 2 and 3.
    let second = vec![entry(2, 2, b"x"), entry(2, 3, b"y")];
    node.step(append(3, 2, (1, 1), second)).expect("step leader 3's append");
    persist(&storage, &rd);
    node.advance(rd);
    let what = "follower 1 took a Ready of (1,1) (2,1) (3,1); before its advance, leader 3 of \
                term 2 replaced entries 2 and 3 with (2,2) (3,2)";
    let log = &node.raft().raft_log;
    let terms: Vec<Option<u64>> = (1..=3).map(|i| log.term(i).ok()).collect();
    assert_eq!(
        terms,
        vec![Some(1), Some(2), Some(2)],
        "{what}; after advance, the terms of entries 1..=3 in the node's log (the Ready's \
         entries are stable only if the entry at its last index still has the Ready's term). {SECTION}"
    );
    assert!(
        node.has_ready(),
        "{what}; after advance, the new entries still wait to be persisted: has_ready() must be \
         true (stabled {}, {} unstable). {SECTION}",
        log.stabled,
        log.unstable_entries().len()
    );
    let rd = node.ready();
    let handed: Vec<(u64, u64)> = rd.entries.iter().map(|e| (e.index, e.term)).collect();
    assert!(
        handed.ends_with(&[(2, 2), (3, 2)]),
        "{what}; the next Ready.entries must hand out (2,2) (3,2) to persist, got {handed:?}. {SECTION}"
    );
    persist(&storage, &rd);
    node.advance(rd);
    drain(&mut node, &storage);
    let stored: Vec<(u64, u64, Vec<u8>)> = storage
        .entries(1, 4, None)
        .expect("entries 1..=3 in storage")
        .into_iter()
        .map(|e| (e.index, e.term, e.data))
        .collect();
    assert_eq!(
        stored,
        vec![(1, 1, b"a".to_vec()), (2, 2, b"x".to_vec()), (3, 2, b"y".to_vec())],
        "{what}; once every Ready is handled, storage must hold leader 3's log. {SECTION}"
    );
    let log = &node.raft().raft_log;
    assert!(
        log.stabled == 3 && log.unstable_entries().is_empty(),
        "{what}; at the end everything is stable: expected stabled 3 and nothing unstable, got \
         stabled {} and {} unstable. {SECTION}",
        log.stabled,
        log.unstable_entries().len()
    );
}

// ----- property tests ---------------------------------------------------------

/// Nodes driven through `RawNode`, crashing and restarting from their
/// storage on a hostile network: every safety property after every step
/// (a vote or an entry that was not persisted before a message shows up
/// here); once healed, a last proposal reaches every node.
#[test]
fn random_crashes_keep_raft_safe_2ac() {
    let f = harness::chaos::Features {
        raw_node: true,
        proposals: true,
        restarts: true,
        ..Default::default()
    };
    let stats = harness::chaos::check_seeds("random_crashes_keep_raft_safe_2ac", "2ac", f);
    assert!(stats.restarts >= stats.runs, "the runs should restart nodes: {stats:?}");
    assert!(stats.entries_applied >= 50 * stats.runs, "the runs should commit entries: {stats:?}");
}

/// `has_ready` is true for each kind of news on its own: a soft state or a
/// hard state that differs from the last one handed out, unstable
/// entries, a pending snapshot (the other two kinds, committed entries and
/// messages, are checked alone by the restart and heartbeat tests). The
/// test makes each one by hand on a quiet follower and undoes it.
#[test]
fn each_kind_of_news_alone_makes_a_ready_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&config(1, vec![1, 2, 3]), storage).expect("RawNode::new");
    assert!(!node.has_ready(), "a fresh follower has nothing to report. {SECTION}");
    let quiet = |node: &RawNode<MemoryStorage>, after: &str| {
        assert!(!node.has_ready(), "{after}, has_ready() must be false again. {SECTION}");
    };

    let soft = node.prev_soft_state;
    node.prev_soft_state = raft::SoftState { lead: 3, ..soft };
    assert!(
        node.has_ready(),
        "the soft state (no leader) differs from the last one handed out (leader 3), and \
         nothing else is new: has_ready() must be true. {SECTION}"
    );
    node.prev_soft_state = soft;
    quiet(&node, "with the soft state put back");

    let hard = node.prev_hard_state;
    node.prev_hard_state = HardState { term: hard.term + 1, ..hard };
    assert!(
        node.has_ready(),
        "the hard state differs from the last one handed out (term {} there, {} now), and \
         nothing else is new: has_ready() must be true. {SECTION}",
        hard.term + 1,
        hard.term
    );
    node.prev_hard_state = hard;
    quiet(&node, "with the hard state put back");

    node.raft.raft_log.append(&[entry(0, 1, b"unstable")]);
    assert!(
        node.has_ready(),
        "an entry waits to be persisted (index 1, term 0, appended by the test), and nothing \
         else is new: has_ready() must be true. {SECTION}"
    );
    let rd = node.ready();
    assert_eq!(data_of(&rd.entries), vec![(1, b"unstable".to_vec())], "Ready.entries. {SECTION}");
    assert!(rd.hard_state.is_none() && rd.messages.is_empty(), "only the entry is new. {SECTION}");
}

/// A snapshot waiting to be applied is news on its own.
#[test]
fn a_pending_snapshot_alone_makes_a_ready_2ac() {
    let storage = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&config(1, vec![1, 2, 3]), storage).expect("RawNode::new");
    assert!(!node.has_ready(), "a fresh follower has nothing to report. {SECTION}");
    let mut snap = raft::eraftpb::Snapshot::default();
    snap.metadata.get_or_insert_default().index = 5;
    snap.metadata.get_or_insert_default().term = 1;
    node.raft.raft_log.pending_snapshot = Some(snap);
    assert!(
        node.has_ready(),
        "a snapshot waits to be applied (set by the test), and nothing else is new: \
         has_ready() must be true. {SECTION}"
    );
}
