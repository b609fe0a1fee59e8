//! The PostgreSQL state database (`faultline::store::postgres`) against a real
//! PostgreSQL 15 ([`crate::pg`]), through the `Backend` interface: verdicts and groups
//! read back as written, re-sends count once, three replicas upserting the same groups
//! at once lose no count, every list filter, retention, the upgrade of a schema-1
//! database, lost connections opened again, TLS, and the errors of an unreachable server
//! and a wrong URL. Each test has a database (or a server) of its own.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use faultline::analysis::{analyze_trace, AnalysisConfig, Classification, Verdict};
use faultline::model::{
    Attributes, Event, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
};
use faultline::store::backend::{Backend, BackendError, Retention, Row};
use faultline::store::fingerprints::{group_deltas, FingerprintIndex};
use faultline::store::postgres::PostgresBackend;
use faultline::store::VerdictQuery;

use crate::pg;

mod schema {
    refinery::embed_migrations!("migrations/postgres");
}

/// The verdict of a one-span failing request (`POST /checkout` of `orders`, a Python
/// KeyError raised in `function`), trace number `seq`, analysed at `at`.
fn failing(seq: u32, function: &str, release: &str, tenant: &str, at: u64) -> Verdict {
    let resource = Arc::new(Resource {
        attributes: [("service.name", "orders"), ("service.version", release)]
            .into_iter()
            .collect(),
    });
    let stack = format!(
        "Traceback (most recent call last):\n  File \"/srv/app/orders.py\", line 10, in {function}\n    total = cart['sku']\nKeyError: 'sku'\n"
    );
    let trace_id = trace_id(seq);
    let span = Span {
        trace_id,
        span_id: SpanId([1; 8]),
        parent_span_id: None,
        name: "POST /checkout".into(),
        kind: SpanKind::Server,
        start_unix_nano: 1_000_000_000,
        end_unix_nano: 1_050_000_000,
        status_code: StatusCode::Error,
        status_message: String::new(),
        attributes: [
            ("http.route", Value::from("/checkout")),
            ("http.response.status_code", Value::Int(500)),
            ("app.tenant", Value::from(tenant)),
        ]
        .into_iter()
        .collect(),
        events: vec![Event {
            name: "exception".into(),
            time_unix_nano: 1_040_000_000,
            attributes: [
                ("exception.type", "KeyError"),
                ("exception.message", "'sku'"),
                ("exception.stacktrace", stack.as_str()),
            ]
            .into_iter()
            .collect::<Attributes>(),
        }],
        resource,
        scope_name: "flask".into(),
    };
    let mut verdicts = analyze_trace(
        &Trace {
            trace_id,
            spans: vec![span],
        },
        &AnalysisConfig::default(),
        at,
    );
    assert_eq!(verdicts.len(), 1, "one failing entry");
    let v = verdicts.remove(0);
    assert!(v.fingerprint_id.is_some(), "the KeyError is fingerprinted");
    v
}

fn trace_id(seq: u32) -> TraceId {
    let mut id = [0xab; 16];
    id[12..].copy_from_slice(&seq.to_be_bytes());
    TraceId(id)
}

/// `v` as another occurrence: trace `seq`, analysed at `at`, in `release` for `tenant`.
fn again(v: &Verdict, seq: u32, at: u64, release: &str, tenant: &str) -> Verdict {
    let mut v = v.clone();
    v.trace_id = trace_id(seq).to_string();
    v.analyzed_at_unix_nano = at;
    v.cohort.release = Some(release.to_string());
    v.cohort.tenant = Some(tenant.to_string());
    v
}

fn rows(verdicts: &[Verdict]) -> Vec<Row> {
    verdicts
        .iter()
        .map(|v| Row {
            verdict: Arc::new(v.clone()),
            ordinal: 0,
        })
        .collect()
}

fn all(limit: usize) -> VerdictQuery {
    VerdictQuery {
        limit,
        ..Default::default()
    }
}

