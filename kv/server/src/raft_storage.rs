//! The raft-backed [`Storage`]: the lab 1 API over the replicated store.
//!
//! Writes become one `RaftCmdRequest` with a `Put` or `Delete` per
//! modification, proposed through this store's peer (which must lead the
//! region); a reader is a `Snap` command, whose answer carries a snapshot of
//! the kv engine taken when the command applied, so reads through it are
//! linearizable. The server code of lab 1 runs unchanged on top.
//!
//! **Routing.** A request that names its region (`Context::region_id`,
//! as TinyKV's clients send) goes to that region, checked against the
//! epoch it names (`Context::region_epoch`): a client that knows the
//! region from before a split or a conf change hears `epoch_not_match`,
//! with the regions as they are now. One that does not (0,
//! as `tinykv-ctl` sends) is routed by key through this store's regions
//! (lab 3b): a write to the region of its first key (a write spanning two
//! regions is refused by the store with `key_not_in_region`), a read to
//! the region of each key it reads, and a scan region by region in key
//! order, each part read in its region at the time it is reached (a scan
//! across regions is not one point-in-time view).

use std::collections::BTreeMap;
use std::time::Duration;

use tinykv_engine::{Cf, EngineIter, Snapshot};
use tinykv_proto::errorpb;
use tinykv_proto::metapb::{Region, RegionEpoch};
use tinykv_proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request, SnapRequest,
};
use tinykv_raftstore::CmdResponse;
use tinykv_raftstore::error::response_error;
use tinykv_storage::{Context, Error, Modify, Result, Storage, StorageReader};

use crate::node::{NodeError, NodeHandle};

/// The region every key lives in until regions split (lab 3b).
pub const FIRST_REGION: u64 = 1;

/// Where a request goes: the region it names (with the epoch the client
/// knows it at, if it says), or the one of a key.
enum Route<'a> {
    Region(u64, Option<RegionEpoch>),
    Key(&'a [u8]),
}

/// How long a client should wait before it retries on a store whose input
/// queue was full (`server_is_busy.backoff_ms`).
pub const BUSY_BACKOFF_MS: u64 = 50;

/// A [`Storage`] over this store's raft peer. See the module docs.
///
/// Every refusal of the raftstore reaches the caller as
/// [`Error::Region`] with the protocol's `errorpb::Error` intact; a
/// not-leader error also names the leader store's address when this
/// storage knows it ([`RaftStorage::with_addresses`]).
#[derive(Debug, Clone)]
pub struct RaftStorage {
    node: NodeHandle,
    timeout: Duration,
    /// The gRPC address of every store of the cluster, by store id (empty
    /// when unknown).
    addresses: BTreeMap<u64, String>,
}

impl RaftStorage {
    /// A storage over the store behind `node`; a command that gets no
    /// answer within `timeout` fails.
    pub fn new(node: NodeHandle, timeout: Duration) -> RaftStorage {
        RaftStorage { node, timeout, addresses: BTreeMap::new() }
    }

    /// Names the stores' addresses (store id → `HOST:PORT`), so that a
    /// not-leader error can tell a client where the leader is
    /// (`not_leader.leader_address`, and in its message).
    pub fn with_addresses(mut self, addresses: BTreeMap<u64, String>) -> RaftStorage {
        self.addresses = addresses;
        self
    }

    /// The region a request goes to, as this store knows it.
    fn region(&self, route: &Route<'_>) -> Result<Region> {
        match *route {
            Route::Region(region_id, _) => {
                self.node.region(region_id).map_err(node_error)?.ok_or_else(|| {
                    Error::region(tinykv_raftstore::Error::RegionNotFound(region_id).to_pb())
                })
            }
            Route::Key(key) => {
                self.node.region_for_key(key).map_err(node_error)?.ok_or_else(|| {
                    let e = errorpb::Error {
                        message: format!(
                            "store {} has no region holding this key",
                            self.node.store_id()
                        ),
                        region_not_found: Some(errorpb::RegionNotFound { region_id: 0 }),
                        ..Default::default()
                    };
                    Error::region(e)
                })
            }
        }
    }

    /// The command header for `region`: this store's peer, and the
    /// client's epoch when it named one (so a client that knows an older
    /// region hears `epoch_not_match`, with the regions as they are), else
    /// the region's own.
    fn header(&self, region: &Region, route: &Route<'_>) -> RaftRequestHeader {
        let peer = region.peers.iter().find(|p| p.store_id == self.node.store_id()).copied();
        let region_epoch = match *route {
            Route::Region(_, Some(epoch)) => Some(epoch),
            _ => region.region_epoch,
        };
        RaftRequestHeader { region_id: region.id, peer, region_epoch, term: 0 }
    }

