//! Graded suite of lab 2ab: log replication.
//!
//! Two kinds of tests: single nodes stepped directly with hand-built
//! messages (the answer is read from `raft.msgs` and `raft.raft_log`), and
//! small clusters on the deterministic network of `harness`. Every failure
//! says what was expected, what happened, and where `docs/src/lab2a-raft.md`
//! explains it.

mod harness;

use harness::{Network, hint, take_msgs as take};
use raft::eraftpb::{Entry, HardState, Message, MessageType};
use raft::{MemoryStorage, Raft, StateRole};

// ----- helpers ---------------------------------------------------------------

// Sections of docs/src/lab2a-raft.md.
const REPL: &str = "Log replication";
const COMMIT: &str = "Commit rule";
const CONFLICTS: &str = "Conflicts";
const VOTING: &str = "Voting";
const READY: &str = "Part C (2ac): the Ready contract";

/// An empty entry at `index` of `term` (index first, unlike `harness::entry`).
fn ent(index: u64, term: u64) -> Entry {
    Entry { index, term, ..Default::default() }
}

fn ent_data(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry { index, term, data: data.to_vec(), ..Default::default() }
}

fn msg(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    harness::msg(from, to, t, term)
}

/// `MsgAppend` carrying `entries` after `prev` = (index, term).
fn append_msg(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    commit: u64,
    entries: Vec<Entry>,
) -> Message {
    let mut m = msg(from, to, MessageType::MsgAppend, term);
    m.index = prev.0;
    m.log_term = prev.1;
    m.commit = commit;
    m.entries = entries;
    m
}

/// A successful `MsgAppendResponse` acknowledging `index`.
fn append_resp(from: u64, to: u64, term: u64, index: u64) -> Message {
    let mut m = msg(from, to, MessageType::MsgAppendResponse, term);
    m.index = index;
    m
}

/// `MsgRequestVote` for a candidate whose last entry is `last` = (index, term).
fn vote_req(from: u64, to: u64, term: u64, last: (u64, u64)) -> Message {
    let mut m = msg(from, to, MessageType::MsgRequestVote, term);
    m.index = last.0;
    m.log_term = last.1;
    m
}

/// A local `MsgPropose` with one entry per element of `data`.
fn propose_msg(data: &[&[u8]]) -> Message {
    let mut m = raft::new_message(0, MessageType::MsgPropose);
    m.entries = data.iter().map(|d| Entry { data: d.to_vec(), ..Default::default() }).collect();
    m
}

/// Node `id` of a cluster of `peers`, whose storage holds `log` (pairs of
/// index and term) and the hard state (`term`, no vote, `commit`).
fn node_with(
    id: u64,
    peers: &[u64],
    log: &[(u64, u64)],
    term: u64,
    commit: u64,
) -> Raft<MemoryStorage> {
    let store = MemoryStorage::new_with_conf_state(peers.to_vec());
    let ents: Vec<Entry> = log.iter().map(|&(i, t)| ent(i, t)).collect();
    store.append(&ents).unwrap();
    store.set_hard_state(HardState { term, vote: 0, commit });
    Raft::new(&harness::config(id), store).unwrap()
}

/// A node elected without a network: candidate, then leader (term + 1, a
/// no-op at the end of `log`); its messages are cleared.
fn leader_with(id: u64, peers: &[u64], log: &[(u64, u64)], term: u64) -> Raft<MemoryStorage> {
    let mut r = node_with(id, peers, log, term, 0);
    r.become_candidate();
    r.become_leader();
    r.msgs.clear();
    r
}

/// (index, term) of every entry of the log, from the first index.
fn log_of(r: &Raft<MemoryStorage>) -> Vec<(u64, u64)> {
    let l = &r.raft_log;
    (l.first_index()..=l.last_index()).map(|i| (i, l.term(i).unwrap())).collect()
}

/// Every entry of the log, from the first index.
fn entries_of(r: &Raft<MemoryStorage>) -> Vec<Entry> {
    let l = &r.raft_log;
    l.entries(l.first_index(), l.last_index() + 1).unwrap()
}

/// The data of the committed entries that carry data, in order.
fn committed_data(r: &Raft<MemoryStorage>) -> Vec<Vec<u8>> {
    let l = &r.raft_log;
    l.entries(l.first_index(), l.committed + 1)
        .unwrap()
        .into_iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.data)
        .collect()
}

fn appends_to(msgs: &[Message], to: u64) -> Vec<Message> {
    msgs.iter().filter(|m| m.to == to && m.msg_type() == MessageType::MsgAppend).cloned().collect()
}

fn only_append_to(msgs: &[Message], to: u64, what: &str) -> Message {
    let found = appends_to(msgs, to);
    assert_eq!(
        found.len(),
        1,
        "{what}: expected exactly one MsgAppend to node {to}, got {}: {}. {}",
        found.len(),
        harness::describe_all(msgs),
        hint(REPL)
    );
    found.into_iter().next().unwrap()
}

/// Steps `m` into `r` and returns the single message of type `t` it answered.
fn step_answer(r: &mut Raft<MemoryStorage>, m: Message, t: MessageType, what: &str) -> Message {
    let _ = r.step(m);
    let msgs = take(r);
    let found: Vec<Message> = msgs.iter().filter(|m| m.msg_type() == t).cloned().collect();
    assert_eq!(
        found.len(),
        1,
        "{what}: expected exactly one {t:?} in answer, got {}: {}. {}",
        found.len(),
        harness::describe_all(&msgs),
        hint(REPL)
    );
    found.into_iter().next().unwrap()
}

/// Checks that `m` is a well-formed append of leader `r`: its previous
/// entry (`index`, `log_term`) is in the leader's log with that term, and
/// it carries exactly the leader's entries from `index + 1` to the end.
fn check_append_consistent(r: &Raft<MemoryStorage>, m: &Message, what: &str) {
    let l = &r.raft_log;
    assert_eq!(
        l.term(m.index).ok(),
        Some(m.log_term),
        "{what}: MsgAppend to {} has prev (index {}, log_term {}), but the leader's entry {} \
         has term {:?}. {}",
        m.to,
        m.index,
        m.log_term,
        m.index,
        l.term(m.index).ok(),
        hint(REPL)
    );
    let expected = l.entries(m.index + 1, l.last_index() + 1).unwrap();
    assert_eq!(
        m.entries,
        expected,
        "{what}: MsgAppend to {} after index {} should carry the leader's entries {}..={}. {}",
        m.to,
        m.index,
        m.index + 1,
        l.last_index(),
        hint(REPL)
    );
}

// ----- leader side: replication and progress ---------------------------------

#[test]
fn leader_replicates_proposal_with_prev_index_and_term_2ab() {
    // Log (1,1) (2,2); elected in term 3 with a no-op at 3.
    let mut r = leader_with(1, &[1, 2, 3], &[(1, 1), (2, 2)], 2);
    assert_eq!((r.term, r.raft_log.last_index()), (3, 3), "setup: leader of term 3, no-op at 3");
    // Node 2 acknowledges the no-op; node 3 says nothing.
    r.step(append_resp(2, 1, 3, 3)).unwrap();
    take(&mut r);
    r.step(propose_msg(&[b"x"])).unwrap();
    let msgs = take(&mut r);
    assert_eq!(
        r.raft_log.last_index(),
        4,
        "expected the proposal appended at index 4 of the leader's log. {}",
        hint(REPL)
    );
    assert_eq!(
        r.raft_log.entries(4, 5).unwrap(),
        vec![ent_data(4, 3, b"x")],
        "expected the leader to stamp the proposal with its term 3 and index 4. {}",
        hint(REPL)
    );
    let to2 = only_append_to(&msgs, 2, "after the proposal");
    assert_eq!(
        (to2.index, to2.log_term, to2.term),
        (3, 3, 3),
        "expected the append to node 2 (which holds index 3) to carry prev index 3, prev term 3 \
         and term 3; got index {}, log_term {}, term {}. {}",
        to2.index,
        to2.log_term,
        to2.term,
        hint(REPL)
    );
    assert_eq!(
        to2.entries,
        vec![ent_data(4, 3, b"x")],
        "expected node 2's append to carry just the new entry. {}",
        hint(REPL)
    );
    let to3 = only_append_to(&msgs, 3, "after the proposal");
    assert!(
        to3.index <= 3,
        "node 3 never acknowledged index 3, yet got prev {}. {}",
        to3.index,
        hint(REPL)
    );
    check_append_consistent(&r, &to2, "append to node 2");
    check_append_consistent(&r, &to3, "append to node 3");
    assert_eq!(
        to3.entries.last(),
        Some(&ent_data(4, 3, b"x")),
        "expected the append to node 3 to end with the proposal. {}",
        hint(REPL)
    );
}

