//! The multi-raft store: peers, peer storage, Ready handling, log GC and snapshots.
//!
//! **Not built yet.** This crate is a placeholder that reserves its place in
//! the workspace layout (see `ARCHITECTURE.md`). It exports nothing and no
//! test or binary depends on it. It arrives with labs 2b, 2c and 3b.
#![forbid(unsafe_code)]
