//! A linearizability checker for histories of key-value client operations.
//!
//! # What is checked
//!
//! A history is a list of [`Operation`]s that clients ran against the store,
//! each with the virtual time at which the client called it and, if it ever
//! learned the outcome, the time it returned. The history is *linearizable*
//! if every operation can be given a single instant, its linearization
//! point, somewhere between its call and its return, such that executing
//! the operations one at a time in the order of those points on a plain
//! map gives exactly the results the clients saw.
//!
//! Intervals are **closed**: an operation that returns at time `t` and one
//! that is called at the same `t` are concurrent, so either may take effect
//! first. Only a return strictly before a call orders two operations. (A
//! simulator that steps its clock in coarse ticks records many events at
//! the same instant; the closed convention never invents an order the
//! clients could not have observed, so it cannot produce false alarms.)
//!
//! # The model
//!
//! The state is a map from key to value, every key initially absent.
//! [`Input::Get`] returns the value or `None`; [`Input::Put`] and
//! [`Input::Delete`] return [`Output::Done`]. Each operation touches one
//! key, so the history is linearizable if and only if each key's
//! sub-history is (linearizability is *compositional*). The checker splits
//! the history by key and checks the keys one at a time in sorted order.
//!
//! A write whose outcome the client never learned (a timeout, a lost
//! response) is recorded with `output: None` and `ret: None`. It may have
//! taken effect at any instant after its call, or never. A read with an
//! unknown outcome constrains nothing and is ignored.
//!
//! # The algorithm
//!
//! This is Wing and Gong's search with Lowe's memoization, as in
//! porcupine. For one key, the calls and returns are put into a
//! doubly linked list sorted by time (calls before returns at equal times,
//! per the closed intervals). The search walks the list from the front:
//!
//! - at a call, it tries to make that operation the next linearized one:
//!   if the model accepts it and the pair (set of operations decided,
//!   resulting value) has not been seen before, it remembers the pair,
//!   pushes the operation on a stack, *lifts* its call and return out of
//!   the list, and restarts from the front;
//! - at a return, the operation that returns there should already have
//!   been linearized but was not, so the last choice was wrong: the search
//!   pops the stack, *unlifts* that operation back into the list and tries
//!   the next call after it;
//! - it succeeds once every operation with a known outcome has been
//!   linearized, and fails when it must backtrack with an empty stack.
//!
//! Porcupine gives a write with an unknown outcome an infinite return
//! time. Proving a history illegal then means trying each such write at
//! every later point, which multiplies the work by the number of their
//! subsets. Here such a write gets a *deadline* instead: the last return
//! of a read that saw what it writes (its value, or "not found" for a
//! delete). Taking effect any later, no read could tell, which is the same
//! as never; and if no read saw it at all it is left out. At its deadline
//! entry the search may *drop* it (decide it never happened) instead of
//! backtracking. Three more rules, each keeping at least one linearization
//! whenever there is one, stop the search from trying such writes in every
//! combination: one is only tried if it changes the value, if no other
//! one that could go next does the same with an earlier deadline, and if
//! the operation linearized right after it is a read.
//!
//! Values are interned to small integers and the set of decided
//! operations is a bitset, so each step is cheap. Everything is
//! deterministic: ties are broken by position in the history, and hash
//! sets are only ever used for membership.
//!
//! # Reading a verdict
//!
//! [`check`] returns a [`Verdict`]:
//!
//! - [`Verdict::Ok`]: every key's history is linearizable.
//! - [`Verdict::Illegal`]: the first key (in sorted order) whose history is
//!   not. The [`Violation`] lists that key's operations, the longest
//!   prefix of a linearization the search found (history indexes, in
//!   linearization order), the value after that prefix, and the operations
//!   that could have come next, each with the reason it cannot: a read
//!   that returned something other than the value at that point. One of
//!   them had to take effect before [`Violation::deadline`] returned.
//!   Writes with unknown outcomes the prefix takes as never having
//!   happened are listed too.
//!   Printing the violation (it implements [`fmt::Display`]) explains all
//!   that in words. The longest prefix is a hint, not the only story: the
//!   bug may lie earlier, in a choice the prefix made that another
//!   ordering would not.
//! - [`Verdict::Unknown`]: no key is illegal as far as the search got, but
//!   on some key it ran out of its [`Budget`] (a count of search steps,
//!   never wall-clock time) before deciding. The history might be fine or
//!   not; it was never checked in full, so treat this as a failure to
//!   verify, not a pass.
//!
//! [`linearize`] runs the same search and also returns, for every key, one
//! linearization it found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// What a client asked for. Every operation names exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read `key`.
    Get { key: Vec<u8> },
    /// Set `key` to `value`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` (deleting an absent key is fine and changes nothing).
    Delete { key: Vec<u8> },
}

impl Input {
    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Input::Get { key } | Input::Put { key, .. } | Input::Delete { key } => key,
        }
    }
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// The result of a [`Input::Get`]: the value, or `None` if not found.
    Value(Option<Vec<u8>>),
    /// The result of a [`Input::Put`] or [`Input::Delete`].
    Done,
}

/// One client operation in a history.
///
/// Either the outcome is known (`output: Some(..)` and `ret: Some(..)`) or
/// it is not (`output: None` and `ret: None`); [`check`] panics on a mix,
/// because an operation whose outcome is unknown may still take effect after
/// the client gave up on it, so it has no meaningful return time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client ran it; only used to describe the operation.
    pub client: u64,
    /// What was asked.
    pub input: Input,
    /// What came back; `None` if the client never learned the outcome.
    pub output: Option<Output>,
    /// Virtual time of the call, in nanoseconds.
    pub call: u64,
    /// Virtual time of the return, in nanoseconds; `None` if it never
    /// returned (outcome unknown). Must not be before `call`.
    pub ret: Option<u64>,
}

/// How much search [`check`] may spend before answering [`Verdict::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps allowed for each key. A step visits one entry of the
    /// key's event list. A legal history with a few concurrent clients
    /// needs a few steps per operation; proving a history illegal means
    /// visiting every state reachable before the violation, which can take
    /// hundreds per operation.
    pub max_steps_per_key: u64,
}

impl Default for Budget {
    /// Five million steps per key: a fraction of a second of search, far
    /// more than a history with a handful of concurrent clients needs.
    fn default() -> Self {
        Budget { max_steps_per_key: 5_000_000 }
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Ok,
    /// The history of [`Violation::key`] (the first such key in sorted
    /// order) is not linearizable. Boxed to keep the verdict small.
    Illegal(Box<Violation>),
    /// No key was found illegal, but the search on `key` (the first such
    /// key in sorted order) used up its budget of `steps` without deciding.
    /// The history was not verified.
    Unknown { key: Vec<u8>, steps: u64 },
}

/// Why one key's history is not linearizable. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Vec<u8>,
    /// Every operation on the key, as (index in the history, operation), in
    /// history order (reads with unknown outcomes included).
    pub operations: Vec<(usize, Operation)>,
    /// The longest prefix of a linearization the search found: history
    /// indexes in linearization order. May be empty.
    pub longest_prefix: Vec<usize>,
    /// Writes with unknown outcomes taken as never having happened: no read
    /// still to come after the prefix could see their effect, which makes
    /// "took effect later" no different from "never". History indexes,
    /// ascending.
    pub never_took_effect: Vec<usize>,
    /// The key's value after `longest_prefix` (`None`: absent).
    pub value_after_prefix: Option<Vec<u8>>,
    /// History index of the operation, not in the prefix, that returns
    /// first: something from [`Violation::blocked`] had to take effect
    /// before it returned.
    pub deadline: usize,
    /// The operations that could have come right after the prefix (their
    /// calls are no later than the deadline's return) and why none can.
    /// In call order. Never empty.
    pub blocked: Vec<Blocked>,
}

