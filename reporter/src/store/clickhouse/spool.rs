//! The ClickHouse store's ingest journal and block writer: requests are
//! acknowledged once their batch is in a local journal, and ClickHouse
//! receives the journal in large blocks, off the request path.
//!
//! Without it, each request waits for ClickHouse's answer to the INSERTs
//! holding its rows (group commit): a replica's ingest is then bound by
//! waiting, not work, and every request in flight holds its rows in memory
//! while it waits. With it ([`ClickHouseStore::start_spool`], what
//! `kuroko serve` does):
//!
//! - **write**: the batch is postcard-encoded (each series' key once) and
//!   appended to the journal
//!   (`[journal] dir`, a folder of numbered segments, see
//!   [`crate::store::journal`]; synced when `[journal] fsync = "batch"`),
//!   then acknowledged. No network on the request path.
//! - **blocks**: a writer thread ([`ClickHouseStore::run_spool`]) closes the
//!   segment being appended to every `batch_ms` (default 1 s) or, while it
//!   is busy sending, once it is done (the write that fills it closes it
//!   sooner, at `batch_rows` rows once merged, default 100,000, or 512 MiB
//!   of journal), and sends each closed segment as one INSERT per
//!   table, oldest first, with one row per series and minute (a segment's
//!   batches are merged as they are appended, and kept in memory for the
//!   sender while it keeps up; a segment that waits longer is read back
//!   from the journal); then records the segment in `ingest_block` and
//!   deletes its file.
//! - **exactly once**: each INSERT carries a deduplication token made of
//!   this replica's id (kept in the journal folder), the segment's number
//!   and the table (`insert_deduplication_token`, on ClickHouse 22.3 and
//!   later, with `non_replicated_deduplication_window` on the tables), so a
//!   segment sent again (after a failure whose answer was lost, or replayed
//!   after a crash) is stored once. A replica that starts replays the
//!   segments its journal still holds, skipping those `ingest_block` names.
//!   On a server without tokens (18.16) the skip is all there is: a segment
//!   whose INSERTs landed but whose `ingest_block` row did not (a crash or a
//!   lost answer in between) is counted twice; within a running replica a
//!   failed segment resends only the tables not yet acknowledged.
//! - **back-pressure**: while ClickHouse is slow or down, segments wait on
//!   disk and the writer retries (1 s, doubling to 30 s); once the journal
//!   holds `[journal] max_bytes`, writes are refused
//!   ([`StoreError::Behind`]: 503 with `Retry-After`, gRPC `UNAVAILABLE`),
//!   and clients retry. Memory holds one segment's rows at a time, however
//!   many requests are in flight or segments wait.
//!
//! Reads go to ClickHouse only: a point is read about `batch_ms` after it
//! was acknowledged, once its block is in.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::writes::{Blocks, Encoded, DATA_TABLES, ROLLUP_FEEDS};
use super::{series_id, ClickHouseStore};
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;
use crate::store::group_commit::Gather as _;
use crate::store::journal::{Journal, FRAME};
use crate::store::{Batch, CounterPoint, ErrorPoint, HistogramPoint, SeriesKey, StoreError, TraceLink, TracePoint};

/// How a replica's journal is kept and sent ([`ClickHouseStore::start_spool`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The journal's folder (`[journal] dir`), one per replica.
    pub dir: PathBuf,
    /// Whether each append is synced to the disk before it is acknowledged
    /// (`[journal] fsync = "batch"`).
    pub fsync: bool,
    /// Bytes waiting past which writes are refused (`[journal] max_bytes`).
    pub max_bytes: u64,
}

