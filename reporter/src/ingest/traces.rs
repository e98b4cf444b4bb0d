//! OTLP traces → transactions, segments and kept traces.
//!
//! From any OpenTelemetry SDK, `SERVER` and `CONSUMER` spans are
//! transactions: named `kuroko.transaction`, else `METHOD route`, else (a
//! SERVER span with a method and no route, such as a 404) `METHOD (no
//! route)` as its duration metric names it, else the span's name. Every
//! span below one in the same resource's request (its whole subtree,
//! whatever instrumentation scope made it, down to the next transaction) is
//! a segment of it: `db.*` attributes make it database,
//! `messaging.*` (or a `PRODUCER` span) messaging, a `CLIENT` span with
//! `http.*`, `url.*`, `rpc.*` or `server.address` external, anything else
//! code. Each segment counts its calls, its time and its exclusive time (its
//! time less the union of its children's), so Express's router spans,
//! which hold the outgoing call, do not hide it.
//!
//! One source of truth per run: a transaction span's run (its duration and
//! outcome) goes to a series of kind `web.spans` (or `job.spans`) beside the
//! transaction's own, and the store reads those series only for a
//! transaction whose runs no duration metric counts (the store's
//! `metric_transaction` table): runs are never counted twice, whether the
//! spans come before the first metric point, after a restart, or through
//! another replica. Segments, traced-run totals (`kuroko.traced.*`, the
//! denominators of the breakdown's shares, since spans may be sampled) and
//! kept traces go to the transaction's own series.
//!
//! Spans from Kuroko's agent (scope `kuroko-agent`) were counted by its
//! metrics, segments included: they are kept as traces only.
//!
//! The slowest few transaction spans of each series in a request are kept as
//! traces, with their subtree; the store keeps the slowest per hour.

use std::collections::HashMap;
use std::fmt::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};

use super::otlp::{
    check, cut, get, key, minute, outcome, resource_identity, text, transaction, Attribute, Converted, Identity,
    Limits, Rule, Trimmed,
};
use crate::histogram::Histogram;
use crate::store::{CounterPoint, HistogramPoint, SeriesKey, TracePoint, SPAN_COUNTED};

/// Runs of a transaction's traced spans: label-less, per series.
pub(crate) const TRACED_RUNS: &str = "kuroko.traced.runs";
/// Their total duration, seconds.
pub(crate) const TRACED_DURATION: &str = "kuroko.traced.duration";

/// Spans walked below one transaction, at most (a hostile trace's subtree
/// costs bounded work).
const MAX_SEGMENT_SPANS: usize = 10_000;

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
            "messaging" => "messaging",
            _ => "code",
        };
    }
    if has(&["db."]) {
        "database"
    } else if has(&["messaging."]) || span.kind == SpanKind::Producer as i32 {
        "messaging"
    } else if has(&["http.", "url.", "rpc.", "server.address"]) && span.kind == SpanKind::Client as i32 {
        "external"
    } else {
        "code"
    }
}

fn failed(span: &Span) -> bool {
    span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32)
}

/// The children of `span` in a request's index of children.
fn children_in<'a>(index: &HashMap<(&'a [u8], &'a [u8]), Vec<&'a Span>>, span: &Span) -> Vec<&'a Span> {
    index
        .get(&(span.trace_id.as_slice(), span.span_id.as_slice()))
        .cloned()
        .unwrap_or_default()
}

/// Nanoseconds covered by the union of `intervals`, clipped to `within`.
fn covered(mut intervals: Vec<(u64, u64)>, within: (u64, u64)) -> u64 {
    intervals.sort_unstable();
    let (mut total, mut reach) = (0u64, within.0);
    for (start, end) in intervals {
        let (start, end) = (start.max(reach), end.min(within.1));
        if end > start {
            total += end - start;
            reach = end;
        }
    }
    total
}

/// Attributes of a kept span, at most (before the byte budget).
const MAX_KEPT_ATTRIBUTES: usize = 32;

