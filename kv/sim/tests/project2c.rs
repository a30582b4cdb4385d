//! Lab 2c, store level: log GC and snapshots in the replicated store.
//!
//! Every test runs a simulated cluster with a small GC limit, so the log
//! is compacted all the time and a store that falls behind (cut off,
//! crashed) must catch up by snapshot. Every test also checks that no
//! peer's log holds more than twice the GC limit of applied entries.
//!
//! Replay a failure with the command it prints (`make project2c TEST=…
//! SEED=…`); the report is under `target/tmp/sim-reports/`.

use std::collections::BTreeSet;
use std::sync::Arc;

use tinykv_engine::{Cf, Engine, keys};
use tinykv_proto::raft_serverpb::{PeerState, RaftApplyState, RaftLocalState, RegionLocalState};
use tinykv_sim::suite::SimTest;
use tinykv_sim::workload::{self, Workload};
use tinykv_sim::{Cluster, ClusterConfig, EngineSide, MS, NetConfig, SEC};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// The GC limit of every 2c test: a leader compacts once its applied
/// index is this far past its first log index.
const GC_LIMIT: u64 = 100;
/// What the tests allow: applied − truncated index on any peer.
const MAX_LOG_GAP: u64 = 2 * GC_LIMIT;

fn test(name: &'static str) -> SimTest {
    SimTest::new(name, "2c", TMP).with_base(with_log_gc)
}

/// Frequent log GC with a small limit.
fn with_log_gc(mut cfg: ClusterConfig) -> ClusterConfig {
    cfg.store.raft_log_gc_count_limit = GC_LIMIT;
    cfg.store.raft_log_gc_tick_interval = 1;
    cfg.store.snap_gc_tick_interval = 20;
    cfg
}

/// A generic test with log GC: `clients` clients for three rounds, with
/// the faults named. With partitions, cut-off stores usually catch up by
/// snapshot. With crashes, stores also lose power at random writes during
/// rounds (persisting, applying, building or applying a snapshot, log GC)
/// and restart, besides all crashing between rounds.
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
            w.random_crashes = crash;
            w.max_log_gap = Some(MAX_LOG_GAP);
            let stats = workload::run(cluster, &w)?;
            if stats.appends < 20 {
                return Err(format!("only {} appends got through: {stats:?}", stats.appends));
            }
            if crash && stats.random_crashes == 0 {
                return Err(format!("no store crashed at a random write: {stats:?}"));
            }
            check_log_on_disk(cluster)
            // (Whether a snapshot was needed depends on the seed: a store
            // cut off briefly may still find its next entries in the log.
            // `one_snapshot_2c` and the crash tests always need one.)
        },
    );
}

/// Log GC deletes what it compacts: no store keeps many more log entries
/// on disk than its peers' logs hold.
fn check_log_on_disk(c: &mut Cluster) -> Result<(), String> {
    // Let the leader compact and the GC workers catch up.
    c.run_for(500 * MS);
    for id in c.store_ids() {
        let on_disk = c.raft_log_entries(id);
        let allowed = 2 * MAX_LOG_GAP + 10;
        if on_disk > allowed {
            return Err(format!(
                "store {id} keeps {on_disk} raft log entries on disk (at most {allowed} \
                 expected): compacted entries are not deleted"
            ));
        }
    }
    Ok(())
}

/// The value of `key` in store `id`'s kv engine, as it is now.
fn stored(c: &Cluster, id: u64, key: &str) -> Option<Vec<u8>> {
    c.kv_engine(id).get(Cf::Default, key.as_bytes()).expect("read the kv engine")
}

/// Every data pair of store `id`'s kv engine.
fn data(c: &Cluster, id: u64) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let snap = c.kv_engine(id).snapshot();
    let mut out = Vec::new();
    for cf in Cf::DATA {
        for kv in snap.iter(cf, b"", None) {
            let (k, v) = kv.expect("read the kv engine");
            out.push((cf, k, v));
        }
    }
    out
}

/// The local state at `key` in `engine`'s meta CF.
fn get_state<M: prost::Message + Default>(engine: Arc<dyn Engine>, key: &[u8]) -> M {
    let raw = engine.get(Cf::Meta, key).expect("read").expect("a local state");
    M::decode(raw.as_slice()).expect("decode a local state")
}

/// Store `id`'s region state of the first region.
fn region_state(c: &Cluster, id: u64) -> PeerState {
    let raw = c.kv_engine(id).get(Cf::Meta, &keys::region_state_key(1)).expect("read");
    let state: RegionLocalState =
        prost::Message::decode(raw.expect("a region state").as_slice()).expect("decode");
    state.state()
}

