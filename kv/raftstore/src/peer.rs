//! A peer: one replica of one region on this store (lab 2b).
//!
//! A peer owns a raft node ([`RawNode`]) over its [`PeerStorage`]. The
//! store hands it three kinds of input:
//!
//! - a raft message from another peer ([`Peer::step`]);
//! - a tick ([`Peer::tick`]);
//! - a client command ([`Peer::propose`]): checked, encoded and proposed,
//!   with a [`Proposal`] remembering whom to answer once it applies.
//!
//! After each input the store calls [`Peer::handle_raft_ready`], which
//! persists, sends and applies what raft asks for, in that order.
//!
//! You write (lab 2b): [`Peer::propose`] and the request checks it uses,
//! [`Peer::handle_raft_ready`], and the apply side in `apply.rs`.

use std::collections::{BTreeMap, VecDeque};

use raft::{RawNode, StateRole};
use tinykv_engine::{Cf, MAX_KEY_LEN};
use tinykv_proto::eraftpb;
use tinykv_proto::metapb::{self, Region};
use tinykv_proto::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
use tinykv_proto::raft_serverpb::RaftMessage;

use crate::config::Config;
use crate::context::{CmdResponse, Context, Token};
use crate::effect::StoreEffect;
use crate::engines::Engines;
use crate::error::{Error, Result};
use crate::peer_storage::{ApplySnapResult, PeerStorage};
use crate::snap::SnapKey;
use crate::worker::Task;
// SOLUTION BEGIN lab 2b
use prost::Message as _;
// SOLUTION END

/// A client command waiting for its log entry to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// The index its entry was given.
    pub index: u64,
    /// The term it was proposed in. If the entry applied at `index` has
    /// another term, this command was overwritten by another leader.
    pub term: u64,
    /// Whom to answer.
    pub token: Token,
}

/// One replica of one region. See the module docs.
#[derive(Debug)]
pub struct Peer {
    /// This peer (its id and store).
    pub meta: metapb::Peer,
    /// The raft node; its storage is this peer's [`PeerStorage`].
    pub raft_group: RawNode<PeerStorage>,
    /// Commands proposed and not yet answered. Invariant: sorted by
    /// `index`, strictly increasing; every index is above the applied index.
    pub proposals: VecDeque<Proposal>,
    /// `[region R peer P]`, for log lines and panics.
    pub tag: String,
    /// A snapshot's data is being written by a worker (the region state
    /// is `Applying`): the peer handles no `Ready` until it is done, since
    /// the entries after the snapshot need its data.
    pub applying_snapshot: bool,
    /// The apply task for `applying_snapshot` was scheduled (a restart
    /// finds the region `Applying` without one and schedules it again).
    pub apply_scheduled: bool,
    /// Ticks since the last log GC check, and the GC settings.
    pub(crate) gc_ticks: usize,
    pub(crate) gc_tick_interval: usize,
    pub(crate) gc_count_limit: u64,
    /// The compact index of a `CompactLog` this peer proposed that has
    /// not applied yet (cleared on every GC tick, in case it was lost).
    pub(crate) compact_proposed: Option<u64>,
    /// The compact index of the last `CompactLog` this peer applied: how
    /// far every replica's log is compacted. 0 when unknown (after a start
    /// or a snapshot), which makes a leader propose one soon.
    pub(crate) log_compacted_to: u64,
    /// What this peer did that the store must follow up on, oldest first
    /// (see [`crate::effect`]); the store takes them after every `Ready`.
    pub(crate) store_effects: Vec<StoreEffect>,
    /// The peers this peer heard from, by id: where to send to a member
    /// that its region does not list yet (a peer added after the region's
    /// last state this peer knows, or, for an uninitialized peer, the
    /// leader that created it).
    pub(crate) peer_cache: BTreeMap<u64, metapb::Peer>,
    /// When this peer last heard from each other peer (see
    /// [`crate::heartbeat::Liveness`]).
    pub(crate) liveness: crate::heartbeat::Liveness,
    /// Ticks since the last region heartbeat (see [`crate::heartbeat`]).
    pub(crate) heartbeat_ticks: usize,
    pub(crate) heartbeat_tick_interval: usize,
    /// Whether this peer was the leader after the last `Ready`: a peer
    /// that has just become leader reports its region at once.
    pub(crate) reported_as_leader: bool,
    /// The region's size as far as this peer knows, for split checks
    /// (see [`crate::split_check`]).
    pub(crate) size: crate::split_check::SizeState,
    /// When and where regions split (from the store's config).
    pub(crate) split: crate::split_check::SplitSettings,
}

