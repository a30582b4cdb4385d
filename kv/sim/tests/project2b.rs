//! Graded suite of lab 2b: the replicated key-value store.
//!
//! Every test runs a simulated cluster of five stores (one region) in
//! virtual time on one thread: `TINYKV_SEED` picks the run, and the same
//! seed replays it exactly. The generic tests run the workload of
//! `kv/sim/src/workload.rs` (clients appending to their own keys, reading
//! and writing shared keys) under the faults their names say, check that
//! every client sees exactly its acknowledged appends, and check the whole
//! history for linearizability. A failure prints the seed, the replay
//! command and the path of an HTML report (timeline, faults, node logs);
//! docs/src/debugging.md explains how to read it.

use tinykv_engine::{Cf, keys};
use tinykv_proto::raft_cmdpb::RaftCmdRequest;
use tinykv_raftstore::Token;
use tinykv_raftstore::error::response_error;
use tinykv_sim::suite::SimTest;
use tinykv_sim::workload::{self, Workload};
use tinykv_sim::{Cluster, ClusterConfig, MS, NetConfig, OpKind, OpResult, SEC};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// What an error must look like.
type Expect = fn(&tinykv_proto::errorpb::Error) -> bool;

fn test(name: &'static str) -> SimTest {
    SimTest::new(name, "2b", TMP).with_base(without_log_gc)
}

/// Lab 2b runs without log GC (lab 2c): its `CompactLog` command is never
/// proposed, so a 2b solution needs no 2c code.
fn without_log_gc(mut cfg: ClusterConfig) -> ClusterConfig {
    cfg.store.raft_log_gc_count_limit = u64::MAX;
    cfg
}

fn put(key: &str, value: &str) -> OpKind {
    OpKind::Put { key: key.into(), value: value.into() }
}

fn get(key: &str) -> OpKind {
    OpKind::Get { key: key.into() }
}

/// A generic test: `clients` clients for three rounds, with the faults
/// named.
fn generic(name: &'static str, clients: u64, unreliable: bool, partitions: bool, crash: bool) {
    test(name).run(
        5,
        |mut cfg| {
            if unreliable {
                cfg.net = NetConfig::unreliable();
            }
            cfg
        },
        |cluster| {
            let mut w = Workload::new(clients);
            w.partitions = partitions;
            w.crash = crash;
            let stats = workload::run(cluster, &w)?;
            if stats.appends < 20 {
                return Err(format!(
                    "the clients got only {} appends through: {stats:?}",
                    stats.appends
                ));
            }
            Ok(())
        },
    );
}

/// Reads `key` straight from store `id`'s kv engine.
fn stored(c: &Cluster, id: u64, key: &str) -> Option<Vec<u8>> {
    c.kv_engine(id).get(Cf::Default, key.as_bytes()).expect("reading the kv engine")
}

// ----- generic tests -------------------------------------------------------------

#[test]
fn basic_2b() {
    generic("basic_2b", 1, false, false, false);
}

#[test]
fn concurrent_2b() {
    generic("concurrent_2b", 5, false, false, false);
}

#[test]
fn unreliable_2b() {
    generic("unreliable_2b", 5, true, false, false);
}

#[test]
fn many_partitions_one_client_2b() {
    generic("many_partitions_one_client_2b", 1, false, true, false);
}

#[test]
fn many_partitions_many_clients_2b() {
    generic("many_partitions_many_clients_2b", 5, false, true, false);
}

#[test]
fn persist_one_client_2b() {
    generic("persist_one_client_2b", 1, false, false, true);
}

#[test]
fn persist_concurrent_2b() {
    generic("persist_concurrent_2b", 5, false, false, true);
}

#[test]
fn persist_concurrent_unreliable_2b() {
    generic("persist_concurrent_unreliable_2b", 5, true, false, true);
}

#[test]
fn persist_partition_2b() {
    generic("persist_partition_2b", 5, false, true, true);
}

#[test]
fn persist_partition_unreliable_2b() {
    generic("persist_partition_unreliable_2b", 5, true, true, true);
}

// ----- targeted tests -----------------------------------------------------------

