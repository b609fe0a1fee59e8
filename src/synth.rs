//! Synthetic OTLP traffic for benches, the load generator and tests: realistic batches
//! (several services per request, ~10 attributes a span, exception events with stack
//! traces on a share of the traces), deterministic for a given seed.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

/// Shape of the generated traffic.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Spans per Export request (default 100).
    pub spans_per_request: usize,
    /// Spans per trace (default 20).
    pub spans_per_trace: usize,
    /// Share of traces that end in a 500 with an exception (default 0.1).
    pub error_ratio: f64,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// Distinct route templates the traces are spread over (default 1), to load the
    /// per-route metric series.
    pub routes: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            spans_per_request: 100,
            spans_per_trace: 20,
            error_ratio: 0.1,
            seed: 1,
            routes: 1,
        }
    }
}

const SERVICES: [&str; 4] = ["edge", "orders", "inventory", "payments"];

const PY_STACK: &str = "Traceback (most recent call last):\n  File \"/srv/app/.venv/lib/python3.11/site-packages/flask/app.py\", line 1484, in full_dispatch_request\n    rv = self.dispatch_request()\n  File \"/srv/app/inventory/handlers.py\", line 42, in reserve\n    sku = item[\"sku\"]\nKeyError: 'sku'\n";

/// An OTLP attribute `key` = `v`: the one key-value builder of the generator, the
/// benches and the unit tests (the black-box tests have theirs in their support module).
pub fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A string attribute.
pub fn str_kv(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

/// An integer attribute.
pub fn int_kv(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

/// A deterministic generator of Export requests.
pub struct Generator {
    cfg: SynthConfig,
    state: u64,
    clock_ns: u64,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: SynthConfig) -> Self {
        let state = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Generator {
            cfg,
            state,
            clock_ns: 1_764_000_000_000_000_000,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, good enough for ids and choices.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next request: `spans_per_request` spans of whole traces, grouped into one
    /// `ResourceSpans` per service as SDK exporters send them.
    pub fn next_request(&mut self) -> ExportTraceServiceRequest {
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
        let mut produced = 0;
        while produced < self.cfg.spans_per_request {
            let n = self
                .cfg
                .spans_per_trace
                .min(self.cfg.spans_per_request - produced)
                .max(1);
            self.trace(n, &mut by_service);
            produced += n;
        }
        ExportTraceServiceRequest {
            resource_spans: by_service
                .into_iter()
                .enumerate()
                .filter(|(_, spans)| !spans.is_empty())
                .map(|(idx, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            str_kv("service.name", SERVICES[idx]),
                            str_kv("service.version", "2026.11.2"),
                            str_kv("deployment.environment.name", "production"),
                            str_kv("cloud.region", "eu-west-1"),
                            str_kv("telemetry.sdk.language", "python"),
                            str_kv("host.name", format!("{}-7f9c-{}", SERVICES[idx], idx)),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "opentelemetry.instrumentation.flask".into(),
                            version: "0.50b0".into(),
                            ..Default::default()
                        }),
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.27.0".into(),
                })
                .collect(),
        }
    }

    fn trace(&mut self, n: usize, out: &mut [Vec<Span>]) {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&self.next().to_be_bytes());
        trace_id[8..].copy_from_slice(&self.next().to_be_bytes());
        let failing = (self.next() % 10_000) as f64 / 10_000.0 < self.cfg.error_ratio;
        let start = self.clock_ns;
        self.clock_ns += 1_000_000;
        let total_ns = 50_000_000 + self.next() % 100_000_000;
        let route = match self.cfg.routes {
            0 | 1 => "/api/orders/{order_id}".to_string(),
            r => format!("/api/r{}/{{order_id}}", self.next() % r as u64),
        };
        let mut ids: Vec<[u8; 8]> = Vec::with_capacity(n);
        for k in 0..n {
            let span_id = (self.next() | 1).to_be_bytes();
            let parent = if k == 0 {
                None
            } else {
                Some(ids[(self.next() as usize) % k])
            };
            let service = if k == 0 {
                0
            } else {
                1 + (self.next() as usize) % (SERVICES.len() - 1)
            };
            let offset = if k == 0 {
                0
            } else {
                (k as u64 * total_ns) / (n as u64 * 2)
            };
            let dur = if k == 0 {
                total_ns
            } else {
                total_ns / (n as u64)
            };
            let kind = match k {
                0 => 2,
                _ if k % 3 == 0 => 3,
                _ if k % 3 == 1 => 2,
                _ => 1,
            };
            let status = if failing && (k == 0 || k == n - 1) {
                500
            } else {
                200
            };
            let mut attributes = self.http_attributes(&route, service, status);
            if kind == 3 && k % 2 == 0 {
                attributes[0] = str_kv("db.system", "postgresql");
                attributes[1] = str_kv("db.statement", "SELECT * FROM orders WHERE id = $1");
            }
            let mut events = Vec::new();
            if failing && k == n - 1 {
                events.push(exception_event(start + offset + dur / 2));
            }
            out[service].push(Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: if kind == 2 {
                    "GET /api/orders/{order_id}".into()
                } else {
                    format!("op-{}", k % 7)
                },
                kind,
                start_time_unix_nano: start + offset,
                end_time_unix_nano: start + offset + dur,
                attributes,
                events,
                status: Some(Status {
                    code: if status == 500 { 2 } else { 0 },
                    message: String::new(),
                }),
                flags: 0x100,
                ..Default::default()
            });
            ids.push(span_id);
        }
    }

    /// The HTTP attributes of a span of `service` on `route` answering `status` (two of
    /// them drawn from the generator, in this order: the path, then the tenant).
    fn http_attributes(&mut self, route: &str, service: usize, status: i64) -> Vec<KeyValue> {
        vec![
            str_kv("http.request.method", "GET"),
            str_kv("http.route", route),
            str_kv("url.path", format!("/api/orders/{}", self.next() % 100_000)),
            str_kv("url.scheme", "http"),
            str_kv(
                "server.address",
                format!("{}.svc.cluster.local", SERVICES[service]),
            ),
            int_kv("server.port", 8080),
            str_kv("network.protocol.version", "1.1"),
            str_kv("user_agent.original", "python-requests/2.32.3"),
            str_kv("app.tenant", format!("tenant-{}", self.next() % 50)),
            int_kv("http.response.status_code", status),
        ]
    }
}

/// The exception event of a failing trace's last span: Python's `KeyError`, with stack.
fn exception_event(time_unix_nano: u64) -> span::Event {
    span::Event {
        time_unix_nano,
        name: "exception".into(),
        attributes: vec![
            str_kv("exception.type", "KeyError"),
            str_kv("exception.message", "'sku'"),
            str_kv("exception.stacktrace", PY_STACK),
            kv("exception.escaped", any_value::Value::BoolValue(true)),
        ],
        dropped_attributes_count: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_asked_number_of_spans_and_are_deterministic() {
        let mut g = Generator::new(SynthConfig::default());
        let r = g.next_request();
        let n: usize = r
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(n, 100);
        assert!(r.resource_spans.len() > 1, "several services per request");
        let mut g2 = Generator::new(SynthConfig::default());
        assert_eq!(g2.next_request(), r);
    }
}
