//! `kuroko.toml`: the reporter's configuration, with environment overrides.
//!
//! ```toml
//! store = "/var/lib/kuroko/kuroko.db"   # the embedded store's file, or a shared
//!                                       # ClickHouse: "clickhouse://host:8123/kuroko"
//! grpc_listen = "0.0.0.0:4317"          # OTLP/gRPC
//! http_listen = "0.0.0.0:4318"          # OTLP/HTTP
//! max_body_bytes = 16777216             # largest request, compressed or not
//!
//! [limits]
//! max_attributes = 64
//! max_value_bytes = 1024
//! max_age_seconds = 691200              # 8 days
//! max_future_seconds = 3600
//! max_cumulative_streams = 200000
//! max_series_per_service = 10000        # more fold into kuroko.overflow
//! max_series = 200000                   # all services: new services' series past it fold into the service kuroko.overflow
//! max_stacktrace_bytes = 16384          # exception.stacktrace kept (its first and last lines)
//! max_login_failures_per_address = 10   # wrong query tokens a minute from one address (then 429)
//! max_login_failures = 100              # wrong query tokens a minute, all addresses (then /login: 429)
//! max_trace_spans = 200                 # spans a kept trace stores (all still count as segments)
//! max_span_attribute_bytes = 4096       # attribute bytes a kept trace stores per span
//! max_trace_bytes = 262144              # bytes a kept trace stores, all spans together
//! min_free_bytes = 268435456            # kept free on the store's disk: writes past it get 503 (0: off)
//! max_cumulative_stream_bytes = 134217728  # the cumulative streams' last points, in memory
//! header_timeout_seconds = 60           # HTTP: a request's headers, from connect or the last answer (idle)
//! body_timeout_seconds = 30             # an OTLP body, HTTP or gRPC, once its headers came (408 / DEADLINE_EXCEEDED)
//! max_inflight_bytes = 268435456        # OTLP bodies being read, all clients (503 + Retry-After / RESOURCE_EXHAUSTED)
//! max_inflight_bytes_per_connection = 67108864  # the same per connection (a request alone is never refused)
//! grpc_keepalive_seconds = 60           # HTTP/2 pings on the gRPC port
//! grpc_keepalive_timeout_seconds = 20   # a ping unanswered this long drops its connection
//!
//! [retention]                           # days kept at each resolution; at start-up, settings that
//!                                       # would lose data are refused (max_age_seconds past minute_days,
//!                                       # a coarser resolution kept shorter than a finer one)
//! minute_days = 8
//! hour_days = 90
//! day_days = 730
//!
//! [delivery]                           # after downtime, missed reports are sent late, oldest first
//! catch_up_weeks = 4                    # at most this many weekly reports per team (older: recorded skipped)
//! catch_up_days = 7                     # and this many daily digests
//!
//! [journal]                            # the ingest journal: what is acknowledged before it is stored
//! fsync = "never"                       # "batch": each acknowledged batch is synced to the disk first
//!                                       # (survives a power cut, not only the process dying)
//! dir = "kuroko-clickhouse-ingest"      # a ClickHouse replica's journal (one per replica; the
//!                                       # embedded store's is beside its file)
//! max_bytes = 2147483648                # ClickHouse slow or down: past this many bytes waiting,
//!                                       # requests are refused (503, clients retry)
//!
//! [problems]                           # performance problems found in kept traces (docs/problems.md)
//! max_traces_per_transaction = 50       # kept traces read per transaction and window, slowest first
//! history_days = 8                      # a group's first seen, over this many days of kept traces
//! n_plus_one = { min_count = 5, min_seconds = 0.1 }          # one statement this often in a run, this long together
//! sequential = { min_call_seconds = 0.03, max_gap_seconds = 0.02, min_saved_seconds = 0.1, min_saved_share = 0.1 }
//! dominant = { min_share = 0.5, min_seconds = 0.1 }          # one query this share of its run
//! outside = { min_run_seconds = 1.0, min_share = 0.7 }       # a slow run this much in no segment
//!                                       # each table also takes `enabled = false`
//!
//! [auth]
//! ingest_token_file = "/run/secrets/kuroko-ingest"   # clients send authorization: Bearer <token>
//! query_token_file = "/run/secrets/kuroko-query"     # the API, the web UI and /metrics ask for it
//! public_metrics = false                # true: /metrics answers without the query token
//!
//! [tls]                                 # both ports; plain text without it
//! cert_file = "/etc/kuroko/tls/cert.pem"
//! key_file = "/etc/kuroko/tls/key.pem"
//! client_ca_file = "/etc/kuroko/tls/agents-ca.pem"   # optional: require client certificates
//! ```
//!
//! Delivery of reports and alerts adds `owners`, `base_url`, `[schedule]`,
//! `[smtp]`, `[digest]`, `[delivery]` and `[[alerts]]`: see [`crate::deliver`].
//!
//! The file is the one given with `--config`, else the one `KUROKO_CONFIG`
//! names, else none (every key at its default).
//!
//! Every key is optional. `KUROKO_STORE`, `KUROKO_GRPC_LISTEN`,
//! `KUROKO_HTTP_LISTEN`, `KUROKO_INGEST_TOKEN`, `KUROKO_QUERY_TOKEN`,
//! `KUROKO_JOURNAL_FSYNC`, `KUROKO_JOURNAL_DIR`, `KUROKO_TLS_CERT_FILE`,
//! `KUROKO_TLS_KEY_FILE` and `KUROKO_TLS_CLIENT_CA_FILE` override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::analysis::problems::Thresholds;
use crate::deliver::alerts::AlertRule;
use crate::deliver::schedule::ScheduleConfig;
use crate::deliver::{DeliveryConfig, DigestDelivery};
use crate::ingest::otlp::Limits;
use crate::report::mail::SmtpConfig;
use crate::store::rollup::Retention;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid (the message names the line and the key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// Settings that together would lose data: what to change.
    #[error("refusing settings that would lose data: {0}")]
    LosesData(String),
    /// Settings that cannot work (a share above 1, a count of 0): what to change.
    #[error("refusing settings that cannot work: {0}")]
    Unusable(String),
    /// An environment variable has an unusable value.
    #[error("{variable}={value:?}: {reason}")]
    Variable {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        reason: &'static str,
    },
}

