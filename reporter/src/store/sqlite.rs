//! The embedded store: one SQLite file in WAL mode.
//!
//! Tables: `series` (one row per service, host, transaction, feature and
//! kind), `histogram_minute` (one merged histogram per series and minute; the
//! buckets as a varint blob, see `Histogram::encode_buckets`) and
//! `counter_minute`. A batch is written in one transaction; with WAL and
//! `synchronous=NORMAL` a committed transaction survives a crash of the
//! reporter (kill -9), though not a power cut. The schema is versioned in
//! `meta`; a file from a newer reporter is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Batch, ErrorSummary, Filter, SeriesKey, Store, StoreError, TracePoint};
use crate::histogram::Histogram;

/// Traces kept per series and hour: the slowest.
pub const TRACES_PER_HOUR: i64 = 20;

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL, host TEXT NOT NULL, txn TEXT NOT NULL, feature TEXT NOT NULL, kind TEXT NOT NULL,
    UNIQUE (service, host, txn, feature, kind)
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
    count INTEGER NOT NULL, last_seen INTEGER NOT NULL,
    PRIMARY KEY (series, minute, error_type, message, location)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS error_by_minute ON error_minute (minute);
CREATE TABLE IF NOT EXISTS kept_trace (
    series INTEGER NOT NULL, hour INTEGER NOT NULL, trace_id TEXT NOT NULL,
    start INTEGER NOT NULL, duration REAL NOT NULL, spans TEXT NOT NULL,
    PRIMARY KEY (series, hour, trace_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_minute (
    series INTEGER NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL, minute INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series, name, labels, minute)
) WITHOUT ROWID;
";

/// The embedded store.
pub struct SqliteStore {
    path: String,
    connection: Mutex<Connection>,
    series: Mutex<HashMap<SeriesKey, i64>>,
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
        let error = |source| StoreError::Sqlite {
            path: name.clone(),
            source,
        };
        let connection = Connection::open(path).map_err(error)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .map_err(error)?;
        connection.execute_batch(SCHEMA).map_err(error)?;
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
            Some(_) => {}
            None => {
                connection
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                        [SCHEMA_VERSION.to_string()],
                    )
                    .map_err(error)?;
            }
        }
        Ok(SqliteStore {
            path: name,
            connection: Mutex::new(connection),
            series: Mutex::new(HashMap::new()),
        })
    }

    fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn series_id(&self, transaction: &rusqlite::Transaction<'_>, key: &SeriesKey) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.series.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(id);
        }
        transaction.execute(
            "INSERT OR IGNORE INTO series (service, host, txn, feature, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.service, key.host, key.transaction, key.feature, key.kind],
        )?;
        let id = transaction.query_row(
            "SELECT id FROM series WHERE service = ?1 AND host = ?2 AND txn = ?3 AND feature = ?4 AND kind = ?5",
            params![key.service, key.host, key.transaction, key.feature, key.kind],
            |row| row.get(0),
        )?;
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), id);
        Ok(id)
    }

    fn write_batch(&self, batch: &Batch) -> Result<(), rusqlite::Error> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let transaction = connection.transaction()?;
        for point in &batch.histograms {
            let series = self.series_id(&transaction, &point.key)?;
            let existing = read_histogram(&transaction, series, point.minute)?;
            let merged = match existing {
                Some(mut stored) => {
                    stored.merge(&point.histogram);
                    stored
                }
                None => point.histogram.clone(),
            };
            transaction.execute(
                "INSERT OR REPLACE INTO histogram_minute
                 (series, minute, count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    series,
                    point.minute,
                    merged.count as i64,
                    merged.sum,
                    merged.min,
                    merged.max,
                    merged.scale,
                    merged.zero_count as i64,
                    merged.zero_threshold,
                    merged.encode_buckets(),
                    merged.estimated,
                ],
            )?;
        }
        for point in &batch.counters {
            let series = self.series_id(&transaction, &point.key)?;
            transaction.execute(
                "INSERT INTO counter_minute (series, name, labels, minute, value) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (series, name, labels, minute) DO UPDATE SET value = value + excluded.value",
                params![series, point.name, point.labels, point.minute, point.value],
            )?;
        }
        for point in &batch.errors {
            let series = self.series_id(&transaction, &point.key)?;
            transaction.execute(
                "INSERT INTO error_minute (series, minute, error_type, message, location, count, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (series, minute, error_type, message, location)
                 DO UPDATE SET count = count + excluded.count, last_seen = MAX(last_seen, excluded.last_seen)",
                params![
                    series,
                    point.minute,
                    point.error_type,
                    point.message,
                    point.location,
                    point.count as i64,
                    point.last_seen as i64
                ],
            )?;
        }
        for point in &batch.traces {
            let series = self.series_id(&transaction, &point.key)?;
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
        transaction.commit()
    }
}

