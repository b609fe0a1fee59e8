//! Resolving flags, environment and file into a `Config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::config::{AnalysisArgs, Cli, ForwardMode};

#[test]
fn defaults_match_the_design() {
    let c = Config::default();
    assert_eq!(c.otlp_grpc_listen.to_string(), "127.0.0.1:4317");
    assert_eq!(c.otlp_http_listen.to_string(), "127.0.0.1:4318");
    assert_eq!(c.http_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.ingest.max_request_size, 4 * 1024 * 1024);
    assert_eq!(c.assembly.trace_idle, Duration::from_secs(10));
    assert_eq!(c.assembly.trace_max_age, Duration::from_secs(60));
    assert_eq!(c.assembly.max_buffered_spans, 1_000_000);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
}

#[test]
fn bad_values_name_the_option() {
    let a = ServeArgs {
        trace_idle: Some("soon".into()),
        ..Default::default()
    };
    let e = resolve(a).unwrap_err().to_string();
    assert!(e.contains("--trace-idle"), "{e}");
    let a = ServeArgs {
        max_request_size: Some("4 parsecs".into()),
        ..Default::default()
    };
    assert!(resolve(a)
        .unwrap_err()
        .to_string()
        .contains("--max-request-size"));
    let a = ServeArgs {
        otlp_grpc_listen: Some("localhost".into()),
        ..Default::default()
    };
    assert!(resolve(a)
        .unwrap_err()
        .to_string()
        .contains("--otlp-grpc-listen"));
    let a = ServeArgs {
        max_buffered_spans: Some("0".into()),
        ..Default::default()
    };
    assert!(resolve(a)
        .unwrap_err()
        .to_string()
        .contains("--max-buffered-spans"));
}

#[test]
fn sizes_and_durations_use_the_documented_forms() {
    let a = ServeArgs {
        max_request_size: Some("512KiB".into()),
        trace_idle: Some("500ms".into()),
        trace_max_age: Some("2m".into()),
        ..Default::default()
    };
    let c = resolve(a).unwrap();
    assert_eq!(c.ingest.max_request_size, 512 * 1024);
    assert_eq!(c.assembly.trace_idle, Duration::from_millis(500));
    assert_eq!(c.assembly.trace_max_age, Duration::from_secs(120));
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let file =
        parse_file("trace-idle = \"3s\"\nmax-buffered-spans = 500\nhttp-listen = \"127.0.0.1:1\"")
            .unwrap();
    let flags = ServeArgs {
        trace_idle: Some("1s".into()),
        ..Default::default()
    };
    let c = resolve(flags.or(file)).unwrap();
    assert_eq!(c.assembly.trace_idle, Duration::from_secs(1));
    assert_eq!(c.assembly.max_buffered_spans, 500);
    assert_eq!(c.http_listen.port(), 1);
}

