//! Graded suite of lab 3a: membership changes and leader transfer.
//!
//! Small clusters on the deterministic network of `harness` (bare `Raft`
//! nodes; a committed conf change is "applied" by calling `add_node` /
//! `remove_node` on the nodes, as the application would), and single
//! `RawNode`s driven through their `Ready`s. `MsgTransferLeader` names the
//! transfer target in `from`. Every failure says what was expected, what
//! happened, and which section of the lab document explains it.

mod harness;

use harness::{Network, Spec, hint_in, msg, new_raft, propose_msg};

/// The chapter this lab's failure messages point to.
const DOC: &str = "lab3a-membership.md";
use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
};
use raft::{Error, MemoryStorage, Raft, RawNode, StateRole};

// ----- helpers ---------------------------------------------------------------

// Sections of the lab document.
const MEMBERS: &str = "Membership changes (lab 3a)";
const TRANSFER: &str = "Leader transfer (lab 3a)";

/// `n` fresh nodes (ids and members 1..=n) where node 1 won an election.
fn cluster_led_by_1(n: u64) -> Network {
    let mut net = Network::fresh(n);
    net.hup(1);
    assert_eq!(net.leader(), Some(1), "setup: node 1 should lead; nodes: {}", net.summary());
    net
}

/// Asks node `at` to transfer leadership to `target` (named in `from`).
/// Stepped straight into `at` (the request is local to it): the network's
/// link filters would otherwise treat it as a message from `target`.
fn transfer(net: &mut Network, target: u64, at: u64) {
    let r = net.peer_mut(at);
    let _ = r.step(msg(target, at, MessageType::MsgTransferLeader, 0));
    let out = std::mem::take(&mut r.msgs);
    net.send(out);
}

/// Proposes `data` at node `id` and delivers what follows; returns the
/// step's result (e.g. `Err(ProposalDropped)`).
fn propose(net: &mut Network, id: u64, data: &[u8]) -> raft::Result<()> {
    let r = net.peer_mut(id);
    let res = r.step(propose_msg(id, data));
    let out = std::mem::take(&mut r.msgs);
    net.send(out);
    res
}

fn members(r: &Raft<MemoryStorage>) -> Vec<u64> {
    r.prs.keys().copied().collect()
}

/// Whether node `r`'s log (from its first index) holds an entry with `data`.
fn log_has(r: &Raft<MemoryStorage>, data: &[u8]) -> bool {
    let l = &r.raft_log;
    l.entries(l.first_index(), l.last_index() + 1).unwrap().iter().any(|e| e.data == data)
}

/// The index of the entry carrying `data` in `r`'s log.
fn index_of(r: &Raft<MemoryStorage>, data: &[u8]) -> u64 {
    let l = &r.raft_log;
    l.entries(l.first_index(), l.last_index() + 1)
        .unwrap()
        .iter()
        .find(|e| e.data == data)
        .map(|e| e.index)
        .unwrap_or_else(|| panic!("setup: {:?} is not in node {}'s log", data, r.id))
}

/// Positions in the trace of the messages of type `t` sent to `to`.
fn trace_positions(net: &Network, t: MessageType, to: u64) -> Vec<usize> {
    net.trace
        .iter()
        .enumerate()
        .filter(|(_, m)| m.msg_type() == t && m.to == to)
        .map(|(i, _)| i)
        .collect()
}

fn count_in_trace(net: &Network, t: MessageType, to: u64) -> usize {
    trace_positions(net, t, to).len()
}

/// Checks that node 1 still leads, has no transfer in progress and accepts
/// a proposal: what a transfer request that "does nothing" leaves behind.
fn check_no_transfer(net: &mut Network, what: &str, term_before: u64) {
    assert_eq!(
        (net.leader(), net.term(1)),
        (Some(1), term_before),
        "{what}: expected node 1 to stay leader of term {term_before}; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(
        net.peer(1).lead_transferee,
        None,
        "{what}: expected no leader transfer in progress. {}",
        hint_in(DOC, TRANSFER)
    );
    let res = propose(net, 1, b"after-noop");
    assert_eq!(
        res,
        Ok(()),
        "{what}: expected the leader to keep accepting proposals, got {res:?}. {}",
        hint_in(DOC, TRANSFER)
    );
}

fn cc(t: ConfChangeType, id: u64) -> ConfChange {
    ConfChange { change_type: t as i32, node_id: id, context: vec![] }
}

/// A single-node `RawNode` cluster {1} that has elected itself and handled
/// its first `Ready`s.
fn single_rawnode() -> (RawNode<MemoryStorage>, MemoryStorage) {
    let store = MemoryStorage::new_with_conf_state(vec![1]);
    let mut node = RawNode::new(&harness::config(1), store.clone()).unwrap();
    node.campaign().unwrap();
    assert_eq!(node.raft.state, StateRole::Leader, "setup: a single node should win at once");
    drain(&mut node, &store);
    (node, store)
}

