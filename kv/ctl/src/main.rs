//! `tinykv-ctl`: talk to a TinyKV server from the shell.
//!
//! ```text
//! tinykv-ctl [--addr HOST:PORT] raw put KEY VALUE [--cf CF]
//! tinykv-ctl raw get KEY [--cf CF]
//! tinykv-ctl raw delete KEY [--cf CF]
//! tinykv-ctl raw scan [START] [--limit N] [--cf CF]
//! tinykv-ctl txn put KEY VALUE [KEY VALUE ...] [--start-ts TS] [--commit-ts TS] [--ttl MS]
//! tinykv-ctl txn prewrite KEY VALUE [KEY VALUE ...] [--start-ts TS] [--ttl MS]
//! tinykv-ctl txn commit KEY [KEY ...] --start-ts TS [--commit-ts TS]
//! tinykv-ctl txn get KEY [--ts TS]
//! tinykv-ctl txn scan [START] [--limit N] [--ts TS]
//! tinykv-ctl txn status KEY --start-ts TS [--now TS]
//! tinykv-ctl txn rollback KEY [KEY ...] --start-ts TS
//! tinykv-ctl txn resolve --start-ts TS [--commit-ts TS]
//! ```
//!
//! `txn put` is a whole Percolator transaction: a prewrite of every pair
//! (the first key is the primary), then a commit. Timestamps come from a
//! local clock in the timestamp layout of `tinykv_transaction::ts`
//! (milliseconds, then an 18-bit counter filled from the sub-millisecond
//! clock), unless given; a cluster will hand them out from the
//! scheduler's timestamp oracle instead.
//!
//! `--addr` is `HOST:PORT` (default `127.0.0.1:20160`) or
//! `http://HOST:PORT`; tinykv-server speaks plain gRPC, so `https://` is
//! refused. Keys and values are taken as UTF-8 text, or as hex with
//! `--hex`. Output shows printable bytes as text and escapes the rest
//! (`\x00`).
//!
//! In a cluster, a store that is not the leader of the region answers with
//! a region error that names the leader's address. tinykv-ctl then prints
//! a `note:` line to stderr and sends the same request once more, to the
//! leader (and the rest of the command's requests too); if that one fails,
//! the command fails.
//!
//! The exit status is 0 on success (a missing key is a success: it prints
//! `(not found)`), 1 when the server reports an error or cannot be reached,
//! 2 on a bad command line (an unknown flag, a malformed `--addr`, a key
//! without its value, bad hex, a commit timestamp not above the start
//! timestamp): then nothing is sent.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    Action, BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest,
    CheckTxnStatusResponse, CommitRequest, CommitResponse, GetRequest, GetResponse, KeyError,
    PrewriteRequest, PrewriteResponse, RawDeleteRequest, RawDeleteResponse, RawGetRequest,
    RawGetResponse, RawPutRequest, RawPutResponse, RawScanRequest, RawScanResponse,
    ResolveLockRequest, ResolveLockResponse, ScanRequest, ScanResponse,
};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_transaction::requests::{self, PrewriteBuilder};
use tinykv_transaction::ts;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// Command-line client for a TinyKV server.
#[derive(Debug, Parser)]
#[command(name = "tinykv-ctl", version, about)]
struct Cli {
    /// The server address: HOST:PORT or http://HOST:PORT.
    #[arg(long, global = true, default_value = "127.0.0.1:20160", value_parser = parse_addr)]
    addr: Addr,

    /// Read keys and values on the command line as hex (e.g. `6b31`).
    #[arg(long, global = true)]
    hex: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The raw (non-transactional) API.
    #[command(subcommand)]
    Raw(RawCommand),
    /// The transactional API (Percolator).
    #[command(subcommand)]
    Txn(TxnCommand),
}

