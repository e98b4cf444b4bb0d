//! Why it got slower (#22): planted causes, found by name. A fortnight of
//! agent-shaped data (per host and hour: a duration histogram and the
//! segments' exclusive time and calls, as ingest writes them) goes into a
//! real SQLite store through its public write path; the second week has:
//!
//! - `GET /orders/{id}`: its database segment `SELECT orders` grows from 30
//!   to 60 ms on every host; the cause must be that segment, with at least
//!   80% of the change, on all hosts;
//! - `GET /cart`: its own code slows from 20 to 45 ms on `web-2` alone, of
//!   three hosts; the cause must name `web-2`;
//! - feature `checkout`: neither of its routes changes, but the slow one's
//!   share of the runs grows from 10% to 40%; the cause must be the traffic
//!   mix, toward `POST /checkout/slow`;
//! - `GET /profile`: its database call, its external call and its own code
//!   each 50% slower: a regression with no single cause;
//! - `GET /search`: only noise; no regression, and no cause claimed;
//! - service `catalog`'s `GET /products/{id}`: its `SELECT products` grows
//!   from 30 to 60 ms when version 2.14.0 replaces 2.13.0, on the Wednesday
//!   noon of the second week (the versions as ingest records them, in the
//!   store's deploys); the cause must be that segment "since version
//!   2.14.0". `shop` deploys 1.9.0 on the Thursday, after its routes had
//!   changed since the Monday: none of them may be put on that version.
//!
//! The same answers are checked where people read them: `kuroko query
//! regressions` (the `cause` column, `--explain`, the JSON's `cause`), the
//! `/regressions` page and the weekly email's cause sentence. The same decomposition on an SDK's
//! spans, sent by the Python SDK, is in `interop_python_attribution.rs`.

#[path = "support/seeded.rs"]
mod seeded;
use seeded::Rng;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use kuroko_reporter::analysis::attribution::{Attribution, Axis, Place};
use kuroko_reporter::analysis::regressions::{Group, RegressionRow};
use kuroko_reporter::analysis::stats::RegressionRule;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::deliver::schedule::{Period, Report};
use kuroko_reporter::deliver::{analysis_producer, Channel, Job};
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::deploys::{Deploys, VersionSeen};
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, CounterPoint, HistogramPoint, SeriesKey, Store, TracePoint};

/// Monday 2025-02-03 00:00 UTC, in unix minutes: ISO weeks 2025-W06 and W07.
const START: i64 = 20_122 * 1_440;
const WEEK: i64 = 7 * 1_440;
const HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];
/// Catalog 2.14.0: Wednesday of the second week, 12:00 UTC.
const CATALOG_DEPLOY: i64 = START + WEEK + 2 * 1_440 + 720;
/// Shop 1.9.0: Thursday of the second week, 06:00 UTC.
const SHOP_DEPLOY: i64 = START + WEEK + 3 * 1_440 + 360;

const OWNERS: &str = r#"
[teams.shop]
email = ["shop@example.com"]
[features.orders]
team = "shop"
[features.cart]
team = "shop"
[features.checkout]
team = "shop"
[features.search]
team = "shop"
[features.profile]
team = "shop"
[features.catalog]
team = "shop"
"#;

fn owners() -> Owners {
    Owners::parse(OWNERS, "owners.toml").unwrap()
}

/// One run's parts: (kind, segment, seconds); `own` is the transaction's own code.
type Parts = Vec<(&'static str, &'static str, f64)>;

/// A route's runs in one host-hour: how many, and each run's parts.
struct Route {
    service: &'static str,
    transaction: &'static str,
    feature: &'static str,
    runs: usize,
    parts: fn(&mut Rng, bool, &str) -> Parts,
}

