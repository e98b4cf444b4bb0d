//! The standard `OTEL_*` variables, read into what the program left unset.
//!
//! A value the agent cannot use is never an error: it is logged as a
//! warning that names the variable and says what applies instead, and the
//! variable is treated as unset, as the OpenTelemetry specification says
//! (configuration/common.md, "Numeric" and "Enum"; "Parsing empty value").

use std::path::PathBuf;
use std::time::Duration;

use super::config::{Compression, ExportConfig, Protocol, Signal, SignalConfig, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};

/// One scope of variables: all signals (`OTEL_EXPORTER_OTLP_*`) or one
/// (`OTEL_EXPORTER_OTLP_METRICS_*`).
#[derive(Default)]
struct Layer {
    options: SignalConfig,
    /// `Some` when the headers variable was set (even if every entry was bad).
    headers: Option<Vec<(String, String)>>,
    insecure: Option<bool>,
}

/// Reads variables through a lookup, collecting warnings.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

fn var(scope: Option<Signal>, option: &str) -> String {
    match scope {
        Some(signal) => format!("OTEL_EXPORTER_OTLP_{}_{option}", signal.infix()),
        None => format!("OTEL_EXPORTER_OTLP_{option}"),
    }
}

/// What applies when a variable of `scope` is ignored.
fn fallback(scope: Option<Signal>, option: &str, default: &str) -> String {
    match scope {
        Some(_) => format!("{} or the default ({default}) applies", var(None, option)),
        None => format!("the default ({default}) applies"),
    }
}

impl Env<'_> {
    /// The variable's value; empty counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn warn(&mut self, name: &str, value: &str, problem: &str, instead: &str) {
        self.warnings
            .push(format!("{name}={value:?} ignored: {problem}; {instead}"));
    }

    fn layer(&mut self, scope: Option<Signal>) -> Layer {
        let mut layer = Layer::default();
        let options = &mut layer.options;

        let name = var(scope, "PROTOCOL");
        if let Some(value) = self.get(&name) {
            match value.to_ascii_lowercase().as_str() {
                "grpc" => options.protocol = Some(Protocol::Grpc),
                "http/protobuf" => options.protocol = Some(Protocol::HttpProtobuf),
                "http/json" => {
                    let instead = fallback(scope, "PROTOCOL", "http/protobuf");
                    self.warn(
                        &name,
                        &value,
                        "http/json is not supported (grpc, http/protobuf are)",
                        &instead,
                    )
                }
                _ => {
                    let instead = fallback(scope, "PROTOCOL", "http/protobuf");
                    self.warn(&name, &value, "not a protocol (grpc, http/protobuf)", &instead)
                }
            }
        }

        let name = var(scope, "ENDPOINT");
        if let Some(value) = self.get(&name) {
            let scheme = value.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
            match scheme.as_deref() {
                Some("http" | "https") if value.split_once("://").is_some_and(|(_, rest)| !rest.is_empty()) => {
                    options.endpoint = Some(value)
                }
                // A gRPC target without a scheme: the INSECURE variables decide (below).
                None if !value.contains(['/', '?', '#', ' ']) => options.endpoint = Some(value),
                _ => {
                    let default = match scope {
                        Some(signal) => format!("http://localhost:4318/v1/{}", signal.name()),
                        None => "http://localhost:4318".to_owned(),
                    };
                    let instead = fallback(scope, "ENDPOINT", &default);
                    self.warn(&name, &value, "not an http:// or https:// URL", &instead)
                }
            }
        }

        let name = var(scope, "INSECURE");
        if let Some(value) = self.get(&name) {
            layer.insecure = Some(value.eq_ignore_ascii_case("true"));
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                self.warn(&name, &value, "not true or false", "false (TLS) applies");
            }
        }

        let name = var(scope, "HEADERS");
        if let Some(value) = self.get(&name) {
            layer.headers = Some(self.headers(&name, &value));
        }

        let name = var(scope, "TIMEOUT");
        if let Some(value) = self.get(&name) {
            match value.parse::<u64>() {
                Ok(ms) => options.timeout = Some(Duration::from_millis(ms)),
                Err(_) => {
                    let default = format!("{} ms", DEFAULT_TIMEOUT.as_millis());
                    let instead = fallback(scope, "TIMEOUT", &default);
                    self.warn(&name, &value, "not a whole number of milliseconds", &instead)
                }
            }
        }

        let name = var(scope, "COMPRESSION");
        if let Some(value) = self.get(&name) {
            match value.to_ascii_lowercase().as_str() {
                "gzip" => options.compression = Some(Compression::Gzip),
                "none" => options.compression = Some(Compression::None),
                _ => {
                    let instead = fallback(scope, "COMPRESSION", "gzip");
                    self.warn(&name, &value, "not a compression (gzip, none)", &instead)
                }
            }
        }

        options.certificate = self.file(scope, "CERTIFICATE");
        options.client_certificate = self.file(scope, "CLIENT_CERTIFICATE");
        options.client_key = self.file(scope, "CLIENT_KEY");
        layer
    }

    /// A PEM file's path, if the file can be read.
    fn file(&mut self, scope: Option<Signal>, option: &str) -> Option<PathBuf> {
        let name = var(scope, option);
        let value = self.get(&name)?;
        match std::fs::metadata(&value) {
            Ok(meta) if meta.is_file() => Some(PathBuf::from(value)),
            Ok(_) => {
                let instead = fallback(scope, option, "none");
                self.warn(&name, &value, "not a file", &instead);
                None
            }
            Err(e) => {
                let instead = fallback(scope, option, "none");
                self.warn(&name, &value, &format!("cannot be read ({e})"), &instead);
                None
            }
        }
    }

    /// `k1=v1,k2=v2` as W3C baggage writes it, values percent-decoded; a bad
    /// entry is left out with a warning, the others kept.
    fn headers(&mut self, name: &str, value: &str) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.split_once('=').and_then(|(key, value)| {
                let key = key.trim();
                let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8().ok()?;
                let valid =
                    http::HeaderName::from_bytes(key.as_bytes()).is_ok() && http::HeaderValue::from_str(&value).is_ok();
                valid.then(|| (key.to_ascii_lowercase(), value.into_owned()))
            });
            match parsed {
                Some(header) => headers.push(header),
                None => self.warn(
                    name,
                    entry,
                    "not a header (name=percent-encoded value)",
                    "this entry is left out, the others are sent",
                ),
            }
        }
        headers
    }

    /// `OTEL_RESOURCE_ATTRIBUTES`: all of it, or (on any error) none of it.
    fn resource_attributes(&mut self) -> Vec<(String, String)> {
        const NAME: &str = "OTEL_RESOURCE_ATTRIBUTES";
        let Some(value) = self.get(NAME) else {
            return Vec::new();
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text.trim())
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        let parsed: Option<Vec<(String, String)>> = value
            .split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                let (key, value) = item.split_once('=')?;
                let key = decode(key).filter(|k| !k.is_empty())?;
                Some((key, decode(value)?))
            })
            .collect();
        parsed.unwrap_or_else(|| {
            self.warn(
                NAME,
                &value,
                "expected comma-separated key=value pairs, percent-encoded",
                "none of its attributes apply",
            );
            Vec::new()
        })
    }
}

