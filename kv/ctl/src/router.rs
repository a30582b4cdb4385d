//! [`Router`]: the client of `--scheduler`, which sends every request to
//! the leader of the region holding its key.
//!
//! # Routing
//!
//! For a key, the router finds the region in its [`RegionCache`] or, on a
//! miss, asks the scheduler (`GetRegion`: the region and its leader). It
//! finds the leader's store address with `GetStore` (cached too), and
//! sends the request there with a full `Context`: the region's id and
//! epoch and the peer it means. The cache starts empty in every process.
//!
//! # Region errors
//!
//! A store that cannot serve the request says why in `region_error`, and
//! the router learns from it and tries again, at most [`MAX_ATTEMPTS`]
//! times in all for one request:
//!
//! | error | what the router does |
//! |---|---|
//! | `not_leader` naming a leader | caches that leader; again at once |
//! | `not_leader` without one (an election) | tries the region's next peer, after a backoff |
//! | `epoch_not_match` | caches the `current_regions` it carries; again at once |
//! | `key_not_in_region`, `region_not_found`, `stale_command`, `store_not_match` | drops the region, asks the scheduler again, after a backoff |
//! | `key_not_in_region` for the very range the router used | fails at once ([`unservable`]: a key no region can serve) |
//! | `server_is_busy` | waits (at least its `backoff_ms`) |
//! | a store that cannot be reached | tries the region's next peer, after a backoff |
//!
//! The backoff doubles from [`BACKOFF_FIRST_MS`] up to [`BACKOFF_MAX_MS`],
//! so ten attempts wait about 2.5 s in all: long enough for an election.
//! A region error with only a message (a bad request, a failed engine) is
//! not retried: it is the command's answer, as without `--scheduler`. After
//! the last attempt the command fails with the key, the region and the
//! last error.
//!
//! # Many keys, many regions
//!
//! [`Router::send_by_region`] splits a command's keys by region and sends
//! one request per region, the region of the first key (a transaction's
//! primary) first. [`Router::scan`] goes region by region: from the start
//! key to the region's end, then on in the region that starts there, until
//! the limit or the end of the key space. [`Router::every_region`] sends a
//! keyless request (`ResolveLock`) to every region in key order.
//!
//! # Key spaces
//!
//! Regions split on the bytes of the engine's keys. A raw key is stored as
//! it is; a transaction's data is stored under `memcomparable(user key)`
//! and a timestamp (docs/src/reference/key-layout.md). So a raw command
//! goes to the region holding its key, and a transactional one to the
//! region holding the key's encoding ([`KeySpace`]). A scan's next part
//! starts after the last key returned and goes to the region starting
//! where the last one ended: the store reads only that region's keys, so
//! the parts follow each other exactly in either key space.
//!
//! Where a region ends is asked of its leader, not taken from the cache
//! ([`Router::region_end`]): the store bounds a scan by the region as *it*
//! knows it, so the leader's answer is the range the scan's parts follow
//! (a request with a stale epoch is also refused with `epoch_not_match`,
//! whose regions refresh the cache). The leader answers a read of a key
//! past the region's end with `key_not_in_region`, which carries the real
//! range.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{Context, RawGetRequest};
use tinykv_proto::metapb::Peer;
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tonic::transport::{Channel, Endpoint};

use crate::addr::{Addr, parse_addr};
use crate::region_cache::{CachedRegion, RegionCache};
use crate::scheduler::SchedulerClient;
use crate::store::{Rpc, ScanRpc, describe_status, is_transport_failure};
use crate::{Failure, show};

/// How many times one request is sent (or its region looked up) before
/// the command gives up.
pub const MAX_ATTEMPTS: u32 = 10;

/// The first backoff, in ms; it doubles with every attempt.
pub const BACKOFF_FIRST_MS: u64 = 20;

/// The longest backoff, in ms.
pub const BACKOFF_MAX_MS: u64 = 500;

