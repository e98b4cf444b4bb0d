//! `kuroko sql`: raw, read-only SQL against the embedded store, for the
//! questions the analysis layer does not ask (yet).
//!
//! The store keeps durations as histograms (a row per series and minute,
//! hour or day, the buckets as a blob), which plain SQL cannot merge or read
//! a percentile from. This module opens the store's file read-only (a WAL
//! reader: `kuroko serve` goes on writing meanwhile), registers functions
//! that do — the aggregate `hist_merge`, and `hist_quantile`, `hist_mean`,
//! `hist_stddev`, `hist_fraction_above`, … over its result — and creates
//! TEMP views that join series names in (`histograms`, `counters`, `errors`,
//! `traces`, and `*_best` views that hold each period once). See
//! `docs/queries.md` for the reference and worked examples.
//!
//! Functions never panic on what a query hands them: a bad blob or argument
//! is an SQL error that says what is wrong. A query stops after
//! [`SqlLimits::max_rows`] rows and [`SqlLimits::timeout`] (`--max-rows`,
//! `--timeout`), saying which limit it met; rows are written out as they
//! come (CSV and JSON), so memory does not grow with the result (a table
//! holds its rows, cut to their shown width, to align them). Points a running reporter has
//! acknowledged but not yet flushed to the tables (it flushes about every
//! second while data arrives, and on every roll-up pass) are not visible.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::sqlite::SCHEMA_VERSION;
use crate::histogram::{Histogram, StoredParts};

/// How [`run`] prints rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal; long values cut at 60 characters.
    Table,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// A JSON array of objects, one per row, columns in query order.
    Json,
}

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// There is no file at the store's path.
    #[error("no store at {path}: give its file with --store, --config or KUROKO_STORE")]
    NoStore {
        /// The path tried.
        path: String,
    },
    /// SQLite could not open or read the file.
    #[error("cannot open store {path} read-only: {message}")]
    Open {
        /// The store's file.
        path: String,
        /// What SQLite said.
        message: String,
    },
    /// The file is an SQLite database, but not a Kuroko store.
    #[error("{path} is not a Kuroko store: it has no series table")]
    NotAStore {
        /// The file.
        path: String,
    },
    /// The file was written by a newer reporter, whose tables this build may misread.
    #[error("store {path} has schema version {found}, newer than this kuroko's {supported}: upgrade kuroko")]
    NewerSchema {
        /// The store's file.
        path: String,
        /// The file's version.
        found: i64,
        /// This build's version.
        supported: i64,
    },
    /// The file predates the current schema (the views need it).
    #[error("store {path} has schema version {found}, older than this kuroko's {supported}: run `kuroko serve` on it once to upgrade it")]
    OlderSchema {
        /// The store's file.
        path: String,
        /// The file's version.
        found: i64,
        /// This build's version.
        supported: i64,
    },
    /// The statement would write.
    #[error("kuroko sql opens the store read-only: only statements that read (SELECT, WITH, EXPLAIN, read-only PRAGMAs) run, and this one would write")]
    ReadOnly,
    /// Nothing to run (or only comments).
    #[error("the query is empty")]
    Empty,
    /// More than one statement.
    #[error("one statement at a time: the query holds several")]
    MultipleStatements,
    /// SQLite refused or failed the statement (syntax, unknown column, a
    /// function's error, …).
    #[error("the query failed: {message}")]
    Query {
        /// What SQLite or the function said.
        message: String,
    },
    /// The result has more rows than allowed: those before were written.
    #[error("stopped after {max} rows (--max-rows {max}): add a LIMIT to the query, or give --max-rows N for more (0: no limit)")]
    TooManyRows {
        /// The limit.
        max: u64,
    },
    /// The query ran past its time limit and was interrupted: rows already
    /// found were written.
    #[error("stopped after {seconds} s (--timeout {seconds}): narrow the query (e.g. on period_start), or give --timeout SECONDS for longer (0: no limit)")]
    TimedOut {
        /// The limit, in seconds.
        seconds: u64,
    },
    /// The rows could not be written out.
    #[error("writing the rows failed: {0}")]
    Write(#[from] std::io::Error),
}

/// How much one query may return and how long it may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlLimits {
    /// Most rows written; 0: no limit. Default: 100,000.
    pub max_rows: u64,
    /// Longest run, writing included; zero: no limit. Default: 60 s.
    pub timeout: Duration,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_rows: 100_000,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The `--help` text of `kuroko sql`: views, functions and an example.
