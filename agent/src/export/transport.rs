//! Sending OTLP: gRPC through tonic, HTTP/protobuf through reqwest.
//!
//! Failures are sorted as the OTLP specification says: a collector that is
//! down, overloaded or slow (gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, …; HTTP
//! 429, 502, 503, 504; a refused connection) is retried later; a request the
//! collector refuses (other 4xx, `INVALID_ARGUMENT`, …) is not, since it would
//! be refused again.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::config::{ExportConfig, ExportConfigError, Protocol};

/// What the collector did with a request it accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Points or records it rejected (partial success).
    pub(crate) rejected: u64,
    /// Its reason, if it gave one.
    pub(crate) message: String,
}

/// Why a request was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Worth trying again later.
    Retryable(String),
    /// Would be refused again.
    Permanent(String),
}

// One per exporter, built once: the size of the gRPC variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transport {
    Grpc {
        metrics: MetricsServiceClient<Channel>,
        logs: LogsServiceClient<Channel>,
        traces: TraceServiceClient<Channel>,
        headers: MetadataMap,
        timeout: Duration,
    },
    Http {
        client: reqwest::Client,
        metrics_url: String,
        logs_url: String,
        traces_url: String,
        headers: reqwest::header::HeaderMap,
        gzip: bool,
    },
}

fn bad_header(name: &str) -> ExportConfigError {
    ExportConfigError::Variable {
        variable: "OTEL_EXPORTER_OTLP_HEADERS",
        value: name.to_owned(),
        reason: "not a valid header name or value",
    }
}

impl Transport {
    /// A transport for `config`; must be called inside a tokio runtime. The
    /// gRPC channel connects lazily, so a collector that is down at start-up
    /// is only a failed first export.
    pub(crate) fn new(config: &ExportConfig) -> Result<Transport, ExportConfigError> {
        match config.protocol {
            Protocol::Grpc => {
                let url = config.metrics_url();
                let channel = Endpoint::from_str(&url)
                    .map_err(|_| ExportConfigError::Endpoint(url.clone()))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout)
                    .connect_lazy();
                let mut headers = MetadataMap::new();
                for (name, value) in &config.headers {
                    let key =
                        MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| bad_header(name))?;
                    let value = MetadataValue::try_from(value.as_str()).map_err(|_| bad_header(name))?;
                    headers.insert(key, value);
                }
                let mut metrics = MetricsServiceClient::new(channel.clone());
                let mut logs = LogsServiceClient::new(channel.clone());
                let mut traces = TraceServiceClient::new(channel);
                if config.gzip {
                    let gzip = CompressionEncoding::Gzip;
                    metrics = metrics.send_compressed(gzip).accept_compressed(gzip);
                    logs = logs.send_compressed(gzip).accept_compressed(gzip);
                    traces = traces.send_compressed(gzip).accept_compressed(gzip);
                }
                Ok(Transport::Grpc {
                    metrics,
                    logs,
                    traces,
                    headers,
                    timeout: config.timeout,
                })
            }
            Protocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &config.headers {
                    let key = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad_header(name))?;
                    let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| bad_header(name))?;
                    headers.insert(key, value);
                }
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .build()
                    .map_err(|_| ExportConfigError::Endpoint(config.metrics_url()))?;
                Ok(Transport::Http {
                    client,
                    metrics_url: config.metrics_url(),
                    logs_url: config.logs_url(),
                    traces_url: config.traces_url(),
                    headers,
                    gzip: config.gzip,
                })
            }
        }
    }

    pub(crate) async fn metrics(&mut self, request: &ExportMetricsServiceRequest) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc {
                metrics,
                headers,
                timeout,
                ..
            } => {
                let response = metrics.export(grpc_request(request.clone(), headers, *timeout)).await;
                let partial = response.map_err(grpc_error)?.into_inner().partial_success;
                Ok(partial.map_or_else(Accepted::default, |p| accepted(p.rejected_data_points, p.error_message)))
            }
            Transport::Http {
                client,
                metrics_url,
                headers,
                gzip,
                ..
            } => {
                let body = post(client, metrics_url, headers, *gzip, request.encode_to_vec()).await?;
                let partial = ExportMetricsServiceResponse::decode(body.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success);
                Ok(partial.map_or_else(Accepted::default, |p| accepted(p.rejected_data_points, p.error_message)))
            }
        }
    }

    pub(crate) async fn logs(&mut self, request: &ExportLogsServiceRequest) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc {
                logs, headers, timeout, ..
            } => {
                let response = logs.export(grpc_request(request.clone(), headers, *timeout)).await;
                let partial = response.map_err(grpc_error)?.into_inner().partial_success;
                Ok(partial.map_or_else(Accepted::default, |p| accepted(p.rejected_log_records, p.error_message)))
            }
            Transport::Http {
                client,
                logs_url,
                headers,
                gzip,
                ..
            } => {
                let body = post(client, logs_url, headers, *gzip, request.encode_to_vec()).await?;
                let partial = ExportLogsServiceResponse::decode(body.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success);
                Ok(partial.map_or_else(Accepted::default, |p| accepted(p.rejected_log_records, p.error_message)))
            }
        }
    }
}

impl Transport {
    pub(crate) async fn traces(&mut self, request: &ExportTraceServiceRequest) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc {
                traces,
                headers,
                timeout,
                ..
            } => {
                let response = traces.export(grpc_request(request.clone(), headers, *timeout)).await;
                let partial = response.map_err(grpc_error)?.into_inner().partial_success;
                Ok(partial.map_or_else(Accepted::default, |p| accepted(p.rejected_spans, p.error_message)))
            }
            Transport::Http {
                client,
                traces_url,
                headers,
                gzip,
                ..
            } => {
                let body = post(client, traces_url, headers, *gzip, request.encode_to_vec()).await?;
                let partial = ExportTraceServiceResponse::decode(body.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success);
                Ok(partial.map_or_else(Accepted::default, |p| accepted(p.rejected_spans, p.error_message)))
            }
        }
    }
}

fn accepted(rejected: i64, message: String) -> Accepted {
    Accepted {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message,
    }
}

fn grpc_request<T>(message: T, headers: &MetadataMap, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = headers.clone();
    request.set_timeout(timeout);
    request
}

fn grpc_error(status: tonic::Status) -> SendError {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::ResourceExhausted => SendError::Retryable(reason),
        _ => SendError::Permanent(reason),
    }
}

/// POSTs a protobuf body; returns the response body of a 2xx.
async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    gzip: bool,
    body: Vec<u8>,
) -> Result<Vec<u8>, SendError> {
    let mut request = client
        .post(url)
        .headers(headers.clone())
        .header("content-type", "application/x-protobuf");
    let body = if gzip {
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
        encoder
            .write_all(&body)
            .and_then(|_| encoder.finish())
            .map_err(|e| SendError::Permanent(format!("gzip: {e}")))?
    } else {
        body
    };
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::Retryable(format!("{url}: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| SendError::Retryable(format!("{url}: reading the response: {e}")))?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let reason = format!("{url} answered {status}: {text}");
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(SendError::Retryable(reason)),
        _ => Err(SendError::Permanent(reason)),
    }
}
