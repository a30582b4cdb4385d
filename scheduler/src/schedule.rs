//! What a scheduler sees, and the schedulers' common shape (given code).
//!
//! A scheduler looks at the cluster and may propose one [`Operator`]
//! each time it runs. It never changes the cluster itself: the
//! [`RaftCluster`](crate::RaftCluster) starts the operator, and the
//! stores carry it out when they hear of it in a heartbeat response.

use std::cell::RefCell;
use std::collections::BTreeMap;

use tinykv_proto::metapb::Peer;

use crate::config::ScheduleConfig;
use crate::core::{BasicCluster, RegionInfo, StoreInfo};
use crate::id::IdAllocator;
use crate::operator::{OpKind, OpStep, Operator, OperatorController};

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
///
/// **The store statistics count the running operators as done**
/// (PD's "operator influence"): a store that a running operator adds a
/// peer to already counts that region and its size, the store it removes
/// one from no longer does, and a transfer moves a leader count. The
/// statistics from heartbeats change only once a step applies and its
/// region reports, and a scheduler that ran meanwhile on the raw counts
/// would keep moving regions to the same emptiest store, then back.
#[derive(Debug)]
pub struct ScheduleCluster<'a> {
    /// The stores and regions, as the heartbeats report them.
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
    /// The stores with the running operators counted as done.
    stores: BTreeMap<u64, StoreInfo>,
    ids: RefCell<&'a mut IdAllocator>,
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
        let mut stores = cluster.stores.clone();
        for op in operators.running() {
            let Some(region) = cluster.regions.get(op.region_id) else { continue };
            for step in &op.steps[op.current..] {
                influence(&mut stores, region, step);
            }
        }
        ScheduleCluster {
            cluster,
            config,
            now_ms,
            started_ms,
            operators,
            stores,
            ids: RefCell::new(ids),
        }
    }

    /// The store with id `store_id`, running operators counted as done.
    pub fn store(&self, store_id: u64) -> Option<&StoreInfo> {
        self.stores.get(&store_id)
    }

    /// Every store in id order, running operators counted as done.
    pub fn stores(&self) -> impl Iterator<Item = &StoreInfo> {
        self.stores.values()
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

    /// The stores that may take on regions, in id order, running
    /// operators counted as done.
    pub fn suitable_stores(&self) -> Vec<&StoreInfo> {
        self.stores.values().filter(|s| self.is_suitable(s)).collect()
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
    pub fn alloc_peer(&self, store_id: u64) -> Option<Peer> {
        Some(Peer { id: self.ids.borrow_mut().alloc()?, store_id })
    }
}

/// Counts `step` of an operator on `region` as done in `stores`.
fn influence(stores: &mut BTreeMap<u64, StoreInfo>, region: &RegionInfo, step: &OpStep) {
    let size = region.size();
    match *step {
        OpStep::AddPeer(peer) => {
            if let Some(s) = stores.get_mut(&peer.store_id) {
                s.region_count += 1;
                s.region_size += size;
            }
        }
        OpStep::RemovePeer { store_id } => {
            if let Some(s) = stores.get_mut(&store_id) {
                s.region_count = s.region_count.saturating_sub(1);
                s.region_size = s.region_size.saturating_sub(size);
            }
        }
        OpStep::TransferLeader { to_store } => {
            if let Some(s) = stores.get_mut(&region.leader_store_id()) {
                s.leader_count = s.leader_count.saturating_sub(1);
                s.leader_size = s.leader_size.saturating_sub(size);
            }
            if let Some(s) = stores.get_mut(&to_store) {
                s.leader_count += 1;
                s.leader_size += size;
            }
        }
        // Every store keeps the bytes; only the region count changes,
        // and a count is not what the schedulers balance.
        OpStep::Split { .. } => {}
    }
}
