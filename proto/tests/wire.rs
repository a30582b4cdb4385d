//! Wire-format tests: round trips, and exact encodings that pin the field
//! numbers to TinyKV's (a wrong number changes the tag byte).

use prost::Message as _;
use tinykv_proto::{eraftpb, kvrpcpb, metapb, raft_cmdpb, raft_serverpb, schedulerpb};

fn roundtrip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decode");
    assert_eq!(&back, msg);
}

#[test]
fn roundtrip_raft_message_with_entries() {
    let msg = eraftpb::Message {
        msg_type: eraftpb::MessageType::MsgAppend as i32,
        to: 2,
        from: 1,
        term: 5,
        log_term: 4,
        index: 10,
        entries: vec![
            eraftpb::Entry {
                entry_type: eraftpb::EntryType::EntryNormal as i32,
                term: 5,
                index: 11,
                data: b"hello".to_vec(),
            },
            eraftpb::Entry {
                entry_type: eraftpb::EntryType::EntryConfChange as i32,
                term: 5,
                index: 12,
                data: eraftpb::ConfChange {
                    change_type: eraftpb::ConfChangeType::AddNode as i32,
                    node_id: 3,
                    context: vec![],
                }
                .encode_to_vec(),
            },
        ],
        commit: 9,
        snapshot: None,
        reject: false,
    };
    roundtrip(&msg);
}

#[test]
fn roundtrip_raw_put() {
    roundtrip(&kvrpcpb::RawPutRequest {
        context: Some(kvrpcpb::Context {
            region_id: 1,
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 2 }),
            peer: Some(metapb::Peer { id: 3, store_id: 4 }),
            term: 6,
        }),
        key: b"key".to_vec(),
        value: b"value".to_vec(),
        cf: "default".into(),
    });
}

