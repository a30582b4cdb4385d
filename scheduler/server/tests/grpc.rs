//! The `Scheduler` gRPC service end to end (workspace tests, not graded):
//! served in-process on a loopback port for the protocol, and the real
//! `tinykv-scheduler` binary for restarts (SIGTERM and SIGKILL).
//!
//! What each test checks:
//!
//! - `bootstrap_stores_ids_and_timestamps`: members, what works before
//!   the bootstrap, bootstrap once, stores, ids, the TSO stream (a bad
//!   count is answered with an error and the stream goes on);
//! - `region_heartbeats_carry_an_admin_operator`: an operator asked for by
//!   hand goes out on the heartbeat stream; malformed and stale heartbeats
//!   get no answer and do not end the stream; `GetOperator` follows it;
//! - `replica_checker_adds_a_peer_through_the_ticker`: the background
//!   ticker runs the replica checker, whose operator answers the next
//!   heartbeat of an under-replicated region;
//! - `bad_input_gets_a_clear_error_and_changes_nothing`: every refusal has
//!   its type and a message saying what was wrong, and the core is
//!   unchanged after them (no id consumed either);
//! - `regions_by_key_id_and_scan_after_heartbeats`: `GetRegion`,
//!   `GetPrevRegion`, `GetRegionByID` and `ScanRegions` (limits, end key);
//! - `add_operator_report_split_sizes_and_store_counts`: `AddOperator`
//!   checks its fields and starts a split whose step goes out on the
//!   heartbeat stream; `ReportSplit` checks the halves; `GetOperator` of a
//!   region without one is `OPERATOR_NOT_FOUND`; regions carry their
//!   approximate size and `GetStore` the last heartbeat and the counts;
//! - `clean_restarts_in_process_keep_everything`: three stop/reopen cycles
//!   of the same directory, with the clock going back;
//! - `real_process_survives_sigterm_and_sigkill`: six cycles of the binary,
//!   stopped alternately by SIGTERM (exit 0) and SIGKILL: the cluster id,
//!   stores, regions and the replica count survive, ids and timestamps
//!   strictly increase.

mod common;

use std::time::Duration;

use common::*;
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{self, StoreState};
use tinykv_proto::schedulerpb::*;
use tinykv_scheduler::id::compose;
use tinykv_scheduler::{AdminOp, ScheduleConfig};

/// Where the test clocks start (ms): any value works.
const START_MS: u64 = 1_000_000;

/// Allocates `n` ids through gRPC.
async fn alloc_ids(
    c: &mut scheduler_client::SchedulerClient<tonic::transport::Channel>,
    cluster_id: u64,
    n: usize,
) -> Vec<u64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = c.alloc_id(AllocIdRequest { header: header(cluster_id) }).await.unwrap();
        let r = r.into_inner();
        assert_ok(&r.header, "AllocID");
        ids.push(r.id);
    }
    ids
}

/// Bootstraps with store 1 and region 1 (the whole key space, one peer,
/// id 11), then puts stores 2 and 3.
async fn bootstrap_three_stores(
    c: &mut scheduler_client::SchedulerClient<tonic::transport::Channel>,
    cluster_id: u64,
) -> metapb::Region {
    let first = region(1, b"", b"", (1, 1), &[(11, 1)]);
    let request = BootstrapRequest {
        header: header(cluster_id),
        store: Some(store(1)),
        region: Some(first.clone()),
    };
    assert_ok(&c.bootstrap(request).await.unwrap().into_inner().header, "Bootstrap");
    for id in [2, 3] {
        let request = PutStoreRequest { header: header(cluster_id), store: Some(store(id)) };
        assert_ok(&c.put_store(request).await.unwrap().into_inner().header, "PutStore");
    }
    first
}