/// The reporter's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The embedded store's file, or a ClickHouse store's URL
    /// (`clickhouse://[user[:password]@]host[:port]/database`, see
    /// `docs/clickhouse.md`). Default: `kuroko.db`.
    pub store: PathBuf,
    /// OTLP/gRPC address. Default: `0.0.0.0:4317`.
    pub grpc_listen: SocketAddr,
    /// OTLP/HTTP address. Default: `0.0.0.0:4318`.
    pub http_listen: SocketAddr,
    /// Largest request body, in bytes. Default: 16 MiB.
    pub max_body_bytes: usize,
    /// Limits on data points.
    pub limits: Limits,
    /// Authentication.
    pub auth: AuthConfig,
    /// How long each resolution is kept (`[retention]`).
    pub retention: Retention,
    /// Seconds between two roll-up and retention passes. Default: 60.
    pub rollup_interval_seconds: u64,
    /// `owners.toml`: teams, their emails and chat webhooks. None: no team reports.
    pub owners: Option<PathBuf>,
    /// The web UI's address, for links in reports and alerts.
    pub base_url: String,
    /// The folder of the web UI's dashboards (`*.toml`). Default: `dashboards`.
    pub dashboards: PathBuf,
    /// When reports are sent (`[schedule]`, see [`crate::deliver::schedule`]).
    pub schedule: ScheduleConfig,
    /// Where email goes out (`[smtp]`); no email without it.
    pub smtp: Option<SmtpConfig>,
    /// The company-wide digest's recipients (`[digest]`).
    pub digest: DigestDelivery,
    /// Alert rules (`[[alerts]]`, see [`crate::deliver::alerts`]).
    pub alerts: Vec<AlertRule>,
    /// How reports missed while the reporter was down are caught up
    /// (`[delivery]`).
    pub delivery: DeliveryConfig,
    /// The embedded store's ingest journal (`[journal]`).
    pub journal: JournalConfig,
    /// What the performance problems' detectors flag (`[problems]`, see
    /// docs/problems.md).
    pub problems: Thresholds,
    /// TLS on both ports (`[tls]`); plain text without it.
    pub tls: TlsConfig,
}

