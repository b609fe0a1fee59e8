//! A test OTLP receiver for the forwarder's tests: OTLP/gRPC (tonic's generated
//! TraceService, gzip accepted) or OTLP/HTTP (protobuf, gzip accepted) on a chosen
//! loopback port, recording every request, answering as the test says (accept, throttle
//! with RetryInfo / Retry-After, refuse as bad), and stoppable and restartable on the
//! same port (a backend that goes down mid-stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Accept and record.
    Accept,
    /// gRPC UNAVAILABLE with RetryInfo / HTTP 503 with Retry-After (seconds), not recorded.
    Throttle(u64),
    /// gRPC INVALID_ARGUMENT / HTTP 400, not recorded.
    Refuse,
}

/// One span as received: its ids, name, attributes, and its resource's and scope's.
#[derive(Debug, Clone)]
pub struct Received {
    pub trace_id: String,
    pub span_id: String,
    pub name: String,
    pub attributes: Vec<KeyValue>,
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }
    pub fn resource_attr(&self, key: &str) -> Option<&Value> {
        self.resource
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }
}

#[derive(Default)]
struct Shared {
    behaviour: Option<Behaviour>,
    spans: Vec<Received>,
    requests: usize,
    refused_requests: usize,
    /// `authorization` header of the last request, and whether it was gzipped.
    last_authorization: Option<String>,
    last_gzip: bool,
}

/// The receiver. Dropping it stops the server.
pub struct Downstream {
    pub port: u16,
    http: bool,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn record(shared: &Mutex<Shared>, req: ExportTraceServiceRequest) {
    let mut s = shared.lock().unwrap();
    s.requests += 1;
    for rs in req.resource_spans {
        let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
        for ss in rs.scope_spans {
            let scope_name = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                s.spans.push(Received {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    name: span.name,
                    attributes: span.attributes,
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                });
            }
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Grpc(Arc<Mutex<Shared>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        use tonic_types::{ErrorDetails, StatusExt};
        let behaviour = {
            let mut s = self.0.lock().unwrap();
            s.last_authorization = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            s.last_gzip = request
                .metadata()
                .get("grpc-encoding")
                .is_some_and(|v| v == "gzip");
            s.behaviour.unwrap_or(Behaviour::Accept)
        };
        match behaviour {
            Behaviour::Accept => {
                record(&self.0, request.into_inner());
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
            Behaviour::Throttle(secs) => {
                self.0.lock().unwrap().refused_requests += 1;
                Err(tonic::Status::with_error_details(
                    tonic::Code::Unavailable,
                    "busy",
                    ErrorDetails::with_retry_info(Some(Duration::from_secs(secs))),
                ))
            }
            Behaviour::Refuse => {
                self.0.lock().unwrap().refused_requests += 1;
                Err(tonic::Status::invalid_argument("bad data"))
            }
        }
    }
}

async fn http_export(
    axum::extract::State(shared): axum::extract::State<Arc<Mutex<Shared>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let behaviour = {
        let mut s = shared.lock().unwrap();
        s.last_authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        s.last_gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
        s.behaviour.unwrap_or(Behaviour::Accept)
    };
    match behaviour {
        Behaviour::Accept => {
            let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
                    .unwrap();
                out
            } else {
                body.to_vec()
            };
            record(
                &shared,
                ExportTraceServiceRequest::decode(&body[..]).unwrap(),
            );
            (
                [("content-type", "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Behaviour::Throttle(secs) => {
            shared.lock().unwrap().refused_requests += 1;
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", secs.to_string())],
                "busy",
            )
                .into_response()
        }
        Behaviour::Refuse => {
            shared.lock().unwrap().refused_requests += 1;
            (axum::http::StatusCode::BAD_REQUEST, "bad data").into_response()
        }
    }
}

impl Downstream {
    /// A receiver that will listen on `port` once [`Downstream::up`] is called.
    pub fn new(port: u16, http: bool) -> Downstream {
        Downstream {
            port,
            http,
            shared: Arc::default(),
            stop: None,
            thread: None,
        }
    }

    /// A gRPC receiver listening now on a free port.
    pub fn grpc() -> Downstream {
        let mut d = Downstream::new(crate::support::free_port(), false);
        d.up();
        d
    }

    /// An HTTP receiver listening now on a free port.
    pub fn http() -> Downstream {
        let mut d = Downstream::new(crate::support::free_port(), true);
        d.up();
        d
    }

    /// The endpoint to give `--forward-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts listening (again) on the port.
    pub fn up(&mut self) {
        assert!(self.thread.is_none(), "already up");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&self.shared);
        let (port, http) = (self.port, self.http);
        self.thread = Some(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind the downstream port");
                ready_tx.send(()).unwrap();
                if http {
                    let app = axum::Router::new()
                        .route("/v1/traces", axum::routing::post(http_export))
                        .with_state(shared);
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .unwrap();
                } else {
                    let svc = TraceServiceServer::new(Grpc(shared))
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                        .max_decoding_message_size(16 << 20);
                    tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            async {
                                let _ = stop_rx.await;
                            },
                        )
                        .await
                        .unwrap();
                }
            });
        }));
        self.stop = Some(stop_tx);
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("downstream listening");
    }

    /// Stops listening (connections are closed; the port is free again).
    pub fn down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.shared.lock().unwrap().behaviour = Some(behaviour);
    }

    /// The `authorization` header of the last request and whether its body was gzipped.
    pub fn last_request_headers(&self) -> (Option<String>, bool) {
        let s = self.shared.lock().unwrap();
        (s.last_authorization.clone(), s.last_gzip)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.shared.lock().unwrap().spans.clone()
    }

    pub fn span_count(&self) -> usize {
        self.shared.lock().unwrap().spans.len()
    }

    pub fn refused_requests(&self) -> usize {
        self.shared.lock().unwrap().refused_requests
    }

    /// Waits until at least `n` spans arrived; returns how many did.
    pub fn wait_spans(&self, n: usize, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.span_count();
            if got >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Span ids received more than once.
    pub fn duplicates(&self) -> Vec<String> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for s in self.spans() {
            *seen
                .entry(format!("{}/{}", s.trace_id, s.span_id))
                .or_default() += 1;
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect()
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.down();
    }
}
