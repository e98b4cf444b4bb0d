//! The shared store: ClickHouse, over its HTTP interface, for several
//! reporters ingesting at once (`store = "clickhouse://host:8123/kuroko"`).
//!
//! Plain HTTP with `JSONEachRow` (through `ureq`, synchronous like the
//! [`Store`] trait) rather than the `clickhouse` crate, whose schema check
//! needs `RowBinaryWithNamesAndTypes`: that way one build speaks to Debian's
//! ClickHouse 18.16 and to current releases alike, using only SQL both accept
//! (no `Map`, `DateTime64`, `TTL`, query parameters or window functions).
//!
//! **Schema** (created and versioned in `meta` by the reporter on connect):
//! `series` (ReplacingMergeTree; the id is a 64-bit FNV-1a hash of the key,
//! so every replica computes the same id without coordination),
//! `histogram_minute`, `counter_minute`, `error_minute` (MergeTree, one row
//! per written piece, buckets as parallel `Array(Int32)`/`Array(UInt64)`
//! columns) and `kept_trace` (ReplacingMergeTree). Materialised views fill
//! `histogram_hour`/`_day`, `counter_hour`/`_day` and `error_hour`
//! (AggregatingMergeTree of `-State`s, keyed by scale too) at insert time, so
//! roll-ups are always complete, late points included, and no roller runs.
//!
//! **Reads** push the merge down: per stretch of the window (days, hours and
//! minutes, as [`super::plan::plan`] splits it), `sumMap` over bucket indexes
//! per series and scale; then, per series, every part is downscaled in SQL to
//! the coarsest scale present (`bitShiftRight` of the index: a floor, exact
//! for negative indexes too) and summed again. The reporter receives one row
//! per series. Charts' steps ([`Store::histogram_steps`],
//! [`Store::counter_steps`]) are the same query grouped by step as well.
//!
//! **Retention** drops whole partitions (ClickHouse 18.16 has no `TTL`):
//! minute tables by day, hour tables by week, day tables by 30 days; see
//! [`ClickHouseStore::retain`]. **Writes** are group-committed
//! ([`WriteBatching`]): concurrent writers' rows share one INSERT per table,
//! at most every 200 ms by default, so that many small OTLP requests do not
//! make ClickHouse create too many parts. **Durability**: [`Store::write`]
//! returns once the INSERTs holding the batch have been acknowledged by
//! ClickHouse.
//!
//! The **delivery ledger** ([`DeliveryState::ledger_claim`], [`DeliveryState::ledger_record`])
//! lets one of several replicas send each delivery: every claim and every
//! recorded outcome is an event row in `delivery_ledger` stamped with the
//! server's clock; a claim waits a settle delay, reads the delivery's events
//! back and replays them in the server's order, with the embedded store's
//! rules (see `docs/clickhouse.md` for the guarantee and its limits).
//! **Alert states** are rows in `alert_state`, the latest written wins.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::BufRead;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::group_commit::{Gather, GroupCommit};
use super::links::{self, Stacks, StoredLink, TracedError};
use super::plan::{plan, Progress, Stretch, NEVER};
use super::rollup::Retention;
use super::state::{AlertState, DeliveryState, LedgerEntry, LedgerStatus, LEASE_SECONDS};
use super::{Batch, ErrorSummary, Filter, SeriesKey, Store, StoreError, TracePoint, TRACES_PER_HOUR};
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;

/// The schema this build creates (2: error rows carry stack traces and
/// trace ids, `error_hour_v2` rolls them up, `trace_link` ties them;
/// `stream` keeps cumulative streams' last points and `metric_transaction`
/// the transactions a duration metric counts).
pub const SCHEMA_VERSION: i64 = 2;

/// How long [`DeliveryState::ledger_claim`] waits between inserting its claim and
/// reading the delivery's events back, by default: longer than any competing INSERT takes.
pub const DEFAULT_CLAIM_SETTLE: Duration = Duration::from_secs(2);

/// The shortest settle delay used: claims are stamped with the server's
/// `now()`, in whole seconds, so waiting at least a second guarantees that a
/// claim made after the read-back sorts after the claim being settled.
const MIN_CLAIM_SETTLE: Duration = Duration::from_secs(1);

/// Roll-ups are complete at once (materialised views): "rolled until the end of time".
const ALWAYS: i64 = i64::MAX / 4;

/// Floor division of a minute column, for roll-up keys (`intDiv` truncates).
fn floor_div(column: &str, by: i64) -> String {
    format!("intDiv({column}, {by}) - (modulo({column}, {by}) < 0)")
}

/// The first minute of the step of `step` minutes holding a row of a
/// `resolution` table (floored, also before 1970); a constant 0 without steps.
fn step_start(resolution: &str, step: Option<i64>) -> String {
    let Some(step) = step else {
        return "toInt64(0)".to_owned();
    };
    let minutes = match resolution {
        "day" => 1_440,
        "hour" => 60,
        _ => 1,
    };
    let minute = format!("({resolution} * {minutes})");
    format!("(({}) * {step})", floor_div(&minute, step))
}

/// Each table that retention cuts: its resolution's key column, and how many
/// minutes one of its partitions spans.
const PARTITIONED: [(&str, Resolution, i64); 11] = [
    ("histogram_minute", Resolution::Minute, 1_440),
    ("counter_minute", Resolution::Minute, 1_440),
    ("error_minute", Resolution::Minute, 1_440),
    ("kept_trace", Resolution::Minute, 1_440),
    ("histogram_hour", Resolution::Hour, 168 * 60),
    ("counter_hour", Resolution::Hour, 168 * 60),
    ("error_hour", Resolution::Hour, 168 * 60),
    ("error_hour_v2", Resolution::Hour, 168 * 60),
    // Links tie errors in hour rows too: kept as long as those.
    ("trace_link", Resolution::Hour, 168 * 60),
    ("histogram_day", Resolution::Day, 30 * 1_440),
    ("counter_day", Resolution::Day, 30 * 1_440),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Minute,
    Hour,
    Day,
}

/// The tables and views, in creation order (`{db}` is the database).
fn schema(db: &str) -> Vec<String> {
    let histogram_state = "scale Int8,
        count_state AggregateFunction(sum, UInt64), sum_state AggregateFunction(sum, Float64),
        min_state AggregateFunction(minIf, Float64, UInt8), max_state AggregateFunction(maxIf, Float64, UInt8),
        zero_count_state AggregateFunction(sum, UInt64), zero_threshold_state AggregateFunction(max, Float64),
        estimated_state AggregateFunction(max, UInt8),
        buckets_state AggregateFunction(sumMap, Array(Int32), Array(UInt64))";
    let histogram_states = "scale, sumState(count) AS count_state, sumState(sum) AS sum_state,
        minIfState(min, count > 0) AS min_state, maxIfState(max, count > 0) AS max_state,
        sumState(zero_count) AS zero_count_state, maxState(zero_threshold) AS zero_threshold_state,
        maxState(estimated) AS estimated_state, sumMapState(bucket_index, bucket_count) AS buckets_state";
    let (hour, day) = (floor_div("minute", 60), floor_div("minute", 1_440));
    vec![
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
              estimated UInt8)
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
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.counter_minute
             (series_id UInt64, name String, labels String, minute Int64, value Float64)
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
    ]
}

/// The columns schema 2 added to `error_minute`.
const ERROR_MINUTE_V2_COLUMNS: &str = "trace_id String, stack_hash UInt64, stacktrace String";

/// The ClickHouse store; see the [module documentation](self).
pub struct ClickHouseStore {
    agent: ureq::Agent,
    /// `http://host:port/`.
    endpoint: String,
    /// `host:port/database`, for messages (never the password).
    server: String,
    database: String,
    authorization: Option<String>,
    /// Series this process has written to `series`.
    known: Mutex<HashSet<u64>>,
    /// Series this process has written to `metric_transaction`.
    metric_series: Mutex<HashSet<u64>>,
    claim_settle: Duration,
    /// Concurrent writes gathered into shared INSERTs.
    group: GroupCommit<Encoded, String>,
}

