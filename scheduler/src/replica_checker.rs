//! The replica checker (given code, lab 3c).
//!
//! Every region should have `max_replicas` replicas on live stores. A
//! store that crashed for good, or one an operator is taking out of the
//! cluster (offline), still holds peers that count for the region's
//! quorum but will never serve again. The checker looks at the regions
//! in key order, a batch at a time, and for the first one it can fix:
//!
//! 1. fewer than `max_replicas` **live** peers (on a store that is up and
//!    not down): add one on the suitable store with the fewest regions;
//! 2. more peers than `max_replicas`: remove a peer that is not live,
//!    else the one on the store with the most data.
//!
//! A region that lost a store thus first grows to `max_replicas + 1`
//! peers, then drops the dead one, so it never has fewer live replicas
//! than before.

use crate::core::{RegionInfo, StoreInfo};
use crate::operator::{OpKind, OpStep, Operator};
use crate::schedule::{Schedule, ScheduleCluster};

/// Keeps every region at `max_replicas` live replicas. See the module
/// docs.
#[derive(Clone, Debug, Default)]
pub struct ReplicaChecker {
    /// Where the next run starts: the start key after the last region it
    /// looked at (it goes round the key space).
    cursor: Vec<u8>,
}

/// How many regions one run looks at.
pub const REPLICA_CHECK_BATCH: usize = 256;

impl ReplicaChecker {
    /// What it decides for `region`, if anything.
    fn check(&self, cluster: &mut ScheduleCluster<'_>, region: &RegionInfo) -> Option<Operator> {
        let max = cluster.config.max_replicas;
        let is_live =
            |store_id: u64| cluster.store(store_id).is_some_and(|s| cluster.is_suitable(s));
        let live = region.region.peers.iter().filter(|p| is_live(p.store_id)).count();
        let now_ms = cluster.now_ms;
        if live < max {
            let target = add_target(cluster, region)?;
            let peer = cluster.alloc_peer(target)?;
            let steps = vec![OpStep::AddPeer(peer)];
            return Some(Operator::new("add-replica", OpKind::Replica, region, steps, now_ms));
        }
        if region.region.peers.len() > max {
            let dead = region.region.peers.iter().find(|p| !is_live(p.store_id));
            let (desc, store_id) = match dead {
                Some(p) => ("remove-dead-replica", p.store_id),
                None => {
                    let fullest = region
                        .region
                        .peers
                        .iter()
                        .filter_map(|p| cluster.store(p.store_id))
                        .max_by_key(|s| (s.region_size, std::cmp::Reverse(s.id())))?;
                    ("remove-extra-replica", fullest.id())
                }
            };
            let steps = vec![OpStep::RemovePeer { store_id }];
            return Some(Operator::new(desc, OpKind::Replica, region, steps, now_ms));
        }
        None
    }
}

impl Schedule for ReplicaChecker {
    fn name(&self) -> &'static str {
        "replica-checker"
    }

    fn kind(&self) -> OpKind {
        OpKind::Replica
    }

    fn schedule(&mut self, cluster: &mut ScheduleCluster<'_>) -> Option<Operator> {
        let regions = &cluster.cluster.regions;
        // From the cursor to the end of the key space, then round.
        let mut batch: Vec<&RegionInfo> = regions.scan(&self.cursor, b"", REPLICA_CHECK_BATCH);
        if !self.cursor.is_empty() && batch.len() < REPLICA_CHECK_BATCH {
            let seen: std::collections::BTreeSet<u64> = batch.iter().map(|r| r.id()).collect();
            let before = regions.scan(b"", &self.cursor, 0).into_iter();
            let before: Vec<&RegionInfo> = before.filter(|r| !seen.contains(&r.id())).collect();
            batch.extend(before.into_iter().take(REPLICA_CHECK_BATCH - seen.len()));
        }
        let mut found = None;
        for region in &batch {
            if cluster.is_busy(region.id()) {
                continue;
            }
            if let Some(op) = self.check(cluster, region) {
                found = Some((op, region.region.end_key.clone()));
                break;
            }
        }
        match found {
            Some((op, end_key)) => {
                self.cursor = end_key;
                Some(op)
            }
            None => {
                self.cursor = batch.last().map(|r| r.region.end_key.clone()).unwrap_or_default();
                None
            }
        }
    }
}

/// The suitable store with the fewest regions (ties: less data, lower
/// id) that holds no peer of `region`.
fn add_target(cluster: &ScheduleCluster<'_>, region: &RegionInfo) -> Option<u64> {
    let holders = region.store_ids();
    cluster
        .suitable_stores()
        .into_iter()
        .filter(|s| !holders.contains(&s.id()))
        .min_by_key(|s: &&StoreInfo| (s.region_count, s.region_size, s.id()))
        .map(StoreInfo::id)
}