#[test]
fn leader_own_progress_2ab() {
    let mut r = leader_with(1, &[1, 2, 3], &[], 0);
    let own = r.prs[&1].clone();
    assert_eq!(
        (own.matched, own.next_index),
        (1, 2),
        "after election the leader's own progress should be matched = 1 (its no-op), next = 2; \
         got matched {}, next {}. {}",
        own.matched,
        own.next_index,
        hint(REPL)
    );
    r.step(propose_msg(&[b"a", b"b"])).unwrap();
    let own = r.prs[&1].clone();
    assert_eq!(
        (r.raft_log.last_index(), own.matched, own.next_index),
        (3, 3, 4),
        "after proposing 2 entries: expected last index 3 and own progress matched 3, next 4; \
         got last index {}, matched {}, next {}. {}",
        r.raft_log.last_index(),
        own.matched,
        own.next_index,
        hint(REPL)
    );
    assert_eq!(
        r.raft_log.entries(2, 4).unwrap(),
        vec![ent_data(2, 1, b"a"), ent_data(3, 1, b"b")],
        "a proposal of 2 entries: each gets the next index and the leader's term 1. {}",
        hint(REPL)
    );
    r.step(propose_msg(&[b"c"])).unwrap();
    let own = r.prs[&1].clone();
    assert_eq!(
        (own.matched, own.next_index),
        (4, 5),
        "after one more proposal: expected own matched 4, next 5; got {}, {}. {}",
        own.matched,
        own.next_index,
        hint(REPL)
    );
    for id in [2, 3] {
        assert_eq!(
            r.prs[&id].matched,
            0,
            "node {id} acknowledged nothing, so its matched should stay 0. {}",
            hint(REPL)
        );
    }
    assert_eq!(
        r.raft_log.committed,
        0,
        "the leader alone is not a majority of 3: nothing may commit yet; got committed {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
}

#[test]
fn leader_commits_on_majority_and_broadcasts_commit_2ab() {
    let peers = [1, 2, 3, 4, 5];
    let mut r = leader_with(1, &peers, &[], 0);
    r.step(append_resp(2, 1, 1, 1)).unwrap();
    r.step(append_resp(3, 1, 1, 1)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        1,
        "no-op held by 3 of 5 nodes should commit. {}",
        hint(COMMIT)
    );
    take(&mut r);
    r.step(propose_msg(&[b"x"])).unwrap();
    take(&mut r);
    r.step(append_resp(2, 1, 1, 2)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        1,
        "index 2 is held by 2 of 5 nodes (leader, node 2): expected committed 1, got {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
    let early = take(&mut r);
    assert!(
        early.iter().all(|m| m.commit <= 1),
        "nothing past index 1 is committed, yet the leader sent {}. {}",
        harness::describe_all(&early),
        hint(COMMIT)
    );
    r.step(append_resp(4, 1, 1, 2)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        2,
        "index 2 is held by 3 of 5 nodes (leader, 2, 4): expected committed 2, got {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
    let msgs = take(&mut r);
    for id in [2, 3, 4, 5] {
        let m = only_append_to(&msgs, id, "when the commit index moves");
        assert_eq!(
            m.commit,
            2,
            "when the commit index moves to 2 the leader should tell every follower at once \
             (a MsgAppend with commit 2); node {id} got commit {}. {}",
            m.commit,
            hint(COMMIT)
        );
        check_append_consistent(&r, &m, "commit broadcast");
    }
    // A duplicate, older acknowledgement changes nothing.
    r.step(append_resp(2, 1, 1, 1)).unwrap();
    assert_eq!(
        (r.raft_log.committed, r.prs[&2].matched),
        (2, 2),
        "a stale ack of index 1 from node 2 must not move committed or node 2's matched back; \
         got committed {}, matched {}. {}",
        r.raft_log.committed,
        r.prs[&2].matched,
        hint(COMMIT)
    );
}

#[test]
fn leader_commits_preceding_entries_2ab() {
    // Entries 1..3 from earlier terms; leader of term 3 with its no-op at 4.
    let mut r = leader_with(1, &[1, 2, 3], &[(1, 1), (2, 1), (3, 2)], 2);
    r.step(propose_msg(&[b"a"])).unwrap();
    r.step(propose_msg(&[b"b"])).unwrap();
    assert_eq!(r.raft_log.last_index(), 6, "setup: no-op at 4, proposals at 5 and 6");
    take(&mut r);
    r.step(append_resp(3, 1, 3, 6)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        6,
        "node 3 holds everything up to 6 (of the leader's term): expected committed 6, got {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
    let committed: Vec<(u64, u64)> =
        r.raft_log.next_committed_entries().iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(
        committed,
        vec![(1, 1), (2, 1), (3, 2), (4, 3), (5, 3), (6, 3)],
        "committing index 6 commits every entry before it, of any term. {}",
        hint(COMMIT)
    );
}

#[test]
fn follower_commits_from_append_2ab() {
    let mut f = node_with(1, &[1, 2, 3], &[], 0, 0);
    let steps: Vec<(&str, Message, u64, u64)> = vec![
        (
            "append of 1..=3 with leader commit 2",
            append_msg(2, 1, 1, (0, 0), 2, vec![ent(1, 1), ent(2, 1), ent(3, 1)]),
            2,
            3,
        ),
        ("empty append after 3, leader commit 3", append_msg(2, 1, 1, (3, 1), 3, vec![]), 3, 3),
        (
            "append of 4..=5 with leader commit 10: min(10, last new 5)",
            append_msg(2, 1, 1, (3, 1), 10, vec![ent(4, 1), ent(5, 1)]),
            5,
            5,
        ),
        (
            "old append of 2 with leader commit 3: commit never goes back",
            append_msg(2, 1, 1, (1, 1), 3, vec![ent(2, 1)]),
            5,
            5,
        ),
    ];
    for (what, m, committed, last) in steps {
        let resp = step_answer(&mut f, m, MessageType::MsgAppendResponse, what);
        assert!(!resp.reject, "{what}: the append matches and must be accepted. {}", hint(REPL));
        assert_eq!(
            (f.raft_log.committed, f.raft_log.last_index()),
            (committed, last),
            "{what}: expected committed {committed}, last index {last}; got committed {}, \
             last index {}. {}",
            f.raft_log.committed,
            f.raft_log.last_index(),
            hint(COMMIT)
        );
        let ready: Vec<u64> = f.raft_log.next_committed_entries().iter().map(|e| e.index).collect();
        assert_eq!(
            ready,
            (1..=committed).collect::<Vec<u64>>(),
            "{what}: nothing is applied yet, so the committed entries to apply are 1..={committed}. {}",
            hint(COMMIT)
        );
    }
    // Entries past the last new one may not be the leader's: a follower
    // holding (2,1) (3,1) hears from a leader of term 2 that only vouches
    // for index 1.
    let mut f = node_with(1, &[1, 2, 3], &[(1, 1), (2, 1), (3, 1)], 1, 0);
    let what = "append after (1,1) with no entries and leader commit 3";
    let resp = step_answer(
        &mut f,
        append_msg(2, 1, 2, (1, 1), 3, vec![]),
        MessageType::MsgAppendResponse,
        what,
    );
    assert!(!resp.reject, "{what}: must be accepted. {}", hint(REPL));
    assert_eq!(
        f.raft_log.committed,
        1,
        "{what}: commit = min(leader commit 3, last new index 1) = 1, not the follower's last \
         index (its entries 2..3 may differ from the leader's); got {}. {}",
        f.raft_log.committed,
        hint(COMMIT)
    );
}

#[test]
fn follower_rejects_mismatched_prev_with_hint_2ab() {
    let log = [(1, 1), (2, 2), (3, 2), (4, 3)];
    let cases: [(&str, (u64, u64)); 4] = [
        ("prev (4,4): term differs at the last entry", (4, 4)),
        ("prev (6,4): past the follower's last index 4", (6, 4)),
        ("prev (3,1): term differs in the middle", (3, 1)),
        ("prev (2,3): term differs early", (2, 3)),
    ];
    for (what, prev) in cases {
        let mut f = node_with(1, &[1, 2, 3], &log, 3, 1);
        let m = append_msg(2, 1, 4, prev, 4, vec![ent(prev.0 + 1, 4)]);
        let resp = step_answer(&mut f, m, MessageType::MsgAppendResponse, what);
        assert!(
            resp.reject,
            "{what}: the follower does not hold the previous entry, so it must reject; got {}. {}",
            harness::describe(&resp),
            hint(CONFLICTS)
        );
        assert_eq!(
            (resp.to, resp.term),
            (2, 4),
            "{what}: the rejection goes to the leader (2) with the current term 4; got {}. {}",
            harness::describe(&resp),
            hint(CONFLICTS)
        );
        assert!(
            resp.index <= prev.0.min(4),
            "{what}: the hint (index) must be at most min(prev index {}, last index 4); got {}. {}",
            prev.0,
            resp.index,
            hint(CONFLICTS)
        );
        assert_eq!(
            Some(resp.log_term),
            f.raft_log.term(resp.index).ok(),
            "{what}: the rejection's log_term must be the follower's term at the hinted index \
             {}; got {}. {}",
            resp.index,
            resp.log_term,
            hint(CONFLICTS)
        );
        assert_eq!(
            (log_of(&f), f.raft_log.committed),
            (log.to_vec(), 1),
            "{what}: a rejected append changes neither the log nor the commit index. {}",
            hint(CONFLICTS)
        );
    }
}

#[test]
fn follower_truncates_conflicting_suffix_2ab() {
    let mut f = node_with(1, &[1, 2, 3], &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)], 1, 1);
    let what = "append after (2,1) of (3,1) (4,2) from a leader of term 2";
    let m = append_msg(2, 1, 2, (2, 1), 1, vec![ent(3, 1), ent(4, 2)]);
    let resp = step_answer(&mut f, m, MessageType::MsgAppendResponse, what);
    assert!(!resp.reject, "{what}: prev (2,1) matches, must be accepted. {}", hint(CONFLICTS));
    assert_eq!(
        log_of(&f),
        vec![(1, 1), (2, 1), (3, 1), (4, 2)],
        "{what}: entry 4 conflicts, so 4 and everything after it (5) are replaced. {}",
        hint(CONFLICTS)
    );
    assert_eq!(resp.index, 4, "{what}: expected to acknowledge index 4. {}", hint(REPL));
    assert!(
        f.raft_log.stabled < 4,
        "{what}: the new entry 4 is not persisted yet, so stabled must drop below 4; got {}. {}",
        f.raft_log.stabled,
        hint(CONFLICTS)
    );
    assert_eq!(
        f.raft_log.unstable_entries().last(),
        Some(&ent(4, 2)),
        "{what}: the new entry must be among the unstable entries (to be persisted). {}",
        hint(CONFLICTS)
    );
    let what = "then append after (1,1) of (2,3) from a leader of term 3";
    let m = append_msg(3, 1, 3, (1, 1), 1, vec![ent(2, 3)]);
    let resp = step_answer(&mut f, m, MessageType::MsgAppendResponse, what);
    assert!(!resp.reject, "{what}: must be accepted. {}", hint(CONFLICTS));
    assert_eq!(
        log_of(&f),
        vec![(1, 1), (2, 3)],
        "{what}: entries 2.. are replaced by (2,3). {}",
        hint(CONFLICTS)
    );
}

#[test]
fn matching_append_does_not_truncate_2ab() {
    let log = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)];
    let mut f = node_with(1, &[1, 2, 3], &log, 1, 0);
    let what = "a late append after (1,1) of (2,1) (3,1) that the follower already holds";
    let m = append_msg(2, 1, 2, (1, 1), 3, vec![ent(2, 1), ent(3, 1)]);
    let resp = step_answer(&mut f, m, MessageType::MsgAppendResponse, what);
    assert!(!resp.reject, "{what}: must be accepted. {}", hint(CONFLICTS));
    assert_eq!(
        log_of(&f),
        log.to_vec(),
        "{what}: nothing conflicts, so nothing may be truncated (entries 4 and 5 must stay). {}",
        hint(CONFLICTS)
    );
    assert_eq!(
        f.raft_log.stabled,
        5,
        "{what}: matching entries are not rewritten, so stabled stays 5; got {}. {}",
        f.raft_log.stabled,
        hint(CONFLICTS)
    );
    assert_eq!(
        resp.index,
        3,
        "{what}: acknowledge the last index this append vouches for (3), not the follower's \
         last index 5; got {}. {}",
        resp.index,
        hint(REPL)
    );
    assert_eq!(
        f.raft_log.committed,
        3,
        "{what}: committed = min(leader commit 3, last new 3) = 3; got {}. {}",
        f.raft_log.committed,
        hint(COMMIT)
    );
    let what = "an empty append after (5,1)";
    let resp = step_answer(
        &mut f,
        append_msg(2, 1, 2, (5, 1), 3, vec![]),
        MessageType::MsgAppendResponse,
        what,
    );
    assert!(
        !resp.reject && resp.index == 5 && log_of(&f) == log.to_vec(),
        "{what}: expected accepted with index 5 and the log unchanged; got {} and log {:?}. {}",
        harness::describe(&resp),
        log_of(&f),
        hint(CONFLICTS)
    );
}

