//! The file-system seam: files a store keeps outside its engines (the
//! snapshot files of `tinykv_raftstore::snap`) go through [`FileSystem`],
//! so that the simulator can crash them the way it crashes the engines.
//!
//! Two implementations exist:
//!
//! * [`RealFs`]: `std::fs`, for the server and for tests on real files.
//! * [`MemoryFs`]: in memory, with crash semantics like
//!   [`MemoryDisk`](crate::MemoryDisk)'s: [`MemoryFs::crash`] loses every
//!   byte that was not fsynced and every directory change (create, rename,
//!   remove) that no directory sync made durable; [`MemoryFs::crash_with`]
//!   lets a [`CrashPolicy`] keep some of them, which is how a crash leaves a
//!   half-written file behind.
//!
//! # The contract a user of the trait relies on
//!
//! * Bytes written to a file are visible to readers at once, and durable
//!   once [`WritableFile::sync`] returns.
//! * A create, rename or remove is visible at once, and durable once
//!   [`FileSystem::sync_dir`] of the directory holding it returns. Syncing a
//!   file does not make its directory entry durable (POSIX does not promise
//!   it), and without a directory sync nothing orders two directory
//!   changes.
//! * So the crash-safe way to publish a file is: write it under a
//!   temporary name, sync it, rename it, sync the directory.
//!
//! # Example
//!
//! ```
//! use std::io::Write as _;
//! use std::path::Path;
//! use tinykv_engine::fs::{FileSystem, MemoryFs};
//!
//! let fs = MemoryFs::new();
//! let dir = Path::new("/snap");
//! fs.create_dir_all(dir).unwrap();
//! let mut file = fs.create(&dir.join("a.tmp")).unwrap();
//! file.write_all(b"durable").unwrap();
//! file.sync().unwrap();
//! fs.rename(&dir.join("a.tmp"), &dir.join("a")).unwrap();
//! fs.sync_dir(dir).unwrap();
//! let mut file = fs.create(&dir.join("b")).unwrap();
//! file.write_all(b"never synced").unwrap();
//!
//! fs.crash();
//! assert_eq!(fs.list(dir).unwrap(), ["a"]);
//! assert_eq!(fs.read(&dir.join("a")).unwrap(), b"durable");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The file operations a store needs besides its engines. Object safe: the
/// users hold `Arc<dyn FileSystem>`. See the [module docs](self) for the
/// durability contract.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// The names of the files directly in `dir`, sorted (names that are not
    /// UTF-8 are left out).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Creates `path` for writing, empty (an existing file is replaced).
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Opens the file `path` for reading; [`io::ErrorKind::NotFound`] if
    /// there is none.
    fn open(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>>;

    /// Whether `path` is a file.
    fn exists(&self, path: &Path) -> bool;

    /// Renames `from` to `to` (replacing `to`), atomically. Both are in the
    /// same directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path`; [`io::ErrorKind::NotFound`] if there is
    /// none.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes every create, rename and remove in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The whole content of the file `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(path)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// A file open for writing (appending from its start).
pub trait WritableFile: Write + Send + fmt::Debug {
    /// Makes every byte written so far durable (`fsync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// A file open for reading.
pub trait ReadableFile: Read + Send + fmt::Debug {
    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;
}

// ---------------------------------------------------------------------------
// The real file system
// ---------------------------------------------------------------------------

/// `std::fs`. Files are fsynced with `File::sync_all`; a directory is
/// fsynced by opening it as a file (a no-op where that is impossible, i.e.
/// outside Unix).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

/// A `std::fs::File` behind the traits.
#[derive(Debug)]
struct RealFile(File);

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Read for RealFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl WritableFile for RealFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl ReadableFile for RealFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(RealFile(File::create(path)?)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        Ok(Box::new(RealFile(File::open(path)?)))
    }

    fn exists(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The simulated file system
// ---------------------------------------------------------------------------

/// One file's bytes. Only ever appended to: `create` makes a new inode.
#[derive(Debug, Default)]
struct Inode {
    /// Everything written (readers hold clones: copy on write).
    data: Arc<Vec<u8>>,
    /// How many leading bytes of `data` are durable. Invariant:
    /// `synced <= data.len()`.
    synced: usize,
    /// Live write handles (an unlinked inode stays while one is open).
    writers: usize,
}

/// A directory change not yet made durable by a directory sync.
#[derive(Debug, Clone)]
enum Change {
    /// `path` now names the new file `inode` (a create).
    Link { path: PathBuf, inode: u64 },
    /// The file named `from` is now named `to`.
    Rename { from: PathBuf, to: PathBuf },
    /// `path` names nothing any more.
    Unlink { path: PathBuf },
}

impl Change {
    /// The path the change is about (for a rename: its new name).
    fn path(&self) -> &Path {
        match self {
            Change::Link { path, .. } | Change::Unlink { path } => path,
            Change::Rename { to, .. } => to,
        }
    }

    /// The directory whose sync makes the change durable.
    fn dir(&self) -> &Path {
        self.path().parent().unwrap_or(Path::new(""))
    }

    /// Applies the change to a name table. A rename of a name the table
    /// does not hold (its create was lost) does nothing.
    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            Change::Link { path, inode } => {
                names.insert(path.clone(), *inode);
            }
            Change::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
            Change::Unlink { path } => {
                names.remove(path);
            }
        }
    }
}

#[derive(Debug, Default)]
struct FsState {
    /// Directories (made durable at once: the simulation creates them up
    /// front).
    dirs: BTreeSet<PathBuf>,
    /// The names every operation sees.
    names: BTreeMap<PathBuf, u64>,
    /// The names a crash falls back to (before it replays what survives of
    /// `changes`).
    durable: BTreeMap<PathBuf, u64>,
    /// Directory changes since the last sync of their directory, oldest
    /// first. Invariant: applying them in order to `durable` gives `names`.
    changes: Vec<Change>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Bumped by every crash; handles remember the generation they were
    /// opened in.
    generation: u64,
    stats: MemoryFsStats,
}

impl FsState {
    /// Drops the inodes nothing can reach any more.
    fn collect_garbage(&mut self) {
        let mut live: BTreeSet<u64> =
            self.names.values().chain(self.durable.values()).copied().collect();
        for change in &self.changes {
            if let Change::Link { inode, .. } = change {
                live.insert(*inode);
            }
        }
        self.inodes.retain(|id, inode| inode.writers > 0 || live.contains(id));
    }

    fn check_dir(&self, dir: &Path) -> io::Result<()> {
        if self.dirs.contains(dir) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("memory fs: no directory {}", dir.display()),
            ))
        }
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        self.check_dir(path.parent().unwrap_or(Path::new("")))
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("memory fs: no file {}", path.display()),
            )
        })
    }
}

