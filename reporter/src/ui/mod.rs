//! The web UI: pages an engineer hunting a bottleneck looks at, served by
//! `kuroko serve` on the HTTP port next to OTLP/HTTP and the API.
//!
//! - `/`: services, features and the transactions that consume most time,
//!   with their change against the previous window and a trend per row;
//! - `/features/{name}`: a feature's response time, throughput and errors
//!   over time, and its transactions ranked;
//! - `/transactions?service=…&transaction=…`: percentiles over time, the
//!   latency distribution, where the time goes, the slowest kept traces as
//!   waterfalls, and the transaction's errors;
//! - `/errors` and `/errors/{id}`: error groups, per server, against the day
//!   before, with their status; `POST /errors/{id}/triage` (the group page's
//!   forms) resolves, reopens, ignores or assigns one ([`triage`]);
//! - `/regressions`: this week against last, ranked by impact;
//! - `/dashboards` and `/dashboards/{name}`: the dashboards of `dashboards/*.toml`
//!   and one per feature of `owners.toml` (see [`dashboards`]).
//!
//! Pages are rendered on the server ([`maud`] templates, which escape every
//! value by default, and SVG charts from [`charts`]), so they work without
//! internet access or a front-end build, and each is one request. Every
//! page's filters live in its query string (`since`, `until`, `service`,
//! `environment`, `team`, …, the same parameters as `/api/v1`), so a URL is
//! a stable link to what it shows, and every chart and table links to the
//! same question's JSON and CSV under `/api/v1`.
//!
//! When a query token is configured, pages need `Authorization: Bearer …` or
//! the `kuroko_token` cookie that `/login` sets after checking the token
//! (HttpOnly, SameSite=Strict: scripts cannot read it and other sites
//! cannot send it). Wrong tokens are throttled per client address and in
//! total ([`throttle`]); `POST /logout` (the header's "Sign out") clears the
//! cookie. `/login` sends the reader back only to a path of this site
//! ([`same_site_path`]).
//!
//! `/health` shows each Kuroko agent's own health (points it dropped,
//! failed exports, …: [`crate::ingest::agents`]).

pub(crate) mod charts;
pub mod dashboards;
pub(crate) mod health;
mod pager;
pub mod pages;
pub(crate) mod throttle;
mod triage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped};

use crate::analysis::scope::{parse_window, ScopeError};
use crate::analysis::{AnalysisError, Scope};
use crate::app::App;
use crate::ingest::agents::AgentBoard;
use throttle::{LoginLimits, LoginThrottle};

/// The cookie holding the query token (also accepted by `/api/v1`).
pub(crate) const TOKEN_COOKIE: &str = "kuroko_token";

const CSS: &str = include_str!("static/ui.css");
const JS: &str = include_str!("static/ui.js");

/// What every request of the UI shares.
struct Ui {
    app: App,
    dashboards: PathBuf,
    throttle: Arc<LoginThrottle>,
    agents: Arc<AgentBoard>,
}

/// What the UI shows or keeps besides the store: the login throttle (its
/// counts are in `/metrics`) and the agents' health.
#[derive(Clone, Debug)]
pub(crate) struct Extras {
    /// Wrong tokens sent to `/login`.
    pub throttle: Arc<LoginThrottle>,
    /// Kuroko agents' own health, for `/health`.
    pub agents: Arc<AgentBoard>,
}

impl Default for Extras {
    fn default() -> Self {
        Extras {
            throttle: Arc::new(LoginThrottle::new(LoginLimits::default())),
            agents: Arc::new(AgentBoard::default()),
        }
    }
}

/// The UI's routes over `app`, with dashboards read from `dashboards_dir`
/// (the default login throttle, no agents' health: see [`router_with`]).
pub fn router(app: App, dashboards_dir: PathBuf) -> Router {
    router_with(app, dashboards_dir, Extras::default())
}

