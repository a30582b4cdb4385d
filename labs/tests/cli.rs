//! End-to-end tests of the `labs` binary on a tiny fixture course: a cargo
//! workspace with one package, built in its own target folder inside a
//! temporary directory (no network, no dependency on the course crates).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{alive, lines, write};

const MANIFEST: &str = r#"
[course]
name = "Fixture course"

[groups]
"all" = ["1", "2"]

[handout]
remove = ["notes"]

[[lab]]
id = "1"
title = "Adding"
doc = "docs/lab1.md"
student_files = ["fx/src/lib.rs"]
suites = ["fx/tests/project1.rs"]
timeout_secs = 3
[lab.tests]
add_1 = 10
broken_1 = 10
hang_1 = 10
seeded_1 = 10
exits_1 = 10

[[lab]]
id = "2"
title = "Later"
requires = ["1"]
doc = "docs/lab2.md"
"#;

/// The reference solution, with a stub that names its lab. With
/// `warn_stub`, the stub leaves its arguments unused (a warning).
fn lib_rs(warn_stub: bool) -> String {
    let stub: &[&str] = if warn_stub {
        &["    // todo!(\"lab 1: add\")"]
    } else {
        &["    // let _ = (a, b);", "    // todo!(\"lab 1: add\")"]
    };
    let mut ls = vec![
        "pub fn add(a: u32, b: u32) -> u32 {",
        "    // SOLUTION BEGIN lab 1",
        "    a + b",
        "    // SOLUTION STUB",
    ];
    ls.extend_from_slice(stub);
    ls.extend_from_slice(&["    // SOLUTION END", "}"]);
    lines(&ls)
}

fn suite_rs(extra: &[&str]) -> String {
    let mut ls = vec![
        "#[test]",
        "fn add_1() {",
        "    assert_eq!(fx::add(1, 2), 3);",
        "}",
        "#[test]",
        "fn broken_1() {",
        "    assert_eq!(fx::add(1, 1), 2);",
        "    println!(\"some noise\");",
        "    panic!(\"broken on purpose\");",
        "}",
        "#[test]",
        "fn hang_1() {",
        "    assert_eq!(fx::add(0, 0), 0);",
        "    // A helper process the runner must kill with the test.",
        "    let child = std::process::Command::new(\"sleep\").arg(\"120\").spawn().unwrap();",
        "    std::fs::write(\"hang_1.pid\", child.id().to_string()).unwrap();",
        "    std::thread::sleep(std::time::Duration::from_secs(60));",
        "}",
        "#[test]",
        "fn exits_1() {",
        "    assert_eq!(fx::add(0, 1), 1);",
        "    // Exit status 0, but libtest never reports the test: not a pass.",
        "    std::process::exit(0);",
        "}",
        "#[test]",
        "fn seeded_1() {",
        "    assert_eq!(fx::add(2, 2), 4);",
        "    let seed: u64 = std::env::var(\"TINYKV_SEED\").unwrap_or_default().parse().unwrap_or(0);",
        "    // Later seeds finish first, so the runner must pick the smallest failing one.",
        "    std::thread::sleep(std::time::Duration::from_millis(400u64.saturating_sub(50 * seed)));",
        "    assert!(seed < 3, \"seed {seed} breaks me\");",
        "}",
    ];
    ls.extend_from_slice(extra);
    lines(&ls)
}

