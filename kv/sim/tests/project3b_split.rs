//! Lab 3b, part 2: region split, routing by key, and linearizability
//! across splits, in simulated clusters (virtual time).
//!
//! The stores run with a tiny `region_max_size`, so a few hundred bytes of
//! writes split a region. Leaders find split keys themselves (split
//! checks), get the new region's ids from the mock scheduler (`AskSplit`)
//! and propose the split; the mock scheduler checks every heartbeat
//! (epochs never go back, no two regions with one version share a key)
//! and a breach fails the test. Clients find a key's region in their
//! region cache, ask the scheduler on a miss, and refresh from
//! `epoch_not_match`/`key_not_in_region`; a scan goes region by region.
//! Every test's history is checked for linearizability.
//!
//! Replay a failure with the command it prints (`make project3b TEST=…
//! SEED=…`); the report is under `target/tmp/sim-reports/`.

use std::collections::BTreeMap;

use tinykv_engine::Cf;
use tinykv_proto::metapb::Region;
use tinykv_proto::schedulerpb::AskSplitRequest;
use tinykv_raftstore::error::response_error;
use tinykv_raftstore::split_check::split_command;
use tinykv_sim::history::OpKind;
use tinykv_sim::suite::SimTest;
use tinykv_sim::workload::{self, Workload};
use tinykv_sim::{Cluster, ClusterConfig, EngineSide, FIRST_REGION, MS, NetConfig, SEC};
use tinykv_transaction::codec::encode_key;

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

fn test(name: &'static str) -> SimTest {
    SimTest::new(name, "3b", TMP)
}

/// Regions split above `max` bytes, after about `split` bytes; split
/// checks every 5 ticks.
fn small_regions(mut cfg: ClusterConfig, max: u64, split: u64) -> ClusterConfig {
    cfg.store.region_max_size = max;
    cfg.store.region_split_size = split;
    cfg.store.split_region_check_tick_interval = 5;
    cfg
}

fn show(key: &[u8]) -> String {
    tinykv_sim::history::show(key)
}

fn describe(r: &Region) -> String {
    let end = if r.end_key.is_empty() { "+inf".to_string() } else { show(&r.end_key) };
    let v = r.region_epoch.map_or(0, |e| e.version);
    format!("region {} [{}, {end}) v{v}", r.id, show(&r.start_key))
}

/// The regions the scheduler knows, in key order.
fn regions(c: &Cluster) -> Vec<Region> {
    c.scheduler.regions().cloned().collect()
}

/// Runs until the scheduler's regions tile the key space, every one of
/// them has a leader, and every store holding a peer of one agrees with it
/// (same range and epoch) and has applied as far as its leader; fails
/// naming what is missing after `deadline_us`.
fn settle(c: &mut Cluster, deadline_us: u64) -> Result<Vec<Region>, String> {
    let until = c.now() + deadline_us;
    loop {
        let problem = unsettled(c);
        let Some(problem) = problem else { return Ok(regions(c)) };
        if c.now() > until {
            return Err(format!(
                "the regions did not settle within {}ms: {problem}; the scheduler knows {}",
                deadline_us / MS,
                regions(c).iter().map(describe).collect::<Vec<_>>().join(", ")
            ));
        }
        c.run_for(20 * MS);
    }
}

fn unsettled(c: &Cluster) -> Option<String> {
    let gaps = c.scheduler.gaps();
    if !gaps.is_empty() {
        return Some(format!("no region covers {gaps:?}"));
    }
    for r in regions(c) {
        let Some(leader) = c.leader_of(r.id) else {
            return Some(format!("{} has no leader", describe(&r)));
        };
        let applied = |store: u64| {
            c.store(store).and_then(|s| s.peer(r.id)).map(|p| p.storage().applied_index())
        };
        let leader_applied = applied(leader);
        for p in &r.peers {
            let on_store = c.store(p.store_id).and_then(|s| s.peer(r.id));
            let Some(peer) = on_store else {
                return Some(format!("store {} has no peer of {}", p.store_id, describe(&r)));
            };
            if peer.region().region_epoch != r.region_epoch
                || peer.region().start_key != r.start_key
                || peer.region().end_key != r.end_key
            {
                return Some(format!(
                    "store {} (leader: store {leader}) holds {} of {}",
                    p.store_id,
                    describe(peer.region()),
                    describe(&r)
                ));
            }
            if applied(p.store_id) != leader_applied {
                return Some(format!(
                    "store {} has applied {} of {} up to {:?}, its leader (store {leader}) up to \
                     {leader_applied:?}",
                    p.store_id,
                    describe(&r),
                    peer.storage().applied_index(),
                    leader_applied
                ));
            }
        }
    }
    None
}