/// The journal a running replica appends to, and what its writer thread
/// needs; see the [module documentation](self).
pub(super) struct Spool {
    dir: PathBuf,
    /// This replica's id, in its blocks' tokens and `ingest_block` rows.
    replica: u64,
    /// The segments the journal held when it was opened (a crash's or a
    /// stop's leftovers): checked against `ingest_block` before sending.
    backlog_at_open: Vec<u64>,
    interval: Duration,
    max_rows: usize,
    max_bytes: u64,
    appending: Mutex<Appending>,
    /// Closed segments not yet sent, oldest first.
    closed: Mutex<VecDeque<Closed>>,
    /// Signalled when a write closed a full segment.
    filled: Condvar,
    /// Bytes in the journal not yet in ClickHouse.
    waiting: AtomicU64,
    /// Segments sent since start.
    blocks: AtomicU64,
    /// Sends that failed since start.
    failures: AtomicU64,
    /// Writes refused for a full journal since start.
    refused: AtomicU64,
}

struct Appending {
    journal: Journal,
    /// The open segment's batches, merged as they come: the sender then
    /// encodes them without reading the segment back.
    merged: Merged,
}

/// A closed segment not yet sent.
struct Closed {
    number: u64,
    bytes: u64,
    /// Its batches merged, while the sender keeps up; `None` once more
    /// rows wait than memory keeps ([`IN_MEMORY_ROWS`]): read back from the
    /// journal then.
    merged: Option<Merged>,
}

/// Merged rows of closed segments kept in memory for the sender, besides
/// the open segment's (at most `batch_rows`).
const IN_MEMORY_ROWS: usize = 200_000;

/// What `/metrics` shows of a replica's journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolHealth {
    /// Bytes acknowledged and not yet in ClickHouse.
    pub waiting_bytes: u64,
    /// Segments sent to ClickHouse since start.
    pub blocks_sent: u64,
    /// Sends that failed (and were retried) since start.
    pub send_failures: u64,
    /// Writes refused because the journal was full, since start.
    pub writes_refused: u64,
    /// Syncs of the journal to the disk since start (`[journal] fsync = "batch"`).
    pub fsyncs: u64,
}

/// The longest the writer waits without looking whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Journal bytes past which a write closes the segment it appended to
/// (besides `batch_rows` rows once merged, which bound the memory a
/// segment's rows take here and in ClickHouse while it parses them).
///
/// While the sender is busy with a block, the open segment gathers what
/// comes meanwhile, so that a sender behind sends fewer, larger blocks
/// (points of one series and minute merged into one row) rather than
/// queueing many small ones: ClickHouse's work is per row and per INSERT,
/// not per point. This cap only keeps one file from growing without end;
/// memory is bounded by the rows, and a segment is read back a record at a
/// time ([`Journal::read_each`]).
const MAX_SEGMENT_BYTES: u64 = 512 << 20;

/// The id of the replica whose journal is `dir`: made once, kept in `dir/replica`.
fn replica_id(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join("replica");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(id) = u64::from_str_radix(text.trim(), 16) {
            return Ok(id);
        }
    }
    let id = super::token();
    std::fs::write(&path, format!("{id:016x}\n"))?;
    Ok(id)
}

/// The `ingest_block` table: which segments of which replica are in.
pub(super) fn ingest_block_table(db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.ingest_block (replica UInt64, segment UInt64, minute Int64)
         ENGINE = MergeTree PARTITION BY intDiv(minute, 1440) ORDER BY (replica, segment)"
    )
}

