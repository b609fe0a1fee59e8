//! `faultline analyze` end to end on synthetic and hand-made captures.

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;

use std::collections::HashMap;

use bytes::Bytes;
use clap::ValueEnum;
use prost::Message;

use super::print::{cell, MAX_CELL};
use super::*;
use crate::assembly::BufferedSpan;
use crate::config::InputFormat;
use crate::ingest::convert::{convert_request, EntryRule};
use crate::ingest::lite::LiteExportRequest;
use crate::model::TraceId;
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
    use crate::synth::kv;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
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
        let (code, out, err) = analyze(&[&content], b"", &["--output", "json", "--format", format]);
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
        err.contains(
            "capture-0: byte offset 0: a record of 4294967280 bytes (by its length prefix) exceeds"
        ),
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
    assert!(
        err.contains(
            "capture-0: cannot read: zstd: the input ends inside the frame at compressed offset"
        ),
        "{err}"
    );
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
            trigger: crate::assembly::policy::Trigger::Idle,
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