/// The majority side of a partition keeps serving; the minority (with the
/// old leader) answers no write with success; after the heal the old
/// leader's store catches up and the write it took in never appears.
#[test]
fn one_partition_2b() {
    test("one_partition_2b").run(
        5,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k0", "v0"), 10 * SEC);
            let leader = c.leader().ok_or("no leader after a write")?;
            let other = c.store_ids().into_iter().find(|&s| s != leader).unwrap();
            let minority: std::collections::BTreeSet<u64> = [leader, other].into();
            let majority = c.store_ids().into_iter().filter(|s| !minority.contains(s)).collect();
            c.fault(format!("partition {minority:?} | {majority:?}"));
            c.net.partition(vec![minority.clone(), majority]);
            // The majority elects a leader and takes a write.
            c.run_op(1, put("k1", "v1"), 10 * SEC);
            // Nobody in the minority may answer a read with the old state: a
            // read goes through the log too.
            for id in [leader, other] {
                let req = c.command(id, &get("k1"));
                if let Some(resp) = c.call(id, req, 500 * MS)
                    && response_error(&resp.resp).is_none()
                {
                    let v =
                        resp.resp.responses.first().and_then(|r| r.get.as_ref()).map(|g| &g.value);
                    return Err(format!(
                        "store {id}, cut off in the minority, answered a read of k1 with {v:?} \
                         while the majority had written v1: a stale read (reads must go through \
                         the log, and only the leader answers)"
                    ));
                }
            }
            // The old leader cannot commit anything.
            let req = c.command(leader, &put("k2", "minority"));
            if let Some(resp) = c.call(leader, req, 2 * SEC)
                && response_error(&resp.resp).is_none()
            {
                return Err(format!(
                    "store {leader}, the old leader cut off with one follower, answered a put with \
                 success: it must wait for a majority to commit the entry"
                ));
            }
            c.net.heal();
            c.fault("partition healed".into());
            c.run_for(2 * SEC);
            for id in minority {
                if stored(c, id, "k1").as_deref() != Some(&b"v1"[..]) {
                    return Err(format!(
                        "store {id} (in the minority) did not catch up with k1 2 s after the heal"
                    ));
                }
            }
            for id in c.store_ids() {
                if stored(c, id, "k2").is_some() {
                    return Err(format!(
                        "store {id} applied k2, which only the cut-off old leader had in its log"
                    ));
                }
            }
            Ok(())
        },
    );
}

/// A follower answers a command with the structured `NotLeader` error:
/// the region, and the leader's peer (id and store), so that a client can
/// go there without reading the message.
#[test]
fn not_leader_error_names_the_leader_2b() {
    test("not_leader_error_names_the_leader_2b").run(
        5,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k", "v"), 10 * SEC);
            c.run_for(200 * MS);
            let leader = c.leader().ok_or("no leader")?;
            let region = c.store(leader).and_then(|s| s.peer(1)).map(|p| p.region().clone());
            let region = region.ok_or("the leader has no peer of region 1")?;
            let leader_peer = region.peers.iter().find(|p| p.store_id == leader).copied();
            for follower in c.store_ids().into_iter().filter(|&s| s != leader) {
                let req = c.command(follower, &get("k"));
                let resp = c.call(follower, req, SEC).ok_or("the follower never answered")?;
                let err =
                    response_error(&resp.resp).ok_or("the follower answered a read itself")?;
                let Some(not_leader) = &err.not_leader else {
                    return Err(format!(
                        "store {follower} should answer with region_error.not_leader set \
                     (a structured error, not only a message), answered {err:?} \
                     (lab 2b chapter, \"What a client can get back\")"
                    ));
                };
                if not_leader.region_id != 1 || not_leader.leader != leader_peer {
                    return Err(format!(
                        "store {follower} should answer NotLeader for region 1 naming the \
                     leader's peer {leader_peer:?}, answered {not_leader:?}"
                    ));
                }
            }
            Ok(())
        },
    );
}

/// Bad commands get a clear error and write nothing: wrong store, unknown
/// region, stale epoch, unknown column family, empty key.
#[test]
fn bad_commands_are_rejected_and_change_nothing_2b() {
    test("bad_commands_are_rejected_and_change_nothing_2b").run(
        5,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k", "v"), 10 * SEC);
            c.run_for(200 * MS);
            let leader = c.leader().ok_or("no leader")?;
            let good = c.command(leader, &put("bad", "x"));
            let mut cases: Vec<(&str, RaftCmdRequest, Expect)> = vec![];
            let mut r = good.clone();
            r.header.as_mut().unwrap().peer.as_mut().unwrap().store_id = 99;
            cases.push(("a header naming store 99", r, |e| e.store_not_match.is_some()));
            let mut r = good.clone();
            r.header.as_mut().unwrap().region_id = 77;
            cases.push(("region 77", r, |e| e.region_not_found.is_some()));
            let mut r = good.clone();
            r.header.as_mut().unwrap().region_epoch.as_mut().unwrap().version = 0;
            cases.push(("a stale epoch", r, |e| e.epoch_not_match.is_some()));
            let mut r = good.clone();
            r.requests[0].put.as_mut().unwrap().cf = "nope".into();
            cases.push(("column family \"nope\"", r, |e| e.message.contains("column family")));
            let mut r = good.clone();
            r.requests[0].put.as_mut().unwrap().key.clear();
            cases.push(("an empty key", r, |e| e.message.contains("key")));
            for (what, req, expected) in cases {
                let resp =
                    c.call(leader, req, SEC).ok_or_else(|| format!("no answer to {what}"))?;
                match response_error(&resp.resp) {
                    Some(e) if expected(e) => {}
                    other => {
                        return Err(format!(
                            "a put with {what} should fail clearly, got {other:?}"
                        ));
                    }
                }
            }
            c.run_for(500 * MS);
            for id in c.store_ids() {
                if stored(c, id, "bad").is_some() {
                    return Err(format!("store {id} applied a rejected put"));
                }
            }
            match c.run_op(1, get("k"), 10 * SEC) {
                OpResult::Value(Some(v)) if v == b"v" => Ok(()),
                other => Err(format!("k should still read v, got {other:?}")),
            }
        },
    );
}

