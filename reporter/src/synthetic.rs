//! Seeded synthetic weeks of agent-shaped data, with known truths planted.
//!
//! The analysis layer (slowest endpoints, regressions, errors, breakdowns) is
//! tested against data whose answers are known, the `slowest` benchmark needs
//! a big realistic store, and `kuroko demo` backfills a past week. This module
//! makes such data: a fleet of services × hosts × transactions, each series
//! with a duration histogram per step, outcome, Apdex and segment counters,
//! errors and a few slow traces, in exactly the shapes ingest produces
//! (counter labels are the sorted `k=v` pairs of `ingest::otlp::labels`;
//! trace spans are the JSON of `ingest::traces`).
//!
//! # The model
//!
//! - Traffic: a Poisson number of runs per series and step, from
//!   [`Spec::runs_per_minute`] × the transaction's popularity × a daily cycle
//!   (busier by day, quieter at night, quieter at weekends). Above a mean of
//!   30 the Poisson draw is its normal approximation.
//! - Latency: log-normal per transaction (some a mixture of a fast and a
//!   slow mode), times a mild daily cycle (busier is a little slower).
//! - Every run is sampled: each histogram is built by recording its runs one
//!   by one, so its count, sum, min, max and buckets are exact for its
//!   samples. The fleet preset stays fast by a realistic rate (10 runs per
//!   series-minute), not by approximating the histograms.
//! - Randomness: a hand-written splitmix64, seeded per (seed, series, minute):
//!   the same seed gives the same data, and [`Generator::raw_samples`] can
//!   replay any step's samples without generating the rest.
//! - A point at minute `m` holds the runs of the `step_minutes` minutes from
//!   `m`. Counters are summed per clock hour when [`Spec::hourly_counters`]
//!   is set (stamped at the hour's first step), so sums over whole hours are
//!   exact while the fleet stays at ~12 counter rows per series-hour rather
//!   than per minute; otherwise per step.
//!
//! # Planted truths (see [`Truths`])
//!
//! Two slow endpoints; one transaction whose p95 regresses by +30% (only its
//! slow mode moves, its median stays); one noisy transaction with no change;
//! an error burst on one host of one service, with ids in its messages, over
//! a background of ordinary errors; one transaction dominated by a database
//! segment; Apdex counts consistent with the samples.

use crate::histogram::Histogram;
use crate::store::{Batch, CounterPoint, ErrorPoint, Filter, HistogramPoint, SeriesKey, Store, StoreError, TracePoint};

const DAY: i64 = 1_440;
const WEEK: i64 = 7 * DAY;
const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Seed: the same seed gives the same data.
    pub seed: u64,
    /// Services.
    pub services: usize,
    /// Hosts per service; every transaction of a service runs on each.
    pub hosts_per_service: usize,
    /// Transactions per service (at least 6: the planted roles need them).
    pub transactions_per_service: usize,
    /// First minute (unix minutes).
    pub start_minute: i64,
    /// Minutes covered.
    pub minutes: i64,
    /// Minutes per histogram point: 1 is minute resolution.
    pub step_minutes: i64,
    /// Mean runs per series and minute, at an average hour of a weekday,
    /// for a transaction of average popularity.
    pub runs_per_minute: f64,
    /// Apdex T, seconds.
    pub apdex_threshold: f64,
    /// Sum counters per clock hour instead of per step.
    pub hourly_counters: bool,
}

impl Spec {
    /// For tests: 2 services × 2 hosts × 6 transactions, two weeks ending at
    /// `start_minute + 14 days`, a point per 10 minutes of ~80 runs; counters
    /// per hour. Generates and writes in seconds.
    pub fn small(start_minute: i64) -> Spec {
        Spec {
            seed: 0x6b75_726f_6b6f,
            services: 2,
            hosts_per_service: 2,
            transactions_per_service: 6,
            start_minute,
            minutes: 2 * WEEK,
            step_minutes: 10,
            runs_per_minute: 8.0,
            apdex_threshold: 0.5,
            hourly_counters: true,
        }
    }

    /// For the benchmark: 10 services × 10 hosts × 20 transactions (2,000
    /// series), one week at minute resolution (~20M histogram points),
    /// ~10 runs per series-minute; counters per hour.
    pub fn fleet(start_minute: i64) -> Spec {
        Spec {
            seed: 0x6b75_726f_6b6f,
            services: 10,
            hosts_per_service: 10,
            transactions_per_service: 20,
            start_minute,
            minutes: WEEK,
            step_minutes: 1,
            runs_per_minute: 10.0,
            apdex_threshold: 0.5,
            hourly_counters: true,
        }
    }

    /// The minute after the last one covered.
    pub fn end_minute(&self) -> i64 {
        self.start_minute.saturating_add(self.minutes)
    }

    /// The spec brought within what the generator needs: at least one
    /// service and host, six transactions, a step of a minute, one step,
    /// a finite non-negative rate and a positive Apdex T (else 0.5 s).
    fn normalised(&self) -> Spec {
        let step = self.step_minutes.max(1);
        Spec {
            services: self.services.max(1),
            hosts_per_service: self.hosts_per_service.max(1),
            transactions_per_service: self.transactions_per_service.max(6),
            step_minutes: step,
            minutes: self.minutes.max(step),
            runs_per_minute: if self.runs_per_minute.is_finite() {
                self.runs_per_minute.max(0.0)
            } else {
                0.0
            },
            apdex_threshold: if self.apdex_threshold.is_finite() && self.apdex_threshold > 0.0 {
                self.apdex_threshold
            } else {
                0.5
            },
            ..self.clone()
        }
    }
}

/// A planted transaction: its service and name (on every host of the service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planted {
    /// The service.
    pub service: String,
    /// The transaction.
    pub transaction: String,
    /// Its feature.
    pub feature: String,
}

impl Planted {
    /// A store filter for this transaction, all hosts.
    pub fn filter(&self) -> Filter {
        Filter {
            service: Some(self.service.clone()),
            transaction: Some(self.transaction.clone()),
            ..Filter::default()
        }
    }
}

