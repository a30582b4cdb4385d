//! Heartbeats to the scheduler, and the operators it answers with (given
//! code, lab 3b).
//!
//! The scheduler knows the cluster only from what the stores tell it:
//!
//! - every leader peer sends a **region heartbeat** (its region as it has
//!   applied it, itself as the leader, the followers that lag behind its
//!   log, the region's approximate size) every
//!   `region_heartbeat_tick_interval` ticks, at once when it becomes
//!   leader, and at once when a conf change of its region applies;
//! - every store sends a **store heartbeat** (its id, how many regions
//!   and snapshots it holds) every `store_heartbeat_tick_interval` ticks.
//!
//! Both go out through [`Context::report`]; the driver carries them to
//! the scheduler (the simulator over its simulated network, so they can
//! be delayed or lost). The scheduler may answer a region heartbeat with
//! an **operator**: add a peer, remove a peer, transfer the leadership,
//! or (asked for by hand) split at a key.
//! [`Store::on_region_heartbeat_response`] turns it into the admin
//! command a client would send, with the epoch *the scheduler* knew, and
//! hands it to the peer's proposer like any command (lab 3b's
//! `propose_change_peer` and `propose_transfer_leader`). The scheduler
//! repeats an operator with every heartbeat until a heartbeat shows it
//! done, so the store does not have to remember it: a repeat of a change
//! that already applied fails the `conf_ver` check, one still in the log
//! is refused by raft (one conf change at a time). A leader transfer to
//! a peer the leader has not heard from within an election timeout is
//! skipped ([`Liveness`]): raft would stop taking proposals while it
//! waits for a peer that cannot take over. A split at a key takes
//! the path of a split the size check found: the leader asks the
//! scheduler for the new region's ids ([`SchedulerTask::AskSplit`]) and
//! then proposes the `Split`, with the epoch the operator carried.

use tinykv_proto::metapb::{self, Region};
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, RaftRequestHeader,
    TransferLeaderRequest,
};
use tinykv_proto::schedulerpb::{
    RegionHeartbeatRequest, RegionHeartbeatResponse, StoreHeartbeatRequest, StoreStats,
};

use std::collections::BTreeMap;

use crate::context::{Context, SCHEDULER_TOKEN};
use crate::error::Result;
use crate::peer::Peer;
use crate::store::Store;

/// What a store tells the scheduler.
#[derive(Clone, Debug, PartialEq)]
pub enum SchedulerTask {
    /// A leader's report of its region.
    RegionHeartbeat(RegionHeartbeatRequest),
    /// A store's report of itself.
    StoreHeartbeat(StoreHeartbeatRequest),
    /// A leader asks for the ids of a new region, to split `region` at
    /// `split_key` (see [`crate::split_check`]). The driver sends the
    /// scheduler an `AskSplitRequest` with the region and hands its answer
    /// to `Store::on_ask_split_response` with `region` and `split_key`.
    AskSplit {
        /// The region as the split check saw it.
        region: Region,
        /// Where it splits.
        split_key: Vec<u8>,
        /// The leader that asks.
        peer: metapb::Peer,
    },
}

/// When a peer last heard from each other peer of its region, in its
/// own ticks: a leader does not hand its leadership to a peer it has not
/// heard from within an election timeout. (Raft would send that peer
/// `MsgTimeoutNow` and stop taking proposals until the transfer is
/// abandoned an election timeout later; a scheduler that repeats the
/// operator with every heartbeat would keep the region unwritable for as
/// long as the peer is gone.)
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// Ticks since the peer was created.
    now: u64,
    /// Peer id → `now` when a message from it last arrived.
    /// Invariant: every value `<= now`.
    last_heard: BTreeMap<u64, u64>,
    /// How many ticks of silence still count as recent.
    window: u64,
}

impl Liveness {
    /// Recent means within `election_ticks` ticks.
    pub fn new(election_ticks: usize) -> Liveness {
        let window = u64::try_from(election_ticks).unwrap_or(u64::MAX);
        Liveness { window, ..Liveness::default() }
    }

