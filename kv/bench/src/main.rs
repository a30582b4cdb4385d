//! `tinykv-bench`: closed-loop load on a TinyKV cluster and, side by side
//! in the same run, on an etcd cluster of the same size.
//!
//! ```text
//! tinykv-bench [--stores 3] [--workloads put,get] [--clients 64,1]
//!              [--requests 10000] [--value-size 256] [--keys 100000]
//!              [--seed 1] [--etcd auto|never|PATH] [--server PATH]
//! ```
//!
//! It starts `--stores` `tinykv-server` processes on loopback (a static
//! cluster; `--stores 1` is one standalone server without raft), runs
//! every row (each workload with each number of clients), stops them, and
//! does the same with as many etcd members when an `etcd` binary is found
//! (`--etcd auto`, the default, looks on `PATH`). The two systems run one
//! after the other, never at once, on default durability (fsync) each.
//! It prints a table per row (throughput, p50, p99, max), the ratios, the
//! machine's cores and its load average before and after.
//!
//! `make bench-cluster` builds it in release mode and runs the default
//! rows on 3 stores, then the put row on one node.

mod client;
mod load;
mod procs;

/// The etcd v3 messages and clients (`proto/etcd_kv.proto`).
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::client::System;
use crate::load::{Outcome, Row, Workload};
use crate::procs::Servers;

#[derive(Debug, Parser)]
#[command(
    name = "tinykv-bench",
    about = "Closed-loop benchmark: a TinyKV cluster beside an etcd cluster"
)]
struct Args {
    /// How many stores (and etcd members); 1 runs a standalone server.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    stores: u16,
    /// The workloads, in order: put, get, mixed (half each).
    #[arg(long, value_delimiter = ',', default_value = "put,get", value_parser = Workload::parse)]
    workloads: Vec<Workload>,
    /// The numbers of clients, one row each (every client has its own connection).
    #[arg(long, value_delimiter = ',', default_value = "64,1", value_parser = clap::value_parser!(u16).range(1..=1024))]
    clients: Vec<u16>,
    /// Requests per row (all clients together).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    value_size: u32,
    /// How many distinct keys the requests draw from.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Seeds the key and value draws (the same for both systems).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The etcd binary: `auto` (look on PATH), `never`, or a path.
    #[arg(long, default_value = "auto")]
    etcd: String,
    /// The tinykv-server binary (default: next to this program).
    #[arg(long)]
    server: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => match rt.block_on(run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tinykv-bench: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("tinykv-bench: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let server = match &args.server {
        Some(path) => path.clone(),
        None => sibling("tinykv-server")?,
    };
    let etcd = etcd_binary(&args.etcd)?;
    let rows: Vec<Row> = args
        .workloads
        .iter()
        .flat_map(|&workload| {
            args.clients.iter().map(move |&clients| Row {
                workload,
                clients: clients as usize,
                requests: args.requests,
                value_size: args.value_size as usize,
                keys: args.keys,
                seed: args.seed,
            })
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cores} cores; load average before: {}", loadavg());
    if etcd.is_none() {
        println!("etcd: not run (--etcd {}), so tinykv runs alone", args.etcd);
    }

    let stores = args.stores as usize;
    let tinykv = measure(System::Tinykv, Servers::tinykv(&server, stores)?, &rows).await?;
    let etcd = match &etcd {
        Some(bin) => {
            println!("etcd: {} ({})", bin.display(), etcd_version(bin));
            Some(measure(System::Etcd, Servers::etcd(bin, stores)?, &rows).await?)
        }
        None => None,
    };
    println!("load average after: {}", loadavg());
    println!();
    print_table(stores, &rows, &tinykv, etcd.as_deref());
    Ok(())
}

/// Runs every row against freshly started servers, then stops them.
async fn measure(system: System, servers: Servers, rows: &[Row]) -> Result<Vec<Outcome>, String> {
    eprintln!("{} on {}", servers.what, servers.addrs.join(", "));
    let mut outcomes = Vec::new();
    for row in rows {
        match load::run(system, &servers.addrs, *row).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                return Err(format!(
                    "{} {} x{} failed: {e}\nthe servers' logs end with:\n{}",
                    system.name(),
                    row.workload.name(),
                    row.clients,
                    servers.logs()
                ));
            }
        }
    }
    Ok(outcomes)
}

fn print_table(stores: usize, rows: &[Row], tinykv: &[Outcome], etcd: Option<&[Outcome]>) {
    let nodes = if stores == 1 { "1 node".to_string() } else { format!("{stores} nodes") };
    println!("| workload ({nodes}) | system | requests | per second | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let label =
            format!("{} x{} clients, {} B", row.workload.name(), row.clients, row.value_size);
        print_line(&label, "tinykv", &tinykv[i]);
        if let Some(etcd) = etcd {
            print_line(&label, "etcd", &etcd[i]);
        }
    }
    let Some(etcd) = etcd else { return };
    println!();
    println!("| workload ({nodes}) | throughput tinykv/etcd | p50 tinykv/etcd | p99 tinykv/etcd |");
    println!("|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let (t, e) = (&tinykv[i], &etcd[i]);
        let ratio =
            |a: std::time::Duration, b: std::time::Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "| {} x{} | {:.2} | {:.2} | {:.2} |",
            row.workload.name(),
            row.clients,
            t.per_second() / e.per_second(),
            ratio(t.quantile(0.5), e.quantile(0.5)),
            ratio(t.quantile(0.99), e.quantile(0.99)),
        );
    }
}

fn print_line(label: &str, system: &str, o: &Outcome) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {label} | {system} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
        o.requests,
        o.per_second(),
        ms(o.quantile(0.5)),
        ms(o.quantile(0.99)),
        ms(o.max())
    );
}

/// A binary in the same directory as this one.
fn sibling(name: &str) -> Result<PathBuf, String> {
    let me =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let path = me.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release -p tinykv-server) or pass --server PATH",
            path.display()
        ))
    }
}

fn etcd_binary(choice: &str) -> Result<Option<PathBuf>, String> {
    match choice {
        "never" => Ok(None),
        "auto" => Ok(std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join("etcd")).find(|p| p.is_file())
        })),
        path => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(format!("--etcd {}: no such file", path.display()))
            }
        }
    }
}

fn etcd_version(bin: &std::path::Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "version unknown".into())
}

/// The 1, 5 and 15 minute load averages (Linux), or "unknown".
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
