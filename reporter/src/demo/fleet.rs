//! The demo's fleet: three services of three hosts each, every host a real
//! `kuroko_agent::Agent` exporting OTLP/HTTP to the demo's reporter.
//!
//! The fleet is the synthetic generator's model under shop-like names
//! ([`overrides`]), so the live traffic carries on exactly the story the
//! backfilled weeks tell: the same transactions, features, latencies,
//! segments and errors. Runs are not served, only recorded: each service's
//! thread draws, every 100 ms, a Poisson number of runs per host and
//! transaction, samples each run's duration from the transaction's
//! log-normal model, and records it with its segments and errors through
//! the agent's ordinary API, as an instrumented service would. The live
//! hosts carry on the backfill's plantings: the regressing endpoint's slow
//! mode stays [`REGRESSION`] times slower than before the backfill's
//! regression began, and one host keeps failing one endpoint with
//! `order <id> not found` errors, at the backfill's rate
//! ([`BURST_FAILURE`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kuroko_agent::export::{ExportConfig, Exporter};
use kuroko_agent::{Agent, AgentConfig, CapturedError, Outcome, SegmentKind, Transaction, TransactionSpec};

use super::DemoError;
use crate::synthetic::{self, Overrides, Role, TransactionModel, TransactionName, Truths};

/// The services, in the generator's order (the first carries most planted roles).
pub const SERVICES: [&str; 3] = ["shop-api", "search-api", "billing-worker"];
/// Hosts per service.
pub(crate) const HOSTS: usize = 3;
/// Transactions per service.
pub const TRANSACTIONS: usize = 7;
/// `deployment.environment.name` of the fleet and of the backfill alike, so
/// that week-over-week comparisons (per service, transaction and
/// environment) line up.
pub(crate) const ENVIRONMENT: &str = "production";
/// The live fleet's runs per transaction and host per minute, at average
/// popularity and hour (the backfill is thinner, to stay fast).
pub(crate) const LIVE_RUNS_PER_MINUTE: f64 = 60.0;
/// How much slower the regressing endpoint's slow mode gets (p95 +40%),
/// from the backfill's [`super::backfill::Window::regression_start`] on.
pub const REGRESSION: f64 = 1.4;
/// `service.version` per service: (before the regression, since it). The
/// regression shipped with shop-api's new version, so the deploy marks it
/// on the charts and `query regressions --service shop-api --since-deploy`
/// compares around it.
pub const VERSIONS: [(&str, &str); 3] = [("1.41.0", "1.42.0"), ("2.7.3", "2.7.3"), ("0.9.12", "0.9.12")];

/// The version `service` runs, before or since the regression.
pub(crate) fn version(service: &str, since_regression: bool) -> &'static str {
    let at = SERVICES.iter().position(|s| *s == service).unwrap_or(0);
    let (before, since) = VERSIONS[at];
    if since_regression {
        since
    } else {
        before
    }
}

/// Share of the error endpoint's runs that fail on the failing host, in the
/// backfill and live alike: a recurring error, not a one-off burst.
pub(crate) const BURST_FAILURE: f64 = 0.15;
/// How often the traffic threads record.
const TICK: Duration = Duration::from_millis(100);

/// (name, feature, kind) per service and transaction index. The
/// generator's planted roles sit at fixed indices of the first service
/// (0 slow, 2 regressing, 3 noisy, 4 database-heavy, 5 error burst) and
/// index 1 of the last (slow); the names fit those roles.
const NAMES: [[(&str, &str, &str); TRANSACTIONS]; 3] = [
    [
        ("GET /account/orders/export", "reporting", "web"),
        ("GET /cart", "cart", "web"),
        ("GET /products/{id}", "catalog", "web"),
        ("GET /recommendations", "catalog", "web"),
        ("GET /account/payment-cards", "accounts", "web"),
        ("GET /orders/{id}", "checkout", "web"),
        ("POST /checkout", "checkout", "web"),
    ],
    [
        ("GET /search", "search", "web"),
        ("GET /search/suggest", "search", "web"),
        ("GET /catalog/categories", "catalog", "web"),
        ("GET /catalog/items/{id}", "catalog", "web"),
        ("reindex-catalog", "search", "job"),
        ("POST /search/clicks", "search", "web"),
        ("GET /search/facets", "search", "web"),
    ],
    [
        ("charge-payment", "checkout", "job"),
        ("render-invoice-pdf", "invoicing", "job"),
        ("send-invoice-email", "invoicing", "job"),
        ("sync-ledger", "invoicing", "job"),
        ("reconcile-payouts", "invoicing", "job"),
        ("process-refund", "checkout", "job"),
        ("expire-carts", "cart", "job"),
    ],
];

