//! Labs 4b and 4c: the transactional API.
//!
//! One handler per `Kv*` RPC. Each one checks its request (keys and
//! values within [`crate::limits`]) and then runs the command of
//! [`tinykv_transaction::TxnStore`] (`self.txn()`), whose given `kv_*`
//! wrappers already turn a storage failure into a region error.
//!
//! A request that fails a check changes nothing, and its message goes
//! where the response has room for it: a `KeyError { abort }` for the
//! RPCs with key errors, or `region_error.message` for `KvScan` and
//! `KvCheckTxnStatus`, which have none.
//!
//! Read `docs/src/lab4-transactions.md`; the server side is checked by
//! `kv/server/tests/project4_server.rs` (`make project4b`, `make
//! project4c`).

use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, GetRequest, GetResponse, KeyError, Mutation, Op,
    PrewriteRequest, PrewriteResponse, ResolveLockRequest, ResolveLockResponse, ScanRequest,
    ScanResponse,
};

use crate::Server;
use crate::limits::{InvalidRequest, check_key, check_value};
// SOLUTION BEGIN lab 4c
use crate::limits::{MAX_SCAN_LIMIT, check_start_key};
// SOLUTION END

impl Server {
    /// **Lab 4b.** `KvGet`: check the key ([`check_key`]), then
    /// `TxnStore::kv_get`. A bad key: `error.abort` says why.
    ///
    /// Checked by `kv_get_prewrite_and_commit_go_through_the_server_4b`
    /// and `bad_transactional_requests_change_nothing_4b`.
    pub fn kv_get(&self, req: GetRequest) -> GetResponse {
        // SOLUTION BEGIN lab 4b
        match check_key(&req.key) {
            Ok(()) => self.txn().kv_get(&req),
            Err(e) => GetResponse { error: Some(abort(&e)), ..Default::default() },
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4b: Server::kv_get (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }

    /// **Lab 4b.** `KvPrewrite`: check every mutation
    /// ([`check_mutations`]); any bad one gives its `abort` errors and
    /// nothing is written. Then `TxnStore::kv_prewrite`.
    ///
    /// Checked by `kv_get_prewrite_and_commit_go_through_the_server_4b`
    /// and `bad_transactional_requests_change_nothing_4b`.
    pub fn kv_prewrite(&self, req: PrewriteRequest) -> PrewriteResponse {
        // SOLUTION BEGIN lab 4b
        let errors = check_mutations(&req);
        if !errors.is_empty() {
            return PrewriteResponse { errors, ..Default::default() };
        }
        self.txn().kv_prewrite(&req)
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4b: Server::kv_prewrite (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }

    /// **Lab 4b.** `KvCommit`: check the request ([`check_commit`]: the
    /// keys, and a commit version above the start version), then
    /// `TxnStore::kv_commit`. A bad request: `error.abort` says why.
    ///
    /// Checked by `kv_get_prewrite_and_commit_go_through_the_server_4b`
    /// and `bad_transactional_requests_change_nothing_4b`.
    pub fn kv_commit(&self, req: CommitRequest) -> CommitResponse {
        // SOLUTION BEGIN lab 4b
        match check_commit(&req) {
            Ok(()) => self.txn().kv_commit(&req),
            Err(e) => CommitResponse { error: Some(abort(&e)), ..Default::default() },
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4b: Server::kv_commit (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }

    /// **Lab 4c.** `KvScan`: check the start key ([`check_start_key`])
    /// and that the limit is at most [`MAX_SCAN_LIMIT`] (0 is fine: no
    /// pairs), then `TxnStore::kv_scan`. A bad request: its message in
    /// `region_error`.
    ///
    /// Checked by `kv_scan_and_the_recovery_commands_go_through_the_server_4c`
    /// and `bad_scan_and_recovery_requests_are_clear_errors_4c`.
    pub fn kv_scan(&self, req: ScanRequest) -> ScanResponse {
        // SOLUTION BEGIN lab 4c
        let checked = check_start_key(&req.start_key).and_then(|()| {
            if req.limit > MAX_SCAN_LIMIT {
                return Err(InvalidRequest(format!(
                    "scan limit {} is larger than the maximum of {MAX_SCAN_LIMIT}",
                    req.limit
                )));
            }
            Ok(())
        });
        match checked {
            Ok(()) => self.txn().kv_scan(&req),
            Err(e) => ScanResponse { region_error: Some(invalid(&e)), ..Default::default() },
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: Server::kv_scan (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }

    /// **Lab 4c.** `KvCheckTxnStatus`: check the primary key, then
    /// `TxnStore::kv_check_txn_status`. A bad key: its message in
    /// `region_error`.
    ///
    /// Checked by `kv_scan_and_the_recovery_commands_go_through_the_server_4c`
    /// and `bad_scan_and_recovery_requests_are_clear_errors_4c`.
    pub fn kv_check_txn_status(&self, req: CheckTxnStatusRequest) -> CheckTxnStatusResponse {
        // SOLUTION BEGIN lab 4c
        match check_key(&req.primary_key) {
            Ok(()) => self.txn().kv_check_txn_status(&req),
            Err(e) => {
                CheckTxnStatusResponse { region_error: Some(invalid(&e)), ..Default::default() }
            }
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: Server::kv_check_txn_status (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }

    /// **Lab 4c.** `KvBatchRollback`: check the keys, then
    /// `TxnStore::kv_batch_rollback`.
    ///
    /// Checked by `kv_scan_and_the_recovery_commands_go_through_the_server_4c`
    /// and `bad_scan_and_recovery_requests_are_clear_errors_4c`.
    pub fn kv_batch_rollback(&self, req: BatchRollbackRequest) -> BatchRollbackResponse {
        // SOLUTION BEGIN lab 4c
        match check_keys(&req.keys) {
            Ok(()) => self.txn().kv_batch_rollback(&req),
            Err(e) => BatchRollbackResponse { error: Some(abort(&e)), ..Default::default() },
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: Server::kv_batch_rollback (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }

    /// **Lab 4c.** `KvResolveLock`: check the commit version
    /// ([`check_resolve`]: 0 to roll back, or above the start version),
    /// then `TxnStore::kv_resolve_lock`. A bad request: `error.abort`.
    ///
    /// Checked by `kv_scan_and_the_recovery_commands_go_through_the_server_4c`
    /// and `bad_scan_and_recovery_requests_are_clear_errors_4c`.
    pub fn kv_resolve_lock(&self, req: ResolveLockRequest) -> ResolveLockResponse {
        // SOLUTION BEGIN lab 4c
        match check_resolve(&req) {
            Ok(()) => self.txn().kv_resolve_lock(&req),
            Err(e) => ResolveLockResponse { error: Some(abort(&e)), ..Default::default() },
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: Server::kv_resolve_lock (kv/server/src/txn_api.rs)")
        // SOLUTION END
    }
}

/// The `abort` key errors of a prewrite request that breaks the protocol
/// (given): one if the primary key is empty or too long (its lock could
/// never be found again), and one per mutation whose key or value breaks a
/// limit or whose `op` is not `Put` or `Del` (an `op` outside the enum
/// would otherwise read as `Put`, its default).
pub fn check_mutations(req: &PrewriteRequest) -> Vec<KeyError> {
    let primary = check_key(&req.primary_lock)
        .map_err(|e| InvalidRequest(format!("primary_lock: {}", e.0)))
        .err();
    let mutations = req.mutations.iter().filter_map(|m| check_mutation(m).err());
    primary.into_iter().chain(mutations).map(|e| abort(&e)).collect()
}

/// Checks one mutation of a prewrite (given): key, value, and an `op` of
/// `Put` or `Del`.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_mutation(m: &Mutation) -> Result<(), InvalidRequest> {
    check_key(&m.key)?;
    check_value(&m.value)?;
    match Op::try_from(m.op) {
        Ok(Op::Put | Op::Del) => Ok(()),
        Ok(other) => Err(InvalidRequest(format!(
            "a prewrite takes Put and Del mutations, not {other:?} (key {})",
            m.key.escape_ascii()
        ))),
        Err(_) => Err(InvalidRequest(format!(
            "mutation op {} is not one of the protocol's (Put = 0, Del = 1) (key {})",
            m.op,
            m.key.escape_ascii()
        ))),
    }
}

/// Checks a commit request (given): its keys, and a commit version above
/// the start version (a transaction commits after it started; a commit
/// below it would make a value appear under a read that already
/// happened).
///
/// # Errors
///
/// The first thing wrong with it.
pub fn check_commit(req: &CommitRequest) -> Result<(), InvalidRequest> {
    check_keys(&req.keys)?;
    check_commit_version(req.start_version, req.commit_version)
}

/// Checks a resolve-lock request (given): a commit version of 0 (roll
/// back) or above the start version.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_resolve(req: &ResolveLockRequest) -> Result<(), InvalidRequest> {
    match req.commit_version {
        0 => Ok(()),
        commit => check_commit_version(req.start_version, commit),
    }
}

fn check_commit_version(start_version: u64, commit_version: u64) -> Result<(), InvalidRequest> {
    if commit_version <= start_version {
        return Err(InvalidRequest(format!(
            "commit_version {commit_version} must be greater than start_version {start_version}"
        )));
    }
    Ok(())
}

/// Checks every key of a request (given).
///
/// # Errors
///
/// The first key that breaks a limit.
pub fn check_keys(keys: &[Vec<u8>]) -> Result<(), InvalidRequest> {
    keys.iter().try_for_each(|k| check_key(k))
}

/// A bad request as an `abort` key error (given).
pub fn abort(e: &InvalidRequest) -> KeyError {
    KeyError { abort: e.to_string(), ..Default::default() }
}

/// A bad request as a region error, for responses without a key error
/// (given).
pub fn invalid(e: &InvalidRequest) -> errorpb::Error {
    errorpb::Error { message: e.to_string(), ..Default::default() }
}