fn connect(url: &str) -> PostgresBackend {
    PostgresBackend::connect(url, None).unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

#[test]
fn a_verdict_and_its_group_read_back_as_the_api_serves_them() {
    let url = pg::database("round_trip");
    let db = connect(&url);
    assert_eq!(db.kind(), "postgres");
    assert!(db.shared());
    assert_eq!(
        db.location(),
        format!("127.0.0.1:{}/t_round_trip", pg::shared().port())
    );

    let first = failing(1, "checkout", "r1", "legacy", 1_000);
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(db.write(&rows(std::slice::from_ref(&first))).unwrap(), 1);
    let back = db.verdict(&first.trace_id).unwrap().expect("stored");
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    assert_eq!(back.analyzed_at_unix_nano, 1_000);
    assert_eq!(back.entry.start_unix_nano, first.entry.start_unix_nano);
    assert!(db.verdict(&"0".repeat(32)).unwrap().is_none());

    // A trace with two entries answers with its outermost (ordinal 0), whatever the order
    // of the rows in the batch.
    let outer = failing(2, "checkout", "r2", "acme", 2_000);
    let mut inner = outer.clone();
    inner.entry.span_id = "00000000000000ff".into();
    inner.entry.name = "inner".into();
    db.write(&[
        Row {
            verdict: Arc::new(inner),
            ordinal: 1,
        },
        Row {
            verdict: Arc::new(outer.clone()),
            ordinal: 0,
        },
    ])
    .unwrap();
    let back = db.verdict(&outer.trace_id).unwrap().unwrap();
    assert_eq!(back.entry.name, "POST /checkout");

    // The group equals what the in-memory index makes of the same verdicts, written out
    // of time order over two batches.
    let later = [
        again(&first, 3, 4_000, "r2", "acme"),
        again(&first, 4, 3_000, "r2", "acme"),
    ];
    db.write(&rows(&later)).unwrap();
    let mut memory = FingerprintIndex::default();
    let mut everything = vec![first.clone(), outer.clone(), outer.clone()];
    everything[2].entry.span_id = "00000000000000ff".into();
    everything.extend(later.iter().cloned());
    everything.sort_by_key(|v| v.analyzed_at_unix_nano);
    for v in everything {
        memory.record(v);
    }
    let id = first.fingerprint_id.clone().unwrap();
    let from_db = db.group(&id).unwrap().expect("group");
    let from_memory = memory.summary_of(&id).unwrap();
    assert_eq!(from_db.count, 5);
    assert_eq!(from_db.first_release.as_deref(), Some("r1"));
    assert_eq!(from_db.fingerprint, from_memory.fingerprint);
    assert_eq!(from_db.classification, from_memory.classification);
    assert_eq!(from_db.first_seen, from_memory.first_seen);
    assert_eq!(from_db.last_seen, from_memory.last_seen);
    assert_eq!(from_db.releases, from_memory.releases);
    assert_eq!(from_db.services, from_memory.services);
    assert_eq!(from_db.routes, from_memory.routes);
    assert_eq!(from_db.top_cohort, from_memory.top_cohort);
    assert_eq!(from_db.duration, from_memory.duration);
    // Newest first, one per trace.
    let examples: Vec<String> = [3u32, 4, 2, 1]
        .iter()
        .map(|s| trace_id(*s).to_string())
        .collect();
    assert_eq!(from_db.example_trace_ids, examples);
    assert!(db.group("0123456789abcdef").unwrap().is_none());

    // At start-up, the groups come back with their samples.
    let loaded = db.load_groups(10).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].fingerprint_id, id);
    assert_eq!(loaded[0].record.count, 5);
    assert_eq!(loaded[0].durations_ms.len(), 5);
    assert_eq!(loaded[0].examples, examples);
}

