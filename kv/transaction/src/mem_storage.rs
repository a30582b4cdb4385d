//! An in-memory [`Storage`] for the transaction tests (given).
//!
//! It needs no lab 1 code: every column family is a `BTreeMap`, a reader is
//! a copy taken when it is made (so it is point in time), and every write
//! is recorded, so a test can ask which keys a command wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tinykv_engine::{Cf, EngineIter};
use tinykv_storage::{Context, Modify, Storage, StorageReader};

use crate::codec::encode_key;
use crate::record::{Lock, Write, WriteKind};

type Data = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;

/// The pairs of one column family, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// See the module docs. Cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    data: Arc<Mutex<Data>>,
    log: Arc<Mutex<Vec<Modify>>>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Every modification written so far, in order.
    pub fn written(&self) -> Vec<Modify> {
        self.log.lock().expect("the write log").clone()
    }

    /// Forgets the modifications written so far (the data stays).
    pub fn clear_written(&self) {
        self.log.lock().expect("the write log").clear();
    }

    /// Test fixture: the transaction started at `start` wrote `value` to
    /// `key` (in `default`) and committed it at `commit`, in the exact byte
    /// layout of lab 4.
    pub fn put_committed(&self, key: &[u8], value: &[u8], start: u64, commit: u64) {
        let write = Write { start_ts: start, kind: WriteKind::Put };
        self.put_fixture(vec![
            Modify::put(Cf::Default, &encode_key(key, start), value),
            Modify::put(Cf::Write, &encode_key(key, commit), &write.to_bytes()),
        ]);
    }

    /// Test fixture: a write record of `kind` for `key`, by the transaction
    /// started at `start`, committed at `commit`.
    pub fn put_write_record(&self, key: &[u8], kind: WriteKind, start: u64, commit: u64) {
        let write = Write { start_ts: start, kind };
        self.put_fixture(vec![Modify::put(Cf::Write, &encode_key(key, commit), &write.to_bytes())]);
    }

    /// Test fixture: `lock` on `key` (in `lock`, under the raw key), and
    /// nothing else.
    pub fn put_lock(&self, key: &[u8], lock: &Lock) {
        self.put_fixture(vec![Modify::put(Cf::Lock, key, &lock.to_bytes())]);
    }

    /// Test fixture: what a prewrite of `key = value` leaves: the value in
    /// `default` under the lock's start ts, and `lock` on `key`.
    pub fn put_prewritten(&self, key: &[u8], value: &[u8], lock: &Lock) {
        self.put_fixture(vec![
            Modify::put(Cf::Default, &encode_key(key, lock.ts), value),
            Modify::put(Cf::Lock, key, &lock.to_bytes()),
        ]);
    }

    /// Writes `batch` as a test fixture.
    pub fn put_fixture(&self, batch: Vec<Modify>) {
        self.write(&Context::default(), batch).expect("an in-memory write cannot fail");
    }

    /// Every pair of the three transaction column families (`default`,
    /// `lock`, `write`), each in key order.
    pub fn contents(&self) -> Vec<(Cf, Pairs)> {
        [Cf::Default, Cf::Lock, Cf::Write].into_iter().map(|cf| (cf, self.pairs(cf))).collect()
    }

    /// Every pair of `cf`, in key order.
    pub fn pairs(&self, cf: Cf) -> Pairs {
        let data = self.data.lock().expect("the data");
        data.iter()
            .filter(|((c, _), _)| *c == cf)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Storage for MemStorage {
    fn write(&self, _ctx: &Context, batch: Vec<Modify>) -> tinykv_storage::Result<()> {
        let mut data = self.data.lock().expect("the data");
        for m in &batch {
            match m {
                Modify::Put { cf, key, value } => {
                    data.insert((*cf, key.clone()), value.clone());
                }
                Modify::Delete { cf, key } => {
                    data.remove(&(*cf, key.clone()));
                }
            }
        }
        self.log.lock().expect("the write log").extend(batch);
        Ok(())
    }

    fn reader(&self, _ctx: &Context) -> tinykv_storage::Result<Box<dyn StorageReader>> {
        let data = self.data.lock().expect("the data").clone();
        Ok(Box::new(MemReader { data: Arc::new(data) }))
    }
}

struct MemReader {
    data: Arc<Data>,
}

impl StorageReader for MemReader {
    fn get_cf(&self, cf: Cf, key: &[u8]) -> tinykv_storage::Result<Option<Vec<u8>>> {
        Ok(self.data.get(&(cf, key.to_vec())).cloned())
    }

    fn iter_cf(&self, cf: Cf, start: &[u8]) -> EngineIter {
        let pairs: Vec<_> = self
            .data
            .range((cf, start.to_vec())..)
            .take_while(|((c, _), _)| *c == cf)
            .map(|((_, k), v)| Ok((k.clone(), v.clone())))
            .collect();
        Box::new(pairs.into_iter())
    }
}
