//! Operators: what the scheduler asks a region to do (given code, lab 3c).
//!
//! An [`Operator`] is a short plan for one region, made of steps: add a
//! peer, remove a peer, transfer the leadership, or (asked for by hand
//! only) split at a key. Moving a peer from one
//! store to another is two steps, add the new one and then remove the old
//! one ([`Operator::move_peer`]), so the region never has fewer replicas
//! than it started with.
//!
//! The scheduler cannot command a store; it can only answer a region
//! heartbeat. So [`OperatorController::dispatch`] looks at every
//! heartbeat of a region with an operator: it skips the steps the
//! heartbeat shows done, and answers with the current step, carrying the
//! epoch of that very heartbeat (except for a peer that is added and
//! still catching up: it gets time, not another copy of its conf
//! change). The store proposes the step with that epoch, so a repeated or
//! late answer cannot apply twice: once the step applies, `conf_ver` has
//! moved on and every copy is refused as stale.
//! An operator ends when its last step is done, when the region's range
//! changes under it (a split it did not ask for: its plan was for the old
//! region), or when it times out.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{Peer, RegionEpoch};
use tinykv_proto::schedulerpb::{
    ChangePeer, OperatorStatus, RegionHeartbeatResponse, SplitRegion, TransferLeader,
};

use crate::core::RegionInfo;

/// One step of an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpStep {
    /// Add this peer (a freshly allocated id). Done when the region has
    /// it and it no longer lags behind (it has its snapshot).
    AddPeer(Peer),
    /// Remove the region's peer on this store. Done when the store has
    /// no peer of the region.
    RemovePeer {
        /// The store that loses its peer.
        store_id: u64,
    },
    /// Move the leadership to the region's peer on this store. Done when
    /// a heartbeat comes from a leader there.
    TransferLeader {
        /// The store that should lead.
        to_store: u64,
    },
    /// Split the region at `key` (strictly inside it). Done when the
    /// region (which keeps its id for the left half) ends at `key`.
    Split {
        /// The new region's start key.
        key: Vec<u8>,
    },
}

impl OpStep {
    /// Whether `region` shows the step done.
    pub fn is_done(&self, region: &RegionInfo) -> bool {
        match *self {
            OpStep::Split { ref key } => region.region.end_key == *key,
            OpStep::AddPeer(peer) => {
                region.region.peers.contains(&peer) && !region.pending_peers.contains(&peer)
            }
            OpStep::RemovePeer { store_id } => region.peer_on_store(store_id).is_none(),
            OpStep::TransferLeader { to_store } => region.leader_store_id() == to_store,
        }
    }

    /// The answer that asks `region`'s leader to take this step (`None`:
    /// the step cannot be asked of this region, e.g. a transfer to a store
    /// without a peer).
    pub fn response(&self, region: &RegionInfo) -> Option<RegionHeartbeatResponse> {
        let mut response = RegionHeartbeatResponse {
            region_id: region.id(),
            region_epoch: Some(region.epoch()),
            target_peer: region.leader,
            ..Default::default()
        };
        let change = |change_type: ConfChangeType, peer: Peer| ChangePeer {
            peer: Some(peer),
            change_type: change_type as i32,
        };
        match *self {
            OpStep::AddPeer(peer) => {
                response.change_peer = Some(change(ConfChangeType::AddNode, peer));
            }
            OpStep::RemovePeer { store_id } => {
                let peer = region.peer_on_store(store_id)?;
                response.change_peer = Some(change(ConfChangeType::RemoveNode, peer));
            }
            OpStep::TransferLeader { to_store } => {
                let peer = region.peer_on_store(to_store)?;
                response.transfer_leader = Some(TransferLeader { peer: Some(peer) });
            }
            OpStep::Split { ref key } => {
                if !region.contains_inside(key) {
                    return None;
                }
                response.split_region = Some(SplitRegion { split_key: key.clone() });
            }
        }
        Some(response)
    }
}

