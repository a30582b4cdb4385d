//! The scheduler's settings (given code).

/// How the scheduler schedules. Times are in ms of the scheduler's clock
/// (wall-clock ms in `tinykv-scheduler`, virtual ms in the simulator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// How many replicas each region should have.
    pub max_replicas: usize,
    /// A store silent for longer than this is *down*: it gets no new
    /// peers, and the replica checker replaces its peers.
    pub max_store_down_time_ms: u64,
    /// At most this many balance-leader operators run at once.
    pub leader_schedule_limit: usize,
    /// At most this many balance-region operators run at once.
    pub region_schedule_limit: usize,
    /// At most this many replica operators run at once.
    pub replica_schedule_limit: usize,
    /// How often the balance schedulers and the replica checker run.
    pub schedule_interval_ms: u64,
    /// An operator that has not finished after this long is dropped.
    pub operator_timeout_ms: u64,
    /// The same for an operator that only moves the leadership: it takes
    /// an election, not a snapshot, and while it is repeated to a peer
    /// that cannot take over, nothing else can be planned for its region.
    pub leader_operator_timeout_ms: u64,
}

impl Default for ScheduleConfig {
    /// PD's and TinyKV's defaults, with a shorter down time so that a
    /// demo cluster heals within a minute.
    fn default() -> ScheduleConfig {
        ScheduleConfig {
            max_replicas: 3,
            max_store_down_time_ms: 60_000,
            leader_schedule_limit: 4,
            region_schedule_limit: 4,
            replica_schedule_limit: 8,
            schedule_interval_ms: 1000,
            operator_timeout_ms: 10 * 60_000,
            leader_operator_timeout_ms: 10_000,
        }
    }
}
