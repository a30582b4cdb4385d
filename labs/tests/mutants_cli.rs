//! End-to-end test of `labs mutants` on a tiny fixture course, with a
//! stand-in for `cargo mutants`: a script (given to the tool as `$CARGO`)
//! that records what it is asked, lists three mutants and reports one
//! killed, one survivor and one unviable. It tests our side (the region
//! diff, the generated config, sampling, the equivalent list, the report
//! and the exit status), not cargo-mutants, and needs neither it nor a
//! build.

#[allow(dead_code)] // the process helpers are for the other end-to-end tests
mod common;

use std::path::Path;
use std::process::Command;

use common::{lines, write};

const MANIFEST: &str = r#"
[course]
name = "Fixture course"

[[lab]]
id = "1"
title = "Adding"
doc = "docs/lab1.md"
student_files = ["fx/src/lib.rs"]
suites = ["fx/tests/project1.rs"]
[lab.tests]
add_1 = 10
adds_zero_1 = 5

[[lab]]
id = "2"
title = "Adding more"
requires = ["1"]
doc = "docs/lab2.md"
student_files = ["fx/src/lib.rs"]
suites = ["fx/tests/project2.rs"]
[lab.tests]
add_more_2 = 10
"#;

/// Answers `cargo mutants …` the way cargo-mutants 27 does, from the files
/// in `$FAKE_LOG`; records each call there.
const FAKE_CARGO: &str = r#"#!/bin/sh
if [ "$1" = test ]; then
  echo "$*" >> "$FAKE_LOG/tests"
  [ -e "$FAKE_LOG/baseline-fails" ] && case "$*" in *--no-run*) ;; *) exit 101;; esac
  exit 0
fi
[ "$1" = mutants ] || { echo "fake cargo: only test and mutants" >&2; exit 90; }
shift
echo "$*" >> "$FAKE_LOG/calls"
case "$1" in
  --version)
    [ -e "$FAKE_LOG/missing" ] && { echo "error: no such command: mutants" >&2; exit 101; }
    echo "cargo-mutants 27.1.0"; exit 0;;
  --list)
    for a in "$@"; do case "$a" in --in-diff=*) cp "${a#--in-diff=}" "$FAKE_LOG/list.diff";; esac; done
    cat "$FAKE_LOG/list.json"; exit 0;;
esac
out=
for a in "$@"; do
  case "$a" in
    --config=*)
      case "$a" in
        *later-2*) cp "${a#--config=}" "$FAKE_LOG/later-config.toml"; later=1;;
        *) cp "${a#--config=}" "$FAKE_LOG/config.toml";;
      esac;;
    --output=*) out="${a#--output=}";;
  esac
done
outcomes="$FAKE_LOG/outcomes.json"
[ -n "$later" ] && outcomes="$FAKE_LOG/later-outcomes.json"
mkdir -p "$out/mutants.out" && cp "$outcomes" "$out/mutants.out/outcomes.json"
exit 2
"#;

/// (name, line, function, cargo-mutants' summary of its test).
const MUTANTS: [(&str, usize, &str, &str); 3] = [
    ("fx/src/lib.rs:3:5: replace add -> u32 with 0", 3, "add", "CaughtMutant"),
    ("fx/src/lib.rs:3:7: replace + with - in add", 3, "add", "MissedMutant"),
    ("fx/src/lib.rs:3:7: replace + with * in add", 3, "add", "Unviable"),
];

fn mutant_json(name: &str, line: usize, function: &str) -> String {
    format!(
        r#"{{"name":"{name}","file":"fx/src/lib.rs","function":{{"function_name":"{function}"}},"span":{{"start":{{"line":{line},"column":5}},"end":{{"line":{line},"column":10}}}},"genre":"BinaryOperator"}}"#
    )
}

