//! Request builders (given): the lab 4 tests and `tinykv-ctl` make their
//! requests here, so that a test reads as what it sends.
//!
//! ```
//! use tinykv_transaction::requests::{self, PrewriteBuilder};
//!
//! let prewrite = PrewriteBuilder::new(b"k1", 10).put(b"k1", b"v1").delete(b"k2").ttl(3000).build();
//! assert_eq!(prewrite.mutations.len(), 2);
//! let commit = requests::commit(10, 11, &[b"k1", b"k2"]);
//! assert_eq!(commit.keys, vec![b"k1".to_vec(), b"k2".to_vec()]);
//! ```

use tinykv_proto::kvrpcpb::{
    BatchRollbackRequest, CheckTxnStatusRequest, CommitRequest, GetRequest, Mutation, Op,
    PrewriteRequest, ResolveLockRequest, ScanRequest,
};

/// The lock TTL [`PrewriteBuilder`] uses unless told otherwise (ms).
pub const DEFAULT_TTL_MS: u64 = 3000;

/// `KvGet` of `key` at `version`.
pub fn get(key: &[u8], version: u64) -> GetRequest {
    GetRequest { key: key.to_vec(), version, ..Default::default() }
}

/// `KvScan` of up to `limit` keys from `start_key` on, at `version`.
pub fn scan(start_key: &[u8], limit: u32, version: u64) -> ScanRequest {
    ScanRequest { start_key: start_key.to_vec(), limit, version, ..Default::default() }
}

/// `KvCommit` of `keys` for the transaction started at `start`, at
/// `commit`.
pub fn commit(start: u64, commit: u64, keys: &[&[u8]]) -> CommitRequest {
    CommitRequest {
        start_version: start,
        commit_version: commit,
        keys: to_vecs(keys),
        ..Default::default()
    }
}

/// `KvCheckTxnStatus` of the transaction started at `lock_ts` whose
/// primary is `primary`, at `current_ts`.
pub fn check_txn_status(primary: &[u8], lock_ts: u64, current_ts: u64) -> CheckTxnStatusRequest {
    CheckTxnStatusRequest {
        primary_key: primary.to_vec(),
        lock_ts,
        current_ts,
        ..Default::default()
    }
}

/// `KvBatchRollback` of `keys` for the transaction started at `start`.
pub fn batch_rollback(start: u64, keys: &[&[u8]]) -> BatchRollbackRequest {
    BatchRollbackRequest { start_version: start, keys: to_vecs(keys), ..Default::default() }
}

/// `KvResolveLock` of the transaction started at `start`: commit at
/// `commit`, or roll back if `commit` is 0.
pub fn resolve_lock(start: u64, commit: u64) -> ResolveLockRequest {
    ResolveLockRequest { start_version: start, commit_version: commit, ..Default::default() }
}

/// Builds a `KvPrewrite`: a primary, a start ts, mutations, a TTL.
#[derive(Debug, Clone)]
pub struct PrewriteBuilder {
    req: PrewriteRequest,
}

impl PrewriteBuilder {
    /// A prewrite of the transaction started at `start` with primary key
    /// `primary`, no mutations yet, TTL [`DEFAULT_TTL_MS`].
    pub fn new(primary: &[u8], start: u64) -> PrewriteBuilder {
        let req = PrewriteRequest {
            primary_lock: primary.to_vec(),
            start_version: start,
            lock_ttl: DEFAULT_TTL_MS,
            ..Default::default()
        };
        PrewriteBuilder { req }
    }

    /// Adds a `Put` of `key` to `value`.
    pub fn put(mut self, key: &[u8], value: &[u8]) -> PrewriteBuilder {
        self.req.mutations.push(Mutation {
            op: Op::Put as i32,
            key: key.to_vec(),
            value: value.to_vec(),
        });
        self
    }

    /// Adds a `Del` of `key`.
    pub fn delete(mut self, key: &[u8]) -> PrewriteBuilder {
        self.req.mutations.push(Mutation { op: Op::Del as i32, key: key.to_vec(), value: vec![] });
        self
    }

    /// Sets the lock TTL (ms).
    pub fn ttl(mut self, ttl_ms: u64) -> PrewriteBuilder {
        self.req.lock_ttl = ttl_ms;
        self
    }

    /// The request.
    pub fn build(self) -> PrewriteRequest {
        self.req
    }
}

fn to_vecs(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}