/// Runs until `cond` holds, or fails after `limit_us` of virtual time;
/// checks the log bound after every event.
fn wait_for(
    c: &mut Cluster,
    limit_us: u64,
    what: &str,
    mut cond: impl FnMut(&Cluster) -> bool,
) -> Result<(), String> {
    let until = c.now() + limit_us;
    while !cond(c) {
        if c.now() > until || !c.step() {
            return Err(format!("{what}: not within {}ms", limit_us / MS));
        }
        check_log_gap(c)?;
    }
    Ok(())
}

/// No peer's log holds more than [`MAX_LOG_GAP`] applied entries.
fn check_log_gap(c: &Cluster) -> Result<(), String> {
    let (gap, store) = c.max_log_gap();
    if gap > MAX_LOG_GAP {
        return Err(format!(
            "store {store}'s log holds {gap} applied entries (applied − truncated index), more \
             than {MAX_LOG_GAP}: the log is not being compacted"
        ));
    }
    Ok(())
}

/// The truncated index of store `id`'s peer of the first region.
fn truncated(c: &Cluster, id: u64) -> u64 {
    c.store(id).and_then(|s| s.peer(1)).map_or(0, |p| p.storage().truncated().index)
}

/// The last log index of store `id`'s peer of the first region.
fn last_index(c: &Cluster, id: u64) -> u64 {
    c.store(id).and_then(|s| s.peer(1)).map_or(0, |p| p.storage().raft_state.last_index)
}

/// Cuts store `cut` off, writes `n` keys `{prefix}{i}` and deletes
/// `delete` until the others' logs are compacted past everything `cut`
/// has. Returns the keys written.
fn write_past_the_cut(
    c: &mut Cluster,
    cut: u64,
    prefix: &str,
    n: u64,
    delete: &str,
) -> Result<Vec<String>, String> {
    let others: BTreeSet<u64> = c.store_ids().into_iter().filter(|&id| id != cut).collect();
    c.net.partition(vec![BTreeSet::from([cut]), others.clone()]);
    c.fault(format!("store {cut} cut off"));
    let behind = last_index(c, cut);
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}{i:03}");
        c.must_put(key.as_bytes(), format!("v{i}").as_bytes());
        keys.push(key);
    }
    c.must_delete(delete.as_bytes());
    wait_for(c, 5 * SEC, "the cluster compacts its log past the cut-off store", |c| {
        others.iter().all(|&id| truncated(c, id) > behind)
    })?;
    Ok(keys)
}

/// The cluster heals, and store `cut` (cut off, or crashed and
/// restarted) catches up: a leader takes a put, and every running store,
/// `cut` among them, holds it and the same pairs as `cut`, whose region
/// is not left half applied (`Applying`). `cut` may be the leader itself
/// (a restarted store can win an election), so it is compared with all
/// the others, not just with the leader.
fn heal_and_catch_up(c: &mut Cluster, cut: u64) -> Result<(), String> {
    c.net.heal();
    c.fault("healed".into());
    c.must_put(b"after heal", b"yes");
    wait_for(c, 10 * SEC, &format!("store {cut} catches up after the heal"), |c| {
        let up: Vec<u64> = c.store_ids().into_iter().filter(|&id| c.is_up(id)).collect();
        c.leader().is_some()
            && up.contains(&cut)
            && up.len() > 1
            && region_state(c, cut) == PeerState::Normal
            && up.iter().all(|&id| stored(c, id, "after heal").is_some())
            && up.iter().all(|&id| data(c, id) == data(c, cut))
    })
}

