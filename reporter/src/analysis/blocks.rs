//! The unit of evidence for a regression: blocks of time, not single runs.
//!
//! Runs of one transaction are not independent: latency moves together
//! within a minute (a slow database, a GC pause, a noisy neighbour) and with
//! the time of day. Treating each of a million runs as one sample makes a
//! route's own wobble look overwhelmingly significant. Here each window is
//! cut into blocks (an hour each for windows of a day or more; see
//! [`block_minutes`]) and every estimate's variance is computed from how the
//! blocks differ from one another, so whatever moves a whole minute or
//! hour together counts once per block, not once per run.
//!
//! Blocks are grouped into *strata* by time of day (each hour of the day, or
//! wider when there are too few blocks per hour: see [`Design::new`]); only
//! strata both windows hold are compared, and each window's estimate is
//! post-stratified (each stratum weighted by its average share of the two
//! windows' runs). Daily seasonality then cancels out of the difference
//! instead of inflating or biasing it, and a window that holds no data at
//! some hours of the day is compared on the hours it does hold (or not at
//! all, when those cover too little of its runs: [`MIN_COVERAGE`]).
//!
//! An estimate is a ratio of sums over blocks (`Σx / Σn`: the mean is the
//! durations' sum over the runs, a share is the runs at or below an edge
//! over the runs). Its variance is the usual linearised (cluster) variance
//! within each stratum, `k/(k−1) · Σ (x_i − R·n_i)² / N²`, so blocks with
//! more runs weigh more and a block of one run still counts; the degrees of
//! freedom of a sum of such parts come from Welch–Satterthwaite.

use std::collections::BTreeMap;

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::histogram::{bucket_bounds, Histogram};

/// One block: a stretch of minutes of one subject's runs in one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The block's first minute (unix minutes); its time of day places it
    /// in a stratum.
    pub start: i64,
    /// Its runs.
    pub histogram: Histogram,
}

/// Widths of the time-of-day strata tried, in hours, finest first.
const STRATUM_HOURS: [i64; 8] = [1, 2, 3, 4, 6, 8, 12, 24];

/// Least blocks with runs a stratum needs in each window to be kept: its
/// variance between blocks is estimated from them.
const MIN_BLOCKS: usize = 4;

/// A stratum width is taken at once when the strata both windows hold (with
/// [`MIN_BLOCKS`] blocks or more each) keep this share of each window's runs.
const GOOD_COVERAGE: f64 = 0.9;

/// Least share of each window's runs that must lie in strata both windows
/// hold for a subject to be judged at all.
pub const MIN_COVERAGE: f64 = 0.5;

/// The block length for comparing windows of `minutes` (the shorter of the
/// two): an hour for a day or more, else the longest of 30, 15, 10, 5 and 1
/// minutes that still cuts the window into 24 blocks or more.
pub fn block_minutes(minutes: i64) -> i64 {
    [60, 30, 15, 10, 5]
        .into_iter()
        .find(|&block| minutes / block >= 24)
        .unwrap_or(1)
}

/// Which time-of-day stratum a block starting at `start` falls in, for
/// strata `hours` wide.
fn stratum_of(start: i64, hours: i64) -> i64 {
    start.rem_euclid(1_440) / (60 * hours)
}

/// One stratum both windows hold.
struct Stratum<'a> {
    /// Its weight in each window's estimate (the weights sum to 1).
    weight: f64,
    /// Its blocks: `[current, previous]`.
    sides: [Vec<&'a Histogram>; 2],
}

/// The current window (side 0).
pub(crate) const CURRENT: usize = 0;
/// The previous window, the baseline (side 1).
pub(crate) const PREVIOUS: usize = 1;

/// How two windows' blocks of one subject are compared: the strata both
/// hold, weighted.
pub(crate) struct Design<'a> {
    strata: Vec<Stratum<'a>>,
    /// Width of the strata, hours of the day (24: one stratum).
    pub(crate) stratum_hours: i64,
    /// Blocks with runs in each window, `[current, previous]`.
    pub(crate) blocks: [usize; 2],
}