    fn call(&self, route: &Route<'_>, requests: Vec<Request>) -> Result<CmdResponse> {
        let region = self.region(route)?;
        let header = Some(self.header(&region, route));
        let req = RaftCmdRequest { header, requests, admin_request: None };
        let resp = self.node.call(req, self.timeout).map_err(node_error)?;
        match response_error(&resp.resp) {
            Some(e) => Err(Error::region(self.with_leader_address(e.clone()))),
            None => Ok(resp),
        }
    }

    /// Adds the leader's address to a not-leader error, when known.
    fn with_leader_address(&self, mut e: errorpb::Error) -> errorpb::Error {
        let Some(not_leader) = e.not_leader.as_mut() else { return e };
        let Some(leader) = not_leader.leader else { return e };
        if let Some(addr) = self.addresses.get(&leader.store_id) {
            not_leader.leader_address = addr.clone();
            e.message = format!("{} at {addr}", e.message);
        }
        e
    }
}

/// A driver failure as a storage error: a full input queue is the
/// protocol's `server_is_busy`; a timeout or a stopped store has no field.
fn node_error(e: NodeError) -> Error {
    match e {
        NodeError::Busy(_) => Error::region(errorpb::Error {
            message: e.to_string(),
            server_is_busy: Some(errorpb::ServerIsBusy {
                reason: e.to_string(),
                backoff_ms: BUSY_BACKOFF_MS,
            }),
            ..Default::default()
        }),
        NodeError::Stopped(_) | NodeError::Timeout(..) => Error::Raft(e.to_string()),
    }
}

/// Where a request with context `ctx` about `key` goes.
fn route<'a>(ctx: &Context, key: &'a [u8]) -> Route<'a> {
    if ctx.region_id == 0 { Route::Key(key) } else { region_route(ctx) }
}

/// The route of a request that names its region.
fn region_route(ctx: &Context) -> Route<'static> {
    Route::Region(ctx.region_id, ctx.region_epoch)
}

impl RaftStorage {
    /// A point-in-time reader of one region, through a `Snap` command.
    fn region_reader(&self, route: &Route<'_>) -> Result<RegionReader> {
        let snap = Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        };
        let resp = self.call(route, vec![snap])?;
        let region = resp.resp.responses.first().and_then(|r| r.snap.as_ref()?.region.clone());
        let region =
            region.ok_or_else(|| Error::Raft("a Snap answer without its region".into()))?;
        let snap =
            resp.snap.ok_or_else(|| Error::Raft("a Snap answer without a snapshot".into()))?;
        Ok(RegionReader { snap, region })
    }
}

impl Storage for RaftStorage {
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> Result<()> {
        let first = batch.first().map(|m| m.key().to_vec()).unwrap_or_default();
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
        self.call(&route(ctx, &first), requests).map(drop)
    }

    fn reader(&self, ctx: &Context) -> Result<Box<dyn StorageReader>> {
        if ctx.region_id != 0 {
            return Ok(Box::new(self.region_reader(&region_route(ctx))?));
        }
        // The first region's reader now, so that a refusal (not the
        // leader, ...) is the caller's structured error at once.
        let first = self.region_reader(&Route::Key(b""))?;
        Ok(Box::new(RoutingReader { storage: self.clone(), first }))
    }
}

/// A reader of every region of this store, by key (a request that names
/// no region): each region is read through its own `Snap` command when a
/// read first reaches it. See the module docs.
struct RoutingReader {
    storage: RaftStorage,
    /// The reader of the region holding the empty key.
    first: RegionReader,
}

impl std::fmt::Debug for RoutingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingReader").field("first", &self.first).finish_non_exhaustive()
    }
}

impl StorageReader for RoutingReader {
    fn get_cf(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.first.contains(key) {
            return self.first.get_cf(cf, key);
        }
        self.storage.region_reader(&Route::Key(key))?.get_cf(cf, key)
    }

    fn iter_cf(&self, cf: Cf, start: &[u8]) -> EngineIter {
        let (current, next) = if self.first.contains(start) {
            (Some(self.first.iter_cf(cf, start)), self.first.next_start())
        } else {
            (None, Some(start.to_vec()))
        };
        Box::new(RoutingIter {
            storage: self.storage.clone(),
            cf,
            current,
            next,
            start: start.to_vec(),
        })
    }
}

/// The pairs of one column family from `start` on, region after region.
struct RoutingIter {
    storage: RaftStorage,
    cf: Cf,
    /// The region being read.
    current: Option<EngineIter>,
    /// Where the next region starts (`None`: the last one is being read).
    next: Option<Vec<u8>>,
    /// The scan's start (a region's part starts at the later of it and
    /// the region's start).
    start: Vec<u8>,
}

