//! Applying committed entries to the kv engine (lab 2b).
//!
//! Every peer of a region applies the same entries in the same order, so
//! every replica holds the same data. An entry is applied in one atomic
//! batch to the kv engine: its data writes *and* the new apply state (the
//! applied index). After a crash, data and applied index therefore always
//! agree, and the peer re-applies exactly the entries after that index.
//!
//! The peer that proposed a command (the leader, then) answers it once its
//! entry is applied: with the command's result if the entry at the
//! proposal's index has the proposal's term, with `StaleCommand` if another
//! leader's entry took that index.

use raft::eraftpb::Entry;
use tinykv_engine::{Cf, WriteBatch};
use tinykv_proto::raft_cmdpb::{AdminCmdType, AdminResponse, RaftCmdRequest, SplitResponse};

use crate::admin::ExecResult;
use crate::context::{CmdResponse, Context, Token};
use crate::effect::StoreEffect;
use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::worker::Task;
// SOLUTION BEGIN lab 2b
use crate::engines::put_msg;
use crate::peer::check_key_in_region;
use prost::Message as _;
use raft::eraftpb::EntryType;
use tinykv_engine::keys;
use tinykv_proto::raft_cmdpb::{
    CmdType, GetResponse, RaftCmdResponse, RaftResponseHeader, Response, SnapResponse,
};
// SOLUTION END

impl Peer {
    /// Applies `entries` (committed, in index order) one by one with
    /// [`apply_entry`](Self::apply_entry), then carries out what their
    /// admin commands changed ([`on_exec_result`](Self::on_exec_result)),
    /// once every entry's batch is written. A peer stops at the entry that
    /// removes it (lab 3b): it is destroyed next, and the entries after it
    /// are no longer its business.
    ///
    /// # Errors
    ///
    /// An engine error.
    pub fn apply_committed_entries(
        &mut self,
        entries: &[Entry],
        ctx: &mut dyn Context,
    ) -> Result<()> {
        let mut results = Vec::new();
        for e in entries {
            if e.entry_type() == raft::eraftpb::EntryType::EntryNormal {
                self.count_applied_bytes(e.data.len());
            }
            let result = self.apply_entry(e, ctx)?;
            let removes_self = result.as_ref().is_some_and(|r| r.removes(self.meta.id));
            results.extend(result);
            if removes_self {
                break;
            }
        }
        for result in results {
            self.on_exec_result(result, ctx);
        }
        Ok(())
    }

    /// Carries out what an admin command changed (given), after its
    /// entry's batch is written: for `CompactLog`, the raft log GC worker
    /// may now delete the entries (it syncs the kv engine first); for
    /// `ChangePeer` (lab 3b), the raft node learns the new membership, the
    /// store its region, and a peer that was removed asks the store to
    /// destroy it.
    pub fn on_exec_result(&mut self, result: ExecResult, ctx: &mut dyn Context) {
        let removed_self = result.removes(self.meta.id);
        match result {
            ExecResult::CompactLog { state } => {
                let (peer_id, region_id) = (self.meta.id, self.region_id());
                let task = Task::RaftLogGc { peer_id, region_id, end: state.index + 1 };
                ctx.schedule(task);
            }
            ExecResult::ChangePeer { cc, region } => {
                self.raft_group.apply_conf_change(&cc);
                for &p in &region.peers {
                    self.remember_peer(p);
                }
                self.push_store_effect(StoreEffect::RegionChanged(region));
                if removed_self {
                    let (region_id, peer_id) = (self.region_id(), self.meta.id);
                    self.push_store_effect(StoreEffect::Destroy { region_id, peer_id });
                } else {
                    // The scheduler learns the new membership now, not at
                    // the next heartbeat tick (a peer that applied its own
                    // removal is about to go, and reports nothing).
                    self.report_region(ctx);
                }
            }
            ExecResult::Split { derived, new_region } => {
                self.on_split_applied(derived, new_region, ctx)
            }
        }
    }