impl fmt::Display for OpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpStep::AddPeer(peer) => write!(f, "add peer {} on store {}", peer.id, peer.store_id),
            OpStep::RemovePeer { store_id } => write!(f, "remove the peer on store {store_id}"),
            OpStep::TransferLeader { to_store } => write!(f, "transfer leader to store {to_store}"),
            OpStep::Split { key } => write!(f, "split at \"{}\"", key.escape_ascii()),
        }
    }
}

/// Who made an operator; also its priority (higher replaces lower).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    /// The balance-leader scheduler.
    BalanceLeader,
    /// The balance-region scheduler.
    BalanceRegion,
    /// The replica checker (a region lacks replicas or has a dead one).
    Replica,
    /// An operator asked for by hand (`tinykv-ctl cluster ...`).
    Admin,
}

impl OpKind {
    /// Its name in logs and in `tinykv-ctl cluster operators`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::BalanceLeader => "balance-leader",
            OpKind::BalanceRegion => "balance-region",
            OpKind::Replica => "replica",
            OpKind::Admin => "admin",
        }
    }
}

/// How an operator ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// Every step is done.
    Finished,
    /// It ran longer than its timeout.
    TimedOut,
    /// The region's range changed under it, or the region is gone.
    Cancelled,
    /// A more urgent operator took its place.
    Replaced,
}

impl OpOutcome {
    /// The protocol's name for it.
    pub fn status(self) -> OperatorStatus {
        match self {
            OpOutcome::Finished => OperatorStatus::Success,
            OpOutcome::TimedOut => OperatorStatus::Timeout,
            OpOutcome::Cancelled => OperatorStatus::Cancel,
            OpOutcome::Replaced => OperatorStatus::Replace,
        }
    }
}

/// A plan for one region. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Operator {
    /// What it is for, e.g. `"balance-region"` or `"add-replica"`.
    pub desc: &'static str,
    /// Who made it.
    pub kind: OpKind,
    /// The region.
    pub region_id: u64,
    /// The region's epoch when the plan was made. The plan is cancelled if
    /// the region's `version` moves past it (its range changed).
    pub region_epoch: RegionEpoch,
    /// The steps, in order.
    pub steps: Vec<OpStep>,
    /// The first step not seen done yet. Invariant: `<= steps.len()`.
    pub current: usize,
    /// When it was made (ms, the scheduler's clock).
    pub created_ms: u64,
}

impl Operator {
    /// An operator of `steps` for `region`, made at `now_ms`.
    pub fn new(
        desc: &'static str,
        kind: OpKind,
        region: &RegionInfo,
        steps: Vec<OpStep>,
        now_ms: u64,
    ) -> Operator {
        Operator {
            desc,
            kind,
            region_id: region.id(),
            region_epoch: region.epoch(),
            steps,
            current: 0,
            created_ms: now_ms,
        }
    }

    /// Moves `region`'s peer from `from_store` to `new_peer` (a fresh
    /// peer id on another store): add the new peer, then remove the old
    /// one. (A leader asked to remove itself hands its leadership over
    /// first, in the store.)
    pub fn move_peer(
        desc: &'static str,
        kind: OpKind,
        region: &RegionInfo,
        from_store: u64,
        new_peer: Peer,
        now_ms: u64,
    ) -> Operator {
        let steps = vec![OpStep::AddPeer(new_peer), OpStep::RemovePeer { store_id: from_store }];
        Operator::new(desc, kind, region, steps, now_ms)
    }

    /// Moves `region`'s leadership to its peer on `to_store`.
    pub fn transfer_leader(
        desc: &'static str,
        kind: OpKind,
        region: &RegionInfo,
        to_store: u64,
        now_ms: u64,
    ) -> Operator {
        Operator::new(desc, kind, region, vec![OpStep::TransferLeader { to_store }], now_ms)
    }

    /// The step it waits for (`None` once every step is done).
    pub fn current_step(&self) -> Option<&OpStep> {
        self.steps.get(self.current)
    }

