//! The simulator's disk: an in-memory engine with crash semantics. See
//! [`MemoryDisk`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::limits::check_batch;
use crate::{Cf, Engine, EngineIter, Error, KvPair, Result, Snapshot, WriteBatch, WriteOp};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;
type Trees = [Arc<Tree>; 4];

/// One entry of the undo log: the value `key` had in `cf` before a write.
type Undo = (Cf, Vec<u8>, Option<Vec<u8>>);

fn cf_index(cf: Cf) -> usize {
    cf as usize
}

#[derive(Default)]
struct DiskState {
    /// The visible state: every batch written so far.
    trees: Trees,
    /// One entry per unsynced, non-empty batch, oldest first: what to undo to
    /// get back to the durable state.
    undo: Vec<Vec<Undo>>,
    /// Bumped by every crash; handles remember the generation they were
    /// opened in.
    generation: u64,
    /// Counters for tests and the simulator's reports.
    stats: MemoryDiskStats,
}

/// Counters kept by a [`MemoryDisk`] over its whole life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryDiskStats {
    /// Non-empty batches applied.
    pub batches: u64,
    /// Batches and [`Engine::sync`] calls that made writes durable.
    pub syncs: u64,
    /// Crashes (full or partial).
    pub crashes: u64,
    /// Unsynced batches lost by crashes.
    pub lost_batches: u64,
}

/// The disk of one simulated machine: an in-memory engine with crash
/// semantics. A cheap, cloneable handle: clones share the same disk.
///
/// The disk outlives the simulated process: the simulator keeps the disk, drops the node, and
/// reopens the disk with [`MemoryDisk::open`] when the node restarts.
///
/// # Durability model
///
/// * Every batch is applied to the *visible* state at once, so readers of the
///   live engine see unsynced writes (as with an OS page cache).
/// * A synced batch ([`WriteBatch::sync`]) makes itself and every earlier
///   batch durable; so does [`Engine::sync`].
/// * [`MemoryDisk::crash`] models a power loss: every batch that was not made
///   durable is lost (the state reverts to the last synced batch), and every
///   handle opened before the crash, along with the snapshots and iterators
///   made from it, is dead: writes, `sync`, `get` and iteration on it fail with
///   [`Error::Engine`] ("... closed by crash ..."). Taking a snapshot from a
///   dead handle succeeds but every read of that snapshot fails. A crashed
///   node therefore cannot write, nor read data that was never durable.
/// * [`MemoryDisk::crash_keeping`] is a partial crash: the OS had written out
///   the first `n` unsynced batches (batches reach the disk in order and
///   whole), the rest is lost.
/// * A graceful stop is just dropping the handle: unsynced writes stay in the
///   "page cache" and are visible after [`MemoryDisk::open`] unless `crash` is
///   called in between. This models a process that exits while the OS keeps
///   running (and matches fjall, which flushes its journal to the OS on every
///   write and fsyncs it on drop).
///
/// Several live handles on one disk share the same state (the memory engine
/// does not model fjall's directory lock).
///
/// This engine has no threads, clocks or randomness, and iterates only
/// `BTreeMap`s, so the simulator stays deterministic.
///
/// # Cost
///
/// Each column family is a copy-on-write `Arc<BTreeMap>`: a snapshot is four
/// `Arc` clones, and the first write to a column family while a snapshot of it
/// is alive copies that column family once. Durability is tracked with an undo
/// log of the unsynced batches (the previous value of every key they touched),
/// so a sync only clears the log and a crash rolls it back.
#[derive(Clone, Default)]
pub struct MemoryDisk {
    state: Arc<Mutex<DiskState>>,
}