/// `[tls]`: the certificate both ports (OTLP/gRPC, and OTLP/HTTP with the
/// API and web UI) present, and optionally the CA whose client
/// certificates they require. Without `cert_file` and `key_file` both
/// ports speak plain text. `KUROKO_TLS_CERT_FILE`, `KUROKO_TLS_KEY_FILE`
/// and `KUROKO_TLS_CLIENT_CA_FILE` override.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// A CA certificate (PEM, one or more): clients must present a
    /// certificate it signed (mutual TLS). None: no client certificate
    /// is asked for.
    pub client_ca_file: Option<PathBuf>,
}

/// `[journal]`: where acknowledged batches wait until they are in the
/// store's tables, and how the journal meets the disk.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// When the journal is synced to the disk. Default: never.
    pub fsync: Fsync,
    /// The folder of a ClickHouse store's journal: one per replica (a
    /// second process is refused it). Default `kuroko-clickhouse-ingest`,
    /// in the working directory. The embedded store's journal is always
    /// beside its file (`<store>-ingest`).
    pub dir: PathBuf,
    /// Bytes waiting in a ClickHouse store's journal past which requests
    /// are refused (503 with `Retry-After`, gRPC `UNAVAILABLE`: clients
    /// retry) until ClickHouse takes them. Default 2 GiB.
    pub max_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            fsync: Fsync::Never,
            dir: PathBuf::from("kuroko-clickhouse-ingest"),
            max_bytes: 2 << 30,
        }
    }
}

/// When the ingest journal is synced to the disk.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Never: an acknowledged batch is in the kernel's page cache; it
    /// survives the reporter dying (kill -9), not a power cut.
    #[default]
    Never,
    /// Each batch, before it is acknowledged (and each flush to the tables,
    /// before the journal it held is deleted): it survives a power cut too.
    Batch,
}

/// `[auth]`: a bearer token that OTLP clients must send
/// (`authorization: Bearer <token>`, e.g. through
/// `OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A file holding the ingest token (its whitespace trimmed); preferred
    /// over putting the token in this file. `KUROKO_INGEST_TOKEN` overrides.
    pub ingest_token_file: Option<PathBuf>,
    /// The ingest token itself.
    pub ingest_token: Option<Secret>,
    /// A file holding the token the HTTP API and the web UI require
    /// (`authorization: Bearer <token>`); `KUROKO_QUERY_TOKEN` overrides.
    /// None: they are open to whoever reaches the HTTP port.
    pub query_token_file: Option<PathBuf>,
    /// The query token itself.
    pub query_token: Option<Secret>,
    /// Whether the reporter's own `/metrics` answers without the query
    /// token (for a scraper that cannot send `authorization: Bearer`).
    /// Default: false, so with a query token `/metrics` asks for it too.
    pub public_metrics: bool,
}