/// Teams: (key, display name, features).
pub const TEAMS: [(&str, &str, &[&str]); 3] = [
    ("payments", "Payments", &["checkout", "cart", "invoicing"]),
    ("discovery", "Search & Catalog", &["search", "catalog"]),
    ("accounts", "Accounts", &["accounts", "reporting"]),
];

/// The live host `host` (0-based) of `service`: `shop-api-1`…
pub(crate) fn live_host(service: &str, host: usize) -> String {
    format!("{service}-{}", host + 1)
}

/// The backfill's host `host` of `service`: `synthetic-shop-api-1`…, so
/// synthetic history is never mistaken for a real machine's.
pub(crate) fn synthetic_host(service: &str, host: usize) -> String {
    format!("synthetic-{}", live_host(service, host))
}

/// The generator overrides that give the synthetic model the fleet's names,
/// with its regression starting at `window`'s regression start and the
/// error recurring on one host over the whole window.
pub fn overrides(window: &super::backfill::Window) -> Overrides {
    Overrides {
        services: SERVICES.iter().map(|s| (*s).to_owned()).collect(),
        hosts: SERVICES
            .iter()
            .map(|s| (0..HOSTS).map(|h| synthetic_host(s, h)).collect())
            .collect(),
        transactions: NAMES
            .iter()
            .map(|service| {
                service
                    .iter()
                    .map(|(name, feature, kind)| TransactionName {
                        name: (*name).to_owned(),
                        feature: (*feature).to_owned(),
                        kind: (*kind).to_owned(),
                    })
                    .collect()
            })
            .collect(),
        environment: Some(ENVIRONMENT.to_owned()),
        regression: Some((window.regression_start, REGRESSION)),
        burst: Some((window.from, window.to, BURST_FAILURE)),
    }
}

/// `owners.toml` for the fleet: each team at `<team>@demo.invalid`, each
/// feature with its team and the transactions it covers.
pub(crate) fn owners_toml() -> String {
    let mut out = String::from(
        "# owners.toml written by `kuroko demo`: who owns which feature of the demo fleet.\n\
         # Reference: docs/owners.md.\n",
    );
    for (team, display, _) in TEAMS {
        out.push_str(&format!(
            "\n[teams.{team}]\ndisplay_name = \"{display}\"\nemail = [\"{team}@demo.invalid\"]\n"
        ));
    }
    // The fleet's agents tag every transaction with its feature, so the
    // features need no patterns (those are for untagged transactions, e.g.
    // from OpenTelemetry SDKs: see docs/owners.md).
    for (team, _, features) in TEAMS {
        for feature in features {
            out.push_str(&format!("\n[features.{feature}]\nteam = \"{team}\"\n"));
        }
    }
    out
}

/// One transaction of one live host, resolved once.
struct LiveTransaction {
    model: TransactionModel,
    handle: Transaction,
    /// Per segment of the model: the handle, and each call's share of the run.
    segments: Vec<(kuroko_agent::Segment, f64, u32)>,
    /// Whether this host's runs of it fail with the planted error.
    failing: bool,
}

/// One live host: its agent's transactions.
struct Host {
    transactions: Vec<LiveTransaction>,
}

/// The running fleet; [`Fleet::stop`] ends it.
pub(crate) struct Fleet {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    exporters: Vec<Exporter>,
}

/// What the fleet is told about its reporter.
pub struct Target<'a> {
    /// The reporter's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`.
    pub endpoint: &'a str,
    /// The ingest token to send.
    pub token: &'a str,
    /// Seconds between two exports.
    pub interval: Duration,
}

