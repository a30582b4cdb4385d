//! Operators asked for by hand (`tinykv-ctl cluster split|add-peer|
//! remove-peer|transfer-leader`), end to end in the simulator with the
//! real scheduler (not graded): the scheduler hands each one out in its
//! heartbeat answers and the stores carry it out. A split at a key goes
//! the way of a split the size check found: the leader asks for the new
//! region's ids and proposes the `Split`.
//!
//! Seeded: `TINYKV_SEED=N cargo test -p tinykv-sim --test admin_operators`
//! replays a run; a failure names its seed.

use tinykv_proto::metapb::Region;
use tinykv_sim::OpOutcome;
use tinykv_sim::{AdminOp, Cluster, ClusterConfig, MS, SEC, ScheduleConfig, SchedulerChoice};

fn seed() -> u64 {
    std::env::var("TINYKV_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7)
}

/// Four stores, region 1 on stores 1–3, the real scheduler; regions never
/// split by size.
fn cluster() -> Cluster {
    let mut cfg = ClusterConfig::new(4, seed());
    cfg.first_region_stores = 3;
    cfg.scheduler = SchedulerChoice::Real(ScheduleConfig {
        // Nothing but the admin operators moves regions here: no
        // balancing, no replica checks (which would remove a fourth peer).
        leader_schedule_limit: 0,
        region_schedule_limit: 0,
        replica_schedule_limit: 0,
        ..ScheduleConfig::default()
    });
    cfg.store.region_max_size = 1 << 30;
    cfg.store.region_split_size = 1 << 29;
    Cluster::new(cfg)
}

/// The region the scheduler knows holding `key`.
fn region_of(c: &Cluster, key: &[u8]) -> Region {
    c.scheduler_region_by_key(key).unwrap_or_else(|| {
        panic!("seed {}: the scheduler knows no region holding {key:?}", c.seed())
    })
}

/// Starts `op` on the real scheduler; panics naming the refusal.
fn start(c: &mut Cluster, op: AdminOp) -> String {
    let now = c.now() / MS;
    let seed = c.seed();
    let pd = c.pd.as_mut().expect("the real scheduler");
    match pd.add_admin_operator(op.clone(), now) {
        Ok(started) => started.to_string(),
        Err(e) => panic!("seed {seed}: {op:?} refused: {e}"),
    }
}

/// Runs until the admin operator of `region_id` has ended; it must have
/// finished.
fn finish(c: &mut Cluster, region_id: u64, what: &str) {
    let until = c.now() + 20 * SEC;
    while c.pd.as_ref().is_some_and(|pd| pd.operators().get(region_id).is_some()) {
        assert!(c.now() < until, "seed {}: {what} still running after 20 s", c.seed());
        c.run_for(100 * MS);
    }
    let pd = c.pd.as_ref().expect("the real scheduler");
    let last = pd.operators().history().rev().find(|(op, _, _)| op.region_id == region_id);
    let (op, outcome, _) = last.expect("an operator that ended");
    assert_eq!(*outcome, OpOutcome::Finished, "seed {}: {what}: {op} ended {outcome:?}", c.seed());
}

#[test]
fn admin_split_then_move_and_transfer_the_new_region() {
    let mut c = cluster();
    for i in 0..20u32 {
        c.must_put(format!("k{i:02}").as_bytes(), format!("v{i}").as_bytes());
    }
    let first = region_of(&c, b"k00");
    assert!(first.end_key.is_empty(), "seed {}: one region before the split", c.seed());

    let desc = start(&mut c, AdminOp::Split { region_id: first.id, split_key: b"k10".to_vec() });
    assert!(desc.contains("split at \"k10\""), "{desc}");
    finish(&mut c, first.id, "the split at k10");
    // The new region is known from its own leader's first heartbeat.
    let until = c.now() + 10 * SEC;
    while c.scheduler_region_by_key(b"k10").is_none_or(|r| r.id == first.id) {
        assert!(c.now() < until, "seed {}: the scheduler never heard of the right half", c.seed());
        c.run_for(100 * MS);
    }
    let (left, right) = (region_of(&c, b"k09"), region_of(&c, b"k10"));
    assert_eq!(left.id, first.id, "seed {}: the left half keeps the id", c.seed());
    assert_eq!(left.end_key, b"k10", "seed {}: {left:?}", c.seed());
    assert_eq!(right.start_key, b"k10", "seed {}: {right:?}", c.seed());
    assert_ne!(right.id, first.id);

    // Move the right half from store 1 to store 4, then give it a leader
    // on store 4.
    start(&mut c, AdminOp::AddPeer { region_id: right.id, store_id: 4 });
    finish(&mut c, right.id, "adding a peer on store 4");
    start(&mut c, AdminOp::RemovePeer { region_id: right.id, store_id: 1 });
    finish(&mut c, right.id, "removing the peer on store 1");
    c.must_none_peer(right.id, 1);
    start(&mut c, AdminOp::TransferLeader { region_id: right.id, store_id: 4 });
    finish(&mut c, right.id, "moving the leadership to store 4");
    assert_eq!(c.leader_of(right.id), Some(4), "seed {}", c.seed());

    // Every key reads back, from both halves.
    for i in 0..20u32 {
        let key = format!("k{i:02}");
        let got = c.must_get(key.as_bytes());
        assert_eq!(got, Some(format!("v{i}").into_bytes()), "seed {}: {key}", c.seed());
    }
    let stores: Vec<u64> = region_of(&c, b"k10").peers.iter().map(|p| p.store_id).collect();
    assert_eq!(stores.len(), 3, "seed {}: {stores:?}", c.seed());
    assert!(stores.contains(&4) && !stores.contains(&1), "seed {}: {stores:?}", c.seed());
}

/// A leader transfer to a store that died after it was asked for: the
/// leader does not hand over to a peer it has not heard from (raft would
/// stop taking proposals until the transfer is abandoned, and the
/// scheduler repeats the operator with every heartbeat), so the region
/// keeps taking writes; the operator times out.
#[test]
fn a_leader_transfer_to_a_dead_store_does_not_stop_writes() {
    let mut c = cluster();
    c.must_put(b"k", b"v0");
    let region = region_of(&c, b"k");
    let leader = c.leader_of(region.id).expect("a leader after a write");
    let target = region.peers.iter().map(|p| p.store_id).find(|&s| s != leader).expect("peers");
    c.kill_store(target);
    c.run_for(SEC);
    start(&mut c, AdminOp::TransferLeader { region_id: region.id, store_id: target });
    // Ten seconds of writes, each within half a second.
    for i in 0..40u32 {
        let value = format!("v{i}").into_bytes();
        let put = tinykv_sim::OpKind::Put { key: b"k".to_vec(), value };
        c.run_op(tinykv_sim::HARNESS_CLIENT, put, 500 * MS);
        c.run_for(200 * MS);
    }
    assert_eq!(c.leader_of(region.id), Some(leader), "seed {}: the leadership stayed", c.seed());
    c.run_for(5 * SEC);
    let pd = c.pd.as_ref().expect("the real scheduler");
    assert!(pd.operators().get(region.id).is_none(), "seed {}: the transfer still runs", c.seed());
    let last = pd.operators().history().rev().find(|(op, _, _)| op.region_id == region.id);
    let outcome = last.map(|(_, outcome, _)| *outcome);
    assert_eq!(outcome, Some(OpOutcome::TimedOut), "seed {}", c.seed());
}