impl Spool {
    /// Appends `batch` to the journal; refused when the journal is full.
    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut framed = vec![0u8; FRAME];
        let mut framed =
            postcard::to_extend(&RecordRef::new(batch), std::mem::take(&mut framed)).map_err(|source| {
                StoreError::Inbox {
                    path: self.dir.display().to_string(),
                    id: 0,
                    source,
                }
            })?;
        let bytes = framed.len() as u64;
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting.saturating_add(bytes) > self.max_bytes {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Behind {
                dir: self.dir.display().to_string(),
                waiting,
                max: self.max_bytes,
            });
        }
        let mut appending = crate::sync::lock(&self.appending);
        appending
            .journal
            .append_framed(&mut framed)
            .map_err(|source| StoreError::Journal {
                path: self.dir.display().to_string(),
                source,
            })?;
        self.waiting.fetch_add(bytes, Ordering::Relaxed);
        appending.merged.add(batch);
        // A full segment is closed by the write that filled it, so that
        // segments (and the rows memory holds for them) stay bounded
        // however far behind the sender is.
        if appending.merged.rows() >= self.max_rows || appending.journal.len() >= MAX_SEGMENT_BYTES {
            if let Some(segment) = self.close(&mut appending) {
                self.queue(segment);
                self.filled.notify_one();
            }
        }
        Ok(())
    }

    /// Queues a closed segment for the sender, keeping its merged batches
    /// in memory only while few segments wait.
    fn queue(&self, mut segment: Closed) {
        let mut closed = crate::sync::lock(&self.closed);
        let held: usize = closed.iter().filter_map(|c| c.merged.as_ref()).map(Merged::rows).sum();
        if held + segment.merged.as_ref().map_or(0, Merged::rows) > IN_MEMORY_ROWS {
            segment.merged = None;
        }
        closed.push_back(segment);
    }

    /// Closes the open segment if it holds anything. A failure to start
    /// the next one is logged; appends go on to the old.
    fn close(&self, appending: &mut Appending) -> Option<Closed> {
        let bytes = appending.journal.len();
        if bytes == 0 {
            return None;
        }
        match appending.journal.rotate() {
            Ok(number) => Some(Closed {
                number,
                bytes,
                merged: Some(std::mem::take(&mut appending.merged)),
            }),
            Err(error) => {
                tracing::error!(%error, dir = %self.dir.display(),
                    "cannot start a new journal segment; appending to the old one");
                None
            }
        }
    }

    /// Waits until a write closed a full segment or `wait` has passed; on
    /// the latter, closes the open segment (if it holds anything) when
    /// `due`. The oldest closed segment not yet sent, if any.
    fn next_segment(&self, wait: Duration, due: bool) -> Option<(u64, u64)> {
        let closed = crate::sync::lock(&self.closed);
        let (mut closed, timeout) = self
            .filled
            .wait_timeout_while(closed, wait, |c| c.is_empty())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due && (timeout.timed_out() || wait.is_zero()) {
            drop(closed);
            let segment = self.close(&mut crate::sync::lock(&self.appending));
            if let Some(segment) = segment {
                self.queue(segment);
            }
            closed = crate::sync::lock(&self.closed);
        }
        closed.front().map(|c| (c.number, c.bytes))
    }

    /// The merged batches of closed segment `number`, if memory kept them.
    fn take_merged(&self, number: u64) -> Option<Merged> {
        let mut closed = crate::sync::lock(&self.closed);
        closed.iter_mut().find(|c| c.number == number)?.merged.take()
    }

    /// The oldest segment was sent: forget it.
    fn sent(&self, number: u64) {
        let mut closed = crate::sync::lock(&self.closed);
        if closed.front().is_some_and(|c| c.number == number) {
            closed.pop_front();
        }
    }

    pub(super) fn health(&self) -> SpoolHealth {
        SpoolHealth {
            waiting_bytes: self.waiting.load(Ordering::Relaxed),
            blocks_sent: self.blocks.load(Ordering::Relaxed),
            send_failures: self.failures.load(Ordering::Relaxed),
            writes_refused: self.refused.load(Ordering::Relaxed),
            fsyncs: crate::sync::lock(&self.appending).journal.fsyncs(),
        }
    }
}

/// A batch as the journal keeps it: each series' key once, its points by
/// the key's place (a request's points share a few keys; written out with
/// every point, the keys were most of the journal's bytes).
#[derive(serde::Serialize)]
struct RecordRef<'a> {
    keys: Vec<&'a SeriesKey>,
    histograms: Vec<(u32, i64, &'a Histogram)>,
    counters: Vec<(u32, &'a str, &'a str, i64, f64)>,
    errors: &'a [ErrorPoint],
    traces: &'a [TracePoint],
    links: &'a [TraceLink],
    streams: &'a [(StreamId, StreamState)],
}

