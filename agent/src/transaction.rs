//! The recording API: transaction handles, guards, outcomes and segments.
//!
//! A [`Transaction`] is a pre-resolved handle to one transaction's series:
//! resolve it once (`agent.transaction("GET /cards/{id}")`) and record through
//! it as often as you like. Recording is a few atomic additions into the
//! current thread's shard: no lock, no allocation, no system call.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::Stamp;
use crate::config::nanos;
use crate::errors::CapturedError;
use crate::segments::SegmentStats;
use crate::series::Series;
use crate::trace_context::TraceContext;
use crate::traces::{RunIds, RunTrace};

/// What kind of work a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    /// A web request, named `METHOD /route/{template}`.
    Web,
    /// A background job, a message consumer, a scheduled task.
    Job,
}

impl TransactionKind {
    /// Lower-case name, as exported.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Web => "web",
            TransactionKind::Job => "job",
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    /// Finished normally.
    #[default]
    Ok,
    /// Failed (a job's error, or any transaction marked failed).
    Error,
    /// An HTTP response with this status; 5xx counts as an error.
    Status(u16),
    /// Dropped before it finished (a cancelled future, a client that went away).
    Cancelled,
}

/// Number of outcome counters kept per shard (see [`Outcome::slot`]).
pub(crate) const OUTCOME_SLOTS: usize = 6;

impl Outcome {
    /// Whether this outcome counts as an error (and as frustrated for Apdex).
    #[inline]
    pub fn is_error(self) -> bool {
        match self {
            Outcome::Error => true,
            Outcome::Status(code) => code >= 500,
            Outcome::Ok | Outcome::Cancelled => false,
        }
    }

    /// Counter slot of this outcome; `None` for the common successful case,
    /// which is derived as the count minus the other outcomes.
    #[inline]
    pub(crate) fn slot(self) -> Option<usize> {
        match self {
            Outcome::Ok => None,
            Outcome::Status(code) => match code / 100 {
                0 | 1 => Some(0),
                2 => None,
                3 => Some(1),
                4 => Some(2),
                _ => Some(3),
            },
            Outcome::Error => Some(4),
            Outcome::Cancelled => Some(5),
        }
    }
}

/// What a segment of a transaction spends its time on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SegmentKind {
    /// A database or cache call.
    Database,
    /// A call to another service (HTTP, gRPC, a queue).
    External,
    /// A named piece of the service's own code.
    Code,
}

impl SegmentKind {
    /// All kinds, in a fixed order.
    pub const ALL: [SegmentKind; 3] = [SegmentKind::Database, SegmentKind::External, SegmentKind::Code];

    /// Lower-case name, as exported.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentKind::Database => "database",
            SegmentKind::External => "external",
            SegmentKind::Code => "code",
        }
    }

    /// Parses `database`/`db`, `external`/`http`/`rpc`, `code`.
    pub fn parse(text: &str) -> Option<SegmentKind> {
        match text {
            "database" | "db" => Some(SegmentKind::Database),
            "external" | "http" | "rpc" => Some(SegmentKind::External),
            "code" => Some(SegmentKind::Code),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Identity and fixed properties of one transaction.
#[derive(Debug)]
pub struct TransactionMeta {
    /// Unique name: `GET /cards/{id}` for web transactions, the job's name otherwise.
    pub name: Arc<str>,
    /// Web request or background job.
    pub kind: TransactionKind,
    /// Product feature this transaction belongs to, e.g. `card-scan`.
    pub feature: Option<Arc<str>>,
    /// HTTP method of a web transaction.
    pub method: Option<Arc<str>>,
    /// Route template of a web transaction, e.g. `/cards/{id}`.
    pub route: Option<Arc<str>>,
    /// Apdex threshold T: satisfied at or under T, tolerating up to 4T.
    pub apdex_t: Duration,
    /// True only for the series that collects what the cardinality limit refused.
    pub overflow: bool,
}

/// How to register a transaction: its name and optional properties.
#[derive(Clone, Debug, Default)]
pub struct TransactionSpec {
    pub(crate) name: String,
    pub(crate) kind: Option<TransactionKind>,
    pub(crate) feature: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) route: Option<String>,
    pub(crate) apdex_t: Option<Duration>,
}

const HTTP_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

impl TransactionSpec {
    /// A transaction named `name`. A name of the form `METHOD /route` is a
    /// web transaction with that method and route; anything else is a job.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let mut spec = TransactionSpec {
            name,
            ..Default::default()
        };
        if let Some((method, route)) = spec.name.split_once(' ') {
            if HTTP_METHODS.contains(&method) && route.starts_with('/') {
                spec.kind = Some(TransactionKind::Web);
                spec.method = Some(method.to_owned());
                spec.route = Some(route.to_owned());
            }
        }
        spec
    }

    /// A web request: `method` and the route *template* (`/cards/{id}`),
    /// never the raw path, which would make one series per id.
    pub fn web(method: &str, route: &str) -> Self {
        TransactionSpec {
            name: format!("{method} {route}"),
            kind: Some(TransactionKind::Web),
            method: Some(method.to_owned()),
            route: Some(route.to_owned()),
            ..Default::default()
        }
    }

    /// A background job.
    pub fn job(name: impl Into<String>) -> Self {
        TransactionSpec {
            name: name.into(),
            kind: Some(TransactionKind::Job),
            ..Default::default()
        }
    }

    /// The product feature this transaction belongs to.
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.feature = Some(feature.into());
        self
    }

    /// This transaction's own Apdex threshold.
    pub fn apdex(mut self, threshold: Duration) -> Self {
        self.apdex_t = Some(threshold);
        self
    }

    /// The name the transaction will be registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn kind(&self) -> TransactionKind {
        self.kind.unwrap_or(TransactionKind::Job)
    }
}

