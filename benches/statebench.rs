//! `faultline-statebench`: the state writer's throughput into a state database. Writes
//! `--verdicts` verdicts in batches of `--batch` (the writer's batch size) through the
//! same `Backend::write` the service uses, spread over `--groups` fingerprints and a few
//! tenants, releases and regions, and prints verdicts/s and the batch commit latency
//! (p50/p99/max).
//!
//! ```text
//! faultline-statebench --state /tmp/bench.db
//! faultline-statebench --state postgres://postgres@127.0.0.1:5432/bench --writers 3
//! ```
//!
//! With `--writers N`, N backends (N "replicas") write concurrently to the same database,
//! sharing the fingerprints, as a fleet does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use faultline::analysis::Verdict;
use faultline::config::{parse_state, StateLocation};
use faultline::store::backend::{Backend, Row};
use faultline::store::postgres::PostgresBackend;
use faultline::store::sqlite::SqliteBackend;

#[derive(Parser, Debug)]
#[command(
    name = "faultline-statebench",
    about = "State database write benchmark"
)]
struct Args {
    /// A SQLite file or a postgres:// URL (as --state).
    #[arg(long)]
    state: String,
    /// Verdicts written per writer.
    #[arg(long, default_value_t = 100_000)]
    verdicts: usize,
    /// Verdicts per transaction.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Distinct fingerprints.
    #[arg(long, default_value_t = 200)]
    groups: usize,
    /// Concurrent writers (replicas) on the same database.
    #[arg(long, default_value_t = 1)]
    writers: usize,
}

fn open(spec: &str) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match parse_state("state", spec)? {
        StateLocation::Sqlite(p) => Arc::new(SqliteBackend::open(&p)?),
        StateLocation::Postgres(url) => Arc::new(PostgresBackend::connect(&url.0, None)?),
        other => anyhow::bail!("not a database: {other:?}"),
    })
}

/// A realistic verdict (a late dependency failure with cohort and evidence).
fn verdict(writer: usize, i: usize, groups: usize, at: u64) -> Verdict {
    let g = i % groups;
    let region = ["eu-west-1", "us-east-1"][i % 2];
    let json = serde_json::json!({
        "trace_id": format!("{:08x}{:024x}", writer, i),
        "classification": "late_dependency_failure",
        "confidence": 0.82,
        "budget_ms": 50.0 + (i % 400) as f64,
        "entry": {"span_id": format!("{:016x}", i), "service": "checkout", "name": "POST /checkout",
                  "route": format!("/checkout/{}", g % 7), "status_code": 500},
        "blame": {"span_id": format!("{:016x}", i + 1), "service": "checkout", "name": "POST",
                  "kind": "client", "share": 0.91, "self_ms": 48.0, "is_dependency": true},
        "origin": {"span_id": format!("{:016x}", i + 1), "service": "payments", "name": "POST /charge",
                   "kind": "server", "error": "TimeoutError: HTTPConnectionPool(host='payments', port=8080): Read timed out. (read timeout=0.05)"},
        "fingerprint": format!("TimeoutError at payments.charge:{g} (checkout POST /checkout)"),
        "fingerprint_id": format!("{:016x}", g),
        "cohort": {"release": format!("2026.12.{}", i % 3), "environment": "prod",
                   "region": region, "tenant": format!("tenant-{}", i % 11),
                   "feature_flags": ["new-checkout=on"]},
        "evidence": ["The blamed call to payments took 91% of the request's 52 ms budget.",
                     "payments answered after the client timed out (read timeout=0.05)."],
        "analyzed_at": "2026-12-07T20:00:00Z",
    });
    let mut v: Verdict = serde_json::from_value(json).expect("verdict template");
    v.analyzed_at_unix_nano = at + i as u64;
    v
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let backends: Vec<Arc<dyn Backend>> = (0..args.writers)
        .map(|_| open(&args.state))
        .collect::<anyhow::Result<_>>()?;
    let began = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = backends
            .iter()
            .enumerate()
            .map(|(w, db)| {
                let args = &args;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut i = 0;
                    while i < args.verdicts {
                        let n = args.batch.min(args.verdicts - i);
                        let rows: Vec<Row> = (i..i + n)
                            .map(|k| Row {
                                verdict: Arc::new(verdict(w, k, args.groups, start_at)),
                                ordinal: 0,
                            })
                            .collect();
                        let t = Instant::now();
                        db.write(&rows).expect("write");
                        lat.push(t.elapsed());
                        i += n;
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect()
    });
    let secs = began.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    let total = args.verdicts * args.writers;
    let counted: u64 = backends[0]
        .groups(None, args.groups)?
        .iter()
        .map(|g| g.count)
        .sum();
    println!(
        "state={} writers={} verdicts={} batch={} verdicts_per_sec={:.0} batch_p50_ms={:.1} batch_p99_ms={:.1} batch_max_ms={:.1} group_counts_sum={}",
        backends[0].kind(),
        args.writers,
        total,
        args.batch,
        total as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        counted
    );
    Ok(())
}
