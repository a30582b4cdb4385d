//! Operators asked for by hand (`RaftCluster::add_admin_operator`, what
//! `tinykv-ctl cluster add-peer|remove-peer|transfer-leader|split` calls)
//! and split reports (`RaftCluster::report_split`): what each one checks,
//! what the region's leader is asked in heartbeat responses, and when the
//! operator ends. Given code, not graded; it runs on the reference
//! solution (heartbeats go through lab 3c's heartbeat processing).

use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store};
use tinykv_proto::schedulerpb::{RegionHeartbeatRequest, RegionHeartbeatResponse};
use tinykv_scheduler::operator::OpOutcome;
use tinykv_scheduler::{AdminOp, Error, MemStorage, RaftCluster, ScheduleConfig};

/// Region `id` over `[start, end)` ("" is unbounded) at `(conf_ver,
/// version)`, with `peers` as `(peer id, store id)`.
fn region(id: u64, range: (&str, &str), epoch: (u64, u64), peers: &[(u64, u64)]) -> Region {
    Region {
        id,
        start_key: range.0.as_bytes().to_vec(),
        end_key: range.1.as_bytes().to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver: epoch.0, version: epoch.1 }),
        peers: peers.iter().map(|&(id, store_id)| Peer { id, store_id }).collect(),
    }
}

/// Three stores; region 1 `["", "")` at (3, 1) with peers 9001, 8002, 8003 on
/// stores 1, 2, 3, led by 9001 and heard from at 0 ms. (The ids the
/// scheduler hands out start above the bootstrap peer 9001.)
fn cluster() -> RaftCluster {
    let mut c = RaftCluster::open(Box::new(MemStorage::default()), ScheduleConfig::default(), 7, 0)
        .expect("open");
    let store = |id: u64| Store { id, address: format!("s{id}"), ..Default::default() };
    c.bootstrap(store(1), region(1, ("", ""), (1, 1), &[(9001, 1)])).expect("bootstrap");
    for id in [2, 3, 4] {
        c.put_store(store(id)).expect("put store");
    }
    heartbeat(&mut c, region(1, ("", ""), (3, 1), &[(9001, 1), (8002, 2), (8003, 3)]), 9001, 0);
    c
}

/// A heartbeat of `r` led by peer `leader` at `now_ms`; the answer.
fn heartbeat(
    c: &mut RaftCluster,
    r: Region,
    leader: u64,
    now_ms: u64,
) -> Option<RegionHeartbeatResponse> {
    let leader = *r.peers.iter().find(|p| p.id == leader).expect("test setup: leader is a peer");
    let request = RegionHeartbeatRequest {
        region: Some(r),
        leader: Some(leader),
        approximate_size: 10,
        ..Default::default()
    };
    c.on_region_heartbeat(&request, now_ms).expect("a fresh heartbeat is taken")
}

fn outcomes(c: &RaftCluster) -> Vec<OpOutcome> {
    c.operators().history().map(|(_, outcome, _)| *outcome).collect()
}

fn split(key: &str) -> AdminOp {
    AdminOp::Split { region_id: 1, split_key: key.as_bytes().to_vec() }
}

#[test]
fn split_is_asked_with_the_heartbeat_epoch_until_the_region_ends_at_the_key() {
    let mut c = cluster();
    let whole = region(1, ("", ""), (3, 1), &[(9001, 1), (8002, 2), (8003, 3)]);
    c.add_admin_operator(split("m"), 10).expect("m is inside region 1");
    for now in [20, 30] {
        let resp = heartbeat(&mut c, whole.clone(), 9001, now).expect("the split is asked");
        assert_eq!(resp.region_id, 1);
        let asked = resp.split_region.expect("a split_region answer");
        assert_eq!(asked.split_key, b"m", "at the key asked for");
        assert_eq!(resp.region_epoch, whole.region_epoch, "with the heartbeat's epoch");
        assert!(resp.change_peer.is_none() && resp.transfer_leader.is_none(), "and nothing else");
    }
    let left = region(1, ("", "m"), (3, 2), &[(9001, 1), (8002, 2), (8003, 3)]);
    assert_eq!(heartbeat(&mut c, left, 9001, 40), None, "a split region is asked nothing more");
    assert_eq!(outcomes(&c), [OpOutcome::Finished], "the split operator finished");
    assert!(c.operators().get(1).is_none());
}