/// Puts proposed to a new leader at once, before it has applied the
/// entries ahead of them (its no-op, the old leader's last entries), all
/// succeed: applying an entry that no proposal waits for must not answer
/// the proposals queued for later entries.
#[test]
fn proposals_right_after_an_election_succeed_2b() {
    const PROPOSALS: usize = 3;
    test("proposals_right_after_an_election_succeed_2b").run(
        5,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k", "v"), 10 * SEC);
            c.run_for(300 * MS);
            let old = c.leader().ok_or("no leader after a write")?;
            cut_off_leader(c, old, "");
            let deadline = c.now() + 5 * SEC;
            let new = loop {
                match c.leader() {
                    Some(id) if id != old => break id,
                    _ if c.now() > deadline => {
                        return Err("no new leader within 5 s of the partition".into());
                    }
                    _ => {
                        c.step();
                    }
                }
            };
            let applied =
                c.store(new).and_then(|s| s.peer(1)).map_or(0, |p| p.storage().applied_index());
            let last = c
                .store(new)
                .and_then(|s| s.peer(1))
                .map_or(0, |p| p.raft_group.raft.raft_log.last_index());
            let tokens: Vec<Token> = (0..PROPOSALS)
                .map(|i| {
                    let req = c.command(new, &put(&format!("early{i}"), "x"));
                    c.call_async(new, req)
                })
                .collect();
            let mut answers: Vec<Option<tinykv_raftstore::CmdResponse>> =
                (0..PROPOSALS).map(|_| None).collect();
            let deadline = c.now() + 5 * SEC;
            while answers.iter().any(Option::is_none) && c.now() < deadline && c.step() {
                for (slot, &t) in answers.iter_mut().zip(&tokens) {
                    if slot.is_none() {
                        *slot = c.answer(t);
                    }
                }
            }
            for (i, answer) in answers.iter().enumerate() {
                let what = format!(
                    "put early{i}, proposed to store {new} just after it was elected (applied \
                     index {applied}, last index {last}: the entries up to {last} had no \
                     proposal of its own waiting)"
                );
                let resp =
                    answer.as_ref().ok_or_else(|| format!("{what}: no answer within 5 s"))?;
                if let Some(e) = response_error(&resp.resp) {
                    return Err(format!(
                        "{what}: expected success, got {e:?}. take_proposal must leave the \
                         proposals of later entries waiting"
                    ));
                }
            }
            Ok(())
        },
    );
}

/// Cuts store `leader` off from every other store, and says so in the
/// report's timeline (`why` is appended).
fn cut_off_leader(c: &mut Cluster, leader: u64, why: &str) {
    let others: std::collections::BTreeSet<u64> =
        c.store_ids().into_iter().filter(|&s| s != leader).collect();
    c.net.partition(vec![[leader].into(), others]);
    c.fault(format!("store {leader} (the leader) cut off{why}"));
}

/// The raft term of store `id`'s peer of region 1.
fn term_of(c: &Cluster, id: u64) -> u64 {
    c.store(id).and_then(|s| s.peer(1)).map_or(0, |p| p.term())
}

