//! Lab 3c, graded: region heartbeat processing
//! (`BasicCluster::process_region_heartbeat`, `scheduler/src/heartbeat.rs`)
//! and the balance-region scheduler (`BalanceRegionScheduler::schedule`,
//! `scheduler/src/balance_region.rs`).
//!
//! Each test builds a small cluster by hand and calls the function
//! directly, so a failure points at one rule. Run them with
//! `make project3c` (with the end-to-end tests of `kv/sim/tests/project3c.rs`)
//! or `cargo test -p tinykv-scheduler --test project3c`.

use std::collections::BTreeMap;

use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store, StoreState};
use tinykv_proto::schedulerpb::RegionHeartbeatRequest;
use tinykv_scheduler::balance_region::BalanceRegionScheduler;
use tinykv_scheduler::id::IdAllocator;
use tinykv_scheduler::operator::{OpKind, OpStep, Operator, OperatorController};
use tinykv_scheduler::schedule::{Schedule, ScheduleCluster};
use tinykv_scheduler::{
    BasicCluster, HeartbeatError, MemStorage, RaftCluster, RegionInfo, ScheduleConfig,
};

// ----- builders -----------------------------------------------------------------

/// Peer `id` on store `store_id`.
fn peer(id: u64, store_id: u64) -> Peer {
    Peer { id, store_id }
}

/// Region `id` over `[start, end)` ("" is unbounded) at `(conf_ver,
/// version)`, with `peers` as `(peer id, store id)`.
fn region(id: u64, range: (&str, &str), epoch: (u64, u64), peers: &[(u64, u64)]) -> Region {
    Region {
        id,
        start_key: range.0.as_bytes().to_vec(),
        end_key: range.1.as_bytes().to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver: epoch.0, version: epoch.1 }),
        peers: peers.iter().map(|&(id, s)| peer(id, s)).collect(),
    }
}

/// What a heartbeat of `region` says, led by its first peer.
fn info(region: Region) -> RegionInfo {
    let leader = region.peers[0];
    RegionInfo { region, leader: Some(leader), pending_peers: Vec::new(), approximate_size: 10 }
}

/// The same, with the leader on `store_id`.
fn led_by(mut r: RegionInfo, store_id: u64) -> RegionInfo {
    r.leader = r.region.peers.iter().find(|p| p.store_id == store_id).copied();
    assert!(r.leader.is_some(), "test setup: region {} has no peer on store {store_id}", r.id());
    r
}

/// A cluster with stores `1..=n`, all up, none with a heartbeat yet.
fn cluster(n: u64) -> BasicCluster {
    let mut c = BasicCluster::new();
    for id in 1..=n {
        c.put_store(Store { id, address: format!("s{id}"), ..Default::default() });
    }
    c
}

/// Processes `r`, which must be taken as news.
fn take(c: &mut BasicCluster, r: RegionInfo) {
    let what = r.to_string();
    match c.process_region_heartbeat(r) {
        Ok(true) => {}
        Ok(false) => panic!("the heartbeat of {what} is news, but it was skipped"),
        Err(e) => panic!("the heartbeat of {what} is fresh, but it was refused: {e}"),
    }
}

/// Processes `r`, which must be refused as stale without changing
/// anything; returns the error.
fn refuse(c: &mut BasicCluster, r: RegionInfo) -> HeartbeatError {
    let before = c.clone();
    let what = r.to_string();
    match c.process_region_heartbeat(r) {
        Err(e) => {
            assert!(*c == before, "refusing the stale heartbeat of {what} changed the cluster");
            e
        }
        Ok(taken) => panic!(
            "the heartbeat of {what} is stale and must be refused, but it returned Ok({taken})"
        ),
    }
}

