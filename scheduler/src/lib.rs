//! The scheduler: cluster metadata, region heartbeats, balance schedulers, and the `tinykv-scheduler` binary.
//!
//! **Not built yet.** This crate is a placeholder that reserves its place in
//! the workspace layout (see `ARCHITECTURE.md`). It exports nothing and no
//! test or binary depends on it. It arrives with lab 3c.
#![forbid(unsafe_code)]
