//! Did a transaction get slower? The statistics that answer it from two
//! periods (this week and last) of one transaction's runs, cut into blocks.
//!
//! A change is called a regression only when it is *significant* once every
//! comparison of the answer is accounted for, *resolved* by the data, and
//! *large*:
//!
//! - The unit of evidence is a block of time (an hour, for windows of a day
//!   or more), not a run: runs within a minute or an hour move together, so
//!   each test's variance is the variance between blocks, and blocks are
//!   compared within the same times of day ([`super::blocks`]). Whole days
//!   wobble too: windows of 5 days or more widen every test by how much
//!   more the baseline's days vary than its blocks predict; shorter ones
//!   add the variance of a day measured in the days before their baseline
//!   ([`History`], [`judge_all_with_history`]).
//! - The mean is tested by a t-test on the log of the two periods'
//!   post-stratified means ([`TestKind::BlockMean`]); the mean is exact from
//!   sum and count, whatever the buckets. A percentile is tested by the share
//!   of runs at or below the upper edge of the bucket that holds the
//!   baseline's percentile ([`TestKind::BlockShare`]): that share is exact
//!   from the buckets, so the test never reads a position inside a bucket.
//! - Every p-value of the answer (four metrics per transaction) is adjusted by
//!   Benjamini–Hochberg ([`benjamini_hochberg`]); a metric counts only when
//!   its q-value is below [`RegressionRule::p_value`], which bounds the
//!   expected share of false calls among the calls.
//! - Each call carries an interval for its size, at the false-coverage-rate
//!   level of Benjamini and Yekutieli (2005) (confidence `1 − R·α/m` for `R`
//!   calls among `m` tests): for the mean from the t-test; for a percentile
//!   from bucket edges only (the highest edge the period's percentile is surely
//!   above and the lowest it is surely at or below, in each period), so it
//!   holds the buckets' resolution as well as the noise. A change whose
//!   interval holds 0 is not called: a shift smaller than a bucket is never
//!   a regression.
//! - Large: the metric's change is at least [`RegressionRule::min_change`]:
//!   with millions of runs a 1% change can be significant, and nobody should
//!   be paged for it.
//!
//! p99 rests on 1% of the runs, so it decides only when p50, p95 and the mean
//! do not. Explicit-bucket histograms (`estimated`) keep no bucket edges once
//! converted, so their percentiles are shown but never tested: the mean
//! decides. [`RegressionRule::min_count`] refuses to judge transactions with
//! too few runs in either period, and periods that share too few times of
//! day with runs are not judged either.

use std::collections::BTreeMap;
use std::fmt;

use super::blocks::{Block, Design, Difference, Edges, Estimate, TooThin, CURRENT, MIN_COVERAGE, PREVIOUS};
use crate::histogram::{bucket_bounds, Histogram};

/// Which test produced a [`TestResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// Welch's t on the log of the periods' post-stratified mean durations,
    /// the variance taken between blocks.
    BlockMean,
    /// The share of runs at or below the baseline percentile's bucket edge,
    /// compared between the periods with the variance taken between blocks.
    BlockShare,
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TestKind::BlockMean => "block t-test",
            TestKind::BlockShare => "block share test",
        })
    }
}

/// The outcome of one metric's test of the current period against the previous.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestResult {
    /// The test.
    pub test: TestKind,
    /// t; positive when the current period is the slower.
    pub statistic: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub degrees_of_freedom: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The p-value adjusted by Benjamini–Hochberg across every test of the answer.
    pub q_value: f64,
    /// Share of runs above the edge (share test only): (current, previous).
    pub shares_above: Option<(f64, f64)>,
    /// The interval for the metric's relative change at the calls' level
    /// (see [`judge_all`]), for a metric whose q-value is below the rule's
    /// threshold; `None` for the others ([`explain`] gives theirs).
    pub interval: Option<Interval>,
}

/// An interval for a relative change (0.31 is +31%) and its confidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Its low end.
    pub low: f64,
    /// Its high end; infinite when the buckets bound it from one side only.
    pub high: f64,
    /// Its confidence (0.99 is 99%).
    pub confidence: f64,
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&interval_text(self.low, self.high))
    }
}

/// Where a bucket's values are taken to be, for moments.
fn representative(histogram: &Histogram, low: f64, high: f64) -> f64 {
    ((low + high) / 2.0).max(histogram.min).min(histogram.max)
}

/// (value, count) of the zero region and every bucket.
fn points(histogram: &Histogram) -> impl Iterator<Item = (f64, f64)> + '_ {
    let zero = (
        representative(histogram, 0.0, histogram.zero_threshold),
        histogram.zero_count as f64,
    );
    let buckets = histogram.iter_buckets().map(|(index, count)| {
        let (low, high) = bucket_bounds(index, histogram.scale);
        (representative(histogram, low, high), count as f64)
    });
    std::iter::once(zero).chain(buckets).filter(|&(_, count)| count > 0.0)
}

/// Sample variance of the bucketed values, around their own (bucketed) mean:
/// each bucket's runs placed at its middle (clamped into min..max); `None`
/// under two runs. Also the slowest table's standard deviation.
pub(crate) fn bucket_variance(histogram: &Histogram) -> Option<f64> {
    let n: f64 = points(histogram).map(|(_, count)| count).sum();
    if n < 2.0 {
        return None;
    }
    let mean = points(histogram).map(|(value, count)| value * count).sum::<f64>() / n;
    let squares: f64 = points(histogram)
        .map(|(value, count)| count * (value - mean).powi(2))
        .sum();
    Some(squares / (n - 1.0))
}

/// When a change is called a regression (or an improvement).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionRule {
    /// The false discovery rate: a test's q-value (its p-value adjusted by
    /// Benjamini–Hochberg across every comparison of the answer) must be
    /// below this (default 0.01).
    pub p_value: f64,
    /// The metric must move by at least this fraction (default 0.10, 10%).
    pub min_change: f64,
    /// Each period needs at least this many runs to be judged (default 100).
    pub min_count: u64,
}

impl Default for RegressionRule {
    fn default() -> Self {
        RegressionRule {
            p_value: 0.01,
            min_change: 0.10,
            min_count: 100,
        }
    }
}

/// What [`judge_all`] concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Slower, significantly and by at least the minimum change.
    Regression,
    /// Faster, significantly and by at least the minimum change.
    Improvement,
    /// Neither: no change, a small one, or one the tests call noise.
    NoChange,
    /// A period has fewer runs than the rule's minimum, or the periods share
    /// too few times of day with runs to be compared block by block.
    TooLittleTraffic,
}

/// A summary statistic compared between the periods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Median.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile (decides only when p50, p95 and mean do not: it rests
    /// on 1% of the runs).
    P99,
    /// Mean.
    Mean,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::P50 => "p50",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::Mean => "mean",
        })
    }
}

/// One metric in both periods, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// Previous period's value.
    pub previous: f64,
    /// Current period's value.
    pub current: f64,
    /// `current / previous - 1` (0.31 is +31%); `None` when previous is 0.
    pub relative: Option<f64>,
}

impl Change {
    fn new(previous: f64, current: f64) -> Self {
        Change {
            previous,
            current,
            relative: (previous > 0.0).then(|| current / previous - 1.0),
        }
    }
}

/// p50, p95, p99 and mean in both periods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Changes {
    /// Median.
    pub p50: Change,
    /// 95th percentile.
    pub p95: Change,
    /// 99th percentile.
    pub p99: Change,
    /// Mean.
    pub mean: Change,
}

impl Changes {
    /// The change of one metric.
    pub fn get(&self, metric: Metric) -> Change {
        match metric {
            Metric::P50 => self.p50,
            Metric::P95 => self.p95,
            Metric::P99 => self.p99,
            Metric::Mean => self.mean,
        }
    }
}