/// `(region_count, leader_count, pending_peer_count, region_size,
/// leader_size)` of a store.
fn stats(c: &BasicCluster, store_id: u64) -> (usize, usize, usize, u64, u64) {
    let s = c.store(store_id).unwrap_or_else(|| panic!("store {store_id} is not known"));
    (s.region_count, s.leader_count, s.pending_peer_count, s.region_size, s.leader_size)
}

fn ids(c: &BasicCluster) -> Vec<u64> {
    c.regions.iter().map(RegionInfo::id).collect()
}

fn epoch_of(c: &BasicCluster, region_id: u64) -> (u64, u64) {
    let e = c
        .regions
        .get(region_id)
        .unwrap_or_else(|| panic!("region {region_id} is not known"))
        .epoch();
    (e.conf_ver, e.version)
}

// ----- region heartbeats --------------------------------------------------------

#[test]
fn region_heartbeat_identical_changes_nothing_3c() {
    let mut c = cluster(3);
    let r = info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)]));
    take(&mut c, r.clone());
    let before = c.clone();
    let again = c.process_region_heartbeat(r).expect("an identical heartbeat is not stale");
    assert!(!again, "an identical heartbeat is no news: it must return Ok(false)");
    assert!(c == before, "an identical heartbeat must change nothing");
}

#[test]
fn region_heartbeat_newer_version_replaces_3c() {
    let mut c = cluster(3);
    take(&mut c, info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)])));
    take(&mut c, info(region(1, ("", "m"), (1, 2), &[(11, 1), (12, 2), (13, 3)])));
    let known = c.regions.get(1).expect("region 1");
    assert_eq!(known.region.end_key, b"m", "region 1 must now end at m");
    assert_eq!(epoch_of(&c, 1), (1, 2), "region 1 must be at version 2");
}

#[test]
fn region_heartbeat_stale_version_is_rejected_even_with_a_higher_conf_ver_3c() {
    let mut c = cluster(3);
    take(&mut c, info(region(1, ("", ""), (1, 5), &[(11, 1), (12, 2), (13, 3)])));
    let e = refuse(&mut c, info(region(1, ("", ""), (3, 4), &[(11, 1), (12, 2)])));
    let HeartbeatError::Stale { region_id, known_region_id, known, reported } = e;
    assert_eq!((region_id, known_region_id), (1, 1), "the error names region 1 twice");
    assert_eq!((known.conf_ver, known.version), (1, 5), "the error names the known epoch");
    assert_eq!((reported.conf_ver, reported.version), (3, 4), "and the reported one");
}

#[test]
fn region_heartbeat_stale_conf_ver_is_rejected_3c() {
    let mut c = cluster(3);
    take(&mut c, info(region(1, ("", ""), (4, 2), &[(11, 1), (12, 2), (13, 3)])));
    refuse(&mut c, info(region(1, ("", ""), (3, 2), &[(11, 1), (12, 2)])));
    refuse(&mut c, info(region(1, ("", ""), (3, 3), &[(11, 1), (12, 2)])));
}

#[test]
fn region_heartbeat_both_bumped_is_accepted_3c() {
    let mut c = cluster(4);
    take(&mut c, info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)])));
    take(&mut c, info(region(1, ("", ""), (2, 2), &[(11, 1), (12, 2), (13, 3), (14, 4)])));
    assert_eq!(epoch_of(&c, 1), (2, 2));
    assert_eq!(c.regions.get(1).unwrap().region.peers.len(), 4, "region 1 has its 4th peer");
}

#[test]
fn region_heartbeat_pending_peers_are_counted_per_store_3c() {
    let mut c = cluster(3);
    let mut r = info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)]));
    take(&mut c, r.clone());
    assert_eq!(stats(&c, 2).2, 0, "no pending peer on store 2 yet");
    r.pending_peers = vec![peer(12, 2)];
    take(&mut c, r.clone());
    assert_eq!(stats(&c, 2).2, 1, "store 2's peer of region 1 is pending");
    assert_eq!(stats(&c, 3).2, 0, "store 3's peer is not");
    assert_eq!(c.regions.pending_on(2).map(RegionInfo::id).collect::<Vec<_>>(), vec![1]);
    r.pending_peers.clear();
    take(&mut c, r);
    assert_eq!(stats(&c, 2).2, 0, "store 2's peer caught up: nothing pending");
    assert_eq!(c.regions.pending_on(2).count(), 0);
}

