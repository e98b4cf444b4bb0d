//! N+1: one statement run again and again in one run (a query or a call in
//! a loop), where one query or call for all of them would do.
//!
//! Per run, database and external spans are grouped by their normalised
//! statement; a statement run at least `min_count` times, taking at least
//! `min_seconds` together, is a finding: its count, and its time (what
//! batching would mostly save).

use super::run::Run;
use super::{Finding, Pattern, Thresholds};

/// The N+1 findings of `run`.
pub(crate) fn detect(run: &Run, thresholds: &Thresholds) -> Vec<Finding> {
    let t = &thresholds.n_plus_one;
    if !t.enabled {
        return Vec::new();
    }
    let mut by_statement: std::collections::BTreeMap<(&str, &str), Vec<usize>> = std::collections::BTreeMap::new();
    for (index, span) in run.spans.iter().enumerate().filter(|(_, s)| s.is_call()) {
        by_statement
            .entry((span.kind.as_str(), span.statement.as_str()))
            .or_default()
            .push(index);
    }
    by_statement
        .into_iter()
        .filter_map(|((kind, statement), spans)| {
            let nanos: u64 = spans.iter().map(|&i| run.spans[i].duration).sum();
            let seconds = nanos as f64 / 1e9;
            (spans.len() >= t.min_count && seconds >= t.min_seconds).then(|| Finding {
                pattern: Pattern::NPlusOne,
                kind: kind.to_owned(),
                statement: statement.to_owned(),
                count: spans.len(),
                seconds,
                cost: seconds,
                spans,
            })
        })
        .collect()
}