impl Iterator for RoutingIter {
    type Item = tinykv_engine::Result<tinykv_engine::KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.as_mut().and_then(Iterator::next) {
                return Some(item);
            }
            let at = self.next.take()?;
            match self.storage.region_reader(&Route::Key(&at)) {
                Ok(reader) => {
                    let from = at.as_slice().max(self.start.as_slice());
                    self.current = Some(reader.iter_cf(self.cf, from));
                    self.next = reader.next_start();
                }
                Err(e) => {
                    self.current = None;
                    return Some(Err(tinykv_engine::Error::Engine(format!(
                        "the region holding {:?} cannot be read: {e}",
                        at.escape_ascii().to_string()
                    ))));
                }
            }
        }
    }
}

/// Reads one region's data from a kv engine snapshot.
///
/// Invariant: it never returns a key outside `[region.start_key,
/// region.end_key)` (an empty end key is unbounded): another region's
/// data in the same engine is not this region's to serve.
pub struct RegionReader {
    snap: Box<dyn Snapshot>,
    region: Region,
}

impl std::fmt::Debug for RegionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionReader").field("region", &self.region).finish_non_exhaustive()
    }
}

impl RegionReader {
    /// A reader of `region`'s keys in `snap`.
    pub fn new(snap: Box<dyn Snapshot>, region: Region) -> RegionReader {
        RegionReader { snap, region }
    }

    fn contains(&self, key: &[u8]) -> bool {
        let r = &self.region;
        key >= r.start_key.as_slice() && (r.end_key.is_empty() || key < r.end_key.as_slice())
    }

    /// Where the next region starts (`None` for the last one).
    fn next_start(&self) -> Option<Vec<u8>> {
        (!self.region.end_key.is_empty()).then(|| self.region.end_key.clone())
    }
}

impl StorageReader for RegionReader {
    fn get_cf(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.contains(key) {
            let r = &self.region;
            let e = tinykv_raftstore::Error::KeyNotInRegion {
                key: key.to_vec(),
                region_id: r.id,
                start_key: r.start_key.clone(),
                end_key: r.end_key.clone(),
            };
            return Err(Error::region(e.to_pb()));
        }
        Ok(self.snap.get(cf, key)?)
    }

    fn iter_cf(&self, cf: Cf, start: &[u8]) -> EngineIter {
        let r = &self.region;
        let start = start.max(r.start_key.as_slice());
        let end = (!r.end_key.is_empty()).then_some(r.end_key.as_slice());
        if end.is_some_and(|end| start >= end) {
            return Box::new(std::iter::empty());
        }
        self.snap.iter(cf, start, end)
    }
}

#[cfg(test)]
mod tests {
    use tinykv_engine::{Engine, MemoryDisk, WriteBatch};
    use tinykv_proto::metapb::Region;

    use super::*;

    /// A reader of region [b, d) over an engine that holds a, b, c, d.
    fn reader(start: &[u8], end: &[u8]) -> RegionReader {
        let engine = MemoryDisk::new().open();
        let mut wb = WriteBatch::default();
        for key in [b"a", b"b", b"c", b"d"] {
            wb.put(Cf::Default, key, b"v");
        }
        engine.write(wb).unwrap();
        let region = Region {
            id: 7,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        };
        RegionReader::new(engine.snapshot(), region)
    }

    fn keys(r: &RegionReader, start: &[u8]) -> Vec<Vec<u8>> {
        r.iter_cf(Cf::Default, start).map(|kv| kv.unwrap().0).collect()
    }

    #[test]
    fn a_region_reader_stays_in_its_region() {
        let r = reader(b"b", b"d");
        assert_eq!(keys(&r, b""), [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(&r, b"c"), [b"c".to_vec()]);
        assert!(keys(&r, b"d").is_empty());
        assert!(keys(&r, b"z").is_empty());
        assert_eq!(r.get_cf(Cf::Default, b"b").unwrap(), Some(b"v".to_vec()));
        for outside in [&b"a"[..], b"d"] {
            let err = r.get_cf(Cf::Default, outside).unwrap_err();
            let key_not_in_region = err.region_error().and_then(|e| e.key_not_in_region.clone());
            assert_eq!(key_not_in_region.map(|e| e.region_id), Some(7), "{err}");
        }
        // An empty end key is unbounded.
        assert_eq!(keys(&reader(b"c", b""), b""), [b"c".to_vec(), b"d".to_vec()]);
    }
}
