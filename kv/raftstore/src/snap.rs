//! Snapshot files: how a store keeps, sends and receives raft snapshots.
//!
//! A raft snapshot of a region is too big for a raft message: its data
//! travels as files. The [`SnapManager`] of a store owns one directory and
//! every snapshot file in it. It is shared as `Arc<SnapManager>` between the
//! store thread, the snapshot worker and the transport (it is `Send + Sync`;
//! an interior mutex guards the registry of snapshots in use).
//!
//! # Life cycle
//!
//! 1. **Build** ([`SnapManager::build`], on the sending store's worker): the
//!    region's data in a point-in-time engine snapshot is written into one
//!    file per data column family, then a meta file describing them
//!    ([`SnapshotMeta`]: per CF its name, size and CRC-32). This is a
//!    [`SnapKind::Generated`] snapshot. Building also deletes the region's
//!    other generated snapshots that nobody is using.
//! 2. **Send** ([`SnapManager::open_send`]): a [`SnapSender`] yields the CF
//!    files' bytes, concatenated in meta order, in bounded chunks. The meta
//!    itself travels inside the raft message.
//! 3. **Receive** ([`SnapManager::receive`], on the other store): a
//!    [`SnapReceiver`] splits the byte stream back into CF files by the sizes
//!    in the meta and checks every CRC before anything becomes visible. The
//!    result is a [`SnapKind::Received`] snapshot.
//! 4. **Apply** ([`SnapManager::open_apply`], on the receiving store's
//!    worker): the files are verified against the meta once more (the disk
//!    may have rotted since), then a [`SnapApplier`] yields the records.
//! 5. **Delete** ([`SnapManager::delete`]): once sent or applied, the owner
//!    deletes the snapshot. A snapshot that is being generated, sent,
//!    received or applied is *in use* and is never deleted
//!    ([`SnapManager::in_use`]); the handle that uses it
//!    ([`SnapSender`], [`SnapReceiver`], [`SnapApplier`]) keeps it
//!    registered until it is dropped.
//!
//! # File layout
//!
//! Everything lives directly in [`SnapManager::dir`]. A snapshot is named by
//! its [`SnapKey`] (region, term, index) and its [`SnapKind`] (prefix `gen`
//! for generated, `rev` for received):
//!
//! | file | holds |
//! |---|---|
//! | `gen_{region}_{term}_{index}_{cf}.snap` | the records of one data CF (`default`, `lock`, `write`) |
//! | `gen_{region}_{term}_{index}.meta` | the encoded [`SnapshotMeta`] |
//! | `rev_...` | the same for a received snapshot |
//! | `<any of the above>.tmp` | a file being written |
//!
//! A CF file is a sequence of records, each `key_len: u32 BE, key,
//! value_len: u32 BE, value`, in ascending key order; keys are never empty.
//! An empty CF is an empty file (size 0, checksum 0). The checksum is the
//! standard CRC-32 ([`crc32`]) of the whole file.
//!
//! # Crash safety
//!
//! A snapshot is *complete* exactly when its meta file exists, and nothing
//! but a complete snapshot is ever read. Every file is written under its
//! `.tmp` name, fsynced, and only then renamed to its final name; the CF
//! files are renamed first, the directory is fsynced, and the meta file is
//! written the same way **last**. So a crash at any point leaves either a
//! complete snapshot whose files are all durable, or files without a meta
//! (ignored, and removed by [`SnapManager::open`]) and `.tmp` files (removed
//! by [`SnapManager::open`] as well). Deleting goes the other way: the meta
//! file goes first (and the directory is fsynced), then the CF files, so a
//! crash during a delete never leaves a complete-looking partial snapshot.
//! On top of that, the CRCs catch anything the disk or the network garbled:
//! a receiver checks them before its files become visible,
//! [`SnapManager::open_apply`] checks them again before yielding a record,
//! and files already on disk are checked before they are reused (a
//! generated snapshot is built again rather than handed out with a bad
//! file; a received copy with a bad file does not make a new transfer of
//! it a duplicate).
//!
//! # The file system
//!
//! All file I/O goes through a [`FileSystem`]: [`SnapManager::open`] uses
//! the real one ([`RealFs`]), [`SnapManager::open_on`] any, such as the
//! simulator's [`MemoryFs`](tinykv_engine::MemoryFs), which loses what was
//! not synced in a crash (file bytes, and creates, renames and removes no
//! directory sync covered) and can leave files torn. The protocol above
//! relies only on what that trait promises.
//!
//! # Determinism
//!
//! The simulator drives this module too, so nothing here reads a clock,
//! draws a random number or depends on the order in which the OS lists a
//! directory (listings are sorted).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prost::Message as _;
use tinykv_engine::Cf;
use tinykv_engine::fs::{FileSystem, ReadableFile, RealFs, WritableFile};
use tinykv_proto::metapb::Region;
use tinykv_proto::raft_serverpb::{SnapshotCfFile, SnapshotMeta};

/// The buffer size for streaming files: no file is ever read into memory
/// whole, only in pieces of (at most) this size.
const BUF_SIZE: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// CRC-32
// ---------------------------------------------------------------------------

/// The table of the reflected CRC-32 with polynomial `0xEDB88320`, built at
/// compile time: entry `i` is the CRC register after shifting `i` through
/// eight rounds.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut round = 0;
        while round < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            round += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// An incremental CRC-32 (IEEE 802.3, the one of zlib and PNG: reflected,
/// polynomial `0xEDB88320`, initial value and final xor `0xFFFFFFFF`).
///
/// Feeding the bytes in any split gives the same result as [`crc32`] of
/// their concatenation.
///
/// ```
/// use tinykv_raftstore::snap::{Crc32, crc32};
/// let mut crc = Crc32::new();
/// crc.update(b"1234");
/// crc.update(b"56789");
/// assert_eq!(crc.finish(), crc32(b"123456789"));
/// assert_eq!(crc.finish(), 0xCBF4_3926);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32 {
    /// The CRC register, before the final xor.
    state: u32,
}

impl Crc32 {
    /// The CRC of no bytes so far.
    pub const fn new() -> Crc32 {
        Crc32 { state: 0xFFFF_FFFF }
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.state;
        for &b in data {
            c = CRC32_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    /// The CRC of everything fed so far. Does not reset: more bytes may be
    /// fed afterwards.
    pub const fn finish(&self) -> u32 {
        self.state ^ 0xFFFF_FFFF
    }
}

impl Default for Crc32 {
    fn default() -> Crc32 {
        Crc32::new()
    }
}

/// The CRC-32 of `data` (see [`Crc32`]); `crc32(b"") == 0`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(data);
    crc.finish()
}

// ---------------------------------------------------------------------------
// Keys, kinds, errors
// ---------------------------------------------------------------------------

/// Names one snapshot: the region and the (term, index) of the last log
/// entry it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapKey {
    /// The region whose data the snapshot holds.
    pub region_id: u64,
    /// The term of the last log entry the snapshot covers.
    pub term: u64,
    /// The index of the last log entry the snapshot covers.
    pub index: u64,
}

impl SnapKey {
    /// The key of region `region_id`'s snapshot at (`term`, `index`).
    pub fn new(region_id: u64, term: u64, index: u64) -> SnapKey {
        SnapKey { region_id, term, index }
    }
}

impl fmt::Display for SnapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region {} term {} index {}", self.region_id, self.term, self.index)
    }
}

/// Which side made the files: this store built them (to send), or received
/// them (to apply). A generated and a received snapshot of the same key are
/// two unrelated sets of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SnapKind {
    /// Built by this store from its engine ([`SnapManager::build`]); file
    /// prefix `gen`.
    Generated,
    /// Received from another store ([`SnapManager::receive`]); file prefix
    /// `rev`.
    Received,
}

impl SnapKind {
    /// The prefix of the file names.
    const fn prefix(self) -> &'static str {
        match self {
            SnapKind::Generated => "gen",
            SnapKind::Received => "rev",
        }
    }
}

impl fmt::Display for SnapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapKind::Generated => "generated",
            SnapKind::Received => "received",
        })
    }
}

/// What can go wrong with snapshot files. Each message says what failed, for
/// which snapshot and (where it applies) which file and CF.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    /// A file system operation failed; `what` says which and on what path
    /// (e.g. "writing /path/gen_1_5_20_write.snap.tmp").
    #[error("snapshot I/O error {what}: {source}")]
    Io {
        /// The operation and the path.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The snapshot is not on disk (no meta file).
    #[error("{kind} snapshot {key} not found")]
    NotFound {
        /// The snapshot asked for.
        key: SnapKey,
        /// Its kind.
        kind: SnapKind,
    },
    /// The snapshot is in use in a way that excludes the request (e.g. it is
    /// already being received).
    #[error("{kind} snapshot {key} is busy: {why}")]
    Busy {
        /// The snapshot asked for.
        key: SnapKey,
        /// Its kind.
        kind: SnapKind,
        /// What it is busy with.
        why: String,
    },
    /// The snapshot's bytes or meta are wrong: a checksum or size mismatch,
    /// a truncated stream or too many bytes, a bad record, an unknown or
    /// missing CF in a meta.
    #[error("snapshot {key} is corrupt: {why}")]
    Corrupt {
        /// The snapshot.
        key: SnapKey,
        /// What is wrong, naming the CF and file where it applies.
        why: String,
    },
    /// The engine failed while the snapshot was being built.
    #[error("engine error while building a snapshot: {0}")]
    Engine(#[from] tinykv_engine::Error),
}

/// The result type of this module.
pub type SnapResult<T> = std::result::Result<T, SnapError>;

impl From<SnapError> for crate::error::Error {
    /// A corrupt snapshot is [`Error::Corrupt`](crate::error::Error::Corrupt);
    /// every other failure (I/O, engine, not found, busy) is a failure of the
    /// store's storage, [`Error::Engine`](crate::error::Error::Engine). The
    /// message is kept whole.
    fn from(e: SnapError) -> crate::error::Error {
        match e {
            SnapError::Corrupt { .. } => crate::error::Error::Corrupt(e.to_string()),
            SnapError::Io { .. }
            | SnapError::NotFound { .. }
            | SnapError::Busy { .. }
            | SnapError::Engine(_) => crate::error::Error::Engine(e.to_string()),
        }
    }
}

/// Adds "what and where" to an I/O result.
trait IoContext<T> {
    /// Turns an I/O error into [`SnapError::Io`], with `what()` as its
    /// description (only computed on error).
    fn io_ctx(self, what: impl FnOnce() -> String) -> SnapResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_ctx(self, what: impl FnOnce() -> String) -> SnapResult<T> {
        self.map_err(|source| SnapError::Io { what: what(), source })
    }
}

fn corrupt(key: SnapKey, why: impl Into<String>) -> SnapError {
    SnapError::Corrupt { key, why: why.into() }
}

// ---------------------------------------------------------------------------
// File names
// ---------------------------------------------------------------------------

/// What a file of a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileRole {
    /// The meta file.
    Meta,
    /// The records of one data CF.
    Cf(Cf),
}

/// A file name of this module, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileName {
    key: SnapKey,
    kind: SnapKind,
    role: FileRole,
    /// Whether it is the `.tmp` name of a file being written.
    tmp: bool,
}

impl FileName {
    /// The file name, e.g. `gen_1_5_20_write.snap` or `rev_1_5_20.meta.tmp`.
    fn render(&self) -> String {
        let SnapKey { region_id, term, index } = self.key;
        let base = format!("{}_{region_id}_{term}_{index}", self.kind.prefix());
        let name = match self.role {
            FileRole::Meta => format!("{base}.meta"),
            FileRole::Cf(cf) => format!("{base}_{}.snap", cf.name()),
        };
        if self.tmp { name + ".tmp" } else { name }
    }

    /// Parses a name made by [`render`](Self::render); anything else (other
    /// files someone put into the directory) is `None` and left alone.
    fn parse(name: &str) -> Option<FileName> {
        let (rest, tmp) = match name.strip_suffix(".tmp") {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let (stem, role) = if let Some(stem) = rest.strip_suffix(".meta") {
            (stem, FileRole::Meta)
        } else {
            let stem = rest.strip_suffix(".snap")?;
            let (stem, cf) = stem.rsplit_once('_')?;
            (stem, FileRole::Cf(Cf::parse_data(cf).ok()?))
        };
        let mut parts = stem.split('_');
        let kind = match parts.next()? {
            "gen" => SnapKind::Generated,
            "rev" => SnapKind::Received,
            _ => return None,
        };
        let region_id = parts.next()?.parse().ok()?;
        let term = parts.next()?.parse().ok()?;
        let index = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let parsed = FileName { key: SnapKey { region_id, term, index }, kind, role, tmp };
        // Only canonical spellings: `+5` or `05` would parse but is not ours.
        (parsed.render() == name).then_some(parsed)
    }
}

/// `path` with `.tmp` appended.
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(".tmp");
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------
// Small file helpers
// ---------------------------------------------------------------------------

/// Makes the directory entries (creations, renames, removals) in `dir`
/// durable (on the real file system, a no-op where directories cannot be
/// opened as files).
fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> SnapResult<()> {
    fs.sync_dir(dir).io_ctx(|| format!("syncing directory {}", dir.display()))
}

/// Removes `path`; `Ok(false)` if it was not there.
fn remove_if_exists(fs: &dyn FileSystem, path: &Path) -> SnapResult<bool> {
    match fs.remove(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SnapError::Io { what: format!("removing {}", path.display()), source: e }),
    }
}

