//! The commands that clean up after a transaction that failed or stalled
//! (lab 4c): `KvCheckTxnStatus`, `KvBatchRollback`, `KvResolveLock`.
//!
//! A client that finds a key locked (a `locked` key error from `KvGet`,
//! `KvPrewrite` or `KvScan`) cannot tell whether the lock's transaction is
//! still running, committed, or died. Its primary key decides:
//!
//! 1. `KvCheckTxnStatus` on the lock's primary: still locked and alive
//!    (within its TTL), committed (at which ts), or rolled back. An
//!    expired primary lock is rolled back on the spot, and a primary with
//!    neither lock nor write gets a rollback record, so the transaction
//!    can never commit afterwards.
//! 2. `KvResolveLock` then does the same to all the transaction's other
//!    locks: commit them at the primary's commit ts, or roll them back.
//!
//! `KvBatchRollback` is what a client sends to abort its own transaction.
//!
//! A **rollback record** is a `Write { kind: Rollback, start_ts }` in the
//! `write` CF at `encode_key(key, start_ts)` (a rolled-back transaction
//! has no commit ts, so it uses its start ts). It stops a late prewrite or
//! commit of that transaction, and readers skip it.

use tinykv_proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    KeyError, ResolveLockRequest, ResolveLockResponse,
};

use crate::commands::TxnStore;
use crate::error::Result;
use crate::txn::MvccTxn;
// SOLUTION BEGIN lab 4c
use crate::record::{Lock, Write, WriteKind};
use crate::ts::lock_expired;
use std::collections::BTreeSet;
use tinykv_engine::Cf;
use tinykv_proto::kvrpcpb::{Action, CommitRequest};
// SOLUTION END

impl TxnStore {
    /// `KvCheckTxnStatus` (lab 4c): the state of the transaction started
    /// at `req.lock_ts`, told by its primary key `req.primary_key`. Latch
    /// the primary; then
    ///
    /// - **the transaction's lock is on the primary** (`lock.ts ==
    ///   lock_ts`): if it expired at `req.current_ts`
    ///   ([`crate::ts::lock_expired`]: TTL in ms on the physical parts),
    ///   roll the primary back ([`rollback_key`]) and answer
    ///   `TtlExpireRollback`; otherwise answer its `lock_ttl` (nothing
    ///   written);
    /// - **no such lock**, look at the transaction's write of the primary
    ///   ([`MvccTxn::current_write`]): committed → `commit_version` = its
    ///   commit ts; rolled back → all zero; neither → write a rollback
    ///   record ([`rollback_key`]) and answer `LockNotExistRollback`.
    ///
    /// A lock of another transaction on the primary is not this
    /// transaction's: leave it alone.
    ///
    /// # Errors
    ///
    /// A storage error (the wrapper turns it into a region error).
    ///
    /// Checked by the `check_txn_status_*_4c` tests.
    pub fn check_txn_status(&self, req: &CheckTxnStatusRequest) -> Result<CheckTxnStatusResponse> {
        // SOLUTION BEGIN lab 4c
        let primary = &req.primary_key;
        let _latched = self.latches.acquire(std::slice::from_ref(primary));
        let mut txn = MvccTxn::new(self.reader(req.context.as_ref())?, req.lock_ts);
        let mut resp = CheckTxnStatusResponse::default();
        match txn.get_lock(primary)? {
            Some(lock) if lock.ts == req.lock_ts => {
                if !lock_expired(lock.ts, lock.ttl, req.current_ts) {
                    resp.lock_ttl = lock.ttl;
                    return Ok(resp);
                }
                rollback_primary(&mut txn, primary)?;
                resp.set_action(Action::TtlExpireRollback);
            }
            _ => match txn.current_write(primary)? {
                Some((write, commit_ts)) if write.kind != WriteKind::Rollback => {
                    resp.commit_version = commit_ts;
                }
                Some(_) => {}
                None => {
                    rollback_primary(&mut txn, primary)?;
                    resp.set_action(Action::LockNotExistRollback);
                }
            },
        }
        self.write(req.context.as_ref(), txn)?;
        Ok(resp)
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: TxnStore::check_txn_status (kv/transaction/src/recovery.rs)")
        // SOLUTION END
    }

    /// `KvBatchRollback` (lab 4c): roll back the transaction started at
    /// `req.start_version` on each of `req.keys` (a key may repeat). Latch
    /// the keys; then, for each key ([`rollback_key`]):
    ///
    /// - already rolled back: nothing to do;
    /// - committed: an `abort` error, and write nothing at all;
    /// - otherwise remove this transaction's lock and value if it has them
    ///   (a lock of another transaction stays), and write a rollback
    ///   record, even when there was no lock: a prewrite that arrives late
    ///   must find it.
    ///
    /// # Errors
    ///
    /// A storage error.
    ///
    /// Checked by the `rollback_*_4c` tests.
    pub fn batch_rollback(&self, req: &BatchRollbackRequest) -> Result<BatchRollbackResponse> {
        // SOLUTION BEGIN lab 4c
        let _latched = self.latches.acquire(&req.keys);
        let mut txn = MvccTxn::new(self.reader(req.context.as_ref())?, req.start_version);
        let keys: BTreeSet<&Vec<u8>> = req.keys.iter().collect();
        for key in keys {
            if let Some(error) = rollback_key(&mut txn, key)? {
                return Ok(BatchRollbackResponse { error: Some(error), ..Default::default() });
            }
        }
        self.write(req.context.as_ref(), txn)?;
        Ok(BatchRollbackResponse::default())
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: TxnStore::batch_rollback (kv/transaction/src/recovery.rs)")
        // SOLUTION END
    }

