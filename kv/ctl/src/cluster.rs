//! `tinykv-ctl --scheduler ADDR cluster ...`: what the scheduler knows
//! about the cluster, as plain aligned tables, and operators started by
//! hand.
//!
//! ```text
//! $ tinykv-ctl --scheduler 127.0.0.1:2379 cluster stores
//! ID  ADDRESS          STATE  REGIONS  LEADERS  SIZE   HEARTBEAT
//! 1   127.0.0.1:20161  Up     2        1        12 KB  1s ago
//! $ tinykv-ctl --scheduler 127.0.0.1:2379 cluster regions
//! ID  START       END         CONF_VER  VERSION  PEERS(id@store)  LEADER  SIZE
//! 2   -inf        "key00081"  3         2        3@1,6@2,9@3      3@1     5 KB
//! 12  "key00081"  +inf        3         2        13@1,14@2,15@3   14@2    7 KB
//! $ tinykv-ctl --scheduler 127.0.0.1:2379 cluster split 12 key00100 --wait
//! started: admin-split (admin) on region 12: split at "key00100"
//! success
//! ```
//!
//! Keys are quoted, with bytes that are not printable ASCII escaped; an
//! empty start key is `-inf` and an empty end key `+inf`. The region and
//! leader counts and the size of `cluster stores` are counted from the
//! regions the scheduler knows (its region heartbeats); a region's size is
//! what its leader last measured (`-`: empty, or not measured yet).
//!
//! The operator commands (`add-peer`, `remove-peer`, `transfer-leader`,
//! `split`) ask the scheduler to start an operator (`AddOperator`); the
//! scheduler hands it to the region's leader in its next heartbeat
//! answers, and it replaces any operator the scheduler itself had started
//! there. With `--wait` the command follows it (`GetOperator`) until it
//! ends, and fails unless it succeeded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use tinykv_proto::metapb::{Peer, StoreState};
use tinykv_proto::schedulerpb::{AddOperatorRequest, OperatorStatus, OperatorType};
use tinykv_transaction::ts;

use crate::region_cache::CachedRegion;
use crate::scheduler::SchedulerClient;
use crate::{Failure, parse_bytes, show};

/// The `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the stores: id, address, state, and how many regions each
    /// holds a peer of and leads.
    Stores,
    /// List the regions in key order: id, key range, epoch, peers and
    /// leader.
    Regions {
        /// How many regions at most.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Show the region holding KEY.
    Region {
        /// The key (text, or hex with --hex).
        key: String,
    },
    /// Get one timestamp from the scheduler's timestamp oracle.
    Tso,
    /// List the regions with an operator running, or one that ended
    /// lately: region, who made it, status, what it does.
    Operators {
        /// Only the running ones.
        #[arg(long)]
        running: bool,
    },
    /// Show the operator running on a region, or the last one that ended
    /// there.
    Operator {
        /// The region's id (see `cluster regions`).
        region_id: u64,
    },
    /// Add a peer of a region on a store (a new replica).
    AddPeer(StoreOp),
    /// Remove a region's peer on a store.
    RemovePeer(StoreOp),
    /// Move a region's leadership to its peer on a store.
    TransferLeader(StoreOp),
    /// Split a region at a key: the new region starts at KEY.
    Split {
        /// The region's id (see `cluster regions`).
        region_id: u64,
        /// Where the new region starts, strictly inside the region (text,
        /// or hex with --hex). Region boundaries are in the store's key
        /// space: raw keys as written, transactional keys encoded.
        key: String,
        #[command(flatten)]
        wait: Wait,
    },
}

/// A region and a store, for the operators that name a store.
#[derive(Debug, Args)]
pub struct StoreOp {
    /// The region's id (see `cluster regions`).
    region_id: u64,
    /// The store's id (see `cluster stores`).
    store_id: u64,
    #[command(flatten)]
    wait: Wait,
}

/// `--wait`: follow an operator until it ends.
#[derive(Debug, Args)]
pub struct Wait {
    /// Wait until the operator ends, and fail unless it succeeded.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    wait_secs: u64,
}

