//! The embedded store's reads: the [`Store`] trait's queries, each window
//! split by [`crate::store::plan`] into day, hour and minute stretches.

use std::path::Path;
use std::sync::atomic::Ordering;

use rusqlite::OptionalExtension;
use rustc_hash::FxHashMap;

use super::{txn, SqliteStore};
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;
use crate::store::hosts;
use crate::store::journal::Journal;
use crate::store::links::{self, Stacks, StoredLink, TracedError};
use crate::store::plan::{floor_to, minutes_of, plan, Progress, Stretch, NEVER};
use crate::store::{Batch, ErrorSummary, Filter, SeriesKey, StepTotal, Store, StoreError, TracePoint, MAX_JOINED_RUNS};

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

/// [`FILTER`] for the transaction series of the roll-ups across hosts
/// (`txn_series s`, read only when the filter names no host): runs counted
/// from spans are left out by [`txn::Exclusions`] instead.
const TXN_FILTER: &str = "(?3 IS NULL OR s.service = ?3) AND ?4 IS NULL
     AND (?5 IS NULL OR s.txn = ?5) AND (?6 IS NULL OR s.feature = ?6) AND (?7 IS NULL OR s.environment = ?7)";

/// Which rows a read takes: per series, or the roll-ups across hosts
/// ([`txn`]), whose tables have the same columns under `txn_` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    Series,
    AcrossHosts,
}

/// One part of a read: its rows, the stretches of the window read from
/// them, and SQL on `s` keeping the series it reads.
struct Part {
    rows: Rows,
    stretches: Vec<Stretch>,
    only: String,
}

impl Part {
    /// The whole window per series.
    fn per_series(stretches: Vec<Stretch>) -> Part {
        Part {
            rows: Rows::Series,
            stretches,
            only: "1".to_owned(),
        }
    }

    /// The series table (`series` or `txn_series`).
    fn series(&self) -> &'static str {
        match self.rows {
            Rows::Series => "series",
            Rows::AcrossHosts => "txn_series",
        }
    }

    /// Table `name` (`histogram`, `counter`) at `resolution`.
    fn table(&self, name: &str, resolution: &str) -> String {
        match self.rows {
            Rows::Series => format!("{name}_{resolution}"),
            Rows::AcrossHosts => format!("txn_{name}_{resolution}"),
        }
    }

    /// The filter's condition on `s` (parameters 3 to 7) and the part's own.
    fn condition(&self) -> String {
        let filter = match self.rows {
            Rows::Series => FILTER,
            Rows::AcrossHosts => TXN_FILTER,
        };
        format!("{filter} AND {}", self.only)
    }
}

/// The series columns [`key`] reads, for a `series s` join.
const KEY_COLUMNS: &str = "s.service, s.host, s.txn, s.feature, s.kind, s.environment";

