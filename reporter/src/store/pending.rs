//! Acknowledged points not yet merged into the store's tables.
//!
//! Agents send a series' minute in several pieces (one per harvest interval,
//! from each of its requests), so the embedded store does not merge every
//! piece into its row on disk. A request's batch is appended whole to the
//! journal (that is the acknowledgement's durability, see
//! [`super::journal`]) and merged here in memory, keyed by series id and
//! minute; a flush then writes one row per series-minute. After a crash the
//! journal is replayed into a fresh [`Pending`].

use rustc_hash::FxHashMap;
use std::time::Instant;

use super::{Batch, ErrorPoint, SeriesKey, TraceLink, TracePoint};
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;

/// One acknowledged batch as the journal keeps it: its points by series and
/// counter-label id (those rows are committed before the append), so a
/// record holds numbers, not names, and needs no lookups to replay.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RecordRef<'a> {
    histograms: Vec<(i64, i64, &'a Histogram)>,
    /// Series, label, minute and value of each counter point, little-endian,
    /// 32 bytes each: copied as one byte string (the bulk of a record).
    #[serde(with = "crate::buckets::serde_bytes_compat")]
    counters: Vec<u8>,
    errors: Vec<(i64, &'a ErrorPoint)>,
    traces: Vec<(i64, &'a TracePoint)>,
    links: Vec<(i64, LinkRef<'a>)>,
    streams: &'a [(StreamId, StreamState)],
}

/// A [`TraceLink`] as the journal keeps it: by its series' id.
#[derive(Debug, serde::Serialize)]
struct LinkRef<'a> {
    trace_id: &'a str,
    span_id: &'a str,
    start: u64,
    end: u64,
    failed: bool,
}

/// A trace link waiting for a flush, by its series' id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct PendingLink {
    /// Trace id, hex.
    pub(crate) trace_id: String,
    /// The transaction span's id, hex.
    pub(crate) span_id: String,
    /// The span's start, unix nanoseconds.
    pub(crate) start: u64,
    /// The span's end, unix nanoseconds.
    pub(crate) end: u64,
    /// Whether its request failed (the link is then kept whatever waits for it).
    pub(crate) failed: bool,
}

impl From<&TraceLink> for PendingLink {
    fn from(link: &TraceLink) -> Self {
        PendingLink {
            trace_id: link.trace_id.clone(),
            span_id: link.span_id.clone(),
            start: link.start,
            end: link.end,
            failed: link.failed,
        }
    }
}

impl<'a> RecordRef<'a> {
    /// `batch`, whose ids are `ids`, as a record.
    pub(crate) fn new(batch: &'a Batch, ids: &Resolved) -> Self {
        RecordRef {
            histograms: batch
                .histograms
                .iter()
                .zip(&ids.histograms)
                .map(|(p, &series)| (series, p.minute, &p.histogram))
                .collect(),
            counters: {
                let mut packed = Vec::with_capacity(32 * batch.counters.len());
                for (p, &(series, label)) in batch.counters.iter().zip(&ids.counters) {
                    packed.extend_from_slice(&series.to_le_bytes());
                    packed.extend_from_slice(&label.to_le_bytes());
                    packed.extend_from_slice(&p.minute.to_le_bytes());
                    packed.extend_from_slice(&p.value.to_le_bytes());
                }
                packed
            },
            errors: ids.errors.iter().copied().zip(&batch.errors).collect(),
            traces: ids.traces.iter().copied().zip(&batch.traces).collect(),
            links: ids
                .links
                .iter()
                .copied()
                .zip(&batch.links)
                .map(|(series, l)| {
                    let link = LinkRef {
                        trace_id: &l.trace_id,
                        span_id: &l.span_id,
                        start: l.start,
                        end: l.end,
                        failed: l.failed,
                    };
                    (series, link)
                })
                .collect(),
            streams: &batch.streams,
        }
    }
}

/// A [`RecordRef`] read back from the journal.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Record {
    histograms: Vec<(i64, i64, Histogram)>,
    #[serde(with = "crate::buckets::serde_bytes_compat")]
    counters: Vec<u8>,
    errors: Vec<(i64, ErrorPoint)>,
    traces: Vec<(i64, TracePoint)>,
    links: Vec<(i64, PendingLink)>,
    streams: Vec<(StreamId, StreamState)>,
}

/// A record written by a build before schema version 3: its errors had no
/// stack trace or trace id, and it had no links or stream states. Replayed once, by the
/// first build that opens the store after an upgrade.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LegacyRecord {
    histograms: Vec<(i64, i64, Histogram)>,
    #[serde(with = "crate::buckets::serde_bytes_compat")]
    counters: Vec<u8>,
    errors: Vec<(i64, LegacyErrorPoint)>,
    traces: Vec<(i64, TracePoint)>,
}

/// An [`ErrorPoint`] as builds before schema version 3 wrote it.
#[derive(Debug, serde::Deserialize)]
struct LegacyErrorPoint {
    key: SeriesKey,
    minute: i64,
    error_type: String,
    message: String,
    location: String,
    count: u64,
    last_seen: u64,
    fingerprint: String,
}

