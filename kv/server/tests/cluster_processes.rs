//! The real cluster, as processes on loopback: `tinykv-scheduler`, stores
//! started with `tinykv-server --scheduler`, and `tinykv-ctl --scheduler`
//! as the client, exactly as a person runs them (`make cluster`).
//!
//! The tests build the scheduler and ctl binaries first (a nested `cargo
//! build`: integration tests only get their own package's binaries), then
//! start processes in temporary directories. Every process is killed and
//! every directory removed when a test ends, also when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where cargo put the binaries: the directory above this test's `deps/`.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "tinykv-scheduler-server", "-p", "tinykv-ctl"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of tinykv-scheduler and tinykv-ctl failed");
        dir
    })
}

/// A free loopback port (bound, then released: another process could take
/// it in between, which is unlikely on a test machine).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("its address").port()
}

/// `n` consecutive free loopback ports, below the range the OS hands out
/// for port 0 (32768 and up on Linux), where the other tests' processes
/// listen: `scripts/cluster.sh` takes a scheduler port and a first store
/// port and counts up from it, so a run of ports taken one by one could
/// collide with another test's store.
fn free_port_run(n: u16) -> u16 {
    let offset = (std::process::id() % 1000) as u16 * 10;
    (0..1000u16)
        .map(|i| 20_000 + (offset + i * 10) % 10_000)
        .find(|&base| {
            let bound: Vec<_> =
                (base..base + n).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
            bound.iter().all(Result::is_ok)
        })
        .expect("a run of free loopback ports below 30000")
}

/// A child process that is killed when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `args`, its output to `log`, and waits until the
    /// log says it listens.
    fn start(name: &str, bin: &Path, args: &[&str], log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("create the log");
        let err = out.try_clone().expect("clone the log");
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info,fjall=warn,lsm_tree=warn")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut p = Proc { name: name.to_string(), child, log: log.to_path_buf() };
        p.wait_for_log("listening on", Duration::from_secs(30));
        p
    }

    /// Waits until the log holds `text`; panics with the log's end if the
    /// process exits or the time runs out.
    fn wait_for_log(&mut self, text: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}) before logging {text:?}:\n{}", self.name, tail(&log));
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {text:?} within {patience:?}:\n{}",
                self.name,
                tail(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and wait for it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// A scheduler and its stores in one temporary directory.
struct Cluster {
    dir: tempfile::TempDir,
    scheduler_addr: String,
    scheduler: Option<Proc>,
    stores: Vec<(String, Option<Proc>)>,
}

/// Regions split above this many bytes: a few hundred writes split.
const REGION_MAX_SIZE: &str = "4096";

impl Cluster {
    /// A scheduler and `stores` stores, started one by one.
    fn start(stores: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let scheduler_addr = format!("127.0.0.1:{}", free_port());
        let mut c = Cluster { dir, scheduler_addr, scheduler: None, stores: Vec::new() };
        c.start_scheduler();
        for _ in 0..stores {
            c.add_store();
        }
        c
    }

    fn start_scheduler(&mut self) {
        let data = self.dir.path().join("scheduler");
        let n = std::fs::read_dir(self.dir.path()).map(|d| d.count()).unwrap_or(0);
        let log = self.dir.path().join(format!("scheduler-{n}.log"));
        let args = [
            "--data-dir",
            data.to_str().unwrap(),
            "--addr",
            &self.scheduler_addr,
            "--max-store-down-time",
            "5",
        ];
        let bin = bin_dir().join("tinykv-scheduler");
        self.scheduler = Some(Proc::start("tinykv-scheduler", &bin, &args, &log));
    }

    /// Starts one more store; returns its index in `stores`.
    fn add_store(&mut self) -> usize {
        let i = self.stores.len();
        let addr = format!("127.0.0.1:{}", free_port());
        self.stores.push((addr, None));
        self.start_store(i);
        i
    }

    fn start_store(&mut self, i: usize) {
        let data = self.dir.path().join(format!("store{i}"));
        let n = std::fs::read_dir(self.dir.path()).map(|d| d.count()).unwrap_or(0);
        let log = self.dir.path().join(format!("store{i}-{n}.log"));
        let addr = self.stores[i].0.clone();
        let args = [
            "--scheduler",
            &self.scheduler_addr,
            "--data-dir",
            data.to_str().unwrap(),
            "--addr",
            &addr,
            "--region-max-size",
            REGION_MAX_SIZE,
        ];
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_tinykv-server"));
        self.stores[i].1 = Some(Proc::start(&format!("store{i}"), &bin, &args, &log));
    }

    /// Runs `tinykv-ctl --scheduler ADDR args...`.
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("tinykv-ctl"))
            .arg("--scheduler")
            .arg(&self.scheduler_addr)
            .args(args)
            .output()
            .expect("run tinykv-ctl")
    }

    /// `ctl` that must succeed; its stdout.
    fn must_ctl(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "tinykv-ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts `key` = `value`, retrying for up to 20 s (a store may be
    /// restarting, a region electing a leader).
    fn put(&self, key: &str, value: &str) {
        self.retry(&["raw", "put", key, value]);
    }

    /// The value of `key`, retrying for up to 20 s.
    fn get(&self, key: &str) -> String {
        self.retry(&["raw", "get", key]).trim().to_string()
    }

    fn retry(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.ctl(args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "tinykv-ctl {args:?} kept failing for 20 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many regions `cluster regions` lists.
    fn region_count(&self) -> usize {
        let out = self.must_ctl(&["cluster", "regions"]);
        out.lines().skip(1).filter(|l| !l.trim().is_empty()).count()
    }
}

/// The store ids and region counts `cluster stores` prints (its first two
/// numeric columns: id, then the first count after the address and state).
fn store_region_counts(table: &str) -> Vec<(u64, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let id = cols.first()?.parse().ok()?;
            let count = cols.iter().skip(2).find_map(|c| c.parse().ok())?;
            Some((id, count))
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("key{i:05}")
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(40))
}

/// `scripts/cluster.sh`, as `make cluster` runs it, starts a scheduler and
/// three stores that serve `tinykv-ctl --scheduler`, and stops them all.
#[test]
fn the_cluster_script_starts_and_stops_a_working_cluster() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = free_port_run(4);
    let (pd_port, store_port) = (base, base + 1);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
    let run = |what: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(what)
            .env("BIN", bin_dir())
            .env("CLUSTER_DIR", dir.path())
            .env("SCHEDULER_PORT", pd_port.to_string())
            .env("STORE_PORT", store_port.to_string())
            .output()
            .expect("run scripts/cluster.sh")
    };
    struct Stop<'a>(&'a dyn Fn(&str) -> Output);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = (self.0)("stop");
        }
    }
    let started = run("start");
    let _stop = Stop(&run);
    assert!(
        started.status.success(),
        "cluster.sh start failed: {}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    let text = String::from_utf8_lossy(&started.stdout);
    assert!(text.contains("make cluster-stop"), "the start message says how to stop: {text}");
    let c = Cluster {
        dir: tempfile::tempdir().unwrap(),
        scheduler_addr: format!("127.0.0.1:{pd_port}"),
        scheduler: None,
        stores: Vec::new(),
    };
    c.put("hello", "world");
    assert_eq!(c.get("hello"), "world");
    let stores = store_region_counts(&c.must_ctl(&["cluster", "stores"]));
    assert_eq!(stores.len(), 3, "three stores joined: {stores:?}");
    let again = run("start");
    assert!(!again.status.success(), "a second start refuses while the cluster runs");
    let stopped = run("stop");
    assert!(stopped.status.success(), "cluster.sh stop failed");
    let status = String::from_utf8_lossy(&run("status").stdout).into_owned();
    assert!(!status.contains("running (pid"), "nothing runs after stop: {status}");
}

