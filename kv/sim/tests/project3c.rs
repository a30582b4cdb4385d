//! Lab 3c, end to end: the real scheduler runs a simulated cluster.
//!
//! The stores of these clusters report to [`RaftCluster`], the scheduler
//! of lab 3c, over the simulated network. Nobody asks for operators: the
//! scheduler's own replica checker and balance schedulers choose them from
//! the heartbeats, and the stores carry them out while clients write,
//! read and scan. Every history is checked for linearizability.
//!
//! Run with `make project3c` (with the other lab 3c tests) or
//! `cargo test -p tinykv-sim --test project3c`; a failure prints its seed
//! and the replay command.

use std::collections::BTreeMap;

use tinykv_proto::metapb::Region;
use tinykv_sim::suite::SimTest;
use tinykv_sim::workload::{self, Workload};
use tinykv_sim::{Cluster, ClusterConfig, MS, RaftCluster, SEC, ScheduleConfig, SchedulerChoice};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// How long a silent store may stay in the regions it holds.
const DOWN_TIME_MS: u64 = 10_000;

fn test(name: &'static str) -> SimTest {
    SimTest::new(name, "3c", TMP)
}

/// The real scheduler with settings for virtual time: it schedules every
/// 200 ms, and a store silent for 10 s is down.
fn real_scheduler(mut cfg: ClusterConfig) -> ClusterConfig {
    cfg.scheduler = SchedulerChoice::Real(ScheduleConfig {
        max_store_down_time_ms: DOWN_TIME_MS,
        schedule_interval_ms: 200,
        operator_timeout_ms: 30_000,
        ..ScheduleConfig::default()
    });
    // Small regions: a few dozen writes split one.
    cfg.store.region_max_size = 1200;
    cfg.store.region_split_size = 600;
    cfg.store.split_region_check_tick_interval = 5;
    cfg
}

fn pd(c: &Cluster) -> &RaftCluster {
    c.pd.as_ref().expect("these tests run the real scheduler")
}

fn describe(r: &Region) -> String {
    let show = tinykv_sim::history::show;
    let end = if r.end_key.is_empty() { "+inf".to_string() } else { show(&r.end_key) };
    let e = r.region_epoch.unwrap_or_default();
    let peers: Vec<String> = r.peers.iter().map(|p| format!("{}@s{}", p.id, p.store_id)).collect();
    format!(
        "region {} [{}, {end}) conf_ver {} version {} peers [{}]",
        r.id,
        show(&r.start_key),
        e.conf_ver,
        e.version,
        peers.join(", ")
    )
}

/// The regions the scheduler knows, in key order.
fn regions(c: &Cluster) -> Vec<Region> {
    pd(c).basic().regions.iter().map(|r| r.region.clone()).collect()
}

/// How many regions each store holds a peer of, as the scheduler counts.
fn region_counts(c: &Cluster) -> BTreeMap<u64, usize> {
    pd(c).basic().stores.values().map(|s| (s.id(), s.region_count)).collect()
}

/// Why the cluster is not settled, if it is not: the scheduler's regions
/// must tile the key space, each with `replicas` peers on stores in
/// `live`, a leader, and every member store holding the same range and
/// epoch, with no operator running.
fn unsettled(c: &Cluster, replicas: usize, live: &[u64]) -> Option<String> {
    let gaps = pd(c).basic().regions.gaps();
    if !gaps.is_empty() {
        return Some(format!("no region covers {gaps:?}"));
    }
    if let Some(op) = pd(c).operators().running().next() {
        return Some(format!("an operator is still running: {op}"));
    }
    for r in regions(c) {
        if r.peers.len() != replicas {
            return Some(format!("{} has {} peers, not {replicas}", describe(&r), r.peers.len()));
        }
        if let Some(p) = r.peers.iter().find(|p| !live.contains(&p.store_id)) {
            return Some(format!(
                "{} has a peer on store {}, which is down",
                describe(&r),
                p.store_id
            ));
        }
        if c.leader_of(r.id).is_none() {
            return Some(format!("{} has no leader", describe(&r)));
        }
        for p in &r.peers {
            let held = c.store(p.store_id).and_then(|s| s.peer(r.id)).map(|p| p.region().clone());
            match held {
                Some(h) if h.region_epoch == r.region_epoch && h.start_key == r.start_key => {}
                Some(h) => {
                    return Some(format!(
                        "store {} holds {} of {}",
                        p.store_id,
                        describe(&h),
                        describe(&r)
                    ));
                }
                None => {
                    return Some(format!("store {} has no peer of {}", p.store_id, describe(&r)));
                }
            }
        }
    }
    None
}

