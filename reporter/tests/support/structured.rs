//! A structure-aware generator of OTLP metrics requests, for the fuzz target
//! `reporter/fuzz/fuzz_targets/structured_streams.rs` and the CI test
//! `reporter/tests/structured_input.rs`.
//!
//! Raw bytes rarely get past protobuf decoding to the rules behind it; this
//! turns them ([`arbitrary`]) into requests that decode: resources with
//! attributes of any length (a few input bytes can name a 500 KB
//! `service.name`), the metrics Kuroko reads (both HTTP conventions, the
//! agent's own) and others, in every unit, explicit and exponential
//! histograms, sums and gauges, cumulative and delta. Points pick their
//! attributes from a small pool per resource, so requests revisit the same
//! cumulative streams, and their times lie around `now` (or anywhere).
//! A sequence of requests stays within [`MAX_BYTES`] in all.

use arbitrary::{Arbitrary, Unstructured};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// The most bytes a generated sequence of requests holds, in all.
pub const MAX_BYTES: usize = 1 << 20;

/// Up to seven elements, their number read first: lists of several
/// elements at every level (arbitrary's own lists, one coin toss per
/// element, are mostly empty or of one).
fn few<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Vec<T>> {
    let n = u.int_in_range(0..=7u8)?;
    (0..n).map(|_| T::arbitrary(u)).collect()
}

/// Up to 40 elements, as [`few`]: a histogram's buckets.
fn buckets<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Vec<T>> {
    let n = u.int_in_range(0..=40u8)?;
    (0..n).map(|_| T::arbitrary(u)).collect()
}

/// A string of up to 24 bytes of input (arbitrary's own may take all that
/// is left, and the rest of the plan is then empty).
fn short(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let n = u.int_in_range(0..=24usize)?;
    Ok(String::from_utf8_lossy(u.bytes(n.min(u.len()))?).into_owned())
}

const KEYS: [&str; 14] = [
    "service.name",
    "host.name",
    "deployment.environment.name",
    "deployment.environment",
    "http.route",
    "http.request.method",
    "http.method",
    "http.response.status_code",
    "http.status_code",
    "error.type",
    "kuroko.transaction",
    "kuroko.feature",
    "kuroko.segment",
    "a",
];
const VALUES: [&str; 10] = [
    "svc",
    "GET",
    "POST",
    "/cards/{id}",
    "500",
    "200",
    "host-1",
    "prod",
    "",
    "Timeout",
];
const NAMES: [&str; 10] = [
    "http.server.request.duration",
    "http.server.duration",
    "kuroko.transaction.duration",
    "kuroko.transaction.outcomes",
    "kuroko.segment.duration",
    "kuroko.job.duration",
    "kuroko.agent.points.dropped",
    "http.client.request.duration",
    "kuroko.transaction.apdex",
    "process.cpu.time",
];
const UNITS: [&str; 9] = ["s", "ms", "us", "ns", "min", "", "By", "{request}", "h"];

/// Input a fuzzer's bytes become: requests, sent one after the other.
#[derive(Arbitrary, Debug)]
pub struct Plan {
    #[arbitrary(with = few)]
    requests: Vec<Request>,
}

#[derive(Arbitrary, Debug)]
struct Request {
    #[arbitrary(with = few)]
    resources: Vec<Resource_>,
}

#[derive(Arbitrary, Debug)]
struct Resource_ {
    #[arbitrary(with = few)]
    attributes: Vec<(Text, Value)>,
    /// Point attribute sets the points choose from: streams to revisit.
    #[arbitrary(with = few)]
    streams: Vec<Stream>,
    #[arbitrary(with = few)]
    metrics: Vec<Metric_>,
}

/// A point's attributes: what names a transaction, mostly, and others.
#[derive(Arbitrary, Debug)]
struct Stream {
    /// `http.route` or `kuroko.transaction`, with the method in the
    /// convention's generation.
    #[arbitrary(with = mostly)]
    name: Option<(bool, Text)>,
    #[arbitrary(with = mostly)]
    method: Option<(bool, Text)>,
    status: Option<(bool, i64)>,
    #[arbitrary(with = few)]
    others: Vec<(Text, Value)>,
}

/// A string: one Kuroko reads, a long run of one letter, or any.
#[derive(Debug)]
enum Text {
    Known(u8),
    Long { letter: u8, len: u32 },
    Any(String),
}

/// A metric's name: one Kuroko reads (or ignores on purpose), or any.
#[derive(Debug)]
enum Name {
    Known(u8),
    Any(Text),
}

#[derive(Debug)]
enum Value {
    Text(Text),
    Int(i64),
    Double(f64),
    Bool(bool),
    Empty,
}

