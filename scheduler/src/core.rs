//! What the scheduler knows of the cluster (given code, lab 3c).
//!
//! The scheduler never looks at a store's data. Everything it knows comes
//! from what stores tell it:
//!
//! - **Region heartbeats**, from each region's leader: the region as the
//!   leader has applied it (range, epoch, peers), the leader itself, the
//!   followers that lag behind ([`RegionInfo::pending_peers`]) and the
//!   region's approximate size. [`RegionInfo::from_heartbeat`] checks one
//!   and turns it into a [`RegionInfo`]; lab 3c's
//!   [`BasicCluster::process_region_heartbeat`](crate::heartbeat) decides
//!   whether it is news.
//! - **Store heartbeats**: the store's stats, and the fact that it is
//!   alive ([`StoreInfo::last_heartbeat_ms`]).
//!
//! [`RegionsInfo`] holds the regions by id, by key range, and by store
//! (which regions each store leads, follows, or lags behind in), so that
//! the per-store statistics a scheduler balances ([`StoreInfo::region_count`],
//! [`StoreInfo::region_size`], ...) are cheap to recompute
//! ([`BasicCluster::update_store_status`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store, StoreState};
use tinykv_proto::schedulerpb::{RegionHeartbeatRequest, StoreStats};

use crate::ranges::{RangeIndex, describe_range};

/// The size a region counts for in balancing when its leader has not
/// measured it yet (`approximate_size` 0): an empty region still costs
/// a store something, and a store full of unmeasured regions must not
/// look empty.
pub const EMPTY_REGION_SIZE: u64 = 1;

/// What the scheduler knows of one region: its newest accepted report.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionInfo {
    /// The region: range, epoch, peers. Invariants (checked by
    /// [`from_heartbeat`](Self::from_heartbeat)): an id, an epoch, a
    /// non-empty range, at least one peer, no two peers with one id or on
    /// one store.
    pub region: Region,
    /// The peer that sent the report (none for a region loaded from disk
    /// or bootstrapped, until its first heartbeat). Invariant: one of
    /// `region.peers`.
    pub leader: Option<Peer>,
    /// The followers the leader reported as lagging behind its log (they
    /// need a snapshot). Invariant: each is one of `region.peers`.
    pub pending_peers: Vec<Peer>,
    /// The region's size in bytes, as its leader last measured it (0 if
    /// it has not yet).
    pub approximate_size: u64,
}

/// A region heartbeat that is not a region state at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed region heartbeat (region {region_id}): {reason}")]
pub struct Malformed {
    /// The region it names (0 if none).
    pub region_id: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl RegionInfo {
    /// A region known without a heartbeat (bootstrapped, or loaded from
    /// disk): no leader, no pending peers, size unknown.
    pub fn new(region: Region) -> RegionInfo {
        RegionInfo { region, leader: None, pending_peers: Vec::new(), approximate_size: 0 }
    }

    /// Checks a heartbeat and makes it a [`RegionInfo`].
    ///
    /// # Errors
    ///
    /// [`Malformed`] when it has no region or no leader, the region has
    /// no id, no epoch, an empty or inverted range, no peers, two peers
    /// with one id or on one store, or the leader or a pending peer is
    /// not one of its peers.
    pub fn from_heartbeat(request: &RegionHeartbeatRequest) -> Result<RegionInfo, Malformed> {
        let region_id = request.region.as_ref().map_or(0, |r| r.id);
        let bad = |reason: String| Malformed { region_id, reason };
        let region = request.region.clone().ok_or_else(|| bad("no region".into()))?;
        check_region(&region).map_err(bad)?;
        let leader = request.leader.ok_or_else(|| bad("no leader".into()))?;
        if !region.peers.contains(&leader) {
            return Err(bad(format!(
                "the leader, peer {} on store {}, is not one of the region's peers",
                leader.id, leader.store_id
            )));
        }
        for pending in &request.pending_peers {
            if !region.peers.contains(pending) || *pending == leader {
                return Err(bad(format!(
                    "pending peer {} on store {} is not one of the region's followers",
                    pending.id, pending.store_id
                )));
            }
        }
        Ok(RegionInfo {
            region,
            leader: Some(leader),
            pending_peers: request.pending_peers.clone(),
            approximate_size: request.approximate_size,
        })
    }

    /// The region's id.
    pub fn id(&self) -> u64 {
        self.region.id
    }

    /// The region's epoch.
    pub fn epoch(&self) -> RegionEpoch {
        self.region.region_epoch.unwrap_or_default()
    }

    /// The stores that hold a peer of the region, in id order.
    pub fn store_ids(&self) -> BTreeSet<u64> {
        self.region.peers.iter().map(|p| p.store_id).collect()
    }

    /// Whether `key` lies in the region and is not its start key (where a
    /// split may cut it).
    pub fn contains_inside(&self, key: &[u8]) -> bool {
        let r = &self.region;
        key > r.start_key.as_slice() && (r.end_key.is_empty() || key < r.end_key.as_slice())
    }

    /// The region's peer on `store_id`.
    pub fn peer_on_store(&self, store_id: u64) -> Option<Peer> {
        self.region.peers.iter().find(|p| p.store_id == store_id).copied()
    }

    /// The store of the leader (0 if none is known).
    pub fn leader_store_id(&self) -> u64 {
        self.leader.map_or(0, |p| p.store_id)
    }

    /// The peers other than the leader.
    pub fn followers(&self) -> impl Iterator<Item = Peer> + '_ {
        self.region.peers.iter().copied().filter(move |p| Some(*p) != self.leader)
    }