/// A kept trace row (with [`KEY_COLUMNS`], `trace_id`, `start`,
/// `duration` and `spans`).
fn trace_point(row: &rusqlite::Row<'_>) -> Result<TracePoint, rusqlite::Error> {
    Ok(TracePoint {
        key: key(row)?,
        trace_id: row.get("trace_id")?,
        start: row.get::<_, i64>("start")? as u64,
        duration: row.get("duration")?,
        spans: row.get("spans")?,
    })
}

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

    /// The parts of a read of `stretches` for `filter`: one per series,
    /// unless it asks across hosts without naming a host; then the
    /// stretches whole in the roll-ups across hosts are read from them (and
    /// the few transaction series they cannot answer per series, see
    /// [`txn::Exclusions`]), the rest per series.
    fn parts(&self, filter: &Filter, stretches: Vec<Stretch>) -> Result<Vec<Part>, StoreError> {
        if !filter.across_hosts || filter.host.is_some() {
            return Ok(vec![Part::per_series(stretches)]);
        }
        let load = |value: &std::sync::atomic::AtomicI64| value.load(Ordering::Relaxed);
        let (rolled, per_series) = txn::split(
            stretches,
            [
                load(&self.rolled.txn_minutes_from),
                load(&self.rolled.txn_hours_from),
                load(&self.rolled.txn_days_from),
            ],
        );
        let mut parts = vec![Part::per_series(per_series)];
        if rolled.is_empty() {
            return Ok(parts);
        }
        self.flush()?;
        let exclusions = txn::Exclusions::read(&self.connection()).map_err(|e| self.error(e))?;
        if let Some(partly) = exclusions.partly {
            parts.push(Part {
                rows: Rows::Series,
                stretches: rolled.clone(),
                only: partly,
            });
        }
        parts.push(Part {
            rows: Rows::AcrossHosts,
            stretches: rolled,
            only: exclusions.rolled_only,
        });
        Ok(parts)
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

    /// Each histogram row of `part` that `filter` and `only` (SQL on `s`)
    /// select, its stretches planned for steps of `step` minutes:
    /// `each(series id, step start, histogram)`.
    fn each_histogram_step(
        &self,
        filter: &Filter,
        part: &Part,
        step: i64,
        only: &str,
        mut each: impl FnMut(i64, i64, Histogram),
    ) -> Result<(), StoreError> {
        let step = step.max(1);
        let (series, condition) = (part.series(), part.condition());
        for stretch in &part.stretches {
            let (r, minutes) = (stretch.resolution, minutes_of(stretch.resolution));
            let table = part.table("histogram", r);
            let sql = format!(
                "SELECT h.series, h.{r}, {HISTOGRAM_COLUMNS} FROM {series} s CROSS JOIN {table} h ON h.series = s.id
                 WHERE h.{r} >= ?1 AND h.{r} < ?2 AND {condition} AND {only}"
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
        part: &Part,
        step: i64,
        only: &str,
        mut each: impl FnMut(i64, i64, i64, f64),
    ) -> Result<(), StoreError> {
        let step = step.max(1);
        let (series, condition) = (part.series(), part.condition());
        for stretch in &part.stretches {
            let r = stretch.resolution;
            let start = step_start("c", r, step);
            let table = part.table("counter", r);
            let sql = format!(
                "SELECT c.series, c.label, {start} AS step_start, SUM(c.value)
                 FROM {series} s CROSS JOIN counter_label l CROSS JOIN {table} c ON c.series = s.id AND c.label = l.id
                 WHERE c.{r} >= ?1 AND c.{r} < ?2 AND {condition} AND l.name = ?8 AND {only}
                 GROUP BY c.series, c.label, step_start"
            );
            self.select_each(&sql, filter, (stretch.from, stretch.to), Some(&name), |row| {
                each(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The keys of the series `ids` of `part`'s series table. Reads name
    /// series by id and resolve them once each at the end, instead of
    /// carrying six strings per row.
    fn keys_of(&self, part: &Part, ids: impl Iterator<Item = i64>) -> Result<Keys, StoreError> {
        let connection = self.connection();
        let table = part.series();
        let read = || -> Result<FxHashMap<i64, SeriesKey>, rusqlite::Error> {
            let mut statement =
                connection.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM {table} s WHERE s.id = ?1"))?;
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
        part: &Part,
        window: (i64, i64),
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<(FxHashMap<i64, usize>, String), StoreError> {
        let (series, condition) = (part.series(), part.condition());
        let sql = format!("SELECT s.id, {KEY_COLUMNS} FROM {series} s WHERE ?1 <= ?2 AND {condition}");
        let mut groups: FxHashMap<i64, usize> = FxHashMap::default();
        for (id, key) in self.select(&sql, filter, window, None, |row| Ok((row.get::<_, i64>(0)?, key(row)?)))? {
            // Asked across hosts, the groups see transaction series.
            let key = if filter.across_hosts {
                hosts::transaction_series(&key)
            } else {
                key
            };
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
        let mut out = Vec::new();
        for part in self.parts(filter, self.plan(from, to, true))? {
            let (series, condition) = (part.series(), part.condition());
            let mut merged: FxHashMap<i64, Histogram> = FxHashMap::default();
            for stretch in &part.stretches {
                let r = stretch.resolution;
                let table = part.table("histogram", r);
                let sql = format!(
                    "SELECT h.series, {HISTOGRAM_COLUMNS} FROM {series} s CROSS JOIN {table} h ON h.series = s.id
                     WHERE h.{r} >= ?1 AND h.{r} < ?2 AND {condition}"
                );
                self.select_each(&sql, filter, (stretch.from, stretch.to), None, |row| {
                    let histogram = row_histogram(row, 1)?;
                    merge_into(&mut merged, row.get(0)?, histogram);
                    Ok(())
                })?;
            }
            let keys = self.keys_of(&part, merged.keys().copied())?;
            let mut rows: Vec<(i64, Histogram)> = merged.into_iter().collect();
            rows.sort_unstable_by_key(|(series, _)| keys.rank(*series));
            out.extend(
                rows.into_iter()
                    .filter_map(|(series, histogram)| Some((keys.key(series)?.clone(), histogram))),
            );
        }
        Ok(if filter.across_hosts {
            hosts::histograms(out)
        } else {
            out
        })
    }

    fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, StoreError> {
        let labels = self.labels_of(name)?;
        let mut out = Vec::new();
        for part in self.parts(filter, self.plan(from, to, true))? {
            let (series, condition) = (part.series(), part.condition());
            let mut totals: FxHashMap<(i64, i64), f64> = FxHashMap::default();
            for stretch in &part.stretches {
                let r = stretch.resolution;
                let table = part.table("counter", r);
                let sql = format!(
                    "SELECT c.series, c.label, SUM(c.value)
                     FROM {series} s CROSS JOIN counter_label l CROSS JOIN {table} c ON c.series = s.id AND c.label = l.id
                     WHERE c.{r} >= ?1 AND c.{r} < ?2 AND {condition} AND l.name = ?8
                     GROUP BY c.series, c.label"
                );
                self.select_each(&sql, filter, (stretch.from, stretch.to), Some(&name), |row| {
                    *totals.entry((row.get(0)?, row.get(1)?)).or_default() += row.get::<_, f64>(2)?;
                    Ok(())
                })?;
            }
            let keys = self.keys_of(&part, totals.keys().map(|(series, _)| *series))?;
            out.extend(totals.into_iter().filter_map(|((series, label), total)| {
                Some((keys.key(series)?.clone(), labels.get(&label)?.clone(), total))
            }));
        }
        if filter.across_hosts {
            return Ok(hosts::counters(out));
        }
        out.sort_by(|a, b| (&a.0.transaction, &a.1, &a.0).cmp(&(&b.0.transaction, &b.1, &b.0)));
        Ok(out)
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

    fn health(&self) -> crate::store::StoreHealth {
        crate::store::StoreHealth {
            free_bytes: self.headroom.free_bytes(),
            min_free_bytes: self.headroom.min_free(),
            disk_low: self.headroom.is_low(),
            writes_refused_disk: self.headroom.refused(),
            quarantined: self.rolled.quarantined.load(Ordering::Relaxed),
            rollup_failures: self.rolled.failures.load(Ordering::Relaxed),
            journal_fsyncs: self.ingest().as_ref().map_or(0, |i| i.journal.fsyncs()),
            ..crate::store::StoreHealth::default()
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
        self.select(&sql, filter, (from, to), Some(&limit), trace_point)
    }

    fn slowest_traces_each(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<TracePoint>, StoreError> {
        let sql = format!(
            "SELECT service, host, txn, feature, kind, environment, trace_id, start, duration, spans FROM (
                 SELECT {KEY_COLUMNS}, t.trace_id, t.start, t.duration, t.spans,
                        ROW_NUMBER() OVER (PARTITION BY s.service, s.txn ORDER BY t.duration DESC) AS place
                 FROM kept_trace t JOIN series s ON s.id = t.series
                 WHERE t.start >= ?1 * 60000000000 AND t.start < ?2 * 60000000000 AND {FILTER})
             WHERE place <= ?8 ORDER BY service, txn, place"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(&sql, filter, (from, to), Some(&limit), trace_point)
    }

    fn traces_with_id(&self, trace_id: &str, from: i64, to: i64) -> Result<Vec<TracePoint>, StoreError> {
        self.flush()?;
        let connection = self.connection();
        let read = || -> Result<Vec<TracePoint>, rusqlite::Error> {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS}, t.trace_id, t.start, t.duration, t.spans
                 FROM kept_trace t JOIN series s ON s.id = t.series
                 WHERE t.trace_id = ?1 AND t.start >= ?2 * 60000000000 AND t.start < ?3 * 60000000000
                 ORDER BY t.start LIMIT {MAX_JOINED_RUNS}"
            ))?;
            let rows = statement.query_map(rusqlite::params![trace_id, from, to], trace_point)?;
            rows.collect()
        };
        read().map_err(|e| self.error(e))
    }

    fn histogram_steps(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, i64, Histogram)>, StoreError> {
        let mut out = Vec::new();
        for part in self.parts(filter, self.step_plan(from, to, step))? {
            let mut merged: FxHashMap<(i64, i64), Histogram> = FxHashMap::default();
            self.each_histogram_step(filter, &part, step, "1", |series, start, histogram| {
                merge_into(&mut merged, (series, start), histogram);
            })?;
            let keys = self.keys_of(&part, merged.keys().map(|(series, _)| *series))?;
            let mut rows: Vec<((i64, i64), Histogram)> = merged.into_iter().collect();
            rows.sort_unstable_by_key(|((series, start), _)| (keys.rank(*series), *start));
            out.extend(
                rows.into_iter()
                    .filter_map(|((series, start), histogram)| Some((keys.key(series)?.clone(), start, histogram))),
            );
        }
        Ok(if filter.across_hosts {
            hosts::histogram_steps(out)
        } else {
            out
        })
    }

    fn histogram_steps_grouped(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<Vec<(usize, i64, Histogram)>, StoreError> {
        let mut merged: FxHashMap<(usize, i64), Histogram> = FxHashMap::default();
        for part in self.parts(filter, self.step_plan(from, to, step))? {
            let (groups, only) = self.grouped_series(filter, &part, (from, to), group)?;
            self.each_histogram_step(filter, &part, step, &only, |series, start, histogram| {
                if let Some(&group) = groups.get(&series) {
                    merge_into(&mut merged, (group, start), histogram);
                }
            })?;
        }
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
        let labels = self.labels_of(name)?;
        let mut out = Vec::new();
        for part in self.parts(filter, self.step_plan(from, to, step))? {
            let mut totals: FxHashMap<(i64, i64, i64), f64> = FxHashMap::default();
            self.each_counter_step(filter, name, &part, step, "1", |series, label, start, value| {
                *totals.entry((series, label, start)).or_default() += value;
            })?;
            let keys = self.keys_of(&part, totals.keys().map(|(series, _, _)| *series))?;
            let mut rows: Vec<((i64, i64, i64), f64)> = totals.into_iter().collect();
            rows.sort_unstable_by(|((s1, l1, t1), _), ((s2, l2, t2), _)| {
                (keys.rank(*s1), labels.get(l1), t1).cmp(&(keys.rank(*s2), labels.get(l2), t2))
            });
            out.extend(rows.into_iter().filter_map(|((series, label, start), total)| {
                Some((keys.key(series)?.clone(), labels.get(&label)?.clone(), start, total))
            }));
        }
        Ok(if filter.across_hosts {
            hosts::counter_steps(out)
        } else {
            out
        })
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
        let mut sums: FxHashMap<(usize, i64, i64), f64> = FxHashMap::default();
        for part in self.parts(filter, self.step_plan(from, to, step))? {
            let (groups, only) = self.grouped_series(filter, &part, (from, to), group)?;
            self.each_counter_step(filter, name, &part, step, &only, |series, label, start, value| {
                if let Some(&group) = groups.get(&series) {
                    *sums.entry((group, label, start)).or_default() += value;
                }
            })?;
        }
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
        let mut out = Vec::new();
        for part in self.parts(filter, self.step_plan(from, to, step))? {
            let (series, condition) = (part.series(), part.condition());
            let mut totals: FxHashMap<(i64, i64), (u64, f64)> = FxHashMap::default();
            for stretch in &part.stretches {
                let r = stretch.resolution;
                let start = step_start("h", r, step);
                let table = part.table("histogram", r);
                let sql = format!(
                    "SELECT h.series, {start} AS step_start, SUM(h.count), SUM(h.sum)
                     FROM {series} s CROSS JOIN {table} h ON h.series = s.id
                     WHERE h.{r} >= ?1 AND h.{r} < ?2 AND {condition}
                     GROUP BY h.series, step_start"
                );
                self.select_each(&sql, filter, (stretch.from, stretch.to), None, |row| {
                    let total = totals.entry((row.get(0)?, row.get(1)?)).or_default();
                    total.0 += row.get::<_, i64>(2)?.max(0) as u64;
                    total.1 += row.get::<_, f64>(3)?;
                    Ok(())
                })?;
            }
            let keys = self.keys_of(&part, totals.keys().map(|(series, _)| *series))?;
            let mut rows: Vec<((i64, i64), (u64, f64))> = totals.into_iter().collect();
            rows.sort_unstable_by_key(|((series, start), _)| (keys.rank(*series), *start));
            out.extend(
                rows.into_iter()
                    .filter_map(|((series, start), (count, sum))| Some((keys.key(series)?.clone(), start, count, sum))),
            );
        }
        Ok(if filter.across_hosts {
            hosts::totals_steps(out)
        } else {
            out
        })
    }
}
