//! Captures the log lines of a simulated run, per node, in memory.
//!
//! A passing test prints nothing; a failing one writes the captured lines
//! into its report. The capture is per thread (each test runs on its own
//! thread): [`start`] turns it on for the calling thread, the cluster says
//! which node is running ([`set_node`]) and what time it is
//! ([`set_time`]), and [`finish`] hands the lines back. Only the last
//! [`MAX_LINES`] lines are kept.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Once;

/// Lines kept per run (the oldest are dropped first).
pub const MAX_LINES: usize = 200_000;

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The node (store id) that logged it; 0 for the cluster itself.
    pub node: u64,
    /// Virtual time, microseconds.
    pub at_us: u64,
    /// Level and text.
    pub text: String,
}

#[derive(Default)]
struct State {
    on: bool,
    node: u64,
    now: u64,
    lines: VecDeque<Line>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        STATE.with(|s| s.borrow().on)
    }

    fn log(&self, record: &log::Record<'_>) {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if !s.on {
                return;
            }
            if s.lines.len() == MAX_LINES {
                s.lines.pop_front();
            }
            let line = Line {
                node: s.node,
                at_us: s.now,
                text: format!("{:5} {}", record.level(), record.args()),
            };
            s.lines.push_back(line);
        });
    }

    fn flush(&self) {}
}

static INSTALL: Once = Once::new();

/// Starts capturing on this thread (installs the capturing logger once per
/// process; if another logger is already installed, nothing is captured).
pub fn start() {
    INSTALL.call_once(|| {
        static LOGGER: CaptureLogger = CaptureLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
    STATE.with(|s| *s.borrow_mut() = State { on: true, ..State::default() });
}

/// Whether this thread is capturing.
pub fn is_on() -> bool {
    STATE.with(|s| s.borrow().on)
}

/// The node whose code runs now.
pub fn set_node(node: u64) {
    STATE.with(|s| s.borrow_mut().node = node);
}

/// The virtual time now.
pub fn set_time(now_us: u64) {
    STATE.with(|s| s.borrow_mut().now = now_us);
}

/// Stops capturing on this thread and returns the lines.
pub fn finish() -> Vec<Line> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.on = false;
        std::mem::take(&mut s.lines).into()
    })
}