/// The UI's routes over `app`, with dashboards read from `dashboards_dir`.
/// The dashboards are read once now so that their problems are logged at
/// start-up, and again on every visit to `/dashboards`.
pub(crate) fn router_with(app: App, dashboards_dir: PathBuf, extras: Extras) -> Router {
    let found = dashboards::load(&dashboards_dir, &app.owners);
    for problem in &found.problems {
        tracing::warn!(%problem, "dashboard file ignored");
    }
    tracing::info!(
        dashboards = found.dashboards.len(),
        folder = %dashboards_dir.display(),
        "web UI dashboards"
    );
    let ui = Arc::new(Ui {
        app,
        dashboards: dashboards_dir,
        throttle: extras.throttle,
        agents: extras.agents,
    });
    let pages = Router::new()
        .route("/", get(overview))
        .route("/features/{name}", get(feature))
        .route("/transactions", get(transaction))
        .route("/errors", get(errors))
        .route("/errors/{id}", get(error_group))
        .route("/errors/{id}/triage", post(triage::decide))
        .route("/problems", get(problems))
        .route("/problems/{id}", get(problem_group))
        .route("/problems/{id}/triage", post(triage::decide_problem))
        .route("/regressions", get(regressions))
        .route("/traces/{id}", get(trace))
        .route("/dashboards", get(dashboard_list))
        .route("/dashboards/{name}", get(dashboard))
        .route("/health", get(health))
        .route_layer(middleware::from_fn_with_state(ui.clone(), require_token));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route(
            "/static/ui.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/static/ui.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .merge(pages)
        .with_state(ui)
}

/// A page's filters, as its query string carries them. Blank values are
/// absent, so an empty form field filters nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(&'static str, String)>,
}

/// The parameters a page understands, in the order URLs write them.
pub const KEYS: [&str; 19] = [
    "since",
    "until",
    "service",
    "host",
    "environment",
    "transaction",
    "feature",
    "team",
    "by",
    "group",
    "compare",
    "step",
    "limit",
    "id",
    "rows",
    "services_from",
    "features_from",
    "from",
    "improvements_from",
];

/// A request the UI could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The query string or a filter is wrong: the reader can fix it.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing by that name in the window.
    #[error("{0}")]
    NotFound(String),
    /// Reading the store failed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
}

impl From<ScopeError> for PageError {
    fn from(error: ScopeError) -> Self {
        PageError::BadRequest(error.to_string())
    }
}

impl Params {
    /// Reads a query string; unknown keys are ignored, the last of repeated ones wins.
    pub fn parse(query: Option<&str>) -> Result<Params, PageError> {
        let raw: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| PageError::BadRequest(format!("unreadable query string: {e}")))?;
        let mut params = Params::default();
        for (key, value) in raw {
            if let Some(known) = KEYS.iter().find(|k| **k == key) {
                params.set(known, Some(&value));
            }
        }
        Ok(params)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// Sets (or with `None` or blank, removes) `key`; keys outside [`KEYS`] are ignored.
    pub fn set(&mut self, key: &str, value: Option<&str>) {
        let Some(known) = KEYS.iter().copied().find(|k| *k == key) else {
            return;
        };
        self.pairs.retain(|(k, _)| *k != key);
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            self.pairs.push((known, value.to_owned()));
            self.pairs
                .sort_by_key(|(k, _)| KEYS.iter().position(|known| known == k).unwrap_or(KEYS.len()));
        }
    }

    /// A copy with `key` set to `value` (or removed).
    pub fn with(&self, key: &str, value: Option<&str>) -> Params {
        let mut params = self.clone();
        params.set(key, value);
        params
    }

    /// A copy with only the keys in `keep`.
    pub fn only(&self, keep: &[&str]) -> Params {
        Params {
            pairs: self.pairs.iter().filter(|(k, _)| keep.contains(k)).cloned().collect(),
        }
    }

    /// The set parameters, in [`KEYS`] order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.pairs.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The query string (without `?`), percent-encoded.
    pub fn query(&self) -> String {
        serde_urlencoded::to_string(&self.pairs).unwrap_or_default()
    }

    /// `path` with this query string.
    pub fn href(&self, path: &str) -> String {
        let query = self.query();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }

    /// The scope these filters ask about: `since` (else `default_since`)
    /// to `until` (else `now`, in unix minutes), and the filters.
    pub fn scope(&self, default_since: &str, now: i64) -> Result<Scope, PageError> {
        let (from, to) = parse_window(self.get("since").unwrap_or(default_since), self.get("until"), now)?;
        let owned = |key| self.get(key).map(str::to_owned);
        Ok(Scope {
            from,
            to,
            service: owned("service"),
            host: owned("host"),
            environment: owned("environment"),
            transaction: owned("transaction"),
            feature: owned("feature"),
            team: owned("team"),
        })
    }

    /// `key` read as one of an enum's snake_case names (as the API writes
    /// them), `None` when unset.
    pub fn choice<T: serde::de::DeserializeOwned>(&self, key: &str, allowed: &str) -> Result<Option<T>, PageError> {
        self.get(key)
            .map(|value| {
                serde_json::from_value(serde_json::Value::String(value.to_owned()))
                    .map_err(|_| PageError::BadRequest(format!("{key}={value} is not one of {allowed}")))
            })
            .transpose()
    }

    /// `limit`, else `default`, at most 1,000.
    pub fn limit(&self, default: usize) -> Result<usize, PageError> {
        match self.get("limit") {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=1_000).contains(l))
                .ok_or_else(|| PageError::BadRequest(format!("limit={text} is not a number from 1 to 1000"))),
        }
    }
}

