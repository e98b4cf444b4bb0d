//! What a decoded request takes in memory beside its body, for the
//! in-flight budget ([`super::inflight`]): the body's bytes are counted as
//! they arrive; decoding then adds structures (a point, a record or a span
//! and their attributes), copies of strings, and bucket counts that were
//! one byte each on the wire and are eight once decoded. These are counted
//! from the decoded request, at the sizes Rust gives its types.

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::wire::{self, Attr, Data};

/// A metrics request as read in place: its structures and what it holds
/// apart from the body (decoded bucket counts and bounds).
pub(crate) fn metrics(request: &wire::Request<'_>) -> usize {
    let attributes = |a: &[Attr<'_>]| size_of_val(a);
    let mut bytes = size_of_val(request.resources.as_slice());
    for resource in &request.resources {
        bytes += attributes(&resource.attributes) + size_of_val(resource.scopes.as_slice());
        for metric in resource.scopes.iter().flat_map(|scope| &scope.metrics) {
            bytes += size_of::<wire::Metric<'_>>();
            bytes += match &metric.data {
                Data::None | Data::Summary => 0,
                Data::Gauge(points) | Data::Sum(_, points) => {
                    size_of_val(points.as_slice()) + points.iter().map(|p| attributes(&p.attributes)).sum::<usize>()
                }
                Data::Histogram(_, points) => {
                    let each =
                        |p: &wire::Explicit<'_>| attributes(&p.attributes) + owned(&p.bucket_counts) + owned(&p.bounds);
                    size_of_val(points.as_slice()) + points.iter().map(each).sum::<usize>()
                }
                Data::Exponential(_, points) => {
                    let each = |p: &wire::Exponential<'_>| {
                        let buckets = [&p.positive, &p.negative];
                        let counts: usize = buckets
                            .iter()
                            .filter_map(|b| b.as_ref())
                            .map(|b| owned(&b.counts))
                            .sum();
                        attributes(&p.attributes) + counts
                    };
                    size_of_val(points.as_slice()) + points.iter().map(each).sum::<usize>()
                }
            };
        }
    }
    bytes
}

/// What a slice the reader had to copy (not borrow from the body) takes.
#[allow(clippy::ptr_arg)] // whether it is borrowed is the question: a `Cow` it must be
fn owned<T: Clone>(values: &Cow<'_, [T]>) -> usize {
    match values {
        Cow::Owned(values) => size_of_val(values.as_slice()),
        Cow::Borrowed(_) => 0,
    }
}

/// A logs request decoded by prost.
pub(crate) fn logs(request: &ExportLogsServiceRequest) -> usize {
    let mut bytes = size_of_val(request.resource_logs.as_slice());
    for resource in &request.resource_logs {
        bytes += resource.resource.as_ref().map_or(0, |r| key_values(&r.attributes));
        bytes += size_of_val(resource.scope_logs.as_slice());
        for scope in &resource.scope_logs {
            bytes += size_of_val(scope.log_records.as_slice());
            bytes += scope.log_records.iter().map(record).sum::<usize>();
        }
    }
    bytes
}

fn record(record: &LogRecord) -> usize {
    key_values(&record.attributes)
        + record.body.as_ref().map_or(0, any)
        + record.severity_text.len()
        + record.trace_id.len()
        + record.span_id.len()
        + record.event_name.len()
}

/// A traces request decoded by prost.
pub(crate) fn traces(request: &ExportTraceServiceRequest) -> usize {
    let mut bytes = size_of_val(request.resource_spans.as_slice());
    for resource in &request.resource_spans {
        bytes += resource.resource.as_ref().map_or(0, |r| key_values(&r.attributes));
        bytes += size_of_val(resource.scope_spans.as_slice());
        for scope in &resource.scope_spans {
            bytes += size_of_val(scope.spans.as_slice());
            bytes += scope.spans.iter().map(span).sum::<usize>();
        }
    }
    bytes
}

fn span(span: &Span) -> usize {
    let event = |e: &Event| e.name.len() + key_values(&e.attributes);
    let link = |l: &Link| l.trace_id.len() + l.span_id.len() + l.trace_state.len() + key_values(&l.attributes);
    key_values(&span.attributes)
        + span.name.len()
        + span.trace_id.len()
        + span.span_id.len()
        + span.parent_span_id.len()
        + span.trace_state.len()
        + size_of_val(span.events.as_slice())
        + span.events.iter().map(event).sum::<usize>()
        + size_of_val(span.links.as_slice())
        + span.links.iter().map(link).sum::<usize>()
        + span.status.as_ref().map_or(0, |s| s.message.len())
}

/// Attributes: their structures, keys and values.
fn key_values(attributes: &[KeyValue]) -> usize {
    size_of_val(attributes)
        + attributes
            .iter()
            .map(|kv| kv.key.len() + kv.value.as_ref().map_or(0, any))
            .sum::<usize>()
}

fn any(value: &AnyValue) -> usize {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.len(),
        Some(any_value::Value::BytesValue(b)) => b.len(),
        Some(any_value::Value::ArrayValue(array)) => {
            size_of_val(array.values.as_slice()) + array.values.iter().map(any).sum::<usize>()
        }
        Some(any_value::Value::KvlistValue(list)) => key_values(&list.values),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_bucket_counts_are_counted_at_eight_bytes() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            exponential_histogram_data_point::Buckets, metric, ExponentialHistogram, ExponentialHistogramDataPoint,
            Metric, ResourceMetrics, ScopeMetrics,
        };
        use prost::Message;
        let point = ExponentialHistogramDataPoint {
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![0; 10_000],
            }),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![point],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let read = wire::read(&request).unwrap();
        let bytes = metrics(&read);
        assert!(
            (80_000..90_000).contains(&bytes),
            "{bytes} bytes from {} on the wire",
            request.len()
        );
    }
}
