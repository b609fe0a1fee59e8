//! A small OTLP/gRPC front that routes each span to one replica by its trace id, as the
//! Collector's `loadbalancing` exporter does with `routing_key: traceID` (the README and
//! docs/fleet.md show that exporter's real configuration; this stands in for it in the
//! fleet test). Spans are regrouped per replica under their own resource and scope, so a
//! trace's spans always reach the same replica. The replicas' endpoints can be replaced
//! while it runs (a restarted replica listens on new ports).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use tonic::{Request, Response, Status};

/// The replica of a trace id: a hash of its 16 bytes (FNV-1a), modulo the replica count.
pub fn replica_of(trace_id: &[u8], replicas: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in trace_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % replicas as u64) as usize
}

/// Splits one request into one request per replica.
pub fn split(req: ExportTraceServiceRequest, replicas: usize) -> Vec<ExportTraceServiceRequest> {
    let mut out: Vec<ExportTraceServiceRequest> = (0..replicas)
        .map(|_| ExportTraceServiceRequest::default())
        .collect();
    for rs in req.resource_spans {
        let mut per: HashMap<usize, ResourceSpans> = HashMap::new();
        for ss in rs.scope_spans {
            let mut scoped: HashMap<usize, ScopeSpans> = HashMap::new();
            for span in ss.spans {
                let r = replica_of(&span.trace_id, replicas);
                scoped
                    .entry(r)
                    .or_insert_with(|| ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    })
                    .spans
                    .push(span);
            }
            for (r, s) in scoped {
                per.entry(r)
                    .or_insert_with(|| ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    })
                    .scope_spans
                    .push(s);
            }
        }
        for (r, s) in per {
            out[r].resource_spans.push(s);
        }
    }
    out
}

struct Front {
    endpoints: Arc<RwLock<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Front {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let endpoints = self.endpoints.read().unwrap().clone();
        for (i, part) in split(request.into_inner(), endpoints.len())
            .into_iter()
            .enumerate()
        {
            if part.resource_spans.is_empty() {
                continue;
            }
            // A replica that refuses makes the whole request retryable for the SDK, as
            // the Collector's exporter would report it.
            let mut c = TraceServiceClient::connect(endpoints[i].clone())
                .await
                .map_err(|e| Status::unavailable(format!("replica {i}: {e}")))?;
            c.export(part).await?;
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The running front.
pub struct LbFront {
    pub endpoint: String,
    endpoints: Arc<RwLock<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LbFront {
    /// Starts the front on an ephemeral loopback port, routing to `endpoints`.
    pub fn start(endpoints: Vec<String>) -> LbFront {
        let endpoints = Arc::new(RwLock::new(endpoints));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&endpoints);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(Front { endpoints: shared }))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stop_rx.await;
                        },
                    )
                    .await
                    .unwrap();
            });
        });
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("front listening");
        LbFront {
            endpoint: format!("http://{addr}"),
            endpoints,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Points replica `i` at a new endpoint.
    pub fn set(&self, i: usize, endpoint: String) {
        self.endpoints.write().unwrap()[i] = endpoint;
    }
}

impl Drop for LbFront {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
