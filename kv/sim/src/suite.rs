//! What a graded simulation test needs around its body: the seed, log
//! capture, the linearizability check of the history, and on failure the
//! report file and the replay command.
//!
//! ```
//! use tinykv_sim::suite::SimTest;
//! use tinykv_sim::workload::{self, Workload};
//!
//! let dir = tempfile_dir();
//! # fn tempfile_dir() -> String { std::env::temp_dir().display().to_string() }
//! SimTest::new("doc_example", "2b", &dir)
//!     .run(5, |cfg| cfg, |cluster| workload::run(cluster, &Workload::new(1)).map(drop));
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use crate::capture;
use crate::cluster::{Cluster, ClusterConfig};
use crate::history::{History, OpKind, OpResult};
use crate::linearizability::{self, Budget, Input, Operation, Output, Verdict};
use crate::report::{self, ReportInfo};

/// The seed a test runs with when `TINYKV_SEED` is unset.
pub const DEFAULT_SEED: u64 = 1;

/// A graded simulation test. See the module docs.
#[derive(Debug, Clone)]
pub struct SimTest {
    /// The test's name (the function name).
    pub name: &'static str,
    /// Its lab, for the replay command.
    pub lab: &'static str,
    /// The seed: `TINYKV_SEED`, else [`DEFAULT_SEED`].
    pub seed: u64,
    /// Adjusts every cluster config before the test's own `configure`.
    base: fn(ClusterConfig) -> ClusterConfig,
    report_dir: PathBuf,
}

impl SimTest {
    /// The test `name` of lab `lab`; reports go under `target_tmp`
    /// (pass `env!("CARGO_TARGET_TMPDIR")`).
    pub fn new(name: &'static str, lab: &'static str, target_tmp: &str) -> SimTest {
        let seed = match std::env::var("TINYKV_SEED") {
            Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("TINYKV_SEED={s:?} is not a u64")),
            Err(_) => DEFAULT_SEED,
        };
        let report_dir = PathBuf::from(target_tmp).join("sim-reports");
        SimTest { name, lab, seed, base: |cfg| cfg, report_dir }
    }

    /// Every cluster of this test starts from `base(config)` (e.g. a lab's
    /// suite turning a feature of a later lab off).
    #[must_use]
    pub fn with_base(mut self, base: fn(ClusterConfig) -> ClusterConfig) -> SimTest {
        self.base = base;
        self
    }

    /// The replay command.
    pub fn replay(&self) -> String {
        format!("make project{} TEST={} SEED={}", self.lab, self.name, self.seed)
    }

    /// Builds a cluster of `stores` stores (config adjusted by `configure`),
    /// runs `body` on it, then checks the whole history for
    /// linearizability. On any failure (an `Err`, a panic, a history that
    /// is not linearizable or could not be checked) writes the report and
    /// panics with the seed, the replay command and the report's path.
    pub fn run(
        &self,
        stores: u64,
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
        body: impl FnOnce(&mut Cluster) -> Result<(), String>,
    ) -> Cluster {
        capture::start();
        let base = (self.base)(ClusterConfig::new(stores, self.seed));
        let mut cluster = Cluster::new(configure(base));
        let outcome = catch_unwind(AssertUnwindSafe(|| body(&mut cluster)));
        let failure = match outcome {
            Ok(Ok(())) => check_linearizable(&cluster.history).err(),
            Ok(Err(e)) => Some(e),
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic without a message".into()),
            ),
        };
        let lines = capture::finish();
        if let Some(failure) = failure {
            let replay = self.replay();
            let info =
                ReportInfo { test: self.name, seed: self.seed, failure: &failure, replay: &replay };
            let path = match report::write(&self.report_dir, &info, &cluster.history, &lines) {
                Ok(p) => p.display().to_string(),
                Err(e) => format!("(could not write the report: {e})"),
            };
            panic!(
                "{} failed (TINYKV_SEED={}) at {} ms of virtual time:\n{failure}\n\n\
                 replay: {replay}\nreport: {path}\nSee docs/src/debugging.md.",
                self.name,
                self.seed,
                cluster.now() / 1000
            );
        }
        cluster
    }
}

/// The history's single-key operations as the linearizability checker's
/// input (scans are checked by the workload itself).
pub fn to_operations(history: &History) -> Vec<Operation> {
    history
        .ops
        .iter()
        .filter_map(|o| {
            let input = match &o.kind {
                OpKind::Put { key, value } => Input::Put { key: key.clone(), value: value.clone() },
                OpKind::Get { key } => Input::Get { key: key.clone() },
                OpKind::Delete { key } => Input::Delete { key: key.clone() },
                OpKind::Scan { .. } => return None,
            };
            let output = match &o.result {
                None => None,
                Some(OpResult::Done) => Some(Output::Done),
                Some(OpResult::Value(v)) => Some(Output::Value(v.clone())),
                Some(OpResult::Rows(_)) => return None,
            };
            let ret = output.as_ref().and(o.ret_us).map(|r| r * 1000);
            Some(Operation { client: o.client, input, output, call: o.call_us * 1000, ret })
        })
        .collect()
}

/// Checks the whole history for linearizability.
///
/// # Errors
///
/// The checker's explanation; "unknown" (the search ran out of budget) is
/// an error too, never a pass.
pub fn check_linearizable(history: &History) -> Result<(), String> {
    match linearizability::check(&to_operations(history), &Budget::default()) {
        Verdict::Ok => Ok(()),
        Verdict::Illegal(v) => Err(format!("the history is not linearizable:\n{v}")),
        other => Err(format!("the linearizability check could not decide: {other}")),
    }
}