#[test]
fn region_heartbeat_peers_removed_and_added_back_3c() {
    let mut c = cluster(3);
    take(&mut c, info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)])));
    assert_eq!(stats(&c, 3).0, 1, "store 3 holds region 1");
    take(&mut c, info(region(1, ("", ""), (2, 1), &[(11, 1), (12, 2)])));
    assert_eq!(stats(&c, 3).0, 0, "store 3's peer was removed: it holds no region");
    assert_eq!(c.regions.followers_on(3).count(), 0);
    take(&mut c, info(region(1, ("", ""), (3, 1), &[(11, 1), (12, 2), (14, 3)])));
    assert_eq!(stats(&c, 3).0, 1, "store 3 holds region 1 again (peer 14)");
    let peers = &c.regions.get(1).unwrap().region.peers;
    assert!(peers.contains(&peer(14, 3)), "region 1's peer on store 3 is now 14: {peers:?}");
}

#[test]
fn region_heartbeat_leader_change_moves_the_leader_count_3c() {
    let mut c = cluster(3);
    let r = info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)]));
    take(&mut c, r.clone());
    assert_eq!((stats(&c, 1).1, stats(&c, 2).1), (1, 0), "store 1 leads region 1");
    take(&mut c, led_by(r, 2));
    assert_eq!((stats(&c, 1).1, stats(&c, 2).1), (0, 1), "store 2 leads region 1 now");
    assert_eq!(c.regions.get(1).unwrap().leader, Some(peer(12, 2)));
    assert_eq!(stats(&c, 1).0, 1, "store 1 still holds region 1, as a follower");
    assert_eq!(c.regions.followers_on(1).map(RegionInfo::id).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn region_heartbeat_size_change_updates_store_sizes_3c() {
    let mut c = cluster(3);
    let mut r = info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)]));
    r.approximate_size = 100;
    take(&mut c, r.clone());
    assert_eq!((stats(&c, 1).3, stats(&c, 1).4), (100, 100), "store 1 holds and leads 100 bytes");
    assert_eq!((stats(&c, 2).3, stats(&c, 2).4), (100, 0), "store 2 holds 100 and leads none");
    r.approximate_size = 250;
    take(&mut c, r);
    assert_eq!(stats(&c, 1).3, 250, "the new size reaches store 1's region_size");
    assert_eq!(stats(&c, 1).4, 250, "and its leader_size");
    assert_eq!(stats(&c, 3).3, 250, "and store 3's region_size");
}

#[test]
fn region_heartbeat_region_and_store_views_agree_3c() {
    let mut c = cluster(4);
    take(&mut c, info(region(1, ("", "g"), (1, 2), &[(11, 1), (12, 2), (13, 3)])));
    take(&mut c, led_by(info(region(2, ("g", "p"), (1, 2), &[(21, 2), (22, 3), (23, 4)])), 3));
    take(&mut c, led_by(info(region(3, ("p", ""), (1, 2), &[(31, 1), (32, 3), (33, 4)])), 4));
    assert_eq!(ids(&c), vec![1, 2, 3], "regions in key order");
    assert_eq!(c.regions.get_by_key(b"a").map(RegionInfo::id), Some(1));
    assert_eq!(c.regions.get_by_key(b"g").map(RegionInfo::id), Some(2));
    assert_eq!(c.regions.get_by_key(b"zzz").map(RegionInfo::id), Some(3));
    let scanned: Vec<u64> = c.regions.scan(b"h", b"q", 0).into_iter().map(RegionInfo::id).collect();
    assert_eq!(scanned, vec![2, 3], "a scan of [h, q) meets regions 2 and 3");
    assert!(c.regions.gaps().is_empty(), "the regions tile the key space");
    // Store counts: (regions, leaders).
    let counts: BTreeMap<u64, (usize, usize)> =
        (1..=4).map(|s| (s, (stats(&c, s).0, stats(&c, s).1))).collect();
    let expected = BTreeMap::from([(1, (2, 1)), (2, (2, 0)), (3, (3, 1)), (4, (2, 1))]);
    assert_eq!(counts, expected, "region and leader counts by store");
    assert_eq!(stats(&c, 3).3, 30, "store 3 holds three regions of 10 bytes");
}

