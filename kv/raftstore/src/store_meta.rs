//! The regions of one store, by id and by key range (given code).
//!
//! A store holds one peer per region, and the regions of one store never
//! overlap: a key belongs to at most one of them. [`StoreMeta`] keeps
//! both views, so that the store finds a region by id (a raft message, a
//! command's header) and by key (routing a request; deciding whether a
//! new peer may be created for a range) in O(log n).
//!
//! Only the store changes its meta, and only through
//! [`StoreMeta::insert`], [`StoreMeta::update`] and
//! [`StoreMeta::remove`]; each asserts the invariant, so a bug that would
//! make two regions overlap stops the store at once, naming both.
//!
//! ```
//! use tinykv_proto::metapb::Region;
//! use tinykv_raftstore::store_meta::StoreMeta;
//!
//! let region = |id: u64, start: &[u8], end: &[u8]| Region {
//!     id,
//!     start_key: start.to_vec(),
//!     end_key: end.to_vec(),
//!     ..Default::default()
//! };
//! let mut meta = StoreMeta::default();
//! meta.insert(region(1, b"", b"m"));
//! meta.insert(region(2, b"m", b""));
//! assert_eq!(meta.region_for_key(b"k").map(|r| r.id), Some(1));
//! assert_eq!(meta.region_for_key(b"x").map(|r| r.id), Some(2));
//! assert_eq!(meta.overlapping(b"a", b"z"), vec![1, 2]);
//! ```

use std::collections::BTreeMap;
use std::ops::Bound;

use tinykv_proto::metapb::Region;

/// Where a region's range ends, ordered so that an unbounded end (an
/// empty `end_key`) sorts after every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// The range ends before this key (exclusive).
    Key(Vec<u8>),
    /// The range runs to the end of the key space.
    Unbounded,
}

impl End {
    fn of(region: &Region) -> End {
        if region.end_key.is_empty() { End::Unbounded } else { End::Key(region.end_key.clone()) }
    }
}

/// The regions of one store. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct StoreMeta {
    /// Region id → the region as this store last knew it.
    regions: BTreeMap<u64, Region>,
    /// Each region's end → its id. Invariant: exactly the regions of
    /// `regions`, and no two of them overlap, so ordering by end orders by
    /// start too.
    ranges: BTreeMap<End, u64>,
}

impl StoreMeta {
    /// The region with id `region_id`.
    pub fn region(&self, region_id: u64) -> Option<&Region> {
        self.regions.get(&region_id)
    }

    /// How many regions there are.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Every region, by id.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    /// The region whose range holds `key`.
    pub fn region_for_key(&self, key: &[u8]) -> Option<&Region> {
        let (_, id) = self.first_ending_after(key)?;
        let region = &self.regions[&id];
        (region.start_key.as_slice() <= key).then_some(region)
    }

