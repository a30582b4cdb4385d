//! `ChangePeer`: adding and removing a region's peers (lab 3b).
//!
//! A membership change goes through the log as an `EntryConfChange`
//! entry, one at a time (raft refuses a second while the first is not
//! applied). Its `context` holds the whole `RaftCmdRequest`, so that every
//! replica applies the same change to the region: the peer list and
//! `conf_ver` change in the entry's kv batch, then the raft node learns
//! the new membership. A peer that removes itself is destroyed by the
//! store (`StoreEffect::Destroy`); a peer added on another store is
//! created there by the leader's first message and catches up by
//! snapshot (see [`crate::lifecycle`]).

use raft::eraftpb::Entry;
use tinykv_engine::WriteBatch;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;

use crate::admin::ExecResult;
use crate::context::{Context, Token};
use crate::error::Result;
use crate::peer::Peer;
// SOLUTION BEGIN lab 3b
use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use tinykv_engine::keys;
use tinykv_proto::raft_serverpb::{PeerState, RegionLocalState};

use crate::admin::epoch::check_region_epoch;
use crate::engines::put_msg;
use crate::error::Error;
use crate::peer::Proposal;
// SOLUTION END

impl Peer {
    /// **Lab 3b.** Proposes a `ChangePeer` command: after the header
    /// checks ([`check_admin_header`](Self::check_admin_header)), build a
    /// `ConfChange { change_type, node_id: the peer's id, context: the
    /// encoded request }` and hand it to `RawNode::propose_conf_change`.
    /// Remember a [`Proposal`](crate::peer::Proposal) for the entry's
    /// index, as `propose` does, so the client is answered when it
    /// applies. A command raft refuses (an earlier change not applied
    /// yet) is answered at once with the error.
    ///
    /// A leader asked to remove *itself* does not propose it: it transfers
    /// its leadership to the other peer with the longest log
    /// (`RawNode::transfer_leader`) and answers with an error; the
    /// scheduler sends the operator again to the new leader. Proposing it
    /// would destroy the leader as soon as it applies the removal, and in
    /// a two-peer region the other peer might never learn that the removal
    /// committed: it would wait for a second vote forever.
    ///
    /// Checked by the lab 3b conf-change tests (`remove_the_leader_*`).
    pub fn propose_change_peer(
        &mut self,
        req: RaftCmdRequest,
        token: Token,
        ctx: &mut dyn Context,
    ) {
        // SOLUTION BEGIN lab 3b
        if let Err(e) = self.check_admin_header(&req) {
            return self.respond_error(token, e, ctx);
        }
        let change = req.admin_request.as_ref().and_then(|a| a.change_peer.as_ref());
        let Some((change_type, peer)) = change.and_then(|c| Some((c.change_type, c.peer?))) else {
            let e = Error::Invalid("a ChangePeer without its peer".into());
            return self.respond_error(token, e, ctx);
        };
        if change_type == ConfChangeType::RemoveNode as i32 && peer.id == self.meta.id {
            return self.step_down_before_removal(token, ctx);
        }
        let cc = ConfChange { change_type, node_id: peer.id, context: req.encode_to_vec() };
        let index = self.raft_group.raft.raft_log.last_index() + 1;
        let term = self.term();
        if let Err(e) = self.raft_group.propose_conf_change(cc) {
            return self.respond_error(token, e.into(), ctx);
        }
        if self.raft_group.raft.raft_log.last_index() != index {
            return self.respond_error(token, Error::StaleCommand, ctx);
        }
        log::info!("{} proposes {:?} of peer {peer:?} at {index}", self.tag, change_type);
        self.proposals.push_back(Proposal { index, term, token });
        // SOLUTION STUB
        // let _ = (req, token, ctx);
        // todo!("lab 3b: Peer::propose_change_peer (kv/raftstore/src/admin/conf_change.rs)")
        // SOLUTION END
    }

