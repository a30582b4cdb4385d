//! How fast the simulator runs the lab 2b workloads (a benchmark, not a
//! test: it asserts nothing about time).
//!
//! ```text
//! cargo bench -p tinykv-sim --bench sim_speed [-- SEEDS]
//! ```
//!
//! For each workload it runs SEEDS seeds (default 20) and reports the real
//! time per seed, the virtual seconds simulated per real second, events per
//! real second, and seeds per hour of that one test under `--seeds`.

use std::time::Instant;

use tinykv_sim::workload::{self, Workload};
use tinykv_sim::{Cluster, ClusterConfig, NetConfig, SEC};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, as a one-seed smoke test.
    let bench = std::env::args().any(|a| a == "--bench");
    let seeds: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(if bench { 20 } else { 1 });
    println!("{seeds} seeds per workload, one thread");
    println!(
        "{:<34} {:>10} {:>14} {:>12} {:>12}",
        "workload", "ms/seed", "virtual s/s", "events/s", "seeds/hour"
    );
    for (name, clients, unreliable, partitions, crash) in [
        ("basic (1 client)", 1, false, false, false),
        ("concurrent (5 clients)", 5, false, false, false),
        ("many partitions, many clients", 5, false, true, false),
        ("persist partition unreliable", 5, true, true, true),
    ] {
        let (mut virt, mut events) = (0u64, 0u64);
        let t = Instant::now();
        for seed in 1..=seeds {
            let mut cfg = ClusterConfig::new(5, seed);
            if unreliable {
                cfg.net = NetConfig::unreliable();
            }
            let mut c = Cluster::new(cfg);
            let mut w = Workload::new(clients);
            w.partitions = partitions;
            w.crash = crash;
            workload::run(&mut c, &w).unwrap_or_else(|e| panic!("{name}, seed {seed}: {e}"));
            virt += c.now();
            events += c.events();
        }
        let real = t.elapsed().as_secs_f64();
        println!(
            "{:<34} {:>10.1} {:>14.1} {:>12.0} {:>12.0}",
            name,
            real * 1000.0 / seeds as f64,
            virt as f64 / SEC as f64 / real,
            events as f64 / real,
            seeds as f64 / real * 3600.0
        );
    }
}