/// The metric that decided a regression or improvement, with its evidence.
/// Displays as `p95 +12% (+9% to +15%; p < 0.001, q = 0.004, block share test)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trigger {
    /// The metric.
    pub metric: Metric,
    /// Its relative change (0.31 is +31%): the post-stratified mean's for the
    /// mean, the merged periods' quantiles' for a percentile (kept inside
    /// the interval).
    pub relative: f64,
    /// The interval for the relative change (see [`judge_all`]): it excludes 0.
    pub low: f64,
    /// The interval's upper end; infinite when the buckets bound it from one side only.
    pub high: f64,
    /// The test that backs it.
    pub test: TestKind,
    /// That test's p-value.
    pub p_value: f64,
    /// Its q-value: the p-value adjusted for every comparison of the answer.
    pub q_value: f64,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}; {}, {}, {})",
            self.metric,
            percent(self.relative),
            interval_text(self.low, self.high),
            crate::format::p_value(self.p_value),
            crate::format::q_value(self.q_value),
            self.test
        )
    }
}

/// `+12%`, `-3.4%`: whole percents from 10% on, one decimal below.
fn percent(relative: f64) -> String {
    if relative.abs() >= 0.1 {
        format!("{:+.0}%", relative * 100.0)
    } else {
        format!("{:+.1}%", relative * 100.0)
    }
}

/// `+9% to +15%`; `+9% or more` when the upper end is unbounded.
pub fn interval_text(low: f64, high: f64) -> String {
    if high.is_finite() {
        format!("{} to {}", percent(low), percent(high))
    } else {
        format!("{} or more", percent(low))
    }
}

/// The judgement on one transaction (or feature) across two periods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// The conclusion.
    pub outcome: Outcome,
    /// What decided a regression or improvement; `None` otherwise.
    pub trigger: Option<Trigger>,
    /// The metrics in both periods (the merged periods' values).
    pub changes: Changes,
    /// Each metric's test; `None` for a metric not tested (too few blocks,
    /// no variance, or percentiles of explicit-bucket data).
    pub tests: Tests,
    /// Runs in the current period.
    pub current_count: u64,
    /// Runs in the previous period.
    pub previous_count: u64,
    /// [`impact_seconds`]: extra time consumed this period, for ranking.
    pub impact_seconds: f64,
    /// Either period was built from explicit buckets: percentiles are
    /// coarse estimates, and only the mean (exact from sum and count) is tested.
    pub estimated: bool,
    /// How the periods were compared: blocks with runs and strata; `None`
    /// when they were not (too little traffic, or too little in common).
    pub design: Option<DesignSummary>,
    /// For a regression or improvement: the first minute of the block where
    /// the change most likely began ([`change_point`]), when it lies in the
    /// current period.
    pub began_minute: Option<i64>,
    /// Not judged though both periods had the runs: the best share of each
    /// period's runs, `[current, previous]`, in times of day both hold
    /// ([`MIN_COVERAGE`] of each is needed).
    pub shared_runs: Option<[f64; 2]>,
}

/// How two periods of one subject were compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesignSummary {
    /// Blocks with runs in the current period.
    pub current_blocks: usize,
    /// Blocks with runs in the previous period.
    pub previous_blocks: usize,
    /// Width of the time-of-day strata, in hours (24: none).
    pub stratum_hours: i64,
}

/// Each metric's test.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tests {
    /// The median's.
    pub p50: Option<TestResult>,
    /// The 95th percentile's.
    pub p95: Option<TestResult>,
    /// The 99th percentile's.
    pub p99: Option<TestResult>,
    /// The mean's.
    pub mean: Option<TestResult>,
}

impl Tests {
    /// One metric's test.
    pub fn get(&self, metric: Metric) -> Option<TestResult> {
        match metric {
            Metric::P50 => self.p50,
            Metric::P95 => self.p95,
            Metric::P99 => self.p99,
            Metric::Mean => self.mean,
        }
    }

    fn slot(&mut self, metric: Metric) -> &mut Option<TestResult> {
        match metric {
            Metric::P50 => &mut self.p50,
            Metric::P95 => &mut self.p95,
            Metric::P99 => &mut self.p99,
            Metric::Mean => &mut self.mean,
        }
    }
}

/// Extra time the current period consumed because of the change:
/// `(mean now - mean before) × runs now`, in seconds (negative when faster).
/// Ranks regressions by impact: a small slowdown on a hot path can cost more
/// than a large one on a rare one.
pub fn impact_seconds(current: &Histogram, previous: &Histogram) -> f64 {
    (current.mean() - previous.mean()) * current.count as f64
}

/// Least occurrences this period for an error group to be called growing.
pub const MIN_GROWING_COUNT: u64 = 10;

/// One-sided p-value that an error's rate per run grew: `current` of
/// `current_runs` against `previous` of `previous_runs`. Conditional on the
/// total `current + previous`, under an unchanged rate the current count is
/// binomial with the current period's share of the runs; p is the chance of
/// `current` or more. 1 when either period has no runs.
pub fn error_growth_p(current: u64, previous: u64, current_runs: f64, previous_runs: f64) -> f64 {
    let total = current + previous;
    if current == 0 || current_runs <= 0.0 || previous_runs <= 0.0 {
        return 1.0;
    }
    let share = current_runs / (current_runs + previous_runs);
    match statrs::distribution::Binomial::new(share, total) {
        Ok(binomial) => statrs::distribution::DiscreteCDF::sf(&binomial, current - 1),
        Err(_) => 1.0,
    }
}

/// Whether an error group is growing: at least [`MIN_GROWING_COUNT`]
/// occurrences now, a higher rate per run than before, and
/// [`error_growth_p`] below `p_value`. More errors on more traffic is not
/// growth; 1,805 against 1,791 on the same traffic is not either.
pub fn error_growing(current: u64, previous: u64, current_runs: f64, previous_runs: f64, p_value: f64) -> bool {
    current >= MIN_GROWING_COUNT
        && current as f64 * previous_runs > previous as f64 * current_runs
        && error_growth_p(current, previous, current_runs, previous_runs) < p_value
}

/// Where a change most likely began in `blocks` (both periods, in time
/// order): the first minute of the block after the split that best cuts the
/// blocks' log mean durations, after each hour of the day's own level is
/// taken out, into two levels (least squares, the CUSUM estimate). `None`
/// with fewer than 4 blocks with runs.
pub fn change_point(blocks: &[&Block]) -> Option<i64> {
    let points: Vec<(i64, f64)> = blocks
        .iter()
        .filter(|b| b.histogram.count > 0 && b.histogram.sum > 0.0)
        .map(|b| (b.start, b.histogram.mean().ln()))
        .collect();
    if points.len() < 4 {
        return None;
    }
    // Each hour of the day's mean level, taken out.
    let mut by_hour: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for &(start, y) in &points {
        let level = by_hour.entry(start.rem_euclid(1_440) / 60).or_default();
        (level.0, level.1) = (level.0 + y, level.1 + 1.0);
    }
    let residuals: Vec<f64> = points
        .iter()
        .map(|&(start, y)| {
            let (sum, n) = by_hour[&(start.rem_euclid(1_440) / 60)];
            y - sum / n
        })
        .collect();
    let n = residuals.len() as f64;
    let mean = residuals.iter().sum::<f64>() / n;
    // The split k maximising |S_k| / sqrt(k (n − k)): the two-level least-squares fit.
    let (mut cusum, mut best, mut split) = (0.0, 0.0, None);
    for (k, r) in residuals.iter().enumerate().take(residuals.len() - 1) {
        cusum += r - mean;
        let left = (k + 1) as f64;
        let score = cusum.abs() / (left * (n - left)).sqrt();
        if score > best {
            (best, split) = (score, Some(k + 1));
        }
    }
    split.map(|k| points[k].0)
}

