//! Ids and timestamps that never repeat, even across a restart (given
//! code, lab 3c).
//!
//! Both hand out values from a block that was made durable *before* the
//! first value in it was handed out: the scheduler saves an upper bound,
//! then hands out values below it without touching the disk. After a
//! crash it starts at the saved bound, so it skips what was left of the
//! block but never repeats a value (PD does the same).

use tinykv_proto::schedulerpb::Timestamp;

/// How many ids one durable bound covers.
pub const ID_BLOCK: u64 = 1000;

/// Hands out ids below a durable bound. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdAllocator {
    /// The next id to hand out. Invariant: `next <= limit`.
    next: u64,
    /// The durable bound: every id handed out is below it.
    limit: u64,
}

impl IdAllocator {
    /// An allocator that hands out `next..limit`.
    pub fn new(next: u64, limit: u64) -> IdAllocator {
        IdAllocator { next, limit: limit.max(next) }
    }

    /// The next id, or `None` when the block is used up (the caller saves
    /// a higher bound and calls [`extend`](Self::extend)).
    pub fn alloc(&mut self) -> Option<u64> {
        (self.next < self.limit).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// How many ids are left in the block.
    pub fn remaining(&self) -> u64 {
        self.limit - self.next
    }

    /// The durable bound.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Raises the bound, once `limit` is durable.
    pub fn extend(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
    }

    /// Makes sure no id below `id + 1` is handed out (an id seen in the
    /// cluster that this allocator did not hand out, e.g. a bootstrap
    /// region's).
    pub fn skip_past(&mut self, id: u64) {
        if self.next <= id {
            self.next = id + 1;
            self.limit = self.limit.max(self.next);
        }
    }
}

/// How many logical bits a timestamp has: `physical_ms << 18 | logical`.
pub const LOGICAL_BITS: u32 = 18;

/// How far ahead of the clock the timestamp oracle saves its bound (ms).
pub const TSO_SAVE_WINDOW_MS: u64 = 3000;

/// The timestamp oracle: strictly increasing timestamps of the form
/// `physical_ms << 18 | logical`. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tso {
    /// The physical part (ms) of the last timestamp handed out.
    physical_ms: u64,
    /// Its logical part. Invariant: `< 1 << LOGICAL_BITS`.
    logical: u64,
    /// The durable bound: every physical part handed out is below it.
    limit_ms: u64,
}

impl Tso {
    /// An oracle whose timestamps are above `limit_ms` (the bound saved
    /// before a restart: nothing at or above it was handed out).
    pub fn new(limit_ms: u64) -> Tso {
        Tso { physical_ms: limit_ms, logical: 0, limit_ms }
    }

    /// The durable bound.
    pub fn limit_ms(&self) -> u64 {
        self.limit_ms
    }

    /// The bound to save before `count` timestamps can be handed out at
    /// `now_ms`, if the present one is not enough.
    pub fn bound_needed(&self, count: u32, now_ms: u64) -> Option<u64> {
        let (physical, _) = self.next(count, now_ms);
        (physical >= self.limit_ms).then_some(physical + TSO_SAVE_WINDOW_MS)
    }

    /// Raises the bound, once `limit_ms` is durable.
    pub fn extend(&mut self, limit_ms: u64) {
        self.limit_ms = self.limit_ms.max(limit_ms);
    }

    /// Hands out `count` (at least 1) timestamps at `now_ms` and returns
    /// the last; the others are the `count - 1` logical values below it.
    /// `None` when the bound must be raised first
    /// ([`bound_needed`](Self::bound_needed)).
    pub fn alloc(&mut self, count: u32, now_ms: u64) -> Option<Timestamp> {
        let (physical, logical) = self.next(count, now_ms);
        if physical >= self.limit_ms {
            return None;
        }
        self.physical_ms = physical;
        self.logical = logical;
        Some(Timestamp { physical: physical as i64, logical: logical as i64 })
    }

    /// The physical and logical parts of the last of `count` timestamps
    /// after the present one, at `now_ms`.
    fn next(&self, count: u32, now_ms: u64) -> (u64, u64) {
        let count = u64::from(count.max(1));
        let max_logical = 1u64 << LOGICAL_BITS;
        if now_ms > self.physical_ms {
            return (now_ms, count.min(max_logical - 1));
        }
        if self.logical + count < max_logical {
            (self.physical_ms, self.logical + count)
        } else {
            (self.physical_ms + 1, count.min(max_logical - 1))
        }
    }
}

/// A timestamp as one number: `physical << 18 | logical`.
pub fn compose(ts: &Timestamp) -> u64 {
    ((ts.physical as u64) << LOGICAL_BITS) | ts.logical as u64
}
