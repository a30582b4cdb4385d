//! Walking the repository: every file that belongs to the course tree.
//!
//! Skipped: `.git` anywhere, and the top-level build and scratch folders
//! `target`, `data` and `handout`. Paths come back relative to the root,
//! with `/` separators, sorted.

use std::path::Path;

use crate::error::{Context, Result};

/// Top-level folders that are never part of the course tree.
pub const SKIPPED_TOP_LEVEL: &[&str] = &["target", "data", "handout"];

/// What a walked path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A symbolic link (copied as a link).
    Symlink,
}

/// A file of the course tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path relative to the root, with `/` separators.
    pub rel: String,
    /// File or link.
    pub kind: Kind,
}

/// Every file under `root`, sorted by path.
pub fn walk(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk_dir(root, "", &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk_dir(root: &Path, rel: &str, out: &mut Vec<Entry>) -> Result<()> {
    let dir = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    let entries =
        std::fs::read_dir(&dir).context(|| format!("reading folder {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("reading folder {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            crate::bail!("{}: file name is not UTF-8", entry.path().display());
        };
        if name == ".git" || (rel.is_empty() && SKIPPED_TOP_LEVEL.contains(&name.as_str())) {
            continue;
        }
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let file_type =
            entry.file_type().context(|| format!("reading {}", entry.path().display()))?;
        if file_type.is_symlink() {
            out.push(Entry { rel: child, kind: Kind::Symlink });
        } else if file_type.is_dir() {
            walk_dir(root, &child, out)?;
        } else if file_type.is_file() {
            out.push(Entry { rel: child, kind: Kind::File });
        }
    }
    Ok(())
}

/// Whether `path` is `prefix` or lies under the folder `prefix`.
pub fn is_under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_skips_build_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "a.txt",
            "src/b.rs",
            ".git/config",
            "target/x",
            "data/y",
            "handout/z",
            "src/data/keep",
            "src/target/keep",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let rels: Vec<String> = walk(root).unwrap().into_iter().map(|e| e.rel).collect();
        assert_eq!(rels, vec!["a.txt", "src/b.rs", "src/data/keep", "src/target/keep"]);
    }

    #[test]
    fn under() {
        assert!(is_under("docs/a.md", "docs"));
        assert!(is_under("docs", "docs"));
        assert!(!is_under("docsx/a.md", "docs"));
        assert!(!is_under("doc", "docs"));
    }
}
