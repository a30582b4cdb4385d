//! Background work of a store: building and applying snapshots, deleting
//! compacted raft log entries (lab 2c; all given code).
//!
//! A peer never does slow work itself. It hands a [`Task`] to its driver
//! ([`Context::schedule`](crate::Context::schedule)); the driver runs it
//! with [`run_task`] — on a worker thread in the server, as a delayed event
//! in the simulator — and hands the [`TaskResult`] back to the store
//! ([`Store::on_task_result`](crate::Store::on_task_result)).
//!
//! | task | what it does | who asks |
//! |---|---|---|
//! | [`Task::GenSnapshot`] | writes the region's data, as of one point-in-time engine snapshot, into snapshot files | a leader whose raft node needs a snapshot for a follower |
//! | [`Task::ApplySnapshot`] | replaces the region's data in the kv engine with a received snapshot's, then marks the region `Normal` | a follower that persisted a snapshot's metadata |
//! | [`Task::RaftLogGc`] | syncs the kv engine, then deletes the region's raft log entries below an index | applying a `CompactLog` command |
//! | [`Task::SplitCheck`] | measures the region's data in one engine view and, if it is too large, finds where to split it | a leader whose region grew (lab 3b, [`crate::split_check`]) |

use std::fmt;

use prost::Message as _;
use raft::eraftpb::{ConfState, Snapshot, SnapshotMetadata};
use tinykv_engine::{Cf, WriteBatch, keys};
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_serverpb::{PeerState, RaftApplyState, RaftSnapshotData, RegionLocalState};

use crate::engines::{Engines, get_msg_at, put_msg};
use crate::snap::{SnapKey, SnapKind, SnapManager};

/// Keys written per kv batch while a snapshot is applied (a crash between
/// two batches leaves the region `Applying`; a restart applies it again).
pub const APPLY_BATCH_KEYS: usize = 64;

/// A piece of background work. See the module docs.
pub enum Task {
    /// Build the snapshot `key` of `region` from `engine_snap`, a view of
    /// the kv engine taken when the region's applied index was `key.index`.
    GenSnapshot {
        /// The peer that asked for it (its result is dropped if the store
        /// has another peer of the region by then).
        peer_id: u64,
        /// The snapshot to build (region, term and index of the last
        /// entry it covers).
        key: SnapKey,
        /// The region as the leader knows it.
        region: Region,
        /// The members at `key.index`.
        conf_state: ConfState,
        /// The kv engine as of the applied index.
        engine_snap: Box<dyn tinykv_engine::Snapshot>,
    },
    /// Write the received snapshot `key` into the kv engine over `region`'s
    /// range, then mark the region `Normal`.
    ApplySnapshot {
        /// The peer that asked for it.
        peer_id: u64,
        /// The received snapshot.
        key: SnapKey,
        /// The region the snapshot carries.
        region: Region,
    },
    /// Measure `region`'s data in `engine_snap` and find a split key if it
    /// holds more than `max_size` bytes (see [`crate::split_check`]).
    SplitCheck {
        /// The peer that asked for it.
        peer_id: u64,
        /// The region as the leader knew it (its epoch goes back with the
        /// result: a split key found in an older range is useless).
        region: Region,
        /// The kv engine when the check was asked for.
        engine_snap: Box<dyn tinykv_engine::Snapshot>,
        /// Split only above this size.
        max_size: u64,
        /// Split after about this many bytes.
        split_size: u64,
    },
    /// Delete region `region_id`'s raft log entries with index `< end`,
    /// after making the kv engine durable (the truncated state that says
    /// they are not needed lives there, in unsynced batches).
    RaftLogGc {
        /// The peer that asked for it.
        peer_id: u64,
        /// The region.
        region_id: u64,
        /// One past the last entry to delete.
        end: u64,
    },
}

impl Task {
    /// The region the task is for.
    pub fn region_id(&self) -> u64 {
        match self {
            Task::GenSnapshot { key, .. } | Task::ApplySnapshot { key, .. } => key.region_id,
            Task::RaftLogGc { region_id, .. } => *region_id,
            Task::SplitCheck { region, .. } => region.id,
        }
    }

