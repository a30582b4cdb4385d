//! The generic workload: clients × duration × faults × restarts, in
//! virtual time, and the checks of what the clients saw.
//!
//! Each client repeatedly, with no think time:
//!
//! - appends: puts the next key of its own (`c03 00000017`) with a value
//!   naming client and sequence number (`x 3 17 y`);
//! - scans its own keys and checks it sees exactly the values it has
//!   appended, in order (TinyKV's check);
//! - puts or gets one of a few keys every client shares, so that the
//!   history has concurrent writers and readers of one key for the
//!   linearizability checker;
//! - gets a random key another client appended.
//!
//! A run is a number of rounds. During a round the chosen faults play
//! (random partitions; random crashes; from lab 3b, random membership
//! changes and leader transfers asked of the scheduler; an unreliable
//! network is set in the cluster's config). At its end the faults heal, every client finishes the
//! operation it has in flight, and, for the `crash` workloads, every store
//! crashes (losing its unsynced writes) and restarts. Then every client
//! scans its keys and checks them. After the last round, the whole history
//! goes through the linearizability checker.

use std::collections::BTreeSet;

use crate::cluster::{Cluster, EngineSide, MS, SEC};
use crate::history::{OpKind, OpResult, show};

/// What a generic test does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Concurrent clients.
    pub clients: u64,
    /// Rounds.
    pub rounds: u32,
    /// Virtual length of a round.
    pub round_us: u64,
    /// Random partitions during rounds.
    pub partitions: bool,
    /// Crash and restart every store between rounds.
    pub crash: bool,
    /// Keys every client writes and reads.
    pub shared_keys: u32,
    /// Lab 2c: the most applied entries a peer's log may hold (applied −
    /// truncated index), checked after every event; `None`: unchecked.
    pub max_log_gap: Option<u64>,
    /// Lab 2c: during rounds, cut a random store's power at a random
    /// upcoming write (to its kv or raft engine, whatever makes it:
    /// persisting, applying, a snapshot task, log GC), and restart it a
    /// little later.
    pub random_crashes: bool,
    /// Lab 3b: during rounds, ask the scheduler every few hundred
    /// milliseconds to remove the peer of a random store (if it has one
    /// and is not the last), add one (if it has none), or move the
    /// leadership to a random member.
    pub conf_changes: bool,
    /// The first client's id (the others follow): a second run on the
    /// same cluster takes ids above the first run's, so its clients' keys
    /// are fresh.
    pub first_client: u64,
}

impl Workload {
    /// `clients` clients for 3 rounds of 1 s, no faults.
    pub fn new(clients: u64) -> Workload {
        Workload {
            clients,
            rounds: 3,
            round_us: SEC,
            partitions: false,
            crash: false,
            shared_keys: 3,
            max_log_gap: None,
            random_crashes: false,
            conf_changes: false,
            first_client: 1,
        }
    }
}

/// What a run did, for the test's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Operations that completed.
    pub ops: u64,
    /// Appends acknowledged.
    pub appends: u64,
    /// Partitions started.
    pub partitions: u64,
    /// The largest applied − truncated index seen on any peer.
    pub max_log_gap: u64,
    /// Crashes at random writes that happened.
    pub random_crashes: u64,
    /// Conf changes and leader transfers the scheduler accepted.
    pub operators: u64,
}

/// The key of client `client`'s `seq`-th append.
pub fn append_key(client: u64, seq: u64) -> Vec<u8> {
    format!("c{client:02} {seq:08}").into_bytes()
}

/// The value of client `client`'s `seq`-th append.
pub fn append_value(client: u64, seq: u64) -> Vec<u8> {
    format!("x {client} {seq} y").into_bytes()
}

/// The scan covering exactly client `client`'s appended keys.
pub fn client_range(client: u64) -> (Vec<u8>, Vec<u8>) {
    (format!("c{client:02} ").into_bytes(), format!("c{client:02}!").into_bytes())
}

fn shared_key(i: u32) -> Vec<u8> {
    format!("shared {i}").into_bytes()
}

struct ClientState {
    /// Appends acknowledged so far.
    appended: u64,
    /// Writes to shared keys so far (for unique values).
    writes: u64,
    /// The op in flight, to check its answer: a scan of its own keys
    /// expects this many values.
    expect_scan: Option<u64>,
    /// The append in flight.
    appending: bool,
    /// The call time of the last finished operation already checked.
    reported: Option<u64>,
}