/// Counters kept by a [`MemoryFs`] over its whole life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryFsStats {
    /// File and directory syncs.
    pub syncs: u64,
    /// Crashes.
    pub crashes: u64,
    /// Directory changes (creates, renames, removes) that crashes lost.
    pub lost_changes: u64,
    /// Unsynced bytes that crashes cut off files that survived them.
    pub lost_bytes: u64,
    /// Files that survived a crash shorter than they were written: torn.
    pub torn_files: u64,
}

/// What one crash of a [`MemoryFs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Directory changes lost.
    pub lost_changes: u64,
    /// Unsynced bytes cut off files that survived.
    pub lost_bytes: u64,
    /// The files that survived shorter than they were written, sorted.
    pub torn: Vec<PathBuf>,
}

/// Decides, change by change and file by file, what of the unsynced state
/// a crash keeps ([`MemoryFs::crash_with`]). Called in a deterministic
/// order: the changes oldest first, then the surviving files with unsynced
/// bytes by path.
pub trait CrashPolicy {
    /// Whether the unsynced create, rename or remove of `path` (a rename's
    /// new name) reached the disk.
    fn keeps_change(&mut self, path: &Path) -> bool;

    /// How many of the last `unsynced` bytes written to the file `path`
    /// reached the disk (a prefix of them; more than `unsynced` counts as
    /// all).
    fn kept_bytes(&mut self, path: &Path, unsynced: u64) -> u64;
}

