//! The course manifest, `labs/labs.toml`: parsing and validation.
//!
//! The file is read once and validated into a [`Manifest`], the resolved
//! model every command works from. The rules:
//!
//! * `[course]` has a `name`;
//! * lab ids are unique, made of lowercase letters and digits, and appear in
//!   course order; `requires` names labs that come earlier;
//! * `[groups]` map a group name (not a lab id) to known labs;
//! * every test name is a Rust identifier ending with `_<lab id>`, and no test
//!   name appears in two labs;
//! * a lab with graded tests lists suite files, and when its suite files are
//!   present its document exists;
//! * paths are relative to the repository root and stay inside it.
//!
//! A suite file maps to a cargo package (the `name` in the nearest
//! `Cargo.toml` with a `[package]` above the file) and a test target (the
//! file stem; `tests/<dir>/main.rs` gives `<dir>`).
//!
//! A lab with a suite file missing is "not in this handout" (student
//! handouts drop the suites of later labs); [`Manifest::check_complete`] is
//! the stricter check for the instructor's repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::bail;
use crate::error::{Context, Error, Result};

/// Where the manifest lives, relative to the repository root.
pub const MANIFEST_PATH: &str = "labs/labs.toml";

/// The default per-test timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    course: RawCourse,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    handout: RawHandout,
    #[serde(default, rename = "lab")]
    labs: Vec<RawLab>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCourse {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandout {
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {
    id: String,
    title: String,
    #[serde(default)]
    requires: Vec<String>,
    doc: Option<String>,
    #[serde(default)]
    student_files: Vec<String>,
    #[serde(default)]
    suites: Vec<String>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    tests: BTreeMap<String, u32>,
}

/// The validated course manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The repository root the paths are relative to.
    pub root: PathBuf,
    /// The course name.
    pub course_name: String,
    /// Groups of labs (`2a` = 2aa, 2ab, 2ac), by name.
    pub groups: Vec<Group>,
    /// Paths (files or folders) that handouts never contain.
    pub handout_remove: Vec<String>,
    /// The labs in course order.
    pub labs: Vec<Lab>,
}

/// A named group of labs.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group name, e.g. `2a`.
    pub name: String,
    /// Its labs, in course order.
    pub labs: Vec<String>,
}

/// One lab.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The lab id, e.g. `2ab`.
    pub id: String,
    /// The title.
    pub title: String,
    /// Labs that must be done first.
    pub requires: Vec<String>,
    /// The lab document, relative to the root.
    pub doc: Option<String>,
    /// The files a student edits for this lab.
    pub student_files: Vec<String>,
    /// The integration-test files that hold the graded suite.
    pub suites: Vec<Suite>,
    /// The per-test timeout.
    pub timeout: Duration,
    /// The graded tests, by name.
    pub tests: Vec<GradedTest>,
}

/// A graded test and its points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradedTest {
    /// The test function name, ending with `_<lab id>`.
    pub name: String,
    /// Points for passing it.
    pub points: u32,
}

/// A suite file and the cargo test target it builds into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// The file, relative to the root, with `/` separators.
    pub path: String,
    /// The cargo test target name (the file stem).
    pub target: String,
    /// The package holding it, when a `Cargo.toml` was found above it.
    pub package: Option<Package>,
}

/// A cargo package of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The package name.
    pub name: String,
    /// Its folder, relative to the root (`""` for the root itself).
    pub dir: String,
}

/// The labs a selector (a lab id or a group name) stands for.
#[derive(Debug, Clone)]
pub struct Selection<'a> {
    /// Whether it named a group rather than a lab.
    pub is_group: bool,
    /// The labs, in course order.
    pub labs: Vec<&'a Lab>,
}

/// Whether a lab's graded suite is present in this tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The lab lists no graded tests.
    NoTests,
    /// The lab has tests and all its suite files exist.
    Present,
    /// The lab has tests but some of its suite files are missing (a handout
    /// of an earlier stage).
    NotInHandout,
}

impl Lab {
    /// The total points of the lab.
    pub fn points(&self) -> u32 {
        self.tests.iter().map(|t| t.points).sum()
    }

