//! Real-process tests of the `tinykv-server` binary: it serves on an
//! ephemeral loopback port, keeps every acknowledged write across SIGKILL,
//! stops cleanly on SIGTERM, and survives bad requests.
//!
//! These need the lab 1 solution; they are workspace tests, not graded.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tinykv_proto::kvrpcpb::{RawGetRequest, RawPutRequest, RawScanRequest};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tonic::transport::Channel;

/// A running `tinykv-server` child process and the address it listens on.
struct ServerProcess {
    child: Child,
    addr: String,
    /// Log lines from the child's stderr, read by a background thread.
    log: mpsc::Receiver<String>,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> ServerProcess {
        let dir = data_dir.to_str().expect("a UTF-8 path");
        ServerProcess::start_with(&["--standalone", "--addr", "127.0.0.1:0", "--data-dir", dir])
    }

    fn start_with(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tinykv-server"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinykv-server");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = wait_for(&log, "listening on")
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the log line names the address")
            .to_string();
        ServerProcess { child, addr, log }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 60 s) for a log line containing `needle`.
fn wait_for(log: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match log.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(e) => panic!("the server never logged {needle:?}: {e}"),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

async fn client(addr: &str) -> TinyKvClient<Channel> {
    TinyKvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

fn put(key: &[u8], value: &[u8], cf: &str) -> RawPutRequest {
    RawPutRequest { key: key.to_vec(), value: value.to_vec(), cf: cf.into(), ..Default::default() }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = ServerProcess::start(dir.path());
    rt.block_on(async {
        let mut c = client(&server.addr).await;
        for i in 0..200u32 {
            let resp =
                c.raw_put(put(format!("key{i:04}").as_bytes(), &i.to_be_bytes(), "default")).await;
            let resp = resp.expect("RawPut").into_inner();
            assert!(resp.error.is_empty(), "put {i}: {}", resp.error);
        }
    });
    server.kill();

    let server = ServerProcess::start(dir.path());
    rt.block_on(async {
        let mut c = client(&server.addr).await;
        let scan = RawScanRequest {
            start_key: vec![],
            limit: 1000,
            cf: "default".into(),
            ..Default::default()
        };
        let kvs = c.raw_scan(scan).await.expect("RawScan").into_inner().kvs;
        assert_eq!(kvs.len(), 200, "every acknowledged write must survive SIGKILL");
        for (i, kv) in kvs.iter().enumerate() {
            assert_eq!(kv.key, format!("key{i:04}").as_bytes());
            assert_eq!(kv.value, (i as u32).to_be_bytes());
        }
    });
}

/// Sends SIGTERM and waits (at most 60 s, `wait_for`) for a clean exit.
fn stop_with_sigterm(mut server: ServerProcess) {
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(status.success());
    wait_for(&server.log, "stopped cleanly");
    let exit = server.child.wait().expect("wait");
    assert!(exit.success(), "SIGTERM must give a clean exit, got {exit}");
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    stop_with_sigterm(ServerProcess::start(dir.path()));
}

/// A client that keeps an idle connection open does not keep the server
/// from stopping: after the grace period (5 s) it closes the connection.
/// (The old server waited for it forever; `wait_for` gives up at 60 s.)
#[test]
fn sigterm_stops_with_an_idle_client_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = ServerProcess::start(dir.path());
    let mut c = rt.block_on(client(&server.addr));
    let resp = rt.block_on(c.raw_put(put(b"k", b"v", "default"))).expect("RawPut").into_inner();
    assert!(resp.error.is_empty(), "{}", resp.error);
    stop_with_sigterm(server);
    drop(c);
}

#[test]
fn bad_requests_get_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = ServerProcess::start(dir.path());
    rt.block_on(async {
        let mut c = client(&server.addr).await;
        let bad = [
            (put(b"k", b"v", "nope"), "unknown column family"),
            (put(b"", b"v", "default"), "empty key"),
            (put(&vec![b'k'; 5000], b"v", "default"), "larger than the limit"),
            (put(b"k", &vec![b'v'; 2 << 20], "default"), "larger than the limit"),
        ];
        for (req, must_say) in bad {
            let resp = c.raw_put(req).await.expect("RawPut answers").into_inner();
            assert!(resp.error.contains(must_say), "expected {must_say:?}, got {:?}", resp.error);
        }
        // Beyond the gRPC message limit the transport refuses the call.
        let huge = c.raw_put(put(b"k", &vec![b'v'; 9 << 20], "default")).await;
        assert!(huge.is_err(), "a 9 MiB message must be refused by the transport");
        let scan = RawScanRequest { limit: 0, cf: "default".into(), ..Default::default() };
        let resp = c.raw_scan(scan).await.expect("RawScan answers").into_inner();
        assert!(resp.error.contains("limit"), "{:?}", resp.error);
        let kv_get = c.kv_get(tinykv_proto::kvrpcpb::GetRequest::default()).await;
        let resp = kv_get.expect("KvGet answers").into_inner();
        let abort = resp.error.map(|e| e.abort).unwrap_or_default();
        assert!(abort.contains("empty key"), "KvGet of an empty key: {abort:?}");

        // Still serving, and nothing was written.
        let resp = c.raw_put(put(b"k", b"ok", "default")).await.expect("RawPut").into_inner();
        assert!(resp.error.is_empty());
        let get = RawGetRequest { key: b"k".to_vec(), cf: "default".into(), ..Default::default() };
        assert_eq!(c.raw_get(get).await.expect("RawGet").into_inner().value, b"ok");
        let scan = RawScanRequest { limit: 100, cf: "default".into(), ..Default::default() };
        assert_eq!(c.raw_scan(scan).await.expect("RawScan").into_inner().kvs.len(), 1);
    });
}