pub const HELP: &str = "\
Views (TEMP, created for the session; period_start is in unix minutes):
  histograms        resolution ('minute'|'hour'|'day'), period_start, period_minutes,
                    service, host, txn, feature, kind, environment,
                    count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated
  counters          resolution, period_start, period_minutes, service ... environment, name, labels, value
  errors            resolution ('minute'|'hour'), period_start, period_minutes, service ... environment,
                    error_type, message, location, count, last_seen
  traces            service ... environment, trace_id, start (unix ns), start_minute, duration (s), spans (JSON)
  histograms_best, counters_best, errors_best
                    the same rows, each period once at the finest resolution still kept
  The same data is stored at several resolutions: filter on resolution, or use a *_best view.

Functions (durations in seconds):
  hist_merge(count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated)
                    aggregate: one merged histogram (a BLOB); hist_merge(blob) merges merged ones
  hist_quantile(h, q)   hist_mean(h)   hist_count(h)   hist_min(h)   hist_max(h)   hist_sum(h)
  hist_stddev(h)        hist_fraction_above(h, seconds)   (share of runs slower than seconds)
  label_value(labels, key)   one value of a counter's labels, e.g. 'kuroko.segment.kind'

Example: the slowest endpoints by p99 over the last 24 hours
  kuroko sql --store kuroko.db \"
    SELECT service, txn, hist_quantile(hist_merge(count, sum, min, max, scale, zero_count,
           zero_threshold, buckets, estimated), 0.99) AS p99
    FROM histograms WHERE resolution = 'minute' AND period_start >= unixepoch() / 60 - 1440
    GROUP BY service, txn ORDER BY p99 DESC LIMIT 10\"