    /// Whether the lab has graded tests.
    pub fn has_tests(&self) -> bool {
        !self.tests.is_empty()
    }

    /// The graded test with this name.
    pub fn test(&self, name: &str) -> Option<&GradedTest> {
        self.tests.iter().find(|t| t.name == name)
    }
}

impl Manifest {
    /// Reads and validates `<root>/labs/labs.toml`.
    pub fn load(root: &Path) -> Result<Manifest> {
        let path = root.join(MANIFEST_PATH);
        let text =
            std::fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
        Manifest::parse(&text, root)
    }

    /// Parses and validates manifest text for the repository at `root`.
    pub fn parse(text: &str, root: &Path) -> Result<Manifest> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| Error::msg(format!("{MANIFEST_PATH}: {e}")))?;
        resolve(raw, root).map_err(|e| Error::msg(format!("{MANIFEST_PATH}: {e}")))
    }

    /// The lab with this id.
    pub fn lab(&self, id: &str) -> Option<&Lab> {
        self.labs.iter().find(|l| l.id == id)
    }

    /// The position of a lab in course order.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.labs.iter().position(|l| l.id == id)
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Resolves a lab id or a group name to its labs, in course order.
    pub fn select(&self, selector: &str) -> Result<Selection<'_>> {
        if let Some(lab) = self.lab(selector) {
            return Ok(Selection { is_group: false, labs: vec![lab] });
        }
        if let Some(group) = self.group(selector) {
            let labs = self.labs.iter().filter(|l| group.labs.contains(&l.id)).collect();
            return Ok(Selection { is_group: true, labs });
        }
        bail!(
            "no lab or group named `{selector}` in {MANIFEST_PATH} (labs: {}; groups: {})",
            self.lab_ids().join(", "),
            self.group_names().join(", ")
        )
    }

    /// Every lab id, in course order.
    pub fn lab_ids(&self) -> Vec<&str> {
        self.labs.iter().map(|l| l.id.as_str()).collect()
    }

    /// Every group name.
    pub fn group_names(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.name.as_str()).collect()
    }

    /// The labs that list this suite file.
    pub fn labs_with_suite(&self, path: &str) -> Vec<&Lab> {
        self.labs.iter().filter(|l| l.suites.iter().any(|s| s.path == path)).collect()
    }

    /// Whether a lab's graded suite is in this tree.
    pub fn presence(&self, lab: &Lab) -> Presence {
        if !lab.has_tests() {
            Presence::NoTests
        } else if lab.suites.iter().all(|s| self.root.join(&s.path).is_file()) {
            Presence::Present
        } else {
            Presence::NotInHandout
        }
    }

    /// The stricter check for the instructor's repository: every suite file,
    /// document and student file of a lab with tests exists.
    pub fn check_complete(&self) -> Result<()> {
        let mut errors = Vec::new();
        for lab in self.labs.iter().filter(|l| l.has_tests()) {
            for suite in &lab.suites {
                if !self.root.join(&suite.path).is_file() {
                    errors
                        .push(format!("lab {}: suite file {} does not exist", lab.id, suite.path));
                }
            }
            if let Some(doc) = &lab.doc {
                match std::fs::read_to_string(self.root.join(doc)) {
                    Ok(text) => errors.extend(doc_table_errors(lab, doc, &text)),
                    Err(_) => errors.push(format!("lab {}: document {doc} does not exist", lab.id)),
                }
            }
            for f in &lab.student_files {
                if !self.root.join(f).is_file() {
                    errors.push(format!("lab {}: student file {f} does not exist", lab.id));
                }
            }
        }
        join_errors(errors)
    }
}

/// The lab document must list every graded test with its points, as a
/// table row ``| `name` | points |`` (more columns may follow), so the
/// document cannot drift from the manifest.
fn doc_table_errors(lab: &Lab, doc: &str, text: &str) -> Vec<String> {
    let rows: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|').map(str::trim);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name, cells.next()?))
        })
        .collect();
    lab.tests
        .iter()
        .filter_map(|t| match rows.get(t.name.as_str()) {
            Some(p) if *p == t.points.to_string() => None,
            Some(p) => Some(format!(
                "lab {}: {doc} gives {} {p} points, the manifest {}",
                lab.id, t.name, t.points
            )),
            None => Some(format!(
                "lab {}: {doc} has no table row for graded test {} ({} points)",
                lab.id, t.name, t.points
            )),
        })
        .collect()
}

