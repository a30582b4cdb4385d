//! The tool's error type: a message for people, printed as `error: ...`.
//!
//! Every failure the tool can meet on bad input (a broken manifest, a
//! malformed marker, a missing file, a failed build) becomes an [`Error`]
//! carrying a complete, human-readable message; nothing panics on bad input.

use std::fmt;

/// An error with a message meant for the person running the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

/// The tool's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Adds context to errors from the standard library and other crates.
pub trait Context<T> {
    /// Turns the error into an [`Error`] whose message starts with `what`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// Returns early with an [`Error`] built like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::msg(format!($($arg)*)))
    };
}