impl MemoryDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().expect("memory disk lock poisoned")
    }

    /// Opens an engine on this disk. It sees every write that survived so
    /// far (after a crash: only what was synced).
    pub fn open(&self) -> MemoryEngine {
        let generation = self.lock().generation;
        MemoryEngine { disk: self.clone(), generation }
    }

    /// Power loss: loses every write that was not synced, and kills every
    /// handle opened before the crash (see the [durability model](MemoryDisk#durability-model)).
    pub fn crash(&self) {
        self.crash_keeping(0);
    }

    /// A partial power loss: the first `keep_unsynced` unsynced batches (in
    /// write order) reached the disk anyway and survive, the later ones are
    /// lost. Kills every handle opened before the crash, like
    /// [`crash`](Self::crash). A `keep_unsynced` larger than
    /// [`unsynced_batches`](Self::unsynced_batches) keeps them all.
    pub fn crash_keeping(&self, keep_unsynced: usize) {
        let mut state = self.lock();
        let state = &mut *state;
        let keep = keep_unsynced.min(state.undo.len());
        let lost = state.undo.split_off(keep);
        state.stats.lost_batches += lost.len() as u64;
        for batch in lost.into_iter().rev() {
            for (cf, key, old) in batch.into_iter().rev() {
                let tree = Arc::make_mut(&mut state.trees[cf_index(cf)]);
                match old {
                    Some(value) => tree.insert(key, value),
                    None => tree.remove(&key),
                };
            }
        }
        // What survived a crash is on the platter now.
        state.undo.clear();
        state.generation += 1;
        state.stats.crashes += 1;
    }

    /// Number of non-empty batches written since the last sync: what a
    /// [`crash`](Self::crash) would lose now.
    pub fn unsynced_batches(&self) -> usize {
        self.lock().undo.len()
    }

    /// How many crashes this disk has seen (the generation of handles opened
    /// now).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Counters over the disk's whole life.
    pub fn stats(&self) -> MemoryDiskStats {
        self.lock().stats
    }
}

impl fmt::Debug for MemoryDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let mut s = f.debug_struct("MemoryDisk");
        s.field("generation", &state.generation);
        for cf in Cf::ALL {
            s.field(cf.name(), &state.trees[cf_index(cf)].len());
        }
        s.field("unsynced_batches", &state.undo.len()).field("stats", &state.stats).finish()
    }
}

fn dead_error(what: &str, opened: u64, now: u64) -> Error {
    Error::Engine(format!(
        "memory {what} closed by crash: opened in disk generation {opened}, the disk has \
         crashed since (now generation {now}); reopen the disk"
    ))
}

/// An engine handle on a [`MemoryDisk`]; see the
/// [durability model](MemoryDisk#durability-model).
pub struct MemoryEngine {
    disk: MemoryDisk,
    generation: u64,
}

impl MemoryEngine {
    /// The disk this engine writes to.
    pub fn disk(&self) -> &MemoryDisk {
        &self.disk
    }

    /// Whether a crash has killed this handle.
    pub fn is_dead(&self) -> bool {
        self.disk.lock().generation != self.generation
    }

    fn live_state(&self) -> Result<MutexGuard<'_, DiskState>> {
        let state = self.disk.lock();
        if state.generation != self.generation {
            return Err(dead_error("engine handle", self.generation, state.generation));
        }
        Ok(state)
    }
}

impl fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEngine")
            .field("generation", &self.generation)
            .field("dead", &self.is_dead())
            .field("disk", &self.disk)
            .finish()
    }
}

impl Engine for MemoryEngine {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        check_batch(&batch)?;
        let mut state = self.live_state()?;
        let state = &mut *state;
        let sync = batch.is_sync();
        if !batch.is_empty() {
            let mut undo = Vec::with_capacity(batch.len());
            for op in batch.into_ops() {
                match op {
                    WriteOp::Put { cf, key, value } => {
                        let tree = Arc::make_mut(&mut state.trees[cf_index(cf)]);
                        let old = tree.insert(key.clone(), value);
                        undo.push((cf, key, old));
                    }
                    WriteOp::Delete { cf, key } => {
                        // Skip the copy-on-write when there is nothing to delete.
                        if state.trees[cf_index(cf)].contains_key(&key) {
                            let old = Arc::make_mut(&mut state.trees[cf_index(cf)]).remove(&key);
                            undo.push((cf, key, old));
                        }
                    }
                }
            }
            state.undo.push(undo);
            state.stats.batches += 1;
        }
        if sync {
            state.undo.clear();
            state.stats.syncs += 1;
        }
        Ok(())
    }

    /// Takes a snapshot. On a handle killed by a crash this still returns a
    /// snapshot, but every read of it fails.
    fn snapshot(&self) -> Box<dyn Snapshot> {
        let state = self.disk.lock();
        Box::new(MemorySnapshot {
            trees: state.trees.clone(),
            disk: self.disk.clone(),
            generation: self.generation,
        })
    }

    fn sync(&self) -> Result<()> {
        let mut state = self.live_state()?;
        state.undo.clear();
        state.stats.syncs += 1;
        Ok(())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let state = self.live_state()?;
        Ok(state.trees[cf_index(cf)].get(key).cloned())
    }
}

