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

// ----- failing fast: a stuck cluster fails within a virtual-time budget ---------

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// Runs `body` on a thread of its own and returns the message it panicked
/// with. Fails if it returns instead, or if it is still running after a
/// minute of wall time: a wait on the cluster without a virtual-time
/// budget hangs there instead of failing.
fn panic_message_of(body: impl FnOnce() + Send + 'static) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let message = outcome.err().map(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        });
        let _ = tx.send(message);
    });
    let started = std::time::Instant::now();
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Some(message)) => {
            eprintln!("failed after {:?} of wall time: {message}", started.elapsed());
            message
        }
        Ok(None) => panic!("expected the stuck cluster to fail, it did not"),
        Err(_) => panic!(
            "the stuck cluster is still running after 60 s of wall time: every wait on the \
             cluster needs a budget of virtual time"
        ),
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "expected {part:?} in the failure message: {message}");
    }
}

#[test]
fn a_put_with_every_store_down_fails_saying_no_store_answered() {
    let message = panic_message_of(|| {
        let mut c = Cluster::new(ClusterConfig::new(3, 4));
        c.run_op(1, put("k", "v"), 10 * SEC);
        for id in c.store_ids() {
            c.kill_store(id);
        }
        c.run_op(1, put("k", "w"), 10 * SEC);
    });
    assert_contains(
        &message,
        &[
            "client 1's put",
            "did not succeed within 10000 ms of virtual time",
            "got no answer within the client's 500 ms timeout, 0 were refused",
            "no store answered",
            "(seed 4)",
        ],
    );
}

#[test]
fn a_put_with_every_message_lost_fails_saying_what_the_stores_answered() {
    let message = panic_message_of(|| {
        let mut cfg = ClusterConfig::new(3, 5);
        cfg.net.drop_rate = 1.0;
        let mut c = Cluster::new(cfg);
        c.run_op(1, put("k", "v"), 5 * SEC);
    });
    assert_contains(
        &message,
        &[
            "client 1's put",
            "did not succeed within 5000 ms of virtual time",
            "0 got no answer",
            "the last with \"",
            "leader",
            "never with success",
            "(seed 5)",
        ],
    );
}

#[test]
fn a_stuck_graded_test_names_its_seed_and_replay_command() {
    let message = panic_message_of(|| {
        tinykv_sim::suite::SimTest::new("stuck_cluster_example_2b", "2b", TMP).run(
            3,
            |cfg| cfg,
            |c| {
                for id in c.store_ids() {
                    c.kill_store(id);
                }
                c.run_op(1, put("k", "v"), 10 * SEC);
                Ok(())
            },
        );
    });
    assert_contains(
        &message,
        &[
            "stuck_cluster_example_2b failed (TINYKV_SEED=",
            "client 1's put",
            "did not succeed within 10000 ms of virtual time",
            "replay: make project2b TEST=stuck_cluster_example_2b SEED=",
            "report: ",
        ],
    );
}

#[test]
fn a_workload_on_a_dead_cluster_fails_saying_which_operation_did_not_finish() {
    use tinykv_sim::workload::{Workload, run};
    let mut c = Cluster::new(ClusterConfig::new(3, 6));
    for id in c.store_ids() {
        c.kill_store(id);
    }
    let mut w = Workload::new(1);
    w.rounds = 1;
    w.round_us = 200 * tinykv_sim::MS;
    let started = std::time::Instant::now();
    let err = run(&mut c, &w).expect_err("a workload on a dead cluster must fail");
    eprintln!("failed after {:?} of wall time: {err}", started.elapsed());
    assert_contains(
        &err,
        &[
            "client 1's ",
            "(its last operation of round 1) did not finish within 30 s of virtual time",
        ],
    );
}
