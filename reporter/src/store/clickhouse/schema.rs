//! The ClickHouse store's tables and views ([`schema`]), the schema
//! version kept in `meta`, and the migrations that bring an older database
//! up to date.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::reads::floor_div;
use super::{now_nanos, quote, ClickHouseStore};
use crate::store::StoreError;

/// The schema this build creates (2: error rows carry stack traces and
/// trace ids, `error_hour_v2` rolls them up, `trace_link` ties them;
/// `stream` keeps cumulative streams' last points and `metric_transaction`
/// the transactions a duration metric counts; 3: histogram and counter
/// minutes carry their transaction series' id, `txn` names them and the
/// `txn_*` tables roll them up across hosts, see [`super::txn`]; 4: those
/// roll-ups are sorted by time first, since their reads take a stretch of
/// time for many transactions, and keep their histograms' buckets as rows,
/// `txn_bucket_*`, which a read sums far faster than `sumMap` states; 5:
/// their views read rows the writer merged across hosts, `txn_*_in`,
/// not every series' minute rows; 6: each series' hour and day buckets are
/// summed maps in `series_bucket_*`, not `sumMap` states, whose merges took
/// a third of ClickHouse's time per block written, see
/// [`ClickHouseStore::migrate_series_buckets`]).
pub(super) const SCHEMA_VERSION: i64 = 6;

