//! `tinykv-ctl`: talk to a TinyKV server, or a whole cluster, from the
//! shell.
//!
//! ```text
//! tinykv-ctl [--addr HOST:PORT | --scheduler HOST:PORT] raw put KEY VALUE [--cf CF]
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
//! tinykv-ctl --scheduler HOST:PORT cluster stores
//! tinykv-ctl --scheduler HOST:PORT cluster regions [--limit N]
//! tinykv-ctl --scheduler HOST:PORT cluster region KEY
//! tinykv-ctl --scheduler HOST:PORT cluster tso
//! tinykv-ctl --scheduler HOST:PORT cluster operators [--running]
//! tinykv-ctl --scheduler HOST:PORT cluster operator REGION_ID
//! tinykv-ctl --scheduler HOST:PORT cluster add-peer|remove-peer|transfer-leader REGION_ID STORE_ID [--wait]
//! tinykv-ctl --scheduler HOST:PORT cluster split REGION_ID KEY [--wait]
//! ```
//!
//! # One store: `--addr`
//!
//! `txn put` is a whole Percolator transaction: a prewrite of every pair
//! (the first key is the primary), then a commit. Timestamps come from a
//! local clock in the timestamp layout of `tinykv_transaction::ts`
//! (milliseconds, then an 18-bit counter filled from the sub-millisecond
//! clock), unless given.
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
//! # A cluster: `--scheduler`
//!
//! With `--scheduler HOST:PORT` (the `tinykv-scheduler` of a cluster whose
//! stores joined with `tinykv-server --scheduler`), tinykv-ctl talks to
//! the whole cluster instead of one store (`--addr` given too is a
//! command-line mistake: one or the other). Every request goes to the
//! leader of its key's region, which tinykv-ctl finds through the
//! scheduler and corrects from the stores' region errors, retrying a few
//! times ([`router`] says how). A scan goes region by region; a
//! transaction's prewrite and commit send one request per region, the
//! primary key's region first. Timestamps come from the scheduler's
//! timestamp oracle instead of the local clock. The `cluster` commands
//! ([`cluster`]) show the stores, the regions, a timestamp and a region's
//! operator, and start operators by hand (add or remove a peer, move a
//! leadership, split a region at a key).
//!
//! A prewrite that fails in one region after others took their locks
//! rolls the whole transaction back (a prewrite never leaves half a
//! transaction locked); a commit that fails after the primary's region
//! committed leaves a committed transaction, and the message says how to
//! commit the rest (`txn resolve`).
//!
//! # Exit status
//!
//! The exit status is 0 on success (a missing key is a success: it prints
//! `(not found)`), 1 when a server reports an error or cannot be reached,
//! 2 on a bad command line (an unknown flag, a malformed `--addr`, a key
//! without its value, bad hex, a commit timestamp not above the start
//! timestamp): then nothing is sent to a store.
//!
//! # Code map
//!
//! - main.rs: the command line and the `raw` and `txn` commands, written
//!   once over a [`client::Client`];
//! - [`client`]: one store or a cluster, behind the same operations;
//! - [`store`]: the requests ([`store::Rpc`]) and the one-store client;
//! - [`router`], [`region_cache`], [`scheduler`]: the cluster client;
//! - [`cluster`]: the `cluster` commands;
//! - [`addr`]: `HOST:PORT` on the command line.
#![forbid(unsafe_code)]

mod addr;
mod client;
mod cluster;
mod region_cache;
mod router;
mod scheduler;
mod store;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    Action, BatchRollbackResponse, CommitResponse, KeyError, KvPair, PrewriteResponse,
    RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest, ResolveLockResponse,
};
use tinykv_transaction::requests::{self, PrewriteBuilder};
use tinykv_transaction::ts;

use crate::addr::{Addr, parse_addr, parse_scheduler_addr};
use crate::client::Client;
use crate::cluster::ClusterCommand;
use crate::router::{KeySpace, Router};
use crate::scheduler::SchedulerClient;
use crate::store::Ctl;

/// Command-line client for a TinyKV server or cluster.
#[derive(Debug, Parser)]
#[command(name = "tinykv-ctl", version, about)]
struct Cli {
    /// The store's address: HOST:PORT or http://HOST:PORT (without
    /// --scheduler).
    #[arg(long, global = true, default_value = "127.0.0.1:20160", value_parser = parse_addr)]
    addr: Addr,

