//! The ClickHouse store's write path: a batch encoded as `JSONEachRow`
//! rows per table, group-committed with other writers' rows, the trace
//! links errors wait for, and retention (dropping whole partitions).

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::schema::{Resolution, PARTITIONED};
use super::txn::txn_id;
use super::{now_nanos, quote, series_id, ClickHouseStore};
use crate::histogram::Histogram;
use crate::store::group_commit::Gather;
use crate::store::links;
use crate::store::rollup::Retention;
use crate::store::{Batch, StoreError};

/// The tables a batch's points go to, in the order they are inserted.
pub(super) const DATA_TABLES: [&str; 9] = [
    // Before the points that name them, as series are.
    "txn",
    "histogram_minute",
    "counter_minute",
    // The roll-ups across hosts' feeds (`ROLLUP_FEEDS`).
    "txn_histogram_in",
    "txn_counter_in",
    "error_minute",
    "kept_trace",
    "stream",
    "metric_transaction",
];

/// The tables (engine `Null`) whose rows feed the roll-ups across hosts
/// through their materialised views (`super::txn`): rows merged per
/// transaction series here, so that ClickHouse parses and unrolls each
/// transaction's buckets once per minute and block, not once per host.
pub(super) const ROLLUP_FEEDS: [&str; 2] = ["txn_histogram_in", "txn_counter_in"];

/// One or more batches, as `JSONEachRow` rows ready to insert.
#[derive(Default)]
pub(super) struct Encoded {
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

/// The INSERTs of one group ([`ClickHouseStore::insert_group`]): which are
/// done, and the deduplication token each carries when the server has them
/// (`insert_deduplication_token`, ClickHouse 22.3 and later): `<prefix>-<table>`.
/// A group sent again under the same prefix, after a failure or a crash
/// (the journal's segment), is then stored once, even an INSERT whose
/// answer was lost after it landed.
pub(super) struct Blocks {
    prefix: Option<String>,
    done: Vec<&'static str>,
}

impl Blocks {
    /// A group's INSERTs, tokens made of `prefix` (`None`: the server has
    /// no deduplication tokens, or the group is sent once).
    pub(super) fn new(prefix: Option<String>) -> Blocks {
        Blocks {
            prefix,
            done: Vec::new(),
        }
    }

    fn done(&self, table: &str) -> bool {
        self.done.contains(&table)
    }