/// Why two windows could not be compared block by block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TooThin {
    /// The best share of each window's runs any stratum width kept, `[current, previous]`.
    pub(crate) coverage: [f64; 2],
}

impl<'a> Design<'a> {
    /// The finest strata under which the blocks both windows share
    /// ([`MIN_BLOCKS`] or more per stratum on each side) hold at least [`GOOD_COVERAGE`] of each
    /// window's runs; failing that, the width keeping the most, if it keeps
    /// at least [`MIN_COVERAGE`]. Blocks without runs are left out.
    pub(crate) fn new(current: &'a [Block], previous: &'a [Block]) -> Result<Design<'a>, TooThin> {
        let totals = [current, previous].map(|side| side.iter().map(|b| b.histogram.count as f64).sum::<f64>());
        let mut best: Option<(f64, Design<'a>)> = None;
        let mut best_coverage = [0.0f64, 0.0];
        for hours in STRATUM_HOURS {
            let mut grouped: BTreeMap<i64, [Vec<&'a Histogram>; 2]> = BTreeMap::new();
            for (side, blocks) in [current, previous].into_iter().enumerate() {
                for block in blocks.iter().filter(|b| b.histogram.count > 0) {
                    grouped.entry(stratum_of(block.start, hours)).or_default()[side].push(&block.histogram);
                }
            }
            let runs = |list: &[&Histogram]| list.iter().map(|h| h.count as f64).sum::<f64>();
            let kept: Vec<[Vec<&Histogram>; 2]> = grouped
                .into_values()
                .filter(|sides| sides.iter().all(|s| s.len() >= MIN_BLOCKS))
                .collect();
            let kept_runs = [CURRENT, PREVIOUS].map(|side| kept.iter().map(|s| runs(&s[side])).sum::<f64>());
            let coverage = [CURRENT, PREVIOUS].map(|side| {
                if totals[side] > 0.0 {
                    kept_runs[side] / totals[side]
                } else {
                    0.0
                }
            });
            let least = coverage[0].min(coverage[1]);
            if least > best_coverage[0].min(best_coverage[1]) {
                best_coverage = coverage;
            }
            if least < MIN_COVERAGE || best.as_ref().is_some_and(|(b, _)| *b >= least) {
                continue;
            }
            let strata = kept
                .into_iter()
                .map(|sides| {
                    let weight = (runs(&sides[CURRENT]) / kept_runs[CURRENT]
                        + runs(&sides[PREVIOUS]) / kept_runs[PREVIOUS])
                        / 2.0;
                    Stratum { weight, sides }
                })
                .collect();
            let blocks = [current, previous].map(|side| side.iter().filter(|b| b.histogram.count > 0).count());
            best = Some((
                least,
                Design {
                    strata,
                    stratum_hours: hours,
                    blocks,
                },
            ));
            if least >= GOOD_COVERAGE {
                break;
            }
        }
        best.map(|(_, design)| design).ok_or(TooThin {
            coverage: best_coverage,
        })
    }

    /// The post-stratified ratio `Σx / Σn` of one window, with the variance
    /// parts of its estimate; `x` gives a block's numerator, `n` its runs.
    pub(crate) fn estimate(&self, side: usize, x: impl Fn(&Histogram) -> f64) -> Estimate {
        let mut estimate = Estimate {
            value: 0.0,
            parts: Vec::with_capacity(self.strata.len()),
        };
        for stratum in &self.strata {
            let blocks = &stratum.sides[side];
            let xs: Vec<f64> = blocks.iter().map(|h| x(h)).collect();
            estimate.add(stratum.weight, &xs, blocks);
        }
        estimate
    }

    /// The common (coarsest) scale of every block.
    fn scale(&self) -> i32 {
        self.strata
            .iter()
            .flat_map(|s| s.sides.iter().flatten())
            .map(|h| h.scale)
            .min()
            .unwrap_or(0)
    }

    /// The blocks' cumulative counts by bucket, for shares below bucket edges.
    pub(crate) fn edges(&self) -> Edges<'_, 'a> {
        let scale = self.scale();
        let cumulative = self
            .strata
            .iter()
            .map(|stratum| {
                stratum
                    .sides
                    .clone()
                    .map(|side| side.iter().map(|h| Cumulative::new(h, scale)).collect())
            })
            .collect();
        Edges {
            design: self,
            scale,
            cumulative,
        }
    }
}

/// A window's post-stratified estimate and the parts of its variance.
#[derive(Clone, Debug)]
pub(crate) struct Estimate {
    /// The estimate.
    pub(crate) value: f64,
    /// Each stratum's (share of the variance, degrees of freedom).
    pub(crate) parts: Vec<(f64, f64)>,
}

impl Estimate {
    /// The estimate's variance.
    pub(crate) fn variance(&self) -> f64 {
        self.parts.iter().map(|(v, _)| v).sum()
    }

