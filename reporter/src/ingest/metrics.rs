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
//! - Kuroko's agent's own health (`kuroko.agent.*`) names no transaction:
//!   it is not stored here but kept by [`super::agents`] for the UI.
//! - A point that breaks a limit or does not add up is rejected with its
//!   reason; the rest of the request is still accepted (OTLP partial success).

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;

use super::otlp::{
    check, identity, is_http_server_duration, key, labels, minute, outcome, text, transaction, Attribute, Converted,
    Identity, Limits, Rule, IDENTITY,
};
use super::wire::{Attr, Data, Metric, Request};
use crate::cumulative::{keep_latest, relate, Explicit, Relation, StreamId, StreamIds, StreamState, StreamValue};
use crate::histogram::{Histogram, InvalidPoint};
use crate::store::{CounterPoint, HistogramPoint, SeriesKey};

/// The counter that notes runs recorded into bucket bounds that do not fit
/// their unit; label `kuroko.advice`, e.g. [`SECONDS_IN_MILLISECOND_BOUNDS`].
pub(crate) const ADVICE: &str = "kuroko.sdk.advice";

/// The advice for a duration in seconds recorded into an SDK's default
/// bounds, which are milliseconds (0, 5, 10 … 10,000): every run lands in
/// one bucket.
pub(crate) const SECONDS_IN_MILLISECOND_BOUNDS: &str = "seconds_in_millisecond_bounds";

/// Cumulative streams' last points, by stream: read by every conversion at
/// once, moved on once a batch is stored.
#[derive(Default)]
pub(crate) struct Deltas {
    streams: FxHashMap<StreamId, StreamState>,
    /// Their [footprint](StreamState::footprint), all together.
    bytes: usize,
}

impl Deltas {
    /// Moves the streams on, once their batch is stored; a state older than
    /// the one held (a replica's, read back late) is ignored.
    pub(crate) fn apply(&mut self, updates: impl IntoIterator<Item = (StreamId, StreamState)>) {
        let change = keep_latest(&mut self.streams, updates);
        let bytes = i64::try_from(self.bytes).unwrap_or(i64::MAX).saturating_add(change);
        self.bytes = usize::try_from(bytes).unwrap_or(0);
    }

    /// How many streams are remembered.
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    /// The bytes their last points take ([`StreamState::footprint`]).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Converts `request` (read in place, or decoded by prost: [`Request::of`]),
/// received at `now_unix_nano`.
pub(crate) fn convert(request: &Request<'_>, deltas: &Deltas, limits: &Limits, now_unix_nano: u64) -> Converted {
    let mut out = Converted::default();
    let added = Cell::new(Added::default());
    for resource_metrics in &request.resources {
        let resource = resource_metrics.attributes.as_slice();
        let sender = match identity(resource, limits) {
            Ok(sender) => sender,
            Err(reason) => {
                let points = resource_metrics
                    .scopes
                    .iter()
                    .flat_map(|scope| &scope.metrics)
                    .map(|metric| points_of(&metric.data) as u64)
                    .sum();
                out.reject_many("resource", Rule::Resource, reason, points);
                continue;
            }
        };
        let mut series = Series::new(&sender);
        // Cumulative streams are told apart by everything that identifies
        // their sender (service.instance.id of each worker process
        // included), not by service and host alone: hashed once here.
        let resource_streams = StreamIds::of(&[fingerprint(resource).as_bytes()]);
        for scope_metrics in &resource_metrics.scopes {
            let context = Context {
                streams: resource_streams.and(scope_metrics.name.as_bytes()),
                ours: scope_metrics.name == "kuroko-agent",
                deltas,
                added: &added,
                limits,
                now: now_unix_nano,
            };
            for metric in &scope_metrics.metrics {
                convert_metric(metric, &context, &mut series, &mut out);
            }
        }
    }
    out
}

/// How many points `data` holds.
fn points_of(data: &Data<'_>) -> usize {
    match data {
        Data::None | Data::Summary => 0,
        Data::Gauge(points) | Data::Sum(_, points) => points.len(),
        Data::Histogram(_, points) => points.len(),
        Data::Exponential(_, points) => points.len(),
    }
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
type Names<'a> = (bool, [Option<Cow<'a, str>>; IDENTITY.len()]);

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
        let mut found: [Option<&Attr<'a>>; IDENTITY.len()] = [None; IDENTITY.len()];
        for attribute in attributes {
            if let Some(at) = IDENTITY.iter().position(|name| *name == attribute.key) {
                found[at].get_or_insert(attribute);
            }
        }
        let names = found.map(|attribute| attribute.and_then(Attribute::text));
        let Series { sender, named } = self;
        let http_server = is_http_server_duration(metric);
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

/// What one request's cumulative points add to the streams held: counted
/// against the streams' limits as the request is converted, since none of
/// it is held before the request is stored.
#[derive(Clone, Copy, Default)]
struct Added {
    streams: usize,
    bytes: usize,
}

/// What every point of one request's scope shares.
struct Context<'a> {
    /// The sender's streams (its resource's attributes and its scope's name).
    streams: StreamIds,
    /// Whether the scope is Kuroko's agent, which counts outcomes itself.
    ours: bool,
    deltas: &'a Deltas,
    /// What the request's points so far add to `deltas`.
    added: &'a Cell<Added>,
    limits: &'a Limits,
    now: u64,
}

