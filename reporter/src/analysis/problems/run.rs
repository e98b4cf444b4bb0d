//! A kept trace read for the detectors: the run's duration and its spans,
//! each with its statement normalised.
//!
//! Kept traces are stored as `ingest::traces` writes them (the root span
//! first, then its subtree: name, kind, span id, parent span id, start,
//! duration, attributes), both for Kuroko's agent and for any SDK's spans;
//! a span without a parent (traces kept before parents were, synthetic
//! ones) is read as a child of the root, as the agent's segments are.

use super::statement;
use crate::store::spans::KeptSpan;
use crate::store::TracePoint;

/// One span of a run, below its root.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunSpan {
    /// Span id (16 hex digits), empty when the trace has none.
    pub(crate) id: String,
    /// The parent's span id; the root's when unknown.
    pub(crate) parent: String,
    /// `database`, `external`, `messaging` or `code`.
    pub(crate) kind: String,
    /// The span's name.
    pub(crate) name: String,
    /// What it ran, normalised: the query (`db.query.text`, `db.statement`),
    /// the call (method and `url.full`), else the span's name.
    pub(crate) statement: String,
    /// Start, nanoseconds after the run's.
    pub(crate) offset: u64,
    /// Duration, nanoseconds.
    pub(crate) duration: u64,
}

impl RunSpan {
    /// End, nanoseconds after the run's start.
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.duration)
    }

    /// Whether the detectors of queries and calls look at it.
    pub(crate) fn is_call(&self) -> bool {
        self.kind == "database" || self.kind == "external"
    }
}

/// One kept run.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// Duration, nanoseconds.
    pub(crate) duration: u64,
    /// Its spans below the root, in start order.
    pub(crate) spans: Vec<RunSpan>,
    /// Whether some of its spans were left out (by the agent's segment
    /// limit or the reporter's kept-trace limits): time outside segments
    /// cannot be told then.
    pub(crate) incomplete: bool,
}

/// The statement a span ran, normalised.
fn statement_of(span: &KeptSpan) -> String {
    let query = ["db.query.text", "db.statement"]
        .iter()
        .find_map(|key| span.attribute(key))
        .filter(|q| !q.trim().is_empty());
    if let Some(query) = query {
        return statement::normalise(query);
    }
    if span.kind == "external" {
        let url = ["url.full", "http.url"].iter().find_map(|key| span.attribute(key));
        if let Some(url) = url {
            let method = ["http.request.method", "http.method"]
                .iter()
                .find_map(|key| span.attribute(key))
                .unwrap_or("");
            let target = statement::url(url);
            return if method.is_empty() {
                target
            } else {
                format!("{method} {target}")
            };
        }
    }
    statement::normalise(&span.name)
}

/// `trace`'s spans read; `None` when they are not readable.
pub(crate) fn read(trace: &TracePoint) -> Option<Run> {
    let spans: Vec<KeptSpan> = serde_json::from_str(&trace.spans).ok()?;
    let mut spans = spans.into_iter();
    let root = spans.next()?;
    let duration = if root.duration_ns > 0 {
        root.duration_ns
    } else {
        (trace.duration * 1e9) as u64
    };
    let dropped = root
        .attributes
        .get("kuroko.trace.dropped_segments")
        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .unwrap_or(0);
    let mut run = Run {
        duration,
        spans: Vec::new(),
        incomplete: dropped > 0,
    };
    for span in spans {
        run.spans.push(RunSpan {
            statement: statement_of(&span),
            parent: if span.parent.is_empty() {
                root.span_id.clone()
            } else {
                span.parent
            },
            id: span.span_id,
            kind: span.kind,
            name: span.name,
            offset: span.start.saturating_sub(root.start),
            duration: span.duration_ns,
        });
    }
    run.spans.sort_by_key(|s| (s.offset, s.end()));
    Some(run)
}
