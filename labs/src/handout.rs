//! Making the student handout: the repository with solutions stripped.
//!
//! Every file of the course tree (see [`crate::walk`]) is copied, except
//! paths in `[handout].remove`, the suite files of labs after the stage
//! (unless an included lab names the same file) and the documents of labs
//! after the stage (unless an included lab shares the document). Solution
//! regions of every lab are replaced by their stubs, except for the labs
//! given to `--keep-solutions`. Lines of `docs/src/SUMMARY.md` that link a
//! file left out of the handout are dropped. The manifest is copied as is.
//!
//! Everything is checked (markers, lab ids, the output folder) before the
//! first file is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::manifest::Manifest;
use crate::markers;
use crate::walk::{self, Kind};

/// The mdBook table of contents whose links are pruned.
pub const SUMMARY_PATH: &str = "docs/src/SUMMARY.md";

/// What to make.
#[derive(Debug, Clone)]
pub struct Options {
    /// The last lab included (a lab id, or a group: its last lab).
    pub stage: String,
    /// The output folder.
    pub out: PathBuf,
    /// Labs whose solutions stay in the handout.
    pub keep_solutions: Vec<String>,
    /// Write into a non-empty folder (its contents, except `.git`, are
    /// deleted first).
    pub force: bool,
    /// Give every written file the modification time of its source, so
    /// that cargo reuses a previous build of an unchanged tree (`labs
    /// verify`; safe only when the stripping options never change for the
    /// target folder used).
    pub preserve_mtimes: bool,
}

/// What was done.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The stage lab.
    pub stage: String,
    /// Where the handout is.
    pub out: PathBuf,
    /// Files written.
    pub files_copied: usize,
    /// Files whose solution regions were rewritten.
    pub files_stripped: usize,
    /// Regions replaced by stubs, per lab.
    pub regions_stripped: BTreeMap<String, usize>,
    /// Regions kept with their solution, per lab.
    pub regions_kept: BTreeMap<String, usize>,
    /// Files left out, with the reason.
    pub removed: Vec<(String, String)>,
    /// Lines dropped from the SUMMARY.md.
    pub summary_lines_dropped: usize,
}

impl Report {
    /// Prints the summary.
    pub fn print(&self) {
        println!("handout of stage {} written to {}", self.stage, self.out.display());
        println!(
            "  files copied: {} ({} with solution regions rewritten)",
            self.files_copied, self.files_stripped
        );
        let labs: BTreeSet<&String> =
            self.regions_stripped.keys().chain(self.regions_kept.keys()).collect();
        if labs.is_empty() {
            println!("  solution regions: none");
        }
        for lab in labs {
            let s = self.regions_stripped.get(lab).copied().unwrap_or(0);
            let k = self.regions_kept.get(lab).copied().unwrap_or(0);
            let mut line = format!("  lab {lab}: {s} region(s) replaced by stubs");
            if k > 0 {
                line.push_str(&format!(", {k} kept with their solution"));
            }
            println!("{line}");
        }
        println!("  files left out: {}", self.removed.len());
        // Group by reason so the instructor-only folders do not flood.
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (path, reason) in &self.removed {
            by_reason.entry(reason).or_default().push(path);
        }
        for (reason, paths) in by_reason {
            if paths.len() <= 8 {
                for p in paths {
                    println!("    {p} ({reason})");
                }
            } else {
                println!("    {} files ({reason}), e.g. {}", paths.len(), paths[..3].join(", "));
            }
        }
        if self.summary_lines_dropped > 0 {
            println!(
                "  {SUMMARY_PATH}: {} line(s) linking removed documents dropped",
                self.summary_lines_dropped
            );
        }
    }
}

/// Normalizes a path lexically, resolving `.` and `..`, after making it
/// absolute; the longest existing prefix is canonicalized (symlinks).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context(|| "reading the current folder".to_string())?;
    let joined = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let mut norm = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::CurDir => {}
            other => norm.push(other.as_os_str()),
        }
    }
    // Canonicalize the longest existing prefix.
    let mut existing = norm.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                rest.push(name.to_os_string());
                existing.pop();
            }
            None => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    Ok(out)
}