/// A [`RecordRef`] read back.
#[derive(serde::Deserialize)]
struct Record {
    keys: Vec<SeriesKey>,
    histograms: Vec<(u32, i64, Histogram)>,
    counters: Vec<(u32, String, String, i64, f64)>,
    errors: Vec<ErrorPoint>,
    traces: Vec<TracePoint>,
    links: Vec<TraceLink>,
    streams: Vec<(StreamId, StreamState)>,
}

impl<'a> RecordRef<'a> {
    fn new(batch: &'a Batch) -> Self {
        // Points of one series share its key's allocation.
        let mut places: FxHashMap<*const SeriesKey, u32> = FxHashMap::default();
        let mut keys = Vec::new();
        let mut place = |key: &'a Arc<SeriesKey>| {
            *places.entry(Arc::as_ptr(key)).or_insert_with(|| {
                keys.push(&**key);
                u32::try_from(keys.len() - 1).unwrap_or(u32::MAX)
            })
        };
        let histograms = batch
            .histograms
            .iter()
            .map(|p| (place(&p.key), p.minute, &p.histogram))
            .collect();
        let counters = batch
            .counters
            .iter()
            .map(|p| (place(&p.key), p.name.as_str(), p.labels.as_str(), p.minute, p.value))
            .collect();
        RecordRef {
            keys,
            histograms,
            counters,
            errors: &batch.errors,
            traces: &batch.traces,
            links: &batch.links,
            streams: &batch.streams,
        }
    }
}

impl Record {
    /// The batch again; points whose key's place is not in the record (a
    /// record this build did not write) are left out.
    fn into_batch(self) -> Batch {
        let keys: Vec<Arc<SeriesKey>> = self.keys.into_iter().map(Arc::new).collect();
        let key = |place: u32| keys.get(place as usize).cloned();
        Batch {
            histograms: self
                .histograms
                .into_iter()
                .filter_map(|(place, minute, histogram)| {
                    Some(HistogramPoint {
                        key: key(place)?,
                        minute,
                        histogram,
                    })
                })
                .collect(),
            counters: self
                .counters
                .into_iter()
                .filter_map(|(place, name, labels, minute, value)| {
                    Some(CounterPoint {
                        key: key(place)?,
                        minute,
                        name,
                        labels,
                        value,
                    })
                })
                .collect(),
            errors: self.errors,
            traces: self.traces,
            links: self.links,
            streams: self.streams,
        }
    }
}

/// A segment's batches as one: a histogram per series and minute, a sum per
/// counter, series, labels and minute (a busy service sends a series'
/// minute in several requests; each row costs ClickHouse a parse and a pass
/// of every materialised view), the rest as they came.
///
/// Keyed by numbers, as the embedded store's [`Pending`](crate::store::pending)
/// is: a series by its id ([`series_id`], what its rows are stored under,
/// hashed once per key a batch shares among its points), a counter's name
/// and labels by their place in `label_sets`. Keyed by the key's strings
/// (and the counter's, cloned per point), merging took a third of a
/// replica's CPU at 50,000 histogram and 350,000 counter points a second.
#[derive(Default)]
struct Merged {
    histograms: FxHashMap<(u64, i64), (Arc<SeriesKey>, Histogram)>,
    counters: FxHashMap<(u64, usize, i64), (Arc<SeriesKey>, f64)>,
    /// Counter names and label sets, each once, by name then labels.
    label_numbers: FxHashMap<String, FxHashMap<String, usize>>,
    label_sets: Vec<(String, String)>,
    rest: Batch,
}