/// `Ready`/`advance` rounds [`drain`] allows before it gives up: with
/// nothing new stepped in, a node needs one or two.
const MAX_READY_ROUNDS: usize = 10;

/// Handles every `Ready` by the contract (no peers to send to) and returns
/// the committed entries, in order; conf changes are applied. Panics if the
/// node still has a `Ready` after [`MAX_READY_ROUNDS`] rounds.
fn drain(node: &mut RawNode<MemoryStorage>, store: &MemoryStorage) -> Vec<Entry> {
    let mut committed = Vec::new();
    for _ in 0..MAX_READY_ROUNDS {
        if !node.has_ready() {
            return committed;
        }
        let rd = node.ready();
        persist(store, &rd);
        for e in &rd.committed_entries {
            if e.entry_type() == EntryType::EntryConfChange {
                let change = ConfChange::decode(e.data.as_slice()).unwrap();
                let cs = node.apply_conf_change(&change);
                store.wl().set_conf_state(cs);
            }
        }
        committed.extend(rd.committed_entries.iter().cloned());
        node.advance(rd);
    }
    if node.has_ready() {
        let rd = node.ready();
        let span = |ents: &[Entry]| ents.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>();
        panic!(
            "node {} still has a Ready after {MAX_READY_ROUNDS} Ready/advance rounds with nothing \
             new stepped in: entries (index, term) {:?}, committed entries {:?}, hard state {:?}, \
             {} messages. advance must mark the Ready's entries stable and its committed entries \
             applied. {} {}",
            node.raft.id,
            span(&rd.entries),
            span(&rd.committed_entries),
            rd.hard_state,
            rd.messages.len(),
            harness::hint("Part C (2ac): the Ready contract"),
            harness::ctx(harness::seed())
        );
    }
    committed
}

fn persist(store: &MemoryStorage, rd: &raft::Ready) {
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    store.append(&rd.entries).unwrap();
}

/// Moves node `id`'s unstable entries into its storage, marks everything
/// committed as applied, takes a snapshot at the commit index and compacts
/// the log up to it. Returns the snapshot index.
fn snapshot_and_compact(net: &mut Network, id: u64) -> u64 {
    let store = net.storage[&id].clone();
    let r = net.peer_mut(id);
    let ents = r.raft_log.unstable_entries().to_vec();
    store.append(&ents).unwrap();
    if let Some(last) = ents.last() {
        r.raft_log.stable_to(last.index, last.term);
    }
    let committed = r.raft_log.committed;
    r.raft_log.applied_to(committed);
    store.set_hard_state(r.hard_state());
    store.create_snapshot(committed, None, b"state".to_vec()).unwrap();
    store.compact(committed).unwrap();
    committed
}

/// Leader 1 of {1, 2, 3} with node 3 cut off and behind (two proposals it
/// lacks), and a transfer to node 3 pending.
fn pending_transfer_to_3() -> Network {
    let mut net = cluster_led_by_1(3);
    net.isolate(3);
    propose(&mut net, 1, b"a").unwrap();
    propose(&mut net, 1, b"b").unwrap();
    transfer(&mut net, 3, 1);
    assert_eq!(
        net.peer(1).lead_transferee,
        Some(3),
        "after MsgTransferLeader naming node 3 (behind, unreachable): expected the leader to \
         record node 3 as the transfer target while it catches up. {}",
        hint_in(DOC, TRANSFER)
    );
    net
}

// ----- membership --------------------------------------------------------------

