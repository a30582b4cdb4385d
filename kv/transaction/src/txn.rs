//! An MVCC transaction: reads at its start timestamp, collects its writes
//! (lab 4a).
//!
//! [`MvccTxn`] is the only way the transaction commands of labs 4b and 4c
//! touch the data. It reads through a point-in-time
//! [`StorageReader`] and never writes: every `put_*`/`delete_*` adds a
//! [`Modify`] to a list, and the command hands the whole list to
//! `Storage::write` at the end, so a command's effects land atomically or
//! not at all.
//!
//! Where things live (see [`crate::codec`] and [`crate::record`]):
//!
//! | what | CF | key | value |
//! |---|---|---|---|
//! | a value written by the txn started at `s` | `default` | `encode_key(key, s)` | the user value |
//! | a commit (or rollback) at `c` of the txn started at `s` | `write` | `encode_key(key, c)` | `Write { start_ts: s, kind }` |
//! | a lock of the txn started at `s` | `lock` | `key` | `Lock { primary, ts: s, ttl, kind }` |
//!
//! Because `encode_key` stores the timestamp negated, iterating the `write`
//! CF from `encode_key(key, ts)` visits `key`'s versions from the newest
//! with commit ts `<= ts` down to the oldest, then moves on to the next
//! user key. Stop there: [`version_of`](crate::codec::version_of) gives
//! the commit ts of an entry of `key`, and `None` for anything else
//! (another user key, or a record the raw API wrote that is not an MVCC
//! key at all, which must not make this key's read fail).

use std::fmt;

use tinykv_storage::{Modify, StorageReader};

use crate::error::Result;
use crate::record::{Lock, Write};
// SOLUTION BEGIN lab 4a
use crate::codec::{encode_key, version_of};
use crate::record::WriteKind;
use tinykv_engine::Cf;
// SOLUTION END

/// A transaction at `start_ts`. See the module docs.
pub struct MvccTxn {
    /// The transaction's start timestamp: it reads what was committed at
    /// or before it, and its values and locks are written under it.
    pub start_ts: u64,
    reader: Box<dyn StorageReader>,
    /// The modifications so far, in the order they were made.
    writes: Vec<Modify>,
}