/// How [`Store::write`] gathers concurrent writes into shared INSERTs (one
/// per table): a round of INSERTs starts at most every `interval`, or as
/// soon as the previous round is done once `max_rows` rows wait. A write
/// returns once the round holding its rows is acknowledged. Set in the
/// store's URL (`?batch_ms=200&batch_rows=50000`) or with
/// [`ClickHouseStore::with_write_batching`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBatching {
    /// The least time between the starts of two rounds of INSERTs. Zero
    /// sends each write at once, unless a round is under way: the writes
    /// that arrive meanwhile still share the next one.
    pub interval: Duration,
    /// Rows (histogram, counter, error and trace points) after which a
    /// round goes without waiting for `interval`.
    pub max_rows: usize,
}

impl Default for WriteBatching {
    /// 200 ms and 50,000 rows: five rounds a second per reporter at most
    /// (ClickHouse wants about one INSERT per second per table, of
    /// thousands of rows), and a wait of 200 ms at most for a request.
    fn default() -> Self {
        WriteBatching {
            interval: Duration::from_millis(200),
            max_rows: 50_000,
        }
    }
}

/// The tables a batch's points go to, in the order they are inserted.
const DATA_TABLES: [&str; 6] = [
    "histogram_minute",
    "counter_minute",
    "error_minute",
    "kept_trace",
    "stream",
    "metric_transaction",
];

/// One or more batches, as `JSONEachRow` rows ready to insert.
#[derive(Default)]
struct Encoded {
    /// Points (not series).
    rows: usize,
    /// New series by id, inserted before the points that name them.
    series: BTreeMap<u64, Vec<u8>>,
    /// Rows per table of [`DATA_TABLES`].
    tables: [Vec<u8>; DATA_TABLES.len()],
    /// Trace links, to insert after the errors (see [`LinkRow`]).
    links: Vec<LinkRow>,
    /// Series whose `metric_transaction` rows these are.
    metric_series: Vec<u64>,
}

impl Gather for Encoded {
    fn rows(&self) -> usize {
        self.rows
    }

    fn gather(&mut self, other: Self) {
        self.rows += other.rows;
        self.series.extend(other.series);
        for (table, rows) in self.tables.iter_mut().zip(other.tables) {
            table.extend_from_slice(&rows);
        }
        self.links.extend(other.links);
        self.metric_series.extend(other.metric_series);
    }
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The series id: FNV-1a (64 bits) of the key's fields, each followed by a
/// 0xFF byte (never in UTF-8, so fields cannot run into each other). Stored
/// in ClickHouse: it must never change.
pub fn series_id(key: &SeriesKey) -> u64 {
    crate::stable_hash::fnv1a64(&[
        key.service.as_bytes(),
        key.host.as_bytes(),
        key.transaction.as_bytes(),
        key.feature.as_bytes(),
        key.kind.as_bytes(),
        key.environment.as_bytes(),
    ])
}

/// `s` as a ClickHouse string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// ` AND series_id IN (...)` for a filter, or nothing when it matches all.
fn series_filter(filter: &Filter) -> String {
    let conditions = key_conditions(filter);
    if conditions.is_empty() {
        String::new()
    } else {
        format!(
            " AND series_id IN (SELECT id FROM series WHERE {})",
            conditions.join(" AND ")
        )
    }
}

/// The conditions on `series` of a filter. They also leave out the runs
/// counted from spans of a transaction whose runs a duration metric counts
/// (one source of truth per run: `docs/otlp-schema.md`).
fn key_conditions(filter: &Filter) -> Vec<String> {
    let mut conditions: Vec<String> = [
        ("service", &filter.service),
        ("host", &filter.host),
        ("txn", &filter.transaction),
        ("feature", &filter.feature),
        ("environment", &filter.environment),
    ]
    .into_iter()
    .filter_map(|(column, value)| value.as_ref().map(|v| format!("{column} = {}", quote(v))))
    .collect();
    conditions.push(
        "NOT (endsWith(kind, '.spans') AND (service, host, txn, environment) IN
            (SELECT service, host, txn, environment FROM metric_transaction))"
            .to_owned(),
    );
    conditions
}

/// Whether series of `kind` hold runs counted from spans.
fn is_span_counted(kind: &str) -> bool {
    kind.ends_with(super::SPAN_COUNTED)
}

/// A finite float for JSON (serde_json writes NaN and infinities as null).
fn finite(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// Buckets as [`Histogram::decode_buckets`] reads them: pairs of varints,
/// the zigzagged index delta then the count.
fn bucket_blob(indexes: &[i64], counts: &[u64]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    let mut out = Vec::with_capacity(indexes.len() * 3);
    let mut previous = 0i64;
    for (&index, &count) in indexes.iter().zip(counts) {
        let delta = index - previous;
        previous = index;
        varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
        varint(&mut out, count);
    }
    out
}

#[derive(Serialize)]
struct StreamRow {
    id: u64,
    start: u64,
    time: u64,
    /// The state's postcard bytes, base64: JSON strings hold text.
    state: String,
}

#[derive(Serialize)]
struct MetricTransactionRow<'a> {
    service: &'a str,
    host: &'a str,
    txn: &'a str,
    environment: &'a str,
}

#[derive(Serialize)]
struct SeriesRow<'a> {
    id: u64,
    service: &'a str,
    host: &'a str,
    txn: &'a str,
    feature: &'a str,
    kind: &'a str,
    environment: &'a str,
}

#[derive(Deserialize)]
struct SeriesOut {
    id: u64,
    service: String,
    host: String,
    txn: String,
    feature: String,
    kind: String,
    environment: String,
}

#[derive(Serialize)]
struct HistogramRow {
    series_id: u64,
    minute: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    bucket_index: Vec<i32>,
    bucket_count: Vec<u64>,
    estimated: u8,
}

#[derive(Deserialize)]
struct HistogramOut {
    series_id: u64,
    /// The step's first minute (0 when the window is not cut in steps).
    #[serde(default)]
    step_start: i64,
    scale: i32,
    n: u64,
    total: f64,
    lo: f64,
    hi: f64,
    zeros: u64,
    zt: f64,
    est: u8,
    idx: Vec<i64>,
    cnt: Vec<u64>,
}

#[derive(Serialize)]
struct CounterRow<'a> {
    series_id: u64,
    name: &'a str,
    labels: &'a str,
    minute: i64,
    value: f64,
}

#[derive(Deserialize)]
struct CounterStepOut {
    series_id: u64,
    labels: String,
    step_start: i64,
    total: f64,
}

#[derive(Serialize)]
struct ErrorRow<'a> {
    series_id: u64,
    minute: i64,
    error_type: &'a str,
    message: &'a str,
    location: &'a str,
    count: u64,
    last_seen: u64,
    fingerprint: &'a str,
    trace_id: &'a str,
    stack_hash: u64,
    stacktrace: &'a str,
}

#[derive(Deserialize)]
struct ErrorOut {
    series_id: u64,
    error_type: String,
    message: String,
    location: String,
    fingerprint: String,
    trace_id: String,
    stack_hash: u64,
    stacktrace: String,
    total: u64,
    first_minute: i64,
    last_seen: u64,
}

/// A trace link waiting for its round of INSERTs, which keeps it only when
/// its request failed or an error of its trace waits for it.
#[derive(Clone, Serialize)]
struct LinkRow {
    trace_id: String,
    span_id: String,
    series_id: u64,
    minute: i64,
    start_ns: u64,
    end_ns: u64,
    #[serde(skip)]
    failed: bool,
}

