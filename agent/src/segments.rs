//! Per-transaction segment statistics: where a transaction's time goes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use crate::sync::{read, write};
use crate::transaction::SegmentKind;

/// Name of the segment that collects a transaction's segments past the limit.
pub const OVERFLOW_SEGMENT: &str = "(other)";

/// Running totals of one segment of one transaction.
#[derive(Debug)]
pub(crate) struct SegmentStats {
    kind: SegmentKind,
    name: Arc<str>,
    count: AtomicU64,
    total_ns: AtomicU64,
    exclusive_ns: AtomicU64,
}

impl SegmentStats {
    fn new(kind: SegmentKind, name: &str) -> Self {
        SegmentStats {
            kind,
            name: Arc::from(name),
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            exclusive_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn kind(&self) -> SegmentKind {
        self.kind
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Records one call: its whole duration, and the part not spent in
    /// nested segments.
    #[inline]
    pub(crate) fn record(&self, total_ns: u64, exclusive_ns: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(total_ns, Ordering::Relaxed);
        self.exclusive_ns.fetch_add(exclusive_ns, Ordering::Relaxed);
    }

    fn drain(&self) -> Option<SegmentSnapshot> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(SegmentSnapshot {
            kind: self.kind,
            name: self.name.clone(),
            count: self.count.swap(0, Ordering::Relaxed),
            total_ns: self.total_ns.swap(0, Ordering::Relaxed),
            exclusive_ns: self.exclusive_ns.swap(0, Ordering::Relaxed),
        })
    }
}

/// One segment's calls in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSnapshot {
    /// Database, external or code.
    pub kind: SegmentKind,
    /// The segment's name, e.g. `SELECT cards` or `GET api.stripe.com`.
    pub name: Arc<str>,
    /// Number of calls.
    pub count: u64,
    /// Time spent in the calls, nested segments included, in nanoseconds.
    pub total_ns: u64,
    /// Time spent in the calls less nested segments, in nanoseconds. Sums of
    /// exclusive time over a transaction's segments never double count.
    pub exclusive_ns: u64,
}

/// A transaction's segments, bounded in number.
pub(crate) struct SegmentTable {
    by_kind: [RwLock<FxHashMap<Arc<str>, Arc<SegmentStats>>>; 3],
    overflow: [Arc<SegmentStats>; 3],
    len: AtomicUsize,
    limit: usize,
}

impl SegmentTable {
    pub(crate) fn new(limit: usize) -> Self {
        SegmentTable {
            by_kind: Default::default(),
            overflow: SegmentKind::ALL.map(|kind| Arc::new(SegmentStats::new(kind, OVERFLOW_SEGMENT))),
            len: AtomicUsize::new(0),
            limit,
        }
    }

    /// The segment's statistics, created on first use; past the limit, the
    /// kind's overflow segment.
    pub(crate) fn resolve(&self, kind: SegmentKind, name: &str) -> Arc<SegmentStats> {
        let map = &self.by_kind[kind.index()];
        if let Some(stats) = read(map).get(name) {
            return stats.clone();
        }
        let mut map = write(map);
        if let Some(stats) = map.get(name) {
            return stats.clone();
        }
        if self.len.load(Ordering::Relaxed) >= self.limit {
            return self.overflow[kind.index()].clone();
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(SegmentStats::new(kind, name));
        map.insert(stats.name.clone(), stats.clone());
        stats
    }

    /// Number of distinct segments (overflow excluded).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// This interval's segments with calls, resetting them.
    pub(crate) fn drain(&self) -> Vec<SegmentSnapshot> {
        let mut out = Vec::new();
        for (map, overflow) in self.by_kind.iter().zip(&self.overflow) {
            out.extend(read(map).values().filter_map(|s| s.drain()));
            out.extend(overflow.drain());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_segments_past_the_limit() {
        let table = SegmentTable::new(2);
        table.resolve(SegmentKind::Database, "a").record(10, 10);
        table.resolve(SegmentKind::Database, "b").record(10, 5);
        table.resolve(SegmentKind::Database, "c").record(7, 7);
        table.resolve(SegmentKind::Database, "a").record(10, 10);
        let mut drained = table.drain();
        drained.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = drained.iter().map(|s| (&*s.name, s.count, s.total_ns)).collect();
        assert_eq!(names, [("(other)", 1, 7), ("a", 2, 20), ("b", 1, 10)]);
        assert!(table.drain().is_empty());
    }
}
