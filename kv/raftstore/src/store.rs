//! The store: every peer on this store, and the inputs that drive them.
//!
//! The driver calls one of the `on_*` methods per input; each routes the
//! input to its peer (by region id) and then lets the peer handle its
//! `Ready`. Peers are kept in a `BTreeMap`, so ticking them goes in region
//! order and a simulated run depends only on its seed.
//!
//! A driver that batches (the production one, `kv/server/src/node.rs`)
//! instead steps a whole batch of raft messages and commands with
//! [`Store::step_raft_message`] and [`Store::propose`], and then calls
//! [`Store::handle_readies`] once: each peer then handles one `Ready` for
//! the batch, so the proposals of a batch share one synced raft write, one
//! round of messages and one apply batch (TinyKV's raft worker does the
//! same: it drains its channel, then handles each peer's `Ready`).
//!
//! The store also owns the snapshot files' life after they are built or
//! received: a raft message carrying a snapshot is only stepped when its
//! files arrived intact ([`Store::check_snapshot`]), and a periodic sweep
//! deletes the files nobody needs any more ([`Store::gc_snapshots`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use raft::eraftpb::MessageType;
use tinykv_engine::Cf;
use tinykv_engine::keys;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RaftSnapshotData, RegionLocalState};

use crate::bootstrap::load_store_ident;
use crate::config::Config;
use crate::context::{CmdResponse, Context, Token};
use crate::effect::StoreEffect;
use crate::engines::Engines;
use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::peer_storage::GenState;
use crate::snap::{SnapKey, SnapKind, SnapManager};
use crate::store_meta::StoreMeta;
use crate::worker::TaskResult;
use prost::Message as _;

/// One store. See the module docs.
#[derive(Debug)]
pub struct Store {
    store_id: u64,
    pub(crate) cfg: Config,
    engines: Engines,
    /// The peers, by region id (uninitialized ones too: see
    /// [`crate::lifecycle`]).
    pub(crate) peers: BTreeMap<u64, Peer>,
    /// The regions of `peers`, by id and by range. Invariant: holds
    /// exactly the regions of the initialized peers of `peers` (as each
    /// peer knows its region; an uninitialized peer has no range yet), and
    /// no two overlap; changed only through the store.
    pub(crate) meta: StoreMeta,
    /// The store's snapshot files.
    pub(crate) snaps: Arc<SnapManager>,
    /// Ticks since the last snapshot file sweep.
    snap_gc_ticks: usize,
    /// Ticks since the last store heartbeat.
    pub(crate) store_heartbeat_ticks: usize,
    /// Snapshot files found stale by the last sweep: deleted if the next
    /// sweep finds them stale again (a sender may be about to open one).
    stale_snaps: BTreeSet<(SnapKind, SnapKey)>,
    /// Regions stepped since the last [`Store::handle_readies`], whose
    /// peers may have a `Ready` to handle. Empty while the driver uses only
    /// the `on_*` methods; a tick or a task result handles it first.
    pending_ready: BTreeSet<u64>,
}

impl Store {
    /// Starts the store on its engines: reads its identity and creates a
    /// peer for every region it holds (the `Normal` region states in the kv
    /// engine).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the store was never bootstrapped; a corrupt
    /// state; an engine error.
    pub fn start(cfg: Config, engines: Engines, snaps: Arc<SnapManager>) -> Result<Store> {
        let ident = load_store_ident(&engines)?.ok_or_else(|| {
            Error::Invalid("the store is not bootstrapped (no store ident)".into())
        })?;
        let mut store = Store {
            store_id: ident.store_id,
            cfg,
            engines,
            peers: BTreeMap::new(),
            meta: StoreMeta::default(),
            snaps,
            snap_gc_ticks: 0,
            store_heartbeat_ticks: 0,
            stale_snaps: BTreeSet::new(),
            pending_ready: BTreeSet::new(),
        };
        let (start, end) = keys::region_state_range();
        let snap = store.engines.kv.snapshot();
        for kv in snap.iter(Cf::Meta, &start, Some(&end)) {
            let (key, value) = kv?;
            let state = RegionLocalState::decode(value.as_slice()).map_err(|e| {
                Error::Corrupt(format!("region state at {key:02x?} does not decode: {e}"))
            })?;
            if state.state() == PeerState::Tombstone {
                continue;
            }
            let applying = state.state() == PeerState::Applying;
            let region = state.region.ok_or_else(|| {
                Error::Corrupt(format!("region state at {key:02x?} has no region"))
            })?;
            if !region.peers.iter().any(|p| p.store_id == store.store_id) {
                // The peer applied its own removal, and the store stopped
                // before it destroyed the peer: finish that now.
                log::info!(
                    "store {}: region {} no longer has a peer here: a tombstone now",
                    store.store_id,
                    region.id
                );
                crate::lifecycle::write_tombstone(&store.engines, &region, true)?;
                continue;
            }
            let peer =
                Peer::new(store.store_id, &store.cfg, store.engines.clone(), region, applying)?;
            log::info!("store {}: {} started", store.store_id, peer.tag);
            store.meta.insert(peer.region().clone());
            store.peers.insert(peer.region_id(), peer);
        }
        Ok(store)
    }

