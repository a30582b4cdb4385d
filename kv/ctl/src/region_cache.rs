//! [`RegionCache`]: the regions the routed client has learned, by key
//! range.
//!
//! A region covers `[start_key, end_key)` (an empty end key is unbounded).
//! The cache starts empty in every tinykv-ctl process; the router fills it
//! from the scheduler on a miss and corrects it from what stores answer
//! (a new leader, the current regions of an epoch mismatch). It may be out
//! of date, never inconsistent with itself:
//!
//! Invariant: no two cached regions overlap, so a key finds at most one.
//! [`RegionCache::insert`] keeps it by dropping every region the new one
//! overlaps (the newer word about a range wins).

use std::collections::BTreeMap;

use tinykv_proto::metapb::{Peer, Region, RegionEpoch};

/// A region as the client knows it, and the peer it believes leads it.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRegion {
    /// The region: id, range, epoch, peers.
    pub region: Region,
    /// The peer believed to lead it (`None`: not known; requests then go
    /// to its first peer, which names the leader if it is not).
    pub leader: Option<Peer>,
    /// Its approximate size in bytes, as the scheduler last heard from its
    /// leader (0: not measured yet, or not asked).
    pub approximate_size: u64,
}

impl CachedRegion {
    /// A region and the leader a scheduler answer names (an empty peer,
    /// id 0, is no leader).
    pub fn new(region: Region, leader: Option<Peer>) -> CachedRegion {
        CachedRegion { region, leader: leader.filter(|p| p.id != 0), approximate_size: 0 }
    }

    /// The same, with its approximate size.
    #[must_use]
    pub fn with_size(mut self, approximate_size: u64) -> CachedRegion {
        self.approximate_size = approximate_size;
        self
    }

    /// The region's id.
    pub fn id(&self) -> u64 {
        self.region.id
    }

    /// Whether `key` is in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        contains(&self.region, key)
    }

    /// The region's epoch (a missing one as 0/0).
    pub fn epoch(&self) -> RegionEpoch {
        self.region.region_epoch.unwrap_or_default()
    }

    /// The peer a request goes to: the leader, else the first peer.
    pub fn target(&self) -> Option<Peer> {
        self.leader.or_else(|| self.region.peers.first().copied())
    }

    /// The peer after `peer` in the region's peer list (wrapping around):
    /// the one to try when `peer`'s store cannot be reached or does not
    /// know the leader. `None` if the region has no other peer.
    pub fn peer_after(&self, peer: &Peer) -> Option<Peer> {
        let peers = &self.region.peers;
        let at = peers.iter().position(|p| p.id == peer.id)?;
        (1..peers.len()).map(|step| peers[(at + step) % peers.len()]).next()
    }
}