/// An operation that cannot be linearized right after a prefix.
///
/// Writes always apply, so only a read that returned something other than
/// the current value can be blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// History index of the read.
    pub op: usize,
    /// What the read returned (`None`: not found).
    pub returned: Option<Vec<u8>>,
    /// The key's value at that point (`None`: absent).
    pub current: Option<Vec<u8>>,
}

/// Checks whether `history` is linearizable. Deterministic: the same
/// history and budget always give the same verdict.
///
/// # Panics
///
/// If an operation returns before it is called, has an output of the wrong
/// kind for its input (a value for a put, `Done` for a get), or has an
/// output without a return time or a return time without an output.
pub fn check(history: &[Operation], budget: &Budget) -> Verdict {
    match linearize(history, budget) {
        Ok(_) => Verdict::Ok,
        Err(verdict) => verdict,
    }
}

/// Like [`check`], but on success returns one linearization per key: the
/// history indexes of that key's operations in linearization order. Every
/// operation with a known outcome appears exactly once; an operation with
/// an unknown outcome appears if the linearization has it take effect, and
/// is left out if it never did. Reads with unknown outcomes never appear.
///
/// On failure the error is [`Verdict::Illegal`] or [`Verdict::Unknown`],
/// exactly what [`check`] would return. Costs the same as [`check`].
///
/// # Panics
///
/// As [`check`].
pub fn linearize(
    history: &[Operation],
    budget: &Budget,
) -> Result<BTreeMap<Vec<u8>, Vec<usize>>, Verdict> {
    validate(history);
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        by_key.entry(op.input.key()).or_default().push(i);
    }
    let mut orders = BTreeMap::new();
    let mut unknown = None;
    for (key, indexes) in by_key {
        match check_key(key, history, &indexes, budget) {
            KeyOutcome::Linearizable(order) => {
                orders.insert(key.to_vec(), order);
            }
            KeyOutcome::Illegal(violation) => return Err(Verdict::Illegal(Box::new(violation))),
            KeyOutcome::OutOfBudget(steps) => {
                if unknown.is_none() {
                    unknown = Some(Verdict::Unknown { key: key.to_vec(), steps });
                }
            }
        }
    }
    match unknown {
        Some(verdict) => Err(verdict),
        None => Ok(orders),
    }
}

/// Panics on an operation that no real client could have produced.
fn validate(history: &[Operation]) {
    for (i, op) in history.iter().enumerate() {
        if let Some(ret) = op.ret
            && ret < op.call
        {
            panic!(
                "linearizability: operation #{i} ({op}) returns before it is called \
                 (ret {ret}ns < call {}ns)",
                op.call
            );
        }
        match (&op.input, &op.output) {
            (_, None)
            | (Input::Get { .. }, Some(Output::Value(_)))
            | (Input::Put { .. } | Input::Delete { .. }, Some(Output::Done)) => {}
            (input, Some(output)) => panic!(
                "linearizability: operation #{i} ({op}) has output {output:?}, which does not \
                 fit its input {input:?} (a get returns Output::Value, a put or delete \
                 Output::Done)"
            ),
        }
        match (&op.output, op.ret) {
            (Some(_), Some(_)) | (None, None) => {}
            (Some(_), None) => panic!(
                "linearizability: operation #{i} ({op}) has an output but no return time; \
                 give it ret: Some(..), or output: None if the outcome is unknown"
            ),
            (None, Some(_)) => panic!(
                "linearizability: operation #{i} ({op}) has an unknown outcome (output: None) \
                 but a return time; it may take effect at any time after its call, even after \
                 the client gave up, so record it with ret: None"
            ),
        }
    }
}

/// The outcome of checking one key.
enum KeyOutcome {
    /// History indexes in linearization order.
    Linearizable(Vec<usize>),
    Illegal(Violation),
    /// Ran out of budget after this many steps.
    OutOfBudget(u64),
}

/// An interned value: 0 is "absent", `k + 1` is `values[k]`.
type ValueId = u32;
const ABSENT: ValueId = 0;

/// What one operation does to the model, with interned values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// A read that returned this value.
    Read(ValueId),
    /// A put (of this value) or a delete (`ABSENT`).
    Write(ValueId),
}

impl Effect {
    /// The state after applying the effect to `state`, or `None` if the
    /// operation cannot happen in `state`.
    fn apply(self, state: ValueId) -> Option<ValueId> {
        match self {
            Effect::Read(seen) => (seen == state).then_some(state),
            Effect::Write(value) => Some(value),
        }
    }
}

/// No node (end of list, or a call without a return entry).
const NIL: usize = usize::MAX;
/// The list's sentinel node; real entries are `1..`.
const HEAD: usize = 0;

/// The doubly linked list of call and return events, sorted by time.
/// Lifting unlinks a node but leaves its own links intact, so undoing lifts
/// in reverse order restores the list exactly ("dancing links").
#[derive(Debug)]
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The local operation of each node.
    op: Vec<usize>,
    /// For a call node, its return node (or `NIL` if it has none); for a
    /// return node, `NIL`.
    matching: Vec<usize>,
    is_call: Vec<bool>,
    /// The call node of each local operation.
    call_node: Vec<usize>,
}

