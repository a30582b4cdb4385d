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
//!
//! With `--scheduler` (lab 3c) it is one store of a cluster that
//! `tinykv-scheduler` runs: it gets its store id from the scheduler (kept
//! in its data directory), the first store bootstraps the cluster with one
//! region, and from then on it reports its regions, splits them when they
//! grow, and adds, removes and hands over peers as the scheduler says.
//! Other stores are found through the scheduler.
//!
//! ```text
//! tinykv-server --scheduler 127.0.0.1:2379 --data-dir ./data1 --addr 127.0.0.1:20161
//! ```
//!
//! With `--store-id` and `--cluster` (lab 2b) it is one store of a static
//! cluster: every store is listed with its address, a fresh data directory
//! is bootstrapped with one region that has a peer on each, and raft
//! messages travel between the stores over gRPC. The raw API then goes
//! through raft on the leader's store; other stores answer with a
//! "not the leader" error naming it.
//!
//! ```text
//! tinykv-server --store-id 1 --cluster 1=127.0.0.1:20161,2=127.0.0.1:20162,3=127.0.0.1:20163 \
//!     --data-dir ./data1 --addr 127.0.0.1:20161
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tinykv_engine::FjallConfig;
use tinykv_server::node::{Node, NodeConfig};
use tinykv_server::raft_storage::RaftStorage;
use tinykv_server::scheduler_client::{self, SchedulerClient};
use tinykv_server::{Server, TinyKvService, serve, serve_service};
use tinykv_storage::{StandaloneConfig, StandaloneStorage};

/// One TinyKV store.
#[derive(Debug, Parser)]
#[command(name = "tinykv-server", version, about)]
struct Args {
    /// Serve the lab 1 standalone storage (no raft, no scheduler).
    #[arg(long, conflicts_with_all = ["store_id", "cluster", "scheduler"])]
    standalone: bool,

    /// Join the cluster of the `tinykv-scheduler` at this address
    /// (`HOST:PORT`): the store gets its id there, the first store
    /// bootstraps the cluster, and regions move and split as the scheduler
    /// says.
    #[arg(long, conflicts_with_all = ["store_id", "cluster"])]
    scheduler: Option<String>,

    /// The address other stores and clients reach this store at, if not
    /// the listening address (with `--scheduler`; e.g. when listening on
    /// 0.0.0.0).
    #[arg(long, requires = "scheduler")]
    advertise_addr: Option<String>,

    /// Split a region once it holds more than this many bytes (with
    /// `--scheduler`; it splits at about two thirds of it). Small values
    /// make splits easy to watch in a demo.
    #[arg(long, requires = "scheduler", default_value_t = 144 * 1024 * 1024)]
    region_max_size: u64,

    /// This store's id in a static cluster (with `--cluster`).
    #[arg(long, requires = "cluster")]
    store_id: Option<u64>,

    /// Every store of a static cluster: `ID=HOST:PORT,ID=HOST:PORT,...`
    /// (with `--store-id`).
    #[arg(long, requires = "store_id", value_parser = parse_cluster)]
    cluster: Option<BTreeMap<u64, String>>,

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
    let result = match (&args.store_id, &args.cluster) {
        (Some(id), Some(cluster)) => run_store(*id, cluster.clone(), &args),
        _ if args.standalone => run(args),
        _ if args.scheduler.is_some() => run_joined(&args),
        _ => {
            eprintln!(
                "error: say how to run: --standalone (lab 1); --store-id N --cluster \
                 1=HOST:PORT,2=HOST:PORT,... (one store of a static cluster); or --scheduler \
                 HOST:PORT (one store of a cluster that tinykv-scheduler runs)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
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
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = serve(listener, server, async {
            let _ = stopped_rx.await;
        });
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => return r.map_err(|e| format!("gRPC server failed: {e}")),
            () = shutdown_signal() => {}
        }
        let _ = stopped_tx.send(());
        finish_within_grace(serve).await
    })?;
    log::info!("tinykv-server stopped cleanly");
    Ok(())
}

/// `1=127.0.0.1:20161,2=...` as a map from store id to address.
fn parse_cluster(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut stores = BTreeMap::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (id, addr) =
            item.split_once('=').ok_or_else(|| format!("{item:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("{id:?} is not a store id"))?;
        if id == 0 || stores.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("store id {id} is zero or listed twice"));
        }
    }
    if stores.is_empty() {
        return Err("no stores listed".into());
    }
    Ok(stores)
}

