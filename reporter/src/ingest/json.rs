//! OTLP/JSON bodies, read strictly: a value of the wrong type is an error
//! that names its place (`resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].sum`),
//! never a metric silently dropped.
//!
//! `opentelemetry-proto`'s serde types read a metric's data (`gauge`, `sum`,
//! `histogram`, ...) through `#[serde(flatten)]` into an `Option`, and serde
//! turns any error inside a flattened `Option` into `None`: one mistyped
//! value and the whole metric vanished, answered 200 with nothing stored.
//! Metrics are therefore read here through types of our own, the data
//! fields named, then moved into `opentelemetry-proto`'s types; logs and
//! traces, which have no such field, are read by `opentelemetry-proto`'s
//! types directly. Both go through `serde_path_to_error` for the place.
//!
//! What the types here accept is the OTLP/JSON encoding (the proto3 JSON
//! mapping with OTLP's deviations, opentelemetry-proto's
//! `docs/specification.md`, "JSON Protobuf Encoding"): 64-bit integers as
//! decimal strings or numbers; doubles as numbers or strings (`"1.5"`,
//! `"NaN"`, `"Infinity"`, `"-Infinity"`); `null` as the field's default;
//! unknown fields ignored; enums **only** as integers (OTLP forbids their
//! names, so `"AGGREGATION_TEMPORALITY_DELTA"` is refused with that reason).

use std::fmt;
use std::marker::PhantomData;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as proto;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

use super::Signal;

/// An OTLP/JSON body that could not be read: which signal, where, and why.
#[derive(Debug, thiserror::Error)]
#[error("the body is not OTLP/JSON {signal}: {}{source}", at(.path))]
pub(crate) struct JsonError {
    /// The signal the body was sent as.
    pub signal: Signal,
    /// Where the error is, as serde's path (`.` for the body as a whole).
    pub path: String,
    /// What is wrong there.
    pub source: serde_json::Error,
}

fn at(path: &str) -> String {
    if path == "." || path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Reads `body` as the OTLP/JSON of `signal`, with the place of any error.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8], signal: Signal) -> Result<T, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| JsonError {
        signal,
        path: error.path().to_string(),
        source: error.into_inner(),
    })?;
    // Trailing characters after the request are an error, as in `serde_json::from_slice`.
    deserializer.end().map_err(|source| JsonError {
        signal,
        path: String::new(),
        source,
    })?;
    Ok(value)
}

/// Reads `body` as an OTLP/JSON metrics request (see the module docs).
pub(crate) fn metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    decode::<MetricsRequest>(body, Signal::Metrics).map(Into::into)
}

/// A number as OTLP/JSON writes it: a JSON number, or a string holding one;
/// `null` is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Num<T>(T);

/// The number types of OTLP's fields.
trait Numeric: Sized + Copy + Default {
    /// What the error says was expected.
    const EXPECTED: &'static str;
    fn from_integer(value: i128) -> Option<Self>;
    fn from_float(value: f64) -> Option<Self>;
    fn from_text(text: &str) -> Option<Self>;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const EXPECTED: &'static str = concat!("an integer (", stringify!($t), "), as a number or a decimal string");
            fn from_integer(value: i128) -> Option<Self> {
                <$t>::try_from(value).ok()
            }
            // ProtoJSON accepts `1.0` and `1e3` for an integer.
            fn from_float(value: f64) -> Option<Self> {
                (value.is_finite() && value.fract() == 0.0 && value.abs() < 1e30)
                    .then(|| Self::from_integer(value as i128))
                    .flatten()
            }
            fn from_text(text: &str) -> Option<Self> {
                text.parse::<$t>()
                    .ok()
                    .or_else(|| text.parse::<f64>().ok().and_then(Self::from_float))
            }
        }
    )*};
}
integer!(u64, i64, u32, i32);

impl Numeric for f64 {
    const EXPECTED: &'static str = "a number, or a string holding one (\"1.5\", \"NaN\", \"Infinity\", \"-Infinity\")";
    fn from_integer(value: i128) -> Option<Self> {
        Some(value as f64)
    }
    fn from_float(value: f64) -> Option<Self> {
        Some(value)
    }
    fn from_text(text: &str) -> Option<Self> {
        match text {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            // Rust also reads "inf" and "nan": only the spellings above are OTLP's.
            _ => text.parse::<f64>().ok().filter(|v| v.is_finite()),
        }
    }
}

