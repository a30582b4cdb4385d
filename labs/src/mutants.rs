//! `labs mutants`: how many realistic mistakes in a lab's solution its
//! graded suite catches.
//!
//! cargo-mutants does the mutating. This module restricts it to the lab:
//!
//! 1. The tree is mirrored into `target/mutants/tree` (only changed files
//!    are rewritten, so the build there, in `target/mutants/target`, stays
//!    warm between runs) and cargo-mutants runs `--in-place` in the mirror:
//!    the instructor's own files are never touched.
//! 2. The lab's solution regions (the lines between `SOLUTION BEGIN lab X`
//!    and `SOLUTION STUB` or `SOLUTION END`) are written as a diff that adds
//!    them, and cargo-mutants is given it with `--in-diff`: only mutants
//!    touching those lines are generated.
//! 3. The mutants listed in `labs/equivalent-mutants.toml` (reviewed: they
//!    cannot change behaviour) are left out; `--sample N` picks N of the
//!    others reproducibly from `--seed`.
//! 4. Each mutant is tested with the lab's graded tests only: the suites'
//!    packages (`test_package`), their test targets and the graded test
//!    names (`--exact`), through a cargo-mutants config file. The baseline
//!    (the same tests on the unmutated tree, which sets the timeout) is
//!    run here, with cargo-mutants at `--baseline=skip`: its own tests only
//!    the mutated packages.
//! 5. Entries with `killed_by` are tested with that later lab's tests.
//! 6. `mutants.out/outcomes.json` is read back into a [`Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::manifest::{Lab, Manifest};
use crate::runner::Workspace;
use crate::{bail, markers, walk};

/// The reviewed list of equivalent mutants, relative to the root.
pub const EQUIVALENT_PATH: &str = "labs/equivalent-mutants.toml";

/// What `labs mutants` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The lab whose solution regions are mutated.
    pub lab: String,
    /// Test only this many mutants, picked from `seed`.
    pub sample: Option<usize>,
    /// The sampling seed.
    pub seed: u64,
    /// cargo-mutants jobs (each above one builds in its own copy).
    pub jobs: usize,
    /// Per-mutant test timeout (default: five times the graded tests'
    /// time on the unmutated tree, at least 20 s).
    pub timeout: Option<u64>,
    /// Only list the mutants that would be tested.
    pub list: bool,
}

/// One mutant's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MutantReport {
    /// The file, relative to the root.
    pub file: String,
    /// The line the mutation is on.
    pub line: usize,
    /// The function it is in.
    pub function: String,
    /// What was changed (cargo-mutants' description, without the place).
    pub mutation: String,
    /// killed, survived, timeout, unviable, equivalent, later (killed by
    /// a later lab's suite only) or untested.
    pub status: String,
    /// Why an equivalent mutant cannot change behaviour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Counts of one file, or of the lab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Mutants the suite failed on.
    pub killed: usize,
    /// Mutants the suite passed with.
    pub survived: usize,
    /// Mutants the suite ran out of time on (counted as killed: the tests
    /// did not pass).
    pub timeout: usize,
    /// Mutants that did not build (not counted).
    pub unviable: usize,
    /// Mutants in the equivalent list (not run, not counted).
    pub equivalent: usize,
    /// Mutants the lab's suite cannot see, listed with the later lab whose
    /// suite killed them (this run checked it); counted as viable, not as
    /// killed.
    pub later: usize,
}

impl Tally {
    fn add(&mut self, status: &str) {
        match status {
            "killed" => self.killed += 1,
            "survived" => self.survived += 1,
            "timeout" => self.timeout += 1,
            "unviable" => self.unviable += 1,
            "equivalent" => self.equivalent += 1,
            "later" => self.later += 1,
            _ => {}
        }
    }

    /// Viable, non-equivalent mutants that were tested.
    pub fn viable(&self) -> usize {
        self.killed + self.survived + self.timeout + self.later
    }

    /// Killed (or timed out) per viable mutant, as a percentage; `None`
    /// when nothing viable was tested.
    pub fn kill_rate(&self) -> Option<f64> {
        let v = self.viable();
        (v > 0).then(|| 100.0 * (self.killed + self.timeout) as f64 / v as f64)
    }
}

