//! Graded suite of lab 2aa: leader election.
//!
//! Every test drives bare `Raft` nodes at message level: either stepping
//! messages into one node and reading what it queued on `msgs`, or through
//! the deterministic network of `harness`. The network tests ignore
//! `MsgAppendResponse` (the leader's side of replication is lab 2ab);
//! followers do handle the leader's `MsgAppend` (its no-op), which lab 2aa
//! includes.
//!
//! Sections named in failure messages are those of docs/src/lab2a-raft.md.
#![allow(clippy::explicit_counter_loop, clippy::type_complexity)] // test tables read better as written

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use harness::*;
use raft::eraftpb::{Message, MessageType};
use raft::{Config, MemoryStorage, Raft, RaftLog, StateRole};

use MessageType::*;

const ET: usize = 10;
const ROLES: &str = "Terms and roles";
const TIMEOUTS: &str = "Election timeouts";
const VOTING: &str = "Voting";
const HEARTBEATS: &str = "Heartbeats";
const CONFLICTS: &str = "Conflicts";

type R = Raft<MemoryStorage>;

fn ids(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

fn fresh(id: u64, n: u64) -> R {
    new_raft(id, ids(n), ET, 1)
}

/// A node built with an explicit RNG seed (for tests over many seeds).
fn fresh_seeded(id: u64, n: u64, seed: u64) -> R {
    let mut c = Config::new(id, vec![]);
    c.election_tick = ET;
    c.heartbeat_tick = 1;
    c.seed = seed;
    Raft::new(&c, MemoryStorage::new_with_conf_state(ids(n))).expect("Raft::new")
}

fn step(r: &mut R, m: Message) {
    let _ = r.step(m);
}

fn hup(r: &mut R) {
    let id = r.id;
    step(r, msg(id, id, MsgHup, 0));
}

/// Node `id` of an `n`-node cluster, a candidate of term 1, outbox empty.
fn candidate(id: u64, n: u64) -> R {
    let mut r = fresh(id, n);
    hup(&mut r);
    expect_eq(r.state, StateRole::Candidate, format!("node {id} of {n} after MsgHup"), TIMEOUTS);
    take_msgs(&mut r);
    r
}

/// Node `id` of an `n`-node cluster, leader of term 1 (a majority granted
/// its vote), outbox empty.
fn leader(id: u64, n: u64) -> R {
    let mut r = candidate(id, n);
    let need = n as usize / 2;
    for p in ids(n).into_iter().filter(|&p| p != id).take(need) {
        step(&mut r, vote_resp(p, id, 1, false));
    }
    expect_eq(
        r.state,
        StateRole::Leader,
        format!("node {id} of {n}, candidate of term 1, after {need} granted votes"),
        VOTING,
    );
    take_msgs(&mut r);
    r
}

/// Messages of type `t` in `ms`.
fn of_type(ms: &[Message], t: MessageType) -> Vec<Message> {
    ms.iter().filter(|m| m.msg_type() == t).cloned().collect()
}

/// An election network of `n` fresh nodes: the leader's side of
/// replication (append responses, lab 2ab) is left out.
fn election_net(n: u64) -> Network {
    let mut net = Network::new((0..n).map(|_| None).collect());
    net.ignore(MsgAppendResponse);
    net
}

/// Ticks `r` until it sends a vote request (at most `limit` ticks); returns
/// the number of ticks, or None.
fn ticks_until_campaign(r: &mut R, limit: usize) -> Option<usize> {
    for t in 1..=limit {
        r.tick();
        let out = take_msgs(r);
        if !of_type(&out, MsgRequestVote).is_empty() {
            return Some(t);
        }
    }
    None
}

// ----- terms and roles ---------------------------------------------------

#[test]
fn starts_as_follower_2aa() {
    for n in [1u64, 3, 5] {
        for id in 1..=n {
            let r = fresh(id, n);
            let what = format!("fresh node {id} of a {n}-node cluster");
            expect_eq(r.state, StateRole::Follower, format!("{what}: role"), ROLES);
            expect_eq(r.term, 0, format!("{what}: term"), ROLES);
            expect_eq(r.lead, 0, format!("{what}: leader"), ROLES);
            expect_eq(r.vote, 0, format!("{what}: vote"), ROLES);
            expect_eq(r.msgs.len(), 0, format!("{what}: messages queued"), ROLES);
        }
    }
}

/// The messages of a higher term that a node of any role may receive, with
/// the leader it must then know (the sender for an append or a heartbeat).
fn higher_term_table(to: u64, term: u64) -> Vec<(Message, u64)> {
    vec![
        (heartbeat(2, to, term, 0), 2),
        (append(3, to, term, 0, 0, vec![], 0), 3),
        (vote_req(2, to, term, 5, 5), 0),
        (vote_resp(3, to, term, true), 0),
        (msg(2, to, MsgHeartbeatResponse, term), 0),
        (msg(3, to, MsgAppendResponse, term), 0),
    ]
}

fn check_higher_term(role: &str, make: impl Fn() -> R) {
    for term in [2u64, 7] {
        for (m, lead) in higher_term_table(1, term) {
            let mut r = make();
            let what = format!("{role} of term {} after {}", r.term, describe(&m));
            step(&mut r, m);
            expect_eq(r.state, StateRole::Follower, format!("{what}: role"), ROLES);
            expect_eq(r.term, term, format!("{what}: term"), ROLES);
            expect_eq(r.lead, lead, format!("{what}: leader"), ROLES);
        }
    }
}

#[test]
fn higher_term_message_updates_follower_2aa() {
    check_higher_term("follower", || fresh(1, 3));
    // A follower that voted in term 1 forgets that vote in a new term.
    let mut r = fresh(1, 3);
    step(&mut r, vote_req(2, 1, 1, 0, 0));
    expect_eq(r.vote, 2, "follower of term 0 after a vote request of term 1 from 2: vote", VOTING);
    step(&mut r, heartbeat(3, 1, 2, 0));
    expect_eq(
        r.vote,
        0,
        "follower that voted for 2 in term 1, after a heartbeat of term 2: vote (a new term has no vote yet)",
        ROLES,
    );
    expect_eq((r.term, r.lead), (2, 3), "same node: (term, leader)", ROLES);
}

#[test]
fn higher_term_message_makes_candidate_follower_2aa() {
    check_higher_term("candidate", || candidate(1, 3));
}

#[test]
fn higher_term_message_makes_leader_follower_2aa() {
    check_higher_term("leader", || leader(1, 3));
    // A 5-node leader too.
    let mut r = leader(1, 5);
    step(&mut r, heartbeat(4, 1, 3, 0));
    expect_eq(
        (r.state, r.term, r.lead),
        (StateRole::Follower, 3, 4),
        "leader of term 1 (5 nodes) after a heartbeat of term 3 from 4: (role, term, leader)",
        ROLES,
    );
}

/// Responses are answers to what a node asked *in the term it asked in*. A
/// response of an older term answers an older election or an older
/// leadership: a vote granted then says nothing about this election, and an
/// append acknowledged then may be of an entry that was replaced since. It
/// must be dropped, or a candidate wins with old votes (two leaders in one
/// term) and a leader counts an entry as replicated where it is not.
#[test]
fn responses_from_an_older_term_are_ignored_2aa() {
    // Node 1 of 3, log (1,1) (2,2), term 2: campaigns in term 3.
    let candidate_of_term_3 = || {
        let mut r = raft_with_log(1, ids(3), &[1, 2], 2);
        hup(&mut r);
        expect_eq(
            (r.state, r.term),
            (StateRole::Candidate, 3),
            "node 1 of 3 in term 2 after MsgHup: (role, term)",
            TIMEOUTS,
        );
        take_msgs(&mut r);
        r
    };
    let mut r = candidate_of_term_3();
    step(&mut r, vote_resp(2, 1, 2, false));
    expect_eq(
        (r.state, r.term),
        (StateRole::Candidate, 3),
        "candidate 1 of term 3 after a vote granted by 2 in term 2 (a vote of the previous \
         election, delayed): (role, term); only votes of term 3 count",
        ROLES,
    );
    step(&mut r, vote_resp(3, 1, 3, false));
    expect_eq(
        (r.state, r.term),
        (StateRole::Leader, 3),
        "then a vote granted by 3 in term 3 (with its own, 2 of 3): (role, term)",
        VOTING,
    );
    take_msgs(&mut r);
    // The leader of term 3 has its no-op at index 3; node 2 acknowledged
    // an index 3 in term 2, when that index held another entry.
    let last = r.raft_log.last_index();
    expect_eq(
        (last, r.raft_log.term(last).ok()),
        (3, Some(3)),
        "leader 1 of term 3: (last index, its term): the no-op",
        HEARTBEATS,
    );
    let mut ack = msg(2, 1, MsgAppendResponse, 2);
    ack.index = 3;
    step(&mut r, ack.clone());
    let what = format!("leader 1 of term 3 after {}", describe(&ack));
    expect_eq((r.state, r.term), (StateRole::Leader, 3), format!("{what}: (role, term)"), ROLES);
    expect_eq(
        r.prs.get(&2).map(|pr| pr.matched),
        Some(0),
        format!(
            "{what}: node 2's matched index; an acknowledgement of term 2 is not one of term 3's \
             entries (TINYKV_SEED={})",
            seed()
        ),
        ROLES,
    );
    expect_eq(
        r.raft_log.committed,
        0,
        format!("{what}: committed (the no-op of term 3 is on node 1 alone)"),
        ROLES,
    );
}

// ----- heartbeats --------------------------------------------------------

#[test]
fn leader_broadcasts_heartbeat_on_beat_2aa() {
    for n in [3u64, 5] {
        let mut r = leader(2, n);
        step(&mut r, msg(2, 2, MsgBeat, 0));
        let out = take_msgs(&mut r);
        let what = format!("leader 2 of term 1 ({n} nodes) after MsgBeat");
        let hbs = of_type(&out, MsgHeartbeat);
        let to: BTreeSet<u64> = hbs.iter().map(|m| m.to).collect();
        let want: BTreeSet<u64> = ids(n).into_iter().filter(|&p| p != 2).collect();
        expect_eq(to, want, format!("{what}: heartbeat recipients"), HEARTBEATS);
        expect_eq(hbs.len(), n as usize - 1, format!("{what}: heartbeats sent"), HEARTBEATS);
        for m in &hbs {
            expect_eq((m.from, m.term), (2, 1), format!("{what}: {}", describe(m)), HEARTBEATS);
        }
        expect_eq(
            out.len(),
            hbs.len(),
            format!("{what}: messages other than heartbeats: {}", describe_all(&out)),
            HEARTBEATS,
        );
        expect_eq(r.state, StateRole::Leader, format!("{what}: role"), HEARTBEATS);
    }
}

#[test]
fn leader_sends_heartbeat_every_heartbeat_tick_2aa() {
    let mut r = new_raft(1, ids(3), ET, 3);
    hup(&mut r);
    step(&mut r, vote_resp(2, 1, 1, false));
    expect_eq(r.state, StateRole::Leader, "node 1 after MsgHup and one grant of 3", VOTING);
    take_msgs(&mut r);
    let mut beats_at = Vec::new();
    for t in 1..=4 * ET {
        r.tick();
        let out = take_msgs(&mut r);
        let hbs = of_type(&out, MsgHeartbeat);
        if !hbs.is_empty() {
            expect_eq(hbs.len(), 2, format!("heartbeats sent at tick {t}"), HEARTBEATS);
            beats_at.push(t);
        }
        expect_eq(
            of_type(&out, MsgRequestVote).len(),
            0,
            format!("vote requests sent by a leader at tick {t}"),
            TIMEOUTS,
        );
    }
    let want: Vec<usize> = (1..=4 * ET).filter(|t| t % 3 == 0).collect();
    expect_eq(
        beats_at,
        want,
        "ticks at which a leader with heartbeat_tick 3 sent heartbeats",
        HEARTBEATS,
    );
    expect_eq(
        (r.state, r.term),
        (StateRole::Leader, 1),
        "leader after 40 ticks: (role, term)",
        ROLES,
    );
}

#[test]
fn beat_only_acts_on_leader_2aa() {
    for (role, mut r) in [("follower", fresh(1, 3)), ("candidate", candidate(1, 3))] {
        let before = (r.state, r.term, r.vote, r.lead);
        step(&mut r, msg(1, 1, MsgBeat, 0));
        let out = take_msgs(&mut r);
        expect_eq(
            describe_all(&out),
            "[]".to_string(),
            format!("messages sent by a {role} after MsgBeat"),
            TIMEOUTS,
        );
        expect_eq(
            (r.state, r.term, r.vote, r.lead),
            before,
            format!("{role} after MsgBeat"),
            TIMEOUTS,
        );
    }
}

#[test]
fn hup_on_leader_is_noop_2aa() {
    let mut r = leader(1, 3);
    let last = r.raft_log.last_index();
    step(&mut r, msg(1, 1, MsgHup, 0));
    let out = take_msgs(&mut r);
    expect_eq(
        describe_all(&out),
        "[]".to_string(),
        "messages sent by a leader after MsgHup",
        TIMEOUTS,
    );
    expect_eq(
        (r.state, r.term, r.vote, r.lead, r.raft_log.last_index()),
        (StateRole::Leader, 1, 1, 1, last),
        "leader of term 1 after MsgHup: (role, term, vote, leader, last index)",
        TIMEOUTS,
    );
    // Through the network: a second MsgHup changes nothing either.
    let mut net = election_net(3);
    net.hup(1);
    net.hup(1);
    expect_eq(
        (net.leader(), net.term(1), net.term(2), net.term(3)),
        (Some(1), 1, 1, 1),
        "3-node network after MsgHup to node 1 twice: (leader, terms)",
        TIMEOUTS,
    );
}

// ----- election timeouts -------------------------------------------------

#[test]
fn election_timeout_starts_election_2aa() {
    for n in [3u64, 5] {
        let mut r = fresh(2, n);
        let mut prev_term = 0;
        for round in 1..=3u64 {
            let role = if round == 1 { "follower" } else { "candidate" };
            let what = format!("{role} 2 of {n} nodes, term {prev_term}, ticking");
            let mut fired = None;
            for t in 1..=2 * ET + 1 {
                r.tick();
                let out = take_msgs(&mut r);
                if r.term != prev_term || !out.is_empty() {
                    fired = Some((t, out));
                    break;
                }
            }
            let Some((t, out)) = fired else {
                panic!(
                    "{what}: expected an election within {} ticks, got none (role {:?}, term {}). {}",
                    2 * ET,
                    r.state,
                    r.term,
                    hint(TIMEOUTS)
                );
            };
            assert!(
                (ET..=2 * ET).contains(&t),
                "{what}: expected the election after {ET}..{} ticks, got it after {t}. {}",
                2 * ET - 1,
                hint(TIMEOUTS)
            );
            expect_eq(
                (r.state, r.term, r.vote),
                (StateRole::Candidate, prev_term + 1, 2),
                format!("{what}, after the timeout: (role, term, vote)"),
                TIMEOUTS,
            );
            let reqs = of_type(&out, MsgRequestVote);
            let to: Vec<u64> = reqs.iter().map(|m| m.to).collect();
            let want: Vec<u64> = ids(n).into_iter().filter(|&p| p != 2).collect();
            let mut sorted = to.clone();
            sorted.sort_unstable();
            expect_eq(
                (sorted, reqs.len()),
                (want.clone(), want.len()),
                format!("{what}: vote requests sent to (one each): {}", describe_all(&out)),
                TIMEOUTS,
            );
            for m in &reqs {
                expect_eq(
                    (m.from, m.term, m.index, m.log_term),
                    (2, prev_term + 1, 0, 0),
                    format!("{what}: vote request (from, term, index, log_term)"),
                    TIMEOUTS,
                );
            }
            prev_term += 1;
        }
    }
}

#[test]
fn randomized_election_timeout_in_range_2aa() {
    let base = seed().wrapping_mul(1_000_003);
    let mut follower_ticks = BTreeSet::new();
    let mut candidate_ticks = BTreeSet::new();
    let mut drawn = BTreeSet::new();
    for k in 0..60u64 {
        for id in 1..=3u64 {
            let s = base.wrapping_add(k);
            let what = format!("node {id} with Config::seed {s} {}", ctx(seed()));
            let mut r = fresh_seeded(id, 3, s);
            let rt = r.randomized_election_timeout();
            assert!(
                (ET..2 * ET).contains(&rt),
                "{what}: expected randomized_election_timeout() in [{ET}, {}), got {rt}. {}",
                2 * ET,
                hint(TIMEOUTS)
            );
            drawn.insert(rt);
            for (role, seen) in
                [("follower", &mut follower_ticks), ("candidate", &mut candidate_ticks)]
            {
                let t = ticks_until_campaign(&mut r, 3 * ET).unwrap_or(usize::MAX);
                assert!(
                    (ET..=2 * ET).contains(&t),
                    "{what}: expected a {role} to campaign after {ET}..{} ticks (timeout drawn in [{ET}, {})), \
                     got {}. {}",
                    2 * ET - 1,
                    2 * ET,
                    if t == usize::MAX {
                        "no campaign in 30 ticks".to_string()
                    } else {
                        format!("{t} ticks")
                    },
                    hint(TIMEOUTS)
                );
                seen.insert(t);
            }
        }
    }
    for (what, seen) in [
        ("randomized_election_timeout() values", &drawn),
        ("follower ticks-to-election values", &follower_ticks),
        ("candidate ticks-to-election values", &candidate_ticks),
    ] {
        assert!(
            seen.len() >= ET / 2,
            "{what} over 180 nodes: expected at least {} distinct values (a random timeout), got {seen:?}. {} {}",
            ET / 2,
            hint(TIMEOUTS),
            ctx(seed())
        );
    }
}

#[test]
fn usually_only_one_node_times_out_first_2aa() {
    let base = seed().wrapping_mul(7_919);
    let trials = 1000u64;
    let mut conflicts = 0;
    for k in 0..trials {
        let s = base.wrapping_add(k);
        let mut nodes: Vec<R> = (1..=5).map(|id| fresh_seeded(id, 5, s)).collect();
        let mut first = 0;
        for _ in 0..3 * ET {
            for r in nodes.iter_mut() {
                r.tick();
            }
            first = nodes
                .iter_mut()
                .map(|r| of_type(&take_msgs(r), MsgRequestVote).len())
                .filter(|&sent| sent > 0)
                .count();
            if first > 0 {
                break;
            }
        }
        assert!(
            first > 0,
            "5 fresh nodes (Config::seed {s}) ticked together {} times: expected an election, got none. {} {}",
            3 * ET,
            hint(TIMEOUTS),
            ctx(seed())
        );
        if first > 1 {
            conflicts += 1;
        }
    }
    let rate = conflicts as f64 / trials as f64;
    assert!(
        rate <= 0.3,
        "5 fresh nodes ticked together, {trials} clusters: expected at most 30% with several nodes timing out \
         at the same first tick, got {conflicts} ({:.0}%): are the timeouts random and different per node? {} {}",
        rate * 100.0,
        hint(TIMEOUTS),
        ctx(seed())
    );
}

// ----- voting ------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum V {
    Grant,
    Reject,
    Silent,
}