#[derive(Arbitrary, Debug)]
struct Metric_ {
    name: Name,
    #[arbitrary(with = unit)]
    unit: &'static str,
    data: Data,
}

#[derive(Arbitrary, Debug)]
enum Data {
    Histogram {
        cumulative: bool,
        #[arbitrary(with = few)]
        points: Vec<Explicit>,
    },
    Exponential {
        cumulative: bool,
        #[arbitrary(with = few)]
        points: Vec<Exponential>,
    },
    Sum {
        cumulative: bool,
        monotonic: bool,
        #[arbitrary(with = few)]
        points: Vec<Number>,
    },
    Gauge {
        #[arbitrary(with = few)]
        points: Vec<Number>,
    },
}

/// A time: seconds from `now` (within about nine hours), or any.
#[derive(Debug, Clone, Copy)]
enum Time {
    Near(i16),
    Any(u64),
}

/// Counts: small ones, as traffic has, or any.
#[derive(Debug)]
enum Counts {
    Small(Vec<u16>),
    Any(Vec<u64>),
}

impl Counts {
    fn to_vec(&self) -> Vec<u64> {
        match self {
            Counts::Small(counts) => counts.iter().map(|c| u64::from(*c)).collect(),
            Counts::Any(counts) => counts.clone(),
        }
    }
}

/// Explicit bounds: an SDK's defaults (seconds, or milliseconds when
/// scaled), or any.
#[derive(Debug)]
enum Bounds {
    Sdk { milliseconds: bool },
    Any(Vec<f64>),
}

// Each choice takes the usual case (what services send) most of the time,
// so that input gets past the first checks to the rules behind them; an
// input that runs out takes the usual case too.

/// One in `n`, the unusual case.
fn unusual(u: &mut Unstructured<'_>, n: u8) -> arbitrary::Result<bool> {
    Ok(u.int_in_range(0..=n - 1)? == n - 1)
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=15u8)? {
            15 => Text::Long {
                letter: u.arbitrary()?,
                len: u.arbitrary()?,
            },
            14 => Text::Any(short(u)?),
            _ => Text::Known(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match unusual(u, 6)? {
            true => Name::Any(u.arbitrary()?),
            false => Name::Known(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for Value {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=11u8)? {
            11 => Value::Int(u.arbitrary()?),
            10 => Value::Double(u.arbitrary()?),
            9 => Value::Bool(u.arbitrary()?),
            8 => Value::Empty,
            _ => Value::Text(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for Time {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=9u8)? {
            9 => Time::Any(u.arbitrary()?),
            8 => Time::Near(u.arbitrary()?),
            _ => Time::Near(u.int_in_range(-3600..=30)?),
        })
    }
}

impl<'a> Arbitrary<'a> for Counts {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match unusual(u, 6)? {
            true => Counts::Any(buckets(u)?),
            false => Counts::Small(buckets(u)?),
        })
    }
}

impl<'a> Arbitrary<'a> for Bounds {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match unusual(u, 5)? {
            true => Bounds::Any(buckets(u)?),
            false => Bounds::Sdk {
                milliseconds: u.arbitrary()?,
            },
        })
    }
}

/// A unit: seconds, milliseconds or none mostly; any of [`UNITS`] else.
fn unit(u: &mut Unstructured<'_>) -> arbitrary::Result<&'static str> {
    Ok(match unusual(u, 6)? {
        true => *u.choose(&UNITS)?,
        false => *u.choose(&UNITS[..2])?,
    })
}

/// Mostly there.
fn mostly<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Option<T>> {
    Ok(match unusual(u, 5)? {
        true => None,
        false => Some(u.arbitrary()?),
    })
}

/// Points mostly as SDKs send them: counts that add up.
fn usual(u: &mut Unstructured<'_>) -> arbitrary::Result<bool> {
    Ok(!unusual(u, 5)?)
}

/// The OpenTelemetry SDKs' default bounds for durations in seconds.
const SDK_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Arbitrary, Debug)]
struct Explicit {
    stream: u8,
    start: Time,
    time: Time,
    /// Counts that add up, bounds in order, min, max and sum inside the
    /// buckets: what SDKs send.
    #[arbitrary(with = usual)]
    consistent: bool,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bounds: Bounds,
    counts: Counts,
}

#[derive(Arbitrary, Debug)]
struct Exponential {
    stream: u8,
    start: Time,
    time: Time,
    #[arbitrary(with = usual)]
    consistent: bool,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    scale: i8,
    zero_count: u64,
    zero_threshold: f64,
    offset: i32,
    counts: Counts,
}

