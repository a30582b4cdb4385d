//! `tinykv-ctl`: talk to a TinyKV server from the shell.
//!
//! ```text
//! tinykv-ctl [--addr 127.0.0.1:20160] raw put KEY VALUE [--cf CF]
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
//! Keys and values are taken as UTF-8 text, or as hex with `--hex`. Output
//! shows printable bytes as text and escapes the rest (`\x00`). The exit
//! status is 0 on success (a missing key is a success: it prints
//! `(not found)`), 1 when the server reports an error or cannot be reached,
//! 2 on a bad command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tinykv_proto::kvrpcpb::{
    Action, KeyError, RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest,
};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_transaction::requests::{self, PrewriteBuilder};
use tinykv_transaction::ts;
use tonic::transport::Channel;

/// Command-line client for a TinyKV server.
#[derive(Debug, Parser)]
#[command(name = "tinykv-ctl", version, about)]
struct Cli {
    /// The server address (HOST:PORT).
    #[arg(long, global = true, default_value = "127.0.0.1:20160")]
    addr: String,

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut client = connect(&cli.addr).await?;
    match cli.command {
        Command::Raw(command) => run_raw(&mut client, command, cli.hex).await,
        Command::Txn(command) => run_txn(&mut client, command, cli.hex).await,
    }
}