/// A store cut off while the others compact their log gets the data,
/// including a delete, through a snapshot; keeps it across a restart; and
/// no log grows past twice the GC limit.
#[test]
fn one_snapshot_2c() {
    test("one_snapshot_2c").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k1", b"v1");
            c.must_put(b"k2", b"v2");
            wait_for(c, SEC, "store 1 applies k1 and k2", |c| {
                stored(c, 1, "k1").is_some() && stored(c, 1, "k2").is_some()
            })?;
            let keys = write_past_the_cut(c, 1, "key ", 3 * GC_LIMIT, "k2")?;
            if stored(c, 1, "k2").is_none() || stored(c, 1, &keys[0]).is_some() {
                return Err("store 1 changed while it was cut off".into());
            }
            heal_and_catch_up(c, 1)?;
            if c.snapshot_stats.delivered == 0 {
                return Err("store 1 caught up without a snapshot".into());
            }
            if stored(c, 1, "k2").is_some() {
                return Err("store 1 still has k2, deleted while it was cut off".into());
            }
            if truncated(c, 1) == 0 {
                return Err("after the snapshot store 1's log is not truncated".into());
            }
            c.crash_store(1);
            c.restart_store(1);
            c.must_put(b"k3", b"v3");
            wait_for(c, 2 * SEC, "store 1 applies k3 after its restart", |c| {
                stored(c, 1, "k3").is_some()
            })?;
            let want: [(&str, Option<&[u8]>); 3] =
                [("k1", Some(b"v1")), ("k2", None), (&keys[5], Some(b"v5"))];
            for (key, value) in want {
                if stored(c, 1, key).as_deref() != value {
                    return Err(format!(
                        "after the restart store 1 has {key} = {:?}",
                        stored(c, 1, key)
                    ));
                }
            }
            Ok(())
        },
    );
}

/// One client; every store crashes and restarts between rounds, from a
/// compacted log.
#[test]
fn snapshot_recover_2c() {
    generic("snapshot_recover_2c", 1, false, false, true);
}

/// As `snapshot_recover_2c`, with 20 clients.
#[test]
fn snapshot_recover_many_clients_2c() {
    generic("snapshot_recover_many_clients_2c", 20, false, false, true);
}

/// Five clients on an unreliable network.
#[test]
fn snapshot_unreliable_2c() {
    generic("snapshot_unreliable_2c", 5, true, false, false);
}

/// Five clients on an unreliable network, crashes between rounds.
#[test]
fn snapshot_unreliable_recover_2c() {
    generic("snapshot_unreliable_recover_2c", 5, true, false, true);
}

/// Five clients, unreliable network, random partitions during rounds,
/// crashes between rounds: cut-off stores catch up by snapshot.
#[test]
fn snapshot_unreliable_recover_concurrent_partition_2c() {
    generic("snapshot_unreliable_recover_concurrent_partition_2c", 5, true, true, true);
}

/// The power goes out while a store writes a snapshot's data (at a
/// different write each time): on restart it applies the snapshot again,
/// and ends with exactly the leader's data.
#[test]
fn crash_in_the_middle_of_applying_a_snapshot_2c() {
    test("crash_in_the_middle_of_applying_a_snapshot_2c").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            for (round, n) in [1u64, 2, 3].into_iter().enumerate() {
                // Over 64 keys, so that the data takes several batches.
                write_past_the_cut(c, 2, &format!("r{round} "), 100, "k")?;
                c.crash_after_snapshot_stored(2, EngineSide::Kv, n);
                c.net.heal();
                wait_for(c, 5 * SEC, "store 2 crashes while applying the snapshot", |c| {
                    !c.is_up(2)
                })?;
                if !c.history.faults.iter().any(|f| f.what.contains("ApplySnapshot")) {
                    return Err("store 2 went down, but not while applying a snapshot".into());
                }
                if region_state(c, 2) != PeerState::Applying {
                    return Err("after the crash store 2's region is not marked Applying".into());
                }
                c.restart_store(2);
                heal_and_catch_up(c, 2)?;
                c.history.faults.clear();
            }
            Ok(())
        },
    );
}

/// The power goes out between a snapshot's two batches: the kv batch with
/// the apply state must be the one on disk (the raft batch deletes the old
/// log, so it must come second), and on restart the store rebuilds its
/// raft state from the snapshot and catches up.
#[test]
fn crash_between_snapshot_batches_2c() {
    test("crash_between_snapshot_batches_2c").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            write_past_the_cut(c, 3, "key ", 3 * GC_LIMIT, "k")?;
            // Storing the snapshot takes two writes: cut the power at the
            // second one.
            c.crash_after_snapshot_delivered(3, 2);
            c.net.heal();
            wait_for(c, 5 * SEC, "store 3 crashes storing the snapshot", |c| !c.is_up(3))?;
            let apply = get_state::<RaftApplyState>(c.kv_engine(3), &keys::apply_state_key(1));
            let raft = get_state::<RaftLocalState>(c.raft_engine(3), &keys::raft_state_key(1));
            let commit = raft.hard_state.unwrap_or_default().commit;
            if apply.applied_index <= commit {
                return Err(format!(
                    "the crash should fall between the snapshot's batches, with the apply state \
                     the snapshot's and the raft state older; the disk has applied index {} and \
                     commit index {commit}",
                    apply.applied_index
                ));
            }
            c.restart_store(3);
            heal_and_catch_up(c, 3)?;
            c.crash_store(3);
            c.restart_store(3);
            heal_and_catch_up(c, 3)
        },
    );
}