/// The regions tile the key space: in key order, each starts where the
/// previous one ends, the first at "" and the last unbounded.
fn check_tiling(regions: &[Region]) -> Result<(), String> {
    let mut at: Vec<u8> = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        if r.start_key != at {
            return Err(format!(
                "{} should start at {:?}, where the previous one ends",
                describe(r),
                show(&at)
            ));
        }
        if r.end_key.is_empty() && i + 1 != regions.len() {
            return Err(format!("{} is unbounded but is not the last", describe(r)));
        }
        at.clone_from(&r.end_key);
    }
    if !at.is_empty() || regions.is_empty() {
        return Err(format!("the last region ends at {:?}, not at +inf", show(&at)));
    }
    Ok(())
}

/// Cuts store `id` off from the other stores (not from clients or the
/// scheduler).
fn isolate(c: &mut Cluster, id: u64) {
    let rest = c.store_ids().into_iter().filter(|&s| s != id).collect();
    c.net.partition(vec![std::collections::BTreeSet::from([id]), rest]);
}

/// Splits `region_id` at `key` as its leader's split check would, and
/// waits until the scheduler has heard of the new region; returns its id.
fn split_at(c: &mut Cluster, region_id: u64, key: &[u8]) -> Result<u64, String> {
    let until = c.now() + 10 * SEC;
    loop {
        if let Some(new_id) = c.ask_split(region_id, key) {
            while c.scheduler.region(new_id).is_none() {
                if c.now() > until {
                    return Err(format!(
                        "region {region_id} did not split at {:?} into region {new_id} within 10s",
                        show(key)
                    ));
                }
                c.run_for(10 * MS);
            }
            return Ok(new_id);
        }
        if c.now() > until {
            return Err(format!("region {region_id} has no leader to split it"));
        }
        c.run_for(50 * MS);
    }
}

fn put(key: &[u8], value: &[u8]) -> OpKind {
    OpKind::Put { key: key.to_vec(), value: value.to_vec() }
}

/// The first store's kv engine value of `key` (raw, on disk).
fn stored(c: &Cluster, store: u64, key: &[u8]) -> Option<Vec<u8>> {
    c.kv_engine(store).get(Cf::Default, key).expect("reading the kv engine")
}

// ----- one split ---------------------------------------------------------------

/// TinyKV's one-split test: one store is cut off while 100 writes make
/// region 1 split; the two keys around the writes end in different
/// regions that tile the original range; a key outside the left region is
/// refused with `key_not_in_region`; the cut-off store gets the data
/// afterwards.
#[test]
fn one_split_3b() {
    test("one_split_3b").run(
        3,
        |cfg| small_regions(cfg, 600, 400),
        |c| {
            c.must_put(b"k1", b"v1");
            c.must_put(b"k2", b"v2");
            let before = c.scheduler.region_by_key(b"k1").cloned().ok_or("no region holds k1")?;
            let same = c.scheduler.region_by_key(b"k2").map(|r| r.id);
            if same != Some(before.id) {
                return Err(format!("k1 and k2 start in one region, not {same:?}"));
            }
            let leader = c.leader().ok_or("no leader")?;
            let cut = (1..=3).find(|&s| s != leader).expect("a follower");
            isolate(c, cut);
            c.fault(format!("store {cut} cut off"));
            for i in 100..200 {
                c.must_put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes());
            }
            c.run_for(500 * MS);
            let left = c.scheduler.region_by_key(b"k1").cloned().ok_or("no region holds k1")?;
            let right = c.scheduler.region_by_key(b"k2").cloned().ok_or("no region holds k2")?;
            if left.id == right.id {
                return Err(format!(
                    "more than 800 bytes of writes did not split region {} (max 600): {}",
                    left.id,
                    describe(&left)
                ));
            }
            if left.start_key != before.start_key || right.end_key != before.end_key {
                return Err(format!(
                    "{} and {} do not span {}",
                    describe(&left),
                    describe(&right),
                    describe(&before)
                ));
            }
            // A key of the right region, sent to the left one with its
            // current epoch.
            let l = c.leader_of(left.id).ok_or("the left region has no leader")?;
            let left_now = c.store(l).and_then(|s| s.peer(left.id)).map(|p| p.region().clone());
            let left_now = left_now.ok_or("the left region's leader lost its peer")?;
            let mut req = c.command(l, &OpKind::Get { key: b"k2".to_vec() });
            let header = req.header.as_mut().unwrap();
            header.region_id = left.id;
            header.region_epoch = left_now.region_epoch;
            header.peer = left_now.peers.iter().find(|p| p.store_id == l).copied();
            let resp = c.call(l, req, SEC).ok_or("the left region's leader did not answer")?;
            let err = response_error(&resp.resp).cloned().unwrap_or_default();
            let Some(kn) = err.key_not_in_region else {
                return Err(format!(
                    "a get of k2 in {} should be refused with key_not_in_region, got {:?}",
                    describe(&left_now),
                    resp.resp
                ));
            };
            if kn.region_id != left.id || kn.key != b"k2" {
                return Err(format!("key_not_in_region names the wrong region or key: {kn:?}"));
            }
            c.net.heal();
            c.fault("healed".into());
            let settled = settle(c, 20 * SEC)?;
            check_tiling(&settled)?;
            for (k, v) in [(&b"k100"[..], &b"v100"[..]), (b"k199", b"v199"), (b"k2", b"v2")] {
                if stored(c, cut, k).as_deref() != Some(v) {
                    return Err(format!(
                        "store {cut}, cut off during the split, should hold {}={} now",
                        show(k),
                        show(v)
                    ));
                }
            }
            if c.must_get(b"k150").as_deref() != Some(&b"v150"[..]) {
                return Err("k150 reads wrong after the split".into());
            }
            Ok(())
        },
    );
}