impl From<LegacyRecord> for Record {
    fn from(legacy: LegacyRecord) -> Self {
        Record {
            histograms: legacy.histograms,
            counters: legacy.counters,
            errors: legacy
                .errors
                .into_iter()
                .map(|(series, e)| {
                    let point = ErrorPoint {
                        key: e.key,
                        minute: e.minute,
                        error_type: e.error_type,
                        message: e.message,
                        location: e.location,
                        count: e.count,
                        last_seen: e.last_seen,
                        fingerprint: e.fingerprint,
                        stacktrace: String::new(),
                        trace_id: String::new(),
                    };
                    (series, point)
                })
                .collect(),
            traces: legacy.traces,
            links: Vec::new(),
            streams: Vec::new(),
        }
    }
}

/// Ids of one batch's series and counter labels, in the batch's order.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// Series of each histogram point.
    pub(crate) histograms: Vec<i64>,
    /// Series and label of each counter point.
    pub(crate) counters: Vec<(i64, i64)>,
    /// Series of each error point.
    pub(crate) errors: Vec<i64>,
    /// Series of each trace.
    pub(crate) traces: Vec<i64>,
    /// Series of each trace link.
    pub(crate) links: Vec<i64>,
}

/// Points merged in memory, waiting for a flush.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// When the oldest point arrived; `None` when nothing waits.
    pub(crate) since: Option<Instant>,
    /// Histograms by (series, minute).
    pub(crate) histograms: FxHashMap<(i64, i64), Histogram>,
    /// Counter totals by (series, label, minute).
    pub(crate) counters: FxHashMap<(i64, i64, i64), f64>,
    /// Errors with their series (the tables merge them on write).
    pub(crate) errors: Vec<(i64, ErrorPoint)>,
    /// Traces with their series.
    pub(crate) traces: Vec<(i64, TracePoint)>,
    /// Trace links with their series.
    pub(crate) links: Vec<(i64, PendingLink)>,
    /// Cumulative streams' last points, the latest of each.
    pub(crate) streams: FxHashMap<StreamId, StreamState>,
}

impl Pending {
    /// Merges `batch`, whose ids are `ids`.
    pub(crate) fn add(&mut self, batch: &Batch, ids: &Resolved) {
        self.since.get_or_insert_with(Instant::now);
        for (point, &series) in batch.histograms.iter().zip(&ids.histograms) {
            match self.histograms.get_mut(&(series, point.minute)) {
                Some(total) => total.merge(&point.histogram),
                None => {
                    self.histograms.insert((series, point.minute), point.histogram.clone());
                }
            }
        }
        for (point, &(series, label)) in batch.counters.iter().zip(&ids.counters) {
            *self.counters.entry((series, label, point.minute)).or_default() += point.value;
        }
        self.errors
            .extend(ids.errors.iter().copied().zip(batch.errors.iter().cloned()));
        self.traces
            .extend(ids.traces.iter().copied().zip(batch.traces.iter().cloned()));
        self.links
            .extend(ids.links.iter().copied().zip(batch.links.iter().map(PendingLink::from)));
        self.add_streams(batch.streams.iter().cloned());
    }

    /// Keeps the latest state of each stream.
    fn add_streams(&mut self, states: impl IntoIterator<Item = (StreamId, StreamState)>) {
        let _ = crate::cumulative::keep_latest(&mut self.streams, states);
    }

    /// Merges a record replayed from the journal.
    pub(crate) fn add_record(&mut self, record: Record) {
        self.since.get_or_insert_with(Instant::now);
        for (series, minute, histogram) in record.histograms {
            match self.histograms.get_mut(&(series, minute)) {
                Some(total) => total.merge(&histogram),
                None => {
                    self.histograms.insert((series, minute), histogram);
                }
            }
        }
        // A trailing partial entry cannot occur: records are whole or dropped.
        for entry in record.counters.chunks_exact(32) {
            let field = |at: usize| <[u8; 8]>::try_from(&entry[at..at + 8]).unwrap_or_default();
            let (series, label, minute) = (
                i64::from_le_bytes(field(0)),
                i64::from_le_bytes(field(8)),
                i64::from_le_bytes(field(16)),
            );
            *self.counters.entry((series, label, minute)).or_default() += f64::from_le_bytes(field(24));
        }
        self.errors.extend(record.errors);
        self.traces.extend(record.traces);
        self.links.extend(record.links);
        self.add_streams(record.streams);
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.since.is_none()
    }

    /// Takes back points a failed flush could not write.
    pub(crate) fn absorb(&mut self, older: Pending) {
        self.since = match (self.since, older.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (key, histogram) in older.histograms {
            match self.histograms.get_mut(&key) {
                Some(total) => total.merge(&histogram),
                None => {
                    self.histograms.insert(key, histogram);
                }
            }
        }
        for (key, value) in older.counters {
            *self.counters.entry(key).or_default() += value;
        }
        self.errors.extend(older.errors);
        self.traces.extend(older.traces);
        self.links.extend(older.links);
        self.add_streams(older.streams);
    }

    /// Every minute that has a point waiting.
    pub(crate) fn minutes(&self) -> impl Iterator<Item = i64> + '_ {
        let histograms = self.histograms.keys().map(|&(_, minute)| minute);
        let counters = self.counters.keys().map(|&(_, _, minute)| minute);
        histograms
            .chain(counters)
            .chain(self.errors.iter().map(|(_, e)| e.minute))
    }
}
