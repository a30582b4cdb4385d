//! A deadline for work that can loop forever in a student's solution, so
//! that the test fails with a message instead of hanging until the
//! runner kills it. Part of the raft suites' harness; the lab 4 suites
//! (`kv/transaction/tests/project4c.rs`, `kv/server/tests/project4_server.rs`)
//! include it with `#[path]`.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Runs `f` on its own thread and returns its answer. When `f` has not
/// returned within `limit`, panics with `what`, the limit and `hint` (what
/// the loop must do to end). Work that finishes takes microseconds; the
/// wall clock only matters for work that never does. (The thread of such
/// work keeps running until the test process exits.)
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    hint: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver may be gone: the test gave up.
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(answer) => answer,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: no answer within {limit:?}: {hint}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: it panicked (the message is above)"),
    }
}