/// How long connecting to a store may take.
const STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one store call may take. A store gives up on a raft command
/// after 5 s (kv/server/src/main.rs), so this leaves it room to answer.
const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest key a store accepts (`MAX_KEY_SIZE_BYTES` in
/// kv/server/src/limits.rs): `[0xff; MAX_KEY_BYTES]` is at or after
/// every key a region can split at.
const MAX_KEY_BYTES: usize = 4 * 1024;

/// The largest pair a store accepts: the longest key and the largest value
/// (`MAX_VALUE_SIZE_BYTES`, 1 MiB, in kv/server/src/limits.rs).
const MAX_PAIR_BYTES: usize = MAX_KEY_BYTES + 1024 * 1024;

/// Which keys of the engine a command's keys stand for, and so which
/// region holds them. Regions split on the bytes of the engine's keys
/// (docs/src/reference/key-layout.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpace {
    /// Raw keys are stored as they are.
    Raw,
    /// A transaction's values and writes are stored under the
    /// memcomparable encoding of the user key (then a timestamp), so a
    /// user key goes to the region holding its encoding. (Its lock is
    /// stored under the raw user key: when a region boundary falls between
    /// the two, no region can serve the key, and the store says
    /// `key_not_in_region`.)
    Txn,
}

impl KeySpace {
    /// The key a region holds for the command key `key`.
    pub fn route(self, key: &[u8]) -> Vec<u8> {
        match self {
            KeySpace::Raw => key.to_vec(),
            KeySpace::Txn => tinykv_transaction::codec::encode_bytes(key),
        }
    }
}

/// How long to wait before the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Not at all: the answer said where to go.
    Now,
    /// The doubling backoff: something has to change first (an election,
    /// the scheduler hearing of a split).
    Backoff,
    /// The backoff, but at least this many ms (`server_is_busy`).
    AtLeastMs(u64),
}

/// Why a request is sent again, and when.
#[derive(Clone, Debug)]
struct Retry {
    /// What went wrong, for the final error if no attempt works.
    why: String,
    wait: Wait,
}

impl Retry {
    fn new(wait: Wait, why: String) -> Retry {
        Retry { why, wait }
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1).
    fn wait_ms(&self, attempt: u32) -> u64 {
        let backoff = BACKOFF_FIRST_MS
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(BACKOFF_MAX_MS);
        match self.wait {
            Wait::Now => 0,
            Wait::Backoff => backoff,
            Wait::AtLeastMs(ms) => backoff.max(ms),
        }
    }