/// A command naming another peer of the leader's store, or carrying a term
/// more than one behind the leader's, is rejected (the peer's error, and
/// `StaleCommand`) and changes nothing; one term behind, or the current
/// term, is fine.
#[test]
fn commands_for_another_peer_or_of_a_stale_term_are_rejected_2b() {
    test("commands_for_another_peer_or_of_a_stale_term_are_rejected_2b").run(
        3,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k", "v"), 10 * SEC);
            // New elections until the leader's term is at least 3, so that
            // a term two behind it is still a term (0 means "no term").
            for round in 0.. {
                let leader = c.leader().ok_or("no leader")?;
                if term_of(c, leader) >= 3 {
                    break;
                }
                if round == 10 {
                    return Err(format!(
                        "the term stayed {} after 10 elections",
                        term_of(c, leader)
                    ));
                }
                cut_off_leader(c, leader, ", for a new election");
                c.run_for(3 * SEC);
                c.net.heal();
                c.fault("healed".into());
                c.run_op(1, put("k", "v"), 10 * SEC);
            }
            c.run_for(200 * MS);
            let leader = c.leader().ok_or("no leader")?;
            let term = term_of(c, leader);
            let with_term = |c: &Cluster, key: &str, t: u64| {
                let mut r = c.command(leader, &put(key, "x"));
                r.header.as_mut().unwrap().term = t;
                r
            };
            let mut other_peer = c.command(leader, &put("other peer", "x"));
            other_peer.header.as_mut().unwrap().peer.as_mut().unwrap().id = 99;
            let cases: Vec<(String, RaftCmdRequest, Expect)> = vec![
                (
                    format!("header term {} (two behind the leader's {term})", term - 2),
                    with_term(c, "stale term", term - 2),
                    |e| e.stale_command.is_some(),
                ),
                ("a header naming peer 99 on the leader's store".into(), other_peer, |e| {
                    e.message.contains("peer")
                }),
            ];
            for (what, req, expected) in cases {
                let resp = c
                    .call(leader, req, SEC)
                    .ok_or_else(|| format!("no answer to a put with {what}"))?;
                match response_error(&resp.resp) {
                    Some(e) if expected(e) => {}
                    other => {
                        return Err(format!("a put with {what} must be rejected, got {other:?}"));
                    }
                }
            }
            for (key, t) in [("one behind", term - 1), ("current", term)] {
                let what =
                    format!("a put of {key:?} with header term {t} (the leader's is {term})");
                let resp = c
                    .call(leader, with_term(c, key, t), 5 * SEC)
                    .ok_or_else(|| format!("no answer to {what}"))?;
                if let Some(e) = response_error(&resp.resp) {
                    return Err(format!("{what} must succeed, got {e:?}"));
                }
            }
            c.run_for(500 * MS);
            for id in c.store_ids() {
                for key in ["stale term", "other peer"] {
                    if stored(c, id, key).is_some() {
                        return Err(format!("store {id} applied the rejected put of {key:?}"));
                    }
                }
            }
            Ok(())
        },
    );
}

/// A restarted store has its log, hard state and applied index back: the
/// raft state and the apply state are persisted, and nothing is applied
/// twice.
#[test]
fn restart_keeps_the_log_2b() {
    test("restart_keeps_the_log_2b").run(
        3,
        |cfg| cfg,
        |c| {
            for i in 0..20 {
                c.run_op(1, put(&format!("k{i:02}"), &format!("v{i}")), 10 * SEC);
            }
            c.run_for(500 * MS);
            // The leader, cut off, appends an entry it can never commit: its
            // raft state must record the new last index although the hard
            // state did not change.
            let leader = c.leader().ok_or("no leader")?;
            cut_off_leader(c, leader, "");
            let req = c.command(leader, &put("uncommitted", "x"));
            if c.call(leader, req, 50 * MS).is_some() {
                return Err(format!("store {leader} answered a put it cannot commit"));
            }
            // What each raft node holds in memory: after a crash and restart
            // it must come back from the engines.
            let before: Vec<(u64, u64, u64, u64, u64)> = c
                .store_ids()
                .into_iter()
                .map(|id| {
                    let raft = &c.store(id).unwrap().peer(1).unwrap().raft_group.raft;
                    (id, raft.term, raft.vote, raft.raft_log.last_index(), raft.raft_log.committed)
                })
                .collect();
            for id in c.store_ids() {
                c.crash_store(id);
                c.restart_store(id);
            }
            for (id, term, vote, last, commit) in before {
                let raft = &c.store(id).unwrap().peer(1).unwrap().raft_group.raft;
                let after =
                    (raft.term, raft.vote, raft.raft_log.last_index(), raft.raft_log.committed);
                if after != (term, vote, last, commit) {
                    return Err(format!(
                        "store {id} before a crash: term {term}, vote {vote}, last index {last}, \
                     commit {commit}; after the restart: term {}, vote {}, last index {}, \
                     commit {}. The raft state (hard state and last index, key {:02x?}) must \
                     be written, synced, with the entries of every Ready",
                        after.0,
                        after.1,
                        after.2,
                        after.3,
                        keys::raft_state_key(1)
                    ));
                }
            }
            for i in 0..20 {
                match c.run_op(1, get(&format!("k{i:02}")), 10 * SEC) {
                    OpResult::Value(Some(v)) if v == format!("v{i}").as_bytes() => {}
                    other => return Err(format!("k{i:02} after the restart: {other:?}")),
                }
            }
            Ok(())
        },
    );
}

