//! OTLP metrics → store points: validated, identified, made deltas.
//!
//! - Duration histograms (`http.server.request.duration` from Kuroko's agent
//!   or any OpenTelemetry SDK, `kuroko.job.duration`), exponential or
//!   explicit-bucket, in `s` or `ms`, become [`HistogramPoint`]s.
//! - `kuroko.transaction.*` and `kuroko.segment.*` sums become [`CounterPoint`]s.
//! - The transaction is `kuroko.transaction`, else `METHOD route` from
//!   `http.request.method` and `http.route`; points with neither are not
//!   transactions and are ignored (accepted, not stored).
//! - Cumulative points become deltas against the stream's previous point; a
//!   new start time or a count that went down is a reset, whose point counts
//!   whole.
//! - A point that breaks a limit or does not add up is rejected with its
//!   reason; the rest of the request is still accepted (OTLP partial success).

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality, Metric};

use crate::histogram::{Histogram, InvalidPoint};
use crate::store::{Batch, CounterPoint, HistogramPoint, SeriesKey};

/// Limits on what one data point may carry.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
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
}

impl Converted {
    fn reject(&mut self, metric: &str, reason: impl std::fmt::Display) {
        self.rejected += 1;
        if self.reasons.len() < 5 {
            self.reasons.push(format!("{metric}: {reason}"));
        }
    }
}

/// Previous cumulative values, per stream.
#[derive(Default)]
pub struct Deltas {
    histograms: HashMap<String, (u64, Histogram)>,
    counters: HashMap<String, (u64, f64)>,
}

/// A cumulative stream's new value: (stream, start time, value).
#[derive(Debug, PartialEq)]
pub enum Update {
    /// A histogram stream.
    Histogram(String, u64, Histogram),
    /// A counter stream.
    Counter(String, u64, f64),
}

impl Deltas {
    /// Moves the streams on, once their batch is stored.
    pub fn apply(&mut self, updates: Vec<Update>) {
        for update in updates {
            match update {
                Update::Histogram(stream, start, value) => {
                    self.histograms.insert(stream, (start, value));
                }
                Update::Counter(stream, start, value) => {
                    self.counters.insert(stream, (start, value));
                }
            }
        }
    }
}

fn text(value: &KeyValue) -> Option<String> {
    match value.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attributes.iter().find(|kv| kv.key == key)
}

/// The transaction a point belongs to, and its kind.
fn transaction(metric: &str, attributes: &[KeyValue]) -> Option<(String, &'static str)> {
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

const IDENTITY: [&str; 4] = [
    "kuroko.transaction",
    "kuroko.feature",
    "http.route",
    "http.request.method",
];

/// The point's other attributes, sorted, as `k=v,k=v`.
fn labels(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .filter(|kv| !IDENTITY.contains(&kv.key.as_str()))
        .filter_map(|kv| Some(format!("{}={}", kv.key, text(kv)?)))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Checks a point's attributes and time; `Err` is the reason to reject it.
fn check(attributes: &[KeyValue], time_unix_nano: u64, now_unix_nano: u64, limits: &Limits) -> Result<(), String> {
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

/// Converts `request`, received at `now_unix_nano`.
pub fn convert(
    request: &ExportMetricsServiceRequest,
    deltas: &Deltas,
    limits: &Limits,
    now_unix_nano: u64,
) -> Converted {
    let mut out = Converted::default();
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let service = get(resource, "service.name")
            .and_then(text)
            .unwrap_or_else(|| "unknown_service".to_owned());
        let host = get(resource, "host.name")
            .and_then(text)
            .unwrap_or_else(|| "unknown".to_owned());
        for metric in resource_metrics.scope_metrics.iter().flat_map(|s| &s.metrics) {
            convert_metric(metric, &service, &host, deltas, limits, now_unix_nano, &mut out);
        }
    }
    out
}

fn key(service: &str, host: &str, transaction: String, kind: &str, attributes: &[KeyValue]) -> SeriesKey {
    SeriesKey {
        service: service.to_owned(),
        host: host.to_owned(),
        transaction,
        feature: get(attributes, "kuroko.feature").and_then(text).unwrap_or_default(),
        kind: kind.to_owned(),
    }
}

fn minute(time_unix_nano: u64) -> i64 {
    (time_unix_nano / 60_000_000_000) as i64
}

fn stream_id(service: &str, host: &str, metric: &str, attributes: &[KeyValue]) -> String {
    let mut all: Vec<String> = attributes
        .iter()
        .filter_map(|kv| Some(format!("{}={}", kv.key, text(kv)?)))
        .collect();
    all.sort();
    format!("{service}\u{1f}{host}\u{1f}{metric}\u{1f}{}", all.join("\u{1f}"))
}

/// What every point of one metric shares.
struct Context<'a> {
    service: &'a str,
    host: &'a str,
    name: &'a str,
    deltas: &'a Deltas,
    limits: &'a Limits,
    now: u64,
}

/// The parts of a point that identify and place it.
struct Point<'a> {
    attributes: &'a [KeyValue],
    start: u64,
    time: u64,
}