    async fn sleep(&self, attempt: u32) {
        let ms = self.wait_ms(attempt);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// What one attempt came to.
enum Attempt<T> {
    /// A store answered (perhaps with a region error nobody can fix by
    /// retrying: the command reports it).
    Answered(T),
    /// Try again.
    Retry(Retry),
}

/// One region's part of a command: which of the command's keys it holds,
/// and the answer.
pub type Part<T> = (Vec<usize>, T);

/// The answers of a command sent region by region: the parts that were
/// answered, in the order sent, and the failure that stopped the rest (a
/// region that no attempt reached, or the scheduler).
#[derive(Debug)]
pub struct Sent<T> {
    /// The answered parts.
    pub parts: Vec<Part<T>>,
    /// Why the rest was not sent, if it was not.
    pub failure: Option<Failure>,
}

/// A request answered by a region: the region as the router knew it when
/// the answer came, the command's keys it holds, the keys still to send.
struct JobDone<T> {
    region: CachedRegion,
    inside: Vec<usize>,
    rest: Vec<usize>,
    answer: T,
}

/// The routed client. See the module docs.
pub struct Router {
    scheduler: SchedulerClient,
    regions: RegionCache,
    /// Store address and client by store id, from `GetStore`.
    stores: BTreeMap<u64, (Addr, TinyKvClient<Channel>)>,
}

impl Router {
    /// A router over the scheduler at `scheduler`; nothing is sent yet.
    pub fn new(scheduler: Addr) -> Result<Router, Failure> {
        Ok(Router {
            scheduler: SchedulerClient::new(scheduler)?,
            regions: RegionCache::default(),
            stores: BTreeMap::new(),
        })
    }

    /// The scheduler client (for timestamps and the `cluster` commands).
    pub fn scheduler(&mut self) -> &mut SchedulerClient {
        &mut self.scheduler
    }

    /// Sends `request`, about `key` (of `space`), to the leader of the
    /// region holding it, retrying as the module docs say. `what` names the
    /// command in the final error.
    pub async fn send_key<R: Rpc>(
        &mut self,
        what: &str,
        space: KeySpace,
        key: &[u8],
        request: R,
    ) -> Result<R::Response, Failure> {
        let (_, answer) = self.send_at(what, key, &space.route(key), request).await?;
        Ok(answer)
    }

    /// Sends `make(indices)` once per region that holds some of `keys` (of
    /// `space`), where `indices` are the positions in `keys` of that
    /// region's keys;
    /// the region of `keys[0]` first. Stops after an answer for which
    /// `stop` is true (an error the command reports).
    pub async fn send_by_region<R: Rpc>(
        &mut self,
        what: &str,
        space: KeySpace,
        keys: &[Vec<u8>],
        make: impl Fn(&[usize]) -> R,
        stop: impl Fn(&R::Response) -> bool,
    ) -> Sent<R::Response> {
        let routes: Vec<Vec<u8>> = keys.iter().map(|k| space.route(k)).collect();
        let mut sent = Sent { parts: Vec::new(), failure: None };
        let mut jobs: VecDeque<Vec<usize>> = VecDeque::from([(0..keys.len()).collect()]);
        while let Some(job) = jobs.pop_front() {
            if job.is_empty() {
                continue;
            }
            let done = match self.send_job(what, keys, &routes, &job, &make).await {
                Ok(done) => done,
                Err(failure) => {
                    sent.failure = Some(failure);
                    break;
                }
            };
            let stopped = stop(&done.answer);
            sent.parts.push((done.inside, done.answer));
            if stopped {
                break;
            }
            jobs.push_front(done.rest);
        }
        sent
    }

    /// Scans as `request` says, region by region, for at most its limit
    /// of pairs in all: `request` again with each part's start and what is
    /// left of the limit. Returns every answer, the last one first to have failed
    /// ([`ScanRpc::failed`]) if one did.
    pub async fn scan<R: ScanRpc>(
        &mut self,
        what: &str,
        request: &R,
    ) -> Result<Vec<R::Response>, Failure> {
        let mut parts = Vec::new();
        // Each part asks for the keys from `start` on (the scan's start,
        // then the key after the last one returned) in the region holding
        // `route`; the store reads only that region's keys, so a part
        // never repeats an earlier one's, and starting before the region
        // skips nothing.
        let mut start = request.start().to_vec();
        let mut route = R::SPACE.route(&start);
        let mut left = request.limit();
        let mut stuck = 0;
        loop {
            let (region, answer) =
                self.send_at(what, &start, &route, request.restart(&start, left)).await?;
            let pairs = R::pairs(&answer);
            let got = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
            let last = pairs.last().map(|p| p.key.clone());
            let bytes: usize = pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
            let failed = R::failed(&answer);
            parts.push(answer);
            if failed || got >= left {
                return Ok(parts);
            }
            left -= got;
            if let Some(last) = &last {
                start = successor(last);
                // A store also ends an answer before it would pass
                // MAX_SCAN_BYTES; then the region may have more
                // (tinykv_storage::ScanBudget).
                if bytes + MAX_PAIR_BYTES > tinykv_storage::MAX_SCAN_BYTES {
                    route = R::SPACE.route(&start);
                    continue;
                }
            }
            let Some(end) = self.region_end(what, &region).await? else {
                return Ok(parts);
            };
            if end <= route {
                // The region shrank away from `route` before it was read:
                // read again, in the region that holds `route` now.
                stuck += 1;
                if stuck >= MAX_ATTEMPTS {
                    return Err(Failure::Request(format!(
                        "{what}: the region holding key {} kept changing while it was read \
                         ({MAX_ATTEMPTS} tries); try again",
                        show(&start)
                    )));
                }
                Retry::new(Wait::Backoff, String::new()).sleep(stuck).await;
                continue;
            }
            stuck = 0;
            route = end;
        }
    }

    /// Sends `request` (about no key) to every region in key order, each
    /// with its own context. Stops after an answer for which `stop` is
    /// true.
    pub async fn every_region<R: Rpc>(
        &mut self,
        what: &str,
        request: &R,
        stop: impl Fn(&R::Response) -> bool,
    ) -> Result<Vec<R::Response>, Failure> {
        let mut answers = Vec::new();
        let mut from = Vec::new();
        let mut stuck = 0;
        loop {
            let (region, answer) = self.send_at(what, &from, &from, request.clone()).await?;
            let stopped = stop(&answer);
            answers.push(answer);
            if stopped {
                return Ok(answers);
            }
            match self.region_end(what, &region).await? {
                None => return Ok(answers),
                Some(end) if end > from => {
                    stuck = 0;
                    from = end;
                }
                Some(_) => {
                    stuck += 1;
                    if stuck >= MAX_ATTEMPTS {
                        return Err(Failure::Request(format!(
                            "{what}: the region holding key {} kept changing ({MAX_ATTEMPTS} \
                             tries); try again",
                            show(&from)
                        )));
                    }
                    Retry::new(Wait::Backoff, String::new()).sleep(stuck).await;
                }
            }
        }
    }

    /// Sends `request` to the region holding `route` (the engine key of
    /// command key `key`, which errors name); returns the region that
    /// answered, and the answer.
    async fn send_at<R: Rpc>(
        &mut self,
        what: &str,
        key: &[u8],
        route: &[u8],
        request: R,
    ) -> Result<(CachedRegion, R::Response), Failure> {
        let (keys, routes) = ([key.to_vec()], [route.to_vec()]);
        let make = |_: &[usize]| request.clone();
        let done = self.send_job(what, &keys, &routes, &[0], &make).await?;
        Ok((done.region, done.answer))
    }

    /// Sends `make(inside)` to the region holding `routes[job[0]]`, where
    /// `inside` are the keys of `job` whose routes that region holds; the
    /// others come back as `rest`. (`routes[i]` is where `keys[i]` lives,
    /// [`KeySpace::route`].) Each attempt looks the region up again, so a
    /// retry after a split sends only the keys still in the region.
    async fn send_job<R: Rpc>(
        &mut self,
        what: &str,
        keys: &[Vec<u8>],
        routes: &[Vec<u8>],
        job: &[usize],
        make: &impl Fn(&[usize]) -> R,
    ) -> Result<JobDone<R::Response>, Failure> {
        let (key, route) = (&keys[job[0]], &routes[job[0]]);
        let mut last = None;
        for attempt in 1..=MAX_ATTEMPTS {
            let retry = match self.locate(route).await? {
                None => Retry::new(
                    Wait::Backoff,
                    format!("the scheduler knows no region holding key {} yet", show(key)),
                ),
                Some(region) => {
                    let (inside, rest): (Vec<usize>, Vec<usize>) =
                        job.iter().partition(|&&i| region.contains(&routes[i]));
                    match self.attempt(what, &region, make(&inside)).await? {
                        Attempt::Answered(answer) => {
                            return Ok(JobDone { region, inside, rest, answer });
                        }
                        Attempt::Retry(retry) => retry,
                    }
                }
            };
            if attempt < MAX_ATTEMPTS {
                retry.sleep(attempt).await;
            }
            last = Some(retry);
        }
        let why = last.map_or_else(String::new, |r| r.why);
        Err(Failure::Request(format!(
            "{what}: gave up on key {} after {MAX_ATTEMPTS} attempts; the last: {why} (the \
             cluster may be electing a leader or moving the region: try again, and see \
             `cluster region KEY` and `cluster stores`)",
            show(key)
        )))
    }

    /// The region holding engine key `key`: cached, else from the
    /// scheduler (`None`: the scheduler knows none yet).
    async fn locate(&mut self, key: &[u8]) -> Result<Option<CachedRegion>, Failure> {
        if let Some(region) = self.regions.find(key) {
            return Ok(Some(region.clone()));
        }
        let Some(region) = self.scheduler.get_region(key).await? else { return Ok(None) };
        if !region.contains(key) {
            return Err(Failure::Request(format!(
                "the scheduler at {} answered GetRegion of key {} with region {}, which does \
                 not hold it ([{}, {}))",
                self.scheduler.addr(),
                show(key),
                region.id(),
                show(&region.region.start_key),
                show(&region.region.end_key)
            )));
        }
        self.regions.insert(region.clone());
        Ok(Some(region))
    }

    /// The address and a client of store `store_id`: cached, else from
    /// the scheduler.
    async fn store(&mut self, store_id: u64) -> Result<(Addr, TinyKvClient<Channel>), Failure> {
        if let Some(conn) = self.stores.get(&store_id) {
            return Ok(conn.clone());
        }
        let store = self.scheduler.get_store(store_id).await?;
        let addr = parse_addr(&store.address).map_err(|e| {
            Failure::Request(format!(
                "the scheduler gives store {store_id} the address {:?}, which tinykv-ctl cannot \
                 use: {e}",
                store.address
            ))
        })?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Failure::Request(format!("cannot connect to store {store_id}: {e}")))?
            .connect_timeout(STORE_CONNECT_TIMEOUT)
            .timeout(STORE_CALL_TIMEOUT)
            .tcp_nodelay(true);
        let conn = (addr, TinyKvClient::new(endpoint.connect_lazy()));
        self.stores.insert(store_id, conn.clone());
        Ok(conn)
    }

    /// Sends `request` to `region`'s leader (or first peer) with the
    /// region's context. Returns the peer it went to, its store's
    /// address, and the answer, whatever region error it holds; a store
    /// that cannot be reached is a [`Attempt::Retry`] at the next peer.
    async fn call<R: Rpc>(
        &mut self,
        region: &CachedRegion,
        mut request: R,
    ) -> Result<Attempt<(Peer, Addr, R::Response)>, Failure> {
        let Some(peer) = region.target() else {
            self.regions.remove(region.id());
            let why = format!("region {} has no peers", region.id());
            return Ok(Attempt::Retry(Retry::new(Wait::Backoff, why)));
        };
        let (addr, client) = self.store(peer.store_id).await?;
        request.set_context(Context {
            region_id: region.id(),
            region_epoch: Some(region.epoch()),
            peer: Some(peer),
            term: 0,
        });
        let status = match request.send(client).await {
            Ok(answer) => return Ok(Attempt::Answered((peer, addr, answer.into_inner()))),
            Err(status) => status,
        };
        let at = format!("region {}, store {}", region.id(), peer.store_id);
        let hint = "is that store running? `cluster stores` lists the stores";
        let why = format!("{at}: {}", describe_status(&addr, &status, hint));
        let retryable = is_transport_failure(&status)
            || matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled);
        if !retryable {
            return Err(Failure::Request(why));
        }
        // The store may be down: forget its connection, and ask the next
        // peer, which names the leader if it is not.
        self.stores.remove(&peer.store_id);
        if let Some(next) = region.peer_after(&peer) {
            self.regions.set_leader(region.id(), next);
        }
        Ok(Attempt::Retry(Retry::new(Wait::Backoff, why)))
    }

