//! OTLP/gRPC: the metrics, logs and trace services over one [`Receiver`].

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::codec::CompressionEncoding;

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

/// A store failure is UNAVAILABLE: the client keeps the data and retries.
fn answer<R>(
    result: Result<Accepted, IngestError>,
    response: fn(Accepted) -> R,
) -> Result<tonic::Response<R>, tonic::Status> {
    result
        .map(|accepted| tonic::Response::new(response(accepted)))
        .map_err(|error| tonic::Status::unavailable(error.to_string()))
}

#[tonic::async_trait]
impl MetricsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        check(&self.0, &request)?;
        answer(self.0.metrics(request.into_inner()).await, Accepted::metrics_response)
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
    let otlp = Otlp(receiver);
    let gzip = CompressionEncoding::Gzip;
    tonic::transport::Server::builder()
        // Small answers must not wait on Nagle and delayed ACKs (40 ms stalls).
        .tcp_nodelay(true)
        .add_service(
            MetricsServiceServer::new(otlp.clone())
                .accept_compressed(gzip)
                .send_compressed(gzip)
                .max_decoding_message_size(max_bytes),
        )
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
