//! `labs grade`: scoring labs, in place or a student's submission laid over
//! the official tree, with reports for people and for programs.
//!
//! **Overlay.** With a submission, the graded tree is the official
//! handout of the last graded lab's stage (made under
//! `target/grade/tree`, built in `target/grade/target` so that later
//! gradings reuse the build), and only the `student_files` of the graded
//! labs and of the labs they require are copied in from the submission.
//! Tests, harness, simulator, manifest, Makefile and Cargo files stay the
//! official ones; the submission's other edits are listed as ignored.
//!
//! **Scoring.** Each lab's suites are built on their own (a compile error
//! gives zero to the labs whose suites it breaks, with the compiler's
//! first errors, and the other labs are still graded); every graded test
//! runs in its own process under every seed (see [`crate::runner`]) and
//! scores its points only if every seed passes.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::handout;
use crate::manifest::{Lab, Manifest, Presence};
use crate::runner::{self, RunOptions, Status, Workspace};
use crate::walk;

/// The version of the JSON report's schema (`labs/grade-report.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// How many compiler errors a report quotes.
const COMPILER_ERRORS_SHOWN: usize = 3;

/// How many lines of a failing test's output a report quotes.
const EXCERPT_LINES: usize = 30;

/// What to grade.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lab ids or groups (`--labs`); empty with no stage: every lab with
    /// graded tests.
    pub labs: Vec<String>,
    /// Every lab with graded tests up to this one (`--stage`).
    pub stage: Option<String>,
    /// The student's repository or folder; `None` grades the tree itself.
    pub submission: Option<PathBuf>,
    /// The seeds each test runs under (empty: once, without a seed).
    pub seeds: Vec<u64>,
    /// Tests run in parallel.
    pub jobs: usize,
    /// Override of every lab's per-test timeout.
    pub timeout: Option<Duration>,
}

/// The whole grading (the JSON report, see the schema).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The course's name.
    pub course: String,
    /// The submission graded (`null`: the tree itself).
    pub submission: Option<String>,
    /// The seeds every test ran under (empty: once, without a seed).
    pub seeds: Vec<u64>,
    /// Points scored and possible.
    pub score: u32,
    /// The most points possible.
    pub max_score: u32,
    /// Tests passed, out of `tests_total`.
    pub tests_passed: usize,
    /// Graded tests.
    pub tests_total: usize,
    /// Wall-clock seconds for the whole grading.
    pub duration_secs: f64,
    /// The submission's files that differ from the official tree but are
    /// not student files of the graded labs: not used.
    pub ignored_files: Vec<String>,
    /// Per lab, in course order.
    pub labs: Vec<LabReport>,
}

/// One lab's result.
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    /// The lab id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Points scored.
    pub score: u32,
    /// Points possible.
    pub max_score: u32,
    /// Whether its suites built.
    pub built: bool,
    /// The compiler's first errors when they did not.
    pub build_errors: Option<String>,
    /// Its graded tests, in manifest order.
    pub tests: Vec<TestReport>,
}

/// One graded test's result.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// The test function.
    pub name: String,
    /// Its lab.
    pub lab: String,
    /// Its points.
    pub points: u32,
    /// `points` if it passed under every seed, else 0.
    pub score: u32,
    /// `passed`, `failed`, `timeout`, `not_run`, `not_built` or `error`.
    pub status: String,
    /// How many runs happened (seeds, or 1).
    pub seeds_run: usize,
    /// The seed of the first failing run, if it failed under a seed.
    pub failing_seed: Option<u64>,
    /// Seconds over all runs.
    pub duration_secs: f64,
    /// How it failed and the end of its output (empty when passed).
    pub output: String,
    /// A command that replays the failure (`null` when passed).
    pub replay: Option<String>,
}