/// Whether `key` is in `region`'s range.
pub fn contains(region: &Region, key: &[u8]) -> bool {
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// The cached regions, by start key. See the module docs.
#[derive(Debug, Default)]
pub struct RegionCache {
    /// Invariant: keyed by each region's own start key; no two overlap.
    by_start: BTreeMap<Vec<u8>, CachedRegion>,
}

impl RegionCache {
    /// The cached region holding `key`, if any.
    pub fn find(&self, key: &[u8]) -> Option<&CachedRegion> {
        let (_, region) = self.by_start.range(..=key.to_vec()).next_back()?;
        region.contains(key).then_some(region)
    }

    /// The cached region with id `region_id`, if any.
    pub fn by_id(&self, region_id: u64) -> Option<&CachedRegion> {
        self.by_start.values().find(|r| r.id() == region_id)
    }

    /// Caches `region`, dropping every cached region it overlaps (and
    /// the older copy of itself).
    pub fn insert(&mut self, region: CachedRegion) {
        self.remove(region.id());
        let (start, end) = (&region.region.start_key, &region.region.end_key);
        let overlapping: Vec<Vec<u8>> = self
            .by_start
            .iter()
            .filter(|(other_start, other)| {
                let other_end = &other.region.end_key;
                let starts_before_end = end.is_empty() || *other_start < end;
                let ends_after_start = other_end.is_empty() || other_end > start;
                starts_before_end && ends_after_start
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in overlapping {
            self.by_start.remove(&key);
        }
        self.by_start.insert(start.clone(), region);
        debug_assert!(self.is_consistent(), "regions overlap after an insert: {self:?}");
    }

    /// Forgets region `region_id` (the next request for its keys asks the
    /// scheduler).
    pub fn remove(&mut self, region_id: u64) {
        self.by_start.retain(|_, r| r.id() != region_id);
    }

    /// Records `leader` as region `region_id`'s leader, if it is cached.
    pub fn set_leader(&mut self, region_id: u64, leader: Peer) {
        if let Some(region) = self.by_start.values_mut().find(|r| r.id() == region_id) {
            region.leader = Some(leader);
        }
    }

    /// The invariant: each entry under its start key, none overlapping
    /// the next.
    fn is_consistent(&self) -> bool {
        let keyed_right = self.by_start.iter().all(|(k, r)| *k == r.region.start_key);
        let regions: Vec<&Region> = self.by_start.values().map(|r| &r.region).collect();
        let apart =
            regions.windows(2).all(|w| !w[0].end_key.is_empty() && w[0].end_key <= w[1].start_key);
        keyed_right && apart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &str, end: &str, version: u64) -> CachedRegion {
        let peers = (1..=3).map(|s| Peer { id: id * 10 + s, store_id: s }).collect();
        CachedRegion::new(
            Region {
                id,
                start_key: start.into(),
                end_key: end.into(),
                region_epoch: Some(RegionEpoch { conf_ver: 1, version }),
                peers,
            },
            None,
        )
    }

    #[test]
    fn finds_the_region_of_a_key() {
        let mut cache = RegionCache::default();
        cache.insert(region(1, "", "m", 2));
        cache.insert(region(2, "m", "", 2));
        assert_eq!(cache.find(b"").map(CachedRegion::id), Some(1));
        assert_eq!(cache.find(b"l\xff").map(CachedRegion::id), Some(1));
        assert_eq!(cache.find(b"m").map(CachedRegion::id), Some(2), "the end key is exclusive");
        assert_eq!(cache.find(b"zzz").map(CachedRegion::id), Some(2));
        cache.remove(1);
        assert_eq!(cache.find(b"a"), None, "a dropped region is a miss");
    }

    #[test]
    fn a_newer_region_replaces_what_it_overlaps() {
        let mut cache = RegionCache::default();
        cache.insert(region(1, "", "", 1));
        // Region 1 split at "m": its left half and the new right half.
        cache.insert(region(1, "", "m", 2));
        assert_eq!(cache.find(b"x"), None, "the old unbounded range is gone");
        cache.insert(region(2, "m", "", 2));
        // A stale copy of the whole range wipes both (the newer word wins).
        cache.insert(region(1, "", "", 1));
        assert_eq!(cache.find(b"x").map(CachedRegion::id), Some(1));
        assert_eq!(cache.by_id(2), None);
        assert!(cache.is_consistent());
    }

    #[test]
    fn leaders_and_other_peers() {
        let mut cache = RegionCache::default();
        cache.insert(region(1, "", "", 1));
        let first = cache.find(b"k").unwrap().target().unwrap();
        assert_eq!(first.store_id, 1, "no known leader: the first peer");
        cache.set_leader(1, Peer { id: 13, store_id: 3 });
        let r = cache.find(b"k").unwrap();
        assert_eq!(r.target(), Some(Peer { id: 13, store_id: 3 }));
        assert_eq!(r.peer_after(&Peer { id: 13, store_id: 3 }).map(|p| p.store_id), Some(1));
        let lone = CachedRegion::new(Region { peers: vec![first], ..Region::default() }, None);
        assert_eq!(lone.peer_after(&first), None);
    }
}
