//! The reporter's own health, `GET /metrics` on the HTTP port, in the
//! Prometheus text format: the receiver's counts ([`crate::ingest::http`])
//! and the web UI's logins.
//!
//! When a query token is configured, `/metrics` asks for it like the API
//! (`authorization: Bearer <token>`, Prometheus' `authorization`
//! setting), unless `[auth] public_metrics = true` leaves it open: it
//! tells who sends data and how much.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;
use crate::ingest::Receiver;
use crate::ui::throttle::LoginThrottle;

/// What `/metrics` reads.
struct Sources {
    receiver: Arc<Receiver>,
    throttle: Arc<LoginThrottle>,
    app: App,
    public: bool,
}

/// The `/metrics` route: open when `public` or when `app` requires no
/// token, else behind the query token.
pub(crate) fn router(receiver: Arc<Receiver>, throttle: Arc<LoginThrottle>, app: App, public: bool) -> Router {
    let sources = Arc::new(Sources {
        receiver,
        throttle,
        app,
        public,
    });
    Router::new().route("/metrics", get(metrics)).with_state(sources)
}

async fn metrics(State(sources): State<Arc<Sources>>, headers: HeaderMap) -> Response {
    if !sources.public && !crate::ui::authorized(&sources.app, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "/metrics needs the query token: send authorization: Bearer <token> \
             (or set [auth] public_metrics = true)\n",
        )
            .into_response();
    }
    let mut text = crate::ingest::http::self_metrics_text(&sources.receiver).await;
    let throttle = &sources.throttle;
    text.push_str(&format!(
        "# HELP kuroko_reporter_logins_failed_total Wrong query tokens: at /login, and as a header or cookie on the API, the pages and /metrics.\n\
         # TYPE kuroko_reporter_logins_failed_total counter\n\
         kuroko_reporter_logins_failed_total {}\n\
         # HELP kuroko_reporter_logins_throttled_total Logins refused with 429 (too many wrong tokens).\n\
         # TYPE kuroko_reporter_logins_throttled_total counter\n\
         kuroko_reporter_logins_throttled_total {}\n",
        throttle.failed.load(Relaxed),
        throttle.throttled.load(Relaxed),
    ));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}