    /// Inserts `rows` into `table` unless done already.
    fn insert(&mut self, store: &ClickHouseStore, table: &'static str, rows: &[u8]) -> Result<(), StoreError> {
        if self.done(table) {
            return Ok(());
        }
        let token = self.prefix.as_ref().map(|prefix| format!("{prefix}-{table}"));
        store.insert_encoded(table, rows, token.as_deref())?;
        self.done.push(table);
        Ok(())
    }
}

/// Whether series of `kind` hold runs counted from spans.
fn is_span_counted(kind: &str) -> bool {
    kind.ends_with(crate::store::SPAN_COUNTED)
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
pub(super) fn bucket_blob(indexes: &[i64], counts: &[u64]) -> Vec<u8> {
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

/// A transaction series (a series key without its host, `super::txn`).
#[derive(Serialize)]
struct TxnRow<'a> {
    id: u64,
    service: &'a str,
    txn: &'a str,
    feature: &'a str,
    kind: &'a str,
    environment: &'a str,
}

/// A minute row of a series (`histogram_minute`), or of a transaction
/// series across hosts (`txn_histogram_in`: no `series_id`).
#[derive(Serialize)]
struct HistogramRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    series_id: Option<u64>,
    txn_id: u64,
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

/// A counter's minute of a series (`counter_minute`), or of a transaction
/// series across hosts (`txn_counter_in`: no `series_id`).
#[derive(Serialize)]
struct CounterRow<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    series_id: Option<u64>,
    txn_id: u64,
    name: &'a str,
    labels: &'a str,
    minute: i64,
    value: f64,
}

impl HistogramRow {
    fn new(series_id: Option<u64>, txn_id: u64, minute: i64, h: &Histogram) -> HistogramRow {
        let h = h.for_store();
        let (bucket_index, bucket_count) = h.iter_buckets().unzip();
        HistogramRow {
            series_id,
            txn_id,
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
    }
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

impl ClickHouseStore {
    /// Encodes a batch: its points, and its series this process has not
    /// written yet. Done by each writer, outside the group's lock.
    pub(super) fn encode_batch(&self, batch: &Batch) -> Result<Encoded, StoreError> {
        let mut out = Encoded {
            rows: batch.len(),
            ..Encoded::default()
        };
        let mut txns = Vec::new();
        {
            let known = crate::sync::lock(&self.known);
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
                    self.encode(
                        &mut txns,
                        [TxnRow {
                            id: txn_id(key),
                            service: &key.service,
                            txn: &key.transaction,
                            feature: &key.feature,
                            kind: &key.kind,
                            environment: &key.environment,
                        }],
                    )?;
                }
            }
        }
        let [transactions, histograms, counters, txn_histograms, txn_counters, errors, traces, streams, metric_transactions] =
            &mut out.tables;
        *transactions = txns;
        // One row per series and minute of the batch (an SDK sends a point
        // per outcome; a hostile one thousands), saturated at 2^49 runs:
        // `UInt64` sums over a series' rows wrap, so their rows stay few and
        // bounded (2,100 points of 2^53 runs in one request wrapped).
        let mut merged: HashMap<(u64, i64), (u64, Cow<'_, Histogram>)> = HashMap::new();
        for p in &batch.histograms {
            match merged.entry((series_id(&p.key), p.minute)) {
                Entry::Occupied(mut row) => row.get_mut().1.to_mut().merge(&p.histogram),
                Entry::Vacant(row) => {
                    row.insert((txn_id(&p.key), Cow::Borrowed(&p.histogram)));
                }
            }
        }
        // And one per transaction series and minute, hosts merged, for the
        // roll-ups across hosts.
        let mut across: HashMap<(u64, i64), Cow<'_, Histogram>> = HashMap::new();
        for (&(_, minute), (txn_id, h)) in &merged {
            match across.entry((*txn_id, minute)) {
                Entry::Occupied(mut row) => row.get_mut().to_mut().merge(h),
                Entry::Vacant(row) => {
                    row.insert(Cow::Borrowed(&**h));
                }
            }
        }
        self.encode(
            histograms,
            merged
                .iter()
                .map(|(&(series_id, minute), (txn_id, h))| HistogramRow::new(Some(series_id), *txn_id, minute, h)),
        )?;
        self.encode(
            txn_histograms,
            across
                .iter()
                .map(|(&(txn_id, minute), h)| HistogramRow::new(None, txn_id, minute, h)),
        )?;
        let counter_rows = batch.counters.iter().map(|p| CounterRow {
            series_id: Some(series_id(&p.key)),
            txn_id: txn_id(&p.key),
            name: &p.name,
            labels: &p.labels,
            minute: p.minute,
            value: finite(p.value),
        });
        self.encode(counters, counter_rows.clone())?;
        let mut summed: HashMap<(u64, &str, &str, i64), f64> = HashMap::new();
        for row in counter_rows {
            *summed
                .entry((row.txn_id, row.name, row.labels, row.minute))
                .or_default() += row.value;
        }
        self.encode(
            txn_counters,
            summed
                .into_iter()
                .map(|((txn_id, name, labels, minute), value)| CounterRow {
                    series_id: None,
                    txn_id,
                    name,
                    labels,
                    minute,
                    value: finite(value),
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
        let registered = crate::sync::lock(&self.metric_series);
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
    /// names a series that is not stored), then one INSERT per table, then
    /// the trace links. `blocks` names each INSERT (deduplication tokens,
    /// when the server has them) and remembers which are done, so that a
    /// group sent again after a failure sends only the rest.
    pub(super) fn insert_group(&self, group: &Encoded, blocks: &mut Blocks) -> Result<(), StoreError> {
        let series: Vec<u8> = group.series.values().flatten().copied().collect();
        blocks.insert(self, "series", &series)?;
        crate::sync::lock(&self.known).extend(group.series.keys());
        for (table, rows) in DATA_TABLES.iter().zip(&group.tables) {
            blocks.insert(self, table, rows)?;
        }
        crate::sync::lock(&self.metric_series).extend(&group.metric_series);
        if !blocks.done("trace_link") {
            let links = self.links_waited_for(&group.links)?;
            let mut rows = Vec::new();
            self.encode(&mut rows, &links)?;
            blocks.insert(self, "trace_link", &rows)?;
        }
        Ok(())
    }

    /// The links of `links` to keep: those of failed requests, and those of
    /// traces an error waits for (this round's errors are stored already).
    /// Errors come minutes at most before their request's spans: the search
    /// reads the days around the links, not the whole table.
    fn links_waited_for(&self, links: &[LinkRow]) -> Result<Vec<LinkRow>, StoreError> {
        let (mut kept, others): (Vec<LinkRow>, Vec<LinkRow>) = links.iter().cloned().partition(|l| l.failed);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;

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