fn rename(fs: &dyn FileSystem, from: &Path, to: &Path) -> SnapResult<()> {
    fs.rename(from, to).io_ctx(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Flushes `out`, fsyncs its file and closes it.
fn flush_and_sync(out: BufWriter<Box<dyn WritableFile>>, path: &Path) -> SnapResult<()> {
    let mut file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .io_ctx(|| format!("flushing {}", path.display()))?;
    file.sync().io_ctx(|| format!("syncing {}", path.display()))
}

/// Writes `bytes` to `path` crash-safely: to its `.tmp` name, fsynced,
/// renamed, and the directory fsynced. On error the `.tmp` file is removed.
fn write_atomically(fs: &dyn FileSystem, dir: &Path, path: &Path, bytes: &[u8]) -> SnapResult<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file = fs.create(&tmp).io_ctx(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes).io_ctx(|| format!("writing {}", tmp.display()))?;
        file.sync().io_ctx(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        rename(fs, &tmp, path)?;
        sync_dir(fs, dir)
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = remove_if_exists(fs, &tmp);
    }
    result
}

/// Checks `meta` of snapshot `key`: exactly the three data CFs, each once,
/// in any order, and sizes that add up without overflow. Returns the CFs in
/// meta order with their size and checksum.
fn validate_meta(key: SnapKey, meta: &SnapshotMeta) -> SnapResult<Vec<(Cf, u64, u32)>> {
    let mut parts = Vec::with_capacity(Cf::DATA.len());
    let mut total: u64 = 0;
    for file in &meta.cf_files {
        let cf = Cf::parse_data(&file.cf)
            .map_err(|_| corrupt(key, format!("the meta names an unknown cf {:?}", file.cf)))?;
        if parts.iter().any(|&(seen, _, _)| seen == cf) {
            return Err(corrupt(key, format!("the meta names cf {cf} twice")));
        }
        total = total
            .checked_add(file.size)
            .ok_or_else(|| corrupt(key, "the sizes in the meta add up to more than 2^64 bytes"))?;
        parts.push((cf, file.size, file.checksum));
    }
    if let Some(missing) = Cf::DATA.into_iter().find(|cf| !parts.iter().any(|p| p.0 == *cf)) {
        return Err(corrupt(key, format!("the meta lacks cf {missing}")));
    }
    Ok(parts)
}

/// The meta's CF files sorted by CF name: two metas describe the same files
/// iff their normal forms are equal, whatever their order.
fn normal_form(meta: &SnapshotMeta) -> Vec<&SnapshotCfFile> {
    let mut files: Vec<_> = meta.cf_files.iter().collect();
    files.sort_by(|a, b| a.cf.cmp(&b.cf));
    files
}

/// Checks that the file of `cf` at `path` has `size` bytes with CRC-32
/// `checksum`, reading it in bounded pieces.
fn verify_file(
    fs: &dyn FileSystem,
    key: SnapKey,
    cf: Cf,
    path: &Path,
    size: u64,
    checksum: u32,
) -> SnapResult<()> {
    let file = match fs.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(corrupt(key, format!("cf {cf}: file {} is missing", path.display())));
        }
        Err(e) => {
            return Err(SnapError::Io { what: format!("opening {}", path.display()), source: e });
        }
    };
    let actual_size = file.size().io_ctx(|| format!("reading the size of {}", path.display()))?;
    if actual_size != size {
        return Err(corrupt(
            key,
            format!(
                "cf {cf}: size mismatch in {}: expected {size} bytes, found {actual_size}",
                path.display()
            ),
        ));
    }
    let mut reader = BufReader::with_capacity(BUF_SIZE, file);
    let mut crc = Crc32::new();
    loop {
        let buf = reader.fill_buf_ctx(path)?;
        if buf.is_empty() {
            break;
        }
        crc.update(buf);
        let n = buf.len();
        reader.consume(n);
    }
    let actual = crc.finish();
    if actual != checksum {
        return Err(corrupt(
            key,
            format!(
                "cf {cf}: checksum mismatch in {}: expected {checksum:#010x}, found {actual:#010x}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `BufRead::fill_buf` with the path in the error.
trait FillBufCtx {
    fn fill_buf_ctx(&mut self, path: &Path) -> SnapResult<&[u8]>;
}

impl<R: Read> FillBufCtx for BufReader<R> {
    fn fill_buf_ctx(&mut self, path: &Path) -> SnapResult<&[u8]> {
        self.fill_buf().io_ctx(|| format!("reading {}", path.display()))
    }
}

// ---------------------------------------------------------------------------
// The registry of snapshots in use
// ---------------------------------------------------------------------------

/// What a registered snapshot is being used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    /// [`SnapManager::build`] is writing it (generated).
    Generating,
    /// A [`SnapSender`] reads it (generated).
    Sending,
    /// A [`SnapReceiver`] writes it (received).
    Receiving,
    /// A [`SnapApplier`] reads it (received).
    Applying,
}

/// The snapshots in use. Invariant: exactly the live [`Registration`]s are
/// recorded here (`sending` counts the senders of each key, never 0).
#[derive(Debug, Default)]
struct Registry {
    generating: BTreeSet<SnapKey>,
    sending: BTreeMap<SnapKey, usize>,
    receiving: BTreeSet<SnapKey>,
    applying: BTreeSet<SnapKey>,
}

impl Registry {
    fn in_use(&self, key: SnapKey, kind: SnapKind) -> bool {
        match kind {
            SnapKind::Generated => {
                self.generating.contains(&key) || self.sending.contains_key(&key)
            }
            SnapKind::Received => self.receiving.contains(&key) || self.applying.contains(&key),
        }
    }

    fn remove(&mut self, key: SnapKey, activity: Activity) {
        match activity {
            Activity::Generating => {
                self.generating.remove(&key);
            }
            Activity::Sending => {
                if let Some(n) = self.sending.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.sending.remove(&key);
                    }
                }
            }
            Activity::Receiving => {
                self.receiving.remove(&key);
            }
            Activity::Applying => {
                self.applying.remove(&key);
            }
        }
    }
}

/// Locks the registry. A panic while it was held cannot have broken it
/// (every update is a single insert or remove), so poisoning is ignored;
/// this also keeps the `Drop`s of the handles from panicking.
fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One use of one snapshot, recorded in the registry from its creation
/// until it is dropped.
#[derive(Debug)]
struct Registration {
    registry: Arc<Mutex<Registry>>,
    key: SnapKey,
    activity: Activity,
}

impl Registration {
    /// Records the use in `reg`, the locked `registry`. The caller has
    /// checked that it does not conflict.
    fn new(
        registry: &Arc<Mutex<Registry>>,
        reg: &mut Registry,
        key: SnapKey,
        activity: Activity,
    ) -> Registration {
        match activity {
            Activity::Generating => {
                reg.generating.insert(key);
            }
            Activity::Sending => *reg.sending.entry(key).or_insert(0) += 1,
            Activity::Receiving => {
                reg.receiving.insert(key);
            }
            Activity::Applying => {
                reg.applying.insert(key);
            }
        }
        Registration { registry: Arc::clone(registry), key, activity }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry).remove(self.key, self.activity);
    }
}

// ---------------------------------------------------------------------------
// The manager
// ---------------------------------------------------------------------------

/// Counts for status pages and tests, from [`SnapManager::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapStats {
    /// Complete generated snapshots on disk.
    pub generated: usize,
    /// Complete received snapshots on disk.
    pub received: usize,
    /// Live [`SnapSender`]s (several may send one snapshot).
    pub sending: usize,
    /// Live [`SnapReceiver`]s.
    pub receiving: usize,
    /// Live [`SnapApplier`]s.
    pub applying: usize,
    /// Bytes of the files (CF files and meta files) of the complete
    /// snapshots on disk.
    pub bytes: u64,
}

/// The snapshot manager of one store: the snapshot files in one directory,
/// and which of them are in use. See the [module docs](self).
///
/// One manager per directory: two managers on one directory would not see
/// each other's registrations.
#[derive(Debug)]
pub struct SnapManager {
    dir: PathBuf,
    /// Where the files live: the real file system, or the simulator's.
    fs: Arc<dyn FileSystem>,
    /// Leftover files [`open`](Self::open) removed.
    leftovers_removed: usize,
    /// Snapshots in use. Every check-then-act on the files of a snapshot
    /// (registering a use, deleting) happens under this lock, so a snapshot
    /// is never deleted between being found and being registered.
    registry: Arc<Mutex<Registry>>,
}

// The manager is shared between threads; the handles move to workers.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<SnapManager>();
    send::<SnapSender>();
    send::<SnapReceiver>();
    send::<SnapApplier>();
};

impl SnapManager {
    /// Opens the manager on `dir` (created if missing) of the real file
    /// system. Leftover temporary files (`*.tmp`, from a write that a crash
    /// interrupted) are deleted, and so are the CF files of snapshots
    /// without a meta file (a crash before the meta was written, or during
    /// a delete); complete snapshots stay. Files whose names are not this
    /// module's are left alone.
    ///
    /// # Errors
    ///
    /// [`SnapError::Io`] if the directory cannot be created or read or a
    /// leftover cannot be removed.
    pub fn open(dir: impl Into<PathBuf>) -> SnapResult<SnapManager> {
        SnapManager::open_on(Arc::new(RealFs), dir)
    }

