//! `tinykv-ctl` against an in-process server on an ephemeral loopback port:
//! output, exit codes, and error messages.

use std::process::{Command, Output};
use std::sync::Arc;

use tinykv_server::Server;
use tinykv_storage::{StandaloneConfig, StandaloneStorage};

/// A server running on a background runtime until dropped.
struct Running {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage =
            StandaloneStorage::open(&StandaloneConfig::for_tests(dir.path())).expect("open");
        let server = Server::new(Arc::new(storage));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr").to_string()).expect("send addr");
                tinykv_server::serve(listener, server, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        Running { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tinykv-ctl"))
            .arg("--addr")
            .arg(&self.addr)
            .args(args)
            .output()
            .expect("run tinykv-ctl")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not hex"), "{}", stderr(&out));

    let out = server.ctl(&["raw"]);
    assert_eq!(out.status.code(), Some(2), "a bad command line exits 2");
}

#[test]
fn unreachable_server_is_a_clear_error() {
    // Bind and drop a listener to find a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_tinykv-ctl"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "raw", "get", "k"])
        .output()
        .expect("run tinykv-ctl");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
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
