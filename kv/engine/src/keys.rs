//! Codecs for the store's local keys.
//!
//! Local keys live in [`Cf::Meta`](crate::Cf::Meta) and follow TinyKV's (and
//! TiKV's) layout. Integers are fixed-width big-endian, so byte order is
//! numeric order: one region's log entries are contiguous and sorted by index,
//! and regions are sorted by id.
//!
//! | key           | layout                                               | bytes |
//! |---------------|------------------------------------------------------|-------|
//! | raft log      | `0x01 0x02` region_id (u64 BE) `0x01` index (u64 BE)  | 19    |
//! | raft state    | `0x01 0x02` region_id (u64 BE) `0x02`                 | 11    |
//! | apply state   | `0x01 0x02` region_id (u64 BE) `0x03`                 | 11    |
//! | region state  | `0x01 0x03` region_id (u64 BE) `0x01`                 | 11    |
//! | store ident   | `0x01 0x01`                                          | 2     |
//!
//! `0x01` is [`LOCAL_PREFIX`]; `0x02` ([`REGION_RAFT_PREFIX`]) groups the
//! per-region raft keys and `0x03` ([`REGION_META_PREFIX`]) the per-region
//! metadata keys.
//!
//! ```
//! use tinykv_engine::keys;
//!
//! let key = keys::raft_log_key(7, 42);
//! assert_eq!(keys::decode_raft_log_key(&key).unwrap(), (7, 42));
//! let (start, end) = keys::raft_log_range(7);
//! assert!(start.as_slice() <= &key[..] && &key[..] < end.as_slice());
//! ```

use crate::{Error, Result};

/// First byte of every local key.
pub const LOCAL_PREFIX: u8 = 0x01;

/// Second byte of the per-region raft keys (raft log, raft state, apply
/// state).
pub const REGION_RAFT_PREFIX: u8 = 0x02;

/// Second byte of the per-region metadata keys (region state).
pub const REGION_META_PREFIX: u8 = 0x03;

/// The key of the store's identity (cluster id and store id), written once
/// when the store is bootstrapped.
pub const STORE_IDENT_KEY: [u8; 2] = [LOCAL_PREFIX, 0x01];
/// Suffix byte of a raft log key (followed by the index).
pub const RAFT_LOG_SUFFIX: u8 = 0x01;

/// Suffix byte of the raft state key.
pub const RAFT_STATE_SUFFIX: u8 = 0x02;

/// Suffix byte of the apply state key.
pub const APPLY_STATE_SUFFIX: u8 = 0x03;

/// Suffix byte of the region state key.
pub const REGION_STATE_SUFFIX: u8 = 0x01;

/// Term of the initial (dummy) log entry of a bootstrapped region.
///
/// Bootstrapped regions start their log at index 5 and term 5
/// ([`RAFT_INIT_LOG_INDEX`], [`RAFT_INIT_LOG_TERM`]), as in TinyKV; a peer
/// created by a split or a conf change starts empty and catches up from a
/// snapshot.
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Index of the initial (dummy) log entry of a bootstrapped region.
///
/// Bootstrapped regions start their log at index 5 and term 5; see
/// [`RAFT_INIT_LOG_TERM`].
pub const RAFT_INIT_LOG_INDEX: u64 = 5;

/// Length of a raft log key.
pub const RAFT_LOG_KEY_LEN: usize = 19;

/// Length of a raft state, apply state or region state key.
pub const REGION_KEY_LEN: usize = 11;

/// Length of the per-region prefix shared by a region's raft log keys
/// (`0x01 0x02 region_id 0x01`).
pub const RAFT_LOG_PREFIX_LEN: usize = 11;

fn region_key(kind: u8, region_id: u64, suffix: u8) -> [u8; REGION_KEY_LEN] {
    let mut key = [0u8; REGION_KEY_LEN];
    key[0] = LOCAL_PREFIX;
    key[1] = kind;
    key[2..10].copy_from_slice(&region_id.to_be_bytes());
    key[10] = suffix;
    key
}

