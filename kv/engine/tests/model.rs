//! Model-based test of both engines against a `BTreeMap` oracle.
//!
//! A seeded PRNG generates random operations over a small key space (so keys
//! collide) in all four column families: batches of puts and deletes (synced
//! or not, sometimes empty, sometimes with an invalid key), snapshots, point
//! reads and range scans of the live engine and of old snapshots, syncs,
//! graceful restarts, and, for the memory engine, crashes (full and
//! partial). Every read is compared with the oracle.
//!
//! Set `TINYKV_SEED=<n>` to run only seed `n` (on both engines).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Bound;

use tinykv_engine::{
    Cf, Engine, FjallConfig, FjallEngine, KvPair, MemoryDisk, MemoryEngine, Snapshot, WriteBatch,
    WriteOp,
};

/// splitmix64: tiny, seedable, good enough to drive a test.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_0F7E_57AB)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn cf(&mut self) -> Cf {
        Cf::ALL[self.below(Cf::ALL.len())]
    }

    /// A key of one or two letters from `a..=d`: 20 keys in all.
    fn key(&mut self) -> Vec<u8> {
        let len = 1 + self.below(2);
        (0..len).map(|_| b'a' + self.below(4) as u8).collect()
    }

    /// A range bound: a key of the key space, or something just around it.
    fn bound(&mut self) -> Vec<u8> {
        match self.below(6) {
            0 => Vec::new(),
            1 => {
                let mut key = self.key();
                key.push(0);
                key
            }
            _ => self.key(),
        }
    }
}

type State = Vec<BTreeMap<Vec<u8>, Vec<u8>>>;

fn empty_state() -> State {
    vec![BTreeMap::new(); Cf::ALL.len()]
}

fn apply(state: &mut State, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::Put { cf, key, value } => {
                state[*cf as usize].insert(key.clone(), value.clone());
            }
            WriteOp::Delete { cf, key } => {
                state[*cf as usize].remove(key);
            }
        }
    }
}

fn model_range(state: &State, cf: Cf, start: &[u8], end: Option<&[u8]>) -> Vec<KvPair> {
    if end.is_some_and(|end| end <= start) {
        return Vec::new();
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    state[cf as usize]
        .range::<[u8], _>((Bound::Included(start), upper))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The oracle: what the engine must show.
struct Model {
    /// Every batch written so far (what a live reader sees).
    live: State,
    /// What survives a crash.
    durable: State,
    /// Non-empty batches written since the last sync, oldest first.
    pending: Vec<Vec<WriteOp>>,
}

impl Model {
    fn new() -> Self {
        Model { live: empty_state(), durable: empty_state(), pending: Vec::new() }
    }

    fn write(&mut self, ops: &[WriteOp], sync: bool) {
        apply(&mut self.live, ops);
        if !ops.is_empty() {
            self.pending.push(ops.to_vec());
        }
        if sync {
            self.sync();
        }
    }

    fn sync(&mut self) {
        self.durable = self.live.clone();
        self.pending.clear();
    }

    /// A crash that keeps the first `keep` unsynced batches.
    fn crash(&mut self, keep: usize) {
        for batch in self.pending.iter().take(keep) {
            apply(&mut self.durable, batch);
        }
        self.pending.clear();
        self.live = self.durable.clone();
    }
}

/// What the test drives: an engine that can be restarted (and maybe crashed).
trait Harness {
    fn engine(&self) -> &dyn Engine;
    /// Drops the engine (the caller has dropped every snapshot) and reopens.
    fn restart(&mut self);
    /// Crashes keeping the first `keep` unsynced batches, checks that the old
    /// handle is dead, and reopens. `None` if this engine cannot crash.
    fn crash(&mut self, keep: usize) -> Option<Result<(), String>>;
    /// Unsynced batches according to the engine, if it can tell.
    fn unsynced_batches(&self) -> Option<usize>;
}

struct MemoryHarness {
    disk: MemoryDisk,
    engine: Option<MemoryEngine>,
}

impl Harness for MemoryHarness {
    fn engine(&self) -> &dyn Engine {
        self.engine.as_ref().expect("engine is open")
    }

    fn restart(&mut self) {
        self.engine = None;
        self.engine = Some(self.disk.open());
    }

    fn crash(&mut self, keep: usize) -> Option<Result<(), String>> {
        let old = self.engine.take().expect("engine is open");
        let old_snapshot = old.snapshot();
        self.disk.crash_keeping(keep);
        let mut batch = WriteBatch::new();
        batch.put(Cf::Default, b"after-crash", b"x");
        let result = match old.write(batch) {
            Ok(()) => Err("a handle opened before the crash could still write".to_string()),
            Err(e) if !e.to_string().contains("closed by crash") => {
                Err(format!("unexpected error from a crashed handle: {e}"))
            }
            Err(_) if old.get(Cf::Default, b"a").is_ok() => {
                Err("a handle opened before the crash could still read".to_string())
            }
            Err(_) if old_snapshot.get(Cf::Default, b"a").is_ok() => {
                Err("a snapshot taken before the crash could still be read".to_string())
            }
            Err(_) => Ok(()),
        };
        drop(old_snapshot);
        drop(old);
        self.engine = Some(self.disk.open());
        Some(result)
    }

    fn unsynced_batches(&self) -> Option<usize> {
        Some(self.disk.unsynced_batches())
    }
}

struct FjallHarness {
    dir: tempfile::TempDir,
    engine: Option<FjallEngine>,
}

impl FjallHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FjallEngine::open(dir.path(), FjallConfig::for_tests()).expect("open fjall");
        FjallHarness { dir, engine: Some(engine) }
    }
}

