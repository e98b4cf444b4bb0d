//! The fleet's model: what each transaction is (its role in the planted
//! story, latency modes, segments, errors) and the daily cycles every
//! transaction follows.

use super::{Rng, DAY};

/// What a transaction plays in the planted story.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing planted.
    Ordinary,
    /// A slow endpoint.
    Slow,
    /// Its p95 regresses (its slow mode moves, its median stays).
    Regressing,
    /// High variance, no change.
    Noisy,
    /// Its time is dominated by one database segment.
    DatabaseHeavy,
    /// Fails in a burst on one host, with ids in its messages.
    ErrorBurst,
}

/// A log-normal mode of a latency mixture.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mode {
    pub(super) median: f64,
    pub(super) sigma: f64,
}

/// One segment of a transaction's runs: its share of each run's time.
#[derive(Clone, Debug)]
pub(super) struct Segment {
    pub(super) kind: &'static str,
    pub(super) name: &'static str,
    /// `kuroko.segment.kind=…,kuroko.segment.name=…`, as ingest writes it.
    pub(super) labels: String,
    pub(super) share: f64,
    pub(super) calls_per_run: u32,
}

/// An ordinary error a transaction sometimes throws.
pub(super) const BACKGROUND_ERRORS: [(&str, &str, &str); 4] = [
    (
        "std::io::error::Error",
        "connection reset by peer",
        "src/db/pool.rs:214",
    ),
    (
        "tokio::time::error::Elapsed",
        "deadline has elapsed",
        "src/clients/payments.rs:57",
    ),
    (
        "serde_json::error::Error",
        "missing field `currency` at line 1 column 48",
        "src/api/decode.rs:31",
    ),
    (
        "sqlx_core::error::Error",
        "error returned from database: deadlock detected",
        "src/db/orders.rs:142",
    ),
];

pub(super) const BURST_TYPE: &str = "kuroko_shop::orders::OrderNotFound";
pub(super) const BURST_LOCATION: &str = "src/orders.rs:88";
pub(super) const BURST_PATTERN: &str = "order {id} not found for user {hex}";
/// Share of the burst transaction's runs on the burst host that fail during the burst.
pub(super) const BURST_FAILURE: f64 = 0.4;
pub(super) const REGRESSION_FACTOR: f64 = 1.3;
pub(super) const DATABASE_SHARE: f64 = 0.78;
pub(super) const DATABASE_SEGMENT: &str = "SELECT cards JOIN card_events";
/// Runs at least this many Apdex T long are kept as traces (the agent's rule).
pub(super) const SLOW_FACTOR: f64 = 4.0;

/// A transaction of one service, the same on every host.
#[derive(Clone, Debug)]
pub(super) struct Profile {
    pub(super) role: Role,
    pub(super) name: String,
    pub(super) feature: String,
    pub(super) kind: &'static str,
    pub(super) popularity: f64,
    pub(super) fast: Mode,
    /// The slow mode and its weight.
    pub(super) slow: Option<(f64, Mode)>,
    pub(super) failure_rate: f64,
    pub(super) client_error_rate: f64,
    pub(super) errors: Vec<usize>,
    pub(super) segments: Vec<Segment>,
}

const SERVICES: [&str; 10] = [
    "shop-api",
    "billing",
    "search",
    "accounts",
    "catalog",
    "notify",
    "payments",
    "inventory",
    "shipping",
    "reviews",
];
const RESOURCES: [&str; 20] = [
    "users",
    "carts",
    "products",
    "payments",
    "sessions",
    "coupons",
    "addresses",
    "wishlists",
    "reviews",
    "shipments",
    "stock",
    "prices",
    "tickets",
    "messages",
    "teams",
    "projects",
    "invoices",
    "files",
    "webhooks",
    "tokens",
];
const ROUTES: [(&str, &str); 5] = [
    ("GET", "/{r}/{id}"),
    ("GET", "/{r}"),
    ("POST", "/{r}"),
    ("PUT", "/{r}/{id}"),
    ("DELETE", "/{r}/{id}"),
];
const JOBS: [&str; 5] = ["sync", "rollup", "cleanup", "export", "reindex"];
const FEATURES: [&str; 6] = [
    "checkout",
    "catalog",
    "accounts",
    "reporting",
    "notifications",
    "search",
];
const DATABASE: [&str; 4] = ["SELECT users", "SELECT products", "UPDATE carts", "INSERT audit_log"];
const EXTERNAL: [&str; 3] = [
    "POST payments.internal/charge",
    "GET inventory.internal/stock",
    "POST mailer.internal/send",
];
const CODE: [&str; 3] = ["render_template", "serialize_json", "compute_prices"];

pub(super) fn service_name(service: usize) -> String {
    SERVICES
        .get(service)
        .map_or_else(|| format!("svc-{service}"), |name| (*name).to_owned())
}

fn segment(kind: &'static str, name: &'static str, share: f64, calls_per_run: u32) -> Segment {
    Segment {
        kind,
        name,
        labels: format!("kuroko.segment.kind={kind},kuroko.segment.name={name}"),
        share,
        calls_per_run,
    }
}

fn role(services: usize, service: usize, transaction: usize) -> Role {
    match (service, transaction) {
        (0, 0) => Role::Slow,
        (s, 1) if s == services - 1 => Role::Slow,
        (0, 2) => Role::Regressing,
        (0, 3) => Role::Noisy,
        (0, 4) => Role::DatabaseHeavy,
        (0, 5) => Role::ErrorBurst,
        _ => Role::Ordinary,
    }
}

