//! Export configuration, with the standard `OTEL_*` environment variables.

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

/// Why an export configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportConfigError {
    /// An environment variable has a value the agent cannot use.
    #[error("{variable}={value:?}: {reason}")]
    Variable {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong, and what would do.
        reason: &'static str,
    },
    /// The endpoint is not an absolute `http://` or `https://` URL.
    #[error("endpoint {0:?} is not an http:// or https:// URL (for example http://localhost:4318)")]
    Endpoint(String),
    /// `https` needs TLS, which this build does not have yet.
    #[error(
        "endpoint {0:?} uses https, which this agent cannot speak yet: use http:// to a collector on a trusted network"
    )]
    Tls(String),
    /// A zero interval or timeout, or an empty buffer.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
}

/// Where and how often to export. [`ExportConfig::default`] follows the
/// OpenTelemetry defaults; [`ExportConfig::with_env`] applies the standard
/// environment variables over it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportConfig {
    /// OTLP/gRPC or OTLP/HTTP. Default: HTTP/protobuf.
    pub protocol: Protocol,
    /// Base endpoint: `http://localhost:4318` for HTTP (`/v1/metrics` and
    /// `/v1/logs` are appended), `http://localhost:4317` for gRPC.
    pub endpoint: Option<String>,
    /// Full URL for metrics, used as is (HTTP only).
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, used as is (HTTP only).
    pub logs_endpoint: Option<String>,
    /// Full URL for traces, used as is (HTTP only).
    pub traces_endpoint: Option<String>,
    /// Headers sent with every export, e.g. an auth token.
    pub headers: Vec<(String, String)>,
    /// Longest an export may take. Default: 10 s.
    pub timeout: Duration,
    /// gzip request bodies. Default: on.
    pub gzip: bool,
    /// Time between harvests. Default: 60 s.
    pub interval: Duration,
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
            protocol: Protocol::HttpProtobuf,
            endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            traces_endpoint: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            gzip: true,
            interval: Duration::from_secs(60),
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

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text.trim())
        .decode_utf8_lossy()
        .into_owned()
}

/// `k1=v1,k2=v2` with percent-encoded values, as the spec writes headers and
/// resource attributes.
fn pairs(variable: &'static str, text: &str) -> Result<Vec<(String, String)>, ExportConfigError> {
    text.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((decode(key), decode(value))),
            _ => Err(ExportConfigError::Variable {
                variable,
                value: text.to_owned(),
                reason: "expected comma-separated key=value pairs",
            }),
        })
        .collect()
}

fn millis(variable: &'static str, text: &str) -> Result<Duration, ExportConfigError> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ExportConfigError::Variable {
            variable,
            value: text.to_owned(),
            reason: "expected a whole number of milliseconds",
        })
}

impl ExportConfig {
    /// This configuration with the process's `OTEL_*` variables applied.
    pub fn with_env(self) -> Result<Self, ExportConfigError> {
        self.with_lookup(|name| std::env::var(name).ok())
    }

