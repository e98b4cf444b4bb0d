//! A dominant query: one database call taking most of the run
//! (`min_share` of it, and at least `min_seconds`), the first place to look
//! (an index, a smaller answer, a cache).

use super::run::Run;
use super::{Finding, Pattern, Thresholds};

/// The dominant-query findings of `run` (at most one when `min_share` is
/// above one half).
pub(crate) fn detect(run: &Run, thresholds: &Thresholds) -> Vec<Finding> {
    let t = &thresholds.dominant;
    if !t.enabled || run.duration == 0 {
        return Vec::new();
    }
    run.spans
        .iter()
        .enumerate()
        .filter(|(_, span)| {
            let seconds = span.duration as f64 / 1e9;
            span.kind == "database"
                && seconds >= t.min_seconds
                && span.duration as f64 >= t.min_share * run.duration as f64
        })
        .map(|(index, span)| Finding {
            pattern: Pattern::Dominant,
            kind: span.kind.clone(),
            statement: span.statement.clone(),
            count: 1,
            seconds: span.duration as f64 / 1e9,
            cost: span.duration as f64 / 1e9,
            spans: vec![index],
        })
        .collect()
}