/// The result of `labs mutants`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The lab.
    pub lab: String,
    /// Solution regions of the lab, and their lines.
    pub regions: usize,
    /// Lines inside them.
    pub region_lines: usize,
    /// Mutants cargo-mutants generates in the regions.
    pub mutants_in_regions: usize,
    /// Of them, in the equivalent list.
    pub equivalent: usize,
    /// Mutants tested (all others, or the sample).
    pub tested: usize,
    /// The sample size and seed, when sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<usize>,
    /// The sampling seed.
    pub seed: u64,
    /// Counts for the lab.
    pub total: Tally,
    /// Counts per file.
    pub files: BTreeMap<String, Tally>,
    /// The mutants that survived, for review.
    pub survivors: Vec<MutantReport>,
    /// Entries of the equivalent list for this lab that match no mutant
    /// (a changed line or a misspelt mutation): fix or remove them.
    pub stale_entries: Vec<String>,
    /// Every mutant tested or skipped as equivalent.
    pub mutants: Vec<MutantReport>,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Where cargo-mutants' own output (logs, diffs) is.
    pub output_dir: String,
}

/// An entry of `labs/equivalent-mutants.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equivalent {
    /// The lab.
    pub lab: String,
    /// The file, relative to the root.
    pub file: String,
    /// The function, as cargo-mutants names it (`Type::method`).
    pub function: String,
    /// The mutation, as cargo-mutants describes it without the place
    /// (`replace == with != in Type::method`).
    pub mutation: String,
    /// Why it cannot change behaviour, or (with `killed_by`) why the lab's
    /// own suite cannot see it.
    pub why: String,
    /// A later lab whose graded suite kills it (for code a lab writes but
    /// only a later lab exercises, such as a dispatch arm for commands
    /// that do not exist yet). Not counted as killed; every run checks it
    /// with that lab's suite.
    #[serde(default)]
    pub killed_by: Option<String>,
    /// The line, only where two mutants of one function have the same
    /// description (it then has to follow edits).
    #[serde(default)]
    pub line: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EquivalentFile {
    #[serde(default)]
    mutant: Vec<Equivalent>,
}

/// Reads the equivalent list (empty if the file does not exist).
pub fn load_equivalents(root: &Path) -> Result<Vec<Equivalent>> {
    let path = root.join(EQUIVALENT_PATH);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
    let file: EquivalentFile =
        toml::from_str(&text).map_err(|e| Error::msg(format!("{EQUIVALENT_PATH}: {e}")))?;
    for e in &file.mutant {
        if e.why.trim().is_empty() {
            bail!("{EQUIVALENT_PATH}: {} `{}` has no `why`", e.file, e.mutation);
        }
    }
    Ok(file.mutant)
}

/// A mutant as cargo-mutants lists it (`--list --json`) and reports it
/// (`outcomes.json`, `scenario.Mutant`).
#[derive(Debug, Clone, Deserialize)]
pub struct Mutant {
    /// `file:line:col: description`.
    pub name: String,
    /// The file, relative to the tree.
    pub file: String,
    /// The function holding it.
    pub function: Option<Function>,
    /// Where the change is.
    pub span: Span,
}

/// The function a mutant is in.
#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    /// `Type::method` or `function`.
    pub function_name: String,
}

/// A source span.
#[derive(Debug, Clone, Deserialize)]
pub struct Span {
    /// Its first position.
    pub start: LineCol,
}

/// A 1-based position.
#[derive(Debug, Clone, Deserialize)]
pub struct LineCol {
    /// The line.
    pub line: usize,
}

impl Mutant {
    /// The description without the `file:line:col: ` prefix.
    pub fn mutation(&self) -> &str {
        let prefix_end = self.name.match_indices(": ").next().map(|(i, _)| i + 2).unwrap_or(0);
        &self.name[prefix_end..]
    }

    fn function_name(&self) -> String {
        self.function.as_ref().map(|f| f.function_name.clone()).unwrap_or_default()
    }

    fn is(&self, e: &Equivalent) -> bool {
        e.file == self.file
            && e.function == self.function_name()
            && e.mutation == self.mutation()
            && e.line.is_none_or(|l| l == self.span.start.line)
    }
}

/// A solution region's lines: the file, the first line and the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionLines {
    /// The file, relative to the root.
    pub file: String,
    /// The 1-based line number of the first solution line.
    pub first: usize,
    /// The solution lines, without line endings.
    pub lines: Vec<String>,
}