/// The plain power loss: nothing unsynced survives.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoseUnsynced;

impl CrashPolicy for LoseUnsynced {
    fn keeps_change(&mut self, _path: &Path) -> bool {
        false
    }

    fn kept_bytes(&mut self, _path: &Path, _unsynced: u64) -> u64 {
        0
    }
}

/// The simulator's file system: in memory, deterministic, with crash
/// semantics. A cheap, cloneable handle: clones share the same files, and
/// the files outlive the simulated process, as a [`MemoryDisk`](crate::MemoryDisk)
/// does.
///
/// # Durability model
///
/// * Every write, create, rename and remove is visible at once (the "page
///   cache").
/// * [`WritableFile::sync`] makes the bytes written to that file durable;
///   [`FileSystem::sync_dir`] makes every create, rename and remove in that
///   directory durable. Directories themselves are durable when created.
/// * [`MemoryFs::crash`] is a power loss: files lose their unsynced bytes,
///   and the directory changes no directory sync covered are undone (a file
///   whose create is lost is gone; a rename that is lost leaves the file
///   under its old name).
/// * [`MemoryFs::crash_with`] asks a [`CrashPolicy`] which unsynced
///   directory changes reached the disk anyway (each on its own, as
///   nothing orders them) and how much of each file's unsynced bytes (a
///   prefix: a torn file).
/// * After a crash, handles opened before it are dead: writes, syncs and
///   reads fail with an error saying "closed by crash".
/// * Dropping the handle is a graceful stop: nothing is lost.
///
/// A `create` makes a new file even if the name existed (the old one is
/// replaced, as by a rename over it), and renames stay within one
/// directory.
#[derive(Clone, Default)]
pub struct MemoryFs {
    state: Arc<Mutex<FsState>>,
}

impl MemoryFs {
    /// An empty file system.
    pub fn new() -> MemoryFs {
        MemoryFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, FsState> {
        self.state.lock().expect("memory fs lock poisoned")
    }

    /// Power loss: every unsynced byte and directory change is lost (see
    /// the [durability model](MemoryFs#durability-model)).
    pub fn crash(&self) -> CrashReport {
        self.crash_with(&mut LoseUnsynced)
    }

    /// Power loss where `policy` chooses what of the unsynced state reached
    /// the disk anyway. What survives is durable afterwards.
    pub fn crash_with(&self, policy: &mut dyn CrashPolicy) -> CrashReport {
        let mut state = self.lock();
        let state = &mut *state;
        let mut report = CrashReport::default();
        let mut names = state.durable.clone();
        for change in std::mem::take(&mut state.changes) {
            if policy.keeps_change(change.path()) {
                change.apply(&mut names);
            } else {
                report.lost_changes += 1;
            }
        }
        let mut seen = BTreeSet::new();
        for (path, id) in &names {
            let Some(inode) = state.inodes.get_mut(id).filter(|_| seen.insert(*id)) else {
                continue;
            };
            let unsynced = (inode.data.len() - inode.synced) as u64;
            if unsynced > 0 {
                let kept = policy.kept_bytes(path, unsynced).min(unsynced);
                let len = inode.synced + kept as usize;
                Arc::make_mut(&mut inode.data).truncate(len);
                if kept < unsynced {
                    report.lost_bytes += unsynced - kept;
                    report.torn.push(path.clone());
                }
            }
            inode.synced = inode.data.len();
        }
        for inode in state.inodes.values_mut() {
            inode.writers = 0;
        }
        state.names = names.clone();
        state.durable = names;
        state.generation += 1;
        state.collect_garbage();
        state.stats.crashes += 1;
        state.stats.lost_changes += report.lost_changes;
        state.stats.lost_bytes += report.lost_bytes;
        state.stats.torn_files += report.torn.len() as u64;
        report
    }

    /// Directory changes and files with bytes that a crash would lose now.
    pub fn unsynced(&self) -> (usize, usize) {
        let state = self.lock();
        let files = state
            .names
            .values()
            .filter(|id| state.inodes.get(id).is_some_and(|inode| inode.data.len() > inode.synced));
        (state.changes.len(), files.count())
    }

    /// Counters over the file system's whole life.
    pub fn stats(&self) -> MemoryFsStats {
        self.lock().stats
    }
}

impl fmt::Debug for MemoryFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryFs")
            .field("generation", &state.generation)
            .field("files", &state.names.len())
            .field("unsynced_changes", &state.changes.len())
            .field("stats", &state.stats)
            .finish()
    }
}

