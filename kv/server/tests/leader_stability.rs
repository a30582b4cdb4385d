//! A restarted follower must not depose a healthy leader (not graded).
//!
//! Three real `tinykv-server` store processes on loopback elect a leader;
//! a client writes steadily through it while a follower is stopped for a
//! second (SIGKILL or SIGTERM) and started again on the same data
//! directory, five times. The leader and its term must stay the same
//! throughout, from the first leader any store reported to the end.
//!
//! Raft here has no Pre-Vote and no check-quorum, so a restarted follower
//! that hears no heartbeat within its election timeout (100–200 ms)
//! campaigns in a higher term, and that term deposes the leader. So the
//! leader's link to the restarted store must be back in time: the
//! transport's reconnect timing (`LinkTiming` in `kv/server/src/node.rs`)
//! is what this test checks. The old transport, waiting up to 1 s between
//! reconnects, lost the term in every restart.
//!
//! An election can also start for a reason this test does not control: on
//! a loaded two-core machine a store thread stalled on a slow fsync, with
//! election timeouts of 100–200 ms (seen once in about a dozen runs, a
//! follower 500 ms after its own restart). So the scenario is tried up to
//! three times and the test fails only if every attempt loses the term;
//! the old transport lost it at the first restart of every attempt.
//!
//! Every store logs each change of a region's term or leader
//! (`store S: region R: term T, leader peer P on store S`, or `..., no
//! leader`); the test reads those lines from the stores' stderr. Which
//! store leads is also checked through the API: the leader's store takes
//! a `RawPut`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tinykv_proto::kvrpcpb::RawPutRequest;
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;

/// How many times a follower is restarted.
const RESTARTS: usize = 5;
/// How long a stopped follower stays down: long enough for the old
/// transport's back-off (50 ms doubling to 1 s) to leave a gap of 550 ms
/// between two connect attempts, longer than any election timeout.
const DOWN: Duration = Duration::from_secs(1);
/// How long the test waits for anything (a leader, a restarted store
/// learning it, a process to exit) before it fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// What a store said about region 1's term and leader, and when.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    store: u64,
    term: u64,
    /// The leader's store, if the store knew one.
    leader: Option<u64>,
    line: String,
}

impl Seen {
    /// Parses a `store S: region 1: term T, leader peer P on store L` or
    /// `store S: region 1: term T, no leader` log line.
    fn parse(store: u64, line: &str) -> Option<Seen> {
        let rest = line.split_once("region 1: term ")?.1;
        let (term, rest) = rest.split_once(',')?;
        let leader = match rest.split_once("on store ") {
            Some((_, id)) => Some(id.trim().parse().ok()?),
            None if rest.contains("no leader") => None,
            None => return None,
        };
        let term = term.trim().parse().ok()?;
        Some(Seen { at: Instant::now(), store, term, leader, line: line.to_string() })
    }
}