    /// Whether the task touches snapshots (the "region worker" runs those;
    /// log GC runs on its own worker).
    pub fn is_snapshot_task(&self) -> bool {
        matches!(self, Task::GenSnapshot { .. } | Task::ApplySnapshot { .. })
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::GenSnapshot { key, .. } => write!(f, "GenSnapshot({key})"),
            Task::ApplySnapshot { key, .. } => write!(f, "ApplySnapshot({key})"),
            Task::RaftLogGc { region_id, end, .. } => {
                write!(f, "RaftLogGc(region {region_id}, below {end})")
            }
            Task::SplitCheck { region, .. } => write!(f, "SplitCheck(region {})", region.id),
        }
    }
}

/// What a finished task reports to the store.
#[derive(Debug)]
pub enum TaskResult {
    /// A snapshot was built (or could not be: the error says why).
    SnapshotGenerated {
        /// The peer that asked for it.
        peer_id: u64,
        /// The region.
        region_id: u64,
        /// The snapshot for the raft node, or what went wrong.
        result: Result<Snapshot, String>,
    },
    /// A snapshot's data is in the kv engine (or could not be written).
    SnapshotApplied {
        /// The peer that asked for it.
        peer_id: u64,
        /// The snapshot.
        key: SnapKey,
        /// Done, or what went wrong.
        result: Result<(), String>,
    },
    /// A split check finished.
    SplitChecked {
        /// The peer that asked for it.
        peer_id: u64,
        /// The region as it was checked (its epoch tells whether the
        /// split key still applies).
        region: Region,
        /// The region's data size in bytes, and where to split it.
        result: crate::split_check::SplitCheckResult,
    },
    /// Raft log entries were deleted.
    RaftLogGcDone {
        /// The peer that asked for it.
        peer_id: u64,
        /// The region.
        region_id: u64,
        /// How many entries were deleted, or what went wrong.
        result: Result<u64, String>,
    },
}

impl TaskResult {
    /// The region the result is for.
    pub fn region_id(&self) -> u64 {
        match self {
            TaskResult::SnapshotGenerated { region_id, .. }
            | TaskResult::RaftLogGcDone { region_id, .. } => *region_id,
            TaskResult::SnapshotApplied { key, .. } => key.region_id,
            TaskResult::SplitChecked { region, .. } => region.id,
        }
    }

    /// The peer that asked for the task.
    pub fn peer_id(&self) -> u64 {
        match self {
            TaskResult::SnapshotGenerated { peer_id, .. }
            | TaskResult::SnapshotApplied { peer_id, .. }
            | TaskResult::RaftLogGcDone { peer_id, .. }
            | TaskResult::SplitChecked { peer_id, .. } => *peer_id,
        }
    }
}

/// Runs `task` on a store's engines and snapshot files.
pub fn run_task(task: Task, engines: &Engines, snaps: &SnapManager) -> TaskResult {
    match task {
        Task::GenSnapshot { peer_id, key, region, conf_state, engine_snap } => {
            let result = gen_snapshot(key, &region, conf_state, engine_snap.as_ref(), snaps);
            if let Err(e) = &result {
                log::warn!("[region {}] snapshot {key} not built: {e}", region.id);
            }
            TaskResult::SnapshotGenerated { peer_id, region_id: region.id, result }
        }
        Task::ApplySnapshot { peer_id, key, region } => {
            let result = apply_snapshot(key, &region, engines, snaps);
            if let Err(e) = &result {
                log::error!("[region {}] snapshot {key} not applied: {e}", region.id);
            }
            TaskResult::SnapshotApplied { peer_id, key, result }
        }
        Task::RaftLogGc { peer_id, region_id, end } => {
            let result = gc_raft_log(region_id, end, engines);
            TaskResult::RaftLogGcDone { peer_id, region_id, result }
        }
        Task::SplitCheck { peer_id, region, engine_snap, max_size, split_size } => {
            let result =
                crate::split_check::check(&region, engine_snap.as_ref(), max_size, split_size);
            TaskResult::SplitChecked { peer_id, region, result }
        }
    }
}

