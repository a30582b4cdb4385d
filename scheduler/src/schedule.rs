//! What a scheduler sees, and the schedulers' common shape (given code).
//!
//! A scheduler looks at the cluster and may propose one [`Operator`]
//! each time it runs. It never changes the cluster itself: the
//! [`RaftCluster`](crate::RaftCluster) starts the operator, and the
//! stores carry it out when they hear of it in a heartbeat response.

use tinykv_proto::metapb::Peer;

use crate::config::ScheduleConfig;
use crate::core::{BasicCluster, StoreInfo};
use crate::id::IdAllocator;
use crate::operator::{OpKind, Operator, OperatorController};

/// A scheduler: balance-leader, balance-region, the replica checker.
pub trait Schedule: std::fmt::Debug + Send {
    /// Its name in logs.
    fn name(&self) -> &'static str;
    /// The kind of operator it makes (its limit is
    /// [`ScheduleCluster::allows`]).
    fn kind(&self) -> OpKind;
    /// Looks at the cluster and returns an operator to start, if any.
    fn schedule(&mut self, cluster: &mut ScheduleCluster<'_>) -> Option<Operator>;
}

/// The cluster as a scheduler sees it: the stores and regions, the
/// settings, the time, the running operators, and fresh peer ids.
#[derive(Debug)]
pub struct ScheduleCluster<'a> {
    /// The stores and regions.
    pub cluster: &'a BasicCluster,
    /// The settings.
    pub config: &'a ScheduleConfig,
    /// Now (ms).
    pub now_ms: u64,
    /// When the scheduler started (ms): a store that has never sent a
    /// heartbeat counts as silent since then.
    pub started_ms: u64,
    /// The operators running.
    pub operators: &'a OperatorController,
    ids: &'a mut IdAllocator,
}

impl<'a> ScheduleCluster<'a> {
    /// The view of `cluster` at `now_ms`.
    pub fn new(
        cluster: &'a BasicCluster,
        config: &'a ScheduleConfig,
        now_ms: u64,
        started_ms: u64,
        operators: &'a OperatorController,
        ids: &'a mut IdAllocator,
    ) -> ScheduleCluster<'a> {
        ScheduleCluster { cluster, config, now_ms, started_ms, operators, ids }
    }

    /// Whether `store` has been silent for longer than
    /// `max_store_down_time_ms`.
    pub fn is_down(&self, store: &StoreInfo) -> bool {
        store.down_time_ms(self.now_ms, self.started_ms) > self.config.max_store_down_time_ms
    }

    /// Whether `store` may take on regions: it is up (not offline, not a
    /// tombstone) and not down.
    pub fn is_suitable(&self, store: &StoreInfo) -> bool {
        store.is_up() && !self.is_down(store)
    }

    /// The stores that may take on regions, in id order.
    pub fn suitable_stores(&self) -> Vec<&'a StoreInfo> {
        let cluster = self.cluster;
        cluster.stores.values().filter(|s| self.is_suitable(s)).collect()
    }

    /// Whether another operator of `kind` may start now (its limit in the
    /// settings is not reached).
    pub fn allows(&self, kind: OpKind) -> bool {
        let limit = match kind {
            OpKind::BalanceLeader => self.config.leader_schedule_limit,
            OpKind::BalanceRegion => self.config.region_schedule_limit,
            OpKind::Replica => self.config.replica_schedule_limit,
            OpKind::Admin => usize::MAX,
        };
        self.operators.count(kind) < limit
    }

    /// Whether `region_id` has an operator running.
    pub fn is_busy(&self, region_id: u64) -> bool {
        self.operators.get(region_id).is_some()
    }

    /// A new peer on `store_id`, with a fresh id (`None` when the id
    /// block is used up: the scheduler tries again next time, after the
    /// cluster saved a new block).
    pub fn alloc_peer(&mut self, store_id: u64) -> Option<Peer> {
        Some(Peer { id: self.ids.alloc()?, store_id })
    }
}