#[test]
fn list_options_accept_repeats_lists_and_commas() {
    let file =
        parse_file("error-status = [500, 503]\ntenant-attribute = \"org.id, tenant\"").unwrap();
    let c = resolve(file).unwrap();
    assert_eq!(c.analysis.error_statuses, vec![500, 503]);
    assert_eq!(c.analysis.tenant_attributes, vec!["org.id", "tenant"]);
    let bad = ServeArgs {
        analysis: AnalysisArgs {
            error_status: vec!["5xx".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(resolve(bad)
        .unwrap_err()
        .to_string()
        .contains("--error-status"));
    assert_eq!(Config::default().analysis.error_statuses, vec![500]);
}

#[test]
fn watch_buffer_is_a_bounded_positive_count() {
    assert_eq!(Config::default().watch_buffer, 1024);
    let file = parse_file("watch-buffer = 2").unwrap();
    assert_eq!(resolve(file).unwrap().watch_buffer, 2);
    for bad in ["0", "lots", "2000000"] {
        let a = ServeArgs {
            watch_buffer: Some(bad.into()),
            ..Default::default()
        };
        let e = resolve(a).unwrap_err().to_string();
        assert!(e.contains("--watch-buffer"), "{e}");
    }
}

#[test]
fn max_series_defaults_to_1000_and_refuses_zero() {
    assert_eq!(Config::default().metrics.max_series, 1000);
    let c = resolve(parse_file("max-series = 3").unwrap()).unwrap();
    assert_eq!(c.metrics.max_series, 3);
    let bad = ServeArgs {
        max_series: Some("0".into()),
        ..Default::default()
    };
    assert!(resolve(bad)
        .unwrap_err()
        .to_string()
        .contains("--max-series"));
}

#[test]
fn the_otlp_metrics_push_is_off_by_default_and_grpc_every_minute_when_on() {
    assert!(Config::default().metrics.otlp.is_none());
    let c =
        resolve(parse_file("otlp-metrics-endpoint = \"http://10.0.0.7:4317\"").unwrap()).unwrap();
    let otlp = c.metrics.otlp.unwrap();
    assert_eq!(otlp.protocol, OtlpMetricsProtocol::Grpc);
    assert_eq!(otlp.interval, Duration::from_secs(60));
    assert_eq!(otlp.endpoint.to_string(), "http://10.0.0.7:4317/");
}

#[test]
fn the_http_push_appends_v1_metrics_only_to_a_bare_url() {
    let resolve_http = |endpoint: &str| {
        let a = ServeArgs {
            otlp_metrics_endpoint: Some(endpoint.into()),
            otlp_metrics_protocol: Some("http/protobuf".into()),
            otlp_metrics_interval: Some("200ms".into()),
            ..Default::default()
        };
        resolve(a).unwrap().metrics.otlp.unwrap()
    };
    let bare = resolve_http("http://collector:4318");
    assert_eq!(bare.protocol, OtlpMetricsProtocol::HttpProtobuf);
    assert_eq!(bare.interval, Duration::from_millis(200));
    assert_eq!(
        bare.endpoint.to_string(),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(
        resolve_http("http://collector:4318/custom/metrics")
            .endpoint
            .to_string(),
        "http://collector:4318/custom/metrics"
    );
}

#[test]
fn bad_otlp_metrics_values_name_their_option() {
    let cases = [
        ("otlp-metrics-endpoint", Some("localhost:4317"), None, None),
        (
            "otlp-metrics-endpoint",
            Some("https://collector:4317"),
            None,
            None,
        ),
        ("otlp-metrics-endpoint", Some("http://:4317"), None, None),
        (
            "otlp-metrics-endpoint",
            Some("http://c:4317/v1/metrics"),
            None,
            None,
        ),
        ("otlp-metrics-endpoint", Some("not a url"), None, None),
        ("otlp-metrics-protocol", None, Some("http/json"), None),
        ("otlp-metrics-protocol", None, Some("udp"), None),
        ("otlp-metrics-interval", None, None, Some("often")),
        ("otlp-metrics-interval", None, None, Some("0s")),
    ];
    for (option, endpoint, protocol, interval) in cases {
        let a = ServeArgs {
            otlp_metrics_endpoint: endpoint.map(str::to_string),
            otlp_metrics_protocol: protocol.map(str::to_string),
            otlp_metrics_interval: interval.map(str::to_string),
            ..Default::default()
        };
        let e = resolve(a).unwrap_err().to_string();
        assert!(e.contains(&format!("--{option}")), "{e}");
    }
}

#[test]
fn listeners_are_plain_text_without_tls_options() {
    let c = Config::default();
    assert_eq!(c.security, SecurityConfig::default());
}

#[test]
fn shared_tls_files_apply_to_every_listener_and_own_ones_win() {
    let c = resolve(
        parse_file(
            "tls-cert-file = \"/s/cert.pem\"\ntls-key-file = \"/s/key.pem\"\n\
             tls-client-ca-file = \"/s/ca.pem\"\n\
             http-tls-cert-file = \"/h/cert.pem\"\nhttp-tls-key-file = \"/h/key.pem\"\n\
             otlp-http-tls-client-ca-file = \"/o/ca.pem\"\n\
             auth-token-file = \"/t/otlp\"\napi-auth-token-file = \"/t/api\"",
        )
        .unwrap(),
    )
    .unwrap()
    .security;
    let grpc = c.otlp_grpc_tls.unwrap();
    assert_eq!(grpc.cert, ("tls-cert-file", PathBuf::from("/s/cert.pem")));
    assert_eq!(grpc.key, ("tls-key-file", PathBuf::from("/s/key.pem")));
    assert_eq!(
        grpc.client_ca,
        Some(("tls-client-ca-file", PathBuf::from("/s/ca.pem")))
    );
    let otlp_http = c.otlp_http_tls.unwrap();
    assert_eq!(otlp_http.cert.1, PathBuf::from("/s/cert.pem"));
    assert_eq!(
        otlp_http.client_ca,
        Some(("otlp-http-tls-client-ca-file", PathBuf::from("/o/ca.pem")))
    );
    let http = c.http_tls.unwrap();
    assert_eq!(
        http.cert,
        ("http-tls-cert-file", PathBuf::from("/h/cert.pem"))
    );
    assert_eq!(http.key.1, PathBuf::from("/h/key.pem"));
    assert_eq!(c.auth_token_file, Some(PathBuf::from("/t/otlp")));
    assert_eq!(c.api_auth_token_file, Some(PathBuf::from("/t/api")));
}

#[test]
fn one_listener_can_have_tls_alone() {
    let a = ServeArgs {
        otlp_grpc_tls_cert_file: Some("/g/cert.pem".into()),
        otlp_grpc_tls_key_file: Some("/g/key.pem".into()),
        // An empty value (an unset Helm value) is no value.
        tls_cert_file: Some("".into()),
        ..Default::default()
    };
    let c = resolve(a).unwrap().security;
    assert!(c.otlp_grpc_tls.is_some());
    assert!(c.otlp_http_tls.is_none() && c.http_tls.is_none());
}

#[test]
fn a_certificate_without_its_key_names_the_missing_option() {
    let cases = [
        (
            ServeArgs {
                tls_cert_file: Some("/c.pem".into()),
                ..Default::default()
            },
            "missing --tls-key-file: --tls-cert-file /c.pem",
        ),
        (
            ServeArgs {
                tls_key_file: Some("/k.pem".into()),
                ..Default::default()
            },
            "missing --tls-cert-file: --tls-key-file /k.pem",
        ),
        (
            ServeArgs {
                otlp_http_tls_cert_file: Some("/c.pem".into()),
                tls_key_file: Some("/k.pem".into()),
                tls_cert_file: Some("/s.pem".into()),
                ..Default::default()
            },
            "missing --otlp-http-tls-key-file",
        ),
        (
            ServeArgs {
                tls_client_ca_file: Some("/ca.pem".into()),
                ..Default::default()
            },
            "missing --tls-cert-file: --tls-client-ca-file /ca.pem",
        ),
        (
            ServeArgs {
                http_tls_client_ca_file: Some("/ca.pem".into()),
                otlp_grpc_tls_cert_file: Some("/c.pem".into()),
                otlp_grpc_tls_key_file: Some("/k.pem".into()),
                ..Default::default()
            },
            "missing --tls-cert-file: --http-tls-client-ca-file /ca.pem",
        ),
    ];
    for (args, expected) in cases {
        let e = resolve(args).unwrap_err().to_string();
        assert!(e.starts_with(expected), "{e}");
    }
}

#[test]
fn tls_and_token_options_come_from_the_environment_too() {
    let cli = Cli::try_parse_from([
        "faultline",
        "--otlp-grpc-tls-cert-file",
        "/g.pem",
        "--otlp-grpc-tls-key-file",
        "/g.key",
        "--auth-token-file",
        "/tokens",
    ])
    .unwrap();
    let c = resolve(cli.serve).unwrap().security;
    assert!(c.otlp_grpc_tls.is_some());
    assert_eq!(c.auth_token_file, Some(PathBuf::from("/tokens")));
    let names: Vec<String> = <Cli as clap::CommandFactory>::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for env in [
        "FAULTLINE_TLS_CERT_FILE",
        "FAULTLINE_TLS_KEY_FILE",
        "FAULTLINE_TLS_CLIENT_CA_FILE",
        "FAULTLINE_OTLP_GRPC_TLS_CLIENT_CA_FILE",
        "FAULTLINE_OTLP_HTTP_TLS_KEY_FILE",
        "FAULTLINE_HTTP_TLS_CERT_FILE",
        "FAULTLINE_AUTH_TOKEN_FILE",
        "FAULTLINE_API_AUTH_TOKEN_FILE",
    ] {
        assert!(names.iter().any(|n| n == env), "{env}");
    }
}

#[test]
fn forwarding_is_off_by_default_and_its_urls_follow_the_otlp_exporter_rules() {
    assert!(Config::default().forward.is_none());
    let c = resolve(
        parse_file("forward-endpoint = \"https://tempo:4318\"\nforward-protocol = \"http\"\nforward-header = \"authorization=Bearer x, x-tenant=a\"").unwrap(),
    )
    .unwrap();
    let f = c.forward.unwrap();
    assert_eq!(f.endpoint.to_string(), "https://tempo:4318/v1/traces");
    assert_eq!(f.mode, ForwardMode::Passthrough);
    assert_eq!((f.queue_size, f.concurrency, f.gzip), (100_000, 4, false));
    assert_eq!(f.headers.len(), 2);
    assert_eq!(f.headers[1].0.as_str(), "x-tenant");
    let refused = |endpoint: &str, extra: &str| {
        let text = format!("forward-endpoint = \"{endpoint}\"\n{extra}");
        resolve(parse_file(&text).unwrap()).unwrap_err().to_string()
    };
    assert!(refused("http://tempo:4317/v1/traces", "").contains("no path"));
    assert!(refused("tempo:4317", "").contains("--forward-endpoint"));
    assert!(
        refused("http://tempo:4317", "forward-tls-ca-file = \"/ca.pem\"").contains("use https://")
    );
    assert!(refused("https://t:1", "forward-tls-cert-file = \"/c.pem\"")
        .contains("--forward-tls-key-file"));
    assert!(refused("https://t:1", "forward-mode = \"tee\"").contains("--forward-mode"));
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    let e = parse_file("trace-idel = \"3s\"").unwrap_err();
    assert!(e.contains("trace-idel"), "{e}");
}