The store is opened read-only; points the reporter acknowledged in about the last five
seconds may not be visible yet (the reporter's own answers include them).
More, with worked examples: docs/queries.md";

/// The histogram columns of the store's tables and of the views, in `hist_merge`'s argument order.
const HISTOGRAM_COLUMNS: &str = "count, sum, min, max, scale, zero_count, zero_threshold, buckets, estimated";

/// Opens the store at `path` read-only, with the functions and views of
/// the [module documentation](self) ready.
pub fn open(path: &Path) -> Result<Connection, SqlError> {
    let name = path.display().to_string();
    if !path.is_file() {
        return Err(SqlError::NoStore { path: name });
    }
    let open_error = |e: rusqlite::Error| SqlError::Open {
        path: name.clone(),
        message: e.to_string(),
    };
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(open_error)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_error)?;
    let has_series: bool = connection
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'series'",
            [],
            |row| row.get(0),
        )
        .map_err(open_error)?;
    if !has_series {
        return Err(SqlError::NotAStore { path: name });
    }
    let found: i64 = connection
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(open_error)?
        .unwrap_or(1);
    if found > SCHEMA_VERSION {
        return Err(SqlError::NewerSchema {
            path: name,
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(SqlError::OlderSchema {
            path: name,
            found,
            supported: SCHEMA_VERSION,
        });
    }
    register_functions(&connection).map_err(open_error)?;
    connection.execute_batch(&views()).map_err(open_error)?;
    Ok(connection)
}

/// Runs one read-only statement against the store at `path` and prints its
/// rows in `format`, within the default [`SqlLimits`].
pub fn run(path: &Path, sql: &str, format: Format) -> Result<String, SqlError> {
    let mut out = Vec::new();
    run_to(path, sql, format, SqlLimits::default(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs one read-only statement against the store at `path` and writes its
/// rows to `out` in `format` as they come. Past `limits`, what was found is
/// written (a table or JSON array closed) and the error says which limit
/// stopped it.
pub fn run_to(path: &Path, sql: &str, format: Format, limits: SqlLimits, out: &mut dyn Write) -> Result<(), SqlError> {
    if sql.trim().trim_end_matches(';').trim().is_empty() {
        return Err(SqlError::Empty);
    }
    let connection = open(path)?;
    let mut statement = connection.prepare(sql).map_err(query_error)?;
    // Only comments: SQLite compiles no statement.
    if statement.expanded_sql().is_none() {
        return Err(SqlError::Empty);
    }
    if !statement.readonly() {
        return Err(SqlError::ReadOnly);
    }
    let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
    let timer = Timer::start(&connection, limits.timeout);
    let mut writer = RowWriter::new(format, &columns, out)?;
    let mut rows = statement.query([]).map_err(query_error)?;
    let mut written = 0u64;
    let stopped = loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break None,
            Err(_) if timer.fired() => {
                break Some(SqlError::TimedOut {
                    seconds: limits.timeout.as_secs(),
                })
            }
            Err(error) => break Some(query_error(error)),
        };
        if limits.max_rows > 0 && written == limits.max_rows {
            break Some(SqlError::TooManyRows { max: limits.max_rows });
        }
        let mut cells = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            cells.push(Cell::from(row.get_ref(index).map_err(query_error)?));
        }
        writer.row(cells)?;
        written += 1;
    };
    drop(timer);
    match stopped {
        // A failed query prints nothing; a stopped one what it found.
        Some(error @ (SqlError::Query { .. } | SqlError::ReadOnly | SqlError::MultipleStatements)) => Err(error),
        stopped => {
            writer.finish()?;
            stopped.map_or(Ok(()), Err)
        }
    }
}

/// Interrupts the connection's query once `limit` has passed (never when
/// it is zero); stops when dropped.
struct Timer {
    fired: Arc<AtomicBool>,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Timer {
    fn start(connection: &Connection, limit: Duration) -> Timer {
        let fired = Arc::new(AtomicBool::new(false));
        if limit.is_zero() {
            return Timer { fired, stop: None };
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let handle = connection.get_interrupt_handle();
        let flag = fired.clone();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(limit) {
                flag.store(true, Ordering::SeqCst);
                handle.interrupt();
            }
        });
        Timer {
            fired,
            stop: Some(stop),
        }
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Writes rows as they come: CSV and JSON at once; a table once all are
/// in (to align them), each cell cut to what the table shows.
enum RowWriter<'a> {
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<Cell>>,
        out: &'a mut dyn Write,
    },
    Csv(&'a mut dyn Write),
    Json {
        columns: Vec<String>,
        rows: u64,
        out: &'a mut dyn Write,
    },
}

impl<'a> RowWriter<'a> {
    fn new(format: Format, columns: &[String], out: &'a mut dyn Write) -> std::io::Result<Self> {
        let columns = columns.to_vec();
        Ok(match format {
            Format::Table => RowWriter::Table {
                columns,
                rows: Vec::new(),
                out,
            },
            Format::Csv => {
                out.write_all(csv_line(columns.iter().map(String::as_str)).as_bytes())?;
                RowWriter::Csv(out)
            }
            Format::Json => RowWriter::Json { columns, rows: 0, out },
        })
    }

    fn row(&mut self, cells: Vec<Cell>) -> std::io::Result<()> {
        match self {
            RowWriter::Table { rows, .. } => rows.push(cells.into_iter().map(Cell::shown).collect()),
            RowWriter::Csv(out) => out.write_all(
                csv_line(
                    cells
                        .iter()
                        .map(|c| c.plain())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                )
                .as_bytes(),
            )?,
            RowWriter::Json { columns, rows, out } => {
                out.write_all(if *rows == 0 { b"[\n" } else { b",\n" })?;
                out.write_all(json_object(columns, &cells).as_bytes())?;
                *rows += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            RowWriter::Table { columns, rows, out } => out.write_all(table(&columns, &rows).as_bytes())?,
            RowWriter::Csv(out) => out.flush()?,
            RowWriter::Json { rows: 0, out, .. } => out.write_all(b"[]\n")?,
            RowWriter::Json { out, .. } => out.write_all(b"\n]\n")?,
        }
        Ok(())
    }
}

fn query_error(error: rusqlite::Error) -> SqlError {
    match error {
        rusqlite::Error::MultipleStatement => SqlError::MultipleStatements,
        rusqlite::Error::SqliteFailure(ref e, _) if e.code == ErrorCode::ReadOnly => SqlError::ReadOnly,
        other => SqlError::Query {
            message: other.to_string(),
        },
    }
}

/// Registers the `hist_*` functions and `label_value` on `connection`.
pub fn register_functions(connection: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    connection.create_aggregate_function("hist_merge", 9, flags, HistMerge)?;
    connection.create_aggregate_function("hist_merge", 1, flags, HistMerge)?;
    connection.create_scalar_function("hist_quantile", 2, flags, |ctx| {
        let Some(h) = histogram_arg(ctx, "hist_quantile", 0)? else {
            return Ok(None);
        };
        let Some(q) = number_arg(ctx, "hist_quantile", 1, "q")? else {
            return Ok(None);
        };
        if !(0.0..=1.0).contains(&q) {
            return Err(fail(format!(
                "hist_quantile: q must be between 0 and 1 (0.95 for p95), got {q}"
            )));
        }
        Ok(Some(h.quantile(q)))
    })?;
    connection.create_scalar_function("hist_count", 1, flags, |ctx| {
        Ok(histogram_arg(ctx, "hist_count", 0)?.map(|h| i64::try_from(h.count).unwrap_or(i64::MAX)))
    })?;
    type Read = fn(&Histogram) -> f64;
    let reads: [(&str, Read); 5] = [
        ("hist_mean", Histogram::mean),
        ("hist_min", |h| if h.count == 0 { 0.0 } else { h.min }),
        ("hist_max", |h| h.max),
        ("hist_sum", |h| h.sum),
        ("hist_stddev", Histogram::stddev),
    ];
    for (name, read) in reads {
        connection.create_scalar_function(name, 1, flags, move |ctx| {
            Ok(histogram_arg(ctx, name, 0)?.map(|h| read(&h)))
        })?;
    }
    connection.create_scalar_function("hist_fraction_above", 2, flags, |ctx| {
        let Some(h) = histogram_arg(ctx, "hist_fraction_above", 0)? else {
            return Ok(None);
        };
        let Some(seconds) = number_arg(ctx, "hist_fraction_above", 1, "seconds")? else {
            return Ok(None);
        };
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(fail(format!(
                "hist_fraction_above: seconds must be a finite number, 0 or more, got {seconds}"
            )));
        }
        Ok(Some(h.fraction_above(seconds)))
    })?;
    connection.create_scalar_function("label_value", 2, flags, |ctx| {
        let text = |index: usize| -> rusqlite::Result<Option<String>> {
            match ctx.get_raw(index) {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
                other => Err(fail(format!(
                    "label_value: argument {} must be TEXT, got {}",
                    index + 1,
                    other.data_type()
                ))),
            }
        };
        let (Some(labels), Some(key)) = (text(0)?, text(1)?) else {
            return Ok(None);
        };
        Ok(label_value(&labels, &key))
    })?;
    Ok(())
}

/// The value of `key` in canonical `k=v,k=v` labels. A piece without `=`
/// belongs to the value before it (a value holding a comma).
fn label_value(labels: &str, key: &str) -> Option<String> {
    let mut found: Option<String> = None;
    let mut in_key = false;
    for piece in labels.split(',') {
        match piece.split_once('=') {
            Some((k, v)) => {
                if found.is_some() && in_key {
                    break;
                }
                in_key = k == key;
                if in_key {
                    found = Some(v.to_owned());
                }
            }
            None => {
                if let (true, Some(value)) = (in_key, found.as_mut()) {
                    value.push(',');
                    value.push_str(piece);
                }
            }
        }
    }
    found
}

fn fail(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

/// Argument `index` as a histogram blob; `None` for NULL.
fn histogram_arg(ctx: &Context<'_>, function: &str, index: usize) -> rusqlite::Result<Option<Histogram>> {
    match ctx.get_raw(index) {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(blob) => Histogram::from_blob(blob)
            .map(Some)
            .map_err(|e| fail(format!("{function}: argument {} is not a histogram: {e}", index + 1))),
        other => Err(fail(format!(
            "{function}: argument {} must be a histogram BLOB made by hist_merge, got {}",
            index + 1,
            other.data_type()
        ))),
    }
}

/// Argument `index` as a number; `None` for NULL.
fn number_arg(ctx: &Context<'_>, function: &str, index: usize, name: &str) -> rusqlite::Result<Option<f64>> {
    match ctx.get_raw(index) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i as f64)),
        ValueRef::Real(r) => Ok(Some(r)),
        other => Err(fail(format!(
            "{function}: argument {} ({name}) must be a number, got {}",
            index + 1,
            other.data_type()
        ))),
    }
}

