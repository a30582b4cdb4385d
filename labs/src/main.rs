//! `labs`: the course tool. It lists the labs, runs a lab's graded tests,
//! makes the student handout, and verifies that a handout is fit to release.
//!
//! The repository root is the first folder, walking up from the current
//! one, that holds `labs/labs.toml` (or `--root DIR`). See `labs/README.md`.

#![forbid(unsafe_code)]

mod autograder;
mod error;
mod grade;
mod handout;
mod manifest;
mod markers;
mod mutants;
mod runner;
mod verify;
mod walk;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::manifest::{MANIFEST_PATH, Manifest, Presence};
use crate::runner::{RunOptions, Status, Workspace, secs};

/// Exit code when the selected labs have no graded tests.
const EXIT_NO_TESTS: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "labs",
    about = "The course tool: list labs, run a lab's graded tests, make and verify student handouts",
    long_about = None,
)]
struct Cli {
    /// The repository root (default: the first folder above the current one
    /// that holds labs/labs.toml).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the labs in course order: tests, points, prerequisites, documents,
    /// and the lab groups.
    List,

    /// Build a lab's graded suite and run each graded test in its own process.
    ///
    /// LAB is a lab id (`2ab`) or a group (`2a`, `2`). Prints progress, a
    /// pass/fail table, the score, and for every failure the end of its
    /// output and a command that replays it. Exits 1 when a test fails or
    /// times out or the build fails, 2 when the lab has no graded tests.
    ///
    /// Example: labs test 1 --test raw_get_after_put_1 --seed 7
    Test {
        /// A lab id or a group name.
        lab: String,
        /// Run only this graded test.
        #[arg(long, value_name = "NAME")]
        test: Option<String>,
        /// Seed for the tests (environment TINYKV_SEED); default: the
        /// TINYKV_SEED environment variable if set.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Run every test under K seeds (S, S+1, ... with S = --seed or 1); a
        /// test passes only if every seed passes.
        #[arg(long, value_name = "K")]
        seeds: Option<u64>,
        /// Tests run in parallel.
        #[arg(long, short = 'j', value_name = "J", default_value_t = 2)]
        jobs: usize,
        /// Per-test timeout in seconds (default: the lab's timeout_secs).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },

    /// Grade labs: the tree itself, or a student's submission laid over the
    /// official tree (only the graded labs' student files are taken from
    /// it). Each graded test runs in its own process under every seed and
    /// scores its points only if every seed passes.
    ///
    /// Example: labs grade --stage 2b --submission ../alice --format json --out alice.json
    Grade {
        /// Every lab with graded tests up to this one.
        #[arg(long, value_name = "LAB", conflicts_with = "labs")]
        stage: Option<String>,
        /// These labs or groups (comma-separated); default: every lab with
        /// graded tests.
        #[arg(long, value_name = "LAB,LAB", value_delimiter = ',')]
        labs: Vec<String>,
        /// The student's repository or folder (a git checkout or a plain
        /// folder); default: grade this tree.
        #[arg(long, value_name = "DIR")]
        submission: Option<PathBuf>,
        /// The seed for the tests (TINYKV_SEED).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Run every test under K seeds (S, S+1, ... with S = --seed or 1).
        #[arg(long, value_name = "K")]
        seeds: Option<u64>,
        /// The report's format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write the report here instead of to standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Tests run in parallel.
        #[arg(long, short = 'j', value_name = "J", default_value_t = 2)]
        jobs: usize,
        /// Per-test timeout in seconds (default: the lab's timeout_secs).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },

    /// Write the zip for Gradescope's custom autograder: setup.sh (installs
    /// the pinned Rust toolchain and pre-builds), run_autograder (runs
    /// `labs grade --format gradescope` on /autograder/submission) and the
    /// stage's handout (no solutions).
    ///
    /// Example: labs autograder --stage 2b --out autograder-2b.zip
    Autograder {
        /// The stage: the handout's last lab, and what is graded.
        #[arg(long, value_name = "LAB")]
        stage: String,
        /// The zip to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },

    /// Mutation testing of a lab's solution regions against its graded
    /// tests: how many small mistakes (cargo-mutants' mutants on the lines
    /// between `SOLUTION BEGIN lab LAB` and its stub or end) the suite
    /// catches. Needs cargo-mutants (`cargo install --locked cargo-mutants`).
    /// Runs in a mirror of the tree under target/mutants; exits 1 when a
    /// mutant survives that is not in labs/equivalent-mutants.toml.
    ///
    /// Example: labs mutants --lab 2aa --sample 30 --seed 1
    Mutants {
        /// The lab whose solution regions are mutated.
        #[arg(long, value_name = "LAB")]
        lab: String,
        /// Test only N mutants, picked reproducibly from --seed (an estimate
        /// in minutes instead of the full run).
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        /// The sampling seed.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Mutants tested at once; above 1, each job builds in its own copy
        /// of the tree (a cold build each).
        #[arg(long, short = 'j', value_name = "J", default_value_t = 1)]
        jobs: usize,
        /// Per-mutant test timeout in seconds (default: five times the
        /// graded tests' time on the unmutated tree, at least 20 s).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Only list the mutants (and which are listed as equivalent).
        #[arg(long)]
        list: bool,
        /// The report's format.
        #[arg(long, value_enum, default_value_t = MutantsFormat::Table)]
        format: MutantsFormat,
        /// Write the report here instead of to standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },

    /// Make the student repository for a stage: solutions replaced by stubs,
    /// instructor material, later labs' suites and documents left out.
    ///
    /// Example: labs handout --stage 2b --out ../tinykv-student
    Handout {
        /// The last lab included (a lab id, or a group: its last lab).
        #[arg(long, value_name = "LAB")]
        stage: String,
        /// The output folder (outside the repository, or under target/).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Labs whose solutions stay in the handout (comma-separated).
        #[arg(long, value_name = "LAB,LAB", value_delimiter = ',')]
        keep_solutions: Vec<String>,
        /// Replace the contents of a non-empty output folder (a .git folder
        /// in it is kept).
        #[arg(long)]
        force: bool,
    },

    /// Check that a handout is fit to release: manifest complete, markers
    /// well formed, the handout builds without warnings, and every graded
    /// test of the included labs fails on the stubs naming its lab.
    ///
    /// Example: labs verify --stage 2b
    Verify {
        /// The stage to verify (default: the last lab with graded tests).
        #[arg(long, value_name = "LAB")]
        stage: Option<String>,
        /// Tests run in parallel.
        #[arg(long, short = 'j', value_name = "J", default_value_t = 2)]
        jobs: usize,
        /// Per-test timeout in seconds (default: the lab's timeout_secs).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
}

/// `labs grade --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A table for people (what `labs test` prints).
    Table,
    /// JSON, as labs/grade-report.schema.json describes it.
    Json,
    /// JUnit XML: one testsuite per lab.
    Junit,
    /// Gradescope's results.json.
    Gradescope,
}

/// `labs mutants --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MutantsFormat {
    /// Counts per file, then each survivor.
    Table,
    /// Everything, as JSON (for CI).
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Finds the repository root: `--root`, or the first folder above the
/// current one holding `labs/labs.toml`.
fn find_root(root: Option<&Path>) -> Result<PathBuf> {
    if let Some(r) = root {
        if !r.join(MANIFEST_PATH).is_file() {
            return Err(Error::msg(format!("--root {}: no {MANIFEST_PATH} there", r.display())));
        }
        return handout::absolute(r);
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::msg(format!("reading the current folder: {e}")))?;
    let mut dir = cwd.as_path();
    loop {
        if dir.join(MANIFEST_PATH).is_file() {
            return Ok(dir.to_path_buf());
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => {
                return Err(Error::msg(format!(
                    "no {MANIFEST_PATH} in {} or any folder above it; run inside the course repository or pass --root DIR",
                    cwd.display()
                )));
            }
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let root = find_root(cli.root.as_deref())?;
    let manifest = Manifest::load(&root)?;
    match cli.command {
        Cmd::List => {
            list(&manifest);
            Ok(0)
        }
        Cmd::Test { lab, test, seed, seeds, jobs, timeout } => {
            let seed = match seed {
                Some(s) => Some(s),
                None => match std::env::var("TINYKV_SEED") {
                    Ok(v) if !v.trim().is_empty() => {
                        Some(v.trim().parse::<u64>().map_err(|_| {
                            Error::msg(format!(
                                "TINYKV_SEED={v} in the environment is not a number"
                            ))
                        })?)
                    }
                    _ => None,
                },
            };
            check_run_args(jobs, seeds, timeout)?;
            run_test(
                &manifest,
                &lab,
                test.as_deref(),
                seed,
                seeds,
                jobs,
                timeout.map(Duration::from_secs),
            )
        }
        Cmd::Grade { stage, labs, submission, seed, seeds, format, out, jobs, timeout } => {
            check_run_args(jobs, seeds, timeout)?;
            let seed_list = seed_list(seed, seeds);
            let opts = grade::Options {
                labs,
                stage,
                submission,
                seeds: seed_list,
                jobs,
                timeout: timeout.map(Duration::from_secs),
            };
            let report = match grade::run(&manifest, &opts) {
                Ok(r) => r,
                Err(e) => {
                    // Gradescope shows results.json, not stderr: say there
                    // why nothing was graded.
                    if let (Format::Gradescope, Some(path)) = (format, &out) {
                        let _ = std::fs::write(path, grade::gradescope_error(&e.to_string()));
                    }
                    return Err(e);
                }
            };
            let text = match format {
                Format::Table => grade::table(&report),
                Format::Json => grade::json(&report),
                Format::Junit => grade::junit(&report)?,
                Format::Gradescope => grade::gradescope(&report),
            };
            match &out {
                Some(path) => {
                    std::fs::write(path, &text)
                        .map_err(|e| Error::msg(format!("writing {}: {e}", path.display())))?;
                    if format != Format::Table {
                        eprint!("{}", grade::table(&report));
                    }
                    eprintln!("report written to {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Cmd::Autograder { stage, out } => {
            let summary =
                autograder::make(&manifest, &autograder::Options { stage, out: out.clone() })?;
            println!(
                "autograder for stage {} written to {} ({} files of the handout; Rust {})",
                summary.stage,
                out.display(),
                summary.files,
                summary.toolchain
            );
            Ok(0)
        }
        Cmd::Mutants { lab, sample, seed, jobs, timeout, list, format, out } => {
            check_run_args(jobs, None, timeout)?;
            if sample == Some(0) {
                return Err(Error::msg("--sample must be at least 1"));
            }
            let report = mutants::run(
                &manifest,
                &mutants::Options { lab, sample, seed, jobs, timeout, list },
            )?;
            let text = match format {
                MutantsFormat::Table => mutants::table(&report, list),
                MutantsFormat::Json => mutants::json(&report),
            };
            match &out {
                Some(path) => {
                    std::fs::write(path, &text)
                        .map_err(|e| Error::msg(format!("writing {}: {e}", path.display())))?;
                    eprintln!("report written to {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(if report.survivors.is_empty() && report.stale_entries.is_empty() { 0 } else { 1 })
        }
        Cmd::Handout { stage, out, keep_solutions, force } => {
            let started = Instant::now();
            let report = handout::make(
                &manifest,
                &handout::Options { stage, out, keep_solutions, force, preserve_mtimes: false },
            )?;
            report.print();
            println!("done in {}", secs(started.elapsed()));
            Ok(0)
        }
        Cmd::Verify { stage, jobs, timeout } => {
            if jobs == 0 {
                return Err(Error::msg("--jobs must be at least 1"));
            }
            let ok = verify::run(
                &manifest,
                &verify::Options { stage, jobs, timeout: timeout.map(Duration::from_secs) },
            )?;
            Ok(if ok { 0 } else { 1 })
        }
    }
}

/// Prints rows as left-aligned columns (numeric columns right-aligned).
fn print_table(rows: &[Vec<String>], right: &[usize]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            if right.contains(&c) {
                line.push_str(&format!("{cell:>w$}", w = widths[c]));
            } else if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn list(m: &Manifest) {
    println!("{}", m.course_name);
    println!();
    let mut rows = vec![vec![
        "lab".to_string(),
        "title".to_string(),
        "tests".to_string(),
        "points".to_string(),
        "requires".to_string(),
        "document".to_string(),
    ]];
    let (mut tests, mut points) = (0, 0);
    for lab in &m.labs {
        let note = match m.presence(lab) {
            Presence::NoTests => "  (no graded tests yet)",
            Presence::NotInHandout => "  (not in this handout)",
            Presence::Present => "",
        };
        tests += lab.tests.len();
        points += lab.points();
        rows.push(vec![
            lab.id.clone(),
            lab.title.clone(),
            lab.tests.len().to_string(),
            lab.points().to_string(),
            if lab.requires.is_empty() { "-".to_string() } else { lab.requires.join(", ") },
            format!("{}{note}", lab.doc.as_deref().unwrap_or("-")),
        ]);
    }
    rows.push(vec![
        "total".into(),
        String::new(),
        tests.to_string(),
        points.to_string(),
        String::new(),
        String::new(),
    ]);
    print_table(&rows, &[2, 3]);
    if !m.groups.is_empty() {
        println!();
        println!("groups (`labs test <group>` runs each lab of the group):");
        let rows: Vec<Vec<String>> =
            m.groups.iter().map(|g| vec![format!("  {}", g.name), g.labs.join(" ")]).collect();
        print_table(&rows, &[]);
    }
}

fn make_target(lab: &str) -> String {
    format!("make project{lab}")
}

fn replay(lab: &str, name: &str, seed: Option<u64>) -> (String, String) {
    let seed_make = seed.map(|s| format!(" SEED={s}")).unwrap_or_default();
    let seed_arg = seed.map(|s| format!(" --seed {s}")).unwrap_or_default();
    (
        format!("{} TEST={name}{seed_make}", make_target(lab)),
        format!("cargo run -p labs -- test {lab} --test {name}{seed_arg}"),
    )
}

fn run_test(
    m: &Manifest,
    selector: &str,
    only: Option<&str>,
    seed: Option<u64>,
    seeds: Option<u64>,
    jobs: usize,
    timeout: Option<Duration>,
) -> Result<u8> {
    let started = Instant::now();
    let sel = m.select(selector)?;
    let mut runnable = Vec::new();
    for lab in &sel.labs {
        match m.presence(lab) {
            Presence::Present => runnable.push(*lab),
            Presence::NoTests => {
                if sel.is_group {
                    println!("lab {} has no graded tests yet", lab.id);
                }
            }
            Presence::NotInHandout => {
                if sel.is_group {
                    println!(
                        "lab {} has no graded tests yet (its suite is not in this handout)",
                        lab.id
                    );
                }
            }
        }
    }
    if runnable.is_empty() {
        let what =
            if sel.is_group { format!("group {selector}") } else { format!("lab {selector}") };
        let why = if sel.labs.iter().any(|l| m.presence(l) == Presence::NotInHandout) {
            " (its suite is not in this handout)"
        } else {
            ""
        };
        println!("{what} has no graded tests yet{why}");
        return Ok(EXIT_NO_TESTS);
    }

    let ws = Workspace { root: m.root.clone(), target_dir: None, build_dir: None };
    let build_started = Instant::now();
    let job_list = runner::prepare(&ws, m, &runnable, only, None)?;
    let build_time = build_started.elapsed();

    let seed_list = seed_list(seed, seeds);
    let opts = RunOptions {
        seeds: seed_list.clone(),
        jobs,
        timeout,
        log_dir: Some(ws.effective_target_dir().join("labs-logs")),
    };
    let mut header =
        format!("running {} graded test(s) of {}", job_list.len(), labs_phrase(&runnable));
    if seed_list.len() > 1 {
        header.push_str(&format!(
            " under {} seeds ({}..={})",
            seed_list.len(),
            seed_list[0],
            seed_list[seed_list.len() - 1]
        ));
    } else if let Some(s) = seed_list.first() {
        header.push_str(&format!(" with seed {s}"));
    }
    header.push_str(&format!(", {jobs} at a time"));
    println!("{header}");
    let run_started = Instant::now();
    let width = job_list.len().to_string().len();
    let multi = seed_list.len() > 1;
    let outcomes = runner::run_jobs(&job_list, &opts, &mut |done, total, job, o| {
        let result = match (&o.status, multi) {
            (Status::Passed, true) => format!("ok ({} seeds)", o.runs),
            (s, true) => format!(
                "{} (seed {})",
                s.label(),
                o.seed.map(|s| s.to_string()).unwrap_or_default()
            ),
            (s, false) => s.label().to_string(),
        };
        println!("[{done:>width$}/{total}] {} ... {result} ({})", job.name, secs(o.elapsed));
    });
    let run_time = run_started.elapsed();

    // Failures: the end of the output and how to replay.
    let failures: Vec<&runner::Outcome> = outcomes.iter().filter(|o| !o.status.passed()).collect();
    let mut replays = Vec::new();
    for o in &failures {
        let job = &job_list[o.job];
        let seed = o.seed.or_else(|| runner::seed_in_output(&o.output));
        println!();
        let how = match &o.status {
            Status::Failed(how) => how.clone(),
            Status::TimedOut(d) => format!("killed after the {} timeout", secs(*d)),
            Status::NotRun => "the test did not run (is it #[ignore]d?)".to_string(),
            Status::Error(e) => e.clone(),
            Status::Passed => String::new(),
        };
        let seed_note = seed.map(|s| format!(", seed {s}")).unwrap_or_default();
        println!("---- {} (lab {}) {}: {how}{seed_note} ----", job.name, job.lab, o.status.label());
        let excerpt = runner::failure_excerpt(&o.output, &job.name, 25);
        if excerpt.is_empty() {
            println!("    (no output)");
        }
        for line in excerpt {
            if line.is_empty() {
                println!();
            } else {
                println!("    {line}");
            }
        }
        if let Some(log) = &o.log {
            println!("full output: {}", log.display());
        }
        let (make, direct) = replay(&job.lab, &job.name, seed);
        println!("replay: {make}");
        println!("    or: {direct}");
        replays.push(make);
    }

    // Table and score.
    println!();
    let mut rows = vec![vec![
        "test".to_string(),
        "lab".into(),
        "points".into(),
        "result".into(),
        "time".into(),
    ]];
    for o in &outcomes {
        let job = &job_list[o.job];
        let mut result = o.status.label().to_string();
        if !o.status.passed()
            && let Some(s) = o.seed
        {
            result.push_str(&format!(" (seed {s})"));
        }
        let got = if o.status.passed() { job.points } else { 0 };
        rows.push(vec![
            job.name.clone(),
            job.lab.clone(),
            format!("{got}/{}", job.points),
            result,
            secs(o.elapsed),
        ]);
    }
    print_table(&rows, &[2, 4]);
    println!();
    let (got, total, passed, count) = runner::score(&job_list, &outcomes);
    let per_lab = runner::per_lab(&job_list, &outcomes);
    if per_lab.len() > 1 {
        for lab in &runnable {
            if let Some((g, t)) = per_lab.get(&lab.id) {
                println!("lab {}: {g}/{t} points", lab.id);
            }
        }
    }
    println!(
        "build {}, tests {}, total {}",
        secs(build_time),
        secs(run_time),
        secs(started.elapsed())
    );
    println!("Score: {got}/{total} points ({passed}/{count} tests passed)");
    if !replays.is_empty() {
        println!();
        println!("replay a failure:");
        for r in &replays {
            println!("  {r}");
        }
        return Ok(1);
    }
    Ok(0)
}

/// `--jobs`, `--seeds` and `--timeout` must each be at least 1.
fn check_run_args(jobs: usize, seeds: Option<u64>, timeout: Option<u64>) -> Result<()> {
    if jobs == 0 {
        return Err(Error::msg("--jobs must be at least 1"));
    }
    if seeds == Some(0) {
        return Err(Error::msg("--seeds must be at least 1"));
    }
    if timeout == Some(0) {
        return Err(Error::msg("--timeout must be at least 1"));
    }
    Ok(())
}

/// The seeds of `--seed S --seeds K`: S, S+1, ..., S+K-1 (S = 1 if not
/// given); just S without K; none without either.
fn seed_list(seed: Option<u64>, seeds: Option<u64>) -> Vec<u64> {
    match (seed, seeds) {
        (_, Some(k)) => {
            let s = seed.unwrap_or(1);
            (0..k).map(|i| s.saturating_add(i)).collect()
        }
        (Some(s), None) => vec![s],
        (None, None) => Vec::new(),
    }
}

fn labs_phrase(labs: &[&manifest::Lab]) -> String {
    let ids: Vec<&str> = labs.iter().map(|l| l.id.as_str()).collect();
    if ids.len() == 1 { format!("lab {}", ids[0]) } else { format!("labs {}", ids.join(", ")) }
}