/// Benjamini–Hochberg q-values of `p_values`, in their order: the smallest
/// false discovery rate at which each would be rejected.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut q = vec![1.0; m];
    let mut smallest = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        smallest = smallest.min(p_values[i] * m as f64 / (rank + 1) as f64);
        q[i] = smallest.min(1.0);
    }
    q
}

/// The percentiles tested, with their levels.
const QUANTILES: [(Metric, f64); 3] = [(Metric::P50, 0.50), (Metric::P95, 0.95), (Metric::P99, 0.99)];

/// One subject's blocks merged: its whole period.
fn merged(blocks: &[Block]) -> Histogram {
    let mut total = Histogram::empty();
    for block in blocks {
        total.merge(&block.histogram);
    }
    total
}

/// A subject's blocks merged per day (each starting at midnight UTC), for
/// the variance between days.
fn days(blocks: &[Block]) -> Vec<Block> {
    let mut days: BTreeMap<i64, Histogram> = BTreeMap::new();
    for block in blocks {
        let day = block.start.div_euclid(1_440) * 1_440;
        days.entry(day).or_insert_with(Histogram::empty).merge(&block.histogram);
    }
    days.into_iter()
        .map(|(start, histogram)| Block { start, histogram })
        .collect()
}

/// Least days with runs in each window for the variance between days to be
/// taken into account.
pub const MIN_DAYS: usize = 5;

/// The days before a baseline too short to measure the wobble between days
/// itself (a 2-day window against the 2 days before): its blocks, and the
/// same merged per day. Read by the caller ([`judge_all_with_history`]).
pub struct History {
    blocks: Vec<Block>,
    days: Vec<Block>,
}

impl History {
    /// The history of one subject: its hour blocks over the days before its
    /// baseline (a week of them is plenty; [`MIN_DAYS`] is the least used).
    pub fn of(blocks: Vec<Block>) -> History {
        let days = days(&blocks);
        History { blocks, days }
    }

    fn has_days(&self) -> bool {
        self.days.iter().filter(|d| d.histogram.count > 0).count() >= MIN_DAYS
    }
}

/// Where the wobble between days is measured, for the design effect.
enum Wobble<'a> {
    /// Not at all: windows under [`MIN_DAYS`] days and no history.
    Unmeasured,
    /// In the windows' own days (the baseline's side of this design).
    Own(Design<'a>),
    /// In the days before the baseline, by blocks and by days, with how
    /// many days hold runs there and `1/d_now + 1/d_before` for the days
    /// (of 24 blocks) the windows hold.
    History {
        blocks: Design<'a>,
        days: Design<'a>,
        count: f64,
        weight: f64,
    },
}

impl Wobble<'_> {
    /// The history's extra variance of the windows' difference, from
    /// estimates `by_blocks` and `by_days` (on their baseline's side) of the
    /// same statistic over the history, divided by `scale²`: one day's
    /// variance beyond what its blocks predict (`k·(V_days − V_blocks)` over
    /// `k` days), times `1/d_now + 1/d_before`; with its degrees of freedom.
    fn extra(&self, by_blocks: &Estimate, by_days: &Estimate, scale: f64) -> Option<(f64, f64)> {
        let Wobble::History { count, weight, .. } = self else {
            return None;
        };
        let per_day = count * (by_days.variance() - by_blocks.variance()).max(0.0) / (scale * scale);
        (per_day.is_finite() && per_day > 0.0).then_some((per_day * weight, count - 1.0))
    }
}

/// The two ways one subject's periods are compared: block by block within
/// times of day, and (over [`MIN_DAYS`] days or more each) day by day. The
/// days measure, in the baseline, how much more whole days wobble than the
/// blocks predict (a design effect, [`design_effect`]); every test's
/// standard error is widened by it, so that a wobble shared by every hour of
/// a day (a day-long incident, a weekly batch) counts once per day, not once
/// per hour. The baseline's days, not the current window's: a change that
/// began mid-window makes the current days differ by the change itself.
/// Windows too short for that (under [`MIN_DAYS`] days each, with hour
/// blocks) take the design effect from the days before the baseline
/// ([`History`]): how much a day's hours move together does not depend on
/// how many days a window holds.
struct Designs<'a> {
    blocks: Design<'a>,
    wobble: Wobble<'a>,
}

/// The baseline's variance by days over its variance by blocks, at least 1:
/// how much the blocks' variance understates the noise of a whole window.
fn design_effect(by_blocks: &Estimate, by_days: Option<&Estimate>) -> f64 {
    match by_days {
        Some(days) if by_blocks.variance() > 0.0 => (days.variance() / by_blocks.variance()).max(1.0),
        _ => 1.0,
    }
}

/// `difference` with its standard error widened by `design_effect`.
fn widened(difference: Difference, design_effect: f64) -> Difference {
    Difference {
        standard_error: difference.standard_error * design_effect.sqrt(),
        ..difference
    }
}

/// The designs of one subject: by blocks, and by `days` (its blocks merged
/// per day, [`days`]) when each window has [`MIN_DAYS`] of them with runs,
/// else by its `history` when it has them there.
fn designs<'a>(
    current: &'a [Block],
    previous: &'a [Block],
    days: &'a [Vec<Block>; 2],
    history: Option<&'a History>,
) -> Result<Designs<'a>, TooThin> {
    let blocks = Design::new(current, previous)?;
    let enough = days
        .iter()
        .all(|side| side.iter().filter(|d| d.histogram.count > 0).count() >= MIN_DAYS);
    let own = enough
        .then(|| Design::new(&days[CURRENT], &days[PREVIOUS]).ok())
        .flatten();
    let wobble = match (own, history.filter(|h| h.has_days())) {
        (Some(days), _) => Wobble::Own(days),
        (None, Some(history)) => match (
            Design::new(&history.blocks, &history.blocks),
            Design::new(&history.days, &history.days),
        ) {
            (Ok(history_blocks), Ok(days)) => {
                let held = |side: usize| (blocks.blocks[side] as f64 / 24.0).max(1.0);
                Wobble::History {
                    blocks: history_blocks,
                    days,
                    count: history.days.iter().filter(|d| d.histogram.count > 0).count() as f64,
                    weight: 1.0 / held(CURRENT) + 1.0 / held(PREVIOUS),
                }
            }
            _ => Wobble::Unmeasured,
        },
        (None, None) => Wobble::Unmeasured,
    };
    Ok(Designs { blocks, wobble })
}

/// The mean's difference, widened by the days' design effect.
fn mean_test(designs: &Designs<'_>) -> Option<Difference> {
    let mean = |design: &Design<'_>, side| design.estimate(side, |h| h.sum);
    let difference = mean_difference(&designs.blocks)?;
    Some(match &designs.wobble {
        Wobble::Unmeasured => difference,
        Wobble::Own(days) => widened(
            difference,
            design_effect(&mean(&designs.blocks, PREVIOUS), Some(&mean(days, PREVIOUS))),
        ),
        wobble @ Wobble::History { blocks, days, .. } => {
            let (by_blocks, by_days) = (mean(blocks, PREVIOUS), mean(days, PREVIOUS));
            match wobble.extra(&by_blocks, &by_days, by_blocks.value) {
                Some((extra, df)) => difference.with_part(extra, df),
                None => difference,
            }
        }
    })
}

/// The mean's test: log of the post-stratified means.
fn mean_difference(design: &Design<'_>) -> Option<Difference> {
    let [now, before] = [CURRENT, PREVIOUS].map(|side| design.estimate(side, |h| h.sum));
    (now.value > 0.0 && before.value > 0.0).then(|| {
        Difference::new(
            now.value.ln() - before.value.ln(),
            [
                (&now, 1.0 / (now.value * now.value)),
                (&before, 1.0 / (before.value * before.value)),
            ],
        )
    })
}

/// The share test at the upper edge of bucket `edge`: positive when fewer
/// runs are at or below it now (slower).
fn share_difference(edges: &Edges<'_, '_>, edge: i32) -> Difference {
    let [now, before] = [CURRENT, PREVIOUS].map(|side| edges.share(side, edge));
    Difference::new(before.value - now.value, [(&now, 1.0), (&before, 1.0)])
}

