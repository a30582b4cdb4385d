//! The multi-raft store, sans-I/O (labs 2b, 2c, 3b).
//!
//! A [`Store`] holds one [`Peer`] per region it has a replica of, and is
//! driven from outside: the driver hands it raft messages, client commands
//! and ticks, and carries out what it asks through a [`Context`]. The same
//! store code runs in the simulator (`tinykv-sim`) and in the server.
//!
//! | module | what | lab |
//! |---|---|---|
//! | [`store`] | the router from region to peer, the inputs | given |
//! | [`peer`] | a replica: proposing a command and its checks | 2b |
//! | [`ready`] | handling a `Ready`: persist, send, apply, advance | 2b |
//! | [`apply`] | applying committed entries, answering proposals | 2b |
//! | [`peer_storage`] | raft's storage over the two engines; applying a snapshot | 2b, 2c |
//! | [`admin`] | admin commands, one file each: log GC (2c), conf change, leader transfer and split (3b) | 2c, 3b |
//! | [`store_meta`], [`effect`], [`lifecycle`] | the store's regions; what a peer asks of the store; creating and destroying peers | given |
//! | [`heartbeat`] | heartbeats to the scheduler; its operators | given |
//! | [`split_check`] | when and where a region splits; asking the scheduler for ids | given |
//! | [`snap`], [`worker`] | snapshot files; background tasks | given |
//! | [`bootstrap`], [`engines`], [`context`], [`config`], [`error`] | given | |
#![forbid(unsafe_code)]

pub mod admin;
pub mod apply;
pub mod bootstrap;
pub mod config;
pub mod context;
pub mod effect;
pub mod engines;
pub mod error;
pub mod heartbeat;
pub mod lifecycle;
pub mod peer;
pub mod peer_storage;
pub mod ready;
pub mod snap;
pub mod split_check;
pub mod store;
pub mod store_meta;
pub mod worker;

pub use crate::config::Config;
pub use crate::context::{CmdResponse, Context, SCHEDULER_TOKEN, Token};
pub use crate::engines::Engines;
pub use crate::error::{Error, Result};
pub use crate::heartbeat::SchedulerTask;
pub use crate::peer::{Peer, Proposal};
pub use crate::peer_storage::PeerStorage;
pub use crate::snap::{SnapKey, SnapKind, SnapManager};
pub use crate::store::Store;
pub use crate::worker::{Task, TaskResult, run_task};