#[derive(Deserialize)]
struct LinkOut {
    trace_id: String,
    series_id: u64,
    start_ns: u64,
    end_ns: u64,
}

#[derive(Serialize)]
struct TraceRow<'a> {
    series_id: u64,
    hour: i64,
    trace_id: &'a str,
    start: u64,
    duration: f64,
    spans: &'a str,
    written: u64,
}

#[derive(Deserialize)]
struct TraceOut {
    series_id: u64,
    trace_id: String,
    start: u64,
    duration: f64,
    spans: String,
}

/// One row of `delivery_ledger`: a claim (`event = 'claim'`: `holder`
/// claimed at `claimed_at`, the caller's `now`) or a recorded outcome
/// (`event = 'record'`: the whole entry).
#[derive(Clone, Debug, Deserialize)]
struct LedgerEvent {
    kind: String,
    target: String,
    period: String,
    event: String,
    holder: String,
    status: String,
    attempts: u32,
    rounds: u32,
    error: String,
    has_error: u8,
    late: u8,
    scheduled_at: i64,
    claimed_at: i64,
    finished_at: i64,
    has_finished: u8,
    token: u64,
}

/// The columns of `delivery_ledger` read back, in replay order.
const LEDGER_COLUMNS: &str = "kind, target, period, event, holder, status, attempts, rounds, error, has_error, late,
     scheduled_at, claimed_at, finished_at, has_finished, token";
const LEDGER_ORDER: &str = "ORDER BY kind, target, period, at, written, token";

