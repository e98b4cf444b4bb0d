//! Time outside segments: a slow run (`min_run_seconds` or longer) whose
//! time is mostly (`min_share`) in no span below its root, so neither a
//! query nor a call nor an instrumented function explains it: the
//! service's own code, unmeasured, or a missing instrumentation.
//!
//! Not told for runs whose spans were cut (the agent's
//! `kuroko.trace.dropped_segments`).

use super::run::Run;
use super::{Finding, Pattern, Thresholds};

/// The outside-segments finding of `run`, if any.
pub(crate) fn detect(run: &Run, thresholds: &Thresholds) -> Vec<Finding> {
    let t = &thresholds.outside;
    let seconds = run.duration as f64 / 1e9;
    if !t.enabled || run.incomplete || seconds < t.min_run_seconds {
        return Vec::new();
    }
    // The union of the spans' intervals, within the run.
    let (mut covered, mut reach) = (0u64, 0u64);
    for span in &run.spans {
        let (start, end) = (span.offset.max(reach), span.end().min(run.duration));
        if end > start {
            covered += end - start;
            reach = end;
        }
    }
    let outside = run.duration.saturating_sub(covered) as f64 / 1e9;
    if outside < t.min_share * seconds {
        return Vec::new();
    }
    vec![Finding {
        pattern: Pattern::Outside,
        kind: "code".to_owned(),
        statement: String::new(),
        count: run.spans.len(),
        seconds: outside,
        cost: outside,
        spans: Vec::new(),
    }]
}