    /// Talk to the cluster of the tinykv-scheduler at HOST:PORT: route
    /// every request to its key's region leader, and take timestamps from
    /// the scheduler. Not with --addr.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        value_parser = parse_scheduler_addr,
        conflicts_with = "addr"
    )]
    scheduler: Option<Addr>,

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
    /// What the scheduler knows about the cluster, and operators started
    /// by hand (needs --scheduler).
    #[command(subcommand)]
    Cluster(ClusterCommand),
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
    let Cli { addr, scheduler, hex, command } = cli;
    match command {
        Command::Raw(command) => run_raw(&mut client(addr, scheduler)?, command, hex).await,
        Command::Txn(command) => run_txn(&mut client(addr, scheduler)?, command, hex).await,
        Command::Cluster(command) => {
            let Some(scheduler) = scheduler else {
                return Err(Failure::Usage(
                    "`cluster` commands ask the cluster's scheduler: give --scheduler HOST:PORT \
                     (e.g. --scheduler 127.0.0.1:2379)"
                        .into(),
                ));
            };
            cluster::run(&mut SchedulerClient::new(scheduler)?, command, hex).await
        }
    }
}

/// Where the `raw` and `txn` commands go: the cluster of `--scheduler`
/// if given, else the store at `--addr`. Nothing is sent yet.
fn client(addr: Addr, scheduler: Option<Addr>) -> Result<Client, Failure> {
    Ok(match scheduler {
        Some(scheduler) => Client::Cluster(Box::new(Router::new(scheduler)?)),
        None => Client::Store(Ctl::new(addr)?),
    })
}

async fn run_raw(client: &mut Client, command: RawCommand, hex: bool) -> Result<(), Failure> {
    let parse = |text: &str| parse_bytes(text, hex);
    match command {
        RawCommand::Put { key, value, cf } => {
            let req = RawPutRequest {
                key: parse(&key)?,
                value: parse(&value)?,
                cf: cf.cf,
                ..Default::default()
            };
            let resp = client.send_key("raw put", KeySpace::Raw, &req.key.clone(), req).await?;
            check(&resp.error, resp.region_error.as_ref())?;
            println!("OK");
        }
        RawCommand::Get { key, cf } => {
            let req = RawGetRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = client.send_key("raw get", KeySpace::Raw, &req.key.clone(), req).await?;
            check(&resp.error, resp.region_error.as_ref())?;
            if resp.not_found {
                println!("(not found)");
            } else {
                println!("{}", show(&resp.value));
            }
        }
        RawCommand::Delete { key, cf } => {
            let req = RawDeleteRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = client.send_key("raw delete", KeySpace::Raw, &req.key.clone(), req).await?;
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
            let parts = client.scan("raw scan", req).await?;
            for part in &parts {
                check(&part.error, part.region_error.as_ref())?;
            }
            print_pairs(parts.iter().flat_map(|p| &p.kvs), "");
        }
    }
    Ok(())
}

/// Prints `pairs` as `KEY => VALUE` (a pair's key error in parentheses
/// instead of its value), then how many, with `suffix` (e.g. ` as of 7`).
fn print_pairs<'a>(pairs: impl Iterator<Item = &'a KvPair>, suffix: &str) {
    let mut n = 0;
    for pair in pairs {
        match &pair.error {
            Some(e) => println!("{} => ({})", show(&pair.key), describe_key_error(e)),
            None => println!("{} => {}", show(&pair.key), show(&pair.value)),
        }
        n += 1;
    }
    println!("({n} pair{}{suffix})", if n == 1 { "" } else { "s" });
}

