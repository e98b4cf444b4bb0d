//! What changed: regressions and grouped errors, asked of a synthetic
//! fortnight whose truths are planted (`synthetic::Spec::small`), and of small
//! stores written point by point where a case needs exact numbers. Every test
//! runs on SQLite and on ClickHouse (`sqlite::<test>`, `clickhouse::<test>`;
//! `support/stores.rs`), with the same assertions.

#[path = "support/seeded.rs"]
mod seeded;
#[macro_use]
#[path = "support/stores.rs"]
mod stores;
use seeded::Rng;
use stores::{Kind, TestStore};

use std::sync::OnceLock;

use kuroko_reporter::analysis::regressions::{last_week, Group, WEEK_MINUTES};
use kuroko_reporter::analysis::stats::{Metric, Outcome, RegressionRule};
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::{Batch, ErrorPoint, Filter, HistogramPoint, SeriesKey};
use kuroko_reporter::synthetic::{Spec, Truths};

/// A day-aligned minute (2025-02-03 00:00 UTC): the fortnight's first.
const START: i64 = 20_122 * 1_440;
const DAY: i64 = 1_440;

const OWNERS: &str = r#"
[teams.orders]
[teams.search]
[features.checkout]
team = "orders"
[features.search]
team = "search"
[features.hot]
team = "search"
patterns = [ { service = "api", transaction = "GET /hot*" } ]
"#;

fn owners() -> Owners {
    Owners::parse(OWNERS, "owners.toml").unwrap()
}

struct Fortnight {
    store: TestStore,
    truths: Truths,
    spec: Spec,
}

/// The synthetic fortnight on `kind`'s store, written once per kind for
/// every test of this file.
fn fortnight(kind: Kind) -> &'static Fortnight {
    static FIXTURES: [OnceLock<Fortnight>; 2] = [OnceLock::new(), OnceLock::new()];
    FIXTURES[kind.index()].get_or_init(|| {
        let store = TestStore::open(kind, "changes-fortnight");
        let spec = Spec::small(START);
        let truths = store.write_synthetic(&spec);
        Fortnight { store, truths, spec }
    })
}

/// `n` latencies around `median`, lognormal (sigma 0.3), deterministic.
fn latencies(seed: u64, n: usize, median: f64) -> Histogram {
    let mut rng = Rng::new(seed);
    let mut h = Histogram::empty();
    for _ in 0..n {
        h.record(rng.lognormal(median, 0.3)).unwrap();
    }
    h
}

fn series(transaction: &str) -> SeriesKey {
    SeriesKey {
        service: "api".into(),
        host: "api-1".into(),
        transaction: transaction.into(),
        feature: String::new(),
        kind: "web".into(),
        environment: String::new(),
    }
}

fn day_of(minute: i64) -> Scope {
    let day = minute.div_euclid(DAY) * DAY;
    Scope::window(day, day + DAY)
}

fn error(host: &str, error_type: &str, message: &str, fingerprint: &str, count: u64, minute: i64) -> ErrorPoint {
    ErrorPoint {
        key: series("POST /pay"),
        minute,
        error_type: error_type.into(),
        message: message.into(),
        location: format!("src/{host}.rs:10"),
        count,
        last_seen: (minute as u64 + 1) * 60_000_000_000,
        fingerprint: fingerprint.into(),
        stacktrace: String::new(),
        trace_id: String::new(),
    }
}