/// A put to a key of the new region, sent with the parent's old epoch, is
/// refused with `epoch_not_match` naming both halves, and writes nothing.
#[test]
fn stale_version_gets_both_regions_3b() {
    test("stale_version_gets_both_regions_3b").run(
        3,
        |cfg| small_regions(cfg, u64::MAX / 4, u64::MAX / 8),
        |c| {
            c.must_put(b"a", b"1");
            c.must_put(b"z", b"1");
            let before = c.scheduler.region(FIRST_REGION).cloned().ok_or("no region 1")?;
            let new_id = split_at(c, FIRST_REGION, b"m")?;
            settle(c, 10 * SEC)?;
            let l = c.leader_of(FIRST_REGION).ok_or("no leader of region 1")?;
            let mut req = c.command(l, &put(b"x", b"stale"));
            let header = req.header.as_mut().unwrap();
            header.region_id = FIRST_REGION;
            header.region_epoch = before.region_epoch;
            header.peer = before.peers.iter().find(|p| p.store_id == l).copied();
            let resp = c.call(l, req, SEC).ok_or("no answer")?;
            let err = response_error(&resp.resp).cloned().unwrap_or_default();
            let Some(stale) = err.epoch_not_match else {
                return Err(format!("a put with the pre-split epoch answered {:?}", resp.resp));
            };
            let mut ids: Vec<u64> = stale.current_regions.iter().map(|r| r.id).collect();
            ids.sort_unstable();
            if ids != vec![FIRST_REGION, new_id] {
                return Err(format!(
                    "epoch_not_match should carry regions {FIRST_REGION} and {new_id}, has {ids:?}"
                ));
            }
            if c.must_get(b"x").is_some() {
                return Err("the refused put wrote x".into());
            }
            Ok(())
        },
    );
}