#[test]
fn split_elsewhere_keeps_the_operator_while_the_key_is_inside_and_cancels_it_after() {
    let mut c = cluster();
    c.add_admin_operator(split("m"), 10).expect("m is inside region 1");
    // Split at "t" (by size): "m" is still inside region 1, asked again
    // with the new epoch.
    let left = region(1, ("", "t"), (3, 2), &[(9001, 1), (8002, 2), (8003, 3)]);
    let resp = heartbeat(&mut c, left.clone(), 9001, 20).expect("still asked");
    assert_eq!(resp.split_region.map(|s| s.split_key), Some(b"m".to_vec()));
    assert_eq!(resp.region_epoch, left.region_epoch, "with the new epoch");
    // Split at "f": "m" is now in the other half; the plan is void.
    let left = region(1, ("", "f"), (3, 3), &[(9001, 1), (8002, 2), (8003, 3)]);
    assert_eq!(heartbeat(&mut c, left, 9001, 30), None);
    assert_eq!(outcomes(&c), [OpOutcome::Cancelled]);
}

#[test]
fn split_key_must_be_strictly_inside_the_region() {
    let mut c = cluster();
    heartbeat(&mut c, region(1, ("b", "k"), (3, 2), &[(9001, 1), (8002, 2), (8003, 3)]), 9001, 5);
    for key in ["", "a", "b", "k", "z"] {
        match c.add_admin_operator(split(key), 10) {
            Err(Error::Invalid(why)) => {
                assert!(why.contains("not inside region 1"), "key {key:?}: {why}")
            }
            other => panic!("a split of [b, k) at {key:?} must be refused, got {other:?}"),
        }
    }
    assert!(c.operators().get(1).is_none(), "a refused operator does not start");
    c.add_admin_operator(split("c"), 10).expect("c is inside [b, k)");
}

#[test]
fn unknown_region_is_region_not_found() {
    let mut c = cluster();
    let err = c.add_admin_operator(AdminOp::Split { region_id: 9, split_key: b"m".to_vec() }, 10);
    assert!(matches!(err, Err(Error::RegionNotFound { region_id: 9 })), "{err:?}");
}

#[test]
fn add_peer_allocates_a_fresh_peer_and_checks_the_store() {
    let mut c = cluster();
    let unknown = c.add_admin_operator(AdminOp::AddPeer { region_id: 1, store_id: 9 }, 10);
    assert!(matches!(unknown, Err(Error::UnknownStore { store_id: 9 })), "{unknown:?}");
    let held = c.add_admin_operator(AdminOp::AddPeer { region_id: 1, store_id: 2 }, 10);
    assert!(matches!(&held, Err(Error::Invalid(why)) if why.contains("already has peer 8002")));
    let op = c.add_admin_operator(AdminOp::AddPeer { region_id: 1, store_id: 4 }, 10).unwrap();
    let whole = region(1, ("", ""), (3, 1), &[(9001, 1), (8002, 2), (8003, 3)]);
    let resp = heartbeat(&mut c, whole, 9001, 20).expect("the add is asked");
    let change = resp.change_peer.expect("a change_peer answer");
    let peer = change.peer.expect("with the peer");
    assert_eq!(peer.store_id, 4);
    assert!(![0, 9001, 8002, 8003].contains(&peer.id), "a fresh peer id, got {}", peer.id);
    assert_eq!(
        op.to_string(),
        format!("admin-add-peer (admin) on region 1: add peer {} on store 4", peer.id)
    );
}

