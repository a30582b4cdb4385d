//! What a synced write costs: single-key writes per second through
//! `StandaloneStorage` on the fjall engine, synced (the default) and unsynced
//! (`--no-sync`).
//!
//! Run with `cargo bench -p tinykv-storage --bench write_durability`. Set
//! `WRITES=N` to change the number of writes per mode (default 2000).
//! Numbers depend on the disk's fsync latency; see
//! `docs/src/reference/configuration.md`.

use std::time::Instant;

use tinykv_storage::{Cf, Context, Modify, StandaloneConfig, StandaloneStorage, Storage};

fn main() {
    let writes: usize = std::env::var("WRITES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    for sync_writes in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = StandaloneConfig::new(dir.path());
        config.sync_writes = sync_writes;
        let storage = StandaloneStorage::open(&config).expect("open");
        let ctx = Context::default();
        let value = vec![b'v'; 100];
        let start = Instant::now();
        for i in 0..writes {
            let key = format!("key{i:08}");
            storage
                .write(&ctx, vec![Modify::put(Cf::Default, key.as_bytes(), &value)])
                .expect("write");
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:>8}: {writes} single-key writes of 100 B in {secs:.2} s = {:.0} writes/s, {:.1} us/write",
            if sync_writes { "synced" } else { "unsynced" },
            writes as f64 / secs,
            secs * 1e6 / writes as f64
        );
    }
}