#[test]
fn one_round_election_outcomes_2aa() {
    use StateRole::*;
    use V::*;
    let table: Vec<(Vec<V>, StateRole)> = vec![
        // 3 nodes: quorum 2.
        (vec![Grant, Grant], Leader),
        (vec![Grant, Silent], Leader),
        (vec![Reject, Grant], Leader),
        (vec![Silent, Silent], Candidate),
        (vec![Reject, Silent], Candidate),
        (vec![Reject, Reject], Follower),
        // 4 nodes: quorum 3.
        (vec![Grant, Grant, Grant], Leader),
        (vec![Grant, Grant, Silent], Leader),
        (vec![Grant, Silent, Silent], Candidate),
        (vec![Grant, Reject, Silent], Candidate),
        (vec![Reject, Reject, Silent], Candidate),
        (vec![Grant, Reject, Reject], Candidate),
        (vec![Reject, Reject, Reject], Follower),
        // 5 nodes: quorum 3.
        (vec![Grant, Grant, Silent, Silent], Leader),
        (vec![Grant, Grant, Reject, Reject], Leader),
        (vec![Reject, Reject, Grant, Grant], Leader),
        (vec![Grant, Silent, Silent, Silent], Candidate),
        (vec![Grant, Reject, Reject, Silent], Candidate),
        (vec![Reject, Reject, Reject, Silent], Follower),
        (vec![Reject, Reject, Reject, Grant], Follower),
    ];
    for (votes, want) in table {
        let n = votes.len() as u64 + 1;
        let mut r = candidate(1, n);
        for (p, v) in (2..=n).zip(&votes) {
            match v {
                Grant => step(&mut r, vote_resp(p, 1, 1, false)),
                Reject => step(&mut r, vote_resp(p, 1, 1, true)),
                Silent => {}
            }
        }
        let what =
            format!("candidate 1 of {n} nodes, term 1, answers from nodes 2..={n}: {votes:?}");
        expect_eq(r.state, want, format!("{what}: role"), VOTING);
        expect_eq(r.term, 1, format!("{what}: term"), VOTING);
        let lead = if want == Leader { 1 } else { 0 };
        expect_eq(r.lead, lead, format!("{what}: leader"), VOTING);
    }
    // A single-node cluster needs no answer at all.
    let mut r = fresh(1, 1);
    hup(&mut r);
    expect_eq(r.state, Leader, "node 1 of 1 after MsgHup", VOTING);
}

