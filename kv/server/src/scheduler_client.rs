//! A store's link to `tinykv-scheduler` (lab 3c and the real cluster).
//!
//! [`SchedulerClient`] wraps the generated gRPC client: it learns the
//! cluster id ([`connect`](SchedulerClient::connect)), puts it in every
//! request header, and turns an error header into an [`Err`] that keeps
//! the protocol's [`ErrorType`], so callers can act on it (an
//! `ALREADY_BOOTSTRAPPED` answer is not a failure when two stores race to
//! bootstrap).
//!
//! [`join`] is what a store does when it starts with `--scheduler`: it
//! gets its store id from the scheduler (or from its data directory), the
//! first store bootstraps the cluster with one region, and every store
//! puts its address. [`run_reports`] then carries the store's reports
//! (region and store heartbeats, split asks) to the scheduler and its
//! answers back to the store thread.

use std::time::Duration;

use tinykv_proto::metapb::{Region, Store};
use tinykv_proto::schedulerpb::scheduler_client::SchedulerClient as GrpcClient;
use tinykv_proto::schedulerpb::{
    AllocIdRequest, AskSplitRequest, AskSplitResponse, BootstrapRequest, ErrorType,
    GetMembersRequest, GetRegionByIdRequest, GetStoreRequest, IsBootstrappedRequest,
    PutStoreRequest, RegionHeartbeatRequest, RegionHeartbeatResponse, RequestHeader,
    ResponseHeader, StoreHeartbeatRequest,
};
use tonic::transport::{Channel, Endpoint};

/// A failed scheduler call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// The scheduler answered with an error header.
    #[error("the scheduler refused: {kind:?}: {message}")]
    Refused {
        /// The protocol's error code.
        kind: ErrorType,
        /// Its message.
        message: String,
    },
    /// The call did not reach the scheduler, or broke.
    #[error("cannot reach the scheduler at {addr}: {message}")]
    Unreachable {
        /// The scheduler's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

impl SchedulerError {
    /// The error code of a refusal (`None` when the call did not get
    /// through).
    pub fn kind(&self) -> Option<ErrorType> {
        match self {
            SchedulerError::Refused { kind, .. } => Some(*kind),
            SchedulerError::Unreachable { .. } => None,
        }
    }
}

/// The result of a scheduler call.
pub type Result<T> = std::result::Result<T, SchedulerError>;

/// A connection to the scheduler. Cheap to clone (one HTTP/2 connection).
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    addr: String,
    cluster_id: u64,
    client: GrpcClient<Channel>,
}