#[test]
fn roundtrip_raft_cmd_request() {
    roundtrip(&raft_cmdpb::RaftCmdRequest {
        header: Some(raft_cmdpb::RaftRequestHeader {
            region_id: 1,
            peer: Some(metapb::Peer { id: 1, store_id: 1 }),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
            term: 3,
        }),
        requests: vec![raft_cmdpb::Request {
            cmd_type: raft_cmdpb::CmdType::Put as i32,
            put: Some(raft_cmdpb::PutRequest {
                cf: "default".into(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: Some(raft_cmdpb::AdminRequest {
            cmd_type: raft_cmdpb::AdminCmdType::Split as i32,
            split: Some(raft_cmdpb::SplitRequest {
                split_key: b"m".to_vec(),
                new_region_id: 2,
                new_peer_ids: vec![5, 6, 7],
            }),
            ..Default::default()
        }),
    });
}

#[test]
fn raw_get_request_bytes() {
    let req = kvrpcpb::RawGetRequest { key: b"k".to_vec(), cf: "c".into(), ..Default::default() };
    // key = 2 (LEN): tag 0x12; cf = 3 (LEN): tag 0x1a.
    assert_eq!(req.encode_to_vec(), [0x12, 1, b'k', 0x1a, 1, b'c']);

    let put = kvrpcpb::RawPutRequest { cf: "c".into(), ..Default::default() };
    // RawPutRequest.cf = 4: tag 0x22.
    assert_eq!(put.encode_to_vec(), [0x22, 1, b'c']);

    let ctx = kvrpcpb::Context { term: 7, ..Default::default() };
    // Context.term = 5 (4 is unused): tag 0x28.
    assert_eq!(ctx.encode_to_vec(), [0x28, 7]);
}

#[test]
fn entry_bytes() {
    let e = eraftpb::Entry {
        entry_type: eraftpb::EntryType::EntryConfChange as i32,
        term: 2,
        index: 3,
        data: b"d".to_vec(),
    };
    assert_eq!(e.encode_to_vec(), [0x08, 1, 0x10, 2, 0x18, 3, 0x22, 1, b'd']);
}

#[test]
fn message_bytes() {
    let m = eraftpb::Message {
        msg_type: eraftpb::MessageType::MsgHeartbeatResponse as i32,
        to: 2,
        from: 1,
        commit: 5,
        snapshot: Some(eraftpb::Snapshot { data: b"s".to_vec(), metadata: None }),
        reject: true,
        ..Default::default()
    };
    assert_eq!(
        m.encode_to_vec(),
        [
            0x08, 9, // msg_type = 1
            0x10, 2, // to = 2
            0x18, 1, // from = 3
            0x40, 5, // commit = 8
            0x4a, 3, 0x0a, 1, b's', // snapshot = 9 { data = 1 }
            0x50, 1, // reject = 10
        ]
    );

    let with_entry = eraftpb::Message {
        log_term: 4,
        index: 6,
        entries: vec![eraftpb::Entry::default()],
        ..Default::default()
    };
    // log_term = 5, index = 6, entries = 7 (empty entry).
    assert_eq!(with_entry.encode_to_vec(), [0x28, 4, 0x30, 6, 0x3a, 0]);
}

#[test]
fn enum_values() {
    use eraftpb::MessageType as T;
    assert_eq!(T::MsgHeartbeatResponse as i32, 9);
    assert_eq!(T::MsgTransferLeader as i32, 11);
    assert_eq!(T::MsgTimeoutNow as i32, 12);
    assert_eq!(raft_cmdpb::CmdType::Put as i32, 3);
    assert_eq!(raft_cmdpb::AdminCmdType::Split as i32, 10);
    assert_eq!(raft_serverpb::PeerState::Tombstone as i32, 2);
    assert_eq!(kvrpcpb::Op::Rollback as i32, 2);
    assert_eq!(schedulerpb::ErrorType::RegionNotFound as i32, 6);
}

#[test]
fn region_bytes() {
    let r = metapb::Region {
        id: 1,
        start_key: b"a".to_vec(),
        end_key: b"b".to_vec(),
        region_epoch: Some(metapb::RegionEpoch { conf_ver: 2, version: 3 }),
        peers: vec![metapb::Peer { id: 4, store_id: 5 }],
    };
    assert_eq!(
        r.encode_to_vec(),
        [
            0x08, 1, // id = 1
            0x12, 1, b'a', // start_key = 2
            0x1a, 1, b'b', // end_key = 3
            0x22, 4, 0x08, 2, 0x10, 3, // region_epoch = 4 { conf_ver = 1, version = 2 }
            0x2a, 4, 0x08, 4, 0x10, 5, // peers = 5 { id = 1, store_id = 2 }
        ]
    );
}

#[test]
fn high_numbered_fields() {
    let msg = raft_serverpb::RaftMessage { end_key: b"z".to_vec(), ..Default::default() };
    // end_key = 8: tag 0x42.
    assert_eq!(msg.encode_to_vec(), [0x42, 1, b'z']);

    let hb = schedulerpb::RegionHeartbeatRequest { approximate_size: 1, ..Default::default() };
    // approximate_size = 10: tag 0x50.
    assert_eq!(hb.encode_to_vec(), [0x50, 1]);

    let stats = schedulerpb::StoreStats {
        op_latencies: vec![schedulerpb::RecordPair::default()],
        ..Default::default()
    };
    // op_latencies = 19 (LEN): tag 19 << 3 | 2 = 154 = varint [0x9a, 0x01].
    assert_eq!(stats.encode_to_vec(), [0x9a, 0x01, 0]);
}

#[cfg(feature = "grpc")]
#[test]
fn grpc_types_exist() {
    use tinykv_proto::schedulerpb::scheduler_client::SchedulerClient;
    use tinykv_proto::schedulerpb::scheduler_server::{Scheduler, SchedulerServer};
    use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
    use tinykv_proto::tinykvpb::tiny_kv_server::{TinyKv, TinyKvServer};

    fn server_of<S: TinyKv>(s: S) -> TinyKvServer<S> {
        TinyKvServer::new(s)
    }
    // Generic only: naming the types is the check.
    fn _scheduler_server_of<S: Scheduler>(s: S) -> SchedulerServer<S> {
        SchedulerServer::new(s)
    }
    let _ = server_of::<NeverKv>;
    let _ = std::mem::size_of::<TinyKvClient<tonic::transport::Channel>>();
    let _ = std::mem::size_of::<SchedulerClient<tonic::transport::Channel>>();

    // An uninhabited service: proves the trait's method set, never runs.
    enum NeverKv {}
    macro_rules! never_impl {
        ($($m:ident($req:ty) -> $resp:ty;)*) => {
            #[tonic::async_trait]
            impl TinyKv for NeverKv {$(
                async fn $m(
                    &self,
                    _: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    match *self {}
                }
            )*}
        };
    }
    never_impl! {
        kv_get(kvrpcpb::GetRequest) -> kvrpcpb::GetResponse;
        kv_scan(kvrpcpb::ScanRequest) -> kvrpcpb::ScanResponse;
        kv_prewrite(kvrpcpb::PrewriteRequest) -> kvrpcpb::PrewriteResponse;
        kv_commit(kvrpcpb::CommitRequest) -> kvrpcpb::CommitResponse;
        kv_check_txn_status(kvrpcpb::CheckTxnStatusRequest) -> kvrpcpb::CheckTxnStatusResponse;
        kv_batch_rollback(kvrpcpb::BatchRollbackRequest) -> kvrpcpb::BatchRollbackResponse;
        kv_resolve_lock(kvrpcpb::ResolveLockRequest) -> kvrpcpb::ResolveLockResponse;
        raw_get(kvrpcpb::RawGetRequest) -> kvrpcpb::RawGetResponse;
        raw_put(kvrpcpb::RawPutRequest) -> kvrpcpb::RawPutResponse;
        raw_delete(kvrpcpb::RawDeleteRequest) -> kvrpcpb::RawDeleteResponse;
        raw_scan(kvrpcpb::RawScanRequest) -> kvrpcpb::RawScanResponse;
        raft(tonic::Streaming<raft_serverpb::RaftMessage>) -> raft_serverpb::Done;
        snapshot(tonic::Streaming<raft_serverpb::SnapshotChunk>) -> raft_serverpb::Done;
        coprocessor(tinykv_proto::coprocessor::Request) -> tinykv_proto::coprocessor::Response;
    }
}
