//! OTLP/HTTP: `POST /v1/metrics`, `/v1/logs` and `/v1/traces` with protobuf
//! or JSON bodies, gzip or not.
//!
//! A request that is refused is answered with its HTTP status (400 for bad
//! data, 401 without the token, 408 for a body too slow to arrive, 413 for
//! a body over the limit, 415 for an unsupported content encoding, 503 when
//! the store could not keep it or the bytes in flight are at a budget, to
//! be retried) and a `google.rpc.Status` body (`ingest::status`) in the
//! request's encoding: protobuf, or JSON for `application/json`. A 400's
//! status names the field at fault when it is known (OTLP/JSON: serde's path
//! to it, `ingest::json`).

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use prost::Message;
use serde::Serialize;

use super::inflight::{body_error, BodyError, Exhausted, Metered, Peer, Reservation};
use super::json::{self, JsonError};
use super::status::Status;
use super::{decoded, wire};
use super::{Accepted, IngestError, Receiver, Signal};

/// The HTTP routes, refusing bodies over `max_bytes` (compressed or not).
/// The OTLP routes check the token before anything reads the body: a
/// request without it costs its headers, not its upload.
pub(crate) fn router(receiver: Arc<Receiver>, max_bytes: usize) -> Router {
    let state = (receiver, max_bytes);
    Router::new()
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .route("/v1/traces", post(traces))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(max_bytes))
        .with_state(state)
}

/// Refuses an OTLP request without the right bearer token, before its
/// body is read; then reads the body within `[limits]
/// body_timeout_seconds` (an SDK sends a whole export in well under a
/// second; a client that trickles bytes would otherwise hold a connection
/// and its buffer forever) and `max_bytes`, holding it against the
/// in-flight budgets ([`super::inflight`]) until the request is answered.
async fn require_token(
    State((receiver, max_bytes)): State<(Arc<Receiver>, usize)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let json = is_json(request.headers());
    if !receiver.authorized(request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
        return refuse(&Refusal::Unauthorized, json);
    }
    let connection = request.extensions().get::<Peer>().map(|peer| peer.0);
    let reservation = receiver.reserve(connection);
    let timeout = std::time::Duration::from_secs(receiver.limits().body_timeout_seconds);
    let (parts, body) = request.into_parts();
    let metered = axum::body::Body::new(Metered::new(body, timeout, reservation.clone()));
    let bytes = match axum::body::to_bytes(metered, max_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let refusal = match body_error(&error) {
                Some(BodyError::Slow(timeout)) => Refusal::Slow(*timeout),
                Some(BodyError::Exhausted(exhausted)) => Refusal::Busy(*exhausted),
                None => {
                    receiver
                        .stats
                        .malformed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Refusal::TooLong(max_bytes)
                }
            };
            return refuse(&refusal, json);
        }
    };
    // A gzip body is decompressed before it is decoded: what its trailer
    // says it decompresses to is held too.
    if content_encoding(&parts.headers) == Some("gzip") {
        if let Err(exhausted) = reservation.grow(gzip_size(&bytes).min(max_bytes)) {
            return refuse(&Refusal::Busy(exhausted), json);
        }
    }
    let mut request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    // What the handler decodes is held too.
    request.extensions_mut().insert(reservation.clone());
    let answer = next.run(request).await;
    drop(reservation);
    if matches!(
        answer.status(),
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE
    ) {
        receiver
            .stats
            .malformed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    answer
}

