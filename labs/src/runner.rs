//! Building graded suites, discovering their tests, and running each graded
//! test in its own process.
//!
//! Suites are built with one
//! `cargo test --workspace --test TARGET ... --no-run --message-format=json-diagnostic-rendered-ansi`
//! (the same package selection as `make test`, so the artifacts are
//! shared; the executables come from the `compiler-artifact` messages; on
//! a failed build the rendered compiler messages are printed), and its tests are
//! listed with `EXE --list --format terse`. Every test found in a suite file
//! must be listed in the manifest under a lab that names that file, and
//! every listed test must exist.
//!
//! Each run is `EXE --exact NAME --test-threads 1 --nocapture` with
//! libtest's JSON events (`-Z unstable-options --format json`, allowed by
//! `RUSTC_BOOTSTRAP=1`) in the package folder, in a process group of its
//! own, with `TINYKV_SEED` set when a seed is given, stdout and stderr
//! captured together, and a timeout. A test passed only if its process
//! exited with status 0 *and* libtest reported it `ok`; when the process
//! ends or times out, its whole process group is killed. Runs go to a pool of worker threads; a test run under several
//! seeds passes only if every seed passes (after a failure, its remaining
//! seeds are skipped).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::manifest::{Lab, MANIFEST_PATH, Manifest, Presence, Suite};

/// The most output kept from one test run (its tail).
const OUTPUT_CAP: u64 = 8 << 20;

/// A cargo workspace to build in.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace root (where cargo runs).
    pub root: PathBuf,
    /// `CARGO_TARGET_DIR` to use, if not the default.
    pub target_dir: Option<PathBuf>,
    /// `CARGO_BUILD_BUILD_DIR` (where cargo keeps intermediate artifacts)
    /// to use, if not the target folder.
    pub build_dir: Option<PathBuf>,
}

impl Workspace {
    /// A cargo command run at the root with the chosen target folder.
    pub fn cargo(&self) -> Command {
        let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root);
        if let Some(t) = &self.target_dir {
            cmd.env("CARGO_TARGET_DIR", t);
        }
        if let Some(b) = &self.build_dir {
            cmd.env("CARGO_BUILD_BUILD_DIR", b);
        }
        cmd
    }

    /// The target folder cargo builds into.
    pub fn effective_target_dir(&self) -> PathBuf {
        if let Some(t) = &self.target_dir {
            return t.clone();
        }
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) if !t.is_empty() => {
                let t = PathBuf::from(t);
                if t.is_absolute() { t } else { self.root.join(t) }
            }
            _ => self.root.join("target"),
        }
    }
}

/// The `--message-format` to ask cargo for: colours only on a terminal.
pub fn message_format() -> &'static str {
    if std::io::stderr().is_terminal() { "json-diagnostic-rendered-ansi" } else { "json" }
}

/// A `compiler-message` from cargo.
#[derive(Debug, Clone)]
pub struct CompilerMessage {
    /// The package the message is about.
    pub package_id: String,
    /// `error`, `warning`, ...
    pub level: String,
    /// The message as rustc renders it for people.
    pub rendered: String,
}

/// A `compiler-artifact` from cargo.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The package's Cargo.toml.
    pub manifest_path: PathBuf,
    /// The target name.
    pub target_name: String,
    /// The target kinds (`lib`, `test`, ...).
    pub kinds: Vec<String>,
    /// Whether this is a test build.
    pub test_profile: bool,
    /// The executable, for binaries and tests.
    pub executable: Option<PathBuf>,
}

/// What a cargo invocation with JSON messages produced.
#[derive(Debug, Clone)]
pub struct CargoOutput {
    /// Whether cargo succeeded.
    pub success: bool,
    /// The artifacts built.
    pub artifacts: Vec<Artifact>,
    /// The compiler messages, in order.
    pub messages: Vec<CompilerMessage>,
    /// Cargo's own stderr, when it was captured (not a terminal).
    pub stderr: String,
}