/// Tests every metric of one subject (the q-values left at 1).
fn tests(designs: &Designs<'_>, estimated: bool) -> Tests {
    let result = |test: TestKind, difference: Difference, shares_above: Option<(f64, f64)>| {
        let (statistic, p_value) = difference.statistic().zip(difference.p_value())?;
        Some(TestResult {
            test,
            statistic,
            degrees_of_freedom: difference.degrees_of_freedom,
            p_value,
            q_value: 1.0,
            shares_above,
            interval: None,
        })
    };
    let mut tests = Tests::default();
    if let Some(difference) = mean_test(designs) {
        tests.mean = result(TestKind::BlockMean, difference, None);
    }
    if estimated {
        return tests;
    }
    let edges = designs.blocks.edges();
    let indexes = edges.indexes();
    // Where each share's design effect is read: at the same bucket edge in
    // the baseline's own days, or at the history's bucket for the same
    // quantile in its blocks and days.
    let own_days = match &designs.wobble {
        Wobble::Own(days) => Some(days.edges()),
        _ => None,
    };
    let history = match &designs.wobble {
        Wobble::History { blocks, days, .. } => {
            let blocks = blocks.edges();
            let indexes = blocks.indexes();
            Some((blocks, indexes, days.edges()))
        }
        _ => None,
    };
    for (metric, level) in QUANTILES {
        let Some(position) = edges.quantile_position(PREVIOUS, &indexes, level) else {
            continue;
        };
        let edge = indexes[position];
        let [now, before] = [CURRENT, PREVIOUS].map(|side| edges.share(side, edge).value);
        let mut difference = share_difference(&edges, edge);
        if let Some(days) = &own_days {
            let effect = design_effect(&edges.share(PREVIOUS, edge), Some(&days.share(PREVIOUS, edge)));
            difference = widened(difference, effect);
        } else if let Some((blocks, indexes, days)) = &history {
            let extra = blocks.quantile_position(PREVIOUS, indexes, level).and_then(|position| {
                let edge = indexes[position];
                designs
                    .wobble
                    .extra(&blocks.share(PREVIOUS, edge), &days.share(PREVIOUS, edge), 1.0)
            });
            if let Some((extra, df)) = extra {
                difference = difference.with_part(extra, df);
            }
        }
        *tests.slot(metric) = result(TestKind::BlockShare, difference, Some((1.0 - now, 1.0 - before)));
    }
    tests
}

/// The interval for `metric`'s relative change at confidence `1 − miss`.
fn interval(designs: &Designs<'_>, metric: Metric, miss: f64) -> Option<(f64, f64)> {
    if metric == Metric::Mean {
        let (low, high) = mean_test(designs)?.interval(miss)?;
        return Some((low.exp() - 1.0, high.exp() - 1.0));
    }
    let level = QUANTILES.iter().find(|(m, _)| *m == metric)?.1;
    let edges = designs.blocks.edges();
    let indexes = edges.indexes();
    // Each period's bounds at half the miss: both hold together at 1 − miss.
    let [(now_low, now_high), (before_low, before_high)] =
        [CURRENT, PREVIOUS].map(|side| edges.quantile_bounds(side, &indexes, level, miss / 2.0));
    let high = if before_low > 0.0 {
        now_high / before_low - 1.0
    } else {
        f64::INFINITY
    };
    let low = if before_high.is_finite() && before_high > 0.0 {
        now_low / before_high - 1.0
    } else {
        -1.0
    };
    Some((low, high))
}

/// The metrics, in the order they are listed.
const METRICS: [Metric; 4] = [Metric::P50, Metric::P95, Metric::P99, Metric::Mean];

/// A metric's relative change as judged, given its interval: for the mean
/// the post-stratified means' (the interval's centre on the log scale), for
/// a percentile the merged periods' quantiles' kept inside the interval.
fn judged_relative(verdict: &Verdict, metric: Metric, low: f64, high: f64) -> Option<f64> {
    match metric {
        Metric::Mean => Some(((1.0 + low) * (1.0 + high)).sqrt() - 1.0),
        _ => {
            let relative = verdict.changes.get(metric).relative?;
            Some(if low <= high {
                relative.clamp(low, high)
            } else {
                relative
            })
        }
    }
}

/// The first test of [`judge_all`] a metric's change fails, in the order
/// they are applied; later ones are closer to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gate {
    /// Its q-value is not below the rule's threshold: it may be noise.
    NotSignificant,
    /// No interval could be had for its size.
    NoInterval,
    /// Its size and its test point opposite ways.
    Direction,
    /// It moved by less than the rule's minimum change.
    Small,
    /// Its interval holds changes under half the minimum.
    Unresolved,
    /// It passes every test: it can be called.
    Passed,
}

/// Which gate a significant change of `relative` (its interval `low` to
/// `high`, slower by its test when `slower`) stops at under `rule`: its
/// direction, its size, then whether its interval excludes every change
/// under half the minimum (so 0 too).
fn gate(rule: &RegressionRule, slower: bool, relative: f64, low: f64, high: f64) -> Gate {
    let floor = rule.min_change / 2.0;
    if (relative > 0.0) != slower {
        Gate::Direction
    } else if relative.abs() < rule.min_change {
        Gate::Small
    } else if !(if slower { low > floor } else { high < -floor }) {
        Gate::Unresolved
    } else {
        Gate::Passed
    }
}

/// How one transaction's periods compare, for people asking why it was (or
/// was not) called: what [`explain`] adds to its [`Verdict`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The runs of each period in bands cut at the baseline's p50, p95 and
    /// p99; `None` when the baseline has no runs.
    pub bands: Option<Bands>,
    /// Each tested metric, in the order p50, p95, p99, mean.
    pub metrics: Vec<MetricDetail>,
}

impl Explanation {
    /// One metric's detail, when it was tested.
    pub fn metric(&self, metric: Metric) -> Option<&MetricDetail> {
        self.metrics.iter().find(|d| d.metric == metric)
    }
}

/// A coarse view of both periods' histograms: the share of each period's
/// runs at or below the baseline's p50, between it and its p95, between
/// that and its p99, and above.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bands {
    /// The cuts, seconds: the baseline's p50, p95 and p99.
    pub edges: [f64; 3],
    /// Shares of the current period's runs in the four bands.
    pub current: [f64; 4],
    /// Shares of the previous period's runs in the four bands.
    pub previous: [f64; 4],
}

/// One tested metric, explained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricDetail {
    /// The metric.
    pub metric: Metric,
    /// Its relative change as judged (post-stratified for the mean).
    pub relative: Option<f64>,
    /// The interval for it: the verdict's (at the calls' level) when its
    /// q-value is below the rule's threshold, else at `1 − threshold`.
    pub interval: Option<Interval>,
    /// Share test: the bucket edge whose share is compared, seconds.
    pub edge: Option<f64>,
    /// Share test: how wide the buckets are there, relative (0.0054 is 0.54%):
    /// no percentile change smaller than this can be seen.
    pub resolution: Option<f64>,
    /// The value of each block with runs that the test compares,
    /// `[current, previous]`: its mean duration (seconds) for the mean,
    /// the share of its runs above the edge for a percentile.
    pub per_block: [Spread; 2],
}

/// Smallest, median and largest of some values (zeros when there are none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    /// The smallest.
    pub min: f64,
    /// The median.
    pub median: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        match (values.first(), values.last()) {
            (Some(&min), Some(&max)) => {
                let n = values.len();
                let median = if n % 2 == 1 {
                    values[n / 2]
                } else {
                    (values[n / 2 - 1] + values[n / 2]) / 2.0
                };
                Spread { min, median, max }
            }
            _ => Spread::default(),
        }
    }
}