/// The planted error burst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorBurst {
    /// The transaction it happens in.
    pub transaction: Planted,
    /// The one host it happens on.
    pub host: String,
    /// Its `exception.type`.
    pub error_type: String,
    /// Its location, `file:line`.
    pub location: String,
    /// Its message with the ids replaced: `order {id} not found for user {hex}`.
    pub message_pattern: String,
    /// First minute of the burst (unix minutes).
    pub from_minute: i64,
    /// Minute after its last.
    pub to_minute: i64,
    /// Occurrences generated.
    pub count: u64,
}

/// What was planted and how much was generated.
#[derive(Clone, Debug, PartialEq)]
pub struct Truths {
    /// The two slow endpoints: p95 several times any other endpoint's.
    pub slow_endpoints: Vec<Planted>,
    /// The transaction whose p95 regresses (its median does not move).
    pub regression: Planted,
    /// First minute of the regression: the last 7 days of a two-week spec,
    /// else the second half.
    pub regression_start: i64,
    /// How much its p95 grows: 1.3.
    pub regression_factor: f64,
    /// A transaction with a high variance and no change.
    pub noisy: Planted,
    /// The error burst on one host.
    pub error_burst: ErrorBurst,
    /// Occurrences of ordinary errors, all over the fleet.
    pub background_errors: u64,
    /// The transaction whose time is dominated by one database segment.
    pub database_heavy: Planted,
    /// The segment's name.
    pub database_segment: String,
    /// Its share of the transaction's time.
    pub database_share: f64,
    /// Apdex T used for the Apdex counters, seconds.
    pub apdex_threshold: f64,
    /// Series generated.
    pub series: usize,
    /// Runs sampled.
    pub runs: u64,
    /// Histogram points generated.
    pub histogram_points: u64,
    /// Counter points generated.
    pub counter_points: u64,
    /// Error points generated.
    pub error_points: u64,
    /// Traces generated.
    pub traces: u64,
}

/// Other names (and optionally another regression) for a generated fleet,
/// so that generated history lines up with a live one: `kuroko demo`
/// backfills its own services' past this way. What is left empty keeps its
/// built-in name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Service names, by index.
    pub services: Vec<String>,
    /// Host names per service: `hosts[service][host]` (default `{service}-{host}`).
    pub hosts: Vec<Vec<String>>,
    /// Per service, its transactions by index. The planted roles sit at
    /// fixed indices (see [`Generator::models`] for which is which), so name
    /// them knowing their role.
    pub transactions: Vec<Vec<TransactionName>>,
    /// `deployment.environment.name`; default `production`.
    pub environment: Option<String>,
    /// The planted regression: from this minute (unix minutes), the slow
    /// mode's latency times this factor (1.0 plants none). Default: the last
    /// week (or second half) of the spec, +30%.
    pub regression: Option<(i64, f64)>,
}

/// A transaction's name, feature and kind (`web` or `job`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionName {
    /// E.g. `GET /products/{id}`.
    pub name: String,
    /// Its feature.
    pub feature: String,
    /// `web` or `job`.
    pub kind: String,
}

/// How a generated transaction behaves (see [`Generator::models`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TransactionModel {
    /// Its service.
    pub service: String,
    /// Its name.
    pub transaction: String,
    /// Its feature.
    pub feature: String,
    /// `web` or `job`.
    pub kind: String,
    /// What it plays in the planted story.
    pub role: Role,
    /// Traffic relative to an average transaction.
    pub popularity: f64,
    /// Median of its (fast) log-normal latency mode, seconds.
    pub median: f64,
    /// Its sigma.
    pub sigma: f64,
    /// A slow mode: (weight, median seconds, sigma), before any regression.
    pub slow_mode: Option<(f64, f64, f64)>,
    /// Share of runs that fail (5xx, or error for a job).
    pub failure_rate: f64,
    /// Share of runs answered 4xx.
    pub client_error_rate: f64,
    /// The ordinary errors it throws: (type, message, location).
    pub errors: Vec<(String, String, String)>,
    /// Where its time goes.
    pub segments: Vec<SegmentModel>,
}

/// One segment of a [`TransactionModel`].
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentModel {
    /// `database`, `external` or `code`.
    pub kind: String,
    /// E.g. `SELECT users`.
    pub name: String,
    /// Its share of each run's time.
    pub share: f64,
    /// Calls per run.
    pub calls_per_run: u32,
}

/// Latency at `minute` (unix minutes) relative to the average: the mild
/// daily cycle every generated transaction follows (up to 8% slower at the
/// busiest hour).
pub fn latency_factor(minute: i64) -> f64 {
    latency_cycle(minute)
}

/// Traffic at `minute` relative to an average weekday hour (busier by day,
/// 60% at weekends).
pub fn traffic_factor(minute: i64) -> f64 {
    traffic(minute)
}

/// splitmix64: tiny, fast, and good enough for synthetic data; no dependency.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
    spare_normal: Option<f64>,
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of `parts`, for seeding and ids.
fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x9e37_79b9_7f4a_7c15, |hash, &part| {
        splitmix(hash ^ splitmix(part.wrapping_add(0x9e37_79b9_7f4a_7c15)))
    })
}

impl Rng {
    pub(crate) fn new(parts: &[u64]) -> Rng {
        Rng {
            state: mix(parts),
            spare_normal: None,
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller, both values used).
    pub(crate) fn normal(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        let radius = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * self.uniform()).sin_cos();
        self.spare_normal = Some(radius * sin);
        radius * cos
    }

    /// Poisson with `mean`: exact (Knuth) up to 30, normal approximation above.
    pub(crate) fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let (mut n, mut product) = (0u64, self.uniform());
        while product > limit {
            n += 1;
            product *= self.uniform();
        }
        n
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }
}

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
struct Mode {
    median: f64,
    sigma: f64,
}

/// One segment of a transaction's runs: its share of each run's time.
#[derive(Clone, Debug)]
struct Segment {
    kind: &'static str,
    name: &'static str,
    /// `kuroko.segment.kind=…,kuroko.segment.name=…`, as ingest writes it.
    labels: String,
    share: f64,
    calls_per_run: u32,
}

