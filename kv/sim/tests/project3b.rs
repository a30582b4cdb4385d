//! Lab 3b, part 1: membership change and leader transfer in the multi-raft
//! store, in simulated clusters (virtual time).
//!
//! Operators go through the mock scheduler, as in a real cluster: the test
//! asks it to add or remove a peer or move the leadership, the scheduler
//! answers the leader's next region heartbeat with the operator, and the
//! leader proposes it. The scheduler checks every heartbeat (epochs never
//! go back, one conf change in flight, no overlap); a breach fails the test.
//! A few tests send admin commands straight to a leader instead, to check
//! the store's answers.
//!
//! Replay a failure with the command it prints (`make project3b TEST=…
//! SEED=…`); the report is under `target/tmp/sim-reports/`.

use prost::Message as _;
use raft::eraftpb::{Message as RaftMsg, MessageType};
use tinykv_engine::{Cf, keys};
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{Peer, Region, RegionEpoch};
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, RaftRequestHeader,
};
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use tinykv_raftstore::error::response_error;
use tinykv_sim::history::OpKind;
use tinykv_sim::suite::SimTest;
use tinykv_sim::workload::{self, Workload};
use tinykv_sim::{Cluster, ClusterConfig, FIRST_REGION, MS, NetConfig, SEC};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");
const R: u64 = FIRST_REGION;

fn test(name: &'static str) -> SimTest {
    SimTest::new(name, "3b", TMP)
}

// ----- helpers -----------------------------------------------------------------

/// Region 1 as store `store` knows it (none if it has no peer).
fn region_on(c: &Cluster, store: u64) -> Option<Region> {
    c.store(store).and_then(|s| s.peer(R)).map(|p| p.region().clone())
}

fn epoch_on(c: &Cluster, store: u64) -> RegionEpoch {
    region_on(c, store).and_then(|r| r.region_epoch).unwrap_or_default()
}

/// The leader's store, after letting an election settle.
fn leader(c: &mut Cluster) -> Result<u64, String> {
    for _ in 0..100 {
        if let Some(l) = c.leader() {
            return Ok(l);
        }
        c.run_for(20 * MS);
    }
    Err(format!("region {R} has no leader after 2 s"))
}

/// The leader's region epoch.
fn leader_epoch(c: &mut Cluster) -> Result<RegionEpoch, String> {
    let l = leader(c)?;
    Ok(epoch_on(c, l))
}

/// The leader's region.
fn leader_region(c: &mut Cluster) -> Result<Option<Region>, String> {
    let l = leader(c)?;
    Ok(region_on(c, l))
}

/// Reads `key` straight from store `id`'s kv engine.
fn stored(c: &Cluster, id: u64, key: &str) -> Option<Vec<u8>> {
    c.kv_engine(id).get(Cf::Default, key.as_bytes()).expect("reading the kv engine")
}

/// Checks that store `id` holds `key` = `value` on disk.
fn expect_stored(c: &Cluster, id: u64, key: &str, value: &str) -> Result<(), String> {
    match stored(c, id, key) {
        Some(v) if v == value.as_bytes() => Ok(()),
        other => Err(format!(
            "store {id} should hold {key}={value} (region {R}), holds {:?}",
            other.map(|v| String::from_utf8_lossy(&v).into_owned())
        )),
    }
}

/// Checks that store `id` holds none of `keys` on disk (its peer was
/// removed: the data range is cleared).
fn expect_no_data(c: &Cluster, id: u64, keys: &[&str]) -> Result<(), String> {
    for key in keys {
        if stored(c, id, key).is_some() {
            return Err(format!(
                "store {id}'s peer of region {R} was removed, but its kv engine still holds \
                 {key:?}: a destroyed peer's data range must be cleared"
            ));
        }
    }
    Ok(())
}