#[derive(Deserialize)]
struct AlertOut {
    firing: u8,
    since: i64,
    value: f64,
    has_value: u8,
    notified: u8,
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl ClickHouseStore {
    /// True when `location` names a ClickHouse store (`clickhouse://...`)
    /// rather than a file.
    pub fn is_url(location: &str) -> bool {
        location.starts_with("clickhouse://")
    }

    /// Connects to `clickhouse://[user[:password]@]host[:port]/database`
    /// (port 8123 by default; the database is created if missing), then
    /// creates or checks the schema. `?batch_ms=N&batch_rows=M` after the
    /// database sets [`WriteBatching`] (default 200 ms, 50,000 rows).
    pub fn connect(url: &str) -> Result<ClickHouseStore, StoreError> {
        let invalid = |reason: &'static str| StoreError::Url {
            url: redact(url),
            reason,
        };
        let rest = url
            .strip_prefix("clickhouse://")
            .ok_or(invalid("expected clickhouse://host:8123/database"))?;
        let (authority, database) = rest
            .split_once('/')
            .ok_or(invalid("no database: expected clickhouse://host:8123/database"))?;
        let (database, options) = database.split_once('?').unwrap_or((database, ""));
        let batching = write_batching(options).map_err(invalid)?;
        let database = database.trim_end_matches('/');
        if database.is_empty()
            || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || database.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(invalid("the database name must be letters, digits and _"));
        }
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (Some(credentials), host),
            None => (None, authority),
        };
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(invalid("no host: expected clickhouse://host:8123/database"));
        }
        let host = if host.contains(':') && !host.ends_with(']') {
            host.to_owned()
        } else {
            format!("{host}:8123")
        };
        let authorization = credentials.map(|credentials| {
            use base64::Engine;
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent();
        let store = ClickHouseStore {
            agent,
            endpoint: format!("http://{host}/"),
            server: format!("{host}/{database}"),
            database: database.to_owned(),
            authorization,
            known: Mutex::new(HashSet::new()),
            metric_series: Mutex::new(HashSet::new()),
            claim_settle: DEFAULT_CLAIM_SETTLE,
            group: GroupCommit::new(batching.interval, batching.max_rows),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Sets how long [`DeliveryState::ledger_claim`] waits before reading claims
    /// back (at least one second is waited whatever is set).
    pub fn with_claim_settle(mut self, settle: Duration) -> Self {
        self.claim_settle = settle;
        self
    }

    /// Sets how concurrent writes are gathered into shared INSERTs.
    pub fn with_write_batching(mut self, batching: WriteBatching) -> Self {
        self.group = GroupCommit::new(batching.interval, batching.max_rows);
        self
    }

    /// The database the store uses.
    pub fn database(&self) -> &str {
        &self.database
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError::ClickHouse {
            server: self.server.clone(),
            message: message.into(),
        }
    }

    /// Creates the database, tables and views, or checks that a newer
    /// reporter did not create them; records the schema version.
    fn migrate(&self) -> Result<(), StoreError> {
        let db = &self.database;
        self.post(None, format!("CREATE DATABASE IF NOT EXISTS {db}").as_bytes(), false)?;
        self.migrate_error_minute()?;
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
    fn columns(&self, table: &str) -> Result<HashSet<String>, StoreError> {
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
    fn error_hours_v2_from(&self) -> Result<Option<i64>, StoreError> {
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

    fn set_meta(&self, key: &str, value: i64) -> Result<(), StoreError> {
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

    /// Sends one statement; `query` goes in the URL (for an INSERT whose
    /// rows are `body`), else `body` is the statement.
    fn post(&self, query: Option<&str>, body: &[u8], in_database: bool) -> Result<ureq::Body, StoreError> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .query("output_format_json_quote_64bit_integers", "0");
        if in_database {
            request = request.query("database", &self.database);
        }
        if let Some(query) = query {
            request = request.query("query", query);
        } else {
            // The status then tells whether the whole SELECT succeeded.
            request = request.query("wait_end_of_query", "1");
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request
            .send(body)
            .map_err(|e| self.error(format!("cannot reach the server: {e}")))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let text = body
                .with_config()
                .limit(64 << 10)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            let text: String = text.trim().chars().take(600).collect();
            return Err(self.error(format!("HTTP {}: {text}", status.as_u16())));
        }
        Ok(body)
    }

    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.post(None, sql.as_bytes(), true).map(drop)
    }

    /// Runs a SELECT, reading its `JSONEachRow` rows.
    fn select<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let body = self.post(None, format!("{sql} FORMAT JSONEachRow").as_bytes(), true)?;
        let reader = std::io::BufReader::new(body.into_with_config().reader());
        let mut rows = Vec::new();
        for line in reader.lines() {
            let line = line.map_err(|e| self.error(format!("reading an answer: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let row = serde_json::from_str(&line).map_err(|e| {
                let shown: String = line.chars().take(300).collect();
                self.error(format!("unexpected answer ({e}): {shown}"))
            })?;
            rows.push(row);
        }
        Ok(rows)
    }

    /// Inserts rows in one `INSERT ... FORMAT JSONEachRow`.
    fn insert<T: Serialize>(&self, table: &str, rows: impl IntoIterator<Item = T>) -> Result<(), StoreError> {
        let mut body = Vec::new();
        self.encode(&mut body, rows)?;
        self.insert_encoded(table, &body)
    }

    /// Appends rows to `body` as `JSONEachRow`.
    fn encode<T: Serialize>(&self, body: &mut Vec<u8>, rows: impl IntoIterator<Item = T>) -> Result<(), StoreError> {
        for row in rows {
            serde_json::to_writer(&mut *body, &row).map_err(|e| self.error(format!("encoding a row: {e}")))?;
            body.push(b'\n');
        }
        Ok(())
    }

    /// Inserts `JSONEachRow` rows (nothing when there are none).
    fn insert_encoded(&self, table: &str, body: &[u8]) -> Result<(), StoreError> {
        if body.is_empty() {
            return Ok(());
        }
        let query = format!("INSERT INTO {table} FORMAT JSONEachRow");
        self.post(Some(&query), body, true).map(drop)
    }

    /// Encodes a batch: its points, and its series this process has not
    /// written yet. Done by each writer, outside the group's lock.
    fn encode_batch(&self, batch: &Batch) -> Result<Encoded, StoreError> {
        let mut out = Encoded {
            rows: batch.len(),
            ..Encoded::default()
        };
        {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let keys = batch
                .histograms
                .iter()
                .map(|p| &*p.key)
                .chain(batch.counters.iter().map(|p| &*p.key))
                .chain(batch.errors.iter().map(|p| &p.key))
                .chain(batch.traces.iter().map(|p| &p.key))
                .chain(batch.links.iter().map(|l| &l.key));
            for key in keys {
                let id = series_id(key);
                if !known.contains(&id) && !out.series.contains_key(&id) {
                    let mut row = Vec::new();
                    self.encode(
                        &mut row,
                        [SeriesRow {
                            id,
                            service: &key.service,
                            host: &key.host,
                            txn: &key.transaction,
                            feature: &key.feature,
                            kind: &key.kind,
                            environment: &key.environment,
                        }],
                    )?;
                    out.series.insert(id, row);
                }
            }
        }
        let [histograms, counters, errors, traces, streams, metric_transactions] = &mut out.tables;
        // One row per series and minute of the batch (an SDK sends a point
        // per outcome; a hostile one thousands), saturated at 2^49 runs:
        // `UInt64` sums over a series' rows wrap, so their rows stay few and
        // bounded (2,100 points of 2^53 runs in one request wrapped).
        let mut merged: HashMap<(u64, i64), std::borrow::Cow<'_, Histogram>> = HashMap::new();
        for p in &batch.histograms {
            match merged.entry((series_id(&p.key), p.minute)) {
                std::collections::hash_map::Entry::Occupied(mut row) => row.get_mut().to_mut().merge(&p.histogram),
                std::collections::hash_map::Entry::Vacant(row) => {
                    row.insert(std::borrow::Cow::Borrowed(&p.histogram));
                }
            }
        }
        self.encode(
            histograms,
            merged.iter().map(|(&(series_id, minute), h)| {
                let h = h.for_store();
                let (bucket_index, bucket_count) = h.iter_buckets().unzip();
                HistogramRow {
                    series_id,
                    minute,
                    count: h.count,
                    sum: finite(h.sum),
                    min: if h.count > 0 { finite(h.min) } else { 0.0 },
                    max: if h.count > 0 { finite(h.max) } else { 0.0 },
                    scale: h.scale,
                    zero_count: h.zero_count,
                    zero_threshold: finite(h.zero_threshold),
                    bucket_index,
                    bucket_count,
                    estimated: u8::from(h.estimated),
                }
            }),
        )?;
        self.encode(
            counters,
            batch.counters.iter().map(|p| CounterRow {
                series_id: series_id(&p.key),
                name: &p.name,
                labels: &p.labels,
                minute: p.minute,
                value: finite(p.value),
            }),
        )?;
        self.encode(
            errors,
            batch.errors.iter().map(|p| ErrorRow {
                series_id: series_id(&p.key),
                minute: p.minute,
                error_type: &p.error_type,
                message: &p.message,
                location: &p.location,
                count: p.count,
                last_seen: p.last_seen,
                fingerprint: &p.fingerprint,
                trace_id: &p.trace_id,
                stack_hash: links::stack_hash(&p.stacktrace),
                stacktrace: &p.stacktrace,
            }),
        )?;
        out.links = batch
            .links
            .iter()
            .map(|l| LinkRow {
                trace_id: l.trace_id.clone(),
                span_id: l.span_id.clone(),
                series_id: series_id(&l.key),
                minute: (l.end / 60_000_000_000) as i64,
                start_ns: l.start,
                end_ns: l.end,
                failed: l.failed,
            })
            .collect();
        let written = now_nanos();
        self.encode(
            traces,
            batch.traces.iter().map(|p| TraceRow {
                series_id: series_id(&p.key),
                hour: (p.start / 3_600_000_000_000) as i64,
                trace_id: &p.trace_id,
                start: p.start,
                duration: finite(p.duration),
                spans: &p.spans,
                written,
            }),
        )?;
        self.encode(
            streams,
            batch.streams.iter().map(|(id, state)| StreamRow {
                id: *id,
                start: state.start,
                time: state.time,
                state: BASE64.encode(state.to_bytes()),
            }),
        )?;
        // Noted as registered once inserted (`insert_group`): a failed write
        // retries them.
        let registered = self.metric_series.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<MetricTransactionRow<'_>> = Vec::new();
        for p in batch.histograms.iter().filter(|p| !is_span_counted(&p.key.kind)) {
            let id = series_id(&p.key);
            if !registered.contains(&id) && !out.metric_series.contains(&id) {
                out.metric_series.push(id);
                rows.push(MetricTransactionRow {
                    service: &p.key.service,
                    host: &p.key.host,
                    txn: &p.key.transaction,
                    environment: &p.key.environment,
                });
            }
        }
        drop(registered);
        self.encode(metric_transactions, rows)?;
        Ok(out)
    }

    /// Sends one group's rows: its new series first (so that a point never
    /// names a series that is not stored), then one INSERT per table.
    fn insert_group(&self, group: Encoded) -> Result<(), StoreError> {
        let series: Vec<u8> = group.series.values().flatten().copied().collect();
        self.insert_encoded("series", &series)?;
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(group.series.keys());
        for (table, rows) in DATA_TABLES.iter().zip(&group.tables) {
            self.insert_encoded(table, rows)?;
        }
        self.metric_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(&group.metric_series);
        let links = self.links_waited_for(group.links)?;
        self.insert("trace_link", &links)
    }

    /// The links of `links` to keep: those of failed requests, and those of
    /// traces an error waits for (this round's errors are stored already).
    /// Errors come minutes at most before their request's spans: the search
    /// reads the days around the links, not the whole table.
    fn links_waited_for(&self, links: Vec<LinkRow>) -> Result<Vec<LinkRow>, StoreError> {
        let (mut kept, others): (Vec<LinkRow>, Vec<LinkRow>) = links.into_iter().partition(|l| l.failed);
        if others.is_empty() {
            return Ok(kept);
        }
        let from = others.iter().map(|l| l.minute).min().unwrap_or_default() - 60;
        let to = others.iter().map(|l| l.minute).max().unwrap_or_default() + 60;
        let mut traces: Vec<String> = others.iter().map(|l| quote(&l.trace_id)).collect();
        traces.sort_unstable();
        traces.dedup();
        #[derive(Deserialize)]
        struct Waiting {
            trace_id: String,
        }
        let waiting: HashSet<String> = self
            .select::<Waiting>(&format!(
                "SELECT DISTINCT trace_id FROM error_minute
                 WHERE minute >= {from} AND minute <= {to} AND trace_id IN ({})",
                traces.join(", ")
            ))?
            .into_iter()
            .map(|w| w.trace_id)
            .collect();
        kept.extend(others.into_iter().filter(|l| waiting.contains(&l.trace_id)));
        Ok(kept)
    }

    /// Series matching `filter`, by id.
    fn keys(&self, filter: &Filter) -> Result<HashMap<u64, SeriesKey>, StoreError> {
        let conditions = key_conditions(filter);
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let rows: Vec<SeriesOut> = self.select(&format!(
            "SELECT DISTINCT id, service, host, txn, feature, kind, environment FROM series{filter}"
        ))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    SeriesKey {
                        service: r.service,
                        host: r.host,
                        transaction: r.txn,
                        feature: r.feature,
                        kind: r.kind,
                        environment: r.environment,
                    },
                )
            })
            .collect())
    }

    /// The window split into day, hour and minute stretches; edges older
    /// than what retention kept are widened, as in the embedded store.
    fn plan(&self, from: i64, to: i64, days: bool) -> Result<Vec<Stretch>, StoreError> {
        let (minutes_from, hours_from) = self.kept_from()?;
        Ok(plan(
            from,
            to,
            Progress {
                hours_until: ALWAYS,
                days_until: if days { ALWAYS } else { NEVER },
                minutes_from,
                hours_from: if days { hours_from } else { NEVER },
            },
        ))
    }

    /// The window split for steps of `step` minutes, as the embedded store
    /// splits it: day rows only when a step holds whole days, hour rows only
    /// when it holds whole hours, so that no row straddles two steps.
    fn step_plan(&self, from: i64, to: i64, step: i64) -> Result<Vec<Stretch>, StoreError> {
        let (minutes_from, hours_from) = self.kept_from()?;
        let rolled = |period: i64| {
            if step % period == 0 {
                ALWAYS
            } else {
                NEVER
            }
        };
        Ok(plan(
            from,
            to,
            Progress {
                hours_until: rolled(60),
                days_until: rolled(1_440),
                minutes_from,
                hours_from,
            },
        ))
    }

    /// The first minute retention kept at minute and at hour resolution.
    fn kept_from(&self) -> Result<(i64, i64), StoreError> {
        #[derive(Deserialize)]
        struct Kept {
            key: String,
            value: i64,
        }
        let kept: Vec<Kept> = self.select(
            "SELECT key, max(toInt64(value)) AS value FROM meta
             WHERE key IN ('minutes_kept_from', 'hours_kept_from') GROUP BY key",
        )?;
        let kept_from = |key: &str| kept.iter().find(|k| k.key == key).map_or(NEVER, |k| k.value);
        Ok((kept_from("minutes_kept_from"), kept_from("hours_kept_from")))
    }

    /// Drops the partitions past `retention` at `now_minute` (unix minutes):
    /// minute tables and kept traces by whole days, hour tables by whole
    /// weeks, day tables by 30 days; returns how many. Readers are told
    /// first (in `meta`), so that they read coarser rows from then on. Safe
    /// to run from every replica at once.
    pub fn retain(&self, retention: &Retention, now_minute: i64) -> Result<usize, StoreError> {
        let cut = |resolution: Resolution| match resolution {
            Resolution::Minute => now_minute - retention.minute_days * 1_440,
            Resolution::Hour => now_minute - retention.hour_days * 1_440,
            Resolution::Day => now_minute - retention.day_days * 1_440,
        };
        self.set_meta("minutes_kept_from", cut(Resolution::Minute))?;
        self.set_meta("hours_kept_from", cut(Resolution::Hour))?;
        #[derive(Deserialize)]
        struct Part {
            table: String,
            partition: String,
        }
        let parts: Vec<Part> = self.select(&format!(
            "SELECT DISTINCT table, partition FROM system.parts WHERE database = {} AND active",
            quote(&self.database)
        ))?;
        let mut dropped = 0;
        for part in parts {
            let Some(&(table, resolution, span)) = PARTITIONED.iter().find(|(t, _, _)| *t == part.table) else {
                continue;
            };
            let Ok(partition) = part.partition.parse::<i64>() else {
                continue;
            };
            if partition.saturating_add(1).saturating_mul(span) <= cut(resolution) {
                self.execute(&format!("ALTER TABLE {table} DROP PARTITION {partition}"))?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// One stretch's histograms per series, step (see [`step_start`]) and scale.
    fn histogram_stretch(stretch: &Stretch, filter: &str, step: Option<i64>) -> String {
        let (from, to) = (stretch.from, stretch.to);
        let start = step_start(stretch.resolution, step);
        match stretch.resolution {
            "minute" => format!(
                "SELECT series_id, {start} AS step_start, scale, sum(count) AS n, sum(sum) AS total, minIf(min, count > 0) AS lo,
                        maxIf(max, count > 0) AS hi, sum(zero_count) AS zeros, max(zero_threshold) AS zt,
                        max(estimated) AS est, sumMap(bucket_index, bucket_count) AS m,
                        tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
                 FROM histogram_minute WHERE minute >= {from} AND minute < {to}{filter}
                 GROUP BY series_id, step_start, scale"
            ),
            r => format!(
                "SELECT series_id, {start} AS step_start, scale, sumMerge(count_state) AS n, sumMerge(sum_state) AS total,
                        minIfMerge(min_state) AS lo, maxIfMerge(max_state) AS hi, sumMerge(zero_count_state) AS zeros,
                        maxMerge(zero_threshold_state) AS zt, maxMerge(estimated_state) AS est,
                        sumMapMerge(buckets_state) AS m, tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
                 FROM histogram_{r} WHERE {r} >= {from} AND {r} < {to}{filter}
                 GROUP BY series_id, step_start, scale"
            ),
        }
    }

    /// Counter `name` summed per series matching `filter` and label set
    /// (and per step of `step` minutes, when given; else the step start is
    /// 0) over `stretches`, in one query.
    fn merged_counters(
        &self,
        filter: &Filter,
        name: &str,
        stretches: &[Stretch],
        step: Option<i64>,
    ) -> Result<BTreeMap<(SeriesKey, String, i64), f64>, StoreError> {
        let series = series_filter(filter);
        let name = quote(name);
        let selects: Vec<String> = stretches
            .iter()
            .map(|s| {
                let (r, a, b) = (s.resolution, s.from, s.to);
                let value = if r == "minute" {
                    "sum(value)"
                } else {
                    "sumMerge(value_state)"
                };
                let start = step_start(r, step);
                format!(
                    "SELECT series_id, labels, {start} AS step_start, {value} AS v FROM counter_{r}
                     WHERE name = {name} AND {r} >= {a} AND {r} < {b}{series}
                     GROUP BY series_id, labels, step_start"
                )
            })
            .collect();
        if selects.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows: Vec<CounterStepOut> = self.select(&format!(
            "SELECT series_id, labels, step_start, sum(v) AS total FROM ({})
             GROUP BY series_id, labels, step_start",
            selects.join(" UNION ALL ")
        ))?;
        let keys = self.keys(filter)?;
        let mut totals: BTreeMap<(SeriesKey, String, i64), f64> = BTreeMap::new();
        for row in rows {
            if let Some(key) = keys.get(&row.series_id) {
                *totals.entry((key.clone(), row.labels, row.step_start)).or_default() += row.total;
            }
        }
        Ok(totals)
    }

    /// One histogram per series matching `filter` (and per step of `step`
    /// minutes, when given) over `stretches`, merged in one query: every part
    /// downscaled to the coarsest scale of its series and step, then summed.
    fn merged_histograms(
        &self,
        filter: &Filter,
        stretches: &[Stretch],
        step: Option<i64>,
    ) -> Result<BTreeMap<(SeriesKey, i64), Histogram>, StoreError> {
        let series = series_filter(filter);
        let stretches: Vec<String> = stretches
            .iter()
            .map(|s| Self::histogram_stretch(s, &series, step))
            .collect();
        if stretches.is_empty() {
            return Ok(BTreeMap::new());
        }
        let p = |i: usize| format!("tupleElement(p, {i})");
        let sql = format!(
            "SELECT series_id, step_start, min_scale AS scale, sum({n}) AS n, sum({total}) AS total,
                    minIf({lo}, {n} > 0) AS lo, maxIf({hi}, {n} > 0) AS hi, sum({zeros}) AS zeros,
                    max({zt}) AS zt, max({est}) AS est,
                    sumMap(arrayMap((i, d) -> bitShiftRight(i, d), {idx},
                                    arrayResize(emptyArrayUInt8(), length({idx}), toUInt8({scale} - min_scale))),
                           {cnt}) AS m,
                    tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
             FROM (SELECT series_id, step_start, min(scale) AS min_scale,
                          groupArray((scale, n, total, lo, hi, zeros, zt, est, idx, cnt)) AS parts
                   FROM ({union}) GROUP BY series_id, step_start)
             ARRAY JOIN parts AS p
             GROUP BY series_id, step_start, min_scale",
            scale = p(1),
            n = p(2),
            total = p(3),
            lo = p(4),
            hi = p(5),
            zeros = p(6),
            zt = p(7),
            est = p(8),
            idx = p(9),
            cnt = p(10),
            union = stretches.join(" UNION ALL "),
        );
        let rows: Vec<HistogramOut> = self.select(&sql)?;
        let keys = self.keys(filter)?;
        let mut merged = BTreeMap::new();
        for row in rows {
            let Some(key) = keys.get(&row.series_id) else {
                continue;
            };
            let buckets = Histogram::decode_buckets(&bucket_blob(&row.idx, &row.cnt))
                .ok_or_else(|| self.error(format!("series {} has unreadable buckets", row.series_id)))?;
            let histogram = Histogram {
                scale: row.scale,
                zero_count: row.zeros,
                zero_threshold: row.zt,
                buckets,
                count: row.n,
                sum: row.total,
                min: if row.n > 0 { row.lo } else { f64::INFINITY },
                max: if row.n > 0 { row.hi } else { 0.0 },
                estimated: row.est > 0,
            };
            merged.insert((key.clone(), row.step_start), histogram);
        }
        Ok(merged)
    }
}

/// [`WriteBatching`] from the URL's options (`batch_ms=N&batch_rows=M`).
fn write_batching(options: &str) -> Result<WriteBatching, &'static str> {
    let mut batching = WriteBatching::default();
    for option in options.split('&').filter(|o| !o.is_empty()) {
        let number = |value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| "batch_ms and batch_rows take a whole number")
        };
        match option.split_once('=') {
            Some(("batch_ms", value)) => batching.interval = Duration::from_millis(number(value)?),
            Some(("batch_rows", value)) => {
                batching.max_rows = usize::try_from(number(value)?).unwrap_or(usize::MAX);
            }
            _ => return Err("unknown option: the URL takes ?batch_ms=N&batch_rows=M"),
        }
    }
    Ok(batching)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}<credentials>{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// A random 64-bit token (std's randomly seeded hasher, mixed with the time).
fn token() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

impl Store for ClickHouseStore {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = self.encode_batch(batch)?;
        // The server's own message, handed to every writer of the group.
        let message = |e: StoreError| match e {
            StoreError::ClickHouse { message, .. } => message,
            other => other.to_string(),
        };
        self.group
            .commit(
                encoded,
                |group| self.insert_group(group).map_err(message),
                || "the write holding these rows stopped without an answer".to_owned(),
            )
            .map_err(|e| self.error(e))
    }

    fn histograms(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<(SeriesKey, Histogram)>, StoreError> {
        let stretches = self.plan(from, to, true)?;
        let merged = self.merged_histograms(filter, &stretches, None)?;
        Ok(merged
            .into_iter()
            .map(|((key, _), histogram)| (key, histogram))
            .collect())
    }

    fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, StoreError> {
        let stretches = self.plan(from, to, true)?;
        let mut totals: BTreeMap<(String, String, SeriesKey), f64> = BTreeMap::new();
        for ((key, labels, _), total) in self.merged_counters(filter, name, &stretches, None)? {
            *totals.entry((key.transaction.clone(), labels, key)).or_default() += total;
        }
        Ok(totals
            .into_iter()
            .map(|((_, labels, key), total)| (key, labels, total))
            .collect())
    }

    fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        let mut keys: Vec<SeriesKey> = self.keys(&Filter::default())?.into_values().collect();
        keys.sort();
        Ok(keys)
    }

    fn streams(&self, ids: Option<&[StreamId]>) -> Result<Vec<(StreamId, StreamState)>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            id: u64,
            state: String,
        }
        let only = match ids {
            Some([]) => return Ok(Vec::new()),
            Some(ids) => {
                let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
                format!(" WHERE id IN ({})", ids.join(","))
            }
            None => String::new(),
        };
        // The latest point of each stream, whichever replica wrote it.
        let rows: Vec<Row> = self.select(&format!(
            "SELECT id, argMax(state, time) AS state FROM stream{only} GROUP BY id"
        ))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let bytes = BASE64.decode(row.state).ok()?;
                Some((row.id, StreamState::from_bytes(&bytes)?))
            })
            .collect())
    }

    fn shared(&self) -> bool {
        true
    }

    fn size_bytes(&self) -> u64 {
        #[derive(Deserialize)]
        struct Size {
            bytes: u64,
        }
        let sql = format!(
            "SELECT sum(bytes_on_disk) AS bytes FROM system.parts WHERE database = {} AND active",
            quote(&self.database)
        );
        match self.select::<Size>(&sql) {
            Ok(rows) => rows.first().map_or(0, |s| s.bytes),
            Err(error) => {
                tracing::warn!(%error, "could not read the store's size");
                0
            }
        }
    }

    fn errors(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<ErrorSummary>, StoreError> {
        let v2_from = self.error_hours_v2_from()?.map(|minute| minute.div_euclid(60));
        let stretches = self.plan(from, to, false)?;
        // Errors tied at ingest match the whole filter; those waiting for
        // their trace's transaction are read by service, host and
        // environment, and filtered once tied (`links::tie_and_merge`).
        let mut parts: Vec<String> = Vec::new();
        for (untied, filter) in [(false, filter.clone()), (true, filter.untied())] {
            let series = series_filter(&filter);
            let traced = if untied { "trace_id != ''" } else { "trace_id = ''" };
            for s in &stretches {
                let (a, b) = (s.from, s.to);
                if s.resolution == "minute" {
                    parts.push(format!(
                        "SELECT series_id, error_type, message, location, fingerprint, trace_id, stack_hash,
                                sum(count) AS c, min(minute) AS f, max(last_seen) AS l, any(stacktrace) AS st
                         FROM error_minute WHERE minute >= {a} AND minute < {b} AND {traced}{series}
                         GROUP BY series_id, error_type, message, location, fingerprint, trace_id, stack_hash"
                    ));
                    continue;
                }
                // Hours before `error_hour_v2_from` are in schema 1's table,
                // which knows no traces or stacks.
                let split = v2_from.map_or(a, |v2| v2.clamp(a, b));
                if split > a && !untied {
                    parts.push(format!(
                        "SELECT series_id, error_type, message, location, fingerprint, '' AS trace_id,
                                toUInt64(0) AS stack_hash, sumMerge(count_state) AS c,
                                minMerge(first_minute_state) AS f, maxMerge(last_seen_state) AS l, '' AS st
                         FROM error_hour WHERE hour >= {a} AND hour < {split}{series}
                         GROUP BY series_id, error_type, message, location, fingerprint"
                    ));
                }
                if split < b {
                    parts.push(format!(
                        "SELECT series_id, error_type, message, location, fingerprint, trace_id, stack_hash,
                                sumMerge(count_state) AS c, minMerge(first_minute_state) AS f,
                                maxMerge(last_seen_state) AS l, anyMerge(stacktrace_state) AS st
                         FROM error_hour_v2 WHERE hour >= {split} AND hour < {b} AND {traced}{series}
                         GROUP BY series_id, error_type, message, location, fingerprint, trace_id, stack_hash"
                    ));
                }
            }
        }
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ErrorOut> = self.select(&format!(
            "SELECT series_id, error_type, message, location, fingerprint, trace_id, stack_hash, sum(c) AS total,
                    min(f) AS first_minute, max(l) AS last_seen, any(st) AS stacktrace
             FROM ({}) GROUP BY series_id, error_type, message, location, fingerprint, trace_id, stack_hash",
            parts.join(" UNION ALL ")
        ))?;
        // Links may name a series on another host: the keys of the service.
        let keys = self.keys(&Filter {
            service: filter.service.clone(),
            environment: filter.environment.clone(),
            ..Filter::default()
        })?;
        let mut traces: Vec<String> = rows
            .iter()
            .filter(|r| !r.trace_id.is_empty())
            .map(|r| quote(&r.trace_id))
            .collect();
        traces.sort_unstable();
        traces.dedup();
        let mut links = Vec::new();
        for chunk in traces.chunks(1_000) {
            let found: Vec<LinkOut> = self.select(&format!(
                "SELECT trace_id, series_id, start_ns, end_ns FROM trace_link WHERE trace_id IN ({})",
                chunk.join(", ")
            ))?;
            links.extend(found.into_iter().filter_map(|l| {
                Some(StoredLink {
                    key: keys.get(&l.series_id)?.clone(),
                    trace_id: l.trace_id,
                    start: l.start_ns,
                    end: l.end_ns,
                })
            }));
        }
        let mut stacks = Stacks::default();
        let rows: Vec<TracedError> = rows
            .into_iter()
            .filter_map(|row| {
                let summary = ErrorSummary {
                    key: keys.get(&row.series_id)?.clone(),
                    error_type: row.error_type,
                    message: row.message,
                    location: row.location,
                    count: row.total,
                    first_minute: row.first_minute,
                    last_seen: row.last_seen,
                    fingerprint: row.fingerprint,
                    stacktrace: stacks.share(row.stack_hash, row.stacktrace),
                };
                Some((summary, row.trace_id))
            })
            .collect();
        Ok(links::tie_and_merge(rows, &links, filter))
    }

    fn slowest_traces(&self, filter: &Filter, from: i64, to: i64, limit: usize) -> Result<Vec<TracePoint>, StoreError> {
        const NANOS_PER_MINUTE: i128 = 60_000_000_000;
        let bound = |minute: i64| u64::try_from((i128::from(minute) * NANOS_PER_MINUTE).max(0)).unwrap_or(u64::MAX);
        let (start, end) = (bound(from), bound(to));
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let (first_hour, last_hour) = (start / 3_600_000_000_000, end.div_ceil(3_600_000_000_000));
        let series = series_filter(filter);
        // The slowest TRACES_PER_HOUR of each whole hour, as the embedded
        // store keeps them; then the window.
        let rows: Vec<TraceOut> = self.select(&format!(
            "SELECT series_id, trace_id, start, duration, spans FROM (
                 SELECT series_id, hour, trace_id, argMax(start, written) AS start,
                        argMax(duration, written) AS duration, argMax(spans, written) AS spans
                 FROM kept_trace WHERE hour >= {first_hour} AND hour < {last_hour}{series}
                 GROUP BY series_id, hour, trace_id
                 ORDER BY duration DESC LIMIT {TRACES_PER_HOUR} BY series_id, hour)
             WHERE start >= {start} AND start < {end}
             ORDER BY duration DESC LIMIT {limit}"
        ))?;
        let keys = self.keys(filter)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(TracePoint {
                    key: keys.get(&row.series_id)?.clone(),
                    trace_id: row.trace_id,
                    start: row.start,
                    duration: row.duration,
                    spans: row.spans,
                })
            })
            .collect())
    }

    fn histogram_steps(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, i64, Histogram)>, StoreError> {
        let step = step.max(1);
        let stretches = self.step_plan(from, to, step)?;
        let merged = self.merged_histograms(filter, &stretches, Some(step))?;
        Ok(merged
            .into_iter()
            .map(|((key, start), histogram)| (key, start, histogram))
            .collect())
    }

    fn counter_steps(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, String, i64, f64)>, StoreError> {
        let step = step.max(1);
        let stretches = self.step_plan(from, to, step)?;
        Ok(self
            .merged_counters(filter, name, &stretches, Some(step))?
            .into_iter()
            .map(|((key, labels, start), total)| (key, labels, start, total))
            .collect())
    }
}

