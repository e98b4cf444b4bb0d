//! The embedded store's write path: resolving a batch's series and label
//! ids, appending it to the journal, and flushing the pending points to the
//! tables (merging with stored rows and marking rolled hours and days
//! dirty for late points).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::{FxHashMap, FxHashSet};

use super::reads::{row_histogram, HISTOGRAM_COLUMNS};
use super::{SqliteStore, FLUSH_EVERY};
use crate::histogram::Histogram;
use crate::spell::Hit;
use crate::store::journal::{self, Journal};
use crate::store::links;
use crate::store::pending::{Pending, RecordRef, Resolved};
use crate::store::rollup::Rolled;
use crate::store::{Batch, SeriesKey, StoreError, TRACES_PER_HOUR};

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

/// Disk a flush may take per journal byte it flushes, at most: its rows,
/// their indexes, the rows across hosts, and the WAL they pass through
/// before a checkpoint. Measured at 14 in the chaos test (a journal of
/// 1.0 MiB of requests spread over many minutes became 4.9 MiB of rows
/// and 9.5 MiB of WAL at once); writes keep this much free beside
/// `min_free_bytes`, so that what they acknowledge can be flushed.
const FLUSH_ROOM_PER_JOURNAL_BYTE: u64 = 16;

impl SqliteStore {
    /// How long until the oldest acknowledged point still in memory has
    /// waited [`FLUSH_EVERY`] (zero: a flush is due); `None` when nothing
    /// waits, or when another process writes this store.
    pub(crate) fn flush_due_in(&self) -> Option<Duration> {
        let since = self.ingest().as_ref()?.pending.since?;
        Some(FLUSH_EVERY.saturating_sub(since.elapsed()))
    }

    /// Flushes when the oldest acknowledged point in memory has waited
    /// [`FLUSH_EVERY`]: what keeps the file at most that far behind when
    /// no write or read comes to flush it (`kuroko serve` calls it from a
    /// thread of its own). Whether it flushed.
    pub(crate) fn flush_if_due(&self) -> Result<bool, StoreError> {
        if self.flush_due_in() != Some(Duration::ZERO) {
            return Ok(false);
        }
        self.flush().map(|()| true)
    }

    /// Writes every acknowledged point still in memory to the tables.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _flushing = crate::sync::lock(&self.flushing);
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
    pub(crate) fn flush_failing(&self) -> bool {
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

    fn series_id(&self, transaction: &Connection, key: &SeriesKey) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = crate::sync::lock(&self.series).get(key) {
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
        crate::sync::lock(&self.series).insert(key.clone(), id);
        Ok(id)
    }

    /// The transaction series of each series with points in `pending`,
    /// created when new.
    fn txn_ids(&self, connection: &Connection, pending: &Pending) -> Result<FxHashMap<i64, i64>, rusqlite::Error> {
        let mut known = crate::sync::lock(&self.txn_of);
        let series = pending
            .histograms
            .keys()
            .map(|&(series, _)| series)
            .chain(pending.counters.keys().map(|&(series, _, _)| series));
        let mut out = FxHashMap::default();
        for series in series {
            if out.contains_key(&series) {
                continue;
            }
            let id = match known.get(&series) {
                Some(&id) => id,
                None => {
                    let id = super::txn::txn_id(connection, series)?;
                    known.insert(series, id);
                    id
                }
            };
            out.insert(series, id);
        }
        Ok(out)
    }

    /// The id of a counter's name and labels, stored once.
    fn label_id(&self, transaction: &Connection, name: &str, labels: &str) -> Result<i64, rusqlite::Error> {
        let cached = crate::sync::lock(&self.labels)
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
        crate::sync::lock(&self.labels)
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
            if let Some(&id) = crate::sync::lock(&self.series).get(key) {
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
            let labels = crate::sync::lock(&self.labels);
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

    /// [`Store::write_quick`](crate::store::Store::write_quick): the batch's names all known, and no flush due.
    pub(super) fn write_quick_batch(&self, batch: &Batch) -> Result<bool, StoreError> {
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
    pub(super) fn write_batch(&self, batch: &Batch) -> Result<(), StoreError> {
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
    /// into the pending points; whether a flush is due ([`Ingest::due`](super::Ingest::due)).
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
        let mut guard = self.ingest();
        let ingest = guard.as_mut().ok_or_else(|| StoreError::NotIngesting {
            path: self.path.clone(),
        })?;
        // Room for the record, and for flushing it with what the journal
        // already holds: the headroom stays the flushes' and roll-ups'.
        let unflushed = ingest.journal.len().saturating_add(record.len() as u64);
        self.headroom
            .check((record.len() as u64).saturating_add(unflushed.saturating_mul(FLUSH_ROOM_PER_JOURNAL_BYTE)))?;
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
        // Transaction series are named before the transaction: an id this
        // process keeps must be committed whatever becomes of the flush.
        let txn_of = self.txn_ids(connection, pending)?;
        let transaction = connection.transaction()?;
        super::txn::merge_minutes(&transaction, pending, &txn_of)?;
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
                if let Some(mut stored) = read_histogram(&transaction, MINUTES.0, series, minute)? {
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
            let registered = crate::sync::lock(&self.metric_series);
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
        crate::sync::lock(&self.metric_series).extend(registering);
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
    // Their rows across hosts are rebuilt from the merged ones.
    let mut periods: Vec<i64> = pending
        .minutes()
        .filter(|m| pick(*m))
        .map(|m| m.div_euclid(minutes))
        .collect();
    periods.sort_unstable();
    periods.dedup();
    for period in periods {
        super::txn::roll(transaction, r, period)?;
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

/// A stored minute of `table` (`histogram_minute`, `txn_histogram_minute`),
/// or `None`; a row whose blob cannot be read is an error.
pub(super) fn read_histogram(
    connection: &Connection,
    table: &str,
    series: i64,
    minute: i64,
) -> Result<Option<Histogram>, rusqlite::Error> {
    connection
        .prepare_cached(&format!(
            "SELECT {HISTOGRAM_COLUMNS} FROM {table} h WHERE h.series = ?1 AND h.minute = ?2"
        ))?
        .query_row(params![series, minute], |row| row_histogram(row, 0))
        .optional()
}
