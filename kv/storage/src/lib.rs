//! The storage seam between the gRPC server and the engine.
//!
//! The server never touches an engine directly. It talks to a [`Storage`]:
//!
//! * [`Storage::write`] applies a list of [`Modify`] operations atomically;
//! * [`Storage::reader`] gives a [`StorageReader`]: a consistent,
//!   point-in-time view with [`get_cf`](StorageReader::get_cf) and
//!   [`iter_cf`](StorageReader::iter_cf).
//!
//! Lab 1 implements [`StandaloneStorage`]: one engine on one machine. Lab 2b
//! adds a raft-backed storage with the same trait, so the server code written
//! in lab 1 (and the transactions of lab 4) run unchanged on a replicated
//! store.
//!
//! # Example
//!
//! ```
//! use tinykv_storage::{Cf, Context, Modify, Storage, StandaloneStorage};
//! # fn main() -> tinykv_storage::Result<()> {
//! let storage = StandaloneStorage::in_memory();
//! let ctx = Context::default();
//! storage.write(&ctx, vec![Modify::put(Cf::Default, b"k", b"v")])?;
//! let reader = storage.reader(&ctx)?;
//! assert_eq!(reader.get_cf(Cf::Default, b"k")?, Some(b"v".to_vec()));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod standalone;

pub use standalone::{StandaloneConfig, StandaloneStorage};
pub use tinykv_engine::{Cf, EngineIter, KvPair};
pub use tinykv_proto::kvrpcpb::Context;

/// One write operation on a column family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modify {
    /// Set `key` in `cf` to `value`.
    Put { cf: Cf, key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` from `cf`. Deleting a missing key is not an error.
    Delete { cf: Cf, key: Vec<u8> },
}

impl Modify {
    /// A put of `key` = `value` in `cf`.
    pub fn put(cf: Cf, key: &[u8], value: &[u8]) -> Modify {
        Modify::Put { cf, key: key.to_vec(), value: value.to_vec() }
    }

    /// A delete of `key` in `cf`.
    pub fn delete(cf: Cf, key: &[u8]) -> Modify {
        Modify::Delete { cf, key: key.to_vec() }
    }

    /// The column family the operation touches.
    pub fn cf(&self) -> Cf {
        match self {
            Modify::Put { cf, .. } | Modify::Delete { cf, .. } => *cf,
        }
    }

    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Modify::Put { key, .. } | Modify::Delete { key, .. } => key,
        }
    }
}

/// Errors a storage can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed (I/O, corruption, unknown column family, …).
    #[error(transparent)]
    Engine(#[from] tinykv_engine::Error),
    /// The replicated store could not serve the request: this store's peer
    /// is not the leader, the region changed, no quorum answered in time…
    /// (the text says which; a client retries, possibly on another store).
    #[error("{0}")]
    Raft(String),
}

/// The storage result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Where the server reads and writes data.
///
/// The `ctx` carries the region and peer a request is addressed to; the
/// standalone storage ignores it, the raft-backed storage of lab 2b checks
/// it.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Applies every modification in `batch`, atomically and in order: after
    /// a crash either all of them are visible or none is. When this returns
    /// `Ok`, the write is durable (unless the storage was configured not to
    /// sync; see [`StandaloneConfig::sync_writes`]).
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> Result<()>;

    /// Returns a reader over a point-in-time view of the data: writes made
    /// after this call are invisible to it.
    fn reader(&self, ctx: &Context) -> Result<Box<dyn StorageReader>>;
}

/// A consistent, read-only view of the data, made by [`Storage::reader`].
pub trait StorageReader: Send {
    /// The value of `key` in `cf`, or `None` if there is none.
    fn get_cf(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The pairs of `cf` with key `>= start`, in ascending key order.
    fn iter_cf(&self, cf: Cf, start: &[u8]) -> EngineIter;
}
