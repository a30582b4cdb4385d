//! Lab 3c end to end: region heartbeats from many stores at once, through
//! the real `tinykv-scheduler` gRPC service (in-process, on a loopback
//! port, on its fjall engine).
//!
//! One graded test, `region_heartbeats_from_many_streams_3c`. It makes up
//! a history of a cluster (the whole key space split into 800 regions, in
//! a random order, with conf changes between the splits) and reports
//! every state of every region, as leaders do: out of order, over 8
//! concurrent heartbeat streams (one per group of regions, as one stream
//! per store), some reports twice. The scheduler must end with exactly the
//! newest state of every region. What it needs from
//! `BasicCluster::process_region_heartbeat` (scheduler/src/heartbeat.rs),
//! and which part of the test shows it:
//!
//! - **refuse a report older than a region that overlaps it**: last, the
//!   first region's leader reports every old state of region 1, the
//!   oldest first; the oldest covers the whole key space, and taken it
//!   would wipe out every other region;
//! - **refuse a lower `conf_ver` of the same region**: each stream ends
//!   with the report from before the last conf change of its regions
//!   that had one;
//! - **recount the store statistics** of every store a change touches
//!   (the new region's, the old one's, the removed regions'): the region,
//!   leader and size counts of every store are checked.
//!
//! The history comes from a seed: `TINYKV_SEED` (default 1).

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::*;
use tinykv_proto::metapb::{Peer, Region, RegionEpoch};
use tinykv_proto::schedulerpb::*;
use tinykv_scheduler::ScheduleConfig;
use tinykv_scheduler::core::EMPTY_REGION_SIZE;

/// Concurrent heartbeat streams.
const STREAMS: u64 = 8;
/// Regions at the end (about 100 per stream).
const REGIONS: usize = 800;
/// Stores; each region has a peer on 3 of them.
const STORES: u64 = 5;
/// Where the lab explains it.
const LAB_DOC: &str = "docs/src/lab3c-scheduler.md (Step 1: process_region_heartbeat)";

/// splitmix64: a small seeded generator, so the history is the same for
/// one seed on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// One state of one region, as its leader reports it.
#[derive(Clone, Debug, PartialEq)]
struct State {
    region: Region,
    leader: Peer,
    size: u64,
}

impl State {
    fn epoch(&self) -> RegionEpoch {
        self.region.region_epoch.unwrap()
    }

    fn heartbeat(&self, cluster_id: u64) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            header: header(cluster_id),
            region: Some(self.region.clone()),
            leader: Some(self.leader),
            approximate_size: self.size,
            ..Default::default()
        }
    }
}

/// A made-up history: every state each region went through, and which
/// ones the streams send in which order.
struct History {
    /// Region id → its states, oldest first; the last is its final state.
    states: BTreeMap<u64, Vec<State>>,
    /// Region id → the state from before its last conf change, if that
    /// conf change came after its last split (same version, lower
    /// `conf_ver`).
    before_last_conf_change: BTreeMap<u64, State>,
}

