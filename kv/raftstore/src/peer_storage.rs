//! A peer's raft storage, kept in the store's two engines (lab 2b).
//!
//! [`PeerStorage`] is what the raft node of a peer reads its log through
//! (it implements [`raft::Storage`]), and what the peer writes a `Ready`'s
//! log entries and hard state into ([`PeerStorage::save_ready_state`]).
//!
//! Three states are persisted per region (keys in [`tinykv_engine::keys`]):
//!
//! | state | engine | holds |
//! |---|---|---|
//! | `RaftLocalState` | raft | hard state (term, vote, commit), last log index and term |
//! | `RaftApplyState` | kv | applied index, truncated state (where the log starts) |
//! | `RegionLocalState` | kv | the region (range, epoch, peers) and whether the peer is a tombstone |
//!
//! The log itself lives in the raft engine, one key per entry. The entries
//! run from `truncated_state.index + 1` to `raft_state.last_index`; the
//! entry at `truncated_state.index` is gone, only its term is kept.
//!
//! # Snapshots (lab 2c)
//!
//! When a leader's raft node needs a snapshot for a follower whose next
//! entries were compacted, it calls [`raft::Storage::snapshot`]. The
//! storage does not build it on the spot: it asks for a generation task
//! (the peer schedules it, see `Peer::schedule_snapshot_generation`) and
//! answers "temporarily unavailable" until the worker's result is in. A
//! snapshot older than the truncated index is built again; after
//! [`MAX_SNAP_GEN_TRIES`] failures in a row the storage gives up with an
//! error that says why, and the next request starts afresh.
//!
//! A follower stores a received snapshot with
//! [`apply_snapshot`](PeerStorage::apply_snapshot) (you write it): the new
//! raft state, apply state and region state (`Applying`) are persisted,
//! then a worker writes the data and marks the region `Normal` again.
//!
//! # Crash safety of a snapshot
//!
//! The kv batch (apply state, region state) is written and synced *before*
//! the raft batch (raft state, old log entries deleted). If a crash falls
//! between the two, the raft state on disk still has the old commit index,
//! below the applied index; [`PeerStorage::new`] notices and rebuilds the
//! raft state from the snapshot's (see `recover_snapshot_raft_state`).

use std::cell::{Cell, RefCell};

use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{RaftState, Ready};
use tinykv_engine::keys;
use tinykv_engine::{Cf, WriteBatch};
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState};

use crate::snap::SnapKey;

use crate::engines::{Engines, get_msg};
// SOLUTION BEGIN lab 2b
use crate::engines::put_msg;
// SOLUTION END
// SOLUTION BEGIN lab 2c
use tinykv_proto::raft_serverpb::{PeerState, RaftSnapshotData, RegionLocalState};
// SOLUTION END
use crate::error::{Error, Result};

/// Snapshot generations that may fail in a row before
/// [`raft::Storage::snapshot`] gives up with an error.
pub const MAX_SNAP_GEN_TRIES: u32 = 5;

/// Where the generation of a snapshot for the raft node stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum GenState {
    /// Nothing asked for.
    #[default]
    Idle,
    /// Raft asked; the peer has not scheduled the task yet.
    Requested,
    /// The task is running.
    Generating,
    /// Built; the next `snapshot()` call hands it out.
    Ready(Snapshot),
    /// The task failed; the next `snapshot()` call tries again.
    Failed(String),
}

/// What storing a snapshot changed, for the peer to act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplySnapResult {
    /// The region before the snapshot.
    pub prev_region: Region,
    /// The region the snapshot carries (now this peer's).
    pub region: Region,
    /// The snapshot's files, to hand to the apply task.
    pub key: SnapKey,
}

/// A peer's storage. See the module docs.
#[derive(Debug)]
pub struct PeerStorage {
    /// The region as this peer knows it: range, epoch and members.
    pub region: Region,
    /// The persisted raft state. Invariant: once
    /// [`save_ready_state`](Self::save_ready_state) returns, this is what
    /// the raft engine holds, `last_index`/`last_term` name the last entry
    /// of the persisted log (the truncated state's index and term when the
    /// log is empty), and `hard_state.commit <= last_index`.
    pub raft_state: RaftLocalState,
    /// The apply state. Invariant: `truncated_state.index <=
    /// applied_index <= hard_state.commit`; the kv engine holds it (in the
    /// same batch as the data it covers) once an apply batch is written.
    pub apply_state: RaftApplyState,
    /// The store's engines.
    pub engines: Engines,
    /// `[region R peer P]`, for log lines and panics.
    pub tag: String,
    /// Snapshot generation (interior mutability: raft asks through `&self`).
    snap_gen: RefCell<GenState>,
    /// Generations that failed in a row (at most [`MAX_SNAP_GEN_TRIES`]).
    gen_tries: Cell<u32>,
    /// The index of the last snapshot handed to raft (0: none).
    last_snapshot_index: Cell<u64>,
}

