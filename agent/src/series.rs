//! One transaction's recording state: sharded atomic HDR counters and totals.
//!
//! Each shard holds a full set of counters in the agent's [`Layout`] plus the
//! interval's sum, min, max and the rare-outcome counters. A series starts with
//! one shard; once it turns hot (see `AgentConfig::hot_series_threshold`) the
//! harvester gives it one per core, and each thread records into the shard its
//! thread slot selects (`sync::thread_slot`).
//!
//! Common-case cost of a record: one atomic add on the sample's counter and,
//! for the thread that owns the shard, a plain load and store of the sum. The
//! count, the satisfied Apdex count and the successful outcome count are not
//! kept: they are derived at harvest from the histogram. The min and max are
//! read on every record but written only when the sample extends them.
//!
//! The sum is where the common case saves a locked instruction. The thread
//! whose slot equals the shard's index *owns* the shard: it alone writes the
//! shard's `owned_sum_ns`, a running total that is never reset, so a plain
//! load and store is exact. Harvest takes what the total gained since the
//! previous harvest (kept beside it, behind a mutex the recording path never
//! touches). Every other thread that lands on the shard (more threads than
//! shards, a series not yet sharded) adds to `shared_sum_ns` atomically, and
//! harvest swaps that to zero. Counters and rare totals are atomic adds that
//! harvest swaps to zero. So each sample is counted in exactly one interval.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use crate::clock::Stamp;
use crate::errors::{CapturedError, ErrorLog};
use crate::layout::Layout;
use crate::segments::SegmentTable;
use crate::snapshot::{Apdex, HistogramSnapshot, OutcomeCounts, TransactionSnapshot};
use crate::sync::{lock, thread_slot};
use crate::traces::{RunTrace, TraceBudget, TraceLog};
use crate::transaction::{Outcome, TransactionMeta, OUTCOME_SLOTS};

/// Interval totals of one shard, on their own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct ShardStats {
    /// Running total written only by the shard's owner (see the module docs).
    owned_sum_ns: AtomicU64,
    /// What `owned_sum_ns` was at the last harvest; only harvest touches it.
    harvested_sum_ns: Mutex<u64>,
    /// Interval total of the other threads' samples.
    shared_sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    tolerating: AtomicU64,
    frustrated: AtomicU64,
    outcomes: [AtomicU64; OUTCOME_SLOTS],
}

struct Shard {
    stats: ShardStats,
    counts: Box<[AtomicU32]>,
}

impl Shard {
    fn new(len: usize) -> Self {
        let stats = ShardStats {
            min_ns: AtomicU64::new(u64::MAX),
            ..Default::default()
        };
        Shard {
            stats,
            counts: (0..len).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Shard>() + self.counts.len() * std::mem::size_of::<AtomicU32>()
    }
}

pub(crate) struct Series {
    pub(crate) meta: Arc<TransactionMeta>,
    apdex_t_ns: u64,
    layout: Layout,
    primary: Shard,
    extra: Box<[OnceLock<Box<Shard>>]>,
    shard_mask: usize,
    pub(crate) segments: SegmentTable,
    errors: Arc<ErrorLog>,
    tracing: Tracing,
}

/// What a series needs to keep slow runs as traces.
pub(crate) struct Tracing {
    pub(crate) log: Arc<TraceLog>,
    /// Runs at or over this are slow.
    pub(crate) slow_ns: u64,
    pub(crate) per_minute: u32,
    pub(crate) max_segments: usize,
    pub(crate) budget: TraceBudget,
}

impl Series {
    pub(crate) fn new(
        meta: TransactionMeta,
        layout: Layout,
        shards: usize,
        max_segments: usize,
        errors: Arc<ErrorLog>,
        tracing: Tracing,
    ) -> Self {
        let shards = shards.max(1).next_power_of_two();
        Series {
            tracing,
            apdex_t_ns: crate::config::nanos(meta.apdex_t),
            meta: Arc::new(meta),
            layout,
            primary: Shard::new(layout.len()),
            extra: (1..shards).map(|_| OnceLock::new()).collect(),
            shard_mask: shards - 1,
            segments: SegmentTable::new(max_segments),
            errors,
        }
    }