/// A real crash of every store at once loses the writes that were not
/// synced (with the reference solution, the kv engine's applies: the log
/// replays them), and still no acknowledged write may be lost.
#[test]
fn crash_loses_unsynced_writes_but_no_acknowledged_one_2b() {
    test("crash_loses_unsynced_writes_but_no_acknowledged_one_2b").run(
        5,
        |cfg| cfg,
        |c| {
            for i in 0..30 {
                c.run_op(1, put(&format!("k{i:02}"), &format!("v{i}")), 10 * SEC);
            }
            for id in c.store_ids() {
                c.crash_store(id);
            }
            for id in c.store_ids() {
                c.restart_store(id);
            }
            for i in 0..30 {
                match c.run_op(1, get(&format!("k{i:02}")), 10 * SEC) {
                    OpResult::Value(Some(v)) if v == format!("v{i}").as_bytes() => {}
                    other => {
                        return Err(format!("k{i:02} after a crash of every store: {other:?}"));
                    }
                }
            }
            Ok(())
        },
    );
}

/// The same seed replays the same run, event for event.
#[test]
fn same_seed_same_run_2b() {
    let t = test("same_seed_same_run_2b");
    let run = |seed: u64| {
        let mut c = Cluster::new(without_log_gc(ClusterConfig::new(5, seed)));
        let mut w = Workload::new(3);
        w.rounds = 1;
        w.round_us = 500 * MS;
        workload::run(&mut c, &w).expect("the workload");
        (c.digest(), c.events())
    };
    let (a, b) = (run(t.seed), run(t.seed));
    assert_eq!(
        a, b,
        "two runs of seed {} differ (digest, events): something depends on more than the seed \
         (a HashMap's order, the wall clock, thread_rng). TINYKV_SEED={}",
        t.seed, t.seed
    );
    assert_ne!(a.0, run(t.seed + 1).0, "seeds {} and {} gave the same run", t.seed, t.seed + 1);
}

/// A follower that loses power while persisting an entry must not have
/// acknowledged it: messages go out only after the Ready's entries and
/// hard state are durable. Three stores; the leader and one follower are
/// cut off from the third; the follower crashes in the middle of its next
/// raft write (the write is lost). Once the put is acknowledged, the old
/// leader goes down for good and the other two must still hold it.
#[test]
fn crash_while_persisting_loses_no_acknowledged_write_2b() {
    test("crash_while_persisting_loses_no_acknowledged_write_2b").run(
        3,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k0", "v0"), 10 * SEC);
            c.run_for(300 * MS);
            let leader = c.leader().ok_or("no leader")?;
            let others: Vec<u64> = c.store_ids().into_iter().filter(|&s| s != leader).collect();
            let (follower, cut_off) = (others[0], others[1]);
            c.fault(format!("partition {{{leader}, {follower}}} | {{{cut_off}}}"));
            c.net.partition(vec![[leader, follower].into(), [cut_off].into()]);
            c.crash_at_next_raft_write(follower);
            c.fault(format!("store {follower} will crash during its next raft write"));
            c.start_op(1, put("x", "acknowledged"));
            c.run_for(SEC);
            c.restart_store(follower);
            let deadline = c.now() + 10 * SEC;
            while !c.op_done(1) && c.now() < deadline {
                c.step();
            }
            if !c.op_done(1) {
                return Err(
                    "the put was never acknowledged, even after the follower restarted".into()
                );
            }
            c.crash_store(leader);
            c.net.heal();
            c.fault("partition healed; the old leader stays down".into());
            match c.run_op(1, get("x"), 10 * SEC) {
                OpResult::Value(Some(v)) if v == b"acknowledged" => Ok(()),
                other => Err(format!(
                    "x was acknowledged, then read {other:?} from stores {follower} and {cut_off}: \
                 store {follower} must persist an entry before it acknowledges it (persist, \
                 then send)"
                )),
            }
        },
    );
}

// ----- crash consistency, stale proposals, multi-request commands -----------