    /// This store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The store's engines.
    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// The store's snapshot files.
    pub fn snaps(&self) -> &Arc<SnapManager> {
        &self.snaps
    }

    /// The peer of region `region_id`, if this store has one.
    pub fn peer(&self, region_id: u64) -> Option<&Peer> {
        self.peers.get(&region_id)
    }

    /// The store's regions, by id and by key range.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Every peer, by region id.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// A raft message from another store.
    ///
    /// # Errors
    ///
    /// An engine error while handling the peer's `Ready` (fatal for the
    /// store). Messages for another store, an unknown region or another
    /// peer id are dropped with a log line.
    pub fn on_raft_message(&mut self, msg: RaftMessage, ctx: &mut dyn Context) -> Result<()> {
        self.step_raft_message(msg, ctx)?;
        self.handle_readies(ctx)
    }

    /// [`Store::on_raft_message`] without handling the peer's `Ready`: the
    /// region waits in the batch for [`Store::handle_readies`]. A message
    /// that may change which peers the store has (one for a region without
    /// a peer here, or a snapshot) first handles the batch's Readies, so
    /// that it meets the store as the earlier inputs left it.
    ///
    /// # Errors
    ///
    /// As [`Store::on_raft_message`].
    pub fn step_raft_message(&mut self, msg: RaftMessage, ctx: &mut dyn Context) -> Result<()> {
        let is_snapshot =
            msg.message.as_ref().is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot);
        if is_snapshot || !self.peers.contains_key(&msg.region_id) {
            self.handle_readies(ctx)?;
        }
        let to = msg.to_peer.unwrap_or_default();
        if to.store_id != self.store_id {
            log::warn!("store {}: drops a message for store {}", self.store_id, to.store_id);
            return Ok(());
        }
        if !self.check_message(&msg, ctx)? || !self.maybe_create_peer(&msg)? {
            log::debug!("store {}: no peer of region {}", self.store_id, msg.region_id);
            return Ok(());
        }
        let Some(peer) = self.peers.get_mut(&msg.region_id) else { return Ok(()) };
        if peer.meta.id != to.id {
            log::debug!("{} drops a message for peer {}", peer.tag, to.id);
            return Ok(());
        }
        if let Some(from) = msg.from_peer {
            peer.remember_peer(from);
        }
        let Some(raft_msg) = msg.message else { return Ok(()) };
        if raft_msg.msg_type() == MessageType::MsgSnapshot
            && let Err(e) = Store::check_snapshot(&self.snaps, &self.meta, peer, &raft_msg)
        {
            log::warn!("{} drops a snapshot from peer {}: {e}", peer.tag, raft_msg.from);
            self.delete_refused_snapshot(msg.region_id, &raft_msg);
            return Ok(());
        }
        if let Err(e) = peer.step(raft_msg) {
            log::debug!("{} could not step a message: {e}", peer.tag);
        }
        self.pending_ready.insert(msg.region_id);
        Ok(())
    }

    /// Lets every peer stepped since the last call handle its `Ready`, in
    /// region order.
    ///
    /// # Errors
    ///
    /// An engine error (fatal for the store).
    pub fn handle_readies(&mut self, ctx: &mut dyn Context) -> Result<()> {
        while let Some(region_id) = self.pending_ready.pop_first() {
            self.on_peer_ready(region_id, ctx)?;
        }
        Ok(())
    }

    /// Deletes the received files of a snapshot that was refused, so that
    /// the leader's next copy is received afresh (and nothing leaks).
    fn delete_refused_snapshot(&self, region_id: u64, msg: &raft::eraftpb::Message) {
        let meta = msg.snapshot.as_ref().and_then(|s| s.metadata.as_ref());
        let Some(meta) = meta.filter(|m| m.index > 0) else { return };
        let key = SnapKey::new(region_id, meta.term, meta.index);
        if let Err(e) = self.snaps.delete(key, SnapKind::Received) {
            log::warn!("store {}: a refused snapshot {key} stays on disk: {e}", self.store_id());
        }
    }

    /// A snapshot message is only stepped into raft if its data decodes,
    /// is for this region, its files were received intact (the driver
    /// receives them before it delivers the message; a corrupt transfer
    /// never gets this far), and its range overlaps no other region of
    /// this store (`meta`).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] saying what is wrong.
    pub fn check_snapshot(
        snaps: &SnapManager,
        store_meta: &StoreMeta,
        peer: &Peer,
        msg: &raft::eraftpb::Message,
    ) -> Result<()> {
        let snap = msg.snapshot.clone().unwrap_or_default();
        let meta = snap.metadata.unwrap_or_default();
        if meta.index == 0 {
            return Err(Error::Invalid("the snapshot has no metadata".into()));
        }
        let data = RaftSnapshotData::decode(snap.data.as_slice())
            .map_err(|e| Error::Invalid(format!("the snapshot data does not decode: {e}")))?;
        let region_id = data.region.as_ref().map_or(0, |r| r.id);
        if region_id != peer.region_id() {
            return Err(Error::Invalid(format!("the snapshot is of region {region_id}")));
        }
        let key = SnapKey::new(region_id, meta.term, meta.index);
        if !snaps.exists(key, SnapKind::Received) {
            return Err(Error::Invalid(format!("the files of snapshot {key} were not received")));
        }
        let range = data.region.unwrap_or_default();
        // A snapshot taken before this peer was added (generated for
        // another follower, then sent here) replays the log from before
        // the peer joined: a split in that log would make a region with no
        // peer on this store. The leader sends a newer one.
        if !range.peers.iter().any(|p| p.id == peer.meta.id) {
            return Err(Error::Invalid(format!(
                "the snapshot (at {}) is of region {region_id} before peer {} joined it",
                meta.index, peer.meta.id
            )));
        }
        let overlap: Vec<u64> = store_meta
            .overlapping(&range.start_key, &range.end_key)
            .into_iter()
            .filter(|&id| id != region_id)
            .collect();
        if !overlap.is_empty() {
            return Err(Error::Invalid(format!(
                "the snapshot's range overlaps regions {overlap:?} of this store"
            )));
        }
        Ok(())
    }

    /// A client command, answered through [`Context::respond`] with
    /// `token` (at once for an error, after it applies otherwise). A
    /// command refused for a stale epoch learns the region's right-hand
    /// neighbour on this store as well (TinyKV's sibling region): after a
    /// split, that is where the rest of the client's old range went.
    ///
    /// # Errors
    ///
    /// An engine error (fatal for the store).
    pub fn on_command(
        &mut self,
        req: RaftCmdRequest,
        token: Token,
        ctx: &mut dyn Context,
    ) -> Result<()> {
        self.propose(req, token, ctx);
        self.handle_readies(ctx)
    }

    /// [`Store::on_command`] without handling the peer's `Ready`: the
    /// region waits in the batch for [`Store::handle_readies`].
    pub fn propose(&mut self, req: RaftCmdRequest, token: Token, ctx: &mut dyn Context) {
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let Some(peer) = self.peers.get_mut(&region_id) else {
            let resp = Error::RegionNotFound(region_id).into_response(0);
            ctx.respond(token, CmdResponse::new(resp));
            return;
        };
        let end = &peer.region().end_key;
        let sibling = (!end.is_empty())
            .then(|| self.meta.region_for_key(end))
            .flatten()
            .filter(|r| r.start_key == *end)
            .cloned();
        let mut with_sibling = SiblingContext { inner: ctx, sibling };
        peer.propose_command(req, token, &mut with_sibling);
        self.pending_ready.insert(region_id);
    }

    /// One raft tick for every peer, and one for the store's heartbeat.
    ///
    /// # Errors
    ///
    /// An engine error (fatal for the store).
    pub fn on_tick(&mut self, ctx: &mut dyn Context) -> Result<()> {
        self.handle_readies(ctx)?;
        let region_ids: Vec<u64> = self.peers.keys().copied().collect();
        for region_id in region_ids {
            if let Some(peer) = self.peers.get_mut(&region_id) {
                peer.tick(ctx);
            }
            self.on_peer_ready(region_id, ctx)?;
        }
        self.on_store_heartbeat_tick(ctx);
        self.snap_gc_ticks += 1;
        if self.snap_gc_ticks >= self.cfg.snap_gc_tick_interval {
            self.snap_gc_ticks = 0;
            self.gc_snapshots();
        }
        Ok(())
    }

    /// The result of a background task (see [`crate::worker`]).
    ///
    /// # Errors
    ///
    /// A snapshot that could not be applied (its data is half written:
    /// fatal for the store); an engine error.
    pub fn on_task_result(&mut self, result: TaskResult, ctx: &mut dyn Context) -> Result<()> {
        self.handle_readies(ctx)?;
        let region_id = result.region_id();
        let Some(peer) = self.peers.get_mut(&region_id) else {
            log::debug!("store {}: no peer for {result:?}", self.store_id);
            return Ok(());
        };
        if peer.meta.id != result.peer_id() {
            // The peer that asked was destroyed, and the region has
            // another peer here now: the result is not its.
            log::info!("{} drops {result:?}, which was for peer {}", peer.tag, result.peer_id());
            return Ok(());
        }
        match result {
            TaskResult::SnapshotGenerated { result, .. } => {
                peer.on_snapshot_generated(result);
                self.on_peer_ready(region_id, ctx)
            }
            TaskResult::SnapshotApplied { key, result, .. } => {
                peer.on_snapshot_applied(key, result)?;
                self.on_peer_ready(region_id, ctx)
            }
            TaskResult::SplitChecked { region, result, .. } => {
                peer.on_split_checked(region, result, ctx);
                Ok(())
            }
            TaskResult::RaftLogGcDone { result, .. } => {
                if let Err(e) = result {
                    log::warn!("{} raft log GC failed (the next one retries): {e}", peer.tag);
                }
                Ok(())
            }
        }
    }

    /// Lets the peer of `region_id` handle its `Ready`, then carries out
    /// what it asked of the store ([`StoreEffect`]s).
    pub(crate) fn on_peer_ready(&mut self, region_id: u64, ctx: &mut dyn Context) -> Result<()> {
        let Some(peer) = self.peers.get_mut(&region_id) else { return Ok(()) };
        let result = peer.on_ready(ctx);
        let effects = peer.take_store_effects();
        if effects.is_empty() {
            return result;
        }
        for effect in effects {
            self.apply_effect(effect, ctx)?;
        }
        // (Several changes may apply in one Ready: only the last region
        // is the peer's now.)
        debug_assert_eq!(
            self.meta.region(region_id),
            self.peers.get(&region_id).map(|p| p.region()),
            "store {}: the meta's region {region_id} is not its peer's",
            self.store_id
        );
        result
    }

    /// Carries out one peer's [`StoreEffect`]: the only place where the
    /// store's meta changes after the store started.
    ///
    /// # Errors
    ///
    /// An engine error destroying a peer.
    fn apply_effect(&mut self, effect: StoreEffect, ctx: &mut dyn Context) -> Result<()> {
        match effect {
            StoreEffect::RegionChanged(region) => {
                if !self.peers.contains_key(&region.id) {
                    // Destroyed by an earlier effect of the same Ready.
                    return Ok(());
                }
                if self.meta.region(region.id).is_some() {
                    self.meta.update(region);
                } else {
                    self.meta.insert(region);
                }
                Ok(())
            }
            StoreEffect::SplitCreated { region, campaign } => {
                self.create_split_peer(region, campaign, ctx)
            }
            StoreEffect::Destroy { region_id, peer_id } => {
                self.on_destroy_effect(region_id, peer_id)
            }
        }
    }

    /// Deletes snapshot files nobody needs: a received snapshot that its
    /// peer has applied or moved past (or whose region has no peer here),
    /// a generated one that its peer does not hold for raft. A file is
    /// deleted when two sweeps in a row find it stale and unused.
    pub fn gc_snapshots(&mut self) {
        let listed = match self.snaps.list() {
            Ok(listed) => listed,
            Err(e) => {
                log::warn!("store {}: cannot list snapshot files: {e}", self.store_id);
                return;
            }
        };
        let mut stale = BTreeSet::new();
        for (key, kind) in listed {
            if !self.snaps.in_use(key, kind) && self.snapshot_is_stale(key, kind) {
                stale.insert((kind, key));
            }
        }
        for &(kind, key) in stale.intersection(&self.stale_snaps) {
            match self.snaps.delete(key, kind) {
                Ok(true) => log::debug!("store {}: deleted stale snapshot {key}", self.store_id),
                Ok(false) => {}
                Err(e) => log::warn!("store {}: cannot delete snapshot {key}: {e}", self.store_id),
            }
        }
        self.stale_snaps = stale;
    }

    fn snapshot_is_stale(&self, key: SnapKey, kind: SnapKind) -> bool {
        let Some(peer) = self.peers.get(&key.region_id) else { return true };
        let ps = peer.storage();
        match kind {
            SnapKind::Received => {
                let applying = peer.applying_snapshot && ps.truncated().index == key.index;
                !applying && key.index <= ps.applied_index()
            }
            SnapKind::Generated => match ps.gen_state() {
                GenState::Ready(snap) => snap.metadata.is_none_or(|m| m.index != key.index),
                GenState::Generating => false,
                _ => true,
            },
        }
    }
}

