//! The TinyKV server: the gRPC `TinyKv` service over a [`Storage`].
//!
//! * [`Server`] holds the storage and implements the request handlers as
//!   plain, synchronous methods. Lab 1 writes the raw ones in
//!   [`raw_api`]; labs 4b and 4c the transactional ones in [`txn_api`].
//! * [`service`] adapts a [`Server`] to the tonic-generated `TinyKv` trait:
//!   it moves each call to a blocking thread (storage calls may fsync) and
//!   turns a handler panic (a lab stub) into an `Internal` status naming it.
//! * [`serve`] runs the gRPC service on a listener until a shutdown signal.
//!
//! Handlers report bad input in the response's `error` field (see
//! [`limits`]) and never change any data when they do.
#![forbid(unsafe_code)]

pub mod background;
pub mod limits;
pub mod node;
pub mod raft_storage;
pub mod raw_api;
pub mod scheduler_client;
pub mod service;
pub mod txn_api;

use std::sync::Arc;

use tinykv_storage::Storage;
use tinykv_transaction::TxnStore;

pub use service::{TinyKvService, serve, serve_service};

/// Request handlers over a storage. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Server {
    /// Where every handler reads and writes.
    storage: Arc<dyn Storage>,
    /// The transaction commands over the same storage, with the latches
    /// of this server.
    txn: Arc<TxnStore>,
}

impl Server {
    /// A server over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Server {
        let txn = Arc::new(TxnStore::new(Arc::clone(&storage)));
        Server { storage, txn }
    }

    /// The storage the handlers use.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The transaction commands the `Kv*` handlers call.
    pub fn txn(&self) -> &TxnStore {
        &self.txn
    }
}