    /// Its standard error.
    fn standard_error(&self) -> f64 {
        self.variance().sqrt()
    }

    /// Adds a stratum of `weight` whose blocks have numerators `xs` and runs
    /// `blocks`' counts: its ratio, and its linearised variance.
    fn add(&mut self, weight: f64, xs: &[f64], blocks: &[&Histogram]) {
        let ns = blocks.iter().map(|h| h.count as f64);
        let (total_x, total_n): (f64, f64) = (xs.iter().sum(), ns.clone().sum());
        let ratio = total_x / total_n;
        let k = blocks.len() as f64;
        let squares: f64 = xs.iter().zip(ns).map(|(x, n)| (x - ratio * n).powi(2)).sum();
        self.value += weight * ratio;
        self.parts
            .push((weight * weight * k / (k - 1.0) * squares / (total_n * total_n), k - 1.0));
    }
}

/// Welch–Satterthwaite degrees of freedom of a sum of variance parts
/// `(variance, degrees of freedom)`; NaN when every part is zero.
fn satterthwaite(parts: &[(f64, f64)]) -> f64 {
    let variance: f64 = parts.iter().map(|(v, _)| v).sum();
    let denominator: f64 = parts
        .iter()
        .filter(|(v, df)| *v > 0.0 && *df > 0.0)
        .map(|(v, df)| v * v / df)
        .sum();
    if denominator > 0.0 {
        variance * variance / denominator
    } else {
        f64::NAN
    }
}

/// A difference between the windows on some scale, its standard error and
/// the Welch–Satterthwaite degrees of freedom of that error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Difference {
    /// The difference; positive when the current window is the slower.
    pub(crate) value: f64,
    /// Its standard error.
    pub(crate) standard_error: f64,
    /// Degrees of freedom of the standard error.
    pub(crate) degrees_of_freedom: f64,
}

impl Difference {
    /// `value` with the parts of both windows' estimates, each multiplied by
    /// its factor (for the delta method: `1/value²` on a log scale).
    pub(crate) fn new(value: f64, parts: [(&Estimate, f64); 2]) -> Difference {
        let scaled: Vec<(f64, f64)> = parts
            .iter()
            .flat_map(|(estimate, factor)| estimate.parts.iter().map(move |&(v, df)| (v * factor, df)))
            .collect();
        Difference {
            value,
            standard_error: scaled.iter().map(|(v, _)| v).sum::<f64>().sqrt(),
            degrees_of_freedom: satterthwaite(&scaled),
        }
    }

