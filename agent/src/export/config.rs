//! Export configuration: what the program sets, then the standard `OTEL_*`
//! environment variables ([`ExportConfig::with_env`], read in `env`) for
//! what it left unset, then the OpenTelemetry defaults.
//!
//! Every exporter option can be set for all signals (the fields of
//! [`ExportConfig`]) or for one signal ([`ExportConfig::metrics`],
//! [`logs`](ExportConfig::logs), [`traces`](ExportConfig::traces)). For one
//! signal an option resolves, first set wins: the signal's own field, the
//! all-signals field, the signal's variable (`OTEL_EXPORTER_OTLP_METRICS_*`),
//! the all-signals variable (`OTEL_EXPORTER_OTLP_*`), the default. Code wins
//! over the environment, as in opentelemetry-otlp; headers are the exception,
//! merged by name with the variable's value winning, as opentelemetry-otlp
//! does too. docs/agent-config.md has the table.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_proto::tonic::resource::v1::Resource;

use super::encode::string;

/// How the agent talks OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318): the spec's default.
    HttpProtobuf,
}

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip: the agent's default (the spec leaves the default to each SDK).
    Gzip,
    /// Uncompressed.
    None,
}

/// Why an export configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportConfigError {
    /// A value set in code that the agent cannot use. (A bad environment
    /// variable is not an error: it is logged and ignored, as the spec says.)
    #[error("{variable}={value:?}: {reason}")]
    Variable {
        /// The setting.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong, and what would do.
        reason: &'static str,
    },
    /// The endpoint is not an absolute `http://` or `https://` URL.
    #[error("endpoint {0:?} is not an http:// or https:// URL (for example http://localhost:4318)")]
    Endpoint(String),
    /// `https` needs TLS, which this build does not have.
    #[error("endpoint {0:?} uses https, but kuroko-agent was built without its `tls` feature")]
    Tls(String),
    /// A certificate or key file that cannot be used.
    #[error("{what} {path:?}: {reason}")]
    Certificate {
        /// Which file: CA certificate, client certificate, client key.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A zero interval, or an empty buffer.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
}

/// The options one signal may set for itself, each winning over the
/// all-signals field of [`ExportConfig`] of the same name.
///
/// `#[non_exhaustive]`: start from [`SignalConfig::default`] and use the
/// `with_*` methods (or assign fields).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SignalConfig {
    /// OTLP/gRPC or OTLP/HTTP for this signal.
    pub protocol: Option<Protocol>,
    /// This signal's full URL, used as is (no `/v1/...` appended).
    pub endpoint: Option<String>,
    /// Headers for this signal, after the all-signals ones (same name: this one).
    pub headers: Vec<(String, String)>,
    /// Longest one export of this signal may take; zero means no limit.
    pub timeout: Option<Duration>,
    /// This signal's compression.
    pub compression: Option<Compression>,
    /// PEM file of CA certificates trusted besides the system's.
    pub certificate: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS.
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
}