/// The labs to grade, in course order.
fn selected_labs<'m>(m: &'m Manifest, opts: &Options) -> Result<Vec<&'m Lab>> {
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    if let Some(stage) = &opts.stage {
        if !opts.labs.is_empty() {
            bail!("give --stage or --labs, not both");
        }
        let last = handout::stage_index(m, stage)?;
        ids.extend(m.labs[..=last].iter().map(|l| l.id.as_str()));
    } else if opts.labs.is_empty() {
        ids.extend(m.labs.iter().map(|l| l.id.as_str()));
    } else {
        for selector in &opts.labs {
            ids.extend(m.select(selector)?.labs.iter().map(|l| l.id.as_str()));
        }
    }
    let labs: Vec<&Lab> = m
        .labs
        .iter()
        .filter(|l| ids.contains(l.id.as_str()) && m.presence(l) == Presence::Present)
        .collect();
    if labs.is_empty() {
        bail!("none of the selected labs has graded tests");
    }
    Ok(labs)
}

/// `labs` and every lab they require, transitively: whose student files a
/// submission supplies.
fn with_requirements<'m>(m: &'m Manifest, labs: &[&'m Lab]) -> Vec<&'m Lab> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<&str> = labs.iter().map(|l| l.id.as_str()).collect();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id.to_string()) {
            continue;
        }
        if let Some(lab) = m.lab(id) {
            queue.extend(lab.requires.iter().map(String::as_str));
        }
    }
    m.labs.iter().filter(|l| seen.contains(&l.id)).collect()
}

/// Grades, printing progress to stderr.
///
/// # Errors
///
/// A selection that names no graded lab, a submission that is not a
/// folder or lacks a student file, or a failure to make the official tree.
/// A submission that does not build is not an error: its labs score 0.
pub fn run(m: &Manifest, opts: &Options) -> Result<Report> {
    let started = Instant::now();
    let labs = selected_labs(m, opts)?;
    let (tree_manifest, ws, ignored) = match &opts.submission {
        None => {
            let ws = Workspace { root: m.root.clone(), target_dir: None, build_dir: None };
            (None, ws, Vec::new())
        }
        Some(sub) => {
            let (tm, ws, ignored) = overlay(m, &labs, sub)?;
            (Some(tm), ws, ignored)
        }
    };
    let tm = tree_manifest.as_ref().unwrap_or(m);
    let mut lab_reports = Vec::new();
    for lab in &labs {
        let lab = tm
            .lab(&lab.id)
            .ok_or_else(|| Error::msg(format!("the official tree has no lab {}", lab.id)))?;
        lab_reports.push(grade_lab(tm, &ws, lab, opts)?);
    }
    let tests = || lab_reports.iter().flat_map(|l| l.tests.iter());
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        course: m.course_name.clone(),
        submission: opts.submission.as_ref().map(|p| p.display().to_string()),
        seeds: opts.seeds.clone(),
        score: lab_reports.iter().map(|l| l.score).sum(),
        max_score: lab_reports.iter().map(|l| l.max_score).sum(),
        tests_passed: tests().filter(|t| t.status == "passed").count(),
        tests_total: tests().count(),
        duration_secs: started.elapsed().as_secs_f64(),
        ignored_files: ignored,
        labs: lab_reports,
    })
}