#[test]
fn add_node_grows_membership_and_quorum_3a() {
    // Nodes 1..=3 form the cluster; node 4 is new (knows no members).
    let specs = vec![
        Spec::Raft(new_raft(1, vec![1, 2, 3], 10, 1)),
        Spec::Raft(new_raft(2, vec![1, 2, 3], 10, 1)),
        Spec::Raft(new_raft(3, vec![1, 2, 3], 10, 1)),
        Spec::Raft(new_raft(4, vec![], 10, 1)),
    ];
    let mut net = Network::from_specs(specs, |_| {});
    net.hup(1);
    assert_eq!(net.leader(), Some(1), "setup: node 1 should lead");
    propose(&mut net, 1, b"a").unwrap();
    for id in 1..=3 {
        net.peer_mut(id).add_node(4);
    }
    let last = net.peer(1).raft_log.last_index();
    assert_eq!(
        members(net.peer(1)),
        vec![1, 2, 3, 4],
        "after add_node(4): expected the leader's members [1, 2, 3, 4]. {}",
        hint_in(DOC, MEMBERS)
    );
    let pr = net.peer(1).prs[&4].clone();
    assert!(
        pr.matched == 0 && (1..=last + 1).contains(&pr.next_index),
        "after add_node(4): expected the new member's progress to know nothing yet (matched 0, \
         next index in 1..={}); got matched {}, next {}. {}",
        last + 1,
        pr.matched,
        pr.next_index,
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(
        net.peer(1).quorum(),
        3,
        "with 4 members the quorum should be 3. {}",
        hint_in(DOC, MEMBERS)
    );
    // Only nodes 1 and 2 reachable: 2 of 4 is no majority any more.
    net.isolate(3);
    net.isolate(4);
    propose(&mut net, 1, b"b").unwrap();
    let b = index_of(net.peer(1), b"b");
    assert!(
        net.peer(1).raft_log.committed < b,
        "with members {{1,2,3,4}} and only 1 and 2 holding entry {b}, it must not commit (needs \
         3 of 4); leader commit is {}. {}",
        net.peer(1).raft_log.committed,
        hint_in(DOC, MEMBERS)
    );
    // Node 4 comes back: the leader catches it up and the entry commits.
    net.recover();
    net.isolate(3);
    net.beat(1);
    net.beat(1);
    assert!(
        net.peer(1).raft_log.committed >= b,
        "once the new node 4 holds entry {b}, nodes 1, 2, 4 make a majority of 4 and it should \
         commit; leader commit is {}. {}",
        net.peer(1).raft_log.committed,
        hint_in(DOC, MEMBERS)
    );
    assert!(
        log_has(net.peer(4), b"a") && log_has(net.peer(4), b"b"),
        "expected the new node 4 to receive the whole log from the leader. {}",
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn remove_node_stops_replication_to_it_3a() {
    let mut net = cluster_led_by_1(3);
    for id in 1..=3 {
        net.peer_mut(id).remove_node(3);
    }
    assert_eq!(
        members(net.peer(1)),
        vec![1, 2],
        "after remove_node(3): expected the leader's members [1, 2]. {}",
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(
        net.peer(1).quorum(),
        2,
        "with 2 members the quorum is 2. {}",
        hint_in(DOC, MEMBERS)
    );
    let before = net.trace.len();
    propose(&mut net, 1, b"x").unwrap();
    net.beat(1);
    let to3: Vec<&Message> = net.trace[before..].iter().filter(|m| m.to == 3).collect();
    assert!(
        to3.is_empty(),
        "after removing node 3 the leader should send it nothing (no appends, no heartbeats); \
         it sent {} message(s), first {}. {}",
        to3.len(),
        harness::describe(to3[0]),
        hint_in(DOC, MEMBERS)
    );
    let x = index_of(net.peer(1), b"x");
    assert!(
        net.peer(1).raft_log.committed >= x && net.peer(2).raft_log.committed >= x,
        "entry {x} is held by both members 1 and 2 and should be committed on both; commits are \
         {} and {}. {}",
        net.peer(1).raft_log.committed,
        net.peer(2).raft_log.committed,
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn remove_last_other_node_leaves_single_committer_3a() {
    let mut net = cluster_led_by_1(2);
    net.isolate(2);
    propose(&mut net, 1, b"x").unwrap();
    let x = index_of(net.peer(1), b"x");
    assert!(net.peer(1).raft_log.committed < x, "setup: x needs node 2 to commit");
    net.peer_mut(1).remove_node(2);
    net.flush();
    assert_eq!(
        members(net.peer(1)),
        vec![1],
        "after remove_node(2): expected the single member [1]. {}",
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(
        net.peer(1).raft_log.committed,
        x,
        "after removing node 2 the leader alone is a majority: its pending entry {x} should \
         commit at once (remove_node re-checks the commit index). {}",
        hint_in(DOC, MEMBERS)
    );
    propose(&mut net, 1, b"y").unwrap();
    let y = index_of(net.peer(1), b"y");
    assert_eq!(
        (net.state(1), net.peer(1).raft_log.committed),
        (StateRole::Leader, y),
        "the single remaining node should stay leader and commit a new proposal ({y}) at once. \
         {}",
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn pending_entry_commits_when_removal_lowers_quorum_3a() {
    let mut net = cluster_led_by_1(4);
    net.isolate(3);
    net.isolate(4);
    propose(&mut net, 1, b"x").unwrap();
    let x = index_of(net.peer(1), b"x");
    assert!(
        net.peer(1).raft_log.committed < x,
        "setup: with 4 members, 2 holders of entry {x} are no majority"
    );
    net.peer_mut(1).remove_node(4);
    net.flush();
    assert_eq!(
        net.peer(1).raft_log.committed,
        x,
        "after removing node 4, nodes 1 and 2 are a majority of {{1,2,3}}: the leader should \
         commit entry {x} right away (remove_node re-checks the commit). {}",
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(
        net.peer(2).raft_log.committed,
        x,
        "the leader should tell node 2 about the new commit index {x} at once. {}",
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn duplicate_add_node_is_harmless_3a() {
    let mut net = cluster_led_by_1(3);
    propose(&mut net, 1, b"a").unwrap();
    let before = net.peer(1).prs.clone();
    net.peer_mut(1).add_node(2);
    net.peer_mut(1).add_node(1);
    assert_eq!(
        net.peer(1).prs,
        before,
        "adding existing members again should change nothing (not even their progress). {}",
        hint_in(DOC, MEMBERS)
    );
    net.isolate(3);
    propose(&mut net, 1, b"b").unwrap();
    let b = index_of(net.peer(1), b"b");
    assert!(
        net.peer(1).raft_log.committed >= b,
        "after a duplicate AddNode the quorum is still 2 of 3: entry {b} held by 1 and 2 should \
         commit; commit is {}. {}",
        net.peer(1).raft_log.committed,
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn rawnode_proposes_normal_and_conf_change_entries_3a() {
    let (mut node, store) = single_rawnode();
    node.propose(b"data".to_vec()).unwrap();
    let add2 = cc(ConfChangeType::AddNode, 2);
    node.propose_conf_change(add2.clone()).unwrap();
    assert!(node.has_ready(), "expected a Ready after two proposals");
    let rd = node.ready();
    let kinds: Vec<(EntryType, Vec<u8>)> =
        rd.entries.iter().map(|e| (e.entry_type(), e.data.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (EntryType::EntryNormal, b"data".to_vec()),
            (EntryType::EntryConfChange, add2.encode_to_vec())
        ],
        "expected the Ready's entries: a normal entry with the data, then a conf-change entry \
         holding the encoded ConfChange. {}",
        hint_in(DOC, MEMBERS)
    );
    persist(&store, &rd);
    assert_eq!(
        rd.committed_entries.len(),
        2,
        "a single-node leader commits its proposals at once. {}",
        hint_in(DOC, MEMBERS)
    );
    let cs = node.apply_conf_change(&add2);
    assert_eq!(
        cs,
        ConfState { nodes: vec![1, 2] },
        "apply_conf_change(AddNode 2) should return the new membership. {}",
        hint_in(DOC, MEMBERS)
    );
    node.advance(rd);
    let cs = node.apply_conf_change(&cc(ConfChangeType::RemoveNode, 2));
    assert_eq!(
        cs,
        ConfState { nodes: vec![1] },
        "apply_conf_change(RemoveNode 2) should return the new membership. {}",
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn second_conf_change_waits_until_first_applied_3a() {
    let (mut node, store) = single_rawnode();
    node.propose_conf_change(cc(ConfChangeType::AddNode, 2)).unwrap();
    let res = node.propose_conf_change(cc(ConfChangeType::AddNode, 3));
    assert_eq!(
        res,
        Err(Error::ProposalDropped),
        "a second conf change proposed before the first is applied should be dropped \
         (pending_conf_index). {}",
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(
        node.propose(b"normal".to_vec()),
        Ok(()),
        "a pending conf change must not block normal proposals. {}",
        hint_in(DOC, MEMBERS)
    );
    let last = node.raft.raft_log.last_index();
    let applied = drain(&mut node, &store);
    assert_eq!(
        applied.iter().filter(|e| e.entry_type() == EntryType::EntryConfChange).count(),
        1,
        "expected exactly one conf change in the log (the dropped one never appended). {}",
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(members(&node.raft), vec![1, 2], "setup: AddNode 2 applied");
    let res = node.propose_conf_change(cc(ConfChangeType::AddNode, 3));
    assert_eq!(
        res,
        Ok(()),
        "once the first conf change is applied, the next one should be accepted. {}",
        hint_in(DOC, MEMBERS)
    );
    assert_eq!(
        node.raft.raft_log.last_index(),
        last + 1,
        "expected the accepted conf change appended at {}. {}",
        last + 1,
        hint_in(DOC, MEMBERS)
    );
}

#[test]
fn new_leader_counts_unapplied_conf_change_as_pending_3a() {
    // Index 2 holds a conf change that this node never applied.
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut e2 = Entry {
        index: 2,
        term: 1,
        data: cc(ConfChangeType::AddNode, 4).encode_to_vec(),
        ..Default::default()
    };
    e2.set_entry_type(EntryType::EntryConfChange);
    store.append(&[Entry { index: 1, term: 1, ..Default::default() }, e2]).unwrap();
    store.set_hard_state(HardState { term: 1, vote: 0, commit: 0 });
    let mut r = Raft::new(&harness::config(1), store).unwrap();
    r.become_candidate();
    r.become_leader();
    r.msgs.clear();
    let mut m = raft::new_message(0, MessageType::MsgPropose);
    let mut e =
        Entry { data: cc(ConfChangeType::AddNode, 5).encode_to_vec(), ..Default::default() };
    e.set_entry_type(EntryType::EntryConfChange);
    m.entries = vec![e];
    let res = r.step(m);
    assert_eq!(
        res,
        Err(Error::ProposalDropped),
        "a new leader whose log holds an unapplied conf change (index 2) must treat it as \
         pending and drop another conf change. {}",
        hint_in(DOC, MEMBERS)
    );
}

// ----- leader transfer -----------------------------------------------------------

#[test]
fn transfer_to_up_to_date_node_and_back_3a() {
    let mut net = cluster_led_by_1(3);
    let t = net.term(1);
    transfer(&mut net, 2, 1);
    assert_eq!(
        (net.leader(), net.term(2)),
        (Some(2), t + 1),
        "after MsgTransferLeader naming up-to-date node 2: expected node 2 to lead term {} at \
         once (MsgTimeoutNow, then an election); nodes: {}. {}",
        t + 1,
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(net.state(1), StateRole::Follower, "the old leader should follow node 2");
    assert_eq!(
        count_in_trace(&net, MessageType::MsgTimeoutNow, 2),
        1,
        "expected exactly one MsgTimeoutNow to node 2. {}",
        hint_in(DOC, TRANSFER)
    );
    transfer(&mut net, 1, 2);
    assert_eq!(
        net.leader(),
        Some(1),
        "transferring back to node 1: expected node 1 to lead again; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(propose(&mut net, 1, b"x"), Ok(()), "the new leader should accept proposals");
}

#[test]
fn transfer_requested_via_follower_3a() {
    let mut net = cluster_led_by_1(3);
    // Node 2 (a follower) is asked to hand leadership to node 3.
    transfer(&mut net, 3, 2);
    let forwarded = net
        .trace
        .iter()
        .any(|m| m.msg_type() == MessageType::MsgTransferLeader && m.to == 1 && m.from == 3);
    assert!(
        forwarded,
        "a follower should forward MsgTransferLeader (target 3 in `from`) to its leader 1; \
         trace: {}. {}",
        harness::describe_all(&net.trace),
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(
        net.leader(),
        Some(3),
        "after the forwarded request node 3 should lead; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
}

#[test]
fn transfer_to_slow_follower_catches_it_up_first_3a() {
    let mut net = pending_transfer_to_3();
    let last = net.peer(1).raft_log.last_index();
    assert_eq!(
        count_in_trace(&net, MessageType::MsgTimeoutNow, 3),
        0,
        "node 3 lacks entries up to {last}: no MsgTimeoutNow before it catches up. {}",
        hint_in(DOC, TRANSFER)
    );
    net.recover();
    net.beat(1);
    let tn = trace_positions(&net, MessageType::MsgTimeoutNow, 3);
    assert!(
        !tn.is_empty(),
        "once reachable, node 3 should be caught up and then sent MsgTimeoutNow; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    let caught_up_before = net.trace[..tn[0]].iter().any(|m| {
        m.msg_type() == MessageType::MsgAppendResponse
            && m.from == 3
            && !m.reject
            && m.index >= last
    });
    assert!(
        caught_up_before,
        "MsgTimeoutNow went to node 3 before it acknowledged the leader's last index {last}. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(
        net.leader(),
        Some(3),
        "after catching up, node 3 should win the election; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    assert!(log_has(net.peer(3), b"b"), "the new leader should hold every entry");
}

#[test]
fn transfer_after_snapshot_3a() {
    let mut net = cluster_led_by_1(3);
    net.isolate(3);
    for d in [b"a", b"b", b"c"] {
        propose(&mut net, 1, d).unwrap();
    }
    let snap = snapshot_and_compact(&mut net, 1);
    assert!(snap >= 4, "setup: snapshot at {snap}");
    net.recover();
    transfer(&mut net, 3, 1);
    let snaps = trace_positions(&net, MessageType::MsgSnapshot, 3);
    let tn = trace_positions(&net, MessageType::MsgTimeoutNow, 3);
    assert!(
        !snaps.is_empty(),
        "node 3 needs compacted entries: the leader should send it a snapshot while \
         transferring; trace: {}. {}",
        harness::describe_all(&net.trace),
        hint_in(DOC, TRANSFER)
    );
    assert!(
        !tn.is_empty() && tn[0] > snaps[0],
        "after node 3 installs the snapshot (and is up to date), the leader should send it \
         MsgTimeoutNow; MsgSnapshot at {snaps:?}, MsgTimeoutNow at {tn:?} in the trace. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(
        net.leader(),
        Some(3),
        "node 3 should lead after the transfer; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
}

#[test]
fn transfer_to_self_is_noop_3a() {
    let mut net = cluster_led_by_1(3);
    let t = net.term(1);
    transfer(&mut net, 1, 1);
    assert_eq!(
        count_in_trace(&net, MessageType::MsgTimeoutNow, 1),
        0,
        "a transfer to the leader itself should send no MsgTimeoutNow. {}",
        hint_in(DOC, TRANSFER)
    );
    check_no_transfer(&mut net, "transfer to the leader itself", t);
}

#[test]
fn transfer_to_non_member_is_noop_3a() {
    let mut net = cluster_led_by_1(3);
    let t = net.term(1);
    transfer(&mut net, 9, 1);
    assert_eq!(
        net.trace.iter().filter(|m| m.to == 9).count(),
        0,
        "a transfer to node 9 (not a member) should send node 9 nothing. {}",
        hint_in(DOC, TRANSFER)
    );
    check_no_transfer(&mut net, "transfer to non-member 9", t);
}

#[test]
fn transfer_to_removed_node_does_nothing_3a() {
    let mut net = cluster_led_by_1(3);
    for id in 1..=3 {
        net.peer_mut(id).remove_node(3);
    }
    let t = net.term(1);
    let before = net.trace.len();
    transfer(&mut net, 3, 1);
    let to3 = net.trace[before..].iter().filter(|m| m.to == 3).count();
    assert_eq!(
        to3,
        0,
        "node 3 was removed: a transfer to it should send it nothing. {}",
        hint_in(DOC, TRANSFER)
    );
    check_no_transfer(&mut net, "transfer to removed node 3", t);
}

#[test]
fn removing_the_target_cancels_a_pending_transfer_3a() {
    let mut net = pending_transfer_to_3();
    net.peer_mut(1).remove_node(3);
    assert_eq!(
        net.peer(1).lead_transferee,
        None,
        "removing the transfer target should cancel the transfer. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(
        propose(&mut net, 1, b"c"),
        Ok(()),
        "with the transfer cancelled the leader should accept proposals again. {}",
        hint_in(DOC, TRANSFER)
    );
}

#[test]
fn proposals_refused_while_transferring_3a() {
    let mut net = pending_transfer_to_3();
    let last = net.peer(1).raft_log.last_index();
    let res = propose(&mut net, 1, b"during");
    assert_eq!(
        res,
        Err(Error::ProposalDropped),
        "while a leader transfer is in progress the leader should refuse proposals. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(
        net.peer(1).raft_log.last_index(),
        last,
        "a refused proposal must not be appended. {}",
        hint_in(DOC, TRANSFER)
    );
    net.recover();
    net.beat(1);
    assert_eq!(net.leader(), Some(3), "setup: the transfer completes once node 3 is back");
    assert!(
        net.raft_ids().iter().all(|&id| !log_has(net.peer(id), b"during")),
        "the refused proposal must appear in no log. {}",
        hint_in(DOC, TRANSFER)
    );
}

#[test]
fn pending_transfer_abandoned_after_election_timeout_3a() {
    let mut net = pending_transfer_to_3();
    let timeout = net.peer(1).election_timeout;
    net.tick(1, timeout / 2);
    assert_eq!(
        net.peer(1).lead_transferee,
        Some(3),
        "{} ticks into the transfer (election timeout {timeout}) it should still be pending. {}",
        timeout / 2,
        hint_in(DOC, TRANSFER)
    );
    net.tick(1, timeout - timeout / 2);
    assert_eq!(
        net.peer(1).lead_transferee,
        None,
        "after an election timeout ({timeout} ticks) without node 3 taking over, the leader \
         should abandon the transfer. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(net.leader(), Some(1), "node 1 should still lead");
    assert_eq!(
        propose(&mut net, 1, b"after"),
        Ok(()),
        "an abandoned transfer should let proposals through again. {}",
        hint_in(DOC, TRANSFER)
    );
}

#[test]
fn pending_transfer_abandoned_on_higher_term_vote_3a() {
    let mut net = pending_transfer_to_3();
    let t = net.term(1);
    // Node 2 (up to date) campaigns in term t + 1; node 1 votes for it.
    net.hup(2);
    assert_eq!(
        (net.state(1), net.peer(1).lead_transferee),
        (StateRole::Follower, None),
        "a vote request of a higher term should make the leader a follower and abandon its \
         transfer to node 3. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!((net.leader(), net.term(2)), (Some(2), t + 1), "setup: node 2 won term {}", t + 1);
    net.recover();
    net.beat(2);
    assert_eq!(
        count_in_trace(&net, MessageType::MsgTimeoutNow, 3),
        0,
        "the abandoned transfer must not send MsgTimeoutNow later. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(net.leader(), Some(2), "node 2 should keep leading; nodes: {}", net.summary());
}

#[test]
fn transfer_back_to_leader_cancels_pending_transfer_3a() {
    let mut net = pending_transfer_to_3();
    let t = net.term(1);
    transfer(&mut net, 1, 1);
    assert_eq!(
        net.peer(1).lead_transferee,
        None,
        "a transfer request naming the current leader should cancel the pending transfer to \
         node 3. {}",
        hint_in(DOC, TRANSFER)
    );
    net.recover();
    net.beat(1);
    net.beat(1);
    assert_eq!(
        count_in_trace(&net, MessageType::MsgTimeoutNow, 3),
        0,
        "after the cancel, node 3 catching up must not trigger MsgTimeoutNow. {}",
        hint_in(DOC, TRANSFER)
    );
    check_no_transfer(&mut net, "after cancelling the transfer", t);
}

#[test]
fn second_target_replaces_first_3a() {
    let mut net = pending_transfer_to_3();
    transfer(&mut net, 2, 1);
    assert_eq!(
        net.leader(),
        Some(2),
        "a second transfer request (to up-to-date node 2) should replace the pending one to \
         node 3 and complete at once; nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    net.recover();
    net.beat(2);
    assert_eq!(
        count_in_trace(&net, MessageType::MsgTimeoutNow, 3),
        0,
        "the replaced target 3 must never get MsgTimeoutNow. {}",
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(net.leader(), Some(2), "node 2 should keep leading; nodes: {}", net.summary());
}

#[test]
fn timeout_now_at_removed_node_does_nothing_3a() {
    let mut net = cluster_led_by_1(3);
    for id in 1..=3 {
        net.peer_mut(id).remove_node(3);
    }
    let t = net.term(3);
    let before = net.trace.len();
    net.send(vec![msg(1, 3, MessageType::MsgTimeoutNow, t)]);
    let votes =
        net.trace[before..].iter().filter(|m| m.msg_type() == MessageType::MsgRequestVote).count();
    assert_eq!(
        (net.state(3), net.term(3), votes),
        (StateRole::Follower, t, 0),
        "MsgTimeoutNow at removed node 3 should do nothing (no campaign, no new term, no vote \
         requests); nodes: {}. {}",
        net.summary(),
        hint_in(DOC, TRANSFER)
    );
    assert_eq!(net.leader(), Some(1), "node 1 should still lead");
    // A node that never was a member behaves the same.
    let mut outsider = new_raft(7, vec![], 10, 1);
    outsider.step(msg(1, 7, MessageType::MsgTimeoutNow, 0)).ok();
    assert_eq!(
        (outsider.state, outsider.term, outsider.msgs.len()),
        (StateRole::Follower, 0, 0),
        "MsgTimeoutNow at a node that is not a member should do nothing. {}",
        hint_in(DOC, TRANSFER)
    );
}

// ----- property tests ---------------------------------------------------------

/// Everything at once: crashes, compaction, members added and removed and
/// leadership transferred on a hostile network; every safety property after
/// every step, and liveness once healed.
#[test]
fn random_membership_and_transfers_keep_raft_safe_3a() {
    let f = harness::chaos::Features {
        raw_node: true,
        proposals: true,
        restarts: true,
        compaction: true,
        membership: true,
        transfers: true,
        ..Default::default()
    };
    let stats =
        harness::chaos::check_seeds("random_membership_and_transfers_keep_raft_safe_3a", "3a", f);
    assert!(stats.conf_changes_applied >= stats.runs, "the runs should change members: {stats:?}");
    assert!(stats.leader_changes >= 3 * stats.runs, "the runs should move leaders: {stats:?}");
}

// ----- pending conf changes and transfer, entry by entry ---------------------------

/// Leader 1 of {1, 2, 3} elected without a network over `log` (index,
/// term, whether a conf change; none applied), its messages cleared.
fn raft_leader_over(log: &[(u64, u64, bool)]) -> Raft<MemoryStorage> {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let entries: Vec<Entry> = log
        .iter()
        .map(|&(index, term, conf)| {
            let mut e = Entry { index, term, ..Default::default() };
            if conf {
                e.data = cc(ConfChangeType::AddNode, 9).encode_to_vec();
                e.set_entry_type(EntryType::EntryConfChange);
            }
            e
        })
        .collect();
    store.append(&entries).unwrap();
    let term = log.last().map_or(0, |e| e.1);
    store.set_hard_state(HardState { term, vote: 0, commit: 0 });
    let mut r = Raft::new(&harness::config(1), store).unwrap();
    r.become_candidate();
    r.become_leader();
    r.msgs.clear();
    r
}

fn conf_change_entry(id: u64) -> Entry {
    let mut e =
        Entry { data: cc(ConfChangeType::AddNode, id).encode_to_vec(), ..Default::default() };
    e.set_entry_type(EntryType::EntryConfChange);
    e
}

/// A new leader whose unapplied entries hold no conf change has none
/// pending: it takes a conf change at once.
#[test]
fn new_leader_with_only_normal_unapplied_entries_takes_a_conf_change_3a() {
    let mut r = raft_leader_over(&[(1, 1, false), (2, 1, false)]);
    let mut m = msg(1, 1, MessageType::MsgPropose, 0);
    m.entries = vec![conf_change_entry(4)];
    assert_eq!(
        r.step(m),
        Ok(()),
        "a new leader over the unapplied normal entries 1 and 2 (no conf change among them) must \
         accept a conf change (pending_conf_index {} must name a conf-change entry, or be 0). {}",
        r.pending_conf_index,
        hint_in(DOC, MEMBERS)
    );
}

/// `pending_conf_index` is the index the conf change gets, also when a
/// proposal holds other entries before it.
#[test]
fn pending_conf_index_is_the_conf_change_entrys_own_index_3a() {
    let mut r = raft_leader_over(&[]);
    let last = r.raft_log.last_index();
    let mut m = msg(1, 1, MessageType::MsgPropose, 0);
    m.entries =
        vec![Entry { data: b"normal".to_vec(), ..Default::default() }, conf_change_entry(4)];
    r.step(m).expect("a proposal of a normal entry and a conf change");
    assert_eq!(
        r.pending_conf_index,
        last + 2,
        "leader 1 with last index {last} took a proposal of [a normal entry, a conf change]: the \
         conf change is at {}, so pending_conf_index must be {} (got {}). {}",
        last + 2,
        last + 2,
        r.pending_conf_index,
        hint_in(DOC, MEMBERS)
    );
}

/// Once the pending conf change itself is applied (applied index equal to
/// it, nothing after it), the next conf change is accepted.
#[test]
fn conf_change_accepted_as_soon_as_the_pending_one_is_applied_3a() {
    let (mut node, store) = single_rawnode();
    node.propose_conf_change(cc(ConfChangeType::AddNode, 2)).unwrap();
    let at = node.raft.raft_log.last_index();
    drain(&mut node, &store);
    assert_eq!(
        node.raft.raft_log.applied, at,
        "setup: the conf change at {at} is the last applied"
    );
    assert_eq!(
        node.propose_conf_change(cc(ConfChangeType::AddNode, 3)),
        Ok(()),
        "the pending conf change at {at} is applied (applied index {at}): the next one must be \
         accepted. {}",
        hint_in(DOC, MEMBERS)
    );
}

/// During a transfer, a success from the target that still leaves it
/// behind makes the leader send it the rest at once, not at the next
/// heartbeat.
#[test]
fn lagging_transfer_target_is_sent_the_rest_on_its_answer_3a() {
    let mut r = raft_leader_over(&[]);
    for data in [b"a", b"b"] {
        r.step(propose_msg(1, data)).unwrap();
    }
    let last = r.raft_log.last_index();
    let mut ack = msg(2, 1, MessageType::MsgAppendResponse, r.term);
    ack.index = last;
    r.step(ack).unwrap();
    assert_eq!(r.raft_log.committed, last, "setup: node 2's answer commits up to {last}");
    let _ = r.step(msg(3, 1, MessageType::MsgTransferLeader, 0));
    assert_eq!(r.lead_transferee, Some(3), "setup: a transfer to node 3 is pending");
    r.msgs.clear();
    let mut ack = msg(3, 1, MessageType::MsgAppendResponse, r.term);
    ack.index = 1;
    r.step(ack).unwrap();
    let to_3: Vec<&Message> =
        r.msgs.iter().filter(|m| m.to == 3 && m.msg_type() == MessageType::MsgAppend).collect();
    assert!(
        to_3.iter().any(|m| m.index == 1),
        "leader 1 transferring to node 3, which just acknowledged index 1 of {last}: expected \
         an append of the entries after 1 to node 3 right away, got {}. {}",
        harness::describe_all(&r.msgs),
        hint_in(DOC, TRANSFER)
    );
}
