//! The life of a peer on a store (given code): created for the first
//! message of a region the store does not have (lab 3b).
//!
//! When a leader adds a peer on a store that has no data of the region,
//! the store learns of it from the leader's first message to that peer.
//! [`Store::maybe_create_peer`] decides whether to create it then:
//!
//! - only for a message a leader (or a candidate) sends to a member:
//!   a heartbeat, an append, a snapshot or a vote request; never for a
//!   response or a tombstone notice;
//! - not if this store once held a peer of the region that was removed
//!   (its region state is `Tombstone`) and the message's epoch is not
//!   newer in `conf_ver` than the removed one: the message is stale, from
//!   before the removal, and must not bring the peer back;
//! - not if the message's range overlaps a region this store has: the
//!   two disagree about who owns those keys, and a snapshot will settle it.
//!
//! The new peer is *uninitialized* ([`Peer::uninitialized`]): no range,
//! no members, an empty log. It answers the leader, which finds the
//! peer's log behind its own compacted start and sends a snapshot; when
//! that snapshot is stored the peer knows its region, and the store adds
//! it to its meta ([`crate::effect::StoreEffect::RegionChanged`]).
//! [`Store::check_snapshot`] refuses a snapshot whose range overlaps
//! another region of the store.
//!
//! A removed peer does not always learn of its removal: it may have been
//! cut off when the removal committed, or crashed. [`Store::check_message`]
//! finds such stale peers from the messages around them (TinyKV's and
//! TiKV's rules, since peer ids only grow):
//!
//! - a message for a *newer* peer id of the region than the local peer
//!   means the local one was removed and a new one added here: the local
//!   peer is destroyed, and the message creates the new one;
//! - a message for an *older* peer id is for a peer already gone: dropped;
//! - a message *from* a peer that is not in the local region, with an
//!   older epoch, comes from a removed peer that keeps campaigning: it is
//!   answered with a tombstone notice (`is_tombstone`), and a peer that
//!   gets one with a newer epoch than its own destroys itself.
//!
//! A peer removed from its region is destroyed ([`Store::destroy_peer`],
//! asked for with [`StoreEffect::Destroy`](crate::effect::StoreEffect::Destroy)): its region state becomes
//! `Tombstone` with the region's last epoch (what makes later, stale
//! messages harmless), its data range, apply state, raft state and log
//! are deleted, and so are its snapshot files; the store forgets it.

use raft::eraftpb::MessageType;
use tinykv_engine::{Cf, WriteBatch, keys};
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};

use crate::context::Context;
use crate::engines::{Engines, get_msg, put_msg};
use crate::error::Result;
use crate::peer::Peer;
use crate::store::Store;

/// Whether a message of this type may create a peer.
fn may_create(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgHeartbeat
            | MessageType::MsgAppend
            | MessageType::MsgSnapshot
            | MessageType::MsgRequestVote
    )
}

impl Store {
    /// Handles the stale-peer rules of the module docs before `msg` goes
    /// to its peer; returns whether the message should go on (to
    /// [`maybe_create_peer`](Self::maybe_create_peer) and the peer).
    ///
    /// # Errors
    ///
    /// An engine error destroying a stale peer.
    pub fn check_message(&mut self, msg: &RaftMessage, ctx: &mut dyn Context) -> Result<bool> {
        let region_id = msg.region_id;
        let Some(to) = msg.to_peer else { return Ok(false) };
        let Some(local) = self.peers.get(&region_id) else { return Ok(!msg.is_tombstone) };
        let local_id = local.meta.id;
        let local_epoch = local.region().region_epoch.unwrap_or_default();
        let msg_epoch = msg.region_epoch.unwrap_or_default();
        if to.id < local_id {
            log::debug!("{} drops a message for its older peer {}", local.tag, to.id);
            return Ok(false);
        }
        let removed = if msg.is_tombstone {
            // Only a member with a newer membership says so.
            to.id == local_id && msg_epoch.conf_ver > local_epoch.conf_ver
        } else {
            to.id > local_id
        };
        if removed {
            if local.applying_snapshot {
                log::info!("{} is stale, but a snapshot is being applied: later", local.tag);
                return Ok(false);
            }
            log::info!(
                "{} was removed from region {region_id} without learning it ({}): destroys it",
                local.tag,
                if msg.is_tombstone { "a member's notice" } else { "a message for a newer peer" }
            );
            self.destroy_peer(region_id, local_id)?;
            return Ok(!msg.is_tombstone);
        }
        if msg.is_tombstone {
            return Ok(false);
        }
        let from = msg.from_peer.unwrap_or_default();
        let is_member = local.region().peers.iter().any(|p| p.id == from.id);
        let older =
            msg_epoch.conf_ver < local_epoch.conf_ver || msg_epoch.version < local_epoch.version;
        if !is_member && older && local.is_initialized() {
            log::debug!(
                "{} tells removed peer {} on store {} so",
                local.tag,
                from.id,
                from.store_id
            );
            ctx.send(RaftMessage {
                region_id,
                from_peer: Some(local.meta),
                to_peer: Some(from),
                region_epoch: Some(local_epoch),
                is_tombstone: true,
                ..Default::default()
            });
            return Ok(false);
        }
        Ok(true)
    }

