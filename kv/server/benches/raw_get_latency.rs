//! One client's `RawGet` latency: the standalone server in this process on
//! an ephemeral loopback port (fjall in a temporary directory, default
//! engine settings), one client sending sequential `RawGet`s over one
//! connection, for a 100-byte and a 4 KiB value. Prints p50, p90, p99 and
//! the maximum as a Markdown table.
//!
//! Run with `cargo bench -p tinykv-server --bench raw_get_latency`.
//! `REQUESTS=N` sets how many requests each row measures (default 2000),
//! after 200 unmeasured ones that warm up the connection and the caches.
//! `NAGLE=1` adds rows for the server as `serve_service` was before it set
//! `TCP_NODELAY` on accepted connections (tonic over a plain
//! `TcpListenerStream`). There, an answer whose value is above 256 bytes
//! leaves in two writes (h2 writes a larger DATA payload without copying
//! it, then the trailers), and Nagle's algorithm holds the trailers until
//! the client's delayed ACK, about 40 ms later; those rows measure 200
//! requests unless `REQUESTS` says otherwise.
//! See docs/src/reference/benchmarks.md.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv_proto::kvrpcpb::{RawGetRequest, RawPutRequest};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tinykv_server::{Server, TinyKvService};
use tinykv_storage::{StandaloneConfig, StandaloneStorage};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Endpoint;

const WARM_UP_REQUESTS: usize = 200;
const VALUE_BYTES: [usize; 2] = [100, 4096];

/// How a server is served.
#[derive(Clone, Copy, Debug)]
enum Serving {
    /// `tinykv_server::serve`, as `tinykv-server` does.
    Serve,
    /// tonic over a plain `TcpListenerStream`, no `TCP_NODELAY`: what
    /// `serve_service` did before.
    WithoutNodelay,
}

impl Serving {
    fn name(self) -> &'static str {
        match self {
            Serving::Serve => "`serve` (TCP_NODELAY on accepted connections)",
            Serving::WithoutNodelay => "before: tonic over `TcpListenerStream` (Nagle on)",
        }
    }

    async fn run(
        self,
        listener: TcpListener,
        server: Server,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        match self {
            Serving::Serve => tinykv_server::serve(listener, server, shutdown).await,
            Serving::WithoutNodelay => {
                tonic::transport::Server::builder()
                    .add_service(TinyKvService::new(server).into_tonic())
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
            }
        }
    }
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let requests = env_usize("REQUESTS");
    let mut rows: Vec<(Serving, usize, usize)> =
        VALUE_BYTES.iter().map(|&v| (Serving::Serve, v, requests.unwrap_or(2000))).collect();
    if env_usize("NAGLE") == Some(1) {
        rows.extend(
            VALUE_BYTES.iter().map(|&v| (Serving::WithoutNodelay, v, requests.unwrap_or(200))),
        );
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "RawGet latency: one client, sequential requests over loopback, \
         {WARM_UP_REQUESTS} warm-up requests, {cores} cores"
    );
    println!();
    println!("| server | value | requests | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (serving, value_bytes, requests) in rows {
        let mut latencies = measure(serving, value_bytes, requests);
        latencies.sort_unstable();
        let at = |p: usize| ms(latencies[(latencies.len() * p).div_ceil(100) - 1]);
        println!(
            "| {} | {value_bytes} B | {requests} | {} | {} | {} | {} |",
            serving.name(),
            at(50),
            at(90),
            at(99),
            ms(latencies[latencies.len() - 1])
        );
    }
}

/// Starts a server served as `serving` with one value of `value_bytes`,
/// then times `requests` sequential `RawGet`s of it after the warm-up.
fn measure(serving: Serving, value_bytes: usize, requests: usize) -> Vec<Duration> {
    assert!(requests > 0, "REQUESTS must be at least 1");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let storage = StandaloneStorage::open(&StandaloneConfig::new(dir.path())).expect("open");
    let server = Server::new(Arc::new(storage));

    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    let listener = server_rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving_task = server_rt.spawn(serving.run(listener, server, async {
        let _ = stopped.await;
    }));

    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let latencies = client_rt.block_on(async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        let mut client = TinyKvClient::new(channel);
        let put = RawPutRequest {
            key: b"key".to_vec(),
            value: vec![b'v'; value_bytes],
            cf: "default".into(),
            ..Default::default()
        };
        let resp = client.raw_put(put).await.expect("RawPut").into_inner();
        assert!(resp.error.is_empty(), "RawPut: {}", resp.error);
        let get =
            RawGetRequest { key: b"key".to_vec(), cf: "default".into(), ..Default::default() };
        let mut latencies = Vec::with_capacity(requests);
        for i in 0..WARM_UP_REQUESTS + requests {
            let start = Instant::now();
            let resp = client.raw_get(get.clone()).await.expect("RawGet").into_inner();
            let took = start.elapsed();
            assert!(resp.error.is_empty() && resp.value.len() == value_bytes, "RawGet: {resp:?}");
            if i >= WARM_UP_REQUESTS {
                latencies.push(took);
            }
        }
        latencies
    });
    // The client's connection goes with its runtime, so the server's
    // graceful shutdown does not wait for it.
    drop(client_rt);

    let _ = stop.send(());
    server_rt.block_on(serving_task).expect("the server task").expect("serve");
    latencies
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