impl Context<'_> {
    /// The stream of a point of `metric` with `attributes`.
    fn stream(&self, metric: &str, attributes: &[Attr<'_>]) -> StreamId {
        self.streams
            .id(&[metric.as_bytes(), fingerprint(attributes).as_bytes()])
    }

    /// How a cumulative point of `stream` relates to its last one; `Err`
    /// when the stream is new and no more streams may be remembered.
    fn relate(&self, stream: StreamId, start: u64, time: u64) -> Result<Relation<'_>, String> {
        let last = self.deltas.streams.get(&stream);
        let held = self.deltas.streams.len().saturating_add(self.added.get().streams);
        if last.is_none() && held >= self.limits.max_cumulative_streams {
            return Err(TOO_MANY_STREAMS.to_owned());
        }
        Ok(relate(last, start, time))
    }

    /// Counts `state`, the new last point of `stream`, against the
    /// streams' limits; `Err` (the reason) when it would take them past
    /// `max_cumulative_stream_bytes`, and the point is to be refused.
    fn admit(&self, stream: StreamId, state: &StreamState) -> Result<(), String> {
        let before = self.deltas.streams.get(&stream).map_or(0, StreamState::footprint);
        let after = state.footprint();
        let mut added = self.added.get();
        let grows = after.saturating_sub(before);
        let limit = self.limits.max_cumulative_stream_bytes;
        if grows > 0 && self.deltas.bytes.saturating_add(added.bytes).saturating_add(grows) > limit {
            return Err(format!(
                "the cumulative streams' last points would take more than {limit} bytes \
                 (max_cumulative_stream_bytes)"
            ));
        }
        added.bytes = added.bytes.saturating_add(grows);
        added.streams += usize::from(before == 0);
        self.added.set(added);
        Ok(())
    }
}

/// The parts of a point that identify and place it.
struct Point<'a> {
    metric: &'a str,
    attributes: &'a [Attr<'a>],
    start: u64,
    time: u64,
}

/// Seconds per unit of a duration metric's `unit` (UCUM, as the semantic
/// conventions write it); `None` for a unit that is not a duration. Without
/// a unit, the convention's own: milliseconds for the older
/// `http.server.duration`, seconds otherwise.
fn seconds_per_unit(metric: &str, unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" => Some(1e-6),
        "ns" => Some(1e-9),
        "min" => Some(60.0),
        "" if metric == "http.server.duration" => Some(1e-3),
        "" => Some(1.0),
        _ => None,
    }
}