/// Makes the official tree for `labs` under `target/grade`, lays the
/// submission's student files over it, and lists the submission's other
/// differences (ignored).
fn overlay(
    m: &Manifest,
    labs: &[&Lab],
    submission: &Path,
) -> Result<(Manifest, Workspace, Vec<String>)> {
    if !submission.is_dir() {
        bail!("--submission {}: not a folder", submission.display());
    }
    let submission = handout::absolute(submission)?;
    let own = Workspace { root: m.root.clone(), target_dir: None, build_dir: None };
    let grade_dir = own.effective_target_dir().join("grade");
    let tree = grade_dir.join("tree");
    let stage = labs.last().expect("at least one lab").id.clone();
    eprintln!("making the official tree of stage {stage} in {}", tree.display());
    std::fs::create_dir_all(&tree).context(|| format!("creating {}", tree.display()))?;
    handout::make(
        m,
        &handout::Options {
            stage,
            out: tree.clone(),
            keep_solutions: Vec::new(),
            force: true,
            preserve_mtimes: true,
        },
    )?;
    let mut student: BTreeSet<String> = BTreeSet::new();
    for lab in with_requirements(m, labs) {
        student.extend(lab.student_files.iter().cloned());
    }
    let mut missing = Vec::new();
    for rel in &student {
        if !submission.join(rel).is_file() {
            missing.push(rel.as_str());
        }
    }
    if !missing.is_empty() {
        bail!(
            "the submission {} lacks student file(s) the graded labs need: {}",
            submission.display(),
            missing.join(", ")
        );
    }
    let ignored = ignored_files(&submission, &tree, &student)?;
    for rel in &student {
        let text = std::fs::read(submission.join(rel))
            .context(|| format!("reading {rel} of the submission"))?;
        // Always written, so the file is newer than any earlier build in
        // the shared target folder: the handout just gave it its source's
        // old modification time, and cargo, which compares times, would
        // otherwise reuse the last submission's build of it.
        let dst = tree.join(rel);
        std::fs::write(&dst, &text).context(|| format!("writing {}", dst.display()))?;
    }
    let tm = Manifest::load(&tree)?;
    let ws = Workspace { root: tree, target_dir: Some(grade_dir.join("target")), build_dir: None };
    Ok((tm, ws, ignored))
}

/// The submission's files (outside `.git`, `target`, `data`) that are not
/// student files and are missing from or differ from the official tree.
fn ignored_files(
    submission: &Path,
    tree: &Path,
    student: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut ignored = Vec::new();
    for entry in walk::walk(submission)? {
        if entry.kind != walk::Kind::File || student.contains(&entry.rel) {
            continue;
        }
        let theirs = std::fs::read(submission.join(&entry.rel)).ok();
        let ours = std::fs::read(tree.join(&entry.rel)).ok();
        if theirs != ours {
            ignored.push(entry.rel);
        }
    }
    Ok(ignored)
}

/// Builds and runs one lab's graded tests.
fn grade_lab(m: &Manifest, ws: &Workspace, lab: &Lab, opts: &Options) -> Result<LabReport> {
    let max_score = lab.tests.iter().map(|t| t.points).sum();
    let report = |built: bool, build_errors: Option<String>, tests: Vec<TestReport>| LabReport {
        id: lab.id.clone(),
        title: lab.title.clone(),
        score: tests.iter().map(|t| t.score).sum(),
        max_score,
        built,
        build_errors,
        tests,
    };
    eprintln!("lab {}: building {}", lab.id, suite_paths(lab));
    let out = build(ws, lab)?;
    if !out.success {
        let errors = compiler_errors(&out);
        eprintln!("lab {}: did not build:\n{errors}", lab.id);
        let tests = lab
            .tests
            .iter()
            .map(|t| TestReport {
                name: t.name.clone(),
                lab: lab.id.clone(),
                points: t.points,
                score: 0,
                status: "not_built".into(),
                seeds_run: 0,
                failing_seed: None,
                duration_secs: 0.0,
                output: format!("lab {}'s suites did not build:\n{errors}", lab.id),
                replay: None,
            })
            .collect();
        return Ok(report(false, Some(errors), tests));
    }
    let jobs = runner::prepare(ws, m, &[lab], None, Some(&out))?;
    let run_opts = RunOptions {
        seeds: opts.seeds.clone(),
        jobs: opts.jobs,
        timeout: opts.timeout,
        log_dir: None,
    };
    let multi = opts.seeds.len() > 1;
    let outcomes = runner::run_jobs(&jobs, &run_opts, &mut |done, total, job, o| {
        let seed = match (&o.status, o.seed) {
            (Status::Passed, _) | (_, None) => String::new(),
            (_, Some(s)) if multi || !o.status.passed() => format!(" (seed {s})"),
            _ => String::new(),
        };
        eprintln!(
            "[{done}/{total}] {} ... {}{seed} ({})",
            job.name,
            o.status.label(),
            runner::secs(o.elapsed)
        );
    });
    let tests = outcomes
        .iter()
        .map(|o| {
            let job = &jobs[o.job];
            let passed = o.status.passed();
            let failing_seed = if passed { None } else { o.seed };
            TestReport {
                name: job.name.clone(),
                lab: job.lab.clone(),
                points: job.points,
                score: if passed { job.points } else { 0 },
                status: status_name(&o.status).into(),
                seeds_run: o.runs,
                failing_seed,
                duration_secs: o.elapsed.as_secs_f64(),
                output: if passed { String::new() } else { failure_text(o, &job.name) },
                replay: (!passed).then(|| replay(&job.lab, &job.name, failing_seed)),
            }
        })
        .collect();
    Ok(report(true, None, tests))
}

