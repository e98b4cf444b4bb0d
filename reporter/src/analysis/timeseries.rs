//! Time series: how a transaction's (or a feature's) latency, throughput and
//! error rate moved over a window, one point per step.
//!
//! The step fits the window ([`Step::auto`]: minutes up to 6 hours, hours up
//! to 14 days, days beyond), so a chart has a few hundred points whatever the
//! window, and the store can answer from its roll-ups: hour steps read hour
//! rows, day steps day rows ([`crate::store::Store::histogram_steps`]). Each
//! point's percentiles come from the histogram merged over its step and every
//! series of its row, as in the slowest table. Every step of the window has a
//! point, empty ones with a count of zero, so charts show gaps as gaps.

use std::collections::{BTreeMap, HashMap};

use super::endpoints::{is_failure, label, row_id, Group, RowId, OUTCOMES};
use super::{Analysis, AnalysisError, Scope};
use crate::histogram::Histogram;
use crate::store::SeriesKey;

/// Most steps one series may have: a finer step asked over a longer window is
/// coarsened until it fits.
pub(crate) const MAX_STEPS: i64 = 5_000;

/// The width of one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// One minute.
    Minute,
    /// One hour (UTC).
    Hour,
    /// One day (UTC).
    Day,
}

impl Step {
    /// Minutes in a step.
    pub fn minutes(self) -> i64 {
        match self {
            Step::Minute => 1,
            Step::Hour => 60,
            Step::Day => 1_440,
        }
    }

    /// The step for a window of `minutes`: minutes up to 6 hours, hours up to
    /// 14 days, days beyond.
    pub fn auto(minutes: i64) -> Step {
        if minutes <= 6 * 60 {
            Step::Minute
        } else if minutes <= 14 * 1_440 {
            Step::Hour
        } else {
            Step::Day
        }
    }

    /// `self`, or coarser until a window of `minutes` has at most [`MAX_STEPS`].
    fn fitting(self, minutes: i64) -> Step {
        [Step::Minute, Step::Hour, Step::Day]
            .into_iter()
            .filter(|&s| s >= self)
            .find(|s| minutes / s.minutes() <= MAX_STEPS)
            .unwrap_or(Step::Day)
    }
}

/// One step of one series. Durations in seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    /// The step's start, unix minutes.
    pub minute: i64,
    /// Runs in the step.
    pub count: u64,
    /// Runs per minute of the step inside the window.
    pub throughput: f64,
    /// Mean; `None` without runs.
    pub mean: Option<f64>,
    /// Median; `None` without runs.
    pub p50: Option<f64>,
    /// 95th percentile; `None` without runs.
    pub p95: Option<f64>,
    /// 99th percentile; `None` without runs.
    pub p99: Option<f64>,
    /// Failed runs (`5xx` and `error` outcomes).
    pub errors: u64,
    /// `errors` over the runs the outcome counters saw; `None` without them.
    pub error_rate: Option<f64>,
}

/// The points of one transaction or feature.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Series {
    /// The service; empty for a feature.
    pub service: String,
    /// The transaction; empty for a feature.
    pub transaction: String,
    /// The feature, `None` when neither tagged nor assigned.
    pub feature: Option<String>,
    /// One per step of the window, in time order.
    pub points: Vec<Point>,
    /// Some histogram came from explicit buckets: percentiles are estimates.
    pub estimated: bool,
}

/// Time series over a scope.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TimeSeries {
    /// What was asked about.
    pub scope: Scope,
    /// What a series stands for.
    pub group: Group,
    /// The step used (coarser than asked when the window needed it).
    pub step: Step,
    /// One per transaction or feature in scope, by name.
    pub series: Vec<Series>,
    /// Some series is estimated.
    pub estimated: bool,
}

/// One step being summed.
#[derive(Default)]
struct Cell {
    histogram: Option<Histogram>,
    runs: f64,
    failures: f64,
}

