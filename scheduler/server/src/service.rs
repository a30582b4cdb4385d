//! [`SchedulerService`]: the gRPC `Scheduler` service over the scheduler
//! core.
//!
//! # Shape
//!
//! The core, [`RaftCluster`], is sans-I/O: plain synchronous methods that
//! take the time as an argument. The service shares it as an
//! `Arc<Mutex<RaftCluster>>` and, for every request, runs one closure over
//! it on tokio's blocking pool (`SchedulerService::run`): the closure
//! locks the mutex, reads the clock, calls the core and returns. The lock
//! is never held across an `.await`, and a write that fsyncs never stalls
//! an async worker thread.
//!
//! The clock is a `Fn() -> u64` of wall-clock milliseconds
//! ([`wall_clock_ms`]); tests inject their own ([`SchedulerService::with_clock`]).
//!
//! # Answers
//!
//! Every response carries `ResponseHeader { cluster_id, error }`. A
//! refused request is *answered*, not failed: `error` holds the
//! protocol's [`ErrorType`] (from [`tinykv_scheduler::Error::error_type`]:
//! `NOT_BOOTSTRAPPED`, `ALREADY_BOOTSTRAPPED`, `STORE_TOMBSTONE`,
//! `REGION_NOT_FOUND`, else `UNKNOWN`; and `OPERATOR_NOT_FOUND` from
//! `GetOperator`) and a message saying what was wrong,
//! so a program acts on the type and a person reads the message. A refused
//! request changes nothing. A gRPC error status is kept for what is not
//! the client's doing: a panic in the core (`INTERNAL`, with the panic
//! message; the service then refuses everything, since the core's state
//! may be half-changed), or a broken transport.
//!
//! What is checked before the core is called:
//!
//! - the header: a request naming another cluster (a non-zero id that is
//!   not this one) is refused; a missing header or id 0 is accepted, so
//!   that hand-written tools need not ask for the id first;
//! - the fields the protocol constrains: messages that must be present
//!   (`store`, `region`, `stats`, `cluster`), ids that must not be 0,
//!   key ranges that must not be inverted. The core checks the rest
//!   (a region's shape, a store's address, a TSO count).
//!
//! Nothing but `GetMembers`, `Tso`, `Bootstrap`, `IsBootstrapped` and
//! `AllocID` works before the cluster is bootstrapped.
//!
//! # Streams
//!
//! `Tso` and `RegionHeartbeat` are bidirectional streams. Each has a task
//! that reads the requests one at a time, in order, and sends the answers
//! through a bounded channel ([`STREAM_BUFFER`]); the task ends when the
//! client closes its side, when the client stops reading answers, or when
//! the service is stopped ([`SchedulerService::stop`]), so a shutdown does
//! not wait for the stores to hang up.
//!
//! - `Tso`: each request gets one answer: `count` timestamps, of which
//!   the answer carries the last.
//! - `RegionHeartbeat`: each heartbeat goes to
//!   [`RaftCluster::on_region_heartbeat`]; if the region has an operator,
//!   its current step goes back on the same stream. A stale or malformed
//!   heartbeat is logged at debug level and gets no answer (the leader
//!   sends a fresh one soon); the stream goes on. Any other refusal (not
//!   bootstrapped, another cluster, a storage failure) is answered with an
//!   error header naming the region, so the store sees it.
//!
//! # Background work
//!
//! [`SchedulerService::spawn_ticker`] calls [`RaftCluster::tick`] every
//! [`TICK_INTERVAL`]: operators time out, and the schedulers and the
//! replica checker run every `schedule_interval_ms`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tinykv_proto::metapb::{Peer, StoreState};
use tinykv_proto::schedulerpb::scheduler_server::{Scheduler, SchedulerServer};
use tinykv_proto::schedulerpb::*;
use tinykv_scheduler::operator::HISTORY_LEN;
use tinykv_scheduler::{AdminOp, RaftCluster, RegionInfo};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The largest gRPC message the service reads or writes. A `ScanRegions`
/// answer of every region of a large cluster is the biggest message; 8
/// MiB holds about 100 000 regions.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 8 << 20;