fn suite_paths(lab: &Lab) -> String {
    lab.suites.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ")
}

/// `cargo test --workspace --test T ... --no-run` for one lab's suites,
/// with the compiler's messages kept (not printed).
fn build(ws: &Workspace, lab: &Lab) -> Result<runner::CargoOutput> {
    let mut cmd = ws.cargo();
    cmd.args(["test", "--workspace"]);
    let mut targets: Vec<&str> = Vec::new();
    for s in &lab.suites {
        if !targets.contains(&s.target.as_str()) {
            targets.push(&s.target);
        }
    }
    for t in targets {
        cmd.args(["--test", t]);
    }
    cmd.args(["--no-run", "--message-format", "json"]);
    runner::run_cargo_json(cmd)
}

/// The first compiler errors of a failed build, as rustc renders them
/// (cargo's own error if the compiler said nothing).
fn compiler_errors(out: &runner::CargoOutput) -> String {
    let errors: Vec<&str> = out
        .messages
        .iter()
        .filter(|m| m.level == "error")
        .take(COMPILER_ERRORS_SHOWN)
        .map(|m| m.rendered.as_str())
        .collect();
    if errors.is_empty() {
        return out.stderr.trim_end().to_string();
    }
    let more = out.messages.iter().filter(|m| m.level == "error").count() - errors.len();
    let mut text = errors.concat();
    if more > 0 {
        text.push_str(&format!("... and {more} more error(s)\n"));
    }
    text
}

/// The report's name for a status.
fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed(_) => "failed",
        Status::TimedOut(_) => "timeout",
        Status::NotRun => "not_run",
        Status::Error(_) => "error",
    }
}

