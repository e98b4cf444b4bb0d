//! A [`Harvest`] as OTLP messages: metrics, errors as log records, and slow
//! runs as spans. `docs/otlp-schema.md` is the contract this module
//! implements.
//!
//! [`Encoder`] gives the exporter's request bodies (protobuf) to programs
//! that send them their own way, or test a receiver with them. The OTLP
//! message types themselves stay private: they belong to
//! `opentelemetry-proto`, whose every release would otherwise be a breaking
//! change of this crate. Decode the bytes with the OTLP library of your
//! choice.

use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

use super::{exponential, ExportConfig};
use crate::{AgentStats, Harvest, Outcome, SegmentKind, TraceSnapshot, TransactionKind, TransactionSnapshot};

/// Instrumentation scope of everything the agent sends.
pub const SCOPE_NAME: &str = "kuroko-agent";

/// Duration of web transactions (OpenTelemetry semantic conventions).
pub const HTTP_DURATION: &str = "http.server.request.duration";
/// Duration of background jobs.
pub const JOB_DURATION: &str = "kuroko.job.duration";
/// Runs by outcome.
pub const OUTCOMES: &str = "kuroko.transaction.outcomes";
/// Runs by Apdex zone.
pub const APDEX: &str = "kuroko.transaction.apdex";
/// Segment calls.
pub const SEGMENT_CALLS: &str = "kuroko.segment.calls";
/// Time in segments, nested segments included.
pub const SEGMENT_DURATION: &str = "kuroko.segment.duration";
/// Time in segments less nested segments.
pub const SEGMENT_EXCLUSIVE: &str = "kuroko.segment.exclusive_duration";

/// Export-side counters the encoder reports as `kuroko.agent.export.*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Data points dropped because the retry buffer was full, since start.
    pub dropped_points: u64,
    /// Data points the receiver rejected (partial success or 4xx), since start.
    pub rejected_points: u64,
    /// Export attempts that failed, since start.
    pub failed_exports: u64,
}

/// Encodes harvests into OTLP request bodies exactly as the exporter does,
/// with the resource and histogram scale of an [`ExportConfig`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use kuroko_agent::export::{Encoder, ExportConfig, ExportStats};
/// use kuroko_agent::Agent;
///
/// let agent = Agent::default();
/// agent.record("nightly-rollup", Duration::from_secs(2));
/// let encoder = Encoder::new(&ExportConfig::default().with_service_name("batch"), "unknown_service");
/// let metrics = encoder.metrics(&agent.harvest(), ExportStats::default(), SystemTime::now());
/// assert!(metrics.items() > 0 && !metrics.as_bytes().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Encoder {
    resource: Resource,
    scale: i32,
}

/// One OTLP export request encoded as protobuf: the body of an OTLP/HTTP
/// `POST /v1/metrics` (`/v1/logs`, `/v1/traces`), uncompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    body: Vec<u8>,
    items: u64,
}

impl Encoded {
    fn new(message: &impl Message, items: u64) -> Self {
        Encoded {
            body: message.encode_to_vec(),
            items,
        }
    }

    /// The protobuf bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The protobuf bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }

    /// What the request carries: data points (metrics), log records (logs)
    /// or spans (traces).
    pub fn items(&self) -> u64 {
        self.items
    }
}

impl Encoder {
    /// An encoder with `config`'s resource (`service.name` falls back to
    /// `default_service_name`, as the exporter falls back to the agent's
    /// configured name) and histogram scale.
    pub fn new(config: &ExportConfig, default_service_name: &str) -> Self {
        Encoder {
            resource: config.resource(default_service_name),
            scale: config.histogram_scale,
        }
    }

    /// The metrics of one harvest. `stats` adds the exporter's own health
    /// (`kuroko.agent.export.*`); `started` is when the agent started, the
    /// start of its cumulative counters.
    pub fn metrics(&self, harvest: &Harvest, stats: ExportStats, started: SystemTime) -> Encoded {
        let request = metrics_request(harvest, &self.resource, self.scale, stats, started);
        Encoded::new(&request, data_points(&request))
    }

