//! `labs verify`: checks that a handout is fit to release.
//!
//! In order: the manifest is complete (every suite and document of a lab
//! with tests exists); the solution markers of the whole tree are well
//! formed and name known labs; the handout of the stage is made in
//! `<repo>/target/verify/handout-<stage>`; it builds (`cargo build
//! --workspace --all-targets`, with `CARGO_TARGET_DIR=<repo>/target/verify`
//! so that the binaries in `target/debug` are untouched, and with the
//! repository's build folder as `CARGO_BUILD_BUILD_DIR`, so that the
//! dependencies already built for the repository are reused) without a
//! single warning or error in a
//! workspace member; the manifest names exactly the tests of the included
//! suites; and every graded test of the included labs fails on the stubs,
//! with output naming one of the included labs (`lab 2b`), so that stubs
//! fail fast and say which lab to work on. A test that passes on the stubs
//! is vacuous.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bail;
use crate::error::{Context, Result};
use crate::handout;
use crate::manifest::{Lab, Manifest, Presence};
use crate::runner::{self, RunOptions, Status, Workspace, secs};

/// What to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// The stage (default: the last lab with graded tests).
    pub stage: Option<String>,
    /// Parallel test workers.
    pub jobs: usize,
    /// Override of the per-test timeout.
    pub timeout: Option<Duration>,
}

/// The default stage: the last lab with graded tests, else the last lab.
pub fn default_stage(manifest: &Manifest) -> String {
    manifest
        .labs
        .iter()
        .rev()
        .find(|l| l.has_tests())
        .or(manifest.labs.last())
        .map(|l| l.id.clone())
        .unwrap_or_default()
}

struct Phases {
    started: Instant,
    rows: Vec<(String, String, Duration)>,
    ok: bool,
}

impl Phases {
    fn record(&mut self, name: &str, ok: bool, detail: String, since: Instant) {
        let took = since.elapsed();
        let verdict = if ok { "ok" } else { "FAILED" };
        println!("  {verdict}: {detail} ({})", secs(took));
        self.rows.push((format!("{name:<10} {verdict:<6}"), detail, took));
        self.ok &= ok;
    }

    fn finish(&self, stage: &str) -> bool {
        println!();
        println!("verify summary (stage {stage}):");
        for (head, detail, took) in &self.rows {
            println!("  {head} {detail} [{}]", secs(*took));
        }
        println!("  total time {}", secs(self.started.elapsed()));
        if self.ok {
            println!("verify: OK");
        } else {
            println!("verify: FAILED");
        }
        self.ok
    }
}

