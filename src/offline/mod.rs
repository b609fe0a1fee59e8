//! `faultline analyze FILE…`: the service's analysis, offline, on captured traces.
//!
//! Inputs are what the OpenTelemetry Collector's `file` exporter writes
//! (exporter/fileexporter): with `format: json`, one OTLP/JSON `ExportTraceServiceRequest`
//! a line; with `format: proto`, each encoded request preceded by its length as a 4-byte
//! big-endian unsigned integer (`exportMessageAsBuffer` in its `file_writer.go`). A file
//! holding one (pretty-printed) JSON request or one raw protobuf request is accepted too,
//! and `-` is standard input. Any of them may be gzip- or zstd-compressed; zstd in every
//! layout the file exporter writes with `compression: zstd` (its `compression_writer.go`
//! and, before the `exporter.file.nativeCompression` feature gate, `marshaller.go`): one
//! stream over the file, of a frame per flush or, when rotating, per write; or each
//! length-prefixed record a frame of its own, JSON or protobuf (`offline/zstd.rs`). The
//! format is told from the content (or forced with `--format`), never from the file name.
//!
//! Inputs stream: a gzip or zstd decoder when the first bytes say so, then a JSON line or
//! a length-prefixed record at a time, so memory holds the spans, not the input. One JSON
//! document or raw protobuf request is one record, read whole. `--max-record-size` bounds
//! a record after decompression (a decompression bomb stops with an error naming the file).
//!
//! Everything after reading is the service's own path, so a capture gets the verdicts the
//! running service gives for the same spans: JSON through [`json_to_protobuf`], every
//! request decoded as a [`LiteExportRequest`] and through [`convert_request`] (which rejects
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
//!
//! The command runs in three seams: `read` (captures into the spans of each trace), this
//! module (analysing them, and the command itself), and `print` (the output).
//!
//! [`json_to_protobuf`]: crate::ingest::convert::json_to_protobuf
//! [`LiteExportRequest`]: crate::ingest::lite::LiteExportRequest
//! [`convert_request`]: crate::ingest::convert::convert_request

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::analysis::{analyze_trace, AnalysisConfig, Verdict};
use crate::config::{self, AnalyzeArgs, ServeArgs};
use crate::ingest::convert::materialize;
use crate::model::Trace;
use crate::store::VerdictStore;

mod print;
mod read;
mod zstd;

pub use read::{Capture, InputError, ReadStats, DEFAULT_MAX_RECORD_SIZE};

/// Exit status when an input cannot be read or decoded.
pub const EXIT_UNREADABLE: u8 = 1;
/// Exit status for a bad option value (clap uses it for usage errors too).
pub const EXIT_USAGE: u8 = 2;

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
            let ended = trace
                .spans
                .iter()
                .map(|s| s.end_unix_nano)
                .max()
                .unwrap_or(0);
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
        analysis: args.analysis.clone(),
        ..ServeArgs::default()
    }) {
        Ok(c) => c.analysis,
        Err(e) => {
            let _ = writeln!(stderr, "faultline analyze: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut capture = Capture::new(&cfg).with_max_record_size(args.max_record_size);
    for file in &args.files {
        let added = if file.as_os_str() == "-" {
            capture.read("-", &mut *stdin, args.format)
        } else {
            let name = file.display().to_string();
            match std::fs::File::open(file) {
                Ok(f) => capture.read(&name, f, args.format),
                Err(source) => Err(InputError::Read {
                    input: name,
                    source,
                }),
            }
        };
        if let Err(e) = added {
            let _ = writeln!(stderr, "faultline analyze: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    }
    let stats = capture.stats().clone();
    let analysis = capture.analyze(&cfg);
    let printed = print::print_analysis(&analysis, args.group_by, args.output, stdout)
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
    let _ = print::write_summary(&stats, &analysis, stderr);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests;