/// A span as kept in a trace: name, kind, its and its parent's ids (the
/// performance problems' detectors tell siblings apart by the parent), offsets in ns, a few attributes,
/// within `max_span_attribute_bytes` (each value cut to `max_value_bytes`);
/// what it leaves out is added to `trimmed`.
fn span_json(span: &Span, kind: &str, limits: &Limits, trimmed: &mut Trimmed) -> String {
    let mut budget = limits.max_span_attribute_bytes;
    let mut attributes = serde_json::Map::new();
    for kv in &span.attributes {
        let Some(value) = kv.text() else { continue };
        let kept = cut(&value, limits.max_value_bytes);
        let cost = kv.key.len() + kept.len();
        if attributes.len() >= MAX_KEPT_ATTRIBUTES || cost > budget || kv.key.len() > limits.max_value_bytes {
            trimmed.attributes += 1;
            continue;
        }
        if kept.len() < value.len() {
            trimmed.attributes += 1;
        }
        budget -= cost;
        attributes.insert(kv.key.clone(), serde_json::Value::String(kept.to_owned()));
    }
    serde_json::json!({
        "name": cut(&span.name, limits.max_value_bytes),
        "kind": kind,
        "span_id": hex(&span.span_id),
        "parent": hex(&span.parent_span_id),
        "start": span.start_time_unix_nano,
        "duration_ns": span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano),
        "attributes": attributes,
    })
    .to_string()
}

/// A kept trace's spans as a JSON array: the transaction span `root`, then
/// its `segments` while `max_trace_spans` and `max_trace_bytes` allow; with
/// what it left out.
fn trace_json(root: &Span, kind: &str, segments: &[&Span], limits: &Limits) -> (String, Trimmed) {
    let mut trimmed = Trimmed::default();
    let mut json = String::from("[");
    json.push_str(&span_json(root, kind, limits, &mut trimmed));
    let mut kept = 1;
    for span in segments {
        if kept >= limits.max_trace_spans {
            break;
        }
        let mut cut = Trimmed::default();
        let one = span_json(span, segment_kind(span), limits, &mut cut);
        if json.len() + 1 + one.len() + 1 > limits.max_trace_bytes {
            break;
        }
        json.push(',');
        json.push_str(&one);
        trimmed.add(cut);
        kept += 1;
    }
    json.push(']');
    trimmed.spans += (segments.len() + 1 - kept) as u64;
    (json, trimmed)
}

/// The series of transaction span `root` of `sender`: named as its metric
/// names it, else by the span's name.
pub(crate) fn series_of(sender: &Identity, root: &Span) -> SeriesKey {
    let server = root.kind == SpanKind::Server as i32;
    let (name, kind) = transaction(server, &root.attributes)
        .unwrap_or_else(|| (root.name.clone(), if server { "web" } else { "job" }));
    key(sender, name, kind, &root.attributes)
}

/// How long spans wait for their transaction, and transactions for their
/// late spans, across requests.
const SPAN_MEMORY_TTL: std::time::Duration = std::time::Duration::from_secs(120);
/// Most spans waiting for their parent, and most bytes they may take
/// (a hostile request's spans can carry large attributes).
const MAX_WAITING_SPANS: usize = 20_000;
const MAX_WAITING_BYTES: usize = 32 << 20;
/// Most spans remembered with their transaction (about 100 bytes each).
const MAX_ATTRIBUTED_SPANS: usize = 100_000;

/// A span's place: (trace id, span id).
type SpanRef = (Vec<u8>, Vec<u8>);

/// What ties spans to their transaction across export requests. An SDK's
/// batch span processor exports spans as they end, in batches: a request's
/// first children (which end first) may leave in the batch before its SERVER
/// span, and work that outlives the response in the batch after it. Both
/// still belong to the transaction: children whose parent has not arrived
/// wait here (bounded, for two minutes), and spans already placed remember
/// their transaction, so a late child finds it. In memory only: a restart,
/// or a child and its transaction reaching different replicas, loses the
/// tie (the child is then not counted).
#[derive(Default)]
pub(crate) struct SpanMemory {
    /// Spans whose parent was not seen, by (trace, parent).
    waiting: HashMap<SpanRef, Vec<(Span, std::time::Instant)>>,
    waiting_spans: usize,
    waiting_bytes: usize,
    /// Spans placed, with their transaction's series (shared by its spans)
    /// and minute.
    attributed: HashMap<SpanRef, (std::sync::Arc<SeriesKey>, i64, std::time::Instant)>,
}

impl SpanMemory {
    /// Takes the spans waiting for `span` (its children), and theirs.
    fn adopt(&mut self, span: &Span, into: &mut Vec<Span>) {
        if self.waiting.is_empty() {
            return;
        }
        let mut parents = vec![(span.trace_id.clone(), span.span_id.clone())];
        while let Some(parent) = parents.pop() {
            for (child, _) in self.waiting.remove(&parent).unwrap_or_default() {
                self.waiting_spans = self.waiting_spans.saturating_sub(1);
                self.waiting_bytes = self.waiting_bytes.saturating_sub(prost::Message::encoded_len(&child));
                parents.push((child.trace_id.clone(), child.span_id.clone()));
                into.push(child);
            }
        }
    }

