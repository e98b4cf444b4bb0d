//! One request across services: every kept run of a trace id, joined on
//! one time line. Each service keeps its own slow runs (its agent or SDK
//! decides what is slow); when a request was slow in several, their runs
//! share the trace id that W3C trace context carried between them. A
//! callee's root span names its caller's span as parent (the outgoing
//! call that carried the `traceparent`), so each callee is placed right
//! under that span: service A's `GET quote-api`, then service B's
//! `GET /quote` with its own segments, then the rest of A.
//!
//! A span reported by two sources in one service (Kuroko's agent beside
//! `tracing-opentelemetry`, which share the span's ids) is one run.
//!
//! Times are each service's own clock: services on different machines may
//! be shifted by their clock skew (as in any tracing tool).

use std::collections::{HashMap, HashSet};

use super::breakdown::TraceSegment;
use super::error::AnalysisError;
use super::Analysis;
use crate::store::spans::KeptSpan;
use crate::store::TracePoint;

/// One request's kept runs across services.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JoinedTrace {
    /// Trace id, hex.
    pub trace_id: String,
    /// The earliest run's start, unix nanoseconds.
    pub start: u64,
    /// From the earliest start to the last end, seconds.
    pub duration: f64,
    /// The runs in call order: each callee right after the span of its
    /// caller that called it.
    pub runs: Vec<JoinedRun>,
}

/// One service's run of the request.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JoinedRun {
    /// The service.
    pub service: String,
    /// Its transaction.
    pub transaction: String,
    /// Where it ran.
    pub host: String,
    /// 0 for a run no kept run called; its caller's depth plus one.
    pub depth: usize,
    /// The caller's span that called it (`service: span`), when the
    /// caller's run is kept too.
    pub called_by: Option<String>,
    /// Start, seconds after the request's start.
    pub offset: f64,
    /// Duration, seconds.
    pub duration: f64,
    /// Its segments, offsets in seconds after the request's start.
    pub segments: Vec<TraceSegment>,
    /// Its segments' span ids, in the order of `segments`.
    #[serde(skip)]
    segment_ids: Vec<String>,
    #[serde(skip)]
    root_id: String,
    #[serde(skip)]
    parent: String,
    #[serde(skip)]
    start_ns: u64,
}

impl Analysis<'_> {
    /// Every kept run of `trace_id` that started in `from..to` (unix
    /// minutes), joined; `None` when no service kept a run of it.
    pub fn joined_trace(&self, trace_id: &str, from: i64, to: i64) -> Result<Option<JoinedTrace>, AnalysisError> {
        let points = self.store.traces_with_id(trace_id, from, to)?;
        Ok(join(trace_id, points))
    }
}

