//! Log GC: keeping the raft log short (lab 2c).
//!
//! Without GC the raft log grows forever. Every
//! `raft_log_gc_tick_interval` ticks a leader checks how far its applied
//! index is past the last compaction; once that is at least
//! `raft_log_gc_count_limit`, it proposes a `CompactLog` admin command
//! ([`Peer::maybe_compact_log`], given; also checked after entries apply,
//! so that a fast stream of writes cannot outrun the tick). Like any command, it goes
//! through the log, so every replica compacts at the same point of its
//! history.
//!
//! Applying `CompactLog` ([`Peer::exec_compact_log`], you write it) only
//! moves the **truncated state** in the apply state: the log now starts
//! after `compact_index`. The entries themselves are deleted later by the
//! raft log GC worker (`Task::RaftLogGc`, scheduled by the given
//! `apply_committed_entries` once the apply batch is written), which first
//! syncs the kv engine: the truncated state must be durable before the
//! entries it drops are gone.
//!
//! A follower that needs entries the leader no longer has gets a snapshot
//! instead (see `peer_storage.rs`).

use prost::Message as _;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CompactLogRequest, RaftCmdRequest, RaftRequestHeader,
};

use crate::error::Result;
use crate::peer::Peer;
// SOLUTION BEGIN lab 2c
use tinykv_proto::raft_cmdpb::CompactLogResponse;
use tinykv_proto::raft_serverpb::RaftTruncatedState;
// SOLUTION END

impl Peer {
    /// The GC tick (given): forgets a `CompactLog` proposed earlier (it
    /// may have been lost with a leader change) and checks again
    /// ([`maybe_compact_log`](Self::maybe_compact_log)).
    pub fn on_raft_log_gc_tick(&mut self) {
        self.compact_proposed = None;
        self.maybe_compact_log();
    }

    /// The GC check (given), on every GC tick and after entries apply: a
    /// leader whose applied index is at least `raft_log_gc_count_limit`
    /// past the last `CompactLog` applied proposes `CompactLog` up to the
    /// entry before the applied one, unless a `CompactLog` it proposed has
    /// not applied yet. It keeps the entries a follower still needs if
    /// that follower is less than half the limit behind (a follower
    /// further behind gets a snapshot instead), and those after a snapshot
    /// handed out less than half the limit ago.
    pub fn maybe_compact_log(&mut self) {
        if !self.is_leader() || self.applying_snapshot {
            return;
        }
        // Where the log is compacted on every replica: the last CompactLog
        // applied (this peer's own truncated index may be further on, if
        // it took a snapshot).
        let compacted = self.log_compacted_to;
        if self.compact_proposed.is_some_and(|index| index > compacted) {
            return;
        }
        let ps = self.storage();
        let applied = ps.applied_index();
        if applied.saturating_sub(compacted) < self.gc_count_limit {
            return;
        }
        // Keep what a follower less than half the limit behind still
        // needs, and the entries after a snapshot handed out lately (its
        // follower will need them next). A follower further behind gets
        // a snapshot anyway.
        let near = self.gc_count_limit / 2;
        let raft = &self.raft_group.raft;
        let followers = raft.prs.iter().filter(|&(&id, _)| id != raft.id).map(|(_, pr)| pr.matched);
        let compact_index = followers
            .chain(std::iter::once(ps.last_snapshot_index()))
            .filter(|&index| applied.saturating_sub(index) <= near)
            .fold(applied - 1, u64::min)
            // Not before this peer's own log start: it must know the term.
            .max(ps.truncated().index);
        if compact_index <= compacted {
            return;
        }
        let Ok(compact_term) = raft::Storage::term(ps, compact_index) else { return };
        let req = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id(),
                peer: Some(self.meta),
                region_epoch: self.region().region_epoch,
                term: self.term(),
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest { compact_index, compact_term }),
                ..Default::default()
            }),
        };
        log::debug!("{} proposes CompactLog up to {compact_index} (from {compacted})", self.tag);
        match self.raft_group.propose(req.encode_to_vec()) {
            Ok(()) => self.compact_proposed = Some(compact_index),
            Err(e) => log::debug!("{} could not propose CompactLog: {e}", self.tag),
        }
    }

    /// Applies a committed `CompactLog` (lab 2c): moves the truncated state
    /// in `apply_state` to (`compact_index`, `compact_term`), which
    /// `apply_entry` then writes with the entry's batch. A `CompactLog`
    /// that does not move the truncated state forward (stale, or applied
    /// out of order with another one), or that would truncate past the
    /// applied index, changes nothing; up to the applied index itself is
    /// fine.
    ///
    /// # Errors
    ///
    /// None in the reference; an `Err` answers the command with it.
    ///
    /// Checked by every store-level 2c test: each asserts that applied −
    /// truncated stays within 2× the GC limit on every store
    /// (`log_stays_bounded_under_a_long_run_2c` over a long run),
    /// `stale_compact_log_is_harmless_2c` and
    /// `compact_log_up_to_the_applied_index_but_not_past_it_2c`.
    pub fn exec_compact_log(&mut self, req: &CompactLogRequest) -> Result<AdminResponse> {
        // SOLUTION BEGIN lab 2c
        let tag = self.tag.clone();
        let ps = self.storage_mut();
        let truncated = ps.truncated();
        if req.compact_index <= truncated.index {
            log::debug!(
                "{tag} ignores CompactLog to {}: already truncated to {}",
                req.compact_index,
                truncated.index
            );
        } else if req.compact_index > ps.applied_index() {
            log::warn!(
                "{tag} ignores CompactLog to {}: past the applied index {}",
                req.compact_index,
                ps.applied_index()
            );
        } else {
            ps.apply_state.truncated_state =
                Some(RaftTruncatedState { index: req.compact_index, term: req.compact_term });
        }
        Ok(AdminResponse {
            cmd_type: AdminCmdType::CompactLog as i32,
            compact_log: Some(CompactLogResponse {}),
            ..Default::default()
        })
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 2c: Peer::exec_compact_log (kv/raftstore/src/admin/compact_log.rs)")
        // SOLUTION END
    }
}
