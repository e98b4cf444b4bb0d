//! Exceptions, from log records and from span events, and what ties them to
//! their transaction.
//!
//! Most instrumentations record an exception as a span event named
//! `exception` (`recordException`), with `exception.type`,
//! `exception.message` and `exception.stacktrace`; [`add`] turns each into
//! an error point of its transaction: the `SERVER` or `CONSUMER` span that is
//! the event's span or its nearest ancestor among the request's spans of the
//! same resource (any instrumentation scope), else the span's own
//! transaction attributes, else [`NO_TRANSACTION`] with its trace id, so that
//! the transaction span, arriving in a later request, ties it (see
//! `store::links`). A span that ended with status ERROR is not an error of
//! its own: its run's outcome is counted by `traces.rs`, the error group comes
//! from the exception. An exception that escapes several spans is recorded
//! on each (Python's `start_as_current_span` does so), each time with a
//! longer traceback: it counts once, as the innermost span recorded it.
//!
//! [`add`] also writes a [`TraceLink`] per transaction span, which ties the
//! errors of its trace that came without a transaction: log records, which
//! SDKs export before the spans of their request (`logs.rs`).
//!
//! Both kinds keep the stack trace, cut to `max_stacktrace_bytes`
//! ([`stacktrace`]), and never reject an error for the length of its stack
//! trace or message ([`UNLIMITED`]): SDKs drop what a partial success
//! rejects, so the error would vanish.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{span::Event, span::SpanKind, status::StatusCode, Span};

use super::otlp::{check, cut, get, key, minute, resource_identity, text, transaction, Attribute, Converted, Limits};
use crate::analysis::fingerprint::MAX_INPUT_BYTES;
use crate::analysis::stack::innermost_in_app;
use crate::store::{ErrorPoint, SeriesKey, TraceLink, NO_TRANSACTION};

/// Attributes of an exception that the length limit does not apply to: they
/// are cut to limits of their own.
pub(crate) const UNLIMITED: [&str; 2] = ["exception.stacktrace", "exception.message"];

const NO_ATTRIBUTES: &[KeyValue] = &[];

/// Recordings of one exception (same trace, type and message) compared to
/// find those of the same exception on enclosing spans; past this many, all
/// count (a bound on hostile requests).
const MAX_RECORDINGS: usize = 32;

/// One exception as its recordings name it: trace, type and message.
type Recorded<'a> = (&'a [u8], Option<Cow<'a, str>>, Option<Cow<'a, str>>);

/// Ancestors looked through for a span's transaction (a bound on hostile
/// parent chains, cycles included).
const MAX_DEPTH: usize = 128;

/// `exception.stacktrace` among `attributes`, at most
/// `limits.max_stacktrace_bytes` ([`cut_middle`]); empty when none.
pub(crate) fn stacktrace<A: Attribute>(attributes: &[A], limits: &Limits) -> String {
    get(attributes, "exception.stacktrace")
        .and_then(Attribute::text)
        .map(|stack| cut_middle(&stack, limits.max_stacktrace_bytes).into_owned())
        .unwrap_or_default()
}

/// `text` at most `max` bytes: whole when it fits, else its first and last
/// lines with a line saying how much was cut between them. Both ends matter:
/// Java prints the innermost call first, Python last.
pub(crate) fn cut_middle(text: &str, max: usize) -> Cow<'_, str> {
    /// Room for the line that says what was cut.
    const MARKER: usize = 48;
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    if max < 4 * MARKER {
        return Cow::Borrowed(cut(text, max));
    }
    let budget = max - MARKER;
    // The head ends, and the tail starts, at a line's end where there is one.
    let head = cut(text, budget / 2);
    let head = head.rfind('\n').map_or(head, |end| &head[..end]);
    let mut start = text.len() - (budget - head.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    let tail = tail.find('\n').map_or(tail, |at| &tail[at + 1..]);
    let mut out = String::with_capacity(max);
    out.push_str(head);
    let _ = write!(out, "\n[… {} bytes cut …]\n", text.len() - head.len() - tail.len());
    out.push_str(tail);
    Cow::Owned(out)
}