impl Merged {
    fn add(&mut self, batch: &Batch) {
        let mut ids: FxHashMap<*const SeriesKey, u64> = FxHashMap::default();
        let mut id_of = |key: &Arc<SeriesKey>| *ids.entry(Arc::as_ptr(key)).or_insert_with(|| series_id(key));
        for point in &batch.histograms {
            match self.histograms.entry((id_of(&point.key), point.minute)) {
                Entry::Occupied(mut merged) => merged.get_mut().1.merge(&point.histogram),
                Entry::Vacant(slot) => {
                    slot.insert((point.key.clone(), point.histogram.clone()));
                }
            }
        }
        for point in &batch.counters {
            let label = self.label_number(&point.name, &point.labels);
            self.counters
                .entry((id_of(&point.key), label, point.minute))
                .or_insert_with(|| (point.key.clone(), 0.0))
                .1 += point.value;
        }
        self.rest.errors.extend_from_slice(&batch.errors);
        self.rest.traces.extend_from_slice(&batch.traces);
        self.rest.links.extend_from_slice(&batch.links);
        self.rest.streams.extend_from_slice(&batch.streams);
    }

    /// The number of a counter's name and label set, given on first sight.
    fn label_number(&mut self, name: &str, labels: &str) -> usize {
        if let Some(&number) = self.label_numbers.get(name).and_then(|by_labels| by_labels.get(labels)) {
            return number;
        }
        let number = self.label_sets.len();
        self.label_sets.push((name.to_owned(), labels.to_owned()));
        self.label_numbers
            .entry(name.to_owned())
            .or_default()
            .insert(labels.to_owned(), number);
        number
    }

    /// Rows it would insert: histograms and counters per series and
    /// minute, and the rest.
    fn rows(&self) -> usize {
        self.histograms.len() + self.counters.len() + self.rest.len()
    }

    fn into_batch(self) -> Batch {
        let Merged {
            histograms,
            counters,
            label_sets,
            mut rest,
            ..
        } = self;
        rest.histograms = histograms
            .into_iter()
            .map(|((_, minute), (key, histogram))| HistogramPoint { key, minute, histogram })
            .collect();
        rest.counters = counters
            .into_iter()
            .map(|((_, label, minute), (key, value))| {
                // Numbered by `label_number`, which pushed the set.
                let (name, labels) = label_sets[label].clone();
                CounterPoint {
                    key,
                    minute,
                    name,
                    labels,
                    value,
                }
            })
            .collect();
        rest
    }
}

/// The segment being sent: its rows, encoded once, and which INSERTs are done.
struct Sending {
    number: u64,
    rows: Encoded,
    blocks: Blocks,
}

