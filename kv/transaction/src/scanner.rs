//! A scanner: the keys a transaction sees, in order (lab 4c).
//!
//! [`Scanner`] walks the user keys from a start key upwards, as a reader
//! at timestamp `ts` sees them, and yields one [`ScanItem`] per key that
//! has something to say:
//!
//! - [`ScanItem::Locked`]: the key is locked by a transaction that started
//!   at or before `ts`. That transaction may commit before `ts`, so the
//!   value at `ts` is not known yet; the caller must resolve the lock.
//!   (A lock taken after `ts` does not matter, as in `KvGet`.)
//! - [`ScanItem::Value`]: the value of the newest write committed at or
//!   before `ts` (the same value [`MvccTxn::get_value`] gives).
//!
//! A key whose visible write is a `Delete`, or that has no write at or
//! before `ts`, yields nothing; nor do the older versions under the
//! visible one.
//!
//! Keys come from two column families, both in user-key order: the
//! `write` CF (under `encode_key`, whose order is the user keys' order)
//! and the `lock` CF (under the raw key). The scanner keeps one iterator
//! over each and merges them, like the merge step of a merge sort.
//!
//! [`MvccTxn::get_value`]: crate::MvccTxn::get_value

use std::fmt;
use std::iter::Peekable;

use tinykv_engine::{Cf, EngineIter};
use tinykv_storage::StorageReader;

use tinykv_proto::kvrpcpb::{ScanRequest, ScanResponse};

use crate::codec::{decode_key, encode_key};
use crate::commands::TxnStore;
use crate::error::Result;
use crate::record::Lock;
// SOLUTION BEGIN lab 4c
use crate::commands::lock_info;
use crate::record::{Write, WriteKind};
use tinykv_proto::kvrpcpb::{KeyError, KvPair};
use tinykv_storage::ScanBudget;
// SOLUTION END

/// What a scan yields for one key. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    /// The key's value at the scan's timestamp.
    Value(Vec<u8>),
    /// The key is locked by a transaction started at or before the scan's
    /// timestamp.
    Locked(Lock),
}

/// The keys at or after a start key, as seen at a timestamp. See the
/// module docs.
pub struct Scanner {
    /// The timestamp the scan reads at.
    ts: u64,
    /// For the values in `default`.
    reader: Box<dyn StorageReader>,
    /// The `write` CF from the start key on; every entry before the
    /// iterator's position belongs to a key already yielded or skipped.
    writes: Peekable<EngineIter>,
    /// The `lock` CF from the start key on; same invariant.
    locks: Peekable<EngineIter>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner").field("ts", &self.ts).finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scan of the keys `>= start`, at `ts`.
    pub fn new(reader: Box<dyn StorageReader>, start: &[u8], ts: u64) -> Scanner {
        // `encode_key(start, u64::MAX)` is the smallest MVCC key of `start`.
        let writes = reader.iter_cf(Cf::Write, &encode_key(start, u64::MAX)).peekable();
        let locks = reader.iter_cf(Cf::Lock, start).peekable();
        Scanner { ts, reader, writes, locks }
    }

