//! Solution markers: the regions of the reference solution that a student
//! handout replaces by stubs.
//!
//! # Syntax
//!
//! A solution region is a run of lines between marker lines:
//!
//! ```text
//!     // SOLUTION BEGIN lab 1
//!     ...reference solution lines...
//!     // SOLUTION STUB
//!     // todo!("lab 1: StandaloneStorage::write")
//!     // SOLUTION END
//! ```
//!
//! * A marker line holds only the marker: optional indentation, the comment
//!   leader, whitespace, then `SOLUTION BEGIN lab <id>`, `SOLUTION STUB` or
//!   `SOLUTION END` (optionally `SOLUTION END lab <id>`, which must repeat
//!   the id of its BEGIN), and optional trailing whitespace. `<id>` is a lab
//!   id from the manifest (lowercase letters and digits).
//! * The comment leader is `//` in `.rs` files and `#` in `Makefile`,
//!   `*.mk`, `*.toml` and `*.sh` files. Other files are never scanned.
//! * Any line whose comment text starts with the word `SOLUTION` is a marker
//!   line and must be well formed; `// SOLUTION BEGIN` without a lab is an
//!   error, not an ordinary comment.
//! * Regions do not nest. The `SOLUTION STUB` part is optional: a region
//!   without it is removed entirely (solution-only imports, helpers).
//! * Every line between `SOLUTION STUB` and `SOLUTION END` is a comment
//!   line: indentation, the leader, then nothing or a space and text. In the
//!   handout each is emitted uncommented: the leader and the one space after
//!   it are removed and the indentation before the leader is kept
//!   (`    // todo!()` becomes `    todo!()`); a comment line with no text
//!   (`//` alone) becomes an empty line. Write a blank stub line as `//`.
//!
//! # Handout output
//!
//! For a lab whose solution is stripped, the marker lines and the solution
//! lines disappear and the stub lines appear uncommented. For a lab whose
//! solution is kept, the solution lines stay and the marker lines and stub
//! lines disappear. Every other line is copied unchanged, with its own line
//! ending; a file with no markers is unchanged byte for byte.
//!
//! # Errors
//!
//! Each carries the 1-based line number: `BEGIN` inside a region (regions
//! do not nest), `STUB` outside a region or twice in one, `END` without
//! `BEGIN`, end of file inside a region, a non-comment line in the stub part,
//! a malformed marker line. Lab ids are checked against the manifest by
//! [`check_labs`].

use std::fmt;
use std::path::Path;

/// A solution region found by [`scan`]. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// The lab the solution belongs to.
    pub lab: String,
    /// The line of `SOLUTION BEGIN`.
    pub begin: usize,
    /// The line of `SOLUTION STUB`, if the region has a stub.
    pub stub: Option<usize>,
    /// The line of `SOLUTION END`.
    pub end: usize,
}

/// A marker syntax error at a line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerError {
    /// The line the error is on.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The comment leader for a file, or `None` if such files are not scanned.
pub fn leader_for(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".rs") {
        Some("//")
    } else if name == "Makefile"
        || name == "GNUmakefile"
        || name.ends_with(".mk")
        || name.ends_with(".toml")
        || name.ends_with(".sh")
    {
        Some("#")
    } else {
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Begin(String),
    Stub,
    End(Option<String>),
}

/// Splits a line into its content and its line ending (`\n`, `\r\n` or
/// nothing).
fn split_ending(line: &str) -> (&str, &str) {
    if let Some(s) = line.strip_suffix("\r\n") {
        (s, "\r\n")
    } else if let Some(s) = line.strip_suffix('\n') {
        (s, "\n")
    } else {
        (line, "")
    }
}

fn is_lab_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Parses a marker line. `Ok(None)` for a line that is not a marker.
fn parse_marker(content: &str, leader: &str) -> Result<Option<Marker>, String> {
    let Some(rest) = content.trim_start().strip_prefix(leader) else {
        return Ok(None);
    };
    let rest = rest.trim_start();
    let Some(after) = rest.strip_prefix("SOLUTION") else {
        return Ok(None);
    };
    if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
        return Ok(None);
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let expected = format!(
        "expected `{leader} SOLUTION BEGIN lab <id>`, `{leader} SOLUTION STUB` or `{leader} SOLUTION END`"
    );
    match words.as_slice() {
        ["SOLUTION", "BEGIN", "lab", id] if is_lab_id(id) => {
            Ok(Some(Marker::Begin(id.to_string())))
        }
        ["SOLUTION", "BEGIN", "lab", id] => Err(format!(
            "malformed marker `{}`: `{id}` is not a lab id (lowercase letters and digits)",
            content.trim()
        )),
        ["SOLUTION", "BEGIN", ..] => Err(format!(
            "malformed marker `{}`: BEGIN needs a lab and nothing else, as in `{leader} SOLUTION BEGIN lab 1`",
            content.trim()
        )),
        ["SOLUTION", "STUB"] => Ok(Some(Marker::Stub)),
        ["SOLUTION", "END"] => Ok(Some(Marker::End(None))),
        ["SOLUTION", "END", "lab", id] if is_lab_id(id) => {
            Ok(Some(Marker::End(Some(id.to_string()))))
        }
        _ => Err(format!("malformed marker `{}`: {expected}", content.trim())),
    }
}