impl Peer {
    /// Loads the peer of `region` on store `store_id` from the engines.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the region has no peer on this store; a
    /// storage or raft error.
    /// `applying` says that the region state is `Applying`: a snapshot's
    /// data was not completely written before the store stopped.
    pub fn new(
        store_id: u64,
        cfg: &Config,
        engines: Engines,
        region: Region,
        applying: bool,
    ) -> Result<Peer> {
        let meta = *region.peers.iter().find(|p| p.store_id == store_id).ok_or_else(|| {
            Error::Invalid(format!("region {} has no peer on store {store_id}", region.id))
        })?;
        let tag = format!("[region {} peer {}]", region.id, meta.id);
        let ps = PeerStorage::new(engines, region, tag.clone())?;
        Peer::with_storage(meta, cfg, ps, applying)
    }

    /// A peer for a region this store has no data of (lab 3b): created
    /// when a message for it arrives from a leader that added it. It has
    /// no range and no members, does not campaign, and waits for the
    /// leader's snapshot ([`PeerStorage::uninitialized`]).
    ///
    /// # Errors
    ///
    /// A raft error.
    pub fn uninitialized(
        meta: metapb::Peer,
        cfg: &Config,
        engines: Engines,
        region_id: u64,
    ) -> Result<Peer> {
        let tag = format!("[region {region_id} peer {}]", meta.id);
        let ps = PeerStorage::uninitialized(engines, region_id, tag);
        Peer::with_storage(meta, cfg, ps, false)
    }

    fn with_storage(
        meta: metapb::Peer,
        cfg: &Config,
        ps: PeerStorage,
        applying: bool,
    ) -> Result<Peer> {
        let tag = ps.tag.clone();
        let mut raft_cfg = raft::Config::new(meta.id, vec![]);
        raft_cfg.election_tick = cfg.raft_election_timeout_ticks;
        raft_cfg.heartbeat_tick = cfg.raft_heartbeat_ticks;
        raft_cfg.applied = ps.applied_index();
        raft_cfg.seed = cfg.seed;
        let raft_group = RawNode::new(&raft_cfg, ps)?;
        Ok(Peer {
            meta,
            raft_group,
            proposals: VecDeque::new(),
            tag,
            applying_snapshot: applying,
            apply_scheduled: false,
            gc_ticks: 0,
            gc_tick_interval: cfg.raft_log_gc_tick_interval.max(1),
            gc_count_limit: cfg.raft_log_gc_count_limit,
            compact_proposed: None,
            log_compacted_to: 0,
            store_effects: Vec::new(),
            peer_cache: BTreeMap::new(),
            liveness: crate::heartbeat::Liveness::new(cfg.raft_election_timeout_ticks),
            heartbeat_ticks: 0,
            heartbeat_tick_interval: cfg.region_heartbeat_tick_interval.max(1),
            reported_as_leader: false,
            size: crate::split_check::SizeState::default(),
            split: crate::split_check::SplitSettings::of(cfg),
        })
    }

    // ----- what the peer knows -------------------------------------------------

    /// The peer's storage.
    pub fn storage(&self) -> &PeerStorage {
        &self.raft_group.raft.raft_log.store
    }