impl ClickHouseStore {
    /// Turns on the journal: from now on [`Store::write`](crate::store::Store::write)
    /// acknowledges once a batch is in the journal in `settings.dir`, and
    /// [`ClickHouseStore::run_spool`] (which the caller runs on a thread of
    /// its own) sends it to ClickHouse; see the [module documentation](self).
    /// Refused when another process holds the journal.
    pub fn start_spool(&self, settings: &SpoolSettings) -> Result<(), StoreError> {
        // Messages name the folder whatever the working directory.
        let shown = std::path::absolute(&settings.dir)
            .unwrap_or_else(|_| settings.dir.clone())
            .display()
            .to_string();
        let journal_error = |source| StoreError::Journal {
            path: format!("{shown} ([journal] dir)"),
            source,
        };
        let lock = match Journal::lock(&settings.dir) {
            Ok(lock) => lock,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(StoreError::JournalHeld {
                    dir: shown.clone(),
                    holder: Journal::holder(&settings.dir).map_or_else(String::new, |pid| format!(" (pid {pid})")),
                });
            }
            Err(error) => return Err(journal_error(error)),
        };
        let replica = replica_id(&settings.dir).map_err(journal_error)?;
        self.execute(&ingest_block_table(&self.database))?;
        let (mut journal, backlog) = Journal::open_backlog(&settings.dir, lock).map_err(journal_error)?;
        journal.set_fsync(settings.fsync).map_err(journal_error)?;
        let waiting: u64 = backlog.iter().map(|n| Journal::segment_len(&settings.dir, *n)).sum();
        if !backlog.is_empty() {
            tracing::info!(segments = backlog.len(), bytes = waiting, dir = %settings.dir.display(),
                "replaying the ClickHouse journal left by the last run");
        }
        let spool = Spool {
            dir: settings.dir.clone(),
            replica,
            backlog_at_open: backlog.clone(),
            interval: self.batching.interval,
            max_rows: self.batching.max_rows,
            max_bytes: settings.max_bytes,
            appending: Mutex::new(Appending {
                journal,
                merged: Merged::default(),
            }),
            closed: Mutex::new(
                backlog
                    .iter()
                    .map(|n| Closed {
                        number: *n,
                        bytes: Journal::segment_len(&settings.dir, *n),
                        merged: None,
                    })
                    .collect(),
            ),
            filled: Condvar::new(),
            waiting: AtomicU64::new(waiting),
            blocks: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        };
        self.spool
            .set(spool)
            .map_err(|_| self.error("the journal is started already"))
    }

    /// Appends `batch` to the journal when it is on (`Some`), else `None`.
    pub(super) fn spool_write(&self, batch: &Batch) -> Option<Result<(), StoreError>> {
        self.spool.get().map(|spool| spool.append(batch))
    }

    /// The journal's state, when it is on.
    pub fn spool_health(&self) -> Option<SpoolHealth> {
        self.spool.get().map(Spool::health)
    }

    /// Sends the journal to ClickHouse until `stop` says so (or is dropped),
    /// then closes the open segment and sends what it can for up to
    /// `drain` more; what is left is replayed by the next start. Returns at
    /// once when the journal is not on.
    pub fn run_spool(&self, stop: &mpsc::Receiver<()>, drain: Duration) {
        let Some(spool) = self.spool.get() else {
            return;
        };
        let mut sending: Option<Sending> = None;
        let mut retry = Duration::ZERO;
        let mut failing_since: Option<Instant> = None;
        let mut stopping: Option<Instant> = None;
        let mut last_close = Instant::now();
        loop {
            if stopping.is_none() && !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                stopping = Some(Instant::now());
            }
            if let Some(since) = stopping {
                if since.elapsed() >= drain {
                    return;
                }
            }
            // Waits in slices, so that a stop is seen within one whatever
            // `batch_ms` is; the open segment closes once `batch_ms` passed.
            let (wait, due) = match stopping {
                Some(_) => (Duration::ZERO, true),
                None => {
                    let left = spool.interval.saturating_sub(last_close.elapsed());
                    (left.min(STOP_CHECK), left <= STOP_CHECK)
                }
            };
            let next = spool.next_segment(wait, due);
            if due {
                last_close = Instant::now();
            }
            let Some((number, bytes)) = next else {
                if stopping.is_some() {
                    return;
                }
                continue;
            };
            match self.send_segment(spool, number, &mut sending) {
                Ok(()) => {
                    spool.sent(number);
                    if let Err(error) = Journal::remove(&spool.dir, number) {
                        tracing::warn!(%error, segment = number, "cannot delete a sent journal segment");
                    }
                    let _ = spool
                        .waiting
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(bytes)));
                    spool.blocks.fetch_add(1, Ordering::Relaxed);
                    retry = Duration::ZERO;
                    if let Some(since) = failing_since.take() {
                        tracing::warn!(
                            after_seconds = since.elapsed().as_secs(),
                            "ClickHouse takes the journal again"
                        );
                    }
                }
                Err(error) => {
                    spool.failures.fetch_add(1, Ordering::Relaxed);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::error!(%error, waiting_bytes = spool.waiting.load(Ordering::Relaxed),
                            "cannot send the journal to ClickHouse; requests are kept in the journal and retried");
                    }
                    retry = (retry * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                    let pause = match stopping {
                        Some(since) => retry.min(drain.saturating_sub(since.elapsed())),
                        None => retry,
                    };
                    if !matches!(stop.recv_timeout(pause), Err(mpsc::RecvTimeoutError::Timeout)) {
                        stopping.get_or_insert_with(Instant::now);
                    }
                }
            }
        }
    }

    /// Sends segment `number` (one INSERT per table), then records it in
    /// `ingest_block`. `sending` keeps the segment's rows and the INSERTs
    /// done across failed tries.
    fn send_segment(&self, spool: &Spool, number: u64, sending: &mut Option<Sending>) -> Result<(), StoreError> {
        if sending.as_ref().is_none_or(|s| s.number != number) {
            if spool.backlog_at_open.contains(&number) && self.segment_in(spool.replica, number)? {
                return Ok(());
            }
            let started = Instant::now();
            let (rows, from) = match spool.take_merged(number) {
                Some(merged) => (self.encode_batch(&merged.into_batch())?, "memory"),
                None => (self.read_segment(spool, number)?, "journal"),
            };
            tracing::debug!(
                segment = number,
                from,
                points = rows.rows(),
                encoded_ms = started.elapsed().as_millis(),
                "encoded a journal segment"
            );
            *sending = Some(Sending {
                number,
                rows,
                blocks: Blocks::new(self.dedup.then(|| format!("{:016x}-{number}", spool.replica))),
            });
        }
        let Some(segment) = sending.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        self.insert_group(&segment.rows, &mut segment.blocks)?;
        tracing::debug!(
            segment = number,
            inserted_ms = started.elapsed().as_millis(),
            "sent a journal segment"
        );
        let minute = i64::try_from(super::now_nanos() / 60_000_000_000).unwrap_or(i64::MAX);
        self.execute(&format!(
            "INSERT INTO ingest_block (replica, segment, minute) VALUES ({}, {number}, {minute})",
            spool.replica
        ))?;
        *sending = None;
        Ok(())
    }

    /// A segment's batches, encoded as one group of rows. A record that
    /// cannot be read back is logged and left out: the others go on.
    fn read_segment(&self, spool: &Spool, number: u64) -> Result<Encoded, StoreError> {
        let mut merged = Merged::default();
        let torn = Journal::read_each(&spool.dir, number, |record| {
            match postcard::from_bytes::<Record>(record) {
                Ok(record) => merged.add(&record.into_batch()),
                Err(error) => tracing::error!(%error, segment = number, bytes = record.len(),
                    "a journal record cannot be read back; left out, the rest of the segment is sent"),
            }
        })
        .map_err(|source| StoreError::Journal {
            path: spool.dir.display().to_string(),
            source,
        })?;
        if torn > 0 {
            tracing::warn!(
                bytes = torn,
                segment = number,
                "dropped a torn journal record: a batch being written when the reporter stopped, never acknowledged"
            );
        }
        self.encode_batch(&merged.into_batch())
    }

    /// Whether `ingest_block` says segment `number` of `replica` is in.
    fn segment_in(&self, replica: u64, number: u64) -> Result<bool, StoreError> {
        #[derive(Deserialize)]
        struct Count {
            n: u64,
        }
        let rows: Vec<Count> = self.select(&format!(
            "SELECT count() AS n FROM ingest_block WHERE replica = {replica} AND segment = {number}"
        ))?;
        Ok(rows.first().is_some_and(|c| c.n > 0))
    }
}

