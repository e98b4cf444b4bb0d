//! Sending OTLP: gRPC through tonic, HTTP/protobuf through reqwest.
//!
//! Failures are sorted as the OTLP specification says: a collector that is
//! down, overloaded or slow (gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, …; HTTP
//! 429, 502, 503, 504; a refused connection) is retried later; a request the
//! collector refuses (other 4xx, `INVALID_ARGUMENT`, …) is not, since it would
//! be refused again.

use std::error::Error as _;
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

use super::config::{ExportConfig, ExportConfigError, Protocol, Signal, SignalSettings, TlsFiles};

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
    /// A TLS certificate was refused (ours or the collector's): worth
    /// retrying once the certificates are fixed, and worth a warning of its own.
    Tls(String),
}

/// How one signal is sent.
// One per signal, built once: the size of the gRPC variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Sender {
    Grpc {
        channel: Channel,
        headers: MetadataMap,
        settings: SignalSettings,
    },
    Http {
        client: reqwest::Client,
        headers: reqwest::header::HeaderMap,
        settings: SignalSettings,
    },
}

/// The three signals' senders.
pub(crate) struct Transport {
    metrics: Sender,
    logs: Sender,
    traces: Sender,
}

fn bad_header(settings: &SignalSettings, name: &str) -> ExportConfigError {
    ExportConfigError::Variable {
        variable: match settings.signal {
            Signal::Metrics => "metrics.headers",
            Signal::Logs => "logs.headers",
            Signal::Traces => "traces.headers",
        },
        value: name.to_owned(),
        reason: "not a valid header name or value",
    }
}

/// Connections made so far, shared by signals that go the same way.
#[derive(Default)]
struct Shared {
    channels: Vec<((String, TlsFiles, Duration), Channel)>,
    clients: Vec<((TlsFiles, Duration), reqwest::Client)>,
}

impl Shared {
    fn channel(&mut self, settings: &SignalSettings) -> Result<Channel, ExportConfigError> {
        let key = (settings.url.clone(), settings.tls.clone(), settings.timeout);
        if let Some((_, channel)) = self.channels.iter().find(|(k, _)| *k == key) {
            return Ok(channel.clone());
        }
        let url = &settings.url;
        #[allow(unused_mut)]
        let mut endpoint = Endpoint::from_str(url)
            .map_err(|_| ExportConfigError::Endpoint(url.clone()))?
            .connect_timeout(settings.timeout.min(CONNECT_TIMEOUT))
            .timeout(settings.timeout);
        #[cfg(feature = "tls")]
        if url.starts_with("https://") {
            let pem = super::tls::load(&settings.tls)?;
            let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = pem.ca {
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = pem.identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| ExportConfigError::Certificate {
                what: "TLS settings",
                path: settings.tls.certificate.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        }
        let channel = endpoint.connect_lazy();
        self.channels.push((key, channel.clone()));
        Ok(channel)
    }

    fn client(&mut self, settings: &SignalSettings) -> Result<reqwest::Client, ExportConfigError> {
        let key = (settings.tls.clone(), settings.timeout);
        if let Some((_, client)) = self.clients.iter().find(|(k, _)| *k == key) {
            return Ok(client.clone());
        }
        #[allow(unused_mut)]
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(CONNECT_TIMEOUT));
        #[cfg(feature = "tls")]
        {
            let pem = super::tls::load(&settings.tls)?;
            let refuse = |what: &'static str, path: &Option<std::path::PathBuf>, e: reqwest::Error| {
                ExportConfigError::Certificate {
                    what,
                    path: path.clone().unwrap_or_default(),
                    reason: e.to_string(),
                }
            };
            if let Some(ca) = pem.ca {
                let certificates = reqwest::Certificate::from_pem_bundle(&ca)
                    .map_err(|e| refuse("CA certificate", &settings.tls.certificate, e))?;
                for certificate in certificates {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            if let Some((mut cert, key)) = pem.identity {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
                let identity = reqwest::Identity::from_pem(&cert)
                    .map_err(|e| refuse("client certificate", &settings.tls.client_certificate, e))?;
                builder = builder.identity(identity);
            }
        }
        let client = builder
            .build()
            .map_err(|_| ExportConfigError::Endpoint(settings.url.clone()))?;
        self.clients.push((key, client.clone()));
        Ok(client)
    }
}

/// Longest wait for a connection (and its TLS handshake), within the timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Sender {
    fn new(settings: SignalSettings, shared: &mut Shared) -> Result<Sender, ExportConfigError> {
        match settings.protocol {
            Protocol::Grpc => {
                let channel = shared.channel(&settings)?;
                let mut headers = MetadataMap::new();
                for (name, value) in &settings.headers {
                    let key = MetadataKey::from_bytes(name.as_bytes()).map_err(|_| bad_header(&settings, name))?;
                    let value = MetadataValue::try_from(value.as_str()).map_err(|_| bad_header(&settings, name))?;
                    headers.insert(key, value);
                }
                Ok(Sender::Grpc {
                    channel,
                    headers,
                    settings,
                })
            }
            Protocol::HttpProtobuf => {
                let client = shared.client(&settings)?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &settings.headers {
                    let key = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| bad_header(&settings, name))?;
                    let value =
                        reqwest::header::HeaderValue::from_str(value).map_err(|_| bad_header(&settings, name))?;
                    headers.insert(key, value);
                }
                Ok(Sender::Http {
                    client,
                    headers,
                    settings,
                })
            }
        }
    }
}