/// The store's region state on disk.
fn region_state(c: &Cluster, id: u64) -> Option<RegionLocalState> {
    let raw = c.kv_engine(id).get(Cf::Meta, &keys::region_state_key(R)).expect("read");
    raw.map(|b| RegionLocalState::decode(b.as_slice()).expect("a region state decodes"))
}

fn change_peer_cmd(
    c: &Cluster,
    store: u64,
    epoch: RegionEpoch,
    change_type: ConfChangeType,
    peer: Peer,
) -> RaftCmdRequest {
    let region = region_on(c, store).unwrap_or_default();
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: R,
            peer: region.peers.iter().find(|p| p.store_id == store).copied(),
            region_epoch: Some(epoch),
            term: 0,
        }),
        requests: Vec::new(),
        admin_request: Some(AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                change_type: change_type as i32,
                peer: Some(peer),
            }),
            ..Default::default()
        }),
    }
}

/// A heartbeat from the leader's peer to `to` at the region's epoch now:
/// kept to be delivered late, after `to` is removed.
fn old_heartbeat(c: &Cluster, leader: u64, to: Peer) -> RaftMessage {
    let region = region_on(c, leader).expect("the leader's region");
    let from = region.peers.iter().find(|p| p.store_id == leader).copied();
    let term = c.store(leader).and_then(|s| s.peer(R)).map_or(0, |p| p.term());
    RaftMessage {
        region_id: R,
        from_peer: from,
        to_peer: Some(to),
        message: Some(RaftMsg {
            msg_type: MessageType::MsgHeartbeat as i32,
            to: to.id,
            from: from.map_or(0, |p| p.id),
            term,
            ..Default::default()
        }),
        region_epoch: region.region_epoch,
        start_key: region.start_key.clone(),
        end_key: region.end_key.clone(),
        ..Default::default()
    }
}

/// Writes `k`, removes a follower's peer (waiting until its store
/// destroyed it) and returns the follower's store with a heartbeat the
/// leader could have sent it just before: a stale message to deliver late.
fn remove_a_follower(c: &mut Cluster) -> Result<(u64, RaftMessage), String> {
    c.must_put(b"k", b"v");
    let l = leader(c)?;
    let victim = c.store_ids().into_iter().find(|&s| s != l).unwrap();
    let late = old_heartbeat(c, l, Peer { id: victim, store_id: victim });
    c.must_remove_peer(R, victim);
    c.must_none_peer(R, victim);
    Ok((victim, late))
}

fn put(key: &str, value: &str) -> OpKind {
    OpKind::Put { key: key.into(), value: value.into() }
}

// ----- scenarios ---------------------------------------------------------------

/// The leadership moves to each of five stores in turn, and the region
/// serves writes and reads after every move.
#[test]
fn transfer_leader_to_each_store_3b() {
    test("transfer_leader_to_each_store_3b").run(
        5,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"start");
            for target in [2, 3, 4, 5, 1, 3] {
                c.must_transfer_leader(R, target);
                if c.leader() != Some(target) {
                    return Err(format!(
                        "region {R}: after moving the leadership to store {target}, store {:?} \
                         leads",
                        c.leader()
                    ));
                }
                let value = format!("led by {target}");
                c.must_put(b"k", value.as_bytes());
                if c.must_get(b"k").as_deref() != Some(value.as_bytes()) {
                    return Err(format!("region {R}: a read after the move to {target} is stale"));
                }
            }
            // A TransferLeader sent straight to the leader (as tinykv-ctl
            // does) is answered at once: the admin response of its type,
            // with the leader's term.
            let leader = c.leader().ok_or("no leader")?;
            let term = c.store(leader).and_then(|s| s.peer(R)).map_or(0, |p| p.term());
            let mut req = c.command(leader, &OpKind::Get { key: b"k".to_vec() });
            req.requests.clear();
            let to = c.scheduler_peer(R, 2).ok_or("region has no peer on store 2")?;
            req.admin_request = Some(tinykv_proto::raft_cmdpb::AdminRequest {
                cmd_type: tinykv_proto::raft_cmdpb::AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(tinykv_proto::raft_cmdpb::TransferLeaderRequest {
                    peer: Some(to),
                }),
                ..Default::default()
            });
            let what = format!("a TransferLeader to store 2 sent to the leader, store {leader}");
            let resp = c.call(leader, req, SEC).ok_or_else(|| format!("{what}: no answer"))?;
            if let Some(e) = response_error(&resp.resp) {
                return Err(format!("{what}: expected success, got {e:?}"));
            }
            let admin = resp.resp.admin_response.as_ref();
            let header_term = resp.resp.header.as_ref().map_or(0, |h| h.current_term);
            if admin.map(|a| a.cmd_type())
                != Some(tinykv_proto::raft_cmdpb::AdminCmdType::TransferLeader)
                || admin.and_then(|a| a.transfer_leader.as_ref()).is_none()
                || header_term != term
            {
                return Err(format!(
                    "{what}: expected an admin response of type TransferLeader with its \
                     transfer_leader part, and the header's current_term {term}; got {:?} and \
                     header term {header_term}",
                    resp.resp.admin_response
                ));
            }
            Ok(())
        },
    );
}