fn noisy(rng: &mut Rng, median: f64) -> f64 {
    rng.lognormal(median, 0.3)
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            service: "shop",
            transaction: "GET /orders/{id}",
            feature: "orders",
            runs: 30,
            parts: |rng, later, _| {
                vec![
                    (
                        "database",
                        "SELECT orders",
                        noisy(rng, if later { 0.060 } else { 0.030 }),
                    ),
                    ("external", "GET partner-api", noisy(rng, 0.010)),
                    ("own", "", noisy(rng, 0.015)),
                ]
            },
        },
        Route {
            service: "shop",
            transaction: "GET /cart",
            feature: "cart",
            runs: 30,
            parts: |rng, later, host| {
                let own = if later && host == "web-2" { 0.045 } else { 0.020 };
                vec![
                    ("database", "SELECT cart", noisy(rng, 0.010)),
                    ("own", "", noisy(rng, own)),
                ]
            },
        },
        // Everything a third slower (a busier machine): no single cause.
        Route {
            service: "shop",
            transaction: "GET /profile",
            feature: "profile",
            runs: 30,
            parts: |rng, later, _| {
                let slower = if later { 1.5 } else { 1.0 };
                vec![
                    ("database", "SELECT users", noisy(rng, 0.020 * slower)),
                    ("external", "GET avatar-api", noisy(rng, 0.020 * slower)),
                    ("own", "", noisy(rng, 0.020 * slower)),
                ]
            },
        },
        Route {
            service: "shop",
            transaction: "GET /search",
            feature: "search",
            runs: 30,
            parts: |rng, _, _| {
                vec![
                    ("database", "SELECT search", noisy(rng, 0.025)),
                    ("own", "", noisy(rng, 0.015)),
                ]
            },
        },
        // The checkout routes: 40 runs a host-hour between them, the slow
        // one's share 10% in the first week and 40% in the second (`runs`
        // here is the total; see `write_fortnight`).
        Route {
            service: "shop",
            transaction: "GET /checkout/fast",
            feature: "checkout",
            runs: 40,
            parts: |rng, _, _| {
                vec![
                    ("database", "SELECT prices", noisy(rng, 0.005)),
                    ("own", "", noisy(rng, 0.020)),
                ]
            },
        },
        Route {
            service: "shop",
            transaction: "POST /checkout/slow",
            feature: "checkout",
            runs: 40,
            parts: |rng, _, _| {
                vec![
                    ("database", "INSERT orders", noisy(rng, 0.050)),
                    ("own", "", noisy(rng, 0.150)),
                ]
            },
        },
        // Slower with a release: `later` is "after catalog's deploy".
        Route {
            service: "catalog",
            transaction: "GET /products/{id}",
            feature: "catalog",
            runs: 30,
            parts: |rng, later, _| {
                vec![
                    (
                        "database",
                        "SELECT products",
                        noisy(rng, if later { 0.060 } else { 0.030 }),
                    ),
                    ("own", "", noisy(rng, 0.015)),
                ]
            },
        },
    ]
}

/// The versions ingest records: each first seen at its deploy.
fn versions() -> Vec<VersionSeen> {
    let seen = |service: &str, version: &str, first_minute| VersionSeen {
        service: service.into(),
        environment: "production".into(),
        version: version.into(),
        first_minute,
    };
    vec![
        seen("catalog", "2.13.0", START),
        seen("catalog", "2.14.0", CATALOG_DEPLOY),
        seen("shop", "1.8.0", START),
        seen("shop", "1.9.0", SHOP_DEPLOY),
    ]
}

fn key(service: &str, host: &str, transaction: &str, feature: &str) -> SeriesKey {
    SeriesKey {
        service: service.into(),
        host: host.into(),
        transaction: transaction.into(),
        feature: feature.into(),
        kind: "web".into(),
        environment: "production".into(),
    }
}

/// Runs of `route` in one host-hour of week `later`.
fn runs_of(route: &Route, later: bool, rng: &mut Rng) -> usize {
    let slow_share = if later { 0.4 } else { 0.1 };
    let jitter = rng.below(5);
    match route.transaction {
        "GET /checkout/fast" => (route.runs as f64 * (1.0 - slow_share)).round() as usize + jitter,
        "POST /checkout/slow" => (route.runs as f64 * slow_share).round() as usize + jitter / 2,
        _ => route.runs - 2 + jitter,
    }
}

