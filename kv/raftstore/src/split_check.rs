//! Deciding when and where a region splits (given code, lab 3b).
//!
//! A region's leader keeps its region from growing without bound:
//!
//! 1. **Size.** Every peer counts the bytes of the normal entries it
//!    applies (`size_diff_hint`: what was written since the last check).
//! 2. **Check.** Every `split_region_check_tick_interval` ticks, a leader
//!    whose region grew by `region_split_size / 8` bytes since the last
//!    check, or may have grown past `region_max_size` (the last size plus
//!    what was applied since), or whose size is unknown (after a start or
//!    a split), or which
//!    asked for a split that has not happened yet, every few checks) schedules a
//!    [`Task::SplitCheck`] on a view of the kv engine. The worker ([`check`])
//!    scans the region's data in every column family in key order,
//!    measures it, and if it is larger than `region_max_size` picks the
//!    first key at which `region_split_size` bytes have been seen.
//! 3. **Split key.** The key is made a user-key boundary: an MVCC key
//!    (`memcomparable(user key) ++ ts`, lab 4) is cut to its user-key part,
//!    so every version of one user key stays in one region. It is never the
//!    region's start key (the left half would be empty).
//! 4. **Ask.** If the region is still the one checked (same epoch), the
//!    leader reports [`SchedulerTask::AskSplit`]: the scheduler allocates
//!    the new region's id and one peer id per member, and its answer comes
//!    back through [`Store::on_ask_split_response`], which proposes the
//!    `Split` admin command with the epoch the check saw (lab 3b's
//!    `apply_split` refuses it if the region changed meanwhile).
//! 5. **After.** When the split applies ([`Peer::on_split_applied`]), the
//!    store shrinks the parent in its meta and creates the new region's
//!    peer; both regions' sizes are unknown again, so their leaders check
//!    them soon, and a region still too large splits again.
//!
//! The approximate size of the last check goes to the scheduler in every
//! region heartbeat.

use tinykv_engine::{Cf, Snapshot};
use tinykv_proto::metapb::{self, Region};
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, RaftCmdRequest, RaftRequestHeader, SplitRequest,
};
use tinykv_proto::schedulerpb::AskSplitResponse;

use crate::context::{Context, SCHEDULER_TOKEN};
use crate::effect::StoreEffect;
use crate::error::Result;
use crate::heartbeat::SchedulerTask;
use crate::peer::Peer;
use crate::store::Store;
use crate::worker::Task;

/// What a split check found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitCheckResult {
    /// The bytes (keys and values, every data column family) in the
    /// region's range.
    pub size: u64,
    /// Where to split it, if it is larger than the maximum and a key
    /// other than its start key qualifies.
    pub split_key: Option<Vec<u8>>,
}

/// The split settings of a peer, from the store's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitSettings {
    pub(crate) tick_interval: usize,
    pub(crate) max_size: u64,
    pub(crate) split_size: u64,
}

impl SplitSettings {
    pub(crate) fn of(cfg: &crate::Config) -> SplitSettings {
        SplitSettings {
            tick_interval: cfg.split_region_check_tick_interval.max(1),
            max_size: cfg.region_max_size.max(1),
            split_size: cfg.region_split_size.clamp(1, cfg.region_max_size.max(1)),
        }
    }
}

/// What a peer knows about its region's size. Invariant: `checking`
/// while a [`Task::SplitCheck`] of this peer is scheduled and its result
/// has not come back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SizeState {
    /// The size the last check measured (`None`: not measured since this
    /// peer started or its region split).
    pub(crate) approximate_size: Option<u64>,
    /// Bytes applied since the last check was scheduled.
    pub(crate) size_diff_hint: u64,
    /// Ticks since the last check tick.
    pub(crate) ticks: usize,
    /// A check is running.
    pub(crate) checking: bool,
    /// The last check asked the scheduler for a split that has not
    /// applied yet (the ask or its answer may be lost: check again, every
    /// [`ASK_AGAIN_CHECKS`] check ticks).
    pub(crate) split_asked: bool,
    /// Check ticks until an unanswered ask is checked (and asked) again.
    pub(crate) ask_again_in: usize,
}