impl Harness for FjallHarness {
    fn engine(&self) -> &dyn Engine {
        self.engine.as_ref().expect("engine is open")
    }

    /// A graceful restart. fjall flushes every batch to the OS when it is
    /// written and fsyncs its journal on drop, so nothing is lost: the model
    /// keeps unsynced writes too (no `sync()` before the restart).
    fn restart(&mut self) {
        self.engine = None;
        let engine =
            FjallEngine::open(self.dir.path(), FjallConfig::for_tests()).expect("reopen fjall");
        self.engine = Some(engine);
    }

    fn crash(&mut self, _keep: usize) -> Option<Result<(), String>> {
        None
    }

    fn unsynced_batches(&self) -> Option<usize> {
        None
    }
}

#[derive(Debug)]
enum Op {
    Write {
        ops: Vec<WriteOp>,
        sync: bool,
    },
    /// A batch with an empty key: must fail and change nothing.
    BadWrite {
        ops: Vec<WriteOp>,
    },
    Snapshot,
    GetLive {
        cf: Cf,
        key: Vec<u8>,
    },
    GetSnapshot {
        snap: usize,
        cf: Cf,
        key: Vec<u8>,
    },
    IterLive {
        cf: Cf,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
    IterSnapshot {
        snap: usize,
        cf: Cf,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
    Sync,
    Restart,
    Crash {
        keep: usize,
    },
}

/// `"ab\x00"`: bytes as an escaped string (keys and values are ASCII here).
fn b(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

fn opt(value: &Option<Vec<u8>>) -> String {
    value.as_deref().map_or_else(|| "None".to_string(), b)
}

fn pairs(pairs: &[KvPair]) -> String {
    let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", b(k), b(v))).collect();
    format!("[{}]", items.join(", "))
}

fn range(start: &[u8], end: &Option<Vec<u8>>) -> String {
    format!("[{}, {})", b(start), end.as_deref().map_or_else(|| "end".to_string(), b))
}

fn write_ops(ops: &[WriteOp]) -> String {
    let items: Vec<String> = ops
        .iter()
        .map(|op| match op {
            WriteOp::Put { cf, key, value } => format!("put {cf} {}={}", b(key), b(value)),
            WriteOp::Delete { cf, key } => format!("delete {cf} {}", b(key)),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { ops, sync } => write!(f, "write(sync={sync}) {}", write_ops(ops)),
            Op::BadWrite { ops } => write!(f, "write with a bad key {}", write_ops(ops)),
            Op::Snapshot => write!(f, "take snapshot"),
            Op::GetLive { cf, key } => write!(f, "get {cf} {} from the live engine", b(key)),
            Op::GetSnapshot { snap, cf, key } => {
                write!(f, "get {cf} {} from snapshot #{snap}", b(key))
            }
            Op::IterLive { cf, start, end } => {
                write!(f, "scan {cf} {} of the live engine", range(start, end))
            }
            Op::IterSnapshot { snap, cf, start, end } => {
                write!(f, "scan {cf} {} of snapshot #{snap}", range(start, end))
            }
            Op::Sync => write!(f, "sync"),
            Op::Restart => write!(f, "restart"),
            Op::Crash { keep } => write!(f, "crash keeping {keep} unsynced batches"),
        }
    }
}

/// Compares the whole state of the engine with the model's live state.
fn check_state(engine: &dyn Engine, model: &State) -> Result<(), String> {
    let snap = engine.snapshot();
    for cf in Cf::ALL {
        let got = collect_iter(&*snap, cf, b"", None)?;
        let want = model_range(model, cf, b"", None);
        if got != want {
            return Err(format!(
                "full scan of {cf}: engine has {}, model has {}",
                pairs(&got),
                pairs(&want)
            ));
        }
    }
    Ok(())
}

const MAX_SNAPSHOTS: usize = 6;

fn gen_op(rng: &mut Rng, snapshots: usize, can_crash: bool, pending: usize) -> Op {
    let roll = rng.below(100);
    let snap = |rng: &mut Rng| rng.below(snapshots.max(1));
    match roll {
        0..=39 => {
            let n = rng.below(6); // 0..=5 ops, sometimes an empty batch
            let ops = (0..n)
                .map(|_| {
                    let (cf, key) = (rng.cf(), rng.key());
                    if rng.chance(30) {
                        WriteOp::Delete { cf, key }
                    } else {
                        let value = format!("v{}", rng.below(1000)).into_bytes();
                        WriteOp::Put { cf, key, value }
                    }
                })
                .collect();
            Op::Write { ops, sync: rng.chance(25) }
        }
        40 => {
            let (cf, key) = (rng.cf(), rng.key());
            Op::BadWrite {
                ops: vec![
                    WriteOp::Put { cf, key, value: b"bad".to_vec() },
                    WriteOp::Delete { cf: rng.cf(), key: Vec::new() },
                ],
            }
        }
        41..=48 => Op::Snapshot,
        49..=58 => Op::GetLive { cf: rng.cf(), key: rng.key() },
        59..=68 if snapshots > 0 => {
            Op::GetSnapshot { snap: snap(rng), cf: rng.cf(), key: rng.key() }
        }
        69..=76 => {
            let (cf, start) = (rng.cf(), rng.bound());
            Op::IterLive { cf, start, end: rng.chance(70).then(|| rng.bound()) }
        }
        77..=86 if snapshots > 0 => {
            let (snap, cf, start) = (snap(rng), rng.cf(), rng.bound());
            Op::IterSnapshot { snap, cf, start, end: rng.chance(70).then(|| rng.bound()) }
        }
        87..=89 => Op::Sync,
        90..=93 => Op::Restart,
        94..=99 if can_crash => {
            // Half the crashes lose everything unsynced, half keep a prefix.
            let keep = if rng.chance(50) { 0 } else { rng.below(pending + 2) };
            Op::Crash { keep }
        }
        _ => Op::GetLive { cf: rng.cf(), key: rng.key() },
    }
}

fn collect_iter(
    snap: &dyn Snapshot,
    cf: Cf,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<Vec<KvPair>, String> {
    snap.iter(cf, start, end)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("iterator failed: {e}"))
}

/// Runs one seed; returns a trace of everything read (for the determinism
/// check) or a failure message.
fn run(
    seed: u64,
    steps: usize,
    harness: &mut dyn Harness,
    can_crash: bool,
) -> Result<String, String> {
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut snapshots: Vec<(Box<dyn Snapshot>, State)> = Vec::new();
    let mut trace = String::new();

    for step in 0..steps {
        let op = gen_op(&mut rng, snapshots.len(), can_crash, model.pending.len());
        let fail = |what: String| format!("seed {seed}, step {step}, op `{op}`: {what}");
        match &op {
            Op::Write { ops, sync } => {
                let mut batch = WriteBatch::new();
                for op in ops {
                    batch.push(op.clone());
                }
                batch.set_sync(*sync);
                harness.engine().write(batch).map_err(|e| fail(format!("write failed: {e}")))?;
                model.write(ops, *sync);
            }
            Op::BadWrite { ops } => {
                let mut batch = WriteBatch::new();
                for op in ops {
                    batch.push(op.clone());
                }
                if harness.engine().write(batch).is_ok() {
                    return Err(fail("a batch with an empty key was accepted".to_string()));
                }
            }
            Op::Snapshot => {
                if snapshots.len() == MAX_SNAPSHOTS {
                    snapshots.remove(rng.below(MAX_SNAPSHOTS));
                }
                snapshots.push((harness.engine().snapshot(), model.live.clone()));
            }
            Op::GetLive { cf, key } => {
                let got =
                    harness.engine().get(*cf, key).map_err(|e| fail(format!("get failed: {e}")))?;
                let want = model.live[*cf as usize].get(key).cloned();
                if got != want {
                    return Err(fail(format!(
                        "live get: engine has {}, model has {}",
                        opt(&got),
                        opt(&want)
                    )));
                }
                let _ = writeln!(trace, "{step} get {got:?}");
            }
            Op::GetSnapshot { snap, cf, key } => {
                let (engine_snap, model_snap) = &snapshots[*snap];
                let got =
                    engine_snap.get(*cf, key).map_err(|e| fail(format!("get failed: {e}")))?;
                let want = model_snap[*cf as usize].get(key).cloned();
                if got != want {
                    return Err(fail(format!(
                        "snapshot get: engine has {}, model has {}",
                        opt(&got),
                        opt(&want)
                    )));
                }
                let _ = writeln!(trace, "{step} snap get {got:?}");
            }
            Op::IterLive { cf, start, end } => {
                let snap = harness.engine().snapshot();
                let got = collect_iter(&*snap, *cf, start, end.as_deref()).map_err(fail)?;
                let want = model_range(&model.live, *cf, start, end.as_deref());
                if got != want {
                    return Err(fail(format!(
                        "live scan: engine has {}, model has {}",
                        pairs(&got),
                        pairs(&want)
                    )));
                }
                let _ = writeln!(trace, "{step} scan {got:?}");
            }
            Op::IterSnapshot { snap, cf, start, end } => {
                let (engine_snap, model_snap) = &snapshots[*snap];
                let got = collect_iter(&**engine_snap, *cf, start, end.as_deref()).map_err(fail)?;
                let want = model_range(model_snap, *cf, start, end.as_deref());
                if got != want {
                    return Err(fail(format!(
                        "snapshot scan: engine has {}, model has {}",
                        pairs(&got),
                        pairs(&want)
                    )));
                }
                let _ = writeln!(trace, "{step} snap scan {got:?}");
            }
            Op::Sync => {
                harness.engine().sync().map_err(|e| fail(format!("sync failed: {e}")))?;
                model.sync();
            }
            Op::Restart => {
                // Every handle goes before reopening (fjall's directory lock).
                snapshots.clear();
                harness.restart();
                check_state(harness.engine(), &model.live).map_err(fail)?;
            }
            Op::Crash { keep } => {
                snapshots.clear();
                if let Some(result) = harness.crash(*keep) {
                    result.map_err(fail)?;
                    model.crash(*keep);
                    check_state(harness.engine(), &model.live).map_err(fail)?;
                }
            }
        }
        if let Some(unsynced) = harness.unsynced_batches()
            && unsynced != model.pending.len()
        {
            return Err(fail(format!(
                "engine counts {unsynced} unsynced batches, model {}",
                model.pending.len()
            )));
        }
    }

    // Finally, the whole state, through a fresh snapshot after a restart.
    snapshots.clear();
    harness.restart();
    check_state(harness.engine(), &model.live)
        .map_err(|e| format!("seed {seed}, after the last step and a restart: {e}"))?;
    Ok(trace)
}

/// The seeds to run: `TINYKV_SEED` alone if set, else `0..count`.
fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("TINYKV_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("TINYKV_SEED must be a u64")],
        Err(_) => (0..count).collect(),
    }
}

fn fail_with_replay(seed: u64, message: &str) -> ! {
    panic!("{message}\nreplay: TINYKV_SEED={seed} cargo test -p tinykv-engine --test model");
}

fn run_memory(seed: u64, steps: usize) -> Result<String, String> {
    let disk = MemoryDisk::new();
    let mut harness = MemoryHarness { engine: Some(disk.open()), disk };
    run(seed, steps, &mut harness, true)
}

#[test]
fn memory_engine_matches_model() {
    for seed in seeds(300) {
        if let Err(message) = run_memory(seed, 200) {
            fail_with_replay(seed, &message);
        }
    }
}

#[test]
fn fjall_engine_matches_model() {
    for seed in seeds(20) {
        let mut harness = FjallHarness::new();
        if let Err(message) = run(seed, 150, &mut harness, false) {
            fail_with_replay(seed, &message);
        }
    }
}

#[test]
fn memory_runs_are_deterministic() {
    let seed = seeds(1)[0];
    let first = run_memory(seed, 300).unwrap_or_else(|m| fail_with_replay(seed, &m));
    let second = run_memory(seed, 300).unwrap_or_else(|m| fail_with_replay(seed, &m));
    assert!(first.lines().count() > 50, "the trace should record the reads");
    assert_eq!(first, second, "seed {seed} gave two different runs");
}

#[test]
fn fjall_synced_write_is_readable_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = FjallConfig::for_tests();
    let engine = FjallEngine::open(dir.path(), config.clone()).unwrap();
    let mut batch = WriteBatch::new();
    for cf in Cf::ALL {
        batch.put(cf, b"key", cf.name().as_bytes());
    }
    engine.write(batch.sync()).unwrap();
    drop(engine);
    let engine = FjallEngine::open(dir.path(), config).unwrap();
    for cf in Cf::ALL {
        assert_eq!(engine.get(cf, b"key").unwrap().as_deref(), Some(cf.name().as_bytes()));
    }
}
