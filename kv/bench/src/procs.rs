//! Starting and stopping the servers under test: TinyKV stores (a static
//! cluster, or one standalone server) and etcd members, each a child
//! process on loopback with its data and log in a temporary directory.
//! Every child is killed when its [`Servers`] is dropped, also when the
//! benchmark fails half-way.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Running server processes and their client addresses (`host:port`).
#[derive(Debug)]
pub struct Servers {
    /// What runs, for messages: "3 tinykv stores", "3 etcd members".
    pub what: String,
    /// The client addresses, one per process.
    pub addrs: Vec<String>,
    children: Vec<(String, Child, PathBuf)>,
    _dir: tempfile::TempDir,
}

impl Servers {
    /// Starts `stores` TinyKV stores: a static cluster of `stores` stores
    /// (one region over all of them), or with `stores == 1` one
    /// `--standalone` server (no raft). Waits until each one listens.
    pub fn tinykv(bin: &Path, stores: usize) -> Result<Servers, String> {
        let dir = temp_dir("tinykv")?;
        let addrs: Vec<String> = (0..stores).map(|_| free_addr()).collect::<Result<_, _>>()?;
        let cluster: Vec<String> =
            addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
        let mut servers = Servers {
            what: if stores == 1 {
                "1 tinykv server (standalone)".into()
            } else {
                format!("{stores} tinykv stores")
            },
            addrs: addrs.clone(),
            children: Vec::new(),
            _dir: dir,
        };
        for (i, addr) in addrs.iter().enumerate() {
            let data = servers._dir.path().join(format!("store{}", i + 1));
            let mut cmd = Command::new(bin);
            cmd.arg("--data-dir").arg(&data).arg("--addr").arg(addr);
            if stores == 1 {
                cmd.arg("--standalone");
            } else {
                cmd.arg("--store-id")
                    .arg((i + 1).to_string())
                    .arg("--cluster")
                    .arg(cluster.join(","));
            }
            servers.spawn(&format!("store{}", i + 1), cmd)?;
        }
        servers.wait_listening()?;
        Ok(servers)
    }

    /// Starts an etcd cluster of `members` members (`etcd` is the binary)
    /// with its default settings (fsync on every commit, like TinyKV's
    /// default). Waits until each member listens.
    pub fn etcd(bin: &Path, members: usize) -> Result<Servers, String> {
        let dir = temp_dir("etcd")?;
        let clients: Vec<String> = (0..members).map(|_| free_addr()).collect::<Result<_, _>>()?;
        let peers: Vec<String> = (0..members).map(|_| free_addr()).collect::<Result<_, _>>()?;
        let initial: Vec<String> =
            peers.iter().enumerate().map(|(i, p)| format!("m{}=http://{p}", i + 1)).collect();
        let mut servers = Servers {
            what: format!("{members} etcd member{}", if members == 1 { "" } else { "s" }),
            addrs: clients.clone(),
            children: Vec::new(),
            _dir: dir,
        };
        for i in 0..members {
            let name = format!("m{}", i + 1);
            let mut cmd = Command::new(bin);
            cmd.arg("--name").arg(&name);
            cmd.arg("--data-dir").arg(servers._dir.path().join(&name));
            cmd.arg("--listen-client-urls").arg(format!("http://{}", clients[i]));
            cmd.arg("--advertise-client-urls").arg(format!("http://{}", clients[i]));
            cmd.arg("--listen-peer-urls").arg(format!("http://{}", peers[i]));
            cmd.arg("--initial-advertise-peer-urls").arg(format!("http://{}", peers[i]));
            cmd.arg("--initial-cluster").arg(initial.join(","));
            cmd.arg("--initial-cluster-state").arg("new");
            cmd.arg("--initial-cluster-token").arg("tinykv-bench");
            servers.spawn(&name, cmd)?;
        }
        servers.wait_listening()?;
        Ok(servers)
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<(), String> {
        let log = self._dir.path().join(format!("{name}.log"));
        let out =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child =
            cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        self.children.push((name.to_string(), child, log));
        Ok(())
    }

    /// Waits until every process accepts connections; fails naming the
    /// process and its log's last lines if one exits or is too slow.
    fn wait_listening(&mut self) -> Result<(), String> {
        let start = Instant::now();
        for (i, addr) in self.addrs.clone().iter().enumerate() {
            loop {
                if TcpStream::connect(addr).is_ok() {
                    break;
                }
                let (name, child, log) = &mut self.children[i];
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{name} exited ({status}); its log ends with:\n{}",
                        tail(log)
                    ));
                }
                if start.elapsed() > START_LIMIT {
                    return Err(format!(
                        "{name} did not listen on {addr} within {START_LIMIT:?}; its log ends with:\n{}",
                        tail(log)
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The last lines of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        self.children.iter().map(|(name, _, log)| format!("--- {name}:\n{}", tail(log))).collect()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn temp_dir(what: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("tinykv-bench-{what}-"))
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    let port = listener.local_addr().map_err(|e| format!("no free port: {e}"))?.port();
    Ok(format!("127.0.0.1:{port}"))
}

/// The last 15 lines of a log file.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n") + "\n"
}
