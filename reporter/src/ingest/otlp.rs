//! What every OTLP signal's conversion shares: attribute lookups, the
//! transaction a point belongs to, limits, checks, and the result.

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::store::{Batch, SeriesKey};

/// The outcome counter every source feeds: label `kuroko.outcome`.
pub(crate) const OUTCOMES: &str = "kuroko.transaction.outcomes";

/// Limits on what one data point may carry (`[limits]` in `kuroko.toml`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most series one service may have; new ones past it fold into the
    /// service's `kuroko.overflow` series. Default: 10,000.
    pub max_series_per_service: usize,
    /// Most series the reporter keeps, all services together: past it, the
    /// series of services not seen before fold into the service
    /// `kuroko.overflow` (unique `service.name`s would otherwise make a
    /// series each, past the per-service limit). Default: 200,000.
    pub max_series: usize,
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
    /// Most bytes the cumulative streams' last points may take in memory
    /// (a stream's last point can be a whole histogram: up to 64 KiB of
    /// buckets, or an explicit point's every bound). A point that would
    /// take the streams past it is refused. Default: 128 MiB.
    pub max_cumulative_stream_bytes: usize,
    /// Longest stack trace kept (`exception.stacktrace` of a log record or
    /// an exception span event), in bytes; a longer one keeps its first and
    /// last lines, cut between. Never a reason to reject an error (nor is a
    /// long `exception.message`). Default: 16,384.
    pub max_stacktrace_bytes: usize,
    /// Wrong query tokens one client address may send per minute (to
    /// `/login`, or as a header or cookie to the API, the pages and
    /// `/metrics`); past it, that address gets 429 until the minute ends.
    /// Default: 10.
    pub max_login_failures_per_address: u32,
    /// Wrong query tokens all clients together may send per minute; past
    /// it, `/login` answers 429 until the minute ends. Default: 100.
    pub max_login_failures: u32,
    /// Most spans a kept trace stores (its transaction span and the first
    /// of its subtree); the rest still count as segments. Default: 200.
    pub max_trace_spans: usize,
    /// Most attribute bytes (keys and values) a kept trace stores per span;
    /// each value is first cut to `max_value_bytes`, and attributes past
    /// the budget are left out. Default: 4,096.
    pub max_span_attribute_bytes: usize,
    /// Most bytes a kept trace stores, all its spans together: spans past
    /// it are left out (the transaction span is always kept). Default:
    /// 262,144 (256 KiB).
    pub max_trace_bytes: usize,
    /// Bytes kept free on the embedded store's file system: writes that
    /// would leave less are refused (503 with `Retry-After`, gRPC
    /// UNAVAILABLE), so that what was acknowledged can always be flushed
    /// (see `store/headroom.rs`); 0 turns the check off. Default: 256 MiB.
    pub min_free_bytes: u64,
    /// Seconds a connection to the HTTP port has to send a request's
    /// headers, from when it opens or its last answer: slow headers and
    /// idle kept-alive connections are closed. Default: 60.
    pub header_timeout_seconds: u64,
    /// Seconds an OTLP request's body (HTTP or gRPC) has to arrive once its
    /// headers have: 408 or DEADLINE_EXCEEDED otherwise. Default: 30.
    pub body_timeout_seconds: u64,
    /// Most bytes of OTLP requests held at once, all clients together: their
    /// bodies as sent, decompressed, and decoded. A request past it is
    /// refused, 503 with Retry-After or RESOURCE_EXHAUSTED, to be retried.
    /// Default: 256 MiB.
    pub max_inflight_bytes: usize,
    /// The same, per client connection (HTTP/2 carries many requests on
    /// one). A request that no other holds bytes beside is never refused
    /// (alone, it would be refused at every retry). Default: 64 MiB.
    pub max_inflight_bytes_per_connection: usize,
    /// Seconds between the HTTP/2 pings the gRPC port sends on each
    /// connection. Default: 60.
    pub grpc_keepalive_seconds: u64,
    /// Seconds a ping may go unanswered before its connection (and every
    /// request on it) is dropped: a client that stopped reading. Default: 20.
    pub grpc_keepalive_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_service: 10_000,
            max_series: 200_000,
            max_attributes: 64,
            max_value_bytes: 1_024,
            max_age_seconds: 8 * 86_400,
            max_future_seconds: 3_600,
            max_cumulative_streams: 200_000,
            max_cumulative_stream_bytes: 128 << 20,
            max_stacktrace_bytes: 16 << 10,
            max_login_failures_per_address: 10,
            max_login_failures: 100,
            max_trace_spans: 200,
            max_span_attribute_bytes: 4 << 10,
            max_trace_bytes: 256 << 10,
            min_free_bytes: 256 << 20,
            header_timeout_seconds: 60,
            body_timeout_seconds: 30,
            max_inflight_bytes: 256 << 20,
            max_inflight_bytes_per_connection: 64 << 20,
            grpc_keepalive_seconds: 60,
            grpc_keepalive_timeout_seconds: 20,
        }
    }
}