fn convert_metric<'a>(metric: &'a Metric<'a>, context: &Context<'_>, series: &mut Series<'a>, out: &mut Converted) {
    let name = metric.name;
    let Context { limits, now, .. } = *context;
    let is_duration = is_http_server_duration(name) || name == "kuroko.job.duration";
    let cumulative = |temporality: i32| temporality == AggregationTemporality::Cumulative as i32;
    let factor = match seconds_per_unit(name, metric.unit) {
        Some(factor) => factor,
        None if is_duration => {
            let reason = format!("unit {:?} is not a duration (s, ms, us, ns, min)", metric.unit);
            return out.reject_many(name, Rule::Unit, reason, points_of(&metric.data) as u64);
        }
        None => 1.0,
    };
    match &metric.data {
        Data::Exponential(temporality, points) if is_duration => {
            for p in points {
                let point = Point {
                    metric: name,
                    attributes: &p.attributes,
                    start: p.start,
                    time: p.time,
                };
                histogram_point(context, point, cumulative(*temporality), series, out, |stream| {
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
                    let whole = rescaled(histogram, factor)?;
                    Ok(match stream {
                        None => (whole, None),
                        Some(last) => {
                            let delta = match last {
                                Some(StreamValue::Histogram(last)) => whole.since(last),
                                _ => None,
                            };
                            (
                                delta.unwrap_or_else(|| whole.clone()),
                                Some(StreamValue::Histogram(whole)),
                            )
                        }
                    })
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
                // The point's min and max describe the whole stream: every
                // value of the delta lies between them, so they bound where
                // its runs are spread (exact when it is the whole).
                let stream_extremes = p.min.zip(p.max).map(|(a, b)| (a * factor, b * factor));
                let raw = Explicit {
                    bounds: p.bounds.iter().map(|b| b * factor).collect(),
                    counts: p.bucket_counts.to_vec(),
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0) * factor,
                    extremes: stream_extremes,
                };
                // Seconds recorded into an SDK's default bounds, which are
                // milliseconds: bounds up to hours for an HTTP request's
                // duration (a batch job's may legitimately reach them).
                let misfit = is_http_server_duration(name) && raw.bounds.last().is_some_and(|b| *b >= 1_000.0);
                let stored = histogram_point(context, point, cumulative(*temporality), series, out, |stream| {
                    let (delta, moved) = match stream {
                        Some(Some(StreamValue::Explicit(last))) => (raw.since(last), raw.moved_extremes(last)),
                        _ => (None, (None, None)),
                    };
                    let whole = delta.is_none();
                    let delta = delta.as_ref().unwrap_or(&raw);
                    let mut histogram = Histogram::from_explicit(
                        &delta.bounds,
                        &delta.counts,
                        delta.count,
                        Some(delta.sum),
                        stream_extremes,
                    )?;
                    if let (false, Some((min, max))) = (whole, stream_extremes) {
                        // A delta's extremes: exact where the stream's moved,
                        // else the edges of where its runs were spread.
                        let (low, high) = histogram.bucket_extremes();
                        histogram.min = moved.0.unwrap_or_else(|| low.clamp(min, max));
                        histogram.max = moved.1.unwrap_or_else(|| high.clamp(min, max));
                    }
                    Ok((histogram, stream.map(|_| StreamValue::Explicit(raw.clone()))))
                });
                if let (true, true, Some(stored)) = (misfit, stored, out.batch.histograms.last()) {
                    let advice = CounterPoint {
                        key: stored.key.clone(),
                        minute: stored.minute,
                        name: ADVICE.to_owned(),
                        labels: format!("kuroko.advice={SECONDS_IN_MILLISECOND_BOUNDS}"),
                        value: stored.histogram.count as f64,
                    };
                    out.batch.counters.push(advice);
                }
            }
        }
        Data::Sum(temporality, points)
            if name.starts_with("kuroko.transaction.") || name.starts_with("kuroko.segment.") =>
        {
            for p in points {
                let Some(key) = series.of(name, &p.attributes) else {
                    continue;
                };
                if let Err(refusal) = check(&p.attributes, p.time, now, limits) {
                    out.refuse(name, refusal);
                    continue;
                }
                let value = p.value.unwrap_or(f64::NAN);
                if !value.is_finite() || value < 0.0 {
                    out.reject(
                        name,
                        Rule::Value,
                        format!("value {value} is not a finite, non-negative number"),
                    );
                    continue;
                }
                let value = if cumulative(*temporality) {
                    let stream = context.stream(name, &p.attributes);
                    let last = match context.relate(stream, p.start, p.time) {
                        Ok(Relation::Stale) => continue,
                        Ok(Relation::Since(StreamValue::Counter(last))) if value >= *last => Some(*last),
                        Ok(_) => None,
                        Err(reason) => {
                            out.reject(name, Rule::Streams, reason);
                            continue;
                        }
                    };
                    let state = StreamState {
                        start: p.start,
                        time: p.time,
                        value: StreamValue::Counter(value),
                    };
                    if let Err(reason) = context.admit(stream, &state) {
                        out.reject(name, Rule::Streams, reason);
                        continue;
                    }
                    out.batch.streams.push((stream, state));
                    last.map_or(value, |last| value - last)
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

/// One histogram point: identified, checked, built by `build`, and added to
/// the batch. `build` is given, for a cumulative point, its stream's last
/// value when it follows one (`Some(None)` when its value is all new), and
/// `None` for a delta point; it returns the delta to store and, for a
/// cumulative point, the value to remember. The point goes in
/// with its outcomes when an SDK sent it; whether it was (then it is the
/// batch's last histogram).
fn histogram_point<'a>(
    context: &Context<'_>,
    point: Point<'a>,
    cumulative: bool,
    series: &mut Series<'a>,
    out: &mut Converted,
    build: impl FnOnce(Option<Option<&StreamValue>>) -> Result<(Histogram, Option<StreamValue>), InvalidPoint>,
) -> bool {
    let Context { limits, now, .. } = *context;
    let name = point.metric;
    let Some(key) = series.of(name, point.attributes) else {
        return false;
    };
    if let Err(refusal) = check(point.attributes, point.time, now, limits) {
        out.refuse(name, refusal);
        return false;
    }
    let (stream, last) = if cumulative {
        let stream = context.stream(name, point.attributes);
        match context.relate(stream, point.start, point.time) {
            // A duplicate, or overtaken by a later point: nothing new.
            Ok(Relation::Stale) => return false,
            Ok(Relation::Since(last)) => (Some(stream), Some(Some(last))),
            Ok(Relation::Whole) => (Some(stream), Some(None)),
            Err(reason) => {
                out.reject(name, Rule::Streams, reason);
                return false;
            }
        }
    } else {
        (None, None)
    };
    let (histogram, value) = match build(last) {
        Ok(built) => built,
        Err(reason) => {
            out.reject(name, Rule::Value, reason);
            return false;
        }
    };
    if let (Some(stream), Some(value)) = (stream, value) {
        let state = StreamState {
            start: point.start,
            time: point.time,
            value,
        };
        if let Err(reason) = context.admit(stream, &state) {
            out.reject(name, Rule::Streams, reason);
            return false;
        }
        out.batch.streams.push((stream, state));
    }
    if histogram.count == 0 {
        return false;
    }
    let minute = minute(point.time);
    if !context.ours {
        // An SDK's duration points carry the status and error.type of their
        // runs (one point per combination): its outcomes.
        out.batch.counters.push(CounterPoint {
            key: key.clone(),
            minute,
            name: super::otlp::OUTCOMES.to_owned(),
            labels: format!("kuroko.outcome={}", outcome(point.attributes, false)),
            value: histogram.count as f64,
        });
    }
    out.batch.histograms.push(HistogramPoint { key, minute, histogram });
    true
}

/// A histogram in another unit, scaled by `factor` (1 for seconds), and
/// checked again in seconds: a year of minutes is sixty years.
fn rescaled(mut histogram: Histogram, factor: f64) -> Result<Histogram, InvalidPoint> {
    if factor == 1.0 {
        return Ok(histogram);
    }
    // Shifting buckets by log2(factor) is exact only in whole buckets: an estimate.
    let shift = (factor.log2() * f64::powi(2.0, histogram.scale)).round() as i32;
    histogram.buckets.shift_indexes(shift);
    histogram.sum *= factor;
    histogram.min *= factor;
    histogram.max *= factor;
    histogram.zero_threshold *= factor;
    histogram.estimated = true;
    histogram.check_physical()?;
    Ok(histogram)
}