#[test]
fn bootstrap_stores_ids_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let s =
            TestScheduler::start(dir.path(), ScheduleConfig::default(), &clock, Ticker::Off).await;
        let mut c = s.client().await;
        let h = || header(s.cluster_id);

        let members = c.get_members(GetMembersRequest::default()).await.unwrap().into_inner();
        assert_ok(&members.header, "GetMembers");
        assert_eq!(members.header.as_ref().unwrap().cluster_id, s.cluster_id);
        assert_eq!(members.members.len(), 1, "one scheduler member");
        let leader = members.leader.expect("a leader");
        assert_eq!(leader.client_urls, vec![format!("http://{}", s.addr)]);

        // Before the bootstrap: ids and timestamps work, the rest does not.
        let r = c.is_bootstrapped(IsBootstrappedRequest { header: h() }).await.unwrap();
        assert!(!r.into_inner().bootstrapped);
        let r = c.get_all_stores(GetAllStoresRequest { header: h(), ..Default::default() });
        let r = r.await.unwrap().into_inner();
        assert_refused(&r.header, ErrorType::NotBootstrapped, "not bootstrapped", "GetAllStores");
        let r = c.put_store(PutStoreRequest { header: h(), store: Some(store(9)) });
        let r = r.await.unwrap().into_inner();
        assert_refused(&r.header, ErrorType::NotBootstrapped, "not bootstrapped", "PutStore");
        let ids = alloc_ids(&mut c, s.cluster_id, 3).await;
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must increase: {ids:?}");

        // Bootstrap with the ids just handed out, once.
        let (store_id, region_id, peer_id) = (ids[0], ids[1], ids[2]);
        let first = region(region_id, b"", b"", (1, 1), &[(peer_id, store_id)]);
        let request = BootstrapRequest {
            header: h(),
            store: Some(store(store_id)),
            region: Some(first.clone()),
        };
        assert_ok(&c.bootstrap(request.clone()).await.unwrap().into_inner().header, "Bootstrap");
        let again = c.bootstrap(request).await.unwrap().into_inner();
        assert_refused(
            &again.header,
            ErrorType::AlreadyBootstrapped,
            "already bootstrapped",
            "a second Bootstrap",
        );
        let r = c.is_bootstrapped(IsBootstrappedRequest { header: h() }).await.unwrap();
        assert!(r.into_inner().bootstrapped);

        // Two more stores, with fresh ids.
        let more = alloc_ids(&mut c, s.cluster_id, 2).await;
        assert!(more[0] > peer_id, "ids after the bootstrap go on: {more:?} after {ids:?}");
        for &id in &more {
            let r = c.put_store(PutStoreRequest { header: h(), store: Some(store(id)) });
            assert_ok(&r.await.unwrap().into_inner().header, "PutStore");
        }
        let all = c.get_all_stores(GetAllStoresRequest { header: h(), ..Default::default() });
        let all = all.await.unwrap().into_inner();
        assert_ok(&all.header, "GetAllStores");
        let mut stores: Vec<u64> = all.stores.iter().map(|s| s.id).collect();
        stores.sort_unstable();
        assert_eq!(stores, vec![store_id, more[0], more[1]]);
        assert!(all.stores.iter().all(|s| s.state() == StoreState::Up));
        let got = c.get_store(GetStoreRequest { header: h(), store_id: more[1] }).await.unwrap();
        let got = got.into_inner();
        assert_ok(&got.header, "GetStore");
        assert_eq!(got.store.unwrap().address, store(more[1]).address);

        // The TSO stream: one answer per request, strictly increasing, a
        // bad count answered with an error, the stream going on.
        let mut tso = tso_stream(&mut c).await;
        let mut last = 0;
        for (i, count) in [1u32, 5, 100, 1, 0, 3, 1 << 18, 1].into_iter().enumerate() {
            tso.send(TsoRequest { header: h(), count }).await;
            let answer = tso.next().await;
            if count == 0 || count >= 1 << 18 {
                assert_refused(&answer.header, ErrorType::Unknown, "tso count", "Tso count");
                continue;
            }
            assert_ok(&answer.header, "Tso");
            assert_eq!(answer.count, count);
            let ts = compose(&answer.timestamp.expect("a timestamp"));
            assert!(
                ts - u64::from(count) + 1 > last,
                "request {i}: the {count} timestamps up to {ts} must all be above {last}"
            );
            last = ts;
            clock.advance(u64::from(count % 2));
        }
        assert!(tso.finish().await.is_empty());
        drop(c);
        s.stop().await;
    });
}

