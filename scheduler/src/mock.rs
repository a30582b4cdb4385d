//! The mock scheduler that lab 3b's simulator runs (given code).
//!
//! Lab 3b makes the raftstore change its regions' membership and
//! leadership when told to, and (part 2) split a region that grew too
//! large. Whoever tells it is a scheduler: stores send
//! it region heartbeats (from each region's leader) and store heartbeats,
//! and it answers a region heartbeat with an *operator* for that region.
//! [`MockScheduler`] is that scheduler with no policy of its own: the
//! test asks for the operators ([`add_peer`](MockScheduler::add_peer),
//! [`remove_peer`](MockScheduler::remove_peer),
//! [`transfer_leader`](MockScheduler::transfer_leader)) and the mock
//! hands them out and follows them through. A store that splits a region
//! asks it for the new region's ids
//! ([`ask_split`](MockScheduler::ask_split)). It is sans-I/O, like the
//! raftstore: it takes heartbeats and returns responses, and has no
//! threads, clock, I/O or randomness, so the simulator runs it
//! deterministically.
//!
//! # Cluster metadata
//!
//! Stores ([`put_store`](MockScheduler::put_store), stats from
//! [`on_store_heartbeat`](MockScheduler::on_store_heartbeat)); regions by
//! id and by key range ([`region`](MockScheduler::region),
//! [`region_by_key`](MockScheduler::region_by_key), O(log n)), seeded by
//! [`bootstrap`](MockScheduler::bootstrap) and kept up to date by region
//! heartbeats; each region's leader (the peer that sent the newest
//! accepted heartbeat); an id allocator for new peers and new regions
//! whose ids never repeat ([`alloc_id`](MockScheduler::alloc_id)).
//!
//! # Heartbeats and operators
//!
//! A region heartbeat is first checked ([`Breach`] says against what),
//! then filtered: a report with an epoch *older* than the known one is a
//! delayed message, ignored and counted
//! ([`stale_heartbeats`](MockScheduler::stale_heartbeats)). Otherwise it
//! replaces what the scheduler knew, and the region's pending operator,
//! if any, is either done (the report shows its target: the new peer
//! present, the removed store's peer absent, the leader on the target
//! store), dropped and counted
//! ([`operators_done`](MockScheduler::operators_done)), or sent back in
//! the response. It is sent again with every heartbeat until one shows it
//! done: responses get lost, and the store proposes each one it receives.
//!
//! Each response carries the region epoch the scheduler knows, and the
//! store proposes the change *with that epoch* (as TinyKV's store does),
//! so of the many copies of one operator, and of any delayed response of
//! an older one, at most one can apply: the first bumps the region's
//! `conf_ver` and the store refuses the rest as stale.
//!
//! **One operator per region.** A region has at most one pending
//! operator; asking for a new one *replaces* it (the old one is never
//! sent again and does not count as done) — except while a conf change
//! is *in flight*: once an add or remove has been sent, it may be in a
//! raft log already, and forgetting it would not stop it from applying.
//! Until a heartbeat shows it done, every request for that region is
//! refused with [`ScheduleError::ChangeInFlight`], so at most one conf
//! change per region is ever in flight. A transfer that was sent can be
//! replaced: a late one only moves the leader.
//!
//! An operator that cannot apply (remove the last peer, add a peer on a
//! store that already has one of the region, transfer to a store without
//! one) is refused with a [`ScheduleError`]; one whose target already
//! holds (remove from a store without a peer, transfer to the current
//! leader's store) is [`Scheduled::AlreadyDone`] at once.
//!
//! ```
//! use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store};
//! use tinykv_proto::schedulerpb::RegionHeartbeatRequest;
//! use tinykv_scheduler::mock::{MockScheduler, Operator, Scheduled};
//!
//! let peer = |id, store_id| Peer { id, store_id };
//! let region = |conf_ver, peers: Vec<Peer>| Region {
//!     id: 1,
//!     region_epoch: Some(RegionEpoch { conf_ver, version: 1 }),
//!     peers,
//!     ..Default::default()
//! };
//! let heartbeat = |region: Region| RegionHeartbeatRequest {
//!     leader: Some(region.peers[0]),
//!     region: Some(region),
//!     ..Default::default()
//! };
//!
//! let mut scheduler = MockScheduler::new();
//! for id in 1..=2 {
//!     scheduler.put_store(Store { id, ..Default::default() });
//! }
//! scheduler.bootstrap(region(1, vec![peer(3, 1)])).unwrap();
//!
//! // The test asks for a peer on store 2; its id is fresh.
//! let Scheduled::Pending(Operator::AddPeer(new_peer)) = scheduler.add_peer(1, 2).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!(new_peer.store_id, 2);
//! assert!(new_peer.id > 3);
//!
//! // Every heartbeat that does not show it done gets it back.
//! for _ in 0..2 {
//!     let response = scheduler.on_region_heartbeat(heartbeat(region(1, vec![peer(3, 1)])));
//!     let change = response.unwrap().unwrap().change_peer.unwrap();
//!     assert_eq!(change.peer, Some(new_peer));
//! }
//!
//! // The store applied it (conf_ver 2): done, nothing more to send.
//! let applied = region(2, vec![peer(3, 1), new_peer]);
//! assert_eq!(scheduler.on_region_heartbeat(heartbeat(applied)), Ok(None));
//! assert_eq!(scheduler.operators_done(), 1);
//! assert_eq!(scheduler.region(1).unwrap().peers.len(), 2);
//! ```
//!
//! # Splits
//!
//! A region `[start, end)` at epoch (conf_ver c, version v) that splits
//! at key k becomes two: the parent, same id, `[start, k)`, and a new
//! region `[k, end)` with peers on the parent's stores. The store asks
//! for the new region's id and peer ids first
//! ([`ask_split`](MockScheduler::ask_split), counted by
//! [`splits_asked`](MockScheduler::splits_asked)); nothing else changes
//! then. Both halves get version v + 1 and keep conf_ver c, and the
//! scheduler learns of the split only from their heartbeats, which come
//! from two leaders, in either order, and possibly late.
//!
//! Versions only rise, and only by splits (there are no merges here), so
//! **the owners of one key over time have strictly increasing
//! versions.** Hence the rule for a report whose range overlaps other
//! known regions, as PD and TinyKV's scheduler have it:
//!
//! - an overlapped region with a *lower* version is a stale view (from
//!   before a split that it has not reported yet): it is removed
//!   (counted by [`regions_replaced`](MockScheduler::regions_replaced));
//! - an overlapped region with a *higher* version makes the report the
//!   stale view (an old one from a lagging leader): it is ignored like a
//!   stale heartbeat, and nothing changes;
//! - the *same* version is a [`Breach`] (check (c)): at one version a key
//!   has one owner.
//!
//! Removing a region can leave a gap in the key space
//! ([`gaps`](MockScheduler::gaps)): when the new right half reports
//! first, the parent goes, and its left part is nobody's until the
//! parent reports its shrunk range. That is expected; once every region
//! has reported since the last split, the regions tile the key space
//! again. A removed region is unknown (it takes no new operator) until
//! it reports again under its id, but it keeps its pending operator,
//! and its next report is checked against its last known state: a conf
//! change in flight in the parent's log still applies to the parent
//! after the split (a split keeps conf_ver, so the checks are as before).
//!
//! ```
//! use tinykv_proto::metapb::{Peer, Region, RegionEpoch};
//! use tinykv_proto::schedulerpb::{AskSplitRequest, RegionHeartbeatRequest};
//! use tinykv_scheduler::mock::MockScheduler;
//!
//! let region = |id, version, peer: Peer, (start, end): (&str, &str)| Region {
//!     id,
//!     start_key: start.as_bytes().to_vec(),
//!     end_key: end.as_bytes().to_vec(),
//!     region_epoch: Some(RegionEpoch { conf_ver: 1, version }),
//!     peers: vec![peer],
//! };
//! let heartbeat = |region: Region| RegionHeartbeatRequest {
//!     leader: Some(region.peers[0]),
//!     region: Some(region),
//!     ..Default::default()
//! };
//!
//! let mut scheduler = MockScheduler::new();
//! let parent_peer = Peer { id: 2, store_id: 1 };
//! let parent = region(1, 1, parent_peer, ("", ""));
//! scheduler.bootstrap(parent.clone()).unwrap();
//!
//! // The store asks for ids, then splits region 1 at "m" (version 2).
//! let ids = scheduler.ask_split(AskSplitRequest { region: Some(parent), ..Default::default() });
//! let ids = ids.unwrap();
//! let new_peer = Peer { id: ids.new_peer_ids[0], store_id: 1 };
//! let right = region(ids.new_region_id, 2, new_peer, ("m", ""));
//! let left = region(1, 2, parent_peer, ("", "m"));
//!
//! // The right half reports first: the parent's view is stale and goes,
//! // and ["", "m") is nobody's until the parent reports.
//! scheduler.on_region_heartbeat(heartbeat(right)).unwrap();
//! assert_eq!(scheduler.regions_replaced(), 1);
//! assert_eq!(scheduler.gaps(), vec![(b"".to_vec(), b"m".to_vec())]);
//!
//! scheduler.on_region_heartbeat(heartbeat(left)).unwrap();
//! assert!(scheduler.gaps().is_empty());
//! assert_eq!(scheduler.region_by_key(b"a").unwrap().id, 1);
//! assert_eq!(scheduler.region_by_key(b"z").unwrap().id, ids.new_region_id);
//! ```
//!
//! # Known limits
//!
//! - A heartbeat carries no raft term, so a delayed heartbeat from a
//!   deposed leader with the current epoch is accepted: it makes that
//!   peer [`leader_of`](MockScheduler::leader_of) the region until the
//!   next heartbeat, and can make a transfer look done. Tests that need
//!   the leader for sure ask the store.
//! - An add is done as soon as the new peer is in the region, even if it
//!   has not caught up yet (it is in `pending_peers`), whereas TinyKV's
//!   mock also waits for it to leave `pending_peers`. Tests that need the
//!   new peer's data wait for it on its store (`must_have_peer`).
//! - Regions never merge here: the overlap rule counts on versions rising
//!   only by splits, whose halves are contained in the parent. A merge
//!   (lab 3 does not have one) would need the merged-away region's
//!   removal reported too.
//! - A region whose report removed others is not checked to *be* one of
//!   their split halves (its range inside theirs, its peers on their
//!   stores): the version rule alone decides, as in PD.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store, StoreState};
use tinykv_proto::schedulerpb::{
    AskSplitRequest, AskSplitResponse, ChangePeer, RegionHeartbeatRequest, RegionHeartbeatResponse,
    StoreHeartbeatRequest, StoreStats, TransferLeader,
};