/// Store `id`'s disks, as they are now: the applied index of region 1
/// (from the apply state in the kv engine), and whether the kv engine's
/// `default` data is exactly what applying the log (in the raft engine) up
/// to that index gives.
///
/// # Errors
///
/// What differs: a key whose value on disk comes from an entry after the
/// applied index (data written without its apply state: the peer applies
/// that entry again after a restart), or a write of an applied entry that
/// is missing (an apply state written without its data: a lost write).
fn check_data_matches_applied_index(c: &Cluster, id: u64) -> Result<u64, String> {
    /// One write of an entry to `default`: the key, and the value put
    /// (`None` for a delete).
    type Write = (Vec<u8>, Option<Vec<u8>>);
    use prost::Message as _;
    use raft::eraftpb::Entry;
    use std::collections::BTreeMap;
    use tinykv_proto::raft_cmdpb::CmdType;
    use tinykv_proto::raft_serverpb::RaftApplyState;

    const DOC: &str = "The data and the apply state must go in one kv batch (lab 2b, \"Two \
                       engines, three states\", invariant 1)";
    let (kv, raft) = (c.kv_engine(id), c.raft_engine(id));
    let read = |e: &tinykv_engine::Result<Option<Vec<u8>>>| e.as_ref().ok().cloned().flatten();
    let raw = read(&kv.get(Cf::Meta, &keys::apply_state_key(1)))
        .ok_or_else(|| format!("store {id} has no apply state for region 1 on disk"))?;
    let state = RaftApplyState::decode(raw.as_slice())
        .map_err(|e| format!("store {id}'s apply state does not decode: {e}"))?;
    let applied = state.applied_index;
    let first = state.truncated_state.map_or(0, |t| t.index) + 1;
    // The writes of entry `index` to `default`: (key, Some(value) or None
    // for a delete); `None` if the raft engine has no such entry.
    let writes = |index: u64| -> Option<Vec<Write>> {
        let raw = read(&raft.get(Cf::Meta, &keys::raft_log_key(1, index)))?;
        let e = Entry::decode(raw.as_slice()).expect("a raft log entry decodes");
        let Ok(req) = RaftCmdRequest::decode(e.data.as_slice()) else { return Some(vec![]) };
        let default = |cf: &str| Cf::parse_data(cf).is_ok_and(|cf| cf == Cf::Default);
        Some(
            req.requests
                .iter()
                .filter_map(|r| match (r.cmd_type(), &r.put, &r.delete) {
                    (CmdType::Put, Some(p), _) if default(&p.cf) => {
                        Some((p.key.clone(), Some(p.value.clone())))
                    }
                    (CmdType::Delete, _, Some(d)) if default(&d.cf) => Some((d.key.clone(), None)),
                    _ => None,
                })
                .collect(),
        )
    };
    // Replay the log up to the applied index: the data the disk must hold.
    let mut expected: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
    for index in first..=applied {
        let ws = writes(index).ok_or_else(|| {
            format!("store {id}'s raft log lacks entry {index}, below its applied index {applied}")
        })?;
        for (key, value) in ws {
            match value {
                Some(v) => expected.insert(key, (v, index)),
                None => expected.remove(&key),
            };
        }
    }
    let mut actual: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for kv in kv.snapshot().iter(Cf::Default, b"", None) {
        let (k, v) = kv.map_err(|e| format!("reading store {id}'s kv engine: {e}"))?;
        actual.insert(k, v);
    }
    let keys: std::collections::BTreeSet<&Vec<u8>> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let want = expected.get(key);
        let got = actual.get(key);
        if want.map(|(v, _)| v) == got {
            continue;
        }
        let show = |v: Option<&Vec<u8>>| {
            v.map_or("nothing".into(), |v| format!("{:?}", v.escape_ascii().to_string()))
        };
        let key_s = key.escape_ascii().to_string();
        // Which later entry wrote what the disk holds?
        let later = (applied + 1..)
            .map_while(|i| writes(i).map(|w| (i, w)))
            .find_map(|(i, w)| w.iter().any(|(k, v)| k == key && v.as_ref() == got).then_some(i));
        return Err(match (later, want) {
            (Some(i), _) => format!(
                "after a crash, store {id}'s kv engine holds {key_s:?} = {}, written by entry {i}, \
                 but its apply state on disk says applied index {applied}: the data of entry {i} \
                 reached the disk without its apply state, so the restarted peer applies entry \
                 {i} again (harmless for a put, not for the admin commands of labs 2c and 3b). \
                 {DOC}",
                show(got)
            ),
            (None, Some((v, i))) => format!(
                "after a crash, store {id}'s apply state on disk says applied index {applied}, \
                 but its kv engine holds {key_s:?} = {} where entry {i} wrote {}: the apply \
                 state reached the disk without the data it covers, and the restarted peer will \
                 never apply entry {i} again (a lost write). {DOC}",
                show(got),
                show(Some(v))
            ),
            (None, None) => format!(
                "after a crash, store {id}'s kv engine holds {key_s:?} = {}, which no entry of \
                 its log up to the applied index {applied} (nor after it) wrote",
                show(got)
            ),
        });
    }
    Ok(applied)
}

