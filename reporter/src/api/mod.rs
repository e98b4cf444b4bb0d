//! The reporter's HTTP API: `GET /api/v1/<question>` on the OTLP/HTTP port,
//! the same questions and parameters as `kuroko query` (see `docs/api.md`).
//!
//! A request's query string is checked by [`query::Query::parse`], the
//! question answered on a blocking thread (the store is SQLite or a
//! synchronous ClickHouse client), and the JSON answer returned as is or
//! flattened to CSV by [`render`]. The CLI uses the same two steps, locally
//! or by fetching the JSON from here, so it prints the same either way.
//!
//! One route writes: `POST /api/v1/errors/<group>/<action>` (`resolve`,
//! `reopen`, `ignore` with `until` and `count`, `assign` with `team`; the
//! parameters in the query string or a form body) records a decision about
//! an error group ([`crate::analysis::triage`]) and answers it as JSON;
//! `kuroko errors` sends the same.
//!
//! Errors are JSON `{"error": "..."}` saying what is wrong and what to do:
//! 400 for parameters, 401 without the query token (when one is set), 500
//! when the store fails. The token is accepted as `Authorization: Bearer
//! <token>` or as the web UI's cookie `kuroko_token=<token>`.

pub mod query;
pub mod render;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::analysis::triage::{Action, TriageError};
use crate::app::App;
use crate::store::triage::Triage;
use query::{Format, Query, QueryError, Question};

/// The cookie the web UI keeps the query token in.
pub(crate) const TOKEN_COOKIE: &str = "kuroko_token";

/// The API's routes over `app`, behind its token when it has one.
pub fn router(app: App) -> Router {
    let mut api = Router::new();
    for question in Question::ALL {
        let path = format!("/api/v1/{}", question.name());
        api = api.route(
            &path,
            get(move |State(app): State<App>, RawQuery(raw): RawQuery| ask(app, question, raw)),
        );
    }
    api.route("/api/v1/errors/{group}/{action}", post(decide))
        .route("/api/v1/traces/{id}", get(trace))
        .route("/api/v1", get(not_found))
        .route("/api/v1/", get(not_found))
        .route("/api/v1/{*rest}", get(not_found))
        .layer(axum::middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app)
}

/// The current unix minute.
pub fn now_minute() -> i64 {
    jiff::Timestamp::now().as_second().div_euclid(60)
}

/// Parses `pairs` and answers `question` over `app`'s store, on this thread
/// (it blocks on the store). The CLI's local mode calls this directly.
pub fn answer_now(
    app: &App,
    question: Question,
    pairs: &[(String, String)],
) -> Result<(Query, serde_json::Value), QueryError> {
    let query = Query::parse(question, pairs, &app.owners, now_minute())?;
    let value = query.answer(&app.analysis())?;
    Ok((query, value))
}

/// Longest form body a decision reads (a few short fields).
const DECISION_BODY_BYTES: usize = 16 << 10;

/// Records `action` on `group` over `app`'s store, on this thread, with its
/// parameters from `pairs`; `by` says who (`api`, `ui`, `cli`). The CLI's
/// local mode and the web UI's form call this directly.
pub fn decide_now(
    app: &App,
    group: &str,
    action: &str,
    pairs: &[(String, String)],
    by: &str,
) -> Result<Triage, TriageError> {
    let now = jiff::Timestamp::now().as_second();
    let field = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let action = Action::parse(action, field, &app.owners, now)?;
    app.analysis().decide(group, action, by, now)
}

