//! [`Client`]: where the `raw` and `txn` commands send their requests.
//!
//! Without `--scheduler` it is one store ([`Ctl`]): every request goes to
//! `--addr` as one request, exactly as tinykv-ctl always did, and
//! timestamps come from the local clock. With `--scheduler` it is the
//! cluster ([`Router`]): requests are routed by key, split by region, and
//! timestamps come from the scheduler's timestamp oracle.
//!
//! The commands (in main.rs) are written once, over the operations here;
//! each operation says what it does on one store and on a cluster.

use crate::Failure;
use crate::router::{KeySpace, Router, Sent};
use crate::store::{Ctl, Rpc, ScanRpc};

/// One store or a cluster. See the module docs.
pub enum Client {
    /// `--addr`: one store.
    Store(Ctl),
    /// `--scheduler`: a cluster (boxed: the router and its caches are
    /// much larger than a store client).
    Cluster(Box<Router>),
}

impl Client {
    /// Sends `request` about `key`: to the store; in a cluster, to the
    /// leader of the region holding `key` of `space` (`what` names the
    /// command in errors).
    pub async fn send_key<R: Rpc>(
        &mut self,
        what: &str,
        space: KeySpace,
        key: &[u8],
        request: R,
    ) -> Result<R::Response, Failure> {
        match self {
            Client::Store(ctl) => ctl.send(request).await,
            Client::Cluster(router) => router.send_key(what, space, key, request).await,
        }
    }

    /// Sends `make(indices)` for the keys at `indices` of `keys`: to the
    /// store, once, for all of them; in a cluster, once per region, the
    /// region of `keys[0]` first, stopping after an answer for which
    /// `stop` is true ([`Router::send_by_region`]).
    pub async fn send_by_region<R: Rpc>(
        &mut self,
        what: &str,
        space: KeySpace,
        keys: &[Vec<u8>],
        make: impl Fn(&[usize]) -> R,
        stop: impl Fn(&R::Response) -> bool,
    ) -> Sent<R::Response> {
        match self {
            Client::Store(ctl) => {
                let all: Vec<usize> = (0..keys.len()).collect();
                match ctl.send(make(&all)).await {
                    Ok(answer) => Sent { parts: vec![(all, answer)], failure: None },
                    Err(failure) => Sent { parts: Vec::new(), failure: Some(failure) },
                }
            }
            Client::Cluster(router) => router.send_by_region(what, space, keys, make, stop).await,
        }
    }

    /// Sends the scan `request`: to the store, once; in a cluster, region
    /// by region until its limit ([`Router::scan`]). The answers in key
    /// order.
    pub async fn scan<R: ScanRpc>(
        &mut self,
        what: &str,
        request: R,
    ) -> Result<Vec<R::Response>, Failure> {
        match self {
            Client::Store(ctl) => Ok(vec![ctl.send(request).await?]),
            Client::Cluster(router) => router.scan(what, &request).await,
        }
    }

    /// Sends `request`, which names no key: to the store, once; in a
    /// cluster, to every region ([`Router::every_region`]).
    pub async fn every_region<R: Rpc>(
        &mut self,
        what: &str,
        request: R,
        stop: impl Fn(&R::Response) -> bool,
    ) -> Result<Vec<R::Response>, Failure> {
        match self {
            Client::Store(ctl) => Ok(vec![ctl.send(request).await?]),
            Client::Cluster(router) => router.every_region(what, &request, stop).await,
        }
    }

    /// A new timestamp: from the local clock ([`crate::local_ts`]), or the
    /// scheduler's timestamp oracle.
    pub async fn timestamp(&mut self) -> Result<u64, Failure> {
        match self {
            Client::Store(_) => Ok(crate::local_ts()),
            Client::Cluster(router) => router.scheduler().tso().await,
        }
    }

    /// Where [`timestamp`](Self::timestamp) gets them, for messages.
    pub fn clock(&self) -> &'static str {
        match self {
            Client::Store(_) => "the local clock",
            Client::Cluster(_) => "the scheduler's timestamp oracle",
        }
    }
}
