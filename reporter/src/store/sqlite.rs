//! The embedded store: one SQLite file in WAL mode.
//!
//! Tables: `series` (one row per service, host, transaction, feature and
//! kind), `histogram_minute` (one merged histogram per series and minute; the
//! buckets as a varint blob, see `Histogram::encode_buckets`) and
//! `counter_minute` (names and labels stored once, in `counter_label`).
//!
//! A batch is acknowledged once it is appended to the journal
//! ([`super::journal`]); its points wait in memory ([`super::pending`]),
//! merged per series and minute, until a flush writes them to the tables in
//! one transaction (when they have waited [`FLUSH_EVERY`], whether or not
//! more data arrives, see [`SqliteStore::flush_if_due`]; and before every
//! read, so reads see every acknowledged point). On open, journal segments
//! not yet flushed are replayed. With WAL and `synchronous=NORMAL` a
//! committed transaction survives a crash of the reporter (kill -9), though
//! not a power cut. The schema is versioned in `meta`; a file from a newer
//! reporter is refused.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::headroom::Headroom;
use super::journal::{self, Journal};
use super::links::{self, Stacks, StoredLink, TracedError};
use super::pending::{LegacyRecord, Pending, Record, RecordRef, Resolved};
use super::plan::{floor_to, minutes_of, plan, Progress, Stretch, NEVER};
use super::rollup::{Retention, Rolled, Roller};
use super::state::{AlertState, DeliveryState, LedgerEntry, LedgerStatus, LEASE_SECONDS};
use super::{Batch, ErrorSummary, Filter, SeriesKey, StepTotal, Store, StoreError, TracePoint, TRACES_PER_HOUR};
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;
use crate::spell::{Hit, Spell};

/// The schema this build writes (2 added the journal, whose progress
/// older builds would not know to replay; 3 added stack traces and trace
/// ids to the error rows, trace links and cumulative streams' states, and
/// so to the journal's records, see [`super::pending::LegacyRecord`]).
pub const SCHEMA_VERSION: i64 = 3;