/// How many answers a stream holds for a client that reads slowly before
/// its task waits (and so stops reading that client's requests).
pub const STREAM_BUFFER: usize = 64;

/// How often [`SchedulerService::spawn_ticker`] lets time pass in the core.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// A clock: milliseconds since the Unix epoch (or any origin, in tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock, in milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What a refused request is answered with: the protocol's error type and
/// a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Refusal {
    error_type: ErrorType,
    message: String,
}

impl Refusal {
    /// A request with a field out of what the protocol allows.
    fn invalid(message: impl std::fmt::Display) -> Refusal {
        Refusal { error_type: ErrorType::Unknown, message: format!("invalid request: {message}") }
    }

    /// A call this scheduler does not serve.
    fn unsupported(call: &str) -> Refusal {
        Refusal {
            error_type: ErrorType::Unknown,
            message: format!("{call} is not supported by tinykv-scheduler"),
        }
    }

    fn into_error(self) -> Error {
        Error { r#type: self.error_type as i32, message: self.message }
    }
}

impl From<tinykv_scheduler::Error> for Refusal {
    fn from(e: tinykv_scheduler::Error) -> Refusal {
        Refusal { error_type: e.error_type(), message: e.to_string() }
    }
}

/// The refusal of every call but the few allowed before the bootstrap.
fn require_bootstrapped(cluster: &RaftCluster) -> Result<(), Refusal> {
    if cluster.is_bootstrapped() {
        Ok(())
    } else {
        Err(tinykv_scheduler::Error::NotBootstrapped.into())
    }
}

/// A response message with a `header` field.
trait WithHeader: Default + Send + 'static {
    fn set_header(&mut self, header: ResponseHeader);
}

macro_rules! with_header {
    ($($t:ty),* $(,)?) => {$(
        impl WithHeader for $t {
            fn set_header(&mut self, header: ResponseHeader) {
                self.header = Some(header);
            }
        }
    )*};
}

with_header! {
    GetMembersResponse, TsoResponse, BootstrapResponse, IsBootstrappedResponse,
    AllocIdResponse, GetStoreResponse, PutStoreResponse, GetAllStoresResponse,
    StoreHeartbeatResponse, RegionHeartbeatResponse, GetRegionResponse,
    ScanRegionsResponse, AskSplitResponse, GetClusterConfigResponse,
    PutClusterConfigResponse, ScatterRegionResponse, GetGcSafePointResponse,
    UpdateGcSafePointResponse, GetOperatorResponse, ReportSplitResponse,
    AddOperatorResponse,
}

/// The gRPC `Scheduler` service. See the module docs. Cheap to clone: every
/// clone shares the core, the clock and the stop signal.
#[derive(Clone)]
pub struct SchedulerService {
    cluster: Arc<Mutex<RaftCluster>>,
    /// The core's cluster id (fixed at its first start), cached so that a
    /// header is checked without the lock.
    cluster_id: u64,
    clock: Clock,
    /// The address clients reach this scheduler at (for `GetMembers`).
    address: String,
    /// `true` once [`stop`](Self::stop) is called.
    stopped: watch::Sender<bool>,
}

impl std::fmt::Debug for SchedulerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerService")
            .field("cluster_id", &self.cluster_id)
            .field("address", &self.address)
            .field("stopped", &*self.stopped.borrow())
            .finish_non_exhaustive()
    }
}

impl SchedulerService {
    /// A service over `cluster`, reachable at `address` (`HOST:PORT`), on
    /// the wall clock.
    pub fn new(cluster: Arc<Mutex<RaftCluster>>, address: impl Into<String>) -> SchedulerService {
        let cluster_id = cluster.lock().unwrap_or_else(|p| p.into_inner()).cluster_id();
        SchedulerService {
            cluster,
            cluster_id,
            clock: Arc::new(wall_clock_ms),
            address: address.into(),
            stopped: watch::Sender::new(false),
        }
    }