/// The application persists the entries it was handed, then says so with
/// `stable_to(last index, last term)`. If a newer leader replaced those
/// entries in between (the application persists while the node keeps
/// stepping messages), the acknowledgement is stale: the entries now in the
/// log were never persisted, so they must stay unstable. Marking them
/// stable anyway makes the log read the old entries back from storage.
#[test]
fn stable_to_ignores_entries_replaced_since_they_were_handed_out_2ab() {
    let mut f = node_with(1, &[1, 2, 3], &[], 0, 0);
    let store = f.raft_log.store.clone();
    let what = "follower 1, append of (1,1) (2,1) (3,1) from leader 2 of term 1";
    let resp = step_answer(
        &mut f,
        append_msg(2, 1, 1, (0, 0), 0, vec![ent(1, 1), ent(2, 1), ent(3, 1)]),
        MessageType::MsgAppendResponse,
        what,
    );
    assert!(!resp.reject, "{what}: must be accepted. {}", hint(CONFLICTS));
    let handed = f.raft_log.unstable_entries().to_vec();
    assert_eq!(
        handed.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
        vec![(1, 1), (2, 1), (3, 1)],
        "{what}: the unstable entries (what the application is handed to persist). {}",
        hint(CONFLICTS)
    );
    // The application writes them to storage ...
    store.append(&handed).unwrap();
    // ... while leader 3 of term 2 replaces entries 2 and 3.
    let what = "then, before the application acknowledged them, an append after (1,1) of \
                (2,2) (3,2) from leader 3 of term 2";
    let resp = step_answer(
        &mut f,
        append_msg(3, 1, 2, (1, 1), 0, vec![ent(2, 2), ent(3, 2)]),
        MessageType::MsgAppendResponse,
        what,
    );
    assert!(!resp.reject, "{what}: prev (1,1) matches, must be accepted. {}", hint(CONFLICTS));
    // The late acknowledgement of the first batch.
    f.raft_log.stable_to(3, 1);
    let what = format!(
        "{what}, then stable_to(3, 1) (the application persisted the first batch, whose last \
         entry was (3,1); the log's entry 3 is now (3,2))"
    );
    assert_eq!(
        log_of(&f),
        vec![(1, 1), (2, 2), (3, 2)],
        "{what}: the log must still hold leader 3's entries; marking them stable reads the \
         replaced ones back from storage. stable_to must check the term at the index. {}",
        hint(READY)
    );
    let unstable: Vec<(u64, u64)> =
        f.raft_log.unstable_entries().iter().map(|e| (e.index, e.term)).collect();
    assert!(
        f.raft_log.stabled <= 1 && unstable.ends_with(&[(2, 2), (3, 2)]),
        "{what}: (2,2) and (3,2) were never persisted, so they must stay unstable (stabled <= 1); \
         got stabled {} and unstable {unstable:?}. {}",
        f.raft_log.stabled,
        hint(READY)
    );
    // The application persists the new entries and acknowledges them.
    store.append(f.raft_log.unstable_entries()).unwrap();
    f.raft_log.stable_to(3, 2);
    let what = "then the application persisted the unstable entries and called stable_to(3, 2)";
    assert!(
        f.raft_log.stabled == 3 && f.raft_log.unstable_entries().is_empty(),
        "{what}: everything is persisted: expected stabled 3 and no unstable entries, got \
         stabled {} and {} unstable. {}",
        f.raft_log.stabled,
        f.raft_log.unstable_entries().len(),
        hint(READY)
    );
    assert_eq!(
        log_of(&f),
        vec![(1, 1), (2, 2), (3, 2)],
        "{what}: the log, now read from storage. {}",
        hint(READY)
    );
}