/// Sets `own` from `env` when neither `own` nor `all` (the code's
/// all-signals value) is set.
fn fill<T: Clone>(own: &mut Option<T>, all: &Option<T>, env: &Option<T>) {
    if own.is_none() && all.is_none() {
        own.clone_from(env);
    }
}

/// Fills every option of `own` that neither it nor `all` set, from `env`.
fn fill_options(own: &mut SignalConfig, all: &SignalConfig, env: &SignalConfig) {
    fill(&mut own.protocol, &all.protocol, &env.protocol);
    fill(&mut own.timeout, &all.timeout, &env.timeout);
    fill(&mut own.compression, &all.compression, &env.compression);
    fill(&mut own.certificate, &all.certificate, &env.certificate);
    fill(
        &mut own.client_certificate,
        &all.client_certificate,
        &env.client_certificate,
    );
    fill(&mut own.client_key, &all.client_key, &env.client_key);
}

/// A gRPC target without a scheme, given one as the INSECURE variables say.
fn with_scheme(endpoint: &str, insecure: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

impl ExportConfig {
    /// This configuration with the process's `OTEL_*` variables applied
    /// where it left options unset; see [`with_lookup`](Self::with_lookup).
    pub fn with_env(self) -> Self {
        self.with_lookup(|name| std::env::var(name).ok())
    }

    /// This configuration with the `OTEL_*` variables read through `lookup`
    /// applied where it left options unset: the code's settings win, as in
    /// opentelemetry-otlp. Read: `OTEL_EXPORTER_OTLP_{PROTOCOL, ENDPOINT,
    /// INSECURE, HEADERS, TIMEOUT, COMPRESSION, CERTIFICATE,
    /// CLIENT_CERTIFICATE, CLIENT_KEY}`, each also per signal
    /// (`OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`, `…_LOGS_…`, `…_TRACES_…`),
    /// `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`. A value that cannot be used is logged as
    /// a warning (target `kuroko_agent::export`) naming the variable and
    /// what applies instead, and ignored. docs/agent-config.md has the table.
    pub fn with_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let (config, warnings) = self.apply_env(&lookup);
        for warning in warnings {
            tracing::warn!(target: "kuroko_agent::export", "{warning}");
        }
        config
    }

    /// [`with_lookup`](Self::with_lookup), returning the warnings instead of
    /// logging them.
    pub(crate) fn apply_env(mut self, lookup: &dyn Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut env = Env {
            lookup,
            warnings: Vec::new(),
        };
        let all_env = env.layer(None);
        let signal_env: Vec<(Signal, Layer)> = Signal::ALL.iter().map(|&s| (s, env.layer(Some(s)))).collect();

        let mut all = self.all_signals();
        let mut http_without_scheme = false;
        for (signal, layer) in &signal_env {
            let own = self.signal_config_mut(*signal);
            let endpoint_unset = own.endpoint.is_none() && all.endpoint.is_none();
            fill_options(own, &all, &layer.options);
            let protocol = own
                .protocol
                .or(all.protocol)
                .or(all_env.options.protocol)
                .unwrap_or(Protocol::HttpProtobuf);
            let insecure = layer.insecure.or(all_env.insecure).unwrap_or(false);
            if endpoint_unset {
                // The signal's variable is used as is; a target without a
                // scheme is gRPC's, and the INSECURE variables give it one.
                let name = var(Some(*signal), "ENDPOINT");
                own.endpoint = match (&layer.options.endpoint, &all_env.options.endpoint) {
                    (Some(endpoint), _) if endpoint.contains("://") => Some(endpoint.clone()),
                    (Some(endpoint), _) if protocol == Protocol::Grpc => Some(with_scheme(endpoint, insecure)),
                    (Some(endpoint), _) => {
                        let default = format!("http://localhost:4318/v1/{}", signal.name());
                        let instead = fallback(Some(*signal), "ENDPOINT", &default);
                        env.warn(
                            &name,
                            endpoint,
                            "http/protobuf needs an http:// or https:// URL",
                            &instead,
                        );
                        None
                    }
                    (None, Some(endpoint)) if !endpoint.contains("://") => {
                        if protocol == Protocol::Grpc {
                            Some(with_scheme(endpoint, insecure))
                        } else {
                            http_without_scheme = true;
                            None
                        }
                    }
                    (None, _) => None,
                };
            }
            // Headers: the signal's variable, else the generic one, merged
            // over the code's (the variable's value wins on a name).
            if let Some(headers) = layer.headers.as_ref().or(all_env.headers.as_ref()) {
                super::config::merge_headers(&mut own.headers, headers.iter().cloned());
            }
        }
        if all.endpoint.is_none() {
            match &all_env.options.endpoint {
                Some(endpoint) if endpoint.contains("://") => all.endpoint = Some(endpoint.clone()),
                Some(endpoint) if http_without_scheme => {
                    let name = var(None, "ENDPOINT");
                    let instead = fallback(None, "ENDPOINT", "http://localhost:4318");
                    env.warn(
                        &name,
                        endpoint,
                        "http/protobuf needs an http:// or https:// URL",
                        &instead,
                    )
                }
                _ => {}
            }
        }
        let endpoint = all.endpoint.take();
        fill_options(&mut all, &SignalConfig::default(), &all_env.options);
        all.endpoint = endpoint;
        self.set_all_signals(all);

        if self.interval.is_none() {
            const NAME: &str = "OTEL_METRIC_EXPORT_INTERVAL";
            if let Some(value) = env.get(NAME) {
                match value.parse::<u64>() {
                    Ok(ms) if ms > 0 => self.interval = Some(Duration::from_millis(ms)),
                    _ => {
                        let instead = format!("the default ({} ms) applies", DEFAULT_INTERVAL.as_millis());
                        env.warn(NAME, &value, "not a whole number of milliseconds above 0", &instead)
                    }
                }
            }
        }
        // OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES.
        if self.service_name.is_none() {
            self.service_name = env.get("OTEL_SERVICE_NAME");
        }
        for (key, value) in env.resource_attributes() {
            let slot = match key.as_str() {
                "service.name" => &mut self.service_name,
                "service.version" => &mut self.service_version,
                "deployment.environment.name" | "deployment.environment" => &mut self.environment,
                "host.name" => &mut self.host_name,
                _ => {
                    if !self.resource_attributes.iter().any(|(k, _)| *k == key) {
                        self.resource_attributes.push((key, value));
                    }
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        (self, env.warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn apply(config: ExportConfig, pairs: &[(&str, &str)]) -> (ExportConfig, Vec<String>) {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        config.apply_env(&move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn code_wins_then_the_signal_variable_then_the_generic_one() {
        let env = [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "GZIP"),
        ];
        let (config, warnings) = apply(ExportConfig::default(), &env);
        assert!(warnings.is_empty(), "{warnings:?}");
        let [metrics, logs, traces] = Signal::ALL.map(|s| config.settings(s));
        assert_eq!(metrics.timeout, Duration::from_millis(700));
        assert_eq!(logs.timeout, Duration::from_millis(2500));
        assert_eq!((metrics.gzip, logs.gzip, traces.gzip), (false, false, true));

        let code = ExportConfig {
            timeout: Some(Duration::from_secs(1)),
            ..ExportConfig::default()
        };
        let (config, _) = apply(code, &env);
        for signal in Signal::ALL {
            assert_eq!(config.settings(signal).timeout, Duration::from_secs(1), "{signal:?}");
        }
    }

    #[test]
    fn per_signal_endpoints_count_for_grpc_too() {
        let (config, warnings) = apply(
            ExportConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "logs:4317"),
                ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "true"),
            ],
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.metrics_url(), "http://collector:4317");
        assert_eq!(config.traces_url(), "http://traces:4317");
        assert_eq!(config.logs_url(), "http://logs:4317");

        let (secure, _) = apply(
            ExportConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ],
        );
        assert_eq!(secure.metrics_url(), "https://collector:4317");
    }

    #[test]
    fn bad_values_are_warned_about_by_name_and_ignored() {
        let (config, warnings) = apply(
            ExportConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
                ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue,ok=1,bad key=2"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "collector:4318"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
                ("OTEL_RESOURCE_ATTRIBUTES", "a=1,broken"),
            ],
        );
        let all = warnings.join("\n");
        for expected in [
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" ignored: http/json is not supported (grpc, http/protobuf are); the default (http/protobuf) applies",
            "OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\" ignored: not a whole number of milliseconds; the default (10000 ms) applies",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=\"-1\" ignored: not a whole number of milliseconds; OTEL_EXPORTER_OTLP_TIMEOUT or the default (10000 ms) applies",
            "OTEL_EXPORTER_OTLP_COMPRESSION=\"zstd\" ignored",
            "OTEL_EXPORTER_OTLP_HEADERS=\"novalue\" ignored",
            "OTEL_EXPORTER_OTLP_HEADERS=\"bad key=2\" ignored",
            "OTEL_EXPORTER_OTLP_CERTIFICATE=\"/nonexistent/ca.pem\" ignored: cannot be read",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=\"collector:4318\" ignored: http/protobuf needs an http:// or https:// URL",
            "OTEL_METRIC_EXPORT_INTERVAL=\"0\" ignored",
            "OTEL_RESOURCE_ATTRIBUTES=\"a=1,broken\" ignored",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
        assert_eq!(warnings.len(), 10, "{all}");
        let metrics = config.settings(Signal::Metrics);
        assert_eq!(
            (metrics.protocol, metrics.timeout, metrics.gzip),
            (Protocol::HttpProtobuf, DEFAULT_TIMEOUT, true)
        );
        assert_eq!(metrics.headers, [("ok".to_string(), "1".to_string())]);
        assert_eq!(config.logs_url(), "http://localhost:4318/v1/logs");
        assert_eq!((config.interval, config.resource_attributes.len()), (None, 0));
        config.validate().unwrap();
    }

    #[test]
    fn headers_merge_over_the_code_and_the_signal_variable_replaces_the_generic() {
        let code = ExportConfig {
            headers: vec![("Authorization".into(), "code".into()), ("x-code".into(), "1".into())],
            ..ExportConfig::default()
        };
        let (config, _) = apply(
            code,
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20env,x-generic=1"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-traces=1"),
            ],
        );
        let headers = |s| config.settings(s).headers;
        assert_eq!(
            headers(Signal::Metrics),
            [
                ("authorization".to_string(), "Bearer env".to_string()),
                ("x-code".into(), "1".into()),
                ("x-generic".into(), "1".into())
            ]
        );
        assert_eq!(
            headers(Signal::Traces),
            [
                ("authorization".to_string(), "code".to_string()),
                ("x-code".into(), "1".into()),
                ("x-traces".into(), "1".into())
            ]
        );
    }

    #[test]
    fn the_resource_takes_what_the_code_left_unset() {
        let code = ExportConfig {
            environment: Some("code-env".into()),
            resource_attributes: vec![("team".into(), "code".into())],
            ..ExportConfig::default()
        };
        let (config, warnings) = apply(
            code,
            &[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=ignored,deployment.environment.name=prod,team=env,k8s.pod.name=api%2C7",
                ),
                ("OTEL_SERVICE_NAME", "cards-api"),
            ],
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.service_name.as_deref(), Some("cards-api"));
        assert_eq!(config.environment.as_deref(), Some("code-env"));
        assert_eq!(
            config.resource_attributes,
            [
                ("team".to_string(), "code".to_string()),
                ("k8s.pod.name".into(), "api,7".into())
            ]
        );
    }
}
