//! The Raft consensus core: tick-driven, no threads, no clocks, no I/O.
//!
//! **Not built yet.** This crate is a placeholder that reserves its place in
//! the workspace layout (see `ARCHITECTURE.md`). It exports nothing and no
//! test or binary depends on it. It arrives with labs 2aa, 2ab, 2ac, the raft part of 2c, and 3a.
#![forbid(unsafe_code)]