/// `hist_merge`: with nine arguments a histogram row's columns, with one a
/// blob of an earlier `hist_merge`; rows whose first argument is NULL are
/// skipped; no rows give NULL.
struct HistMerge;

impl HistMerge {
    /// The histogram a row's arguments describe, `None` to skip it.
    fn histogram(ctx: &Context<'_>) -> rusqlite::Result<Option<Histogram>> {
        if ctx.len() == 1 {
            return histogram_arg(ctx, "hist_merge", 0);
        }
        let names = [
            "count",
            "sum",
            "min",
            "max",
            "scale",
            "zero_count",
            "zero_threshold",
            "buckets",
            "estimated",
        ];
        let wrong = |index: usize, what: &str, got: ValueRef<'_>| {
            fail(format!(
                "hist_merge: argument {} ({}) must be {what}, got {}",
                index + 1,
                names[index],
                got.data_type()
            ))
        };
        let integer = |index: usize| -> rusqlite::Result<i64> {
            match ctx.get_raw(index) {
                ValueRef::Integer(i) => Ok(i),
                other => Err(wrong(index, "an INTEGER", other)),
            }
        };
        let count = |index: usize| -> rusqlite::Result<u64> {
            u64::try_from(integer(index)?).map_err(|_| {
                fail(format!(
                    "hist_merge: argument {} ({}) is negative",
                    index + 1,
                    names[index]
                ))
            })
        };
        let real = |index: usize| -> rusqlite::Result<f64> {
            match ctx.get_raw(index) {
                ValueRef::Integer(i) => Ok(i as f64),
                ValueRef::Real(r) => Ok(r),
                other => Err(wrong(index, "a number", other)),
            }
        };
        if matches!(ctx.get_raw(0), ValueRef::Null) {
            return Ok(None);
        }
        let buckets = match ctx.get_raw(7) {
            ValueRef::Blob(blob) => blob,
            other => return Err(wrong(7, "the buckets BLOB", other)),
        };
        let scale =
            i32::try_from(integer(4)?).map_err(|_| fail("hist_merge: argument 5 (scale) is out of range".into()))?;
        let parts = StoredParts {
            count: count(0)?,
            sum: real(1)?,
            min: real(2)?,
            max: real(3)?,
            scale,
            zero_count: count(5)?,
            zero_threshold: real(6)?,
            buckets,
            estimated: integer(8)? != 0,
        };
        Histogram::from_stored(parts)
            .map(Some)
            .map_err(|e| fail(format!("hist_merge: a row is not a histogram: {e}")))
    }
}

