//! [`SchedulerClient`]: the calls tinykv-ctl makes to `tinykv-scheduler`
//! (`schedulerpb.Scheduler`, proto/proto/schedulerpb.proto).
//!
//! # Headers and errors
//!
//! The first call asks `GetMembers` for the cluster id, and every later
//! request carries it in its header (as a store does, see
//! kv/server/src/scheduler_client.rs), so a scheduler of another cluster
//! refuses instead of answering about the wrong cluster.
//!
//! The scheduler *answers* a refused request: the response header holds
//! an [`ErrorType`] and a message. A refusal becomes a
//! [`Failure::Request`] that names the call and quotes the message, except
//! `REGION_NOT_FOUND` from the region look-ups, which is an answer
//! (`None`): right after a split the scheduler may not know the new region
//! yet, and the router waits and asks again. A call that does not get
//! through names the address and says how to start a scheduler.
//!
//! # Timestamps
//!
//! `Tso` is a bidirectional stream: the client opens it once
//! ([`SchedulerClient::tso`] on its first call) and asks for one timestamp
//! per request on it; each answer carries the last of `count` timestamps,
//! so with `count = 1` it carries the timestamp.

use std::time::Duration;

use tinykv_proto::metapb::Store;
use tinykv_proto::schedulerpb::scheduler_client::SchedulerClient as GrpcClient;
use tinykv_proto::schedulerpb::{
    AddOperatorRequest, ErrorType, GetAllStoresRequest, GetMembersRequest, GetOperatorRequest,
    GetOperatorResponse, GetRegionByIdRequest, GetRegionRequest, GetRegionResponse,
    GetStoreRequest, GetStoreResponse, RequestHeader, ResponseHeader, ScanRegionsRequest,
    TsoRequest, TsoResponse,
};
use tinykv_transaction::ts;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::Failure;
use crate::addr::Addr;
use crate::region_cache::CachedRegion;
use crate::store::{describe_status, is_transport_failure};

/// How long connecting to the scheduler may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one scheduler call may take. Its calls are in-memory look-ups
/// (a `Tso` may fsync a new bound), so this is generous.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the hint of an unreachable scheduler says.
const START_HINT: &str = "is tinykv-scheduler running there? `make cluster` starts a cluster";

/// A client of the scheduler at one address. See the module docs.
pub struct SchedulerClient {
    addr: Addr,
    client: GrpcClient<Channel>,
    /// The cluster id, once `GetMembers` has told it.
    cluster_id: Option<u64>,
    /// The open `Tso` stream: where requests go, and where answers come.
    tso: Option<(mpsc::Sender<TsoRequest>, tonic::Streaming<TsoResponse>)>,
}

