//! Where a transaction's time goes: per segment (database, external, code)
//! its calls, its time and its share of the transaction's time, and the
//! slowest kept traces with their segments.
//!
//! Segment time is the *exclusive* duration (time in the segment less nested
//! segments), so shares add up without double counting; what no segment
//! accounts for is the transaction's own time (`other_seconds`). Shares are
//! of the time of the runs the segment counters count: for Kuroko's agent,
//! every run (the sum of the duration histograms); for an SDK's spans, the
//! traced runs (`kuroko.traced.duration`), since spans may be sampled while
//! its duration metric counts every run.

use std::collections::BTreeMap;

use super::{Analysis, AnalysisError, Scope};
use crate::owners::Owners;
use crate::store::{SeriesKey, Store, TracePoint};

use super::endpoints::label;
use crate::ingest::traces::{TRACED_DURATION, TRACED_RUNS};

/// Calls of a segment: labels `kuroko.segment.kind` and `kuroko.segment.name`.
pub(crate) const SEGMENT_CALLS: &str = "kuroko.segment.calls";
/// Time in a segment, nested segments included.
pub(crate) const SEGMENT_DURATION: &str = "kuroko.segment.duration";
/// Time in a segment less nested segments.
pub(crate) const SEGMENT_EXCLUSIVE: &str = "kuroko.segment.exclusive_duration";

/// One segment of the transaction over the window. Durations in seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SegmentRow {
    /// `database`, `external` or `code`.
    pub kind: String,
    /// The query, call or function.
    pub name: String,
    /// Calls in the window.
    pub calls: f64,
    /// Calls per run of the transaction.
    pub calls_per_run: f64,
    /// Exclusive time in the window.
    pub total_seconds: f64,
    /// Time including nested segments.
    pub inclusive_seconds: f64,
    /// `total_seconds` over the transaction's time, 0 to 1.
    pub share: f64,
    /// Exclusive time per call; `None` without calls.
    pub seconds_per_call: Option<f64>,
}

/// The segments of one kind together.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KindRow {
    /// `database`, `external` or `code`.
    pub kind: String,
    /// Calls in the window.
    pub calls: f64,
    /// Exclusive time in the window.
    pub total_seconds: f64,
    /// Share of the transaction's time, 0 to 1.
    pub share: f64,
}

/// One segment call in a kept trace.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceSegment {
    /// `database`, `external` or `code` (or the span's kind).
    pub kind: String,
    /// The span's name.
    pub name: String,
    /// Start, seconds after the run started.
    pub offset: f64,
    /// Duration.
    pub duration: f64,
}

/// One kept slow run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceSummary {
    /// Trace id, hex.
    pub trace_id: String,
    /// Where it ran.
    pub host: String,
    /// Start, unix nanoseconds.
    pub start: u64,
    /// Duration of the run.
    pub duration: f64,
    /// Its segment calls in start order; empty when the spans are unreadable.
    pub segments: Vec<TraceSegment>,
}

/// Where one transaction's time goes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Breakdown {
    /// What was asked about (service and transaction set).
    pub scope: Scope,
    /// The service.
    pub service: String,
    /// The transaction.
    pub transaction: String,
    /// Its feature.
    pub feature: Option<String>,
    /// Runs in the window.
    pub runs: u64,
    /// Time in all runs.
    pub total_seconds: f64,
    /// Mean run.
    pub mean: f64,
    /// Per kind, most time first.
    pub kinds: Vec<KindRow>,
    /// Per segment, most time first.
    pub segments: Vec<SegmentRow>,
    /// Time in no segment: the transaction's own code.
    pub other_seconds: f64,
    /// `other_seconds` over the time of the runs the segments cover
    /// (`total_seconds`, or the traced runs' time for an SDK's spans).
    pub other_share: f64,
    /// The slowest kept traces, slowest first.
    pub traces: Vec<TraceSummary>,
    /// The durations came from explicit buckets.
    pub estimated: bool,
}

/// A kept trace with its spans read: the root first, then its segments.
pub(crate) fn summarize(trace: TracePoint) -> TraceSummary {
    let spans = trace.kept_spans();
    let root_start = spans.first().map_or(trace.start, |root| root.start);
    let mut segments: Vec<TraceSegment> = spans
        .into_iter()
        .skip(1)
        .map(|span| TraceSegment {
            kind: span.kind,
            name: span.name,
            offset: span.start.saturating_sub(root_start) as f64 / 1e9,
            duration: span.duration_ns as f64 / 1e9,
        })
        .collect();
    segments.sort_by(|a, b| a.offset.total_cmp(&b.offset));
    TraceSummary {
        trace_id: trace.trace_id,
        host: trace.key.host,
        start: trace.start,
        duration: trace.duration,
        segments,
    }
}

/// Sums of one segment counter per (kind, name) over the series in scope.
fn segment_sums(
    store: &dyn Store,
    scope: &Scope,
    owners: &Owners,
    name: &str,
) -> Result<BTreeMap<(String, String), f64>, AnalysisError> {
    let mut sums = BTreeMap::new();
    for (key, labels, value) in store.counters(&scope.transactions_filter(owners), name, scope.from, scope.to)? {
        if !scope.matches(&key, owners) {
            continue;
        }
        let kind = label(&labels, "kuroko.segment.kind").unwrap_or("code");
        let segment = label(&labels, "kuroko.segment.name").unwrap_or("");
        *sums.entry((kind.to_owned(), segment.to_owned())).or_default() += value;
    }
    Ok(sums)
}

