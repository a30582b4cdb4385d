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