fn gen_snapshot(
    key: SnapKey,
    region: &Region,
    conf_state: ConfState,
    engine_snap: &dyn tinykv_engine::Snapshot,
    snaps: &SnapManager,
) -> Result<Snapshot, String> {
    let apply_state: RaftApplyState = get_msg_at(engine_snap, &keys::apply_state_key(region.id))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("region {} has no apply state", region.id))?;
    if apply_state.applied_index != key.index {
        return Err(format!(
            "the engine view is at applied index {}, the snapshot wants {}",
            apply_state.applied_index, key.index
        ));
    }
    let meta = snaps.build(key, region, engine_snap).map_err(|e| e.to_string())?;
    let file_size = meta.cf_files.iter().map(|f| f.size).sum();
    let data = RaftSnapshotData {
        region: Some(region.clone()),
        file_size,
        data: Vec::new(),
        meta: Some(meta),
    };
    log::info!("[region {}] built snapshot {key} ({file_size} bytes)", region.id);
    Ok(Snapshot {
        data: data.encode_to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(conf_state),
            index: key.index,
            term: key.term,
        }),
    })
}

fn apply_snapshot(
    key: SnapKey,
    region: &Region,
    engines: &Engines,
    snaps: &SnapManager,
) -> Result<(), String> {
    // Checks every file's size and checksum before anything is written.
    let records = snaps.open_apply(key).map_err(|e| e.to_string())?;
    clear_range(engines, region)?;
    let mut wb = WriteBatch::new();
    let mut written = 0u64;
    for record in records {
        let (cf, k, v) = record.map_err(|e| e.to_string())?;
        wb.put(cf, &k, &v);
        written += 1;
        if wb.len() >= APPLY_BATCH_KEYS {
            engines.kv.write(std::mem::take(&mut wb)).map_err(|e| e.to_string())?;
        }
    }
    let state = RegionLocalState { state: PeerState::Normal as i32, region: Some(region.clone()) };
    put_msg(&mut wb, &keys::region_state_key(region.id), &state);
    engines.kv.write(wb.sync()).map_err(|e| e.to_string())?;
    if let Err(e) = snaps.delete(key, SnapKind::Received) {
        log::warn!("[region {}] snapshot {key} applied but its files stay: {e}", region.id);
    }
    log::info!("[region {}] applied snapshot {key} ({written} keys)", region.id);
    Ok(())
}

/// Deletes every data key of `region`'s range from the kv engine.
fn clear_range(engines: &Engines, region: &Region) -> Result<(), String> {
    let view = engines.kv.snapshot();
    let end = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
    let mut wb = WriteBatch::new();
    for cf in Cf::DATA {
        for kv in view.iter(cf, &region.start_key, end) {
            let (k, _) = kv.map_err(|e| e.to_string())?;
            wb.delete(cf, &k);
            if wb.len() >= APPLY_BATCH_KEYS {
                engines.kv.write(std::mem::take(&mut wb)).map_err(|e| e.to_string())?;
            }
        }
    }
    if !wb.is_empty() {
        engines.kv.write(wb).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn gc_raft_log(region_id: u64, end: u64, engines: &Engines) -> Result<u64, String> {
    // The truncated state that makes these entries garbage is in the kv
    // engine, maybe not yet synced: make it durable first, or a crash
    // could bring back a truncated state that still needs them.
    engines.kv.sync().map_err(|e| e.to_string())?;
    let (start, _) = keys::raft_log_range(region_id);
    let stop = keys::raft_log_key(region_id, end);
    let view = engines.raft.snapshot();
    let mut wb = WriteBatch::new();
    for kv in view.iter(Cf::Meta, &start, Some(&stop)) {
        let (k, _) = kv.map_err(|e| e.to_string())?;
        wb.delete(Cf::Meta, &k);
    }
    let deleted = wb.len() as u64;
    if deleted > 0 {
        // No sync: a lost delete leaves garbage that the next GC removes.
        engines.raft.write(wb).map_err(|e| e.to_string())?;
    }
    log::debug!("[region {region_id}] deleted {deleted} raft log entries below {end}");
    Ok(deleted)
}
