//! The ClickHouse store's reads: the [`Store`] trait's queries, each
//! window split by [`crate::store::plan`] and merged in SQL.

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;

use super::txn::TXN_ROLLUP_FROM;
use super::writes::bucket_blob;
use super::{quote, ClickHouseStore};
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;
use crate::store::links::{self, Stacks, StoredLink, TracedError};
use crate::store::plan::{ceil_to, plan, Progress, Stretch, NEVER};
use crate::store::{
    Batch, DatabaseError, ErrorSummary, Filter, SeriesKey, StepTotal, Store, StoreError, TracePoint, MAX_JOINED_RUNS,
    TRACES_PER_HOUR,
};

/// The most ids a read numbers in SQL: their list is in the query, which
/// ClickHouse takes up to 256 KiB of (and a number must fit in 24 bits).
const MAX_GROUPED_IDS: usize = 5_000;

/// The group number of an id in no group ([`group_of`]).
const NO_GROUP: &str = "toUInt64(-1)";

/// The ids of a read's keys numbered by their group (a key of each series,
/// `None` leaving it out): `groups[n]` is group `n`, `ids` maps an id to
/// its group's number.
struct Numbered<G> {
    groups: Vec<G>,
    ids: HashMap<u64, u64>,
}

impl<G: Ord + Clone> Numbered<G> {
    fn of(keys: &HashMap<u64, SeriesKey>, group: &mut dyn FnMut(&SeriesKey) -> Option<G>) -> Numbered<G> {
        let mut groups: Vec<G> = Vec::new();
        let mut numbers: BTreeMap<G, u64> = BTreeMap::new();
        let mut ids: HashMap<u64, u64> = HashMap::new();
        for (&id, key) in keys {
            if let Some(g) = group(key) {
                let number = *numbers.entry(g.clone()).or_insert_with(|| {
                    groups.push(g);
                    groups.len() as u64 - 1
                });
                ids.insert(id, number);
            }
        }
        Numbered { groups, ids }
    }
}

impl<G> Numbered<G> {
    /// The SQL of the group number of id `column` ([`group_of`]).
    fn in_sql(&self, column: &str) -> String {
        group_of(column, &self.ids)
    }
}

/// The SQL of the number `ids` gives id `column`, [`NO_GROUP`] for an id
/// they do not hold.
fn group_of(column: &str, ids: &HashMap<u64, u64>) -> String {
    let (ids, numbers): (Vec<String>, Vec<String>) = ids.iter().map(|(id, n)| (id.to_string(), n.to_string())).unzip();
    format!(
        "transform({column}, [{}], [{}], {NO_GROUP})",
        ids.join(","),
        numbers.join(",")
    )
}

/// Roll-ups are complete at once (materialised views): "rolled until the end of time".
const ALWAYS: i64 = i64::MAX / 4;

/// A window split by resolution ([`plan`]), and the marks it was split by.
pub(super) struct Planned {
    pub(super) stretches: Vec<Stretch>,
    pub(super) marks: Marks,
}

/// How far retention has cut and since when the roll-ups across hosts are
/// whole, in unix minutes (from `meta`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Marks {
    pub(super) minutes_from: i64,
    pub(super) hours_from: i64,
    /// [`NEVER`] when they are whole from the start (see [`super::txn`]).
    pub(super) across_hosts_from: i64,
    /// The parts the marks were read from ([`ClickHouseStore::naming_parts`]):
    /// the read's questions about which series exist are answered for them.
    pub(super) parts: u64,
}

/// Which rows a read takes: per series, or per transaction series (the
/// roll-ups across hosts of [`super::txn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    Series,
    Transaction,
}

impl Level {
    /// The id column, named `series_id` in the answer.
    fn id(self) -> &'static str {
        match self {
            Level::Series => "series_id",
            Level::Transaction => "txn_id AS series_id",
        }
    }

    /// The table of `what` (`histogram`, `counter`) at `resolution`.
    fn table(self, what: &str, resolution: &str) -> String {
        match self {
            Level::Series => format!("{what}_{resolution}"),
            Level::Transaction => format!("txn_{what}_{resolution}"),
        }
    }
}

