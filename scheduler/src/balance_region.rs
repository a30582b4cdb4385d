//! The balance-region scheduler (lab 3c: you write
//! [`BalanceRegionScheduler::schedule`]).
//!
//! Stores fill up unevenly: a region splits on the stores that hold it,
//! and a new store starts empty. This scheduler moves replicas from the
//! store that holds the most data to the one that holds the least, one
//! region at a time, until the difference is within what one more move
//! could fix.

use crate::operator::{OpKind, Operator};
use crate::schedule::{Schedule, ScheduleCluster};
// SOLUTION BEGIN lab 3c
use crate::core::{RegionInfo, StoreInfo};
// SOLUTION END

/// Moves replicas from the fullest store to the emptiest. See the module
/// docs.
#[derive(Clone, Debug, Default)]
pub struct BalanceRegionScheduler;

impl BalanceRegionScheduler {
    /// The operator's description.
    pub const DESC: &'static str = "balance-region";
}

// SOLUTION BEGIN lab 3c
/// The regions `source` could give away, in the order to try them:
/// those whose peer there lags behind (a move costs it nothing it has
/// not already lost), then those it follows, then those it leads; each
/// group in id order. Regions with an operator running, and regions
/// that lack replicas (the replica checker's job first), are skipped.
fn candidates<'a>(cluster: &ScheduleCluster<'a>, source: &StoreInfo) -> Vec<&'a RegionInfo> {
    let regions = &cluster.cluster.regions;
    let full = |r: &&RegionInfo| r.region.peers.len() >= cluster.config.max_replicas;
    let free = |r: &&RegionInfo| !cluster.is_busy(r.id());
    let pending = regions.pending_on(source.id());
    let followers = regions.followers_on(source.id()).filter(|r| !r.is_pending_on(source.id()));
    let leaders = regions.leaders_on(source.id());
    pending.chain(followers).chain(leaders).filter(full).filter(free).collect()
}
// SOLUTION END

impl Schedule for BalanceRegionScheduler {
    fn name(&self) -> &'static str {
        Self::DESC
    }

    fn kind(&self) -> OpKind {
        OpKind::BalanceRegion
    }

    /// Picks one replica to move, or `None`. **Lab 3c.**
    ///
    /// 1. The **suitable** stores are those that are up and not down
    ///    longer than `max_store_down_time_ms`
    ///    ([`ScheduleCluster::suitable_stores`]). Only they give or take
    ///    regions; a down store's regions are the replica checker's job.
    ///    Their statistics already count the running operators as done
    ///    (see [`ScheduleCluster`]): use them, not `cluster.cluster.stores`.
    /// 2. Try the suitable stores as the **source** from the largest
    ///    `region_size` to the smallest (ties: lower id first).
    /// 3. On a source, try its regions in this order: those whose peer
    ///    there is **pending** (`regions.pending_on`), then those it
    ///    **follows** (`followers_on`), then those it **leads**
    ///    (`leaders_on`), each in id order. Skip a region that has an
    ///    operator running ([`ScheduleCluster::is_busy`]) or fewer peers
    ///    than `max_replicas`.
    /// 4. The **target** for a region is the suitable store with the
    ///    smallest `region_size` (ties: lower id) that holds no peer of it.
    /// 5. Move only if `source.region_size - target.region_size` is more
    ///    than **twice the region's size** ([`RegionInfo::size`]):
    ///    otherwise the move would just make the target the fuller one,
    ///    and the next run would move it back. If not, try the next
    ///    region, then the next source.
    /// 6. The move is [`Operator::move_peer`] with a new peer on the
    ///    target ([`ScheduleCluster::alloc_peer`]; `None` if it returns
    ///    none), described as [`Self::DESC`], kind
    ///    [`OpKind::BalanceRegion`], made at `cluster.now_ms`.
    ///
    /// Checked by the `balance_region_*_3c` tests in
    /// `scheduler/tests/project3c.rs`, and end to end by
    /// `kv/sim/tests/project3c.rs`.
    ///
    /// [`RegionInfo::size`]: crate::core::RegionInfo::size
    fn schedule(&mut self, cluster: &mut ScheduleCluster<'_>) -> Option<Operator> {
        // SOLUTION BEGIN lab 3c
        let mut sources = cluster.suitable_stores();
        sources.sort_by_key(|s| (std::cmp::Reverse(s.region_size), s.id()));
        for source in sources {
            for region in candidates(cluster, source) {
                let Some(target) = target_for(cluster, region) else { continue };
                let gap = source.region_size.saturating_sub(target.region_size);
                if gap <= 2 * region.size() {
                    continue;
                }
                let peer = cluster.alloc_peer(target.id())?;
                let now_ms = cluster.now_ms;
                return Some(Operator::move_peer(
                    Self::DESC,
                    OpKind::BalanceRegion,
                    region,
                    source.id(),
                    peer,
                    now_ms,
                ));
            }
        }
        None
        // SOLUTION STUB
        // let _ = cluster;
        // todo!("lab 3c: BalanceRegionScheduler::schedule (scheduler/src/balance_region.rs)")
        // SOLUTION END
    }
}

// SOLUTION BEGIN lab 3c
/// The suitable store with the least data that holds no peer of `region`.
fn target_for<'c>(cluster: &'c ScheduleCluster<'_>, region: &RegionInfo) -> Option<&'c StoreInfo> {
    let holders = region.store_ids();
    cluster
        .suitable_stores()
        .into_iter()
        .filter(|s| !holders.contains(&s.id()))
        .min_by_key(|s| (s.region_size, s.id()))
}
// SOLUTION END
