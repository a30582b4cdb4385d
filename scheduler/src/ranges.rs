//! Regions by key range: which region holds a key, in O(log n).
//!
//! The scheduler knows the regions of the cluster, and no two of them
//! share a key. They need not cover every key: while the halves of a
//! split report, part of the key space can be nobody's for a while
//! ([`RangeIndex::gaps`]). [`RangeIndex`] keeps each region's range keyed by where it
//! *ends*: the region holding `key` is then the first one ending after
//! `key`, if it also starts at or before `key`. An empty `end_key` means
//! "to the end of the key space" and sorts after every key.
//!
//! The index refuses (panics on) an overlapping insert: callers check for
//! overlap first ([`RangeIndex::overlapping`]) and report it as they see
//! fit, so a panic here is a bug in the caller, never bad input.
//!
//! ```
//! use tinykv_scheduler::ranges::RangeIndex;
//!
//! let mut index = RangeIndex::default();
//! index.insert(1, b"", b"g");
//! index.insert(2, b"g", b"");
//! assert_eq!(index.find(b"a"), Some(1));
//! assert_eq!(index.find(b"g"), Some(2));
//! assert_eq!(index.find(b"\xff\xff"), Some(2));
//! assert_eq!(index.overlapping(b"f", b"h"), vec![1, 2]);
//! assert!(index.gaps().is_empty());
//!
//! index.remove(1, b"", b"g");
//! assert_eq!(index.gaps(), vec![(b"".to_vec(), b"g".to_vec())]);
//! ```

use std::collections::BTreeMap;
use std::ops::Bound;

/// Where a range ends, ordered so that an unbounded end (an empty
/// `end_key`) sorts after every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// The range ends before this key (exclusive).
    Key(Vec<u8>),
    /// The range runs to the end of the key space.
    Unbounded,
}

impl End {
    fn of(end_key: &[u8]) -> End {
        if end_key.is_empty() { End::Unbounded } else { End::Key(end_key.to_vec()) }
    }

    /// Whether a range ending here holds keys after `key`.
    fn is_after(&self, key: &[u8]) -> bool {
        match self {
            End::Key(end) => end.as_slice() > key,
            End::Unbounded => true,
        }
    }
}

/// One indexed range.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    start_key: Vec<u8>,
    region_id: u64,
}

/// Region ranges keyed by their end. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeIndex {
    /// Each range's end → its start and region. Invariant: no two ranges
    /// overlap and none is empty, so ordering by end orders by start too.
    by_end: BTreeMap<End, Entry>,
}

impl RangeIndex {
    /// How many ranges are indexed.
    pub fn len(&self) -> usize {
        self.by_end.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }

    /// The region whose range holds `key`.
    pub fn find(&self, key: &[u8]) -> Option<u64> {
        let after_key = (Bound::Excluded(End::Key(key.to_vec())), Bound::Unbounded);
        let (_, entry) = self.by_end.range(after_key).next()?;
        (entry.start_key.as_slice() <= key).then_some(entry.region_id)
    }

    /// The regions that share a key with `[start_key, end_key)` (an empty
    /// `end_key` is unbounded), in key order.
    pub fn overlapping(&self, start_key: &[u8], end_key: &[u8]) -> Vec<u64> {
        let after_start = (Bound::Excluded(End::Key(start_key.to_vec())), Bound::Unbounded);
        self.by_end
            .range(after_start)
            .map(|(_, entry)| entry)
            .take_while(|entry| End::of(end_key).is_after(&entry.start_key))
            .map(|entry| entry.region_id)
            .collect()
    }

