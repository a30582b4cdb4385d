//! `labs autograder`: the zip that Gradescope's custom autograder takes.
//!
//! The zip holds `setup.sh` (run once when Gradescope builds its image:
//! installs the pinned Rust toolchain, builds `labs`, and builds the graded
//! tree once with the stubs so that grading a submission only rebuilds the
//! crates of its student files), `run_autograder` (run for every
//! submission: `labs grade --submission /autograder/submission --format
//! gradescope --out /autograder/results/results.json`), and `tinykv/`, the
//! student handout of the stage. The handout, not this repository: student
//! code runs in the same container, so the bundle must not hold the
//! solutions. (`labs grade` makes its official tree from the handout just
//! as from this repository: the handout has no solution regions left.)

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::handout;
use crate::manifest::Manifest;
use crate::walk;

/// The folder of the zip that holds the handout.
pub const TREE: &str = "tinykv";

/// What to bundle.
#[derive(Debug, Clone)]
pub struct Options {
    /// The stage: the handout's last lab, and what is graded.
    pub stage: String,
    /// The zip file to write.
    pub out: PathBuf,
}

/// What went into the zip.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The stage's lab id.
    pub stage: String,
    /// The Rust toolchain `setup.sh` installs.
    pub toolchain: String,
    /// Files of the handout in it.
    pub files: usize,
}

/// Writes the autograder zip.
///
/// # Errors
///
/// An unknown stage, a handout that cannot be made, or an I/O error.
pub fn make(m: &Manifest, opts: &Options) -> Result<Summary> {
    let stage_index = handout::stage_index(m, &opts.stage)?;
    let stage = m.labs[stage_index].id.clone();
    if !m.labs[..=stage_index].iter().any(|l| !l.tests.is_empty()) {
        bail!("no lab up to {stage} has graded tests: nothing to grade");
    }
    let toolchain = toolchain(&m.root)?;
    let tmp = tempfile::tempdir().context(|| "creating a temporary folder".to_string())?;
    let tree = tmp.path().join(TREE);
    std::fs::create_dir_all(&tree).context(|| format!("creating {}", tree.display()))?;
    handout::make(
        m,
        &handout::Options {
            stage: stage.clone(),
            out: tree.clone(),
            keep_solutions: Vec::new(),
            force: true,
            preserve_mtimes: false,
        },
    )?;
    let file =
        std::fs::File::create(&opts.out).context(|| format!("creating {}", opts.out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let zerr =
        |e: zip::result::ZipError| Error::msg(format!("writing {}: {e}", opts.out.display()));
    let script = SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("setup.sh", script).map_err(zerr)?;
    zip.write_all(setup_sh(&stage, &toolchain).as_bytes())
        .context(|| format!("writing {}", opts.out.display()))?;
    zip.start_file("run_autograder", script).map_err(zerr)?;
    zip.write_all(run_autograder(&stage).as_bytes())
        .context(|| format!("writing {}", opts.out.display()))?;
    let mut files = 0;
    for entry in walk::walk(&tree)? {
        let path = tree.join(&entry.rel);
        let name = format!("{TREE}/{}", entry.rel);
        match entry.kind {
            walk::Kind::Symlink => {
                let target = std::fs::read_link(&path)
                    .context(|| format!("reading the link {}", path.display()))?;
                zip.add_symlink(name, target.to_string_lossy(), SimpleFileOptions::default())
                    .map_err(zerr)?;
            }
            walk::Kind::File => {
                let bytes =
                    std::fs::read(&path).context(|| format!("reading {}", path.display()))?;
                zip.start_file(name, SimpleFileOptions::default().unix_permissions(mode(&path)))
                    .map_err(zerr)?;
                zip.write_all(&bytes).context(|| format!("writing {}", opts.out.display()))?;
            }
        }
        files += 1;
    }
    zip.finish().map_err(zerr)?;
    Ok(Summary { stage, toolchain, files })
}

/// The file's permission bits (0644 where there are none).
fn mode(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            return meta.permissions().mode() & 0o777;
        }
    }
    let _ = path;
    0o644
}

/// The toolchain to pin: `rust-toolchain.toml`'s channel if the repository
/// has one, else the version of the `rustc` that runs here.
fn toolchain(root: &Path) -> Result<String> {
    for name in ["rust-toolchain.toml", "rust-toolchain"] {
        let path = root.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let channel = text.lines().find_map(|l| {
                let (key, value) = l.split_once('=')?;
                (key.trim() == "channel").then(|| value.trim().trim_matches('"').to_string())
            });
            return Ok(channel.unwrap_or_else(|| text.trim().to_string()));
        }
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(&rustc)
        .arg("--version")
        .output()
        .context(|| "running rustc --version (to pin the toolchain)".to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().nth(1) {
        Some(v) if out.status.success() => Ok(v.to_string()),
        _ => bail!("rustc --version said {text:?}: cannot pin the toolchain"),
    }
}

fn setup_sh(stage: &str, toolchain: &str) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# Made by `labs autograder --stage {stage}`.
set -euo pipefail
TOOLCHAIN="{toolchain}"
HERE="$(cd "$(dirname "$0")" && pwd)"

if command -v apt-get >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq build-essential curl ca-certificates >/dev/null
fi
if ! command -v rustup >/dev/null && [ ! -x "$HOME/.cargo/bin/rustup" ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --default-toolchain "$TOOLCHAIN"
fi
. "$HOME/.cargo/env"
rustup toolchain install "$TOOLCHAIN" --profile minimal
rustup default "$TOOLCHAIN"

cd "$HERE/{TREE}"
cargo build --locked -p labs
# Build the graded tree once, with the stubs (they score zero; only the
# build is kept in target/grade), so that grading a submission rebuilds
# only the crates of its student files.
target/debug/labs grade --stage {stage} --submission . --format json --out /tmp/prebuild.json
"#
    )
}

fn run_autograder(stage: &str) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Gradescope runs this for every submission: the student's files are in
# /autograder/submission, the results go to /autograder/results/results.json.
# Made by `labs autograder --stage {stage}`. AUTOGRADER_ROOT and LABS
# override the paths (for a dry run outside Gradescope).
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
cd "$ROOT/source/{TREE}" || exit 1
LABS="${{LABS:-target/debug/labs}}"

# A repository uploaded as one folder: grade what is inside it.
SUB="$ROOT/submission"
if [ ! -e "$SUB/Cargo.toml" ] && [ "$(ls -A "$SUB" | wc -l)" -eq 1 ] && [ -d "$SUB/$(ls -A "$SUB")" ]; then
  SUB="$SUB/$(ls -A "$SUB")"
fi
mkdir -p "$ROOT/results"
"$LABS" --root . grade --stage {stage} --submission "$SUB" --format gradescope \
  --out "$ROOT/results/results.json"
"#
    )
}
