//! The TinyKV protocol: `prost` messages generated from the `.proto` files
//! in `proto/`, with TinyKV's package names, message names and field
//! numbers, so tools that speak the TinyKV protocol interoperate.
//!
//! The code is generated at build time by `protox` and `tonic-prost-build`;
//! no system `protoc` is needed. Each protobuf package is a module of this
//! crate, and cross-package references (`super::metapb::Peer`, ...) resolve
//! between them.
//!
//! # Features
//!
//! - `grpc` (off by default): also generates the `tonic` clients and servers,
//!   `tinykvpb::tiny_kv_client::TinyKvClient` /
//!   `tinykvpb::tiny_kv_server::{TinyKv, TinyKvServer}` and
//!   `schedulerpb::scheduler_client::SchedulerClient` /
//!   `schedulerpb::scheduler_server::{Scheduler, SchedulerServer}`.
//!   Without it the crate only depends on `prost`.
//!
//! # Example
//!
//! ```
//! use prost::Message as _;
//! use tinykv_proto::eraftpb::{Entry, EntryType, Message, MessageType};
//!
//! let msg = Message {
//!     msg_type: MessageType::MsgAppend as i32,
//!     to: 2,
//!     from: 1,
//!     term: 3,
//!     entries: vec![Entry {
//!         entry_type: EntryType::EntryNormal as i32,
//!         term: 3,
//!         index: 7,
//!         data: b"put k v".to_vec(),
//!     }],
//!     ..Default::default()
//! };
//! let bytes = msg.encode_to_vec();
//! let back = Message::decode(bytes.as_slice()).unwrap();
//! assert_eq!(back, msg);
//! assert_eq!(back.msg_type(), MessageType::MsgAppend);
//! ```
#![forbid(unsafe_code)]

/// Declares one public module per protobuf package, holding the generated
/// code. Generated code is exempt from the workspace lints.
macro_rules! proto_modules {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        $(#[$attr])*
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            missing_debug_implementations,
            rust_2018_idioms,
            unreachable_pub
        )]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        }
    )*};
}

proto_modules! {
    /// Raft core: entries, messages, snapshots, hard state, conf changes.
    eraftpb,
    /// Cluster metadata: stores, regions, peers, epochs.
    metapb,
    /// Region-level errors returned by a store.
    errorpb,
    /// Client requests and responses (raw and transactional).
    kvrpcpb,
    /// Commands proposed through raft and applied by a region's peers.
    raft_cmdpb,
    /// Store-to-store messages and persisted peer state.
    raft_serverpb,
    /// Coprocessor request and response (part of the `TinyKv` service).
    coprocessor,
    /// The scheduler's messages and its `Scheduler` service.
    schedulerpb,
    /// The `TinyKv` service served by each store (only the service code;
    /// generated with the `grpc` feature).
    tinykvpb,
}
