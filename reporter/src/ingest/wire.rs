//! OTLP metrics read in place: an `ExportMetricsServiceRequest`'s protobuf
//! parsed into views that borrow its names and attributes from the body.
//!
//! Decoding into `opentelemetry-proto`'s owned types allocates a string for
//! every attribute key and value of every point, and frees them all again:
//! with gunzip, that was 43% of the reporter's CPU under agent load. This
//! reader allocates one vector per point and per repeated field instead,
//! and checks but does not keep what Kuroko does not use (exemplars,
//! descriptions, schema URLs, flags).
//! [`convert`](super::metrics::convert) works on these views, whichever way
//! they were made: [`read`] here, or [`Request::of`] over a request decoded by
//! prost (OTLP/JSON, and the fallback below).
//!
//! It uses prost's own wire primitives (keys, varints, scalars, packed
//! fields, skipping unknown fields), so it accepts and reads exactly what
//! prost does. What it does not handle it hands back ([`Unusual`]) rather
//! than guess: a singular message or oneof sent twice (which protobuf
//! merges), summaries, metric metadata, resource entity refs, and
//! array, key-value-list and string-table attribute values; and every error.
//! The caller then decodes the body with prost, which either reads it (and
//! the request is converted from [`Request::of`]) or gives the precise
//! reason it is malformed. The mutation test and the fuzz target hold the
//! two paths to the same result on every input ([`super::metrics_paths_agree`]).

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{exponential_histogram_data_point, metric, number_data_point};
use prost::encoding::{self, decode_key, decode_varint, skip_field, DecodeContext, WireType};

/// The reader met something it leaves to prost (see the module docs).
#[derive(Debug, PartialEq, Eq)]
pub struct Unusual;

impl From<prost::DecodeError> for Unusual {
    fn from(_: prost::DecodeError) -> Self {
        Unusual
    }
}

type Read<T> = Result<T, Unusual>;

/// A metrics request.
#[derive(Debug, Default, PartialEq)]
pub struct Request<'a> {
    /// Its resources' metrics.
    pub resources: Vec<ResourceMetrics<'a>>,
}

/// One resource's metrics.
#[derive(Debug, Default, PartialEq)]
pub struct ResourceMetrics<'a> {
    /// The resource's attributes (empty when it has no resource).
    pub attributes: Vec<Attr<'a>>,
    /// Its scopes' metrics.
    pub scopes: Vec<ScopeMetrics<'a>>,
}

/// One instrumentation scope's metrics.
#[derive(Debug, Default, PartialEq)]
pub struct ScopeMetrics<'a> {
    /// The scope's name (empty when it has no scope).
    pub name: &'a str,
    /// Its metrics.
    pub metrics: Vec<Metric<'a>>,
}

/// One metric.
#[derive(Debug, Default, PartialEq)]
pub struct Metric<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its unit.
    pub unit: &'a str,
    /// Its points.
    pub data: Data<'a>,
}

/// A metric's points, by type.
#[derive(Debug, Default, PartialEq)]
pub enum Data<'a> {
    /// No data.
    #[default]
    None,
    /// A gauge.
    Gauge(Vec<Number<'a>>),
    /// A sum, and its temporality.
    Sum(i32, Vec<Number<'a>>),
    /// An explicit-bucket histogram, and its temporality.
    Histogram(i32, Vec<Explicit<'a>>),
    /// An exponential histogram, and its temporality.
    Exponential(i32, Vec<Exponential<'a>>),
    /// A summary (its points are not read).
    Summary,
}

/// A gauge's or sum's point.
#[derive(Debug, Default, PartialEq)]
pub struct Number<'a> {
    /// Its attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Start of its interval, Unix nanoseconds.
    pub start: u64,
    /// Its time, Unix nanoseconds.
    pub time: u64,
    /// Its value, as a double (an integer value is converted).
    pub value: Option<f64>,
}

/// An explicit-bucket histogram's point.
#[derive(Debug, Default, PartialEq)]
pub struct Explicit<'a> {
    /// Its attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Start of its interval, Unix nanoseconds.
    pub start: u64,
    /// Its time, Unix nanoseconds.
    pub time: u64,
    /// Values counted.
    pub count: u64,
    /// Their sum.
    pub sum: Option<f64>,
    /// Count of each bucket.
    pub bucket_counts: Cow<'a, [u64]>,
    /// Upper bounds of the buckets but the last.
    pub bounds: Cow<'a, [f64]>,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

/// An exponential histogram's point.
#[derive(Debug, Default, PartialEq)]
pub struct Exponential<'a> {
    /// Its attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Start of its interval, Unix nanoseconds.
    pub start: u64,
    /// Its time, Unix nanoseconds.
    pub time: u64,
    /// Values counted.
    pub count: u64,
    /// Their sum.
    pub sum: Option<f64>,
    /// Resolution: buckets grow by 2^(2^-scale).
    pub scale: i32,
    /// Values in the zero bucket.
    pub zero_count: u64,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Buckets of positive values.
    pub positive: Option<Buckets<'a>>,
    /// Buckets of negative values.
    pub negative: Option<Buckets<'a>>,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

/// A run of exponential buckets.
#[derive(Debug, Default, PartialEq)]
pub struct Buckets<'a> {
    /// Index of the first bucket.
    pub offset: i32,
    /// Count of each bucket from there.
    pub counts: Cow<'a, [u64]>,
}

/// An attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr<'a> {
    /// Its key.
    pub key: &'a str,
    /// Its value.
    pub value: Value<'a>,
}

