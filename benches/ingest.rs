//! Decode + convert + assemble, the CPU path of one Export request, in spans/s.
//!
//! `cargo bench --bench ingest`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use faultline::assembly::{Assembler, Completion};
use faultline::ingest::convert::{convert_request, materialize, EntryRule};
use faultline::ingest::http::{decode, Format};
use faultline::synth::{Generator, SynthConfig};
use faultline::telemetry::metrics::Metrics;
use prost::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let mut g = Generator::new(SynthConfig::default());
    let bodies: Vec<Vec<u8>> = (0..64).map(|_| g.next_request().encode_to_vec()).collect();
    let rule = EntryRule::default();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(100));

    group.bench_function("decode_100_spans", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % bodies.len();
            decode(&bodies[i], Format::Protobuf).unwrap()
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
        let mut n = 0u64;
        b.iter_batched(
            || {
                i += 1;
                // Every iteration brings fresh traces, as live traffic does.
                let mut req =
                    decode(&bodies[(i as usize) % bodies.len()], Format::Protobuf).unwrap();
                for s in req
                    .resource_spans
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_spans)
                    .flat_map(|s| &mut s.spans)
                {
                    s.trace_id[..8].copy_from_slice(&i.to_le_bytes());
                }
                req.encode_to_vec()
            },
            |body| {
                let req = decode(&body, Format::Protobuf).unwrap();
                let converted = convert_request(req, &rule);
                assembler.insert(converted.spans, 0).unwrap();
                n += 1;
                if n.is_multiple_of(1000) {
                    assembler.sweep(u64::MAX / 2);
                    while rx.try_recv().is_ok() {}
                }
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("materialize_100_spans", |b| {
        let req = decode(&bodies[0], Format::Protobuf).unwrap();
        let spans: Vec<_> = convert_request(req, &rule)
            .spans
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        b.iter(|| materialize(faultline::model::TraceId([1; 16]), &spans).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