#[test]
fn append_handling_table_2ab() {
    // Follower log (1,1) (2,2) (3,2), term 2, committed 1; leader 2 of term 3.
    // (prev, leader commit, entries) -> (reject, acknowledged index, log, committed)
    type Case = ((u64, u64), u64, Vec<(u64, u64)>, bool, Option<u64>, Vec<(u64, u64)>, u64);
    let log = vec![(1, 1), (2, 2), (3, 2)];
    let cases: Vec<Case> = vec![
        ((3, 3), 3, vec![], true, None, log.clone(), 1),
        ((4, 2), 4, vec![(5, 3)], true, None, log.clone(), 1),
        ((3, 2), 3, vec![], false, Some(3), log.clone(), 3),
        ((3, 2), 5, vec![], false, Some(3), log.clone(), 3),
        ((3, 2), 2, vec![], false, Some(3), log.clone(), 2),
        ((1, 1), 2, vec![(2, 3)], false, Some(2), vec![(1, 1), (2, 3)], 2),
        ((2, 2), 4, vec![(3, 2), (4, 3)], false, Some(4), vec![(1, 1), (2, 2), (3, 2), (4, 3)], 4),
        ((2, 2), 4, vec![(3, 3)], false, Some(3), vec![(1, 1), (2, 2), (3, 3)], 3),
        ((1, 1), 4, vec![(2, 2)], false, Some(2), log.clone(), 2),
        ((3, 2), 0, vec![(4, 3)], false, Some(4), vec![(1, 1), (2, 2), (3, 2), (4, 3)], 1),
        (
            (1, 1),
            1,
            vec![(2, 2), (3, 2), (4, 3)],
            false,
            Some(4),
            vec![(1, 1), (2, 2), (3, 2), (4, 3)],
            1,
        ),
    ];
    for (i, (prev, commit, ents, reject, acked, want_log, want_commit)) in
        cases.into_iter().enumerate()
    {
        let what = format!(
            "case {i}: append after {prev:?} of {ents:?} with leader commit {commit} to a \
             follower holding {log:?}, committed 1"
        );
        let mut f = node_with(1, &[1, 2, 3], &log, 2, 1);
        let m = append_msg(2, 1, 3, prev, commit, ents.iter().map(|&(i, t)| ent(i, t)).collect());
        let resp = step_answer(&mut f, m, MessageType::MsgAppendResponse, &what);
        assert_eq!(
            resp.reject,
            reject,
            "{what}: expected reject = {reject}, got {}. {}",
            harness::describe(&resp),
            hint(CONFLICTS)
        );
        if let Some(acked) = acked {
            assert_eq!(
                resp.index,
                acked,
                "{what}: expected to acknowledge index {acked} (prev index + entries), got {}. {}",
                resp.index,
                hint(REPL)
            );
        }
        assert_eq!(log_of(&f), want_log, "{what}: wrong log afterwards. {}", hint(CONFLICTS));
        assert_eq!(
            f.raft_log.committed,
            want_commit,
            "{what}: expected committed {want_commit} (min(leader commit, last new index), never \
             lower than before), got {}. {}",
            f.raft_log.committed,
            hint(COMMIT)
        );
        assert_eq!(
            (f.term, f.state, f.lead),
            (3, StateRole::Follower, 2),
            "{what}: the follower moves to term 3 and follows node 2. {}",
            hint(REPL)
        );
    }
}

// ----- voting with logs ----------------------------------------------------------

#[test]
fn vote_request_carries_last_log_term_and_index_2ab() {
    let mut r = node_with(1, &[1, 2, 3], &[], 0, 0);
    // Entries arrive by replication from leader 2 of term 2.
    let m = append_msg(2, 1, 2, (0, 0), 0, vec![ent(1, 1), ent(2, 2), ent(3, 2)]);
    let resp = step_answer(&mut r, m, MessageType::MsgAppendResponse, "setup append");
    assert!(!resp.reject, "setup: the append after (0,0) must be accepted. {}", hint(REPL));
    // A higher-term vote request (refused: its log is behind) moves r to term 6.
    let _ = r.step(vote_req(3, 1, 6, (1, 1)));
    take(&mut r);
    assert_eq!(r.term, 6, "setup: a vote request of term 6 moves the node to term 6");
    r.step(msg(1, 1, MessageType::MsgHup, 0)).unwrap();
    let msgs = take(&mut r);
    assert_eq!(r.term, 7, "campaigning moves the node to term 7. {}", hint(VOTING));
    for to in [2, 3] {
        let reqs: Vec<&Message> = msgs
            .iter()
            .filter(|m| m.to == to && m.msg_type() == MessageType::MsgRequestVote)
            .collect();
        assert_eq!(reqs.len(), 1, "expected one MsgRequestVote to {to}. {}", hint(VOTING));
        assert_eq!(
            (reqs[0].term, reqs[0].index, reqs[0].log_term),
            (7, 3, 2),
            "the vote request to {to} should carry term 7, the last log index 3 and the last \
             log TERM 2 (the term of entry 3, not the current term); got {}. {}",
            harness::describe(reqs[0]),
            hint(VOTING)
        );
    }
}

#[test]
fn voter_denies_less_up_to_date_candidate_2ab() {
    // Voter log (1,1) (2,2) (3,2): last term 2, last index 3.
    let cases: [(&str, (u64, u64), bool); 7] = [
        ("older last term, longer log", (10, 1), false),
        ("same last term, shorter log", (2, 2), false),
        ("empty log", (0, 0), false),
        ("same last term, same length", (3, 2), true),
        ("same last term, longer log", (9, 2), true),
        ("newer last term, shorter log", (1, 3), true),
        ("newer last term, longer log", (5, 4), true),
    ];
    for (what, last, grant) in cases {
        let mut v = node_with(1, &[1, 2, 3], &[(1, 1), (2, 2), (3, 2)], 2, 0);
        let what = format!(
            "voter with last entry (index 3, term 2), candidate {what} (index {}, term {})",
            last.0, last.1
        );
        let resp = step_answer(
            &mut v,
            vote_req(2, 1, 5, last),
            MessageType::MsgRequestVoteResponse,
            &what,
        );
        assert_eq!(
            (resp.to, resp.term, !resp.reject),
            (2, 5, grant),
            "{what}: expected an answer to 2 in term 5 that {} the vote (compare last terms \
             first, then last indexes); got {}. {}",
            if grant { "grants" } else { "denies" },
            harness::describe(&resp),
            hint(VOTING)
        );
        assert_eq!(
            v.vote,
            if grant { 2 } else { 0 },
            "{what}: the vote recorded for term 5 should be {}; got {}. {}",
            if grant { 2 } else { 0 },
            v.vote,
            hint(VOTING)
        );
    }
}

