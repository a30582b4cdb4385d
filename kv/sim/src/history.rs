//! What clients did and saw: the history a test checks.

use std::fmt;

/// A client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Write `value` at `key` (in the default column family).
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Read `key`.
    Get { key: Vec<u8> },
    /// Delete `key`.
    Delete { key: Vec<u8> },
    /// Read every key in `[start, end)` (an empty end is unbounded).
    Scan { start: Vec<u8>, end: Vec<u8> },
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A write succeeded.
    Done,
    /// A read's value (`None`: not found).
    Value(Option<Vec<u8>>),
    /// A scan's pairs, in key order.
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
}

/// One operation of one client, from its first attempt to its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// The client.
    pub client: u64,
    /// What it asked.
    pub kind: OpKind,
    /// What it got; `None` if it never got an answer (a write may or may
    /// not have happened).
    pub result: Option<OpResult>,
    /// When the client first sent it (virtual microseconds).
    pub call_us: u64,
    /// When the answer arrived.
    pub ret_us: Option<u64>,
}

/// A fault the test injected, for the report's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    /// When (virtual microseconds).
    pub at_us: u64,
    /// What, in words.
    pub what: String,
}

/// Every operation and fault of a run, in the order they started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The operations.
    pub ops: Vec<OpRecord>,
    /// The faults.
    pub faults: Vec<FaultRecord>,
}

/// A key as text if it is printable, else in hex.
pub fn show(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Put { key, value } => write!(f, "put {}={}", show(key), show(value)),
            OpKind::Get { key } => write!(f, "get {}", show(key)),
            OpKind::Delete { key } => write!(f, "delete {}", show(key)),
            OpKind::Scan { start, end } => write!(f, "scan [{}, {})", show(start), show(end)),
        }
    }
}

impl fmt::Display for OpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| format!("{}.{:03}ms", us / 1000, us % 1000);
        write!(f, "client {}: {} [{} .. ", self.client, self.kind, ms(self.call_us))?;
        match self.ret_us {
            Some(r) => write!(f, "{}]", ms(r))?,
            None => write!(f, "no answer]")?,
        }
        match &self.result {
            Some(OpResult::Value(Some(v))) => write!(f, " -> {}", show(v)),
            Some(OpResult::Value(None)) => write!(f, " -> not found"),
            Some(OpResult::Rows(rows)) => write!(f, " -> {} rows", rows.len()),
            Some(OpResult::Done) | None => Ok(()),
        }
    }
}