#[test]
fn region_heartbeats_carry_an_admin_operator() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let config = ScheduleConfig { max_replicas: 1, ..ScheduleConfig::default() };
        let s = TestScheduler::start(dir.path(), config, &clock, Ticker::Off).await;
        let mut c = s.client().await;
        let id = s.cluster_id;
        let first = bootstrap_three_stores(&mut c, id).await;
        // No operator: the first heartbeat gets no answer. (Finishing the
        // stream waits until it is handled.)
        let mut stream = heartbeat_stream(&mut c).await;
        stream.send(heartbeat(id, &first, 1)).await;
        assert!(stream.finish().await.is_empty(), "no operator, no answer");
        let mut stream = heartbeat_stream(&mut c).await;
        let op = s
            .cluster
            .lock()
            .unwrap()
            .add_admin_operator(AdminOp::AddPeer { region_id: 1, store_id: 2 }, clock.now_ms())
            .expect("an admin operator");
        let tinykv_scheduler::operator::OpStep::AddPeer(new_peer) = op.steps[0] else {
            panic!("an add-peer step, got {op}")
        };
        let r = c.get_operator(GetOperatorRequest { header: header(id), region_id: 1 });
        let r = r.await.unwrap().into_inner();
        assert_ok(&r.header, "GetOperator");
        assert_eq!(r.status(), OperatorStatus::Running);
        assert_eq!((r.desc.as_slice(), r.kind.as_slice()), (&b"admin-add-peer"[..], &b"admin"[..]));

        // A malformed and a stale heartbeat: no answer, the stream goes on.
        let mut malformed = heartbeat(id, &first, 1);
        malformed.leader = Some(metapb::Peer { id: 99, store_id: 3 });
        stream.send(malformed).await;
        let stale = region(1, b"", b"", (0, 1), &[(11, 1)]);
        stream.send(heartbeat(id, &stale, 1)).await;
        // Another cluster's heartbeat: answered with the error.
        stream.send(heartbeat(id + 1, &first, 1)).await;
        let answer = stream.next().await;
        assert_refused(&answer.header, ErrorType::Unknown, "serves cluster", "a foreign heartbeat");
        assert_eq!(answer.region_id, 1);

        // The next good heartbeat is answered with the operator's step.
        stream.send(heartbeat(id, &first, 1)).await;
        let answer = stream.next().await;
        assert_ok(&answer.header, "the operator's answer");
        assert_eq!(answer.region_id, 1);
        assert_eq!(answer.region_epoch, first.region_epoch);
        assert_eq!(answer.target_peer, Some(first.peers[0]));
        let change = answer.change_peer.expect("a change_peer step");
        assert_eq!(change.change_type(), ConfChangeType::AddNode);
        assert_eq!(change.peer, Some(new_peer));
        assert_eq!(new_peer.store_id, 2);

        // The peer is added: the operator finishes, and nothing is answered.
        let grown = region(1, b"", b"", (2, 1), &[(11, 1), (new_peer.id, 2)]);
        stream.send(heartbeat(id, &grown, 1)).await;
        assert!(stream.finish().await.is_empty(), "a finished operator sends nothing");
        let r = c.get_operator(GetOperatorRequest { header: header(id), region_id: 1 });
        let r = r.await.unwrap().into_inner();
        assert_ok(&r.header, "GetOperator");
        assert_eq!(r.status(), OperatorStatus::Success);
        let r = c.get_region_by_id(GetRegionByIdRequest { header: header(id), region_id: 1 });
        let r = r.await.unwrap().into_inner();
        assert_eq!(r.region, Some(grown), "the scheduler knows the grown region");
        assert!(s.cluster.lock().unwrap().stale_heartbeats() >= 1, "the stale one is counted");
        drop(c);
        s.stop().await;
    });
}

