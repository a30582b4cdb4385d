//! Where a raft node keeps its log: the [`Storage`] trait and an in-memory
//! implementation, [`MemoryStorage`].
//!
//! This file is given to students (as in TinyKV): read it, you do not
//! change it. The raftstore of lab 2b writes its own `Storage` over the raft
//! engine; the raft tests use `MemoryStorage`.
//!
//! # The dummy entry
//!
//! `MemoryStorage` keeps the index and term of the last entry covered by the
//! latest snapshot as a *dummy* entry at position 0 of its entry list. So
//! `first_index()` is the dummy's index + 1, `term(first_index() - 1)` still
//! answers (the raft log needs the term of the entry just before the first
//! one to check a follower's log), and a fresh storage holds only the dummy
//! `(index 0, term 0)`.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message as _;
use tinykv_proto::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::errors::{Error, Result};

/// What a node finds in its storage when it starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftState {
    /// Term, vote and commit index as last persisted.
    pub hard_state: HardState,
    /// Membership as last persisted (from the latest snapshot or conf change).
    pub conf_state: ConfState,
}

impl RaftState {
    /// Whether the storage has never been written (a brand-new node).
    pub fn initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }
}

/// The read side of a raft node's persistent log. Raft reads through it;
/// the application writes to it (in the order the `Ready` contract says).
///
/// Every method may fail with [`Error::Store`] for an I/O problem of the
/// implementation.
pub trait Storage {
    /// The persisted hard state and membership, read once at start-up.
    fn initial_state(&self) -> Result<RaftState>;

    /// The entries with index in `[low, high)`.
    ///
    /// With `max_size`, stops before the total encoded size would exceed it,
    /// but always returns at least one entry when the range is not empty.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] when `low` is before [`first_index`](Self::first_index);
    /// [`Error::Unavailable`] when `high` is past [`last_index`](Self::last_index) + 1.
    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>>;

    /// The term of the entry at `idx`, which may be `first_index() - 1`
    /// (the last entry covered by the snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] for older indexes, [`Error::Unavailable`] past the end.
    fn term(&self, idx: u64) -> Result<u64>;

    /// The index of the first entry still available (older ones are in the
    /// snapshot).
    fn first_index(&self) -> Result<u64>;

    /// The index of the last entry (the snapshot's index if the log is empty).
    fn last_index(&self) -> Result<u64>;

    /// The latest snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotTemporarilyUnavailable`] while it is being made: the
    /// leader then tries again later.
    fn snapshot(&self) -> Result<Snapshot>;
}

/// Keeps only the prefix of `entries` whose total encoded size stays within
/// `max_size`, but always at least one entry.
pub fn limit_size(entries: &mut Vec<Entry>, max_size: Option<u64>) {
    let Some(max) = max_size else { return };
    let mut size = 0u64;
    let keep = entries
        .iter()
        .take_while(|e| {
            size += e.encoded_len() as u64;
            size <= max
        })
        .count();
    entries.truncate(keep.max(1));
}

/// The state behind a [`MemoryStorage`] handle.
#[derive(Debug, Default)]
pub struct MemoryStorageCore {
    raft_state: RaftState,
    /// `entries[0]` is the dummy entry (see the module docs); never empty.
    entries: Vec<Entry>,
    snapshot: Snapshot,
    /// How many more calls to `snapshot()` answer
    /// `SnapshotTemporarilyUnavailable` (a test knob).
    snapshot_unavailable: usize,
}

impl MemoryStorageCore {
    fn new() -> MemoryStorageCore {
        MemoryStorageCore { entries: vec![Entry::default()], ..Default::default() }
    }

    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn first_index(&self) -> u64 {
        self.offset() + 1
    }

    fn last_index(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }

    fn term(&self, idx: u64) -> Result<u64> {
        if idx < self.offset() {
            return Err(Error::Compacted);
        }
        if idx > self.last_index() {
            return Err(Error::Unavailable);
        }
        Ok(self.entries[(idx - self.offset()) as usize].term)
    }

