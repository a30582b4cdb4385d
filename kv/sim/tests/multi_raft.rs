//! The reference's membership change and leader transfer, end to end in
//! the simulator (not graded; the lab 3b suite will be): a leader moves
//! to each store in turn, a peer is removed (its store destroys it, data
//! and all) and added back with a new id (it is created by the leader's
//! first message and catches up by snapshot).
//!
//! Commands go straight to the leader with `Cluster::call` (so the mock
//! scheduler is told to accept conf changes it did not ask for); the
//! graded suite (`project3b.rs`) goes through the scheduler's operators.

use tinykv_engine::Cf;
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{Peer, Region};
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, RaftRequestHeader,
    TransferLeaderRequest,
};
use tinykv_raftstore::error::response_error;
use tinykv_sim::{Cluster, ClusterConfig, FIRST_REGION, MS, SEC};

/// Region 1 as store `store` knows it.
fn region_on(c: &Cluster, store: u64) -> Option<Region> {
    c.store(store).and_then(|s| s.peer(FIRST_REGION)).map(|p| p.region().clone())
}

/// Sends an admin command to the leader of region 1 and checks its
/// answer.
fn admin(c: &mut Cluster, admin: AdminRequest) {
    let leader = c.leader().expect("a leader");
    let region = region_on(c, leader).expect("the leader's region");
    let req = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: FIRST_REGION,
            peer: region.peers.iter().find(|p| p.store_id == leader).copied(),
            region_epoch: region.region_epoch,
            term: 0,
        }),
        requests: Vec::new(),
        admin_request: Some(admin),
    };
    let resp = c.call(leader, req, SEC).expect("an answer from the leader");
    assert!(response_error(&resp.resp).is_none(), "seed {}: {:?}", c.seed(), resp.resp);
}

fn change_peer(c: &mut Cluster, change_type: ConfChangeType, peer: Peer) {
    admin(
        c,
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                change_type: change_type as i32,
                peer: Some(peer),
            }),
            ..Default::default()
        },
    );
}

fn stored(c: &Cluster, store: u64, key: &[u8]) -> Option<Vec<u8>> {
    c.kv_engine(store).get(Cf::Default, key).expect("read the kv engine")
}

#[test]
fn leadership_moves_to_each_store_in_turn() {
    for seed in 1..=5 {
        let mut c = Cluster::new(ClusterConfig::new(5, seed));
        c.must_put(b"k", b"v");
        for target in [2, 3, 4, 5, 1] {
            let peer = Peer { id: target, store_id: target };
            let transfer = AdminRequest {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderRequest { peer: Some(peer) }),
                ..Default::default()
            };
            if c.leader() != Some(target) {
                admin(&mut c, transfer);
            }
            c.run_for(500 * MS);
            assert_eq!(c.leader(), Some(target), "seed {seed}: leadership did not move");
            c.must_put(b"k", format!("led by {target}").as_bytes());
        }
    }
}

#[test]
fn a_removed_peer_is_destroyed_and_a_re_added_one_catches_up() {
    for seed in 1..=5 {
        let mut c = Cluster::new(ClusterConfig::new(3, seed));
        c.scheduler.allow_unscheduled_changes(true);
        c.must_put(b"before", b"1");
        c.run_for(200 * MS);
        let leader = c.leader().expect("a leader");
        let victim = if leader == 3 { 2 } else { 3 };
        let conf_ver =
            |c: &Cluster| region_on(c, leader).and_then(|r| r.region_epoch).map(|e| e.conf_ver);
        let before = conf_ver(&c).expect("an epoch");

        change_peer(&mut c, ConfChangeType::RemoveNode, Peer { id: victim, store_id: victim });
        c.run_for(SEC);
        assert!(region_on(&c, victim).is_none(), "seed {seed}: store {victim} still has a peer");
        assert_eq!(
            stored(&c, victim, b"before"),
            None,
            "seed {seed}: store {victim} kept its data"
        );
        assert_eq!(conf_ver(&c), Some(before + 1), "seed {seed}: conf_ver after the removal");
        c.must_put(b"while removed", b"2");

        let new_id = 10 + victim;
        change_peer(&mut c, ConfChangeType::AddNode, Peer { id: new_id, store_id: victim });
        c.run_for(3 * SEC);
        let region = region_on(&c, victim).expect("the re-added store has a peer again");
        let me = region.peers.iter().find(|p| p.store_id == victim).map(|p| p.id);
        assert_eq!(me, Some(new_id), "seed {seed}: the re-added peer's id");
        assert_eq!(conf_ver(&c), Some(before + 2), "seed {seed}: conf_ver after the re-add");
        assert_eq!(stored(&c, victim, b"before").as_deref(), Some(&b"1"[..]), "seed {seed}");
        assert_eq!(stored(&c, victim, b"while removed").as_deref(), Some(&b"2"[..]), "seed {seed}");
    }
}