/// Adds the region's right-hand neighbour to every `epoch_not_match`
/// answer (see [`Store::on_command`]); passes everything else through.
struct SiblingContext<'a> {
    inner: &'a mut dyn Context,
    sibling: Option<tinykv_proto::metapb::Region>,
}

impl Context for SiblingContext<'_> {
    fn send(&mut self, msg: RaftMessage) {
        self.inner.send(msg);
    }

    fn respond(&mut self, token: Token, mut resp: CmdResponse) {
        let error = resp.resp.header.as_mut().and_then(|h| h.error.as_mut());
        if let (Some(sibling), Some(epoch)) =
            (&self.sibling, error.and_then(|e| e.epoch_not_match.as_mut()))
            && !epoch.current_regions.iter().any(|r| r.id == sibling.id)
        {
            epoch.current_regions.push(sibling.clone());
        }
        self.inner.respond(token, resp);
    }

    fn schedule(&mut self, task: crate::worker::Task) {
        self.inner.schedule(task);
    }

    fn report(&mut self, task: crate::heartbeat::SchedulerTask) {
        self.inner.report(task);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tinykv_engine::MemoryDisk;
    use tinykv_proto::metapb;
    use tinykv_proto::raft_cmdpb::{CmdType, PutRequest, RaftRequestHeader, Request};

    use super::*;
    use crate::bootstrap::{bootstrap_region, bootstrap_store, first_region};
    use crate::worker::Task;

    /// Counts answers; sends nothing (the region has one peer).
    #[derive(Default)]
    struct Answers(Vec<(Token, CmdResponse)>);

    impl Context for Answers {
        fn send(&mut self, _: RaftMessage) {}
        fn respond(&mut self, token: Token, resp: CmdResponse) {
            self.0.push((token, resp));
        }
        fn schedule(&mut self, _: Task) {}
        fn report(&mut self, _: crate::heartbeat::SchedulerTask) {}
    }

    /// Store 1 with region 1 (one peer, id 1), ticked until it leads;
    /// and its raft engine's disk.
    fn leader(dir: &std::path::Path) -> (Store, MemoryDisk) {
        let raft_disk = MemoryDisk::new();
        let engines = Engines::new(Arc::new(MemoryDisk::new().open()), Arc::new(raft_disk.open()));
        bootstrap_store(&engines, 1, 1).unwrap();
        bootstrap_region(&engines, &first_region(1, &[(1, 1)])).unwrap();
        let snaps = Arc::new(SnapManager::open(dir).unwrap());
        let mut store = Store::start(Config::default(), engines, snaps).unwrap();
        let mut ctx = Answers::default();
        for _ in 0..100 {
            store.on_tick(&mut ctx).unwrap();
        }
        assert!(store.peer(1).unwrap().is_leader(), "store 1's only peer of region 1 leads");
        (store, raft_disk)
    }

    fn put(store: &Store, key: &[u8]) -> RaftCmdRequest {
        let region = store.peer(1).unwrap().region().clone();
        let request = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest { cf: "default".into(), key: key.to_vec(), value: b"v".to_vec() }),
            ..Default::default()
        };
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 1,
                peer: Some(metapb::Peer { id: 1, store_id: 1 }),
                region_epoch: region.region_epoch,
                term: 0,
            }),
            requests: vec![request],
            admin_request: None,
        }
    }

    #[test]
    fn a_batch_of_proposals_shares_one_synced_raft_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, raft_disk) = leader(dir.path());
        let mut ctx = Answers::default();
        let before = raft_disk.stats().syncs;
        for token in 1..=8 {
            let req = put(&store, format!("k{token}").as_bytes());
            store.propose(req, token, &mut ctx);
        }
        assert!(ctx.0.is_empty(), "nothing is answered before the batch's Readies");
        store.handle_readies(&mut ctx).unwrap();
        assert_eq!(ctx.0.len(), 8, "every proposal of the batch is answered: {:?}", ctx.0);
        assert_eq!(raft_disk.stats().syncs - before, 1, "one synced raft write for the batch");

        let before = raft_disk.stats().syncs;
        for token in 9..=16 {
            let req = put(&store, format!("k{token}").as_bytes());
            store.on_command(req, token, &mut ctx).unwrap();
        }
        assert_eq!(ctx.0.len(), 16);
        assert_eq!(raft_disk.stats().syncs - before, 8, "one synced raft write per on_command");
    }
}