/// How many split check ticks pass before a split that was asked for and
/// has not applied is checked and asked for again (a scan of a large
/// region is not free, and a driver without a scheduler never answers).
pub const ASK_AGAIN_CHECKS: usize = 10;

/// Measures `region`'s data in `snap` and finds its split key (see the
/// module docs). Errors reading the engine end the scan early: the result
/// is then a lower bound and has no split key.
pub fn check(
    region: &Region,
    snap: &dyn Snapshot,
    max_size: u64,
    split_size: u64,
) -> SplitCheckResult {
    let end = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
    let mut iters: Vec<_> =
        Cf::DATA.iter().map(|&cf| snap.iter(cf, &region.start_key, end)).collect();
    let mut heads: Vec<Option<(Vec<u8>, usize)>> = Vec::with_capacity(iters.len());
    let mut failed = false;
    for it in &mut iters {
        heads.push(next_entry(it, &mut failed));
    }
    let mut size = 0u64;
    let mut first: Option<Vec<u8>> = None;
    // The user-key boundary where the split size is reached, and (in
    // case no key lies before that one) the next boundary after it.
    let mut candidate: Option<Vec<u8>> = None;
    let mut next: Option<Vec<u8>> = None;
    // A k-way merge: the smallest head next, so keys come in one order
    // whatever column family holds them.
    while let Some(i) = smallest(&heads) {
        let (key, len) = heads[i].take().expect("smallest names a head");
        size += len as u64;
        if first.is_none() {
            first = Some(key.clone());
        }
        match &candidate {
            None if size >= split_size => candidate = Some(user_key_boundary(&key)),
            Some(c) if next.is_none() => {
                let boundary = user_key_boundary(&key);
                if boundary > *c {
                    next = Some(boundary);
                }
            }
            _ => {}
        }
        heads[i] = next_entry(&mut iters[i], &mut failed);
    }
    // Both halves must hold data: a boundary at or before the first key
    // would leave the left half empty (one user key's many versions came
    // first), so the next boundary is taken instead.
    let has_left = |key: &Vec<u8>| first.as_ref().is_some_and(|f| f < key);
    let split_key = candidate
        .filter(|_| size > max_size && !failed)
        .and_then(|c| if has_left(&c) { Some(c) } else { next.filter(has_left) })
        .filter(|key| key.as_slice() > region.start_key.as_slice());
    SplitCheckResult { size, split_key }
}

fn next_entry(it: &mut tinykv_engine::EngineIter, failed: &mut bool) -> Option<(Vec<u8>, usize)> {
    match it.next()? {
        Ok((k, v)) => {
            let len = k.len() + v.len();
            Some((k, len))
        }
        Err(e) => {
            log::warn!("split check: cannot read the engine: {e}");
            *failed = true;
            None
        }
    }
}

fn smallest(heads: &[Option<(Vec<u8>, usize)>]) -> Option<usize> {
    heads
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.as_ref().map(|(k, _)| (k, i)))
        .min()
        .map(|(_, i)| i)
}

/// `key` cut to a user-key boundary: an MVCC key becomes the encoding of
/// its user key (which sorts before all its versions and after every
/// version of a smaller user key); any other key stays as it is.
pub fn user_key_boundary(key: &[u8]) -> Vec<u8> {
    use tinykv_transaction::codec;
    match codec::decode_key(key) {
        Ok((user_key, _)) => codec::encode_bytes(&user_key),
        Err(_) => key.to_vec(),
    }
}

impl Peer {
    /// Counts the bytes of an applied normal entry towards the next split
    /// check.
    pub(crate) fn count_applied_bytes(&mut self, bytes: usize) {
        self.size.size_diff_hint = self.size.size_diff_hint.saturating_add(bytes as u64);
    }

    /// The size the last split check measured (0 if none did).
    pub fn approximate_size(&self) -> u64 {
        self.size.approximate_size.unwrap_or(0)
    }