/// Shrink a five-store region to one store, write, grow it back (the new
/// peers catch up by snapshot), then remove a store (its data goes) and
/// add it again with a new peer id. `conf_ver` rises by one per change.
#[test]
fn basic_conf_change_3b() {
    test("basic_conf_change_3b").run(
        5,
        |cfg| cfg,
        |c| {
            c.must_put(b"k1", b"v1");
            let mut conf_ver = leader_epoch(c)?.conf_ver;
            for store in 2..=5 {
                c.must_remove_peer(R, store);
                c.must_none_peer(R, store);
                let now = leader_epoch(c)?.conf_ver;
                if now != conf_ver + 1 {
                    return Err(format!(
                        "region {R}: removing store {store}'s peer should raise conf_ver from \
                         {conf_ver} to {}, the leader has {now}",
                        conf_ver + 1
                    ));
                }
                conf_ver = now;
                expect_no_data(c, store, &["k1"])?;
            }
            let alone = region_on(c, 1).ok_or("store 1 lost its peer")?;
            if alone.peers.len() != 1 {
                return Err(format!("region {R} should have one peer left: {:?}", alone.peers));
            }
            c.must_put(b"k2", b"v2");
            let mut new_ids = Vec::new();
            for store in 2..=5 {
                let peer = c.must_add_peer(R, store);
                if peer.id == store {
                    return Err(format!("store {store}'s new peer reuses the old id {}", peer.id));
                }
                c.must_have_peer(R, store, peer.id);
                new_ids.push(peer.id);
                expect_stored(c, store, "k1", "v1")?;
                expect_stored(c, store, "k2", "v2")?;
            }
            let now = leader_epoch(c)?.conf_ver;
            if now != conf_ver + 4 {
                return Err(format!(
                    "region {R}: four adds should take conf_ver from {conf_ver} to {}, it is {now}",
                    conf_ver + 4
                ));
            }
            c.must_remove_peer(R, 3);
            c.must_none_peer(R, 3);
            expect_no_data(c, 3, &["k1", "k2"])?;
            c.must_put(b"k3", b"v3");
            let again = c.must_add_peer(R, 3);
            if new_ids.contains(&again.id) || again.id == 3 {
                return Err(format!("store 3's third peer reuses id {}", again.id));
            }
            c.must_have_peer(R, 3, again.id);
            for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
                expect_stored(c, 3, k, v)?;
            }
            c.must_put(b"k4", b"v4");
            (c.must_get(b"k4").as_deref() == Some(&b"v4"[..]))
                .then_some(())
                .ok_or_else(|| "the last write cannot be read back".to_string())
        },
    );
}