fn fixture(root: &Path) {
    write(root, "Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"fx\"]\n");
    write(
        root,
        "fx/Cargo.toml",
        "[package]\nname = \"fx\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(root, "fx/src/lib.rs", &lib_rs(false));
    write(root, "fx/tests/project1.rs", &suite_rs(&[]));
    write(root, "labs/labs.toml", MANIFEST);
    write(
        root,
        "docs/lab1.md",
        "# Lab 1\n\n| test | points |\n|---|---|\n| `add_1` | 10 |\n| `broken_1` | 10 |\n\
         | `hang_1` | 10 |\n| `seeded_1` | 10 |\n| `exits_1` | 10 |\n",
    );
    write(root, "docs/lab2.md", "# Lab 2\n");
    write(root, "notes/answers.md", "secret\n");
}

fn labs(root: &Path, args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_labs"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("TINYKV_SEED")
        // CI sets RUSTFLAGS="-D warnings"; the fixtures must build the same
        // way everywhere (one of them has a warning on purpose).
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn test_command_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);

    // The whole lab: two pass, one fails, one times out.
    let (code, out) = labs(root, &["test", "1"]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "/5] add_1 ... ok",
        "/5] broken_1 ... FAILED",
        "/5] hang_1 ... TIMEOUT",
        "/5] seeded_1 ... ok",
        "/5] exits_1 ... FAILED",
        "before libtest reported the test's result",
        "broken on purpose",
        "replay: make project1 TEST=broken_1",
        "or: cargo run -p labs -- test 1 --test broken_1",
        "Score: 20/50 points (2/5 tests passed)",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    // The timed-out test's helper process went with it.
    let pid = std::fs::read_to_string(root.join("fx/hang_1.pid")).expect("hang_1 wrote its pid");
    assert!(!alive(pid.trim()), "hang_1's child {pid} outlived the timeout");
    // Passing tests' output is not shown; libtest framing is trimmed.
    assert!(!out.contains("test result:"), "{out}");

    // One test, several seeds: the first failing seed is reported.
    let (code, out) = labs(root, &["test", "1", "--test", "seeded_1", "--seeds", "5"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seeded_1 ... FAILED (seed 3)"), "{out}");
    assert!(out.contains("seed 3 breaks me"), "{out}");
    assert!(out.contains("make project1 TEST=seeded_1 SEED=3"), "{out}");
    assert!(out.contains("cargo run -p labs -- test 1 --test seeded_1 --seed 3"), "{out}");
    assert!(out.contains("Score: 0/10 points (0/1 tests passed)"), "{out}");

    let (code, out) = labs(root, &["test", "1", "--test", "seeded_1", "--seed", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Score: 10/10 points (1/1 tests passed)"), "{out}");

    // No graded tests: exit code 2.
    let (code, out) = labs(root, &["test", "2"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("lab 2 has no graded tests yet"), "{out}");

    // A test in the suite that the manifest does not list, and a listed
    // test that does not exist.
    write(root, "fx/tests/project1.rs", &suite_rs(&["#[test]", "fn extra_1() {}"]));
    let (code, out) = labs(root, &["test", "1", "--test", "add_1"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "test `extra_1` in fx/tests/project1.rs (a suite of lab 1) is not a graded test"
        ),
        "{out}"
    );
    write(root, "fx/tests/project1.rs", &suite_rs(&[]));
    write(root, "labs/labs.toml", &MANIFEST.replace("seeded_1 = 10", "seeded_1 = 10\nghost_1 = 5"));
    let (code, out) = labs(root, &["test", "1", "--test", "add_1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("test `ghost_1` is listed for lab 1"), "{out}");
    assert!(out.contains("absent from its suite file(s) fx/tests/project1.rs"), "{out}");
    write(root, "labs/labs.toml", MANIFEST);

    // A build failure shows the compiler's message.
    write(root, "fx/src/lib.rs", "pub fn add(a: u32, b: u32) -> u32 { a + b + \"x\" }\n");
    let (code, out) = labs(root, &["test", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error[E0277]"), "{out}");
    assert!(out.contains("error: build failed (fx/tests/project1.rs)"), "{out}");
}

#[test]
fn handout_and_verify_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    // Stubs with a warning: verify fails at the build.
    write(root, "fx/src/lib.rs", &lib_rs(true));
    let (code, out) = labs(root, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unused variable"), "{out}");
    assert!(out.contains("warning(s) in workspace members"), "{out}");

    // Good stubs: every graded test fails on them, naming lab 1.
    write(root, "fx/src/lib.rs", &lib_rs(false));
    let (code, out) = labs(root, &["verify", "--timeout", "20"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5/5 graded tests fail on the stubs; 0 vacuous"), "{out}");
    assert!(out.contains("verify: OK"), "{out}");
    assert!(root.join("target/verify").is_dir());

    // A test that passes on the stubs is vacuous; one that fails without
    // naming a lab is reported too.
    write(
        root,
        "fx/tests/project1.rs",
        &suite_rs(&[
            "#[test]",
            "fn vacuous_1() {}",
            "#[test]",
            "fn silent_1() {",
            "    panic!(\"no idea\");",
            "}",
        ]),
    );
    write(
        root,
        "labs/labs.toml",
        &MANIFEST.replace("seeded_1 = 10", "seeded_1 = 10\nvacuous_1 = 1\nsilent_1 = 1"),
    );
    let doc = std::fs::read_to_string(root.join("docs/lab1.md")).unwrap();
    write(root, "docs/lab1.md", &format!("{doc}| `vacuous_1` | 1 |\n| `silent_1` | 1 |\n"));
    let (code, out) = labs(root, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("vacuous_1 (lab 1): VACUOUS"), "{out}");
    assert!(out.contains("silent_1 (lab 1): fails without naming a lab"), "{out}");
    assert!(out.contains("verify: FAILED"), "{out}");

    // The handout itself.
    let out_dir = root.join("target/student");
    let (code, out) = labs(root, &["handout", "--stage", "1", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lab 1: 1 region(s) replaced by stubs"), "{out}");
    let lib = std::fs::read_to_string(out_dir.join("fx/src/lib.rs")).unwrap();
    assert_eq!(
        lib,
        "pub fn add(a: u32, b: u32) -> u32 {\n    let _ = (a, b);\n    todo!(\"lab 1: add\")\n}\n"
    );
    assert!(!out_dir.join("notes").exists());
    assert!(!out_dir.join("docs/lab2.md").exists());
    // Refuses a non-empty folder without --force.
    let (code, out) = labs(root, &["handout", "--stage", "1", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: --out"), "{out}");

    // Broken markers stop verify before it builds anything.
    write(root, "fx/src/extra.rs", &lines(&["// SOLUTION BEGIN lab 7", "// SOLUTION END"]));
    let (code, out) = labs(root, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fx/src/extra.rs:1: SOLUTION BEGIN names lab 7"), "{out}");
}

#[test]
fn errors_are_reported_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    let (code, out) = labs(root, &["test", "nope"]);
    assert_eq!(code, 1);
    assert!(out.contains("error: no lab or group named `nope`"), "{out}");
    write(root, "labs/labs.toml", &MANIFEST.replace("add_1 = 10", "add_2 = 10"));
    let (code, out) = labs(root, &["list"]);
    assert_eq!(code, 1);
    assert!(out.contains("error: labs/labs.toml: lab 1: test `add_2` must end with `_1`"), "{out}");
    let (code, out) = labs(&root.join("docs"), &["list"]);
    assert_eq!(code, 1);
    assert!(out.contains("no labs/labs.toml there"), "{out}");
    write(root, "labs/labs.toml", MANIFEST);
    let (code, out) = labs(root, &["list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(no graded tests yet)"), "{out}");
    assert!(out.contains("all  1 2"), "{out}");
}