impl DeliveryState for ClickHouseStore {
    fn ledger_claim(&self, kind: &str, target: &str, period: &str, holder: &str, now: i64) -> Result<bool, StoreError> {
        let mine = token();
        let key = format!(
            "kind = {} AND target = {} AND period = {}",
            quote(kind),
            quote(target),
            quote(period)
        );
        // Nothing to claim once the delivery is settled: skip the settle delay.
        let events = self.ledger_events(&key)?;
        let (state, _) = replay_ledger(&events, None).map_err(|e| self.error(e.to_string()))?;
        if state.as_ref().is_some_and(|s| s.status.is_final()) {
            return Ok(false);
        }
        self.execute(&format!(
            "INSERT INTO delivery_ledger (kind, target, period, event, holder, status, claimed_at, at, written, token)
             SELECT {}, {}, {}, 'claim', {}, 'claimed', toInt64({now}), now(), {}, {mine}",
            quote(kind),
            quote(target),
            quote(period),
            quote(holder),
            now_nanos()
        ))?;
        std::thread::sleep(self.claim_settle.max(MIN_CLAIM_SETTLE));
        let events = self.ledger_events(&key)?;
        let (_, won) = replay_ledger(&events, Some(mine)).map_err(|e| self.error(e.to_string()))?;
        Ok(won)
    }

