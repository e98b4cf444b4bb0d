//! Did a transaction get slower? The statistics that answer it from two
//! histograms of the same transaction over two periods (this week and last).
//!
//! A change is called a regression only when it is both *significant* and
//! *large*, as Sentry does (Welch's t-test, p < 0.01, at least 10%):
//!
//! - Significant: a test over the two periods' data says the difference is
//!   unlikely to be noise. [`welch`] tests the means (the mean is exact from
//!   sum and count; the variance is estimated from the buckets). [`rank_test`]
//!   is a Mann–Whitney U test over the buckets: it sees a shift of the bulk of
//!   the distribution and is not swayed by a few huge outliers the way the mean
//!   is. [`tail_test`] compares the share of runs above the previous period's
//!   p95 (or p99): a slower tail moves few pairs of runs, so the rank test barely
//!   notices it (runs above p90 30% slower: z ≈ 0.7 at 10k runs a period), while
//!   the share above p95 doubles (z ≈ 13).
//! - Large: the p50, p95, p99 or mean moved by at least [`RegressionRule::min_change`].
//!   This gate matters because the periods hold thousands of minutes, often
//!   millions of runs: with that much data a 1% change is overwhelmingly
//!   "significant" (p far below 0.01) yet nobody should be paged for it. The
//!   test guards against noise on quiet transactions; the size gate guards
//!   against trivia on busy ones.
//!
//! A metric only counts with the test that speaks for it (the mean with
//! Welch's test, p50 with the rank test, p95 and p99 with the tail test at
//! their quantile), and the test must point the same way as the change. p99
//! rests on 1% of the runs, so it decides only when p50, p95 and the mean do
//! not. [`RegressionRule::min_count`] refuses to judge transactions with too
//! few runs in either period.
//!
//! Histograms converted from explicit buckets (`estimated`) have their values
//! placed at one point per bucket: their percentiles and variance are coarse,
//! and the rank test sees huge tie groups (it stays valid but loses power, and
//! a change of bucket bounds between the periods would look like a shift); the
//! tail test can only cut at bucket edges, so it may see the tail grow while
//! the percentile, stuck at one point per bucket, does not move.
//! Such verdicts carry [`Verdict::estimated`] so a report can say so.

use std::collections::BTreeMap;
use std::fmt;

use statrs::function::{beta::checked_beta_reg, erf::erfc};

use crate::histogram::{bucket_bounds, bucket_index, Histogram};

/// Which test produced a [`TestResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// Welch's unequal-variances t-test on the means.
    Welch,
    /// Mann–Whitney U (Wilcoxon rank-sum) test, buckets as tie groups.
    MannWhitney,
    /// Two-proportion z-test on the share of runs above a previous quantile.
    Tail,
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TestKind::Welch => "Welch",
            TestKind::MannWhitney => "Mann-Whitney",
            TestKind::Tail => "tail share test",
        })
    }
}

/// The outcome of a two-sample test of `a` against `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestResult {
    /// The test.
    pub test: TestKind,
    /// t (Welch) or z (Mann–Whitney, tail); positive when `a` is the slower.
    pub statistic: f64,
    /// Welch–Satterthwaite degrees of freedom (Welch only).
    pub degrees_of_freedom: Option<f64>,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Probability of superiority (Mann–Whitney only): the chance that a run
    /// from `a` is slower than one from `b`, ties (same bucket) counting half.
    /// 0.5 means no difference.
    pub superiority: Option<f64>,
    /// Share of runs above the cut (tail only): (`a`'s, `b`'s), 0.1 is 10%.
    pub shares_above: Option<(f64, f64)>,
}

/// Welch's t-test on the means of `a` and `b`.
///
/// The means are exact (sum / count). Each variance is estimated from the
/// buckets, every bucket's count placed at its arithmetic midpoint (as
/// [`Histogram::quantile`] reads it) clamped into `[min, max]`, the zero
/// region's at half its threshold; no Sheppard correction (at scale 7 a bucket
/// is 0.54% wide). `None` when either side has fewer than two values or both
/// estimated variances are zero (every value in one bucket).
pub(crate) fn welch(a: &Histogram, b: &Histogram) -> Option<TestResult> {
    let (va, vb) = (bucket_variance(a)?, bucket_variance(b)?);
    welch_from_moments((a.mean(), va, a.count as f64), (b.mean(), vb, b.count as f64))
}

