//! Three faultline replicas sharing one PostgreSQL (`--state postgres://…`) behind a
//! trace-id-hashing OTLP front ([`crate::lb_front`], standing in for the Collector's
//! `loadbalancing` exporter), fed by the stock OpenTelemetry Python SDK: every replica
//! answers every verdict, the fingerprint counts are the fleet's sum, one replica is
//! restarted mid-run, and PostgreSQL is stopped for 10 s mid-run: nothing accepted is
//! lost, the backlog is written once it is back, and ingest never pushed back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lb_front::LbFront;
use crate::pg;
use crate::support::{python_send_failing, Faultline};

const REPLICAS: usize = 3;

fn replica(url: &str) -> Faultline {
    Faultline::start(&["--trace-idle", "200ms", "--state", url])
}

fn total(fleet: &[Faultline], series: &str) -> f64 {
    fleet.iter().map(|f| f.metric(series)).sum()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The failing trace ids the SDK sent.
fn failing_ids(sent: &Value) -> Vec<String> {
    sent["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["trace_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every replica answers every id, and counts the one fingerprint `expected` times.
fn assert_fleet_answers(fleet: &[Faultline], ids: &[String], expected: u64) {
    for (i, f) in fleet.iter().enumerate() {
        for id in ids {
            let r = f.get(&format!("/api/v1/verdicts/{id}"));
            assert_eq!(r.status().as_u16(), 200, "replica {i} on trace {id}");
        }
        let groups: Value = f.get("/api/v1/fingerprints").json().unwrap();
        let count: u64 = groups["fingerprints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["count"].as_u64().unwrap())
            .sum();
        assert_eq!(count, expected, "replica {i}'s fleet-wide count: {groups}");
        let listed: Value = f.get("/api/v1/verdicts?limit=1000").json().unwrap();
        let listed: HashSet<&str> = listed["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["trace_id"].as_str().unwrap())
            .collect();
        assert!(
            ids.iter().all(|id| listed.contains(id.as_str())),
            "replica {i} lists the fleet's verdicts"
        );
    }
}

fn wait_written(fleet: &[Faultline], verdicts: f64) {
    wait_for("every verdict written", Duration::from_secs(60), || {
        total(fleet, "faultline_state_verdicts_written_total") >= verdicts
            && total(fleet, "faultline_state_write_queue_depth") == 0.0
    });
}

#[test]
fn three_replicas_on_one_postgresql_answer_for_the_fleet_through_a_restart_and_an_outage() {
    let server = pg::Server::start_private();
    let url = server.create_database("fleet");
    let mut fleet: Vec<Faultline> = (0..REPLICAS).map(|_| replica(&url)).collect();
    let front = LbFront::start(fleet.iter().map(|f| f.grpc_endpoint()).collect());

    // Round 1: the SDK through the front; each trace lands on one replica.
    let sent = python_send_failing("grpc", &front.endpoint, 20, 30);
    let mut ids = failing_ids(&sent);
    wait_for("30 verdicts", Duration::from_secs(60), || {
        total(&fleet, "faultline_verdicts_total") >= 30.0
    });
    assert!(
        fleet
            .iter()
            .all(|f| f.metric("faultline_verdicts_total") > 0.0),
        "the front spread the traces over every replica"
    );
    wait_written(&fleet, 30.0);
    assert_fleet_answers(&fleet, &ids, 30);

    // One replica restarted mid-run: it comes back on new ports, on the same database.
    let old = fleet.remove(1);
    let (status, log) = old.terminate();
    assert!(status.success(), "{log}");
    let back = replica(&url);
    front.set(1, back.grpc_endpoint());
    fleet.insert(1, back);

    // Round 2 with PostgreSQL down for 10 s: ingest goes on, memory answers, the
    // backlog is written when it returns.
    let before = total(&fleet, "faultline_verdicts_total");
    server.stop();
    let sent = python_send_failing("grpc", &front.endpoint, 20, 30);
    let round2 = failing_ids(&sent);
    wait_for("the outage's verdicts", Duration::from_secs(60), || {
        total(&fleet, "faultline_verdicts_total") >= before + 30.0
    });
    std::thread::sleep(Duration::from_secs(10));
    for (i, f) in fleet.iter().enumerate() {
        let refused: f64 = f
            .metrics()
            .lines()
            .filter(|l| {
                l.starts_with("faultline_receiver_refused_spans_total")
                    || l.starts_with("faultline_receiver_refused_requests_total")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(refused, 0.0, "replica {i} pushed back during the outage");
        assert_eq!(
            f.get("/readyz").status().as_u16(),
            200,
            "replica {i} stays ready with the database down"
        );
    }
    // The replica that analysed a trace answers it from memory meanwhile.
    for id in &round2 {
        let answered = fleet
            .iter()
            .filter(|f| f.get(&format!("/api/v1/verdicts/{id}")).status() == 200)
            .count();
        assert!(
            answered >= 1,
            "trace {id} answered by its replica during the outage"
        );
    }
    assert!(
        fleet.iter().any(|f| f.metric("faultline_state_up") == 0.0),
        "a replica with verdicts to write saw the database down"
    );
    server.start();
    ids.extend(round2);
    wait_for("the backlog written", Duration::from_secs(60), || {
        fleet
            .iter()
            .all(|f| f.metric("faultline_state_write_queue_depth") == 0.0)
            && fleet.iter().all(|f| {
                f.metric("faultline_state_verdicts_written_total")
                    >= f.metric("faultline_verdicts_total")
            })
    });
    let dropped: f64 = fleet
        .iter()
        .flat_map(|f| {
            f.metrics()
                .lines()
                .filter(|l| l.starts_with("faultline_state_verdicts_dropped_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(dropped, 0.0, "no verdict given up on");
    assert_fleet_answers(&fleet, &ids, 60);
}