async fn run_raw(
    client: &mut TinyKvClient<Channel>,
    command: RawCommand,
    hex: bool,
) -> Result<(), String> {
    let parse = |text: &str| parse_bytes(text, hex);
    match command {
        RawCommand::Put { key, value, cf } => {
            let req = RawPutRequest {
                key: parse(&key)?,
                value: parse(&value)?,
                cf: cf.cf,
                ..Default::default()
            };
            let resp = client.raw_put(req).await.map_err(status_message)?.into_inner();
            check(&resp.error, resp.region_error.as_ref())?;
            println!("OK");
        }
        RawCommand::Get { key, cf } => {
            let req = RawGetRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = client.raw_get(req).await.map_err(status_message)?.into_inner();
            check(&resp.error, resp.region_error.as_ref())?;
            if resp.not_found {
                println!("(not found)");
            } else {
                println!("{}", show(&resp.value));
            }
        }
        RawCommand::Delete { key, cf } => {
            let req = RawDeleteRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = client.raw_delete(req).await.map_err(status_message)?.into_inner();
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
            let resp = client.raw_scan(req).await.map_err(status_message)?.into_inner();
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

async fn run_txn(
    client: &mut TinyKvClient<Channel>,
    command: TxnCommand,
    hex: bool,
) -> Result<(), String> {
    let parse = |text: &str| parse_bytes(text, hex);
    match command {
        TxnCommand::Put { pairs, start_ts, commit_ts, ttl } => {
            let pairs = parse_pairs(&pairs, hex)?;
            let start = start_ts.unwrap_or_else(local_ts);
            prewrite(client, &pairs, start, ttl).await?;
            let commit = commit_ts.unwrap_or_else(|| local_ts().max(start + 1));
            let keys: Vec<Vec<u8>> = pairs.into_iter().map(|(k, _)| k).collect();
            commit_keys(client, &keys, start, commit).await.map_err(|e| {
                format!(
                    "{e} (the transaction started at {start} may still hold locks; \
                     `txn resolve --start-ts {start}` rolls it back)"
                )
            })?;
            println!("OK: started at {start}, committed at {commit}");
        }
        TxnCommand::Prewrite { pairs, start_ts, ttl } => {
            let pairs = parse_pairs(&pairs, hex)?;
            let start = start_ts.unwrap_or_else(local_ts);
            prewrite(client, &pairs, start, ttl).await?;
            println!("OK: prewritten at {start}; now `txn commit` or `txn rollback` it");
        }
        TxnCommand::Commit { keys, start_ts, commit_ts } => {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| parse(k)).collect::<Result<_, _>>()?;
            let commit = commit_ts.unwrap_or_else(|| local_ts().max(start_ts + 1));
            commit_keys(client, &keys, start_ts, commit).await?;
            println!("OK: committed the transaction started at {start_ts} at {commit}");
        }
        TxnCommand::Get { key, ts } => {
            let ts = ts.unwrap_or_else(local_ts);
            let resp = client
                .kv_get(requests::get(&parse(&key)?, ts))
                .await
                .map_err(status_message)?
                .into_inner();
            check_region(resp.region_error.as_ref())?;
            if let Some(e) = &resp.error {
                return Err(describe_key_error(e));
            }
            if resp.not_found {
                println!("(not found)");
            } else {
                println!("{}", show(&resp.value));
            }
        }
        TxnCommand::Scan { start, limit, ts } => {
            let ts = ts.unwrap_or_else(local_ts);
            let resp = client
                .kv_scan(requests::scan(&parse(&start)?, limit, ts))
                .await
                .map_err(status_message)?
                .into_inner();
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
            let now = now.unwrap_or_else(local_ts);
            let req = requests::check_txn_status(&parse(&key)?, start_ts, now);
            let resp = client.kv_check_txn_status(req).await.map_err(status_message)?.into_inner();
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
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| parse(k)).collect::<Result<_, _>>()?;
            let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let resp = client
                .kv_batch_rollback(requests::batch_rollback(start_ts, &key_refs))
                .await
                .map_err(status_message)?
                .into_inner();
            check_region(resp.region_error.as_ref())?;
            if let Some(e) = &resp.error {
                return Err(describe_key_error(e));
            }
            println!("OK: rolled back the transaction started at {start_ts}");
        }
        TxnCommand::Resolve { start_ts, commit_ts } => {
            let resp = client
                .kv_resolve_lock(requests::resolve_lock(start_ts, commit_ts))
                .await
                .map_err(status_message)?
                .into_inner();
            check_region(resp.region_error.as_ref())?;
            if let Some(e) = &resp.error {
                return Err(describe_key_error(e));
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

/// KEY VALUE words as byte pairs.
fn parse_pairs(words: &[String], hex: bool) -> Result<Vec<Pair>, String> {
    if !words.len().is_multiple_of(2) {
        return Err(format!("expected KEY VALUE pairs, got {} words", words.len()));
    }
    words.chunks(2).map(|kv| Ok((parse_bytes(&kv[0], hex)?, parse_bytes(&kv[1], hex)?))).collect()
}

/// Prewrites `pairs` as puts at `start`; the first key is the primary.
async fn prewrite(
    client: &mut TinyKvClient<Channel>,
    pairs: &[Pair],
    start: u64,
    ttl: u64,
) -> Result<(), String> {
    let mut req = PrewriteBuilder::new(&pairs[0].0, start).ttl(ttl);
    for (key, value) in pairs {
        req = req.put(key, value);
    }
    let resp = client.kv_prewrite(req.build()).await.map_err(status_message)?.into_inner();
    check_region(resp.region_error.as_ref())?;
    if resp.errors.is_empty() {
        return Ok(());
    }
    let errors: Vec<String> = resp.errors.iter().map(describe_key_error).collect();
    Err(format!("prewrite at {start} failed, nothing was written:\n  {}", errors.join("\n  ")))
}

/// Commits `keys` of the transaction started at `start` at `commit`.
async fn commit_keys(
    client: &mut TinyKvClient<Channel>,
    keys: &[Vec<u8>],
    start: u64,
    commit: u64,
) -> Result<(), String> {
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let req = requests::commit(start, commit, &key_refs);
    let resp = client.kv_commit(req).await.map_err(status_message)?.into_inner();
    check_region(resp.region_error.as_ref())?;
    match &resp.error {
        Some(e) => Err(format!("commit at {commit} failed: {}", describe_key_error(e))),
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

/// A region error as an `Err`.
fn check_region(error: Option<&tinykv_proto::errorpb::Error>) -> Result<(), String> {
    match error {
        None => Ok(()),
        Some(e) if !e.message.is_empty() => Err(format!("server: {}", e.message)),
        Some(_) => {
            Err("server: region error (the request reached the wrong region or peer)".into())
        }
    }
}

async fn connect(addr: &str) -> Result<TinyKvClient<Channel>, String> {
    let endpoint = format!("http://{addr}");
    TinyKvClient::connect(endpoint).await.map_err(|e| {
        format!(
            "cannot connect to {addr}: {e} (is tinykv-server running there? `make run` starts one)"
        )
    })
}

/// Turns a raw response's error fields into an `Err`.
fn check(error: &str, region_error: Option<&tinykv_proto::errorpb::Error>) -> Result<(), String> {
    if !error.is_empty() {
        return Err(format!("server: {error}"));
    }
    check_region(region_error)
}

fn status_message(status: tonic::Status) -> String {
    format!("server answered {:?}: {}", status.code(), status.message())
}

/// The bytes of a command-line argument: its UTF-8 text, or hex.
fn parse_bytes(text: &str, hex: bool) -> Result<Vec<u8>, String> {
    if !hex {
        return Ok(text.as_bytes().to_vec());
    }
    if !text.len().is_multiple_of(2) {
        return Err(format!("{text:?} is not hex: odd number of digits"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("{text:?} is not hex"))
        })
        .collect()
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
}
