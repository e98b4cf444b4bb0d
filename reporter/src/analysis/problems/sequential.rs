//! Sequential calls: external calls (or queries) of one parent, one after
//! the other with nothing between them, that do not depend on each other's
//! answer as far as the trace shows (different statements) and could run
//! at the same time.
//!
//! Per run, the children of each parent in start order form chains of
//! consecutive spans of one kind (`external`, or `database`), none
//! overlapping the next, at most `max_gap_seconds` apart, each at least
//! `min_call_seconds` long and each running a different statement (a
//! statement run again is N+1's, not this). A chain of two or more whose
//! calls, run at once, would save at least `min_saved_seconds` and
//! `min_saved_share` of the run is a finding: the statements in order, the
//! calls, their time, and the time saved (their sum less the longest).

use super::run::Run;
use super::{Finding, Pattern, Thresholds};

/// The sequential-calls findings of `run`.
pub(crate) fn detect(run: &Run, thresholds: &Thresholds) -> Vec<Finding> {
    let t = &thresholds.sequential;
    if !t.enabled {
        return Vec::new();
    }
    let gap = (t.max_gap_seconds * 1e9) as u64;
    let shortest = (t.min_call_seconds * 1e9) as u64;
    let mut parents: Vec<&str> = run.spans.iter().map(|s| s.parent.as_str()).collect();
    parents.sort_unstable();
    parents.dedup();
    let mut findings = Vec::new();
    for parent in parents {
        let children: Vec<usize> = (0..run.spans.len())
            .filter(|&i| run.spans[i].parent == parent)
            .collect();
        let mut chain: Vec<usize> = Vec::new();
        for &index in children.iter().chain(std::iter::once(&usize::MAX)) {
            let joins = run.spans.get(index).is_some_and(|span| {
                let Some(&last) = chain.last() else { return false };
                let previous = &run.spans[last];
                span.kind == previous.kind
                    && span.is_call()
                    && span.duration >= shortest
                    && span.offset >= previous.end()
                    && span.offset - previous.end() <= gap
                    && chain.iter().all(|&i| run.spans[i].statement != span.statement)
            });
            if joins {
                chain.push(index);
                continue;
            }
            if let Some(finding) = chain_finding(run, &chain, thresholds) {
                findings.push(finding);
            }
            chain.clear();
            if let Some(span) = run.spans.get(index) {
                if span.is_call() && span.duration >= shortest {
                    chain.push(index);
                }
            }
        }
    }
    findings
}

fn chain_finding(run: &Run, chain: &[usize], thresholds: &Thresholds) -> Option<Finding> {
    let t = &thresholds.sequential;
    if chain.len() < 2 {
        return None;
    }
    let durations: Vec<u64> = chain.iter().map(|&i| run.spans[i].duration).collect();
    let sum: u64 = durations.iter().sum();
    let saved = (sum - durations.iter().max().copied().unwrap_or(0)) as f64 / 1e9;
    let share = if run.duration > 0 {
        saved * 1e9 / run.duration as f64
    } else {
        0.0
    };
    if saved < t.min_saved_seconds || share < t.min_saved_share {
        return None;
    }
    let statements: Vec<&str> = chain.iter().map(|&i| run.spans[i].statement.as_str()).collect();
    Some(Finding {
        pattern: Pattern::Sequential,
        kind: run.spans[chain[0]].kind.clone(),
        statement: statements.join(" → "),
        count: chain.len(),
        seconds: sum as f64 / 1e9,
        cost: saved,
        spans: chain.to_vec(),
    })
}