use crate::ranges::{RangeIndex, describe_range};

/// An operator for one region: what the test asked the scheduler to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Add this peer (a freshly allocated id, on a store that has no peer
    /// of the region). Done when the region has exactly this peer.
    AddPeer(Peer),
    /// Remove this peer. Done when its store has no peer of the region.
    RemovePeer(Peer),
    /// Move the leadership to this peer. Done when a heartbeat comes from
    /// a leader on its store.
    TransferLeader(Peer),
}

impl Operator {
    /// The peer the operator adds, removes or makes leader.
    pub fn peer(&self) -> Peer {
        match self {
            Operator::AddPeer(peer)
            | Operator::RemovePeer(peer)
            | Operator::TransferLeader(peer) => *peer,
        }
    }

    /// Whether it changes the region's peers (and so its `conf_ver`).
    pub fn is_conf_change(&self) -> bool {
        matches!(self, Operator::AddPeer(_) | Operator::RemovePeer(_))
    }

    /// Whether `region`, led by `leader`, shows the operator done.
    pub fn is_done(&self, region: &Region, leader: &Peer) -> bool {
        match self {
            Operator::AddPeer(peer) => region.peers.contains(peer),
            Operator::RemovePeer(peer) => peer_on_store(region, peer.store_id).is_none(),
            Operator::TransferLeader(peer) => leader.store_id == peer.store_id,
        }
    }

    /// The peer set `peers` becomes when this conf change applies (a
    /// transfer leaves it as it is).
    fn applied_to(&self, peers: &BTreeSet<(u64, u64)>) -> BTreeSet<(u64, u64)> {
        let mut after = peers.clone();
        match self {
            Operator::AddPeer(peer) => {
                after.insert((peer.id, peer.store_id));
            }
            Operator::RemovePeer(peer) => {
                after.remove(&(peer.id, peer.store_id));
            }
            Operator::TransferLeader(_) => {}
        }
        after
    }

    /// Puts the operator into a heartbeat response.
    fn fill(&self, response: &mut RegionHeartbeatResponse) {
        let change = |change_type: ConfChangeType, peer: &Peer| ChangePeer {
            peer: Some(*peer),
            change_type: change_type as i32,
        };
        match self {
            Operator::AddPeer(peer) => {
                response.change_peer = Some(change(ConfChangeType::AddNode, peer));
            }
            Operator::RemovePeer(peer) => {
                response.change_peer = Some(change(ConfChangeType::RemoveNode, peer));
            }
            Operator::TransferLeader(peer) => {
                response.transfer_leader = Some(TransferLeader { peer: Some(*peer) });
            }
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, peer) = match self {
            Operator::AddPeer(peer) => ("add", peer),
            Operator::RemovePeer(peer) => ("remove", peer),
            Operator::TransferLeader(peer) => ("transfer the leadership to", peer),
        };
        write!(f, "{what} peer {} on store {}", peer.id, peer.store_id)
    }
}

/// What became of a request for an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// Pending: sent with every heartbeat from the region's leader until
    /// one shows it done. It replaced the region's previous operator, if
    /// any.
    Pending(Operator),
    /// The region already looks like the operator's target: nothing to
    /// send. It replaced the region's previous operator, if any, and
    /// counts as done.
    AlreadyDone,
}

/// Why a request (for an operator, a bootstrap, a store heartbeat) was
/// refused. A refused request changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The region is not known (not bootstrapped, no heartbeat yet).
    #[error("region {region_id} is not known to the scheduler")]
    UnknownRegion {
        /// The region asked for.
        region_id: u64,
    },
    /// The store was never put.
    #[error("store {store_id} is not known to the scheduler")]
    UnknownStore {
        /// The store asked for.
        store_id: u64,
    },
    /// Peers are only added to stores that are up.
    #[error("cannot add a peer on store {store_id}: it is {state:?}, not Up")]
    StoreNotUp {
        /// The store asked for.
        store_id: u64,
        /// Its state.
        state: StoreState,
    },
    /// A region has at most one peer per store.
    #[error("cannot add a peer of region {region_id} on store {store_id}: it has peer {peer_id}")]
    StoreHasPeer {
        /// The region.
        region_id: u64,
        /// The store asked for.
        store_id: u64,
        /// The region's peer already on that store.
        peer_id: u64,
    },
    /// A region without peers is lost.
    #[error(
        "cannot remove peer {peer_id} on store {store_id} of region {region_id}: it is the region's last peer"
    )]
    LastPeer {
        /// The region.
        region_id: u64,
        /// The store asked for.
        store_id: u64,
        /// Its only peer.
        peer_id: u64,
    },
    /// Only a peer of the region can lead it.
    #[error(
        "cannot transfer the leadership of region {region_id} to store {store_id}: no peer of the region is there"
    )]
    NoPeerOnStore {
        /// The region.
        region_id: u64,
        /// The store asked for.
        store_id: u64,
    },
    /// A sent conf change cannot be taken back (see the module docs).
    #[error(
        "region {region_id} has a conf change in flight ({in_flight}); a heartbeat must show it done before the region takes another operator"
    )]
    ChangeInFlight {
        /// The region.
        region_id: u64,
        /// The change that was sent and not seen done yet.
        in_flight: Operator,
    },
    /// `bootstrap` seeds the first region only.
    #[error("the scheduler is already bootstrapped (it knows region {region_id})")]
    AlreadyBootstrapped {
        /// A region it knows.
        region_id: u64,
    },
    /// The bootstrap region is not one a store could have.
    #[error("cannot bootstrap with region {region_id}: {reason}")]
    InvalidRegion {
        /// The region given.
        region_id: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A store heartbeat must carry the store's stats.
    #[error("a store heartbeat without stats")]
    MissingStats,
    /// An `AskSplit` must carry the region to split.
    #[error("an AskSplit without its region")]
    MissingRegion,
    /// A split planned on an older view of the region.
    #[error(
        "region {region_id} is at {}, the request at {}: its view is stale",
        describe_epoch(*known),
        describe_epoch(*reported)
    )]
    StaleEpoch {
        /// The region.
        region_id: u64,
        /// The epoch the request carried.
        reported: RegionEpoch,
        /// The epoch the scheduler knows.
        known: RegionEpoch,
    },
}