/// The tables the writer inserts a batch's rows into, each INSERT named by a
/// token where the server has them: the series, the points' tables, the links.
fn tokened() -> impl Iterator<Item = &'static str> {
    std::iter::once("series")
        .chain(DATA_TABLES)
        .chain(std::iter::once("trace_link"))
}

/// Blocks' tokens a table remembers: at a block per second per replica,
/// about nine hours of three replicas' blocks, the longest a crashed
/// replica's journal may wait to be replayed exactly once.
const DEDUPLICATION_WINDOW: u64 = 100_000;

/// `major.minor` of a `version()` answer (`18.16.1`, `26.9.2.1`).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

impl ClickHouseStore {
    /// Whether the server takes deduplication tokens (ClickHouse 22.3 and
    /// later); when it does, the tables the writer inserts into are set to
    /// remember the last [`DEDUPLICATION_WINDOW`] blocks' tokens, and every
    /// INSERT into them carries one (also a random one, when sent once: with
    /// the window set, blocks without a token would be told apart by their
    /// rows, and two equal batches would be stored once).
    pub(super) fn enable_deduplication(&self) -> Result<bool, StoreError> {
        #[derive(Deserialize)]
        struct Version {
            v: String,
        }
        let version: Vec<Version> = self.select("SELECT version() AS v")?;
        let supported = version
            .first()
            .and_then(|v| major_minor(&v.v))
            .is_some_and(|version| version >= (22, 3));
        if supported {
            // The roll-ups too: a block dropped as a repeat is still pushed
            // to the materialised views, whose target tables then drop it
            // by the token derived from the INSERT's
            // (`deduplicate_blocks_in_dependent_materialized_views`).
            #[derive(Deserialize)]
            struct Table {
                name: String,
            }
            let rollups: Vec<Table> = self.select(&format!(
                "SELECT name FROM system.tables WHERE database = {} AND engine IN ('AggregatingMergeTree', 'SummingMergeTree')",
                super::quote(&self.database)
            ))?;
            let rollups = rollups.iter().map(|t| t.name.as_str());
            // The roll-ups' feeds keep nothing to deduplicate (engine
            // `Null`); their views' tables do.
            let kept = tokened().filter(|t| !ROLLUP_FEEDS.contains(t));
            for table in kept.map(|t| -> &str { t }).chain(rollups) {
                self.execute(&format!(
                    "ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
                ))?;
            }
        }
        Ok(supported)
    }