/// An ordinary error a transaction sometimes throws.
const BACKGROUND_ERRORS: [(&str, &str, &str); 4] = [
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

const BURST_TYPE: &str = "kuroko_shop::orders::OrderNotFound";
const BURST_LOCATION: &str = "src/orders.rs:88";
const BURST_PATTERN: &str = "order {id} not found for user {hex}";
/// Share of the burst transaction's runs on the burst host that fail during the burst.
const BURST_FAILURE: f64 = 0.4;
const REGRESSION_FACTOR: f64 = 1.3;
const DATABASE_SHARE: f64 = 0.78;
const DATABASE_SEGMENT: &str = "SELECT cards JOIN card_events";
/// Runs at least this many Apdex T long are kept as traces (the agent's rule).
const SLOW_FACTOR: f64 = 4.0;

/// A transaction of one service, the same on every host.
#[derive(Clone, Debug)]
struct Profile {
    role: Role,
    name: String,
    feature: String,
    kind: &'static str,
    popularity: f64,
    fast: Mode,
    /// The slow mode and its weight.
    slow: Option<(f64, Mode)>,
    failure_rate: f64,
    client_error_rate: f64,
    errors: Vec<usize>,
    segments: Vec<Segment>,
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

fn service_name(service: usize) -> String {
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

fn profile(seed: u64, services: usize, service: usize, transaction: usize) -> Profile {
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
enum Outcome {
    Ok,
    ClientError,
    ServerError,
    Error,
}

const OUTCOMES: [&str; 4] = ["ok", "4xx", "5xx", "error"];

/// Why a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Background(usize),
    Burst { order: u32, user: u32 },
}

/// One sampled run.
#[derive(Clone, Copy, Debug)]
struct Run {
    seconds: f64,
    outcome: Outcome,
    failure: Option<Failure>,
}

/// Sums over a counter period of one series.
#[derive(Default)]
struct Tally {
    runs: u64,
    seconds: f64,
    outcomes: [u64; 4],
    apdex: [u64; 3],
    /// The period's first step.
    minute: Option<i64>,
}

/// Generates a [`Spec`]'s data; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Generator {
    spec: Spec,
    /// Per service × transaction.
    profiles: Vec<Profile>,
    /// Per series, in index order.
    keys: Vec<SeriesKey>,
    /// `kuroko.apdex.threshold=…,kuroko.apdex.zone=…` per zone.
    apdex_labels: [String; 3],
    regression_start: i64,
    regression_factor: f64,
    burst: (i64, i64),
    /// Service names, by index.
    services: Vec<String>,
    /// Host names per service.
    hosts: Vec<Vec<String>>,
}

impl Generator {
    /// The generator of `spec` (normalised: see [`Spec::transactions_per_service`]).
    pub fn new(spec: &Spec) -> Generator {
        let spec = spec.normalised();
        let mut profiles = Vec::new();
        for service in 0..spec.services {
            for transaction in 0..spec.transactions_per_service {
                profiles.push(profile(spec.seed, spec.services, service, transaction));
            }
        }
        let services: Vec<String> = (0..spec.services).map(service_name).collect();
        let hosts = services
            .iter()
            .map(|name| (0..spec.hosts_per_service).map(|h| format!("{name}-{h}")).collect())
            .collect();
        let t = spec.apdex_threshold;
        let apdex_labels = ["satisfied", "tolerating", "frustrated"]
            .map(|zone| format!("kuroko.apdex.threshold={t},kuroko.apdex.zone={zone}"));
        let (start, end, step) = (spec.start_minute, spec.end_minute(), spec.step_minutes);
        let regression_start = align_up(end - (spec.minutes / 2).min(WEEK), start, step);
        // The burst: 09:00 to 15:00 UTC of the day before the last, or the
        // middle of a spec shorter than that.
        let day = (end - 1).div_euclid(DAY) - 1;
        let mut burst = (day * DAY + 9 * 60, day * DAY + 15 * 60);
        if burst.0 < start || burst.1 > end {
            let middle = start + spec.minutes / 2;
            burst = (middle, (middle + 6 * 60).min(end));
        }
        let mut generator = Generator {
            spec,
            profiles,
            keys: Vec::new(),
            apdex_labels,
            regression_start,
            regression_factor: REGRESSION_FACTOR,
            burst,
            services,
            hosts,
        };
        generator.make_keys("production");
        generator
    }

    /// The generator of `spec` with `overrides` applied: the same model and
    /// planted truths under other names (and, if asked, another regression).
    pub fn with_overrides(spec: &Spec, overrides: &Overrides) -> Generator {
        let mut generator = Generator::new(spec);
        let per = generator.spec.transactions_per_service;
        for (service, name) in overrides.services.iter().enumerate().take(generator.services.len()) {
            generator.services[service] = name.clone();
            generator.hosts[service] = (0..generator.spec.hosts_per_service)
                .map(|h| format!("{name}-{h}"))
                .collect();
        }
        for (service, hosts) in overrides.hosts.iter().enumerate().take(generator.hosts.len()) {
            for (host, name) in hosts.iter().enumerate().take(generator.spec.hosts_per_service) {
                generator.hosts[service][host] = name.clone();
            }
        }
        for (service, transactions) in overrides.transactions.iter().enumerate().take(generator.services.len()) {
            for (transaction, named) in transactions.iter().enumerate().take(per) {
                let profile = &mut generator.profiles[service * per + transaction];
                profile.name = named.name.clone();
                profile.feature = named.feature.clone();
                profile.kind = if named.kind == "job" { "job" } else { "web" };
            }
        }
        if let Some((start, factor)) = overrides.regression {
            generator.regression_start = align_up(start, generator.spec.start_minute, generator.spec.step_minutes);
            generator.regression_factor = if factor.is_finite() && factor > 0.0 {
                factor
            } else {
                1.0
            };
        }
        let environment = overrides.environment.as_deref().unwrap_or("production");
        generator.make_keys(environment);
        generator
    }

    /// Every series' key, service-major, then host, then transaction.
    fn make_keys(&mut self, environment: &str) {
        let spec = &self.spec;
        let mut keys = Vec::new();
        for service in 0..spec.services {
            for host in 0..spec.hosts_per_service {
                for transaction in 0..spec.transactions_per_service {
                    let p = &self.profiles[service * spec.transactions_per_service + transaction];
                    keys.push(SeriesKey {
                        service: self.services[service].clone(),
                        host: self.hosts[service][host].clone(),
                        transaction: p.name.clone(),
                        feature: p.feature.clone(),
                        kind: p.kind.to_owned(),
                        environment: environment.to_owned(),
                    });
                }
            }
        }
        self.keys = keys;
    }

    /// How each transaction behaves, per service then transaction: what a
    /// live simulation samples from to carry the generated history on.
    pub fn models(&self) -> Vec<TransactionModel> {
        let per = self.spec.transactions_per_service;
        self.profiles
            .iter()
            .enumerate()
            .map(|(i, p)| TransactionModel {
                service: self.services[i / per].clone(),
                transaction: p.name.clone(),
                feature: p.feature.clone(),
                kind: p.kind.to_owned(),
                role: p.role,
                popularity: p.popularity,
                median: p.fast.median,
                sigma: p.fast.sigma,
                slow_mode: p.slow.map(|(weight, mode)| (weight, mode.median, mode.sigma)),
                failure_rate: p.failure_rate,
                client_error_rate: p.client_error_rate,
                errors: p
                    .errors
                    .iter()
                    .map(|&e| {
                        let (error_type, message, location) = BACKGROUND_ERRORS[e];
                        (error_type.to_owned(), message.to_owned(), location.to_owned())
                    })
                    .collect(),
                segments: p
                    .segments
                    .iter()
                    .map(|s| SegmentModel {
                        kind: s.kind.to_owned(),
                        name: s.name.to_owned(),
                        share: s.share,
                        calls_per_run: s.calls_per_run,
                    })
                    .collect(),
            })
            .collect()
    }

    /// What is planted, known before generating (the counts are zero).
    pub fn planted(&self) -> Truths {
        self.truths()
    }

    /// The spec generated, normalised.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Every series, by index: service-major, then host, then transaction.
    pub fn series(&self) -> &[SeriesKey] {
        &self.keys
    }

    /// Batches [`generate`](Self::generate) hands to its sink: one per
    /// clock hour touched and service.
    pub fn batch_count(&self) -> u64 {
        let hours = hour_chunks(&self.spec).count() as u64;
        hours * self.spec.services as u64
    }

    /// The minutes that carry a point: `start_minute + k × step_minutes`.
    pub fn steps(&self) -> impl Iterator<Item = i64> {
        let step = self.spec.step_minutes as usize;
        (self.spec.start_minute..self.spec.end_minute()).step_by(step)
    }

    /// The durations (seconds) sampled for series `series` at `minute`: the
    /// very samples its histogram point was built from, in the order drawn.
    /// Empty when `minute` carries no point or `series` is out of range.
    pub fn raw_samples(&self, series: usize, minute: i64) -> Vec<f64> {
        let mut runs = Vec::new();
        self.runs(series, minute, &mut runs);
        runs.iter().map(|r| r.seconds).collect()
    }

    fn profile_of(&self, series: usize) -> (usize, usize, &Profile) {
        let per_service = self.spec.hosts_per_service * self.spec.transactions_per_service;
        let service = series / per_service;
        let host = series % per_service / self.spec.transactions_per_service;
        let transaction = series % self.spec.transactions_per_service;
        let profile = &self.profiles[service * self.spec.transactions_per_service + transaction];
        (service, host, profile)
    }

    /// Samples the runs of `series` at `minute` into `out`.
    fn runs(&self, series: usize, minute: i64, out: &mut Vec<Run>) {
        out.clear();
        let spec = &self.spec;
        if series >= self.keys.len()
            || minute < spec.start_minute
            || minute >= spec.end_minute()
            || (minute - spec.start_minute) % spec.step_minutes != 0
        {
            return;
        }
        let (service, host, p) = self.profile_of(series);
        let mut rng = Rng::new(&[spec.seed, 2, series as u64, minute as u64]);
        let mean = spec.runs_per_minute * spec.step_minutes as f64 * p.popularity * traffic(minute);
        let n = rng.poisson(mean);
        let slow_scale = if p.role == Role::Regressing && minute >= self.regression_start {
            self.regression_factor
        } else {
            1.0
        };
        let latency = latency_cycle(minute);
        let burst =
            p.role == Role::ErrorBurst && service == 0 && host == 0 && (self.burst.0..self.burst.1).contains(&minute);
        let failed = if p.kind == "web" {
            Outcome::ServerError
        } else {
            Outcome::Error
        };
        for _ in 0..n {
            let pick = rng.uniform();
            let z = rng.normal();
            let mode = match p.slow {
                Some((weight, slow)) if pick < weight => Mode {
                    median: slow.median * slow_scale,
                    ..slow
                },
                _ => p.fast,
            };
            let seconds = mode.median * (mode.sigma * z).exp() * latency;
            let fate = rng.uniform();
            let which = rng.next_u64();
            let (outcome, failure) = if burst && fate < BURST_FAILURE {
                let failure = Failure::Burst {
                    order: 10_000 + (which % 90_000) as u32,
                    user: (which >> 32) as u32,
                };
                (Outcome::ServerError, Some(failure))
            } else if fate >= 1.0 - p.failure_rate {
                let error = p.errors[which as usize % p.errors.len()];
                (failed, Some(Failure::Background(error)))
            } else if fate >= 1.0 - p.failure_rate - p.client_error_rate {
                (Outcome::ClientError, None)
            } else {
                (Outcome::Ok, None)
            };
            out.push(Run {
                seconds,
                outcome,
                failure,
            });
        }
    }

    /// Generates every batch, in time order (an hour of one service at a
    /// time, so memory stays flat), handing each to `sink`; stops at the
    /// sink's first error.
    pub fn generate<E>(&self, mut sink: impl FnMut(Batch) -> Result<(), E>) -> Result<Truths, E> {
        let mut truths = self.truths();
        let mut runs = Vec::new();
        for (from, to) in hour_chunks(&self.spec) {
            for service in 0..self.spec.services {
                let mut batch = Batch::default();
                let per_service = self.spec.hosts_per_service * self.spec.transactions_per_service;
                for series in service * per_service..(service + 1) * per_service {
                    self.series_chunk(series, (from, to), &mut runs, &mut batch, &mut truths);
                }
                truths.histogram_points += batch.histograms.len() as u64;
                truths.counter_points += batch.counters.len() as u64;
                truths.error_points += batch.errors.len() as u64;
                truths.traces += batch.traces.len() as u64;
                sink(batch)?;
            }
        }
        Ok(truths)
    }

    /// The truths known before generating; counts start at zero.
    fn truths(&self) -> Truths {
        let planted = |role: Role| -> Vec<Planted> {
            let per = self.spec.transactions_per_service;
            self.profiles
                .iter()
                .enumerate()
                .filter(|(_, p)| p.role == role)
                .map(|(i, p)| Planted {
                    service: self.services[i / per].clone(),
                    transaction: p.name.clone(),
                    feature: p.feature.clone(),
                })
                .collect()
        };
        let first = |role| planted(role).into_iter().next().unwrap_or_else(|| missing_role(role));
        let burst = first(Role::ErrorBurst);
        Truths {
            slow_endpoints: planted(Role::Slow),
            regression: first(Role::Regressing),
            regression_start: self.regression_start,
            regression_factor: self.regression_factor,
            noisy: first(Role::Noisy),
            error_burst: ErrorBurst {
                host: self
                    .services
                    .iter()
                    .position(|s| *s == burst.service)
                    .and_then(|s| self.hosts[s].first().cloned())
                    .unwrap_or_default(),
                transaction: burst,
                error_type: BURST_TYPE.to_owned(),
                location: BURST_LOCATION.to_owned(),
                message_pattern: BURST_PATTERN.to_owned(),
                from_minute: self.burst.0,
                to_minute: self.burst.1,
                count: 0,
            },
            background_errors: 0,
            database_heavy: first(Role::DatabaseHeavy),
            database_segment: DATABASE_SEGMENT.to_owned(),
            database_share: DATABASE_SHARE,
            apdex_threshold: self.spec.apdex_threshold,
            series: self.keys.len(),
            runs: 0,
            histogram_points: 0,
            counter_points: 0,
            error_points: 0,
            traces: 0,
        }
    }

    /// One series' points for the minutes `from..to`, added to `batch`.
    fn series_chunk(
        &self,
        series: usize,
        (from, to): (i64, i64),
        runs: &mut Vec<Run>,
        batch: &mut Batch,
        truths: &mut Truths,
    ) {
        let (_, _, p) = self.profile_of(series);
        let key = &self.keys[series];
        let threshold = self.spec.apdex_threshold;
        let mut tally = Tally::default();
        // The chunk's slowest run: (seconds, minute, index, runs in its step, outcome).
        let mut slowest: Option<(f64, i64, usize, usize, Outcome)> = None;
        let step = self.spec.step_minutes;
        for minute in (align_up(from, self.spec.start_minute, step)..to).step_by(step as usize) {
            self.runs(series, minute, runs);
            tally.minute.get_or_insert(minute);
            let mut histogram = Histogram::empty();
            let mut background = [(0u64, 0u64); BACKGROUND_ERRORS.len()];
            for (i, run) in runs.iter().enumerate() {
                let _ = histogram.record(run.seconds);
                tally.runs += 1;
                tally.seconds += run.seconds;
                tally.outcomes[run.outcome as usize] += 1;
                let zone = match run.failure {
                    Some(_) => 2,
                    None if run.seconds <= threshold => 0,
                    None if run.seconds <= 4.0 * threshold => 1,
                    None => 2,
                };
                tally.apdex[zone] += 1;
                let ended = run_end(minute, step, i, runs.len());
                match run.failure {
                    Some(Failure::Background(error)) => {
                        background[error].0 += 1;
                        background[error].1 = ended;
                        truths.background_errors += 1;
                    }
                    Some(Failure::Burst { order, user }) => {
                        batch.errors.push(ErrorPoint {
                            key: key.clone(),
                            minute,
                            error_type: BURST_TYPE.to_owned(),
                            message: format!("order {order} not found for user {user:08x}"),
                            location: BURST_LOCATION.to_owned(),
                            count: 1,
                            last_seen: ended,
                            fingerprint: String::new(),
                            stacktrace: String::new(),
                            trace_id: String::new(),
                        });
                        truths.error_burst.count += 1;
                    }
                    None => {}
                }
                if slowest.is_none_or(|s| run.seconds > s.0) {
                    slowest = Some((run.seconds, minute, i, runs.len(), run.outcome));
                }
            }
            truths.runs += runs.len() as u64;
            for (error, &(count, last_seen)) in background.iter().enumerate().filter(|(_, e)| e.0 > 0) {
                let (error_type, message, location) = BACKGROUND_ERRORS[error];
                batch.errors.push(ErrorPoint {
                    key: key.clone(),
                    minute,
                    error_type: error_type.to_owned(),
                    message: message.to_owned(),
                    location: location.to_owned(),
                    count,
                    last_seen,
                    fingerprint: String::new(),
                    stacktrace: String::new(),
                    trace_id: String::new(),
                });
            }
            if histogram.count > 0 {
                batch.histograms.push(HistogramPoint {
                    key: key.clone().into(),
                    minute,
                    histogram,
                });
            }
            if !self.spec.hourly_counters {
                self.flush(key, p, std::mem::take(&mut tally), batch);
            }
        }
        self.flush(key, p, tally, batch);
        if let Some((seconds, minute, i, n, outcome)) = slowest {
            if seconds >= SLOW_FACTOR * threshold {
                batch
                    .traces
                    .push(self.trace(series, p, (seconds, run_end(minute, step, i, n), outcome)));
            }
        }
    }

    /// The counters of a period, non-zero ones only.
    fn flush(&self, key: &SeriesKey, p: &Profile, tally: Tally, batch: &mut Batch) {
        let Some(minute) = tally.minute else { return };
        if tally.runs == 0 {
            return;
        }
        let mut push = |name: &str, labels: String, value: f64| {
            batch.counters.push(CounterPoint {
                key: key.clone().into(),
                minute,
                name: name.to_owned(),
                labels,
                value,
            });
        };
        for (outcome, &count) in OUTCOMES.iter().zip(&tally.outcomes).filter(|(_, c)| **c > 0) {
            push(
                "kuroko.transaction.outcomes",
                format!("kuroko.outcome={outcome}"),
                count as f64,
            );
        }
        for (labels, &count) in self.apdex_labels.iter().zip(&tally.apdex).filter(|(_, c)| **c > 0) {
            push("kuroko.transaction.apdex", labels.clone(), count as f64);
        }
        for segment in &p.segments {
            let seconds = segment.share * tally.seconds;
            push(
                "kuroko.segment.calls",
                segment.labels.clone(),
                (tally.runs * u64::from(segment.calls_per_run)) as f64,
            );
            push("kuroko.segment.duration", segment.labels.clone(), seconds);
            // Segments do not nest here: exclusive time is all of it.
            push("kuroko.segment.exclusive_duration", segment.labels.clone(), seconds);
        }
    }

    /// A kept trace of one run: the root span and one span per segment call,
    /// laid end to end, as `ingest::traces` stores them.
    fn trace(&self, series: usize, p: &Profile, (seconds, ended, outcome): (f64, u64, Outcome)) -> TracePoint {
        let key = &self.keys[series];
        let duration = (seconds * 1e9) as u64;
        let start = ended.saturating_sub(duration);
        let id = |part: u64| mix(&[self.spec.seed, 3, series as u64, ended, part]);
        let trace_id = format!("{:016x}{:016x}", id(0), id(1));
        let mut attributes = serde_json::Map::new();
        let mut attribute = |k: &str, v: &str| {
            attributes.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        };
        attribute("kuroko.transaction", &p.name);
        attribute("kuroko.feature", &p.feature);
        if let Some((method, route)) = p.name.split_once(' ').filter(|_| p.kind == "web") {
            attribute("http.request.method", method);
            attribute("http.route", route);
            let status = match outcome {
                Outcome::Ok => "200",
                Outcome::ClientError => "404",
                Outcome::ServerError | Outcome::Error => "500",
            };
            attribute("http.response.status_code", status);
        }
        let mut spans = vec![serde_json::json!({
            "name": p.name,
            "kind": p.kind,
            "span_id": format!("{:016x}", id(2)),
            "start": start,
            "duration_ns": duration,
            "attributes": attributes,
        })
        .to_string()];
        let mut at = start;
        for (s, segment) in p.segments.iter().enumerate() {
            let calls = segment.calls_per_run.max(1);
            let each = (segment.share * duration as f64 / f64::from(calls)) as u64;
            for call in 0..calls {
                spans.push(
                    serde_json::json!({
                        "name": segment.name,
                        "kind": segment.kind,
                        "span_id": format!("{:016x}", id(3 + (s as u64) * 1_000 + u64::from(call))),
                        "start": at,
                        "duration_ns": each,
                        "attributes": {"kuroko.segment.kind": segment.kind},
                    })
                    .to_string(),
                );
                at += each;
            }
        }
        TracePoint {
            key: key.clone(),
            trace_id,
            start,
            duration: seconds,
            spans: format!("[{}]", spans.join(",")),
        }
    }
}

fn missing_role(role: Role) -> Planted {
    // Generator::new normalises to at least 6 transactions, so every role exists.
    Planted {
        service: String::new(),
        transaction: format!("{role:?}"),
        feature: String::new(),
    }
}

/// The first `start + k × step` at or after `minute`.
fn align_up(minute: i64, start: i64, step: i64) -> i64 {
    if minute <= start {
        return start;
    }
    start + (minute - start + step - 1) / step * step
}

/// The clock hours the spec touches, clipped to it.
fn hour_chunks(spec: &Spec) -> impl Iterator<Item = (i64, i64)> {
    let (start, end) = (spec.start_minute, spec.end_minute());
    let first = start.div_euclid(60) * 60;
    (first..end)
        .step_by(60)
        .map(move |hour| (hour.max(start), (hour + 60).min(end)))
}

/// When run `i` of `n` in the step at `minute` ended: spread evenly, unix ns.
fn run_end(minute: i64, step: i64, i: usize, n: usize) -> u64 {
    let base = (minute.max(0) as u64).saturating_mul(NANOS_PER_MINUTE);
    let span = step as u64 * NANOS_PER_MINUTE;
    base + span / (n as u64 + 1) * (i as u64 + 1)
}

/// Daily phase in `[-1, 1]`: 1 at 12:00 UTC, -1 at midnight.
fn daily(minute: i64) -> f64 {
    let of_day = minute.rem_euclid(DAY) as f64;
    (std::f64::consts::TAU * (of_day - 360.0) / DAY as f64).sin()
}

/// Traffic relative to an average weekday hour: busier by day, 60% at weekends.
fn traffic(minute: i64) -> f64 {
    // 1970-01-01 was a Thursday: day 2 and 3 of each week are Saturday and Sunday.
    let weekend = matches!(minute.div_euclid(DAY).rem_euclid(7), 2 | 3);
    (1.0 + 0.6 * daily(minute)) * if weekend { 0.6 } else { 1.0 }
}

/// Latency relative to average: up to 8% slower at the busiest hour.
fn latency_cycle(minute: i64) -> f64 {
    1.0 + 0.08 * daily(minute)
}

/// Generates `spec`'s data into `sink`; see [`Generator::generate`].
pub fn generate<E>(spec: &Spec, sink: impl FnMut(Batch) -> Result<(), E>) -> Result<Truths, E> {
    Generator::new(spec).generate(sink)
}

/// Writes `spec`'s data into `store`, calling `progress(done, total)` after
/// each batch.
pub fn write_to(store: &dyn Store, spec: &Spec, progress: impl FnMut(u64, u64)) -> Result<Truths, StoreError> {
    write_generated(store, &Generator::new(spec), progress)
}

/// Writes `generator`'s data into `store`, calling `progress(done, total)`
/// after each batch.
pub fn write_generated(
    store: &dyn Store,
    generator: &Generator,
    mut progress: impl FnMut(u64, u64),
) -> Result<Truths, StoreError> {
    let total = generator.batch_count();
    let mut done = 0;
    generator.generate(|batch| {
        if !batch.is_empty() {
            store.write(&batch)?;
        }
        done += 1;
        progress(done, total);
        Ok(())
    })
}

/// The samples of series `series` at `minute`; see [`Generator::raw_samples`].
/// Builds the generator each call: keep a [`Generator`] for many calls.
pub fn raw_samples(spec: &Spec, series: usize, minute: i64) -> Vec<f64> {
    Generator::new(spec).raw_samples(series, minute)
}

/// Agent-shaped minutes for the size measurements (`examples/store_size.rs`
/// and ClickHouse's in `tests/clickhouse_store.rs`): per series and minute,
/// one histogram of 100 log-normal runs (median 50 ms) and five counters
/// (outcomes, Apdex, one database segment), as an agent's harvest gives.
pub struct AgentMinutes {
    state: u64,
}

impl Default for AgentMinutes {
    fn default() -> Self {
        AgentMinutes {
            state: 0x2545_f491_4f6c_dd1d,
        }
    }
}

impl AgentMinutes {
    /// A uniform draw in `0..1` (xorshift: fixed seed, same bytes each run).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Minute `minute` of `series` series: 20 services, 50 hosts, 30 features.
    pub fn batch(&mut self, series: usize, minute: i64) -> Batch {
        let mut batch = Batch::default();
        for s in 0..series {
            let key = SeriesKey {
                service: format!("svc-{}", s % 20),
                host: format!("host-{}", s % 50),
                transaction: format!("GET /api/v1/resource-{s}/{{id}}"),
                feature: format!("feature-{}", s % 30),
                kind: "web".into(),
                environment: "production".into(),
            };
            let mut histogram = Histogram::empty();
            for _ in 0..100 {
                // Box-Muller: log-normal, median 50 ms, sigma 0.8.
                let normal =
                    (-2.0 * self.uniform().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos();
                // Finite and positive: always recorded.
                let _ = histogram.record(0.050 * (0.8 * normal).exp());
            }
            batch.histograms.push(HistogramPoint {
                key: key.clone().into(),
                minute,
                histogram,
            });
            for (name, labels, value) in [
                ("kuroko.transaction.outcomes", "kuroko.outcome=ok", 98.0),
                ("kuroko.transaction.outcomes", "kuroko.outcome=5xx", 2.0),
                ("kuroko.transaction.apdex", "kuroko.apdex.zone=satisfied", 97.0),
                (
                    "kuroko.segment.calls",
                    "kuroko.segment.kind=database,kuroko.segment.name=SELECT",
                    100.0,
                ),
                (
                    "kuroko.segment.duration",
                    "kuroko.segment.kind=database,kuroko.segment.name=SELECT",
                    2.1,
                ),
            ] {
                batch.counters.push(CounterPoint {
                    key: key.clone().into(),
                    minute,
                    name: name.into(),
                    labels: labels.into(),
                    value,
                });
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// Histograms merged per (service, transaction).
    fn merged_by_transaction<'a>(
        points: impl Iterator<Item = &'a HistogramPoint>,
    ) -> BTreeMap<(String, String), Histogram> {
        let mut merged: BTreeMap<(String, String), Histogram> = BTreeMap::new();
        for point in points {
            merged
                .entry((point.key.service.clone(), point.key.transaction.clone()))
                .or_insert_with(Histogram::empty)
                .merge(&point.histogram);
        }
        merged
    }

    /// Midnight UTC, Monday 2024-01-01.
    const MONDAY: i64 = 28_401_120;

    fn batches(spec: &Spec) -> (Vec<Batch>, Truths) {
        let mut out = Vec::new();
        let truths = generate(spec, |b| {
            out.push(b);
            Ok::<_, ()>(())
        })
        .unwrap();
        (out, truths)
    }

    fn two_days() -> Spec {
        Spec {
            minutes: 2 * DAY,
            ..Spec::small(MONDAY)
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let (a, truths_a) = batches(&two_days());
        let (b, truths_b) = batches(&two_days());
        assert_eq!(truths_a, truths_b);
        assert!(a == b, "batches differ for the same seed");
        let (c, _) = batches(&Spec { seed: 1, ..two_days() });
        assert_eq!(a.len(), c.len());
        assert!(a != c, "another seed gives the same data");
    }

    #[test]
    fn raw_samples_are_the_histograms_samples() {
        let spec = two_days();
        let generator = Generator::new(&spec);
        let (batches, truths) = batches(&spec);
        let points: Vec<&HistogramPoint> = batches.iter().flat_map(|b| &b.histograms).collect();
        assert_eq!(points.len() as u64, truths.histogram_points);
        for point in points.iter().step_by(97) {
            let series = generator.series().iter().position(|k| *k == *point.key).unwrap();
            let mut replayed = Histogram::empty();
            for value in generator.raw_samples(series, point.minute) {
                replayed.record(value).unwrap();
            }
            assert_eq!(replayed, point.histogram);
        }
        assert!(generator.raw_samples(0, MONDAY + 1).is_empty(), "not a step");
        let total: u64 = points.iter().map(|p| p.histogram.count).sum();
        assert_eq!(total, truths.runs);
    }

    #[test]
    fn the_database_segment_dominates_the_planted_transaction() {
        let (batches, truths) = batches(&two_days());
        let histograms = merged_by_transaction(batches.iter().flat_map(|b| &b.histograms));
        let mut database: BTreeMap<(String, String), f64> = BTreeMap::new();
        for point in batches.iter().flat_map(|b| &b.counters) {
            if point.name == "kuroko.segment.exclusive_duration"
                && point.labels.starts_with("kuroko.segment.kind=database,")
            {
                *database
                    .entry((point.key.service.clone(), point.key.transaction.clone()))
                    .or_default() += point.value;
            }
        }
        let planted = (
            truths.database_heavy.service.clone(),
            truths.database_heavy.transaction.clone(),
        );
        for (id, histogram) in &histograms {
            let share = database[id] / histogram.sum;
            if *id == planted {
                assert!(share > 0.7, "{id:?}: database share {share}");
            } else {
                assert!(share < 0.5, "{id:?}: database share {share}");
            }
        }
        let labels = format!(
            "kuroko.segment.kind=database,kuroko.segment.name={}",
            truths.database_segment
        );
        assert!(batches
            .iter()
            .flat_map(|b| &b.counters)
            .any(|c| c.labels == labels && c.key.transaction == planted.1));
    }

    #[test]
    fn slow_endpoints_are_several_times_slower_than_any_other() {
        let (batches, truths) = batches(&two_days());
        let histograms = merged_by_transaction(batches.iter().flat_map(|b| &b.histograms));
        let slow: Vec<(String, String)> = truths
            .slow_endpoints
            .iter()
            .map(|p| (p.service.clone(), p.transaction.clone()))
            .collect();
        assert_eq!(slow.len(), 2);
        let fastest_slow = slow
            .iter()
            .map(|id| histograms[id].quantile(0.95))
            .fold(f64::MAX, f64::min);
        let slowest_other = histograms
            .iter()
            .filter(|(id, _)| !slow.contains(id))
            .map(|(_, h)| h.quantile(0.95))
            .fold(0.0, f64::max);
        assert!(fastest_slow > 3.0 * slowest_other, "{fastest_slow} vs {slowest_other}");
        assert!(truths.traces > 0);
        let trace = batches.iter().flat_map(|b| &b.traces).next().unwrap();
        let spans: serde_json::Value = serde_json::from_str(&trace.spans).unwrap();
        assert_eq!(spans[0]["name"], trace.key.transaction.as_str());
        assert!(spans.as_array().unwrap().len() > 1, "segments as child spans");
    }

    #[test]
    fn overrides_rename_the_fleet_and_move_the_regression() {
        let spec = two_days();
        let overrides = Overrides {
            services: vec!["shop".into()],
            hosts: vec![vec!["synthetic-shop-1".into()]],
            transactions: vec![vec![TransactionName {
                name: "GET /export".into(),
                feature: "reports".into(),
                kind: "web".into(),
            }]],
            environment: Some("demo".into()),
            regression: Some((spec.start_minute + DAY, 2.0)),
        };
        let generator = Generator::with_overrides(&spec, &overrides);
        let keys = generator.series();
        assert_eq!(keys.len(), Generator::new(&spec).series().len());
        let first = &keys[0];
        assert_eq!(
            (first.service.as_str(), first.host.as_str(), first.transaction.as_str()),
            ("shop", "synthetic-shop-1", "GET /export")
        );
        assert_eq!(keys[6].host, "shop-1", "unnamed hosts follow the service's new name");
        assert!(keys.iter().all(|k| k.environment == "demo"));
        let models = generator.models();
        assert_eq!((models[0].role, models[0].feature.as_str()), (Role::Slow, "reports"));
        let planted = generator.planted();
        assert_eq!(planted.slow_endpoints[0].transaction, "GET /export");
        assert_eq!(planted.error_burst.host, "synthetic-shop-1");
        assert_eq!(
            (planted.regression_start, planted.regression_factor),
            (spec.start_minute + DAY, 2.0)
        );
        // The model is unchanged: the same samples under the new names.
        assert_eq!(
            generator.raw_samples(3, spec.start_minute),
            Generator::new(&spec).raw_samples(3, spec.start_minute)
        );
    }

    /// The small spec written to a SQLite file, then read back the way the
    /// analysis layer will.
    #[test]
    fn planted_truths_hold_in_the_store() {
        let dir = std::env::temp_dir().join(format!(
            "kuroko-synthetic-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("kuroko.db")).unwrap();
        let spec = Spec::small(MONDAY);
        let mut calls = 0u64;
        let truths = write_to(&store, &spec, |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
        assert_eq!(calls, Generator::new(&spec).batch_count());
        let (start, middle, end) = (spec.start_minute, spec.start_minute + WEEK, spec.end_minute());
        assert_eq!(truths.regression_start, middle);

        let merged = |filter: &Filter, from, to| {
            let mut total = Histogram::empty();
            for (_, h) in store.histograms(filter, from, to).unwrap() {
                total.merge(&h);
            }
            total
        };
        let ratio = |planted: &Planted, q: f64| {
            merged(&planted.filter(), middle, end).quantile(q) / merged(&planted.filter(), start, middle).quantile(q)
        };
        let regression = ratio(&truths.regression, 0.95);
        assert!((1.27..=1.33).contains(&regression), "p95 regression {regression}");
        let median = ratio(&truths.regression, 0.5);
        assert!((0.97..=1.03).contains(&median), "p50 moved by {median}");
        let noisy = ratio(&truths.noisy, 0.95);
        assert!((0.97..=1.03).contains(&noisy), "noisy p95 moved by {noisy}");

        // Apdex zones and outcomes both count every run.
        let all = Filter::default();
        let total = |name: &str| -> f64 {
            store
                .counters(&all, name, start, end)
                .unwrap()
                .iter()
                .map(|(_, _, v)| v)
                .sum()
        };
        let runs: u64 = store
            .histograms(&all, start, end)
            .unwrap()
            .iter()
            .map(|(_, h)| h.count)
            .sum();
        assert_eq!(runs, truths.runs);
        assert_eq!(total("kuroko.transaction.apdex"), runs as f64);
        assert_eq!(total("kuroko.transaction.outcomes"), runs as f64);
        let apdex = store.counters(&all, "kuroko.transaction.apdex", start, end).unwrap();
        let threshold_label = "kuroko.apdex.threshold=0.5,kuroko.apdex.zone=";
        assert!(apdex.iter().all(|(_, labels, _)| labels.starts_with(threshold_label)));

        // Errors: the burst on one host only, over a background elsewhere,
        // and every failed run is an error occurrence.
        let burst = &truths.error_burst;
        let errors = store.errors(&all, start, end).unwrap();
        let bursts: Vec<_> = errors.iter().filter(|e| e.error_type == burst.error_type).collect();
        assert!(bursts.iter().all(|e| e.key.host == burst.host
            && e.key.transaction == burst.transaction.transaction
            && e.location == burst.location
            && (burst.from_minute..burst.to_minute).contains(&e.first_minute)));
        assert_eq!(bursts.iter().map(|e| e.count).sum::<u64>(), burst.count);
        assert!(burst.count > 500, "{} burst errors", burst.count);
        assert!(bursts.len() as u64 > burst.count / 2, "the ids vary");
        assert_eq!(
            (burst.from_minute.div_euclid(DAY), (burst.to_minute - 1).div_euclid(DAY)),
            (end.div_euclid(DAY) - 2, end.div_euclid(DAY) - 2),
            "on one day"
        );
        let background: Vec<_> = errors.iter().filter(|e| e.error_type != burst.error_type).collect();
        let hosts: std::collections::BTreeSet<&str> = background.iter().map(|e| e.key.host.as_str()).collect();
        assert!(hosts.len() >= 3, "background errors on {hosts:?}");
        let occurrences: u64 = errors.iter().map(|e| e.count).sum();
        assert_eq!(occurrences, burst.count + truths.background_errors);
        let failed: f64 = store
            .counters(&all, "kuroko.transaction.outcomes", start, end)
            .unwrap()
            .iter()
            .filter(|(_, labels, _)| labels == "kuroko.outcome=5xx" || labels == "kuroko.outcome=error")
            .map(|(_, _, v)| v)
            .sum();
        assert_eq!(failed, occurrences as f64);

        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