/// How long acknowledged points may wait in memory before a write flushes
/// them to the tables.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Journal bytes past which a write flushes, however young the points: a
/// flush deletes the segments, so the journal never grows past this (with
/// the headroom, see [`Ingest::journal_limit`]). A journal record holds a
/// whole request's points, a row one series' minute: at a few hundred
/// requests a second for the same series, five seconds of journal are
/// about a hundred times the rows they become.
const JOURNAL_FLUSH_BYTES: u64 = 32 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollup_quarantine (
    resolution TEXT NOT NULL, period INTEGER NOT NULL, table_name TEXT NOT NULL, cause TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (resolution, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL, kind TEXT NOT NULL,
    environment TEXT NOT NULL DEFAULT '',
    UNIQUE (service, host, txn, feature, kind, environment)
);
CREATE TABLE IF NOT EXISTS histogram_minute (
    series INTEGER NOT NULL, minute INTEGER NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    scale INTEGER NOT NULL, zero_count INTEGER NOT NULL, zero_threshold REAL NOT NULL,
    buckets BLOB NOT NULL, estimated INTEGER NOT NULL,
    PRIMARY KEY (series, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS histogram_by_minute ON histogram_minute (minute);
CREATE TABLE IF NOT EXISTS error_minute (
    series INTEGER NOT NULL, minute INTEGER NOT NULL,
    error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
    count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
    trace_id TEXT NOT NULL DEFAULT '', stack_hash INTEGER NOT NULL DEFAULT 0, stacktrace TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (series, minute, error_type, message, location, trace_id, stack_hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS error_by_minute ON error_minute (minute);
-- Transaction spans of traces whose errors came without a transaction
-- (`store::links`); kept as long as hour rows.
CREATE TABLE IF NOT EXISTS trace_link (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, series INTEGER NOT NULL, minute INTEGER NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_link_by_minute ON trace_link (minute);
CREATE TABLE IF NOT EXISTS kept_trace (
    series INTEGER NOT NULL, hour INTEGER NOT NULL, trace_id TEXT NOT NULL,
    start INTEGER NOT NULL, duration REAL NOT NULL, spans TEXT NOT NULL,
    PRIMARY KEY (series, hour, trace_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS histogram_hour (
    series INTEGER NOT NULL, hour INTEGER NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    scale INTEGER NOT NULL, zero_count INTEGER NOT NULL, zero_threshold REAL NOT NULL,
    buckets BLOB NOT NULL, estimated INTEGER NOT NULL,
    PRIMARY KEY (series, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS histogram_day (
    series INTEGER NOT NULL, day INTEGER NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    scale INTEGER NOT NULL, zero_count INTEGER NOT NULL, zero_threshold REAL NOT NULL,
    buckets BLOB NOT NULL, estimated INTEGER NOT NULL,
    PRIMARY KEY (series, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_label (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, UNIQUE (name, labels)
);
CREATE TABLE IF NOT EXISTS counter_hour (
    series INTEGER NOT NULL, label INTEGER NOT NULL, hour INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series, label, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_day (
    series INTEGER NOT NULL, label INTEGER NOT NULL, day INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series, label, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS error_hour (
    series INTEGER NOT NULL, hour INTEGER NOT NULL,
    error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
    count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
    first_minute INTEGER,
    trace_id TEXT NOT NULL DEFAULT '', stack_hash INTEGER NOT NULL DEFAULT 0, stacktrace TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (series, hour, error_type, message, location, trace_id, stack_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty (resolution TEXT NOT NULL, period INTEGER NOT NULL, PRIMARY KEY (resolution, period)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_minute (
    series INTEGER NOT NULL, label INTEGER NOT NULL, minute INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series, label, minute)
) WITHOUT ROWID;
-- Windows over recent minutes read counters by minute (without it, every
-- counter query scanned the whole table: 500 ms on a fleet's week).
CREATE INDEX IF NOT EXISTS counter_by_minute ON counter_minute (minute);
-- Cumulative streams' last points (crate::cumulative), written with the
-- points they gave: a restart continues each stream instead of recounting it.
CREATE TABLE IF NOT EXISTS stream (
    id INTEGER PRIMARY KEY, start INTEGER NOT NULL, time INTEGER NOT NULL, state BLOB NOT NULL
);
-- Transactions whose runs a duration metric counts (the agent's, an SDK's):
-- their runs counted from spans (series of kind `web.spans`, `job.spans`)
-- are not read (see FILTER).
CREATE TABLE IF NOT EXISTS metric_transaction (
    service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, environment TEXT NOT NULL,
    PRIMARY KEY (service, host, txn, environment)
) WITHOUT ROWID;
";

/// The journal and what it holds that the tables do not yet: one lock, so
/// that a flush takes exactly the points of the segments it closes.
struct Ingest {
    journal: Journal,
    pending: Pending,
}

impl Ingest {
    /// Journal bytes past which a flush is due: [`JOURNAL_FLUSH_BYTES`], or
    /// a quarter of the headroom when that is less (so a flush's rows fit
    /// in what is kept free), at least 1 MiB.
    fn journal_limit(min_free: u64) -> u64 {
        match min_free {
            0 => JOURNAL_FLUSH_BYTES,
            kept => (kept / 4).clamp(1 << 20, JOURNAL_FLUSH_BYTES),
        }
    }

    /// Whether a flush is due: the oldest pending point has waited
    /// [`FLUSH_EVERY`], or the journal holds more than its limit.
    fn due(&self, min_free: u64) -> bool {
        self.pending.since.is_some_and(|since| since.elapsed() >= FLUSH_EVERY)
            || self.journal.len() >= Ingest::journal_limit(min_free)
    }
}

/// The embedded store.
pub struct SqliteStore {
    path: String,
    connection: Mutex<Connection>,
    /// `None` when another process owns the journal: this one only reads.
    ingest: Mutex<Option<Ingest>>,
    /// Held through a flush: flushes run one at a time, in journal order.
    flushing: Mutex<()>,
    series: Mutex<FxHashMap<SeriesKey, i64>>,
    /// Series whose histograms this process has written: registered in
    /// `metric_transaction` (when they are not counted from spans).
    metric_series: Mutex<FxHashSet<i64>>,
    /// Counter label ids by name, then labels.
    labels: Mutex<FxHashMap<String, FxHashMap<String, i64>>>,
    rolled: Arc<Rolled>,
    /// The free space writes leave for flushes.
    headroom: Headroom,
    /// Failing flushes, logged as one condition.
    flush_failures: Spell,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why resolving a batch's ids stopped.
enum Halt {
    /// A series or label is new, and may not be created.
    New,
    /// The database failed.
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Halt {
    fn from(error: rusqlite::Error) -> Self {
        Halt::Sql(error)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let name = path.display().to_string();
        let error = |source| StoreError::Sqlite {
            path: name.clone(),
            cause: source,
        };
        let journal_error = |source| StoreError::Journal {
            path: Journal::dir_of(path).display().to_string(),
            source,
        };
        // Whoever owns the journal owns the schema too; another process (a
        // running reporter's CLI neighbours) only reads, and writes nothing
        // that could wait on the owner's transactions.
        let headroom = Headroom::new(path);
        let lock = match Journal::lock(&Journal::dir_of(path)) {
            Ok(lock) => Some(lock),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                tracing::debug!(store = %name, "another process is writing this store; opened without ingest");
                None
            }
            Err(source) => return Err(journal_error(source)),
        };
        let connection = Connection::open(path).map_err(error)?;
        connection
            .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
            .map_err(error)?;
        if lock.is_some() {
            connection.execute_batch("PRAGMA journal_mode = WAL;").map_err(error)?;
            connection.execute_batch(SCHEMA).map_err(error)?;
            connection.execute_batch(DELIVERY_SCHEMA).map_err(error)?;
            migrate(&connection).map_err(error)?;
        }
        let found: Option<i64> = connection
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(error)?;
        match found {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: name,
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            // Older versions were brought up to date by `migrate`; the
            // version is written once their journal is replayed (below).
            _ => {}
        }
        let owner = lock.is_some();
        let progress = |key: &str| -> Result<Option<i64>, StoreError> {
            connection
                .query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(error)
        };
        let rolled = Rolled::default();
        for (key, value) in [
            ("rolled_hours_until", &rolled.hours_until),
            ("rolled_days_until", &rolled.days_until),
            ("minutes_kept_from", &rolled.minutes_from),
            ("hours_kept_from", &rolled.hours_from),
        ] {
            if let Some(minute) = progress(key)? {
                value.store(minute, Ordering::Relaxed);
            }
        }
        let flushed_through = progress("journal_flushed_through")?.unwrap_or(0);
        let (journal, unflushed) = match lock {
            Some(lock) => {
                let flushed_through = u64::try_from(flushed_through).unwrap_or(0);
                let (journal, unflushed) =
                    Journal::open_locked(&Journal::dir_of(path), flushed_through, lock).map_err(journal_error)?;
                (Some(journal), unflushed)
            }
            // A running reporter owns the journal: read what it has flushed.
            None => (None, Vec::new()),
        };
        let store = SqliteStore {
            path: name,
            connection: Mutex::new(connection),
            ingest: Mutex::new(journal.map(|journal| Ingest {
                journal,
                pending: Pending::default(),
            })),
            flushing: Mutex::new(()),
            series: Mutex::new(FxHashMap::default()),
            metric_series: Mutex::new(FxHashSet::default()),
            labels: Mutex::new(FxHashMap::default()),
            rolled: Arc::new(rolled),
            headroom,
            flush_failures: Spell::default(),
        };
        // Records of a build before version 3 have the older layout.
        store.replay(unflushed, found.is_some_and(|found| found < 3))?;
        if owner && found != Some(SCHEMA_VERSION) {
            // The owner of the journal writes; others only read. (Written
            // only when it changes: a store on a full disk still opens.)
            store
                .connection()
                .execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| store.error(e))?;
        }
        Ok(store)
    }

    /// Merges the journal segments a crash left unflushed back in, and
    /// flushes them; `legacy`: they were written by a build before schema
    /// version 3.
    fn replay(&self, unflushed: Vec<super::journal::Segment>, legacy: bool) -> Result<(), StoreError> {
        for segment in unflushed {
            if segment.torn > 0 {
                tracing::warn!(segment = segment.number, bytes = segment.torn,
                    "dropped a torn journal record: a batch being written when the reporter stopped, never acknowledged");
            }
            tracing::info!(segment = segment.number, batches = segment.records.len(), store = %self.path,
                "replaying acknowledged batches not yet flushed");
            for record in segment.records {
                let record = if legacy {
                    postcard::from_bytes::<LegacyRecord>(&record).map(Record::from)
                } else {
                    postcard::from_bytes::<Record>(&record)
                };
                let record = record.map_err(|source| StoreError::Inbox {
                    path: self.path.clone(),
                    id: i64::try_from(segment.number).unwrap_or(i64::MAX),
                    source,
                })?;
                if let Some(ingest) = self.ingest().as_mut() {
                    ingest.pending.add_record(record);
                }
            }
        }
        // On a full disk the flush cannot get space: the store still opens
        // (reads are served), the points stay pending and their segments
        // on disk, and the next flush retries.
        if let Err(error) = self.flush() {
            tracing::error!(error = %error, store = %self.path,
                "flushing the replayed journal failed; serving reads, retrying with the next flush");
        }
        Ok(())
    }

    /// Opens the store at `path` to ingest into it (`kuroko serve`): refused
    /// with [`StoreError::AlreadyServed`], naming the holder, when another
    /// process owns its journal (it would answer every write 503).
    pub fn open_to_serve(path: &Path) -> Result<SqliteStore, StoreError> {
        let store = SqliteStore::open(path)?;
        if store.is_ingesting() {
            return Ok(store);
        }
        let dir = Journal::dir_of(path);
        Err(StoreError::AlreadyServed {
            path: store.path.clone(),
            lock: Journal::lock_path(&dir).display().to_string(),
            holder: Journal::holder(&dir).map_or_else(String::new, |pid| format!(" (pid {pid})")),
        })
    }

    /// Keeps `bytes` free on the store's file system: writes that would
    /// leave less are refused ([`StoreError::DiskLow`]); 0: no check.
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.headroom.set_min_free(bytes);
    }

    /// Whether this process owns the store's ingest (its journal): false
    /// when another process (a running `kuroko serve`) does.
    pub fn is_ingesting(&self) -> bool {
        self.ingest().is_some()
    }

    fn ingest(&self) -> MutexGuard<'_, Option<Ingest>> {
        self.ingest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long until the oldest acknowledged point still in memory has
    /// waited [`FLUSH_EVERY`] (zero: a flush is due); `None` when nothing
    /// waits, or when another process writes this store.
    pub fn flush_due_in(&self) -> Option<Duration> {
        let since = self.ingest().as_ref()?.pending.since?;
        Some(FLUSH_EVERY.saturating_sub(since.elapsed()))
    }

    /// Flushes when the oldest acknowledged point in memory has waited
    /// [`FLUSH_EVERY`]: what keeps the file at most that far behind when
    /// no write or read comes to flush it (`kuroko serve` calls it from a
    /// thread of its own). Whether it flushed.
    pub fn flush_if_due(&self) -> Result<bool, StoreError> {
        if self.flush_due_in() != Some(Duration::ZERO) {
            return Ok(false);
        }
        self.flush().map(|()| true)
    }

    /// Writes every acknowledged point still in memory to the tables.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_now()
    }

    /// Closes the journal's segment, writes its points to the tables with
    /// its number, then deletes it; on failure the points stay pending (and
    /// the segment stays, for replay), and the failure is logged as one
    /// condition with [`SqliteStore::flush_once`]'s other failures (a full
    /// disk fails every try). Callers hold `flushing`.
    fn flush_now(&self) -> Result<(), StoreError> {
        let flushed = self.flush_once();
        match &flushed {
            Ok(()) => {
                if let Some(ended) = self.flush_failures.end() {
                    tracing::warn!(failed = ended.total, lasted_seconds = ended.lasted.as_secs(), store = %self.path,
                        "flushing works again");
                }
            }
            Err(error) => match self.flush_failures.hit() {
                Hit::Started => tracing::error!(%error,
                    "flushing acknowledged points failed; they stay in the journal, the flush is retried \
                     (further failures are counted, not logged one by one)"),
                Hit::Remind {
                    since_last,
                    total,
                    lasted,
                } => tracing::error!(%error, failed = since_last, failed_total = total,
                    since_seconds = lasted.as_secs(), "flushing still fails"),
                Hit::Quiet => {}
            },
        }
        flushed
    }

    /// Whether flushes are failing now (the flush thread then waits before
    /// trying again).
    pub fn flush_failing(&self) -> bool {
        self.flush_failures.is_on()
    }

    /// One try of [`SqliteStore::flush_now`].
    fn flush_once(&self) -> Result<(), StoreError> {
        let journal_error = |source| StoreError::Journal {
            path: Journal::dir_of(Path::new(&self.path)).display().to_string(),
            source,
        };
        let (pending, through) = {
            let mut guard = self.ingest();
            let Some(ingest) = guard.as_mut().filter(|i| !i.pending.is_empty()) else {
                return Ok(());
            };
            let through = ingest.journal.rotate().map_err(journal_error)?;
            (std::mem::take(&mut ingest.pending), through)
        };
        let written = self.write_pending(&mut self.connection(), &pending, through);
        if let Err(error) = written {
            if let Some(ingest) = self.ingest().as_mut() {
                ingest.pending.absorb(pending);
            }
            return Err(self.error(error));
        }
        // Left behind, a flushed segment is deleted at the next open.
        if let Some(Err(error)) = self.ingest().as_ref().map(|i| i.journal.remove_through(through)) {
            tracing::warn!(%error, "could not delete a flushed journal segment");
        }
        Ok(())
    }

    /// A roller for this store's roll-ups and retention, with its own
    /// connection; run it from a background thread.
    pub fn roller(&self, retention: Retention) -> Result<Roller, StoreError> {
        Roller::open(Path::new(&self.path), self.rolled.clone(), retention)
    }

    fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            cause: source,
        }
    }

    fn series_id(&self, transaction: &Connection, key: &SeriesKey) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.series.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(id);
        }
        transaction.execute(
            "INSERT OR IGNORE INTO series (service, host, txn, feature, kind, environment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                key.service,
                key.host,
                key.transaction,
                key.feature,
                key.kind,
                key.environment
            ],
        )?;
        let id = transaction.query_row(
            "SELECT id FROM series WHERE service = ?1 AND host = ?2 AND txn = ?3 AND feature = ?4 AND kind = ?5
             AND environment = ?6",
            params![
                key.service,
                key.host,
                key.transaction,
                key.feature,
                key.kind,
                key.environment
            ],
            |row| row.get(0),
        )?;
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), id);
        Ok(id)
    }

    /// The id of a counter's name and labels, stored once.
    fn label_id(&self, transaction: &Connection, name: &str, labels: &str) -> Result<i64, rusqlite::Error> {
        let cached = self
            .labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .and_then(|by_labels| by_labels.get(labels))
            .copied();
        if let Some(id) = cached {
            return Ok(id);
        }
        transaction
            .prepare_cached("INSERT OR IGNORE INTO counter_label (name, labels) VALUES (?1, ?2)")?
            .execute(params![name, labels])?;
        let id = transaction
            .prepare_cached("SELECT id FROM counter_label WHERE name = ?1 AND labels = ?2")?
            .query_row(params![name, labels], |row| row.get(0))?;
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .insert(labels.to_owned(), id);
        Ok(id)
    }

    /// The ids of a batch's series and counter labels, creating those that
    /// are new (the connection is locked only then).
    /// The ids of a batch's series and counter labels from what is known
    /// already, or, with `insert`, creating the new ones (the connection is
    /// locked only then); else [`Halt::New`] at the first new one.
    fn resolve_or_halt(&self, batch: &Batch, insert: bool) -> Result<Resolved, Halt> {
        let mut connection: Option<MutexGuard<'_, Connection>> = None;
        let mut series = |key: &SeriesKey| -> Result<i64, Halt> {
            if let Some(&id) = self.series.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
                return Ok(id);
            }
            if !insert {
                return Err(Halt::New);
            }
            Ok(self.series_id(connection.get_or_insert_with(|| self.connection()), key)?)
        };
        // Points of one series share its key: each is looked up once.
        let mut shared: FxHashMap<*const SeriesKey, i64> = FxHashMap::default();
        let mut shared_series = |key: &Arc<SeriesKey>| -> Result<i64, Halt> {
            match shared.get(&Arc::as_ptr(key)) {
                Some(&id) => Ok(id),
                None => {
                    let id = series(key)?;
                    shared.insert(Arc::as_ptr(key), id);
                    Ok(id)
                }
            }
        };
        let histograms = batch
            .histograms
            .iter()
            .map(|p| shared_series(&p.key))
            .collect::<Result<_, _>>()?;
        let counter_series = batch
            .counters
            .iter()
            .map(|p| shared_series(&p.key))
            .collect::<Result<Vec<_>, _>>()?;
        let errors = batch.errors.iter().map(|p| series(&p.key)).collect::<Result<_, _>>()?;
        let traces = batch.traces.iter().map(|p| series(&p.key)).collect::<Result<_, _>>()?;
        let links = batch.links.iter().map(|l| series(&l.key)).collect::<Result<_, _>>()?;
        // Labels known already, under one lock; the new ones after.
        let mut counters: Vec<(i64, Option<i64>)> = {
            let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
            let mut last: Option<(&str, &FxHashMap<String, i64>)> = None;
            batch
                .counters
                .iter()
                .zip(counter_series)
                .map(|(point, series)| {
                    let by_labels = match last {
                        Some((name, by_labels)) if name == point.name => Some(by_labels),
                        _ => labels.get(&point.name),
                    };
                    last = by_labels.map(|b| (point.name.as_str(), b));
                    (series, by_labels.and_then(|b| b.get(&point.labels)).copied())
                })
                .collect()
        };
        for ((_, label), point) in counters
            .iter_mut()
            .zip(&batch.counters)
            .filter(|((_, l), _)| l.is_none())
        {
            if !insert {
                return Err(Halt::New);
            }
            *label = Some(self.label_id(
                connection.get_or_insert_with(|| self.connection()),
                &point.name,
                &point.labels,
            )?);
        }
        Ok(Resolved {
            histograms,
            counters: counters
                .into_iter()
                .map(|(series, label)| (series, label.unwrap_or_default()))
                .collect(),
            errors,
            traces,
            links,
        })
    }

    /// [`Store::write_quick`]: the batch's names all known, and no flush due.
    fn write_quick_batch(&self, batch: &Batch) -> Result<bool, StoreError> {
        let flush_due = match self.ingest().as_ref() {
            None => {
                return Err(StoreError::NotIngesting {
                    path: self.path.clone(),
                })
            }
            Some(ingest) => ingest.due(self.headroom.min_free()),
        };
        if flush_due {
            return Ok(false);
        }
        match self.resolve_or_halt(batch, false) {
            Ok(ids) => self.append(batch, &ids).map(|_| true),
            Err(Halt::New) => Ok(false),
            Err(Halt::Sql(error)) => Err(self.error(error)),
        }
    }

    /// Appends `batch` to the journal and merges it into the pending points;
    /// flushes them when they have waited [`FLUSH_EVERY`].
    fn write_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        if self.ingest().is_none() {
            return Err(StoreError::NotIngesting {
                path: self.path.clone(),
            });
        }
        // Ids first (their rows committed): a record in the journal is one
        // the store can place, and it holds ids rather than names.
        let ids = match self.resolve_or_halt(batch, true) {
            Ok(ids) => ids,
            Err(Halt::Sql(error)) => return Err(self.error(error)),
            // Never: resolving with inserts creates every new name.
            Err(Halt::New) => {
                return Err(StoreError::NotIngesting {
                    path: self.path.clone(),
                })
            }
        };
        let due = self.append(batch, &ids)?;
        // The batch is safe in the journal: a failed flush is retried by the
        // next write or read, and replayed after a restart.
        // (A failure is logged by `flush_now`.)
        if let (true, Ok(_flushing)) = (due, self.flushing.try_lock()) {
            if !self.flush_failing() {
                let _ = self.flush_now();
            }
        }
        Ok(())
    }

    /// Appends `batch`, whose ids are `ids`, to the journal and merges it
    /// into the pending points; whether a flush is due ([`Ingest::due`]).
    fn append(&self, batch: &Batch, ids: &Resolved) -> Result<bool, StoreError> {
        // Sized up front: growing the buffer showed in profiles.
        let estimate = batch
            .histograms
            .iter()
            .map(|p| 48 + 2 * p.histogram.buckets.span())
            .sum::<usize>()
            + 32 * batch.counters.len()
            + batch.errors.iter().map(|e| 256 + e.stacktrace.len()).sum::<usize>()
            + 96 * batch.links.len()
            + batch.traces.iter().map(|t| 256 + t.spans.len()).sum::<usize>();
        let mut framed = Vec::with_capacity(journal::FRAME + estimate);
        framed.extend_from_slice(&[0; journal::FRAME]);
        let mut record =
            postcard::to_extend(&RecordRef::new(batch, ids), framed).map_err(|source| StoreError::Inbox {
                path: self.path.clone(),
                id: 0,
                source,
            })?;
        self.headroom.check(record.len() as u64)?;
        let mut guard = self.ingest();
        let ingest = guard.as_mut().ok_or_else(|| StoreError::NotIngesting {
            path: self.path.clone(),
        })?;
        ingest
            .journal
            .append_framed(&mut record)
            .map_err(|source| match source.kind() {
                // Logged once per spell, answered like the headroom's refusal.
                std::io::ErrorKind::StorageFull => self.headroom.full(),
                _ => StoreError::Journal {
                    path: Journal::dir_of(Path::new(&self.path)).display().to_string(),
                    source,
                },
            })?;
        ingest.pending.add(batch, ids);
        Ok(ingest.due(self.headroom.min_free()))
    }

    /// Writes `pending` to the tables, and that the journal is flushed
    /// through segment `through`, in one transaction.
    fn write_pending(
        &self,
        connection: &mut Connection,
        pending: &Pending,
        through: u64,
    ) -> Result<(), rusqlite::Error> {
        let transaction = connection.transaction()?;
        // Points for hours already rolled up make those hours dirty: the
        // roller rolls them (and then their days) again from their minutes.
        // An hour whose minutes retention has begun to delete cannot be
        // rebuilt from them (that erased what was rolled), nor a day whose
        // hours it has: their late points are merged into their rows here.
        let late = Late::of(&self.rolled);
        mark_dirty(&transaction, pending, ROLLED_HOURS, |m| {
            m < late.hours_until && late.hour_rebuilds(m)
        })?;
        let merged_hour = |m: i64| m < late.hours_until && !late.hour_rebuilds(m);
        let merged_day = |m: i64| m < late.days_until && !late.day_rebuilds(m);
        if pending.minutes().any(merged_hour) {
            merge_into_rolled(&transaction, pending, merged_hour, ROLLED_HOURS)?;
            // Their days, when rolled and still whole in hours, are rolled
            // again from the merged hours (else a day row would never hold
            // these points).
            mark_dirty(&transaction, pending, ROLLED_DAYS, |m| {
                merged_hour(m) && m < late.days_until && late.day_rebuilds(m)
            })?;
        }
        if pending.minutes().any(merged_day) {
            merge_into_rolled(&transaction, pending, merged_day, ROLLED_DAYS)?;
        }
        for (&(series, minute), histogram) in &pending.histograms {
            // A series' minute is usually flushed once: insert, and merge
            // with the stored row only when there is one.
            let inserted = write_histogram(&transaction, MINUTES, series, minute, histogram, false)?;
            if !inserted {
                if let Some(mut stored) = read_histogram(&transaction, series, minute)? {
                    stored.merge(histogram);
                    write_histogram(&transaction, MINUTES, series, minute, &stored, true)?;
                }
            }
        }
        for (&(series, label, minute), value) in &pending.counters {
            transaction
                .prepare_cached(
                    "INSERT INTO counter_minute (series, label, minute, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (series, label, minute) DO UPDATE SET value = value + excluded.value",
                )?
                .execute(params![series, label, minute, value])?;
        }
        for (series, point) in &pending.errors {
            transaction
                .prepare_cached(
                    "INSERT INTO error_minute (series, minute, error_type, message, location, count, last_seen,
                                               fingerprint, trace_id, stack_hash, stacktrace)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (series, minute, error_type, message, location, trace_id, stack_hash)
                     DO UPDATE SET count = count + excluded.count, last_seen = MAX(last_seen, excluded.last_seen),
                        fingerprint = CASE WHEN excluded.fingerprint = '' THEN fingerprint ELSE excluded.fingerprint END",
                )?
                .execute(params![
                    series,
                    point.minute,
                    point.error_type,
                    point.message,
                    point.location,
                    point.count as i64,
                    point.last_seen as i64,
                    point.fingerprint,
                    point.trace_id,
                    links::stack_hash(&point.stacktrace) as i64,
                    point.stacktrace,
                ])?;
        }
        // A link is kept when its request failed, or when an error of its
        // trace waits for it (this flush's errors are written above).
        for (series, link) in &pending.links {
            let waited_for = || {
                transaction
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM error_minute WHERE trace_id = ?1 AND trace_id != '')",
                    )?
                    .query_row([&link.trace_id], |row| row.get::<_, bool>(0))
            };
            if link.failed || waited_for()? {
                transaction
                    .prepare_cached(
                        "INSERT OR REPLACE INTO trace_link (trace_id, span_id, series, minute, start_ns, end_ns)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        link.trace_id,
                        link.span_id,
                        series,
                        (link.end / 60_000_000_000) as i64,
                        link.start as i64,
                        link.end as i64,
                    ])?;
            }
        }
        for (series, point) in &pending.traces {
            let hour = (point.start / 3_600_000_000_000) as i64;
            transaction.execute(
                "INSERT OR REPLACE INTO kept_trace (series, hour, trace_id, start, duration, spans)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    series,
                    hour,
                    point.trace_id,
                    point.start as i64,
                    point.duration,
                    point.spans
                ],
            )?;
            // Keep only the slowest few of the hour.
            transaction.execute(
                "DELETE FROM kept_trace WHERE series = ?1 AND hour = ?2 AND trace_id NOT IN
                 (SELECT trace_id FROM kept_trace WHERE series = ?1 AND hour = ?2 ORDER BY duration DESC LIMIT ?3)",
                params![series, hour, TRACES_PER_HOUR],
            )?;
        }
        for (&id, state) in &pending.streams {
            transaction
                .prepare_cached(
                    "INSERT INTO stream (id, start, time, state) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET start = excluded.start, time = excluded.time, state = excluded.state
                     WHERE (excluded.start, excluded.time) > (stream.start, stream.time)",
                )?
                .execute(params![
                    id as i64,
                    i64::try_from(state.start).unwrap_or(i64::MAX),
                    i64::try_from(state.time).unwrap_or(i64::MAX),
                    state.to_bytes()
                ])?;
        }
        // The transactions a duration metric now counts: their span-counted
        // runs are no longer read. Each series once per process.
        // (Noted as registered only once committed: a failed flush retries them.)
        let mut registering: FxHashSet<i64> = FxHashSet::default();
        {
            let registered = self.metric_series.lock().unwrap_or_else(|e| e.into_inner());
            for &(series, _) in pending.histograms.keys() {
                if !registered.contains(&series) && registering.insert(series) {
                    transaction
                        .prepare_cached(
                            "INSERT OR IGNORE INTO metric_transaction (service, host, txn, environment)
                             SELECT service, host, txn, environment FROM series
                             WHERE id = ?1 AND kind NOT LIKE '%.spans'",
                        )?
                        .execute([series])?;
                }
            }
        }
        transaction.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('journal_flushed_through', ?1)",
            [i64::try_from(through).unwrap_or(i64::MAX)],
        )?;
        transaction.commit()?;
        self.metric_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(registering);
        Ok(())
    }
}

