//! Timestamps (given).
//!
//! A timestamp is a `u64` made of a **physical** part, milliseconds of
//! wall-clock time, and an 18-bit **logical** counter that orders the
//! timestamps handed out within one millisecond:
//!
//! ```text
//! ts = physical_ms << 18 | logical
//! ```
//!
//! This is the layout of TiKV's timestamp oracle. Lock TTLs are in
//! milliseconds and compare with the physical parts only: a lock taken at
//! `ts` with TTL `ttl` has expired at `now` once
//! `physical(now) >= physical(ts) + ttl` ([`lock_expired`]).

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;

/// The physical part of `ts`, in milliseconds.
pub fn physical(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// The logical part of `ts`.
pub fn logical(ts: u64) -> u64 {
    ts & ((1 << LOGICAL_BITS) - 1)
}

/// The timestamp with physical part `physical_ms` and logical part
/// `logical`.
///
/// # Panics
///
/// If `logical` does not fit in [`LOGICAL_BITS`] bits or `physical_ms` in
/// the rest.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    assert!(logical < 1 << LOGICAL_BITS, "logical part {logical} does not fit in 18 bits");
    assert!(physical_ms < 1 << (64 - LOGICAL_BITS), "physical part {physical_ms} ms is too large");
    physical_ms << LOGICAL_BITS | logical
}

/// Whether a lock taken at `lock_ts` with a TTL of `ttl_ms` has expired at
/// `now`: the physical parts are at least `ttl_ms` apart.
pub fn lock_expired(lock_ts: u64, ttl_ms: u64, now: u64) -> bool {
    physical(now) >= physical(lock_ts).saturating_add(ttl_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_and_logical_parts_round_trip() {
        let ts = compose(1_700_000_000_000, 12);
        assert_eq!(physical(ts), 1_700_000_000_000);
        assert_eq!(logical(ts), 12);
        assert!(compose(5, (1 << LOGICAL_BITS) - 1) < compose(6, 0));
    }

    #[test]
    fn a_lock_expires_when_its_ttl_has_passed_in_physical_time() {
        let taken = compose(1000, 7);
        assert!(!lock_expired(taken, 100, compose(1099, (1 << LOGICAL_BITS) - 1)));
        assert!(lock_expired(taken, 100, compose(1100, 0)));
        assert!(lock_expired(taken, 0, taken));
        assert!(!lock_expired(taken, u64::MAX, compose(1 << 40, 0)));
    }
}