/// How a test failed, then the end of its output.
fn failure_text(o: &runner::Outcome, name: &str) -> String {
    let how = match &o.status {
        Status::Failed(how) => how.clone(),
        Status::TimedOut(d) => format!("killed after the {} timeout", runner::secs(*d)),
        Status::NotRun => "the test did not run (is it #[ignore]d?)".into(),
        Status::Error(e) => e.clone(),
        Status::Passed => String::new(),
    };
    let seed = o.seed.map(|s| format!(", seed {s}")).unwrap_or_default();
    let mut text = format!("{}: {how}{seed}\n", o.status.label());
    for line in runner::failure_excerpt(&o.output, name, EXCERPT_LINES) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn replay(lab: &str, name: &str, seed: Option<u64>) -> String {
    let seed = seed.map(|s| format!(" SEED={s}")).unwrap_or_default();
    format!("make project{lab} TEST={name}{seed}")
}

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// The report as a table for people.
pub fn table(r: &Report) -> String {
    let mut rows = vec![["test", "lab", "points", "result", "time"].map(String::from).to_vec()];
    for t in r.labs.iter().flat_map(|l| l.tests.iter()) {
        let mut result = match t.status.as_str() {
            "passed" => "ok".to_string(),
            s => s.to_uppercase().replace('_', " "),
        };
        if let Some(s) = t.failing_seed {
            result.push_str(&format!(" (seed {s})"));
        }
        rows.push(vec![
            t.name.clone(),
            t.lab.clone(),
            format!("{}/{}", t.score, t.points),
            result,
            format!("{:.2} s", t.duration_secs),
        ]);
    }
    let mut out = String::new();
    for t in r.labs.iter().flat_map(|l| l.tests.iter()).filter(|t| t.status != "passed") {
        out.push_str(&format!("---- {} (lab {}) ----\n", t.name, t.lab));
        for line in t.output.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        if let Some(cmd) = &t.replay {
            out.push_str(&format!("replay: {cmd}\n"));
        }
        out.push('\n');
    }
    let widths: Vec<usize> =
        (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 2 {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    if !r.ignored_files.is_empty() {
        out.push_str(&format!(
            "ignored (not student files of the graded labs; the official copies were used): {}\n",
            r.ignored_files.join(", ")
        ));
    }
    for l in &r.labs {
        let note = if l.built { "" } else { " (did not build)" };
        out.push_str(&format!("lab {}: {}/{} points{note}\n", l.id, l.score, l.max_score));
    }
    out.push_str(&format!(
        "Score: {}/{} points ({}/{} tests passed) in {:.1} s\n",
        r.score, r.max_score, r.tests_passed, r.tests_total, r.duration_secs
    ));
    out
}

/// The report as JSON (the schema in `labs/grade-report.schema.json`).
pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("a report serializes");
    s.push('\n');
    s
}

/// The report as JUnit XML: one testsuite per lab, one testcase per test.
pub fn junit(r: &Report) -> Result<String> {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
    let mut report = quick_junit::Report::new(format!("labs grade: {}", r.course));
    report.set_time(Duration::from_secs_f64(r.duration_secs));
    for l in &r.labs {
        let mut suite = TestSuite::new(format!("lab {}: {}", l.id, l.title));
        for t in &l.tests {
            let status = match t.status.as_str() {
                "passed" => TestCaseStatus::success(),
                "not_run" => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message("the test did not run");
                    s
                }
                other => {
                    let kind = if other == "failed" {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(format!("{other}: 0/{} points", t.points));
                    s.set_type(other.to_string());
                    s.set_description(t.output.clone());
                    s
                }
            };
            let mut case = TestCase::new(t.name.clone(), status);
            case.set_classname(format!("lab{}", l.id));
            case.set_time(Duration::from_secs_f64(t.duration_secs));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| Error::msg(format!("writing JUnit XML: {e}")))
}

/// The report as Gradescope's `results.json` (its autograder
/// specification: `score`, `execution_time`, `output`, `tests[]`).
pub fn gradescope(r: &Report) -> String {
    let tests: Vec<serde_json::Value> = r
        .labs
        .iter()
        .flat_map(|l| l.tests.iter())
        .map(|t| {
            let mut output = t.output.clone();
            if let Some(cmd) = &t.replay {
                output.push_str(&format!("replay: {cmd}\n"));
            }
            serde_json::json!({
                "name": format!("lab {}: {}", t.lab, t.name),
                "score": f64::from(t.score),
                "max_score": f64::from(t.points),
                "status": if t.status == "passed" { "passed" } else { "failed" },
                "output": output,
                "visibility": "visible",
            })
        })
        .collect();
    let mut summary = String::new();
    for l in &r.labs {
        summary.push_str(&format!("lab {}: {}/{} points\n", l.id, l.score, l.max_score));
        if let Some(errors) = &l.build_errors {
            summary.push_str(&format!("lab {} did not build:\n{errors}\n", l.id));
        }
    }
    if !r.ignored_files.is_empty() {
        summary.push_str(&format!(
            "Ignored (only the student files count): {}\n",
            r.ignored_files.join(", ")
        ));
    }
    let value = serde_json::json!({
        "score": f64::from(r.score),
        "execution_time": r.duration_secs.round() as u64,
        "output": summary,
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": tests,
    });
    let mut s = serde_json::to_string_pretty(&value).expect("json serializes");
    s.push('\n');
    s
}

/// A Gradescope `results.json` for a submission that could not be graded
/// (`why`): zero points, and the reason where the student sees it.
pub fn gradescope_error(why: &str) -> String {
    let value = serde_json::json!({
        "score": 0.0,
        "execution_time": 0,
        "output": format!("The submission could not be graded: {why}\n"),
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": [],
    });
    let mut s = serde_json::to_string_pretty(&value).expect("json serializes");
    s.push('\n');
    s
}
