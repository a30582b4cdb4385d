//! What a leader knows about each member's log.

/// A leader's view of one member's log.
///
/// Invariant: `matched < next_index`. The leader's own entry has
/// `matched == last_index` and `next_index == last_index + 1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The highest index known to be replicated on the member (0: nothing
    /// known yet). Only grows while one leader is in charge.
    pub matched: u64,
    /// The index of the next entry to send to the member. Starts at the
    /// leader's last index + 1 and backs off when the member rejects.
    pub next_index: u64,
}

impl Progress {
    /// A member the leader knows nothing about yet, probed from `next_index`.
    pub fn new(next_index: u64) -> Progress {
        Progress { matched: 0, next_index }
    }
}
