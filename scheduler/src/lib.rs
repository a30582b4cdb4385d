//! The scheduler: cluster metadata, region heartbeats, operators and the
//! schedulers that choose them.
//!
//! # The real scheduler (lab 3c)
//!
//! [`RaftCluster`] is the scheduler's sans-I/O core, a trimmed PD like
//! TinyKV's:
//!
//! - [`core`]: what it knows: stores ([`StoreInfo`]) and regions
//!   ([`RegionInfo`], by id, by range and by store), in a [`BasicCluster`];
//! - [`heartbeat`]: **lab 3c**, taking a region heartbeat into that view
//!   (stale reports refused, the store statistics recounted);
//! - [`operator`]: plans for one region (add, remove, transfer, move =
//!   add then remove), handed out in heartbeat responses until done;
//! - [`balance_region`]: **lab 3c**, the balance-region scheduler;
//!   [`balance_leader`] and [`replica_checker`] (given);
//! - [`id`]: ids and timestamps that never repeat across restarts;
//! - [`storage`]: the [`MetaStorage`] it persists through (fjall in
//!   `tinykv-scheduler`, memory in the simulator).
//!
//! # The mock scheduler (lab 3b)
//!
//! [`mock`]: [`MockScheduler`], the scheduler that lab 3b's simulator
//! runs. It has no policy: the test asks for the operators, and it checks
//! every heartbeat against the invariants a correct raftstore keeps
//! ([`Breach`]).
//!
//! **Architecture invariant: the scheduler is sans-I/O.** No threads,
//! clock, sockets, files or randomness; it takes heartbeats and the time
//! and returns responses, writes through [`MetaStorage`], and keeps
//! everything in `BTreeMap`s, so the simulator runs it deterministically.
//! It depends on `tinykv-proto` without `grpc`, so it never pulls in
//! tokio or tonic.
#![forbid(unsafe_code)]

pub mod balance_leader;
pub mod balance_region;
pub mod cluster;
pub mod config;
pub mod core;
pub mod heartbeat;
pub mod id;
pub mod mock;
pub mod operator;
pub mod ranges;
pub mod replica_checker;
pub mod schedule;
pub mod storage;

pub use crate::cluster::{AdminOp, Error, RaftCluster};
pub use crate::config::ScheduleConfig;
pub use crate::core::{BasicCluster, RegionInfo, RegionsInfo, StoreInfo};
pub use crate::heartbeat::HeartbeatError;
pub use crate::mock::{Breach, BreachKind, MockScheduler, Operator, ScheduleError, Scheduled};
pub use crate::storage::{MemStorage, MetaStorage};
