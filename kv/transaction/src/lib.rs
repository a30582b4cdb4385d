//! MVCC and the Percolator transaction commands (labs 4a, 4b, 4c).
//!
//! | module | what | lab |
//! |---|---|---|
//! | [`codec`] | MVCC keys: memcomparable user key ++ negated timestamp | given |
//! | [`record`] | `Write` and `Lock` records and their bytes | given |
//! | [`txn`] | [`MvccTxn`]: reads at a start ts, collects writes | 4a |
//! | [`latches`] | per-key latches for commands | given |
//! | [`commands`] | [`TxnStore`]: `KvGet`, `KvPrewrite`, `KvCommit` | 4b |
//! | [`mem_storage`] | an in-memory `Storage` for the tests | given |
//!
//! The commands of lab 4c arrive next.
#![forbid(unsafe_code)]

pub mod codec;
pub mod commands;
pub mod error;
pub mod latches;
pub mod mem_storage;
pub mod record;
pub mod txn;

pub use crate::commands::TxnStore;
pub use crate::error::{Error, Result};
pub use crate::latches::Latches;
pub use crate::mem_storage::MemStorage;
pub use crate::record::{Lock, Write, WriteKind};
pub use crate::txn::MvccTxn;