/// A region heartbeat that no correct raftstore could have sent: the test
/// fails with it (its `Display` names the region, what the scheduler
/// knew and what was reported).
///
/// # The invariants, and why each holds for a correct store
///
/// A correct store, under any delay, drop or duplication of messages,
/// keeps these promises (TinyKV's and TiKV's):
///
/// 1. Every change of a region's peers applies through its raft log and
///    bumps `conf_ver` by one, in the same apply; a change that would not
///    change the peers is refused (its proposal's epoch is stale, or it
///    adds a present peer / removes an absent one).
/// 2. Every change of a region's range bumps `version`: a split at key k
///    turns `[start, end)` at version v into the parent `[start, k)` and
///    a new region `[k, end)`, both at version v + 1 with the parent's
///    `conf_ver`. Versions rise only so (no merges), so the owners of a
///    key over time have strictly increasing versions.
/// 3. The raft log is one sequence, so each epoch names exactly one
///    region state, whichever peer reports it and however late.
/// 4. A leader reports the region as it has applied it, and a peer that
///    applied its own removal is destroyed before it reports again.
/// 5. The store proposes an operator with the epoch of the response that
///    carried it, so an operator applies only against the epoch the
///    scheduler knew when it sent it.
///
/// Stale reports (an epoch older than the known one in either half) are
/// filtered out before checks (a)–(c) and (e): a delayed report is a true
/// report of the past, which the scheduler has already moved beyond. So
/// is a report overlapping a region with a higher version, by (c). "The
/// known one" is the region known by the report's id, or, for a region
/// removed for overlap (see the module docs), its last known state.
///
/// - **(a) [`BreachKind::SameEpochDifferentRegion`]:** the same epoch
///   (both halves equal) with another range or another peer set. By 3,
///   an epoch names one state; two states under one epoch mean two conf
///   changes or splits raced past the epoch check (1, 2).
/// - **(b) [`BreachKind::ConfVerWithoutPeerChange`],
///   [`BreachKind::PeersChangedWithoutConfVer`],
///   [`BreachKind::RangeChangedWithoutVersion`]:** `conf_ver` rose and
///   the peers are the known ones, or the peers changed and `conf_ver`
///   did not rise (1); the range changed and `version` did not rise (2).
///   "Rose, then came back" (add, then remove the same peer: +2 with the
///   same peers) cannot be reported: the scheduler has one conf change
///   in flight at a time and sees each one done first.
/// - **(c) [`BreachKind::Overlap`]:** the reported range shares a key
///   with another known region *at the same version*. By 2, the owners
///   of a key over time have strictly increasing versions, so at one
///   version a key has one owner: two regions sharing a key at one
///   version mean a split that gave a key to both halves, or two splits
///   that raced past the epoch check. At different versions, the lower
///   one is a view from before a split, not a breach: a known region
///   with a lower version is removed, a report with a lower version is
///   stale (see the module docs).
/// - **(d) [`BreachKind::LeaderNotInRegion`]:** the sender is not one of
///   the reported region's peers (same id, same store). By 4 a leader is
///   a member of the region it reports. Checked on stale reports too:
///   it was true of the past as well.
/// - **(e) [`BreachKind::UnscheduledConfChange`]:** `conf_ver` rose, but
///   not by exactly one to the peers that the change in flight gives (or
///   there was none). By 5 and one change in flight, the only change that
///   can apply on top of the known epoch is the one sent with it; another
///   one is a replayed old operator (a store that proposed with its own
///   epoch rather than the response's) or a change nobody asked for.
/// - **(f) [`BreachKind::PeerIdInTwoRegions`]:** a peer id the scheduler
///   saw in one region is reported in another. Peer ids come from the
///   scheduler's allocator (a conf change's new peer, a split's new
///   peers), which never repeats one, so a peer belongs to one region
///   forever: a split that gave the new region its parent's peer ids
///   instead of the ones `ask_split` allocated breaks this.
///
/// [`BreachKind::Malformed`] reports are not region states at all: no
/// region, no epoch, no peers, an empty range, or two peers sharing an
/// id or a store.
#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    /// Which invariant.
    pub kind: BreachKind,
    /// The region reported (0 if the report had none).
    pub region_id: u64,
    /// The region as the scheduler knew it, if it did.
    pub known: Option<Box<Region>>,
    /// The region as reported.
    pub reported: Option<Box<Region>>,
    /// The peer that sent the report.
    pub leader: Option<Peer>,
}

/// The invariants a region heartbeat can break; see [`Breach`].
#[derive(Clone, Debug, PartialEq)]
pub enum BreachKind {
    /// Not a region state at all (what is missing or wrong).
    Malformed(&'static str),
    /// (d) The sender is not a peer of the region it reports.
    LeaderNotInRegion,
    /// (f) A peer id already seen in another region.
    PeerIdInTwoRegions {
        /// The peer id.
        peer_id: u64,
        /// The region it was seen in first.
        first_region: u64,
    },
    /// (a) The known epoch with another range or peer set.
    SameEpochDifferentRegion,
    /// (b) `conf_ver` rose, the peers did not change.
    ConfVerWithoutPeerChange,
    /// (b) The peers changed, `conf_ver` did not rise.
    PeersChangedWithoutConfVer,
    /// (b) The range changed, `version` did not rise.
    RangeChangedWithoutVersion,
    /// (e) `conf_ver` rose, but not by the one change in flight.
    UnscheduledConfChange {
        /// The change in flight when it was reported.
        in_flight: Option<Operator>,
    },
    /// (c) The range shares keys with another known region at the same
    /// version. A correct store never reports that: versions rise only
    /// by splits, which give both halves the parent's version + 1, so the
    /// owners of one key over time have strictly increasing versions and
    /// at one version a key has one owner. (Overlaps at different
    /// versions are views from before a split: the lower one is dropped
    /// or ignored, not a breach.)
    Overlap {
        /// That region, as known.
        other: Box<Region>,
    },
}

impl BreachKind {
    fn headline(&self) -> &'static str {
        match self {
            BreachKind::Malformed(_) => "malformed heartbeat",
            BreachKind::LeaderNotInRegion => "the leader is not a peer of the region it reports",
            BreachKind::PeerIdInTwoRegions { .. } => {
                "a peer id of another region is reported (peer ids are allocated once)"
            }
            BreachKind::SameEpochDifferentRegion => {
                "the same epoch names two different regions (two conf changes or splits raced)"
            }
            BreachKind::ConfVerWithoutPeerChange => "conf_ver rose but the peers did not change",
            BreachKind::PeersChangedWithoutConfVer => "the peers changed but conf_ver did not rise",
            BreachKind::RangeChangedWithoutVersion => "the range changed but version did not rise",
            BreachKind::UnscheduledConfChange { .. } => {
                "conf_ver rose by a change other than the one in flight"
            }
            BreachKind::Overlap { .. } => {
                "the range overlaps another region at the same version (a key with two owners)"
            }
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region {}: {}", self.region_id, self.kind.headline())?;
        match &self.kind {
            BreachKind::Malformed(what) => write!(f, " ({what})")?,
            BreachKind::PeerIdInTwoRegions { peer_id, first_region } => {
                write!(f, " (peer {peer_id}, first seen in region {first_region})")?;
            }
            BreachKind::UnscheduledConfChange { in_flight: Some(op) } => {
                write!(f, " (in flight: {op})")?;
            }
            BreachKind::UnscheduledConfChange { in_flight: None } => {
                write!(f, " (no change in flight)")?;
            }
            _ => {}
        }
        match &self.known {
            Some(known) => write!(f, "; known: {}", describe_region(known))?,
            None => write!(f, "; known: nothing")?,
        }
        match &self.reported {
            Some(reported) => write!(f, "; reported: {}", describe_region(reported))?,
            None => write!(f, "; reported: no region")?,
        }
        match &self.leader {
            Some(leader) => write!(f, "; sent by peer {} on store {}", leader.id, leader.store_id)?,
            None => write!(f, "; sent by no leader")?,
        }
        if let BreachKind::Overlap { other } = &self.kind {
            write!(f, "; overlaps region {}: {}", other.id, describe_region(other))?;
        }
        Ok(())
    }
}

impl std::error::Error for Breach {}

/// What the scheduler knows of one region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionInfo {
    /// The region as of the newest accepted report (or the bootstrap).
    pub region: Region,
    /// The peer that sent the newest accepted heartbeat (none before the
    /// first). Invariant: one of `region.peers`.
    pub leader: Option<Peer>,
    /// The peers that leader reported as lagging behind.
    pub pending_peers: Vec<Peer>,
    /// The region's size as that leader estimated it.
    pub approximate_size: u64,
}

/// A store and its latest stats.
#[derive(Clone, Debug, PartialEq)]
struct StoreInfo {
    store: Store,
    stats: Option<StoreStats>,
}

/// The region's one pending operator.
#[derive(Clone, Debug, PartialEq)]
struct PendingOperator {
    operator: Operator,
    /// For a conf change: the epoch it was first sent with, from then on
    /// until a heartbeat shows it done (it is *in flight*). Invariant:
    /// its `conf_ver` is the region's known one, in `regions` or, while
    /// the region is removed for overlap, in `replaced` (the known
    /// `conf_ver` only rises by this very change, which is then done; a
    /// split keeps `conf_ver`).
    in_flight_since: Option<RegionEpoch>,
}

/// The mock scheduler. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MockScheduler {
    /// Store id → the store.
    stores: BTreeMap<u64, StoreInfo>,
    /// Region id → what is known of it.
    regions: BTreeMap<u64, RegionInfo>,
    /// The regions' ranges. Invariant: exactly the ranges of `regions`,
    /// none overlapping (they need not cover every key: see `gaps`).
    ranges: RangeIndex,
    /// Region id → its last known state, for a region removed from
    /// `regions` because a newer region overlapped it (`forget_replaced`),
    /// until it reports again under its id. It is unknown meanwhile (no
    /// range, no new operator), but its next report is checked against
    /// this state as against a known one, so checks (a), (b) and (e) and
    /// the done-detection of its operator work across the removal.
    /// Invariant: no key is in `regions`.
    replaced: BTreeMap<u64, Region>,
    /// Peer id → the region it was first seen in (bootstrap and accepted
    /// reports). Invariant: a peer id belongs to one region forever
    /// (check (f)).
    peer_regions: BTreeMap<u64, u64>,
    /// Region id → its pending operator. Invariant: each key is in
    /// `regions` or in `replaced`. A region removed for overlap keeps its
    /// operator, `in_flight_since` included: a conf change in flight in
    /// the parent's raft log still applies to the parent after the split,
    /// and its next report must show it.
    operators: BTreeMap<u64, PendingOperator>,
    /// The next id `alloc_id` returns. Invariant: above every id the
    /// scheduler has handed out or seen (stores, regions, peers).
    next_id: u64,
    /// Heartbeats ignored for an older epoch.
    stale_heartbeats: u64,
    /// Operators seen done (or done when asked for).
    operators_done: u64,
    /// `AskSplit`s answered.
    splits_asked: u64,
    /// Regions removed because a newer region overlapped them.
    regions_replaced: u64,
    /// Whether conf changes nobody asked the scheduler for are accepted
    /// (check (e) off): a test that proposes changes itself sets it.
    unscheduled_changes_allowed: bool,
}

