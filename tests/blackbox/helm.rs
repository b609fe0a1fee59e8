//! The Helm chart `helm/faultline`: linted and rendered by Helm's own engine (PyPI
//! `helm-python-sdk`), every rendered manifest validated against the Kubernetes 1.33
//! schemas (`kubernetes-validate`, strict; the ServiceMonitor CRD excepted), bad values
//! refused, and the rendered config file accepted by `faultline check-config`, so the chart
//! cannot ship a configuration the binary refuses. The state database's three shapes are
//! rendered: SQLite on a claim per replica (the default), SQLite on an emptyDir, and
//! PostgreSQL from a Secret for several replicas (docs/fleet.md).
//!
//! One Python run does all the Helm work (lint, renders, refusals, package) and the tests
//! below share its answer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::check_config::check_config;
use crate::support::python;

const KUBE_VERSION: &str = "v1.33.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("helm/faultline")
}

fn everything_values() -> PathBuf {
    chart_dir().join("ci/everything-values.yaml")
}

/// Bad values and what must refuse them: ("schema" | "template", words of the message).
fn refusals() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "port-as-string",
            json!({"ports": {"otlp": {"containerPort": "4317"}}}),
            "schema",
            "containerPort",
        ),
        (
            "port-out-of-range",
            json!({"ports": {"otlp-http": {"servicePort": 70000}}}),
            "schema",
            "servicePort",
        ),
        (
            "unknown-forward-mode",
            json!({"forward": {"endpoint": "http://collector:4317", "mode": "mirror"}}),
            "schema",
            "mode",
        ),
        (
            "unknown-forward-protocol",
            json!({"forward": {"endpoint": "http://collector:4317", "protocol": "udp"}}),
            "schema",
            "protocol",
        ),
        (
            "unknown-config-key",
            json!({"config": {"trace-idel": "5s"}}),
            "schema",
            "trace-idel",
        ),
        (
            "listener-in-config",
            json!({"config": {"otlp-grpc-listen": "0.0.0.0:1"}}),
            "schema",
            "otlp-grpc-listen",
        ),
        (
            "count-as-words",
            json!({"config": {"max-buffered-spans": "lots"}}),
            "schema",
            "max-buffered-spans",
        ),
        (
            "duration-without-unit",
            json!({"config": {"trace-idle": "10"}}),
            "schema",
            "trace-idle",
        ),
        (
            "api-port-disabled",
            json!({"ports": {"api": {"enabled": false}}}),
            "schema",
            "api",
        ),
        (
            "unknown-top-level-key",
            json!({"replicas": 3}),
            "schema",
            "replicas",
        ),
        (
            "grace-not-longer-than-shutdown",
            json!({"shutdownTimeoutSeconds": 30, "terminationGracePeriodSeconds": 30}),
            "template",
            "terminationGracePeriodSeconds",
        ),
        (
            "disk-queue-without-forwarder",
            json!({"forward": {"queue": {"persistence": {"enabled": true}}}}),
            "template",
            "forward.endpoint",
        ),
        (
            "mutual-tls-on-the-probed-port",
            json!({"tls": {"existingSecret": "s", "clientCaKey": "ca.crt",
                           "listeners": {"api": true}}}),
            "template",
            "probes",
        ),
        // Each replica would keep its own SQLite file: only PostgreSQL spans a fleet. The
        // message names both values to change.
        (
            "several-replicas-on-sqlite",
            json!({"replicaCount": 2}),
            "schema",
            "/state/postgres/existingSecret",
        ),
        (
            "several-replicas-on-sqlite-names-the-count",
            json!({"replicaCount": 3, "state": {"persistence": {"enabled": false}}}),
            "schema",
            "/replicaCount",
        ),
        (
            "state-location-in-config",
            json!({"config": {"state": "memory"}}),
            "schema",
            "'state'",
        ),
        (
            "postgres-ca-without-postgres",
            json!({"state": {"postgres": {"caConfigMap": "pg-ca"}}}),
            "template",
            "state.postgres.existingSecret",
        ),
        (
            "postgres-ca-from-two-places",
            json!({"state": {"postgres": {"existingSecret": "pg", "caConfigMap": "pg-ca",
                                          "caSecret": "pg-ca"}}}),
            "template",
            "not both",
        ),
    ]
}

