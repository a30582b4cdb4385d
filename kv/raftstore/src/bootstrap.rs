//! Bootstrapping: a store's identity and the first region.
//!
//! A brand-new cluster starts with one region covering every key, with one
//! peer on each initial store. Every initial store writes the same region
//! locally before it starts ([`bootstrap_region`]): its log starts at
//! index [`RAFT_INIT_LOG_INDEX`] and term [`RAFT_INIT_LOG_TERM`], as if a
//! snapshot at that point held the membership. A peer created later (by a
//! conf change) starts empty and receives a snapshot instead.

use tinykv_engine::keys::{self, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM, STORE_IDENT_KEY};
use tinykv_engine::{Cf, WriteBatch};
use tinykv_proto::eraftpb::HardState;
use tinykv_proto::metapb::{Peer, Region, RegionEpoch};
use tinykv_proto::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState, StoreIdent,
};

use crate::engines::{Engines, get_msg, put_msg};
use crate::error::{Error, Result};

/// The region a new cluster starts with: id `region_id`, every key, epoch
/// `1/1`, and the given `(peer id, store id)` peers.
pub fn first_region(region_id: u64, peers: &[(u64, u64)]) -> Region {
    Region {
        id: region_id,
        start_key: vec![],
        end_key: vec![],
        region_epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }),
        peers: peers.iter().map(|&(id, store_id)| Peer { id, store_id }).collect(),
    }
}

/// The identity written when the store was bootstrapped, if it was.
///
/// # Errors
///
/// The engine's error, or a corrupt value.
pub fn load_store_ident(engines: &Engines) -> Result<Option<StoreIdent>> {
    get_msg(engines.kv.as_ref(), &STORE_IDENT_KEY)
}

/// Writes the store's identity (synced).
///
/// # Errors
///
/// [`Error::Invalid`] if the store was already bootstrapped with another
/// identity; the engine's error.
pub fn bootstrap_store(engines: &Engines, cluster_id: u64, store_id: u64) -> Result<()> {
    let ident = StoreIdent { cluster_id, store_id };
    match load_store_ident(engines)? {
        Some(old) if old == ident => return Ok(()),
        Some(old) => {
            return Err(Error::Invalid(format!(
                "the store was bootstrapped as store {} of cluster {}, not store {store_id} of \
                 cluster {cluster_id}",
                old.store_id, old.cluster_id
            )));
        }
        None => {}
    }
    let mut wb = WriteBatch::new();
    put_msg(&mut wb, &STORE_IDENT_KEY, &ident);
    engines.kv.write(wb.sync())?;
    Ok(())
}

/// Writes the initial states of `region` on this store (synced): region
/// state, apply state (applied and truncated at index 5, term 5) and raft
/// state (term 5, commit 5, log ending at index 5).
///
/// # Errors
///
/// [`Error::Invalid`] if the store already has a peer of this region; the
/// engine's error.
pub fn bootstrap_region(engines: &Engines, region: &Region) -> Result<()> {
    let region_key = keys::region_state_key(region.id);
    if engines.kv.get(Cf::Meta, &region_key)?.is_some() {
        return Err(Error::Invalid(format!("region {} is already bootstrapped here", region.id)));
    }
    let mut raft_wb = WriteBatch::new();
    let raft_state = RaftLocalState {
        hard_state: Some(HardState {
            term: RAFT_INIT_LOG_TERM,
            vote: 0,
            commit: RAFT_INIT_LOG_INDEX,
        }),
        last_index: RAFT_INIT_LOG_INDEX,
        last_term: RAFT_INIT_LOG_TERM,
    };
    put_msg(&mut raft_wb, &keys::raft_state_key(region.id), &raft_state);
    engines.raft.write(raft_wb.sync())?;

    let mut kv_wb = WriteBatch::new();
    let apply_state = RaftApplyState {
        applied_index: RAFT_INIT_LOG_INDEX,
        truncated_state: Some(RaftTruncatedState {
            index: RAFT_INIT_LOG_INDEX,
            term: RAFT_INIT_LOG_TERM,
        }),
    };
    put_msg(&mut kv_wb, &keys::apply_state_key(region.id), &apply_state);
    let region_state =
        RegionLocalState { state: PeerState::Normal as i32, region: Some(region.clone()) };
    put_msg(&mut kv_wb, &region_key, &region_state);
    engines.kv.write(kv_wb.sync())?;
    Ok(())
}

/// Where a store that is about to bootstrap a cluster through the
/// scheduler keeps the region it offers (see
/// [`prepare_bootstrap_cluster`]): local key `0x01 0x04`.
pub const PREPARE_BOOTSTRAP_KEY: [u8; 2] = [keys::LOCAL_PREFIX, 0x04];

/// The first half of bootstrapping a cluster through the scheduler
/// (TinyKV's "prepare bootstrap"): writes `region` here, and a marker
/// naming it, *before* the store offers it to the scheduler. After a crash
/// the store knows what it offered: [`load_prepared_bootstrap`] gives it
/// back, and the store either keeps it (the scheduler took it:
/// [`finish_prepared_bootstrap`]) or removes it (another store was first:
/// [`clear_prepared_bootstrap`]).
///
/// # Errors
///
/// The region is already here; an engine error.
pub fn prepare_bootstrap_cluster(engines: &Engines, region: &Region) -> Result<()> {
    let mut wb = WriteBatch::new();
    let state = RegionLocalState { state: PeerState::Normal as i32, region: Some(region.clone()) };
    put_msg(&mut wb, &PREPARE_BOOTSTRAP_KEY, &state);
    engines.kv.write(wb.sync())?;
    bootstrap_region(engines, region)
}

/// The region offered by an unfinished [`prepare_bootstrap_cluster`].
///
/// # Errors
///
/// An engine error.
pub fn load_prepared_bootstrap(engines: &Engines) -> Result<Option<Region>> {
    let state: Option<RegionLocalState> = get_msg(engines.kv.as_ref(), &PREPARE_BOOTSTRAP_KEY)?;
    Ok(state.and_then(|s| s.region))
}

/// The scheduler took the offered region: only the marker goes.
///
/// # Errors
///
/// An engine error.
pub fn finish_prepared_bootstrap(engines: &Engines) -> Result<()> {
    let mut wb = WriteBatch::new();
    wb.delete(Cf::Meta, &PREPARE_BOOTSTRAP_KEY);
    engines.kv.write(wb.sync())?;
    Ok(())
}

/// Another store bootstrapped the cluster first: the offered region goes
/// (its raft state, apply state and region state), then the marker.
///
/// # Errors
///
/// An engine error.
pub fn clear_prepared_bootstrap(engines: &Engines, region_id: u64) -> Result<()> {
    let mut raft_wb = WriteBatch::new();
    raft_wb.delete(Cf::Meta, &keys::raft_state_key(region_id));
    engines.raft.write(raft_wb.sync())?;
    let mut kv_wb = WriteBatch::new();
    kv_wb.delete(Cf::Meta, &keys::apply_state_key(region_id));
    kv_wb.delete(Cf::Meta, &keys::region_state_key(region_id));
    kv_wb.delete(Cf::Meta, &PREPARE_BOOTSTRAP_KEY);
    engines.kv.write(kv_wb.sync())?;
    Ok(())
}
