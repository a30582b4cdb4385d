//! Per-key latches (given).
//!
//! Two commands that touch the same key must not interleave their
//! read-check-write: two prewrites of one key could both see it unlocked
//! and both lock it. A command therefore acquires a latch on every key it
//! may modify before it reads, and holds them until its writes are in the
//! storage. Latches are in-memory and per store; they are not locks in
//! the Percolator sense (those live in the `lock` column family).
//!
//! A command acquires all its keys at once, so two commands can never
//! wait for each other in a cycle.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct State {
    /// The keys latched now.
    held: BTreeSet<Vec<u8>>,
    /// Every key set acquired so far (for tests).
    log: Vec<Vec<Vec<u8>>>,
}

/// The latches of one store. See the module docs.
#[derive(Debug, Default)]
pub struct Latches {
    state: Mutex<State>,
    freed: Condvar,
}

/// Held latches; dropping it releases them.
#[derive(Debug)]
pub struct LatchGuard<'a> {
    latches: &'a Latches,
    keys: Vec<Vec<u8>>,
}

impl Latches {
    /// No key latched.
    pub fn new() -> Latches {
        Latches::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few inserts or removes: a panic elsewhere
        // cannot leave the state half changed.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Latches every key of `keys` (duplicates allowed), waiting until no
    /// other command holds any of them.
    pub fn acquire(&self, keys: &[Vec<u8>]) -> LatchGuard<'_> {
        let keys: Vec<Vec<u8>> =
            keys.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let mut state = self.lock();
        while keys.iter().any(|k| state.held.contains(k)) {
            state = self.freed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.held.extend(keys.iter().cloned());
        state.log.push(keys.clone());
        LatchGuard { latches: self, keys }
    }

    /// Every key set acquired so far, in order (each sorted and without
    /// duplicates).
    pub fn acquired(&self) -> Vec<Vec<Vec<u8>>> {
        self.lock().log.clone()
    }

    /// The keys latched now, sorted (for tests: what a storage sees held
    /// while a command reads or writes).
    pub fn held(&self) -> Vec<Vec<u8>> {
        self.lock().held.iter().cloned().collect()
    }
}

impl Drop for LatchGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.latches.lock();
        for k in &self.keys {
            state.held.remove(k);
        }
        drop(state);
        self.latches.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_key_is_held_by_one_command_at_a_time() {
        let latches = Arc::new(Latches::new());
        let counter = Arc::new(Mutex::new((0u32, 0u32))); // (inside, max inside)
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (latches, counter) = (latches.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _g = latches.acquire(&[b"k".to_vec(), format!("own{i}").into_bytes()]);
                        let mut c = counter.lock().unwrap();
                        c.0 += 1;
                        c.1 = c.1.max(c.0);
                        drop(c);
                        std::thread::yield_now();
                        counter.lock().unwrap().0 -= 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.lock().unwrap().1, 1, "two commands held k at once");
        assert_eq!(latches.acquired().len(), 200);
    }

    #[test]
    fn duplicates_are_latched_once_and_released() {
        let latches = Latches::new();
        drop(latches.acquire(&[b"b".to_vec(), b"a".to_vec(), b"b".to_vec()]));
        let _again = latches.acquire(&[b"a".to_vec()]);
        assert_eq!(
            latches.acquired(),
            vec![vec![b"a".to_vec(), b"b".to_vec()], vec![b"a".to_vec()]]
        );
    }
}
