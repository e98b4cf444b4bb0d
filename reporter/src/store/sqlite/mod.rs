//! The embedded store: one SQLite file in WAL mode.
//!
//! Tables: `series` (one row per service, host, transaction, feature and
//! kind), `histogram_minute` (one merged histogram per series and minute; the
//! buckets as a varint blob, see `Histogram::encode_buckets`) and
//! `counter_minute` (names and labels stored once, in `counter_label`).
//!
//! A batch is acknowledged once it is appended to the journal
//! (`store/journal.rs`); its points wait in memory (`store/pending.rs`),
//! merged per series and minute, until a flush writes them to the tables in
//! one transaction (when they have waited [`FLUSH_EVERY`], whether or not
//! more data arrives, see [`SqliteStore::flush_if_due`]; and before every
//! read, so reads see every acknowledged point). On open, journal segments
//! not yet flushed are replayed. With WAL and `synchronous=NORMAL` a
//! committed transaction survives a crash of the reporter (kill -9), though
//! not a power cut. The schema is versioned in `meta`; a file from a newer
//! reporter is refused.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use rustc_hash::{FxHashMap, FxHashSet};

use super::headroom::Headroom;
use super::journal::Journal;
use super::pending::{LegacyRecord, Pending, Record};
use super::rollup::{Retention, Rolled, Roller};
use super::{SeriesKey, StoreError};
use crate::spell::Spell;

mod deploys;
mod reads;
mod schema;
mod sightings;
mod state;
#[cfg(test)]
mod tests;
mod triage;
pub(crate) mod txn;
mod writes;

pub(crate) use reads::{row_histogram, HISTOGRAM_COLUMNS};
pub use schema::SCHEMA_VERSION;
use schema::{migrate, txn_schema, DELIVERY_SCHEMA, DEPLOYS_SCHEMA, SCHEMA, SIGHTINGS_SCHEMA, TRIAGE_SCHEMA};
pub(crate) use writes::{write_histogram, Late};

/// How long acknowledged points may wait in memory before a write flushes
/// them to the tables.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Journal bytes past which a write flushes, however young the points: a
/// flush deletes the segments, so the journal never grows past this (with
/// the headroom, see [`Ingest::journal_limit`]). A journal record holds a
/// whole request's points, a row one series' minute: at a few hundred
/// requests a second for the same series, five seconds of journal are
/// about a hundred times the rows they become.
const JOURNAL_FLUSH_BYTES: u64 = 32 << 20;

/// The journal and what it holds that the tables do not yet: one lock, so
/// that a flush takes exactly the points of the segments it closes.
struct Ingest {
    journal: Journal,
    pending: Pending,
}

impl Ingest {
    /// Journal bytes past which a flush is due: [`JOURNAL_FLUSH_BYTES`], or
    /// an eighth of the headroom when that is less (so a flush's rows, the
    /// per-series ones and those merged across hosts, fit in what is kept
    /// free), at least 1 MiB.
    fn journal_limit(min_free: u64) -> u64 {
        match min_free {
            0 => JOURNAL_FLUSH_BYTES,
            kept => (kept / 8).clamp(1 << 20, JOURNAL_FLUSH_BYTES),
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
    /// Transaction series (`txn_series`) by series id, for the minute rows
    /// across hosts written at flush.
    txn_of: Mutex<FxHashMap<i64, i64>>,
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

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let name = path.display().to_string();
        let error = |source| StoreError::sqlite(name.clone(), source);
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
            // The WAL is cut back to 4 MiB after each checkpoint: on a disk
            // near its headroom, flushes and roll-ups reuse it instead of
            // growing it (the chaos test filled its disk without the limit).
            connection
                .execute_batch("PRAGMA journal_mode = WAL; PRAGMA journal_size_limit = 4194304;")
                .map_err(error)?;
            connection.execute_batch(SCHEMA).map_err(error)?;
            connection.execute_batch(&txn_schema()).map_err(error)?;
            connection.execute_batch(DELIVERY_SCHEMA).map_err(error)?;
            connection.execute_batch(TRIAGE_SCHEMA).map_err(error)?;
            connection.execute_batch(DEPLOYS_SCHEMA).map_err(error)?;
            connection.execute_batch(SIGHTINGS_SCHEMA).map_err(error)?;
            migrate(&connection).map_err(error)?;
            txn::mark_minutes(&connection).map_err(error)?;
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
            ("txn_minutes_from", &rolled.txn_minutes_from),
            ("txn_hours_from", &rolled.txn_hours_from),
            ("txn_days_from", &rolled.txn_days_from),
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
            txn_of: Mutex::new(FxHashMap::default()),
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
    pub(crate) fn open_to_serve(path: &Path) -> Result<SqliteStore, StoreError> {
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
    pub(crate) fn set_min_free_bytes(&self, bytes: u64) {
        self.headroom.set_min_free(bytes);
    }

    /// Syncs every acknowledged batch to the disk before it is acknowledged
    /// (`[journal] fsync = "batch"`), and each flush's commit to the tables
    /// (SQLite's `synchronous=FULL`) before the journal segments it held are
    /// deleted: what was acknowledged then survives a power cut. Off (the
    /// default): it survives the process dying. No-op for a store that does
    /// not own its journal.
    pub(crate) fn set_journal_fsync(&self, on: bool) -> Result<(), StoreError> {
        let synchronous = if on { "FULL" } else { "NORMAL" };
        self.connection()
            .execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
            .map_err(|e| self.error(e))?;
        if let Some(ingest) = self.ingest().as_mut() {
            ingest.journal.set_fsync(on).map_err(|source| StoreError::Journal {
                path: Journal::dir_of(Path::new(&self.path)).display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Whether this process owns the store's ingest (its journal): false
    /// when another process (a running `kuroko serve`) does.
    pub(crate) fn is_ingesting(&self) -> bool {
        self.ingest().is_some()
    }

    fn ingest(&self) -> MutexGuard<'_, Option<Ingest>> {
        crate::sync::lock(&self.ingest)
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        crate::sync::lock(&self.connection)
    }

    /// A roller for this store's roll-ups and retention, with its own
    /// connection; run it from a background thread.
    pub fn roller(&self, retention: Retention) -> Result<Roller, StoreError> {
        Roller::open(Path::new(&self.path), self.rolled.clone(), retention)
    }

    fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::sqlite(self.path.clone(), source)
    }
}
