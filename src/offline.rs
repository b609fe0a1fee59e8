//! `faultline analyze FILE…`: the service's analysis, offline, on captured traces.
//!
//! Inputs are what the OpenTelemetry Collector's `file` exporter writes
//! (exporter/fileexporter): with `format: json`, one OTLP/JSON `ExportTraceServiceRequest`
//! a line; with `format: proto`, each encoded request preceded by its length as a 4-byte
//! big-endian unsigned integer (`exportMessageAsBuffer` in its `file_writer.go`). A file
//! holding one (pretty-printed) JSON request or one raw protobuf request is accepted too,
//! gzip-compressed or not, and `-` is standard input. The format is told from the content
//! (or forced with `--format`).
//!
//! Everything after reading is the service's own path, so a capture gets the verdicts the
//! running service gives for the same spans: JSON through [`json_to_protobuf`], every
//! request through [`LiteExportRequest::decode`] and [`convert_request`] (which rejects
//! spans with bad ids, as `partial_success` does), each trace through [`materialize`] and
//! [`analyze_trace`] with the same [`AnalysisConfig`], and every verdict through a
//! [`VerdictStore`], which adds the cross-trace evidence (recurrence, first release). The
//! differences are inherent to a capture: every span of a trace is there (no idle timer,
//! no late spans), traces are analysed in the order their first span started (so the
//! cross-trace evidence is reproducible), and a verdict's `analyzed_at` is the end of the
//! trace's last span rather than the wall clock, so one capture always prints the same.
//!
//! Reading is all or nothing: the first input that cannot be read or decoded stops the
//! command with a message naming the file and the line (JSON) or byte offset (protobuf),
//! before anything is printed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use prost::Message;

use crate::analysis::{analyze_trace, AnalysisConfig, Verdict};
use crate::assembly::BufferedSpan;
use crate::config::{self, ServeArgs};
use crate::ingest::convert::{convert_request, materialize, EntryRule};
use crate::ingest::http::json_to_protobuf;
use crate::ingest::lite::LiteExportRequest;
use crate::model::{Trace, TraceId};
use crate::store::fingerprints::FingerprintSummary;
use crate::store::VerdictStore;

/// Exit status when an input cannot be read or decoded.
pub const EXIT_UNREADABLE: u8 = 1;
/// Exit status for a bad option value (clap uses it for usage errors too).
pub const EXIT_USAGE: u8 = 2;

/// Options of `faultline analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Captured traces: OTLP/JSON lines or OTLP/protobuf (length-prefixed as the
    /// Collector's file exporter writes them, or one raw request), optionally gzipped;
    /// `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Input format; `auto` tells JSON from protobuf by the content.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,

    /// `table`: aligned columns for a terminal; `json`: one verdict a line, each exactly
    /// as `GET /api/v1/verdicts/{trace_id}` returns it (with `--group-by fingerprint`,
    /// the `/api/v1/fingerprints` body).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Summarise the verdicts by exception fingerprint, like `/api/v1/fingerprints`.
    #[arg(long, value_enum, value_name = "KEY")]
    pub group_by: Option<GroupBy>,

    /// HTTP status that makes a SERVER span the entry of a failing request; repeat or
    /// comma-separate for several [default: 500].
    #[arg(
        long,
        env = "FAULTLINE_ERROR_STATUS",
        value_name = "CODE",
        value_delimiter = ','
    )]
    pub error_status: Vec<String>,

    /// Attribute keys naming the tenant, in order of preference; repeat or
    /// comma-separate [default: app.tenant,tenant.id,tenant].
    #[arg(
        long,
        env = "FAULTLINE_TENANT_ATTRIBUTE",
        value_name = "KEY",
        value_delimiter = ','
    )]
    pub tenant_attribute: Vec<String>,
}

/// How an input is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// JSON when the first non-blank byte is `{`, protobuf otherwise.
    Auto,
    /// OTLP/JSON lines, or one JSON request.
    Json,
    /// Length-prefixed OTLP/protobuf requests, or one raw request.
    Proto,
}