    /// The same service on another clock (tests: a clock they move).
    pub fn with_clock(mut self, clock: Clock) -> SchedulerService {
        self.clock = clock;
        self
    }

    /// The core it serves.
    pub fn cluster(&self) -> &Arc<Mutex<RaftCluster>> {
        &self.cluster
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Ends every stream and the ticker, in every clone. Calls already
    /// running finish; [`crate::serve`] calls this when it is told to
    /// shut down.
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// The tonic server type, with message size limits set.
    pub fn into_tonic(self) -> SchedulerServer<SchedulerService> {
        SchedulerServer::new(self)
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    /// Calls [`RaftCluster::tick`] every `period` until [`stop`](Self::stop).
    /// A failing tick (storage) is logged, once per distinct error; a panic
    /// in the core ends the ticker.
    pub fn spawn_ticker(&self, period: Duration) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut stopped = this.stopped.subscribe();
            let mut last_error = None;
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                match this.run(|cluster, now_ms| cluster.tick(now_ms)).await {
                    Ok(Ok(())) => last_error = None,
                    Ok(Err(e)) => {
                        let message = e.to_string();
                        if last_error.as_ref() != Some(&message) {
                            log::warn!(
                                "scheduler tick failed (retried every {period:?}): {message}"
                            );
                            last_error = Some(message);
                        }
                    }
                    Err(status) => {
                        log::error!("scheduling stopped: {}", status.message());
                        return;
                    }
                }
            }
        })
    }

    /// Runs `f` over the core at the clock's time, on the blocking pool.
    ///
    /// # Errors
    ///
    /// `INTERNAL` if `f` panics (with the panic message), or if an earlier
    /// call panicked (the mutex is poisoned: the core may be half-changed,
    /// so nothing more is served until a restart).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RaftCluster, u64) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let cluster = Arc::clone(&self.cluster);
        let clock = Arc::clone(&self.clock);
        let job = tokio::task::spawn_blocking(move || {
            let mut cluster = cluster.lock().map_err(|_| {
                Status::internal(
                    "the scheduler core panicked in an earlier call and may be inconsistent; \
                     restart tinykv-scheduler (its durable state is intact)",
                )
            })?;
            let now_ms = clock();
            Ok(f(&mut cluster, now_ms))
        });
        match job.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => {
                let message = panic_message(e.into_panic());
                log::error!("the scheduler core panicked: {message}");
                Err(Status::internal(format!("the scheduler core panicked: {message}")))
            }
            Err(e) => Err(Status::internal(format!("a scheduler call was cancelled: {e}"))),
        }
    }

    /// Refuses a request meant for another cluster.
    fn check_header(&self, header: Option<&RequestHeader>) -> Result<(), Refusal> {
        let asked = header.map_or(0, |h| h.cluster_id);
        if asked == 0 || asked == self.cluster_id {
            return Ok(());
        }
        Err(Refusal {
            error_type: ErrorType::Unknown,
            message: format!(
                "the request is for cluster {asked}, but this scheduler serves cluster {}",
                self.cluster_id
            ),
        })
    }

    /// `result` with its header.
    fn respond<R: WithHeader>(&self, result: Result<R, Refusal>) -> R {
        let (mut response, error) = match result {
            Ok(response) => (response, None),
            Err(refusal) => {
                log::debug!("request refused: {}", refusal.message);
                (R::default(), Some(refusal.into_error()))
            }
        };
        response.set_header(ResponseHeader { cluster_id: self.cluster_id, error });
        response
    }

    /// The answer to a request with `header`: `handler` run over the core
    /// (if the header is this cluster's), with the response header set.
    async fn answer<R: WithHeader>(
        &self,
        header: Option<RequestHeader>,
        handler: impl FnOnce(&mut RaftCluster, u64) -> Result<R, Refusal> + Send + 'static,
    ) -> Result<R, Status> {
        let result = match self.check_header(header.as_ref()) {
            Ok(()) => self.run(handler).await?,
            Err(refusal) => Err(refusal),
        };
        Ok(self.respond(result))
    }

    /// [`answer`](Self::answer) as a gRPC response.
    async fn call<R: WithHeader>(
        &self,
        header: Option<RequestHeader>,
        handler: impl FnOnce(&mut RaftCluster, u64) -> Result<R, Refusal> + Send + 'static,
    ) -> Result<Response<R>, Status> {
        self.answer(header, handler).await.map(Response::new)
    }

    /// Serves a bidirectional stream: `handle` answers each request (or
    /// not: `None`), in order, until the client closes its side, stops
    /// reading, or the service stops. An `Err` answer (a panic in the
    /// core) ends the stream with that status.
    fn serve_stream<Req, Resp, F, Fut>(
        &self,
        mut requests: Streaming<Req>,
        what: &'static str,
        handle: F,
    ) -> ReceiverStream<Result<Resp, Status>>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: Fn(SchedulerService, Req) -> Fut + Send + 'static,
        Fut: Future<Output = Option<Result<Resp, Status>>> + Send,
    {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        tokio::spawn(async move {
            let mut stopped = this.stopped.subscribe();
            loop {
                let request = tokio::select! {
                    request = requests.message() => request,
                    _ = stopped.wait_for(|s| *s) => break,
                };
                let request = match request {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        log::debug!("{what} stream broken by the client: {status}");
                        break;
                    }
                };
                let Some(answer) = handle(this.clone(), request).await else { continue };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        ReceiverStream::new(rx)
    }

    /// The answer to one TSO request.
    async fn tso_one(self, request: TsoRequest) -> Option<Result<TsoResponse, Status>> {
        let count = request.count;
        let answer = self.answer(request.header, move |cluster, now_ms| {
            let timestamp = cluster.tso(count, now_ms)?;
            Ok(TsoResponse { count, timestamp: Some(timestamp), ..Default::default() })
        });
        Some(answer.await)
    }

    /// The answer to one region heartbeat, if any. See the module docs.
    async fn region_heartbeat_one(
        self,
        request: RegionHeartbeatRequest,
    ) -> Option<Result<RegionHeartbeatResponse, Status>> {
        let region_id = request.region.as_ref().map_or(0, |r| r.id);
        let refused = |this: &SchedulerService, refusal: Refusal| {
            let mut response = this.respond::<RegionHeartbeatResponse>(Err(refusal));
            response.region_id = region_id;
            Some(Ok(response))
        };
        if let Err(refusal) = self.check_header(request.header.as_ref()) {
            return refused(&self, refusal);
        }
        let result = self.run(move |cluster, now_ms| cluster.on_region_heartbeat(&request, now_ms));
        match result.await {
            Err(status) => Some(Err(status)),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(response))) => Some(Ok(self.respond(Ok(response)))),
            Ok(Err(tinykv_scheduler::Error::Malformed(e))) => {
                log::debug!("region heartbeat ignored: {e}");
                None
            }
            // The core logs stale heartbeats (at debug level) and counts
            // them.
            Ok(Err(tinykv_scheduler::Error::Stale(_))) => None,
            Ok(Err(e)) => refused(&self, e.into()),
        }
    }
}