suite! {
#[test]
fn the_planted_regression_is_found_and_nothing_else(kind: Kind) {
    let f = fortnight(kind);
    let owners = owners();
    let analysis = Analysis::new(&*f.store, &owners);
    let scope = last_week(f.spec.end_minute());
    assert_eq!(
        scope.from, f.truths.regression_start,
        "the last week is the regressed one"
    );
    let comparison = analysis
        .compare(&scope, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    let names: Vec<String> = comparison.regressions.iter().map(|r| r.label()).collect();
    let planted = &f.truths.regression;
    assert_eq!(
        names,
        [format!("{} {}", planted.service, planted.transaction)],
        "exactly the planted regression"
    );
    let row = &comparison.regressions[0];
    let trigger = row.verdict.trigger.unwrap();
    assert_eq!(trigger.metric, Metric::P95, "{trigger}");
    assert!(trigger.p_value < 0.01 && trigger.relative >= 0.10, "{trigger}");
    assert!(
        (row.verdict.changes.p95.relative.unwrap() - 0.30).abs() < 0.10,
        "about +30%: {:?}",
        row.verdict.changes.p95
    );
    assert!(
        row.verdict.changes.p50.relative.unwrap().abs() < 0.05,
        "the median did not move"
    );
    assert!(row.verdict.impact_seconds > 0.0);
    assert_eq!(row.feature.as_deref(), Some("checkout"));
    assert_eq!(row.team.as_deref(), Some("orders"), "the owning team, from owners.toml");
    assert_eq!(row.environment, "production");
    // Nothing else moved: no improvement, and the noisy transaction is judged unchanged.
    assert!(comparison.improvements.is_empty(), "{:?}", comparison.improvements);
    assert!(comparison.too_little_traffic.is_empty());
    let series = f.truths.series / f.spec.hosts_per_service;
    assert_eq!(comparison.unchanged.len(), series - 1, "every other transaction was judged");
    let noisy = &f.truths.noisy;
    let only_noisy = Scope {
        service: Some(noisy.service.clone()),
        transaction: Some(noisy.transaction.clone()),
        ..scope.clone()
    };
    let judged = analysis
        .compare(&only_noisy, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    assert_eq!(
        (judged.regressions.len(), judged.unchanged.len()),
        (0, 1),
        "the noisy one is judged, and not called a regression"
    );
}

#[test]
fn filters_narrow_regressions_to_a_team_or_a_host(kind: Kind) {
    let f = fortnight(kind);
    let owners = owners();
    let analysis = Analysis::new(&*f.store, &owners);
    let scope = last_week(f.spec.end_minute());
    let rule = RegressionRule::default();
    let search = Scope {
        team: Some("search".into()),
        ..scope.clone()
    };
    assert!(analysis
        .regressions(&search, &rule, Group::Transaction)
        .unwrap()
        .is_empty());
    let orders = Scope {
        team: Some("orders".into()),
        ..scope.clone()
    };
    assert_eq!(
        analysis.regressions(&orders, &rule, Group::Transaction).unwrap().len(),
        1
    );
    let one_host = Scope {
        host: Some(format!("{}-1", f.truths.regression.service)),
        ..scope.clone()
    };
    let on_host = analysis.compare(&one_host, &rule, Group::Transaction).unwrap();
    assert_eq!(on_host.regressions.len(), 1, "seen on one host alone too");
    let runs = |c: &kuroko_reporter::analysis::regressions::Comparison| c.regressions[0].verdict.current_count;
    let everywhere = analysis.compare(&scope, &rule, Group::Transaction).unwrap();
    assert!(runs(&on_host) < runs(&everywhere), "one host has fewer runs than all");
    let nobody = Scope {
        team: Some("nobody".into()),
        ..scope
    };
    assert!(analysis.regressions(&nobody, &rule, Group::Transaction).is_err());
}

#[test]
fn regressions_rank_by_extra_time_and_quiet_transactions_are_not_judged(kind: Kind) {
    let store = TestStore::open(kind, "changes-ranking");
    let now = START + 2 * WEEK_MINUTES;
    let scope = last_week(now);
    // (transaction, runs per period, median before, median now)
    let cases = [
        // +50% on a rare path: 1,000 runs × 10 ms more.
        ("GET /hot-rare", 1_000, 0.020, 0.030),
        // +15% on a hot path: 50,000 runs × 3 ms more, the most time lost.
        ("GET /hot-busy", 50_000, 0.020, 0.023),
        // Doubled, but 50 runs a week: too little to judge.
        ("GET /quiet", 50, 0.020, 0.040),
        // Unchanged.
        ("GET /same", 5_000, 0.020, 0.020),
    ];
    // Each period's runs spread over the same 50 hours of its week: the
    // variance between hours is what the tests weigh.
    const HOURS: i64 = 50;
    let mut batch = Batch::default();
    for (i, &(name, runs, before, now)) in cases.iter().enumerate() {
        for hour in 0..HOURS {
            let periods = [(scope.from - WEEK_MINUTES, before, 0), (scope.from, now, 1)];
            for (start, median, side) in periods {
                batch.histograms.push(HistogramPoint {
                    key: series(name).into(),
                    minute: start + 60 * hour + 1,
                    histogram: latencies((1_000 * i as i64 + 2 * hour + side) as u64, runs / HOURS as usize, median),
                });
            }
        }
    }
    store.write(&batch).unwrap();
    let owners = owners();
    let analysis = Analysis::new(&*store, &owners);
    let rule = RegressionRule::default();
    let comparison = analysis.compare(&scope, &rule, Group::Transaction).unwrap();
    let names: Vec<&str> = comparison.regressions.iter().map(|r| r.transaction.as_str()).collect();
    assert_eq!(names, ["GET /hot-busy", "GET /hot-rare"], "most extra time first");
    let impacts: Vec<f64> = comparison
        .regressions
        .iter()
        .map(|r| r.verdict.impact_seconds)
        .collect();
    assert!(impacts[0] > impacts[1], "{impacts:?}");
    assert!((impacts[0] - 150.0).abs() < 30.0, "≈ 50,000 × 3 ms: {impacts:?}");
    let quiet: Vec<(&str, Outcome)> = comparison
        .too_little_traffic
        .iter()
        .map(|r| (r.transaction.as_str(), r.verdict.outcome))
        .collect();
    assert_eq!(quiet, [("GET /quiet", Outcome::TooLittleTraffic)]);
    assert_eq!(comparison.unchanged.len(), 1);
    assert!(comparison.improvements.is_empty());

    // Per feature: owners.toml puts both /hot transactions in `hot`.
    let features = analysis.compare(&scope, &rule, Group::Feature).unwrap();
    assert_eq!(features.regressions.len(), 1, "{features:?}");
    let hot = &features.regressions[0];
    assert_eq!(
        (hot.feature.as_deref(), hot.team.as_deref()),
        (Some("hot"), Some("search"))
    );
    assert_eq!(hot.label(), "feature hot");
    assert_eq!(hot.verdict.current_count, 51_000, "both transactions, merged");
    assert_eq!(
        features.unchanged.len() + features.too_little_traffic.len(),
        0,
        "untagged, unowned: no feature"
    );
}

#[test]
fn two_days_weigh_how_whole_days_wobble_in_the_week_before(kind: Kind) {
    // Eleven days: the week before the baseline, the 2-day baseline and the 2
    // days judged. `GET /wobbly`'s days each have a level of their own (±20%)
    // shared by every hour of the day; its hours are steady within a day.
    // `GET /slower` is steady every day and 30% slower in the last two.
    const DAYS: i64 = 11;
    let wobbly = [1.0, 1.18, 0.84, 1.12, 0.9, 1.2, 0.86, 0.92, 0.95, 1.1, 1.14];
    let slower = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.3, 1.3];
    let now = START + DAYS * DAY;
    let scope = Scope::window(now - 2 * DAY, now);
    let batch = |first_day: i64| {
        let mut batch = Batch::default();
        for (i, (name, levels)) in [("GET /wobbly", wobbly), ("GET /slower", slower)].into_iter().enumerate() {
            for day in first_day..DAYS {
                for hour in 0..24 {
                    batch.histograms.push(HistogramPoint {
                        key: series(name).into(),
                        minute: START + day * DAY + 60 * hour + 1,
                        histogram: latencies((10_000 * i as i64 + 24 * day + hour) as u64, 2_000, 0.020 * levels[day as usize]),
                    });
                }
            }
        }
        batch
    };
    let owners = owners();
    let rule = RegressionRule::default();
    let called = |store: &TestStore| {
        let analysis = Analysis::new(&**store, &owners);
        let comparison = analysis.compare(&scope, &rule, Group::Transaction).unwrap();
        assert!(comparison.coverage.enough, "{comparison:?}");
        let mut names: Vec<String> = comparison.regressions.iter().map(|r| r.transaction.clone()).collect();
        names.sort();
        names
    };
    // Only the 4 days: nothing shows that whole days move, and the wobbly
    // route's +20% over two steady-looking days is called.
    let young = TestStore::open(kind, "changes-two-days-young");
    young.write(&batch(DAYS - 4)).unwrap();
    assert_eq!(called(&young), ["GET /slower", "GET /wobbly"]);
    // With the week before, its days are seen to wobble by that much: not
    // called. The steady route's +30% still is.
    let grown = TestStore::open(kind, "changes-two-days-grown");
    grown.write(&batch(0)).unwrap();
    assert_eq!(called(&grown), ["GET /slower"]);
}

#[test]
fn the_error_burst_is_one_new_group_on_one_host(kind: Kind) {
    let f = fortnight(kind);
    let owners = owners();
    let analysis = Analysis::new(&*f.store, &owners);
    let burst = &f.truths.error_burst;
    let groups = analysis.errors(&day_of(burst.from_minute)).unwrap();
    assert!(burst.count > 100, "{burst:?}");
    let found: Vec<_> = groups.iter().filter(|g| g.error_type == burst.error_type).collect();
    // Its user ids are hex, and some are all digits (`<num>` rather than
    // `<hex>` in the title): the fingerprint's id treats both as one kind.
    assert_eq!(found.len(), 1, "varying ids, one group: {found:#?}");
    assert_eq!(found.iter().map(|g| g.count).sum::<u64>(), burst.count);
    for part in &found {
        assert_eq!(part.servers.len(), 1, "{part:?}");
        assert_eq!(part.servers[0].host, burst.host, "all on the one host");
        assert!(part.new, "{part:?}");
    }
    let group = found[0];
    assert_eq!(
        group.title,
        format!("{}: order <num> not found for user <hex>", burst.error_type)
    );
    assert_eq!(group.location, burst.location.split(':').next().unwrap());
    assert_eq!(group.servers.len(), 1);
    assert_eq!(
        (group.servers[0].host.as_str(), group.servers[0].count),
        (burst.host.as_str(), group.count)
    );
    assert_eq!(group.transactions.len(), 1);
    assert_eq!(group.transactions[0].transaction, burst.transaction.transaction);
    assert!(group.new && group.previous_count == 0 && group.relative_increase.is_none());
    assert_eq!(group.increase, group.count as i64);
    assert_eq!(group.teams, ["orders"]);
    assert!(
        (burst.from_minute..burst.to_minute).contains(&group.first_seen_minute),
        "{group:?}"
    );
    // Samples are raw messages, distinct, each with its own ids.
    assert_eq!(group.samples.len(), 5);
    for sample in &group.samples {
        let words: Vec<&str> = sample.split(' ').collect();
        assert_eq!(words.len(), 7, "{sample}");
        assert!(words[1].parse::<u32>().is_ok() && words[6].len() == 8, "{sample}");
    }
    let mut distinct = group.samples.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 5);
    // New groups come first; the background's are there too, not new.
    assert_eq!(groups[0].id, group.id);
    let background: Vec<_> = groups.iter().filter(|g| g.error_type != burst.error_type).collect();
    assert!(!background.is_empty());
    assert!(background.iter().all(|g| !g.new), "{background:#?}");
}

#[test]
fn background_errors_form_their_own_groups(kind: Kind) {
    let f = fortnight(kind);
    let owners = owners();
    let analysis = Analysis::new(&*f.store, &owners);
    let whole = Scope::window(f.spec.start_minute, f.spec.end_minute());
    let groups = analysis.errors(&whole).unwrap();
    let burst = &f.truths.error_burst;
    let background: Vec<_> = groups.iter().filter(|g| g.error_type != burst.error_type).collect();
    assert_eq!(background.len(), 4, "four kinds of ordinary error: {background:#?}");
    let total: u64 = background.iter().map(|g| g.count).sum();
    assert_eq!(total, f.truths.background_errors);
    for group in &background {
        assert_eq!(group.samples.len(), 1, "one raw message each: {group:?}");
        assert!(group.servers.len() > 1, "all over the fleet: {group:?}");
        assert!(group.new, "nothing before the fortnight");
    }
    // Over a plain day against the day before, they are not new.
    let quiet_day = day_of(f.spec.start_minute + 3 * DAY);
    for group in analysis.errors(&quiet_day).unwrap() {
        assert_ne!(group.error_type, burst.error_type);
        assert!(!group.new && group.previous_count > 0, "{group:?}");
    }
    // Narrowed to the burst host, the burst is there; narrowed to another, it is not.
    let on = |host: &str| Scope {
        host: Some(host.to_owned()),
        ..whole.clone()
    };
    let has_burst = |host: &str| {
        analysis
            .errors(&on(host))
            .unwrap()
            .iter()
            .any(|g| g.error_type == burst.error_type)
    };
    assert!(has_burst(&burst.host));
    assert!(!has_burst(&format!("{}-1", burst.transaction.service)));
}

#[test]
fn a_custom_fingerprint_merges_different_errors(kind: Kind) {
    let store = TestStore::open(kind, "changes-custom");
    let minute = START + 100;
    let batch = Batch {
        errors: vec![
            error(
                "a",
                "TimeoutError",
                "payment gateway timed out",
                "gateway-down",
                7,
                minute,
            ),
            error(
                "b",
                "ConnectError",
                "connection refused by gateway",
                "gateway-down",
                3,
                minute + 1,
            ),
            error("a", "TimeoutError", "payment gateway timed out", "", 2, minute + 2),
            // Only the previous day: the merged group was seen before, 4 times.
            error(
                "b",
                "ConnectError",
                "connection refused by gateway",
                "gateway-down",
                4,
                minute - DAY,
            ),
        ],
        ..Batch::default()
    };
    store.write(&batch).unwrap();
    let owners = Owners::empty();
    let analysis = Analysis::new(&*store, &owners);
    let groups = analysis.errors(&day_of(minute)).unwrap();
    assert_eq!(groups.len(), 2, "{groups:#?}");
    // The same message without the fingerprint is grouped by the rules: new.
    assert!(groups[0].new && !groups[0].custom && groups[0].count == 2);
    let merged = &groups[1];
    assert!(merged.custom);
    assert_eq!((merged.count, merged.previous_count, merged.increase), (10, 4, 6));
    assert_eq!(merged.relative_increase, Some(1.5));
    assert_eq!(
        merged.samples,
        ["payment gateway timed out", "connection refused by gateway"],
        "most frequent first"
    );
    assert_eq!(merged.title, "TimeoutError: payment gateway timed out");
    assert_eq!(merged.location, "src/a.rs");
}

#[test]
fn an_error_log_record_keeps_its_fingerprint_into_the_store(kind: Kind) {
    use kuroko_reporter::ingest::logs::convert;
    use kuroko_reporter::ingest::otlp::Limits;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    let kv = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let now = (START as u64 + 10) * 60_000_000_000;
    let record = |message: &str, fingerprint: Option<&str>| {
        let mut attributes = vec![
            kv("exception.type", "GatewayError"),
            kv("exception.message", message),
            kv("kuroko.transaction", "POST /pay"),
        ];
        attributes.extend(fingerprint.map(|f| kv("kuroko.error.fingerprint", f)));
        LogRecord {
            time_unix_nano: now - 1_000_000_000,
            severity_number: 17,
            attributes,
            ..Default::default()
        }
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "api"), kv("host.name", "api-1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record("upstream 502", Some("  gateway-down ")),
                    record("upstream refused", Some("gateway-down")),
                    record("upstream 503", None),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let converted = convert(&request, &Limits::default(), now);
    let fingerprints: Vec<&str> = converted.batch.errors.iter().map(|e| e.fingerprint.as_str()).collect();
    assert_eq!(
        fingerprints,
        ["gateway-down", "gateway-down", ""],
        "trimmed, empty when none"
    );

    let store = TestStore::open(kind, "changes-ingest");
    store.write(&converted.batch).unwrap();
    let minute = START + 9;
    let mut stored: Vec<(String, String)> = store
        .errors(&Filter::default(), minute, minute + 1)
        .unwrap()
        .into_iter()
        .map(|e| (e.message, e.fingerprint))
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("upstream 502".to_owned(), "gateway-down".to_owned()),
            ("upstream 503".to_owned(), String::new()),
            ("upstream refused".to_owned(), "gateway-down".to_owned()),
        ]
    );
    let owners = Owners::empty();
    let groups = Analysis::new(&*store, &owners).errors(&day_of(minute)).unwrap();
    let counts: Vec<(bool, u64)> = groups.iter().map(|g| (g.custom, g.count)).collect();
    assert_eq!(
        counts,
        [(true, 2), (false, 1)],
        "the service's fingerprint groups its two"
    );
}