fn vote_answer(r: &mut R, to: u64) -> (u64, u64, bool) {
    let out = take_msgs(r);
    let resp = of_type(&out, MsgRequestVoteResponse);
    match resp.as_slice() {
        [m] if m.to == to => (m.to, m.term, m.reject),
        _ => panic!(
            "expected exactly one MsgRequestVoteResponse to {to}, got {}. {}",
            describe_all(&out),
            hint(VOTING)
        ),
    }
}

#[test]
fn one_vote_per_term_2aa() {
    let mut r = fresh(1, 3);
    step(&mut r, vote_req(2, 1, 1, 0, 0));
    expect_eq(
        vote_answer(&mut r, 2),
        (2, 1, false),
        "term 0 follower, request of term 1 from 2: (to, term, reject)",
        VOTING,
    );
    expect_eq(r.vote, 2, "vote after granting 2", VOTING);
    step(&mut r, vote_req(3, 1, 1, 0, 0));
    expect_eq(
        vote_answer(&mut r, 3),
        (3, 1, true),
        "same node, which voted for 2 in term 1, request of term 1 from 3: (to, term, reject)",
        VOTING,
    );
    expect_eq(r.vote, 2, "vote after refusing 3 in the same term", VOTING);
    step(&mut r, vote_req(2, 1, 1, 0, 0));
    expect_eq(
        vote_answer(&mut r, 2),
        (2, 1, false),
        "same node, duplicate request of term 1 from 2 (already granted): (to, term, reject)",
        VOTING,
    );
    step(&mut r, vote_req(3, 1, 2, 0, 0));
    expect_eq(
        vote_answer(&mut r, 3),
        (3, 2, false),
        "same node, request of term 2 from 3: (to, term, reject)",
        VOTING,
    );
    expect_eq((r.term, r.vote), (2, 3), "(term, vote) after granting 3 in term 2", VOTING);
    step(&mut r, vote_req(2, 1, 2, 0, 0));
    expect_eq(
        vote_answer(&mut r, 2),
        (2, 2, true),
        "same node, which voted for 3 in term 2, request of term 2 from 2: (to, term, reject)",
        VOTING,
    );
    // A candidate voted for itself: it refuses a rival of its own term.
    let mut c = candidate(1, 3);
    step(&mut c, vote_req(2, 1, 1, 0, 0));
    expect_eq(
        vote_answer(&mut c, 2),
        (2, 1, true),
        "candidate of term 1 (voted for itself), request of term 1 from 2: (to, term, reject)",
        VOTING,
    );
    expect_eq((c.state, c.vote), (StateRole::Candidate, 1), "that candidate: (role, vote)", VOTING);
}