impl SchedulerClient {
    /// Connects to the scheduler at `addr` (`HOST:PORT`) and learns the
    /// cluster id, trying again every 200 ms for up to `patience` (the
    /// scheduler may start after the store).
    ///
    /// # Errors
    ///
    /// [`SchedulerError::Unreachable`] after `patience`.
    pub async fn connect(addr: &str, patience: Duration) -> Result<SchedulerClient> {
        let unreachable =
            |message: String| SchedulerError::Unreachable { addr: addr.to_string(), message };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| unreachable(format!("not a HOST:PORT address: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let attempt = async {
                let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
                let mut client = GrpcClient::new(channel);
                let members = client
                    .get_members(GetMembersRequest::default())
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner();
                let cluster_id = members.header.map_or(0, |h| h.cluster_id);
                Ok::<_, String>((client, cluster_id))
            };
            match attempt.await {
                Ok((client, cluster_id)) => {
                    log::info!("connected to the scheduler at {addr} (cluster {cluster_id})");
                    return Ok(SchedulerClient { addr: addr.to_string(), cluster_id, client });
                }
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(unreachable(e)),
                Err(e) => {
                    log::info!("waiting for the scheduler at {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader { cluster_id: self.cluster_id })
    }

    fn unreachable(&self, status: &tonic::Status) -> SchedulerError {
        SchedulerError::Unreachable {
            addr: self.addr.clone(),
            message: format!("{:?}: {}", status.code(), status.message()),
        }
    }

    /// Whether a store has bootstrapped the cluster.
    ///
    /// # Errors
    ///
    /// A refusal or a broken call.
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let req = IsBootstrappedRequest { header: self.header() };
        let resp = self.client.clone().is_bootstrapped(req).await;
        let resp = resp.map_err(|s| self.unreachable(&s))?.into_inner();
        check(resp.header)?;
        Ok(resp.bootstrapped)
    }

    /// A new id from the scheduler (never handed out before).
    ///
    /// # Errors
    ///
    /// A refusal or a broken call.
    pub async fn alloc_id(&self) -> Result<u64> {
        let req = AllocIdRequest { header: self.header() };
        let resp = self.client.clone().alloc_id(req).await;
        let resp = resp.map_err(|s| self.unreachable(&s))?.into_inner();
        check(resp.header)?;
        Ok(resp.id)
    }

    /// Bootstraps the cluster with `store` and its first `region`.
    ///
    /// # Errors
    ///
    /// `ALREADY_BOOTSTRAPPED` if another store was first; other refusals;
    /// a broken call.
    pub async fn bootstrap(&self, store: Store, region: Region) -> Result<()> {
        let req =
            BootstrapRequest { header: self.header(), store: Some(store), region: Some(region) };
        let resp = self.client.clone().bootstrap(req).await;
        check(resp.map_err(|s| self.unreachable(&s))?.into_inner().header)
    }

    /// Puts (adds or updates) a store.
    ///
    /// # Errors
    ///
    /// A refusal (e.g. the store is a tombstone) or a broken call.
    pub async fn put_store(&self, store: Store) -> Result<()> {
        let req = PutStoreRequest { header: self.header(), store: Some(store) };
        let resp = self.client.clone().put_store(req).await;
        check(resp.map_err(|s| self.unreachable(&s))?.into_inner().header)
    }

    /// The store with id `store_id` (`None` if the scheduler does not
    /// know it).
    ///
    /// # Errors
    ///
    /// A refusal other than "unknown", or a broken call.
    pub async fn get_store(&self, store_id: u64) -> Result<Option<Store>> {
        let req = GetStoreRequest { header: self.header(), store_id };
        let resp = self.client.clone().get_store(req).await;
        let resp = resp.map_err(|s| self.unreachable(&s))?.into_inner();
        check(resp.header)?;
        Ok(resp.store.filter(|s| s.id == store_id))
    }

    /// The region with id `region_id`, as the scheduler knows it.
    ///
    /// # Errors
    ///
    /// A refusal other than "not found", or a broken call.
    pub async fn get_region_by_id(&self, region_id: u64) -> Result<Option<Region>> {
        let req = GetRegionByIdRequest { header: self.header(), region_id };
        let resp = self.client.clone().get_region_by_id(req).await;
        let resp = resp.map_err(|s| self.unreachable(&s))?.into_inner();
        match check(resp.header) {
            Err(e) if e.kind() == Some(ErrorType::RegionNotFound) => return Ok(None),
            other => other?,
        }
        Ok(resp.region.filter(|r| r.id == region_id))
    }

    /// Sends a store heartbeat.
    ///
    /// # Errors
    ///
    /// A refusal or a broken call.
    pub async fn store_heartbeat(&self, req: StoreHeartbeatRequest) -> Result<()> {
        let req = StoreHeartbeatRequest { header: self.header(), ..req };
        let resp = self.client.clone().store_heartbeat(req).await;
        check(resp.map_err(|s| self.unreachable(&s))?.into_inner().header)
    }

    /// Asks for the ids of a new region, to split `region`.
    ///
    /// # Errors
    ///
    /// A refusal (e.g. the region's epoch is stale) or a broken call.
    pub async fn ask_split(&self, region: Region) -> Result<AskSplitResponse> {
        let req = AskSplitRequest { header: self.header(), region: Some(region) };
        let resp = self.client.clone().ask_split(req).await;
        let resp = resp.map_err(|s| self.unreachable(&s))?.into_inner();
        check(resp.header.clone())?;
        Ok(resp)
    }

    /// Opens a region heartbeat stream: what `requests` yields goes to the
    /// scheduler, and its answers come back on the returned stream.
    ///
    /// # Errors
    ///
    /// The stream could not be opened.
    pub async fn region_heartbeats(
        &self,
        requests: tokio::sync::mpsc::Receiver<RegionHeartbeatRequest>,
    ) -> Result<tonic::Streaming<RegionHeartbeatResponse>> {
        let header = self.header();
        let requests = tokio_stream::wrappers::ReceiverStream::new(requests);
        let requests =
            tokio_stream::StreamExt::map(requests, move |r| RegionHeartbeatRequest { header, ..r });
        let resp = self.client.clone().region_heartbeat(requests).await;
        Ok(resp.map_err(|s| self.unreachable(&s))?.into_inner())
    }
}

/// An error header as an [`Err`].
fn check(header: Option<ResponseHeader>) -> Result<()> {
    match header.and_then(|h| h.error) {
        Some(e) if e.r#type() != ErrorType::Ok => {
            Err(SchedulerError::Refused { kind: e.r#type(), message: e.message })
        }
        _ => Ok(()),
    }
}

/// Joins the cluster the scheduler runs, as a store whose engines are
/// `engines` and whose gRPC address is `addr`; returns the store's id.
///
/// 1. **The store's id**: the one in its data directory, else a new one
///    from the scheduler, written there (`bootstrap_store`). A data
///    directory of another cluster is refused.
/// 2. **The first store bootstraps the cluster**: if the scheduler is not
///    bootstrapped, the store writes a first region (the whole key space,
///    one peer, here) with a marker (`prepare_bootstrap_cluster`), then
///    offers it. If another store was first (`ALREADY_BOOTSTRAPPED`), the
///    region is removed again; this store starts empty and the scheduler
///    gives it regions. A store that crashed in between finds the marker
///    at its next start and finishes the job either way.
/// 3. **It puts its address**, so that the scheduler can send it regions
///    and other stores can find it.
///
/// # Errors
///
/// The scheduler refused, or the engines failed; the message says which.
pub async fn join(
    client: &SchedulerClient,
    engines: &tinykv_raftstore::Engines,
    addr: &str,
) -> std::result::Result<u64, String> {
    use tinykv_raftstore::bootstrap as b;
    let local = |e: tinykv_raftstore::Error| format!("the data directory: {e}");
    let cluster_id = client.cluster_id();
    let store_id = match b::load_store_ident(engines).map_err(local)? {
        Some(ident) if ident.cluster_id != cluster_id => {
            return Err(format!(
                "this data directory belongs to cluster {}, but the scheduler runs cluster \
                 {cluster_id}: start with an empty --data-dir, or point --scheduler at the \
                 cluster's own scheduler",
                ident.cluster_id
            ));
        }
        Some(ident) => ident.store_id,
        None => {
            let id = client.alloc_id().await.map_err(|e| e.to_string())?;
            b::bootstrap_store(engines, cluster_id, id).map_err(local)?;
            log::info!("store {id}: new store of cluster {cluster_id}");
            id
        }
    };
    let store = Store { id: store_id, address: addr.to_string(), ..Default::default() };
    let prepared = b::load_prepared_bootstrap(engines).map_err(local)?;
    if !client.is_bootstrapped().await.map_err(|e| e.to_string())? {
        let region = match prepared {
            Some(region) => {
                // A crash may have come before the region was written.
                match b::bootstrap_region(engines, &region) {
                    Ok(()) | Err(tinykv_raftstore::Error::Invalid(_)) => {}
                    Err(e) => return Err(local(e)),
                }
                region
            }
            None => {
                let region_id = client.alloc_id().await.map_err(|e| e.to_string())?;
                let peer_id = client.alloc_id().await.map_err(|e| e.to_string())?;
                let region = b::first_region(region_id, &[(peer_id, store_id)]);
                b::prepare_bootstrap_cluster(engines, &region).map_err(local)?;
                region
            }
        };
        match client.bootstrap(store.clone(), region.clone()).await {
            Ok(()) => {
                b::finish_prepared_bootstrap(engines).map_err(local)?;
                log::info!(
                    "store {store_id}: bootstrapped cluster {cluster_id} with region {}",
                    region.id
                );
            }
            Err(e) if e.kind() == Some(ErrorType::AlreadyBootstrapped) => {
                b::clear_prepared_bootstrap(engines, region.id).map_err(local)?;
                log::info!("store {store_id}: another store bootstrapped the cluster first");
            }
            Err(e) => return Err(e.to_string()),
        }
    } else if let Some(region) = prepared {
        // Bootstrapped meanwhile: by this store's offer, or another's.
        match client.get_region_by_id(region.id).await.map_err(|e| e.to_string())? {
            Some(_) => b::finish_prepared_bootstrap(engines).map_err(local)?,
            None => b::clear_prepared_bootstrap(engines, region.id).map_err(local)?,
        }
    }
    client.put_store(store).await.map_err(|e| e.to_string())?;
    Ok(store_id)
}
