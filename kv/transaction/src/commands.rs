//! [`TxnStore`] and the Percolator commands of lab 4b: `KvGet`,
//! `KvPrewrite`, `KvCommit`. (`KvScan` is in [`crate::scanner`], the
//! commands that clean up after failed transactions in
//! [`crate::recovery`]; both are lab 4c.)
//!
//! Each command runs on one [`TxnStore`]: it latches the keys it may
//! modify ([`Latches`]), reads through an [`MvccTxn`] at the request's
//! start version, decides, and writes everything the transaction
//! collected in one `Storage::write` (or nothing, if any key fails).
//!
//! Errors come in two kinds, as in the raw API:
//!
//! - a **key error** (`KeyError` in the response) is about the data: a
//!   key locked by another transaction (`locked`, with the lock's
//!   `LockInfo`), a write conflict (`conflict`), a transaction that must
//!   retry (`retryable`) or abort (`abort`). The command did nothing;
//! - a **region error** (`region_error`) is about the storage: it failed,
//!   or on the replicated store the region moved. The given wrappers
//!   ([`TxnStore::kv_get`] and friends) turn an `Err` into one.

use std::sync::Arc;

use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, Context, GetRequest, GetResponse, LockInfo, PrewriteRequest,
    PrewriteResponse, ResolveLockRequest, ResolveLockResponse, ScanRequest, ScanResponse,
};
use tinykv_storage::{Storage, StorageReader};

use crate::error::Result;
use crate::latches::Latches;
use crate::record::Lock;
use crate::txn::MvccTxn;
// SOLUTION BEGIN lab 4b
use crate::record::{Write, WriteKind};
use tinykv_proto::kvrpcpb::{KeyError, Op, WriteConflict};
// SOLUTION END

/// The transactional side of a store: its storage and its latches.
#[derive(Debug)]
pub struct TxnStore {
    /// Where the data lives.
    pub storage: Arc<dyn Storage>,
    /// The per-key latches of the commands running on this store.
    pub latches: Latches,
}

