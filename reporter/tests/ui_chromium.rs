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

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::synthetic::{self, Spec};
use serde_json::{json, Value};

const TOKEN: &str = "ui-test-token";
/// How long one protocol answer may take before the test gives up (a hung
/// browser, not a slow page: nothing here is timed for speed).
const PATIENCE: Duration = Duration::from_secs(90);

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two weeks of `Spec::small` ending about now, rolled up, in `dir`.
fn write_store(dir: &Path) -> PathBuf {
    let path = dir.join("kuroko.db");
    let now = jiff::Timestamp::now().as_second() / 60;
    let start = (now - 14 * 1_440).div_euclid(60) * 60;
    let store = SqliteStore::open(&path).unwrap();
    synthetic::write_to(&store, &Spec::small(start), |_, _| {}).unwrap();
    store.flush().unwrap();
    store.roller(Retention::default()).unwrap().run(now).unwrap();
    drop(store);
    path
}

/// `kuroko serve` on `store` with the synthetic fleet's owners, the
/// repository's dashboards and a query token; returns it and its HTTP address.
fn serve(dir: &Path, store: &Path) -> (Killed, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nowners = {:?}\ndashboards = {:?}\n[auth]\nquery_token = {TOKEN:?}\n",
            store.display().to_string(),
            root.join("tests/ui/owners.toml").display().to_string(),
            root.join("dashboards").display().to_string(),
        ),
    )
    .unwrap();
    let log = dir.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line
        .split("OTLP/HTTP on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("kuroko serve did not start: {line:?}\n{log}")
        })
        .to_owned();
    (Killed(child), format!("http://{http}"))
}

/// A DevTools protocol connection to one page of a headless Chromium.
struct Browser {
    _child: Killed,
    input: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Events read while waiting for something else.
    events: Vec<Value>,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let found = Command::new("sh").args(["-c", "command -v chromium"]).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "chromium is not installed: install Debian's package (apt-get install chromium; tests/run-all.sh does)"
        );
        // Puppeteer's flags for a quiet browser: nothing in the background
        // reaches for the network.
        let flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--metrics-recording-only",
            "--no-pings",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
            "--window-size=1366,900",
        ];
        let script = format!(
            "exec chromium {} --user-data-dir='{}' about:blank 3<&0 4>&1 0</dev/null 1>&2",
            flags.join(" "),
            profile.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match output.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    message.pop();
                    if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Browser {
            _child: Killed(child),
            input,
            messages,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = browser.call(false, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(
            false,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(true, domain, json!({}));
        }
        browser
    }

    /// Sends `method` (to the page's session when `on_page`) and returns its result.
    fn call(&mut self, on_page: bool, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).unwrap();
        self.input.flush().unwrap();
        loop {
            let message = self.receive(method);
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    fn receive(&mut self, waiting_for: &str) -> Value {
        self.messages
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no answer from chromium while waiting for {waiting_for}: {e}"))
    }

    /// Waits for the page's `event`, kept or to come.
    fn wait_for(&mut self, event: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == event) {
            return self.events.remove(i);
        }
        loop {
            let message = self.receive(event);
            if message["method"] == event {
                return message;
            }
            self.events.push(message);
        }
    }

    /// Opens `url` and waits for its load event; returns the wall time it took.
    fn open(&mut self, url: &str) -> Duration {
        self.events.clear();
        let started = Instant::now();
        self.call(true, "Page.navigate", json!({ "url": url }));
        self.wait_for("Page.loadEventFired");
        started.elapsed()
    }

    /// Runs `action` (a click, a submit) and waits for the page it loads;
    /// returns the wall time it took.
    fn follow(&mut self, action: &str) -> Duration {
        self.events.clear();
        let started = Instant::now();
        self.eval(action);
        self.wait_for("Page.loadEventFired");
        started.elapsed()
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            true,
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(result.get("exceptionDetails").is_none(), "{expression} threw: {result}");
        result["result"]["value"].clone()
    }

    fn count(&mut self, selector: &str) -> u64 {
        let value = self.eval(&format!("document.querySelectorAll({selector:?}).length"));
        value.as_u64().unwrap_or_else(|| panic!("{selector}: {value}"))
    }

    /// Asserts the page loaded with status 200 and logged no error; prints its load time.
    fn assert_clean(&mut self, what: &str, wall: Duration) {
        let status = self.eval("performance.getEntriesByType('navigation')[0].responseStatus");
        assert_eq!(status, json!(200), "{what}: status {status}");
        let load = self.eval(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()",
        );
        // Drain what arrived, then look for errors among all events.
        while let Ok(message) = self.messages.try_recv() {
            self.events.push(message);
        }
        let problems: Vec<&Value> = self
            .events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => matches!(e["params"]["type"].as_str(), Some("error" | "assert")),
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect();
        assert!(problems.is_empty(), "{what}: console errors {problems:#?}");
        println!(
            "{what}: loaded in {:.0} ms (navigation timing), {} ms wall",
            load.as_f64().unwrap_or(f64::NAN),
            wall.as_millis()
        );
    }
}

fn text_of(browser: &mut Browser, selector: &str) -> Vec<String> {
    let value = browser.eval(&format!(
        "[...document.querySelectorAll({selector:?})].map(e => e.textContent.trim())"
    ));
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn attributes(browser: &mut Browser, selector: &str, attribute: &str) -> Vec<String> {
    let value = browser.eval(&format!(
        "[...document.querySelectorAll({selector:?})].map(e => e.getAttribute({attribute:?}))"
    ));
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

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
