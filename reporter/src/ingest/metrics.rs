//! OTLP metrics → store points: validated, identified, made deltas.
//!
//! - Duration histograms (`http.server.request.duration` from Kuroko's agent
//!   or any OpenTelemetry SDK, `kuroko.job.duration`), exponential or
//!   explicit-bucket, in `s` or `ms`, become [`HistogramPoint`]s.
//! - `kuroko.transaction.*` and `kuroko.segment.*` sums become [`CounterPoint`]s.
//! - The transaction is `kuroko.transaction`, else `METHOD route` from
//!   `http.request.method` and `http.route` (`METHOD (no route)` for an
//!   `http.server.request.duration` point without a route, as a 404's);
//!   points with neither are not transactions and are ignored (accepted,
//!   not stored).
//! - Cumulative points become deltas against the stream's previous point; a
//!   new start time or a count that went down is a reset, whose point counts
//!   whole.
//! - A point that breaks a limit or does not add up is rejected with its
//!   reason; the rest of the request is still accepted (OTLP partial success).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;

use super::otlp::{
    check, identity, key, labels, minute, text, transaction, Attribute, Converted, Identity, Limits, IDENTITY,
};
use super::wire::{Attr, Data, Metric, Request};
use crate::histogram::{Histogram, InvalidPoint};
use crate::store::{CounterPoint, HistogramPoint, SeriesKey};

/// Previous cumulative values, per stream.
#[derive(Default)]
pub struct Deltas {
    histograms: HashMap<String, (u64, Histogram)>,
    explicit: HashMap<String, (u64, Explicit)>,
    counters: HashMap<String, (u64, f64)>,
}

/// An explicit-bucket point as sent (seconds), kept per cumulative stream:
/// deltas are taken on these raw counts, before conversion, since the
/// conversion places open-ended buckets at the stream's moving min and max.
#[derive(Clone, Debug, PartialEq)]
pub struct Explicit {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Explicit {
    /// What was added since `earlier`, or `None` when something went down or
    /// the bounds changed: a reset.
    fn since(&self, earlier: &Explicit) -> Option<Explicit> {
        if self.bounds != earlier.bounds || self.counts.len() != earlier.counts.len() {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(now, then)| now.checked_sub(*then))
            .collect::<Option<Vec<u64>>>()?;
        Some(Explicit {
            bounds: self.bounds.clone(),
            counts,
            count: self.count.checked_sub(earlier.count)?,
            sum: (self.sum - earlier.sum).max(0.0),
        })
    }
}

/// A cumulative stream's new value: (stream, start time, value).
#[derive(Debug, PartialEq)]
pub enum Update {
    /// A histogram stream.
    Histogram(String, u64, Histogram),
    /// An explicit-bucket stream, raw.
    Explicit(String, u64, Explicit),
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
                Update::Explicit(stream, start, value) => {
                    self.explicit.insert(stream, (start, value));
                }
                Update::Counter(stream, start, value) => {
                    self.counters.insert(stream, (start, value));
                }
            }
        }
    }
}

/// Converts `request` (read in place, or decoded by prost: [`Request::of`]),
/// received at `now_unix_nano`.
pub fn convert(request: &Request<'_>, deltas: &Deltas, limits: &Limits, now_unix_nano: u64) -> Converted {
    let mut out = Converted::default();
    for resource_metrics in &request.resources {
        let resource = resource_metrics.attributes.as_slice();
        let sender = identity(resource);
        let mut series = Series::new(&sender);
        for scope_metrics in &resource_metrics.scopes {
            // Cumulative streams are told apart by everything that identifies
            // their sender (service.instance.id of each worker process
            // included), not by service and host alone.
            let source = format!("{}\u{1e}{}", fingerprint(resource), scope_metrics.name);
            for metric in &scope_metrics.metrics {
                let context = Context {
                    source: &source,
                    deltas,
                    limits,
                    now: now_unix_nano,
                };
                convert_metric(metric, &context, &mut series, &mut out);
            }
        }
    }
    out
}