/// Runs one `cluster` command against the scheduler.
pub async fn run(
    scheduler: &mut SchedulerClient,
    command: ClusterCommand,
    hex: bool,
) -> Result<(), Failure> {
    match command {
        ClusterCommand::Stores => stores(scheduler).await,
        ClusterCommand::Regions { limit } => {
            let regions = scheduler.scan_regions(b"", limit).await?;
            print_regions(&regions);
            if regions.len() >= limit as usize {
                eprintln!("note: the first {limit} regions; --limit shows more");
            }
            Ok(())
        }
        ClusterCommand::Region { key } => {
            let key = parse_bytes(&key, hex)?;
            let Some(region) = scheduler.get_region(&key).await? else {
                return Err(Failure::Request(format!(
                    "the scheduler knows no region holding key {} (yet: a region that just \
                     split is known after its leader's next heartbeat)",
                    show(&key)
                )));
            };
            print_regions(&[region]);
            Ok(())
        }
        ClusterCommand::Tso => {
            let timestamp = scheduler.tso().await?;
            let physical = ts::physical(timestamp);
            println!("timestamp  {timestamp}");
            println!("physical   {physical} ms ({})", utc(physical));
            println!("logical    {}", ts::logical(timestamp));
            Ok(())
        }
        ClusterCommand::Operators { running } => operators(scheduler, running).await,
        ClusterCommand::Operator { region_id } => {
            let Some(op) = scheduler.get_operator(region_id).await? else {
                println!("region {region_id} has had no operator lately");
                return Ok(());
            };
            println!("region  {region_id}");
            println!("kind    {}", show(&op.kind));
            println!("status  {}", status_of(op.status));
            println!("desc    {}", show(&op.desc));
            Ok(())
        }
        ClusterCommand::AddPeer(op) => store_op(scheduler, OperatorType::AddPeer, op).await,
        ClusterCommand::RemovePeer(op) => store_op(scheduler, OperatorType::RemovePeer, op).await,
        ClusterCommand::TransferLeader(op) => {
            store_op(scheduler, OperatorType::TransferLeader, op).await
        }
        ClusterCommand::Split { region_id, key, wait } => {
            let split_key = parse_bytes(&key, hex)?;
            let req = AddOperatorRequest {
                region_id,
                r#type: OperatorType::Split as i32,
                split_key,
                ..Default::default()
            };
            start_operator(scheduler, req, &wait).await
        }
    }
}

/// An operator that names a region and a store.
async fn store_op(
    scheduler: &mut SchedulerClient,
    kind: OperatorType,
    op: StoreOp,
) -> Result<(), Failure> {
    let req = AddOperatorRequest {
        region_id: op.region_id,
        r#type: kind as i32,
        store_id: op.store_id,
        ..Default::default()
    };
    start_operator(scheduler, req, &op.wait).await
}