    /// Executes an admin command (given): `CompactLog` (lab 2c,
    /// [`exec_compact_log`](Self::exec_compact_log)) and, from lab 3b,
    /// `Split` ([`apply_split`](Self::apply_split)); `req` is the whole
    /// command, whose header holds the epoch a split was proposed on. A
    /// change of the region's state goes into `kv_wb`, the entry's batch;
    /// the [`ExecResult`] says what changed, for
    /// [`on_exec_result`](Self::on_exec_result) once the batch is written.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for any other admin command; the command's own
    /// error.
    pub fn execute_admin(
        &mut self,
        req: &RaftCmdRequest,
        kv_wb: &mut WriteBatch,
    ) -> Result<(AdminResponse, Option<ExecResult>)> {
        let admin = req.admin_request.clone().unwrap_or_default();
        match (admin.cmd_type(), &admin.compact_log, &admin.split) {
            (AdminCmdType::CompactLog, Some(compact), _) => {
                self.log_compacted_to = self.log_compacted_to.max(compact.compact_index);
                let before = self.storage().truncated();
                let resp = self.exec_compact_log(compact)?;
                let state = self.storage().truncated();
                let moved = state.index > before.index;
                Ok((resp, moved.then_some(ExecResult::CompactLog { state })))
            }
            (AdminCmdType::Split, _, Some(split)) => {
                let result = self.apply_split(req, split, kv_wb)?;
                let regions = match &result {
                    Some(ExecResult::Split { derived, new_region }) => {
                        vec![derived.clone(), new_region.clone()]
                    }
                    _ => Vec::new(),
                };
                let resp = AdminResponse {
                    cmd_type: AdminCmdType::Split as i32,
                    split: Some(SplitResponse { regions }),
                    ..Default::default()
                };
                Ok((resp, result))
            }
            (t, _, _) => Err(Error::Invalid(format!("unsupported admin command {t:?}"))),
        }
    }

    /// Applies one committed entry:
    ///
    /// 1. an empty entry (a new leader's no-op) changes no data;
    ///    otherwise decode the `RaftCmdRequest` and put its writes
    ///    ([`execute_writes`](Self::execute_writes)) into a batch; an admin
    ///    command (`admin_request` set: `CompactLog`, lab 2c) goes to
    ///    [`execute_admin`](Self::execute_admin) instead, with the same
    ///    batch, and its [`ExecResult`] is what this returns; an
    ///    `EntryConfChange` entry (lab 3b: none exist before) goes to
    ///    [`apply_change_peer`](Self::apply_change_peer) with the batch, and
    ///    its result is returned the same way;
    /// 2. set `apply_state.applied_index` to the entry's index and put the
    ///    apply state into the *same* batch; write it (no sync needed: the
    ///    log can replay it);
    /// 3. if a proposal waits for this entry
    ///    ([`take_proposal`](Self::take_proposal)), answer it with the
    ///    command's responses ([`read_responses`](Self::read_responses)),
    ///    read after the write.
    ///
    /// A command that fails (e.g. a key outside the region) writes no data
    /// and is answered with its error; the applied index still moves.
    /// Only a successful admin command returns an [`ExecResult`]; the
    /// caller carries it out once the batch is written.
    ///
    /// # Errors
    ///
    /// An engine error.
    ///
    /// Checked by every lab 2b test; `persist_*_2b` restart stores and
    /// check that nothing is applied twice or lost.
    pub fn apply_entry(&mut self, e: &Entry, ctx: &mut dyn Context) -> Result<Option<ExecResult>> {
        // SOLUTION BEGIN lab 2b
        let mut kv_wb = WriteBatch::new();
        let req =
            if e.data.is_empty() || e.entry_type() != EntryType::EntryNormal {
                None
            } else {
                Some(RaftCmdRequest::decode(e.data.as_slice()).map_err(|err| {
                    Error::Invalid(format!("entry {} does not decode: {err}", e.index))
                }))
            };
        let mut exec_result = None;
        let outcome = match &req {
            None if e.entry_type() == EntryType::EntryConfChange => {
                self.apply_change_peer(e, &mut kv_wb).map(|result| exec_result = result)
            }
            Some(Ok(req)) if req.admin_request.is_some() => {
                self.execute_admin(req, &mut kv_wb).map(|(_, result)| exec_result = result)
            }
            Some(Ok(req)) => self.execute_writes(req, &mut kv_wb),
            Some(Err(err)) => Err(err.clone()),
            None => Ok(()),
        };
        let ps = self.storage_mut();
        ps.apply_state.applied_index = e.index;
        put_msg(&mut kv_wb, &keys::apply_state_key(ps.region.id), &ps.apply_state);
        ps.engines.kv.write(kv_wb)?;
        let Some(token) = self.take_proposal(e.index, e.term, ctx) else {
            return Ok(exec_result);
        };
        let resp = match (req, outcome) {
            (Some(Ok(req)), Ok(())) => self.read_responses(&req),
            (_, Err(err)) => Err(err),
            (_, Ok(())) => Ok(CmdResponse::new(RaftCmdResponse::default())),
        };
        match resp {
            Ok(mut resp) => {
                let header = resp.resp.header.get_or_insert_with(RaftResponseHeader::default);
                header.current_term = self.term();
                ctx.respond(token, resp);
            }
            Err(err) => self.respond_error(token, err, ctx),
        }
        Ok(exec_result)
        // SOLUTION STUB
        // let _ = (e, ctx);
        // todo!("lab 2b: Peer::apply_entry (kv/raftstore/src/apply.rs)")
        // SOLUTION END
    }

