//! One raft node's state machine: elections (lab 2aa), log replication
//! (lab 2ab), snapshots (lab 2c) and membership changes and leader transfer
//! (lab 3a).
//!
//! A [`Raft`] is driven from outside by two calls only: [`Raft::tick`]
//! (time passes) and [`Raft::step`] (a message arrives, or a local request
//! such as a proposal). It answers by pushing messages onto
//! [`Raft::msgs`] and by changing its log. It never blocks, never reads a
//! clock and never touches the network.
//!
//! # Messages at a glance
//!
//! | message | who handles it | what it does |
//! |---|---|---|
//! | `MsgHup` (local) | follower, candidate | start an election |
//! | `MsgBeat` (local) | leader | send heartbeats |
//! | `MsgPropose` (local) | leader | append entries and replicate them |
//! | `MsgAppend` / `MsgAppendResponse` | follower / leader | replicate entries; `reject` + a hint back off |
//! | `MsgRequestVote` / `MsgRequestVoteResponse` | any / candidate | elections |
//! | `MsgSnapshot` | follower | replace the log with the leader's snapshot |
//! | `MsgHeartbeat` / `MsgHeartbeatResponse` | follower / leader | keep leadership; catch up a lagging follower |
//! | `MsgTransferLeader` | leader (followers forward it) | hand leadership over |
//! | `MsgTimeoutNow` | the transfer target | campaign at once |
//!
//! # Terms
//!
//! Every message except the local ones carries the sender's term. A message
//! with a higher term turns any node into a follower of that term (whose
//! leader is the sender when the message is an append, a heartbeat or a
//! snapshot). A message with a lower term is stale: appends and heartbeats
//! are answered with a rejection carrying the current term (so a stale
//! leader learns it was replaced), vote requests are rejected, the rest is
//! dropped.

use std::collections::BTreeMap;

use tinykv_proto::eraftpb::{Entry, HardState, Message, MessageType, Snapshot};
// SOLUTION BEGIN lab 2c
use crate::raft_log::snapshot_index_term;
// SOLUTION END
// SOLUTION BEGIN lab 3a
use tinykv_proto::eraftpb::EntryType;
// SOLUTION END

use crate::config::Config;
use crate::errors::{Error, Result};
use crate::progress::Progress;
use crate::raft_log::RaftLog;
use crate::rng::Rng;
use crate::storage::Storage;

/// The role of a node in its current term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StateRole {
    /// Follows the leader of the term (if it knows one).
    #[default]
    Follower,
    /// Asks for votes to become leader of the term.
    Candidate,
    /// Leads the term: the only node that appends new entries.
    Leader,
}

/// The volatile state worth showing to the application: it need not be
/// persisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows of (0: none).
    pub lead: u64,
    /// This node's role.
    pub raft_state: StateRole,
}

/// Whether `t` is a local message type: fed to [`Raft::step`] by the
/// application itself, never sent over the network.
pub fn is_local_msg(t: MessageType) -> bool {
    matches!(t, MessageType::MsgHup | MessageType::MsgBeat | MessageType::MsgPropose)
}

/// Whether `t` answers a message of the leader or candidate.
pub fn is_response_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppendResponse
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgHeartbeatResponse
    )
}

/// A message of type `msg_type` to node `to`; [`Raft::send`] fills in the
/// sender and the term.
pub fn new_message(to: u64, msg_type: MessageType) -> Message {
    let mut m = Message { to, ..Default::default() };
    m.set_msg_type(msg_type);
    m
}

/// One raft node. See the module docs.
#[derive(Debug)]
pub struct Raft<T: Storage> {
    /// This node's id (never 0).
    pub id: u64,
    /// The current term. Persisted (`HardState::term`); never decreases.
    pub term: u64,
    /// Whom this node voted for in `term` (0: nobody yet). Persisted; at
    /// most one vote per term.
    pub vote: u64,
    /// This node's role.
    pub state: StateRole,
    /// The leader of `term` as far as this node knows (0: unknown).
    pub lead: u64,
    /// The log.
    pub raft_log: RaftLog<T>,
    /// The members, each with the leader's view of its log (meaningful on
    /// the leader only). A `BTreeMap` so that iteration (and so the order
    /// of the messages sent) is deterministic.
    pub prs: BTreeMap<u64, Progress>,
    /// The votes received in this election (`true`: granted), while a
    /// candidate.
    pub votes: BTreeMap<u64, bool>,
    /// The messages to send, in order. The application takes them (through
    /// `Ready::messages`).
    pub msgs: Vec<Message>,
    /// The member this leader is handing leadership to, if a transfer is in
    /// progress (lab 3a). While set, proposals are refused.
    pub lead_transferee: Option<u64>,
    /// The index of the latest conf-change entry in the log. A leader
    /// accepts a new conf-change proposal only once this index is applied
    /// (one change at a time, lab 3a).
    pub pending_conf_index: u64,
    /// Ticks between two heartbeats of a leader.
    pub heartbeat_timeout: usize,
    /// The base election timeout, in ticks.
    pub election_timeout: usize,
    /// The election timeout in use, drawn in
    /// `[election_timeout, 2 * election_timeout)` on every reset.
    pub randomized_election_timeout: usize,
    /// Ticks since the last heartbeat sent (leader only).
    pub heartbeat_elapsed: usize,
    /// Ticks since the last election timeout reset: for a follower, since it
    /// last heard from a valid leader or granted a vote; for a leader, since
    /// the term started or a leader transfer began.
    pub election_elapsed: usize,
    /// At most this many entries per `MsgAppend` ([`Config::max_entries_per_msg`]).
    pub max_entries_per_msg: u64,
    /// At most this many unanswered appends per member while pipelining
    /// ([`Config::max_inflight_msgs`]).
    pub max_inflight_msgs: usize,
    rng: Rng,
}