fn dead_error(what: &str, path: &Path, opened: u64, now: u64) -> io::Error {
    io::Error::other(format!(
        "memory fs {what} {} closed by crash: opened in generation {opened}, the file system \
         has crashed since (now generation {now})",
        path.display()
    ))
}

impl FileSystem for MemoryFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        state.check_dir(dir)?;
        let mut names: Vec<String> = state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut state = self.lock();
        state.check_parent(path)?;
        let inode = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(inode, Inode { writers: 1, ..Inode::default() });
        state.names.insert(path.to_path_buf(), inode);
        state.changes.push(Change::Link { path: path.to_path_buf(), inode });
        state.collect_garbage();
        let generation = state.generation;
        Ok(Box::new(MemoryWriter { fs: self.clone(), path: path.to_path_buf(), inode, generation }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let state = self.lock();
        let inode = state.inode_of(path)?;
        let data = Arc::clone(&state.inodes[&inode].data);
        Ok(Box::new(MemoryReader {
            fs: self.clone(),
            path: path.to_path_buf(),
            data,
            pos: 0,
            generation: state.generation,
        }))
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if from.parent() != to.parent() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "memory fs: {} and {} are in different directories",
                    from.display(),
                    to.display()
                ),
            ));
        }
        let inode = state.inode_of(from)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), inode);
        state.changes.push(Change::Rename { from: from.to_path_buf(), to: to.to_path_buf() });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.inode_of(path)?;
        state.names.remove(path);
        state.changes.push(Change::Unlink { path: path.to_path_buf() });
        state.collect_garbage();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        state.check_dir(dir)?;
        let (synced, rest): (Vec<Change>, Vec<Change>) =
            std::mem::take(&mut state.changes).into_iter().partition(|c| c.dir() == dir);
        for change in &synced {
            change.apply(&mut state.durable);
        }
        state.changes = rest;
        state.stats.syncs += 1;
        state.collect_garbage();
        Ok(())
    }
}

/// A write handle on a [`MemoryFs`] file.
struct MemoryWriter {
    fs: MemoryFs,
    path: PathBuf,
    inode: u64,
    generation: u64,
}

impl MemoryWriter {
    /// The file's inode, if the handle is not dead.
    fn with_inode<T>(&self, f: impl FnOnce(&mut Inode, &mut MemoryFsStats) -> T) -> io::Result<T> {
        let mut state = self.fs.lock();
        let state = &mut *state;
        if state.generation != self.generation {
            return Err(dead_error("file", &self.path, self.generation, state.generation));
        }
        let inode = state.inodes.get_mut(&self.inode).expect("an open file's inode is live");
        Ok(f(inode, &mut state.stats))
    }
}

