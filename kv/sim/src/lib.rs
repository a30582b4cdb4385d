//! The deterministic simulator: virtual clock, seeded network and disk faults, cluster harness, linearizability checker.
//!
//! **Not built yet.** This crate is a placeholder that reserves its place in
//! the workspace layout (see `ARCHITECTURE.md`). It exports nothing and no
//! test or binary depends on it. It arrives with lab 2b.
#![forbid(unsafe_code)]