    /// Whether INSERTs sent again under the same tokens are stored once
    /// (ClickHouse 22.3 and later); see the [module documentation](self).
    pub fn deduplicates(&self) -> bool {
        self.dedup
    }

    /// The tokens of a group sent once (group commit): random, when the
    /// server takes tokens.
    pub(super) fn blocks_once(&self) -> Blocks {
        Blocks::new(self.dedup.then(|| format!("{:016x}", super::token())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_each_key_once_and_reads_back_as_the_batch() {
        let key = |host: &str| {
            Arc::new(SeriesKey {
                service: "svc".into(),
                host: host.into(),
                transaction: "GET /".into(),
                feature: String::new(),
                kind: "web".into(),
                environment: String::new(),
            })
        };
        let (a, b) = (key("a"), key("b"));
        let mut histogram = Histogram::empty();
        histogram.record(0.25).unwrap();
        let batch = Batch {
            histograms: vec![
                HistogramPoint {
                    key: a.clone(),
                    minute: 7,
                    histogram: histogram.clone(),
                },
                HistogramPoint {
                    key: b.clone(),
                    minute: 7,
                    histogram,
                },
            ],
            counters: (0..5)
                .map(|i| CounterPoint {
                    key: a.clone(),
                    minute: 7,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: format!("kuroko.outcome={i}"),
                    value: f64::from(i),
                })
                .collect(),
            ..Batch::default()
        };
        let record = RecordRef::new(&batch);
        assert_eq!(record.keys.len(), 2, "each key once");
        let bytes = postcard::to_allocvec(&record).unwrap();
        let read: Record = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read.into_batch(), batch);
    }

    #[test]
    fn versions_are_read_as_major_and_minor() {
        assert_eq!(major_minor("18.16.1"), Some((18, 16)));
        assert_eq!(major_minor("26.9.2.1"), Some((26, 9)));
        assert_eq!(major_minor("dev"), None);
        assert!(major_minor("22.3.1").is_some_and(|v| v >= (22, 3)));
        assert!(major_minor("21.12.4").is_some_and(|v| v < (22, 3)));
    }
}
