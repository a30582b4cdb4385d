//! Errors of the transaction layer.

/// What can go wrong below the transaction commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage failed (or, on the replicated store, the region moved).
    #[error(transparent)]
    Storage(#[from] tinykv_storage::Error),
    /// A record or key that does not decode.
    #[error("corrupt MVCC data: {0}")]
    Corrupt(String),
}

impl From<tinykv_engine::Error> for Error {
    fn from(e: tinykv_engine::Error) -> Error {
        Error::Storage(e.into())
    }
}

/// The result type of the transaction layer.
pub type Result<T> = std::result::Result<T, Error>;
