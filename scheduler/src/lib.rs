//! The scheduler: cluster metadata and region heartbeats.
//!
//! # What exists
//!
//! - [`mock`]: [`MockScheduler`], the scheduler that lab 3b's simulator
//!   runs. It keeps stores and regions (by id and by key range), answers
//!   region heartbeats with the operators a test asks for (add a peer,
//!   remove a peer, transfer the leadership), follows each one until a
//!   heartbeat shows it done, and checks every heartbeat against the
//!   invariants a correct raftstore keeps ([`Breach`]). For splits it
//!   hands out the new region's ids
//!   ([`ask_split`](MockScheduler::ask_split)) and learns the halves
//!   from their heartbeats: of two overlapping regions the lower version
//!   is a stale view, removed or ignored, and
//!   [`gaps`](MockScheduler::gaps) shows the key space no region covers
//!   while the halves report.
//! - [`ranges`]: [`RangeIndex`](ranges::RangeIndex), regions by key range,
//!   for the mock now and the real scheduler later.
//!
//! **Architecture invariant: the scheduler is sans-I/O.** No threads,
//! clock, sockets, files or randomness; it takes heartbeats and returns
//! responses, and keeps everything in `BTreeMap`s, so the simulator runs
//! it deterministically. It depends on `tinykv-proto` without `grpc`, so
//! it never pulls in tokio or tonic.
//!
//! # What comes with lab 3c (not built)
//!
//! The real scheduler: balance schedulers that choose operators
//! themselves (region and leader balance across stores, from the store
//! heartbeats), the timestamp oracle, and the `tinykv-scheduler` binary,
//! which wraps the same sans-I/O core in gRPC and a durable fjall engine
//! (ids and timestamps never repeat across a restart).
#![forbid(unsafe_code)]

pub mod mock;
pub mod ranges;

pub use crate::mock::{Breach, BreachKind, MockScheduler, Operator, ScheduleError, Scheduled};
