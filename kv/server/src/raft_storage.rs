//! The raft-backed [`Storage`]: the lab 1 API over the replicated store.
//!
//! Writes become one `RaftCmdRequest` with a `Put` or `Delete` per
//! modification, proposed through this store's peer (which must lead the
//! region); a reader is a `Snap` command, whose answer carries a snapshot of
//! the kv engine taken when the command applied, so reads through it are
//! linearizable. The server code of lab 1 runs unchanged on top.

use std::time::Duration;

use tinykv_engine::{Cf, EngineIter, Snapshot};
use tinykv_proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request, SnapRequest,
};
use tinykv_raftstore::CmdResponse;
use tinykv_raftstore::error::response_error;
use tinykv_storage::{Context, Error, Modify, Result, Storage, StorageReader};

use crate::node::NodeHandle;

/// The region every key lives in until regions split (lab 3b).
pub const FIRST_REGION: u64 = 1;

/// A [`Storage`] over this store's raft peer. See the module docs.
#[derive(Debug, Clone)]
pub struct RaftStorage {
    node: NodeHandle,
    timeout: Duration,
}

impl RaftStorage {
    /// A storage over the store behind `node`; a command that gets no
    /// answer within `timeout` fails.
    pub fn new(node: NodeHandle, timeout: Duration) -> RaftStorage {
        RaftStorage { node, timeout }
    }

    fn header(&self, ctx: &Context) -> Result<RaftRequestHeader> {
        let region_id = if ctx.region_id == 0 { FIRST_REGION } else { ctx.region_id };
        let region =
            self.node.region(region_id).map_err(|e| Error::Raft(e.to_string()))?.ok_or_else(
                || Error::Raft(format!("region {region_id} not found on this store")),
            )?;
        let peer = region.peers.iter().find(|p| p.store_id == self.node.store_id()).copied();
        Ok(RaftRequestHeader { region_id, peer, region_epoch: region.region_epoch, term: 0 })
    }

    fn call(&self, ctx: &Context, requests: Vec<Request>) -> Result<CmdResponse> {
        let req = RaftCmdRequest { header: Some(self.header(ctx)?), requests, admin_request: None };
        let resp = self.node.call(req, self.timeout).map_err(|e| Error::Raft(e.to_string()))?;
        match response_error(&resp.resp) {
            Some(e) => Err(Error::Raft(e.message.clone())),
            None => Ok(resp),
        }
    }
}

impl Storage for RaftStorage {
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> Result<()> {
        let requests = batch
            .into_iter()
            .map(|m| match m {
                Modify::Put { cf, key, value } => Request {
                    cmd_type: CmdType::Put as i32,
                    put: Some(PutRequest { cf: cf.name().into(), key, value }),
                    ..Default::default()
                },
                Modify::Delete { cf, key } => Request {
                    cmd_type: CmdType::Delete as i32,
                    delete: Some(DeleteRequest { cf: cf.name().into(), key }),
                    ..Default::default()
                },
            })
            .collect();
        self.call(ctx, requests).map(drop)
    }

    fn reader(&self, ctx: &Context) -> Result<Box<dyn StorageReader>> {
        let snap = Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        };
        let resp = self.call(ctx, vec![snap])?;
        let snap =
            resp.snap.ok_or_else(|| Error::Raft("a Snap answer without a snapshot".into()))?;
        Ok(Box::new(RegionReader { snap }))
    }
}

/// Reads a region's data from a kv engine snapshot.
struct RegionReader {
    snap: Box<dyn Snapshot>,
}

impl StorageReader for RegionReader {
    fn get_cf(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snap.get(cf, key)?)
    }

    fn iter_cf(&self, cf: Cf, start: &[u8]) -> EngineIter {
        self.snap.iter(cf, start, None)
    }
}