pub(super) fn profile(seed: u64, services: usize, service: usize, transaction: usize) -> Profile {
    let mut rng = Rng::new(&[seed, 1, service as u64, transaction as u64]);
    let role = role(services, service, transaction);
    let planted = |name: &str, feature: &str, fast: Mode| Profile {
        role,
        name: name.to_owned(),
        feature: feature.to_owned(),
        kind: "web",
        popularity: 1.0,
        fast,
        slow: None,
        failure_rate: 0.002,
        client_error_rate: 0.01,
        errors: vec![0],
        segments: vec![
            segment("database", "SELECT orders", 0.25, 2),
            segment("code", "serialize_json", 0.1, 1),
        ],
    };
    let mode = |median, sigma| Mode { median, sigma };
    match role {
        Role::Slow if service == 0 => Profile {
            segments: vec![
                segment("database", "SELECT report_rows", 0.35, 12),
                segment("code", "render_template", 0.4, 1),
            ],
            ..planted("GET /reports/{id}/export", "reporting", mode(2.0, 0.4))
        },
        Role::Slow => Profile {
            segments: vec![
                segment("external", "POST pdf.internal/render", 0.6, 1),
                segment("database", "SELECT invoice_lines", 0.15, 3),
            ],
            ..planted("POST /documents/{id}/pdf", "reporting", mode(1.8, 0.4))
        },
        Role::Regressing => Profile {
            slow: Some((0.1, mode(0.22, 0.3))),
            ..planted("GET /orders/{id}", "checkout", mode(0.04, 0.35))
        },
        Role::Noisy => planted("GET /search", "search", mode(0.05, 1.1)),
        Role::DatabaseHeavy => Profile {
            segments: vec![
                segment("database", DATABASE_SEGMENT, DATABASE_SHARE, 4),
                segment("code", "serialize_json", 0.06, 1),
            ],
            ..planted("GET /cards/{id}", "accounts", mode(0.12, 0.4))
        },
        Role::ErrorBurst => planted("POST /orders/{id}/refund", "checkout", mode(0.06, 0.4)),
        Role::Ordinary => {
            let resource = RESOURCES[transaction % RESOURCES.len()];
            let round = transaction / (RESOURCES.len() * ROUTES.len());
            let version = if round > 0 {
                format!("/v{}", round + 1)
            } else {
                String::new()
            };
            let job = transaction % 5 == 4;
            let variant = (transaction / RESOURCES.len()) % ROUTES.len();
            let name = if job {
                format!("{}-{resource}{}", JOBS[variant], version.replace('/', "-"))
            } else {
                let (method, route) = ROUTES[variant];
                format!("{method} {version}{}", route.replace("{r}", resource))
            };
            let mut segments = vec![segment(
                "database",
                DATABASE[rng.next_u64() as usize % DATABASE.len()],
                rng.between(0.15, 0.35),
                1 + (rng.next_u64() % 3) as u32,
            )];
            if rng.uniform() < 0.5 {
                segments.push(segment(
                    "external",
                    EXTERNAL[rng.next_u64() as usize % EXTERNAL.len()],
                    rng.between(0.05, 0.3),
                    1,
                ));
            }
            segments.push(segment(
                "code",
                CODE[rng.next_u64() as usize % CODE.len()],
                rng.between(0.05, 0.15),
                1,
            ));
            let errors = if rng.uniform() < 0.5 {
                vec![rng.next_u64() as usize % BACKGROUND_ERRORS.len()]
            } else {
                vec![0, 1 + rng.next_u64() as usize % (BACKGROUND_ERRORS.len() - 1)]
            };
            let fast = if job {
                mode(0.1 * rng.uniform().exp(), 0.5)
            } else {
                mode(0.015 * (rng.uniform() * 1.7).exp(), rng.between(0.4, 0.6))
            };
            Profile {
                role,
                name,
                feature: FEATURES[(service + transaction % 4) % FEATURES.len()].to_owned(),
                kind: if job { "job" } else { "web" },
                popularity: if job { 0.1 } else { (rng.normal() * 0.6).exp() },
                fast,
                slow: None,
                failure_rate: rng.between(0.0005, 0.003),
                client_error_rate: if job { 0.0 } else { rng.between(0.0, 0.02) },
                errors,
                segments,
            }
        }
    }
}

/// How a run ended, as `kuroko.outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Ok,
    ClientError,
    ServerError,
    Error,
}

pub(super) const OUTCOMES: [&str; 4] = ["ok", "4xx", "5xx", "error"];

/// Why a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    Background(usize),
    Burst { order: u32, user: u32 },
}

/// One sampled run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    pub(super) seconds: f64,
    pub(super) outcome: Outcome,
    pub(super) failure: Option<Failure>,
}

/// Daily phase in `[-1, 1]`: 1 at 12:00 UTC, -1 at midnight.
fn daily(minute: i64) -> f64 {
    let of_day = minute.rem_euclid(DAY) as f64;
    (std::f64::consts::TAU * (of_day - 360.0) / DAY as f64).sin()
}

/// Traffic relative to an average weekday hour: busier by day, 60% at weekends.
pub(super) fn traffic(minute: i64) -> f64 {
    // 1970-01-01 was a Thursday: day 2 and 3 of each week are Saturday and Sunday.
    let weekend = matches!(minute.div_euclid(DAY).rem_euclid(7), 2 | 3);
    (1.0 + 0.6 * daily(minute)) * if weekend { 0.6 } else { 1.0 }
}

/// Latency relative to average: up to 8% slower at the busiest hour.
pub(super) fn latency_cycle(minute: i64) -> f64 {
    1.0 + 0.08 * daily(minute)
}
