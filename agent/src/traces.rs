//! Slow-transaction traces: the runs worth looking at one by one.
//!
//! A run that takes at least `slow_factor` × its Apdex threshold (4 T by
//! default) is kept as a trace: the run and the segments it called, with
//! their offsets and durations — at most `max_slow_traces_per_minute` per
//! transaction (10 by default) and `max_trace_segments` segments each. Runs
//! record their segments into a [`RunTrace`], created only when a run opens
//! its first segment, so runs without segments allocate nothing. Times are
//! monotonic stamps until harvest, where they become wall-clock times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use smallvec::SmallVec;

use crate::clock::Stamp;
use crate::segments::SegmentStats;
use crate::sync::lock;
use crate::transaction::{Outcome, SegmentKind, TransactionMeta};

/// The segments one run has called so far.
#[derive(Debug)]
pub(crate) struct RunTrace {
    start: Stamp,
    limit: usize,
    /// The first few segments live inline: most runs allocate nothing here.
    segments: Mutex<(SmallVec<[SegmentRecord; 4]>, u32)>,
}

#[derive(Debug)]
struct SegmentRecord {
    stats: Arc<SegmentStats>,
    offset_ns: u64,
    duration_ns: u64,
}

impl RunTrace {
    pub(crate) fn new(start: Stamp, limit: usize) -> Self {
        RunTrace {
            start,
            limit,
            segments: Mutex::new((SmallVec::new(), 0)),
        }
    }

    /// Adds a segment call that started at `start` and lasted `duration_ns`.
    pub(crate) fn add(&self, stats: Arc<SegmentStats>, start: Stamp, duration_ns: u64) {
        self.push(stats, start.since(self.start), duration_ns);
    }

    /// Adds a segment call that just ended after `duration_ns`.
    pub(crate) fn add_ending_now(&self, stats: Arc<SegmentStats>, duration_ns: u64) {
        self.push(
            stats,
            Stamp::now().since(self.start).saturating_sub(duration_ns),
            duration_ns,
        );
    }

    fn push(&self, stats: Arc<SegmentStats>, offset_ns: u64, duration_ns: u64) {
        let mut guard = lock(&self.segments);
        let (segments, dropped) = &mut *guard;
        if segments.len() < self.limit {
            segments.push(SegmentRecord {
                stats,
                offset_ns,
                duration_ns,
            });
        } else {
            *dropped += 1;
        }
    }
}

/// One segment call of a kept trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSegment {
    /// Database, external or code.
    pub kind: SegmentKind,
    /// The segment's name.
    pub name: Arc<str>,
    /// Its span id.
    pub span_id: [u8; 8],
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
}

/// A slow run, kept with its segments.
#[derive(Clone, Debug)]
pub struct TraceSnapshot {
    /// The transaction.
    pub meta: Arc<TransactionMeta>,
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id of the run itself.
    pub span_id: [u8; 8],
    /// When the run started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Its segments, in the order they ended.
    pub segments: Vec<TraceSegment>,
    /// Segments it called beyond the per-trace limit, not kept.
    pub dropped_segments: u32,
}

/// A kept run before harvest: stamps, not wall-clock times yet.
#[derive(Debug)]
pub(crate) struct PendingTrace {
    meta: Arc<TransactionMeta>,
    start: Stamp,
    duration_ns: u64,
    outcome: Outcome,
    run: Option<Arc<RunTrace>>,
}

/// Per-transaction budget: at most `limit` traces per wall-clock minute.
#[derive(Debug, Default)]
pub(crate) struct TraceBudget {
    /// Minute (since the agent's clock started) and traces taken in it, packed.
    window: AtomicU64,
}

impl TraceBudget {
    /// Takes one trace from this minute's budget, if any is left.
    pub(crate) fn take(&self, limit: u32, now: Stamp) -> bool {
        let minute = now.minutes();
        self.window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                let (window, taken) = (packed >> 32, packed & 0xffff_ffff);
                match (window == minute, taken < u64::from(limit)) {
                    (false, _) => Some(minute << 32 | 1),
                    (true, true) => Some(packed + 1),
                    (true, false) => None,
                }
            })
            .is_ok()
    }
}

/// The agent's slow traces of this interval, bounded.
pub(crate) struct TraceLog {
    pending: Mutex<Vec<PendingTrace>>,
    max: usize,
    dropped: AtomicU64,
}

impl TraceLog {
    pub(crate) fn new(max: usize) -> Self {
        TraceLog {
            pending: Mutex::new(Vec::new()),
            max,
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn keep(
        &self,
        meta: &Arc<TransactionMeta>,
        start: Stamp,
        duration_ns: u64,
        outcome: Outcome,
        run: Option<Arc<RunTrace>>,
    ) {
        let mut pending = lock(&self.pending);
        if pending.len() < self.max {
            pending.push(PendingTrace {
                meta: meta.clone(),
                start,
                duration_ns,
                outcome,
                run,
            });
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Traces dropped because an interval's table was full, since start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// This interval's traces with wall-clock times, `now` being the
    /// harvest's stamp and `wall` its wall-clock time.
    pub(crate) fn drain(&self, now: Stamp, wall: SystemTime) -> Vec<TraceSnapshot> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        pending
            .into_iter()
            .map(|trace| {
                let start = trace.start.wall_time(now, wall);
                let (segments, dropped_segments) = match &trace.run {
                    Some(run) => {
                        let (records, dropped) = std::mem::take(&mut *lock(&run.segments));
                        let offset = run.start.since(trace.start);
                        let segments = records
                            .into_iter()
                            .map(|r| TraceSegment {
                                kind: r.stats.kind(),
                                name: r.stats.name().clone(),
                                span_id: random_id(),
                                start: start
                                    .checked_add(Duration::from_nanos(offset + r.offset_ns))
                                    .unwrap_or(start),
                                duration: Duration::from_nanos(r.duration_ns),
                            })
                            .collect();
                        (segments, dropped)
                    }
                    None => (Vec::new(), 0),
                };
                TraceSnapshot {
                    meta: trace.meta,
                    trace_id: random_id(),
                    span_id: random_id(),
                    start,
                    duration: Duration::from_nanos(trace.duration_ns),
                    outcome: trace.outcome,
                    segments,
                    dropped_segments,
                }
            })
            .collect()
    }
}

/// Random bytes for trace and span ids (never all zero, which OTLP forbids).
fn random_id<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    if out.iter().all(|b| *b == 0) {
        out[0] = 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_the_limit_per_minute() {
        let budget = TraceBudget::default();
        let now = Stamp::now();
        let taken = (0..25).filter(|_| budget.take(10, now)).count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn ids_are_random_and_never_zero() {
        let (a, b): ([u8; 16], [u8; 16]) = (random_id(), random_id());
        assert_ne!(a, b);
        assert!(a.iter().any(|x| *x != 0));
    }
}