    /// This thread's shard, and whether this thread owns it.
    #[inline(always)]
    fn shard(&self) -> (&Shard, bool) {
        let slot = thread_slot();
        let index = slot & self.shard_mask;
        let owned = slot == index;
        if index == 0 {
            return (&self.primary, owned);
        }
        match self.extra[index - 1].get() {
            Some(shard) => (shard, owned),
            None => (&self.primary, false),
        }
    }

    /// Records one run. Lock-free and allocation-free.
    #[inline(always)]
    pub(crate) fn record(&self, ns: u64, outcome: Outcome) {
        let (shard, owned) = self.shard();
        // `index_for` clamps into the layout, so this always finds its counter;
        // `get` rather than indexing keeps a panic out of the host regardless.
        if let Some(counter) = shard.counts.get(self.layout.index_for(ns)) {
            counter.fetch_add(1, Relaxed);
        }
        let stats = &shard.stats;
        if owned {
            // No other thread writes this total, so no locked instruction is
            // needed for the sum to stay exact (see the module docs).
            let sum = &stats.owned_sum_ns;
            sum.store(sum.load(Relaxed).wrapping_add(ns), Relaxed);
        } else {
            stats.shared_sum_ns.fetch_add(ns, Relaxed);
        }
        if ns < stats.min_ns.load(Relaxed) {
            stats.min_ns.fetch_min(ns, Relaxed);
        }
        if ns > stats.max_ns.load(Relaxed) {
            stats.max_ns.fetch_max(ns, Relaxed);
        }
        let error = outcome.is_error();
        if error || ns > self.apdex_t_ns {
            if error || ns > self.apdex_t_ns.saturating_mul(4) {
                stats.frustrated.fetch_add(1, Relaxed);
            } else {
                stats.tolerating.fetch_add(1, Relaxed);
            }
        }
        if let Some(slot) = outcome.slot() {
            stats.outcomes[slot].fetch_add(1, Relaxed);
        }
    }

    /// Records a finished run that started at `start`, and keeps it as a
    /// trace when it was slow, its caller sampled it (W3C `traceparent`
    /// flags) and the minute's budget allows.
    #[inline]
    pub(crate) fn finish(&self, start: Stamp, ns: u64, outcome: Outcome, run: Option<Arc<RunTrace>>) {
        self.record(ns, outcome);
        let tracing = &self.tracing;
        if ns >= tracing.slow_ns
            && run.as_ref().is_none_or(|run| run.sampled())
            && tracing.budget.take(tracing.per_minute, Stamp::now())
        {
            tracing.log.keep(&self.meta, start, ns, outcome, run);
        }
    }

    /// A new, empty record of one run's segments.
    pub(crate) fn run_trace(&self, start: Stamp) -> Arc<RunTrace> {
        Arc::new(RunTrace::new(start, self.tracing.max_segments))
    }

    pub(crate) fn capture_error(&self, error: CapturedError) {
        self.errors.capture(&self.meta.name, error);
    }

    fn shards(&self) -> impl Iterator<Item = &Shard> {
        std::iter::once(&self.primary).chain(self.extra.iter().filter_map(|s| s.get().map(|b| &**b)))
    }

    /// Bytes that [`promote`](Self::promote) would allocate.
    pub(crate) fn promotion_bytes(&self) -> usize {
        let missing = self.extra.iter().filter(|s| s.get().is_none()).count();
        missing * (std::mem::size_of::<Shard>() + self.layout.len() * std::mem::size_of::<AtomicU32>())
    }

    /// Gives the series all its shards (called at registration or by the
    /// harvester, never on the recording path).
    pub(crate) fn promote(&self) {
        for slot in self.extra.iter() {
            if slot.get().is_none() {
                let _ = slot.set(Box::new(Shard::new(self.layout.len())));
            }
        }
    }

    pub(crate) fn is_sharded(&self) -> bool {
        self.extra.iter().all(|s| s.get().is_some())
    }

    /// Bytes of memory held by this series.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Series>()
            + self.shards().map(Shard::bytes).sum::<usize>()
            + self.extra.len() * std::mem::size_of::<OnceLock<Box<Shard>>>()
            + self.meta.name.len()
            + self.segments.len() * 160
    }

