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
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
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

mod zstd;

/// Exit status when an input cannot be read or decoded.
pub const EXIT_UNREADABLE: u8 = 1;
/// Exit status for a bad option value (clap uses it for usage errors too).
pub const EXIT_USAGE: u8 = 2;

/// Default of `--max-record-size`: far above any request a Collector exports (its
/// receivers take 4 MiB by default, as the service does), far below a machine's memory.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 256 * 1024 * 1024;

/// Buffer size of the readers between the file, the decompressor and the records.
const READ_BUFFER: usize = 64 * 1024;

/// The end of `faultline analyze --help`.
pub const AFTER_HELP: &str = "\
Output: `--output json` prints one verdict a line, oldest request first, each as \
GET /api/v1/verdicts/{trace_id} returns it; with `--group-by fingerprint`, one \
{\"fingerprints\": [...]} object as GET /api/v1/fingerprints returns it. `analyzed_at` is \
the end of the trace's last span, so a capture always gives the same output. Counts and \
warnings (spans skipped for invalid ids) go to standard error.

Inputs: OTLP/JSON lines, length-prefixed or raw OTLP/protobuf, told apart by their \
content; gzip- or zstd-compressed or not (zstd as the Collector's file exporter writes \
it with `compression: zstd`, whole-file streams and per-record frames alike). They are \
read a record at a time; `--max-record-size` bounds one record after decompression.

Exit status: 0 when every input was read (with or without verdicts); 1 when an input \
cannot be read or decoded (the message names the file and the line, or the byte offset \
for protobuf); 2 for a bad option.";

/// Options of `faultline analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Captured traces: OTLP/JSON lines or OTLP/protobuf (length-prefixed as the
    /// Collector's file exporter writes them, or one raw request), optionally gzip- or
    /// zstd-compressed (the file exporter's `compression: zstd`, in any of its layouts);
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

    /// Largest record read, after decompression: a JSON line, a length-prefixed
    /// message, or a whole JSON document or raw protobuf request. Inputs are read a
    /// record at a time, so this bounds the memory reading takes (against decompression
    /// bombs, and files that are not captures).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_record_size: usize,
}