/// The outcome of converting one request.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// What to store, with how the cumulative streams move on
    /// ([`Batch::streams`]: applied in memory once the batch is stored, so a
    /// failed write leaves them as they were and a retry is not lost).
    pub batch: Batch,
    /// Points rejected.
    pub rejected: u64,
    /// The first few reasons, for the partial-success message.
    pub reasons: Vec<String>,
    /// What kept traces left out to stay within their budgets.
    pub trimmed: Trimmed,
    /// Points rejected, by the rule each broke (`/metrics`).
    pub refused: [u64; Rule::ALL.len()],
}

/// The rule a refused point (record, span) broke: each is a budget or a
/// check of the hostile-input rules, counted in `/metrics` as
/// `kuroko_reporter_points_refused_total{rule="…"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// The resource's names (`service.name`, `host.name`, the environment).
    Resource,
    /// `max_attributes`.
    Attributes,
    /// `max_value_bytes`, for an attribute's value or name (or a span's).
    AttributeLength,
    /// `max_age_seconds` / `max_future_seconds`.
    Time,
    /// A duration's unit that is not one.
    Unit,
    /// A value that no measurement can be: counts that do not add up, runs
    /// beyond a year or below a nanosecond, NaN, a negative count.
    Value,
    /// `max_cumulative_streams` / `max_cumulative_stream_bytes`, or a
    /// stream's point out of order.
    Streams,
    /// `kuroko.error.count` beyond 2^30.
    ErrorCount,
    /// A span that ends before it starts.
    Span,
}

impl Rule {
    /// Every rule, in the order of [`Converted::refused`].
    pub(crate) const ALL: [Rule; 9] = [
        Rule::Resource,
        Rule::Attributes,
        Rule::AttributeLength,
        Rule::Time,
        Rule::Unit,
        Rule::Value,
        Rule::Streams,
        Rule::ErrorCount,
        Rule::Span,
    ];

    /// Its label in `/metrics`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Rule::Resource => "resource",
            Rule::Attributes => "attributes",
            Rule::AttributeLength => "attribute_length",
            Rule::Time => "time",
            Rule::Unit => "unit",
            Rule::Value => "value",
            Rule::Streams => "streams",
            Rule::ErrorCount => "error_count",
            Rule::Span => "span",
        }
    }
}

/// Why a point is refused: the rule it broke, and the reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The rule.
    pub rule: Rule,
    /// The reason, for the partial-success message.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What kept traces left out to stay within their budgets
/// (`max_trace_spans`, `max_span_attribute_bytes`, `max_trace_bytes`); the
/// spans themselves are accepted and counted as segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Spans of kept traces not stored with them.
    pub spans: u64,
    /// Attribute values of kept spans cut to `max_value_bytes` or left out.
    pub attributes: u64,
}

impl Trimmed {
    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: Trimmed) {
        self.spans = self.spans.saturating_add(other.spans);
        self.attributes = self.attributes.saturating_add(other.attributes);
    }
}

impl Converted {
    /// Rejects one point of `metric` (or signal) for breaking `rule`.
    pub(crate) fn reject(&mut self, metric: &str, rule: Rule, reason: impl std::fmt::Display) {
        self.reject_many(metric, rule, reason, 1);
    }

