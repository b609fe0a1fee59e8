//! The forward queue's on-disk log (`--forward-queue-dir`, src/forward/wal.rs): what one
//! append costs on the ingest path. Each iteration appends one record and acknowledges the
//! previous one, the steady state of a forwarder keeping up, so that delivered segments
//! are deleted and the disk holds about one segment however long criterion runs. No
//! fsync is timed: `Wal::sync` runs periodically off the append path.
//!
//! `cargo bench --bench wal` (the temporary directory is on the default `TMPDIR`).
//!
//! Measured 2026-11-25 on the 2-vCPU development VM (ext4 on virtio, load average ~9 from
//! other tenants, so take these as lower bounds): 1 KiB 4.9 µs (~200k appends/s),
//! 64 KiB 72 µs (~870 MiB/s), 1 MiB 0.86 ms (~1.1 GiB/s) per append and ack.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faultline::forward::wal::{Wal, WalOptions};

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_and_ack");
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let (mut wal, _) = Wal::open(tmp.path(), WalOptions::default()).expect("open");
        let payload: Vec<u8> = (0..size).map(|i| (i * 31) as u8).collect();
        let mut previous = None;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| {
                let id = wal.append(p).expect("append");
                if let Some(previous) = previous.replace(id) {
                    wal.ack(previous).expect("ack");
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
