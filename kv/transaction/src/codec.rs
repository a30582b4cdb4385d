//! Byte encodings of MVCC keys (given).
//!
//! Several versions of a user key live side by side in the `default` and
//! `write` column families, each under an **MVCC key**:
//!
//! ```text
//! mvcc key = memcomparable(user key) ++ big-endian(!ts)      (8 bytes)
//! ```
//!
//! - The memcomparable encoding ([`encode_bytes`]) keeps the order of user
//!   keys (`a < b` exactly when `enc(a) < enc(b)`), and no encoded key is a
//!   prefix of another, so the timestamp that follows never mixes two user
//!   keys up: all versions of one user key sit together.
//! - The timestamp is stored bitwise-negated, so that for one user key the
//!   **newest version comes first** in ascending key order: a seek to
//!   `encode_key(key, ts)` lands on the newest version at or before `ts`.
//!
//! The memcomparable encoding cuts the key into groups of 8 bytes; each
//! group is written padded with zeros to 8 bytes, followed by a marker
//! byte `0xFF - (number of padding bytes)`. The last group always has
//! padding (a key whose length is a multiple of 8 ends with a group of
//! eight zeros and marker `0xF7`).

use crate::error::{Error, Result};

const GROUP: usize = 8;
const MARKER: u8 = 0xFF;
const TS_LEN: usize = 8;

/// The memcomparable encoding of `key` (see the module docs).
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1));
    let mut chunks = key.chunks_exact(GROUP);
    for group in chunks.by_ref() {
        out.extend_from_slice(group);
        out.push(MARKER);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0u8, pad));
    // pad is 1..=8, so the marker is 0xF7..=0xFE.
    out.push(MARKER - pad as u8);
    out
}

/// Decodes a memcomparable prefix of `data`: the key and the number of
/// bytes it took.
///
/// # Errors
///
/// [`Error::Corrupt`] if `data` ends inside a group, a marker is not a
/// valid one, or padding bytes are not zero.
pub fn decode_bytes(data: &[u8]) -> Result<(Vec<u8>, usize)> {
    let mut key = Vec::new();
    let mut at = 0;
    loop {
        let Some(group) = data.get(at..at + GROUP + 1) else {
            return Err(Error::Corrupt(format!(
                "memcomparable key ends inside a group at byte {at} of {}",
                data.len()
            )));
        };
        at += GROUP + 1;
        let marker = group[GROUP];
        if marker == MARKER {
            key.extend_from_slice(&group[..GROUP]);
            continue;
        }
        let pad = usize::from(MARKER - marker);
        if pad == 0 || pad > GROUP {
            return Err(Error::Corrupt(format!("bad memcomparable marker {marker:#04x}")));
        }
        let (bytes, padding) = group[..GROUP].split_at(GROUP - pad);
        if padding.iter().any(|&b| b != 0) {
            return Err(Error::Corrupt("non-zero memcomparable padding".into()));
        }
        key.extend_from_slice(bytes);
        return Ok((key, at));
    }
}

/// The MVCC key of `key` at timestamp `ts`.
pub fn encode_key(key: &[u8], ts: u64) -> Vec<u8> {
    let mut out = encode_bytes(key);
    out.extend_from_slice(&(!ts).to_be_bytes());
    out
}

/// The user key and timestamp of an MVCC key.
///
/// # Errors
///
/// [`Error::Corrupt`] if `mvcc_key` is not an encoded key followed by
/// exactly 8 bytes of timestamp.
pub fn decode_key(mvcc_key: &[u8]) -> Result<(Vec<u8>, u64)> {
    let (key, used) = decode_bytes(mvcc_key)?;
    let ts: [u8; TS_LEN] = mvcc_key[used..].try_into().map_err(|_| {
        Error::Corrupt(format!(
            "an MVCC key needs 8 bytes of timestamp after the user key, it has {}",
            mvcc_key.len() - used
        ))
    })?;
    Ok((key, !u64::from_be_bytes(ts)))
}