/// The fortnight, written an hour per batch; the store's file.
fn write_fortnight(store: &SqliteStore) {
    let mut rng = Rng::new(22);
    let routes = routes();
    for hour in 0..(2 * WEEK / 60) {
        let minute = START + hour * 60 + 30;
        // A shared factor per hour: a busy hour is slower for everyone.
        let hourly = rng.lognormal(1.0, 0.05);
        let mut batch = Batch::default();
        for (h, host) in HOSTS.into_iter().enumerate() {
            for (r, route) in routes.iter().enumerate() {
                let series = Arc::new(key(route.service, host, route.transaction, route.feature));
                let later = if route.service == "catalog" {
                    minute >= CATALOG_DEPLOY
                } else {
                    hour >= WEEK / 60
                };
                let mut histogram = Histogram::empty();
                let mut segments: std::collections::BTreeMap<(&str, &str), (f64, f64)> = Default::default();
                // The slowest run of the host-hour, kept as a trace.
                let mut slowest: (f64, Parts) = (0.0, Vec::new());
                for _ in 0..runs_of(route, later, &mut rng) {
                    let mut parts = (route.parts)(&mut rng, later, host);
                    let mut run = 0.0;
                    for part in &mut parts {
                        part.2 *= hourly;
                    }
                    for &(kind, name, seconds) in &parts {
                        run += seconds;
                        if kind != "own" {
                            let segment = segments.entry((kind, name)).or_default();
                            segment.0 += 1.0;
                            segment.1 += seconds;
                        }
                    }
                    histogram.record(run).unwrap();
                    if run > slowest.0 {
                        slowest = (run, parts);
                    }
                }
                batch
                    .traces
                    .push(kept_trace(&series, minute, [hour, h as i64, r as i64], &slowest));
                batch.histograms.push(HistogramPoint {
                    key: series.clone(),
                    minute,
                    histogram,
                });
                for ((kind, name), (calls, seconds)) in segments {
                    let labels = format!("kuroko.segment.kind={kind},kuroko.segment.name={name}");
                    for (metric, value) in [
                        ("kuroko.segment.calls", calls),
                        ("kuroko.segment.duration", seconds),
                        ("kuroko.segment.exclusive_duration", seconds),
                    ] {
                        batch.counters.push(CounterPoint {
                            key: series.clone(),
                            minute,
                            name: metric.into(),
                            labels: labels.clone(),
                            value,
                        });
                    }
                }
            }
        }
        store.write(&batch).unwrap();
    }
    store.versions_seen(&versions()).unwrap();
    store.flush().unwrap();
}

/// A kept trace of one run: the root span, then its segments one after
/// another (own code first).
fn kept_trace(series: &Arc<SeriesKey>, minute: i64, id: [i64; 3], (run, parts): &(f64, Parts)) -> TracePoint {
    let start = (minute * 60) as u64 * 1_000_000_000;
    let ns = |seconds: f64| (seconds * 1e9) as u64;
    let mut spans = vec![serde_json::json!({
        "name": series.transaction, "kind": "server", "start": start, "duration_ns": ns(*run),
    })];
    let mut at = start + ns(parts.iter().filter(|p| p.0 == "own").map(|p| p.2).sum());
    for &(kind, name, seconds) in parts.iter().filter(|p| p.0 != "own") {
        spans.push(serde_json::json!({ "name": name, "kind": kind, "start": at, "duration_ns": ns(seconds) }));
        at += ns(seconds);
    }
    TracePoint {
        key: (**series).clone(),
        trace_id: format!("{:016x}{:08x}{:08x}", id[0], id[1], id[2]),
        start,
        duration: *run,
        spans: serde_json::Value::Array(spans).to_string(),
    }
}

struct Fixture {
    path: PathBuf,
    store: SqliteStore,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kuroko-attribution-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let store = SqliteStore::open(&path).unwrap();
        write_fortnight(&store);
        Fixture { path, store }
    })
}

fn second_week() -> Scope {
    Scope::window(START + WEEK, START + 2 * WEEK)
}

/// The regressions of the second week, each with its attribution.
fn judged(group: Group) -> (Vec<RegressionRow>, usize) {
    let f = fixture();
    let owners = owners();
    let analysis = Analysis::new(&f.store, &owners);
    let scope = second_week();
    let mut comparison = analysis.compare(&scope, &RegressionRule::default(), group).unwrap();
    analysis
        .attribute_rows(&scope, &scope.previous(), &mut comparison.regressions)
        .unwrap();
    (comparison.regressions, comparison.unchanged.len())
}

fn attribution<'a>(rows: &'a [RegressionRow], name: &str) -> &'a Attribution {
    let row = rows
        .iter()
        .find(|r| r.transaction == name || r.feature.as_deref() == Some(name) && r.transaction.is_empty())
        .unwrap_or_else(|| {
            let found: Vec<String> = rows.iter().map(|r| r.label()).collect();
            panic!("{name} is not among the regressions: {found:?}")
        });
    let a = row
        .attribution
        .as_deref()
        .expect("every regression shown is attributed");
    eprintln!("{name}: {}", a.summary);
    a
}

