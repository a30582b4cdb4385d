//! A client's region cache: which region holds a key, as far as this
//! client knows (TiKV's client keeps the same).
//!
//! A client looks a key's region up here first, asks the scheduler on a
//! miss, and refreshes what it knows from the errors stores answer with:
//! `epoch_not_match` carries the store's current regions (after a split,
//! the parent and the new one), which replace every cached region they
//! overlap; `key_not_in_region` and `region_not_found` evict the region.
//! Cached regions never overlap.
//!
//! ```
//! use tinykv_proto::metapb::{Region, RegionEpoch};
//! use tinykv_sim::region_cache::RegionCache;
//!
//! let region = |id, start: &[u8], end: &[u8], version| Region {
//!     id,
//!     start_key: start.to_vec(),
//!     end_key: end.to_vec(),
//!     region_epoch: Some(RegionEpoch { conf_ver: 1, version }),
//!     ..Default::default()
//! };
//! let mut cache = RegionCache::default();
//! cache.insert(region(1, b"", b"", 1));
//! // Region 1 split at "m" into 1 and 2.
//! cache.insert(region(2, b"m", b"", 2));
//! assert_eq!(cache.find(b"x").map(|r| r.id), Some(2));
//! assert_eq!(cache.find(b"a"), None); // the old region 1 overlapped: gone
//! cache.insert(region(1, b"", b"m", 2));
//! assert_eq!(cache.find(b"a").map(|r| r.id), Some(1));
//! ```

use std::collections::BTreeMap;

use tinykv_proto::metapb::Region;

/// Regions by start key. Invariant: no two overlap.
#[derive(Debug, Clone, Default)]
pub struct RegionCache {
    by_start: BTreeMap<Vec<u8>, Region>,
}

fn version(region: &Region) -> u64 {
    region.region_epoch.map_or(0, |e| e.version)
}

fn contains(region: &Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key && (region.end_key.is_empty() || key < &region.end_key[..])
}

fn overlaps(a: &Region, b: &Region) -> bool {
    let a_before_b_ends = b.end_key.is_empty() || a.start_key < b.end_key;
    let b_before_a_ends = a.end_key.is_empty() || b.start_key < a.end_key;
    a_before_b_ends && b_before_a_ends
}

impl RegionCache {
    /// The cached region holding `key`.
    pub fn find(&self, key: &[u8]) -> Option<&Region> {
        let (_, region) = self.by_start.range(..=key.to_vec()).next_back()?;
        contains(region, key).then_some(region)
    }

    /// Caches `region`, dropping the cached regions it overlaps, unless
    /// one of those is newer (a higher `version`: `region` is then the
    /// stale view, and is not cached).
    pub fn insert(&mut self, region: Region) {
        let overlapping: Vec<Vec<u8>> = self
            .by_start
            .values()
            .filter(|r| overlaps(r, &region))
            .map(|r| r.start_key.clone())
            .collect();
        let newer = overlapping.iter().any(|k| {
            let cached = &self.by_start[k];
            cached.id != region.id && version(cached) > version(&region)
        });
        if newer {
            return;
        }
        for k in overlapping {
            self.by_start.remove(&k);
        }
        self.by_start.insert(region.start_key.clone(), region);
    }

    /// The cached region with id `region_id`.
    pub fn find_id(&self, region_id: u64) -> Option<&Region> {
        self.by_start.values().find(|r| r.id == region_id)
    }

    /// Forgets region `region_id`.
    pub fn evict(&mut self, region_id: u64) {
        self.by_start.retain(|_, r| r.id != region_id);
    }

    /// How many regions are cached.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::metapb::RegionEpoch;

    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(RegionEpoch { conf_ver: 1, version }),
            ..Default::default()
        }
    }

    #[test]
    fn a_stale_view_does_not_replace_a_newer_one() {
        let mut cache = RegionCache::default();
        cache.insert(region(2, b"m", b"", 2));
        cache.insert(region(1, b"", b"", 1));
        assert_eq!(cache.find(b"a"), None);
        assert_eq!(cache.find(b"z").map(|r| r.id), Some(2));
        cache.insert(region(1, b"", b"m", 2));
        assert_eq!(cache.len(), 2);
        cache.evict(2);
        assert_eq!(cache.find(b"z"), None);
        assert_eq!(cache.find(b"b").map(|r| r.id), Some(1));
    }

    #[test]
    fn lookups_respect_the_end_key() {
        let mut cache = RegionCache::default();
        cache.insert(region(1, b"b", b"d", 1));
        assert_eq!(cache.find(b"a"), None);
        assert_eq!(cache.find(b"b").map(|r| r.id), Some(1));
        assert_eq!(cache.find(b"c\xff").map(|r| r.id), Some(1));
        assert_eq!(cache.find(b"d"), None);
    }
}
