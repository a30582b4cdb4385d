//! The errors of the raftstore, and how they travel back to a client.
//!
//! A client learns about an error through the header of its
//! [`RaftCmdResponse`]: [`Error::to_pb`] turns an error into the `errorpb`
//! message the protocol defines, so that a client can react (retry on the
//! leader named by `NotLeader`, refresh its region on `EpochNotMatch`, ...).

use tinykv_proto::errorpb;
use tinykv_proto::metapb::{Peer, Region};
use tinykv_proto::raft_cmdpb::{RaftCmdResponse, RaftResponseHeader};

/// Everything that can go wrong in the raftstore.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// This peer is not the leader of the region; `leader` is the leader it
    /// knows of, if any.
    #[error("not the leader of region {region_id}; {}", leader_hint(leader))]
    NotLeader { region_id: u64, leader: Option<Peer> },
    /// The request was sent to the wrong store.
    #[error("store not match: the request is for store {request}, this is store {actual}")]
    StoreNotMatch { request: u64, actual: u64 },
    /// This store has no peer of the region.
    #[error("region {0} not found on this store")]
    RegionNotFound(u64),
    /// A key of the request is outside the region's range.
    #[error("key {key:?} is not in region {region_id} [{start_key:?}, {end_key:?})")]
    KeyNotInRegion { key: Vec<u8>, region_id: u64, start_key: Vec<u8>, end_key: Vec<u8> },
    /// The request's region epoch is not the region's: the region split or
    /// changed members since the client looked it up.
    #[error("epoch not match: {message}")]
    EpochNotMatch { message: String, regions: Vec<Region> },
    /// The command can no longer be executed: its log entry was replaced by
    /// another leader's, or its term is too old.
    #[error("stale command")]
    StaleCommand,
    /// A request that makes no sense (wrong peer id, no requests, a bad
    /// column family, ...); the text says what.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The raft node refused (e.g. a proposal dropped during a transfer).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(String),
    /// Persisted state that does not decode or is inconsistent.
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

impl From<tinykv_engine::Error> for Error {
    fn from(e: tinykv_engine::Error) -> Error {
        Error::Engine(e.to_string())
    }
}

fn leader_hint(leader: &Option<Peer>) -> String {
    match leader {
        Some(p) => format!("the leader is peer {} on store {}", p.id, p.store_id),
        None => "no leader is known (an election may be on)".into(),
    }
}

/// How long a client should wait before it sends again a command whose
/// raft proposal was dropped (`server_is_busy.backoff_ms`): about an
/// election timeout, within which a leader transfer ends.
pub const PROPOSAL_DROPPED_BACKOFF_MS: u64 = 100;

/// The result type of the raftstore.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The protocol's form of this error.
    pub fn to_pb(&self) -> errorpb::Error {
        let mut e = errorpb::Error { message: self.to_string(), ..Default::default() };
        match self {
            Error::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader {
                    region_id: *region_id,
                    leader: *leader,
                    ..Default::default()
                });
            }
            Error::StoreNotMatch { request, actual } => {
                e.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id: *request,
                    actual_store_id: *actual,
                });
            }
            Error::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound { region_id: *region_id });
            }
            Error::KeyNotInRegion { key, region_id, start_key, end_key } => {
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key: key.clone(),
                    region_id: *region_id,
                    start_key: start_key.clone(),
                    end_key: end_key.clone(),
                });
            }
            Error::EpochNotMatch { regions, .. } => {
                e.epoch_not_match =
                    Some(errorpb::EpochNotMatch { current_regions: regions.clone() });
            }
            Error::StaleCommand => e.stale_command = Some(errorpb::StaleCommand {}),
            // The leader could not take it now (a leadership transfer, or
            // a conf change not applied yet): the same request succeeds a
            // little later, so it is "busy", which clients retry.
            Error::Raft(raft::Error::ProposalDropped) => {
                e.server_is_busy = Some(errorpb::ServerIsBusy {
                    reason: "the raft proposal was dropped: a leader transfer or a conf change \
                             is in progress"
                        .into(),
                    backoff_ms: PROPOSAL_DROPPED_BACKOFF_MS,
                });
            }
            Error::Invalid(_) | Error::Raft(_) | Error::Engine(_) | Error::Corrupt(_) => {}
        }
        e
    }

    /// A response that carries only this error, stamped with `term`.
    pub fn into_response(self, term: u64) -> RaftCmdResponse {
        RaftCmdResponse {
            header: Some(RaftResponseHeader {
                error: Some(self.to_pb()),
                current_term: term,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The error a response carries, if any.
pub fn response_error(resp: &RaftCmdResponse) -> Option<&errorpb::Error> {
    resp.header.as_ref().and_then(|h| h.error.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_protocol_fields() {
        let leader = Peer { id: 3, store_id: 2 };
        let pb = Error::NotLeader { region_id: 1, leader: Some(leader) }.to_pb();
        assert_eq!(pb.not_leader.unwrap().leader, Some(leader));
        assert!(Error::StaleCommand.to_pb().stale_command.is_some());
        let dropped = Error::Raft(raft::Error::ProposalDropped).to_pb();
        assert_eq!(dropped.server_is_busy.map(|b| b.backoff_ms), Some(PROPOSAL_DROPPED_BACKOFF_MS));
        assert!(Error::Raft(raft::Error::Unavailable).to_pb().server_is_busy.is_none());
        let resp = Error::RegionNotFound(9).into_response(4);
        assert_eq!(resp.header.as_ref().unwrap().current_term, 4);
        assert_eq!(response_error(&resp).unwrap().region_not_found.unwrap().region_id, 9);
        assert!(response_error(&RaftCmdResponse::default()).is_none());
    }
}