#[test]
fn a_resent_verdict_is_not_counted_twice() {
    let db = connect(&pg::database("resent"));
    let v = failing(1, "checkout", "r1", "acme", 1_000);
    assert_eq!(db.write(&rows(std::slice::from_ref(&v))).unwrap(), 1);
    assert_eq!(db.write(&rows(std::slice::from_ref(&v))).unwrap(), 0);
    // And repeated within one batch, beside a new one.
    let w = again(&v, 2, 2_000, "r1", "acme");
    assert_eq!(db.write(&rows(&[w.clone(), w.clone(), v])).unwrap(), 1);
    let groups = db.groups(None, 10).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 2);
    assert_eq!(groups[0].top_cohort.tenant[0].count, 2);
    assert_eq!(db.verdicts(&all(10)).unwrap().len(), 2);
}

#[test]
fn three_replicas_upserting_the_same_groups_at_once_lose_no_count() {
    const REPLICAS: usize = 3;
    const BATCHES: u32 = 20;
    const PER_BATCH: u32 = 60;
    let url = pg::database("replicas");
    let replicas: Vec<Arc<PostgresBackend>> =
        (0..REPLICAS).map(|_| Arc::new(connect(&url))).collect();
    let bases: Vec<Verdict> = ["checkout", "pay", "ship", "refund"]
        .iter()
        .enumerate()
        .map(|(i, f)| failing(i as u32, f, "r0", "acme", 1))
        .collect();
    let total = REPLICAS as u32 * BATCHES * PER_BATCH;
    // Occurrence k: group k % 4, at a time scattered over the run (so the earliest of a
    // group is in any replica's any batch), in the release named after its time.
    let occurrence = |k: u32| {
        let at = u64::from((k * 7_919) % total + 1) * 1_000;
        let tenant = ["acme", "globex", "initech"][(k % 3) as usize];
        again(
            &bases[(k % 4) as usize],
            1_000 + k,
            at,
            &format!("r{at}"),
            tenant,
        )
    };
    let everything: Vec<Verdict> = (0..total).map(occurrence).collect();
    let barrier = Arc::new(Barrier::new(REPLICAS));
    let threads: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(r, db)| {
            let db = Arc::clone(db);
            let barrier = Arc::clone(&barrier);
            let everything = everything.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut new = 0;
                for b in 0..BATCHES {
                    // Replica r's occurrences interleave with the others' (k % 3 == r), and
                    // every batch also re-sends a few of the next replica's.
                    let mut batch: Vec<Verdict> = (0..PER_BATCH)
                        .map(|i| (b * PER_BATCH + i) * REPLICAS as u32 + r as u32)
                        .map(|k| everything[k as usize].clone())
                        .collect();
                    batch.extend(
                        (0..5)
                            .map(|i| {
                                (b * PER_BATCH + i) * REPLICAS as u32 + ((r + 1) % REPLICAS) as u32
                            })
                            .map(|k| everything[k as usize].clone()),
                    );
                    new += loop {
                        // A deadlock or serialization failure is a retry, as in the writer.
                        match db.write(&rows(&batch)) {
                            Ok(n) => break n,
                            Err(BackendError::Unavailable(e)) => eprintln!("retrying: {e}"),
                            Err(e) => panic!("replica {r}: {e}"),
                        }
                    };
                }
                new
            })
        })
        .collect();
    let new: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(new, total as usize, "each verdict is new exactly once");

    let expected = group_deltas(&everything);
    let reader = &replicas[0];
    let groups = reader.groups(None, 10).unwrap();
    assert_eq!(groups.len(), 4);
    for g in &groups {
        let e = &expected[&g.fingerprint_id];
        assert_eq!(g.count, e.count, "{}", g.fingerprint_id);
        let loaded = reader
            .load_groups(10)
            .unwrap()
            .into_iter()
            .find(|l| l.fingerprint_id == g.fingerprint_id)
            .unwrap();
        assert_eq!(loaded.record.first_seen_unix_nano, e.first_seen_unix_nano);
        assert_eq!(loaded.record.last_seen_unix_nano, e.last_seen_unix_nano);
        assert_eq!(loaded.record.first_release, e.first_release);
        assert_eq!(loaded.record.fingerprint, e.fingerprint);
        let mut values = loaded.record.values.clone();
        values.sort();
        assert_eq!(values, e.values, "{}", g.fingerprint_id);
    }
    assert_eq!(
        groups.iter().map(|g| g.count).sum::<u64>(),
        u64::from(total)
    );
    assert_eq!(
        reader.verdicts(&all(100_000)).unwrap().len(),
        total as usize
    );
}

