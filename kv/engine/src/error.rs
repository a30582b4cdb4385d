/// Errors from the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client named a column family that does not exist.
    #[error("unknown column family {0:?} (expected one of \"default\", \"lock\", \"write\")")]
    UnknownCf(String),
    /// The on-disk engine failed.
    #[error("engine error: {0}")]
    Engine(String),
    /// An I/O error outside the engine (e.g. creating the data directory).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Stored bytes that cannot be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