/// The runs of `points` on one time line, callees under their callers.
pub(crate) fn join(trace_id: &str, points: Vec<TracePoint>) -> Option<JoinedTrace> {
    let runs: Vec<(TracePoint, Vec<KeptSpan>)> = points
        .into_iter()
        .map(|point| {
            let spans = point.kept_spans();
            (point, spans)
        })
        .collect();
    let start = runs
        .iter()
        .map(|(point, spans)| spans.first().map_or(point.start, |root| root.start))
        .min()?;
    let seconds = |ns: u64| ns.saturating_sub(start) as f64 / 1e9;
    let mut joined: Vec<JoinedRun> = runs
        .into_iter()
        .map(|(point, spans)| {
            let root = spans.first().cloned().unwrap_or_default();
            let run_start = if root.start == 0 { point.start } else { root.start };
            let mut below: Vec<&KeptSpan> = spans.iter().skip(1).collect();
            below.sort_by_key(|span| span.start);
            JoinedRun {
                service: point.key.service,
                transaction: point.key.transaction,
                host: point.key.host,
                depth: 0,
                called_by: None,
                offset: seconds(run_start),
                duration: point.duration,
                segments: below
                    .iter()
                    .map(|span| TraceSegment {
                        kind: span.kind.clone(),
                        name: span.name.clone(),
                        offset: seconds(span.start),
                        duration: span.duration_ns as f64 / 1e9,
                    })
                    .collect(),
                segment_ids: below.iter().map(|span| span.span_id.clone()).collect(),
                root_id: root.span_id,
                parent: root.parent,
                start_ns: run_start,
            }
        })
        .collect();
    // One span reported twice (Kuroko's agent beside the OpenTelemetry SDK
    // in one service share the span's ids): one run, the one with more
    // segments.
    joined.sort_by(|a, b| {
        (&a.service, &a.root_id, std::cmp::Reverse(a.segments.len())).cmp(&(
            &b.service,
            &b.root_id,
            std::cmp::Reverse(b.segments.len()),
        ))
    });
    joined.dedup_by(|later, kept| {
        !later.root_id.is_empty() && later.root_id == kept.root_id && later.service == kept.service
    });
    joined.sort_by_key(|run| run.start_ns);

    // Which run holds each span id, and where in it.
    let mut holder: HashMap<&str, (usize, Option<usize>)> = HashMap::new();
    for (i, run) in joined.iter().enumerate() {
        if !run.root_id.is_empty() {
            holder.insert(&run.root_id, (i, None));
        }
        for (j, id) in run.segment_ids.iter().enumerate() {
            if !id.is_empty() {
                holder.insert(id, (i, Some(j)));
            }
        }
    }
    // Each run's caller: (run, segment) whose span is its root's parent.
    let mut callees: HashMap<(usize, Option<usize>), Vec<usize>> = HashMap::new();
    let mut called = vec![false; joined.len()];
    for (i, run) in joined.iter().enumerate() {
        if let Some(&(caller, segment)) = holder.get(run.parent.as_str()) {
            if caller != i {
                callees.entry((caller, segment)).or_default().push(i);
                called[i] = true;
            }
        }
    }
    let mut order = Vec::with_capacity(joined.len());
    let mut seen = HashSet::new();
    let roots: Vec<usize> = (0..joined.len()).filter(|&i| !called[i]).collect();
    for root in roots {
        place(root, 0, None, &joined, &callees, &mut seen, &mut order);
    }
    // Runs only reachable through a cycle (ids reused by a broken client).
    for i in 0..joined.len() {
        place(i, 0, None, &joined, &callees, &mut seen, &mut order);
    }
    let end = joined.iter().map(|run| run.offset + run.duration).fold(0.0, f64::max);
    let mut slots: Vec<Option<JoinedRun>> = joined.into_iter().map(Some).collect();
    let runs = order
        .into_iter()
        .filter_map(|(i, depth, called_by)| {
            let mut run = slots.get_mut(i)?.take()?;
            run.depth = depth;
            run.called_by = called_by;
            Some(run)
        })
        .collect();
    Some(JoinedTrace {
        trace_id: trace_id.to_owned(),
        start,
        duration: end,
        runs,
    })
}