/// Runs until [`unsettled`] finds nothing; fails naming the last problem
/// after `deadline_us`.
fn settle(c: &mut Cluster, replicas: usize, live: &[u64], deadline_us: u64) -> Result<(), String> {
    let until = c.now() + deadline_us;
    loop {
        let Some(problem) = unsettled(c, replicas, live) else { return Ok(()) };
        if c.now() > until {
            let ops = pd(c).operators();
            let recent: Vec<String> = ops
                .history()
                .rev()
                .take(12)
                .map(|(op, outcome, at)| format!("at {at} ms {outcome:?}: {op}"))
                .collect();
            return Err(format!(
                "the cluster did not settle within {} s: {problem}\nregion counts by store: {:?}\n\
                 the last operators that ended:\n  {}\nthe scheduler knows:\n  {}",
                deadline_us / SEC,
                region_counts(c),
                recent.join("\n  "),
                regions(c).iter().map(describe).collect::<Vec<_>>().join("\n  ")
            ));
        }
        c.run_for(100 * MS);
    }
}

/// Five clients write for three rounds: each run takes client ids above
/// the ones before (see [`Workload::first_client`]).
fn write(c: &mut Cluster, clients: u64) -> Result<workload::RunStats, String> {
    let first_client = c.clients_started() + 1;
    workload::run(c, &Workload { first_client, ..Workload::new(clients) })
}

/// Clients write until the first region has split into at least `min`.
fn write_until_split(c: &mut Cluster, min: usize) -> Result<(), String> {
    for _ in 0..6 {
        let stats = write(c, 5)?;
        if stats.appends < 20 {
            return Err(format!("only {} appends got through: {stats:?}", stats.appends));
        }
        if regions(c).len() >= min {
            return Ok(());
        }
    }
    Err(format!("only {} regions after six workloads; expected {min}", regions(c).len()))
}

/// The region counts differ by at most 2 plus a tenth of the mean between
/// any two of `stores`. (Balance-region evens out *sizes*, to within twice
/// a region's size; regions here hold 100 to 1200 bytes, so the counts
/// can differ a little more than the sizes allow.)
fn check_even(c: &Cluster, stores: &[u64]) -> Result<(), String> {
    let counts = region_counts(c);
    let of = |s: &u64| counts.get(s).copied().unwrap_or(0);
    let (min, max) = (stores.iter().map(of).min(), stores.iter().map(of).max());
    let (Some(min), Some(max)) = (min, max) else { return Err("no stores".into()) };
    let mean = stores.iter().map(of).sum::<usize>() / stores.len();
    let tolerance = 2 + mean / 10;
    if max - min > tolerance {
        return Err(format!(
            "region counts are not even: {counts:?} (largest {max}, smallest {min}, allowed \
             difference {tolerance}); {} regions",
            regions(c).len()
        ));
    }
    Ok(())
}

