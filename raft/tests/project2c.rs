//! Graded suite of lab 2c (raft level): snapshots.
//!
//! Single nodes stepped directly with hand-built snapshots and messages
//! (the answer is read from `raft.msgs`, `raft.prs` and `raft.raft_log`), a
//! `RawNode` handing a received snapshot to the application, and a small
//! cluster on the deterministic network of `harness` where a slow node
//! catches up by snapshot. Every failure says what was expected, what
//! happened, and where `docs/src/lab2c-log-gc-and-snapshots.md` explains it.
//!
//! Nothing here reaches lab 3a code (membership changes, leader transfer):
//! the membership only ever comes from a snapshot's `conf_state`.

mod harness;

use harness::{Network, hint_in, take_msgs as take};

/// The chapter this lab's failure messages point to.
const DOC: &str = "lab2c-log-gc-and-snapshots.md";
use raft::eraftpb::{
    ConfState, Entry, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::{MemoryStorage, Raft, RawNode, StateRole};

// ----- helpers ---------------------------------------------------------------

/// `harness::expect_eq`, pointing to this lab's chapter.
fn expect_eq<T: PartialEq + std::fmt::Debug>(
    got: T,
    want: T,
    what: impl std::fmt::Display,
    section: &str,
) {
    harness::expect_eq_in(DOC, got, want, what, section);
}

// The section of the chapter (DOC) on snapshots at the raft level.
const SNAP: &str = "Snapshots (lab 2c)";

fn ent(index: u64, term: u64) -> Entry {
    Entry { index, term, ..Default::default() }
}

/// A snapshot covering the log up to (`index`, `term`) with members `nodes`.
fn snap(index: u64, term: u64, nodes: &[u64]) -> Snapshot {
    Snapshot {
        data: b"state machine".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState { nodes: nodes.to_vec() }),
            index,
            term,
        }),
    }
}

/// `MsgSnapshot` from `from` to `to` in `term` carrying `s`.
fn snap_msg(from: u64, to: u64, term: u64, s: Snapshot) -> Message {
    let mut m = harness::msg(from, to, MessageType::MsgSnapshot, term);
    m.snapshot = Some(s);
    m
}

/// (index, term) of a snapshot's metadata; (0, 0) if it has none.
fn meta(s: &Snapshot) -> (u64, u64) {
    s.metadata.as_ref().map_or((0, 0), |m| (m.index, m.term))
}

fn members(r: &Raft<MemoryStorage>) -> Vec<u64> {
    r.prs.keys().copied().collect()
}

/// Node `id` of `peers` whose stored log holds entries 1..=`last` of term 1,
/// all committed (stored hard state term 1, commit `last`).
fn committed_node(id: u64, peers: Vec<u64>, last: u64) -> Raft<MemoryStorage> {
    let store = MemoryStorage::new_with_conf_state(peers);
    let ents: Vec<Entry> = (1..=last).map(|i| ent(i, 1)).collect();
    store.append(&ents).expect("MemoryStorage::append");
    store.set_hard_state(HardState { term: 1, vote: 0, commit: last });
    Raft::new(&harness::config(id), store).expect("Raft::new")
}

/// Leader 1 of {1, 2} in term 2 whose storage holds entries 1..=10 (term 1)
/// in a snapshot at (10, 1) and compacted everything before index 11; its
/// log then has the term-2 empty entry 11. Messages taken.
fn leader_with_compacted_log() -> Raft<MemoryStorage> {
    let mut r = committed_node(1, vec![1, 2], 10);
    let store = r.raft_log.store.clone();
    store.create_snapshot(10, None, b"state at 10".to_vec()).expect("create_snapshot");
    store.compact(11).expect("compact");
    r.become_candidate();
    r.become_leader();
    assert_eq!(r.state, StateRole::Leader, "setup: node 1 should lead");
    take(&mut r);
    r
}

/// Follower 2's rejection of the leader's append: it has nothing (hint 0).
fn empty_follower_rejects(term: u64) -> Message {
    let mut m = harness::msg(2, 1, MessageType::MsgAppendResponse, term);
    m.reject = true;
    m
}

