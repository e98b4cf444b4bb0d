//! Where the reporter keeps what it receives, behind the [`Store`] trait.
//!
//! The analysis layer speaks only to [`Store`], and the merge of histograms
//! is pushed down into the store: [`Store::histograms`] returns one merged
//! histogram per series for a window, so a ClickHouse store can do the merge
//! in SQL without the analysis layer changing. The embedded default is
//! [`sqlite::SqliteStore`]; [`clickhouse::ClickHouseStore`] is shared by
//! several reporters. Each backend is a folder of the same shape: `mod.rs`
//! (opening it), `schema.rs` (tables and migrations), `writes.rs`,
//! `reads.rs` (its [`Store`] queries), `state.rs` (its
//! [`DeliveryState`]), `triage.rs` (its [`ErrorTriage`]), `deploys.rs`
//! (its [`Deploys`]) and `sightings.rs` (its [`ProblemSightings`]). What both
//! share: the data types and [`StoreError`] here, the delivery ledger's and
//! alert states' rows and trait in [`state`], the error groups' triage in
//! [`triage`], and how a window is split by resolution in `plan.rs`.

pub mod clickhouse;
pub mod deploys;
pub(crate) mod group_commit;
pub(crate) mod headroom;
pub(crate) mod hosts;
pub(crate) mod journal;
pub(crate) mod links;
pub(crate) mod pending;
pub(crate) mod plan;
pub mod rollup;
pub mod sightings;
pub mod spans;
pub mod sql;
pub mod sqlite;
pub mod state;
pub mod triage;

use std::collections::BTreeMap;
use std::sync::Arc;

use self::deploys::Deploys;
use self::sightings::ProblemSightings;
use self::state::DeliveryState;
use self::triage::ErrorTriage;
use crate::cumulative::{StreamId, StreamState};
use crate::histogram::Histogram;

/// What identifies a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SeriesKey {
    /// `service.name`.
    pub service: String,
    /// `host.name`.
    pub host: String,
    /// The transaction, e.g. `GET /cards/{id}`.
    pub transaction: String,
    /// The product feature, empty when none.
    pub feature: String,
    /// `web` or `job`.
    pub kind: String,
    /// `deployment.environment.name`, empty when none.
    pub environment: String,
}

/// The suffix of the kind of series (`web.spans`, `job.spans`) that hold a
/// transaction's runs counted from its spans: read only while no duration
/// metric counts the transaction's runs (one source of truth per run).
pub(crate) const SPAN_COUNTED: &str = ".spans";

impl SeriesKey {
    /// The transaction's kind, `web` or `job`, also for a series of runs
    /// counted from spans.
    pub fn transaction_kind(&self) -> &str {
        self.kind.strip_suffix(SPAN_COUNTED).unwrap_or(&self.kind)
    }
}

/// One minute of one series' durations.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistogramPoint {
    /// The series (shared by a batch's points of one series: the ingest
    /// path then names, limits and resolves it once per request).
    pub key: Arc<SeriesKey>,
    /// Unix time in minutes.
    pub minute: i64,
    /// Durations, in seconds.
    pub histogram: Histogram,
}

/// One minute of one counter of one series (outcomes, Apdex zones, segments).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CounterPoint {
    /// The series (shared, as [`HistogramPoint::key`]).
    pub key: Arc<SeriesKey>,
    /// Unix time in minutes.
    pub minute: i64,
    /// The metric, e.g. `kuroko.transaction.outcomes`.
    pub name: String,
    /// Its other attributes, canonical `k=v` pairs joined by `,`.
    pub labels: String,
    /// The amount added in the minute.
    pub value: f64,
}

/// Traces kept per series and hour, by both stores: the slowest.
pub(crate) const TRACES_PER_HOUR: i64 = 20;

/// Runs of one trace id read at most ([`Store::traces_with_id`]): a request
/// fanning out to more services than this shows its first ones.
pub(crate) const MAX_JOINED_RUNS: usize = 200;

