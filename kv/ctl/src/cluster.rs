//! `tinykv-ctl --scheduler ADDR cluster ...`: what the scheduler knows
//! about the cluster, as plain aligned tables.
//!
//! ```text
//! $ tinykv-ctl --scheduler 127.0.0.1:2379 cluster stores
//! ID  ADDRESS          STATE  REGIONS  LEADERS
//! 1   127.0.0.1:20161  Up     3        2
//! $ tinykv-ctl --scheduler 127.0.0.1:2379 cluster regions
//! ID  START       END         CONF_VER  VERSION  PEERS(id@store)  LEADER
//! 2   -inf        "key00081"  3         2        3@1,6@2,9@3      3@1
//! 12  "key00081"  +inf        3         2        13@1,14@2,15@3   14@2
//! ```
//!
//! Keys are quoted, with bytes that are not printable ASCII escaped; an
//! empty start key is `-inf` and an empty end key `+inf`. The region and
//! leader counts of `cluster stores` are counted from the regions the
//! scheduler knows (its region heartbeats).
//!
//! Not here, because the scheduler's protocol has no call for them: a
//! store's last heartbeat (`GetStore` reports no time; `GetAllStores` no
//! statistics), a region's approximate size (`ScanRegions` and `GetRegion`
//! leave it out), and admin operators (add a peer, transfer the
//! leadership, split): `GetOperator` only reads.

use std::collections::BTreeMap;

use clap::Subcommand;
use tinykv_proto::metapb::{Peer, StoreState};
use tinykv_proto::schedulerpb::OperatorStatus;
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
    /// Show the operator running on a region, or the last one that ended
    /// there.
    Operator {
        /// The region's id (see `cluster regions`).
        region_id: u64,
    },
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
        ClusterCommand::Operator { region_id } => {
            let op = scheduler.get_operator(region_id).await?;
            let status = OperatorStatus::try_from(op.status)
                .map_or_else(|_| format!("unknown ({})", op.status), |s| status_name(s).into());
            println!("region  {region_id}");
            println!("kind    {}", show(&op.kind));
            println!("status  {status}");
            println!("desc    {}", show(&op.desc));
            Ok(())
        }
    }
}

/// `cluster stores`: every store, with the regions it holds and leads.
async fn stores(scheduler: &mut SchedulerClient) -> Result<(), Failure> {
    let mut stores = scheduler.get_all_stores().await?;
    stores.sort_by_key(|s| s.id);
    let regions = scheduler.scan_regions(b"", 0).await?;
    let mut held: BTreeMap<u64, usize> = BTreeMap::new();
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &regions {
        for peer in &r.region.peers {
            *held.entry(peer.store_id).or_default() += 1;
        }
        if let Some(leader) = &r.leader {
            *led.entry(leader.store_id).or_default() += 1;
        }
    }
    let rows: Vec<Vec<String>> = stores
        .iter()
        .map(|s| {
            let state = StoreState::try_from(s.state)
                .map_or_else(|_| format!("unknown({})", s.state), |st| st.as_str_name().into());
            vec![
                s.id.to_string(),
                s.address.clone(),
                state,
                held.get(&s.id).copied().unwrap_or(0).to_string(),
                led.get(&s.id).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    print_table(&["ID", "ADDRESS", "STATE", "REGIONS", "LEADERS"], &rows);
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
            ]
        })
        .collect();
    let header = ["ID", "START", "END", "CONF_VER", "VERSION", "PEERS(id@store)", "LEADER"];
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
    fn key_cells() {
        assert_eq!(key_cell(b"", "-inf"), "-inf");
        assert_eq!(key_cell(b"k\x00", "+inf"), "\"k\\x00\"");
    }
}
