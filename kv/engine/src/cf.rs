use std::fmt;

use crate::{Error, Result};

/// A column family: an independent, ordered key space inside an engine.
///
/// The same key in two column families names two unrelated values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// User values (lab 4: MVCC values keyed by user key and start ts).
    Default,
    /// Lab 4: Percolator locks, keyed by the raw user key.
    Lock,
    /// Lab 4: Percolator write records, keyed by user key and commit ts.
    Write,
    /// The store's local keys (raft log, raft state, apply and region
    /// state). Never reachable by clients.
    Meta,
}

impl Cf {
    /// Every column family, in a fixed order.
    pub const ALL: [Cf; 4] = [Cf::Default, Cf::Lock, Cf::Write, Cf::Meta];

    /// The column families that hold user data and that clients may name.
    pub const DATA: [Cf; 3] = [Cf::Default, Cf::Lock, Cf::Write];

    /// The name used on the wire and on disk.
    pub const fn name(self) -> &'static str {
        match self {
            Cf::Default => "default",
            Cf::Lock => "lock",
            Cf::Write => "write",
            Cf::Meta => "meta",
        }
    }

    /// Parses a column family name given by a client.
    ///
    /// Only the data column families are accepted; anything else, including
    /// `meta` and the empty string, is [`Error::UnknownCf`].
    ///
    /// ```
    /// use tinykv_engine::Cf;
    /// assert_eq!(Cf::parse_data("lock").unwrap(), Cf::Lock);
    /// assert!(Cf::parse_data("meta").is_err());
    /// assert!(Cf::parse_data("nope").unwrap_err().to_string().contains("unknown column family"));
    /// ```
    pub fn parse_data(name: &str) -> Result<Cf> {
        Cf::DATA
            .into_iter()
            .find(|cf| cf.name() == name)
            .ok_or_else(|| Error::UnknownCf(name.to_string()))
    }
}

impl fmt::Display for Cf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