#[test]
fn vote_granting_matrix_2ab() {
    #[derive(Clone, Copy, Debug)]
    enum Role {
        Follower,
        Candidate,
        Leader,
    }
    // Voter log (1,1) (2,2), stored term 3; every role ends at term 4.
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        for (term_name, msg_term) in [("lower", 3u64), ("equal", 4), ("higher", 5)] {
            for log_name in ["behind", "equal", "ahead"] {
                let mut v = node_with(1, &[1, 2, 3], &[(1, 1), (2, 2)], 3, 0);
                match role {
                    Role::Follower => v.become_follower(4, 0),
                    Role::Candidate => v.become_candidate(),
                    Role::Leader => {
                        v.become_candidate();
                        v.become_leader();
                    }
                }
                take(&mut v);
                let (li, lt) = (v.raft_log.last_index(), v.raft_log.last_term());
                let last = match log_name {
                    "behind" => (li + 5, lt - 1),
                    "equal" => (li, lt),
                    _ => (li + 1, lt),
                };
                let up_to_date = log_name != "behind";
                let (want_grant, want_term, want_role) = match (term_name, role) {
                    ("lower", _) => (false, 4, None),
                    ("equal", Role::Follower) => (up_to_date, 4, Some(StateRole::Follower)),
                    ("equal", Role::Candidate) => (false, 4, Some(StateRole::Candidate)),
                    ("equal", Role::Leader) => (false, 4, Some(StateRole::Leader)),
                    _ => (up_to_date, 5, Some(StateRole::Follower)),
                };
                let before = v.state;
                let what = format!(
                    "{role:?} of term 4 with last entry ({li}, {lt}) gets a vote request of a \
                     {term_name} term {msg_term} from a candidate {log_name} (last {last:?})"
                );
                let _ = v.step(vote_req(2, 1, msg_term, last));
                let msgs = take(&mut v);
                let resps: Vec<&Message> = msgs
                    .iter()
                    .filter(|m| m.msg_type() == MessageType::MsgRequestVoteResponse)
                    .collect();
                assert_eq!(
                    resps.len(),
                    1,
                    "{what}: expected exactly one MsgRequestVoteResponse, got {}. {}",
                    harness::describe_all(&msgs),
                    hint(VOTING)
                );
                let resp = resps[0];
                assert_eq!(
                    (resp.to, !resp.reject, resp.term),
                    (2, want_grant, want_term),
                    "{what}: expected the answer to 2 to {} in term {want_term}; got {}. {}",
                    if want_grant { "grant" } else { "deny" },
                    harness::describe(resp),
                    hint(VOTING)
                );
                let want_role = want_role.unwrap_or(before);
                assert_eq!(
                    (v.state, v.term),
                    (want_role, want_term),
                    "{what}: expected the voter to be {want_role:?} of term {want_term} \
                     afterwards; got {:?} of term {}. {}",
                    v.state,
                    v.term,
                    hint(VOTING)
                );
            }
        }
    }
}

// ----- the commit rule -------------------------------------------------------------