/// Plans what a handout of `stage` leaves out: `(path, reason)` for suites
/// and documents of later labs, given the tree's files.
fn later_lab_files(manifest: &Manifest, stage_index: usize) -> BTreeMap<String, String> {
    let included = &manifest.labs[..=stage_index];
    let mut out = BTreeMap::new();
    for lab in &manifest.labs[stage_index + 1..] {
        for s in &lab.suites {
            if !included.iter().any(|l| l.suites.iter().any(|x| x.path == s.path)) {
                out.entry(s.path.clone()).or_insert(format!("suite of lab {}", lab.id));
            }
        }
        if let Some(doc) = &lab.doc
            && !included.iter().any(|l| l.doc.as_ref() == Some(doc))
        {
            out.entry(doc.clone()).or_insert(format!("document of lab {}", lab.id));
        }
    }
    out
}

/// The lab a stage selector stands for: a lab id, or the last lab of a group.
pub fn stage_index(manifest: &Manifest, stage: &str) -> Result<usize> {
    let sel = manifest.select(stage)?;
    let Some(last) = sel.labs.last() else {
        bail!("group `{stage}` has no labs");
    };
    manifest.index_of(&last.id).ok_or_else(|| Error::msg(format!("unknown lab `{}`", last.id)))
}

/// Checks the output folder: not the repository or a folder containing it,
/// not inside the repository unless under `target/`, empty unless `force`.
fn check_out_dir(root: &Path, out: &Path, force: bool) -> Result<()> {
    let root = root.canonicalize().context(|| format!("reading {}", root.display()))?;
    if root.starts_with(out) {
        bail!("--out {} would contain the repository itself; choose another folder", out.display());
    }
    if out.starts_with(&root) && !out.starts_with(root.join("target")) {
        bail!(
            "--out {} is inside the repository; write the handout outside it, or under {}",
            out.display(),
            root.join("target").display()
        );
    }
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {} exists and is not a folder", out.display());
        }
        let mut entries =
            std::fs::read_dir(out).context(|| format!("reading {}", out.display()))?;
        if entries.next().is_some() && !force {
            bail!(
                "--out {} is not empty; use --force to replace its contents (a .git folder in it is kept)",
                out.display()
            );
        }
    }
    Ok(())
}

