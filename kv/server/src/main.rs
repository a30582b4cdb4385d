//! `tinykv-server`: one TinyKV store.
//!
//! ```text
//! tinykv-server --standalone [--data-dir ./data] [--addr 127.0.0.1:20160] [--no-sync]
//! ```
//!
//! In standalone mode (lab 1) the server keeps all data in one on-disk
//! engine under `--data-dir` and serves the raw API. It stops cleanly on
//! SIGINT (Ctrl-C) or SIGTERM: it finishes the calls in flight, syncs the
//! engine and exits.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tinykv_server::{Server, serve};
use tinykv_storage::{StandaloneConfig, StandaloneStorage};

/// One TinyKV store.
#[derive(Debug, Parser)]
#[command(name = "tinykv-server", version, about)]
struct Args {
    /// Serve the lab 1 standalone storage (no raft, no scheduler). Required
    /// for now: cluster mode arrives with lab 2b.
    #[arg(long)]
    standalone: bool,

    /// The directory that holds the data; created if missing.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,

    /// The address to listen on (`HOST:PORT`; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:20160")]
    addr: String,

    /// Acknowledge writes before they are synced to disk. Faster, but a
    /// crash (SIGKILL, power loss) may lose the latest acknowledged writes.
    #[arg(long)]
    no_sync: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,fjall=warn,lsm_tree=warn"),
    )
    .init();
    let args = Args::parse();
    if !args.standalone {
        eprintln!(
            "error: cluster mode is not built yet (it arrives with lab 2b); \
             start the server with --standalone"
        );
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let mut config = StandaloneConfig::new(&args.data_dir);
    config.sync_writes = !args.no_sync;
    let storage = StandaloneStorage::open(&config)
        .map_err(|e| format!("cannot open data directory {}: {e}", args.data_dir.display()))?;
    let server = Server::new(Arc::new(storage));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        log::info!(
            "tinykv-server listening on {addr} (standalone, data dir {}, {} writes)",
            args.data_dir.display(),
            if config.sync_writes { "synced" } else { "UNSYNCED" }
        );
        serve(listener, server, shutdown_signal())
            .await
            .map_err(|e| format!("gRPC server failed: {e}"))
    })?;
    log::info!("tinykv-server stopped cleanly");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("received SIGINT, shutting down"),
        _ = term.recv() => log::info!("received SIGTERM, shutting down"),
    }
}