/// Steps `m` into leader `r`; a panic is reported as a failure of `what`
/// (keeping the panic's own text).
fn step_no_panic(r: &mut Raft<MemoryStorage>, m: Message, what: &str) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = r.step(m);
    }));
    if let Err(payload) = result {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{what}: expected the leader to wait and retry later, but it panicked: {text:?}. {}",
            hint_in(DOC, SNAP)
        );
    }
}

/// The `MsgSnapshot`s among `msgs`.
fn snapshots_in(msgs: &[Message]) -> Vec<&Message> {
    msgs.iter().filter(|m| m.msg_type() == MessageType::MsgSnapshot).collect()
}

/// Persists what node `id` of `net` holds in memory (a minimal stand-in for
/// the application's `Ready` handling): unstable entries into its storage,
/// then `stable_to`, and the hard state.
fn persist(net: &mut Network, id: u64) {
    let store = net.storage[&id].clone();
    let r = net.peer_mut(id);
    let ents = r.raft_log.unstable_entries().to_vec();
    store.append(&ents).expect("MemoryStorage::append");
    if let Some(last) = ents.last() {
        r.raft_log.stable_to(last.index, last.term);
    }
    store.set_hard_state(r.hard_state());
}

// ----- restore ------------------------------------------------------------------

/// `Raft::restore` of a newer snapshot: the log is the snapshot (last
/// index and term, and the first index just after it), everything in it
/// is committed, it waits in `pending_snapshot`, and the membership is the
/// snapshot's `conf_state`.
#[test]
fn restore_sets_log_commit_and_members_2c() {
    let mut r = harness::new_raft(1, vec![1, 2], 10, 1);
    let s = snap(11, 11, &[1, 2, 3]);
    let accepted = r.restore(s);
    assert!(
        accepted,
        "restore of a snapshot at (11, 11) on an empty node (committed 0): expected true \
         (it is newer than the commit index), got false. {}",
        hint_in(DOC, SNAP)
    );
    let log = &r.raft_log;
    expect_eq(log.last_index(), 11, "last index after restoring a snapshot at 11", SNAP);
    expect_eq(
        log.term(11).ok(),
        Some(11),
        "term of the snapshot's index 11 after restore (the snapshot's term)",
        SNAP,
    );
    expect_eq(log.last_term(), 11, "last term after restore", SNAP);
    expect_eq(
        log.first_index(),
        12,
        "first index after restoring a snapshot at 11, while it is still pending (the entry \
         after the snapshot)",
        SNAP,
    );
    expect_eq(log.committed, 11, "commit index after restore (the snapshot's index)", SNAP);
    expect_eq(
        log.pending_snapshot.as_ref().map(meta),
        Some((11, 11)),
        "raft_log.pending_snapshot (index, term) after restore: the application must store it",
        SNAP,
    );
    expect_eq(
        members(&r),
        vec![1, 2, 3],
        "members (prs) after restoring a snapshot whose conf_state is [1, 2, 3] on a node of [1, 2]",
        SNAP,
    );
}

/// A snapshot not newer than the commit index (older, or exactly at it) is
/// ignored: `restore` returns false and the log, commit index, membership
/// and pending snapshot stay as they were.
#[test]
fn restore_ignores_older_snapshot_2c() {
    let mut r = committed_node(1, vec![1, 2], 3);
    assert_eq!(r.raft_log.committed, 3, "setup: node should have committed 3");
    for (index, what) in [(2u64, "older than"), (3, "exactly at")] {
        let accepted = r.restore(snap(index, 1, &[1, 2, 3, 4]));
        assert!(
            !accepted,
            "restore of a snapshot at ({index}, 1), {what} the commit index 3: expected false \
             (ignored), got true. {}",
            hint_in(DOC, SNAP)
        );
        let ctx = format!("after ignoring a snapshot at {index} (committed 3)");
        expect_eq(r.raft_log.last_index(), 3, format!("last index {ctx}"), SNAP);
        expect_eq(r.raft_log.committed, 3, format!("commit index {ctx}"), SNAP);
        expect_eq(r.raft_log.term(1).ok(), Some(1), format!("term of entry 1 {ctx}"), SNAP);
        expect_eq(
            r.raft_log.pending_snapshot.is_none(),
            true,
            format!("pending_snapshot is None {ctx}"),
            SNAP,
        );
        expect_eq(members(&r), vec![1, 2], format!("members (prs) {ctx}"), SNAP);
    }
}