impl Aggregate<Option<Histogram>, Option<Vec<u8>>> for HistMerge {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Option<Histogram>> {
        Ok(None)
    }

    fn step(&self, ctx: &mut Context<'_>, merged: &mut Option<Histogram>) -> rusqlite::Result<()> {
        let Some(histogram) = HistMerge::histogram(ctx)? else {
            return Ok(());
        };
        match merged {
            Some(total) => {
                // Adding counts that overflow would panic (or wrap): refuse.
                if total.count.checked_add(histogram.count).is_none() {
                    return Err(fail("hist_merge: the merged count overflows".into()));
                }
                total.merge(&histogram);
            }
            None => *merged = Some(histogram),
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, merged: Option<Option<Histogram>>) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(merged.flatten().map(|h| h.to_blob()))
    }
}

/// One union view over the resolutions' tables of `stem` (`histogram`,
/// `counter`, `error`): `columns` are the table's own (alias `t`), `join`
/// more joins, and `keep` per resolution an extra condition (for `*_best`),
/// on `period` (the period's start in unix minutes).
fn union_view(name: &str, stem: &str, columns: &str, join: &str, keep: &[(&str, i64, &str)]) -> String {
    let selects: Vec<String> = keep
        .iter()
        .map(|&(resolution, minutes, condition)| {
            let period = if minutes == 1 {
                format!("t.{resolution}")
            } else {
                format!("t.{resolution} * {minutes}")
            };
            let condition = condition.replace("period", &period);
            let condition = if condition.is_empty() {
                String::new()
            } else {
                format!(" WHERE {condition}")
            };
            format!(
                "SELECT '{resolution}' AS resolution, {period} AS period_start, {minutes} AS period_minutes,
                        s.service, s.host, s.txn, s.feature, s.kind, s.environment, {columns}
                 FROM main.{stem}_{resolution} t JOIN main.series s ON s.id = t.series{join}{condition}"
            )
        })
        .collect();
    format!("CREATE TEMP VIEW {name} AS {};\n", selects.join("\nUNION ALL\n"))
}

