//! The application's handle on a raft node: [`RawNode`] and its
//! [`Ready`] batches (lab 2ac).
//!
//! The application drives a `RawNode` in a loop:
//!
//! 1. feed it: [`RawNode::tick`] on every clock tick, [`RawNode::step`] for
//!    every message from a peer, [`RawNode::propose`] for client commands;
//! 2. when [`RawNode::has_ready`], take a [`Ready`] with [`RawNode::ready`]
//!    and handle it as its documentation says;
//! 3. call [`RawNode::advance`] with it.

use prost::Message as _;
use tinykv_proto::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};

use crate::config::Config;
use crate::errors::{Error, Result};
use crate::raft::{Raft, SoftState, is_local_msg, is_response_msg, new_message};
use crate::storage::Storage;

/// Everything a node asks the application to do, in one batch.
///
/// # The contract
///
/// Handle a `Ready` in this order, then call [`RawNode::advance`] with it:
///
/// 1. **Persist** `hard_state` (if `Some`), append `entries` to the log
///    storage (replacing any entries at the same indexes or after), and
///    store `snapshot` (if it is not the default one). All of it must be
///    durable *before* step 2: a node must never tell a peer about a vote
///    or an entry it could forget in a crash.
/// 2. **Send** `messages`.
/// 3. **Apply** `snapshot` (if any), then `committed_entries`, in order, to
///    the state machine (a conf-change entry through
///    [`RawNode::apply_conf_change`]).
/// 4. **Advance**: [`RawNode::advance`], so the node knows what is
///    persisted and applied.
///
/// `soft_state` is for information only (e.g. to notice a leader change).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ready {
    /// The role and leader, if they changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Term, vote and commit index, if they changed since the last
    /// `Ready`: persist them.
    pub hard_state: Option<HardState>,
    /// The entries to append to the log storage (not yet persisted).
    pub entries: Vec<Entry>,
    /// A snapshot from the leader to store and apply; the default snapshot
    /// (index 0) if there is none.
    pub snapshot: Snapshot,
    /// The committed entries to apply to the state machine, in order.
    /// Empty when there is a snapshot: the entries after it come in the
    /// next `Ready`, once the snapshot is applied.
    pub committed_entries: Vec<Entry>,
    /// The messages to send once everything above is persisted.
    pub messages: Vec<Message>,
}

/// A raft node as the application sees it. See the module docs.
#[derive(Debug)]
pub struct RawNode<T: Storage> {
    /// The node itself (read it for status; drive it through the methods).
    pub raft: Raft<T>,
    /// The soft state handed out in the last `Ready`.
    pub prev_soft_state: SoftState,
    /// The hard state handed out in the last advanced `Ready` (or found in
    /// storage).
    pub prev_hard_state: HardState,
}

impl<T: Storage> RawNode<T> {
    /// A node over `store` (see [`Raft::new`]).
    ///
    /// # Errors
    ///
    /// A bad config or a storage error.
    pub fn new(config: &Config, store: T) -> Result<RawNode<T>> {
        let raft = Raft::new(config, store)?;
        let prev_soft_state = raft.soft_state();
        let prev_hard_state = raft.hard_state();
        Ok(RawNode { raft, prev_soft_state, prev_hard_state })
    }

    /// The node itself.
    pub fn raft(&self) -> &Raft<T> {
        &self.raft
    }