    /// Rejects one point for a [`Refusal`] ([`check`]'s).
    pub(crate) fn refuse(&mut self, metric: &str, refusal: Refusal) {
        self.reject(metric, refusal.rule, refusal.reason);
    }

    /// Notes, for the partial-success message, something kept only in part
    /// (nothing is rejected).
    pub(crate) fn note(&mut self, what: &str, note: impl std::fmt::Display) {
        if self.reasons.len() < 5 {
            self.reasons.push(format!("{what}: {note}"));
        }
    }

    /// Rejects `count` points at once, for one reason (a resource's all).
    pub(crate) fn reject_many(&mut self, what: &str, rule: Rule, reason: impl std::fmt::Display, count: u64) {
        self.rejected = self.rejected.saturating_add(count);
        if let Some(at) = Rule::ALL.iter().position(|r| *r == rule) {
            self.refused[at] = self.refused[at].saturating_add(count);
        }
        if self.reasons.len() < 5 && count > 0 {
            self.reasons.push(format!("{what}: {reason}"));
        }
    }
}

/// An attribute as converting reads it: its key, and its value as text.
/// Implemented by prost's [`KeyValue`] and the in-place reader's
/// [`Attr`](super::wire::Attr), so every signal shares these helpers.
pub(crate) trait Attribute {
    /// The key.
    fn key(&self) -> &str;
    /// The value as text, borrowed when it is a string; `None` for values
    /// with no text (bytes, arrays, maps, none).
    fn text(&self) -> Option<std::borrow::Cow<'_, str>>;
    /// Whether the value is an integer or a boolean, whose text is at most
    /// 20 bytes (a double's can run to hundreds of digits).
    fn is_short(&self) -> bool;
}

impl Attribute for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }

    fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(Cow::Borrowed(s)),
            any_value::Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
            any_value::Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
            any_value::Value::BoolValue(b) => Some(Cow::Owned(b.to_string())),
            _ => None,
        }
    }

    fn is_short(&self) -> bool {
        matches!(
            self.value.as_ref().and_then(|v| v.value.as_ref()),
            Some(any_value::Value::IntValue(_) | any_value::Value::BoolValue(_))
        )
    }
}

impl Attribute for super::wire::Attr<'_> {
    fn key(&self) -> &str {
        self.key
    }

    fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use super::wire::Value;
        use std::borrow::Cow;
        match self.value {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Double(d) => Some(Cow::Owned(d.to_string())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            Value::None => None,
        }
    }

    fn is_short(&self) -> bool {
        matches!(self.value, super::wire::Value::Int(_) | super::wire::Value::Bool(_))
    }
}

pub(crate) fn text<A: Attribute>(value: &A) -> Option<String> {
    value.text().map(std::borrow::Cow::into_owned)
}

pub(crate) fn get<'a, A: Attribute>(attributes: &'a [A], key: &str) -> Option<&'a A> {
    attributes.iter().find(|kv| kv.key() == key)
}

/// Whether `metric` is an HTTP server's request duration, in either
/// generation of the semantic conventions: `http.server.request.duration`
/// (seconds, since 1.23) or `http.server.duration` (milliseconds, before).
pub(crate) fn is_http_server_duration(metric: &str) -> bool {
    matches!(metric, "http.server.request.duration" | "http.server.duration")
}

/// The first of `keys` a point carries: the same attribute under its
/// current and its older semantic-convention names.
pub(crate) fn get_any<'a, A: Attribute>(attributes: &'a [A], keys: &[&str]) -> Option<&'a A> {
    keys.iter().find_map(|key| get(attributes, key))
}

/// `http.request.method`, or the older `http.method`.
pub(crate) const METHOD: [&str; 2] = ["http.request.method", "http.method"];

/// `http.response.status_code`, or the older `http.status_code`.
pub(crate) const STATUS_CODE: [&str; 2] = ["http.response.status_code", "http.status_code"];