/// A vote is for a whole term: becoming a follower again within the same
/// term (a candidate that hears the term's leader, or that a majority
/// refused) keeps it. A node that forgets it can vote a second time in
/// that term, for another candidate.
#[test]
fn vote_survives_falling_back_to_follower_in_the_same_term_2aa() {
    // (what, how candidate 1 of term 1, 5 nodes, falls back in term 1).
    let cases: Vec<(&str, Vec<Message>)> = vec![
        (
            "refused by a majority (2, 3, 4)",
            vec![vote_resp(2, 1, 1, true), vote_resp(3, 1, 1, true), vote_resp(4, 1, 1, true)],
        ),
        ("hearing a heartbeat of term 1 from 2", vec![heartbeat(2, 1, 1, 0)]),
        ("hearing an append of term 1 from 2", vec![append(2, 1, 1, 0, 0, vec![], 0)]),
    ];
    for (how, msgs) in cases {
        let mut r = candidate(1, 5);
        for m in msgs {
            step(&mut r, m);
        }
        take_msgs(&mut r);
        let what = format!("candidate 1 of term 1 (5 nodes), {how}");
        expect_eq(
            (r.state, r.term, r.vote),
            (StateRole::Follower, 1, 1),
            format!("{what}: (role, term, vote); it voted for itself in term 1"),
            VOTING,
        );
        step(&mut r, vote_req(5, 1, 1, 5, 5));
        expect_eq(
            vote_answer(&mut r, 5),
            (5, 1, true),
            format!(
                "{what}, then an up-to-date vote request of term 1 from 5: (to, term, reject); \
                 granting it would be a second vote in term 1 (TINYKV_SEED={})",
                seed()
            ),
            VOTING,
        );
        expect_eq(r.vote, 1, format!("{what}, after refusing 5: vote"), VOTING);
    }
}

