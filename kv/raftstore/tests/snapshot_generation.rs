//! Snapshot generation as raft sees it through `PeerStorage` (given code,
//! not graded): "temporarily unavailable" while a worker builds it, a
//! stale one built again, and a clear error after too many failures.

use std::sync::Arc;

use raft::Storage as _;
use raft::eraftpb::{Snapshot, SnapshotMetadata};
use tinykv_engine::MemoryDisk;
use tinykv_raftstore::bootstrap::{bootstrap_region, bootstrap_store, first_region};
use tinykv_raftstore::peer_storage::{GenState, MAX_SNAP_GEN_TRIES};
use tinykv_raftstore::{Engines, PeerStorage};

fn storage() -> PeerStorage {
    let engines =
        Engines::new(Arc::new(MemoryDisk::new().open()), Arc::new(MemoryDisk::new().open()));
    let region = first_region(1, &[(1, 1), (2, 2), (3, 3)]);
    bootstrap_store(&engines, 1, 1).expect("bootstrap the store");
    bootstrap_region(&engines, &region).expect("bootstrap the region");
    PeerStorage::new(engines, region, "[region 1 peer 1]".into()).expect("the storage loads")
}

fn built(index: u64) -> Snapshot {
    Snapshot {
        data: Vec::new(),
        metadata: Some(SnapshotMetadata { conf_state: None, index, term: 5 }),
    }
}

#[test]
fn a_snapshot_is_unavailable_until_the_worker_built_it() {
    let ps = storage();
    assert_eq!(ps.snapshot(), Err(raft::Error::SnapshotTemporarilyUnavailable));
    assert_eq!(ps.gen_state(), GenState::Requested);
    assert!(ps.take_gen_request(), "the request is handed to the peer once");
    assert!(!ps.take_gen_request());
    assert_eq!(ps.snapshot(), Err(raft::Error::SnapshotTemporarilyUnavailable));
    ps.on_snapshot_generated(Ok(built(5)));
    assert_eq!(ps.snapshot(), Ok(built(5)), "the built snapshot is handed out");
    assert_eq!(ps.gen_state(), GenState::Idle, "once: the next request builds a new one");
}

#[test]
fn a_snapshot_older_than_the_truncated_index_is_built_again() {
    let mut ps = storage();
    ps.snapshot().unwrap_err();
    assert!(ps.take_gen_request());
    ps.on_snapshot_generated(Ok(built(5)));
    ps.apply_state.truncated_state.as_mut().expect("a truncated state").index = 9;
    assert_eq!(ps.snapshot(), Err(raft::Error::SnapshotTemporarilyUnavailable));
    assert!(ps.take_gen_request(), "a stale snapshot asks for a new generation");
}

#[test]
fn generation_gives_up_with_a_clear_error_after_too_many_failures() {
    let ps = storage();
    ps.snapshot().unwrap_err();
    for _ in 1..MAX_SNAP_GEN_TRIES {
        assert!(ps.take_gen_request());
        ps.on_snapshot_generated(Err("disk full".into()));
        assert_eq!(ps.snapshot(), Err(raft::Error::SnapshotTemporarilyUnavailable));
    }
    assert!(ps.take_gen_request());
    ps.on_snapshot_generated(Err("disk full".into()));
    let Err(raft::Error::Store(msg)) = ps.snapshot() else {
        panic!("after {MAX_SNAP_GEN_TRIES} failures the storage must give up with an error");
    };
    assert!(msg.contains("gave up") && msg.contains("disk full"), "{msg}");
    assert_eq!(ps.gen_state(), GenState::Idle, "the next request starts afresh");
    assert_eq!(ps.snapshot(), Err(raft::Error::SnapshotTemporarilyUnavailable));
}