impl<T: Storage> Raft<T> {
    /// A node as found in `store` (term, vote, commit and membership), or
    /// a fresh node of `config.peers` when the store is empty. Starts as a
    /// follower.
    ///
    /// # Errors
    ///
    /// [`Error::ConfigInvalid`] for a bad config; any storage error.
    pub fn new(config: &Config, store: T) -> Result<Raft<T>> {
        config.validate()?;
        let raft_state = store.initial_state()?;
        let mut raft_log = RaftLog::new(store)?;
        raft_log.tag = format!("[id {}]", config.id);
        // The stored membership wins: `config.peers` only bootstraps a
        // brand-new cluster.
        let peers = if raft_state.conf_state.nodes.is_empty() {
            config.peers.clone()
        } else {
            raft_state.conf_state.nodes.clone()
        };
        let mut raft = Raft {
            id: config.id,
            term: 0,
            vote: 0,
            state: StateRole::Follower,
            lead: 0,
            raft_log,
            prs: BTreeMap::new(),
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            lead_transferee: None,
            pending_conf_index: 0,
            heartbeat_timeout: config.heartbeat_tick,
            election_timeout: config.election_tick,
            randomized_election_timeout: config.election_tick,
            heartbeat_elapsed: 0,
            election_elapsed: 0,
            max_entries_per_msg: config.max_entries_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            rng: Rng::new(config.seed, config.id),
        };
        let next = raft.raft_log.last_index() + 1;
        for id in peers {
            raft.prs.insert(id, Progress::new(next));
        }
        let hs = raft_state.hard_state;
        if hs != HardState::default() {
            let last = raft.raft_log.last_index();
            if hs.commit > last {
                return Err(Error::Store(format!(
                    "{} stored commit {} is past the last index {last}",
                    raft.raft_log.tag, hs.commit
                )));
            }
            raft.term = hs.term;
            raft.vote = hs.vote;
        }
        if config.applied > 0 {
            if config.applied > raft.raft_log.committed {
                return Err(Error::ConfigInvalid(format!(
                    "applied ({}) is past the stored commit index ({})",
                    config.applied, raft.raft_log.committed
                )));
            }
            raft.raft_log.applied = config.applied;
        }
        let term = raft.term;
        raft.become_follower(term, 0);
        Ok(raft)
    }

    /// The volatile state the application may want to show.
    pub fn soft_state(&self) -> SoftState {
        SoftState { lead: self.lead, raft_state: self.state }
    }