    /// Takes this interval's samples, leaving the series empty. `scratch` is a
    /// reusable buffer of the layout's length, all zeros on entry and exit.
    pub(crate) fn drain(&self, scratch: &mut [u64]) -> Option<TransactionSnapshot> {
        let mut sum_ns = 0u64;
        let mut min_ns = u64::MAX;
        let mut max_ns = 0u64;
        let mut tolerating = 0u64;
        let mut frustrated = 0u64;
        let mut outcomes = [0u64; OUTCOME_SLOTS];
        let mut touched = false;
        for shard in self.shards() {
            for (total, counter) in scratch.iter_mut().zip(shard.counts.iter()) {
                if counter.load(Relaxed) != 0 {
                    *total += u64::from(counter.swap(0, Relaxed));
                    touched = true;
                }
            }
            let stats = &shard.stats;
            sum_ns = sum_ns.wrapping_add(stats.shared_sum_ns.swap(0, Relaxed));
            {
                let mut harvested = lock(&stats.harvested_sum_ns);
                let total = stats.owned_sum_ns.load(Relaxed);
                sum_ns = sum_ns.wrapping_add(total.wrapping_sub(*harvested));
                *harvested = total;
            }
            min_ns = min_ns.min(stats.min_ns.swap(u64::MAX, Relaxed));
            max_ns = max_ns.max(stats.max_ns.swap(0, Relaxed));
            tolerating += stats.tolerating.swap(0, Relaxed);
            frustrated += stats.frustrated.swap(0, Relaxed);
            for (total, counter) in outcomes.iter_mut().zip(&stats.outcomes) {
                *total += counter.swap(0, Relaxed);
            }
        }
        // A run recorded while this drain was scanning may have reached the
        // totals but not (yet) the counters: keep whatever was swapped out.
        touched |= sum_ns != 0 || max_ns != 0 || tolerating != 0 || frustrated != 0 || outcomes.iter().any(|&c| c != 0);
        let segments = self.segments.drain();
        if !touched && segments.is_empty() {
            return None;
        }
        let histogram = HistogramSnapshot::from_dense(self.layout, scratch);
        scratch.iter_mut().for_each(|c| *c = 0);
        let count = histogram.count();
        // A run still being recorded during this drain may have reached its
        // counter but not yet min and max: fall back to the histogram's own
        // extremes so that a snapshot never claims min > max.
        let (min_ns, max_ns) = consistent_extremes(&histogram, min_ns, max_ns);
        let [informational, redirection, client_error, server_error, error, cancelled] = outcomes;
        let rare: u64 = outcomes.iter().sum();
        Some(TransactionSnapshot {
            meta: self.meta.clone(),
            count,
            error_count: server_error + error,
            sum_ns,
            min_ns,
            max_ns,
            apdex: Apdex {
                threshold: self.meta.apdex_t,
                satisfied: count.saturating_sub(tolerating + frustrated),
                tolerating,
                frustrated,
            },
            outcomes: OutcomeCounts {
                ok: count.saturating_sub(rare),
                informational,
                redirection,
                client_error,
                server_error,
                error,
                cancelled,
            },
            histogram,
            segments,
        })
    }
}

/// `min` and `max` made consistent with `histogram`: the exact values when a
/// complete run set them, else the histogram's extremes; zeros when empty.
fn consistent_extremes(histogram: &HistogramSnapshot, min_ns: u64, max_ns: u64) -> (u64, u64) {
    if histogram.is_empty() {
        return (if min_ns == u64::MAX { 0 } else { min_ns }, max_ns);
    }
    let min = if min_ns == u64::MAX {
        histogram.value_at_quantile(0.0)
    } else {
        min_ns
    };
    let max = if max_ns < min {
        histogram.value_at_quantile(1.0).max(min)
    } else {
        max_ns
    };
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_left_unset_by_a_run_in_flight_come_from_the_histogram() {
        let layout = Layout::new(1_000, 3_600_000_000_000, 2).unwrap();
        let mut dense = vec![0; layout.len()];
        dense[layout.index_for(5_000_000)] += 1;
        let histogram = HistogramSnapshot::from_dense(layout, &dense);
        let (min, max) = consistent_extremes(&histogram, u64::MAX, 0);
        assert!(
            (4_900_001..=5_000_000).contains(&min) && (5_000_000..5_100_000).contains(&max),
            "{min} {max}"
        );
        assert_eq!(
            consistent_extremes(&histogram, 4_000_000, 6_000_000),
            (4_000_000, 6_000_000)
        );
        let empty = HistogramSnapshot::empty(layout);
        assert_eq!(consistent_extremes(&empty, u64::MAX, 0), (0, 0));
    }
}