/// Each table that retention cuts: its resolution's key column, and how many
/// minutes one of its partitions spans.
pub(super) const PARTITIONED: [(&str, Resolution, i64); 23] = [
    ("histogram_minute", Resolution::Minute, 1_440),
    ("counter_minute", Resolution::Minute, 1_440),
    ("txn_histogram_minute", Resolution::Minute, 1_440),
    ("txn_bucket_minute", Resolution::Minute, 1_440),
    ("txn_counter_minute", Resolution::Minute, 1_440),
    ("txn_histogram_hour", Resolution::Hour, 168 * 60),
    ("txn_bucket_hour", Resolution::Hour, 168 * 60),
    ("txn_counter_hour", Resolution::Hour, 168 * 60),
    ("txn_histogram_day", Resolution::Day, 30 * 1_440),
    ("txn_bucket_day", Resolution::Day, 30 * 1_440),
    ("txn_counter_day", Resolution::Day, 30 * 1_440),
    ("error_minute", Resolution::Minute, 1_440),
    ("kept_trace", Resolution::Minute, 1_440),
    ("histogram_hour", Resolution::Hour, 168 * 60),
    ("series_bucket_hour", Resolution::Hour, 168 * 60),
    ("counter_hour", Resolution::Hour, 168 * 60),
    ("error_hour", Resolution::Hour, 168 * 60),
    ("error_hour_v2", Resolution::Hour, 168 * 60),
    // Links tie errors in hour rows too: kept as long as those.
    ("trace_link", Resolution::Hour, 168 * 60),
    // Problems last seen before hour rows are kept are forgotten.
    ("problem_seen", Resolution::Hour, 168 * 60),
    ("histogram_day", Resolution::Day, 30 * 1_440),
    ("series_bucket_day", Resolution::Day, 30 * 1_440),
    ("counter_day", Resolution::Day, 30 * 1_440),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resolution {
    Minute,
    Hour,
    Day,
}

/// The tables and views, in creation order (`{db}` is the database).
pub(super) fn schema(db: &str) -> Vec<String> {
    // A histogram's scalars as states; its buckets per series in summed
    // maps (`series_bucket_*`), across hosts in rows of their own (below).
    let scalar_state = "scale Int8,
        count_state AggregateFunction(sum, UInt64), sum_state AggregateFunction(sum, Float64),
        min_state AggregateFunction(minIf, Float64, UInt8), max_state AggregateFunction(maxIf, Float64, UInt8),
        zero_count_state AggregateFunction(sum, UInt64), zero_threshold_state AggregateFunction(max, Float64),
        estimated_state AggregateFunction(max, UInt8)";
    let scalar_states = "scale, sumState(count) AS count_state, sumState(sum) AS sum_state,
        minIfState(min, count > 0) AS min_state, maxIfState(max, count > 0) AS max_state,
        sumState(zero_count) AS zero_count_state, maxState(zero_threshold) AS zero_threshold_state,
        maxState(estimated) AS estimated_state";
    let histogram_state =
        format!("{scalar_state}, buckets_state AggregateFunction(sumMap, Array(Int32), Array(UInt64))");
    // `buckets_state` holds the buckets of rows written before schema 6
    // (read with the maps); the views give it an empty state since.
    let histogram_states =
        format!("{scalar_states}, sumMapState(emptyArrayInt32(), emptyArrayUInt64()) AS buckets_state");
    let (hour, day) = (floor_div("minute", 60), floor_div("minute", 1_440));
    let mut statements = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.meta (key String, value String, at UInt64)
             ENGINE = ReplacingMergeTree(at) ORDER BY key"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.series
             (id UInt64, service String, host String, txn String, feature String, kind String, environment String)
             ENGINE = ReplacingMergeTree ORDER BY id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.histogram_minute
             (series_id UInt64, minute Int64, count UInt64, sum Float64, min Float64, max Float64, scale Int8,
              zero_count UInt64, zero_threshold Float64, bucket_index Array(Int32), bucket_count Array(UInt64),
              estimated UInt8, {TXN_ID_COLUMN})
             ENGINE = MergeTree PARTITION BY intDiv(minute, 1440) ORDER BY (series_id, minute)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.histogram_hour (series_id UInt64, hour Int64, {histogram_state})
             ENGINE = AggregatingMergeTree PARTITION BY intDiv(hour, 168) ORDER BY (series_id, hour, scale)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.histogram_day (series_id UInt64, day Int64, {histogram_state})
             ENGINE = AggregatingMergeTree PARTITION BY intDiv(day, 30) ORDER BY (series_id, day, scale)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.histogram_hour_mv TO {db}.histogram_hour AS
             SELECT series_id, {hour} AS hour, {histogram_states}
             FROM {db}.histogram_minute GROUP BY series_id, hour, scale"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.histogram_day_mv TO {db}.histogram_day AS
             SELECT series_id, {day} AS day, {histogram_states}
             FROM {db}.histogram_minute GROUP BY series_id, day, scale"
        ),
        // A series' buckets per hour and day: `SummingMergeTree` sums a
        // nested `…Map` by its first column (the bucket index) as it merges,
        // a tight loop over sorted arrays, where merging `sumMap` states
        // went through a tree of `Field`s.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.series_bucket_hour
             (series_id UInt64, hour Int64, scale Int8, bucketsMap Nested(idx Int32, n UInt64))
             ENGINE = SummingMergeTree PARTITION BY intDiv(hour, 168) ORDER BY (series_id, hour, scale)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.series_bucket_day
             (series_id UInt64, day Int64, scale Int8, bucketsMap Nested(idx Int32, n UInt64))
             ENGINE = SummingMergeTree PARTITION BY intDiv(day, 30) ORDER BY (series_id, day, scale)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.series_bucket_hour_mv TO {db}.series_bucket_hour AS
             SELECT series_id, {hour} AS hour, scale, bucket_index AS `bucketsMap.idx`, bucket_count AS `bucketsMap.n`
             FROM {db}.histogram_minute"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.series_bucket_day_mv TO {db}.series_bucket_day AS
             SELECT series_id, {day} AS day, scale, bucket_index AS `bucketsMap.idx`, bucket_count AS `bucketsMap.n`
             FROM {db}.histogram_minute"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.counter_minute
             (series_id UInt64, name String, labels String, minute Int64, value Float64, {TXN_ID_COLUMN})
             ENGINE = MergeTree PARTITION BY intDiv(minute, 1440) ORDER BY (series_id, name, labels, minute)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.counter_hour
             (series_id UInt64, name String, labels String, hour Int64, value_state AggregateFunction(sum, Float64))
             ENGINE = AggregatingMergeTree PARTITION BY intDiv(hour, 168) ORDER BY (series_id, name, labels, hour)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.counter_day
             (series_id UInt64, name String, labels String, day Int64, value_state AggregateFunction(sum, Float64))
             ENGINE = AggregatingMergeTree PARTITION BY intDiv(day, 30) ORDER BY (series_id, name, labels, day)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.counter_hour_mv TO {db}.counter_hour AS
             SELECT series_id, name, labels, {hour} AS hour, sumState(value) AS value_state
             FROM {db}.counter_minute GROUP BY series_id, name, labels, hour"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.counter_day_mv TO {db}.counter_day AS
             SELECT series_id, name, labels, {day} AS day, sumState(value) AS value_state
             FROM {db}.counter_minute GROUP BY series_id, name, labels, day"
        ),
        // Roll-ups across hosts (schema 3, `super::txn`): per transaction
        // series (the key without its host) and minute, hour and day, filled
        // by views from the minute rows' `txn_id`, as the per-series ones.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.txn
             (id UInt64, service String, txn String, feature String, kind String, environment String)
             ENGINE = ReplacingMergeTree ORDER BY id"
        ),
        // A database of schema 1 gains the last three columns in `migrate`.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.error_minute
             (series_id UInt64, minute Int64, error_type String, message String, location String,
              count UInt64, last_seen UInt64, fingerprint String, {ERROR_MINUTE_V2_COLUMNS})
             ENGINE = MergeTree PARTITION BY intDiv(minute, 1440) ORDER BY (series_id, minute)"
        ),
        // Schema 1 rolled errors up into `error_hour`, keyed without the
        // trace and the stack: a database that has it keeps it, and reads
        // hours before `error_hour_v2_from` there.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.error_hour_v2
             (series_id UInt64, hour Int64, error_type String, message String, location String, fingerprint String,
              trace_id String, stack_hash UInt64,
              count_state AggregateFunction(sum, UInt64), last_seen_state AggregateFunction(max, UInt64),
              first_minute_state AggregateFunction(min, Int64), stacktrace_state AggregateFunction(any, String))
             ENGINE = AggregatingMergeTree PARTITION BY intDiv(hour, 168)
             ORDER BY (series_id, hour, error_type, message, location, fingerprint, trace_id, stack_hash)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.error_hour_v2_mv TO {db}.error_hour_v2 AS
             SELECT series_id, {hour} AS hour, error_type, message, location, fingerprint, trace_id, stack_hash,
                    sumState(count) AS count_state, maxState(last_seen) AS last_seen_state,
                    minState(minute) AS first_minute_state, anyState(stacktrace) AS stacktrace_state
             FROM {db}.error_minute
             GROUP BY series_id, hour, error_type, message, location, fingerprint, trace_id, stack_hash"
        ),
        // Transaction spans of traces whose errors came without a
        // transaction (`store::links`), by week like the hour tables.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.trace_link
             (trace_id String, span_id String, series_id UInt64, minute Int64, start_ns UInt64, end_ns UInt64)
             ENGINE = MergeTree PARTITION BY intDiv(minute, 10080) ORDER BY (trace_id, span_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kept_trace
             (series_id UInt64, hour Int64, trace_id String, start UInt64, duration Float64, spans String,
              written UInt64)
             ENGINE = ReplacingMergeTree(written) PARTITION BY intDiv(hour, 24) ORDER BY (series_id, hour, trace_id)"
        ),
        // Cumulative streams' last points (crate::cumulative): the latest of
        // each, by its time, is what every replica continues from.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.stream (id UInt64, start UInt64, time UInt64, state String)
             ENGINE = ReplacingMergeTree(time) ORDER BY id"
        ),
        // Transactions whose runs a duration metric counts: their runs
        // counted from spans (kind `web.spans`, `job.spans`) are not read.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.metric_transaction
             (service String, host String, txn String, environment String)
             ENGINE = ReplacingMergeTree ORDER BY (service, host, txn, environment)"
        ),
        // One row per claim or recorded outcome; a delivery is the replay of
        // its rows in (server second, writer's nanoseconds, token) order.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.delivery_ledger
             (kind String, target String, period String, event String, holder String, status String,
              attempts UInt32, rounds UInt32, error String, has_error UInt8, late UInt8,
              scheduled_at Int64, claimed_at Int64, finished_at Int64, has_finished UInt8,
              at DateTime, written UInt64, token UInt64)
             ENGINE = MergeTree ORDER BY (kind, target, period, at, written, token)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.alert_state
             (name String, firing UInt8, since Int64, value Float64, has_value UInt8, notified UInt8,
              at DateTime, written UInt64, token UInt64)
             ENGINE = MergeTree ORDER BY (name, at, written, token)"
        ),
        // The error groups' triage (`crate::store::triage`): one row per
        // decision; a group's is its latest in (server second, writer's
        // nanoseconds, token) order.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.error_triage
             (group_id String, status String, at Int64, ignore_until Int64, has_ignore_until UInt8,
              ignore_count UInt64, has_ignore_count UInt8, team String, has_team UInt8, by String,
              written_at DateTime, written UInt64, token UInt64)
             ENGINE = MergeTree ORDER BY (group_id, written_at, written, token)"
        ),
        // Performance problems as seen (`crate::store::sightings`): a row
        // per group and pass that saw it, by the hour of its last seen; a
        // group's first and last seen are its rows' least and greatest.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.problem_seen
             (group_id String, hour Int64, first_seen UInt64, last_seen UInt64)
             ENGINE = MergeTree PARTITION BY intDiv(hour, 168) ORDER BY (group_id, hour)"
        ),
        // Service versions as seen (`crate::store::deploys`): a row per
        // sighting; a version's first minute is its rows' least.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.deploys
             (service String, environment String, version String, first_minute Int64)
             ENGINE = MergeTree ORDER BY (service, environment, version, first_minute)"
        ),
    ];
    // Roll-ups across hosts at each resolution (`txn` above; sorted by time
    // and with bucket rows since schema 4), fed since schema 5 by rows the
    // writer merged across hosts (`writes::ROLLUP_FEEDS`), which are not
    // kept: ClickHouse unrolls a transaction's buckets once per block and
    // minute, not once per host.
    statements.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.txn_histogram_in
             (txn_id UInt64, minute Int64, count UInt64, sum Float64, min Float64, max Float64, scale Int8,
              zero_count UInt64, zero_threshold Float64, bucket_index Array(Int32), bucket_count Array(UInt64),
              estimated UInt8)
             ENGINE = Null"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.txn_counter_in
             (txn_id UInt64, name String, labels String, minute Int64, value Float64)
             ENGINE = Null"
        ),
    ]);
    for (r, key, partition) in [
        ("minute", "minute".to_owned(), "intDiv(minute, 1440)"),
        ("hour", hour, "intDiv(hour, 168)"),
        ("day", day, "intDiv(day, 30)"),
    ] {
        statements.extend([
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.txn_histogram_{r} (txn_id UInt64, {r} Int64, {scalar_state})
                 ENGINE = AggregatingMergeTree PARTITION BY {partition} ORDER BY ({r}, txn_id, scale)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.txn_bucket_{r} ({r} Int64, txn_id UInt64, scale Int8, idx Int32, n UInt64)
                 ENGINE = SummingMergeTree(n) PARTITION BY {partition} ORDER BY ({r}, txn_id, scale, idx)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.txn_counter_{r}
                 (txn_id UInt64, name String, labels String, {r} Int64, value_state AggregateFunction(sum, Float64))
                 ENGINE = AggregatingMergeTree PARTITION BY {partition} ORDER BY ({r}, txn_id, name, labels)"
            ),
            format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.txn_histogram_{r}_mv TO {db}.txn_histogram_{r} AS
                 SELECT txn_id, {key} AS {r}, {scalar_states}
                 FROM {db}.txn_histogram_in GROUP BY txn_id, {r}, scale"
            ),
            format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.txn_bucket_{r}_mv TO {db}.txn_bucket_{r} AS
                 SELECT {key} AS {r}, txn_id, scale, idx, sum(cnt) AS n
                 FROM {db}.txn_histogram_in ARRAY JOIN bucket_index AS idx, bucket_count AS cnt
                 GROUP BY {r}, txn_id, scale, idx"
            ),
            format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.txn_counter_{r}_mv TO {db}.txn_counter_{r} AS
                 SELECT txn_id, name, labels, {key} AS {r}, sumState(value) AS value_state
                 FROM {db}.txn_counter_in GROUP BY txn_id, name, labels, {r}"
            ),
        ]);
    }
    statements
}

