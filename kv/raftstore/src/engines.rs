//! The two engines of a store, and protobuf values stored in them.
//!
//! A store keeps two engines, as TinyKV does:
//!
//! - the **raft engine** holds each region's raft log and raft state
//!   (hard state and the end of the log);
//! - the **kv engine** holds the data, and next to it each region's apply
//!   state and region state, and the store's identity.
//!
//! Splitting them lets the raft log be written (and synced) on its own,
//! while the apply state always travels in the same batch as the data it
//! covers. Every local key lives in [`Cf::Meta`]; see
//! [`tinykv_engine::keys`] for the layout.

use std::sync::Arc;

use prost::Message;
use tinykv_engine::{Cf, Engine, Snapshot, WriteBatch};

use crate::error::{Error, Result};

/// A store's two engines. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Engines {
    /// Data, apply states, region states, the store ident.
    pub kv: Arc<dyn Engine>,
    /// Raft logs and raft states.
    pub raft: Arc<dyn Engine>,
}

impl Engines {
    /// Both engines.
    pub fn new(kv: Arc<dyn Engine>, raft: Arc<dyn Engine>) -> Engines {
        Engines { kv, raft }
    }
}

/// Reads and decodes the protobuf value at `key` in the meta CF of `engine`.
///
/// # Errors
///
/// The engine's error, or [`Error::Corrupt`] if the value does not decode.
pub fn get_msg<M: Message + Default>(engine: &dyn Engine, key: &[u8]) -> Result<Option<M>> {
    decode(key, engine.get(Cf::Meta, key)?)
}

/// As [`get_msg`], from a snapshot.
///
/// # Errors
///
/// As [`get_msg`].
pub fn get_msg_at<M: Message + Default>(snap: &dyn Snapshot, key: &[u8]) -> Result<Option<M>> {
    decode(key, snap.get(Cf::Meta, key)?)
}

fn decode<M: Message + Default>(key: &[u8], value: Option<Vec<u8>>) -> Result<Option<M>> {
    value
        .map(|v| {
            M::decode(v.as_slice()).map_err(|e| {
                Error::Corrupt(format!("the value at local key {key:02x?} does not decode: {e}"))
            })
        })
        .transpose()
}

/// Puts the encoded `msg` at `key` in the meta CF.
pub fn put_msg(wb: &mut WriteBatch, key: &[u8], msg: &impl Message) {
    wb.put(Cf::Meta, key, &msg.encode_to_vec());
}
