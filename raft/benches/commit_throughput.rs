//! Committed proposals per second on a 3-node cluster in memory, driven
//! through `RawNode` with the full Ready loop (persist to `MemoryStorage`,
//! deliver messages, apply, advance) on one thread.
//!
//! Run with `cargo bench -p raft --bench commit_throughput`. `PROPOSALS=N`
//! changes the number of proposals (default 50 000), `BATCH=B` how many are
//! proposed before the cluster runs (default 64).

use std::collections::VecDeque;
use std::time::Instant;

use raft::eraftpb::{EntryType, Message};
use raft::{Config, MemoryStorage, RawNode, StateRole};

struct Node {
    raw: RawNode<MemoryStorage>,
    storage: MemoryStorage,
    applied: u64,
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs every node's Ready loop until no node has anything left.
/// Counts the normal (non-empty) entries each node applies.
fn run(nodes: &mut [Node], inbox: &mut VecDeque<Message>) {
    loop {
        let mut progress = false;
        for node in nodes.iter_mut() {
            if !node.raw.has_ready() {
                continue;
            }
            progress = true;
            let rd = node.raw.ready();
            if let Some(hs) = &rd.hard_state {
                node.storage.set_hard_state(*hs);
            }
            node.storage.append(&rd.entries).expect("append");
            inbox.extend(rd.messages.iter().cloned());
            for entry in &rd.committed_entries {
                if entry.entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                    node.applied += 1;
                }
            }
            node.raw.advance(rd);
        }
        while let Some(m) = inbox.pop_front() {
            progress = true;
            let to = m.to as usize - 1;
            let _ = nodes[to].raw.step(m);
        }
        if !progress {
            return;
        }
    }
}

fn main() {
    let proposals = env("PROPOSALS", 50_000);
    let batch = env("BATCH", 64).max(1);
    let peers = vec![1, 2, 3];
    let mut nodes: Vec<Node> = peers
        .iter()
        .map(|&id| {
            let storage = MemoryStorage::new_with_conf_state(peers.clone());
            let config = Config { seed: 1, ..Config::new(id, peers.clone()) };
            let raw = RawNode::new(&config, storage.clone()).expect("RawNode::new");
            Node { raw, storage, applied: 0 }
        })
        .collect();
    let mut inbox = VecDeque::new();
    nodes[0].raw.campaign().expect("campaign");
    run(&mut nodes, &mut inbox);
    assert_eq!(nodes[0].raw.raft().state, StateRole::Leader, "node 1 must lead");

    let payload = vec![b'x'; 64];
    let start = Instant::now();
    let mut proposed = 0;
    while proposed < proposals {
        for _ in 0..batch.min(proposals - proposed) {
            nodes[0].raw.propose(payload.clone()).expect("propose");
            proposed += 1;
        }
        run(&mut nodes, &mut inbox);
    }
    let secs = start.elapsed().as_secs_f64();
    // Followers learn the last commit index from the next heartbeat.
    nodes[0].raw.tick();
    run(&mut nodes, &mut inbox);
    for node in &nodes {
        assert_eq!(node.applied as usize, proposals, "every node applies every proposal");
    }
    println!(
        "3 nodes, {proposals} proposals of 64 B in batches of {batch}: {secs:.2} s = {:.0} committed proposals/s",
        proposals as f64 / secs
    );
}
