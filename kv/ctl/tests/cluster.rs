//! `tinykv-ctl --scheduler` against a real cluster of processes: one
//! `tinykv-scheduler` and three `tinykv-server --scheduler` stores on
//! loopback ports the OS picks, each in a temporary directory, with small
//! regions (`--region-max-size 4096`) so that a few hundred writes split
//! them.
//!
//! An integration test only gets its own package's binaries
//! (`CARGO_BIN_EXE_tinykv-ctl`); a dev-dependency on the server packages
//! would build their libraries, not their binaries. So the first test to
//! need them runs `cargo build -p tinykv-server -p tinykv-scheduler-server`
//! (cargo holds no build lock while tests run) and takes them from the
//! target directory this test binary is in.
//!
//! Every process is killed and every directory removed when a test ends,
//! also when it fails ([`Proc`] and [`Cluster`] are drop guards); a failing
//! test first prints the end of each process's log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Regions split above this many bytes: 240 writes of ~60 bytes make
/// several regions.
const REGION_MAX_SIZE: &str = "4096";

/// How many raw keys the main test writes.
const KEYS: usize = 240;

/// The directory with the workspace's binaries, built first (see the
/// module docs).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        // target/<profile>/deps/cluster-<hash>
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "tinykv-server", "-p", "tinykv-scheduler-server"]);
        if dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let out = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo build for tinykv-server and tinykv-scheduler");
        assert!(
            out.status.success(),
            "`cargo build -p tinykv-server -p tinykv-scheduler-server` failed; the cluster \
             tests need both binaries:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A child process, killed (SIGKILL) and waited for when dropped.
struct Proc {
    name: String,
    child: Child,
    /// Its stderr (the log).
    log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `args`, its stderr to `log`, and waits (at most
    /// 30 s) for the line on its stdout that says where it listens;
    /// returns it and that address.
    fn start(name: &str, bin: &Path, args: &[&str], log: &Path) -> (Proc, String) {
        let err = std::fs::File::create(log).expect("create the log");
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info,fjall=warn,lsm_tree=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc { name: name.to_string(), child, log: log.to_path_buf() };
        // Read stdout on a thread to the end, so the child never blocks on
        // a full pipe; the first "listening on" line comes back here.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once(" listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => (proc, addr),
            Err(_) => panic!(
                "{name} printed no \"listening on HOST:PORT\" line within 30 s; its log:\n{}",
                proc.log_tail()
            ),
        }
    }

    /// The last lines of the log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scheduler and its stores. Fields drop in order: the stores are
/// killed first, then the scheduler, then the directory goes.
struct Cluster {
    /// Each store's listening address, and its process.
    stores: Vec<(String, Proc)>,
    scheduler: Proc,
    scheduler_addr: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A scheduler and `stores` stores, started one by one (the first
    /// bootstraps the cluster).
    fn start(stores: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = |name: &str| dir.path().join(name);
        let data = path("scheduler");
        let (scheduler, scheduler_addr) = Proc::start(
            "tinykv-scheduler",
            &bin_dir().join("tinykv-scheduler"),
            &["--data-dir", data.to_str().unwrap(), "--addr", "127.0.0.1:0"],
            &path("scheduler.log"),
        );
        let mut procs = Vec::new();
        for i in 1..=stores {
            let data = path(&format!("store{i}"));
            let args = [
                "--scheduler",
                &scheduler_addr,
                "--data-dir",
                data.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
                "--region-max-size",
                REGION_MAX_SIZE,
            ];
            let log = path(&format!("store{i}.log"));
            let name = format!("store{i}");
            let (proc, addr) = Proc::start(&name, &bin_dir().join("tinykv-server"), &args, &log);
            procs.push((addr, proc));
        }
        Cluster { stores: procs, scheduler, scheduler_addr, _dir: dir }
    }

    /// Runs `tinykv-ctl --scheduler ADDR args...`.
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tinykv-ctl"))
            .args(["--scheduler", &self.scheduler_addr])
            .args(args)
            .output()
            .expect("run tinykv-ctl")
    }

    /// [`ctl`](Self::ctl) that must succeed: its stdout.
    /// Retried for up to 30 s: on a loaded machine a region may be
    /// electing a leader, or a store may answer "proposal dropped" or time
    /// out, which tinykv-ctl reports rather than retries for long.
    fn must(&self, args: &[&str]) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut out = self.ctl(args);
        while !out.status.success() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(300));
            out = self.ctl(args);
        }
        assert!(
            out.status.success(),
            "tinykv-ctl --scheduler {} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            self.scheduler_addr,
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// The rows of `cluster regions` (the header left out).
    fn regions(&self) -> Vec<String> {
        self.must(&["cluster", "regions"]).lines().skip(1).map(str::to_string).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in self.stores.iter().map(|(_, p)| p).chain([&self.scheduler]) {
                eprintln!("--- the end of {}'s log ---\n{}", p.name, p.log_tail());
            }
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn key(i: usize) -> String {
    format!("key{i:05}")
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(40))
}

/// The first column (the region id) of the one row `cluster region KEY`
/// prints.
fn region_of(c: &Cluster, key: &str) -> u64 {
    let out = c.must(&["cluster", "region", key]);
    let row = out.lines().nth(1).unwrap_or_else(|| panic!("no row in {out:?}"));
    row.split_whitespace().next().and_then(|id| id.parse().ok()).expect("a region id")
}

/// Raw writes through `--scheduler` split the regions; every key reads
/// back, a scan crosses the regions in key order, and a transaction spans
/// regions. Also `cluster stores`, `regions`, `region`, `tso`.
#[test]
fn tinykv_ctl_routes_raw_and_txn_commands_across_split_regions() {
    let started = Instant::now();
    let c = Cluster::start(3);
    for i in 0..KEYS {
        assert_eq!(c.must(&["raw", "put", &key(i), &value(i)]), "OK\n", "raw put {}", key(i));
    }

    // The split checks run every 100 ms; give the splits a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let regions = loop {
        let regions = c.regions();
        if regions.len() >= 3 {
            break regions;
        }
        assert!(
            Instant::now() < deadline,
            "{KEYS} writes of ~60 bytes into 4 KiB regions made {} region(s) after 20 s:\n{}",
            regions.len(),
            regions.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(regions[0].split_whitespace().nth(1) == Some("-inf"), "{regions:?}");
    assert!(regions.last().unwrap().split_whitespace().nth(2) == Some("+inf"), "{regions:?}");

    for i in 0..KEYS {
        assert_eq!(c.must(&["raw", "get", &key(i)]), format!("{}\n", value(i)), "raw get");
    }

    // One scan over every region: every key once, in order.
    let want: String = (0..KEYS).map(|i| format!("{} => {}\n", key(i), value(i))).collect();
    let scan = c.must(&["raw", "scan", "--limit", "1000"]);
    assert_eq!(scan, format!("{want}({KEYS} pairs)\n"), "raw scan over {} regions", regions.len());
    // A scan from the middle that stops at its limit, past a region end.
    let part: String = (100..180).map(|i| format!("{} => {}\n", key(i), value(i))).collect();
    let scan = c.must(&["raw", "scan", &key(100), "--limit", "80"]);
    assert_eq!(scan, format!("{part}(80 pairs)\n"), "raw scan from {}", key(100));

    // A transaction over keys of different regions (each `keyNNNNN-txn`
    // sorts right after raw key `keyNNNNN`, in the same region).
    let txn_keys: Vec<String> = [3, KEYS / 2, KEYS - 3].iter().map(|&i| key(i) + "-txn").collect();
    let mut region_ids: Vec<u64> = txn_keys.iter().map(|k| region_of(&c, k)).collect();
    region_ids.dedup();
    assert!(region_ids.len() >= 2, "the txn keys {txn_keys:?} are all in one region");
    let mut put = vec!["txn", "put"];
    for k in &txn_keys {
        put.extend([k.as_str(), k.as_str()]);
    }
    let out = c.must(&put);
    assert!(out.starts_with("OK: started at "), "{out}");
    for k in &txn_keys {
        assert_eq!(c.must(&["txn", "get", k]), format!("{k}\n"), "txn get {k}");
    }
    let scan = c.must(&["txn", "scan", "--limit", "100"]);
    let rows: Vec<&str> = scan.lines().filter(|l| l.contains(" => ")).collect();
    let want: Vec<String> = txn_keys.iter().map(|k| format!("{k} => {k}")).collect();
    assert_eq!(rows, want, "txn scan across regions:\n{scan}");

    // A prewrite that fails in its second region (a key locked by another
    // transaction) after the first region took its lock: everything is
    // rolled back, and the first key reads as never written.
    let (first, locked) = (key(5) + "-txn", key(KEYS - 5) + "-txn");
    assert_ne!(region_of(&c, &first), region_of(&c, &locked), "two regions");
    c.must(&["txn", "prewrite", &locked, "held", "--ttl", "600000"]);
    let out = c.ctl(&["txn", "put", &first, "v", &locked, "v"]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("key {locked} is locked")), "{err}");
    assert!(err.contains("were rolled back: nothing was written"), "{err}");
    assert_eq!(c.must(&["txn", "get", &first]), "(not found)\n", "{first} was rolled back");

    // The cluster commands.
    let stores = c.must(&["cluster", "stores"]);
    let rows: Vec<&str> = stores.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "three stores:\n{stores}");
    assert!(rows.iter().all(|r| r.split_whitespace().nth(2) == Some("Up")), "{stores}");
    let tso = |c: &Cluster| -> u64 {
        let out = c.must(&["cluster", "tso"]);
        let first = out.lines().next().unwrap_or_default();
        first.strip_prefix("timestamp").and_then(|t| t.trim().parse().ok()).expect(&out)
    };
    let (a, b) = (tso(&c), tso(&c));
    assert!(b > a, "timestamps increase: {a} then {b}");
    eprintln!("the cluster test took {:?} ({} regions)", started.elapsed(), regions.len());
}

/// The number of peers in each row of `cluster regions` (its PEERS
/// column, `id@store,id@store,...`).
fn peer_counts(regions: &[String]) -> Vec<usize> {
    regions
        .iter()
        .map(|r| r.split_whitespace().nth(5).map_or(0, |p| p.split(',').count()))
        .collect()
}

/// A store that leads regions is SIGKILLed: tinykv-ctl finds the new
/// leaders (unreachable store, then `not_leader`) and every key still
/// reads back and takes writes, with nothing on stderr.
#[test]
fn tinykv_ctl_follows_the_leaders_after_a_store_dies() {
    let mut c = Cluster::start(3);
    let n = 120;
    for i in 0..n {
        c.must(&["raw", "put", &key(i), &value(i)]);
    }
    // Every region must have its three replicas before a store may die.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let regions = c.regions();
        if peer_counts(&regions).iter().all(|&p| p == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "regions without 3 peers after 20 s:\n{regions:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Kill the store that leads the most regions (`cluster stores`: ID
    // ADDRESS STATE REGIONS LEADERS).
    let table = c.must(&["cluster", "stores"]);
    let (addr, leads) = table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            Some((cols.get(1)?.to_string(), cols.get(4)?.parse::<usize>().ok()?))
        })
        .max_by_key(|(_, leads)| *leads)
        .unwrap_or_else(|| panic!("no stores in {table:?}"));
    assert!(leads > 0, "no store leads a region:\n{table}");
    let at = c.stores.iter().position(|(a, _)| *a == addr).expect("a store of this test");
    drop(c.stores.remove(at));
    for i in 0..n {
        // The dead store's regions elect new leaders meanwhile: retried.
        let got = c.must(&["raw", "get", &key(i)]);
        assert_eq!(
            got,
            format!("{}\n", value(i)),
            "raw get {} after the store at {addr} (leading {leads} regions) died",
            key(i)
        );
    }
    for i in 0..n {
        c.must(&["raw", "put", &key(i), "after"]);
    }
    let scan = c.must(&["raw", "scan", "--limit", "1000"]);
    assert_eq!(scan.matches(" => after\n").count(), n, "{scan}");
}