/// One export of one signal: over gRPC with the service's client, or POSTed
/// and the response decoded; the partial success mapped to [`Accepted`].
macro_rules! export {
    ($sender:expr, $request:expr, $client:ident, $response:ty, $rejected:ident) => {{
        let partial = match $sender {
            Sender::Grpc {
                channel,
                headers,
                settings,
            } => {
                let mut client = $client::new(channel.clone());
                if settings.gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let mut request = tonic::Request::new($request.clone());
                *request.metadata_mut() = headers.clone();
                request.set_timeout(settings.timeout);
                let response = client.export(request).await;
                response
                    .map_err(|s| grpc_error(s, settings))?
                    .into_inner()
                    .partial_success
            }
            Sender::Http {
                client,
                headers,
                settings,
            } => {
                let body = post(client, settings, headers, $request.encode_to_vec()).await?;
                <$response>::decode(body.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success)
            }
        };
        Ok(partial.map_or_else(Accepted::default, |p| accepted(p.$rejected, p.error_message)))
    }};
}

impl Transport {
    /// A transport for `config`; must be called inside a tokio runtime.
    /// gRPC channels connect lazily, so a collector that is down at start-up
    /// is only a failed first export; the TLS files are read now, and one
    /// that cannot be used is an error now.
    pub(crate) fn new(config: &ExportConfig) -> Result<Transport, ExportConfigError> {
        let mut shared = Shared::default();
        Ok(Transport {
            metrics: Sender::new(config.settings(Signal::Metrics), &mut shared)?,
            logs: Sender::new(config.settings(Signal::Logs), &mut shared)?,
            traces: Sender::new(config.settings(Signal::Traces), &mut shared)?,
        })
    }

    pub(crate) async fn metrics(&mut self, request: &ExportMetricsServiceRequest) -> Result<Accepted, SendError> {
        export!(
            &self.metrics,
            request,
            MetricsServiceClient,
            ExportMetricsServiceResponse,
            rejected_data_points
        )
    }

    pub(crate) async fn logs(&mut self, request: &ExportLogsServiceRequest) -> Result<Accepted, SendError> {
        export!(
            &self.logs,
            request,
            LogsServiceClient,
            ExportLogsServiceResponse,
            rejected_log_records
        )
    }

    pub(crate) async fn traces(&mut self, request: &ExportTraceServiceRequest) -> Result<Accepted, SendError> {
        export!(
            &self.traces,
            request,
            TraceServiceClient,
            ExportTraceServiceResponse,
            rejected_spans
        )
    }
}

fn accepted(rejected: i64, message: String) -> Accepted {
    Accepted {
        rejected: u64::try_from(rejected).unwrap_or(0),
        message,
    }
}

fn grpc_error(status: tonic::Status, settings: &SignalSettings) -> SendError {
    use tonic::Code;
    let url = &settings.url;
    if let Some(hint) = super::tls::explain(&status, settings) {
        return SendError::Tls(format!("{url}: {hint}"));
    }
    // No answer from the collector at all (a connection that failed or
    // closed): worth retrying, whatever code tonic gave it.
    if status
        .source()
        .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some())
    {
        return SendError::Retryable(format!("{url}: {}", chain(&status)));
    }
    let reason = format!("{url}: gRPC {:?}: {}", status.code(), status.message());
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
    settings: &SignalSettings,
    headers: &reqwest::header::HeaderMap,
    body: Vec<u8>,
) -> Result<Vec<u8>, SendError> {
    let (url, gzip) = (settings.url.as_str(), settings.gzip);
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
        .map_err(|e| match super::tls::explain(&e, settings) {
            Some(hint) => SendError::Tls(format!("{url}: {hint}")),
            None => SendError::Retryable(format!("{url}: {}", chain(&e))),
        })?;
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

/// An error and its causes, `: `-separated (reqwest's own message is terse).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}