impl PeerStorage {
    /// Loads the storage of `region`'s peer from the engines.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the raft or apply state is missing or does not
    /// decode; the engine's error.
    pub fn new(engines: Engines, region: Region, tag: String) -> Result<PeerStorage> {
        let apply_state: RaftApplyState =
            get_msg(engines.kv.as_ref(), &keys::apply_state_key(region.id))?.ok_or_else(|| {
                Error::Corrupt(format!("{tag} has no apply state in the kv engine"))
            })?;
        let raft_state: Option<RaftLocalState> =
            get_msg(engines.raft.as_ref(), &keys::raft_state_key(region.id))?;
        let raft_state = match raft_state {
            Some(state) => state,
            // A region split off another (lab 3b) starts with the initial
            // apply state and no raft state: its log starts where a
            // bootstrapped region's does.
            None if is_initial(&apply_state) => initial_raft_state(),
            None => {
                return Err(Error::Corrupt(format!("{tag} has no raft state in the raft engine")));
            }
        };
        let mut ps = PeerStorage {
            region,
            raft_state,
            apply_state,
            engines,
            tag,
            snap_gen: RefCell::default(),
            gen_tries: Cell::new(0),
            last_snapshot_index: Cell::new(0),
        };
        if ps.hard_state().commit < ps.apply_state.applied_index {
            ps.recover_snapshot_raft_state()?;
        }
        ps.check_states()?;
        Ok(ps)
    }

    /// The storage of a peer created for a region this store knows nothing
    /// of yet (lab 3b: a message from a leader that added it): no range,
    /// no members, an empty log at index 0 and nothing applied, so the
    /// leader finds its log compacted and sends a snapshot. Nothing is
    /// written until that snapshot is stored.
    pub fn uninitialized(engines: Engines, region_id: u64, tag: String) -> PeerStorage {
        PeerStorage {
            region: Region { id: region_id, ..Default::default() },
            raft_state: RaftLocalState::default(),
            apply_state: RaftApplyState::default(),
            engines,
            tag,
            snap_gen: RefCell::default(),
            gen_tries: Cell::new(0),
            last_snapshot_index: Cell::new(0),
        }
    }

    /// A crash fell between the two batches of a snapshot (see the module
    /// docs): the apply state is the snapshot's, the raft state is older.
    /// Rebuilds the raft state from the snapshot's index and term (keeping
    /// the term if it is newer, without a vote if not) and deletes the old
    /// log entries past it, in one synced batch.
    fn recover_snapshot_raft_state(&mut self) -> Result<()> {
        let truncated = self.truncated();
        if truncated.index != self.apply_state.applied_index {
            return Err(Error::Corrupt(format!(
                "{} applied index {} is past the commit index {}, and is not a snapshot's \
                 (truncated index {})",
                self.tag,
                self.apply_state.applied_index,
                self.hard_state().commit,
                truncated.index
            )));
        }
        let old = self.raft_state;
        let mut hs = self.hard_state();
        if truncated.term > hs.term {
            hs.term = truncated.term;
            hs.vote = 0;
        }
        hs.commit = truncated.index;
        self.raft_state = RaftLocalState {
            hard_state: Some(hs),
            last_index: truncated.index,
            last_term: truncated.term,
        };
        let mut raft_wb = WriteBatch::new();
        for stale in truncated.index + 1..=old.last_index {
            raft_wb.delete(Cf::Meta, &keys::raft_log_key(self.region.id, stale));
        }
        raft_wb.put(
            Cf::Meta,
            &keys::raft_state_key(self.region.id),
            &self.raft_state.encode_to_vec(),
        );
        self.engines.raft.write(raft_wb.sync())?;
        log::warn!(
            "{} recovered the raft state of snapshot ({}, {}) (the raft engine had commit {}, \
             last index {})",
            self.tag,
            truncated.index,
            truncated.term,
            old.hard_state.unwrap_or_default().commit,
            old.last_index
        );
        Ok(())
    }