/// A region as a `GetRegion` answer: the region, its leader, its followers.
fn region_response(info: &RegionInfo) -> GetRegionResponse {
    GetRegionResponse {
        region: Some(info.region.clone()),
        leader: info.leader,
        slaves: info.followers().collect(),
        approximate_size: info.approximate_size,
        ..Default::default()
    }
}

/// A key for people: printable ASCII as is, other bytes escaped.
fn show_key(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// The text of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_string(),
            Err(_) => "(panic payload is not a string)".to_string(),
        },
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type TsoStream = ReceiverStream<Result<TsoResponse, Status>>;
    type RegionHeartbeatStream = ReceiverStream<Result<RegionHeartbeatResponse, Status>>;

    async fn get_members(
        &self,
        _request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        // One member, always the leader. The header's cluster id is not
        // checked (a client asks this first, to learn the id).
        let url = format!("http://{}", self.address);
        let member = Member {
            name: "tinykv-scheduler".into(),
            member_id: 1,
            peer_urls: vec![url.clone()],
            client_urls: vec![url],
            leader_priority: 0,
        };
        let response = GetMembersResponse {
            members: vec![member.clone()],
            leader: Some(member.clone()),
            etcd_leader: Some(member),
            ..Default::default()
        };
        Ok(Response::new(self.respond(Ok(response))))
    }

    async fn tso(
        &self,
        request: Request<Streaming<TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let stream = self.serve_stream(request.into_inner(), "Tso", SchedulerService::tso_one);
        Ok(Response::new(stream))
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            let store =
                request.store.ok_or_else(|| Refusal::invalid("Bootstrap without a store"))?;
            let region = request.region.ok_or_else(|| {
                Refusal::invalid("Bootstrap without a region (the cluster's first region)")
            })?;
            cluster.bootstrap(store, region)?;
            Ok(BootstrapResponse::default())
        })
        .await
    }

    async fn is_bootstrapped(
        &self,
        request: Request<IsBootstrappedRequest>,
    ) -> Result<Response<IsBootstrappedResponse>, Status> {
        self.call(request.into_inner().header, |cluster, _| {
            Ok(IsBootstrappedResponse {
                bootstrapped: cluster.is_bootstrapped(),
                ..Default::default()
            })
        })
        .await
    }

    async fn alloc_id(
        &self,
        request: Request<AllocIdRequest>,
    ) -> Result<Response<AllocIdResponse>, Status> {
        self.call(request.into_inner().header, |cluster, _| {
            Ok(AllocIdResponse { id: cluster.alloc_id()?, ..Default::default() })
        })
        .await
    }

    async fn get_store(
        &self,
        request: Request<GetStoreRequest>,
    ) -> Result<Response<GetStoreResponse>, Status> {
        let request = request.into_inner();
        let store_id = request.store_id;
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            if store_id == 0 {
                return Err(Refusal::invalid("GetStore of store 0"));
            }
            let info = cluster
                .store(store_id)
                .ok_or(tinykv_scheduler::Error::UnknownStore { store_id })?;
            Ok(GetStoreResponse {
                store: Some(info.store.clone()),
                stats: Some(info.stats.clone()),
                last_heartbeat_unix_ms: info.last_heartbeat_ms.unwrap_or(0),
                region_count: info.region_count as u64,
                leader_count: info.leader_count as u64,
                region_size: info.region_size,
                ..Default::default()
            })
        })
        .await
    }

    async fn put_store(
        &self,
        request: Request<PutStoreRequest>,
    ) -> Result<Response<PutStoreResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            let store =
                request.store.ok_or_else(|| Refusal::invalid("PutStore without a store"))?;
            cluster.put_store(store)?;
            Ok(PutStoreResponse::default())
        })
        .await
    }

    async fn get_all_stores(
        &self,
        request: Request<GetAllStoresRequest>,
    ) -> Result<Response<GetAllStoresResponse>, Status> {
        let request = request.into_inner();
        let exclude_tombstones = request.exclude_tombstone_stores;
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            let stores = cluster
                .basic()
                .stores
                .values()
                .filter(|s| !(exclude_tombstones && s.store.state() == StoreState::Tombstone))
                .map(|s| s.store.clone())
                .collect();
            Ok(GetAllStoresResponse { stores, ..Default::default() })
        })
        .await
    }

    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, now_ms| {
            require_bootstrapped(cluster)?;
            let stats =
                request.stats.ok_or_else(|| Refusal::invalid("StoreHeartbeat without stats"))?;
            if stats.store_id == 0 {
                return Err(Refusal::invalid("StoreHeartbeat of store 0"));
            }
            cluster.on_store_heartbeat(stats, now_ms)?;
            Ok(StoreHeartbeatResponse::default())
        })
        .await
    }

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        let stream = self.serve_stream(
            request.into_inner(),
            "RegionHeartbeat",
            SchedulerService::region_heartbeat_one,
        );
        Ok(Response::new(stream))
    }

    async fn get_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            let key = request.region_key;
            let info = cluster.region_by_key(&key).ok_or_else(|| Refusal {
                error_type: ErrorType::RegionNotFound,
                message: format!("no known region holds key {}", show_key(&key)),
            })?;
            Ok(region_response(info))
        })
        .await
    }

    async fn get_prev_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            let key = request.region_key;
            let holder = cluster.region_by_key(&key).ok_or_else(|| Refusal {
                error_type: ErrorType::RegionNotFound,
                message: format!("no known region holds key {}", show_key(&key)),
            })?;
            // The first region has nothing before it: not an error.
            if holder.region.start_key.is_empty() {
                return Ok(GetRegionResponse::default());
            }
            let start = holder.region.start_key.clone();
            let info = cluster.prev_region(&key).ok_or_else(|| Refusal {
                error_type: ErrorType::RegionNotFound,
                message: format!("no known region ends at {}", show_key(&start)),
            })?;
            Ok(region_response(info))
        })
        .await
    }

    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let request = request.into_inner();
        let region_id = request.region_id;
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            if region_id == 0 {
                return Err(Refusal::invalid("GetRegionByID of region 0"));
            }
            let info = cluster
                .region(region_id)
                .ok_or(tinykv_scheduler::Error::RegionNotFound { region_id })?;
            Ok(region_response(info))
        })
        .await
    }

    async fn scan_regions(
        &self,
        request: Request<ScanRegionsRequest>,
    ) -> Result<Response<ScanRegionsResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            let (start, end) = (request.start_key, request.end_key);
            if !end.is_empty() && end <= start {
                return Err(Refusal::invalid(format!(
                    "ScanRegions of an empty or inverted range [{}, {})",
                    show_key(&start),
                    show_key(&end)
                )));
            }
            // Zero or negative: no limit (the protocol's rule).
            let limit = usize::try_from(request.limit).unwrap_or(0);
            let found = cluster.basic().regions.scan(&start, &end, limit);
            Ok(ScanRegionsResponse {
                regions: found.iter().map(|r| r.region.clone()).collect(),
                // One per region; an empty peer where no leader is known
                // yet (a region loaded from disk, not heard from since).
                leaders: found.iter().map(|r| r.leader.unwrap_or_default()).collect::<Vec<Peer>>(),
                approximate_sizes: found.iter().map(|r| r.approximate_size).collect(),
                ..Default::default()
            })
        })
        .await
    }

    async fn ask_split(
        &self,
        request: Request<AskSplitRequest>,
    ) -> Result<Response<AskSplitResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| Ok(cluster.ask_split(request.region)?)).await
    }

    async fn report_split(
        &self,
        request: Request<ReportSplitRequest>,
    ) -> Result<Response<ReportSplitResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            cluster.report_split(request.left.as_ref(), request.right.as_ref())?;
            Ok(ReportSplitResponse::default())
        })
        .await
    }

    async fn get_cluster_config(
        &self,
        request: Request<GetClusterConfigRequest>,
    ) -> Result<Response<GetClusterConfigResponse>, Status> {
        self.call(request.into_inner().header, |cluster, _| {
            require_bootstrapped(cluster)?;
            Ok(GetClusterConfigResponse { cluster: cluster.meta().copied(), ..Default::default() })
        })
        .await
    }

    async fn put_cluster_config(
        &self,
        request: Request<PutClusterConfigRequest>,
    ) -> Result<Response<PutClusterConfigResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            let config = request
                .cluster
                .ok_or_else(|| Refusal::invalid("PutClusterConfig without a cluster"))?;
            if config.id != 0 && config.id != cluster.cluster_id() {
                return Err(Refusal::invalid(format!(
                    "PutClusterConfig of cluster {}, but this is cluster {}",
                    config.id,
                    cluster.cluster_id()
                )));
            }
            cluster.set_max_replicas(config.max_peer_count)?;
            log::info!("max_peer_count is now {}", config.max_peer_count);
            Ok(PutClusterConfigResponse::default())
        })
        .await
    }

    async fn scatter_region(
        &self,
        request: Request<ScatterRegionRequest>,
    ) -> Result<Response<ScatterRegionResponse>, Status> {
        let header = request.into_inner().header;
        self.call(header, |_, _| Err(Refusal::unsupported("ScatterRegion"))).await
    }

    async fn get_gc_safe_point(
        &self,
        request: Request<GetGcSafePointRequest>,
    ) -> Result<Response<GetGcSafePointResponse>, Status> {
        let header = request.into_inner().header;
        self.call(header, |_, _| Err(Refusal::unsupported("GetGCSafePoint"))).await
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<UpdateGcSafePointRequest>,
    ) -> Result<Response<UpdateGcSafePointResponse>, Status> {
        let header = request.into_inner().header;
        self.call(header, |_, _| Err(Refusal::unsupported("UpdateGCSafePoint"))).await
    }

    async fn get_operator(
        &self,
        request: Request<GetOperatorRequest>,
    ) -> Result<Response<GetOperatorResponse>, Status> {
        let request = request.into_inner();
        let region_id = request.region_id;
        self.call(request.header, move |cluster, _| {
            require_bootstrapped(cluster)?;
            if region_id == 0 {
                return Err(Refusal::invalid("GetOperator of region 0"));
            }
            let operators = cluster.operators();
            let found = match operators.get(region_id) {
                Some(op) => Some((op, OperatorStatus::Running)),
                None => operators
                    .history()
                    .rev()
                    .find(|(op, _, _)| op.region_id == region_id)
                    .map(|(op, outcome, _)| (op, outcome.status())),
            };
            let Some((op, status)) = found else {
                if cluster.region(region_id).is_none() {
                    return Err(tinykv_scheduler::Error::RegionNotFound { region_id }.into());
                }
                return Err(Refusal {
                    error_type: ErrorType::OperatorNotFound,
                    message: format!(
                        "region {region_id} has no operator running or among the last \
                         {HISTORY_LEN} that ended"
                    ),
                });
            };
            Ok(GetOperatorResponse {
                region_id,
                desc: op.desc.as_bytes().to_vec(),
                status: status as i32,
                kind: op.kind.name().as_bytes().to_vec(),
                ..Default::default()
            })
        })
        .await
    }

    async fn add_operator(
        &self,
        request: Request<AddOperatorRequest>,
    ) -> Result<Response<AddOperatorResponse>, Status> {
        let request = request.into_inner();
        self.call(request.header, move |cluster, now_ms| {
            require_bootstrapped(cluster)?;
            let op = admin_op(&request)?;
            let operator = cluster.add_admin_operator(op, now_ms)?;
            Ok(AddOperatorResponse { desc: operator.to_string(), ..Default::default() })
        })
        .await
    }
}