impl<'de, T: Numeric> Deserialize<'de> for Num<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor<T>(PhantomData<T>);
        impl<T: Numeric> Visitor<'_> for NumVisitor<T> {
            type Value = Num<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num<T>, E> {
                T::from_integer(v.into())
                    .map(Num)
                    .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num<T>, E> {
                T::from_integer(v.into())
                    .map(Num)
                    .ok_or_else(|| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num<T>, E> {
                T::from_float(v)
                    .map(Num)
                    .ok_or_else(|| E::invalid_value(Unexpected::Float(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num<T>, E> {
                T::from_text(v)
                    .map(Num)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Num<T>, E> {
                Ok(Num(T::default()))
            }
        }
        deserializer.deserialize_any(NumVisitor(PhantomData))
    }
}

/// An enum field: its integer value only (OTLP/JSON forbids enum names).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Enum(i32);

impl<'de> Deserialize<'de> for Enum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnumVisitor;
        impl Visitor<'_> for EnumVisitor {
            type Value = Enum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum's integer value (OTLP/JSON writes enums as integers, never as names)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Enum, E> {
                i32::try_from(v)
                    .map(Enum)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Enum, E> {
                i32::try_from(v)
                    .map(Enum)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Enum, E> {
                Err(E::invalid_value(Unexpected::Str(v), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Enum, E> {
                Ok(Enum(0))
            }
        }
        deserializer.deserialize_any(EnumVisitor)
    }
}

fn numbers<T: Numeric>(values: Vec<Num<T>>) -> Vec<T> {
    values.into_iter().map(|Num(v)| v).collect()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MetricsRequest {
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceMetrics {
    resource: Option<Resource>,
    scope_metrics: Vec<ScopeMetrics>,
    schema_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeMetrics {
    scope: Option<InstrumentationScope>,
    metrics: Vec<Metric>,
    schema_url: Option<String>,
}

/// A metric as sent: its data fields named, not flattened.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SentMetric {
    name: Option<String>,
    description: Option<String>,
    unit: Option<String>,
    metadata: Vec<KeyValue>,
    gauge: Option<Gauge>,
    sum: Option<Sum>,
    histogram: Option<Histogram>,
    exponential_histogram: Option<ExponentialHistogram>,
    summary: Option<Summary>,
}

/// A metric with at most one kind of data.
#[derive(Deserialize, Default)]
#[serde(try_from = "SentMetric")]
struct Metric {
    name: String,
    description: String,
    unit: String,
    metadata: Vec<KeyValue>,
    data: Option<proto::metric::Data>,
}

impl TryFrom<SentMetric> for Metric {
    type Error = String;

    fn try_from(sent: SentMetric) -> Result<Self, String> {
        use proto::metric::Data;
        let kinds = [
            sent.gauge.map(|g| Data::Gauge(g.into())),
            sent.sum.map(|s| Data::Sum(s.into())),
            sent.histogram.map(|h| Data::Histogram(h.into())),
            sent.exponential_histogram.map(|h| Data::ExponentialHistogram(h.into())),
            sent.summary.map(|s| Data::Summary(s.into())),
        ];
        let mut data = kinds.into_iter().flatten();
        let first = data.next();
        if data.next().is_some() {
            return Err(
                "a metric has one kind of data: one of gauge, sum, histogram, exponentialHistogram or summary"
                    .to_owned(),
            );
        }
        Ok(Metric {
            name: sent.name.unwrap_or_default(),
            description: sent.description.unwrap_or_default(),
            unit: sent.unit.unwrap_or_default(),
            metadata: sent.metadata,
            data: first,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Gauge {
    data_points: Vec<NumberDataPoint>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Sum {
    data_points: Vec<NumberDataPoint>,
    aggregation_temporality: Enum,
    is_monotonic: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Histogram {
    data_points: Vec<HistogramDataPoint>,
    aggregation_temporality: Enum,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExponentialHistogram {
    data_points: Vec<ExponentialHistogramDataPoint>,
    aggregation_temporality: Enum,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Summary {
    data_points: Vec<SummaryDataPoint>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NumberDataPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: Num<u64>,
    time_unix_nano: Num<u64>,
    as_double: Option<Num<f64>>,
    as_int: Option<Num<i64>>,
    exemplars: Vec<proto::Exemplar>,
    flags: Num<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HistogramDataPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: Num<u64>,
    time_unix_nano: Num<u64>,
    count: Num<u64>,
    sum: Option<Num<f64>>,
    bucket_counts: Vec<Num<u64>>,
    explicit_bounds: Vec<Num<f64>>,
    exemplars: Vec<proto::Exemplar>,
    flags: Num<u32>,
    min: Option<Num<f64>>,
    max: Option<Num<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExponentialHistogramDataPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: Num<u64>,
    time_unix_nano: Num<u64>,
    count: Num<u64>,
    sum: Option<Num<f64>>,
    scale: Num<i32>,
    zero_count: Num<u64>,
    positive: Option<Buckets>,
    negative: Option<Buckets>,
    flags: Num<u32>,
    exemplars: Vec<proto::Exemplar>,
    min: Option<Num<f64>>,
    max: Option<Num<f64>>,
    zero_threshold: Num<f64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Buckets {
    offset: Num<i32>,
    bucket_counts: Vec<Num<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SummaryDataPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: Num<u64>,
    time_unix_nano: Num<u64>,
    count: Num<u64>,
    sum: Num<f64>,
    quantile_values: Vec<ValueAtQuantile>,
    flags: Num<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ValueAtQuantile {
    quantile: Num<f64>,
    value: Num<f64>,
}

impl From<MetricsRequest> for ExportMetricsServiceRequest {
    fn from(request: MetricsRequest) -> Self {
        ExportMetricsServiceRequest {
            resource_metrics: request
                .resource_metrics
                .into_iter()
                .map(|r| proto::ResourceMetrics {
                    resource: r.resource,
                    scope_metrics: r
                        .scope_metrics
                        .into_iter()
                        .map(|s| proto::ScopeMetrics {
                            scope: s.scope,
                            metrics: s.metrics.into_iter().map(Into::into).collect(),
                            schema_url: s.schema_url.unwrap_or_default(),
                        })
                        .collect(),
                    schema_url: r.schema_url.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

impl From<Metric> for proto::Metric {
    fn from(m: Metric) -> Self {
        proto::Metric {
            name: m.name,
            description: m.description,
            unit: m.unit,
            metadata: m.metadata,
            data: m.data,
        }
    }
}

impl From<Gauge> for proto::Gauge {
    fn from(g: Gauge) -> Self {
        proto::Gauge {
            data_points: g.data_points.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Sum> for proto::Sum {
    fn from(s: Sum) -> Self {
        proto::Sum {
            data_points: s.data_points.into_iter().map(Into::into).collect(),
            aggregation_temporality: s.aggregation_temporality.0,
            is_monotonic: s.is_monotonic.unwrap_or_default(),
        }
    }
}

impl From<Histogram> for proto::Histogram {
    fn from(h: Histogram) -> Self {
        proto::Histogram {
            data_points: h.data_points.into_iter().map(Into::into).collect(),
            aggregation_temporality: h.aggregation_temporality.0,
        }
    }
}

impl From<ExponentialHistogram> for proto::ExponentialHistogram {
    fn from(h: ExponentialHistogram) -> Self {
        proto::ExponentialHistogram {
            data_points: h.data_points.into_iter().map(Into::into).collect(),
            aggregation_temporality: h.aggregation_temporality.0,
        }
    }
}

impl From<Summary> for proto::Summary {
    fn from(s: Summary) -> Self {
        proto::Summary {
            data_points: s.data_points.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<NumberDataPoint> for proto::NumberDataPoint {
    fn from(p: NumberDataPoint) -> Self {
        use proto::number_data_point::Value;
        proto::NumberDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            exemplars: p.exemplars,
            flags: p.flags.0,
            // Both given: the last field of the oneof wins, as in protobuf.
            value: p
                .as_int
                .map(|Num(i)| Value::AsInt(i))
                .or(p.as_double.map(|Num(d)| Value::AsDouble(d))),
        }
    }
}

impl From<HistogramDataPoint> for proto::HistogramDataPoint {
    fn from(p: HistogramDataPoint) -> Self {
        proto::HistogramDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            count: p.count.0,
            sum: p.sum.map(|Num(v)| v),
            bucket_counts: numbers(p.bucket_counts),
            explicit_bounds: numbers(p.explicit_bounds),
            exemplars: p.exemplars,
            flags: p.flags.0,
            min: p.min.map(|Num(v)| v),
            max: p.max.map(|Num(v)| v),
        }
    }
}

impl From<Buckets> for proto::exponential_histogram_data_point::Buckets {
    fn from(b: Buckets) -> Self {
        proto::exponential_histogram_data_point::Buckets {
            offset: b.offset.0,
            bucket_counts: numbers(b.bucket_counts),
        }
    }
}

impl From<ExponentialHistogramDataPoint> for proto::ExponentialHistogramDataPoint {
    fn from(p: ExponentialHistogramDataPoint) -> Self {
        proto::ExponentialHistogramDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            count: p.count.0,
            sum: p.sum.map(|Num(v)| v),
            scale: p.scale.0,
            zero_count: p.zero_count.0,
            positive: p.positive.map(Into::into),
            negative: p.negative.map(Into::into),
            flags: p.flags.0,
            exemplars: p.exemplars,
            min: p.min.map(|Num(v)| v),
            max: p.max.map(|Num(v)| v),
            zero_threshold: p.zero_threshold.0,
        }
    }
}

impl From<SummaryDataPoint> for proto::SummaryDataPoint {
    fn from(p: SummaryDataPoint) -> Self {
        proto::SummaryDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            count: p.count.0,
            sum: p.sum.0,
            quantile_values: p
                .quantile_values
                .into_iter()
                .map(|q| proto::summary_data_point::ValueAtQuantile {
                    quantile: q.quantile.0,
                    value: q.value.0,
                })
                .collect(),
            flags: p.flags.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::metric::Data;

    fn histogram(point: &str) -> String {
        format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"d","histogram":{{"aggregationTemporality":1,"dataPoints":[{point}]}}}}]}}]}}]}}"#
        )
    }

    fn point(body: &str) -> Result<proto::HistogramDataPoint, JsonError> {
        let request = metrics(histogram(body).as_bytes())?;
        match request.resource_metrics[0].scope_metrics[0].metrics[0].data.clone() {
            Some(Data::Histogram(h)) => Ok(h.data_points[0].clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_are_read_as_protojson_writes_them() {
        let p =
            point(r#"{"count":"3","sum":"1.5","bucketCounts":[1,"2"],"explicitBounds":["0.5",1],"timeUnixNano":7}"#)
                .unwrap();
        assert_eq!((p.count, p.sum, p.time_unix_nano), (3, Some(1.5), 7));
        assert_eq!((p.bucket_counts, p.explicit_bounds), (vec![1, 2], vec![0.5, 1.0]));
        let p = point(r#"{"sum":"NaN","min":"-Infinity","max":null,"count":null}"#).unwrap();
        assert!(p.sum.is_some_and(f64::is_nan));
        assert_eq!((p.min, p.max, p.count), (Some(f64::NEG_INFINITY), None, 0));
    }

    #[test]
    fn a_wrong_type_names_its_place() {
        let place = "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0]";
        for (body, field) in [
            (r#"{"sum":true}"#, "sum"),
            (r#"{"sum":"fast"}"#, "sum"),
            (r#"{"explicitBounds":[0.1,"slow"]}"#, "explicitBounds[1]"),
            (r#"{"count":-1}"#, "count"),
            (r#"{"count":"1.5"}"#, "count"),
        ] {
            let error = point(body).expect_err(body);
            assert_eq!(error.path, format!("{place}.{field}"), "{body}: {error}");
            assert!(error.to_string().contains(&error.path), "{error}");
        }
    }

    #[test]
    fn enums_are_integers_and_a_metric_has_one_kind_of_data() {
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA"}}]}]}]}"#;
        let error = metrics(body.as_bytes()).unwrap_err();
        assert_eq!(
            error.path,
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.aggregationTemporality"
        );
        assert!(error.to_string().contains("never as names"), "{error}");
        let both = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{},"sum":{}}]}]}]}"#;
        let error = metrics(both.as_bytes()).unwrap_err();
        assert_eq!(error.path, "resourceMetrics[0].scopeMetrics[0].metrics[0]");
        assert!(error.to_string().contains("one kind of data"), "{error}");
    }

    #[test]
    fn what_prost_types_read_is_read_the_same() {
        // The agent's own JSON (opentelemetry-proto's serializer) reads back whole.
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![proto::ResourceMetrics {
                scope_metrics: vec![proto::ScopeMetrics {
                    metrics: vec![proto::Metric {
                        name: "d".into(),
                        unit: "s".into(),
                        data: Some(Data::ExponentialHistogram(proto::ExponentialHistogram {
                            data_points: vec![proto::ExponentialHistogramDataPoint {
                                count: 3,
                                sum: Some(0.5),
                                scale: -2,
                                time_unix_nano: 1_700_000_000_000_000_000,
                                positive: Some(proto::exponential_histogram_data_point::Buckets {
                                    offset: -3,
                                    bucket_counts: vec![1, 2],
                                }),
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let text = serde_json::to_vec(&request).unwrap();
        assert_eq!(metrics(&text).unwrap(), request);
        assert!(decode::<ExportMetricsServiceRequest>(b"{} trailing", Signal::Metrics).is_err());
    }
}
