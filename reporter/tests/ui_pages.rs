//! The web UI's pages rendered from a store: every user-controlled string
//! (service, transaction, feature, host, error message, span name, dashboard
//! title) is escaped on every page, charts carry one point per step with
//! data, filters change what a table lists, and the token gate and `/login`
//! behave (over HTTP, against the real router).

use std::sync::{Arc, OnceLock};

use kuroko_reporter::app::App;
use kuroko_reporter::config::Secret;
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, CounterPoint, ErrorPoint, HistogramPoint, SeriesKey, Store, TracePoint};
use kuroko_reporter::ui::dashboards::{self, Dashboards};
use kuroko_reporter::ui::{pages, Params};

/// The present, for the pages (unix minutes): 2024-01-01 12:00 UTC.
const NOW: i64 = 28_401_840;
const HOSTILE_SERVICE: &str = "<svc>\"'&";
const HOSTILE_TRANSACTION: &str = "GET /<script>alert(1)</script>\" onmouseover=\"x";
const HOSTILE_FEATURE: &str = "<b>feat</b>";
const HOSTILE_HOST: &str = "<img src=x onerror=alert(2)>";
const HOSTILE_MESSAGE: &str = "<script>boom()</script>";
const HOSTILE_SPAN: &str = "<script>span()</script>";
const CALM_SERVICE: &str = "calm";
const CALM_TRANSACTION: &str = "GET /calm";
/// An error of 29 December 2023 only, three days before `NOW`: what a
/// digest of that day links to.
const OLD_MESSAGE: &str = "the ledger row was already settled";
const OLD_MINUTE: i64 = NOW - 3 * 1_440 + 600;

fn key(service: &str, transaction: &str, feature: &str, host: &str) -> SeriesKey {
    SeriesKey {
        service: service.into(),
        host: host.into(),
        transaction: transaction.into(),
        feature: feature.into(),
        kind: "web".into(),
        environment: "production".into(),
    }
}

/// Two hours of one run a second for the hostile series and a calm one,
/// each minute with outcomes, a segment, and (hostile only) an error and a trace.
fn batch() -> Batch {
    let hostile = key(HOSTILE_SERVICE, HOSTILE_TRANSACTION, HOSTILE_FEATURE, HOSTILE_HOST);
    let calm = key(CALM_SERVICE, CALM_TRANSACTION, "", "calm-0");
    let mut batch = Batch::default();
    for minute in NOW - 120..NOW {
        for (key, base) in [(&hostile, 0.2), (&calm, 0.01)] {
            let mut histogram = Histogram::empty();
            for i in 0..60 {
                histogram.record(base * (1.0 + f64::from(i) / 30.0)).unwrap();
            }
            batch.histograms.push(HistogramPoint {
                key: key.clone().into(),
                minute,
                histogram,
            });
            for (outcome, value) in [("ok", 59.0), ("5xx", 1.0)] {
                batch.counters.push(CounterPoint {
                    key: key.clone().into(),
                    minute,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: format!("kuroko.outcome={outcome}"),
                    value,
                });
            }
            batch.counters.push(CounterPoint {
                key: key.clone().into(),
                minute,
                name: "kuroko.segment.exclusive_duration".into(),
                labels: format!("kuroko.segment.kind=database,kuroko.segment.name={HOSTILE_SPAN}"),
                value: base * 20.0,
            });
        }
        if minute == NOW - 1 {
            batch.errors.push(ErrorPoint {
                key: calm.clone(),
                minute: OLD_MINUTE,
                error_type: "SettledTwice".into(),
                message: OLD_MESSAGE.into(),
                location: "src/ledger.rs:7".into(),
                count: 3,
                last_seen: (OLD_MINUTE as u64) * 60_000_000_000,
                fingerprint: String::new(),
                stacktrace: String::new(),
                trace_id: String::new(),
            });
        }
        batch.errors.push(ErrorPoint {
            key: hostile.clone(),
            minute,
            error_type: "<Err>".into(),
            message: HOSTILE_MESSAGE.into(),
            location: "src/<x>.rs:1".into(),
            count: 2,
            last_seen: (minute as u64) * 60_000_000_000,
            fingerprint: String::new(),
            stacktrace: String::new(),
            trace_id: String::new(),
        });
    }
    let start = ((NOW - 30) as u64) * 60_000_000_000;
    let spans = serde_json::json!([
        { "name": HOSTILE_TRANSACTION, "kind": "server", "start": start, "duration_ns": 900_000_000u64 },
        { "name": HOSTILE_SPAN, "kind": "database", "start": start + 100_000_000, "duration_ns": 500_000_000u64 },
    ]);
    batch.traces.push(TracePoint {
        key: hostile,
        trace_id: "0123456789abcdef0123456789abcdef".into(),
        start,
        duration: 0.9,
        spans: spans.to_string(),
    });
    batch
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-pages");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("kuroko.db")).unwrap();
        store.write(&batch()).unwrap();
        store.flush().unwrap();
        App::new(Arc::new(store), Arc::new(Owners::empty()), String::new(), None)
    })
}