/// `--scheduler` and `--addr` are one or the other; `cluster` needs
/// `--scheduler`; a scheduler that is not there is a clear error.
#[test]
fn scheduler_command_line_mistakes_and_an_unreachable_scheduler() {
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tinykv-ctl")).args(args).output().expect("run")
    };
    let out =
        ctl(&["--scheduler", "127.0.0.1:2379", "--addr", "127.0.0.1:20160", "raw", "get", "k"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));

    let out = ctl(&["cluster", "stores"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("give --scheduler HOST:PORT"), "{}", stderr(&out));

    let out = ctl(&["--scheduler", "localhost", "raw", "get", "k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("e.g. localhost:2379"), "{}", stderr(&out));

    // Bind and drop a listener to find a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    for args in [&["raw", "get", "k"][..], &["txn", "put", "k", "v"], &["cluster", "tso"]] {
        let out = ctl(&[&["--scheduler", addr.as_str()], args].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let want = format!("error: cannot connect to the scheduler at {addr}: ");
        assert!(stderr(&out).starts_with(&want), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("is tinykv-scheduler running there?"), "{}", stderr(&out));
    }
}

/// The columns of the one row `cluster region KEY` prints: ID START END
/// CONF_VER VERSION PEERS LEADER SIZE.
fn region_row(c: &Cluster, key: &str) -> Vec<String> {
    let out = c.must(&["cluster", "region", key]);
    let row = out.lines().nth(1).unwrap_or_else(|| panic!("no row in {out:?}"));
    row.split_whitespace().map(str::to_string).collect()
}

/// Runs `args` until the condition on `key`'s region row holds (the
/// scheduler hears of a change with the next heartbeat).
fn wait_for_region(
    c: &Cluster,
    key: &str,
    what: &str,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = region_row(c, key);
        if ok(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "{what}: not after 20 s; the region of {key}: {row:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The store of a peer `ID@STORE`.
fn store_of(peer: &str) -> &str {
    peer.split('@').nth(1).unwrap_or_else(|| panic!("a peer is ID@STORE, got {peer:?}"))
}

/// `cluster split`, `transfer-leader`, `remove-peer` and `add-peer` with
/// `--wait` carry the operator out, and `cluster operator` and `cluster
/// operators` report it;
/// a split outside the region, a peer on a store that has one, and an
/// unknown region are refused with the scheduler's reason.
#[test]
fn tinykv_ctl_starts_operators_by_hand() {
    let c = Cluster::start(3);
    for i in 0..20 {
        c.must(&["raw", "put", &key(i), &value(i)]);
    }
    let row = wait_for_region(&c, &key(0), "three peers", |r| r[5].split(',').count() == 3);
    let (id, end) = (row[0].clone(), row[2].clone());
    assert_eq!(end, "+inf", "20 small writes do not split a region: {row:?}");

    let out = c.must(&["cluster", "split", &id, &key(10), "--wait"]);
    assert!(out.contains(&format!("split at \"{}\"", key(10))), "{out}");
    assert!(out.ends_with("success\n"), "{out}");
    let right = wait_for_region(&c, &key(10), "the new region", |r| r[0] != id);
    assert_eq!(right[1], format!("\"{}\"", key(10)), "the new region starts at the key");
    assert_eq!(region_row(&c, &key(9))[2], format!("\"{}\"", key(10)), "the old one ends there");
    let op = c.must(&["cluster", "operator", &id]);
    assert!(op.contains("kind    admin") && op.contains("status  success"), "{op}");
    let ops = c.must(&["cluster", "operators"]);
    let row = ops.lines().find(|l| l.split_whitespace().next() == Some(id.as_str()));
    let row: Vec<&str> = row
        .unwrap_or_else(|| panic!("no row for region {id}:\n{ops}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..], ["admin", "success", "admin-split"], "{ops}");

    // Move the new region's leadership to a follower, then remove it.
    let right_id = right[0].clone();
    let leader_store = store_of(&right[6]).to_string();
    let follower = right[5]
        .split(',')
        .map(store_of)
        .find(|s| *s != leader_store)
        .expect("a follower")
        .to_string();
    c.must(&["cluster", "transfer-leader", &right_id, &follower, "--wait"]);
    wait_for_region(&c, &key(10), "the new leader", |r| store_of(&r[6]) == follower);
    c.must(&["cluster", "remove-peer", &right_id, &leader_store, "--wait"]);
    for i in 0..20 {
        assert_eq!(c.must(&["raw", "get", &key(i)]), format!("{}\n", value(i)), "raw get");
    }

    // Refusals name the reason.
    let refused = |args: &[&str], why: &str| {
        let out = c.ctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    };
    refused(&["cluster", "split", &right_id, &key(5)], "is not inside region");
    refused(&["cluster", "split", &right_id, &key(10)], "is not inside region");
    refused(&["cluster", "add-peer", &right_id, &follower], "already has peer");
    refused(&["cluster", "transfer-leader", "999999", "1"], "region 999999 is not known");
    refused(&["cluster", "add-peer", &right_id, "77"], "store 77 is not known");
}
