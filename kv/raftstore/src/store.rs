//! The store: every peer on this store, and the inputs that drive them.
//!
//! The driver calls one of the `on_*` methods per input; each routes the
//! input to its peer (by region id) and then lets the peer handle its
//! `Ready`. Peers are kept in a `BTreeMap`, so ticking them goes in region
//! order and a simulated run depends only on its seed.

use std::collections::BTreeMap;

use tinykv_engine::Cf;
use tinykv_engine::keys;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};

use crate::bootstrap::load_store_ident;
use crate::config::Config;
use crate::context::{CmdResponse, Context, Token};
use crate::engines::Engines;
use crate::error::{Error, Result};
use crate::peer::Peer;
use prost::Message as _;

/// One store. See the module docs.
#[derive(Debug)]
pub struct Store {
    store_id: u64,
    cfg: Config,
    engines: Engines,
    /// The peers, by region id.
    peers: BTreeMap<u64, Peer>,
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
    pub fn start(cfg: Config, engines: Engines) -> Result<Store> {
        let ident = load_store_ident(&engines)?.ok_or_else(|| {
            Error::Invalid("the store is not bootstrapped (no store ident)".into())
        })?;
        let mut store = Store { store_id: ident.store_id, cfg, engines, peers: BTreeMap::new() };
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
            let region = state.region.ok_or_else(|| {
                Error::Corrupt(format!("region state at {key:02x?} has no region"))
            })?;
            let peer = Peer::new(store.store_id, &store.cfg, store.engines.clone(), region)?;
            log::info!("store {}: {} started", store.store_id, peer.tag);
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

    /// The peer of region `region_id`, if this store has one.
    pub fn peer(&self, region_id: u64) -> Option<&Peer> {
        self.peers.get(&region_id)
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
        let to = msg.to_peer.unwrap_or_default();
        if to.store_id != self.store_id {
            log::warn!("store {}: drops a message for store {}", self.store_id, to.store_id);
            return Ok(());
        }
        let Some(peer) = self.peers.get_mut(&msg.region_id) else {
            log::debug!("store {}: no peer of region {}", self.store_id, msg.region_id);
            return Ok(());
        };
        if peer.meta.id != to.id {
            log::debug!("{} drops a message for peer {}", peer.tag, to.id);
            return Ok(());
        }
        let Some(raft_msg) = msg.message else { return Ok(()) };
        if let Err(e) = peer.step(raft_msg) {
            log::debug!("{} could not step a message: {e}", peer.tag);
        }
        peer.handle_raft_ready(ctx)
    }

    /// A client command, answered through [`Context::respond`] with
    /// `token` (at once for an error, after it applies otherwise).
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
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let Some(peer) = self.peers.get_mut(&region_id) else {
            let resp = Error::RegionNotFound(region_id).into_response(0);
            ctx.respond(token, CmdResponse::new(resp));
            return Ok(());
        };
        peer.propose(req, token, ctx);
        peer.handle_raft_ready(ctx)
    }

    /// One raft tick for every peer.
    ///
    /// # Errors
    ///
    /// An engine error (fatal for the store).
    pub fn on_tick(&mut self, ctx: &mut dyn Context) -> Result<()> {
        for peer in self.peers.values_mut() {
            peer.tick();
            peer.handle_raft_ready(ctx)?;
        }
        Ok(())
    }
}