/// One resource's series, each named once: its points share the key.
struct Series<'a> {
    sender: &'a Identity,
    /// By what names a point's series (the attributes [`IDENTITY`] lists,
    /// and whether the metric is the HTTP duration, which names a series
    /// without a route); `None` when the point is not a transaction's.
    named: FxHashMap<Names<'a>, Option<Arc<SeriesKey>>>,
}

/// Whether the metric is the HTTP duration, and the texts of a point's
/// [`IDENTITY`] attributes: all that names its series within a resource.
type Names<'a> = (bool, [Option<Cow<'a, str>>; 4]);

impl<'a> Series<'a> {
    fn new(sender: &'a Identity) -> Self {
        Series {
            sender,
            named: FxHashMap::default(),
        }
    }

    /// The series of a point of `metric` with `attributes`, when it is a
    /// transaction's.
    fn of(&mut self, metric: &str, attributes: &'a [Attr<'a>]) -> Option<Arc<SeriesKey>> {
        // One pass: the first attribute of each name, as `get` finds it.
        let mut found: [Option<&Attr<'a>>; 4] = [None; 4];
        for attribute in attributes {
            if let Some(at) = IDENTITY.iter().position(|name| *name == attribute.key) {
                found[at].get_or_insert(attribute);
            }
        }
        let names = found.map(|attribute| attribute.and_then(Attribute::text));
        let Series { sender, named } = self;
        let http_server = metric == "http.server.request.duration";
        named
            .entry((http_server, names))
            .or_insert_with(|| {
                let (transaction, kind) = transaction(http_server, attributes)?;
                Some(Arc::new(key(sender, transaction, kind, attributes)))
            })
            .clone()
    }
}

/// Attributes as one sorted string.
fn fingerprint<A: Attribute>(attributes: &[A]) -> String {
    let mut all: Vec<String> = attributes
        .iter()
        .filter_map(|kv| Some(format!("{}={}", kv.key(), text(kv)?)))
        .collect();
    all.sort();
    all.join("\u{1f}")
}

const TOO_MANY_STREAMS: &str = "too many cumulative streams to convert to deltas";

/// A cumulative stream's previous value, if any; `Err` when the stream is
/// new and no more streams may be remembered.
fn previous<'a, T>(streams: &'a HashMap<String, T>, stream: &str, limits: &Limits) -> Result<Option<&'a T>, ()> {
    match streams.get(stream) {
        None if streams.len() >= limits.max_cumulative_streams => Err(()),
        found => Ok(found),
    }
}

fn stream_id(source: &str, metric: &str, attributes: &[Attr<'_>]) -> String {
    format!("{source}\u{1d}{metric}\u{1d}{}", fingerprint(attributes))
}

/// What every point of one request's scope shares.
struct Context<'a> {
    /// The sender: its resource and scope.
    source: &'a str,
    deltas: &'a Deltas,
    limits: &'a Limits,
    now: u64,
}

/// The parts of a point that identify and place it.
struct Point<'a> {
    metric: &'a str,
    attributes: &'a [Attr<'a>],
    start: u64,
    time: u64,
}