/// The key of the raft log entry `index` of region `region_id`.
pub fn raft_log_key(region_id: u64, index: u64) -> [u8; RAFT_LOG_KEY_LEN] {
    let mut key = [0u8; RAFT_LOG_KEY_LEN];
    key[..RAFT_LOG_PREFIX_LEN].copy_from_slice(&raft_log_prefix(region_id));
    key[RAFT_LOG_PREFIX_LEN..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The prefix shared by every raft log key of region `region_id`.
pub fn raft_log_prefix(region_id: u64) -> [u8; RAFT_LOG_PREFIX_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX)
}

/// The half-open range `[start, end)` holding exactly the raft log keys of
/// region `region_id`, for [`Snapshot::iter`](crate::Snapshot::iter).
pub fn raft_log_range(region_id: u64) -> (Vec<u8>, Vec<u8>) {
    let start = raft_log_prefix(region_id).to_vec();
    // The byte after the log suffix is the raft state suffix, so bumping the
    // last prefix byte gives the first key past every log entry.
    let end = region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX + 1).to_vec();
    (start, end)
}

/// The key of region `region_id`'s raft state (hard state and last index).
pub fn raft_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// The key of region `region_id`'s apply state (applied index, truncated
/// state).
pub fn apply_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// The key of region `region_id`'s region state (region metadata and peer
/// state).
pub fn region_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

fn u64_at(key: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&key[at..at + 8]);
    u64::from_be_bytes(bytes)
}

fn check_region_key(key: &[u8], what: &str, len: usize, kind: u8, suffix: u8) -> Result<u64> {
    if key.len() != len {
        return Err(Error::Corrupt(format!(
            "{what} key {key:02x?} has length {}, expected {len}",
            key.len()
        )));
    }
    if key[0] != LOCAL_PREFIX || key[1] != kind {
        return Err(Error::Corrupt(format!(
            "{what} key {key:02x?} has prefix {:02x?}, expected [{LOCAL_PREFIX:02x}, {kind:02x}]",
            &key[..2]
        )));
    }
    if key[10] != suffix {
        return Err(Error::Corrupt(format!(
            "{what} key {key:02x?} has suffix byte {:02x}, expected {suffix:02x}",
            key[10]
        )));
    }
    Ok(u64_at(key, 2))
}

/// Decodes a raft log key into `(region_id, index)`.
///
/// Fails with [`Error::Corrupt`] if `key` is not exactly a raft log key
/// (wrong length, prefix or suffix byte).
pub fn decode_raft_log_key(key: &[u8]) -> Result<(u64, u64)> {
    let region_id =
        check_region_key(key, "raft log", RAFT_LOG_KEY_LEN, REGION_RAFT_PREFIX, RAFT_LOG_SUFFIX)?;
    Ok((region_id, u64_at(key, RAFT_LOG_PREFIX_LEN)))
}

/// Decodes a region state key into its region id.
///
/// Fails with [`Error::Corrupt`] if `key` is not exactly a region state key
/// (wrong length, prefix or suffix byte).
pub fn decode_region_state_key(key: &[u8]) -> Result<u64> {
    check_region_key(key, "region state", REGION_KEY_LEN, REGION_META_PREFIX, REGION_STATE_SUFFIX)
}