fn fixture(root: &Path, log: &Path) {
    write(root, "Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"fx\"]\n");
    write(
        root,
        "fx/Cargo.toml",
        "[package]\nname = \"fx\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(
        root,
        "fx/src/lib.rs",
        &lines(&[
            "pub fn add(a: u32, b: u32) -> u32 {",
            "    // SOLUTION BEGIN lab 1",
            "    a + b",
            "    // SOLUTION STUB",
            "    // let _ = (a, b);",
            "    // todo!(\"lab 1: add\")",
            "    // SOLUTION END",
            "}",
        ]),
    );
    write(
        root,
        "fx/tests/project1.rs",
        &lines(&["#[test]", "fn add_1() {", "    assert_eq!(fx::add(1, 2), 3);", "}"]),
    );
    write(root, "labs/labs.toml", MANIFEST);
    write(root, "docs/lab1.md", "# Lab 1\n");
    let listed: Vec<String> = MUTANTS.iter().map(|(n, l, f, _)| mutant_json(n, *l, f)).collect();
    write(log, "list.json", &format!("[{}]\n", listed.join(",")));
    let mut outcomes = vec![r#"{"scenario":"Baseline","summary":"Success"}"#.to_string()];
    for (n, l, f, summary) in MUTANTS {
        let m = mutant_json(n, l, f);
        outcomes.push(format!(r#"{{"scenario":{{"Mutant":{m}}},"summary":"{summary}"}}"#));
    }
    write(log, "outcomes.json", &format!("{{\"outcomes\":[{}]}}\n", outcomes.join(",")));
    // Lab 2's suite kills everything.
    let caught: Vec<String> =
        outcomes.iter().map(|o| o.replace("MissedMutant", "CaughtMutant")).collect();
    write(log, "later-outcomes.json", &format!("{{\"outcomes\":[{}]}}\n", caught.join(",")));
    write(
        root,
        "fx/tests/project2.rs",
        &lines(&["#[test]", "fn add_more_2() {", "    assert_eq!(fx::add(2, 3), 5);", "}"]),
    );
    write(root, "docs/lab2.md", "# Lab 2\n");
    write(log, "cargo", FAKE_CARGO);
    let script = log.join("cargo");
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
}

fn labs(root: &Path, log: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_labs"))
        .arg("--root")
        .arg(root)
        .arg("mutants")
        .args(args)
        .env("CARGO", log.join("cargo"))
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("FAKE_LOG", log)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_run_reports_each_outcome_and_fails_on_a_survivor() {
    let (dir, logdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (root, log) = (dir.path(), logdir.path());
    fixture(root, log);

    let report = root.join("report.json");
    let (code, out) =
        labs(root, log, &["--lab", "1", "--format", "json", "--out", report.to_str().unwrap()]);
    assert_eq!(code, 1, "a survivor not in the equivalent list must fail the run:\n{out}");
    // The diff given to cargo-mutants adds exactly the solution line, at
    // its place in the file.
    let diff = read(&log.join("list.diff"));
    assert!(diff.contains("+++ b/fx/src/lib.rs"), "{diff}");
    assert!(diff.contains("@@ -2,0 +3,1 @@\n+    a + b\n"), "{diff}");
    assert!(!diff.contains("todo!"), "the stub is not a solution line:\n{diff}");
    // The config: the suite's package and target, the graded names with
    // --exact, and each mutant's name anchored and escaped.
    let config: toml::Table = toml::from_str(&read(&log.join("config.toml"))).unwrap();
    let strings = |key: &str| -> Vec<String> {
        config[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(strings("test_package"), ["fx"]);
    let args = strings("additional_cargo_test_args");
    assert_eq!(args[..3], ["--test=project1", "--", "--exact"], "{args:?}");
    let mut names = args[3..].to_vec();
    names.sort();
    assert_eq!(names, ["add_1", "adds_zero_1"], "the graded names: {args:?}");
    let examine = strings("examine_re");
    assert_eq!(examine.len(), 3, "{examine:?}");
    assert!(
        examine.contains(&r"^fx/src/lib\.rs:3:7: replace \+ with \* in add$".to_string()),
        "{examine:?}"
    );
    let calls = read(&log.join("calls"));
    assert!(calls.contains("--in-place") && calls.contains("--in-diff="), "{calls}");
    // The baseline is ours (cargo-mutants' would test only the mutated
    // package): a build, then the graded tests, as each mutant gets them.
    assert!(calls.contains("--baseline=skip") && calls.contains("--timeout=20"), "{calls}");
    let tests = read(&log.join("tests"));
    assert!(
        tests.contains("test --package=fx --test=project1 --no-run -- --exact"),
        "the baseline build: {tests}"
    );
    assert!(tests.contains("test --package=fx --test=project1 -- --exact"), "{tests}");

    let json: serde_json::Value = serde_json::from_str(&read(&report)).unwrap();
    let total = &json["total"];
    assert_eq!(
        (total["killed"].as_u64(), total["survived"].as_u64(), total["unviable"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{json:#}"
    );
    let survivors = json["survivors"].as_array().unwrap();
    assert_eq!(survivors.len(), 1, "{json:#}");
    assert_eq!(survivors[0]["mutation"], "replace + with - in add");
    assert_eq!(survivors[0]["line"], 3);
    assert_eq!(survivors[0]["function"], "add");

    // The table names the survivor, its place and its function.
    let (code, out) = labs(root, log, &["--lab", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fx/src/lib.rs:3: replace + with - in add  [add]"), "{out}");
    assert!(out.contains("kill rate 50.0%"), "one killed of two viable:\n{out}");

    // Listed as equivalent (with a reason), the survivor is not run and
    // the run passes.
    write(
        root,
        "labs/equivalent-mutants.toml",
        "[[mutant]]\nlab = \"1\"\nfile = \"fx/src/lib.rs\"\nfunction = \"add\"\n\
         mutation = \"replace + with - in add\"\nwhy = \"a fixture\"\n",
    );
    let (code, out) = labs(root, log, &["--lab", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no survivors"), "{out}");
    let config = read(&log.join("config.toml"));
    assert!(
        !config.contains(r"replace \+ with - in"),
        "an equivalent mutant is not examined:\n{config}"
    );

    // Listed as killed by lab 2 instead: tested with lab 2's suite, which
    // kills it; reported as `later`, not as a survivor.
    write(
        root,
        "labs/equivalent-mutants.toml",
        "[[mutant]]\nlab = \"1\"\nfile = \"fx/src/lib.rs\"\nfunction = \"add\"\n\
         mutation = \"replace + with - in add\"\nwhy = \"only lab 2 adds\"\nkilled_by = \"2\"\n",
    );
    let (code, out) =
        labs(root, log, &["--lab", "1", "--format", "json", "--out", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let later = read(&log.join("later-config.toml"));
    assert!(
        later.contains("--test=project2") && later.contains("add_more_2"),
        "lab 2's suite: {later}"
    );
    assert!(later.contains(r"replace \+ with \- in add"), "the listed mutant is examined: {later}");
    let json: serde_json::Value = serde_json::from_str(&read(&report)).unwrap();
    assert_eq!(json["total"]["later"], 1, "{json:#}");
    assert_eq!(json["total"]["survived"], 0, "{json:#}");
    // If lab 2's suite does not kill it after all, it is a survivor.
    write(log, "later-outcomes.json", &read(&log.join("outcomes.json")));
    let (code, out) = labs(root, log, &["--lab", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("replace + with - in add  [add]"), "{out}");
}

#[test]
fn a_sample_examines_n_mutants_picked_by_the_seed() {
    let (dir, logdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (root, log) = (dir.path(), logdir.path());
    fixture(root, log);
    let picked = |seed: &str| {
        let (_, out) = labs(root, log, &["--lab", "1", "--sample", "1", "--seed", seed]);
        assert!(out.contains("(a sample of 1, seed"), "{out}");
        let config: toml::Table = toml::from_str(&read(&log.join("config.toml"))).unwrap();
        let examine = config["examine_re"].as_array().unwrap().clone();
        assert_eq!(examine.len(), 1, "{examine:?}");
        examine[0].as_str().unwrap().to_string()
    };
    assert_eq!(picked("7"), picked("7"), "one seed, one sample");
    let all: std::collections::BTreeSet<String> =
        (1..=12).map(|s| picked(&s.to_string())).collect();
    assert!(all.len() > 1, "every seed picked the same mutant: {all:?}");
}

#[test]
fn clear_errors_for_a_missing_cargo_mutants_an_unknown_lab_and_a_bad_list() {
    let (dir, logdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (root, log) = (dir.path(), logdir.path());
    fixture(root, log);
    let (code, out) = labs(root, log, &["--lab", "9"]);
    assert_ne!(code, 0);
    assert!(out.contains("no lab `9` (labs: 1, 2)"), "{out}");
    write(
        root,
        "labs/equivalent-mutants.toml",
        "[[mutant]]\nlab = \"1\"\nfile = \"f\"\nfunction = \"g\"\nmutation = \"m\"\nwhy = \" \"\n",
    );
    let (code, out) = labs(root, log, &["--lab", "1", "--list"]);
    assert_ne!(code, 0);
    assert!(out.contains("labs/equivalent-mutants.toml: f `m` has no `why`"), "{out}");
    write(root, "labs/equivalent-mutants.toml", "");
    write(log, "baseline-fails", "");
    let (code, out) = labs(root, log, &["--lab", "1"]);
    assert_ne!(code, 0);
    assert!(out.contains("lab 1's graded tests fail on the unmutated tree"), "{out}");
    write(log, "missing", "");
    let (code, out) = labs(root, log, &["--lab", "1", "--list"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("cargo-mutants is not installed: `cargo install --locked cargo-mutants`"),
        "{out}"
    );
}
