//! The on-disk engine, built on fjall 3. See [`FjallEngine`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::limits::check_batch;
use crate::{Cf, Engine, EngineIter, Error, MAX_KEY_LEN, Result, Snapshot, WriteBatch, WriteOp};

/// Tuning of a [`FjallEngine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FjallConfig {
    /// fjall's background threads (flushes and compactions). At least 1.
    pub worker_threads: usize,
    /// Block cache capacity in bytes.
    pub cache_size_bytes: u64,
}

impl Default for FjallConfig {
    /// Production values: one worker thread per core up to four (fjall's own
    /// default) and a 64 MiB block cache.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { worker_threads: cores.clamp(1, 4), cache_size_bytes: 64 << 20 }
    }
}

impl FjallConfig {
    /// Small values for tests that open many engines: one worker thread and a
    /// 4 MiB block cache.
    pub fn for_tests() -> Self {
        Self { worker_threads: 1, cache_size_bytes: 4 << 20 }
    }
}

fn engine_err(context: impl fmt::Display) -> impl FnOnce(fjall::Error) -> Error {
    move |e| Error::Engine(format!("{context}: {e}"))
}

/// An engine on disk, built on fjall 3 (an LSM tree).
///
/// One fjall database per engine, one fjall keyspace per [`Cf`] (named after
/// [`Cf::name`]). A [`WriteBatch`] becomes one fjall batch, which fjall
/// commits atomically across keyspaces (one journal entry).
///
/// # Durability
///
/// * Every batch is written to the journal and flushed to the OS
///   (`PersistMode::Buffer`) before [`Engine::write`] returns: it survives the
///   process exiting or being killed, but not a power loss.
/// * A synced batch is committed with `PersistMode::SyncAll` (fsync), which
///   makes it and every earlier batch durable; [`Engine::sync`] does the same
///   without writing. An empty synced batch still fsyncs.
/// * When the engine and every snapshot made from it are dropped, fjall
///   fsyncs its journal, so a graceful stop loses nothing.
///
/// # Directory lock
///
/// fjall locks its directory; opening a path that is open already fails
/// (after about 200 ms of retries) with [`Error::Engine`]. The lock is held
/// by the engine *and by every snapshot made from it* (a snapshot keeps
/// handles to fjall's keyspaces): drop the engine and all its snapshots
/// before reopening the same path. Iterators hold no lock.
///
/// # Limits
///
/// fjall rejects empty keys and keys longer than [`MAX_KEY_LEN`] bytes; the
/// engine checks every key of a batch first and fails the whole batch with
/// [`Error::Engine`] instead of panicking.
pub struct FjallEngine {
    db: Database,
    /// One keyspace per column family, indexed by `Cf as usize`.
    keyspaces: [Keyspace; 4],
    path: PathBuf,
}

impl FjallEngine {
    /// Opens the engine in directory `path`, creating the directory and the
    /// database if they do not exist.
    ///
    /// Fails if the path is already open (by this process or another one).
    pub fn open(path: impl AsRef<Path>, config: FjallConfig) -> Result<FjallEngine> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("creating engine directory {}: {e}", path.display()),
            ))
        })?;
        let db = Database::builder(&path)
            .worker_threads(config.worker_threads.max(1))
            .cache_size(config.cache_size_bytes)
            .open()
            .map_err(engine_err(format_args!("opening fjall database at {}", path.display())))?;
        let keyspace = |cf: Cf| {
            db.keyspace(cf.name(), KeyspaceCreateOptions::default)
                .map_err(engine_err(format_args!("opening keyspace {cf} in {}", path.display())))
        };
        let keyspaces = [
            keyspace(Cf::Default)?,
            keyspace(Cf::Lock)?,
            keyspace(Cf::Write)?,
            keyspace(Cf::Meta)?,
        ];
        log::debug!("opened fjall engine at {}", path.display());
        Ok(FjallEngine { db, keyspaces, path })
    }

    /// The directory the engine lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keyspace(&self, cf: Cf) -> &Keyspace {
        &self.keyspaces[cf as usize]
    }

    fn persist(&self) -> Result<()> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(engine_err(format_args!("syncing fjall journal in {}", self.path.display())))
    }
}

