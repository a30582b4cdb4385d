//! The gRPC face of a [`Server`].
//!
//! [`TinyKvService`] implements the tonic-generated `TinyKv` trait. Each call
//! runs its handler on tokio's blocking pool (handlers may wait for an
//! fsync) and turns a handler panic, such as a lab stub's `todo!`, into an
//! `Internal` status that carries the panic message, so that a client sees
//! `lab 1: Server::raw_get …` instead of a dropped connection.
//!
//! [`serve_service`] sets `TCP_NODELAY` on every connection it accepts, and
//! answers a request body that is not a well-formed message with
//! `InvalidArgument` (tonic would say `Internal`, which our protocol keeps
//! for server bugs).

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use tinykv_proto::kvrpcpb::*;
use tinykv_proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use tinykv_proto::tinykvpb::tiny_kv_server::{TinyKv, TinyKvServer};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::Server;
use crate::limits::MAX_GRPC_MESSAGE_BYTES;
use crate::node::NodeHandle;

/// The tonic service over a [`Server`].
#[derive(Clone, Debug)]
pub struct TinyKvService {
    server: Server,
    /// The store thread raft messages go to (cluster mode); `None` in
    /// standalone mode, where the `Raft` RPC is refused.
    node: Option<NodeHandle>,
}

impl TinyKvService {
    /// Wraps `server`.
    pub fn new(server: Server) -> TinyKvService {
        TinyKvService { server, node: None }
    }

    /// Delivers incoming raft messages to `node`.
    pub fn with_node(mut self, node: NodeHandle) -> TinyKvService {
        self.node = Some(node);
        self
    }

    /// The tonic server type, with message size limits set.
    pub fn into_tonic(self) -> TinyKvServer<TinyKvService> {
        TinyKvServer::new(self)
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    /// Runs `handler` on the blocking pool and wraps its answer.
    async fn call<Req, Resp>(
        &self,
        request: Request<Req>,
        handler: fn(&Server, Req) -> Resp,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let server = self.server.clone();
        let req = request.into_inner();
        match tokio::task::spawn_blocking(move || handler(&server, req)).await {
            Ok(resp) => Ok(Response::new(resp)),
            Err(err) if err.is_panic() => {
                let message = panic_message(err.into_panic());
                log::error!("request handler panicked: {message}");
                Err(Status::internal(format!("request handler panicked: {message}")))
            }
            Err(err) => Err(Status::internal(format!("request handler was cancelled: {err}"))),
        }
    }
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
impl TinyKv for TinyKvService {
    async fn raw_get(
        &self,
        request: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        self.call(request, Server::raw_get).await
    }

    async fn raw_put(
        &self,
        request: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        self.call(request, Server::raw_put).await
    }

    async fn raw_delete(
        &self,
        request: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        self.call(request, Server::raw_delete).await
    }

    async fn raw_scan(
        &self,
        request: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        self.call(request, Server::raw_scan).await
    }

    async fn kv_get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.call(request, Server::kv_get).await
    }

    async fn kv_scan(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        self.call(request, Server::kv_scan).await
    }

    async fn kv_prewrite(
        &self,
        request: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        self.call(request, Server::kv_prewrite).await
    }

    async fn kv_commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        self.call(request, Server::kv_commit).await
    }

    async fn kv_check_txn_status(
        &self,
        request: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        self.call(request, Server::kv_check_txn_status).await
    }

    async fn kv_batch_rollback(
        &self,
        request: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        self.call(request, Server::kv_batch_rollback).await
    }