/// The half-open range `[start, end)` holding the region state keys of every
/// region, for scanning all regions at store start.
pub fn region_state_range() -> (Vec<u8>, Vec<u8>) {
    (vec![LOCAL_PREFIX, REGION_META_PREFIX], vec![LOCAL_PREFIX, REGION_META_PREFIX + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [u64; 8] = [0, 1, 5, 255, 256, 65_535, 65_536, u64::MAX];

    #[test]
    fn raft_log_key_round_trips() {
        for region in IDS {
            for index in IDS {
                let key = raft_log_key(region, index);
                assert_eq!(key.len(), RAFT_LOG_KEY_LEN);
                assert_eq!(decode_raft_log_key(&key).unwrap(), (region, index));
                assert!(key.starts_with(&raft_log_prefix(region)));
            }
        }
    }

    #[test]
    fn region_state_key_round_trips() {
        for region in IDS {
            assert_eq!(decode_region_state_key(&region_state_key(region)).unwrap(), region);
        }
    }

    #[test]
    fn layout_matches_the_architecture() {
        assert_eq!(
            raft_log_key(1, 2).to_vec(),
            [&[1u8, 2][..], &1u64.to_be_bytes(), &[1], &2u64.to_be_bytes()].concat()
        );
        assert_eq!(raft_state_key(3).to_vec(), [&[1u8, 2][..], &3u64.to_be_bytes(), &[2]].concat());
        assert_eq!(
            apply_state_key(3).to_vec(),
            [&[1u8, 2][..], &3u64.to_be_bytes(), &[3]].concat()
        );
        assert_eq!(
            region_state_key(3).to_vec(),
            [&[1u8, 3][..], &3u64.to_be_bytes(), &[1]].concat()
        );
        assert_eq!((RAFT_INIT_LOG_TERM, RAFT_INIT_LOG_INDEX), (5, 5));
    }

    #[test]
    fn keys_sort_numerically_by_region_then_index() {
        let mut pairs = Vec::new();
        for region in IDS {
            for index in IDS {
                pairs.push((region, index));
            }
        }
        let mut by_bytes = pairs.clone();
        by_bytes.sort_by_key(|&(r, i)| raft_log_key(r, i));
        pairs.sort();
        assert_eq!(by_bytes, pairs);
        assert!(raft_log_key(1, 255) < raft_log_key(1, 256));
        assert!(raft_log_key(1, 256) < raft_log_key(1, 65_536));
        assert!(raft_log_key(255, u64::MAX) < raft_log_key(256, 0));
    }

    #[test]
    fn log_range_holds_exactly_one_regions_log() {
        for region in [0, 1, 255, 256, u64::MAX] {
            let (start, end) = raft_log_range(region);
            let inside = |k: &[u8]| start.as_slice() <= k && k < end.as_slice();
            assert!(inside(&raft_log_key(region, 0)));
            assert!(inside(&raft_log_key(region, u64::MAX)));
            assert!(!inside(&raft_state_key(region)));
            assert!(!inside(&apply_state_key(region)));
            assert!(!inside(&region_state_key(region)));
            if region > 0 {
                assert!(!inside(&raft_log_key(region - 1, u64::MAX)));
            }
            if region < u64::MAX {
                assert!(!inside(&raft_log_key(region + 1, 0)));
            }
        }
    }

    #[test]
    fn region_state_range_holds_every_region_state_and_nothing_else() {
        let (start, end) = region_state_range();
        let inside = |k: &[u8]| start.as_slice() <= k && k < end.as_slice();
        for region in IDS {
            assert!(inside(&region_state_key(region)));
            assert!(!inside(&raft_state_key(region)));
            assert!(!inside(&apply_state_key(region)));
            assert!(!inside(&raft_log_key(region, 7)));
        }
    }

    #[test]
    fn the_four_key_kinds_are_distinct() {
        for region in IDS {
            let kinds = [
                raft_log_key(region, 0).to_vec(),
                raft_state_key(region).to_vec(),
                apply_state_key(region).to_vec(),
                region_state_key(region).to_vec(),
            ];
            for (i, a) in kinds.iter().enumerate() {
                for b in &kinds[i + 1..] {
                    assert_ne!(a, b);
                }
            }
        }
        // Region keys of different regions never collide either.
        assert_ne!(raft_state_key(1), raft_state_key(2));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let log = raft_log_key(1, 2);
        let state = region_state_key(1);

        let short = decode_raft_log_key(&log[..18]).unwrap_err().to_string();
        assert!(short.contains("corrupt data") && short.contains("length 18"), "{short}");
        assert!(decode_raft_log_key(&[]).is_err());
        assert!(decode_raft_log_key(&[log.as_slice(), &[0]].concat()).is_err());

        let mut bad_prefix = log;
        bad_prefix[0] = 0x02;
        let msg = decode_raft_log_key(&bad_prefix).unwrap_err().to_string();
        assert!(msg.contains("prefix"), "{msg}");
        let mut bad_kind = log;
        bad_kind[1] = REGION_META_PREFIX;
        assert!(decode_raft_log_key(&bad_kind).is_err());

        let mut bad_suffix = log;
        bad_suffix[10] = RAFT_STATE_SUFFIX;
        let msg = decode_raft_log_key(&bad_suffix).unwrap_err().to_string();
        assert!(msg.contains("suffix"), "{msg}");

        // Other local keys are not region state keys.
        assert!(decode_region_state_key(&raft_state_key(1)).is_err());
        assert!(decode_region_state_key(&apply_state_key(1)).is_err());
        assert!(decode_region_state_key(&log).is_err());
        assert!(decode_region_state_key(&state[..10]).is_err());
        let mut bad_suffix = state;
        bad_suffix[10] = 0x02;
        assert!(matches!(decode_region_state_key(&bad_suffix), Err(Error::Corrupt(_))));
    }
}