#[derive(Arbitrary, Debug)]
struct Number {
    stream: u8,
    start: Time,
    time: Time,
    value: f64,
    int: Option<i64>,
}

/// Turns a plan into protobuf request bodies, at `now_unix_nano`.
pub fn requests(plan: &Plan, now_unix_nano: u64) -> Vec<Vec<u8>> {
    let mut build = Build {
        budget: MAX_BYTES,
        longest: MAX_BYTES / 2,
        now: now_unix_nano,
    };
    plan.requests
        .iter()
        .map_while(|request| {
            let body = build.request(request).encode_to_vec();
            build.budget = build.budget.checked_sub(body.len())?;
            Some(body)
        })
        .collect()
}

struct Build {
    /// Bytes long strings may still take, in all.
    budget: usize,
    /// The longest a string may be here (a stream's attributes are copied
    /// into each of its points: they are kept shorter).
    longest: usize,
    now: u64,
}

impl Build {
    fn request(&mut self, request: &Request) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: request.resources.iter().map(|r| self.resource(r)).collect(),
        }
    }

    fn resource(&mut self, resource: &Resource_) -> ResourceMetrics {
        let attributes = self.attributes(&resource.attributes);
        self.longest = 4 << 10;
        let streams: Vec<Vec<KeyValue>> = resource.streams.iter().map(|s| self.stream(s)).collect();
        self.longest = MAX_BYTES / 2;
        let metrics = resource.metrics.iter().map(|m| self.metric(m, &streams)).collect();
        ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            schema_url: String::new(),
        }
    }

    fn attributes(&mut self, pairs: &[(Text, Value)]) -> Vec<KeyValue> {
        pairs
            .iter()
            .map(|(key, value)| KeyValue {
                key: self.text(key, &KEYS),
                value: Some(AnyValue {
                    value: self.value(value),
                }),
                ..Default::default()
            })
            .collect()
    }

    fn stream(&mut self, stream: &Stream) -> Vec<KeyValue> {
        let mut attributes = self.attributes(&stream.others);
        let text = |key: &str, value: String| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            }),
            ..Default::default()
        };
        if let Some((route, name)) = &stream.name {
            let key = if *route { "http.route" } else { "kuroko.transaction" };
            attributes.push(text(key, self.text(name, &VALUES[2..4])));
        }
        if let Some((new, method)) = &stream.method {
            let key = if *new { "http.request.method" } else { "http.method" };
            attributes.push(text(key, self.text(method, &VALUES[1..3])));
        }
        if let Some((new, status)) = stream.status {
            attributes.push(KeyValue {
                key: (if new {
                    "http.response.status_code"
                } else {
                    "http.status_code"
                })
                .to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(status)),
                }),
                ..Default::default()
            });
        }
        attributes
    }

    fn text(&mut self, text: &Text, known: &[&str]) -> String {
        match text {
            Text::Known(i) => known[usize::from(*i) % known.len()].to_owned(),
            Text::Long { letter, len } => {
                let len = (*len as usize % (self.longest + 1)).min(self.budget);
                self.budget -= len;
                char::from(b'a' + letter % 26).to_string().repeat(len)
            }
            Text::Any(text) => text.clone(),
        }
    }

    fn value(&mut self, value: &Value) -> Option<any_value::Value> {
        Some(match value {
            Value::Text(text) => any_value::Value::StringValue(self.text(text, &VALUES)),
            Value::Int(v) => any_value::Value::IntValue(*v),
            Value::Double(v) => any_value::Value::DoubleValue(*v),
            Value::Bool(v) => any_value::Value::BoolValue(*v),
            Value::Empty => return None,
        })
    }

    fn time(&self, time: Time) -> u64 {
        match time {
            Time::Near(seconds) => self.now.saturating_add_signed(i64::from(seconds) * 1_000_000_000),
            Time::Any(nanos) => nanos,
        }
    }

    fn metric(&mut self, metric: &Metric_, streams: &[Vec<KeyValue>]) -> Metric {
        let pick = |stream: u8| match streams.len() {
            0 => Vec::new(),
            n => streams[usize::from(stream) % n].clone(),
        };
        let temporality = |cumulative: bool| match cumulative {
            true => AggregationTemporality::Cumulative as i32,
            false => AggregationTemporality::Delta as i32,
        };
        let data = match &metric.data {
            Data::Histogram { cumulative, points } => metric::Data::Histogram(Histogram {
                data_points: points.iter().map(|p| self.explicit(p, pick(p.stream))).collect(),
                aggregation_temporality: temporality(*cumulative),
            }),
            Data::Exponential { cumulative, points } => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points.iter().map(|p| self.exponential(p, pick(p.stream))).collect(),
                aggregation_temporality: temporality(*cumulative),
            }),
            Data::Sum {
                cumulative,
                monotonic,
                points,
            } => metric::Data::Sum(Sum {
                data_points: points.iter().map(|p| self.number(p, pick(p.stream))).collect(),
                aggregation_temporality: temporality(*cumulative),
                is_monotonic: *monotonic,
            }),
            Data::Gauge { points } => metric::Data::Gauge(Gauge {
                data_points: points.iter().map(|p| self.number(p, pick(p.stream))).collect(),
            }),
        };
        Metric {
            name: match &metric.name {
                Name::Known(i) => NAMES[usize::from(*i) % NAMES.len()].to_owned(),
                Name::Any(text) => self.text(text, &NAMES),
            },
            unit: metric.unit.to_owned(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn explicit(&self, p: &Explicit, attributes: Vec<KeyValue>) -> HistogramDataPoint {
        let mut bounds = match &p.bounds {
            Bounds::Sdk { milliseconds: false } => SDK_BOUNDS.to_vec(),
            Bounds::Sdk { milliseconds: true } => SDK_BOUNDS.iter().map(|b| b * 1e3).collect(),
            Bounds::Any(bounds) => bounds.clone(),
        };
        let mut counts = p.counts.to_vec();
        let (mut count, mut sum, mut min, mut max) = (p.count, p.sum, p.min, p.max);
        if p.consistent {
            bounds.retain(|b| b.is_finite());
            bounds.sort_by(f64::total_cmp);
            bounds.dedup();
            counts.resize(bounds.len() + 1, 0);
            count = counts.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
            // Runs at the middle of their buckets (the open ends at the
            // bound next to them), min and max at the extremes of those.
            let at = |i: usize| match (i.checked_sub(1).and_then(|i| bounds.get(i)), bounds.get(i)) {
                (Some(low), Some(high)) => (low + high) / 2.0,
                (Some(low), None) => *low,
                (None, Some(high)) => high.min(0.0).max(high / 2.0),
                (None, None) => 0.0,
            };
            let filled: Vec<usize> = (0..counts.len()).filter(|i| counts[*i] > 0).collect();
            min = filled.first().map(|i| at(*i));
            max = filled.last().map(|i| at(*i));
            sum = Some(filled.iter().map(|i| at(*i) * counts[*i] as f64).sum());
        }
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: self.time(p.start),
            time_unix_nano: self.time(p.time),
            count,
            sum,
            bucket_counts: counts,
            explicit_bounds: bounds,
            min,
            max,
            ..Default::default()
        }
    }

    fn exponential(&self, p: &Exponential, attributes: Vec<KeyValue>) -> ExponentialHistogramDataPoint {
        let counts = p.counts.to_vec();
        let (mut count, mut sum, mut min, mut max) = (p.count, p.sum, p.min, p.max);
        let (mut scale, mut offset, mut zero_count, mut zero_threshold) =
            (i32::from(p.scale), p.offset, p.zero_count, p.zero_threshold);
        if p.consistent {
            // What an SDK sends: a scale it uses, buckets between a
            // microsecond and an hour, min, max and sum from them.
            scale = scale.clamp(-2, 8);
            let step = f64::exp2(f64::exp2(-f64::from(scale)));
            let (low, high) = (1e-6f64.log(step) as i32, 3.6e3f64.log(step) as i32);
            offset = offset.clamp(low, high);
            zero_count %= 4;
            zero_threshold = 0.0;
            count = counts.iter().fold(zero_count, |sum, c| sum.saturating_add(*c));
            let at = |i: usize| step.powf(f64::from(offset) + i as f64 + 0.5);
            let filled: Vec<usize> = (0..counts.len()).filter(|i| counts[*i] > 0).collect();
            min = match zero_count {
                0 => filled.first().map(|i| at(*i)),
                _ => Some(0.0),
            };
            max = filled.last().map(|i| at(*i)).or(min);
            sum = Some(filled.iter().map(|i| at(*i) * counts[*i] as f64).sum());
        }
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: self.time(p.start),
            time_unix_nano: self.time(p.time),
            count,
            sum,
            scale,
            zero_count,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts,
            }),
            min,
            max,
            zero_threshold,
            ..Default::default()
        }
    }

    fn number(&self, p: &Number, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: self.time(p.start),
            time_unix_nano: self.time(p.time),
            value: Some(match p.int {
                Some(v) => number_data_point::Value::AsInt(v),
                None => number_data_point::Value::AsDouble(p.value),
            }),
            ..Default::default()
        }
    }
}
