//! gRPC status codes over real gRPC on loopback (not graded): a request
//! body that is not a well-formed message answers `InvalidArgument`, where
//! tonic alone would answer `Internal`; a handler panic still answers
//! `Internal`; and the server keeps serving after both
//! (docs/src/reference/protocol.md).

use std::sync::Arc;

use tinykv_proto::kvrpcpb::{RawGetRequest, RawPutRequest};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_server::Server;
use tinykv_server::background::BackgroundServer;
use tinykv_storage::{
    Context, Modify, StandaloneConfig, StandaloneStorage, Storage, StorageReader,
};
use tonic::codegen::{Service as _, http};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A standalone storage whose writes panic when they touch the key `panic`,
/// standing in for a handler bug.
#[derive(Debug)]
struct PanicOnKey(StandaloneStorage);

impl Storage for PanicOnKey {
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> tinykv_storage::Result<()> {
        assert!(batch.iter().all(|m| m.key() != b"panic"), "a bug in the storage");
        self.0.write(ctx, batch)
    }

    fn reader(&self, ctx: &Context) -> tinykv_storage::Result<Box<dyn StorageReader>> {
        self.0.reader(ctx)
    }
}

/// A server on an ephemeral loopback port, until dropped.
struct Running {
    server: BackgroundServer,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage =
            StandaloneStorage::open(&StandaloneConfig::for_tests(dir.path())).expect("open");
        let server = BackgroundServer::start(Server::new(Arc::new(PanicOnKey(storage))));
        Running { server, _dir: dir }
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.server.addr()))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// `payload` behind a gRPC message header: not compressed, its length.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    body.extend_from_slice(payload);
    body
}

/// POSTs `body` to `path` as a gRPC request and returns the status the
/// server answers with in its (trailers-only) response headers.
///
/// `body` must be ASCII: it travels as a `String`, the one byte body
/// `http-body` provides.
async fn send_raw(channel: &mut Channel, path: &str, body: &[u8]) -> Status {
    let body = String::from_utf8(body.to_vec()).expect("an ASCII body");
    let request = http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(body))
        .expect("request");
    std::future::poll_fn(|cx| channel.poll_ready(cx)).await.expect("channel ready");
    let response = channel.call(request).await.expect("an HTTP answer");
    assert_eq!(response.status(), http::StatusCode::OK, "gRPC answers errors with HTTP 200");
    Status::from_header_map(response.headers())
        .unwrap_or_else(|| panic!("no grpc-status in the response headers: {response:?}"))
}

fn get(key: &[u8]) -> RawGetRequest {
    RawGetRequest { key: key.to_vec(), cf: "default".into(), ..Default::default() }
}

fn put(key: &[u8], value: &[u8]) -> RawPutRequest {
    RawPutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        cf: "default".into(),
        ..Default::default()
    }
}

#[test]
fn an_unreadable_request_answers_invalid_argument_and_the_server_keeps_serving() {
    let server = Running::start();
    runtime().block_on(async {
        let mut channel = server.channel().await;
        // 0x07 is a field key with wire type 7, which does not exist.
        let cases: [(&str, &str, Vec<u8>); 5] = [
            ("garbage protobuf", "/tinykvpb.TinyKv/RawGet", framed(b"\x07garbage")),
            ("garbage protobuf", "/tinykvpb.TinyKv/KvPrewrite", framed(b"\x0a\x7fshort")),
            ("not a gRPC message at all", "/tinykvpb.TinyKv/RawPut", b"hello, server".to_vec()),
            ("a truncated message", "/tinykvpb.TinyKv/RawScan", framed(b"abc")[..6].to_vec()),
            ("an empty body", "/tinykvpb.TinyKv/RawDelete", Vec::new()),
        ];
        for (what, path, body) in cases {
            let status = send_raw(&mut channel, path, &body).await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{what} sent to {path} must answer InvalidArgument (Internal is for server \
                 bugs, docs/src/reference/protocol.md); got {status:?}"
            );
            assert!(
                status
                    .message()
                    .starts_with(&format!("the request to {path} is not a well-formed message: ")),
                "{what}: the message must say what was wrong, got {:?}",
                status.message()
            );
        }

        // The same connection still serves good requests.
        let mut client = TinyKvClient::new(channel);
        let resp = client.raw_put(put(b"k", b"v")).await.expect("RawPut").into_inner();
        assert!(resp.error.is_empty(), "{}", resp.error);
        let resp = client.raw_get(get(b"k")).await.expect("RawGet").into_inner();
        assert_eq!(resp.value, b"v");
    });
}

#[test]
fn a_handler_panic_still_answers_internal() {
    let server = Running::start();
    runtime().block_on(async {
        let mut client = TinyKvClient::new(server.channel().await);
        let status = client.raw_put(put(b"panic", b"v")).await.expect_err("the handler panics");
        assert_eq!(status.code(), Code::Internal, "a server bug is Internal: {status:?}");
        assert!(
            status.message().starts_with("request handler panicked: a bug in the storage"),
            "{:?}",
            status.message()
        );
        let resp = client.raw_put(put(b"k", b"v")).await.expect("RawPut").into_inner();
        assert!(resp.error.is_empty(), "{}", resp.error);
        let resp = client.raw_get(get(b"k")).await.expect("RawGet").into_inner();
        assert_eq!(resp.value, b"v");
    });
}
