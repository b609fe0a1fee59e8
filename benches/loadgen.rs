//! `faultline-loadgen`: sends realistic OTLP/gRPC batches (100 spans a request, several
//! services, ~10 attributes a span, exception events with stack traces on a share of the
//! traces) with N requests in flight, and prints accepted spans/s and Export latency
//! p50/p99. Works against any OTLP/gRPC receiver (faultline, rotel-agent, a collector).
//!
//! Bounded by design: it stops after `--duration` or `--max-requests`, whichever first.
//!
//! ```text
//! faultline-loadgen --endpoint http://127.0.0.1:4317 --concurrency 64 --duration 10s
//! faultline-loadgen --endpoint http://127.0.0.1:4317 --rate 125000 --duration 10s
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use faultline::forward::client::RawCodec;
use faultline::synth::{Generator, SynthConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

#[derive(Parser, Debug)]
#[command(name = "faultline-loadgen", about = "OTLP/gRPC load generator")]
struct Args {
    /// OTLP/gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the requests are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many requests at the latest.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Target spans/s (open loop, paced); unset = as fast as the receiver answers.
    #[arg(long)]
    rate: Option<u64>,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    spans_per_request: usize,
    /// Share of traces failing with a 500 and an exception.
    #[arg(long, default_value_t = 0.1)]
    error_ratio: f64,
    /// Distinct route templates (loads the per-route metric series).
    #[arg(long, default_value_t = 1)]
    routes: usize,
    /// Distinct pre-encoded requests cycled through.
    #[arg(long, default_value_t = 2_000)]
    pool: usize,
    /// Warm-up excluded from the figures.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut generator = Generator::new(SynthConfig {
        spans_per_request: args.spans_per_request,
        error_ratio: args.error_ratio,
        routes: args.routes,
        ..Default::default()
    });
    // A pool of distinct requests, encoded once: the generator's own cost per request is a
    // memcpy and a few id patches, so it does not limit what a receiver is shown to take.
    let pool: Arc<Vec<Encoded>> = Arc::new(
        (0..args.pool.max(1))
            .map(|_| Encoded::new(&generator.next_request()))
            .collect(),
    );
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(args.endpoint.clone())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(tonic::client::Grpc::new(channel));
    }
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let stop_at = started + args.warmup + args.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let per_task_interval = args.rate.map(|r| {
        let requests_per_sec = (r as f64 / args.spans_per_request as f64).max(0.001);
        Duration::from_secs_f64(args.concurrency as f64 / requests_per_sec)
    });
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let mut client = clients[t % clients.len()].clone();
        let pool = Arc::clone(&pool);
        let issued = Arc::clone(&issued);
        let max_requests = args.max_requests;
        let spans = args.spans_per_request as u64;
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let (mut ok_spans, mut failed) = (0u64, 0u64);
            let mut next_send = Instant::now()
                + per_task_interval
                    .map(|i| i.mul_f64(t as f64 / 64.0))
                    .unwrap_or_default();
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests || Instant::now() >= stop_at {
                    break;
                }
                if let Some(interval) = per_task_interval {
                    tokio::time::sleep_until(next_send.into()).await;
                    next_send += interval;
                }
                // Fresh trace ids on every pass over the pool: each request brings new traces.
                let body = pool[(n as usize) % pool.len()].with_pass(n / pool.len() as u64);
                let sent = Instant::now();
                let result = export_raw(&mut client, body).await;
                let done = Instant::now();
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(resp) => {
                        let rejected = resp
                            .partial_success
                            .map(|p| p.rejected_spans as u64)
                            .unwrap_or(0);
                        ok_spans += spans - rejected;
                        latencies_us.push((done - sent).as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(_) => failed += 1,
                }
            }
            (latencies_us, ok_spans, failed)
        }));
    }
    let mut latencies = Vec::new();
    let (mut ok_spans, mut failed) = (0u64, 0u64);
    for t in tasks {
        let (l, s, f) = t.await?;
        latencies.extend(l);
        ok_spans += s;
        failed += f;
    }
    let measured = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(0.001);
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "accepted_spans_per_sec={:.0} requests_ok={} requests_failed={} p50_ms={:.2} p99_ms={:.2} seconds={:.1}",
        ok_spans as f64 / measured,
        latencies.len(),
        failed,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        measured
    );
    Ok(())
}

/// One request encoded once, with where its trace ids sit so each pass can vary them.
struct Encoded {
    bytes: Vec<u8>,
    trace_id_offsets: Vec<usize>,
}

impl Encoded {
    fn new(req: &ExportTraceServiceRequest) -> Self {
        let bytes = req.encode_to_vec();
        let mut trace_id_offsets = Vec::new();
        let ids: std::collections::HashSet<&[u8]> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.trace_id.as_slice())
            .collect();
        // A trace id is a 16-byte `bytes` field 1 of Span: tag 0x0a, length 0x10.
        for i in 0..bytes.len().saturating_sub(18) {
            if bytes[i] == 0x0a && bytes[i + 1] == 0x10 && ids.contains(&bytes[i + 2..i + 18]) {
                trace_id_offsets.push(i + 2);
            }
        }
        Encoded {
            bytes,
            trace_id_offsets,
        }
    }

    fn with_pass(&self, pass: u64) -> bytes::Bytes {
        let mut b = self.bytes.clone();
        for &o in &self.trace_id_offsets {
            for (x, p) in b[o..o + 8].iter_mut().zip(pass.to_le_bytes()) {
                *x ^= p;
            }
        }
        b.into()
    }
}

/// Sends an already encoded Export request.
async fn export_raw(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    body: bytes::Bytes,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    client
        .unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}