    fn ledger_record(&self, e: &LedgerEntry) -> Result<(), StoreError> {
        self.execute(&format!(
            "INSERT INTO delivery_ledger (kind, target, period, event, holder, status, attempts, rounds, error,
                 has_error, late, scheduled_at, claimed_at, finished_at, has_finished, at, written, token)
             SELECT {}, {}, {}, 'record', {}, {}, toUInt32({}), toUInt32({}), {}, {}, {}, toInt64({}), toInt64({}),
                    toInt64({}), {}, now(), {}, {}",
            quote(&e.kind),
            quote(&e.target),
            quote(&e.period),
            quote(&e.holder),
            quote(e.status.as_str()),
            e.attempts,
            e.rounds,
            quote(e.error.as_deref().unwrap_or_default()),
            u8::from(e.error.is_some()),
            u8::from(e.late),
            e.scheduled_at,
            e.claimed_at,
            e.finished_at.unwrap_or(0),
            u8::from(e.finished_at.is_some()),
            now_nanos(),
            token()
        ))
    }

    fn ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        let events: Vec<LedgerEvent> = self.select(&format!(
            "SELECT {LEDGER_COLUMNS} FROM delivery_ledger
             WHERE (kind, target, period) IN (
                 SELECT kind, target, period FROM delivery_ledger
                 WHERE claimed_at >= {since} OR (has_finished = 1 AND finished_at >= {since}))
             {LEDGER_ORDER}"
        ))?;
        let mut entries = Vec::new();
        for delivery in events.chunk_by(|a, b| (&a.kind, &a.target, &a.period) == (&b.kind, &b.target, &b.period)) {
            let (state, _) = replay_ledger(delivery, None).map_err(|e| self.error(e.to_string()))?;
            entries.extend(state.filter(|s| s.claimed_at >= since || s.finished_at.is_some_and(|f| f >= since)));
        }
        entries.sort_by(|a, b| {
            (a.claimed_at, &a.kind, &a.target, &a.period).cmp(&(b.claimed_at, &b.kind, &b.target, &b.period))
        });
        Ok(entries)
    }

    fn alert_state_get(&self, name: &str) -> Result<Option<AlertState>, StoreError> {
        let rows: Vec<AlertOut> = self.select(&format!(
            "SELECT firing, since, value, has_value, notified FROM alert_state WHERE name = {}
             ORDER BY at DESC, written DESC, token DESC LIMIT 1",
            quote(name)
        ))?;
        Ok(rows.into_iter().next().map(|row| AlertState {
            firing: row.firing > 0,
            since: row.since,
            value: (row.has_value > 0).then_some(row.value),
            notified: row.notified > 0,
        }))
    }

    fn alert_state_put(&self, name: &str, state: &AlertState) -> Result<(), StoreError> {
        let value = state.value.filter(|v| v.is_finite());
        self.execute(&format!(
            "INSERT INTO alert_state (name, firing, since, value, has_value, notified, at, written, token)
             SELECT {}, {}, toInt64({}), toFloat64({:?}), {}, {}, now(), {}, {}",
            quote(name),
            u8::from(state.firing),
            state.since,
            value.unwrap_or(0.0),
            u8::from(value.is_some()),
            u8::from(state.notified),
            now_nanos(),
            token()
        ))
    }
}