#[test]
fn remove_peer_and_transfer_leader_need_a_peer_on_the_store() {
    let mut c = cluster();
    for op in [
        AdminOp::RemovePeer { region_id: 1, store_id: 4 },
        AdminOp::TransferLeader { region_id: 1, store_id: 4 },
    ] {
        let err = c.add_admin_operator(op.clone(), 10);
        assert!(
            matches!(&err, Err(Error::Invalid(why)) if why.contains("has no peer on store 4")),
            "{op:?}: {err:?}"
        );
    }
    c.add_admin_operator(AdminOp::TransferLeader { region_id: 1, store_id: 3 }, 10).unwrap();
    let whole = region(1, ("", ""), (3, 1), &[(9001, 1), (8002, 2), (8003, 3)]);
    let resp = heartbeat(&mut c, whole.clone(), 9001, 20).expect("the transfer is asked");
    let to = resp.transfer_leader.and_then(|t| t.peer);
    assert_eq!(to, Some(Peer { id: 8003, store_id: 3 }));
    assert_eq!(heartbeat(&mut c, whole, 8003, 30), None, "led from store 3: done");
    assert_eq!(outcomes(&c), [OpOutcome::Finished]);
}

#[test]
fn remove_refuses_the_last_peer() {
    let mut c = cluster();
    heartbeat(&mut c, region(1, ("", ""), (5, 1), &[(9001, 1)]), 9001, 5);
    let err = c.add_admin_operator(AdminOp::RemovePeer { region_id: 1, store_id: 1 }, 10);
    assert!(matches!(&err, Err(Error::Invalid(why)) if why.contains("last peer")), "{err:?}");
}

#[test]
fn a_second_admin_operator_is_busy_until_the_first_ends() {
    let mut c = cluster();
    c.add_admin_operator(split("m"), 10).unwrap();
    let err = c.add_admin_operator(AdminOp::TransferLeader { region_id: 1, store_id: 2 }, 10);
    match err {
        Err(Error::Busy { region_id: 1, running }) => {
            assert!(running.contains("split at \"m\""), "names what runs: {running}")
        }
        other => panic!("a second admin operator must be refused as busy, got {other:?}"),
    }
    heartbeat(&mut c, region(1, ("", "m"), (3, 2), &[(9001, 1), (8002, 2), (8003, 3)]), 9001, 20);
    c.add_admin_operator(AdminOp::TransferLeader { region_id: 1, store_id: 2 }, 30)
        .expect("the split finished: the region is free");
}

#[test]
fn report_split_checks_that_the_halves_fit() {
    let c = cluster();
    let peers = [(9001, 1), (8002, 2), (8003, 3)];
    let left = region(1, ("", "m"), (3, 2), &peers);
    let right = region(2, ("m", ""), (3, 2), &[(8501, 1), (8502, 2), (8503, 3)]);
    c.report_split(Some(&left), Some(&right)).expect("two halves that fit");
    let gap = region(2, ("n", ""), (3, 2), &[(8501, 1), (8502, 2), (8503, 3)]);
    let other_epoch = region(2, ("m", ""), (3, 3), &[(8501, 1), (8502, 2), (8503, 3)]);
    let other_stores = region(2, ("m", ""), (3, 2), &[(8501, 1), (8502, 2), (8504, 4)]);
    let same_id = region(1, ("m", ""), (3, 2), &peers);
    let no_epoch = Region { region_epoch: None, ..right.clone() };
    for (bad, why) in [
        (&gap, "does not end where"),
        (&other_epoch, "different epochs"),
        (&other_stores, "different stores"),
        (&same_id, "one id"),
        (&no_epoch, "no region epoch"),
    ] {
        match c.report_split(Some(&left), Some(bad)) {
            Err(Error::Invalid(msg)) => assert!(msg.contains(why), "{msg} (wanted {why:?})"),
            other => panic!("ReportSplit with a right half {bad:?} must be refused, got {other:?}"),
        }
    }
    assert!(matches!(c.report_split(Some(&left), None), Err(Error::Invalid(_))));
}