impl fmt::Debug for MemoryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWriter")
            .field("path", &self.path)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.with_inode(|inode, _| Arc::make_mut(&mut inode.data).extend_from_slice(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WritableFile for MemoryWriter {
    fn sync(&mut self) -> io::Result<()> {
        self.with_inode(|inode, stats| {
            inode.synced = inode.data.len();
            stats.syncs += 1;
        })
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        let mut state = self.fs.lock();
        if state.generation == self.generation {
            if let Some(inode) = state.inodes.get_mut(&self.inode) {
                inode.writers -= 1;
            }
            state.collect_garbage();
        }
    }
}

/// A read handle on a [`MemoryFs`] file: it reads the bytes the file had
/// when it was opened.
struct MemoryReader {
    fs: MemoryFs,
    path: PathBuf,
    data: Arc<Vec<u8>>,
    pos: usize,
    generation: u64,
}

impl MemoryReader {
    fn check_alive(&self) -> io::Result<()> {
        let now = self.fs.lock().generation;
        if now != self.generation {
            return Err(dead_error("file", &self.path, self.generation, now));
        }
        Ok(())
    }
}

impl fmt::Debug for MemoryReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReader")
            .field("path", &self.path)
            .field("size", &self.data.len())
            .field("pos", &self.pos)
            .finish()
    }
}