impl SchedulerClient {
    /// A client of the scheduler at `addr`; nothing is sent until the
    /// first call.
    pub fn new(addr: Addr) -> Result<SchedulerClient, Failure> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Failure::Request(format!("cannot connect to {addr}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        let client = GrpcClient::new(endpoint.connect_lazy());
        Ok(SchedulerClient { addr, client, cluster_id: None, tso: None })
    }

    /// The scheduler's address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// A failed call as a failure that names the scheduler.
    fn unreachable(&self, call: &str, status: &Status) -> Failure {
        let at = format!("the scheduler at {}", self.addr);
        if is_transport_failure(status) {
            return Failure::Request(describe_status(&at, status, START_HINT));
        }
        Failure::Request(format!("{at} failed {call}: {:?}: {}", status.code(), status.message()))
    }

    /// The header of every request: the cluster id, asked for once.
    async fn header(&mut self) -> Result<Option<RequestHeader>, Failure> {
        if let Some(cluster_id) = self.cluster_id {
            return Ok(Some(RequestHeader { cluster_id }));
        }
        let resp = self.client.get_members(GetMembersRequest::default()).await;
        let resp = resp.map_err(|s| self.unreachable("GetMembers", &s))?.into_inner();
        self.check("GetMembers", resp.header.as_ref())?;
        let cluster_id = resp.header.map_or(0, |h| h.cluster_id);
        self.cluster_id = Some(cluster_id);
        Ok(Some(RequestHeader { cluster_id }))
    }

    /// An error header as a failure that names `call`.
    fn check(&self, call: &str, header: Option<&ResponseHeader>) -> Result<(), Failure> {
        let Some(error) = header.and_then(|h| h.error.as_ref()) else { return Ok(()) };
        let kind = error.r#type();
        if kind == ErrorType::Ok {
            return Ok(());
        }
        let hint = match kind {
            ErrorType::NotBootstrapped => {
                " (no store has joined yet: start one with `tinykv-server --scheduler ADDR`)"
            }
            _ => "",
        };
        Err(Failure::Request(format!(
            "the scheduler at {} refused {call}: {}{hint}",
            self.addr, error.message
        )))
    }

    /// A region look-up's answer: `None` for `REGION_NOT_FOUND`.
    fn region_answer(
        &self,
        call: &str,
        resp: GetRegionResponse,
    ) -> Result<Option<CachedRegion>, Failure> {
        let not_found = resp
            .header
            .as_ref()
            .and_then(|h| h.error.as_ref())
            .is_some_and(|e| e.r#type() == ErrorType::RegionNotFound);
        if not_found {
            return Ok(None);
        }
        self.check(call, resp.header.as_ref())?;
        let size = resp.approximate_size;
        Ok(resp.region.map(|region| CachedRegion::new(region, resp.leader).with_size(size)))
    }

    /// The region holding `key`, and its leader if the scheduler knows it
    /// (`None`: it knows no region holding `key` yet).
    pub async fn get_region(&mut self, key: &[u8]) -> Result<Option<CachedRegion>, Failure> {
        let req = GetRegionRequest { header: self.header().await?, region_key: key.to_vec() };
        let resp = self.client.get_region(req).await;
        let resp = resp.map_err(|s| self.unreachable("GetRegion", &s))?.into_inner();
        self.region_answer("GetRegion", resp)
    }

    /// The region with id `region_id` (`None`: the scheduler does not
    /// know it).
    pub async fn get_region_by_id(
        &mut self,
        region_id: u64,
    ) -> Result<Option<CachedRegion>, Failure> {
        let req = GetRegionByIdRequest { header: self.header().await?, region_id };
        let resp = self.client.get_region_by_id(req).await;
        let resp = resp.map_err(|s| self.unreachable("GetRegionByID", &s))?.into_inner();
        self.region_answer("GetRegionByID", resp)
    }

    /// Up to `limit` regions (0: all) from the one holding `start` on, in
    /// key order, each with its leader when known.
    pub async fn scan_regions(
        &mut self,
        start: &[u8],
        limit: u32,
    ) -> Result<Vec<CachedRegion>, Failure> {
        let req = ScanRegionsRequest {
            header: self.header().await?,
            start_key: start.to_vec(),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
            end_key: Vec::new(),
        };
        let resp = self.client.scan_regions(req).await;
        let resp = resp.map_err(|s| self.unreachable("ScanRegions", &s))?.into_inner();
        self.check("ScanRegions", resp.header.as_ref())?;
        let mut leaders = resp.leaders.into_iter();
        let mut sizes = resp.approximate_sizes.into_iter();
        // One leader and one size per region; an empty peer where no
        // leader is known.
        let regions = resp
            .regions
            .into_iter()
            .map(|region| {
                let size = sizes.next().unwrap_or(0);
                CachedRegion::new(region, leaders.next()).with_size(size)
            })
            .collect();
        Ok(regions)
    }

    /// The store with id `store_id`.
    pub async fn get_store(&mut self, store_id: u64) -> Result<Store, Failure> {
        let resp = self.get_store_info(store_id).await?;
        resp.store.filter(|s| s.id == store_id).ok_or_else(|| {
            Failure::Request(format!(
                "the scheduler at {} answered GetStore of store {store_id} without that store",
                self.addr
            ))
        })
    }

    /// What the scheduler knows of store `store_id`: the store, its last
    /// statistics, when it last heard from it, its region counts.
    pub async fn get_store_info(&mut self, store_id: u64) -> Result<GetStoreResponse, Failure> {
        let req = GetStoreRequest { header: self.header().await?, store_id };
        let resp = self.client.get_store(req).await;
        let resp = resp.map_err(|s| self.unreachable("GetStore", &s))?.into_inner();
        self.check(&format!("GetStore of store {store_id}"), resp.header.as_ref())?;
        Ok(resp)
    }

    /// Starts an operator by hand (`AddOperator`, TinyKV's own call);
    /// returns its description.
    pub async fn add_operator(&mut self, mut req: AddOperatorRequest) -> Result<String, Failure> {
        req.header = self.header().await?;
        let region_id = req.region_id;
        let resp = self.client.add_operator(req).await;
        let resp = resp.map_err(|s| self.unreachable("AddOperator", &s))?.into_inner();
        self.check(&format!("AddOperator on region {region_id}"), resp.header.as_ref())?;
        Ok(resp.desc)
    }

    /// Every store the scheduler knows, tombstones included.
    pub async fn get_all_stores(&mut self) -> Result<Vec<Store>, Failure> {
        let req =
            GetAllStoresRequest { header: self.header().await?, exclude_tombstone_stores: false };
        let resp = self.client.get_all_stores(req).await;
        let resp = resp.map_err(|s| self.unreachable("GetAllStores", &s))?.into_inner();
        self.check("GetAllStores", resp.header.as_ref())?;
        Ok(resp.stores)
    }

    /// The operator running on region `region_id`, or the last one that
    /// ended there (`None`: the region has had none lately).
    pub async fn get_operator(
        &mut self,
        region_id: u64,
    ) -> Result<Option<GetOperatorResponse>, Failure> {
        let req = GetOperatorRequest { header: self.header().await?, region_id };
        let resp = self.client.get_operator(req).await;
        let resp = resp.map_err(|s| self.unreachable("GetOperator", &s))?.into_inner();
        let none = resp.header.as_ref().and_then(|h| h.error.as_ref());
        if none.is_some_and(|e| e.r#type() == ErrorType::OperatorNotFound) {
            return Ok(None);
        }
        self.check(&format!("GetOperator of region {region_id}"), resp.header.as_ref())?;
        Ok(Some(resp))
    }

    /// One timestamp from the scheduler's timestamp oracle, on the `Tso`
    /// stream (opened on the first call).
    pub async fn tso(&mut self) -> Result<u64, Failure> {
        let header = self.header().await?;
        if self.tso.is_none() {
            let (tx, rx) = mpsc::channel(1);
            let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
            let stream = self.client.tso(requests).await;
            let stream = stream.map_err(|s| self.unreachable("Tso", &s))?.into_inner();
            self.tso = Some((tx, stream));
        }
        let (tx, stream) = self.tso.as_mut().expect("opened above");
        let broken = |why: String| Failure::Request(format!("the Tso stream broke: {why}"));
        tx.send(TsoRequest { header, count: 1 })
            .await
            .map_err(|_| broken("the scheduler stopped reading it".into()))?;
        let answer = match stream.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Err(broken("the scheduler closed it without an answer".into())),
            Err(status) => return Err(self.unreachable("Tso", &status)),
        };
        self.check("Tso", answer.header.as_ref())?;
        let timestamp = answer.timestamp.unwrap_or_default();
        let physical = u64::try_from(timestamp.physical).ok().filter(|&p| p < 1 << 46);
        let logical = u64::try_from(timestamp.logical).ok().filter(|&l| l < 1 << ts::LOGICAL_BITS);
        match (physical, logical) {
            (Some(physical), Some(logical)) if physical > 0 => Ok(ts::compose(physical, logical)),
            _ => Err(Failure::Request(format!(
                "the scheduler at {} answered Tso with a timestamp out of range: physical {} \
                 ms, logical {}",
                self.addr, timestamp.physical, timestamp.logical
            ))),
        }
    }
}
