//! Reading captures: a file or standard input, told apart by its content (gzip, zstd,
//! OTLP/JSON lines or documents, length-prefixed or raw protobuf), decoded a record at a
//! time through the service's own conversion into the spans of each trace.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use bytes::Bytes;
use prost::Message;

use super::zstd;
use crate::analysis::AnalysisConfig;
use crate::assembly::BufferedSpan;
use crate::config::InputFormat;
use crate::ingest::convert::{convert_request, json_to_protobuf, EntryRule};
use crate::ingest::lite::LiteExportRequest;
use crate::model::TraceId;

/// Default of `--max-record-size`: far above any request a Collector exports (its
/// receivers take 4 MiB by default, as the service does), far below a machine's memory.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 256 * 1024 * 1024;

/// Buffer size of the readers between the file, the decompressor and the records.
const READ_BUFFER: usize = 64 * 1024;

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
pub(super) struct TraceSpans {
    pub(super) spans: Vec<BufferedSpan>,
    pub(super) has_entry_candidate: bool,
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
    pub(super) traces: HashMap<TraceId, TraceSpans>,
    stats: ReadStats,
    max_record: usize,
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