/// A secret: printed as `<redacted>`, never in logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for comparison only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: PathBuf::from("kuroko.db"),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 4317)),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4318)),
            max_body_bytes: 16 << 20,
            limits: Limits::default(),
            auth: AuthConfig::default(),
            retention: Retention::default(),
            rollup_interval_seconds: 60,
            owners: None,
            base_url: String::new(),
            dashboards: PathBuf::from("dashboards"),
            schedule: ScheduleConfig::default(),
            smtp: None,
            digest: DigestDelivery::default(),
            alerts: Vec::new(),
            journal: JournalConfig::default(),
            delivery: DeliveryConfig::default(),
            problems: Thresholds::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Config {
    /// The configuration file a command reads: `flag` (its `--config`),
    /// else the file `KUROKO_CONFIG` names, else none.
    pub fn file(flag: Option<&Path>) -> Option<PathBuf> {
        flag.map(Path::to_owned).or_else(|| {
            std::env::var_os("KUROKO_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// Reads [`Config::file`] of `path`, or the defaults when there is
    /// none; then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = Config::file(path);
        let config = match file.as_deref() {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Config::default(),
        };
        config.with_env(|name| std::env::var(name).ok())
    }

    /// Parses TOML text; the error names the line, the column and the key.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Refuses settings that would lose data, saying what to change:
    /// points accepted older than minute rows are kept (they would be
    /// written to minutes retention deletes at its next pass), and
    /// retention that keeps a coarser resolution for less time than a finer
    /// one (hours are rolled into days from their rows, minutes into hours).
    pub fn check(&self) -> Result<(), ConfigError> {
        let (limits, retention) = (&self.limits, &self.retention);
        if retention.minute_days < 1 || retention.hour_days < 1 || retention.day_days < 1 {
            return Err(ConfigError::LosesData(format!(
                "[retention] minute_days = {}, hour_days = {}, day_days = {}: each must be at least 1",
                retention.minute_days, retention.hour_days, retention.day_days
            )));
        }
        // Limits of 0 that would refuse everything (or close every
        // connection at once): a typo, not a wish.
        let zero = [
            ("max_value_bytes", limits.max_value_bytes as u64),
            ("max_attributes", limits.max_attributes as u64),
            ("max_series", limits.max_series as u64),
            ("max_series_per_service", limits.max_series_per_service as u64),
            ("max_cumulative_streams", limits.max_cumulative_streams as u64),
            ("max_cumulative_stream_bytes", limits.max_cumulative_stream_bytes as u64),
            ("max_inflight_bytes", limits.max_inflight_bytes as u64),
            (
                "max_inflight_bytes_per_connection",
                limits.max_inflight_bytes_per_connection as u64,
            ),
            ("header_timeout_seconds", limits.header_timeout_seconds),
            ("body_timeout_seconds", limits.body_timeout_seconds),
            ("max_age_seconds", limits.max_age_seconds),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::LosesData(format!(
                "[limits] {name} = 0 would refuse every point (or connection): remove it for the default, \
                 or see docs/security.md for what it bounds"
            )));
        }
        let minute_seconds = u64::try_from(retention.minute_days).unwrap_or(0).saturating_mul(86_400);
        if limits.max_age_seconds > minute_seconds {
            return Err(ConfigError::LosesData(format!(
                "[limits] max_age_seconds = {} (8 days unless set) accepts points older than [retention] \
                 minute_days = {} keeps minutes ({minute_seconds} s): lower max_age_seconds to at most \
                 {minute_seconds}, or raise minute_days to at least {}",
                limits.max_age_seconds,
                retention.minute_days,
                limits.max_age_seconds.div_ceil(86_400)
            )));
        }
        if retention.hour_days < retention.minute_days || retention.day_days < retention.hour_days {
            return Err(ConfigError::LosesData(format!(
                "[retention] minute_days = {}, hour_days = {}, day_days = {}: each resolution must be kept at \
                 least as long as the finer one (minute_days <= hour_days <= day_days)",
                retention.minute_days, retention.hour_days, retention.day_days
            )));
        }
        self.problems.check().map_err(ConfigError::Unusable)?;
        Ok(())
    }

    /// The ingest token in force: `ingest_token`, else the file's contents.
    pub fn ingest_token(&self) -> Result<Option<Secret>, ConfigError> {
        token(self.auth.ingest_token.as_ref(), self.auth.ingest_token_file.as_deref())
    }

    /// The token the HTTP API and web UI require, if any: `query_token`,
    /// else the file's contents.
    pub(crate) fn query_token(&self) -> Result<Option<Secret>, ConfigError> {
        token(self.auth.query_token.as_ref(), self.auth.query_token_file.as_deref())
    }

    /// Applies `KUROKO_*` variables read through `lookup`.
    pub fn with_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if let Some(store) = lookup("KUROKO_STORE") {
            self.store = PathBuf::from(store);
        }
        if let Some(token) = lookup("KUROKO_INGEST_TOKEN") {
            self.auth.ingest_token = Some(Secret(token));
        }
        if let Some(token) = lookup("KUROKO_QUERY_TOKEN") {
            self.auth.query_token = Some(Secret(token));
        }
        if let Some(dir) = lookup("KUROKO_JOURNAL_DIR") {
            self.journal.dir = PathBuf::from(dir);
        }
        for (variable, target) in [
            ("KUROKO_TLS_CERT_FILE", &mut self.tls.cert_file),
            ("KUROKO_TLS_KEY_FILE", &mut self.tls.key_file),
            ("KUROKO_TLS_CLIENT_CA_FILE", &mut self.tls.client_ca_file),
        ] {
            if let Some(file) = lookup(variable) {
                // Set but empty: turned off.
                *target = Some(PathBuf::from(file)).filter(|f| !f.as_os_str().is_empty());
            }
        }
        if let Some(value) = lookup("KUROKO_JOURNAL_FSYNC") {
            self.journal.fsync = match value.trim() {
                "never" => Fsync::Never,
                "batch" => Fsync::Batch,
                _ => {
                    return Err(ConfigError::Variable {
                        variable: "KUROKO_JOURNAL_FSYNC",
                        value,
                        reason: "expected never or batch",
                    })
                }
            };
        }
        for (variable, target) in [
            ("KUROKO_GRPC_LISTEN", &mut self.grpc_listen),
            ("KUROKO_HTTP_LISTEN", &mut self.http_listen),
        ] {
            if let Some(value) = lookup(variable) {
                *target = value.parse().map_err(|_| ConfigError::Variable {
                    variable,
                    value,
                    reason: "expected an address such as 0.0.0.0:4317",
                })?;
            }
        }
        Ok(self)
    }
}

/// A token given directly, else read from `file` (whitespace trimmed).
fn token(given: Option<&Secret>, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    if let Some(token) = given {
        return Ok(Some(token.clone()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Parse {
            path: path.to_owned(),
            message: "the token file is empty".to_owned(),
        });
    }
    Ok(Some(Secret(token.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration for a company is one the reporter takes.
    #[test]
    fn the_readmes_configuration_parses_and_passes_its_checks() {
        let readme = include_str!("../../README.md");
        let after = readme
            .split("A configuration for a company:")
            .nth(1)
            .expect("the README's configuration");
        let toml = after
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block");
        let config = Config::parse(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        config.check().unwrap();
        assert_eq!(config.limits.min_free_bytes, 256 << 20);
        let zero = Config::parse("[limits]\nmax_value_bytes = 0\n").unwrap().check();
        assert!(zero.unwrap_err().to_string().contains("max_value_bytes = 0"));
        assert_eq!(config.max_body_bytes, 16 << 20);
        assert_eq!((config.delivery.catch_up_weeks, config.delivery.catch_up_days), (4, 7));
        assert_eq!(config.journal.fsync, Fsync::Never);
    }

    #[test]
    fn reads_a_file_and_names_what_is_wrong() {
        let config = Config::parse("store = \"/tmp/k.db\"\n[limits]\nmax_attributes = 8\n").unwrap();
        assert_eq!(config.store, PathBuf::from("/tmp/k.db"));
        assert_eq!(config.limits.max_attributes, 8);
        assert_eq!(config.http_listen, Config::default().http_listen);

        let unknown = Config::parse("store = \"x\"\nstroe_size = 3\n").unwrap_err();
        assert!(
            unknown.contains("line 2") && unknown.contains("stroe_size"),
            "{unknown}"
        );
        let wrong_type = Config::parse("grpc_listen = 4317\n").unwrap_err();
        assert!(wrong_type.contains("line 1"), "{wrong_type}");

        let env = Config::default()
            .with_env(|name| (name == "KUROKO_GRPC_LISTEN").then(|| "127.0.0.1:9999".to_owned()))
            .unwrap();
        assert_eq!(env.grpc_listen.port(), 9999);
        let bad = Config::default().with_env(|name| (name == "KUROKO_HTTP_LISTEN").then(|| "port 80".to_owned()));
        assert!(bad.unwrap_err().to_string().contains("KUROKO_HTTP_LISTEN=\"port 80\""));

        let too_old = Config::parse("[limits]\nmax_age_seconds = 864000\n[retention]\nminute_days = 8\n").unwrap();
        let refused = too_old.check().unwrap_err().to_string();
        assert!(
            refused.contains("max_age_seconds")
                && refused.contains("at most 691200")
                && refused.contains("at least 10"),
            "{refused}"
        );
        Config::default().check().expect("the defaults lose nothing");
        let backwards = Config::parse("[retention]\nhour_days = 7\n").unwrap();
        assert!(backwards
            .check()
            .unwrap_err()
            .to_string()
            .contains("minute_days <= hour_days"));

        assert_eq!(Config::default().journal.fsync, Fsync::Never);
        let synced = Config::parse("[journal]\nfsync = \"batch\"\n").unwrap();
        assert_eq!(synced.journal.fsync, Fsync::Batch);
        assert!(Config::parse("[journal]\nfsync = \"always\"\n").is_err());
        let env = Config::default()
            .with_env(|name| (name == "KUROKO_JOURNAL_FSYNC").then(|| "batch".to_owned()))
            .unwrap();
        assert_eq!(env.journal.fsync, Fsync::Batch);

        let secret = Config::parse("[auth]\ningest_token = \"s3cr3t\"\n").unwrap();
        assert_eq!(secret.ingest_token().unwrap().unwrap().expose(), "s3cr3t");
        assert!(!format!("{secret:?}").contains("s3cr3t"), "the token never prints");
    }
}