    /// The user key of the next `write` entry, without consuming it.
    ///
    /// An entry whose key is not an MVCC key (the raw API may write
    /// anything into the `write` CF) belongs to no user key: it is
    /// skipped, with a warning in the log, so one bad record does not
    /// fail every scan over it.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn peek_write_key(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.writes.peek() {
                None => return Ok(None),
                Some(Ok((mvcc_key, _))) => match decode_key(mvcc_key) {
                    Ok((key, _)) => return Ok(Some(key)),
                    Err(e) => {
                        log::warn!("scan: skipping a write record that is not an MVCC key: {e}");
                        self.writes.next();
                    }
                },
                Some(Err(_)) => {
                    return Err(self.writes.next().expect("peeked").expect_err("peeked").into());
                }
            }
        }
    }

    /// The key of the next `lock` entry, without consuming it.
    ///
    /// An entry whose value is not a lock (the raw API may write anything
    /// into the `lock` CF) belongs to no transaction: it is skipped, with
    /// a warning in the log. (`KvGet` of that very key still reports it.)
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn peek_lock_key(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.locks.peek() {
                None => return Ok(None),
                Some(Ok((key, bytes))) => match Lock::parse(bytes) {
                    Ok(_) => return Ok(Some(key.clone())),
                    Err(e) => {
                        log::warn!("scan: skipping key {} in the lock CF: {e}", key.escape_ascii());
                        self.locks.next();
                    }
                },
                Some(Err(_)) => {
                    return Err(self.locks.next().expect("peeked").expect_err("peeked").into());
                }
            }
        }
    }

    /// The value the transaction started at `start_ts` wrote to `key`
    /// (in `default`), if it is there.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn value(&self, key: &[u8], start_ts: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.reader.get_cf(Cf::Default, &encode_key(key, start_ts))?)
    }

    /// The next key with something to say, and what (lab 4c).
    ///
    /// 1. The next user key is the smaller of [`peek_write_key`] and
    ///    [`peek_lock_key`]; neither means the scan is over (`None`).
    /// 2. If the lock iterator is at that key, take the lock. A lock with
    ///    `ts <= self.ts` makes the item [`ScanItem::Locked`] (skip the
    ///    key's write entries).
    /// 3. Otherwise consume every `write` entry of the key. The first one
    ///    committed at or before `self.ts` that is not a `Rollback`
    ///    decides: a `Put` yields its value ([`value`](Scanner::value) at
    ///    the write's start ts), a `Delete` yields nothing for this key.
    /// 4. A key that yields nothing: go on with the next key.
    ///
    /// After an item, both iterators must be past the item's key.
    ///
    /// # Errors
    ///
    /// A storage error, or corrupt data.
    ///
    /// Checked by the `scan_*_4c` tests.
    ///
    /// [`peek_write_key`]: Scanner::peek_write_key
    /// [`peek_lock_key`]: Scanner::peek_lock_key
    #[allow(clippy::should_implement_trait)] // it is fallible; `Iterator` would hide that
    pub fn next(&mut self) -> Result<Option<(Vec<u8>, ScanItem)>> {
        // SOLUTION BEGIN lab 4c
        loop {
            let key = match (self.peek_write_key()?, self.peek_lock_key()?) {
                (None, None) => return Ok(None),
                (Some(w), None) => w,
                (None, Some(l)) => l,
                (Some(w), Some(l)) => w.min(l),
            };
            if let Some(lock) = self.take_lock(&key)?
                && lock.ts <= self.ts
            {
                self.skip_writes(&key)?;
                return Ok(Some((key, ScanItem::Locked(lock))));
            }
            if let Some(value) = self.take_visible_value(&key)? {
                return Ok(Some((key, ScanItem::Value(value))));
            }
        }
        // SOLUTION STUB
        // todo!("lab 4c: Scanner::next (kv/transaction/src/scanner.rs)")
        // SOLUTION END
    }

    // SOLUTION BEGIN lab 4c
    /// The lock on `key` if the lock iterator is at it (consumed).
    fn take_lock(&mut self, key: &[u8]) -> Result<Option<Lock>> {
        if self.peek_lock_key()?.as_deref() != Some(key) {
            return Ok(None);
        }
        let (_, bytes) = self.locks.next().expect("peeked")?;
        Ok(Some(Lock::parse(&bytes)?))
    }

    /// Consumes every write entry of `key`.
    fn skip_writes(&mut self, key: &[u8]) -> Result<()> {
        while self.peek_write_key()?.as_deref() == Some(key) {
            self.writes.next();
        }
        Ok(())
    }

    /// Consumes every write entry of `key`; the value its newest visible
    /// write gives, if a `Put`.
    fn take_visible_value(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut visible = None;
        while self.peek_write_key()?.as_deref() == Some(key) {
            let (mvcc_key, bytes) = self.writes.next().expect("peeked")?;
            let (_, commit_ts) = decode_key(&mvcc_key)?;
            if visible.is_some() || commit_ts > self.ts {
                continue;
            }
            let write = Write::parse(&bytes)?;
            if write.kind != WriteKind::Rollback {
                visible = Some(write);
            }
        }
        match visible {
            Some(Write { kind: WriteKind::Put, start_ts }) => self.value(key, start_ts),
            _ => Ok(None),
        }
    }
    // SOLUTION END
}

impl TxnStore {
    /// `KvScan` (lab 4c): up to `req.limit` pairs from `req.start_key` on,
    /// as of `req.version`, in key order: one [`Scanner`] item each, a
    /// value as `KvPair { key, value }`, a lock as `KvPair { key, error:
    /// locked }` with the lock's [`lock_info`]. A limit of 0 gives no
    /// pairs. Count the pairs with a [`ScanBudget`](tinykv_storage::ScanBudget) of the limit and stop
    /// before the first one it refuses, so that the answer carries at most
    /// [`MAX_SCAN_BYTES`](tinykv_storage::MAX_SCAN_BYTES) of keys and
    /// values. Reads need no latch; nothing is written.
    ///
    /// # Errors
    ///
    /// A storage error (the wrapper turns it into a region error).
    ///
    /// Checked by the `scan_*_4c` tests (the budget by
    /// `scan_stops_at_the_byte_budget_4c`).
    ///
    /// [`lock_info`]: crate::commands::lock_info
    pub fn scan(&self, req: &ScanRequest) -> Result<ScanResponse> {
        // SOLUTION BEGIN lab 4c
        let reader = self.reader(req.context.as_ref())?;
        let mut scanner = Scanner::new(reader, &req.start_key, req.version);
        let mut budget = ScanBudget::new(req.limit as usize);
        let mut pairs = Vec::new();
        while !budget.is_full() {
            let Some((key, item)) = scanner.next()? else { break };
            let pair = match item {
                ScanItem::Value(value) => KvPair { key, value, error: None },
                ScanItem::Locked(lock) => {
                    let locked = Some(lock_info(&key, &lock));
                    KvPair {
                        error: Some(KeyError { locked, ..Default::default() }),
                        key,
                        value: vec![],
                    }
                }
            };
            if !budget.take(&pair.key, &pair.value) {
                break;
            }
            pairs.push(pair);
        }
        Ok(ScanResponse { pairs, ..Default::default() })
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 4c: TxnStore::scan (kv/transaction/src/scanner.rs)")
        // SOLUTION END
    }
}