/// What `verdict` (judged by [`judge_all`] from `subject`, its blocks
/// `[current, previous]`, under `rule`) rests on: both periods' runs in
/// bands, and for each tested metric its interval, bucket edge and
/// resolution, and the per-block values its test compares. Computed only
/// for the subjects someone asks about: it reads every block again.
pub fn explain(
    subject: &[Vec<Block>; 2],
    history: Option<&History>,
    verdict: &Verdict,
    rule: &RegressionRule,
) -> Explanation {
    let [current, previous] = subject;
    let [now, before] = [merged(current), merged(previous)];
    let bands = (before.count > 0).then(|| {
        let edges = [0.50, 0.95, 0.99].map(|q| before.quantile(q));
        let cut = |h: &Histogram| {
            let [a, b, c] = edges.map(|edge| h.fraction_above(edge));
            [1.0 - a, a - b, b - c, c]
        };
        Bands {
            edges,
            current: cut(&now),
            previous: cut(&before),
        }
    });
    let day_blocks = [days(current), days(previous)];
    let designs = designs(current, previous, &day_blocks, history).ok();
    let edges = designs.as_ref().map(|d| d.blocks.edges());
    let indexes = edges.as_ref().map(Edges::indexes).unwrap_or_default();
    let metrics = METRICS
        .into_iter()
        .filter_map(|metric| {
            let test = verdict.tests.get(metric)?;
            let bounds = test.interval.or_else(|| {
                let (low, high) = interval(designs.as_ref()?, metric, rule.p_value)?;
                Some(Interval {
                    low,
                    high,
                    confidence: 1.0 - rule.p_value,
                })
            });
            let level = QUANTILES.iter().find(|(m, _)| *m == metric).map(|q| q.1);
            let bucket = edges.as_ref().zip(level).and_then(|(edges, level)| {
                let position = edges.quantile_position(PREVIOUS, &indexes, level)?;
                Some(bucket_bounds(indexes[position], edges.scale))
            });
            let edge = bucket.map(|(_, high)| high);
            let value = |h: &Histogram| match edge {
                Some(edge) => h.fraction_above(edge),
                None => h.mean(),
            };
            let per_block = [current, previous].map(|blocks| {
                Spread::of(
                    blocks
                        .iter()
                        .filter(|b| b.histogram.count > 0)
                        .map(|b| value(&b.histogram))
                        .collect(),
                )
            });
            Some(MetricDetail {
                metric,
                relative: bounds
                    .and_then(|i| judged_relative(verdict, metric, i.low, i.high))
                    .or(verdict.changes.get(metric).relative),
                interval: bounds,
                edge,
                resolution: bucket.filter(|(low, _)| *low > 0.0).map(|(low, high)| high / low - 1.0),
                per_block,
            })
        })
        .collect();
    Explanation { bands, metrics }
}

/// Each tested metric of `verdict` with the gate it stopped at and why, in
/// words: "p95 +3.1% (-1.0% to +7.0%), q = 0.410, not below 0.01". The
/// intervals and resolutions come from `explanation` when given.
pub fn metric_reasons(
    verdict: &Verdict,
    rule: &RegressionRule,
    explanation: Option<&Explanation>,
) -> Vec<(Metric, Gate, String)> {
    let alpha = rule.p_value;
    let minimum = crate::format::percent(rule.min_change);
    METRICS
        .into_iter()
        .filter_map(|metric| {
            let test = verdict.tests.get(metric)?;
            let detail = explanation.and_then(|e| e.metric(metric));
            let bounds = test.interval.or(detail.and_then(|d| d.interval));
            let relative = bounds
                .and_then(|i| judged_relative(verdict, metric, i.low, i.high))
                .or(verdict.changes.get(metric).relative);
            let q = crate::format::q_value(test.q_value);
            let gate = match (test.q_value < alpha, bounds, relative) {
                (false, _, _) => Gate::NotSignificant,
                (true, Some(i), Some(relative)) => gate(rule, test.statistic > 0.0, relative, i.low, i.high),
                _ => Gate::NoInterval,
            };
            let resolution = detail.and_then(|d| d.resolution);
            let why = match gate {
                Gate::NotSignificant => format!("{q}, not below {alpha}"),
                Gate::NoInterval => format!("{q}, but no interval could be had for its size"),
                Gate::Direction => format!("{q}, but its size and its test point opposite ways"),
                Gate::Small => match resolution {
                    Some(r) if relative.is_some_and(|c| c.abs() < r) => format!(
                        "{q}, but the change is below the buckets' resolution ({} wide here) and the minimum change {minimum}",
                        crate::format::percent(r)
                    ),
                    _ => format!("{q}, but below the minimum change {minimum}"),
                },
                Gate::Unresolved => format!(
                    "{q}, but its interval holds changes under {}",
                    crate::format::percent(rule.min_change / 2.0)
                ),
                Gate::Passed => format!("{q} below {alpha}, at least {minimum}, its interval clear of smaller changes"),
            };
            let size = match (relative, bounds) {
                (Some(r), Some(i)) => format!("{metric} {} ({})", percent(r), i),
                (Some(r), None) => format!("{metric} {}", percent(r)),
                (None, _) => metric.to_string(),
            };
            Some((metric, gate, format!("{size}, {why}")))
        })
        .collect()
}

/// Why `verdict` was or was not called under `rule`, in one sentence:
/// "called a regression: p95 +12% (+9.0% to +15%), q = 0.004 below 0.01 …",
/// "not called: p95 +3.1% (-1.0% to +7.0%), q = 0.410, not below 0.01",
/// "not judged: 12 runs now, fewer than 100". A change not called names the
/// metric that came closest to a call (the furthest gate, then the largest
/// move); `explanation` supplies the intervals of metrics not significant.
pub fn reason(verdict: &Verdict, rule: &RegressionRule, explanation: Option<&Explanation>) -> String {
    let count = crate::format::count;
    match (verdict.outcome, verdict.trigger) {
        (Outcome::Regression | Outcome::Improvement, Some(t)) => format!(
            "called {}: {} {} ({}), {} below {}, at least {} and its interval clear of changes under {}",
            if verdict.outcome == Outcome::Regression {
                "a regression"
            } else {
                "an improvement"
            },
            t.metric,
            percent(t.relative),
            interval_text(t.low, t.high),
            crate::format::q_value(t.q_value),
            rule.p_value,
            crate::format::percent(rule.min_change),
            crate::format::percent(rule.min_change / 2.0),
        ),
        (Outcome::TooLittleTraffic, _) => {
            let (now, before, least) = (verdict.current_count, verdict.previous_count, rule.min_count);
            match (now < least, before < least, verdict.shared_runs) {
                (true, true, _) => format!(
                    "not judged: {} runs now and {} before, fewer than {} in each",
                    count(now),
                    count(before),
                    count(least)
                ),
                (true, false, _) => format!("not judged: {} runs now, fewer than {}", count(now), count(least)),
                (false, true, _) => format!("not judged: {} runs before, fewer than {}", count(before), count(least)),
                (false, false, Some([now, before])) => format!(
                    "not judged: the periods share too few times of day with runs ({} of this period's runs and {} of the previous one's are in hours both hold; {} of each is needed)",
                    crate::format::percent(now),
                    crate::format::percent(before),
                    crate::format::percent(MIN_COVERAGE)
                ),
                (false, false, None) => "not judged: the periods could not be compared block by block".to_owned(),
            }
        }
        _ => {
            let reasons = metric_reasons(verdict, rule, explanation);
            let size = |metric: Metric| verdict.changes.get(metric).relative.map_or(0.0, f64::abs);
            let closest = reasons
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(size(a.0).total_cmp(&size(b.0))));
            match closest {
                Some((_, _, why)) => format!("not called: {why}"),
                None => "not called: no metric could be tested (no variance between blocks)".to_owned(),
            }
        }
    }
}