#[test]
fn a_grown_database_segment_is_named_with_most_of_the_change_on_all_hosts() {
    let (rows, _) = judged(Group::Transaction);
    let a = attribution(&rows, "GET /orders/{id}");
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(cause.part.axis, Axis::Segment, "{}", a.summary);
    assert_eq!(cause.part.name, "SELECT orders", "{}", a.summary);
    assert!(cause.part.share >= 0.8, "at least 80% of the change: {}", a.summary);
    assert!(
        cause.part.low <= cause.part.share && cause.part.share <= cause.part.high,
        "its interval holds it: {}",
        a.summary
    );
    // +30 ms per run planted (× the hourly factor).
    assert!((0.025..0.036).contains(&cause.part.seconds_per_run), "{}", a.summary);
    assert_eq!(cause.place, Place::AllHosts, "{}", a.summary);
    assert!(a.summary.starts_with("`SELECT orders` +3"), "{}", a.summary);
    assert!(a.summary.ends_with("on all hosts"), "{}", a.summary);
    // The parts add up to the change: segments with own code, and hosts with the mix.
    let segments: f64 = a.segments.iter().map(|p| p.seconds_per_run).sum();
    let hosts: f64 = a.hosts.iter().chain(&a.mix).map(|p| p.seconds_per_run).sum();
    assert!((segments - a.change).abs() < 1e-9 && (hosts - a.change).abs() < 1e-9);
    // The slowest kept traces of each week, side by side: the grown query first.
    let evidence = a.evidence.as_ref().expect("kept traces in both weeks");
    assert_eq!((evidence.before.len(), evidence.after.len()), (3, 3), "{evidence:?}");
    let grown = &evidence.segments[0];
    assert_eq!(grown.name, "SELECT orders", "{evidence:?}");
    assert!(grown.change > 0.02 && grown.current > 1.5 * grown.previous, "{grown:?}");
    // shop's 1.9.0 came on the Thursday, three days after the change began.
    let release = a.release.as_ref().expect("shop ran two versions");
    assert!(release.part.low < 0.5, "not put on the version: {release:?}");
    assert_eq!(cause.since, None, "{}", a.summary);
}

#[test]
fn a_slowdown_with_a_new_version_names_the_version() {
    let (rows, _) = judged(Group::Transaction);
    let a = attribution(&rows, "GET /products/{id}");
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(cause.part.name, "SELECT products", "{}", a.summary);
    assert!(cause.part.share >= 0.8, "{}", a.summary);
    assert_eq!(cause.since.as_deref(), Some("2.14.0"), "{}", a.summary);
    let release = a.release.as_ref().expect("two versions in the windows");
    assert_eq!(
        (
            release.previous_version.as_str(),
            release.part.name.as_str(),
            release.minute
        ),
        ("2.13.0", "2.14.0", CATALOG_DEPLOY)
    );
    assert!(release.part.low >= 0.8, "the release carries the change: {release:?}");
    assert!(
        a.summary.starts_with("`SELECT products` +") && a.summary.ends_with(", since version 2.14.0 on all hosts"),
        "{}",
        a.summary
    );
    for other in ["GET /orders/{id}", "GET /cart", "GET /profile"] {
        let a = attribution(&rows, other);
        assert!(!a.summary.contains("version"), "{other}: {}", a.summary);
    }
}

#[test]
fn a_slowdown_on_one_host_of_three_names_the_host() {
    let (rows, _) = judged(Group::Transaction);
    let a = attribution(&rows, "GET /cart");
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(cause.place, Place::Host("web-2".into()), "{}", a.summary);
    assert_eq!(
        cause.part.name, "own code",
        "the slow part is its own code: {}",
        a.summary
    );
    let web2 = a.hosts.iter().find(|p| p.name == "web-2").unwrap();
    assert!(web2.share >= 0.8, "web-2 carries the change: {:?}", a.hosts);
    assert!(a.summary.ends_with("on host web-2"), "{}", a.summary);
}

#[test]
fn a_traffic_mix_shift_toward_a_slow_route_is_named_as_the_mix() {
    let (transactions, _) = judged(Group::Transaction);
    assert!(
        !transactions.iter().any(|r| r.transaction.contains("checkout")),
        "neither checkout route got slower: {:?}",
        transactions.iter().map(|r| r.label()).collect::<Vec<_>>()
    );
    let (features, _) = judged(Group::Feature);
    let a = attribution(&features, "checkout");
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(
        (cause.part.axis, cause.part.kind.as_str()),
        (Axis::Mix, "routes"),
        "{}",
        a.summary
    );
    assert_eq!(cause.part.name, "POST /checkout/slow", "{}", a.summary);
    assert!(cause.part.share >= 0.8, "{}", a.summary);
    assert!(
        (0.08..0.15).contains(&cause.part.previous) && (0.35..0.45).contains(&cause.part.current),
        "its share of the runs, 10% then 40%: {}",
        a.summary
    );
    assert!(
        a.summary.starts_with("traffic mix: `POST /checkout/slow` went from"),
        "{}",
        a.summary
    );
}