/// Three `tinykv-server` processes form a static cluster; one is killed
/// with SIGKILL and restarted, another is then killed, and every
/// acknowledged write is still there.
#[test]
fn three_store_processes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .collect();
    let cluster =
        (1..=3).map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1])).collect::<Vec<_>>().join(",");
    let start = |i: usize| {
        let data = dir.path().join(format!("store{i}"));
        let addr = format!("127.0.0.1:{}", ports[i - 1]);
        let id = i.to_string();
        ServerProcess::start_with(&[
            "--store-id",
            &id,
            "--cluster",
            &cluster,
            "--addr",
            &addr,
            "--data-dir",
            data.to_str().unwrap(),
        ])
    };
    let mut stores: Vec<Option<ServerProcess>> = (1..=3).map(|i| Some(start(i))).collect();
    let rt = runtime();
    // Puts through whichever store leads, retrying for 20 s.
    let put_any = |stores: &[Option<ServerProcess>], key: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            for s in stores.iter().flatten() {
                let ok = rt.block_on(async {
                    let Ok(mut c) = TinyKvClient::connect(format!("http://{}", s.addr)).await
                    else {
                        return false;
                    };
                    let r = c.raw_put(put(key.as_bytes(), b"v", "default")).await;
                    r.is_ok_and(|r| r.get_ref().error.is_empty())
                });
                if ok {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "put {key} failed for 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let get_any = |stores: &[Option<ServerProcess>], key: &str| -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            for s in stores.iter().flatten() {
                let found = rt.block_on(async {
                    let mut c = TinyKvClient::connect(format!("http://{}", s.addr)).await.ok()?;
                    let req = RawGetRequest {
                        key: key.as_bytes().to_vec(),
                        cf: "default".into(),
                        ..Default::default()
                    };
                    let r = c.raw_get(req).await.ok()?.into_inner();
                    r.error.is_empty().then_some(!r.not_found)
                });
                if let Some(found) = found {
                    return found;
                }
            }
            assert!(std::time::Instant::now() < deadline, "get {key} failed for 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for i in 0..20 {
        put_any(&stores, &format!("k{i:02}"));
    }
    stores[0].take().unwrap().kill();
    for i in 20..40 {
        put_any(&stores, &format!("k{i:02}"));
    }
    stores[0] = Some(start(1));
    stores[1].take().unwrap().kill();
    for i in 0..40 {
        assert!(get_any(&stores, &format!("k{i:02}")), "k{i:02} was acknowledged, then lost");
    }
}