/// A point-in-time view of a [`MemoryEngine`].
struct MemorySnapshot {
    trees: Trees,
    disk: MemoryDisk,
    generation: u64,
}

impl MemorySnapshot {
    fn check_alive(&self) -> Result<()> {
        check_alive(&self.disk, self.generation)
    }
}

fn check_alive(disk: &MemoryDisk, generation: u64) -> Result<()> {
    let now = disk.lock().generation;
    if now != generation {
        return Err(dead_error("snapshot", generation, now));
    }
    Ok(())
}

impl fmt::Debug for MemorySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MemorySnapshot");
        s.field("generation", &self.generation);
        for cf in Cf::ALL {
            s.field(cf.name(), &self.trees[cf_index(cf)].len());
        }
        s.finish()
    }
}

impl Snapshot for MemorySnapshot {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_alive()?;
        Ok(self.trees[cf_index(cf)].get(key).cloned())
    }

    fn iter(&self, cf: Cf, start: &[u8], end: Option<&[u8]>) -> EngineIter {
        let empty = end.is_some_and(|end| end <= start);
        Box::new(MemoryIter {
            tree: self.trees[cf_index(cf)].clone(),
            next: Bound::Included(start.to_vec()),
            end: end.map(<[u8]>::to_vec),
            buf: VecDeque::new(),
            exhausted: empty,
            disk: self.disk.clone(),
            generation: self.generation,
            failed: false,
        })
    }
}

/// An owned iterator over a range of one column family of a snapshot.
///
/// It owns an `Arc` of the tree and walks it in chunks, remembering the last
/// key it returned.
struct MemoryIter {
    tree: Arc<Tree>,
    /// Lower bound of the next chunk.
    next: Bound<Vec<u8>>,
    end: Option<Vec<u8>>,
    buf: VecDeque<KvPair>,
    /// No more chunks to fetch (the buffer may still hold items).
    exhausted: bool,
    disk: MemoryDisk,
    generation: u64,
    /// The crash error was returned; the iterator is over.
    failed: bool,
}

const CHUNK: usize = 64;

impl MemoryIter {
    fn refill(&mut self) {
        let upper = match &self.end {
            Some(end) => Bound::Excluded(end.as_slice()),
            None => Bound::Unbounded,
        };
        let lower = match &self.next {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let chunk: Vec<KvPair> = self
            .tree
            .range::<[u8], _>((lower, upper))
            .take(CHUNK)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if chunk.len() < CHUNK {
            self.exhausted = true;
        }
        if let Some((last, _)) = chunk.last() {
            self.next = Bound::Excluded(last.clone());
        }
        self.buf.extend(chunk);
    }
}

impl Iterator for MemoryIter {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Err(e) = check_alive(&self.disk, self.generation) {
            self.failed = true;
            return Some(Err(e));
        }
        if self.buf.is_empty() && !self.exhausted {
            self.refill();
        }
        self.buf.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_KEY_LEN;

    fn put(cf: Cf, key: &[u8], value: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(cf, key, value);
        batch
    }

    fn scan(snap: &dyn Snapshot, cf: Cf) -> Vec<KvPair> {
        snap.iter(cf, b"", None).map(|kv| kv.unwrap()).collect()
    }

