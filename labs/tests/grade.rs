//! End-to-end tests of `labs grade` on a fixture course of two labs in two
//! crates: the official tree, submissions made from it (the reference, the
//! stubs, tampered, broken, hanging, seed-dependent ones), and the four
//! report formats.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{alive, lines, write};
use serde_json::Value;

const MANIFEST: &str = r#"
[course]
name = "Grading fixture"

[[lab]]
id = "1"
title = "One"
doc = "docs/lab1.md"
student_files = ["one/src/lib.rs"]
suites = ["one/tests/project1.rs"]
timeout_secs = 20
[lab.tests]
sum_1 = 10
seeded_1 = 10

[[lab]]
id = "2"
title = "Two"
requires = ["1"]
doc = "docs/lab2.md"
student_files = ["two/src/lib.rs"]
suites = ["two/tests/project2.rs"]
timeout_secs = 3
[lab.tests]
double_2 = 10
wait_2 = 5
"#;

/// Lab 1's student file: `sum` and `check`, each with its stub.
fn one_lib(sum: &str, check: &str) -> String {
    lines(&[
        "pub fn sum(a: u32, b: u32) -> u32 {",
        "    // SOLUTION BEGIN lab 1",
        sum,
        "    // SOLUTION STUB",
        "    // let _ = (a, b);",
        "    // todo!(\"lab 1: sum\")",
        "    // SOLUTION END",
        "}",
        "pub fn check(seed: u64) -> bool {",
        "    // SOLUTION BEGIN lab 1",
        check,
        "    // SOLUTION STUB",
        "    // let _ = seed;",
        "    // todo!(\"lab 1: check\")",
        "    // SOLUTION END",
        "}",
    ])
}

/// Lab 2's student file: `double` and `wait`.
fn two_lib(double: &str, wait: &str) -> String {
    lines(&[
        "pub fn double(x: u32) -> u32 {",
        "    // SOLUTION BEGIN lab 2",
        double,
        "    // SOLUTION STUB",
        "    // let _ = x;",
        "    // todo!(\"lab 2: double\")",
        "    // SOLUTION END",
        "}",
        "pub fn wait() {",
        "    // SOLUTION BEGIN lab 2",
        wait,
        "    // SOLUTION STUB",
        "    // todo!(\"lab 2: wait\")",
        "    // SOLUTION END",
        "}",
    ])
}

fn reference_one() -> String {
    one_lib("    a + b", "    let _ = seed; true")
}

fn reference_two() -> String {
    two_lib("    x * 2", "")
}

const SUITE_ONE: &[&str] = &[
    "#[test]",
    "fn sum_1() {",
    "    assert_eq!(one::sum(1, 2), 3);",
    "}",
    "#[test]",
    "fn seeded_1() {",
    "    let seed: u64 = std::env::var(\"TINYKV_SEED\").unwrap_or_default().parse().unwrap_or(0);",
    "    assert!(one::check(seed), \"check fails under seed {seed}\");",
    "}",
];

const SUITE_TWO: &[&str] = &[
    "#[test]",
    "fn double_2() {",
    "    assert_eq!(two::double(2), 4);",
    "}",
    "#[test]",
    "fn wait_2() {",
    "    two::wait();",
    "}",
];

fn package(root: &Path, name: &str) {
    write(
        root,
        &format!("{name}/Cargo.toml"),
        &format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
    );
}

/// The official course: reference solutions, suites, manifest, documents.
fn course(root: &Path) {
    write(root, "Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"one\", \"two\"]\n");
    package(root, "one");
    package(root, "two");
    write(root, "one/src/lib.rs", &reference_one());
    write(root, "two/src/lib.rs", &reference_two());
    write(root, "one/tests/project1.rs", &lines(SUITE_ONE));
    write(root, "two/tests/project2.rs", &lines(SUITE_TWO));
    write(root, "labs/labs.toml", MANIFEST);
    write(
        root,
        "docs/lab1.md",
        "# One\n\n| test | points |\n|---|---|\n| `sum_1` | 10 |\n| `seeded_1` | 10 |\n",
    );
    write(
        root,
        "docs/lab2.md",
        "# Two\n\n| test | points |\n|---|---|\n| `double_2` | 10 |\n| `wait_2` | 5 |\n",
    );
}