impl EventList {
    /// `events` are (local operation, is_call) in list order.
    fn new(events: &[(usize, bool)], op_count: usize) -> EventList {
        let len = events.len() + 1;
        let mut list = EventList {
            next: (1..=len).map(|n| if n == len { NIL } else { n }).collect(),
            prev: (0..len).map(|n| if n == 0 { NIL } else { n - 1 }).collect(),
            op: vec![NIL; len],
            matching: vec![NIL; len],
            is_call: vec![false; len],
            call_node: vec![NIL; op_count],
        };
        for (n, &(op, is_call)) in events.iter().enumerate() {
            let node = n + 1;
            list.op[node] = op;
            list.is_call[node] = is_call;
            if is_call {
                list.call_node[op] = node;
            } else {
                list.matching[list.call_node[op]] = node;
            }
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes a call node and its return node.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if self.matching[call] != NIL {
            self.unlink(self.matching[call]);
        }
    }

    /// Undoes `lift(call)`; must be called in reverse order of the lifts.
    fn unlift(&mut self, call: usize) {
        if self.matching[call] != NIL {
            self.relink(self.matching[call]);
        }
        self.relink(call);
    }
}

/// One key's operations, ready for the search. "Local" indexes are into
/// the vectors; `ops` maps them back to history indexes.
///
/// An operation with a known outcome is *required*: it must be linearized
/// between its call and its return. A write with an unknown outcome is
/// *optional*: it is linearized between its call and its deadline, or it
/// is dropped (never took effect). Its deadline is the last return of a
/// read that saw what it wrote (its value, or not found for a delete):
/// taking effect any later, no read could tell, so that is no different
/// from never. A write no read could have seen is left out altogether
/// (`pruned`), and so is a read with an unknown outcome.
#[derive(Debug)]
struct KeyHistory {
    /// History indexes, in history order.
    ops: Vec<usize>,
    effects: Vec<Effect>,
    call: Vec<u64>,
    /// The return, or for an optional operation its deadline.
    deadline: Vec<u64>,
    required: Vec<bool>,
    /// History indexes of the writes with unknown outcomes left out.
    pruned: Vec<usize>,
    /// Interned values: `ValueId` `k + 1` is `values[k]`.
    values: Vec<Vec<u8>>,
}

impl KeyHistory {
    fn new<'h>(history: &'h [Operation], indexes: &[usize]) -> KeyHistory {
        let mut ids: HashMap<&'h [u8], ValueId> = HashMap::new();
        let mut values = Vec::new();
        let mut intern = |value: Option<&'h [u8]>| -> ValueId {
            let Some(value) = value else { return ABSENT };
            *ids.entry(value).or_insert_with(|| {
                values.push(value.to_vec());
                ValueId::try_from(values.len()).expect("fewer than 2^32 distinct values")
            })
        };
        // (history index, effect); reads with unknown outcomes dropped.
        let mut effects: Vec<(usize, Effect)> = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let effect = match (&history[i].input, &history[i].output) {
                (Input::Get { .. }, None) => continue,
                (Input::Get { .. }, Some(Output::Value(seen))) => {
                    Effect::Read(intern(seen.as_deref()))
                }
                (Input::Get { .. }, Some(Output::Done)) => unreachable!("validated"),
                (Input::Put { value, .. }, _) => Effect::Write(intern(Some(value))),
                (Input::Delete { .. }, _) => Effect::Write(ABSENT),
            };
            effects.push((i, effect));
        }
        // The last return of a read of each value.
        let mut last_read: Vec<Option<u64>> = vec![None; values.len() + 1];
        for &(i, effect) in &effects {
            if let Effect::Read(seen) = effect {
                last_read[seen as usize] = last_read[seen as usize].max(history[i].ret);
            }
        }
        let mut key_history = KeyHistory {
            ops: Vec::with_capacity(effects.len()),
            effects: Vec::with_capacity(effects.len()),
            call: Vec::with_capacity(effects.len()),
            deadline: Vec::with_capacity(effects.len()),
            required: Vec::with_capacity(effects.len()),
            pruned: Vec::new(),
            values,
        };
        for (i, effect) in effects {
            let op = &history[i];
            let (deadline, required) = match (op.ret, effect) {
                (Some(ret), _) => (ret, true),
                (None, Effect::Write(value)) => match last_read[value as usize] {
                    Some(last) if last >= op.call => (last, false),
                    _ => {
                        key_history.pruned.push(i);
                        continue;
                    }
                },
                (None, Effect::Read(_)) => unreachable!("reads with unknown outcomes are skipped"),
            };
            key_history.ops.push(i);
            key_history.effects.push(effect);
            key_history.call.push(op.call);
            key_history.deadline.push(deadline);
            key_history.required.push(required);
        }
        key_history
    }

    fn value(&self, id: ValueId) -> Option<Vec<u8>> {
        (id != ABSENT).then(|| self.values[id as usize - 1].clone())
    }

    /// The events in list order: by time; calls before returns at the same
    /// time (closed intervals); then by position in the history.
    fn events(&self) -> Vec<(usize, bool)> {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * self.ops.len());
        for op in 0..self.ops.len() {
            // `false` sorts first: it marks the call.
            events.push((self.call[op], false, op));
            events.push((self.deadline[op], true, op));
        }
        events.sort_unstable();
        events.into_iter().map(|(_, is_return, op)| (op, !is_return)).collect()
    }
}

/// A decision on the search stack.
#[derive(Debug, Clone, Copy)]
struct Decision {
    /// The local operation decided.
    op: usize,
    /// Linearized it, or (an optional operation) dropped it.
    dropped: bool,
    /// The position before it.
    before: Position,
}

/// How the search on one key ended.
enum SearchResult {
    /// The linearized operations (local indexes), in order.
    Linearizable(Vec<usize>),
    /// Not linearizable; the longest sequence of decisions found.
    Illegal(Vec<Decision>),
    OutOfBudget(u64),
}

/// Wing and Gong's search with memoization, over one key.
fn search(history: &KeyHistory, max_steps: u64) -> SearchResult {
    let op_count = history.ops.len();
    let required = history.required.iter().filter(|&&required| required).count();
    let mut list = EventList::new(&history.events(), op_count);

    // The bitset of decided operations followed by the current position:
    // exactly what the cache remembers. Whether an optional operation was
    // linearized or dropped makes no difference to what can follow.
    let words = op_count.div_ceil(64);
    let mut current = vec![0u64; words + 1];
    let mut seen: HashSet<Box<[u64]>> = HashSet::new();
    let bit = |op: usize| (op / 64, 1u64 << (op % 64));

    let mut at = Position { value: ABSENT, read_next: false };
    let mut linearized_required = 0;
    let mut stack: Vec<Decision> = Vec::new();
    let mut longest: Option<Vec<Decision>> = None;
    let mut entry = list.next[HEAD];
    let mut steps = 0;
    loop {
        if linearized_required == required {
            return SearchResult::Linearizable(
                stack.iter().filter(|decision| !decision.dropped).map(|d| d.op).collect(),
            );
        }
        if steps == max_steps {
            return SearchResult::OutOfBudget(steps);
        }
        steps += 1;
        // While a required operation is undecided its return entry lies
        // ahead, so the walk never runs off the end.
        debug_assert!(entry != NIL);
        if entry != NIL && (list.is_call[entry] || !history.required[list.op[entry]]) {
            // A call: try to linearize the operation next. The deadline of
            // an optional operation: try to drop it.
            let op = list.op[entry];
            let dropped = !list.is_call[entry];
            let next = if dropped { Some(at) } else { step(history, &list, at, op) };
            if let Some(next) = next {
                let (word, mask) = bit(op);
                current[word] |= mask;
                current[words] = next.key();
                if !seen.contains(&current[..]) {
                    seen.insert(current.clone().into_boxed_slice());
                    stack.push(Decision { op, dropped, before: at });
                    at = next;
                    if history.required[op] {
                        linearized_required += 1;
                    }
                    list.lift(list.call_node[op]);
                    entry = list.next[HEAD];
                    continue;
                }
                current[word] &= !mask;
                current[words] = at.key();
            }
            if !dropped {
                entry = list.next[entry];
                continue;
            }
        }
        // A required operation returns here without having been linearized
        // (or an optional one could be neither linearized nor dropped): the
        // last decision was wrong. Dead ends right after an optional write
        // are not recorded: the prefix without it is as long an explanation.
        if !at.read_next && longest.as_ref().is_none_or(|longest| stack.len() > longest.len()) {
            longest = Some(stack.clone());
        }
        // Undo decisions until one leaves a call to try after it. Undoing a
        // drop leaves none: the calls before the deadline were all tried.
        loop {
            let Some(decision) = stack.pop() else {
                return SearchResult::Illegal(longest.unwrap_or_default());
            };
            let (word, mask) = bit(decision.op);
            current[word] &= !mask;
            current[words] = decision.before.key();
            at = decision.before;
            if history.required[decision.op] {
                linearized_required -= 1;
            }
            let call = list.call_node[decision.op];
            list.unlift(call);
            if !decision.dropped {
                entry = list.next[call];
                break;
            }
        }
    }
}