impl Fleet {
    /// Starts one agent and exporter per host (on the current tokio runtime)
    /// and one traffic thread per service, drawing from `models` (as
    /// [`synthetic::Generator::models`] gives them) with `planted`'s error.
    pub(crate) fn start(
        models: &[TransactionModel],
        planted: &Truths,
        target: &Target<'_>,
    ) -> Result<Fleet, DemoError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut exporters = Vec::new();
        let mut threads = Vec::new();
        for (index, service) in SERVICES.iter().enumerate() {
            let mut hosts = Vec::new();
            for h in 0..HOSTS {
                let host = live_host(service, h);
                let agent = Agent::new(AgentConfig::default().with_service_name(*service))
                    .map_err(|e| DemoError::Fleet(e.to_string()))?;
                let export = ExportConfig::default()
                    .with_endpoint(target.endpoint)
                    .with_header("authorization", format!("Bearer {}", target.token))
                    .with_interval(target.interval)
                    .with_service_name(*service)
                    .with_service_version(version(service, true))
                    .with_host_name(host.clone())
                    .with_environment(ENVIRONMENT);
                exporters.push(agent.export(export).map_err(|e| DemoError::Fleet(e.to_string()))?);
                let transactions = models
                    .iter()
                    .filter(|m| m.service == *service)
                    .map(|model| live_transaction(&agent, model, planted, h == 0))
                    .collect();
                hosts.push(Host { transactions });
            }
            let stop = stop.clone();
            let seed = 0x6465_6d6f ^ index as u64;
            let thread = std::thread::Builder::new()
                .name(format!("demo-{service}"))
                .spawn(move || traffic(hosts, seed, &stop))
                .map_err(|e| DemoError::Fleet(e.to_string()))?;
            threads.push(thread);
        }
        Ok(Fleet {
            stop,
            threads,
            exporters,
        })
    }

    /// Stops the traffic, then exports each host's last interval.
    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        let mut last = tokio::task::JoinSet::new();
        for exporter in self.exporters {
            last.spawn(exporter.shutdown());
        }
        while last.join_next().await.is_some() {}
    }
}

fn live_transaction(agent: &Agent, model: &TransactionModel, planted: &Truths, first_host: bool) -> LiveTransaction {
    let spec = match model.transaction.split_once(' ').filter(|_| model.kind == "web") {
        Some((method, route)) => TransactionSpec::web(method, route),
        None => TransactionSpec::job(&model.transaction),
    };
    let handle = agent.register(spec.feature(&model.feature));
    let segments = model
        .segments
        .iter()
        .map(|s| {
            let kind = SegmentKind::parse(&s.kind).unwrap_or(SegmentKind::Code);
            let calls = s.calls_per_run.max(1);
            (handle.segment(kind, &s.name), s.share / f64::from(calls), calls)
        })
        .collect();
    let burst = &planted.error_burst.transaction;
    LiveTransaction {
        failing: first_host && burst.service == model.service && burst.transaction == model.transaction,
        model: model.clone(),
        handle,
        segments,
    }
}

/// Records runs every [`TICK`] until `stop`.
fn traffic(hosts: Vec<Host>, seed: u64, stop: &AtomicBool) {
    let mut rng = synthetic::Rng::new(&[seed]);
    let per_tick = LIVE_RUNS_PER_MINUTE * TICK.as_secs_f64() / 60.0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let minute = jiff::Timestamp::now().as_second().div_euclid(60);
        let (traffic, latency) = (synthetic::traffic_factor(minute), synthetic::latency_factor(minute));
        for host in &hosts {
            for tx in &host.transactions {
                let runs = rng.poisson(per_tick * tx.model.popularity * traffic);
                for _ in 0..runs {
                    record_run(tx, &mut rng, latency);
                }
            }
        }
        next += TICK;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => next = Instant::now(),
        }
    }
}