#[test]
fn replicas_starting_together_on_a_fresh_database_migrate_it_once() {
    let url = pg::database("migrate_together");
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                PostgresBackend::connect(&url, None).map(|db| db.schema_version())
            })
        })
        .collect();
    for t in threads {
        let version = t.join().unwrap().expect("connect").expect("version");
        assert_eq!(version, 2);
    }
    let mut c = pg::shared().client("t_migrate_together");
    let applied: i64 = c
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, 2);
}

#[test]
fn each_filter_narrows_the_list_newest_first() {
    let db = connect(&pg::database("filters"));
    let a = failing(1, "checkout", "r1", "a", 100);
    let b = again(&a, 2, 200, "r1", "b");
    let mut c = failing(3, "pay", "r1", "a", 300);
    c.classification = Classification::LateDependencyFailure;
    c.entry.route = "/pay".into();
    c.entry.service = "billing".into();
    c.origin.as_mut().unwrap().service = "payments".into();
    // Two made at the same time: the larger trace id first.
    let d = again(&a, 5, 400, "r1", "a");
    let e = again(&a, 4, 400, "r1", "a");
    db.write(&rows(&[a.clone(), b, c.clone()])).unwrap();
    db.write(&rows(&[e, d])).unwrap();
    let traces = |f: &dyn Fn(&mut VerdictQuery)| -> Vec<u32> {
        let mut q = all(10);
        f(&mut q);
        db.verdicts(&q)
            .unwrap()
            .iter()
            .map(|v| {
                let id = TraceId::from_hex(&v.trace_id).unwrap();
                u32::from_be_bytes(id.0[12..].try_into().unwrap())
            })
            .collect()
    };
    assert_eq!(traces(&|_| {}), vec![5, 4, 3, 2, 1], "newest first");
    assert_eq!(
        traces(&|q| q.service = Some("orders".into())),
        vec![5, 4, 2, 1]
    );
    assert_eq!(traces(&|q| q.service = Some("billing".into())), vec![3]);
    assert_eq!(traces(&|q| q.route = Some("/pay".into())), vec![3]);
    assert_eq!(
        traces(&|q| q.route = Some("/cart".into())),
        Vec::<u32>::new()
    );
    assert_eq!(
        traces(&|q| q.origin_service = Some("payments".into())),
        vec![3]
    );
    assert_eq!(
        traces(&|q| q.origin_service = Some("orders".into())),
        vec![5, 4, 2, 1]
    );
    assert_eq!(
        traces(&|q| q.classification = Some(Classification::LateDependencyFailure)),
        vec![3]
    );
    assert_eq!(
        traces(&|q| q.classification = Some(Classification::Inconclusive)),
        Vec::<u32>::new()
    );
    let id = a.fingerprint_id.clone().unwrap();
    let text = a.fingerprint.clone().unwrap();
    assert_eq!(
        traces(&|q| q.fingerprint = Some(id.clone())),
        vec![5, 4, 2, 1]
    );
    assert_eq!(
        traces(&|q| q.fingerprint = Some(text.clone())),
        vec![5, 4, 2, 1]
    );
    assert_eq!(
        traces(&|q| q.fingerprint = c.fingerprint_id.clone()),
        vec![3]
    );
    assert_eq!(
        traces(&|q| q.fingerprint = Some("nope".into())),
        Vec::<u32>::new()
    );
    // A value that would break a pasted string is only a value.
    assert_eq!(
        traces(&|q| q.service = Some("x' OR '1'='1".into())),
        Vec::<u32>::new()
    );
    assert_eq!(traces(&|q| q.since_unix_nano = Some(300)), vec![5, 4, 3]);
    assert_eq!(traces(&|q| q.until_unix_nano = Some(300)), vec![2, 1]);
    assert_eq!(
        traces(&|q| {
            q.since_unix_nano = Some(200);
            q.until_unix_nano = Some(400);
            q.service = Some("orders".into());
        }),
        vec![2]
    );
    assert_eq!(traces(&|q| q.limit = 2), vec![5, 4]);
    assert_eq!(traces(&|q| q.limit = 0), Vec::<u32>::new());

    // Groups: most frequent first, and by service.
    let groups = db.groups(None, 10).unwrap();
    assert_eq!(
        groups.iter().map(|g| g.count).collect::<Vec<_>>(),
        vec![4, 1]
    );
    assert_eq!(db.groups(None, 1).unwrap().len(), 1);
    let billing = db.groups(Some("billing"), 10).unwrap();
    assert_eq!(billing.len(), 1);
    assert_eq!(billing[0].fingerprint_id, c.fingerprint_id.clone().unwrap());
    assert!(db.groups(Some("nobody"), 10).unwrap().is_empty());
}