    /// Whether it changes the region's peers (and not only its leader or
    /// its range).
    pub fn changes_peers(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, OpStep::AddPeer(_) | OpStep::RemovePeer { .. }))
    }

    /// Whether a step of it is a split (which changes the version on
    /// purpose).
    fn splits(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, OpStep::Split { .. }))
    }

    /// Skips the steps that `region` shows done; returns whether every
    /// step is done.
    fn advance(&mut self, region: &RegionInfo) -> bool {
        while let Some(step) = self.steps.get(self.current) {
            if !step.is_done(region) {
                return false;
            }
            self.current += 1;
        }
        true
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) on region {}: ", self.desc, self.kind.name(), self.region_id)?;
        for (i, step) in self.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", then " };
            let mark = if i < self.current { " (done)" } else { "" };
            write!(f, "{sep}{step}{mark}")?;
        }
        Ok(())
    }
}

/// Whether `op` has run longer than `timeout_ms` at `now_ms`, or than
/// `leader_timeout_ms` if all it does is transfer the leadership.
fn timed_out(op: &Operator, now_ms: u64, timeout_ms: u64, leader_timeout_ms: u64) -> bool {
    let leader_only = op.steps.iter().all(|s| matches!(s, OpStep::TransferLeader { .. }));
    let timeout = if leader_only { leader_timeout_ms } else { timeout_ms };
    now_ms.saturating_sub(op.created_ms) > timeout
}

/// How many operators [`OperatorController`] remembers after they end.
pub const HISTORY_LEN: usize = 256;

/// The operators in progress, at most one per region, and the last ones
/// that ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperatorController {
    /// Region id → its operator. Invariant: at most one per region.
    running: BTreeMap<u64, Operator>,
    /// The last [`HISTORY_LEN`] that ended, oldest first, with how and
    /// when (ms).
    history: VecDeque<(Operator, OpOutcome, u64)>,
    /// How long an operator may run (ms).
    timeout_ms: u64,
    /// How long one that only transfers the leadership may run (ms).
    leader_timeout_ms: u64,
}

impl OperatorController {
    /// A controller whose operators time out after `timeout_ms`, or
    /// after `leader_timeout_ms` if all they do is transfer the leadership.
    pub fn new(timeout_ms: u64, leader_timeout_ms: u64) -> OperatorController {
        OperatorController { timeout_ms, leader_timeout_ms, ..Default::default() }
    }

    /// Whether `op` has run longer than its timeout at `now_ms`.
    fn timed_out(&self, op: &Operator, now_ms: u64) -> bool {
        timed_out(op, now_ms, self.timeout_ms, self.leader_timeout_ms)
    }

    /// Starts `op`, unless its region has one of the same or a higher
    /// priority ([`OpKind`]), which it would otherwise cancel. Returns
    /// whether it started.
    pub fn add(&mut self, op: Operator, now_ms: u64) -> bool {
        if let Some(running) = self.running.get(&op.region_id) {
            if running.kind >= op.kind {
                return false;
            }
            let old = self.running.remove(&op.region_id).expect("just seen");
            self.finish(old, OpOutcome::Replaced, now_ms);
        }
        log::info!("scheduler: new operator {op}");
        self.running.insert(op.region_id, op);
        true
    }

    /// The operator running for `region_id`.
    pub fn get(&self, region_id: u64) -> Option<&Operator> {
        self.running.get(&region_id)
    }

    /// Every running operator, by region id.
    pub fn running(&self) -> impl Iterator<Item = &Operator> {
        self.running.values()
    }

    /// How many operators of `kind` are running.
    pub fn count(&self, kind: OpKind) -> usize {
        self.running.values().filter(|op| op.kind == kind).count()
    }

    /// The operators that ended, oldest first, with how and when (ms).
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &(Operator, OpOutcome, u64)> {
        self.history.iter()
    }

    /// How many of the remembered ones ended with `outcome`.
    pub fn ended(&self, outcome: OpOutcome) -> usize {
        self.history.iter().filter(|(_, o, _)| *o == outcome).count()
    }