/// Renders beyond the defaults and the everything-on file: (case, values).
fn extra_renders() -> Vec<(&'static str, Value)> {
    vec![
        ("config-changed", json!({"config": {"trace-idle": "5s"}})),
        (
            "tls-on-api",
            json!({"tls": {"existingSecret": "s", "listeners": {"api": true}}}),
        ),
        (
            "sqlite-ephemeral",
            json!({"state": {"persistence": {"enabled": false}}}),
        ),
        (
            "sqlite-on-a-sized-claim",
            json!({"state": {"persistence": {"size": "20Gi", "storageClassName": "fast-ssd",
                                             "accessModes": ["ReadWriteOncePod"]}}}),
        ),
        (
            "postgres",
            json!({"replicaCount": 3,
                   "state": {"postgres": {"existingSecret": "faultline-db", "secretKey": "dsn",
                                          "caSecret": "faultline-db-ca", "caKey": "root.pem"}}}),
        ),
        (
            "sqlite-and-disk-queue",
            json!({"forward": {"endpoint": "http://collector:4317",
                               "queue": {"persistence": {"enabled": true,
                                   "retentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}}},
                   "state": {"persistence": {
                       "retentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}}}),
        ),
    ]
}

/// Every render: the defaults, the everything-on file and [`extra_renders`].
fn all_renders() -> Vec<&'static str> {
    let mut cases = vec!["default", "everything"];
    cases.extend(extra_renders().into_iter().map(|(case, _)| case));
    cases
}

/// The answer of tests/blackbox/py/helm_chart.py, run once per test binary.
fn helm() -> &'static Value {
    static ANSWER: OnceLock<Value> = OnceLock::new();
    ANSWER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let everything = everything_values();
        let refuse: serde_json::Map<String, Value> = refusals()
            .into_iter()
            .map(|(name, values, _, _)| (name.to_string(), json!({ "values": values })))
            .collect();
        let mut renders = serde_json::Map::new();
        renders.insert("default".into(), json!({}));
        renders.insert("everything".into(), json!({ "values_file": everything }));
        for (case, values) in extra_renders() {
            renders.insert(case.into(), json!({ "values": values }));
        }
        let request = json!({
            "chart": chart_dir(),
            "kube_version": KUBE_VERSION,
            "package_dir": dir.path(),
            "lint": {
                "default": {},
                "everything": {"values_file": everything},
            },
            "renders": renders,
            "refuse": refuse,
            "hash_files": shipped_dashboards(),
        });
        let request_file = dir.path().join("request.json");
        std::fs::write(&request_file, request.to_string()).expect("write request");
        let out = Command::new(python())
            .arg(repo().join("tests/blackbox/py/helm_chart.py"))
            .arg(&request_file)
            .output()
            .expect("run helm_chart.py");
        assert!(
            out.status.success(),
            "helm_chart.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("helm_chart.py prints JSON")
    })
}

/// grafana/dashboards/*.json, sorted.
fn shipped_dashboards() -> Vec<PathBuf> {
    let mut shipped: Vec<PathBuf> = std::fs::read_dir(repo().join("grafana/dashboards"))
        .expect("grafana/dashboards")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    shipped.sort();
    shipped
}

fn render(case: &str) -> &'static Value {
    &helm()["renders"][case]
}

fn documents(case: &str) -> &'static [Value] {
    render(case)["documents"].as_array().expect("documents")
}

/// The one rendered object of `kind` whose name is `name` (any name when `None`).
fn find(case: &str, kind: &str, name: Option<&str>) -> &'static Value {
    let mut found = documents(case).iter().filter(|d| {
        d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"].as_str() == Some(n))
    });
    let first = found
        .next()
        .unwrap_or_else(|| panic!("{case}: no {kind} {name:?}"));
    assert!(found.next().is_none(), "{case}: several {kind} {name:?}");
    first
}

fn kinds(case: &str) -> Vec<&'static str> {
    documents(case)
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect()
}

/// The TOML file of the rendered ConfigMap.
fn config_file(case: &str) -> &'static str {
    find(case, "ConfigMap", Some("faultline"))["data"]["faultline.toml"]
        .as_str()
        .expect("faultline.toml in the ConfigMap")
}

fn workload(case: &str) -> &'static Value {
    let kind = if kinds(case).contains(&"StatefulSet") {
        "StatefulSet"
    } else {
        "Deployment"
    };
    find(case, kind, Some("faultline"))
}