/// Starts the operator of `req`; with `--wait`, follows it until it ends.
async fn start_operator(
    scheduler: &mut SchedulerClient,
    req: AddOperatorRequest,
    wait: &Wait,
) -> Result<(), Failure> {
    let region_id = req.region_id;
    let desc = scheduler.add_operator(req).await?;
    println!("started: {desc}");
    if !wait.wait {
        println!("(follow it with `tinykv-ctl cluster operator {region_id}`)");
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(wait.wait_secs);
    loop {
        let op = scheduler.get_operator(region_id).await?;
        let status = op.as_ref().map(|op| OperatorStatus::try_from(op.status));
        match status {
            Some(Ok(OperatorStatus::Running)) => {}
            Some(Ok(OperatorStatus::Success)) => {
                println!("success");
                return Ok(());
            }
            _ => {
                let how = op.map_or_else(|| "forgotten".to_string(), |op| status_of(op.status));
                return Err(Failure::Request(format!(
                    "the operator on region {region_id} ended: {how} (see the scheduler's log)"
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Request(format!(
                "the operator on region {region_id} still runs after {} s; `tinykv-ctl cluster \
                 operator {region_id}` follows it",
                wait.wait_secs
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An operator status for people (`running`, `success`, ...).
fn status_of(status: i32) -> String {
    OperatorStatus::try_from(status)
        .map_or_else(|_| format!("unknown ({status})"), |s| status_name(s).into())
}

/// `cluster operators`: the operator of every region that has one running
/// or among the last that ended (one `GetOperator` per region).
async fn operators(scheduler: &mut SchedulerClient, only_running: bool) -> Result<(), Failure> {
    let regions = scheduler.scan_regions(b"", 0).await?;
    let mut rows = Vec::new();
    for r in &regions {
        let Some(op) = scheduler.get_operator(r.id()).await? else { continue };
        if only_running && op.status != OperatorStatus::Running as i32 {
            continue;
        }
        rows.push(vec![r.id().to_string(), show(&op.kind), status_of(op.status), show(&op.desc)]);
    }
    if rows.is_empty() {
        let what = if only_running { "running" } else { "running or recent" };
        println!("no {what} operators on the {} regions", regions.len());
        return Ok(());
    }
    print_table(&["REGION", "KIND", "STATUS", "DESC"], &rows);
    Ok(())
}

/// `cluster stores`: every store, with the regions it holds and leads.
async fn stores(scheduler: &mut SchedulerClient) -> Result<(), Failure> {
    let mut stores = scheduler.get_all_stores().await?;
    stores.sort_by_key(|s| s.id);
    let regions = scheduler.scan_regions(b"", 0).await?;
    let mut held: BTreeMap<u64, usize> = BTreeMap::new();
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    let mut bytes: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &regions {
        for peer in &r.region.peers {
            *held.entry(peer.store_id).or_default() += 1;
            *bytes.entry(peer.store_id).or_default() += r.approximate_size;
        }
        if let Some(leader) = &r.leader {
            *led.entry(leader.store_id).or_default() += 1;
        }
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in &stores {
        let state = StoreState::try_from(s.state)
            .map_or_else(|_| format!("unknown({})", s.state), |st| st.as_str_name().into());
        let info = scheduler.get_store_info(s.id).await?;
        let heard = match info.last_heartbeat_unix_ms {
            0 => "-".to_string(),
            at => format!("{}s ago", now_ms.saturating_sub(at) / 1000),
        };
        rows.push(vec![
            s.id.to_string(),
            s.address.clone(),
            state,
            held.get(&s.id).copied().unwrap_or(0).to_string(),
            led.get(&s.id).copied().unwrap_or(0).to_string(),
            size_cell(bytes.get(&s.id).copied().unwrap_or(0)),
            heard,
        ]);
    }
    let header = ["ID", "ADDRESS", "STATE", "REGIONS", "LEADERS", "SIZE", "HEARTBEAT"];
    print_table(&header, &rows);
    Ok(())
}

/// The regions table (`cluster regions`, `cluster region`).
fn print_regions(regions: &[CachedRegion]) {
    let rows: Vec<Vec<String>> = regions
        .iter()
        .map(|r| {
            let epoch = r.epoch();
            let peers: Vec<String> = r.region.peers.iter().map(peer).collect();
            vec![
                r.id().to_string(),
                key_cell(&r.region.start_key, "-inf"),
                key_cell(&r.region.end_key, "+inf"),
                epoch.conf_ver.to_string(),
                epoch.version.to_string(),
                peers.join(","),
                r.leader.as_ref().map_or_else(|| "-".to_string(), peer),
                size_cell(r.approximate_size),
            ]
        })
        .collect();
    let header = ["ID", "START", "END", "CONF_VER", "VERSION", "PEERS(id@store)", "LEADER", "SIZE"];
    print_table(&header, &rows);
}

/// A peer as `ID@STORE`.
fn peer(p: &Peer) -> String {
    format!("{}@{}", p.id, p.store_id)
}

/// A region boundary: the key quoted, or `unbounded` for the empty key.
fn key_cell(key: &[u8], unbounded: &str) -> String {
    if key.is_empty() { unbounded.to_string() } else { format!("\"{}\"", show(key)) }
}

/// A size in bytes for people (`-` for 0: not measured).
fn size_cell(bytes: u64) -> String {
    match bytes {
        0 => "-".to_string(),
        b if b < 1 << 10 => format!("{b} B"),
        b if b < 1 << 20 => format!("{} KB", b >> 10),
        b => format!("{} MB", b >> 20),
    }
}

/// An operator status in lower case (`running`, `success`, ...).
fn status_name(status: OperatorStatus) -> &'static str {
    match status {
        OperatorStatus::Success => "success",
        OperatorStatus::Timeout => "timeout",
        OperatorStatus::Cancel => "cancelled",
        OperatorStatus::Replace => "replaced",
        OperatorStatus::Running => "running",
    }
}

/// Prints `header` and `rows` as left-aligned columns two spaces apart.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(cell, &w)| format!("{cell:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm UTC`
/// (the proleptic Gregorian calendar; Howard Hinnant's `civil_from_days`).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let of_day = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
    }

    #[test]
    fn size_cells() {
        assert_eq!(size_cell(0), "-");
        assert_eq!(size_cell(900), "900 B");
        assert_eq!(size_cell(12 << 10), "12 KB");
        assert_eq!(size_cell(30 << 20), "30 MB");
    }

    #[test]
    fn key_cells() {
        assert_eq!(key_cell(b"", "-inf"), "-inf");
        assert_eq!(key_cell(b"k\x00", "+inf"), "\"k\\x00\"");
    }
}