    /// This configuration with `OTEL_*` variables read through `lookup`:
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`),
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_HEADERS`,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms), `OTEL_EXPORTER_OTLP_COMPRESSION`
    /// (`gzip`, `none`), `OTEL_METRIC_EXPORT_INTERVAL` (ms),
    /// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. Variables win over
    /// the program's settings, so operators can redirect an agent without a
    /// rebuild; `OTEL_SERVICE_NAME` wins over a `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn with_lookup(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ExportConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(protocol) = get("OTEL_EXPORTER_OTLP_PROTOCOL") {
            self.protocol = match protocol.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => {
                    return Err(ExportConfigError::Variable {
                        variable: "OTEL_EXPORTER_OTLP_PROTOCOL",
                        value: protocol,
                        reason: "supported: grpc, http/protobuf (http/json is not)",
                    })
                }
            };
        }
        if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.endpoint = Some(endpoint.trim().to_owned());
        }
        if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            self.metrics_endpoint = Some(endpoint.trim().to_owned());
        }
        if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
            self.logs_endpoint = Some(endpoint.trim().to_owned());
        }
        if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            self.traces_endpoint = Some(endpoint.trim().to_owned());
        }
        if let Some(headers) = get("OTEL_EXPORTER_OTLP_HEADERS") {
            self.headers.extend(pairs("OTEL_EXPORTER_OTLP_HEADERS", &headers)?);
        }
        if let Some(timeout) = get("OTEL_EXPORTER_OTLP_TIMEOUT") {
            self.timeout = millis("OTEL_EXPORTER_OTLP_TIMEOUT", &timeout)?;
        }
        if let Some(compression) = get("OTEL_EXPORTER_OTLP_COMPRESSION") {
            self.gzip = match compression.trim() {
                "gzip" => true,
                "none" => false,
                _ => {
                    return Err(ExportConfigError::Variable {
                        variable: "OTEL_EXPORTER_OTLP_COMPRESSION",
                        value: compression,
                        reason: "supported: gzip, none",
                    })
                }
            };
        }
        if let Some(interval) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            self.interval = millis("OTEL_METRIC_EXPORT_INTERVAL", &interval)?;
        }
        if let Some(attributes) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in pairs("OTEL_RESOURCE_ATTRIBUTES", &attributes)? {
                match key.as_str() {
                    "service.name" => self.service_name = Some(value),
                    "service.version" => self.service_version = Some(value),
                    "deployment.environment.name" | "deployment.environment" => self.environment = Some(value),
                    "host.name" => self.host_name = Some(value),
                    _ => self.resource_attributes.push((key, value)),
                }
            }
        }
        if let Some(name) = get("OTEL_SERVICE_NAME") {
            self.service_name = Some(name.trim().to_owned());
        }
        Ok(self)
    }

    /// Checks the configuration, naming what is wrong.
    pub fn validate(&self) -> Result<(), ExportConfigError> {
        for (name, zero) in [
            ("timeout", self.timeout.is_zero()),
            ("interval", self.interval.is_zero()),
            ("buffer_intervals", self.buffer_intervals == 0),
        ] {
            if zero {
                return Err(ExportConfigError::Zero(name));
            }
        }
        for url in [self.metrics_url(), self.logs_url(), self.traces_url()] {
            if url.starts_with("https://") {
                return Err(ExportConfigError::Tls(url));
            }
            if !url.starts_with("http://") || url.len() <= "http://".len() {
                return Err(ExportConfigError::Endpoint(url));
            }
        }
        Ok(())
    }

    fn base(&self) -> String {
        let default = match self.protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        };
        self.endpoint
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    /// Where metrics go: the gRPC endpoint, or the HTTP URL.
    pub fn metrics_url(&self) -> String {
        match (self.protocol, &self.metrics_endpoint) {
            (Protocol::HttpProtobuf, Some(url)) => url.clone(),
            (Protocol::HttpProtobuf, None) => format!("{}/v1/metrics", self.base()),
            (Protocol::Grpc, _) => self.base(),
        }
    }

    /// Where logs go: the gRPC endpoint, or the HTTP URL.
    pub fn logs_url(&self) -> String {
        match (self.protocol, &self.logs_endpoint) {
            (Protocol::HttpProtobuf, Some(url)) => url.clone(),
            (Protocol::HttpProtobuf, None) => format!("{}/v1/logs", self.base()),
            (Protocol::Grpc, _) => self.base(),
        }
    }

    /// Where traces go: the gRPC endpoint, or the HTTP URL.
    pub fn traces_url(&self) -> String {
        match (self.protocol, &self.traces_endpoint) {
            (Protocol::HttpProtobuf, Some(url)) => url.clone(),
            (Protocol::HttpProtobuf, None) => format!("{}/v1/traces", self.base()),
            (Protocol::Grpc, _) => self.base(),
        }
    }

    /// The OTLP resource: `service.name`, `service.version`, `host.name`,
    /// `deployment.environment.name`, then the extra attributes.
    pub fn resource(&self, default_service_name: &str) -> Resource {
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
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn standard_variables_apply_as_the_spec_says() {
        let config = ExportConfig::default()
            .with_lookup(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9999/custom"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20s3cr3t, x-team=cards",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=ignored,deployment.environment.name=prod,k8s.pod.name=api-7",
                ),
                ("OTEL_SERVICE_NAME", "cards-api"),
            ]))
            .unwrap();
        assert_eq!(config.metrics_url(), "http://collector:4318/v1/metrics");
        assert_eq!(config.logs_url(), "http://logs:9999/custom");
        assert_eq!(config.headers[0], ("authorization".into(), "Bearer s3cr3t".into()));
        assert_eq!(config.headers[1], ("x-team".into(), "cards".into()));
        assert_eq!(
            (config.timeout, config.gzip, config.interval),
            (Duration::from_millis(2500), false, Duration::from_secs(15))
        );
        assert_eq!(config.service_name.as_deref(), Some("cards-api"));
        assert_eq!(config.environment.as_deref(), Some("prod"));
        assert_eq!(
            config.resource_attributes,
            [("k8s.pod.name".to_string(), "api-7".to_string())]
        );
        config.validate().unwrap();

        let grpc = ExportConfig::default()
            .with_lookup(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .unwrap();
        assert_eq!(grpc.metrics_url(), "http://localhost:4317");
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let error = ExportConfig::default()
            .with_lookup(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\": supported: grpc, http/protobuf (http/json is not)"
        );
        let error = ExportConfig::default()
            .with_lookup(env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]))
            .unwrap_err();
        assert!(error.to_string().contains("whole number of milliseconds"));
        let error = ExportConfig::default()
            .with_lookup(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]))
            .unwrap_err();
        assert!(error.to_string().contains("key=value"));
        let https = ExportConfig {
            endpoint: Some("https://x:4318".into()),
            ..ExportConfig::default()
        };
        assert!(matches!(https.validate(), Err(ExportConfigError::Tls(_))));
        let zero = ExportConfig {
            interval: Duration::ZERO,
            ..ExportConfig::default()
        };
        assert_eq!(zero.validate(), Err(ExportConfigError::Zero("interval")));
    }
}