/// The session's TEMP views.
fn views() -> String {
    let histogram_columns: String = HISTOGRAM_COLUMNS
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let counter_columns = "l.name, l.labels, t.value";
    let counter_join = " JOIN main.counter_label l ON l.id = t.label";
    let error_columns = "t.error_type, t.message, t.location, t.count, t.last_seen";
    // Where each resolution is the finest kept: days before the first whole
    // day of hours kept, minutes from the first whole hour of minutes kept
    // (and not before the days end), hours between. Retention cuts only
    // what is rolled up, so together they hold every period once.
    let edges = "CREATE TEMP VIEW retention_edges AS
        SELECT d AS days_before, MAX(d, ((m + 59) / 60) * 60) AS minutes_from FROM (SELECT
            ((MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM main.meta WHERE key = 'hours_kept_from'), 0), 0)
              + 1439) / 1440) * 1440 AS d,
            MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM main.meta WHERE key = 'minutes_kept_from'), 0), 0) AS m);\n";
    let days = "period < (SELECT days_before FROM retention_edges)";
    let hours =
        "period >= (SELECT days_before FROM retention_edges) AND period < (SELECT minutes_from FROM retention_edges)";
    let error_hours = "period < (SELECT minutes_from FROM retention_edges)";
    let minutes = "period >= (SELECT minutes_from FROM retention_edges)";
    let all = [("minute", 1, ""), ("hour", 60, ""), ("day", 1440, "")];
    let best = [("minute", 1, minutes), ("hour", 60, hours), ("day", 1440, days)];
    let error_all = [("minute", 1, ""), ("hour", 60, "")];
    let error_best = [("minute", 1, minutes), ("hour", 60, error_hours)];
    let mut sql = String::from(edges);
    sql += &union_view("histograms", "histogram", &histogram_columns, "", &all);
    sql += &union_view("histograms_best", "histogram", &histogram_columns, "", &best);
    sql += &union_view("counters", "counter", counter_columns, counter_join, &all);
    sql += &union_view("counters_best", "counter", counter_columns, counter_join, &best);
    sql += &union_view("errors", "error", error_columns, "", &error_all);
    sql += &union_view("errors_best", "error", error_columns, "", &error_best);
    sql += "CREATE TEMP VIEW traces AS
        SELECT s.service, s.host, s.txn, s.feature, s.kind, s.environment,
               t.trace_id, t.start, t.start / 60000000000 AS start_minute, t.duration, t.spans
        FROM main.kept_trace t JOIN main.series s ON s.id = t.series;\n";
    sql
}