#[test]
fn a_slowdown_spread_over_every_part_has_no_single_cause() {
    let (rows, _) = judged(Group::Transaction);
    let a = attribution(&rows, "GET /profile");
    assert!(a.cause.is_none(), "{}", a.summary);
    assert!(a.clear, "the change itself is clear: {a:?}");
    assert!(a.summary.starts_with("no single cause: "), "{}", a.summary);
    for part in &a.segments {
        assert!(
            (0.2..0.45).contains(&part.share),
            "about a third each: {:?}",
            a.segments
        );
    }
}

#[test]
fn noise_is_no_regression_and_claims_no_cause() {
    let (rows, _) = judged(Group::Transaction);
    assert!(
        !rows.iter().any(|r| r.transaction == "GET /search"),
        "noise is not a regression"
    );
    // Asked anyway, the decomposition claims nothing.
    let f = fixture();
    let owners = owners();
    let analysis = Analysis::new(&f.store, &owners);
    let mut noise = rows[0].clone();
    noise.service = "shop".into();
    noise.transaction = "GET /search".into();
    noise.feature = Some("search".into());
    let scope = second_week();
    let a = analysis.attribute(&scope, &scope.previous(), &noise).unwrap();
    assert!(a.cause.is_none(), "{}", a.summary);
    assert!(a.summary.starts_with("no single cause"), "{}", a.summary);
    assert!(a.change_low < 0.0 && a.change_high > 0.0, "{a:?}");
}

fn rfc3339(minute: i64) -> String {
    Timestamp::from_second(minute * 60).unwrap().to_string()
}

fn kuroko_query(extra: &[&str]) -> String {
    kuroko_cli(&[&["query", "regressions"], extra].concat())
}