impl ClickHouseStore {
    /// The events of one delivery (`key` is its SQL condition), in replay order.
    fn ledger_events(&self, key: &str) -> Result<Vec<LedgerEvent>, StoreError> {
        self.select(&format!(
            "SELECT {LEDGER_COLUMNS} FROM delivery_ledger WHERE {key} {LEDGER_ORDER}"
        ))
    }
}

/// Replays the events of one delivery, in order, with the embedded store's
/// rules: a claim takes a delivery that has no row yet, or one still open
/// (claimed or retrying) whose last claim is a lease old; it keeps the
/// delivery's history (attempts, rounds, error). Any other claim loses. A
/// recorded outcome replaces the row. Returns the delivery's state and
/// whether the claim with token `mine` won.
fn replay_ledger(
    events: &[LedgerEvent],
    mine: Option<u64>,
) -> Result<(Option<LedgerEntry>, bool), super::state::UnknownStatus> {
    let mut state: Option<LedgerEntry> = None;
    let mut won = false;
    for e in events {
        if e.event == "claim" {
            let takes = match &state {
                None => true,
                Some(s) => {
                    matches!(s.status, LedgerStatus::Claimed | LedgerStatus::Retrying)
                        && s.claimed_at <= e.claimed_at - LEASE_SECONDS
                }
            };
            if takes {
                let row = state.get_or_insert_with(|| LedgerEntry {
                    kind: e.kind.clone(),
                    target: e.target.clone(),
                    period: e.period.clone(),
                    holder: String::new(),
                    status: LedgerStatus::Claimed,
                    attempts: 0,
                    rounds: 0,
                    error: None,
                    late: false,
                    scheduled_at: 0,
                    claimed_at: 0,
                    finished_at: None,
                });
                row.holder.clone_from(&e.holder);
                row.status = LedgerStatus::Claimed;
                row.claimed_at = e.claimed_at;
            }
            if Some(e.token) == mine {
                won = takes;
            }
        } else {
            state = Some(LedgerEntry {
                kind: e.kind.clone(),
                target: e.target.clone(),
                period: e.period.clone(),
                holder: e.holder.clone(),
                status: e.status.parse()?,
                attempts: e.attempts,
                rounds: e.rounds,
                error: (e.has_error > 0).then(|| e.error.clone()),
                late: e.late > 0,
                scheduled_at: e.scheduled_at,
                claimed_at: e.claimed_at,
                finished_at: (e.has_finished > 0).then_some(e.finished_at),
            });
        }
    }
    Ok((state, won))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, holder: &str, token: u64, claimed_at: i64, status: &str) -> LedgerEvent {
        LedgerEvent {
            kind: "weekly".into(),
            target: "payments:email".into(),
            period: "2026-W11".into(),
            event: event.into(),
            holder: holder.into(),
            status: status.into(),
            attempts: if event == "record" { 2 } else { 0 },
            rounds: u32::from(event == "record"),
            error: "connection refused".into(),
            has_error: u8::from(event == "record" && status != "sent"),
            late: 0,
            scheduled_at: 1_000,
            claimed_at,
            finished_at: claimed_at + 5,
            has_finished: u8::from(event == "record"),
            token,
        }
    }

    #[test]
    fn the_ledger_replays_claims_and_outcomes_with_the_embedded_stores_rules() {
        let t = 1_773_000_000;
        let mut events = vec![
            event("claim", "a", 1, t, "claimed"),
            event("claim", "b", 2, t, "claimed"),
        ];
        assert!(
            replay_ledger(&events, Some(1)).unwrap().1,
            "the first claim takes a new delivery"
        );
        assert!(
            !replay_ledger(&events, Some(2)).unwrap().1,
            "a second one within the lease loses"
        );
        events.push(event("claim", "c", 3, t + LEASE_SECONDS, "claimed"));
        assert!(
            replay_ledger(&events, Some(3)).unwrap().1,
            "a claim a lease old is taken over"
        );
        events.push(event("record", "c", 4, t + LEASE_SECONDS, "retrying"));
        events.push(event("claim", "d", 5, t + 2 * LEASE_SECONDS, "claimed"));
        let (state, won) = replay_ledger(&events, Some(5)).unwrap();
        let state = state.unwrap();
        assert!(won, "a retrying delivery is claimed again after the lease");
        assert_eq!(
            (
                state.status,
                state.holder.as_str(),
                state.attempts,
                state.error.as_deref()
            ),
            (LedgerStatus::Claimed, "d", 2, Some("connection refused")),
            "the claim keeps the history"
        );
        events.push(event("record", "d", 6, t + 2 * LEASE_SECONDS, "sent"));
        events.push(event("claim", "e", 7, t + 100 * LEASE_SECONDS, "claimed"));
        let (state, won) = replay_ledger(&events, Some(7)).unwrap();
        assert!(!won, "a sent delivery is never claimed again");
        assert_eq!(state.unwrap().status, LedgerStatus::Sent);
        events.push(event("record", "d", 8, t, "lost"));
        assert!(replay_ledger(&events, None).is_err(), "an unknown status is an error");
    }

    #[test]
    fn urls_and_literals() {
        assert!(ClickHouseStore::is_url("clickhouse://127.0.0.1:8123/kuroko"));
        assert!(!ClickHouseStore::is_url("/var/lib/kuroko.db"));
        let bad = ClickHouseStore::connect("clickhouse://host:8123/bad-name").unwrap_err();
        assert!(bad.to_string().contains("letters, digits and _"), "{bad}");
        let no_db = ClickHouseStore::connect("clickhouse://u:secret@host:8123").unwrap_err();
        assert!(!no_db.to_string().contains("secret"), "{no_db}");
        assert_eq!(quote(r"it's \ here"), r"'it\'s \\ here'");
        let mut key = SeriesKey {
            service: "a".into(),
            host: "b".into(),
            transaction: String::new(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        };
        let id = series_id(&key);
        key.service = "ab".into();
        key.host = String::new();
        assert_ne!(series_id(&key), id, "fields do not run into each other");
    }

    #[test]
    fn write_batching_is_set_in_the_url() {
        assert_eq!(write_batching(""), Ok(WriteBatching::default()));
        assert_eq!(
            write_batching("batch_ms=0&batch_rows=1000"),
            Ok(WriteBatching {
                interval: Duration::ZERO,
                max_rows: 1_000
            })
        );
        assert!(write_batching("batch_ms=soon").is_err());
        assert!(write_batching("batch=5").is_err());
        let bad = ClickHouseStore::connect("clickhouse://host:8123/kuroko?batch_ms=-1").unwrap_err();
        assert!(bad.to_string().contains("whole number"), "{bad}");
    }

    #[test]
    fn bucket_blob_is_what_histograms_decode() {
        let mut h = Histogram::empty();
        for v in [1e-6, 0.003, 0.0031, 2.0, 3600.0] {
            h.record(v).unwrap();
        }
        let (indexes, counts): (Vec<i64>, Vec<u64>) = h.iter_buckets().map(|(i, c)| (i64::from(i), c)).unzip();
        assert_eq!(bucket_blob(&indexes, &counts), h.encode_buckets());
    }
}
