//! One benchmark client: its own gRPC connection to the system under
//! test, and a put and a get that either succeed or say why not.
//!
//! A TinyKV client sends raw requests without a region (`region_id` 0:
//! the store routes them by key) and follows `not_leader` answers to the
//! leader, as `tinykv-ctl` does. An etcd client sends to the leader found
//! with `Maintenance.Status` (no forwarding by a follower), with etcd's
//! default linearizable reads.

use std::time::Duration;

use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{RawGetRequest, RawPutRequest};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tonic::transport::{Channel, Endpoint};

use crate::etcdserverpb::kv_client::KvClient;
use crate::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

/// How often one request is retried (a new leader, a store not yet
/// ready) before the benchmark fails.
const ATTEMPTS: usize = 100;
/// The pause before trying another server.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Which system a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Tinykv,
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Tinykv => "tinykv",
            System::Etcd => "etcd",
        }
    }
}

/// A connected client.
#[derive(Debug)]
pub enum Client {
    /// The store addresses, the one in use and its connection.
    Tinykv {
        addrs: Vec<String>,
        at: usize,
        conn: TinyKvClient<Channel>,
    },
    Etcd(KvClient<Channel>),
}

impl Client {
    /// Connects to `addrs` (the servers' client addresses): TinyKV at the
    /// first store (it finds the leader on its first request), etcd at
    /// the leader.
    pub async fn connect(system: System, addrs: &[String]) -> Result<Client, String> {
        match system {
            System::Tinykv => {
                let conn = TinyKvClient::new(channel(&addrs[0]).await?);
                Ok(Client::Tinykv { addrs: addrs.to_vec(), at: 0, conn })
            }
            System::Etcd => {
                Ok(Client::Etcd(KvClient::new(channel(&etcd_leader(addrs).await?).await?)))
            }
        }
    }

    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        if let Client::Etcd(kv) = self {
            kv.put(PutRequest { key, value }).await.map_err(|s| format!("etcd put: {s}"))?;
            return Ok(());
        }
        self.tinykv("put", |mut conn| {
            let req = RawPutRequest {
                key: key.clone(),
                value: value.clone(),
                cf: "default".into(),
                ..Default::default()
            };
            async move {
                conn.raw_put(req).await.map(|r| r.into_inner()).map(|r| (r.region_error, r.error))
            }
        })
        .await
    }

    pub async fn get(&mut self, key: Vec<u8>) -> Result<(), String> {
        if let Client::Etcd(kv) = self {
            let req = RangeRequest { key, serializable: false };
            kv.range(req).await.map_err(|s| format!("etcd get: {s}"))?;
            return Ok(());
        }
        self.tinykv("get", |mut conn| {
            let req =
                RawGetRequest { key: key.clone(), cf: "default".into(), ..Default::default() };
            async move {
                conn.raw_get(req).await.map(|r| r.into_inner()).map(|r| (r.region_error, r.error))
            }
        })
        .await
    }

    /// Sends a TinyKV request (`call` sends it on a connection and returns
    /// the answer's region error and error) until it succeeds, following
    /// the answers to the leader, at most [`ATTEMPTS`] times.
    async fn tinykv<F, Fut>(&mut self, what: &str, mut call: F) -> Result<(), String>
    where
        F: FnMut(TinyKvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<(Option<errorpb::Error>, String), tonic::Status>>,
    {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let Client::Tinykv { conn, .. } = self else {
                unreachable!("tinykv() on an etcd client")
            };
            let verdict = match call(conn.clone()).await {
                Ok((None, error)) if error.is_empty() => return Ok(()),
                Ok((region_error, error)) => Verdict::of(region_error.as_ref(), &error),
                Err(status) => Verdict::Unreachable(status.to_string()),
            };
            last = verdict.describe();
            self.follow(verdict).await?;
        }
        Err(format!("a {what} got no answer in {ATTEMPTS} attempts (last: {last})"))
    }

    /// Acts on a failed TinyKV request: moves to the named leader, or to
    /// the next store after a pause, or gives up on an error that a retry
    /// cannot mend.
    async fn follow(&mut self, verdict: Verdict) -> Result<(), String> {
        let Client::Tinykv { addrs, at, conn } = self else { return Ok(()) };
        let next = match verdict {
            Verdict::Fatal(message) => return Err(message),
            Verdict::Leader(addr) => match addrs.iter().position(|a| *a == addr) {
                Some(i) => i,
                None => {
                    return Err(format!(
                        "not_leader names {addr}, which is not a store of the cluster"
                    ));
                }
            },
            Verdict::Elsewhere | Verdict::Unreachable(_) => {
                tokio::time::sleep(RETRY_PAUSE).await;
                (*at + 1) % addrs.len()
            }
        };
        if next != *at {
            *at = next;
            *conn = TinyKvClient::new(channel(&addrs[next]).await?);
        }
        Ok(())
    }
}

/// What a failed TinyKV answer asks of the client.
enum Verdict {
    /// `not_leader` naming the leader's address.
    Leader(String),
    /// Another store may serve it (an election, a store not ready).
    Elsewhere,
    /// The connection failed.
    Unreachable(String),
    /// An answer that a retry will not change.
    Fatal(String),
}

impl Verdict {
    fn describe(&self) -> String {
        match self {
            Verdict::Leader(addr) => format!("not_leader, leader at {addr}"),
            Verdict::Elsewhere => "not served here (no leader known, busy or stale)".into(),
            Verdict::Unreachable(e) => format!("unreachable: {e}"),
            Verdict::Fatal(e) => e.clone(),
        }
    }

    fn of(region_error: Option<&errorpb::Error>, error: &str) -> Verdict {
        match region_error {
            None => Verdict::Fatal(format!("tinykv error: {error}")),
            Some(e) => match &e.not_leader {
                Some(nl) if !nl.leader_address.is_empty() => {
                    Verdict::Leader(nl.leader_address.clone())
                }
                Some(_) => Verdict::Elsewhere,
                None if e.server_is_busy.is_some() || e.stale_command.is_some() => {
                    Verdict::Elsewhere
                }
                None => Verdict::Fatal(format!("tinykv region error: {}", e.message)),
            },
        }
    }
}

/// A connection with Nagle's algorithm off (as both systems' own clients).
async fn channel(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// The client address of the etcd member that leads, asked of each
/// member until one knows a leader (up to about 10 s after a start).
async fn etcd_leader(addrs: &[String]) -> Result<String, String> {
    let mut last = String::from("no member answered");
    for _ in 0..200 {
        let mut members = Vec::new();
        for addr in addrs {
            let answer = match channel(addr).await {
                Ok(ch) => MaintenanceClient::new(ch).status(StatusRequest {}).await,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match answer {
                Ok(s) => {
                    let s = s.into_inner();
                    members.push((
                        s.header.map(|h| h.member_id).unwrap_or(0),
                        s.leader,
                        addr.clone(),
                    ));
                }
                Err(status) => last = format!("{addr}: {status}"),
            }
        }
        let leader = members.iter().find(|(id, leader, _)| *leader != 0 && id == leader);
        if let Some((_, _, addr)) = leader {
            return Ok(addr.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("no etcd leader after 10 s ({last})"))
}