    async fn kv_resolve_lock(
        &self,
        request: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        self.call(request, Server::kv_resolve_lock).await
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let Some(node) = self.node.clone() else {
            return Err(Status::failed_precondition(
                "this server runs in standalone mode: it has no raft peers",
            ));
        };
        // The stream ends when the store stops, even if the peer sends
        // nothing more: the peer then reconnects (and so reaches the store
        // once it restarts), and a graceful shutdown does not wait for it.
        let stopped = format!("store {} stopped", node.store_id());
        let mut stream = request.into_inner();
        loop {
            tokio::select! {
                msg = stream.message() => match msg? {
                    Some(msg) => {
                        node.deliver(msg).map_err(|e| Status::unavailable(e.to_string()))?;
                    }
                    None => return Ok(Response::new(Done {})),
                },
                () = node.wait_stopped() => return Err(Status::unavailable(stopped)),
            }
        }
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let Some(node) = self.node.clone() else {
            return Err(Status::failed_precondition(
                "this server runs in standalone mode: it has no raft peers",
            ));
        };
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            Status::invalid_argument("an empty snapshot stream (no message chunk)")
        })?;
        let msg = first.message.ok_or_else(|| {
            Status::invalid_argument("the first chunk of a snapshot stream carries no message")
        })?;
        let head = tokio_stream::once(Ok(first.data));
        let rest = stream.map(|c| c.map(|c| c.data).map_err(|s| s.message().to_string()));
        let chunks = Box::pin(head.chain(rest));
        node.receive_snapshot(msg, chunks).await.map_err(|e| {
            log::warn!("store {}: snapshot rejected: {e}", node.store_id());
            Status::invalid_argument(format!("snapshot rejected: {e}"))
        })?;
        Ok(Response::new(Done {}))
    }

    async fn coprocessor(
        &self,
        _: Request<tinykv_proto::coprocessor::Request>,
    ) -> Result<Response<tinykv_proto::coprocessor::Response>, Status> {
        Err(Status::unimplemented(
            "Coprocessor is part of the TinyKV protocol but not of this course; this server does not serve it",
        ))
    }
}

/// Serves `server` over gRPC on `listener` until `shutdown` completes, then
/// finishes the calls in flight and returns.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_service(listener, TinyKvService::new(server), shutdown).await
}

/// As [`serve`], for a service built by the caller (e.g. with a node).
///
/// Every accepted connection gets `TCP_NODELAY` (see `incoming`), and a
/// request that cannot be read answers `InvalidArgument` (see
/// `UnreadableIsInvalidArgument`).
pub async fn serve_service(
    listener: TcpListener,
    service: TinyKvService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(UnreadableIsInvalidArgument(service.into_tonic()))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}

/// The connections `listener` accepts, each with `TCP_NODELAY` set.
///
/// tonic applies its own `tcp_nodelay` setting only to listeners it binds
/// itself, not to a stream of connections handed to
/// `serve_with_incoming_shutdown`. Without `TCP_NODELAY`, an answer that
/// leaves in two writes (h2 writes a DATA payload above 256 bytes without
/// copying it, then the trailers) has its second write held by Nagle's
/// algorithm until the client ACKs the first, and the client delays that
/// ACK by about 40 ms: a `RawGet` of a 4 KiB value took a median 44 ms
/// instead of 0.1 ms (`cargo bench -p tinykv-server --bench raw_get_latency`).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Wraps the tonic server so that a request whose body cannot be read
/// answers `InvalidArgument`, not `Internal`.
///
/// tonic's prost codec answers a body that does not decode with
/// `Status::internal(prost::DecodeError::to_string())` (what gRPC's status
/// code table suggests), and tonic's framing answers a body that is not
/// one well-formed gRPC message with other `Internal` statuses. Our
/// protocol keeps `Internal` for server bugs
/// (docs/src/reference/protocol.md), and these are the client's mistakes.
///
/// tonic turns every such status into a trailers-only response and keeps
/// the [`Status`] in the response's extensions; the status carries nothing
/// but its code and text, so this wrapper recognises these failures by the
/// messages prost 0.14 and tonic 0.14 write ([`UNREADABLE_REQUEST`]; the
/// test `kv/server/tests/grpc_status.rs` notices if an upgrade changes
/// them). A handler's own `Internal` status (a panic, "request handler
/// panicked: ...") never matches and is passed on unchanged.
#[derive(Clone, Debug)]
struct UnreadableIsInvalidArgument<S>(S);

/// How the statuses for an unreadable request begin: prost's decode error,
/// then tonic's framing errors (a truncated message, an empty body, a bad
/// compression flag).
const UNREADABLE_REQUEST: &[&str] = &[
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "Missing request message",
    "protocol error: received message with",
];

impl<S: NamedService> NamedService for UnreadableIsInvalidArgument<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for UnreadableIsInvalidArgument<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let uri = request.uri().clone();
        let answer = self.0.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let unreadable = response.extensions().get::<Status>().filter(|status| {
                status.code() == Code::Internal
                    && UNREADABLE_REQUEST.iter().any(|start| status.message().starts_with(start))
            });
            Ok(match unreadable {
                Some(status) => Status::invalid_argument(format!(
                    "the request to {} is not a well-formed message: {}",
                    uri.path(),
                    status.message()
                ))
                .into_http(),
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let stream = accepted.next().await.expect("a connection").expect("accepted");
        assert!(
            stream.nodelay().expect("read TCP_NODELAY"),
            "an accepted connection must have TCP_NODELAY, or every answer waits for a delayed ACK"
        );
    }
}