    /// Creates an uninitialized peer for `msg`'s region if the rules of
    /// the module docs allow it. Returns whether the store now has a peer
    /// for the region.
    ///
    /// # Errors
    ///
    /// An engine error reading the region's state, or a corrupt state.
    pub fn maybe_create_peer(&mut self, msg: &RaftMessage) -> Result<bool> {
        let region_id = msg.region_id;
        if self.peer(region_id).is_some() {
            return Ok(true);
        }
        let (Some(to), Some(raft_msg)) = (msg.to_peer, msg.message.as_ref()) else {
            return Ok(false);
        };
        let store = self.store_id();
        if msg.is_tombstone || !may_create(raft_msg.msg_type()) {
            log::debug!(
                "store {store}: a {:?} for region {region_id} creates no peer",
                raft_msg.msg_type()
            );
            return Ok(false);
        }
        if let Some(removed) = self.tombstone(region_id)? {
            let removed_conf_ver =
                removed.region.and_then(|r| r.region_epoch).map_or(0, |e| e.conf_ver);
            let msg_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
            if msg_conf_ver <= removed_conf_ver {
                log::info!(
                    "store {store}: drops a stale {:?} for removed region {region_id} \
                     (conf_ver {msg_conf_ver}, removed at {removed_conf_ver})",
                    raft_msg.msg_type()
                );
                return Ok(false);
            }
        }
        let overlap = self.meta().overlapping(&msg.start_key, &msg.end_key);
        if !overlap.is_empty() {
            log::info!(
                "store {store}: creates no peer of region {region_id}: its range overlaps \
                 regions {overlap:?} of this store"
            );
            return Ok(false);
        }
        let peer = Peer::uninitialized(to, &self.cfg, self.engines().clone(), region_id)?;
        log::info!("store {store}: {} created (uninitialized)", peer.tag);
        self.peers.insert(region_id, peer);
        Ok(true)
    }

    /// Destroys the peer of `region_id` whose id is `peer_id` (a later peer
    /// of the region with another id stays): see the module docs. The
    /// tombstone is synced before the log goes, so a crash in between
    /// leaves a tombstone and some log, which a restart ignores.
    ///
    /// # Errors
    ///
    /// An engine error (the store cannot go on then).
    pub fn destroy_peer(&mut self, region_id: u64, peer_id: u64) -> Result<()> {
        let Some(peer) = self.peers.get(&region_id) else { return Ok(()) };
        if peer.meta.id != peer_id {
            log::info!("{} is not peer {peer_id}: nothing to destroy", peer.tag);
            return Ok(());
        }
        assert!(
            !peer.applying_snapshot,
            "{} cannot be destroyed while a worker writes its snapshot's data (the worker would \
             mark the region Normal again); a peer applies no entry, so no removal, until then",
            peer.tag
        );
        let (tag, region, initialized) =
            (peer.tag.clone(), peer.region().clone(), peer.is_initialized());
        write_tombstone(self.engines(), &region, initialized)?;
        self.peers.remove(&region_id);
        self.meta.remove(region_id);
        self.delete_snapshot_files(region_id);
        log::info!(
            "store {}: {tag} destroyed; region {region_id} is a tombstone here",
            self.store_id()
        );
        Ok(())
    }

