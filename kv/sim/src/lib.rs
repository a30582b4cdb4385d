//! The deterministic simulator: virtual clock, seeded network and disk
//! faults, the cluster harness, and the checkers of client histories.
//!
//! | module | what |
//! |---|---|
//! | [`cluster`] | stores, network, clients and virtual time in one thread |
//! | [`network`] | latency, drops, duplicates, partitions |
//! | [`history`] | what clients did and saw |
//! | [`region_cache`] | a client's regions by key, refreshed from region errors |
//! | [`linearizability`] | the linearizability checker |
//! | [`livelock`] | fails a run whose follower rejects the same append over and over |
//! | [`workload`] | the generic workload (clients × faults × restarts) and its checks |
//! | [`suite`] | seed, log capture, final checks and the failure report of a graded test |
//! | [`report`], [`capture`] | the HTML failure report; per-node log capture |
#![forbid(unsafe_code)]

pub mod capture;
pub mod cluster;
pub mod history;
pub mod linearizability;
pub mod livelock;
pub mod network;
pub mod region_cache;
pub mod report;
pub mod suite;
pub mod workload;

pub use crate::cluster::{
    Cluster, ClusterConfig, EngineKind, EngineSide, FIRST_REGION, FsCrash, HARNESS_CLIENT, MS,
    SCHEDULER_TICK_US, SEC, SchedulerChoice, SnapshotIo, SnapshotStats,
};
pub use crate::history::{History, OpKind, OpRecord, OpResult};
pub use crate::network::SCHEDULER_NODE;
pub use crate::network::{NetConfig, Network};
pub use tinykv_scheduler::operator::OpOutcome;
pub use tinykv_scheduler::{AdminOp, MockScheduler, RaftCluster, ScheduleConfig};