/// The column schema 3 added to `histogram_minute` and `counter_minute`:
/// the row's transaction series ([`super::txn::txn_id`]).
pub(super) const TXN_ID_COLUMN: &str = "txn_id UInt64";

/// The columns schema 2 added to `error_minute`.
const ERROR_MINUTE_V2_COLUMNS: &str = "trace_id String, stack_hash UInt64, stacktrace String";

impl ClickHouseStore {
    /// Creates the database, tables and views, or checks that a newer
    /// reporter did not create them; records the schema version.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let db = &self.database;
        self.post(None, format!("CREATE DATABASE IF NOT EXISTS {db}").as_bytes(), false)?;
        self.migrate_error_minute()?;
        self.migrate_txn_columns()?;
        self.migrate_txn_rollups()?;
        self.migrate_txn_feed()?;
        self.migrate_series_buckets()?;
        let statements = schema(db);
        for statement in &statements {
            // Replicas starting together race to create: one retry settles it.
            if self.execute(statement).is_err() {
                self.execute(statement)?;
            }
        }
        self.migrate_error_hours()?;
        let found = self.schema_version()?;
        match found {
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: self.server.clone(),
                found,
                supported: SCHEMA_VERSION,
            }),
            Some(found) if found == SCHEMA_VERSION => Ok(()),
            _ => self.set_meta("schema_version", SCHEMA_VERSION),
        }
    }

    /// The columns of `table`; none when it does not exist.
    pub(super) fn columns(&self, table: &str) -> Result<HashSet<String>, StoreError> {
        #[derive(Deserialize)]
        struct Column {
            name: String,
        }
        let columns: Vec<Column> = self.select(&format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = {}",
            quote(&self.database),
            quote(table)
        ))?;
        Ok(columns.into_iter().map(|c| c.name).collect())
    }

    /// Schema 1's `error_minute` gains the trace id, stack hash and stack
    /// trace (empty in the rows already there), before the views that read
    /// them are created.
    fn migrate_error_minute(&self) -> Result<(), StoreError> {
        let columns = self.columns("error_minute")?;
        if columns.is_empty() || columns.contains("trace_id") {
            return Ok(());
        }
        let added: Vec<String> = ERROR_MINUTE_V2_COLUMNS
            .split(", ")
            .map(|column| format!("ADD COLUMN {column}"))
            .collect();
        let altered = self.execute(&format!("ALTER TABLE error_minute {}", added.join(", ")));
        // Another replica may have added them meanwhile.
        match altered {
            Err(_) if self.columns("error_minute")?.contains("trace_id") => Ok(()),
            other => other,
        }
    }

    /// Brings schema 5's per-series hour and day roll-ups to schema 6's
    /// before the views are created: their views, which kept each hour's
    /// and day's buckets in `sumMap` states, are dropped, so that the
    /// schema creates them anew with empty bucket states, beside the views
    /// that sum the buckets into `series_bucket_*`. The rows already rolled
    /// keep their buckets in their states, which reads add to the maps':
    /// nothing is copied or re-marked. A schema 5 replica still writing
    /// would keep its buckets out of the maps (the views are the
    /// database's, not the replica's); its schema check refuses the
    /// database once it reconnects.
    fn migrate_series_buckets(&self) -> Result<(), StoreError> {
        if self.columns("histogram_minute")?.is_empty() || !self.columns("series_bucket_hour")?.is_empty() {
            return Ok(());
        }
        for view in ["histogram_hour_mv", "histogram_day_mv"] {
            self.execute(&format!("DROP TABLE IF EXISTS {view}"))?;
        }
        tracing::info!(
            database = %self.database,
            "each series' hour and day buckets are now summed maps (schema 6); the hours rolled before keep theirs in their states"
        );
        Ok(())
    }

    /// A database that rolled errors up into schema 1's `error_hour` keeps
    /// reading it for the hours before `error_hour_v2_from` (the first whole
    /// hour after `error_hour_v2_mv` was created, written once); its view
    /// keeps filling it, so those hours stay whole, late rows included.
    fn migrate_error_hours(&self) -> Result<(), StoreError> {
        if self.columns("error_hour")?.is_empty() || self.error_hours_v2_from()?.is_some() {
            return Ok(());
        }
        let minute = i64::try_from(now_nanos() / 60_000_000_000).unwrap_or(i64::MAX);
        self.set_meta("error_hour_v2_from", (minute.div_euclid(60) + 1) * 60)
    }

    /// The first minute `error_hour_v2` holds whole, when schema 1's
    /// `error_hour` holds the hours before (replicas that migrated at once
    /// may each have written one: the latest is safe for all).
    pub(super) fn error_hours_v2_from(&self) -> Result<Option<i64>, StoreError> {
        #[derive(Deserialize)]
        struct From {
            value: i64,
        }
        let rows: Vec<From> = self.select(
            "SELECT max(toInt64(value)) AS value FROM meta WHERE key = 'error_hour_v2_from' HAVING count() > 0",
        )?;
        Ok(rows.first().map(|f| f.value))
    }

    fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        #[derive(Deserialize)]
        struct Version {
            version: i64,
        }
        let rows: Vec<Version> = self.select(
            "SELECT max(toInt64(value)) AS version FROM meta WHERE key = 'schema_version' HAVING count() > 0",
        )?;
        Ok(rows.first().map(|v| v.version))
    }

    pub(super) fn set_meta(&self, key: &str, value: i64) -> Result<(), StoreError> {
        #[derive(Serialize)]
        struct Meta<'a> {
            key: &'a str,
            value: String,
            at: u64,
        }
        self.insert(
            "meta",
            [Meta {
                key,
                value: value.to_string(),
                at: now_nanos(),
            }],
        )
    }
}