impl fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallEngine").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Engine for FjallEngine {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        check_batch(&batch)?;
        let sync = batch.is_sync();
        if batch.is_empty() {
            // fjall skips empty batches entirely, fsync included.
            return if sync { self.persist() } else { Ok(()) };
        }
        let ops = batch.into_ops();
        // fjall gives every item of a batch the same sequence number, so two
        // items on one key would be ambiguous. Keep only the last operation
        // on each key (the batch contract: later operations win).
        let mut keep = vec![false; ops.len()];
        {
            let mut seen = BTreeSet::new();
            for (i, op) in ops.iter().enumerate().rev() {
                let (WriteOp::Put { cf, key, .. } | WriteOp::Delete { cf, key }) = op;
                keep[i] = seen.insert((*cf, key.as_slice()));
            }
        }
        let mut fjall_batch = self.db.batch();
        if sync {
            fjall_batch = fjall_batch.durability(Some(PersistMode::SyncAll));
        }
        for (op, keep) in ops.iter().zip(keep) {
            if !keep {
                continue;
            }
            match op {
                WriteOp::Put { cf, key, value } => {
                    fjall_batch.insert(self.keyspace(*cf), key.as_slice(), value.as_slice());
                }
                WriteOp::Delete { cf, key } => {
                    fjall_batch.remove(self.keyspace(*cf), key.as_slice());
                }
            }
        }
        fjall_batch.commit().map_err(engine_err(format_args!(
            "committing a batch of {} operations (sync: {sync}) in {}",
            ops.len(),
            self.path.display()
        )))
    }

    fn snapshot(&self) -> Box<dyn Snapshot> {
        Box::new(FjallSnapshot {
            snapshot: self.db.snapshot(),
            keyspaces: self.keyspaces.clone(),
            path: self.path.clone(),
        })
    }

    fn sync(&self) -> Result<()> {
        self.persist()
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Ok(None);
        }
        let value = self.keyspace(cf).get(key).map_err(engine_err(format_args!(
            "reading {cf} key {key:02x?} in {}",
            self.path.display()
        )))?;
        Ok(value.map(|v| v.to_vec()))
    }
}

/// A point-in-time view of a [`FjallEngine`] (a fjall cross-keyspace
/// snapshot). Holds the engine's directory lock while alive.
struct FjallSnapshot {
    snapshot: fjall::Snapshot,
    keyspaces: [Keyspace; 4],
    path: PathBuf,
}

impl fmt::Debug for FjallSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallSnapshot")
            .field("path", &self.path)
            .field("seqno", &self.snapshot.seqno())
            .finish()
    }
}

