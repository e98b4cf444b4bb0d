//! The Grafana dashboards in `dashboards/grafana/*.json` run against a real
//! ClickHouse (Debian's 18.16, or 26.9 in chDB with `KUROKO_TEST_CLICKHOUSE=chdb`)
//! holding data that kuroko's ClickHouse store
//! wrote: every panel's and every variable's SQL, with Grafana's macros and
//! variables replaced as the ClickHouse plugin replaces them, answers with
//! rows, both with every variable at "All" and with one value picked each; and
//! the slowest-endpoints table agrees with the store's own answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::{Batch, ErrorPoint, Filter, HistogramPoint, SeriesKey, Store};
use serde_json::Value;

#[path = "support/exported.rs"]
mod exported;
use exported::at_scale;

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;

const DATABASE: &str = "kuroko_grafana";

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/grafana"));
    let mut found: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!found.is_empty(), "no dashboards in {}", dir.display());
    found
}

/// Panels, rows' panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// A variable's choice: `None` is "All".
type Choice = BTreeMap<&'static str, Option<&'static str>>;

/// The SQL as the plugin would send it: `$__conditionalAll(cond, $var)`
/// becomes `1=1` when the variable is at All, else `cond`; multi-value
/// variables are quoted (`${var:singlequote}`); the time range and interval
/// become literals.
fn substitute(sql: &str, choice: &Choice, from: i64, to: i64, interval_s: i64) -> String {
    let mut out = String::new();
    let mut rest = sql;
    const MACRO: &str = "$__conditionalAll(";
    while let Some(at) = rest.find(MACRO) {
        out.push_str(&rest[..at]);
        let inner = &rest[at + MACRO.len()..];
        let (mut depth, mut end, mut comma) = (1, 0, 0);
        for (i, ch) in inner.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 1 => comma = i,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        assert!(end > 0 && comma > 0, "unbalanced $__conditionalAll in {sql}");
        let (condition, variable) = (&inner[..comma], inner[comma + 1..end].trim());
        let name = variable.trim_start_matches('$');
        let picked = *choice
            .get(name)
            .unwrap_or_else(|| panic!("unknown variable {variable}"));
        out.push_str(if picked.is_some() { condition.trim() } else { "1=1" });
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    for (name, value) in choice {
        if let Some(value) = value {
            let quoted = format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
            out = out.replace(&format!("${{{name}:singlequote}}"), &quoted);
        }
    }
    let out = out
        .replace("${database}", DATABASE)
        .replace("$__fromTime", &format!("toDateTime({from})"))
        .replace("$__toTime", &format!("toDateTime({to})"))
        .replace("$__interval_s", &interval_s.to_string());
    assert!(!out.contains('$'), "a macro or variable left unreplaced:\n{out}");
    out
}

/// Runs `sql`; its rows.
fn rows(sql: &str, what: &str) -> Vec<Value> {
    let answer = clickhouse_server::query(&format!("{sql}\nFORMAT JSONEachRow"))
        .unwrap_or_else(|error| panic!("{what} failed on ClickHouse:\n{error}\n{sql}"));
    answer
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn key(service: &str, host: &str, transaction: &str, feature: &str, environment: &str) -> SeriesKey {
    SeriesKey {
        service: service.into(),
        host: host.into(),
        transaction: transaction.into(),
        feature: feature.into(),
        kind: if transaction.contains(' ') { "web" } else { "job" }.into(),
        environment: environment.into(),
    }
}

/// Thirty minutes of three services' data: scale 7 and scale 5 points, a
/// job without a feature, and one error seen on two hosts.
fn data(minute: i64) -> Batch {
    let cards = key("shop", "web-1", "GET /cards/{id}", "cards", "production");
    let checkout = key("shop", "web-2", "POST /checkout", "checkout", "staging");
    let nightly = key("billing", "worker-1", "nightly-invoices", "", "production");
    let mut batch = Batch::default();
    for m in 0..30 {
        let spread = |base: f64, n: usize| -> Vec<f64> { (0..n).map(|i| base * (1.0 + i as f64 / 10.0)).collect() };
        let mut h = Histogram::empty();
        for v in spread(0.010 + m as f64 * 1e-4, 40) {
            h.record(v).unwrap();
        }
        batch.histograms.push(HistogramPoint {
            key: cards.clone().into(),
            minute: minute - m,
            histogram: h,
        });
        batch.histograms.push(HistogramPoint {
            key: checkout.clone().into(),
            minute: minute - m,
            histogram: at_scale(&spread(0.200, 10), 5),
        });
        if m % 10 == 0 {
            batch.histograms.push(HistogramPoint {
                key: nightly.clone().into(),
                minute: minute - m,
                histogram: at_scale(&[42.0], 7),
            });
        }
    }
    for (series, count) in [(&cards, 3), (&checkout, 4)] {
        batch.errors.push(ErrorPoint {
            key: series.clone(),
            minute: minute - 5,
            error_type: "DbTimeout".into(),
            message: "SELECT cards took 5 s".into(),
            location: "cards.rs:12".into(),
            count,
            last_seen: ((minute - 5) * 60 + 7) as u64 * 1_000_000_000,
            fingerprint: String::new(),
            stacktrace: String::new(),
            trace_id: String::new(),
        });
    }
    batch
}

#[test]
fn every_panel_and_variable_answers_from_the_store_on_clickhouse() {
    let store = clickhouse_server::clickhouse(DATABASE);
    let now_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    store.write(&data(now_minute)).unwrap();
    let (from, to) = ((now_minute - 60) * 60, (now_minute + 1) * 60);

    let all: Choice = [
        ("service", None),
        ("feature", None),
        ("environment", None),
        ("host", None),
    ]
    .into();
    let picked: Choice = [
        ("service", Some("shop")),
        ("feature", Some("cards")),
        ("environment", Some("production")),
        ("host", Some("web-1")),
    ]
    .into();
    let mut checked = 0;
    for (path, dashboard) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = &dashboard["__inputs"][0];
        assert_eq!(input["pluginId"], "grafana-clickhouse-datasource", "{name}: __inputs");
        let uid = format!("${{{}}}", input["name"].as_str().unwrap());
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            if variable["type"] != "query" {
                continue;
            }
            assert_eq!(
                variable["datasource"]["uid"],
                uid.as_str(),
                "{name}: {}",
                variable["name"]
            );
            let sql = variable["query"].as_str().unwrap();
            for choice in [&all, &picked] {
                let what = format!("{name}: variable {}", variable["name"]);
                assert!(
                    !rows(&substitute(sql, choice, from, to, 60), &what).is_empty(),
                    "{what}: no values"
                );
            }
            checked += 1;
        }
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert_eq!(target["datasource"]["uid"], uid.as_str(), "{name}: {title}");
                let sql = target["rawSql"].as_str().unwrap();
                for (choice, interval) in [(&all, 60), (&picked, 60), (&all, 300)] {
                    let what = format!("{name}: panel {title:?} (interval {interval} s)");
                    let answer = rows(&substitute(sql, choice, from, to, interval), &what);
                    assert!(!answer.is_empty(), "{what}: no rows");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "every panel and variable checked ({checked})");

    // What the panels say matches the store.
    let dashboard = &dashboards()[0].1;
    let sql_of = |title: &str| {
        panels(dashboard)
            .into_iter()
            .find(|p| p["title"] == title)
            .and_then(|p| p["targets"][0]["rawSql"].as_str())
            .unwrap_or_else(|| panic!("no panel {title:?}"))
            .to_owned()
    };
    let slowest = rows(&substitute(&sql_of("Slowest endpoints"), &all, from, to, 60), "slowest");
    let stored = store.histograms(&Filter::default(), from / 60, to / 60).unwrap();
    assert_eq!(slowest.len(), stored.len(), "one row per endpoint");
    assert_eq!(slowest[0]["endpoint"], "nightly-invoices", "the slowest first");
    for (key, histogram) in &stored {
        let row = slowest
            .iter()
            .find(|r| r["endpoint"] == key.transaction.as_str())
            .unwrap_or_else(|| panic!("{} missing", key.transaction));
        assert_eq!(row["runs"].as_u64(), Some(histogram.count), "{}", key.transaction);
        let p95 = row["p95"].as_f64().unwrap();
        let truth = histogram.quantile(0.95);
        // Within a bucket's width: 0.5% at scale 7, 2.2% at scale 5.
        assert!(
            (p95 - truth).abs() / truth < 0.025,
            "{}: p95 {p95} vs {truth}",
            key.transaction
        );
        let consumed = row["time_consumed"].as_f64().unwrap();
        assert!(
            (consumed - histogram.sum).abs() < 1e-6 * histogram.sum,
            "{}",
            key.transaction
        );
    }
    let errors = rows(&substitute(&sql_of("Error groups"), &all, from, to, 60), "errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (&errors[0]["occurrences"], &errors[0]["hosts"], &errors[0]["host_names"]),
        (&Value::from(7), &Value::from(2), &Value::from("web-1, web-2"))
    );
    let features = rows(&substitute(&sql_of("p95 per feature"), &all, from, to, 60), "p95");
    let names: std::collections::BTreeSet<&str> = features.iter().filter_map(|r| r["feature"].as_str()).collect();
    assert_eq!(names, ["(no feature)", "cards", "checkout"].into());
    let picked_features = rows(
        &substitute(&sql_of("Average duration per feature"), &picked, from, to, 60),
        "avg",
    );
    assert!(
        picked_features.iter().all(|r| r["feature"] == "cards"),
        "the filters apply"
    );
    assert_eq!(picked_features.len(), 30, "one point per minute of the series picked");
}