/// A student's submission: a copy of the course tree (as a student's
/// repository would be), then `edits`.
fn submission(root: &Path, dir: &Path, edits: &[(&str, String)]) -> PathBuf {
    for rel in [
        "Cargo.toml",
        "one/Cargo.toml",
        "two/Cargo.toml",
        "one/src/lib.rs",
        "two/src/lib.rs",
        "one/tests/project1.rs",
        "two/tests/project2.rs",
        "labs/labs.toml",
        "docs/lab1.md",
        "docs/lab2.md",
    ] {
        write(dir, rel, &std::fs::read_to_string(root.join(rel)).unwrap());
    }
    for (rel, text) in edits {
        write(dir, rel, text);
    }
    dir.to_path_buf()
}

fn labs(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labs"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("TINYKV_SEED")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap()
}

/// `labs grade ARGS --format json`: the parsed report (panics with the
/// tool's stderr if it failed).
fn grade(root: &Path, args: &[&str]) -> Value {
    let mut all = vec!["grade", "--format", "json"];
    all.extend_from_slice(args);
    let out = labs(root, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "labs {all:?} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

fn test_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["labs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["tests"].as_array().unwrap())
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {report:#}"))
}

fn lab_of<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["labs"].as_array().unwrap().iter().find(|l| l["id"] == id).unwrap()
}

/// The scores of every test, by name.
fn scores(report: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = report["labs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["tests"].as_array().unwrap())
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["score"].as_u64().unwrap()))
        .collect();
    v.sort();
    v
}

/// A minimal JSON Schema check (the keywords labs/grade-report.schema.json
/// uses: type, enum, required, properties, additionalProperties, items).
fn validate(schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return errors;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {allowed:?}"));
    }
    if let Some(obj) = v.as_object() {
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: missing {r}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => errors.extend(validate(s, val, &format!("{at}.{k}"))),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: unexpected property {k}"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, val) in arr.iter().enumerate() {
            errors.extend(validate(items, val, &format!("{at}[{i}]")));
        }
    }
    errors
}

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grade-report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_reference_scores_full_marks_and_the_stubs_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("course");
    course(&root);
    // In place, and as a submission.
    let report = grade(&root, &[]);
    assert_eq!((report["score"].as_u64(), report["max_score"].as_u64()), (Some(35), Some(35)));
    assert!(report["submission"].is_null());
    let errors = validate(&schema(), &report, "$");
    assert!(errors.is_empty(), "the report breaks its schema:\n{}", errors.join("\n"));

    let sub = submission(&root, &dir.path().join("reference"), &[]);
    let report = grade(&root, &["--submission", sub.to_str().unwrap()]);
    assert_eq!(report["score"], 35, "{report:#}");
    assert_eq!(report["ignored_files"], serde_json::json!([]), "{report:#}");

    // The handout's stubs score zero, every test failing naming its lab.
    let stubs = dir.path().join("stubs");
    let out = labs(&root, &["handout", "--stage", "2", "--out", stubs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = grade(&root, &["--submission", stubs.to_str().unwrap()]);
    assert_eq!(report["score"], 0, "{report:#}");
    for (name, lab) in [("sum_1", "1"), ("seeded_1", "1"), ("double_2", "2"), ("wait_2", "2")] {
        let t = test_of(&report, name);
        assert_eq!(t["status"], "failed", "{t:#}");
        let output = t["output"].as_str().unwrap();
        assert!(output.contains(&format!("lab {lab}")), "{name}: {output}");
        assert_eq!(t["replay"], format!("make project{lab} TEST={name}"), "{t:#}");
    }
    let errors = validate(&schema(), &report, "$");
    assert!(errors.is_empty(), "the report breaks its schema:\n{}", errors.join("\n"));

    // A missing student file is an error naming it.
    std::fs::remove_file(sub.join("two/src/lib.rs")).unwrap();
    let out = labs(&root, &["grade", "--submission", sub.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lacks student file(s) the graded labs need: two/src/lib.rs"),
        "{stderr}"
    );
    // Lab 1 alone does not need it.
    let report = grade(&root, &["--labs", "1", "--submission", sub.to_str().unwrap()]);
    assert_eq!((report["score"].as_u64(), report["max_score"].as_u64()), (Some(20), Some(20)));
}

#[test]
fn edits_outside_the_student_files_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("course");
    course(&root);
    let wrong_sum = one_lib("    a.wrapping_sub(b)", "    let _ = seed; true");
    let honest =
        submission(&root, &dir.path().join("honest"), &[("one/src/lib.rs", wrong_sum.clone())]);
    let baseline = grade(&root, &["--submission", honest.to_str().unwrap()]);
    assert_eq!(baseline["score"], 25, "{baseline:#}");
    assert_eq!(test_of(&baseline, "sum_1")["status"], "failed");

    // The same code, with the graded test made to pass, the manifest's
    // points changed, an #[ignore] on a failing test, and a harness edit.
    let suite = lines(SUITE_ONE)
        .replace("assert_eq!(one::sum(1, 2), 3);", "assert!(true);")
        .replace("#[test]\nfn seeded_1", "#[test]\n#[ignore]\nfn seeded_1");
    let tampered = submission(
        &root,
        &dir.path().join("tampered"),
        &[
            ("one/src/lib.rs", wrong_sum),
            ("one/tests/project1.rs", suite),
            ("labs/labs.toml", MANIFEST.replace("sum_1 = 10", "sum_1 = 1")),
            ("Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"one\"]\n".into()),
            ("notes.txt", "extra\n".into()),
        ],
    );
    let report = grade(&root, &["--submission", tampered.to_str().unwrap()]);
    assert_eq!(scores(&report), scores(&baseline), "{report:#}");
    assert_eq!(report["score"], baseline["score"]);
    assert_eq!(report["max_score"], 35);
    assert_eq!(
        report["ignored_files"],
        serde_json::json!(["Cargo.toml", "labs/labs.toml", "notes.txt", "one/tests/project1.rs"]),
        "{report:#}"
    );
    // The table says so too.
    let out = labs(&root, &["grade", "--submission", tampered.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ignored (not student files of the graded labs"), "{table}");
    assert!(table.contains("Score: 25/35 points (3/4 tests passed)"), "{table}");
}

#[test]
fn compile_errors_hangs_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("course");
    course(&root);
    // Lab 2's file does not compile: lab 2 scores zero with the compiler's
    // message; lab 1 is graded.
    let broken = submission(
        &root,
        &dir.path().join("broken"),
        &[("two/src/lib.rs", two_lib("    x * \"2\"", ""))],
    );
    let report = grade(&root, &["--submission", broken.to_str().unwrap()]);
    let two = lab_of(&report, "2");
    assert_eq!((two["built"].as_bool(), two["score"].as_u64()), (Some(false), Some(0)), "{two:#}");
    let errors = two["build_errors"].as_str().unwrap();
    assert!(errors.contains("error[E0277]"), "{errors}");
    assert_eq!(test_of(&report, "double_2")["status"], "not_built");
    assert_eq!(lab_of(&report, "1")["score"], 20, "{report:#}");
    let errors = validate(&schema(), &report, "$");
    assert!(errors.is_empty(), "the report breaks its schema:\n{}", errors.join("\n"));

    // Code that hangs, with a helper process: TIMEOUT, and the process
    // group is gone.
    let hang = two_lib(
        "    x * 2",
        "    let c = std::process::Command::new(\"sleep\").arg(\"120\").spawn().unwrap();\n    \
         std::fs::write(\"wait_2.pid\", c.id().to_string()).unwrap();\n    loop { std::thread::park(); }",
    );
    let hanging = submission(&root, &dir.path().join("hanging"), &[("two/src/lib.rs", hang)]);
    let report = grade(&root, &["--labs", "2", "--submission", hanging.to_str().unwrap()]);
    let t = test_of(&report, "wait_2");
    assert_eq!(t["status"], "timeout", "{t:#}");
    assert!(t["output"].as_str().unwrap().contains("killed after the 3.00 s timeout"), "{t:#}");
    let tree = root.join("target/grade/tree");
    let pid = std::fs::read_to_string(tree.join("two/wait_2.pid")).expect("wait_2 wrote its pid");
    assert!(!alive(pid.trim()), "the hanging test's child {pid} outlived it");
    assert_eq!(report["score"], 10);

    // Code that passes some seeds: zero for the test, the first failing
    // seed named.
    let flaky = one_lib("    a + b", "    seed != 3 && seed != 4");
    let flaky = submission(&root, &dir.path().join("flaky"), &[("one/src/lib.rs", flaky)]);
    let args = ["--labs", "1", "--seeds", "5", "--submission", flaky.to_str().unwrap()];
    let report = grade(&root, &args);
    let t = test_of(&report, "seeded_1");
    assert_eq!((t["score"].as_u64(), t["failing_seed"].as_u64()), (Some(0), Some(3)), "{t:#}");
    assert!(t["output"].as_str().unwrap().contains("check fails under seed 3"), "{t:#}");
    assert_eq!(t["replay"], "make project1 TEST=seeded_1 SEED=3");
    assert_eq!(test_of(&report, "sum_1")["seeds_run"], 5);
    assert_eq!(report["seeds"], serde_json::json!([1, 2, 3, 4, 5]));
}

#[test]
fn junit_and_gradescope_reports() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("course");
    course(&root);
    let wrong = one_lib("    a.wrapping_sub(b)", "    let _ = seed; true");
    let sub = submission(&root, &dir.path().join("sub"), &[("one/src/lib.rs", wrong)]);
    let sub = sub.to_str().unwrap();

    let xml_path = dir.path().join("report.xml");
    let out = labs(
        &root,
        &["grade", "--submission", sub, "--format", "junit", "--out", xml_path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    let junit = quick_junit::Report::deserialize_from_str(&xml)
        .unwrap_or_else(|e| panic!("the JUnit report does not parse: {e}\n{xml}"));
    assert_eq!(junit.test_suites.len(), 2, "{xml}");
    assert_eq!((junit.tests, junit.failures, junit.errors), (4, 1, 0), "{xml}");
    let one = &junit.test_suites[0];
    assert_eq!(one.name.as_str(), "lab 1: One");
    assert_eq!((one.tests, one.failures), (2, 1));
    // Progress and the table go to stderr when the report goes to a file.
    assert!(String::from_utf8_lossy(&out.stderr).contains("report written to"));

    let out = labs(&root, &["grade", "--submission", sub, "--format", "gradescope"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(gs["score"].is_number() && gs["score"] == 25.0, "{gs:#}");
    assert!(gs["execution_time"].is_u64(), "{gs:#}");
    assert!(gs["output"].is_string(), "{gs:#}");
    let tests = gs["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 4);
    for t in tests {
        assert!(t["name"].is_string() && t["output"].is_string(), "{t:#}");
        assert!(t["score"].is_number() && t["max_score"].is_number(), "{t:#}");
        assert!(t["status"] == "passed" || t["status"] == "failed", "{t:#}");
        assert_eq!(t["visibility"], "visible");
    }
    let sum = tests.iter().find(|t| t["name"] == "lab 1: sum_1").unwrap();
    assert_eq!((sum["score"].as_f64(), sum["status"].as_str()), (Some(0.0), Some("failed")));
    assert!(
        sum["output"].as_str().unwrap().contains("replay: make project1 TEST=sum_1"),
        "{sum:#}"
    );
}

#[test]
fn the_autograder_bundle_grades_a_submission_like_gradescope() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("course");
    course(&root);
    let zip_path = dir.path().join("autograder.zip");
    let out = labs(&root, &["autograder", "--stage", "2", "--out", zip_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // setup.sh and run_autograder at the top, executable; the handout
    // (stubs, no solutions) under tinykv/.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    for script in ["setup.sh", "run_autograder"] {
        let f = zip.by_name(script).unwrap_or_else(|_| panic!("no {script} in the zip"));
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755), "{script}");
    }
    let mut lib = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("tinykv/one/src/lib.rs").unwrap(), &mut lib)
        .unwrap();
    assert!(lib.contains("todo!(\"lab 1: sum\")"), "{lib}");
    assert!(!lib.contains("a + b"), "the bundle holds the solution:\n{lib}");
    assert!(zip.by_name("tinykv/labs/labs.toml").is_ok());

    // A dry run as Gradescope does it: source, submission (a repository
    // uploaded as one folder), results.
    let ag = dir.path().join("ag");
    zip.extract(ag.join("source")).unwrap();
    for script in ["setup.sh", "run_autograder"] {
        let check = Command::new("bash").arg("-n").arg(ag.join("source").join(script)).output();
        let check = check.unwrap();
        assert!(check.status.success(), "{script}: {}", String::from_utf8_lossy(&check.stderr));
    }
    submission(&root, &ag.join("submission/alice-repo"), &[]);
    let run = |ag: &Path| {
        Command::new("bash")
            .arg(ag.join("source/run_autograder"))
            .env("AUTOGRADER_ROOT", ag)
            .env("LABS", env!("CARGO_BIN_EXE_labs"))
            .env("CARGO_TARGET_DIR", ag.join("source/tinykv/target"))
            .env_remove("RUSTFLAGS")
            .env_remove("TINYKV_SEED")
            .output()
            .unwrap()
    };
    let out = run(&ag);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(ag.join("results/results.json")).unwrap())
            .unwrap();
    assert_eq!(results["score"], 35.0, "{results:#}");
    assert_eq!(results["tests"].as_array().map(Vec::len), Some(4));

    // A submission that cannot be graded still gets a results.json that
    // says why.
    std::fs::remove_file(ag.join("submission/alice-repo/one/src/lib.rs")).unwrap();
    let out = run(&ag);
    assert!(!out.status.success());
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(ag.join("results/results.json")).unwrap())
            .unwrap();
    assert_eq!(results["score"], 0.0, "{results:#}");
    let why = results["output"].as_str().unwrap();
    assert!(why.contains("one/src/lib.rs"), "{why}");
}