#[test]
fn vote_grant_resets_election_timer_2aa() {
    // A follower of term 1 with no leader and no vote.
    let mut r = raft_with_log(1, ids(3), &[], 1);
    expect_eq(
        (r.state, r.term, r.vote),
        (StateRole::Follower, 1, 0),
        "restarted node: (role, term, vote)",
        ROLES,
    );
    let rt = r.randomized_election_timeout();
    for _ in 0..rt - 1 {
        r.tick();
    }
    expect_eq(
        r.state,
        StateRole::Follower,
        format!("follower after {} ticks (timeout {rt})", rt - 1),
        TIMEOUTS,
    );
    step(&mut r, vote_req(2, 1, 1, 0, 0));
    expect_eq(
        vote_answer(&mut r, 2),
        (2, 1, false),
        "its answer to a request of term 1 from 2",
        VOTING,
    );
    for t in 1..ET {
        r.tick();
        expect_eq(
            (r.state, r.term),
            (StateRole::Follower, 1),
            format!(
                "follower that granted a vote {t} ticks ago (fewer than election_tick {ET}): (role, term); \
                 granting a vote must restart the election timer"
            ),
            TIMEOUTS,
        );
    }
}

#[test]
fn heartbeat_resets_election_timer_2aa() {
    let mut r = fresh(1, 3);
    step(&mut r, heartbeat(2, 1, 1, 0));
    expect_eq(
        (r.term, r.lead),
        (1, 2),
        "follower after a heartbeat of term 1 from 2: (term, leader)",
        HEARTBEATS,
    );
    for round in 0..3 {
        for _ in 0..ET - 1 {
            r.tick();
        }
        step(&mut r, heartbeat(2, 1, 1, 0));
        take_msgs(&mut r);
        expect_eq(
            (r.state, r.term),
            (StateRole::Follower, 1),
            format!(
                "follower hearing leader 2 every {} ticks, round {round}: (role, term)",
                ET - 1
            ),
            HEARTBEATS,
        );
    }
    // Without the leader, it campaigns within 2 * election_tick.
    let t = ticks_until_campaign(&mut r, 2 * ET);
    assert!(
        t.is_some(),
        "follower that stopped hearing its leader: expected a campaign within {} ticks, got none (role {:?}). {}",
        2 * ET,
        r.state,
        hint(TIMEOUTS)
    );
    expect_eq(
        (r.state, r.term),
        (StateRole::Candidate, 2),
        "that node after the timeout: (role, term)",
        TIMEOUTS,
    );
}

/// A node whose timer restarts on every message it receives never times
/// out while a disruptive peer keeps talking to it, so a cluster without a
/// leader stays without one. Only the current leader's messages and
/// granting a vote restart it: each case below delivers one such "noise"
/// message before every tick, and the node must still campaign on time.
#[test]
fn rejected_requests_and_stale_messages_do_not_reset_the_election_timer_2aa() {
    const MISTAKES: &str = "Classic mistakes";
    // (what, setup, the message delivered before every tick). Every setup
    // leaves node 1 of `n` nodes in term 2, its timer just restarted.
    let follower = || raft_with_log(1, ids(3), &[1, 1], 2);
    let cases: Vec<(&str, Box<dyn Fn() -> R>, Message)> = vec![
        (
            "follower, a vote request of its term from a candidate whose log is behind (rejected)",
            Box::new(follower),
            vote_req(3, 1, 2, 1, 1),
        ),
        (
            "follower that voted for 2, an up-to-date vote request of its term from 3 (rejected)",
            Box::new(|| {
                let mut r = raft_with_log(1, ids(3), &[1, 1], 2);
                step(&mut r, vote_req(2, 1, 2, 1, 2));
                expect_eq(
                    vote_answer(&mut r, 2),
                    (2, 2, false),
                    "node 1 of term 2, request of term 2 from 2 with an equal log: (to, term, reject)",
                    VOTING,
                );
                r
            }),
            vote_req(3, 1, 2, 1, 2),
        ),
        ("follower, a vote request of term 1 (stale)", Box::new(follower), vote_req(3, 1, 1, 1, 9)),
        (
            "follower, a heartbeat of term 1 (from a deposed leader)",
            Box::new(follower),
            heartbeat(3, 1, 1, 0),
        ),
        (
            "follower, an append of term 1 (from a deposed leader)",
            Box::new(follower),
            append(3, 1, 1, 1, 2, vec![], 0),
        ),
        (
            "follower, a stray MsgAppendResponse of its term",
            Box::new(follower),
            msg(3, 1, MsgAppendResponse, 2),
        ),
        (
            "follower, a stray MsgHeartbeatResponse of its term",
            Box::new(follower),
            msg(3, 1, MsgHeartbeatResponse, 2),
        ),
        (
            "follower, a stray MsgRequestVoteResponse of its term",
            Box::new(follower),
            vote_resp(3, 1, 2, false),
        ),
        (
            "candidate of term 2 in 5 nodes, the same rejection from 2 again and again",
            Box::new(|| {
                let mut r = raft_with_log(1, ids(5), &[1, 1], 1);
                hup(&mut r);
                expect_eq(
                    (r.state, r.term),
                    (StateRole::Candidate, 2),
                    "node 1 of 5 in term 1 after MsgHup: (role, term)",
                    TIMEOUTS,
                );
                r
            }),
            vote_resp(2, 1, 2, true),
        ),
    ];
    for (what, setup, noise) in cases {
        let mut r = setup();
        take_msgs(&mut r);
        let (role, rt) = (r.state, r.randomized_election_timeout());
        expect_eq(r.term, 2, format!("{what}: node 1's term before the noise"), ROLES);
        let mut campaigned = None;
        for t in 1..=2 * ET {
            step(&mut r, noise.clone());
            take_msgs(&mut r);
            expect_eq(
                (r.state, r.term),
                (role, 2),
                format!("{what}, tick {t}, after the message {}: (role, term)", describe(&noise)),
                ROLES,
            );
            r.tick();
            let out = take_msgs(&mut r);
            if out.iter().any(|m| m.msg_type() == MsgRequestVote && m.term == 3) {
                campaigned = Some(t);
                break;
            }
        }
        assert!(
            campaigned.is_some(),
            "{what}: node 1 (term 2, randomized election timeout {rt}) got {} before every tick \
             and never campaigned in {} ticks (role {:?}, term {}): its election timer restarted \
             on a message that was neither from the current leader nor a granted vote. \
             (TINYKV_SEED={}) {}",
            describe(&noise),
            2 * ET,
            r.state,
            r.term,
            seed(),
            hint(MISTAKES)
        );
    }
}