/// What one query of a read takes: its rows' level, the condition on their
/// id (` AND ... IN (...)`, or nothing) and the keys of the ids (hosts
/// emptied when the read is across hosts).
pub(super) struct Selection {
    pub(super) level: Level,
    pub(super) only: String,
    pub(super) keys: HashMap<u64, SeriesKey>,
}

/// Floor division of a minute column, for roll-up keys (`intDiv` truncates).
pub(super) fn floor_div(column: &str, by: i64) -> String {
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
    if step == minutes {
        // A row per step: no division over millions of rows.
        return minute;
    }
    format!("(({}) * {step})", floor_div(&minute, step))
}

/// ` AND series_id IN (...)` for a filter, or nothing when it matches all.
pub(super) fn series_filter(filter: &Filter) -> String {
    series_where(&key_conditions(filter))
}

/// ` AND series_id IN (...)` for conditions on `series`, or nothing when
/// there are none.
pub(super) fn series_where(conditions: &[String]) -> String {
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
pub(super) fn key_conditions(filter: &Filter) -> Vec<String> {
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

/// ` WHERE a AND b ...` of `conditions`, or nothing when there are none.
pub(super) fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
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

#[derive(Deserialize)]
struct TotalStepOut {
    series_id: u64,
    step_start: i64,
    n: u64,
    total: f64,
}

#[derive(Deserialize)]
struct CounterStepOut {
    series_id: u64,
    labels: String,
    step_start: i64,
    total: f64,
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

#[derive(Deserialize)]
struct LinkOut {
    trace_id: String,
    series_id: u64,
    start_ns: u64,
    end_ns: u64,
}

#[derive(Deserialize)]
struct TraceOut {
    series_id: u64,
    trace_id: String,
    start: u64,
    duration: f64,
    spans: String,
}

impl TraceOut {
    /// The rows as kept traces of the series in `keys` (others left out).
    fn points(rows: Vec<TraceOut>, keys: &HashMap<u64, SeriesKey>) -> Vec<TracePoint> {
        rows.into_iter()
            .filter_map(|row| {
                Some(TracePoint {
                    key: keys.get(&row.series_id)?.clone(),
                    trace_id: row.trace_id,
                    start: row.start,
                    duration: row.duration,
                    spans: row.spans,
                })
            })
            .collect()
    }

    /// The start of unix minute `minute`, in the table's unix nanoseconds
    /// (0 before 1970, the largest at the far end).
    fn nanos(minute: i64) -> u64 {
        u64::try_from((i128::from(minute) * 60_000_000_000).max(0)).unwrap_or(u64::MAX)
    }
}

impl ClickHouseStore {
    /// The kept traces of `filter`'s series that started in `from..to` (unix
    /// minutes), slowest first, at most `limit` (of each series, with
    /// `each_series`): the slowest [`TRACES_PER_HOUR`] of each whole hour,
    /// as the embedded store keeps them, then the window.
    fn kept_traces(
        &self,
        filter: &Filter,
        (from, to): (i64, i64),
        limit: usize,
        each_series: bool,
    ) -> Result<Vec<TraceOut>, StoreError> {
        let (start, end) = (TraceOut::nanos(from), TraceOut::nanos(to));
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let by = if each_series { " BY series_id" } else { "" };
        let (first_hour, last_hour) = (start / 3_600_000_000_000, end.div_ceil(3_600_000_000_000));
        let series = series_filter(filter);
        self.select(&format!(
            "SELECT series_id, trace_id, start, duration, spans FROM (
                 SELECT series_id, hour, trace_id, argMax(start, written) AS start,
                        argMax(duration, written) AS duration, argMax(spans, written) AS spans
                 FROM kept_trace WHERE hour >= {first_hour} AND hour < {last_hour}{series}
                 GROUP BY series_id, hour, trace_id
                 ORDER BY duration DESC LIMIT {TRACES_PER_HOUR} BY series_id, hour)
             WHERE start >= {start} AND start < {end}
             ORDER BY duration DESC LIMIT {limit}{by}"
        ))
    }
}

impl Store for ClickHouseStore {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(appended) = self.spool_write(batch) {
            return appended;
        }
        let encoded = self.encode_batch(batch)?;
        // The server's own message, handed to every writer of the group.
        let message = |e: StoreError| match e {
            StoreError::Database {
                detail: DatabaseError::ClickHouse(message),
                ..
            } => message,
            other => other.to_string(),
        };
        self.group
            .commit(
                encoded,
                |group| self.insert_group(&group, &mut self.blocks_once()).map_err(message),
                || "the write holding these rows stopped without an answer".to_owned(),
            )
            .map_err(|e| self.error(e))
    }

    fn write_quick(&self, batch: &Batch) -> Result<bool, StoreError> {
        // With the journal on, a write is a file append: no network.
        match self.spool_write(batch) {
            Some(appended) => appended.map(|()| true),
            None => Ok(false),
        }
    }

    fn histograms(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<(SeriesKey, Histogram)>, StoreError> {
        let stretches = self.plan_data(from, to)?;
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
        let stretches = self.plan_data(from, to)?;
        let mut totals: BTreeMap<(String, String, SeriesKey), f64> = BTreeMap::new();
        let merged = self.merged_counters_by(filter, name, &stretches, None, &mut |key| Some(key.clone()))?;
        for ((key, labels, _), total) in merged {
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

    fn health(&self) -> crate::store::StoreHealth {
        let spool = self.spool_health().unwrap_or_default();
        crate::store::StoreHealth {
            journal_waiting_bytes: spool.waiting_bytes,
            journal_blocks_sent: spool.blocks_sent,
            journal_send_failures: spool.send_failures,
            writes_refused_behind: spool.writes_refused,
            journal_fsyncs: spool.fsyncs,
            ..crate::store::StoreHealth::default()
        }
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
        let stretches = self.plan(from, to, false)?.stretches;
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
        let rows = self.kept_traces(filter, (from, to), limit, false)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(filter)?;
        Ok(TraceOut::points(rows, &keys))
    }

    fn slowest_traces_each(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<TracePoint>, StoreError> {
        // Each series' slowest `limit` (a superset of each transaction's),
        // then each transaction's here: the series table names them.
        let rows = self.kept_traces(filter, (from, to), limit, true)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(filter)?;
        let mut taken: HashMap<(String, String), usize> = HashMap::new();
        Ok(TraceOut::points(rows, &keys)
            .into_iter()
            .filter(|trace| {
                let count = taken
                    .entry((trace.key.service.clone(), trace.key.transaction.clone()))
                    .or_default();
                *count += 1;
                *count <= limit
            })
            .collect())
    }

    fn traces_with_id(&self, trace_id: &str, from: i64, to: i64) -> Result<Vec<TracePoint>, StoreError> {
        let (start, end) = (TraceOut::nanos(from), TraceOut::nanos(to));
        if start >= end {
            return Ok(Vec::new());
        }
        let (first_hour, last_hour) = (start / 3_600_000_000_000, end.div_ceil(3_600_000_000_000));
        // The hours bound the partitions read; within them the table is
        // ordered by series, so the trace id is found by a scan of the
        // window's kept traces (a few per series and hour).
        let rows: Vec<TraceOut> = self.select(&format!(
            "SELECT series_id, trace_id, argMax(start, written) AS start, argMax(duration, written) AS duration,
                    argMax(spans, written) AS spans
             FROM kept_trace WHERE hour >= {first_hour} AND hour < {last_hour} AND trace_id = {trace}
             GROUP BY series_id, hour, trace_id
             HAVING start >= {start} AND start < {end}
             ORDER BY start LIMIT {MAX_JOINED_RUNS}",
            trace = quote(trace_id)
        ))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|row| row.series_id.to_string()).collect();
        let keys = self.keys_where(&[format!("id IN ({})", ids.join(", "))], None)?;
        Ok(TraceOut::points(rows, &keys))
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

    fn histogram_steps_grouped(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<Vec<(usize, i64, Histogram)>, StoreError> {
        let step = step.max(1);
        let stretches = self.step_plan(from, to, step)?;
        let merged = self.merged_by(filter, &stretches, Some(step), group)?;
        Ok(merged
            .into_iter()
            .map(|((group, start), histogram)| (group, start, histogram))
            .collect())
    }

    fn totals_steps(&self, filter: &Filter, from: i64, to: i64, step: i64) -> Result<Vec<StepTotal>, StoreError> {
        let step = step.max(1);
        let planned = self.step_plan(from, to, step)?;
        let mut totals: BTreeMap<(SeriesKey, i64), (u64, f64)> = BTreeMap::new();
        if planned.stretches.is_empty() {
            return Ok(Vec::new());
        }
        // Counts and sums only: no buckets to merge.
        for selection in self.selections(filter, &planned)? {
            let (id, only) = (selection.level.id(), &selection.only);
            let selects: Vec<String> = planned
                .stretches
                .iter()
                .map(|s| {
                    let (r, a, b) = (s.resolution, s.from, s.to);
                    let (n, total) = if r == "minute" && selection.level == Level::Series {
                        ("sum(count)", "sum(sum)")
                    } else {
                        ("sumMerge(count_state)", "sumMerge(sum_state)")
                    };
                    let start = step_start(r, Some(step));
                    let table = selection.level.table("histogram", r);
                    format!(
                        "SELECT {id}, {start} AS step_start, {n} AS n, {total} AS total FROM {table}
                         WHERE {r} >= {a} AND {r} < {b}{only}
                         GROUP BY series_id, step_start"
                    )
                })
                .collect();
            let rows: Vec<TotalStepOut> = self.select(&format!(
                "SELECT series_id, step_start, sum(n) AS n, sum(total) AS total FROM ({})
                 GROUP BY series_id, step_start",
                selects.join(" UNION ALL ")
            ))?;
            for row in rows {
                if let Some(key) = selection.keys.get(&row.series_id) {
                    let total = totals.entry((key.clone(), row.step_start)).or_default();
                    total.0 = total.0.saturating_add(row.n);
                    total.1 += row.total;
                }
            }
        }
        Ok(totals
            .into_iter()
            .map(|((key, start), (count, sum))| (key, start, count, sum))
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
            .merged_counters_by(filter, name, &stretches, Some(step), &mut |key| Some(key.clone()))?
            .into_iter()
            .map(|((key, labels, start), total)| (key, labels, start, total))
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
        let step = step.max(1);
        let stretches = self.step_plan(from, to, step)?;
        Ok(self
            .merged_counters_by(filter, name, &stretches, Some(step), group)?
            .into_iter()
            .map(|((group, labels, start), total)| (group, labels, start, total))
            .collect())
    }
}

impl ClickHouseStore {
    /// Series matching `filter`, by id.
    pub(super) fn keys(&self, filter: &Filter) -> Result<HashMap<u64, SeriesKey>, StoreError> {
        self.keys_where(&key_conditions(filter), None)
    }

    /// Series meeting `conditions` (on `series`), by id; as kept for
    /// `parts` when given ([`ClickHouseStore::select_kept`]).
    pub(super) fn keys_where(
        &self,
        conditions: &[String],
        parts: Option<u64>,
    ) -> Result<HashMap<u64, SeriesKey>, StoreError> {
        let filter = where_clause(conditions);
        let sql = format!("SELECT DISTINCT id, service, host, txn, feature, kind, environment FROM series{filter}");
        let key = |r: &SeriesOut| {
            (
                r.id,
                SeriesKey {
                    service: r.service.clone(),
                    host: r.host.clone(),
                    transaction: r.txn.clone(),
                    feature: r.feature.clone(),
                    kind: r.kind.clone(),
                    environment: r.environment.clone(),
                },
            )
        };
        Ok(match parts {
            Some(parts) => self.select_kept::<SeriesOut>(parts, &sql)?.iter().map(key).collect(),
            None => self.select::<SeriesOut>(&sql)?.iter().map(key).collect(),
        })
    }

    /// The window split into day, hour and minute stretches; edges older
    /// than what retention kept are widened, as in the embedded store.
    pub(super) fn plan(&self, from: i64, to: i64, days: bool) -> Result<Planned, StoreError> {
        let marks = self.marks()?;
        self.plan_marked(from, to, days, marks)
    }

    /// [`ClickHouseStore::plan`] for histograms and counters, whose window
    /// may end in the roll-up of the day (or hour) it ends in when nothing
    /// was written after it ([`ClickHouseStore::widened_end`]).
    fn plan_data(&self, from: i64, to: i64) -> Result<Planned, StoreError> {
        let marks = self.marks()?;
        let to = self.widened_end(to, &marks)?;
        self.plan_marked(from, to, true, marks)
    }

    fn plan_marked(&self, from: i64, to: i64, days: bool, marks: Marks) -> Result<Planned, StoreError> {
        let stretches = plan(
            from,
            to,
            Progress {
                hours_until: ALWAYS,
                days_until: if days { ALWAYS } else { NEVER },
                minutes_from: marks.minutes_from,
                hours_from: if days { marks.hours_from } else { NEVER },
            },
        );
        Ok(Planned { stretches, marks })
    }

    /// The window split for steps of `step` minutes, as the embedded store
    /// splits it: day rows only when a step holds whole days, hour rows only
    /// when it holds whole hours, so that no row straddles two steps.
    fn step_plan(&self, from: i64, to: i64, step: i64) -> Result<Planned, StoreError> {
        let marks = self.marks()?;
        let to = self.widened_end(to, &marks)?;
        let rolled = |period: i64| {
            if step % period == 0 {
                ALWAYS
            } else {
                NEVER
            }
        };
        let stretches = plan(
            from,
            to,
            Progress {
                hours_until: rolled(60),
                days_until: rolled(1_440),
                minutes_from: marks.minutes_from,
                hours_from: marks.hours_from,
            },
        );
        Ok(Planned { stretches, marks })
    }

    /// `to`, or the end of its day (else of its hour) when no histogram or
    /// counter row lies between them: a window that ends now then reads
    /// today's day rows (or this hour's) in one piece instead of its hours
    /// and minutes, the same sums, since the rows past `to` are empty. The
    /// rows are looked for in the minute roll-ups across hosts, which every
    /// minute row reaches and which are sorted by time: a range read. Not
    /// where those are not whole (before [`Marks::across_hosts_from`]).
    fn widened_end(&self, to: i64, marks: &Marks) -> Result<i64, StoreError> {
        let (hour_end, day_end) = (ceil_to(to, 60), ceil_to(to, 1_440));
        if to == day_end || to < marks.across_hosts_from || to < marks.minutes_from || to >= ALWAYS {
            return Ok(to);
        }
        #[derive(Deserialize)]
        struct After {
            rows: u64,
            first: i64,
        }
        let after: Vec<After> = self.select(&format!(
            "SELECT count() AS rows, min(minute) AS first FROM (
                 SELECT minute FROM txn_histogram_minute WHERE minute >= {to} AND minute < {day_end}
                 UNION ALL
                 SELECT minute FROM txn_counter_minute WHERE minute >= {to} AND minute < {day_end})"
        ))?;
        Ok(match after.first() {
            None | Some(After { rows: 0, .. }) => day_end,
            Some(after) if after.first >= hour_end => hour_end,
            Some(_) => to,
        })
    }

    /// How far retention and the roll-ups across hosts have got, from `meta`.
    fn marks(&self) -> Result<Marks, StoreError> {
        #[derive(Deserialize)]
        struct Kept {
            key: String,
            value: i64,
        }
        let parts = self.naming_parts()?;
        let kept = self.select_kept::<Kept>(
            parts,
            &format!(
                "SELECT key, max(toInt64(value)) AS value FROM meta
             WHERE key IN ('minutes_kept_from', 'hours_kept_from', {}) GROUP BY key",
                quote(TXN_ROLLUP_FROM)
            ),
        )?;
        let kept_from = |key: &str| kept.iter().find(|k| k.key == key).map_or(NEVER, |k| k.value);
        Ok(Marks {
            minutes_from: kept_from("minutes_kept_from"),
            hours_from: kept_from("hours_kept_from"),
            across_hosts_from: kept_from(TXN_ROLLUP_FROM),
            parts,
        })
    }

    /// One stretch's histograms per id of `selection` (as `series_id`),
    /// step (see [`step_start`]) and scale.
    fn histogram_stretch(stretch: &Stretch, selection: &Selection, step: Option<i64>) -> String {
        let (from, to) = (stretch.from, stretch.to);
        let start = step_start(stretch.resolution, step);
        let (id, table, filter) = (
            selection.level.id(),
            selection.level.table("histogram", stretch.resolution),
            &selection.only,
        );
        match (stretch.resolution, selection.level) {
            (r, Level::Transaction) => format!(
                "SELECT {id}, {start} AS step_start, scale, sumMerge(count_state) AS n, sumMerge(sum_state) AS total,
                        minIfMerge(min_state) AS lo, maxIfMerge(max_state) AS hi, sumMerge(zero_count_state) AS zeros,
                        maxMerge(zero_threshold_state) AS zt, maxMerge(estimated_state) AS est
                 FROM {table} WHERE {r} >= {from} AND {r} < {to}{filter}
                 GROUP BY series_id, step_start, scale"
            ),
            ("minute", Level::Series) => format!(
                "SELECT series_id, {start} AS step_start, scale, sum(count) AS n, sum(sum) AS total, minIf(min, count > 0) AS lo,
                        maxIf(max, count > 0) AS hi, sum(zero_count) AS zeros, max(zero_threshold) AS zt,
                        max(estimated) AS est, sumMap(bucket_index, bucket_count) AS m,
                        tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
                 FROM histogram_minute WHERE minute >= {from} AND minute < {to}{filter}
                 GROUP BY series_id, step_start, scale"
            ),
            // The scalars, with the buckets of rows rolled before schema 6
            // (empty states since), and the buckets' maps, as a part with
            // no runs of its own: `merged_sql` adds them up.
            (r, _) => format!(
                "SELECT {id}, {start} AS step_start, scale, sumMerge(count_state) AS n, sumMerge(sum_state) AS total,
                        minIfMerge(min_state) AS lo, maxIfMerge(max_state) AS hi, sumMerge(zero_count_state) AS zeros,
                        maxMerge(zero_threshold_state) AS zt, maxMerge(estimated_state) AS est,
                        sumMapMerge(buckets_state) AS m, tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
                 FROM {table} WHERE {r} >= {from} AND {r} < {to}{filter}
                 GROUP BY series_id, step_start, scale
                 UNION ALL
                 SELECT {id}, {start} AS step_start, scale, toUInt64(0) AS n, toFloat64(0) AS total,
                        toFloat64(0) AS lo, toFloat64(0) AS hi, toUInt64(0) AS zeros, toFloat64(0) AS zt,
                        toUInt8(0) AS est, sumMap(bucketsMap.idx, bucketsMap.n) AS m,
                        tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
                 FROM series_bucket_{r} WHERE {r} >= {from} AND {r} < {to}{filter}
                 GROUP BY series_id, step_start, scale"
            ),
        }
    }

    /// Counter `name` summed per series matching `filter` and label set
    /// (and per step of `step` minutes, when given; else the step start is
    /// 0) over the planned stretches, then per `group`, a key of each series
    /// (`None` leaves it out); per transaction series when the filter asks
    /// across hosts ([`ClickHouseStore::selections`]), where the groups are
    /// summed in SQL when their ids fit in a query, so that a feature's week
    /// of hour steps comes back as 169 sums per label set, not one per
    /// transaction and hour.
    fn merged_counters_by<G: Ord + Clone>(
        &self,
        filter: &Filter,
        name: &str,
        planned: &Planned,
        step: Option<i64>,
        group: &mut dyn FnMut(&SeriesKey) -> Option<G>,
    ) -> Result<BTreeMap<(G, String, i64), f64>, StoreError> {
        let mut totals: BTreeMap<(G, String, i64), f64> = BTreeMap::new();
        if planned.stretches.is_empty() {
            return Ok(totals);
        }
        let name = quote(name);
        for selection in self.selections(filter, planned)? {
            let numbered = Numbered::of(&selection.keys, group);
            let in_sql = selection.level == Level::Transaction && numbered.ids.len() <= MAX_GROUPED_IDS;
            if in_sql && numbered.ids.is_empty() {
                continue;
            }
            let (id, only) = if in_sql {
                (format!("{} AS series_id", numbered.in_sql("txn_id")), &selection.only)
            } else {
                (selection.level.id().to_owned(), &selection.only)
            };
            let selects: Vec<String> = planned
                .stretches
                .iter()
                .map(|s| {
                    let (r, a, b) = (s.resolution, s.from, s.to);
                    let value = if r == "minute" && selection.level == Level::Series {
                        "sum(value)"
                    } else {
                        "sumMerge(value_state)"
                    };
                    let start = step_start(r, step);
                    let table = selection.level.table("counter", r);
                    format!(
                        "SELECT {id}, labels, {start} AS step_start, {value} AS v FROM {table}
                         WHERE name = {name} AND {r} >= {a} AND {r} < {b}{only}
                         GROUP BY series_id, labels, step_start"
                    )
                })
                .collect();
            let rows: Vec<CounterStepOut> = self.select(&format!(
                "SELECT series_id, labels, step_start, sum(v) AS total FROM ({})
                 WHERE series_id != {NO_GROUP}
                 GROUP BY series_id, labels, step_start",
                selects.join(" UNION ALL ")
            ))?;
            // Summed by number first: cheap keys, whatever `G` is.
            let mut by_number: HashMap<(u64, String, i64), f64> = HashMap::new();
            for row in rows {
                let number = if in_sql {
                    Some(row.series_id)
                } else {
                    numbered.ids.get(&row.series_id).copied()
                };
                if let Some(number) = number {
                    *by_number.entry((number, row.labels, row.step_start)).or_default() += row.total;
                }
            }
            for ((number, labels, start), total) in by_number {
                if let Some(g) = numbered.groups.get(number as usize) {
                    *totals.entry((g.clone(), labels, start)).or_default() += total;
                }
            }
        }
        Ok(totals)
    }

    /// One histogram per series matching `filter` (and per step of `step`
    /// minutes, when given) over the planned stretches, merged in one query
    /// per [`Selection`]: every part downscaled to the coarsest scale of its
    /// series and step, then summed.
    fn merged_histograms(
        &self,
        filter: &Filter,
        planned: &Planned,
        step: Option<i64>,
    ) -> Result<BTreeMap<(SeriesKey, i64), Histogram>, StoreError> {
        self.merged_by(filter, planned, step, &mut |key| Some(key.clone()))
    }

    /// [`ClickHouseStore::merged_histograms`] merged further by `group`, a
    /// key of each series (`None` leaves it out). Across hosts, the groups
    /// are summed in SQL, so that a feature's week of hour steps comes back
    /// as 168 histograms, not one per transaction and hour.
    fn merged_by<G: Ord + Clone>(
        &self,
        filter: &Filter,
        planned: &Planned,
        step: Option<i64>,
        group: &mut dyn FnMut(&SeriesKey) -> Option<G>,
    ) -> Result<BTreeMap<(G, i64), Histogram>, StoreError> {
        let mut merged: BTreeMap<(G, i64), Histogram> = BTreeMap::new();
        if planned.stretches.is_empty() {
            return Ok(merged);
        }
        for selection in self.selections(filter, planned)? {
            let stretches: Vec<String> = planned
                .stretches
                .iter()
                .map(|s| Self::histogram_stretch(s, &selection, step))
                .collect();
            let Numbered { groups, ids } = Numbered::of(&selection.keys, group);
            // Across hosts, numbered in SQL when their list fits in a
            // query (summed by group there, and keyed by small numbers);
            // else read by id and grouped here.
            let in_sql = ids.len() <= MAX_GROUPED_IDS;
            let rows = match selection.level {
                Level::Series => self.select::<HistogramOut>(&merged_sql(&stretches))?,
                Level::Transaction => {
                    let only = in_sql.then_some(&ids);
                    self.transaction_histograms(planned, &selection, step, &stretches, only)?
                }
            };
            let grouped = in_sql && selection.level == Level::Transaction;
            for row in rows {
                let number = if grouped {
                    Some(row.series_id)
                } else {
                    ids.get(&row.series_id).copied()
                };
                let Some(g) = number.and_then(|n| groups.get(n as usize)) else {
                    continue;
                };
                let histogram = self.histogram_of(&row)?;
                match merged.entry((g.clone(), row.step_start)) {
                    std::collections::btree_map::Entry::Occupied(mut total) => total.get_mut().merge(&histogram),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(histogram);
                    }
                }
            }
        }
        Ok(merged)
    }

    fn histogram_of(&self, row: &HistogramOut) -> Result<Histogram, StoreError> {
        let buckets = Histogram::decode_buckets(&bucket_blob(&row.idx, &row.cnt))
            .ok_or_else(|| self.error(format!("series {} has unreadable buckets", row.series_id)))?;
        Ok(Histogram {
            scale: row.scale,
            zero_count: row.zeros,
            zero_threshold: row.zt,
            buckets,
            count: row.n,
            sum: row.total,
            min: if row.n > 0 { row.lo } else { f64::INFINITY },
            max: if row.n > 0 { row.hi } else { 0.0 },
            estimated: row.est > 0,
        })
    }
}

impl ClickHouseStore {
    /// The histograms of a read across hosts per transaction series, or per
    /// group of them (`groups` numbers them; the answer's `series_id` is
    /// then the number), step and scale (the caller merges the scales): their
    /// scalars from the states `scalars` select per stretch, their buckets
    /// summed from the bucket rows (`txn_bucket_*`) by index; two queries,
    /// joined here.
    fn transaction_histograms(
        &self,
        planned: &Planned,
        selection: &Selection,
        step: Option<i64>,
        scalars: &[String],
        groups: Option<&HashMap<u64, u64>>,
    ) -> Result<Vec<HistogramOut>, StoreError> {
        #[derive(Deserialize)]
        struct BucketsOut {
            series_id: u64,
            step_start: i64,
            scale: i32,
            idx: Vec<i64>,
            cnt: Vec<u64>,
        }
        // The group of a row (rows of no group are left out), or its id.
        let group = match groups {
            Some(groups) if groups.is_empty() => return Ok(Vec::new()),
            Some(groups) => group_of("series_id", groups),
            None => "series_id".to_owned(),
        };
        let grouped = if groups.is_some() {
            format!(" WHERE g != {NO_GROUP}")
        } else {
            String::new()
        };
        let scalars = format!(
            "SELECT g AS series_id, step_start, scale, sum(runs) AS n, sum(s) AS total, minIf(low, runs > 0) AS lo,
                    maxIf(high, runs > 0) AS hi, sum(z) AS zeros, max(zero_below) AS zt, max(e) AS est,
                    emptyArrayInt64() AS idx, emptyArrayUInt64() AS cnt
             FROM (SELECT {group} AS g, step_start, scale, n AS runs, total AS s, lo AS low, hi AS high,
                          zeros AS z, zt AS zero_below, est AS e
                   FROM ({})){grouped}
             GROUP BY g, step_start, scale",
            scalars.join(" UNION ALL ")
        );
        let only = &selection.only;
        let parts: Vec<String> = planned
            .stretches
            .iter()
            .map(|s| {
                let (r, a, b) = (s.resolution, s.from, s.to);
                let start = step_start(r, step);
                format!(
                    "SELECT txn_id AS series_id, {start} AS step_start, scale, idx, n FROM txn_bucket_{r}
                     WHERE {r} >= {a} AND {r} < {b}{only}"
                )
            })
            .collect();
        let union = parts.join(" UNION ALL ");
        // Summed by `sumMap` per id (or group), step and scale: on 18.16
        // about half the time of a GROUP BY on the bucket index followed
        // by `groupArray`, however the keys are packed.
        let buckets = format!(
            "SELECT series_id, step_start, scale, tupleElement(m, 1) AS idx, tupleElement(m, 2) AS cnt
             FROM (SELECT g AS series_id, step_start, scale, sumMap([i], [c]) AS m
                   FROM (SELECT {group} AS g, step_start, scale, idx AS i, n AS c FROM ({union})){grouped}
                   GROUP BY g, step_start, scale)"
        );
        // Independent: asked side by side, the scalars' wait hides behind
        // the buckets'.
        let (rows, buckets) = std::thread::scope(|threads| {
            let scalars = threads.spawn(|| self.select::<HistogramOut>(&scalars));
            let buckets = self.select::<BucketsOut>(&buckets);
            (crate::sync::joined(scalars), buckets)
        });
        let (mut rows, buckets) = (rows?, buckets?);
        let at: HashMap<(u64, i64, i32), usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.series_id, r.step_start, r.scale), i))
            .collect();
        for found in buckets {
            if let Some(&i) = at.get(&(found.series_id, found.step_start, found.scale)) {
                rows[i].idx = found.idx;
                rows[i].cnt = found.cnt;
            }
        }
        Ok(rows)
    }
}

/// The query merging the histogram parts `stretches` select per id and
/// step: each part downscaled to the coarsest scale of its id and step.
fn merged_sql(stretches: &[String]) -> String {
    let p = |i: usize| format!("tupleElement(p, {i})");
    format!(
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
    )
}