fn pod(case: &str) -> &'static Value {
    &workload(case)["spec"]["template"]["spec"]
}

/// The pod volume named `name`, if any.
fn volume(case: &str, name: &str) -> Option<&'static Value> {
    pod(case)["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == name)
}

/// The container's mount of volume `name`, if any.
fn mount(case: &str, name: &str) -> Option<&'static Value> {
    container(case)["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == name)
}

/// The StatefulSet's claim templates by name (none for a Deployment).
fn claims(case: &str) -> Vec<&'static str> {
    workload(case)["spec"]["volumeClaimTemplates"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|t| t["metadata"]["name"].as_str().expect("claim name"))
                .collect()
        })
        .unwrap_or_default()
}

fn container(case: &str) -> &'static Value {
    let containers = &workload(case)["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().expect("containers").len(), 1);
    &containers[0]
}

/// The value of `key = value` in the rendered TOML, parsed.
fn toml_value(case: &str, key: &str) -> Option<toml::Value> {
    let table: toml::Table = config_file(case).parse().expect("the config is TOML");
    table.get(key).cloned()
}

#[test]
fn the_chart_passes_helm_lint_strict() {
    for case in ["default", "everything"] {
        let report = &helm()["lint"][case];
        assert_eq!(report["errors"], json!([]), "{case}: {report}");
        // Severity 2 is a warning, 3 an error; --strict fails on either.
        let serious: Vec<&Value> = report["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "{case}: {serious:?}");
    }
}

#[test]
fn every_rendered_manifest_validates_against_the_kubernetes_schemas() {
    for case in all_renders() {
        let validation = render(case)["validation"].as_array().expect("validation");
        assert!(!validation.is_empty());
        for entry in validation {
            let expected = if entry["kind"] == "ServiceMonitor" {
                "skipped"
            } else {
                "ok"
            };
            assert_eq!(entry["result"], expected, "{case}: {entry}");
        }
    }
    assert!(kinds("everything").contains(&"ServiceMonitor"));
}

#[test]
fn defaults_render_a_hardened_statefulset_with_probes_and_a_grace_period() {
    // The default SQLite state lives on a claim per replica, so the default is a StatefulSet.
    let kinds = kinds("default");
    assert!(kinds.contains(&"StatefulSet") && !kinds.contains(&"Deployment"));
    for optional in [
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Secret",
    ] {
        assert!(!kinds.contains(&optional), "{optional} rendered by default");
    }
    for case in ["default", "everything", "postgres"] {
        let pod = pod(case);
        let c = container(case);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{case}");
        assert!(pod["securityContext"]["runAsUser"].as_u64() > Some(0));
        assert_eq!(pod["automountServiceAccountToken"], false);
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{case}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{case}");
        assert_eq!(sc["runAsNonRoot"], true, "{case}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{case}");
        assert!(sc["capabilities"]["add"].is_null() && sc["privileged"].is_null());
        // The only writable volumes are the claims (the SQLite state, the forward queue),
        // which are not pod volumes.
        for volume in pod["volumes"].as_array().expect("volumes") {
            assert!(
                volume["configMap"].is_object() || volume["secret"].is_object(),
                "{case}: unexpected writable volume {volume}"
            );
        }
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{case}");
            assert_eq!(c[probe]["httpGet"]["port"], "api", "{case}");
            assert_eq!(c[probe]["httpGet"]["scheme"], "HTTP", "{case}");
        }
        let api = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "api")
            .expect("api port");
        assert_eq!(api["containerPort"], 9464);
        // Kubernetes must not kill faultline before --shutdown-timeout has run out.
        let shutdown = toml_value(case, "shutdown-timeout").expect("shutdown-timeout");
        let shutdown = humantime::parse_duration(shutdown.as_str().unwrap()).unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > shutdown.as_secs(),
            "{case}: {grace}s vs {shutdown:?}"
        );
        // The config file is what the container is told to read.
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args[..3],
            ["serve", "--config", "/etc/faultline/config/faultline.toml"]
        );
    }
    assert_eq!(
        container("default")["image"],
        "ghcr.io/faultline/faultline:0.1.0"
    );
}

