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
pub use tinykv_proto::errorpb;
pub use tinykv_proto::kvrpcpb::Context;

/// The bytes of keys and values one scan answer may carry at most
/// (4 MiB): with the protocol's per-pair overhead, a scan of up to 10,000
/// pairs then fits in one 8 MiB gRPC message. See [`ScanBudget`].
pub const MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// What a scan may still add to its answer: a number of pairs (the
/// request's limit) and a number of bytes ([`MAX_SCAN_BYTES`]).
///
/// A scan stops *before* the pair that would take it over either; the
/// first pair always fits (a key and a value within the server's limits
/// are far smaller than the byte budget), so a scan that has pairs to
/// return never returns none. A client that got fewer pairs than it asked
/// for continues from its last key (followed by a 0 byte) until an answer
/// is empty.
///
/// ```
/// use tinykv_storage::ScanBudget;
/// let mut budget = ScanBudget::with_bytes(3, 10);
/// assert!(budget.take(b"k1", b"value1")); // 8 bytes
/// assert!(!budget.take(b"k2", b"v"));     // 11 > 10: stop before it
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanBudget {
    /// Pairs that may still be added.
    pairs_left: usize,
    /// Bytes of keys and values that may still be added.
    bytes_left: usize,
    /// Invariant: no pair was added yet (the first one always fits).
    empty: bool,
}

impl ScanBudget {
    /// A budget of `limit` pairs and [`MAX_SCAN_BYTES`].
    pub fn new(limit: usize) -> ScanBudget {
        ScanBudget::with_bytes(limit, MAX_SCAN_BYTES)
    }

    /// A budget of `limit` pairs and `bytes` bytes of keys and values.
    pub fn with_bytes(limit: usize, bytes: usize) -> ScanBudget {
        ScanBudget { pairs_left: limit, bytes_left: bytes, empty: true }
    }

    /// Whether the answer may take the pair `key`, `value`; if so, it is
    /// counted. Once this says `false`, stop the scan.
    pub fn take(&mut self, key: &[u8], value: &[u8]) -> bool {
        let size = key.len() + value.len();
        if self.pairs_left == 0 || (size > self.bytes_left && !self.empty) {
            return false;
        }
        self.pairs_left -= 1;
        self.bytes_left = self.bytes_left.saturating_sub(size);
        self.empty = false;
        true
    }

    /// Whether no more pair fits by number (the byte budget may still
    /// have room).
    pub fn is_full(&self) -> bool {
        self.pairs_left == 0
    }
}

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
    /// The replicated store refused the request for a reason a client can
    /// act on: the protocol's region error, intact (`not_leader` with the
    /// leader when known, `region_not_found`, `key_not_in_region`,
    /// `epoch_not_match` with the current regions, `stale_command`,
    /// `store_not_match`, `server_is_busy`), with its words in `message`.
    /// The handlers put it in the response's `region_error` field
    /// ([`Error::region_error`]).
    #[error("{}", .0.message)]
    Region(Box<errorpb::Error>),
    /// The replicated store could not serve the request for a reason that
    /// has no field in the protocol (no answer in time, the store thread
    /// stopped, an answer without data); the text says which.
    #[error("{0}")]
    Raft(String),
}

impl Error {
    /// A region error (see [`Error::Region`]).
    pub fn region(e: errorpb::Error) -> Error {
        Error::Region(Box::new(e))
    }

    /// The protocol's region error this error carries, if it is one.
    pub fn region_error(&self) -> Option<&errorpb::Error> {
        match self {
            Error::Region(e) => Some(e),
            Error::Engine(_) | Error::Raft(_) => None,
        }
    }
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
