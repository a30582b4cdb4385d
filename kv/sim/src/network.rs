//! The simulated network between stores.
//!
//! Every raft message gets a latency drawn from `[min, max]` (so messages
//! overtake each other: reordering), may be dropped or duplicated at the
//! configured rates, and is dropped if a partition separates the two
//! stores or a one-way cut blocks its direction. Every draw comes from the
//! simulation's RNG, so a run depends only on its seed.
//!
//! The drop rate is exactly what it says: filters do not stack (TinyKV's
//! unreliable tests add a new drop filter every round, so its drop rate
//! creeps up).

use std::collections::BTreeSet;

use raft::Rng;

/// The scheduler's node id on the network (stores are `1..`). Partitions
/// split the stores only: the scheduler stays reachable from every side
/// (as TinyKV's in-process mock is), but its messages get the latency,
/// drops and duplicates of any other, and one-way cuts apply to it.
pub const SCHEDULER_NODE: u64 = 0;

/// Latency and fault rates of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way latency, virtual microseconds.
    pub min_latency_us: u64,
    /// Largest one-way latency, virtual microseconds.
    pub max_latency_us: u64,
    /// Probability that a message is lost (0.0 ..= 1.0).
    pub drop_rate: f64,
    /// Probability that a message is delivered twice.
    pub dup_rate: f64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig { min_latency_us: 100, max_latency_us: 2_000, drop_rate: 0.0, dup_rate: 0.0 }
    }
}

impl NetConfig {
    /// TinyKV's "unreliable" network: 10% of messages lost, 1% duplicated.
    pub fn unreliable() -> NetConfig {
        NetConfig { drop_rate: 0.1, dup_rate: 0.01, ..NetConfig::default() }
    }
}

/// The network: its config and the current cuts.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Latency and rates.
    pub cfg: NetConfig,
    /// When set, messages only flow within a group (stores in no group are
    /// alone).
    partition: Option<Vec<BTreeSet<u64>>>,
    /// Blocked directions (from, to).
    one_way: BTreeSet<(u64, u64)>,
}

/// A uniform draw in `[0, 1)`.
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Network {
    /// A network with `cfg` and no cuts.
    pub fn new(cfg: NetConfig) -> Network {
        Network { cfg, partition: None, one_way: BTreeSet::new() }
    }

    /// Splits the stores into `groups`; messages only flow within a group.
    pub fn partition(&mut self, groups: Vec<BTreeSet<u64>>) {
        self.partition = Some(groups);
    }

    /// Blocks messages from `from` to `to` (the other way still works).
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        self.one_way.insert((from, to));
    }

    /// Removes every partition and cut (the rates stay).
    pub fn heal(&mut self) {
        self.partition = None;
        self.one_way.clear();
    }

    /// The current partition, if any.
    pub fn groups(&self) -> Option<&[BTreeSet<u64>]> {
        self.partition.as_deref()
    }

    /// Whether the cuts let a message from `from` reach `to`.
    pub fn connected(&self, from: u64, to: u64) -> bool {
        if self.one_way.contains(&(from, to)) {
            return false;
        }
        if from == SCHEDULER_NODE || to == SCHEDULER_NODE {
            return true;
        }
        match &self.partition {
            None => true,
            Some(groups) => groups.iter().any(|g| g.contains(&from) && g.contains(&to)),
        }
    }

    /// The delays after which copies of one message from `from` to `to`
    /// arrive: none if it is lost, two if it is duplicated.
    pub fn route(&self, from: u64, to: u64, rng: &mut Rng) -> Vec<u64> {
        // Always draw the same numbers, so a cut does not shift the stream.
        let (lost, dup) = (unit(rng) < self.cfg.drop_rate, unit(rng) < self.cfg.dup_rate);
        let first = self.latency(rng);
        let second = self.latency(rng);
        if lost || !self.connected(from, to) {
            return vec![];
        }
        if dup { vec![first, second] } else { vec![first] }
    }

    /// One latency draw.
    pub fn latency(&self, rng: &mut Rng) -> u64 {
        let (lo, hi) =
            (self.cfg.min_latency_us, self.cfg.max_latency_us.max(self.cfg.min_latency_us));
        lo + rng.next_u64() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_one_way_cuts() {
        let mut net = Network::new(NetConfig::default());
        assert!(net.connected(1, 2));
        net.partition(vec![[1, 2].into(), [3, 4, 5].into()]);
        assert!(net.connected(1, 2) && net.connected(4, 5));
        assert!(!net.connected(2, 3) && !net.connected(3, 2));
        net.heal();
        net.cut_one_way(1, 2);
        assert!(!net.connected(1, 2) && net.connected(2, 1));
    }

    #[test]
    fn drop_rate_is_what_it_says() {
        let net = Network::new(NetConfig { drop_rate: 0.1, ..NetConfig::default() });
        let mut rng = Rng::new(7, 1);
        let lost = (0..20_000).filter(|_| net.route(1, 2, &mut rng).is_empty()).count();
        assert!((1_700..2_300).contains(&lost), "{lost} of 20000 lost at a 10% drop rate");
        let mut rng = Rng::new(7, 1);
        let mut net = net;
        net.cfg.drop_rate = 0.0;
        assert!((0..1000).all(|_| net.route(1, 2, &mut rng).len() == 1));
    }
}
