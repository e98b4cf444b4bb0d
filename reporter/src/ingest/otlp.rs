//! What every OTLP signal's conversion shares: attribute lookups, the
//! transaction a point belongs to, limits, checks, and the result.

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::metrics::Update;
use crate::store::{Batch, SeriesKey};

/// Limits on what one data point may carry (`[limits]` in `kuroko.toml`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most series one service may have; new ones past it fold into the
    /// service's `kuroko.overflow` series. Default: 10,000.
    pub max_series_per_service: usize,
    /// Most attributes on one point. Default: 64.
    pub max_attributes: usize,
    /// Longest attribute value, in bytes. Default: 1,024.
    pub max_value_bytes: usize,
    /// Oldest point accepted, in seconds before now. Default: 8 days.
    pub max_age_seconds: u64,
    /// Furthest a point may lie in the future, in seconds. Default: 1 h.
    pub max_future_seconds: u64,
    /// Most cumulative streams remembered for delta conversion. Default: 200,000.
    pub max_cumulative_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_service: 10_000,
            max_attributes: 64,
            max_value_bytes: 1_024,
            max_age_seconds: 8 * 86_400,
            max_future_seconds: 3_600,
            max_cumulative_streams: 200_000,
        }
    }
}

/// The outcome of converting one request.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// What to store.
    pub batch: Batch,
    /// How the cumulative streams move on, to apply once the batch is stored
    /// (a failed write leaves them as they were, so a retry is not lost).
    pub updates: Vec<Update>,
    /// Points rejected.
    pub rejected: u64,
    /// The first few reasons, for the partial-success message.
    pub reasons: Vec<String>,
    /// (service, transaction) whose durations this request brought as
    /// metrics: their spans are then kept as traces but not counted again.
    pub metric_transactions: Vec<(String, String)>,
}

impl Converted {
    pub(crate) fn reject(&mut self, metric: &str, reason: impl std::fmt::Display) {
        self.rejected += 1;
        if self.reasons.len() < 5 {
            self.reasons.push(format!("{metric}: {reason}"));
        }
    }
}

pub(crate) fn text(value: &KeyValue) -> Option<String> {
    match value.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn get<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attributes.iter().find(|kv| kv.key == key)
}

/// The transaction a point belongs to, and its kind.
pub(crate) fn transaction(metric: &str, attributes: &[KeyValue]) -> Option<(String, &'static str)> {
    let route = get(attributes, "http.route").and_then(text);
    let method = get(attributes, "http.request.method").and_then(text);
    if let Some(name) = get(attributes, "kuroko.transaction").and_then(text) {
        return Some((name, if route.is_some() { "web" } else { "job" }));
    }
    match (method, route) {
        (Some(method), Some(route)) => Some((format!("{method} {route}"), "web")),
        (Some(method), None) if metric == "http.server.request.duration" => {
            Some((format!("{method} (no route)"), "web"))
        }
        _ => None,
    }
}

pub(crate) const IDENTITY: [&str; 4] = [
    "kuroko.transaction",
    "kuroko.feature",
    "http.route",
    "http.request.method",
];

/// The point's other attributes, sorted, as `k=v,k=v`.
pub(crate) fn labels(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .filter(|kv| !IDENTITY.contains(&kv.key.as_str()))
        .filter_map(|kv| Some(format!("{}={}", kv.key, text(kv)?)))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Checks a point's attributes and time; `Err` is the reason to reject it.
pub(crate) fn check(
    attributes: &[KeyValue],
    time_unix_nano: u64,
    now_unix_nano: u64,
    limits: &Limits,
) -> Result<(), String> {
    if attributes.len() > limits.max_attributes {
        return Err(format!(
            "{} attributes, more than the limit of {}",
            attributes.len(),
            limits.max_attributes
        ));
    }
    if let Some(kv) = attributes
        .iter()
        .find(|kv| text(kv).is_some_and(|v| v.len() > limits.max_value_bytes))
    {
        return Err(format!(
            "attribute {:?} is longer than {} bytes",
            kv.key, limits.max_value_bytes
        ));
    }
    let oldest = now_unix_nano.saturating_sub(limits.max_age_seconds * 1_000_000_000);
    let latest = now_unix_nano.saturating_add(limits.max_future_seconds * 1_000_000_000);
    if time_unix_nano < oldest || time_unix_nano > latest {
        return Err(format!(
            "timestamp {time_unix_nano} is more than {} s old or {} s ahead",
            limits.max_age_seconds, limits.max_future_seconds
        ));
    }
    Ok(())
}

pub(crate) fn key(sender: &Identity, transaction: String, kind: &str, attributes: &[KeyValue]) -> SeriesKey {
    SeriesKey {
        service: sender.service.clone(),
        host: sender.host.clone(),
        transaction,
        feature: get(attributes, "kuroko.feature").and_then(text).unwrap_or_default(),
        kind: kind.to_owned(),
        environment: sender.environment.clone(),
    }
}

/// Who sent a resource's data.
#[derive(Debug)]
pub(crate) struct Identity {
    /// `service.name`, or `unknown_service`.
    pub(crate) service: String,
    /// `host.name`, or `unknown`.
    pub(crate) host: String,
    /// `deployment.environment.name` (or the older `deployment.environment`), or empty.
    pub(crate) environment: String,
}

pub(crate) fn minute(time_unix_nano: u64) -> i64 {
    (time_unix_nano / 60_000_000_000) as i64
}

/// `service.name`, `host.name` and the deployment environment of a resource, with defaults.
pub(crate) fn resource_identity(resource: Option<&Resource>) -> Identity {
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
    let service = get(attributes, "service.name")
        .and_then(text)
        .unwrap_or_else(|| "unknown_service".to_owned());
    let host = get(attributes, "host.name")
        .and_then(text)
        .unwrap_or_else(|| "unknown".to_owned());
    let environment = get(attributes, "deployment.environment.name")
        .or_else(|| get(attributes, "deployment.environment"))
        .and_then(text)
        .unwrap_or_default();
    Identity {
        service,
        host,
        environment,
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