    /// Puts the `Put` and `Delete` requests of `req` into `kv_wb`, in
    /// order. Every key must still be in the region (it may have changed
    /// since the command was proposed); reads are left to
    /// [`read_responses`](Self::read_responses).
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotInRegion`], or [`Error::Invalid`] for a bad column
    /// family; `kv_wb` is then left unchanged.
    pub fn execute_writes(&self, req: &RaftCmdRequest, kv_wb: &mut WriteBatch) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        let mut wb = WriteBatch::new();
        for r in &req.requests {
            match (r.cmd_type(), &r.put, &r.delete) {
                (CmdType::Put, Some(put), _) => {
                    check_key_in_region(&put.key, self.region())?;
                    wb.put(data_cf(&put.cf)?, &put.key, &put.value);
                }
                (CmdType::Delete, _, Some(del)) => {
                    check_key_in_region(&del.key, self.region())?;
                    wb.delete(data_cf(&del.cf)?, &del.key);
                }
                _ => {}
            }
        }
        for op in wb.into_ops() {
            kv_wb.push(op);
        }
        Ok(())
        // SOLUTION STUB
        // let _ = (req, kv_wb);
        // todo!("lab 2b: Peer::execute_writes (kv/raftstore/src/apply.rs)")
        // SOLUTION END
    }

    /// The responses to `req`, one per request in order, read from the kv
    /// engine *after* the command's writes: `Get` reads its key (an absent
    /// key gives an empty value), `Snap` returns the region and takes a
    /// snapshot of the kv engine for the client to read from.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotInRegion`], a bad column family, an engine error.
    pub fn read_responses(&self, req: &RaftCmdRequest) -> Result<CmdResponse> {
        // SOLUTION BEGIN lab 2b
        let kv = &self.storage().engines.kv;
        let mut out = CmdResponse::new(RaftCmdResponse::default());
        for r in &req.requests {
            out.resp.responses.push(match (r.cmd_type(), &r.get) {
                (CmdType::Get, Some(get)) => {
                    check_key_in_region(&get.key, self.region())?;
                    let value = kv.get(data_cf(&get.cf)?, &get.key)?.unwrap_or_default();
                    Response {
                        cmd_type: CmdType::Get as i32,
                        get: Some(GetResponse { value }),
                        ..Default::default()
                    }
                }
                (CmdType::Snap, _) => {
                    out.snap = Some(kv.snapshot());
                    Response {
                        cmd_type: CmdType::Snap as i32,
                        snap: Some(SnapResponse { region: Some(self.region().clone()) }),
                        ..Default::default()
                    }
                }
                (t, _) => Response { cmd_type: t as i32, ..Default::default() },
            });
        }
        Ok(out)
        // SOLUTION STUB
        // let _ = req;
        // todo!("lab 2b: Peer::read_responses (kv/raftstore/src/apply.rs)")
        // SOLUTION END
    }

    /// The token waiting for the entry (`index`, `term`), if any. Proposals
    /// at lower indexes can never be answered with success any more (their
    /// entries were replaced): answer them `StaleCommand` and drop them. A
    /// proposal at `index` but of another term is stale too.
    pub fn take_proposal(&mut self, index: u64, term: u64, ctx: &mut dyn Context) -> Option<Token> {
        // SOLUTION BEGIN lab 2b
        while let Some(&p) = self.proposals.front() {
            if p.index > index {
                return None;
            }
            self.proposals.pop_front();
            if p.index == index && p.term == term {
                return Some(p.token);
            }
            self.respond_error(p.token, Error::StaleCommand, ctx);
        }
        None
        // SOLUTION STUB
        // let _ = (index, term, ctx);
        // todo!("lab 2b: Peer::take_proposal (kv/raftstore/src/apply.rs)")
        // SOLUTION END
    }
}

/// The data column family named `name`.
///
/// # Errors
///
/// [`Error::Invalid`] for an unknown name or `meta`.
pub fn data_cf(name: &str) -> Result<Cf> {
    Cf::parse_data(name).map_err(|e| Error::Invalid(e.to_string()))
}
