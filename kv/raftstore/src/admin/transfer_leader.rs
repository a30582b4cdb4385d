//! `TransferLeader`: moving a region's leadership to another peer (lab 3b).
//!
//! Unlike every other command, a leader transfer is not replicated: it
//! changes nothing in the region's state, so the leader asks its raft node
//! to hand over (lab 3a's `MsgTransferLeader` and `MsgTimeoutNow`) and
//! answers the client at once. Whether leadership moved shows in the next
//! heartbeats; a scheduler asks again until it has.

use tinykv_proto::raft_cmdpb::RaftCmdRequest;

use crate::admin::epoch::check_region_epoch;
use crate::context::{Context, Token};
use crate::error::Result;
use crate::peer::Peer;
// SOLUTION BEGIN lab 3b
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminResponse, RaftCmdResponse, RaftResponseHeader, TransferLeaderResponse,
};

use crate::context::CmdResponse;
use crate::error::Error;
// SOLUTION END

impl Peer {
    /// **Lab 3b.** Handles a `TransferLeader` command: after the header
    /// checks ([`check_admin_header`](Self::check_admin_header)), ask the
    /// raft node to transfer leadership to the request's peer
    /// (`RawNode::transfer_leader` with its id) and answer `token` at
    /// once with an `AdminResponse` of type `TransferLeader` (the client
    /// learns from later heartbeats whether it worked). A target that is
    /// not a member, or this peer itself, is the raft node's business: it
    /// ignores them.
    ///
    /// Checked by the lab 3b leader-transfer tests.
    pub fn propose_transfer_leader(
        &mut self,
        req: RaftCmdRequest,
        token: Token,
        ctx: &mut dyn Context,
    ) {
        // SOLUTION BEGIN lab 3b
        if let Err(e) = self.check_admin_header(&req) {
            return self.respond_error(token, e, ctx);
        }
        let target = req.admin_request.as_ref().and_then(|a| a.transfer_leader.as_ref());
        let Some(target) = target.and_then(|t| t.peer) else {
            let e = Error::Invalid("a TransferLeader without its peer".into());
            return self.respond_error(token, e, ctx);
        };
        log::info!("{} transfers leadership to peer {}", self.tag, target.id);
        self.raft_group.transfer_leader(target.id);
        let resp = RaftCmdResponse {
            header: Some(RaftResponseHeader { current_term: self.term(), ..Default::default() }),
            admin_response: Some(AdminResponse {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderResponse {}),
                ..Default::default()
            }),
            ..Default::default()
        };
        ctx.respond(token, CmdResponse::new(resp));
        // SOLUTION STUB
        // let _ = (req, token, ctx);
        // todo!("lab 3b: Peer::propose_transfer_leader (kv/raftstore/src/admin/transfer_leader.rs)")
        // SOLUTION END
    }

    /// The checks every admin command passes before it is proposed
    /// (given): this store, the leader, this peer, a term not too old, and
    /// the parts of the epoch the command depends on
    /// ([`check_region_epoch`]).
    ///
    /// # Errors
    ///
    /// The first check that fails.
    pub fn check_admin_header(&self, req: &RaftCmdRequest) -> Result<()> {
        self.check_store(req)?;
        self.check_leader()?;
        self.check_peer(req)?;
        self.check_term(req)?;
        check_region_epoch(req, self.region())
    }
}