// ----- the leader's side --------------------------------------------------------

/// A follower whose next index is compacted in the leader's storage gets
/// `MsgSnapshot` carrying the storage's snapshot (metadata index and term),
/// and its next index moves past the snapshot.
#[test]
fn leader_sends_snapshot_when_next_is_compacted_2c() {
    let mut r = leader_with_compacted_log();
    // Follower 2 has nothing: the leader backs off to index 1, compacted.
    let _ = r.step(empty_follower_rejects(2));
    let msgs = take(&mut r);
    let snaps = snapshots_in(&msgs);
    assert!(
        snaps.len() == 1 && snaps[0].to == 2,
        "leader whose storage compacted everything before 11, after follower 2 rejected with \
         hint 0 (its next index 1 is compacted): expected one MsgSnapshot to 2, got {}. {}",
        harness::describe_all(&msgs),
        hint_in(DOC, SNAP)
    );
    let m = snaps[0];
    expect_eq(m.term, 2, "term of the MsgSnapshot (the leader's term)", SNAP);
    let s = m.snapshot.clone().unwrap_or_default();
    expect_eq(
        meta(&s),
        (10, 1),
        "(index, term) in the MsgSnapshot's metadata (the storage's snapshot)",
        SNAP,
    );
    expect_eq(
        s.metadata.and_then(|md| md.conf_state).map(|cs| cs.nodes),
        Some(vec![1, 2]),
        "conf_state nodes in the MsgSnapshot's metadata",
        SNAP,
    );
    expect_eq(
        r.prs[&2].next_index,
        11,
        "leader's next index for 2 after sending a snapshot at 10",
        SNAP,
    );
    assert!(
        msgs.iter().all(|m| m.msg_type() != MessageType::MsgAppend || m.index >= 10),
        "leader must not send an append whose previous entry is compacted; got {}. {}",
        harness::describe_all(&msgs),
        hint_in(DOC, SNAP)
    );
}

/// While the storage answers `SnapshotTemporarilyUnavailable`, the leader
/// sends nothing to that follower (and does not panic); a later heartbeat
/// response tries again, and once the snapshot is ready it is sent.
#[test]
fn leader_retries_when_snapshot_unavailable_2c() {
    let mut r = leader_with_compacted_log();
    r.raft_log.store.wl().set_snapshot_unavailable(2);
    step_no_panic(
        &mut r,
        empty_follower_rejects(2),
        "append rejection from 2 while the storage answers SnapshotTemporarilyUnavailable",
    );
    let msgs = take(&mut r);
    assert!(
        snapshots_in(&msgs).is_empty(),
        "storage answers SnapshotTemporarilyUnavailable: expected no MsgSnapshot yet, got {}. {}",
        harness::describe_all(&msgs),
        hint_in(DOC, SNAP)
    );
    expect_eq(r.state, StateRole::Leader, "role after a snapshot was unavailable", SNAP);
    // The first heartbeat response: the storage still is not ready.
    step_no_panic(
        &mut r,
        harness::msg(2, 1, MessageType::MsgHeartbeatResponse, 2),
        "heartbeat response from 2 while the storage answers SnapshotTemporarilyUnavailable",
    );
    let msgs = take(&mut r);
    assert!(
        snapshots_in(&msgs).is_empty(),
        "storage still answers SnapshotTemporarilyUnavailable (2nd call): expected no \
         MsgSnapshot, got {}. {}",
        harness::describe_all(&msgs),
        hint_in(DOC, SNAP)
    );
    // The next one: the snapshot is ready now.
    let _ = r.step(harness::msg(2, 1, MessageType::MsgHeartbeatResponse, 2));
    let msgs = take(&mut r);
    let snaps = snapshots_in(&msgs);
    assert!(
        snaps.len() == 1 && snaps[0].to == 2,
        "after the storage's snapshot became available, a heartbeat response from lagging \
         follower 2 (matched 0, next index compacted): expected the leader to retry with one \
         MsgSnapshot to 2, got {}. {}",
        harness::describe_all(&msgs),
        hint_in(DOC, SNAP)
    );
    expect_eq(
        meta(&snaps[0].snapshot.clone().unwrap_or_default()),
        (10, 1),
        "(index, term) of the retried MsgSnapshot",
        SNAP,
    );
}