    /// One attempt: [`call`](Self::call), then what the region error (if
    /// any) teaches ([`learn`](Self::learn)). A request no region can
    /// serve ([`unservable`]) fails at once: `what` names the command.
    async fn attempt<R: Rpc>(
        &mut self,
        what: &str,
        region: &CachedRegion,
        request: R,
    ) -> Result<Attempt<R::Response>, Failure> {
        let (peer, addr, answer) = match self.call(region, request).await? {
            Attempt::Answered(answered) => answered,
            Attempt::Retry(retry) => return Ok(Attempt::Retry(retry)),
        };
        if let Some(why) = R::region_error(&answer).and_then(|e| unservable(region, e)) {
            let at = format!("region {}, store {} at {addr}", region.id(), peer.store_id);
            return Err(Failure::Request(format!("{what}: {at}: {why}")));
        }
        let retry = R::region_error(&answer).and_then(|e| self.learn(region, peer, &addr, e));
        Ok(match retry {
            Some(retry) => Attempt::Retry(retry),
            None => Attempt::Answered(answer),
        })
    }

    /// Updates the cache from region error `e`, answered by `peer` (at
    /// `addr`) for `region`, and says how to try again; `None` when
    /// trying again cannot help (only a message: the command's answer).
    /// The table in the module docs says what each error does.
    fn learn(
        &mut self,
        region: &CachedRegion,
        peer: Peer,
        addr: &Addr,
        e: &errorpb::Error,
    ) -> Option<Retry> {
        let id = region.id();
        let at = format!("region {id}, store {} at {addr}", peer.store_id);
        let message = if e.message.is_empty() { String::new() } else { format!(": {}", e.message) };
        if let Some(not_leader) = &e.not_leader {
            return Some(match not_leader.leader.filter(|l| l.id != 0 && l.id != peer.id) {
                Some(leader) => {
                    self.regions.set_leader(id, leader);
                    let why = format!(
                        "{at}: not the leader; it names peer {} on store {}",
                        leader.id, leader.store_id
                    );
                    Retry::new(Wait::Now, why)
                }
                None => {
                    if let Some(next) = region.peer_after(&peer) {
                        self.regions.set_leader(id, next);
                    }
                    let why =
                        format!("{at}: not the leader, and no leader is known (an election?)");
                    Retry::new(Wait::Backoff, why)
                }
            });
        }
        if let Some(mismatch) = &e.epoch_not_match {
            if mismatch.current_regions.is_empty() {
                self.regions.remove(id);
                return Some(Retry::new(Wait::Backoff, format!("{at}: epoch not match{message}")));
            }
            for current in &mismatch.current_regions {
                // The store that answered holds these regions; its peer
                // led the old one, so it likely leads them.
                let here = current.peers.iter().find(|p| p.store_id == peer.store_id).copied();
                self.regions.insert(CachedRegion::new(current.clone(), here));
            }
            let why = format!("{at}: the region changed (a split or a membership change){message}");
            return Some(Retry::new(Wait::Now, why));
        }
        if let Some(k) = &e.key_not_in_region {
            self.regions.remove(id);
            let why = format!(
                "{at}: key {} is not in the region, which now covers [{}, {})",
                show(&k.key),
                show(&k.start_key),
                show(&k.end_key)
            );
            return Some(Retry::new(Wait::Backoff, why));
        }
        if e.region_not_found.is_some() {
            self.regions.remove(id);
            let why = format!("{at}: the store has no peer of the region{message}");
            return Some(Retry::new(Wait::Backoff, why));
        }
        if e.stale_command.is_some() {
            self.regions.remove(id);
            let why = format!("{at}: stale command (the leader changed meanwhile){message}");
            return Some(Retry::new(Wait::Backoff, why));
        }
        if let Some(m) = &e.store_not_match {
            self.regions.remove(id);
            self.stores.remove(&peer.store_id);
            let why = format!(
                "{at}: the store there is store {}, not store {}",
                m.actual_store_id, m.request_store_id
            );
            return Some(Retry::new(Wait::Backoff, why));
        }
        if let Some(busy) = &e.server_is_busy {
            let why = format!("{at}: the store is busy: {}", busy.reason);
            return Some(Retry::new(Wait::AtLeastMs(busy.backoff_ms), why));
        }
        None
    }