/// `GET /api/v1/traces/<trace id>?since=7d`: the request's kept runs
/// across services, joined ([`crate::analysis::distributed`]); 404 when no
/// service kept a run of it in the window.
async fn trace(State(app): State<App>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let get = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let (from, to) =
        match crate::analysis::scope::parse_window(get("since").unwrap_or("7d"), get("until"), now_minute()) {
            Ok(window) => window,
            Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
        };
    let answer = tokio::task::spawn_blocking(move || app.analysis().joined_trace(&id, from, to).map(|j| (id, j))).await;
    match answer {
        Ok(Ok((_, Some(joined)))) => json_response(StatusCode::OK, serde_json::to_string(&joined).unwrap_or_default()),
        Ok(Ok((id, None))) => error_response(
            StatusCode::NOT_FOUND,
            &format!(
                "no service kept a run of trace {id} in this window: only slow runs are kept; widen it (since=30d)"
            ),
        ),
        Ok(Err(error)) => {
            tracing::error!(%error, "reading a trace failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string())
        }
        Err(join) => {
            tracing::error!(error = %join, "reading a trace panicked");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the trace failed inside the reporter; see its log",
            )
        }
    }
}

async fn decide(
    State(app): State<App>,
    Path((group, action)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), DECISION_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, "a decision's form is a few short fields"),
    };
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    pairs.extend(form_urlencoded::parse(&body).into_owned());
    let decided = tokio::task::spawn_blocking(move || decide_now(&app, &group, &action, &pairs, "api")).await;
    match decided {
        Ok(Ok(decision)) => json_response(StatusCode::OK, serde_json::to_string(&decision).unwrap_or_default()),
        Ok(Err(error)) => {
            let status = match &error {
                TriageError::UnknownGroup(_) => StatusCode::NOT_FOUND,
                e if e.is_caller_mistake() => StatusCode::BAD_REQUEST,
                e => {
                    tracing::error!(error = %e, "recording an error group's triage failed");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            error_response(status, &error.to_string())
        }
        Err(join) => {
            tracing::error!(error = %join, "recording a triage panicked");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the decision failed inside the reporter; see its log",
            )
        }
    }
}

async fn ask(app: App, question: Question, raw: Option<String>) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let answered = tokio::task::spawn_blocking(move || answer_now(&app, question, &pairs)).await;
    let (query, value) = match answered {
        Ok(Ok(answered)) => answered,
        Ok(Err(error)) => {
            let status = if error.is_caller_mistake() {
                StatusCode::BAD_REQUEST
            } else {
                tracing::error!(question = question.name(), error = %error.message(), "an API question failed");
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return error_response(status, &error.message());
        }
        Err(join) => {
            tracing::error!(question = question.name(), error = %join, "an API question panicked");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the question failed inside the reporter; see its log",
            );
        }
    };
    match query.format {
        Format::Csv => {
            let disposition = format!("attachment; filename=\"kuroko-{}.csv\"", question.name());
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/csv; charset=utf-8"),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
                    ),
                ],
                render::csv(question, &value),
            )
                .into_response()
        }
        Format::Json => json_response(StatusCode::OK, value.to_string()),
        Format::Table => error_response(
            StatusCode::BAD_REQUEST,
            "`format=table` is for the command line: ask for `json` or `csv`",
        ),
    }
}

async fn not_found() -> Response {
    let names: Vec<&str> = Question::ALL.iter().map(|q| q.name()).collect();
    error_response(
        StatusCode::NOT_FOUND,
        &format!("no such question: ask /api/v1/ one of {}", names.join(", ")),
    )
}

/// Lets a request through when it carries the token, as `Authorization:
/// Bearer <token>` or the `kuroko_token` cookie (or when none is required).
async fn require_token(State(app): State<App>, request: Request, next: Next) -> Response {
    if !app.requires_token() {
        return next.run(request).await;
    }
    let headers = request.headers();
    let from_header = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    let from_cookie = cookie(headers, TOKEN_COOKIE).map(|token| format!("Bearer {token}"));
    // Both checked, each in constant time.
    let by_header = app.authorized(from_header);
    let by_cookie = app.authorized(from_cookie.as_deref().map(str::as_bytes));
    if by_header || by_cookie {
        return next.run(request).await;
    }
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        "this reporter requires its query token: send `Authorization: Bearer <token>` (kuroko query: --token or KUROKO_QUERY_TOKEN)",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// `{"error": message}` with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; kuroko_token=s3cret"),
        );
        assert_eq!(cookie(&headers, TOKEN_COOKIE), Some("s3cret"));
        assert_eq!(cookie(&headers, "other"), None);
    }
}