/// The timestamp of `mvcc_key` if it is a version of `key`.
///
/// `None` for a version of another user key, and for bytes that are not
/// an MVCC key at all: the raw API may put anything in any column family,
/// and such a record belongs to no user key, so a read of one key never
/// fails because of its neighbour.
///
/// ```
/// use tinykv_transaction::codec::{encode_key, version_of};
/// assert_eq!(version_of(&encode_key(b"k", 7), b"k"), Some(7));
/// assert_eq!(version_of(&encode_key(b"k2", 7), b"k"), None);
/// assert_eq!(version_of(b"not an mvcc key", b"k"), None);
/// ```
pub fn version_of(mvcc_key: &[u8], key: &[u8]) -> Option<u64> {
    match decode_key(mvcc_key) {
        Ok((user_key, ts)) if user_key == key => Some(ts),
        _ => None,
    }
}

/// The user key of an MVCC key.
///
/// # Errors
///
/// As [`decode_key`].
pub fn decode_user_key(mvcc_key: &[u8]) -> Result<Vec<u8>> {
    decode_key(mvcc_key).map(|(key, _)| key)
}

/// The timestamp of an MVCC key.
///
/// # Errors
///
/// As [`decode_key`].
pub fn decode_ts(mvcc_key: &[u8]) -> Result<u64> {
    decode_key(mvcc_key).map(|(_, ts)| ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn key(&mut self) -> Vec<u8> {
            let len = (self.next() % 20) as usize;
            // A small alphabet with 0x00 and 0xFF, so keys share prefixes.
            (0..len)
                .map(|_| [0x00, 0x01, b'a', b'b', 0xFE, 0xFF][(self.next() % 6) as usize])
                .collect()
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encode_bytes(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        assert_eq!(encode_bytes(b"abc"), vec![b'a', b'b', b'c', 0, 0, 0, 0, 0, 0xFA]);
        let eight = encode_bytes(b"12345678");
        assert_eq!(eight.len(), 18);
        assert_eq!(&eight[..9], b"12345678\xFF");
        assert_eq!(&eight[9..], &[0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        let k = encode_key(b"k", 5);
        assert_eq!(&k[9..], &(!5u64).to_be_bytes());
    }

    #[test]
    fn keys_and_timestamps_round_trip() {
        let mut g = Lcg(7);
        for _ in 0..2000 {
            let key = g.key();
            let ts = g.next() << 20 | g.next();
            assert_eq!(decode_key(&encode_key(&key, ts)).unwrap(), (key.clone(), ts));
            assert_eq!(
                decode_bytes(&encode_bytes(&key)).unwrap(),
                (key.clone(), encode_bytes(&key).len())
            );
        }
    }

    #[test]
    fn order_is_user_key_then_newest_first() {
        let mut g = Lcg(11);
        for _ in 0..5000 {
            let (a, b) = (g.key(), g.key());
            let (ta, tb) = (g.next() % 8, g.next() % 8);
            let want = a.cmp(&b).then(tb.cmp(&ta));
            assert_eq!(
                encode_key(&a, ta).cmp(&encode_key(&b, tb)),
                want,
                "{a:?}@{ta} vs {b:?}@{tb}"
            );
        }
    }

    #[test]
    fn malformed_keys_are_clear_errors() {
        let good = encode_key(b"key", 9);
        for bad in [&good[..5], &good[..good.len() - 1], &[0u8, 0, 0, 0, 0, 0, 0, 0, 0x10][..]] {
            let err = decode_key(bad).unwrap_err();
            assert!(matches!(err, Error::Corrupt(_)), "{err}");
        }
        let mut padded = encode_bytes(b"abc");
        padded[5] = 1;
        assert!(decode_bytes(&padded).is_err(), "non-zero padding must be refused");
    }
}