/// The transaction of errors that came with none (and whose trace, if any,
/// has not been tied to one).
pub const NO_TRANSACTION: &str = "(none)";

/// Occurrences of one distinct error in one minute of one series.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorPoint {
    /// The series it happened in (`transaction` is [`NO_TRANSACTION`] when unknown).
    pub key: SeriesKey,
    /// Unix time in minutes.
    pub minute: i64,
    /// `exception.type`, or `error`.
    pub error_type: String,
    /// `exception.message`, or the record's body.
    pub message: String,
    /// `file:line`, when known.
    pub location: String,
    /// How many times.
    pub count: u64,
    /// Last occurrence, unix nanoseconds.
    pub last_seen: u64,
    /// The service's own grouping key (`kuroko.error.fingerprint`), empty when none.
    pub fingerprint: String,
    /// `exception.stacktrace`, cut to the stack trace limit; empty when none.
    /// Errors with different stack traces are different rows.
    pub stacktrace: String,
    /// The trace it happened in (32 hex digits) while its transaction is
    /// unknown ([`NO_TRANSACTION`]), else empty: reads tie it to the
    /// transaction whose span in that trace a [`TraceLink`] names.
    pub trace_id: String,
}

/// A transaction span's place in its trace, written when the span arrives:
/// errors of the same trace and service that came without a transaction
/// (log records export before the spans of their request) are read as that
/// transaction's. Stores keep a link only when the request failed (`failed`)
/// or an error of its trace waits for it, so that they do not keep one row
/// per request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceLink {
    /// The transaction's series.
    pub key: SeriesKey,
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// The transaction span's id, 16 hex digits.
    pub span_id: String,
    /// The span's start, unix nanoseconds.
    pub start: u64,
    /// The span's end, unix nanoseconds.
    pub end: u64,
    /// Whether the request shows a failure (status ERROR, a 5xx status, an
    /// exception event): kept even when no error of its trace is stored yet.
    pub failed: bool,
}

/// A kept trace: one slow run with its spans.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TracePoint {
    /// The transaction's series.
    pub key: SeriesKey,
    /// Trace id, hex.
    pub trace_id: String,
    /// Start, unix nanoseconds.
    pub start: u64,
    /// Duration of the run, seconds.
    pub duration: f64,
    /// The run's spans (root first) as JSON: name, kind, start, duration, attributes.
    pub spans: String,
}

/// What one request brings, written all at once.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    /// Duration histograms.
    pub histograms: Vec<HistogramPoint>,
    /// Counters.
    pub counters: Vec<CounterPoint>,
    /// Errors.
    pub errors: Vec<ErrorPoint>,
    /// Traces to keep (the store keeps only the slowest per series and hour).
    pub traces: Vec<TracePoint>,
    /// Transaction spans' places in their traces (not points: not counted
    /// by [`Batch::len`]).
    pub links: Vec<TraceLink>,
    /// Cumulative streams' new last points, kept with the points they gave
    /// (see [`crate::cumulative`]); not points themselves.
    pub streams: Vec<(StreamId, StreamState)>,
}

impl Batch {
    /// Points in the batch.
    pub fn len(&self) -> usize {
        self.histograms.len() + self.counters.len() + self.errors.len() + self.traces.len()
    }

    /// True when there is nothing to write: points, links or stream states.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.links.is_empty() && self.streams.is_empty()
    }
}

/// Runs and their total seconds in one step of one series:
/// `(series, step start, count, sum)` ([`Store::totals_steps`]).
pub(crate) type StepTotal = (SeriesKey, i64, u64, f64);

/// The group of the series met last: step answers come ordered by series,
/// so the grouped defaults ask the caller once per series, not once per row.
#[derive(Default)]
struct LastGroup(Option<(SeriesKey, Option<usize>)>);

impl LastGroup {
    fn of(&mut self, key: SeriesKey, group: &mut dyn FnMut(&SeriesKey) -> Option<usize>) -> Option<usize> {
        match &self.0 {
            Some((seen, number)) if *seen == key => *number,
            _ => {
                let number = group(&key);
                self.0 = Some((key, number));
                number
            }
        }
    }
}