    /// Every indexed region, in key order.
    pub fn region_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_end.values().map(|entry| entry.region_id)
    }

    /// The parts of the whole key space (`""` to unbounded) that no range
    /// covers, in key order, each as `(start_key, end_key)` with an empty
    /// `end_key` for unbounded. Empty when the ranges tile the key space;
    /// `[("", "")]` when nothing is indexed.
    pub fn gaps(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut gaps = Vec::new();
        // Where the ranges seen so far end; `None` once one is unbounded
        // (it is then the last: ranges do not overlap).
        let mut covered_to: Option<&[u8]> = Some(b"");
        for (end, entry) in &self.by_end {
            let Some(from) = covered_to else {
                unreachable!("range index: a range after an unbounded one")
            };
            if entry.start_key.as_slice() > from {
                gaps.push((from.to_vec(), entry.start_key.clone()));
            }
            covered_to = match end {
                End::Key(end) => Some(end),
                End::Unbounded => None,
            };
        }
        if let Some(from) = covered_to {
            gaps.push((from.to_vec(), Vec::new()));
        }
        gaps
    }

    /// Indexes `region_id` at `[start_key, end_key)`.
    ///
    /// # Panics
    ///
    /// If the range is empty or overlaps an indexed one (callers check
    /// [`overlapping`](Self::overlapping) first).
    pub fn insert(&mut self, region_id: u64, start_key: &[u8], end_key: &[u8]) {
        assert!(
            End::of(end_key).is_after(start_key),
            "range index: region {region_id} has an empty or inverted range {}",
            describe_range(start_key, end_key)
        );
        let overlap = self.overlapping(start_key, end_key);
        assert!(
            overlap.is_empty(),
            "range index: region {region_id} {} overlaps region(s) {overlap:?}",
            describe_range(start_key, end_key)
        );
        let entry = Entry { start_key: start_key.to_vec(), region_id };
        self.by_end.insert(End::of(end_key), entry);
        self.debug_check();
    }

    /// Removes the range `[start_key, end_key)` of `region_id`.
    ///
    /// # Panics
    ///
    /// If that range is not indexed for that region.
    pub fn remove(&mut self, region_id: u64, start_key: &[u8], end_key: &[u8]) {
        let removed = self.by_end.remove(&End::of(end_key));
        let expected = Entry { start_key: start_key.to_vec(), region_id };
        assert_eq!(
            removed.as_ref(),
            Some(&expected),
            "range index: region {region_id} {} was not indexed as such",
            describe_range(start_key, end_key)
        );
        self.debug_check();
    }

    /// In debug builds, checks after every change that the ranges are in
    /// key order, none empty and none overlapping.
    fn debug_check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut previous_end: Option<&End> = None;
        for (end, entry) in &self.by_end {
            assert!(end.is_after(&entry.start_key), "range index: an empty range is indexed");
            if let Some(End::Key(previous)) = previous_end {
                assert!(
                    previous.as_slice() <= entry.start_key.as_slice(),
                    "range index: region {} starts before the previous range ends",
                    entry.region_id
                );
            }
            previous_end = Some(end);
        }
    }
}

