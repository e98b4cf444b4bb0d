//! Receiving OTLP: gRPC (`grpc.rs`) and HTTP (`http.rs`) in front of one
//! [`Receiver`], which converts (`metrics.rs`) and writes to the store.
//!
//! A request is acknowledged only after its batch is committed: a reporter
//! killed mid-request has acknowledged nothing it did not keep. Points that
//! break a limit or do not add up are rejected with their reasons in an OTLP
//! partial-success response; the rest of the request is kept.

pub(crate) mod agents;
pub(crate) mod decoded;
pub(crate) mod exceptions;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod inflight;
pub mod invariants;
pub(crate) mod json;
pub mod logs;
pub(crate) mod metrics;
pub mod otlp;
pub(crate) mod status;
pub(crate) mod traces;
pub(crate) mod versions;
pub mod wire;

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::store::{Batch, SeriesKey, Store, StoreError};
use metrics::Deltas;
use otlp::Limits;

/// What the receiver did with a request it accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Points stored.
    pub stored: u64,
    /// Points rejected.
    pub rejected: u64,
    /// Why (the first few reasons).
    pub message: String,
}

impl Accepted {
    /// The partial-success answer's count and message: when something was
    /// rejected, or kept only in part (a count of 0 with a message is a
    /// warning, as OTLP allows).
    fn rejected(&self) -> Option<(i64, String)> {
        (self.rejected > 0 || !self.message.is_empty())
            .then(|| (i64::try_from(self.rejected).unwrap_or(i64::MAX), self.message.clone()))
    }

    /// The OTLP metrics response: a partial success naming the reasons when
    /// points were rejected.
    pub(crate) fn metrics_response(self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: self
                .rejected()
                .map(|(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }),
        }
    }

    /// The OTLP logs response.
    pub(crate) fn logs_response(self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: self
                .rejected()
                .map(|(rejected_log_records, error_message)| ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }),
        }
    }

    /// The OTLP traces response.
    pub(crate) fn traces_response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: self
                .rejected()
                .map(|(rejected_spans, error_message)| ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }),
        }
    }
}

/// One of the OTLP signals the reporter receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `/v1/metrics`, `MetricsService`.
    Metrics,
    /// `/v1/logs`, `LogsService`.
    Logs,
    /// `/v1/traces`, `TraceService`.
    Traces,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        })
    }
}

/// Why a request was not accepted at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store could not commit: the client should retry.
    #[error("the store could not keep this request: {}", chain(.0))]
    Store(#[from] StoreError),
    /// The write task died.
    #[error("the store's writer stopped unexpectedly")]
    Writer,
    /// The decoded request would take the bytes in flight past a budget:
    /// the client is to retry later.
    #[error(transparent)]
    Busy(#[from] inflight::Exhausted),
    /// The body is not the protobuf of an OTLP request of its signal: the
    /// client must not retry it.
    #[error("the body is not OTLP/protobuf {signal}: {source}")]
    Malformed {
        /// The signal it was sent as.
        signal: Signal,
        /// Why prost could not decode it.
        source: prost::DecodeError,
    },
}

impl IngestError {
    fn malformed(signal: Signal) -> impl FnOnce(prost::DecodeError) -> IngestError {
        move |source| IngestError::Malformed { signal, source }
    }
}

/// Name of the series that collects a service's series past the limit.
pub(crate) const OVERFLOW_TRANSACTION: &str = "kuroko.overflow";

use crate::errors::chain;

/// Counts of what the receiver did, since start.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Points folded into an overflow series by the per-service series limit.
    pub folded: AtomicU64,
    /// Points stored.
    pub stored: AtomicU64,
    /// Points rejected.
    pub rejected: AtomicU64,
    /// Requests refused whole (store failures).
    pub failed_requests: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: AtomicU64,
    /// Requests refused whole as malformed or too large (HTTP 400, 413,
    /// 415; gRPC INVALID_ARGUMENT).
    pub malformed: AtomicU64,
    /// Spans of kept traces left out by the trace budgets.
    pub trace_spans_trimmed: AtomicU64,
    /// Attribute values of kept traces cut or left out by the trace budgets.
    pub trace_attributes_trimmed: AtomicU64,
    /// HTTP connections closed for not sending a request's headers in time
    /// (slow, or idle since their last answer).
    pub header_timeouts: AtomicU64,
    /// Points rejected, by the rule each broke ([`otlp::Rule::ALL`]'s order).
    pub refused: [AtomicU64; otlp::Rule::ALL.len()],
}