/// Which series a question is about; `None` matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Only this service.
    pub service: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only this transaction.
    pub transaction: Option<String>,
    /// Only this feature.
    pub feature: Option<String>,
    /// Only this deployment environment.
    pub environment: Option<String>,
    /// Answer per transaction series, hosts merged: the histogram and
    /// counter reads ([`Store::histograms`], [`Store::counters`] and their
    /// step and grouped forms) return keys whose `host` is empty, one per
    /// key without its host, as if the per-series answer were merged
    /// ([`hosts`]). A store with roll-ups across hosts reads those, so
    /// that the read scales with transactions, not with hosts. Errors and
    /// kept traces are always per series.
    pub across_hosts: bool,
}

impl Filter {
    /// Whether `key` is a series the filter selects.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        let is = |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        is(&self.service, &key.service)
            && is(&self.host, &key.host)
            && is(&self.transaction, &key.transaction)
            && is(&self.feature, &key.feature)
            && is(&self.environment, &key.environment)
    }

    /// The filter without its transaction and feature: what an error that
    /// waits for its trace's transaction is read with, before it is tied.
    pub(crate) fn untied(&self) -> Filter {
        Filter {
            transaction: None,
            feature: None,
            ..self.clone()
        }
    }
}

/// What an operator should know about a store's state (`/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Bytes free on the store's file system, when known.
    pub free_bytes: Option<u64>,
    /// Bytes kept free (`[limits] min_free_bytes`; 0: not checked).
    pub min_free_bytes: u64,
    /// Whether writes are being refused for want of space now.
    pub disk_low: bool,
    /// Writes refused for want of space since start.
    pub writes_refused_disk: u64,
    /// Hours and days whose roll-up failed and are set aside (their finer
    /// rows kept), now.
    pub quarantined: u64,
    /// Roll-ups of one hour or day that failed, since start.
    pub rollup_failures: u64,
    /// Syncs of the ingest journal to the disk since start (`[journal]
    /// fsync = "batch"`; 0 otherwise).
    pub journal_fsyncs: u64,
    /// A ClickHouse replica's journal: bytes acknowledged and not yet in
    /// ClickHouse, now.
    pub journal_waiting_bytes: u64,
    /// Its blocks sent to ClickHouse since start.
    pub journal_blocks_sent: u64,
    /// Its sends that failed (and are retried) since start.
    pub journal_send_failures: u64,
    /// Writes refused because it held `[journal] max_bytes`, since start.
    pub writes_refused_behind: u64,
}

impl StoreHealth {
    /// Whether roll-up passes should wait for disk space: while writes are
    /// refused, or while less than twice the headroom is free (the
    /// headroom is the flushes'; a pass may spend as much again).
    pub(crate) fn rolls_wait(&self) -> bool {
        let kept = self.min_free_bytes;
        self.disk_low || (kept > 0 && self.free_bytes.is_some_and(|free| free < kept.saturating_mul(2)))
    }
}