impl CargoOutput {
    /// The rendered messages, without repeats (a warning shows up once per
    /// target that compiles the file).
    pub fn rendered(&self, filter: &dyn Fn(&CompilerMessage) -> bool) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for m in self.messages.iter().filter(|m| filter(m)) {
            if !m.rendered.is_empty() && seen.insert(m.rendered.clone()) {
                out.push(m.rendered.clone());
            }
        }
        out
    }
}

/// Runs a cargo command that emits JSON messages on stdout.
pub fn run_cargo_json(mut cmd: Command) -> Result<CargoOutput> {
    let capture_stderr = !std::io::stderr().is_terminal();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(if capture_stderr { Stdio::piped() } else { Stdio::inherit() });
    let mut child = cmd.spawn().context(|| "running cargo".to_string())?;
    let stderr_thread = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let mut artifacts = Vec::new();
    let mut messages = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context(|| "reading cargo's output".to_string())?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            match v["reason"].as_str() {
                Some("compiler-message") => messages.push(CompilerMessage {
                    package_id: v["package_id"].as_str().unwrap_or_default().to_string(),
                    level: v["message"]["level"].as_str().unwrap_or_default().to_string(),
                    rendered: v["message"]["rendered"].as_str().unwrap_or_default().to_string(),
                }),
                Some("compiler-artifact") => artifacts.push(Artifact {
                    manifest_path: PathBuf::from(v["manifest_path"].as_str().unwrap_or_default()),
                    target_name: v["target"]["name"].as_str().unwrap_or_default().to_string(),
                    kinds: v["target"]["kind"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                    test_profile: v["profile"]["test"].as_bool().unwrap_or(false),
                    executable: v["executable"].as_str().map(PathBuf::from),
                }),
                _ => {}
            }
        }
    }
    let status = child.wait().context(|| "waiting for cargo".to_string())?;
    let stderr = stderr_thread.and_then(|t| t.join().ok()).unwrap_or_default();
    Ok(CargoOutput { success: status.success(), artifacts, messages, stderr })
}

/// A built suite and the tests it holds.
#[derive(Debug, Clone)]
pub struct BuiltSuite {
    /// The suite file, relative to the root.
    pub path: String,
    /// The test executable.
    pub exe: PathBuf,
    /// Where tests run: the package folder.
    pub cwd: PathBuf,
    /// The tests the executable lists.
    pub tests: Vec<String>,
}

/// Formats a duration as seconds, `0.04 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Builds the given suites and lists their tests. Prints progress; on a
/// failed build prints the diagnostics and returns an error. With
/// `prebuilt` (the output of a successful build of the workspace's test
/// targets), the executables are taken from it and nothing is built.
///
/// The build is one `cargo test --workspace --test T ... --no-run`, for
/// every lab alike: the same package selection as `make test`'s `cargo
/// test --workspace --all-targets`, so cargo resolves the same features
/// and reuses the same artifacts. (`-p PKG` per package resolved other
/// feature sets, and switching between lab targets rebuilt the
/// dependencies each time.)
pub fn build_suites(
    ws: &Workspace,
    suites: &[&Suite],
    prebuilt: Option<&CargoOutput>,
) -> Result<Vec<BuiltSuite>> {
    let mut unique: Vec<&Suite> = Vec::new();
    for suite in suites {
        if suite.package.is_none() {
            bail!("suite {}: no Cargo.toml with a [package] above it", suite.path);
        }
        if !unique.iter().any(|s| s.path == suite.path) {
            unique.push(suite);
        }
    }
    let fresh;
    let out = match prebuilt {
        Some(out) => out,
        None => {
            fresh = build_test_targets(ws, &unique)?;
            &fresh
        }
    };
    let mut built = Vec::new();
    for suite in unique {
        let package = suite.package.as_ref().expect("checked above");
        let manifest_path = ws.root.join(&package.dir).join("Cargo.toml");
        let cwd = ws.root.join(&package.dir);
        let exe = out
            .artifacts
            .iter()
            .find(|a| {
                a.test_profile
                    && a.kinds.iter().any(|k| k == "test")
                    && a.target_name == suite.target
                    && same_file(&a.manifest_path, &manifest_path)
            })
            .and_then(|a| a.executable.clone());
        let Some(exe) = exe else {
            bail!(
                "building {}: cargo reported no test executable `{}` for package {} \
                 (is the file a test target of that package?)",
                suite.path,
                suite.target,
                package.name
            );
        };
        let tests =
            list_tests(&exe, &cwd).map_err(|e| Error::msg(format!("{}: {e}", suite.path)))?;
        built.push(BuiltSuite { path: suite.path.clone(), exe, cwd, tests });
    }
    Ok(built)
}

