//! OTLP/gRPC: the metrics service (logs and traces are not stored yet, and
//! say so rather than acknowledge what they would drop).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use tonic::codec::CompressionEncoding;

use super::{IngestError, Receiver};

/// The gRPC metrics service over a [`Receiver`].
#[derive(Clone)]
pub struct Metrics(pub Arc<Receiver>);

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        match self.0.metrics(request.into_inner()).await {
            Ok(accepted) => Ok(tonic::Response::new(accepted.response())),
            // UNAVAILABLE: the client keeps the data and retries.
            Err(error @ (IngestError::Store(_) | IngestError::Writer)) => {
                Err(tonic::Status::unavailable(error.to_string()))
            }
        }
    }
}

/// The gRPC server's services, accepting gzip and messages up to `max_bytes`.
pub fn service(receiver: Arc<Receiver>, max_bytes: usize) -> MetricsServiceServer<Metrics> {
    MetricsServiceServer::new(Metrics(receiver))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}