#[test]
fn replica_checker_adds_a_peer_through_the_ticker() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let config = ScheduleConfig { schedule_interval_ms: 10, ..ScheduleConfig::default() };
        let s = TestScheduler::start(dir.path(), config, &clock, Ticker::On).await;
        let mut c = s.client().await;
        let id = s.cluster_id;
        let first = bootstrap_three_stores(&mut c, id).await;
        for store_id in 1..=3 {
            let stats = StoreStats {
                store_id,
                capacity: 1 << 30,
                available: 1 << 30,
                ..Default::default()
            };
            let r =
                c.store_heartbeat(StoreHeartbeatRequest { header: header(id), stats: Some(stats) });
            assert_ok(&r.await.unwrap().into_inner().header, "StoreHeartbeat");
        }
        let mut stream = heartbeat_stream(&mut c).await;
        stream.send(heartbeat(id, &first, 1)).await;
        // The ticker runs every 100 ms; the checker every 10 ms of the
        // test clock. Wait until it has made its operator.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            clock.advance(20);
            if s.cluster.lock().unwrap().operators().get(1).is_some() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no replica operator within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stream.send(heartbeat(id, &first, 1)).await;
        let answer = stream.next().await;
        assert_ok(&answer.header, "the replica checker's answer");
        let change = answer.change_peer.expect("a change_peer step");
        assert_eq!(change.change_type(), ConfChangeType::AddNode);
        let store_id = change.peer.expect("a peer").store_id;
        assert!([2, 3].contains(&store_id), "a peer on a store without one, got {store_id}");
        let r = c.get_operator(GetOperatorRequest { header: header(id), region_id: 1 });
        let r = r.await.unwrap().into_inner();
        assert_eq!((r.status(), r.kind.as_slice()), (OperatorStatus::Running, &b"replica"[..]));
        stream.finish().await;
        drop(c);
        s.stop().await;
    });
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let s =
            TestScheduler::start(dir.path(), ScheduleConfig::default(), &clock, Ticker::Off).await;
        let mut c = s.client().await;
        let id = s.cluster_id;
        let h = || header(id);
        let other = || header(id + 1);
        let first = bootstrap_three_stores(&mut c, id).await;
        let mut stream = heartbeat_stream(&mut c).await;
        stream.send(heartbeat(id, &first, 1)).await;
        assert!(stream.finish().await.is_empty());
        let before_basic = s.cluster.lock().unwrap().basic().clone();
        let before_meta = s.cluster.lock().unwrap().meta().copied();
        let last_id = alloc_ids(&mut c, id, 1).await[0];
        use ErrorType::{OperatorNotFound, RegionNotFound, Unknown};

        // Another cluster's requests.
        let r = c.alloc_id(AllocIdRequest { header: other() }).await.unwrap().into_inner();
        assert_refused(&r.header, Unknown, &format!("for cluster {}", id + 1), "AllocID");
        assert_eq!(r.id, 0);
        let r = c.is_bootstrapped(IsBootstrappedRequest { header: other() }).await.unwrap();
        assert_refused(&r.into_inner().header, Unknown, "serves cluster", "IsBootstrapped");
        let r = c.put_store(PutStoreRequest { header: other(), store: Some(store(7)) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "serves cluster",
            "PutStore",
        );
        let mut tso = tso_stream(&mut c).await;
        tso.send(TsoRequest { header: other(), count: 1 }).await;
        assert_refused(&tso.next().await.header, Unknown, "serves cluster", "Tso");
        tso.finish().await;

        // Missing messages, zero ids, bad fields.
        let r =
            c.bootstrap(BootstrapRequest { header: h(), store: None, region: Some(first.clone()) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "without a store",
            "Bootstrap",
        );
        let r = c.bootstrap(BootstrapRequest { header: h(), store: Some(store(1)), region: None });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "without a region",
            "Bootstrap",
        );
        let r = c.put_store(PutStoreRequest { header: h(), store: None });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "without a store",
            "PutStore",
        );
        let r = c.put_store(PutStoreRequest { header: h(), store: Some(store(0)) });
        assert_refused(&r.await.unwrap().into_inner().header, Unknown, "store id 0", "PutStore 0");
        let no_address = metapb::Store { id: 7, ..Default::default() };
        let r = c.put_store(PutStoreRequest { header: h(), store: Some(no_address) });
        assert_refused(&r.await.unwrap().into_inner().header, Unknown, "no address", "PutStore");
        let taken = metapb::Store { id: 7, address: store(2).address, ..Default::default() };
        let r = c.put_store(PutStoreRequest { header: h(), store: Some(taken) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "already used by store 2",
            "PutStore",
        );
        let r = c.get_store(GetStoreRequest { header: h(), store_id: 0 });
        assert_refused(&r.await.unwrap().into_inner().header, Unknown, "store 0", "GetStore 0");
        let r = c.get_store(GetStoreRequest { header: h(), store_id: 99 });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "store 99 is not known",
            "GetStore",
        );
        let r = c.store_heartbeat(StoreHeartbeatRequest { header: h(), stats: None });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "without stats",
            "StoreHeartbeat",
        );
        let zero = StoreStats::default();
        let r = c.store_heartbeat(StoreHeartbeatRequest { header: h(), stats: Some(zero) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "store 0",
            "StoreHeartbeat 0",
        );
        let unknown = StoreStats { store_id: 99, ..Default::default() };
        let r = c.store_heartbeat(StoreHeartbeatRequest { header: h(), stats: Some(unknown) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "not known",
            "StoreHeartbeat",
        );
        let r = c.get_region_by_id(GetRegionByIdRequest { header: h(), region_id: 0 });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "region 0",
            "GetRegionByID 0",
        );
        let r = c.get_region_by_id(GetRegionByIdRequest { header: h(), region_id: 99 });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            RegionNotFound,
            "region 99",
            "GetRegionByID",
        );
        let inverted = ScanRegionsRequest {
            header: h(),
            start_key: b"b".to_vec(),
            end_key: b"a".to_vec(),
            limit: 0,
        };
        let r = c.scan_regions(inverted).await.unwrap().into_inner();
        assert_refused(&r.header, Unknown, "inverted range", "ScanRegions");
        let r = c.ask_split(AskSplitRequest { header: h(), region: None });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "without a region",
            "AskSplit",
        );
        let unknown_region = region(99, b"", b"", (1, 1), &[(98, 1)]);
        let r = c.ask_split(AskSplitRequest { header: h(), region: Some(unknown_region) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            RegionNotFound,
            "region 99",
            "AskSplit",
        );
        let old = region(1, b"", b"", (0, 1), &[(11, 1)]);
        let r = c.ask_split(AskSplitRequest { header: h(), region: Some(old) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "stale",
            "AskSplit (old epoch)",
        );
        let r = c.put_cluster_config(PutClusterConfigRequest { header: h(), cluster: None });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "without a cluster",
            "PutClusterConfig",
        );
        let zero = metapb::Cluster { id, max_peer_count: 0 };
        let r = c.put_cluster_config(PutClusterConfigRequest { header: h(), cluster: Some(zero) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "at least 1",
            "PutClusterConfig 0",
        );
        let foreign = metapb::Cluster { id: id + 1, max_peer_count: 5 };
        let r =
            c.put_cluster_config(PutClusterConfigRequest { header: h(), cluster: Some(foreign) });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "but this is cluster",
            "PutClusterConfig",
        );
        let r = c.get_operator(GetOperatorRequest { header: h(), region_id: 0 });
        assert_refused(&r.await.unwrap().into_inner().header, Unknown, "region 0", "GetOperator 0");
        let r = c.get_operator(GetOperatorRequest { header: h(), region_id: 99 });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            RegionNotFound,
            "region 99",
            "GetOperator",
        );
        let r = c.get_operator(GetOperatorRequest { header: h(), region_id: 1 });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            OperatorNotFound,
            "no operator",
            "GetOperator",
        );
        let r = c.scatter_region(ScatterRegionRequest {
            header: h(),
            region_id: 1,
            ..Default::default()
        });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "not supported",
            "ScatterRegion",
        );
        let r = c.get_gc_safe_point(GetGcSafePointRequest { header: h() });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "not supported",
            "GetGCSafePoint",
        );
        let r = c.update_gc_safe_point(UpdateGcSafePointRequest { header: h(), safe_point: 5 });
        assert_refused(
            &r.await.unwrap().into_inner().header,
            Unknown,
            "not supported",
            "UpdateGCSafePoint",
        );

        // Heartbeats that are not region states: no answer, no change.
        let mut stream = heartbeat_stream(&mut c).await;
        let no_region = RegionHeartbeatRequest { header: h(), ..Default::default() };
        stream.send(no_region).await;
        let mut no_leader = heartbeat(id, &first, 1);
        no_leader.leader = None;
        stream.send(no_leader).await;
        let inverted = region(1, b"b", b"a", (1, 1), &[(11, 1)]);
        stream.send(heartbeat(id, &inverted, 1)).await;
        let twice = region(1, b"", b"", (1, 1), &[(11, 1), (12, 1)]);
        stream.send(heartbeat(id, &twice, 1)).await;
        assert!(stream.finish().await.is_empty(), "malformed heartbeats get no answer");

        // Nothing changed, and no id was used.
        assert_eq!(s.cluster.lock().unwrap().basic(), &before_basic, "stores and regions");
        assert_eq!(s.cluster.lock().unwrap().meta().copied(), before_meta, "cluster config");
        assert_eq!(alloc_ids(&mut c, id, 1).await[0], last_id + 1, "no id used");
        drop(c);
        s.stop().await;
    });
}