/// Every solution region of `lab` in the tree: its solution lines (not the
/// markers, not the stub).
pub fn solution_lines(root: &Path, lab: &str) -> Result<Vec<RegionLines>> {
    let mut out = Vec::new();
    for entry in walk::walk(root)? {
        if entry.kind != walk::Kind::File || !entry.rel.ends_with(".rs") {
            continue;
        }
        let Some(leader) = markers::leader_for(Path::new(&entry.rel)) else { continue };
        let Ok(text) = std::fs::read_to_string(root.join(&entry.rel)) else { continue };
        let regions = markers::scan(&text, leader)
            .map_err(|e| Error::msg(format!("{}:{}: {}", entry.rel, e.line, e.message)))?;
        let lines: Vec<&str> = text.lines().collect();
        for r in regions.iter().filter(|r| r.lab == lab) {
            let last = r.stub.unwrap_or(r.end) - 1;
            if last > r.begin {
                out.push(RegionLines {
                    file: entry.rel.clone(),
                    first: r.begin + 1,
                    lines: lines[r.begin..last].iter().map(|s| s.to_string()).collect(),
                });
            }
        }
    }
    Ok(out)
}

/// A unified diff that adds the regions' lines to files that lacked them:
/// one zero-context hunk per region. cargo-mutants' `--in-diff` then
/// generates only mutants on those lines.
pub fn region_diff(regions: &[RegionLines]) -> String {
    let mut by_file: BTreeMap<&str, Vec<&RegionLines>> = BTreeMap::new();
    for r in regions {
        by_file.entry(&r.file).or_default().push(r);
    }
    let mut diff = String::new();
    for (file, mut rs) in by_file {
        rs.sort_by_key(|r| r.first);
        diff.push_str(&format!("--- a/{file}\n+++ b/{file}\n"));
        let mut added = 0;
        for r in rs {
            // In the "old" file (without any region) the hunk goes after
            // line `first - 1 - added`.
            let old = r.first - 1 - added;
            diff.push_str(&format!("@@ -{old},0 +{},{} @@\n", r.first, r.lines.len()));
            for l in &r.lines {
                diff.push('+');
                diff.push_str(l);
                diff.push('\n');
            }
            added += r.lines.len();
        }
    }
    diff
}