async fn run_txn(client: &mut Client, command: TxnCommand, hex: bool) -> Result<(), Failure> {
    let parse = |text: &str| parse_bytes(text, hex);
    let parse_all = |keys: &[String]| keys.iter().map(|k| parse(k)).collect::<Result<Vec<_>, _>>();
    match command {
        TxnCommand::Put { pairs, start_ts, commit_ts, ttl } => {
            let pairs = parse_pairs("txn put", &pairs, hex)?;
            let start = match start_ts {
                Some(start) => start,
                None => client.timestamp().await?,
            };
            if let Some(commit) = commit_ts {
                check_commit_ts(commit, start, start_ts.is_none().then(|| client.clock()))?;
            } else {
                check_room_for_commit(start)?;
            }
            prewrite(client, &pairs, start, ttl).await?;
            let commit = match commit_ts {
                Some(commit) => commit,
                None => client.timestamp().await?.max(start + 1),
            };
            let keys: Vec<Vec<u8>> = pairs.into_iter().map(|(k, _)| k).collect();
            commit_keys(client, &keys, start, commit).await.map_err(|e| match e {
                CommitError::Primary(Failure::Request(e)) => Failure::Request(format!(
                    "{e} (the transaction started at {start} may still hold locks; \
                     `txn resolve --start-ts {start}` rolls it back)"
                )),
                CommitError::Primary(usage @ Failure::Usage(_)) => usage,
                CommitError::Secondaries(failure) => failure,
            })?;
            println!("OK: started at {start}, committed at {commit}");
        }
        TxnCommand::Prewrite { pairs, start_ts, ttl } => {
            let pairs = parse_pairs("txn prewrite", &pairs, hex)?;
            let start = match start_ts {
                Some(start) => start,
                None => client.timestamp().await?,
            };
            prewrite(client, &pairs, start, ttl).await?;
            println!("OK: prewritten at {start}; now `txn commit` or `txn rollback` it");
        }
        TxnCommand::Commit { keys, start_ts, commit_ts } => {
            let keys = parse_all(&keys)?;
            let commit = match commit_ts {
                Some(commit) => check_commit_ts(commit, start_ts, None).map(|()| commit)?,
                None => {
                    check_room_for_commit(start_ts)?;
                    client.timestamp().await?.max(start_ts + 1)
                }
            };
            commit_keys(client, &keys, start_ts, commit).await.map_err(CommitError::failure)?;
            println!("OK: committed the transaction started at {start_ts} at {commit}");
        }
        TxnCommand::Get { key, ts } => {
            let key = parse(&key)?;
            let ts = match ts {
                Some(ts) => ts,
                None => client.timestamp().await?,
            };
            let resp =
                client.send_key("txn get", KeySpace::Txn, &key, requests::get(&key, ts)).await?;
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
            let ts = match ts {
                Some(ts) => ts,
                None => client.timestamp().await?,
            };
            let parts = client.scan("txn scan", requests::scan(&start, limit, ts)).await?;
            for part in &parts {
                check_region(part.region_error.as_ref())?;
            }
            print_pairs(parts.iter().flat_map(|p| &p.pairs), &format!(" as of {ts}"));
        }
        TxnCommand::Status { key, start_ts, now } => {
            let key = parse(&key)?;
            let now = match now {
                Some(now) => now,
                None => client.timestamp().await?,
            };
            let req = requests::check_txn_status(&key, start_ts, now);
            let resp = client.send_key("txn status", KeySpace::Txn, &key, req).await?;
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
            rollback_keys(client, &keys, start_ts).await?;
            println!("OK: rolled back the transaction started at {start_ts}");
        }
        TxnCommand::Resolve { start_ts, commit_ts } => {
            if commit_ts != 0 {
                check_commit_ts(commit_ts, start_ts, None)?;
            }
            let req = requests::resolve_lock(start_ts, commit_ts);
            let failed = |r: &ResolveLockResponse| r.region_error.is_some() || r.error.is_some();
            let answers = client.every_region("txn resolve", req, failed).await?;
            for resp in &answers {
                check_region(resp.region_error.as_ref())?;
                if let Some(e) = &resp.error {
                    return Err(Failure::Request(describe_key_error(e)));
                }
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
/// from `clock` when it was not given: `Some("the local clock")`).
fn check_commit_ts(commit_ts: u64, start_ts: u64, clock: Option<&str>) -> Result<(), Failure> {
    if commit_ts > start_ts {
        return Ok(());
    }
    Err(Failure::Usage(match clock {
        Some(clock) => format!(
            "--commit-ts {commit_ts} is not above the start timestamp, {start_ts} from \
             {clock}: give a larger --commit-ts, or --start-ts too"
        ),
        None => format!("--commit-ts {commit_ts} is not above --start-ts {start_ts}"),
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

/// The keys at `indices` of `keys`, as slices.
fn keys_at<'a>(keys: &'a [Vec<u8>], indices: &[usize]) -> Vec<&'a [u8]> {
    indices.iter().map(|&i| keys[i].as_slice()).collect()
}

/// Prewrites `pairs` as puts at `start`; the first key is the primary. In
/// a cluster, one prewrite per region, the primary's first; if one fails
/// after others succeeded, the whole transaction is rolled back.
async fn prewrite(
    client: &mut Client,
    pairs: &[Pair],
    start: u64,
    ttl: u64,
) -> Result<(), Failure> {
    let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let make = |indices: &[usize]| {
        let mut req = PrewriteBuilder::new(&pairs[0].0, start).ttl(ttl);
        for &i in indices {
            req = req.put(&pairs[i].0, &pairs[i].1);
        }
        req.build()
    };
    let failed = |r: &PrewriteResponse| r.region_error.is_some() || !r.errors.is_empty();
    let sent = client.send_by_region("txn prewrite", KeySpace::Txn, &keys, make, failed).await;
    let prewritten = sent.parts.iter().filter(|(_, r)| !failed(r)).count();
    let failure = match (sent.parts.iter().find(|(_, r)| failed(r)), sent.failure) {
        (None, None) => return Ok(()),
        (Some((_, resp)), _) => match check_region(resp.region_error.as_ref()) {
            Err(failure) => failure,
            Ok(()) => {
                let errors: Vec<String> = resp.errors.iter().map(describe_key_error).collect();
                let nothing = if prewritten == 0 { ", nothing was written" } else { "" };
                Failure::Request(format!(
                    "prewrite at {start} failed{nothing}:\n  {}",
                    errors.join("\n  ")
                ))
            }
        },
        (None, Some(failure)) => failure,
    };
    if prewritten == 0 {
        return Err(failure);
    }
    // Other regions hold locks of this transaction: roll it all back, so
    // that a failed prewrite leaves nothing behind.
    let Failure::Request(why) = failure else { return Err(failure) };
    Err(Failure::Request(match rollback_keys(client, &keys, start).await {
        Ok(()) => format!(
            "{why}\nThe locks it had taken in other regions were rolled back: nothing was written."
        ),
        Err(e) => {
            let keys: Vec<String> = keys.iter().map(|k| show(k)).collect();
            format!(
                "{why}\nIt had taken locks in other regions, and rolling them back failed too \
                 ({}); `txn rollback {} --start-ts {start}` removes them.",
                failure_text(&e),
                keys.join(" ")
            )
        }
    }))
}

/// Why a commit failed: at the primary key's region (the transaction is
/// not committed), or after it (it is; some secondaries keep their locks).
#[derive(Debug)]
enum CommitError {
    Primary(Failure),
    Secondaries(Failure),
}

impl CommitError {
    fn failure(self) -> Failure {
        match self {
            CommitError::Primary(failure) | CommitError::Secondaries(failure) => failure,
        }
    }
}

/// Commits `keys` of the transaction started at `start` at `commit`. In a
/// cluster, one commit per region, the first key's (the primary's) first:
/// once it commits, the transaction is committed.
async fn commit_keys(
    client: &mut Client,
    keys: &[Vec<u8>],
    start: u64,
    commit: u64,
) -> Result<(), CommitError> {
    let make = |indices: &[usize]| requests::commit(start, commit, &keys_at(keys, indices));
    let failed = |r: &CommitResponse| r.region_error.is_some() || r.error.is_some();
    let sent = client.send_by_region("txn commit", KeySpace::Txn, keys, make, failed).await;
    let committed = |failure: Failure| {
        CommitError::Secondaries(Failure::Request(format!(
            "the transaction started at {start} is committed at {commit} (its primary key {} \
             is), but committing its keys in another region failed: {}; `txn resolve \
             --start-ts {start} --commit-ts {commit}` commits the rest",
            show(&keys[0]),
            failure_text(&failure)
        )))
    };
    for (n, (_, resp)) in sent.parts.iter().enumerate() {
        let failure = match (check_region(resp.region_error.as_ref()), &resp.error) {
            (Err(failure), _) => failure,
            (Ok(()), Some(e)) => {
                Failure::Request(format!("commit at {commit} failed: {}", describe_key_error(e)))
            }
            (Ok(()), None) => continue,
        };
        return Err(if n == 0 { CommitError::Primary(failure) } else { committed(failure) });
    }
    match sent.failure {
        None => Ok(()),
        Some(failure) if sent.parts.is_empty() => Err(CommitError::Primary(failure)),
        Some(failure) => Err(committed(failure)),
    }
}

/// Rolls back `keys` of the transaction started at `start` (in a
/// cluster, one request per region).
async fn rollback_keys(client: &mut Client, keys: &[Vec<u8>], start: u64) -> Result<(), Failure> {
    let make = |indices: &[usize]| requests::batch_rollback(start, &keys_at(keys, indices));
    let failed = |r: &BatchRollbackResponse| r.region_error.is_some() || r.error.is_some();
    let sent = client.send_by_region("txn rollback", KeySpace::Txn, keys, make, failed).await;
    for (_, resp) in &sent.parts {
        check_region(resp.region_error.as_ref())?;
        if let Some(e) = &resp.error {
            return Err(Failure::Request(describe_key_error(e)));
        }
    }
    sent.failure.map_or(Ok(()), Err)
}

/// The message of a failure.
fn failure_text(failure: &Failure) -> &str {
    match failure {
        Failure::Usage(text) | Failure::Request(text) => text,
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
    fn shows_escaped_bytes() {
        assert_eq!(show(b"ab\x00"), "ab\\x00");
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
