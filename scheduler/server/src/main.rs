//! `tinykv-scheduler`: the cluster's scheduler (a trimmed PD).
//!
//! ```text
//! tinykv-scheduler --data-dir ./scheduler-data --addr 127.0.0.1:2379 \
//!     [--max-replicas N] [--max-store-down-time SECS] [--schedule-interval-ms MS]
//! ```
//!
//! It keeps the cluster's metadata (stores, regions, id and timestamp
//! bounds) in its own fjall engine under `--data-dir`, serves the
//! `Scheduler` gRPC service on `--addr` (port 0 picks a free port), and
//! prints the address it listens on to stdout:
//!
//! ```text
//! tinykv-scheduler listening on 127.0.0.1:43121
//! ```
//!
//! A fresh data directory gets a new cluster id from the wall clock; it is
//! saved at once, so a restart serves the same cluster. SIGINT (Ctrl-C) or
//! SIGTERM stops it cleanly: the streams end, the calls in flight finish,
//! the engine is synced, and it exits with status 0. Logs go to stderr
//! (`RUST_LOG`, default `info`).
#![forbid(unsafe_code)]

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tinykv_engine::{Engine as _, FjallConfig};
use tinykv_scheduler::ScheduleConfig;
use tinykv_scheduler_server::service::TICK_INTERVAL;
use tinykv_scheduler_server::{SchedulerService, open_cluster, serve, wall_clock_ms};

/// The cluster's scheduler: metadata, ids, timestamps, heartbeats,
/// operators.
#[derive(Debug, Parser)]
#[command(name = "tinykv-scheduler", version, about)]
struct Args {
    /// The directory that holds the scheduler's metadata; created if
    /// missing. Not a store's data directory.
    #[arg(long, default_value = "./scheduler-data")]
    data_dir: PathBuf,

    /// The address to listen on (`HOST:PORT`; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:2379")]
    addr: String,

    /// How many replicas each region should have [default: the saved
    /// value, or 3 for a new cluster]. Saved: later starts keep it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_replicas: Option<u32>,

    /// A store silent for this long is down: its peers are replaced
    /// [default: 60].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    max_store_down_time: Option<u64>,

    /// How often the balance schedulers and the replica checker run
    /// [default: 1000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    schedule_interval_ms: Option<u64>,
}

impl Args {
    /// The scheduling settings: the defaults, with what the flags say.
    fn schedule_config(&self) -> ScheduleConfig {
        let mut config = ScheduleConfig::default();
        if let Some(secs) = self.max_store_down_time {
            config.max_store_down_time_ms = secs.saturating_mul(1000);
        }
        if let Some(ms) = self.schedule_interval_ms {
            config.schedule_interval_ms = ms;
        }
        config
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,fjall=warn,lsm_tree=warn"),
    )
    .init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGINT or SIGTERM, then stops cleanly.
fn run(args: &Args) -> Result<(), String> {
    let (engine, cluster) = open_cluster(
        &args.data_dir,
        FjallConfig::default(),
        args.schedule_config(),
        args.max_replicas,
        wall_clock_ms(),
    )?;
    let cluster_id = cluster.cluster_id();
    let bootstrapped = cluster.is_bootstrapped();
    let cluster = Arc::new(Mutex::new(cluster));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let service = SchedulerService::new(Arc::clone(&cluster), addr.to_string());
        let ticker = service.spawn_ticker(TICK_INTERVAL);
        log::info!(
            "tinykv-scheduler listening on {addr} (cluster {cluster_id}, {}, data dir {})",
            if bootstrapped { "bootstrapped" } else { "not bootstrapped yet" },
            args.data_dir.display()
        );
        // Tests and scripts read the address from stdout.
        println!("tinykv-scheduler listening on {addr}");
        let _ = std::io::stdout().flush();

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = serve(listener, service, async {
            let _ = stop_rx.await;
        });
        tokio::pin!(served);
        tokio::select! {
            r = &mut served => return r.map_err(|e| format!("gRPC server failed: {e}")),
            () = shutdown_signal() => {}
        }
        let _ = stop_tx.send(());
        let finished = finish_within_grace(served).await;
        let _ = ticker.await;
        finished
    })?;
    // Dropping the runtime drops its tasks (stream tasks, the ticker) and
    // waits for the blocking calls in flight, so nothing holds the core
    // any more.
    drop(runtime);
    if Arc::strong_count(&cluster) != 1 {
        log::warn!("the scheduler core is still shared at exit");
    }
    drop(cluster);
    // Every write was synced already; this sync and the drop close the
    // engine for good.
    engine.sync().map_err(|e| format!("cannot sync the data directory: {e}"))?;
    drop(engine);
    log::info!("tinykv-scheduler stopped cleanly");
    Ok(())
}

/// How long a shutdown waits for the calls in flight to finish and the
/// clients to close their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Lets a gRPC server that was told to shut down finish, for at most
/// [`SHUTDOWN_GRACE`]: a client that keeps an idle connection open must
/// not keep the scheduler from stopping. (Every answer given was already
/// durable; a call cut off here was not answered.)
async fn finish_within_grace(
    serve: impl Future<Output = Result<(), tonic::transport::Error>>,
) -> Result<(), String> {
    match tokio::time::timeout(SHUTDOWN_GRACE, serve).await {
        Ok(result) => result.map_err(|e| format!("gRPC server failed: {e}")),
        Err(_) => {
            log::warn!(
                "connections still open {SHUTDOWN_GRACE:?} after the shutdown signal; closing them"
            );
            Ok(())
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the scheduler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("received SIGINT, shutting down"),
        _ = term.recv() => log::info!("received SIGTERM, shutting down"),
    }
}