/// A small deterministic generator (SplitMix64) for sampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `n` of `0..len`, picked from `seed`, in increasing order (all of them
/// when `n >= len`).
pub fn sample_indices(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    if n < len {
        let mut rng = SplitMix64(seed);
        // A partial Fisher-Yates shuffle: the first n are the sample.
        for i in 0..n {
            let j = i + (rng.next() % (len - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(n);
        idx.sort_unstable();
    }
    idx
}

/// `text` as a regex matching itself literally.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The packages holding the lab's suites, and the `cargo test` arguments
/// after the packages that run exactly its graded tests.
fn suite_selection(lab: &Lab) -> Result<(Vec<String>, Vec<String>)> {
    let mut packages = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for s in &lab.suites {
        let Some(p) = &s.package else {
            bail!("lab {}: no cargo package holds the suite {}", lab.id, s.path);
        };
        packages.insert(p.name.clone());
        targets.insert(s.target.clone());
    }
    let mut test_args: Vec<String> = targets.iter().map(|t| format!("--test={t}")).collect();
    test_args.push("--".into());
    test_args.push("--exact".into());
    test_args.extend(lab.tests.iter().map(|t| t.name.clone()));
    Ok((packages.into_iter().collect(), test_args))
}

/// The cargo-mutants config that tests each mutant with the lab's graded
/// tests only and examines exactly `names`.
fn config_toml(lab: &Lab, names: &[&str]) -> Result<String> {
    let (packages, test_args) = suite_selection(lab)?;
    let examine: Vec<String> = names.iter().map(|n| format!("^{}$", regex_escape(n))).collect();
    let mut table = toml::Table::new();
    let strings =
        |v: Vec<String>| toml::Value::Array(v.into_iter().map(toml::Value::String).collect());
    table.insert("test_package".into(), strings(packages));
    table.insert("additional_cargo_test_args".into(), strings(test_args));
    table.insert("examine_re".into(), strings(examine));
    toml::to_string(&table)
        .map_err(|e| Error::msg(format!("writing the cargo-mutants config: {e}")))
}

/// The lowest per-mutant test timeout, and how many times the unmutated
/// suites' time a mutant may take (cargo-mutants' own defaults).
const MIN_TIMEOUT_SECS: u64 = 20;
const TIMEOUT_MULTIPLIER: f64 = 5.0;

/// Builds and runs the lab's graded tests on the unmutated mirror, the way
/// cargo-mutants runs them for each mutant; the per-mutant timeout from
/// the time they took. (cargo-mutants' own baseline tests only the mutated
/// packages, which fails when a lab's suites live in another package, as
/// the simulator's do: so it runs with `--baseline=skip`.)
fn baseline(lab: &Lab, tree: &Path, target: &Path) -> Result<u64> {
    let (packages, test_args) = suite_selection(lab)?;
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_test = |extra: &[&str]| -> Result<(std::process::ExitStatus, Duration)> {
        let mut cmd = Command::new(&program);
        cmd.arg("test").current_dir(tree).env("CARGO_TARGET_DIR", target);
        for p in &packages {
            cmd.arg(format!("--package={p}"));
        }
        let (before, after) =
            test_args.split_at(test_args.iter().position(|a| a == "--").unwrap_or(0));
        cmd.args(before).args(extra).args(after);
        let started = Instant::now();
        let status = cmd.status().map_err(|e| Error::msg(format!("running cargo test: {e}")))?;
        Ok((status, started.elapsed()))
    };
    eprintln!("building the unmutated tree and running lab {}'s graded tests on it", lab.id);
    let (built, _) = cargo_test(&["--no-run"])?;
    if !built.success() {
        bail!("the unmutated tree does not build ({built}): fix it before testing mutants");
    }
    let (passed, took) = cargo_test(&[])?;
    if !passed.success() {
        bail!(
            "lab {}'s graded tests fail on the unmutated tree ({passed}): a mutant can only be \
             judged against suites that pass",
            lab.id
        );
    }
    let secs = (took.as_secs_f64() * TIMEOUT_MULTIPLIER).ceil() as u64;
    Ok(secs.max(MIN_TIMEOUT_SECS))
}

/// Mirrors the course tree into `dst`: files whose content differs are
/// written, files no longer in the tree removed; unchanged files keep their
/// modification time so that cargo's build there stays warm.
fn mirror(root: &Path, dst: &Path) -> Result<()> {
    let entries = walk::walk(root)?;
    let wanted: BTreeSet<&str> = entries.iter().map(|e| e.rel.as_str()).collect();
    for e in &entries {
        let src = root.join(&e.rel);
        let to = dst.join(&e.rel);
        let data = std::fs::read(&src).context(|| format!("reading {}", src.display()))?;
        if std::fs::read(&to).ok().as_deref() == Some(&data[..]) {
            continue;
        }
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&to, &data).context(|| format!("writing {}", to.display()))?;
    }
    if dst.is_dir() {
        for e in walk::walk(dst)? {
            if !wanted.contains(e.rel.as_str()) {
                let p = dst.join(&e.rel);
                std::fs::remove_file(&p).context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Runs cargo-mutants, with `args`, in the mirror.
fn cargo_mutants(tree: &Path, target: &Path, args: &[String]) -> Result<std::process::Output> {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.arg("mutants").args(args).current_dir(tree).env("CARGO_TARGET_DIR", target);
    cmd.output().map_err(|e| Error::msg(format!("running cargo mutants: {e}")))
}

fn check_installed(tree: &Path, target: &Path) -> Result<()> {
    match cargo_mutants(tree, target, &["--version".into()]) {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "cargo-mutants is not installed: `cargo install --locked cargo-mutants` (tested with 27.1.0)"
        ),
    }
}

/// Lists the mutants cargo-mutants generates on `diff` in the mirror.
fn list_mutants(tree: &Path, target: &Path, diff: &Path) -> Result<Vec<Mutant>> {
    let args = vec![
        "--list".to_string(),
        "--json".into(),
        "--no-config".into(),
        format!("--in-diff={}", diff.display()),
    ];
    let out = cargo_mutants(tree, target, &args)?;
    if !out.status.success() {
        bail!("cargo mutants --list failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        // cargo-mutants prints nothing (not `[]`) when the diff holds no
        // mutable code.
        return Ok(Vec::new());
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::msg(format!("reading cargo mutants --list: {e}")))
}

#[derive(Debug, Deserialize)]
struct Outcomes {
    outcomes: Vec<Outcome>,
}

#[derive(Debug, Deserialize)]
struct Outcome {
    scenario: serde_json::Value,
    summary: String,
}

/// The status of each mutant in cargo-mutants' `outcomes.json`, by name.
fn read_outcomes(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    let o: Outcomes =
        serde_json::from_str(&text).context(|| format!("reading {}", path.display()))?;
    let mut out = BTreeMap::new();
    for oc in o.outcomes {
        let Some(m) = oc.scenario.get("Mutant") else { continue };
        let m: Mutant = serde_json::from_value(m.clone())
            .context(|| format!("reading a mutant in {}", path.display()))?;
        out.insert(m.name, status_of(&oc.summary).to_string());
    }
    Ok(out)
}

/// Our name for a cargo-mutants outcome summary.
pub fn status_of(summary: &str) -> &'static str {
    match summary {
        "CaughtMutant" => "killed",
        "MissedMutant" => "survived",
        "Timeout" => "timeout",
        "Unviable" => "unviable",
        _ => "untested",
    }
}

/// Where and how cargo-mutants runs.
struct MutantsRun<'a> {
    tree: &'a Path,
    target: &'a Path,
    diff: &'a Path,
    opts: &'a Options,
}

impl MutantsRun<'_> {
    /// Tests the mutants named `names` with `suites_of`'s graded tests (in
    /// `out`, config file `config_name`); each one's outcome status by name.
    fn test(
        &self,
        suites_of: &Lab,
        names: &[&str],
        out: &Path,
        config_name: &str,
    ) -> Result<BTreeMap<String, String>> {
        std::fs::create_dir_all(out).context(|| format!("creating {}", out.display()))?;
        let config = out.join(config_name);
        std::fs::write(&config, config_toml(suites_of, names)?)
            .context(|| format!("writing {}", config.display()))?;
        let mut args = vec![
            format!("--config={}", config.display()),
            format!("--in-diff={}", self.diff.display()),
            format!("--output={}", out.display()),
            "--no-shuffle".into(),
            "--colors=never".into(),
        ];
        if self.opts.jobs > 1 {
            args.push(format!("--jobs={}", self.opts.jobs));
        } else {
            args.push("--in-place".into());
        }
        let measured = baseline(suites_of, self.tree, self.target)?;
        let timeout = self.opts.timeout.unwrap_or(measured);
        args.push("--baseline=skip".into());
        args.push(format!("--timeout={timeout}"));
        eprintln!("each mutant's tests get {timeout} s");
        let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // Progress goes straight to the terminal.
        let status = Command::new(program)
            .arg("mutants")
            .args(&args)
            .current_dir(self.tree)
            .env("CARGO_TARGET_DIR", self.target)
            .status()
            .map_err(|e| Error::msg(format!("running cargo mutants: {e}")))?;
        let outcomes = out.join("mutants.out").join("outcomes.json");
        // cargo-mutants exits 2 when mutants survive, 3 on timeouts: both
        // are results. Anything else without an outcomes file is a failure.
        if !outcomes.is_file() || !matches!(status.code(), Some(0 | 2 | 3)) {
            bail!(
                "cargo mutants failed ({status}); see {}",
                out.join("mutants.out").join("debug.log").display()
            );
        }
        read_outcomes(&outcomes)
    }
}

/// Runs `labs mutants`.
pub fn run(m: &Manifest, opts: &Options) -> Result<Report> {
    let started = Instant::now();
    let Some(lab) = m.lab(&opts.lab) else {
        bail!("no lab `{}` (labs: {})", opts.lab, m.lab_ids().join(", "));
    };
    if !lab.has_tests() {
        bail!("lab {} has no graded tests, so nothing can kill a mutant", lab.id);
    }
    let own = Workspace { root: m.root.clone(), target_dir: None, build_dir: None };
    let base = own.effective_target_dir().join("mutants");
    let tree = base.join("tree");
    let target = base.join("target");
    let out_dir = base.join(&lab.id);
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    check_installed(&m.root, &target)?;

    let regions = solution_lines(&m.root, &lab.id)?;
    if regions.is_empty() {
        bail!("lab {} has no solution regions (SOLUTION BEGIN lab {})", lab.id, lab.id);
    }
    eprintln!("mirroring the tree into {}", tree.display());
    mirror(&m.root, &tree)?;
    let diff_path = out_dir.join("regions.diff");
    std::fs::write(&diff_path, region_diff(&regions))
        .context(|| format!("writing {}", diff_path.display()))?;

    let all = list_mutants(&tree, &target, &diff_path)?;
    let equivalents: Vec<Equivalent> =
        load_equivalents(&m.root)?.into_iter().filter(|e| e.lab == lab.id).collect();
    let stale_entries = stale(&equivalents, &all);
    let mut mutants = Vec::new();
    let mut candidates = Vec::new();
    let mut deferred: BTreeMap<String, Vec<(&Mutant, String)>> = BTreeMap::new();
    for mu in &all {
        match equivalents.iter().find(|e| mu.is(e)) {
            Some(Equivalent { killed_by: Some(later), why, .. }) => {
                deferred.entry(later.clone()).or_default().push((mu, why.clone()));
            }
            Some(e) => mutants.push(report_of(mu, "equivalent", Some(e.why.clone()))),
            None => candidates.push(mu),
        }
    }
    let picked: Vec<&Mutant> = match opts.sample {
        Some(n) => sample_indices(candidates.len(), n, opts.seed)
            .into_iter()
            .map(|i| candidates[i])
            .collect(),
        None => candidates.clone(),
    };
    let statuses = if opts.list || picked.is_empty() {
        BTreeMap::new()
    } else {
        eprintln!(
            "testing {} of {} mutants in lab {}'s {} solution regions with its {} graded tests \
             (cargo-mutants output in {})",
            picked.len(),
            all.len(),
            lab.id,
            regions.len(),
            lab.tests.len(),
            out_dir.display()
        );
        let names: Vec<&str> = picked.iter().map(|mu| mu.name.as_str()).collect();
        let run = MutantsRun { tree: &tree, target: &target, diff: &diff_path, opts };
        run.test(lab, &names, &out_dir, "mutants.toml")?
    };
    for mu in &picked {
        let status = statuses.get(&mu.name).map(String::as_str).unwrap_or("untested");
        mutants.push(report_of(mu, status, None));
    }
    let run = MutantsRun { tree: &tree, target: &target, diff: &diff_path, opts };
    for (later_id, listed) in &deferred {
        let Some(later) = m.lab(later_id) else {
            bail!("{EQUIVALENT_PATH}: killed_by names no lab `{later_id}`");
        };
        let statuses = if opts.list || opts.sample.is_some() {
            BTreeMap::new()
        } else {
            eprintln!(
                "testing {} mutants of lab {} that its suite cannot see with lab {}'s graded \
                 tests (listed in {EQUIVALENT_PATH})",
                listed.len(),
                lab.id,
                later.id
            );
            let names: Vec<&str> = listed.iter().map(|(mu, _)| mu.name.as_str()).collect();
            run.test(later, &names, &out_dir.join(format!("later-{}", later.id)), "mutants.toml")?
        };
        for (mu, why) in listed {
            let (status, why) = match statuses.get(&mu.name).map(String::as_str) {
                Some("killed" | "timeout") => {
                    ("later", format!("killed by lab {}: {why}", later.id))
                }
                Some(_) => (
                    "survived",
                    format!("listed as killed by lab {}, but its graded tests passed", later.id),
                ),
                None => ("untested", format!("to be killed by lab {}: {why}", later.id)),
            };
            mutants.push(report_of(mu, status, Some(why)));
        }
    }
    mutants.sort_by(|a, b| (&a.file, a.line, &a.mutation).cmp(&(&b.file, b.line, &b.mutation)));
    let mut total = Tally::default();
    let mut files: BTreeMap<String, Tally> = BTreeMap::new();
    for mu in &mutants {
        total.add(&mu.status);
        files.entry(mu.file.clone()).or_default().add(&mu.status);
    }
    Ok(Report {
        lab: lab.id.clone(),
        regions: regions.len(),
        region_lines: regions.iter().map(|r| r.lines.len()).sum(),
        mutants_in_regions: all.len(),
        equivalent: mutants.iter().filter(|mu| mu.status == "equivalent").count(),
        tested: if opts.list { 0 } else { picked.len() },
        sample: opts.sample,
        seed: opts.seed,
        survivors: mutants.iter().filter(|mu| mu.status == "survived").cloned().collect(),
        stale_entries,
        total,
        files,
        mutants,
        duration_secs: started.elapsed().as_secs_f64(),
        output_dir: out_dir.join("mutants.out").display().to_string(),
    })
}

/// The entries that match none of `all`, each as `file: function: mutation`
/// (with its line when it names one).
fn stale(equivalents: &[Equivalent], all: &[Mutant]) -> Vec<String> {
    equivalents
        .iter()
        .filter(|e| !all.iter().any(|mu| mu.is(e)))
        .map(|e| match e.line {
            Some(l) => format!("{}:{l}: {}: {}", e.file, e.function, e.mutation),
            None => format!("{}: {}: {}", e.file, e.function, e.mutation),
        })
        .collect()
}

fn stale_note(r: &Report) -> String {
    if r.stale_entries.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\n{} entries of {EQUIVALENT_PATH} for lab {} match no mutant (fix the line or the \
         mutation's text, or remove them):\n",
        r.stale_entries.len(),
        r.lab
    );
    for e in &r.stale_entries {
        s.push_str(&format!("  {e}\n"));
    }
    s
}

fn report_of(mu: &Mutant, status: &str, why: Option<String>) -> MutantReport {
    MutantReport {
        file: mu.file.clone(),
        line: mu.span.start.line,
        function: mu.function_name(),
        mutation: mu.mutation().to_string(),
        status: status.to_string(),
        why,
    }
}

fn rate(t: &Tally) -> String {
    t.kill_rate().map(|r| format!("{r:.1}%")).unwrap_or_else(|| "-".into())
}

/// The report for people.
pub fn table(r: &Report, list: bool) -> String {
    let mut s = String::new();
    if list {
        s.push_str(&format!(
            "lab {}: {} mutants in {} solution regions ({} lines), {} of them listed as equivalent\n",
            r.lab, r.mutants_in_regions, r.regions, r.region_lines, r.equivalent
        ));
        for mu in &r.mutants {
            let tag = match (mu.status.as_str(), &mu.why) {
                ("equivalent", _) => "  (equivalent)",
                (_, Some(_)) => "  (listed as killed by a later lab)",
                _ => "",
            };
            s.push_str(&format!("{}:{}: {}{tag}\n", mu.file, mu.line, mu.mutation));
        }
        s.push_str(&stale_note(r));
        return s;
    }
    let rows: Vec<(String, &Tally)> = std::iter::once(("total".to_string(), &r.total))
        .chain(r.files.iter().map(|(f, t)| (f.clone(), t)))
        .collect();
    let w = rows.iter().map(|(f, _)| f.len()).max().unwrap_or(5);
    s.push_str(&format!(
        "{:<w$}  {:>6}  {:>8}  {:>7}  {:>8}  {:>10}  {:>5}  {:>9}\n",
        "file", "killed", "survived", "timeout", "unviable", "equivalent", "later", "kill rate"
    ));
    for (f, t) in rows.iter().skip(1).chain(rows.iter().take(1)) {
        s.push_str(&format!(
            "{f:<w$}  {:>6}  {:>8}  {:>7}  {:>8}  {:>10}  {:>5}  {:>9}\n",
            t.killed,
            t.survived,
            t.timeout,
            t.unviable,
            t.equivalent,
            t.later,
            rate(t)
        ));
    }
    let sampled = match r.sample {
        Some(n) => format!(" (a sample of {n}, seed {})", r.seed),
        None => String::new(),
    };
    s.push_str(&format!(
        "\nlab {}: {} of {} mutants tested{sampled}; kill rate {} (killed and timed out per viable \
         mutant); {} in {}\n",
        r.lab,
        r.tested,
        r.mutants_in_regions,
        rate(&r.total),
        if r.survivors.is_empty() {
            "no survivors".to_string()
        } else {
            format!("{} survivors", r.survivors.len())
        },
        crate::runner::secs(Duration::from_secs_f64(r.duration_secs))
    ));
    if !r.survivors.is_empty() {
        s.push_str("\nsurvivors (write a test that kills each, or add it to ");
        s.push_str(EQUIVALENT_PATH);
        s.push_str(" with a reason):\n");
        for mu in &r.survivors {
            s.push_str(&format!("  {}:{}: {}  [{}]\n", mu.file, mu.line, mu.mutation, mu.function));
        }
        s.push_str(&format!("each mutant's diff and test log: {}\n", r.output_dir));
    }
    s.push_str(&stale_note(r));
    s
}

/// The report as JSON.
pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("a report serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_diff_adds_each_region_after_the_lines_before_it() {
        let regions = vec![
            RegionLines { file: "a.rs".into(), first: 3, lines: vec!["x".into(), "y".into()] },
            RegionLines { file: "a.rs".into(), first: 10, lines: vec!["z".into()] },
        ];
        assert_eq!(
            region_diff(&regions),
            "--- a/a.rs\n+++ b/a.rs\n@@ -2,0 +3,2 @@\n+x\n+y\n@@ -7,0 +10,1 @@\n+z\n"
        );
    }

    #[test]
    fn solution_lines_are_between_begin_and_stub_or_end() {
        let dir = tempfile::tempdir().unwrap();
        let text = "fn f() {\n    // SOLUTION BEGIN lab 1\n    a();\n    b();\n    // SOLUTION STUB\n    // todo!()\n    // SOLUTION END\n}\n// SOLUTION BEGIN lab 2\nfn g() {}\n// SOLUTION END\n";
        std::fs::write(dir.path().join("x.rs"), text).unwrap();
        let r = solution_lines(dir.path(), "1").unwrap();
        assert_eq!(
            r,
            vec![RegionLines {
                file: "x.rs".into(),
                first: 3,
                lines: vec!["    a();".into(), "    b();".into()]
            }]
        );
        assert_eq!(solution_lines(dir.path(), "2").unwrap()[0].first, 10);
    }

    #[test]
    fn samples_depend_only_on_the_seed() {
        let a = sample_indices(100, 10, 7);
        assert_eq!(a, sample_indices(100, 10, 7));
        assert_ne!(a, sample_indices(100, 10, 8));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indices(3, 10, 1), vec![0, 1, 2]);
    }

    #[test]
    fn an_escaped_name_has_every_regex_meta_character_escaped() {
        assert_eq!(
            regex_escape("a.rs:3:5: replace f -> Result<(), E> with Ok(())"),
            "a\\.rs:3:5: replace f \\-> Result<\\(\\), E> with Ok\\(\\(\\)\\)"
        );
    }

    #[test]
    fn outcomes_map_to_statuses_and_kill_rates_count_timeouts_as_killed() {
        let mut t = Tally::default();
        for s in ["CaughtMutant", "MissedMutant", "Timeout", "Unviable", "CaughtMutant"] {
            t.add(status_of(s));
        }
        assert_eq!((t.killed, t.survived, t.timeout, t.unviable), (2, 1, 1, 1));
        assert_eq!(t.kill_rate(), Some(75.0));
        assert_eq!(Tally::default().kill_rate(), None);
    }

    #[test]
    fn a_mutants_description_drops_its_place() {
        let m: Mutant = serde_json::from_str(
            r#"{"name":"src/a.rs:3:7: replace + with - in add","file":"src/a.rs",
                "function":{"function_name":"add"},"span":{"start":{"line":3,"column":7}}}"#,
        )
        .unwrap();
        assert_eq!(m.mutation(), "replace + with - in add");
        let e = Equivalent {
            lab: "1".into(),
            file: "src/a.rs".into(),
            function: "add".into(),
            mutation: "replace + with - in add".into(),
            why: "w".into(),
            killed_by: None,
            line: None,
        };
        assert!(m.is(&e));
        assert!(stale(std::slice::from_ref(&e), std::slice::from_ref(&m)).is_empty());
        let misspelt = Equivalent { mutation: "replace add with () in add".into(), ..e.clone() };
        let other_line = Equivalent { line: Some(4), ..e };
        assert_eq!(
            stale(&[misspelt, other_line], std::slice::from_ref(&m)),
            vec![
                "src/a.rs: add: replace add with () in add".to_string(),
                "src/a.rs:4: add: replace + with - in add".to_string()
            ]
        );
    }
}