/// The transaction a point belongs to, and its kind: `kuroko.transaction`,
/// else `METHOD route`. A request the server answered without matching a
/// route (a 404, most often) is `METHOD (no route)` when `http_server` says
/// the point is a server's request (an `http.server.request.duration`
/// point, or a SERVER span): one name whichever signal brings it, so that
/// its spans are known to be counted by its metrics already.
pub(crate) fn transaction<A: Attribute>(http_server: bool, attributes: &[A]) -> Option<(String, &'static str)> {
    let route = get(attributes, "http.route").and_then(Attribute::text);
    if let Some(name) = get(attributes, "kuroko.transaction").and_then(text) {
        return Some((name, if route.is_some() { "web" } else { "job" }));
    }
    let method = get_any(attributes, &METHOD).and_then(Attribute::text);
    match (method, route) {
        (Some(method), Some(route)) => Some((format!("{method} {route}"), "web")),
        (Some(method), None) if http_server => Some((format!("{method} (no route)"), "web")),
        _ => None,
    }
}

/// How a run ended, as `kuroko.transaction.outcomes` counts it, from an HTTP
/// status code (either convention's name), `error.type`, and whether the
/// span said it failed: a 5xx is `5xx`; else a run with an `error.type` or a
/// failed status is `error`, as the HTTP semantic conventions define a
/// server's errors; 4xx, 3xx and 1xx are themselves; the rest `ok`.
pub(crate) fn outcome<A: Attribute>(attributes: &[A], failed: bool) -> &'static str {
    let status = get_any(attributes, &STATUS_CODE)
        .and_then(Attribute::text)
        .and_then(|s| s.parse::<u16>().ok());
    let error_type = get(attributes, "error.type")
        .and_then(Attribute::text)
        .is_some_and(|t| !t.is_empty());
    match status {
        Some(code) if code >= 500 => "5xx",
        _ if error_type || failed => "error",
        Some(code) if code >= 400 => "4xx",
        Some(code) if code >= 300 => "3xx",
        Some(code) if code < 200 => "1xx",
        _ => "ok",
    }
}

/// The attributes that name a transaction's series; the others are labels.
pub(crate) const IDENTITY: [&str; 5] = [
    "kuroko.transaction",
    "kuroko.feature",
    "http.route",
    "http.request.method",
    "http.method",
];