/// Why an OTLP/HTTP request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// No token, or the wrong one.
    #[error("missing or wrong token: send authorization: Bearer <token>")]
    Unauthorized,
    /// The body could not be read (over the limit, or cut off).
    #[error("the body could not be read: {}", .0.body_text())]
    Body(BytesRejection),
    /// The body says gzip but is not.
    #[error("the gzip body is malformed: {0}")]
    Gzip(std::io::Error),
    /// The body is over the limit as sent.
    #[error("the body is over {0} bytes (max_body_bytes): send smaller batches")]
    TooLong(usize),
    /// The body is over the limit once decompressed.
    #[error("the body is over {0} bytes once decompressed (max_body_bytes): send smaller batches")]
    TooLarge(usize),
    /// The body did not arrive in time.
    #[error("the body did not arrive within {0:?} of its headers")]
    Slow(std::time::Duration),
    /// The bytes in flight are at a budget.
    #[error(transparent)]
    Busy(Exhausted),
    /// A content encoding other than gzip.
    #[error("content-encoding {0:?} is not supported: use gzip or none")]
    Encoding(String),
    /// The body is not OTLP/JSON of its signal.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Not protobuf of the signal, or the store could not keep it.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl Refusal {
    /// Whether the bytes in flight are at a budget (503, to be retried).
    fn is_busy(&self) -> bool {
        matches!(self, Refusal::Busy(_) | Refusal::Ingest(IngestError::Busy(_)))
    }

    /// The HTTP status to answer with.
    fn http_status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Body(rejection) => rejection.status(),
            Refusal::Gzip(_) | Refusal::Json(_) | Refusal::Ingest(IngestError::Malformed { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::TooLong(_) | Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Slow(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Ingest(_) | Refusal::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for a
    /// request the store could not keep: longer when the disk is low (space
    /// comes back when someone frees it, not by itself).
    fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::Ingest(IngestError::Store(crate::store::StoreError::DiskLow { .. })) => Some(30),
            Refusal::Ingest(IngestError::Store(_) | IngestError::Writer) => Some(5),
            _ => None,
        }
    }

    /// The `google.rpc.Status` to answer with: its code is the one gRPC
    /// would answer with (OTLP/HTTP clients go by the HTTP status).
    fn status(&self) -> Status {
        let message = self.to_string();
        if self.is_busy() {
            return Status::new(tonic::Code::ResourceExhausted, message);
        }
        match self.http_status() {
            StatusCode::BAD_REQUEST => {
                let field = match self {
                    Refusal::Json(error) => error.path.trim_start_matches('.'),
                    _ => "",
                };
                Status::bad_request(message, field)
            }
            StatusCode::UNAUTHORIZED => Status::new(tonic::Code::Unauthenticated, message),
            StatusCode::PAYLOAD_TOO_LARGE => Status::new(tonic::Code::ResourceExhausted, message),
            StatusCode::REQUEST_TIMEOUT => Status::new(tonic::Code::DeadlineExceeded, message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Status::new(tonic::Code::Unimplemented, message),
            status if status.is_client_error() => Status::new(tonic::Code::InvalidArgument, message),
            _ => Status::new(tonic::Code::Unavailable, message),
        }
    }
}

/// The answer to a refused request: its status, and a `google.rpc.Status`
/// in the request's encoding.
fn refuse(refusal: &Refusal, json: bool) -> Response {
    let mut answer = encode_refusal(refusal, json);
    if refusal.is_busy() {
        // Bytes in flight are given back within a request's time.
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    answer
}

fn encode_refusal(refusal: &Refusal, json: bool) -> Response {
    let status = refusal.status();
    let mut response = if json {
        (
            refusal.http_status(),
            [(header::CONTENT_TYPE, "application/json")],
            status.to_json().to_string(),
        )
            .into_response()
    } else {
        (
            refusal.http_status(),
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            status.encode_to_vec(),
        )
            .into_response()
    };
    if let Some(seconds) = refusal.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The body, gunzipped when it says so, at most `max_bytes` either way.
fn body(headers: &HeaderMap, bytes: Bytes, max_bytes: usize) -> Result<Bytes, Refusal> {
    match content_encoding(headers) {
        None | Some("identity") => Ok(bytes),
        Some("gzip") => {
            // Read into a buffer the size the trailer says, up to the
            // limit, without regrowing.
            let mut out = Vec::with_capacity(gzip_size(&bytes).min(max_bytes) + 1);
            let mut decoder = flate2::read::GzDecoder::new(&bytes[..]).take(max_bytes as u64 + 1);
            decoder.read_to_end(&mut out).map_err(Refusal::Gzip)?;
            if out.len() > max_bytes {
                return Err(Refusal::TooLarge(max_bytes));
            }
            Ok(out.into())
        }
        Some(other) => Err(Refusal::Encoding(other.to_owned())),
    }
}

/// The request's `content-encoding`, when it is text.
fn content_encoding(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok())
}

/// The size a gzip body says it decompresses to: its trailer's (mod 2^32).
fn gzip_size(bytes: &[u8]) -> usize {
    bytes
        .len()
        .checked_sub(4)
        .and_then(|at| bytes.get(at..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |tail| u32::from_le_bytes(tail) as usize)
}

/// Whether the body is OTLP/JSON (else protobuf).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
}

/// The request's body (its token was checked by [`require_token`]): read
/// within the limit and decompressed. The compressed bytes are dropped here.
fn accept(headers: &HeaderMap, bytes: Result<Bytes, BytesRejection>, max_bytes: usize) -> Result<Bytes, Refusal> {
    body(headers, bytes.map_err(Refusal::Body)?, max_bytes)
}

/// The answer to an OTLP request: the response in the request's encoding,
/// or the refusal.
fn respond<R: Message + Serialize>(
    result: Result<Accepted, Refusal>,
    json: bool,
    response: fn(Accepted) -> R,
) -> Response {
    match result {
        Ok(accepted) if json => {
            let text = serde_json::to_vec(&response(accepted)).unwrap_or_else(|_| b"{}".to_vec());
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Ok(accepted) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            response(accepted).encode_to_vec(),
        )
            .into_response(),
        Err(refusal) => refuse(&refusal, json),
    }
}

type Shared = State<(Arc<Receiver>, usize)>;

/// What the request's body holds against the in-flight budgets (set by
/// [`require_token`]).
type Held = axum::Extension<Reservation>;

/// The receiver's part of the reporter's own health (`/metrics`, served
/// by [`crate::self_metrics`]), in the Prometheus text format.
pub(crate) async fn self_metrics_text(receiver: &Receiver) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &receiver.stats;
    let (streams, stream_bytes) = receiver.streams_held();
    let (store_bytes, health) = {
        let store = receiver.store().clone();
        tokio::task::spawn_blocking(move || (store.size_bytes(), store.health()))
            .await
            .unwrap_or_default()
    };
    let text = format!(
        "# HELP kuroko_reporter_points_stored_total Data points, records and spans stored (a ClickHouse replica: kept in its journal; journal_waiting_bytes is what has not reached ClickHouse yet).\n\
         # TYPE kuroko_reporter_points_stored_total counter\n\
         kuroko_reporter_points_stored_total {}\n\
         # HELP kuroko_reporter_points_rejected_total Data points rejected, with reasons, in partial-success answers.\n\
         # TYPE kuroko_reporter_points_rejected_total counter\n\
         kuroko_reporter_points_rejected_total {}\n\
         # HELP kuroko_reporter_points_folded_total Points folded into an overflow series by the series limit.\n\
         # TYPE kuroko_reporter_points_folded_total counter\n\
         kuroko_reporter_points_folded_total {}\n\
         # HELP kuroko_reporter_requests_failed_total Requests the store could not keep (the client retries).\n\
         # TYPE kuroko_reporter_requests_failed_total counter\n\
         kuroko_reporter_requests_failed_total {}\n\
         # HELP kuroko_reporter_requests_unauthorized_total Requests refused for a missing or wrong token.\n\
         # TYPE kuroko_reporter_requests_unauthorized_total counter\n\
         kuroko_reporter_requests_unauthorized_total {}\n\
         # HELP kuroko_reporter_requests_malformed_total OTLP requests refused whole: malformed, too large or of another type (400, 413, 415, INVALID_ARGUMENT).\n\
         # TYPE kuroko_reporter_requests_malformed_total counter\n\
         kuroko_reporter_requests_malformed_total {}\n\
         # HELP kuroko_reporter_trace_spans_trimmed_total Spans of kept traces left out by max_trace_spans or max_trace_bytes (still counted as segments).\n\
         # TYPE kuroko_reporter_trace_spans_trimmed_total counter\n\
         kuroko_reporter_trace_spans_trimmed_total {}\n\
         # HELP kuroko_reporter_trace_attributes_trimmed_total Attribute values of kept trace spans cut to max_value_bytes or left out by max_span_attribute_bytes.\n\
         # TYPE kuroko_reporter_trace_attributes_trimmed_total counter\n\
         kuroko_reporter_trace_attributes_trimmed_total {}\n\
         # HELP kuroko_reporter_header_timeouts_total HTTP connections closed for not sending a request's headers within header_timeout_seconds (slow or idle).\n\
         # TYPE kuroko_reporter_header_timeouts_total counter\n\
         kuroko_reporter_header_timeouts_total {}\n\
         # HELP kuroko_reporter_body_timeouts_total OTLP requests whose body did not arrive within body_timeout_seconds (408, DEADLINE_EXCEEDED).\n\
         # TYPE kuroko_reporter_body_timeouts_total counter\n\
         kuroko_reporter_body_timeouts_total {}\n\
         # HELP kuroko_reporter_requests_over_inflight_total OTLP requests refused for max_inflight_bytes or max_inflight_bytes_per_connection (503, RESOURCE_EXHAUSTED).\n\
         # TYPE kuroko_reporter_requests_over_inflight_total counter\n\
         kuroko_reporter_requests_over_inflight_total {}\n\
         # HELP kuroko_reporter_inflight_bytes Bytes of OTLP bodies being read and decoded now.\n\
         # TYPE kuroko_reporter_inflight_bytes gauge\n\
         kuroko_reporter_inflight_bytes {}\n\
         # HELP kuroko_reporter_stream_points_refused_total Cumulative points refused by max_cumulative_streams or max_cumulative_stream_bytes.\n\
         # TYPE kuroko_reporter_stream_points_refused_total counter\n\
         kuroko_reporter_stream_points_refused_total {}\n\
         # HELP kuroko_reporter_cumulative_streams Cumulative streams whose last point is remembered.\n\
         # TYPE kuroko_reporter_cumulative_streams gauge\n\
         kuroko_reporter_cumulative_streams {}\n\
         # HELP kuroko_reporter_cumulative_stream_bytes Bytes their last points take (max_cumulative_stream_bytes).\n\
         # TYPE kuroko_reporter_cumulative_stream_bytes gauge\n\
         kuroko_reporter_cumulative_stream_bytes {}\n\
         # HELP kuroko_reporter_ingest_seconds Time from a decoded request to its committed batch.\n\
         # TYPE kuroko_reporter_ingest_seconds summary\n\
         kuroko_reporter_ingest_seconds{{quantile=\"0.5\"}} {}\n\
         kuroko_reporter_ingest_seconds{{quantile=\"0.99\"}} {}\n\
         # HELP kuroko_reporter_store_bytes Bytes the store takes on disk.\n\
         # TYPE kuroko_reporter_store_bytes gauge\n\
         kuroko_reporter_store_bytes {}\n\
         # HELP kuroko_reporter_store_free_bytes Bytes free on the store's file system (-1: unknown).\n\
         # TYPE kuroko_reporter_store_free_bytes gauge\n\
         kuroko_reporter_store_free_bytes {}\n\
         # HELP kuroko_reporter_store_min_free_bytes Bytes kept free ([limits] min_free_bytes); writes that would leave less are refused.\n\
         # TYPE kuroko_reporter_store_min_free_bytes gauge\n\
         kuroko_reporter_store_min_free_bytes {}\n\
         # HELP kuroko_reporter_store_disk_low 1 while writes are refused for want of disk space.\n\
         # TYPE kuroko_reporter_store_disk_low gauge\n\
         kuroko_reporter_store_disk_low {}\n\
         # HELP kuroko_reporter_writes_refused_disk_total Writes refused (503) to keep the disk headroom.\n\
         # TYPE kuroko_reporter_writes_refused_disk_total counter\n\
         kuroko_reporter_writes_refused_disk_total {}\n\
         # HELP kuroko_reporter_rollup_quarantined Hours and days whose roll-up fails, set aside (table rollup_quarantine).\n\
         # TYPE kuroko_reporter_rollup_quarantined gauge\n\
         kuroko_reporter_rollup_quarantined {}\n\
         # HELP kuroko_reporter_rollup_failures_total Hours and days put in quarantine since start.\n\
         # TYPE kuroko_reporter_rollup_failures_total counter\n\
         kuroko_reporter_rollup_failures_total {}\n\
         # HELP kuroko_reporter_journal_fsyncs_total Syncs of the ingest journal to the disk ([journal] fsync = \"batch\").\n\
         # TYPE kuroko_reporter_journal_fsyncs_total counter\n\
         kuroko_reporter_journal_fsyncs_total {}\n\
         # HELP kuroko_reporter_journal_waiting_bytes ClickHouse store: bytes acknowledged and not yet sent to ClickHouse.\n\
         # TYPE kuroko_reporter_journal_waiting_bytes gauge\n\
         kuroko_reporter_journal_waiting_bytes {}\n\
         # HELP kuroko_reporter_journal_blocks_sent_total ClickHouse store: journal segments sent to ClickHouse (one INSERT per table each).\n\
         # TYPE kuroko_reporter_journal_blocks_sent_total counter\n\
         kuroko_reporter_journal_blocks_sent_total {}\n\
         # HELP kuroko_reporter_journal_send_failures_total ClickHouse store: sends that failed and are retried.\n\
         # TYPE kuroko_reporter_journal_send_failures_total counter\n\
         kuroko_reporter_journal_send_failures_total {}\n\
         # HELP kuroko_reporter_writes_refused_behind_total ClickHouse store: requests refused (503) while the journal held [journal] max_bytes.\n\
         # TYPE kuroko_reporter_writes_refused_behind_total counter\n\
         kuroko_reporter_writes_refused_behind_total {}\n",
        stats.stored.load(Relaxed),
        stats.rejected.load(Relaxed),
        stats.folded.load(Relaxed),
        stats.failed_requests.load(Relaxed),
        stats.unauthorized.load(Relaxed),
        stats.malformed.load(Relaxed),
        stats.trace_spans_trimmed.load(Relaxed),
        stats.trace_attributes_trimmed.load(Relaxed),
        stats.header_timeouts.load(Relaxed),
        receiver.inflight.slow.load(Relaxed),
        receiver.inflight.refused.load(Relaxed),
        receiver.inflight.held(),
        stats.refused[super::otlp::Rule::ALL
            .iter()
            .position(|r| *r == super::otlp::Rule::Streams)
            .unwrap_or(0)]
        .load(Relaxed),
        streams,
        stream_bytes,
        receiver.latency_quantile(0.5),
        receiver.latency_quantile(0.99),
        store_bytes,
        health.free_bytes.map_or(-1, i128::from),
        health.min_free_bytes,
        u8::from(health.disk_low),
        health.writes_refused_disk,
        health.quarantined,
        health.rollup_failures,
        health.journal_fsyncs,
        health.journal_waiting_bytes,
        health.journal_blocks_sent,
        health.journal_send_failures,
        health.writes_refused_behind,
    );
    let mut text = text;
    text.push_str(
        "# HELP kuroko_reporter_points_refused_total Data points, records and spans rejected, by the rule they broke \
         (docs/security.md).\n\
         # TYPE kuroko_reporter_points_refused_total counter\n",
    );
    for (rule, count) in super::otlp::Rule::ALL.iter().zip(&stats.refused) {
        text.push_str(&format!(
            "kuroko_reporter_points_refused_total{{rule=\"{}\"}} {}\n",
            rule.label(),
            count.load(Relaxed)
        ));
    }
    text
}

/// Metrics: protobuf is read in place ([`super::wire`]), JSON decoded
/// strictly ([`super::json`]).
async fn metrics(
    State((receiver, max)): Shared,
    axum::Extension(held): Held,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let json = is_json(&headers);
    let result = async {
        let body = accept(&headers, bytes, max)?;
        Ok::<_, Refusal>(if json {
            let request = json::metrics(&body)?;
            held.grow(decoded::metrics(&wire::Request::of(&request)))
                .map_err(IngestError::Busy)?;
            receiver.metrics(request).await?
        } else {
            receiver.metrics_protobuf(body, &held).await?
        })
    };
    respond(result.await, json, Accepted::metrics_response)
}

async fn logs(
    State((receiver, max)): Shared,
    axum::Extension(held): Held,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let json = is_json(&headers);
    let result = async {
        let body = accept(&headers, bytes, max)?;
        Ok::<_, Refusal>(if json {
            let request = json::decode(&body, Signal::Logs)?;
            held.grow(decoded::logs(&request)).map_err(IngestError::Busy)?;
            receiver.logs(request).await?
        } else {
            receiver.logs_protobuf(&body, &held).await?
        })
    };
    respond(result.await, json, Accepted::logs_response)
}

async fn traces(
    State((receiver, max)): Shared,
    axum::Extension(held): Held,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let json = is_json(&headers);
    let result = async {
        let body = accept(&headers, bytes, max)?;
        Ok::<_, Refusal>(if json {
            let request = json::decode(&body, Signal::Traces)?;
            held.grow(decoded::traces(&request)).map_err(IngestError::Busy)?;
            receiver.traces(request).await?
        } else {
            receiver.traces_protobuf(&body, &held).await?
        })
    };
    respond(result.await, json, Accepted::traces_response)
}