/// One value of a result row, owned.
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Cell {
    fn from(value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(r) => Cell::Real(r),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

impl Cell {
    fn is_number(&self) -> bool {
        matches!(self, Cell::Integer(_) | Cell::Real(_))
    }

    /// As CSV and JSON text show it (reals at full precision).
    fn plain(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Integer(i) => i.to_string(),
            Cell::Real(r) => r.to_string(),
            Cell::Text(t) => t.clone(),
            Cell::Blob(b) => blob_label(b),
        }
    }

    /// The cell as a table keeps it: text cut past what it shows, a blob
    /// as its label.
    fn shown(self) -> Cell {
        match self {
            Cell::Text(text) if text.len() > MAX_WIDTH * 4 => Cell::Text(text.chars().take(MAX_WIDTH + 1).collect()),
            Cell::Blob(blob) => Cell::Text(blob_label(&blob)),
            other => other,
        }
    }

    /// As the table shows it (reals to 6 significant digits).
    fn short(&self) -> String {
        match self {
            Cell::Real(r) => short_real(*r),
            other => other.plain(),
        }
    }
}

/// A histogram blob as `<histogram n=…>`, any other as its length.
fn blob_label(blob: &[u8]) -> String {
    match Histogram::from_blob(blob) {
        Ok(h) if h.estimated => format!("<histogram n={} estimated>", h.count),
        Ok(h) => format!("<histogram n={}>", h.count),
        Err(_) => format!("<blob {} bytes>", blob.len()),
    }
}

fn short_real(value: f64) -> String {
    if !value.is_finite() || value == 0.0 {
        return value.to_string();
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-4..15).contains(&magnitude) {
        return format!("{value:.5e}");
    }
    let decimals = usize::try_from(5 - magnitude).unwrap_or(0);
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Widest a table column gets; longer values are cut with `…`.
const MAX_WIDTH: usize = 60;

fn table(columns: &[String], rows: &[Vec<Cell>]) -> String {
    let shown: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| {
                    let text = cell.short().replace(['\n', '\r', '\t'], " ");
                    if text.chars().count() > MAX_WIDTH {
                        text.chars().take(MAX_WIDTH - 1).chain(['…']).collect()
                    } else {
                        text
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            shown
                .iter()
                .map(|row| row[c].chars().count())
                .chain([columns[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|c| {
            rows.iter().any(|row| row[c].is_number())
                && rows
                    .iter()
                    .all(|row| row[c].is_number() || matches!(row[c], Cell::Null))
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, text)| {
                let pad = widths[c].saturating_sub(text.chars().count());
                if numeric[c] {
                    format!("{}{text}", " ".repeat(pad))
                } else {
                    format!("{text}{}", " ".repeat(pad))
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(columns);
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in &shown {
        out += &line(row);
    }
    out += &match rows.len() {
        1 => "(1 row)\n".to_owned(),
        n => format!("({n} rows)\n"),
    };
    out
}

/// One CSV line of `fields`, quoted where they must be.
fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let field = |text: &str| -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    fields.map(field).collect::<Vec<_>>().join(",") + "\n"
}

#[cfg(test)]
fn csv(columns: &[String], rows: &[Vec<Cell>]) -> String {
    let mut out = csv_line(columns.iter().map(String::as_str));
    for row in rows {
        let plain: Vec<String> = row.iter().map(Cell::plain).collect();
        out += &csv_line(plain.iter().map(String::as_str));
    }
    out
}

/// One row as a JSON object, columns in query order, indented for the array.
fn json_object(columns: &[String], row: &[Cell]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .zip(row)
        .map(|(name, cell)| {
            let value = match cell {
                Cell::Null => serde_json::Value::Null,
                Cell::Integer(i) => serde_json::Value::from(*i),
                // Not finite: null, as JSON has no such numbers.
                Cell::Real(r) => serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into),
                other => serde_json::Value::String(other.plain()),
            };
            format!("{}:{value}", serde_json::Value::String(name.clone()))
        })
        .collect();
    format!("  {{{}}}", fields.join(","))
}

#[cfg(test)]
fn json(columns: &[String], rows: &[Vec<Cell>]) -> String {
    if rows.is_empty() {
        return "[]\n".to_owned();
    }
    let objects: Vec<String> = rows.iter().map(|row| json_object(columns, row)).collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_found_by_key_even_with_commas() {
        let labels = "kuroko.segment.kind=database,kuroko.segment.name=SELECT a, b FROM cards";
        assert_eq!(label_value(labels, "kuroko.segment.kind").as_deref(), Some("database"));
        assert_eq!(
            label_value(labels, "kuroko.segment.name").as_deref(),
            Some("SELECT a, b FROM cards")
        );
        assert_eq!(label_value(labels, "kuroko.outcome"), None);
    }

    #[test]
    fn tables_align_numbers_right_and_cut_long_text() {
        let columns = vec!["txn".to_owned(), "p95".to_owned()];
        let rows = vec![
            vec![Cell::Text("GET /a".into()), Cell::Real(0.123_456_789)],
            vec![Cell::Text("x".repeat(100)), Cell::Real(12.5)],
        ];
        let out = table(&columns, &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[2].ends_with(" 0.123457"), "{out}");
        assert!(lines[3].ends_with("    12.5"), "{out}");
        assert!(lines[3].contains('…') && lines[3].chars().count() < 80, "{out}");
        assert_eq!(lines[4], "(2 rows)");
    }

    #[test]
    fn csv_and_json_quote_what_they_must() {
        let columns = vec!["a".to_owned(), "b".to_owned()];
        let rows = vec![vec![Cell::Text("x, \"y\"".into()), Cell::Real(f64::NAN)]];
        assert_eq!(csv(&columns, &rows), "a,b\n\"x, \"\"y\"\"\",NaN\n");
        assert_eq!(json(&columns, &rows), "[\n  {\"a\":\"x, \\\"y\\\"\",\"b\":null}\n]\n");
    }
}