/// Removing the leader's own peer: another store leads next, and the
/// removed store's peer and data are gone.
#[test]
fn remove_the_leader_3b() {
    test("remove_the_leader_3b").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            let old = leader(c)?;
            c.must_remove_peer(R, old);
            c.must_none_peer(R, old);
            let new = leader(c)?;
            if new == old {
                return Err(format!("store {old} was removed from region {R} but still leads"));
            }
            c.must_put(b"after", b"removal");
            expect_no_data(c, old, &["k"])?;
            expect_stored(c, new, "after", "removal")
        },
    );
}

/// In a two-peer region, removing the leader must leave the other peer
/// able to lead alone.
#[test]
fn remove_the_leader_of_a_two_peer_region_3b() {
    test("remove_the_leader_of_a_two_peer_region_3b").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            let l = leader(c)?;
            let third = c.store_ids().into_iter().find(|&s| s != l).unwrap();
            c.must_remove_peer(R, third);
            c.must_none_peer(R, third);
            let l = leader(c)?;
            let other = c.store_ids().into_iter().find(|&s| s != l && s != third).unwrap();
            c.ask_remove_peer(R, l).map_err(|e| format!("the scheduler refused: {e}"))?;
            // The leader hands over before it is removed: by the time its
            // peer is gone, the other peer leads. (A leader that applied
            // its own removal would leave the survivor a follower that may
            // never learn the removal committed.)
            let until = c.now() + 10 * SEC;
            while c.store(l).and_then(|s| s.peer(R)).is_some() {
                if c.now() > until || !c.step() {
                    return Err(format!("store {l}'s peer of region {R} was never removed"));
                }
            }
            if c.leader_of(R) != Some(other) {
                return Err(format!(
                    "store {l}'s peer was removed while store {other} did not lead region {R}: \
                     a leader asked to remove itself must first hand its leadership over \
                     (propose_change_peer's doc, lab 3b chapter \"Why a leader does not remove \
                     itself\")"
                ));
            }
            c.must_remove_peer(R, l);
            let survivor = leader(c)?;
            let region = region_on(c, survivor).ok_or("the survivor has no region")?;
            if region.peers.len() != 1 || survivor == l {
                return Err(format!(
                    "region {R} should be left with one peer on a store other than {l}: \
                     store {survivor} leads {:?}",
                    region.peers
                ));
            }
            c.must_put(b"alone", b"yes");
            expect_stored(c, survivor, "alone", "yes")
        },
    );
}

/// A message sent to a peer before it was removed, arriving after its
/// store destroyed it, does not bring it back.
#[test]
fn stale_message_does_not_recreate_a_destroyed_peer_3b() {
    test("stale_message_does_not_recreate_a_destroyed_peer_3b").run(
        3,
        |cfg| cfg,
        |c| {
            let (victim, late) = remove_a_follower(c)?;
            // The victim's answers go nowhere: nobody else can tell it to
            // go away, so only its tombstone keeps the peer dead.
            for s in c.store_ids() {
                c.net.cut_one_way(victim, s);
            }
            c.deliver_raw(victim, late);
            c.run_for(500 * MS);
            if c.store(victim).and_then(|s| s.peer(R)).is_some() {
                return Err(format!(
                    "a heartbeat from before the removal recreated store {victim}'s peer of \
                     region {R}: its tombstone's conf_ver must make old messages stale"
                ));
            }
            expect_no_data(c, victim, &["k"])
        },
    );
}

