//! The errors of the raft crate.
//!
//! Storage errors (`Compacted`, `Unavailable`, `SnapshotOutOfDate`,
//! `SnapshotTemporarilyUnavailable`) are the ones a [`Storage`](crate::Storage)
//! returns; the others come from stepping messages and checking a config.

/// Everything that can go wrong in the raft crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The requested index is older than the storage's first index: it was
    /// compacted into a snapshot.
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    /// The requested index is newer than the storage's last index.
    #[error("requested entry at index is unavailable")]
    Unavailable,
    /// The snapshot is older than the one the storage already holds.
    #[error("snapshot is out of date")]
    SnapshotOutOfDate,
    /// The storage is still making the snapshot; ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// The proposal was not appended: this node is not the leader, or a
    /// leader transfer is in progress, or a conf change is still pending.
    #[error("raft proposal dropped")]
    ProposalDropped,
    /// A local message type (`MsgHup`, `MsgBeat`, `MsgPropose`) was given to
    /// `RawNode::step`, which only takes messages from peers.
    #[error("raft: cannot step raft local message")]
    StepLocalMsg,
    /// A response came from a node that is not a member.
    #[error("raft: cannot step as peer not found")]
    StepPeerNotFound,
    /// The configuration is invalid; the text says why.
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
    /// The storage failed in its own way.
    #[error("raft storage error: {0}")]
    Store(String),
}

/// The result type of the raft crate.
pub type Result<T> = std::result::Result<T, Error>;