/// Where and how often to export. Unset (`None`) options take the
/// `OTEL_*` variables when [`ExportConfig::with_env`] is applied, else the
/// OpenTelemetry defaults.
///
/// `#[non_exhaustive]`, so that new options are not a breaking change:
/// start from [`ExportConfig::default`] and use the `with_*` methods (or
/// assign fields).
///
/// ```
/// use std::time::Duration;
/// use kuroko_agent::export::{ExportConfig, Protocol};
///
/// let config = ExportConfig::default()
///     .with_protocol(Protocol::Grpc)
///     .with_endpoint("https://collector.internal:4317")
///     .with_header("authorization", "Bearer s3cret")
///     .with_interval(Duration::from_secs(10))
///     .with_service_name("cards-api");
/// assert_eq!(config.traces_url(), "https://collector.internal:4317");
/// // Then `.with_env()` fills what the code left unset from the OTEL_* variables.
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExportConfig {
    /// OTLP/gRPC or OTLP/HTTP. Default: HTTP/protobuf.
    pub protocol: Option<Protocol>,
    /// Base endpoint: `http://localhost:4318` for HTTP (`/v1/metrics`,
    /// `/v1/logs` and `/v1/traces` are appended), `http://localhost:4317`
    /// for gRPC (used as is).
    pub endpoint: Option<String>,
    /// Headers sent with every export, e.g. an auth token.
    pub headers: Vec<(String, String)>,
    /// Longest an export may take. Default: 10 s; zero means no limit.
    pub timeout: Option<Duration>,
    /// Request compression. Default: gzip.
    pub compression: Option<Compression>,
    /// PEM file of CA certificates trusted besides the system's, for a
    /// collector whose certificate a private CA signed.
    pub certificate: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS.
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// Options for metrics alone.
    pub metrics: SignalConfig,
    /// Options for logs (errors) alone.
    pub logs: SignalConfig,
    /// Options for traces alone.
    pub traces: SignalConfig,
    /// Time between harvests. Default: 60 s.
    pub interval: Option<Duration>,
    /// Unsent intervals kept for retry; past it the oldest is dropped and
    /// counted. Default: 30.
    pub buffer_intervals: usize,
    /// Scale of the exported exponential histograms; see the `exponential`
    /// module for the error bound. Default: 7 (percentiles within 0.66%).
    pub histogram_scale: i32,
    /// `service.name`; the agent's configured name when unset.
    pub service_name: Option<String>,
    /// `service.version`.
    pub service_version: Option<String>,
    /// `deployment.environment.name`, e.g. `production`.
    pub environment: Option<String>,
    /// `host.name`; this machine's hostname when unset.
    pub host_name: Option<String>,
    /// More resource attributes.
    pub resource_attributes: Vec<(String, String)>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            protocol: None,
            endpoint: None,
            headers: Vec::new(),
            timeout: None,
            compression: None,
            certificate: None,
            client_certificate: None,
            client_key: None,
            metrics: SignalConfig::default(),
            logs: SignalConfig::default(),
            traces: SignalConfig::default(),
            interval: None,
            buffer_intervals: 30,
            histogram_scale: super::exponential::DEFAULT_SCALE,
            service_name: None,
            service_version: None,
            environment: None,
            host_name: None,
            resource_attributes: Vec::new(),
        }
    }
}

/// The `with_*` setters of the options that [`ExportConfig`] sets for all
/// signals and [`SignalConfig`] for one, then `more` of the type's own.
macro_rules! option_setters {
    ($($more:tt)*) => {
        crate::setters::setters! {
            with_protocol => protocol: some Protocol,
            with_endpoint => endpoint: some String,
            with_timeout => timeout: some Duration,
            with_compression => compression: some Compression,
            with_certificate => certificate: some PathBuf,
            with_client_certificate => client_certificate: some PathBuf,
            with_client_key => client_key: some PathBuf,
            $($more)*
        }

        /// Adds a header sent with the exports (of this signal, on a
        /// [`SignalConfig`]), e.g. an auth token.
        #[must_use]
        pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }
    };
}

impl SignalConfig {
    option_setters! {}
}

impl ExportConfig {
    option_setters! {
        with_metrics => metrics: value SignalConfig,
        with_logs => logs: value SignalConfig,
        with_traces => traces: value SignalConfig,
        with_interval => interval: some Duration,
        with_buffer_intervals => buffer_intervals: value usize,
        with_histogram_scale => histogram_scale: value i32,
        with_service_name => service_name: some String,
        with_service_version => service_version: some String,
        with_environment => environment: some String,
        with_host_name => host_name: some String,
    }

    /// Adds a resource attribute.
    #[must_use]
    pub fn with_resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }
}

/// The default export timeout (spec: 10 s).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default harvest interval (spec's `OTEL_METRIC_EXPORT_INTERVAL`: 60 s).
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// What a zero timeout ("no limit") stands for: 2³¹−1 ms, about 24.8 days,
/// as the spec suggests.
pub(crate) const NO_LIMIT: Duration = Duration::from_millis(i32::MAX as u64);

/// One of the three OTLP signals the agent sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Metrics,
    Logs,
    Traces,
}

impl Signal {
    pub(crate) const ALL: [Signal; 3] = [Signal::Metrics, Signal::Logs, Signal::Traces];

    /// `metrics`, `logs`, `traces`: the path segment and the word in logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }

    /// `METRICS`, `LOGS`, `TRACES`: the infix of the per-signal variables.
    pub(crate) fn infix(self) -> &'static str {
        match self {
            Signal::Metrics => "METRICS",
            Signal::Logs => "LOGS",
            Signal::Traces => "TRACES",
        }
    }
}

/// The TLS files one signal uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsFiles {
    pub(crate) certificate: Option<PathBuf>,
    pub(crate) client_certificate: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

/// Everything one signal's sender needs, resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SignalSettings {
    pub(crate) signal: Signal,
    pub(crate) protocol: Protocol,
    pub(crate) url: String,
    /// Unique names (lower case), in order; later settings replaced earlier ones.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) gzip: bool,
    pub(crate) tls: TlsFiles,
}