impl fmt::Debug for MvccTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MvccTxn")
            .field("start_ts", &self.start_ts)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl MvccTxn {
    /// A transaction at `start_ts` reading from `reader`.
    pub fn new(reader: Box<dyn StorageReader>, start_ts: u64) -> MvccTxn {
        MvccTxn { start_ts, reader, writes: Vec::new() }
    }

    /// The modifications collected so far.
    pub fn writes(&self) -> &[Modify] {
        &self.writes
    }

    /// The modifications, to hand to `Storage::write` in one batch.
    pub fn into_writes(self) -> Vec<Modify> {
        self.writes
    }

    /// The reader (for commands that scan).
    pub fn reader(&self) -> &dyn StorageReader {
        self.reader.as_ref()
    }

    /// Records `write` for `key`, committed at `commit_ts`: a put in the
    /// `write` CF at `encode_key(key, commit_ts)`.
    ///
    /// Checked by `put_write_uses_the_commit_ts_and_exact_bytes_4a` and
    /// every read test.
    pub fn put_write(&mut self, key: &[u8], commit_ts: u64, write: &Write) {
        // SOLUTION BEGIN lab 4a
        self.writes.push(Modify::put(Cf::Write, &encode_key(key, commit_ts), &write.to_bytes()));
        // SOLUTION STUB
        // let _ = (key, commit_ts, write);
        // todo!("lab 4a: MvccTxn::put_write (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// The lock on `key`, if any (the `lock` CF is keyed by the raw key).
    ///
    /// # Errors
    ///
    /// A storage error, or [`Error::Corrupt`](crate::Error::Corrupt) for a
    /// lock that does not parse.
    ///
    /// Checked by `get_lock_reads_what_put_lock_wrote_4a`,
    /// `get_lock_of_an_unlocked_key_is_none_4a`.
    pub fn get_lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        // SOLUTION BEGIN lab 4a
        let raw = self.reader.get_cf(Cf::Lock, key)?;
        raw.map(|bytes| Lock::parse(&bytes)).transpose()
        // SOLUTION STUB
        // let _ = key;
        // todo!("lab 4a: MvccTxn::get_lock (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// Locks `key` with `lock`: a put in the `lock` CF at `key`.
    ///
    /// Checked by `put_lock_writes_the_exact_bytes_4a`.
    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        // SOLUTION BEGIN lab 4a
        self.writes.push(Modify::put(Cf::Lock, key, &lock.to_bytes()));
        // SOLUTION STUB
        // let _ = (key, lock);
        // todo!("lab 4a: MvccTxn::put_lock (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// Unlocks `key`: a delete in the `lock` CF.
    ///
    /// Checked by `delete_lock_removes_the_lock_4a`.
    pub fn delete_lock(&mut self, key: &[u8]) {
        // SOLUTION BEGIN lab 4a
        self.writes.push(Modify::delete(Cf::Lock, key));
        // SOLUTION STUB
        // let _ = key;
        // todo!("lab 4a: MvccTxn::delete_lock (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// The value of `key` this transaction sees: that of the newest write
    /// committed at or before `start_ts`. A `Put` gives its value (from
    /// `default`, at the writing transaction's start ts), a `Delete` gives
    /// `None`; a `Rollback` wrote nothing, so look at the next older
    /// write. No write at all gives `None`.
    ///
    /// # Errors
    ///
    /// A storage error, or corrupt data.
    ///
    /// Checked by the `get_value_*_4a` tests.
    pub fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // SOLUTION BEGIN lab 4a
        for pair in self.reader.iter_cf(Cf::Write, &encode_key(key, self.start_ts)) {
            let (mvcc_key, bytes) = pair?;
            if version_of(&mvcc_key, key).is_none() {
                break;
            }
            let write = Write::parse(&bytes)?;
            match write.kind {
                WriteKind::Put => {
                    let value =
                        self.reader.get_cf(Cf::Default, &encode_key(key, write.start_ts))?;
                    return Ok(value);
                }
                WriteKind::Delete => return Ok(None),
                WriteKind::Rollback => {}
            }
        }
        Ok(None)
        // SOLUTION STUB
        // let _ = key;
        // todo!("lab 4a: MvccTxn::get_value (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// Stores `value` for `key` under this transaction: a put in
    /// `default` at `encode_key(key, start_ts)`.
    ///
    /// Checked by `put_value_uses_the_start_ts_4a`.
    pub fn put_value(&mut self, key: &[u8], value: &[u8]) {
        // SOLUTION BEGIN lab 4a
        self.writes.push(Modify::put(Cf::Default, &encode_key(key, self.start_ts), value));
        // SOLUTION STUB
        // let _ = (key, value);
        // todo!("lab 4a: MvccTxn::put_value (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// Removes this transaction's value of `key`: a delete in `default` at
    /// `encode_key(key, start_ts)`.
    ///
    /// Checked by `delete_value_removes_this_txns_value_4a`.
    pub fn delete_value(&mut self, key: &[u8]) {
        // SOLUTION BEGIN lab 4a
        self.writes.push(Modify::delete(Cf::Default, &encode_key(key, self.start_ts)));
        // SOLUTION STUB
        // let _ = key;
        // todo!("lab 4a: MvccTxn::delete_value (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// This transaction's write of `key`, if it committed or rolled back:
    /// the write whose `start_ts` is this transaction's, with its commit
    /// ts. (A commit ts is never below its start ts: stop there.)
    ///
    /// # Errors
    ///
    /// A storage error, or corrupt data.
    ///
    /// Checked by the `current_write_*_4a` tests.
    pub fn current_write(&self, key: &[u8]) -> Result<Option<(Write, u64)>> {
        // SOLUTION BEGIN lab 4a
        for pair in self.reader.iter_cf(Cf::Write, &encode_key(key, u64::MAX)) {
            let (mvcc_key, bytes) = pair?;
            let Some(commit_ts) = version_of(&mvcc_key, key) else { break };
            if commit_ts < self.start_ts {
                break;
            }
            let write = Write::parse(&bytes)?;
            if write.start_ts == self.start_ts {
                return Ok(Some((write, commit_ts)));
            }
        }
        Ok(None)
        // SOLUTION STUB
        // let _ = key;
        // todo!("lab 4a: MvccTxn::current_write (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }

    /// The newest write of `key` by any transaction, with its commit ts,
    /// whatever this transaction's start ts.
    ///
    /// # Errors
    ///
    /// A storage error, or corrupt data.
    ///
    /// Checked by the `most_recent_write_*_4a` tests.
    pub fn most_recent_write(&self, key: &[u8]) -> Result<Option<(Write, u64)>> {
        // SOLUTION BEGIN lab 4a
        let Some(pair) = self.reader.iter_cf(Cf::Write, &encode_key(key, u64::MAX)).next() else {
            return Ok(None);
        };
        let (mvcc_key, bytes) = pair?;
        let Some(commit_ts) = version_of(&mvcc_key, key) else { return Ok(None) };
        Ok(Some((Write::parse(&bytes)?, commit_ts)))
        // SOLUTION STUB
        // let _ = key;
        // todo!("lab 4a: MvccTxn::most_recent_write (kv/transaction/src/txn.rs)")
        // SOLUTION END
    }
}