#[test]
fn region_heartbeat_split_halves_in_either_order_3c() {
    for right_first in [false, true] {
        let mut c = cluster(3);
        take(&mut c, info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)])));
        let left = info(region(1, ("", "m"), (1, 2), &[(11, 1), (12, 2), (13, 3)]));
        let right = info(region(2, ("m", ""), (1, 2), &[(21, 1), (22, 2), (23, 3)]));
        let (first, second) = if right_first { (right, left) } else { (left, right) };
        let (first_range, gap) = if right_first {
            ((b"m".to_vec(), Vec::new()), (Vec::new(), b"m".to_vec()))
        } else {
            ((Vec::new(), b"m".to_vec()), (b"m".to_vec(), Vec::new()))
        };
        take(&mut c, first);
        assert_eq!(
            c.regions.gaps(),
            vec![gap],
            "after the first half {first_range:?}, the other half is a gap (right half first: \
             {right_first})"
        );
        take(&mut c, second);
        assert!(
            c.regions.gaps().is_empty(),
            "both halves reported: no gap (right first: {right_first})"
        );
        assert_eq!(ids(&c), vec![1, 2]);
        assert_eq!(stats(&c, 2).0, 2, "store 2 holds both halves (right first: {right_first})");
        // The parent's old view, late: stale against both halves.
        let late = info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)]));
        refuse(&mut c, late);
    }
}

#[test]
fn region_heartbeat_overlapping_a_newer_region_is_rejected_3c() {
    let mut c = cluster(3);
    take(&mut c, info(region(2, ("m", ""), (1, 3), &[(21, 1), (22, 2), (23, 3)])));
    // Region 5 is unknown by id, but it claims keys of region 2 at a lower
    // version: a view from before region 2's last split.
    let e = refuse(&mut c, info(region(5, ("k", "z"), (9, 2), &[(51, 1), (52, 2), (53, 3)])));
    let HeartbeatError::Stale { known_region_id, .. } = e;
    assert_eq!(known_region_id, 2, "the error names the newer overlapping region");
    // An overlapping region of another id with a higher conf_ver but the
    // same version is not stale: conf_vers of two regions are unrelated.
    let mut c = cluster(3);
    take(&mut c, info(region(2, ("m", "t"), (7, 3), &[(21, 1), (22, 2), (23, 3)])));
    take(&mut c, info(region(6, ("p", "z"), (1, 3), &[(61, 1), (62, 2), (63, 3)])));
    assert!(
        c.regions.get(2).is_none(),
        "region 6 (version 3, conf_ver 1) overlaps region 2 (version 3, conf_ver 7): only a \
         lower version is stale, so region 6 replaces it"
    );
}

#[test]
fn region_heartbeat_replaced_regions_leave_their_stores_3c() {
    let mut c = cluster(5);
    take(&mut c, info(region(1, ("", ""), (1, 1), &[(11, 1), (12, 2), (13, 3)])));
    // The right half reports from stores 3, 4 and 5 (peers moved after the
    // split); it replaces region 1, whose stores lose it.
    take(&mut c, led_by(info(region(2, ("", ""), (4, 2), &[(23, 3), (24, 4), (25, 5)])), 4));
    assert_eq!(stats(&c, 1), (0, 0, 0, 0, 0), "store 1 lost region 1: it holds nothing");
    assert_eq!(stats(&c, 2).0, 0, "store 2 lost region 1");
    assert_eq!(stats(&c, 4), (1, 1, 0, 10, 10), "store 4 leads region 2");
    assert_eq!(c.regions.leaders_on(1).count(), 0, "store 1 leads nothing");
}