    /// Where `region` ends now, as its leader knows it (`None`: at the end
    /// of the key space); see the module docs for why the cache's word is
    /// not enough. The leader is asked for a key at or past the region's
    /// cached end: its `key_not_in_region` answer carries the real range.
    /// A region whose end moved is dropped from the cache.
    async fn region_end(
        &mut self,
        what: &str,
        region: &CachedRegion,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let cached_end = region.region.end_key.clone();
        let key =
            if cached_end.is_empty() { vec![0xff; MAX_KEY_BYTES] } else { cached_end.clone() };
        let probe = RawGetRequest { key, cf: "default".into(), ..Default::default() };
        let mut current = region.clone();
        let mut last = None;
        for attempt in 1..=MAX_ATTEMPTS {
            let retry = match self.call(&current, probe.clone()).await? {
                Attempt::Retry(retry) => retry,
                Attempt::Answered((peer, addr, answer)) => {
                    let Some(e) = answer.region_error else {
                        // The region holds the probe: it ends where the
                        // cache says (past every key, if unbounded).
                        return Ok((!cached_end.is_empty()).then_some(cached_end));
                    };
                    if let Some(k) =
                        e.key_not_in_region.as_ref().filter(|k| k.region_id == region.id())
                    {
                        if k.end_key != cached_end {
                            self.regions.remove(region.id());
                        }
                        return Ok((!k.end_key.is_empty()).then(|| k.end_key.clone()));
                    }
                    match self.learn(&current, peer, &addr, &e) {
                        Some(retry) => retry,
                        None => {
                            return Err(Failure::Request(format!(
                                "{what}: cannot tell where region {} ends: store {} at {addr} \
                                 answered: {}",
                                region.id(),
                                peer.store_id,
                                e.message
                            )));
                        }
                    }
                }
            };
            if attempt < MAX_ATTEMPTS {
                retry.sleep(attempt).await;
            }
            last = Some(retry);
            current = match self.regions.by_id(region.id()) {
                Some(cached) => cached.clone(),
                None => match self.scheduler.get_region_by_id(region.id()).await? {
                    Some(fresh) => fresh,
                    None => {
                        return Err(Failure::Request(format!(
                            "{what}: region {} vanished while it was read (the scheduler no \
                             longer knows it); try again",
                            region.id()
                        )));
                    }
                },
            };
        }
        let why = last.map_or_else(String::new, |r| r.why);
        Err(Failure::Request(format!(
            "{what}: cannot tell where region {} ends after {MAX_ATTEMPTS} attempts; the last: \
             {why}",
            region.id()
        )))
    }
}

