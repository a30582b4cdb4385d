//! The raft log of one node: the entries in storage followed by the
//! entries not yet persisted, with the commit and apply cursors.
//!
//! ```text
//!   snapshot/first index     applied     committed     stabled          last index
//!   |                           |            |             |                  |
//!   [ entries in Storage ............................... ][ unstable ...... ]
//! ```
//!
//! Lab 2aa writes the parts an election needs (`new`, `last_index`,
//! `term`, `is_up_to_date`, `append`); lab 2ab the rest of the replication
//! logic; lab 2c the snapshot part (`restore`; `snapshot` is given).

use tinykv_proto::eraftpb::{Entry, Snapshot};

use crate::errors::Result;
// SOLUTION BEGIN lab 2aa
use crate::errors::Error;
// SOLUTION END
use crate::storage::Storage;

/// The log of one raft node.
///
/// Invariants (checked by the methods that move the cursors, which panic
/// with the indexes involved when one would break):
/// `applied <= committed <= last_index()` and
/// `first_index() - 1 <= stabled <= last_index()`.
#[derive(Debug)]
pub struct RaftLog<T: Storage> {
    /// Everything persisted: the entries up to `stabled` (or up to the
    /// latest snapshot the application has applied).
    pub store: T,

    /// The highest index known to be committed (stored on a quorum).
    /// Invariant: `applied <= committed <= last_index()`; never decreases.
    pub committed: u64,

    /// The highest index the application has applied to its state machine.
    /// Invariant: `applied <= committed`.
    pub applied: u64,

    /// The highest index persisted in `store` (or covered by
    /// `pending_snapshot`). Entries after it are in `unstable`.
    /// Invariant: `unstable[i].index == stabled + 1 + i`.
    pub stabled: u64,

    /// The entries after `stabled`, waiting to be persisted by the
    /// application (handed out as `Ready::entries`).
    pub unstable: Vec<Entry>,

    /// A snapshot received from the leader, waiting to be applied by the
    /// application (handed out as `Ready::snapshot`). While it is set, the
    /// log starts right after it.
    pub pending_snapshot: Option<Snapshot>,

    /// A tag for panic messages and logs (`"[id 2]"`), set by `Raft`.
    pub tag: String,
}

/// The index and term a snapshot covers.
pub fn snapshot_index_term(snapshot: &Snapshot) -> (u64, u64) {
    snapshot.metadata.as_ref().map_or((0, 0), |m| (m.index, m.term))
}