/// `cargo test --workspace --test T ... --no-run` for the suites' test
/// targets, with progress and diagnostics.
fn build_test_targets(ws: &Workspace, suites: &[&Suite]) -> Result<CargoOutput> {
    let started = Instant::now();
    let mut targets: Vec<&str> = Vec::new();
    for s in suites {
        if !targets.contains(&s.target.as_str()) {
            targets.push(&s.target);
        }
    }
    println!("building {} (test {}) ...", files(suites), targets.join(", "));
    let mut cmd = ws.cargo();
    cmd.args(["test", "--workspace"]);
    for t in &targets {
        cmd.args(["--test", t]);
    }
    cmd.args(["--no-run", "--message-format", message_format()]);
    let out = run_cargo_json(cmd)?;
    for m in out.rendered(&|m| m.level == "warning" || m.level == "error" || !out.success) {
        eprint!("{m}");
    }
    if !out.success {
        if !out.stderr.is_empty() {
            eprint!("{}", out.stderr);
        }
        bail!("build failed ({})", files(suites));
    }
    println!("built in {}", secs(started.elapsed()));
    Ok(out)
}

fn files(suites: &[&Suite]) -> String {
    suites.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ")
}

/// Lists the tests of a libtest executable.
pub fn list_tests(exe: &Path, cwd: &Path) -> Result<Vec<String>> {
    let out = Command::new(exe)
        .args(["--list", "--format", "terse"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .context(|| format!("running {} --list", exe.display()))?;
    if !out.status.success() {
        bail!(
            "`{} --list --format terse` failed ({}): {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_test_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `--list --format terse` output: `name: test` lines.
pub fn parse_test_list(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_string).collect()
}

/// Checks the manifest against the tests found: every test of a suite file
/// is listed under a lab naming that file, every listed test of a lab whose
/// suites were all built exists in one of them. Returns the problems.
pub fn check_tests(manifest: &Manifest, built: &[BuiltSuite]) -> Vec<String> {
    let mut errors = Vec::new();
    for suite in built {
        let owners = manifest.labs_with_suite(&suite.path);
        let owner_ids: Vec<&str> = owners.iter().map(|l| l.id.as_str()).collect();
        for test in &suite.tests {
            if owners.iter().any(|l| l.test(test).is_some()) {
                continue;
            }
            let elsewhere = manifest.labs.iter().find(|l| l.test(test).is_some());
            let hint = match elsewhere {
                Some(l) => format!(
                    "it is listed under lab {}, which does not name this file in `suites`",
                    l.id
                ),
                None => {
                    let lab = owners
                        .iter()
                        .find(|l| test.ends_with(&format!("_{}", l.id)))
                        .or(owners.first())
                        .map(|l| l.id.as_str())
                        .unwrap_or("?");
                    format!("add it with its points under [lab.tests] of lab {lab}")
                }
            };
            errors.push(format!(
                "test `{test}` in {} (a suite of lab {}) is not a graded test in {MANIFEST_PATH}: {hint}",
                suite.path,
                owner_ids.join(", ")
            ));
        }
    }
    for lab in &manifest.labs {
        let mine: Vec<&BuiltSuite> =
            built.iter().filter(|b| lab.suites.iter().any(|s| s.path == b.path)).collect();
        if mine.len() != lab.suites.len() {
            continue; // not all built: not checked this time
        }
        for test in &lab.tests {
            let found: Vec<&str> = mine
                .iter()
                .filter(|b| b.tests.contains(&test.name))
                .map(|b| b.path.as_str())
                .collect();
            if found.is_empty() {
                errors.push(format!(
                    "test `{}` is listed for lab {} in {MANIFEST_PATH} but absent from its suite file(s) {}",
                    test.name,
                    lab.id,
                    lab.suites.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ")
                ));
            } else if found.len() > 1 {
                errors.push(format!(
                    "test `{}` of lab {} is defined in more than one suite file: {}",
                    test.name,
                    lab.id,
                    found.join(", ")
                ));
            }
        }
    }
    errors
}

/// One graded test to run.
#[derive(Debug, Clone)]
pub struct TestJob {
    /// The test name.
    pub name: String,
    /// Its lab.
    pub lab: String,
    /// Its points.
    pub points: u32,
    /// The suite executable.
    pub exe: PathBuf,
    /// The folder to run in.
    pub cwd: PathBuf,
    /// The per-run timeout.
    pub timeout: Duration,
}

/// Builds the suites of `labs` (those present; see [`build_suites`] for
/// `prebuilt`), checks them against the manifest, and returns the jobs for their graded tests (only `only`, if
/// given). Labs whose suites are absent are skipped.
pub fn prepare(
    ws: &Workspace,
    manifest: &Manifest,
    labs: &[&Lab],
    only: Option<&str>,
    prebuilt: Option<&CargoOutput>,
) -> Result<Vec<TestJob>> {
    let labs: Vec<&Lab> =
        labs.iter().copied().filter(|l| manifest.presence(l) == Presence::Present).collect();
    if let Some(name) = only
        && !labs.iter().any(|l| l.test(name).is_some())
    {
        match manifest.labs.iter().find(|l| l.test(name).is_some()) {
            Some(l) => bail!("test `{name}` belongs to lab {}, not to {}", l.id, ids(&labs)),
            None => bail!("no graded test named `{name}` in {}", ids(&labs)),
        }
    }
    let mut suites: Vec<&Suite> = Vec::new();
    for lab in &labs {
        for s in &lab.suites {
            if !suites.iter().any(|x| x.path == s.path) {
                suites.push(s);
            }
        }
    }
    let built = build_suites(ws, &suites, prebuilt)?;
    let errors = check_tests(manifest, &built);
    if !errors.is_empty() {
        bail!("the manifest and the suites disagree:\n  {}", errors.join("\n  "));
    }
    let mut jobs = Vec::new();
    for lab in &labs {
        for test in &lab.tests {
            if only.is_some_and(|n| n != test.name) {
                continue;
            }
            let Some(suite) = built.iter().find(|b| {
                lab.suites.iter().any(|s| s.path == b.path) && b.tests.contains(&test.name)
            }) else {
                bail!("test `{}` of lab {} not found in its suites", test.name, lab.id);
            };
            jobs.push(TestJob {
                name: test.name.clone(),
                lab: lab.id.clone(),
                points: test.points,
                exe: suite.exe.clone(),
                cwd: suite.cwd.clone(),
                timeout: lab.timeout,
            });
        }
    }
    Ok(jobs)
}

fn ids(labs: &[&Lab]) -> String {
    let ids: Vec<&str> = labs.iter().map(|l| l.id.as_str()).collect();
    if ids.len() == 1 { format!("lab {}", ids[0]) } else { format!("labs {}", ids.join(", ")) }
}

/// How to run the jobs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seeds to run each test with; empty means once, without a seed.
    pub seeds: Vec<u64>,
    /// Parallel workers.
    pub jobs: usize,
    /// Override of every test's timeout.
    pub timeout: Option<Duration>,
    /// Where to save the full output of failing runs.
    pub log_dir: Option<PathBuf>,
}

/// The result of a test (over all its seeds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Every run passed.
    Passed,
    /// A run failed (how it exited).
    Failed(String),
    /// A run was killed after the timeout.
    TimedOut(Duration),
    /// The test executable ran no test (ignored or filtered out).
    NotRun,
    /// The process could not be run.
    Error(String),
}

impl Status {
    /// A short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::Failed(_) => "FAILED",
            Status::TimedOut(_) => "TIMEOUT",
            Status::NotRun => "NOT RUN",
            Status::Error(_) => "ERROR",
        }
    }

    /// Whether the test passed.
    pub fn passed(&self) -> bool {
        *self == Status::Passed
    }
}

