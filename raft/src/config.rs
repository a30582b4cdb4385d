//! The configuration of one raft node.

use crate::errors::{Error, Result};

/// How one raft node is set up. Build it with [`Config::new`], change the
/// fields you need, and [`Config::validate`] it (`Raft::new` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id. Never 0 (0 means "no node" in messages).
    pub id: u64,
    /// The ids of every member, this node included, when the cluster starts
    /// for the first time. Leave it empty when restarting: the membership
    /// then comes from the storage's `ConfState`.
    pub peers: Vec<u64>,
    /// Ticks a follower waits without hearing from a leader before it starts
    /// an election. The real timeout is drawn in `[election_tick, 2 * election_tick)`.
    pub election_tick: usize,
    /// Ticks between two heartbeats of a leader. Must be less than
    /// `election_tick`.
    pub heartbeat_tick: usize,
    /// The last index already applied to the state machine, when restarting.
    /// Entries up to it are not handed out again. 0 for a fresh node.
    pub applied: u64,
    /// The seed of the node's random number generator (mixed with `id`).
    pub seed: u64,
    /// At most this many entries in one `MsgAppend` (a member far behind
    /// catches up over several). etcd-raft bounds bytes instead
    /// (`max_size_per_msg`); a count keeps the bound independent of what
    /// the entries hold.
    pub max_entries_per_msg: u64,
    /// A pipelining leader (see [`Progress`](crate::Progress)) has at most
    /// this many appends to one member unanswered; then it waits.
    pub max_inflight_msgs: usize,
}

impl Config {
    /// A config for node `id` in a cluster of `peers`, with an election
    /// timeout of 10 ticks, a heartbeat every tick, seed 0, and appends of
    /// at most 1024 entries, at most 256 of them unanswered.
    pub fn new(id: u64, peers: Vec<u64>) -> Config {
        Config {
            id,
            peers,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            seed: 0,
            max_entries_per_msg: 1024,
            max_inflight_msgs: 256,
        }
    }

    /// Checks the config once, so the rest of the crate can rely on it.
    ///
    /// # Errors
    ///
    /// [`Error::ConfigInvalid`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::ConfigInvalid("id must not be 0 (0 means no node)".into()));
        }
        if self.peers.contains(&0) {
            return Err(Error::ConfigInvalid("peers must not contain node id 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(Error::ConfigInvalid("heartbeat_tick must be greater than 0".into()));
        }
        if self.election_tick == 0 {
            return Err(Error::ConfigInvalid("election_tick must be greater than 0".into()));
        }
        if self.max_entries_per_msg == 0 {
            return Err(Error::ConfigInvalid("max_entries_per_msg must be greater than 0".into()));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::ConfigInvalid("max_inflight_msgs must be greater than 0".into()));
        }
        if self.heartbeat_tick >= self.election_tick {
            return Err(Error::ConfigInvalid(format!(
                "heartbeat_tick ({}) must be less than election_tick ({})",
                self.heartbeat_tick, self.election_tick
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Config;
    use crate::Error;

    #[test]
    fn defaults_are_valid() {
        Config::new(1, vec![1, 2, 3]).validate().unwrap();
    }

    #[test]
    fn bad_configs_say_why() {
        let mut c = Config::new(0, vec![]);
        assert!(matches!(c.validate(), Err(Error::ConfigInvalid(s)) if s.contains("id")));
        c = Config::new(1, vec![1]);
        c.heartbeat_tick = 10;
        assert!(
            matches!(c.validate(), Err(Error::ConfigInvalid(s)) if s.contains("heartbeat_tick"))
        );
        c = Config::new(1, vec![1]);
        c.election_tick = 0;
        assert!(matches!(c.validate(), Err(Error::ConfigInvalid(_))));
        c = Config { max_entries_per_msg: 0, ..Config::new(1, vec![1]) };
        assert!(matches!(c.validate(), Err(Error::ConfigInvalid(s)) if s.contains("max_entries")));
        c = Config { max_inflight_msgs: 0, ..Config::new(1, vec![1]) };
        assert!(matches!(c.validate(), Err(Error::ConfigInvalid(s)) if s.contains("max_inflight")));
    }
}
