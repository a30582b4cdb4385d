//! The balance-leader scheduler (given code, lab 3c).
//!
//! A leader serves its region's reads and writes, so a store that leads
//! many regions works harder than one that only follows. This scheduler
//! moves leaderships (never data) from the store that leads the most
//! regions to a follower store that leads fewer.

use crate::core::{RegionInfo, StoreInfo};
use crate::operator::{OpKind, Operator};
use crate::schedule::{Schedule, ScheduleCluster};

/// Evens out leader counts across stores. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct BalanceLeaderScheduler;

impl BalanceLeaderScheduler {
    /// The operator's description.
    pub const DESC: &'static str = "balance-leader";
}

impl Schedule for BalanceLeaderScheduler {
    fn name(&self) -> &'static str {
        Self::DESC
    }

    fn kind(&self) -> OpKind {
        OpKind::BalanceLeader
    }

    /// From the suitable store that leads the most regions (ties: lower
    /// id), the first region (id order) with no operator running whose
    /// follower on a suitable store leads at least two fewer regions:
    /// the leadership moves to the follower whose store leads the fewest.
    fn schedule(&mut self, cluster: &mut ScheduleCluster<'_>) -> Option<Operator> {
        let mut sources = cluster.suitable_stores();
        sources.sort_by_key(|s| (std::cmp::Reverse(s.leader_count), s.id()));
        for source in sources {
            for region in cluster.cluster.regions.leaders_on(source.id()) {
                if cluster.is_busy(region.id()) {
                    continue;
                }
                let Some(target) = leader_target(cluster, region) else { continue };
                if source.leader_count > target.leader_count + 1 {
                    return Some(Operator::transfer_leader(
                        Self::DESC,
                        OpKind::BalanceLeader,
                        region,
                        target.id(),
                        cluster.now_ms,
                    ));
                }
            }
        }
        None
    }
}

/// Among `region`'s followers on suitable stores that are not pending,
/// the store that leads the fewest regions (ties: lower id).
fn leader_target<'c>(
    cluster: &'c ScheduleCluster<'_>,
    region: &RegionInfo,
) -> Option<&'c StoreInfo> {
    region
        .followers()
        .filter(|p| !region.pending_peers.contains(p))
        .filter_map(|p| cluster.store(p.store_id))
        .filter(|s| cluster.is_suitable(s))
        .min_by_key(|s| (s.leader_count, s.id()))
}