/// Where roll-ups stand, for placing late points.
pub(crate) struct Late {
    /// Hours are rolled before this minute.
    pub(crate) hours_until: i64,
    /// Days are rolled before this minute.
    pub(crate) days_until: i64,
    /// Minute rows are kept from this minute on.
    minutes_from: i64,
    /// Hour rows are kept from this minute on.
    hours_from: i64,
}

impl Late {
    pub(crate) fn of(rolled: &Rolled) -> Late {
        Late {
            hours_until: rolled.hours_until.load(Ordering::Relaxed),
            days_until: rolled.days_until.load(Ordering::Relaxed),
            minutes_from: rolled.minutes_from.load(Ordering::Relaxed),
            hours_from: rolled.hours_from.load(Ordering::Relaxed),
        }
    }

    /// Whether the hour of `minute` can be rolled again from its minutes:
    /// all of them are kept.
    pub(crate) fn hour_rebuilds(&self, minute: i64) -> bool {
        minute.div_euclid(60) * 60 >= self.minutes_from
    }

    /// Whether the day of `minute` can be rolled again from its hours.
    pub(crate) fn day_rebuilds(&self, minute: i64) -> bool {
        minute.div_euclid(1_440) * 1_440 >= self.hours_from
    }
}

/// A roll-up resolution late points can be merged into.
struct Resolution {
    /// `hour` or `day`: the tables' suffix and key column.
    name: &'static str,
    /// Its length in minutes.
    minutes: i64,
}

const ROLLED_HOURS: Resolution = Resolution {
    name: "hour",
    minutes: 60,
};
const ROLLED_DAYS: Resolution = Resolution {
    name: "day",
    minutes: 1_440,
};

/// Marks the periods of `resolution` holding the minutes of `pending` that
/// `pick` picks dirty: the roller rolls them again.
fn mark_dirty(
    transaction: &rusqlite::Transaction<'_>,
    pending: &Pending,
    resolution: Resolution,
    pick: impl Fn(i64) -> bool,
) -> Result<(), rusqlite::Error> {
    let mut periods: Vec<i64> = pending
        .minutes()
        .filter(|m| pick(*m))
        .map(|m| m.div_euclid(resolution.minutes))
        .collect();
    periods.sort_unstable();
    periods.dedup();
    for period in periods {
        transaction
            .prepare_cached("INSERT OR IGNORE INTO dirty (resolution, period) VALUES (?1, ?2)")?
            .execute(params![resolution.name, period])?;
    }
    Ok(())
}

/// Merges the points of `pending` whose minute `pick` picks into the rows
/// of `resolution` (histograms merged, counters and, for hours, error
/// counts added), for periods that can no longer be rolled again from the
/// finer rows.
fn merge_into_rolled(
    transaction: &rusqlite::Transaction<'_>,
    pending: &Pending,
    pick: impl Fn(i64) -> bool,
    resolution: Resolution,
) -> Result<(), rusqlite::Error> {
    let Resolution { name: r, minutes } = resolution;
    let mut histograms: BTreeMap<(i64, i64), Histogram> = BTreeMap::new();
    for (&(series, minute), histogram) in pending.histograms.iter().filter(|((_, m), _)| pick(*m)) {
        match histograms.entry((series, minute.div_euclid(minutes))) {
            std::collections::btree_map::Entry::Occupied(mut total) => total.get_mut().merge(histogram),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(histogram.clone());
            }
        }
    }
    let read = format!("SELECT {HISTOGRAM_COLUMNS} FROM histogram_{r} h WHERE h.series = ?1 AND h.{r} = ?2");
    for ((series, period), mut histogram) in histograms {
        let stored = transaction
            .query_row(&read, params![series, period], |row| row_histogram(row, 0))
            .optional()?;
        if let Some(stored) = stored {
            histogram.merge(&stored);
        }
        let table = (format!("histogram_{r}"), r);
        write_histogram(transaction, (&table.0, table.1), series, period, &histogram, true)?;
    }
    let add = format!(
        "INSERT INTO counter_{r} (series, label, {r}, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (series, label, {r}) DO UPDATE SET value = value + excluded.value"
    );
    for (&(series, label, minute), value) in pending.counters.iter().filter(|((_, _, m), _)| pick(*m)) {
        transaction
            .prepare_cached(&add)?
            .execute(params![series, label, minute.div_euclid(minutes), value])?;
    }
    if r != "hour" {
        // Errors roll up into hours only.
        return Ok(());
    }
    for (series, point) in pending.errors.iter().filter(|(_, e)| pick(e.minute)) {
        transaction
            .prepare_cached(
                "INSERT INTO error_hour (series, hour, error_type, message, location, count, last_seen,
                                         fingerprint, first_minute, trace_id, stack_hash, stacktrace)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (series, hour, error_type, message, location, trace_id, stack_hash)
                 DO UPDATE SET count = count + excluded.count, last_seen = MAX(last_seen, excluded.last_seen),
                    first_minute = MIN(first_minute, excluded.first_minute)",
            )?
            .execute(params![
                series,
                point.minute.div_euclid(60),
                point.error_type,
                point.message,
                point.location,
                i64::try_from(point.count).unwrap_or(i64::MAX),
                i64::try_from(point.last_seen).unwrap_or(i64::MAX),
                point.fingerprint,
                point.minute,
                point.trace_id,
                links::stack_hash(&point.stacktrace) as i64,
                point.stacktrace,
            ])?;
    }
    Ok(())
}