/// A crash keeps the oldest unsynced batches of a disk, or none: whatever
/// it keeps, the data on disk is exactly the log applied up to the applied
/// index on disk (data and apply state are written in one batch). Three
/// stores take puts and deletes of a few keys, one store after another
/// crashes (then all at once) and its disks are checked before it
/// restarts; every acknowledged write reads back at the end.
#[test]
fn data_and_apply_state_agree_on_disk_after_every_crash_2b() {
    test("data_and_apply_state_agree_on_disk_after_every_crash_2b").run(
        3,
        |cfg| cfg,
        |c| {
            let mut latest = std::collections::BTreeMap::new();
            let mut n = 0u32;
            for round in 0..24u32 {
                for _ in 0..6 {
                    n += 1;
                    let key = format!("k{}", n % 5);
                    if n.is_multiple_of(7) {
                        c.run_op(1, OpKind::Delete { key: key.clone().into() }, 10 * SEC);
                        latest.remove(&key);
                    } else {
                        let value = format!("v{n}");
                        c.run_op(1, put(&key, &value), 10 * SEC);
                        latest.insert(key, value);
                    }
                }
                let ids = c.store_ids();
                let victims =
                    if round % 8 == 7 { ids } else { vec![ids[round as usize % ids.len()]] };
                for &id in &victims {
                    c.crash_store(id);
                }
                for &id in &victims {
                    check_data_matches_applied_index(c, id)
                        .map_err(|e| format!("crash {} (stores {victims:?}): {e}", round + 1))?;
                }
                for &id in &victims {
                    c.restart_store(id);
                }
            }
            for (key, value) in latest {
                match c.run_op(1, get(&key), 10 * SEC) {
                    OpResult::Value(Some(v)) if v == value.as_bytes() => {}
                    other => {
                        return Err(format!(
                            "{key} was last written {value}, after the crashes it reads {other:?}"
                        ));
                    }
                }
            }
            Ok(())
        },
    );
}

/// A leader is cut off with proposals in flight; the majority elects a
/// new leader, whose entries take those indexes. After the heal the old
/// leader applies the new leader's entries and must answer each of its
/// proposals with `StaleCommand` (its client then retries at once,
/// instead of waiting for a timeout), within a few seconds of virtual
/// time, and none of them may take effect anywhere.
#[test]
fn overwritten_proposals_are_answered_with_stale_command_2b() {
    /// Puts sent to the old leader once it is cut off.
    const PROPOSALS: u64 = 3;
    /// How long after the heal every one of them must be answered.
    const BUDGET_US: u64 = 3 * SEC;
    test("overwritten_proposals_are_answered_with_stale_command_2b").run(
        5,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("k0", "v0"), 10 * SEC);
            c.run_for(300 * MS);
            let old = c.leader().ok_or("no leader after a write")?;
            cut_off_leader(c, old, "");
            let raft_of = |c: &Cluster, id: u64| {
                let peer = c.store(id).and_then(|s| s.peer(1)).expect("a peer of region 1");
                (peer.term(), peer.raft_group.raft.raft_log.last_index())
            };
            let (term, last) = raft_of(c, old);
            let first = last + 1;
            let tokens: Vec<Token> = (0..PROPOSALS)
                .map(|i| {
                    let req = c.command(old, &put(&format!("lost{i}"), "x"));
                    c.call_async(old, req)
                })
                .collect();
            let mut answers: Vec<Option<tinykv_raftstore::CmdResponse>> =
                tokens.iter().map(|_| None).collect();
            let poll = |c: &mut Cluster, answers: &mut Vec<Option<_>>| {
                for (slot, &t) in answers.iter_mut().zip(&tokens) {
                    if slot.is_none() {
                        *slot = c.answer(t);
                    }
                }
            };
            c.run_for(20 * MS);
            poll(c, &mut answers);
            let (_, old_last) = raft_of(c, old);
            if old_last < first + PROPOSALS - 1 {
                return Err(format!(
                    "store {old}, the leader (term {term}) just cut off, was sent {PROPOSALS} \
                     puts but its log ends at {old_last}, not {}: it should have proposed \
                     them (they cannot commit)",
                    first + PROPOSALS - 1
                ));
            }
            // The majority elects a new leader, whose entries take the
            // indexes of the old leader's proposals.
            for i in 0..PROPOSALS + 2 {
                c.run_op(2, put(&format!("new{i}"), "y"), 10 * SEC);
            }
            poll(c, &mut answers);
            let new = c.leader().ok_or("no leader in the majority")?;
            let (new_term, new_last) = raft_of(c, new);
            if new == old || new_last < first + PROPOSALS - 1 {
                return Err(format!(
                    "the majority's leader is store {new} (term {new_term}, last index \
                     {new_last}); expected a new leader whose log covers indexes {first}..={}",
                    first + PROPOSALS - 1
                ));
            }
            c.net.heal();
            c.fault("partition healed".into());
            let deadline = c.now() + BUDGET_US;
            while answers.iter().any(Option::is_none) && c.now() < deadline && c.step() {
                poll(c, &mut answers);
            }
            let peer = c.store(old).and_then(|s| s.peer(1)).ok_or("the old leader has no peer")?;
            let applied = peer.storage().applied_index();
            for (i, answer) in answers.iter().enumerate() {
                let index = first + i as u64;
                let now_term = peer.raft_group.raft.raft_log.term(index).unwrap_or(0);
                let what = format!(
                    "store {old}'s put lost{i}, proposed at index {index} in term {term} while \
                     it was cut off (the new leader's entry at {index} has term {now_term}; \
                     store {old} has applied up to {applied})"
                );
                let Some(resp) = answer else {
                    return Err(format!(
                        "{what} got no answer within {} ms of virtual time after the heal: a \
                         proposal whose entry was replaced must be answered with StaleCommand \
                         when the entry at its index (or a later one) applies, and it stays in \
                         `proposals` when its peer loses the leadership (lab 2b, \"When a \
                         proposal loses its entry\", \"Hints\")",
                        BUDGET_US / MS
                    ));
                };
                match response_error(&resp.resp) {
                    Some(e) if e.stale_command.is_some() => {}
                    Some(e) => {
                        return Err(format!(
                            "{what} was answered with {e:?}; expected region_error.stale_command \
                             (lab 2b, \"When a proposal loses its entry\")"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "{what} was answered with success, but another leader's entry took \
                             its index: take_proposal must compare the term too (lab 2b, \
                             \"When a proposal loses its entry\")"
                        ));
                    }
                }
            }
            for id in c.store_ids() {
                for i in 0..PROPOSALS {
                    if stored(c, id, &format!("lost{i}")).is_some() {
                        return Err(format!(
                            "store {id} applied lost{i}, which only the cut-off old leader had \
                             in its log"
                        ));
                    }
                }
            }
            Ok(())
        },
    );
}