/// The power goes out in the middle of log GC (the deletion of compacted
/// entries is lost), and again just after one (the deletion reached the
/// disk with the next `Ready`): each time the store restarts with a log
/// that starts where its truncated state says, and catches up.
#[test]
fn crash_during_log_gc_2c() {
    test("crash_during_log_gc_2c").run(
        3,
        |cfg| cfg,
        |c| {
            for (round, n) in [0u64, 2].into_iter().enumerate() {
                c.crash_at_log_gc(2, n);
                let mut i = 0;
                while c.is_up(2) {
                    if i > 10 * GC_LIMIT {
                        return Err(format!("store 2 never ran log GC in {i} writes"));
                    }
                    c.must_put(format!("r{round} {i:04}").as_bytes(), b"v");
                    i += 1;
                }
                let during = if n == 0 { "RaftLogGc" } else { "a write" };
                if !c.history.faults.iter().any(|f| f.what.contains(during)) {
                    return Err(format!("store 2 went down, but not in the middle of {during}"));
                }
                c.restart_store(2);
                heal_and_catch_up(c, 2)?;
                c.history.faults.clear();
            }
            Ok(())
        },
    );
}

/// A snapshot corrupted in transit is rejected with a clear error and
/// changes nothing on the receiver; the next one gets through.
#[test]
fn corrupt_snapshot_is_rejected_2c() {
    test("corrupt_snapshot_is_rejected_2c").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            write_past_the_cut(c, 2, "key ", 3 * GC_LIMIT, "k")?;
            let before = data(c, 2);
            let applied = c.store(2).and_then(|s| s.peer(1)).map(|p| p.storage().applied_index());
            c.corrupt_next_snapshot();
            c.net.heal();
            wait_for(c, 5 * SEC, "the corrupt snapshot is rejected", |c| {
                c.snapshot_stats.rejected > 0
            })?;
            let why = c.snapshot_stats.rejections[0].clone();
            if !why.contains("checksum") && !why.contains("corrupt") {
                return Err(format!("the rejection does not say what is wrong: {why}"));
            }
            let now = c.store(2).and_then(|s| s.peer(1)).map(|p| p.storage().applied_index());
            if data(c, 2) != before || now != applied {
                return Err("store 2 changed after rejecting the corrupt snapshot".into());
            }
            heal_and_catch_up(c, 2)?;
            if c.snapshot_stats.delivered == 0 {
                return Err("store 2 caught up without a snapshot".into());
            }
            Ok(())
        },
    );
}

/// A long run with partitions, an unreliable network and crashes: no log
/// ever holds more than twice the GC limit of applied entries, and the
/// stores keep no more on disk.
#[test]
fn log_stays_bounded_under_a_long_run_2c() {
    test("log_stays_bounded_under_a_long_run_2c").run(
        5,
        |mut cfg| {
            cfg.net = NetConfig::unreliable();
            cfg
        },
        |c| {
            let mut w = Workload::new(5);
            w.rounds = 8;
            w.partitions = true;
            w.crash = true;
            w.random_crashes = true;
            w.max_log_gap = Some(MAX_LOG_GAP);
            let stats = workload::run(c, &w)?;
            check_log_on_disk(c)?;
            let on_disk = c.store_ids().iter().map(|&id| c.raft_log_entries(id)).max();
            let crashed_in =
                |what: &str| c.history.faults.iter().filter(|f| f.what.contains(what)).count();
            println!(
                "{} appends, {} random crashes (in a Ready: {}, applying a snapshot: {}, log GC: \
                 {}), largest applied − truncated {}, most log entries on a disk at the end {}, \
                 snapshots sent {} delivered {} ({} bytes)",
                stats.appends,
                stats.random_crashes,
                crashed_in("crashed in the middle of a write"),
                crashed_in("crashed in the middle of ApplySnapshot"),
                crashed_in("crashed in the middle of RaftLogGc"),
                stats.max_log_gap,
                on_disk.unwrap_or(0),
                c.snapshot_stats.sent,
                c.snapshot_stats.delivered,
                c.snapshot_stats.bytes
            );
            Ok(())
        },
    );
}

/// The syncs a store makes to receive a snapshot's files: one per CF
/// file, the directory (the CF files' names), the meta file, and the
/// directory again (the meta file's name, which makes the snapshot
/// complete).
const RECEIVE_SYNCS: u64 = 6;