impl Snapshot for FjallSnapshot {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Ok(None);
        }
        let value = self.snapshot.get(&self.keyspaces[cf as usize], key).map_err(engine_err(
            format_args!("reading {cf} key {key:02x?} from a snapshot of {}", self.path.display()),
        ))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn iter(&self, cf: Cf, start: &[u8], end: Option<&[u8]>) -> EngineIter {
        let keyspace = &self.keyspaces[cf as usize];
        let iter = match end {
            Some(end) if end <= start => return Box::new(std::iter::empty()),
            Some(end) => self.snapshot.range::<&[u8], _>(keyspace, start..end),
            None => self.snapshot.range::<&[u8], _>(keyspace, start..),
        };
        let path = self.path.clone();
        // fjall's iterator owns what it reads (and keeps the snapshot's
        // sequence number pinned), so it is `Send + 'static` as it is.
        Box::new(iter.map(move |guard| {
            guard.into_inner().map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| {
                Error::Engine(format!("iterating {cf} in a snapshot of {}: {e}", path.display()))
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(cf: Cf, key: &[u8], value: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(cf, key, value);
        batch
    }

    #[test]
    fn reopen_after_drop_sees_synced_and_unsynced_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/engine");
        let engine = FjallEngine::open(&path, FjallConfig::for_tests()).unwrap();
        engine.write(put(Cf::Meta, b"synced", b"1").sync()).unwrap();
        engine.write(put(Cf::Write, b"unsynced", b"2")).unwrap();
        drop(engine);

        let engine = FjallEngine::open(&path, FjallConfig::for_tests()).unwrap();
        assert_eq!(engine.get(Cf::Meta, b"synced").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(engine.get(Cf::Write, b"unsynced").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(engine.get(Cf::Default, b"synced").unwrap(), None);
    }

    #[test]
    fn open_path_is_locked_until_engine_and_snapshots_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), FjallConfig::for_tests()).unwrap();
        engine.write(put(Cf::Default, b"k", b"v").sync()).unwrap();
        let snap = engine.snapshot();
        let err = FjallEngine::open(dir.path(), FjallConfig::for_tests()).unwrap_err();
        assert!(matches!(err, Error::Engine(_)), "{err}");
        assert!(err.to_string().contains("opening fjall database"), "{err}");
        drop(engine);
        // The snapshot still reads after the engine is gone.
        assert_eq!(snap.get(Cf::Default, b"k").unwrap().as_deref(), Some(&b"v"[..]));
        let iter = snap.iter(Cf::Default, b"", None);
        drop(snap);
        // Iterators do not hold the lock, and outlive their snapshot.
        let engine = FjallEngine::open(dir.path(), FjallConfig::for_tests()).unwrap();
        assert_eq!(
            iter.map(|kv| kv.unwrap()).collect::<Vec<_>>(),
            vec![(b"k".to_vec(), b"v".to_vec())]
        );
        drop(engine);
    }

    #[test]
    fn batch_is_atomic_and_later_ops_on_a_key_win() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), FjallConfig::for_tests()).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(Cf::Default, b"a", b"1");
        batch.delete(Cf::Default, b"a");
        batch.delete(Cf::Lock, b"b");
        batch.put(Cf::Lock, b"b", b"2");
        batch.put(Cf::Write, b"c", b"3");
        batch.put(Cf::Write, b"c", b"4");
        engine.write(batch).unwrap();
        assert_eq!(engine.get(Cf::Default, b"a").unwrap(), None);
        assert_eq!(engine.get(Cf::Lock, b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(engine.get(Cf::Write, b"c").unwrap().as_deref(), Some(&b"4"[..]));

        // A batch with a bad key applies nothing and does not panic.
        let mut batch = put(Cf::Default, b"x", b"1");
        batch.put(Cf::Default, b"", b"1");
        assert!(engine.write(batch).is_err());
        let mut batch = put(Cf::Default, b"x", b"1");
        batch.put(Cf::Default, &vec![1; MAX_KEY_LEN + 1], b"1");
        assert!(engine.write(batch).is_err());
        assert_eq!(engine.get(Cf::Default, b"x").unwrap(), None);
        assert_eq!(engine.get(Cf::Default, b"").unwrap(), None);
        engine.write(WriteBatch::new().sync()).unwrap();
        engine.sync().unwrap();
    }

    #[test]
    fn snapshot_is_point_in_time_and_iterators_are_owned() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), FjallConfig::for_tests()).unwrap();
        for i in 0..100u32 {
            engine.write(put(Cf::Default, &i.to_be_bytes(), b"old")).unwrap();
        }
        let snap = engine.snapshot();
        let iter = snap.iter(Cf::Default, &10u32.to_be_bytes(), Some(&20u32.to_be_bytes()));
        for i in 0..100u32 {
            let mut batch = WriteBatch::new();
            batch.delete(Cf::Default, &i.to_be_bytes());
            batch.put(Cf::Default, &(i + 1000).to_be_bytes(), b"new");
            engine.write(batch).unwrap();
        }
        let seen: Vec<_> =
            std::thread::spawn(move || iter.map(|kv| kv.unwrap()).collect()).join().unwrap();
        let expected: Vec<_> =
            (10..20u32).map(|i| (i.to_be_bytes().to_vec(), b"old".to_vec())).collect();
        assert_eq!(seen, expected);
        assert_eq!(
            snap.get(Cf::Default, &5u32.to_be_bytes()).unwrap().as_deref(),
            Some(&b"old"[..])
        );
        assert_eq!(snap.iter(Cf::Default, b"\x00\x00\x03\xe8", None).count(), 0);
        assert_eq!(snap.iter(Cf::Default, b"b", Some(b"a")).count(), 0);
        assert_eq!(engine.snapshot().iter(Cf::Default, b"", None).count(), 100);
        assert!(format!("{engine:?} {snap:?}").contains("FjallSnapshot"));
    }
}