/// Runs the checks; `Ok(true)` when every one held.
pub fn run(manifest: &Manifest, opts: &Options) -> Result<bool> {
    let stage = opts.stage.clone().unwrap_or_else(|| default_stage(manifest));
    let stage_index = handout::stage_index(manifest, &stage)?;
    let stage = manifest.labs[stage_index].id.clone();
    let mut phases = Phases { started: Instant::now(), rows: Vec::new(), ok: true };

    // 1. Manifest.
    println!("[1/5] checking the manifest");
    let t = Instant::now();
    match manifest.check_complete() {
        Ok(()) => {
            let tests: usize = manifest.labs.iter().map(|l| l.tests.len()).sum();
            phases.record(
                "manifest",
                true,
                format!("{} labs, {tests} graded tests", manifest.labs.len()),
                t,
            );
        }
        Err(e) => {
            println!("{e}");
            phases.record("manifest", false, "incomplete (see above)".to_string(), t);
            phases.finish(&stage);
            return Ok(false);
        }
    }

    // 2. Markers.
    println!("[2/5] checking solution markers");
    let t = Instant::now();
    let (errors, per_lab, scanned) = handout::check_tree_markers(manifest)?;
    if !errors.is_empty() {
        for e in &errors {
            println!("  {e}");
        }
        phases.record("markers", false, format!("{} problem(s)", errors.len()), t);
        phases.finish(&stage);
        return Ok(false);
    }
    let counts: Vec<String> = per_lab.iter().map(|(l, n)| format!("lab {l}: {n}")).collect();
    let total: usize = per_lab.values().sum();
    let detail = if counts.is_empty() {
        format!("{scanned} files scanned, no solution regions")
    } else {
        format!("{scanned} files scanned, {total} regions ({})", counts.join(", "))
    };
    phases.record("markers", true, detail, t);

    // 3. Handout.
    println!("[3/5] making the handout of stage {stage}");
    let t = Instant::now();
    // A fixed folder per stage, so that the artifacts of its crates
    // replace those of the last run instead of piling up.
    let target_dir = manifest.root.join("target").join("verify");
    let out = target_dir.join(format!("handout-{stage}"));
    let report = handout::make(
        manifest,
        &handout::Options {
            stage: stage.clone(),
            out: out.clone(),
            keep_solutions: vec![],
            force: true,
            // Fresh times: the same path holds other stripped contents
            // after a change of stage or manifest, and cargo must see it.
            preserve_mtimes: false,
        },
    )?;
    phases.record(
        "handout",
        true,
        format!(
            "{} files in {}, {} left out",
            report.files_copied,
            out.display(),
            report.removed.len()
        ),
        t,
    );

    // 4. Build.
    // The dependencies (fjall, tonic, ...) are those of the repository:
    // build them once, in the repository's build folder, and keep only
    // the handout's own binaries apart (so `target/debug` keeps the
    // instructor's).
    let build_dir = Workspace { root: manifest.root.clone(), target_dir: None, build_dir: None }
        .effective_target_dir();
    let ws = Workspace {
        root: report.out.clone(),
        target_dir: Some(target_dir.clone()),
        build_dir: Some(build_dir.clone()),
    };
    println!(
        "[4/5] building the handout: cargo build --workspace --all-targets \
         (CARGO_TARGET_DIR={}, CARGO_BUILD_BUILD_DIR={})",
        target_dir.display(),
        build_dir.display()
    );
    let t = Instant::now();
    let members = workspace_members(&ws)?;
    let mut cmd = ws.cargo();
    cmd.args([
        "build",
        "--workspace",
        "--all-targets",
        "--message-format",
        runner::message_format(),
    ]);
    let out = runner::run_cargo_json(cmd)?;
    let bad = out.rendered(&|m| {
        members.contains(&m.package_id) && (m.level == "warning" || m.level.starts_with("error"))
    });
    for m in &bad {
        eprint!("{m}");
    }
    if !out.success {
        if !out.stderr.is_empty() {
            eprint!("{}", out.stderr);
        }
        phases.record("build", false, "the handout does not build (see above)".to_string(), t);
        phases.finish(&stage);
        return Ok(false);
    }
    if bad.is_empty() {
        phases.record("build", true, "no warnings".to_string(), t);
    } else {
        phases.record(
            "build",
            false,
            format!("{} warning(s) in workspace members (see above)", bad.len()),
            t,
        );
    }

    // 5. Graded tests on the stubs.
    let t = Instant::now();
    let hm = Manifest::load(&report.out)?;
    let included: Vec<&Lab> = hm.labs[..=stage_index]
        .iter()
        .filter(|l| l.has_tests() && hm.presence(l) == Presence::Present)
        .collect();
    let included_ids: Vec<String> = hm.labs[..=stage_index].iter().map(|l| l.id.clone()).collect();
    let n_tests: usize = included.iter().map(|l| l.tests.len()).sum();
    println!(
        "[5/5] running {n_tests} graded test(s) of {} lab(s) on the stubs; each must fail",
        included.len()
    );
    if included.is_empty() {
        phases.record("stubs", true, "no graded tests up to this stage".to_string(), t);
        return Ok(phases.finish(&stage));
    }
    let jobs = match runner::prepare(&ws, &hm, &included, None, Some(&out)) {
        Ok(j) => j,
        Err(e) => {
            println!("{e}");
            phases.record(
                "stubs",
                false,
                "could not prepare the graded suites (see above)".to_string(),
                t,
            );
            phases.finish(&stage);
            return Ok(false);
        }
    };
    let run_opts = RunOptions {
        seeds: Vec::new(),
        jobs: opts.jobs,
        timeout: opts.timeout,
        log_dir: Some(target_dir.join("labs-logs")),
    };
    let width = jobs.len().to_string().len();
    let mut problems: Vec<String> = Vec::new();
    let mut vacuous = 0;
    let mut unnamed = 0;
    let outcomes = runner::run_jobs(&jobs, &run_opts, &mut |done, total, job, o| {
        let names_lab = included_ids.iter().any(|id| runner::mentions_lab(&o.output, id));
        let verdict = match &o.status {
            Status::Passed => {
                vacuous += 1;
                problems
                    .push(format!("{} (lab {}): VACUOUS: passes on the stubs", job.name, job.lab));
                "VACUOUS (passes on the stubs)".to_string()
            }
            Status::Failed(_) if names_lab => "fails as expected".to_string(),
            Status::Failed(_) => {
                unnamed += 1;
                problems.push(format!(
                    "{} (lab {}): fails without naming a lab (its output never says `lab <id>`){}",
                    job.name,
                    job.lab,
                    tail_hint(&o.output, &job.name)
                ));
                "fails without naming a lab".to_string()
            }
            Status::TimedOut(d) => {
                problems.push(format!(
                    "{} (lab {}): times out after {} on the stubs (stubs must fail fast)",
                    job.name,
                    job.lab,
                    secs(*d)
                ));
                format!("TIMEOUT after {}", secs(*d))
            }
            Status::NotRun => {
                problems.push(format!(
                    "{} (lab {}): did not run (is it #[ignore]d?)",
                    job.name, job.lab
                ));
                "NOT RUN".to_string()
            }
            Status::Error(e) => {
                problems.push(format!("{} (lab {}): {e}", job.name, job.lab));
                format!("ERROR: {e}")
            }
        };
        println!("[{done:>width$}/{total}] {} ... {verdict} ({})", job.name, secs(o.elapsed));
    });
    let failing = outcomes.iter().filter(|o| !o.status.passed()).count();
    for p in &problems {
        println!("  problem: {p}");
    }
    let ok = problems.is_empty();
    phases.record(
        "stubs",
        ok,
        format!(
            "{failing}/{} graded tests fail on the stubs; {vacuous} vacuous; {unnamed} fail without naming a lab; {} other problem(s)",
            outcomes.len(),
            problems.len() - vacuous - unnamed
        ),
        t,
    );
    Ok(phases.finish(&stage))
}

fn tail_hint(output: &str, name: &str) -> String {
    let tail = runner::failure_excerpt(output, name, 3);
    if tail.is_empty() {
        String::new()
    } else {
        format!("; it ends with:\n      {}", tail.join("\n      "))
    }
}

/// The package ids of the workspace members, from `cargo metadata`.
fn workspace_members(ws: &Workspace) -> Result<BTreeSet<String>> {
    let mut cmd = ws.cargo();
    cmd.args(["metadata", "--no-deps", "--format-version", "1"]);
    let out = cmd.output().context(|| "running cargo metadata".to_string())?;
    if !out.status.success() {
        bail!("cargo metadata failed in the handout:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).context(|| "reading cargo metadata".to_string())?;
    Ok(v["workspace_members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
        .unwrap_or_default())
}
