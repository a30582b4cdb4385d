//! Percolator end to end on the real engine (not graded): several client
//! threads move money between accounts with `TxnStore` over a fjall
//! `StandaloneStorage`, some of them dying half way through a
//! transaction, while a reader scans every account. Every scan, and the
//! final state, must add up to the money the bank started with.
//!
//! This is what the commands are for: latches keep concurrent commands
//! apart, locks and the primary key keep a half-done transaction
//! invisible until someone settles it, and `KvCheckTxnStatus` plus
//! `KvResolveLock` settle the transactions their clients abandoned.
//!
//! The threads' choices come from fixed seeds; their interleaving does
//! not, and the invariant must hold for every interleaving.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tinykv_proto::kvrpcpb::{KeyError, LockInfo};
use tinykv_storage::{StandaloneConfig, StandaloneStorage};
use tinykv_transaction::TxnStore;
use tinykv_transaction::requests::{self, PrewriteBuilder};
use tinykv_transaction::ts::compose;

const ACCOUNTS: usize = 8;
const INITIAL: u64 = 100;
const WRITERS: u64 = 4;
const TRANSFERS_PER_WRITER: usize = 60;
/// Lock TTL in ms; the test's clock moves 1 ms per timestamp handed out.
const TTL_MS: u64 = 40;
/// More attempts than a working store ever needs (a writer retries about
/// once per transfer); beyond it the test fails instead of spinning.
const MAX_ROUNDS: usize = 10_000;

/// A tiny xorshift generator: the test needs no crate for randomness.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn account(i: usize) -> Vec<u8> {
    format!("account-{i:02}").into_bytes()
}

fn amount(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("a balance is 8 bytes"))
}

/// A Percolator client: the store and a timestamp oracle shared by all.
#[derive(Clone)]
struct Client {
    store: Arc<TxnStore>,
    clock_ms: Arc<AtomicU64>,
}

/// What became of one attempt at a transfer.
enum Attempt {
    Committed,
    /// The client "died" after its prewrite or after committing the
    /// primary; someone else must settle the transaction.
    Abandoned,
    Retry,
}

impl Client {
    /// A fresh timestamp; each one is a millisecond after the last.
    fn ts(&self) -> u64 {
        compose(self.clock_ms.fetch_add(1, Ordering::SeqCst) + 1, 0)
    }

    /// Settles the transaction that holds `lock` if it is dead: asks its
    /// primary, then commits or rolls back the rest. A live one is left.
    fn settle(&self, lock: &LockInfo) {
        let status = self.store.kv_check_txn_status(&requests::check_txn_status(
            &lock.primary_lock,
            lock.lock_version,
            self.ts(),
        ));
        assert!(status.region_error.is_none(), "check txn status: {status:?}");
        if status.lock_ttl > 0 {
            std::thread::yield_now();
            return;
        }
        let req = requests::resolve_lock(lock.lock_version, status.commit_version);
        let resp = self.store.kv_resolve_lock(&req);
        assert!(resp.error.is_none() && resp.region_error.is_none(), "resolve {req:?}: {resp:?}");
    }

    /// Settles what a key error points at; whether it was a lock.
    fn settle_error(&self, error: &KeyError) -> bool {
        match &error.locked {
            Some(lock) => {
                self.settle(lock);
                true
            }
            None => false,
        }
    }

