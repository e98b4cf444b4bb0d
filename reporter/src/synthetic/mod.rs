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
//!   (busier by day, quieter at night, quieter at weekends), drawn with
//!   `rand_distr`'s Poisson.
//! - Latency: log-normal per transaction (some a mixture of a fast and a
//!   slow mode), times a mild daily cycle (busier is a little slower).
//! - Every run is sampled: each histogram is built by recording its runs one
//!   by one, so its count, sum, min, max and buckets are exact for its
//!   samples. The fleet preset stays fast by a realistic rate (10 runs per
//!   series-minute), not by approximating the histograms.
//! - Randomness: `rand`'s small generator, seeded per (seed, series, minute):
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

mod agent_minutes;
mod generator;
mod model;
mod random;
#[cfg(test)]
mod tests;

pub use agent_minutes::AgentMinutes;
pub use generator::Generator;
pub use model::Role;
pub(crate) use random::Rng;

use crate::store::{Batch, Filter, Store, StoreError};

const DAY: i64 = 1_440;
const WEEK: i64 = 7 * DAY;

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
    /// The planted error burst: from this minute to the one before that
    /// (unix minutes), this share of its transaction's runs on the first
    /// host fail with it. Default: 09:00 to 15:00 UTC of the day before the
    /// spec's last, 40% of the runs.
    pub burst: Option<(i64, i64, f64)>,
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
pub(crate) struct TransactionModel {
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
pub(crate) struct SegmentModel {
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
pub(crate) fn latency_factor(minute: i64) -> f64 {
    model::latency_cycle(minute)
}

/// Traffic at `minute` relative to an average weekday hour (busier by day,
/// 60% at weekends).
pub(crate) fn traffic_factor(minute: i64) -> f64 {
    model::traffic(minute)
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
pub(crate) fn write_generated(
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