/// The series the cardinality guard has let in.
#[derive(Default)]
struct Known {
    by_service: HashMap<String, FxHashSet<SeriesKey>>,
    /// Series in `by_service`, all services together.
    total: usize,
}

/// Converts and stores what the servers receive.
pub struct Receiver {
    store: Arc<dyn Store>,
    /// Cumulative streams' last values: read by every conversion at once,
    /// written once a batch is stored.
    deltas: RwLock<Deltas>,
    limits: Limits,
    /// `Bearer <token>` that requests must carry, when auth is on.
    expected_authorization: Option<String>,
    /// Series known per service, for the cardinality guard.
    known: Mutex<Known>,
    /// What ties spans to their transaction across trace requests.
    spans: Mutex<traces::SpanMemory>,
    /// Commit latency, microseconds.
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    /// Request bodies being read, against their budgets.
    pub(crate) inflight: Arc<inflight::Inflight>,
    /// What it did.
    pub stats: IngestStats,
    /// Kuroko agents' own health (`kuroko.agent.*`), for the UI's `/health`.
    pub agents: Arc<agents::AgentBoard>,
    /// Requests the store could not keep, logged as one condition.
    failing: crate::spell::Spell,
    /// Services' versions recorded as deploys.
    versions: versions::VersionBook,
}