#[derive(Debug, Subcommand)]
enum TxnCommand {
    /// Write KEY VALUE pairs in one transaction (prewrite, then commit).
    Put {
        /// KEY VALUE [KEY VALUE ...]; the first key is the primary.
        #[arg(required = true, num_args = 2.., value_names = ["KEY", "VALUE"])]
        pairs: Vec<String>,
        /// The start timestamp (default: the local clock).
        #[arg(long)]
        start_ts: Option<u64>,
        /// The commit timestamp (default: the local clock after the prewrite).
        #[arg(long)]
        commit_ts: Option<u64>,
        /// How long the locks live if the commit never comes, in ms.
        #[arg(long, default_value_t = requests::DEFAULT_TTL_MS)]
        ttl: u64,
    },
    /// First phase only: lock and stage KEY VALUE pairs (the first key is
    /// the primary) and leave them locked.
    Prewrite {
        #[arg(required = true, num_args = 2.., value_names = ["KEY", "VALUE"])]
        pairs: Vec<String>,
        /// The start timestamp (default: the local clock).
        #[arg(long)]
        start_ts: Option<u64>,
        /// How long the locks live, in ms.
        #[arg(long, default_value_t = requests::DEFAULT_TTL_MS)]
        ttl: u64,
    },
    /// Second phase only: commit the keys of the transaction started at
    /// START_TS.
    Commit {
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long)]
        start_ts: u64,
        /// The commit timestamp (default: the local clock).
        #[arg(long)]
        commit_ts: Option<u64>,
    },
    /// Print the value of KEY as of a timestamp, or `(not found)`.
    Get {
        key: String,
        /// Read as of this timestamp (default: the local clock).
        #[arg(long)]
        ts: Option<u64>,
    },
    /// Print up to LIMIT keys >= START as of a timestamp, in key order.
    Scan {
        /// The first key to include (default: the very first key).
        #[arg(default_value = "")]
        start: String,
        /// How many pairs at most (0 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Read as of this timestamp (default: the local clock).
        #[arg(long)]
        ts: Option<u64>,
    },
    /// Tell whether the transaction started at START_TS with primary KEY
    /// is locked, committed or rolled back (an expired lock is rolled back).
    Status {
        /// The transaction's primary key.
        key: String,
        #[arg(long)]
        start_ts: u64,
        /// The time to check the lock's TTL against (default: the local clock).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Roll back the transaction started at START_TS on the given keys.
    Rollback {
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long)]
        start_ts: u64,
    },
    /// Commit (with --commit-ts) or roll back every lock of the transaction
    /// started at START_TS.
    Resolve {
        #[arg(long)]
        start_ts: u64,
        #[arg(long, default_value_t = 0)]
        commit_ts: u64,
    },
}

#[derive(Debug, Subcommand)]
enum RawCommand {
    /// Set KEY to VALUE.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        cf: CfArg,
    },
    /// Print the value of KEY, or `(not found)`.
    Get {
        key: String,
        #[command(flatten)]
        cf: CfArg,
    },
    /// Remove KEY (succeeds when KEY is missing).
    Delete {
        key: String,
        #[command(flatten)]
        cf: CfArg,
    },
    /// Print up to LIMIT pairs with keys >= START, in key order.
    Scan {
        /// The first key to include (default: the very first key).
        #[arg(default_value = "")]
        start: String,
        /// How many pairs at most (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        cf: CfArg,
    },
}

#[derive(Debug, Args)]
struct CfArg {
    /// The column family: default, lock or write.
    #[arg(long, default_value = "default")]
    cf: String,
}

/// A server address, checked: `HOST:PORT` with a host and a port from 1 to
/// 65535.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Addr {
    /// `HOST:PORT` (an IPv6 host in brackets).
    host_port: String,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host_port)
    }
}