    /// The ids of the regions that share a key with `[start, end)` (an
    /// empty `end` is unbounded), in key order.
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let after_start = (Bound::Excluded(End::Key(start.to_vec())), Bound::Unbounded);
        self.ranges
            .range(after_start)
            .map(|(_, id)| &self.regions[id])
            .take_while(|r| end.is_empty() || r.start_key.as_slice() < end)
            .map(|r| r.id)
            .collect()
    }

    /// Adds a region this store did not have.
    ///
    /// # Panics
    ///
    /// If the store has a region with the same id, or one that overlaps
    /// it: either would break the store's routing.
    pub fn insert(&mut self, region: Region) {
        assert!(
            !self.regions.contains_key(&region.id),
            "store meta: region {} is already known as {:?}, cannot add {:?}",
            region.id,
            self.regions[&region.id],
            region
        );
        assert!(
            region.end_key.is_empty() || region.start_key < region.end_key,
            "store meta: region {} has an empty or inverted range {:?}",
            region.id,
            region
        );
        let overlap = self.overlapping(&region.start_key, &region.end_key);
        assert!(
            overlap.is_empty(),
            "store meta: region {} {:?}..{:?} overlaps {}",
            region.id,
            region.start_key.escape_ascii().to_string(),
            region.end_key.escape_ascii().to_string(),
            self.describe(&overlap)
        );
        self.ranges.insert(End::of(&region), region.id);
        self.regions.insert(region.id, region);
        self.debug_check();
    }

    /// Replaces a region by a newer version of itself (same id; its range
    /// may have changed, e.g. after a split).
    ///
    /// # Panics
    ///
    /// If the store does not have the region, or the new range overlaps
    /// another region.
    pub fn update(&mut self, region: Region) {
        let old = self.remove(region.id);
        assert!(old.is_some(), "store meta: cannot update region {}: it is not known", region.id);
        self.insert(region);
    }

    /// Removes a region (its peer was destroyed); `None` if unknown.
    pub fn remove(&mut self, region_id: u64) -> Option<Region> {
        let region = self.regions.remove(&region_id)?;
        let removed = self.ranges.remove(&End::of(&region));
        assert_eq!(
            removed,
            Some(region_id),
            "store meta: the range of region {region_id} was indexed for another region"
        );
        self.debug_check();
        Some(region)
    }

    /// The first region (by end) whose range ends after `key`.
    fn first_ending_after(&self, key: &[u8]) -> Option<(&End, u64)> {
        let after = (Bound::Excluded(End::Key(key.to_vec())), Bound::Unbounded);
        self.ranges.range(after).next().map(|(end, &id)| (end, id))
    }

    fn describe(&self, ids: &[u64]) -> String {
        let described: Vec<String> = ids
            .iter()
            .map(|id| {
                let r = &self.regions[id];
                format!(
                    "region {id} {:?}..{:?}",
                    r.start_key.escape_ascii().to_string(),
                    r.end_key.escape_ascii().to_string()
                )
            })
            .collect();
        described.join(", ")
    }

    /// In debug builds, checks both views against each other after every
    /// change.
    fn debug_check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert_eq!(self.ranges.len(), self.regions.len(), "store meta: views differ in size");
        let mut previous_end: Option<&End> = None;
        for (end, id) in &self.ranges {
            let region = &self.regions[id];
            assert_eq!(&End::of(region), end, "store meta: region {id} is indexed at another end");
            if let Some(End::Key(prev)) = previous_end {
                assert!(
                    prev.as_slice() <= region.start_key.as_slice(),
                    "store meta: region {id} starts before the previous region ends"
                );
            }
            previous_end = Some(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        Region { id, start_key: start.to_vec(), end_key: end.to_vec(), ..Default::default() }
    }

    #[test]
    fn finds_regions_by_key() {
        let mut meta = StoreMeta::default();
        meta.insert(region(1, b"b", b"d"));
        meta.insert(region(2, b"d", b"f"));
        meta.insert(region(3, b"x", b""));
        let at = |k: &[u8]| meta.region_for_key(k).map(|r| r.id);
        assert_eq!(at(b"a"), None);
        assert_eq!(at(b"b"), Some(1));
        assert_eq!(at(b"c\xff"), Some(1));
        assert_eq!(at(b"d"), Some(2));
        assert_eq!(at(b"f"), None);
        assert_eq!(at(b"x"), Some(3));
        assert_eq!(at(b"\xff\xff"), Some(3));
        assert_eq!(meta.overlapping(b"", b""), vec![1, 2, 3]);
        assert_eq!(meta.overlapping(b"c", b"e"), vec![1, 2]);
        assert_eq!(meta.overlapping(b"d", b"d\0"), vec![2]);
        assert_eq!(meta.overlapping(b"f", b"x"), Vec::<u64>::new());
        assert_eq!(meta.overlapping(b"f", b""), vec![3]);
    }

    #[test]
    fn update_moves_the_range_and_remove_frees_it() {
        let mut meta = StoreMeta::default();
        meta.insert(region(1, b"", b""));
        meta.update(region(1, b"", b"m"));
        meta.insert(region(2, b"m", b""));
        assert_eq!(meta.region_for_key(b"z").map(|r| r.id), Some(2));
        assert_eq!(meta.remove(2).map(|r| r.id), Some(2));
        assert_eq!(meta.remove(2), None);
        assert_eq!(meta.region_for_key(b"z"), None);
        assert_eq!(meta.len(), 1);
    }

    #[test]
    #[should_panic(expected = "region 2 \"c\"..\"e\" overlaps region 1 \"a\"..\"d\"")]
    fn an_overlapping_region_is_refused() {
        let mut meta = StoreMeta::default();
        meta.insert(region(1, b"a", b"d"));
        meta.insert(region(2, b"c", b"e"));
    }

    #[test]
    #[should_panic(expected = "region 1 is already known")]
    fn a_second_region_with_the_same_id_is_refused() {
        let mut meta = StoreMeta::default();
        meta.insert(region(1, b"a", b"b"));
        meta.insert(region(1, b"x", b"y"));
    }

    /// Random inserts, updates and removes against a plain list, with
    /// lookups of every key after each step (seeded, so it replays).
    #[test]
    fn matches_a_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let key = |i: u64| if i == 8 { Vec::new() } else { vec![b'a' + i as u8] };
        let mut meta = StoreMeta::default();
        let mut model: Vec<Region> = Vec::new();
        let mut done = [0u32; 3];
        for step in 0..2000 {
            let (s, e) = (next(8), next(9));
            let candidate = region(1 + next(6), &key(s), &key(e));
            let valid = e == 8 || s < e;
            let overlaps = |r: &Region| {
                let ends_after_start = r.end_key.is_empty() || r.end_key > candidate.start_key;
                let starts_before_end =
                    candidate.end_key.is_empty() || r.start_key < candidate.end_key;
                ends_after_start && starts_before_end
            };
            match next(3) {
                0 if valid && !model.iter().any(|r| r.id == candidate.id || overlaps(r)) => {
                    meta.insert(candidate.clone());
                    model.push(candidate);
                    done[0] += 1;
                }
                1 if valid
                    && model.iter().any(|r| r.id == candidate.id)
                    && !model.iter().any(|r| r.id != candidate.id && overlaps(r)) =>
                {
                    meta.update(candidate.clone());
                    model.retain(|r| r.id != candidate.id);
                    model.push(candidate);
                    done[1] += 1;
                }
                2 => {
                    let want = model.iter().position(|r| r.id == candidate.id);
                    let got = meta.remove(candidate.id);
                    done[2] += u32::from(got.is_some());
                    assert_eq!(got.map(|r| r.id), want.map(|i| model.remove(i).id), "step {step}");
                }
                _ => {}
            }
            for k in 0..9 {
                let k = if k == 8 { b"zz".to_vec() } else { key(k) };
                let want = model
                    .iter()
                    .find(|r| r.start_key <= k && (r.end_key.is_empty() || k < r.end_key));
                assert_eq!(
                    meta.region_for_key(&k).map(|r| r.id),
                    want.map(|r| r.id),
                    "step {step}, key {k:?}"
                );
            }
        }
        assert!(done.iter().all(|&n| n >= 30), "inserts, updates, removes: {done:?}");
    }
}