#[test]
fn regions_by_key_id_and_scan_after_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let s =
            TestScheduler::start(dir.path(), ScheduleConfig::default(), &clock, Ticker::Off).await;
        let mut c = s.client().await;
        let id = s.cluster_id;
        bootstrap_three_stores(&mut c, id).await;
        let peers = |base: u64| [(base, 1), (base + 1, 2), (base + 2, 3)];
        // Region 1 split three times: [, b) 1, [b, d) 2, [d, m) 3, [m, ) 4.
        let regions = [
            region(1, b"", b"b", (3, 4), &peers(11)),
            region(2, b"b", b"d", (3, 4), &peers(21)),
            region(3, b"d", b"m", (3, 3), &peers(31)),
            region(4, b"m", b"", (3, 2), &peers(41)),
        ];
        let mut stream = heartbeat_stream(&mut c).await;
        for (i, r) in regions.iter().enumerate() {
            stream.send(heartbeat(id, r, 1 + i as u64 % 3)).await;
        }
        assert!(stream.finish().await.is_empty());
        let leader_of = |i: usize| regions[i].peers[i % 3];

        let get = |key: &[u8]| GetRegionRequest { header: header(id), region_key: key.to_vec() };
        for (key, want) in [(&b""[..], 0), (b"a", 0), (b"b", 1), (b"c", 1), (b"d", 2), (b"zz", 3)] {
            let r = c.get_region(get(key)).await.unwrap().into_inner();
            assert_ok(&r.header, "GetRegion");
            assert_eq!(r.region.as_ref(), Some(&regions[want]), "the region of {key:?}");
            assert_eq!(r.leader, Some(leader_of(want)), "the leader of {key:?}");
            assert_eq!(r.slaves.len(), 2, "two followers");
        }
        let r = c.get_prev_region(get(b"c")).await.unwrap().into_inner();
        assert_ok(&r.header, "GetPrevRegion");
        assert_eq!(r.region.as_ref(), Some(&regions[0]));
        let r = c.get_prev_region(get(b"a")).await.unwrap().into_inner();
        assert_ok(&r.header, "GetPrevRegion of the first region");
        assert_eq!(r.region, None, "nothing comes before the first region");
        let r = c.get_region_by_id(GetRegionByIdRequest { header: header(id), region_id: 3 });
        let r = r.await.unwrap().into_inner();
        assert_eq!((r.region.as_ref(), r.leader), (Some(&regions[2]), Some(leader_of(2))));

        let scan = |start: &[u8], end: &[u8], limit: i32| ScanRegionsRequest {
            header: header(id),
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            limit,
        };
        for (start, end, limit, want) in [
            (&b""[..], &b""[..], 0, vec![0, 1, 2, 3]),
            (b"", b"", -1, vec![0, 1, 2, 3]),
            (b"c", b"", 2, vec![1, 2]),
            (b"", b"d", 0, vec![0, 1]),
            (b"e", b"", 10, vec![2, 3]),
        ] {
            let r = c.scan_regions(scan(start, end, limit)).await.unwrap().into_inner();
            assert_ok(&r.header, "ScanRegions");
            let expected: Vec<_> = want.iter().map(|&i| regions[i].clone()).collect();
            let leaders: Vec<_> = want.iter().map(|&i| leader_of(i)).collect();
            assert_eq!(r.regions, expected, "ScanRegions [{start:?}, {end:?}) limit {limit}");
            assert_eq!(r.leaders, leaders, "ScanRegions [{start:?}, {end:?}) leaders");
        }
        drop(c);
        s.stop().await;
    });
}