/// A model of which region holds each key: the range index must agree
/// with it after every heartbeat.
fn check_index(c: &BasicCluster, model: &BTreeMap<u64, (String, String)>, step: &str) {
    assert!(c.regions.gaps().is_empty(), "{step}: the regions must tile the key space");
    assert_eq!(c.regions.len(), model.len(), "{step}: region count");
    for k in 0..100u32 {
        let key = format!("{k:03}");
        let expected = model
            .iter()
            .find(|(_, (s, e))| *s <= key && (e.is_empty() || key < *e))
            .map(|(id, _)| *id);
        let got = c.regions.get_by_key(key.as_bytes()).map(RegionInfo::id);
        assert_eq!(got, expected, "{step}: the region holding key {key}");
    }
}

#[test]
fn region_heartbeat_repeated_splits_and_merges_keep_the_index_consistent_3c() {
    let mut c = cluster(3);
    let peers = |id: u64| [(id * 10 + 1, 1), (id * 10 + 2, 2), (id * 10 + 3, 3)];
    take(&mut c, info(region(1, ("", ""), (1, 1), &peers(1))));
    let mut model = BTreeMap::from([(1u64, (String::new(), String::new()))]);
    let mut version = 1;
    // Split region 1 off its right end ten times, then merge pairs back.
    for round in 0..10u32 {
        version += 1;
        let cut = format!("{:03}", 90 - round * 9);
        let (start, end) = model[&1].clone();
        let new_id = u64::from(round) + 2;
        let right = info(region(new_id, (&cut, &end), (1, version), &peers(new_id)));
        let left = info(region(1, (&start, &cut), (1, version), &peers(1)));
        if round % 2 == 0 {
            take(&mut c, right);
            take(&mut c, left);
        } else {
            take(&mut c, left);
            take(&mut c, right);
        }
        model.insert(1, (start, cut.clone()));
        model.insert(new_id, (cut, end));
        check_index(&c, &model, &format!("split {round}"));
    }
    // Merges: region 1 absorbs its right neighbour, with a higher version.
    for round in 0..5 {
        version += 1;
        let (start, end) = model[&1].clone();
        let (&right_id, right_range) =
            model.iter().find(|(_, (s, _))| *s == end).expect("a right neighbour");
        let merged_end = right_range.1.clone();
        take(&mut c, info(region(1, (&start, &merged_end), (1, version), &peers(1))));
        model.remove(&right_id);
        model.insert(1, (start, merged_end));
        check_index(&c, &model, &format!("merge {round}"));
    }
    assert_eq!(stats(&c, 1).0, model.len(), "store 1 holds every region left");
}

#[test]
fn region_heartbeat_through_raft_cluster_is_saved_and_stale_is_counted_3c() {
    let storage = MemStorage::default();
    let mut rc = RaftCluster::open(Box::new(storage.clone()), ScheduleConfig::default(), 7, 0)
        .expect("open");
    let first = region(1, ("", ""), (1, 1), &[(11, 1)]);
    rc.bootstrap(Store { id: 1, address: "s1".into(), ..Default::default() }, first)
        .expect("bootstrap");
    rc.put_store(Store { id: 2, address: "s2".into(), ..Default::default() }).expect("store 2");
    let hb = |r: Region| RegionHeartbeatRequest {
        leader: Some(r.peers[0]),
        region: Some(r),
        approximate_size: 10,
        ..Default::default()
    };
    let newer = region(1, ("", ""), (2, 1), &[(11, 1), (12, 2)]);
    rc.on_region_heartbeat(&hb(newer), 10).expect("a newer heartbeat is taken");
    assert!(
        rc.on_region_heartbeat(&hb(region(1, ("", ""), (1, 1), &[(11, 1)])), 20).is_err(),
        "a stale heartbeat is refused"
    );
    assert_eq!(rc.stale_heartbeats(), 1, "and counted");
    drop(rc);
    let rc =
        RaftCluster::open(Box::new(storage), ScheduleConfig::default(), 7, 30).expect("reopen");
    let known = rc.region(1).expect("region 1 after a restart");
    assert_eq!(known.region.peers.len(), 2, "the restarted scheduler knows region 1's two peers");
    assert_eq!(rc.store(2).map(|s| s.region_count), Some(1), "and counts it on store 2");
}