impl TxnStore {
    /// Commands over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> TxnStore {
        TxnStore { storage, latches: Latches::new() }
    }

    /// A point-in-time reader for a request's context.
    ///
    /// # Errors
    ///
    /// The storage's error.
    pub fn reader(&self, ctx: Option<&Context>) -> Result<Box<dyn StorageReader>> {
        Ok(self.storage.reader(&ctx.cloned().unwrap_or_default())?)
    }

    /// Writes what `txn` collected (nothing if it collected nothing).
    ///
    /// # Errors
    ///
    /// The storage's error.
    pub fn write(&self, ctx: Option<&Context>, txn: MvccTxn) -> Result<()> {
        let writes = txn.into_writes();
        if !writes.is_empty() {
            self.storage.write(&ctx.cloned().unwrap_or_default(), writes)?;
        }
        Ok(())
    }

    // ----- the gRPC-facing wrappers (given) -----------------------------------

    /// `KvGet` ([`get`](Self::get)), with a storage error as a region error.
    pub fn kv_get(&self, req: &GetRequest) -> GetResponse {
        self.get(req).unwrap_or_else(|e| GetResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    /// `KvPrewrite` ([`prewrite`](Self::prewrite)), with a storage error as
    /// a region error.
    pub fn kv_prewrite(&self, req: &PrewriteRequest) -> PrewriteResponse {
        self.prewrite(req).unwrap_or_else(|e| PrewriteResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    /// `KvCommit` ([`commit`](Self::commit)), with a storage error as a
    /// region error.
    pub fn kv_commit(&self, req: &CommitRequest) -> CommitResponse {
        self.commit(req).unwrap_or_else(|e| CommitResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    /// `KvScan` ([`scan`](Self::scan)), with a storage error as a region
    /// error.
    pub fn kv_scan(&self, req: &ScanRequest) -> ScanResponse {
        self.scan(req).unwrap_or_else(|e| ScanResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    /// `KvCheckTxnStatus` ([`check_txn_status`](Self::check_txn_status)),
    /// with a storage error as a region error.
    pub fn kv_check_txn_status(&self, req: &CheckTxnStatusRequest) -> CheckTxnStatusResponse {
        self.check_txn_status(req).unwrap_or_else(|e| CheckTxnStatusResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    /// `KvBatchRollback` ([`batch_rollback`](Self::batch_rollback)), with a
    /// storage error as a region error.
    pub fn kv_batch_rollback(&self, req: &BatchRollbackRequest) -> BatchRollbackResponse {
        self.batch_rollback(req).unwrap_or_else(|e| BatchRollbackResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    /// `KvResolveLock` ([`resolve_lock`](Self::resolve_lock)), with a
    /// storage error as a region error.
    pub fn kv_resolve_lock(&self, req: &ResolveLockRequest) -> ResolveLockResponse {
        self.resolve_lock(req).unwrap_or_else(|e| ResolveLockResponse {
            region_error: Some(region_error(&e)),
            ..Default::default()
        })
    }

    // ----- the commands (lab 4b) ----------------------------------------------------

    /// `KvGet` (lab 4b): the value of `req.key` at `req.version`.
    ///
    /// - a lock on the key with `ts <= version` may belong to a transaction
    ///   that commits before `version`: answer `locked` with its
    ///   [`lock_info`] and no value (a lock from a later transaction does
    ///   not matter);
    /// - otherwise the value [`MvccTxn::get_value`] sees at `version`, or
    ///   `not_found` (not an error).
    ///
    /// Reads need no latch; nothing is written.
    ///
    /// # Errors
    ///
    /// A storage error (the wrapper turns it into a region error).
    ///
    /// Checked by the `get_*_4b` tests.
    pub fn get(&self, req: &GetRequest) -> Result<GetResponse> {
        // SOLUTION BEGIN lab 4b
        let txn = MvccTxn::new(self.reader(req.context.as_ref())?, req.version);
        if let Some(lock) = txn.get_lock(&req.key)?
            && lock.ts <= req.version
        {
            let error = KeyError { locked: Some(lock_info(&req.key, &lock)), ..Default::default() };
            return Ok(GetResponse { error: Some(error), ..Default::default() });
        }
        Ok(match txn.get_value(&req.key)? {
            Some(value) => GetResponse { value, ..Default::default() },
            None => GetResponse { not_found: true, ..Default::default() },
        })
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4b: TxnStore::get (kv/transaction/src/commands.rs)")
        // SOLUTION END
    }

    /// `KvPrewrite` (lab 4b): latch every mutation's key; then, for each
    /// mutation,
    ///
    /// 1. a write committed at or after `start_version`
    ///    ([`MvccTxn::most_recent_write`]) is a `conflict`
    ///    (`WriteConflict { start_ts, conflict_ts, key, primary }`);
    /// 2. a lock of another transaction (`ts != start_version`) is a
    ///    `locked` error (a lock of this transaction is its own earlier
    ///    prewrite: overwrite it);
    /// 3. otherwise stage it: a `Put` stores its value
    ///    ([`MvccTxn::put_value`]); a `Del` stores none; both lock the key
    ///    (`Lock { primary: primary_lock, ts: start_version, ttl:
    ///    lock_ttl, kind }`, kind `Put` or `Delete`); any other op
    ///    (`Rollback`, `Lock`) is an `abort` error naming it.
    ///
    /// One `KeyError` per failing mutation; if there is any, write nothing.
    ///
    /// # Errors
    ///
    /// A storage error.
    ///
    /// Checked by the `prewrite_*_4b` tests and
    /// `every_modified_key_was_latched_4b`.
    pub fn prewrite(&self, req: &PrewriteRequest) -> Result<PrewriteResponse> {
        // SOLUTION BEGIN lab 4b
        let keys: Vec<Vec<u8>> = req.mutations.iter().map(|m| m.key.clone()).collect();
        let _latched = self.latches.acquire(&keys);
        let mut txn = MvccTxn::new(self.reader(req.context.as_ref())?, req.start_version);
        let mut errors = Vec::new();
        for m in &req.mutations {
            if let Some((_, commit_ts)) = txn.most_recent_write(&m.key)?
                && commit_ts >= req.start_version
            {
                let conflict = WriteConflict {
                    start_ts: req.start_version,
                    conflict_ts: commit_ts,
                    key: m.key.clone(),
                    primary: req.primary_lock.clone(),
                };
                errors.push(KeyError { conflict: Some(conflict), ..Default::default() });
                continue;
            }
            if let Some(lock) = txn.get_lock(&m.key)?
                && lock.ts != req.start_version
            {
                errors.push(KeyError {
                    locked: Some(lock_info(&m.key, &lock)),
                    ..Default::default()
                });
                continue;
            }
            let kind = match m.op() {
                Op::Put => {
                    txn.put_value(&m.key, &m.value);
                    WriteKind::Put
                }
                Op::Del => WriteKind::Delete,
                other => {
                    let abort = format!("prewrite does not take {other:?} mutations");
                    errors.push(KeyError { abort, ..Default::default() });
                    continue;
                }
            };
            let lock = Lock {
                primary: req.primary_lock.clone(),
                ts: req.start_version,
                ttl: req.lock_ttl,
                kind,
            };
            txn.put_lock(&m.key, &lock);
        }
        if errors.is_empty() {
            self.write(req.context.as_ref(), txn)?;
        }
        Ok(PrewriteResponse { errors, ..Default::default() })
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4b: TxnStore::prewrite (kv/transaction/src/commands.rs)")
        // SOLUTION END
    }

    /// `KvCommit` (lab 4b): latch the keys; then, for each key,
    ///
    /// - this transaction's lock (`ts == start_version`): put a write
    ///   record at `commit_version` of the lock's kind, pointing to
    ///   `start_version`, and delete the lock;
    /// - otherwise (another transaction's lock, or none), look at this
    ///   transaction's write ([`MvccTxn::current_write`]): already
    ///   committed: fine, nothing to do (a repeated commit, or someone
    ///   resolved the lock and another transaction has locked the key
    ///   since); rolled back: an `abort` error; no write either: a
    ///   `retryable` error if another transaction holds the key, else
    ///   nothing to do.
    ///
    /// On any error, write nothing.
    ///
    /// # Errors
    ///
    /// A storage error.
    ///
    /// Checked by the `commit_*_4b` tests and
    /// `every_modified_key_was_latched_4b`.
    pub fn commit(&self, req: &CommitRequest) -> Result<CommitResponse> {
        // SOLUTION BEGIN lab 4b
        let _latched = self.latches.acquire(&req.keys);
        let mut txn = MvccTxn::new(self.reader(req.context.as_ref())?, req.start_version);
        for key in &req.keys {
            let error = match txn.get_lock(key)? {
                Some(lock) if lock.ts == req.start_version => {
                    let write = Write { start_ts: req.start_version, kind: lock.kind };
                    txn.put_write(key, req.commit_version, &write);
                    txn.delete_lock(key);
                    continue;
                }
                other_lock => match (txn.current_write(key)?, other_lock) {
                    (Some((write, _)), _) if write.kind == WriteKind::Rollback => KeyError {
                        abort: format!(
                            "the transaction started at {} was rolled back",
                            req.start_version
                        ),
                        ..Default::default()
                    },
                    (Some(_), _) | (None, None) => continue,
                    (None, Some(lock)) => KeyError {
                        retryable: format!(
                            "key {} is locked by the transaction started at {}",
                            key.escape_ascii(),
                            lock.ts
                        ),
                        ..Default::default()
                    },
                },
            };
            return Ok(CommitResponse { error: Some(error), ..Default::default() });
        }
        self.write(req.context.as_ref(), txn)?;
        Ok(CommitResponse::default())
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4b: TxnStore::commit (kv/transaction/src/commands.rs)")
        // SOLUTION END
    }
}

/// The `LockInfo` of `lock` on `key`, for a `locked` key error.
pub fn lock_info(key: &[u8], lock: &Lock) -> LockInfo {
    LockInfo {
        primary_lock: lock.primary.clone(),
        lock_version: lock.ts,
        key: key.to_vec(),
        lock_ttl: lock.ttl,
    }
}

/// An error of a command as the protocol's region error: the storage's
/// own region error intact (`not_leader`, `epoch_not_match`, ...), or
/// any other failure (the engine, corrupt data) as its message.
pub fn region_error(e: &crate::Error) -> errorpb::Error {
    match e {
        crate::Error::Storage(tinykv_storage::Error::Region(pb)) => (**pb).clone(),
        _ => errorpb::Error { message: e.to_string(), ..Default::default() },
    }
}