#[test]
fn only_current_term_entries_commit_by_counting_2ab() {
    // The paper's Figure 8 (c): S1 leads term 4 with (1,1) (2,2) and its
    // no-op (3,4); entry 2 of term 2 reaches a majority of 5.
    let mut r = leader_with(1, &[1, 2, 3, 4, 5], &[(1, 1), (2, 2)], 3);
    assert_eq!((r.term, r.raft_log.last_index()), (4, 3), "setup: term 4, no-op at 3");
    r.step(append_resp(2, 1, 4, 2)).unwrap();
    r.step(append_resp(3, 1, 4, 2)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        0,
        "entry 2 (of old term 2) is on 3 of 5 nodes, but a leader only commits entries of its \
         own term by counting replicas; expected committed 0, got {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
    let msgs = take(&mut r);
    assert!(
        msgs.iter().all(|m| m.commit == 0),
        "nothing is committed, yet the leader sent {}. {}",
        harness::describe_all(&msgs),
        hint(COMMIT)
    );
    r.step(append_resp(2, 1, 4, 3)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        0,
        "the no-op (3,4) is only on 2 of 5 nodes; expected committed 0, got {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
    r.step(append_resp(4, 1, 4, 3)).unwrap();
    assert_eq!(
        r.raft_log.committed,
        3,
        "the no-op (3,4) of the current term is now on 3 of 5 nodes: it commits, and entries \
         1 and 2 with it; expected committed 3, got {}. {}",
        r.raft_log.committed,
        hint(COMMIT)
    );
}

#[test]
fn old_term_entry_on_majority_is_overwritten_by_newer_leader_2ab() {
    // Figure 8 (c) then (d): S1 (term 4) got its old entry (2,2) onto S2 and
    // S3 but must not have committed it, because S5 (last entry (2,3)) can
    // still win and overwrite it.
    let peers = [1, 2, 3, 4, 5];
    let mut s1 = leader_with(1, &peers, &[(1, 1), (2, 2)], 3);
    s1.step(append_resp(2, 1, 4, 2)).unwrap();
    s1.step(append_resp(3, 1, 4, 2)).unwrap();
    take(&mut s1);
    assert_eq!(
        s1.raft_log.committed,
        0,
        "S1 must not commit the old-term entry 2 by counting replicas; got committed {}. {}",
        s1.raft_log.committed,
        hint(COMMIT)
    );
    let s2 = node_with(2, &peers, &[(1, 1), (2, 2)], 4, 1);
    let s3 = node_with(3, &peers, &[(1, 1), (2, 2)], 4, 1);
    let s4 = node_with(4, &peers, &[(1, 1)], 4, 1);
    let s5 = node_with(5, &peers, &[(1, 1), (2, 3)], 4, 1);
    let mut net = Network::new(vec![Some(s1), Some(s2), Some(s3), Some(s4), Some(s5)]);
    net.isolate(1);
    net.hup(5);
    assert_eq!(
        net.state(5),
        StateRole::Leader,
        "S5's last entry (2,3) is more up to date than S2/S3's (2,2): it should win; {}. {}",
        net.summary(),
        hint(VOTING)
    );
    let want = vec![(1, 1), (2, 3), (3, 5)];
    for id in 2..=5 {
        assert_eq!(
            log_of(net.peer(id)),
            want,
            "node {id}: the new leader replaces the uncommitted (2,2) by its (2,3). {}",
            hint(CONFLICTS)
        );
        assert_eq!(net.peer(id).raft_log.committed, 3, "node {id} commits 3. {}", hint(COMMIT));
    }
    net.recover();
    net.beat(5);
    assert_eq!(
        log_of(net.peer(1)),
        want,
        "S1, back as a follower, gets the leader's log after a heartbeat. {}",
        hint(CONFLICTS)
    );
}

// ----- terms --------------------------------------------------------------------

#[test]
fn stale_term_append_ignored_2ab() {
    // A follower of term 5 (leader 3) and a leader of term 5 both get an
    // append and a heartbeat from a deposed leader of term 3.
    let mut f = node_with(1, &[1, 2, 3], &[(1, 1)], 5, 0);
    f.become_follower(5, 3);
    let mut l = leader_with(1, &[1, 2, 3], &[(1, 1)], 4);
    assert_eq!(l.term, 5, "setup: leader of term 5");
    for (name, r) in [("follower", &mut f), ("leader", &mut l)] {
        let (log, committed, state, lead) = (log_of(r), r.raft_log.committed, r.state, r.lead);
        let what = format!("{name} of term 5 gets an append of term 3 (after (1,1), commit 2)");
        let m = append_msg(2, 1, 3, (1, 1), 2, vec![ent(2, 3)]);
        let resp = step_answer(r, m, MessageType::MsgAppendResponse, &what);
        assert_eq!(
            (resp.to, resp.term),
            (2, 5),
            "{what}: expected an answer to 2 carrying term 5 (so the stale leader learns it \
             was replaced); got {}. {}",
            harness::describe(&resp),
            hint(REPL)
        );
        assert!(
            resp.reject,
            "{what}: the answer must not acknowledge the stale entries; got {}. {}",
            harness::describe(&resp),
            hint(REPL)
        );
        let what = format!("{name} of term 5 after a stale heartbeat (term 3, commit 1)");
        let _ = r.step(harness::heartbeat(2, 1, 3, 1));
        take(r);
        assert_eq!(
            (log_of(r), r.raft_log.committed, r.state, r.lead, r.term),
            (log.clone(), committed, state, lead, 5),
            "{what}: stale messages change neither the log, the commit index, the role, the \
             leader nor the term. {}",
            hint(REPL)
        );
    }
}

#[test]
fn all_roles_step_down_on_higher_term_append_2ab() {
    for name in ["follower", "candidate", "leader"] {
        let mut r = node_with(1, &[1, 2, 3], &[(1, 1)], 2, 0);
        match name {
            "follower" => r.become_follower(3, 3),
            "candidate" => r.become_candidate(),
            _ => {
                r.become_candidate();
                r.become_leader();
            }
        }
        take(&mut r);
        assert_eq!(r.term, 3, "setup: {name} of term 3");
        let (li, lt) = (r.raft_log.last_index(), r.raft_log.last_term());
        let what = format!("{name} of term 3 gets an append of term 4 from 2 after ({li}, {lt})");
        let m = append_msg(2, 1, 4, (li, lt), li + 1, vec![ent(li + 1, 4)]);
        let resp = step_answer(&mut r, m, MessageType::MsgAppendResponse, &what);
        assert_eq!(
            (r.state, r.term, r.lead),
            (StateRole::Follower, 4, 2),
            "{what}: expected a follower of term 4 led by 2; got {:?} of term {} led by {}. {}",
            r.state,
            r.term,
            r.lead,
            hint(REPL)
        );
        assert!(
            !resp.reject && resp.index == li + 1 && resp.term == 4,
            "{what}: having stepped down it handles the append: expected an acknowledgement of \
             index {} in term 4; got {}. {}",
            li + 1,
            harness::describe(&resp),
            hint(REPL)
        );
        assert_eq!(
            (r.raft_log.last_index(), r.raft_log.last_term(), r.raft_log.committed),
            (li + 1, 4, li + 1),
            "{what}: expected the new entry appended and committed (leader commit {}). {}",
            li + 1,
            hint(COMMIT)
        );
    }
}

// ----- heartbeats, progress, back-off -------------------------------------------------

#[test]
fn heartbeat_commit_is_min_of_matched_and_committed_2ab() {
    let mut r = leader_with(1, &[1, 2, 3], &[], 0);
    r.step(propose_msg(&[b"a", b"b"])).unwrap();
    r.step(append_resp(2, 1, 1, 3)).unwrap();
    assert_eq!(r.raft_log.committed, 3, "setup: node 2 holds 1..=3, committed 3");
    take(&mut r);
    r.step(msg(1, 1, MessageType::MsgBeat, 0)).unwrap();
    let msgs = take(&mut r);
    for (to, want) in [(2, 3), (3, 0)] {
        let hbs: Vec<&Message> = msgs
            .iter()
            .filter(|m| m.to == to && m.msg_type() == MessageType::MsgHeartbeat)
            .collect();
        assert_eq!(
            hbs.len(),
            1,
            "expected one heartbeat to {to}: {}",
            harness::describe_all(&msgs)
        );
        assert_eq!(
            hbs[0].commit,
            want,
            "the heartbeat to {to} should carry min(its matched, committed 3) = {want}: never \
             more than the follower is known to hold; got {}. {}",
            hbs[0].commit,
            hint(COMMIT)
        );
    }
}

#[test]
fn follower_next_index_after_election_2ab() {
    let mut r = node_with(1, &[1, 2, 3], &[(1, 1), (2, 1), (3, 2)], 2, 0);
    r.become_candidate();
    r.become_leader();
    let msgs = take(&mut r);
    for id in [2, 3] {
        let pr = r.prs[&id].clone();
        assert_eq!(
            (pr.matched, pr.next_index),
            (0, 4),
            "a new leader knows nothing of node {id}: expected matched 0 and next = its last \
             index before the no-op + 1 = 4; got matched {}, next {}. {}",
            pr.matched,
            pr.next_index,
            hint(REPL)
        );
        let m = only_append_to(&msgs, id, "right after the election");
        assert_eq!(
            (m.index, m.log_term, m.entries.clone()),
            (3, 2, vec![ent(4, 3)]),
            "the first append to {id} after the election should carry the no-op (4,3) after \
             prev (3,2); got {}. {}",
            harness::describe(&m),
            hint(REPL)
        );
    }
    // Progress from an earlier term is forgotten on re-election.
    r.step(append_resp(2, 1, 3, 4)).unwrap();
    assert_eq!(r.prs[&2].matched, 4, "setup: node 2 acknowledged 4");
    r.step(harness::heartbeat(3, 1, 4, 0)).unwrap();
    assert_eq!(r.state, StateRole::Follower, "setup: a heartbeat of term 4 deposes the leader");
    r.step(msg(1, 1, MessageType::MsgHup, 0)).unwrap();
    let term = r.term;
    r.step(harness::vote_resp(2, 1, term, false)).unwrap();
    assert_eq!(r.state, StateRole::Leader, "setup: node 1 wins term {term}");
    let last_before_noop = r.raft_log.last_index() - 1;
    for id in [2, 3] {
        let pr = r.prs[&id].clone();
        assert_eq!(
            (pr.matched, pr.next_index),
            (0, last_before_noop + 1),
            "after winning term {term}, node {id}'s progress restarts: expected matched 0, next \
             {}; got matched {}, next {}. {}",
            last_before_noop + 1,
            pr.matched,
            pr.next_index,
            hint(REPL)
        );
    }
}

#[test]
fn leader_backs_off_on_rejection_2ab() {
    // Leader of term 4: (1,1) (2,1) (3,2) (4,2) (5,3) and its no-op (6,4).
    let mut r = leader_with(1, &[1, 2, 3], &[(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)], 3);
    // Node 2 holds (1,1) (2,1) (3,1) (4,1): it rejects prev (5,3), hinting (4,1).
    let mut rej = msg(2, 1, MessageType::MsgAppendResponse, 4);
    rej.reject = true;
    rej.index = 4;
    rej.log_term = 1;
    r.step(rej.clone()).unwrap();
    let msgs = take(&mut r);
    let m = only_append_to(&msgs, 2, "after a rejection hinting (4,1)");
    assert!(
        m.index < 5,
        "after node 2 rejected prev 5, the leader must retry from an earlier prev; got {}. {}",
        harness::describe(&m),
        hint(CONFLICTS)
    );
    check_append_consistent(&r, &m, "the retry after a rejection");
    assert_eq!(r.raft_log.committed, 0, "a rejection commits nothing. {}", hint(COMMIT));
    // Node 2 acknowledges everything; a late duplicate of the rejection
    // must not move its matched back.
    r.step(append_resp(2, 1, 4, 6)).unwrap();
    assert_eq!(r.raft_log.committed, 6, "node 2 holds 1..=6: committed 6. {}", hint(COMMIT));
    r.step(rej).unwrap();
    let pr = r.prs[&2].clone();
    assert!(
        pr.matched == 6 && pr.next_index == 7,
        "a stale rejection arriving after node 2 acknowledged 6 must not lower its progress \
         (matched 6, next 7); got matched {}, next {}. {}",
        pr.matched,
        pr.next_index,
        hint(CONFLICTS)
    );
}

// ----- clusters on the network ----------------------------------------------------

/// Asserts that every raft node of `ids` has exactly the log of `leader`
/// and its commit index.
fn assert_same_log(net: &Network, leader: u64, ids: &[u64], what: &str) {
    let want = entries_of(net.peer(leader));
    let committed = net.peer(leader).raft_log.committed;
    for &id in ids {
        let r = net.peer(id);
        assert_eq!(
            entries_of(r),
            want,
            "{what}: node {id}'s log should equal leader {leader}'s: {:?} vs {:?}. {}",
            log_of(r),
            log_of(net.peer(leader)),
            hint(REPL)
        );
        assert_eq!(
            r.raft_log.committed,
            committed,
            "{what}: node {id} should know the leader's commit index {committed}; got {}. {}",
            r.raft_log.committed,
            hint(COMMIT)
        );
    }
}

#[test]
fn proposal_reaches_every_follower_and_commits_2ab() {
    let mut net = Network::new(vec![None, None, None, None, None]);
    net.hup(1);
    assert_eq!(net.leader(), Some(1), "setup: node 1 wins; {}", net.summary());
    net.propose(1, b"x");
    for id in 1..=5 {
        let r = net.peer(id);
        assert_eq!(
            (r.raft_log.last_index(), r.raft_log.committed),
            (2, 2),
            "node {id}: after one proposal and no heartbeat, every node should hold and know \
             committed the no-op and the proposal (last 2, committed 2); got last {}, \
             committed {}. {}",
            r.raft_log.last_index(),
            r.raft_log.committed,
            hint(COMMIT)
        );
        assert_eq!(committed_data(r), vec![b"x".to_vec()], "node {id}. {}", hint(REPL));
    }
}

#[test]
fn single_node_commit_2ab() {
    let mut net = Network::new(vec![None]);
    net.hup(1);
    assert_eq!(net.state(1), StateRole::Leader, "a single node wins at once. {}", hint(VOTING));
    assert_eq!(
        net.peer(1).raft_log.committed,
        1,
        "a single node commits its no-op at once; got committed {}. {}",
        net.peer(1).raft_log.committed,
        hint(COMMIT)
    );
    net.propose(1, b"a");
    net.propose(1, b"b");
    let r = net.peer(1);
    assert_eq!(
        (r.raft_log.committed, r.prs[&1].matched),
        (3, 3),
        "a single node commits each proposal at once (it is its own majority): expected \
         committed 3, matched 3; got committed {}, matched {}. {}",
        r.raft_log.committed,
        r.prs[&1].matched,
        hint(COMMIT)
    );
    assert_eq!(committed_data(r), vec![b"a".to_vec(), b"b".to_vec()], "{}", hint(COMMIT));
}

#[test]
fn leader_repairs_figure7_logs_2ab() {
    // The paper's Figure 7: the leader of term 8 and followers (a)..(f).
    let leader = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let cases: [(&str, &[u64]); 6] = [
        ("(a) missing one entry", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("(b) missing many entries", &[1, 1, 1, 4]),
        ("(c) one extra entry of term 6", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("(d) extra entries of term 7", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("(e) missing entries, extra of term 4", &[1, 1, 1, 4, 4, 4, 4]),
        ("(f) extra entries of terms 2 and 3", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    let with_terms = |id: u64, terms: &[u64]| {
        let log: Vec<(u64, u64)> =
            terms.iter().enumerate().map(|(i, &t)| (i as u64 + 1, t)).collect();
        node_with(id, &[1, 2, 3], &log, 7, 0)
    };
    for (case, follower) in cases {
        // Node 3 has the leader's log and votes for it; node 2 is the case.
        let mut net = Network::new(vec![
            Some(with_terms(1, &leader)),
            Some(with_terms(2, follower)),
            Some(with_terms(3, &leader)),
        ]);
        net.hup(1);
        assert_eq!(net.leader(), Some(1), "{case}: setup: node 1 wins term 8; {}", net.summary());
        net.beat(1);
        let want: Vec<(u64, u64)> =
            leader.iter().enumerate().map(|(i, &t)| (i as u64 + 1, t)).chain([(11, 8)]).collect();
        assert_eq!(log_of(net.peer(1)), want, "{case}: the leader's log never changes");
        assert_eq!(
            log_of(net.peer(2)),
            want,
            "{case}: the leader should make the follower's log equal to its own. {}",
            hint(CONFLICTS)
        );
        assert_same_log(&net, 1, &[2, 3], case);
        assert_eq!(net.peer(1).raft_log.committed, 11, "{case}: committed 11. {}", hint(COMMIT));
    }
}

#[test]
fn newer_leader_overwrites_uncommitted_entries_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    net.hup(1);
    net.isolate(1);
    net.propose(1, b"lost1");
    net.propose(1, b"lost2");
    assert_eq!(
        (net.peer(1).raft_log.last_index(), net.peer(1).raft_log.committed),
        (3, 1),
        "an isolated leader appends proposals but cannot commit them. {}",
        hint(COMMIT)
    );
    net.hup(2);
    assert_eq!(net.leader(), Some(2), "setup: node 2 wins term 2; {}", net.summary());
    net.propose(2, b"kept");
    net.recover();
    net.beat(2);
    assert_eq!(
        (net.state(1), net.term(1)),
        (StateRole::Follower, 2),
        "the old leader steps down on the new leader's heartbeat. {}",
        hint(REPL)
    );
    assert_eq!(
        log_of(net.peer(1)),
        vec![(1, 1), (2, 2), (3, 2)],
        "the old leader's uncommitted entries 2 and 3 (term 1) are replaced by the new \
         leader's. {}",
        hint(CONFLICTS)
    );
    assert_same_log(&net, 2, &[1, 3], "after the heal");
    for id in 1..=3 {
        assert_eq!(
            committed_data(net.peer(id)),
            vec![b"kept".to_vec()],
            "node {id}: only the new leader's proposal is committed. {}",
            hint(CONFLICTS)
        );
    }
}

#[test]
fn replication_across_leader_changes_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    for (leader, data) in [(1u64, &b"a"[..]), (2, b"b"), (3, b"c"), (1, b"d")] {
        net.hup(leader);
        assert_eq!(net.leader(), Some(leader), "setup: node {leader} wins; {}", net.summary());
        net.propose(leader, data);
        assert_same_log(&net, leader, &[1, 2, 3], &format!("after leader {leader} proposed"));
    }
    let want = vec![(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3), (7, 4), (8, 4)];
    for id in 1..=3 {
        assert_eq!(
            (log_of(net.peer(id)), net.peer(id).raft_log.committed),
            (want.clone(), 8),
            "node {id}: each leader adds its no-op and its proposal; all is committed. {}",
            hint(REPL)
        );
        assert_eq!(
            committed_data(net.peer(id)),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()],
            "node {id}: every proposal survives the leader changes, in order. {}",
            hint(REPL)
        );
    }
}

#[test]
fn new_leader_noop_commits_earlier_entries_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    net.hup(1);
    // The proposal reaches everyone, but no acknowledgement gets back.
    net.ignore(MessageType::MsgAppendResponse);
    net.propose(1, b"x");
    for id in 1..=3 {
        let r = net.peer(id);
        assert_eq!(
            (r.raft_log.last_index(), r.raft_log.committed),
            (2, 1),
            "setup: node {id} holds the proposal at 2, uncommitted"
        );
    }
    net.recover();
    net.hup(2);
    assert_eq!(net.leader(), Some(2), "setup: node 2 wins term 2; {}", net.summary());
    for id in 1..=3 {
        let r = net.peer(id);
        assert_eq!(
            (log_of(r), r.raft_log.committed),
            (vec![(1, 1), (2, 1), (3, 2)], 3),
            "node {id}: once the new leader's no-op (3,2) is on a majority it commits, and the \
             earlier entry (2,1) with it; got log {:?}, committed {}. {}",
            log_of(r),
            r.raft_log.committed,
            hint(COMMIT)
        );
        assert_eq!(committed_data(r), vec![b"x".to_vec()], "node {id}. {}", hint(COMMIT));
    }
}

#[test]
fn heartbeat_response_triggers_catch_up_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    net.hup(1);
    net.isolate(3);
    net.propose(1, b"a");
    net.propose(1, b"b");
    net.recover();
    assert_eq!(
        net.peer(3).raft_log.last_index(),
        1,
        "setup: node 3 missed entries 2 and 3 while cut off"
    );
    let before = net.trace.len();
    net.beat(1);
    let appends_after_hb = net.trace[before..]
        .iter()
        .skip_while(|m| !(m.from == 3 && m.msg_type() == MessageType::MsgHeartbeatResponse))
        .filter(|m| m.to == 3 && m.msg_type() == MessageType::MsgAppend)
        .count();
    assert!(
        appends_after_hb > 0,
        "a heartbeat response from a lagging follower should make the leader send it an \
         append; trace: {}. {}",
        harness::describe_all(&net.trace[before..]),
        hint(REPL)
    );
    assert_same_log(&net, 1, &[2, 3], "after one heartbeat round");
    assert_eq!(committed_data(net.peer(3)), vec![b"a".to_vec(), b"b".to_vec()], "{}", hint(REPL));
    // Node 2 holds everything: its heartbeat response asks for nothing.
    let before = net.trace.len();
    net.beat(1);
    let appends_to_2 = net.trace[before..]
        .iter()
        .filter(|m| m.to == 2 && m.msg_type() == MessageType::MsgAppend)
        .count();
    assert_eq!(
        appends_to_2,
        0,
        "node 2 already holds the leader's last entry: its heartbeat response must not make the \
         leader send it an append; trace: {}. {}",
        harness::describe_all(&net.trace[before..]),
        hint(REPL)
    );
}

#[test]
fn dueling_candidates_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    net.cut(1, 3);
    net.hup(1);
    assert_eq!(net.leader(), Some(1), "setup: node 1 wins with node 2; {}", net.summary());
    net.hup(3);
    assert_eq!(
        net.state(3),
        StateRole::Candidate,
        "node 2 already follows 1 in term 1 and its log is ahead of 3's: 3 stays a candidate; \
         {}. {}",
        net.summary(),
        hint(VOTING)
    );
    net.recover();
    net.hup(3);
    for (id, last, committed) in [(1, 1, 1), (2, 1, 1), (3, 0, 0)] {
        let r = net.peer(id);
        assert_eq!(
            (r.state, r.term, r.raft_log.last_index(), r.raft_log.committed),
            (StateRole::Follower, 2, last, committed),
            "node {id}: node 3's term-2 campaign makes everyone move to term 2, and both others \
             refuse it (its log is behind), so all are followers; expected last {last}, \
             committed {committed}; {}. {}",
            net.summary(),
            hint(VOTING)
        );
    }
    net.hup(1);
    assert_eq!(net.leader(), Some(1), "node 1 wins term 3; {}", net.summary());
    net.propose(1, b"x");
    assert_same_log(&net, 1, &[2, 3], "after node 1 wins term 3");
    assert_eq!(committed_data(net.peer(3)), vec![b"x".to_vec()], "{}", hint(REPL));
}

#[test]
fn candidate_concedes_after_heal_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    net.isolate(1);
    net.hup(1);
    net.hup(3);
    assert_eq!(
        (net.state(1), net.leader()),
        (StateRole::Candidate, Some(3)),
        "setup: 1 is a lone candidate, 3 leads term 1; {}",
        net.summary()
    );
    net.recover();
    net.beat(3);
    let r = net.peer(1);
    assert_eq!(
        (r.state, r.term, r.lead),
        (StateRole::Follower, 1, 3),
        "the candidate of term 1 concedes to the leader of term 1 on its heartbeat. {}",
        hint(REPL)
    );
    net.propose(3, b"force");
    assert_same_log(&net, 3, &[1, 2], "after the heal and a proposal");
    assert_eq!(
        log_of(net.peer(1)),
        vec![(1, 1), (2, 1)],
        "node 1 holds the no-op and the proposal. {}",
        hint(REPL)
    );
    assert_eq!(net.peer(1).raft_log.committed, 2, "{}", hint(COMMIT));
}

