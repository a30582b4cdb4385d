//! Lab 1: the raw key-value API.
//!
//! Four handlers, one per RPC: [`Server::raw_get`], [`Server::raw_put`],
//! [`Server::raw_delete`] and [`Server::raw_scan`]. Each one:
//!
//! 1. checks its request with the functions in [`crate::limits`]
//!    (column family, key, value, scan limit);
//! 2. calls the storage: [`Storage::write`](tinykv_storage::Storage::write)
//!    with a list of [`tinykv_storage::Modify`], or
//!    [`Storage::reader`](tinykv_storage::Storage::reader) and then
//!    `get_cf` / `iter_cf`;
//! 3. fills in the response.
//!
//! Errors never become panics or gRPC errors: a failed request answers
//! [`failed`]`(&err)`, which puts the message in the response's `error`
//! field and, when the storage refused with a region error (on the
//! replicated store: not the leader, region not found, ...), that error
//! in `region_error` too, so a client can act on its fields. Nothing is
//! written then. A missing key is *not* an error: `raw_get` answers
//! `not_found = true`.
//!
//! A scan's answer is bounded by a [`ScanBudget`]: its limit, and
//! [`MAX_SCAN_BYTES`](tinykv_storage::MAX_SCAN_BYTES) of keys and values,
//! so that it always fits in one gRPC message.
//!
//! Read `docs/src/lab1-standalone-kv.md`; the tests are in
//! `kv/server/tests/project1.rs` (run `make project1`).

use tinykv_proto::kvrpcpb::{
    RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse,
};

use tinykv_proto::errorpb;
pub use tinykv_storage::ScanBudget;

use crate::Server;
// SOLUTION BEGIN lab 1
use tinykv_proto::kvrpcpb::{Context, KvPair};
use tinykv_storage::Modify;

use crate::limits::{check_key, check_scan_limit, check_start_key, check_value, parse_cf};
// SOLUTION END

/// Any error a raw handler reports in its response: a check's
/// [`InvalidRequest`](crate::limits::InvalidRequest), a
/// [`tinykv_storage::Error`], ... (`?` converts them).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

impl Server {
    /// **Lab 1.** Reads `req.key` from column family `req.cf`.
    ///
    /// Found: `value` is set. Missing: `not_found = true` (and no error).
    /// Bad request (unknown column family, empty or oversized key) or
    /// storage failure: answer [`failed`]`(&err)`.
    ///
    /// Checked by `raw_get_after_put_1`, `raw_get_missing_key_not_found_1`,
    /// `unknown_cf_is_a_clear_error_1`.
    pub fn raw_get(&self, req: RawGetRequest) -> RawGetResponse {
        // SOLUTION BEGIN lab 1
        match self.read_one(&req) {
            Ok(Some(value)) => RawGetResponse { value, ..Default::default() },
            Ok(None) => RawGetResponse { not_found: true, ..Default::default() },
            Err(err) => failed(&err),
        }
        // SOLUTION STUB
        // let _ = (req, &self.storage);
        // todo!("lab 1: Server::raw_get (kv/server/src/raw_api.rs)")
        // SOLUTION END
    }