#[test]
fn retention_deletes_by_age_then_by_count_and_forgets_the_stalest_groups() {
    let url = pg::database("retention");
    let db = connect(&url);
    // Three groups, last seen at 200, 400 and 600.
    let bases = [
        failing(0, "checkout", "r1", "a", 1),
        failing(0, "pay", "r1", "a", 1),
        failing(0, "ship", "r1", "a", 1),
    ];
    let written: Vec<Verdict> = (1..=6u32)
        .map(|t| {
            again(
                &bases[((t - 1) / 2) as usize],
                t,
                u64::from(t) * 100,
                "r1",
                "a",
            )
        })
        .collect();
    db.write(&rows(&written)).unwrap();
    let keep_all = Retention {
        cutoff_unix_nano: 250,
        max_verdicts: 100,
        max_groups: 100,
        batch: 1,
    };
    assert_eq!(
        db.prune(&keep_all).unwrap(),
        2,
        "t=100 and t=200 are too old"
    );
    let by_count = Retention {
        max_verdicts: 2,
        batch: 3,
        ..keep_all
    };
    assert_eq!(db.prune(&by_count).unwrap(), 2);
    let left: Vec<u64> = db
        .verdicts(&all(10))
        .unwrap()
        .iter()
        .map(|v| v.analyzed_at_unix_nano)
        .collect();
    assert_eq!(left, vec![600, 500], "the newest kept");
    assert_eq!(db.prune(&by_count).unwrap(), 0, "nothing more to delete");
    assert_eq!(
        db.groups(None, 10)
            .unwrap()
            .iter()
            .map(|g| g.count)
            .sum::<u64>(),
        6,
        "history outlives verdicts"
    );

    // Two made at the same time beyond the limit: exactly the limit is kept.
    db.write(&rows(&[
        again(&bases[2], 7, 700, "r1", "a"),
        again(&bases[2], 8, 700, "r1", "a"),
    ]))
    .unwrap();
    let one = Retention {
        max_verdicts: 1,
        ..by_count
    };
    assert_eq!(db.prune(&one).unwrap(), 3);
    let left = db.verdicts(&all(10)).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].trace_id, trace_id(8).to_string());

    let one_group = Retention {
        max_groups: 1,
        batch: 1,
        ..one
    };
    db.prune(&one_group).unwrap();
    let groups = db.groups(None, 10).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        groups[0].fingerprint_id,
        bases[2].fingerprint_id.clone().unwrap(),
        "the most recently seen is kept"
    );
    let mut c = pg::shared().client("t_retention");
    let orphans: i64 = c
        .query_one(
            "SELECT count(*) FROM fingerprint_values v WHERE NOT EXISTS \
             (SELECT 1 FROM fingerprints f WHERE f.fingerprint_id = v.fingerprint_id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "a forgotten group's values go with it");
    let no_groups = Retention {
        max_groups: 0,
        ..one_group
    };
    db.prune(&no_groups).unwrap();
    assert!(db.groups(None, 10).unwrap().is_empty());
}

