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

pub mod compact_log;
pub mod epoch;

use tinykv_proto::raft_serverpb::RaftTruncatedState;

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
}