// ----- the follower's side ------------------------------------------------------

/// `MsgSnapshot` of a higher term makes a follower (or a candidate of that
/// term) a follower of the sender in that term; it restores the snapshot
/// and answers `MsgAppendResponse` with the snapshot's index.
#[test]
fn follower_learns_leader_from_snapshot_2c() {
    // A fresh follower of term 0, and a candidate of term 5.
    let mut follower = harness::new_raft(2, vec![1, 2, 3], 10, 1);
    let mut candidate = harness::new_raft(2, vec![1, 2, 3], 10, 1);
    candidate.term = 4;
    candidate.become_candidate();
    assert_eq!(candidate.term, 5, "setup: candidate should be in term 5");
    take(&mut candidate);
    for (r, who) in
        [(&mut follower, "a fresh follower of term 0"), (&mut candidate, "a candidate of term 5")]
    {
        let _ = r.step(snap_msg(1, 2, 5, snap(11, 5, &[1, 2, 3])));
        let ctx = format!("{who}, after MsgSnapshot (11, 5) from 1 in term 5");
        expect_eq(r.state, StateRole::Follower, format!("role of {ctx}"), SNAP);
        expect_eq(r.term, 5, format!("term of {ctx}"), SNAP);
        expect_eq(r.lead, 1, format!("leader known to {ctx}"), SNAP);
        expect_eq(r.raft_log.last_index(), 11, format!("last index of {ctx}"), SNAP);
        expect_eq(r.raft_log.committed, 11, format!("commit index of {ctx}"), SNAP);
        let msgs = take(r);
        let resp: Vec<(u64, u64, bool)> = msgs
            .iter()
            .filter(|m| m.msg_type() == MessageType::MsgAppendResponse)
            .map(|m| (m.to, m.index, m.reject))
            .collect();
        assert!(
            resp == vec![(1, 11, false)],
            "{ctx}: expected one MsgAppendResponse to 1 with index 11, not rejected; got {}. {}",
            harness::describe_all(&msgs),
            hint_in(DOC, SNAP)
        );
    }
}

/// The membership of a snapshot received in `MsgSnapshot` replaces the
/// follower's: members not in it are gone, new ones are added, and the
/// quorum follows.
#[test]
fn snapshot_membership_replaces_peers_2c() {
    let mut r = harness::new_raft(2, vec![1, 2, 3], 10, 1);
    let _ = r.step(snap_msg(1, 2, 3, snap(20, 3, &[1, 2, 4, 5, 6])));
    expect_eq(
        members(&r),
        vec![1, 2, 4, 5, 6],
        "members (prs) of node 2 of [1, 2, 3] after a snapshot whose conf_state is \
         [1, 2, 4, 5, 6] (3 removed, 4..=6 added)",
        SNAP,
    );
    expect_eq(r.quorum(), 3, "quorum after the snapshot's membership (5 members)", SNAP);
    // A second, newer snapshot shrinks it again.
    let _ = r.step(snap_msg(1, 2, 3, snap(30, 3, &[1, 2])));
    expect_eq(
        members(&r),
        vec![1, 2],
        "members (prs) after a newer snapshot whose conf_state is [1, 2]",
        SNAP,
    );
    expect_eq(r.raft_log.last_index(), 30, "last index after the second snapshot", SNAP);
}