    /// The harvest's errors as log records; `None` without errors.
    pub fn logs(&self, harvest: &Harvest) -> Option<Encoded> {
        let request = logs_request(harvest, &self.resource)?;
        Some(Encoded::new(&request, log_records(&request)))
    }

    /// The harvest's slow runs as spans; `None` without any.
    pub fn traces(&self, harvest: &Harvest) -> Option<Encoded> {
        let request = traces_request(harvest, &self.resource)?;
        Some(Encoded::new(&request, spans(&request)))
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn string(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn double(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// Attributes that identify a transaction's series.
fn transaction_attributes(tx: &TransactionSnapshot) -> Vec<KeyValue> {
    let meta = &tx.meta;
    let mut attributes = vec![string("kuroko.transaction", &*meta.name)];
    if let (Some(method), Some(route)) = (&meta.method, &meta.route) {
        attributes.push(string("http.request.method", &**method));
        attributes.push(string("http.route", &**route));
    }
    if let Some(feature) = &meta.feature {
        attributes.push(string("kuroko.feature", &**feature));
    }
    if meta.overflow {
        attributes.push(boolean("otel.metric.overflow", true));
    }
    attributes
}

/// One metric per name, data points appended as transactions are visited.
struct Metrics {
    start: u64,
    end: u64,
    metrics: Vec<Metric>,
}

impl Metrics {
    fn metric(&mut self, name: &str, unit: &str, description: &str, empty: metric::Data) -> &mut metric::Data {
        let position = match self.metrics.iter().position(|m| m.name == name) {
            Some(position) => position,
            None => {
                self.metrics.push(Metric {
                    name: name.to_owned(),
                    unit: unit.to_owned(),
                    description: description.to_owned(),
                    data: Some(empty),
                    ..Default::default()
                });
                self.metrics.len() - 1
            }
        };
        self.metrics[position]
            .data
            .get_or_insert_with(|| metric::Data::Gauge(Gauge::default()))
    }

    /// Adds a delta, monotonic sum point.
    fn sum(&mut self, name: &str, unit: &str, description: &str, attributes: Vec<KeyValue>, value: f64) {
        let (start, end) = (self.start, self.end);
        let empty = metric::Data::Sum(Sum {
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
            data_points: Vec::new(),
        });
        if let metric::Data::Sum(sum) = self.metric(name, unit, description, empty) {
            sum.data_points.push(number_point(attributes, start, end, value));
        }
    }

    /// Adds a cumulative, monotonic counter point (the agent's own totals).
    fn counter(&mut self, name: &str, unit: &str, description: &str, value: u64, since: u64) {
        let end = self.end;
        let empty = metric::Data::Sum(Sum {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
            data_points: Vec::new(),
        });
        if let metric::Data::Sum(sum) = self.metric(name, unit, description, empty) {
            let mut point = number_point(Vec::new(), since, end, 0.0);
            point.value = Some(number_data_point::Value::AsInt(
                i64::try_from(value).unwrap_or(i64::MAX),
            ));
            sum.data_points.push(point);
        }
    }

    fn gauge(&mut self, name: &str, unit: &str, description: &str, value: u64) {
        let end = self.end;
        if let metric::Data::Gauge(gauge) = self.metric(name, unit, description, metric::Data::Gauge(Gauge::default()))
        {
            let mut point = number_point(Vec::new(), 0, end, 0.0);
            point.value = Some(number_data_point::Value::AsInt(
                i64::try_from(value).unwrap_or(i64::MAX),
            ));
            gauge.data_points.push(point);
        }
    }
}

fn number_point(attributes: Vec<KeyValue>, start: u64, end: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn with(mut attributes: Vec<KeyValue>, extra: KeyValue) -> Vec<KeyValue> {
    attributes.push(extra);
    attributes
}

/// The metrics of one harvest. `stats` and `agent` add the agent's own
/// health (`kuroko.agent.*`); `started` is when the agent started, the start
/// of its cumulative counters.
pub(crate) fn metrics_request(
    harvest: &Harvest,
    resource: &Resource,
    scale: i32,
    export: ExportStats,
    started: SystemTime,
) -> ExportMetricsServiceRequest {
    let mut out = Metrics {
        start: unix_nanos(harvest.start),
        end: unix_nanos(harvest.end),
        metrics: Vec::new(),
    };
    for tx in &harvest.transactions {
        let attributes = transaction_attributes(tx);
        if tx.count > 0 {
            // Extremes of the positive samples, for clamping the buckets.
            let range = (tx.min_ns > 0).then(|| (tx.min_ns as f64 / 1e9, tx.max_ns as f64 / 1e9));
            let buckets = exponential::from_hdr(&tx.histogram, scale, range);
            let point = ExponentialHistogramDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: out.start,
                time_unix_nano: out.end,
                count: tx.count,
                sum: Some(tx.sum_ns as f64 / 1e9),
                scale: buckets.scale,
                zero_count: buckets.zero_count,
                zero_threshold: buckets.zero_threshold,
                positive: Some(Buckets {
                    offset: buckets.offset,
                    bucket_counts: buckets.counts,
                }),
                min: Some(tx.min_ns as f64 / 1e9),
                max: Some(tx.max_ns as f64 / 1e9),
                exemplars: exemplars(harvest, tx),
                ..Default::default()
            };
            let (name, description) = match tx.meta.kind {
                TransactionKind::Web => (HTTP_DURATION, "Duration of HTTP server requests."),
                TransactionKind::Job => (JOB_DURATION, "Duration of background jobs."),
            };
            let empty = metric::Data::ExponentialHistogram(ExponentialHistogram {
                aggregation_temporality: AggregationTemporality::Delta as i32,
                data_points: Vec::new(),
            });
            if let metric::Data::ExponentialHistogram(histogram) = out.metric(name, "s", description, empty) {
                histogram.data_points.push(point);
            }
            let o = tx.outcomes;
            for (outcome, count) in [
                ("ok", o.ok),
                ("1xx", o.informational),
                ("3xx", o.redirection),
                ("4xx", o.client_error),
                ("5xx", o.server_error),
                ("error", o.error),
                ("cancelled", o.cancelled),
            ] {
                if count > 0 {
                    let attributes = with(attributes.clone(), string("kuroko.outcome", outcome));
                    out.sum(OUTCOMES, "{run}", "Runs by how they ended.", attributes, count as f64);
                }
            }
            let threshold = tx.apdex.threshold.as_secs_f64();
            for (zone, count) in [
                ("satisfied", tx.apdex.satisfied),
                ("tolerating", tx.apdex.tolerating),
                ("frustrated", tx.apdex.frustrated),
            ] {
                if count > 0 {
                    let mut attributes = with(attributes.clone(), string("kuroko.apdex.zone", zone));
                    attributes.push(double("kuroko.apdex.threshold", threshold));
                    out.sum(APDEX, "{run}", "Runs by Apdex zone.", attributes, count as f64);
                }
            }
        }
        for segment in &tx.segments {
            let mut attributes = with(attributes.clone(), string("kuroko.segment.kind", segment.kind.as_str()));
            attributes.push(string("kuroko.segment.name", &*segment.name));
            out.sum(
                SEGMENT_CALLS,
                "{call}",
                "Calls of a segment.",
                attributes.clone(),
                segment.count as f64,
            );
            let total = segment.total_ns as f64 / 1e9;
            out.sum(SEGMENT_DURATION, "s", "Time in a segment.", attributes.clone(), total);
            let exclusive = segment.exclusive_ns as f64 / 1e9;
            out.sum(
                SEGMENT_EXCLUSIVE,
                "s",
                "Time in a segment less nested segments.",
                attributes,
                exclusive,
            );
        }
    }
    agent_health(&mut out, &harvest.stats, export, unix_nanos(started));
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: out.metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The kept slow runs of `tx`, as exemplars pointing at their traces.
fn exemplars(harvest: &Harvest, tx: &TransactionSnapshot) -> Vec<Exemplar> {
    harvest
        .traces
        .iter()
        .filter(|trace| std::sync::Arc::ptr_eq(&trace.meta, &tx.meta))
        .map(|trace| Exemplar {
            time_unix_nano: unix_nanos(trace.start + trace.duration),
            value: Some(exemplar::Value::AsDouble(trace.duration.as_secs_f64())),
            span_id: trace.span_id.to_vec(),
            trace_id: trace.trace_id.to_vec(),
            ..Default::default()
        })
        .collect()
}

fn agent_health(out: &mut Metrics, stats: &AgentStats, export: ExportStats, since: u64) {
    out.gauge(
        "kuroko.agent.series",
        "{series}",
        "Transactions tracked by the agent.",
        stats.series as u64,
    );
    out.gauge(
        "kuroko.agent.memory",
        "By",
        "Memory held by the agent's series.",
        stats.memory_bytes as u64,
    );
    out.counter(
        "kuroko.agent.overflowed_samples",
        "{run}",
        "Runs folded into the overflow series by the cardinality limit.",
        stats.overflowed_samples,
        since,
    );
    out.counter(
        "kuroko.agent.dropped_errors",
        "{error}",
        "Errors not kept: the interval's table was full.",
        stats.dropped_errors,
        since,
    );
    out.counter(
        "kuroko.agent.export.dropped_points",
        "{point}",
        "Data points dropped because the export buffer was full.",
        export.dropped_points,
        since,
    );
    out.counter(
        "kuroko.agent.export.rejected_points",
        "{point}",
        "Data points the receiver rejected.",
        export.rejected_points,
        since,
    );
    out.counter(
        "kuroko.agent.export.failures",
        "{export}",
        "Export attempts that failed.",
        export.failed_exports,
        since,
    );
}

/// Number of data points in a metrics request.
pub(crate) fn data_points(request: &ExportMetricsServiceRequest) -> u64 {
    let mut points = 0;
    for metric in request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        points += match &metric.data {
            Some(metric::Data::Sum(sum)) => sum.data_points.len(),
            Some(metric::Data::Gauge(gauge)) => gauge.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64;
    }
    points
}

/// Number of log records in a logs request.
pub(crate) fn log_records(logs: &ExportLogsServiceRequest) -> u64 {
    logs.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

/// Number of spans in a traces request.
pub(crate) fn spans(traces: &ExportTraceServiceRequest) -> u64 {
    traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

/// The harvest's errors as log records following the `exception.*`
/// conventions, one per distinct error with its count; `None` without errors.
pub(crate) fn logs_request(harvest: &Harvest, resource: &Resource) -> Option<ExportLogsServiceRequest> {
    if harvest.errors.is_empty() {
        return None;
    }
    let observed = unix_nanos(harvest.end);
    // An error names its transaction; its route, method and feature come from
    // the transaction's snapshot, so the error lands on the same series.
    let transactions: std::collections::HashMap<&str, &TransactionSnapshot> =
        harvest.transactions.iter().map(|t| (&*t.meta.name, t)).collect();
    let records = harvest
        .errors
        .iter()
        .map(|e| {
            let mut attributes = match transactions.get(&*e.transaction) {
                Some(tx) => transaction_attributes(tx),
                None => vec![string("kuroko.transaction", &*e.transaction)],
            };
            attributes.extend([
                string("exception.type", &e.error.error_type),
                string("exception.message", &e.error.message),
                int("kuroko.error.count", i64::try_from(e.count).unwrap_or(i64::MAX)),
                int(
                    "kuroko.error.first_seen",
                    i64::try_from(unix_nanos(e.first_seen)).unwrap_or(i64::MAX),
                ),
            ]);
            if let Some(location) = &e.error.location {
                match location
                    .rsplit_once(':')
                    .and_then(|(file, line)| Some((file, line.parse::<i64>().ok()?)))
                {
                    Some((file, line)) => {
                        attributes.push(string("code.file.path", file));
                        attributes.push(int("code.line.number", line));
                    }
                    None => attributes.push(string("code.file.path", location)),
                }
            }
            if let Some(backtrace) = &e.error.backtrace {
                attributes.push(string("exception.stacktrace", backtrace));
            }
            LogRecord {
                time_unix_nano: unix_nanos(e.last_seen),
                observed_time_unix_nano: observed,
                severity_number: SeverityNumber::Error as i32,
                severity_text: "ERROR".to_owned(),
                event_name: "exception".to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(e.error.message.clone())),
                }),
                attributes,
                ..Default::default()
            }
        })
        .collect();
    Some(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// The harvest's slow runs as OTLP spans: one `SERVER` (web) or `INTERNAL`
/// (job; `CONSUMER` when it continues a caller's trace) span per run, a
/// child of the caller's span when it continued a trace, with one child span per segment (`CLIENT` for
/// database and external calls, `INTERNAL` for code); `None` without any.
pub(crate) fn traces_request(harvest: &Harvest, resource: &Resource) -> Option<ExportTraceServiceRequest> {
    if harvest.traces.is_empty() {
        return None;
    }
    let spans = harvest.traces.iter().flat_map(trace_spans).collect();
    Some(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn trace_spans(trace: &TraceSnapshot) -> Vec<Span> {
    let mut attributes = vec![string("kuroko.transaction", &*trace.meta.name)];
    if let (Some(method), Some(route)) = (&trace.meta.method, &trace.meta.route) {
        attributes.push(string("http.request.method", &**method));
        attributes.push(string("http.route", &**route));
    }
    if let Some(feature) = &trace.meta.feature {
        attributes.push(string("kuroko.feature", &**feature));
    }
    if let Outcome::Status(code) = trace.outcome {
        attributes.push(int("http.response.status_code", i64::from(code)));
    }
    if trace.dropped_segments > 0 {
        attributes.push(int("kuroko.trace.dropped_segments", i64::from(trace.dropped_segments)));
    }
    let status = if trace.outcome.is_error() {
        Status {
            code: StatusCode::Error as i32,
            message: format!("{:?}", trace.outcome),
        }
    } else {
        Status::default()
    };
    let kind = match (trace.meta.kind, trace.parent_span_id) {
        (TransactionKind::Web, _) => SpanKind::Server,
        // A job that continues a caller's trace consumes its message.
        (TransactionKind::Job, Some(_)) => SpanKind::Consumer,
        (TransactionKind::Job, None) => SpanKind::Internal,
    };
    let mut spans = vec![Span {
        trace_id: trace.trace_id.to_vec(),
        span_id: trace.span_id.to_vec(),
        parent_span_id: trace.parent_span_id.map(|id| id.to_vec()).unwrap_or_default(),
        trace_state: trace.trace_state.as_deref().unwrap_or_default().to_owned(),
        name: trace.meta.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(trace.start),
        end_time_unix_nano: unix_nanos(trace.start + trace.duration),
        attributes,
        status: Some(status),
        ..Default::default()
    }];
    for segment in &trace.segments {
        let kind = match segment.kind {
            SegmentKind::Database | SegmentKind::External => SpanKind::Client,
            SegmentKind::Code => SpanKind::Internal,
        };
        spans.push(Span {
            trace_id: trace.trace_id.to_vec(),
            span_id: segment.span_id.to_vec(),
            parent_span_id: trace.span_id.to_vec(),
            name: segment.name.to_string(),
            kind: kind as i32,
            start_time_unix_nano: unix_nanos(segment.start),
            end_time_unix_nano: unix_nanos(segment.start + segment.duration),
            attributes: vec![string("kuroko.segment.kind", segment.kind.as_str())],
            ..Default::default()
        });
    }
    spans
}