    /// [`open`](Self::open) on the file system `fs` (the simulator passes
    /// its [`MemoryFs`](tinykv_engine::MemoryFs), so that a simulated crash
    /// tears snapshot files as it would on a disk).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_on(fs: Arc<dyn FileSystem>, dir: impl Into<PathBuf>) -> SnapResult<SnapManager> {
        let dir = dir.into();
        fs.create_dir_all(&dir)
            .io_ctx(|| format!("creating snapshot directory {}", dir.display()))?;
        let mut mgr = SnapManager { dir, fs, leftovers_removed: 0, registry: Arc::default() };
        let files = mgr.scan()?;
        let complete: BTreeSet<(SnapKey, SnapKind)> = files
            .iter()
            .filter(|f| f.role == FileRole::Meta && !f.tmp)
            .map(|f| (f.key, f.kind))
            .collect();
        let mut removed = 0usize;
        for f in &files {
            if f.tmp || !complete.contains(&(f.key, f.kind)) {
                remove_if_exists(&*mgr.fs, &mgr.dir.join(f.render()))?;
                removed += 1;
            }
        }
        mgr.leftovers_removed = removed;
        if removed > 0 {
            sync_dir(&*mgr.fs, &mgr.dir)?;
            log::info!(
                "snapshot directory {}: removed {removed} leftover files of interrupted writes",
                mgr.dir.display()
            );
        }
        Ok(mgr)
    }

    /// The directory the snapshot files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system the snapshot files live on.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// How many leftover files (temporary files, CF files without a meta)
    /// opening the manager removed: the traces of writes a crash cut
    /// short.
    pub fn leftovers_removed(&self) -> usize {
        self.leftovers_removed
    }

    fn path(&self, key: SnapKey, kind: SnapKind, role: FileRole) -> PathBuf {
        self.dir.join(FileName { key, kind, role, tmp: false }.render())
    }

    fn meta_path(&self, key: SnapKey, kind: SnapKind) -> PathBuf {
        self.path(key, kind, FileRole::Meta)
    }

    fn cf_path(&self, key: SnapKey, kind: SnapKind, cf: Cf) -> PathBuf {
        self.path(key, kind, FileRole::Cf(cf))
    }

    /// This module's files in the directory, sorted by name.
    fn scan(&self) -> SnapResult<Vec<FileName>> {
        let what = || format!("listing snapshot directory {}", self.dir.display());
        let names = self.fs.list(&self.dir).io_ctx(what)?;
        Ok(names.iter().filter_map(|n| FileName::parse(n)).collect())
    }

    /// Builds the generated snapshot `key` of `region`'s data from
    /// `engine_snap`: for each data CF in the fixed order default, lock,
    /// write, every (key, value) with `start_key <= key < end_key` (an empty
    /// `end_key` is unbounded), one file per CF, then the meta file (the
    /// meta is also returned). Every file is written to its `.tmp` name,
    /// fsynced and renamed, the meta file last (see [crash
    /// safety](self#crash-safety)).
    ///
    /// The snapshot is registered as being generated while this runs. If it
    /// already exists complete and its files check out against its meta
    /// (sizes and CRC-32s), its meta is returned without rebuilding; if its
    /// meta file is unreadable or a file is missing, torn or garbled, it is
    /// rebuilt (unless someone is sending it: then the error is returned,
    /// and the receiver rejects what it gets). Afterwards the region's other generated snapshots that are not in use
    /// (older or newer) are deleted, so that at most one generated snapshot
    /// per region stays besides those being sent; a failure to delete one
    /// is logged, not returned.
    ///
    /// # Errors
    ///
    /// [`SnapError::Busy`] if `key` is already being generated;
    /// [`SnapError::Engine`] if reading the engine fails;
    /// [`SnapError::Corrupt`] if the engine yields an empty key or a key or
    /// value too long for a record; [`SnapError::Io`]. On error no file of
    /// the snapshot stays.
    pub fn build(
        &self,
        key: SnapKey,
        region: &Region,
        engine_snap: &dyn tinykv_engine::Snapshot,
    ) -> SnapResult<SnapshotMeta> {
        let kind = SnapKind::Generated;
        let _registration = {
            let mut reg = lock(&self.registry);
            if reg.generating.contains(&key) {
                return Err(SnapError::Busy {
                    key,
                    kind,
                    why: "it is already being generated".into(),
                });
            }
            Registration::new(&self.registry, &mut reg, key, Activity::Generating)
        };
        let existing = match self.meta(key, kind).and_then(|meta| {
            self.verify(key, kind, &validate_meta(key, &meta)?)?;
            Ok(meta)
        }) {
            Ok(meta) => Some(meta),
            Err(SnapError::NotFound { .. }) => None,
            Err(e @ SnapError::Corrupt { .. }) => {
                // An unreadable meta or a bad file (disk rot, a write that
                // was never made durable): build it again, rather than
                // hand out files every receiver rejects. Unless someone is
                // sending it (then they hold the old files).
                let reg = lock(&self.registry);
                if reg.sending.contains_key(&key) {
                    return Err(e);
                }
                log::warn!("rebuilding snapshot {key}: {e}");
                self.remove_files(key, kind)?;
                None
            }
            Err(e) => return Err(e),
        };
        let meta = if let Some(meta) = existing {
            meta
        } else {
            match self.write_generated(key, region, engine_snap) {
                Ok(meta) => meta,
                Err(e) => {
                    // Nobody else touches these files: the snapshot is
                    // registered as generating, and incomplete.
                    if let Err(cleanup) = self.remove_files(key, kind) {
                        log::warn!("cleaning up the failed build of snapshot {key}: {cleanup}");
                    }
                    return Err(e);
                }
            }
        };
        self.remove_other_generated(key);
        Ok(meta)
    }

    /// The work of [`build`](Self::build): writes the CF files and the meta.
    fn write_generated(
        &self,
        key: SnapKey,
        region: &Region,
        engine_snap: &dyn tinykv_engine::Snapshot,
    ) -> SnapResult<SnapshotMeta> {
        let kind = SnapKind::Generated;
        let end = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
        let mut cf_files = Vec::with_capacity(Cf::DATA.len());
        for cf in Cf::DATA {
            let path = self.cf_path(key, kind, cf);
            let tmp = tmp_path(&path);
            let file = self.fs.create(&tmp).io_ctx(|| format!("creating {}", tmp.display()))?;
            let mut writer = HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, file), &tmp);
            for kv in engine_snap.iter(cf, &region.start_key, end) {
                let (k, v) = kv?;
                if k.is_empty() {
                    return Err(corrupt(key, format!("cf {cf}: the engine yielded an empty key")));
                }
                let too_long = |what: &str, len: usize| {
                    corrupt(
                        key,
                        format!("cf {cf}: a {what} of {len} bytes does not fit in a record"),
                    )
                };
                let k_len = u32::try_from(k.len()).map_err(|_| too_long("key", k.len()))?;
                let v_len = u32::try_from(v.len()).map_err(|_| too_long("value", v.len()))?;
                writer.write(&k_len.to_be_bytes())?;
                writer.write(&k)?;
                writer.write(&v_len.to_be_bytes())?;
                writer.write(&v)?;
            }
            let (size, checksum) = writer.finish()?;
            rename(&*self.fs, &tmp, &path)?;
            cf_files.push(SnapshotCfFile { cf: cf.name().to_string(), size, checksum });
        }
        // The CF files' names must be durable before the meta's is.
        sync_dir(&*self.fs, &self.dir)?;
        let meta = SnapshotMeta { cf_files };
        let meta_path = self.meta_path(key, kind);
        write_atomically(&*self.fs, &self.dir, &meta_path, &meta.encode_to_vec())?;
        Ok(meta)
    }

    /// Deletes the generated snapshots of `keep`'s region other than `keep`
    /// that are not in use, complete or not. Failures are logged.
    fn remove_other_generated(&self, keep: SnapKey) {
        let reg = lock(&self.registry);
        let files = match self.scan() {
            Ok(files) => files,
            Err(e) => {
                log::warn!("looking for older snapshots of region {}: {e}", keep.region_id);
                return;
            }
        };
        let others: BTreeSet<SnapKey> = files
            .iter()
            .filter(|f| {
                f.kind == SnapKind::Generated
                    && !f.tmp
                    && f.key.region_id == keep.region_id
                    && f.key != keep
            })
            .map(|f| f.key)
            .collect();
        for key in others {
            if reg.in_use(key, SnapKind::Generated) {
                continue;
            }
            match self.remove_files(key, SnapKind::Generated) {
                Ok(_) => log::info!("deleted generated snapshot {key}, superseded by {keep}"),
                Err(e) => log::warn!("deleting generated snapshot {key}: {e}"),
            }
        }
    }

    /// Removes every file of (`key`, `kind`): the meta first (then the
    /// directory is synced, so the snapshot is durably incomplete), then the
    /// CF files and any `.tmp` files. The caller makes sure it is not in
    /// use. Returns whether the snapshot was complete.
    fn remove_files(&self, key: SnapKey, kind: SnapKind) -> SnapResult<bool> {
        let meta = self.meta_path(key, kind);
        let fs = &*self.fs;
        let existed = remove_if_exists(fs, &meta)?;
        if existed {
            sync_dir(fs, &self.dir)?;
        }
        let mut removed = remove_if_exists(fs, &tmp_path(&meta))?;
        for cf in Cf::DATA {
            let path = self.cf_path(key, kind, cf);
            removed |= remove_if_exists(fs, &path)?;
            removed |= remove_if_exists(fs, &tmp_path(&path))?;
        }
        if removed {
            sync_dir(fs, &self.dir)?;
        }
        Ok(existed)
    }

    /// The meta of the complete snapshot (`key`, `kind`), read from its meta
    /// file.
    ///
    /// # Errors
    ///
    /// [`SnapError::NotFound`] if it is not complete on disk;
    /// [`SnapError::Corrupt`] if the meta file does not decode or does not
    /// name exactly the three data CFs; [`SnapError::Io`].
    pub fn meta(&self, key: SnapKey, kind: SnapKind) -> SnapResult<SnapshotMeta> {
        let path = self.meta_path(key, kind);
        let bytes = match self.fs.read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapError::NotFound { key, kind });
            }
            Err(e) => {
                return Err(SnapError::Io {
                    what: format!("reading {}", path.display()),
                    source: e,
                });
            }
        };
        let meta = SnapshotMeta::decode(bytes.as_slice()).map_err(|e| {
            corrupt(key, format!("meta file {} does not decode: {e}", path.display()))
        })?;
        validate_meta(key, &meta)?;
        Ok(meta)
    }

    /// Checks the CF files of (`key`, `kind`) against `parts` (CF, size,
    /// CRC-32, as [`validate_meta`] gives them).
    ///
    /// # Errors
    ///
    /// [`SnapError::Corrupt`] naming the first file that is missing or has
    /// another size or checksum; [`SnapError::Io`].
    fn verify(&self, key: SnapKey, kind: SnapKind, parts: &[(Cf, u64, u32)]) -> SnapResult<()> {
        for &(cf, size, checksum) in parts {
            verify_file(&*self.fs, key, cf, &self.cf_path(key, kind, cf), size, checksum)?;
        }
        Ok(())
    }

    /// Whether (`key`, `kind`) is complete on disk (its meta file exists).
    pub fn exists(&self, key: SnapKey, kind: SnapKind) -> bool {
        self.fs.exists(&self.meta_path(key, kind))
    }

    /// Opens the generated snapshot `key` for sending. It stays registered
    /// as being sent (and cannot be deleted) until the returned
    /// [`SnapSender`] is dropped. Several senders of one key may exist at
    /// once.
    ///
    /// # Errors
    ///
    /// [`SnapError::NotFound`] if it is not complete on disk; as
    /// [`meta`](Self::meta).
    pub fn open_send(&self, key: SnapKey) -> SnapResult<SnapSender> {
        let kind = SnapKind::Generated;
        let (meta, registration) = {
            let mut reg = lock(&self.registry);
            let meta = self.meta(key, kind)?;
            (meta, Registration::new(&self.registry, &mut reg, key, Activity::Sending))
        };
        let files = validate_meta(key, &meta)?
            .into_iter()
            .map(|(cf, size, _)| (cf, self.cf_path(key, kind, cf), size))
            .collect();
        let total = meta.cf_files.iter().map(|f| f.size).sum();
        Ok(SnapSender {
            fs: Arc::clone(&self.fs),
            key,
            meta,
            files,
            next_file: 0,
            current: None,
            total,
            sent: 0,
            _registration: registration,
        })
    }

    /// Starts receiving snapshot `key`, whose files `meta` describes (the
    /// meta travels in the raft message). It is registered as being received
    /// until the [`SnapReceiver`] is finished or dropped.
    ///
    /// If a complete received copy with the same meta (the same CF files, in
    /// any order) already exists, this is a duplicate transfer: the receiver
    /// still checks the stream but writes nothing, and the copy stays. A
    /// duplicate is not registered, so it never holds up the copy's apply. A
    /// complete copy with a different meta is replaced when the receiver
    /// finishes.
    ///
    /// # Errors
    ///
    /// [`SnapError::Corrupt`] if `meta` does not name exactly the three data
    /// CFs, each once (checked first); [`SnapError::Busy`] if the snapshot
    /// is already being received or is being applied; [`SnapError::Io`].
    pub fn receive(&self, key: SnapKey, meta: &SnapshotMeta) -> SnapResult<SnapReceiver> {
        let kind = SnapKind::Received;
        let parts = validate_meta(key, meta)?;
        let (duplicate, registration) = {
            let mut reg = lock(&self.registry);
            let busy = |why: &str| SnapError::Busy { key, kind, why: why.into() };
            if reg.receiving.contains(&key) {
                return Err(busy("it is already being received"));
            }
            if reg.applying.contains(&key) {
                return Err(busy("it is being applied"));
            }
            let duplicate = match self.meta(key, kind) {
                // Only a copy whose files check out counts: a bad one is
                // replaced by this transfer, not trusted.
                Ok(existing) => {
                    normal_form(&existing) == normal_form(meta)
                        && match self.verify(key, kind, &parts) {
                            Ok(()) => true,
                            Err(e) => {
                                log::warn!("replacing the received copy of {key}: {e}");
                                false
                            }
                        }
                }
                Err(SnapError::NotFound { .. } | SnapError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            // A duplicate transfer neither writes nor reads a file, so it
            // is not registered: the copy may be applied (or deleted) while
            // it streams in. Registering it would make the apply of the
            // first copy fail as busy.
            let registration = (!duplicate)
                .then(|| Registration::new(&self.registry, &mut reg, key, Activity::Receiving));
            (duplicate, registration)
        };
        if duplicate {
            log::info!("snapshot {key} is already received; discarding the duplicate transfer");
        }
        let total = parts.iter().map(|p| p.1).sum();
        let mut receiver = SnapReceiver {
            fs: Arc::clone(&self.fs),
            key,
            dir: self.dir.clone(),
            meta: meta.clone(),
            meta_path: self.meta_path(key, kind),
            parts: parts
                .into_iter()
                .map(|(cf, size, checksum)| {
                    let path = self.cf_path(key, kind, cf);
                    RecvPart {
                        cf,
                        size,
                        checksum,
                        tmp: tmp_path(&path),
                        path,
                        writer: None,
                        crc: Crc32::new(),
                        written: 0,
                    }
                })
                .collect(),
            current: 0,
            total,
            received: 0,
            duplicate,
            failed: None,
            renaming: false,
            finished: false,
            _registration: registration,
        };
        if !duplicate {
            // On error, dropping the receiver removes what was created.
            for part in &mut receiver.parts {
                let file = receiver
                    .fs
                    .create(&part.tmp)
                    .io_ctx(|| format!("creating {}", part.tmp.display()))?;
                part.writer = Some(BufWriter::with_capacity(BUF_SIZE, file));
            }
        }
        Ok(receiver)
    }

    /// Opens the received snapshot `key` for applying: first verifies every
    /// CF file against the meta file (size and checksum), then returns a
    /// [`SnapApplier`] that yields the records. It is registered as being
    /// applied until the applier is dropped.
    ///
    /// # Errors
    ///
    /// [`SnapError::NotFound`] if it is not complete on disk;
    /// [`SnapError::Busy`] if it is being received or already being applied;
    /// [`SnapError::Corrupt`] naming the CF, the expected and the actual
    /// value if a file is missing or its size or checksum is not the meta's;
    /// [`SnapError::Io`].
    pub fn open_apply(&self, key: SnapKey) -> SnapResult<SnapApplier> {
        let kind = SnapKind::Received;
        let (meta, registration) = {
            let mut reg = lock(&self.registry);
            let busy = |why: &str| SnapError::Busy { key, kind, why: why.into() };
            if reg.receiving.contains(&key) {
                return Err(busy("it is being received"));
            }
            if reg.applying.contains(&key) {
                return Err(busy("it is already being applied"));
            }
            let meta = self.meta(key, kind)?;
            (meta, Registration::new(&self.registry, &mut reg, key, Activity::Applying))
        };
        let mut parts = validate_meta(key, &meta)?;
        // Records go out in the fixed CF order, whatever the meta's order.
        parts.sort_by_key(|p| p.0);
        self.verify(key, kind, &parts)?;
        Ok(SnapApplier {
            fs: Arc::clone(&self.fs),
            key,
            meta,
            parts: parts
                .into_iter()
                .map(|(cf, size, _)| (cf, self.cf_path(key, kind, cf), size))
                .collect(),
            next_part: 0,
            current: None,
            done: false,
            _registration: registration,
        })
    }

    /// Deletes snapshot (`key`, `kind`) unless it is in use: then it is
    /// kept and the answer is `Ok(false)`. `Ok(true)` if a complete snapshot
    /// was deleted; `Ok(false)` also if there was none (incomplete leftovers
    /// of it are removed all the same).
    ///
    /// # Errors
    ///
    /// [`SnapError::Io`] if a file cannot be removed; the snapshot is then
    /// incomplete (its meta file goes first) or untouched.
    pub fn delete(&self, key: SnapKey, kind: SnapKind) -> SnapResult<bool> {
        let reg = lock(&self.registry);
        if reg.in_use(key, kind) {
            return Ok(false);
        }
        let deleted = self.remove_files(key, kind)?;
        drop(reg);
        if deleted {
            log::debug!("deleted {kind} snapshot {key}");
        }
        Ok(deleted)
    }

    /// Whether (`key`, `kind`) is being generated, sent, received or applied
    /// right now.
    pub fn in_use(&self, key: SnapKey, kind: SnapKind) -> bool {
        lock(&self.registry).in_use(key, kind)
    }

    /// Every complete snapshot on disk, sorted by (kind, key).
    ///
    /// # Errors
    ///
    /// [`SnapError::Io`] if the directory cannot be read.
    pub fn list(&self) -> SnapResult<Vec<(SnapKey, SnapKind)>> {
        let mut complete: Vec<_> = self
            .scan()?
            .into_iter()
            .filter(|f| f.role == FileRole::Meta && !f.tmp)
            .map(|f| (f.key, f.kind))
            .collect();
        complete.sort_by_key(|&(key, kind)| (kind, key));
        Ok(complete)
    }

    /// Counts for status pages and tests. The disk part is best effort:
    /// files that cannot be read are not counted.
    pub fn stats(&self) -> SnapStats {
        let mut stats = {
            let reg = lock(&self.registry);
            SnapStats {
                sending: reg.sending.values().sum(),
                receiving: reg.receiving.len(),
                applying: reg.applying.len(),
                ..SnapStats::default()
            }
        };
        let files = self.scan().unwrap_or_default();
        let complete: BTreeSet<(SnapKey, SnapKind)> = files
            .iter()
            .filter(|f| f.role == FileRole::Meta && !f.tmp)
            .map(|f| (f.key, f.kind))
            .collect();
        for &(_, kind) in &complete {
            match kind {
                SnapKind::Generated => stats.generated += 1,
                SnapKind::Received => stats.received += 1,
            }
        }
        for f in files.iter().filter(|f| !f.tmp && complete.contains(&(f.key, f.kind))) {
            if let Ok(size) = self.fs.open(&self.dir.join(f.render())).and_then(|f| f.size()) {
                stats.bytes += size;
            }
        }
        stats
    }
}

/// A buffered reader of a snapshot file.
type FileReader = BufReader<Box<dyn ReadableFile>>;

/// Counts the bytes and the CRC of what goes through it.
struct HashingWriter<'p> {
    out: BufWriter<Box<dyn WritableFile>>,
    path: &'p Path,
    crc: Crc32,
    size: u64,
}

