//! OTLP/HTTP: `POST /v1/metrics`, `/v1/logs` and `/v1/traces` with protobuf
//! or JSON bodies, gzip or not.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Accepted, IngestError, Receiver};

/// The HTTP routes, refusing bodies over `max_bytes` (compressed or not).
pub fn router(receiver: Arc<Receiver>, max_bytes: usize) -> Router {
    Router::new()
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .route("/v1/traces", post(traces))
        .route("/metrics", axum::routing::get(self_metrics))
        .layer(DefaultBodyLimit::max(max_bytes))
        .with_state((receiver, max_bytes))
}

fn refuse(status: StatusCode, reason: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reason).into_response()
}

/// The body, gunzipped when it says so, at most `max_bytes` either way;
/// `Err` is the status and the reason to answer with.
fn body(headers: &HeaderMap, bytes: &Bytes, max_bytes: usize) -> Result<Bytes, (StatusCode, String)> {
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("identity") => Ok(bytes.clone()),
        Some("gzip") => {
            // gzip's trailer holds the size decompressed (mod 2^32): read
            // into a buffer that size, up to the limit, without regrowing.
            let size = bytes
                .len()
                .checked_sub(4)
                .and_then(|at| bytes.get(at..))
                .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
                .map_or(0, |tail| u32::from_le_bytes(tail) as usize);
            let mut out = Vec::with_capacity(size.min(max_bytes) + 1);
            let mut decoder = flate2::read::GzDecoder::new(&bytes[..]).take(max_bytes as u64 + 1);
            decoder
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("the gzip body is malformed: {e}")))?;
            if out.len() > max_bytes {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {max_bytes} bytes once decompressed"),
                ));
            }
            Ok(out.into())
        }
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-encoding {other:?} is not supported: use gzip or none"),
        )),
    }
}

/// Whether the body is OTLP/JSON (else protobuf).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
}

/// Decodes an OTLP request body (protobuf, or JSON when the content type
/// says so); `Err` is the status and reason to answer with. The bool tells
/// whether it was JSON.
fn decode<T: Message + Default + DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &Bytes,
    max_bytes: usize,
    what: &str,
) -> Result<(T, bool), (StatusCode, String)> {
    let json = is_json(headers);
    let body = body(headers, bytes, max_bytes)?;
    let request = if json {
        serde_json::from_slice::<T>(&body).map_err(|e| format!("the body is not OTLP/JSON {what}: {e}"))
    } else {
        T::decode(&body[..]).map_err(|e| format!("the body is not OTLP/protobuf {what}: {e}"))
    };
    request
        .map(|r| (r, json))
        .map_err(|reason| (StatusCode::BAD_REQUEST, reason))
}

/// The answer to an OTLP request: the response in the request's encoding,
/// 400 for a malformed body, or 503 when the store could not keep it (the
/// client keeps it and retries).
fn respond<R: Message + Serialize>(
    result: Result<Accepted, IngestError>,
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
        Err(error @ IngestError::Malformed(_)) => refuse(StatusCode::BAD_REQUEST, error.to_string()),
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

type Shared = State<(Arc<Receiver>, usize)>;

/// Refuses a request without the right bearer token (401, with what to send).
fn authorize(receiver: &Receiver, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    if receiver.authorized(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send authorization: Bearer <token>".to_owned(),
        ))
    }
}

/// The reporter's own health, in the Prometheus text format.
async fn self_metrics(State((receiver, _)): Shared) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &receiver.stats;
    let store_bytes = {
        let store = receiver.store().clone();
        tokio::task::spawn_blocking(move || store.size_bytes())
            .await
            .unwrap_or(0)
    };
    let text = format!(
        "# HELP kuroko_reporter_points_stored_total Data points, records and spans stored.\n\
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
         # HELP kuroko_reporter_ingest_seconds Time from a decoded request to its committed batch.\n\
         # TYPE kuroko_reporter_ingest_seconds summary\n\
         kuroko_reporter_ingest_seconds{{quantile=\"0.5\"}} {}\n\
         kuroko_reporter_ingest_seconds{{quantile=\"0.99\"}} {}\n\
         # HELP kuroko_reporter_store_bytes Bytes the store takes on disk.\n\
         # TYPE kuroko_reporter_store_bytes gauge\n\
         kuroko_reporter_store_bytes {}\n",
        stats.stored.load(Relaxed),
        stats.rejected.load(Relaxed),
        stats.folded.load(Relaxed),
        stats.failed_requests.load(Relaxed),
        stats.unauthorized.load(Relaxed),
        receiver.latency_quantile(0.5),
        receiver.latency_quantile(0.99),
        store_bytes,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Metrics: protobuf is read in place ([`super::wire`]), JSON decoded.
async fn metrics(State((receiver, max)): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    if !is_json(&headers) {
        let body = match authorize(&receiver, &headers).and_then(|()| body(&headers, &bytes, max)) {
            Ok(body) => body,
            Err((status, reason)) => return refuse(status, reason),
        };
        drop(bytes);
        return respond(receiver.metrics_protobuf(body).await, false, Accepted::metrics_response);
    }
    match authorize(&receiver, &headers)
        .and_then(|()| decode::<ExportMetricsServiceRequest>(&headers, &bytes, max, "metrics"))
    {
        Ok((request, json)) => respond(receiver.metrics(request).await, json, Accepted::metrics_response),
        Err((status, reason)) => refuse(status, reason),
    }
}

async fn logs(State((receiver, max)): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    match authorize(&receiver, &headers)
        .and_then(|()| decode::<ExportLogsServiceRequest>(&headers, &bytes, max, "logs"))
    {
        Ok((request, json)) => respond(receiver.logs(request).await, json, Accepted::logs_response),
        Err((status, reason)) => refuse(status, reason),
    }
}

async fn traces(State((receiver, max)): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    match authorize(&receiver, &headers)
        .and_then(|()| decode::<ExportTraceServiceRequest>(&headers, &bytes, max, "traces"))
    {
        Ok((request, json)) => respond(receiver.traces(request).await, json, Accepted::traces_response),
        Err((status, reason)) => refuse(status, reason),
    }
}