// ----- balance region -----------------------------------------------------------

/// A cluster view for the balance-region scheduler: `config`, time `now`,
/// and ids from 1000.
struct Balance {
    config: ScheduleConfig,
    ops: OperatorController,
    ids: IdAllocator,
    now_ms: u64,
}

impl Balance {
    fn new(max_replicas: usize) -> Balance {
        let config = ScheduleConfig { max_replicas, ..ScheduleConfig::default() };
        Balance {
            config,
            ops: OperatorController::new(60_000, 60_000),
            ids: IdAllocator::new(1000, 2000),
            now_ms: 100_000,
        }
    }

    /// What balance-region proposes for `c`.
    fn run(&mut self, c: &BasicCluster) -> Option<Operator> {
        let mut view =
            ScheduleCluster::new(c, &self.config, self.now_ms, 0, &self.ops, &mut self.ids);
        BalanceRegionScheduler.schedule(&mut view)
    }
}

/// Marks every store as heard from at `now_ms`.
fn heard_at(c: &mut BasicCluster, now_ms: u64) {
    for s in c.stores.values_mut() {
        s.last_heartbeat_ms = Some(now_ms);
    }
}

/// Adds region `id` with its peers on `stores` (the first leads), of
/// `size` bytes.
fn add(c: &mut BasicCluster, id: u64, stores: &[u64], size: u64) {
    let peers: Vec<(u64, u64)> = stores.iter().map(|&s| (id * 100 + s, s)).collect();
    let key = |i: u64| format!("k{i:04}");
    let mut r = info(region(id, (&key(id), &key(id + 1)), (1, 1), &peers));
    r.approximate_size = size;
    take(c, r);
}

/// Asserts `op` moves region `region_id` from `from` to `to`.
fn assert_move(op: Option<Operator>, region_id: u64, from: u64, to: u64) {
    let op = op.unwrap_or_else(|| {
        panic!(
            "expected region {region_id} to move from store {from} to store {to}; got no operator"
        )
    });
    assert_eq!(op.kind, OpKind::BalanceRegion, "{op}: kind");
    assert_eq!(op.region_id, region_id, "{op}: expected region {region_id}");
    match op.steps.as_slice() {
        [OpStep::AddPeer(p), OpStep::RemovePeer { store_id }] => {
            assert_eq!(p.store_id, to, "{op}: the new peer goes to store {to}");
            assert!(p.id >= 1000, "{op}: the new peer's id is freshly allocated");
            assert_eq!(*store_id, from, "{op}: the peer leaves store {from}");
        }
        steps => panic!("{op}: expected add then remove, got {steps:?}"),
    }
}

#[test]
fn balance_region_one_replica_moves_from_the_largest_store_3c() {
    let mut c = cluster(3);
    for id in 1..=4 {
        add(&mut c, id, &[1], 10);
    }
    add(&mut c, 5, &[2], 10);
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(1);
    assert_move(b.run(&c), 1, 1, 3);
}