/// A stored minute, or `None`; a row whose blob cannot be read is an error.
fn read_histogram(connection: &Connection, series: i64, minute: i64) -> Result<Option<Histogram>, rusqlite::Error> {
    connection
        .query_row(
            "SELECT count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated
             FROM histogram_minute WHERE series = ?1 AND minute = ?2",
            params![series, minute],
            row_histogram,
        )
        .optional()
}

fn row_histogram(row: &rusqlite::Row<'_>) -> Result<Histogram, rusqlite::Error> {
    let blob: Vec<u8> = row.get("buckets")?;
    let buckets = Histogram::decode_buckets(&blob).ok_or(rusqlite::Error::InvalidColumnType(
        7,
        "buckets".to_owned(),
        rusqlite::types::Type::Blob,
    ))?;
    Ok(Histogram {
        count: row.get::<_, i64>("count")? as u64,
        sum: row.get("sum")?,
        min: row.get("min")?,
        max: row.get("max")?,
        scale: row.get("scale")?,
        zero_count: row.get::<_, i64>("zero_count")? as u64,
        zero_threshold: row.get("zero_threshold")?,
        buckets,
        estimated: row.get("estimated")?,
    })
}

const FILTER: &str = "(?3 IS NULL OR s.service = ?3) AND (?4 IS NULL OR s.host = ?4)
     AND (?5 IS NULL OR s.txn = ?5) AND (?6 IS NULL OR s.feature = ?6)";

fn key(row: &rusqlite::Row<'_>) -> Result<SeriesKey, rusqlite::Error> {
    Ok(SeriesKey {
        service: row.get("service")?,
        host: row.get("host")?,
        transaction: row.get("txn")?,
        feature: row.get("feature")?,
        kind: row.get("kind")?,
    })
}

impl SqliteStore {
    /// Runs a query whose parameters are the window (`?1`, `?2`), the
    /// filter (`?3` to `?6`) and an optional `?7`, mapping each row.
    fn select<T>(
        &self,
        sql: &str,
        filter: &Filter,
        (from, to): (i64, i64),
        seventh: Option<&dyn rusqlite::ToSql>,
        row: impl FnMut(&rusqlite::Row<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let rows = (|| {
            let mut statement = connection.prepare_cached(sql)?;
            let window_and_filter: [&dyn rusqlite::ToSql; 6] = [
                &from,
                &to,
                &filter.service,
                &filter.host,
                &filter.transaction,
                &filter.feature,
            ];
            let mut parameters: Vec<&dyn rusqlite::ToSql> = window_and_filter.to_vec();
            parameters.extend(seventh);
            let rows = statement.query_map(parameters.as_slice(), row)?;
            rows.collect::<Result<Vec<T>, _>>()
        })();
        rows.map_err(|e| self.error(e))
    }
}

impl Store for SqliteStore {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        self.write_batch(batch).map_err(|e| self.error(e))
    }

