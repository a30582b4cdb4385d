//! `Split`: cutting a region in two at a key (lab 3b).
//!
//! A region that grew past `region_max_size` splits (see
//! [`crate::split_check`] for how its leader finds the key and gets ids for
//! the new region from the scheduler). The split goes through the log as
//! an admin command, so every replica splits at the same point of its
//! history:
//!
//! ```text
//! before:  region 1 [a, c)  epoch (conf_ver c, version v)   peers p1 p2 p3
//! after:   region 1 [a, k)  epoch (c, v + 1)                 peers p1 p2 p3
//!          region 9 [k, c)  epoch (c, v + 1)                 peers q1 q2 q3 (same stores)
//! ```
//!
//! No data moves: both regions' keys are in the store's kv engine already.
//! What changes is who owns them. The parent's new region state, the new
//! region's region state and its initial apply state go into the split
//! entry's kv batch, so a crash leaves either both regions or the old one
//! (which applies the split again from its log). Then the store creates
//! the new region's peer ([`StoreEffect::SplitCreated`](crate::effect::StoreEffect::SplitCreated)); the one on
//! the store that led the parent campaigns at once, so the new region has
//! a leader without waiting an election timeout.

use prost::Message as _;
use tinykv_engine::WriteBatch;
use tinykv_engine::keys::{self, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_cmdpb::{RaftCmdRequest, SplitRequest};
use tinykv_proto::raft_serverpb::{
    PeerState, RaftApplyState, RaftTruncatedState, RegionLocalState,
};

use crate::admin::ExecResult;
use crate::context::{Context, Token};
use crate::engines::{get_msg, put_msg};
use crate::error::{Error, Result};
use crate::peer::{Peer, Proposal};
// SOLUTION BEGIN lab 3b
use crate::admin::epoch::check_region_epoch;
use tinykv_proto::metapb::{self, RegionEpoch};
// SOLUTION END

impl Peer {
    /// Proposes a `Split` command (given): after the header checks
    /// ([`check_admin_header`](Self::check_admin_header): the epoch the
    /// split was planned on, `version` and `conf_ver`), the split key must
    /// lie inside the region, after its start, and the request must name
    /// one new peer id per member. It goes into the log as a normal entry
    /// carrying the encoded request; its answer comes when it applies.
    pub fn propose_split(&mut self, req: RaftCmdRequest, token: Token, ctx: &mut dyn Context) {
        if let Err(e) = self.check_admin_header(&req) {
            return self.respond_error(token, e, ctx);
        }
        let split = req.admin_request.as_ref().and_then(|a| a.split.as_ref());
        let Some(split) = split else {
            let e = Error::Invalid("a Split without its split request".into());
            return self.respond_error(token, e, ctx);
        };
        if let Err(e) = check_split_request(split, self.region()) {
            return self.respond_error(token, e, ctx);
        }
        let index = self.raft_group.raft.raft_log.last_index() + 1;
        let term = self.term();
        if let Err(e) = self.raft_group.propose(req.encode_to_vec()) {
            return self.respond_error(token, e.into(), ctx);
        }
        if self.raft_group.raft.raft_log.last_index() != index {
            return self.respond_error(token, Error::StaleCommand, ctx);
        }
        log::info!(
            "{} proposes a split at {:?} into region {} at {index}",
            self.tag,
            split.split_key.escape_ascii().to_string(),
            split.new_region_id
        );
        self.proposals.push_back(Proposal { index, term, token });
    }

    /// **Lab 3b.** Applies a committed `Split` (`req` is the whole command,
    /// its header holds the epoch the split was proposed on):
    ///
    /// 1. check the epoch against the region
    ///    ([`check_region_epoch`](crate::admin::epoch::check_region_epoch):
    ///    a split checks `version` *and* `conf_ver`), then the request
    ///    ([`check_split_request`]): the region may have changed since the
    ///    split was proposed (another split, a conf change), and then this
    ///    one must change nothing and fail;
    /// 2. build the two regions: the parent keeps its id and peers and the
    ///    range `[start, split_key)`; the new region gets
    ///    `new_region_id`, the range `[split_key, end)`, and one peer per
    ///    parent peer, on the same store, with the ids of `new_peer_ids`
    ///    in the same order; both get the parent's `conf_ver` and its
    ///    `version + 1`;
    /// 3. write both in the entry's batch with the given
    ///    [`write_split_states`](Self::write_split_states), set the peer
    ///    storage's region to the parent's new one, and return
    ///    `ExecResult::Split { derived, new_region }`.
    ///
    /// # Errors
    ///
    /// A stale epoch ([`Error::EpochNotMatch`]); a bad request; an engine
    /// error reading the new region's state.
    ///
    /// Checked by the lab 3b split tests (`one_split_3b` first).
    pub fn apply_split(
        &mut self,
        req: &RaftCmdRequest,
        split: &SplitRequest,
        kv_wb: &mut WriteBatch,
    ) -> Result<Option<ExecResult>> {
        // SOLUTION BEGIN lab 3b
        let region = self.region().clone();
        check_region_epoch(req, &region)?;
        check_split_request(split, &region)?;
        let epoch = region.region_epoch.unwrap_or_default();
        let epoch = RegionEpoch { conf_ver: epoch.conf_ver, version: epoch.version + 1 };
        let new_region = Region {
            id: split.new_region_id,
            start_key: split.split_key.clone(),
            end_key: region.end_key.clone(),
            region_epoch: Some(epoch),
            peers: region
                .peers
                .iter()
                .zip(&split.new_peer_ids)
                .map(|(p, &id)| metapb::Peer { id, store_id: p.store_id })
                .collect(),
        };
        let derived =
            Region { end_key: split.split_key.clone(), region_epoch: Some(epoch), ..region };
        self.write_split_states(kv_wb, &derived, &new_region)?;
        self.storage_mut().region = derived.clone();
        log::info!(
            "{} applies a split at {:?}: region {} is now {:?}..{:?}",
            self.tag,
            split.split_key.escape_ascii().to_string(),
            new_region.id,
            new_region.start_key.escape_ascii().to_string(),
            new_region.end_key.escape_ascii().to_string()
        );
        Ok(Some(ExecResult::Split { derived, new_region }))
        // SOLUTION STUB
        // let _ = (req, split, kv_wb);
        // todo!("lab 3b: Peer::apply_split (kv/raftstore/src/admin/split.rs)")
        // SOLUTION END
    }

    /// Puts a split's region states into the entry's batch (given): the
    /// parent's new state, and for the new region its state and its
    /// initial apply state (applied and truncated at index 5, term 5, as
    /// a bootstrapped region). The new region's raft state is made when
    /// its peer starts ([`PeerStorage::new`](crate::PeerStorage::new)).
    ///
    /// If this store once held a peer of the new region that was removed
    /// (its state is `Tombstone`), the new region's states are not
    /// written: that peer must not come back (TiKV's rule; the store does
    /// not create it either).
    ///
    /// # Errors
    ///
    /// An engine error reading the new region's state.
    pub fn write_split_states(
        &self,
        kv_wb: &mut WriteBatch,
        derived: &Region,
        new_region: &Region,
    ) -> Result<()> {
        let normal = |region: &Region| RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region.clone()),
        };
        put_msg(kv_wb, &keys::region_state_key(derived.id), &normal(derived));
        let kv = self.storage().engines.kv.as_ref();
        let existing: Option<RegionLocalState> =
            get_msg(kv, &keys::region_state_key(new_region.id))?;
        if existing.is_some_and(|s| s.state() == PeerState::Tombstone) {
            log::info!(
                "{} splits off region {}, which was removed from this store: it stays a tombstone",
                self.tag,
                new_region.id
            );
            return Ok(());
        }
        put_msg(kv_wb, &keys::region_state_key(new_region.id), &normal(new_region));
        let apply_state = RaftApplyState {
            applied_index: RAFT_INIT_LOG_INDEX,
            truncated_state: Some(RaftTruncatedState {
                index: RAFT_INIT_LOG_INDEX,
                term: RAFT_INIT_LOG_TERM,
            }),
        };
        put_msg(kv_wb, &keys::apply_state_key(new_region.id), &apply_state);
        Ok(())
    }
}