    /// One tick of the logical clock.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now.
    ///
    /// # Errors
    ///
    /// None in practice; kept for symmetry with `step`.
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.step(new_message(0, MessageType::MsgHup))
    }

    /// Proposes `data` to be appended to the log.
    ///
    /// # Errors
    ///
    /// [`Error::ProposalDropped`] if this node is not the leader (proposals
    /// are not forwarded) or a leader transfer is in progress.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        let mut m = new_message(0, MessageType::MsgPropose);
        m.from = self.raft.id;
        m.entries = vec![Entry { data, ..Default::default() }];
        self.raft.step(m)
    }

    /// Proposes a membership change (an `EntryConfChange` entry holding the
    /// encoded `cc`). Apply it with [`apply_conf_change`](Self::apply_conf_change)
    /// once committed.
    ///
    /// # Errors
    ///
    /// As [`propose`](Self::propose), and [`Error::ProposalDropped`] while
    /// an earlier conf change is not applied.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<()> {
        let mut m = new_message(0, MessageType::MsgPropose);
        m.from = self.raft.id;
        let mut entry = Entry { data: cc.encode_to_vec(), ..Default::default() };
        entry.set_entry_type(EntryType::EntryConfChange);
        m.entries = vec![entry];
        self.raft.step(m)
    }

    /// Applies a committed membership change and returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        match cc.change_type() {
            ConfChangeType::AddNode => self.raft.add_node(cc.node_id),
            ConfChangeType::RemoveNode => self.raft.remove_node(cc.node_id),
        }
        ConfState { nodes: self.raft.prs.keys().copied().collect() }
    }

    /// Handles a message from a peer.
    ///
    /// # Errors
    ///
    /// [`Error::StepLocalMsg`] for a local message type (use the dedicated
    /// methods); [`Error::StepPeerNotFound`] for a response from a
    /// non-member.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if is_local_msg(m.msg_type()) {
            return Err(Error::StepLocalMsg);
        }
        if is_response_msg(m.msg_type()) && !self.raft.prs.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Asks for leadership to move to `transferee` (any node may ask; a
    /// follower forwards the request to the leader).
    pub fn transfer_leader(&mut self, transferee: u64) {
        let mut m = new_message(0, MessageType::MsgTransferLeader);
        m.from = transferee;
        let _ = self.raft.step(m);
    }

    /// Whether there is anything in a `Ready`: a changed soft or hard
    /// state, entries to persist, a snapshot, committed entries to apply or
    /// messages to send.
    pub fn has_ready(&self) -> bool {
        // SOLUTION BEGIN lab 2ac
        let raft = &self.raft;
        raft.soft_state() != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || !raft.raft_log.unstable_entries().is_empty()
            || raft.raft_log.pending_snapshot.is_some()
            || (raft.raft_log.pending_snapshot.is_none()
                && raft.raft_log.has_next_committed_entries())
            || !raft.msgs.is_empty()
        // SOLUTION STUB
        // todo!("lab 2ac: RawNode::has_ready (raft/src/raw_node.rs)")
        // SOLUTION END
    }

    /// Takes the current `Ready` (the messages move into it). Call
    /// [`advance`](Self::advance) with it once handled.
    pub fn ready(&mut self) -> Ready {
        // SOLUTION BEGIN lab 2ac
        let soft_state = self.raft.soft_state();
        let hard_state = self.raft.hard_state();
        let raft_log = &self.raft.raft_log;
        let rd = Ready {
            soft_state: (soft_state != self.prev_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.prev_hard_state).then_some(hard_state),
            entries: raft_log.unstable_entries().to_vec(),
            snapshot: raft_log.pending_snapshot.clone().unwrap_or_default(),
            // Entries after a pending snapshot wait for the next Ready:
            // the snapshot's data must be in place before they apply.
            committed_entries: if raft_log.pending_snapshot.is_some() {
                Vec::new()
            } else {
                raft_log.next_committed_entries()
            },
            messages: std::mem::take(&mut self.raft.msgs),
        };
        self.prev_soft_state = soft_state;
        rd
        // SOLUTION STUB
        // todo!("lab 2ac: RawNode::ready (raft/src/raw_node.rs)")
        // SOLUTION END
    }

    /// Records that `rd` was handled: its hard state, entries and snapshot
    /// are persisted and its committed entries applied.
    pub fn advance(&mut self, rd: Ready) {
        // SOLUTION BEGIN lab 2ac
        if let Some(hs) = rd.hard_state {
            self.prev_hard_state = hs;
        }
        let raft_log = &mut self.raft.raft_log;
        // The snapshot first: the entries after it are read from storage
        // once it is no longer pending.
        if let Some(meta) = &rd.snapshot.metadata {
            raft_log.stable_snap_to(meta.index);
        }
        if let Some(last) = rd.entries.last() {
            raft_log.stable_to(last.index, last.term);
        }
        if let Some(last) = rd.committed_entries.last() {
            raft_log.applied_to(last.index);
        }
        // SOLUTION STUB
        // let _ = rd;
        // todo!("lab 2ac: RawNode::advance (raft/src/raw_node.rs)")
        // SOLUTION END
    }
}