/// A store's failure, by what a caller can do about it; what the backend
/// said is carried in the variant (for [`StoreError::Database`], in its
/// [`DatabaseError`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed: it could not be opened or reached, or it refused
    /// or broke off a statement. What it said is in the message itself (not
    /// only in a source a log line may not print).
    #[error("{store}: {detail}")]
    Database {
        /// The store as messages name it: `store PATH` (the embedded file)
        /// or `ClickHouse store HOST:PORT/DATABASE`.
        store: String,
        /// What the backend said.
        detail: DatabaseError,
    },
    /// The store was written by a newer reporter.
    #[error("store {path} has schema version {found}, newer than this kuroko's {supported}: upgrade kuroko, or point it at another file")]
    NewerSchema {
        /// The store's file or database.
        path: String,
        /// The store's version.
        found: i64,
        /// This build's version.
        supported: i64,
    },
    /// The journal could not be written or read: the request is refused
    /// (the client retries), nothing acknowledged is lost.
    #[error("store journal {path}: {source}; free disk space or fix the folder's permissions")]
    Journal {
        /// The journal's folder.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another process (a running `kuroko serve`) owns this store's ingest.
    #[error("store {path} is being written by another kuroko process: send data to that reporter, or stop it first")]
    NotIngesting {
        /// The store's file.
        path: String,
    },
    /// Writing would leave less free space than the headroom a flush needs:
    /// the request is refused (the client retries), nothing acknowledged is
    /// lost.
    #[error("the store's disk is nearly full ({free} bytes free in {dir}; {min_free} are kept free so that acknowledged data can be flushed): retry later; free space there or lower [limits] min_free_bytes")]
    DiskLow {
        /// The store's folder.
        dir: String,
        /// Bytes free there.
        free: u64,
        /// Bytes kept free (`[limits] min_free_bytes`).
        min_free: u64,
    },
    /// Another `kuroko serve` already writes this store.
    #[error("store {path} is already served by another kuroko process{holder} (it holds an exclusive lock on {lock}): stop it first, or give this one another --store")]
    AlreadyServed {
        /// The store's file.
        path: String,
        /// The lock file.
        lock: String,
        /// ` (pid N)` when the lock file names its holder.
        holder: String,
    },
    /// A journal record could not be encoded or read back.
    #[error("store {path}: a batch in journal segment {id} cannot be encoded or read back; move the store's -ingest folder aside to start without it, or report a bug")]
    Inbox {
        /// The store's file.
        path: String,
        /// The journal segment (0 when encoding).
        id: i64,
        /// What postcard said.
        source: postcard::Error,
    },
    /// Another process holds this ClickHouse replica's journal.
    #[error("the journal {dir} is held by another kuroko process{holder}: give each replica its own [journal] dir (or KUROKO_JOURNAL_DIR), or stop that process first")]
    JournalHeld {
        /// The journal's folder.
        dir: String,
        /// ` (pid N)` when the lock file names its holder.
        holder: String,
    },
    /// ClickHouse is behind: the replica's journal holds `[journal]
    /// max_bytes` not yet sent. The request is refused (the client
    /// retries); nothing acknowledged is lost.
    #[error("ClickHouse is behind: {waiting} bytes of acknowledged data wait in the journal {dir} (the most kept is {max}, [journal] max_bytes): retry later; see the reporter's log for why ClickHouse does not take them")]
    Behind {
        /// The journal's folder.
        dir: String,
        /// Bytes waiting.
        waiting: u64,
        /// `[journal] max_bytes`.
        max: u64,
    },
    /// The store's location is not a URL kuroko understands.
    #[error("store {url}: {reason}")]
    Url {
        /// The location, its credentials hidden.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl StoreError {
    /// The embedded store's file at `path` failed with `cause`.
    pub(crate) fn sqlite(path: String, cause: rusqlite::Error) -> StoreError {
        StoreError::Database {
            store: format!("store {path}"),
            detail: DatabaseError::Sqlite(cause),
        }
    }

    /// The ClickHouse store at `server` (`host:port/database`) failed:
    /// `message`, with the server's own when it sent one.
    pub(crate) fn clickhouse(server: String, message: String) -> StoreError {
        StoreError::Database {
            store: format!("ClickHouse store {server}"),
            detail: DatabaseError::ClickHouse(message),
        }
    }
}

/// What a store's database said ([`StoreError::Database`]), by backend.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// What SQLite said.
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    /// What went wrong talking to ClickHouse, with the server's own message
    /// when it sent one.
    #[error("{0}")]
    ClickHouse(String),
}

/// One distinct error over a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorSummary {
    /// Where it happened.
    pub key: SeriesKey,
    /// Its type.
    pub error_type: String,
    /// Its message.
    pub message: String,
    /// Its location.
    pub location: String,
    /// Occurrences in the window.
    pub count: u64,
    /// First minute it was seen in the window.
    pub first_minute: i64,
    /// Last occurrence, unix nanoseconds.
    pub last_seen: u64,
    /// The service's own grouping key (`kuroko.error.fingerprint`), empty when none.
    pub fingerprint: String,
    /// Its stack trace (`exception.stacktrace`, cut), empty when none; shared
    /// by the rows that carry the same one.
    pub stacktrace: Arc<str>,
}

