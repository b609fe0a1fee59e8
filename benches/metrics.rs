//! Scraping `/metrics` with 10,000 verdict series (issue 4 "Performance": under 100 ms on
//! one core while ingest runs). The registry holds 10,000 `faultline_errors_total` label
//! sets, each with a trace exemplar, plus 1,000 fingerprint series and 1,000 fingerprint
//! info series; we time both expositions, alone and while another thread keeps
//! recording verdicts into the same families as the analysis stage does.
//!
//! `taskset -c 0 cargo bench --bench metrics` (one core for the scrape and the recorder).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::analysis::cohort::Cohort;
use faultline::analysis::verdict::{BlameInfo, EntryInfo};
use faultline::analysis::{Classification, Verdict};
use faultline::telemetry::metrics::Metrics;
use faultline::telemetry::verdict_metrics::VerdictMetrics;
use prometheus_client::encoding::{prometheus_text, text};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERIES: usize = 10_000;

fn verdict(i: usize) -> Verdict {
    Verdict {
        trace_id: format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15 + 1),
        classification: if i.is_multiple_of(3) {
            Classification::DeterministicHandlerDefect
        } else {
            Classification::LateDependencyFailure
        },
        confidence: 0.9,
        budget_ms: 250.0,
        entry: EntryInfo {
            span_id: format!("{:016x}", i + 1),
            service: format!("service-{}", i % 20),
            name: format!("GET /api/v{}/resource{}", i % 5, i / 20),
            route: format!("/api/v{}/resource{}", i % 5, i / 20),
            status_code: 500,
            start_unix_nano: 0,
        },
        blame: Some(BlameInfo {
            span_id: format!("{:016x}", i + 2),
            service: "postgres".into(),
            name: "SELECT orders".into(),
            kind: "client".into(),
            share: (i % 10) as f64 / 10.0 + 0.05,
            self_ms: 200.0,
            is_dependency: true,
            attempts: 1,
        }),
        origin: None,
        fingerprint: Some(format!("TimeoutError|handler{}|<*>", i % 1000)),
        fingerprint_id: Some(format!("{:016x}", i % 1000)),
        cohort: Cohort {
            release: Some("2026.11.2".into()),
            ..Default::default()
        },
        evidence: vec![],
        analyzed_at: "2026-11-25T10:00:00Z".into(),
        analyzed_at_unix_nano: 1_795_000_000_000_000_000 + i as u64,
        exception: None,
        chain: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let metrics = Metrics {
        verdict_metrics: VerdictMetrics::new(SERIES),
        ..Default::default()
    };
    let verdicts: Vec<Verdict> = (0..SERIES).map(verdict).collect();
    for v in &verdicts {
        metrics.verdict_metrics.record(v);
    }
    let registry = metrics.registry();
    let mut probe = String::new();
    prometheus_text::encode(&mut probe, &registry).unwrap();
    let lines = probe.lines().filter(|l| !l.starts_with('#')).count();
    eprintln!("exposition: {lines} sample lines, {} bytes", probe.len());

    let mut group = c.benchmark_group("metrics_scrape");
    group.throughput(Throughput::Elements(SERIES as u64));
    group.bench_function("prometheus_text_10k_series", |b| {
        b.iter(|| {
            let mut body = String::with_capacity(probe.len());
            prometheus_text::encode(&mut body, &registry).unwrap();
            body
        })
    });
    group.bench_function("openmetrics_10k_series", |b| {
        b.iter(|| {
            let mut body = String::with_capacity(probe.len() * 2);
            text::encode(&mut body, &registry).unwrap();
            body
        })
    });
    // The analysis thread keeps recording (existing series: the hot path) during scrapes.
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = {
        let stop = Arc::clone(&stop);
        let m = metrics.verdict_metrics.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for v in verdicts.iter().step_by(97) {
                    m.record(v);
                    n += 1;
                }
            }
            n
        })
    };
    group.bench_function("openmetrics_10k_series_while_recording", |b| {
        b.iter(|| {
            let mut body = String::with_capacity(probe.len() * 2);
            text::encode(&mut body, &registry).unwrap();
            body
        })
    });
    stop.store(true, Ordering::Relaxed);
    let recorded = recorder.join().unwrap();
    eprintln!("verdicts recorded during the last benchmark: {recorded}");
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