impl History {
    /// Splits the key space `REGIONS - 1` times at random keys, in a
    /// random order, with conf changes in between and after.
    fn make(rng: &mut Rng) -> History {
        let mut next_peer = 1000;
        let mut new_peer = |store_id: u64| {
            next_peer += 1;
            Peer { id: next_peer, store_id }
        };
        let root_peers: Vec<Peer> = (1..=3).map(&mut new_peer).collect();
        let root = State {
            region: Region {
                id: 1,
                start_key: vec![],
                end_key: vec![],
                region_epoch: Some(RegionEpoch { conf_ver: 3, version: 1 }),
                peers: root_peers.clone(),
            },
            leader: root_peers[0],
            size: 1,
        };
        let mut history =
            History { states: BTreeMap::new(), before_last_conf_change: BTreeMap::new() };
        // The live regions by start key.
        let mut live: BTreeMap<Vec<u8>, State> = BTreeMap::new();
        history.record(&root, None);
        live.insert(vec![], root);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        while keys.len() < REGIONS - 1 {
            let key = format!("k{:08x}", rng.next() as u32).into_bytes();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut next_region = 1;
        for key in keys {
            let (_, parent) =
                live.range(..=key.clone()).next_back().expect("the key space is covered");
            let parent = parent.clone();
            next_region += 1;
            let (left, right) = split(&parent, &key, next_region, &mut new_peer, rng);
            live.insert(left.region.start_key.clone(), left.clone());
            live.insert(right.region.start_key.clone(), right.clone());
            history.record(&left, None);
            history.record(&right, None);
            if rng.below(4) == 0 {
                conf_change(&mut live, &mut history, &mut new_peer, rng);
            }
        }
        for _ in 0..REGIONS / 8 {
            conf_change(&mut live, &mut history, &mut new_peer, rng);
        }
        assert_eq!(live.len(), REGIONS);
        history
    }

    fn record(&mut self, state: &State, before: Option<&State>) {
        let id = state.region.id;
        match before {
            Some(before) => self.before_last_conf_change.insert(id, before.clone()),
            None => self.before_last_conf_change.remove(&id),
        };
        self.states.entry(id).or_default().push(state.clone());
    }

    /// Every region's final state, in key order.
    fn finals(&self) -> Vec<&State> {
        let mut finals: Vec<&State> = self.states.values().map(|s| s.last().unwrap()).collect();
        finals.sort_by(|a, b| a.region.start_key.cmp(&b.region.start_key));
        finals
    }

    /// What stream `stream` sends while the others send theirs: every
    /// state of its regions (all but region 1) in a random order, each
    /// final state twice, then the stale reports from before the last
    /// conf changes.
    fn stream_plan(&self, stream: u64, rng: &mut Rng) -> Vec<State> {
        let mine = self.states.iter().filter(|(id, _)| **id != 1 && **id % STREAMS == stream);
        let mut plan: Vec<State> = Vec::new();
        for (_, states) in mine.clone() {
            plan.extend(states.iter().cloned());
            plan.push(states.last().unwrap().clone());
        }
        rng.shuffle(&mut plan);
        for (id, _) in mine {
            plan.extend(self.before_last_conf_change.get(id).cloned());
        }
        plan
    }
}

/// Splits `parent` at `key`: the left half keeps the id and the peers,
/// the right half is region `new_id` with new peers on the same stores;
/// both get `version + 1`.
fn split(
    parent: &State,
    key: &[u8],
    new_id: u64,
    new_peer: &mut impl FnMut(u64) -> Peer,
    rng: &mut Rng,
) -> (State, State) {
    let epoch = RegionEpoch { version: parent.epoch().version + 1, ..parent.epoch() };
    let mut left = parent.clone();
    left.region.end_key = key.to_vec();
    left.region.region_epoch = Some(epoch);
    left.size = rng.below(1 << 20);
    let peers: Vec<Peer> = parent.region.peers.iter().map(|p| new_peer(p.store_id)).collect();
    let right = State {
        region: Region {
            id: new_id,
            start_key: key.to_vec(),
            end_key: parent.region.end_key.clone(),
            region_epoch: Some(epoch),
            peers: peers.clone(),
        },
        leader: peers[rng.below(peers.len() as u64) as usize],
        size: rng.below(1 << 20),
    };
    (left, right)
}

/// Moves one peer of a random live region to a store without one
/// (`conf_ver + 1`); the leader may change.
fn conf_change(
    live: &mut BTreeMap<Vec<u8>, State>,
    history: &mut History,
    new_peer: &mut impl FnMut(u64) -> Peer,
    rng: &mut Rng,
) {
    let start = live.keys().nth(rng.below(live.len() as u64) as usize).unwrap().clone();
    let before = live[&start].clone();
    let mut after = before.clone();
    let free: Vec<u64> =
        (1..=STORES).filter(|s| !before.region.peers.iter().any(|p| p.store_id == *s)).collect();
    let target = free[rng.below(free.len() as u64) as usize];
    let gone = rng.below(before.region.peers.len() as u64) as usize;
    after.region.peers[gone] = new_peer(target);
    let epoch = before.epoch();
    after.region.region_epoch = Some(RegionEpoch { conf_ver: epoch.conf_ver + 1, ..epoch });
    after.leader = after.region.peers[rng.below(after.region.peers.len() as u64) as usize];
    after.size = rng.below(1 << 20);
    history.record(&after, Some(&before));
    live.insert(start, after);
}

/// The seed: `TINYKV_SEED`, else 1.
fn seed() -> u64 {
    match std::env::var("TINYKV_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("TINYKV_SEED={s:?} is not a u64")),
        Err(_) => 1,
    }
}

/// The failure message: what went wrong, the seed, where to read.
fn failure(seed: u64, what: String) -> String {
    format!(
        "{what}\n\nTINYKV_SEED={seed}. The scheduler's view comes from \
         BasicCluster::process_region_heartbeat (scheduler/src/heartbeat.rs); see {LAB_DOC}."
    )
}

#[test]
fn region_heartbeats_from_many_streams_3c() {
    let seed = seed();
    let mut rng = Rng(seed);
    let history = History::make(&mut rng);
    let plans: Vec<Vec<State>> = (0..STREAMS).map(|s| history.stream_plan(s, &mut rng)).collect();
    // Reports that must be refused whatever the order: the stragglers of
    // the streams, and region 1's states from before its last split.
    let stragglers = history.before_last_conf_change.keys().filter(|id| **id != 1).count();
    let region_1 = &history.states[&1];
    let final_version = region_1.last().unwrap().epoch().version;
    let region_1_old = region_1.iter().filter(|s| s.epoch().version < final_version).count();
    assert!(stragglers > 20, "the history must hold stale conf_ver reports, got {stragglers}");
    assert!(region_1_old > 3, "region 1 must have old states, got {region_1_old}");

    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let started = Instant::now();
        let clock = TestClock::at(1_000_000);
        let s = TestScheduler::start(dir.path(), ScheduleConfig::default(), &clock, Ticker::Off)
            .await;
        let id = s.cluster_id;
        let mut c = s.client().await;
        let first = region(1, b"", b"", (1, 1), &[(1001, 1)]);
        let bootstrap =
            BootstrapRequest { header: header(id), store: Some(store(1)), region: Some(first) };
        assert_ok(&c.bootstrap(bootstrap).await.unwrap().into_inner().header, "Bootstrap");
        for store_id in 2..=STORES {
            let put = PutStoreRequest { header: header(id), store: Some(store(store_id)) };
            assert_ok(&c.put_store(put).await.unwrap().into_inner().header, "PutStore");
        }

        // Every stream at once, each on its own connection.
        let mut senders = Vec::new();
        for plan in plans {
            let mut client = s.client().await;
            senders.push(tokio::spawn(async move {
                let mut stream = heartbeat_stream(&mut client).await;
                for state in &plan {
                    stream.send(state.heartbeat(id)).await;
                }
                stream.finish().await
            }));
        }
        for sender in senders {
            let answers = sender.await.expect("a heartbeat stream task");
            assert!(answers.is_empty(), "no operator runs, so nothing is answered: {answers:?}");
        }
        // Last, region 1's leader reports its old states, the oldest first.
        let mut stream = heartbeat_stream(&mut c).await;
        for state in &history.states[&1] {
            stream.send(state.heartbeat(id)).await;
        }
        assert!(stream.finish().await.is_empty());

        // Every region is known, with its newest state.
        let scan = ScanRegionsRequest { header: header(id), ..Default::default() };
        let got = c.scan_regions(scan).await.unwrap().into_inner();
        assert_ok(&got.header, "ScanRegions");
        let tiles = got.regions.first().is_some_and(|r| r.start_key.is_empty())
            && got.regions.last().is_some_and(|r| r.end_key.is_empty())
            && got.regions.windows(2).all(|w| w[0].end_key == w[1].start_key);
        assert!(
            tiles,
            "{}",
            failure(
                seed,
                format!(
                    "the {} regions the scheduler knows do not tile the key space (a gap, an \
                     overlap, or a missing end): a stale report was taken over newer regions, \
                     or a newer one refused",
                    got.regions.len()
                )
            )
        );
        let finals = history.finals();
        for (i, want) in finals.iter().enumerate() {
            let Some(known) = got.regions.get(i) else {
                panic!("{}", failure(seed, format!("only {} regions known, {} expected", got.regions.len(), finals.len())));
            };
            assert_eq!(
                known,
                &want.region,
                "{}",
                failure(seed, format!("region #{i} in key order: the scheduler's view (left) is not the newest state (right)"))
            );
            assert_eq!(
                got.leaders[i],
                want.leader,
                "{}",
                failure(seed, format!("the leader of region {}", want.region.id))
            );
        }
        assert_eq!(got.regions.len(), finals.len(), "{}", failure(seed, "region count".into()));

        // The store statistics match the final regions (the lock is
        // released at the end of the block).
        {
        let core = s.cluster.lock().unwrap();
        for store_id in 1..=STORES {
            let on_store = |s: &&&State| s.region.peers.iter().any(|p| p.store_id == store_id);
            let led = |s: &&&State| s.leader.store_id == store_id;
            let size = |s: &&State| s.size.max(EMPTY_REGION_SIZE);
            let expected = (
                finals.iter().filter(on_store).count(),
                finals.iter().filter(led).count(),
                finals.iter().filter(on_store).map(size).sum::<u64>(),
                finals.iter().filter(led).map(size).sum::<u64>(),
            );
            let info = core.store(store_id).expect("a known store");
            let counted = (info.region_count, info.leader_count, info.region_size, info.leader_size);
            assert_eq!(
                counted,
                expected,
                "{}",
                failure(
                    seed,
                    format!(
                        "store {store_id}: (region_count, leader_count, region_size, \
                         leader_size) counted (left) vs. the final regions (right): \
                         recount every store a change touches (update_store_status)"
                    )
                )
            );
        }
        assert!(
            core.stale_heartbeats() >= (stragglers + region_1_old) as u64,
            "{}",
            failure(
                seed,
                format!(
                    "{} heartbeats refused as stale, at least {} expected",
                    core.stale_heartbeats(),
                    stragglers + region_1_old
                )
            )
        );
        }
        eprintln!(
            "{} heartbeats over {STREAMS} streams in {:?} (TINYKV_SEED={seed})",
            history.states.values().map(Vec::len).sum::<usize>() + REGIONS,
            started.elapsed()
        );
        drop(c);
        s.stop().await;
    });
}