/// An attribute's value, where it has one Kuroko reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// No value, or bytes.
    None,
    /// A string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
}

/// Reads a metrics request's protobuf in place; [`Unusual`] when prost
/// should decode it instead.
pub fn read(body: &[u8]) -> Result<Request<'_>, Unusual> {
    let mut request = Request::default();
    fields(body, |tag, wire, buf| {
        match tag {
            1 => request.resources.push(resource_metrics(message(wire, buf)?)?),
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    Ok(request)
}

/// Calls `field` with each field's tag and wire type, and the buffer at its
/// value, which `field` must consume.
fn fields<'a>(mut buf: &'a [u8], mut field: impl FnMut(u32, WireType, &mut &'a [u8]) -> Read<()>) -> Read<()> {
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf)?;
        field(tag, wire, &mut buf)?;
    }
    Ok(())
}

/// An unknown field, skipped as prost skips it.
fn skip(tag: u32, wire: WireType, buf: &mut &[u8]) -> Read<()> {
    Ok(skip_field(wire, tag, buf, DecodeContext::default())?)
}

/// A length-delimited field's bytes.
fn message<'a>(wire: WireType, buf: &mut &'a [u8]) -> Read<&'a [u8]> {
    encoding::check_wire_type(WireType::LengthDelimited, wire)?;
    let len = usize::try_from(decode_varint(buf)?).map_err(|_| Unusual)?;
    if len > buf.len() {
        return Err(Unusual);
    }
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Ok(value)
}

/// A string field, checked as UTF-8 as prost checks it.
fn string<'a>(wire: WireType, buf: &mut &'a [u8]) -> Read<&'a str> {
    std::str::from_utf8(message(wire, buf)?).map_err(|_| Unusual)
}

/// Sets a singular message field, once: protobuf merges a second
/// occurrence, which is left to prost.
fn once<T>(slot: &mut Option<T>, value: T) -> Read<()> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(Unusual),
    }
}

/// A scalar, read by prost's own function for its type.
macro_rules! scalar {
    ($kind:ident, $wire:expr, $buf:expr, $slot:expr) => {
        encoding::$kind::merge($wire, $slot, $buf, DecodeContext::default())?
    };
}

/// A packed (or not) repeated scalar, read by prost's own function.
macro_rules! repeated {
    ($kind:ident, $wire:expr, $buf:expr, $slot:expr) => {
        encoding::$kind::merge_repeated($wire, $slot.to_mut(), $buf, DecodeContext::default())?
    };
}

fn resource_metrics(buf: &[u8]) -> Read<ResourceMetrics<'_>> {
    let mut out = ResourceMetrics::default();
    let mut resource = None;
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => once(&mut resource, message(wire, buf)?)?,
            2 => out.scopes.push(scope_metrics(message(wire, buf)?)?),
            3 => string(wire, buf).map(|_| ())?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    if let Some(resource) = resource {
        fields(resource, |tag, wire, buf| {
            match tag {
                1 => out.attributes.push(attribute(message(wire, buf)?)?),
                2 => scalar!(uint32, wire, buf, &mut 0),
                3 => return Err(Unusual),
                _ => skip(tag, wire, buf)?,
            }
            Ok(())
        })?;
    }
    Ok(out)
}