/// Brings an older file up to date; each step is additive and runs once.
fn migrate(connection: &Connection) -> Result<(), rusqlite::Error> {
    migrate_environment(connection)?;
    migrate_error_fingerprints(connection)?;
    migrate_error_first_minutes(connection)?;
    migrate_error_traces(connection)
}

/// The error tables gain the trace an error waits for (`trace_id`) and its
/// stack trace (`stacktrace`, keyed by `stack_hash`), both in their keys,
/// which SQLite can change only by rebuilding them; the rows already there
/// have neither. An index finds the errors of a trace when its link arrives.
fn migrate_error_traces(connection: &Connection) -> Result<(), rusqlite::Error> {
    if !has_column(connection, "error_minute", "trace_id")? {
        connection.execute_batch(
            "BEGIN;
             CREATE TABLE error_minute_v3 (
                 series INTEGER NOT NULL, minute INTEGER NOT NULL,
                 error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                 count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
                 trace_id TEXT NOT NULL DEFAULT '', stack_hash INTEGER NOT NULL DEFAULT 0,
                 stacktrace TEXT NOT NULL DEFAULT '',
                 PRIMARY KEY (series, minute, error_type, message, location, trace_id, stack_hash)
             ) WITHOUT ROWID;
             INSERT INTO error_minute_v3 (series, minute, error_type, message, location, count, last_seen, fingerprint)
                 SELECT series, minute, error_type, message, location, count, last_seen, fingerprint FROM error_minute;
             DROP TABLE error_minute;
             ALTER TABLE error_minute_v3 RENAME TO error_minute;
             CREATE INDEX IF NOT EXISTS error_by_minute ON error_minute (minute);
             CREATE TABLE error_hour_v3 (
                 series INTEGER NOT NULL, hour INTEGER NOT NULL,
                 error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                 count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
                 first_minute INTEGER,
                 trace_id TEXT NOT NULL DEFAULT '', stack_hash INTEGER NOT NULL DEFAULT 0,
                 stacktrace TEXT NOT NULL DEFAULT '',
                 PRIMARY KEY (series, hour, error_type, message, location, trace_id, stack_hash)
             ) WITHOUT ROWID;
             INSERT INTO error_hour_v3 (series, hour, error_type, message, location, count, last_seen, fingerprint,
                                        first_minute)
                 SELECT series, hour, error_type, message, location, count, last_seen, fingerprint, first_minute
                 FROM error_hour;
             DROP TABLE error_hour;
             ALTER TABLE error_hour_v3 RENAME TO error_hour;
             COMMIT;",
        )?;
    }
    connection
        .execute_batch("CREATE INDEX IF NOT EXISTS error_by_trace ON error_minute (trace_id) WHERE trace_id != ''")
}

/// `error_hour` gains the first minute each error was seen in its hour (the
/// digest says when a new error began); rows rolled before it have none and
/// are read as the hour's start.
fn migrate_error_first_minutes(connection: &Connection) -> Result<(), rusqlite::Error> {
    if !has_column(connection, "error_hour", "first_minute")? {
        connection.execute_batch("ALTER TABLE error_hour ADD COLUMN first_minute INTEGER")?;
    }
    Ok(())
}

/// Whether `table` has a column `column`.
fn has_column(connection: &Connection, table: &str, column: &str) -> Result<bool, rusqlite::Error> {
    connection.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |row| row.get(0),
    )
}

/// The error tables gain `fingerprint` (the service's own grouping key),
/// empty for the rows already there; older builds keep writing them, the
/// column defaulting to empty.
fn migrate_error_fingerprints(connection: &Connection) -> Result<(), rusqlite::Error> {
    for table in ["error_minute", "error_hour"] {
        if !has_column(connection, table, "fingerprint")? {
            connection.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''"
            ))?;
        }
    }
    Ok(())
}

/// Brings a version 1 file up to date: `series` gains `environment`, in its
/// unique key too, which SQLite can change only by rebuilding the table.
fn migrate_environment(connection: &Connection) -> Result<(), rusqlite::Error> {
    let has_environment: bool = connection.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('series') WHERE name = 'environment'",
        [],
        |row| row.get(0),
    )?;
    if has_environment {
        return Ok(());
    }
    connection.execute_batch(
        "BEGIN;
         CREATE TABLE series_v2 (
             id INTEGER PRIMARY KEY,
             service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL, kind TEXT NOT NULL,
             environment TEXT NOT NULL DEFAULT '',
             UNIQUE (service, host, txn, feature, kind, environment)
         );
         INSERT INTO series_v2 (id, service, host, txn, feature, kind) SELECT id, service, host, txn, feature, kind FROM series;
         DROP TABLE series;
         ALTER TABLE series_v2 RENAME TO series;
         COMMIT;",
    )
}