/// Where the search stands after the operations decided so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The model state: the key's value.
    value: ValueId,
    /// The last operation linearized was an optional write, so the next
    /// one must be a read (see [`step`]).
    read_next: bool,
}

impl Position {
    /// The position as one word of a cache entry.
    fn key(self) -> u64 {
        u64::from(self.value) | u64::from(self.read_next) << 32
    }
}

/// The position after linearizing `op` at `at`, or `None` if the model
/// rejects it or it is not worth trying.
///
/// Three rules spare the search from trying writes with unknown outcomes
/// in every order and combination; each keeps at least one linearization
/// whenever there is one. An optional write is only tried
///
/// - if it changes the value: writing what is already there changes
///   nothing and only uses the write up;
/// - if no other optional write that could go next does the same with an
///   earlier deadline ([`dominated`]);
/// - and then the next operation linearized must be a read: an optional
///   write followed by another write, or by nothing, could as well never
///   have happened.
fn step(history: &KeyHistory, list: &EventList, at: Position, op: usize) -> Option<Position> {
    let effect = history.effects[op];
    if at.read_next && matches!(effect, Effect::Write(_)) {
        return None;
    }
    let optional = !history.required[op];
    if optional && (effect == Effect::Write(at.value) || dominated(history, list, op)) {
        return None;
    }
    let value = effect.apply(at.value)?;
    Some(Position { value, read_next: optional })
}

/// Whether another undecided optional operation that could go next does
/// the same as the optional `op` with an earlier deadline (ties: earlier in
/// the history). Trying that one first loses nothing: whatever the search
/// could do later with it, it can do with `op`, which is already called and
/// stays available longer. Without this rule, a few writes with unknown
/// outcomes that do the same (typically deletes, which reads of "not found"
/// keep relevant) would be tried in every subset.
fn dominated(history: &KeyHistory, list: &EventList, op: usize) -> bool {
    let rank = |op: usize| (history.deadline[op], op);
    let mut node = list.next[HEAD];
    // The operations that could go next: the calls before the first return.
    while node != NIL && list.is_call[node] {
        let other = list.op[node];
        if !history.required[other]
            && history.effects[other] == history.effects[op]
            && rank(other) < rank(op)
        {
            return true;
        }
        node = list.next[node];
    }
    false
}

fn check_key(key: &[u8], history: &[Operation], indexes: &[usize], budget: &Budget) -> KeyOutcome {
    let key_history = KeyHistory::new(history, indexes);
    match search(&key_history, budget.max_steps_per_key) {
        SearchResult::Linearizable(order) => {
            KeyOutcome::Linearizable(order.into_iter().map(|op| key_history.ops[op]).collect())
        }
        SearchResult::OutOfBudget(steps) => KeyOutcome::OutOfBudget(steps),
        SearchResult::Illegal(prefix) => {
            KeyOutcome::Illegal(explain(key, history, indexes, &key_history, &prefix))
        }
    }
}

/// Builds the violation for a key whose longest sequence of decisions is
/// `prefix`.
///
/// The search records the prefix the first time it reaches that length,
/// at the return of a required operation, the first return entry left in
/// the list, and not right after an optional write. At that moment every
/// required operation called before that return (called no later than the
/// earliest undecided deadline) had been tried right after the prefix and
/// rejected by the model: one accepted, or found in the cache, would have
/// led to a longer prefix earlier. So re-applying those candidates here
/// finds the reasons; and since they are all reads (writes always apply),
/// no optional write could have helped them either: it would have been
/// tried and followed by the read, again a longer prefix.
fn explain(
    key: &[u8],
    history: &[Operation],
    indexes: &[usize],
    key_history: &KeyHistory,
    prefix: &[Decision],
) -> Violation {
    let mut state = ABSENT;
    let mut decided = vec![false; key_history.ops.len()];
    let mut never_took_effect = key_history.pruned.clone();
    for decision in prefix {
        decided[decision.op] = true;
        if decision.dropped {
            never_took_effect.push(key_history.ops[decision.op]);
        } else {
            state = key_history.effects[decision.op]
                .apply(state)
                .expect("the longest prefix found is a legal sequence");
        }
    }
    never_took_effect.sort_unstable();
    let pending = || (0..key_history.ops.len()).filter(|&op| !decided[op]);
    let (deadline_at, deadline) = pending()
        .map(|op| (key_history.deadline[op], op))
        .min()
        .expect("an illegal history has an undecided operation");
    debug_assert!(key_history.required[deadline], "the prefix ends at a required return");
    let mut candidates: Vec<usize> = pending()
        .filter(|&op| key_history.required[op] && key_history.call[op] <= deadline_at)
        .collect();
    candidates.sort_by_key(|&op| (key_history.call[op], op));
    let mut blocked = Vec::new();
    for op in candidates {
        let rejected_read = match key_history.effects[op] {
            Effect::Read(returned) if returned != state => Some(returned),
            _ => None,
        };
        debug_assert!(rejected_read.is_some(), "a candidate after the longest prefix applies");
        if let Some(returned) = rejected_read {
            blocked.push(Blocked {
                op: key_history.ops[op],
                returned: key_history.value(returned),
                current: key_history.value(state),
            });
        }
    }
    Violation {
        key: key.to_vec(),
        operations: indexes.iter().map(|&i| (i, history[i].clone())).collect(),
        longest_prefix: prefix
            .iter()
            .filter(|decision| !decision.dropped)
            .map(|decision| key_history.ops[decision.op])
            .collect(),
        never_took_effect,
        value_after_prefix: key_history.value(state),
        deadline: key_history.ops[deadline],
        blocked,
    }
}

// ---------------------------------------------------------------------------
// Display

/// Bytes as text, with anything but printable ASCII escaped.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            write!(f, "{}", std::ascii::escape_default(byte))?;
        }
        Ok(())
    }
}

/// A value in a sentence: quoted, or "absent".
struct Quoted<'a>(Option<&'a [u8]>, &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "\"{}\"", Escaped(value)),
            None => f.write_str(self.1),
        }
    }
}

/// Nanoseconds as milliseconds with three decimals.
struct Millis(u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}ms", self.0 / 1_000_000, self.0 / 1_000 % 1_000)
    }
}