    /// Keeps `span` until its parent arrives (unless full).
    fn wait(&mut self, span: &Span, now: std::time::Instant) {
        let bytes = prost::Message::encoded_len(span);
        if self.waiting_spans >= MAX_WAITING_SPANS || self.waiting_bytes + bytes > MAX_WAITING_BYTES {
            self.waiting.retain(|_, spans| {
                spans.retain(|(_, since)| now.duration_since(*since) < SPAN_MEMORY_TTL);
                !spans.is_empty()
            });
            let all = || self.waiting.values().flatten();
            self.waiting_spans = all().count();
            self.waiting_bytes = all().map(|(s, _)| prost::Message::encoded_len(s)).sum();
            if self.waiting_spans >= MAX_WAITING_SPANS || self.waiting_bytes + bytes > MAX_WAITING_BYTES {
                return;
            }
        }
        let parent = (span.trace_id.clone(), span.parent_span_id.clone());
        self.waiting.entry(parent).or_default().push((span.clone(), now));
        self.waiting_spans += 1;
        self.waiting_bytes += bytes;
    }

    /// Remembers that `span` belongs to the transaction `series` of `minute`.
    fn place(&mut self, span: &Span, series: &std::sync::Arc<SeriesKey>, minute: i64, now: std::time::Instant) {
        if self.attributed.len() >= MAX_ATTRIBUTED_SPANS {
            self.attributed
                .retain(|_, (_, _, since)| now.duration_since(*since) < SPAN_MEMORY_TTL);
            if self.attributed.len() >= MAX_ATTRIBUTED_SPANS {
                return;
            }
        }
        let at = (span.trace_id.clone(), span.span_id.clone());
        self.attributed.insert(at, (series.clone(), minute, now));
    }

    /// The transaction a span's parent was placed in, if remembered.
    fn transaction_of_parent(&self, span: &Span) -> Option<(std::sync::Arc<SeriesKey>, i64)> {
        let parent = (span.trace_id.clone(), span.parent_span_id.clone());
        self.attributed
            .get(&parent)
            .map(|(series, minute, _)| (series.clone(), *minute))
    }
}