impl<'p> HashingWriter<'p> {
    fn new(out: BufWriter<Box<dyn WritableFile>>, path: &'p Path) -> HashingWriter<'p> {
        HashingWriter { out, path, crc: Crc32::new(), size: 0 }
    }

    fn write(&mut self, data: &[u8]) -> SnapResult<()> {
        self.out.write_all(data).io_ctx(|| format!("writing {}", self.path.display()))?;
        self.crc.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs the file; returns its size and CRC.
    fn finish(self) -> SnapResult<(u64, u32)> {
        flush_and_sync(self.out, self.path)?;
        Ok((self.size, self.crc.finish()))
    }
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

/// A generated snapshot being sent: its CF files' bytes, concatenated in
/// meta order, in chunks. Keeps the snapshot registered as being sent until
/// dropped.
#[derive(Debug)]
pub struct SnapSender {
    fs: Arc<dyn FileSystem>,
    key: SnapKey,
    meta: SnapshotMeta,
    /// The CF files in meta order, with their sizes.
    files: Vec<(Cf, PathBuf, u64)>,
    /// The index in `files` of the next file to open.
    next_file: usize,
    /// The file being read: reader, index in `files`, bytes of it not yet
    /// sent.
    current: Option<(FileReader, usize, u64)>,
    total: u64,
    /// Invariant: `sent <= total`.
    sent: u64,
    _registration: Registration,
}

impl SnapSender {
    /// The snapshot being sent.
    pub fn key(&self) -> SnapKey {
        self.key
    }

    /// Its meta: the receiver needs it to split the stream.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The number of bytes the stream has in all (the sum of the CF file
    /// sizes).
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// The next at most `max` bytes of the stream (at least 1 when
    /// `max >= 1`; a chunk may span CF files), or `None` at the end. With
    /// `max == 0` the chunk is empty (or `None` at the end).
    ///
    /// # Errors
    ///
    /// [`SnapError::Corrupt`] if a file is shorter than its meta says;
    /// [`SnapError::Io`]. After an error the stream has a gap: drop the
    /// sender (the receiver will fail on its own).
    pub fn next_chunk(&mut self, max: usize) -> SnapResult<Option<Vec<u8>>> {
        if self.sent == self.total {
            return Ok(None);
        }
        let left = self.total - self.sent;
        let mut out = Vec::with_capacity(usize::try_from(left).map_or(max, |l| l.min(max)));
        while out.len() < max && self.sent < self.total {
            let Some((reader, idx, remaining)) = &mut self.current else {
                // `sent < total`, so a file with bytes left is ahead.
                let idx = self.next_file;
                self.next_file += 1;
                let (_, path, size) = &self.files[idx];
                if *size > 0 {
                    let file =
                        self.fs.open(path).io_ctx(|| format!("opening {}", path.display()))?;
                    self.current = Some((BufReader::with_capacity(BUF_SIZE, file), idx, *size));
                }
                continue;
            };
            if *remaining == 0 {
                self.current = None;
                continue;
            }
            let (cf, path, size) = &self.files[*idx];
            let want =
                usize::try_from(*remaining).map_or(max - out.len(), |r| r.min(max - out.len()));
            let start = out.len();
            out.resize(start + want, 0);
            let n =
                reader.read(&mut out[start..]).io_ctx(|| format!("reading {}", path.display()))?;
            out.truncate(start + n);
            if n == 0 {
                return Err(corrupt(
                    self.key,
                    format!(
                        "cf {cf}: file {} ends after {} bytes, but the meta says {size}",
                        path.display(),
                        size - *remaining
                    ),
                ));
            }
            *remaining -= n as u64;
            self.sent += n as u64;
        }
        Ok(Some(out))
    }
}

// ---------------------------------------------------------------------------
// Receiving
// ---------------------------------------------------------------------------

/// One CF file of a [`SnapReceiver`].
#[derive(Debug)]
struct RecvPart {
    cf: Cf,
    /// The size and checksum the meta announces.
    size: u64,
    checksum: u32,
    /// The final and the temporary path.
    path: PathBuf,
    tmp: PathBuf,
    /// The open `.tmp` file; `None` for a duplicate transfer, and once it is
    /// flushed.
    writer: Option<BufWriter<Box<dyn WritableFile>>>,
    /// The CRC and the count of the bytes received for it so far.
    /// Invariant: `written <= size`.
    crc: Crc32,
    written: u64,
}

/// The receiving side of a transfer: bytes in meta order, split into the CF
/// files by the sizes in the meta. Nothing becomes visible before
/// [`finish`](Self::finish) succeeds; dropping an unfinished receiver
/// deletes its temporary files and unregisters it.
#[derive(Debug)]
pub struct SnapReceiver {
    fs: Arc<dyn FileSystem>,
    key: SnapKey,
    dir: PathBuf,
    meta: SnapshotMeta,
    meta_path: PathBuf,
    /// In meta order.
    parts: Vec<RecvPart>,
    /// The index of the part the next byte goes to (parts before it are
    /// full).
    current: usize,
    total: u64,
    /// Invariant: `received <= total`, and it is the sum of the parts'
    /// `written`.
    received: u64,
    /// A complete copy with this meta exists: check, but write nothing.
    /// Invariant: `duplicate == _registration.is_none()`.
    duplicate: bool,
    /// Why an earlier `write` failed; the transfer cannot finish.
    failed: Option<String>,
    /// `finish` has started renaming files into place: on failure the final
    /// names must be removed too.
    renaming: bool,
    /// `finish` succeeded: the files are the snapshot's now.
    finished: bool,
    _registration: Option<Registration>,
}

impl SnapReceiver {
    /// The snapshot being received.
    pub fn key(&self) -> SnapKey {
        self.key
    }

    /// More bytes of the stream.
    ///
    /// # Errors
    ///
    /// [`SnapError::Corrupt`] if they go beyond the meta's total size ("...
    /// bytes more than the N announced"), or if an earlier write failed;
    /// [`SnapError::Io`]. After an error the transfer cannot finish.
    pub fn write(&mut self, data: &[u8]) -> SnapResult<()> {
        if let Some(why) = &self.failed {
            return Err(corrupt(self.key, format!("the transfer failed earlier: {why}")));
        }
        let len = data.len() as u64;
        if len > self.total - self.received {
            let why = format!(
                "got {} bytes more than the {} announced",
                self.received + len - self.total,
                self.total
            );
            self.failed = Some(why.clone());
            return Err(corrupt(self.key, why));
        }
        let mut rest = data;
        while !rest.is_empty() {
            // `received < total`, so a part with room is ahead.
            while self.parts[self.current].written == self.parts[self.current].size {
                self.current += 1;
            }
            let part = &mut self.parts[self.current];
            let room = part.size - part.written;
            let n = usize::try_from(room).map_or(rest.len(), |r| r.min(rest.len()));
            let (piece, tail) = rest.split_at(n);
            if let Some(writer) = &mut part.writer
                && let Err(e) = writer.write_all(piece)
            {
                let what = format!("writing {}", part.tmp.display());
                self.failed = Some(format!("{what}: {e}"));
                return Err(SnapError::Io { what, source: e });
            }
            part.crc.update(piece);
            part.written += n as u64;
            self.received += n as u64;
            rest = tail;
        }
        Ok(())
    }

    /// Ends the transfer: checks that exactly the announced bytes arrived
    /// and that every CF's CRC-32 is the meta's, then fsyncs the files,
    /// renames them into place and writes the meta file last (see [crash
    /// safety](self#crash-safety)). A complete copy with a different meta is
    /// replaced (its meta file is removed first). For a duplicate transfer
    /// only the checks are made.
    ///
    /// # Errors
    ///
    /// [`SnapError::Corrupt`] "truncated: got X of N bytes" if bytes are
    /// missing, naming the CF with the expected and actual checksum on a
    /// mismatch, or if an earlier write failed; [`SnapError::Io`]. On any
    /// error nothing of this transfer stays on disk.
    pub fn finish(mut self) -> SnapResult<()> {
        // On error, `Drop` removes the files.
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> SnapResult<()> {
        let key = self.key;
        if let Some(why) = &self.failed {
            return Err(corrupt(key, format!("the transfer failed earlier: {why}")));
        }
        if self.received < self.total {
            return Err(corrupt(
                key,
                format!("truncated: got {} of {} bytes", self.received, self.total),
            ));
        }
        for part in &self.parts {
            let actual = part.crc.finish();
            if actual != part.checksum {
                return Err(corrupt(
                    key,
                    format!(
                        "cf {}: checksum mismatch: expected {:#010x}, got {actual:#010x}",
                        part.cf, part.checksum
                    ),
                ));
            }
        }
        if self.duplicate {
            self.finished = true;
            return Ok(());
        }
        for part in &mut self.parts {
            if let Some(writer) = part.writer.take() {
                flush_and_sync(writer, &part.tmp)?;
            }
        }
        self.renaming = true;
        // A copy with another meta goes first, so that no mix of old and new
        // files ever looks complete.
        let fs = &*self.fs;
        if remove_if_exists(fs, &self.meta_path)? {
            sync_dir(fs, &self.dir)?;
        }
        for part in &self.parts {
            rename(fs, &part.tmp, &part.path)?;
        }
        sync_dir(fs, &self.dir)?;
        write_atomically(fs, &self.dir, &self.meta_path, &self.meta.encode_to_vec())?;
        self.finished = true;
        Ok(())
    }

    /// Removes every file this transfer made (best effort: this runs in
    /// `Drop`).
    fn discard(&mut self) {
        let mut paths = Vec::new();
        if self.renaming {
            paths.push(self.meta_path.clone());
            paths.push(tmp_path(&self.meta_path));
        }
        for part in &mut self.parts {
            // Close before removing.
            part.writer = None;
            if self.renaming {
                paths.push(part.path.clone());
            }
            paths.push(part.tmp.clone());
        }
        for path in paths {
            if let Err(e) = remove_if_exists(&*self.fs, &path) {
                log::warn!("discarding the transfer of snapshot {}: {e}", self.key);
            }
        }
    }
}

impl Drop for SnapReceiver {
    fn drop(&mut self) {
        if !self.finished && !self.duplicate {
            self.discard();
        }
    }
}

// ---------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------

/// Reads the records of one CF file.
#[derive(Debug)]
struct RecordReader {
    cf: Cf,
    path: PathBuf,
    reader: FileReader,
    /// Where the next record starts. Invariant: `offset <= size`.
    offset: u64,
    size: u64,
}

impl RecordReader {
    /// The next record, `None` at the end of the file.
    fn next_record(&mut self, key: SnapKey) -> SnapResult<Option<(Vec<u8>, Vec<u8>)>> {
        if self.offset == self.size {
            return Ok(None);
        }
        let start = self.offset;
        let k = self.read_field(key, start)?;
        if k.is_empty() {
            return Err(corrupt(
                key,
                format!(
                    "cf {}: the record at offset {start} of {} has an empty key",
                    self.cf,
                    self.path.display()
                ),
            ));
        }
        let v = self.read_field(key, start)?;
        Ok(Some((k, v)))
    }

    /// Reads one `len: u32 BE, bytes` field of the record at `start`.
    fn read_field(&mut self, key: SnapKey, start: u64) -> SnapResult<Vec<u8>> {
        let past_end = |this: &Self| {
            corrupt(
                key,
                format!(
                    "cf {}: the record at offset {start} runs past the end of {} ({} bytes)",
                    this.cf,
                    this.path.display(),
                    this.size
                ),
            )
        };
        if self.size - self.offset < 4 {
            return Err(past_end(self));
        }
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u64::from(u32::from_be_bytes(len));
        if len > self.size - self.offset {
            return Err(past_end(self));
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| past_end(self))?];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> SnapResult<()> {
        let (path, offset) = (&self.path, self.offset);
        self.reader
            .read_exact(buf)
            .io_ctx(|| format!("reading {} at offset {offset}", path.display()))?;
        self.offset += buf.len() as u64;
        Ok(())
    }
}

/// One record of a snapshot: its CF, key and value.
type Record = (Cf, Vec<u8>, Vec<u8>);

/// The records of a received snapshot, in CF order (default, lock, write)
/// then file order, as `(cf, key, value)`. Keeps the snapshot registered as
/// being applied until dropped. After an error it yields nothing more.
#[derive(Debug)]
pub struct SnapApplier {
    fs: Arc<dyn FileSystem>,
    key: SnapKey,
    meta: SnapshotMeta,
    /// The CF files in CF order, with their (verified) sizes.
    parts: Vec<(Cf, PathBuf, u64)>,
    next_part: usize,
    current: Option<RecordReader>,
    /// The end was reached or an error yielded.
    done: bool,
    _registration: Registration,
}

impl SnapApplier {
    /// The snapshot being applied.
    pub fn key(&self) -> SnapKey {
        self.key
    }

    /// Its meta, as read from its meta file.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn advance(&mut self) -> SnapResult<Option<Record>> {
        loop {
            let Some(reader) = &mut self.current else {
                let Some((cf, path, size)) = self.parts.get(self.next_part) else {
                    return Ok(None);
                };
                self.next_part += 1;
                let file = self.fs.open(path).io_ctx(|| format!("opening {}", path.display()))?;
                self.current = Some(RecordReader {
                    cf: *cf,
                    path: path.clone(),
                    reader: BufReader::with_capacity(BUF_SIZE, file),
                    offset: 0,
                    size: *size,
                });
                continue;
            };
            match reader.next_record(self.key)? {
                Some((k, v)) => return Ok(Some((reader.cf, k, v))),
                None => self.current = None,
            }
        }
    }
}

impl Iterator for SnapApplier {
    type Item = SnapResult<(Cf, Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.advance().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
            self.current = None;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::Arc;
    use tinykv_engine::{Engine, MemoryDisk, MemoryEngine, WriteBatch};

    /// An engine holding `data`.
    fn engine_with(data: &[(Cf, &[u8], &[u8])]) -> MemoryEngine {
        let engine = MemoryDisk::new().open();
        let mut batch = WriteBatch::new();
        for &(cf, k, v) in data {
            batch.put(cf, k, v);
        }
        engine.write(batch.sync()).unwrap();
        engine
    }

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        Region { id, start_key: start.to_vec(), end_key: end.to_vec(), ..Default::default() }
    }

    /// Data in every CF (lock only inside "b".."c"), with keys inside and
    /// outside the range ["b", "d").
    fn sample_engine() -> MemoryEngine {
        engine_with(&[
            (Cf::Default, b"a", b"outside-before"),
            (Cf::Default, b"b", b"v-b"),
            (Cf::Default, b"b1", b""),
            (Cf::Default, b"c", b"v-c"),
            (Cf::Default, b"d", b"outside-end"),
            (Cf::Default, b"zz", b"outside-after"),
            (Cf::Lock, b"b2", b"lock"),
            (Cf::Write, b"a", b"w-a"),
            (Cf::Write, b"c", b"w-c"),
            (Cf::Write, b"d", b"w-d"),
            (Cf::Meta, b"c", b"local state, never in a snapshot"),
        ])
    }

    /// The records of `region` in `engine`, in snapshot order.
    fn expected(engine: &MemoryEngine, region: &Region) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        let snap = engine.snapshot();
        let end = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
        Cf::DATA
            .into_iter()
            .flat_map(|cf| {
                snap.iter(cf, &region.start_key, end)
                    .map(move |kv| kv.map(|(k, v)| (cf, k, v)))
                    .collect::<Vec<_>>()
            })
            .collect::<tinykv_engine::Result<_>>()
            .unwrap()
    }

    /// The whole stream of a generated snapshot, in chunks of `chunk`.
    fn stream(mgr: &SnapManager, key: SnapKey, chunk: usize) -> (SnapshotMeta, Vec<Vec<u8>>) {
        let mut sender = mgr.open_send(key).unwrap();
        let mut chunks = Vec::new();
        while let Some(c) = sender.next_chunk(chunk).unwrap() {
            assert!(!c.is_empty() && c.len() <= chunk, "chunk of {} for max {chunk}", c.len());
            chunks.push(c);
        }
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>() as u64, sender.total_size());
        (sender.meta().clone(), chunks)
    }

    /// Sends `key` from `from` to `to` in chunks of `chunk`.
    fn transfer(
        from: &SnapManager,
        to: &SnapManager,
        key: SnapKey,
        chunk: usize,
    ) -> SnapResult<()> {
        let (meta, chunks) = stream(from, key, chunk);
        let mut receiver = to.receive(key, &meta)?;
        for c in chunks {
            receiver.write(&c)?;
        }
        receiver.finish()
    }

    fn applied(mgr: &SnapManager, key: SnapKey) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        mgr.open_apply(key).unwrap().collect::<SnapResult<_>>().unwrap()
    }