    /// The peer's storage, mutably.
    pub fn storage_mut(&mut self) -> &mut PeerStorage {
        &mut self.raft_group.raft.raft_log.store
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &Region {
        &self.storage().region
    }

    /// Whether the peer knows its region: its range and members came with
    /// the region's bootstrap or a snapshot. An uninitialized peer (see
    /// [`Peer::uninitialized`]) has neither and is in no store's meta.
    pub fn is_initialized(&self) -> bool {
        !self.region().peers.is_empty()
    }

    /// The region id.
    pub fn region_id(&self) -> u64 {
        self.storage().region.id
    }

    /// The store this peer lives on.
    pub fn store_id(&self) -> u64 {
        self.meta.store_id
    }

    /// Whether this peer is the region's leader.
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft.state == StateRole::Leader
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.raft_group.raft.term
    }

    /// The leader this peer knows of, if it is a member of the region.
    pub fn leader(&self) -> Option<metapb::Peer> {
        self.peer_by_id(self.raft_group.raft.lead)
    }

    /// The member of the region with peer id `id`.
    pub fn peer_by_id(&self, id: u64) -> Option<metapb::Peer> {
        self.region().peers.iter().find(|p| p.id == id).copied()
    }

    /// Remembers a peer this peer heard from (see `peer_cache`).
    pub fn remember_peer(&mut self, peer: metapb::Peer) {
        if peer.id != 0 {
            self.peer_cache.insert(peer.id, peer);
        }
    }

    /// Where peer `id` lives: the region's members first, then the peers
    /// heard from.
    pub fn find_peer(&self, id: u64) -> Option<metapb::Peer> {
        self.peer_by_id(id).or_else(|| self.peer_cache.get(&id).copied())
    }

    // ----- inputs ----------------------------------------------------------------

    /// Steps a raft message from another peer into the raft node.
    ///
    /// # Errors
    ///
    /// The raft node's error (e.g. a response from a non-member).
    pub fn step(&mut self, msg: eraftpb::Message) -> Result<()> {
        self.liveness.heard_from(msg.from);
        self.raft_group.step(msg)?;
        Ok(())
    }

    /// One tick: a raft tick, a log GC check every
    /// `raft_log_gc_tick_interval` ticks, a region heartbeat every
    /// `region_heartbeat_tick_interval` ticks (a leader's), a split check
    /// every `split_region_check_tick_interval` ticks (a leader's, see
    /// [`crate::split_check`]), and (after a
    /// restart in the middle of one) the snapshot apply scheduled again.
    pub fn tick(&mut self, ctx: &mut dyn Context) {
        self.raft_group.tick();
        self.liveness.tick();
        self.on_heartbeat_tick(ctx);
        self.on_split_check_tick(ctx);
        self.gc_ticks += 1;
        if self.gc_ticks >= self.gc_tick_interval {
            self.gc_ticks = 0;
            self.on_raft_log_gc_tick();
        }
        if self.applying_snapshot && !self.apply_scheduled {
            let t = self.storage().truncated();
            let key = SnapKey::new(self.region_id(), t.term, t.index);
            self.schedule_snapshot_apply(key, ctx);
        }
    }

    /// Handles the `Ready` after an input: schedules a snapshot the raft
    /// node asked for, then (unless a snapshot's data is being written)
    /// [`handle_raft_ready`](Self::handle_raft_ready).
    ///
    /// # Errors
    ///
    /// As [`handle_raft_ready`](Self::handle_raft_ready).
    pub fn on_ready(&mut self, ctx: &mut dyn Context) -> Result<()> {
        self.schedule_snapshot_generation(ctx);
        if self.applying_snapshot {
            return Ok(());
        }
        let applied = self.storage().applied_index();
        self.handle_raft_ready(ctx)?;
        if self.storage().applied_index() > applied {
            self.maybe_compact_log();
            // A proposal needs its Ready handled now, not at the next input.
            if !self.applying_snapshot && self.raft_group.has_ready() {
                self.handle_raft_ready(ctx)?;
            }
        }
        self.report_if_elected(ctx);
        Ok(())
    }

    // ----- snapshots (given) -------------------------------------------------------