/// One command with several requests: its answers describe the state
/// after all of its writes, in request order (a `Get` after a `Put` of
/// the same key in one command reads the new value).
#[test]
fn a_command_reads_after_its_own_writes_2b() {
    use tinykv_proto::raft_cmdpb::CmdType;
    test("a_command_reads_after_its_own_writes_2b").run(
        3,
        |cfg| cfg,
        |c| {
            c.run_op(1, put("a", "old"), 10 * SEC);
            c.run_op(1, put("b", "old"), 10 * SEC);
            c.run_for(200 * MS);
            let leader = c.leader().ok_or("no leader")?;
            // put a, get a, delete b, get b: one command.
            let mut req = c.command(leader, &put("a", "new"));
            let get_a = c.command(leader, &get("a")).requests[0].clone();
            let del_b =
                c.command(leader, &OpKind::Delete { key: b"b".to_vec() }).requests[0].clone();
            let get_b = c.command(leader, &get("b")).requests[0].clone();
            let snap = tinykv_proto::raft_cmdpb::Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(tinykv_proto::raft_cmdpb::SnapRequest {}),
                ..Default::default()
            };
            req.requests.extend([get_a, del_b, get_b, snap]);
            let region = req.header.as_ref().map_or(0, |h| h.region_id);
            let resp = c.call(leader, req, 2 * SEC).ok_or("the leader never answered")?;
            if let Some(e) = response_error(&resp.resp) {
                return Err(format!("a command of five requests was refused: {e:?}"));
            }
            let got: Vec<(CmdType, Option<String>)> = resp
                .resp
                .responses
                .iter()
                .map(|r| {
                    let value = r.get.as_ref().map(|g| g.value.escape_ascii().to_string());
                    (r.cmd_type(), value)
                })
                .collect();
            let want = vec![
                (CmdType::Put, None),
                (CmdType::Get, Some("new".to_string())),
                (CmdType::Delete, None),
                (CmdType::Get, Some(String::new())),
                (CmdType::Snap, None),
            ];
            if got != want {
                return Err(format!(
                    "the command [put a=new, get a, delete b, get b, snap] on a=old, b=old \
                     should answer {want:?}, answered {got:?}: one response per request, in \
                     order, each read after the command's writes (lab 2b, \"Step 4\": write the \
                     batch, then read_responses)"
                ));
            }
            let snap_region = resp.resp.responses[4].snap.as_ref().and_then(|s| s.region.as_ref());
            if snap_region.map(|r| r.id) != Some(region) {
                return Err(format!(
                    "the snap response must carry the region (id {region}), got {snap_region:?}"
                ));
            }
            let a = match &resp.snap {
                Some(snap) => snap.get(Cf::Default, b"a").map_err(|e| e.to_string())?,
                None => return Err("a command with a snap request must return the engine snapshot (CmdResponse::snap)".into()),
            };
            if a.as_deref() != Some(b"new".as_slice()) {
                return Err(format!(
                    "the command's engine snapshot must see its own put a=new, reads a = {a:?}"
                ));
            }
            Ok(())
        },
    );
}