    /// The difference with one more part of its variance, of
    /// `degrees_of_freedom`: the standard error and Welch–Satterthwaite
    /// degrees of freedom of the sum.
    pub(crate) fn with_part(self, variance: f64, degrees_of_freedom: f64) -> Difference {
        let own = self.standard_error * self.standard_error;
        let own_df = if self.degrees_of_freedom.is_finite() {
            self.degrees_of_freedom
        } else {
            1e6
        };
        let parts = [(own, own_df), (variance, degrees_of_freedom)];
        Difference {
            value: self.value,
            standard_error: (own + variance).sqrt(),
            degrees_of_freedom: satterthwaite(&parts),
        }
    }

    /// The t statistic; `None` without a usable standard error.
    pub(crate) fn statistic(&self) -> Option<f64> {
        let t = self.value / self.standard_error;
        (self.standard_error > 0.0 && t.is_finite() && self.degrees_of_freedom > 0.0).then_some(t)
    }

    /// Two-sided p-value from Student's t.
    pub(crate) fn p_value(&self) -> Option<f64> {
        let t = self.statistic()?;
        Some((2.0 * student(self.degrees_of_freedom)?.sf(t.abs())).min(1.0))
    }

    /// The two-sided interval of confidence `1 − miss` for the difference.
    pub(crate) fn interval(&self, miss: f64) -> Option<(f64, f64)> {
        let t = critical(self.degrees_of_freedom, miss)?;
        let half = t * self.standard_error;
        half.is_finite().then_some((self.value - half, self.value + half))
    }
}

/// Student's t with `df` degrees of freedom (the normal past 10⁶).
fn student(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df.min(1e6)).ok()
}

/// The t value leaving `miss / 2` in each tail.
pub(crate) fn critical(df: f64, miss: f64) -> Option<f64> {
    if !(miss > 0.0 && miss < 1.0) {
        return None;
    }
    let t = student(df)?.inverse_cdf(1.0 - miss / 2.0);
    t.is_finite().then_some(t)
}

/// One block's runs at or below each bucket, at a common scale.
struct Cumulative {
    zero: u64,
    indexes: Vec<i32>,
    below: Vec<u64>,
}

impl Cumulative {
    fn new(histogram: &Histogram, scale: i32) -> Cumulative {
        let shift = (histogram.scale - scale).max(0) as u32;
        let (mut indexes, mut below): (Vec<i32>, Vec<u64>) = (Vec::new(), Vec::new());
        let mut total = histogram.zero_count;
        for (index, count) in histogram.iter_buckets() {
            let index = index >> shift;
            total += count;
            if indexes.last() == Some(&index) {
                if let Some(last) = below.last_mut() {
                    *last = total;
                }
            } else {
                indexes.push(index);
                below.push(total);
            }
        }
        Cumulative {
            zero: histogram.zero_count,
            indexes,
            below,
        }
    }

    /// Runs at or below the upper edge of bucket `index`.
    fn at_or_below(&self, index: i32) -> u64 {
        match self.indexes.partition_point(|&i| i <= index) {
            0 => self.zero,
            n => self.below[n - 1],
        }
    }
}

/// Shares of runs below bucket edges, per window, post-stratified.
pub(crate) struct Edges<'d, 'a> {
    design: &'d Design<'a>,
    /// The common scale of the buckets.
    pub(crate) scale: i32,
    /// Per stratum, per side, per block.
    cumulative: Vec<[Vec<Cumulative>; 2]>,
}

impl Edges<'_, '_> {
    /// The post-stratified share of `side`'s runs at or below the upper edge
    /// of bucket `index`, with its variance parts.
    pub(crate) fn share(&self, side: usize, index: i32) -> Estimate {
        let mut estimate = Estimate {
            value: 0.0,
            parts: Vec::with_capacity(self.cumulative.len()),
        };
        for (stratum, cumulative) in self.design.strata.iter().zip(&self.cumulative) {
            let xs: Vec<f64> = cumulative[side].iter().map(|c| c.at_or_below(index) as f64).collect();
            estimate.add(stratum.weight, &xs, &stratum.sides[side]);
        }
        estimate
    }