/// Deletes everything in `dir` except `.git`.
fn clear_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).context(|| format!("reading {}", dir.display()))? {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        if entry.file_name() == ".git" {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().context(|| format!("reading {}", path.display()))?;
        if ft.is_dir() {
            std::fs::remove_dir_all(&path).context(|| format!("removing {}", path.display()))?;
        } else {
            std::fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

enum Action {
    Copy,
    Write(String),
    Link,
}

/// Drops lines of a SUMMARY.md (at `summary_rel`) that link one of `gone`.
pub fn prune_summary(
    text: &str,
    summary_rel: &str,
    gone: &dyn Fn(&str) -> bool,
) -> (String, usize) {
    let base: Vec<&str> = summary_rel.split('/').collect();
    let base = &base[..base.len() - 1];
    let mut out = String::with_capacity(text.len());
    let mut dropped = 0;
    for line in text.split_inclusive('\n') {
        let links_gone = line.match_indices("](").any(|(i, _)| {
            let rest = &line[i + 2..];
            let Some(end) = rest.find(')') else { return false };
            let target = rest[..end].trim();
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with('/') {
                return false;
            }
            let mut parts: Vec<&str> = base.to_vec();
            for p in target.split('/') {
                match p {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    p => parts.push(p),
                }
            }
            gone(&parts.join("/"))
        });
        if links_gone {
            dropped += 1;
        } else {
            out.push_str(line);
        }
    }
    (out, dropped)
}

/// Makes the handout. Nothing is written if any check fails.
pub fn make(manifest: &Manifest, opts: &Options) -> Result<Report> {
    let root = &manifest.root;
    let stage = stage_index(manifest, &opts.stage)?;
    for k in &opts.keep_solutions {
        if manifest.lab(k).is_none() {
            bail!(
                "--keep-solutions: no lab `{k}` in the manifest (labs: {})",
                manifest.lab_ids().join(", ")
            );
        }
    }
    let out = absolute(&opts.out)?;
    check_out_dir(root, &out, opts.force)?;

    let later = later_lab_files(manifest, stage);
    let files = walk::walk(root)?;
    let mut report =
        Report { stage: manifest.labs[stage].id.clone(), out: out.clone(), ..Report::default() };
    let keep = |lab: &str| opts.keep_solutions.iter().any(|k| k == lab);
    let known = |lab: &str| manifest.lab(lab).is_some();

    // Plan, checking every file before writing any.
    let mut plan: Vec<(String, Action)> = Vec::new();
    let mut errors = Vec::new();
    for entry in &files {
        let rel = &entry.rel;
        if let Some(r) = manifest.handout_remove.iter().find(|r| walk::is_under(rel, r)) {
            report.removed.push((rel.clone(), format!("[handout].remove \"{r}\"")));
            continue;
        }
        if let Some(reason) = later.get(rel) {
            report.removed.push((rel.clone(), reason.clone()));
            continue;
        }
        if entry.kind == Kind::Symlink {
            plan.push((rel.clone(), Action::Link));
            continue;
        }
        let Some(leader) = markers::leader_for(Path::new(rel)) else {
            plan.push((rel.clone(), Action::Copy));
            continue;
        };
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
            plan.push((rel.clone(), Action::Copy)); // not UTF-8: copied as is
            continue;
        };
        let regions = match markers::scan(&text, leader)
            .and_then(|r| markers::check_labs(&r, &known).map(|()| r))
        {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{rel}:{}: {}", e.line, e.message));
                continue;
            }
        };
        if regions.is_empty() {
            plan.push((rel.clone(), Action::Copy));
            continue;
        }
        match markers::strip(&text, leader, &keep) {
            Ok(stripped) => {
                for r in &regions {
                    let map = if keep(&r.lab) {
                        &mut report.regions_kept
                    } else {
                        &mut report.regions_stripped
                    };
                    *map.entry(r.lab.clone()).or_default() += 1;
                }
                report.files_stripped += 1;
                plan.push((rel.clone(), Action::Write(stripped)));
            }
            Err(e) => errors.push(format!("{rel}:{}: {}", e.line, e.message)),
        }
    }
    if !errors.is_empty() {
        bail!("solution markers are broken; no handout written:\n  {}", errors.join("\n  "));
    }

    // SUMMARY.md: drop links to files that are not in the handout.
    let copied: BTreeSet<&str> = plan.iter().map(|(p, _)| p.as_str()).collect();
    let removed: BTreeSet<String> = report.removed.iter().map(|(p, _)| p.clone()).collect();
    let mut summary_action = None;
    if copied.contains(SUMMARY_PATH) {
        let text = std::fs::read_to_string(root.join(SUMMARY_PATH))
            .context(|| format!("reading {SUMMARY_PATH}"))?;
        let (pruned, dropped) = prune_summary(&text, SUMMARY_PATH, &|p| removed.contains(p));
        if dropped > 0 {
            report.summary_lines_dropped = dropped;
            summary_action = Some(pruned);
        }
    }
    if let Some(pruned) = summary_action {
        for (p, a) in plan.iter_mut() {
            if p == SUMMARY_PATH {
                *a = Action::Write(pruned.clone());
            }
        }
    }

    // Write.
    if out.exists() {
        clear_dir(&out)?;
    }
    std::fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
    for (rel, action) in &plan {
        let src = root.join(rel);
        let dst = out.join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        match action {
            Action::Copy => {
                std::fs::copy(&src, &dst).context(|| format!("copying {rel}"))?;
            }
            Action::Write(text) => {
                std::fs::write(&dst, text).context(|| format!("writing {}", dst.display()))?;
                if let Ok(meta) = std::fs::metadata(&src) {
                    let _ = std::fs::set_permissions(&dst, meta.permissions());
                }
            }
            Action::Link => {
                let target = std::fs::read_link(&src).context(|| format!("reading link {rel}"))?;
                make_link(&target, &dst).context(|| format!("linking {}", dst.display()))?;
            }
        }
        if opts.preserve_mtimes && !matches!(action, Action::Link) {
            copy_mtime(&src, &dst).context(|| format!("setting the time of {}", dst.display()))?;
        }
        report.files_copied += 1;
    }
    Ok(report)
}

fn copy_mtime(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mtime = std::fs::metadata(src)?.modified()?;
    std::fs::File::options().write(true).open(dst)?.set_modified(mtime)
}

#[cfg(unix)]
fn make_link(target: &Path, dst: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, dst)
}

