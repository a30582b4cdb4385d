//! The raftstore's configuration.

/// How a store runs its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Milliseconds between two raft ticks (virtual milliseconds in the
    /// simulator). The driver calls `Store::on_tick` at this pace.
    pub raft_base_tick_ms: u64,
    /// Ticks without a leader before a follower campaigns.
    pub raft_election_timeout_ticks: usize,
    /// Ticks between two heartbeats of a leader.
    pub raft_heartbeat_ticks: usize,
    /// Ticks between two log GC checks of a leader (lab 2c).
    pub raft_log_gc_tick_interval: usize,
    /// A leader compacts its log once the applied index is this many
    /// entries past the first index (lab 2c).
    pub raft_log_gc_count_limit: u64,
    /// Ticks between two sweeps of stale snapshot files.
    pub snap_gc_tick_interval: usize,
    /// Ticks between two region heartbeats of a leader to the scheduler
    /// (lab 3b; a leader also reports at once when it is elected and when
    /// its region changes).
    pub region_heartbeat_tick_interval: usize,
    /// Ticks between two store heartbeats to the scheduler.
    pub store_heartbeat_tick_interval: usize,
    /// Ticks between two split checks of a leader (lab 3b): a check scans
    /// the region only if it grew by `region_split_size / 8` bytes since
    /// the last one (or its size is unknown, or a split it asked for has
    /// not happened yet).
    pub split_region_check_tick_interval: usize,
    /// A region whose data is larger than this many bytes splits (lab 3b).
    pub region_max_size: u64,
    /// Where it splits: after about this many bytes of its data.
    pub region_split_size: u64,
    /// Seed of the peers' raft randomness (mixed with each peer id).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            raft_base_tick_ms: 10,
            raft_election_timeout_ticks: 10,
            raft_heartbeat_ticks: 2,
            raft_log_gc_tick_interval: 10,
            raft_log_gc_count_limit: 1000,
            snap_gc_tick_interval: 100,
            region_heartbeat_tick_interval: 10,
            store_heartbeat_tick_interval: 100,
            split_region_check_tick_interval: 10,
            region_max_size: 144 * 1024 * 1024,
            region_split_size: 96 * 1024 * 1024,
            seed: 0,
        }
    }
}