    /// Sets the persisted hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.raft_state.hard_state = hs;
    }

    /// Sets the persisted membership.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.raft_state.conf_state = cs;
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.raft_state.hard_state
    }

    /// Makes `snapshot()` answer `SnapshotTemporarilyUnavailable` for the
    /// next `calls` calls (to test that a leader retries).
    pub fn set_snapshot_unavailable(&mut self, calls: usize) {
        self.snapshot_unavailable = calls;
    }

    /// Replaces the whole log with the snapshot: the dummy entry becomes the
    /// snapshot's last index and term, the membership becomes the
    /// snapshot's, and the commit index moves up to the snapshot's index.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotOutOfDate`] if the snapshot is not newer than the
    /// one already held.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.metadata.clone().unwrap_or_default();
        if meta.index <= self.snapshot_index() {
            return Err(Error::SnapshotOutOfDate);
        }
        self.entries = vec![Entry { term: meta.term, index: meta.index, ..Default::default() }];
        let hs = &mut self.raft_state.hard_state;
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.raft_state.conf_state = meta.conf_state.clone().unwrap_or_default();
        self.snapshot = snapshot;
        Ok(())
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.metadata.as_ref().map_or(0, |m| m.index)
    }

    /// Makes a snapshot of the log up to `index` (inclusive) holding `data`
    /// (the application's state at `index`), with the membership `cs`
    /// (the current one if `None`). Does not compact: call
    /// [`compact`](Self::compact) after.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotOutOfDate`] if `index` is not newer than the
    /// snapshot already held.
    ///
    /// # Panics
    ///
    /// If `index` is past the last index.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        cs: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<&Snapshot> {
        if index <= self.snapshot_index() {
            return Err(Error::SnapshotOutOfDate);
        }
        assert!(
            index <= self.last_index(),
            "create_snapshot: index {index} is past the last index {}",
            self.last_index()
        );
        let term = self.term(index)?;
        let conf_state = cs.unwrap_or_else(|| self.raft_state.conf_state.clone());
        self.snapshot = Snapshot {
            data,
            metadata: Some(SnapshotMetadata { conf_state: Some(conf_state), index, term }),
        };
        Ok(&self.snapshot)
    }

    /// Discards the entries before `compact_index` (they must be in a
    /// snapshot). The entry at `compact_index - 1` becomes the dummy.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] if the log was already compacted that far.
    ///
    /// # Panics
    ///
    /// If `compact_index` is past `last_index() + 1`.
    pub fn compact(&mut self, compact_index: u64) -> Result<()> {
        if compact_index <= self.first_index() {
            return Err(Error::Compacted);
        }
        assert!(
            compact_index <= self.last_index() + 1,
            "compact: index {compact_index} is past last index {} + 1",
            self.last_index()
        );
        let drop = (compact_index - 1 - self.offset()) as usize;
        self.entries.drain(..drop);
        self.entries[0].data.clear();
        Ok(())
    }

    /// Appends entries to the log. Entries older than the first index are
    /// skipped; an entry at an index the log already has replaces it and
    /// everything after it.
    ///
    /// # Panics
    ///
    /// If the entries leave a gap after the last index.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first_new) = entries.first().map(|e| e.index) else { return Ok(()) };
        let first = self.first_index();
        let last_new = first_new + entries.len() as u64 - 1;
        if last_new < first {
            return Ok(());
        }
        let entries =
            if first > first_new { &entries[(first - first_new) as usize..] } else { entries };
        let start = entries[0].index;
        assert!(
            start <= self.last_index() + 1,
            "MemoryStorage::append: gap: last index {}, appending from {start}",
            self.last_index()
        );
        self.entries.truncate((start - self.offset()) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }
}

/// A [`Storage`] in memory. It is a cheap handle: clones share the same
/// log, so a test can keep one and give another to the node.
///
/// ```
/// use raft::{MemoryStorage, Storage};
/// use tinykv_proto::eraftpb::Entry;
///
/// let store = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
/// store.wl().append(&[Entry { index: 1, term: 1, ..Default::default() }]).unwrap();
/// assert_eq!(store.first_index().unwrap(), 1);
/// assert_eq!(store.last_index().unwrap(), 1);
/// assert_eq!(store.initial_state().unwrap().conf_state.nodes, vec![1, 2, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    core: Arc<RwLock<MemoryStorageCore>>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new()
    }
}

impl MemoryStorage {
    /// An empty storage: no entries, no membership.
    pub fn new() -> MemoryStorage {
        MemoryStorage { core: Arc::new(RwLock::new(MemoryStorageCore::new())) }
    }

    /// An empty storage whose membership is `voters` (how a test bootstraps
    /// a cluster without passing peers in the config).
    pub fn new_with_conf_state(voters: Vec<u64>) -> MemoryStorage {
        let store = MemoryStorage::new();
        store.wl().set_conf_state(ConfState { nodes: voters });
        store
    }

    /// Locks the storage for writing.
    pub fn wl(&self) -> RwLockWriteGuard<'_, MemoryStorageCore> {
        self.core.write().expect("MemoryStorage lock poisoned")
    }

    /// Locks the storage for reading.
    pub fn rl(&self) -> RwLockReadGuard<'_, MemoryStorageCore> {
        self.core.read().expect("MemoryStorage lock poisoned")
    }

    /// See [`MemoryStorageCore::append`].
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        self.wl().append(entries)
    }

    /// See [`MemoryStorageCore::set_hard_state`].
    pub fn set_hard_state(&self, hs: HardState) {
        self.wl().set_hard_state(hs);
    }

    /// See [`MemoryStorageCore::apply_snapshot`].
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.wl().apply_snapshot(snapshot)
    }

    /// See [`MemoryStorageCore::compact`].
    pub fn compact(&self, compact_index: u64) -> Result<()> {
        self.wl().compact(compact_index)
    }

    /// See [`MemoryStorageCore::create_snapshot`]; returns a copy.
    pub fn create_snapshot(
        &self,
        index: u64,
        cs: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<Snapshot> {
        self.wl().create_snapshot(index, cs, data).cloned()
    }
}

