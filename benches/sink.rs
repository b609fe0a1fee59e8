//! `faultline-sink`: an OTLP trace receiver that accepts and discards, for measuring the
//! forwarder (the downstream of `faultline --forward-endpoint`). It frames gRPC and HTTP
//! like any OTLP server but never decodes a span, so on a shared core it costs the load
//! generator as little as a receiver can. Prints requests and bytes received every second.
//!
//! ```sh
//! faultline-sink --grpc-listen 127.0.0.1:24317 --http-listen 127.0.0.1:24318
//! ```

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

#[derive(Parser)]
struct Args {
    /// OTLP/gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:24317")]
    grpc_listen: String,
    /// OTLP/HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:24318")]
    http_listen: String,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// Counts a request's bytes without decoding them.
#[derive(Clone)]
struct SkipCodec(Arc<Counts>);

impl tonic::codec::Codec for SkipCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = ();
    type Encoder = SkipCodec;
    type Decoder = SkipCodec;
    fn encoder(&mut self) -> Self::Encoder {
        self.clone()
    }
    fn decoder(&mut self) -> Self::Decoder {
        self.clone()
    }
}

impl tonic::codec::Encoder for SkipCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        _item: Self::Item,
        _dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        Ok(()) // the empty response is zero bytes
    }
}

impl tonic::codec::Decoder for SkipCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        let n = src.remaining();
        src.advance(n);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Some(()))
    }
}

#[derive(Clone)]
struct Sink(Arc<Counts>);

impl tonic::server::NamedService for Sink {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

struct Export;

impl tonic::server::UnaryService<()> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;
    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        ready(Ok(tonic::Response::new(
            ExportTraceServiceResponse::default(),
        )))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for Sink
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync + 'static>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut grpc = tonic::server::Grpc::new(SkipCodec(Arc::clone(&self.0)))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20);
        Box::pin(async move { Ok(grpc.unary(Export, req).await) })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counts = Arc::new(Counts::default());
    let grpc = tokio::net::TcpListener::bind(&args.grpc_listen).await?;
    let http = tokio::net::TcpListener::bind(&args.http_listen).await?;
    let c = Arc::clone(&counts);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            async {
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(http, app).await });
    let c = Arc::clone(&counts);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut r0, mut b0) = (0, 0);
        loop {
            tick.tick().await;
            let (r, b) = (
                c.requests.load(Ordering::Relaxed),
                c.bytes.load(Ordering::Relaxed),
            );
            if r != r0 {
                eprintln!("requests/s={} MB/s={:.1}", r - r0, (b - b0) as f64 / 1e6);
            }
            (r0, b0) = (r, b);
        }
    });
    tonic::transport::Server::builder()
        .add_service(Sink(counts))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc))
        .await?;
    Ok(())
}