#[test]
fn a_schema_1_database_is_upgraded_and_its_rows_gain_their_origin_service() {
    let url = pg::database("schema_1");
    let v = failing(7, "checkout", "r1", "a", 500);
    {
        let mut c = pg::shared().client("t_schema_1");
        schema::migrations::runner()
            .set_target(refinery::Target::Version(1))
            .run(&mut c)
            .unwrap();
        let columns: i64 = c
            .query_one(
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_name = 'verdicts' AND column_name = 'origin_service'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(columns, 0, "schema 1 has no origin_service column");
        c.execute(
            "INSERT INTO verdicts (trace_id, entry_span_id, ordinal, analyzed_at, entry_start, \
             service, route, classification, fingerprint_id, budget_ms, body) \
             VALUES ($1, $2, 0, 500, 0, 'orders', '/checkout', $3, $4, 50.0, $5)",
            &[
                &v.trace_id,
                &v.entry.span_id,
                &v.classification.as_str(),
                &v.fingerprint_id,
                &serde_json::to_string(&v).unwrap(),
            ],
        )
        .unwrap();
    }
    let db = connect(&url);
    assert_eq!(db.schema_version().unwrap(), 2);
    let by_origin = db
        .verdicts(&VerdictQuery {
            origin_service: Some("orders".into()),
            ..all(10)
        })
        .unwrap();
    assert_eq!(
        by_origin.len(),
        1,
        "the schema-1 row got its origin_service"
    );
    assert_eq!(by_origin[0].trace_id, v.trace_id);
    assert!(db
        .verdicts(&VerdictQuery {
            origin_service: Some("billing".into()),
            ..all(10)
        })
        .unwrap()
        .is_empty());
    // Connecting again migrates nothing.
    drop(db);
    assert_eq!(connect(&url).schema_version().unwrap(), 2);

    // A database a newer faultline migrated further is refused, not run on.
    pg::shared()
        .client("t_schema_1")
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (3, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            &[],
        )
        .unwrap();
    let err = PostgresBackend::connect(&url, None).err().expect("refused");
    assert!(matches!(err, BackendError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("schema migration failed"), "{err}");
    assert!(err.to_string().contains("newer faultline"), "{err}");
}

#[test]
fn a_lost_connection_is_opened_again_on_next_use() {
    let url = pg::database("reconnect");
    let db = connect(&url);
    let v = failing(1, "checkout", "r1", "a", 100);
    db.write(&rows(std::slice::from_ref(&v))).unwrap();
    assert!(db.verdict(&v.trace_id).unwrap().is_some());
    let mut admin = pg::shared().client("postgres");
    let sessions = |admin: &mut postgres::Client| -> Vec<i32> {
        admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = 't_reconnect' \
                 AND application_name = 'faultline' ORDER BY pid",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = sessions(&mut admin);
    assert_eq!(before.len(), 2, "a writer and a reader, named faultline");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 't_reconnect' AND application_name = 'faultline'",
            &[],
        )
        .unwrap();
    // The first use may find the connection gone; the next opens a new one.
    let mut wrote = None;
    for _ in 0..2 {
        match db.write(&rows(&[again(&v, 2, 200, "r1", "a")])) {
            Ok(n) => {
                wrote = Some(n);
                break;
            }
            Err(e) => assert!(matches!(e, BackendError::Unavailable(_)), "{e}"),
        }
    }
    assert_eq!(wrote, Some(1), "written on a new connection");
    let mut read = None;
    for _ in 0..2 {
        match db.verdicts(&all(10)) {
            Ok(list) => {
                read = Some(list.len());
                break;
            }
            Err(e) => assert!(matches!(e, BackendError::Unavailable(_)), "{e}"),
        }
    }
    assert_eq!(read, Some(2));
    let after = sessions(&mut admin);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "new sessions: {before:?} → {after:?}"
    );
}

#[test]
fn a_server_restart_makes_writes_unavailable_then_they_resume() {
    let server = pg::Server::start_private();
    let url = server.create_database("outage");
    let db = connect(&url);
    let v = failing(1, "checkout", "r1", "a", 100);
    db.write(&rows(std::slice::from_ref(&v))).unwrap();
    server.stop();
    for seq in [2, 3] {
        let t = Instant::now();
        let err = db
            .write(&rows(&[again(&v, seq, 200, "r1", "a")]))
            .expect_err("the server is down");
        assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    assert!(matches!(
        db.verdict(&v.trace_id),
        Err(BackendError::Unavailable(_))
    ));
    server.start();
    assert_eq!(db.write(&rows(&[again(&v, 2, 200, "r1", "a")])).unwrap(), 1);
    assert_eq!(db.verdicts(&all(10)).unwrap().len(), 2);
    assert_eq!(db.groups(None, 10).unwrap()[0].count, 2);
}

/// A loopback port that accepts no connection: its listen queue is full, so a SYN goes
/// unanswered (Linux drops it) and a client waits as for a host that is not there.
fn silent_port() -> (TcpListener, Vec<std::net::TcpStream>, u16) {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen on a socket we own; a smaller backlog is all it changes.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let port = listener.local_addr().unwrap().port();
    let mut queued = Vec::new();
    // Fill the queue (the kernel takes backlog + 1).
    while let Ok(s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(300),
    ) {
        queued.push(s);
        assert!(queued.len() < 16, "the listen queue does not fill");
    }
    (listener, queued, port)
}

#[test]
fn an_unreachable_server_is_unavailable_within_the_connect_timeout() {
    // Nothing listening: refused at once.
    let port = crate::support::free_port();
    let t = Instant::now();
    let err = PostgresBackend::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), None)
        .err()
        .expect("refused");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}/x")),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A port that never answers: bounded by the default connect timeout (3 s), or the
    // URL's own. Tried on a thread, so that a connect without a bound fails the test
    // instead of hanging it.
    let (_listener, _queued, port) = silent_port();
    let attempt = |url: String| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let t = Instant::now();
            let result = PostgresBackend::connect(&url, None).map(|_| ());
            let _ = tx.send((result, t.elapsed()));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("connect is bounded")
    };
    let (result, waited) = attempt(format!("postgres://postgres@127.0.0.1:{port}/x"));
    let err = result.expect_err("timed out");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
    assert!(
        waited >= Duration::from_millis(2_500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    let (result, waited) = attempt(format!(
        "postgres://postgres@127.0.0.1:{port}/x?connect_timeout=1"
    ));
    let err = result.expect_err("timed out");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
    assert!(waited < Duration::from_millis(2_500), "{waited:?}");
}

#[test]
fn a_wrong_url_or_database_is_refused_with_a_clear_error() {
    for url in [
        "postgres://postgres:s3cret@127.0.0.1:notaport/db",
        "postgres://postgres:s3cret@/db",
        "mysql://postgres:s3cret@127.0.0.1/db",
        "",
    ] {
        let err = PostgresBackend::connect(url, None).err().expect(url);
        let text = err.to_string();
        assert!(matches!(err, BackendError::Rejected(_)), "{url}: {text}");
        assert!(text.contains("state database URL"), "{url}: {text}");
        assert!(
            !text.contains("s3cret"),
            "the password is not echoed: {text}"
        );
    }
    // A database that does not exist: the server's own words, and no retrying.
    let url = pg::shared().url("no_such_database");
    let err = PostgresBackend::connect(&url, None).err().expect("refused");
    assert!(matches!(err, BackendError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("no_such_database"), "{err}");
    assert!(err.to_string().contains("3D000"), "{err}");
    // And a location never shows the password.
    let url = pg::database("password").replace("postgres@", "postgres:hunter2@");
    let db = connect(&url);
    assert!(!db.location().contains("hunter2"), "{}", db.location());
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files.
fn certificates(dir: &std::path::Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "faultline test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "postgres");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[test]
fn sslmode_require_verifies_the_server_against_the_given_ca() {
    let pki = tempfile::tempdir().unwrap();
    certificates(pki.path());
    let server = pg::Server::start_configured(
        &[
            ("server.pem", &pki.path().join("server.pem")),
            ("server.key", &pki.path().join("server.key")),
        ],
        "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'",
    );
    let url = server.create_database("tls");
    let ca = pki.path().join("ca.pem");
    let encrypted = |db: &PostgresBackend| -> Vec<bool> {
        // Use both connections, then ask the server how they are secured.
        db.write(&rows(&[failing(1, "checkout", "r1", "a", 100)]))
            .unwrap();
        db.verdicts(&all(1)).unwrap();
        server
            .client("postgres")
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
                 WHERE a.datname = 'tls' AND a.application_name = 'faultline'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };

    let require = format!("{url}?sslmode=require");
    let db = PostgresBackend::connect(&require, Some(&ca)).expect("verified");
    assert_eq!(encrypted(&db), vec![true, true]);
    drop(db);
    // `prefer`, the default, takes TLS when the server offers it.
    let db = PostgresBackend::connect(&url, Some(&ca)).expect("verified");
    assert_eq!(encrypted(&db), vec![true, true]);
    drop(db);
    let db = PostgresBackend::connect(&format!("{url}?sslmode=disable"), None).expect("plain");
    assert_eq!(encrypted(&db), vec![false, false]);
    drop(db);

    // Not signed by a web PKI root: refused, not retried.
    let err = PostgresBackend::connect(&require, None)
        .err()
        .expect("unknown issuer");
    assert!(matches!(err, BackendError::Rejected(_)), "{err}");
    // An unusable CA file is named.
    let missing = pki.path().join("missing.pem");
    let err = PostgresBackend::connect(&require, Some(&missing))
        .err()
        .expect("no CA file");
    assert!(matches!(err, BackendError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = PostgresBackend::connect(&require, Some(&pki.path().join("server.key")))
        .err()
        .expect("no certificate in it");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[test]
fn a_batch_of_10000_verdicts_is_one_write() {
    let db = connect(&pg::database("ten_thousand"));
    let bases: Vec<Verdict> = (0..50u32)
        .map(|i| failing(i, &format!("handler_{i}"), "r1", "a", 1))
        .collect();
    let verdicts: Vec<Verdict> = (0..10_000u32)
        .map(|k| {
            // Within a group (k % 50), four tenants of 50 occurrences each.
            let tenant = format!("tenant-{}", (k / 50) % 4);
            again(
                &bases[(k % 50) as usize],
                k + 1,
                u64::from(k) * 1_000,
                "r1",
                &tenant,
            )
        })
        .collect();
    let batch = rows(&verdicts);
    let t = Instant::now();
    assert_eq!(db.write(&batch).unwrap(), 10_000);
    let took = t.elapsed();
    eprintln!("state_postgres: one write of 10000 verdicts took {took:?}");
    let groups = db.groups(None, 100).unwrap();
    assert_eq!(groups.len(), 50);
    assert!(groups.iter().all(|g| g.count == 200));
    assert_eq!(db.write(&batch).unwrap(), 0, "all of them re-sent");
    assert_eq!(
        db.groups(None, 100)
            .unwrap()
            .iter()
            .map(|g| g.count)
            .sum::<u64>(),
        10_000
    );
    let counts: BTreeMap<String, u64> = groups[0]
        .top_cohort
        .tenant
        .iter()
        .map(|t| (t.value.clone(), t.count))
        .collect();
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|n| *n == 50), "{counts:?}");
}