/// One run of `tx`: its duration from the model, its segments, its outcome
/// and error.
fn record_run(tx: &LiveTransaction, rng: &mut synthetic::Rng, latency: f64) {
    let model = &tx.model;
    let (pick, z) = (rng.uniform(), rng.normal());
    let (median, sigma) = match model.slow_mode {
        Some((weight, median, sigma)) if pick < weight => {
            // The backfill's regression holds.
            let scale = if model.role == Role::Regressing {
                REGRESSION
            } else {
                1.0
            };
            (median * scale, sigma)
        }
        _ => (model.median, model.sigma),
    };
    let seconds = median * (sigma * z).exp() * latency;
    let nanos = (seconds * 1e9) as u64;
    for (segment, share, calls) in &tx.segments {
        let each = Duration::from_nanos((nanos as f64 * share) as u64);
        for _ in 0..*calls {
            segment.record(each);
        }
    }
    let fate = rng.uniform();
    let which = rng.next_u64();
    let web = model.kind == "web";
    let failed = if web { Outcome::Status(500) } else { Outcome::Error };
    let outcome = if tx.failing && fate < BURST_FAILURE {
        let order = 10_000 + which % 90_000;
        let mut error = CapturedError::new(
            "kuroko_shop::orders::OrderNotFound",
            format!("order {order} not found for user {:08x}", which >> 32),
        );
        error.location = Some("src/orders.rs:88".to_owned());
        tx.handle.capture_error(error);
        failed
    } else if fate >= 1.0 - model.failure_rate {
        if let Some((error_type, message, location)) = model.errors.get(which as usize % model.errors.len().max(1)) {
            let mut error = CapturedError::new(error_type.clone(), message.clone());
            error.location = Some(location.clone());
            tx.handle.capture_error(error);
        }
        failed
    } else if web && fate >= 1.0 - model.failure_rate - model.client_error_rate {
        Outcome::Status(404)
    } else if web {
        Outcome::Status(200)
    } else {
        Outcome::Ok
    };
    tx.handle.record_nanos(nanos, outcome);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owners::Owners;
    use crate::synthetic::{Generator, Spec};

    #[test]
    fn the_owners_file_gives_every_transaction_a_team() {
        let owners = Owners::parse(&owners_toml(), "owners.toml").unwrap();
        assert_eq!(owners.teams().count(), 3);
        for (service, names) in SERVICES.iter().zip(NAMES.iter()) {
            for (name, feature, _) in names {
                // The fleet's agents tag each transaction with its feature.
                assert_eq!(
                    owners.feature_of(service, name, Some(feature)),
                    Some(*feature),
                    "{service} {name}"
                );
                assert!(
                    owners.team_of(service, name, Some(feature)).is_some(),
                    "{service} {name}: its feature has a team"
                );
            }
        }
        let emails: Vec<&str> = owners
            .teams()
            .flat_map(|t| t.email.iter().map(String::as_str))
            .collect();
        assert!(emails.iter().all(|e| e.ends_with("@demo.invalid")), "{emails:?}");
    }

    #[test]
    fn the_names_fit_the_planted_roles() {
        let spec = Spec {
            services: SERVICES.len(),
            hosts_per_service: HOSTS,
            transactions_per_service: TRANSACTIONS,
            ..Spec::small(28_401_120)
        };
        let window = crate::demo::backfill::Window {
            from: spec.start_minute,
            to: spec.end_minute(),
            regression_start: spec.start_minute + 1_440,
        };
        let generator = Generator::with_overrides(&spec, &overrides(&window));
        let role = |name: &str| {
            generator
                .models()
                .into_iter()
                .find(|m| m.transaction == name)
                .unwrap()
                .role
        };
        assert_eq!(role("GET /account/orders/export"), Role::Slow);
        assert_eq!(role("render-invoice-pdf"), Role::Slow);
        assert_eq!(role("GET /products/{id}"), Role::Regressing);
        assert_eq!(role("GET /account/payment-cards"), Role::DatabaseHeavy);
        assert_eq!(role("GET /orders/{id}"), Role::ErrorBurst);
        let planted = generator.planted();
        assert_eq!(planted.error_burst.host, "synthetic-shop-api-1");
        assert!(generator.series().iter().all(|k| k.host.starts_with("synthetic-")));
        let jobs: Vec<_> = generator.models().into_iter().filter(|m| m.kind == "job").collect();
        assert!(jobs.iter().all(|m| !m.transaction.contains(' ')), "{jobs:?}");
    }
}
