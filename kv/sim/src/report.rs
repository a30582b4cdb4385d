//! The failure report: one self-contained HTML file per failed run.
//!
//! It shows what went wrong, the replay command, a timeline of every client
//! operation (one row per client, one bar per operation from its call to
//! its answer, red when it never got one) with the injected faults as
//! vertical lines, the operations as a table, and each node's captured log.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::capture::Line;
use crate::history::{History, OpResult};

/// What a report is about.
#[derive(Debug, Clone)]
pub struct ReportInfo<'a> {
    /// The test's name.
    pub test: &'a str,
    /// The seed of the run.
    pub seed: u64,
    /// What failed.
    pub failure: &'a str,
    /// The command that replays the run.
    pub replay: &'a str,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the report.
pub fn render(info: &ReportInfo<'_>, history: &History, lines: &[Line]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{test} seed {seed}</title>\
         <style>body{{font-family:sans-serif;margin:1em}}pre{{background:#f4f4f4;padding:.5em;\
         white-space:pre-wrap}}.tl{{position:relative;border:1px solid #ccc;overflow-x:auto}}\
         .row{{position:relative;height:18px;border-bottom:1px solid #eee}}.op{{position:absolute;\
         height:14px;top:2px;background:#6a9fd8;opacity:.8;min-width:2px}}.op.w{{background:#d8a26a}}\
         .op.u{{background:#d86a6a}}.f{{position:absolute;top:0;bottom:0;width:1px;\
         background:#c00}}.lbl{{position:absolute;left:2px;font-size:11px}}table{{border-collapse:\
         collapse;font-size:12px}}td,th{{border:1px solid #ddd;padding:2px 4px}}</style></head><body>\
         <h1>{test}, seed {seed}</h1><h2>Failure</h2><pre>{failure}</pre><h2>Replay</h2>\
         <pre>{replay}</pre>",
        test = esc(info.test),
        seed = info.seed,
        failure = esc(info.failure),
        replay = esc(info.replay)
    );
    timeline(&mut h, history);
    ops_table(&mut h, history);
    node_logs(&mut h, lines);
    h.push_str("</body></html>\n");
    h
}

fn timeline(h: &mut String, history: &History) {
    let end = history
        .ops
        .iter()
        .map(|o| o.ret_us.unwrap_or(o.call_us))
        .chain(history.faults.iter().map(|f| f.at_us))
        .max()
        .unwrap_or(1)
        .max(1);
    let width = 2000.0;
    let x = |us: u64| us as f64 / end as f64 * width;
    let clients: std::collections::BTreeSet<u64> = history.ops.iter().map(|o| o.client).collect();
    let _ = write!(
        h,
        "<h2>Timeline</h2><p>{} operations over {} ms of virtual time; blue reads, orange \
         writes, red no answer; red lines are faults (hover for details).</p>\
         <div class=\"tl\" style=\"width:{}px\">",
        history.ops.len(),
        end / 1000,
        width as u64 + 20
    );
    for f in &history.faults {
        let _ = write!(
            h,
            "<div class=\"f\" style=\"left:{:.1}px\" title=\"{} ms: {}\"></div>",
            x(f.at_us),
            f.at_us / 1000,
            esc(&f.what)
        );
    }
    for c in clients {
        let _ = write!(h, "<div class=\"row\"><span class=\"lbl\">client {c}</span>");
        for o in history.ops.iter().filter(|o| o.client == c) {
            let write = matches!(o.result, Some(OpResult::Done))
                || matches!(o.kind, crate::history::OpKind::Put { .. });
            let class = match (o.ret_us, write) {
                (None, _) => "op u",
                (Some(_), true) => "op w",
                _ => "op",
            };
            let ret = o.ret_us.unwrap_or(end);
            let _ = write!(
                h,
                "<div class=\"{class}\" style=\"left:{:.1}px;width:{:.1}px\" title=\"{}\"></div>",
                x(o.call_us) + 60.0,
                (x(ret) - x(o.call_us)).max(2.0),
                esc(&o.to_string())
            );
        }
        h.push_str("</div>");
    }
    h.push_str("</div>");
}

fn ops_table(h: &mut String, history: &History) {
    h.push_str(
        "<h2>Operations and faults</h2><details><summary>all, in time order</summary><table>\
         <tr><th>ms</th><th>what</th></tr>",
    );
    let mut rows: Vec<(u64, String)> = history
        .ops
        .iter()
        .map(|o| (o.call_us, o.to_string()))
        .chain(history.faults.iter().map(|f| (f.at_us, format!("FAULT: {}", f.what))))
        .collect();
    rows.sort_by_key(|r| r.0);
    for (at, what) in rows {
        let _ =
            write!(h, "<tr><td>{}.{:03}</td><td>{}</td></tr>", at / 1000, at % 1000, esc(&what));
    }
    h.push_str("</table></details>");
}

fn node_logs(h: &mut String, lines: &[Line]) {
    h.push_str("<h2>Node logs</h2>");
    if lines.is_empty() {
        h.push_str("<p>(nothing captured)</p>");
    }
    let nodes: std::collections::BTreeSet<u64> = lines.iter().map(|l| l.node).collect();
    for n in nodes {
        let title = if n == 0 { "cluster".to_string() } else { format!("store {n}") };
        let _ = write!(h, "<details><summary>{title}</summary><pre>");
        for l in lines.iter().filter(|l| l.node == n) {
            let _ = writeln!(h, "{:>8}.{:03}ms {}", l.at_us / 1000, l.at_us % 1000, esc(&l.text));
        }
        h.push_str("</pre></details>");
    }
}

/// Writes the report into `dir` (created if needed) and returns its path.
///
/// # Errors
///
/// The file system's error.
pub fn write(
    dir: &Path,
    info: &ReportInfo<'_>,
    history: &History,
    lines: &[Line],
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}-seed{}.html", info.test, info.seed));
    std::fs::write(&path, render(info, history, lines))?;
    Ok(path)
}