/// The faults so far that mention `what`.
fn faults_with(c: &Cluster, what: &str) -> Vec<String> {
    c.history.faults.iter().filter(|f| f.what.contains(what)).map(|f| f.what.clone()).collect()
}

/// Waits for the crash planned on store `id`, and checks it struck during
/// `during` (a phrase of its fault line).
fn wait_for_planned_crash(c: &mut Cluster, id: u64, during: &str) -> Result<(), String> {
    wait_for(c, 5 * SEC, &format!("store {id} crashes {during}"), |c| !c.is_up(id))?;
    if faults_with(c, &format!("store {id} crashed {during}")).is_empty() {
        return Err(format!("store {id} went down, but not {during}: {:?}", c.history.faults));
    }
    Ok(())
}

/// Crashes store `down`, writes `n` keys `{prefix}{i}` = `v{i}` until the
/// others' logs are compacted past everything it has, then crashes and
/// restarts their leader too (a leader builds snapshots ahead of need: a
/// new one has none), and returns the keys and the new leader, who must
/// build the snapshot `down` needs. (A crashed store, unlike a cut-off
/// one, comes back with its old term and deposes nobody.)
fn write_while_down(
    c: &mut Cluster,
    down: u64,
    prefix: &str,
    n: u64,
) -> Result<(Vec<String>, u64), String> {
    let behind = last_index(c, down);
    c.crash_store(down);
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}{i:03}");
        c.must_put(key.as_bytes(), format!("v{i}").as_bytes());
        keys.push(key);
    }
    let others: Vec<u64> = c.store_ids().into_iter().filter(|&id| id != down).collect();
    wait_for(c, 5 * SEC, &format!("the cluster compacts its log past store {down}"), |c| {
        others.iter().all(|&id| truncated(c, id) > behind)
    })?;
    let old = c.leader().ok_or("no leader")?;
    c.crash_store(old);
    c.restart_store(old);
    wait_for(c, 5 * SEC, "a leader is elected after the restart", |c| c.leader().is_some())?;
    Ok((keys, c.leader().ok_or("no leader")?))
}

/// Store `id` restarts; returns how many snapshots had been delivered then.
fn restart_counting_snapshots(c: &mut Cluster, id: u64) -> u64 {
    c.restart_store(id);
    c.snapshot_stats.delivered
}

/// Every store is up and holds exactly the leader's data (any store may
/// lead), its region `Normal`.
fn wait_until_all_agree(c: &mut Cluster) -> Result<(), String> {
    c.must_put(b"all agree", b"yes");
    wait_for(c, 10 * SEC, "every store catches up", |c| {
        let Some(leader) = c.leader() else { return false };
        let want = data(c, leader);
        c.store_ids().into_iter().all(|id| {
            c.is_up(id)
                && stored(c, id, "all agree").is_some()
                && region_state(c, id) == PeerState::Normal
                && data(c, id) == want
        })
    })
}

/// Every key written by `write_past_the_cut` (`keys[i]` = `v{i}`) is on
/// every store.
fn check_acknowledged(c: &Cluster, keys: &[String]) -> Result<(), String> {
    for id in c.store_ids() {
        for (i, key) in keys.iter().enumerate() {
            let want = format!("v{i}");
            if stored(c, id, key).as_deref() != Some(want.as_bytes()) {
                return Err(format!(
                    "store {id} lost the acknowledged write {key} = {want}: it has {:?}",
                    stored(c, id, key)
                ));
            }
        }
    }
    Ok(())
}

