//! Which commands check which part of the region epoch (given code).
//!
//! A region's epoch has two counters: `version` goes up when its range
//! changes (a split, lab 3b), `conf_ver` when its members change (a conf
//! change, lab 3b). A client (or a scheduler) that looked the region up
//! earlier sends the epoch it saw; a command built on a view that is no
//! longer true must not run. Which counter matters depends on the command:
//!
//! | command | `version` | `conf_ver` | why |
//! |---|---|---|---|
//! | normal (`Get`, `Put`, `Delete`, `Snap`) | checked | — | its keys must still be in the region |
//! | `Split` | checked | checked | it splits the range it saw, among the members it saw |
//! | `ChangePeer` | — | checked | it changes the members it saw |
//! | `TransferLeader`, `CompactLog` | — | — | neither depends on the range or the members |
//!
//! These are TinyKV's rules (`CheckRegionEpoch`), with TiKV's for
//! `Split`. A mismatch is [`Error::EpochNotMatch`] carrying the region as
//! this store knows it, so the client can refresh and retry.

use tinykv_proto::metapb::Region;
use tinykv_proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest};

use crate::error::{Error, Result};

/// Which parts of the epoch a command is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochParts {
    /// The range's counter.
    pub version: bool,
    /// The members' counter.
    pub conf_ver: bool,
}

/// The parts of the epoch `req` depends on (the table in the module docs).
pub fn parts_checked(req: &RaftCmdRequest) -> EpochParts {
    let (version, conf_ver) = match req.admin_request.as_ref().map(|a| a.cmd_type()) {
        None => (true, false),
        Some(AdminCmdType::Split) => (true, true),
        Some(AdminCmdType::ChangePeer) => (false, true),
        Some(AdminCmdType::TransferLeader | AdminCmdType::CompactLog) => (false, false),
        Some(AdminCmdType::InvalidAdmin) => (false, false),
    };
    EpochParts { version, conf_ver }
}

/// Checks `req`'s epoch against `region`'s, on the parts
/// [`parts_checked`] names. A command that checks some part must carry an
/// epoch.
///
/// # Errors
///
/// [`Error::EpochNotMatch`] with `region`.
pub fn check_region_epoch(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    let parts = parts_checked(req);
    if !parts.version && !parts.conf_ver {
        return Ok(());
    }
    let current = region.region_epoch.unwrap_or_default();
    let mismatch =
        |message: String| Error::EpochNotMatch { message, regions: vec![region.clone()] };
    let Some(epoch) = req.header.as_ref().and_then(|h| h.region_epoch) else {
        return Err(mismatch(format!("the command for region {} has no epoch", region.id)));
    };
    if parts.version && epoch.version != current.version {
        return Err(mismatch(format!(
            "region {} is at version {}, the command at {}",
            region.id, current.version, epoch.version
        )));
    }
    if parts.conf_ver && epoch.conf_ver != current.conf_ver {
        return Err(mismatch(format!(
            "region {} is at conf_ver {}, the command at {}",
            region.id, current.conf_ver, epoch.conf_ver
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tinykv_proto::metapb::RegionEpoch;
    use tinykv_proto::raft_cmdpb::{AdminRequest, RaftRequestHeader};

    use super::*;

    fn req(admin: Option<AdminCmdType>, version: u64, conf_ver: u64) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_epoch: Some(RegionEpoch { version, conf_ver }),
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: admin.map(|t| AdminRequest { cmd_type: t as i32, ..Default::default() }),
        }
    }

    #[test]
    fn each_command_checks_its_parts() {
        let region = Region {
            id: 3,
            region_epoch: Some(RegionEpoch { version: 5, conf_ver: 7 }),
            ..Default::default()
        };
        let ok = |admin, v, c| check_region_epoch(&req(admin, v, c), &region).is_ok();
        // A normal command: version only.
        assert!(ok(None, 5, 7) && ok(None, 5, 1) && !ok(None, 4, 7) && !ok(None, 6, 7));
        // Split: both.
        let split = Some(AdminCmdType::Split);
        assert!(ok(split, 5, 7) && !ok(split, 4, 7) && !ok(split, 5, 6));
        // ChangePeer: conf_ver only.
        let change = Some(AdminCmdType::ChangePeer);
        assert!(ok(change, 1, 7) && !ok(change, 5, 6));
        // Neither.
        for t in [AdminCmdType::TransferLeader, AdminCmdType::CompactLog] {
            assert!(ok(Some(t), 0, 0), "{t:?}");
        }
    }

    #[test]
    fn a_mismatch_carries_the_current_region() {
        let region = Region {
            id: 3,
            region_epoch: Some(RegionEpoch { version: 5, conf_ver: 7 }),
            ..Default::default()
        };
        let err = check_region_epoch(&req(Some(AdminCmdType::ChangePeer), 5, 6), &region);
        let Err(Error::EpochNotMatch { message, regions }) = err else { panic!("{err:?}") };
        assert!(message.contains("conf_ver 7, the command at 6"), "{message}");
        assert_eq!(regions, vec![region.clone()]);
        let mut no_epoch = req(None, 0, 0);
        no_epoch.header = None;
        assert!(check_region_epoch(&no_epoch, &region).is_err());
    }
}
