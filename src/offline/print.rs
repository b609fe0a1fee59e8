//! Printing: verdicts as JSON lines or an aligned table, fingerprint groups, and the
//! closing summary on standard error.

use std::io::{self, Write};
use std::sync::Arc;

use super::{Analysis, ReadStats};
use crate::analysis::Verdict;
use crate::config::{GroupBy, OutputFormat};
use crate::store::fingerprints::FingerprintSummary;

/// Prints `analysis` as `--group-by` and `--output` ask.
///
/// # Errors
/// `out` cannot be written.
pub(super) fn print_analysis(
    analysis: &Analysis,
    group_by: Option<GroupBy>,
    output: OutputFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    match (group_by, output) {
        (None, OutputFormat::Json) => print_json_lines(&analysis.verdicts, out),
        (None, OutputFormat::Table) => print_verdict_table(&analysis.verdicts, out),
        (Some(GroupBy::Fingerprint), format) => {
            let groups = analysis
                .store
                .fingerprints(None, crate::store::fingerprints::MAX_GROUPS);
            match format {
                OutputFormat::Json => {
                    serde_json::to_writer(&mut *out, &serde_json::json!({ "fingerprints": groups }))
                        .map_err(io::Error::from)
                        .and_then(|()| writeln!(out))
                }
                OutputFormat::Table => print_fingerprint_table(&groups, out),
            }
        }
    }
}

pub(super) fn write_summary(
    stats: &ReadStats,
    a: &Analysis,
    stderr: &mut dyn Write,
) -> io::Result<()> {
    writeln!(
        stderr,
        "faultline analyze: {} spans in {} traces from {} requests; {} verdicts",
        stats.spans,
        a.traces,
        stats.requests,
        a.verdicts.len()
    )?;
    if stats.rejected > 0 {
        writeln!(
            stderr,
            "faultline analyze: warning: skipped {} spans with invalid ids; first: {}",
            stats.rejected,
            stats.first_problem.as_deref().unwrap_or("?")
        )?;
    }
    if a.corrupt_spans > 0 {
        writeln!(
            stderr,
            "faultline analyze: warning: skipped {} spans whose bytes do not decode",
            a.corrupt_spans
        )?;
    }
    Ok(())
}

/// One verdict a line, each serialised exactly as the API serialises it.
fn print_json_lines(verdicts: &[Arc<Verdict>], out: &mut dyn Write) -> io::Result<()> {
    for v in verdicts {
        serde_json::to_writer(&mut *out, &**v)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Longest cell shown in a table; the JSON output has the full text.
pub(super) const MAX_CELL: usize = 60;

/// One table cell: control characters flattened (a tab or newline would break the
/// columns) and long text cut with an ellipsis.
pub(super) fn cell(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= MAX_CELL {
        flat.to_string()
    } else {
        let mut cut: String = flat.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

/// Writes rows as columns separated by two spaces, padded to each column's widest cell
/// (the last column is not padded).
fn write_table(rows: &[Vec<String>], out: &mut dyn Write) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                let pad = widths[i] - c.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn print_verdict_table(verdicts: &[Arc<Verdict>], out: &mut dyn Write) -> io::Result<()> {
    let mut rows = vec![[
        "TRACE ID",
        "CLASSIFICATION",
        "CONF",
        "ENTRY",
        "BLAME",
        "SHARE",
        "ORIGIN",
        "FINGERPRINT",
    ]
    .map(String::from)
    .to_vec()];
    for v in verdicts {
        let (blame, share) = match &v.blame {
            Some(b) => (
                cell(&format!("{} {}", b.service, b.name)),
                format!("{:.0}%", b.share * 100.0),
            ),
            None => ("-".into(), "-".into()),
        };
        let origin = match &v.origin {
            Some(o) => cell(&format!("{} {}: {}", o.service, o.name, o.error)),
            None => "-".into(),
        };
        rows.push(vec![
            v.trace_id.clone(),
            v.classification.as_str().to_string(),
            format!("{:.2}", v.confidence),
            cell(&format!(
                "{} {} {}",
                v.entry.service, v.entry.route, v.entry.status_code
            )),
            blame,
            share,
            origin,
            v.fingerprint_id.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    write_table(&rows, out)
}

fn print_fingerprint_table(groups: &[FingerprintSummary], out: &mut dyn Write) -> io::Result<()> {
    let mut rows = vec![[
        "FINGERPRINT ID",
        "COUNT",
        "CLASSIFICATION",
        "FIRST SEEN",
        "LAST SEEN",
        "ROUTES",
        "FINGERPRINT",
    ]
    .map(String::from)
    .to_vec()];
    for g in groups {
        let routes: Vec<&str> = g.routes.iter().map(|r| r.value.as_str()).collect();
        rows.push(vec![
            g.fingerprint_id.clone(),
            g.count.to_string(),
            g.classification.as_str().to_string(),
            g.first_seen.clone(),
            g.last_seen.clone(),
            cell(&routes.join(", ")),
            cell(&g.fingerprint),
        ]);
    }
    write_table(&rows, out)
}
