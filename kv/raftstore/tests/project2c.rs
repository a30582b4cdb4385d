//! Lab 2c, peer level: `exec_compact_log` and `PeerStorage::apply_snapshot`
//! on a single peer over memory engines, without a cluster around it.

use std::sync::Arc;

use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, Snapshot, SnapshotMetadata};
use tinykv_engine::{Cf, MemoryDisk, WriteBatch, WriteOp, keys};
use tinykv_proto::raft_cmdpb::CompactLogRequest;
use tinykv_proto::raft_serverpb::{
    PeerState, RaftApplyState, RaftSnapshotData, RaftTruncatedState, RegionLocalState,
};
use tinykv_raftstore::bootstrap::{bootstrap_region, bootstrap_store, first_region};
use tinykv_raftstore::{Config, Engines, Peer, SnapKey};

/// A bootstrapped one-region store (region 1, peers 1..=3 on stores
/// 1..=3) and the peer on store 1. Its log ends at index 5, term 5.
fn peer() -> Peer {
    let engines =
        Engines::new(Arc::new(MemoryDisk::new().open()), Arc::new(MemoryDisk::new().open()));
    let region = first_region(1, &[(1, 1), (2, 2), (3, 3)]);
    bootstrap_store(&engines, 1, 1).expect("bootstrap the store");
    bootstrap_region(&engines, &region).expect("bootstrap the region");
    Peer::new(1, &Config::default(), engines, region, false).expect("the peer starts")
}

/// Appends entries 6..=last in term 6 to the peer's log (persisted), and
/// pretends they are committed and applied up to `applied`.
fn grow_log(p: &mut Peer, last: u64, applied: u64) {
    let entries: Vec<Entry> =
        (6..=last).map(|index| Entry { index, term: 6, ..Default::default() }).collect();
    let ps = p.storage_mut();
    let mut raft_wb = WriteBatch::new();
    ps.append(&entries, &mut raft_wb);
    ps.engines.raft.write(raft_wb.sync()).expect("write the log");
    let mut hs = ps.hard_state();
    hs.commit = last;
    hs.term = 6;
    ps.raft_state.hard_state = Some(hs);
    ps.apply_state.applied_index = applied;
}

fn compact(p: &mut Peer, compact_index: u64, compact_term: u64) {
    let req = CompactLogRequest { compact_index, compact_term };
    p.exec_compact_log(&req).expect("CompactLog applies");
}

fn truncated(p: &Peer) -> (u64, u64) {
    let t = p.storage().truncated();
    (t.index, t.term)
}

/// Applying `CompactLog` moves the truncated state to the command's index
/// and term: the log now starts after it.
#[test]
fn compact_log_moves_the_truncated_state_2c() {
    let mut p = peer();
    grow_log(&mut p, 40, 30);
    assert_eq!(truncated(&p), (5, 5), "a bootstrapped log is truncated at (5, 5)");
    compact(&mut p, 20, 6);
    assert_eq!(truncated(&p), (20, 6), "CompactLog to (20, 6) must move the truncated state");
    assert_eq!(raft::Storage::first_index(p.storage()), Ok(21), "the log must start after 20");
    assert_eq!(p.storage().applied_index(), 30, "CompactLog must not move the applied index");
}

/// A `CompactLog` that does not move the truncated state forward — an old
/// one applied after a newer one, or a repeat — changes nothing.
#[test]
fn stale_compact_log_is_harmless_2c() {
    let mut p = peer();
    grow_log(&mut p, 40, 30);
    compact(&mut p, 25, 6);
    compact(&mut p, 15, 6);
    assert_eq!(truncated(&p), (25, 6), "an older CompactLog must not move the log start back");
    compact(&mut p, 25, 6);
    assert_eq!(truncated(&p), (25, 6), "a repeated CompactLog changes nothing");
    compact(&mut p, 3, 5);
    assert_eq!(truncated(&p), (25, 6), "a CompactLog before the log start changes nothing");
}

/// `CompactLog` may truncate up to the applied index itself, never past
/// it (an entry not applied yet must stay in the log).
#[test]
fn compact_log_up_to_the_applied_index_but_not_past_it_2c() {
    let mut p = peer();
    grow_log(&mut p, 40, 30);
    compact(&mut p, 31, 6);
    assert_eq!(
        truncated(&p),
        (5, 5),
        "applied index 30: a CompactLog to (31, 6) is past it and must change nothing; see \
         docs/src/lab2c-log-gc-and-snapshots.md (never truncate past the applied index)"
    );
    compact(&mut p, 30, 6);
    assert_eq!(
        truncated(&p),
        (30, 6),
        "applied index 30: a CompactLog to (30, 6), the applied index itself, must move the \
         truncated state there"
    );
    assert_eq!(raft::Storage::first_index(p.storage()), Ok(31), "the log must start after 30");
}