/// `--max-record-size`: `256MiB`, `64MB`, `1048576`.
fn parse_size(raw: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = raw
        .parse()
        .map_err(|e| format!("{e}; expected a size like 256MiB"))?;
    match usize::try_from(size.as_u64()) {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large".into()),
    }
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
    /// A length-prefixed record whose zstd-compressed payload does not decompress, or
    /// does not decode once decompressed.
    #[error("{input}: byte offset {offset}: not a zstd-compressed OTLP trace request: {message}")]
    CompressedRecord {
        /// The file.
        input: String,
        /// Offset of the record's payload in the (decompressed) input.
        offset: usize,
        /// The decompressor's or the decoder's complaint.
        message: String,
    },
    /// A record (a JSON line, a length-prefixed message, a whole JSON document or raw
    /// protobuf request) larger than `--max-record-size` after decompression.
    #[error(
        "{input}: {at}: {what} exceeds --max-record-size ({limit} bytes): a decompression bomb, or not a capture?"
    )]
    TooLarge {
        /// The file.
        input: String,
        /// `line N` or `byte offset N` in the decompressed input.
        at: String,
        /// What is too large.
        what: String,
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Where a request was read from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Position {
    Line(usize),
    Offset(usize),
    /// A zstd-compressed length-prefixed record, by the offset of its payload.
    Record(usize),
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
    max_record: usize,
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
            max_record: DEFAULT_MAX_RECORD_SIZE,
        }
    }

    /// Sets the largest record read, after decompression (default
    /// [`DEFAULT_MAX_RECORD_SIZE`]): a JSON line, a length-prefixed message, or a whole
    /// JSON document or raw protobuf request. Reading streams, so this, not the size of
    /// an input, bounds the memory that reading takes (beyond the spans).
    pub fn with_max_record_size(mut self, bytes: usize) -> Self {
        self.max_record = bytes;
        self
    }

    /// What was read so far.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// Adds one input's content, named `input` in errors: [`Capture::read`] over bytes
    /// already in memory.
    ///
    /// # Errors
    /// As [`Capture::read`].
    pub fn add(
        &mut self,
        input: &str,
        content: Vec<u8>,
        format: InputFormat,
    ) -> Result<(), InputError> {
        self.read(input, &content[..], format)
    }

    /// Reads one input, named `input` in errors, record by record: through a gzip or
    /// zstd decoder when its first bytes say it is compressed, then OTLP/JSON lines a
    /// line at a time and length-prefixed protobuf a message at a time, so memory holds
    /// the spans and one record, not the input. A single (pretty-printed) JSON request
    /// and a raw protobuf request are read whole: they are one record.
    ///
    /// # Errors
    /// [`InputError`] naming the line or byte offset that does not decode, or the record
    /// larger than the limit ([`Capture::with_max_record_size`]); spans added from
    /// earlier requests of the input stay.
    pub fn read(
        &mut self,
        input: &str,
        reader: impl Read,
        format: InputFormat,
    ) -> Result<(), InputError> {
        let mut raw = BufReader::with_capacity(READ_BUFFER, reader);
        let head = look_ahead(&mut raw, 4, |h| h.len() >= 4).map_err(read_error(input))?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let zstd = zstd::starts_a_stream(&head);
        let raw = Cursor::new(head).chain(raw);
        if gzip {
            let decoded = flate2::bufread::MultiGzDecoder::new(raw);
            self.read_decoded(
                input,
                BufReader::with_capacity(READ_BUFFER, decoded),
                format,
            )
        } else if zstd {
            let decoded = zstd::ZstdFrames::new(raw);
            self.read_decoded(
                input,
                BufReader::with_capacity(READ_BUFFER, decoded),
                format,
            )
        } else {
            self.read_decoded(input, raw, format)
        }
    }

    /// The decompressed input: its layout told from its first bytes.
    fn read_decoded(
        &mut self,
        input: &str,
        mut stream: impl BufRead,
        format: InputFormat,
    ) -> Result<(), InputError> {
        // Enough to tell the layouts apart: the first byte that is not blank, and 8 bytes
        // (a length prefix followed by the magic number of a zstd frame).
        let head = look_ahead(&mut stream, self.max_record, |h| {
            h.len() >= 8 && h.iter().any(|b| !b.is_ascii_whitespace())
        })
        .map_err(read_error(input))?;
        // Before its native compression (feature gate `exporter.file.nativeCompression`),
        // the Collector's file exporter compressed each record on its own and
        // length-prefixed it, JSON and protobuf alike: a length, then a zstd frame.
        let compressed_records = head.len() >= 8 && head[4..8] == zstd::FRAME_MAGIC;
        let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
        // A newline then `{`: JSON lines after a blank line, or a raw protobuf request
        // whose first ResourceSpans is 123 bytes long (tag 0x0a, length 0x7b).
        let ambiguous = head.first() == Some(&0x0a) && first == Some(b'{');
        let stream = Cursor::new(head).chain(stream);
        if compressed_records {
            return self.add_length_prefixed(input, stream, format);
        }
        match format {
            InputFormat::Json => self.add_json_lines(input, stream),
            InputFormat::Proto => self.add_protobuf(input, stream, format),
            InputFormat::Auto if ambiguous => self.add_newline_brace(input, stream),
            InputFormat::Auto if first.is_none_or(|b| b == b'{') => {
                self.add_json_lines(input, stream)
            }
            InputFormat::Auto => self.add_protobuf(input, stream, format),
        }
    }

    /// Only the whole input tells JSON lines after a blank line from a raw protobuf
    /// request starting `\n{` (it decodes as protobuf or not), so it is read whole, up to
    /// the record limit: an input larger than that cannot be one raw request, and its
    /// JSON lines are read on from what is already in memory.
    fn add_newline_brace(
        &mut self,
        input: &str,
        mut stream: impl BufRead,
    ) -> Result<(), InputError> {
        let mut content = Vec::new();
        (&mut stream)
            .take(self.past_limit())
            .read_to_end(&mut content)
            .map_err(read_error(input))?;
        if content.len() > self.max_record {
            return self.add_json_lines(input, Cursor::new(content).chain(stream));
        }
        if looks_like_json(&content) {
            self.add_json_lines(input, &content[..])
        } else {
            self.add_encoded(input, Bytes::from(content), Position::Offset(0))
        }
    }

    /// OTLP/JSON lines, a line at a time; when the first request does not fit on its
    /// line, the whole input as one (pretty-printed) request.
    fn add_json_lines(&mut self, input: &str, mut stream: impl BufRead) -> Result<(), InputError> {
        let mut raw = Vec::new();
        let mut line = 0;
        let mut first = true;
        loop {
            raw.clear();
            (&mut stream)
                .take(self.past_limit())
                .read_until(b'\n', &mut raw)
                .map_err(read_error(input))?;
            if raw.is_empty() {
                return Ok(());
            }
            line += 1;
            if raw.len() > self.max_record && raw.last() != Some(&b'\n') {
                return Err(self.too_large(input, format!("line {line}"), "the line"));
            }
            let text = raw.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match json_to_protobuf(text) {
                Ok(encoded) => {
                    self.add_encoded(input, Bytes::from(encoded), Position::Line(line))?;
                    first = false;
                }
                // The first request ended mid-value: the input is one document, and its
                // own error has the right line. (An error before the end of the line is
                // at the same place in the whole document, which then fails there too.)
                Err(e) if first && e.is_eof() => {
                    let raw = std::mem::take(&mut raw);
                    return self.add_json_document(input, line - 1, raw, stream);
                }
                Err(e) => return Err(json_error(input, line, e)),
            }
        }
    }

    /// The whole input as one JSON request: `blank_lines` blank lines (read already),
    /// then `first_line` (read already), then the rest of `stream`.
    fn add_json_document(
        &mut self,
        input: &str,
        blank_lines: usize,
        first_line: Vec<u8>,
        stream: impl Read,
    ) -> Result<(), InputError> {
        let document = "the input, read as one JSON document,";
        if blank_lines + first_line.len() > self.max_record {
            return Err(self.too_large(input, "line 1".into(), document));
        }
        // Blank lines only count for the line numbers of serde_json's errors, which are
        // never on them: they are kept as bare newlines.
        let mut whole = vec![b'\n'; blank_lines];
        whole.extend_from_slice(&first_line);
        let room = self.past_limit() - whole.len() as u64;
        stream
            .take(room)
            .read_to_end(&mut whole)
            .map_err(read_error(input))?;
        if whole.len() > self.max_record {
            return Err(self.too_large(input, "line 1".into(), document));
        }
        match json_to_protobuf(&whole) {
            Ok(encoded) => self.add_encoded(input, Bytes::from(encoded), Position::Line(1)),
            Err(e) => Err(json_error(input, 1, e)),
        }
    }

    /// Length-prefixed requests (the Collector's `format: proto`), or one raw request.
    /// A non-empty raw request starts with the tag of field 1 (`0x0a`); a length prefix
    /// starts with `0x00` for any message under 16 MiB, so the first byte tells them apart.
    fn add_protobuf(
        &mut self,
        input: &str,
        mut stream: impl BufRead,
        format: InputFormat,
    ) -> Result<(), InputError> {
        match stream.fill_buf().map_err(read_error(input))?.first() {
            None => Ok(()),
            Some(0x0a) => {
                let mut content = Vec::new();
                stream
                    .take(self.past_limit())
                    .read_to_end(&mut content)
                    .map_err(read_error(input))?;
                if content.len() > self.max_record {
                    let what = "the raw protobuf request";
                    return Err(self.too_large(input, "byte offset 0".into(), what));
                }
                self.add_encoded(input, Bytes::from(content), Position::Offset(0))
            }
            Some(_) => self.add_length_prefixed(input, stream, format),
        }
    }

    /// Records each preceded by its length as a 4-byte big-endian integer
    /// (`exportMessageAsBuffer` in the file exporter's `file_writer.go`), a record at a
    /// time. A record that is a zstd stream is decompressed: the file exporter's layout
    /// before its native compression, where each record is a zstd frame of protobuf or
    /// JSON (`format` tells which, or `auto` by its content).
    fn add_length_prefixed(
        &mut self,
        input: &str,
        mut stream: impl BufRead,
        format: InputFormat,
    ) -> Result<(), InputError> {
        let mut offset = 0;
        let mut prefix = [0; 4];
        loop {
            let got = read_up_to(&mut stream, &mut prefix).map_err(read_error(input))?;
            match got {
                0 => return Ok(()),
                1..=3 => {
                    return Err(InputError::Protobuf {
                        input: input.to_string(),
                        offset,
                        message: format!(
                            "{got} trailing bytes are too short for a 4-byte length prefix (truncated capture?)"
                        ),
                    })
                }
                _ => {}
            }
            let len = u32::from_be_bytes(prefix) as usize;
            let start = offset + 4;
            if len > self.max_record {
                let what = format!("a record of {len} bytes (by its length prefix)");
                return Err(self.too_large(input, format!("byte offset {offset}"), &what));
            }
            // Grown as the bytes arrive, so that a wrong prefix costs no big allocation.
            let mut payload = Vec::with_capacity(len.min(READ_BUFFER));
            (&mut stream)
                .take(len as u64)
                .read_to_end(&mut payload)
                .map_err(read_error(input))?;
            if payload.len() < len {
                return Err(InputError::Protobuf {
                    input: input.to_string(),
                    offset,
                    message: format!(
                        "the length prefix announces {len} bytes but only {} follow (truncated capture, or not length-prefixed)",
                        payload.len()
                    ),
                });
            }
            if zstd::starts_a_stream(&payload) {
                self.add_compressed_record(input, &payload, start, format)?;
            } else {
                self.add_encoded(input, Bytes::from(payload), Position::Offset(start))?;
            }
            offset = start + len;
        }
    }

    /// One zstd-compressed record at `offset`, holding one request.
    fn add_compressed_record(
        &mut self,
        input: &str,
        payload: &[u8],
        offset: usize,
        format: InputFormat,
    ) -> Result<(), InputError> {
        let fail = |message: String| InputError::CompressedRecord {
            input: input.to_string(),
            offset,
            message,
        };
        let mut content = Vec::new();
        zstd::ZstdFrames::new(payload)
            .take(self.past_limit())
            .read_to_end(&mut content)
            .map_err(|e| fail(e.to_string()))?;
        if content.len() > self.max_record {
            let what = "the zstd-compressed record, decompressed,";
            return Err(self.too_large(input, format!("byte offset {offset}"), what));
        }
        let json = match format {
            InputFormat::Json => true,
            InputFormat::Proto => false,
            InputFormat::Auto => looks_like_json(&content),
        };
        let encoded = if json {
            json_to_protobuf(&content).map_err(|e| fail(format!("OTLP/JSON: {e}")))?
        } else {
            content
        };
        self.add_encoded(input, Bytes::from(encoded), Position::Record(offset))
    }

    /// One byte past the record limit: what to read to tell a record over the limit.
    fn past_limit(&self) -> u64 {
        (self.max_record as u64).saturating_add(1)
    }

    fn too_large(&self, input: &str, at: String, what: &str) -> InputError {
        InputError::TooLarge {
            input: input.to_string(),
            at,
            what: what.to_string(),
            limit: self.max_record,
        }
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
            Position::Record(offset) => InputError::CompressedRecord {
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

/// JSON when the first byte that is not blank is `{` (or there is none), unless the
/// whole input decodes as one raw protobuf request: that starts with `0x0a`, a newline,
/// and its length byte can be `{` (123).
fn looks_like_json(content: &[u8]) -> bool {
    let Some(&first) = content.iter().find(|b| !b.is_ascii_whitespace()) else {
        return true;
    };
    first == b'{' && !(content[0] == 0x0a && LiteExportRequest::decode(content).is_ok())
}

/// Reads from `reader` until `enough` holds for what was read, the input ends or `limit`
/// bytes are read, and returns the bytes read (whole buffers: possibly more than asked),
/// for the caller to chain in front of the rest.
fn look_ahead(
    reader: &mut impl BufRead,
    limit: usize,
    enough: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    while head.len() < limit && !enough(&head) {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(limit - head.len());
        head.extend_from_slice(&buf[..n]);
        reader.consume(n);
    }
    Ok(head)
}

/// Fills `buf` unless the input ends first; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn read_error(input: &str) -> impl Fn(io::Error) -> InputError + '_ {
    move |source| InputError::Read {
        input: input.to_string(),
        source,
    }
}

/// A JSON error at `line` of the input (serde_json's own line counted from there).
fn json_error(input: &str, line: usize, e: serde_json::Error) -> InputError {
    // serde_json appends "at line L column C"; the position is reported in the file's
    // terms instead.
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    InputError::Json {
        input: input.to_string(),
        line: line + e.line().saturating_sub(1),
        column: e.column(),
        message: text.strip_suffix(&suffix).unwrap_or(&text).to_string(),
    }
}

fn describe(at: Position) -> String {
    match at {
        Position::Line(l) => format!("line {l}"),
        Position::Offset(o) | Position::Record(o) => format!("byte offset {o}"),
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
    let printed = match (args.group_by, args.output) {
        (None, OutputFormat::Json) => print_json_lines(&analysis.verdicts, stdout),
        (None, OutputFormat::Table) => print_verdict_table(&analysis.verdicts, stdout),
        (Some(GroupBy::Fingerprint), format) => {
            let groups = analysis
                .store
                .fingerprints(None, crate::store::fingerprints::MAX_GROUPS);
            match format {
                OutputFormat::Json => serde_json::to_writer(
                    &mut *stdout,
                    &serde_json::json!({ "fingerprints": groups }),
                )
                .map_err(io::Error::from)
                .and_then(|()| writeln!(stdout)),
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use serde_json::Value;

    use super::*;
    use crate::synth::{Generator, SynthConfig};

    /// Four requests of 5 synthetic traces each, about half of them failing, and three
    /// failing requests with the same KeyError, the last one before the others.
    fn requests() -> Vec<ExportTraceServiceRequest> {
        let mut g = Generator::new(SynthConfig {
            error_ratio: 0.5,
            seed: 7,
            ..Default::default()
        });
        let mut reqs: Vec<_> = (0..4).map(|_| g.next_request()).collect();
        reqs.extend([failing(0xa1, 100), failing(0xa2, 200), failing(0xa3, 50)]);
        reqs
    }

    const PY_STACK: &str = "Traceback (most recent call last):\n  File \"/srv/app/orders.py\", line 41, in checkout\n    total = cart['sku']\nKeyError: 'sku'\n";

    /// One failing request: a SERVER span answering 500 with a KeyError, whose CLIENT
    /// child succeeded; starting at `start` seconds.
    fn failing(trace: u8, start: u64) -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::common::v1::{any_value::Value as V, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
        let kv = |k: &str, v: V| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let t0 = start * 1_000_000_000;
        let server = Span {
            trace_id: vec![trace; 16],
            span_id: vec![1; 8],
            name: "POST /checkout".into(),
            kind: 2,
            start_time_unix_nano: t0,
            end_time_unix_nano: t0 + 50_000_000,
            attributes: vec![
                kv("http.route", V::StringValue("/checkout".into())),
                kv("http.response.status_code", V::IntValue(500)),
            ],
            events: vec![span::Event {
                name: "exception".into(),
                time_unix_nano: t0 + 40_000_000,
                attributes: vec![
                    kv("exception.type", V::StringValue("KeyError".into())),
                    kv("exception.message", V::StringValue("'sku'".into())),
                    kv("exception.stacktrace", V::StringValue(PY_STACK.into())),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let client = Span {
            span_id: vec![2; 8],
            parent_span_id: vec![1; 8],
            name: "GET".into(),
            kind: 3,
            start_time_unix_nano: t0 + 5_000_000,
            end_time_unix_nano: t0 + 30_000_000,
            attributes: vec![kv("http.response.status_code", V::IntValue(200))],
            ..server.clone()
        };
        let client = Span {
            events: vec![],
            ..client
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", V::StringValue("orders".into())),
                        kv("service.version", V::StringValue("1.2.3".into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![server, client],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn json_lines(reqs: &[ExportTraceServiceRequest]) -> Vec<u8> {
        reqs.iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>()
            .into_bytes()
    }

    fn length_prefixed(reqs: &[ExportTraceServiceRequest]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reqs {
            let b = r.encode_to_vec();
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(&b);
        }
        out
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b).unwrap();
        enc.finish().unwrap()
    }

    /// One zstd frame (compressed blocks and a checksum), by `ruzstd`'s encoder.
    fn zstd_frame(b: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// A zstd stream whose frames end every `every` bytes of content, wherever that
    /// falls, as the file exporter's native compression leaves them at each flush.
    fn zstd_frames(b: &[u8], every: usize) -> Vec<u8> {
        b.chunks(every).flat_map(zstd_frame).collect()
    }

    /// The file exporter's layout before its native compression: each record compressed
    /// on its own (one frame), then length-prefixed.
    fn compressed_records(payloads: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let frame = zstd_frame(&p);
            out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            out.extend_from_slice(&frame);
        }
        out
    }

    /// Every layout the Collector's file exporter writes (and the others read), each
    /// holding `reqs`; `--format` to give, if any.
    fn layouts(reqs: &[ExportTraceServiceRequest]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let merged = ExportTraceServiceRequest {
            resource_spans: reqs.iter().flat_map(|r| r.resource_spans.clone()).collect(),
        };
        // One request in one file, pretty-printed, to check the whole-document reading.
        let pretty = serde_json::to_string_pretty(&merged).unwrap().into_bytes();
        let lines = json_lines(reqs);
        let framed = length_prefixed(reqs);
        let json_records = || reqs.iter().map(|r| serde_json::to_vec(r).unwrap());
        let proto_records = || reqs.iter().map(|r| r.encode_to_vec());
        vec![
            ("JSON lines", lines.clone(), "auto"),
            ("length-prefixed protobuf", framed.clone(), "auto"),
            ("raw protobuf", merged.encode_to_vec(), "auto"),
            ("pretty-printed JSON", pretty.clone(), "auto"),
            ("gzipped JSON lines", gzip(&lines), "auto"),
            ("gzipped length-prefixed protobuf", gzip(&framed), "auto"),
            // Native compression, rotating: a frame per write, the newline its own.
            (
                "zstd JSON lines, a frame per write",
                lines
                    .split_inclusive(|&b| b == b'\n')
                    .flat_map(|l| [zstd_frame(&l[..l.len() - 1]), zstd_frame(b"\n")])
                    .flatten()
                    .collect(),
                "auto",
            ),
            // Native compression, not rotating: frames end at each flush, mid-record.
            (
                "zstd JSON lines, frames cut anywhere",
                zstd_frames(&lines, 1000),
                "auto",
            ),
            (
                "zstd length-prefixed protobuf, frames cut anywhere",
                zstd_frames(&framed, 777),
                "auto",
            ),
            (
                "zstd length-prefixed protobuf, one frame",
                zstd_frame(&framed),
                "auto",
            ),
            (
                "zstd stream after a skippable frame, with an empty frame",
                [
                    super::zstd::tests::skippable_frame(b"index"),
                    zstd_frames(&lines, 4096),
                    super::zstd::tests::raw_frame(b"", true),
                ]
                .concat(),
                "auto",
            ),
            (
                "zstd pretty-printed JSON",
                zstd_frames(&pretty, 500),
                "auto",
            ),
            // Before native compression: each record a zstd frame, length-prefixed.
            (
                "zstd JSON records",
                compressed_records(json_records()),
                "auto",
            ),
            (
                "zstd JSON records, --format json",
                compressed_records(json_records()),
                "json",
            ),
            (
                "zstd protobuf records",
                compressed_records(proto_records()),
                "auto",
            ),
            (
                "zstd protobuf records, --format proto",
                compressed_records(proto_records()),
                "proto",
            ),
        ]
    }

    /// The verdicts of `Capture::read` over `content`, handed over `chunk` bytes a read,
    /// as the API serialises them.
    fn trickled(content: &[u8], chunk: usize, format: InputFormat) -> Vec<Value> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let cfg = AnalysisConfig::default();
        let mut capture = Capture::new(&cfg);
        capture
            .read("trickle", Trickle(content, chunk), format)
            .unwrap();
        capture
            .analyze(&cfg)
            .verdicts
            .iter()
            .map(|v| serde_json::to_value(&**v).unwrap())
            .collect()
    }

    /// Runs the command on `inputs` (file contents; `-` reads `stdin`) and returns
    /// (exit status, stdout, stderr).
    fn analyze(inputs: &[&[u8]], stdin: &[u8], extra: &[&str]) -> (ExitCode, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut argv: Vec<String> = vec!["analyze".into()];
        for (n, content) in inputs.iter().enumerate() {
            let path = dir.path().join(format!("capture-{n}"));
            std::fs::write(&path, content).unwrap();
            argv.push(path.display().to_string());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let cli = <crate::config::Cli as clap::Parser>::try_parse_from(
            std::iter::once("faultline".to_string()).chain(argv),
        )
        .unwrap();
        let Some(crate::config::Command::Analyze(args)) = cli.command else {
            panic!("not the analyze subcommand");
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(args, &mut &stdin[..], &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn verdict_lines(stdout: &str) -> Vec<Value> {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_input_layout_gives_the_same_verdicts() {
        let reqs = requests();
        let (code, lines, err) = analyze(&[&json_lines(&reqs)], b"", &["--output", "json"]);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        let expected = verdict_lines(&lines);
        assert!(expected.len() >= 3, "{lines}\n{err}");
        for (what, content, format) in layouts(&reqs) {
            let (code, out, err) =
                analyze(&[&content], b"", &["--output", "json", "--format", format]);
            assert_eq!(code, ExitCode::SUCCESS, "{what}: {err}");
            assert_eq!(verdict_lines(&out), expected, "{what}");
            // Read as it streams in, in reads of any size, shorter than a magic number
            // plus a length prefix included: the layout is told from the same first
            // bytes, the records are the same.
            let format = InputFormat::from_str(format, true).unwrap();
            for chunk in [3, 4093] {
                assert_eq!(
                    trickled(&content, chunk, format),
                    expected,
                    "{what}, {chunk} bytes a read"
                );
            }
        }
        // Spread over two inputs, one of them standard input, in the other order.
        let (code, out, err) = analyze(
            &[&length_prefixed(&reqs[2..])],
            &json_lines(&reqs[..2]),
            &["-", "--output", "json"],
        );
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        assert_eq!(verdict_lines(&out), expected, "split inputs");
    }

    #[test]
    fn records_are_taken_as_they_are_read_not_after_the_whole_input() {
        /// The content, then a read error: what a reader that took the whole input
        /// first would fail on before it decoded anything.
        struct ThenFail<'a>(&'a [u8]);
        impl Read for ThenFail<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("the disk went away"));
                }
                let n = self.0.len().min(buf.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let reqs = requests();
        let cfg = AnalysisConfig::default();
        for (what, content, format) in layouts(&reqs) {
            let mut capture = Capture::new(&cfg);
            let format = InputFormat::from_str(format, true).unwrap();
            let err = capture
                .read("capture", ThenFail(&content), format)
                .unwrap_err();
            assert!(
                matches!(&err, InputError::Read { input, .. } if input == "capture"),
                "{what}: {err}"
            );
            assert!(err.to_string().contains("the disk went away"), "{err}");
            // Records arrive whole: one that is not all in memory yet is not counted.
            let whole = what.contains("pretty") || what.contains("raw");
            let expected = if whole { 0 } else { reqs.len() };
            assert_eq!(capture.stats().requests, expected, "{what}");
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_with_an_error_naming_the_file() {
        use super::zstd::tests::rle_frame;
        let limit = ["--max-record-size", "1MiB"];
        // 8 GiB of `{` from 256 KiB of zstd: taking it in would exhaust memory (and
        // this test would not end); reading stops past the limit.
        let bomb = rle_frame(b'{', 8 << 30);
        assert!(bomb.len() < 300 << 10);
        let (code, out, err) = analyze(&[&bomb], b"", &limit);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE), "{err}");
        assert!(out.is_empty());
        assert!(
            err.contains("capture-0: line 1: the line exceeds --max-record-size (1048576 bytes)"),
            "{err}"
        );
        assert!(err.contains("decompression bomb"), "{err}");

        // The same inside a length-prefixed record.
        let record = [&(bomb.len() as u32).to_be_bytes()[..], &bomb].concat();
        let (code, _, err) = analyze(&[&record], b"", &limit);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE), "{err}");
        assert!(
            err.contains("capture-0: byte offset 4: the zstd-compressed record, decompressed, exceeds --max-record-size"),
            "{err}"
        );

        // A gzip bomb, a length prefix beyond the limit, a pretty-printed document over it.
        let (_, _, err) = analyze(&[&gzip(&vec![b'{'; 4 << 20])], b"", &limit);
        assert!(err.contains("capture-0: line 1: the line exceeds"), "{err}");
        let (_, _, err) = analyze(&[&[0xff, 0xff, 0xff, 0xf0, 0x0a]], b"", &limit);
        assert!(
            err.contains("capture-0: byte offset 0: a record of 4294967280 bytes (by its length prefix) exceeds"),
            "{err}"
        );
        let document = format!("{{\n{}\n", " \n".repeat(1 << 20));
        let (_, _, err) = analyze(&[document.as_bytes()], b"", &limit);
        assert!(
            err.contains("line 1: the input, read as one JSON document, exceeds"),
            "{err}"
        );

        // The default limit holds too, and a small capture is well within it.
        let (code, _, err) = analyze(&[&rle_frame(b'{', 300 << 20)], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE), "{err}");
        assert!(err.contains("(268435456 bytes)"), "{err}");
        let (code, _, err) = analyze(&[&zstd_frame(&json_lines(&requests()))], b"", &limit);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
    }

    #[test]
    fn a_truncated_or_corrupt_zstd_capture_names_the_file() {
        let reqs = requests();
        let lines = json_lines(&reqs);
        let stream = zstd_frames(&lines, 2000);
        let first_frame = zstd_frame(&lines[..2000]).len();
        // Cut inside the second frame: the file exporter still writing it, or a copy cut short.
        let (code, out, err) = analyze(&[&stream[..first_frame + 20]], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE), "{err}");
        assert!(out.is_empty());
        assert!(err.contains("capture-0: cannot read: zstd: the input ends inside the frame at compressed offset"), "{err}");
        assert!(err.contains("truncated"), "{err}");

        // A flipped byte in a frame.
        let mut corrupt = stream.clone();
        corrupt[first_frame + 30] ^= 0x55;
        let (code, _, err) = analyze(&[&corrupt], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE), "{err}");
        assert!(
            err.contains("capture-0: cannot read: zstd: the frame at compressed offset"),
            "{err}"
        );

        // A record whose frame is cut short (its length prefix says so).
        let frame = zstd_frame(&reqs[0].encode_to_vec());
        let cut = &frame[..frame.len() - 6];
        let record = [&(cut.len() as u32).to_be_bytes()[..], cut].concat();
        let (code, _, err) = analyze(&[&record], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE), "{err}");
        assert!(
            err.contains("capture-0: byte offset 4: not a zstd-compressed OTLP trace request: zstd: the input ends inside the frame"),
            "{err}"
        );
        // A record whose frame holds no OTLP request.
        let junk = zstd_frame(b"{\"resourceSpans\": 7}");
        let record = [&(junk.len() as u32).to_be_bytes()[..], &junk].concat();
        let (_, _, err) = analyze(&[&record], b"", &[]);
        assert!(
            err.contains("capture-0: byte offset 4: not a zstd-compressed OTLP trace request: OTLP/JSON: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn the_offline_verdicts_are_the_analysis_stages_verdicts() {
        use crate::pipeline::{AnalysisStage, TraceSink};
        let reqs = requests();
        let cfg = AnalysisConfig::default();
        let mut capture = Capture::new(&cfg);
        capture
            .add("capture", length_prefixed(&reqs), InputFormat::Auto)
            .unwrap();
        let offline = capture.analyze(&cfg);

        // The service's stage, fed the same traces in the same order.
        let store = Arc::new(VerdictStore::new(1000));
        let mut stage = AnalysisStage::new(
            cfg.clone(),
            Arc::clone(&store),
            crate::telemetry::metrics::Metrics::default(),
        );
        let rule = EntryRule::default();
        let mut by_trace: HashMap<TraceId, Vec<BufferedSpan>> = HashMap::new();
        for r in &reqs {
            let lite = LiteExportRequest::decode(Bytes::from(r.encode_to_vec())).unwrap();
            for (id, s) in convert_request(lite, &rule).unwrap().spans {
                by_trace.entry(id).or_default().push(s);
            }
        }
        for v in &offline.verdicts {
            let id = TraceId::from_hex(&v.trace_id).unwrap();
            let spans = by_trace.remove(&id).unwrap();
            stage.handle(crate::assembly::CompletedTrace {
                trace_id: id,
                has_entry_candidate: spans.iter().any(|s| s.entry_candidate),
                spans,
                trigger: crate::telemetry::metrics::Trigger::Idle,
            });
            let served = store.get(&v.trace_id).unwrap();
            let strip = |v: &Verdict| {
                let mut j = serde_json::to_value(v).unwrap();
                j["analyzed_at"] = Value::Null;
                // "Fingerprint seen N times since <first analysis time>".
                for e in j["evidence"].as_array_mut().unwrap() {
                    let s = e.as_str().unwrap().to_string();
                    if let Some((head, tail)) = s.split_once(" since ") {
                        let rest = tail.split_once(',').map_or("", |(_, r)| r);
                        *e = Value::from(format!("{head} since T,{rest}"));
                    }
                }
                j
            };
            assert_eq!(strip(v), strip(&served), "trace {}", v.trace_id);
        }
        assert!(
            offline
                .verdicts
                .iter()
                .any(|v| v.evidence.iter().any(|e| e.contains("Fingerprint seen"))),
            "the store's cross-trace evidence is there"
        );
    }

    #[test]
    fn traces_are_analysed_oldest_first_whatever_the_input_order() {
        let mut reqs = requests();
        let (_, forward, _) = analyze(&[&json_lines(&reqs)], b"", &["--output", "json"]);
        reqs.reverse();
        let (_, backward, _) = analyze(&[&json_lines(&reqs)], b"", &["--output", "json"]);
        assert_eq!(forward, backward);
        let keyerrors: Vec<String> = verdict_lines(&forward)
            .into_iter()
            .filter(|v| v["entry"]["route"] == "/checkout")
            .map(|v| v["trace_id"].as_str().unwrap().to_string())
            .collect();
        let id = |b: u8| TraceId([b; 16]).to_string();
        assert_eq!(keyerrors, [id(0xa3), id(0xa1), id(0xa2)], "by start time");
        let last = verdict_lines(&forward)
            .into_iter()
            .find(|v| v["trace_id"] == id(0xa2))
            .unwrap();
        let evidence = last["evidence"].to_string();
        assert!(
            evidence.contains("failed 3 times on route /checkout"),
            "{evidence}"
        );
    }

    #[test]
    fn a_bad_json_line_is_named_with_its_file_and_line() {
        let good = json_lines(&requests()[..2]);
        let content = [&good[..], b"\n{\"resourceSpans\": [oops]}\n"].concat();
        let (code, out, err) = analyze(&[&content], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE));
        assert!(out.is_empty(), "nothing printed: {out}");
        assert!(err.contains("capture-0:4:"), "{err}");
        assert!(err.contains("not an OTLP/JSON trace request"), "{err}");
    }

    #[test]
    fn an_error_in_a_pretty_printed_request_names_its_own_line() {
        let text = "\n{\n  \"resourceSpans\": [\n    {\"scopeSpans\": 7}\n  ]\n}\n";
        let (code, _, err) = analyze(&[text.as_bytes()], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE));
        assert!(err.contains("capture-0:4:"), "{err}");
    }

    #[test]
    fn a_truncated_protobuf_capture_names_the_offset() {
        let full = length_prefixed(&requests()[..2]);
        let first_len = 4 + u32::from_be_bytes(full[..4].try_into().unwrap()) as usize;
        let (code, _, err) = analyze(&[&full[..full.len() - 10]], b"", &[]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE));
        assert!(err.contains(&format!("byte offset {first_len}")), "{err}");
        assert!(err.contains("truncated"), "{err}");
        // Garbage inside a frame: the message's own offset.
        let mut bad = full.clone();
        bad[4] = 0xff;
        let (code, _, err) = analyze(&[&bad], b"", &["--format", "proto"]);
        assert_eq!(code, ExitCode::from(EXIT_UNREADABLE));
        assert!(err.contains("byte offset 4:"), "{err}");
    }

    #[test]
    fn spans_with_bad_ids_are_skipped_with_a_warning_not_an_error() {
        let mut reqs = requests();
        reqs[0].resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
        let (code, _, err) = analyze(&[&json_lines(&reqs)], b"", &[]);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        assert!(err.contains("skipped 1 spans with invalid ids"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_healthy_or_empty_capture_has_no_verdicts_and_succeeds() {
        let healthy = Generator::new(SynthConfig {
            error_ratio: 0.0,
            ..Default::default()
        })
        .next_request();
        let (code, out, err) = analyze(
            &[&json_lines(&[healthy]), b"", b"\n\n"],
            b"",
            &["--output", "json"],
        );
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        assert_eq!(out, "");
        assert!(err.contains("0 verdicts"), "{err}");
    }

    #[test]
    fn the_table_has_a_header_and_one_aligned_row_per_verdict() {
        let (code, out, _) = analyze(&[&json_lines(&requests())], b"", &[]);
        assert_eq!(code, ExitCode::SUCCESS);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("TRACE ID"), "{out}");
        let column = lines[0].find("CLASSIFICATION").unwrap();
        for row in &lines[1..] {
            assert_eq!(&row[32..column], " ".repeat(column - 32), "{out}");
            assert!(
                row[column..].starts_with("deterministic_handler_defect")
                    || row[column..].starts_with("late_dependency_failure")
                    || row[column..].starts_with("inconclusive"),
                "{out}"
            );
        }
    }

    #[test]
    fn grouping_by_fingerprint_gives_the_fingerprints_body() {
        let (code, out, _) = analyze(
            &[&json_lines(&requests())],
            b"",
            &["--group-by", "fingerprint", "--output", "json"],
        );
        assert_eq!(code, ExitCode::SUCCESS);
        let body: Value = serde_json::from_str(&out).unwrap();
        let groups = body["fingerprints"].as_array().unwrap();
        assert!(!groups.is_empty());
        assert!(groups[0]["count"].as_u64().unwrap() >= 2, "{out}");
        let (_, table, _) = analyze(
            &[&json_lines(&requests())],
            b"",
            &["--group-by", "fingerprint"],
        );
        assert!(table.starts_with("FINGERPRINT ID"), "{table}");
        assert!(
            table.contains(groups[0]["fingerprint_id"].as_str().unwrap()),
            "{table}"
        );
    }

    #[test]
    fn a_bad_error_status_is_a_usage_error_naming_the_option() {
        let (code, _, err) = analyze(&[b""], b"", &["--error-status", "5xx"]);
        assert_eq!(code, ExitCode::from(EXIT_USAGE));
        assert!(err.contains("--error-status"), "{err}");
    }

    #[test]
    fn a_raw_protobuf_request_whose_length_byte_reads_as_a_brace_is_protobuf() {
        use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
        // A 123-byte ResourceSpans: the encoding starts "\n{", which looks like JSON.
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                schema_url: "x".repeat(121),
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(&bytes[..2], b"\n{");
        let (code, _, err) = analyze(&[&bytes], b"", &[]);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        assert!(err.contains("from 1 requests"), "{err}");
    }

    #[test]
    fn table_cells_are_flat_and_bounded() {
        assert_eq!(cell("a\tb\nc"), "a b c");
        let long = "x".repeat(200);
        assert_eq!(cell(&long).chars().count(), MAX_CELL);
        assert!(cell(&long).ends_with('…'));
    }
}