    /// If the raft node asked for a snapshot, schedules its generation
    /// from a view of the kv engine taken now, at the applied index.
    pub fn schedule_snapshot_generation(&mut self, ctx: &mut dyn Context) {
        if !self.storage().take_gen_request() {
            return;
        }
        let ps = self.storage();
        let index = ps.applied_index();
        let term = match raft::Storage::term(ps, index) {
            Ok(term) => term,
            Err(e) => {
                ps.on_snapshot_generated(Err(format!("no term for applied index {index}: {e}")));
                return;
            }
        };
        let conf_state =
            eraftpb::ConfState { nodes: self.region().peers.iter().map(|p| p.id).collect() };
        let task = Task::GenSnapshot {
            peer_id: self.meta.id,
            key: SnapKey::new(self.region_id(), term, index),
            region: self.region().clone(),
            conf_state,
            engine_snap: ps.engines.kv.snapshot(),
        };
        log::info!("{} schedules {task:?}", self.tag);
        ctx.schedule(task);
    }

    /// A snapshot generation finished: hand the snapshot to the storage
    /// and, on a leader, send it now to every follower that needs one
    /// (rather than at the next heartbeat response: the log moves on, and a
    /// snapshot older than the truncated index is useless).
    pub fn on_snapshot_generated(
        &mut self,
        result: std::result::Result<eraftpb::Snapshot, String>,
    ) {
        self.storage().on_snapshot_generated(result);
        if !self.is_leader() {
            return;
        }
        let first = self.storage().truncated().index + 1;
        let raft = &mut self.raft_group.raft;
        let needy: Vec<u64> = raft
            .prs
            .iter()
            .filter(|&(&id, pr)| id != raft.id && pr.next_index < first)
            .map(|(&id, _)| id)
            .collect();
        for id in needy {
            raft.send_append(id);
        }
    }

    /// The snapshot stored by `save_ready_state` (`result`) is persisted:
    /// from now on the peer waits for its data, which a worker writes.
    /// Call it from [`handle_raft_ready`](Self::handle_raft_ready) (lab 2c).
    pub fn on_snapshot_stored(&mut self, result: ApplySnapResult, ctx: &mut dyn Context) {
        // The snapshot's region replaced this peer's (lab 3b: possibly
        // with another range or other members).
        self.push_store_effect(StoreEffect::RegionChanged(self.region().clone()));
        self.applying_snapshot = true;
        self.log_compacted_to = 0;
        self.schedule_snapshot_apply(result.key, ctx);
    }

    fn schedule_snapshot_apply(&mut self, key: SnapKey, ctx: &mut dyn Context) {
        self.apply_scheduled = true;
        let task =
            Task::ApplySnapshot { peer_id: self.meta.id, key, region: self.region().clone() };
        log::info!("{} schedules {task:?}", self.tag);
        ctx.schedule(task);
    }

    /// A snapshot's data is written (or could not be).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if it could not: the region's data is half
    /// written and the store must stop.
    pub fn on_snapshot_applied(
        &mut self,
        key: SnapKey,
        result: std::result::Result<(), String>,
    ) -> Result<()> {
        if !self.applying_snapshot {
            log::warn!("{} got the result of applying {key} but applies nothing", self.tag);
            return Ok(());
        }
        result.map_err(|e| {
            Error::Corrupt(format!("{} cannot apply snapshot {key}: {e}", self.tag))
        })?;
        self.applying_snapshot = false;
        self.apply_scheduled = false;
        Ok(())
    }

    /// Wraps a raft message for the network: who it is from and to, and the
    /// region it belongs to. `None` if the target is not a member this peer
    /// knows of.
    pub fn raft_message(&self, msg: eraftpb::Message) -> Option<RaftMessage> {
        let Some(to_peer) = self.find_peer(msg.to) else {
            log::warn!("{} drops a {:?} to unknown peer {}", self.tag, msg.msg_type(), msg.to);
            return None;
        };
        let region = self.region();
        Some(RaftMessage {
            region_id: region.id,
            from_peer: Some(self.meta),
            to_peer: Some(to_peer),
            message: Some(msg),
            region_epoch: region.region_epoch,
            is_tombstone: false,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        })
    }

    /// Answers `token` with `err`.
    pub fn respond_error(&self, token: Token, err: Error, ctx: &mut dyn Context) {
        ctx.respond(token, CmdResponse::new(err.into_response(self.term())));
    }

