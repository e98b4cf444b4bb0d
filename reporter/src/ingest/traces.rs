//! OTLP traces → transactions, segments and kept traces.
//!
//! From any OpenTelemetry SDK, `SERVER` and `CONSUMER` spans are
//! transactions: named `kuroko.transaction`, else `METHOD route`, else the
//! span's name. Each becomes a one-run histogram point and an outcome count;
//! its direct `CLIENT` and `INTERNAL` children in the same request become
//! segments (`db.*` attributes: database; `http.*`, `url.*`, `rpc.*`,
//! `server.address`: external; else code). So a service instrumented only
//! with a stock SDK gets slow-endpoint analysis too.
//!
//! Spans from Kuroko's agent (scope `kuroko-agent`), and spans of
//! transactions that also arrive as duration metrics, were already counted by
//! those metrics: they are kept as traces but not counted again.
//!
//! The slowest few transaction spans of each series in a request are kept as
//! traces, with their children; the store keeps the slowest per hour.

use std::collections::HashMap;
use std::fmt::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};

use super::otlp::{check, cut, get, key, minute, resource_identity, text, transaction, Converted, Limits};
use crate::histogram::Histogram;
use crate::store::{CounterPoint, HistogramPoint, SeriesKey, TracePoint};

/// Traces kept per series from one request.
const KEPT_PER_REQUEST: usize = 5;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn is_transaction(span: &Span, ours: bool) -> bool {
    span.kind == SpanKind::Server as i32
        || span.kind == SpanKind::Consumer as i32
        || (ours && span.parent_span_id.is_empty())
}

fn segment_kind(span: &Span) -> &'static str {
    let has = |prefixes: &[&str]| {
        span.attributes
            .iter()
            .any(|kv| prefixes.iter().any(|p| kv.key.starts_with(p)))
    };
    if let Some(kind) = get(&span.attributes, "kuroko.segment.kind").and_then(text) {
        return match kind.as_str() {
            "database" => "database",
            "external" => "external",
            _ => "code",
        };
    }
    if has(&["db."]) {
        "database"
    } else if has(&["http.", "url.", "rpc.", "server.address"]) && span.kind == SpanKind::Client as i32 {
        "external"
    } else {
        "code"
    }
}

fn outcome(span: &Span) -> &'static str {
    let status = get(&span.attributes, "http.response.status_code")
        .and_then(text)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(code) if code >= 500 => "5xx",
        Some(code) if code >= 400 => "4xx",
        Some(code) if code >= 300 => "3xx",
        Some(code) if code < 200 => "1xx",
        _ if span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32) => "error",
        _ => "ok",
    }
}

/// A span as kept in a trace: name, kind, offsets in ns, a few attributes.
fn span_json(span: &Span, kind: &str) -> String {
    let attributes: serde_json::Map<String, serde_json::Value> = span
        .attributes
        .iter()
        .take(32)
        .filter_map(|kv| Some((kv.key.clone(), serde_json::Value::String(text(kv)?))))
        .collect();
    serde_json::json!({
        "name": span.name,
        "kind": kind,
        "span_id": hex(&span.span_id),
        "start": span.start_time_unix_nano,
        "duration_ns": span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano),
        "attributes": attributes,
    })
    .to_string()
}