/// Checks a split request against `region` (given): the key lies inside
/// the region and after its start (both halves hold keys), the new region
/// has an id other than the region's, and there is one new peer id per
/// member, none of them a member's.
///
/// # Errors
///
/// [`Error::KeyNotInRegion`] or [`Error::Invalid`] saying what is wrong.
pub fn check_split_request(split: &SplitRequest, region: &Region) -> Result<()> {
    crate::peer::check_key_in_region(&split.split_key, region)?;
    if split.split_key == region.start_key {
        return Err(Error::Invalid(format!(
            "region {} cannot split at its start key: the left half would be empty",
            region.id
        )));
    }
    if split.new_region_id == 0 || split.new_region_id == region.id {
        return Err(Error::Invalid(format!(
            "region {} cannot split into region {}",
            region.id, split.new_region_id
        )));
    }
    if split.new_peer_ids.len() != region.peers.len() {
        return Err(Error::Invalid(format!(
            "region {} has {} peers, the split names {} new peer ids",
            region.id,
            region.peers.len(),
            split.new_peer_ids.len()
        )));
    }
    let reused =
        split.new_peer_ids.iter().find(|&&id| id == 0 || region.peers.iter().any(|p| p.id == id));
    if let Some(id) = reused {
        return Err(Error::Invalid(format!(
            "region {}: the split's new peer id {id} is 0 or a member's",
            region.id
        )));
    }
    Ok(())
}