impl Receiver {
    /// A receiver writing into `store`, requiring `token` when given; it
    /// learns the series the store already holds, for the series limit.
    pub fn new(store: Arc<dyn Store>, limits: Limits, token: Option<Secret>) -> Result<Self, StoreError> {
        let mut known = Known::default();
        for key in store.series()? {
            known.total += usize::from(known.by_service.entry(key.service.clone()).or_default().insert(key));
        }
        // Cumulative streams continue where the store left them: a restart
        // does not count their history again.
        let mut deltas = Deltas::default();
        deltas.apply(store.streams(None)?);
        Ok(Receiver {
            store,
            deltas: RwLock::new(deltas),
            expected_authorization: token.map(|t| format!("Bearer {}", t.expose())),
            known: Mutex::new(known),
            spans: Mutex::new(traces::SpanMemory::default()),
            latency: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds"),
            ),
            stats: IngestStats::default(),
            agents: Arc::default(),
            failing: crate::spell::Spell::default(),
            versions: versions::VersionBook::default(),
            inflight: Arc::new(inflight::Inflight::new(
                limits.max_inflight_bytes,
                limits.max_inflight_bytes_per_connection,
            )),
            limits,
        })
    }

    /// Whether a request carrying `authorization` may proceed: always when
    /// auth is off; else only with the exact token, compared in constant time.
    pub(crate) fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.expected_authorization else {
            return true;
        };
        let granted = authorization.is_some_and(|given| bool::from(given.ct_eq(expected.as_bytes())));
        if !granted {
            self.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        }
        granted
    }

    /// Commit latency quantile, in seconds.
    pub(crate) fn latency_quantile(&self, quantile: f64) -> f64 {
        crate::sync::lock(&self.latency).value_at_quantile(quantile) as f64 / 1e6
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A reservation against the in-flight budgets for a request from
    /// `connection`.
    pub(crate) fn reserve(&self, connection: Option<std::net::SocketAddr>) -> inflight::Reservation {
        inflight::Reservation::new(self.inflight.clone(), connection)
    }

    /// The store being written.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The cumulative streams remembered, and the bytes their last points
    /// take.
    pub(crate) fn streams_held(&self) -> (usize, usize) {
        let deltas = crate::sync::read(&self.deltas);
        (deltas.len(), deltas.bytes())
    }

    /// Folds the batch's new series past the per-service limit into the
    /// service's overflow series.
    fn guard(&self, batch: &mut Batch) {
        let mut guard = crate::sync::lock(&self.known);
        let known = &mut *guard;
        let (limit, total_limit) = (self.limits.max_series_per_service, self.limits.max_series);
        let mut folded = 0;
        // The series in place of `key`, when a limit folds it.
        let mut fold = |key: &SeriesKey| -> Option<SeriesKey> {
            let overflow = |service: &str| SeriesKey {
                service: service.to_owned(),
                host: key.host.clone(),
                transaction: OVERFLOW_TRANSACTION.to_owned(),
                feature: String::new(),
                kind: "job".to_owned(),
                environment: key.environment.clone(),
            };
            let series = match known.by_service.get_mut(&key.service) {
                Some(series) => series,
                // A new service past the reporter's limit: into the
                // overflow service (its one series per host and environment
                // is let in whatever the limit).
                None if known.total >= total_limit => {
                    let folded = overflow(OVERFLOW_TRANSACTION);
                    let series = known.by_service.entry(folded.service.clone()).or_default();
                    known.total += usize::from(series.insert(folded.clone()));
                    return Some(folded);
                }
                None => known.by_service.entry(key.service.clone()).or_default(),
            };
            if series.contains(key) {
                return None;
            }
            if series.len() < limit && known.total < total_limit {
                series.insert(key.clone());
                known.total += 1;
                return None;
            }
            let folded = overflow(&key.service);
            known.total += usize::from(series.insert(folded.clone()));
            Some(folded)
        };
        // Points of one series share its key: each shared key is looked up
        // once per batch (and held, so its address names it throughout).
        type Shared = (Arc<SeriesKey>, Option<Arc<SeriesKey>>);
        let mut shared: FxHashMap<*const SeriesKey, Shared> = FxHashMap::default();
        let histograms = batch.histograms.iter_mut().map(|p| &mut p.key);
        for key in histograms.chain(batch.counters.iter_mut().map(|p| &mut p.key)) {
            let (_, replacement) = shared
                .entry(Arc::as_ptr(key))
                .or_insert_with(|| (key.clone(), fold(key).map(Arc::new)));
            if let Some(overflow) = replacement {
                *key = overflow.clone();
                folded += 1;
            }
        }
        let others = batch.errors.iter_mut().map(|p| &mut p.key);
        let others = others.chain(batch.links.iter_mut().map(|p| &mut p.key));
        for key in others.chain(batch.traces.iter_mut().map(|p| &mut p.key)) {
            if let Some(overflow) = fold(key) {
                *key = overflow;
                folded += 1;
            }
        }
        // Links name their transaction's series as its points do (not points).
        for link in &mut batch.links {
            if let Some(overflow) = fold(&link.key) {
                link.key = overflow;
            }
        }
        if folded > 0 {
            self.stats.folded.fetch_add(folded, Ordering::Relaxed);
        }
    }

    /// Converts and stores a metrics request; returns once it is committed.
    pub async fn metrics(&self, request: ExportMetricsServiceRequest) -> Result<Accepted, IngestError> {
        let converted = self.convert_metrics(&wire::Request::of(&request))?;
        self.store_metrics(converted).await
    }

    /// Converts and stores a metrics request's protobuf, read in place
    /// ([`wire`]); returns once it is committed, or
    /// [`IngestError::Malformed`] when the body is not an OTLP metrics
    /// request. What it decodes to is held against `held` first
    /// ([`IngestError::Busy`] past a budget).
    pub(crate) async fn metrics_protobuf(
        &self,
        body: prost::bytes::Bytes,
        held: &inflight::Reservation,
    ) -> Result<Accepted, IngestError> {
        let mut decoded = None;
        let request = read_protobuf(&body, &mut decoded).map_err(IngestError::malformed(Signal::Metrics))?;
        held.grow(self::decoded::metrics(&request))?;
        let converted = self.convert_metrics(&request)?;
        drop(request);
        drop((decoded, body));
        self.store_metrics(converted).await
    }

    /// Converts a metrics request against the cumulative streams' last
    /// points. On a store other reporters write too, those of the request's
    /// streams are read from the store first: another replica may have
    /// moved them on (this costs a second conversion, to learn the streams).
    fn convert_metrics(&self, request: &wire::Request<'_>) -> Result<otlp::Converted, IngestError> {
        self.agents.note(request, &self.limits);
        let received = now();
        self.note_versions(request.resources.iter().map(|r| {
            let first = move || versions::first_minute(versions::point_times(r), &self.limits, received);
            (r.attributes.as_slice(), first)
        }));
        let convert = || {
            let deltas = crate::sync::read(&self.deltas);
            metrics::convert(request, &deltas, &self.limits, now())
        };
        let converted = convert();
        if !self.store.shared() || converted.batch.streams.is_empty() {
            return Ok(converted);
        }
        let ids: Vec<_> = converted.batch.streams.iter().map(|(id, _)| *id).collect();
        let read = || self.store.streams(Some(&ids));
        let stored = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(read),
            // A current-thread runtime (tests) waits: it has no worker to lend.
            _ => read(),
        }?;
        crate::sync::write(&self.deltas).apply(stored);
        Ok(convert())
    }

    /// Records the service versions of the request's resources (each with
    /// the first minute of its data, [`versions`]) that this process has
    /// not yet recorded at that minute or earlier (rare: about once per
    /// version). A failure is logged and tried again with the next request;
    /// it never refuses the data.
    fn note_versions<'a, A: otlp::Attribute + 'a, F: FnOnce() -> Option<i64>>(
        &self,
        resources: impl Iterator<Item = (&'a [A], F)>,
    ) {
        let seen = self.versions.new_in(resources, &self.limits);
        if seen.is_empty() {
            return;
        }
        let write = || self.store.versions_seen(&seen);
        let written = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(write),
            _ => write(),
        };
        match written {
            Ok(()) => self.versions.recorded(&seen),
            Err(error) => tracing::warn!(%error, "a service version could not be recorded; trying again"),
        }
    }

    /// Stores converted metrics; the cumulative streams move on once they are.
    async fn store_metrics(&self, converted: otlp::Converted) -> Result<Accepted, IngestError> {
        let updates = converted.batch.streams.clone();
        let accepted = self.commit(converted).await?;
        // Cumulative streams move on only once their points are stored.
        crate::sync::write(&self.deltas).apply(updates);
        Ok(accepted)
    }

    /// Decodes a logs request's protobuf, holds what it decoded to against
    /// `held`, converts and stores it; returns once it is committed, or
    /// [`IngestError::Malformed`] or [`IngestError::Busy`].
    pub(crate) async fn logs_protobuf(
        &self,
        body: &[u8],
        held: &inflight::Reservation,
    ) -> Result<Accepted, IngestError> {
        use prost::Message;
        let request = ExportLogsServiceRequest::decode(body).map_err(IngestError::malformed(Signal::Logs))?;
        held.grow(self::decoded::logs(&request))?;
        self.logs(request).await
    }

    /// Decodes a traces request's protobuf, holds what it decoded to
    /// against `held`, converts and stores it; returns once it is
    /// committed, or [`IngestError::Malformed`] or [`IngestError::Busy`].
    pub(crate) async fn traces_protobuf(
        &self,
        body: &[u8],
        held: &inflight::Reservation,
    ) -> Result<Accepted, IngestError> {
        use prost::Message;
        let request = ExportTraceServiceRequest::decode(body).map_err(IngestError::malformed(Signal::Traces))?;
        held.grow(self::decoded::traces(&request))?;
        self.traces(request).await
    }

    /// Converts and stores a logs request (its errors); returns once committed.
    pub async fn logs(&self, request: ExportLogsServiceRequest) -> Result<Accepted, IngestError> {
        self.commit(logs::convert(&request, &self.limits, now())).await
    }

    /// Converts and stores a traces request; returns once committed.
    pub async fn traces(&self, request: ExportTraceServiceRequest) -> Result<Accepted, IngestError> {
        let received = now();
        self.note_versions(request.resource_spans.iter().map(|r| {
            let starts = r
                .scope_spans
                .iter()
                .flat_map(|s| &s.spans)
                .map(|s| s.start_time_unix_nano);
            (
                r.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice()),
                move || versions::first_minute(starts, &self.limits, received),
            )
        }));
        let converted = {
            let mut spans = crate::sync::lock(&self.spans);
            traces::convert(&request, &self.limits, now(), &mut spans)
        };
        self.commit(converted).await
    }

    /// Writes a converted request's batch and books the outcome.
    async fn commit(&self, mut converted: otlp::Converted) -> Result<Accepted, IngestError> {
        let started = std::time::Instant::now();
        let stored = converted.batch.len() as u64;
        if !converted.batch.is_empty() {
            self.guard(&mut converted.batch);
            let store = self.store.clone();
            let batch = converted.batch;
            // Most writes are a file append and an in-memory merge: done on
            // this worker. The rest block (a flush now and then, a new
            // series, a network round): on the multi-threaded runtime
            // `kuroko serve` runs, the worker lends itself to them; elsewhere
            // (tests on a current-thread runtime), a blocking thread takes them.
            let written = match store.write_quick(&batch) {
                Ok(true) => Ok(Ok(())),
                Err(error) => Ok(Err(error)),
                Ok(false) => match tokio::runtime::Handle::current().runtime_flavor() {
                    tokio::runtime::RuntimeFlavor::MultiThread => {
                        Ok(tokio::task::block_in_place(|| store.write(&batch)))
                    }
                    _ => tokio::task::spawn_blocking(move || store.write(&batch)).await,
                },
            };
            match written {
                Ok(Ok(())) => {
                    if let Some(ended) = self.failing.end() {
                        tracing::warn!(
                            refused = ended.total,
                            lasted_seconds = ended.lasted.as_secs(),
                            "the store keeps requests again"
                        );
                    }
                }
                Ok(Err(error)) => {
                    self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                    // A low disk is logged by the store, once per spell.
                    if !matches!(error, StoreError::DiskLow { .. }) {
                        self.log_failure(&error);
                    }
                    return Err(error.into());
                }
                Err(_) => return Err(IngestError::Writer),
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = crate::sync::lock(&self.latency).record(micros.clamp(1, 3_600_000_000));
        self.stats.stored.fetch_add(stored, Ordering::Relaxed);
        self.stats.rejected.fetch_add(converted.rejected, Ordering::Relaxed);
        let trimmed = converted.trimmed;
        self.stats
            .trace_spans_trimmed
            .fetch_add(trimmed.spans, Ordering::Relaxed);
        self.stats
            .trace_attributes_trimmed
            .fetch_add(trimmed.attributes, Ordering::Relaxed);
        for (count, refused) in self.stats.refused.iter().zip(converted.refused) {
            count.fetch_add(refused, Ordering::Relaxed);
        }
        if converted.rejected > 0 {
            tracing::warn!(rejected = converted.rejected, reasons = ?converted.reasons, "rejected data points");
        }
        Ok(Accepted {
            stored,
            rejected: converted.rejected,
            message: converted.reasons.join("; "),
        })
    }
}

impl Receiver {
    /// Logs a request the store could not keep: when such refusals start,
    /// then every 30 s with their count, not once per request (a client
    /// retrying hard would otherwise write a line per try).
    fn log_failure(&self, error: &StoreError) {
        match self.failing.hit() {
            crate::spell::Hit::Started => tracing::error!(
                error = %chain(error),
                "refused a request: the store could not keep it (further refusals are counted, not logged one by one)"
            ),
            crate::spell::Hit::Remind {
                since_last,
                total,
                lasted,
            } => tracing::error!(
                error = %chain(error),
                refused = since_last,
                refused_total = total,
                since_seconds = lasted.as_secs(),
                "the store still refuses requests"
            ),
            crate::spell::Hit::Quiet => {}
        }
    }
}

/// Decodes `bytes` as an OTLP request of each signal (protobuf) and converts
/// whatever decodes, with the default limits: the path untrusted input
/// takes, minus the store. Never panics (the fuzz target and the mutation
/// test hold it to that); returns how many points each signal would store.
pub fn decode_and_validate(bytes: &[u8]) -> [usize; 3] {
    use prost::Message;
    let (limits, now) = (Limits::default(), now());
    let metrics = convert_protobuf(bytes, &Deltas::default(), &limits, now)
        .map(|c| c.batch.len())
        .unwrap_or(0);
    let logs = ExportLogsServiceRequest::decode(bytes)
        .map(|r| logs::convert(&r, &limits, now).batch.len())
        .unwrap_or(0);
    let traces = ExportTraceServiceRequest::decode(bytes)
        .map(|r| {
            traces::convert(&r, &limits, now, &mut traces::SpanMemory::default())
                .batch
                .len()
        })
        .unwrap_or(0);
    [metrics, logs, traces]
}

/// A metrics request's protobuf, converted: read in place ([`wire`]), or,
/// what the reader leaves to prost, decoded by prost, which also gives the
/// reason a malformed body is refused.
fn convert_protobuf(
    body: &[u8],
    deltas: &Deltas,
    limits: &Limits,
    now: u64,
) -> Result<otlp::Converted, prost::DecodeError> {
    let mut decoded = None;
    Ok(metrics::convert(
        &read_protobuf(body, &mut decoded)?,
        deltas,
        limits,
        now,
    ))
}

/// A metrics request's protobuf read in place, or decoded by prost into
/// `decoded` when the reader leaves it to prost.
fn read_protobuf<'a>(
    body: &'a [u8],
    decoded: &'a mut Option<ExportMetricsServiceRequest>,
) -> Result<wire::Request<'a>, prost::DecodeError> {
    use prost::Message;
    match wire::read(body) {
        Ok(request) => Ok(request),
        Err(wire::Unusual) => Ok(wire::Request::of(
            decoded.insert(ExportMetricsServiceRequest::decode(body)?),
        )),
    }
}

/// Whether the in-place reader ([`wire`]) and prost agree on `bytes`: when
/// the reader reads it, prost decodes it too, to the same request and the
/// same conversion. The fuzz target and the mutation test hold it to that.
pub fn metrics_paths_agree(bytes: &[u8]) -> bool {
    use prost::Message;
    let Ok(read) = wire::read(bytes) else {
        // Left to prost: nothing to compare.
        return true;
    };
    let Ok(decoded) = ExportMetricsServiceRequest::decode(bytes) else {
        return false;
    };
    let (limits, now) = (Limits::default(), now());
    let of = wire::Request::of(&decoded);
    let convert = |request: &wire::Request<'_>| metrics::convert(request, &Deltas::default(), &limits, now);
    // NaN never equals itself: compare the debug texts, which spell NaN the same.
    format!("{read:?}") == format!("{of:?}") && format!("{:?}", convert(&read)) == format!("{:?}", convert(&of))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