/// A tombstone is durable: after a crash and restart the removed peer stays
/// gone, old messages still do not revive it, and the store can be given a
/// new peer of the region.
#[test]
fn tombstone_survives_a_restart_3b() {
    test("tombstone_survives_a_restart_3b").run(
        3,
        |cfg| cfg,
        |c| {
            let (victim, late) = remove_a_follower(c)?;
            c.crash_store(victim);
            c.restart_store(victim);
            c.run_for(200 * MS);
            let state = region_state(c, victim).ok_or("the removed store has no region state")?;
            if state.state() != PeerState::Tombstone {
                return Err(format!(
                    "store {victim}'s region state of region {R} after a restart is {:?}, not \
                     Tombstone",
                    state.state()
                ));
            }
            if c.store(victim).and_then(|s| s.peer(R)).is_some() {
                return Err(format!("store {victim} restarted its removed peer of region {R}"));
            }
            // The victim's answers go nowhere: nobody else can tell it to
            // go away, so only its tombstone keeps the peer dead.
            for s in c.store_ids() {
                c.net.cut_one_way(victim, s);
            }
            c.deliver_raw(victim, late);
            c.run_for(300 * MS);
            if c.store(victim).and_then(|s| s.peer(R)).is_some() {
                return Err(format!(
                    "after a restart, an old message revived store {victim}'s peer"
                ));
            }
            expect_no_data(c, victim, &["k"])?;
            c.net.heal();
            c.must_put(b"k2", b"v2");
            let peer = c.must_add_peer(R, victim);
            c.must_have_peer(R, victim, peer.id);
            expect_stored(c, victim, "k", "v")?;
            expect_stored(c, victim, "k2", "v2")
        },
    );
}

/// Adding a peer that is a member already, and removing one that is not,
/// change neither the members nor `conf_ver`, on any store.
#[test]
fn duplicate_add_and_missing_remove_change_nothing_3b() {
    test("duplicate_add_and_missing_remove_change_nothing_3b").run(
        3,
        |cfg| cfg,
        |c| {
            c.must_put(b"k", b"v");
            let l = leader(c)?;
            let before = region_on(c, l).ok_or("no region")?;
            let epoch = before.region_epoch.unwrap_or_default();
            let member = *before.peers.iter().find(|p| p.store_id != l).unwrap();
            let stranger = Peer { id: 77, store_id: member.store_id };
            for (t, p) in
                [(ConfChangeType::AddNode, member), (ConfChangeType::RemoveNode, stranger)]
            {
                let req = change_peer_cmd(c, l, epoch, t, p);
                c.call(l, req, SEC).ok_or_else(|| format!("the leader never answered {t:?}"))?;
            }
            c.run_for(300 * MS);
            for s in c.store_ids() {
                let r = region_on(c, s).ok_or_else(|| format!("store {s} lost its peer"))?;
                if r.peers != before.peers || r.region_epoch != before.region_epoch {
                    return Err(format!(
                        "a duplicate AddNode of {member:?} and a RemoveNode of non-member \
                         {stranger:?} changed region {R} on store {s}: {:?} at {:?}, was {:?} \
                         at {:?}",
                        r.peers, r.region_epoch, before.peers, before.region_epoch
                    ));
                }
            }
            c.must_put(b"k", b"still works");
            // And a real change still goes through afterwards.
            c.must_remove_peer(R, member.store_id);
            c.must_none_peer(R, member.store_id);
            Ok(())
        },
    );
}