    fn check_states(&self) -> Result<()> {
        let (truncated, applied) = (self.truncated().index, self.apply_state.applied_index);
        let (commit, last) = (self.hard_state().commit, self.raft_state.last_index);
        if !(truncated <= applied && applied <= commit && commit <= last) {
            return Err(Error::Corrupt(format!(
                "{} inconsistent states: truncated {truncated}, applied {applied}, commit \
                 {commit}, last index {last}",
                self.tag
            )));
        }
        Ok(())
    }

    /// The region id.
    pub fn region_id(&self) -> u64 {
        self.region.id
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.raft_state.hard_state.unwrap_or_default()
    }

    /// Where the log was truncated (the entry before the first one).
    pub fn truncated(&self) -> RaftTruncatedState {
        self.apply_state.truncated_state.unwrap_or_default()
    }

    /// The last applied index.
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    fn first(&self) -> u64 {
        self.truncated().index + 1
    }

    fn read_entry(&self, index: u64) -> raft::Result<Entry> {
        let key = keys::raft_log_key(self.region.id, index);
        let value = self
            .engines
            .raft
            .get(Cf::Meta, &key)
            .map_err(|e| raft::Error::Store(format!("{} reading entry {index}: {e}", self.tag)))?
            .ok_or_else(|| {
                raft::Error::Store(format!("{} entry {index} is missing from the log", self.tag))
            })?;
        Entry::decode(value.as_slice())
            .map_err(|e| raft::Error::Store(format!("{} entry {index} is corrupt: {e}", self.tag)))
    }

