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

use raft::eraftpb::MessageType;
use tinykv_engine::keys;
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};

use crate::engines::get_msg;
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

    /// The region's state on this store if it is `Tombstone` (a peer of it
    /// was removed from here).
    fn tombstone(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        let state: Option<RegionLocalState> =
            get_msg(self.engines().kv.as_ref(), &keys::region_state_key(region_id))?;
        Ok(state.filter(|s| s.state() == PeerState::Tombstone))
    }
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
    }

    /// Store 1 with region 1 over ["", "m") (peers 1, 2, 3 on stores 1,
    /// 2, 3).
    fn store(dir: &std::path::Path) -> Store {
        let engines =
            Engines::new(Arc::new(MemoryDisk::new().open()), Arc::new(MemoryDisk::new().open()));
        bootstrap_store(&engines, 1, 1).unwrap();
        let mut region = first_region(1, &[(1, 1), (2, 2), (3, 3)]);
        region.end_key = b"m".to_vec();
        bootstrap_region(&engines, &region).unwrap();
        let snaps = Arc::new(SnapManager::open(dir).unwrap());
        Store::start(Config::default(), engines, snaps).unwrap()
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
}
