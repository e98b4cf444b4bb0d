//! Performance problems over time, in stores written point by point with
//! exact kept traces: a problem's first seen outlives its kept traces (a
//! problem seen two weeks ago is not "new" this week, in `kuroko query
//! problems` and in the weekly email, after retention removed the traces
//! that showed it; one seen only this week is), and a query called many
//! more times per run than the week before is found from the segment
//! counters while cheap or thinly sampled growth is not; the morning digest
//! lists the problems first seen on its day, each linked to its page, in
//! its text, HTML and Slack forms, and says nothing of them on a day without
//! new ones. Every test runs on SQLite
//! and on ClickHouse (`sqlite::<test>`, `clickhouse::<test>`;
//! `support/stores.rs`).

#[macro_use]
#[path = "support/stores.rs"]
mod stores;
use stores::{Kind, TestStore};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kuroko_reporter::analysis::Analysis;
use kuroko_reporter::api::{self, query::Question};
use kuroko_reporter::app::App;
use kuroko_reporter::deliver::schedule::{Report, Schedule, ScheduleConfig};
use kuroko_reporter::deliver::{write_preview, DeliveryConfig, DigestDelivery, Settings};
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::report::{mail, webhook};
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::{Batch, CounterPoint, Filter, HistogramPoint, SeriesKey, TracePoint};

const DAY: i64 = 1_440;
/// Monday 2026-11-02 00:00 UTC: ISO week 2026-W45 starts.
const WEEK_START: i64 = 20_759 * DAY;
const WEEK: &str = "2026-W45";
const BASE_URL: &str = "https://kuroko.example.com";

const OWNERS: &str = r#"
[teams.shop]
[features.orders]
team = "shop"
patterns = [{ service = "shop", transaction = "*" }]
"#;

const EXPORT: &str = "GET /orders/{id}/export";
const REPORT: &str = "GET /reports/{id}";

fn owners() -> Owners {
    Owners::parse(OWNERS, "owners.toml").unwrap()
}

fn key(transaction: &str) -> SeriesKey {
    SeriesKey {
        service: "shop".into(),
        host: "web-1".into(),
        transaction: transaction.into(),
        feature: String::new(),
        kind: "web".into(),
        environment: String::new(),
    }
}

/// One kept run of `transaction` at `minute` lasting `duration_ms`, with
/// `spans` below its root (kind, statement, start and duration in ms),
/// and the minute's histogram counting it.
fn run(transaction: &str, minute: i64, duration_ms: u64, spans: &[(&str, &str, u64, u64)]) -> Batch {
    let ms = 1_000_000u64;
    let start = minute as u64 * 60_000_000_000;
    let root_id = "00000000000000ff";
    let mut json = vec![serde_json::json!({
        "name": transaction, "kind": "web", "span_id": root_id, "start": start,
        "duration_ns": duration_ms * ms, "attributes": {},
    })];
    for (i, (kind, statement, offset, duration)) in spans.iter().enumerate() {
        json.push(serde_json::json!({
            "name": statement, "kind": kind, "span_id": format!("{i:016x}"), "parent": root_id,
            "start": start + offset * ms, "duration_ns": duration * ms,
            "attributes": { "db.statement": statement },
        }));
    }
    let mut histogram = Histogram::empty();
    histogram.record(duration_ms as f64 / 1e3).unwrap();
    Batch {
        histograms: vec![HistogramPoint {
            key: Arc::new(key(transaction)),
            minute,
            histogram,
        }],
        traces: vec![TracePoint {
            key: key(transaction),
            trace_id: format!("{:032x}", minute as u64 * 1_000 + spans.len() as u64),
            start,
            duration: duration_ms as f64 / 1e3,
            spans: serde_json::Value::Array(json).to_string(),
        }],
        ..Batch::default()
    }
}