/// Uncomments a stub line, or explains why it is not a comment line.
fn uncomment<'a>(content: &'a str, leader: &str) -> Result<(&'a str, &'a str), String> {
    let trimmed = content.trim_start();
    let indent = &content[..content.len() - trimmed.len()];
    let bad = || {
        format!(
            "stub lines must be comments (`{leader}` followed by nothing or by a space and text), found `{}`; \
             write a blank stub line as `{leader}`",
            content.trim()
        )
    };
    let Some(after) = trimmed.strip_prefix(leader) else {
        return Err(bad());
    };
    if after.is_empty() {
        return Ok(("", ""));
    }
    let Some(text) = after.strip_prefix(' ') else {
        return Err(bad());
    };
    if text.trim().is_empty() { Ok(("", "")) } else { Ok((indent, text)) }
}

/// Finds the solution regions of a file, checking the marker syntax.
pub fn scan(text: &str, leader: &str) -> Result<Vec<Region>, MarkerError> {
    let mut regions = Vec::new();
    // (lab, begin line, stub line)
    let mut open: Option<(String, usize, Option<usize>)> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let (content, _) = split_ending(line);
        let marker =
            parse_marker(content, leader).map_err(|message| MarkerError { line: n, message })?;
        match (marker, &mut open) {
            (Some(Marker::Begin(lab)), None) => open = Some((lab, n, None)),
            (Some(Marker::Begin(_)), Some((lab, begin, _))) => {
                return Err(MarkerError {
                    line: n,
                    message: format!(
                        "SOLUTION BEGIN inside the region of lab {lab} opened at line {begin} (regions do not nest)"
                    ),
                });
            }
            (Some(Marker::Stub), None) => {
                return Err(MarkerError {
                    line: n,
                    message: "SOLUTION STUB outside a solution region".to_string(),
                });
            }
            (Some(Marker::Stub), Some((_, _, stub @ None))) => *stub = Some(n),
            (Some(Marker::Stub), Some((_, begin, Some(first)))) => {
                return Err(MarkerError {
                    line: n,
                    message: format!(
                        "second SOLUTION STUB in the region opened at line {begin} (the first is at line {first})"
                    ),
                });
            }
            (Some(Marker::End(_)), None) => {
                return Err(MarkerError {
                    line: n,
                    message: "SOLUTION END without SOLUTION BEGIN".to_string(),
                });
            }
            (Some(Marker::End(end_lab)), Some((lab, begin, stub))) => {
                if let Some(end_lab) = end_lab
                    && end_lab != *lab
                {
                    return Err(MarkerError {
                        line: n,
                        message: format!(
                            "SOLUTION END names lab {end_lab} but the region opened at line {begin} is for lab {lab}"
                        ),
                    });
                }
                regions.push(Region { lab: lab.clone(), begin: *begin, stub: *stub, end: n });
                open = None;
            }
            (None, Some((_, _, Some(_)))) => {
                uncomment(content, leader).map_err(|message| MarkerError { line: n, message })?;
            }
            (None, _) => {}
        }
    }
    if let Some((lab, begin, _)) = open {
        return Err(MarkerError {
            line: begin,
            message: format!(
                "the region of lab {lab} opened here has no SOLUTION END before the end of the file"
            ),
        });
    }
    Ok(regions)
}

/// Checks that every region names a lab for which `known` holds.
pub fn check_labs(regions: &[Region], known: &dyn Fn(&str) -> bool) -> Result<(), MarkerError> {
    for r in regions {
        if !known(&r.lab) {
            return Err(MarkerError {
                line: r.begin,
                message: format!(
                    "SOLUTION BEGIN names lab {}, which is not in the manifest",
                    r.lab
                ),
            });
        }
    }
    Ok(())
}