/// Two splits planned on the same epoch, both in the log before either
/// applies: the first applies, the second finds the region changed (its
/// version moved) and must change nothing.
#[test]
fn a_split_planned_on_an_old_epoch_is_refused_3b() {
    test("a_split_planned_on_an_old_epoch_is_refused_3b").run(
        3,
        |cfg| small_regions(cfg, u64::MAX / 4, u64::MAX / 8),
        |c| {
            c.must_put(b"a", b"1");
            let l = c.leader().ok_or("no leader")?;
            let peer = c.store(l).and_then(|s| s.peer(FIRST_REGION)).ok_or("no peer")?;
            let (region, me) = (peer.region().clone(), peer.meta);
            let mut tokens = Vec::new();
            for key in [&b"m"[..], b"f"] {
                let req = AskSplitRequest { region: Some(region.clone()), ..Default::default() };
                let ids = c.scheduler.ask_split(req).map_err(|e| e.to_string())?;
                let cmd = split_command(&region, me, key.to_vec(), ids);
                tokens.push(c.call_async(l, cmd));
            }
            let mut answers = Vec::new();
            let until = c.now() + 5 * SEC;
            for token in tokens {
                loop {
                    if let Some(a) = c.answer(token) {
                        answers.push(a);
                        break;
                    }
                    if c.now() > until {
                        return Err("a split command was never answered".into());
                    }
                    c.run_for(5 * MS);
                }
            }
            // The two may reach the leader in either order: one applies,
            // the other must find the epoch moved.
            let errors: Vec<_> = answers.iter().map(|a| response_error(&a.resp).cloned()).collect();
            let ok = errors.iter().filter(|e| e.is_none()).count();
            let stale = errors.iter().flatten().filter(|e| e.epoch_not_match.is_some()).count();
            if (ok, stale) != (1, 1) {
                return Err(format!(
                    "of two splits planned on one epoch, one should apply and the other fail \
                     with epoch_not_match when it applies; the answers: {errors:?}"
                ));
            }
            let settled = settle(c, 10 * SEC)?;
            check_tiling(&settled)?;
            if settled.len() != 2 {
                return Err(format!(
                    "two regions expected, the scheduler knows {}",
                    settled.iter().map(describe).collect::<Vec<_>>().join(", ")
                ));
            }
            Ok(())
        },
    );
}

// ----- routing and scans -------------------------------------------------------

/// Many splits, then scans of random ranges: each returns exactly the keys
/// a `BTreeMap` model holds in that range, in order, across regions.
#[test]
fn scan_across_regions_3b() {
    test("scan_across_regions_3b").run(
        3,
        |cfg| small_regions(cfg, 600, 300),
        |c| {
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for i in 0..300u64 {
                let k = c.rng().range(0, 1000);
                let key = format!("key {k:04}").into_bytes();
                if c.rng().range(0, 5) == 0 {
                    c.must_delete(&key);
                    model.remove(&key);
                } else {
                    let value = format!("value {i}").into_bytes();
                    c.must_put(&key, &value);
                    model.insert(key, value);
                }
            }
            let settled = settle(c, 20 * SEC)?;
            check_tiling(&settled)?;
            if settled.len() < 4 {
                return Err(format!("only {} regions after 300 writes", settled.len()));
            }
            for round in 0..20 {
                let (a, b) = (c.rng().range(0, 1100), c.rng().range(0, 1100));
                let (a, b) = (a.min(b), a.max(b));
                let start = format!("key {a:04}").into_bytes();
                let end = if round == 0 { Vec::new() } else { format!("key {b:04}").into_bytes() };
                let got = c.scan(&start, &end);
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .range(start.clone()..)
                    .take_while(|(k, _)| end.is_empty() || **k < end)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if got != want {
                    return Err(format!(
                        "scan [{}, {}) over {} regions returned {} rows, the model holds {} \
                         (first difference at row {})",
                        show(&start),
                        show(&end),
                        settled.len(),
                        got.len(),
                        want.len(),
                        got.iter().zip(&want).take_while(|(g, w)| g == w).count()
                    ));
                }
            }
            Ok(())
        },
    );
}

/// Splits in a row: the regions stay non-overlapping at every heartbeat
/// (the mock scheduler fails the test otherwise) and tile the key space
/// once they settle, and every store's regions agree with the scheduler.
#[test]
fn splits_in_a_row_tile_the_key_space_3b() {
    test("splits_in_a_row_tile_the_key_space_3b").run(
        5,
        |cfg| small_regions(cfg, 400, 200),
        |c| {
            let mut settled_counts = Vec::new();
            for batch in 0..4u64 {
                for i in 0..60u64 {
                    let key = format!("{:03}", (i * 7 + batch * 13) % 400).into_bytes();
                    c.must_put(&key, b"0123456789");
                }
                let settled = settle(c, 20 * SEC)?;
                check_tiling(&settled)?;
                settled_counts.push(settled.len());
            }
            if settled_counts.last().copied().unwrap_or(0) < 5 {
                return Err(format!("too few splits: region counts {settled_counts:?}"));
            }
            let reported: u64 = regions(c)
                .iter()
                .filter_map(|r| c.scheduler.region_info(r.id))
                .map(|i| i.approximate_size)
                .sum();
            if reported == 0 {
                return Err("no region heartbeat carries an approximate size".into());
            }
            if c.scheduler.region(FIRST_REGION).is_none_or(|r| r.end_key.is_empty()) {
                return Err("region 1 should end before +inf after the splits".into());
            }
            Ok(())
        },
    );
}