#[test]
fn add_operator_report_split_sizes_and_store_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let s =
            TestScheduler::start(dir.path(), ScheduleConfig::default(), &clock, Ticker::Off).await;
        let mut c = s.client().await;
        let id = s.cluster_id;
        bootstrap_three_stores(&mut c, id).await;
        let whole = region(1, b"", b"", (3, 1), &[(11, 1), (12, 2), (13, 3)]);
        let sized = |r: &metapb::Region, size: u64| RegionHeartbeatRequest {
            approximate_size: size,
            ..heartbeat(id, r, 1)
        };
        let mut stream = heartbeat_stream(&mut c).await;
        stream.send(sized(&whole, 4096)).await;
        let shb = StoreHeartbeatRequest {
            header: header(id),
            stats: Some(StoreStats { store_id: 2, ..Default::default() }),
        };
        assert_ok(&c.store_heartbeat(shb).await.unwrap().into_inner().header, "StoreHeartbeat");

        // GetOperator of a region that has had none: its own error type.
        let r = c.get_operator(GetOperatorRequest { header: header(id), region_id: 1 });
        let r = r.await.unwrap().into_inner();
        assert_refused(&r.header, ErrorType::OperatorNotFound, "no operator", "GetOperator");

        // AddOperator: every field the protocol constrains is checked.
        let add = |region_id: u64, kind: i32, store_id: u64, key: &[u8]| AddOperatorRequest {
            header: header(id),
            region_id,
            r#type: kind,
            store_id,
            split_key: key.to_vec(),
        };
        let split = OperatorType::Split as i32;
        let add_peer = OperatorType::AddPeer as i32;
        for (req, says) in [
            (add(0, split, 0, b"m"), "region 0"),
            (add(1, 9, 0, b"m"), "unknown type 9"),
            (add(1, add_peer, 0, b""), "store 0"),
            (add(1, add_peer, 2, b"m"), "only for SPLIT"),
            (add(1, split, 2, b"m"), "a store is only for"),
            (add(1, split, 0, b""), "not inside region 1"),
            (add(1, add_peer, 2, b""), "already has peer 12"),
        ] {
            let what = format!("AddOperator {req:?}");
            let r = c.add_operator(req).await.unwrap().into_inner();
            assert_refused(&r.header, ErrorType::Unknown, says, &what);
        }
        let r = c.add_operator(add(7, split, 0, b"m")).await.unwrap().into_inner();
        assert_refused(&r.header, ErrorType::RegionNotFound, "region 7", "AddOperator region 7");
        assert!(s.cluster.lock().unwrap().operators().get(1).is_none(), "nothing started");

        let r = c.add_operator(add(1, split, 0, b"m")).await.unwrap().into_inner();
        assert_ok(&r.header, "AddOperator SPLIT");
        assert_eq!(r.desc, "admin-split (admin) on region 1: split at \"m\"");
        let r = c.add_operator(add(1, OperatorType::TransferLeader as i32, 2, b""));
        let r = r.await.unwrap().into_inner();
        assert_refused(&r.header, ErrorType::Unknown, "is busy", "a second admin operator");
        stream.send(sized(&whole, 4096)).await;
        let answer = stream.next().await;
        assert_ok(&answer.header, "the split's answer");
        assert_eq!(answer.split_region.map(|s| s.split_key), Some(b"m".to_vec()));
        assert_eq!(answer.region_epoch, whole.region_epoch);

        // The halves arrive; ReportSplit checks that they fit.
        let left = region(1, b"", b"m", (3, 2), &[(11, 1), (12, 2), (13, 3)]);
        let right = region(2, b"m", b"", (3, 2), &[(21, 1), (22, 2), (23, 3)]);
        stream.send(sized(&left, 1000)).await;
        stream.send(sized(&right, 3000)).await;
        assert!(stream.finish().await.is_empty(), "the split is done: nothing more to ask");
        let r = c.get_operator(GetOperatorRequest { header: header(id), region_id: 1 });
        assert_eq!(r.await.unwrap().into_inner().status(), OperatorStatus::Success);
        let report = |l: &metapb::Region, r: &metapb::Region| ReportSplitRequest {
            header: header(id),
            left: Some(l.clone()),
            right: Some(r.clone()),
        };
        let r = c.report_split(report(&left, &right)).await.unwrap().into_inner();
        assert_ok(&r.header, "ReportSplit");
        let r = c.report_split(report(&right, &left)).await.unwrap().into_inner();
        assert_refused(&r.header, ErrorType::Unknown, "does not end where", "ReportSplit swapped");

        // Sizes and counts.
        let scan = ScanRegionsRequest { header: header(id), ..Default::default() };
        let r = c.scan_regions(scan).await.unwrap().into_inner();
        assert_eq!(r.approximate_sizes, [1000, 3000], "ScanRegions sizes");
        let get = GetRegionRequest { header: header(id), region_key: b"q".to_vec() };
        let r = c.get_region(get).await.unwrap().into_inner();
        assert_eq!((r.region.map(|r| r.id), r.approximate_size), (Some(2), 3000));
        let store = |store_id: u64| GetStoreRequest { header: header(id), store_id };
        let r = c.get_store(store(2)).await.unwrap().into_inner();
        assert_ok(&r.header, "GetStore");
        assert_eq!(r.last_heartbeat_unix_ms, START_MS, "store 2's heartbeat time");
        assert_eq!((r.region_count, r.leader_count, r.region_size), (2, 0, 4000));
        let r = c.get_store(store(1)).await.unwrap().into_inner();
        assert_eq!(r.last_heartbeat_unix_ms, 0, "store 1 sent no store heartbeat");
        assert_eq!((r.region_count, r.leader_count, r.region_size), (2, 2, 4000));
        drop(c);
        s.stop().await;
    });
}