/// `code.file.path:code.line.number` (or the older `code.filepath` and
/// `code.lineno`) among `attributes`; else, when the stack trace has a frame
/// of the service's own code, the innermost such frame's `file:line`; else
/// empty.
pub(crate) fn location<A: Attribute>(attributes: &[A], stacktrace: &str) -> String {
    let file = get(attributes, "code.file.path")
        .or_else(|| get(attributes, "code.filepath"))
        .and_then(text);
    let line = get(attributes, "code.line.number")
        .or_else(|| get(attributes, "code.lineno"))
        .and_then(text);
    match (file, line) {
        (Some(file), Some(line)) => format!("{file}:{line}"),
        (Some(file), None) => file,
        _ => innermost_in_app(stacktrace).unwrap_or_default(),
    }
}

/// A trace or span id as hex: `Some` when it has the OTLP length (16 or 8
/// bytes) and is not all zeros (which means none).
pub(crate) fn id_hex(bytes: &[u8], length: usize) -> Option<String> {
    (bytes.len() == length && bytes.iter().any(|&b| b != 0)).then(|| {
        bytes.iter().fold(String::with_capacity(length * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    })
}

/// The error point of an exception, its fields read from `attributes`;
/// `None` when it has neither `exception.type` nor `exception.message`.
fn exception<A: Attribute>(attributes: &[A], series: SeriesKey, time: u64, limits: &Limits) -> Option<ErrorPoint> {
    let error_type = get(attributes, "exception.type").and_then(text);
    let message = get(attributes, "exception.message").and_then(text);
    if error_type.is_none() && message.is_none() {
        return None;
    }
    let stacktrace = stacktrace(attributes, limits);
    Some(ErrorPoint {
        key: series,
        minute: minute(time),
        error_type: error_type.map_or_else(|| "error".to_owned(), |t| cut(&t, limits.max_value_bytes).to_owned()),
        message: message.map_or_else(String::new, |m| cut(&m, limits.max_value_bytes.max(256) * 4).to_owned()),
        location: cut(&location(attributes, &stacktrace), limits.max_value_bytes).to_owned(),
        count: 1,
        last_seen: time,
        fingerprint: get(attributes, "kuroko.error.fingerprint")
            .and_then(text)
            .map(|f| cut(f.trim(), MAX_INPUT_BYTES.min(limits.max_value_bytes)).to_owned())
            .unwrap_or_default(),
        stacktrace,
        trace_id: String::new(),
    })
}

/// A span as this module reads it: from Kuroko's agent or not.
#[derive(Clone, Copy)]
struct Read<'a> {
    span: &'a Span,
    ours: bool,
}

impl Read<'_> {
    /// As `traces.rs` reads it: `SERVER` and `CONSUMER` spans, and the agent's roots.
    fn is_transaction(&self) -> bool {
        self.span.kind == SpanKind::Server as i32
            || self.span.kind == SpanKind::Consumer as i32
            || (self.ours && self.span.parent_span_id.is_empty())
    }

    /// Whether `traces.rs` keeps it as a transaction (what it rejects names
    /// no transaction here either).
    fn accepted(&self, limits: &Limits, now_unix_nano: u64) -> bool {
        let span = self.span;
        span.end_time_unix_nano >= span.start_time_unix_nano
            && span.name.len() <= limits.max_value_bytes
            && check(&span.attributes, span.end_time_unix_nano, now_unix_nano, limits).is_ok()
    }

    /// Whether its request failed as far as this span tells.
    fn failed(&self) -> bool {
        let status = get(&self.span.attributes, "http.response.status_code")
            .and_then(text)
            .and_then(|s| s.parse::<u16>().ok());
        status.is_some_and(|code| code >= 500)
            || self
                .span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32)
            || self.span.events.iter().any(is_exception)
    }
}

fn is_exception(event: &Event) -> bool {
    event.name == "exception"
}