    /// One tick towards the next split check; a leader whose region may
    /// have outgrown `region_max_size` schedules one.
    pub(crate) fn on_split_check_tick(&mut self, ctx: &mut dyn Context) {
        self.size.ticks += 1;
        if self.size.ticks < self.split.tick_interval {
            return;
        }
        self.size.ticks = 0;
        if !self.is_leader()
            || !self.is_initialized()
            || self.applying_snapshot
            || self.size.checking
        {
            return;
        }
        let hint = self.size.size_diff_hint;
        let may_be_too_big = self
            .size
            .approximate_size
            .is_some_and(|s| s.saturating_add(hint) > self.split.max_size);
        let grew = hint >= self.split.split_size / 8 || may_be_too_big;
        let ask_again = self.size.split_asked && {
            self.size.ask_again_in = self.size.ask_again_in.saturating_sub(1);
            self.size.ask_again_in == 0
        };
        if self.size.approximate_size.is_some() && !grew && !ask_again {
            return;
        }
        self.size.size_diff_hint = 0;
        self.size.checking = true;
        let task = Task::SplitCheck {
            peer_id: self.meta.id,
            region: self.region().clone(),
            engine_snap: self.storage().engines.kv.snapshot(),
            max_size: self.split.max_size,
            split_size: self.split.split_size,
        };
        log::debug!("{} schedules {task:?}", self.tag);
        ctx.schedule(task);
    }

    /// A split check finished: remember the size, and if a split key was
    /// found for the region as it still is, ask the scheduler for the new
    /// region's ids.
    pub fn on_split_checked(
        &mut self,
        checked: Region,
        result: SplitCheckResult,
        ctx: &mut dyn Context,
    ) {
        self.size.checking = false;
        if checked.region_epoch != self.region().region_epoch {
            log::debug!("{} drops a split check of an older epoch", self.tag);
            return;
        }
        self.size.approximate_size = Some(result.size);
        self.size.split_asked = false;
        let Some(split_key) = result.split_key else { return };
        if !self.is_leader() {
            return;
        }
        log::info!(
            "{} is {} bytes, over {}: asks to split at {:?}",
            self.tag,
            result.size,
            self.split.max_size,
            split_key.escape_ascii().to_string()
        );
        self.size.split_asked = true;
        self.size.ask_again_in = ASK_AGAIN_CHECKS;
        ctx.report(SchedulerTask::AskSplit { region: checked, split_key, peer: self.meta });
    }

    /// Carries out an applied split (given): the store learns the parent's
    /// new range and creates the new region's peer (campaigning at once if
    /// this peer leads the parent); both sizes are unknown again; the
    /// scheduler hears of the parent's new range now.
    pub fn on_split_applied(&mut self, derived: Region, new_region: Region, ctx: &mut dyn Context) {
        self.size = crate::split_check::SizeState::default();
        self.push_store_effect(StoreEffect::RegionChanged(derived));
        let campaign = self.is_leader();
        self.push_store_effect(StoreEffect::SplitCreated { region: new_region, campaign });
        self.report_region(ctx);
    }
}

impl Store {
    /// The scheduler's answer to [`SchedulerTask::AskSplit`]: the new
    /// region's ids for splitting `region` (as the split check saw it) at
    /// `split_key`. The region's peer here, if it still leads, proposes
    /// the `Split` command with that region's epoch; nobody waits for its
    /// answer ([`SCHEDULER_TOKEN`]).
    ///
    /// # Errors
    ///
    /// An engine error while handling the peer's `Ready` (fatal).
    pub fn on_ask_split_response(
        &mut self,
        region: Region,
        split_key: Vec<u8>,
        resp: AskSplitResponse,
        ctx: &mut dyn Context,
    ) -> Result<()> {
        let region_id = region.id;
        let Some(peer) = self.peers.get_mut(&region_id) else { return Ok(()) };
        if !peer.is_leader() {
            log::debug!("{} is not the leader: drops the split ids", peer.tag);
            return Ok(());
        }
        let req = split_command(&region, peer.meta, split_key, resp);
        peer.propose_command(req, SCHEDULER_TOKEN, ctx);
        self.on_peer_ready(region_id, ctx)
    }
}