    /// Puts `entries` (consecutive, from the leader or this peer's own
    /// proposals) into `raft_wb` and updates `raft_state.last_index` and
    /// `last_term`. Entries of the old log past the new last index are
    /// stale (a new leader replaced them): delete them in the same batch.
    ///
    /// Checked by every lab 2b test (nothing replicates without it), most
    /// directly by `restart_keeps_the_log_2b` and `persist_*_2b`.
    pub fn append(&mut self, entries: &[Entry], raft_wb: &mut WriteBatch) {
        // SOLUTION BEGIN lab 2b
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return };
        let region_id = self.region.id;
        assert!(
            first.index > self.truncated().index,
            "{} append: entry {} is before the truncated index {}",
            self.tag,
            first.index,
            self.truncated().index
        );
        for e in entries {
            raft_wb.put(Cf::Meta, &keys::raft_log_key(region_id, e.index), &e.encode_to_vec());
        }
        for stale in last.index + 1..=self.raft_state.last_index {
            raft_wb.delete(Cf::Meta, &keys::raft_log_key(region_id, stale));
        }
        self.raft_state.last_index = last.index;
        self.raft_state.last_term = last.term;
        // SOLUTION STUB
        // let _ = (entries, raft_wb);
        // todo!("lab 2b: PeerStorage::append (kv/raftstore/src/peer_storage.rs)")
        // SOLUTION END
    }

    /// Persists what `rd` asks to persist, before any of its messages are
    /// sent: its snapshot ([`apply_snapshot`](Self::apply_snapshot), lab
    /// 2c), its entries ([`append`](Self::append)) and its hard state.
    /// Raft state and log go to the raft engine in one synced batch, with
    /// the updated `RaftLocalState`. A snapshot's kv batch (apply state,
    /// region state) is written and synced *first* (see the module docs).
    ///
    /// Returns what a stored snapshot changed, for the peer to schedule
    /// the data's apply; `None` without a snapshot.
    ///
    /// # Errors
    ///
    /// The engine's error.
    ///
    /// Checked by every lab 2b test; `persist_*_2b` crash stores, so a
    /// batch that is not synced loses acknowledged writes there. Lab 2c:
    /// every `snapshot_*_2c` test; `crash_between_snapshot_batches_2c`.
    pub fn save_ready_state(&mut self, rd: &Ready) -> Result<Option<ApplySnapResult>> {
        let mut kv_wb = WriteBatch::new();
        let mut raft_wb = WriteBatch::new();
        let before = self.raft_state;
        // SOLUTION BEGIN lab 2c
        let applied = if is_empty_snapshot(&rd.snapshot) {
            None
        } else {
            Some(self.apply_snapshot(&rd.snapshot, &mut kv_wb, &mut raft_wb)?)
        };
        // SOLUTION STUB
        // if !is_empty_snapshot(&rd.snapshot) {
        //     todo!("lab 2c: store rd.snapshot in PeerStorage::save_ready_state (kv/raftstore/src/peer_storage.rs)")
        // }
        // let _ = (&mut kv_wb, &mut raft_wb);
        // let applied: Option<ApplySnapResult> = None;
        // SOLUTION END
        // SOLUTION BEGIN lab 2b
        self.append(&rd.entries, &mut raft_wb);
        if let Some(hs) = rd.hard_state {
            self.raft_state.hard_state = Some(hs);
        }
        if self.raft_state != before {
            put_msg(&mut raft_wb, &keys::raft_state_key(self.region.id), &self.raft_state);
        }
        // The snapshot's kv batch first: see "Crash safety" in the module docs.
        if !kv_wb.is_empty() {
            self.engines.kv.write(kv_wb.sync())?;
        }
        if !raft_wb.is_empty() {
            self.engines.raft.write(raft_wb.sync())?;
        }
        Ok(applied)
        // SOLUTION STUB
        // let _ = (before, applied, kv_wb, raft_wb);
        // todo!("lab 2b: PeerStorage::save_ready_state (kv/raftstore/src/peer_storage.rs)")
        // SOLUTION END
    }

    /// Stores the snapshot `snap` (lab 2c), which the raft node accepted:
    ///
    /// 1. decode its data, a `RaftSnapshotData` (the region it carries);
    /// 2. delete this peer's log entries (`first..=last_index`) in
    ///    `raft_wb`: the snapshot replaces the whole log;
    /// 3. the raft state ends at the snapshot: `last_index`/`last_term` are
    ///    its index and term (`save_ready_state` writes it);
    /// 4. the apply state: applied index and truncated state are the
    ///    snapshot's index and term; put it in `kv_wb`;
    /// 5. the region is the snapshot's; put a `RegionLocalState` with
    ///    state `Applying` in `kv_wb` (the data comes later, from a worker,
    ///    which sets `Normal`).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the data does not decode or names another
    /// region (the store checked it before stepping it, so this means a
    /// bug).
    ///
    /// Checked by every `snapshot_*_2c` test and `one_snapshot_2c`;
    /// `crash_between_snapshot_batches_2c` restarts a store between the
    /// two batches.
    pub fn apply_snapshot(
        &mut self,
        snap: &Snapshot,
        kv_wb: &mut WriteBatch,
        raft_wb: &mut WriteBatch,
    ) -> Result<ApplySnapResult> {
        // SOLUTION BEGIN lab 2c
        let meta = snap.metadata.clone().unwrap_or_default();
        let data = RaftSnapshotData::decode(snap.data.as_slice()).map_err(|e| {
            Error::Corrupt(format!("{} snapshot at {} does not decode: {e}", self.tag, meta.index))
        })?;
        let region = data.region.unwrap_or_default();
        if region.id != self.region.id {
            return Err(Error::Corrupt(format!(
                "{} got a snapshot of region {}",
                self.tag, region.id
            )));
        }
        for index in self.first()..=self.raft_state.last_index {
            raft_wb.delete(Cf::Meta, &keys::raft_log_key(region.id, index));
        }
        self.raft_state.last_index = meta.index;
        self.raft_state.last_term = meta.term;
        self.apply_state.applied_index = meta.index;
        self.apply_state.truncated_state =
            Some(RaftTruncatedState { index: meta.index, term: meta.term });
        put_msg(kv_wb, &keys::apply_state_key(region.id), &self.apply_state);
        let state =
            RegionLocalState { state: PeerState::Applying as i32, region: Some(region.clone()) };
        put_msg(kv_wb, &keys::region_state_key(region.id), &state);
        let prev_region = std::mem::replace(&mut self.region, region.clone());
        log::info!("{} stores snapshot ({}, {})", self.tag, meta.index, meta.term);
        Ok(ApplySnapResult {
            prev_region,
            region,
            key: SnapKey::new(self.region.id, meta.term, meta.index),
        })
        // SOLUTION STUB
        // let _ = (snap, kv_wb, raft_wb);
        // todo!("lab 2c: PeerStorage::apply_snapshot (kv/raftstore/src/peer_storage.rs)")
        // SOLUTION END
    }

    // ----- snapshot generation (given) ---------------------------------------

    /// Takes a pending generation request (raft asked for a snapshot since
    /// the last call) and marks it as being generated.
    pub fn take_gen_request(&self) -> bool {
        let mut state = self.snap_gen.borrow_mut();
        if *state == GenState::Requested {
            *state = GenState::Generating;
            true
        } else {
            false
        }
    }

    /// The generation task's result. Ignored unless a generation runs.
    pub fn on_snapshot_generated(&self, result: std::result::Result<Snapshot, String>) {
        let mut state = self.snap_gen.borrow_mut();
        if *state == GenState::Generating {
            *state = match result {
                Ok(snap) => GenState::Ready(snap),
                Err(e) => GenState::Failed(e),
            };
        }
    }

    /// The index of the last snapshot handed to raft (0: none yet).
    pub fn last_snapshot_index(&self) -> u64 {
        self.last_snapshot_index.get()
    }

    /// Where snapshot generation stands.
    pub fn gen_state(&self) -> GenState {
        self.snap_gen.borrow().clone()
    }

    /// Another try after a failed or stale generation, or the error after
    /// [`MAX_SNAP_GEN_TRIES`] of them.
    fn retry_generation(&self, why: String) -> raft::Result<Snapshot> {
        let tries = self.gen_tries.get() + 1;
        if tries >= MAX_SNAP_GEN_TRIES {
            self.gen_tries.set(0);
            *self.snap_gen.borrow_mut() = GenState::Idle;
            let msg = format!(
                "{} gave up generating a snapshot after {tries} tries; the last one: {why}",
                self.tag
            );
            log::error!("{msg}");
            return Err(raft::Error::Store(msg));
        }
        log::info!("{} generates the snapshot again (try {}): {why}", self.tag, tries + 1);
        self.gen_tries.set(tries);
        *self.snap_gen.borrow_mut() = GenState::Requested;
        Err(raft::Error::SnapshotTemporarilyUnavailable)
    }
}