fn snapshot(region_id: u64, index: u64, term: u64) -> Snapshot {
    let mut region = first_region(region_id, &[(1, 1), (2, 2), (3, 3)]);
    region.region_epoch.as_mut().expect("an epoch").conf_ver = 2;
    let data = RaftSnapshotData { region: Some(region), ..Default::default() };
    Snapshot {
        data: data.encode_to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState { nodes: vec![1, 2, 3] }),
            index,
            term,
        }),
    }
}

fn puts(wb: &WriteBatch) -> Vec<(Vec<u8>, Vec<u8>)> {
    wb.ops()
        .iter()
        .filter_map(|op| match op {
            WriteOp::Put { cf: Cf::Meta, key, value } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn deletes(wb: &WriteBatch) -> Vec<Vec<u8>> {
    wb.ops()
        .iter()
        .filter_map(|op| match op {
            WriteOp::Delete { cf: Cf::Meta, key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Storing a snapshot replaces the whole log: the old entries are deleted,
/// the raft state ends at the snapshot, the apply state is the snapshot's
/// (applied and truncated), and the region state is the snapshot's region,
/// marked `Applying` until its data is written.
#[test]
fn apply_snapshot_replaces_the_log_and_the_states_2c() {
    let mut p = peer();
    grow_log(&mut p, 12, 10);
    let (mut kv_wb, mut raft_wb) = (WriteBatch::new(), WriteBatch::new());
    let result = p
        .storage_mut()
        .apply_snapshot(&snapshot(1, 50, 7), &mut kv_wb, &mut raft_wb)
        .expect("a snapshot of this region is stored");
    assert_eq!(result.key, SnapKey::new(1, 7, 50), "the snapshot's files are named by its key");
    assert_eq!(result.region.region_epoch.map(|e| e.conf_ver), Some(2));

    let ps = p.storage();
    assert_eq!((ps.raft_state.last_index, ps.raft_state.last_term), (50, 7), "raft state");
    assert_eq!(ps.applied_index(), 50, "the applied index is the snapshot's");
    assert_eq!(truncated(&p), (50, 7), "the truncated state is the snapshot's");
    assert_eq!(
        p.region().region_epoch.map(|e| e.conf_ver),
        Some(2),
        "the region is the snapshot's"
    );

    let mut deleted = deletes(&raft_wb);
    deleted.sort();
    let old: Vec<Vec<u8>> = (6..=12).map(|i| keys::raft_log_key(1, i).to_vec()).collect();
    assert_eq!(deleted, old, "the raft batch must delete the old entries 6..=12, and only them");

    let written = puts(&kv_wb);
    let apply = written.iter().find(|(k, _)| k[..] == keys::apply_state_key(1)[..]);
    let apply: RaftApplyState =
        RaftApplyState::decode(apply.expect("the kv batch must hold the apply state").1.as_slice())
            .expect("decode");
    assert_eq!(apply.applied_index, 50);
    assert_eq!(apply.truncated_state, Some(RaftTruncatedState { index: 50, term: 7 }));
    let state = written.iter().find(|(k, _)| k[..] == keys::region_state_key(1)[..]);
    let state = RegionLocalState::decode(
        state.expect("the kv batch must hold the region state").1.as_slice(),
    )
    .expect("decode");
    assert_eq!(state.state(), PeerState::Applying, "the region is Applying until the data is in");
    assert_eq!(state.region.and_then(|r| r.region_epoch).map(|e| e.conf_ver), Some(2));
}

/// A snapshot that does not decode or is of another region is an error,
/// and changes nothing.
#[test]
fn apply_snapshot_rejects_a_bad_snapshot_2c() {
    let mut p = peer();
    grow_log(&mut p, 12, 10);
    for (what, snap) in [
        ("of another region", snapshot(9, 50, 7)),
        ("that does not decode", Snapshot { data: vec![0xFF; 7], ..snapshot(1, 50, 7) }),
    ] {
        let (mut kv_wb, mut raft_wb) = (WriteBatch::new(), WriteBatch::new());
        let result = p.storage_mut().apply_snapshot(&snap, &mut kv_wb, &mut raft_wb);
        assert!(result.is_err(), "a snapshot {what} must be an error");
        assert!(kv_wb.is_empty() && raft_wb.is_empty(), "a snapshot {what} must write nothing");
        assert_eq!(p.storage().raft_state.last_index, 12, "a snapshot {what} changes nothing");
        assert_eq!(truncated(&p), (5, 5), "a snapshot {what} changes nothing");
    }
}