impl MockScheduler {
    /// A scheduler that knows nothing yet.
    pub fn new() -> MockScheduler {
        MockScheduler { next_id: 1, ..Default::default() }
    }

    // ----- Stores -----

    /// Adds a store, or replaces its metadata (its stats are kept).
    pub fn put_store(&mut self, store: Store) {
        self.saw_id(store.id);
        match self.stores.get_mut(&store.id) {
            Some(info) => info.store = store,
            None => {
                self.stores.insert(store.id, StoreInfo { store, stats: None });
            }
        }
    }

    /// Records a store's latest stats.
    pub fn on_store_heartbeat(
        &mut self,
        request: StoreHeartbeatRequest,
    ) -> Result<(), ScheduleError> {
        let stats = request.stats.ok_or(ScheduleError::MissingStats)?;
        let info = self
            .stores
            .get_mut(&stats.store_id)
            .ok_or(ScheduleError::UnknownStore { store_id: stats.store_id })?;
        info.stats = Some(stats);
        Ok(())
    }

    /// The store with id `store_id`.
    pub fn store(&self, store_id: u64) -> Option<&Store> {
        self.stores.get(&store_id).map(|info| &info.store)
    }

    /// The latest stats of a store (none before its first heartbeat).
    pub fn store_stats(&self, store_id: u64) -> Option<&StoreStats> {
        self.stores.get(&store_id)?.stats.as_ref()
    }