    // SOLUTION BEGIN lab 3b
    /// Hands the leadership to the other member with the longest log, and
    /// refuses the removal of this leader for now.
    fn step_down_before_removal(&mut self, token: Token, ctx: &mut dyn Context) {
        let me = self.meta.id;
        let progress = &self.raft_group.raft.prs;
        let target = self
            .region()
            .peers
            .iter()
            .filter(|p| p.id != me)
            .filter_map(|p| progress.get(&p.id).map(|pr| (pr.matched, p.id)))
            .max();
        if let Some((_, target)) = target {
            log::info!("{} is asked to remove itself: transfers leadership to {target}", self.tag);
            self.raft_group.transfer_leader(target);
        }
        let e = Error::Invalid(format!(
            "peer {me} leads region {}: it hands the leadership over before it is removed; \
             ask the new leader",
            self.region_id()
        ));
        self.respond_error(token, e, ctx);
    }
    // SOLUTION END

    /// **Lab 3b.** Applies a committed `EntryConfChange` entry to the
    /// region (not yet to raft: that happens once the batch is written,
    /// in the given `on_exec_result`):
    ///
    /// 1. decode the `ConfChange` and, from its `context`, the
    ///    `RaftCmdRequest` with the `ChangePeer`;
    /// 2. check the request's `conf_ver` against the region's
    ///    ([`check_region_epoch`](crate::admin::epoch::check_region_epoch)):
    ///    a change proposed against an older membership is stale, changes
    ///    nothing and is an error;
    /// 3. `AddNode` of a peer not in the region adds it, `RemoveNode` of a
    ///    member removes it, and either bumps `conf_ver`; an `AddNode` of a
    ///    member or a `RemoveNode` of a non-member changes nothing (a
    ///    duplicate is harmless);
    /// 4. put the region state (`Normal`, the new region) in `kv_wb`, set
    ///    the peer storage's region, and return
    ///    `ExecResult::ChangePeer { cc, region }`.
    ///
    /// # Errors
    ///
    /// An entry that does not decode; a stale epoch.
    ///
    /// Checked by the lab 3b conf-change tests.
    pub fn apply_change_peer(
        &mut self,
        e: &Entry,
        kv_wb: &mut WriteBatch,
    ) -> Result<Option<ExecResult>> {
        // SOLUTION BEGIN lab 3b
        let decode = |what: &str, err: prost::DecodeError| {
            Error::Corrupt(format!("conf change entry {} ({what}) does not decode: {err}", e.index))
        };
        let cc = ConfChange::decode(e.data.as_slice()).map_err(|err| decode("ConfChange", err))?;
        let req =
            RaftCmdRequest::decode(cc.context.as_slice()).map_err(|err| decode("context", err))?;
        let mut region = self.region().clone();
        check_region_epoch(&req, &region)?;
        let peer = req.admin_request.as_ref().and_then(|a| a.change_peer.as_ref()?.peer);
        let peer = peer.ok_or_else(|| Error::Invalid("a ChangePeer without its peer".into()))?;
        let member = region.peers.iter().position(|p| p.id == peer.id);
        let changed = match (cc.change_type(), member) {
            (ConfChangeType::AddNode, None) => {
                region.peers.push(peer);
                true
            }
            (ConfChangeType::RemoveNode, Some(i)) => {
                region.peers.remove(i);
                true
            }
            _ => false,
        };
        if changed {
            let epoch = region.region_epoch.get_or_insert_with(Default::default);
            epoch.conf_ver += 1;
            let state =
                RegionLocalState { state: PeerState::Normal as i32, region: Some(region.clone()) };
            put_msg(kv_wb, &keys::region_state_key(region.id), &state);
            self.storage_mut().region = region.clone();
        }
        log::info!(
            "{} applies {:?} of peer {peer:?} at {} (changed: {changed}): members {:?}",
            self.tag,
            cc.change_type(),
            e.index,
            region.peers
        );
        Ok(Some(ExecResult::ChangePeer { cc, region }))
        // SOLUTION STUB
        // let _ = (e, kv_wb);
        // todo!("lab 3b: Peer::apply_change_peer (kv/raftstore/src/admin/conf_change.rs)")
        // SOLUTION END
    }
}
