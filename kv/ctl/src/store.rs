//! Talking to one store: the requests tinykv-ctl sends ([`Rpc`]) and
//! [`Ctl`], the client of `--addr` (one store, no scheduler).
//!
//! [`Ctl`] is what tinykv-ctl has always been: every request goes to one
//! address, with an empty `Context` (the store routes it by key among its
//! own regions); a store that is not the leader names the leader's
//! address, and [`Ctl::send`] follows that once. The routed client of
//! `--scheduler` is [`crate::router::Router`]; both send through [`Rpc`].

use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, Context, GetRequest, GetResponse, KvPair, PrewriteRequest,
    PrewriteResponse, RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse,
    RawPutRequest, RawPutResponse, RawScanRequest, RawScanResponse, ResolveLockRequest,
    ResolveLockResponse, ScanRequest, ScanResponse,
};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::Failure;
use crate::addr::{Addr, parse_addr};
use crate::router::KeySpace;

/// A request tinykv-ctl sends: the client method that sends it, where its
/// answer keeps the region error, and where its context goes.
pub trait Rpc: Clone {
    /// The answer.
    type Response;

    /// Sends the request on `client`.
    async fn send(
        self,
        client: TinyKvClient<Channel>,
    ) -> Result<tonic::Response<Self::Response>, Status>;

    /// The answer's region error, if any.
    fn region_error(response: &Self::Response) -> Option<&errorpb::Error>;

    /// Names the region, epoch and peer the request is for (the routed
    /// client sets it; [`Ctl`] leaves it empty).
    fn set_context(&mut self, context: Context);
}

macro_rules! rpc {
    ($($request:ty => $response:ty, $method:ident;)*) => {$(
        impl Rpc for $request {
            type Response = $response;

            async fn send(
                self,
                mut client: TinyKvClient<Channel>,
            ) -> Result<tonic::Response<$response>, Status> {
                client.$method(self).await
            }

            fn region_error(response: &$response) -> Option<&errorpb::Error> {
                response.region_error.as_ref()
            }

            fn set_context(&mut self, context: Context) {
                self.context = Some(context);
            }
        }
    )*};
}

rpc! {
    RawGetRequest => RawGetResponse, raw_get;
    RawPutRequest => RawPutResponse, raw_put;
    RawDeleteRequest => RawDeleteResponse, raw_delete;
    RawScanRequest => RawScanResponse, raw_scan;
    GetRequest => GetResponse, kv_get;
    ScanRequest => ScanResponse, kv_scan;
    PrewriteRequest => PrewriteResponse, kv_prewrite;
    CommitRequest => CommitResponse, kv_commit;
    CheckTxnStatusRequest => CheckTxnStatusResponse, kv_check_txn_status;
    BatchRollbackRequest => BatchRollbackResponse, kv_batch_rollback;
    ResolveLockRequest => ResolveLockResponse, kv_resolve_lock;
}

/// A scan request: the routed client sends it once per region (and again
/// within a region when an answer stops early), so it needs to see the
/// pairs of an answer and to move the start.
pub trait ScanRpc: Rpc {
    /// Which keys it scans (and so which region holds its start).
    const SPACE: KeySpace;

    /// Where the scan starts.
    fn start(&self) -> &[u8];

    /// How many pairs it asks for at most.
    fn limit(&self) -> u32;

    /// The same scan from `start` for at most `limit` pairs.
    fn restart(&self, start: &[u8], limit: u32) -> Self;

    /// The pairs of an answer.
    fn pairs(response: &Self::Response) -> &[KvPair];

    /// Whether the answer is an error the command reports (and so the
    /// scan stops there).
    fn failed(response: &Self::Response) -> bool;
}

impl ScanRpc for RawScanRequest {
    const SPACE: KeySpace = KeySpace::Raw;

    fn start(&self) -> &[u8] {
        &self.start_key
    }

    fn limit(&self) -> u32 {
        self.limit
    }

    fn restart(&self, start: &[u8], limit: u32) -> Self {
        RawScanRequest { start_key: start.to_vec(), limit, ..self.clone() }
    }

    fn pairs(response: &RawScanResponse) -> &[KvPair] {
        &response.kvs
    }

    fn failed(response: &RawScanResponse) -> bool {
        !response.error.is_empty() || response.region_error.is_some()
    }
}