/// `["a", "g")`, with `+inf` for an unbounded end; keys are escaped.
pub(crate) fn describe_range(start_key: &[u8], end_key: &[u8]) -> String {
    let end = if end_key.is_empty() {
        "+inf".to_string()
    } else {
        format!("\"{}\"", end_key.escape_ascii())
    };
    format!("[\"{}\", {end})", start_key.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_region_of_a_key() {
        let mut index = RangeIndex::default();
        index.insert(1, b"b", b"d");
        index.insert(2, b"d", b"f");
        index.insert(3, b"x", b"");
        let at = |key: &[u8]| index.find(key);
        assert_eq!(at(b""), None);
        assert_eq!(at(b"a"), None);
        assert_eq!(at(b"b"), Some(1));
        assert_eq!(at(b"c\xff"), Some(1));
        assert_eq!(at(b"d"), Some(2));
        assert_eq!(at(b"f"), None);
        assert_eq!(at(b"x"), Some(3));
        assert_eq!(at(b"\xff\xff"), Some(3));
        assert_eq!(index.region_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn lists_overlapping_ranges_in_key_order() {
        let mut index = RangeIndex::default();
        index.insert(3, b"x", b"");
        index.insert(1, b"b", b"d");
        index.insert(2, b"d", b"f");
        assert_eq!(index.overlapping(b"", b""), vec![1, 2, 3]);
        assert_eq!(index.overlapping(b"c", b"e"), vec![1, 2]);
        assert_eq!(index.overlapping(b"d", b"d\0"), vec![2]);
        assert_eq!(index.overlapping(b"a", b"b"), Vec::<u64>::new());
        assert_eq!(index.overlapping(b"f", b"x"), Vec::<u64>::new());
        assert_eq!(index.overlapping(b"f", b""), vec![3]);
    }

    #[test]
    fn remove_frees_the_range() {
        let mut index = RangeIndex::default();
        index.insert(1, b"", b"");
        index.remove(1, b"", b"");
        assert!(index.is_empty());
        index.insert(1, b"", b"m");
        index.insert(2, b"m", b"");
        assert_eq!(index.len(), 2);
        assert_eq!(index.find(b"z"), Some(2));
    }

    #[test]
    #[should_panic(expected = "region 2 [\"c\", \"e\") overlaps region(s) [1]")]
    fn an_overlapping_insert_panics() {
        let mut index = RangeIndex::default();
        index.insert(1, b"a", b"d");
        index.insert(2, b"c", b"e");
    }

    #[test]
    #[should_panic(expected = "region 1 [\"a\", \"d\") was not indexed as such")]
    fn removing_another_regions_range_panics() {
        let mut index = RangeIndex::default();
        index.insert(2, b"a", b"d");
        index.remove(1, b"a", b"d");
    }

    #[test]
    fn gaps_are_the_uncovered_parts_in_key_order() {
        let owned = |gaps: &[(&str, &str)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            gaps.iter().map(|(s, e)| (s.as_bytes().to_vec(), e.as_bytes().to_vec())).collect()
        };
        let mut index = RangeIndex::default();
        assert_eq!(index.gaps(), owned(&[("", "")]), "nothing indexed: one gap, everything");
        index.insert(1, b"b", b"d");
        index.insert(2, b"d", b"f");
        index.insert(3, b"x", b"");
        assert_eq!(index.gaps(), owned(&[("", "b"), ("f", "x")]), "a gap at the start, one inside");
        index.remove(3, b"x", b"");
        assert_eq!(index.gaps(), owned(&[("", "b"), ("f", "")]), "a gap to the end");
        index.insert(4, b"", b"b");
        index.insert(5, b"f", b"");
        assert_eq!(index.gaps(), owned(&[]), "the ranges tile the key space");
        index.remove(4, b"", b"b");
        index.remove(5, b"f", b"");
        index.remove(2, b"d", b"f");
        index.remove(1, b"b", b"d");
        index.insert(6, b"", b"");
        assert_eq!(index.gaps(), owned(&[]), "one range, everything");
    }

    /// Random disjoint ranges over a small key space, checked key by key
    /// against a linear scan.
    #[test]
    fn agrees_with_a_linear_scan() {
        for seed in 0..32u64 {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = |bound: u64| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (state >> 33) % bound
            };
            // Cut points 1..=9 chosen at random; keep every other piece.
            let mut cuts: Vec<u8> = (1..10u8).filter(|_| next(2) == 0).collect();
            cuts.insert(0, 0);
            let mut ranges: Vec<(u64, Vec<u8>, Vec<u8>)> = Vec::new();
            for (i, pair) in cuts.windows(2).enumerate() {
                if next(3) != 0 {
                    ranges.push((i as u64 + 1, vec![pair[0]], vec![pair[1]]));
                }
            }
            if next(2) == 0 {
                ranges.push((100, vec![*cuts.last().unwrap()], Vec::new()));
            }
            let mut index = RangeIndex::default();
            for (id, start, end) in &ranges {
                index.insert(*id, start, end);
            }
            for key in 0..=10u8 {
                let key = [key];
                let expected = ranges
                    .iter()
                    .find(|(_, s, e)| s.as_slice() <= &key[..] && End::of(e).is_after(&key))
                    .map(|(id, _, _)| *id);
                assert_eq!(index.find(&key), expected, "seed {seed}, key {key:?}, {ranges:?}");
                let in_a_gap = index
                    .gaps()
                    .iter()
                    .any(|(s, e)| s.as_slice() <= &key[..] && End::of(e).is_after(&key));
                assert_eq!(
                    in_a_gap,
                    expected.is_none(),
                    "seed {seed}, key {key:?}: in a gap iff no range holds it; {ranges:?}, gaps {:?}",
                    index.gaps()
                );
            }
        }
    }
}
