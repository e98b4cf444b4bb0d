//! What a harvest returns: one interval's transactions, segments and errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[cfg(any(test, feature = "hdrhistogram"))]
use hdrhistogram::Histogram;

use crate::errors::ErrorSnapshot;
use crate::layout::Layout;
use crate::segments::SegmentSnapshot;
use crate::traces::TraceSnapshot;
use crate::transaction::{SegmentKind, TransactionMeta};

/// One interval's durations of one transaction: the non-empty counters of
/// the agent's HDR layout, in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    layout: Layout,
    /// (counter index, count), ascending by index, no zero counts.
    buckets: Vec<(u32, u64)>,
    count: u64,
}

/// One non-empty bucket of a [`HistogramSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Lowest value (ns) that falls in the bucket.
    pub low: u64,
    /// Highest value (ns) that falls in the bucket.
    pub high: u64,
    /// Number of samples in it.
    pub count: u64,
}

/// Why two histograms cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("histograms with different layouts cannot be merged exactly")]
pub struct LayoutMismatch;

impl HistogramSnapshot {
    /// An empty histogram with `layout`.
    pub fn empty(layout: Layout) -> Self {
        HistogramSnapshot {
            layout,
            buckets: Vec::new(),
            count: 0,
        }
    }

    pub(crate) fn from_dense(layout: Layout, counts: &[u64]) -> Self {
        let buckets: Vec<(u32, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, c)| (i as u32, *c))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        HistogramSnapshot { layout, buckets, count }
    }

    /// The bucket layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The non-empty buckets, lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.buckets.iter().map(|&(index, count)| Bucket {
            low: self.layout.value_for(index as usize),
            high: self.layout.highest_for(index as usize),
            count,
        })
    }

    /// The value at `quantile` (0.0..=1.0), in nanoseconds, exactly as
    /// `hdrhistogram::Histogram::value_at_quantile` computes it: within one
    /// bucket's width (1% with 2 significant digits) of the true sample.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let quantile = quantile.clamp(0.0, 1.0);
        let target = ((quantile * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(index, count) in &self.buckets {
            seen += count;
            if seen >= target {
                let index = index as usize;
                return if quantile == 0.0 {
                    self.layout.value_for(index)
                } else {
                    self.layout.highest_for(index)
                };
            }
        }
        self.buckets
            .last()
            .map_or(0, |&(index, _)| self.layout.highest_for(index as usize))
    }

    /// Adds `other`'s samples to this one; exact, since both share a layout.
    pub fn merge(&mut self, other: &HistogramSnapshot) -> Result<(), LayoutMismatch> {
        if self.layout != other.layout {
            return Err(LayoutMismatch);
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (self.buckets.iter().peekable(), other.buckets.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x.0 == y.0 => {
                    a.next();
                    b.next();
                    (x.0, x.1 + y.1)
                }
                (Some(&&x), Some(&&y)) => {
                    if x.0 < y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
        self.count += other.count;
        Ok(())
    }

    /// The same samples in an `hdrhistogram::Histogram`, for its iterators,
    /// serialisation and statistics. Needs the `hdrhistogram` feature, which
    /// puts that crate's type in this crate's API (see "Stability" in the
    /// crate docs).
    #[cfg(any(test, feature = "hdrhistogram"))]
    pub fn to_hdrhistogram(&self) -> Histogram<u64> {
        let mut histogram = self.layout.new_histogram();
        for &(index, count) in &self.buckets {
            // Every value of the layout is within the histogram's bounds.
            let _ = histogram.record_n(self.layout.value_for(index as usize), count);
        }
        histogram
    }
}

/// `value` clamped into `[min, max]`, for quantiles read off a histogram
/// whose exact extremes are known.
pub fn clamp_quantile(value: u64, min: u64, max: u64) -> u64 {
    value.max(min).min(max)
}

/// Apdex counts of one interval: satisfied at or under T, tolerating up to
/// 4T, frustrated beyond 4T or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apdex {
    /// The threshold T.
    pub threshold: Duration,
    /// Runs at or under T that did not fail.
    pub satisfied: u64,
    /// Runs over T and at or under 4T that did not fail.
    pub tolerating: u64,
    /// Runs over 4T, and every failed run.
    pub frustrated: u64,
}

impl Apdex {
    /// The Apdex score, (satisfied + tolerating / 2) / total, or `None` without runs.
    pub fn score(&self) -> Option<f64> {
        let total = self.satisfied + self.tolerating + self.frustrated;
        (total > 0).then(|| (self.satisfied as f64 + self.tolerating as f64 / 2.0) / total as f64)
    }
}

/// How the runs of one interval ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OutcomeCounts {
    /// Finished normally, or with a 2xx status.
    pub ok: u64,
    /// 1xx statuses.
    pub informational: u64,
    /// 3xx statuses.
    pub redirection: u64,
    /// 4xx statuses.
    pub client_error: u64,
    /// 5xx statuses.
    pub server_error: u64,
    /// Failed runs without a status.
    pub error: u64,
    /// Runs dropped before they finished.
    pub cancelled: u64,
}

/// One interval of one transaction.
#[derive(Clone, Debug)]
pub struct TransactionSnapshot {
    /// The transaction.
    pub meta: Arc<TransactionMeta>,
    /// Runs recorded.
    pub count: u64,
    /// Failed runs (errors and 5xx).
    pub error_count: u64,
    /// Sum of durations, in nanoseconds (exact, not bucketed).
    pub sum_ns: u64,
    /// Shortest run, in nanoseconds (exact).
    pub min_ns: u64,
    /// Longest run, in nanoseconds (exact, even beyond the histogram's range).
    pub max_ns: u64,
    /// Apdex counts.
    pub apdex: Apdex,
    /// Outcome counts.
    pub outcomes: OutcomeCounts,
    /// Durations, in nanoseconds.
    pub histogram: HistogramSnapshot,
    /// Segments called in the interval.
    pub segments: Vec<SegmentSnapshot>,
}

impl TransactionSnapshot {
    /// Mean duration, in nanoseconds.
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// The duration at `quantile` (0.0..=1.0), in nanoseconds: the
    /// histogram's value clamped into the exact `[min, max]`, so that a
    /// bucket's upper edge never reads above the longest run.
    pub fn quantile_ns(&self, quantile: f64) -> u64 {
        clamp_quantile(self.histogram.value_at_quantile(quantile), self.min_ns, self.max_ns)
    }

    /// Exclusive segment time by kind, in nanoseconds, in [`SegmentKind::ALL`] order.
    pub fn time_by_kind(&self) -> [u64; 3] {
        let mut totals = [0; 3];
        for segment in &self.segments {
            totals[segment.kind.index()] += segment.exclusive_ns;
        }
        totals
    }

    /// Exclusive time of segments of `kind`, in nanoseconds.
    pub fn time_in(&self, kind: SegmentKind) -> u64 {
        self.time_by_kind()[kind.index()]
    }
}

/// The agent's own health, cumulative since it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentStats {
    /// Distinct transactions tracked (the overflow series excluded).
    pub series: usize,
    /// The cardinality limit.
    pub series_limit: usize,
    /// Registrations refused by the cardinality limit (each refused lookup
    /// counts: refused names are not remembered, which is the point).
    pub refused_registrations: u64,
    /// Samples folded into the overflow series.
    pub overflowed_samples: u64,
    /// Series recording into one shard per core.
    pub sharded_series: usize,
    /// Errors not kept because an interval's error table was full.
    pub dropped_errors: u64,
    /// Slow traces not kept because an interval's trace table was full.
    pub dropped_traces: u64,
    /// Bytes held by the agent's series and tables.
    pub memory_bytes: usize,
}