impl Analysis<'_> {
    /// Where `transaction` of `service` spends its time within `scope` (its
    /// own service and transaction filters are replaced), with its `traces`
    /// slowest kept traces.
    pub fn breakdown(
        &self,
        scope: &Scope,
        service: &str,
        transaction: &str,
        traces: usize,
    ) -> Result<Breakdown, AnalysisError> {
        let scope = Scope {
            service: Some(service.to_owned()),
            transaction: Some(transaction.to_owned()),
            ..scope.clone()
        };
        let filter = scope.transactions_filter(self.owners);
        let mut runs = 0;
        let mut total = 0.0;
        let mut estimated = false;
        let mut tagged: Option<SeriesKey> = None;
        for (key, histogram) in self.store.histograms(&filter, scope.from, scope.to)? {
            if scope.matches(&key, self.owners) {
                runs += histogram.count;
                total += histogram.sum;
                estimated |= histogram.estimated;
                if tagged.is_none() || !key.feature.is_empty() {
                    tagged = Some(key);
                }
            }
        }
        let feature = tagged.and_then(|key| {
            let tag = Some(key.feature.as_str()).filter(|f| !f.is_empty());
            self.owners.feature_of(service, transaction, tag).map(str::to_owned)
        });
        // Segments from an SDK's spans cover the traced runs only (spans may
        // be sampled): their shares are of the traced runs' time.
        let traced = |name: &str| -> Result<f64, AnalysisError> {
            let rows = self.store.counters(&filter, name, scope.from, scope.to)?;
            Ok(rows
                .into_iter()
                .filter(|(key, _, _)| scope.matches(key, self.owners))
                .map(|(_, _, value)| value)
                .sum())
        };
        let (traced_runs, traced_seconds) = (traced(TRACED_RUNS)?, traced(TRACED_DURATION)?);
        let (denominator, per_run) = if traced_seconds > 0.0 {
            (traced_seconds, traced_runs)
        } else {
            (total, runs as f64)
        };
        let share = |seconds: f64| if denominator > 0.0 { seconds / denominator } else { 0.0 };
        let calls = segment_sums(self.store, &scope, self.owners, SEGMENT_CALLS)?;
        let inclusive = segment_sums(self.store, &scope, self.owners, SEGMENT_DURATION)?;
        let exclusive = segment_sums(self.store, &scope, self.owners, SEGMENT_EXCLUSIVE)?;
        let names: std::collections::BTreeSet<&(String, String)> =
            calls.keys().chain(inclusive.keys()).chain(exclusive.keys()).collect();
        let mut segments: Vec<SegmentRow> = names
            .into_iter()
            .map(|id| {
                let calls = calls.get(id).copied().unwrap_or(0.0);
                // Without exclusive time (an SDK that sends only durations), the inclusive.
                let seconds = exclusive.get(id).or(inclusive.get(id)).copied().unwrap_or(0.0);
                SegmentRow {
                    kind: id.0.clone(),
                    name: id.1.clone(),
                    calls,
                    calls_per_run: if per_run > 0.0 { calls / per_run } else { 0.0 },
                    total_seconds: seconds,
                    inclusive_seconds: inclusive.get(id).copied().unwrap_or(seconds),
                    share: share(seconds),
                    seconds_per_call: (calls > 0.0).then(|| seconds / calls),
                }
            })
            .collect();
        segments.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        let mut kinds: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for segment in &segments {
            let kind = kinds.entry(&segment.kind).or_default();
            kind.0 += segment.calls;
            kind.1 += segment.total_seconds;
        }
        let mut kinds: Vec<KindRow> = kinds
            .into_iter()
            .map(|(kind, (calls, seconds))| KindRow {
                kind: kind.to_owned(),
                calls,
                total_seconds: seconds,
                share: share(seconds),
            })
            .collect();
        kinds.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        let in_segments: f64 = segments.iter().map(|s| s.total_seconds).sum();
        let other_seconds = (denominator - in_segments).max(0.0);
        let kept = self.store.slowest_traces(&filter, scope.from, scope.to, traces)?;
        Ok(Breakdown {
            service: service.to_owned(),
            transaction: transaction.to_owned(),
            feature,
            runs,
            total_seconds: total,
            mean: if runs > 0 { total / runs as f64 } else { 0.0 },
            kinds,
            segments,
            other_seconds,
            other_share: share(other_seconds),
            traces: kept
                .into_iter()
                .filter(|t| scope.matches(&t.key, self.owners))
                .map(summarize)
                .collect(),
            estimated,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_trace_lists_its_segments_in_order_and_survives_bad_json() {
        let key = SeriesKey {
            service: "shop".into(),
            host: "h1".into(),
            transaction: "GET /cards/{id}".into(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        };
        let spans = r#"[{"name":"GET /cards/{id}","kind":"web","start":1000000000,"duration_ns":500000000},
            {"name":"render","kind":"code","start":1300000000,"duration_ns":100000000},
            {"name":"SELECT cards","kind":"database","start":1100000000,"duration_ns":200000000}]"#;
        let trace = TracePoint {
            key: key.clone(),
            trace_id: "ab".into(),
            start: 1_000_000_000,
            duration: 0.5,
            spans: spans.into(),
        };
        let summary = summarize(trace.clone());
        let names: Vec<(&str, f64, f64)> = summary
            .segments
            .iter()
            .map(|s| (s.name.as_str(), s.offset, s.duration))
            .collect();
        assert_eq!(names, [("SELECT cards", 0.1, 0.2), ("render", 0.3, 0.1)]);
        assert_eq!(summary.segments[0].kind, "database");
        let broken = summarize(TracePoint {
            spans: "[{".into(),
            ..trace
        });
        assert!(broken.segments.is_empty());
        assert_eq!((broken.duration, broken.host.as_str()), (0.5, "h1"));
    }
}