#[test]
fn proposals_need_a_quorum_2ab() {
    // (cluster size, black holes, whether a proposal at node 1 commits)
    let cases: [(u64, &[u64], bool); 6] = [
        (3, &[], true),
        (3, &[3], true),
        (3, &[2, 3], false),
        (4, &[3, 4], false),
        (5, &[4, 5], true),
        (5, &[3, 4, 5], false),
    ];
    for (n, holes, commits) in cases {
        let what = format!("{n} nodes, {holes:?} unresponsive");
        let mut net = Network::with_black_holes(n, holes);
        net.hup(1);
        net.propose(1, b"p");
        for id in net.raft_ids() {
            let got = committed_data(net.peer(id));
            let want: Vec<Vec<u8>> = if commits { vec![b"p".to_vec()] } else { vec![] };
            assert_eq!(
                got,
                want,
                "{what}: node {id} should {} the proposal; {}. {}",
                if commits { "have committed" } else { "not have committed" },
                net.summary(),
                hint(COMMIT)
            );
        }
    }
    // A deposed leader cut off in a minority keeps accepting proposals but
    // never commits them.
    let mut net = Network::new(vec![None, None, None, None, None]);
    net.hup(1);
    for other in 3..=5 {
        net.cut(1, other);
        net.cut(2, other);
    }
    net.propose(1, b"minority");
    assert_eq!(
        net.peer(1).raft_log.committed,
        1,
        "leader 1 with only node 2 (2 of 5) cannot commit; got committed {}. {}",
        net.peer(1).raft_log.committed,
        hint(COMMIT)
    );
    net.hup(3);
    net.propose(3, b"majority");
    assert_eq!(
        committed_data(net.peer(3)),
        vec![b"majority".to_vec()],
        "the majority side elects 3 and commits. {}",
        hint(COMMIT)
    );
}

