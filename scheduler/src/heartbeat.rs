//! Region heartbeat processing (lab 3c: you write
//! [`BasicCluster::process_region_heartbeat`]).
//!
//! Every region's leader reports its region every few seconds, and at
//! once when it becomes leader or a conf change applies. Reports arrive
//! late, out of order, and from leaders that have been deposed without
//! knowing it yet. The scheduler must keep the newest view of every
//! region and throw away the old ones. The region epoch says which is
//! newer:
//!
//! - `version` rises with every change of the range (a split gives both
//!   halves `version + 1`), so of two regions that share a key, the one
//!   with the lower version is a view from before a split;
//! - `conf_ver` rises with every change of the peers, so of two reports
//!   of one region, the one with the lower `conf_ver` is from before a
//!   conf change.
//!
//! `conf_ver`s of *different* regions are unrelated (a new region starts
//! with its parent's), so only versions are compared across regions, as
//! PD does.

use tinykv_proto::metapb::RegionEpoch;

use crate::core::{BasicCluster, RegionInfo};
// SOLUTION BEGIN lab 3c
use std::collections::BTreeSet;
// SOLUTION END

/// Why a region heartbeat was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The report is older than what the scheduler knows: it names a
    /// lower `version` or `conf_ver` than the known state of its region,
    /// or a lower `version` than a known region that shares a key with it.
    /// Nothing changes.
    #[error(
        "stale heartbeat of region {region_id} (conf_ver {}, version {}): the scheduler knows region {known_region_id} at conf_ver {}, version {}",
        reported.conf_ver,
        reported.version,
        known.conf_ver,
        known.version
    )]
    Stale {
        /// The region reported.
        region_id: u64,
        /// Its reported epoch.
        reported: RegionEpoch,
        /// The known region it is older than: the same id, or one that
        /// overlaps it.
        known_region_id: u64,
        /// That region's epoch.
        known: RegionEpoch,
    },
}

impl HeartbeatError {
    /// The error for a report of `region` that is older than `known`.
    pub fn stale(region: &RegionInfo, known: &RegionInfo) -> HeartbeatError {
        HeartbeatError::Stale {
            region_id: region.id(),
            reported: region.epoch(),
            known_region_id: known.id(),
            known: known.epoch(),
        }
    }
}

/// Whether a report that replaces `origin` (the known state of the same
/// region) would change anything the scheduler uses: the epoch, the
/// leader, the pending peers or the approximate size. (The range and the
/// peers cannot change without the epoch.)
pub fn is_news(origin: &RegionInfo, region: &RegionInfo) -> bool {
    origin.epoch() != region.epoch()
        || origin.leader != region.leader
        || origin.pending_peers != region.pending_peers
        || origin.approximate_size != region.approximate_size
}

// SOLUTION BEGIN lab 3c
fn is_older(reported: RegionEpoch, known: RegionEpoch) -> bool {
    reported.version < known.version || reported.conf_ver < known.conf_ver
}
// SOLUTION END

impl BasicCluster {
    /// Takes a region heartbeat (already checked by
    /// [`RegionInfo::from_heartbeat`]) into the cluster's view. **Lab 3c.**
    ///
    /// 1. **Reject a stale report** with [`HeartbeatError::stale`]: its
    ///    `version`, then its `conf_ver`, is lower than those of the known
    ///    region with its id (`self.regions.get`); or its `version` is
    ///    lower than that of a known region that shares a key with it
    ///    (`self.regions.overlaps`). Nothing changes then.
    /// 2. **Skip a report that is no news**: the region is known and
    ///    [`is_news`] says nothing changed. Return `Ok(false)`.
    /// 3. Otherwise **take it**: `self.regions.set_region(region)`
    ///    replaces the known state and removes the overlapping regions
    ///    (the old views of a split). Then recount the statistics
    ///    ([`update_store_status`](Self::update_store_status)) of every
    ///    store that the new region, the old one or a removed region has
    ///    a peer on: each of them gained or lost a region, a leadership, a
    ///    pending peer or some size. Return `Ok(true)`.
    ///
    /// Checked by the `region_heartbeat_*_3c` tests in
    /// `scheduler/tests/project3c.rs`, and end to end by
    /// `kv/sim/tests/project3c.rs`.
    ///
    /// # Errors
    ///
    /// [`HeartbeatError::Stale`], naming the known region it is older than.
    pub fn process_region_heartbeat(&mut self, region: RegionInfo) -> Result<bool, HeartbeatError> {
        // SOLUTION BEGIN lab 3c
        let origin = self.regions.get(region.id());
        if let Some(origin) = origin
            && is_older(region.epoch(), origin.epoch())
        {
            return Err(HeartbeatError::stale(&region, origin));
        }
        for other in self.regions.overlaps(&region.region) {
            if region.epoch().version < other.epoch().version {
                return Err(HeartbeatError::stale(&region, other));
            }
        }
        if origin.is_some_and(|origin| !is_news(origin, &region)) {
            return Ok(false);
        }
        let mut stores: BTreeSet<u64> = region.store_ids();
        for replaced in self.regions.set_region(region) {
            stores.extend(replaced.store_ids());
        }
        for store_id in stores {
            self.update_store_status(store_id);
        }
        Ok(true)
        // SOLUTION STUB
        // let _ = region;
        // todo!("lab 3c: BasicCluster::process_region_heartbeat (scheduler/src/heartbeat.rs)")
        // SOLUTION END
    }
}