/// Runs `w` on `cluster` and checks it; `Err` says what went wrong
/// (the caller adds the seed and writes the report).
///
/// # Errors
///
/// A message naming the check that failed and the operations involved.
pub fn run(cluster: &mut Cluster, w: &Workload) -> Result<RunStats, String> {
    let mut stats = RunStats::default();
    let mut clients: Vec<ClientState> = (0..w.clients)
        .map(|_| ClientState {
            appended: 0,
            writes: 0,
            expect_scan: None,
            appending: false,
            reported: None,
        })
        .collect();
    for round in 0..w.rounds {
        cluster.fault(format!("round {} starts", round + 1));
        let end = cluster.now() + w.round_us;
        let mut next_partition = cluster.now() + 100 * MS;
        let mut next_crash = cluster.now() + 150 * MS;
        let mut next_restart_check = cluster.now();
        let mut next_operator = cluster.now() + 50 * MS;
        // Run the round: clients go on until its end.
        while cluster.now() < end {
            for (i, st) in clients.iter_mut().enumerate() {
                let id = w.first_client + i as u64;
                if cluster.op_done(id) {
                    finish(cluster, id, st, &mut stats)?;
                    start_next(cluster, id, st, w);
                }
            }
            if w.partitions && cluster.now() >= next_partition {
                random_partition(cluster);
                stats.partitions += 1;
                next_partition = cluster.now() + 200 * MS + cluster.rng().next_u64() % (600 * MS);
            }
            if w.random_crashes && cluster.now() >= next_crash {
                arm_random_crash(cluster);
                next_crash = cluster.now() + 200 * MS + cluster.rng().next_u64() % (500 * MS);
            }
            if w.conf_changes && cluster.now() >= next_operator {
                stats.operators += u64::from(random_operator(cluster));
                next_operator = cluster.now() + 100 * MS + cluster.rng().next_u64() % (300 * MS);
            }
            if w.random_crashes && cluster.now() >= next_restart_check {
                for id in cluster.store_ids() {
                    if !cluster.is_up(id) {
                        stats.random_crashes += 1;
                        cluster.restart_store(id);
                    }
                }
                next_restart_check = cluster.now() + 100 * MS;
            }
            if !cluster.step() {
                break;
            }
            check_log_gap(cluster, w, &mut stats)?;
        }
        // Restart what crashed, heal, and let every client finish what it
        // has in flight.
        for id in cluster.store_ids() {
            if !cluster.is_up(id) {
                stats.random_crashes += 1;
                cluster.restart_store(id);
            }
        }
        if cluster.net.groups().is_some() {
            cluster.net.heal();
            cluster.fault("partitions healed".into());
        }
        let deadline = cluster.now() + 30 * SEC;
        for (i, st) in clients.iter_mut().enumerate() {
            let id = w.first_client + i as u64;
            while !cluster.op_done(id) {
                check_log_gap(cluster, w, &mut stats)?;
                // A crash armed during the round may still strike: bring
                // the store back (a two-peer region needs both).
                if w.random_crashes {
                    for store in cluster.store_ids() {
                        if !cluster.is_up(store) {
                            stats.random_crashes += 1;
                            cluster.restart_store(store);
                        }
                    }
                }
                if cluster.now() > deadline || !cluster.step() {
                    let op = cluster.history.ops.iter().rev().find(|o| o.client == id);
                    let what = op.map_or("operation".into(), |o| o.kind.to_string());
                    return Err(format!(
                        "client {id}'s {what} (its last operation of round {}) did not finish \
                         within 30 s of virtual time after the faults healed",
                        round + 1
                    ));
                }
            }
            finish(cluster, id, st, &mut stats)?;
        }
        if w.crash {
            for id in cluster.store_ids() {
                cluster.crash_store(id);
            }
            for id in cluster.store_ids() {
                cluster.restart_store(id);
            }
        }
        // Every client sees exactly its acknowledged appends, in order.
        for (i, st) in clients.iter_mut().enumerate() {
            let id = w.first_client + i as u64;
            let (start, end) = client_range(id);
            let got = cluster.run_op(id, OpKind::Scan { start, end }, 30 * SEC);
            check_appends(id, st.appended, &got)
                .map_err(|e| format!("after round {}: {e}", round + 1))?;
        }
    }
    Ok(stats)
}

/// Lab 2c: no peer's log holds more than `w.max_log_gap` applied entries.
fn check_log_gap(cluster: &Cluster, w: &Workload, stats: &mut RunStats) -> Result<(), String> {
    let (gap, store) = cluster.max_log_gap();
    stats.max_log_gap = stats.max_log_gap.max(gap);
    match w.max_log_gap {
        Some(max) if gap > max => Err(format!(
            "store {store}'s log holds {gap} applied entries (applied − truncated index), more \
             than {max}: the log is not being compacted"
        )),
        _ => Ok(()),
    }
}

/// Checks the answer of `client`'s finished operation, if any.
fn finish(
    cluster: &mut Cluster,
    client: u64,
    st: &mut ClientState,
    stats: &mut RunStats,
) -> Result<(), String> {
    let Some(op) = cluster.last_done(client) else { return Ok(()) };
    if st.reported == Some(op.call_us) {
        return Ok(());
    }
    st.reported = Some(op.call_us);
    if st.appending {
        st.appending = false;
        st.appended += 1;
        stats.appends += 1;
    }
    if let Some(expected) = st.expect_scan.take() {
        let result = op.result.clone().unwrap_or(OpResult::Done);
        check_appends(client, expected, &result)?;
    }
    stats.ops += 1;
    Ok(())
}