fn join_errors(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() { Ok(()) } else { Err(Error::msg(errors.join("\n"))) }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn is_rust_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks that a manifest path is relative and stays inside the repository,
/// and returns it with `/` separators and no `./` or trailing `/`.
pub fn clean_rel_path(p: &str) -> std::result::Result<String, String> {
    if p.is_empty() {
        return Err("empty path".to_string());
    }
    if p.starts_with('/') || p.starts_with('\\') || p.contains(':') {
        return Err(format!("path `{p}` must be relative to the repository root"));
    }
    let mut parts = Vec::new();
    for part in p.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path `{p}` must not contain `..`")),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(format!("path `{p}` names the repository root"));
    }
    Ok(parts.join("/"))
}

fn resolve(raw: RawManifest, root: &Path) -> std::result::Result<Manifest, String> {
    let mut errors: Vec<String> = Vec::new();
    if raw.course.name.trim().is_empty() {
        errors.push("[course].name is empty".to_string());
    }
    if raw.labs.is_empty() {
        errors.push("no [[lab]] entries".to_string());
    }

    // Lab ids: unique, well formed.
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for lab in &raw.labs {
        if !is_id(&lab.id) {
            errors.push(format!(
                "lab id `{}` must be lowercase letters and digits (e.g. `2ab`)",
                lab.id
            ));
        }
        if !seen.insert(&lab.id) {
            errors.push(format!("lab `{}` is defined twice", lab.id));
        }
    }
    let position = |id: &str| raw.labs.iter().position(|l| l.id == id);

    // Groups.
    let mut groups = Vec::new();
    for (name, members) in &raw.groups {
        if !is_id(name) {
            errors.push(format!("group name `{name}` must be lowercase letters and digits"));
        }
        if seen.contains(name.as_str()) {
            errors.push(format!("group `{name}` has the same name as a lab"));
        }
        if members.is_empty() {
            errors.push(format!("group `{name}` is empty"));
        }
        let mut labs: Vec<String> = Vec::new();
        for member in members {
            if position(member).is_none() {
                errors.push(format!("group `{name}` names unknown lab `{member}`"));
            } else if labs.contains(member) {
                errors.push(format!("group `{name}` names lab `{member}` twice"));
            } else {
                labs.push(member.clone());
            }
        }
        labs.sort_by_key(|id| position(id));
        groups.push(Group { name: name.clone(), labs });
    }

    // [handout].remove
    let mut handout_remove = Vec::new();
    for p in &raw.handout.remove {
        match clean_rel_path(p) {
            Ok(p) => handout_remove.push(p),
            Err(e) => errors.push(format!("[handout].remove: {e}")),
        }
    }

    // Labs.
    let mut test_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut labs = Vec::new();
    for (index, rl) in raw.labs.iter().enumerate() {
        let id = &rl.id;
        if rl.title.trim().is_empty() {
            errors.push(format!("lab {id}: title is empty"));
        }
        for req in &rl.requires {
            match position(req) {
                None => errors.push(format!("lab {id}: requires unknown lab `{req}`")),
                Some(p) if p >= index => errors.push(format!(
                    "lab {id}: requires lab `{req}`, which does not come before it in course order"
                )),
                Some(_) => {}
            }
        }
        let doc = match &rl.doc {
            None => None,
            Some(d) => match clean_rel_path(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(format!("lab {id}: doc: {e}"));
                    None
                }
            },
        };
        let mut student_files = Vec::new();
        for f in &rl.student_files {
            match clean_rel_path(f) {
                Ok(f) => student_files.push(f),
                Err(e) => errors.push(format!("lab {id}: student_files: {e}")),
            }
        }
        let mut suites: Vec<Suite> = Vec::new();
        for s in &rl.suites {
            let path = match clean_rel_path(s) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(format!("lab {id}: suites: {e}"));
                    continue;
                }
            };
            if !path.ends_with(".rs") {
                errors.push(format!("lab {id}: suite `{path}` is not a `.rs` file"));
                continue;
            }
            if suites.iter().any(|x| x.path == path) {
                errors.push(format!("lab {id}: suite `{path}` is listed twice"));
                continue;
            }
            match suite_for(root, &path) {
                Ok(suite) => suites.push(suite),
                Err(e) => errors.push(format!("lab {id}: {e}")),
            }
        }
        let mut tests = Vec::new();
        for (name, &points) in &rl.tests {
            if !is_rust_ident(name) {
                errors.push(format!("lab {id}: test name `{name}` is not a Rust identifier"));
            }
            let suffix = format!("_{id}");
            if !name.ends_with(&suffix) || name.len() == suffix.len() {
                errors.push(format!("lab {id}: test `{name}` must end with `{suffix}` (test names end with their lab id)"));
            }
            if let Some(owner) = test_owner.insert(name.clone(), id.clone()) {
                errors.push(format!("test `{name}` is listed in lab {owner} and in lab {id}"));
            }
            tests.push(GradedTest { name: name.clone(), points });
        }
        if !tests.is_empty() && rl.suites.is_empty() {
            errors.push(format!("lab {id}: has graded tests but no `suites`"));
        }
        if !tests.is_empty() && doc.is_none() {
            errors.push(format!("lab {id}: has graded tests but no `doc`"));
        }
        let timeout_secs = rl.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout_secs == 0 {
            errors.push(format!("lab {id}: timeout_secs must be at least 1"));
        }
        labs.push(Lab {
            id: id.clone(),
            title: rl.title.clone(),
            requires: rl.requires.clone(),
            doc,
            student_files,
            suites,
            timeout: Duration::from_secs(timeout_secs),
            tests,
        });
    }

    let manifest = Manifest {
        root: root.to_path_buf(),
        course_name: raw.course.name,
        groups,
        handout_remove,
        labs,
    };

    // Documents of labs whose suites are present.
    for lab in &manifest.labs {
        if manifest.presence(lab) == Presence::Present
            && let Some(doc) = &lab.doc
            && !root.join(doc).is_file()
        {
            errors.push(format!("lab {}: document {doc} does not exist", lab.id));
        }
    }

    if errors.is_empty() { Ok(manifest) } else { Err(errors.join("\n")) }
}

