//! The storage engine seam.
//!
//! Every byte TinyKV stores goes through the [`Engine`] trait. Two
//! implementations exist:
//!
//! * [`FjallEngine`]: on disk, built on the `fjall` LSM tree. Used by the real
//!   server and by tests that need real files.
//! * [`MemoryEngine`]: in memory, with a *synced* and an *unsynced* layer, so
//!   that [`MemoryDisk::crash`] loses exactly the writes that were never
//!   synced. Used by the deterministic simulator.
//!
//! Files a store keeps outside its engines (snapshot files) go through the
//! same seam: the [`fs`] module's [`FileSystem`] trait, with [`RealFs`]
//! (`std::fs`) and [`MemoryFs`] (in memory, losing unsynced bytes and
//! directory changes in a crash, or tearing files).
//!
//! # Column families
//!
//! Data lives in four column families ([`Cf`]): `default`, `lock` and `write`
//! hold user data (lab 1 uses them as plain namespaces; lab 4 gives them their
//! Percolator meaning), and `meta` holds the store's local keys (raft log,
//! raft state, apply state, region state; see [`keys`]). Clients can only
//! address the three data column families ([`Cf::parse_data`]).
//!
//! # Contract
//!
//! * A [`WriteBatch`] is applied atomically across column families: a reader
//!   sees all of it or none of it, also after a crash.
//! * Keys are never empty and at most [`MAX_KEY_LEN`] bytes long; a batch
//!   with a bad key fails as a whole with [`Error::Engine`].
//! * A batch with `sync == true` is durable when [`Engine::write`] returns,
//!   and so is every batch written before it.
//! * A [`Snapshot`] is a point-in-time view: writes after it was taken are
//!   invisible to it, to its `get` and to every iterator made from it. A
//!   snapshot and its iterators are `Send + 'static`, so they can be moved to
//!   another thread and outlive the call that made them.
//!
//! # Example
//!
//! ```
//! use tinykv_engine::{Cf, Engine, MemoryDisk, WriteBatch};
//!
//! let engine = MemoryDisk::new().open();
//! let mut batch = WriteBatch::new();
//! batch.put(Cf::Default, b"k1", b"v1");
//! batch.put(Cf::Write, b"k1", b"other");
//! engine.write(batch.sync()).unwrap();
//!
//! let snap = engine.snapshot();
//! assert_eq!(snap.get(Cf::Default, b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
//! let all: Vec<_> = snap.iter(Cf::Write, b"", None).map(|kv| kv.unwrap()).collect();
//! assert_eq!(all, vec![(b"k1".to_vec(), b"other".to_vec())]);
//! ```
#![forbid(unsafe_code)]

mod cf;
mod error;
mod fjall_engine;
pub mod fs;
pub mod keys;
mod limits;
mod memory;
mod write_batch;

pub use cf::Cf;
pub use error::{Error, Result};
pub use fjall_engine::{FjallConfig, FjallEngine};
pub use fs::{FileSystem, MemoryFs, RealFs};
pub use limits::MAX_KEY_LEN;
pub use memory::{MemoryDisk, MemoryDiskStats, MemoryEngine};
pub use write_batch::{WriteBatch, WriteOp};

/// A key-value pair as returned by iterators.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An owned iterator over key-value pairs in ascending key order.
///
/// `Send + 'static`: it holds its own reference to the snapshot it reads.
pub type EngineIter = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'static>;

/// A key-value engine with column families, atomic write batches and
/// point-in-time snapshots. See the crate documentation for the contract.
///
/// The trait is object safe: the rest of the code holds `Arc<dyn Engine>`.
pub trait Engine: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `batch` atomically. If `batch.is_sync()`, the batch and every
    /// earlier batch are durable when this returns.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Takes a point-in-time snapshot of every column family.
    fn snapshot(&self) -> Box<dyn Snapshot>;

    /// Makes every batch written so far durable.
    fn sync(&self) -> Result<()>;

    /// Reads one key from the current state (a shortcut for
    /// `self.snapshot().get(cf, key)`).
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snapshot().get(cf, key)
    }
}

/// A point-in-time, read-only view of an engine.
pub trait Snapshot: Send + Sync + std::fmt::Debug + 'static {
    /// Reads the value of `key` in `cf` as of the snapshot.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Iterates the keys `k` of `cf` with `start <= k` and, if `end` is
    /// given, `k < end`, in ascending byte order, as of the snapshot.
    fn iter(&self, cf: Cf, start: &[u8], end: Option<&[u8]>) -> EngineIter;
}