/// The admin operator an `AddOperator` request asks for, its fields checked.
fn admin_op(request: &AddOperatorRequest) -> Result<AdminOp, Refusal> {
    let region_id = request.region_id;
    if region_id == 0 {
        return Err(Refusal::invalid("AddOperator on region 0"));
    }
    let kind = OperatorType::try_from(request.r#type)
        .map_err(|_| Refusal::invalid(format!("AddOperator of unknown type {}", request.r#type)))?;
    let store_id = request.store_id;
    let needs_store = !matches!(kind, OperatorType::Split);
    if needs_store && store_id == 0 {
        return Err(Refusal::invalid(format!("AddOperator {}: store 0", kind.as_str_name())));
    }
    if needs_store && !request.split_key.is_empty() {
        return Err(Refusal::invalid(format!(
            "AddOperator {}: a split key is only for SPLIT",
            kind.as_str_name()
        )));
    }
    Ok(match kind {
        OperatorType::AddPeer => AdminOp::AddPeer { region_id, store_id },
        OperatorType::RemovePeer => AdminOp::RemovePeer { region_id, store_id },
        OperatorType::TransferLeader => AdminOp::TransferLeader { region_id, store_id },
        OperatorType::Split => {
            if store_id != 0 {
                return Err(Refusal::invalid("AddOperator SPLIT: a store is only for the others"));
            }
            AdminOp::Split { region_id, split_key: request.split_key.clone() }
        }
    })
}
