//! The web UI in a real browser: `kuroko serve` on two weeks of synthetic
//! data, driven by Debian's headless Chromium over the DevTools protocol.
//!
//! For each page: it loads with status 200 and without console errors,
//! exceptions or failed loads (Runtime.consoleAPICalled,
//! Runtime.exceptionThrown, Log.entryAdded), its charts hold the expected
//! series and points, and changing a filter (a service, the window
//! selector) changes what its tables list. The token gate is passed the way
//! a person passes it: through `/login`'s form and its cookie; a hostile
//! `next=` after it keeps the browser on the site, and "Sign out" ends the
//! session. Load times are printed, not asserted.
//!
//! The protocol goes over `--remote-debugging-pipe` (NUL-separated JSON on
//! file descriptors 3 and 4, the transport Puppeteer uses by default), so
//! the test needs no WebSocket client: `sh` maps the two descriptors onto
//! the child's standard input and output. Without `chromium` the test
//! fails and says how to install it (tests/run-all.sh does).

use std::path::Path;

use serde_json::json;

#[path = "support/chromium.rs"]
mod chromium;

use chromium::{attributes, serve, text_of, write_store, Browser, TOKEN};

/// The log axis's tick a decade above `label` (`10 ms` → `100 ms`).
fn decade_after(label: &str) -> String {
    match label {
        "10 ms" => "100 ms",
        "100 ms" => "1 s",
        "1 s" => "10 s",
        _ => "100 s",
    }
    .to_owned()
}