#[test]
fn reconnected_stale_leader_does_not_commit_from_heartbeat_2ab() {
    let mut net = Network::new(vec![None, None, None]);
    net.hup(1);
    net.isolate(1);
    net.propose(1, b"stale");
    net.hup(2);
    net.propose(2, b"new");
    assert_eq!(
        (net.leader(), net.peer(2).raft_log.committed),
        (Some(2), 3),
        "setup: node 2 leads term 2 with 3 committed; {}",
        net.summary()
    );
    // Reconnect node 1, but let only heartbeats through.
    net.recover();
    net.ignore(MessageType::MsgAppend);
    let before = net.trace.len();
    net.beat(2);
    assert_eq!(
        (net.state(1), net.term(1)),
        (StateRole::Follower, 2),
        "setup: the stale leader steps down on the heartbeat of term 2"
    );
    let hb_commits: Vec<u64> = net.trace[before..]
        .iter()
        .filter(|m| m.from == 2 && m.to == 1 && m.msg_type() == MessageType::MsgHeartbeat)
        .map(|m| m.commit)
        .collect();
    assert_eq!(
        hb_commits,
        vec![0],
        "the heartbeat to node 1 (matched 0) should carry min(matched 0, committed 3) = 0. {}",
        hint(COMMIT)
    );
    assert_eq!(
        net.peer(1).raft_log.committed,
        1,
        "node 1 still holds its own uncommitted (2,1) \"stale\": a heartbeat alone must not make \
         it commit index 2; got committed {}. {}",
        net.peer(1).raft_log.committed,
        hint(COMMIT)
    );
    net.recover();
    net.beat(2);
    assert_same_log(&net, 2, &[1, 3], "once appends get through");
    assert_eq!(committed_data(net.peer(1)), vec![b"new".to_vec()], "{}", hint(CONFLICTS));
}

// ----- property tests ---------------------------------------------------------

/// Replication on a hostile network over many seeds: log matching, leader
/// completeness and state machine safety after every step; once healed, a
/// last proposal reaches every node.
#[test]
fn random_faults_keep_logs_and_commits_safe_2ab() {
    let f = harness::chaos::Features { proposals: true, ..Default::default() };
    let stats =
        harness::chaos::check_seeds("random_faults_keep_logs_and_commits_safe_2ab", "2ab", f);
    assert!(stats.entries_applied >= 50 * stats.runs, "the runs should commit entries: {stats:?}");
}

/// `stable_to` of a prefix of the unstable entries marks just that prefix
/// stable; a later call with an older index (a repeated acknowledgement)
/// changes nothing.
#[test]
fn stable_to_takes_a_prefix_and_ignores_an_older_index_2ab() {
    let mut f = node_with(1, &[1, 2, 3], &[(1, 1), (2, 1)], 1, 0);
    let what =
        "follower 1 with (1,1) (2,1) stable, after an append of (3,1) (4,1) (5,1) from leader 2";
    let resp = step_answer(
        &mut f,
        append_msg(2, 1, 1, (2, 1), 0, vec![ent(3, 1), ent(4, 1), ent(5, 1)]),
        MessageType::MsgAppendResponse,
        what,
    );
    assert!(!resp.reject, "{what}: must be accepted. {}", hint(CONFLICTS));
    let unstable = |f: &Raft<MemoryStorage>| -> Vec<(u64, u64)> {
        f.raft_log.unstable_entries().iter().map(|e| (e.index, e.term)).collect()
    };
    assert_eq!(
        (f.raft_log.stabled, unstable(&f)),
        (2, vec![(3, 1), (4, 1), (5, 1)]),
        "{what}: (stabled, unstable entries). {}",
        hint(READY)
    );
    let store = f.raft_log.store.clone();
    store.append(&f.raft_log.unstable_entries()[..2]).unwrap();
    f.raft_log.stable_to(4, 1);
    let what = format!("{what}, then stable_to(4, 1) (the application persisted 3 and 4)");
    assert_eq!(
        (f.raft_log.stabled, unstable(&f)),
        (4, vec![(5, 1)]),
        "{what}: (stabled, unstable entries): only entry 5 is left to persist. {}",
        hint(READY)
    );
    f.raft_log.stable_to(3, 1);
    assert_eq!(
        (f.raft_log.stabled, unstable(&f)),
        (4, vec![(5, 1)]),
        "{what}, then stable_to(3, 1) (an older acknowledgement): nothing may change. {}",
        hint(READY)
    );
    assert_eq!(log_of(&f), vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)], "{what}: the log");
}

/// An acknowledgement that moves a follower's match index but not the
/// commit index sends nothing (the commit index did not move, so there is
/// nothing to tell anyone).
#[test]
fn a_late_acknowledgement_of_a_committed_entry_sends_nothing_2ab() {
    let peers = [1, 2, 3, 4, 5];
    let mut r = leader_with(1, &peers, &[], 0);
    r.step(append_resp(2, 1, 1, 1)).unwrap();
    r.step(append_resp(3, 1, 1, 1)).unwrap();
    assert_eq!(r.raft_log.committed, 1, "the no-op held by 3 of 5 nodes commits. {}", hint(COMMIT));
    take(&mut r);
    r.step(append_resp(4, 1, 1, 1)).unwrap();
    let msgs = take(&mut r);
    assert!(
        msgs.is_empty(),
        "leader 1 of 5, the no-op (1,1) committed; then node 4 acknowledges it too: node 4 has \
         everything and the commit index stays 1, so nothing is to be sent, yet the leader sent \
         {}. (maybe_commit must say the commit index moved only when it did.) {}",
        harness::describe_all(&msgs),
        hint(COMMIT)
    );
}