/// `--addr` (and a leader address a store names): `HOST:PORT`, or
/// `http://HOST:PORT` with an optional `/` at the end; says what is wrong
/// with anything else.
fn parse_addr(text: &str) -> Result<Addr, String> {
    let host_port = match text.split_once("://") {
        None => text,
        Some(("http", rest)) => rest.strip_suffix('/').unwrap_or(rest),
        Some(("https", _)) => {
            return Err("tinykv-server speaks plain gRPC, without TLS: \
                        use HOST:PORT or http://HOST:PORT"
                .into());
        }
        Some((scheme, _)) => {
            return Err(format!("unknown scheme {scheme}://: use HOST:PORT or http://HOST:PORT"));
        }
    };
    if host_port.contains('/') {
        return Err(format!("{host_port:?} has a path: expected HOST:PORT, e.g. 127.0.0.1:20160"));
    }
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return Err(format!("no port: expected HOST:PORT, e.g. {host_port}:20160"));
    };
    if host.is_empty() {
        return Err(format!("no host before the port: expected HOST:PORT, e.g. 127.0.0.1:{port}"));
    }
    if port.is_empty() {
        return Err(format!("no port after the colon: expected HOST:PORT, e.g. {host}:20160"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 address goes in brackets: e.g. [::1]:20160".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    let port = port.parse::<u64>().unwrap_or(u64::MAX);
    if !(1..=65535).contains(&port) {
        return Err(format!("port {port} is out of range: ports go from 1 to 65535"));
    }
    let host_port = format!("{host}:{port}");
    if Endpoint::from_shared(format!("http://{host_port}")).is_err() {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    Ok(Addr { host_port })
}

/// Why a command failed; it decides the exit status.
#[derive(Debug)]
enum Failure {
    /// The command line is wrong (exit 2); nothing was sent.
    Usage(String),
    /// The server answered with an error, or could not be reached (exit 1).
    Request(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(Failure::Request(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    match failure {
        Failure::Usage(message) => {
            eprintln!("error: {message}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
        Failure::Request(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut ctl = Ctl::new(cli.addr)?;
    match cli.command {
        Command::Raw(command) => run_raw(&mut ctl, command, cli.hex).await,
        Command::Txn(command) => run_txn(&mut ctl, command, cli.hex).await,
    }
}

/// A request tinykv-ctl sends: the client method that sends it, and where
/// its answer keeps the region error.
trait Rpc: Clone {
    type Response;

    async fn send(
        self,
        client: TinyKvClient<Channel>,
    ) -> Result<tonic::Response<Self::Response>, Status>;

    fn region_error(response: &Self::Response) -> Option<&errorpb::Error>;
}

macro_rules! rpc {
    ($($request:ty => $response:ty, $method:ident;)*) => {$(
        impl Rpc for $request {
            type Response = $response;

            async fn send(
                self,
                mut client: TinyKvClient<Channel>,
            ) -> Result<tonic::Response<$response>, Status> {
                client.$method(self).await
            }

            fn region_error(response: &$response) -> Option<&errorpb::Error> {
                response.region_error.as_ref()
            }
        }
    )*};
}

rpc! {
    RawGetRequest => RawGetResponse, raw_get;
    RawPutRequest => RawPutResponse, raw_put;
    RawDeleteRequest => RawDeleteResponse, raw_delete;
    RawScanRequest => RawScanResponse, raw_scan;
    GetRequest => GetResponse, kv_get;
    ScanRequest => ScanResponse, kv_scan;
    PrewriteRequest => PrewriteResponse, kv_prewrite;
    CommitRequest => CommitResponse, kv_commit;
    CheckTxnStatusRequest => CheckTxnStatusResponse, kv_check_txn_status;
    BatchRollbackRequest => BatchRollbackResponse, kv_batch_rollback;
    ResolveLockRequest => ResolveLockResponse, kv_resolve_lock;
}

/// The store tinykv-ctl talks to. Every request goes through
/// [`Ctl::send`], which follows a "not the leader" answer once.
struct Ctl {
    /// Where requests go: `--addr`, or the leader's address once a store
    /// has named it.
    addr: Addr,
    /// A channel to `addr` that connects on its first request, so that a
    /// bad command line is reported before anything is sent.
    client: TinyKvClient<Channel>,
}

impl Ctl {
    fn new(addr: Addr) -> Result<Ctl, Failure> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Failure::Request(format!("cannot connect to {addr}: {e}")))?
            // Small requests and answers: do not let Nagle's algorithm hold
            // them back for a delayed ACK (tonic's default, said here).
            .tcp_nodelay(true);
        let client = TinyKvClient::new(endpoint.connect_lazy());
        Ok(Ctl { addr, client })
    }

    /// Sends `request`. When the store answers that it is not the leader
    /// of the region and names the leader's address (`not_leader` in the
    /// region error, judged by its fields, never its text), says so on
    /// stderr and sends the same request once more, to the leader; that
    /// answer is the answer, whatever it is. Later requests go to the
    /// leader directly.
    async fn send<R: Rpc>(&mut self, request: R) -> Result<R::Response, Failure> {
        let response = self.send_here(request.clone()).await?;
        let not_leader = R::region_error(&response)
            .and_then(|e| e.not_leader.as_ref())
            .filter(|not_leader| !not_leader.leader_address.is_empty());
        let Some(not_leader) = not_leader else {
            return Ok(response);
        };
        let leader = parse_addr(&not_leader.leader_address).map_err(|e| {
            Failure::Request(format!(
                "store at {} is not the leader of region {} and names the leader's address \
                 {:?}, which tinykv-ctl cannot use: {e}",
                self.addr, not_leader.region_id, not_leader.leader_address
            ))
        })?;
        let store = match &not_leader.leader {
            Some(peer) => format!(" (store {})", peer.store_id),
            None => String::new(),
        };
        eprintln!(
            "note: store at {} is not the leader of region {}; retrying at the leader {leader}{store}",
            self.addr, not_leader.region_id
        );
        *self = Ctl::new(leader)?;
        self.send_here(request).await
    }

    /// Sends `request` to `self.addr`, with no redirect.
    async fn send_here<R: Rpc>(&self, request: R) -> Result<R::Response, Failure> {
        match request.send(self.client.clone()).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(Failure::Request(self.describe_status(&status))),
        }
    }

    /// A failed call as one line: why the connection failed, or the status
    /// the server answered.
    fn describe_status(&self, status: &Status) -> String {
        let mut causes: Vec<String> = Vec::new();
        let mut connect = false;
        let mut source = std::error::Error::source(status);
        while let Some(e) = source {
            connect |= e.is::<tonic::ConnectError>();
            let text = e.to_string();
            if !causes.iter().any(|c| c.contains(&text)) {
                causes.push(text);
            }
            source = e.source();
        }
        if connect {
            return format!(
                "cannot connect to {}: {} (is tinykv-server running there? `make run` starts one)",
                self.addr,
                causes.join(": ")
            );
        }
        format!("server at {} answered {:?}: {}", self.addr, status.code(), status.message())
    }
}

async fn run_raw(ctl: &mut Ctl, command: RawCommand, hex: bool) -> Result<(), Failure> {
    let parse = |text: &str| parse_bytes(text, hex);
    match command {
        RawCommand::Put { key, value, cf } => {
            let req = RawPutRequest {
                key: parse(&key)?,
                value: parse(&value)?,
                cf: cf.cf,
                ..Default::default()
            };
            let resp = ctl.send(req).await?;
            check(&resp.error, resp.region_error.as_ref())?;
            println!("OK");
        }
        RawCommand::Get { key, cf } => {
            let req = RawGetRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = ctl.send(req).await?;
            check(&resp.error, resp.region_error.as_ref())?;
            if resp.not_found {
                println!("(not found)");
            } else {
                println!("{}", show(&resp.value));
            }
        }
        RawCommand::Delete { key, cf } => {
            let req = RawDeleteRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = ctl.send(req).await?;
            check(&resp.error, resp.region_error.as_ref())?;
            println!("OK");
        }
        RawCommand::Scan { start, limit, cf } => {
            let req = RawScanRequest {
                start_key: parse(&start)?,
                limit,
                cf: cf.cf,
                ..Default::default()
            };
            let resp = ctl.send(req).await?;
            check(&resp.error, resp.region_error.as_ref())?;
            for pair in &resp.kvs {
                println!("{} => {}", show(&pair.key), show(&pair.value));
            }
            let n = resp.kvs.len();
            println!("({n} pair{})", if n == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

async fn run_txn(ctl: &mut Ctl, command: TxnCommand, hex: bool) -> Result<(), Failure> {
    let parse = |text: &str| parse_bytes(text, hex);
    let parse_all = |keys: &[String]| keys.iter().map(|k| parse(k)).collect::<Result<Vec<_>, _>>();
    match command {
        TxnCommand::Put { pairs, start_ts, commit_ts, ttl } => {
            let pairs = parse_pairs("txn put", &pairs, hex)?;
            let start = start_ts.unwrap_or_else(local_ts);
            if let Some(commit) = commit_ts {
                check_commit_ts(commit, start, start_ts.is_none())?;
            } else {
                check_room_for_commit(start)?;
            }
            prewrite(ctl, &pairs, start, ttl).await?;
            let commit = commit_ts.unwrap_or_else(|| local_ts().max(start + 1));
            let keys: Vec<Vec<u8>> = pairs.into_iter().map(|(k, _)| k).collect();
            commit_keys(ctl, &keys, start, commit).await.map_err(|failure| match failure {
                Failure::Request(e) => Failure::Request(format!(
                    "{e} (the transaction started at {start} may still hold locks; \
                     `txn resolve --start-ts {start}` rolls it back)"
                )),
                usage @ Failure::Usage(_) => usage,
            })?;
            println!("OK: started at {start}, committed at {commit}");
        }
        TxnCommand::Prewrite { pairs, start_ts, ttl } => {
            let pairs = parse_pairs("txn prewrite", &pairs, hex)?;
            let start = start_ts.unwrap_or_else(local_ts);
            prewrite(ctl, &pairs, start, ttl).await?;
            println!("OK: prewritten at {start}; now `txn commit` or `txn rollback` it");
        }
        TxnCommand::Commit { keys, start_ts, commit_ts } => {
            let keys = parse_all(&keys)?;
            let commit = match commit_ts {
                Some(commit) => check_commit_ts(commit, start_ts, false).map(|()| commit)?,
                None => check_room_for_commit(start_ts).map(|()| local_ts().max(start_ts + 1))?,
            };
            commit_keys(ctl, &keys, start_ts, commit).await?;
            println!("OK: committed the transaction started at {start_ts} at {commit}");
        }
        TxnCommand::Get { key, ts } => {
            let key = parse(&key)?;
            let ts = ts.unwrap_or_else(local_ts);
            let resp = ctl.send(requests::get(&key, ts)).await?;
            check_region(resp.region_error.as_ref())?;
            if let Some(e) = &resp.error {
                return Err(Failure::Request(describe_key_error(e)));
            }
            if resp.not_found {
                println!("(not found)");
            } else {
                println!("{}", show(&resp.value));
            }
        }
        TxnCommand::Scan { start, limit, ts } => {
            let start = parse(&start)?;
            let ts = ts.unwrap_or_else(local_ts);
            let resp = ctl.send(requests::scan(&start, limit, ts)).await?;
            check_region(resp.region_error.as_ref())?;
            for pair in &resp.pairs {
                match &pair.error {
                    Some(e) => println!("{} => ({})", show(&pair.key), describe_key_error(e)),
                    None => println!("{} => {}", show(&pair.key), show(&pair.value)),
                }
            }
            let n = resp.pairs.len();
            println!("({n} pair{} as of {ts})", if n == 1 { "" } else { "s" });
        }
        TxnCommand::Status { key, start_ts, now } => {
            let key = parse(&key)?;
            let now = now.unwrap_or_else(local_ts);
            let resp = ctl.send(requests::check_txn_status(&key, start_ts, now)).await?;
            check_region(resp.region_error.as_ref())?;
            let state = if resp.lock_ttl > 0 {
                format!("locked (TTL {} ms, not expired at {now})", resp.lock_ttl)
            } else if resp.commit_version > 0 {
                format!("committed at {}", resp.commit_version)
            } else {
                "rolled back".to_string()
            };
            let action = match resp.action() {
                Action::NoAction => "",
                Action::TtlExpireRollback => " (its lock had expired: rolled back just now)",
                Action::LockNotExistRollback => {
                    " (it had no lock and no write: rolled back just now)"
                }
            };
            println!("transaction {start_ts}: {state}{action}");
        }
        TxnCommand::Rollback { keys, start_ts } => {
            let keys = parse_all(&keys)?;
            let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let resp = ctl.send(requests::batch_rollback(start_ts, &key_refs)).await?;
            check_region(resp.region_error.as_ref())?;
            if let Some(e) = &resp.error {
                return Err(Failure::Request(describe_key_error(e)));
            }
            println!("OK: rolled back the transaction started at {start_ts}");
        }
        TxnCommand::Resolve { start_ts, commit_ts } => {
            if commit_ts != 0 {
                check_commit_ts(commit_ts, start_ts, false)?;
            }
            let resp = ctl.send(requests::resolve_lock(start_ts, commit_ts)).await?;
            check_region(resp.region_error.as_ref())?;
            if let Some(e) = &resp.error {
                return Err(Failure::Request(describe_key_error(e)));
            }
            if commit_ts == 0 {
                println!("OK: rolled back every lock of the transaction started at {start_ts}");
            } else {
                println!(
                    "OK: committed every lock of the transaction started at {start_ts} at {commit_ts}"
                );
            }
        }
    }
    Ok(())
}

/// A key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// The KEY VALUE words of `command` as byte pairs.
fn parse_pairs(command: &str, words: &[String], hex: bool) -> Result<Vec<Pair>, Failure> {
    if let [.., last] = words
        && !words.len().is_multiple_of(2)
    {
        return Err(Failure::Usage(format!(
            "{command} takes KEY VALUE pairs, but got {} words: the last key, {last:?}, has no value",
            words.len()
        )));
    }
    words.chunks(2).map(|kv| Ok((parse_bytes(&kv[0], hex)?, parse_bytes(&kv[1], hex)?))).collect()
}

/// A commit timestamp must be above the start timestamp (`start_ts` is
/// from the local clock when `start_from_clock`).
fn check_commit_ts(commit_ts: u64, start_ts: u64, start_from_clock: bool) -> Result<(), Failure> {
    if commit_ts > start_ts {
        return Ok(());
    }
    Err(Failure::Usage(if start_from_clock {
        format!(
            "--commit-ts {commit_ts} is not above the start timestamp, {start_ts} from the \
             local clock: give a larger --commit-ts, or --start-ts too"
        )
    } else {
        format!("--commit-ts {commit_ts} is not above --start-ts {start_ts}")
    }))
}

/// There must be a commit timestamp above `start_ts` for the local clock
/// to pick.
fn check_room_for_commit(start_ts: u64) -> Result<(), Failure> {
    if start_ts < u64::MAX {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "--start-ts {start_ts} leaves no commit timestamp above it: give a smaller one"
    )))
}

/// Prewrites `pairs` as puts at `start`; the first key is the primary.
async fn prewrite(ctl: &mut Ctl, pairs: &[Pair], start: u64, ttl: u64) -> Result<(), Failure> {
    let mut req = PrewriteBuilder::new(&pairs[0].0, start).ttl(ttl);
    for (key, value) in pairs {
        req = req.put(key, value);
    }
    let resp = ctl.send(req.build()).await?;
    check_region(resp.region_error.as_ref())?;
    if resp.errors.is_empty() {
        return Ok(());
    }
    let errors: Vec<String> = resp.errors.iter().map(describe_key_error).collect();
    Err(Failure::Request(format!(
        "prewrite at {start} failed, nothing was written:\n  {}",
        errors.join("\n  ")
    )))
}

/// Commits `keys` of the transaction started at `start` at `commit`.
async fn commit_keys(
    ctl: &mut Ctl,
    keys: &[Vec<u8>],
    start: u64,
    commit: u64,
) -> Result<(), Failure> {
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let resp = ctl.send(requests::commit(start, commit, &key_refs)).await?;
    check_region(resp.region_error.as_ref())?;
    match &resp.error {
        Some(e) => {
            Err(Failure::Request(format!("commit at {commit} failed: {}", describe_key_error(e))))
        }
        None => Ok(()),
    }
}

/// A timestamp from the local clock: milliseconds since the Unix epoch,
/// then the sub-millisecond nanoseconds / 4 as the logical part (below
/// 2^18), so two calls in one process or two processes rarely meet.
fn local_ts() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    let millis = u64::try_from(now.as_millis()).expect("milliseconds fit in u64");
    ts::compose(millis, u64::from(now.subsec_nanos() % 1_000_000 / 4))
}

/// A key error as one line a person can act on.
fn describe_key_error(e: &KeyError) -> String {
    if let Some(lock) = &e.locked {
        return format!(
            "key {} is locked by the transaction started at {} (primary {}, TTL {} ms); \
             `txn status {} --start-ts {}` tells its state",
            show(&lock.key),
            lock.lock_version,
            show(&lock.primary_lock),
            lock.lock_ttl,
            show(&lock.primary_lock),
            lock.lock_version
        );
    }
    if let Some(c) = &e.conflict {
        if c.conflict_ts == c.start_ts {
            return format!(
                "write conflict on key {}: the transaction started at {} was rolled back there",
                show(&c.key),
                c.start_ts
            );
        }
        return format!(
            "write conflict on key {}: a transaction committed it at {}, after this one started at {}",
            show(&c.key),
            c.conflict_ts,
            c.start_ts
        );
    }
    if !e.retryable.is_empty() {
        return format!("retryable: {}", e.retryable);
    }
    if !e.abort.is_empty() {
        return format!("aborted: {}", e.abort);
    }
    "an empty key error".to_string()
}

/// A region error as a failure.
fn check_region(error: Option<&errorpb::Error>) -> Result<(), Failure> {
    match error {
        None => Ok(()),
        Some(e) if !e.message.is_empty() => Err(Failure::Request(format!("server: {}", e.message))),
        Some(_) => Err(Failure::Request(
            "server: region error (the request reached the wrong region or peer)".into(),
        )),
    }
}

/// Turns a raw response's error fields into a failure.
fn check(error: &str, region_error: Option<&errorpb::Error>) -> Result<(), Failure> {
    if !error.is_empty() {
        return Err(Failure::Request(format!("server: {error}")));
    }
    check_region(region_error)
}

/// The bytes of a command-line argument: its UTF-8 text, or hex.
fn parse_bytes(text: &str, hex: bool) -> Result<Vec<u8>, Failure> {
    if !hex {
        return Ok(text.as_bytes().to_vec());
    }
    let not_hex = |why: &str| Failure::Usage(format!("{text:?} is not hex (--hex): {why}"));
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_hex("hex digits are 0-9, a-f and A-F"));
    }
    if !text.len().is_multiple_of(2) {
        return Err(not_hex("odd number of digits"));
    }
    Ok((0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("two hex digits"))
        .collect())
}

/// Printable ASCII as is, everything else escaped.
fn show(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_arguments() {
        assert_eq!(parse_bytes("6b31", true).unwrap(), b"k1");
        assert_eq!(parse_bytes("k1", false).unwrap(), b"k1");
        assert!(parse_bytes("6b3", true).is_err());
        assert!(parse_bytes("zz", true).is_err());
    }

    #[test]
    fn addresses() {
        let ok = |text: &str| parse_addr(text).map(|a| a.to_string());
        assert_eq!(ok("127.0.0.1:20160"), Ok("127.0.0.1:20160".into()));
        assert_eq!(ok("http://localhost:20160"), Ok("localhost:20160".into()));
        assert_eq!(ok("http://localhost:20160/"), Ok("localhost:20160".into()));
        assert_eq!(ok("[::1]:20160"), Ok("[::1]:20160".into()));
        for bad in
            ["localhost", "h:", ":1", "h:0", "h:65536", "h:x", "::1:1", "https://h:1", "h:1/p"]
        {
            assert!(parse_addr(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn shows_escaped_bytes() {
        assert_eq!(show(b"ab\x00"), "ab\\x00");
    }
}