/// The test target and package of a suite file.
fn suite_for(root: &Path, path: &str) -> std::result::Result<Suite, String> {
    let p = Path::new(path);
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let target = if stem == "main" {
        // tests/<name>/main.rs is the test target <name>.
        p.parent().and_then(|d| d.file_name()).and_then(|s| s.to_str()).unwrap_or(stem)
    } else {
        stem
    };
    let package = find_package(root, path)?;
    if package.is_none() && root.join(path).is_file() {
        return Err(format!("suite {path}: no Cargo.toml with a [package] above it"));
    }
    Ok(Suite { path: path.to_string(), target: target.to_string(), package })
}

/// The nearest package above a file (relative path), if any.
fn find_package(root: &Path, path: &str) -> std::result::Result<Option<Package>, String> {
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    loop {
        let dir = parts.join("/");
        let cargo_toml = root.join(&dir).join("Cargo.toml");
        if cargo_toml.is_file() {
            let text = std::fs::read_to_string(&cargo_toml)
                .map_err(|e| format!("reading {}: {e}", cargo_toml.display()))?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", cargo_toml.display()))?;
            if let Some(name) =
                table.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str())
            {
                return Ok(Some(Package { name: name.to_string(), dir }));
            }
        }
        if parts.pop().is_none() {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture repository: a package `fx` with a suite and a document.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("fx/tests")).unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"fx\"]\n").unwrap();
        std::fs::write(
            root.join("fx/Cargo.toml"),
            "[package]\nname = \"fx-pkg\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        std::fs::write(root.join("fx/tests/suite1.rs"), "").unwrap();
        std::fs::write(root.join("docs/lab1.md"), "# Lab 1\n").unwrap();
        std::fs::write(root.join("docs/lab2.md"), "# Lab 2\n").unwrap();
        dir
    }

    const GOOD: &str = r#"