    fn histograms(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<(SeriesKey, Histogram)>, StoreError> {
        let sql = format!(
            "SELECT s.service, s.host, s.txn, s.feature, s.kind, h.count, h.sum, h.min, h.max, h.scale,
                    h.zero_count, h.zero_threshold, h.buckets, h.estimated
             FROM histogram_minute h JOIN series s ON s.id = h.series
             WHERE h.minute >= ?1 AND h.minute < ?2 AND {FILTER}"
        );
        let rows = self.select(&sql, filter, (from, to), None, |row| {
            Ok((key(row)?, row_histogram(row)?))
        })?;
        let mut merged: BTreeMap<SeriesKey, Histogram> = BTreeMap::new();
        for (key, histogram) in rows {
            match merged.get_mut(&key) {
                Some(total) => total.merge(&histogram),
                None => {
                    merged.insert(key, histogram);
                }
            }
        }
        Ok(merged.into_iter().collect())
    }

    fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, StoreError> {
        let sql = format!(
            "SELECT s.service, s.host, s.txn, s.feature, s.kind, c.labels, SUM(c.value) AS total
             FROM counter_minute c JOIN series s ON s.id = c.series
             WHERE c.minute >= ?1 AND c.minute < ?2 AND {FILTER} AND c.name = ?7
             GROUP BY c.series, c.labels ORDER BY s.txn, c.labels"
        );
        self.select(&sql, filter, (from, to), Some(&name), |row| {
            Ok((key(row)?, row.get("labels")?, row.get("total")?))
        })
    }

    fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        let sql = "SELECT service, host, txn, feature, kind FROM series WHERE ?1 = ?1 AND ?2 = ?2 AND ?3 IS NULL AND ?4 IS NULL AND ?5 IS NULL AND ?6 IS NULL";
        self.select(sql, &Filter::default(), (0, 0), None, key)
    }

    fn size_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", self.path)).ok())
            .map(|m| m.len())
            .sum()
    }

    fn errors(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<ErrorSummary>, StoreError> {
        let sql = format!(
            "SELECT s.service, s.host, s.txn, s.feature, s.kind, e.error_type, e.message, e.location,
                    SUM(e.count) AS total, MIN(e.minute) AS first_minute, MAX(e.last_seen) AS last_seen
             FROM error_minute e JOIN series s ON s.id = e.series
             WHERE e.minute >= ?1 AND e.minute < ?2 AND {FILTER}
             GROUP BY e.series, e.error_type, e.message, e.location ORDER BY total DESC"
        );
        self.select(&sql, filter, (from, to), None, |row| {
            Ok(ErrorSummary {
                key: key(row)?,
                error_type: row.get("error_type")?,
                message: row.get("message")?,
                location: row.get("location")?,
                count: row.get::<_, i64>("total")? as u64,
                first_minute: row.get("first_minute")?,
                last_seen: row.get::<_, i64>("last_seen")? as u64,
            })
        })
    }

    fn slowest_traces(&self, filter: &Filter, from: i64, to: i64, limit: usize) -> Result<Vec<TracePoint>, StoreError> {
        let sql = format!(
            "SELECT s.service, s.host, s.txn, s.feature, s.kind, t.trace_id, t.start, t.duration, t.spans
             FROM kept_trace t JOIN series s ON s.id = t.series
             WHERE t.start >= ?1 * 60000000000 AND t.start < ?2 * 60000000000 AND {FILTER}
             ORDER BY t.duration DESC LIMIT ?7"
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CounterPoint, HistogramPoint};

    fn key(host: &str) -> SeriesKey {
        SeriesKey {
            service: "cards-api".into(),
            host: host.into(),
            transaction: "GET /cards/{id}".into(),
            feature: "cards".into(),
            kind: "web".into(),
        }
    }

    fn histogram(values: &[f64]) -> Histogram {
        let mut h = Histogram::empty();
        for &v in values {
            let mut one = Histogram::empty();
            one.buckets.insert(crate::histogram::bucket_index(v, 7), 1);
            one.count = 1;
            one.sum = v;
            one.min = v;
            one.max = v;
            h.merge(&one);
        }
        h
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
                histograms: vec![
                    HistogramPoint {
                        key: key("a"),
                        minute: 100,
                        histogram: histogram(&[0.010, 0.020]),
                    },
                    HistogramPoint {
                        key: key("b"),
                        minute: 100,
                        histogram: histogram(&[0.030]),
                    },
                    HistogramPoint {
                        key: key("a"),
                        minute: 101,
                        histogram: histogram(&[0.040]),
                    },
                ],
                counters: vec![CounterPoint {
                    key: key("a"),
                    minute: 100,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: "kuroko.outcome=5xx".into(),
                    value: 2.0,
                }],
            };
            store.write(&batch).unwrap();
            // The same minute again merges into the stored row.
            store
                .write(&Batch {
                    errors: vec![],
                    traces: vec![],
                    histograms: vec![batch.histograms[0].clone()],
                    counters: batch.counters.clone(),
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
            .connection
            .lock()
            .unwrap()
            .execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", [])
            .unwrap();
        drop(store);
        let error = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            error.contains("schema version 99, newer than this kuroko's 1: upgrade kuroko"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