impl<T: Storage> RaftLog<T> {
    /// The log as found in `store`: every stored entry is stable; the
    /// commit index comes from the stored hard state; nothing after the
    /// snapshot is applied yet (the first index - 1).
    ///
    /// # Errors
    ///
    /// Any error of the storage.
    pub fn new(store: T) -> Result<RaftLog<T>> {
        // SOLUTION BEGIN lab 2aa
        let first = store.first_index()?;
        let last = store.last_index()?;
        // The snapshot's entries are committed even if the stored hard
        // state lags behind it.
        let committed = store.initial_state()?.hard_state.commit.max(first - 1);
        Ok(RaftLog {
            store,
            committed,
            applied: first - 1,
            stabled: last,
            unstable: Vec::new(),
            pending_snapshot: None,
            tag: String::new(),
        })
        // SOLUTION STUB
        // let _ = store;
        // todo!("lab 2aa: RaftLog::new (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The index of the first entry still in the log (older ones are in a
    /// snapshot).
    pub fn first_index(&self) -> u64 {
        // SOLUTION BEGIN lab 2aa
        match &self.pending_snapshot {
            Some(snap) => snapshot_index_term(snap).0 + 1,
            None => {
                self.store.first_index().unwrap_or_else(|e| panic!("{} first_index: {e}", self.tag))
            }
        }
        // SOLUTION STUB
        // todo!("lab 2aa: RaftLog::first_index (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The index of the last entry (stable or not).
    pub fn last_index(&self) -> u64 {
        // SOLUTION BEGIN lab 2aa
        self.stabled + self.unstable.len() as u64
        // SOLUTION STUB
        // todo!("lab 2aa: RaftLog::last_index (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The term of the entry at `idx`. `idx` may be `first_index() - 1`.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] before that, [`Error::Unavailable`] after the
    /// last index.
    pub fn term(&self, idx: u64) -> Result<u64> {
        // SOLUTION BEGIN lab 2aa
        if idx > self.last_index() {
            return Err(Error::Unavailable);
        }
        if idx > self.stabled {
            return Ok(self.unstable[(idx - self.stabled - 1) as usize].term);
        }
        if let Some(snap) = &self.pending_snapshot {
            let (snap_index, snap_term) = snapshot_index_term(snap);
            return match idx.cmp(&snap_index) {
                std::cmp::Ordering::Equal => Ok(snap_term),
                std::cmp::Ordering::Less => Err(Error::Compacted),
                // Entries persisted after the snapshot (the application
                // stored both in the same `Ready`).
                std::cmp::Ordering::Greater => self.store.term(idx),
            };
        }
        self.store.term(idx)
        // SOLUTION STUB
        // let _ = idx;
        // todo!("lab 2aa: RaftLog::term (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> u64 {
        let last = self.last_index();
        self.term(last).unwrap_or_else(|e| panic!("{} term of last index {last}: {e}", self.tag))
    }

    /// Whether the entry at `idx` exists and has term `term`.
    pub fn match_term(&self, idx: u64, term: u64) -> bool {
        self.term(idx).is_ok_and(|t| t == term)
    }

    /// Whether a log ending at (`last_index`, `term`) is at least as
    /// up-to-date as this one (Raft paper §5.4.1): a later last term wins;
    /// with equal last terms, the longer log wins.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        // SOLUTION BEGIN lab 2aa
        let my_term = self.last_term();
        term > my_term || (term == my_term && last_index >= self.last_index())
        // SOLUTION STUB
        // let _ = (last_index, term);
        // todo!("lab 2aa: RaftLog::is_up_to_date (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Appends `entries` (consecutive indexes) to the log, replacing any
    /// entries at the same indexes or after. Returns the new last index.
    ///
    /// # Panics
    ///
    /// If that would remove a committed entry, or leave a gap.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        // SOLUTION BEGIN lab 2aa
        let Some(first) = entries.first() else { return self.last_index() };
        let after = first.index - 1;
        assert!(
            after >= self.committed,
            "{} append: entry {} would overwrite committed index {}",
            self.tag,
            first.index,
            self.committed
        );
        assert!(
            after <= self.last_index(),
            "{} append: gap after last index {}, appending from {}",
            self.tag,
            self.last_index(),
            first.index
        );
        if after < self.stabled {
            // The conflict is in the persisted part: everything after it
            // becomes unstable again (the application overwrites it).
            self.stabled = after;
            self.unstable.clear();
        } else {
            self.unstable.truncate((after - self.stabled) as usize);
        }
        self.unstable.extend_from_slice(entries);
        self.last_index()
        // SOLUTION STUB
        // let _ = entries;
        // todo!("lab 2aa: RaftLog::append (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The entries with index in `[low, high)`, from storage and from the
    /// unstable part.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] if `low` is before the first index (the caller
    /// should send a snapshot instead).
    ///
    /// # Panics
    ///
    /// If `high` is past `last_index() + 1`.
    pub fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        // SOLUTION BEGIN lab 2aa
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(Error::Compacted);
        }
        assert!(
            high <= self.last_index() + 1,
            "{} entries: [{low}, {high}) is past the last index {}",
            self.tag,
            self.last_index()
        );
        let mut out = Vec::with_capacity((high - low) as usize);
        if low <= self.stabled {
            out = self.store.entries(low, high.min(self.stabled + 1), None)?;
        }
        if high > self.stabled + 1 {
            let from = low.max(self.stabled + 1) - self.stabled - 1;
            let to = high - self.stabled - 1;
            out.extend_from_slice(&self.unstable[from as usize..to as usize]);
        }
        Ok(out)
        // SOLUTION STUB
        // let _ = (low, high);
        // todo!("lab 2aa: RaftLog::entries (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The entries not yet persisted (what `Ready::entries` hands out).
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable
    }

    /// The committed entries not yet applied: `applied + 1 ..= committed`.
    pub fn next_committed_entries(&self) -> Vec<Entry> {
        // SOLUTION BEGIN lab 2ab
        let low = (self.applied + 1).max(self.first_index());
        if self.committed < low {
            return Vec::new();
        }
        self.entries(low, self.committed + 1).unwrap_or_else(|e| {
            panic!("{} committed entries [{low}, {}]: {e}", self.tag, self.committed)
        })
        // SOLUTION STUB
        // todo!("lab 2ab: RaftLog::next_committed_entries (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Whether [`next_committed_entries`](Self::next_committed_entries) is not empty.
    pub fn has_next_committed_entries(&self) -> bool {
        self.committed > self.applied.max(self.first_index() - 1)
    }

    /// The index of the first entry of `entries` whose term differs from
    /// this log's entry at the same index, or the first one this log does
    /// not have; 0 if the log already has them all.
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        // SOLUTION BEGIN lab 2aa
        entries.iter().find(|e| !self.match_term(e.index, e.term)).map_or(0, |e| e.index)
        // SOLUTION STUB
        // let _ = entries;
        // todo!("lab 2aa: RaftLog::find_conflict (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// The last index at most `index` whose term is at most `term` (or the
    /// first index whose term is unknown, going down). A follower uses it to
    /// hint where its log may still match the leader's; the leader uses it
    /// again on its own log to skip whole conflicting terms.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        // SOLUTION BEGIN lab 2aa
        let mut i = index.min(self.last_index());
        // The walk ends at a term at most `term`, at index 0, or at the
        // first index whose term is unknown (compacted).
        while let Ok(t) = self.term(i) {
            if t <= term || i == 0 {
                break;
            }
            i -= 1;
        }
        i
        // SOLUTION STUB
        // let _ = (index, term);
        // todo!("lab 2aa: RaftLog::find_conflict_by_term (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Handles the entries of an append from the leader: `entries` follow
    /// the entry (`index`, `log_term`). If this log has that entry, it
    /// appends what it is missing (truncating a conflicting suffix, never
    /// touching a matching one), commits up to `min(committed, last new
    /// index)` and returns the last new index; otherwise returns `None`.
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        // SOLUTION BEGIN lab 2aa
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "{} entry {conflict} conflicts with committed entry (committed {})",
                self.tag,
                self.committed
            );
            self.append(&entries[(conflict - index - 1) as usize..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
        // SOLUTION STUB
        // let _ = (index, log_term, committed, entries);
        // todo!("lab 2aa: RaftLog::maybe_append (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Moves the commit index up to `to_commit` (never down).
    ///
    /// # Panics
    ///
    /// If `to_commit` is past the last index.
    pub fn commit_to(&mut self, to_commit: u64) {
        // SOLUTION BEGIN lab 2aa
        if to_commit <= self.committed {
            return;
        }
        assert!(
            to_commit <= self.last_index(),
            "{} commit_to({to_commit}) is out of range [last index {}]",
            self.tag,
            self.last_index()
        );
        self.committed = to_commit;
        // SOLUTION STUB
        // let _ = to_commit;
        // todo!("lab 2aa: RaftLog::commit_to (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Commits up to `index` if it is newer than the commit index and its
    /// entry has term `term` (a leader only commits entries of its own term
    /// by counting replicas, Raft paper §5.4.2). Returns whether the commit
    /// index moved.
    pub fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        // SOLUTION BEGIN lab 2ab
        if index > self.committed && self.match_term(index, term) {
            self.commit_to(index);
            return true;
        }
        false
        // SOLUTION STUB
        // let _ = (index, term);
        // todo!("lab 2ab: RaftLog::maybe_commit (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Records that the application persisted the entries up to `index`
    /// (whose term was `term`). Ignored if the log changed since (the entry
    /// at `index` was replaced).
    pub fn stable_to(&mut self, index: u64, term: u64) {
        // SOLUTION BEGIN lab 2ab
        if index <= self.stabled || index > self.last_index() || !self.match_term(index, term) {
            return;
        }
        self.unstable.drain(..(index - self.stabled) as usize);
        self.stabled = index;
        // SOLUTION STUB
        // let _ = (index, term);
        // todo!("lab 2ab: RaftLog::stable_to (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Records that the application applied the entries up to `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not in `[applied, committed]`.
    pub fn applied_to(&mut self, index: u64) {
        // SOLUTION BEGIN lab 2ab
        if index == 0 {
            return;
        }
        assert!(
            self.committed >= index && index >= self.applied,
            "{} applied_to({index}) is out of range [applied {}, committed {}]",
            self.tag,
            self.applied,
            self.committed
        );
        self.applied = index;
        // SOLUTION STUB
        // let _ = index;
        // todo!("lab 2ab: RaftLog::applied_to (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Replaces the whole log with `snapshot` (received from the leader):
    /// the log then starts right after the snapshot, which is committed and
    /// counted as applied (the application applies it from the `Ready`
    /// before the committed entries that follow), and waits in
    /// `pending_snapshot` until the application has stored it.
    pub fn restore(&mut self, snapshot: Snapshot) {
        // SOLUTION BEGIN lab 2c
        let (index, _) = snapshot_index_term(&snapshot);
        log::info!("{} restoring log from snapshot at index {index}", self.tag);
        self.committed = index;
        self.applied = index;
        self.stabled = index;
        self.unstable.clear();
        self.pending_snapshot = Some(snapshot);
        // SOLUTION STUB
        // let _ = snapshot;
        // todo!("lab 2c: RaftLog::restore (raft/src/raft_log.rs)")
        // SOLUTION END
    }

    /// Records that the application stored the pending snapshot at `index`.
    pub fn stable_snap_to(&mut self, index: u64) {
        if self.pending_snapshot.as_ref().is_some_and(|s| snapshot_index_term(s).0 == index) {
            self.pending_snapshot = None;
        }
    }

    /// The snapshot to send to a follower that needs compacted entries: the
    /// pending one if there is one, else the storage's.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotTemporarilyUnavailable`] while the storage makes it.
    pub fn snapshot(&self) -> Result<Snapshot> {
        match &self.pending_snapshot {
            Some(snap) => Ok(snap.clone()),
            None => self.store.snapshot(),
        }
    }
}
