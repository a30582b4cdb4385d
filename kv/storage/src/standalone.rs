//! Lab 1: a storage on one engine, on one machine.
//!
//! [`StandaloneStorage`] turns the [`Storage`] calls into engine calls:
//! a write becomes one atomic [`WriteBatch`](tinykv_engine::WriteBatch), a
//! reader wraps one engine [`Snapshot`](tinykv_engine::Snapshot).
//!
//! Read `docs/src/lab1-standalone-kv.md` first. The tests that check this
//! file are in `kv/server/tests/project1.rs` (run `make project1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinykv_engine::{Engine, FjallConfig, FjallEngine, MemoryDisk};

use crate::{Context, Modify, Result, Storage, StorageReader};
// SOLUTION BEGIN lab 1
use crate::{Cf, EngineIter};
use tinykv_engine::{Snapshot, WriteBatch};
// SOLUTION END

/// How to open a [`StandaloneStorage`].
#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    /// The directory that holds the data. The engine lives in `<dir>/kv`.
    pub data_dir: PathBuf,
    /// Whether [`Storage::write`] waits until the write is on disk (fsync)
    /// before it returns. `true` (the default) means an acknowledged write
    /// survives a crash of the process or the machine; `false` is faster but
    /// may lose the latest acknowledged writes on a crash.
    pub sync_writes: bool,
    /// Engine tuning (worker threads, cache size).
    pub engine: FjallConfig,
}

impl StandaloneConfig {
    /// The default configuration for a data directory: synced writes.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StandaloneConfig {
            data_dir: data_dir.into(),
            sync_writes: true,
            engine: FjallConfig::default(),
        }
    }

    /// A small engine for tests: one worker thread, a small cache.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        StandaloneConfig { engine: FjallConfig::for_tests(), ..StandaloneConfig::new(data_dir) }
    }
}

/// A [`Storage`] over a single engine.
#[derive(Debug)]
pub struct StandaloneStorage {
    /// The engine that holds every column family.
    engine: Arc<dyn Engine>,
    /// Whether writes are synced before they are acknowledged.
    sync_writes: bool,
}

impl StandaloneStorage {
    /// Opens (or creates) the storage in `config.data_dir`.
    pub fn open(config: &StandaloneConfig) -> Result<StandaloneStorage> {
        let engine = FjallEngine::open(Self::engine_dir(&config.data_dir), config.engine.clone())?;
        Ok(StandaloneStorage::with_engine(Arc::new(engine), config.sync_writes))
    }

    /// A storage on a fresh in-memory engine (for examples and tests).
    pub fn in_memory() -> StandaloneStorage {
        StandaloneStorage::with_engine(Arc::new(MemoryDisk::new().open()), true)
    }

    /// A storage over an existing engine.
    pub fn with_engine(engine: Arc<dyn Engine>, sync_writes: bool) -> StandaloneStorage {
        StandaloneStorage { engine, sync_writes }
    }

    /// Where the engine of a data directory lives.
    pub fn engine_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("kv")
    }
}

impl Storage for StandaloneStorage {
    /// **Lab 1.** Applies `batch` to the engine as ONE atomic
    /// [`WriteBatch`](tinykv_engine::WriteBatch): turn each [`Modify`] into a
    /// put or a delete on its column family, mark the batch synced when
    /// `self.sync_writes` is set, and write it. The context is not needed
    /// here.
    ///
    /// Checked by every test in `kv/server/tests/project1.rs`, in particular
    /// `raw_put_visible_through_reader_1`, `raw_delete_1` and
    /// `data_survives_close_and_reopen_1`.
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> Result<()> {
        // SOLUTION BEGIN lab 1
        let _ = ctx;
        let mut write_batch = WriteBatch::new();
        for modify in batch {
            match modify {
                Modify::Put { cf, key, value } => write_batch.put(cf, &key, &value),
                Modify::Delete { cf, key } => write_batch.delete(cf, &key),
            }
        }
        write_batch.set_sync(self.sync_writes);
        self.engine.write(write_batch)?;
        Ok(())
        // SOLUTION STUB
        // let _ = (ctx, batch, &self.engine, self.sync_writes);
        // todo!("lab 1: StandaloneStorage::write (kv/storage/src/standalone.rs)")
        // SOLUTION END
    }

    /// **Lab 1.** Returns a reader over one engine snapshot
    /// ([`Engine::snapshot`]), so that everything read through it, including
    /// iterators, sees the data as it was when `reader` was called. Write a
    /// small struct that owns the snapshot and implements [`StorageReader`].
    ///
    /// Checked by `reader_snapshot_isolation_1`, the `raw_get_*` and the
    /// `raw_scan_*` tests in `kv/server/tests/project1.rs`.
    fn reader(&self, ctx: &Context) -> Result<Box<dyn StorageReader>> {
        // SOLUTION BEGIN lab 1
        let _ = ctx;
        Ok(Box::new(StandaloneReader { snapshot: self.engine.snapshot() }))
        // SOLUTION STUB
        // let _ = ctx;
        // todo!("lab 1: StandaloneStorage::reader (kv/storage/src/standalone.rs)")
        // SOLUTION END
    }
}

// SOLUTION BEGIN lab 1
/// A reader over one engine snapshot.
struct StandaloneReader {
    /// The point-in-time view every read goes to.
    snapshot: Box<dyn Snapshot>,
}

impl StorageReader for StandaloneReader {
    fn get_cf(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get(cf, key)?)
    }

    fn iter_cf(&self, cf: Cf, start: &[u8]) -> EngineIter {
        self.snapshot.iter(cf, start, None)
    }
}
// SOLUTION END
