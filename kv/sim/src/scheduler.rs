//! The mock scheduler: what the simulated cluster knows about its regions.
//!
//! The real scheduler (lab 3c) learns regions and leaders from the stores'
//! heartbeats. The simulator's clients only need the two calls the
//! TinyKV test harness uses: which region holds a key, and (through
//! [`Cluster::leader_of`](crate::Cluster::leader_of)) which store leads it.
//! In lab 2b there is one region, covering every key.

use std::collections::BTreeMap;

use tinykv_proto::metapb::Region;

/// The regions, by start key.
#[derive(Debug, Clone, Default)]
pub struct MockScheduler {
    regions: BTreeMap<Vec<u8>, Region>,
}

impl MockScheduler {
    /// A scheduler that knows `regions` (their ranges must not overlap).
    pub fn new(regions: impl IntoIterator<Item = Region>) -> MockScheduler {
        MockScheduler { regions: regions.into_iter().map(|r| (r.start_key.clone(), r)).collect() }
    }

    /// The region whose range holds `key`.
    pub fn region_by_key(&self, key: &[u8]) -> Option<&Region> {
        let (_, r) = self.regions.range(..=key.to_vec()).next_back()?;
        (r.end_key.is_empty() || key < r.end_key.as_slice()).then_some(r)
    }

    /// The region with id `id`.
    pub fn region(&self, id: u64) -> Option<&Region> {
        self.regions.values().find(|r| r.id == id)
    }

    /// Every region, in key order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &str, end: &str) -> Region {
        Region { id, start_key: start.into(), end_key: end.into(), ..Default::default() }
    }

    #[test]
    fn finds_the_region_of_a_key() {
        let s = MockScheduler::new([region(1, "", "m"), region(2, "m", "")]);
        assert_eq!(s.region_by_key(b"a").unwrap().id, 1);
        assert_eq!(s.region_by_key(b"").unwrap().id, 1);
        assert_eq!(s.region_by_key(b"m").unwrap().id, 2);
        assert_eq!(s.region_by_key(b"zzz").unwrap().id, 2);
        assert_eq!(s.region(2).unwrap().start_key, b"m");
        let gap = MockScheduler::new([region(1, "", "m")]);
        assert!(gap.region_by_key(b"x").is_none());
    }
}