    /// One tick passed.
    pub fn tick(&mut self) {
        self.now += 1;
    }

    /// A message from peer `id` arrived.
    pub fn heard_from(&mut self, id: u64) {
        if id != 0 {
            self.last_heard.insert(id, self.now);
        }
    }

    /// Whether peer `id` was heard from within the window.
    pub fn is_recent(&self, id: u64) -> bool {
        self.last_heard.get(&id).is_some_and(|&t| self.now - t <= self.window)
    }

    /// Ticks since peer `id` was last heard from (`None`: never).
    pub fn silent_for(&self, id: u64) -> Option<u64> {
        self.last_heard.get(&id).map(|&t| self.now - t)
    }
}

impl Peer {
    /// The region heartbeat this peer would send now: its region, itself
    /// as leader, the peers whose log lags behind the truncated index (they
    /// need a snapshot), and the region's approximate size (what the last
    /// split check measured, see [`crate::split_check`]; 0 before one).
    pub fn region_heartbeat(&self) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: Some(self.region().clone()),
            leader: Some(self.meta),
            pending_peers: self.pending_peers(),
            approximate_size: self.approximate_size(),
            ..Default::default()
        }
    }

    /// The region's peers (other than this one) whose matched index is
    /// below the truncated index: they cannot catch up from the log. Only
    /// a leader knows its followers' progress; others report none.
    pub fn pending_peers(&self) -> Vec<metapb::Peer> {
        if !self.is_leader() {
            return Vec::new();
        }
        let truncated = self.storage().truncated().index;
        let progress = &self.raft_group.raft.prs;
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.meta.id)
            .filter(|p| progress.get(&p.id).is_none_or(|pr| pr.matched < truncated))
            .copied()
            .collect()
    }

    /// Sends a region heartbeat now, if this peer leads its region and is
    /// still one of its members (a leader that applied its own removal is
    /// about to be destroyed).
    pub fn report_region(&mut self, ctx: &mut dyn Context) {
        self.heartbeat_ticks = 0;
        let member = self.region().peers.iter().any(|p| p.id == self.meta.id);
        if self.is_leader() && self.is_initialized() && member {
            ctx.report(SchedulerTask::RegionHeartbeat(self.region_heartbeat()));
        }
    }

    /// Counts one tick towards the next region heartbeat.
    pub(crate) fn on_heartbeat_tick(&mut self, ctx: &mut dyn Context) {
        self.heartbeat_ticks += 1;
        if self.heartbeat_ticks >= self.heartbeat_tick_interval {
            self.report_region(ctx);
        }
    }

    /// Reports at once when this peer has just become leader (called after
    /// every `Ready`).
    pub(crate) fn report_if_elected(&mut self, ctx: &mut dyn Context) {
        let leader = self.is_leader();
        if leader && !self.reported_as_leader {
            self.report_region(ctx);
        }
        self.reported_as_leader = leader;
    }
}

impl Peer {
    /// The scheduler's operator "split at `key`" for the region at
    /// `epoch`: ask for the new region's ids, as a split check would
    /// (the answer proposes the split). An operator for another epoch, or
    /// a key not strictly inside the region, is ignored (the scheduler
    /// asks again with its next answer, or gives up).
    fn ask_split_at(
        &mut self,
        key: Vec<u8>,
        epoch: Option<metapb::RegionEpoch>,
        ctx: &mut dyn Context,
    ) {
        let region = self.region();
        if epoch != region.region_epoch {
            log::debug!("{} ignores a split operator of another epoch {epoch:?}", self.tag);
            return;
        }
        let inside =
            key > region.start_key && crate::peer::check_key_in_region(&key, region).is_ok();
        if !inside {
            log::warn!(
                "{} ignores a split operator at {:?}: not strictly inside the region",
                self.tag,
                key.escape_ascii().to_string()
            );
            return;
        }
        log::info!(
            "{} splits at {:?} for the scheduler: asks for the new region's ids",
            self.tag,
            key.escape_ascii().to_string()
        );
        ctx.report(SchedulerTask::AskSplit {
            region: region.clone(),
            split_key: key,
            peer: self.meta,
        });
    }
}