/// Places run `i` at `depth`, then its callees after the spans that called
/// them (those called by its root first), depth first.
fn place(
    i: usize,
    depth: usize,
    called_by: Option<String>,
    runs: &[JoinedRun],
    callees: &HashMap<(usize, Option<usize>), Vec<usize>>,
    seen: &mut HashSet<usize>,
    order: &mut Vec<(usize, usize, Option<String>)>,
) {
    if !seen.insert(i) {
        return;
    }
    order.push((i, depth, called_by));
    let run = &runs[i];
    let by = |segment: Option<usize>| {
        let span = segment
            .and_then(|j| run.segments.get(j))
            .map_or(&run.transaction, |s| &s.name);
        format!("{}: {span}", run.service)
    };
    for segment in std::iter::once(None).chain((0..run.segments.len()).map(Some)) {
        for &callee in callees.get(&(i, segment)).into_iter().flatten() {
            place(callee, depth + 1, Some(by(segment)), runs, callees, seen, order);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeriesKey;

    fn point(service: &str, transaction: &str, start: u64, duration_ns: u64, spans: serde_json::Value) -> TracePoint {
        TracePoint {
            key: SeriesKey {
                service: service.into(),
                host: format!("{service}-1"),
                transaction: transaction.into(),
                feature: String::new(),
                kind: "web".into(),
                environment: String::new(),
            },
            trace_id: "t".into(),
            start,
            duration: duration_ns as f64 / 1e9,
            spans: spans.to_string(),
        }
    }

    #[test]
    fn a_callee_is_placed_under_the_span_that_called_it_on_one_time_line() {
        let ms = 1_000_000u64;
        let base = 1_700_000_000_000 * ms;
        let a = point(
            "checkout-api",
            "GET /checkout",
            base,
            200 * ms,
            serde_json::json!([
                {"name": "GET /checkout", "kind": "web", "span_id": "a0", "parent": "", "start": base, "duration_ns": 200 * ms},
                {"name": "SELECT cart", "kind": "database", "span_id": "a1", "parent": "a0", "start": base + 5 * ms, "duration_ns": 10 * ms},
                {"name": "GET quote-api", "kind": "external", "span_id": "a2", "parent": "a0", "start": base + 20 * ms, "duration_ns": 160 * ms},
            ]),
        );
        let b = point(
            "quote-api",
            "GET /quote",
            base + 22 * ms,
            150 * ms,
            serde_json::json!([
                {"name": "GET /quote", "kind": "web", "span_id": "b0", "parent": "a2", "start": base + 22 * ms, "duration_ns": 150 * ms},
                {"name": "SELECT price", "kind": "database", "span_id": "b1", "parent": "b0", "start": base + 30 * ms, "duration_ns": 100 * ms},
            ]),
        );
        // The store returns them earliest first; the join must not rely on it.
        let joined = join("t", vec![b, a]).expect("runs");
        let names: Vec<(&str, usize, Option<&str>)> = joined
            .runs
            .iter()
            .map(|r| (r.service.as_str(), r.depth, r.called_by.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("checkout-api", 0, None),
                ("quote-api", 1, Some("checkout-api: GET quote-api"))
            ]
        );
        let b = &joined.runs[1];
        assert!((b.offset - 0.022).abs() < 1e-9, "{b:?}");
        assert!((b.segments[0].offset - 0.030).abs() < 1e-9, "{b:?}");
        assert!((joined.duration - 0.2).abs() < 1e-9);
    }

    #[test]
    fn one_span_kept_by_the_agent_and_by_the_sdk_is_one_run() {
        let sdk = point(
            "a",
            "GET /x",
            100,
            50,
            serde_json::json!([{"name": "GET /x", "span_id": "s1", "start": 100, "duration_ns": 50}]),
        );
        let agent = point(
            "a",
            "GET /x",
            101,
            48,
            serde_json::json!([
                {"name": "GET /x", "span_id": "s1", "start": 101, "duration_ns": 48},
                {"name": "SELECT 1", "kind": "database", "span_id": "s2", "parent": "s1", "start": 110, "duration_ns": 5},
            ]),
        );
        let joined = join("t", vec![sdk, agent]).expect("runs");
        assert_eq!(joined.runs.len(), 1, "{joined:?}");
        assert_eq!(joined.runs[0].segments.len(), 1, "the one with the segments");
    }

    #[test]
    fn runs_without_a_kept_caller_stand_side_by_side_and_a_cycle_does_not_loop() {
        let one = point(
            "a",
            "x",
            10,
            5,
            serde_json::json!([{"name": "x", "span_id": "1", "parent": "2", "start": 10, "duration_ns": 5}]),
        );
        let two = point(
            "b",
            "y",
            12,
            5,
            serde_json::json!([{"name": "y", "span_id": "2", "parent": "1", "start": 12, "duration_ns": 5}]),
        );
        let three = point("c", "z", 11, 5, serde_json::json!("not spans"));
        let joined = join("t", vec![one, two, three]).expect("runs");
        assert_eq!(joined.runs.len(), 3);
        assert!(join("t", Vec::new()).is_none());
    }
}
