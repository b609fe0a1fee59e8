//! The analysis stage on realistic traces (20 and 50 spans, several services, 10% failing
//! with exception events and Python stacks): per span over the whole mix (the stage's
//! real workload: healthy traces are only counted, failing ones are materialised and
//! analysed), and per failing trace for the core alone.
//!
//! `cargo bench --bench analysis`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::analysis::{analyze_trace, AnalysisConfig};
use faultline::assembly::BufferedSpan;
use faultline::ingest::convert::{convert_request, materialize, EntryRule};
use faultline::ingest::http::{decode, Format};
use faultline::model::{Trace, TraceId};
use faultline::synth::{Generator, SynthConfig};
use std::collections::HashMap;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whole traces as the assembler hands them over: (id, spans, has entry candidate).
fn traces(spans_per_trace: usize, n_requests: usize) -> Vec<(TraceId, Vec<BufferedSpan>, bool)> {
    let mut g = Generator::new(SynthConfig {
        spans_per_request: spans_per_trace * 5,
        spans_per_trace,
        error_ratio: 0.1,
        seed: 7,
        routes: 1,
    });
    let mut by_trace: HashMap<TraceId, Vec<BufferedSpan>> = HashMap::new();
    for _ in 0..n_requests {
        let body = bytes::Bytes::from(prost::Message::encode_to_vec(&g.next_request()));
        let req = decode(body, Format::Protobuf).unwrap();
        for (id, s) in convert_request(req, &EntryRule::default()).unwrap().spans {
            by_trace.entry(id).or_default().push(s);
        }
    }
    by_trace
        .into_iter()
        .map(|(id, spans)| {
            let candidate = spans.iter().any(|s| s.entry_candidate);
            (id, spans, candidate)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let cfg = AnalysisConfig::default();
    let mut group = c.benchmark_group("analysis");
    for spans_per_trace in [20usize, 50] {
        let mix = traces(spans_per_trace, 200);
        let total_spans: usize = mix.iter().map(|t| t.1.len()).sum();
        let failing: Vec<Trace> = mix
            .iter()
            .filter(|t| t.2)
            .map(|(id, spans, _)| materialize(*id, spans).trace)
            .collect();
        assert!(!failing.is_empty());
        assert!(failing
            .iter()
            .all(|t| !analyze_trace(t, &cfg, 0).is_empty()));

        group.throughput(Throughput::Elements(total_spans as u64));
        group.bench_function(
            format!("stage_mix_{spans_per_trace}_spans_per_trace"),
            |b| {
                b.iter(|| {
                    let mut verdicts = 0;
                    for (id, spans, candidate) in &mix {
                        if *candidate {
                            let t = materialize(*id, spans).trace;
                            verdicts += analyze_trace(&t, &cfg, 0).len();
                        }
                    }
                    verdicts
                })
            },
        );

        group.throughput(Throughput::Elements(failing.len() as u64));
        group.bench_function(
            format!("core_per_failing_trace_{spans_per_trace}_spans"),
            |b| {
                b.iter(|| {
                    failing
                        .iter()
                        .map(|t| analyze_trace(t, &cfg, 0).len())
                        .sum::<usize>()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