/// The power goes out in the middle of writing snapshot files, before
/// they are all durable: on a follower receiving a snapshot (at the
/// directory sync that would have made the meta file's name durable: its
/// files are written and synced, but the crash takes the snapshot away),
/// then on a leader building one (at its first file sync). The crash
/// loses the unsynced files; the restarted store keeps no trace of them
/// and gets a fresh snapshot, and every acknowledged write ends up on
/// every store.
#[test]
fn crash_loses_an_unsynced_snapshot_file_2c() {
    use tinykv_sim::{FsCrash, SnapshotIo};
    test("crash_loses_an_unsynced_snapshot_file_2c").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            // A follower loses the snapshot it was receiving.
            let keys = write_past_the_cut(c, 2, "r0 ", 2 * GC_LIMIT, "k")?;
            c.crash_in_snapshot_io(2, SnapshotIo::Receive, RECEIVE_SYNCS, FsCrash::Lose);
            c.net.heal();
            wait_for_planned_crash(c, 2, "while receiving snapshot")?;
            if let Some(fs) = c.snap_fs(2)
                && fs.stats().lost_changes == 0
            {
                return Err("store 2's crash lost no unsynced snapshot file change".into());
            }
            let delivered = restart_counting_snapshots(c, 2);
            if c.snap_fs(2).is_some() {
                if faults_with(c, "store 2 removed").is_empty() {
                    return Err(
                        "store 2 restarted without removing the files of the snapshot it lost"
                            .into(),
                    );
                }
                let left = c.snaps(2).map(|s| s.list()).transpose().map_err(|e| e.to_string())?;
                if left.as_ref().is_some_and(|l| !l.is_empty()) {
                    return Err(format!("store 2 restarted with snapshots on disk: {left:?}"));
                }
            }
            heal_and_catch_up(c, 2)?;
            if c.snapshot_stats.delivered == delivered {
                return Err("store 2 caught up without a fresh snapshot".into());
            }
            check_acknowledged(c, &keys)?;

            // A leader loses the snapshot it was building.
            let (keys, leader) = write_while_down(c, 3, "r1 ", 2 * GC_LIMIT)?;
            c.crash_in_snapshot_io(leader, SnapshotIo::Build, 1, FsCrash::Lose);
            c.restart_store(3);
            wait_for_planned_crash(c, leader, "in the middle of GenSnapshot")?;
            if let Some(fs) = c.snap_fs(leader)
                && fs.stats().lost_changes == 0
            {
                return Err(format!(
                    "store {leader}'s crash lost no unsynced snapshot file change"
                ));
            }
            heal_and_catch_up(c, 3)?;
            c.restart_store(leader);
            wait_until_all_agree(c)?;
            check_acknowledged(c, &keys)
        },
    );
}

/// The power goes out while a snapshot file is written, and the crash
/// leaves it half-written on disk: on a follower receiving a snapshot,
/// then on a leader building one (both at the sync of the first CF file,
/// which holds the data). The torn file must never be applied or sent:
/// the restarted store removes it, keeps its data as it was, gets (or
/// builds) a fresh snapshot and catches up.
#[test]
fn crash_leaves_a_torn_snapshot_file_2c() {
    use tinykv_sim::{FsCrash, SnapshotIo};
    test("crash_leaves_a_torn_snapshot_file_2c").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            let keys = write_past_the_cut(c, 2, "r0 ", 2 * GC_LIMIT, "k")?;
            c.crash_in_snapshot_io(2, SnapshotIo::Receive, 1, FsCrash::Tear);
            c.net.heal();
            wait_for_planned_crash(c, 2, "while receiving snapshot")?;
            if let Some(fs) = c.snap_fs(2)
                && fs.stats().torn_files == 0
            {
                return Err("store 2's crash left no torn snapshot file".into());
            }
            let delivered = restart_counting_snapshots(c, 2);
            if faults_with(c, "store 2 removed").is_empty() {
                return Err("store 2 restarted and kept the torn snapshot file".into());
            }
            let on_disk = c.snaps(2).map(|s| s.list()).transpose().map_err(|e| e.to_string())?;
            if on_disk.as_ref().is_some_and(|l| !l.is_empty())
                || region_state(c, 2) != PeerState::Normal
            {
                return Err(format!(
                    "store 2 restarted with snapshots {on_disk:?} on disk and its region {:?}: \
                     it must not keep a snapshot it never received whole",
                    region_state(c, 2)
                ));
            }
            heal_and_catch_up(c, 2)?;
            if c.snapshot_stats.delivered == delivered {
                return Err("store 2 caught up without a fresh snapshot".into());
            }
            check_acknowledged(c, &keys)?;

            let (keys, leader) = write_while_down(c, 3, "r1 ", 2 * GC_LIMIT)?;
            c.crash_in_snapshot_io(leader, SnapshotIo::Build, 1, FsCrash::Tear);
            c.restart_store(3);
            wait_for_planned_crash(c, leader, "in the middle of GenSnapshot")?;
            if let Some(fs) = c.snap_fs(leader)
                && fs.stats().torn_files == 0
            {
                return Err(format!("store {leader}'s crash left no torn snapshot file"));
            }
            c.restart_store(leader);
            if faults_with(c, &format!("store {leader} removed")).is_empty() {
                return Err(format!("store {leader} restarted and kept the torn snapshot file"));
            }
            wait_until_all_agree(c)?;
            check_acknowledged(c, &keys)
        },
    );
}