    /// Every store, by id.
    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        self.stores.values().map(|info| &info.store)
    }

    // ----- Regions -----

    /// Seeds the first region (the one the stores bootstrapped with).
    pub fn bootstrap(&mut self, region: Region) -> Result<(), ScheduleError> {
        if let Some(&region_id) = self.regions.keys().next() {
            return Err(ScheduleError::AlreadyBootstrapped { region_id });
        }
        if let Some(reason) = malformation(&region) {
            return Err(ScheduleError::InvalidRegion { region_id: region.id, reason });
        }
        self.saw_ids_of(&region);
        self.ranges.insert(region.id, &region.start_key, &region.end_key);
        let info =
            RegionInfo { region, leader: None, pending_peers: Vec::new(), approximate_size: 0 };
        self.regions.insert(info.region.id, info);
        Ok(())
    }

    /// Whether `bootstrap` was called.
    pub fn is_bootstrapped(&self) -> bool {
        !self.regions.is_empty()
    }

    /// The region with id `region_id`, as last reported.
    pub fn region(&self, region_id: u64) -> Option<&Region> {
        self.regions.get(&region_id).map(|info| &info.region)
    }

    /// Everything known of a region: leader, pending peers, size.
    pub fn region_info(&self, region_id: u64) -> Option<&RegionInfo> {
        self.regions.get(&region_id)
    }

    /// The region whose range holds `key` (O(log n)).
    pub fn region_by_key(&self, key: &[u8]) -> Option<&Region> {
        self.ranges.find(key).map(|id| &self.regions[&id].region)
    }

    /// Every region, in key order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.ranges.region_ids().map(|id| &self.regions[&id].region)
    }

    /// The peer that sent the newest accepted heartbeat of the region.
    pub fn leader_of(&self, region_id: u64) -> Option<&Peer> {
        self.regions.get(&region_id)?.leader.as_ref()
    }

    /// A new id (for a peer): strictly increasing, above every id the
    /// scheduler was bootstrapped with or has seen.
    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = id.checked_add(1).expect("mock scheduler: ids exhausted");
        id
    }

    // ----- Heartbeats -----

    /// Handles a region heartbeat: checks it, ignores it if stale, records
    /// it, and answers with the region's pending operator unless the
    /// heartbeat shows it done. See the module docs.
    ///
    /// # Errors
    ///
    /// A [`Breach`] if no correct store could have sent it; the scheduler
    /// is unchanged then.
    pub fn on_region_heartbeat(
        &mut self,
        request: RegionHeartbeatRequest,
    ) -> Result<Option<RegionHeartbeatResponse>, Breach> {
        let RegionHeartbeatRequest { region, leader, pending_peers, approximate_size, .. } =
            request;
        let known = region.as_ref().and_then(|r| self.known_by_id(r.id));
        let verdict = self.check_heartbeat(region.as_ref(), leader).map_err(|kind| Breach {
            kind,
            region_id: region.as_ref().map_or(0, |r| r.id),
            known: known.cloned().map(Box::new),
            reported: region.clone().map(Box::new),
            leader,
        })?;
        let (Some(region), Some(leader)) = (region, leader) else {
            unreachable!("check_heartbeat accepts only a region with its leader")
        };
        match verdict {
            Verdict::Stale => {
                self.stale_heartbeats += 1;
                log::debug!("region {}: stale heartbeat ignored", region.id);
                Ok(None)
            }
            Verdict::Fresh { replaces } => {
                for stale in replaces {
                    self.forget_replaced(stale, &region);
                }
                let region_id = region.id;
                let info =
                    RegionInfo { region, leader: Some(leader), pending_peers, approximate_size };
                self.record(info);
                Ok(self.answer(region_id, leader))
            }
        }
    }

    // ----- Operators -----

    /// Asks for a new peer of `region_id` on `store_id` (with a freshly
    /// allocated peer id).
    ///
    /// # Errors
    ///
    /// The region or store is unknown, the store is not up or already has
    /// a peer of the region, or a conf change is in flight.
    pub fn add_peer(&mut self, region_id: u64, store_id: u64) -> Result<Scheduled, ScheduleError> {
        let region = self.schedulable(region_id)?;
        if let Some(peer) = peer_on_store(region, store_id) {
            return Err(ScheduleError::StoreHasPeer { region_id, store_id, peer_id: peer.id });
        }
        let store =
            &self.stores.get(&store_id).ok_or(ScheduleError::UnknownStore { store_id })?.store;
        if store.state() != StoreState::Up {
            return Err(ScheduleError::StoreNotUp { store_id, state: store.state() });
        }
        let peer = Peer { id: self.alloc_id(), store_id };
        Ok(self.schedule(region_id, Operator::AddPeer(peer)))
    }

    /// Asks for the removal of the peer of `region_id` on `store_id`
    /// ([`Scheduled::AlreadyDone`] if there is none).
    ///
    /// # Errors
    ///
    /// The region is unknown, the peer is its last, or a conf change is
    /// in flight.
    pub fn remove_peer(
        &mut self,
        region_id: u64,
        store_id: u64,
    ) -> Result<Scheduled, ScheduleError> {
        let region = self.schedulable(region_id)?;
        let Some(&peer) = peer_on_store(region, store_id) else {
            return Ok(self.done_at_once(region_id));
        };
        if region.peers.len() == 1 {
            return Err(ScheduleError::LastPeer { region_id, store_id, peer_id: peer.id });
        }
        Ok(self.schedule(region_id, Operator::RemovePeer(peer)))
    }

    /// Asks for the leadership of `region_id` to move to its peer on
    /// `store_id` ([`Scheduled::AlreadyDone`] if it leads already).
    ///
    /// # Errors
    ///
    /// The region is unknown, has no peer on that store, or a conf change
    /// is in flight.
    pub fn transfer_leader(
        &mut self,
        region_id: u64,
        store_id: u64,
    ) -> Result<Scheduled, ScheduleError> {
        let region = self.schedulable(region_id)?;
        let Some(&peer) = peer_on_store(region, store_id) else {
            return Err(ScheduleError::NoPeerOnStore { region_id, store_id });
        };
        if self.leader_of(region_id).is_some_and(|leader| leader.store_id == store_id) {
            return Ok(self.done_at_once(region_id));
        }
        Ok(self.schedule(region_id, Operator::TransferLeader(peer)))
    }

    /// The region's pending operator.
    pub fn operator(&self, region_id: u64) -> Option<&Operator> {
        self.operators.get(&region_id).map(|pending| &pending.operator)
    }

    /// The region's conf change in flight: sent, not seen done yet.
    pub fn in_flight(&self, region_id: u64) -> Option<&Operator> {
        let pending = self.operators.get(&region_id)?;
        pending.in_flight_since.is_some().then_some(&pending.operator)
    }

    /// How many operators were seen done (or were done when asked for).
    pub fn operators_done(&self) -> u64 {
        self.operators_done
    }

    /// Accepts (`true`) conf changes that no operator asked for, as long
    /// as none is in flight: for tests that propose `ChangePeer` commands
    /// to a leader themselves. Every other check stays on.
    pub fn allow_unscheduled_changes(&mut self, allowed: bool) {
        self.unscheduled_changes_allowed = allowed;
    }

    /// Answers an `AskSplit` (TinyKV's): a fresh id for the new region
    /// and one fresh peer id per peer of the request's region, all from
    /// [`alloc_id`](Self::alloc_id). Nothing else changes: the split
    /// becomes known through the heartbeats of its two halves.
    ///
    /// TinyKV's store asks before it proposes the split, so ids from an
    /// `AskSplit` whose split never applies (a lost response, a stale
    /// proposal) are simply never used. See the module docs for an
    /// example.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::MissingRegion`] if the request has no region;
    /// [`ScheduleError::UnknownRegion`] if its id is not known (including
    /// a region removed for overlap that has not reported again);
    /// [`ScheduleError::StaleEpoch`] if its epoch is older than the known
    /// one in either half (the split was planned on a stale view).
    pub fn ask_split(
        &mut self,
        request: AskSplitRequest,
    ) -> Result<AskSplitResponse, ScheduleError> {
        let region = request.region.ok_or(ScheduleError::MissingRegion)?;
        let known =
            self.region(region.id).ok_or(ScheduleError::UnknownRegion { region_id: region.id })?;
        if is_stale(epoch(&region), epoch(known)) {
            return Err(ScheduleError::StaleEpoch {
                region_id: region.id,
                reported: epoch(&region),
                known: epoch(known),
            });
        }
        let new_region_id = self.alloc_id();
        let new_peer_ids = region.peers.iter().map(|_| self.alloc_id()).collect();
        self.splits_asked += 1;
        Ok(AskSplitResponse { new_region_id, new_peer_ids, ..Default::default() })
    }

    /// How many `AskSplit`s were answered.
    pub fn splits_asked(&self) -> u64 {
        self.splits_asked
    }

    /// How many known regions were removed because the report of a
    /// region with a higher version (a split half) overlapped them.
    pub fn regions_replaced(&self) -> u64 {
        self.regions_replaced
    }

    /// The parts of the whole key space (`""` to unbounded) that no known
    /// region covers, in key order, each as `(start_key, end_key)` with an
    /// empty `end_key` for unbounded. Empty when the regions tile the key
    /// space, as they do once every region has reported since the last
    /// split; a gap is normal while the halves of a split have not both
    /// reported (see the module docs).
    pub fn gaps(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.ranges.gaps()
    }

    /// How many region heartbeats were ignored as stale: an epoch older
    /// than the known one, or a range overlapping a region with a higher
    /// version.
    pub fn stale_heartbeats(&self) -> u64 {
        self.stale_heartbeats
    }

    // ----- Internals -----

    /// The region, if it may take a new operator now.
    fn schedulable(&self, region_id: u64) -> Result<&Region, ScheduleError> {
        let info =
            self.regions.get(&region_id).ok_or(ScheduleError::UnknownRegion { region_id })?;
        if let Some(&in_flight) = self.in_flight(region_id) {
            return Err(ScheduleError::ChangeInFlight { region_id, in_flight });
        }
        Ok(&info.region)
    }

    /// Makes `operator` the region's pending one, replacing any other.
    fn schedule(&mut self, region_id: u64, operator: Operator) -> Scheduled {
        let pending = PendingOperator { operator, in_flight_since: None };
        if let Some(old) = self.operators.insert(region_id, pending) {
            log::debug!("region {region_id}: {operator} replaces {}", old.operator);
        } else {
            log::debug!("region {region_id}: {operator} is pending");
        }
        Scheduled::Pending(operator)
    }

    /// Drops the region's pending operator: the new request's target
    /// holds already.
    fn done_at_once(&mut self, region_id: u64) -> Scheduled {
        self.operators.remove(&region_id);
        self.operators_done += 1;
        Scheduled::AlreadyDone
    }

    /// Checks a heartbeat (see [`Breach`]): its form, (d), then whether it
    /// is stale, then (a), (b), (e) against the region known by its id
    /// and (c) against the others, which can also show it stale.
    fn check_heartbeat(
        &self,
        region: Option<&Region>,
        leader: Option<Peer>,
    ) -> Result<Verdict, BreachKind> {
        let reported = region.ok_or(BreachKind::Malformed("no region"))?;
        if let Some(what) = malformation(reported) {
            return Err(BreachKind::Malformed(what));
        }
        // (d), before the stale filter: a stale report was a true one.
        if !leader.is_some_and(|l| reported.peers.contains(&l)) {
            return Err(BreachKind::LeaderNotInRegion);
        }
        // (f), likewise.
        for peer in &reported.peers {
            match self.peer_regions.get(&peer.id) {
                Some(&first_region) if first_region != reported.id => {
                    return Err(BreachKind::PeerIdInTwoRegions { peer_id: peer.id, first_region });
                }
                _ => {}
            }
        }
        if let Some(known) = self.known_by_id(reported.id) {
            if is_stale(epoch(reported), epoch(known)) {
                return Ok(Verdict::Stale);
            }
            let in_flight = self.in_flight(reported.id);
            match check_against_known(known, in_flight, reported) {
                Err(BreachKind::UnscheduledConfChange { .. })
                    if self.unscheduled_changes_allowed && in_flight.is_none() => {}
                checked => checked?,
            }
        }
        self.check_overlaps(reported)
    }

    /// (c) under splits: the known regions other than `reported` that
    /// share a key with it, judged by version (see the module docs). The
    /// owners of a key over time have strictly increasing versions, so
    /// of two overlapping regions the lower version is the stale view,
    /// and the same version is a breach. A breach wins over staleness: it
    /// is one whatever else the report overlaps.
    fn check_overlaps(&self, reported: &Region) -> Result<Verdict, BreachKind> {
        let version = epoch(reported).version;
        let others: Vec<&Region> = self
            .ranges
            .overlapping(&reported.start_key, &reported.end_key)
            .into_iter()
            .filter(|&id| id != reported.id)
            .map(|id| &self.regions[&id].region)
            .collect();
        if let Some(twin) = others.iter().find(|other| epoch(other).version == version) {
            return Err(BreachKind::Overlap { other: Box::new((*twin).clone()) });
        }
        if let Some(newer) = others.iter().find(|other| epoch(other).version > version) {
            log::debug!(
                "region {} {} at version {version} overlaps region {} {} at version {}: the \
                 report is stale",
                reported.id,
                describe_range(&reported.start_key, &reported.end_key),
                newer.id,
                describe_range(&newer.start_key, &newer.end_key),
                epoch(newer).version
            );
            return Ok(Verdict::Stale);
        }
        Ok(Verdict::Fresh { replaces: others.iter().map(|other| other.id).collect() })
    }

    /// What is known of region `region_id` by its id: the known region,
    /// or, while it is removed for overlap, its last state before.
    fn known_by_id(&self, region_id: u64) -> Option<&Region> {
        self.region(region_id).or_else(|| self.replaced.get(&region_id))
    }

    /// Replaces what is known of a region by a checked, newer report.
    fn record(&mut self, info: RegionInfo) {
        self.saw_ids_of(&info.region);
        if self.replaced.remove(&info.region.id).is_some() {
            log::debug!("region {}: known again after its removal for overlap", info.region.id);
        }
        let new = &info.region;
        if let Some(old) = self.regions.get(&new.id).map(|i| &i.region) {
            if (&old.start_key, &old.end_key) == (&new.start_key, &new.end_key) {
                self.regions.insert(new.id, info);
                return;
            }
            self.ranges.remove(old.id, &old.start_key, &old.end_key);
        }
        self.ranges.insert(new.id, &new.start_key, &new.end_key);
        self.regions.insert(new.id, info);
        debug_assert_eq!(self.ranges.len(), self.regions.len(), "a region is indexed twice");
    }

    /// The response to a recorded heartbeat from `leader`: the pending
    /// operator, unless the heartbeat shows it done.
    fn answer(&mut self, region_id: u64, leader: Peer) -> Option<RegionHeartbeatResponse> {
        let region = &self.regions[&region_id].region;
        let pending = self.operators.get_mut(&region_id)?;
        let operator = pending.operator;
        if operator.is_done(region, &leader) {
            self.operators.remove(&region_id);
            self.operators_done += 1;
            log::debug!("region {region_id}: {operator} is done");
            return None;
        }
        let known = epoch(region);
        match pending.in_flight_since {
            Some(since) => assert_eq!(
                since.conf_ver, known.conf_ver,
                "mock scheduler: region {region_id}: conf_ver moved while {operator} was in flight"
            ),
            None if operator.is_conf_change() => pending.in_flight_since = Some(known),
            None => {}
        }
        let mut response = RegionHeartbeatResponse {
            region_id,
            region_epoch: Some(known),
            target_peer: Some(leader),
            ..Default::default()
        };
        operator.fill(&mut response);
        Some(response)
    }

    /// Removes region `region_id`, overlapped by `by` at a higher version:
    /// its known state is a view from before a split that it has not
    /// reported yet. Its last state goes to `replaced` and its pending
    /// operator stays: the region reports again under its id with its
    /// shrunk range, and a conf change in flight in its log still applies
    /// to it. Until then, part of its old range may be a gap.
    fn forget_replaced(&mut self, region_id: u64, by: &Region) {
        let info = self.regions.remove(&region_id).unwrap_or_else(|| {
            panic!(
                "mock scheduler: region {region_id}, overlapped by region {}, is not known",
                by.id
            )
        });
        let old = info.region;
        self.ranges.remove(old.id, &old.start_key, &old.end_key);
        self.regions_replaced += 1;
        log::debug!(
            "region {region_id} {} at version {} is removed: region {} {} at version {} overlaps \
             it",
            describe_range(&old.start_key, &old.end_key),
            epoch(&old).version,
            by.id,
            describe_range(&by.start_key, &by.end_key),
            epoch(by).version
        );
        let was_replaced = self.replaced.insert(region_id, old);
        assert!(was_replaced.is_none(), "mock scheduler: region {region_id} removed twice");
    }

    fn saw_ids_of(&mut self, region: &Region) {
        self.saw_id(region.id);
        for peer in &region.peers {
            self.saw_id(peer.id);
            self.peer_regions.entry(peer.id).or_insert(region.id);
        }
    }

    fn saw_id(&mut self, id: u64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }
}