/// `kuroko ARGS --store … --since … --until …` over the second week.
fn kuroko_cli(args: &[&str]) -> String {
    let f = fixture();
    let scope = second_week();
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(args)
        .arg("--store")
        .arg(&f.path)
        .args(["--since", &rfc3339(scope.from), "--until", &rfc3339(scope.to)])
        .env_remove("KUROKO_STORE")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_cli_shows_the_cause_and_explains_each_finding() {
    let json: serde_json::Value = serde_json::from_str(&kuroko_query(&["--format", "json"])).unwrap();
    let rows = json["regressions"].as_array().unwrap();
    let orders = rows.iter().find(|r| r["transaction"] == "GET /orders/{id}").unwrap();
    assert_eq!(orders["cause"]["found"], true, "{orders}");
    assert_eq!(orders["cause"]["name"], "SELECT orders");
    assert_eq!(orders["cause"]["place"]["on"], "all_hosts");
    assert!(orders["cause"]["share"].as_f64().unwrap() >= 0.8);
    assert!(orders.get("explain").is_none(), "only with --explain");
    let cart = rows.iter().find(|r| r["transaction"] == "GET /cart").unwrap();
    assert_eq!(
        cart["cause"]["place"],
        serde_json::json!({"on": "host", "host": "web-2"})
    );

    let table = kuroko_query(&["--explain"]);
    assert!(table.contains("cause"), "{table}");
    assert!(table.contains("Why: shop GET /orders/{id}"), "{table}");
    assert!(table.contains("cause: `SELECT orders` +3"), "{table}");
    assert!(table.contains("blocks with runs: 168 now, 168 before"), "{table}");
    assert!(table.contains("block t-test") && table.contains("q < 0.001"), "{table}");
    // The cause column: what, how much per run, its share and where.
    let cart = table.lines().find(|l| l.contains("GET /cart")).unwrap();
    assert!(
        cart.contains("own code +") && cart.contains("/run (") && cart.contains("), host web-2"),
        "{cart}"
    );
    let orders = table.lines().find(|l| l.contains("GET /orders/{id}")).unwrap();
    assert!(
        orders.contains("`SELECT orders` +3") && orders.contains("), all hosts"),
        "{orders}"
    );
    assert!(table.contains("SELECT orders (database) 3"), "{table}");
    assert!(table.contains("slowest kept traces, before → after (3 → 3;"), "{table}");
    let side = table
        .lines()
        .skip_while(|l| !l.contains("slowest kept traces"))
        .nth(1)
        .unwrap_or_default();
    assert!(side.trim_start().starts_with("SELECT orders (database)"), "{table}");
    assert!(table.contains("by host"), "{table}");

    let explained: serde_json::Value =
        serde_json::from_str(&kuroko_query(&["--format", "json", "--explain", "--group", "feature"])).unwrap();
    let checkout = explained["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["feature"] == "checkout")
        .unwrap();
    assert_eq!(checkout["cause"]["axis"], "mix", "{checkout}");
    let tests = checkout["explain"]["statistics"]["tests"].as_array().unwrap();
    assert!(tests
        .iter()
        .any(|t| t["metric"] == "mean" && t["q_value"].as_f64().unwrap() < 0.01));
    assert_eq!(
        checkout["explain"]["attribution"]["routes"].as_array().unwrap().len(),
        2
    );
}

/// `kuroko query regressions --explain` on one named transaction says why
/// it was or was not called, whatever its verdict: `GET /search` (noise) is
/// listed as unchanged with the reason, its q and interval, both periods'
/// runs and the blocks; its verdict is the one its service's list gives it
/// (q adjusted across the service's transactions, not its own four tests).
#[test]
fn the_cli_says_why_a_named_transaction_was_not_called() {
    let named = ["--explain", "--service", "shop", "--transaction", "GET /search"];
    let table = kuroko_query(&named);
    assert!(table.contains("Judged unchanged (1)"), "{table}");
    assert!(table.contains("Why: shop GET /search"), "{table}");
    let reason = table
        .lines()
        .find(|l| l.trim_start().starts_with("not called: "))
        .unwrap_or_else(|| panic!("no reason: {table}"));
    assert!(
        reason.contains("% to ") && reason.contains(", q = 0.") && reason.ends_with("not below 0.01"),
        "the reason gives the size, its interval and q: {reason}"
    );
    assert!(table.contains("  before: ") && table.contains(" runs, p50 "), "{table}");
    assert!(
        table.contains("runs by duration (cut at the baseline's p50, p95, p99)"),
        "{table}"
    );
    assert!(
        table.contains("blocks with runs: 168 now, 168 before") && table.contains("q adjusted across 24 tests"),
        "the six routes of shop, four tests each: {table}"
    );
    assert!(table.contains("(buckets 0.54% wide there)"), "{table}");
    assert!(table.contains("99.0% interval "), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&kuroko_query(&[&named[..], &["--format", "json"]].concat())).unwrap();
    assert_eq!(json["regressions"].as_array().map(Vec::len), Some(0), "{json}");
    let search = &json["unchanged"][0];
    assert_eq!(search["outcome"], "no_change", "{json}");
    let explain = &search["explain"];
    assert_eq!(explain["reason"].as_str(), Some(reason.trim()), "{explain}");
    let bands = explain["distributions"]["current"]["bands"].as_array().unwrap();
    let total: f64 = bands.iter().filter_map(serde_json::Value::as_f64).sum();
    assert!((total - 1.0).abs() < 1e-6, "{bands:?}");
    let tests = explain["statistics"]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 4, "{explain}");
    for test in tests {
        assert_eq!(test["gate"], "not_significant", "{test}");
        assert!(test["q_value"].as_f64().unwrap() >= 0.01, "{test}");
        assert_eq!(test["interval"]["confidence"], 0.99, "{test}");
        assert!(test["per_block"]["previous"]["max"].as_f64().is_some(), "{test}");
    }
    // The same q-values as the service's own list.
    let f = fixture();
    let owners = owners();
    let analysis = Analysis::new(&f.store, &owners);
    let scope = Scope {
        service: Some("shop".into()),
        ..second_week()
    };
    let comparison = analysis
        .compare(&scope, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    let listed = comparison
        .unchanged
        .iter()
        .find(|r| r.transaction == "GET /search")
        .unwrap();
    let q = listed.verdict.tests.mean.unwrap().q_value;
    let mean = tests.iter().find(|t| t["metric"] == "mean").unwrap();
    assert!((mean["q_value"].as_f64().unwrap() - q).abs() < 1e-12, "{mean} {q}");

    // A named regression says it was called, and why.
    let orders = kuroko_query(&["--explain", "--service", "shop", "--transaction", "GET /orders/{id}"]);
    assert!(orders.contains("  called a regression: p95 +"), "{orders}");
}

/// The transaction page (over HTTP) says why `GET /search` was not called,
/// with its tests; the regressions page lists it among the unchanged with
/// its reason and a link there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_say_why_a_transaction_was_not_called() {
    let f = fixture();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&f.path).unwrap());
    let app = kuroko_reporter::app::App::new(store, Arc::new(owners()), String::new(), None);
    let router = kuroko_reporter::ui::router(app, PathBuf::from("/nonexistent"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let scope = second_week();
    let window = format!(
        "since={}&until={}",
        rfc3339(scope.from).replace(':', "%3A"),
        rfc3339(scope.to).replace(':', "%3A")
    );
    let get = |path: String| async move {
        let response = reqwest::get(format!("http://{address}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    };
    let search = get(format!(
        "/transactions?service=shop&transaction=GET%20%2Fsearch&{window}"
    ))
    .await;
    assert!(
        search.contains("No regression or improvement against the window before"),
        "{search}"
    );
    let why = search
        .split(r#"<p class="reason"><strong>Why: </strong>"#)
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no reason on the page: {search}"));
    assert!(
        why.starts_with("not called: ")
            && why.contains("% to ")
            && why.contains("q = 0.")
            && why.contains("not below 0.01"),
        "{why}"
    );
    assert!(search.contains(r#"<tr data-metric="p95">"#), "{search}");
    assert!(search.contains("buckets 0.54% wide here"), "{search}");
    assert!(search.contains("<th class=\"num\">≤ 41 ms</th>"), "the bands: {search}");
    let orders = get(format!(
        "/transactions?service=shop&transaction=GET%20%2Forders%2F%7Bid%7D&{window}"
    ))
    .await;
    assert!(
        orders.contains("<strong>Why: </strong>called a regression: "),
        "{orders}"
    );

    let regressions = get(format!("/regressions?{window}")).await;
    let unchanged = regressions
        .split(r#"<details class="unchanged">"#)
        .nth(1)
        .unwrap_or_else(|| panic!("no unchanged list: {regressions}"));
    let line = unchanged
        .split("<li>")
        .find(|li| li.contains(">shop GET /search</a>"))
        .unwrap_or_else(|| panic!("GET /search is not listed: {unchanged}"));
    assert!(line.contains("#why\">") && line.contains(" — not called: "), "{line}");
}

#[test]
fn the_weekly_email_says_why_each_regression_happened() {
    let f = fixture();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&f.path).unwrap());
    let producer = analysis_producer(store, Arc::new(owners()));
    let period: Period = "2025-W07".parse().unwrap();
    let job = Job {
        report: Report::Weekly,
        team: Some("shop".into()),
        period,
        scheduled_at: Timestamp::from_second((START + 2 * WEEK) * 60).unwrap(),
        late: None,
        channels: vec![Channel::Email],
        email_to: vec!["shop@example.com".into()],
        from: "kuroko@example.com".into(),
        base_url: "https://kuroko.example.com".into(),
        time_zone: TimeZone::UTC,
        time_zone_name: "UTC".into(),
    };
    let message = producer(&job).unwrap().email.unwrap();
    let raw = message.formatted();
    let mail = mailparse::parse_mail(&raw).unwrap();
    let mut text = String::new();
    let mut html = String::new();
    for part in mail.parts() {
        match part.ctype.mimetype.as_str() {
            "text/plain" => text.push_str(&part.get_body().unwrap()),
            "text/html" => html.push_str(&part.get_body().unwrap()),
            _ => {}
        }
    }
    let why: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("why: ")).collect();
    eprintln!("{}", why.join("\n"));
    assert_eq!(why.len(), 4, "one cause sentence per regression: {text}");
    let products = why
        .iter()
        .find(|l| l.contains("`SELECT products` +"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(products.ends_with("since version 2.14.0 on all hosts"), "{products}");
    let profile = why
        .iter()
        .find(|l| l.contains("no single cause: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        profile.contains("per run (") && profile.contains("%), "),
        "the largest parts with their shares: {profile}"
    );
    let orders = why
        .iter()
        .find(|l| l.contains("`SELECT orders` +"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        orders.contains("% of the change (") && orders.ends_with("on all hosts"),
        "{orders}"
    );
    assert!(
        orders.trim_start().starts_with("why: p95 +") || orders.trim_start().starts_with("why: mean +"),
        "the metric and its change first: {orders}"
    );
    let cart = why
        .iter()
        .find(|l| l.contains("own code +"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(cart.ends_with("on host web-2"), "{cart}");
    assert!(
        html.contains("`SELECT orders` +") && html.contains("on host web-2"),
        "{html}"
    );
}

#[test]
fn the_regressions_page_shows_each_cause() {
    let f = fixture();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&f.path).unwrap());
    let app = kuroko_reporter::app::App::new(store, Arc::new(owners()), String::new(), None);
    let scope = second_week();
    let query = format!("since={}&until={}", rfc3339(scope.from), rfc3339(scope.to));
    let params = kuroko_reporter::ui::Params::parse(Some(&query)).unwrap();
    let page = kuroko_reporter::ui::pages::regressions(&app, &params, scope.to)
        .unwrap()
        .into_string();
    assert!(page.contains("<th>Cause</th>"), "{page}");
    assert!(page.contains("`SELECT orders` +3"), "{page}");
    assert!(page.contains("on all hosts"), "{page}");
    assert!(page.contains("on host web-2"), "{page}");
    assert!(page.contains("Slowest kept traces, before and now"), "{page}");
}

#[test]
fn the_transaction_page_says_why_it_changed_with_traces_side_by_side() {
    let f = fixture();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&f.path).unwrap());
    let app = kuroko_reporter::app::App::new(store, Arc::new(owners()), String::new(), None);
    let scope = second_week();
    let page = |service: &str, transaction: &str| {
        let query = format!(
            "service={service}&transaction={transaction}&since={}&until={}",
            rfc3339(scope.from),
            rfc3339(scope.to)
        );
        let params = kuroko_reporter::ui::Params::parse(Some(&query)).unwrap();
        kuroko_reporter::ui::pages::transaction(&app, &params, scope.to)
            .unwrap()
            .into_string()
    };
    let orders = page("shop", "GET%20%2Forders%2F%7Bid%7D");
    assert!(orders.contains("<strong>Regression</strong>: p95 +"), "{orders}");
    assert!(orders.contains("Cause: `SELECT orders` +3"), "{orders}");
    assert!(
        orders.contains(r#"<tr class="grown" data-segment="SELECT orders">"#),
        "the grown segment leads the traces side by side: {orders}"
    );
    assert!(
        orders.contains("Its shape: ") && orders.contains("in `SELECT orders` alone; typical for shop: "),
        "where the time goes, against the service's routes: {orders}"
    );
    let products = page("catalog", "GET%20%2Fproducts%2F%7Bid%7D");
    assert!(products.contains("since version 2.14.0 on all hosts"), "{products}");
    let profile = page("shop", "GET%20%2Fprofile");
    assert!(profile.contains("Cause: no single cause stands out: "), "{profile}");
    let search = page("shop", "GET%20%2Fsearch");
    assert!(
        search.contains("No regression or improvement against the window before"),
        "{search}"
    );
}

#[test]
fn a_slow_endpoint_says_where_its_time_goes_against_its_peers() {
    let json: serde_json::Value =
        serde_json::from_str(&kuroko_cli(&["query", "slowest", "--format", "json", "--limit", "20"])).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let orders = rows.iter().find(|r| r["transaction"] == "GET /orders/{id}").unwrap();
    let shape = &orders["shape"];
    // SELECT orders 60 ms of 85 in the second week; the service's seven web
    // routes' median database share is about a third.
    assert_eq!(shape["kinds"][0]["kind"], "database", "{shape}");
    let db = shape["kinds"][0]["share"].as_f64().unwrap();
    let typical = shape["typical"][0]["share"].as_f64().unwrap();
    assert!((0.6..0.8).contains(&db) && (0.2..0.4).contains(&typical), "{shape}");
    assert_eq!(
        (shape["peers"].as_u64(), shape["peers_of"].as_str()),
        (Some(6), Some("shop"))
    );
    let summary = shape["summary"].as_str().unwrap();
    assert!(
        summary.contains("% database, ") && summary.contains("in `SELECT orders` alone; typical for shop: "),
        "{summary}"
    );
    // catalog has one route: its typical shape is the fleet's.
    let products = rows.iter().find(|r| r["transaction"] == "GET /products/{id}").unwrap();
    assert_eq!(products["shape"]["peers_of"], "the fleet", "{products}");
    let table = kuroko_cli(&["query", "slowest"]);
    let line = table.lines().find(|l| l.contains("GET /orders/{id}")).unwrap();
    assert!(
        line.contains("% database (`SELECT orders` ") && line.contains("); typical "),
        "{line}"
    );
}