impl Storage for MemoryStorage {
    fn initial_state(&self) -> Result<RaftState> {
        Ok(self.rl().raft_state.clone())
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        let core = self.rl();
        if low < core.first_index() {
            return Err(Error::Compacted);
        }
        if high > core.last_index() + 1 {
            return Err(Error::Unavailable);
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let offset = core.offset();
        let mut ents = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        limit_size(&mut ents, max_size);
        Ok(ents)
    }

    fn term(&self, idx: u64) -> Result<u64> {
        self.rl().term(idx)
    }

    fn first_index(&self) -> Result<u64> {
        Ok(self.rl().first_index())
    }

    fn last_index(&self) -> Result<u64> {
        Ok(self.rl().last_index())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mut core = self.wl();
        if core.snapshot_unavailable > 0 {
            core.snapshot_unavailable -= 1;
            return Err(Error::SnapshotTemporarilyUnavailable);
        }
        Ok(core.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    fn store_with(ents: &[(u64, u64)]) -> MemoryStorage {
        let s = MemoryStorage::new();
        {
            let mut core = s.wl();
            core.entries = ents.iter().map(|&(i, t)| ent(i, t)).collect();
        }
        s
    }

    #[test]
    fn term_and_bounds() {
        let s = store_with(&[(3, 3), (4, 4), (5, 5)]);
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.last_index().unwrap(), 5);
        assert_eq!(s.term(2), Err(Error::Compacted));
        assert_eq!(s.term(3), Ok(3));
        assert_eq!(s.term(5), Ok(5));
        assert_eq!(s.term(6), Err(Error::Unavailable));
    }

    #[test]
    fn entries_with_limits() {
        let s = store_with(&[(3, 3), (4, 4), (5, 5), (6, 6)]);
        assert_eq!(s.entries(3, 4, None), Err(Error::Compacted));
        assert_eq!(s.entries(4, 8, None), Err(Error::Unavailable));
        assert_eq!(s.entries(4, 6, None).unwrap(), vec![ent(4, 4), ent(5, 5)]);
        assert_eq!(s.entries(4, 7, Some(0)).unwrap(), vec![ent(4, 4)], "at least one");
        let one = ent(4, 4).encoded_len() as u64;
        assert_eq!(s.entries(4, 7, Some(2 * one)).unwrap().len(), 2);
    }

    #[test]
    fn append_truncates_and_skips_compacted() {
        let s = store_with(&[(3, 3), (4, 4), (5, 5)]);
        s.append(&[ent(2, 3), ent(3, 3), ent(4, 6)]).unwrap();
        assert_eq!(s.entries(4, 5, None).unwrap(), vec![ent(4, 6)]);
        assert_eq!(s.last_index().unwrap(), 4);
        s.append(&[ent(5, 6), ent(6, 6)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 6);
    }

    #[test]
    #[should_panic(expected = "gap")]
    fn append_with_gap_panics() {
        let s = store_with(&[(3, 3), (4, 4)]);
        s.append(&[ent(6, 4)]).unwrap();
    }

    #[test]
    fn snapshot_compact_and_apply() {
        let s = store_with(&[(3, 3), (4, 4), (5, 5)]);
        let snap =
            s.create_snapshot(4, Some(ConfState { nodes: vec![1, 2] }), b"data".to_vec()).unwrap();
        assert_eq!(snap.metadata.as_ref().unwrap().term, 4);
        assert_eq!(s.create_snapshot(3, None, vec![]), Err(Error::SnapshotOutOfDate));
        assert_eq!(s.compact(4), Err(Error::Compacted), "nothing before the first index");
        s.compact(5).unwrap();
        assert_eq!(s.first_index().unwrap(), 5);
        assert_eq!(s.term(4), Ok(4), "the dummy keeps the term of the last compacted entry");
        assert_eq!(s.term(3), Err(Error::Compacted));

        let fresh = MemoryStorage::new();
        fresh.apply_snapshot(snap.clone()).unwrap();
        assert_eq!(fresh.first_index().unwrap(), 5);
        assert_eq!(fresh.last_index().unwrap(), 4);
        assert_eq!(fresh.initial_state().unwrap().conf_state.nodes, vec![1, 2]);
        assert_eq!(fresh.initial_state().unwrap().hard_state.commit, 4);
        assert_eq!(fresh.apply_snapshot(snap), Err(Error::SnapshotOutOfDate));

        fresh.wl().set_snapshot_unavailable(1);
        assert_eq!(fresh.snapshot(), Err(Error::SnapshotTemporarilyUnavailable));
        assert!(fresh.snapshot().is_ok());
    }
}