    /// Whether the peer on `store_id` lags behind the leader.
    pub fn is_pending_on(&self, store_id: u64) -> bool {
        self.pending_peers.iter().any(|p| p.store_id == store_id)
    }

    /// The size the region counts for in balancing: its approximate size,
    /// at least [`EMPTY_REGION_SIZE`].
    pub fn size(&self) -> u64 {
        self.approximate_size.max(EMPTY_REGION_SIZE)
    }
}

impl fmt::Display for RegionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let epoch = self.epoch();
        write!(
            f,
            "region {} {} (conf_ver {}, version {}), peers [",
            self.id(),
            describe_range(&self.region.start_key, &self.region.end_key),
            epoch.conf_ver,
            epoch.version
        )?;
        for (i, p) in self.region.peers.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let lead = if Some(*p) == self.leader { "*" } else { "" };
            write!(f, "{sep}{}@s{}{lead}", p.id, p.store_id)?;
        }
        write!(f, "], {} bytes", self.approximate_size)
    }
}

/// Why `region` is not a state a store could hold (`Err` names it).
pub(crate) fn check_region(region: &Region) -> Result<(), String> {
    if region.id == 0 {
        return Err("region id 0".into());
    }
    if region.region_epoch.is_none() {
        return Err("no region epoch".into());
    }
    if !region.end_key.is_empty() && region.end_key <= region.start_key {
        return Err(format!(
            "an empty or inverted range {}",
            describe_range(&region.start_key, &region.end_key)
        ));
    }
    if region.peers.is_empty() {
        return Err("no peers".into());
    }
    let mut ids = BTreeSet::new();
    let mut stores = BTreeSet::new();
    for p in &region.peers {
        if p.id == 0 || p.store_id == 0 {
            return Err(format!("peer {} on store {}: ids must not be 0", p.id, p.store_id));
        }
        if !ids.insert(p.id) {
            return Err(format!("two peers with id {}", p.id));
        }
        if !stores.insert(p.store_id) {
            return Err(format!("two peers on store {}", p.store_id));
        }
    }
    Ok(())
}

/// A store, its latest stats, and what the scheduler counts on it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreInfo {
    /// Its id, address and state.
    pub store: Store,
    /// Its latest reported stats (default before its first heartbeat).
    pub stats: StoreStats,
    /// When its last heartbeat arrived (ms, the scheduler's clock); `None`
    /// before the first one since the scheduler started.
    pub last_heartbeat_ms: Option<u64>,
    /// How many regions it holds a peer of (from region heartbeats, by
    /// [`BasicCluster::update_store_status`]).
    pub region_count: usize,
    /// How many regions it leads.
    pub leader_count: usize,
    /// How many of its peers lag behind their leader.
    pub pending_peer_count: usize,
    /// The sum of [`RegionInfo::size`] over the regions it holds.
    pub region_size: u64,
    /// The sum of [`RegionInfo::size`] over the regions it leads.
    pub leader_size: u64,
}