    /// `KvResolveLock` (lab 4c): finish every lock of the transaction
    /// started at `req.start_version`: commit them at
    /// `req.commit_version`, or roll them back if it is 0.
    ///
    /// Find the keys by reading the whole `lock` CF (locks of other
    /// transactions stay; a record there that is not a lock, which the
    /// raw API may have written, belongs to no transaction), then run [`commit`](TxnStore::commit) or
    /// [`batch_rollback`](TxnStore::batch_rollback) on them: those latch
    /// the keys and check each one again, so a lock resolved meanwhile by
    /// someone else is fine. Their key error is this command's. No locks:
    /// nothing to do.
    ///
    /// # Errors
    ///
    /// A storage error.
    ///
    /// Checked by the `resolve_*_4c` tests.
    pub fn resolve_lock(&self, req: &ResolveLockRequest) -> Result<ResolveLockResponse> {
        // SOLUTION BEGIN lab 4c
        let reader = self.reader(req.context.as_ref())?;
        let mut keys = Vec::new();
        for pair in reader.iter_cf(Cf::Lock, b"") {
            let (key, bytes) = pair?;
            // A record that is not a lock (a raw write put it there)
            // belongs to no transaction.
            if Lock::parse(&bytes).is_ok_and(|lock| lock.ts == req.start_version) {
                keys.push(key);
            }
        }
        let error: Option<KeyError> = if keys.is_empty() {
            None
        } else if req.commit_version == 0 {
            let rollback = BatchRollbackRequest {
                context: req.context,
                start_version: req.start_version,
                keys,
            };
            self.batch_rollback(&rollback)?.error
        } else {
            let commit = CommitRequest {
                context: req.context,
                start_version: req.start_version,
                keys,
                commit_version: req.commit_version,
            };
            self.commit(&commit)?.error
        };
        Ok(ResolveLockResponse { error, ..Default::default() })
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: TxnStore::resolve_lock (kv/transaction/src/recovery.rs)")
        // SOLUTION END
    }
}

// SOLUTION BEGIN lab 4c
/// [`rollback_key`] for a primary that has no commit of `txn` (checked,
/// or implied by `txn`'s lock on it): a commit there means the data is
/// inconsistent.
fn rollback_primary(txn: &mut MvccTxn, primary: &[u8]) -> Result<()> {
    match rollback_key(txn, primary)? {
        None => Ok(()),
        Some(e) => Err(crate::Error::Corrupt(format!(
            "the primary {} is both locked and committed by the transaction started at {}: {}",
            primary.escape_ascii(),
            txn.start_ts,
            e.abort
        ))),
    }
}
// SOLUTION END

/// Rolls back `txn`'s write of `key` (lab 4c), for
/// [`TxnStore::batch_rollback`] and [`TxnStore::check_txn_status`]:
///
/// - `txn` already rolled `key` back: nothing to do, `None`;
/// - `txn` committed `key`: `Some(abort error)`, nothing collected;
/// - otherwise: delete `txn`'s lock on `key` and, for a `Put` lock, its
///   value; then put a rollback record at `encode_key(key,
///   txn.start_ts)`; `None`.
///
/// # Errors
///
/// A storage error, or corrupt data.
pub fn rollback_key(txn: &mut MvccTxn, key: &[u8]) -> Result<Option<KeyError>> {
    // SOLUTION BEGIN lab 4c
    match txn.current_write(key)? {
        Some((write, _)) if write.kind == WriteKind::Rollback => return Ok(None),
        Some((_, commit_ts)) => {
            let abort = format!(
                "key {} of the transaction started at {} was committed at {commit_ts}; \
                 it cannot be rolled back",
                key.escape_ascii(),
                txn.start_ts
            );
            return Ok(Some(KeyError { abort, ..Default::default() }));
        }
        None => {}
    }
    if let Some(lock) = txn.get_lock(key)?
        && lock.ts == txn.start_ts
    {
        txn.delete_lock(key);
        if lock.kind == WriteKind::Put {
            txn.delete_value(key);
        }
    }
    let start_ts = txn.start_ts;
    txn.put_write(key, start_ts, &Write { start_ts, kind: WriteKind::Rollback });
    Ok(None)
    // SOLUTION STUB
    // let _ = (txn, key);
    // todo!("lab 4c: rollback_key (kv/transaction/src/recovery.rs)")
    // SOLUTION END
}