/// The cluster: three store processes and everything they logged about
/// region 1's leadership.
struct Cluster {
    dir: tempfile::TempDir,
    addrs: Vec<String>,
    spec: String,
    /// Store `i + 1`'s process, while it runs.
    procs: Vec<Option<Child>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Cluster {
    fn start() -> Cluster {
        // Free loopback ports, as the other process tests pick them.
        let addrs: Vec<String> = (0..3)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                l.local_addr().expect("local address").to_string()
            })
            .collect();
        let spec = (1..=3).map(|i| format!("{i}={}", addrs[i - 1])).collect::<Vec<_>>().join(",");
        let mut c = Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            addrs,
            spec,
            procs: (0..3).map(|_| None).collect(),
            seen: Arc::default(),
        };
        for id in 1..=3 {
            c.start_store(id);
        }
        c
    }

    fn addr(&self, id: u64) -> &str {
        &self.addrs[index(id)]
    }

    /// Starts store `id` (again) and waits until it listens; returns when
    /// it logged that.
    fn start_store(&mut self, id: u64) -> Instant {
        let data: PathBuf = self.dir.path().join(format!("store{id}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tinykv-server"))
            .args(["--store-id", &id.to_string(), "--cluster", &self.spec])
            .args(["--addr", self.addr(id), "--data-dir", data.to_str().expect("UTF-8 path")])
            .env("RUST_LOG", "info,fjall=warn,lsm_tree=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinykv-server");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (listening_tx, listening) = mpsc::channel();
        let seen = self.seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = listening_tx.send(Instant::now());
                }
                if let Some(s) = Seen::parse(id, &line) {
                    seen.lock().expect("log lines").push(s);
                }
            }
        });
        let listening = listening
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("store {id} did not start listening: {e}"));
        self.procs[index(id)] = Some(child);
        listening
    }

    /// Stops store `id`: SIGKILL, or SIGTERM and a clean exit.
    fn stop_store(&mut self, id: u64, sigkill: bool) {
        let mut child = self.procs[index(id)].take().expect("the store runs");
        if sigkill {
            child.kill().expect("SIGKILL the store");
            child.wait().expect("reap the store");
            return;
        }
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(exit) = child.try_wait().expect("wait for the store") {
                assert!(exit.success(), "store {id} did not stop cleanly on SIGTERM: {exit}");
                return;
            }
            assert!(Instant::now() < deadline, "store {id} ignored SIGTERM for {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log lines").clone()
    }

    /// Waits until every running store reports the same term and a known
    /// leader; returns them (term, leader's store).
    fn wait_for_agreement(&self) -> (u64, u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.seen();
            let latest: Vec<Option<&Seen>> =
                (1..=3).map(|id| seen.iter().rev().find(|s| s.store == id)).collect();
            if let Some(Some(first)) = latest.first()
                && let Some(leader) = first.leader
                && latest
                    .iter()
                    .all(|s| s.is_some_and(|s| (s.term, s.leader) == (first.term, Some(leader))))
            {
                return (first.term, leader);
            }
            assert!(
                Instant::now() < deadline,
                "the stores did not agree on a leader within {PATIENCE:?}; they said:\n{}",
                lines(&seen)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until store `id` reports `leader` at `term` (after a
    /// restart), failing at once if any store contradicts it (`when`).
    fn wait_until_store_knows(
        &self,
        id: u64,
        term: u64,
        leader: u64,
        since: Instant,
        when: &str,
    ) -> Instant {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.seen();
            assert_stable(&seen, term, leader, when);
            if let Some(s) = seen.iter().find(|s| {
                s.store == id && s.at >= since && (s.term, s.leader) == (term, Some(leader))
            }) {
                return s.at;
            }
            assert!(
                Instant::now() < deadline,
                "restarted store {id} did not learn leader {leader} of term {term} within \
                 {PATIENCE:?}; the stores said:\n{}",
                lines(&seen)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.procs.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn index(id: u64) -> usize {
    usize::try_from(id - 1).expect("a small store id")
}

fn lines(seen: &[Seen]) -> String {
    let start = seen.first().map(|s| s.at);
    seen.iter()
        .map(|s| {
            let ms = start.map_or(0, |t| s.at.duration_since(t).as_millis());
            format!("  +{ms:>5} ms  {}", s.line.split_once("store ").map_or(&*s.line, |x| x.1))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that nothing any store said contradicts `leader` leading in
/// `term`, from the first leader anyone reported on: no store reached a
/// higher term, and every store that knew a leader knew this one. (A store
/// that just started knows no leader yet, and a store that starts late in
/// a cold start may still be in an older term.)
fn assert_stable(seen: &[Seen], term: u64, leader: u64, when: &str) {
    let contradicts =
        |s: &&Seen| s.term > term || s.leader.is_some_and(|l| (s.term, l) != (term, leader));
    if let Some(bad) = seen.iter().find(contradicts) {
        panic!(
            "{when}: store {} reported term {} with leader {:?}, but store {leader} led in term \
             {term} and stayed healthy. A restarted follower that hears no heartbeat within its \
             election timeout campaigns and deposes the leader: the leader's reconnect to it must \
             be faster (LinkTiming in kv/server/src/node.rs). Everything the stores said about \
             region 1:\n{}",
            bad.store,
            bad.term,
            bad.leader,
            lines(seen)
        );
    }
}

fn put(key: String) -> RawPutRequest {
    RawPutRequest {
        key: key.into_bytes(),
        value: b"v".to_vec(),
        cf: "default".into(),
        ..Default::default()
    }
}

/// Whether store `addr` takes a `RawPut` (only the leader's store does),
/// and which store it names as the leader if not (when it says).
///
/// On a runtime of its own, dropped at the end: a connection left on an
/// idle runtime would never see a stopping server's GOAWAY, and the
/// server's graceful shutdown would wait for it.
fn try_put(addr: &str, key: String) -> Result<(), Option<u64>> {
    runtime().block_on(async {
        let mut c = TinyKvClient::connect(format!("http://{addr}")).await.map_err(|_| None)?;
        let resp = c.raw_put(put(key)).await.map_err(|_| None)?.into_inner();
        if resp.error.is_empty() {
            return Ok(());
        }
        let named = resp.region_error.and_then(|e| e.not_leader?.leader).map(|p| p.store_id);
        Err(named)
    })
}

/// What the writer did so far.
#[derive(Debug, Default)]
struct Counters {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    slowest_ms: AtomicU64,
}

/// Writes through the leader's store, one `RawPut` every 5 ms, until told
/// to stop (at most 20,000 writes).
struct Writer {
    counters: Arc<Counters>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(addr: String) -> Writer {
        let counters = Arc::new(Counters::default());
        let count = counters.clone();
        let thread = std::thread::spawn(move || {
            runtime().block_on(async {
                let mut c = TinyKvClient::connect(format!("http://{addr}")).await.expect("connect");
                for i in 0..20_000u32 {
                    if count.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let started = Instant::now();
                    let r = c.raw_put(put(format!("w{i:05}"))).await;
                    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    count.slowest_ms.fetch_max(took, Ordering::Relaxed);
                    let ok = r.is_ok_and(|r| r.get_ref().error.is_empty());
                    let counter = if ok { &count.ok } else { &count.failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        });
        Writer { counters, thread }
    }

    fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Stops the writer; returns (ok, failed, slowest write in ms).
    fn stop(self) -> (u64, u64, u64) {
        self.counters.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the writer thread");
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (load(&c.ok), load(&c.failed), load(&c.slowest_ms))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// How many times the whole scenario may run before the test fails.
const ATTEMPTS: usize = 3;

#[test]
fn a_restarted_follower_does_not_depose_the_leader() {
    let mut failures = Vec::new();
    for attempt in 1..=ATTEMPTS {
        match std::panic::catch_unwind(restart_followers_under_writes) {
            Ok(()) => {
                if !failures.is_empty() {
                    eprintln!(
                        "attempt {attempt} of {ATTEMPTS} kept the leader; the earlier ones did \
                         not:\n{}",
                        failures.join("\n\n")
                    );
                }
                return;
            }
            Err(panic) => failures.push(panic_text(panic)),
        }
    }
    panic!(
        "the leader lost its term in every one of {ATTEMPTS} attempts:\n{}",
        failures.join("\n\n")
    );
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(text) => *text,
        Err(panic) => panic.downcast_ref::<&str>().map_or("(no message)", |t| t).to_string(),
    }
}

/// One run of the scenario of the module docs; panics on a change of
/// leader or term.
fn restart_followers_under_writes() {
    let started = Instant::now();
    let mut cluster = Cluster::start();
    let (term, leader) = cluster.wait_for_agreement();
    // Cold start: the first leader anyone reported must be the one that
    // stays (a store that starts late must hear from it in time too).
    assert_stable(&cluster.seen(), term, leader, "cold start");

    for id in 1..=3 {
        match try_put(cluster.addr(id), format!("probe{id}")) {
            Ok(()) => assert_eq!(id, leader, "store {id} took a write, but store {leader} leads"),
            Err(named) => {
                assert_ne!(id, leader, "the leader's store {id} refused a write");
                if let Some(named) = named {
                    assert_eq!(named, leader, "store {id} names the wrong leader");
                }
            }
        }
    }

    let writer = Writer::start(cluster.addr(leader).to_string());
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for restart in 0..RESTARTS {
        let follower = followers[restart % 2];
        let sigkill = restart % 2 == 0;
        let ok_before = writer.ok();
        cluster.stop_store(follower, sigkill);
        std::thread::sleep(DOWN);
        let when = format!(
            "restart {} of {RESTARTS} (store {follower}, {})",
            restart + 1,
            if sigkill { "SIGKILL" } else { "SIGTERM" }
        );
        let listening = cluster.start_store(follower);
        let learned = cluster.wait_until_store_knows(follower, term, leader, listening, &when);
        // Some more writes with the restarted store caught up.
        std::thread::sleep(Duration::from_millis(300));
        assert_stable(&cluster.seen(), term, leader, &when);
        assert!(writer.ok() > ok_before, "{when}: no write went through the leader");
        eprintln!(
            "{when}: store {follower} learned leader {leader} of term {term} {} ms after it listened",
            learned.saturating_duration_since(listening).as_millis()
        );
    }
    let (ok, failed, slowest_ms) = writer.stop();
    assert_stable(&cluster.seen(), term, leader, "the end");
    assert_eq!(try_put(cluster.addr(leader), "last".into()), Ok(()), "the leader must still lead");
    eprintln!(
        "leader store {leader}, term {term}: {ok} writes ({failed} failed), the slowest took \
         {slowest_ms} ms; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