/// Three stores hold the data and split it into regions; two empty stores
/// join. Balance-region moves replicas to them while clients keep
/// writing, until the region counts differ by at most 2 plus a tenth of
/// the mean between any two stores (the size rule stops a move that would
/// only make the target the fuller store). Then every region has 3 replicas and a leader, and the whole
/// history is linearizable.
#[test]
fn balance_region_fills_new_stores_3c() {
    test("balance_region_fills_new_stores_3c").run(3, real_scheduler, |c| {
        write_until_split(c, 8)?;
        settle(c, 3, &[1, 2, 3], 30 * SEC)?;
        let new = [c.add_store(), c.add_store()];
        let stats = write(c, 5)?;
        if stats.appends < 20 {
            return Err(format!("only {} appends got through: {stats:?}", stats.appends));
        }
        let all = [1, 2, 3, new[0], new[1]];
        settle(c, 3, &all, 60 * SEC)?;
        for s in new {
            if region_counts(c).get(&s).copied().unwrap_or(0) == 0 {
                return Err(format!("new store {s} got no region: {:?}", region_counts(c)));
            }
        }
        check_even(c, &all)?;
        eprintln!("{} regions; region counts {:?}", regions(c).len(), region_counts(c));
        Ok(())
    });
}

/// Five stores, regions spread over them; one store crashes for good.
/// Once it has been silent longer than `max_store_down_time`, the replica
/// checker gives each of its regions a new replica on a live store and
/// then removes the dead one: every region ends with 3 peers, all on live
/// stores, each with a leader, while the data stays readable.
#[test]
fn regions_of_a_dead_store_regain_three_replicas_3c() {
    let configure =
        |cfg: ClusterConfig| ClusterConfig { first_region_stores: 3, ..real_scheduler(cfg) };
    test("regions_of_a_dead_store_regain_three_replicas_3c").run(5, configure, |c| {
        write_until_split(c, 6)?;
        settle(c, 3, &[1, 2, 3, 4, 5], 60 * SEC)?;
        let counts = region_counts(c);
        let (&dead, _) = counts.iter().max_by_key(|&(id, n)| (*n, std::cmp::Reverse(*id))).unwrap();
        c.kill_store(dead);
        let live: Vec<u64> = (1..=5).filter(|&s| s != dead).collect();
        let stats = write(c, 3)?;
        if stats.appends < 10 {
            return Err(format!("only {} appends got through: {stats:?}", stats.appends));
        }
        settle(c, 3, &live, (DOWN_TIME_MS * MS) + 60 * SEC)?;
        eprintln!(
            "store {dead} died; {} regions; region counts {:?}",
            regions(c).len(),
            region_counts(c)
        );
        Ok(())
    });
}

/// The scheduler restarts while clients write and regions split. It comes
/// back with the stores and regions it saved; heartbeats fill in leaders
/// and sizes again, splits go on with ids it never handed out before,
/// and the cluster settles.
#[test]
fn the_scheduler_restarts_and_the_cluster_goes_on_3c() {
    test("the_scheduler_restarts_and_the_cluster_goes_on_3c").run(3, real_scheduler, |c| {
        write_until_split(c, 4)?;
        let before = regions(c).len();
        let highest_id = |c: &Cluster| {
            regions(c).iter().flat_map(|r| r.peers.iter().map(|p| p.id).chain([r.id])).max()
        };
        let highest = highest_id(c).unwrap_or(0);
        c.restart_scheduler();
        if regions(c).len() != before {
            return Err(format!(
                "the scheduler knew {before} regions before its restart and {} after",
                regions(c).len()
            ));
        }
        write_until_split(c, before + 2)?;
        settle(c, 3, &[1, 2, 3], 30 * SEC)?;
        let new_ids: Vec<u64> = regions(c)
            .iter()
            .flat_map(|r| r.peers.iter().map(|p| p.id).chain([r.id]))
            .filter(|&id| id > highest)
            .collect();
        if new_ids.is_empty() {
            return Err(format!("no region or peer id above {highest} after the restart"));
        }
        let mut ids: Vec<u64> = regions(c).iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != regions(c).len() {
            return Err("two regions share an id".into());
        }
        Ok(())
    });
}