/// What to do with a heartbeat that passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Older than what is known (by id, or than a region it overlaps, by
    /// version): ignore it.
    Stale,
    /// As new as or newer than what is known: record it, after removing
    /// the regions of lower versions it overlaps (`replaces`).
    Fresh {
        /// Known regions that the report shows stale, in key order.
        replaces: Vec<u64>,
    },
}

/// Checks a report that is not stale against the known region: (a), (b)
/// and (e) of [`Breach`].
fn check_against_known(
    known: &Region,
    in_flight: Option<&Operator>,
    reported: &Region,
) -> Result<(), BreachKind> {
    let (was, now) = (epoch(known), epoch(reported));
    let (peers_before, peers_now) = (peer_set(known), peer_set(reported));
    let same_peers = peers_before == peers_now;
    let same_range = (&known.start_key, &known.end_key) == (&reported.start_key, &reported.end_key);
    if (was.conf_ver, was.version) == (now.conf_ver, now.version) {
        return if same_peers && same_range {
            Ok(())
        } else {
            Err(BreachKind::SameEpochDifferentRegion)
        };
    }
    let conf_ver_rose = now.conf_ver > was.conf_ver;
    if conf_ver_rose && same_peers {
        return Err(BreachKind::ConfVerWithoutPeerChange);
    }
    if !conf_ver_rose && !same_peers {
        return Err(BreachKind::PeersChangedWithoutConfVer);
    }
    if now.version == was.version && !same_range {
        return Err(BreachKind::RangeChangedWithoutVersion);
    }
    if conf_ver_rose {
        let expected = in_flight.map(|op| op.applied_to(&peers_before));
        if now.conf_ver != was.conf_ver + 1 || expected.as_ref() != Some(&peers_now) {
            return Err(BreachKind::UnscheduledConfChange { in_flight: in_flight.copied() });
        }
    }
    Ok(())
}

/// What makes `region` something no store could hold, if anything.
fn malformation(region: &Region) -> Option<&'static str> {
    if region.region_epoch.is_none() {
        return Some("no region epoch");
    }
    if !region.end_key.is_empty() && region.start_key >= region.end_key {
        return Some("an empty or inverted range");
    }
    if region.peers.is_empty() {
        return Some("no peers");
    }
    let ids: BTreeSet<u64> = region.peers.iter().map(|p| p.id).collect();
    let stores: BTreeSet<u64> = region.peers.iter().map(|p| p.store_id).collect();
    if ids.len() != region.peers.len() || stores.len() != region.peers.len() {
        return Some("two peers share an id or a store");
    }
    None
}

/// Whether a report at `reported` is older than the known `known`: lower
/// in either half.
fn is_stale(reported: RegionEpoch, known: RegionEpoch) -> bool {
    reported.version < known.version || reported.conf_ver < known.conf_ver
}

fn epoch(region: &Region) -> RegionEpoch {
    region.region_epoch.unwrap_or_default()
}

fn peer_set(region: &Region) -> BTreeSet<(u64, u64)> {
    region.peers.iter().map(|p| (p.id, p.store_id)).collect()
}

fn peer_on_store(region: &Region, store_id: u64) -> Option<&Peer> {
    region.peers.iter().find(|p| p.store_id == store_id)
}

fn describe_epoch(epoch: RegionEpoch) -> String {
    format!("epoch (conf_ver {}, version {})", epoch.conf_ver, epoch.version)
}