fn start_next(cluster: &mut Cluster, client: u64, st: &mut ClientState, w: &Workload) {
    let roll = cluster.rng().range(0, 100);
    let kind = match roll {
        0..=39 => {
            st.appending = true;
            OpKind::Put {
                key: append_key(client, st.appended),
                value: append_value(client, st.appended),
            }
        }
        40..=54 => {
            st.expect_scan = Some(st.appended);
            let (start, end) = client_range(client);
            OpKind::Scan { start, end }
        }
        55..=74 if w.shared_keys > 0 => {
            st.writes += 1;
            let key = shared_key(cluster.rng().range(0, w.shared_keys as usize) as u32);
            OpKind::Put { key, value: format!("c{client} w{}", st.writes).into_bytes() }
        }
        75..=89 if w.shared_keys > 0 => {
            OpKind::Get { key: shared_key(cluster.rng().range(0, w.shared_keys as usize) as u32) }
        }
        _ => {
            let other = cluster.rng().range(1, w.clients as usize + 1) as u64;
            let seq = cluster.rng().range(0, 20) as u64;
            OpKind::Get { key: append_key(other, seq) }
        }
    };
    cluster.start_op(client, kind);
}

/// Asks the scheduler for a random operator on a random region it knows:
/// remove the peer of a random store, add one there, or (one time in
/// three) move the leadership to a random member. True if the scheduler
/// took it (it refuses while a conf change is in flight).
fn random_operator(cluster: &mut Cluster) -> bool {
    let regions: Vec<u64> = cluster.scheduler.regions().map(|r| r.id).collect();
    if regions.is_empty() {
        return false;
    }
    let region = regions[cluster.rng().range(0, regions.len())];
    let ids = cluster.store_ids();
    let store = ids[cluster.rng().range(0, ids.len())];
    let transfer = cluster.rng().range(0, 3) == 0;
    let Some(known) = cluster.scheduler.region(region) else { return false };
    let is_member = known.peers.iter().any(|p| p.store_id == store);
    let last = known.peers.len() == 1;
    match (transfer, is_member) {
        (true, true) => cluster.ask_transfer_leader(region, store).is_ok(),
        (true, false) => false,
        (false, true) if last => false,
        (false, true) => cluster.ask_remove_peer(region, store).is_ok_and(|pending| pending),
        (false, false) => cluster.ask_add_peer(region, store).is_ok_and(|p| p.is_some()),
    }
}

/// Plans a crash of a random store at one of its next writes.
fn arm_random_crash(cluster: &mut Cluster) {
    let ids = cluster.store_ids();
    let id = ids[cluster.rng().range(0, ids.len())];
    let side = if cluster.rng().range(0, 2) == 0 { EngineSide::Kv } else { EngineSide::Raft };
    let n = cluster.rng().range(1, 40) as u64;
    cluster.crash_at_write(id, side, n);
}

/// A random partition: the stores split into two sides (the leader's side
/// is not always the majority).
fn random_partition(cluster: &mut Cluster) {
    let ids = cluster.store_ids();
    let mut side: BTreeSet<u64> = BTreeSet::new();
    for &id in &ids {
        if cluster.rng().range(0, 2) == 0 {
            side.insert(id);
        }
    }
    let other: BTreeSet<u64> = ids.iter().copied().filter(|id| !side.contains(id)).collect();
    cluster.fault(format!("partition {side:?} | {other:?}"));
    cluster.net.partition(vec![side, other]);
}

/// TinyKV's check: a scan of `client`'s keys holds exactly its first
/// `expected` appends, each once, in order.
///
/// # Errors
///
/// What is missing, extra, duplicated or out of order.
pub fn check_appends(client: u64, expected: u64, got: &OpResult) -> Result<(), String> {
    let OpResult::Rows(rows) = got else {
        return Err(format!("client {client}'s scan returned {got:?}, not rows"));
    };
    for (seq, (key, value)) in rows.iter().enumerate() {
        let seq = seq as u64;
        if seq >= expected {
            return Err(format!(
                "client {client} appended {expected} values, but its scan shows more: \
                 {}={} (a write applied twice, or one never acknowledged)",
                show(key),
                show(value)
            ));
        }
        if *key != append_key(client, seq) || *value != append_value(client, seq) {
            return Err(format!(
                "client {client}'s append {seq} should be {}={}, the scan shows {}={} \
                 (an acknowledged append lost, duplicated or out of order)",
                show(&append_key(client, seq)),
                show(&append_value(client, seq)),
                show(key),
                show(value)
            ));
        }
    }
    if (rows.len() as u64) < expected {
        let missing = rows.len() as u64;
        return Err(format!(
            "client {client} appended {expected} values and had them acknowledged, but its \
             scan shows only {missing}: {}={} is lost",
            show(&append_key(client, missing)),
            show(&append_value(client, missing))
        ));
    }
    Ok(())
}
