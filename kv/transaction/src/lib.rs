//! MVCC and the Percolator transaction commands.
//!
//! **Not built yet.** This crate is a placeholder that reserves its place in
//! the workspace layout (see `ARCHITECTURE.md`). It exports nothing and no
//! test or binary depends on it. It arrives with labs 4a, 4b and 4c.
#![forbid(unsafe_code)]