/// A conf change built on an old membership (`conf_ver`), and a command
/// with a wrong `version`, are refused with `epoch_not_match` carrying the
/// store's current region.
#[test]
fn stale_epoch_is_refused_3b() {
    test("stale_epoch_is_refused_3b").run(
        3,
        |cfg| cfg,
        |c| {
            let l = leader(c)?;
            let old = epoch_on(c, l);
            let victim = c.store_ids().into_iter().find(|&s| s != l).unwrap();
            c.must_remove_peer(R, victim);
            let l = leader(c)?;
            let current = region_on(c, l).ok_or("no region")?;
            let stale = change_peer_cmd(
                c,
                l,
                old,
                ConfChangeType::AddNode,
                Peer { id: 90, store_id: victim },
            );
            let resp = c.call(l, stale, SEC).ok_or("the leader never answered")?;
            let err = response_error(&resp.resp).ok_or_else(|| {
                format!("a ChangePeer at conf_ver {} was accepted at {:?}", old.conf_ver, current)
            })?;
            let Some(enm) = &err.epoch_not_match else {
                return Err(format!("a stale ChangePeer should get epoch_not_match, got {err:?}"));
            };
            if !enm.current_regions.contains(&current) {
                return Err(format!(
                    "epoch_not_match should carry the current region {current:?}, carries {:?}",
                    enm.current_regions
                ));
            }
            c.run_for(300 * MS);
            if region_on(c, l) != Some(current.clone()) {
                return Err(format!("the refused change altered region {R}"));
            }
            // A normal command with another version is refused too.
            let mut req = c.command(l, &put("k", "v"));
            if let Some(e) = req.header.as_mut().and_then(|h| h.region_epoch.as_mut()) {
                e.version += 1;
            }
            let resp = c.call(l, req, SEC).ok_or("the leader never answered the put")?;
            match response_error(&resp.resp) {
                Some(e) if e.epoch_not_match.is_some() => Ok(()),
                other => Err(format!("a put at a wrong version should fail, got {other:?}")),
            }
        },
    );
}

/// While one conf change is in the log, a second is refused; once the
/// first applies, `conf_ver` has risen by exactly one.
#[test]
fn one_conf_change_at_a_time_3b() {
    test("one_conf_change_at_a_time_3b").run(
        5,
        |cfg| cfg,
        |c| {
            c.scheduler.allow_unscheduled_changes(true);
            c.must_put(b"k", b"v");
            let l = leader(c)?;
            let epoch = epoch_on(c, l);
            let others: Vec<u64> = c.store_ids().into_iter().filter(|&s| s != l).collect();
            // For 60 ms (less than an election timeout) the leader's
            // messages do not get out: nothing commits.
            for &s in &others {
                c.net.cut_one_way(l, s);
            }
            let (a, b) = (others[0], others[1]);
            let remove = |c: &Cluster, id| {
                change_peer_cmd(c, l, epoch, ConfChangeType::RemoveNode, Peer { id, store_id: id })
            };
            let (first, second) = (remove(c, a), remove(c, b));
            let t1 = c.call_async(l, first);
            c.run_for(5 * MS);
            let t2 = c.call_async(l, second);
            c.run_for(50 * MS);
            if let Some(early) = c.answer(t1) {
                return Err(format!(
                    "the first change was answered although it cannot commit yet: {:?}",
                    early.resp
                ));
            }
            let refused = c.answer(t2).ok_or("the second change was not refused at once")?;
            if response_error(&refused.resp).is_none() {
                return Err("a second conf change was accepted while the first was pending".into());
            }
            c.net.heal();
            c.run_for(2 * SEC);
            let now = leader_epoch(c)?.conf_ver;
            if now != epoch.conf_ver + 1 {
                return Err(format!(
                    "region {R}: conf_ver should be {} after one change, it is {now}",
                    epoch.conf_ver + 1
                ));
            }
            let r = leader_region(c)?.unwrap_or_default();
            let ids: Vec<u64> = r.peers.iter().map(|p| p.id).collect();
            if ids.contains(&a) || !ids.contains(&b) {
                return Err(format!("the first change (remove {a}) should apply alone: {ids:?}"));
            }
            Ok(())
        },
    );
}