#[test]
fn balance_region_three_replicas_picks_the_smallest_store_without_the_region_3c() {
    let mut c = cluster(5);
    // Stores 1, 2, 3 hold everything; store 4 holds a little, store 5 more.
    for id in 1..=6 {
        add(&mut c, id, &[1, 2, 3], 10);
    }
    add(&mut c, 7, &[2, 4, 5], 10);
    add(&mut c, 8, &[3, 5, 1], 10);
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(3);
    // Store 1 has 70 bytes (ties with 2 and 3 broken by id); store 4 the least.
    // Stores 1, 2 and 3 hold 70 bytes (store 1 first by id), store 4 10,
    // store 5 20. Store 1 follows region 8 (led by store 3), which goes to
    // store 4, the smallest store without it.
    assert_move(b.run(&c), 8, 1, 4);
}

#[test]
fn balance_region_five_replicas_3c() {
    let mut c = cluster(6);
    for id in 1..=5 {
        add(&mut c, id, &[1, 2, 3, 4, 5], 10);
    }
    add(&mut c, 6, &[2, 3, 4, 5, 6], 10);
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(5);
    // Stores 2 to 5 hold 60 bytes, store 1 50, store 6 10: store 2 gives
    // region 1 (which it follows) to store 6.
    assert_move(b.run(&c), 1, 2, 6);
}

#[test]
fn balance_region_skips_down_and_offline_stores_3c() {
    let mut c = cluster(5);
    for id in 1..=4 {
        add(&mut c, id, &[1, 2, 3], 10);
    }
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(3);
    // Store 4 is down (silent for longer than max_store_down_time), store 5
    // offline: neither may take the region.
    let down_since = b.now_ms - b.config.max_store_down_time_ms - 1;
    c.stores.get_mut(&4).unwrap().last_heartbeat_ms = Some(down_since);
    let offline = Store { state: StoreState::Offline as i32, ..c.store(5).unwrap().store.clone() };
    c.put_store(offline);
    assert!(b.run(&c).is_none(), "no suitable target: the only empty stores are down or offline");
    // A down store is not a source either: store 1, full, goes silent.
    let mut c = cluster(4);
    for id in 1..=3 {
        add(&mut c, id, &[1, 2, 3], 10);
    }
    add(&mut c, 4, &[1, 2, 4], 10);
    heard_at(&mut c, 100_000);
    c.stores.get_mut(&1).unwrap().last_heartbeat_ms = Some(down_since);
    let op = b.run(&c);
    assert!(
        op.as_ref().is_none_or(|o| !o.steps.contains(&OpStep::RemovePeer { store_id: 1 })),
        "store 1 is down: it is not a source ({op:?})"
    );
    // Just within the down time, store 4 is a target again.
    let mut c = cluster(4);
    for id in 1..=4 {
        add(&mut c, id, &[1, 2, 3], 10);
    }
    heard_at(&mut c, 100_000);
    c.stores.get_mut(&4).unwrap().last_heartbeat_ms =
        Some(b.now_ms - b.config.max_store_down_time_ms);
    assert_move(b.run(&c), 1, 1, 4);
}

#[test]
fn balance_region_needs_a_difference_of_more_than_twice_the_region_size_3c() {
    // Store 1 holds two regions of 10 bytes and one of 30 (50 bytes),
    // store 2 holds 30: a gap of 20, exactly twice the small regions.
    let mut c = cluster(2);
    add(&mut c, 1, &[1], 10);
    add(&mut c, 2, &[1], 10);
    add(&mut c, 3, &[1], 30);
    add(&mut c, 4, &[2], 30);
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(1);
    assert!(
        b.run(&c).is_none(),
        "store 1 holds 50 bytes, store 2 30: a gap of 20 is not more than twice a 10-byte region"
    );
    // Store 2 one byte lighter: a gap of 21, more than twice 10.
    let mut c = cluster(2);
    add(&mut c, 1, &[1], 10);
    add(&mut c, 2, &[1], 10);
    add(&mut c, 3, &[1], 30);
    add(&mut c, 4, &[2], 29);
    heard_at(&mut c, 100_000);
    assert_move(b.run(&c), 1, 1, 2);
}

