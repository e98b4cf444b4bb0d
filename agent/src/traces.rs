//! Slow-transaction traces: the runs worth looking at one by one.
//!
//! A run that takes at least `slow_factor` × its Apdex threshold (4 T by
//! default) is kept as a trace: the run and the segments it called, with
//! their offsets and durations — at most `max_slow_traces_per_minute` per
//! transaction (10 by default) and `max_trace_segments` segments each. Runs
//! record their segments into a [`RunTrace`], created only when a run opens
//! its first segment, so runs without segments allocate nothing. Times are
//! monotonic stamps until harvest, where they become wall-clock times.
//!
//! A run's place in a distributed trace (see [`crate::trace_context`]) lives
//! in its [`RunTrace`] too: the trace id and parent span a caller sent, or a
//! new trace id drawn the first time one is needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use smallvec::SmallVec;

use crate::clock::Stamp;
use crate::segments::SegmentStats;
use crate::sync::lock;
use crate::trace_context::{random_id, TraceContext};
use crate::transaction::{Outcome, SegmentKind, TransactionMeta};

/// The segments one run has called so far.
#[derive(Debug)]
pub(crate) struct RunTrace {
    start: Stamp,
    limit: usize,
    /// The first few segments live inline: most runs allocate nothing here.
    segments: Mutex<(SmallVec<[SegmentRecord; 4]>, u32)>,
    /// The run's place in a distributed trace, set once: from the caller's
    /// context, from an OpenTelemetry span, or drawn when first needed.
    ids: OnceLock<RunIds>,
}

/// Trace id, parent and sampling decision of one run.
#[derive(Clone, Debug)]
pub(crate) struct RunIds {
    pub(crate) trace_id: [u8; 16],
    /// The run's own span id; all zeros until harvest draws one, unless it
    /// was given (an OpenTelemetry span's id).
    pub(crate) span_id: [u8; 8],
    /// The caller's span; all zeros for the root of a trace.
    pub(crate) parent_span_id: [u8; 8],
    pub(crate) sampled: bool,
    pub(crate) tracestate: Option<Arc<str>>,
}

impl RunIds {
    /// A new trace, started by this run.
    fn root() -> Self {
        RunIds {
            trace_id: random_id(),
            span_id: [0; 8],
            parent_span_id: [0; 8],
            sampled: true,
            tracestate: None,
        }
    }

    /// Continues the trace a caller sent: the caller's span is the parent.
    pub(crate) fn child_of(remote: &TraceContext) -> Self {
        RunIds {
            trace_id: remote.trace_id(),
            span_id: [0; 8],
            parent_span_id: remote.span_id(),
            sampled: remote.is_sampled(),
            tracestate: remote.tracestate().map(Arc::from),
        }
    }
}

#[derive(Debug)]
struct SegmentRecord {
    stats: Arc<SegmentStats>,
    offset_ns: u64,
    duration_ns: u64,
    /// The span id the call was given (sent on to the callee), else zeros.
    span_id: [u8; 8],
}

impl RunTrace {
    pub(crate) fn new(start: Stamp, limit: usize) -> Self {
        RunTrace {
            start,
            limit,
            segments: Mutex::new((SmallVec::new(), 0)),
            ids: OnceLock::new(),
        }
    }

    /// Places the run in a trace; ignored if it already has its ids (the
    /// first placement wins, so ids already sent on stay true).
    pub(crate) fn set_ids(&self, ids: RunIds) {
        let _ = self.ids.set(ids);
    }

    /// The run's ids, starting a new trace if it has none yet.
    pub(crate) fn ids(&self) -> &RunIds {
        self.ids.get_or_init(RunIds::root)
    }

    /// Whether the run's trace may be kept: false only when a caller said
    /// it did not sample it.
    pub(crate) fn sampled(&self) -> bool {
        self.ids.get().is_none_or(|ids| ids.sampled)
    }

    /// The context to send with an outgoing call whose span is `span_id`.
    #[cfg(feature = "tower")]
    pub(crate) fn outgoing(&self, span_id: [u8; 8]) -> Option<TraceContext> {
        let ids = self.ids();
        Some(TraceContext::new(ids.trace_id, span_id, ids.sampled)?.with_tracestate(ids.tracestate.clone()))
    }

    /// Adds a segment call that started at `start` and lasted `duration_ns`.
    pub(crate) fn add(&self, stats: Arc<SegmentStats>, start: Stamp, duration_ns: u64) {
        self.push(stats, start.since(self.start), duration_ns, [0; 8]);
    }

    /// Adds a call that started at `start`, lasted `duration_ns` and was
    /// sent on with `span_id` as its span.
    #[cfg(feature = "tower")]
    pub(crate) fn add_span(&self, stats: Arc<SegmentStats>, start: Stamp, duration_ns: u64, span_id: [u8; 8]) {
        self.push(stats, start.since(self.start), duration_ns, span_id);
    }

    /// Adds a segment call that just ended after `duration_ns`.
    pub(crate) fn add_ending_now(&self, stats: Arc<SegmentStats>, duration_ns: u64) {
        self.push(
            stats,
            Stamp::now().since(self.start).saturating_sub(duration_ns),
            duration_ns,
            [0; 8],
        );
    }

    fn push(&self, stats: Arc<SegmentStats>, offset_ns: u64, duration_ns: u64, span_id: [u8; 8]) {
        let mut guard = lock(&self.segments);
        let (segments, dropped) = &mut *guard;
        if segments.len() < self.limit {
            segments.push(SegmentRecord {
                stats,
                offset_ns,
                duration_ns,
                span_id,
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
    /// Trace id: the caller's when the run continued a trace (W3C
    /// `traceparent`, or an OpenTelemetry span), else one of its own.
    pub trace_id: [u8; 16],
    /// Span id of the run itself.
    pub span_id: [u8; 8],
    /// The caller's span, when the run continued a trace.
    pub parent_span_id: Option<[u8; 8]>,
    /// The `tracestate` the caller sent, if any.
    pub trace_state: Option<Arc<str>>,
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
                let ids = trace
                    .run
                    .as_ref()
                    .map(|run| run.ids().clone())
                    .unwrap_or_else(RunIds::root);
                let (segments, dropped_segments) = match &trace.run {
                    Some(run) => {
                        let (records, dropped) = std::mem::take(&mut *lock(&run.segments));
                        let offset = run.start.since(trace.start);
                        let segments = records
                            .into_iter()
                            .map(|r| TraceSegment {
                                kind: r.stats.kind(),
                                name: r.stats.name().clone(),
                                span_id: if r.span_id == [0; 8] { random_id() } else { r.span_id },
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
                    trace_id: ids.trace_id,
                    span_id: if ids.span_id == [0; 8] {
                        random_id()
                    } else {
                        ids.span_id
                    },
                    parent_span_id: (ids.parent_span_id != [0; 8]).then_some(ids.parent_span_id),
                    trace_state: ids.tracestate,
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
}
