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
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality, Metric};

use super::otlp::{check, key, labels, minute, resource_identity, text, transaction, Converted, Limits};
use crate::histogram::{Histogram, InvalidPoint};
use crate::store::{CounterPoint, HistogramPoint};

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

/// Converts `request`, received at `now_unix_nano`.
pub fn convert(
    request: &ExportMetricsServiceRequest,
    deltas: &Deltas,
    limits: &Limits,
    now_unix_nano: u64,
) -> Converted {
    let mut out = Converted::default();
    for resource_metrics in &request.resource_metrics {
        let (service, host) = resource_identity(resource_metrics.resource.as_ref());
        for metric in resource_metrics.scope_metrics.iter().flat_map(|s| &s.metrics) {
            convert_metric(metric, &service, &host, deltas, limits, now_unix_nano, &mut out);
        }
    }
    out
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