/// A run with an N+1: eight order lines read one by one, 60 ms each.
fn n_plus_one(minute: i64) -> Batch {
    let spans: Vec<(&str, &str, u64, u64)> = (0..8)
        .map(|i| ("database", "SELECT * FROM order_lines WHERE order_id = 7", i * 100, 60))
        .collect();
    run(EXPORT, minute, 1_000, &spans)
}

/// A run one query takes 80% of.
fn dominant(minute: i64) -> Batch {
    run(
        REPORT,
        minute,
        1_000,
        &[("database", "SELECT sum(total) FROM orders", 0, 800)],
    )
}

fn settings() -> Settings {
    Settings {
        schedule: Schedule::from_config(&ScheduleConfig {
            time_zone: "UTC".into(),
            weekly: "MON 08:00".into(),
            digest: "08:30".into(),
        })
        .unwrap(),
        owners: owners(),
        smtp: None,
        digest: DigestDelivery::default(),
        base_url: BASE_URL.into(),
        alerts: Vec::new(),
        mail_retry: mail::Retry {
            attempts: 1,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
        webhook_retry: webhook::Retry {
            attempts: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            pacing: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
        },
        max_rounds: 1,
        delivery: DeliveryConfig::default(),
        problems: Default::default(),
    }
}

/// A fresh folder for previews.
fn folder(name: &str, kind: Kind) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-{name}-{}-{}", kind.name(), std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// RFC 3339 of a unix minute.
fn at(minute: i64) -> String {
    jiff::Timestamp::from_second(minute * 60).unwrap().to_string()
}

/// `runs` runs of `transaction` of 1 s each at `minute`, each calling every
/// segment of `segments` (kind, name, calls a run, seconds a call), as the
/// agent's minute counters say.
fn counted(transaction: &str, minute: i64, runs: u64, segments: &[(&str, &str, f64, f64)]) -> Batch {
    let key = Arc::new(key(transaction));
    let mut histogram = Histogram::empty();
    for _ in 0..runs {
        histogram.record(1.0).unwrap();
    }
    let mut counters = Vec::new();
    for (kind, name, calls, seconds) in segments {
        let labels = format!("kuroko.segment.kind={kind},kuroko.segment.name={name}");
        for (counter, value) in [
            ("kuroko.segment.calls", calls * runs as f64),
            ("kuroko.segment.duration", calls * seconds * runs as f64),
            ("kuroko.segment.exclusive_duration", calls * seconds * runs as f64),
        ] {
            counters.push(CounterPoint {
                key: key.clone(),
                minute,
                name: counter.into(),
                labels: labels.clone(),
                value,
            });
        }
    }
    Batch {
        histograms: vec![HistogramPoint { key, minute, histogram }],
        counters,
        ..Batch::default()
    }
}

/// The digest of `day` as written by `kuroko report digest --dry-run`:
/// its text, HTML and first Slack message.
fn digest_preview(store: &TestStore, day: &str, kind: Kind) -> (String, String, serde_json::Value) {
    let dir = folder(&format!("problems-digest-{day}"), kind);
    write_preview(&**store, &settings(), Report::Digest, None, day.parse().unwrap(), &dir).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let out = (
        read("digest.txt"),
        read("digest.html"),
        serde_json::from_str(&read("slack-1.json")).unwrap(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

suite! {
    #[test]
    fn the_digest_lists_the_problems_first_seen_on_its_day_with_their_links(kind: Kind) {
        let store = TestStore::open(kind, "problems-digest");
        // Tuesday: the N+1 shows. Wednesday: it again, and a slow query for the first time.
        let (tuesday, wednesday) = (WEEK_START + DAY, WEEK_START + 2 * DAY);
        store.write(&n_plus_one(tuesday + 600)).unwrap();
        store.write(&n_plus_one(wednesday + 600)).unwrap();
        store.write(&dominant(wednesday + 605)).unwrap();
        let owners = owners();
        let problems = Analysis::new(&*store, &owners)
            .problems(&kuroko_reporter::analysis::Scope::window(wednesday, wednesday + DAY))
            .unwrap();
        let fresh = problems.groups.iter().find(|g| g.transaction == REPORT).expect("the slow query");
        let again = problems.groups.iter().find(|g| g.transaction == EXPORT).expect("the N+1");
        let link = format!(
            "{BASE_URL}/problems/{}?since=2026-11-04T00%3A00%3A00Z&until=2026-11-05T00%3A00%3A00Z",
            fresh.id
        );

        let (text, html, slack) = digest_preview(&store, "2026-11-04", kind);
        assert!(text.contains("Performance problems new yesterday (1):"), "{text}");
        assert!(
            text.contains("- Slow query dominating in GET /reports/{id} (shop): SELECT sum(total) FROM orders"),
            "{text}"
        );
        assert!(text.contains("costs 800 ms a run"), "{text}");
        assert!(text.contains(&link), "{link} in {text}");
        assert!(!text.contains(&again.id) && !text.contains("order_lines"), "seen the day before: {text}");
        assert!(html.contains("Performance problems new yesterday"), "{html}");
        assert!(html.contains(&format!("href=\"{}\"", link.replace('&', "&amp;"))), "{link} in {html}");
        assert!(!html.contains("order_lines"), "{html}");
        let slack_text = slack.to_string();
        assert!(slack_text.contains("Performance problems new yesterday"), "{slack_text}");
        assert!(slack_text.contains(&format!("<{}|", link.replace('&', "&amp;"))), "{link} in {slack_text}");
        assert!(!slack_text.contains("order_lines"), "{slack_text}");

        // Tuesday's digest lists the N+1, new then; Thursday's, no section.
        let (text, ..) = digest_preview(&store, "2026-11-03", kind);
        assert!(text.contains("N+1 queries in GET /orders/{id}/export (shop): 8 × SELECT * FROM order_lines"), "{text}");
        let (text, html, slack) = digest_preview(&store, "2026-11-05", kind);
        assert!(!text.contains("Performance problems"), "{text}");
        assert!(!html.contains("Performance problems"), "{html}");
        assert!(!slack.to_string().contains("Performance problems"), "{slack}");
    }

    #[test]
    fn a_query_called_many_more_times_a_run_than_the_week_before_is_found_and_cheap_growth_is_not(kind: Kind) {
        let store = TestStore::open(kind, "problems-growth");
        // Ten hours a week, 20 runs each: 200 runs in each week.
        for hour in 0..10 {
            for (week, report_rows, price, stock) in [(-1, 1.0, 20.0, 1.0), (0, 12.0, 25.0, 3.0)] {
                let minute = WEEK_START + week * 7 * DAY + 2 * DAY + hour * 60;
                // The planted growth: one query a run, then twelve, 50 ms each.
                store
                    .write(&counted(EXPORT, minute, 20, &[("database", "SELECT report_rows WHERE id = 7", report_rows, 0.05)]))
                    .unwrap();
                // Clean: a cheap query 20 → 25 a run (a quarter more), another
                // 1 → 3 (three times, but 2 ms a run).
                store
                    .write(&counted(
                        "GET /products",
                        minute,
                        20,
                        &[("database", "SELECT price", price, 0.001), ("database", "SELECT stock", stock, 0.001)],
                    ))
                    .unwrap();
                // Clean: the same growth as the export's on too few runs (2 an hour).
                store
                    .write(&counted("GET /rare", minute, 2, &[("external", "GET partner/rates", report_rows, 0.05)]))
                    .unwrap();
            }
        }
        let app = App::new(store.shared(), Arc::new(owners()), String::new(), None);
        let window = [("since".to_owned(), at(WEEK_START)), ("until".to_owned(), at(WEEK_START + 7 * DAY))];
        let (_, answer) = api::answer_now(&app, Question::Problems, &window).unwrap();
        let groups = answer["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "only the export's growth: {answer}");
        let grew = &groups[0];
        assert_eq!(grew["pattern"], "calls_per_run_grew", "{grew}");
        assert_eq!(grew["title"], "More queries per run", "{grew}");
        assert_eq!(grew["transaction"], EXPORT, "{grew}");
        assert_eq!(grew["statement"], "SELECT report_rows WHERE id = ?", "{grew}");
        let number = |field: &str| grew[field].as_f64().unwrap_or_else(|| panic!("{field} in {grew}"));
        let close = |field: &str, expected: f64| {
            let got = number(field);
            assert!((got - expected).abs() < 1e-9 * expected.max(1.0), "{field}: {got}, expected {expected}");
        };
        close("count_per_run", 12.0);
        close("baseline_count_per_run", 1.0);
        close("seconds_per_run", 12.0 * 0.05);
        close("cost_per_run", 11.0 * 0.05);
        close("cost_share", 0.55);
        // 200 runs in the week, each 0.55 s slower for the added calls.
        close("seconds_per_day", 0.55 * 200.0 / 7.0);
        assert_eq!(grew["new"], true, "{grew}");

        // The same week against itself has nothing to say: the week before it
        // calls the query once a run.
        let before = [("since".to_owned(), at(WEEK_START - 7 * DAY)), ("until".to_owned(), at(WEEK_START))];
        let (_, answer) = api::answer_now(&app, Question::Problems, &before).unwrap();
        assert_eq!(answer["groups"].as_array().unwrap().len(), 0, "{answer}");
    }


    #[test]
    fn a_problem_seen_before_its_traces_were_removed_is_not_new(kind: Kind) {
        let store = TestStore::open(kind, "problems-first-seen");
        let owners = owners();
        // Two weeks before: the N+1 shows, and the reporter of the time
        // records it (as `kuroko serve` does every hour).
        let old = WEEK_START - 13 * DAY + 720;
        store.write(&n_plus_one(old)).unwrap();
        let recorded = Analysis::new(&*store, &owners).record_sightings(old - 720, old + 720).unwrap();
        assert_eq!(recorded, 1, "the old N+1 recorded");
        // This week: the N+1 again, and a slow query never seen before.
        let now = WEEK_START + 2 * DAY + 720;
        store.write(&n_plus_one(now)).unwrap();
        store.write(&dominant(now + 5)).unwrap();
        // Two days later, retention removes the old trace: kept traces last 8 days.
        store.roll_up(Retention::default(), now + 2 * DAY);
        let left = store.slowest_traces(&Filter::default(), old - 60, old + 60, 10).unwrap();
        assert!(left.is_empty(), "retention removed the old trace: {left:?}");

        let app = App::new(store.shared(), Arc::new(owners), String::new(), None);
        let window = [("since".to_owned(), at(WEEK_START)), ("until".to_owned(), at(WEEK_START + 7 * DAY))];
        let (_, answer) = api::answer_now(&app, Question::Problems, &window).unwrap();
        let groups = answer["groups"].as_array().unwrap();
        let by_transaction = |transaction: &str| {
            groups
                .iter()
                .find(|g| g["transaction"] == transaction)
                .unwrap_or_else(|| panic!("no problem in {transaction}: {answer}"))
        };
        let again = by_transaction(EXPORT);
        assert_eq!(again["new"], false, "seen two weeks ago: {again}");
        assert_eq!(again["first_seen"], old as u64 * 60_000_000_000, "{again}");
        let fresh = by_transaction(REPORT);
        assert_eq!(fresh["new"], true, "seen only this week: {fresh}");
        assert_eq!(fresh["first_seen"], (now + 5) as u64 * 60_000_000_000, "{fresh}");
        let table = api::render::table(Question::Problems, &answer);
        assert_eq!(groups.len(), 2, "{table}");

        // The weekly email says one new problem, not two.
        let dir = folder("problems-weekly", kind);
        let written = write_preview(&*store, &settings(), Report::Weekly, Some("shop"), WEEK.parse().unwrap(), &dir)
            .unwrap();
        let text = std::fs::read_to_string(written.iter().find(|p| p.ends_with("report.txt")).unwrap()).unwrap();
        assert!(text.contains("1 new performance problem, costing"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
