//! The embedded store's tables: their DDL ([`SCHEMA`], and the delivery
//! ledger's and alert states' [`DELIVERY_SCHEMA`]), the schema version and
//! the additive migrations that bring an older file up to date.

use rusqlite::Connection;

/// The schema this build writes (2 added the journal, whose progress
/// older builds would not know to replay; 3 added stack traces and trace
/// ids to the error rows, trace links and cumulative streams' states, and
/// so to the journal's records, see `store::pending::LegacyRecord`; 4 added
/// the roll-ups across hosts, `txn_*`, which an older build would not keep
/// up to date).
pub const SCHEMA_VERSION: i64 = 4;

pub(super) const SCHEMA: &str = "
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
-- A request's runs across services (`Store::traces_with_id`).
CREATE INDEX IF NOT EXISTS kept_trace_by_trace ON kept_trace (trace_id);
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
-- Reads of whole hours and days by period (roll-ups across hosts, retention).
CREATE INDEX IF NOT EXISTS histogram_hour_by_hour ON histogram_hour (hour);
CREATE INDEX IF NOT EXISTS histogram_day_by_day ON histogram_day (day);
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
CREATE INDEX IF NOT EXISTS counter_hour_by_hour ON counter_hour (hour);
CREATE INDEX IF NOT EXISTS counter_day_by_day ON counter_day (day);
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

/// The roll-ups across hosts (`sqlite::txn`): one row per transaction
/// series (a series key without its host) and minute, hour or day, the
/// merge of its hosts' rows, so that a read that does not tell hosts apart
/// reads O(transactions) rows. `txn_series.host` is always empty (the reads'
/// filters name it). Keyed like the per-series tables (a read seeks each
/// transaction series' stretch of time), indexed by period for rolling and
/// retention.
pub(super) fn txn_schema() -> String {
    let mut ddl = String::from(
        "CREATE TABLE IF NOT EXISTS txn_series (
             id INTEGER PRIMARY KEY,
             service TEXT NOT NULL, host TEXT NOT NULL DEFAULT '', txn TEXT NOT NULL, feature TEXT NOT NULL,
             kind TEXT NOT NULL, environment TEXT NOT NULL,
             UNIQUE (service, txn, feature, kind, environment)
         );",
    );
    for r in ["minute", "hour", "day"] {
        ddl.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS txn_histogram_{r} (
                 series INTEGER NOT NULL, {r} INTEGER NOT NULL,
                 count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
                 scale INTEGER NOT NULL, zero_count INTEGER NOT NULL, zero_threshold REAL NOT NULL,
                 buckets BLOB NOT NULL, estimated INTEGER NOT NULL,
                 PRIMARY KEY (series, {r})
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS txn_histogram_{r}_by_{r} ON txn_histogram_{r} ({r});
             CREATE TABLE IF NOT EXISTS txn_counter_{r} (
                 series INTEGER NOT NULL, label INTEGER NOT NULL, {r} INTEGER NOT NULL, value REAL NOT NULL,
                 PRIMARY KEY (series, label, {r})
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS txn_counter_{r}_by_{r} ON txn_counter_{r} ({r});"
        ));
    }
    ddl
}

/// Brings an older file up to date; each step is additive and runs once.
pub(super) fn migrate(connection: &Connection) -> Result<(), rusqlite::Error> {
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
pub(super) fn has_column(connection: &Connection, table: &str, column: &str) -> Result<bool, rusqlite::Error> {
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

// The delivery ledger and alert states (`crate::store::state`): small tables
// beside the data, so that a restart neither resends a report nor forgets
// an alert that is firing.

pub(super) const DELIVERY_SCHEMA: &str = "
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

// The error groups' triage (`crate::store::triage`): one row per decision,
// the latest per group (by `seq`) the one in force, so a group's history is
// kept. Created at open by the process that owns the store, and by the
// first decision written by any other (`kuroko errors` beside a reporter).

/// Whether `connection`'s file has table `name`: a file another process
/// owns may have been written by a build without it.
pub(super) fn table_exists(connection: &rusqlite::Connection, name: &str) -> Result<bool, rusqlite::Error> {
    connection.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get(0),
    )
}

// Each service version's first minute (`crate::store::deploys`).
pub(super) const DEPLOYS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deploys (
    service TEXT NOT NULL, environment TEXT NOT NULL, version TEXT NOT NULL, first_minute INTEGER NOT NULL,
    PRIMARY KEY (service, environment, version)
);
";

// When each performance problem was first and last seen
// (`crate::store::sightings`): one row per group.
pub(super) const SIGHTINGS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS problem_seen (
    group_id TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL
);
";

pub(super) const TRIAGE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS error_triage (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL, status TEXT NOT NULL, at INTEGER NOT NULL,
    ignore_until INTEGER, ignore_count INTEGER, team TEXT, by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS error_triage_by_group ON error_triage (group_id, seq);
";