/// The current unix minute.
fn now_minute() -> i64 {
    jiff::Timestamp::now().as_second().div_euclid(60)
}

/// Renders a page on the blocking pool (the store reads are synchronous).
async fn render<F>(ui: Arc<Ui>, query: Option<String>, page: F) -> Response
where
    F: FnOnce(&Ui, &Params, i64) -> Result<Markup, PageError> + Send + 'static,
{
    let params = match Params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let signed_in = ui.app.requires_token();
    let rendered = tokio::task::spawn_blocking(move || page(&ui, &params, now_minute())).await;
    match rendered {
        Ok(Ok(markup)) if signed_in => html_response(StatusCode::OK, with_sign_out(markup)),
        Ok(Ok(markup)) => html_response(StatusCode::OK, markup),
        Ok(Err(error)) => error_page(&error),
        Err(error) => {
            tracing::error!(%error, "rendering a page failed");
            error_page(&PageError::BadRequest("the page could not be rendered".to_owned()))
        }
    }
}

/// A page with a "Sign out" button at the end of its header (pages are
/// shown only to readers who gave the token when one is required).
fn with_sign_out(page: Markup) -> Markup {
    let button = html! {
        form.sign-out method="post" action="/logout" { button type="submit" { "Sign out" } }
    };
    let mut text = page.into_string();
    if let Some(at) = text.find("</header>") {
        text.insert_str(at, &button.into_string());
    }
    PreEscaped(text)
}

async fn health(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, _, now| Ok(health::page(&ui.agents.snapshot(), now))).await
}

async fn overview(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, params, now| pages::overview(&ui.app, params, now)).await
}

async fn feature(State(ui): State<Arc<Ui>>, Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, move |ui, params, now| {
        pages::feature(&ui.app, &name, params, now)
    })
    .await
}

async fn transaction(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, params, now| pages::transaction(&ui.app, params, now)).await
}

async fn errors(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, params, now| pages::errors(&ui.app, params, now)).await
}

async fn error_group(State(ui): State<Arc<Ui>>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, move |ui, params, now| {
        pages::error_group(&ui.app, &id, params, now)
    })
    .await
}

async fn problems(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, params, now| pages::problems(&ui.app, params, now)).await
}

async fn problem_group(State(ui): State<Arc<Ui>>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, move |ui, params, now| {
        pages::problem_group(&ui.app, &id, params, now)
    })
    .await
}

async fn trace(State(ui): State<Arc<Ui>>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, move |ui, params, now| {
        pages::trace(&ui.app, &id, params, now)
    })
    .await
}

async fn regressions(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, params, now| pages::regressions(&ui.app, params, now)).await
}

async fn dashboard_list(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, |ui, params, _| {
        let found = dashboards::load(&ui.dashboards, &ui.app.owners);
        Ok(pages::dashboard_list(&found, params))
    })
    .await
}

async fn dashboard(State(ui): State<Arc<Ui>>, Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    render(ui, query, move |ui, params, now| {
        let found = dashboards::load(&ui.dashboards, &ui.app.owners);
        pages::dashboard(&ui.app, &found, &name, params, now)
    })
    .await
}

/// Security headers every page carries: no inline script or style runs,
/// nothing loads from elsewhere, no framing.
fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response();
    secure(&mut response);
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response();
    secure(&mut response);
    response
}

fn error_page(error: &PageError) -> Response {
    let (status, heading) = match error {
        PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "That cannot be shown"),
        PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        PageError::Analysis(AnalysisError::Scope(_)) => (StatusCode::BAD_REQUEST, "That cannot be shown"),
        PageError::Analysis(AnalysisError::Store(store)) => {
            tracing::error!(error = %store, "a page could not read the store");
            (StatusCode::INTERNAL_SERVER_ERROR, "The store could not be read")
        }
    };
    let body = html! { p.problem { (error.to_string()) } p { a href="/" { "Back to the overview" } } };
    html_response(status, pages::document(heading, pages::Nav::None, body))
}

/// The token a `Cookie` header carries in `kuroko_token`, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// Whether the request carries the query token (header or cookie).
pub(crate) fn authorized(app: &App, headers: &HeaderMap) -> bool {
    if !app.requires_token() {
        return true;
    }
    let header = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    if header.is_some_and(|h| app.authorized(Some(h))) {
        return true;
    }
    cookie_token(headers).is_some_and(|token| app.authorized(Some(format!("Bearer {token}").as_bytes())))
}