/// Converts `request`, received at `now_unix_nano`.
pub fn convert(
    request: &ExportTraceServiceRequest,
    limits: &Limits,
    now_unix_nano: u64,
    metric_transactions: &super::otlp::MetricTransactions,
) -> Converted {
    let mut out = Converted::default();
    let mut histograms: HashMap<(SeriesKey, i64), Histogram> = HashMap::new();
    let mut counters: HashMap<(SeriesKey, i64, &'static str, String), f64> = HashMap::new();
    let mut candidates: HashMap<SeriesKey, Vec<TracePoint>> = HashMap::new();
    for resource_spans in &request.resource_spans {
        let sender = resource_identity(resource_spans.resource.as_ref());
        for scope_spans in &resource_spans.scope_spans {
            let ours = scope_spans.scope.as_ref().is_some_and(|s| s.name == "kuroko-agent");

            let spans = &scope_spans.spans;
            // Children by (trace, parent), indexed once: one pass however
            // many spans a hostile request carries.
            let mut children_of: HashMap<(&[u8], &[u8]), Vec<&Span>> = HashMap::new();
            for span in spans.iter().filter(|s| !s.parent_span_id.is_empty()) {
                children_of
                    .entry((&span.trace_id, &span.parent_span_id))
                    .or_default()
                    .push(span);
            }
            for root in spans.iter().filter(|s| is_transaction(s, ours)) {
                if root.end_time_unix_nano < root.start_time_unix_nano {
                    out.reject("span", format!("span {:?} ends before it starts", root.name));
                    continue;
                }
                if root.name.len() > limits.max_value_bytes {
                    out.reject(
                        "span",
                        format!("span name is longer than {} bytes", limits.max_value_bytes),
                    );
                    continue;
                }
                if let Err(reason) = check(&root.attributes, root.end_time_unix_nano, now_unix_nano, limits) {
                    out.reject("span", reason);
                    continue;
                }
                let (name, kind) = transaction("", &root.attributes).unwrap_or_else(|| {
                    (
                        root.name.clone(),
                        if root.kind == SpanKind::Server as i32 {
                            "web"
                        } else {
                            "job"
                        },
                    )
                });
                let series = key(&sender, name, kind, &root.attributes);
                let seconds = root.end_time_unix_nano.saturating_sub(root.start_time_unix_nano) as f64 / 1e9;
                let children: &[&Span] = children_of
                    .get(&(root.trace_id.as_slice(), root.span_id.as_slice()))
                    .map_or(&[], |c| c.as_slice());
                let counted_elsewhere = ours || metric_transactions.contains(&sender.service, &series.transaction);
                if !counted_elsewhere {
                    let minute = minute(root.end_time_unix_nano);
                    let run = histograms
                        .entry((series.clone(), minute))
                        .or_insert_with(Histogram::empty);
                    run.merge(&one_run(seconds));
                    let outcome = format!("kuroko.outcome={}", outcome(root));
                    *counters
                        .entry((series.clone(), minute, "kuroko.transaction.outcomes", outcome))
                        .or_default() += 1.0;
                    for child in children {
                        let labels = format!(
                            "kuroko.segment.kind={},kuroko.segment.name={}",
                            segment_kind(child),
                            cut(&child.name, limits.max_value_bytes)
                        );
                        let took = child.end_time_unix_nano.saturating_sub(child.start_time_unix_nano) as f64 / 1e9;
                        *counters
                            .entry((series.clone(), minute, "kuroko.segment.calls", labels.clone()))
                            .or_default() += 1.0;
                        *counters
                            .entry((series.clone(), minute, "kuroko.segment.duration", labels.clone()))
                            .or_default() += took;
                        *counters
                            .entry((series.clone(), minute, "kuroko.segment.exclusive_duration", labels))
                            .or_default() += took;
                    }
                }
                let mut json = vec![span_json(root, kind)];
                json.extend(children.iter().map(|c| span_json(c, segment_kind(c))));
                candidates.entry(series.clone()).or_default().push(TracePoint {
                    key: series,
                    trace_id: hex(&root.trace_id),
                    start: root.start_time_unix_nano,
                    duration: seconds,
                    spans: format!("[{}]", json.join(",")),
                });
            }
        }
    }
    out.batch.histograms = histograms
        .into_iter()
        .map(|((key, minute), histogram)| HistogramPoint {
            key: key.into(),
            minute,
            histogram,
        })
        .collect();
    out.batch.counters = counters
        .into_iter()
        .map(|((key, minute, name, labels), value)| CounterPoint {
            key: key.into(),
            minute,
            name: name.to_owned(),
            labels,
            value,
        })
        .collect();
    for (_, mut traces) in candidates {
        traces.sort_by(|a, b| b.duration.total_cmp(&a.duration));
        out.batch.traces.extend(traces.into_iter().take(KEPT_PER_REQUEST));
    }
    // Exception events become errors; transaction spans tie their trace's.
    super::exceptions::add(request, limits, now_unix_nano, &mut out);
    out
}

/// A histogram of one run.
fn one_run(seconds: f64) -> Histogram {
    let mut histogram = Histogram::empty();
    // Durations come from span timestamps: finite, and at least zero.
    let _ = histogram.record(seconds.max(0.0));
    histogram
}