    #[test]
    fn crash_loses_exactly_the_unsynced_batches() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        engine.write(put(Cf::Default, b"a", b"1").sync()).unwrap();
        engine.write(put(Cf::Default, b"a", b"2")).unwrap();
        engine.write(put(Cf::Lock, b"b", b"3")).unwrap();
        assert_eq!(engine.get(Cf::Default, b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(disk.unsynced_batches(), 2);

        disk.crash();
        assert!(engine.is_dead());
        let err = engine.write(put(Cf::Default, b"x", b"y")).unwrap_err().to_string();
        assert!(err.contains("closed by crash"), "{err}");
        assert!(engine.get(Cf::Default, b"a").is_err());
        assert!(engine.sync().is_err());
        assert!(engine.snapshot().get(Cf::Default, b"a").is_err());

        let engine = disk.open();
        assert_eq!(engine.get(Cf::Default, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(engine.get(Cf::Lock, b"b").unwrap(), None);
        assert_eq!(disk.unsynced_batches(), 0);
        assert_eq!(disk.stats().lost_batches, 2);
    }

    #[test]
    fn synced_batch_makes_earlier_batches_durable() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        engine.write(put(Cf::Default, b"a", b"1")).unwrap();
        engine.write(WriteBatch::new().sync()).unwrap();
        engine.write(put(Cf::Default, b"b", b"2")).unwrap();
        engine.sync().unwrap();
        engine.write(put(Cf::Default, b"c", b"3")).unwrap();
        disk.crash();
        let engine = disk.open();
        let snap = engine.snapshot();
        assert_eq!(
            scan(&*snap, Cf::Default),
            vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]
        );
    }

    #[test]
    fn partial_crash_keeps_a_prefix_of_unsynced_batches() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        for (i, v) in [b"1", b"2", b"3"].into_iter().enumerate() {
            let mut batch = put(Cf::Write, b"k", v);
            batch.put(Cf::Meta, &[i as u8 + 1], v);
            engine.write(batch).unwrap();
        }
        disk.crash_keeping(2);
        let engine = disk.open();
        assert_eq!(engine.get(Cf::Write, b"k").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(scan(&*engine.snapshot(), Cf::Meta).len(), 2);
        // What survived is durable: a second crash keeps it.
        disk.crash();
        let engine = disk.open();
        assert_eq!(engine.get(Cf::Write, b"k").unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn graceful_restart_keeps_unsynced_writes() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        engine.write(put(Cf::Default, b"a", b"1")).unwrap();
        drop(engine);
        let engine = disk.open();
        assert_eq!(engine.get(Cf::Default, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(disk.unsynced_batches(), 1);
    }

    #[test]
    fn snapshots_are_isolated_and_iterators_are_owned() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        for i in 0..200u32 {
            engine.write(put(Cf::Default, &i.to_be_bytes(), b"old")).unwrap();
        }
        let snap = engine.snapshot();
        let iter = snap.iter(Cf::Default, &10u32.to_be_bytes(), Some(&150u32.to_be_bytes()));
        drop(snap);
        for i in 0..200u32 {
            let mut batch = WriteBatch::new();
            batch.delete(Cf::Default, &i.to_be_bytes());
            batch.put(Cf::Default, &(i + 1000).to_be_bytes(), b"new");
            engine.write(batch).unwrap();
        }
        let seen: Vec<_> =
            std::thread::spawn(move || iter.map(|kv| kv.unwrap()).collect()).join().unwrap();
        let expected: Vec<_> =
            (10..150u32).map(|i| (i.to_be_bytes().to_vec(), b"old".to_vec())).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn iterator_of_a_crashed_disk_fails_once() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        engine.write(put(Cf::Default, b"a", b"1").sync()).unwrap();
        let mut iter = engine.snapshot().iter(Cf::Default, b"", None);
        disk.crash();
        assert!(iter.next().unwrap().is_err());
        assert!(iter.next().is_none());
    }

    #[test]
    fn bad_keys_are_rejected_without_applying_anything() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        let mut batch = put(Cf::Default, b"a", b"1");
        batch.put(Cf::Default, b"", b"2");
        assert!(engine.write(batch).unwrap_err().to_string().contains("empty"));
        let mut batch = put(Cf::Default, b"a", b"1");
        batch.delete(Cf::Default, &vec![7; MAX_KEY_LEN + 1]);
        assert!(engine.write(batch).is_err());
        assert_eq!(engine.get(Cf::Default, b"a").unwrap(), None);
        assert_eq!(disk.unsynced_batches(), 0);
        engine.write(put(Cf::Default, &vec![7; MAX_KEY_LEN], b"1")).unwrap();
    }

    #[test]
    fn empty_and_reversed_ranges_are_empty() {
        let engine = MemoryDisk::new().open();
        engine.write(put(Cf::Default, b"b", b"1")).unwrap();
        let snap = engine.snapshot();
        assert_eq!(snap.iter(Cf::Default, b"c", Some(b"a")).count(), 0);
        assert_eq!(snap.iter(Cf::Default, b"b", Some(b"b")).count(), 0);
        assert_eq!(snap.iter(Cf::Default, b"b", Some(b"b\0")).count(), 1);
    }
}
