//! The two stores give the same answers (issue #9): the same synthetic
//! fortnight (`synthetic::Spec::small`) is written to SQLite and to
//! ClickHouse, and every question the API answers (`api::query`: slowest,
//! consumers, timeseries, breakdown, regressions, errors, apdex) is asked of
//! both, over windows that are read from minutes, hours and days, with every
//! filter and grouping. The two JSON answers must be equal: counts, names and
//! order exactly, floats within a relative 1e-9 (ClickHouse sums in another
//! order).
//!
//! The per-question suites (`analysis.rs`, `analysis_changes.rs`, ...) check
//! that each store's answers are right; this checks that a user switching
//! stores sees nothing change.

#[path = "support/stores.rs"]
mod stores;
use stores::{Kind, TestStore};

use kuroko_reporter::analysis::Analysis;
use kuroko_reporter::api::query::{Query, Question};
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::Filter;
use kuroko_reporter::synthetic::{Spec, Truths};
use serde_json::Value;

/// Monday 2025-02-03 00:00 UTC.
const START: i64 = 20_122 * 1_440;
const DAY: i64 = 1_440;

const OWNERS: &str = r#"
[teams.payments]
[teams.discovery]
[teams.accounts]

[features.checkout]
team = "payments"
[features.search]
team = "discovery"
[features.catalog]
team = "discovery"
[features.accounts]
team = "accounts"
[features.reporting]
team = "accounts"
patterns = [ { service = "shop-api", transaction = "GET /reports*" } ]
"#;

/// The relative difference allowed between two floats.
const TOLERANCE: f64 = 1e-9;

/// RFC 3339 for a unix minute.
fn at(minute: i64) -> String {
    jiff::Timestamp::from_second(minute * 60).unwrap().to_string()
}

/// Compares `sqlite` and `clickhouse` at `path`; returns how many numbers
/// were compared, or the first difference.
fn same(path: &str, sqlite: &Value, clickhouse: &Value) -> Result<usize, String> {
    let differ = || Err(format!("{path}: SQLite {sqlite} vs ClickHouse {clickhouse}"));
    match (sqlite, clickhouse) {
        (Value::Number(a), Value::Number(b)) => {
            let exact = |n: &serde_json::Number| n.is_u64() || n.is_i64();
            if exact(a) && exact(b) {
                return if a == b { Ok(1) } else { differ() };
            }
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return differ();
            };
            if (x - y).abs() <= TOLERANCE * x.abs().max(y.abs()) {
                Ok(1)
            } else {
                differ()
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{path}: {} items in SQLite, {} in ClickHouse",
                    a.len(),
                    b.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .try_fold(0, |n, (i, (x, y))| Ok(n + same(&format!("{path}[{i}]"), x, y)?))
        }
        (Value::Object(a), Value::Object(b)) => {
            if a.keys().ne(b.keys()) {
                return differ();
            }
            a.iter()
                .try_fold(0, |n, (key, x)| Ok(n + same(&format!("{path}.{key}"), x, &b[key])?))
        }
        (a, b) if a == b => Ok(0),
        _ => differ(),
    }
}

/// Every question, with parameters that read each resolution and use each
/// filter and grouping, as `(question, pairs)`.
fn questions(spec: &Spec, truths: &Truths) -> Vec<(Question, Vec<(String, String)>)> {
    let end = spec.end_minute();
    // Neither day- nor hour-aligned: days, hours and minute edges are read.
    let odd = [
        ("since", at(spec.start_minute + 3 * DAY - 130)),
        ("until", at(spec.start_minute + 9 * DAY + 70)),
    ];
    let hours = [
        ("since", at(spec.start_minute + 5 * DAY + 600)),
        ("until", at(spec.start_minute + 5 * DAY + 720)),
    ];
    // Two days and their edges: enough hour steps, without asking a
    // ClickHouse that answers a step per query for hundreds of them.
    let short = [
        ("since", at(spec.start_minute + 7 * DAY - 130)),
        ("until", at(spec.start_minute + 9 * DAY + 70)),
    ];
    let whole = [("since", "14d".to_owned())];
    let regression = &truths.regression;
    let burst = &truths.error_burst;
    let heavy = &truths.database_heavy;
    let slow = &truths.slow_endpoints[0];
    let mut asked: Vec<(Question, Vec<(&str, String)>)> = Vec::new();
    for question in [Question::Slowest, Question::Consumers, Question::Apdex] {
        asked.push((question, vec![]));
        asked.push((question, odd.to_vec()));
        asked.push((question, [&whole[..], &[("group", "feature".into())]].concat()));
        asked.push((question, [&odd[..], &[("team", "discovery".into())]].concat()));
        asked.push((question, [&whole[..], &[("host", burst.host.clone())]].concat()));
    }
    for by in ["p50", "p99", "average", "apdex", "time"] {
        asked.push((
            Question::Slowest,
            [&odd[..], &[("by", by.into()), ("limit", "5".into())]].concat(),
        ));
    }
    for step in ["minute", "hour", "day", "auto"] {
        let window: &[(&str, String)] = match step {
            "minute" => &hours,
            "day" => &odd,
            _ => &short,
        };
        let one = [
            ("service", regression.service.clone()),
            ("transaction", regression.transaction.clone()),
        ];
        asked.push((Question::Timeseries, [window, &one, &[("step", step.into())]].concat()));
    }
    asked.push((
        Question::Timeseries,
        [&short[..], &[("group", "feature".into())]].concat(),
    ));
    asked.push((
        Question::Timeseries,
        [&short[..], &[("feature", "checkout".into())]].concat(),
    ));
    asked.push((Question::Timeseries, [&whole[..], &[("step", "day".into())]].concat()));
    for planted in [heavy, slow, regression] {
        let one = [
            ("service", planted.service.clone()),
            ("transaction", planted.transaction.clone()),
            ("traces", "10".into()),
        ];
        asked.push((Question::Breakdown, [&whole[..], &one].concat()));
        asked.push((Question::Breakdown, [&odd[..], &one].concat()));
    }
    let all = ("include", "all".to_owned());
    asked.push((Question::Regressions, vec![all.clone()]));
    asked.push((Question::Regressions, vec![all.clone(), ("group", "feature".into())]));
    asked.push((Question::Regressions, vec![all.clone(), ("team", "payments".into())]));
    asked.push((
        Question::Regressions,
        vec![all.clone(), ("host", format!("{}-1", regression.service))],
    ));
    asked.push((
        Question::Regressions,
        vec![all, ("since", at(end - 3 * DAY - 45)), ("compare", "week".into())],
    ));
    let burst_day = burst.from_minute.div_euclid(DAY) * DAY;
    asked.push((Question::Errors, vec![]));
    asked.push((Question::Errors, whole.to_vec()));
    asked.push((
        Question::Errors,
        vec![("since", at(burst_day)), ("until", at(burst_day + DAY))],
    ));
    asked.push((
        Question::Errors,
        vec![
            ("since", at(burst_day)),
            ("until", at(burst_day + DAY)),
            ("compare", "week".into()),
            ("host", burst.host.clone()),
        ],
    ));
    asked.push((Question::Errors, [&odd[..], &[("team", "payments".into())]].concat()));
    asked
        .into_iter()
        .map(|(question, pairs)| {
            let pairs = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            (question, pairs)
        })
        .collect()
}