/// Writes go on while a store is SIGKILLed and restarted, and every
/// acknowledged write stays readable; regions split meanwhile.
#[test]
fn acknowledged_writes_survive_a_store_killed_under_load() {
    let mut c = Cluster::start(3);
    for i in 0..150 {
        c.put(&key(i), &value(i));
        if i == 60 {
            c.stores[1].1.as_mut().expect("running").kill();
        }
        if i == 100 {
            c.start_store(1);
        }
    }
    for i in 0..150 {
        assert_eq!(c.get(&key(i)), value(i), "key {} after the kill and restart", key(i));
    }
    assert!(c.region_count() >= 2, "150 writes of 50 bytes split 4 KiB regions");
    let scan = c.must_ctl(&["raw", "scan", "--limit", "1000"]);
    let rows = scan.lines().filter(|l| l.contains("value-")).count();
    assert_eq!(rows, 150, "a scan across the regions returns every key:\n{scan}");
}

/// A fourth store joins an up-and-running cluster; balance-region moves
/// regions to it.
#[test]
fn regions_move_to_a_new_store() {
    let mut c = Cluster::start(3);
    for i in 0..200 {
        c.put(&key(i), &value(i));
    }
    let new = c.add_store();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table = c.must_ctl(&["cluster", "stores"]);
        let counts = store_region_counts(&table);
        if counts.len() == 4 && counts.iter().all(|&(_, n)| n > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "store {new} got no region within 60 s:\n{table}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for i in 0..200 {
        assert_eq!(c.get(&key(i)), value(i));
    }
}

/// The scheduler is SIGKILLed and restarted: timestamps keep increasing,
/// new ids never repeat, and the cluster keeps serving.
#[test]
fn the_scheduler_restarts_after_sigkill() {
    let mut c = Cluster::start(3);
    let tso = |c: &Cluster| -> u64 {
        let out = c.retry(&["cluster", "tso"]);
        out.split_whitespace()
            .find_map(|w| w.parse::<u64>().ok().filter(|&n| n > 1 << 18))
            .unwrap_or_else(|| panic!("no timestamp in {out:?}"))
    };
    for i in 0..50 {
        c.put(&key(i), &value(i));
    }
    let before = tso(&c);
    c.scheduler.as_mut().expect("running").kill();
    c.start_scheduler();
    let after = tso(&c);
    assert!(after > before, "the timestamp after the restart ({after}) is above {before}");
    for i in 50..120 {
        c.put(&key(i), &value(i));
    }
    for i in 0..120 {
        assert_eq!(c.get(&key(i)), value(i));
    }
}