/// Everything recorded between two harvests.
#[derive(Clone, Debug)]
pub struct Harvest {
    /// Wall-clock start of the interval: `end` less `elapsed`, so that it
    /// precedes `end` even when the wall clock jumped back in between.
    pub start: SystemTime,
    /// Wall-clock end of the interval.
    pub end: SystemTime,
    /// Length of the interval on the monotonic clock (immune to clock jumps).
    pub elapsed: Duration,
    /// Transactions that recorded anything, in no particular order.
    pub transactions: Vec<TransactionSnapshot>,
    /// Distinct errors, with counts.
    pub errors: Vec<ErrorSnapshot>,
    /// Slow runs kept as traces.
    pub traces: Vec<TraceSnapshot>,
    /// The agent's own health at harvest time.
    pub stats: AgentStats,
}

impl Harvest {
    /// The snapshot of the transaction called `name`, if it recorded anything.
    pub fn transaction(&self, name: &str) -> Option<&TransactionSnapshot> {
        self.transactions.iter().find(|t| &*t.meta.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(1_000, 3_600_000_000_000, 2).unwrap()
    }

    fn snapshot(values: &[u64]) -> HistogramSnapshot {
        let layout = layout();
        let mut dense = vec![0; layout.len()];
        for &v in values {
            dense[layout.index_for(v)] += 1;
        }
        HistogramSnapshot::from_dense(layout, &dense)
    }

    #[test]
    fn quantiles_match_hdrhistogram() {
        let values: Vec<u64> = (1..5_000u64).map(|i| i * i * 997 % 3_000_000_000 + 1_000).collect();
        let ours = snapshot(&values);
        let reference = ours.to_hdrhistogram();
        assert_eq!(reference.len(), values.len() as u64);
        for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(ours.value_at_quantile(q), reference.value_at_quantile(q), "q={q}");
        }
    }

    #[test]
    fn merge_is_exact_summation() {
        let a = [5_000, 7_000, 1_000_000];
        let b = [7_000, 9_000_000, 120_000_000_000];
        let mut merged = snapshot(&a);
        merged.merge(&snapshot(&b)).unwrap();
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        assert_eq!(merged, snapshot(&all));
        let other = HistogramSnapshot::empty(Layout::new(1, 1_000_000, 3).unwrap());
        assert_eq!(merged.merge(&other), Err(LayoutMismatch));
    }
}
