//! Where the scheduler keeps what must survive a restart (given code).
//!
//! The core stays sans-I/O: it writes through [`MetaStorage`], which the
//! simulator implements in memory ([`MemStorage`]) and `tinykv-scheduler`
//! on its own fjall engine. Keys are short strings, values are protobuf
//! messages or big-endian numbers; [`keys`] names them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A failed read or write of the scheduler's metadata.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("scheduler storage: {0}")]
pub struct StorageError(pub String);

/// A durable map from keys to bytes. A `put` is durable when it returns.
pub trait MetaStorage: std::fmt::Debug + Send {
    /// The value of `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Sets `key` to `value`, durably.
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Removes `key`.
    fn delete(&mut self, key: &str) -> Result<(), StorageError>;
    /// Every key starting with `prefix`, with its value, in key order.
    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
}

/// The keys the scheduler uses.
pub mod keys {
    /// The cluster's id (u64, big-endian), fixed at the first start.
    pub const CLUSTER_ID: &str = "cluster_id";
    /// The cluster's metadata (`metapb::Cluster`): present once bootstrapped.
    pub const CLUSTER: &str = "cluster";
    /// The id allocator's durable bound (u64, big-endian).
    pub const ID_LIMIT: &str = "alloc_id";
    /// The timestamp oracle's durable bound (u64 ms, big-endian).
    pub const TSO_LIMIT: &str = "tso";
    /// Prefix of the stores (`metapb::Store`).
    pub const STORE: &str = "store/";
    /// Prefix of the regions (`metapb::Region`).
    pub const REGION: &str = "region/";

    /// The key of store `id`.
    pub fn store(id: u64) -> String {
        format!("{STORE}{id:020}")
    }

    /// The key of region `id`.
    pub fn region(id: u64) -> String {
        format!("{REGION}{id:020}")
    }
}

/// [`MetaStorage`] in memory: for the simulator and tests. Clones share
/// one map, so a scheduler made again from a clone sees what the old one
/// wrote, as after a restart from disk.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    map: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    fail_puts: Arc<AtomicBool>,
}

impl MemStorage {
    /// Makes every `put` fail from now on (`true`) or work again, in every
    /// clone: for tests of the error paths.
    pub fn fail_puts(&self, fail: bool) {
        self.fail_puts.store(fail, Ordering::SeqCst);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MetaStorage for MemStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map().get(key).cloned())
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(StorageError(format!("put {key}: failing on purpose")));
        }
        self.map().insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), StorageError> {
        self.map().remove(key);
        Ok(())
    }

    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(self
            .map()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