impl StoreInfo {
    /// A store that has sent nothing yet.
    pub fn new(store: Store) -> StoreInfo {
        StoreInfo {
            store,
            stats: StoreStats::default(),
            last_heartbeat_ms: None,
            region_count: 0,
            leader_count: 0,
            pending_peer_count: 0,
            region_size: 0,
            leader_size: 0,
        }
    }

    /// Its id.
    pub fn id(&self) -> u64 {
        self.store.id
    }

    /// Whether its state is `Up` (it may have stopped sending heartbeats:
    /// see [`is_down`](Self::is_down)).
    pub fn is_up(&self) -> bool {
        self.store.state() == StoreState::Up
    }

    /// Whether it is being taken out of the cluster (its regions move
    /// away, then it becomes a tombstone).
    pub fn is_offline(&self) -> bool {
        self.store.state() == StoreState::Offline
    }

    /// Whether it has left the cluster for good.
    pub fn is_tombstone(&self) -> bool {
        self.store.state() == StoreState::Tombstone
    }

    /// How long it has been silent at `now_ms`: since its last heartbeat,
    /// or since `since_ms` (when the scheduler started) if it has sent
    /// none.
    pub fn down_time_ms(&self, now_ms: u64, since_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_heartbeat_ms.unwrap_or(since_ms))
    }
}

/// The regions, by id, by key range and by store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionsInfo {
    /// Region id → its info.
    regions: BTreeMap<u64, RegionInfo>,
    /// Their ranges. Invariant: exactly the ranges of `regions`, none
    /// overlapping.
    ranges: RangeIndex,
    /// Store id → the regions it leads. Invariant: as `regions` says.
    leaders: BTreeMap<u64, BTreeSet<u64>>,
    /// Store id → the regions it holds a follower of.
    followers: BTreeMap<u64, BTreeSet<u64>>,
    /// Store id → the regions whose peer there is pending.
    pending: BTreeMap<u64, BTreeSet<u64>>,
}

impl RegionsInfo {
    /// How many regions are known.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The region with id `region_id`.
    pub fn get(&self, region_id: u64) -> Option<&RegionInfo> {
        self.regions.get(&region_id)
    }