    /// The state that must be persisted before messages are sent.
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.raft_log.committed }
    }

    /// The election timeout in use (see the field of the same name).
    pub fn randomized_election_timeout(&self) -> usize {
        self.randomized_election_timeout
    }

    /// Draws a new election timeout in `[election_timeout, 2 * election_timeout)`.
    /// Randomness keeps nodes from timing out together and splitting votes
    /// forever (Raft paper §5.2).
    pub fn reset_randomized_election_timeout(&mut self) {
        let et = self.election_timeout;
        self.randomized_election_timeout = self.rng.range(et, 2 * et);
    }

    /// How many members make a majority.
    pub fn quorum(&self) -> usize {
        self.prs.len() / 2 + 1
    }

    /// Queues `m` for sending, filling in this node as the sender (unless
    /// `m.from` is already set, as in a forwarded `MsgTransferLeader`) and
    /// the current term.
    pub fn send(&mut self, mut m: Message) {
        if m.from == 0 {
            m.from = self.id;
        }
        m.term = self.term;
        self.msgs.push(m);
    }

    /// The ids of the other members, in order.
    pub fn peer_ids(&self) -> Vec<u64> {
        self.prs.keys().copied().filter(|&id| id != self.id).collect()
    }

    // ----- lab 2aa: time and roles -------------------------------------

    /// One tick of the logical clock. A follower or candidate whose
    /// randomized election timeout elapsed starts an election (steps a local
    /// `MsgHup`); a leader steps a local `MsgBeat` every `heartbeat_timeout`
    /// ticks. Lab 3a: a leader also counts `election_elapsed` and abandons
    /// a leader transfer that did not finish within `election_timeout`
    /// ticks.
    pub fn tick(&mut self) {
        // SOLUTION BEGIN lab 2aa
        match self.state {
            StateRole::Follower | StateRole::Candidate => self.tick_election(),
            StateRole::Leader => self.tick_heartbeat(),
        }
        // SOLUTION STUB
        // todo!("lab 2aa: Raft::tick (raft/src/raft.rs)")
        // SOLUTION END
    }

    // SOLUTION BEGIN lab 2aa
    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let _ = self.step(new_message(0, MessageType::MsgHup));
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        let election_timed_out = self.election_elapsed >= self.election_timeout;
        if election_timed_out {
            self.election_elapsed = 0;
        }
        // SOLUTION END
        // SOLUTION BEGIN lab 3a
        if election_timed_out && self.lead_transferee.is_some() {
            // The target did not take over within an election timeout.
            log::info!(
                "{} abandons leader transfer to {:?}",
                self.raft_log.tag,
                self.lead_transferee
            );
            self.lead_transferee = None;
        }
        // SOLUTION END
        // SOLUTION BEGIN lab 2aa
        if self.state == StateRole::Leader && self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let _ = self.step(new_message(0, MessageType::MsgBeat));
        }
    }

    /// Starts a new term in `term`: forgets the vote if the term changed,
    /// the votes received, the leader and any leader transfer, and draws a
    /// new election timeout.
    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.lead = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.votes.clear();
        self.lead_transferee = None;
        self.reset_randomized_election_timeout();
    }

    /// Votes granted and refused so far, counting members only.
    fn tally_votes(&self) -> (usize, usize) {
        let members = self.votes.iter().filter(|(id, _)| self.prs.contains_key(id));
        let granted = members.clone().filter(|(_, granted)| **granted).count();
        let refused = members.filter(|(_, granted)| !**granted).count();
        (granted, refused)
    }
    // SOLUTION END

    /// Becomes a follower of `term` whose leader is `lead` (0: unknown).
    /// Keeps the vote if the term does not change; resets the election
    /// timer (with a new random timeout).
    pub fn become_follower(&mut self, term: u64, lead: u64) {
        // SOLUTION BEGIN lab 2aa
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
        log::debug!("{} became follower at term {term}, leader {lead}", self.raft_log.tag);
        // SOLUTION STUB
        // let _ = (term, lead);
        // todo!("lab 2aa: Raft::become_follower (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Becomes a candidate: next term, votes for itself.
    ///
    /// # Panics
    ///
    /// If the node is the leader.
    pub fn become_candidate(&mut self) {
        // SOLUTION BEGIN lab 2aa
        assert_ne!(
            self.state,
            StateRole::Leader,
            "{} leader cannot become candidate",
            self.raft_log.tag
        );
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.votes.insert(self.id, true);
        self.state = StateRole::Candidate;
        log::debug!("{} became candidate at term {term}", self.raft_log.tag);
        // SOLUTION STUB
        // todo!("lab 2aa: Raft::become_candidate (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Becomes the leader of the current term: resets every member's
    /// progress, appends a no-op entry of the new term (so that entries of
    /// earlier terms get committed, Raft paper §5.4.2 and §8) and sends it
    /// to everyone. A single-node cluster commits it at once. Lab 3a: sets
    /// `pending_conf_index` to the last conf-change entry not yet applied
    /// (0 if none), so that a second change waits for it.
    ///
    /// # Panics
    ///
    /// If the node is a follower (it must win an election first).
    pub fn become_leader(&mut self) {
        // SOLUTION BEGIN lab 2aa
        assert_ne!(
            self.state,
            StateRole::Follower,
            "{} follower cannot become leader",
            self.raft_log.tag
        );
        let term = self.term;
        self.reset(term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        let last = self.raft_log.last_index();
        for pr in self.prs.values_mut() {
            *pr = Progress::new(last + 1);
        }
        // SOLUTION END
        // SOLUTION BEGIN lab 3a
        // Entries after `applied` may hold a conf change this node has not
        // applied yet: count it as pending.
        let applied = self.raft_log.applied;
        self.pending_conf_index = self
            .raft_log
            .entries(applied + 1, last + 1)
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|e| e.entry_type() == EntryType::EntryConfChange)
            .map_or(0, |e| e.index);
        // SOLUTION END
        // SOLUTION BEGIN lab 2aa
        log::debug!("{} became leader at term {term}", self.raft_log.tag);
        self.append_entries(vec![Entry::default()]);
        self.bcast_append();
        // SOLUTION STUB
        // todo!("lab 2aa: Raft::become_leader (raft/src/raft.rs)")
        // SOLUTION END
    }

    // ----- lab 2aa: stepping messages ----------------------------------

    /// Handles one message: a local request (`MsgHup`, `MsgBeat`,
    /// `MsgPropose`, `MsgTransferLeader` with term 0) or a message from a
    /// peer. First the term rule of the module docs (a higher term makes
    /// this node a follower; a lower one is answered with a rejection or
    /// dropped), then what the role does with the message:
    ///
    /// - any role: `MsgHup` → [`campaign`](Self::campaign) (a leader
    ///   ignores it), `MsgRequestVote` → [`handle_request_vote`](Self::handle_request_vote);
    /// - follower: `MsgPropose` → [`Error::ProposalDropped`]; `MsgAppend`,
    ///   `MsgHeartbeat`, `MsgSnapshot` (reset the election timer, remember
    ///   the leader) → `handle_append_entries`, `handle_heartbeat`,
    ///   `handle_snapshot`; `MsgTransferLeader` → `forward_transfer_leader`;
    ///   `MsgTimeoutNow` → `handle_timeout_now`;
    /// - candidate: `MsgPropose` → dropped; `MsgAppend`, `MsgHeartbeat`,
    ///   `MsgSnapshot` of its term → become a follower of the sender and
    ///   handle it as one; `MsgRequestVoteResponse` → `handle_vote_response`;
    /// - leader: `MsgBeat` → `bcast_heartbeat`, `MsgPropose` →
    ///   `handle_propose`, `MsgAppendResponse` → `handle_append_response`,
    ///   `MsgHeartbeatResponse` → `handle_heartbeat_response`,
    ///   `MsgTransferLeader` → `handle_transfer_leader`.
    ///
    /// # Errors
    ///
    /// [`Error::ProposalDropped`] when a proposal cannot be appended.
    pub fn step(&mut self, m: Message) -> Result<()> {
        // SOLUTION BEGIN lab 2aa
        if m.term > self.term {
            let lead = match m.msg_type() {
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                    m.from
                }
                _ => 0,
            };
            log::debug!(
                "{} received {:?} with higher term {} from {}",
                self.raft_log.tag,
                m.msg_type(),
                m.term,
                m.from
            );
            self.become_follower(m.term, lead);
        } else if m.term != 0 && m.term < self.term {
            self.reject_stale(&m);
            return Ok(());
        }
        match m.msg_type() {
            MessageType::MsgHup => {
                self.hup();
                Ok(())
            }
            MessageType::MsgRequestVote => {
                self.handle_request_vote(m);
                Ok(())
            }
            _ => match self.state {
                StateRole::Follower => self.step_follower(m),
                StateRole::Candidate => self.step_candidate(m),
                StateRole::Leader => self.step_leader(m),
            },
        }
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2aa: Raft::step (raft/src/raft.rs)")
        // SOLUTION END
    }

    // SOLUTION BEGIN lab 2aa
    /// Answers a message from an older term so that its sender learns the
    /// current term.
    fn reject_stale(&mut self, m: &Message) {
        let response = match m.msg_type() {
            MessageType::MsgAppend => MessageType::MsgAppendResponse,
            MessageType::MsgHeartbeat => MessageType::MsgHeartbeatResponse,
            MessageType::MsgRequestVote => MessageType::MsgRequestVoteResponse,
            _ => return,
        };
        let mut resp = new_message(m.from, response);
        resp.reject = true;
        self.send(resp);
    }

    fn hup(&mut self) {
        if self.state == StateRole::Leader {
            log::debug!("{} ignores MsgHup: already leader", self.raft_log.tag);
            return;
        }
        self.campaign();
    }

    fn step_follower(&mut self, m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgPropose => return Err(Error::ProposalDropped),
            MessageType::MsgAppend => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(m);
            }
            MessageType::MsgHeartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::MsgSnapshot => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageType::MsgTransferLeader => self.forward_transfer_leader(m),
            MessageType::MsgTimeoutNow => self.handle_timeout_now(m),
            _ => {}
        }
        Ok(())
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgPropose => return Err(Error::ProposalDropped),
            // A leader of this very term exists: concede.
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                self.become_follower(m.term, m.from);
                return self.step_follower(m);
            }
            MessageType::MsgRequestVoteResponse => self.handle_vote_response(m),
            _ => {}
        }
        Ok(())
    }

    fn step_leader(&mut self, m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgBeat => self.bcast_heartbeat(),
            MessageType::MsgPropose => return self.handle_propose(m),
            MessageType::MsgAppendResponse => self.handle_append_response(m),
            MessageType::MsgHeartbeatResponse => self.handle_heartbeat_response(m),
            MessageType::MsgTransferLeader => self.handle_transfer_leader(m),
            MessageType::MsgAppend => {
                log::warn!(
                    "{} leader got MsgAppend of its own term from {}",
                    self.raft_log.tag,
                    m.from
                );
            }
            _ => {}
        }
        Ok(())
    }
    // SOLUTION END

    /// Starts an election: becomes a candidate and asks every other member
    /// for its vote with the last log index and term. A node that is not a
    /// member does nothing; a single-node cluster becomes leader at once.
    pub fn campaign(&mut self) {
        // SOLUTION BEGIN lab 2aa
        if !self.prs.contains_key(&self.id) {
            log::debug!("{} is not a member and cannot campaign", self.raft_log.tag);
            return;
        }
        self.become_candidate();
        if self.tally_votes().0 >= self.quorum() {
            self.become_leader();
            return;
        }
        let (index, log_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        for to in self.peer_ids() {
            let mut m = new_message(to, MessageType::MsgRequestVote);
            m.index = index;
            m.log_term = log_term;
            self.send(m);
        }
        // SOLUTION STUB
        // todo!("lab 2aa: Raft::campaign (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgRequestVote` (any role, same term after the term rule):
    /// grants the vote if this node has not voted for someone else in this
    /// term nor knows a leader, and the candidate's log is at least as
    /// up-to-date; answers `MsgRequestVoteResponse` either way.
    pub fn handle_request_vote(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2aa
        let can_vote = self.vote == m.from || (self.vote == 0 && self.lead == 0);
        let grant = can_vote && self.raft_log.is_up_to_date(m.index, m.log_term);
        if grant {
            self.vote = m.from;
            self.election_elapsed = 0;
        }
        let mut resp = new_message(m.from, MessageType::MsgRequestVoteResponse);
        resp.reject = !grant;
        self.send(resp);
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2aa: Raft::handle_request_vote (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgRequestVoteResponse` at a candidate: a majority of
    /// grants makes it leader, a majority of refusals makes it a follower.
    pub fn handle_vote_response(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2aa
        self.votes.entry(m.from).or_insert(!m.reject);
        let (granted, refused) = self.tally_votes();
        let quorum = self.quorum();
        if granted >= quorum {
            self.become_leader();
        } else if refused >= quorum {
            let term = self.term;
            self.become_follower(term, 0);
        }
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2aa: Raft::handle_vote_response (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Sends a heartbeat to every other member. It carries
    /// `min(member's matched, committed)` as the commit index: never more
    /// than the member is known to hold.
    pub fn bcast_heartbeat(&mut self) {
        // SOLUTION BEGIN lab 2aa
        for to in self.peer_ids() {
            let mut m = new_message(to, MessageType::MsgHeartbeat);
            m.commit = self.prs[&to].matched.min(self.raft_log.committed);
            self.send(m);
        }
        // SOLUTION STUB
        // todo!("lab 2aa: Raft::bcast_heartbeat (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgHeartbeat` at a follower: commits up to the heartbeat's
    /// commit index and answers `MsgHeartbeatResponse`.
    pub fn handle_heartbeat(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2aa
        let commit = m.commit.min(self.raft_log.last_index());
        if commit > self.raft_log.committed {
            self.raft_log.commit_to(commit);
        }
        let mut resp = new_message(m.from, MessageType::MsgHeartbeatResponse);
        resp.commit = self.raft_log.committed;
        self.send(resp);
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2aa: Raft::handle_heartbeat (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgHeartbeatResponse` at the leader: a member that lacks
    /// entries gets an append.
    pub fn handle_heartbeat_response(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2aa
        let last = self.raft_log.last_index();
        let Some(pr) = self.prs.get_mut(&m.from) else { return };
        if pr.matched < last {
            // It is alive but behind: an answer to a pipelined append may
            // have been lost, so make room for one more.
            if pr.inflights.len() >= self.max_inflight_msgs {
                pr.inflights.free_first();
            }
            self.send_append(m.from);
        }
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2aa: Raft::handle_heartbeat_response (raft/src/raft.rs)")
        // SOLUTION END
    }

    // ----- lab 2ab: log replication ------------------------------------

    /// Appends `entries` to the leader's log with the current term and the
    /// next indexes, advances the leader's own progress, and commits if
    /// that makes a majority (a single-node cluster).
    pub fn append_entries(&mut self, entries: Vec<Entry>) {
        // SOLUTION BEGIN lab 2aa
        let mut entries = entries;
        let last = self.raft_log.last_index();
        for (i, e) in entries.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        let last = self.raft_log.append(&entries);
        if let Some(pr) = self.prs.get_mut(&self.id) {
            pr.matched = last;
            pr.next_index = last + 1;
        }
        // SOLUTION STUB
        // let _ = entries;
        // todo!("lab 2aa: Raft::append_entries (raft/src/raft.rs)")
        // SOLUTION END
        // SOLUTION BEGIN lab 2ab
        self.leader_maybe_commit();
        // SOLUTION STUB
        // // lab 2ab: commit what a majority now holds (a single-node cluster).
        // SOLUTION END
    }

    /// Handles `MsgPropose` at the leader: appends the entries and sends
    /// them to every member.
    ///
    /// # Errors
    ///
    /// [`Error::ProposalDropped`] during a leader transfer, or for a conf
    /// change while another one is not applied yet (lab 3a).
    pub fn handle_propose(&mut self, m: Message) -> Result<()> {
        // SOLUTION BEGIN lab 3a
        if self.lead_transferee.is_some() {
            log::debug!("{} drops proposal: leader transfer in progress", self.raft_log.tag);
            return Err(Error::ProposalDropped);
        }
        let last = self.raft_log.last_index();
        let mut pending = self.pending_conf_index;
        for (i, e) in m.entries.iter().enumerate() {
            if e.entry_type() == EntryType::EntryConfChange {
                if pending > self.raft_log.applied {
                    log::debug!(
                        "{} drops conf change: {pending} is not applied yet",
                        self.raft_log.tag
                    );
                    return Err(Error::ProposalDropped);
                }
                pending = last + 1 + i as u64;
            }
        }
        self.pending_conf_index = pending;
        // SOLUTION END
        // SOLUTION BEGIN lab 2ab
        self.append_entries(m.entries);
        self.bcast_append();
        Ok(())
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2ab: Raft::handle_propose (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Commits what a majority of members hold, if it is of the current
    /// term. Returns whether the commit index moved.
    pub fn leader_maybe_commit(&mut self) -> bool {
        // SOLUTION BEGIN lab 2ab
        let mut matched: Vec<u64> = self.prs.values().map(|pr| pr.matched).collect();
        if matched.is_empty() {
            return false;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let majority_index = matched[self.quorum() - 1];
        self.raft_log.maybe_commit(majority_index, self.term)
        // SOLUTION STUB
        // todo!("lab 2ab: Raft::leader_maybe_commit (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Sends `MsgAppend` to every other member.
    pub fn bcast_append(&mut self) {
        // SOLUTION BEGIN lab 2aa
        for to in self.peer_ids() {
            self.send_append(to);
        }
        // SOLUTION STUB
        // todo!("lab 2aa: Raft::bcast_append (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Sends member `to` the entries from its next index on, after the
    /// entry (`index`, `log_term`) just before them, with the leader's
    /// commit index. If those entries were compacted, sends a snapshot
    /// instead (lab 2c).
    pub fn send_append(&mut self, to: u64) {
        // SOLUTION BEGIN lab 2aa
        let Some(pr) = self.prs.get(&to) else { return };
        let (next, pipelining) = (pr.next_index, pr.state == crate::ProgressState::Replicate);
        let last = self.raft_log.last_index();
        // Entries to send, at most `max_entries_per_msg`; none while the
        // pipeline is full (the commit index still goes out).
        let full = pipelining && pr.inflights.len() >= self.max_inflight_msgs;
        let high = if full { next } else { (last + 1).min(next + self.max_entries_per_msg) };
        let prev = next - 1;
        let (log_term, entries) =
            match (self.raft_log.term(prev), self.raft_log.entries(next, high)) {
                (Ok(term), Ok(entries)) => (term, entries),
                (Err(Error::Compacted), _) | (_, Err(Error::Compacted)) => {
                    self.send_snapshot(to);
                    return;
                }
                (Err(e), _) | (_, Err(e)) => {
                    panic!("{} send_append to {to}: entries from {next}: {e}", self.raft_log.tag)
                }
            };
        if pipelining
            && let Some(sent) = entries.last().map(|e| e.index)
            && let Some(pr) = self.prs.get_mut(&to)
        {
            pr.next_index = sent + 1;
            pr.inflights.add(sent);
        }
        let mut m = new_message(to, MessageType::MsgAppend);
        m.index = prev;
        m.log_term = log_term;
        m.entries = entries;
        m.commit = self.raft_log.committed;
        self.send(m);
        // SOLUTION STUB
        // let _ = to;
        // todo!("lab 2aa: Raft::send_append (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgAppend` at a follower. Answers `MsgAppendResponse` with
    /// `index` = the last index now known to match the leader's, or, when
    /// the entry before the new ones does not match, `reject` with a hint:
    /// `index` = the last index that may still match (the last one whose
    /// term is at most the leader's `log_term`) and `log_term` = its term,
    /// so the leader can skip a whole conflicting term at once.
    pub fn handle_append_entries(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2aa
        let mut resp = new_message(m.from, MessageType::MsgAppendResponse);
        if m.index < self.raft_log.committed {
            // Everything up to `committed` already matches the leader.
            resp.index = self.raft_log.committed;
            self.send(resp);
            return;
        }
        match self.raft_log.maybe_append(m.index, m.log_term, m.commit, &m.entries) {
            Some(last_new) => resp.index = last_new,
            None => {
                let hint = self.raft_log.find_conflict_by_term(m.index, m.log_term);
                resp.reject = true;
                resp.index = hint;
                resp.log_term = self.raft_log.term(hint).unwrap_or(0);
                log::debug!(
                    "{} rejects append after ({}, {}) from {}, hint ({hint}, {})",
                    self.raft_log.tag,
                    m.index,
                    m.log_term,
                    m.from,
                    resp.log_term
                );
            }
        }
        self.send(resp);
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2aa: Raft::handle_append_entries (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgAppendResponse` at the leader: on success, records the
    /// member's progress and commits what a majority holds (telling
    /// everyone if the commit index moved); on rejection, moves the
    /// member's next index back using the hint and tries again. Lab 3a:
    /// when the member is the leader-transfer target, sends it
    /// `MsgTimeoutNow` once it has every entry (or the next entries if not).
    pub fn handle_append_response(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2ab
        let last = self.raft_log.last_index();
        let Some(pr) = self.prs.get_mut(&m.from) else { return };
        if m.reject {
            // The last index at most the hint whose term (in our log) is at
            // most the member's term there: everything after it differs.
            let candidate = self.raft_log.find_conflict_by_term(m.index, m.log_term);
            // Always move back by at least one, never below what matched:
            // this ends even if the response is stale.
            let next = (pr.next_index - 1).min(candidate + 1);
            pr.become_probe(next);
            self.send_append(m.from);
            return;
        }
        pr.inflights.free_to(m.index);
        let mut more = false;
        if m.index > pr.matched {
            pr.matched = m.index;
            pr.next_index = pr.next_index.max(m.index + 1);
            if pr.state == crate::ProgressState::Probe {
                pr.become_replicate();
            }
            // Entries it still lacks and that no append carries yet (a
            // bounded append, or a pipeline that was full).
            more = pr.next_index <= last;
            if self.leader_maybe_commit() {
                self.bcast_append();
                more = false;
            }
        }
        if more {
            self.send_append(m.from);
        }
        // SOLUTION END
        // SOLUTION BEGIN lab 3a
        if self.lead_transferee == Some(m.from) {
            let last = self.raft_log.last_index();
            let caught_up = self.prs.get(&m.from).is_some_and(|pr| pr.matched == last);
            if caught_up {
                self.send_timeout_now(m.from);
            } else if !m.reject {
                // E.g. it just installed a snapshot: send the rest now
                // rather than at the next heartbeat.
                self.send_append(m.from);
            }
        }
        // SOLUTION END
        // SOLUTION BEGIN lab 2ab
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2ab: Raft::handle_append_response (raft/src/raft.rs)")
        // SOLUTION END
    }

    // ----- lab 2c: snapshots -------------------------------------------

    /// Sends member `to` the latest snapshot (its next entries were
    /// compacted) and moves its next index past it. If the storage is
    /// still making the snapshot, does nothing: a later heartbeat response
    /// or append response tries again.
    pub fn send_snapshot(&mut self, to: u64) {
        // SOLUTION BEGIN lab 2c
        let snapshot = match self.raft_log.snapshot() {
            Ok(snapshot) => snapshot,
            Err(Error::SnapshotTemporarilyUnavailable) => {
                log::debug!("{} snapshot for {to} not ready yet", self.raft_log.tag);
                return;
            }
            Err(e) => {
                // The storage gave up for now; a later attempt asks again.
                log::error!("{} has no snapshot for {to}: {e}", self.raft_log.tag);
                return;
            }
        };
        let (index, _) = snapshot_index_term(&snapshot);
        if index == 0 {
            log::warn!("{} has compacted entries but no snapshot to send {to}", self.raft_log.tag);
            return;
        }
        let mut m = new_message(to, MessageType::MsgSnapshot);
        m.snapshot = Some(snapshot);
        self.send(m);
        if let Some(pr) = self.prs.get_mut(&to) {
            // Probe from just past the snapshot: its answer says what it holds.
            pr.become_probe(index + 1);
        }
        // SOLUTION STUB
        // let _ = to;
        // todo!("lab 2c: Raft::send_snapshot (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgSnapshot` at a follower: restores from it (if it is
    /// newer than the commit index) and answers `MsgAppendResponse` with
    /// the last index now held.
    pub fn handle_snapshot(&mut self, m: Message) {
        // SOLUTION BEGIN lab 2c
        let snapshot = m.snapshot.unwrap_or_default();
        self.restore(snapshot);
        let mut resp = new_message(m.from, MessageType::MsgAppendResponse);
        resp.index = self.raft_log.last_index();
        self.send(resp);
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 2c: Raft::handle_snapshot (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Replaces the log with `snapshot` and the membership with the
    /// snapshot's. Returns false (and changes nothing) if the snapshot is
    /// not newer than the commit index.
    pub fn restore(&mut self, snapshot: Snapshot) -> bool {
        // SOLUTION BEGIN lab 2c
        let (index, term) = snapshot_index_term(&snapshot);
        if index <= self.raft_log.committed {
            log::debug!(
                "{} ignores snapshot ({index}, {term}): committed {}",
                self.raft_log.tag,
                self.raft_log.committed
            );
            return false;
        }
        let nodes = snapshot
            .metadata
            .as_ref()
            .and_then(|m| m.conf_state.as_ref())
            .map(|cs| cs.nodes.clone())
            .unwrap_or_default();
        self.raft_log.restore(snapshot);
        if !nodes.is_empty() {
            let next = self.raft_log.last_index() + 1;
            self.prs = nodes.into_iter().map(|id| (id, Progress::new(next))).collect();
        }
        true
        // SOLUTION STUB
        // let _ = snapshot;
        // todo!("lab 2c: Raft::restore (raft/src/raft.rs)")
        // SOLUTION END
    }

    // ----- lab 3a: membership and leader transfer ----------------------

    /// Adds member `id` (applying a committed `AddNode`). Adding a member
    /// twice changes nothing.
    pub fn add_node(&mut self, id: u64) {
        // SOLUTION BEGIN lab 3a
        if self.prs.contains_key(&id) {
            return;
        }
        let next = self.raft_log.last_index() + 1;
        self.prs.insert(id, Progress::new(next));
        // SOLUTION STUB
        // let _ = id;
        // todo!("lab 3a: Raft::add_node (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Removes member `id` (applying a committed `RemoveNode`). The quorum
    /// shrinks, so a leader may commit entries that were waiting for it.
    pub fn remove_node(&mut self, id: u64) {
        // SOLUTION BEGIN lab 3a
        if self.prs.remove(&id).is_none() {
            return;
        }
        if self.lead_transferee == Some(id) {
            self.lead_transferee = None;
        }
        if self.state == StateRole::Leader && self.leader_maybe_commit() {
            self.bcast_append();
        }
        // SOLUTION STUB
        // let _ = id;
        // todo!("lab 3a: Raft::remove_node (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgTransferLeader` at the leader; `m.from` is the target.
    /// Transfers to itself or to a non-member do nothing; a request for the
    /// current target is ignored; another target replaces it. An
    /// up-to-date target gets `MsgTimeoutNow`, another one first gets the
    /// entries it lacks (the append response then sends `MsgTimeoutNow`).
    /// The transfer is abandoned after an election timeout.
    pub fn handle_transfer_leader(&mut self, m: Message) {
        // SOLUTION BEGIN lab 3a
        let target = m.from;
        if self.lead_transferee == Some(target) {
            return;
        }
        self.lead_transferee = None;
        if target == self.id || !self.prs.contains_key(&target) {
            log::debug!("{} ignores transfer to {target}", self.raft_log.tag);
            return;
        }
        self.lead_transferee = Some(target);
        self.election_elapsed = 0;
        if self.prs[&target].matched == self.raft_log.last_index() {
            self.send_timeout_now(target);
        } else {
            self.send_append(target);
        }
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 3a: Raft::handle_transfer_leader (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Handles `MsgTransferLeader` at a follower: passes it on to the
    /// leader, if one is known.
    pub fn forward_transfer_leader(&mut self, m: Message) {
        // SOLUTION BEGIN lab 3a
        if self.lead == 0 {
            return;
        }
        let mut forwarded = m;
        forwarded.to = self.lead;
        self.send(forwarded);
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 3a: Raft::forward_transfer_leader (raft/src/raft.rs)")
        // SOLUTION END
    }

    /// Tells the transfer target to campaign at once.
    pub fn send_timeout_now(&mut self, to: u64) {
        self.send(new_message(to, MessageType::MsgTimeoutNow));
    }

    /// Handles `MsgTimeoutNow`: campaigns at once, without waiting for the
    /// election timeout, unless this node is not a member.
    pub fn handle_timeout_now(&mut self, m: Message) {
        // SOLUTION BEGIN lab 3a
        log::debug!("{} got MsgTimeoutNow from {}", self.raft_log.tag, m.from);
        self.campaign();
        // SOLUTION STUB
        // let _ = m;
        // todo!("lab 3a: Raft::handle_timeout_now (raft/src/raft.rs)")
        // SOLUTION END
    }
}