[course]
name = "Fixture"

[groups]
"2" = ["2b", "2a"]

[handout]
remove = ["secret", "./docs/instructors.md"]

[[lab]]
id = "1"
title = "One"
doc = "docs/lab1.md"
suites = ["fx/tests/suite1.rs"]
timeout_secs = 5
[lab.tests]
get_1 = 10
put_1 = 5

[[lab]]
id = "2a"
title = "Two A"
requires = ["1"]
doc = "docs/lab2.md"

[[lab]]
id = "2b"
title = "Two B"
requires = ["2a"]
doc = "docs/lab2.md"
suites = ["fx/tests/suite2.rs"]
[lab.tests]
thing_2b = 3
"#;

    fn parse(text: &str) -> Result<Manifest> {
        let dir = fixture();
        Manifest::parse(text, dir.path())
    }

    #[test]
    fn good_manifest_resolves() {
        let dir = fixture();
        let m = Manifest::parse(GOOD, dir.path()).unwrap();
        assert_eq!(m.course_name, "Fixture");
        assert_eq!(m.lab_ids(), vec!["1", "2a", "2b"]);
        let one = m.lab("1").unwrap();
        assert_eq!(one.points(), 15);
        assert_eq!(one.timeout, Duration::from_secs(5));
        assert_eq!(m.lab("2a").unwrap().timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        assert_eq!(
            one.suites,
            vec![Suite {
                path: "fx/tests/suite1.rs".into(),
                target: "suite1".into(),
                package: Some(Package { name: "fx-pkg".into(), dir: "fx".into() }),
            }]
        );
        // Group members come back in course order.
        assert_eq!(m.group("2").unwrap().labs, vec!["2a", "2b"]);
        assert_eq!(m.handout_remove, vec!["secret", "docs/instructors.md"]);
        // Lab 2b's suite is missing: not in this handout, and its document
        // need not exist.
        assert_eq!(m.presence(m.lab("2b").unwrap()), Presence::NotInHandout);
        assert_eq!(m.presence(m.lab("1").unwrap()), Presence::Present);
        assert_eq!(m.presence(m.lab("2a").unwrap()), Presence::NoTests);
        assert!(m.check_complete().is_err());
    }

    #[test]
    fn documents_must_list_every_graded_test_with_its_points() {
        let dir = fixture();
        std::fs::write(dir.path().join("fx/tests/suite2.rs"), "").unwrap();
        let m = Manifest::parse(GOOD, dir.path()).unwrap();
        let err = m.check_complete().unwrap_err().to_string();
        assert!(err.contains("docs/lab1.md has no table row for graded test get_1"), "{err}");
        let table =
            "| test | points | what |\n|---|---|---|\n| `get_1` | 10 | x |\n| `put_1` | 4 | y |\n";
        std::fs::write(dir.path().join("docs/lab1.md"), table).unwrap();
        std::fs::write(dir.path().join("docs/lab2.md"), "| `thing_2b` | 3 |\n").unwrap();
        let err = m.check_complete().unwrap_err().to_string();
        assert_eq!(err, "lab 1: docs/lab1.md gives put_1 4 points, the manifest 5");
        std::fs::write(dir.path().join("docs/lab1.md"), table.replace("| 4 |", "| 5 |")).unwrap();
        m.check_complete().unwrap();
    }

    #[test]
    fn selectors() {
        let dir = fixture();
        let m = Manifest::parse(GOOD, dir.path()).unwrap();
        let s = m.select("2").unwrap();
        assert!(s.is_group);
        assert_eq!(s.labs.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), vec!["2a", "2b"]);
        let s = m.select("2b").unwrap();
        assert!(!s.is_group);
        assert_eq!(s.labs.len(), 1);
        let e = m.select("9").unwrap_err();
        assert!(e.to_string().contains("no lab or group named `9`"), "{e}");
    }

    #[test]
    fn unknown_prerequisite_is_an_error() {
        let e = parse(&GOOD.replace("requires = [\"1\"]", "requires = [\"0\"]")).unwrap_err();
        assert!(e.to_string().contains("lab 2a: requires unknown lab `0`"), "{e}");
    }

    #[test]
    fn later_prerequisite_is_an_error() {
        let e = parse(&GOOD.replace("requires = [\"1\"]", "requires = [\"2b\"]")).unwrap_err();
        assert!(e.to_string().contains("does not come before it"), "{e}");
    }

    #[test]
    fn bad_test_suffix_is_an_error() {
        let e = parse(&GOOD.replace("put_1 = 5", "put_2 = 5")).unwrap_err();
        assert!(e.to_string().contains("lab 1: test `put_2` must end with `_1`"), "{e}");
        // `_1` alone is not a name.
        let e = parse(&GOOD.replace("put_1 = 5", "_1 = 5")).unwrap_err();
        assert!(e.to_string().contains("must end with `_1`"), "{e}");
    }

    #[test]
    fn duplicate_test_across_labs_is_an_error() {
        let text = GOOD.replace(
            "requires = [\"1\"]\ndoc = \"docs/lab2.md\"",
            "requires = [\"1\"]\ndoc = \"docs/lab2.md\"\nsuites = [\"fx/tests/suite1.rs\"]\n[lab.tests]\nx_2a = 1",
        );
        assert_ne!(text, GOOD);
        assert!(parse(&text).is_ok(), "{:?}", parse(&text).err());
        // The same name under two labs (it cannot end with both ids, so two
        // errors: the suffix and the duplicate).
        let text = text.replace("x_2a = 1", "get_1 = 1");
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains("test `get_1` is listed in lab 1 and in lab 2a"), "{e}");
    }

    #[test]
    fn duplicate_lab_and_bad_group_are_errors() {
        let e = parse(&GOOD.replace("id = \"2a\"", "id = \"1\"")).unwrap_err();
        assert!(e.to_string().contains("lab `1` is defined twice"), "{e}");
        let e = parse(&GOOD.replace("\"2\" = [\"2b\", \"2a\"]", "\"2\" = [\"2b\", \"2z\"]"))
            .unwrap_err();
        assert!(e.to_string().contains("group `2` names unknown lab `2z`"), "{e}");
        let e = parse(&GOOD.replace("\"2\" = [", "\"2a\" = [")).unwrap_err();
        assert!(e.to_string().contains("group `2a` has the same name as a lab"), "{e}");
    }

    #[test]
    fn tests_need_suites_and_a_document() {
        let e = parse(&GOOD.replace("suites = [\"fx/tests/suite2.rs\"]", "")).unwrap_err();
        assert!(e.to_string().contains("lab 2b: has graded tests but no `suites`"), "{e}");
        let e =
            parse(&GOOD.replace("doc = \"docs/lab1.md\"", "doc = \"docs/nope.md\"")).unwrap_err();
        assert!(e.to_string().contains("lab 1: document docs/nope.md does not exist"), "{e}");
    }

    #[test]
    fn bad_paths_and_unknown_fields_are_errors() {
        let e =
            parse(&GOOD.replace("remove = [\"secret\"", "remove = [\"../secret\"")).unwrap_err();
        assert!(e.to_string().contains("must not contain `..`"), "{e}");
        let e = parse(&GOOD.replace("timeout_secs = 5", "timeout_sec = 5")).unwrap_err();
        assert!(e.to_string().contains("timeout_sec"), "{e}");
        let e = parse("not toml [").unwrap_err();
        assert!(e.to_string().starts_with(MANIFEST_PATH), "{e}");
    }

    #[test]
    fn the_real_manifest_is_valid() {
        // The course's own manifest parses (documents and suites may still
        // be being written, so only the syntax and the naming rules are
        // checked here: use a root where nothing exists).
        let text = include_str!("../labs.toml");
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::parse(text, dir.path()).unwrap();
        assert!(m.lab("1").is_some());
    }
}