/// Whether `state` is a new region's: nothing applied past the initial
/// index, where its log was truncated.
fn is_initial(state: &RaftApplyState) -> bool {
    let truncated = state.truncated_state.unwrap_or_default();
    state.applied_index == keys::RAFT_INIT_LOG_INDEX
        && truncated.index == keys::RAFT_INIT_LOG_INDEX
        && truncated.term == keys::RAFT_INIT_LOG_TERM
}

/// The raft state of a new region: term 5, commit 5, log ending at 5.
fn initial_raft_state() -> RaftLocalState {
    RaftLocalState {
        hard_state: Some(raft::eraftpb::HardState {
            term: keys::RAFT_INIT_LOG_TERM,
            vote: 0,
            commit: keys::RAFT_INIT_LOG_INDEX,
        }),
        last_index: keys::RAFT_INIT_LOG_INDEX,
        last_term: keys::RAFT_INIT_LOG_TERM,
    }
}

/// Whether `snap` is the empty snapshot a `Ready` without one carries.
pub fn is_empty_snapshot(snap: &Snapshot) -> bool {
    snap.metadata.as_ref().is_none_or(|m| m.index == 0)
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let nodes = self.region.peers.iter().map(|p| p.id).collect();
        Ok(RaftState { hard_state: self.hard_state(), conf_state: ConfState { nodes } })
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Compacted);
        }
        if high > self.raft_state.last_index + 1 {
            return Err(raft::Error::Unavailable);
        }
        let mut entries = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for index in low..high {
            let e = self.read_entry(index)?;
            size += e.encoded_len() as u64;
            if max_size.is_some_and(|max| size > max) && !entries.is_empty() {
                break;
            }
            entries.push(e);
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let truncated = self.truncated();
        if idx == truncated.index {
            return Ok(truncated.term);
        }
        if idx < truncated.index {
            return Err(raft::Error::Compacted);
        }
        if idx > self.raft_state.last_index {
            return Err(raft::Error::Unavailable);
        }
        if idx == self.raft_state.last_index {
            return Ok(self.raft_state.last_term);
        }
        Ok(self.read_entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    /// The latest snapshot, built by a worker: see the module docs.
    fn snapshot(&self) -> raft::Result<Snapshot> {
        let state = self.snap_gen.replace(GenState::Idle);
        match state {
            GenState::Ready(snap) => {
                let index = snap.metadata.as_ref().map_or(0, |m| m.index);
                let truncated = self.truncated().index;
                if index < truncated {
                    return self.retry_generation(format!(
                        "the snapshot at {index} is older than the truncated index {truncated}"
                    ));
                }
                self.gen_tries.set(0);
                self.last_snapshot_index.set(index);
                Ok(snap)
            }
            GenState::Failed(why) => self.retry_generation(why),
            GenState::Idle | GenState::Requested => {
                *self.snap_gen.borrow_mut() = GenState::Requested;
                Err(raft::Error::SnapshotTemporarilyUnavailable)
            }
            GenState::Generating => {
                *self.snap_gen.borrow_mut() = GenState::Generating;
                Err(raft::Error::SnapshotTemporarilyUnavailable)
            }
        }
    }
}
