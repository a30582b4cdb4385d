//! A restarted follower must not depose a healthy leader: the simulated
//! twin of `kv/server/tests/leader_stability.rs` (not graded).
//!
//! Three stores elect a leader; a client writes steadily while a follower
//! crashes, stays down for a second and restarts, five times. The leader
//! and its term must stay the same throughout, from the first leader any
//! store knew: every running store is looked at after every millisecond
//! of virtual time.
//!
//! Raft here has no Pre-Vote and no check-quorum, so a restarted follower
//! that hears no heartbeat within its election timeout campaigns in a
//! higher term, and that term deposes the leader. In production the links
//! into a restarted store come back when the other stores' transports
//! reconnect; the simulated network delivers to a store as soon as it
//! runs. So the test models the reconnect: the links into the restarted
//! store stay cut for as long as the production transport may take to
//! reconnect (`LinkTiming` in `kv/server/src/node.rs`), then heal. With
//! the old transport's delay the leader is deposed, which the second test
//! shows; with the current one it must not be.
//!
//! The simulation is deterministic: each seed replays exactly.

use tinykv_sim::{Cluster, ClusterConfig, FIRST_REGION, MS, OpKind, SEC};

/// How many times a follower is restarted.
const RESTARTS: usize = 5;
/// How long a crashed follower stays down.
const DOWN_US: u64 = SEC;
/// The client's pause between two writes.
const WRITE_PAUSE_US: u64 = 5 * MS;
/// The client that writes.
const WRITER: u64 = 1;
/// Seeds the stable case runs with.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

/// The shortest election timeout of the stores, in virtual µs.
fn election_timeout_us(cfg: &ClusterConfig) -> u64 {
    let ticks = u64::try_from(cfg.store.raft_election_timeout_ticks).expect("a small tick count");
    cfg.store.raft_base_tick_ms * ticks * MS
}

/// How long the links into a restarted store stay down with the current
/// production transport: it tries to connect at least every quarter of
/// the election timeout (`LinkTiming::retry_max`, 25 ms by default), and a
/// connect on a local network takes a few milliseconds more.
fn current_reconnect_us(cfg: &ClusterConfig) -> u64 {
    election_timeout_us(cfg) / 4 + 5 * MS
}

/// How long they stayed down with the old transport after a 1 s outage:
/// its connect attempts, 50 ms apart and doubling up to 1 s, came at 750
/// and 1,550 ms after the crash, so the first one to find the store up
/// came 550 ms after its restart.
const OLD_RECONNECT_US: u64 = 550 * MS;

/// A cluster under a steady write load, and the leadership it must keep.
struct Run {
    c: Cluster,
    /// The first leader any store knew: (term, store).
    first: Option<(u64, u64)>,
    next_write_us: u64,
    /// Writes started and writes acknowledged.
    started: u64,
    done: u64,
}

impl Run {
    fn new(cfg: ClusterConfig) -> Run {
        Run { c: Cluster::new(cfg), first: None, next_write_us: 0, started: 0, done: 0 }
    }

    /// Each running store's view of region 1: (store, term, leader's store).
    fn views(&self) -> Vec<(u64, u64, Option<u64>)> {
        let c = &self.c;
        c.store_ids()
            .into_iter()
            .filter_map(|id| {
                let peer = c.store(id)?.peer(FIRST_REGION)?;
                Some((id, peer.term(), peer.leader().map(|p| p.store_id)))
            })
            .collect()
    }

    /// Runs for `us` of virtual time, one millisecond at a time, writing
    /// one key after another; after every millisecond checks that no store
    /// contradicts the first leader anyone knew (once there is one).
    fn run_for(&mut self, us: u64, what: &str) -> Result<(), String> {
        let until = self.c.now() + us;
        while self.c.now() < until {
            if self.c.op_done(WRITER) {
                // (The client retries a write until it is acknowledged.)
                self.done = self.started;
                if self.c.now() >= self.next_write_us {
                    let key = format!("w{:05}", self.started);
                    self.c.start_op(WRITER, OpKind::Put { key: key.into(), value: "v".into() });
                    self.started += 1;
                    self.next_write_us = self.c.now() + WRITE_PAUSE_US;
                }
            }
            self.c.run_for(MS);
            self.check(what)?;
        }
        Ok(())
    }

