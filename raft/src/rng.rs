//! A tiny deterministic pseudo-random number generator.
//!
//! Architecture invariant: the raft crate has no other source of randomness.
//! The generator is seeded from [`Config::seed`](crate::Config::seed) mixed
//! with the node id, so the same seed gives the same run, bit for bit, and
//! two nodes of one cluster draw different election timeouts.

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, good enough
/// statistical quality for election timeouts, and trivially reproducible.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for node `id` of a cluster run with `seed`.
    pub fn new(seed: u64, id: u64) -> Rng {
        let mut rng = Rng { state: seed ^ id.wrapping_mul(0xA24B_AED4_963E_E407) };
        // Stir once so that seeds differing in one bit diverge at once.
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[low, high)`, uniform up to a negligible modulo bias.
    ///
    /// # Panics
    ///
    /// If `low >= high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        assert!(low < high, "Rng::range: empty range [{low}, {high})");
        let width = (high - low) as u64;
        low + (self.next_u64() % width) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 1);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn range_stays_inside_and_covers() {
        let mut rng = Rng::new(42, 3);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let x = rng.range(10, 20);
            assert!((10..20).contains(&x));
            seen[x - 10] = true;
        }
        assert!(seen.iter().all(|s| *s), "every value drawn: {seen:?}");
    }
}