/// Spans of one request by (trace id, span id).
type SpansById<'a> = HashMap<(&'a [u8], &'a [u8]), Read<'a>>;

/// The exception `event` records on `span`.
fn recorded<'a>(span: &'a Span, event: &'a Event) -> Recorded<'a> {
    let what = |key: &str| get(&event.attributes, key).and_then(Attribute::text);
    (
        span.trace_id.as_slice(),
        what("exception.type"),
        what("exception.message"),
    )
}

/// Whether `ancestor` encloses `of` among the request's spans.
fn is_ancestor(ancestor: &Span, of: &Span, by_id: &SpansById<'_>) -> bool {
    let mut at = by_id.get(&(of.trace_id.as_slice(), of.parent_span_id.as_slice()));
    for _ in 0..MAX_DEPTH {
        let Some(current) = at else { return false };
        if current.span.span_id == ancestor.span_id {
            return true;
        }
        at = by_id.get(&(current.span.trace_id.as_slice(), current.span.parent_span_id.as_slice()));
    }
    false
}

/// The recordings to leave out: each exception recorded on a span that
/// encloses another recording of it, by (exception, span id).
fn enclosing_recordings<'a>(spans: &[Read<'a>], by_id: &SpansById<'a>) -> HashSet<(Recorded<'a>, &'a [u8])> {
    let mut recordings: HashMap<Recorded<'a>, Vec<&'a Span>> = HashMap::new();
    for read in spans {
        for event in read.span.events.iter().filter(|e| is_exception(e)) {
            recordings
                .entry(recorded(read.span, event))
                .or_default()
                .push(read.span);
        }
    }
    let mut out = HashSet::new();
    for (id, spans) in recordings {
        if !(2..=MAX_RECORDINGS).contains(&spans.len()) {
            continue;
        }
        for outer in spans
            .iter()
            .filter(|s| spans.iter().any(|inner| is_ancestor(s, inner, by_id)))
        {
            out.insert((id.clone(), outer.span_id.as_slice()));
        }
    }
    out
}