#[cfg(not(unix))]
fn make_link(target: &Path, dst: &Path) -> std::io::Result<()> {
    let src = dst.parent().map(|p| p.join(target)).unwrap_or_else(|| target.to_path_buf());
    std::fs::copy(src, dst).map(|_| ())
}

/// Checks the markers of every scanned file of the tree. Returns the
/// problems as `file:line: message`, and the number of regions per lab.
pub fn check_tree_markers(
    manifest: &Manifest,
) -> Result<(Vec<String>, BTreeMap<String, usize>, usize)> {
    let known = |lab: &str| manifest.lab(lab).is_some();
    let mut errors = Vec::new();
    let mut per_lab: BTreeMap<String, usize> = BTreeMap::new();
    let mut scanned = 0;
    for entry in walk::walk(&manifest.root)? {
        if entry.kind != Kind::File {
            continue;
        }
        let Some(leader) = markers::leader_for(Path::new(&entry.rel)) else { continue };
        let Ok(text) = std::fs::read_to_string(manifest.root.join(&entry.rel)) else { continue };
        scanned += 1;
        match markers::scan(&text, leader).and_then(|r| markers::check_labs(&r, &known).map(|()| r))
        {
            Ok(regions) => {
                for r in regions {
                    *per_lab.entry(r.lab).or_default() += 1;
                }
            }
            Err(e) => errors.push(format!("{}:{}: {}", entry.rel, e.line, e.message)),
        }
    }
    Ok((errors, per_lab, scanned))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
[course]
name = "Fixture"

[groups]
"2" = ["2a", "2b"]

[handout]
remove = ["secret", "docs/src/instructors.md"]

[[lab]]
id = "1"
title = "One"
doc = "docs/src/lab1.md"
suites = ["fx/tests/project1.rs"]
[lab.tests]
get_1 = 10

[[lab]]
id = "2a"
title = "Two A"
doc = "docs/src/lab2.md"
suites = ["fx/tests/project2.rs"]
[lab.tests]
elect_2a = 10

[[lab]]
id = "2b"
title = "Two B"
doc = "docs/src/lab2.md"
suites = ["fx/tests/project2.rs", "fx/tests/project2b.rs"]
[lab.tests]
replicate_2b = 10

[[lab]]
id = "3"
title = "Three"
doc = "docs/src/lab3.md"
suites = ["fx/tests/project3.rs"]
[lab.tests]
split_3 = 10
"#;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn lines(ls: &[&str]) -> String {
        let mut s = ls.join("\n");
        s.push('\n');
        s
    }

    /// A tiny course tree with two labs' solutions in one file.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "labs/labs.toml", MANIFEST);
        write(root, "Cargo.toml", "[workspace]\nmembers = [\"fx\"]\n");
        write(root, "fx/Cargo.toml", "[package]\nname = \"fx\"\nversion = \"0.1.0\"\n");
        write(
            root,
            "fx/src/lib.rs",
            &lines(&[
                "pub fn get() -> u32 {",
                "    // SOLUTION BEGIN lab 1",
                "    42",
                "    // SOLUTION STUB",
                "    // todo!(\"lab 1: get\")",
                "    // SOLUTION END",
                "}",
                "// SOLUTION BEGIN lab 3",
                "pub fn helper() {}",
                "// SOLUTION END",
            ]),
        );
        write(root, "fx/src/plain.rs", "pub fn plain() {}\r\nno newline");
        write(
            root,
            "Makefile",
            &lines(&["all:", "# SOLUTION BEGIN lab 2a", "\techo solution", "# SOLUTION END"]),
        );
        for t in ["project1", "project2", "project2b", "project3"] {
            write(root, &format!("fx/tests/{t}.rs"), "#[test]\nfn t() {}\n");
        }
        for d in ["lab1", "lab2", "lab3", "instructors", "intro"] {
            write(root, &format!("docs/src/{d}.md"), "# doc\n");
        }
        write(
            root,
            SUMMARY_PATH,
            &lines(&[
                "# Summary",
                "- [Intro](intro.md)",
                "- [Lab 1](./lab1.md)",
                "- [Lab 2](lab2.md#top)",
                "- [Lab 3](lab3.md)",
                "- [Instructors](instructors.md)",
                "- [Web](https://example.com/lab3.md)",
            ]),
        );
        write(root, "secret/answers.txt", "x");
        write(root, "target/debug/junk", "x");
        write(root, ".git/HEAD", "x");
        dir
    }

    fn opts(stage: &str, out: &Path) -> Options {
        Options {
            stage: stage.into(),
            out: out.to_path_buf(),
            keep_solutions: vec![],
            force: false,
            preserve_mtimes: false,
        }
    }

    fn read(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap()
    }

    #[test]
    fn handout_strips_regions_and_removes_later_labs() {
        let repo = fixture();
        let out = tempfile::tempdir().unwrap();
        let m = Manifest::load(repo.path()).unwrap();
        let report = make(&m, &opts("2a", out.path())).unwrap();
        let o = out.path();

        // Regions of every lab, before and after the stage, are stubbed.
        assert_eq!(
            read(o, "fx/src/lib.rs"),
            lines(&["pub fn get() -> u32 {", "    todo!(\"lab 1: get\")", "}"])
        );
        assert_eq!(read(o, "Makefile"), "all:\n");
        assert_eq!(report.regions_stripped.get("1"), Some(&1));
        assert_eq!(report.regions_stripped.get("2a"), Some(&1));
        assert_eq!(report.regions_stripped.get("3"), Some(&1));
        assert_eq!(report.files_stripped, 2);
        // Files without markers are copied byte for byte.
        assert_eq!(read(o, "fx/src/plain.rs"), "pub fn plain() {}\r\nno newline");
        // Suites: lab 1 and 2a present; project2.rs is shared with 2b and kept;
        // 2b's own suite and lab 3's are removed.
        assert!(o.join("fx/tests/project1.rs").is_file());
        assert!(o.join("fx/tests/project2.rs").is_file());
        assert!(!o.join("fx/tests/project2b.rs").exists());
        assert!(!o.join("fx/tests/project3.rs").exists());
        // Documents: lab2.md is shared by 2a (kept); lab3.md removed.
        assert!(o.join("docs/src/lab2.md").is_file());
        assert!(!o.join("docs/src/lab3.md").exists());
        // The remove list, and build folders.
        assert!(!o.join("secret").exists());
        assert!(!o.join("docs/src/instructors.md").exists());
        assert!(!o.join("target").exists());
        assert!(!o.join(".git").exists());
        // SUMMARY.md lost the links to removed documents only.
        assert_eq!(
            read(o, SUMMARY_PATH),
            lines(&[
                "# Summary",
                "- [Intro](intro.md)",
                "- [Lab 1](./lab1.md)",
                "- [Lab 2](lab2.md#top)",
                "- [Web](https://example.com/lab3.md)",
            ])
        );
        assert_eq!(report.summary_lines_dropped, 2);
        // The manifest is copied as is, and in the handout the later labs
        // are simply not present.
        assert_eq!(read(o, "labs/labs.toml"), MANIFEST);
        let hm = Manifest::load(o).unwrap();
        assert_eq!(hm.presence(hm.lab("2a").unwrap()), crate::manifest::Presence::Present);
        assert_eq!(hm.presence(hm.lab("3").unwrap()), crate::manifest::Presence::NotInHandout);
        let removed: Vec<&str> = report.removed.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            removed,
            vec![
                "docs/src/instructors.md",
                "docs/src/lab3.md",
                "fx/tests/project2b.rs",
                "fx/tests/project3.rs",
                "secret/answers.txt"
            ]
        );
    }

    #[test]
    fn keep_solutions_and_group_stage() {
        let repo = fixture();
        let out = tempfile::tempdir().unwrap();
        let m = Manifest::load(repo.path()).unwrap();
        let mut o = opts("2", out.path());
        o.keep_solutions = vec!["1".into()];
        let report = make(&m, &o).unwrap();
        assert_eq!(report.stage, "2b");
        assert_eq!(
            read(out.path(), "fx/src/lib.rs"),
            lines(&["pub fn get() -> u32 {", "    42", "}"])
        );
        assert_eq!(report.regions_kept.get("1"), Some(&1));
        assert!(out.path().join("fx/tests/project2b.rs").is_file());
        o.keep_solutions = vec!["9".into()];
        let e = make(&m, &o).unwrap_err();
        assert!(e.to_string().contains("no lab `9`"), "{e}");
    }

    #[test]
    fn output_folder_rules() {
        let repo = fixture();
        let m = Manifest::load(repo.path()).unwrap();
        // Inside the repository: refused, except under target/.
        let e = make(&m, &opts("1", &repo.path().join("student"))).unwrap_err();
        assert!(e.to_string().contains("inside the repository"), "{e}");
        let e = make(&m, &opts("1", repo.path())).unwrap_err();
        assert!(e.to_string().contains("would contain the repository"), "{e}");
        make(&m, &opts("1", &repo.path().join("target/handout"))).unwrap();
        // Non-empty: refused without --force; --force keeps .git only.
        let out = tempfile::tempdir().unwrap();
        write(out.path(), "stale.txt", "x");
        write(out.path(), ".git/HEAD", "x");
        let e = make(&m, &opts("1", out.path())).unwrap_err();
        assert!(e.to_string().contains("is not empty"), "{e}");
        let mut o = opts("1", out.path());
        o.force = true;
        make(&m, &o).unwrap();
        assert!(!out.path().join("stale.txt").exists());
        assert!(out.path().join(".git/HEAD").exists());
        assert!(out.path().join("fx/src/lib.rs").exists());
    }

    #[test]
    fn broken_markers_write_nothing() {
        let repo = fixture();
        write(
            repo.path(),
            "fx/src/bad.rs",
            &lines(&["x", "// SOLUTION BEGIN lab 9", "// SOLUTION END"]),
        );
        write(repo.path(), "fx/src/bad2.rs", &lines(&["// SOLUTION STUB"]));
        let m = Manifest::load(repo.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("h");
        let e = make(&m, &opts("1", &target)).unwrap_err();
        assert!(e.to_string().contains("fx/src/bad.rs:2: SOLUTION BEGIN names lab 9"), "{e}");
        assert!(e.to_string().contains("fx/src/bad2.rs:1: SOLUTION STUB outside"), "{e}");
        assert!(!target.exists());
        let (errors, _, _) = check_tree_markers(&m).unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn summary_pruning_resolves_relative_links() {
        let text = "- [A](../x/a.md)\n- [B](b.md)\n- [C](sub/c.md) and [D](d.md)\n";
        let (out, n) = prune_summary(text, "docs/src/SUMMARY.md", &|p| {
            p == "docs/x/a.md" || p == "docs/src/d.md"
        });
        assert_eq!(out, "- [B](b.md)\n");
        assert_eq!(n, 2);
    }
}