    /// The names of the files in `dir`, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn assert_corrupt(result: SnapResult<impl fmt::Debug>, needles: &[&str]) {
        match result {
            Err(e @ SnapError::Corrupt { .. }) => {
                let msg = e.to_string();
                for needle in needles {
                    assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
                }
            }
            other => panic!("expected Corrupt mentioning {needles:?}, got {other:?}"),
        }
    }

    /// Two stores' managers, in their own temporary directories.
    fn two_managers() -> (tempfile::TempDir, SnapManager, tempfile::TempDir, SnapManager) {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (m1, m2) =
            (SnapManager::open(d1.path()).unwrap(), SnapManager::open(d2.path()).unwrap());
        (d1, m1, d2, m2)
    }

    /// A meta for hand-made CF files.
    fn meta_of(files: &[(&str, &[u8])]) -> SnapshotMeta {
        SnapshotMeta {
            cf_files: files
                .iter()
                .map(|(cf, bytes)| SnapshotCfFile {
                    cf: cf.to_string(),
                    size: bytes.len() as u64,
                    checksum: crc32(bytes),
                })
                .collect(),
        }
    }

    fn record(k: &[u8], v: &[u8]) -> Vec<u8> {
        let mut r = (k.len() as u32).to_be_bytes().to_vec();
        r.extend_from_slice(k);
        r.extend_from_slice(&(v.len() as u32).to_be_bytes());
        r.extend_from_slice(v);
        r
    }

    /// Receives hand-made CF files as snapshot `key`.
    fn receive_files(mgr: &SnapManager, key: SnapKey, files: &[(&str, &[u8])]) {
        let mut receiver = mgr.receive(key, &meta_of(files)).unwrap();
        for (_, bytes) in files {
            receiver.write(bytes).unwrap();
        }
        receiver.finish().unwrap();
    }

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
        assert_eq!(Crc32::default().finish(), 0);
    }

    #[test]
    fn crc32_incremental_equals_one_shot_for_every_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = crc32(&data);
        for split in [0, 1, 2, 7, 150, 299, 300] {
            let mut crc = Crc32::new();
            crc.update(&data[..split]);
            crc.update(&[]);
            crc.update(&data[split..]);
            assert_eq!(crc.finish(), whole, "split at {split}");
        }
        let mut bytewise = Crc32::new();
        data.iter().for_each(|b| bytewise.update(&[*b]));
        assert_eq!(bytewise.finish(), whole);
    }

    #[test]
    fn file_names_round_trip_and_foreign_names_are_ignored() {
        let key = SnapKey::new(1, 5, 20);
        for kind in [SnapKind::Generated, SnapKind::Received] {
            for role in [FileRole::Meta, FileRole::Cf(Cf::Default), FileRole::Cf(Cf::Write)] {
                for tmp in [false, true] {
                    let name = FileName { key, kind, role, tmp };
                    assert_eq!(FileName::parse(&name.render()), Some(name));
                }
            }
        }
        let gen_write =
            FileName { key, kind: SnapKind::Generated, role: FileRole::Cf(Cf::Write), tmp: false };
        assert_eq!(gen_write.render(), "gen_1_5_20_write.snap");
        for foreign in [
            "gen_1_5_20_meta.snap",
            "gen_1_5.meta",
            "gen_1_5_20_4.meta",
            "gen_01_5_20.meta",
            "gen_+1_5_20.meta",
            "xyz_1_5_20.meta",
            "gen_1_5_20.meta.bak",
            "notes.txt",
        ] {
            assert_eq!(FileName::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn build_send_receive_apply_round_trips_the_region_keys_in_any_chunk_size() {
        let engine = sample_engine();
        let region = region(7, b"b", b"d");
        let want = expected(&engine, &region);
        assert_eq!(
            want,
            vec![
                (Cf::Default, b"b".to_vec(), b"v-b".to_vec()),
                (Cf::Default, b"b1".to_vec(), b"".to_vec()),
                (Cf::Default, b"c".to_vec(), b"v-c".to_vec()),
                (Cf::Lock, b"b2".to_vec(), b"lock".to_vec()),
                (Cf::Write, b"c".to_vec(), b"w-c".to_vec()),
            ]
        );
        let (_d1, sender_mgr, _d2, receiver_mgr) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = sender_mgr.build(key, &region, &*engine.snapshot()).unwrap();
        for (i, chunk) in [1, 2, 7, 13, 4096, usize::MAX].into_iter().enumerate() {
            // A new key per round, so each receive is a fresh one.
            let rkey = SnapKey::new(7, 3, 42 + i as u64);
            let (m, chunks) = stream(&sender_mgr, key, chunk);
            assert_eq!(m, meta);
            let mut receiver = receiver_mgr.receive(rkey, &m).unwrap();
            for c in chunks {
                receiver.write(&c).unwrap();
            }
            receiver.finish().unwrap();
            assert_eq!(applied(&receiver_mgr, rkey), want, "chunks of {chunk}");
            assert_eq!(receiver_mgr.meta(rkey, SnapKind::Received).unwrap(), meta);
        }
    }

    #[test]
    fn empty_end_key_is_unbounded_and_an_empty_cf_gives_an_empty_file() {
        let engine = sample_engine();
        let region = region(2, b"c", b"");
        let (_d1, m1, _d2, m2) = two_managers();
        let key = SnapKey::new(2, 1, 10);
        let meta = m1.build(key, &region, &*engine.snapshot()).unwrap();
        let lock = &meta.cf_files[1];
        assert_eq!((lock.cf.as_str(), lock.size, lock.checksum), ("lock", 0, 0));
        let names: Vec<_> = meta.cf_files.iter().map(|f| f.cf.as_str()).collect();
        assert_eq!(names, ["default", "lock", "write"]);
        let lock_file = m1.cf_path(key, SnapKind::Generated, Cf::Lock);
        assert_eq!(fs::metadata(lock_file).unwrap().len(), 0);
        transfer(&m1, &m2, key, 5).unwrap();
        let got = applied(&m2, key);
        assert_eq!(got, expected(&engine, &region));
        let keys: Vec<(Cf, &[u8])> = got.iter().map(|(cf, k, _)| (*cf, k.as_slice())).collect();
        assert_eq!(
            keys,
            [
                (Cf::Default, &b"c"[..]),
                (Cf::Default, b"d"),
                (Cf::Default, b"zz"),
                (Cf::Write, b"c"),
                (Cf::Write, b"d")
            ]
        );
        // The whole key space: everything but the meta CF.
        let all = region_all(3);
        m1.build(SnapKey::new(3, 1, 1), &all, &*engine.snapshot()).unwrap();
        transfer(&m1, &m2, SnapKey::new(3, 1, 1), 64).unwrap();
        assert_eq!(applied(&m2, SnapKey::new(3, 1, 1)).len(), 10);
    }

    fn region_all(id: u64) -> Region {
        region(id, b"", b"")
    }

    #[test]
    fn an_empty_region_round_trips_as_empty_files() {
        let engine = sample_engine();
        let (_d1, m1, _d2, m2) = two_managers();
        let key = SnapKey::new(4, 1, 1);
        let meta = m1.build(key, &region(4, b"m", b"n"), &*engine.snapshot()).unwrap();
        assert!(meta.cf_files.iter().all(|f| f.size == 0 && f.checksum == 0));
        let mut sender = m1.open_send(key).unwrap();
        assert_eq!(sender.total_size(), 0);
        assert_eq!(sender.next_chunk(10).unwrap(), None);
        let receiver = m2.receive(key, sender.meta()).unwrap();
        receiver.finish().unwrap();
        assert!(applied(&m2, key).is_empty());
    }

    #[test]
    fn meta_file_exists_list_and_stats_describe_what_is_on_disk() {
        let engine = sample_engine();
        let (d1, m1, _d2, m2) = two_managers();
        let (k1, k2) = (SnapKey::new(9, 2, 30), SnapKey::new(1, 1, 5));
        assert!(!m1.exists(k1, SnapKind::Generated));
        assert!(matches!(
            m1.meta(k1, SnapKind::Generated),
            Err(SnapError::NotFound { key, kind: SnapKind::Generated }) if key == k1
        ));
        let meta1 = m1.build(k1, &region(9, b"b", b"d"), &*engine.snapshot()).unwrap();
        let meta2 = m1.build(k2, &region_all(1), &*engine.snapshot()).unwrap();

        let on_disk = fs::read(d1.path().join("gen_9_2_30.meta")).unwrap();
        assert_eq!(SnapshotMeta::decode(on_disk.as_slice()).unwrap(), meta1);
        assert_eq!(m1.meta(k1, SnapKind::Generated).unwrap(), meta1);
        for f in &meta1.cf_files {
            let bytes = fs::read(d1.path().join(format!("gen_9_2_30_{}.snap", f.cf))).unwrap();
            assert_eq!((bytes.len() as u64, crc32(&bytes)), (f.size, f.checksum), "cf {}", f.cf);
        }
        assert!(m1.exists(k1, SnapKind::Generated));
        assert!(!m1.exists(k1, SnapKind::Received));
        assert_eq!(
            files(d1.path()),
            [
                "gen_1_1_5.meta",
                "gen_1_1_5_default.snap",
                "gen_1_1_5_lock.snap",
                "gen_1_1_5_write.snap",
                "gen_9_2_30.meta",
                "gen_9_2_30_default.snap",
                "gen_9_2_30_lock.snap",
                "gen_9_2_30_write.snap",
            ]
        );

        transfer(&m1, &m2, k1, 3).unwrap();
        transfer(&m1, &m2, k2, 3).unwrap();
        // A foreign file is neither listed nor counted nor removed.
        fs::write(d1.path().join("README"), b"not a snapshot").unwrap();
        receive_files(&m1, k1, &[("write", b""), ("lock", b""), ("default", b"")]);
        assert_eq!(
            m1.list().unwrap(),
            [(k2, SnapKind::Generated), (k1, SnapKind::Generated), (k1, SnapKind::Received)]
        );

        let meta_bytes = |m: &SnapshotMeta| m.encode_to_vec().len() as u64;
        let cf_bytes = |m: &SnapshotMeta| m.cf_files.iter().map(|f| f.size).sum::<u64>();
        let empty = meta_of(&[("write", b""), ("lock", b""), ("default", b"")]);
        let sender = m1.open_send(k1).unwrap();
        let sender2 = m1.open_send(k1).unwrap();
        let applier = m1.open_apply(k1).unwrap();
        assert_eq!(
            m1.stats(),
            SnapStats {
                generated: 2,
                received: 1,
                sending: 2,
                receiving: 0,
                applying: 1,
                bytes: cf_bytes(&meta1)
                    + meta_bytes(&meta1)
                    + cf_bytes(&meta2)
                    + meta_bytes(&meta2)
                    + meta_bytes(&empty),
            }
        );
        drop((sender, sender2, applier));
        let receiver = m1.receive(SnapKey::new(5, 5, 5), &empty).unwrap();
        let stats = m1.stats();
        assert_eq!((stats.sending, stats.receiving, stats.applying), (0, 1, 0));
        drop(receiver);
        assert_eq!(m1.stats().receiving, 0);
        assert!(files(d1.path()).contains(&"README".to_string()));
    }

    #[test]
    fn a_flipped_byte_in_transit_fails_finish_naming_the_cf_and_leaves_nothing() {
        let engine = sample_engine();
        let (_d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        let (_, chunks) = stream(&m1, key, 4);
        let mut bytes: Vec<u8> = chunks.concat();
        // The last byte belongs to the write CF (the last in meta order).
        *bytes.last_mut().unwrap() ^= 0x40;
        let mut receiver = m2.receive(key, &meta).unwrap();
        receiver.write(&bytes).unwrap();
        assert_corrupt(receiver.finish(), &["cf write", "checksum", &key.to_string()]);
        assert!(files(d2.path()).is_empty(), "{:?}", files(d2.path()));
        assert!(!m2.exists(key, SnapKind::Received));
        assert!(!m2.in_use(key, SnapKind::Received));
        // A correct transfer afterwards works.
        transfer(&m1, &m2, key, 7).unwrap();
        assert_eq!(applied(&m2, key), expected(&engine, &region(7, b"b", b"d")));
    }

    #[test]
    fn a_truncated_stream_is_corrupt_truncated_and_leaves_nothing() {
        let engine = sample_engine();
        let (_d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        let bytes = stream(&m1, key, 1000).1.concat();
        let mut receiver = m2.receive(key, &meta).unwrap();
        receiver.write(&bytes[..bytes.len() - 3]).unwrap();
        let announced = format!("truncated: got {} of {} bytes", bytes.len() - 3, bytes.len());
        assert_corrupt(receiver.finish(), &[&announced]);
        assert!(files(d2.path()).is_empty());
    }

    #[test]
    fn too_many_bytes_are_corrupt_and_the_transfer_cannot_finish() {
        let engine = sample_engine();
        let (_d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        let bytes = stream(&m1, key, 1000).1.concat();
        let n = bytes.len();
        let mut receiver = m2.receive(key, &meta).unwrap();
        receiver.write(&bytes).unwrap();
        assert_corrupt(receiver.write(b"xyz"), &[&format!("3 bytes more than the {n} announced")]);
        assert_corrupt(receiver.write(b""), &["failed earlier"]);
        assert_corrupt(receiver.finish(), &["failed earlier"]);
        assert!(files(d2.path()).is_empty());

        // All at once, too.
        let mut receiver = m2.receive(key, &meta).unwrap();
        let mut more = bytes.clone();
        more.push(0);
        assert_corrupt(receiver.write(&more), &["1 bytes more than"]);
        drop(receiver);
        assert!(files(d2.path()).is_empty());
    }

    #[test]
    fn a_meta_with_an_unknown_missing_or_repeated_cf_is_rejected_at_receive() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let key = SnapKey::new(1, 1, 1);
        type Files<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Files<'_>, &str); 5] = [
            (
                &[("default", b""), ("lock", b""), ("write", b""), ("meta", b"")],
                "unknown cf \"meta\"",
            ),
            (&[("default", b""), ("lock", b""), ("bogus", b"")], "unknown cf \"bogus\""),
            (&[("default", b""), ("write", b"")], "lacks cf lock"),
            (&[("default", b""), ("lock", b""), ("lock", b""), ("write", b"")], "cf lock twice"),
            (&[], "lacks cf default"),
        ];
        for (files_, why) in cases {
            assert_corrupt(mgr.receive(key, &meta_of(files_)), &[why]);
            assert!(!mgr.in_use(key, SnapKind::Received));
        }
        // Any order of the three is fine.
        receive_files(&mgr, key, &[("write", b""), ("default", b""), ("lock", b"")]);
        assert!(files(dir.path()).len() == 4);
    }

    #[test]
    fn a_corrupted_file_on_disk_fails_open_apply_before_yielding_anything() {
        let engine = sample_engine();
        let (_d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        transfer(&m1, &m2, key, 7).unwrap();
        let path = d2.path().join("rev_7_3_42_default.snap");
        let good = fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[5] ^= 1;
        fs::write(&path, &flipped).unwrap();
        let expected_crc = format!("expected {:#010x}", crc32(&good));
        let found_crc = format!("found {:#010x}", crc32(&flipped));
        assert_corrupt(m2.open_apply(key), &["cf default", "checksum", &expected_crc, &found_crc]);
        assert!(!m2.in_use(key, SnapKind::Received));

        fs::write(&path, &good[..good.len() - 1]).unwrap();
        let sizes = format!("expected {} bytes, found {}", good.len(), good.len() - 1);
        assert_corrupt(m2.open_apply(key), &["cf default", "size mismatch", &sizes]);

        fs::remove_file(&path).unwrap();
        assert_corrupt(m2.open_apply(key), &["cf default", "missing"]);

        fs::write(&path, &good).unwrap();
        assert_eq!(applied(&m2, key), expected(&engine, &region(7, b"b", b"d")));

        // A meta file that does not decode.
        fs::write(d2.path().join("rev_7_3_42.meta"), b"\xff\xff\xff").unwrap();
        assert_corrupt(m2.open_apply(key), &["does not decode"]);
    }

    #[test]
    fn bad_records_are_corrupt_and_end_the_iteration() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let good = record(b"k", b"v");

        let mut empty_key = good.clone();
        empty_key.extend(record(b"", b"v"));
        let key = SnapKey::new(1, 1, 1);
        receive_files(&mgr, key, &[("default", &empty_key), ("lock", b""), ("write", &good)]);
        let mut applier = mgr.open_apply(key).unwrap();
        assert_eq!(applier.next().unwrap().unwrap(), (Cf::Default, b"k".to_vec(), b"v".to_vec()));
        assert_corrupt(applier.next().unwrap(), &["cf default", "offset 10", "empty key"]);
        assert!(applier.next().is_none());
        drop(applier);

        let mut past_end = record(b"key", b"");
        past_end.truncate(6);
        let key = SnapKey::new(1, 1, 2);
        receive_files(&mgr, key, &[("default", b""), ("lock", &past_end), ("write", &good)]);
        let got: Vec<_> = mgr.open_apply(key).unwrap().collect();
        assert_eq!(got.len(), 1);
        assert_corrupt(
            got.into_iter().next().unwrap(),
            &["cf lock", "offset 0", "runs past the end"],
        );

        // A value length pointing past the end, and a torn length.
        for (i, bytes) in [
            {
                let mut r = record(b"k", b"value");
                r.truncate(r.len() - 1);
                r
            },
            vec![0, 0, 0],
        ]
        .into_iter()
        .enumerate()
        {
            let key = SnapKey::new(2, 1, i as u64);
            receive_files(&mgr, key, &[("default", b""), ("lock", b""), ("write", &bytes)]);
            let got: Vec<_> = mgr.open_apply(key).unwrap().collect();
            assert_eq!(got.len(), 1);
            assert_corrupt(got.into_iter().next().unwrap(), &["cf write", "runs past the end"]);
        }
    }

    #[test]
    fn a_second_concurrent_receive_of_the_same_key_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let key = SnapKey::new(3, 2, 1);
        let meta = meta_of(&[("default", &record(b"a", b"1")), ("lock", b""), ("write", b"")]);
        let mut first = mgr.receive(key, &meta).unwrap();
        assert!(matches!(
            mgr.receive(key, &meta),
            Err(SnapError::Busy { key: k, kind: SnapKind::Received, .. }) if k == key
        ));
        // Another key, or the generated kind, are independent.
        drop(mgr.receive(SnapKey::new(3, 2, 2), &meta).unwrap());
        assert!(matches!(mgr.open_apply(key), Err(SnapError::Busy { .. })));
        first.write(&record(b"a", b"1")).unwrap();
        first.finish().unwrap();
        let applier = mgr.open_apply(key).unwrap();
        assert!(matches!(mgr.receive(key, &meta), Err(SnapError::Busy { .. })));
        assert!(matches!(mgr.open_apply(key), Err(SnapError::Busy { .. })));
        drop(applier);
        assert_eq!(applied(&mgr, key), [(Cf::Default, b"a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn a_duplicate_receive_of_a_complete_copy_discards_and_succeeds() {
        let engine = sample_engine();
        let (_d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        transfer(&m1, &m2, key, 7).unwrap();
        let before: Vec<_> =
            files(d2.path()).iter().map(|n| fs::read(d2.path().join(n)).unwrap()).collect();

        // The same meta in another order is the same snapshot.
        let mut reordered = meta.clone();
        reordered.cf_files.reverse();
        let mut receiver = m2.receive(key, &reordered).unwrap();
        assert!(!m2.in_use(key, SnapKind::Received), "a duplicate is not registered");
        let bytes = stream(&m1, key, 100).1.concat();
        let mid = bytes.len() / 2;
        receiver.write(&bytes[..mid]).unwrap();
        // Nothing is written while the duplicate streams in.
        assert_eq!(files(d2.path()).len(), 4);
        drop(receiver);
        assert!(m2.exists(key, SnapKind::Received), "dropping a duplicate keeps the copy");

        let mut receiver = m2.receive(key, &meta).unwrap();
        receiver.write(&bytes).unwrap();
        receiver.finish().unwrap();
        let after: Vec<_> =
            files(d2.path()).iter().map(|n| fs::read(d2.path().join(n)).unwrap()).collect();
        assert_eq!(before, after);
        assert_eq!(applied(&m2, key), expected(&engine, &region(7, b"b", b"d")));
    }

    /// The leader sent the snapshot again before it heard of the first
    /// copy, and the second copy streams in while the first is applied
    /// (tinykv-server once stopped the store on "busy: it is being
    /// received" here).
    #[test]
    fn a_duplicate_transfer_does_not_hold_up_the_apply_of_the_copy() {
        let engine = sample_engine();
        let (_d1, m1, _d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        transfer(&m1, &m2, key, 7).unwrap();
        let bytes = stream(&m1, key, 100).1.concat();
        let mut duplicate = m2.receive(key, &meta).unwrap();
        duplicate.write(&bytes[..bytes.len() / 2]).unwrap();
        let applier = m2.open_apply(key).unwrap();
        assert!(matches!(m2.receive(key, &meta), Err(SnapError::Busy { .. })));
        duplicate.write(&bytes[bytes.len() / 2..]).unwrap();
        duplicate.finish().unwrap();
        drop(applier);
        assert_eq!(applied(&m2, key), expected(&engine, &region(7, b"b", b"d")));
    }

    #[test]
    fn a_receive_with_another_meta_replaces_the_complete_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let key = SnapKey::new(1, 1, 1);
        receive_files(
            &mgr,
            key,
            &[("default", &record(b"old", b"1")), ("lock", b""), ("write", b"")],
        );
        let new = record(b"new", b"2");
        receive_files(&mgr, key, &[("default", b""), ("lock", b""), ("write", &new)]);
        assert_eq!(applied(&mgr, key), [(Cf::Write, b"new".to_vec(), b"2".to_vec())]);
        assert_eq!(files(dir.path()).len(), 4);
    }

    #[test]
    fn delete_refuses_while_sending_applying_or_receiving_and_works_after_drop() {
        let engine = sample_engine();
        let (d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();

        let sender = m1.open_send(key).unwrap();
        let sender2 = m1.open_send(key).unwrap();
        assert!(m1.in_use(key, SnapKind::Generated));
        assert!(!m1.in_use(key, SnapKind::Received));
        assert!(!m1.delete(key, SnapKind::Generated).unwrap());
        drop(sender);
        assert!(!m1.delete(key, SnapKind::Generated).unwrap(), "a second sender is still alive");
        drop(sender2);
        assert!(!m1.in_use(key, SnapKind::Generated));

        let bytes = stream(&m1, key, 64).1.concat();
        assert!(m1.delete(key, SnapKind::Generated).unwrap());
        assert!(!m1.delete(key, SnapKind::Generated).unwrap(), "already gone");
        assert!(files(d1.path()).is_empty());
        assert!(matches!(m1.open_send(key), Err(SnapError::NotFound { .. })));

        let mut receiver = m2.receive(key, &meta).unwrap();
        assert!(!m2.delete(key, SnapKind::Received).unwrap());
        receiver.write(&bytes).unwrap();
        receiver.finish().unwrap();
        let applier = m2.open_apply(key).unwrap();
        assert!(!m2.delete(key, SnapKind::Received).unwrap());
        assert!(m2.exists(key, SnapKind::Received));
        drop(applier);
        assert!(m2.delete(key, SnapKind::Received).unwrap());
        assert!(files(d2.path()).is_empty());
        assert!(m2.list().unwrap().is_empty());
    }

    #[test]
    fn a_newer_build_deletes_the_older_unused_snapshot_but_keeps_one_being_sent() {
        let engine = sample_engine();
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let region7 = region(7, b"b", b"d");
        let snap = engine.snapshot();
        let (k1, k2, k3, k4) = (
            SnapKey::new(7, 1, 10),
            SnapKey::new(7, 1, 20),
            SnapKey::new(7, 2, 30),
            SnapKey::new(7, 2, 25),
        );
        let other = SnapKey::new(8, 1, 5);
        mgr.build(other, &region(8, b"", b""), &*snap).unwrap();
        mgr.build(k1, &region7, &*snap).unwrap();
        let sender = mgr.open_send(k1).unwrap();
        mgr.build(k2, &region7, &*snap).unwrap();
        // k1 is being sent: kept.
        assert_eq!(
            mgr.list().unwrap(),
            [(k1, SnapKind::Generated), (k2, SnapKind::Generated), (other, SnapKind::Generated)]
        );
        mgr.build(k3, &region7, &*snap).unwrap();
        assert_eq!(
            mgr.list().unwrap(),
            [(k1, SnapKind::Generated), (k3, SnapKind::Generated), (other, SnapKind::Generated)]
        );
        drop(sender);
        // Building an older one removes newer ones too: one per region.
        mgr.build(k4, &region7, &*snap).unwrap();
        assert_eq!(mgr.list().unwrap(), [(k4, SnapKind::Generated), (other, SnapKind::Generated)]);
        // Received snapshots of the region are not the builder's business.
        receive_files(&mgr, k1, &[("default", b""), ("lock", b""), ("write", b"")]);
        mgr.build(k2, &region7, &*snap).unwrap();
        assert_eq!(
            mgr.list().unwrap(),
            [(k2, SnapKind::Generated), (other, SnapKind::Generated), (k1, SnapKind::Received)]
        );
    }

    #[test]
    fn building_an_existing_snapshot_returns_its_meta_without_rebuilding() {
        let engine = sample_engine();
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let key = SnapKey::new(7, 1, 10);
        let region7 = region(7, b"b", b"d");
        let meta = mgr.build(key, &region7, &*engine.snapshot()).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(Cf::Default, b"bb", b"written later");
        engine.write(batch).unwrap();
        assert_eq!(mgr.build(key, &region7, &*engine.snapshot()).unwrap(), meta);
        assert!(!mgr.in_use(key, SnapKind::Generated));

        // An unreadable meta file: refused while it is being sent, rebuilt
        // (from the newer engine snapshot) when it is not.
        let sender = mgr.open_send(key).unwrap();
        fs::write(dir.path().join("gen_7_1_10.meta"), b"\xff").unwrap();
        assert_corrupt(mgr.open_send(key), &["does not decode"]);
        assert_corrupt(mgr.build(key, &region7, &*engine.snapshot()), &["does not decode"]);
        drop(sender);
        let rebuilt = mgr.build(key, &region7, &*engine.snapshot()).unwrap();
        assert_ne!(rebuilt, meta);
        assert_eq!(mgr.meta(key, SnapKind::Generated).unwrap(), rebuilt);
    }

    #[test]
    fn a_failed_build_leaves_nothing_and_unregisters() {
        let disk = MemoryDisk::new();
        let engine = disk.open();
        let mut batch = WriteBatch::new();
        batch.put(Cf::Write, b"k", b"v");
        engine.write(batch.sync()).unwrap();
        let snap = engine.snapshot();
        disk.crash(); // Every read of `snap` fails now.
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let key = SnapKey::new(1, 1, 1);
        let err = mgr.build(key, &region_all(1), &*snap).unwrap_err();
        assert!(matches!(err, SnapError::Engine(_)), "{err:?}");
        assert!(files(dir.path()).is_empty());
        assert!(!mgr.in_use(key, SnapKind::Generated));
    }

    #[test]
    fn reopening_deletes_tmp_and_incomplete_leftovers_but_keeps_complete_snapshots() {
        let engine = sample_engine();
        let dir = tempfile::tempdir().unwrap();
        let key = SnapKey::new(7, 3, 42);
        {
            let mgr = SnapManager::open(dir.path()).unwrap();
            mgr.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        }
        let complete = files(dir.path());
        // What a crash can leave: tmp files of a build and of a receive, CF
        // files renamed before the meta was written, and someone else's file.
        for name in [
            "gen_7_3_50_default.snap.tmp",
            "gen_7_3_50.meta.tmp",
            "rev_1_1_1_write.snap.tmp",
            "rev_2_2_2_default.snap",
            "rev_2_2_2_lock.snap",
            "keep-me.txt",
        ] {
            fs::write(dir.path().join(name), b"partial").unwrap();
        }
        let mgr = SnapManager::open(dir.path()).unwrap();
        let mut want = complete.clone();
        want.push("keep-me.txt".to_string());
        want.sort();
        assert_eq!(files(dir.path()), want);
        assert_eq!(mgr.list().unwrap(), [(key, SnapKind::Generated)]);
        assert_eq!(mgr.meta(key, SnapKind::Generated).unwrap().cf_files.len(), 3);
    }

    #[test]
    fn a_receiver_dropped_without_finish_leaves_nothing() {
        let engine = sample_engine();
        let (_d1, m1, d2, m2) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let meta = m1.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        let bytes = stream(&m1, key, 100).1.concat();
        let mut receiver = m2.receive(key, &meta).unwrap();
        receiver.write(&bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(files(d2.path()).len(), 3, "three .tmp files while receiving");
        assert!(files(d2.path()).iter().all(|n| n.ends_with(".tmp")));
        assert_eq!(receiver.key(), key);
        drop(receiver);
        assert!(files(d2.path()).is_empty());
        assert!(!m2.in_use(key, SnapKind::Received));
        // Even with every byte in, unfinished means gone.
        let mut receiver = m2.receive(key, &meta).unwrap();
        receiver.write(&bytes).unwrap();
        drop(receiver);
        assert!(files(d2.path()).is_empty());
    }

    #[test]
    fn a_sender_reports_a_file_shorter_than_its_meta() {
        let engine = sample_engine();
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::open(dir.path()).unwrap();
        let key = SnapKey::new(7, 3, 42);
        let meta = mgr.build(key, &region(7, b"b", b"d"), &*engine.snapshot()).unwrap();
        let path = dir.path().join("gen_7_3_42_default.snap");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..4]).unwrap();
        let mut sender = mgr.open_send(key).unwrap();
        assert_eq!(sender.key(), key);
        assert_eq!(sender.meta(), &meta);
        assert_eq!(sender.next_chunk(0).unwrap(), Some(vec![]));
        assert_eq!(sender.next_chunk(3).unwrap().unwrap().len(), 3);
        let why = format!("ends after 4 bytes, but the meta says {}", bytes.len());
        assert_corrupt(sender.next_chunk(100), &["cf default", &why]);
    }

    #[test]
    fn snapshots_move_between_threads() {
        let engine = sample_engine();
        let (_d1, m1, _d2, m2) = two_managers();
        let (m1, m2) = (Arc::new(m1), Arc::new(m2));
        let region7 = region(7, b"b", b"d");
        let keys: Vec<_> = (1..=4).map(|i| SnapKey::new(i, 1, 1)).collect();
        for key in &keys {
            m1.build(*key, &region7, &*engine.snapshot()).unwrap();
        }
        let handles: Vec<_> = keys
            .iter()
            .map(|&key| {
                let (m1, m2) = (Arc::clone(&m1), Arc::clone(&m2));
                std::thread::spawn(move || transfer(&m1, &m2, key, 3))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        for key in keys {
            assert_eq!(applied(&m2, key), expected(&engine, &region7));
        }
    }

    #[test]
    fn snap_errors_convert_to_raftstore_errors() {
        let key = SnapKey::new(1, 2, 3);
        let e: crate::error::Error = corrupt(key, "bad").into();
        assert_eq!(
            e,
            crate::error::Error::Corrupt("snapshot region 1 term 2 index 3 is corrupt: bad".into())
        );
        let e: crate::error::Error = SnapError::NotFound { key, kind: SnapKind::Received }.into();
        assert!(
            matches!(e, crate::error::Error::Engine(m) if m.contains("received snapshot region 1 term 2 index 3 not found"))
        );
    }

    #[test]
    fn snap_manager_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<SnapManager>();
        assert_send_sync::<Arc<SnapManager>>();
        assert_send::<SnapSender>();
        assert_send::<SnapReceiver>();
        assert_send::<SnapApplier>();
    }

    // ----- on the simulated file system ---------------------------------------

    use std::sync::atomic::{AtomicU64, Ordering};
    use tinykv_engine::fs::{CrashPolicy, MemoryFs};

    /// A [`MemoryFs`] whose `n`-th sync (file or directory) fails as a
    /// power loss would: it and every later write fail.
    #[derive(Debug)]
    struct PowerCut {
        inner: MemoryFs,
        /// Syncs until the power goes out; 0 once it is out.
        syncs_left: Arc<AtomicU64>,
    }

    const CUT: &str = "power cut";

    impl PowerCut {
        fn new(inner: &MemoryFs, at_sync: u64) -> Arc<PowerCut> {
            let syncs_left = Arc::new(AtomicU64::new(at_sync));
            Arc::new(PowerCut { inner: inner.clone(), syncs_left })
        }

        /// Fails if the power is out, or goes out now (at a sync).
        fn check(syncs_left: &AtomicU64, sync: bool) -> io::Result<()> {
            let left = syncs_left.load(Ordering::Relaxed);
            if left == 0 || (sync && left == 1) {
                syncs_left.store(0, Ordering::Relaxed);
                return Err(io::Error::other(CUT));
            }
            if sync {
                syncs_left.store(left - 1, Ordering::Relaxed);
            }
            Ok(())
        }
    }

    #[derive(Debug)]
    struct CutFile {
        inner: Box<dyn WritableFile>,
        syncs_left: Arc<AtomicU64>,
    }

    impl Write for CutFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            PowerCut::check(&self.syncs_left, false)?;
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    impl WritableFile for CutFile {
        fn sync(&mut self) -> io::Result<()> {
            PowerCut::check(&self.syncs_left, true)?;
            self.inner.sync()
        }
    }

    impl FileSystem for PowerCut {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.inner.create_dir_all(dir)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.inner.list(dir)
        }
        fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
            PowerCut::check(&self.syncs_left, false)?;
            let inner = self.inner.create(path)?;
            Ok(Box::new(CutFile { inner, syncs_left: Arc::clone(&self.syncs_left) }))
        }
        fn open(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
            self.inner.open(path)
        }
        fn exists(&self, path: &Path) -> bool {
            self.inner.exists(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            PowerCut::check(&self.syncs_left, false)?;
            self.inner.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            PowerCut::check(&self.syncs_left, false)?;
            self.inner.remove(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            PowerCut::check(&self.syncs_left, true)?;
            self.inner.sync_dir(dir)
        }
    }

    /// Keeps every unsynced directory change and half of every file's
    /// unsynced bytes: the worst a crash can leave behind.
    struct KeepHalf;

    impl CrashPolicy for KeepHalf {
        fn keeps_change(&mut self, _path: &Path) -> bool {
            true
        }
        fn kept_bytes(&mut self, _path: &Path, unsynced: u64) -> u64 {
            unsynced / 2
        }
    }

    /// Keeps each unsynced change, and a prefix of each file's unsynced
    /// bytes, at (seeded) random.
    struct Random(raft::Rng);

    impl CrashPolicy for Random {
        fn keeps_change(&mut self, _path: &Path) -> bool {
            self.0.next_u64().is_multiple_of(2)
        }
        fn kept_bytes(&mut self, _path: &Path, unsynced: u64) -> u64 {
            self.0.next_u64() % (unsynced + 1)
        }
    }

    const SNAP_DIR: &str = "/store/snap";

    /// After a crash: the reopened manager holds either the complete
    /// snapshot, whose files check out, or no file at all.
    fn complete_or_nothing(fs: &MemoryFs, key: SnapKey, kind: SnapKind) -> bool {
        let mgr = SnapManager::open_on(Arc::new(fs.clone()), SNAP_DIR).unwrap();
        let files = fs.list(Path::new(SNAP_DIR)).unwrap();
        match mgr.list().unwrap().as_slice() {
            [] => {
                assert!(files.is_empty(), "leftovers after reopening: {files:?}");
                false
            }
            [(k, kd)] if (*k, *kd) == (key, kind) => {
                assert_eq!(files.len(), 4, "{files:?}");
                let meta = mgr.meta(key, kind).unwrap();
                mgr.verify(key, kind, &validate_meta(key, &meta).unwrap()).unwrap();
                true
            }
            other => panic!("unexpected snapshots after reopening: {other:?}"),
        }
    }

    /// Every sync a build or a receive makes is a crash point: cut the
    /// power at each (losing everything unsynced, keeping every directory
    /// change and tearing the files, or keeping some of each at random),
    /// reopen, and find the whole
    /// snapshot or nothing (the whole one may survive a failed call whose
    /// last step reached the disk anyway). Torn files must have been seen
    /// on the way.
    #[test]
    fn a_crash_at_any_sync_of_a_build_or_receive_leaves_the_whole_snapshot_or_nothing() {
        let engine = sample_engine();
        let region7 = region(7, b"b", b"d");
        let key = SnapKey::new(7, 3, 42);
        let mut torn = 0;
        for policy in 0..22u64 {
            let crash = |fs: &MemoryFs| match policy {
                0 => fs.crash(),
                1 => fs.crash_with(&mut KeepHalf),
                seed => fs.crash_with(&mut Random(raft::Rng::new(seed, 0))),
            };
            // Building.
            for at_sync in 1.. {
                let fs = MemoryFs::new();
                let mgr = SnapManager::open_on(PowerCut::new(&fs, at_sync), SNAP_DIR).unwrap();
                let built = mgr.build(key, &region7, &*engine.snapshot());
                if let Err(e) = &built {
                    assert!(e.to_string().contains(CUT), "{e}");
                }
                drop(mgr);
                torn += crash(&fs).torn.len();
                let complete = complete_or_nothing(&fs, key, SnapKind::Generated);
                if built.is_ok() {
                    assert!(complete, "build, crash at sync {at_sync}");
                    break;
                }
            }
            // Receiving.
            let sender = SnapManager::open_on(Arc::new(MemoryFs::new()), SNAP_DIR).unwrap();
            let meta = sender.build(key, &region7, &*engine.snapshot()).unwrap();
            let bytes = stream(&sender, key, 100).1.concat();
            for at_sync in 1.. {
                let fs = MemoryFs::new();
                let mgr = SnapManager::open_on(PowerCut::new(&fs, at_sync), SNAP_DIR).unwrap();
                let received = mgr.receive(key, &meta).and_then(|mut r| {
                    r.write(&bytes)?;
                    r.finish()
                });
                drop(mgr);
                torn += crash(&fs).torn.len();
                let complete = complete_or_nothing(&fs, key, SnapKind::Received);
                if received.is_ok() || complete {
                    assert!(complete, "receive, crash at sync {at_sync}");
                    let mgr = SnapManager::open_on(Arc::new(fs.clone()), SNAP_DIR).unwrap();
                    assert_eq!(applied(&mgr, key), expected(&engine, &region7));
                }
                if received.is_ok() {
                    break;
                }
            }
        }
        assert!(torn > 0, "no crash point tore a file");
    }

    #[test]
    fn opening_counts_the_leftovers_it_removes() {
        let fs = MemoryFs::new();
        let mgr = SnapManager::open_on(PowerCut::new(&fs, 1), SNAP_DIR).unwrap();
        let key = SnapKey::new(7, 3, 42);
        assert!(mgr.build(key, &region(7, b"b", b"d"), &*sample_engine().snapshot()).is_err());
        assert_eq!(mgr.leftovers_removed(), 0);
        fs.crash_with(&mut KeepHalf);
        let mgr = SnapManager::open_on(Arc::new(fs.clone()), SNAP_DIR).unwrap();
        assert_eq!(mgr.leftovers_removed(), 1, "the torn default.snap.tmp");
        assert!(fs.list(Path::new(SNAP_DIR)).unwrap().is_empty());
    }

    /// Cuts `path` (a file of `fs`) to `len` bytes, as rot or a lost write
    /// would.
    fn truncate(fs: &MemoryFs, path: &Path, len: usize) {
        let bytes = fs.read(path).unwrap();
        let mut file = fs.create(path).unwrap();
        file.write_all(&bytes[..len]).unwrap();
        file.sync().unwrap();
    }

    #[test]
    fn a_generated_snapshot_with_a_bad_file_is_built_again_not_handed_out() {
        let engine = sample_engine();
        let fs = MemoryFs::new();
        let mgr = SnapManager::open_on(Arc::new(fs.clone()), SNAP_DIR).unwrap();
        let key = SnapKey::new(7, 3, 42);
        let region7 = region(7, b"b", b"d");
        let meta = mgr.build(key, &region7, &*engine.snapshot()).unwrap();
        let default = mgr.cf_path(key, SnapKind::Generated, Cf::Default);
        truncate(&fs, &default, 3);
        // While it is being sent, it is not replaced under the sender.
        let sender = mgr.open_send(key).unwrap();
        assert_corrupt(mgr.build(key, &region7, &*engine.snapshot()), &["size mismatch"]);
        drop(sender);
        assert_eq!(mgr.build(key, &region7, &*engine.snapshot()).unwrap(), meta);
        assert_eq!(fs.read(&default).unwrap().len() as u64, meta.cf_files[0].size);
        fs.remove(&default).unwrap();
        assert_eq!(mgr.build(key, &region7, &*engine.snapshot()).unwrap(), meta);
        let receiver = SnapManager::open_on(Arc::new(MemoryFs::new()), SNAP_DIR).unwrap();
        transfer(&mgr, &receiver, key, 7).unwrap();
        assert_eq!(applied(&receiver, key), expected(&engine, &region7));
    }

    #[test]
    fn a_received_copy_with_a_bad_file_is_replaced_not_kept_as_a_duplicate() {
        let engine = sample_engine();
        let (_d1, sender, _d2, _) = two_managers();
        let key = SnapKey::new(7, 3, 42);
        let region7 = region(7, b"b", b"d");
        sender.build(key, &region7, &*engine.snapshot()).unwrap();
        let fs = MemoryFs::new();
        let mgr = SnapManager::open_on(Arc::new(fs.clone()), SNAP_DIR).unwrap();
        transfer(&sender, &mgr, key, 7).unwrap();
        let default = mgr.cf_path(key, SnapKind::Received, Cf::Default);
        truncate(&fs, &default, 5);
        assert_corrupt(mgr.open_apply(key), &["cf default", "size mismatch"]);
        transfer(&sender, &mgr, key, 7).unwrap();
        assert_eq!(applied(&mgr, key), expected(&engine, &region7));
    }
}