/// Writes one histogram row of `table` (`histogram_minute`, `_hour` or
/// `_day`, keyed by `column`): with `replace` false only if there is none
/// yet, returning whether it did; else replacing it.
pub(crate) fn write_histogram(
    transaction: &rusqlite::Transaction<'_>,
    (table, column): (&str, &str),
    series: i64,
    period: i64,
    h: &Histogram,
    replace: bool,
) -> Result<bool, rusqlite::Error> {
    let verb = if replace {
        "INSERT OR REPLACE"
    } else {
        "INSERT OR IGNORE"
    };
    let sql = format!(
        "{verb} INTO {table}
         (series, {column}, count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    );
    // Saturated at 2^49 runs (so no read's SUM overflows, and nothing is
    // stored negative).
    let h = h.for_store();
    let changed = transaction.prepare_cached(&sql)?.execute(params![
        series,
        period,
        h.count as i64,
        h.sum,
        h.min,
        h.max,
        h.scale,
        h.zero_count as i64,
        h.zero_threshold,
        h.encode_buckets(),
        h.estimated,
    ])?;
    Ok(changed > 0)
}

/// The minute table, for [`write_histogram`].
pub(crate) const MINUTES: (&str, &str) = ("histogram_minute", "minute");

/// A stored minute, or `None`; a row whose blob cannot be read is an error.
fn read_histogram(connection: &Connection, series: i64, minute: i64) -> Result<Option<Histogram>, rusqlite::Error> {
    connection
        .query_row(
            &format!("SELECT {HISTOGRAM_COLUMNS} FROM histogram_minute h WHERE h.series = ?1 AND h.minute = ?2"),
            params![series, minute],
            |row| row_histogram(row, 0),
        )
        .optional()
}

/// The histogram columns [`row_histogram`] reads, of a table aliased `h`.
pub(crate) const HISTOGRAM_COLUMNS: &str =
    "h.count, h.sum, h.min, h.max, h.scale, h.zero_count, h.zero_threshold, h.buckets, h.estimated";

/// The histogram whose [`HISTOGRAM_COLUMNS`] start at column `first` (read by
/// position: naming columns cost more than decoding on wide reads).
pub(crate) fn row_histogram(row: &rusqlite::Row<'_>, first: usize) -> Result<Histogram, rusqlite::Error> {
    let at = |offset: usize| first + offset;
    let blob = row.get_ref(at(7))?.as_blob()?;
    let buckets = Histogram::decode_buckets(blob).ok_or(rusqlite::Error::InvalidColumnType(
        at(7),
        "buckets".to_owned(),
        rusqlite::types::Type::Blob,
    ))?;
    Ok(Histogram {
        count: row.get::<_, i64>(at(0))? as u64,
        sum: row.get(at(1))?,
        min: row.get(at(2))?,
        max: row.get(at(3))?,
        scale: row.get(at(4))?,
        zero_count: row.get::<_, i64>(at(5))? as u64,
        zero_threshold: row.get(at(6))?,
        buckets,
        estimated: row.get(at(8))?,
    })
}

/// The condition (on `series s`) of a [`Filter`] given as parameters 3 to 7.
/// It also leaves out the runs counted from spans of a transaction whose
/// runs a duration metric counts (one source of truth per run:
/// `docs/otlp-schema.md`).
const FILTER: &str = "(?3 IS NULL OR s.service = ?3) AND (?4 IS NULL OR s.host = ?4)
     AND (?5 IS NULL OR s.txn = ?5) AND (?6 IS NULL OR s.feature = ?6) AND (?7 IS NULL OR s.environment = ?7)
     AND NOT (s.kind LIKE '%.spans' AND EXISTS (SELECT 1 FROM metric_transaction m
        WHERE m.service = s.service AND m.host = s.host AND m.txn = s.txn AND m.environment = s.environment))";

/// The series columns [`key`] reads, for a `series s` join.
const KEY_COLUMNS: &str = "s.service, s.host, s.txn, s.feature, s.kind, s.environment";

fn key(row: &rusqlite::Row<'_>) -> Result<SeriesKey, rusqlite::Error> {
    Ok(SeriesKey {
        service: row.get("service")?,
        host: row.get("host")?,
        transaction: row.get("txn")?,
        feature: row.get("feature")?,
        kind: row.get("kind")?,
        environment: row.get("environment")?,
    })
}

impl SqliteStore {
    /// The window split by how far roll-ups have got (`days` false: no day
    /// stretches, for tables rolled to hours only).
    fn plan(&self, from: i64, to: i64, days: bool) -> Vec<Stretch> {
        let load = |value: &std::sync::atomic::AtomicI64| value.load(Ordering::Relaxed);
        let progress = Progress {
            hours_until: load(&self.rolled.hours_until),
            days_until: if days { load(&self.rolled.days_until) } else { NEVER },
            minutes_from: load(&self.rolled.minutes_from),
            hours_from: if days { load(&self.rolled.hours_from) } else { NEVER },
        };
        plan(from, to, progress)
    }

    /// Runs a query whose parameters are the window (`?1`, `?2`), the
    /// filter (`?3` to `?7`) and an optional `?8`, mapping each row.
    /// Runs `sql` like [`SqliteStore::select`], handing each row to `each`
    /// instead of collecting them (wide reads merge as they go).
    fn select_each(
        &self,
        sql: &str,
        filter: &Filter,
        window: (i64, i64),
        seventh: Option<&dyn rusqlite::ToSql>,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), rusqlite::Error>,
    ) -> Result<(), StoreError> {
        self.select(sql, filter, window, seventh, |row| each(row)).map(drop)
    }

    /// Each histogram row of the series `filter` and `only` (SQL on `series
    /// s`) select in `window`, read from the coarsest rows whole in a step of
    /// `step` minutes: `each(series id, step start, histogram)`.
    fn each_histogram_step(
        &self,
        filter: &Filter,
        (from, to): (i64, i64),
        step: i64,
        only: &str,
        mut each: impl FnMut(i64, i64, Histogram),
    ) -> Result<(), StoreError> {
        let step = step.max(1);
        for stretch in self.step_plan(from, to, step) {
            let (r, minutes) = (stretch.resolution, minutes_of(stretch.resolution));
            let sql = format!(
                "SELECT h.series, h.{r}, {HISTOGRAM_COLUMNS} FROM series s CROSS JOIN histogram_{r} h ON h.series = s.id
                 WHERE h.{r} >= ?1 AND h.{r} < ?2 AND {FILTER} AND {only}"
            );
            self.select_each(&sql, filter, (stretch.from, stretch.to), None, |row| {
                let start = floor_to(row.get::<_, i64>(1)? * minutes, step);
                each(row.get(0)?, start, row_histogram(row, 2)?);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Counter `name` summed per series, label set and step, as
    /// [`SqliteStore::each_histogram_step`] reads histograms:
    /// `each(series id, label id, step start, sum)`.
    fn each_counter_step(
        &self,
        filter: &Filter,
        name: &str,
        (from, to): (i64, i64),
        step: i64,
        only: &str,
        mut each: impl FnMut(i64, i64, i64, f64),
    ) -> Result<(), StoreError> {
        let step = step.max(1);
        for stretch in self.step_plan(from, to, step) {
            let r = stretch.resolution;
            let start = step_start("c", r, step);
            let sql = format!(
                "SELECT c.series, c.label, {start} AS step_start, SUM(c.value)
                 FROM series s CROSS JOIN counter_label l CROSS JOIN counter_{r} c ON c.series = s.id AND c.label = l.id
                 WHERE c.{r} >= ?1 AND c.{r} < ?2 AND {FILTER} AND l.name = ?8 AND {only}
                 GROUP BY c.series, c.label, step_start"
            );
            self.select_each(&sql, filter, (stretch.from, stretch.to), Some(&name), |row| {
                each(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The keys of the series `ids`. Reads name series by id and resolve
    /// them once each at the end, instead of carrying six strings per row.
    fn keys_of(&self, ids: impl Iterator<Item = i64>) -> Result<Keys, StoreError> {
        let connection = self.connection();
        let read = || -> Result<FxHashMap<i64, SeriesKey>, rusqlite::Error> {
            let mut statement =
                connection.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM series s WHERE s.id = ?1"))?;
            let mut keys = FxHashMap::default();
            for id in ids {
                if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(id) {
                    slot.insert(statement.query_row([id], key)?);
                }
            }
            Ok(keys)
        };
        let keys = read().map_err(|e| self.error(e))?;
        let mut ids: Vec<i64> = keys.keys().copied().collect();
        ids.sort_unstable_by(|a, b| keys[a].cmp(&keys[b]));
        let ranks = ids.into_iter().enumerate().map(|(rank, id)| (id, rank)).collect();
        Ok(Keys { keys, ranks })
    }

    /// The group of each series `filter` selects, asked of `group` once per
    /// series, and the SQL condition (on `series s`) that keeps the reads to
    /// the grouped ones: a feature given by owners.toml patterns, which the
    /// store cannot filter by column, still reads only its own series.
    fn grouped_series(
        &self,
        filter: &Filter,
        window: (i64, i64),
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<(FxHashMap<i64, usize>, String), StoreError> {
        let sql = format!("SELECT s.id, {KEY_COLUMNS} FROM series s WHERE ?1 <= ?2 AND {FILTER}");
        let mut groups: FxHashMap<i64, usize> = FxHashMap::default();
        for (id, key) in self.select(&sql, filter, window, None, |row| Ok((row.get::<_, i64>(0)?, key(row)?)))? {
            if let Some(group) = group(&key) {
                groups.insert(id, group);
            }
        }
        let mut ids: Vec<i64> = groups.keys().copied().collect();
        ids.sort_unstable();
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        Ok((groups, format!("s.id IN ({})", ids.join(","))))
    }

    /// The label sets of counter `name`, by id.
    fn labels_of(&self, name: &str) -> Result<FxHashMap<i64, String>, StoreError> {
        let connection = self.connection();
        let read = || -> Result<FxHashMap<i64, String>, rusqlite::Error> {
            let mut statement = connection.prepare_cached("SELECT id, labels FROM counter_label WHERE name = ?1")?;
            let rows = statement.query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        };
        read().map_err(|e| self.error(e))
    }

    fn select<T>(
        &self,
        sql: &str,
        filter: &Filter,
        (from, to): (i64, i64),
        seventh: Option<&dyn rusqlite::ToSql>,
        row: impl FnMut(&rusqlite::Row<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<Vec<T>, StoreError> {
        self.flush()?;
        let connection = self.connection();
        let rows = (|| {
            let mut statement = connection.prepare_cached(sql)?;
            let window_and_filter: [&dyn rusqlite::ToSql; 7] = [
                &from,
                &to,
                &filter.service,
                &filter.host,
                &filter.transaction,
                &filter.feature,
                &filter.environment,
            ];
            let mut parameters: Vec<&dyn rusqlite::ToSql> = window_and_filter.to_vec();
            parameters.extend(seventh);
            let rows = statement.query_map(parameters.as_slice(), row)?;
            rows.collect::<Result<Vec<T>, _>>()
        })();
        rows.map_err(|e| self.error(e))
    }
}

impl SqliteStore {
    /// The stored links of `traces`.
    fn links_of(&self, traces: &[&str]) -> Result<Vec<StoredLink>, StoreError> {
        let connection = self.connection();
        let mut out = Vec::new();
        for chunk in traces.chunks(500) {
            let sql = format!(
                "SELECT {KEY_COLUMNS}, l.trace_id, l.start_ns, l.end_ns FROM trace_link l JOIN series s ON s.id = l.series
                 WHERE l.trace_id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let read = || -> Result<Vec<StoredLink>, rusqlite::Error> {
                let mut statement = connection.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(chunk), |row| {
                    Ok(StoredLink {
                        key: key(row)?,
                        trace_id: row.get("trace_id")?,
                        start: row.get::<_, i64>("start_ns")? as u64,
                        end: row.get::<_, i64>("end_ns")? as u64,
                    })
                })?;
                rows.collect()
            };
            out.extend(read().map_err(|e| self.error(e))?);
        }
        Ok(out)
    }
}

/// Series keys by id, and each id's place in the keys' order (answers are
/// sorted by key; comparing ranks is cheaper than comparing six strings).
struct Keys {
    keys: FxHashMap<i64, SeriesKey>,
    ranks: FxHashMap<i64, usize>,
}

impl Keys {
    fn key(&self, series: i64) -> Option<&SeriesKey> {
        self.keys.get(&series)
    }

    fn rank(&self, series: i64) -> usize {
        self.ranks.get(&series).copied().unwrap_or(usize::MAX)
    }
}

/// SQL for the start (in unix minutes) of the `step`-minute step holding
/// row `alias`'s `resolution` period, floored also before 1970.
fn step_start(alias: &str, resolution: &str, step: i64) -> String {
    let minutes = minutes_of(resolution);
    format!("({alias}.{resolution} * {minutes} - (({alias}.{resolution} * {minutes}) % {step} + {step}) % {step})")
}

/// Adds `histogram` to the one merged under `at`.
fn merge_into<K: std::hash::Hash + Eq>(merged: &mut FxHashMap<K, Histogram>, at: K, histogram: Histogram) {
    match merged.entry(at) {
        std::collections::hash_map::Entry::Occupied(mut total) => total.get_mut().merge(&histogram),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(histogram);
        }
    }
}

impl SqliteStore {
    /// The window split for steps of `step` minutes: day rows only when a
    /// step holds whole days, hour rows only when it holds whole hours.
    fn step_plan(&self, from: i64, to: i64, step: i64) -> Vec<Stretch> {
        let load = |value: &std::sync::atomic::AtomicI64| value.load(Ordering::Relaxed);
        let progress = Progress {
            hours_until: if step % 60 == 0 {
                load(&self.rolled.hours_until)
            } else {
                NEVER
            },
            days_until: if step % 1_440 == 0 {
                load(&self.rolled.days_until)
            } else {
                NEVER
            },
            minutes_from: load(&self.rolled.minutes_from),
            hours_from: load(&self.rolled.hours_from),
        };
        plan(from, to, progress)
    }
}

impl Store for SqliteStore {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        self.write_batch(batch)
    }

    fn write_quick(&self, batch: &Batch) -> Result<bool, StoreError> {
        self.write_quick_batch(batch)
    }

    fn histograms(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<(SeriesKey, Histogram)>, StoreError> {
        let mut merged: FxHashMap<i64, Histogram> = FxHashMap::default();
        for stretch in self.plan(from, to, true) {
            let r = stretch.resolution;
            let sql = format!(
                "SELECT h.series, {HISTOGRAM_COLUMNS} FROM series s CROSS JOIN histogram_{r} h ON h.series = s.id
                 WHERE h.{r} >= ?1 AND h.{r} < ?2 AND {FILTER}"
            );
            self.select_each(&sql, filter, (stretch.from, stretch.to), None, |row| {
                let histogram = row_histogram(row, 1)?;
                merge_into(&mut merged, row.get(0)?, histogram);
                Ok(())
            })?;
        }
        let keys = self.keys_of(merged.keys().copied())?;
        let mut rows: Vec<(i64, Histogram)> = merged.into_iter().collect();
        rows.sort_unstable_by_key(|(series, _)| keys.rank(*series));
        Ok(rows
            .into_iter()
            .filter_map(|(series, histogram)| Some((keys.key(series)?.clone(), histogram)))
            .collect())
    }

    fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, StoreError> {
        let mut totals: FxHashMap<(i64, i64), f64> = FxHashMap::default();
        for stretch in self.plan(from, to, true) {
            let r = stretch.resolution;
            let sql = format!(
                "SELECT c.series, c.label, SUM(c.value)
                 FROM series s CROSS JOIN counter_label l CROSS JOIN counter_{r} c ON c.series = s.id AND c.label = l.id
                 WHERE c.{r} >= ?1 AND c.{r} < ?2 AND {FILTER} AND l.name = ?8
                 GROUP BY c.series, c.label"
            );
            self.select_each(&sql, filter, (stretch.from, stretch.to), Some(&name), |row| {
                *totals.entry((row.get(0)?, row.get(1)?)).or_default() += row.get::<_, f64>(2)?;
                Ok(())
            })?;
        }
        let keys = self.keys_of(totals.keys().map(|(series, _)| *series))?;
        let labels = self.labels_of(name)?;
        let mut rows: Vec<(SeriesKey, String, f64)> = totals
            .into_iter()
            .filter_map(|((series, label), total)| {
                Some((keys.key(series)?.clone(), labels.get(&label)?.clone(), total))
            })
            .collect();
        rows.sort_by(|a, b| (&a.0.transaction, &a.1, &a.0).cmp(&(&b.0.transaction, &b.1, &b.0)));
        Ok(rows)
    }

    fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        let connection = self.connection();
        let read = || -> Result<Vec<SeriesKey>, rusqlite::Error> {
            let mut statement =
                connection.prepare("SELECT service, host, txn, feature, kind, environment FROM series")?;
            let rows = statement.query_map([], key)?;
            rows.collect()
        };
        read().map_err(|e| self.error(e))
    }

    fn streams(&self, ids: Option<&[StreamId]>) -> Result<Vec<(StreamId, StreamState)>, StoreError> {
        self.flush()?;
        let connection = self.connection();
        let row = |row: &rusqlite::Row<'_>| -> Result<Option<(StreamId, StreamState)>, rusqlite::Error> {
            let id = row.get::<_, i64>(0)? as u64;
            Ok(StreamState::from_bytes(row.get_ref(1)?.as_blob()?).map(|state| (id, state)))
        };
        let read = || -> Result<Vec<(StreamId, StreamState)>, rusqlite::Error> {
            let mut out = Vec::new();
            match ids {
                None => {
                    let mut statement = connection.prepare("SELECT id, state FROM stream")?;
                    for state in statement.query_map([], row)? {
                        out.extend(state?);
                    }
                }
                Some(ids) => {
                    let mut statement = connection.prepare_cached("SELECT id, state FROM stream WHERE id = ?1")?;
                    for &id in ids {
                        if let Some(state) = statement.query_row([id as i64], row).optional()? {
                            out.extend(state);
                        }
                    }
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.error(e))
    }

    fn size_bytes(&self) -> u64 {
        let files: u64 = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", self.path)).ok())
            .map(|m| m.len())
            .sum();
        // Acknowledged batches not yet flushed are on disk too.
        let journal: u64 = std::fs::read_dir(Journal::dir_of(Path::new(&self.path)))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        files + journal
    }

    fn health(&self) -> super::StoreHealth {
        super::StoreHealth {
            free_bytes: self.headroom.free_bytes(),
            min_free_bytes: self.headroom.min_free(),
            disk_low: self.headroom.is_low(),
            writes_refused_disk: self.headroom.refused(),
            quarantined: self.rolled.quarantined.load(Ordering::Relaxed),
            rollup_failures: self.rolled.failures.load(Ordering::Relaxed),
        }
    }

    fn errors(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<ErrorSummary>, StoreError> {
        let mut stacks = Stacks::default();
        let mut rows: Vec<TracedError> = Vec::new();
        for stretch in self.plan(from, to, false) {
            let r = stretch.resolution;
            let first = if r == "hour" {
                "COALESCE(e.first_minute, e.hour * 60)"
            } else {
                "e.minute"
            };
            let sql = format!(
                "SELECT {KEY_COLUMNS}, e.error_type, e.message, e.location, e.fingerprint, e.trace_id, e.stack_hash,
                        MAX(e.stacktrace) AS stacktrace, SUM(e.count) AS total, MIN({first}) AS first_minute,
                        MAX(e.last_seen) AS last_seen
                 FROM error_{r} e JOIN series s ON s.id = e.series
                 WHERE e.{r} >= ?1 AND e.{r} < ?2 AND {FILTER} AND (e.trace_id != '') = ?8
                 GROUP BY e.series, e.error_type, e.message, e.location, e.fingerprint, e.trace_id, e.stack_hash"
            );
            // Errors tied at ingest match the whole filter; those waiting
            // for their trace's transaction are read by service, host and
            // environment, and filtered once tied.
            for (untied, filter) in [(false, filter.clone()), (true, filter.untied())] {
                let read = self.select(&sql, &filter, (stretch.from, stretch.to), Some(&untied), |row| {
                    let hash = row.get::<_, i64>("stack_hash")? as u64;
                    let summary = ErrorSummary {
                        key: key(row)?,
                        error_type: row.get("error_type")?,
                        message: row.get("message")?,
                        location: row.get("location")?,
                        count: row.get::<_, i64>("total")? as u64,
                        first_minute: row.get("first_minute")?,
                        last_seen: row.get::<_, i64>("last_seen")? as u64,
                        fingerprint: row.get("fingerprint")?,
                        stacktrace: stacks.share(hash, row.get("stacktrace")?),
                    };
                    Ok((summary, row.get::<_, String>("trace_id")?))
                })?;
                rows.extend(read);
            }
        }
        let mut traces: Vec<&str> = rows
            .iter()
            .filter(|(_, trace)| !trace.is_empty())
            .map(|(_, trace)| trace.as_str())
            .collect();
        traces.sort_unstable();
        traces.dedup();
        let links = self.links_of(&traces)?;
        Ok(links::tie_and_merge(rows, &links, filter))
    }

    fn slowest_traces(&self, filter: &Filter, from: i64, to: i64, limit: usize) -> Result<Vec<TracePoint>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, t.trace_id, t.start, t.duration, t.spans
             FROM kept_trace t JOIN series s ON s.id = t.series
             WHERE t.start >= ?1 * 60000000000 AND t.start < ?2 * 60000000000 AND {FILTER}
             ORDER BY t.duration DESC LIMIT ?8"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(&sql, filter, (from, to), Some(&limit), |row| {
            Ok(TracePoint {
                key: key(row)?,
                trace_id: row.get("trace_id")?,
                start: row.get::<_, i64>("start")? as u64,
                duration: row.get("duration")?,
                spans: row.get("spans")?,
            })
        })
    }

    fn histogram_steps(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, i64, Histogram)>, StoreError> {
        let mut merged: FxHashMap<(i64, i64), Histogram> = FxHashMap::default();
        self.each_histogram_step(filter, (from, to), step, "1", |series, start, histogram| {
            merge_into(&mut merged, (series, start), histogram);
        })?;
        let keys = self.keys_of(merged.keys().map(|(series, _)| *series))?;
        let mut rows: Vec<((i64, i64), Histogram)> = merged.into_iter().collect();
        rows.sort_unstable_by_key(|((series, start), _)| (keys.rank(*series), *start));
        Ok(rows
            .into_iter()
            .filter_map(|((series, start), histogram)| Some((keys.key(series)?.clone(), start, histogram)))
            .collect())
    }

    fn histogram_steps_grouped(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<Vec<(usize, i64, Histogram)>, StoreError> {
        let (groups, only) = self.grouped_series(filter, (from, to), group)?;
        let mut merged: FxHashMap<(usize, i64), Histogram> = FxHashMap::default();
        self.each_histogram_step(filter, (from, to), step, &only, |series, start, histogram| {
            if let Some(&group) = groups.get(&series) {
                merge_into(&mut merged, (group, start), histogram);
            }
        })?;
        let mut rows: Vec<(usize, i64, Histogram)> = merged.into_iter().map(|((g, start), h)| (g, start, h)).collect();
        rows.sort_unstable_by_key(|(group, start, _)| (*group, *start));
        Ok(rows)
    }

    fn counter_steps(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, String, i64, f64)>, StoreError> {
        let mut totals: FxHashMap<(i64, i64, i64), f64> = FxHashMap::default();
        self.each_counter_step(filter, name, (from, to), step, "1", |series, label, start, value| {
            *totals.entry((series, label, start)).or_default() += value;
        })?;
        let keys = self.keys_of(totals.keys().map(|(series, _, _)| *series))?;
        let labels = self.labels_of(name)?;
        let mut rows: Vec<((i64, i64, i64), f64)> = totals.into_iter().collect();
        rows.sort_unstable_by(|((s1, l1, t1), _), ((s2, l2, t2), _)| {
            (keys.rank(*s1), labels.get(l1), t1).cmp(&(keys.rank(*s2), labels.get(l2), t2))
        });
        Ok(rows
            .into_iter()
            .filter_map(|((series, label, start), total)| {
                Some((keys.key(series)?.clone(), labels.get(&label)?.clone(), start, total))
            })
            .collect())
    }

    fn counter_steps_grouped(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<Vec<(usize, String, i64, f64)>, StoreError> {
        let (groups, only) = self.grouped_series(filter, (from, to), group)?;
        let mut sums: FxHashMap<(usize, i64, i64), f64> = FxHashMap::default();
        self.each_counter_step(filter, name, (from, to), step, &only, |series, label, start, value| {
            if let Some(&group) = groups.get(&series) {
                *sums.entry((group, label, start)).or_default() += value;
            }
        })?;
        let labels = self.labels_of(name)?;
        let mut rows: Vec<(usize, String, i64, f64)> = sums
            .into_iter()
            .filter_map(|((group, label, start), sum)| Some((group, labels.get(&label)?.clone(), start, sum)))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        Ok(rows)
    }

    fn totals_steps(&self, filter: &Filter, from: i64, to: i64, step: i64) -> Result<Vec<StepTotal>, StoreError> {
        let step = step.max(1);
        let mut totals: FxHashMap<(i64, i64), (u64, f64)> = FxHashMap::default();
        for stretch in self.step_plan(from, to, step) {
            let r = stretch.resolution;
            let start = step_start("h", r, step);
            let sql = format!(
                "SELECT h.series, {start} AS step_start, SUM(h.count), SUM(h.sum)
                 FROM series s CROSS JOIN histogram_{r} h ON h.series = s.id
                 WHERE h.{r} >= ?1 AND h.{r} < ?2 AND {FILTER}
                 GROUP BY h.series, step_start"
            );
            self.select_each(&sql, filter, (stretch.from, stretch.to), None, |row| {
                let total = totals.entry((row.get(0)?, row.get(1)?)).or_default();
                total.0 += row.get::<_, i64>(2)?.max(0) as u64;
                total.1 += row.get::<_, f64>(3)?;
                Ok(())
            })?;
        }
        let keys = self.keys_of(totals.keys().map(|(series, _)| *series))?;
        let mut rows: Vec<((i64, i64), (u64, f64))> = totals.into_iter().collect();
        rows.sort_unstable_by_key(|((series, start), _)| (keys.rank(*series), *start));
        Ok(rows
            .into_iter()
            .filter_map(|((series, start), (count, sum))| Some((keys.key(series)?.clone(), start, count, sum)))
            .collect())
    }
}

impl DeliveryState for SqliteStore {
    fn ledger_claim(&self, kind: &str, target: &str, period: &str, holder: &str, now: i64) -> Result<bool, StoreError> {
        self.delivery_claim(kind, target, period, holder, now)
            .map_err(|e| self.error(e))
    }

    fn ledger_record(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.delivery_record(entry).map_err(|e| self.error(e))
    }

    fn ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        self.delivery_ledger(since).map_err(|e| self.error(e))
    }

    fn alert_state_get(&self, name: &str) -> Result<Option<AlertState>, StoreError> {
        self.alert_get(name).map_err(|e| self.error(e))
    }

    fn alert_state_put(&self, name: &str, state: &AlertState) -> Result<(), StoreError> {
        self.alert_put(name, state).map_err(|e| self.error(e))
    }
}

// The delivery ledger and alert states (`super::state`): small tables
// beside the data, so that a restart neither resends a report nor forgets
// an alert that is firing.

const DELIVERY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS delivery_ledger (
    kind TEXT NOT NULL, target TEXT NOT NULL, period TEXT NOT NULL,
    holder TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, rounds INTEGER NOT NULL DEFAULT 0, error TEXT,
    late INTEGER NOT NULL DEFAULT 0, scheduled_at INTEGER NOT NULL DEFAULT 0,
    claimed_at INTEGER NOT NULL, finished_at INTEGER,
    PRIMARY KEY (kind, target, period)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivery_ledger_by_claim ON delivery_ledger (claimed_at);
CREATE TABLE IF NOT EXISTS alert_state (
    name TEXT PRIMARY KEY, firing INTEGER NOT NULL, since INTEGER NOT NULL, value REAL,
    notified INTEGER NOT NULL
);
";

impl SqliteStore {
    /// One statement, so the claim is atomic across connections and
    /// processes: a new row, or a takeover of a row still open (claimed or
    /// retrying) whose lease has run out.
    fn delivery_claim(
        &self,
        kind: &str,
        target: &str,
        period: &str,
        holder: &str,
        now: i64,
    ) -> Result<bool, rusqlite::Error> {
        let changed = self.connection().execute(
            "INSERT INTO delivery_ledger (kind, target, period, holder, status, claimed_at)
             VALUES (?1, ?2, ?3, ?4, 'claimed', ?5)
             ON CONFLICT (kind, target, period) DO UPDATE
                SET holder = excluded.holder, status = 'claimed', claimed_at = excluded.claimed_at
                WHERE delivery_ledger.status IN ('claimed', 'retrying')
                  AND delivery_ledger.claimed_at <= ?5 - ?6",
            params![kind, target, period, holder, now, LEASE_SECONDS],
        )?;
        Ok(changed == 1)
    }

    fn delivery_record(&self, e: &LedgerEntry) -> Result<(), rusqlite::Error> {
        self.connection().execute(
            "INSERT OR REPLACE INTO delivery_ledger
             (kind, target, period, holder, status, attempts, rounds, error, late, scheduled_at, claimed_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                e.kind,
                e.target,
                e.period,
                e.holder,
                e.status.as_str(),
                e.attempts,
                e.rounds,
                e.error,
                e.late,
                e.scheduled_at,
                e.claimed_at,
                e.finished_at
            ],
        )?;
        Ok(())
    }

    fn delivery_ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, rusqlite::Error> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT kind, target, period, holder, status, attempts, rounds, error, late, scheduled_at,
                    claimed_at, finished_at
             FROM delivery_ledger WHERE claimed_at >= ?1 OR finished_at >= ?1
             ORDER BY claimed_at, kind, target, period",
        )?;
        let rows = statement.query_map([since], |row| {
            let status: String = row.get("status")?;
            Ok(LedgerEntry {
                kind: row.get("kind")?,
                target: row.get("target")?,
                period: row.get("period")?,
                holder: row.get("holder")?,
                status: status.parse::<LedgerStatus>().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
                })?,
                attempts: row.get("attempts")?,
                rounds: row.get("rounds")?,
                error: row.get("error")?,
                late: row.get("late")?,
                scheduled_at: row.get("scheduled_at")?,
                claimed_at: row.get("claimed_at")?,
                finished_at: row.get("finished_at")?,
            })
        })?;
        rows.collect()
    }

    fn alert_get(&self, name: &str) -> Result<Option<AlertState>, rusqlite::Error> {
        self.connection()
            .query_row(
                "SELECT firing, since, value, notified FROM alert_state WHERE name = ?1",
                [name],
                |row| {
                    Ok(AlertState {
                        firing: row.get("firing")?,
                        since: row.get("since")?,
                        value: row.get("value")?,
                        notified: row.get("notified")?,
                    })
                },
            )
            .optional()
    }

    fn alert_put(&self, name: &str, state: &AlertState) -> Result<(), rusqlite::Error> {
        self.connection().execute(
            "INSERT OR REPLACE INTO alert_state (name, firing, since, value, notified) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, state.firing, state.since, state.value, state.notified],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CounterPoint, HistogramPoint};
    use std::collections::BTreeMap;

    fn key(host: &str) -> SeriesKey {
        SeriesKey {
            service: "cards-api".into(),
            host: host.into(),
            transaction: "GET /cards/{id}".into(),
            feature: "cards".into(),
            kind: "web".into(),
            environment: String::new(),
        }
    }

    fn histogram(values: &[f64]) -> Histogram {
        let mut h = Histogram::empty();
        for &v in values {
            let mut one = Histogram::empty();
            one.buckets.add(crate::histogram::bucket_index(v, 7), 1);
            one.count = 1;
            one.sum = v;
            one.min = v;
            one.max = v;
            h.merge(&one);
        }
        h
    }

    #[test]
    fn roll_ups_answer_like_minutes_and_retention_keeps_what_is_rolled() {
        let dir = std::env::temp_dir().join(format!("kuroko-rollup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).unwrap();
        let now = 30_000_000; // a unix minute
        let start = now - 3 * 1_440; // three days ago
        let mut batch = Batch::default();
        for i in 0..(3 * 1_440 / 7) {
            let minute = start + i * 7;
            let value = 0.001 * (1 + i % 50) as f64;
            batch.histograms.push(HistogramPoint {
                key: key("a").into(),
                minute,
                histogram: histogram(&[value, value * 2.0]),
            });
            batch.counters.push(CounterPoint {
                key: key("a").into(),
                minute,
                name: "kuroko.transaction.outcomes".into(),
                labels: "kuroko.outcome=ok".into(),
                value: 2.0,
            });
        }
        store.write(&batch).unwrap();
        let window = (start - 30, now);
        let before = store.histograms(&Filter::default(), window.0, window.1).unwrap();

        let mut roller = store
            .roller(Retention {
                minute_days: 1,
                hour_days: 2,
                day_days: 30,
            })
            .unwrap();
        let pass = roller.run(now).unwrap();
        assert!(
            pass.hours >= 3 * 24 - 1 && pass.days >= 2,
            "{pass:?}: the current hour is not over yet"
        );
        assert!(pass.deleted > 0, "minutes past one day and hours past two went");
        let after = store.histograms(&Filter::default(), window.0, window.1).unwrap();
        assert_eq!(
            after[0].1.count, before[0].1.count,
            "the same runs, read from days, hours and minutes"
        );
        assert_eq!(after[0].1.buckets, before[0].1.buckets);
        let counted = store
            .counters(&Filter::default(), "kuroko.transaction.outcomes", window.0, window.1)
            .unwrap();
        assert_eq!(counted[0].2, 2.0 * batch.counters.len() as f64);

        // Late data for a rolled hour is rolled again on the next pass.
        let late = now - 300;
        store
            .write(&Batch {
                histograms: vec![HistogramPoint {
                    key: key("a").into(),
                    minute: late,
                    histogram: histogram(&[0.5]),
                }],
                ..Batch::default()
            })
            .unwrap();
        store.flush().unwrap();
        roller.run(now).unwrap();
        let hour = store
            .histograms(&Filter::default(), floor_to(late, 60), floor_to(late, 60) + 60)
            .unwrap();
        assert!(hour[0].1.max >= 0.5, "the late run is in its hour");

        // Late data for an hour whose minutes retention deleted (a day and
        // ten hours ago: minutes are kept one day, hours two) merges into
        // that hour and its day: it does not rebuild them from the minutes
        // that are left.
        let old_hour = floor_to(now - 1_440 - 600, 60);
        let count = |from: i64, to: i64| -> u64 {
            let read = store.histograms(&Filter::default(), from, to).unwrap();
            read.iter().map(|(_, h)| h.count).sum()
        };
        let outcomes = |from: i64, to: i64| -> f64 {
            let read = store
                .counters(&Filter::default(), "kuroko.transaction.outcomes", from, to)
                .unwrap();
            read.iter().map(|(_, _, v)| v).sum()
        };
        let day = (floor_to(old_hour, 1_440), floor_to(old_hour, 1_440) + 1_440);
        let (hour_before, day_before) = (count(old_hour, old_hour + 60), count(day.0, day.1));
        let outcomes_before = outcomes(old_hour, old_hour + 60);
        assert!(hour_before > 0 && day_before > hour_before);
        store
            .write(&Batch {
                histograms: vec![HistogramPoint {
                    key: key("a").into(),
                    minute: old_hour + 30,
                    histogram: histogram(&[0.25, 0.75]),
                }],
                counters: vec![CounterPoint {
                    key: key("a").into(),
                    minute: old_hour + 30,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: "kuroko.outcome=ok".into(),
                    value: 2.0,
                }],
                ..Batch::default()
            })
            .unwrap();
        store.flush().unwrap();
        roller.run(now).unwrap();
        assert_eq!(
            count(old_hour, old_hour + 60),
            hour_before + 2,
            "the hour kept its runs"
        );
        assert_eq!(count(day.0, day.1), day_before + 2, "so did its day");
        assert_eq!(outcomes(old_hour, old_hour + 60), outcomes_before + 2.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The step reads (per series, grouped, and totals only) give what one
    /// [`Store::histograms`] per step gives, over days, hours and minutes.
    #[test]
    fn step_reads_agree_with_one_read_per_step() {
        let dir = std::env::temp_dir().join(format!("kuroko-steps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).unwrap();
        let now = 30_000_000;
        let start = now - 3 * 1_440;
        let mut batch = Batch::default();
        for i in 0..(3 * 1_440 / 5) {
            for host in ["a", "b", "c"] {
                let value = 0.001 * (1 + (i + host.len() as i64 * 7) % 40) as f64;
                batch.histograms.push(HistogramPoint {
                    key: key(host).into(),
                    minute: start + i * 5,
                    histogram: histogram(&[value, value * 3.0]),
                });
                batch.counters.push(CounterPoint {
                    key: key(host).into(),
                    minute: start + i * 5,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: format!("kuroko.outcome={}", if i % 9 == 0 { "5xx" } else { "ok" }),
                    value: 2.0,
                });
            }
        }
        store.write(&batch).unwrap();
        let retention = Retention {
            minute_days: 8,
            hour_days: 90,
            day_days: 730,
        };
        store.roller(retention).unwrap().run(now).unwrap();
        let filter = Filter::default();
        for (from, step) in [(start - 30, 60), (start + 17, 1_440), (start, 1), (start + 3, 37)] {
            let to = if step == 1 { start + 300 } else { now };
            let mut expected = Vec::new();
            let mut first = from.div_euclid(step) * step;
            while first < to {
                for (key, h) in store
                    .histograms(&filter, first.max(from), (first + step).min(to))
                    .unwrap()
                {
                    expected.push((key, first, h));
                }
                first += step;
            }
            expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let steps = store.histogram_steps(&filter, from, to, step).unwrap();
            assert_eq!(steps, expected, "step {step} from {from}");
            let totals = store.totals_steps(&filter, from, to, step).unwrap();
            let expected_totals: Vec<StepTotal> = expected
                .iter()
                .map(|(key, start, h)| (key.clone(), *start, h.count, h.sum))
                .collect();
            assert_eq!(totals.len(), expected_totals.len());
            for (got, want) in totals.iter().zip(&expected_totals) {
                assert_eq!((&got.0, got.1, got.2), (&want.0, want.1, want.2));
                assert!(
                    (got.3 - want.3).abs() <= 1e-9 * want.3.abs(),
                    "{got:?} against {want:?}"
                );
            }
            // Hosts b and c in one group, a left out.
            let grouped = store
                .histogram_steps_grouped(&filter, from, to, step, &mut |key| (key.host != "a").then_some(7))
                .unwrap();
            let mut merged: BTreeMap<i64, Histogram> = BTreeMap::new();
            for (key, start, h) in &expected {
                if key.host != "a" {
                    merged.entry(*start).or_insert_with(Histogram::empty).merge(h);
                }
            }
            let merged: Vec<(usize, i64, Histogram)> = merged.into_iter().map(|(s, h)| (7, s, h)).collect();
            assert_eq!(grouped.len(), merged.len(), "step {step}");
            for (got, want) in grouped.iter().zip(&merged) {
                assert_eq!(
                    (got.0, got.1, got.2.count, &got.2.buckets),
                    (want.0, want.1, want.2.count, &want.2.buckets)
                );
            }
            let name = "kuroko.transaction.outcomes";
            let mut sums: BTreeMap<(String, i64), f64> = BTreeMap::new();
            for (key, labels, start, value) in store.counter_steps(&filter, name, from, to, step).unwrap() {
                if key.host != "a" {
                    *sums.entry((labels, start)).or_default() += value;
                }
            }
            assert!(!sums.is_empty());
            let want: Vec<(usize, String, i64, f64)> = sums.into_iter().map(|((l, s), v)| (7, l, s, v)).collect();
            let got = store
                .counter_steps_grouped(&filter, name, from, to, step, &mut |key| (key.host != "a").then_some(7))
                .unwrap();
            assert_eq!(got, want, "counters, step {step}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn merges_across_hosts_and_minutes_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("kuroko-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let _ = std::fs::remove_file(&path);
        {
            let store = SqliteStore::open(&path).unwrap();
            let batch = Batch {
                errors: vec![],
                traces: vec![],
                links: vec![],
                histograms: vec![
                    HistogramPoint {
                        key: key("a").into(),
                        minute: 100,
                        histogram: histogram(&[0.010, 0.020]),
                    },
                    HistogramPoint {
                        key: key("b").into(),
                        minute: 100,
                        histogram: histogram(&[0.030]),
                    },
                    HistogramPoint {
                        key: key("a").into(),
                        minute: 101,
                        histogram: histogram(&[0.040]),
                    },
                ],
                counters: vec![CounterPoint {
                    key: key("a").into(),
                    minute: 100,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: "kuroko.outcome=5xx".into(),
                    value: 2.0,
                }],
                streams: Vec::new(),
            };
            store.write(&batch).unwrap();
            // The same minute again merges into the stored row.
            store
                .write(&Batch {
                    errors: vec![],
                    traces: vec![],
                    links: vec![],
                    histograms: vec![batch.histograms[0].clone()],
                    counters: batch.counters.clone(),
                    streams: Vec::new(),
                })
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let all = store.histograms(&Filter::default(), 0, 1_000).unwrap();
        assert_eq!(all.len(), 2, "one merged histogram per series (host)");
        let a = &all.iter().find(|(k, _)| k.host == "a").unwrap().1;
        assert_eq!(a.count, 5);
        assert!((a.sum - 0.100).abs() < 1e-12);
        assert_eq!((a.min, a.max), (0.010, 0.040));
        let only_minute_100 = store
            .histograms(
                &Filter {
                    host: Some("a".into()),
                    ..Filter::default()
                },
                100,
                101,
            )
            .unwrap();
        assert_eq!(only_minute_100[0].1.count, 4);
        let counters = store
            .counters(&Filter::default(), "kuroko.transaction.outcomes", 0, 1_000)
            .unwrap();
        assert_eq!(counters, [(key("a"), "kuroko.outcome=5xx".to_owned(), 4.0)]);

        // A file from a newer reporter is refused, with what to do.
        store
            .connection()
            .execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", [])
            .unwrap();
        drop(store);
        let error = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            error.contains("schema version 99, newer than this kuroko's 3: upgrade kuroko"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A version 2 file, its error rows keyed without trace or stack, and a
    /// journal segment a crash of that build left unflushed, in its layout.
    #[test]
    fn a_version_2_file_keeps_its_errors_and_replays_its_journal() {
        #[derive(serde::Serialize)]
        struct OldError {
            key: SeriesKey,
            minute: i64,
            error_type: String,
            message: String,
            location: String,
            count: u64,
            last_seen: u64,
            fingerprint: String,
        }
        #[derive(serde::Serialize)]
        struct OldRecord {
            histograms: Vec<(i64, i64, Histogram)>,
            #[serde(with = "crate::buckets::serde_bytes_compat")]
            counters: Vec<u8>,
            errors: Vec<(i64, OldError)>,
            traces: Vec<(i64, TracePoint)>,
        }
        let dir = std::env::temp_dir().join(format!("kuroko-migrate-v3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '2');
                 CREATE TABLE series (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL,
                     kind TEXT NOT NULL, environment TEXT NOT NULL DEFAULT '',
                     UNIQUE (service, host, txn, feature, kind, environment));
                 INSERT INTO series VALUES (7, 'cards-api', 'a', 'GET /cards/{id}', 'cards', 'web', '');
                 CREATE TABLE error_minute (
                     series INTEGER NOT NULL, minute INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
                     PRIMARY KEY (series, minute, error_type, message, location)) WITHOUT ROWID;
                 INSERT INTO error_minute VALUES (7, 10, 'E', 'old', 'src/a.rs:1', 3, 600000000000, 'fp');
                 CREATE TABLE error_hour (
                     series INTEGER NOT NULL, hour INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',
                     first_minute INTEGER,
                     PRIMARY KEY (series, hour, error_type, message, location)) WITHOUT ROWID;
                 INSERT INTO error_hour VALUES (7, 0, 'E', 'older', 'src/a.rs:1', 2, 60000000000, '', 1);
                 INSERT INTO error_hour VALUES (7, 0, 'E', 'oldest', 'src/a.rs:1', 1, 60000000000, '', 1);",
            )
            .unwrap();
            let record = OldRecord {
                histograms: vec![],
                counters: vec![],
                errors: vec![(
                    7,
                    OldError {
                        key: key("a"),
                        minute: 11,
                        error_type: "E".into(),
                        message: "journaled".into(),
                        location: "src/a.rs:1".into(),
                        count: 4,
                        last_seen: 660_000_000_000,
                        fingerprint: String::new(),
                    },
                )],
                traces: vec![],
            };
            let bytes = postcard::to_allocvec(&record).unwrap();
            let mut segment = (bytes.len() as u32).to_le_bytes().to_vec();
            segment.extend_from_slice(&bytes);
            let journal = Journal::dir_of(&path);
            std::fs::create_dir_all(&journal).unwrap();
            std::fs::write(journal.join(format!("{:020}.log", 1)), segment).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let mut found: Vec<(String, u64, String, String)> = store
            .errors(&Filter::default(), 0, 100)
            .unwrap()
            .into_iter()
            .map(|e| (e.message, e.count, e.fingerprint, e.stacktrace.to_string()))
            .collect();
        found.sort();
        let row = |m: &str, c, f: &str| (m.to_owned(), c, f.to_owned(), String::new());
        assert_eq!(found, [row("journaled", 4, ""), row("old", 3, "fp")]);
        let connection = store.connection();
        let hours: i64 = connection
            .query_row("SELECT COUNT(*) FROM error_hour WHERE hour = 0", [], |r| r.get(0))
            .unwrap();
        assert_eq!(hours, 2, "the hour rows are kept");
        let version: String = connection
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, "3");
        for table in ["error_minute", "error_hour"] {
            for column in ["trace_id", "stack_hash", "stacktrace"] {
                assert!(has_column(&connection, table, column).unwrap(), "{table}.{column}");
            }
        }
        drop(connection);
        drop(store);
        // Opening again replays nothing more and changes nothing.
        assert_eq!(
            SqliteStore::open(&path)
                .unwrap()
                .errors(&Filter::default(), 0, 100)
                .unwrap()
                .len(),
            2
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Errors that came with a trace but no transaction, their links
    /// arriving later (or earlier, for a failed request), across a reopen
    /// and a roll-up.
    #[test]
    fn untied_errors_take_their_traces_transaction_once_its_link_arrives() {
        let dir = std::env::temp_dir().join(format!("kuroko-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let minute = 28_000_000;
        let at = |second: u64| (minute as u64 * 60 + second) * 1_000_000_000;
        let untied = |message: &str, trace: &str, stacktrace: &str| crate::store::ErrorPoint {
            key: SeriesKey {
                transaction: crate::store::NO_TRANSACTION.into(),
                feature: String::new(),
                kind: "job".into(),
                ..key("a")
            },
            minute,
            error_type: "KeyError".into(),
            message: message.into(),
            location: String::new(),
            count: 1,
            last_seen: at(10),
            fingerprint: String::new(),
            stacktrace: stacktrace.into(),
            trace_id: trace.into(),
        };
        let link = |trace: &str, failed: bool| crate::store::TraceLink {
            key: key("b"),
            trace_id: trace.into(),
            span_id: "00f067aa0ba902b7".into(),
            start: at(5),
            end: at(15),
            failed,
        };
        let transactions = |store: &SqliteStore, filter: &Filter| {
            let mut found: Vec<(String, String, String, String)> = store
                .errors(filter, minute - 60, minute + 120)
                .unwrap()
                .into_iter()
                .map(|e| (e.message, e.key.transaction, e.key.host, e.stacktrace.to_string()))
                .collect();
            found.sort();
            found
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            // A failed request's link arrives before its error and is kept;
            // t4's request did not fail and nothing waits for it when it is
            // flushed: not kept (its error, later, stays untied).
            store
                .write(&Batch {
                    links: vec![link("t3", true), link("t4", false)],
                    ..Batch::default()
                })
                .unwrap();
            store.flush().unwrap();
            store
                .write(&Batch {
                    errors: vec![
                        untied("a", "t1", "stack one"),
                        untied("b", "t2", ""),
                        untied("c", "t3", ""),
                        untied("d", "t4", ""),
                    ],
                    // Roll-ups start at the oldest histogram minute.
                    histograms: vec![HistogramPoint {
                        key: key("b").into(),
                        minute,
                        histogram: histogram(&[0.01]),
                    }],
                    ..Batch::default()
                })
                .unwrap();
            store
                .write(&Batch {
                    links: vec![link("t1", false)],
                    ..Batch::default()
                })
                .unwrap();
            let links: i64 = {
                store.flush().unwrap();
                store
                    .connection()
                    .query_row("SELECT COUNT(*) FROM trace_link", [], |r| r.get(0))
                    .unwrap()
            };
            assert_eq!(links, 2, "t1 (waited for) and t3 (failed)");
        }
        let store = SqliteStore::open(&path).unwrap();
        let tied = |m: &str, stack: &str| {
            (
                m.to_owned(),
                "GET /cards/{id}".to_owned(),
                "a".to_owned(),
                stack.to_owned(),
            )
        };
        let none = |m: &str| (m.to_owned(), "(none)".to_owned(), "a".to_owned(), String::new());
        let expected = [tied("a", "stack one"), none("b"), tied("c", ""), none("d")];
        assert_eq!(transactions(&store, &Filter::default()), expected);
        let only = Filter {
            transaction: Some("GET /cards/{id}".into()),
            host: Some("a".into()),
            ..Filter::default()
        };
        assert_eq!(transactions(&store, &only), [tied("a", "stack one"), tied("c", "")]);
        // Rolled into hours (and the minutes past retention): the same.
        let mut roller = store
            .roller(Retention {
                minute_days: 0,
                hour_days: 2,
                day_days: 30,
            })
            .unwrap();
        roller.run(minute + 180).unwrap();
        let minutes: i64 = store
            .connection()
            .query_row("SELECT COUNT(*) FROM error_minute", [], |r| r.get(0))
            .unwrap();
        assert_eq!(minutes, 0, "read from hour rows");
        assert_eq!(transactions(&store, &Filter::default()), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_tables_gain_fingerprints_and_keep_their_rows() {
        let dir = std::env::temp_dir().join(format!("kuroko-migrate-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '2');
                 CREATE TABLE series (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL,
                     kind TEXT NOT NULL, environment TEXT NOT NULL DEFAULT '',
                     UNIQUE (service, host, txn, feature, kind, environment));
                 INSERT INTO series VALUES (7, 'cards-api', 'a', 'GET /cards/{id}', 'cards', 'web', '');
                 CREATE TABLE error_minute (
                     series INTEGER NOT NULL, minute INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                     PRIMARY KEY (series, minute, error_type, message, location)) WITHOUT ROWID;
                 INSERT INTO error_minute VALUES (7, 10, 'E', 'old', 'src/a.rs:1', 3, 600000000000);
                 CREATE TABLE error_hour (
                     series INTEGER NOT NULL, hour INTEGER NOT NULL,
                     error_type TEXT NOT NULL, message TEXT NOT NULL, location TEXT NOT NULL,
                     count INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                     PRIMARY KEY (series, hour, error_type, message, location)) WITHOUT ROWID;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let point = |message: &str, fingerprint: &str| crate::store::ErrorPoint {
            key: key("a"),
            minute: 11,
            error_type: "E".into(),
            message: message.into(),
            location: "src/a.rs:1".into(),
            count: 1,
            last_seen: 660_000_000_000,
            fingerprint: fingerprint.into(),
            stacktrace: String::new(),
            trace_id: String::new(),
        };
        store
            .write(&Batch {
                errors: vec![point("new", "group-7")],
                ..Batch::default()
            })
            .unwrap();
        let mut found: Vec<(String, u64, String)> = store
            .errors(&Filter::default(), 0, 100)
            .unwrap()
            .into_iter()
            .map(|e| (e.message, e.count, e.fingerprint))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("new".to_owned(), 1, "group-7".to_owned()),
                ("old".to_owned(), 3, String::new())
            ]
        );
        drop(store);
        // Opening again finds the columns there and changes nothing.
        assert_eq!(
            SqliteStore::open(&path)
                .unwrap()
                .errors(&Filter::default(), 0, 100)
                .unwrap()
                .len(),
            2
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_version_1_file_gains_environments_and_keeps_its_series() {
        let dir = std::env::temp_dir().join(format!("kuroko-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');
                 CREATE TABLE series (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL,
                     kind TEXT NOT NULL, UNIQUE (service, host, txn, feature, kind));
                 INSERT INTO series VALUES (7, 'cards-api', 'a', 'GET /cards/{id}', 'cards', 'web');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.series().unwrap(),
            [key("a")],
            "the old series, with no environment"
        );
        let mut production = key("a");
        production.environment = "production".into();
        store
            .write(&Batch {
                histograms: vec![HistogramPoint {
                    key: production.clone().into(),
                    minute: 10,
                    histogram: histogram(&[0.25]),
                }],
                ..Batch::default()
            })
            .unwrap();
        let only = Filter {
            environment: Some("production".into()),
            ..Filter::default()
        };
        let found = store.histograms(&only, 0, 100).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].0, production,
            "a new series beside the old one, told apart by environment"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Many requests for the same series and minute make many journal
    /// records and one row: flushed by age alone (five seconds), the journal
    /// grew to about a hundred times the rows. A flush is now due once the
    /// journal holds a quarter of the headroom (at least 1 MiB), so it stays
    /// near that size however fast requests come.
    #[test]
    fn the_journal_is_flushed_by_size_before_it_outgrows_the_headroom() {
        let dir = std::env::temp_dir().join(format!("kuroko-journal-size-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.db");
        let store = SqliteStore::open(&path).unwrap();
        store.set_min_free_bytes(4 << 20);
        let wide: Vec<f64> = (0..2_000).map(|i| 0.001 * 1.01f64.powi(i)).collect();
        let point = Batch {
            histograms: (0..20)
                .map(|minute| HistogramPoint {
                    key: key("a").into(),
                    minute,
                    histogram: histogram(&wide),
                })
                .collect(),
            ..Batch::default()
        };
        let journal = |dir: &Path| -> u64 {
            std::fs::read_dir(Journal::dir_of(dir))
                .unwrap()
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        };
        let (mut written, mut largest) = (0u64, 0u64);
        let started = std::time::Instant::now();
        while written < 8 << 20 {
            let before = journal(&path);
            store.write(&point).unwrap();
            let after = journal(&path);
            written += after.saturating_sub(before).max(1);
            largest = largest.max(after);
        }
        assert!(started.elapsed() < FLUSH_EVERY, "written faster than the age flush");
        assert!(
            largest < (1 << 20) + (256 << 10),
            "the journal stays near 1 MiB (a quarter of the headroom): {largest} bytes"
        );
        store.flush().unwrap();
        let runs = store.histograms(&Filter::default(), 0, 100).unwrap();
        assert_eq!(runs[0].1.count % 2_000, 0, "every write is in the tables");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_process_reads_but_leaves_the_journal_to_its_owner() {
        let dir = std::env::temp_dir().join(format!("kuroko-second-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.db");
        let owner = SqliteStore::open(&path).unwrap();
        let point = Batch {
            histograms: vec![HistogramPoint {
                key: key("a").into(),
                minute: 10,
                histogram: histogram(&[0.25]),
            }],
            ..Batch::default()
        };
        owner.write(&point).unwrap();
        // Opening beside the owner must not replay (and so double) what it holds.
        let reader = SqliteStore::open(&path).unwrap();
        let refused = reader.write(&point).unwrap_err().to_string();
        assert!(refused.contains("being written by another kuroko process"), "{refused}");
        owner.flush().unwrap();
        let seen = reader.histograms(&Filter::default(), 0, 100).unwrap();
        assert_eq!(seen[0].1.count, 1, "the owner's point, once");
        drop(owner);
        drop(reader);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.histograms(&Filter::default(), 0, 100).unwrap()[0].1.count, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
