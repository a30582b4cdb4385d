//! A [`Server`] served over gRPC on a thread of its own, for tests,
//! benchmarks and tools that need a real server in their process.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tinykv_server::Server;
//! use tinykv_server::background::BackgroundServer;
//! use tinykv_storage::StandaloneStorage;
//!
//! let server = Server::new(Arc::new(StandaloneStorage::in_memory()));
//! let running = BackgroundServer::start(server);
//! println!("serving on {}", running.addr());
//! // Dropping `running` shuts the server down and waits for its thread.
//! ```

use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::Server;

/// A server on an ephemeral loopback port, on its own thread and tokio
/// runtime, until dropped.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Starts serving `server` on `127.0.0.1:0` and returns once it
    /// listens.
    ///
    /// # Panics
    ///
    /// If the runtime cannot start or the port cannot be bound (a test
    /// cannot go on then).
    pub fn start(server: Server) -> BackgroundServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("start a tokio runtime for the background server");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind an ephemeral loopback port");
                let addr = listener.local_addr().expect("the listener's address").to_string();
                addr_tx.send(addr).expect("hand the address to the starting thread");
                crate::serve(listener, server, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve gRPC");
            });
        });
        let addr = addr_rx.recv().expect("the background server's address");
        BackgroundServer { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// The address it listens on (`HOST:PORT`).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