impl fmt::Display for Input {
    /// `get k`, `put k=v`, `delete k`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Get { key } => write!(f, "get {}", Escaped(key)),
            Input::Put { key, value } => write!(f, "put {}={}", Escaped(key), Escaped(value)),
            Input::Delete { key } => write!(f, "delete {}", Escaped(key)),
        }
    }
}

impl fmt::Display for Operation {
    /// `client 3: put k=v [call 1.250ms, ret 1.900ms]`,
    /// `client 1: get k -> v [..]`, `client 1: get k -> not found [..]`,
    /// `client 2: delete k [call 2.000ms, outcome unknown]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}: {}", self.client, self.input)?;
        match &self.output {
            Some(Output::Value(Some(value))) => write!(f, " -> {}", Escaped(value))?,
            Some(Output::Value(None)) => f.write_str(" -> not found")?,
            Some(Output::Done) | None => {}
        }
        match self.ret {
            Some(ret) => write!(f, " [call {}, ret {}]", Millis(self.call), Millis(ret)),
            None => write!(f, " [call {}, outcome unknown]", Millis(self.call)),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let describe = |index: usize| -> String {
            match self.operations.binary_search_by_key(&index, |&(i, _)| i) {
                Ok(at) => format!("#{index} {}", self.operations[at].1),
                Err(_) => format!("#{index}"),
            }
        };
        let key = Quoted(Some(&self.key), "");
        writeln!(f, "the history of key {key} is not linearizable")?;
        writeln!(f, "operations on this key, in history order:")?;
        for (index, op) in &self.operations {
            writeln!(f, "  #{index} {op}")?;
        }
        if self.longest_prefix.is_empty() {
            writeln!(f, "longest linearizable prefix found: none (no operation can go first)")?;
        } else {
            writeln!(
                f,
                "longest linearizable prefix found ({} operations):",
                self.longest_prefix.len()
            )?;
            for (n, &index) in self.longest_prefix.iter().enumerate() {
                writeln!(f, "  {}. {}", n + 1, describe(index))?;
            }
        }
        if !self.never_took_effect.is_empty() {
            let list: Vec<String> =
                self.never_took_effect.iter().map(|index| format!("#{index}")).collect();
            writeln!(
                f,
                "writes with unknown outcomes taken as never having happened: {}",
                list.join(", ")
            )?;
        }
        let value = Quoted(self.value_after_prefix.as_deref(), "absent");
        writeln!(f, "after it the value of {key} is {value}")?;
        let deadline = self
            .operations
            .binary_search_by_key(&self.deadline, |&(i, _)| i)
            .ok()
            .and_then(|at| self.operations[at].1.ret);
        match deadline {
            Some(ret) => writeln!(
                f,
                "one of these must come next, since #{} returned at {}, but none can:",
                self.deadline,
                Millis(ret)
            )?,
            None => writeln!(f, "one of these must come next, but none can:")?,
        }
        for (n, blocked) in self.blocked.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            writeln!(f, "  {}", describe(blocked.op))?;
            write!(
                f,
                "    get returned {} but the value at that point is {}",
                Quoted(blocked.returned.as_deref(), "not found"),
                Quoted(blocked.current.as_deref(), "absent")
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok => f.write_str("linearizable"),
            Verdict::Illegal(violation) => violation.fmt(f),
            Verdict::Unknown { key, steps } => write!(
                f,
                "could not decide whether the history of key {} is linearizable within \
                 {steps} search steps",
                Quoted(Some(key), "")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn key(k: &str) -> Vec<u8> {
        k.as_bytes().to_vec()
    }

    fn put(client: u64, k: &str, v: &str, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            input: Input::Put { key: key(k), value: key(v) },
            output: Some(Output::Done),
            call,
            ret: Some(ret),
        }
    }

    fn put_unknown(client: u64, k: &str, v: &str, call: u64) -> Operation {
        Operation {
            client,
            input: Input::Put { key: key(k), value: key(v) },
            output: None,
            call,
            ret: None,
        }
    }

    fn delete(client: u64, k: &str, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            input: Input::Delete { key: key(k) },
            output: Some(Output::Done),
            call,
            ret: Some(ret),
        }
    }

    fn get(client: u64, k: &str, seen: Option<&str>, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            input: Input::Get { key: key(k) },
            output: Some(Output::Value(seen.map(key))),
            call,
            ret: Some(ret),
        }
    }

    fn verdict(history: &[Operation]) -> Verdict {
        let verdict = check(history, &Budget::default());
        if let Ok(orders) = linearize(history, &Budget::default()) {
            assert_valid_linearizations(history, &orders);
        }
        verdict
    }

    fn violation(history: &[Operation]) -> Violation {
        match verdict(history) {
            Verdict::Illegal(violation) => *violation,
            other => panic!("expected Illegal, got {other:?}"),
        }
    }

    /// Checks that `orders` really are linearizations of `history`:
    /// complete, in real-time order, and legal for the model.
    fn assert_valid_linearizations(history: &[Operation], orders: &BTreeMap<Vec<u8>, Vec<usize>>) {
        let mut used = vec![false; history.len()];
        for (k, order) in orders {
            let mut state: Option<&[u8]> = None;
            for (position, &i) in order.iter().enumerate() {
                let op = &history[i];
                assert_eq!(op.input.key(), &k[..], "#{i} listed under the wrong key");
                assert!(!used[i], "#{i} linearized twice");
                used[i] = true;
                for &later in &order[position + 1..] {
                    if let Some(ret) = history[later].ret {
                        assert!(ret >= op.call, "#{later} returned before #{i} was called");
                    }
                }
                match (&op.input, &op.output) {
                    (Input::Get { .. }, Some(Output::Value(seen))) => {
                        assert_eq!(seen.as_deref(), state, "#{i} read the wrong value");
                    }
                    (Input::Get { .. }, _) => panic!("#{i}: a read with no outcome linearized"),
                    (Input::Put { value, .. }, _) => state = Some(value),
                    (Input::Delete { .. }, _) => state = None,
                }
            }
        }
        for (i, op) in history.iter().enumerate() {
            if op.ret.is_some() {
                assert!(used[i], "#{i} ({op}) missing from the linearization");
            }
        }
    }

    #[test]
    fn empty_history_is_ok() {
        assert_eq!(verdict(&[]), Verdict::Ok);
        assert_eq!(linearize(&[], &Budget::default()), Ok(BTreeMap::new()));
    }

    #[test]
    fn single_put_then_get_is_ok() {
        let history = [put(1, "k", "v", 0, MS), get(1, "k", Some("v"), 2 * MS, 3 * MS)];
        assert_eq!(verdict(&history), Verdict::Ok);
    }