/// How verdicts are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// The API's JSON.
    Json,
}

/// What `--group-by` summarises by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// Exception fingerprint.
    Fingerprint,
}

/// An input that cannot be read or decoded. Each names the input and where in it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Missing, unreadable, a directory, or a broken gzip stream.
    #[error("{input}: cannot read: {source}")]
    Read {
        /// The file as given (`-` for standard input).
        input: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A line (or the whole document) is not an OTLP/JSON trace request.
    #[error("{input}:{line}:{column}: not an OTLP/JSON trace request: {message}")]
    Json {
        /// The file.
        input: String,
        /// 1-based line in the file.
        line: usize,
        /// 1-based column in that line.
        column: usize,
        /// The decoder's complaint.
        message: String,
    },
    /// A protobuf message (or its length prefix) does not decode.
    #[error("{input}: byte offset {offset}: not an OTLP/protobuf trace request: {message}")]
    Protobuf {
        /// The file.
        input: String,
        /// Offset of the message (or of its length prefix) in the decompressed input.
        offset: usize,
        /// The decoder's complaint.
        message: String,
    },
}

/// Where a request was read from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Position {
    Line(usize),
    Offset(usize),
}

/// The spans of one trace, as the service's buffer holds them.
#[derive(Default)]
struct TraceSpans {
    spans: Vec<BufferedSpan>,
    has_entry_candidate: bool,
}

/// Counts of what was read, for the closing summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadStats {
    /// Export requests read.
    pub requests: usize,
    /// Usable spans.
    pub spans: usize,
    /// Spans rejected for bad ids (the service's `partial_success`).
    pub rejected: usize,
    /// The first rejection's reason.
    pub first_problem: Option<String>,
}

/// Spans of every input, grouped by trace id.
pub struct Capture {
    rule: EntryRule,
    traces: HashMap<TraceId, TraceSpans>,
    stats: ReadStats,
}

/// The outcome of analysing a capture.
pub struct Analysis {
    /// Every verdict, in analysis order, with the store's cross-trace evidence.
    pub verdicts: Vec<Arc<Verdict>>,
    /// The store they went through (for `--group-by fingerprint`).
    pub store: VerdictStore,
    /// Traces in the capture.
    pub traces: usize,
    /// Spans skipped because their bytes do not decode.
    pub corrupt_spans: usize,
}

impl Capture {
    /// An empty capture whose entry pre-check uses `cfg`'s error statuses, as ingest does.
    pub fn new(cfg: &AnalysisConfig) -> Self {
        Capture {
            rule: EntryRule {
                error_statuses: cfg.error_statuses.clone(),
            },
            traces: HashMap::new(),
            stats: ReadStats::default(),
        }
    }