/// A pre-resolved handle to one transaction: cheap to clone, cheap to record into.
#[derive(Clone)]
pub struct Transaction {
    pub(crate) series: Arc<Series>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("name", &self.series.meta.name)
            .finish()
    }
}

impl Transaction {
    /// The transaction's name.
    pub fn name(&self) -> &str {
        &self.series.meta.name
    }

    /// The transaction's identity and properties.
    pub fn meta(&self) -> &TransactionMeta {
        &self.series.meta
    }

    /// Records one successful run that took `duration`.
    #[inline]
    pub fn record(&self, duration: Duration) {
        self.series.record(nanos(duration), Outcome::Ok);
    }

    /// Records one run that took `duration` and ended with `outcome`.
    #[inline]
    pub fn record_outcome(&self, duration: Duration, outcome: Outcome) {
        self.series.record(nanos(duration), outcome);
    }

    /// Records one run of `nanos` nanoseconds that ended with `outcome`.
    #[inline(always)]
    pub fn record_nanos(&self, nanos: u64, outcome: Outcome) {
        self.series.record(nanos, outcome);
    }

    /// Starts timing a run; it is recorded when the guard is dropped.
    pub fn start(&self) -> TransactionGuard {
        TransactionGuard {
            tx: Some(self.clone()),
            start: Stamp::now(),
            outcome: Outcome::Ok,
            run: std::sync::OnceLock::new(),
        }
    }

    /// Times a future: the run starts now and is recorded when the future
    /// completes (as [`Outcome::Ok`]) or is dropped first ([`Outcome::Cancelled`]).
    #[track_caller]
    pub fn time<F: Future>(&self, future: F) -> Timed<F> {
        self.timed(future, |_, _, _| {})
    }

    /// Times a future that returns a `Result`: an `Err` marks the run as
    /// failed and is captured as an error of this transaction, located where
    /// `time_result` was called.
    #[track_caller]
    pub fn time_result<F, T, E>(&self, future: F) -> Timed<F>
    where
        F: Future<Output = Result<T, E>>,
        E: std::error::Error + 'static,
    {
        self.timed(future, |output, guard, location| {
            if let Err(error) = output {
                guard.fail_with(CapturedError::from_error_at(error, location));
            }
        })
    }

    #[track_caller]
    fn timed<F: Future>(&self, future: F, classify: Classify<F::Output>) -> Timed<F> {
        let mut guard = self.start();
        guard.outcome = Outcome::Cancelled;
        Timed {
            future,
            guard: Some(guard),
            classify,
            location: Location::caller(),
        }
    }

    /// A pre-resolved handle to one named segment of this transaction.
    pub fn segment(&self, kind: SegmentKind, name: &str) -> Segment {
        Segment {
            stats: self.series.segments.resolve(kind, name),
            run: None,
        }
    }

    /// Captures an error for this transaction without recording a run.
    pub fn capture_error(&self, error: CapturedError) {
        self.series.capture_error(error);
    }
}

/// Times one run of a transaction and records it when dropped.
///
/// Mark how it ended with [`set_status`](Self::set_status),
/// [`set_outcome`](Self::set_outcome) or [`error`](Self::error).
#[must_use = "the run is recorded when the guard is dropped"]
#[derive(Debug)]
pub struct TransactionGuard {
    tx: Option<Transaction>,
    start: Stamp,
    outcome: Outcome,
    /// This run's segments, for its trace if it turns out slow; created by
    /// its first segment.
    run: std::sync::OnceLock<Arc<RunTrace>>,
}