/// `epoch (conf_ver 2, version 1), peers [1 on store 1], range ["", +inf)`.
fn describe_region(region: &Region) -> String {
    let epoch = match region.region_epoch {
        Some(epoch) => describe_epoch(epoch),
        None => "no epoch".to_string(),
    };
    let peers: Vec<String> =
        region.peers.iter().map(|p| format!("{} on store {}", p.id, p.store_id)).collect();
    format!(
        "{epoch}, peers [{}], range {}",
        peers.join(", "),
        describe_range(&region.start_key, &region.end_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(conf_ver: u64, version: u64, peers: &[(u64, u64)]) -> Region {
        Region {
            id: 1,
            region_epoch: Some(RegionEpoch { conf_ver, version }),
            peers: peers.iter().map(|&(id, store_id)| Peer { id, store_id }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn staleness_is_either_half_lower() {
        let e = |conf_ver, version| RegionEpoch { conf_ver, version };
        assert!(!is_stale(e(2, 2), e(2, 2)));
        assert!(!is_stale(e(3, 2), e(2, 2)));
        assert!(!is_stale(e(2, 3), e(2, 2)));
        assert!(is_stale(e(1, 2), e(2, 2)));
        assert!(is_stale(e(2, 1), e(2, 2)));
        assert!(is_stale(e(3, 1), e(2, 2)));
    }

    #[test]
    fn a_conf_change_must_be_the_one_in_flight() {
        let known = region(1, 1, &[(1, 1), (2, 2)]);
        let add = Operator::AddPeer(Peer { id: 9, store_id: 3 });
        let added = region(2, 1, &[(1, 1), (2, 2), (9, 3)]);
        assert_eq!(check_against_known(&known, Some(&add), &added), Ok(()));
        // Nothing in flight, or another change, or one bump too many.
        let unscheduled = |in_flight| Err(BreachKind::UnscheduledConfChange { in_flight });
        assert_eq!(check_against_known(&known, None, &added), unscheduled(None));
        let remove = Operator::RemovePeer(Peer { id: 2, store_id: 2 });
        assert_eq!(check_against_known(&known, Some(&remove), &added), unscheduled(Some(remove)));
        let twice = region(3, 1, &[(1, 1), (2, 2), (9, 3)]);
        assert_eq!(check_against_known(&known, Some(&add), &twice), unscheduled(Some(add)));
    }

    #[test]
    fn a_peer_id_of_another_region_is_a_breach() {
        let mut scheduler = MockScheduler::new();
        for id in 1..=2 {
            scheduler.put_store(Store { id, ..Default::default() });
        }
        let parent = region(1, 1, &[(3, 1), (4, 2)]);
        scheduler.bootstrap(parent).unwrap();
        // A split whose new region reuses the parent's peer ids.
        let mut child = region(1, 2, &[(3, 1), (4, 2)]);
        child.id = 9;
        child.start_key = b"m".to_vec();
        let leader = child.peers[0];
        let report = RegionHeartbeatRequest {
            region: Some(child.clone()),
            leader: Some(leader),
            ..Default::default()
        };
        let breach = scheduler.on_region_heartbeat(report).unwrap_err();
        assert_eq!(breach.kind, BreachKind::PeerIdInTwoRegions { peer_id: 3, first_region: 1 });
        assert!(breach.to_string().contains("peer 3, first seen in region 1"), "{breach}");
        // With fresh ids it is fine.
        child.peers = vec![Peer { id: 7, store_id: 1 }, Peer { id: 8, store_id: 2 }];
        let report = RegionHeartbeatRequest {
            leader: Some(child.peers[0]),
            region: Some(child),
            ..Default::default()
        };
        assert!(scheduler.on_region_heartbeat(report).is_ok());
    }

    #[test]
    fn malformed_regions_are_named() {
        let mut no_epoch = region(1, 1, &[(1, 1)]);
        no_epoch.region_epoch = None;
        assert_eq!(malformation(&no_epoch), Some("no region epoch"));
        assert_eq!(malformation(&region(1, 1, &[])), Some("no peers"));
        let shared = Some("two peers share an id or a store");
        assert_eq!(malformation(&region(1, 1, &[(1, 1), (2, 1)])), shared);
        assert_eq!(malformation(&region(1, 1, &[(1, 1), (1, 2)])), shared);
        let mut inverted = region(1, 1, &[(1, 1)]);
        (inverted.start_key, inverted.end_key) = (b"b".to_vec(), b"a".to_vec());
        assert_eq!(malformation(&inverted), Some("an empty or inverted range"));
        assert_eq!(malformation(&region(1, 1, &[(1, 1)])), None);
    }

    #[test]
    fn operators_describe_themselves() {
        let peer = Peer { id: 7, store_id: 4 };
        assert_eq!(Operator::AddPeer(peer).to_string(), "add peer 7 on store 4");
        assert_eq!(
            Operator::TransferLeader(peer).to_string(),
            "transfer the leadership to peer 7 on store 4"
        );
        let mut response = RegionHeartbeatResponse::default();
        Operator::RemovePeer(peer).fill(&mut response);
        let change = response.change_peer.unwrap();
        assert_eq!((change.peer, change.change_type()), (Some(peer), ConfChangeType::RemoveNode));
    }

    // ----- Splits -----

    /// Region `id` over `[start, end)` at (conf_ver, version), with peers
    /// as (peer id, store id).
    fn region_at(
        id: u64,
        (start, end): (&str, &str),
        (conf_ver, version): (u64, u64),
        peers: &[(u64, u64)],
    ) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            ..region(conf_ver, version, peers)
        }
    }

    /// A heartbeat of `region` from its first peer.
    fn beat(region: &Region) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            leader: Some(region.peers[0]),
            region: Some(region.clone()),
            ..Default::default()
        }
    }

    /// Stores 1 to 3; region 1 over the whole key space at (1, 1), with
    /// peer 10 on store 1 and peer 20 on store 2.
    fn bootstrapped() -> MockScheduler {
        let mut scheduler = MockScheduler::new();
        for id in 1..=3 {
            scheduler.put_store(Store { id, ..Default::default() });
        }
        scheduler.bootstrap(region_at(1, ("", ""), (1, 1), &[(10, 1), (20, 2)])).unwrap();
        scheduler
    }

    /// Delivers a heartbeat no correct store could be refused for.
    fn accept(scheduler: &mut MockScheduler, region: &Region) -> Option<RegionHeartbeatResponse> {
        scheduler
            .on_region_heartbeat(beat(region))
            .unwrap_or_else(|breach| panic!("a correct report was refused: {breach}"))
    }

    fn ask(
        scheduler: &mut MockScheduler,
        region: &Region,
    ) -> Result<AskSplitResponse, ScheduleError> {
        scheduler.ask_split(AskSplitRequest { region: Some(region.clone()), ..Default::default() })
    }

    /// Splits `parent` at `key` as a correct store does, with ids from
    /// `ask_split`: (the parent shrunk, the new region), both at version
    /// + 1.
    fn split(scheduler: &mut MockScheduler, parent: &Region, key: &str) -> (Region, Region) {
        let ids = ask(scheduler, parent).unwrap();
        let mut left = parent.clone();
        left.end_key = key.as_bytes().to_vec();
        left.region_epoch.as_mut().unwrap().version += 1;
        let right = Region {
            id: ids.new_region_id,
            start_key: key.as_bytes().to_vec(),
            end_key: parent.end_key.clone(),
            region_epoch: left.region_epoch,
            peers: parent
                .peers
                .iter()
                .zip(&ids.new_peer_ids)
                .map(|(peer, &id)| Peer { id, store_id: peer.store_id })
                .collect(),
        };
        (left, right)
    }

    fn keys(gaps: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        gaps.iter().map(|(s, e)| (s.as_bytes().to_vec(), e.as_bytes().to_vec())).collect()
    }

    /// The known regions' ids in key order.
    fn ids(scheduler: &MockScheduler) -> Vec<u64> {
        scheduler.regions().map(|r| r.id).collect()
    }

    #[test]
    fn ask_split_allocates_fresh_ids_above_every_id_seen() {
        let mut scheduler = bootstrapped();
        let before = scheduler.clone();
        let parent = scheduler.region(1).unwrap().clone();
        let first = ask(&mut scheduler, &parent).unwrap();
        let second = ask(&mut scheduler, &parent).unwrap();
        assert_eq!(first.new_peer_ids.len(), 2, "one new peer id per peer of the region");
        assert_eq!(second.new_peer_ids.len(), 2, "one new peer id per peer of the region");
        let mut all = vec![first.new_region_id, second.new_region_id];
        all.extend(first.new_peer_ids.iter().chain(&second.new_peer_ids));
        assert!(all.iter().all(|&id| id > 20), "ids must be above every id seen (20): {all:?}");
        let unique: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "ids must never repeat: {all:?}");
        assert!(scheduler.alloc_id() > *unique.last().unwrap(), "alloc_id must not reuse them");
        assert_eq!(scheduler.splits_asked(), 2);
        // Nothing but the ids and the count: the split is not known yet.
        assert_eq!(scheduler.region(1), before.region(1));
        assert_eq!(ids(&scheduler), vec![1]);
        assert!(scheduler.gaps().is_empty());
    }

    #[test]
    fn ask_split_refuses_a_missing_or_unknown_region_or_a_stale_epoch() {
        let mut scheduler = MockScheduler::new();
        scheduler.bootstrap(region_at(1, ("", ""), (2, 2), &[(10, 1)])).unwrap();
        let refused = scheduler.clone();
        assert_eq!(
            scheduler.ask_split(AskSplitRequest::default()),
            Err(ScheduleError::MissingRegion)
        );
        let unknown = region_at(9, ("", ""), (2, 2), &[(10, 1)]);
        assert_eq!(
            ask(&mut scheduler, &unknown),
            Err(ScheduleError::UnknownRegion { region_id: 9 })
        );
        let e = |conf_ver, version| RegionEpoch { conf_ver, version };
        for stale in [e(1, 2), e(2, 1), e(1, 3)] {
            let request = region_at(1, ("", ""), (stale.conf_ver, stale.version), &[(10, 1)]);
            let error = ask(&mut scheduler, &request).unwrap_err();
            assert_eq!(
                error,
                ScheduleError::StaleEpoch { region_id: 1, reported: stale, known: e(2, 2) }
            );
            assert!(
                error.to_string().starts_with("region 1 is at epoch (conf_ver 2, version 2)"),
                "the error names the region and the epochs: {error}"
            );
        }
        assert_eq!(scheduler, refused, "a refused AskSplit changes nothing");
        // The same epoch, or a newer one (the scheduler lags), is fine.
        for fresh in [(2, 2), (3, 2), (2, 3)] {
            ask(&mut scheduler, &region_at(1, ("", ""), fresh, &[(10, 1)])).unwrap();
        }
        assert_eq!(scheduler.splits_asked(), 3);
    }

    #[test]
    fn split_halves_reporting_left_first_shrink_the_parent_then_fill_the_rest() {
        let mut scheduler = bootstrapped();
        let parent = scheduler.region(1).unwrap().clone();
        let (left, right) = split(&mut scheduler, &parent, "m");
        assert_eq!(accept(&mut scheduler, &left), None);
        assert_eq!(scheduler.region(1), Some(&left), "the parent shrinks to its new range");
        assert_eq!(scheduler.gaps(), keys(&[("m", "")]), "the new region has not reported");
        assert_eq!(scheduler.region_by_key(b"z"), None);
        assert_eq!(accept(&mut scheduler, &right), None);
        assert_eq!(ids(&scheduler), vec![1, right.id]);
        assert!(scheduler.gaps().is_empty(), "the halves tile the key space");
        assert_eq!(scheduler.region_by_key(b"m"), Some(&right));
        assert_eq!(scheduler.regions_replaced(), 0, "nothing was overlapped");
    }

    #[test]
    fn split_halves_reporting_right_first_remove_the_parent_until_it_reports() {
        let mut scheduler = bootstrapped();
        let parent = scheduler.region(1).unwrap().clone();
        let (left, right) = split(&mut scheduler, &parent, "m");
        assert_eq!(accept(&mut scheduler, &right), None);
        assert_eq!(scheduler.region(1), None, "the parent's old view is stale: removed");
        assert_eq!(scheduler.regions_replaced(), 1);
        assert_eq!(ids(&scheduler), vec![right.id]);
        assert_eq!(scheduler.gaps(), keys(&[("", "m")]), "the parent's left part is nobody's");
        assert_eq!(
            scheduler.add_peer(1, 3),
            Err(ScheduleError::UnknownRegion { region_id: 1 }),
            "a removed region takes no operator"
        );
        assert_eq!(accept(&mut scheduler, &left), None);
        assert_eq!(scheduler.region(1), Some(&left), "the parent is known again");
        assert_eq!(ids(&scheduler), vec![1, right.id]);
        assert!(scheduler.gaps().is_empty(), "the halves tile the key space");
        assert_eq!(scheduler.regions_replaced(), 1);
    }

    #[test]
    fn a_parent_report_from_before_the_split_is_ignored_and_counted() {
        for right_first in [false, true] {
            let mut scheduler = bootstrapped();
            let parent = scheduler.region(1).unwrap().clone();
            let (left, right) = split(&mut scheduler, &parent, "m");
            let halves = if right_first { [&right, &left] } else { [&left, &right] };
            // One half known. Left first: the old report is stale by its
            // id. Right first: the parent is removed, and the report is
            // stale because the right half it overlaps has a higher version.
            accept(&mut scheduler, halves[0]);
            let before = scheduler.clone();
            assert_eq!(accept(&mut scheduler, &parent), None);
            assert_eq!(scheduler.stale_heartbeats(), 1, "right first: {right_first}");
            assert_eq!(
                scheduler.regions().collect::<Vec<_>>(),
                before.regions().collect::<Vec<_>>()
            );
            assert_eq!(scheduler.gaps(), before.gaps());
            // Once both halves are known, the parent is stale by its id.
            accept(&mut scheduler, halves[1]);
            let before = scheduler.clone();
            assert_eq!(accept(&mut scheduler, &parent), None);
            assert_eq!(scheduler.stale_heartbeats(), 2, "right first: {right_first}");
            assert_eq!(scheduler.region(1), Some(&left), "right first: {right_first}");
            assert_eq!(ids(&scheduler), vec![1, right.id]);
            assert_eq!(scheduler.regions_replaced(), before.regions_replaced());
        }
    }

    #[test]
    fn two_regions_overlapping_at_the_same_version_is_a_breach_naming_both() {
        let mut scheduler = bootstrapped();
        let parent = scheduler.region(1).unwrap().clone();
        let (left, right) = split(&mut scheduler, &parent, "m");
        accept(&mut scheduler, &left);
        accept(&mut scheduler, &right);
        let before = scheduler.clone();
        let intruder = region_at(99, ("k", "p"), (1, 2), &[(98, 3)]);
        let breach = scheduler.on_region_heartbeat(beat(&intruder)).unwrap_err();
        assert!(
            matches!(&breach.kind, BreachKind::Overlap { other } if other.id == 1),
            "expected an overlap with region 1 (first in key order), got {breach}"
        );
        let message = breach.to_string();
        for part in ["region 99:", "at the same version", "overlaps region 1:"] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
        assert_eq!(scheduler, before, "a breach changes nothing");

        // A same-version overlap is a breach even where the report also
        // overlaps a newer region (which alone would make it stale).
        let (left2, middle) = split(&mut scheduler, &left, "f");
        accept(&mut scheduler, &left2);
        accept(&mut scheduler, &middle);
        let intruder = region_at(99, ("h", "p"), (1, 2), &[(98, 3)]);
        let breach = scheduler.on_region_heartbeat(beat(&intruder)).unwrap_err();
        assert!(
            matches!(&breach.kind, BreachKind::Overlap { other } if other.id == right.id),
            "expected an overlap with region {} (version 2), got {breach}",
            right.id
        );
    }

    #[test]
    fn a_conf_change_in_flight_on_the_parent_survives_its_removal() {
        let mut scheduler = bootstrapped();
        let Ok(Scheduled::Pending(add)) = scheduler.add_peer(1, 3) else { unreachable!() };
        let parent = scheduler.region(1).unwrap().clone();
        assert!(accept(&mut scheduler, &parent).is_some(), "the add is sent");
        assert_eq!(scheduler.in_flight(1), Some(&add));

        // The split applies before the add; the right half reports first.
        let (left, right) = split(&mut scheduler, &parent, "m");
        accept(&mut scheduler, &right);
        assert_eq!(scheduler.region(1), None);
        assert_eq!(scheduler.in_flight(1), Some(&add), "the removal must keep the operator");
        assert_eq!(scheduler.add_peer(1, 3), Err(ScheduleError::UnknownRegion { region_id: 1 }));

        // Check (e) still holds the parent to the change in flight.
        let mut other_change = left.clone();
        other_change.region_epoch = Some(RegionEpoch { conf_ver: 2, version: 2 });
        other_change.peers.push(Peer { id: 77, store_id: 3 });
        let breach = scheduler.clone().on_region_heartbeat(beat(&other_change)).unwrap_err();
        assert_eq!(breach.kind, BreachKind::UnscheduledConfChange { in_flight: Some(add) });
        assert_eq!(breach.known.as_deref(), Some(&parent), "the breach names the last known state");

        // Not applied yet: sent again, with the parent's new epoch.
        let response = accept(&mut scheduler, &left).expect("the add is sent again");
        assert_eq!(response.region_epoch, left.region_epoch);
        assert_eq!(response.change_peer.unwrap().peer, Some(add.peer()));

        // Applied: done.
        let mut applied = left.clone();
        applied.region_epoch = Some(RegionEpoch { conf_ver: 2, version: 2 });
        applied.peers.push(add.peer());
        assert_eq!(accept(&mut scheduler, &applied), None);
        assert_eq!(scheduler.operators_done(), 1);
        assert_eq!(scheduler.operator(1), None);
        assert!(scheduler.gaps().is_empty());
    }

    #[test]
    fn a_change_applied_before_the_parent_reports_again_is_seen_done() {
        let mut scheduler = bootstrapped();
        let Ok(Scheduled::Pending(add)) = scheduler.add_peer(1, 3) else { unreachable!() };
        let parent = scheduler.region(1).unwrap().clone();
        accept(&mut scheduler, &parent);
        let (left, right) = split(&mut scheduler, &parent, "m");
        accept(&mut scheduler, &right);
        let mut applied = left.clone();
        applied.region_epoch = Some(RegionEpoch { conf_ver: 2, version: 2 });
        applied.peers.push(add.peer());
        assert_eq!(accept(&mut scheduler, &applied), None);
        assert_eq!(scheduler.operators_done(), 1, "the report shows the add done");
        assert_eq!(scheduler.in_flight(1), None);
        assert!(matches!(scheduler.remove_peer(1, 3), Ok(Scheduled::Pending(_))));
    }

    #[test]
    fn gaps_list_every_uncovered_part_in_key_order() {
        let mut scheduler = MockScheduler::new();
        assert_eq!(scheduler.gaps(), keys(&[("", "")]), "nothing known: all of it");
        scheduler.bootstrap(region_at(1, ("", ""), (1, 1), &[(10, 1)])).unwrap();
        assert!(scheduler.gaps().is_empty());
        // Three splits, each reported right half first: ["", "f") and
        // ["m", "t") lose their owners; ["f", "m") and ["t", "") are known.
        let parent = scheduler.region(1).unwrap().clone();
        let (left, right) = split(&mut scheduler, &parent, "m");
        accept(&mut scheduler, &left);
        accept(&mut scheduler, &right);
        let (left2, middle) = split(&mut scheduler, &left, "f");
        accept(&mut scheduler, &middle);
        let (right2, last) = split(&mut scheduler, &right, "t");
        accept(&mut scheduler, &last);
        assert_eq!(scheduler.gaps(), keys(&[("", "f"), ("m", "t")]));
        accept(&mut scheduler, &right2);
        assert_eq!(scheduler.gaps(), keys(&[("", "f")]));
        accept(&mut scheduler, &left2);
        assert!(scheduler.gaps().is_empty());
        assert_eq!(ids(&scheduler), vec![1, middle.id, right.id, last.id]);
    }

    #[test]
    fn several_splits_in_a_row_stay_non_overlapping() {
        let mut scheduler = bootstrapped();
        let mut right_first_count = 0;
        for (step, key) in ["m", "f", "t", "c", "p", "h", "w", "a"].into_iter().enumerate() {
            let owner = scheduler.region_by_key(key.as_bytes()).unwrap().clone();
            let (left, right) = split(&mut scheduler, &owner, key);
            let right_first = step % 3 != 0;
            right_first_count += u64::from(right_first);
            let halves = if right_first { [&right, &left] } else { [&left, &right] };
            for half in halves {
                accept(&mut scheduler, half);
                // Regions and gaps together tile the key space: in key
                // order, each starts where the one before ends.
                let mut pieces: Vec<(Vec<u8>, Vec<u8>)> = scheduler
                    .regions()
                    .map(|r| (r.start_key.clone(), r.end_key.clone()))
                    .chain(scheduler.gaps())
                    .collect();
                pieces.sort();
                let mut at = Vec::new();
                for (start, end) in &pieces {
                    assert_eq!(start, &at, "step {step} at {key:?}: overlap or hole in {pieces:?}");
                    at = end.clone();
                }
                assert!(at.is_empty(), "step {step}: the last piece is unbounded: {pieces:?}");
            }
            assert!(scheduler.gaps().is_empty(), "step {step}: both halves reported");
        }
        assert_eq!(scheduler.regions().count(), 9);
        assert_eq!(scheduler.splits_asked(), 8);
        assert_eq!(scheduler.regions_replaced(), right_first_count);
        let starts: Vec<&[u8]> = scheduler.regions().map(|r| r.start_key.as_slice()).collect();
        let expected: Vec<&[u8]> = vec![b"", b"a", b"c", b"f", b"h", b"m", b"p", b"t", b"w"];
        assert_eq!(starts, expected);
        let versions: BTreeSet<u64> = scheduler.regions().map(|r| epoch(r).version).collect();
        assert!(versions.iter().all(|&v| v > 1), "every region was split: {versions:?}");
    }
}
