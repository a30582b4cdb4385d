//! `tinykv-ctl` against an in-process server on an ephemeral loopback port:
//! output, exit codes, and error messages; and against an in-process
//! three-store cluster, where a follower sends it to the leader.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv_proto::kvrpcpb::RawGetRequest;
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_server::background::BackgroundServer;
use tinykv_server::node::{Node, NodeConfig};
use tinykv_server::raft_storage::RaftStorage;
use tinykv_server::{Server, TinyKvService, serve_service};
use tinykv_storage::{StandaloneConfig, StandaloneStorage};

/// A server running on a background runtime until dropped.
struct Running {
    server: BackgroundServer,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage =
            StandaloneStorage::open(&StandaloneConfig::for_tests(dir.path())).expect("open");
        let server = BackgroundServer::start(Server::new(Arc::new(storage)));
        Running { server, _dir: dir }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(self.server.addr(), args)
    }
}

/// Runs `tinykv-ctl --addr ADDR ARGS...`.
fn ctl_at(addr: &str, args: &[&str]) -> Output {
    ctl_raw(&[&["--addr", addr], args].concat())
}

/// Runs `tinykv-ctl ARGS...`.
fn ctl_raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinykv-ctl")).args(args).output().expect("run tinykv-ctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn put_get_scan_delete() {
    let server = Running::start();
    let out = server.ctl(&["raw", "put", "hello", "world"]);
    assert!(out.status.success(), "put failed: {}", stderr(&out));
    assert_eq!(stdout(&out), "OK\n");
    server.ctl(&["raw", "put", "apple", "red"]);
    server.ctl(&["--hex", "raw", "put", "6200", "01ff"]);

    let out = server.ctl(&["raw", "get", "hello"]);
    assert_eq!(stdout(&out), "world\n");
    let out = server.ctl(&["raw", "scan", "--limit", "10"]);
    assert_eq!(stdout(&out), "apple => red\nb\\x00 => \\x01\\xff\nhello => world\n(3 pairs)\n");
    let out = server.ctl(&["raw", "scan", "b", "--limit", "1"]);
    assert_eq!(stdout(&out), "b\\x00 => \\x01\\xff\n(1 pair)\n");

    let out = server.ctl(&["raw", "delete", "hello"]);
    assert!(out.status.success());
    let out = server.ctl(&["raw", "get", "hello"]);
    assert!(out.status.success(), "a missing key is not an error");
    assert_eq!(stdout(&out), "(not found)\n");

    let out = server.ctl(&["raw", "put", "k", "in-lock", "--cf", "lock"]);
    assert!(out.status.success());
    assert_eq!(stdout(&server.ctl(&["raw", "get", "k", "--cf", "lock"])), "in-lock\n");
    assert_eq!(stdout(&server.ctl(&["raw", "get", "k"])), "(not found)\n");
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let server = Running::start();
    let out = server.ctl(&["raw", "get", "k", "--cf", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown column family \"nope\""), "{}", stderr(&out));

    let out = server.ctl(&["raw", "scan", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));

    let out = server.ctl(&["--hex", "raw", "get", "xyz"]);
    assert_eq!(out.status.code(), Some(2), "bad hex is a bad command line");
    assert!(stderr(&out).contains("not hex"), "{}", stderr(&out));

    let out = server.ctl(&["raw"]);
    assert_eq!(out.status.code(), Some(2), "a bad command line exits 2");
}