impl TransactionGuard {
    /// The transaction being timed.
    pub fn transaction(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.start.elapsed_ns())
    }

    /// Sets how the run ended.
    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// Sets the run's HTTP status; 5xx counts as an error.
    pub fn set_status(&mut self, status: u16) {
        self.outcome = Outcome::Status(status);
    }

    /// Marks the run failed and captures `error` for the error report.
    #[track_caller]
    pub fn error<E: std::error::Error + 'static>(&mut self, error: &E) {
        self.fail_with(CapturedError::from_error(error));
    }

    /// Marks the run failed and captures a prepared error.
    pub fn fail_with(&mut self, error: CapturedError) {
        if !self.outcome.is_error() {
            self.outcome = Outcome::Error;
        }
        if let Some(tx) = &self.tx {
            tx.capture_error(error);
        }
    }

    /// Starts timing a segment of this run (kept in the run's trace if the
    /// run turns out slow).
    pub fn segment(&self, kind: SegmentKind, name: &str) -> SegmentGuard {
        match &self.tx {
            Some(tx) => {
                let run = self.run.get_or_init(|| tx.series.run_trace(self.start));
                let segment = Segment {
                    stats: tx.series.segments.resolve(kind, name),
                    run: Some(run.clone()),
                };
                segment.start()
            }
            None => SegmentGuard {
                stats: None,
                start: Stamp::now(),
                run: None,
            },
        }
    }

    /// Continues the trace a caller sent (a parsed W3C `traceparent`): if
    /// the run turns out slow, its trace and exemplar carry the caller's
    /// trace id, with the caller's span as parent; if the caller did not
    /// sample the trace, the run is recorded but not kept as a trace.
    /// Call it before the run's first segment; later calls are ignored.
    pub fn continue_trace(&self, remote: &TraceContext) {
        if let Some(tx) = &self.tx {
            let run = self.run.get_or_init(|| tx.series.run_trace(self.start));
            run.set_ids(RunIds::child_of(remote));
        }
    }

    /// A handle to this run's segments that can be moved elsewhere (a
    /// handler, another task); what it records counts in this run's trace.
    #[cfg(feature = "tower")]
    pub(crate) fn run_trace(&self) -> Option<Arc<RunTrace>> {
        let tx = self.tx.as_ref()?;
        Some(self.run.get_or_init(|| tx.series.run_trace(self.start)).clone())
    }

    /// Drops the run without recording it.
    pub fn discard(mut self) {
        self.tx = None;
    }

    /// Records the run now (the same as dropping the guard).
    pub fn finish(self) {}
}

impl Drop for TransactionGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.series
                .finish(self.start, self.start.elapsed_ns(), self.outcome, self.run.take());
        }
    }
}

type Classify<T> = fn(&T, &mut TransactionGuard, &'static Location<'static>);

pin_project_lite::pin_project! {
    /// A future timed as one run of a transaction; see [`Transaction::time`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Timed<F: Future> {
        #[pin]
        future: F,
        guard: Option<TransactionGuard>,
        classify: Classify<F::Output>,
        location: &'static Location<'static>,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        if let Some(mut guard) = this.guard.take() {
            guard.outcome = Outcome::Ok;
            (this.classify)(&output, &mut guard, this.location);
        }
        Poll::Ready(output)
    }
}

/// A pre-resolved handle to one segment (a database query, an external call,
/// a piece of code) of one transaction.
#[derive(Clone, Debug)]
pub struct Segment {
    stats: Arc<SegmentStats>,
    /// The run whose trace the calls belong to, if any.
    run: Option<Arc<RunTrace>>,
}

impl Segment {
    /// Records one call that took `duration`.
    #[inline]
    pub fn record(&self, duration: Duration) {
        let ns = nanos(duration);
        self.stats.record(ns, ns);
        if let Some(run) = &self.run {
            run.add_ending_now(self.stats.clone(), ns);
        }
    }

    /// Starts timing one call; recorded when the guard is dropped.
    pub fn start(&self) -> SegmentGuard {
        SegmentGuard {
            stats: Some(self.stats.clone()),
            start: Stamp::now(),
            run: self.run.clone(),
        }
    }

    #[cfg(feature = "tower")]
    pub(crate) fn in_run(stats: Arc<SegmentStats>, run: Arc<RunTrace>) -> Segment {
        Segment { stats, run: Some(run) }
    }
}

/// Times one call of a segment and records it when dropped.
#[must_use = "the call is recorded when the guard is dropped"]
#[derive(Debug)]
pub struct SegmentGuard {
    stats: Option<Arc<SegmentStats>>,
    start: Stamp,
    run: Option<Arc<RunTrace>>,
}

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            let ns = self.start.elapsed_ns();
            stats.record(ns, ns);
            if let Some(run) = self.run.take() {
                run.add(stats, self.start, ns);
            }
        }
    }
}
