//! `tinykv-scheduler`: the scheduler core ([`tinykv_scheduler::RaftCluster`])
//! behind gRPC, durable in its own fjall engine.
//!
//! The core is sans-I/O; this crate is the production driver around it:
//!
//! - [`storage`]: [`EngineStorage`], the core's `MetaStorage` on a
//!   [`FjallEngine`], every write synced;
//! - [`service`]: [`SchedulerService`], the generated `Scheduler` trait over
//!   an `Arc<Mutex<RaftCluster>>` and a clock, plus the ticker that lets
//!   time pass in the core;
//! - [`open_cluster`] and [`serve`]: what the binary (`src/main.rs`) and the
//!   in-process tests both call, so that the tests run the real thing.
//!
//! **Architecture invariant: this crate holds no scheduling logic.** It
//! checks requests, calls the core and turns its answers into protocol
//! messages; what a heartbeat means, which operator runs and what is
//! persisted are the core's (`scheduler/src`), which the simulator runs
//! too.
//!
//! # Restart safety
//!
//! The core saves the bounds of its ids and timestamps before handing out
//! anything under them, and [`EngineStorage`] makes every write durable
//! before it returns; so ids and timestamps go on increasing across a
//! SIGKILL (`tests/grpc.rs` checks it on the real binary).
#![forbid(unsafe_code)]

pub mod service;
pub mod storage;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tinykv_engine::{FjallConfig, FjallEngine};
use tinykv_scheduler::{RaftCluster, ScheduleConfig};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use crate::service::{Clock, SchedulerService, wall_clock_ms};
pub use crate::storage::EngineStorage;

/// A cluster id for a fresh data directory, as PD makes one: the Unix
/// seconds of the first start in the high 32 bits, and low bits that
/// differ between two clusters started in the same second (nanoseconds
/// and the process id). Never 0.
pub fn new_cluster_id(now: SystemTime) -> u64 {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let low = u64::from(since_epoch.subsec_nanos() ^ std::process::id());
    ((since_epoch.as_secs() << 32) | (low & 0xffff_ffff)).max(1)
}

/// Opens the scheduler's engine in `data_dir` (created if missing) and the
/// core on it at `now_ms`: a new cluster (id from [`new_cluster_id`]) if
/// the directory is empty, otherwise the one it holds.
///
/// `max_replicas`: `Some(n)` sets the cluster's replica count to `n` (and
/// saves it, if the cluster is bootstrapped); `None` keeps the saved one
/// (or `schedule.max_replicas` for a cluster not bootstrapped yet).
///
/// # Errors
///
/// The directory cannot be opened (locked by another process, say) or
/// holds something the core cannot read; a message for people.
pub fn open_cluster(
    data_dir: &Path,
    fjall: FjallConfig,
    mut schedule: ScheduleConfig,
    max_replicas: Option<u32>,
    now_ms: u64,
) -> Result<(Arc<FjallEngine>, RaftCluster), String> {
    let engine = FjallEngine::open(data_dir, fjall)
        .map_err(|e| format!("cannot open data directory {}: {e}", data_dir.display()))?;
    let engine = Arc::new(engine);
    if let Some(n) = max_replicas {
        schedule.max_replicas = n as usize;
    }
    let storage = Box::new(EngineStorage::new(Arc::clone(&engine)));
    let mut cluster =
        RaftCluster::open(storage, schedule, new_cluster_id(SystemTime::now()), now_ms)
            .map_err(|e| format!("cannot open the scheduler in {}: {e}", data_dir.display()))?;
    let saved = cluster.meta().map(|m| m.max_peer_count);
    let wanted = match (max_replicas, saved) {
        (Some(n), Some(saved)) if n != saved => Some(n),
        (None, Some(saved)) if saved as usize != cluster.config().max_replicas => Some(saved),
        _ => None,
    };
    if let Some(n) = wanted {
        cluster.set_max_replicas(n).map_err(|e| format!("cannot set max replicas to {n}: {e}"))?;
    }
    Ok((engine, cluster))
}

/// Serves `service` over gRPC on `listener` until `shutdown` completes;
/// then stops the service's streams and ticker
/// ([`SchedulerService::stop`]), finishes the calls in flight and returns.
/// Every accepted connection gets `TCP_NODELAY` (as in `tinykv-server`:
/// without it, small answers wait for delayed ACKs).
///
/// # Errors
///
/// The transport failed.
pub async fn serve(
    listener: TcpListener,
    service: SchedulerService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let stopper = service.clone();
    let shutdown = async move {
        shutdown.await;
        stopper.stop();
    };
    tonic::transport::Server::builder()
        .add_service(service.into_tonic())
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// Takes the core back once every stream task and the ticker have let go
/// of it (they do soon after [`SchedulerService::stop`]), waiting at most
/// `within`. Dropping the core then closes its engine, so the directory
/// can be opened again.
///
/// # Errors
///
/// Something still holds the core after `within`; or a call panicked in
/// it (its state may be half-changed).
pub async fn release(
    mut cluster: Arc<Mutex<RaftCluster>>,
    within: Duration,
) -> Result<RaftCluster, String> {
    let deadline = Instant::now() + within;
    loop {
        match Arc::try_unwrap(cluster) {
            Ok(mutex) => {
                return mutex
                    .into_inner()
                    .map_err(|_| "the scheduler core panicked earlier".to_string());
            }
            Err(shared) if Instant::now() < deadline => {
                cluster = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(shared) => {
                return Err(format!(
                    "{} holders of the scheduler core remain {within:?} after the stop",
                    Arc::strong_count(&shared) - 1
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_the_start_second_and_never_zero() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        assert_eq!(new_cluster_id(at) >> 32, 1_700_000_000);
        assert_ne!(new_cluster_id(UNIX_EPOCH), 0);
    }
}