    /// What was read so far.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// Adds one input's content (gzip-compressed or not), named `input` in errors.
    ///
    /// # Errors
    /// [`InputError`] naming the line or byte offset that does not decode; spans added
    /// from earlier requests of the input stay.
    pub fn add(&mut self, input: &str, content: Vec<u8>, format: InputFormat) -> Result<(), InputError> {
        let content = if content.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&content[..])
                .read_to_end(&mut out)
                .map_err(|source| InputError::Read {
                    input: input.to_string(),
                    source,
                })?;
            out
        } else {
            content
        };
        let json = match format {
            InputFormat::Json => true,
            InputFormat::Proto => false,
            InputFormat::Auto => content
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'{'),
        };
        if json {
            self.add_json(input, &content)
        } else {
            self.add_protobuf(input, Bytes::from(content))
        }
    }

    /// OTLP/JSON lines; when the first request does not fit on its line, the whole input
    /// as one (pretty-printed) request.
    fn add_json(&mut self, input: &str, content: &[u8]) -> Result<(), InputError> {
        let json_error = |line: usize, e: serde_json::Error| {
            // serde_json appends "at line L column C"; the position is reported in the
            // file's terms instead.
            let text = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            InputError::Json {
                input: input.to_string(),
                line: line + e.line().saturating_sub(1),
                column: e.column(),
                message: text.strip_suffix(&suffix).unwrap_or(&text).to_string(),
            }
        };
        let mut first = true;
        for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let text = raw.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match json_to_protobuf(text) {
                Ok(encoded) => self.add_encoded(input, Bytes::from(encoded), Position::Line(line))?,
                Err(e) if first => {
                    return match json_to_protobuf(content) {
                        Ok(encoded) => self.add_encoded(input, Bytes::from(encoded), Position::Line(1)),
                        Err(_) => Err(json_error(line, e)),
                    };
                }
                Err(e) => return Err(json_error(line, e)),
            }
            first = false;
        }
        Ok(())
    }

    /// Length-prefixed requests (the Collector's `format: proto`), or one raw request.
    /// A non-empty raw request starts with the tag of field 1 (`0x0a`); a length prefix
    /// starts with `0x00` for any message under 16 MiB, so the first byte tells them apart.
    fn add_protobuf(&mut self, input: &str, content: Bytes) -> Result<(), InputError> {
        if content.is_empty() {
            return Ok(());
        }
        if content[0] == 0x0a {
            return self.add_encoded(input, content, Position::Offset(0));
        }
        let mut offset = 0;
        while offset < content.len() {
            let Some(prefix) = content.get(offset..offset + 4) else {
                return Err(InputError::Protobuf {
                    input: input.to_string(),
                    offset,
                    message: format!(
                        "{} trailing bytes are too short for a 4-byte length prefix (truncated capture?)",
                        content.len() - offset
                    ),
                });
            };
            // Four bytes by the slice above.
            let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            let start = offset + 4;
            if content.len() - start < len {
                return Err(InputError::Protobuf {
                    input: input.to_string(),
                    offset,
                    message: format!(
                        "the length prefix announces {len} bytes but only {} follow (truncated capture, or not length-prefixed)",
                        content.len() - start
                    ),
                });
            }
            self.add_encoded(input, content.slice(start..start + len), Position::Offset(start))?;
            offset = start + len;
        }
        Ok(())
    }

    /// One encoded request through the service's decoding and conversion.
    fn add_encoded(&mut self, input: &str, encoded: Bytes, at: Position) -> Result<(), InputError> {
        let fail = |message: String| match at {
            Position::Line(line) => InputError::Json {
                input: input.to_string(),
                line,
                column: 1,
                message,
            },
            Position::Offset(offset) => InputError::Protobuf {
                input: input.to_string(),
                offset,
                message,
            },
        };
        let lite = LiteExportRequest::decode(encoded).map_err(|e| fail(e.to_string()))?;
        let converted = convert_request(lite, &self.rule).map_err(|e| fail(e.to_string()))?;
        self.stats.requests += 1;
        self.stats.spans += converted.spans.len();
        self.stats.rejected += converted.rejected;
        if self.stats.first_problem.is_none() {
            self.stats.first_problem = converted
                .first_problem
                .map(|p| format!("{input} ({}): {p}", describe(at)));
        }
        for (trace_id, span) in converted.spans {
            let t = self.traces.entry(trace_id).or_default();
            t.has_entry_candidate |= span.entry_candidate;
            t.spans.push(span);
        }
        Ok(())
    }

    /// Analyses every trace holding a failing entry, oldest first (by the start of its
    /// earliest span, then trace id), through one [`VerdictStore`].
    pub fn analyze(self, cfg: &AnalysisConfig) -> Analysis {
        let traces = self.traces.len();
        let mut corrupt_spans = 0;
        // Healthy traces are skipped unmaterialised, as the service skips them.
        let mut failing: Vec<Trace> = self
            .traces
            .into_iter()
            .filter(|(_, t)| t.has_entry_candidate)
            .map(|(id, t)| {
                let m = materialize(id, &t.spans);
                corrupt_spans += m.corrupt.len();
                m.trace
            })
            .collect();
        let first_start = |t: &Trace| t.spans.iter().map(|s| s.start_unix_nano).min();
        failing.sort_by(|a, b| {
            first_start(a)
                .cmp(&first_start(b))
                .then_with(|| a.trace_id.cmp(&b.trace_id))
        });
        // Verdicts are collected here as they are made; the store only needs to hold the
        // fingerprint groups, which its retention does not limit.
        let store = VerdictStore::new(1);
        let mut verdicts = Vec::new();
        for trace in &failing {
            let ended = trace.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
            verdicts.extend(store.record(analyze_trace(trace, cfg, ended)));
        }
        Analysis {
            verdicts,
            store,
            traces,
            corrupt_spans,
        }
    }
}