impl Analysis<'_> {
    /// Latency, throughput and error rate per step of each transaction or
    /// feature in `scope`; `step` `None` picks [`Step::auto`].
    pub fn timeseries(&self, scope: &Scope, group: Group, step: Option<Step>) -> Result<TimeSeries, AnalysisError> {
        let step = step
            .unwrap_or_else(|| Step::auto(scope.minutes()))
            .fitting(scope.minutes());
        let width = step.minutes();
        let filter = scope.transactions_filter(self.owners);
        // Rows are numbered as the store meets their series, by each read
        // apart; the store merges each row's histograms per step. The two
        // reads are independent and wait mostly on the store: they run side
        // by side (ClickHouse answers both at once).
        let (histograms, outcomes) = std::thread::scope(|threads| {
            let counting = threads.spawn(|| {
                let mut rows = Numbering::default();
                self.store
                    .counter_steps_grouped(&filter, OUTCOMES, scope.from, scope.to, width, &mut |key| {
                        rows.number(key, scope, group, self.owners)
                    })
                    .map(|outcomes| (outcomes, rows.ids))
            });
            let mut rows = Numbering::default();
            let histograms = self
                .store
                .histogram_steps_grouped(&filter, scope.from, scope.to, width, &mut |key| {
                    rows.number(key, scope, group, self.owners)
                })
                .map(|histograms| (histograms, rows.ids));
            let outcomes = crate::sync::joined(counting);
            (histograms, outcomes)
        });
        let (histograms, histogram_ids) = histograms?;
        let (outcomes, outcome_ids) = outcomes?;
        let mut cells: BTreeMap<RowId, BTreeMap<i64, Cell>> = BTreeMap::new();
        for (row, start, histogram) in histograms {
            let Some(id) = histogram_ids.get(row) else { continue };
            let cell = cells.entry(id.clone()).or_default().entry(start).or_default();
            match &mut cell.histogram {
                Some(total) => total.merge(&histogram),
                None => cell.histogram = Some(histogram),
            }
        }
        for (row, labels, start, value) in outcomes {
            let Some(id) = outcome_ids.get(row) else { continue };
            let cell = cells.entry(id.clone()).or_default().entry(start).or_default();
            cell.runs += value;
            if label(&labels, "kuroko.outcome").is_some_and(is_failure) {
                cell.failures += value;
            }
        }
        let first = scope.from.div_euclid(width) * width;
        let series: Vec<Series> = cells
            .into_iter()
            .map(|((service, transaction, feature), steps)| {
                let estimated = steps
                    .values()
                    .any(|c| c.histogram.as_ref().is_some_and(|h| h.estimated));
                let points = (first..scope.to)
                    .step_by(width as usize)
                    .map(|start| point(start, width, scope, steps.get(&start)))
                    .collect();
                Series {
                    service,
                    transaction,
                    feature,
                    points,
                    estimated,
                }
            })
            .collect();
        Ok(TimeSeries {
            scope: scope.clone(),
            group,
            step,
            estimated: series.iter().any(|s| s.estimated),
            series,
        })
    }
}

/// The point of the step at `start`, from its cell if it has one.
fn point(start: i64, width: i64, scope: &Scope, cell: Option<&Cell>) -> Point {
    let inside = ((start + width).min(scope.to) - start.max(scope.from)).max(1);
    let histogram = cell.and_then(|c| c.histogram.as_ref()).filter(|h| h.count > 0);
    let count = histogram.map_or(0, |h| h.count);
    let (runs, failures) = cell.map_or((0.0, 0.0), |c| (c.runs, c.failures));
    Point {
        minute: start,
        count,
        throughput: count as f64 / inside as f64,
        mean: histogram.map(Histogram::mean),
        p50: histogram.map(|h| h.quantile(0.50)),
        p95: histogram.map(|h| h.quantile(0.95)),
        p99: histogram.map(|h| h.quantile(0.99)),
        errors: failures.round() as u64,
        error_rate: (runs > 0.0).then(|| failures / runs),
    }
}

/// Rows of a time series numbered as a store read meets their series.
#[derive(Default)]
struct Numbering {
    ids: Vec<RowId>,
    numbers: HashMap<RowId, usize>,
}

impl Numbering {
    /// The number of `key`'s row, `None` when `scope` leaves it out.
    fn number(
        &mut self,
        key: &SeriesKey,
        scope: &Scope,
        group: Group,
        owners: &crate::owners::Owners,
    ) -> Option<usize> {
        if !scope.matches(key, owners) {
            return None;
        }
        let id = row_id(key, group, owners);
        let ids = &mut self.ids;
        Some(*self.numbers.entry(id.clone()).or_insert_with(|| {
            ids.push(id);
            ids.len() - 1
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_fits_the_window() {
        assert_eq!(Step::auto(60), Step::Minute);
        assert_eq!(Step::auto(6 * 60), Step::Minute);
        assert_eq!(Step::auto(7 * 1_440), Step::Hour);
        assert_eq!(Step::auto(30 * 1_440), Step::Day);
        // Minutes over 90 days would be 129,600 points: hours instead.
        assert_eq!(Step::Minute.fitting(90 * 1_440), Step::Hour);
        assert_eq!(Step::Day.fitting(60), Step::Day);
    }
}