#[test]
fn candidate_falls_back_on_append_2aa() {
    for term in [1u64, 2] {
        let mut r = candidate(1, 3);
        step(&mut r, append(2, 1, term, 0, 0, vec![], 0));
        let what = format!("candidate of term 1 after an empty MsgAppend of term {term} from 2");
        expect_eq(
            (r.state, r.term, r.lead),
            (StateRole::Follower, term, 2),
            format!("{what}: (role, term, leader)"),
            ROLES,
        );
        let out = take_msgs(&mut r);
        let resp = of_type(&out, MsgAppendResponse);
        expect_eq(
            resp.iter().map(|m| (m.to, m.term, m.reject)).collect::<Vec<_>>(),
            vec![(2, term, false)],
            format!("{what}: append responses (to, term, reject) in {}", describe_all(&out)),
            ROLES,
        );
    }
    // From an older term: ignored, answered with the current term.
    let mut r = candidate(1, 3);
    hup(&mut r);
    take_msgs(&mut r);
    step(&mut r, append(2, 1, 1, 0, 0, vec![], 0));
    let what = "candidate of term 2 after a MsgAppend of term 1 from 2";
    expect_eq(
        (r.state, r.term, r.lead),
        (StateRole::Candidate, 2, 0),
        format!("{what}: (role, term, leader)"),
        ROLES,
    );
    let out = take_msgs(&mut r);
    expect_eq(
        of_type(&out, MsgAppendResponse).iter().map(|m| (m.to, m.term)).collect::<Vec<_>>(),
        vec![(2, 2)],
        format!("{what}: answers (to, term) carrying the current term, in {}", describe_all(&out)),
        ROLES,
    );
}

#[test]
fn candidate_reverts_on_heartbeat_2aa() {
    for (n, term) in [(3u64, 1u64), (3, 4), (5, 1)] {
        let mut r = candidate(1, n);
        step(&mut r, heartbeat(3, 1, term, 0));
        let what =
            format!("candidate of term 1 ({n} nodes) after a heartbeat of term {term} from 3");
        expect_eq(
            (r.state, r.term, r.lead),
            (StateRole::Follower, term, 3),
            format!("{what}: (role, term, leader)"),
            ROLES,
        );
        let out = take_msgs(&mut r);
        expect_eq(
            of_type(&out, MsgHeartbeatResponse).iter().map(|m| (m.to, m.term)).collect::<Vec<_>>(),
            vec![(3, term)],
            format!("{what}: heartbeat responses (to, term) in {}", describe_all(&out)),
            HEARTBEATS,
        );
    }
    let mut r = candidate(1, 3);
    hup(&mut r);
    take_msgs(&mut r);
    step(&mut r, heartbeat(3, 1, 1, 0));
    expect_eq(
        (r.state, r.term),
        (StateRole::Candidate, 2),
        "candidate of term 2 after a stale heartbeat of term 1: (role, term)",
        ROLES,
    );
}

/// The up-to-date check compares last terms first and lengths only when
/// the last terms are equal: a voter whose log ends at (index 2, term 2)
/// grants a shorter log with a later last term and refuses a longer one
/// with an earlier last term.
#[test]
fn votes_go_by_last_term_before_length_2aa() {
    for (log_term, index, grant) in
        [(3, 1, true), (1, 5, false), (2, 2, true), (2, 3, true), (2, 1, false)]
    {
        let mut voter = raft_with_log(1, ids(3), &[1, 2], 2);
        step(&mut voter, vote_req(2, 1, 5, log_term, index));
        let what = format!(
            "voter 1 with log (index, term) (1, 1) (2, 2); vote request of term 5 from 2 whose log \
             ends at index {index}, term {log_term}: (to, term, reject)"
        );
        expect_eq(vote_answer(&mut voter, 2), (2, 5, !grant), what, VOTING);
    }
}

/// `MsgPropose` only means something to a leader: a follower or a
/// candidate answers it with `Err(ProposalDropped)` (the caller retries at
/// the leader) and neither appends nor sends anything.
#[test]
fn proposals_to_a_follower_or_candidate_are_dropped_2aa() {
    let follower = fresh(2, 3);
    let candidate = candidate(2, 3);
    for (role, mut r) in [("follower", follower), ("candidate", candidate)] {
        let last = r.raft_log.last_index();
        let got = r.step(propose_msg(2, b"x"));
        expect_eq(
            got,
            Err(raft::Error::ProposalDropped),
            format!("step(MsgPropose) on node 2 of 3, a {role} of term {}", r.term),
            "Messages",
        );
        expect_eq(
            (r.raft_log.last_index(), describe_all(&take_msgs(&mut r))),
            (last, "[]".to_string()),
            format!("a {role}'s (last index, messages sent) after a dropped proposal"),
            "Messages",
        );
    }
}

