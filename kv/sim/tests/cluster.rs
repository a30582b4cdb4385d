//! Tests of the simulator itself (not graded).

use tinykv_sim::{Cluster, ClusterConfig, OpKind, OpResult, SEC};

fn put(key: &str, value: &str) -> OpKind {
    OpKind::Put { key: key.into(), value: value.into() }
}

fn get(key: &str) -> OpKind {
    OpKind::Get { key: key.into() }
}

#[test]
fn put_then_get_on_five_stores() {
    let mut c = Cluster::new(ClusterConfig::new(5, 1));
    assert_eq!(c.run_op(1, put("a", "1"), 10 * SEC), OpResult::Done);
    assert_eq!(c.run_op(1, get("a"), 10 * SEC), OpResult::Value(Some(b"1".to_vec())));
    assert_eq!(c.run_op(2, get("b"), 10 * SEC), OpResult::Value(None));
    assert!(c.leader().is_some());
    eprintln!("{} events, now {}us", c.events(), c.now());
}

#[test]
fn same_seed_same_digest() {
    let run = |seed| {
        let mut c = Cluster::new(ClusterConfig::new(5, seed));
        for i in 0..20 {
            c.run_op(1, put(&format!("k{i}"), "v"), 10 * SEC);
        }
        c.run_for(SEC);
        c.digest()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn crash_and_restart_keeps_acknowledged_writes() {
    let mut c = Cluster::new(ClusterConfig::new(3, 2));
    for i in 0..10 {
        c.run_op(1, put(&format!("k{i}"), &format!("v{i}")), 10 * SEC);
    }
    let lost = c.lost_batches();
    for id in c.store_ids() {
        c.crash_store(id);
    }
    assert!(c.lost_batches() > lost, "the crash lost no unsynced batch (applies are unsynced)");
    for id in c.store_ids() {
        c.restart_store(id);
    }
    for i in 0..10 {
        let got = c.run_op(1, get(&format!("k{i}")), 10 * SEC);
        assert_eq!(got, OpResult::Value(Some(format!("v{i}").into_bytes())));
    }
}

#[test]
fn generic_workloads_pass_on_the_reference() {
    use tinykv_sim::NetConfig;
    use tinykv_sim::workload::{Workload, run};
    for (name, clients, unreliable, partitions, crash) in [
        ("basic", 1, false, false, false),
        ("concurrent", 5, false, false, false),
        ("unreliable", 5, true, false, false),
        ("partitions", 5, false, true, false),
        ("persist-partition-unreliable", 5, true, true, true),
    ] {
        let mut cfg = ClusterConfig::new(5, 11);
        if unreliable {
            cfg.net = NetConfig::unreliable();
        }
        let mut c = Cluster::new(cfg);
        let mut w = Workload::new(clients);
        w.partitions = partitions;
        w.crash = crash;
        let t = std::time::Instant::now();
        let stats = run(&mut c, &w).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "{name}: {stats:?}, {} events, {} virtual ms in {:?}",
            c.events(),
            c.now() / 1000,
            t.elapsed()
        );
    }
}

#[test]
fn harness_calls_put_get_delete_scan() {
    let mut c = Cluster::new(ClusterConfig::new(5, 9));
    c.must_put(b"a", b"1");
    c.must_put(b"b", b"2");
    c.must_put(b"c", b"3");
    assert_eq!(c.must_get(b"b"), Some(b"2".to_vec()));
    c.must_delete(b"b");
    assert_eq!(c.must_get(b"b"), None);
    assert_eq!(c.scan(b"a", b"c"), vec![(b"a".to_vec(), b"1".to_vec())]);
    assert_eq!(c.scan(b"", b"").len(), 2);
    assert_eq!(c.scheduler.region_by_key(b"zz").map(|r| r.id), Some(tinykv_sim::FIRST_REGION));
    assert_eq!(c.leader(), c.leader_of(tinykv_sim::FIRST_REGION));
}