    /// **Lab 1.** Sets `req.key` to `req.value` in column family `req.cf`,
    /// durably (one [`tinykv_storage::Modify::Put`] written
    /// through the storage).
    ///
    /// Bad request (unknown column family, empty or oversized key, oversized
    /// value) or storage failure: answer [`failed`]`(&err)`; nothing is
    /// written.
    ///
    /// Checked by `raw_get_after_put_1`, `raw_put_visible_through_reader_1`,
    /// `bad_input_is_rejected_and_changes_nothing_1`.
    pub fn raw_put(&self, req: RawPutRequest) -> RawPutResponse {
        // SOLUTION BEGIN lab 1
        match self.write_one(req.context, &req.cf, &req.key, Some(&req.value)) {
            Ok(()) => RawPutResponse::default(),
            Err(err) => failed(&err),
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 1: Server::raw_put (kv/server/src/raw_api.rs)")
        // SOLUTION END
    }

    /// **Lab 1.** Removes `req.key` from column family `req.cf`. Deleting a
    /// missing key succeeds.
    ///
    /// Bad request or storage failure: answer [`failed`]`(&err)`; nothing
    /// is written.
    ///
    /// Checked by `raw_get_after_delete_1`, `raw_delete_1`.
    pub fn raw_delete(&self, req: RawDeleteRequest) -> RawDeleteResponse {
        // SOLUTION BEGIN lab 1
        match self.write_one(req.context, &req.cf, &req.key, None) {
            Ok(()) => RawDeleteResponse::default(),
            Err(err) => failed(&err),
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 1: Server::raw_delete (kv/server/src/raw_api.rs)")
        // SOLUTION END
    }

    /// **Lab 1.** Returns up to `req.limit` pairs of column family `req.cf`
    /// whose keys are `>= req.start_key`, in ascending key order. An empty
    /// start key scans from the first key. All pairs come from ONE reader, so
    /// the result is a consistent snapshot. Count every pair with a
    /// [`ScanBudget`] of the limit and stop before the first pair it
    /// refuses: an answer never carries more than
    /// [`MAX_SCAN_BYTES`](tinykv_storage::MAX_SCAN_BYTES) of keys and
    /// values.
    ///
    /// Bad request (unknown column family, limit 0 or above
    /// [`MAX_SCAN_LIMIT`](crate::limits::MAX_SCAN_LIMIT), oversized start
    /// key) or storage failure: [`failed`], and `kvs` is empty.
    ///
    /// Checked by `raw_scan_from_start_with_limit_1`,
    /// `raw_scan_sees_new_key_1`, `raw_scan_skips_deleted_key_1`,
    /// `raw_scan_stops_at_the_byte_budget_1`.
    pub fn raw_scan(&self, req: RawScanRequest) -> RawScanResponse {
        // SOLUTION BEGIN lab 1
        match self.scan(&req) {
            Ok(kvs) => RawScanResponse { kvs, ..Default::default() },
            Err(err) => failed(&err),
        }
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 1: Server::raw_scan (kv/server/src/raw_api.rs)")
        // SOLUTION END
    }
}

// SOLUTION BEGIN lab 1
impl Server {
    fn read_one(&self, req: &RawGetRequest) -> Result<Option<Vec<u8>>, HandlerError> {
        let cf = parse_cf(&req.cf)?;
        check_key(&req.key)?;
        let reader = self.storage.reader(&context(req.context))?;
        Ok(reader.get_cf(cf, &req.key)?)
    }

    /// Writes `key = value` (or deletes `key` when `value` is `None`) after
    /// checking every input.
    fn write_one(
        &self,
        ctx: Option<Context>,
        cf: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), HandlerError> {
        let cf = parse_cf(cf)?;
        check_key(key)?;
        let modify = match value {
            Some(value) => {
                check_value(value)?;
                Modify::put(cf, key, value)
            }
            None => Modify::delete(cf, key),
        };
        self.storage.write(&context(ctx), vec![modify])?;
        Ok(())
    }

    fn scan(&self, req: &RawScanRequest) -> Result<Vec<KvPair>, HandlerError> {
        let cf = parse_cf(&req.cf)?;
        check_start_key(&req.start_key)?;
        let limit = check_scan_limit(req.limit)?;
        let reader = self.storage.reader(&context(req.context))?;
        let mut budget = ScanBudget::new(limit);
        let mut kvs = Vec::new();
        for pair in reader.iter_cf(cf, &req.start_key) {
            let (key, value) = pair?;
            if !budget.take(&key, &value) {
                break;
            }
            kvs.push(KvPair { key, value, ..Default::default() });
        }
        Ok(kvs)
    }
}

/// The request context, or the default one when the client sent none.
fn context(ctx: Option<Context>) -> Context {
    ctx.unwrap_or_default()
}
// SOLUTION END

/// The answer of a raw handler whose request failed with `err` (given):
/// `error` holds its message; a region error of the storage
/// ([`tinykv_storage::Error::Region`]) also goes, intact, in
/// `region_error`, where a client looks for `not_leader` and the others.
/// (The message stays in `error` too, so that a client that reads only
/// `error` never takes a region error for success.)
///
/// ```
/// use tinykv_proto::kvrpcpb::RawGetResponse;
/// use tinykv_server::raw_api::{HandlerError, failed};
/// let err: HandlerError = "no such thing".into();
/// let resp: RawGetResponse = failed(&err);
/// assert_eq!(resp.error, "no such thing");
/// assert_eq!(resp.region_error, None);
/// ```
pub fn failed<R: RawResponse>(err: &HandlerError) -> R {
    let region_error = err
        .downcast_ref::<tinykv_storage::Error>()
        .and_then(tinykv_storage::Error::region_error)
        .cloned();
    let mut resp = R::default();
    resp.set_errors(region_error, err.to_string());
    resp
}

/// A raw RPC's response: it has a `region_error` and an `error` field.
pub trait RawResponse: Default {
    /// Sets both error fields.
    fn set_errors(&mut self, region_error: Option<errorpb::Error>, error: String);
}

macro_rules! raw_response {
    ($($t:ty),*) => {$(
        impl RawResponse for $t {
            fn set_errors(&mut self, region_error: Option<errorpb::Error>, error: String) {
                self.region_error = region_error;
                self.error = error;
            }
        }
    )*};
}

raw_response!(RawGetResponse, RawPutResponse, RawDeleteResponse, RawScanResponse);