/// Lets authorized requests through; sends others to `/login`, which comes back here.
async fn require_token(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    if authorized(&ui.app, request.headers()) {
        return next.run(request).await;
    }
    let back = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let to = format!("/login?next={}", crate::format::url_component(&back));
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    secure(&mut response);
    response
}

/// Where `/login` may send the reader back to: a path of this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if same_site_path(next) => next.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Whether a browser sent to `target` (a `Location`, a link) stays on this
/// site: a path that starts with one `/`, of visible ASCII only, holding no
/// backslash — and the same once percent-decoded, where only a space
/// (`%20`, in a feature's name) may be added. Browsers drop tabs and line
/// breaks from URLs and read a backslash as `/`, so `/%09/evil.example`
/// and `/%5Cevil.example` are the other site's `//evil.example`; a scheme
/// (`https:`, `javascript:`) cannot come before the first `/`.
pub(crate) fn same_site_path(target: &str) -> bool {
    fn path_like(bytes: &[u8]) -> bool {
        bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && !bytes.iter().any(|b| b.is_ascii_control() || *b == b'\\')
    }
    target.bytes().all(|b| b.is_ascii_graphic())
        && path_like(target.as_bytes())
        && path_like(&percent_encoding::percent_decode_str(target).collect::<Vec<u8>>())
}

fn login_page(app: &App, next: &str, problem: Option<&str>) -> Markup {
    let body = html! {
        @if app.requires_token() {
            form.login method="post" action="/login" {
                p { "This reporter requires its query token (" code { "[auth] query_token_file" } " in kuroko.toml)." }
                @if let Some(problem) = problem { p.problem { (problem) } }
                label { "Token " input type="password" name="token" autocomplete="current-password" autofocus; }
                input type="hidden" name="next" value=(next);
                button type="submit" { "Sign in" }
            }
        } @else {
            p { "No token is required: " a href=(next) { "go on" } "." }
        }
    };
    pages::document("Sign in", pages::Nav::None, body)
}

async fn login_form(State(ui): State<Arc<Ui>>, RawQuery(query): RawQuery) -> Response {
    let next: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let next = safe_next(next.iter().find(|(k, _)| k == "next").map(|(_, v)| v.as_str()));
    html_response(StatusCode::OK, login_page(&ui.app, &next, None))
}

/// A cookie value may hold only these characters (RFC 6265's cookie-octet).
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// Longest login form read (a token and a path).
const LOGIN_FORM_BYTES: usize = 16 << 10;

async fn login(State(ui): State<Arc<Ui>>, request: Request) -> Response {
    let address = throttle::client_address(&request);
    if let Err(wait) = ui.throttle.check(address, Instant::now()) {
        let seconds = throttle::retry_seconds(wait);
        let problem = format!("Too many wrong tokens: try again in {seconds} s.");
        let mut response = html_response(StatusCode::TOO_MANY_REQUESTS, login_page(&ui.app, "/", Some(&problem)));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let body = axum::body::to_bytes(request.into_body(), LOGIN_FORM_BYTES)
        .await
        .unwrap_or_default();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let next = safe_next(field("next"));
    let token = field("token").unwrap_or("").trim();
    if !ui.app.authorized(Some(format!("Bearer {token}").as_bytes())) {
        ui.throttle.failure(address, Instant::now());
        return html_response(
            StatusCode::UNAUTHORIZED,
            login_page(&ui.app, &next, Some("That is not the query token.")),
        );
    }
    if !cookie_safe(token) {
        return html_response(
            StatusCode::BAD_REQUEST,
            login_page(
                &ui.app,
                &next,
                Some("This token has characters a cookie cannot hold; send it as Authorization: Bearer instead."),
            ),
        );
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        secure_flag(&ui.app)
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, next), (header::SET_COOKIE, cookie)],
    )
        .into_response();
    secure(&mut response);
    response
}

/// `; Secure` when the UI is served over HTTPS (`[tls]`, or a proxy's, as
/// its `base_url` says).
fn secure_flag(app: &App) -> &'static str {
    if app.tls || app.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// Clears the token cookie and goes back to `/login`.
async fn logout(State(ui): State<Arc<Ui>>) -> Response {
    let cookie = format!(
        "{TOKEN_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure_flag(&ui.app)
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/login".to_owned()), (header::SET_COOKIE, cookie)],
    )
        .into_response();
    secure(&mut response);
    response
}