/// The same seed replays the same run with conf changes and transfers.
#[test]
fn same_seed_same_run_3b() {
    let t = test("same_seed_same_run_3b");
    let run = |seed: u64| {
        let mut c = Cluster::new(ClusterConfig::new(5, seed));
        let mut w = Workload::new(3);
        w.rounds = 1;
        w.round_us = 800 * MS;
        w.conf_changes = true;
        let stats = workload::run(&mut c, &w).expect("the workload");
        // A conf change still in flight could remove the member chosen.
        let until = c.now() + 20 * SEC;
        while c.scheduler.in_flight(R).is_some() {
            assert!(c.now() < until, "seed {seed}: a conf change stayed in flight for 20 s");
            c.run_for(10 * MS);
        }
        let member = c.scheduler.region(R).and_then(|r| r.peers.last()).map(|p| p.store_id);
        c.must_transfer_leader(R, member.expect("the region has a peer"));
        let regions: Vec<Option<Region>> =
            c.store_ids().iter().map(|&s| region_on(&c, s)).collect();
        (c.digest(), c.events(), stats.operators, regions)
    };
    let (a, b) = (run(t.seed), run(t.seed));
    assert!(a.2 > 0, "seed {}: no operator was taken; the test checks nothing", t.seed);
    assert_eq!(
        a, b,
        "two runs of seed {} differ (digest, events, operators, regions): something depends on \
         more than the seed. TINYKV_SEED={}",
        t.seed, t.seed
    );
    assert_ne!(a.0, run(t.seed + 1).0, "seeds {} and {} gave the same run", t.seed, t.seed + 1);
}

// ----- generic workloads -------------------------------------------------------

/// The faults of a generic test.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// 10% of messages lost, 1% duplicated.
    unreliable: bool,
    /// Every store crashes between rounds; stores lose power at random
    /// writes during rounds.
    crash: bool,
    /// Random partitions.
    partitions: bool,
    /// A tiny log GC limit: lagging peers catch up by snapshot.
    snapshots: bool,
}

/// The lab 2b workload on five stores while the scheduler is asked, at
/// random, to remove a peer, add one, or move the leadership; the whole
/// history is checked for linearizability.
fn generic(name: &'static str, clients: u64, f: Faults) {
    test(name).run(
        5,
        |mut cfg: ClusterConfig| {
            if f.unreliable {
                cfg.net = NetConfig::unreliable();
            }
            if f.snapshots {
                cfg.store.raft_log_gc_count_limit = 20;
                cfg.store.raft_log_gc_tick_interval = 1;
            }
            cfg
        },
        |c| {
            let mut w = Workload::new(clients);
            w.conf_changes = true;
            w.crash = f.crash;
            w.random_crashes = f.crash;
            w.partitions = f.partitions;
            if f.snapshots {
                w.max_log_gap = Some(200);
            }
            let stats = workload::run(c, &w)?;
            if stats.appends < 20 {
                return Err(format!("only {} appends got through: {stats:?}", stats.appends));
            }
            if stats.operators < 3 || c.scheduler.operators_done() < 2 {
                return Err(format!(
                    "too few operators were taken ({}) or seen done ({}): {stats:?}",
                    stats.operators,
                    c.scheduler.operators_done()
                ));
            }
            Ok(())
        },
    );
}

#[test]
fn conf_change_3b() {
    generic("conf_change_3b", 1, Faults::default());
}

#[test]
fn conf_change_many_clients_3b() {
    generic("conf_change_many_clients_3b", 20, Faults::default());
}

#[test]
fn conf_change_recover_3b() {
    generic("conf_change_recover_3b", 1, Faults { crash: true, ..Faults::default() });
}

#[test]
fn conf_change_recover_many_clients_3b() {
    generic("conf_change_recover_many_clients_3b", 20, Faults { crash: true, ..Faults::default() });
}

#[test]
fn conf_change_unreliable_3b() {
    generic("conf_change_unreliable_3b", 5, Faults { unreliable: true, ..Faults::default() });
}

#[test]
fn conf_change_unreliable_recover_3b() {
    let f = Faults { unreliable: true, crash: true, ..Faults::default() };
    generic("conf_change_unreliable_recover_3b", 5, f);
}

#[test]
fn conf_change_snapshot_unreliable_recover_3b() {
    let f = Faults { unreliable: true, crash: true, snapshots: true, ..Faults::default() };
    generic("conf_change_snapshot_unreliable_recover_3b", 5, f);
}

#[test]
fn conf_change_partitions_3b() {
    generic("conf_change_partitions_3b", 5, Faults { partitions: true, ..Faults::default() });
}