    /// The balances of `keys` at `ts`, or `None` after settling a lock.
    fn read(&self, keys: &[Vec<u8>], ts: u64) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        for key in keys {
            let resp = self.store.kv_get(&requests::get(key, ts));
            if let Some(error) = &resp.error {
                assert!(self.settle_error(error), "get {key:?}: {error:?}");
                return None;
            }
            assert!(!resp.not_found, "every account exists");
            out.push(amount(&resp.value));
        }
        Some(out)
    }

    fn transfer(&self, rng: &mut Rng) -> Attempt {
        let from = rng.below(ACCOUNTS as u64) as usize;
        let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
        let keys = [account(from), account(to)];
        let start = self.ts();
        let Some(balances) = self.read(&keys, start) else { return Attempt::Retry };
        let moved = rng.below(balances[0] + 1);
        let prewrite = PrewriteBuilder::new(&keys[0], start)
            .put(&keys[0], &(balances[0] - moved).to_be_bytes())
            .put(&keys[1], &(balances[1] + moved).to_be_bytes())
            .ttl(TTL_MS)
            .build();
        let resp = self.store.kv_prewrite(&prewrite);
        assert!(resp.region_error.is_none(), "prewrite: {resp:?}");
        if !resp.errors.is_empty() {
            for error in &resp.errors {
                self.settle_error(error);
            }
            let rollback = requests::batch_rollback(start, &[&keys[0], &keys[1]]);
            let resp = self.store.kv_batch_rollback(&rollback);
            assert!(resp.error.is_none(), "rolling back a failed prewrite: {resp:?}");
            return Attempt::Retry;
        }
        if rng.below(20) == 0 {
            return Attempt::Abandoned; // dies holding both locks
        }
        let commit_ts = self.ts();
        let primary = self.store.kv_commit(&requests::commit(start, commit_ts, &[&keys[0]]));
        if let Some(error) = primary.error {
            // Someone found the locks expired and rolled the transaction back.
            assert!(!error.abort.is_empty(), "committing the primary: {error:?}");
            return Attempt::Retry;
        }
        if rng.below(20) == 0 {
            return Attempt::Abandoned; // dies with the primary committed
        }
        let secondary = self.store.kv_commit(&requests::commit(start, commit_ts, &[&keys[1]]));
        assert!(
            secondary.error.is_none(),
            "a secondary after its primary committed: {secondary:?}"
        );
        Attempt::Committed
    }

    /// Every balance at a fresh timestamp, settling locks on the way.
    fn total(&self) -> u64 {
        for _ in 0..MAX_ROUNDS {
            let ts = self.ts();
            let resp = self.store.kv_scan(&requests::scan(b"account-", 100, ts));
            assert!(resp.region_error.is_none(), "scan: {resp:?}");
            let locked: Vec<&KeyError> =
                resp.pairs.iter().filter_map(|p| p.error.as_ref()).collect();
            if locked.is_empty() {
                assert_eq!(resp.pairs.len(), ACCOUNTS, "every account shows in a scan at {ts}");
                return resp.pairs.iter().map(|p| amount(&p.value)).sum();
            }
            for error in locked {
                assert!(self.settle_error(error), "scan pair error: {error:?}");
            }
        }
        panic!("{MAX_ROUNDS} scans in a row found locks: expired locks are not being settled");
    }
}

#[test]
fn concurrent_transfers_with_abandoned_transactions_keep_the_total() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = StandaloneConfig { sync_writes: false, ..StandaloneConfig::for_tests(dir.path()) };
    let storage = StandaloneStorage::open(&config).expect("open the storage");
    let client =
        Client { store: Arc::new(TxnStore::new(Arc::new(storage))), clock_ms: Arc::default() };

    let mut setup = PrewriteBuilder::new(&account(0), client.ts());
    for i in 0..ACCOUNTS {
        setup = setup.put(&account(i), &INITIAL.to_be_bytes());
    }
    let setup = setup.build();
    assert!(client.store.kv_prewrite(&setup).errors.is_empty());
    let keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(account).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let commit =
        client.store.kv_commit(&requests::commit(setup.start_version, client.ts(), &key_refs));
    assert!(commit.error.is_none(), "{commit:?}");
    let expected = INITIAL * ACCOUNTS as u64;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
                let (mut committed, mut abandoned, mut retries) = (0, 0, 0);
                while committed + abandoned < TRANSFERS_PER_WRITER {
                    assert!(
                        retries < MAX_ROUNDS,
                        "writer {w}: {retries} retries: locks are not being settled"
                    );
                    match client.transfer(&mut rng) {
                        Attempt::Committed => committed += 1,
                        Attempt::Abandoned => abandoned += 1,
                        Attempt::Retry => retries += 1,
                    }
                }
                (committed, abandoned, retries)
            })
        })
        .collect();
    let reader = {
        let client = client.clone();
        std::thread::spawn(move || {
            (0..40).map(|_| client.total()).filter(|&total| total != expected).collect::<Vec<_>>()
        })
    };

    let mut counts = (0, 0, 0);
    for w in writers {
        let (c, a, r) = w.join().expect("a writer thread");
        counts = (counts.0 + c, counts.1 + a, counts.2 + r);
    }
    let wrong_totals = reader.join().expect("the reader thread");
    assert!(wrong_totals.is_empty(), "scans saw totals {wrong_totals:?}, not {expected}");
    // Let every abandoned lock expire, then settle them all.
    client.clock_ms.fetch_add(10 * TTL_MS, Ordering::SeqCst);
    assert_eq!(client.total(), expected, "the total after every transaction settled");
    let leftover = client.store.kv_scan(&requests::scan(b"", 100, u64::MAX >> 1));
    assert!(leftover.pairs.iter().all(|p| p.error.is_none()), "no lock is left: {leftover:?}");
    eprintln!(
        "{} transfers committed, {} abandoned, {} retried; every total was {expected}",
        counts.0, counts.1, counts.2
    );
    assert!(counts.0 > 0, "some transfers must commit");
}
