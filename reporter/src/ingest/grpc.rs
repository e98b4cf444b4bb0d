//! OTLP/gRPC: the metrics, logs and trace services over one [`Receiver`].
//!
//! Logs and traces use the services `opentelemetry-proto` generates. Metrics,
//! the bulk of what agents send, has a service of its own ([`Metrics`]) with
//! the same path and framing, whose codec hands over the message's bytes, so
//! that they are read in place ([`super::wire`]) rather than decoded into
//! prost's types first.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::SERVICE_NAME as METRICS_SERVICE;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::bytes::{Buf, Bytes};
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};

use super::{Accepted, IngestError, Receiver};

/// The gRPC services over a [`Receiver`].
#[derive(Clone)]
pub struct Otlp(pub Arc<Receiver>);

/// Refuses a request without the right bearer token.
fn check<T>(receiver: &Receiver, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
    let given = request.metadata().get("authorization").map(|v| v.as_bytes());
    if receiver.authorized(given) {
        Ok(())
    } else {
        Err(tonic::Status::unauthenticated(
            "missing or wrong token: send authorization: Bearer <token>",
        ))
    }
}

/// A malformed message is INVALID_ARGUMENT; a store failure is UNAVAILABLE:
/// the client keeps the data and retries.
fn answer<R>(
    result: Result<Accepted, IngestError>,
    response: fn(Accepted) -> R,
) -> Result<tonic::Response<R>, tonic::Status> {
    result
        .map(|accepted| tonic::Response::new(response(accepted)))
        .map_err(|error| match error {
            IngestError::Malformed(_) => tonic::Status::invalid_argument(error.to_string()),
            _ => tonic::Status::unavailable(error.to_string()),
        })
}

/// The OTLP metrics service (`MetricsService/Export`), reading requests in place.
#[derive(Clone)]
pub struct Metrics {
    receiver: Arc<Receiver>,
    max_bytes: usize,
}

const EXPORT_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

impl NamedService for Metrics {
    const NAME: &'static str = METRICS_SERVICE;
}

impl<B> Service<http::Request<B>> for Metrics
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_METRICS {
            return Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) });
        }
        let (receiver, max_bytes) = (self.receiver.clone(), self.max_bytes);
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawMetrics)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max_bytes), None);
            Ok(grpc.unary(Export(receiver), request).await)
        })
    }
}

/// One export: checked, read in place, converted, stored.
struct Export(Arc<Receiver>);

impl UnaryService<Bytes> for Export {
    type Response = ExportMetricsServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            check(&receiver, &request)?;
            answer(
                receiver.metrics_protobuf(request.into_inner()).await,
                Accepted::metrics_response,
            )
        })
    }
}

/// Requests as their (decompressed) bytes; responses encoded by prost.
struct RawMetrics;

impl Codec for RawMetrics {
    type Encode = ExportMetricsServiceResponse;
    type Decode = Bytes;
    type Encoder = RawMetrics;
    type Decoder = RawMetrics;

    fn encoder(&mut self) -> Self::Encoder {
        RawMetrics
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawMetrics
    }
}

impl Encoder for RawMetrics {
    type Item = ExportMetricsServiceResponse;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        prost::Message::encode(&item, dst).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for RawMetrics {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        check(&self.0, &request)?;
        answer(self.0.logs(request.into_inner()).await, Accepted::logs_response)
    }
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        check(&self.0, &request)?;
        answer(self.0.traces(request.into_inner()).await, Accepted::traces_response)
    }
}

/// The gRPC router with all three services, accepting gzip and messages up
/// to `max_bytes`.
pub fn router(receiver: Arc<Receiver>, max_bytes: usize) -> tonic::transport::server::Router {
    let metrics = Metrics {
        receiver: receiver.clone(),
        max_bytes,
    };
    let otlp = Otlp(receiver);
    let gzip = CompressionEncoding::Gzip;
    tonic::transport::Server::builder()
        // Small answers must not wait on Nagle and delayed ACKs (40 ms stalls).
        .tcp_nodelay(true)
        .add_service(metrics)
        .add_service(
            LogsServiceServer::new(otlp.clone())
                .accept_compressed(gzip)
                .send_compressed(gzip)
                .max_decoding_message_size(max_bytes),
        )
        .add_service(
            TraceServiceServer::new(otlp)
                .accept_compressed(gzip)
                .send_compressed(gzip)
                .max_decoding_message_size(max_bytes),
        )
}
