//! The records in the `write` and `lock` column families (given).
//!
//! | record | column family | key | value bytes |
//! |---|---|---|---|
//! | [`Write`] | `write` | `encode_key(user key, commit ts)` | kind (1 byte) ++ start ts (8 bytes, big-endian) |
//! | [`Lock`] | `lock` | the raw user key | primary key ++ kind (1 byte) ++ start ts (8, BE) ++ TTL (8, BE) |
//!
//! The value itself sits in `default` at `encode_key(user key, start ts)`.
//! Kinds are `Put = 1`, `Delete = 2`, `Rollback = 3`.

use crate::error::{Error, Result};

/// What a transaction did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteKind {
    /// The key got a value (in `default`, at the start ts).
    Put = 1,
    /// The key was deleted.
    Delete = 2,
    /// The transaction was rolled back: nothing was written, and a late
    /// prewrite of it must fail.
    Rollback = 3,
}

impl WriteKind {
    fn from_byte(b: u8) -> Result<WriteKind> {
        match b {
            1 => Ok(WriteKind::Put),
            2 => Ok(WriteKind::Delete),
            3 => Ok(WriteKind::Rollback),
            _ => Err(Error::Corrupt(format!("unknown write kind {b}"))),
        }
    }
}

/// A committed (or rolled back) version of a key, in the `write` CF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The start ts of the transaction that wrote it.
    pub start_ts: u64,
    /// What it did.
    pub kind: WriteKind,
}

impl Write {
    /// The record's value bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.start_ts.to_be_bytes());
        out
    }

    /// Parses a record's value bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] unless `bytes` is a known kind and 8 bytes of ts.
    pub fn parse(bytes: &[u8]) -> Result<Write> {
        let [kind, ts @ ..] = bytes else {
            return Err(Error::Corrupt("an empty write record".into()));
        };
        let ts: [u8; 8] = ts.try_into().map_err(|_| {
            Error::Corrupt(format!("a write record has 9 bytes, this one {}", bytes.len()))
        })?;
        Ok(Write { start_ts: u64::from_be_bytes(ts), kind: WriteKind::from_byte(*kind)? })
    }
}

/// A lock on a key held by a transaction between prewrite and commit, in
/// the `lock` CF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The transaction's primary key (where its fate is decided).
    pub primary: Vec<u8>,
    /// The transaction's start ts.
    pub ts: u64,
    /// Milliseconds the lock lives (on the physical part of timestamps).
    pub ttl: u64,
    /// What the transaction will do to the key.
    pub kind: WriteKind,
}

impl Lock {
    /// The record's value bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.primary.len() + 17);
        out.extend_from_slice(&self.primary);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out
    }

    /// Parses a record's value bytes (the primary key is everything
    /// before the last 17 bytes).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if there are fewer than 17 bytes or the kind is
    /// unknown.
    pub fn parse(bytes: &[u8]) -> Result<Lock> {
        let Some(split) = bytes.len().checked_sub(17) else {
            return Err(Error::Corrupt(format!(
                "a lock record has at least 17 bytes, this one {}",
                bytes.len()
            )));
        };
        let (primary, rest) = bytes.split_at(split);
        let kind = WriteKind::from_byte(rest[0])?;
        let ts = u64::from_be_bytes(rest[1..9].try_into().expect("8 bytes"));
        let ttl = u64::from_be_bytes(rest[9..17].try_into().expect("8 bytes"));
        Ok(Lock { primary: primary.to_vec(), ts, ttl, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_bytes_are_kind_then_big_endian_start_ts() {
        let w = Write { start_ts: 0x0102_0304_0506_0708, kind: WriteKind::Delete };
        assert_eq!(w.to_bytes(), vec![2, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Write::parse(&w.to_bytes()).unwrap(), w);
        for kind in [WriteKind::Put, WriteKind::Delete, WriteKind::Rollback] {
            let w = Write { start_ts: 42, kind };
            assert_eq!(Write::parse(&w.to_bytes()).unwrap(), w);
        }
    }

    #[test]
    fn lock_bytes_are_primary_kind_ts_ttl() {
        let l = Lock { primary: b"pk".to_vec(), ts: 7, ttl: 3000, kind: WriteKind::Put };
        let mut want = b"pk".to_vec();
        want.push(1);
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&3000u64.to_be_bytes());
        assert_eq!(l.to_bytes(), want);
        assert_eq!(Lock::parse(&want).unwrap(), l);
        let empty = Lock { primary: vec![], ts: 1, ttl: 0, kind: WriteKind::Rollback };
        assert_eq!(Lock::parse(&empty.to_bytes()).unwrap(), empty);
    }

    #[test]
    fn malformed_records_are_clear_errors() {
        for bad in [&[][..], &[1u8, 0, 0][..], &[9u8, 0, 0, 0, 0, 0, 0, 0, 1][..]] {
            assert!(matches!(Write::parse(bad), Err(Error::Corrupt(_))), "{bad:?}");
        }
        assert!(matches!(Lock::parse(&[1u8; 16]), Err(Error::Corrupt(_))));
        let mut bad_kind =
            Lock { primary: b"p".to_vec(), ts: 1, ttl: 1, kind: WriteKind::Put }.to_bytes();
        bad_kind[1] = 0;
        assert!(matches!(Lock::parse(&bad_kind), Err(Error::Corrupt(_))));
    }
}
