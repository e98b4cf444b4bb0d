//! Evidence side by side: the slowest kept traces of the baseline and of the
//! current window, their segments aligned by name (kind and name), so the
//! segment that grew stands out beside the attribution's numbers
//! ([`super::attribution`]). A kept trace is a whole run (the agent keeps
//! the slowest; an SDK's spans are kept as they come), so its segments add
//! up to what one slow run did, where the attribution's parts are means over
//! every run.

use std::collections::BTreeMap;

use super::breakdown::{summarize, TraceSummary};
use super::{Analysis, AnalysisError, Scope};

/// The slowest kept traces read from each window.
pub const EVIDENCE_TRACES: usize = 3;

/// One kept trace, as it is named beside the aligned segments.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceRef {
    /// Trace id, hex.
    pub trace_id: String,
    /// Where it ran.
    pub host: String,
    /// Start, unix nanoseconds.
    pub start: u64,
    /// Duration of the run, seconds.
    pub duration: f64,
}

/// One segment across the traces of both windows.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlignedSegment {
    /// `database`, `external`, `code` (or the span's kind).
    pub kind: String,
    /// The query, call or function.
    pub name: String,
    /// Calls per trace, before.
    pub previous_calls: f64,
    /// Calls per trace, now.
    pub current_calls: f64,
    /// Seconds in it per trace (its calls' durations summed), before.
    pub previous: f64,
    /// The same, now.
    pub current: f64,
    /// `current − previous`.
    pub change: f64,
}

/// The slowest kept traces before and after, aligned by segment.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SideBySide {
    /// The baseline's slowest kept traces, slowest first.
    pub before: Vec<TraceRef>,
    /// The current window's.
    pub after: Vec<TraceRef>,
    /// Mean duration of those traces, `[before, after]`, seconds.
    pub durations: [f64; 2],
    /// Every segment either side's traces called, the one that grew most first.
    pub segments: Vec<AlignedSegment>,
}

/// Per segment: calls and seconds summed over `traces`.
fn sums(traces: &[TraceSummary]) -> BTreeMap<(String, String), (f64, f64)> {
    let mut out: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for segment in traces.iter().flat_map(|t| &t.segments) {
        let slot = out.entry((segment.kind.clone(), segment.name.clone())).or_default();
        slot.0 += 1.0;
        slot.1 += segment.duration;
    }
    out
}

/// The traces of both windows (`[before, after]`), aligned.
pub(crate) fn align(before: &[TraceSummary], after: &[TraceSummary]) -> SideBySide {
    let per_trace = |traces: &[TraceSummary], x: f64| {
        if traces.is_empty() {
            0.0
        } else {
            x / traces.len() as f64
        }
    };
    let (was, now) = (sums(before), sums(after));
    let mut names: Vec<&(String, String)> = was.keys().chain(now.keys()).collect();
    names.sort();
    names.dedup();
    let mut segments: Vec<AlignedSegment> = names
        .into_iter()
        .map(|id| {
            let (b, a) = (
                was.get(id).copied().unwrap_or_default(),
                now.get(id).copied().unwrap_or_default(),
            );
            let (previous, current) = (per_trace(before, b.1), per_trace(after, a.1));
            AlignedSegment {
                kind: id.0.clone(),
                name: id.1.clone(),
                previous_calls: per_trace(before, b.0),
                current_calls: per_trace(after, a.0),
                previous,
                current,
                change: current - previous,
            }
        })
        .collect();
    segments.sort_by(|x, y| y.change.total_cmp(&x.change));
    let refs = |traces: &[TraceSummary]| -> Vec<TraceRef> {
        traces
            .iter()
            .map(|t| TraceRef {
                trace_id: t.trace_id.clone(),
                host: t.host.clone(),
                start: t.start,
                duration: t.duration,
            })
            .collect()
    };
    let mean = |traces: &[TraceSummary]| per_trace(traces, traces.iter().map(|t| t.duration).sum());
    SideBySide {
        before: refs(before),
        after: refs(after),
        durations: [mean(before), mean(after)],
        segments,
    }
}

impl Analysis<'_> {
    /// The slowest kept traces of `baseline`'s window and of `scope`'s (both
    /// narrowed to what changed), aligned by segment; `None` when neither
    /// window kept a trace.
    pub fn side_by_side(&self, scope: &Scope, baseline: &Scope) -> Result<Option<SideBySide>, AnalysisError> {
        let kept = |window: &Scope| -> Result<Vec<TraceSummary>, AnalysisError> {
            let filter = window.transactions_filter(self.owners);
            Ok(self
                .store
                .slowest_traces(&filter, window.from, window.to, EVIDENCE_TRACES)?
                .into_iter()
                .filter(|t| window.matches(&t.key, self.owners))
                .map(summarize)
                .collect())
        };
        let (before, after) = (kept(baseline)?, kept(scope)?);
        if before.is_empty() && after.is_empty() {
            return Ok(None);
        }
        Ok(Some(align(&before, &after)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::breakdown::TraceSegment;
    use super::*;

    fn trace(id: &str, segments: &[(&str, f64)]) -> TraceSummary {
        TraceSummary {
            trace_id: id.into(),
            host: "web-1".into(),
            start: 0,
            duration: segments.iter().map(|s| s.1).sum::<f64>() + 0.01,
            segments: segments
                .iter()
                .map(|&(name, duration)| TraceSegment {
                    kind: "database".into(),
                    name: name.into(),
                    offset: 0.0,
                    duration,
                })
                .collect(),
        }
    }

    #[test]
    fn the_grown_segment_comes_first() {
        let before = [trace("a", &[("SELECT orders", 0.03), ("SELECT users", 0.02)])];
        let after = [
            trace("b", &[("SELECT orders", 0.09), ("SELECT users", 0.02)]),
            trace("c", &[("SELECT orders", 0.05), ("SELECT orders", 0.05)]),
        ];
        let side = align(&before, &after);
        let first = &side.segments[0];
        assert_eq!(first.name, "SELECT orders");
        assert!((first.current - 0.095).abs() < 1e-9 && (first.change - 0.065).abs() < 1e-9);
        assert!((first.current_calls - 1.5).abs() < 1e-9);
        assert_eq!(side.segments[1].name, "SELECT users");
        assert!((side.segments[1].current - 0.01).abs() < 1e-9, "per trace: {side:?}");
        assert_eq!(side.after.len(), 2);
    }
}