fn scope_metrics(buf: &[u8]) -> Read<ScopeMetrics<'_>> {
    let mut out = ScopeMetrics::default();
    let mut scope = None;
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => once(&mut scope, message(wire, buf)?)?,
            2 => out.metrics.push(metric(message(wire, buf)?)?),
            3 => string(wire, buf).map(|_| ())?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    if let Some(scope) = scope {
        fields(scope, |tag, wire, buf| {
            match tag {
                1 => out.name = string(wire, buf)?,
                2 => string(wire, buf).map(|_| ())?,
                3 => attribute(message(wire, buf)?).map(|_| ())?,
                4 => scalar!(uint32, wire, buf, &mut 0),
                _ => skip(tag, wire, buf)?,
            }
            Ok(())
        })?;
    }
    Ok(out)
}

fn metric(buf: &[u8]) -> Read<Metric<'_>> {
    let mut out = Metric::default();
    let mut data = None;
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => out.name = string(wire, buf)?,
            2 => string(wire, buf).map(|_| ())?,
            3 => out.unit = string(wire, buf)?,
            5 => once(&mut data, gauge(message(wire, buf)?)?)?,
            7 => once(&mut data, sum(message(wire, buf)?)?)?,
            9 => once(&mut data, histogram(message(wire, buf)?)?)?,
            10 => once(&mut data, exponential_histogram(message(wire, buf)?)?)?,
            11 | 12 => return Err(Unusual),
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    out.data = data.unwrap_or_default();
    Ok(out)
}

/// A gauge's, sum's or histogram's fields: its points (field 1, read by
/// `point`) and temporality (field 2, absent from gauges).
fn points<'a, P>(buf: &'a [u8], gauge: bool, point: fn(&'a [u8]) -> Read<P>) -> Read<(i32, Vec<P>)> {
    let (mut temporality, mut points) = (0, Vec::with_capacity(count(buf, 1)));
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => points.push(point(message(wire, buf)?)?),
            2 if !gauge => scalar!(int32, wire, buf, &mut temporality),
            3 if !gauge => scalar!(bool, wire, buf, &mut false),
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    Ok((temporality, points))
}

/// How many times field `tag` occurs in a message (0 when it is
/// malformed, which reading it then finds): sizes its vector once.
fn count(mut buf: &[u8], tag: u32) -> usize {
    let mut count = 0;
    while !buf.is_empty() {
        let Ok((field, wire)) = decode_key(&mut buf) else {
            return 0;
        };
        count += usize::from(field == tag);
        if skip(field, wire, &mut buf).is_err() {
            return 0;
        }
    }
    count
}

fn gauge(buf: &[u8]) -> Read<Data<'_>> {
    points(buf, true, number).map(|(_, points)| Data::Gauge(points))
}

fn sum(buf: &[u8]) -> Read<Data<'_>> {
    points(buf, false, number).map(|(temporality, points)| Data::Sum(temporality, points))
}

fn histogram(buf: &[u8]) -> Read<Data<'_>> {
    points(buf, false, explicit).map(|(temporality, points)| Data::Histogram(temporality, points))
}

fn exponential_histogram(buf: &[u8]) -> Read<Data<'_>> {
    points(buf, false, exponential).map(|(temporality, points)| Data::Exponential(temporality, points))
}