#[test]
fn clean_restarts_in_process_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let clock = TestClock::at(START_MS);
        let config = ScheduleConfig::default();
        let s = TestScheduler::start(dir.path(), config.clone(), &clock, Ticker::On).await;
        let cluster_id = s.cluster_id;
        let mut c = s.client().await;
        bootstrap_three_stores(&mut c, cluster_id).await;
        let split =
            [region(1, b"", b"k", (1, 2), &[(11, 1)]), region(5, b"k", b"", (1, 2), &[(12, 1)])];
        let mut stream = heartbeat_stream(&mut c).await;
        for r in &split {
            stream.send(heartbeat(cluster_id, r, 1)).await;
        }
        stream.finish().await;
        let config_request = PutClusterConfigRequest {
            header: header(cluster_id),
            cluster: Some(metapb::Cluster { id: cluster_id, max_peer_count: 5 }),
        };
        let r = c.put_cluster_config(config_request).await.unwrap().into_inner();
        assert_ok(&r.header, "PutClusterConfig");
        let (mut max_id, mut max_ts) = (0, 0);
        let mut s = Some(s);
        for cycle in 0..3 {
            let running = s.take().unwrap();
            let mut c = running.client().await;
            let ids = alloc_ids(&mut c, cluster_id, 5).await;
            assert!(ids[0] > max_id, "cycle {cycle}: id {} after {max_id}", ids[0]);
            max_id = ids[4];
            let mut tso = tso_stream(&mut c).await;
            for _ in 0..3 {
                tso.send(TsoRequest { header: header(cluster_id), count: 10 }).await;
                let ts = compose(&tso.next().await.timestamp.expect("a timestamp"));
                assert!(ts - 9 > max_ts, "cycle {cycle}: timestamp {ts} after {max_ts}");
                max_ts = ts;
            }
            tso.finish().await;
            drop(c);
            running.stop().await;
            // The clock goes back: timestamps must still go on.
            clock.advance(0);
            let back = TestClock::at(START_MS - 1000 * (cycle + 1));
            let restarted =
                TestScheduler::start(dir.path(), config.clone(), &back, Ticker::On).await;
            assert_eq!(restarted.cluster_id, cluster_id, "the cluster id survives");
            let mut c = restarted.client().await;
            let r = c.get_all_stores(GetAllStoresRequest {
                header: header(cluster_id),
                ..Default::default()
            });
            assert_eq!(r.await.unwrap().into_inner().stores.len(), 3, "the stores survive");
            let scan = ScanRegionsRequest { header: header(cluster_id), ..Default::default() };
            let r = c.scan_regions(scan).await.unwrap().into_inner();
            assert_eq!(r.regions, split.to_vec(), "the regions survive");
            let r = c.get_cluster_config(GetClusterConfigRequest { header: header(cluster_id) });
            let r = r.await.unwrap().into_inner();
            assert_eq!(r.cluster.map(|m| m.max_peer_count), Some(5), "max_peer_count survives");
            drop(c);
            s = Some(restarted);
        }
        s.unwrap().stop().await;
    });
}