fn params(query: &str) -> Params {
    Params::parse(Some(query)).unwrap()
}

/// The page holds no markup from the data: no raw `<script>` but the UI's
/// own, no broken-out attribute, and the names shown escaped.
fn assert_escaped(page: &str, what: &str) {
    let own_scripts = page.matches("<script src=\"/static/ui.js\" defer></script>").count();
    assert_eq!(page.matches("<script").count(), own_scripts, "{what}: a raw <script>");
    for raw in ["<svc>", "<b>feat</b>", "<img", "\" onmouseover=\"", "<Err>", "<x>"] {
        assert!(!page.contains(raw), "{what}: {raw} unescaped");
    }
}

fn ok(result: Result<maud::Markup, kuroko_reporter::ui::PageError>) -> String {
    result.unwrap().into_string()
}

#[test]
fn every_page_escapes_hostile_names() {
    let app = app();
    let overview = ok(pages::overview(app, &params("since=1d"), NOW));
    assert_escaped(&overview, "overview");
    assert!(
        overview.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is shown, escaped"
    );
    // Links carry it percent-encoded.
    assert!(
        overview.contains("transaction=GET+%2F%3Cscript%3Ealert%281%29"),
        "{overview}"
    );

    let feature = ok(pages::feature(app, HOSTILE_FEATURE, &params("since=1d"), NOW));
    assert_escaped(&feature, "feature");
    assert!(feature.contains("/features/%3Cb%3Efeat%3C%2Fb%3E"));

    let query = format!(
        "since=1d&{}",
        serde_urlencoded::to_string([("service", HOSTILE_SERVICE), ("transaction", HOSTILE_TRANSACTION)]).unwrap()
    );
    let transaction = ok(pages::transaction(app, &params(&query), NOW));
    assert_escaped(&transaction, "transaction");
    assert!(
        transaction.contains("&lt;script&gt;span()&lt;/script&gt;"),
        "the span is in the waterfall"
    );
    assert!(transaction.contains(r#"data-series="waterfall" data-segments="1""#));

    let errors = ok(pages::errors(app, &params("since=1d"), NOW));
    assert_escaped(&errors, "errors");
    assert!(errors.contains("&lt;script&gt;boom()&lt;/script&gt;"));
    let group = app
        .analysis()
        .errors(&params("since=1d").scope("1d", NOW).unwrap())
        .unwrap();
    let detail = ok(pages::error_group(app, &group[0].id, &params("since=1d"), NOW));
    assert_escaped(&detail, "error group");

    let regressions = ok(pages::regressions(app, &params("since=1h"), NOW));
    assert_escaped(&regressions, "regressions");
    // Nothing says "0 not judged" under a heading of what was not judged.
    assert!(regressions.contains("judged unchanged."), "{regressions}");
    assert!(!regressions.contains(">0 not judged"), "{regressions}");

    // The hostile trace's one query is 55% of its run: a dominant query.
    let problems = ok(pages::problems(app, &params("since=1d"), NOW));
    assert_escaped(&problems, "problems");
    assert!(problems.contains("Slow query dominating"), "{problems}");
    assert!(problems.contains("&lt;script&gt;span()&lt;/script&gt;"), "{problems}");
    let found = app
        .analysis()
        .problems(&params("since=1d").scope("1d", NOW).unwrap())
        .unwrap();
    let problem = ok(pages::problem_group(app, &found.groups[0].id, &params("since=1d"), NOW));
    assert_escaped(&problem, "problem");
    assert!(
        problem.contains("segment offending"),
        "the query is marked in the example: {problem}"
    );

    let text = format!(
        "title = {title:?}\n[[panels]]\ntitle = {title:?}\nmetric = \"p95\"\nchart = \"line\"\nfilter = {{ transaction = {txn:?} }}\n\
         [[panels]]\ntitle = \"t\"\nmetric = \"p95\"\nchart = \"table\"\ngroup = \"transaction\"\n\
         [[panels]]\ntitle = \"b\"\nmetric = \"average\"\nchart = \"bar\"\ngroup = \"transaction\"\n",
        title = HOSTILE_MESSAGE,
        txn = HOSTILE_TRANSACTION
    );
    let dashboard = dashboards::parse(&text, "x.toml", "x", &Owners::empty()).unwrap();
    let broken = dashboards::parse(
        &format!("title = {HOSTILE_MESSAGE:?}\n"),
        "<b>.toml",
        "b",
        &Owners::empty(),
    );
    let found = Dashboards {
        dashboards: vec![dashboard],
        problems: broken.unwrap_err(),
    };
    let list = pages::dashboard_list(&found, &params("")).into_string();
    assert_escaped(&list, "dashboard list");
    assert!(list.contains("&lt;b&gt;.toml:1:1: no panels"), "{list}");
    let page = ok(pages::dashboard(app, &found, "x", &params("since=1d"), NOW));
    assert_escaped(&page, "dashboard");
}

#[test]
fn charts_have_a_point_per_step_with_runs() {
    let app = app();
    // Asked during the last minute with data: a window without `until` ends
    // with the current minute.
    let now = NOW - 1;
    // One hour at minute steps, runs in every minute: 60 points per line.
    let feature = ok(pages::feature(app, HOSTILE_FEATURE, &params("since=1h"), now));
    for series in ["average", "p95", "throughput", "error_rate"] {
        assert!(
            feature.contains(&format!(r#"data-series="{series}" data-points="60""#)),
            "{series} in {feature}"
        );
    }
    assert!(
        feature.contains(r#"<p class="partial-note">"#),
        "a window ending now says its last minute is partial"
    );
    let ended = ok(pages::feature(app, HOSTILE_FEATURE, &params("since=2h&until=1h"), now));
    assert!(!ended.contains("partial-note"), "a window that ended is whole");
    let response_time = feature.split(r#"id="response-time""#).nth(1).unwrap();
    let response_time = response_time.split("</section>").next().unwrap();
    assert_eq!(response_time.matches("<circle").count(), 120, "average and p95");
    // Two hours of data in a day's window at hour steps: 2 points with runs.
    let feature = ok(pages::feature(app, HOSTILE_FEATURE, &params("since=1d"), now));
    assert!(feature.contains(r#"data-series="p95" data-points="2""#));
    // The latency distribution has bars, and marks its percentiles.
    let query = serde_urlencoded::to_string([
        ("since", "1h"),
        ("service", CALM_SERVICE),
        ("transaction", CALM_TRANSACTION),
    ])
    .unwrap();
    let transaction = ok(pages::transaction(app, &params(&query), now));
    assert!(transaction.contains(r#"data-series="distribution""#));
    assert!(transaction.contains(r#"data-mark="p95""#));
    for series in ["p50", "p95", "p99"] {
        assert!(transaction.contains(&format!(r#"data-series="{series}" data-points="60""#)));
    }
}

#[test]
fn a_service_filter_narrows_the_tables_and_links_keep_the_filters() {
    let app = app();
    let all = ok(pages::overview(app, &params("since=1d"), NOW));
    assert_eq!(all.matches("<tr data-service=").count(), 2, "2 services");
    assert_eq!(all.matches("<tr data-transaction=").count(), 2, "2 transactions");
    let calm = ok(pages::overview(app, &params("since=1d&service=calm"), NOW));
    assert_eq!(calm.matches("<tr data-service=").count(), 1);
    assert!(calm.contains(r#"<tr data-service="calm""#));
    assert_eq!(calm.matches("<tr data-transaction=").count(), 1);
    assert!(calm.contains(r#"<tr data-transaction="GET /calm" data-service="calm""#));
    // The window selector keeps the filter; the chip removes it.
    assert!(
        calm.contains(r#"href="/?since=7d&amp;service=calm" data-window="7d""#),
        "{calm}"
    );
    assert!(calm.contains(r#"href="/?since=1d" title="remove the service filter""#));
    // Downloads ask the API the same question.
    assert!(calm.contains("/api/v1/slowest?since=1d&amp;service=calm&amp;group=feature&amp;format=csv"));
}

#[test]
fn bad_filters_are_refused_with_what_to_write() {
    let app = app();
    let error = pages::overview(app, &params("since=yesterday"), NOW)
        .unwrap_err()
        .to_string();
    assert!(error.contains("`yesterday` is not a time"), "{error}");
    let error = pages::transaction(app, &params("since=1d"), NOW)
        .unwrap_err()
        .to_string();
    assert!(error.contains("choose a transaction"), "{error}");
    let error = pages::overview(app, &params("by=fastest"), NOW)
        .unwrap_err()
        .to_string();
    assert!(error.contains("by=fastest is not one of"), "{error}");
    let missing = pages::error_group(app, "nope", &params(""), NOW)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no error group nope"), "{missing}");
}

/// The router over HTTP with a token: pages redirect to `/login`, which
/// checks the token and sets an HttpOnly, SameSite=Strict cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_require_the_token_and_login_sets_the_cookie() {
    let base = app();
    let app = App::new(
        base.store.clone(),
        base.owners.clone(),
        String::new(),
        Some(Secret::new("s3cret")),
    );
    let router = kuroko_reporter::ui::router(app, std::path::PathBuf::from("/nonexistent"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{address}{path}");

    let refused = client.get(url("/errors?since=1d")).send().await.unwrap();
    assert_eq!(refused.status(), 303);
    assert_eq!(refused.headers()["location"], "/login?next=%2Ferrors%3Fsince%3D1d");
    let css = client.get(url("/static/ui.css")).send().await.unwrap();
    assert_eq!(css.status(), 200, "static files need no token");

    let wrong = client
        .post(url("/login"))
        .body("token=guess&next=%2Ferrors")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .post(url("/login"))
        .body("token=s3cret&next=%2F%2Fevil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(right.headers()["location"], "/", "no redirect off the site");
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("kuroko_token=s3cret;"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let with_cookie = client
        .get(url("/errors?since=1d"))
        .header("cookie", "other=1; kuroko_token=s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    assert!(with_cookie.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let with_header = client.get(url("/")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(with_header.status(), 200);
    let bad_cookie = client
        .get(url("/"))
        .header("cookie", "kuroko_token=s3cre")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_cookie.status(), 303);
}

/// Every page's JSON and CSV download links answer from the API: the UI and
/// `/api/v1` agree on questions and parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_download_link_answers() {
    let app = app().clone();
    let router = kuroko_reporter::ui::router(app.clone(), std::path::PathBuf::from("/nonexistent"))
        .merge(kuroko_reporter::api::router(app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::new();
    let minute = |m: i64| {
        jiff::Timestamp::from_second(m * 60)
            .unwrap()
            .to_string()
            .replace(':', "%3A")
    };
    let window = format!("since={}&until={}", minute(NOW - 1_440), minute(NOW + 60));
    let mut checked = 0;
    for page in ["/", "/errors", "/problems", "/regressions", "/features/feat"] {
        let html = client
            .get(format!("http://{address}{page}?{window}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let links: Vec<String> = html
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|href| href.starts_with("/api/v1/"))
            .map(|href| href.replace("&amp;", "&"))
            .collect();
        assert!(!links.is_empty(), "{page} offers downloads");
        for link in links {
            let response = client.get(format!("http://{address}{link}")).send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, 200, "{page}: {link} answered {body}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} links");
}

/// Percentiles from an SDK's explicit buckets are marked `≈` wherever the
/// overview and the transaction page show them, with what the mark means;
/// the latency distribution says its bars inside a bucket are interpolated.
/// The agent's exact percentiles carry no mark.
#[test]
fn estimated_percentiles_are_marked_on_the_overview_and_the_transaction_page() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-pages-estimates");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("kuroko.db")).unwrap();
    let sdk = key("py-shop", "GET /orders", "", "py-1");
    let explicit = Histogram::from_explicit(
        &[0.01, 0.05, 0.1],
        &[10, 70, 20, 0],
        100,
        Some(4.0),
        Some((0.004, 0.09)),
    )
    .unwrap();
    store
        .write(&Batch {
            histograms: vec![
                HistogramPoint {
                    key: sdk.into(),
                    minute: NOW - 5,
                    histogram: explicit,
                },
                HistogramPoint {
                    key: key(CALM_SERVICE, CALM_TRANSACTION, "", "calm-0").into(),
                    minute: NOW - 5,
                    histogram: {
                        let mut h = Histogram::empty();
                        h.record(0.02).unwrap();
                        h
                    },
                },
            ],
            ..Batch::default()
        })
        .unwrap();
    store.flush().unwrap();
    let app = App::new(Arc::new(store), Arc::new(Owners::empty()), String::new(), None);
    let overview = ok(pages::overview(&app, &params("since=1h"), NOW));
    assert!(overview.contains("≈"), "the overview marks the estimate");
    assert!(overview.contains("an estimate: interpolated within the explicit bucket"));
    let page = ok(pages::transaction(
        &app,
        &params("service=py-shop&transaction=GET%20/orders&since=1h"),
        NOW,
    ));
    assert!(
        page.contains("<dt>p95</dt><dd><span class=\"estimate\""),
        "the transaction page marks its percentiles"
    );
    assert!(page.contains("an interpolation, not a measurement"));
    let calm = ok(pages::transaction(
        &app,
        &params(&format!("service={CALM_SERVICE}&transaction=GET%20/calm&since=1h")),
        NOW,
    ));
    assert!(!calm.contains("class=\"estimate\""), "exact percentiles carry no mark");
}

/// What a digest's links carry (`since`/`until` of its day, RFC 3339, as
/// `report::build` writes them) opens that day and its group whenever the
/// link is followed; the default window (the last day) would not hold them.
#[test]
fn a_digests_window_opens_its_day_and_its_group_days_later() {
    let app = app();
    let day = "since=2023-12-29T00%3A00%3A00Z&until=2023-12-30T00%3A00%3A00Z";
    let list = ok(pages::errors(app, &params(day), NOW));
    assert!(list.contains(OLD_MESSAGE), "{list}");
    let default = ok(pages::errors(app, &params(""), NOW));
    assert!(!default.contains(OLD_MESSAGE), "not in the last day");
    let groups = app.analysis().errors(&params(day).scope("1d", NOW).unwrap()).unwrap();
    let id = &groups.iter().find(|g| g.error_type == "SettledTwice").unwrap().id;
    let detail = ok(pages::error_group(app, id, &params(day), NOW));
    assert!(detail.contains(OLD_MESSAGE), "{detail}");
    // Without the window the page says the group is not in the last day
    // (why links carry it) and shows it from its history, with its day.
    let outside = ok(pages::error_group(app, id, &params(""), NOW));
    assert!(outside.contains("No occurrence of this group between"), "{outside}");
    assert!(outside.contains(OLD_MESSAGE), "{outside}");
    assert!(
        outside.contains("since=2023-12-29&amp;until=2023-12-30"),
        "its last day: {outside}"
    );
}

/// The repository's `dashboards/fleet-overview.toml` over the last day.
fn fleet_overview() -> String {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let found = dashboards::load(&folder, &Owners::empty());
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    ok(pages::dashboard(
        app(),
        &found,
        "fleet-overview",
        &params("since=1d"),
        NOW,
    ))
}

/// The fleet overview's table of the slowest transactions by p95 has one
/// p95 column: the panel's metric is not repeated among the columns every
/// table adds (runs, average, p95).
#[test]
fn the_fleet_overview_table_shows_p95_once() {
    let page = fleet_overview();
    let table = page
        .split(r#"<table class="rows" data-series="p95">"#)
        .nth(1)
        .expect("the p95 table");
    let head = table.split("</thead>").next().unwrap();
    let heads: Vec<&str> = head
        .split("<th")
        .skip(1)
        .filter(|th| th.starts_with(['>', ' ']))
        .filter_map(|th| th.split('>').nth(1)?.split('<').next())
        .collect();
    assert_eq!(heads, ["Transaction", "p95", "Runs", "Average"], "{head}");
    let first_row = table.split("<tbody>").nth(1).unwrap().split("</tr>").next().unwrap();
    assert_eq!(first_row.matches("<td").count(), heads.len(), "{first_row}");
}

/// A series with one point in its window (the feature's runs stopped a
/// minute into the hour) draws that point as a visible marker, on the
/// chart and in the overview's trend, while the numbers above it are set.
#[test]
fn a_series_of_one_point_is_drawn() {
    let app = app();
    // An hour's window whose only minute with runs is its first.
    let now = NOW + 58;
    let feature = ok(pages::feature(app, HOSTILE_FEATURE, &params("since=1h"), now));
    let response_time = feature.split(r#"id="response-time""#).nth(1).unwrap();
    let response_time = response_time.split("</section>").next().unwrap();
    for series in ["average", "p95"] {
        let line = response_time
            .split(&format!(r#"data-series="{series}""#))
            .nth(1)
            .unwrap()
            .split("</g>")
            .next()
            .unwrap();
        assert!(line.starts_with(r#" data-points="1""#), "{series}: {line}");
        assert_eq!(
            line.matches(r#"class="alone""#).count(),
            1,
            "{series}: a marker: {line}"
        );
    }
    let overview = ok(pages::overview(app, &params("since=1h"), now));
    let trend = overview.split(r#"<tr data-service="calm""#).nth(1).unwrap();
    let trend = trend.split("</tr>").next().unwrap();
    assert!(
        trend.contains(r#"data-points="1""#) && trend.contains(r#"<circle class="alone""#),
        "{trend}"
    );
}

/// The fleet overview's p95 per feature is on a log axis, ticks a decade
/// apart at equal distances, so a fast feature beside a slow one does not
/// lie flat on the bottom; each feature keeps its colour from one chart to
/// the next, and no two features share one.
#[test]
fn the_fleet_overviews_latency_chart_is_logarithmic_and_colours_follow_features() {
    let page = fleet_overview();
    let panel = |id: &str| {
        page.split(&format!(r#"id="{id}""#))
            .nth(1)
            .unwrap()
            .split("</section>")
            .next()
            .unwrap()
            .to_owned()
    };
    let p95 = panel("panel-1");
    let axis = p95
        .split(r#"<g class="axis y" data-scale="log">"#)
        .nth(1)
        .expect("a log axis");
    let axis = axis.split("</g>").next().unwrap();
    // (label, y) of each tick.
    let ticks: Vec<(String, f64)> = axis
        .split("<text ")
        .skip(1)
        .map(|t| {
            let y: f64 = t
                .split(r#"y=""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let label = t.split('>').nth(1).unwrap().split('<').next().unwrap().to_owned();
            (label, y)
        })
        .collect();
    let y = |label: &str| {
        ticks
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no tick {label} in {ticks:?}"))
            .1
    };
    // The calm service's ~20 ms and the other's ~500 ms: 10 ms to 1 s.
    let decade = y("10 ms") - y("100 ms");
    assert!(decade > 20.0, "{ticks:?}");
    assert!(
        (y("100 ms") - y("1 s") - decade).abs() < 0.2,
        "a decade each: {ticks:?}"
    );
    // Colours: per feature, the same in the error rate chart, all different.
    let colours = |chart: &str| -> Vec<(String, String)> {
        chart
            .split(r#"<g class="series" data-series=""#)
            .skip(1)
            .map(|g| {
                let key = g.split('"').next().unwrap().to_owned();
                let colour = g
                    .split(r#"stroke=""#)
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_owned();
                (key, colour)
            })
            .collect()
    };
    let mut latency = colours(&p95);
    let mut errors = colours(&panel("panel-2"));
    assert_eq!(latency.len(), 2, "{latency:?}");
    latency.sort();
    errors.sort();
    assert_eq!(latency, errors);
    assert_ne!(latency[0].1, latency[1].1);
}

/// A window that ends now reloads itself every minute, with a toggle that
/// says so, and holds the current minute's runs; a window that ended is
/// not reloaded, and says so.
#[test]
fn a_live_window_refreshes_itself_and_a_past_one_does_not() {
    let app = app();
    // Asked during the last minute with runs.
    let now = NOW - 1;
    let toggle = r#"<p class="refresh" data-refresh="60"><button type="button" aria-pressed="true""#;
    for (page, live) in [
        (ok(pages::overview(app, &params("since=1h"), now)), true),
        (ok(pages::feature(app, HOSTILE_FEATURE, &params("since=1h"), now)), true),
        (ok(pages::errors(app, &params(""), now)), true),
        (ok(pages::overview(app, &params("since=2h&until=1h"), now)), false),
        (
            ok(pages::feature(
                app,
                HOSTILE_FEATURE,
                &params("since=2023-12-29&until=2023-12-30"),
                now,
            )),
            false,
        ),
    ] {
        if live {
            assert_eq!(page.matches(toggle).count(), 1, "{page}");
            assert!(page.contains("auto-refresh: on</button>"));
        } else {
            assert!(!page.contains("data-refresh"), "{page}");
            assert!(page.contains("auto-refresh: off (this window has ended)"));
        }
    }
    // The live window's last point is the current minute, still arriving.
    let feature = ok(pages::feature(app, HOSTILE_FEATURE, &params("since=1h"), now));
    let p95 = feature
        .split(r#"data-series="p95""#)
        .nth(1)
        .unwrap()
        .split("</g>")
        .next()
        .unwrap();
    let last = p95.rsplit("<title>").next().unwrap();
    assert!(last.starts_with("p95 2024-01-01 11:59 UTC"), "{last}");
}

/// A problem page's form records the decision like an error group's and
/// sends the reader back to the problem, whose status then shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_problem_is_resolved_from_its_page() {
    let app = app().clone();
    let id = app
        .analysis()
        .problems(&params("since=1d").scope("1d", NOW).unwrap())
        .unwrap()
        .groups[0]
        .id
        .clone();
    let router = kuroko_reporter::ui::router(app.clone(), std::path::PathBuf::from("/nonexistent"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("http://{address}/problems/{id}/triage?since=1d"))
        .form(&[("action", "resolve")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/problems/{id}?since=1d").as_str()
    );
    let problems = app
        .analysis()
        .problems(&params("since=1d").scope("1d", NOW).unwrap())
        .unwrap();
    let group = problems.groups.iter().find(|g| g.id == id).unwrap();
    assert_eq!(group.triage.status.as_str(), "resolved");
    let page = ok(pages::problem_group(&app, &id, &params("since=1d"), NOW));
    assert!(page.contains("data-status=\"resolved\""), "{page}");
}