/// Welch's test from (mean, sample variance, count) of each side.
fn welch_from_moments((ma, va, na): (f64, f64, f64), (mb, vb, nb): (f64, f64, f64)) -> Option<TestResult> {
    if na < 2.0 || nb < 2.0 {
        return None;
    }
    let (sa, sb) = (va / na, vb / nb);
    let se2 = sa + sb;
    if !(se2 > 0.0 && se2.is_finite()) {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    // Two-sided tail of Student's t: I_{df/(df+t²)}(df/2, 1/2).
    let p_value = checked_beta_reg(df / 2.0, 0.5, df / (df + t * t)).ok()?;
    t.is_finite().then_some(TestResult {
        test: TestKind::Welch,
        statistic: t,
        degrees_of_freedom: Some(df),
        p_value,
        superiority: None,
        shares_above: None,
    })
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

/// Mann–Whitney U test of `a` against `b` over their buckets.
///
/// Both are brought to the coarser of their scales (on copies); each bucket,
/// and the zero region together with any bucket inside the larger zero
/// threshold, is one tie group at its mid-rank. The variance of U is
/// tie-corrected and p comes from the normal approximation (no continuity
/// correction), which is accurate at the sample sizes judged here. Two values
/// in the same bucket count as equal, so shifts smaller than a bucket (0.54% at
/// scale 7) are invisible. `None` when either side is empty or every value
/// falls in one tie group.
pub(crate) fn rank_test(a: &Histogram, b: &Histogram) -> Option<TestResult> {
    let groups = tie_groups(a, b);
    let na: f64 = groups.iter().map(|&(ca, _)| ca).sum();
    let nb: f64 = groups.iter().map(|&(_, cb)| cb).sum();
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    // U counts pairs where a's value is the larger, ties half.
    let (mut u, mut b_below, mut ties) = (0.0, 0.0, 0.0);
    for &(ca, cb) in &groups {
        u += ca * (b_below + cb / 2.0);
        b_below += cb;
        let t = ca + cb;
        ties += t * t * t - t;
    }
    let n = na + nb;
    let variance = na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if !(variance > 0.0 && variance.is_finite()) {
        return None;
    }
    let z = (u - na * nb / 2.0) / variance.sqrt();
    Some(TestResult {
        test: TestKind::MannWhitney,
        statistic: z,
        degrees_of_freedom: None,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
        superiority: Some(u / (na * nb)),
        shares_above: None,
    })
}

/// Counts of `a` and `b` per tie group, lowest values first.
fn tie_groups(a: &Histogram, b: &Histogram) -> Vec<(f64, f64)> {
    let scale = a.scale.min(b.scale);
    let zero_threshold = a.zero_threshold.max(b.zero_threshold);
    // `None` (the zero region) sorts before every bucket.
    let mut groups: BTreeMap<Option<i32>, (f64, f64)> = BTreeMap::new();
    for (side, histogram) in [a, b].into_iter().enumerate() {
        let mut histogram = histogram.clone();
        histogram.downscale(scale);
        let zero = std::iter::once((None, histogram.zero_count));
        let buckets = histogram.iter_buckets().map(|(index, count)| {
            let inside_zero = bucket_bounds(index, scale).1 <= zero_threshold;
            ((!inside_zero).then_some(index), count)
        });
        for (key, count) in zero.chain(buckets).filter(|&(_, count)| count > 0) {
            let group = groups.entry(key).or_insert((0.0, 0.0));
            if side == 0 {
                group.0 += count as f64;
            } else {
                group.1 += count as f64;
            }
        }
    }
    groups.into_values().collect()
}

/// Two-proportion z-test: is the share of `current`'s runs above `previous`'s
/// `quantile` different from `previous`'s own share?
///
/// A slower tail shows here long before it shows in the rank test: if the runs
/// above p90 get 30% slower, the share above the old p95 doubles from 5% to
/// 10%, while only the ~1% of pairs made of two tail runs change order.
///
/// The cut: both are read at the coarser of their scales, and the bucket that
/// holds `previous.quantile(quantile)` is left out on both sides, so a run
/// counts as above only in a bucket whose lower edge is at or past that
/// bucket's upper edge (and past the larger zero threshold). Both sides are
/// then counted against the same edge, whatever the values inside that bucket;
/// the price is that the previous share is a little below `1 - quantile` (at
/// scale 7 the bucket is 0.54% wide) and, on coarse or explicit buckets, can be
/// well below. Choosing the cut from `previous` does not bias the test: to
/// first order the quantile's own sampling noise adds the same variance the
/// previous period's binomial noise would have, which is what the pooled
/// standard error assumes. p is two-sided, from the normal tail.
///
/// `None` when `quantile` is not inside (0, 1) or the normal approximation is
/// poor: fewer than 5 runs expected above or below the cut on either side
/// under the pooled share (for p99 that means about 500 runs a period).
pub(crate) fn tail_test(current: &Histogram, previous: &Histogram, quantile: f64) -> Option<TestResult> {
    if !(quantile > 0.0 && quantile < 1.0) {
        return None;
    }
    let threshold = previous.quantile(quantile);
    let scale = current.scale.min(previous.scale);
    let zero_threshold = current.zero_threshold.max(previous.zero_threshold);
    let cut = (threshold > zero_threshold).then(|| bucket_index(threshold, scale));
    // (runs above the cut, all runs) from the buckets, at the common scale.
    let count = |histogram: &Histogram| {
        let shift = (histogram.scale - scale) as u32;
        let (mut above, mut total) = (0.0, histogram.zero_count as f64);
        for (index, n) in histogram.iter_buckets() {
            let index = index >> shift;
            total += n as f64;
            if bucket_bounds(index, scale).0 >= zero_threshold && cut.is_none_or(|cut| index > cut) {
                above += n as f64;
            }
        }
        (above, total)
    };
    let ((xa, na), (xb, nb)) = (count(current), count(previous));
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    let pooled = (xa + xb) / (na + nb);
    if na.min(nb) * pooled.min(1.0 - pooled) < 5.0 {
        return None;
    }
    let (pa, pb) = (xa / na, xb / nb);
    let z = (pa - pb) / (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    z.is_finite().then(|| TestResult {
        test: TestKind::Tail,
        statistic: z,
        degrees_of_freedom: None,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
        superiority: None,
        shares_above: Some((pa, pb)),
    })
}

/// When a change is called a regression (or an improvement).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionRule {
    /// A test must give p below this (default 0.01).
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

/// What [`judge`] concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Slower, significantly and by at least the minimum change.
    Regression,
    /// Faster, significantly and by at least the minimum change.
    Improvement,
    /// Neither: no change, a small one, or one the tests call noise.
    NoChange,
    /// A period has fewer runs than the rule's minimum.
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
/// Displays as `p95 +31% (p < 0.001, tail share test)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trigger {
    /// The metric.
    pub metric: Metric,
    /// Its relative change (0.31 is +31%).
    pub relative: f64,
    /// The test that backs it.
    pub test: TestKind,
    /// That test's p-value.
    pub p_value: f64,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:+.0}% (", self.metric, self.relative * 100.0)?;
        if self.p_value < 0.001 {
            f.write_str("p < 0.001")?;
        } else {
            write!(f, "p = {:.3}", self.p_value)?;
        }
        write!(f, ", {})", self.test)
    }
}

/// The judgement on one transaction (or feature) across two periods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// The conclusion.
    pub outcome: Outcome,
    /// What decided a regression or improvement; `None` otherwise.
    pub trigger: Option<Trigger>,
    /// The metrics in both periods.
    pub changes: Changes,
    /// Welch's test of current against previous (positive t: slower now).
    pub welch: Option<TestResult>,
    /// The rank test of current against previous (positive z: slower now).
    pub rank: Option<TestResult>,
    /// The tail test above the previous p95 (positive z: more runs above now).
    pub tail_p95: Option<TestResult>,
    /// The tail test above the previous p99 (positive z: more runs above now).
    pub tail_p99: Option<TestResult>,
    /// Runs in the current period.
    pub current_count: u64,
    /// Runs in the previous period.
    pub previous_count: u64,
    /// [`impact_seconds`]: extra time consumed this period, for ranking.
    pub impact_seconds: f64,
    /// Either period was built from explicit buckets: percentiles, variance
    /// and ranks are coarse estimates.
    pub estimated: bool,
}