#[test]
fn vote_from_any_state_2aa() {
    let makers: Vec<(&str, Box<dyn Fn() -> R>)> = vec![
        ("follower", Box::new(|| raft_with_log(1, ids(3), &[], 1))),
        ("candidate", Box::new(|| candidate(1, 3))),
        ("leader", Box::new(|| leader(1, 3))),
    ];
    for (role, make) in makers {
        let mut r = make();
        let (index, log_term) = (r.raft_log.last_index(), r.raft_log.last_term());
        let what = format!(
            "{role} of term 1 (last entry ({index}, {log_term})), request of term 2 from 2 with the same last entry"
        );
        step(&mut r, vote_req(2, 1, 2, log_term, index));
        expect_eq(
            vote_answer(&mut r, 2),
            (2, 2, false),
            format!("{what}: answer (to, term, reject)"),
            VOTING,
        );
        expect_eq(
            (r.state, r.term, r.vote, r.lead),
            (StateRole::Follower, 2, 2, 0),
            format!("{what}: (role, term, vote, leader)"),
            VOTING,
        );
    }
}

// ----- elections in a network --------------------------------------------

#[test]
fn single_node_campaign_wins_2aa() {
    let mut r = fresh(1, 1);
    hup(&mut r);
    expect_eq(
        (r.state, r.term, r.lead, r.vote),
        (StateRole::Leader, 1, 1, 1),
        "node 1 of 1 after MsgHup: (role, term, leader, vote)",
        TIMEOUTS,
    );
    expect_eq(describe_all(&r.msgs), "[]".to_string(), "messages sent by a lone node", TIMEOUTS);
    // By ticking alone.
    let mut r = fresh(1, 1);
    let mut ticks = 0;
    while r.state != StateRole::Leader && ticks < 2 * ET {
        r.tick();
        ticks += 1;
    }
    expect_eq(
        (r.state, r.term),
        (StateRole::Leader, 1),
        "lone node after ticking: (role, term)",
        TIMEOUTS,
    );
}

#[test]
fn election_with_unresponsive_peers_2aa() {
    let table: Vec<(u64, Vec<u64>, bool)> = vec![
        (3, vec![], true),
        (3, vec![3], true),
        (3, vec![2, 3], false),
        (4, vec![4], true),
        (4, vec![3, 4], false),
        (5, vec![4, 5], true),
        (5, vec![3, 4, 5], false),
        (5, vec![2, 3, 4, 5], false),
    ];
    for (n, holes, wins) in table {
        let mut net = Network::with_black_holes(n, &holes);
        net.ignore(MsgAppendResponse);
        net.hup(1);
        let what = format!("{n} nodes, black holes {holes:?}, MsgHup to node 1");
        let want = if wins { StateRole::Leader } else { StateRole::Candidate };
        expect_eq(
            (net.state(1), net.term(1)),
            (want, 1),
            format!("{what}: node 1 (role, term); nodes: {}", net.summary()),
            VOTING,
        );
        for id in net.raft_ids().into_iter().filter(|&id| id != 1) {
            let lead = if wins { 1 } else { 0 };
            expect_eq(
                (net.state(id), net.term(id), net.peer(id).vote, net.peer(id).lead),
                (StateRole::Follower, 1, 1, lead),
                format!("{what}: node {id} (role, term, vote, leader)"),
                VOTING,
            );
        }
    }
}

#[test]
fn every_node_can_win_in_turn_2aa() {
    for n in [3u64, 5] {
        let mut net = election_net(n);
        let mut term = 0;
        for round in 0..2 {
            for id in 1..=n {
                net.hup(id);
                term += 1;
                let what = format!("{n} nodes, round {round}, MsgHup to node {id}");
                expect_eq(
                    net.leader(),
                    Some(id),
                    format!("{what}: leader; nodes: {}", net.summary()),
                    VOTING,
                );
                for p in 1..=n {
                    let want = if p == id { StateRole::Leader } else { StateRole::Follower };
                    expect_eq(
                        (net.state(p), net.term(p), net.peer(p).lead),
                        (want, term, id),
                        format!("{what}: node {p} (role, term, leader)"),
                        VOTING,
                    );
                }
            }
        }
    }
}

#[test]
fn disruptive_isolated_follower_makes_leader_step_down_2aa() {
    let mut net = election_net(3);
    net.hup(1);
    expect_eq(
        net.leader(),
        Some(1),
        format!("3 nodes after MsgHup to 1: leader; {}", net.summary()),
        VOTING,
    );
    net.isolate(3);
    // Node 3 hears nothing and campaigns, alone, again and again.
    net.tick(3, 5 * ET);
    let t3 = net.term(3);
    assert!(
        t3 >= 3,
        "isolated follower 3 after {} ticks: expected several elections (term >= 3), got term {t3}. {}",
        5 * ET,
        hint(TIMEOUTS)
    );
    expect_eq(
        (net.state(1), net.term(1)),
        (StateRole::Leader, 1),
        "leader 1 while 3 is isolated",
        ROLES,
    );
    net.recover(); // clears ignores too: the leader side of replication is lab 2ab
    net.ignore(MsgAppendResponse);
    // The leader's next heartbeat reaches 3, which answers with its term.
    net.beat(1);
    expect_eq(
        (net.state(1), net.term(1)),
        (StateRole::Follower, t3),
        format!(
            "leader 1 of term 1 after its heartbeat reached node 3 of term {t3}: (role, term); nodes: {}",
            net.summary()
        ),
        ROLES,
    );
    // The cluster elects a leader again, of a newer term.
    net.hup(1);
    let l = net.leader();
    assert!(
        l.is_some() && net.term(l.unwrap()) > t3,
        "after the rejoin and MsgHup to 1: expected a leader of a term above {t3}, got {}. {}",
        net.summary(),
        hint(VOTING)
    );
}