/// After `MsgSnapshot`, the snapshot waits in `raft_log.pending_snapshot`
/// and a `RawNode` hands it to the application in `Ready::snapshot`; once
/// stored and advanced it is no longer pending and the log starts after it.
#[test]
fn pending_snapshot_exposed_in_ready_2c() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&harness::config(2), store.clone()).expect("RawNode::new");
    node.step(snap_msg(1, 2, 2, snap(10, 2, &[1, 2, 3]))).expect("step MsgSnapshot");
    expect_eq(
        node.raft().raft_log.pending_snapshot.as_ref().map(meta),
        Some((10, 2)),
        "raft_log.pending_snapshot (index, term) after MsgSnapshot (10, 2)",
        SNAP,
    );
    assert!(
        node.has_ready(),
        "has_ready after a snapshot was received: expected true, got false. {}",
        hint_in(DOC, SNAP)
    );
    let rd = node.ready();
    expect_eq(meta(&rd.snapshot), (10, 2), "Ready::snapshot (index, term)", SNAP);
    expect_eq(
        rd.snapshot.data.clone(),
        b"state machine".to_vec(),
        "Ready::snapshot data (the leader's state machine)",
        SNAP,
    );
    assert!(
        rd.committed_entries.iter().all(|e| e.index > 10),
        "Ready::committed_entries must not hold entries covered by the snapshot (<= 10); got \
         indexes {:?}. {}",
        rd.committed_entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        hint_in(DOC, SNAP)
    );
    store.apply_snapshot(rd.snapshot.clone()).expect("apply_snapshot");
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    store.append(&rd.entries).expect("append");
    node.advance(rd);
    expect_eq(
        node.raft().raft_log.pending_snapshot.is_none(),
        true,
        "pending_snapshot is None after the application stored it and advanced",
        SNAP,
    );
    expect_eq(node.raft().raft_log.first_index(), 11, "first index after advance", SNAP);
    expect_eq(node.raft().raft_log.last_index(), 10, "last index after advance", SNAP);
    let rd = node.ready();
    expect_eq(meta(&rd.snapshot), (0, 0), "Ready::snapshot once stored (none)", SNAP);
}

/// Entries committed after a snapshot that is still pending wait for the
/// next `Ready`: the application must have the snapshot's data in place
/// before it applies them (else they are written under data the snapshot
/// then replaces).
#[test]
fn ready_holds_back_entries_after_a_pending_snapshot_2c() {
    let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
    let mut node = RawNode::new(&harness::config(2), store.clone()).expect("RawNode::new");
    node.step(snap_msg(1, 2, 2, snap(10, 2, &[1, 2, 3]))).expect("step MsgSnapshot");
    let mut app = harness::msg(1, 2, MessageType::MsgAppend, 2);
    app.index = 10;
    app.log_term = 2;
    app.entries = vec![ent(11, 2), ent(12, 2)];
    app.commit = 12;
    node.step(app).expect("step MsgAppend after the snapshot");
    let rd = node.ready();
    expect_eq(meta(&rd.snapshot), (10, 2), "Ready::snapshot (index, term)", SNAP);
    expect_eq(
        rd.committed_entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![],
        "Ready::committed_entries while the snapshot is pending (they wait for the next Ready)",
        SNAP,
    );
    store.apply_snapshot(rd.snapshot.clone()).expect("apply_snapshot");
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    store.append(&rd.entries).expect("append");
    node.advance(rd);
    assert!(node.has_ready(), "has_ready once the snapshot is stored: entries 11 and 12 wait");
    let rd = node.ready();
    expect_eq(
        rd.committed_entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![11, 12],
        "Ready::committed_entries once the snapshot is stored",
        SNAP,
    );
}

// ----- restart and catch-up -----------------------------------------------------

/// A node restarted over a storage holding an applied snapshot plus later
/// entries: its log starts right after the snapshot, ends at the last
/// stored entry, and its term, vote, commit index and members come from
/// the storage.
#[test]
fn restart_from_snapshot_and_entries_2c() {
    let store = MemoryStorage::new();
    store.apply_snapshot(snap(5, 2, &[1, 2, 3])).expect("apply_snapshot");
    store.append(&[ent(6, 2), ent(7, 3), ent(8, 3)]).expect("append");
    store.set_hard_state(HardState { term: 3, vote: 1, commit: 7 });
    let r = Raft::new(&harness::config(2), store).expect("Raft::new");
    let ctx = "node restarted over a snapshot at (5, 2) plus entries 6..=8, hard state \
               (term 3, vote 1, commit 7)";
    expect_eq(r.raft_log.first_index(), 6, format!("first index of a {ctx}"), SNAP);
    expect_eq(r.raft_log.last_index(), 8, format!("last index of a {ctx}"), SNAP);
    expect_eq(r.raft_log.last_term(), 3, format!("last term of a {ctx}"), SNAP);
    expect_eq(
        r.raft_log.term(5).ok(),
        Some(2),
        format!("term of the snapshot's index 5 of a {ctx}"),
        SNAP,
    );
    expect_eq(r.raft_log.committed, 7, format!("commit index of a {ctx}"), SNAP);
    expect_eq(
        r.raft_log.applied,
        5,
        format!("applied index of a {ctx} (the snapshot is applied)"),
        SNAP,
    );
    expect_eq((r.term, r.vote), (3, 1), format!("(term, vote) of a {ctx}"), SNAP);
    expect_eq(members(&r), vec![1, 2, 3], format!("members of a {ctx}"), SNAP);
    expect_eq(r.state, StateRole::Follower, format!("role of a {ctx}"), SNAP);
}