#[test]
fn every_question_gets_the_same_answer_from_both_stores() {
    let spec = Spec::small(START);
    let retention = Retention {
        minute_days: 60,
        ..Retention::default()
    };
    let stores: Vec<(TestStore, Truths)> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let store = TestStore::open(kind, "agree");
            let truths = store.write_synthetic(&spec);
            store.roll_up(retention.clone(), spec.end_minute() + 60);
            (store, truths)
        })
        .collect();
    let [(sqlite, truths), (clickhouse, _)] = &stores[..] else {
        unreachable!("two kinds");
    };
    // `series` promises no order.
    let series = |store: &TestStore| {
        let mut keys = store.series().unwrap();
        keys.sort();
        keys
    };
    assert_eq!(series(sqlite), series(clickhouse));
    let store_answers = |store: &TestStore| {
        let filter = Filter::default();
        let (from, to) = (spec.start_minute, spec.end_minute());
        (
            store.histograms(&filter, from + 77, to - 1_000).unwrap().len(),
            store
                .errors(&filter, from, to)
                .unwrap()
                .into_iter()
                .map(|e| {
                    (
                        e.key,
                        e.error_type,
                        e.message,
                        e.location,
                        e.count,
                        e.first_minute,
                        e.last_seen,
                        e.fingerprint,
                    )
                })
                .collect::<Vec<_>>(),
            store.slowest_traces(&filter, from, to, 50).unwrap(),
        )
    };
    assert_eq!(store_answers(sqlite), store_answers(clickhouse));

    let owners = Owners::parse(OWNERS, "owners.toml").unwrap();
    let now = spec.end_minute();
    let questions = questions(&spec, truths);
    let mut compared = 0;
    for (question, pairs) in &questions {
        let query = Query::parse(*question, pairs, &owners, now).unwrap();
        let answer = |store: &TestStore| {
            query
                .answer(&Analysis::new(&**store, &owners))
                .unwrap_or_else(|e| panic!("{} {pairs:?} on {:?}: {}", question.name(), store.kind, e.message()))
        };
        let (a, b) = (answer(sqlite), answer(clickhouse));
        let numbers = same(question.name(), &a, &b).unwrap_or_else(|difference| panic!("{pairs:?}: {difference}"));
        assert!(
            numbers > 0,
            "{} {pairs:?} answered nothing to compare: {a}",
            question.name()
        );
        compared += numbers;
    }
    assert!(compared > 5_000, "{compared} numbers compared");
}

#[test]
fn the_comparison_sees_a_difference() {
    let a: Value = serde_json::json!({"rows": [{"count": 3, "p95": 0.5, "name": "GET /"}]});
    assert_eq!(same("a", &a, &a), Ok(2));
    let hour = serde_json::json!({"first_seen_minute": 120});
    let minute = serde_json::json!({"first_seen_minute": 133});
    assert!(
        same("a", &hour, &minute).is_err(),
        "a first minute coarsened to its hour"
    );
    let nearly = serde_json::json!({"rows": [{"count": 3, "p95": 0.5 * (1.0 + 1e-12), "name": "GET /"}]});
    assert_eq!(same("a", &a, &nearly), Ok(2));
    for other in [
        serde_json::json!({"rows": [{"count": 4, "p95": 0.5, "name": "GET /"}]}),
        serde_json::json!({"rows": [{"count": 3, "p95": 0.5001, "name": "GET /"}]}),
        serde_json::json!({"rows": [{"count": 3, "p95": 0.5, "name": "GET /x"}]}),
        serde_json::json!({"rows": []}),
    ] {
        assert!(same("a", &a, &other).is_err(), "{other}");
    }
}