    /// The region whose range holds `key`.
    pub fn get_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.ranges.find(key).map(|id| &self.regions[&id])
    }

    /// The known regions *other than `region.id`* that share a key with
    /// `region`'s range, in key order.
    pub fn overlaps(&self, region: &Region) -> Vec<&RegionInfo> {
        self.ranges
            .overlapping(&region.start_key, &region.end_key)
            .into_iter()
            .filter(|&id| id != region.id)
            .map(|id| &self.regions[&id])
            .collect()
    }

    /// Puts `info` in place of what was known of its region, and removes
    /// every other region whose range overlaps it. Returns what it
    /// replaced: the old state of the same region (if any) first, then
    /// the removed overlapping regions in key order.
    pub fn set_region(&mut self, info: RegionInfo) -> Vec<RegionInfo> {
        let mut replaced = Vec::new();
        if let Some(old) = self.remove_region(info.id()) {
            replaced.push(old);
        }
        let overlapping: Vec<u64> =
            self.overlaps(&info.region).into_iter().map(RegionInfo::id).collect();
        for id in overlapping {
            replaced.extend(self.remove_region(id));
        }
        self.ranges.insert(info.id(), &info.region.start_key, &info.region.end_key);
        for peer in &info.region.peers {
            let by_role =
                if Some(*peer) == info.leader { &mut self.leaders } else { &mut self.followers };
            by_role.entry(peer.store_id).or_default().insert(info.id());
        }
        for peer in &info.pending_peers {
            self.pending.entry(peer.store_id).or_default().insert(info.id());
        }
        self.regions.insert(info.id(), info);
        replaced
    }

    /// Forgets a region; returns what was known of it.
    pub fn remove_region(&mut self, region_id: u64) -> Option<RegionInfo> {
        let info = self.regions.remove(&region_id)?;
        self.ranges.remove(region_id, &info.region.start_key, &info.region.end_key);
        for index in [&mut self.leaders, &mut self.followers, &mut self.pending] {
            for peer in &info.region.peers {
                if let Some(ids) = index.get_mut(&peer.store_id) {
                    ids.remove(&region_id);
                    if ids.is_empty() {
                        index.remove(&peer.store_id);
                    }
                }
            }
        }
        Some(info)
    }

    /// Every region, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RegionInfo> {
        self.ranges.region_ids().map(|id| &self.regions[&id])
    }

    /// Up to `limit` regions (0: no limit) in key order, from the one
    /// holding `start_key` (or the first after it) to the last one that
    /// starts before `end_key` (empty: unbounded).
    pub fn scan(&self, start_key: &[u8], end_key: &[u8], limit: usize) -> Vec<&RegionInfo> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.ranges
            .overlapping(start_key, end_key)
            .into_iter()
            .take(limit)
            .map(|id| &self.regions[&id])
            .collect()
    }

    /// The regions `store_id` leads, in id order.
    pub fn leaders_on(&self, store_id: u64) -> impl Iterator<Item = &RegionInfo> {
        self.on_store(&self.leaders, store_id)
    }

    /// The regions `store_id` holds a follower of, in id order.
    pub fn followers_on(&self, store_id: u64) -> impl Iterator<Item = &RegionInfo> {
        self.on_store(&self.followers, store_id)
    }

    /// The regions whose peer on `store_id` is pending, in id order.
    pub fn pending_on(&self, store_id: u64) -> impl Iterator<Item = &RegionInfo> {
        self.on_store(&self.pending, store_id)
    }

    /// The parts of the key space that no known region covers (see
    /// [`RangeIndex::gaps`]).
    pub fn gaps(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.ranges.gaps()
    }

    fn on_store<'a>(
        &'a self,
        index: &'a BTreeMap<u64, BTreeSet<u64>>,
        store_id: u64,
    ) -> impl Iterator<Item = &'a RegionInfo> + 'a {
        index.get(&store_id).into_iter().flatten().map(|id| &self.regions[id])
    }
}

/// The stores and the regions: what the scheduler knows, without ids,
/// timestamps, operators or persistence (those are in
/// [`RaftCluster`](crate::RaftCluster)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BasicCluster {
    /// Store id → the store.
    pub stores: BTreeMap<u64, StoreInfo>,
    /// The regions.
    pub regions: RegionsInfo,
}

impl BasicCluster {
    /// An empty cluster.
    pub fn new() -> BasicCluster {
        BasicCluster::default()
    }

    /// The store with id `store_id`.
    pub fn store(&self, store_id: u64) -> Option<&StoreInfo> {
        self.stores.get(&store_id)
    }

    /// Adds a store, or replaces its metadata (what is counted on it and
    /// its stats are kept).
    pub fn put_store(&mut self, store: Store) {
        match self.stores.get_mut(&store.id) {
            Some(info) => info.store = store,
            None => {
                let id = store.id;
                self.stores.insert(id, StoreInfo::new(store));
                self.update_store_status(id);
            }
        }
    }

    /// Recounts what `store_id` holds from the regions: region and leader
    /// counts and sizes, pending peers. A store the scheduler does not
    /// know is skipped (a region may name a store before it is put).
    pub fn update_store_status(&mut self, store_id: u64) {
        let Some(store) = self.stores.get_mut(&store_id) else { return };
        let regions = &self.regions;
        let leaders: Vec<&RegionInfo> = regions.leaders_on(store_id).collect();
        let followers: Vec<&RegionInfo> = regions.followers_on(store_id).collect();
        store.leader_count = leaders.len();
        store.leader_size = leaders.iter().map(|r| r.size()).sum();
        store.region_count = leaders.len() + followers.len();
        store.region_size = store.leader_size + followers.iter().map(|r| r.size()).sum::<u64>();
        store.pending_peer_count = regions.pending_on(store_id).count();
    }
}
