//! What each fuzz target does with its input, and the invariants it asserts.
//!
//! Shared, as source, by the cargo-fuzz targets in `fuzz/fuzz_targets/` and by the
//! regression replay in `tests/blackbox/fuzz_regressions.rs` (both include this file with
//! `#[path]`), so a committed crash input is replayed by `cargo test` through exactly the
//! code the fuzzer ran. Every function panics when an invariant breaks: that is how a
//! finding shows, to libFuzzer and to the test alike.

#![allow(dead_code)] // each includer uses only some of the targets

use std::collections::{BTreeMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use faultline::analysis::fingerprint::stack::{self, Language};
use faultline::analysis::fingerprint::{self, message_template, ExceptionInfo};
use faultline::analysis::{analyze_trace, AnalysisConfig, Verdict};
use faultline::assembly::BufferedSpan;
use faultline::ingest::convert::{self, EntryRule};
use faultline::ingest::http::{self, Format};
use faultline::ingest::lite::LiteExportRequest;
use faultline::model::{SpanId, SpanKind, Trace, TraceId, Value};
use prost::Message;

/// A fixed analysis clock: the core reads no clock, and replays must be deterministic.
const ANALYZED_AT: u64 = 1_800_000_000_000_000_000;

/// OTLP/protobuf as a network peer sends it (gRPC and OTLP/HTTP decode the same way):
/// decode, validate and convert, then materialise every assembled trace and analyse it.
pub fn otlp_protobuf(data: &[u8]) {
    let Ok(req) = LiteExportRequest::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    ingest_and_analyse(req);
}

/// The OTLP/JSON body of `POST /v1/traces` with `application/json`, through the receiver's
/// own decode, then the same conversion and analysis as protobuf.
pub fn otlp_json(data: &[u8]) {
    match http::decode(Bytes::copy_from_slice(data), Format::Json) {
        Ok(req) => ingest_and_analyse(req),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn ingest_and_analyse(req: LiteExportRequest) {
    let converted = match convert::convert_request(req, &EntryRule::default()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Group by trace id as the assembler does, in arrival order.
    let mut traces: BTreeMap<TraceId, Vec<BufferedSpan>> = BTreeMap::new();
    for (trace_id, span) in converted.spans {
        assert!(!trace_id.is_zero(), "a zero trace id was accepted");
        assert!(!span.span_id.is_zero(), "a zero span id was accepted");
        check_strip(&span.encoded);
        traces.entry(trace_id).or_default().push(span);
    }
    for (trace_id, spans) in traces {
        let m = convert::materialize(trace_id, &spans);
        assert_eq!(
            m.trace.spans.len() + m.corrupt.len(),
            spans.len(),
            "materialize lost spans"
        );
        for c in &m.corrupt {
            let _ = c.to_string();
        }
        analyse(&m.trace, &AnalysisConfig::default());
    }
}

/// Annotate mode's removal of upstream `faultline.*` attributes, on span bytes as a peer
/// sent them: never panics, and what it returns is the same span without those attributes
/// (compared through a full decode whenever the original decodes).
fn check_strip(encoded: &[u8]) {
    use faultline::forward::encode::strip_attributes;
    use opentelemetry_proto::tonic::trace::v1::Span;
    const PREFIX: &str = "faultline.";
    let Some(stripped) = strip_attributes(encoded, PREFIX) else {
        return;
    };
    assert!(stripped.len() < encoded.len(), "stripping added bytes");
    if let Ok(mut want) = Span::decode(encoded) {
        want.attributes.retain(|kv| !kv.key.starts_with(PREFIX));
        let got = Span::decode(stripped.as_slice()).expect("the stripped span decodes");
        assert_eq!(
            got, want,
            "stripping changed more than the prefixed attributes"
        );
    }
}

/// Analyses `trace` twice and checks the verdicts' invariants and determinism.
pub fn analyse(trace: &Trace, cfg: &AnalysisConfig) -> Vec<Verdict> {
    let verdicts = analyze_trace(trace, cfg, ANALYZED_AT);
    check_verdicts(trace, &verdicts);
    let again = analyze_trace(trace, cfg, ANALYZED_AT);
    assert_eq!(verdicts, again, "the analysis is not deterministic");
    verdicts
}

/// The invariants every verdict holds, whatever the spans.
pub fn check_verdicts(trace: &Trace, verdicts: &[Verdict]) {
    let ids: HashSet<String> = trace.spans.iter().map(|s| s.span_id.to_string()).collect();
    let trace_id = trace.trace_id.to_string();
    assert!(
        verdicts.len() <= trace.spans.len(),
        "more verdicts than spans"
    );
    let mut entries = HashSet::new();
    for v in verdicts {
        assert_eq!(v.trace_id, trace_id);
        assert!(ids.contains(&v.entry.span_id), "entry outside the trace");
        assert!(
            entries.insert(&v.entry.span_id),
            "two verdicts for one entry"
        );
        assert!(
            v.confidence.is_finite() && (0.0..=1.0).contains(&v.confidence),
            "confidence {} outside 0..=1",
            v.confidence
        );
        assert!(
            v.budget_ms.is_finite() && v.budget_ms >= 0.0,
            "budget {} ms",
            v.budget_ms
        );
        if let Some(b) = &v.blame {
            assert!(ids.contains(&b.span_id), "blame outside the trace");
            assert!(
                b.share.is_finite() && (0.0..=1.0).contains(&b.share),
                "blame share {} outside 0..=1",
                b.share
            );
            assert!(
                b.self_ms.is_finite() && b.self_ms >= 0.0,
                "blame self time {} ms",
                b.self_ms
            );
            // Both are rounded for display; allow for that.
            assert!(
                b.self_ms <= v.budget_ms + 0.01,
                "blame self time {} ms exceeds the budget {} ms",
                b.self_ms,
                v.budget_ms
            );
            assert!(b.attempts >= 1, "blame with no attempt");
        }
        if let Some(o) = &v.origin {
            assert!(ids.contains(&o.span_id), "origin outside the trace");
        }
        if let Some(id) = &v.fingerprint_id {
            assert_fingerprint_id(id);
            assert!(v.fingerprint.is_some(), "fingerprint id without text");
        }
        for link in &v.chain {
            assert!(ids.contains(&link.span_id), "chain link outside the trace");
        }
        // What the API would send.
        serde_json::to_string(v).expect("a verdict serialises");
    }
}

fn assert_fingerprint_id(id: &str) {
    assert!(
        id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "fingerprint id {id:?} is not 16 lowercase hex digits"
    );
}

const LANGUAGES: [Language; 6] = [
    Language::Python,
    Language::Go,
    Language::Ruby,
    Language::Jvm,
    Language::DotNet,
    Language::JavaScript,
];

/// Any text through format detection, every stack parser, the message template and the
/// fingerprint. The input is split at NUL bytes into stack trace, exception type, message
/// and span name, so the fuzzer controls each.
pub fn stack_fingerprint(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let stacktrace = parts.next().unwrap_or_default();
    let exception_type = parts.next().unwrap_or_default();
    let message = parts.next().unwrap_or_default();
    let span_name = parts.next().unwrap_or_default();

    if let Some(p) = stack::parse(stacktrace) {
        check_stack(&p);
        assert_eq!(
            stack::parse_as(stacktrace, p.language).as_ref(),
            Some(&p),
            "parse differs from parse_as of the detected language"
        );
    }
    for language in LANGUAGES {
        if let Some(p) = stack::parse_as(stacktrace, language) {
            check_stack(&p);
            assert_eq!(p.language, language);
        }
    }
    let template = message_template(message);
    assert_eq!(
        message_template(message),
        template,
        "template not deterministic"
    );

    let exc = ExceptionInfo {
        exception_type,
        message,
        stacktrace,
    };
    match fingerprint::fingerprint(&exc, span_name) {
        None => assert!(
            exception_type.trim().is_empty()
                && message.trim().is_empty()
                && stacktrace.trim().is_empty(),
            "an exception without a fingerprint"
        ),
        Some(fp) => {
            assert_fingerprint_id(&fp.id);
            assert_eq!(
                fingerprint::fingerprint(&exc, span_name),
                Some(fp),
                "fingerprint not deterministic"
            );
        }
    }
}

fn check_stack(p: &stack::ParsedStack) {
    assert!(p.frames.len() <= 512, "{} frames kept", p.frames.len());
    for f in &p.frames {
        assert!(
            !f.file.contains('/') && !f.file.contains('\\'),
            "frame file {:?} keeps a directory",
            f.file
        );
    }
}

/// An arbitrary span set, shaped so that trees and failing entries are likely.
#[derive(Debug, Arbitrary)]
struct AnalysisInput {
    trace: Trace,
    /// Map span and parent ids into 1..=16 so parents resolve (and collide, and cycle).
    small_ids: bool,
    /// Make the first span a SERVER span answering this HTTP status, which then counts
    /// as failing.
    entry_status: Option<i16>,
    /// Extra statuses that count as failing entries (`--error-status`).
    extra_error_statuses: Vec<i64>,
}

/// An arbitrary `Trace` through the analysis core: no panic, no hang, and the verdict
/// invariants of [`check_verdicts`].
pub fn analysis_core(data: &[u8]) {
    let Ok(input) = AnalysisInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut trace = input.trace;
    if input.small_ids {
        let small = |id: SpanId| SpanId([0, 0, 0, 0, 0, 0, 0, id.0[7] % 16 + 1]);
        for s in &mut trace.spans {
            s.span_id = small(s.span_id);
            s.parent_span_id = s.parent_span_id.map(small);
        }
    }
    let mut cfg = AnalysisConfig::default();
    cfg.error_statuses
        .extend(input.extra_error_statuses.iter().take(8));
    if let (Some(status), Some(first)) = (input.entry_status, trace.spans.first_mut()) {
        first.kind = SpanKind::Server;
        first.attributes.0.insert(
            0,
            (
                "http.response.status_code".into(),
                Value::Int(status.into()),
            ),
        );
        cfg.error_statuses.push(status.into());
    }
    analyse(&trace, &cfg);
}