    // ----- proposing (lab 2b) ------------------------------------------------------

    /// Handles a client command: checks it ([`check_request`](Self::check_request)),
    /// proposes it to raft as one log entry (the encoded request), and
    /// remembers a [`Proposal`] for the entry's index and the current term
    /// so that [`apply`](crate::apply) can answer `token` once it applies.
    /// A command that fails a check, or that raft refuses, is answered at
    /// once with the error.
    ///
    /// Checked by every lab 2b test; `one_partition_2b` sends commands to a
    /// minority leader, which must not answer them with success.
    pub fn propose(&mut self, req: RaftCmdRequest, token: Token, ctx: &mut dyn Context) {
        // SOLUTION BEGIN lab 2b
        if let Err(e) = self.check_request(&req) {
            return self.respond_error(token, e, ctx);
        }
        let index = self.raft_group.raft.raft_log.last_index() + 1;
        let term = self.term();
        if let Err(e) = self.raft_group.propose(req.encode_to_vec()) {
            return self.respond_error(token, e.into(), ctx);
        }
        if self.raft_group.raft.raft_log.last_index() != index {
            // Raft accepted the proposal but did not append it where
            // expected: answer now rather than wait for the wrong entry.
            return self.respond_error(token, Error::StaleCommand, ctx);
        }
        self.proposals.push_back(Proposal { index, term, token });
        // SOLUTION STUB
        // let _ = (req, token, ctx);
        // todo!("lab 2b: Peer::propose (kv/raftstore/src/peer.rs)")
        // SOLUTION END
    }

    /// All the checks a command passes before it is proposed, in this
    /// order: [`check_store`](Self::check_store),
    /// [`check_leader`](Self::check_leader), [`check_peer`](Self::check_peer),
    /// [`check_term`](Self::check_term), [`check_epoch`](Self::check_epoch),
    /// then [`validate_requests`](Self::validate_requests).
    ///
    /// # Errors
    ///
    /// The first check that fails.
    pub fn check_request(&self, req: &RaftCmdRequest) -> Result<()> {
        self.check_store(req)?;
        self.check_leader()?;
        self.check_peer(req)?;
        self.check_term(req)?;
        self.check_epoch(req)?;
        self.validate_requests(req)
    }