/// Why no region can serve a request that `region` refused with
/// `key_not_in_region`, if that is so: the store's range for the region is
/// the one the router used (so the request's keys are in it), yet the
/// store refuses a key the request reaches. That is a transaction's lock:
/// it is stored under the raw user key, while the request went to the
/// region of the key's encoding, and a region boundary lies between the
/// two (a region split at that very user key's encoding). Retrying cannot
/// help; the message says so.
fn unservable(region: &CachedRegion, e: &errorpb::Error) -> Option<String> {
    let k = e.key_not_in_region.as_ref()?;
    let r = &region.region;
    if k.region_id != r.id || k.start_key != r.start_key || k.end_key != r.end_key {
        return None;
    }
    Some(format!(
        "the store refuses key {} as outside the region [{}, {}), though the request went to \
         the region holding the key's data: the key's lock (stored under the raw key) and its \
         data (under the key's memcomparable encoding) lie in two regions, so no region can \
         serve it; this is a limit of the store's key layout \
         (docs/src/reference/key-layout.md), not something a retry fixes",
        show(&k.key),
        show(&k.start_key),
        show(&k.end_key)
    ))
}

/// The first key after `key`: `key` followed by a 0 byte.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let backoff = Retry::new(Wait::Backoff, String::new());
        let waits: Vec<u64> = (1..=7).map(|a| backoff.wait_ms(a)).collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 500, 500]);
        let total: u64 = (1..MAX_ATTEMPTS).map(|a| backoff.wait_ms(a)).sum();
        assert!(total < 3_000, "ten attempts wait {total} ms: too long for a command line");
        assert_eq!(Retry::new(Wait::Now, String::new()).wait_ms(5), 0);
        assert_eq!(Retry::new(Wait::AtLeastMs(300), String::new()).wait_ms(1), 300);
    }

    #[test]
    fn the_successor_is_the_next_key() {
        assert_eq!(successor(b"k"), b"k\0");
        assert!(successor(b"k").as_slice() > b"k".as_slice());
        assert!(successor(b"k").as_slice() < b"k\0\0".as_slice());
    }
}