/// Ids and timestamps from a running binary, checked against the highest
/// seen before; returns the new highest.
async fn ids_and_timestamps_go_on(
    addr: &str,
    cluster_id: u64,
    (max_id, max_ts): (u64, u64),
    cycle: usize,
) -> (u64, u64) {
    let mut c = client(addr).await;
    let ids = alloc_ids(&mut c, cluster_id, 3).await;
    assert!(ids[0] > max_id, "cycle {cycle}: id {} after {max_id} (an id repeated)", ids[0]);
    let mut tso = tso_stream(&mut c).await;
    let mut last = max_ts;
    for count in [1, 50] {
        tso.send(TsoRequest { header: header(cluster_id), count }).await;
        let answer = tso.next().await;
        assert_ok(&answer.header, "Tso");
        let ts = compose(&answer.timestamp.expect("a timestamp"));
        assert!(ts - u64::from(count) + 1 > last, "cycle {cycle}: timestamp {ts} after {last}");
        last = ts;
    }
    tso.finish().await;
    (ids[2], last)
}

#[test]
fn real_process_survives_sigterm_and_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let data = dir.path().join("scheduler");
    let first = SchedulerProcess::start(&data, &["--max-replicas", "2"]);
    let (cluster_id, split) = rt.block_on(async {
        let mut c = client(&first.addr).await;
        let members = c.get_members(GetMembersRequest::default()).await.unwrap().into_inner();
        let cluster_id = members.header.expect("a header").cluster_id;
        assert_ne!(cluster_id, 0);
        bootstrap_three_stores(&mut c, cluster_id).await;
        let split = vec![
            region(1, b"", b"k", (1, 2), &[(11, 1)]),
            region(5, b"k", b"", (1, 2), &[(12, 1)]),
        ];
        let mut stream = heartbeat_stream(&mut c).await;
        for r in &split {
            stream.send(heartbeat(cluster_id, r, 1)).await;
        }
        stream.finish().await;
        (cluster_id, split)
    });
    let mut process = Some(first);
    let mut maxima = (0, 0);
    for cycle in 0..6 {
        let running = process.take().unwrap();
        maxima = rt.block_on(ids_and_timestamps_go_on(&running.addr, cluster_id, maxima, cycle));
        if cycle % 2 == 0 {
            running.kill();
        } else {
            let log = running.log_text();
            let status = running.terminate();
            assert!(status.success(), "cycle {cycle}: SIGTERM must exit 0, got {status}:\n{log}");
        }
        let restarted = SchedulerProcess::start(&data, &[]);
        rt.block_on(async {
            let mut c = client(&restarted.addr).await;
            let members = c.get_members(GetMembersRequest::default()).await.unwrap().into_inner();
            assert_eq!(members.header.unwrap().cluster_id, cluster_id, "cycle {cycle}: cluster id");
            let r = c.get_all_stores(GetAllStoresRequest {
                header: header(cluster_id),
                ..Default::default()
            });
            let r = r.await.unwrap().into_inner();
            assert_ok(&r.header, "GetAllStores after a restart");
            assert_eq!(r.stores.len(), 3, "cycle {cycle}: the stores survive");
            let scan = ScanRegionsRequest { header: header(cluster_id), ..Default::default() };
            let r = c.scan_regions(scan).await.unwrap().into_inner();
            assert_eq!(r.regions, split, "cycle {cycle}: the regions survive");
            let r = c.get_cluster_config(GetClusterConfigRequest { header: header(cluster_id) });
            let r = r.await.unwrap().into_inner();
            assert_eq!(
                r.cluster.map(|m| m.max_peer_count),
                Some(2),
                "cycle {cycle}: --max-replicas 2 of the first start is kept"
            );
        });
        process = Some(restarted);
    }
    let last = process.take().unwrap();
    let status = last.terminate();
    assert!(status.success(), "the last SIGTERM must exit 0, got {status}");
}