impl ScanRpc for ScanRequest {
    const SPACE: KeySpace = KeySpace::Txn;

    fn start(&self) -> &[u8] {
        &self.start_key
    }

    fn limit(&self) -> u32 {
        self.limit
    }

    fn restart(&self, start: &[u8], limit: u32) -> Self {
        ScanRequest { start_key: start.to_vec(), limit, ..self.clone() }
    }

    fn pairs(response: &ScanResponse) -> &[KvPair] {
        &response.pairs
    }

    fn failed(response: &ScanResponse) -> bool {
        response.region_error.is_some()
    }
}

/// A channel to `addr` that connects on its first request, so that a bad
/// command line is reported before anything is sent.
pub fn lazy_client(addr: &Addr) -> Result<TinyKvClient<Channel>, Failure> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Failure::Request(format!("cannot connect to {addr}: {e}")))?
        // Small requests and answers: do not let Nagle's algorithm hold
        // them back for a delayed ACK (tonic's default, said here).
        .tcp_nodelay(true);
    Ok(TinyKvClient::new(endpoint.connect_lazy()))
}

/// The store tinykv-ctl talks to without `--scheduler`. Every request goes
/// through [`Ctl::send`], which follows a "not the leader" answer once.
pub struct Ctl {
    /// Where requests go: `--addr`, or the leader's address once a store
    /// has named it.
    addr: Addr,
    /// A lazy channel to `addr` ([`lazy_client`]).
    client: TinyKvClient<Channel>,
}

impl Ctl {
    /// A client of the store at `addr`; nothing is sent yet.
    pub fn new(addr: Addr) -> Result<Ctl, Failure> {
        let client = lazy_client(&addr)?;
        Ok(Ctl { addr, client })
    }

    /// Sends `request`. When the store answers that it is not the leader
    /// of the region and names the leader's address (`not_leader` in the
    /// region error, judged by its fields, never its text), says so on
    /// stderr and sends the same request once more, to the leader; that
    /// answer is the answer, whatever it is. Later requests go to the
    /// leader directly.
    pub async fn send<R: Rpc>(&mut self, request: R) -> Result<R::Response, Failure> {
        let response = self.send_here(request.clone()).await?;
        let not_leader = R::region_error(&response)
            .and_then(|e| e.not_leader.as_ref())
            .filter(|not_leader| !not_leader.leader_address.is_empty());
        let Some(not_leader) = not_leader else {
            return Ok(response);
        };
        let leader = parse_addr(&not_leader.leader_address).map_err(|e| {
            Failure::Request(format!(
                "store at {} is not the leader of region {} and names the leader's address \
                 {:?}, which tinykv-ctl cannot use: {e}",
                self.addr, not_leader.region_id, not_leader.leader_address
            ))
        })?;
        let store = match &not_leader.leader {
            Some(peer) => format!(" (store {})", peer.store_id),
            None => String::new(),
        };
        eprintln!(
            "note: store at {} is not the leader of region {}; retrying at the leader {leader}{store}",
            self.addr, not_leader.region_id
        );
        *self = Ctl::new(leader)?;
        self.send_here(request).await
    }

    /// Sends `request` to `self.addr`, with no redirect.
    async fn send_here<R: Rpc>(&self, request: R) -> Result<R::Response, Failure> {
        match request.send(self.client.clone()).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(Failure::Request(describe_status(
                &self.addr,
                &status,
                "is tinykv-server running there? `make run` starts one",
            ))),
        }
    }
}

/// Whether a failed call never reached a server that answered: the
/// connection could not be made, or broke (then another try, perhaps at
/// another store, may work).
pub fn is_transport_failure(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    matches!(status.code(), tonic::Code::Unavailable)
}

/// A failed call to the server at `addr` as one line: why the connection
/// failed (then `hint`, in parentheses, says what to check), or the status
/// the server answered.
pub fn describe_status(addr: &impl std::fmt::Display, status: &Status, hint: &str) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut connect = false;
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        connect |= e.is::<tonic::ConnectError>();
        let text = e.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = e.source();
    }
    if connect {
        return format!("cannot connect to {addr}: {} ({hint})", causes.join(": "));
    }
    format!("server at {addr} answered {:?}: {}", status.code(), status.message())
}