    /// The command is for this store: `header.peer.store_id` is this
    /// peer's store.
    ///
    /// # Errors
    ///
    /// [`Error::StoreNotMatch`].
    pub fn check_store(&self, req: &RaftCmdRequest) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        let request = req.header.as_ref().and_then(|h| h.peer).map_or(0, |p| p.store_id);
        if request != self.store_id() {
            return Err(Error::StoreNotMatch { request, actual: self.store_id() });
        }
        Ok(())
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 2b: Peer::check_store (kv/raftstore/src/peer.rs)")
        // SOLUTION END
    }

    /// Only the leader proposes.
    ///
    /// # Errors
    ///
    /// [`Error::NotLeader`] with the leader this peer knows of, so the
    /// client can go there directly.
    pub fn check_leader(&self) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        if !self.is_leader() {
            return Err(Error::NotLeader { region_id: self.region_id(), leader: self.leader() });
        }
        Ok(())
        // SOLUTION STUB
        // todo!("lab 2b: Peer::check_leader (kv/raftstore/src/peer.rs)")
        // SOLUTION END
    }

    /// The command names this peer: `header.peer.id` is this peer's id.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] saying which peer was expected.
    ///
    /// Checked by `commands_for_another_peer_or_of_a_stale_term_are_rejected_2b`.
    pub fn check_peer(&self, req: &RaftCmdRequest) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        let id = req.header.as_ref().and_then(|h| h.peer).map_or(0, |p| p.id);
        if id != self.meta.id {
            return Err(Error::Invalid(format!(
                "the command is for peer {id}, this is peer {}",
                self.meta.id
            )));
        }
        Ok(())
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 2b: Peer::check_peer (kv/raftstore/src/peer.rs)")
        // SOLUTION END
    }

    /// A command that carries a term (`header.term != 0`) is stale when
    /// that term is more than one behind the peer's.
    ///
    /// # Errors
    ///
    /// [`Error::StaleCommand`].
    ///
    /// Checked by `commands_for_another_peer_or_of_a_stale_term_are_rejected_2b`.
    pub fn check_term(&self, req: &RaftCmdRequest) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        let term = req.header.as_ref().map_or(0, |h| h.term);
        if term != 0 && term + 1 < self.term() {
            return Err(Error::StaleCommand);
        }
        Ok(())
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 2b: Peer::check_term (kv/raftstore/src/peer.rs)")
        // SOLUTION END
    }

    /// The command's region epoch is the region's: a normal command must
    /// have the region's `version` (the range has not changed since the
    /// client looked the region up). An absent epoch is an error.
    ///
    /// # Errors
    ///
    /// [`Error::EpochNotMatch`] with the region as this peer knows it.
    pub fn check_epoch(&self, req: &RaftCmdRequest) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        let region = self.region();
        let current = region.region_epoch.unwrap_or_default();
        let Some(epoch) = req.header.as_ref().and_then(|h| h.region_epoch) else {
            return Err(Error::EpochNotMatch {
                message: format!("the command for region {} has no epoch", region.id),
                regions: vec![region.clone()],
            });
        };
        if epoch.version != current.version {
            return Err(Error::EpochNotMatch {
                message: format!(
                    "region {} is at version {}, the command at {}",
                    region.id, current.version, epoch.version
                ),
                regions: vec![region.clone()],
            });
        }
        Ok(())
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 2b: Peer::check_epoch (kv/raftstore/src/peer.rs)")
        // SOLUTION END
    }

    /// Bad input never reaches the log: at least one request, no admin
    /// request, known command types, a data column family, keys that are
    /// not empty, at most [`MAX_KEY_LEN`] bytes and inside the region.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] or [`Error::KeyNotInRegion`].
    pub fn validate_requests(&self, req: &RaftCmdRequest) -> Result<()> {
        if req.admin_request.is_some() {
            return Err(Error::Invalid("admin requests are not supported yet".into()));
        }
        if req.requests.is_empty() {
            return Err(Error::Invalid("the command has no requests".into()));
        }
        for r in &req.requests {
            if let Some((cf, key)) = request_key(r)? {
                Cf::parse_data(cf).map_err(|e| Error::Invalid(e.to_string()))?;
                if key.is_empty() || key.len() > MAX_KEY_LEN {
                    return Err(Error::Invalid(format!(
                        "a key must be 1 to {MAX_KEY_LEN} bytes, not {}",
                        key.len()
                    )));
                }
                check_key_in_region(key, self.region())?;
            }
        }
        Ok(())
    }
}

/// The column family and key a request addresses (`None` for `Snap`).
///
/// # Errors
///
/// [`Error::Invalid`] for an unknown command type or a missing body.
pub fn request_key(r: &Request) -> Result<Option<(&str, &[u8])>> {
    let missing = || Error::Invalid(format!("a {:?} request without its body", r.cmd_type()));
    match CmdType::try_from(r.cmd_type) {
        Ok(CmdType::Get) => r.get.as_ref().map(|g| Some((g.cf.as_str(), &g.key[..]))),
        Ok(CmdType::Put) => r.put.as_ref().map(|p| Some((p.cf.as_str(), &p.key[..]))),
        Ok(CmdType::Delete) => r.delete.as_ref().map(|d| Some((d.cf.as_str(), &d.key[..]))),
        Ok(CmdType::Snap) => Some(None),
        _ => return Err(Error::Invalid(format!("unknown command type {}", r.cmd_type))),
    }
    .ok_or_else(missing)
}

/// `key` lies in `[region.start_key, region.end_key)` (an empty end key is
/// unbounded).
///
/// # Errors
///
/// [`Error::KeyNotInRegion`].
pub fn check_key_in_region(key: &[u8], region: &Region) -> Result<()> {
    let after_start = key >= region.start_key.as_slice();
    let before_end = region.end_key.is_empty() || key < region.end_key.as_slice();
    if after_start && before_end {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        })
    }
}