fn convert_metric<'a>(metric: &'a Metric<'a>, context: &Context<'_>, series: &mut Series<'a>, out: &mut Converted) {
    let name = metric.name;
    let Context {
        source,
        deltas,
        limits,
        now,
    } = *context;
    let is_duration = matches!(name, "http.server.request.duration" | "kuroko.job.duration");
    let factor = if metric.unit == "ms" { 1e-3 } else { 1.0 };
    let cumulative = |temporality: i32| temporality == AggregationTemporality::Cumulative as i32;
    match &metric.data {
        Data::Exponential(temporality, points) if is_duration => {
            for p in points {
                let point = Point {
                    metric: name,
                    attributes: &p.attributes,
                    start: p.start,
                    time: p.time,
                };
                histogram_point(context, point, cumulative(*temporality), series, out, || {
                    if p.negative.as_ref().is_some_and(|n| n.counts.iter().any(|c| *c > 0)) {
                        return Err(InvalidPoint::Negative("a bucket"));
                    }
                    let (offset, counts) = p.positive.as_ref().map_or((0, &[][..]), |b| (b.offset, &b.counts[..]));
                    let histogram = Histogram::from_exponential(
                        p.scale,
                        p.zero_count,
                        p.zero_threshold,
                        offset,
                        counts,
                        p.count,
                        p.sum,
                        p.min.zip(p.max),
                    )?;
                    Ok(rescaled(histogram, factor))
                });
            }
        }
        Data::Histogram(temporality, points) if is_duration => {
            for p in points {
                let point = Point {
                    metric: name,
                    attributes: &p.attributes,
                    start: p.start,
                    time: p.time,
                };
                let raw = Explicit {
                    bounds: p.bounds.iter().map(|b| b * factor).collect(),
                    counts: p.bucket_counts.to_vec(),
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0) * factor,
                };
                let (delta, whole) = if cumulative(*temporality) {
                    let stream = stream_id(source, name, &p.attributes);
                    let Ok(previous) = previous(&deltas.explicit, &stream, limits) else {
                        out.reject(name, TOO_MANY_STREAMS);
                        continue;
                    };
                    let delta = previous
                        .filter(|(start, _)| *start == p.start)
                        .and_then(|(_, last)| raw.since(last));
                    out.updates.push(Update::Explicit(stream, p.start, raw.clone()));
                    match delta {
                        Some(delta) => (delta, false),
                        None => (raw, true),
                    }
                } else {
                    (raw, true)
                };
                // The point's min and max describe the whole stream: every value
                // of the delta lies between them, so they place its open-ended
                // buckets, and bound its extremes (exact when it is the whole).
                let stream_extremes = p.min.zip(p.max).map(|(a, b)| (a * factor, b * factor));
                histogram_point(context, point, false, series, out, || {
                    let mut histogram = Histogram::from_explicit(
                        &delta.bounds,
                        &delta.counts,
                        delta.count,
                        Some(delta.sum),
                        stream_extremes,
                    )?;
                    if let (false, Some((min, max))) = (whole, stream_extremes) {
                        let (low, high) = histogram.bucket_extremes();
                        histogram.min = low.clamp(min, max);
                        histogram.max = high.clamp(min, max);
                    }
                    Ok(histogram)
                });
            }
        }
        Data::Sum(temporality, points)
            if name.starts_with("kuroko.transaction.") || name.starts_with("kuroko.segment.") =>
        {
            for p in points {
                let Some(key) = series.of(name, &p.attributes) else {
                    continue;
                };
                if let Err(reason) = check(&p.attributes, p.time, now, limits) {
                    out.reject(name, reason);
                    continue;
                }
                let value = p.value.unwrap_or(f64::NAN);
                if !value.is_finite() || value < 0.0 {
                    out.reject(name, format!("value {value} is not a finite, non-negative number"));
                    continue;
                }
                let value = if cumulative(*temporality) {
                    let stream = stream_id(source, name, &p.attributes);
                    let Ok(previous) = previous(&deltas.counters, &stream, limits).map(|p| p.copied()) else {
                        out.reject(name, TOO_MANY_STREAMS);
                        continue;
                    };
                    out.updates.push(Update::Counter(stream, p.start, value));
                    match previous {
                        Some((start, last)) if start == p.start && value >= last => value - last,
                        _ => value,
                    }
                } else {
                    value
                };
                out.batch.counters.push(CounterPoint {
                    key,
                    minute: minute(p.time),
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
fn histogram_point<'a>(
    context: &Context<'_>,
    point: Point<'a>,
    cumulative: bool,
    series: &mut Series<'a>,
    out: &mut Converted,
    build: impl FnOnce() -> Result<Histogram, InvalidPoint>,
) {
    let Context {
        source,
        deltas,
        limits,
        now,
    } = *context;
    let name = point.metric;
    let Some(key) = series.of(name, point.attributes) else {
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
        let stream = stream_id(source, name, point.attributes);
        let Ok(previous) = previous(&deltas.histograms, &stream, limits) else {
            return out.reject(name, TOO_MANY_STREAMS);
        };
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
    out.metric_transactions.push(key.clone());
    if histogram.count > 0 {
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
    histogram.buckets.shift_indexes(shift);
    histogram.sum *= factor;
    histogram.min *= factor;
    histogram.max *= factor;
    histogram.zero_threshold *= factor;
    histogram.estimated = true;
    histogram
}