fn describe(at: Position) -> String {
    match at {
        Position::Line(l) => format!("line {l}"),
        Position::Offset(o) => format!("byte offset {o}"),
    }
}

/// Runs `faultline analyze`: reads every input (a path, or `-` for `stdin`), analyses,
/// prints to `stdout`, and reports counts and problems on `stderr`. Returns the exit
/// status: 0 (also when there are no verdicts), [`EXIT_UNREADABLE`] when an input cannot
/// be read or decoded, [`EXIT_USAGE`] for a bad option value.
pub fn run(
    args: AnalyzeArgs,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    // The analysis options are validated exactly as the service validates them.
    let cfg = match config::resolve(ServeArgs {
        error_status: args.error_status.clone(),
        tenant_attribute: args.tenant_attribute.clone(),
        ..ServeArgs::default()
    }) {
        Ok(c) => c.analysis,
        Err(e) => {
            let _ = writeln!(stderr, "faultline analyze: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut capture = Capture::new(&cfg);
    for file in &args.files {
        let (name, content) = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            ("-".to_string(), stdin.read_to_end(&mut buf).map(|_| buf))
        } else {
            (file.display().to_string(), std::fs::read(file))
        };
        let added = content
            .map_err(|source| InputError::Read {
                input: name.clone(),
                source,
            })
            .and_then(|c| capture.add(&name, c, args.format));
        if let Err(e) = added {
            let _ = writeln!(stderr, "faultline analyze: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    }
    let stats = capture.stats().clone();
    let analysis = capture.analyze(&cfg);
    let printed = match (args.group_by, args.output) {
        (None, OutputFormat::Json) => print_json_lines(&analysis.verdicts, stdout),
        (None, OutputFormat::Table) => print_verdict_table(&analysis.verdicts, stdout),
        (Some(GroupBy::Fingerprint), format) => {
            let groups = analysis
                .store
                .fingerprints(None, crate::store::fingerprints::MAX_GROUPS);
            match format {
                OutputFormat::Json => {
                    serde_json::to_writer(&mut *stdout, &serde_json::json!({ "fingerprints": groups }))
                        .map_err(io::Error::from)
                        .and_then(|()| writeln!(stdout))
                }
                OutputFormat::Table => print_fingerprint_table(&groups, stdout),
            }
        }
    }
    .and_then(|()| stdout.flush());
    match printed {
        Ok(()) => {}
        // `faultline analyze … | head` is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(stderr, "faultline analyze: cannot write the output: {e}");
            return ExitCode::FAILURE;
        }
    }
    let _ = write_summary(&stats, &analysis, stderr);
    ExitCode::SUCCESS
}

fn write_summary(stats: &ReadStats, a: &Analysis, stderr: &mut dyn Write) -> io::Result<()> {
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
const MAX_CELL: usize = 60;

/// One table cell: control characters flattened (a tab or newline would break the
/// columns) and long text cut with an ellipsis.
fn cell(text: &str) -> String {
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
            cell(&format!("{} {} {}", v.entry.service, v.entry.route, v.entry.status_code)),
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