impl Store {
    /// The store heartbeat this store would send now.
    pub fn store_heartbeat(&self) -> StoreHeartbeatRequest {
        let applying = self.peers.values().filter(|p| p.applying_snapshot).count();
        StoreHeartbeatRequest {
            stats: Some(StoreStats {
                store_id: self.store_id(),
                region_count: u32::try_from(self.peers.len()).unwrap_or(u32::MAX),
                applying_snap_count: u32::try_from(applying).unwrap_or(u32::MAX),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Counts one tick towards the next store heartbeat.
    pub(crate) fn on_store_heartbeat_tick(&mut self, ctx: &mut dyn Context) {
        self.store_heartbeat_ticks += 1;
        if self.store_heartbeat_ticks >= self.cfg.store_heartbeat_tick_interval.max(1) {
            self.store_heartbeat_ticks = 0;
            ctx.report(SchedulerTask::StoreHeartbeat(self.store_heartbeat()));
        }
    }

    /// The scheduler's answer to a region heartbeat: an operator for the
    /// region, proposed by its peer here as the admin command a client
    /// would send (`ChangePeer` or `TransferLeader`), with the epoch in
    /// the response; a split at a key first asks for the new region's
    /// ids (`Peer::ask_split_at`). Answers nobody ([`SCHEDULER_TOKEN`]); an operator for
    /// a region this store does not lead is ignored (the scheduler sends
    /// it again to whoever leads).
    ///
    /// # Errors
    ///
    /// An engine error while handling the peer's `Ready` (fatal).
    pub fn on_region_heartbeat_response(
        &mut self,
        resp: RegionHeartbeatResponse,
        ctx: &mut dyn Context,
    ) -> Result<()> {
        let region_id = resp.region_id;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            log::debug!("store {}: an operator for region {region_id}, not here", self.store_id());
            return Ok(());
        };
        if !peer.is_leader() {
            log::debug!("{} is not the leader: ignores an operator", peer.tag);
            return Ok(());
        }
        if let Some(split) = resp.split_region {
            peer.ask_split_at(split.split_key, resp.region_epoch, ctx);
            return Ok(());
        }
        let Some(admin) = operator_command(&resp) else { return Ok(()) };
        let transferee = admin.transfer_leader.as_ref().and_then(|t| t.peer);
        if let Some(to) = transferee.filter(|to| !peer.liveness.is_recent(to.id)) {
            let silent = peer.liveness.silent_for(to.id);
            let silent = silent.map_or("never heard from".into(), |t| format!("silent {t} ticks"));
            log::info!(
                "{} does not transfer leadership to peer {} on store {}: {silent}",
                peer.tag,
                to.id,
                to.store_id
            );
            return Ok(());
        }
        log::info!("{} runs the scheduler's operator {:?}", peer.tag, admin.cmd_type());
        let req = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id,
                peer: Some(peer.meta),
                region_epoch: resp.region_epoch,
                term: 0,
            }),
            requests: Vec::new(),
            admin_request: Some(admin),
        };
        peer.propose_command(req, SCHEDULER_TOKEN, ctx);
        self.on_peer_ready(region_id, ctx)
    }
}

/// The admin command an operator stands for (`None` for an empty
/// response).
fn operator_command(resp: &RegionHeartbeatResponse) -> Option<AdminRequest> {
    if let Some(change) = &resp.change_peer {
        return Some(AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                change_type: change.change_type,
                peer: change.peer,
            }),
            ..Default::default()
        });
    }
    let transfer = resp.transfer_leader.as_ref()?;
    Some(AdminRequest {
        cmd_type: AdminCmdType::TransferLeader as i32,
        transfer_leader: Some(TransferLeaderRequest { peer: transfer.peer }),
        ..Default::default()
    })
}