    #[test]
    fn sequential_put_get_delete_get_is_ok() {
        let history = [
            get(1, "k", None, 0, 1),
            put(1, "k", "v", 2, 3),
            get(1, "k", Some("v"), 4, 5),
            delete(1, "k", 6, 7),
            get(1, "k", None, 8, 9),
        ];
        assert_eq!(verdict(&history), Verdict::Ok);
        let orders = linearize(&history, &Budget::default()).unwrap();
        assert_eq!(orders[&key("k")], vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn concurrent_get_may_see_old_value() {
        let history = [
            put(1, "k", "old", 0, 1),
            put(1, "k", "new", 10, 20),
            get(2, "k", Some("old"), 12, 18),
        ];
        assert_eq!(verdict(&history), Verdict::Ok);
    }

    #[test]
    fn concurrent_get_may_see_new_value() {
        let history = [
            put(1, "k", "old", 0, 1),
            put(1, "k", "new", 10, 20),
            get(2, "k", Some("new"), 12, 18),
        ];
        assert_eq!(verdict(&history), Verdict::Ok);
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The get is called at the instant the put returns: either order.
        let history = [put(1, "k", "v", 0, 10), get(2, "k", None, 10, 20)];
        assert_eq!(verdict(&history), Verdict::Ok);
        let history = [put(1, "k", "v", 0, 10), get(2, "k", None, 11, 20)];
        assert!(matches!(verdict(&history), Verdict::Illegal(_)));
    }

    #[test]
    fn stale_read_after_completed_write_is_illegal() {
        let history =
            [put(1, "k", "v1", 0, 10), put(1, "k", "v2", 20, 30), get(2, "k", Some("v1"), 40, 50)];
        let violation = violation(&history);
        assert_eq!(violation.key, key("k"));
        assert_eq!(violation.longest_prefix, vec![0, 1]);
        assert_eq!(violation.value_after_prefix, Some(key("v2")));
        assert_eq!(violation.deadline, 2);
        assert_eq!(
            violation.blocked,
            vec![Blocked { op: 2, returned: Some(key("v1")), current: Some(key("v2")) }]
        );
    }

    #[test]
    fn read_of_unwritten_value_is_illegal() {
        let history = [put(1, "k", "v", 0, 10), get(2, "k", Some("ghost"), 5, 15)];
        let violation = violation(&history);
        assert_eq!(violation.deadline, 1);
        // The put could go first; then the read still cannot.
        assert_eq!(violation.longest_prefix, vec![0]);
        assert_eq!(
            violation.blocked,
            vec![Blocked { op: 1, returned: Some(key("ghost")), current: Some(key("v")) }]
        );
    }

    #[test]
    fn read_of_nothing_after_completed_put_is_illegal() {
        let history = [put(1, "k", "v", 0, 10), get(2, "k", None, 20, 30)];
        let violation = violation(&history);
        assert_eq!(violation.longest_prefix, vec![0]);
        assert_eq!(
            violation.blocked,
            vec![Blocked { op: 1, returned: None, current: Some(key("v")) }]
        );
    }

    #[test]
    fn readers_seeing_writes_in_opposite_orders_is_illegal() {
        let history = [
            put(1, "x", "1", 0, 100),
            put(2, "x", "2", 0, 100),
            get(3, "x", Some("1"), 10, 20),
            get(3, "x", Some("2"), 30, 40),
            get(4, "x", Some("2"), 10, 20),
            get(4, "x", Some("1"), 30, 40),
        ];
        let violation = violation(&history);
        assert_eq!(violation.key, key("x"));
        assert!(!violation.blocked.is_empty());
    }

    #[test]
    fn readers_seeing_opposite_orders_is_ok_when_intervals_overlap() {
        // Client 4's reads overlap each other (say, two connections), so its
        // read of "1" may take effect before its read of "2".
        let history = [
            put(1, "x", "1", 0, 100),
            put(2, "x", "2", 0, 100),
            get(3, "x", Some("1"), 10, 20),
            get(3, "x", Some("2"), 30, 40),
            get(4, "x", Some("2"), 10, 35),
            get(5, "x", Some("1"), 30, 40),
        ];
        assert_eq!(verdict(&history), Verdict::Ok);
        let order = &linearize(&history, &Budget::default()).unwrap()[&key("x")];
        assert_eq!(order.len(), 6);
    }

    #[test]
    fn unknown_put_that_is_later_read_is_ok() {
        let history = [put_unknown(1, "k", "v", 0), get(2, "k", Some("v"), 50, 60)];
        assert_eq!(verdict(&history), Verdict::Ok);
        assert_eq!(linearize(&history, &Budget::default()).unwrap()[&key("k")], vec![0, 1]);
    }

    #[test]
    fn unknown_put_never_read_is_ok() {
        let history = [
            put(1, "k", "a", 0, 10),
            put_unknown(1, "k", "b", 20),
            get(2, "k", Some("a"), 30, 40),
            get(2, "k", Some("a"), 50, 60),
        ];
        assert_eq!(verdict(&history), Verdict::Ok);
        // The unknown put never took effect in the linearization found.
        assert_eq!(linearize(&history, &Budget::default()).unwrap()[&key("k")], vec![0, 2, 3]);
    }

    #[test]
    fn unknown_put_seen_then_unseen_is_illegal() {
        let history = [
            put(1, "k", "a", 0, 10),
            put_unknown(1, "k", "b", 20),
            get(2, "k", Some("b"), 30, 40),
            get(2, "k", Some("a"), 50, 60),
        ];
        let violation = violation(&history);
        assert_eq!(violation.longest_prefix, vec![0, 1, 2]);
        assert_eq!(violation.deadline, 3);
        assert_eq!(
            violation.blocked,
            vec![Blocked { op: 3, returned: Some(key("a")), current: Some(key("b")) }]
        );
    }

    #[test]
    fn reads_with_unknown_outcome_are_ignored() {
        let lost_read = Operation {
            client: 3,
            input: Input::Get { key: key("k") },
            output: None,
            call: 5,
            ret: None,
        };
        let history = [put(1, "k", "v", 0, 10), lost_read, get(2, "k", Some("v"), 20, 30)];
        assert_eq!(verdict(&history), Verdict::Ok);
        assert_eq!(linearize(&history, &Budget::default()).unwrap()[&key("k")], vec![0, 2]);
    }

    #[test]
    fn keys_are_checked_independently() {
        let history = [
            put(1, "a", "1", 0, 10),
            put(2, "b", "1", 0, 10),
            get(1, "a", Some("1"), 20, 30),
            get(2, "b", None, 20, 30),
            put(3, "c", "x", 0, 10),
            get(3, "c", None, 20, 30),
        ];
        let violation = violation(&history);
        assert_eq!(violation.key, key("b"));
        assert_eq!(violation.operations.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 3]);
        // Key a alone is fine.
        assert_eq!(verdict(&[history[0].clone(), history[2].clone()]), Verdict::Ok);
    }

    /// Many concurrent writes and reads on one key, all linearizable, in an
    /// order the search finds without backtracking.
    fn crowded_history(writers: u64) -> Vec<Operation> {
        let mut history = Vec::new();
        for w in 0..writers {
            history.push(put(w, "hot", &format!("v{w}"), 0, 1_000));
            history.push(get(100 + w, "hot", Some(&format!("v{w}")), 0, 1_000));
        }
        history
    }

    #[test]
    fn small_budget_gives_unknown_never_ok() {
        let history = crowded_history(30);
        let budget = Budget { max_steps_per_key: 50 };
        assert_eq!(check(&history, &budget), Verdict::Unknown { key: key("hot"), steps: 50 });
        assert_eq!(
            linearize(&history, &budget),
            Err(Verdict::Unknown { key: key("hot"), steps: 50 })
        );
        assert_eq!(check(&history, &Budget::default()), Verdict::Ok);
        // An illegal key after the undecided one still wins.
        let mut with_illegal = history.clone();
        with_illegal.push(get(9, "z", Some("ghost"), 0, 1));
        assert!(matches!(check(&with_illegal, &budget), Verdict::Illegal(v) if v.key == key("z")));
    }

    #[test]
    fn same_history_gives_same_verdict() {
        let history = [
            put(1, "x", "1", 0, 100),
            put(2, "x", "2", 0, 100),
            put(6, "x", "3", 5, 45),
            get(3, "x", Some("1"), 10, 20),
            get(3, "x", Some("2"), 30, 40),
            get(4, "x", Some("2"), 10, 20),
            get(4, "x", Some("1"), 30, 40),
            get(5, "x", Some("3"), 50, 60),
        ];
        let first = check(&history, &Budget::default());
        let second = check(&history, &Budget::default());
        assert!(matches!(first, Verdict::Illegal(_)));
        assert_eq!(first, second);
        assert_eq!(first.to_string(), second.to_string());
    }

    #[test]
    fn violation_display_is_readable() {
        let history = [
            put(1, "k", "v1", 0, 1_000_000),
            put(2, "k", "v2", 1_250_000, 1_900_000),
            get(3, "k", Some("v1"), 2_000_000, 3_100_000),
        ];
        let text = violation(&history).to_string();
        let expected = "\
the history of key \"k\" is not linearizable
operations on this key, in history order:
  #0 client 1: put k=v1 [call 0.000ms, ret 1.000ms]
  #1 client 2: put k=v2 [call 1.250ms, ret 1.900ms]
  #2 client 3: get k -> v1 [call 2.000ms, ret 3.100ms]
longest linearizable prefix found (2 operations):
  1. #0 client 1: put k=v1 [call 0.000ms, ret 1.000ms]
  2. #1 client 2: put k=v2 [call 1.250ms, ret 1.900ms]
after it the value of \"k\" is \"v2\"
one of these must come next, since #2 returned at 3.100ms, but none can:
  #2 client 3: get k -> v1 [call 2.000ms, ret 3.100ms]
    get returned \"v1\" but the value at that point is \"v2\"";
        assert_eq!(text, expected);

        let history = [get(1, "\u{1}k", None, 0, 1), put_unknown(2, "\u{1}k", "v", 2)];
        assert_eq!(verdict(&history), Verdict::Ok);
        assert_eq!(
            history[1].to_string(),
            "client 2: put \\x01k=v [call 0.000ms, outcome unknown]"
        );
        let history = [get(1, "k", Some("x"), 0, 1)];
        let text = violation(&history).to_string();
        assert!(text.contains("longest linearizable prefix found: none"), "{text}");
        assert!(text.contains("after it the value of \"k\" is absent"), "{text}");
        assert!(text.contains("get returned \"x\" but the value at that point is absent"));
    }

    #[test]
    #[should_panic(
        expected = "operation #1 (client 2: get k -> v [call 0.000ms, ret 0.000ms]) returns"
    )]
    fn return_before_call_panics() {
        check(&[put(1, "k", "v", 0, 1), get(2, "k", Some("v"), 10, 5)], &Budget::default());
    }

    #[test]
    #[should_panic(expected = "operation #0")]
    fn output_of_wrong_kind_panics() {
        let mut op = put(1, "k", "v", 0, 1);
        op.output = Some(Output::Value(None));
        check(&[op], &Budget::default());
    }

    #[test]
    #[should_panic(expected = "record it with ret: None")]
    fn unknown_outcome_with_return_time_panics() {
        let mut op = put(1, "k", "v", 0, 1);
        op.output = None;
        check(&[op], &Budget::default());
    }

    // -- Randomized tests ---------------------------------------------------

    /// SplitMix64, the whole of it.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    /// A linearizable history: each client runs one operation at a time and
    /// starts the next soon after, so `clients` operations overlap at once;
    /// every operation takes effect at a random instant inside its interval
    /// (an unknown write: at a random instant after its call, or never), and
    /// the outputs come from a real map applied in that order.
    fn random_history(
        rng: &mut Rng,
        ops: usize,
        keys: u64,
        clients: u64,
        unknown_percent: u64,
    ) -> Vec<Operation> {
        let mut client_free = vec![0u64; clients as usize];
        let mut history = Vec::with_capacity(ops);
        let mut effect_at: Vec<(u64, usize)> = Vec::new();
        for i in 0..ops {
            // The client that is free first goes next, so all of them stay busy.
            let client = (0..clients).min_by_key(|&c| (client_free[c as usize], c)).unwrap();
            let call = client_free[client as usize] + rng.below(5) * 1_000;
            let duration = (1 + rng.below(30)) * 1_000;
            client_free[client as usize] = call + duration;
            let k = format!("k{}", rng.below(keys)).into_bytes();
            let (input, is_write) = match rng.below(10) {
                0..5 => (Input::Get { key: k }, false),
                5..9 => (Input::Put { key: k, value: format!("v{i}").into_bytes() }, true),
                _ => (Input::Delete { key: k }, true),
            };
            let unknown = rng.percent(unknown_percent);
            if unknown && is_write {
                if rng.percent(50) {
                    effect_at.push((call + rng.below(100) * 1_000, i));
                }
            } else if !unknown {
                effect_at.push((call + rng.below(duration + 1), i));
            }
            let ret = (!unknown).then_some(call + duration);
            history.push(Operation { client, input, output: None, call, ret });
        }
        effect_at.sort_unstable();
        let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (_, i) in effect_at {
            let op = &mut history[i];
            let output = match &op.input {
                Input::Get { key } => Output::Value(map.get(key).cloned()),
                Input::Put { key, value } => {
                    map.insert(key.clone(), value.clone());
                    Output::Done
                }
                Input::Delete { key } => {
                    map.remove(key);
                    Output::Done
                }
            };
            if op.ret.is_some() {
                op.output = Some(output);
            }
        }
        history
    }

    fn is_known_write(op: &Operation) -> bool {
        op.ret.is_some() && !matches!(op.input, Input::Get { .. })
    }

    /// Makes a read return the value of a write that a later write, done
    /// before the read began, overwrote. Returns the read's key.
    fn make_stale_read(history: &mut [Operation]) -> Option<Vec<u8>> {
        let done_before = |op: &Operation, t: u64| op.ret.is_some_and(|ret| ret < t);
        let (r, value) = (0..history.len()).find_map(|r| {
            let read = &history[r];
            if read.ret.is_none() || !matches!(read.input, Input::Get { .. }) {
                return None;
            }
            let writes = || {
                history.iter().filter(|op| op.input.key() == read.input.key() && is_known_write(op))
            };
            writes().filter(|w2| done_before(w2, read.call)).find_map(|w2| {
                writes().filter(|w1| done_before(w1, w2.call)).find_map(|w1| match &w1.input {
                    Input::Put { value, .. } => Some((r, value.clone())),
                    _ => None,
                })
            })
        })?;
        history[r].output = Some(Output::Value(Some(value)));
        Some(history[r].input.key().to_vec())
    }

    #[test]
    fn random_histories_are_ok_and_corrupted_reads_illegal() {
        let mut stale_reads = 0;
        for seed in 0..300 {
            let mut rng = Rng(seed);
            let ops = 20 + rng.below(60) as usize;
            let history = random_history(&mut rng, ops, 3, 4, 10);
            let orders = linearize(&history, &Budget::default())
                .unwrap_or_else(|v| panic!("seed {seed}: {v}"));
            assert_valid_linearizations(&history, &orders);

            let reads: Vec<usize> = (0..history.len())
                .filter(|&i| matches!(history[i].output, Some(Output::Value(_))))
                .collect();
            if !reads.is_empty() {
                let r = reads[rng.below(reads.len() as u64) as usize];
                let mut corrupted = history.clone();
                corrupted[r].output = Some(Output::Value(Some(b"never written".to_vec())));
                match check(&corrupted, &Budget::default()) {
                    Verdict::Illegal(v) => {
                        assert_eq!(v.key, history[r].input.key(), "seed {seed}");
                        assert!(v.blocked.iter().any(|b| b.op == r), "seed {seed}: {v}");
                    }
                    other => panic!("seed {seed}: corrupting #{r} gave {other:?}"),
                }
            }

            let mut stale = history.clone();
            if let Some(k) = make_stale_read(&mut stale) {
                stale_reads += 1;
                match check(&stale, &Budget::default()) {
                    Verdict::Illegal(v) => assert_eq!(v.key, k, "seed {seed}"),
                    other => panic!("seed {seed}: a stale read gave {other:?}"),
                }
            }
        }
        assert!(stale_reads > 100, "only {stale_reads} stale reads made");
    }

    /// Tries every order: exponential, but obviously right.
    fn brute_force_linearizable(history: &[Operation]) -> bool {
        fn extend(history: &[Operation], used: &mut [bool], state: Option<&[u8]>) -> bool {
            if history.iter().zip(used.iter()).all(|(op, &used)| used || op.ret.is_none()) {
                return true;
            }
            for x in 0..history.len() {
                let op = &history[x];
                if used[x] || (op.output.is_none() && matches!(op.input, Input::Get { .. })) {
                    continue;
                }
                // Everything that returned before x was called goes first.
                let blocked_by_earlier = (0..history.len())
                    .any(|y| !used[y] && history[y].ret.is_some_and(|ret| ret < op.call));
                if blocked_by_earlier {
                    continue;
                }
                let next = match (&op.input, &op.output) {
                    (Input::Get { .. }, Some(Output::Value(seen))) if seen.as_deref() == state => {
                        state
                    }
                    (Input::Get { .. }, _) => continue,
                    (Input::Put { value, .. }, _) => Some(&value[..]),
                    (Input::Delete { .. }, _) => None,
                };
                used[x] = true;
                if extend(history, used, next) {
                    return true;
                }
                used[x] = false;
            }
            false
        }
        extend(history, &mut vec![false; history.len()], None)
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let (mut ok, mut illegal) = (0, 0);
        for seed in 0..500 {
            let mut rng = Rng(seed ^ 0x5eed);
            let n = 1 + rng.below(7);
            let value = |rng: &mut Rng| ["a", "b"][rng.below(2) as usize];
            let history: Vec<Operation> = (0..n)
                .map(|c| {
                    let call = rng.below(20);
                    let ret = call + rng.below(10);
                    let mut op = match rng.below(3) {
                        0 => {
                            let seen = [None, Some("a"), Some("b")][rng.below(3) as usize];
                            get(c, "k", seen, call, ret)
                        }
                        1 => put(c, "k", value(&mut rng), call, ret),
                        _ => delete(c, "k", call, ret),
                    };
                    if rng.percent(if seed % 2 == 0 { 15 } else { 50 }) {
                        op.output = None;
                        op.ret = None;
                    }
                    op
                })
                .collect();
            let expected = brute_force_linearizable(&history);
            match verdict(&history) {
                Verdict::Ok => {
                    assert!(expected, "seed {seed}: checker says Ok: {history:#?}");
                    ok += 1;
                }
                Verdict::Illegal(v) => {
                    assert!(!expected, "seed {seed}: checker says Illegal:\n{v}");
                    assert!(!v.blocked.is_empty());
                    illegal += 1;
                }
                Verdict::Unknown { .. } => panic!("seed {seed}: Unknown"),
            }
        }
        assert!(ok > 100 && illegal > 100, "{ok} ok, {illegal} illegal");
    }

    #[test]
    fn unknown_delete_explains_a_later_not_found() {
        let history = [
            put(1, "k", "a", 0, 10),
            Operation {
                client: 1,
                input: Input::Delete { key: key("k") },
                output: None,
                call: 20,
                ret: None,
            },
            get(2, "k", Some("a"), 30, 40),
            get(2, "k", None, 50, 60),
        ];
        assert_eq!(verdict(&history), Verdict::Ok);
        assert_eq!(linearize(&history, &Budget::default()).unwrap()[&key("k")], vec![0, 2, 1, 3]);
        let mut swapped = history.clone();
        swapped[2].output = Some(Output::Value(None));
        swapped[3].output = Some(Output::Value(Some(key("a"))));
        let violation = violation(&swapped);
        assert_eq!(violation.longest_prefix, vec![0, 1, 2]);
        assert_eq!(
            violation.blocked,
            vec![Blocked { op: 3, returned: Some(key("a")), current: None }]
        );
    }

    #[test]
    fn illegal_single_key_history_with_many_unknown_writes_is_decided() {
        // Every state of the search must be visited to rule the history
        // out, with dozens of writes of unknown outcome pending at a time.
        for seed in 0..3 {
            let mut rng = Rng(seed);
            let mut history = random_history(&mut rng, 400, 1, 5, 10);
            let last_read = (0..history.len())
                .rev()
                .find(|&i| matches!(history[i].output, Some(Output::Value(_))))
                .unwrap();
            history[last_read].output = Some(Output::Value(Some(b"never written".to_vec())));
            match check(&history, &Budget::default()) {
                Verdict::Illegal(v) => {
                    assert_eq!(v.blocked.iter().map(|b| b.op).collect::<Vec<_>>(), [last_read])
                }
                other => panic!("seed {seed}: {other:?}"),
            }
        }
    }

    #[test]
    fn two_thousand_ops_over_fifty_keys() {
        let mut rng = Rng(2024);
        let history = random_history(&mut rng, 2_000, 50, 5, 5);
        let orders = linearize(&history, &Budget::default()).unwrap_or_else(|v| panic!("{v}"));
        assert_valid_linearizations(&history, &orders);
        assert_eq!(orders.len(), 50);

        let mut stale = history.clone();
        let k = make_stale_read(&mut stale).expect("some read can be made stale");
        assert!(matches!(check(&stale, &Budget::default()), Verdict::Illegal(v) if v.key == k));
    }
}