/// Adds one segment call of `span` (its children being `nested`) to
/// `counters` under `series` and `minute`.
fn count_segment(
    counters: &mut HashMap<(SeriesKey, i64, &'static str, String), f64>,
    (series, minute): (&SeriesKey, i64),
    span: &Span,
    nested: &[&Span],
    limits: &Limits,
) {
    let labels = format!(
        "kuroko.segment.kind={},kuroko.segment.name={}",
        segment_kind(span),
        cut(&span.name, limits.max_value_bytes)
    );
    let within = (
        span.start_time_unix_nano,
        span.end_time_unix_nano.max(span.start_time_unix_nano),
    );
    let took = within.1 - within.0;
    let nested = nested.iter().map(|c| (c.start_time_unix_nano, c.end_time_unix_nano));
    let own = took - covered(nested.collect(), within).min(took);
    for (metric, value) in [
        ("kuroko.segment.calls", 1.0),
        ("kuroko.segment.duration", took as f64 / 1e9),
        ("kuroko.segment.exclusive_duration", own as f64 / 1e9),
    ] {
        *counters
            .entry((series.clone(), minute, metric, labels.clone()))
            .or_default() += value;
    }
}

/// Converts `request`, received at `now_unix_nano`, with `memory` holding
/// what ties spans to their transaction across requests.
pub(crate) fn convert(
    request: &ExportTraceServiceRequest,
    limits: &Limits,
    now_unix_nano: u64,
    memory: &mut SpanMemory,
) -> Converted {
    let mut out = Converted::default();
    let now = std::time::Instant::now();
    let mut histograms: HashMap<(SeriesKey, i64), Histogram> = HashMap::new();
    let mut counters: HashMap<(SeriesKey, i64, &'static str, String), f64> = HashMap::new();
    let mut candidates: HashMap<SeriesKey, Vec<(TracePoint, Trimmed)>> = HashMap::new();
    for resource_spans in &request.resource_spans {
        let sender = match resource_identity(resource_spans.resource.as_ref(), limits) {
            Ok(sender) => sender,
            Err(reason) => {
                let spans = resource_spans.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
                out.reject_many("resource", Rule::Resource, reason, spans);
                continue;
            }
        };
        // Spans of earlier requests waiting for a span of this one.
        let mut adopted: Vec<Span> = Vec::new();
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            memory.adopt(span, &mut adopted);
        }
        let all = || resource_spans.scope_spans.iter().flat_map(|s| &s.spans).chain(&adopted);
        // Children by (trace, parent) across the resource's scopes, indexed
        // once: one pass however many spans a hostile request carries.
        let mut children_of: HashMap<(&[u8], &[u8]), Vec<&Span>> = HashMap::new();
        for span in all() {
            if !span.parent_span_id.is_empty() {
                children_of
                    .entry((&span.trace_id, &span.parent_span_id))
                    .or_default()
                    .push(span);
            }
        }
        let children = |span: &Span| children_in(&children_of, span);
        // Spans placed under a transaction of this request.
        let mut placed: std::collections::HashSet<(&[u8], &[u8])> = std::collections::HashSet::new();
        for scope_spans in &resource_spans.scope_spans {
            let ours = scope_spans.scope.as_ref().is_some_and(|s| s.name == "kuroko-agent");
            for root in scope_spans.spans.iter().filter(|s| is_transaction(s, ours)) {
                if root.end_time_unix_nano < root.start_time_unix_nano {
                    out.reject(
                        "span",
                        Rule::Span,
                        format!("span {:?} ends before it starts", root.name),
                    );
                    continue;
                }
                if root.name.len() > limits.max_value_bytes {
                    out.reject(
                        "span",
                        Rule::AttributeLength,
                        format!("span name is longer than {} bytes", limits.max_value_bytes),
                    );
                    continue;
                }
                if let Err(refusal) = check(&root.attributes, root.end_time_unix_nano, now_unix_nano, limits) {
                    out.refuse("span", refusal);
                    continue;
                }
                let series = series_of(&sender, root);
                let kind = series.kind.clone();
                let seconds = root.end_time_unix_nano.saturating_sub(root.start_time_unix_nano) as f64 / 1e9;
                // The subtree down to the next transaction, parents first.
                let mut segments: Vec<&Span> = Vec::new();
                let mut next: Vec<&Span> = children(root);
                while let Some(span) = next.pop() {
                    if segments.len() >= MAX_SEGMENT_SPANS || is_transaction(span, false) {
                        continue;
                    }
                    segments.push(span);
                    next.extend(children(span));
                }
                placed.insert((&root.trace_id, &root.span_id));
                placed.extend(segments.iter().map(|s| (s.trace_id.as_slice(), s.span_id.as_slice())));
                if !ours {
                    let minute = minute(root.end_time_unix_nano);
                    let shared = std::sync::Arc::new(series.clone());
                    memory.place(root, &shared, minute, now);
                    for span in &segments {
                        memory.place(span, &shared, minute, now);
                    }
                    // The run, on the series read only when no metric counts it.
                    let runs = SeriesKey {
                        kind: format!("{kind}{SPAN_COUNTED}"),
                        ..series.clone()
                    };
                    histograms
                        .entry((runs.clone(), minute))
                        .or_insert_with(Histogram::empty)
                        .merge(&one_run(seconds));
                    let outcome = format!("kuroko.outcome={}", outcome(&root.attributes, failed(root)));
                    *counters
                        .entry((runs, minute, super::otlp::OUTCOMES, outcome))
                        .or_default() += 1.0;
                    // The traced run and its segments, on the transaction's series.
                    *counters
                        .entry((series.clone(), minute, TRACED_RUNS, String::new()))
                        .or_default() += 1.0;
                    *counters
                        .entry((series.clone(), minute, TRACED_DURATION, String::new()))
                        .or_default() += seconds;
                    for span in &segments {
                        count_segment(&mut counters, (&series, minute), span, &children(span), limits);
                    }
                }
                let (spans, trimmed) = trace_json(root, &kind, &segments, limits);
                let trace = TracePoint {
                    key: series.clone(),
                    trace_id: hex(&root.trace_id),
                    start: root.start_time_unix_nano,
                    duration: seconds,
                    spans,
                };
                candidates.entry(series).or_default().push((trace, trimmed));
            }
        }
        // The rest: spans whose transaction an earlier request placed (late
        // work), counted under it; else waiting for their parent.
        let scopes = resource_spans.scope_spans.iter();
        let sdk_spans = scopes
            .filter(|s| s.scope.as_ref().is_none_or(|scope| scope.name != "kuroko-agent"))
            .flat_map(|s| &s.spans)
            .chain(&adopted);
        let unplaced: Vec<&Span> = sdk_spans
            .filter(|s| !s.parent_span_id.is_empty() && !is_transaction(s, false))
            .filter(|s| !placed.contains(&(s.trace_id.as_slice(), s.span_id.as_slice())))
            .collect();
        let unplaced_ids: std::collections::HashSet<(&[u8], &[u8])> = unplaced
            .iter()
            .map(|s| (s.trace_id.as_slice(), s.span_id.as_slice()))
            .collect();
        for span in unplaced {
            // Only the top of an unplaced subtree looks further.
            if unplaced_ids.contains(&(span.trace_id.as_slice(), span.parent_span_id.as_slice())) {
                continue;
            }
            match memory.transaction_of_parent(span) {
                Some((series, minute)) => {
                    let mut next = vec![span];
                    let mut walked = 0;
                    while let Some(segment) = next.pop() {
                        if walked >= MAX_SEGMENT_SPANS || is_transaction(segment, false) {
                            continue;
                        }
                        walked += 1;
                        let nested = children(segment);
                        count_segment(&mut counters, (&series, minute), segment, &nested, limits);
                        memory.place(segment, &series, minute, now);
                        next.extend(nested);
                    }
                }
                None => {
                    let mut next = vec![span];
                    while let Some(waiting) = next.pop() {
                        memory.wait(waiting, now);
                        next.extend(children(waiting));
                    }
                }
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
        traces.sort_by(|a, b| b.0.duration.total_cmp(&a.0.duration));
        for (trace, trimmed) in traces.into_iter().take(KEPT_PER_REQUEST) {
            out.trimmed.add(trimmed);
            out.batch.traces.push(trace);
        }
    }
    if out.trimmed != Trimmed::default() {
        let Trimmed { spans, attributes } = out.trimmed;
        out.note(
            "trace",
            format!(
                "kept traces left out {spans} spans and cut or left out {attributes} attribute values \
                 (max_trace_spans {}, max_trace_bytes {}, max_span_attribute_bytes {}); every span is still counted",
                limits.max_trace_spans, limits.max_trace_bytes, limits.max_span_attribute_bytes
            ),
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn span(id: u8, parent: u8, name: &str, kind: SpanKind, (start, end): (u64, u64)) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { Vec::new() } else { vec![parent; 8] },
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: NOW - 1_000_000_000 + start * 1_000_000,
            end_time_unix_nano: NOW - 1_000_000_000 + end * 1_000_000,
            attributes: match kind {
                SpanKind::Server => vec![kv("http.request.method", "GET"), kv("http.route", "/checkout")],
                SpanKind::Client => vec![kv("url.full", "http://partner/pay")],
                _ => Vec::new(),
            },
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "shop")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn calls(converted: &[Converted]) -> Vec<(String, String, f64)> {
        let mut calls: Vec<(String, String, f64)> = converted
            .iter()
            .flat_map(|c| &c.batch.counters)
            .filter(|c| c.name == "kuroko.segment.calls")
            .map(|c| (c.key.transaction.clone(), c.labels.clone(), c.value))
            .collect();
        calls.sort_by(|a, b| a.1.cmp(&b.1));
        calls
    }

    /// The batch span processor exports a request's first children (which
    /// end first) before its SERVER span, and work that outlives the
    /// response after it: every one is still a segment of the transaction.
    #[test]
    fn spans_exported_before_and_after_their_transaction_are_its_segments() {
        let mut memory = SpanMemory::default();
        let limits = Limits::default();
        let early = request(vec![
            span(3, 2, "GET partner", SpanKind::Client, (10, 40)),
            span(2, 1, "router - /checkout", SpanKind::Internal, (5, 45)),
        ]);
        let root = request(vec![span(1, 0, "GET /checkout", SpanKind::Server, (0, 50))]);
        let late = request(vec![span(4, 1, "audit", SpanKind::Internal, (48, 80))]);
        let converted: Vec<Converted> = [early, root, late]
            .iter()
            .map(|r| convert(r, &limits, NOW, &mut memory))
            .collect();
        assert_eq!(
            calls(&converted),
            [
                (
                    "GET /checkout".to_owned(),
                    "kuroko.segment.kind=code,kuroko.segment.name=audit".to_owned(),
                    1.0
                ),
                (
                    "GET /checkout".to_owned(),
                    "kuroko.segment.kind=code,kuroko.segment.name=router - /checkout".to_owned(),
                    1.0
                ),
                (
                    "GET /checkout".to_owned(),
                    "kuroko.segment.kind=external,kuroko.segment.name=GET partner".to_owned(),
                    1.0
                ),
            ]
        );
        // The router's exclusive time excludes the call it holds: 40 − 30 ms.
        let exclusive: f64 = converted
            .iter()
            .flat_map(|c| &c.batch.counters)
            .filter(|c| c.name == "kuroko.segment.exclusive_duration" && c.labels.contains("router"))
            .map(|c| c.value)
            .sum();
        assert!((exclusive - 0.010).abs() < 1e-9, "{exclusive}");
        assert_eq!(memory.waiting_spans, 0, "nothing left waiting");
    }
}