/// The `Split` admin command for `region` (with its epoch), proposed by
/// `peer`.
pub fn split_command(
    region: &Region,
    peer: metapb::Peer,
    split_key: Vec<u8>,
    resp: AskSplitResponse,
) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: Some(peer),
            region_epoch: region.region_epoch,
            term: 0,
        }),
        requests: Vec::new(),
        admin_request: Some(AdminRequest {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitRequest {
                split_key,
                new_region_id: resp.new_region_id,
                new_peer_ids: resp.new_peer_ids,
            }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use tinykv_engine::{Engine, MemoryDisk, WriteBatch};
    use tinykv_transaction::codec::encode_key;

    use super::*;

    fn region(start: &[u8], end: &[u8]) -> Region {
        Region { id: 1, start_key: start.to_vec(), end_key: end.to_vec(), ..Default::default() }
    }

    #[test]
    fn a_small_region_has_no_split_key() {
        let engine = MemoryDisk::new().open();
        let mut wb = WriteBatch::new();
        for i in 0..10u8 {
            wb.put(Cf::Default, &[b'k', i], &[0; 8]);
        }
        engine.write(wb).unwrap();
        let result = check(&region(b"", b""), engine.snapshot().as_ref(), 1000, 50);
        assert_eq!(result, SplitCheckResult { size: 100, split_key: None });
    }

    #[test]
    fn the_split_key_is_where_the_split_size_is_reached_in_every_cf() {
        let engine = MemoryDisk::new().open();
        let mut wb = WriteBatch::new();
        // 10 bytes per pair; the lock CF's keys interleave with the default's.
        for i in 0..10u8 {
            let cf = if i % 2 == 0 { Cf::Default } else { Cf::Lock };
            wb.put(cf, &[b'k', i], &[0; 8]);
        }
        wb.put(Cf::Default, b"z outside", &[0; 8]);
        engine.write(wb).unwrap();
        let result = check(&region(b"k", b"l"), engine.snapshot().as_ref(), 60, 40);
        assert_eq!(result.size, 100);
        assert_eq!(result.split_key, Some(vec![b'k', 3]));
        // Not above the maximum: no split.
        let result = check(&region(b"k", b"l"), engine.snapshot().as_ref(), 100, 40);
        assert_eq!(result.split_key, None);
    }

    #[test]
    fn versions_of_one_user_key_stay_together() {
        let engine = MemoryDisk::new().open();
        let mut wb = WriteBatch::new();
        for ts in (1..=20).rev() {
            wb.put(Cf::Write, &encode_key(b"hot", ts), &[0; 4]);
        }
        wb.put(Cf::Write, &encode_key(b"next", 1), &[0; 4]);
        engine.write(wb).unwrap();
        // The size is reached inside "hot"'s versions. Cutting there
        // would put versions of "hot" on both sides; cutting at "hot"'s
        // boundary would leave nothing on the left: the split falls at the
        // next user key.
        let result = check(&region(b"", b""), engine.snapshot().as_ref(), 50, 30);
        let next = tinykv_transaction::codec::encode_bytes(b"next");
        assert_eq!(result.split_key, Some(next.clone()));
        assert!(next.as_slice() > encode_key(b"hot", 1).as_slice());
        // With a smaller key first, "hot"'s boundary has data on its left.
        let mut wb = WriteBatch::new();
        wb.put(Cf::Write, &encode_key(b"cold", 1), &[0; 4]);
        engine.write(wb).unwrap();
        let result = check(&region(b"", b""), engine.snapshot().as_ref(), 50, 40);
        assert_eq!(result.split_key, Some(tinykv_transaction::codec::encode_bytes(b"hot")));
        // Raw keys are their own boundaries.
        assert_eq!(user_key_boundary(b"c01 00000017"), b"c01 00000017".to_vec());
    }
}