/// The outcome of one test.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job's index.
    pub job: usize,
    /// Passed or how it failed.
    pub status: Status,
    /// The seed of the reported run (the first failing seed, if any failed).
    pub seed: Option<u64>,
    /// How many runs happened.
    pub runs: usize,
    /// Their total time.
    pub elapsed: Duration,
    /// The output of the failing run (empty when passed).
    pub output: String,
    /// Where the failing run's output was saved.
    pub log: Option<PathBuf>,
}

struct RunResult {
    status: Status,
    elapsed: Duration,
    output: String,
}

/// Runs one test once, in its own process group: when it ends (or is
/// killed at the timeout) the whole group is killed, so nothing it started
/// (a server, a helper process) outlives it.
fn run_once(job: &TestJob, seed: Option<u64>, timeout: Duration) -> RunResult {
    let started = Instant::now();
    let fail = |msg: String| RunResult {
        status: Status::Error(msg),
        elapsed: started.elapsed(),
        output: String::new(),
    };
    let mut file = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => return fail(format!("creating a temporary file: {e}")),
    };
    let (out, err) = match (file.try_clone(), file.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(format!("creating a temporary file: {e}")),
    };
    let mut cmd = Command::new(&job.exe);
    cmd.args(["--exact", &job.name, "--test-threads", "1", "--nocapture"])
        // libtest's own per-test events, as JSON lines (an unstable
        // libtest option: RUSTC_BOOTSTRAP lets a stable test binary take
        // it). The outcome is read from them and the exit status.
        .args(["-Z", "unstable-options", "--format", "json"])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(&job.cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    match seed {
        Some(s) => cmd.env("TINYKV_SEED", s.to_string()),
        None => cmd.env_remove("TINYKV_SEED"),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("running {}: {e}", job.exe.display())),
    };
    let waited = wait_timeout::ChildExt::wait_timeout(&mut child, timeout);
    kill_group(&child);
    let exit = match waited {
        Ok(Some(status)) => Some(status),
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
        Err(e) => return fail(format!("waiting for the test: {e}")),
    };
    let elapsed = started.elapsed();
    let output = read_tail(&mut file);
    let status = match exit {
        None => Status::TimedOut(timeout),
        Some(exit) => judge(exit, libtest_event(&output, &job.name)),
    };
    RunResult { status, elapsed, output }
}