    fn delete_snapshot_files(&self, region_id: u64) {
        let listed = match self.snaps.list() {
            Ok(listed) => listed,
            Err(e) => {
                log::warn!("store {}: cannot list snapshot files: {e}", self.store_id());
                return;
            }
        };
        for (key, kind) in listed.into_iter().filter(|(key, _)| key.region_id == region_id) {
            if self.snaps.in_use(key, kind) {
                continue; // The next sweep deletes it once it is free.
            }
            if let Err(e) = self.snaps.delete(key, kind) {
                log::warn!("store {}: cannot delete snapshot {key}: {e}", self.store_id());
            }
        }
    }

    /// Creates the peer of `region`, just split off one of this store's
    /// regions ([`StoreEffect::SplitCreated`](crate::effect::StoreEffect::SplitCreated)), adds it to the meta and, if
    /// `campaign`, starts its election at once.
    ///
    /// A leader of the new region that split earlier may already have
    /// created an *uninitialized* peer of it here (its messages arrive
    /// before this store applies the split, while this store's parent
    /// peer was itself uninitialized and had no range to overlap). Such a
    /// peer has no data: the split's peer replaces it, and loads what it
    /// persisted (a vote stays a vote). If that peer is *newer* (a later
    /// id: this store's split peer was removed and a new one added), the
    /// split's peer is stale and is not created. An initialized peer of the
    /// new region cannot exist here: its range would overlap the parent's.
    /// A region removed from this store earlier (a tombstone) is not
    /// created again.
    ///
    /// # Errors
    ///
    /// An engine error, or the new peer's states cannot be read.
    pub(crate) fn create_split_peer(
        &mut self,
        region: Region,
        campaign: bool,
        ctx: &mut dyn Context,
    ) -> Result<()> {
        let (store, region_id) = (self.store_id(), region.id);
        if self.tombstone(region_id)?.is_some() {
            log::info!(
                "store {store}: region {region_id} was split off, but it is a tombstone here"
            );
            return Ok(());
        }
        let split_peer_id = region.peers.iter().find(|p| p.store_id == store).map_or(0, |p| p.id);
        if split_peer_id == 0 {
            log::error!(
                "store {store}: region {region_id} was split off without a peer here \
                 ({region:?}); creates none"
            );
            return Ok(());
        }
        if let Some(existing) = self.peers.get(&region_id) {
            assert!(
                !existing.is_initialized(),
                "store {store}: region {region_id} was split off here, but {} already holds it                  ({:?}): two regions of this store would share keys",
                existing.tag,
                existing.region()
            );
            if existing.meta.id > split_peer_id {
                log::info!(
                    "store {store}: region {region_id} was split off with peer {split_peer_id},                      but newer {} is here: the split's peer is stale",
                    existing.tag
                );
                return Ok(());
            }
            log::info!("store {store}: the split's peer replaces uninitialized {}", existing.tag);
            self.peers.remove(&region_id);
        }
        let mut peer = Peer::new(store, &self.cfg, self.engines().clone(), region, false)?;
        log::info!("store {store}: {} created by a split", peer.tag);
        if campaign && let Err(e) = peer.raft_group.campaign() {
            log::warn!("{} cannot campaign: {e}", peer.tag);
        }
        self.meta.insert(peer.region().clone());
        self.peers.insert(region_id, peer);
        self.on_peer_ready(region_id, ctx)
    }

    /// Carries out [`StoreEffect::Destroy`].
    pub(crate) fn on_destroy_effect(&mut self, region_id: u64, peer_id: u64) -> Result<()> {
        self.destroy_peer(region_id, peer_id)
    }

    /// The region's state on this store if it is `Tombstone` (a peer of it
    /// was removed from here).
    fn tombstone(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        let state: Option<RegionLocalState> =
            get_msg(self.engines().kv.as_ref(), &keys::region_state_key(region_id))?;
        Ok(state.filter(|s| s.state() == PeerState::Tombstone))
    }
}