#[test]
fn balance_region_prefers_pending_then_followers_then_leaders_3c() {
    // Store 1 leads region 1, follows region 2, and has a pending peer of
    // region 3; store 4 is empty.
    let build = |pending: bool, follower: bool| {
        let mut c = cluster(4);
        add(&mut c, 1, &[1, 2, 3], 10);
        if follower {
            let r = info(region(2, ("k0002", "k0003"), (1, 1), &[(201, 2), (202, 1), (203, 3)]));
            take(&mut c, r);
        }
        if pending {
            let mut r =
                info(region(3, ("k0003", "k0004"), (1, 1), &[(301, 3), (302, 1), (303, 2)]));
            r.pending_peers = vec![peer(302, 1)];
            take(&mut c, r);
        }
        for id in 5..=8 {
            add(&mut c, id, &[1, 2, 3], 10);
        }
        heard_at(&mut c, 100_000);
        c
    };
    let mut b = Balance::new(3);
    assert_move(b.run(&build(true, true)), 3, 1, 4);
    // Without the pending one, a follower region (region 2) goes first.
    assert_move(b.run(&build(false, true)), 2, 1, 4);
    // Without either, a region store 1 leads goes.
    assert_move(b.run(&build(false, false)), 1, 1, 4);
}

#[test]
fn balance_region_skips_busy_and_under_replicated_regions_3c() {
    let mut c = cluster(4);
    add(&mut c, 1, &[1, 2], 10); // under-replicated: 2 of 3
    add(&mut c, 2, &[1, 2, 3], 10);
    add(&mut c, 3, &[1, 2, 3], 10);
    add(&mut c, 4, &[1, 2, 3], 10);
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(3);
    // Region 2 has an operator running (a leader transfer: no influence on
    // region sizes).
    let busy = Operator::transfer_leader("test", OpKind::Admin, c.regions.get(2).unwrap(), 2, 0);
    assert!(b.ops.add(busy, 0));
    let op = b.run(&c);
    assert_move(op, 3, 1, 4);
}

#[test]
fn balance_region_balanced_cluster_makes_no_operator_3c() {
    let mut c = cluster(3);
    for id in 1..=6 {
        let stores = [[1, 2], [2, 3], [3, 1]][(id % 3) as usize];
        add(&mut c, id, &stores, 10);
    }
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(2);
    assert!(b.run(&c).is_none(), "every store holds 40 bytes: nothing to move");
}

#[test]
fn balance_region_counts_running_moves_3c() {
    // Store 1 holds 4 regions, store 2 none. A move of region 1 to store 2
    // is running: counted as done, store 1 has 30, store 2 10, and a gap of
    // 20 is not more than twice 10: nothing else moves yet.
    let mut c = cluster(2);
    for id in 1..=4 {
        add(&mut c, id, &[1], 10);
    }
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(1);
    let first = b.run(&c).expect("store 1 is full, store 2 empty: a move");
    assert!(b.ops.add(first, b.now_ms));
    assert!(b.run(&c).is_none(), "with the running move counted, the stores are balanced");
}

#[test]
fn balance_region_target_never_holds_the_region_and_other_candidates_are_tried_3c() {
    // Region 1 is on stores 1, 2 and 4; regions 2 to 5 on 1, 2 and 3.
    // Store 1 (50 bytes) is the source. For region 1 the smallest store
    // without it is store 3 (40): a gap of 10, no move. Region 2 can go to
    // store 4 (10): a gap of 40.
    let mut c = cluster(4);
    add(&mut c, 1, &[1, 2, 4], 10);
    for id in 2..=5 {
        add(&mut c, id, &[1, 2, 3], 10);
    }
    heard_at(&mut c, 100_000);
    let mut b = Balance::new(3);
    assert_move(b.run(&c), 2, 1, 4);
}