    /// Every bucket index holding runs in either window, ascending.
    pub(crate) fn indexes(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self
            .cumulative
            .iter()
            .flat_map(|sides| sides.iter().flatten())
            .flat_map(|c| c.indexes.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The bucket holding `side`'s post-stratified `quantile`: the first of
    /// `indexes` whose share at or below reaches it (its position in `indexes`).
    pub(crate) fn quantile_position(&self, side: usize, indexes: &[i32], quantile: f64) -> Option<usize> {
        let position = indexes.partition_point(|&index| self.share(side, index).value < quantile);
        (position < indexes.len()).then_some(position)
    }

    /// Bounds on `side`'s `quantile`, with confidence `1 − miss`, from the
    /// bucket edges: the lower is the highest edge whose share at or below is
    /// surely (by `miss / 2`) under the quantile, the upper the lowest edge
    /// whose share is surely at or over it. They hold both the buckets'
    /// resolution and the sampling error. The lower is 0 and the upper
    /// infinite when no edge is sure.
    pub(crate) fn quantile_bounds(&self, side: usize, indexes: &[i32], quantile: f64, miss: f64) -> (f64, f64) {
        let Some(point) = self.quantile_position(side, indexes, quantile) else {
            return (0.0, f64::INFINITY);
        };
        let sure = |index: i32, sign: f64| {
            let share = self.share(side, index);
            let df = satterthwaite(&share.parts);
            let se = share.standard_error();
            if se > 0.0 {
                let t = critical(if df.is_finite() { df } else { 1e6 }, miss).unwrap_or(f64::INFINITY);
                share.value + sign * t * se
            } else {
                share.value
            }
        };
        let lower = indexes[..point]
            .iter()
            .rev()
            .find(|&&index| sure(index, 1.0) < quantile)
            .map_or(0.0, |&index| bucket_bounds(index, self.scale).1);
        let upper = indexes[point..]
            .iter()
            .find(|&&index| sure(index, -1.0) >= quantile)
            .map_or(f64::INFINITY, |&index| bucket_bounds(index, self.scale).1);
        (lower, upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(start: i64, values: &[f64]) -> Block {
        let mut histogram = Histogram::empty();
        for &v in values {
            histogram.record(v).unwrap();
        }
        Block { start, histogram }
    }

    #[test]
    fn block_length_fits_the_window() {
        assert_eq!(block_minutes(7 * 1_440), 60);
        assert_eq!(block_minutes(2 * 1_440), 60);
        assert_eq!(block_minutes(12 * 60), 30);
        assert_eq!(block_minutes(60), 1);
    }

    #[test]
    fn strata_are_the_hours_both_windows_hold() {
        // Two days of hourly blocks against 30 minutes: too thin.
        let current: Vec<Block> = (0..48).map(|h| block(h * 60, &[0.1, 0.2])).collect();
        let previous = vec![block(-30, &[0.1; 100])];
        let thin = Design::new(&current, &previous).err().unwrap();
        assert!(thin.coverage[PREVIOUS] < MIN_COVERAGE || thin.coverage[CURRENT] < MIN_COVERAGE);
        // Two days each: strata of two hours of the day, four blocks each.
        let previous: Vec<Block> = (0..48).map(|h| block(h * 60 - 2 * 1_440, &[0.1, 0.3])).collect();
        let design = Design::new(&current, &previous).unwrap();
        assert_eq!((design.stratum_hours, design.blocks), (2, [48, 48]));
        let mean = |side| design.estimate(side, |h| h.sum);
        assert!((mean(CURRENT).value - 0.15).abs() < 1e-3 && (mean(PREVIOUS).value - 0.2).abs() < 1e-3);
        // Every block alike: no variance between blocks.
        assert!(mean(CURRENT).variance() < 1e-9);
    }
}