/// MVCC keys (a user key followed by a timestamp, lab 4's encoding) with
/// many versions: every split falls between two user keys, so all the
/// versions of one key are in one region.
#[test]
fn split_keys_fall_between_user_keys_3b() {
    test("split_keys_fall_between_user_keys_3b").run(
        3,
        |cfg| small_regions(cfg, 500, 250),
        |c| {
            let users: Vec<Vec<u8>> = (0..8).map(|i| format!("user{i}").into_bytes()).collect();
            for ts in 1..=12u64 {
                for u in &users {
                    c.must_put(&encode_key(u, ts * 10), b"v");
                }
            }
            let settled = settle(c, 20 * SEC)?;
            check_tiling(&settled)?;
            if settled.len() < 3 {
                return Err(format!("only {} regions", settled.len()));
            }
            for u in &users {
                let holders: std::collections::BTreeSet<u64> = (1..=12u64)
                    .filter_map(|ts| c.scheduler.region_by_key(&encode_key(u, ts * 10)))
                    .map(|r| r.id)
                    .collect();
                if holders.len() != 1 {
                    return Err(format!(
                        "the versions of user key {} are in regions {holders:?}: a split cut \
                         inside one key's versions ({})",
                        show(u),
                        settled.iter().map(describe).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            Ok(())
        },
    );
}

// ----- faults around a split ---------------------------------------------------

/// A follower far behind gets a snapshot of region 1 while region 1
/// splits: it ends with both regions and their data.
#[test]
fn split_while_a_snapshot_is_in_flight_3b() {
    test("split_while_a_snapshot_is_in_flight_3b").run(
        3,
        |mut cfg| {
            cfg.store.raft_log_gc_count_limit = 10;
            cfg.store.raft_log_gc_tick_interval = 1;
            small_regions(cfg, u64::MAX / 4, u64::MAX / 8)
        },
        |c| {
            c.must_put(b"k00", b"v0");
            let leader = c.leader().ok_or("no leader")?;
            let lagging = (1..=3).find(|&s| s != leader).expect("a follower");
            isolate(c, lagging);
            c.fault(format!("store {lagging} cut off"));
            for i in 0..60u64 {
                c.must_put(format!("k{i:02}").as_bytes(), format!("v{i}").as_bytes());
            }
            c.run_for(200 * MS);
            let sent = c.snapshot_stats.sent;
            c.net.heal();
            c.fault("healed".into());
            // As soon as a snapshot is on its way, split.
            let until = c.now() + 5 * SEC;
            while c.snapshot_stats.sent == sent && c.now() < until {
                c.step();
            }
            if c.snapshot_stats.sent == sent {
                return Err(format!("no snapshot was sent to store {lagging}"));
            }
            split_at(c, FIRST_REGION, b"k30")?;
            let settled = settle(c, 20 * SEC)?;
            check_tiling(&settled)?;
            if settled.len() != 2 {
                return Err(format!("expected 2 regions, the scheduler knows {}", settled.len()));
            }
            for i in [0u64, 29, 30, 59] {
                let key = format!("k{i:02}");
                if stored(c, lagging, key.as_bytes()) != Some(format!("v{i}").into_bytes()) {
                    return Err(format!("store {lagging} should hold {key} after catching up"));
                }
            }
            c.must_put(b"k45", b"after");
            if c.must_get(b"k45").as_deref() != Some(&b"after"[..]) {
                return Err("the new region does not serve writes".into());
            }
            Ok(())
        },
    );
}

/// The leader crashes after it proposed a split and before it applied it
/// (at its next kv write); after the restart the split applies exactly
/// once and nothing is lost.
#[test]
fn crash_between_proposing_and_applying_a_split_3b() {
    test("crash_between_proposing_and_applying_a_split_3b").run(
        3,
        |cfg| small_regions(cfg, u64::MAX / 4, u64::MAX / 8),
        |c| {
            for i in 0..20u64 {
                c.must_put(format!("k{i:02}").as_bytes(), b"v");
            }
            let leader = c.leader().ok_or("no leader")?;
            c.ask_split(FIRST_REGION, b"k10").ok_or("the split was not asked")?;
            c.crash_at_write(leader, EngineSide::Kv, 1);
            let until = c.now() + 5 * SEC;
            while c.is_up(leader) && c.now() < until {
                c.step();
            }
            if c.is_up(leader) {
                return Err(format!("store {leader} never wrote to its kv engine"));
            }
            c.run_for(300 * MS);
            c.restart_store(leader);
            let settled = settle(c, 20 * SEC)?;
            check_tiling(&settled)?;
            if settled.len() != 2 {
                return Err(format!("expected 2 regions, the scheduler knows {}", settled.len()));
            }
            for i in 0..20u64 {
                let key = format!("k{i:02}");
                if c.must_get(key.as_bytes()).as_deref() != Some(&b"v"[..]) {
                    return Err(format!("{key} was lost across the crash"));
                }
            }
            if c.scheduler.splits_asked() > 3 {
                return Err(format!("{} splits asked for one", c.scheduler.splits_asked()));
            }
            Ok(())
        },
    );
}

/// Same seed, same run: two runs with splits have the same digest.
#[test]
fn same_seed_same_split_run_3b() {
    let run = || {
        test("same_seed_same_split_run_3b").run(
            3,
            |cfg| small_regions(cfg, 600, 300),
            |c| {
                let w = Workload { rounds: 1, ..Workload::new(3) };
                workload::run(c, &w).map(drop)
            },
        )
    };
    let (a, b) = (run(), run());
    assert!(a.scheduler.regions().count() > 1, "the run did not split (seed {})", a.seed());
    assert_eq!(a.digest(), b.digest(), "two runs of seed {} differ", a.seed());
}

// ----- generic ---------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct Faults {
    crash: bool,
    unreliable: bool,
    partitions: bool,
    conf_changes: bool,
    snapshots: bool,
}

/// The generic workload with small regions: they split all the time, and
/// the whole history must stay linearizable.
fn generic(name: &'static str, clients: u64, f: Faults) {
    test(name).run(
        5,
        |cfg: ClusterConfig| {
            let mut cfg = small_regions(cfg, 1200, 600);
            if f.unreliable {
                cfg.net = NetConfig::unreliable();
            }
            if f.snapshots {
                cfg.store.raft_log_gc_count_limit = 20;
                cfg.store.raft_log_gc_tick_interval = 1;
            }
            cfg
        },
        |c| {
            let mut w = Workload::new(clients);
            w.crash = f.crash;
            w.random_crashes = f.crash;
            w.partitions = f.partitions;
            w.conf_changes = f.conf_changes;
            if f.snapshots {
                w.max_log_gap = Some(200);
            }
            let stats = workload::run(c, &w)?;
            if stats.appends < 20 {
                return Err(format!("only {} appends got through: {stats:?}", stats.appends));
            }
            let settled = settle(c, 30 * SEC)?;
            check_tiling(&settled)?;
            eprintln!(
                "{name}: {stats:?}; {} regions, {} splits asked, {} replaced",
                settled.len(),
                c.scheduler.splits_asked(),
                c.scheduler.regions_replaced()
            );
            if settled.len() < 2 {
                return Err(format!("no region split ({stats:?})"));
            }
            if c.scheduler.region(FIRST_REGION).is_none_or(|r| r.end_key.is_empty()) {
                return Err("region 1 should end before +inf after the splits".into());
            }
            Ok(())
        },
    );
}

#[test]
fn split_basic_3b() {
    generic("split_basic_3b", 1, Faults::default());
}

#[test]
fn split_recover_3b() {
    generic("split_recover_3b", 1, Faults { crash: true, ..Faults::default() });
}

#[test]
fn split_recover_many_clients_3b() {
    generic("split_recover_many_clients_3b", 20, Faults { crash: true, ..Faults::default() });
}

#[test]
fn split_unreliable_3b() {
    generic("split_unreliable_3b", 5, Faults { unreliable: true, ..Faults::default() });
}

#[test]
fn split_unreliable_recover_3b() {
    let f = Faults { unreliable: true, crash: true, ..Faults::default() };
    generic("split_unreliable_recover_3b", 5, f);
}

#[test]
fn split_conf_change_snapshot_unreliable_recover_3b() {
    let f = Faults {
        unreliable: true,
        crash: true,
        conf_changes: true,
        snapshots: true,
        ..Faults::default()
    };
    generic("split_conf_change_snapshot_unreliable_recover_3b", 5, f);
}

#[test]
fn split_conf_change_snapshot_unreliable_recover_partitions_3b() {
    let f = Faults {
        unreliable: true,
        crash: true,
        conf_changes: true,
        snapshots: true,
        partitions: true,
    };
    generic("split_conf_change_snapshot_unreliable_recover_partitions_3b", 5, f);
}