/// Adds the error points of `request`'s exception span events, and the
/// trace links of its transaction spans, to `out` (see the [module
/// documentation](self)).
pub(crate) fn add(request: &ExportTraceServiceRequest, limits: &Limits, now_unix_nano: u64, out: &mut Converted) {
    for resource_spans in &request.resource_spans {
        // A resource traces.rs refused (and counted) is skipped here.
        let Ok(sender) = resource_identity(resource_spans.resource.as_ref(), limits) else {
            continue;
        };
        let spans: Vec<Read<'_>> = resource_spans
            .scope_spans
            .iter()
            .flat_map(|scope| {
                let ours = scope.scope.as_ref().is_some_and(|s| s.name == "kuroko-agent");
                scope.spans.iter().map(move |span| Read { span, ours })
            })
            .collect();
        let mut by_id: SpansById<'_> = HashMap::with_capacity(spans.len());
        let mut failed_traces: HashSet<&[u8]> = HashSet::new();
        for read in &spans {
            by_id.insert((&read.span.trace_id, &read.span.span_id), *read);
            if read.failed() {
                failed_traces.insert(&read.span.trace_id);
            }
        }
        // The transaction a span belongs to: itself or its nearest ancestor.
        let transaction_of = |read: Read<'_>| -> Option<SeriesKey> {
            let mut at = Some(read);
            for _ in 0..MAX_DEPTH {
                let current = at?;
                if current.is_transaction() {
                    return current
                        .accepted(limits, now_unix_nano)
                        .then(|| super::traces::series_of(&sender, current.span));
                }
                at = by_id
                    .get(&(current.span.trace_id.as_slice(), current.span.parent_span_id.as_slice()))
                    .copied();
            }
            None
        };
        let enclosing = enclosing_recordings(&spans, &by_id);
        for read in &spans {
            let span = read.span;
            let trace_id = id_hex(&span.trace_id, 16);
            if read.is_transaction() && !read.ours && read.accepted(limits, now_unix_nano) {
                if let (Some(trace_id), Some(span_id)) = (trace_id.clone(), id_hex(&span.span_id, 8)) {
                    out.batch.links.push(TraceLink {
                        key: super::traces::series_of(&sender, span),
                        trace_id,
                        span_id,
                        start: span.start_time_unix_nano,
                        end: span.end_time_unix_nano,
                        failed: failed_traces.contains(span.trace_id.as_slice()),
                    });
                }
            }
            for event in span.events.iter().filter(|e| is_exception(e)) {
                if enclosing.contains(&(recorded(span, event), span.span_id.as_slice())) {
                    continue;
                }
                let time = if event.time_unix_nano > 0 {
                    event.time_unix_nano
                } else {
                    span.end_time_unix_nano
                };
                if let Err(refusal) = check(NO_ATTRIBUTES, time, now_unix_nano, limits) {
                    out.refuse("exception event", refusal);
                    continue;
                }
                let own = || {
                    transaction(false, &span.attributes).map(|(name, kind)| key(&sender, name, kind, &span.attributes))
                };
                let (series, waits) = match transaction_of(*read).or_else(own) {
                    Some(series) => (series, None),
                    None => {
                        let untied = key(&sender, NO_TRANSACTION.to_owned(), "job", NO_ATTRIBUTES);
                        (untied, trace_id.clone())
                    }
                };
                if let Some(mut point) = exception(&event.attributes, series, time, limits) {
                    point.trace_id = waits.unwrap_or_default();
                    out.batch.errors.push(point);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    const NOW: u64 = 1_800_000_000_000_000_000;
    const TRACE: [u8; 16] = [0x4b; 16];

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn span(id: u8, parent: Option<u8>, kind: SpanKind, name: &str, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.to_owned(),
            kind: kind as i32,
            start_time_unix_nano: NOW - 2_000_000_000,
            end_time_unix_nano: NOW - 1_000_000_000,
            attributes,
            ..Span::default()
        }
    }

    fn thrown(error_type: &str, message: &str, stacktrace: &str) -> Event {
        Event {
            time_unix_nano: NOW - 1_500_000_000,
            name: "exception".to_owned(),
            attributes: vec![
                kv("exception.type", error_type),
                kv("exception.message", message),
                kv("exception.stacktrace", stacktrace),
            ],
            ..Event::default()
        }
    }

    /// `scopes` of spans from one resource, `service.name=shop`.
    fn request(scopes: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "shop"), kv("host.name", "h1")],
                    ..Resource::default()
                }),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: scope.to_owned(),
                            ..InstrumentationScope::default()
                        }),
                        spans,
                        ..ScopeSpans::default()
                    })
                    .collect(),
                ..ResourceSpans::default()
            }],
        }
    }

    fn route(method: &str, route: &str) -> Vec<KeyValue> {
        vec![kv("http.request.method", method), kv("http.route", route)]
    }

    fn converted(request: &ExportTraceServiceRequest) -> Converted {
        super::super::traces::convert(request, &Limits::default(), NOW, &mut Default::default())
    }

    /// `recordException` on a child span of another instrumentation scope,
    /// in a request whose SERVER span failed: one error, of the server's
    /// transaction; the failed run is an outcome, not a second error.
    #[test]
    fn an_exception_event_is_an_error_of_its_requests_transaction() {
        let mut server = span(
            1,
            None,
            SpanKind::Server,
            "GET /orders/{id}",
            route("GET", "/orders/{id}"),
        );
        server.status = Some(Status {
            code: StatusCode::Error as i32,
            ..Status::default()
        });
        let mut inner = span(2, Some(1), SpanKind::Internal, "load", vec![]);
        let stack =
            "Traceback (most recent call last):\n  File \"/app/shop/orders.py\", line 9, in load\nKeyError: 'id'";
        inner.events = vec![
            thrown("KeyError", "'id'", stack),
            Event {
                name: "log".into(),
                ..Event::default()
            },
        ];
        let out = converted(&request(vec![("flask", vec![server]), ("shop", vec![inner])]));
        assert_eq!(out.rejected, 0, "{:?}", out.reasons);
        assert_eq!(out.batch.errors.len(), 1);
        let error = &out.batch.errors[0];
        assert_eq!(
            (
                error.key.transaction.as_str(),
                error.key.kind.as_str(),
                error.key.host.as_str()
            ),
            ("GET /orders/{id}", "web", "h1")
        );
        assert_eq!(
            (error.error_type.as_str(), error.message.as_str()),
            ("KeyError", "'id'")
        );
        assert_eq!(error.stacktrace, stack);
        assert_eq!(error.location, "/app/shop/orders.py:9");
        assert_eq!((error.trace_id.as_str(), error.last_seen), ("", NOW - 1_500_000_000));
        let outcomes: Vec<&str> = out
            .batch
            .counters
            .iter()
            .filter(|c| c.name == "kuroko.transaction.outcomes")
            .map(|c| c.labels.as_str())
            .collect();
        assert_eq!(outcomes, ["kuroko.outcome=error"]);
        // The server span's link: its request failed.
        assert_eq!(out.batch.links.len(), 1);
        assert!(out.batch.links[0].failed);
        assert_eq!(out.batch.links[0].key, error.key);
    }

    /// Without its transaction span in the request (exported later), an
    /// exception takes the span's own transaction attributes, else waits for
    /// its trace's transaction.
    #[test]
    fn an_exception_without_its_transaction_span_waits_for_it() {
        let mut routed = span(2, Some(1), SpanKind::Internal, "handler", route("POST", "/pay"));
        routed.events = vec![thrown("ValueError", "bad amount", "")];
        let mut bare = span(3, Some(1), SpanKind::Client, "SELECT", vec![]);
        bare.events = vec![thrown("OperationalError", "timeout", "")];
        let out = converted(&request(vec![("shop", vec![routed, bare])]));
        let errors: Vec<(&str, &str, &str)> = out
            .batch
            .errors
            .iter()
            .map(|e| (e.error_type.as_str(), e.key.transaction.as_str(), e.trace_id.as_str()))
            .collect();
        assert_eq!(
            errors,
            [
                ("ValueError", "POST /pay", ""),
                ("OperationalError", NO_TRANSACTION, "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b"),
            ]
        );
        assert!(out.batch.links.is_empty(), "no transaction span, no link");
    }

    /// An exception that escapes the spans around it is recorded on each
    /// (Python's `start_as_current_span`), with a longer traceback each
    /// time: one error, as the innermost span saw it. Two attempts that
    /// failed alike in spans of their own are two.
    #[test]
    fn an_exception_recorded_by_each_span_it_escapes_counts_once() {
        let inner_stack = "Traceback (most recent call last):\n  File \"/app/db.py\", line 3, in load\nKeyError: 'id'";
        let outer_stack = "Traceback (most recent call last):\n  File \"/app/views.py\", line 9, in get\n  \
                           File \"/app/db.py\", line 3, in load\nKeyError: 'id'";
        let mut server = span(1, None, SpanKind::Server, "GET /a", route("GET", "/a"));
        server.events = vec![thrown("KeyError", "'id'", outer_stack)];
        let mut handler = span(2, Some(1), SpanKind::Internal, "handler", vec![]);
        handler.events = vec![thrown("KeyError", "'id'", outer_stack)];
        let mut load = span(3, Some(2), SpanKind::Internal, "load", vec![]);
        load.events = vec![thrown("KeyError", "'id'", inner_stack)];
        let out = converted(&request(vec![("flask", vec![server, handler]), ("db", vec![load])]));
        let errors: Vec<&str> = out.batch.errors.iter().map(|e| e.stacktrace.as_str()).collect();
        assert_eq!(errors, [inner_stack]);

        let mut server = span(1, None, SpanKind::Server, "GET /a", route("GET", "/a"));
        server.events = vec![thrown("TimeoutError", "upstream", "")];
        let mut first = span(2, Some(1), SpanKind::Client, "GET upstream", vec![]);
        first.events = vec![thrown("TimeoutError", "upstream", "")];
        let mut second = span(3, Some(1), SpanKind::Client, "GET upstream", vec![]);
        second.events = vec![thrown("TimeoutError", "upstream", "")];
        let out = converted(&request(vec![("flask", vec![server, first, second])]));
        assert_eq!(out.batch.errors.len(), 2);
    }

    #[test]
    fn links_name_each_transaction_span_and_whether_its_request_failed() {
        let ok = span(1, None, SpanKind::Server, "GET /a", route("GET", "/a"));
        let mut consumer = span(5, None, SpanKind::Consumer, "orders process", vec![]);
        consumer.trace_id = vec![0x11; 16];
        let mut zero = span(6, None, SpanKind::Server, "GET /z", route("GET", "/z"));
        zero.trace_id = vec![0; 16];
        let agent = span(
            7,
            None,
            SpanKind::Internal,
            "nightly",
            vec![kv("kuroko.transaction", "nightly")],
        );
        let out = converted(&request(vec![
            ("flask", vec![ok, consumer, zero]),
            ("kuroko-agent", vec![agent]),
        ]));
        let links: Vec<(&str, &str, &str, bool)> = out
            .batch
            .links
            .iter()
            .map(|l| {
                (
                    l.key.transaction.as_str(),
                    l.trace_id.as_str(),
                    l.span_id.as_str(),
                    l.failed,
                )
            })
            .collect();
        assert_eq!(
            links,
            [
                ("GET /a", "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b", "0101010101010101", false),
                (
                    "orders process",
                    "11111111111111111111111111111111",
                    "0505050505050505",
                    false
                ),
            ],
            "none for an invalid trace id or the agent's own spans"
        );
        let points = out.batch.histograms.len() + out.batch.counters.len() + out.batch.traces.len();
        assert_eq!(out.batch.len(), points, "links are not points");
    }

    #[test]
    fn a_long_stack_trace_keeps_both_ends_and_never_rejects() {
        let frames: String = (0..2_000)
            .map(|i| format!("  File \"/app/shop/f{i}.py\", line {i}, in f{i}\n"))
            .collect();
        let stack = format!("Traceback (most recent call last):\n{frames}KeyError: 'id'");
        let mut server = span(1, None, SpanKind::Server, "GET /a", route("GET", "/a"));
        server.events = vec![thrown("KeyError", &"x".repeat(100_000), &stack)];
        let out = converted(&request(vec![("flask", vec![server])]));
        assert_eq!(out.rejected, 0);
        let error = &out.batch.errors[0];
        assert!(error.stacktrace.len() <= Limits::default().max_stacktrace_bytes);
        assert!(error
            .stacktrace
            .starts_with("Traceback (most recent call last):\n  File \"/app/shop/f0.py\""));
        assert!(
            error.stacktrace.ends_with("in f1999\nKeyError: 'id'"),
            "{}",
            &error.stacktrace[15_000..]
        );
        assert!(error.stacktrace.contains(" bytes cut …]\n  File \""));
        assert_eq!(error.message.len(), 4_096);
    }

    #[test]
    fn cut_middle_cuts_at_lines_and_characters() {
        assert_eq!(cut_middle("short", 100), "short");
        let text = "€".repeat(1_000);
        let cut = cut_middle(&text, 301);
        assert!(cut.len() <= 301 && cut.starts_with('€') && cut.ends_with('€'), "{cut}");
        let lines = "line\n".repeat(1_000);
        let cut = cut_middle(&lines, 500);
        assert!(cut.len() <= 500);
        assert!(cut.starts_with("line\nline") && cut.contains("line\n[… ") && cut.contains(" cut …]\nline\n"));
        assert_eq!(cut_middle(&lines, 10), "line\nline\n");
        assert_eq!(cut_middle(&lines, 0), "");
    }
}