impl Read for MemoryReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_alive()?;
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadableFile for MemoryReader {
    fn size(&self) -> io::Result<u64> {
        self.check_alive()?;
        Ok(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/d";

    fn path(name: &str) -> PathBuf {
        Path::new(DIR).join(name)
    }

    fn fs() -> MemoryFs {
        let fs = MemoryFs::new();
        fs.create_dir_all(Path::new(DIR)).unwrap();
        fs
    }

    fn write(fs: &dyn FileSystem, name: &str, bytes: &[u8], sync: bool) {
        let mut file = fs.create(&path(name)).unwrap();
        file.write_all(bytes).unwrap();
        if sync {
            file.sync().unwrap();
        }
    }

    /// Keeps every change and `keep` bytes of each file.
    struct Keep(u64);

    impl CrashPolicy for Keep {
        fn keeps_change(&mut self, _path: &Path) -> bool {
            true
        }

        fn kept_bytes(&mut self, _path: &Path, _unsynced: u64) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_crash_loses_unsynced_bytes_and_unsynced_directory_changes() {
        let fs = fs();
        write(&fs, "synced", b"abc", true);
        fs.sync_dir(Path::new(DIR)).unwrap();
        let mut file = fs.create(&path("synced-then-more")).unwrap();
        file.write_all(b"12").unwrap();
        file.sync().unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        file.write_all(b"345").unwrap();
        // Synced, but its directory entry is not.
        write(&fs, "no-dir-sync", b"xyz", true);
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), ["no-dir-sync", "synced", "synced-then-more"]);
        assert_eq!(fs.unsynced(), (1, 1));

        let report = fs.crash();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), ["synced", "synced-then-more"]);
        assert_eq!(fs.read(&path("synced")).unwrap(), b"abc");
        assert_eq!(fs.read(&path("synced-then-more")).unwrap(), b"12");
        assert_eq!(
            report,
            CrashReport { lost_changes: 1, lost_bytes: 3, torn: vec![path("synced-then-more")] }
        );
        let err = file.write_all(b"6").unwrap_err().to_string();
        assert!(err.contains("closed by crash"), "{err}");
        assert!(file.sync().is_err());
        assert_eq!(fs.unsynced(), (0, 0));
        assert_eq!(fs.stats().crashes, 1);
    }

    #[test]
    fn a_lost_rename_leaves_the_file_under_its_old_name_and_a_lost_remove_brings_it_back() {
        let fs = fs();
        write(&fs, "a.tmp", b"data", true);
        write(&fs, "old", b"old", true);
        fs.sync_dir(Path::new(DIR)).unwrap();
        fs.rename(&path("a.tmp"), &path("a")).unwrap();
        fs.remove(&path("old")).unwrap();
        assert!(fs.exists(&path("a")) && !fs.exists(&path("a.tmp")) && !fs.exists(&path("old")));
        fs.crash();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), ["a.tmp", "old"]);
        assert_eq!(fs.read(&path("a.tmp")).unwrap(), b"data");
    }

    #[test]
    fn a_policy_can_keep_changes_and_tear_files() {
        let fs = fs();
        write(&fs, "torn.tmp", b"0123456789", false);
        write(&fs, "empty", b"", false);
        let report = fs.crash_with(&mut Keep(4));
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), ["empty", "torn.tmp"]);
        assert_eq!(fs.read(&path("torn.tmp")).unwrap(), b"0123");
        assert_eq!(report.torn, [path("torn.tmp")]);
        assert_eq!(report.lost_bytes, 6);
        // What survived is durable now.
        fs.crash();
        assert_eq!(fs.read(&path("torn.tmp")).unwrap(), b"0123");
        assert_eq!(fs.stats().torn_files, 1);
    }

    #[test]
    fn a_rename_of_a_file_whose_create_was_lost_does_nothing() {
        let fs = fs();
        write(&fs, "a.tmp", b"data", true);
        fs.rename(&path("a.tmp"), &path("a")).unwrap();
        // Keep only the rename.
        struct OnlyRename;
        impl CrashPolicy for OnlyRename {
            fn keeps_change(&mut self, path: &Path) -> bool {
                path.ends_with("a")
            }
            fn kept_bytes(&mut self, _: &Path, n: u64) -> u64 {
                n
            }
        }
        fs.crash_with(&mut OnlyRename);
        assert!(fs.list(Path::new(DIR)).unwrap().is_empty());
    }

    #[test]
    fn directory_syncs_are_per_directory_and_readers_see_the_file_as_opened() {
        let fs = fs();
        fs.create_dir_all(Path::new("/e")).unwrap();
        write(&fs, "a", b"1", true);
        let mut other = fs.create(Path::new("/e/b")).unwrap();
        other.sync().unwrap();
        fs.sync_dir(Path::new("/e")).unwrap();
        let mut reader = fs.open(&path("a")).unwrap();
        write(&fs, "a", b"2-replaced", true);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"1");
        fs.crash();
        assert!(fs.list(Path::new(DIR)).unwrap().is_empty());
        assert_eq!(fs.list(Path::new("/e")).unwrap(), ["b"]);
        assert!(reader.read(&mut [0; 4]).unwrap_err().to_string().contains("closed by crash"));
        let err = fs.rename(&path("x"), Path::new("/e/x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(fs.open(&path("x")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.remove(&path("x")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.list(Path::new("/none")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(fs.create(Path::new("/none/f")).is_err());
    }

    #[test]
    fn removed_files_are_freed() {
        let fs = fs();
        for i in 0..10 {
            write(&fs, &format!("f{i}"), &[0; 1000], true);
            fs.remove(&path(&format!("f{i}"))).unwrap();
            fs.sync_dir(Path::new(DIR)).unwrap();
        }
        assert!(fs.lock().inodes.is_empty());
    }

    #[test]
    fn the_real_file_system_does_the_same_operations() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let sub = dir.path().join("snap");
        fs.create_dir_all(&sub).unwrap();
        let mut file = fs.create(&sub.join("b.tmp")).unwrap();
        file.write_all(b"hello").unwrap();
        file.sync().unwrap();
        drop(file);
        fs.rename(&sub.join("b.tmp"), &sub.join("b")).unwrap();
        fs.create(&sub.join("a")).unwrap();
        fs.sync_dir(&sub).unwrap();
        assert_eq!(fs.list(&sub).unwrap(), ["a", "b"]);
        assert_eq!(fs.open(&sub.join("b")).unwrap().size().unwrap(), 5);
        assert_eq!(fs.read(&sub.join("b")).unwrap(), b"hello");
        assert!(fs.exists(&sub.join("a")) && !fs.exists(&sub.join("b.tmp")));
        fs.remove(&sub.join("a")).unwrap();
        assert_eq!(fs.remove(&sub.join("a")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