fn convert_metric(
    metric: &Metric,
    service: &str,
    host: &str,
    deltas: &Deltas,
    limits: &Limits,
    now: u64,
    out: &mut Converted,
) {
    let name = metric.name.as_str();
    let context = Context {
        service,
        host,
        name,
        deltas,
        limits,
        now,
    };
    let is_duration = matches!(name, "http.server.request.duration" | "kuroko.job.duration");
    let factor = if metric.unit == "ms" { 1e-3 } else { 1.0 };
    let cumulative = |temporality: i32| temporality == AggregationTemporality::Cumulative as i32;
    match &metric.data {
        Some(metric::Data::ExponentialHistogram(h)) if is_duration => {
            for p in &h.data_points {
                let point = Point {
                    attributes: &p.attributes,
                    start: p.start_time_unix_nano,
                    time: p.time_unix_nano,
                };
                histogram_point(&context, point, cumulative(h.aggregation_temporality), out, || {
                    if p.negative
                        .as_ref()
                        .is_some_and(|n| n.bucket_counts.iter().any(|c| *c > 0))
                    {
                        return Err(InvalidPoint::Negative("a bucket"));
                    }
                    let positive = p.positive.clone().unwrap_or_default();
                    let histogram = Histogram::from_exponential(
                        p.scale,
                        p.zero_count,
                        p.zero_threshold,
                        positive.offset,
                        &positive.bucket_counts,
                        p.count,
                        p.sum,
                        p.min.zip(p.max),
                    )?;
                    Ok(rescaled(histogram, factor))
                });
            }
        }
        Some(metric::Data::Histogram(h)) if is_duration => {
            for p in &h.data_points {
                let point = Point {
                    attributes: &p.attributes,
                    start: p.start_time_unix_nano,
                    time: p.time_unix_nano,
                };
                histogram_point(&context, point, cumulative(h.aggregation_temporality), out, || {
                    let bounds: Vec<f64> = p.explicit_bounds.iter().map(|b| b * factor).collect();
                    Histogram::from_explicit(
                        &bounds,
                        &p.bucket_counts,
                        p.count,
                        p.sum.map(|s| s * factor),
                        p.min.zip(p.max).map(|(a, b)| (a * factor, b * factor)),
                    )
                });
            }
        }
        Some(metric::Data::Sum(sum))
            if name.starts_with("kuroko.transaction.") || name.starts_with("kuroko.segment.") =>
        {
            for p in &sum.data_points {
                let Some((transaction, kind)) = transaction(name, &p.attributes) else {
                    continue;
                };
                if let Err(reason) = check(&p.attributes, p.time_unix_nano, now, limits) {
                    out.reject(name, reason);
                    continue;
                }
                let value = match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    Some(number_data_point::Value::AsInt(v)) => v as f64,
                    None => f64::NAN,
                };
                if !value.is_finite() || value < 0.0 {
                    out.reject(name, format!("value {value} is not a finite, non-negative number"));
                    continue;
                }
                let value = if cumulative(sum.aggregation_temporality) {
                    let stream = stream_id(service, host, name, &p.attributes);
                    let previous = deltas.counters.get(&stream).copied();
                    if previous.is_none() && deltas.counters.len() >= limits.max_cumulative_streams {
                        out.reject(name, "too many cumulative streams to convert to deltas");
                        continue;
                    }
                    out.updates.push(Update::Counter(stream, p.start_time_unix_nano, value));
                    match previous {
                        Some((start, last)) if start == p.start_time_unix_nano && value >= last => value - last,
                        _ => value,
                    }
                } else {
                    value
                };
                out.batch.counters.push(CounterPoint {
                    key: key(service, host, transaction, kind, &p.attributes),
                    minute: minute(p.time_unix_nano),
                    name: name.to_owned(),
                    labels: labels(&p.attributes),
                    value,
                });
            }
        }
        _ => {}
    }
}

/// One histogram point: identified, checked, built by `build`, made a delta
/// when cumulative, and added to the batch.
fn histogram_point(
    context: &Context<'_>,
    point: Point<'_>,
    cumulative: bool,
    out: &mut Converted,
    build: impl FnOnce() -> Result<Histogram, InvalidPoint>,
) {
    let Context {
        service,
        host,
        name,
        deltas,
        limits,
        now,
    } = *context;
    let Some((transaction, kind)) = transaction(name, point.attributes) else {
        return;
    };
    if let Err(reason) = check(point.attributes, point.time, now, limits) {
        return out.reject(name, reason);
    }
    let histogram = match build() {
        Ok(histogram) => histogram,
        Err(reason) => return out.reject(name, reason),
    };
    let histogram = if cumulative {
        let stream = stream_id(service, host, name, point.attributes);
        let previous = deltas.histograms.get(&stream);
        if previous.is_none() && deltas.histograms.len() >= limits.max_cumulative_streams {
            return out.reject(name, "too many cumulative streams to convert to deltas");
        }
        let delta = match previous {
            Some((start, last)) if *start == point.start => histogram.since(last),
            _ => None,
        };
        out.updates
            .push(Update::Histogram(stream, point.start, histogram.clone()));
        delta.unwrap_or(histogram)
    } else {
        histogram
    };
    if histogram.count > 0 {
        let key = key(service, host, transaction, kind, point.attributes);
        out.batch.histograms.push(HistogramPoint {
            key,
            minute: minute(point.time),
            histogram,
        });
    }
}

/// A histogram in another unit, scaled by `factor` (1 for seconds).
fn rescaled(mut histogram: Histogram, factor: f64) -> Histogram {
    if factor == 1.0 {
        return histogram;
    }
    // Shifting buckets by log2(factor) is exact only in whole buckets: an estimate.
    let shift = (factor.log2() * f64::powi(2.0, histogram.scale)).round() as i32;
    histogram.buckets = histogram
        .buckets
        .into_iter()
        .map(|(i, c)| (i.saturating_add(shift), c))
        .collect();
    histogram.sum *= factor;
    histogram.min *= factor;
    histogram.max *= factor;
    histogram.zero_threshold *= factor;
    histogram.estimated = true;
    histogram
}
