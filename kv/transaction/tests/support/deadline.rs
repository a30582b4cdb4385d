//! Shared by the lab 4 suites (`kv/transaction/tests/project4c.rs` and
//! `kv/server/tests/project4_server.rs` include it with `#[path]`): a
//! deadline for work that can loop forever in a student's solution.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// How long a scan may take. One that finishes takes microseconds; the
/// wall clock only matters for one that never does.
pub const SCAN_LIMIT: Duration = Duration::from_secs(5);

/// Runs the scan `f` on its own thread and returns its answer. A scan
/// that makes no progress (a `Scanner::next` that loops without consuming
/// the key's lock or write entries) fails after [`SCAN_LIMIT`] with a
/// message naming `what` and the chapter section `doc`, instead of hanging
/// until the runner kills the suite. (The thread of such a scan keeps
/// running until the test process exits.)
pub fn scan_without_hanging<T: Send + 'static>(
    what: &str,
    doc: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver may be gone: the test gave up on this scan.
        let _ = tx.send(f());
    });
    match rx.recv_timeout(SCAN_LIMIT) {
        Ok(answer) => answer,
        Err(RecvTimeoutError::Timeout) => panic!(
            "{what}: no answer within {SCAN_LIMIT:?}: Scanner::next must consume every lock and \
             write entry of the key it looks at, or it finds the same key again forever; {doc}"
        ),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: it panicked (the message is above)"),
    }
}