/// Node 3 is isolated while the others commit 20 entries; the leader then
/// snapshots and compacts its storage. Once the network recovers, node 3
/// receives a `MsgSnapshot` and catches up: its log and commit index reach
/// the leader's.
#[test]
fn slow_node_catches_up_by_snapshot_2c() {
    let mut net = Network::fresh(3);
    net.hup(1);
    assert_eq!(net.leader(), Some(1), "setup: node 1 should lead ({})", net.summary());
    net.isolate(3);
    for i in 0..20u32 {
        net.propose(1, format!("v{i}").as_bytes());
    }
    let last = net.peer(1).raft_log.last_index();
    let committed = net.peer(1).raft_log.committed;
    assert_eq!(
        (last, committed),
        (21, 21),
        "setup: leader should have committed 21 entries ({})",
        net.summary()
    );
    // The application persists the leader's log, snapshots at 15 and
    // compacts everything before 16.
    persist(&mut net, 1);
    let store = net.storage[&1].clone();
    store.create_snapshot(15, None, b"state at 15".to_vec()).expect("create_snapshot");
    store.compact(16).expect("compact");
    let before = net.peer(3).raft_log.last_index();
    assert!(before < 15, "setup: node 3 should lag behind the snapshot (last index {before})");

    net.recover();
    net.trace.clear();
    for _ in 0..3 {
        net.beat(1);
    }
    let got_snapshot = net.trace.iter().any(|m| {
        m.msg_type() == MessageType::MsgSnapshot
            && m.from == 1
            && m.to == 3
            && m.snapshot.as_ref().map(meta) == Some((15, 1))
    });
    let to_or_from_3: Vec<Message> =
        net.trace.iter().filter(|m| m.to == 3 || m.from == 3).take(12).cloned().collect();
    assert!(
        got_snapshot,
        "node 3 (last index {before}) needs entries compacted in the leader's storage (first \
         index 16): expected a MsgSnapshot (15, 1) from 1 to 3 after the network recovered; \
         delivered to/from 3 (first 12): {}. {}",
        harness::describe_all(&to_or_from_3),
        hint_in(DOC, SNAP)
    );
    let (l3, c3) = (net.peer(3).raft_log.last_index(), net.peer(3).raft_log.committed);
    assert!(
        (l3, c3) == (21, 21),
        "slow node 3 after catching up by snapshot and heartbeats: expected (last index, \
         committed) = (21, 21) like the leader, got ({l3}, {c3}); nodes: {}. {}",
        net.summary(),
        hint_in(DOC, SNAP)
    );
    expect_eq(net.peer(3).raft_log.term(21).ok(), Some(1), "term of node 3's entry 21", SNAP);
    expect_eq(net.peer(3).lead, 1, "leader known to node 3", SNAP);
    expect_eq(net.peer(1).prs[&3].matched, 21, "leader's matched index for 3", SNAP);
}

// ----- property tests ---------------------------------------------------------

/// As the 2ac property test, with nodes compacting their logs, so laggards
/// and restarted nodes catch up by snapshot.
#[test]
fn random_compaction_keeps_raft_safe_2c() {
    let f = harness::chaos::Features {
        raw_node: true,
        proposals: true,
        restarts: true,
        compaction: true,
        ..Default::default()
    };
    let stats = harness::chaos::check_seeds("random_compaction_keeps_raft_safe_2c", "2c", f);
    assert!(stats.snapshots_applied >= stats.runs / 4, "the runs should send snapshots: {stats:?}");
}
