//! Decode + convert + assemble, the CPU path of one Export request, in spans/s.
//!
//! `cargo bench --bench ingest`
//!
//! `decode_100_spans/full_prost` decodes into the full prost tree (the path ingest used
//! before the lite decoder, and what a generated tonic server does); `decode_100_spans/lite`
//! is what ingest does now.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use faultline::assembly::{Assembler, Completion};
use faultline::ingest::convert::{convert_request, materialize, EntryRule};
use faultline::ingest::http::{decode, Format};
use faultline::synth::{Generator, SynthConfig};
use faultline::telemetry::metrics::Metrics;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let mut g = Generator::new(SynthConfig::default());
    let requests: Vec<ExportTraceServiceRequest> = (0..64).map(|_| g.next_request()).collect();
    let bodies: Vec<Bytes> = requests
        .iter()
        .map(|r| Bytes::from(r.encode_to_vec()))
        .collect();
    let rule = EntryRule::default();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(100));

    group.bench_function("decode_100_spans/full_prost", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % bodies.len();
            ExportTraceServiceRequest::decode(bodies[i].clone()).unwrap()
        })
    });

    group.bench_function("decode_100_spans/lite", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % bodies.len();
            decode(bodies[i].clone(), Format::Protobuf).unwrap()
        })
    });

    group.bench_function("decode_convert_assemble_100_spans", |b| {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 20);
        let assembler = Arc::new(Assembler::new(
            Completion {
                idle_ms: 10_000,
                max_age_ms: 60_000,
            },
            usize::MAX / 2,
            60_000,
            tx,
            Metrics::default(),
        ));
        let mut i = 0u64;
        let mut inserted = 0u64;
        b.iter_batched(
            || {
                i += 1;
                // Every iteration brings fresh traces, as live traffic does.
                let mut req = requests[(i as usize) % requests.len()].clone();
                for s in req
                    .resource_spans
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_spans)
                    .flat_map(|s| &mut s.spans)
                {
                    s.trace_id[..8].copy_from_slice(&i.to_le_bytes());
                }
                Bytes::from(req.encode_to_vec())
            },
            |body| {
                let req = decode(body, Format::Protobuf).unwrap();
                let converted = convert_request(req, &rule).unwrap();
                assembler.insert(converted.spans, 0).unwrap();
                inserted += 1;
                if inserted.is_multiple_of(1000) {
                    assembler.sweep(u64::MAX / 2);
                    while rx.try_recv().is_ok() {}
                }
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("materialize_100_spans", |b| {
        let req = decode(bodies[0].clone(), Format::Protobuf).unwrap();
        let spans: Vec<_> = convert_request(req, &rule)
            .unwrap()
            .spans
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        b.iter(|| materialize(faultline::model::TraceId([1; 16]), &spans))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