#[test]
fn the_ui_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-chromium");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = write_store(&dir);
    // shop-api 2.0 was deployed two days ago (after 1.0, seen from the start).
    let deployed = jiff::Timestamp::now().as_second() / 60 - 2 * 1_440;
    chromium::shop_versions(&store, "", &[("1.0", deployed - 30 * 1_440), ("2.0", deployed)]);
    let (_server, base) = serve(&dir, &store);
    let mut browser = Browser::start(&dir.join("profile"));
    let url = |path: &str| format!("{base}{path}");

    // The token gate: the overview sends to /login; the form sets the cookie and comes back.
    let wall = browser.open(&url("/?since=1d"));
    assert_eq!(browser.eval("location.pathname"), json!("/login"));
    browser.assert_clean("login", wall);
    browser.follow(&format!(
        "document.querySelector('input[name=token]').value = {TOKEN:?}; document.querySelector('form.login').submit()"
    ));
    assert_eq!(browser.eval("location.pathname + location.search"), json!("/?since=1d"));

    // A hostile `next` keeps the reader on the site: a tab in it, which
    // Chromium drops, once made `/\t/evil.example` the other site's
    // `//evil.example`.
    let host = browser.eval("location.host");
    browser.open(&url("/login?next=/%09/evil.example"));
    browser.follow(&format!(
        "document.querySelector('input[name=token]').value = {TOKEN:?}; document.querySelector('form.login').submit()"
    ));
    assert_eq!(browser.eval("location.host"), host);
    assert_eq!(browser.eval("location.pathname"), json!("/"));

    // Overview: both services, all six features, a trend per row.
    let wall = browser.open(&url("/?since=1d"));
    browser.assert_clean("overview", wall);
    // Most time-consuming first: the shop's runs take more time in all.
    let services = attributes(&mut browser, "#services-table tbody tr", "data-service");
    assert_eq!(services, ["shop-api", "billing"]);
    assert_eq!(browser.count("#features-table tbody tr"), 6);
    let trends = attributes(&mut browser, "#services-table [data-series=average]", "data-points");
    assert_eq!(trends.len(), 2);
    assert!(
        trends.iter().all(|n| n.parse::<u32>().unwrap() >= 20),
        "a day of hours: {trends:?}"
    );
    let transactions = attributes(&mut browser, "#transactions tbody tr", "data-service");
    assert!(transactions.contains(&"shop-api".to_owned()) && transactions.contains(&"billing".to_owned()));

    // A window ending now reloads itself every minute, with a toggle that
    // the tab remembers; the reload really comes (made due in 1 s here).
    assert_eq!(text_of(&mut browser, ".refresh button"), ["auto-refresh: on"]);
    let due = browser.eval("Number(document.querySelector('[data-refresh]').dataset.due) - Date.now()");
    let due = due.as_f64().unwrap_or(f64::NAN);
    assert!(
        (50_000.0..=61_000.0).contains(&due),
        "the next reload in a minute: {due} ms"
    );
    browser.eval("document.querySelector('.refresh button').click()");
    assert_eq!(text_of(&mut browser, ".refresh button"), ["auto-refresh: off"]);
    assert_eq!(
        browser.count("[data-refresh][data-due]"),
        0,
        "nothing scheduled when off"
    );
    browser.open(&url("/?since=1d"));
    assert_eq!(
        text_of(&mut browser, ".refresh button"),
        ["auto-refresh: off"],
        "remembered"
    );
    let wall = browser.follow(
        "document.querySelector('[data-refresh]').dataset.refresh = '1'; document.querySelector('.refresh button').click()",
    );
    browser.assert_clean("overview, reloaded by itself", wall);
    assert_eq!(text_of(&mut browser, ".refresh button"), ["auto-refresh: on"]);
    // A window that ended is never reloaded.
    browser.open(&url("/?since=2d&until=1d"));
    assert_eq!(browser.count("[data-refresh]"), 0);
    assert_eq!(
        text_of(&mut browser, ".refresh"),
        ["auto-refresh: off (this window has ended)"]
    );

    // A service filter: only billing's rows remain.
    let wall = browser.open(&url("/?since=1d&service=billing"));
    browser.assert_clean("overview, billing", wall);
    assert_eq!(
        attributes(&mut browser, "#services-table tbody tr", "data-service"),
        ["billing"]
    );
    let transactions = attributes(&mut browser, "#transactions tbody tr", "data-service");
    assert!(
        !transactions.is_empty() && transactions.iter().all(|s| s == "billing"),
        "{transactions:?}"
    );
    // The window selector keeps the filter and changes the window.
    browser.follow("document.querySelector('[data-window=\"7d\"]').click()");
    assert_eq!(browser.eval("location.search"), json!("?since=7d&service=billing"));
    assert_eq!(text_of(&mut browser, ".windows a.active"), ["7d"]);
    let week: u64 = text_of(&mut browser, "#services-table tbody td:nth-child(2)")[0]
        .replace(',', "")
        .parse()
        .unwrap();
    browser.open(&url("/?since=1d&service=billing"));
    let day: u64 = text_of(&mut browser, "#services-table tbody td:nth-child(2)")[0]
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(week > 3 * day, "a week has more runs than a day: {week} against {day}");

    // Feature: four series over a week of hours, one circle per point drawn.
    let wall = browser.open(&url("/features/checkout?since=7d"));
    browser.assert_clean("feature", wall);
    for series in ["average", "p95", "throughput", "error_rate"] {
        let points: u64 = attributes(&mut browser, &format!("[data-series={series}]"), "data-points")[0]
            .parse()
            .unwrap();
        assert!(
            points >= 150,
            "{series}: a week of hours has ~168 points, drew {points}"
        );
        assert_eq!(browser.count(&format!("[data-series={series}] circle")), points);
    }
    // A window with one point of data (the synthetic fleet's runs come
    // every 10 minutes) shows that point as a marker.
    browser.open(&url("/features/checkout?since=180m&until=170m"));
    assert_eq!(
        attributes(&mut browser, "#response-time [data-series=p95]", "data-points"),
        ["1"]
    );
    let marker = browser.eval(
        "(() => { const c = document.querySelector('#response-time [data-series=p95] circle.alone');          const r = c.getBoundingClientRect(); return [getComputedStyle(c).fillOpacity, r.width > 2 && r.height > 2]; })()",
    );
    assert_eq!(marker, json!(["1", true]), "a visible marker");
    browser.open(&url("/features/checkout?since=7d"));
    let slowest = attributes(&mut browser, "#slowest tbody tr", "data-transaction");
    assert_eq!(
        slowest,
        ["GET /orders/{id}", "POST /orders/{id}/refund"],
        "checkout's two transactions"
    );

    // Transaction: percentiles, distribution, segments, a waterfall.
    let wall = browser.open(&url(
        "/transactions?since=1d&service=shop-api&transaction=GET+%2Freports%2F%7Bid%7D%2Fexport",
    ));
    browser.assert_clean("transaction", wall);
    for series in ["p50", "p95", "p99", "average"] {
        assert_eq!(
            browser.count(&format!("#percentiles [data-series={series}]")),
            1,
            "{series}"
        );
    }
    assert!(browser.count("[data-series=distribution] rect") >= 10);
    assert_eq!(browser.count("[data-mark]"), 3);
    // Each percentile's label lies inside the chart.
    let outside = browser.eval(
        "[...document.querySelectorAll('[data-mark] text')].filter(t => { const b = t.getBBox();          const w = t.ownerSVGElement.viewBox.baseVal.width; return b.x < 0 || b.x + b.width > w; }).map(t => t.textContent)",
    );
    assert_eq!(outside, json!([]), "labels cut off at the chart's edge");
    let segments = attributes(&mut browser, "#segments-table tbody tr[data-segment]", "data-segment");
    assert!(segments.contains(&"SELECT report_rows".to_owned()), "{segments:?}");
    assert!(browser.count("[data-series=waterfall] rect.segment") >= 1);
    // A legend click hides its series (the UI's only script).
    browser.eval("document.querySelector('#percentiles [data-legend=p99]').click()");
    assert_eq!(browser.count("#percentiles .series.off[data-series=p99]"), 1);

    // Errors, and a group's detail through its link.
    let wall = browser.open(&url("/errors?since=1d"));
    browser.assert_clean("errors", wall);
    assert!(browser.count("table.errors tbody tr") >= 3);
    let narrowed = {
        browser.open(&url("/errors?since=1d&service=billing"));
        text_of(&mut browser, "table.errors tbody td:nth-child(6)")
    };
    assert!(narrowed.iter().all(|s| !s.contains("shop-api")), "{narrowed:?}");
    browser.open(&url("/errors?since=1d"));
    let wall = browser.follow("document.querySelector('table.errors tbody tr a').click()");
    browser.assert_clean("error group", wall);
    assert!(browser.count("[data-series=servers] rect") >= 1);

    // Regressions: the planted one, by impact.
    let wall = browser.open(&url("/regressions?since=7d"));
    browser.assert_clean("regressions", wall);
    let regressions = attributes(&mut browser, "#regressions tbody tr", "data-subject");
    assert_eq!(
        regressions.first().map(String::as_str),
        Some("shop-api GET /orders/{id}")
    );
    // Compared since shop-api's deploy, the form keeps that comparison:
    // another window applied is still split at the deploy.
    browser.open(&url("/regressions?since=7d&service=shop-api&compare=deploy"));
    let since_deploy = |browser: &mut Browser| text_of(browser, "p.deploy").join(" ");
    assert!(
        since_deploy(&mut browser).starts_with("Since the deploy of shop-api 2.0 (after 1.0)"),
        "{}",
        since_deploy(&mut browser)
    );
    // Types `value` into the form's `field` and presses Apply.
    let apply = |browser: &mut Browser, field: &str, value: &str| {
        let wall = browser.follow(&format!(
            "document.querySelector('form.custom input[name={field}]').value = {value:?}; \
             document.querySelector('form.custom button[type=submit]').click()"
        ));
        browser.assert_clean(&format!("regressions, {field}={value:?} applied"), wall);
    };
    apply(&mut browser, "since", "3d");
    let search = browser.eval("location.search");
    let search = search.as_str().unwrap_or_default();
    assert!(
        search.contains("since=3d") && search.contains("compare=deploy"),
        "Apply keeps the comparison: {search}"
    );
    assert!(
        since_deploy(&mut browser).starts_with("Since the deploy of shop-api 2.0"),
        "{}",
        since_deploy(&mut browser)
    );
    // The service cleared, there is no deploy to split at: the page still
    // compares (this window against the one before) and says why.
    apply(&mut browser, "service", "");
    assert_eq!(browser.count("p.no-split"), 1);
    assert_eq!(browser.count("section#regressions"), 1);

    // Dashboards: the two files and one per feature, each drawn.
    let wall = browser.open(&url("/dashboards"));
    browser.assert_clean("dashboards", wall);
    let names = attributes(&mut browser, "#dashboards tbody tr", "data-dashboard");
    for name in ["checkout", "fleet-overview", "feature-checkout", "feature-search"] {
        assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
    }
    assert_eq!(browser.count("#problems"), 0, "the repository's dashboards are valid");
    let wall = browser.open(&url("/dashboards/fleet-overview"));
    browser.assert_clean("dashboard", wall);
    assert_eq!(browser.count("section.panel"), 4);
    let features = attributes(&mut browser, "#panel-1 .series", "data-series");
    assert_eq!(features.len(), 6, "p95 per feature: {features:?}");
    assert!(browser.count("#panel-3 [data-series=throughput] rect") >= 6);
    // p95 on a log axis: a decade between ticks at equal distances.
    assert_eq!(attributes(&mut browser, "#panel-1 .axis.y", "data-scale"), ["log"]);
    let ticks = browser.eval(
        "[...document.querySelectorAll('#panel-1 .axis.y text')].map(t => [t.textContent, t.getBoundingClientRect().y])",
    );
    let ticks: Vec<(String, f64)> = serde_json::from_value(ticks).unwrap();
    let decades: Vec<f64> = ticks
        .windows(2)
        .filter(|pair| ["10 ms", "100 ms", "1 s", "10 s"].contains(&pair[0].0.as_str()))
        .filter_map(|pair| {
            let next = ticks.iter().find(|t| t.0 == decade_after(&pair[0].0))?;
            Some(pair[0].1 - next.1)
        })
        .collect();
    assert!(decades.len() >= 2, "decades labelled: {ticks:?}");
    assert!(
        decades.iter().all(|d| (d - decades[0]).abs() < 1.0 && *d > 10.0),
        "equal decades: {ticks:?}"
    );
    // One colour per feature, the same in the error rate panel.
    let colours = |browser: &mut Browser, panel: &str| -> Vec<(String, String)> {
        let value = browser.eval(&format!(
            "[...document.querySelectorAll('{panel} .series')].map(g => [g.dataset.series, g.getAttribute('stroke')]).sort()"
        ));
        serde_json::from_value(value).unwrap()
    };
    let latency = colours(&mut browser, "#panel-1");
    assert_eq!(latency, colours(&mut browser, "#panel-2"));
    let mut distinct: Vec<&String> = latency.iter().map(|(_, c)| c).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), latency.len(), "{latency:?}");
    // The slowest transactions' table has one p95 column.
    let heads = text_of(&mut browser, "#panel-4 th");
    assert_eq!(heads.iter().filter(|h| *h == "p95").count(), 1, "{heads:?}");
    let wall = browser.open(&url("/dashboards/checkout"));
    browser.assert_clean("checkout dashboard", wall);
    assert_eq!(browser.count("section.panel"), 5);

    // shop-api's deploy is marked on every chart of time that holds it:
    // the line panels of a dashboard, the feature's charts, the overview's
    // trend of the service and of its features; never billing's.
    let marker = "[data-marker=\"shop-api 2.0\"]";
    browser.open(&url("/dashboards/fleet-overview?since=7d"));
    let panels = attributes(&mut browser, &format!("section.panel:has({marker})"), "id");
    assert_eq!(panels, ["panel-1", "panel-2"], "the two line panels");
    browser.open(&url("/features/checkout?since=7d"));
    assert_eq!(
        browser.count(&format!(
            "#response-time {marker}, #throughput {marker}, #error-rate {marker}"
        )),
        3
    );
    browser.open(&url("/?since=7d"));
    assert_eq!(
        browser.count(&format!("#services-table tr[data-service=shop-api] {marker}")),
        1
    );
    assert_eq!(
        browser.count(&format!("#services-table tr[data-service=billing] {marker}")),
        0
    );
    assert!(browser.count(&format!("#features-table {marker}")) >= 1);
    // A window that ended before the deploy marks nothing.
    browser.open(&url("/?since=7d&until=3d"));
    assert_eq!(browser.count(marker), 0);

    // Every section links to its JSON and CSV with the page's filters.
    browser.open(&url("/?since=1d&service=billing"));
    let csv = attributes(&mut browser, "#features [data-download=csv]", "href");
    assert_eq!(
        csv,
        ["/api/v1/slowest?since=1d&service=billing&group=feature&format=csv"]
    );

    // "Sign out" ends the session: the pages ask for the token again.
    browser.follow("document.querySelector('form.sign-out button').click()");
    assert_eq!(browser.eval("location.pathname"), json!("/login"));
    browser.open(&url("/errors"));
    assert_eq!(browser.eval("location.pathname"), json!("/login"));
}
