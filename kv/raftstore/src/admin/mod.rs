//! Admin commands: one file per feature.
//!
//! An admin command goes through the log like any command, so every
//! replica executes it at the same point of its history. Executing one
//! changes the region's state in the entry's kv batch and gives back an
//! [`ExecResult`] saying what changed; the peer carries it out for itself
//! (its raft node, its caches) and hands what concerns the whole store to
//! the store ([`crate::store::Store`]), which alone changes the store's
//! regions and peers.
//!
//! | file | command | lab |
//! |---|---|---|
//! | [`compact_log`] | `CompactLog`: move the truncated state, GC the log | 2c |
//! | [`epoch`] | which commands check which part of the region epoch | 3b |
//! | [`conf_change`] | `ChangePeer`: add or remove a peer | 3b |
//! | [`transfer_leader`] | `TransferLeader`: move the leadership | 3b |
//! | [`split`] | `Split`: cut the region in two at a key | 3b |

pub mod compact_log;
pub mod conf_change;
pub mod epoch;
pub mod split;
pub mod transfer_leader;

use raft::eraftpb::ConfChange;
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest};
use tinykv_proto::raft_serverpb::RaftTruncatedState;

use crate::context::{Context, Token};
use crate::peer::Peer;

impl Peer {
    /// Routes a client command to its proposer (given): `ChangePeer` to
    /// [`propose_change_peer`](Peer::propose_change_peer), `TransferLeader`
    /// to [`propose_transfer_leader`](Peer::propose_transfer_leader)
    /// (lab 3b), `Split` to [`propose_split`](Peer::propose_split) (the
    /// store's own, after a split check), everything else to [`propose`](Peer::propose) (lab 2b),
    /// whose checks refuse other admin commands from clients.
    pub fn propose_command(&mut self, req: RaftCmdRequest, token: Token, ctx: &mut dyn Context) {
        match req.admin_request.as_ref().map(|a| a.cmd_type()) {
            Some(AdminCmdType::ChangePeer) => self.propose_change_peer(req, token, ctx),
            Some(AdminCmdType::TransferLeader) => self.propose_transfer_leader(req, token, ctx),
            Some(AdminCmdType::Split) => self.propose_split(req, token, ctx),
            _ => self.propose(req, token, ctx),
        }
    }
}

/// What executing an admin command changed, for the peer (and then the
/// store) to carry out after the entry's batch is written.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecResult {
    /// The truncated state moved: the log entries up to `state.index` may
    /// be deleted (the raft log GC worker does it).
    CompactLog {
        /// The new truncated state.
        state: RaftTruncatedState,
    },
    /// A conf change entry applied: the raft node must learn `cc`, and
    /// the region is now `region` (unchanged for a duplicate).
    ChangePeer {
        /// The change, as the entry holds it.
        cc: ConfChange,
        /// The region after it.
        region: Region,
    },
    /// A split applied: the region is now `derived` (its left part), and
    /// `new_region` (the right part) needs a peer on this store.
    Split {
        /// The parent region after the split.
        derived: Region,
        /// The region split off.
        new_region: Region,
    },
}

impl ExecResult {
    /// Whether this is the removal of peer `peer_id`.
    pub fn removes(&self, peer_id: u64) -> bool {
        matches!(self, ExecResult::ChangePeer { cc, .. }
            if cc.change_type() == raft::eraftpb::ConfChangeType::RemoveNode && cc.node_id == peer_id)
    }
}