fn number(buf: &[u8]) -> Read<Number<'_>> {
    let mut out = Number::default();
    fields(buf, |tag, wire, buf| {
        match tag {
            7 => out.attributes.push(attribute(message(wire, buf)?)?),
            2 => scalar!(fixed64, wire, buf, &mut out.start),
            3 => scalar!(fixed64, wire, buf, &mut out.time),
            4 => {
                let mut value = 0.0;
                scalar!(double, wire, buf, &mut value);
                once(&mut out.value, value)?;
            }
            6 => {
                let mut value = 0;
                scalar!(sfixed64, wire, buf, &mut value);
                once(&mut out.value, value as f64)?;
            }
            8 => scalar!(uint32, wire, buf, &mut 0),
            5 => exemplar(message(wire, buf)?)?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    Ok(out)
}

/// An optional double, set (last one wins, as in prost).
fn optional_double(wire: WireType, buf: &mut &[u8], slot: &mut Option<f64>) -> Read<()> {
    let mut value = 0.0;
    scalar!(double, wire, buf, &mut value);
    *slot = Some(value);
    Ok(())
}

fn explicit(buf: &[u8]) -> Read<Explicit<'_>> {
    let mut out = Explicit::default();
    fields(buf, |tag, wire, buf| {
        match tag {
            9 => out.attributes.push(attribute(message(wire, buf)?)?),
            2 => scalar!(fixed64, wire, buf, &mut out.start),
            3 => scalar!(fixed64, wire, buf, &mut out.time),
            4 => scalar!(fixed64, wire, buf, &mut out.count),
            5 => optional_double(wire, buf, &mut out.sum)?,
            6 => repeated!(fixed64, wire, buf, out.bucket_counts),
            7 => repeated!(double, wire, buf, out.bounds),
            10 => scalar!(uint32, wire, buf, &mut 0),
            11 => optional_double(wire, buf, &mut out.min)?,
            12 => optional_double(wire, buf, &mut out.max)?,
            8 => exemplar(message(wire, buf)?)?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    Ok(out)
}

fn exponential(buf: &[u8]) -> Read<Exponential<'_>> {
    let mut out = Exponential::default();
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => out.attributes.push(attribute(message(wire, buf)?)?),
            2 => scalar!(fixed64, wire, buf, &mut out.start),
            3 => scalar!(fixed64, wire, buf, &mut out.time),
            4 => scalar!(fixed64, wire, buf, &mut out.count),
            5 => optional_double(wire, buf, &mut out.sum)?,
            6 => scalar!(sint32, wire, buf, &mut out.scale),
            7 => scalar!(fixed64, wire, buf, &mut out.zero_count),
            8 => once(&mut out.positive, buckets(message(wire, buf)?)?)?,
            9 => once(&mut out.negative, buckets(message(wire, buf)?)?)?,
            10 => scalar!(uint32, wire, buf, &mut 0),
            12 => optional_double(wire, buf, &mut out.min)?,
            13 => optional_double(wire, buf, &mut out.max)?,
            14 => scalar!(double, wire, buf, &mut out.zero_threshold),
            11 => exemplar(message(wire, buf)?)?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    Ok(out)
}

/// A repeated uint64 field: packed, sized once and decoded in a tight loop
/// (bucket counts are most of an agent's request); else as prost reads it.
fn varints(wire: WireType, buf: &mut &[u8], values: &mut Vec<u64>) -> Read<()> {
    if wire != WireType::LengthDelimited {
        encoding::uint64::merge_repeated(wire, values, buf, DecodeContext::default())?;
        return Ok(());
    }
    let mut packed = message(wire, buf)?;
    // Every varint ends in the one byte of it below 0x80.
    values.reserve(packed.iter().filter(|b| **b < 0x80).count());
    while let Some((&byte, rest)) = packed.split_first() {
        // Most counts are under 128: one byte.
        if byte < 0x80 {
            values.push(u64::from(byte));
            packed = rest;
        } else {
            values.push(decode_varint(&mut packed)?);
        }
    }
    Ok(())
}

/// An exemplar: checked as prost would decode it, and not kept.
fn exemplar(buf: &[u8]) -> Read<()> {
    fields(buf, |tag, wire, buf| {
        match tag {
            7 => attribute(message(wire, buf)?).map(|_| ())?,
            2 | 6 => scalar!(fixed64, wire, buf, &mut 0),
            3 => scalar!(double, wire, buf, &mut 0.0),
            4 | 5 => message(wire, buf).map(|_| ())?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })
}

fn buckets(buf: &[u8]) -> Read<Buckets<'_>> {
    let mut out = Buckets::default();
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => scalar!(sint32, wire, buf, &mut out.offset),
            2 => varints(wire, buf, out.counts.to_mut())?,
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    Ok(out)
}

fn attribute(buf: &[u8]) -> Read<Attr<'_>> {
    let mut out = Attr {
        key: "",
        value: Value::None,
    };
    let mut value = None;
    fields(buf, |tag, wire, buf| {
        match tag {
            1 => out.key = string(wire, buf)?,
            2 => once(&mut value, message(wire, buf)?)?,
            3 => scalar!(int32, wire, buf, &mut 0),
            _ => skip(tag, wire, buf)?,
        }
        Ok(())
    })?;
    if let Some(value) = value {
        let mut read = None;
        fields(value, |tag, wire, buf| {
            let value = match tag {
                1 => Value::Str(string(wire, buf)?),
                2 => {
                    let mut b = false;
                    scalar!(bool, wire, buf, &mut b);
                    Value::Bool(b)
                }
                3 => {
                    let mut i = 0;
                    scalar!(int64, wire, buf, &mut i);
                    Value::Int(i)
                }
                4 => {
                    let mut d = 0.0;
                    scalar!(double, wire, buf, &mut d);
                    Value::Double(d)
                }
                7 => {
                    message(wire, buf)?;
                    Value::None
                }
                5 | 6 | 8 => return Err(Unusual),
                _ => return skip(tag, wire, buf),
            };
            once(&mut read, value)
        })?;
        out.value = read.unwrap_or(Value::None);
    }
    Ok(out)
}

impl<'a> Request<'a> {
    /// The view of a request prost decoded.
    pub fn of(request: &'a ExportMetricsServiceRequest) -> Self {
        Request {
            resources: request
                .resource_metrics
                .iter()
                .map(|r| ResourceMetrics {
                    attributes: r
                        .resource
                        .as_ref()
                        .map(|r| attributes(&r.attributes))
                        .unwrap_or_default(),
                    scopes: r
                        .scope_metrics
                        .iter()
                        .map(|s| ScopeMetrics {
                            name: s.scope.as_ref().map_or("", |s| s.name.as_str()),
                            metrics: s.metrics.iter().map(metric_of).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

fn attributes(attributes: &[KeyValue]) -> Vec<Attr<'_>> {
    attributes
        .iter()
        .map(|kv| Attr {
            key: &kv.key,
            value: match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Value::Str(s),
                Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
                Some(any_value::Value::IntValue(i)) => Value::Int(*i),
                Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
                _ => Value::None,
            },
        })
        .collect()
}

fn number_of(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> Number<'_> {
    Number {
        attributes: attributes(&p.attributes),
        start: p.start_time_unix_nano,
        time: p.time_unix_nano,
        value: p.value.map(|v| match v {
            number_data_point::Value::AsDouble(d) => d,
            number_data_point::Value::AsInt(i) => i as f64,
        }),
    }
}

fn buckets_of(b: &exponential_histogram_data_point::Buckets) -> Buckets<'_> {
    Buckets {
        offset: b.offset,
        counts: Cow::Borrowed(&b.bucket_counts),
    }
}

fn metric_of(metric: &opentelemetry_proto::tonic::metrics::v1::Metric) -> Metric<'_> {
    let number = number_of;
    let buckets = buckets_of;
    let data = match &metric.data {
        None => Data::None,
        Some(metric::Data::Gauge(g)) => Data::Gauge(g.data_points.iter().map(number).collect()),
        Some(metric::Data::Sum(s)) => Data::Sum(s.aggregation_temporality, s.data_points.iter().map(number).collect()),
        Some(metric::Data::Histogram(h)) => Data::Histogram(
            h.aggregation_temporality,
            h.data_points
                .iter()
                .map(|p| Explicit {
                    attributes: attributes(&p.attributes),
                    start: p.start_time_unix_nano,
                    time: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    bucket_counts: Cow::Borrowed(&p.bucket_counts),
                    bounds: Cow::Borrowed(&p.explicit_bounds),
                    min: p.min,
                    max: p.max,
                })
                .collect(),
        ),
        Some(metric::Data::ExponentialHistogram(h)) => Data::Exponential(
            h.aggregation_temporality,
            h.data_points
                .iter()
                .map(|p| Exponential {
                    attributes: attributes(&p.attributes),
                    start: p.start_time_unix_nano,
                    time: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    scale: p.scale,
                    zero_count: p.zero_count,
                    zero_threshold: p.zero_threshold,
                    positive: p.positive.as_ref().map(buckets),
                    negative: p.negative.as_ref().map(buckets),
                    min: p.min,
                    max: p.max,
                })
                .collect(),
        ),
        Some(metric::Data::Summary(_)) => Data::Summary,
    };
    Metric {
        name: &metric.name,
        unit: &metric.unit,
        data,
    }
}
