//! How the raftstore talks to the world: the [`Context`] a driver supplies.
//!
//! The raftstore is sans-I/O: it never sends on a socket, spawns a thread or
//! reads a clock. Everything it wants done beyond its own engines goes
//! through a `Context`:
//!
//! - raft messages to other stores ([`Context::send`]);
//! - answers to client commands ([`Context::respond`]), matched to the
//!   command by the [`Token`] the driver gave when it handed the command in;
//! - background work ([`Context::schedule`]): building and applying
//!   snapshots, deleting compacted log entries (see [`crate::worker`]);
//! - heartbeats to the scheduler ([`Context::report`], see
//!   [`crate::heartbeat`]), whose answers come back through
//!   `Store::on_region_heartbeat_response`.
//!
//! Two drivers implement it: the simulator (`tinykv-sim`: a simulated
//! network, virtual time) and the server (real threads and gRPC). Both run
//! this same code.

use std::fmt;

use tinykv_engine::Snapshot;
use tinykv_proto::raft_cmdpb::RaftCmdResponse;
use tinykv_proto::raft_serverpb::RaftMessage;

use crate::heartbeat::SchedulerTask;
use crate::worker::Task;

/// Identifies a client command, chosen by the driver; the answer comes back
/// with the same token.
pub type Token = u64;

/// The token of a command the store proposes itself, for the scheduler (a
/// conf change or a leader transfer an operator asked for): nobody waits
/// for its answer, and drivers never hand this token to a client command.
pub const SCHEDULER_TOKEN: Token = 0;

/// The answer to a client command.
pub struct CmdResponse {
    /// The protocol response (errors in its header).
    pub resp: RaftCmdResponse,
    /// For a `Snap` request: a snapshot of the kv engine taken right after
    /// the command was applied, to read the region's data from.
    pub snap: Option<Box<dyn Snapshot>>,
}

impl CmdResponse {
    /// A response without a snapshot.
    pub fn new(resp: RaftCmdResponse) -> CmdResponse {
        CmdResponse { resp, snap: None }
    }
}

impl fmt::Debug for CmdResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmdResponse")
            .field("resp", &self.resp)
            .field("snap", &self.snap.as_ref().map(|_| "<snapshot>"))
            .finish()
    }
}

/// The effects of the raftstore, carried out by its driver.
pub trait Context {
    /// Sends `msg` to the store of `msg.to_peer`. Delivery is not
    /// guaranteed (raft copes with loss).
    fn send(&mut self, msg: RaftMessage);

    /// Answers the client command handed in with `token`. Each token is
    /// answered at most once; a command whose peer crashes is never
    /// answered (the client times out). An answer for
    /// [`SCHEDULER_TOKEN`] goes nowhere.
    fn respond(&mut self, token: Token, resp: CmdResponse);

    /// Runs `task` in the background; its result comes back through
    /// `Store::on_task_result`. A task of a store that crashes is lost
    /// (the store recovers from its engines on restart).
    fn schedule(&mut self, task: Task);

    /// Sends `task` (a region or store heartbeat) to the scheduler.
    /// Delivery is not guaranteed: heartbeats repeat, and the scheduler
    /// repeats its operators until a heartbeat shows them done.
    fn report(&mut self, task: SchedulerTask);
}
