//! [`EngineStorage`]: the scheduler's [`MetaStorage`] on disk.
//!
//! The scheduler core ([`tinykv_scheduler::RaftCluster`]) persists a few
//! string-keyed values (its cluster id, id and timestamp bounds, stores,
//! regions; see [`tinykv_scheduler::storage::keys`]). `tinykv-scheduler`
//! keeps them in the `meta` column family of its own [`FjallEngine`], in a
//! data directory of its own (never a store's).
//!
//! # Durability
//!
//! Every `put` and `delete` is a synced write batch: it is on disk when
//! it returns, so a SIGKILL or a power loss right after loses nothing the
//! core relied on. That is what the core's restart promise needs: it
//! saves the bound of a block of ids (or timestamps) *before* handing out
//! the first one, and counts on the bound surviving.
//!
//! # Errors
//!
//! Every error names the operation and the key, e.g.
//! `scheduler storage: put "region/00000000000000000003" (42 bytes): engine
//! error: ...`.

use std::fmt;
use std::sync::Arc;

use tinykv_engine::{Cf, Engine, FjallEngine, WriteBatch};
use tinykv_scheduler::MetaStorage;
use tinykv_scheduler::storage::StorageError;

/// A [`MetaStorage`] in the `meta` column family of a [`FjallEngine`].
/// See the module docs.
///
/// It shares the engine (an [`Arc`]) so that the process can sync it once
/// more at shutdown; the engine's directory stays locked until every clone
/// is dropped.
#[derive(Clone)]
pub struct EngineStorage {
    engine: Arc<FjallEngine>,
}

impl EngineStorage {
    /// The scheduler's storage on `engine`.
    pub fn new(engine: Arc<FjallEngine>) -> EngineStorage {
        EngineStorage { engine }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<FjallEngine> {
        &self.engine
    }

    /// Writes `batch` synced; an error names `what` (operation and key).
    fn write_synced(
        &self,
        batch: WriteBatch,
        what: fmt::Arguments<'_>,
    ) -> Result<(), StorageError> {
        self.engine.write(batch.sync()).map_err(|e| StorageError(format!("{what}: {e}")))
    }
}

impl fmt::Debug for EngineStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineStorage").field("path", &self.engine.path()).finish()
    }
}

impl MetaStorage for EngineStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine
            .get(Cf::Meta, key.as_bytes())
            .map_err(|e| StorageError(format!("get {key:?}: {e}")))
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(Cf::Meta, key.as_bytes(), value);
        self.write_synced(batch, format_args!("put {key:?} ({} bytes)", value.len()))
    }

    fn delete(&mut self, key: &str) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.delete(Cf::Meta, key.as_bytes());
        self.write_synced(batch, format_args!("delete {key:?}"))
    }

    fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let snapshot = self.engine.snapshot();
        let mut found = Vec::new();
        for item in snapshot.iter(Cf::Meta, prefix.as_bytes(), None) {
            let (key, value) = item.map_err(|e| StorageError(format!("scan {prefix:?}*: {e}")))?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8(key).map_err(|e| {
                StorageError(format!(
                    "scan {prefix:?}*: key {:02x?} is not UTF-8, so not the scheduler's",
                    e.as_bytes()
                ))
            })?;
            found.push((key, value));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use tinykv_engine::FjallConfig;

    use super::*;

    fn open(path: &std::path::Path) -> EngineStorage {
        EngineStorage::new(Arc::new(FjallEngine::open(path, FjallConfig::for_tests()).unwrap()))
    }

    /// Puts, deletes and scans, checked against a `BTreeMap`, and again
    /// after reopening the directory.
    #[test]
    fn behaves_like_a_map_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut oracle = std::collections::BTreeMap::new();
        {
            let mut storage = open(dir.path());
            for i in 0..30u32 {
                let key = format!("region/{i:020}");
                storage.put(&key, &i.to_be_bytes()).unwrap();
                oracle.insert(key, i.to_be_bytes().to_vec());
            }
            for i in (0..30u32).step_by(3) {
                let key = format!("region/{i:020}");
                storage.delete(&key).unwrap();
                oracle.remove(&key);
            }
            storage.put("regiom", b"before the prefix's end").unwrap();
            storage.put("region0", b"not under region/").unwrap();
            storage.put("store/1", b"s").unwrap();
            storage.delete("never-put").unwrap();
            let scanned = storage.scan("region/").unwrap();
            let expected: Vec<_> = oracle.clone().into_iter().collect();
            assert_eq!(scanned, expected);
        }
        let storage = open(dir.path());
        let expected: Vec<_> = oracle.into_iter().collect();
        assert_eq!(storage.scan("region/").unwrap(), expected, "after a reopen");
        assert_eq!(storage.get("store/1").unwrap().as_deref(), Some(&b"s"[..]));
        assert_eq!(storage.get("never-put").unwrap(), None);
        assert_eq!(storage.scan("nothing/").unwrap(), vec![]);
    }

    /// A key the engine refuses (empty) fails with the key named, and
    /// writes nothing.
    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = open(dir.path());
        let err = storage.put("", b"v").unwrap_err();
        assert!(err.to_string().contains(r#"put "" (1 bytes)"#), "{err}");
        let long = "k".repeat(tinykv_engine::MAX_KEY_LEN + 1);
        let err = storage.delete(&long).unwrap_err();
        assert!(err.to_string().contains(&format!("delete {long:?}")), "{err}");
        assert_eq!(storage.scan("").unwrap(), vec![]);
    }
}