/// Errors with stack traces: grouped by type and the frames of the
/// service's own code. Two `KeyError`s with quoted keys read the same to
/// the message rules (`KeyError: <quoted>`), but were raised in different
/// places; one `ValueError` raised in one place groups whatever its ids and
/// lines, and its group shows its stack trace.
#[test]
fn errors_with_stack_traces_group_by_their_in_app_frames(kind: Kind) {
    let python = |file: &str, function: &str, line: u32| {
        format!(
            "Traceback (most recent call last):\n  \
             File \"/usr/local/lib/python3.12/site-packages/flask/app.py\", line 880, in dispatch\n    \
             rv = self.view()\n  File \"/app/shop/{file}\", line {line}, in {function}\n    raise\nError"
        )
    };
    let thrown = |error_type: &str, message: &str, stacktrace: String, minute: i64| ErrorPoint {
        location: String::new(),
        stacktrace,
        ..error("a", error_type, message, "", 1, minute)
    };
    let minute = START + 40;
    let store = TestStore::open(kind, "changes-stacks");
    store
        .write(&Batch {
            errors: vec![
                thrown("KeyError", "'user_id'", python("users.py", "load_user", 40), minute),
                thrown("KeyError", "'amount'", python("pricing.py", "price", 7), minute),
                thrown("ValueError", "order 1234 not found", python("orders.py", "find", 10), minute),
                thrown("ValueError", "order 98765 not found", python("orders.py", "find", 12), minute + 1),
            ],
            ..Batch::default()
        })
        .unwrap();
    let owners = Owners::empty();
    let groups = Analysis::new(&*store, &owners).errors(&day_of(minute)).unwrap();
    let mut seen: Vec<(String, u64, bool)> = groups
        .iter()
        .map(|g| (g.title.clone(), g.count, g.stacktrace.contains("/app/shop/")))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("KeyError: <quoted>".to_owned(), 1, true),
            ("KeyError: <quoted>".to_owned(), 1, true),
            ("ValueError: order <num> not found".to_owned(), 2, true),
        ]
    );
}

#[test]
fn fingerprints_survive_the_roll_up_to_hours(kind: Kind) {
    let store = TestStore::open(kind, "changes-rollup");
    let now = START + 3 * DAY;
    let minute = START + 2 * DAY + 30;
    store
        .write(&Batch {
            errors: vec![
                error(
                    "a",
                    "TimeoutError",
                    "payment gateway timed out",
                    "gateway-down",
                    5,
                    minute,
                ),
                error("b", "ConnectError", "refused", "gateway-down", 1, minute + 5),
            ],
            // The roller starts at the oldest histogram.
            histograms: vec![HistogramPoint {
                key: series("POST /pay").into(),
                minute,
                histogram: latencies(1, 10, 0.02),
            }],
            ..Batch::default()
        })
        .unwrap();
    let retention = kuroko_reporter::store::rollup::Retention {
        minute_days: 0,
        hour_days: 30,
        day_days: 365,
    };
    store.roll_up(retention, now);
    // Minutes are gone past retention: this reads the hour rows.
    let errors = store.errors(&Filter::default(), minute - 30, minute + 30).unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.fingerprint == "gateway-down"), "{errors:?}");
}
}