/// Runs one store of a static cluster until SIGINT or SIGTERM.
fn run_store(store_id: u64, cluster: BTreeMap<u64, String>, args: &Args) -> Result<(), String> {
    if !cluster.contains_key(&store_id) {
        return Err(format!("--cluster does not list store {store_id}"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let cfg = NodeConfig {
        store_id,
        data_dir: args.data_dir.clone(),
        stores: cluster,
        // No scheduler to ask for a new region's ids until lab 3c:
        // measure regions (for the heartbeats) but never ask to split.
        raft: tinykv_raftstore::Config {
            seed: store_id,
            region_max_size: u64::MAX,
            ..Default::default()
        },
        fjall: FjallConfig::default(),
        scheduler: None,
    };
    let node = Node::start(&cfg, runtime.handle())?;
    let storage =
        RaftStorage::new(node.handle(), Duration::from_secs(5)).with_addresses(cfg.stores.clone());
    let service = TinyKvService::new(Server::new(Arc::new(storage))).with_node(node.handle());
    let served: Result<(), String> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        log::info!(
            "tinykv-server listening on {addr} (store {store_id} of {} stores, data dir {})",
            cfg.stores.len(),
            args.data_dir.display()
        );
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = serve_service(listener, service, async {
            let _ = stopped_rx.await;
        });
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => return r.map_err(|e| format!("gRPC server failed: {e}")),
            () = shutdown_signal() => {}
        }
        // Stop the store thread first: its raft streams then end, and the
        // gRPC server can finish the calls in flight.
        tokio::task::block_in_place(|| node.stop());
        let _ = stopped_tx.send(());
        finish_within_grace(serve).await
    });
    served?;
    log::info!("tinykv-server stopped cleanly");
    Ok(())
}

/// Runs one store of a cluster that `tinykv-scheduler` runs, until SIGINT
/// or SIGTERM: it listens first (so that its address is known, also with
/// port 0), joins the cluster ([`scheduler_client::join`]), then starts.
fn run_joined(args: &Args) -> Result<(), String> {
    let scheduler_addr = args.scheduler.clone().expect("--scheduler");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let data_dir = args.data_dir.clone();
    let served: Result<(), String> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
        let advertise = args.advertise_addr.clone().unwrap_or_else(|| addr.clone());
        let client = SchedulerClient::connect(&scheduler_addr, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let engines = tinykv_server::node::open_engines(&data_dir, FjallConfig::default())?;
        let store_id = scheduler_client::join(&client, &engines, &advertise).await?;
        let cfg = NodeConfig {
            store_id,
            data_dir: data_dir.clone(),
            stores: BTreeMap::from([(store_id, advertise.clone())]),
            raft: tinykv_raftstore::Config {
                seed: store_id,
                region_max_size: args.region_max_size,
                region_split_size: args.region_max_size / 3 * 2,
                ..Default::default()
            },
            fjall: FjallConfig::default(),
            scheduler: Some(client),
        };
        let node = tokio::task::block_in_place(|| {
            Node::start_on(&cfg, engines, &tokio::runtime::Handle::current())
        })?;
        let storage = RaftStorage::new(node.handle(), Duration::from_secs(5));
        let service = TinyKvService::new(Server::new(Arc::new(storage))).with_node(node.handle());
        log::info!(
            "tinykv-server listening on {addr} (store {store_id}, advertised as {advertise}, \
             scheduler {scheduler_addr}, data dir {})",
            data_dir.display()
        );
        println!("tinykv-server store {store_id} listening on {addr}");
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = serve_service(listener, service, async {
            let _ = stopped_rx.await;
        });
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => return r.map_err(|e| format!("gRPC server failed: {e}")),
            () = shutdown_signal() => {}
        }
        tokio::task::block_in_place(|| node.stop());
        let _ = stopped_tx.send(());
        finish_within_grace(serve).await
    });
    served?;
    log::info!("tinykv-server stopped cleanly");
    Ok(())
}

/// How long a shutdown waits for the calls in flight to finish and the
/// clients to close their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Lets a gRPC server that was told to shut down finish, for at most
/// [`SHUTDOWN_GRACE`]: a client that keeps an idle connection open must
/// not keep the server from stopping. (Every acknowledged write is
/// already on disk; a call cut off here was not acknowledged.)
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
