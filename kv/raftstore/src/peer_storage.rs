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

use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{RaftState, Ready};
use tinykv_engine::keys;
use tinykv_engine::{Cf, WriteBatch};
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState};

use crate::engines::{Engines, get_msg};
// SOLUTION BEGIN lab 2b
use crate::engines::put_msg;
// SOLUTION END
use crate::error::{Error, Result};

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
}

impl PeerStorage {
    /// Loads the storage of `region`'s peer from the engines.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the raft or apply state is missing or does not
    /// decode; the engine's error.
    pub fn new(engines: Engines, region: Region, tag: String) -> Result<PeerStorage> {
        let raft_state: RaftLocalState =
            get_msg(engines.raft.as_ref(), &keys::raft_state_key(region.id))?.ok_or_else(|| {
                Error::Corrupt(format!("{tag} has no raft state in the raft engine"))
            })?;
        let apply_state: RaftApplyState =
            get_msg(engines.kv.as_ref(), &keys::apply_state_key(region.id))?.ok_or_else(|| {
                Error::Corrupt(format!("{tag} has no apply state in the kv engine"))
            })?;
        let ps = PeerStorage { region, raft_state, apply_state, engines, tag };
        ps.check_states()?;
        Ok(ps)
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
    /// sent: its entries ([`append`](Self::append)) and its hard state, in
    /// one synced batch to the raft engine, with the updated
    /// `RaftLocalState`. (A snapshot in `rd` is lab 2c's business.)
    ///
    /// # Errors
    ///
    /// The engine's error.
    ///
    /// Checked by every lab 2b test; `persist_*_2b` crash stores, so a
    /// batch that is not synced loses acknowledged writes there.
    pub fn save_ready_state(&mut self, rd: &Ready) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        let mut raft_wb = WriteBatch::new();
        let before = self.raft_state;
        self.append(&rd.entries, &mut raft_wb);
        if let Some(hs) = rd.hard_state {
            self.raft_state.hard_state = Some(hs);
        }
        if self.raft_state != before {
            put_msg(&mut raft_wb, &keys::raft_state_key(self.region.id), &self.raft_state);
        }
        if !raft_wb.is_empty() {
            self.engines.raft.write(raft_wb.sync())?;
        }
        Ok(())
        // SOLUTION STUB
        // let _ = rd;
        // todo!("lab 2b: PeerStorage::save_ready_state (kv/raftstore/src/peer_storage.rs)")
        // SOLUTION END
    }
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

    fn snapshot(&self) -> raft::Result<Snapshot> {
        // Snapshots arrive with lab 2c.
        Err(raft::Error::SnapshotTemporarilyUnavailable)
    }
}
