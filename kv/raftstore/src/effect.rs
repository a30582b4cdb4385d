//! What a peer asks of its store (given code).
//!
//! A peer never changes store-level state itself: the store's regions
//! ([`StoreMeta`](crate::store_meta::StoreMeta)), its peers and, from lab
//! 3b on, the creation and destruction of peers. When something a peer
//! did concerns the whole store (its region's range or members changed),
//! it queues a [`StoreEffect`]; the store takes the queue after every
//! `Ready` the peer handles ([`Peer::take_store_effects`]) and carries
//! each one out.

use tinykv_proto::metapb::Region;

use crate::peer::Peer;

/// Something a peer did that the store must follow up on.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreEffect {
    /// The peer's region is now this one (a snapshot replaced it; from lab
    /// 3b, a conf change or a split changed it): the store's meta must
    /// hold it.
    RegionChanged(Region),
    /// A split applied (lab 3b): `region`, split off this peer's region,
    /// needs a peer on this store ([`crate::store::Store`] creates it, and
    /// it campaigns at once if `campaign`: the parent's leader split it).
    SplitCreated {
        /// The new region.
        region: Region,
        /// Whether its peer here starts an election at once.
        campaign: bool,
    },
    /// This peer (`peer_id` of `region_id`) is no longer a member of its
    /// region: destroy it ([`crate::store::Store::destroy_peer`]).
    Destroy {
        /// The region.
        region_id: u64,
        /// The peer to destroy (a newer peer of the region stays).
        peer_id: u64,
    },
}

impl Peer {
    /// Queues `effect` for the store.
    pub fn push_store_effect(&mut self, effect: StoreEffect) {
        self.store_effects.push(effect);
    }

    /// Takes what the peer queued for the store, oldest first.
    pub fn take_store_effects(&mut self) -> Vec<StoreEffect> {
        std::mem::take(&mut self.store_effects)
    }
}