/// Returns the handout text: regions of labs for which `keep` holds keep
/// their solution lines (markers and stubs dropped); the others are replaced
/// by their uncommented stubs. A text without markers comes back unchanged.
pub fn strip(text: &str, leader: &str, keep: &dyn Fn(&str) -> bool) -> Result<String, MarkerError> {
    let regions = scan(text, leader)?;
    if regions.is_empty() {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut next = regions.iter().peekable();
    let mut current: Option<&Region> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        if current.is_none() && next.peek().is_some_and(|r| r.begin == n) {
            current = next.next();
        }
        let Some(r) = current else {
            out.push_str(line);
            continue;
        };
        let stub_start = r.stub.unwrap_or(r.end);
        let (content, ending) = split_ending(line);
        if n == r.begin || n == r.end || Some(n) == r.stub {
            // Marker lines never reach the handout.
        } else if n < stub_start {
            if keep(&r.lab) {
                out.push_str(line);
            }
        } else if !keep(&r.lab) {
            let (indent, code) =
                uncomment(content, leader).map_err(|message| MarkerError { line: n, message })?;
            out.push_str(indent);
            out.push_str(code);
            out.push_str(ending);
        }
        if n == r.end {
            current = None;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures are built from single-line strings so that this file holds
    // no marker lines itself (the tool scans its own sources too).
    fn lines(ls: &[&str]) -> String {
        let mut s = ls.join("\n");
        s.push('\n');
        s
    }

    const B1: &str = "    // SOLUTION BEGIN lab 1";
    const STUB: &str = "    // SOLUTION STUB";
    const END: &str = "    // SOLUTION END";

    fn all(_: &str) -> bool {
        false
    }

    fn sample() -> String {
        lines(&[
            "fn write() -> u32 {",
            B1,
            "    let x = 1;",
            "    x + 1",
            STUB,
            "    // todo!(\"lab 1: write\")",
            "    //",
            "    //     nested indent",
            END,
            "}",
            "// SOLUTION BEGIN lab 2a",
            "use std::collections::HashMap;",
            "// SOLUTION END lab 2a",
            "fn tail() {}",
        ])
    }

    #[test]
    fn scan_finds_regions() {
        let r = scan(&sample(), "//").unwrap();
        assert_eq!(
            r,
            vec![
                Region { lab: "1".into(), begin: 2, stub: Some(5), end: 9 },
                Region { lab: "2a".into(), begin: 11, stub: None, end: 13 },
            ]
        );
    }

    #[test]
    fn strip_replaces_regions_by_stubs() {
        let out = strip(&sample(), "//", &all).unwrap();
        assert_eq!(
            out,
            lines(&[
                "fn write() -> u32 {",
                "    todo!(\"lab 1: write\")",
                "",
                "        nested indent",
                "}",
                "fn tail() {}",
            ])
        );
        assert!(scan(&out, "//").unwrap().is_empty());
    }

    #[test]
    fn strip_keeps_solutions_of_kept_labs() {
        let out = strip(&sample(), "//", &|lab| lab == "1").unwrap();
        assert_eq!(
            out,
            lines(&["fn write() -> u32 {", "    let x = 1;", "    x + 1", "}", "fn tail() {}",])
        );
        let out = strip(&sample(), "//", &|_| true).unwrap();
        assert_eq!(
            out,
            lines(&[
                "fn write() -> u32 {",
                "    let x = 1;",
                "    x + 1",
                "}",
                "use std::collections::HashMap;",
                "fn tail() {}",
            ])
        );
    }

    #[test]
    fn text_without_markers_is_unchanged_byte_for_byte() {
        let texts = [
            "",
            "no newline at end",
            "a\r\nb\r\n",
            "// a comment about the SOLUTIONS\n//SOLUTIONISH\n\n\n",
            "  \t mixed\n\u{feff}bom\n",
        ];
        for t in texts {
            assert_eq!(strip(t, "//", &all).unwrap(), t);
        }
    }

    #[test]
    fn line_endings_are_preserved() {
        let text = format!("a\r\n{B1}\r\nsol\r\n{STUB}\r\n    // stub()\r\n{END}\r\nz");
        assert_eq!(strip(&text, "//", &all).unwrap(), "a\r\n    stub()\r\nz");
        // A region at the very end, without a final newline.
        let text = format!("a\n{B1}\nsol\n{END}");
        assert_eq!(strip(&text, "//", &all).unwrap(), "a\n");
        assert_eq!(strip(&text, "//", &|_| true).unwrap(), "a\nsol\n");
    }

    #[test]
    fn hash_leader() {
        let text = lines(&[
            "a = 1",
            "# SOLUTION BEGIN lab 3b",
            "b = 2",
            "# SOLUTION STUB",
            "# b = 0",
            "# SOLUTION END",
        ]);
        assert_eq!(strip(&text, "#", &all).unwrap(), lines(&["a = 1", "b = 0"]));
        // `//` markers mean nothing in a `#` file.
        let text = lines(&["x", "// SOLUTION BEGIN", "y"]);
        assert_eq!(strip(&text, "#", &all).unwrap(), text);
    }

    #[test]
    fn leaders_by_file_name() {
        assert_eq!(leader_for(Path::new("kv/src/lib.rs")), Some("//"));
        assert_eq!(leader_for(Path::new("Makefile")), Some("#"));
        assert_eq!(leader_for(Path::new("a/b.mk")), Some("#"));
        assert_eq!(leader_for(Path::new("Cargo.toml")), Some("#"));
        assert_eq!(leader_for(Path::new("x.sh")), Some("#"));
        assert_eq!(leader_for(Path::new("README.md")), None);
    }

    fn err(ls: &[&str]) -> MarkerError {
        scan(&lines(ls), "//").unwrap_err()
    }

    #[test]
    fn nested_begin_is_an_error() {
        let e = err(&["x", B1, "// SOLUTION BEGIN lab 2", "// SOLUTION END", END]);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("inside the region of lab 1 opened at line 2"), "{e}");
    }

    #[test]
    fn stub_outside_or_twice_is_an_error() {
        let e = err(&["x", STUB]);
        assert_eq!(e.line, 2);
        assert!(e.message.contains("SOLUTION STUB outside a solution region"), "{e}");
        let e = err(&[B1, STUB, "// a", STUB, END]);
        assert_eq!(e.line, 4);
        assert!(e.message.contains("second SOLUTION STUB"), "{e}");
    }

    #[test]
    fn end_without_begin_is_an_error() {
        let e = err(&["x", "y", END]);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("SOLUTION END without SOLUTION BEGIN"), "{e}");
        let e = err(&[B1, "// SOLUTION END lab 2"]);
        assert!(e.message.contains("names lab 2"), "{e}");
    }

    #[test]
    fn end_of_file_inside_a_region_is_an_error() {
        let e = err(&["x", B1, "sol"]);
        assert_eq!(e.line, 2);
        assert!(e.message.contains("no SOLUTION END before the end of the file"), "{e}");
        let e = err(&["x", B1, STUB, "// s"]);
        assert!(e.message.contains("no SOLUTION END"), "{e}");
    }

    #[test]
    fn non_comment_stub_line_is_an_error() {
        for bad in ["    todo!()", "", "    //todo!()", "    /// doc"] {
            let e = err(&[B1, "sol", STUB, "    // ok", bad, END]);
            assert_eq!(e.line, 5, "{bad:?}");
            assert!(e.message.contains("stub lines must be comments"), "{e}");
        }
    }

    #[test]
    fn malformed_markers_are_errors() {
        for (bad, what) in [
            ("// SOLUTION BEGIN", "BEGIN needs a lab"),
            ("   // SOLUTION BEGIN 1", "BEGIN needs a lab"),
            ("// SOLUTION BEGIN lab", "BEGIN needs a lab"),
            ("// SOLUTION BEGIN lab 2B", "not a lab id"),
            ("// SOLUTION BEGIN lab 1 extra", "BEGIN needs a lab"),
            ("// SOLUTION", "malformed marker"),
            ("// SOLUTION START", "malformed marker"),
            ("// SOLUTION END now", "malformed marker"),
            ("//SOLUTION STUBS", "malformed marker"),
        ] {
            let e = err(&["x", bad]);
            assert_eq!(e.line, 2, "{bad}");
            assert!(e.message.contains(what), "{bad}: {e}");
        }
        // Not markers: other words, doc comments, code.
        for fine in [
            "// SOLUTIONS are",
            "/// SOLUTION BEGIN",
            "//! SOLUTION END",
            "let s = \"// SOLUTION END\";",
        ] {
            assert_eq!(scan(&lines(&["x", fine]), "//").unwrap(), vec![], "{fine}");
        }
    }

    #[test]
    fn unknown_lab_is_an_error() {
        let r = scan(&sample(), "//").unwrap();
        let e = check_labs(&r, &|lab| lab == "1").unwrap_err();
        assert_eq!(e.line, 11);
        assert!(e.message.contains("lab 2a, which is not in the manifest"), "{e}");
        assert!(check_labs(&r, &|lab| lab == "1" || lab == "2a").is_ok());
    }

    #[test]
    fn markers_with_trailing_whitespace_and_tabs() {
        let text = lines(&[
            "\t// SOLUTION BEGIN lab 4c  ",
            "sol",
            "\t//   SOLUTION   STUB",
            "\t// stub",
            "\t// SOLUTION END\t",
        ]);
        assert_eq!(strip(&text, "//", &all).unwrap(), "\tstub\n");
    }
}