    fn check(&mut self, what: &str) -> Result<(), String> {
        let views = self.views();
        if self.first.is_none() {
            self.first = views.iter().find_map(|&(_, term, leader)| Some((term, leader?)));
        }
        let Some((term, leader)) = self.first else { return Ok(()) };
        // A store that just restarted knows no leader yet; one that was
        // slow in a cold start may still be in an older term.
        let bad = views
            .iter()
            .find(|&&(_, t, l)| t > term || l.is_some_and(|l| (t, l) != (term, leader)));
        match bad {
            None => Ok(()),
            Some((id, t, l)) => Err(format!(
                "{what}, at {} ms: store {id} is in term {t} with leader {l:?}, but store \
                 {leader} led in term {term} and stayed healthy (seed {}; every store: {views:?})",
                self.c.now() / MS,
                self.c.seed()
            )),
        }
    }

    /// Runs until every store knows the same leader in the same term
    /// (at most 10 s); returns them (term, leader's store).
    fn agree(&mut self, what: &str) -> Result<(u64, u64), String> {
        let deadline = self.c.now() + 10 * SEC;
        while self.c.now() < deadline {
            self.run_for(MS, what)?;
            let views = self.views();
            if let [(_, term, Some(leader)), ..] = views[..]
                && views.len() == 3
                && views.iter().all(|&(_, t, l)| (t, l) == (term, Some(leader)))
            {
                return Ok((term, leader));
            }
        }
        Err(format!("{what}: the stores did not agree on a leader within 10 s: {:?}", self.views()))
    }
}

/// The scenario: a cold start, then a follower crashed and restarted
/// `RESTARTS` times, the links into it coming back `reconnect_us` after
/// each restart. Returns how many writes were acknowledged.
fn restart_followers(
    seed: u64,
    reconnect_us: impl Fn(&ClusterConfig) -> u64,
) -> Result<u64, String> {
    let cfg = ClusterConfig::new(3, seed);
    let reconnect_us = reconnect_us(&cfg);
    let mut run = Run::new(cfg);
    let (term, leader) = run.agree("cold start")?;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for restart in 0..RESTARTS {
        let follower = followers[restart % 2];
        let what = format!("restart {} of {RESTARTS} (store {follower})", restart + 1);
        let done_before = run.done;
        run.c.crash_store(follower);
        run.run_for(DOWN_US, &what)?;
        run.c.restart_store(follower);
        for other in followers.iter().copied().chain([leader]).filter(|&id| id != follower) {
            run.c.net.cut_one_way(other, follower);
        }
        run.run_for(reconnect_us, &what)?;
        run.c.net.heal();
        let (t, l) = run.agree(&what)?;
        assert_eq!((t, l), (term, leader), "{what}: checked after every millisecond");
        run.run_for(300 * MS, &what)?;
        if run.done == done_before {
            return Err(format!("{what}: no write was acknowledged (seed {seed})"));
        }
    }
    Ok(run.done)
}

#[test]
fn a_restarted_follower_does_not_depose_the_leader() {
    for seed in SEEDS {
        let writes =
            restart_followers(seed, current_reconnect_us).unwrap_or_else(|e| panic!("{e}"));
        assert!(writes > 100, "seed {seed}: only {writes} writes were acknowledged");
    }
}

/// The model can show the failure: with the old transport's reconnect
/// delay, longer than any election timeout, a restarted follower campaigns
/// and the leader loses its term. (Should raft gain Pre-Vote, this would
/// no longer happen, and this test would have to go.)
#[test]
fn a_reconnect_slower_than_the_election_timeout_deposes_the_leader() {
    for seed in 1..=5 {
        match restart_followers(seed, |_| OLD_RECONNECT_US) {
            Ok(_) => panic!(
                "seed {seed}: the leader survived links that stayed down {} ms after each \
                 restart; the simulated test of the current transport then proves nothing",
                OLD_RECONNECT_US / MS
            ),
            Err(e) => assert!(e.contains("restart 1 of"), "seed {seed}: {e}"),
        }
    }
}