/// Extra time the current period consumed because of the change:
/// `(mean now - mean before) × runs now`, in seconds (negative when faster).
/// Ranks regressions by impact: a small slowdown on a hot path can cost more
/// than a large one on a rare one.
pub fn impact_seconds(current: &Histogram, previous: &Histogram) -> f64 {
    (current.mean() - previous.mean()) * current.count as f64
}

/// Judges `current` against `previous` under `rule`.
///
/// A metric qualifies when its relative change is at least `min_change` (or
/// at most `-min_change`) and its test has p below `rule.p_value` with its
/// statistic pointing the same way: the rank test for p50, [`tail_test`] at
/// 0.95 and 0.99 for p95 and p99, Welch for the mean. The largest qualifying
/// slowdown among p50, p95 and mean makes a regression, p99 only when none of
/// them qualifies; failing any slowdown, the speed-ups are picked the same way
/// for an improvement (a slower tail outweighs a faster median).
pub fn judge(current: &Histogram, previous: &Histogram, rule: &RegressionRule) -> Verdict {
    let changes = Changes {
        p50: Change::new(previous.quantile(0.50), current.quantile(0.50)),
        p95: Change::new(previous.quantile(0.95), current.quantile(0.95)),
        p99: Change::new(previous.quantile(0.99), current.quantile(0.99)),
        mean: Change::new(previous.mean(), current.mean()),
    };
    let (welch, rank) = (welch(current, previous), rank_test(current, previous));
    let (tail_p95, tail_p99) = (tail_test(current, previous, 0.95), tail_test(current, previous, 0.99));
    let mut verdict = Verdict {
        outcome: Outcome::NoChange,
        trigger: None,
        changes,
        welch,
        rank,
        tail_p95,
        tail_p99,
        current_count: current.count,
        previous_count: previous.count,
        impact_seconds: impact_seconds(current, previous),
        estimated: current.estimated || previous.estimated,
    };
    if current.count < rule.min_count || previous.count < rule.min_count {
        verdict.outcome = Outcome::TooLittleTraffic;
        return verdict;
    }
    let qualifying: Vec<Trigger> = [
        (Metric::P50, rank),
        (Metric::P95, tail_p95),
        (Metric::P99, tail_p99),
        (Metric::Mean, welch),
    ]
    .into_iter()
    .filter_map(|(metric, test)| {
        let (relative, test) = (changes.get(metric).relative?, test?);
        let agrees = relative * test.statistic > 0.0;
        (relative.abs() >= rule.min_change && test.p_value < rule.p_value && agrees).then_some(Trigger {
            metric,
            relative,
            test: test.test,
            p_value: test.p_value,
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
    verdict
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};
    use rand_distr::{Distribution, LogNormal};

    use super::*;

    /// Request latencies: log-normal, median 50 ms, sigma 0.5, seeded.
    struct Rng(SmallRng, LogNormal<f64>);

    impl Rng {
        fn new(seed: u64) -> Self {
            let shape = LogNormal::new(0.05f64.ln(), 0.5).expect("a valid sigma");
            Rng(SmallRng::seed_from_u64(seed), shape)
        }

        fn latency(&mut self) -> f64 {
            self.1.sample(&mut self.0)
        }
    }

    fn histogram(values: impl IntoIterator<Item = f64>) -> Histogram {
        let mut h = Histogram::empty();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    fn latencies(seed: u64, n: usize, shape: impl Fn(f64) -> f64) -> Histogram {
        let mut rng = Rng::new(seed);
        histogram((0..n).map(|_| shape(rng.latency())))
    }

    #[test]
    fn same_distribution_is_no_change_and_tests_are_calibrated() {
        let (mut called, mut welch_hits, mut rank_hits, mut rank_below_half) = (0, 0, 0, 0);
        let (mut tail95_hits, mut tail99_hits) = (0, 0);
        for seed in 0..50 {
            let previous = latencies(2 * seed, 10_000, |x| x);
            let current = latencies(2 * seed + 1, 10_000, |x| x);
            let verdict = judge(&current, &previous, &RegressionRule::default());
            called += usize::from(verdict.outcome != Outcome::NoChange);
            welch_hits += usize::from(verdict.welch.unwrap().p_value < 0.01);
            let rank = verdict.rank.unwrap().p_value;
            rank_hits += usize::from(rank < 0.01);
            rank_below_half += usize::from(rank < 0.5);
            tail95_hits += usize::from(verdict.tail_p95.unwrap().p_value < 0.01);
            tail99_hits += usize::from(verdict.tail_p99.unwrap().p_value < 0.01);
        }
        assert!(called <= 1, "{called} of 50 noise comparisons called a change");
        // Under no change p is uniform: about 0.5 significant at 0.01, 25 below 0.5.
        assert!(welch_hits <= 2 && rank_hits <= 2, "{welch_hits} {rank_hits}");
        assert!(tail95_hits <= 2 && tail99_hits <= 2, "{tail95_hits} {tail99_hits}");
        assert!(
            (15..=35).contains(&rank_below_half),
            "{rank_below_half} of 50 below 0.5"
        );
    }

    #[test]
    fn slower_tail_is_a_regression_by_the_tail_test() {
        // Runs above the model's p90 take 30% longer; the median is untouched.
        // Only pairs of two tail runs change order, about 1% of all pairs, so
        // the rank test barely moves (z ≈ 0.7 expected; this sample gives 2.2,
        // p = 0.03); the share of runs above last period's p95 doubles, 4.9% to
        // 9.8%: z = 13.2, p = 1.4e-39.
        let previous = latencies(1, 10_000, |x| x);
        let p90 = (0.05f64.ln() + 0.5 * 1.2816).exp();
        let current = latencies(2, 10_000, |x| if x > p90 { x * 1.3 } else { x });
        let verdict = judge(&current, &previous, &RegressionRule::default());
        assert_eq!(verdict.outcome, Outcome::Regression, "{verdict:?}");
        let trigger = verdict.trigger.unwrap();
        assert_eq!((trigger.metric, trigger.test), (Metric::P95, TestKind::Tail));
        assert!((trigger.relative - 0.30).abs() < 0.03, "{trigger}");
        let tail = verdict.tail_p95.unwrap();
        assert!(tail.statistic > 10.0 && tail.p_value < 1e-20, "{tail:?}");
        let (now, before) = tail.shares_above.unwrap();
        assert!((now - 0.10).abs() < 0.01 && (before - 0.05).abs() < 0.005, "{tail:?}");
        assert!(
            verdict.rank.unwrap().p_value > 0.01,
            "the rank test alone would miss it"
        );
        assert!(verdict.changes.p50.relative.unwrap().abs() < 0.02);
        assert!(
            verdict.changes.mean.relative.unwrap() < 0.10,
            "the mean alone would not trigger"
        );
        assert!(verdict.impact_seconds > 0.0);
        // The planted +30% (the sample p95s, each from 10k runs, could be off
        // by a percent or so; with these seeds they are not).
        assert_eq!(trigger.to_string(), "p95 +30% (p < 0.001, tail share test)");
    }

    #[test]
    fn slowdown_of_the_last_two_percent_is_called_by_p99() {
        // Runs above the model's p98 take twice as long: p95 stays, p99 doubles.
        let previous = latencies(12, 20_000, |x| x);
        let p98 = (0.05f64.ln() + 0.5 * 2.0537).exp();
        let current = latencies(13, 20_000, |x| if x > p98 { x * 2.0 } else { x });
        let verdict = judge(&current, &previous, &RegressionRule::default());
        assert_eq!(verdict.outcome, Outcome::Regression, "{verdict:?}");
        let trigger = verdict.trigger.unwrap();
        assert_eq!((trigger.metric, trigger.test), (Metric::P99, TestKind::Tail));
        assert!(verdict.changes.p95.relative.unwrap().abs() < 0.05, "{verdict:?}");
        // When p95 also qualifies it decides, though p99 moved more.
        let p90 = (0.05f64.ln() + 0.5 * 1.2816).exp();
        let current = latencies(13, 20_000, |x| match x {
            x if x > p98 => x * 2.3,
            x if x > p90 => x * 1.3,
            x => x,
        });
        let verdict = judge(&current, &previous, &RegressionRule::default());
        assert!(verdict.changes.p99.relative.unwrap() > verdict.changes.p95.relative.unwrap() + 0.5);
        assert_eq!(verdict.trigger.map(|t| t.metric), Some(Metric::P95), "{verdict:?}");
    }

    #[test]
    fn small_change_on_huge_traffic_is_significant_but_not_a_regression() {
        let previous = latencies(3, 1_000_000, |x| x);
        let current = latencies(4, 1_000_000, |x| x * 1.05);
        let verdict = judge(&current, &previous, &RegressionRule::default());
        assert!(verdict.welch.unwrap().p_value < 1e-6);
        assert!(verdict.rank.unwrap().p_value < 1e-6);
        assert!((verdict.changes.mean.relative.unwrap() - 0.05).abs() < 0.01);
        assert_eq!(verdict.outcome, Outcome::NoChange);
        assert_eq!(verdict.trigger, None);
        // A looser size gate calls the same data a regression.
        let loose = RegressionRule {
            min_change: 0.03,
            ..RegressionRule::default()
        };
        assert_eq!(judge(&current, &previous, &loose).outcome, Outcome::Regression);
    }

    #[test]
    fn too_little_traffic_is_not_judged() {
        let previous = latencies(5, 50, |x| x);
        let current = latencies(6, 50, |x| x * 3.0);
        let verdict = judge(&current, &previous, &RegressionRule::default());
        assert_eq!(verdict.outcome, Outcome::TooLittleTraffic);
        assert_eq!((verdict.current_count, verdict.previous_count), (50, 50));
        let nothing = judge(&Histogram::empty(), &previous, &RegressionRule::default());
        assert_eq!(nothing.outcome, Outcome::TooLittleTraffic);
        assert_eq!((nothing.welch, nothing.rank), (None, None));
        assert_eq!(nothing.changes.mean.relative, Some(-1.0));
    }

    #[test]
    fn faster_is_an_improvement() {
        let previous = latencies(7, 20_000, |x| x);
        let current = latencies(8, 20_000, |x| x * 0.7);
        let verdict = judge(&current, &previous, &RegressionRule::default());
        assert_eq!(verdict.outcome, Outcome::Improvement);
        let trigger = verdict.trigger.unwrap();
        assert!((trigger.relative + 0.30).abs() < 0.03, "{trigger}");
        assert!(verdict.impact_seconds < 0.0);
        // Lognormal, sigma 0.5: P(0.7·X > Y) = Φ(ln 0.7 / (0.5·√2)) ≈ 0.31.
        let superiority = verdict.rank.unwrap().superiority.unwrap();
        assert!((superiority - 0.31).abs() < 0.02, "{superiority}");
    }

    #[test]
    fn welch_matches_the_textbook_and_raw_samples() {
        // Welch's t-test, Wikipedia example 1: t = -2.46, df = 24.99, p = 0.021.
        let a = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4,
        ];
        let b = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4,
        ];
        let result = welch(&histogram(a), &histogram(b)).unwrap();
        assert!((result.statistic + 2.4554).abs() < 0.01, "{result:?}");
        assert!((result.degrees_of_freedom.unwrap() - 24.99).abs() < 0.1, "{result:?}");
        assert!((result.p_value - 0.02138).abs() < 0.0005, "{result:?}");

        // Latencies: histogram-estimated variance against the exact samples.
        let mut rng = Rng::new(9);
        let before: Vec<f64> = (0..3000).map(|_| rng.latency()).collect();
        let after: Vec<f64> = (0..3000).map(|_| rng.latency() * 1.03).collect();
        let moments = |v: &[f64]| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0), n)
        };
        let exact = welch_from_moments(moments(&after), moments(&before)).unwrap();
        let estimated = welch(&histogram(after.iter().copied()), &histogram(before.iter().copied())).unwrap();
        assert!(
            exact.p_value > 1e-4 && exact.p_value < 0.5,
            "a p-value worth comparing: {exact:?}"
        );
        assert!(
            (estimated.statistic / exact.statistic - 1.0).abs() < 0.01,
            "{estimated:?} {exact:?}"
        );
        assert!(
            (estimated.p_value / exact.p_value - 1.0).abs() < 0.03,
            "{estimated:?} {exact:?}"
        );
    }

    #[test]
    fn rank_test_compares_across_scales_and_flags_estimates() {
        let previous = latencies(10, 5_000, |x| x);
        let mut current = latencies(11, 5_000, |x| x * 1.5);
        current.downscale(3);
        let result = rank_test(&current, &previous).unwrap();
        assert!(result.statistic > 0.0 && result.p_value < 1e-6, "{result:?}");
        assert_eq!(rank_test(&previous, &previous).unwrap().superiority, Some(0.5));
        // One bucket each: no variance to test.
        assert_eq!(welch(&histogram([0.1, 0.1]), &histogram([0.1, 0.1])), None);
        assert_eq!(rank_test(&histogram([0.1, 0.1]), &histogram([0.1])), None);

        let explicit = |counts: &[u64]| {
            let n = counts.iter().sum();
            Histogram::from_explicit(&[0.025, 0.05, 0.1, 0.25], counts, n, Some(0.06 * n as f64), None).unwrap()
        };
        let verdict = judge(
            &explicit(&[100, 300, 400, 150, 50]),
            &explicit(&[200, 400, 300, 80, 20]),
            &RegressionRule::default(),
        );
        assert!(verdict.estimated);
        assert_eq!(verdict.trigger.map(|t| t.metric), Some(Metric::P50), "{verdict:?}");
        // p95 sits in the (0.1, 0.25] bucket both times, interpolated within
        // it (0.194 s before, the bucket's top now); the share beyond the
        // baseline's p95, interpolated the same way, grows from 5% to 10.6%.
        let tail = verdict.tail_p95.unwrap();
        let (now, before) = tail.shares_above.unwrap();
        assert!((now - 0.106).abs() < 0.003 && (before - 0.05).abs() < 0.003, "{tail:?}");
        assert!(tail.statistic > 3.0 && tail.p_value < 0.001, "{tail:?}");
        let p95 = verdict.changes.p95.relative.unwrap();
        assert!((p95 - (0.25 / 0.194 - 1.0)).abs() < 0.02, "{p95}");
    }

    #[test]
    fn tail_test_cuts_both_sides_at_the_same_edge() {
        let previous = latencies(14, 5_000, |x| x);
        // The same runs at a coarser scale: same cut, same shares, no change.
        let mut coarse = previous.clone();
        coarse.downscale(2);
        let same = tail_test(&coarse, &previous, 0.95).unwrap();
        assert_eq!(same.statistic, 0.0);
        let (now, before) = same.shares_above.unwrap();
        assert_eq!(now, before);
        assert!(before > 0.03 && before <= 0.05, "{same:?}");
        // Faster: fewer runs above, negative z.
        let faster = tail_test(&latencies(15, 5_000, |x| x * 0.8), &previous, 0.95).unwrap();
        assert!(faster.statistic < -5.0, "{faster:?}");
        // Too few runs above the cut for the normal approximation, or no quantile.
        assert_eq!(tail_test(&latencies(16, 200, |x| x), &previous, 0.99), None);
        assert_eq!(tail_test(&previous, &previous, 1.0), None);
        assert_eq!(tail_test(&previous, &Histogram::empty(), 0.95), None);
    }
}