/// The kv side of a destroyed peer, synced: the `Tombstone` state with the
/// region's last epoch, no apply state, no data in its range (if it ever
/// had one); then the raft side: no raft state, no log.
pub(crate) fn write_tombstone(engines: &Engines, region: &Region, initialized: bool) -> Result<()> {
    let mut kv_wb = WriteBatch::new();
    if initialized {
        let snap = engines.kv.snapshot();
        let end = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
        for cf in Cf::DATA {
            for pair in snap.iter(cf, &region.start_key, end) {
                kv_wb.delete(cf, &pair?.0);
            }
        }
    }
    kv_wb.delete(Cf::Meta, &keys::apply_state_key(region.id));
    let state =
        RegionLocalState { state: PeerState::Tombstone as i32, region: Some(region.clone()) };
    put_msg(&mut kv_wb, &keys::region_state_key(region.id), &state);
    engines.kv.write(kv_wb.sync())?;
    let mut raft_wb = WriteBatch::new();
    let (start, end) = keys::raft_log_range(region.id);
    for pair in engines.raft.snapshot().iter(Cf::Meta, &start, Some(&end)) {
        raft_wb.delete(Cf::Meta, &pair?.0);
    }
    raft_wb.delete(Cf::Meta, &keys::raft_state_key(region.id));
    engines.raft.write(raft_wb.sync())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tinykv_engine::{MemoryDisk, WriteBatch};
    use tinykv_proto::eraftpb;
    use tinykv_proto::metapb::{self, Region, RegionEpoch};
    use tinykv_proto::raft_serverpb::RaftMessage;

    use super::*;
    use crate::bootstrap::{bootstrap_region, bootstrap_store, first_region};
    use crate::config::Config;
    use crate::context::{CmdResponse, Context, Token};
    use crate::engines::{Engines, put_msg};
    use crate::snap::SnapManager;
    use crate::worker::Task;

    #[derive(Default)]
    struct Recorder {
        sent: Vec<RaftMessage>,
    }

    impl Context for Recorder {
        fn send(&mut self, msg: RaftMessage) {
            self.sent.push(msg);
        }
        fn respond(&mut self, _: Token, _: CmdResponse) {}
        fn schedule(&mut self, _: Task) {}
        fn report(&mut self, _: crate::heartbeat::SchedulerTask) {}
    }

    /// The engines of store 1 with region 1 over ["", "m") (peers 1, 2, 3
    /// on stores 1, 2, 3).
    fn engines() -> Engines {
        let engines =
            Engines::new(Arc::new(MemoryDisk::new().open()), Arc::new(MemoryDisk::new().open()));
        bootstrap_store(&engines, 1, 1).unwrap();
        let mut region = first_region(1, &[(1, 1), (2, 2), (3, 3)]);
        region.end_key = b"m".to_vec();
        bootstrap_region(&engines, &region).unwrap();
        engines
    }

    fn start(engines: &Engines, dir: &std::path::Path) -> Store {
        let snaps = Arc::new(SnapManager::open(dir).unwrap());
        Store::start(Config::default(), engines.clone(), snaps).unwrap()
    }

    fn store(dir: &std::path::Path) -> Store {
        start(&engines(), dir)
    }

    /// A heartbeat from peer 20 on store 2 to peer 21 on this store, for
    /// region 2 over [start, end) at `conf_ver`.
    fn heartbeat(start: &[u8], end: &[u8], conf_ver: u64) -> RaftMessage {
        let message = eraftpb::Message {
            msg_type: MessageType::MsgHeartbeat as i32,
            from: 20,
            to: 21,
            term: 6,
            ..Default::default()
        };
        RaftMessage {
            region_id: 2,
            from_peer: Some(metapb::Peer { id: 20, store_id: 2 }),
            to_peer: Some(metapb::Peer { id: 21, store_id: 1 }),
            message: Some(message),
            region_epoch: Some(RegionEpoch { conf_ver, version: 1 }),
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_leaders_first_message_creates_an_uninitialized_peer() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let mut ctx = Recorder::default();
        store.on_raft_message(heartbeat(b"m", b"", 3), &mut ctx).unwrap();
        let peer = store.peer(2).expect("a peer of region 2");
        assert!(!peer.is_initialized());
        assert_eq!(peer.meta, metapb::Peer { id: 21, store_id: 1 });
        assert_eq!(store.meta().region(2), None, "an uninitialized peer is in no range");
        // It answers the leader (a heartbeat response at the leader's term).
        let resp = ctx.sent.iter().find(|m| m.region_id == 2).expect("an answer");
        let inner = resp.message.as_ref().unwrap();
        assert_eq!(
            (inner.msg_type(), inner.to, inner.term),
            (MessageType::MsgHeartbeatResponse, 20, 6)
        );
    }

    #[test]
    fn an_overlapping_or_response_message_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let mut ctx = Recorder::default();
        store.on_raft_message(heartbeat(b"a", b"z", 3), &mut ctx).unwrap();
        assert!(store.peer(2).is_none(), "[a, z) overlaps region 1's [\"\", m)");
        let mut response = heartbeat(b"m", b"", 3);
        response.message.as_mut().unwrap().msg_type = MessageType::MsgHeartbeatResponse as i32;
        store.on_raft_message(response, &mut ctx).unwrap();
        assert!(store.peer(2).is_none(), "a response creates no peer");
    }

    #[test]
    fn a_stale_message_does_not_bring_back_a_removed_peer() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let removed = Region {
            id: 2,
            start_key: b"m".to_vec(),
            region_epoch: Some(RegionEpoch { conf_ver: 4, version: 1 }),
            ..Default::default()
        };
        let state = RegionLocalState { state: PeerState::Tombstone as i32, region: Some(removed) };
        let mut wb = WriteBatch::new();
        put_msg(&mut wb, &keys::region_state_key(2), &state);
        store.engines().kv.write(wb).unwrap();
        let mut ctx = Recorder::default();
        for conf_ver in [3, 4] {
            store.on_raft_message(heartbeat(b"m", b"", conf_ver), &mut ctx).unwrap();
            assert!(store.peer(2).is_none(), "conf_ver {conf_ver} is not newer than the removal");
        }
        store.on_raft_message(heartbeat(b"m", b"", 5), &mut ctx).unwrap();
        assert!(store.peer(2).is_some(), "a newer epoch (re-added) creates the peer");
    }

    #[test]
    fn a_destroyed_peer_leaves_a_tombstone_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let engines = engines();
        let mut wb = WriteBatch::new();
        for (cf, key) in [(Cf::Default, &b"a"[..]), (Cf::Write, b"k"), (Cf::Default, b"x")] {
            wb.put(cf, key, b"v");
        }
        engines.kv.write(wb).unwrap();
        let mut store = start(&engines, dir.path());
        store.destroy_peer(1, 99).unwrap();
        assert!(store.peer(1).is_some(), "peer 99 is not region 1's peer here: nothing happens");
        store.destroy_peer(1, 1).unwrap();
        assert!(store.peer(1).is_none() && store.meta().is_empty());
        let kv = engines.kv.snapshot();
        let left: Vec<Vec<u8>> = Cf::DATA
            .into_iter()
            .flat_map(|cf| kv.iter(cf, b"", None).map(|p| p.unwrap().0).collect::<Vec<_>>())
            .collect();
        assert_eq!(left, vec![b"x".to_vec()], "the region's range [\"\", m) is empty, x stays");
        assert!(kv.get(Cf::Meta, &keys::apply_state_key(1)).unwrap().is_none());
        let state: RegionLocalState =
            get_msg(engines.kv.as_ref(), &keys::region_state_key(1)).unwrap().unwrap();
        assert_eq!(state.state(), PeerState::Tombstone);
        assert_eq!(state.region.and_then(|r| r.region_epoch).map(|e| e.conf_ver), Some(1));
        let raft = engines.raft.snapshot();
        let (start_key, end_key) = keys::raft_log_range(1);
        assert_eq!(raft.iter(Cf::Meta, &start_key, Some(&end_key)).count(), 0, "no log left");
        assert!(raft.get(Cf::Meta, &keys::raft_state_key(1)).unwrap().is_none());

        // The tombstone survives a restart, and a stale message for the
        // old peer does not bring it back.
        drop(store);
        let mut store = start(&engines, dir.path());
        assert!(store.peer(1).is_none(), "a tombstone starts no peer");
        let mut stale = heartbeat(b"", b"m", 1);
        stale.region_id = 1;
        stale.to_peer = Some(metapb::Peer { id: 1, store_id: 1 });
        store.on_raft_message(stale, &mut Recorder::default()).unwrap();
        assert!(store.peer(1).is_none(), "a message from before the removal creates nothing");
    }
}
