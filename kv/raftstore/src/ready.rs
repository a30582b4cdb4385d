//! Handling a peer's `Ready` (lab 2b).
//!
//! The order is the raft crate's contract (see `raft::Ready`):
//!
//! 1. **persist** the snapshot (lab 2c), entries and hard state, synced
//!    ([`PeerStorage::save_ready_state`](crate::PeerStorage::save_ready_state));
//! 2. **send** the messages, only now: a peer must never tell another about
//!    a vote or an entry it could forget in a crash;
//! 3. **apply**: a stored snapshot's data goes to a worker
//!    ([`Peer::on_snapshot_stored`], lab 2c); the committed entries are
//!    applied here ([`Peer::apply_committed_entries`]);
//! 4. **advance** the raft node.

use crate::context::Context;
use crate::error::Result;
use crate::peer::Peer;

impl Peer {
    /// Handles the raft node's `Ready`, if it has one, in the order of the
    /// module docs. Messages go out through [`Context::send`], wrapped by
    /// [`Peer::raft_message`].
    ///
    /// # Errors
    ///
    /// An engine error while persisting or applying. The store cannot go
    /// on safely after one; the driver stops it.
    ///
    /// Checked by every lab 2b test; `crash_while_persisting_loses_no_acknowledged_write_2b`
    /// cuts the power in the middle of a raft write, so sending before
    /// persisting loses an acknowledged write there.
    ///
    /// A snapshot that `save_ready_state` stored (lab 2c) goes to
    /// [`on_snapshot_stored`](Self::on_snapshot_stored) once the messages
    /// are out; its data is written by a worker, and the peer handles no
    /// other `Ready` until then.
    pub fn handle_raft_ready(&mut self, ctx: &mut dyn Context) -> Result<()> {
        // SOLUTION BEGIN lab 2b
        if !self.raft_group.has_ready() {
            return Ok(());
        }
        let mut rd = self.raft_group.ready();
        let stored_snapshot = self.storage_mut().save_ready_state(&rd)?;
        for m in std::mem::take(&mut rd.messages) {
            if let Some(msg) = self.raft_message(m) {
                ctx.send(msg);
            }
        }
        if let Some(result) = stored_snapshot {
            self.on_snapshot_stored(result, ctx);
        }
        self.apply_committed_entries(&rd.committed_entries, ctx)?;
        self.raft_group.advance(rd);
        Ok(())
        // SOLUTION STUB
        // let _ = ctx;
        // todo!("lab 2b: Peer::handle_raft_ready (kv/raftstore/src/ready.rs)")
        // SOLUTION END
    }
}