    /// The answer to a heartbeat of `region`: its operator's current step,
    /// after skipping the steps the heartbeat shows done. Ends the
    /// operator if it is finished, timed out or planned on another range.
    pub fn dispatch(
        &mut self,
        region: &RegionInfo,
        now_ms: u64,
    ) -> Option<RegionHeartbeatResponse> {
        let (timeout_ms, leader_timeout_ms) = (self.timeout_ms, self.leader_timeout_ms);
        let op = self.running.get_mut(&region.id())?;
        let outcome = if op.advance(region) {
            Some(OpOutcome::Finished)
        } else if region.epoch().version != op.region_epoch.version && !op.splits() {
            Some(OpOutcome::Cancelled)
        } else if timed_out(op, now_ms, timeout_ms, leader_timeout_ms) {
            Some(OpOutcome::TimedOut)
        } else {
            None
        };
        if let Some(outcome) = outcome {
            let op = self.running.remove(&region.id()).expect("just seen");
            self.finish(op, outcome, now_ms);
            return None;
        }
        let step = op.current_step().expect("not finished");
        if let OpStep::AddPeer(peer) = step
            && region.region.peers.contains(peer)
        {
            // Added, still catching up (its snapshot is on the way):
            // asking again would only put a no-op conf change in the log.
            return None;
        }
        match step.response(region) {
            Some(response) => Some(response),
            None => {
                let op = self.running.remove(&region.id()).expect("just seen");
                self.finish(op, OpOutcome::Cancelled, now_ms);
                None
            }
        }
    }

    /// Ends the operator of a region that no longer exists (removed for
    /// overlap by a newer view).
    pub fn remove(&mut self, region_id: u64, now_ms: u64) {
        if let Some(op) = self.running.remove(&region_id) {
            self.finish(op, OpOutcome::Cancelled, now_ms);
        }
    }

    /// Ends every operator older than the timeout, whether or not its
    /// region reports (a region whose leader is gone sends nothing).
    pub fn expire(&mut self, now_ms: u64) {
        let expired: Vec<u64> = self
            .running
            .values()
            .filter(|op| self.timed_out(op, now_ms))
            .map(|op| op.region_id)
            .collect();
        for region_id in expired {
            let op = self.running.remove(&region_id).expect("just seen");
            self.finish(op, OpOutcome::TimedOut, now_ms);
        }
    }

    fn finish(&mut self, op: Operator, outcome: OpOutcome, now_ms: u64) {
        match outcome {
            OpOutcome::Finished => log::info!("scheduler: operator finished: {op}"),
            _ => log::warn!("scheduler: operator {outcome:?}: {op}"),
        }
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back((op, outcome, now_ms));
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::metapb::Region;

    use super::*;

    fn region() -> RegionInfo {
        let peers = vec![Peer { id: 11, store_id: 1 }, Peer { id: 12, store_id: 2 }];
        let epoch = RegionEpoch { conf_ver: 2, version: 1 };
        let mut info = RegionInfo::new(Region {
            id: 1,
            region_epoch: Some(epoch),
            peers,
            ..Default::default()
        });
        info.leader = Some(Peer { id: 11, store_id: 1 });
        info
    }

    /// A leader transfer to a peer that cannot take over (its store died
    /// after the plan was made) is repeated with every heartbeat, and
    /// every repeat stops the leader's proposals for an election timeout:
    /// it must end in seconds, not in the ten minutes a peer move gets.
    #[test]
    fn a_leader_transfer_times_out_sooner_than_a_peer_move() {
        let r = region();
        let mut ops = OperatorController::new(600_000, 10_000);
        let transfer = Operator::transfer_leader("by-hand", OpKind::Admin, &r, 2, 0);
        assert!(ops.add(transfer, 0));
        assert!(ops.dispatch(&r, 10_000).is_some(), "still running at its timeout");
        assert!(ops.dispatch(&r, 10_001).is_none(), "timed out after it");
        assert_eq!(ops.ended(OpOutcome::TimedOut), 1);

        let new_peer = Peer { id: 13, store_id: 3 };
        let moving = Operator::move_peer("by-hand", OpKind::Admin, &r, 2, new_peer, 0);
        assert!(ops.add(moving, 0));
        ops.expire(10_001);
        assert!(ops.get(1).is_some(), "a peer move has the long timeout");
        ops.expire(600_001);
        assert!(ops.get(1).is_none(), "and ends after it");
        assert_eq!(ops.ended(OpOutcome::TimedOut), 2);
    }
}