/// Kills the process group that `child` leads (it was started as one),
/// whatever is left in it.
fn kill_group(child: &std::process::Child) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(child.id()) {
            // ESRCH (nothing left) is the usual answer.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// What libtest reported for one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `"event": "ok"`.
    Ok,
    /// `"event": "failed"` (or `"timeout"`).
    Failed,
    /// `"event": "ignored"`.
    Ignored,
    /// No result for it: the process ended before libtest reported one.
    Missing,
}

/// libtest's result for test `name` in `output`, from its JSON event
/// lines (`{ "type": "test", "name": ..., "event": ... }`). A line may
/// start with what the test printed without a newline; only complete JSON
/// objects count.
pub fn libtest_event(output: &str, name: &str) -> Event {
    let mut event = Event::Missing;
    for line in output.lines() {
        let Some(v) = json_event(line) else { continue };
        if v.get("type").and_then(Value::as_str) != Some("test")
            || v.get("name").and_then(Value::as_str) != Some(name)
        {
            continue;
        }
        match v.get("event").and_then(Value::as_str) {
            Some("ok") => event = Event::Ok,
            Some("failed" | "timeout") => event = Event::Failed,
            Some("ignored") => event = Event::Ignored,
            _ => {}
        }
    }
    event
}

/// The libtest JSON event at the end of `line`, if there is one.
fn json_event(line: &str) -> Option<Value> {
    let at = line.find("{ \"type\": \"")?;
    serde_json::from_str::<Value>(&line[at..]).ok().filter(Value::is_object)
}