/// Judges every subject, each given as its blocks `[current, previous]`,
/// under `rule`, as one answer: the verdicts, in the subjects' order.
///
/// Each subject with at least [`RegressionRule::min_count`] runs in each
/// period and enough times of day in common ([`Design::new`]) has its mean
/// and (unless estimated) p50, p95 and p99 tested; all their p-values are
/// adjusted together ([`benjamini_hochberg`]). A metric qualifies when its
/// q-value is below `rule.p_value`, its change is at least
/// `rule.min_change` and points the way its test does, and its interval at
/// confidence `1 − R·α/m` (`R` tests with q below `α = rule.p_value`, of `m`)
/// excludes every change smaller than half of `rule.min_change` (so 0 too). The largest qualifying slowdown among p50, p95 and mean makes
/// a regression, p99 only when none of them qualifies; failing any slowdown,
/// the speed-ups are picked the same way for an improvement (a slower tail
/// outweighs a faster median).
pub fn judge_all(subjects: &[[Vec<Block>; 2]], rule: &RegressionRule) -> Vec<Verdict> {
    judge_all_with_history(subjects, &[], rule)
}

/// [`judge_all`], with each subject's [`History`] (`histories[i]` for
/// `subjects[i]`; missing or `None` for none): windows under [`MIN_DAYS`]
/// days take the design effect for the wobble between days from it.
pub fn judge_all_with_history(
    subjects: &[[Vec<Block>; 2]],
    histories: &[Option<History>],
    rule: &RegressionRule,
) -> Vec<Verdict> {
    let history = |i: usize| histories.get(i).and_then(Option::as_ref);
    let mut verdicts: Vec<Verdict> = subjects
        .iter()
        .enumerate()
        .map(|(i, [current_blocks, previous_blocks])| {
            let day_blocks = [days(current_blocks), days(previous_blocks)];
            let [current, previous] = [CURRENT, PREVIOUS].map(|side| merged(&day_blocks[side]));
            let changes = Changes {
                p50: Change::new(previous.quantile(0.50), current.quantile(0.50)),
                p95: Change::new(previous.quantile(0.95), current.quantile(0.95)),
                p99: Change::new(previous.quantile(0.99), current.quantile(0.99)),
                mean: Change::new(previous.mean(), current.mean()),
            };
            let mut verdict = Verdict {
                outcome: Outcome::NoChange,
                trigger: None,
                changes,
                tests: Tests::default(),
                current_count: current.count,
                previous_count: previous.count,
                impact_seconds: impact_seconds(&current, &previous),
                estimated: current.estimated || previous.estimated,
                design: None,
                began_minute: None,
                shared_runs: None,
            };
            if current.count < rule.min_count || previous.count < rule.min_count {
                verdict.outcome = Outcome::TooLittleTraffic;
                return verdict;
            }
            match designs(current_blocks, previous_blocks, &day_blocks, history(i)) {
                Ok(designs) => {
                    verdict.tests = tests(&designs, verdict.estimated);
                    let design = &designs.blocks;
                    verdict.design = Some(DesignSummary {
                        current_blocks: design.blocks[CURRENT],
                        previous_blocks: design.blocks[PREVIOUS],
                        stratum_hours: design.stratum_hours,
                    });
                }
                Err(thin) => {
                    verdict.outcome = Outcome::TooLittleTraffic;
                    verdict.shared_runs = Some(thin.coverage);
                }
            }
            verdict
        })
        .collect();
    // Every test of the answer, adjusted together.
    let mut tested: Vec<(usize, Metric, f64)> = Vec::new();
    for (i, verdict) in verdicts.iter().enumerate() {
        for metric in METRICS {
            if let Some(test) = verdict.tests.get(metric) {
                tested.push((i, metric, test.p_value));
            }
        }
    }
    let q_values = benjamini_hochberg(&tested.iter().map(|t| t.2).collect::<Vec<_>>());
    let discoveries = q_values.iter().filter(|&&q| q < rule.p_value).count();
    for (&(i, metric, _), &q) in tested.iter().zip(&q_values) {
        if let Some(test) = verdicts[i].tests.slot(metric) {
            test.q_value = q;
        }
    }
    // The false-coverage-rate level for the intervals of the calls.
    let miss = discoveries as f64 * rule.p_value / tested.len().max(1) as f64;
    for (i, verdict) in verdicts.iter_mut().enumerate() {
        let mut candidates: Vec<(Metric, TestResult)> = METRICS
            .into_iter()
            .filter_map(|metric| verdict.tests.get(metric).map(|test| (metric, test)))
            .filter(|(_, test)| test.q_value < rule.p_value)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let [current, previous] = &subjects[i];
        let day_blocks = [days(current), days(previous)];
        let Ok(design) = designs(current, previous, &day_blocks, history(i)) else {
            continue;
        };
        // Each candidate's interval, kept for the explanation.
        for (metric, test) in &mut candidates {
            test.interval = interval(&design, *metric, miss).map(|(low, high)| Interval {
                low,
                high,
                confidence: 1.0 - miss,
            });
            if let Some(slot) = verdict.tests.slot(*metric) {
                slot.interval = test.interval;
            }
        }
        let qualifying: Vec<Trigger> = candidates
            .into_iter()
            .filter_map(|(metric, test)| {
                let Interval { low, high, .. } = test.interval?;
                let relative = judged_relative(verdict, metric, low, high)?;
                let slower = test.statistic > 0.0;
                (gate(rule, slower, relative, low, high) == Gate::Passed).then_some(Trigger {
                    metric,
                    relative,
                    low,
                    high,
                    test: test.test,
                    p_value: test.p_value,
                    q_value: test.q_value,
                })
            })
            .collect();
        // The largest move one way, p99 only as a last resort.
        let pick = |slower: bool| {
            let one_way = || qualifying.iter().filter(move |t| (t.relative > 0.0) == slower);
            one_way()
                .filter(|t| t.metric != Metric::P99)
                .max_by(|x, y| x.relative.abs().total_cmp(&y.relative.abs()))
                .or_else(|| one_way().next())
                .copied()
        };
        if let Some(trigger) = pick(true) {
            verdict.outcome = Outcome::Regression;
            verdict.trigger = Some(trigger);
        } else if let Some(trigger) = pick(false) {
            verdict.outcome = Outcome::Improvement;
            verdict.trigger = Some(trigger);
        }
        if verdict.trigger.is_some() {
            let mut all: Vec<&Block> = previous.iter().chain(current).collect();
            all.sort_by_key(|b| b.start);
            let first_current = current.iter().map(|b| b.start).min();
            verdict.began_minute = change_point(&all).filter(|&m| first_current.is_some_and(|f| m >= f));
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};
    use rand_distr::{Distribution, LogNormal};

    use super::*;

    /// A day-aligned minute.
    const START: i64 = 20_122 * 1_440;

    /// `hours` hourly blocks from `first_hour`, `runs` log-normal latencies
    /// each (median 50 ms, sigma 0.5) times `factor`, seeded.
    fn blocks(seed: u64, first_hour: i64, hours: i64, runs: usize, factor: f64) -> Vec<Block> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let shape = LogNormal::new(0.05f64.ln(), 0.5).expect("a valid sigma");
        (first_hour..first_hour + hours)
            .map(|hour| {
                let mut histogram = Histogram::empty();
                for _ in 0..runs {
                    histogram.record(shape.sample(&mut rng) * factor).unwrap();
                }
                Block {
                    start: START + hour * 60,
                    histogram,
                }
            })
            .collect()
    }

    /// A week against the week before, `factor` applied to the current one.
    fn weekly(seed: u64, runs: usize, factor: f64) -> [Vec<Block>; 2] {
        [
            blocks(2 * seed, 168, 168, runs, factor),
            blocks(2 * seed + 1, 0, 168, runs, 1.0),
        ]
    }

    #[test]
    fn benjamini_hochberg_matches_the_textbook() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.005), "BH") in R.
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.02, 0.04, 0.04, 0.02];
        for (q, e) in q.iter().zip(expected) {
            assert!((q - e).abs() < 1e-12, "{q} {e}");
        }
        assert!(benjamini_hochberg(&[]).is_empty());
    }

    #[test]
    fn noise_is_no_change_and_a_slowdown_is_called_with_an_interval_that_holds_it() {
        let subjects: Vec<[Vec<Block>; 2]> = (0..20)
            .map(|seed| weekly(seed, 30, 1.0))
            .chain([weekly(99, 30, 1.25)])
            .collect();
        let verdicts = judge_all(&subjects, &RegressionRule::default());
        let called = verdicts[..20].iter().filter(|v| v.outcome != Outcome::NoChange).count();
        assert_eq!(
            called,
            0,
            "{:?}",
            verdicts.iter().map(|v| v.trigger).collect::<Vec<_>>()
        );
        let slower = verdicts[20];
        assert_eq!(slower.outcome, Outcome::Regression, "{slower:?}");
        let trigger = slower.trigger.unwrap();
        assert!(trigger.low <= 0.25 && 0.25 <= trigger.high, "{trigger}");
        assert!(
            trigger.low > 0.05 && trigger.q_value < 0.01 && trigger.q_value >= trigger.p_value,
            "{trigger}"
        );
        assert_eq!(
            slower.design,
            Some(DesignSummary {
                current_blocks: 168,
                previous_blocks: 168,
                stratum_hours: 1
            })
        );
        // Every tested metric carries its q-value.
        let mean = slower.tests.mean.unwrap();
        assert_eq!(mean.test, TestKind::BlockMean);
        assert!(mean.q_value >= mean.p_value);
    }

    #[test]
    fn faster_is_an_improvement() {
        let verdict = judge_all(&[weekly(7, 30, 0.7)], &RegressionRule::default())[0];
        assert_eq!(verdict.outcome, Outcome::Improvement);
        let trigger = verdict.trigger.unwrap();
        assert!(trigger.low <= -0.30 && -0.30 <= trigger.high, "{trigger}");
        assert!(verdict.impact_seconds < 0.0);
    }

    #[test]
    fn small_change_on_huge_traffic_is_significant_but_not_a_regression() {
        let verdict = judge_all(&[weekly(3, 300, 1.05)], &RegressionRule::default())[0];
        assert!(verdict.tests.mean.unwrap().p_value < 1e-6, "{verdict:?}");
        assert_eq!(verdict.outcome, Outcome::NoChange, "{verdict:?}");
        // A looser size gate calls the same data a regression.
        let loose = RegressionRule {
            min_change: 0.03,
            ..RegressionRule::default()
        };
        assert_eq!(
            judge_all(&[weekly(3, 300, 1.05)], &loose)[0].outcome,
            Outcome::Regression
        );
    }

    #[test]
    fn too_few_runs_or_blocks_are_not_evidence() {
        let rule = RegressionRule::default();
        // Too few runs.
        let verdict = judge_all(&[[blocks(5, 168, 10, 5, 3.0), blocks(6, 0, 10, 5, 1.0)]], &rule)[0];
        assert_eq!(verdict.outcome, Outcome::TooLittleTraffic);
        assert_eq!((verdict.current_count, verdict.previous_count), (50, 50));
        // Plenty of runs, all in one hour each: no variance between blocks to judge by.
        let verdict = judge_all(&[[blocks(5, 168, 1, 5_000, 3.0), blocks(6, 0, 1, 5_000, 1.0)]], &rule)[0];
        assert_eq!(verdict.outcome, Outcome::TooLittleTraffic, "{verdict:?}");
        assert_eq!(verdict.design, None);
    }

    #[test]
    fn a_shift_inside_explicit_buckets_is_judged_by_the_mean_alone() {
        // Explicit bounds 25/50/100/250 ms: the percentiles are not tested;
        // the mean (exact from the sums) is, and calls the +30%.
        let explicit = |blocks: Vec<Block>| -> Vec<Block> {
            let bounds = [0.025, 0.05, 0.1, 0.25];
            blocks
                .into_iter()
                .map(|b| {
                    let mut counts = [0u64; 5];
                    for (index, count) in b.histogram.iter_buckets() {
                        let value = bucket_bounds(index, b.histogram.scale).1;
                        counts[bounds.partition_point(|&e| e < value)] += count;
                    }
                    let histogram =
                        Histogram::from_explicit(&bounds, &counts, b.histogram.count, Some(b.histogram.sum), None)
                            .unwrap();
                    Block {
                        start: b.start,
                        histogram,
                    }
                })
                .collect()
        };
        let [now, before] = weekly(11, 30, 1.3);
        let verdict = judge_all(&[[explicit(now), explicit(before)]], &RegressionRule::default())[0];
        assert!(verdict.estimated);
        assert_eq!((verdict.tests.p50, verdict.tests.p95), (None, None));
        let trigger = verdict.trigger.unwrap();
        assert_eq!(
            (trigger.metric, trigger.test),
            (Metric::Mean, TestKind::BlockMean),
            "{trigger}"
        );
        assert!(trigger.low <= 0.3 && 0.3 <= trigger.high, "{trigger}");
    }

    #[test]
    fn percentile_intervals_come_from_bucket_edges() {
        let subject = weekly(13, 60, 1.4);
        let verdict = judge_all(std::slice::from_ref(&subject), &RegressionRule::default())[0];
        assert_eq!(verdict.outcome, Outcome::Regression);
        let p95 = verdict.tests.p95.unwrap();
        assert_eq!(p95.test, TestKind::BlockShare);
        let (now, before) = p95.shares_above.unwrap();
        // P(1.4·X > p95) = Φ(ln 1.4 / 0.5 − 1.645) ≈ 0.17.
        assert!((now - 0.17).abs() < 0.02 && before < 0.06, "{now} {before}");
        // The agent's buckets are 0.54% wide: the p95 interval (99.9%) is the noise's, around +40%.
        let day_blocks = [days(&subject[0]), days(&subject[1])];
        let designs = designs(&subject[0], &subject[1], &day_blocks, None).unwrap();
        let (low, high) = interval(&designs, Metric::P95, 0.001).unwrap();
        assert!(low < 0.4 && 0.4 < high && high - low < 0.3, "{low} {high}");
    }

    #[test]
    fn errors_grow_only_beyond_the_traffic_and_the_noise() {
        let same_traffic = 1_000_000.0;
        // The steady group: 1,805 against 1,791.
        assert!(!error_growing(1_805, 1_791, same_traffic, same_traffic, 0.01));
        assert!(error_growth_p(1_805, 1_791, same_traffic, same_traffic) > 0.3);
        // Doubled on the same traffic: growing.
        assert!(error_growing(400, 200, same_traffic, same_traffic, 0.01));
        // Doubled with the traffic: not growing.
        assert!(!error_growing(400, 200, 2.0 * same_traffic, same_traffic, 0.01));
        // Too few to call, however steep.
        assert!(!error_growing(6, 0, same_traffic, same_traffic, 0.01));
        // Exact: 10 of 10 in the current half of the runs, p = 2⁻¹⁰.
        assert!((error_growth_p(10, 0, 1.0, 1.0) - 0.5f64.powi(10)).abs() < 1e-12);
        assert_eq!(error_growth_p(0, 5, 1.0, 1.0), 1.0);
    }

    #[test]
    fn a_change_mid_window_is_dated_to_its_hour() {
        // Two weeks of hours; from hour 250 (the current week's 83rd) 40% slower.
        let before = blocks(21, 0, 250, 40, 1.0);
        let after = blocks(22, 250, 86, 40, 1.4);
        let all: Vec<&Block> = before.iter().chain(&after).collect();
        let began = change_point(&all).unwrap();
        assert!((began - (START + 250 * 60)).abs() <= 2 * 60, "{}", (began - START) / 60);
        // Through judge_all: the regression says when.
        let current: Vec<Block> = before[168..].iter().chain(&after).cloned().collect();
        let verdict = judge_all(&[[current, before[..168].to_vec()]], &RegressionRule::default())[0];
        assert_eq!(verdict.outcome, Outcome::Regression, "{verdict:?}");
        let began = verdict.began_minute.unwrap();
        assert!((began - (START + 250 * 60)).abs() <= 2 * 60, "{}", (began - START) / 60);
    }

    /// p95 +12% (+9% to +15%), q = 0.004.
    fn p95_plus_12() -> Trigger {
        Trigger {
            metric: Metric::P95,
            relative: 0.12,
            low: 0.09,
            high: 0.15,
            test: TestKind::BlockShare,
            p_value: 0.0004,
            q_value: 0.004,
        }
    }

    /// A verdict of `outcome` with 1,000 runs a period, p95 and mean as given.
    fn verdict(outcome: Outcome, p95: (f64, f64), mean: (f64, f64)) -> Verdict {
        Verdict {
            outcome,
            trigger: None,
            changes: Changes {
                p50: Change::new(0.05, 0.05),
                p95: Change::new(p95.0, p95.1),
                p99: Change::new(0.2, 0.2),
                mean: Change::new(mean.0, mean.1),
            },
            tests: Tests::default(),
            current_count: 1_000,
            previous_count: 1_000,
            impact_seconds: 0.0,
            estimated: false,
            design: None,
            began_minute: None,
            shared_runs: None,
        }
    }

    fn tested(test: TestKind, statistic: f64, q_value: f64, interval: Option<(f64, f64)>) -> Option<TestResult> {
        Some(TestResult {
            test,
            statistic,
            degrees_of_freedom: 160.0,
            p_value: q_value / 4.0,
            q_value,
            shares_above: None,
            interval: interval.map(|(low, high)| Interval {
                low,
                high,
                confidence: 0.999,
            }),
        })
    }

    fn detail(metric: Metric, low: f64, high: f64, resolution: Option<f64>) -> MetricDetail {
        MetricDetail {
            metric,
            relative: None,
            interval: Some(Interval {
                low,
                high,
                confidence: 0.99,
            }),
            edge: resolution.map(|_| 0.1),
            resolution,
            per_block: [Spread::default(); 2],
        }
    }

    #[test]
    fn the_reason_names_the_test_a_change_failed_with_its_numbers() {
        let rule = RegressionRule::default();
        // Noise: q far above 0.01; the interval comes from the explanation.
        let mut noise = verdict(Outcome::NoChange, (0.1, 0.1031), (0.05, 0.0501));
        noise.tests.p95 = tested(TestKind::BlockShare, 1.2, 0.41, None);
        noise.tests.mean = tested(TestKind::BlockMean, 0.3, 0.9, None);
        let explained = Explanation {
            bands: None,
            metrics: vec![detail(Metric::P95, -0.01, 0.07, Some(0.0054))],
        };
        assert_eq!(
            reason(&noise, &rule, Some(&explained)),
            "not called: p95 +3.1% (-1.0% to +7.0%), q = 0.410, not below 0.01"
        );
        // Without the explanation, the same without an interval.
        assert_eq!(
            reason(&noise, &rule, None),
            "not called: p95 +3.1%, q = 0.410, not below 0.01"
        );
        // Significant but finer than the buckets: the resolution says why.
        let mut fine = verdict(Outcome::NoChange, (0.1, 0.102), (0.05, 0.05));
        fine.tests.p95 = tested(TestKind::BlockShare, 4.0, 0.004, Some((0.01, 0.03)));
        let explained = Explanation {
            bands: None,
            metrics: vec![detail(Metric::P95, 0.01, 0.03, Some(0.044))],
        };
        assert_eq!(
            reason(&fine, &rule, Some(&explained)),
            "not called: p95 +2.0% (+1.0% to +3.0%), q = 0.004, but the change is below the buckets' resolution (4.4% wide here) and the minimum change 10%"
        );
        // Significant and large, but the interval reaches under 5%.
        let mut wide = verdict(Outcome::NoChange, (0.1, 0.1), (0.05, 0.056));
        wide.tests.mean = tested(TestKind::BlockMean, 3.5, 0.008, Some((0.03, 0.21)));
        assert_eq!(
            reason(&wide, &rule, None),
            "not called: mean +12% (+3.0% to +21%), q = 0.008, but its interval holds changes under 5.0%"
        );
        // Below the minimum change: the furthest gate wins over a larger noisy metric.
        wide.tests.mean = tested(TestKind::BlockMean, 3.5, 0.008, Some((0.06, 0.08)));
        wide.tests.p95 = tested(TestKind::BlockShare, 1.0, 0.5, None);
        wide.changes.p95 = Change::new(0.1, 0.13);
        assert_eq!(
            reason(&wide, &rule, None),
            "not called: mean +7.0% (+6.0% to +8.0%), q = 0.008, but below the minimum change 10%"
        );
        // Too few runs, and periods without hours in common.
        let mut thin = verdict(Outcome::TooLittleTraffic, (0.1, 0.1), (0.05, 0.05));
        thin.current_count = 12;
        let thirty = RegressionRule { min_count: 30, ..rule };
        assert_eq!(reason(&thin, &thirty, None), "not judged: 12 runs now, fewer than 30");
        thin.current_count = 1_000;
        thin.shared_runs = Some([0.3, 0.9]);
        assert_eq!(
            reason(&thin, &thirty, None),
            "not judged: the periods share too few times of day with runs (30% of this period's runs and 90% of the previous one's are in hours both hold; 50% of each is needed)"
        );
        // Called: the trigger's size, interval and q.
        let mut called = verdict(Outcome::Regression, (0.1, 0.112), (0.05, 0.05));
        called.trigger = Some(p95_plus_12());
        assert_eq!(
            reason(&called, &rule, None),
            "called a regression: p95 +12% (+9.0% to +15%), q = 0.004 below 0.01, at least 10% and its interval clear of changes under 5.0%"
        );
    }

    #[test]
    fn an_explanation_holds_both_distributions_and_the_blocks_of_each_test() {
        let subject = weekly(17, 30, 1.0);
        let rule = RegressionRule::default();
        let verdict = judge_all(std::slice::from_ref(&subject), &rule)[0];
        assert_eq!(verdict.outcome, Outcome::NoChange, "{verdict:?}");
        let explained = explain(&subject, None, &verdict, &rule);
        let bands = explained.bands.unwrap();
        // The baseline's own runs fall about 50/45/4/1% into bands cut at its percentiles.
        assert!(
            (bands.previous[0] - 0.5).abs() < 0.02 && (bands.previous[3] - 0.01).abs() < 0.01,
            "{bands:?}"
        );
        assert!((bands.current.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{bands:?}");
        let p95 = explained.metrics.iter().find(|d| d.metric == Metric::P95).unwrap();
        let interval = p95.interval.unwrap();
        assert!(
            interval.low < 0.0 && interval.high > 0.0 && interval.confidence == 0.99,
            "{interval:?}"
        );
        // The agent's buckets are 0.54% wide; about 5% of each block's runs are above the p95 edge.
        assert!((p95.resolution.unwrap() - 0.0054).abs() < 0.0002, "{p95:?}");
        assert!((p95.per_block[1].median - 0.05).abs() < 0.03, "{p95:?}");
        assert!(reason(&verdict, &rule, Some(&explained)).starts_with("not called: "));
    }

    #[test]
    fn trigger_reads_as_size_interval_and_evidence() {
        let trigger = p95_plus_12();
        assert_eq!(
            trigger.to_string(),
            "p95 +12% (+9.0% to +15%; p < 0.001, q = 0.004, block share test)"
        );
        assert_eq!(interval_text(0.2, f64::INFINITY), "+20% or more");
    }
}
