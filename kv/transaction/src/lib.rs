//! MVCC and the Percolator transaction commands (labs 4a, 4b, 4c).
//!
//! | module | what | lab |
//! |---|---|---|
//! | [`codec`] | MVCC keys: memcomparable user key ++ negated timestamp | given |
//! | [`record`] | `Write` and `Lock` records and their bytes | given |
//! | [`txn`] | [`MvccTxn`]: reads at a start ts, collects writes | 4a |
//! | [`latches`] | per-key latches for commands | given |
//! | [`commands`] | [`TxnStore`]: `KvGet`, `KvPrewrite`, `KvCommit` | 4b |
//! | [`scanner`] | [`Scanner`] and `KvScan` | 4c |
//! | [`recovery`] | `KvCheckTxnStatus`, `KvBatchRollback`, `KvResolveLock` | 4c |
//! | [`ts`] | timestamps: physical ms ++ 18-bit logical counter | given |
//! | [`mem_storage`] | an in-memory `Storage` for the tests | given |
//! | [`requests`] | request builders for the tests and `tinykv-ctl` | given |
#![forbid(unsafe_code)]

pub mod codec;
pub mod commands;
pub mod error;
pub mod latches;
pub mod mem_storage;
pub mod record;
pub mod recovery;
pub mod requests;
pub mod scanner;
pub mod ts;
pub mod txn;

pub use crate::commands::TxnStore;
pub use crate::error::{Error, Result};
pub use crate::latches::Latches;
pub use crate::mem_storage::MemStorage;
pub use crate::record::{Lock, Write, WriteKind};
pub use crate::scanner::{ScanItem, Scanner};
pub use crate::txn::MvccTxn;
