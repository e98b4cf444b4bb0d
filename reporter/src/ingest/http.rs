//! OTLP/HTTP: `POST /v1/metrics` with protobuf or JSON bodies, gzip or not.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use super::Receiver;

/// The HTTP routes, refusing bodies over `max_bytes` (compressed or not).
pub fn router(receiver: Arc<Receiver>, max_bytes: usize) -> Router {
    Router::new()
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(not_stored))
        .route("/v1/traces", post(not_stored))
        .layer(DefaultBodyLimit::max(max_bytes))
        .with_state((receiver, max_bytes))
}

fn refuse(status: StatusCode, reason: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reason).into_response()
}

async fn not_stored() -> Response {
    refuse(
        StatusCode::NOT_IMPLEMENTED,
        "this reporter does not store logs or traces yet".to_owned(),
    )
}

/// The body, gunzipped when it says so, at most `max_bytes` either way;
/// `Err` is the status and the reason to answer with.
fn body(headers: &HeaderMap, bytes: &Bytes, max_bytes: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("identity") => Ok(bytes.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
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
            Ok(out)
        }
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-encoding {other:?} is not supported: use gzip or none"),
        )),
    }
}

async fn metrics(
    State((receiver, max_bytes)): State<(Arc<Receiver>, usize)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let body = match body(&headers, &bytes, max_bytes) {
        Ok(body) => body,
        Err((status, reason)) => return refuse(status, reason),
    };
    let request = if json {
        serde_json::from_slice::<ExportMetricsServiceRequest>(&body).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not OTLP/JSON metrics: {e}"),
            )
        })
    } else {
        ExportMetricsServiceRequest::decode(body.as_slice()).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not OTLP/protobuf metrics: {e}"),
            )
        })
    };
    let request = match request {
        Ok(request) => request,
        Err(response) => return response,
    };
    match receiver.metrics(request).await {
        Ok(accepted) => {
            let response = accepted.response();
            if json {
                let text = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], text).into_response()
            } else {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    response.encode_to_vec(),
                )
                    .into_response()
            }
        }
        // 503: the client keeps the data and retries.
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}