/// The reporter's storage of data; see the [module documentation](self).
/// Every store also keeps the delivery ledger and alert states
/// ([`DeliveryState`], see [`state`] for why it is a supertrait), and the
/// error groups' triage ([`ErrorTriage`], in [`triage`]) and the services'
/// versions as first seen ([`Deploys`], in [`deploys`]), and when each
/// performance problem was first and last seen ([`ProblemSightings`], in
/// [`sightings`]).
pub trait Store: DeliveryState + ErrorTriage + Deploys + ProblemSightings {
    /// Writes `batch` durably: once this returns `Ok`, the batch survives a
    /// crash of the reporter. Points of a series and minute already stored
    /// are merged with it.
    fn write(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Writes `batch` as [`write`](Store::write) does, if it can without
    /// waiting on I/O or a lock held for I/O; `Ok(false)` when it could not,
    /// having written nothing. The receiver tries this on its async worker
    /// first and lends the worker to `write` only when it returns `false`
    /// (handing the worker over cost 10–15% of ingest's CPU). The default
    /// never can.
    fn write_quick(&self, batch: &Batch) -> Result<bool, StoreError> {
        let _ = batch;
        Ok(false)
    }

    /// One histogram per series matching `filter`, merged over the minutes
    /// `from..to` (unix minutes).
    fn histograms(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<(SeriesKey, Histogram)>, StoreError>;

    /// Sums of counter `name` per series and labels, over `from..to`.
    fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, StoreError>;

    /// Every series the store holds.
    fn series(&self) -> Result<Vec<SeriesKey>, StoreError>;

    /// The last points of cumulative streams written with earlier batches
    /// ([`Batch::streams`]): of `ids`, or all of them when `None`.
    fn streams(&self, ids: Option<&[StreamId]>) -> Result<Vec<(StreamId, StreamState)>, StoreError>;

    /// Whether other processes write to this store too (replicas on one
    /// ClickHouse): the receiver then reads the streams of each request from
    /// it, not only from its own memory. The default: not shared.
    fn shared(&self) -> bool {
        false
    }

    /// Bytes the store takes on disk.
    fn size_bytes(&self) -> u64;

    /// Its disk headroom and roll-up quarantine, for `/metrics`.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }

    /// Distinct errors (type, message, location, fingerprint and stack trace)
    /// per series over `from..to` (unix minutes), most frequent first. Errors
    /// that came without a transaction but with a trace id are read as the
    /// transaction its [`TraceLink`] names, when the store holds one.
    fn errors(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<ErrorSummary>, StoreError>;

    /// The slowest kept traces of series matching `filter` that started in
    /// `from..to` (unix minutes), slowest first, at most `limit`.
    fn slowest_traces(&self, filter: &Filter, from: i64, to: i64, limit: usize) -> Result<Vec<TracePoint>, StoreError>;

    /// [`Store::slowest_traces`] of every transaction (service and
    /// transaction name) `filter` matches, in one read: the slowest `limit`
    /// of each, slowest first within each, transactions in no order.
    fn slowest_traces_each(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<TracePoint>, StoreError>;

    /// Every kept trace of `trace_id` that started in `from..to` (unix
    /// minutes), one per series that kept it, earliest first: the runs of
    /// one request across services, for joining them into one waterfall.
    fn traces_with_id(&self, trace_id: &str, from: i64, to: i64) -> Result<Vec<TracePoint>, StoreError>;

    /// One merged histogram per series matching `filter` and step of `step`
    /// minutes over `from..to`: `(series, step start, histogram)`, ordered by
    /// series then step. Steps start at multiples of `step` unix minutes (so
    /// hours and days are UTC's); the first and last may hold only the part
    /// inside the window. The store reads the coarsest rows that fall whole
    /// into a step (days when `step` is a multiple of 1,440, hours when of 60).
    ///
    /// The default asks [`Store::histograms`] once per step: correct for any
    /// store, and what a store without its own step query falls back on.
    fn histogram_steps(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, i64, Histogram)>, StoreError> {
        let mut out = Vec::new();
        for start in steps(from, to, step) {
            for (key, histogram) in self.histograms(filter, start.max(from), (start + step).min(to))? {
                out.push((key, start, histogram));
            }
        }
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(out)
    }

    /// [`Store::histogram_steps`] merged across series too: `group` puts each
    /// series in a group (a small number the caller chose) or leaves it out
    /// (`None`), and the answer holds one histogram per group and step,
    /// ordered by group then step. A chart of a feature over a week reads
    /// tens of thousands of rows into a few hundred histograms, without
    /// keeping one per series and step on the way.
    ///
    /// The default merges [`Store::histogram_steps`]'s answer.
    fn histogram_steps_grouped(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<Vec<(usize, i64, Histogram)>, StoreError> {
        let mut merged: BTreeMap<(usize, i64), Histogram> = BTreeMap::new();
        let mut last = LastGroup::default();
        for (key, start, histogram) in self.histogram_steps(filter, from, to, step)? {
            if let Some(group) = last.of(key, group) {
                match merged.entry((group, start)) {
                    std::collections::btree_map::Entry::Occupied(mut total) => total.get_mut().merge(&histogram),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(histogram);
                    }
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|((group, start), h)| (group, start, h))
            .collect())
    }

    /// [`Store::counter_steps`] summed across series into groups, as
    /// [`Store::histogram_steps_grouped`] does: `(group, labels, step start,
    /// sum)`, ordered by group, labels and step.
    ///
    /// The default sums [`Store::counter_steps`]'s answer.
    fn counter_steps_grouped(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
        group: &mut dyn FnMut(&SeriesKey) -> Option<usize>,
    ) -> Result<Vec<(usize, String, i64, f64)>, StoreError> {
        let mut sums: BTreeMap<(usize, String, i64), f64> = BTreeMap::new();
        let mut last = LastGroup::default();
        for (key, labels, start, value) in self.counter_steps(filter, name, from, to, step)? {
            if let Some(number) = last.of(key, group) {
                *sums.entry((number, labels, start)).or_default() += value;
            }
        }
        Ok(sums
            .into_iter()
            .map(|((g, labels, start), v)| (g, labels, start, v))
            .collect())
    }

    /// Runs and their total duration per series and step, as
    /// [`Store::histogram_steps`] would give them without the buckets:
    /// `(series, step start, count, sum)`. Sparklines need no more, and a
    /// store can sum columns far faster than it merges histograms.
    ///
    /// The default takes them from [`Store::histogram_steps`].
    fn totals_steps(&self, filter: &Filter, from: i64, to: i64, step: i64) -> Result<Vec<StepTotal>, StoreError> {
        Ok(self
            .histogram_steps(filter, from, to, step)?
            .into_iter()
            .map(|(key, start, histogram)| (key, start, histogram.count, histogram.sum))
            .collect())
    }

    /// Sums of counter `name` per series, labels and step of `step` minutes
    /// over `from..to`: `(series, labels, step start, sum)`; steps as in
    /// [`Store::histogram_steps`].
    /// The default asks [`Store::counters`] once per step.
    fn counter_steps(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, String, i64, f64)>, StoreError> {
        let mut out = Vec::new();
        for start in steps(from, to, step) {
            for (key, labels, total) in self.counters(filter, name, start.max(from), (start + step).min(to))? {
                out.push((key, labels, start, total));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        Ok(out)
    }
}

/// Starts of the steps of `step` minutes (at multiples of `step`) that
/// overlap `from..to`.
fn steps(from: i64, to: i64, step: i64) -> impl Iterator<Item = i64> {
    let step = step.max(1);
    let first = from.div_euclid(step) * step;
    (0..)
        .map(move |i| first + i * step)
        .take_while(move |start| *start < to)
}