/// The status of a run that exited with `exit` after libtest reported
/// `event`: it passed only if both say so.
pub fn judge(exit: std::process::ExitStatus, event: Event) -> Status {
    match (exit.success(), event) {
        (true, Event::Ok) => Status::Passed,
        (true, Event::Ignored) => Status::NotRun,
        (true, Event::Missing) => Status::Failed(
            "the process exited with status 0 before libtest reported the test's result \
             (std::process::exit in the code under test?)"
                .to_string(),
        ),
        (true, Event::Failed) => Status::Failed("libtest reported a failure".to_string()),
        (false, _) => Status::Failed(describe_exit(exit)),
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match s.code() {
        Some(c) => format!("exit code {c}"),
        None => s.to_string(),
    }
}

fn read_tail(file: &mut std::fs::File) -> String {
    let len = file.seek(SeekFrom::End(0)).unwrap_or(0);
    let start = len.saturating_sub(OUTPUT_CAP);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.read_to_end(&mut buf);
    }
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        s.insert_str(0, &format!("[... {start} bytes of output omitted ...]\n"));
    }
    s
}

#[derive(Default)]
struct Tally {
    remaining: usize,
    runs: usize,
    elapsed: Duration,
    failure: Option<(Option<u64>, RunResult)>,
    last_seed: Option<u64>,
}

/// Runs the jobs on `opts.jobs` workers. `on_done(done, total, job,
/// outcome)` is called on this thread as each test finishes. Returns the
/// outcomes in job order.
pub fn run_jobs(
    jobs: &[TestJob],
    opts: &RunOptions,
    on_done: &mut dyn FnMut(usize, usize, &TestJob, &Outcome),
) -> Vec<Outcome> {
    let seeds: Vec<Option<u64>> = if opts.seeds.is_empty() {
        vec![None]
    } else {
        opts.seeds.iter().copied().map(Some).collect()
    };
    let queue: Mutex<VecDeque<(usize, Option<u64>)>> =
        Mutex::new((0..jobs.len()).flat_map(|j| seeds.iter().map(move |&s| (j, s))).collect());
    let failed: Vec<AtomicBool> = jobs.iter().map(|_| AtomicBool::new(false)).collect();
    let mut tallies: Vec<Tally> =
        jobs.iter().map(|_| Tally { remaining: seeds.len(), ..Tally::default() }).collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    let workers = opts.jobs.max(1).min(jobs.len() * seeds.len()).max(1);
    let mut done = 0;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Option<u64>, Option<RunResult>)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let queue = &queue;
            let failed = &failed;
            scope.spawn(move || {
                loop {
                    let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                    let Some((j, seed)) = next else { break };
                    if failed[j].load(Ordering::SeqCst) {
                        let _ = tx.send((j, seed, None));
                        continue;
                    }
                    let job = &jobs[j];
                    let result = run_once(job, seed, opts.timeout.unwrap_or(job.timeout));
                    if !result.status.passed() {
                        failed[j].store(true, Ordering::SeqCst);
                    }
                    let _ = tx.send((j, seed, Some(result)));
                }
            });
        }
        drop(tx);
        for (j, seed, result) in rx {
            let t = &mut tallies[j];
            t.remaining -= 1;
            if let Some(r) = result {
                t.runs += 1;
                t.elapsed += r.elapsed;
                t.last_seed = seed;
                if !r.status.passed() {
                    let earlier = match &t.failure {
                        None => true,
                        Some((s, _)) => seed < *s,
                    };
                    if earlier {
                        t.failure = Some((seed, r));
                    }
                }
            }
            if t.remaining == 0 {
                done += 1;
                let t = std::mem::take(t);
                let outcome = match t.failure {
                    None => Outcome {
                        job: j,
                        status: Status::Passed,
                        seed: t.last_seed,
                        runs: t.runs,
                        elapsed: t.elapsed,
                        output: String::new(),
                        log: None,
                    },
                    Some((seed, r)) => {
                        let log = opts
                            .log_dir
                            .as_ref()
                            .and_then(|dir| save_log(dir, &jobs[j].name, seed, &r.output));
                        Outcome {
                            job: j,
                            status: r.status,
                            seed,
                            runs: t.runs,
                            elapsed: t.elapsed,
                            output: r.output,
                            log,
                        }
                    }
                };
                on_done(done, jobs.len(), &jobs[j], &outcome);
                outcomes[j] = Some(outcome);
            }
        }
    });
    outcomes.into_iter().flatten().collect()
}