/// `headers` with `more` merged in: a name already there (any case) takes
/// the later value.
pub(crate) fn merge_headers(headers: &mut Vec<(String, String)>, more: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in more {
        let name = name.trim().to_ascii_lowercase();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => headers.push((name, value)),
        }
    }
}

impl ExportConfig {
    /// The all-signals options, in the shape of one signal's.
    pub(crate) fn all_signals(&self) -> SignalConfig {
        SignalConfig {
            protocol: self.protocol,
            endpoint: self.endpoint.clone(),
            headers: self.headers.clone(),
            timeout: self.timeout,
            compression: self.compression,
            certificate: self.certificate.clone(),
            client_certificate: self.client_certificate.clone(),
            client_key: self.client_key.clone(),
        }
    }

    /// Sets the all-signals options from `all` (the inverse of [`Self::all_signals`]).
    pub(crate) fn set_all_signals(&mut self, all: SignalConfig) {
        self.protocol = all.protocol;
        self.endpoint = all.endpoint;
        self.headers = all.headers;
        self.timeout = all.timeout;
        self.compression = all.compression;
        self.certificate = all.certificate;
        self.client_certificate = all.client_certificate;
        self.client_key = all.client_key;
    }

    pub(crate) fn signal_config(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
            Signal::Traces => &self.traces,
        }
    }

    pub(crate) fn signal_config_mut(&mut self, signal: Signal) -> &mut SignalConfig {
        match signal {
            Signal::Metrics => &mut self.metrics,
            Signal::Logs => &mut self.logs,
            Signal::Traces => &mut self.traces,
        }
    }

    /// How `signal` is sent: its own option, else the all-signals one, else
    /// the default.
    pub(crate) fn settings(&self, signal: Signal) -> SignalSettings {
        let own = self.signal_config(signal);
        let protocol = own.protocol.or(self.protocol).unwrap_or(Protocol::HttpProtobuf);
        let url = match (&own.endpoint, protocol) {
            (Some(url), _) => url.trim().to_owned(),
            (None, Protocol::Grpc) => self.base(protocol),
            (None, Protocol::HttpProtobuf) => format!("{}/v1/{}", self.base(protocol), signal.name()),
        };
        let mut headers = Vec::new();
        merge_headers(&mut headers, self.headers.iter().cloned());
        merge_headers(&mut headers, own.headers.iter().cloned());
        let timeout = match own.timeout.or(self.timeout).unwrap_or(DEFAULT_TIMEOUT) {
            zero if zero.is_zero() => NO_LIMIT,
            timeout => timeout,
        };
        SignalSettings {
            signal,
            protocol,
            url,
            headers,
            timeout,
            gzip: own.compression.or(self.compression).unwrap_or(Compression::Gzip) == Compression::Gzip,
            tls: TlsFiles {
                certificate: own.certificate.clone().or_else(|| self.certificate.clone()),
                client_certificate: own
                    .client_certificate
                    .clone()
                    .or_else(|| self.client_certificate.clone()),
                client_key: own.client_key.clone().or_else(|| self.client_key.clone()),
            },
        }
    }

    /// The base endpoint for `protocol`, without a trailing `/`.
    fn base(&self, protocol: Protocol) -> String {
        let default = match protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        };
        self.endpoint
            .as_deref()
            .unwrap_or(default)
            .trim()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Time between harvests.
    pub(crate) fn harvest_interval(&self) -> Duration {
        self.interval.unwrap_or(DEFAULT_INTERVAL)
    }

    /// The longest timeout of the three signals: how long a last flush may take.
    pub(crate) fn longest_timeout(&self) -> Duration {
        Signal::ALL
            .iter()
            .map(|&s| self.settings(s).timeout)
            .max()
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Checks the configuration, naming what is wrong.
    pub fn validate(&self) -> Result<(), ExportConfigError> {
        for (name, zero) in [
            ("interval", self.interval.is_some_and(|i| i.is_zero())),
            ("buffer_intervals", self.buffer_intervals == 0),
        ] {
            if zero {
                return Err(ExportConfigError::Zero(name));
            }
        }
        for signal in Signal::ALL {
            let settings = self.settings(signal);
            let url = settings.url;
            let rest = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
                (Some(rest), _) => rest,
                (_, Some(rest)) if cfg!(feature = "tls") => rest,
                (_, Some(_)) => return Err(ExportConfigError::Tls(url)),
                _ => return Err(ExportConfigError::Endpoint(url)),
            };
            if rest.is_empty() || rest.starts_with('/') {
                return Err(ExportConfigError::Endpoint(url));
            }
            let tls = settings.tls;
            match (&tls.client_certificate, &tls.client_key) {
                (Some(path), None) => {
                    return Err(ExportConfigError::Certificate {
                        what: "client certificate",
                        path: path.clone(),
                        reason: "needs its private key too (client_key, OTEL_EXPORTER_OTLP_CLIENT_KEY)".to_owned(),
                    })
                }
                (None, Some(path)) => {
                    return Err(ExportConfigError::Certificate {
                        what: "client key",
                        path: path.clone(),
                        reason: "needs its certificate too (client_certificate, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)"
                            .to_owned(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Where metrics go: the gRPC endpoint, or the HTTP URL.
    pub fn metrics_url(&self) -> String {
        self.settings(Signal::Metrics).url
    }

    /// Where logs go: the gRPC endpoint, or the HTTP URL.
    pub fn logs_url(&self) -> String {
        self.settings(Signal::Logs).url
    }

    /// Where traces go: the gRPC endpoint, or the HTTP URL.
    pub fn traces_url(&self) -> String {
        self.settings(Signal::Traces).url
    }

    /// The OTLP resource: `service.name`, `service.version`, `host.name`,
    /// `deployment.environment.name`, then the extra attributes.
    pub(crate) fn resource(&self, default_service_name: &str) -> Resource {
        let mut attributes = vec![string(
            "service.name",
            self.service_name.as_deref().unwrap_or(default_service_name),
        )];
        if let Some(version) = &self.service_version {
            attributes.push(string("service.version", version));
        }
        attributes.push(string("host.name", self.host_name.clone().unwrap_or_else(hostname)));
        if let Some(environment) = &self.environment {
            attributes.push(string("deployment.environment.name", environment));
        }
        for (key, value) in &self.resource_attributes {
            attributes.push(string(key, value));
        }
        attributes.push(string("telemetry.sdk.name", "kuroko-agent"));
        attributes.push(string("telemetry.sdk.language", "rust"));
        attributes.push(string("telemetry.sdk.version", env!("CARGO_PKG_VERSION")));
        Resource {
            attributes,
            ..Default::default()
        }
    }
}

/// This machine's name, from the kernel or the environment.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_option_wins_over_the_all_signals_one() {
        let config = ExportConfig {
            endpoint: Some("http://collector:4318/".into()),
            timeout: Some(Duration::from_secs(3)),
            headers: vec![("Authorization".into(), "a".into()), ("x-team".into(), "cards".into())],
            logs: SignalConfig {
                endpoint: Some("http://logs:9999/custom".into()),
                timeout: Some(Duration::ZERO),
                headers: vec![("authorization".into(), "b".into())],
                compression: Some(Compression::None),
                ..SignalConfig::default()
            },
            ..ExportConfig::default()
        };
        let metrics = config.settings(Signal::Metrics);
        assert_eq!(metrics.url, "http://collector:4318/v1/metrics");
        assert_eq!((metrics.timeout, metrics.gzip), (Duration::from_secs(3), true));
        let logs = config.settings(Signal::Logs);
        assert_eq!(logs.url, "http://logs:9999/custom");
        assert_eq!((logs.timeout, logs.gzip), (NO_LIMIT, false));
        assert_eq!(
            logs.headers,
            [
                ("authorization".to_string(), "b".to_string()),
                ("x-team".into(), "cards".into())
            ]
        );
        let grpc = ExportConfig {
            protocol: Some(Protocol::Grpc),
            traces: SignalConfig {
                endpoint: Some("http://traces:4317".into()),
                ..SignalConfig::default()
            },
            ..ExportConfig::default()
        };
        assert_eq!(grpc.metrics_url(), "http://localhost:4317");
        assert_eq!(grpc.traces_url(), "http://traces:4317");
    }

    #[test]
    fn bad_settings_in_code_are_refused_with_the_reason() {
        let zero = ExportConfig {
            interval: Some(Duration::ZERO),
            ..ExportConfig::default()
        };
        assert_eq!(zero.validate(), Err(ExportConfigError::Zero("interval")));
        let ftp = ExportConfig {
            endpoint: Some("ftp://x".into()),
            ..ExportConfig::default()
        };
        assert!(matches!(ftp.validate(), Err(ExportConfigError::Endpoint(_))));
        let half = ExportConfig {
            client_key: Some("/k.pem".into()),
            ..ExportConfig::default()
        };
        assert!(half
            .validate()
            .unwrap_err()
            .to_string()
            .contains("needs its certificate too"));
        let https = ExportConfig {
            endpoint: Some("https://x:4318".into()),
            ..ExportConfig::default()
        };
        assert_eq!(https.validate().is_ok(), cfg!(feature = "tls"));
    }
}