#[test]
fn listeners_bind_all_interfaces_and_the_services_expose_them() {
    for (key, port) in [
        ("otlp-grpc-listen", 4317),
        ("otlp-http-listen", 4318),
        ("http-listen", 9464),
    ] {
        assert_eq!(
            toml_value("default", key).and_then(|v| v.as_str().map(str::to_string)),
            Some(format!("0.0.0.0:{port}"))
        );
    }
    let service = find("default", "Service", Some("faultline"));
    let ports = service["spec"]["ports"].as_array().unwrap();
    let port = |n: u64| {
        ports
            .iter()
            .find(|p| p["port"] == n)
            .unwrap_or_else(|| panic!("no service port {n}"))
    };
    assert_eq!(port(4317)["appProtocol"], "grpc");
    assert_eq!(port(4318)["targetPort"], "otlp-http");
    assert_eq!(port(9464)["targetPort"], "api");
    // The load-balancing exporter resolves one A record per pod from the headless Service.
    let headless = find("default", "Service", Some("faultline-headless"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["selector"], service["spec"]["selector"]);
    assert!(headless["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == 4317 && p["appProtocol"] == "grpc"));
    let notes = render("default")["notes"].as_str().unwrap();
    for words in [
        "routing_key: traceID",
        "hostname: faultline-headless.observability.svc.cluster.local",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://faultline.observability.svc.cluster.local:4317",
        "otlp/faultline:",
    ] {
        assert!(notes.contains(words), "NOTES.txt lacks {words:?}:\n{notes}");
    }
}

#[test]
fn the_config_checksum_annotation_follows_the_config() {
    let checksum = |case| {
        workload(case)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .expect("checksum/config annotation")
            .to_string()
    };
    assert_eq!(checksum("default").len(), 64);
    assert_ne!(checksum("default"), checksum("config-changed"));
    assert_eq!(
        toml_value("config-changed", "trace-idle"),
        Some(toml::Value::String("5s".into()))
    );
}

#[test]
fn the_disk_queue_makes_a_statefulset_with_a_claim_mounted_where_the_config_points() {
    let set = workload("everything");
    assert_eq!(set["kind"], "StatefulSet");
    assert_eq!(set["spec"]["serviceName"], "faultline-headless");
    let claims = set["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "5Gi");
    let dir = toml_value("everything", "forward-queue-dir").expect("forward-queue-dir");
    let mount = container("everything")["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == claims[0]["metadata"]["name"])
        .expect("the claim is mounted");
    assert_eq!(mount["mountPath"].as_str(), dir.as_str());
    assert!(mount["readOnly"].is_null() || mount["readOnly"] == false);
    assert_eq!(
        toml_value("everything", "forward-mode"),
        Some(toml::Value::String("annotate".into()))
    );
    for kind in ["PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"] {
        find("everything", kind, Some("faultline"));
    }
    // The NetworkPolicy admits the three ports.
    let policy = find("everything", "NetworkPolicy", None);
    let admitted: Vec<u64> = policy["spec"]["ingress"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    for port in [4317, 4318, 9464] {
        assert!(admitted.contains(&port), "{admitted:?}");
    }
}

/// The `state` key of the rendered config, as a path.
fn state_file(case: &str) -> PathBuf {
    PathBuf::from(
        toml_value(case, "state")
            .unwrap_or_else(|| panic!("{case}: no state in the config"))
            .as_str()
            .expect("state is a string"),
    )
}

/// The env var `name` of the container, if set.
fn env(case: &str, name: &str) -> Option<&'static Value> {
    container(case)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn the_default_sqlite_state_is_on_a_claim_per_replica_mounted_where_the_config_points() {
    let set = workload("default");
    assert_eq!(set["kind"], "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 1);
    assert_eq!(set["spec"]["serviceName"], "faultline-headless");
    find("default", "Service", Some("faultline-headless"));
    assert_eq!(claims("default"), ["state"]);
    let claim = &set["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(claim["accessModes"], json!(["ReadWriteOnce"]));
    assert!(
        claim["storageClassName"].is_null(),
        "the cluster's default class"
    );
    assert_eq!(
        set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    // The file is on the claim, which is writable.
    let file = state_file("default");
    assert_eq!(file, Path::new("/var/lib/faultline/state.db"));
    let m = mount("default", "state").expect("the state claim is mounted");
    assert_eq!(m["mountPath"].as_str().map(Path::new), file.parent());
    assert!(m["readOnly"].is_null() || m["readOnly"] == false);
    assert!(
        volume("default", "state").is_none(),
        "a claim, not a pod volume"
    );
    // SQLite's temporary files go beside the database, off the read-only root.
    assert_eq!(
        env("default", "SQLITE_TMPDIR").map(|e| &e["value"]),
        Some(&json!("/var/lib/faultline"))
    );
    for key in ["state-url-file", "state-tls-ca-file"] {
        assert!(toml_value("default", key).is_none(), "{key}");
    }
    let notes = render("default")["notes"].as_str().unwrap();
    assert!(
        notes.contains("SQLite at /var/lib/faultline/state.db"),
        "{notes}"
    );

    let sized = workload("sqlite-on-a-sized-claim");
    let claim = &sized["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(claim["storageClassName"], "fast-ssd");
    assert_eq!(claim["accessModes"], json!(["ReadWriteOncePod"]));
}

#[test]
fn sqlite_without_persistence_keeps_its_file_on_an_empty_dir_for_the_pods_life() {
    let case = "sqlite-ephemeral";
    assert_eq!(workload(case)["kind"], "Deployment");
    assert!(!kinds(case).contains(&"StatefulSet"));
    let file = state_file(case);
    assert_eq!(file, Path::new("/var/lib/faultline/state.db"));
    let v = volume(case, "state").expect("a state volume");
    assert_eq!(v["emptyDir"], json!({}));
    let m = mount(case, "state").expect("mounted");
    assert_eq!(m["mountPath"].as_str().map(Path::new), file.parent());
    // No other writable volume.
    for v in pod(case)["volumes"].as_array().unwrap() {
        assert!(
            v["name"] == "state" || v["configMap"].is_object() || v["secret"].is_object(),
            "unexpected writable volume {v}"
        );
    }
    let notes = render(case)["notes"].as_str().unwrap();
    assert!(notes.contains("emptyDir"), "{notes}");
}

#[test]
fn postgres_state_comes_from_the_mounted_secret_and_runs_several_replicas() {
    let case = "postgres";
    let deployment = workload(case);
    assert_eq!(
        deployment["kind"], "Deployment",
        "nothing on disk follows a pod"
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(!kinds(case).contains(&"StatefulSet"));
    // The URL (with its password) stays in the Secret: the config names the mounted file.
    assert!(
        toml_value(case, "state").is_none(),
        "state-url-file takes its place"
    );
    let url_file = toml_value(case, "state-url-file").expect("state-url-file");
    let url_file = Path::new(url_file.as_str().unwrap());
    assert_eq!(
        url_file.file_name().unwrap(),
        "dsn",
        "state.postgres.secretKey"
    );
    let v = volume(case, "state-url").expect("the URL Secret's volume");
    assert_eq!(v["secret"]["secretName"], "faultline-db");
    let m = mount(case, "state-url").expect("mounted");
    assert_eq!(m["readOnly"], true);
    assert!(
        m["subPath"].is_null(),
        "a rotated Secret must reach the pod"
    );
    assert_eq!(m["mountPath"].as_str().map(Path::new), url_file.parent());
    // The server's CA, from a Secret here (a ConfigMap in the everything-on file).
    let ca_file = toml_value(case, "state-tls-ca-file").expect("state-tls-ca-file");
    let ca_file = Path::new(ca_file.as_str().unwrap());
    assert_eq!(ca_file.file_name().unwrap(), "root.pem");
    let v = volume(case, "state-ca").expect("the CA's volume");
    assert_eq!(v["secret"]["secretName"], "faultline-db-ca");
    let m = mount(case, "state-ca").expect("mounted");
    assert_eq!(m["mountPath"].as_str().map(Path::new), ca_file.parent());
    assert_eq!(m["readOnly"], true);
    // No SQLite: no state volume, no SQLite temporary directory.
    assert!(volume(case, "state").is_none() && mount(case, "state").is_none());
    assert!(env(case, "SQLITE_TMPDIR").is_none());
    let notes = render(case)["notes"].as_str().unwrap();
    assert!(
        notes.contains("PostgreSQL") && notes.contains("faultline-db"),
        "{notes}"
    );
    // The everything-on file: three replicas on PostgreSQL, the CA from a ConfigMap, and
    // the disk queue's claim its only claim.
    assert_eq!(workload("everything")["spec"]["replicas"], 3);
    assert_eq!(
        volume("everything", "state-ca").unwrap()["configMap"]["name"],
        "faultline-state-ca"
    );
    assert_eq!(claims("everything"), ["queue"]);
}

#[test]
fn the_state_claim_and_the_disk_queue_share_one_statefulset_and_retain_wins() {
    let case = "sqlite-and-disk-queue";
    let set = workload(case);
    assert_eq!(set["kind"], "StatefulSet");
    assert_eq!(claims(case), ["state", "queue"]);
    let state = mount(case, "state").unwrap()["mountPath"].as_str().unwrap();
    let queue = mount(case, "queue").unwrap()["mountPath"].as_str().unwrap();
    assert_eq!(Some(Path::new(state)), state_file(case).parent());
    assert_eq!(
        toml_value(case, "forward-queue-dir").and_then(|v| v.as_str().map(String::from)),
        Some(queue.to_string())
    );
    assert_ne!(state, queue);
    // One policy for both claims: a claim asked to be retained is retained.
    let policy = &set["spec"]["persistentVolumeClaimRetentionPolicy"];
    assert_eq!(policy["whenDeleted"], "Retain", "the queue asks Retain");
    assert_eq!(policy["whenScaled"], "Delete", "both ask Delete");
}

#[test]
fn secrets_are_mounted_from_existing_secrets_and_never_rendered() {
    let kinds = kinds("everything");
    assert!(
        !kinds.contains(&"Secret"),
        "the chart must not create Secrets"
    );
    let pod = &workload("everything")["spec"]["template"]["spec"];
    let mounts = container("everything")["volumeMounts"].as_array().unwrap();
    let mut secret_mounts = 0;
    for volume in pod["volumes"].as_array().unwrap() {
        // Config maps (the CA bundle of the state database) are mounted read-only too.
        if let Some(map) = volume["configMap"]["name"].as_str() {
            let mount = mounts
                .iter()
                .find(|m| m["name"] == volume["name"])
                .unwrap_or_else(|| panic!("{map} not mounted"));
            assert_eq!(mount["readOnly"], true, "{map}");
        }
        let Some(secret) = volume["secret"]["secretName"].as_str() else {
            continue;
        };
        secret_mounts += 1;
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("{secret} not mounted"));
        assert_eq!(mount["readOnly"], true);
        // A subPath mount would never see a rotated Secret.
        assert!(mount["subPath"].is_null());
    }
    assert_eq!(
        secret_mounts, 5,
        "tls, auth, api-auth, forward-tls, state-url"
    );
    // The config names the mounted files, under the secret mounts, and nothing else.
    let mount_paths: Vec<&str> = mounts
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for key in [
        "otlp-grpc-tls-cert-file",
        "otlp-grpc-tls-key-file",
        "otlp-grpc-tls-client-ca-file",
        "otlp-http-tls-cert-file",
        "auth-token-file",
        "api-auth-token-file",
        "forward-tls-ca-file",
        "forward-tls-cert-file",
        "forward-tls-key-file",
        "state-url-file",
        "state-tls-ca-file",
    ] {
        let path = toml_value("everything", key).unwrap_or_else(|| panic!("{key} not set"));
        let path = path.as_str().unwrap();
        assert!(
            mount_paths
                .iter()
                .any(|m| Path::new(path).parent() == Some(Path::new(m))),
            "{key} = {path} is not in a mount"
        );
    }
    // Mutual TLS is not asked of the probed API port.
    assert!(toml_value("everything", "http-tls-client-ca-file").is_none());
    for doc in documents("everything")
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
    {
        let text = doc["data"].to_string();
        assert!(!text.contains("PRIVATE KEY") && !text.contains("BEGIN CERTIFICATE"));
    }
}

#[test]
fn tls_on_the_api_port_switches_the_probes_to_https() {
    let c = container("tls-on-api");
    assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(
        toml_value("tls-on-api", "http-tls-cert-file"),
        Some(toml::Value::String("/etc/faultline/tls/tls.crt".into()))
    );
}

#[test]
fn each_shipped_dashboard_becomes_a_labelled_config_map_with_its_json() {
    let shipped = shipped_dashboards();
    assert!(!shipped.is_empty());
    let maps: Vec<&Value> = documents("everything")
        .iter()
        .filter(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(maps.len(), shipped.len(), "one ConfigMap per dashboard");
    for file in &shipped {
        let name = file.file_name().unwrap().to_str().unwrap();
        let map = maps
            .iter()
            .find(|m| m["data"][name].is_string())
            .unwrap_or_else(|| {
                panic!("no ConfigMap holds {name}: add a symlink in helm/faultline/dashboards/")
            });
        assert_eq!(map["kind"], "ConfigMap");
        let rendered: Value = serde_json::from_str(map["data"][name].as_str().unwrap()).unwrap();
        let original: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(rendered, original, "{name}");
    }
    assert!(!documents("default")
        .iter()
        .any(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1"));
}

#[test]
fn helm_package_stores_the_dashboards_as_files() {
    let members = helm()["package"]["members"].as_object().expect("members");
    for file in shipped_dashboards() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let member = &members[&format!("faultline/dashboards/{name}")];
        assert_eq!(member["regular"], true, "{name}: {member}");
        let digest = &helm()["hashes"][file.to_str().unwrap()];
        assert!(digest.is_string(), "{name} not hashed");
        assert_eq!(&member["sha256"], digest, "{name}");
    }
    assert!(members.contains_key("faultline/values.schema.json"));
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    for (name, _, stage, words) in refusals() {
        let answer = &helm()["refuse"][name];
        assert_eq!(answer["stage"], stage, "{name}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(words), "{name}: {error:?} lacks {words:?}");
    }
}

/// Writes the rendered config of `case` to a file and runs `faultline check-config` on it.
fn check_rendered_config(case: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, config_file(case)).unwrap();
    let out = check_config(&file);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_binary_accepts_the_config_the_chart_renders() {
    // The everything-on file also names the forwarder, TLS, token and state files (only
    // their paths: the files are read at start-up, not by check-config).
    for case in all_renders() {
        let (code, output) = check_rendered_config(case);
        assert_eq!(code, Some(0), "{case}: {output}\n{}", config_file(case));
    }
}

#[test]
fn the_image_default_config_binds_all_interfaces_and_is_accepted() {
    let file = repo().join("docker/faultline.toml");
    let out = check_config(&file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: toml::Table = std::fs::read_to_string(&file).unwrap().parse().unwrap();
    for key in ["otlp-grpc-listen", "otlp-http-listen", "http-listen"] {
        assert!(
            table[key].as_str().unwrap().starts_with("0.0.0.0:"),
            "{key}"
        );
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("FAULTLINE_CONFIG=/etc/faultline/faultline.toml"));
    for port in ["4317", "4318", "9464"] {
        assert!(dockerfile.contains(port), "EXPOSE {port}");
    }
}

#[test]
fn the_schema_config_keys_and_the_binary_flags_stay_in_step() {
    let help = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags: std::collections::BTreeSet<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect();
    let schema: Value =
        serde_json::from_slice(&std::fs::read(chart_dir().join("values.schema.json")).unwrap())
            .unwrap();
    let config_keys: Vec<&String> = schema["properties"]["config"]["properties"]
        .as_object()
        .expect("config properties")
        .keys()
        .collect();
    // Every option the chart accepts under `config` is one the binary has,
    for key in &config_keys {
        assert!(
            flags.contains(key.as_str()),
            "config.{key} is not a flag of faultline"
        );
    }
    // ...and the everything-on values set each of them, so check-config sees them all.
    for key in &config_keys {
        assert!(
            toml_value("everything", key).is_some(),
            "config.{key} is not set in ci/everything-values.yaml"
        );
    }
    // ...and every option of the binary is reachable from the chart: under `config`, or
    // through the values that render it (ports, shutdownTimeoutSeconds, forward, tls, auth,
    // state).
    let rendered_from_other_values = |flag: &str| {
        matches!(
            flag,
            "config"
                | "otlp-grpc-listen"
                | "otlp-http-listen"
                | "http-listen"
                | "shutdown-timeout"
                | "state"
                | "state-url-file"
                | "help"
                | "version"
        ) || flag.starts_with("forward-")
            || flag.contains("tls-")
            || flag.ends_with("auth-token-file")
    };
    for flag in &flags {
        assert!(
            config_keys.iter().any(|k| k == flag) || rendered_from_other_values(flag),
            "--{flag} cannot be set through the chart: add it to config in values.schema.json"
        );
    }
}