fn save_log(dir: &Path, name: &str, seed: Option<u64>, output: &str) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let file = match seed {
        Some(s) => dir.join(format!("{name}.seed-{s}.log")),
        None => dir.join(format!("{name}.log")),
    };
    std::fs::write(&file, output).ok()?;
    Some(file)
}

/// The output worth showing for a failure: libtest's framing lines and
/// backtraces removed, then the last `max` lines.
pub fn failure_excerpt(output: &str, name: &str, max: usize) -> Vec<String> {
    let prefix = format!("test {name} ... ");
    let listed = format!("    {name}");
    let mut lines: Vec<String> = Vec::new();
    let mut in_backtrace = false;
    for line in output.lines() {
        if in_backtrace {
            let t = line.trim_start();
            let frame =
                t.split_once(": ").is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
            if frame || t.starts_with("at ") {
                continue;
            }
            in_backtrace = false;
            if t.starts_with("note: Some details are omitted") {
                continue;
            }
        }
        if line == "stack backtrace:" {
            in_backtrace = true;
            continue;
        }
        if line == "running 1 test"
            || line == "failures:"
            || line == "FAILED"
            || line == listed
            || line.starts_with("test result: ")
        {
            continue;
        }
        // libtest's JSON events: keep only what the test printed before
        // one on the same line.
        let line = match json_event(line) {
            Some(_) => match line.find("{ \"type\": \"") {
                Some(0) | None => continue,
                Some(at) => &line[..at],
            },
            None => line,
        };
        let line = line.strip_prefix(&prefix).unwrap_or(line);
        if line.is_empty() && lines.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        lines.push(line.to_string());
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let skip = lines.len().saturating_sub(max);
    lines.split_off(skip)
}

/// A seed the test printed as `TINYKV_SEED=<n>` (the last one), for replay
/// when the run was not given a seed.
pub fn seed_in_output(output: &str) -> Option<u64> {
    let key = "TINYKV_SEED=";
    output.rmatch_indices(key).find_map(|(i, _)| {
        let digits: String =
            output[i + key.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    })
}

/// Whether the output mentions `lab <id>` as a word.
pub fn mentions_lab(output: &str, id: &str) -> bool {
    let needle = format!("lab {id}");
    output.match_indices(&needle).any(|(i, _)| {
        let before = output[..i].chars().next_back();
        let after = output[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric()) && !after.is_some_and(|c| c.is_alphanumeric())
    })
}

/// Counts passed tests and points.
pub fn score(jobs: &[TestJob], outcomes: &[Outcome]) -> (u32, u32, usize, usize) {
    let mut got = 0;
    let mut total = 0;
    let mut passed = 0;
    for o in outcomes {
        let job = &jobs[o.job];
        total += job.points;
        if o.status.passed() {
            got += job.points;
            passed += 1;
        }
    }
    (got, total, passed, outcomes.len())
}

/// Per-lab `(points got, points total)`, in job order.
pub fn per_lab(jobs: &[TestJob], outcomes: &[Outcome]) -> BTreeMap<String, (u32, u32)> {
    let mut m: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for o in outcomes {
        let job = &jobs[o.job];
        let e = m.entry(job.lab.clone()).or_default();
        e.1 += job.points;
        if o.status.passed() {
            e.0 += job.points;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_list_parsing() {
        let text = "a_1: test\nm::b_1: test\nbench_x: benchmark\n\n";
        assert_eq!(parse_test_list(text), vec!["a_1", "m::b_1"]);
    }

    #[test]
    fn excerpt_drops_framing_and_backtraces() {
        let out = "\nrunning 1 test\ntest bad_1 ... some output\nerr out\n\nthread 'bad_1' (6140) panicked at tests/suite.rs:2:69:\nlab 1: boom\nstack backtrace:\n   0: __rustc::rust_begin_unwind\n             at /rustc/x/panicking.rs:689:5\n   1: suite::bad_1\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\nFAILED\n\nfailures:\n\nfailures:\n    bad_1\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.19s\n\n";
        assert_eq!(
            failure_excerpt(out, "bad_1", 25),
            vec![
                "some output",
                "err out",
                "",
                "thread 'bad_1' (6140) panicked at tests/suite.rs:2:69:",
                "lab 1: boom"
            ]
        );
        assert_eq!(
            failure_excerpt(out, "bad_1", 2),
            vec!["thread 'bad_1' (6140) panicked at tests/suite.rs:2:69:", "lab 1: boom"]
        );
    }

    #[test]
    fn libtest_events_decide_not_the_text() {
        let ok = r#"{ "type": "test", "name": "a_1", "event": "ok", "exec_time": 0.1 }"#;
        let failed = r#"{ "type": "test", "name": "a_1", "event": "failed" }"#;
        let ignored = r#"{ "type": "test", "name": "a_1", "event": "ignored" }"#;
        let other = r#"{ "type": "test", "name": "b_1", "event": "ok" }"#;
        assert_eq!(libtest_event(&format!("noise\n{ok}\n"), "a_1"), Event::Ok);
        // What the test printed without a newline comes first.
        assert_eq!(libtest_event(&format!("partial{ok}\n"), "a_1"), Event::Ok);
        assert_eq!(libtest_event(&format!("{failed}\n"), "a_1"), Event::Failed);
        assert_eq!(libtest_event(&format!("{ignored}\n"), "a_1"), Event::Ignored);
        assert_eq!(libtest_event(&format!("{other}\n"), "a_1"), Event::Missing);
        // Free text that merely looks like a pass is not one.
        let text = "test a_1 ... ok\ntest result: ok. 1 passed; 0 failed";
        assert_eq!(libtest_event(text, "a_1"), Event::Missing);
        let broken = r#"{ "type": "test", "name": "a_1", "event": "ok""#;
        assert_eq!(libtest_event(broken, "a_1"), Event::Missing);
    }

    #[cfg(unix)]
    #[test]
    fn a_pass_needs_both_exit_status_and_event() {
        use std::os::unix::process::ExitStatusExt;
        let exit = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        assert_eq!(judge(exit(0), Event::Ok), Status::Passed);
        assert_eq!(judge(exit(0), Event::Ignored), Status::NotRun);
        assert!(matches!(judge(exit(0), Event::Missing), Status::Failed(_)));
        assert!(matches!(judge(exit(101), Event::Ok), Status::Failed(_)));
        assert_eq!(judge(exit(101), Event::Failed), Status::Failed("exit code 101".into()));
    }

    #[test]
    fn excerpt_drops_libtest_events() {
        let out = "{ \"type\": \"suite\", \"event\": \"started\", \"test_count\": 1 }\n\
                   half{ \"type\": \"test\", \"event\": \"started\", \"name\": \"bad_1\" }\n\
                   lab 1: boom\n";
        assert_eq!(failure_excerpt(out, "bad_1", 25), vec!["half", "lab 1: boom"]);
    }

    #[test]
    fn seeds_and_lab_mentions() {
        assert_eq!(seed_in_output("x TINYKV_SEED=12 y\nTINYKV_SEED=345\n"), Some(345));
        assert_eq!(seed_in_output("TINYKV_SEED=\n"), None);
        assert!(mentions_lab("not yet implemented: lab 2b: propose", "2b"));
        assert!(mentions_lab("(lab 1)", "1"));
        assert!(!mentions_lab("lab 2bc", "2b"));
        assert!(!mentions_lab("lab 12", "1"));
        assert!(!mentions_lab("collab 1", "1"));
    }
}
