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
//! acknowledged but not yet flushed to the tables (it flushes once the
//! oldest has waited [`FLUSH_EVERY`](super::sqlite::FLUSH_EVERY), five
//! seconds, and on every roll-up pass) are not visible.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::sqlite::SCHEMA_VERSION;

mod functions;
mod output;
mod views;

pub use functions::register_functions;
use output::{Cell, RowWriter};

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
    /// The store is ClickHouse, which answers SQL itself.
    #[error("kuroko sql reads the embedded SQLite store; {server} is ClickHouse, which answers SQL itself: clickhouse-client --host {host} --database {database} (docs/clickhouse.md names its tables)")]
    ClickHouse {
        /// The server, without credentials.
        server: String,
        /// Its host.
        host: String,
        /// The store's database.
        database: String,
    },
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
    if let Some(rest) = name.strip_prefix("clickhouse://") {
        // `user:password@host:port/database?options`: show no credentials.
        let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
        let rest = rest.split('?').next().unwrap_or(rest);
        let (address, database) = rest.split_once('/').unwrap_or((rest, "kuroko"));
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        return Err(SqlError::ClickHouse {
            server: format!("clickhouse://{address}"),
            host: host.to_owned(),
            database: database.to_owned(),
        });
    }
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
    connection.execute_batch(&views::views()).map_err(open_error)?;
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

fn query_error(error: rusqlite::Error) -> SqlError {
    match error {
        rusqlite::Error::MultipleStatement => SqlError::MultipleStatements,
        rusqlite::Error::SqliteFailure(ref e, _) if e.code == ErrorCode::ReadOnly => SqlError::ReadOnly,
        other => SqlError::Query {
            message: other.to_string(),
        },
    }
}