#[test]
fn unreachable_server_is_a_clear_error() {
    // Bind and drop a listener to find a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = ctl_at(&format!("127.0.0.1:{port}"), &["raw", "get", "k"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

/// What clap and tinykv-ctl print after a command-line mistake's message.
const TRY_HELP: &str = "\n\nFor more information, try '--help'.\n";

#[test]
fn a_malformed_address_exits_2_and_says_what_is_wrong() {
    let cases = [
        ("localhost", "no port: expected HOST:PORT, e.g. localhost:20160"),
        ("127.0.0.1:99999", "port 99999 is out of range: ports go from 1 to 65535"),
        ("127.0.0.1:", "no port after the colon: expected HOST:PORT, e.g. 127.0.0.1:20160"),
        (":20160", "no host before the port: expected HOST:PORT, e.g. 127.0.0.1:20160"),
        (
            "https://127.0.0.1:20160",
            "tinykv-server speaks plain gRPC, without TLS: use HOST:PORT or http://HOST:PORT",
        ),
        ("::1:20160", "an IPv6 address goes in brackets: e.g. [::1]:20160"),
    ];
    for (addr, why) in cases {
        let out = ctl_at(addr, &["raw", "get", "k"]);
        assert_eq!(out.status.code(), Some(2), "--addr {addr}: a bad command line exits 2");
        assert_eq!(
            stderr(&out),
            format!("error: invalid value '{addr}' for '--addr <ADDR>': {why}{TRY_HELP}"),
            "--addr {addr}"
        );
    }
}

#[test]
fn an_http_address_is_accepted() {
    let server = Running::start();
    let http = format!("http://{}", server.server.addr());
    let out = ctl_at(&http, &["raw", "put", "k", "v"]);
    assert!(out.status.success(), "--addr {http}: {}", stderr(&out));
    let out = ctl_at(&format!("{http}/"), &["raw", "get", "k"]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("v\n", ""));
}

#[test]
fn command_line_mistakes_exit_2_and_send_nothing() {
    let server = Running::start();
    let max = u64::MAX.to_string();
    let cases: [(&[&str], &str); 9] = [
        (
            &["txn", "put", "k1", "v1", "k2"],
            "txn put takes KEY VALUE pairs, but got 3 words: the last key, \"k2\", has no value",
        ),
        (
            &["txn", "prewrite", "k1", "v1", "k2", "v2", "k3", "--start-ts", "5"],
            "txn prewrite takes KEY VALUE pairs, but got 5 words: the last key, \"k3\", has no value",
        ),
        (
            &["--hex", "raw", "put", "6b", "zz"],
            "\"zz\" is not hex (--hex): hex digits are 0-9, a-f and A-F",
        ),
        (&["--hex", "raw", "scan", "6"], "\"6\" is not hex (--hex): odd number of digits"),
        (
            &["--hex", "txn", "rollback", "6b", "k", "--start-ts", "5"],
            "\"k\" is not hex (--hex): hex digits are 0-9, a-f and A-F",
        ),
        (
            &["txn", "put", "k1", "v1", "--start-ts", "200", "--commit-ts", "100"],
            "--commit-ts 100 is not above --start-ts 200",
        ),
        (
            &["txn", "put", "k1", "v1", "--start-ts", &max],
            "--start-ts 18446744073709551615 leaves no commit timestamp above it: give a smaller one",
        ),
        (
            &["txn", "commit", "k1", "--start-ts", "7", "--commit-ts", "7"],
            "--commit-ts 7 is not above --start-ts 7",
        ),
        (
            &["txn", "resolve", "--start-ts", "7", "--commit-ts", "3"],
            "--commit-ts 3 is not above --start-ts 7",
        ),
    ];
    for (args, why) in cases {
        let out = server.ctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: a bad command line exits 2");
        assert_eq!(stderr(&out), format!("error: {why}{TRY_HELP}"), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    // Nothing reached the server: no data, no lock.
    for cf in ["default", "lock", "write"] {
        assert_eq!(stdout(&server.ctl(&["raw", "scan", "--cf", cf])), "(0 pairs)\n", "cf {cf}");
    }
}

#[test]
fn txn_put_get_scan_and_status() {
    let server = Running::start();
    let out = server.ctl(&[
        "txn",
        "put",
        "k1",
        "v1",
        "k2",
        "v2",
        "--start-ts",
        "100",
        "--commit-ts",
        "110",
    ]);
    assert!(out.status.success(), "txn put failed: {}", stderr(&out));
    assert_eq!(stdout(&out), "OK: started at 100, committed at 110\n");

    let at = |ts: &str, key: &str| stdout(&server.ctl(&["txn", "get", key, "--ts", ts]));
    assert_eq!(at("120", "k1"), "v1\n");
    assert_eq!(at("105", "k1"), "(not found)\n", "a read before the commit ts");
    // Without --ts the local clock is far past 110.
    assert_eq!(stdout(&server.ctl(&["txn", "get", "k2"])), "v2\n");

    let out = server.ctl(&["txn", "scan", "--ts", "120"]);
    assert_eq!(stdout(&out), "k1 => v1\nk2 => v2\n(2 pairs as of 120)\n");
    let out = server.ctl(&["txn", "status", "k1", "--start-ts", "100"]);
    assert_eq!(stdout(&out), "transaction 100: committed at 110\n");

    // A transaction that never commits: its lock shows, then expires.
    let out = server.ctl(&["txn", "rollback", "k3", "--start-ts", "200"]);
    assert!(out.status.success(), "txn rollback: {}", stderr(&out));
    let out = server.ctl(&["txn", "status", "k9", "--start-ts", "300", "--now", "301"]);
    assert_eq!(
        stdout(&out),
        "transaction 300: rolled back (it had no lock and no write: rolled back just now)\n"
    );
    let out = server.ctl(&["txn", "put", "k1", "again", "--start-ts", "105", "--commit-ts", "130"]);
    assert!(!out.status.success(), "a prewrite under an older start ts than a commit must fail");
    assert!(stderr(&out).contains("write conflict on key k1"), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("nothing was written"), "stderr: {}", stderr(&out));
}

#[test]
fn a_lock_is_reported_checked_and_resolved() {
    let server = Running::start();
    // Physical time 1000 ms, TTL 50 ms: the lock expires at 1050 ms.
    let started = (1000u64 << 18).to_string();
    let out = server.ctl(&[
        "txn",
        "prewrite",
        "k1",
        "v1",
        "k2",
        "v2",
        "--start-ts",
        &started,
        "--ttl",
        "50",
    ]);
    assert!(out.status.success(), "txn prewrite: {}", stderr(&out));

    let later = ((1001u64 << 18).to_string(), (1050u64 << 18).to_string());
    let out = server.ctl(&["txn", "get", "k2", "--ts", &later.0]);
    assert!(!out.status.success(), "reading a locked key must fail");
    let want =
        format!("key k2 is locked by the transaction started at {started} (primary k1, TTL 50 ms)");
    assert!(stderr(&out).contains(&want), "stderr: {}", stderr(&out));
    let out = server.ctl(&["txn", "scan", "--ts", &later.0]);
    assert!(
        stdout(&out).starts_with(&format!("k1 => ({want}").replace("k2 is", "k1 is")),
        "stdout: {}",
        stdout(&out)
    );

    let status = |now: &str| {
        stdout(&server.ctl(&["txn", "status", "k1", "--start-ts", &started, "--now", now]))
    };
    assert_eq!(
        status(&later.0),
        format!("transaction {started}: locked (TTL 50 ms, not expired at {})\n", later.0)
    );
    assert_eq!(
        status(&later.1),
        format!(
            "transaction {started}: rolled back (its lock had expired: rolled back just now)\n"
        )
    );
    let out = server.ctl(&["txn", "resolve", "--start-ts", &started]);
    assert!(out.status.success(), "txn resolve: {}", stderr(&out));
    let out = server.ctl(&["txn", "scan", "--ts", &later.1]);
    assert_eq!(stdout(&out), format!("(0 pairs as of {})\n", later.1));

    let out =
        server.ctl(&["txn", "commit", "k1", "k2", "--start-ts", &started, "--commit-ts", &later.1]);
    assert!(!out.status.success(), "committing a rolled-back transaction must fail");
    assert!(stderr(&out).contains("was rolled back"), "stderr: {}", stderr(&out));
    let out = server.ctl(&["txn", "scan", "--limit", "20000"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("scan limit 20000"), "stderr: {}", stderr(&out));
}

/// Three stores of a static cluster in this process, each on its own fjall
/// engines and an ephemeral loopback port, set up as `tinykv-server
/// --store-id N --cluster ...` sets up one (kv/server/src/main.rs).
struct Cluster {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    addrs: BTreeMap<u64, SocketAddr>,
    stores: BTreeMap<u64, Store>,
}

struct Store {
    node: Node,
    stop_grpc: tokio::sync::oneshot::Sender<()>,
    grpc: tokio::task::JoinHandle<()>,
}

/// The roles the stores have now: a follower's address, and the leader
/// that follower names (its address and store id).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Roles {
    follower: String,
    leader: String,
    leader_store: u64,
}

impl Cluster {
    fn start() -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let listeners: BTreeMap<u64, tokio::net::TcpListener> = (1..=3)
            .map(|id| {
                (id, rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind"))
            })
            .collect();
        let addrs: BTreeMap<u64, SocketAddr> =
            listeners.iter().map(|(&id, l)| (id, l.local_addr().expect("address"))).collect();
        let cluster: BTreeMap<u64, String> =
            addrs.iter().map(|(&id, a)| (id, a.to_string())).collect();
        let mut stores = BTreeMap::new();
        for (id, listener) in listeners {
            let config = NodeConfig {
                store_id: id,
                data_dir: dir.path().join(format!("store{id}")),
                stores: cluster.clone(),
                raft: tinykv_raftstore::Config { seed: id, ..Default::default() },
                fjall: tinykv_engine::FjallConfig::for_tests(),
                scheduler: None,
            };
            let node = Node::start(&config, rt.handle()).expect("start the store");
            let storage = RaftStorage::new(node.handle(), Duration::from_secs(5))
                .with_addresses(cluster.clone());
            let service =
                TinyKvService::new(Server::new(Arc::new(storage))).with_node(node.handle());
            let (stop_grpc, stopped) = tokio::sync::oneshot::channel::<()>();
            let grpc = rt.spawn(async move {
                serve_service(listener, service, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            });
            stores.insert(id, Store { node, stop_grpc, grpc });
        }
        Cluster { rt, _dir: dir, addrs, stores }
    }

    /// Asks every store for a key until one answers as the leader and
    /// another, a follower, answers `not_leader` naming that leader's
    /// address (at most 20 s).
    fn roles(&self) -> Roles {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut leader = None;
            let mut followers = Vec::new();
            for (&id, addr) in &self.addrs {
                let answer = self.rt.block_on(async {
                    let mut client = TinyKvClient::connect(format!("http://{addr}")).await.ok()?;
                    let req = RawGetRequest {
                        key: b"k".to_vec(),
                        cf: "default".into(),
                        ..Default::default()
                    };
                    client.raw_get(req).await.ok().map(|r| r.into_inner())
                });
                let Some(answer) = answer else { continue };
                match answer.region_error.and_then(|e| e.not_leader) {
                    None if answer.error.is_empty() => leader = Some(id),
                    Some(n) if !n.leader_address.is_empty() => {
                        followers.push((addr.to_string(), n.leader_address));
                    }
                    _ => {}
                }
            }
            if let Some(id) = leader {
                let leader_addr = self.addrs[&id].to_string();
                if let Some((follower, _)) = followers.iter().find(|(_, l)| *l == leader_addr) {
                    return Roles {
                        follower: follower.clone(),
                        leader: leader_addr,
                        leader_store: id,
                    };
                }
            }
            assert!(Instant::now() < deadline, "no leader that a follower names within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops store `id`'s gRPC server from taking connections and leaves
    /// its raft store running: it keeps leading (its own streams to the
    /// others still work, and theirs to it stay open until it stops), but
    /// no new client reaches it.
    fn stop_accepting(&mut self, id: u64) {
        let store = self.stores.get_mut(&id).expect("a store");
        let (unused, _) = tokio::sync::oneshot::channel();
        let _ = std::mem::replace(&mut store.stop_grpc, unused).send(());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addrs[&id]).is_ok() {
            assert!(Instant::now() < deadline, "store {id} still takes connections after 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, store) in std::mem::take(&mut self.stores) {
            store.node.stop();
            let _ = store.stop_grpc.send(());
            let grpc = store.grpc;
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), grpc).await });
        }
    }
}

/// The line tinykv-ctl prints when a follower sends it to the leader.
fn redirect_note(roles: &Roles) -> String {
    format!(
        "note: store at {} is not the leader of region 1; retrying at the leader {} (store {})\n",
        roles.follower, roles.leader, roles.leader_store
    )
}

/// Runs tinykv-ctl with `args` against a follower and returns its output
/// and the roles it ran under. A run that fails because the leader moved
/// in between (an election) is tried again, at most three times in all;
/// any other failure is returned.
fn through_a_follower(cluster: &Cluster, args: &[&str]) -> (Output, Roles) {
    let mut roles = cluster.roles();
    for _attempt in 1..3 {
        let out = ctl_at(&roles.follower, args);
        let now = cluster.roles();
        if out.status.success() || now.leader == roles.leader {
            return (out, roles);
        }
        roles = now;
    }
    (ctl_at(&roles.follower, args), roles)
}

#[test]
fn a_follower_sends_the_ctl_to_the_leader_once() {
    let mut cluster = Cluster::start();

    let (out, roles) = through_a_follower(&cluster, &["raw", "put", "k", "v"]);
    assert!(out.status.success(), "raw put through follower {roles:?}: {}", stderr(&out));
    assert_eq!(stdout(&out), "OK\n");
    assert_eq!(stderr(&out), redirect_note(&roles), "one note line, then the leader's answer");

    let (out, roles) = through_a_follower(&cluster, &["raw", "get", "k"]);
    assert!(out.status.success(), "raw get through follower {roles:?}: {}", stderr(&out));
    assert_eq!((stdout(&out), stderr(&out)), ("v\n".to_string(), redirect_note(&roles)));

    // A command of two requests: the prewrite is redirected, and the commit
    // goes to the leader directly.
    let txn = ["txn", "put", "t1", "v1", "--start-ts", "100", "--commit-ts", "110"];
    let (out, roles) = through_a_follower(&cluster, &txn);
    assert!(out.status.success(), "txn put through follower {roles:?}: {}", stderr(&out));
    assert_eq!(stdout(&out), "OK: started at 100, committed at 110\n");
    assert_eq!(stderr(&out), redirect_note(&roles), "one redirect for the whole command");
    let (out, _) = through_a_follower(&cluster, &["txn", "get", "t1", "--ts", "120"]);
    assert_eq!(stdout(&out), "v1\n", "{}", stderr(&out));

    // The leader cannot be reached: the one retry fails, and that is the
    // answer (exit 1), with no second retry.
    let roles = cluster.roles();
    cluster.stop_accepting(roles.leader_store);
    let out = ctl_at(&roles.follower, &["raw", "get", "k"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    let want = format!("{}error: cannot connect to {}: ", redirect_note(&roles), roles.leader);
    assert!(err.starts_with(&want), "expected {want:?}..., got {err:?}");
    assert_eq!(err.lines().count(), 2, "one note and one error: {err:?}");
}
