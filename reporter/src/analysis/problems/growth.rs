//! Segments whose calls per run grew: a query or an external call that a
//! transaction now makes many more times per run than in the baseline
//! window (the window of the same length just before), such as a query
//! called once a run last week and twelve times this week.
//!
//! Read from the per-minute segment counters the store keeps for every run
//! (`kuroko.segment.calls` and `kuroko.segment.duration`, per segment kind
//! and name; see `analysis/breakdown.rs`), not from kept traces: calls per
//! run are over every run the counters count, the transaction's runs from
//! its histograms (or, for an SDK's spans, its traced runs). A segment is
//! flagged when, in both windows, the transaction ran at least `min_runs`
//! times, the segment was called in the baseline (a segment new in the
//! window is a code change, not growth), its calls per run are at least
//! `min_ratio` times and at least `min_added_calls` more than before, the
//! added calls take at least `min_added_seconds` a run (at the window's time
//! per call), and its calls per run are higher with a one-sided p-value
//! under `p_value` (the test of errors per run, `stats::error_growth_p`).
//! Names are compared normalised ([`super::statement`]), so one statement
//! with different literals is one segment.

use std::collections::BTreeMap;

use super::statement;
use crate::analysis::breakdown::{SEGMENT_CALLS, SEGMENT_DURATION};
use crate::analysis::endpoints::label;
use crate::analysis::stats::error_growth_p;
use crate::analysis::{Analysis, AnalysisError, Scope};
use crate::ingest::traces::TRACED_RUNS;

/// A segment whose calls per run grew, in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Growth {
    /// The service.
    pub(crate) service: String,
    /// The transaction.
    pub(crate) transaction: String,
    /// `database` or `external`.
    pub(crate) kind: String,
    /// The segment's name, normalised.
    pub(crate) statement: String,
    /// The transaction's runs in the window.
    pub(crate) runs: f64,
    /// Calls per run in the window.
    pub(crate) calls_per_run: f64,
    /// Calls per run in the baseline.
    pub(crate) baseline_calls_per_run: f64,
    /// Time per call in the window, seconds.
    pub(crate) seconds_per_call: f64,
}

impl Growth {
    /// Time the added calls take a run, seconds: what going back to the
    /// baseline's calls would save.
    pub(crate) fn cost_per_run(&self) -> f64 {
        (self.calls_per_run - self.baseline_calls_per_run) * self.seconds_per_call
    }
}

/// Per (service, transaction): its runs; per (service, transaction, kind,
/// statement): calls and seconds.
#[derive(Default)]
struct Usage {
    runs: BTreeMap<(String, String), f64>,
    segments: BTreeMap<(String, String, String, String), (f64, f64)>,
}

impl Analysis<'_> {
    /// The segments of the transactions in `scope` whose calls per run grew
    /// against the window of the same length before it; none when the
    /// detector is off.
    pub(crate) fn grown_segments(&self, scope: &Scope) -> Result<Vec<Growth>, AnalysisError> {
        let t = &self.problem_thresholds.growth;
        if !t.enabled {
            return Ok(Vec::new());
        }
        let (now, before) = (self.usage(scope)?, self.usage(&scope.previous())?);
        let mut out = Vec::new();
        for ((service, transaction, kind, name), &(calls, seconds)) in &now.segments {
            let runs_of = |usage: &Usage| {
                usage
                    .runs
                    .get(&(service.clone(), transaction.clone()))
                    .copied()
                    .unwrap_or(0.0)
            };
            let (runs, baseline_runs) = (runs_of(&now), runs_of(&before));
            let key = (service.clone(), transaction.clone(), kind.clone(), name.clone());
            let baseline_calls = before.segments.get(&key).map_or(0.0, |&(calls, _)| calls);
            if runs < t.min_runs as f64 || baseline_runs < t.min_runs as f64 || baseline_calls <= 0.0 || calls <= 0.0 {
                continue;
            }
            let growth = Growth {
                service: service.clone(),
                transaction: transaction.clone(),
                kind: kind.clone(),
                statement: name.clone(),
                runs,
                calls_per_run: calls / runs,
                baseline_calls_per_run: baseline_calls / baseline_runs,
                seconds_per_call: seconds / calls,
            };
            let p = error_growth_p(calls.round() as u64, baseline_calls.round() as u64, runs, baseline_runs);
            if growth.calls_per_run >= t.min_ratio * growth.baseline_calls_per_run
                && growth.calls_per_run - growth.baseline_calls_per_run >= t.min_added_calls
                && growth.cost_per_run() >= t.min_added_seconds
                && p < t.p_value
            {
                out.push(growth);
            }
        }
        Ok(out)
    }

    /// Runs and segment calls of the transactions in `scope`.
    fn usage(&self, scope: &Scope) -> Result<Usage, AnalysisError> {
        let filter = scope.transactions_filter(self.owners);
        let mut usage = Usage::default();
        let mut counted: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (key, histogram) in self.histograms(&filter, scope.from, scope.to)? {
            if scope.matches(&key, self.owners) {
                *counted.entry((key.service, key.transaction)).or_default() += histogram.count as f64;
            }
        }
        // An SDK's segments cover its traced runs (spans may be sampled).
        let mut traced: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (key, _, value) in self.store.counters(&filter, TRACED_RUNS, scope.from, scope.to)? {
            if scope.matches(&key, self.owners) {
                *traced.entry((key.service, key.transaction)).or_default() += value;
            }
        }
        for (id, runs) in counted {
            let runs = traced.get(&id).copied().filter(|t| *t > 0.0).unwrap_or(runs);
            usage.runs.insert(id, runs);
        }
        for (counter, seconds) in [(SEGMENT_CALLS, false), (SEGMENT_DURATION, true)] {
            for (key, labels, value) in self.store.counters(&filter, counter, scope.from, scope.to)? {
                if !scope.matches(&key, self.owners) {
                    continue;
                }
                let kind = label(&labels, "kuroko.segment.kind").unwrap_or("code");
                if kind != "database" && kind != "external" {
                    continue;
                }
                let name = statement::normalise(label(&labels, "kuroko.segment.name").unwrap_or(""));
                let entry = usage
                    .segments
                    .entry((key.service, key.transaction, kind.to_owned(), name))
                    .or_default();
                if seconds {
                    entry.1 += value;
                } else {
                    entry.0 += value;
                }
            }
        }
        Ok(usage)
    }
}