#[test]
fn split_vote_resolves_2aa() {
    for k in 0..8u64 {
        let s = seed().wrapping_mul(104_729).wrapping_add(k);
        let what = format!("4 nodes (Config::seed {s}, trial {k}) {}", ctx(seed()));
        let mut net = Network::new_with_config((0..4).map(|_| None).collect(), |c| c.seed = s);
        net.ignore(MsgAppendResponse);
        // 1 and 2 campaign at once; 3 can only hear 1 and 4 only 2.
        net.cut(1, 4);
        net.cut(2, 3);
        net.send(vec![msg(1, 1, MsgHup, 0), msg(2, 2, MsgHup, 0)]);
        expect_eq(
            (net.state(1), net.state(2), net.leader()),
            (StateRole::Candidate, StateRole::Candidate, None),
            format!(
                "{what}, split vote 2-2 in term 1: (role 1, role 2, leader); nodes: {}",
                net.summary()
            ),
            VOTING,
        );
        net.recover(); // clears ignores too: the leader side of replication is lab 2ab
        net.ignore(MsgAppendResponse);
        let mut leaders: BTreeMap<u64, u64> = BTreeMap::new();
        let mut ticks = 0;
        while ticks < 20 * ET {
            net.tick_all();
            ticks += 1;
            for id in net.raft_ids() {
                if net.state(id) == StateRole::Leader {
                    let prev = *leaders.entry(net.term(id)).or_insert(id);
                    assert!(
                        prev == id,
                        "{what}: two leaders in term {}: {prev} and {id}. {}",
                        net.term(id),
                        hint(VOTING)
                    );
                }
            }
            if net.leader().is_some()
                && net.raft_ids().iter().all(|&p| net.peer(p).lead == net.leader().unwrap())
            {
                break;
            }
        }
        let l = net.leader();
        assert!(
            l.is_some() && net.raft_ids().iter().all(|&p| net.peer(p).lead == l.unwrap()),
            "{what}: expected the split vote to resolve (one leader known to all) within {} ticks, got: {}. {}",
            20 * ET,
            net.summary(),
            hint(TIMEOUTS)
        );
        assert!(
            net.term(l.unwrap()) >= 2,
            "{what}: the new leader's term must be above the split term 1. {}",
            hint(VOTING)
        );
    }
}

// ----- property tests ---------------------------------------------------------

/// Elections on a hostile network (delays, reordering, drops, duplicates,
/// partitions), over many seeds: never two leaders in a term, never two
/// votes in a term, terms never go down; once healed, everyone follows one
/// leader.
#[test]
fn random_faults_keep_one_leader_per_term_2aa() {
    let stats = harness::chaos::check_seeds(
        "random_faults_keep_one_leader_per_term_2aa",
        "2aa",
        harness::chaos::Features::default(),
    );
    assert!(
        stats.terms_with_leader >= 2 * stats.runs,
        "the runs should elect several leaders each: {stats:?}"
    );
}

/// The same seed gives the same run, message for message: nothing in the
/// node may depend on the wall clock, a thread-local RNG or the iteration
/// order of a hash map.
#[test]
fn same_seed_replays_the_same_run_2aa() {
    use harness::chaos::{Features, run_one};
    let f = Features::default();
    let seed = harness::seed();
    let (a, b) = (run_one(seed, f), run_one(seed, f));
    assert_eq!(
        a.digest,
        b.digest,
        "two runs of seed {seed} differ: the node is not deterministic (a wall clock, \
         thread_rng or HashMap order?). {}",
        harness::hint_seeded("Time is a tick", seed)
    );
    assert_ne!(a.digest, run_one(seed + 1, f).digest, "seeds {seed} and {} ran the same", seed + 1);
}

/// The rejection hint: the last index at most `index` (and at most the
/// last index) whose term is at most `term`.
#[test]
fn find_conflict_by_term_finds_the_hint_2aa() {
    let store = MemoryStorage::new_with_conf_state(ids(3));
    let log = [(1, 1), (2, 1), (3, 2), (4, 3), (5, 3)];
    store.append(&log.map(|(i, t)| entry(t, i))).expect("append to MemoryStorage");
    for ((index, term), want) in
        [((5, 3), 5), ((5, 2), 3), ((4, 1), 2), ((9, 3), 5), ((9, 2), 3), ((5, 0), 0), ((2, 5), 2)]
    {
        let store = store.clone();
        let got = harness::deadline::within(
            &format!("log (index, term) {log:?}: find_conflict_by_term({index}, {term})"),
            std::time::Duration::from_secs(5),
            &format!(
                "the walk down the log must end, at index 0 at the latest. {}",
                hint(CONFLICTS)
            ),
            move || {
                let r = Raft::new(&config(1), store).expect("Raft::new");
                r.raft_log.find_conflict_by_term(index, term)
            },
        );
        assert_eq!(
            got,
            want,
            "log (index, term) {log:?}: find_conflict_by_term({index}, {term}) must be the last \
             index at most {index} (and at most the last index, 5) whose term is at most {term}. \
             {}",
            hint(CONFLICTS)
        );
    }
}

/// `RaftLog::append` replaces everything from the first new index on,
/// wherever that index falls: inside the unstable entries (after some are
/// persisted), right after the persisted ones, or inside the persisted
/// ones (which become unstable again, for the application to overwrite).
#[test]
fn append_replaces_the_log_from_the_first_new_index_2aa() {
    // (where the new entry goes, the log's (index, term)s after it,
    //  the unstable indexes after it)
    let cases = [
        ("inside the unstable entries", 4, vec![(1, 1), (2, 1), (3, 1), (4, 2)], vec![3, 4]),
        ("right after the persisted entries", 3, vec![(1, 1), (2, 1), (3, 2)], vec![3]),
        ("inside the persisted entries", 2, vec![(1, 1), (2, 2)], vec![2]),
    ];
    for (place, at, want_log, want_unstable) in cases {
        // Persisted: 1 and 2 (term 1). Unstable: 3, 4 and 5 (term 1).
        let store = MemoryStorage::new_with_conf_state(ids(3));
        store.append(&[entry(1, 1), entry(1, 2)]).expect("append to MemoryStorage");
        let mut log = RaftLog::new(store).expect("RaftLog::new");
        log.append(&[entry(1, 3), entry(1, 4), entry(1, 5)]);
        let ctx = format!(
            "a log of 1..=5 in term 1, 1 and 2 persisted (stabled 2), after append of entry \
             ({at}, term 2) {place}"
        );
        let last = log.append(&[entry(2, at)]);
        expect_eq(
            last,
            at,
            format!("append's return value (the new last index) for {ctx}"),
            CONFLICTS,
        );
        let got: Vec<(u64, u64)> = log
            .entries(1, log.last_index() + 1)
            .expect("entries of the whole log")
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        expect_eq(got, want_log, format!("the log's (index, term)s for {ctx}"), CONFLICTS);
        let unstable: Vec<u64> = log.unstable_entries().iter().map(|e| e.index).collect();
        expect_eq(
            unstable,
            want_unstable,
            format!("the unstable entries' indexes for {ctx}"),
            CONFLICTS,
        );
    }
}