/// The point's other attributes, sorted, as `k=v,k=v`.
pub(crate) fn labels<A: Attribute>(attributes: &[A]) -> String {
    let mut pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = attributes
        .iter()
        .filter(|kv| !IDENTITY.contains(&kv.key()))
        .filter_map(|kv| Some((kv.key(), kv.text()?)))
        .collect();
    // In the order of the `k=v` texts, as before they were built in one go.
    let text = |(k, v): &(&str, std::borrow::Cow<'_, str>)| {
        let (k, v) = (k.as_bytes(), v.as_bytes());
        k.iter().chain(b"=").chain(v).copied().collect::<Vec<u8>>()
    };
    pairs.sort_by(|a, b| {
        // Most keys differ before either ends: compare the texts only then.
        match a.0.cmp(b.0) {
            std::cmp::Ordering::Equal => a.1.cmp(&b.1),
            _ if a.0.starts_with(b.0) || b.0.starts_with(a.0) => text(a).cmp(&text(b)),
            other => other,
        }
    });
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Checks a point's attributes and time; `Err` is the reason to reject it.
pub(crate) fn check<A: Attribute>(
    attributes: &[A],
    time_unix_nano: u64,
    now_unix_nano: u64,
    limits: &Limits,
) -> Result<(), Refusal> {
    check_except(attributes, &[], time_unix_nano, now_unix_nano, limits)
}

/// [`check`], leaving out of the length limit the attributes named in
/// `unlimited` (which the caller cuts to limits of their own).
pub(crate) fn check_except<A: Attribute>(
    attributes: &[A],
    unlimited: &[&str],
    time_unix_nano: u64,
    now_unix_nano: u64,
    limits: &Limits,
) -> Result<(), Refusal> {
    let refusal = |rule, reason| Err(Refusal { rule, reason });
    if attributes.len() > limits.max_attributes {
        return refusal(
            Rule::Attributes,
            format!(
                "{} attributes, more than the limit of {}",
                attributes.len(),
                limits.max_attributes
            ),
        );
    }
    // Integers and booleans are not written out just to be measured.
    let too_long = |kv: &&A| {
        let exempt = unlimited.contains(&kv.key()) || (kv.is_short() && limits.max_value_bytes >= 20);
        !exempt && kv.text().is_some_and(|v| v.len() > limits.max_value_bytes)
    };
    if let Some(kv) = attributes.iter().find(too_long) {
        return refusal(
            Rule::AttributeLength,
            format!(
                "attribute {:?} is longer than {} bytes",
                kv.key(),
                limits.max_value_bytes
            ),
        );
    }
    // Keys are kept too (in labels, in spans): held to the same limit.
    if let Some(kv) = attributes.iter().find(|kv| kv.key().len() > limits.max_value_bytes) {
        return refusal(
            Rule::AttributeLength,
            format!(
                "an attribute's name is {} bytes long, more than {}",
                kv.key().len(),
                limits.max_value_bytes
            ),
        );
    }
    let oldest = now_unix_nano.saturating_sub(limits.max_age_seconds.saturating_mul(1_000_000_000));
    let latest = now_unix_nano.saturating_add(limits.max_future_seconds.saturating_mul(1_000_000_000));
    if time_unix_nano < oldest {
        let age = now_unix_nano.saturating_sub(time_unix_nano) / 1_000_000_000;
        return refusal(
            Rule::Time,
            format!(
                "timestamp {time_unix_nano} is {age} s old, more than max_age_seconds ({})",
                limits.max_age_seconds
            ),
        );
    }
    if time_unix_nano > latest {
        let ahead = time_unix_nano.saturating_sub(now_unix_nano) / 1_000_000_000;
        return refusal(
            Rule::Time,
            format!(
                "timestamp {time_unix_nano} is {ahead} s ahead of the reporter's clock, more than \
                 max_future_seconds ({}): check the sender's clock",
                limits.max_future_seconds
            ),
        );
    }
    Ok(())
}

pub(crate) fn key<A: Attribute>(sender: &Identity, transaction: String, kind: &str, attributes: &[A]) -> SeriesKey {
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

/// `service.name`, `host.name` and the deployment environment of a resource,
/// with defaults; `Err` is the reason to refuse all of its data (see
/// [`identity`]).
pub(crate) fn resource_identity(resource: Option<&Resource>, limits: &Limits) -> Result<Identity, String> {
    identity(resource.map(|r| r.attributes.as_slice()).unwrap_or_default(), limits)
}

/// `service.name`, `host.name` and the deployment environment among a
/// resource's attributes, with defaults. They name every series of the
/// resource, so each is held to the attribute length limit: `Err` is the
/// reason to refuse all of the resource's data (an 8 MB service name would
/// otherwise be stored with every series and shown on every page).
pub(crate) fn identity<A: Attribute>(attributes: &[A], limits: &Limits) -> Result<Identity, String> {
    let named = |keys: &[&str], default: &str| -> Result<String, String> {
        let Some(kv) = get_any(attributes, keys) else {
            return Ok(default.to_owned());
        };
        match kv.text() {
            Some(value) if value.len() > limits.max_value_bytes => Err(format!(
                "resource attribute {:?} is longer than {} bytes",
                kv.key(),
                limits.max_value_bytes
            )),
            Some(value) => Ok(value.into_owned()),
            None => Ok(default.to_owned()),
        }
    };
    Ok(Identity {
        service: named(&["service.name"], "unknown_service")?,
        host: named(&["host.name"], "unknown")?,
        environment: named(&["deployment.environment.name", "deployment.environment"], "")?,
    })
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    #[test]
    fn labels_sort_as_their_texts_do() {
        let attributes = [
            kv("a", "1"),
            kv("kuroko.transaction", "x"),
            kv("a.b", "2"),
            kv("b", "0"),
        ];
        // `a.b=2` sorts before `a=1`: '.' < '='.
        assert_eq!(labels(&attributes), "a.b=2,a=1,b=0");
    }
}
