//! Input checks shared by the handlers.
//!
//! Every handler validates its request before it touches the storage, and a
//! request that fails a check gets the check's message in its response
//! (the raw RPCs' `error` field; for the transactional ones see
//! [`crate::txn_api`]) and changes nothing. The limits are part of the
//! server's documented contract (see `docs/src/reference/protocol.md`).

use std::fmt;

use tinykv_engine::Cf;

/// The largest key accepted, in bytes (4 KiB).
pub const MAX_KEY_SIZE_BYTES: usize = 4 * 1024;

/// The largest value accepted, in bytes (1 MiB).
pub const MAX_VALUE_SIZE_BYTES: usize = 1024 * 1024;

/// The largest `limit` a scan may ask for.
pub const MAX_SCAN_LIMIT: u32 = 10_000;

/// The largest gRPC message the server decodes (8 MiB): big enough that a
/// too-large key or value reaches the checks above and gets their clear
/// message instead of a transport error.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// A request that breaks one of the checks. Its `Display` is the message
/// returned to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRequest(pub String);

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: {}", self.0)
    }
}

impl std::error::Error for InvalidRequest {}

/// Parses the column family a client named. Only `default`, `lock` and
/// `write` exist for clients; an empty name is an error too.
pub fn parse_cf(name: &str) -> Result<Cf, InvalidRequest> {
    Cf::parse_data(name).map_err(|e| InvalidRequest(e.to_string()))
}

/// Checks a key: not empty, at most [`MAX_KEY_SIZE_BYTES`].
pub fn check_key(key: &[u8]) -> Result<(), InvalidRequest> {
    if key.is_empty() {
        return Err(InvalidRequest("empty key".into()));
    }
    if key.len() > MAX_KEY_SIZE_BYTES {
        return Err(InvalidRequest(format!(
            "key of {} bytes is larger than the limit of {MAX_KEY_SIZE_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value: at most [`MAX_VALUE_SIZE_BYTES`]. An empty value is
/// allowed.
pub fn check_value(value: &[u8]) -> Result<(), InvalidRequest> {
    if value.len() > MAX_VALUE_SIZE_BYTES {
        return Err(InvalidRequest(format!(
            "value of {} bytes is larger than the limit of {MAX_VALUE_SIZE_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a scan start key: may be empty (scan from the first key), at most
/// [`MAX_KEY_SIZE_BYTES`].
pub fn check_start_key(key: &[u8]) -> Result<(), InvalidRequest> {
    if key.len() > MAX_KEY_SIZE_BYTES {
        return Err(InvalidRequest(format!(
            "start key of {} bytes is larger than the limit of {MAX_KEY_SIZE_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a scan limit: between 1 and [`MAX_SCAN_LIMIT`]. Returns it as a
/// `usize` ready for `Iterator::take`.
pub fn check_scan_limit(limit: u32) -> Result<usize, InvalidRequest> {
    if limit == 0 {
        return Err(InvalidRequest("scan limit is 0; ask for at least 1 pair".into()));
    }
    if limit > MAX_SCAN_LIMIT {
        return Err(InvalidRequest(format!(
            "scan limit {limit} is larger than the maximum of {MAX_SCAN_LIMIT}"
        )));
    }
    Ok(limit as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        assert!(check_key(b"").unwrap_err().to_string().contains("empty key"));
        assert!(check_key(&vec![b'k'; MAX_KEY_SIZE_BYTES]).is_ok());
        assert!(check_key(&vec![b'k'; MAX_KEY_SIZE_BYTES + 1]).is_err());
        assert!(check_start_key(b"").is_ok());
        assert!(check_start_key(&vec![b'k'; MAX_KEY_SIZE_BYTES + 1]).is_err());
    }

    #[test]
    fn value_limits() {
        assert!(check_value(b"").is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_SIZE_BYTES]).is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_SIZE_BYTES + 1]).is_err());
    }

    #[test]
    fn scan_limits() {
        assert!(check_scan_limit(0).is_err());
        assert_eq!(check_scan_limit(1), Ok(1));
        assert_eq!(check_scan_limit(MAX_SCAN_LIMIT), Ok(MAX_SCAN_LIMIT as usize));
        assert!(check_scan_limit(MAX_SCAN_LIMIT + 1).is_err());
    }

    #[test]
    fn column_families() {
        assert_eq!(parse_cf("default"), Ok(Cf::Default));
        assert_eq!(parse_cf("write"), Ok(Cf::Write));
        let err = parse_cf("meta").unwrap_err().to_string();
        assert!(err.contains("unknown column family \"meta\""), "{err}");
        assert!(parse_cf("").is_err());
    }
}
