//! Interop: the official Node.js OpenTelemetry SDK (`@opentelemetry/sdk-node`
//! with `auto-instrumentations-node`, from npm) instruments a real Express 5
//! service (`tests/node/service.js`), which drives a fixed set of requests to
//! itself and writes down what really happened to each one. The SDK sends
//! OTLP over HTTP/protobuf to a reporter on loopback; then the reporter's
//! answers, read through the layer the CLI and the UI use (`Analysis`), are
//! compared with that ground truth. `tests/run-all.sh` installs the npm
//! packages (`npm ci --prefix tests/node`); without them, or without node,
//! these tests fail, saying so. Nothing is compiled or installed at run time.
//!
//! Twice: with the old HTTP conventions (`http.server.duration` in ms,
//! `http.method`, `http.status_code`: instrumentation-http 0.220.0, the last
//! that honours `OTEL_SEMCONV_STABILITY_OPT_IN`, with it unset) and with the
//! stable ones (`http.server.request.duration` in s, `http.request.method`,
//! `http.response.status_code`: the 0.223.0 that auto-instrumentations-node
//! brings, which knows no others). With the old conventions half the traces
//! are sampled (`OTEL_TRACES_SAMPLER=traceidratio`), as many services do:
//! runs must come from the metric, and the breakdown's shares and the error
//! group's count from the traced requests.
//!
//! What a user would notice, per route (`GET /products/:id`, `GET /checkout`,
//! `GET /boom`), all mismatches listed at once:
//! - runs: exactly the requests served;
//! - errors and error rate: exactly the 5xx answers;
//! - p50, p95, p99, when the row says they are `estimated`: inside the
//!   explicit bucket (of the bounds the SDK sent) that holds the true
//!   nearest-rank percentile of the service's own durations, give or take the
//!   reporter's own resolution (a bucket of scale 7, 0.54%); when the SDK's
//!   clock put that rank's run in the neighbouring bucket, that bucket is
//!   accepted too. When the row says they are exact (not `estimated`): within
//!   1% of the percentile of the SDK's own durations;
//! - the mean: exactly the SDK's own, its metric's sum over its count when
//!   the metric counts the runs (its clock ends a request at the response's
//!   'close', a little after the service's 'finish': the service's own mean
//!   is shown, not held to), its spans' when the spans do;
//! - for `GET /checkout`: one external call per run, and the external share
//!   of its time within 2 percentage points of the true share (time in the
//!   outgoing call over the requests' time), or of that share by the SDK's
//!   clock;
//! - for `GET /boom`: one error group with the thrown message, counted once
//!   per request, in `GET /boom`;
//! - the 404s of unknown paths: one transaction, under one name (not a raw
//!   path), counted once each, no errors;
//! - no other transaction (the downstream server and the load driver are not
//!   traced) and no point rejected.
//!
//! Each of these failed before the reporter read SDK data right (issue "Right
//! numbers from any OpenTelemetry SDK"): the external share was 0% (the
//! CLIENT span sits under Express's router spans, which the breakdown did not
//! descend), no error group (the SDK records the exception as an `exception`
//! event on Express's INTERNAL spans), runs counted twice (SERVER spans sent
//! before the first metric export), 5xx lost (the metric's status code was not
//! read), 404s under two names, and with the old conventions every run came
//! from the sampled spans (`http.server.duration` in ms was dropped).
//! Not caught here: explicit-bucket percentiles read at a bucket's middle stay
//! inside the bucket, which is all that is checked (`histogram.rs` holds the
//! interpolation to linear interpolation).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kuroko_reporter::analysis::breakdown::Breakdown;
use kuroko_reporter::analysis::endpoints::{EndpointRow, Rank};
use kuroko_reporter::analysis::errors::ErrorGroup;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::config::Config;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::serve::Running;
use kuroko_reporter::store::sqlite::SqliteStore;
use serde_json::Value;

const SERVICE_JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/node/service.js");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs the exact npm packages of \
     tests/node/package-lock.json with `npm ci --prefix tests/node` (Node.js 20 or later is needed)";

const SERVICE: &str = "node-shop";
const HOST: &str = "node-host-1";
const PRODUCT: &str = "/products/:id";
const CHECKOUT: &str = "/checkout";
const BOOM: &str = "/boom";
const ROUTES: [&str; 3] = [PRODUCT, CHECKOUT, BOOM];
/// What `GET /boom` throws (`BOOM_MESSAGE` in service.js).
const BOOM_MESSAGE: &str = "kuroko-interop: the basket exploded";
/// Requests service.js sends: products, checkouts, booms, unknown paths.
const PLANNED: [usize; 4] = [240, 60, 12, 15];
/// How long the service may take, on a loaded machine (it takes ~3 s idle).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(240);
/// The reporter's resolution: a bucket of scale 7.
const RESOLUTION: f64 = 1.005_430_9;

/// The HTTP conventions the service's SDK sends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Conventions {
    Old,
    Stable,
}

impl Conventions {
    fn arg(self) -> &'static str {
        match self {
            Conventions::Old => "old",
            Conventions::Stable => "stable",
        }
    }

    /// The server duration metric and its unit.
    fn metric(self) -> (&'static str, &'static str) {
        match self {
            Conventions::Old => ("http.server.duration", "ms"),
            Conventions::Stable => ("http.server.request.duration", "s"),
        }
    }
}

/// One request as the service saw it.
#[derive(Debug, serde::Deserialize)]
struct Request {
    method: String,
    /// The Express route template; `None` when no route matched.
    route: Option<String>,
    path: String,
    status: u16,
    seconds: f64,
    outgoing_seconds: Option<f64>,
    /// Its SERVER span's duration, as the SDK exported it.
    sdk_seconds: Option<f64>,
}

/// The last (cumulative) point the SDK exported of one histogram stream.
#[derive(Debug, serde::Deserialize)]
struct SentPoint {
    scope: String,
    name: String,
    unit: String,
    temporality: String,
    attributes: serde_json::Map<String, Value>,
    bounds: Vec<f64>,
    counts: Vec<u64>,
    count: u64,
    /// In the metric's unit.
    sum: f64,
}

/// What service.js wrote.
#[derive(Debug, Default)]
struct Truth {
    sdk: Value,
    requests: Vec<Request>,
    points: Vec<SentPoint>,
    spans: Vec<Value>,
    exports: Value,
}

impl Truth {
    fn parse(text: &str) -> Truth {
        let mut truth = Truth::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let malformed = |e: serde_json::Error| -> ! { panic!("{line}: {e}") };
            match value["type"].as_str() {
                Some("sdk") => truth.sdk = value,
                Some("request") => truth
                    .requests
                    .push(serde_json::from_value(value).unwrap_or_else(|e| malformed(e))),
                Some("metric") => truth
                    .points
                    .push(serde_json::from_value(value).unwrap_or_else(|e| malformed(e))),
                Some("spans") => truth.spans.push(value),
                Some("exports") => truth.exports = value,
                _ => panic!("unknown line from service.js: {line}"),
            }
        }
        truth
    }

    /// The requests answered on `route` (`None`: no route matched).
    fn on(&self, route: Option<&str>) -> Vec<&Request> {
        self.requests.iter().filter(|r| r.route.as_deref() == route).collect()
    }

    /// The server duration points the SDK sent for `route`, in `conventions`.
    fn sent(&self, conventions: Conventions, route: Option<&str>) -> Vec<&SentPoint> {
        let (name, _) = conventions.metric();
        self.points
            .iter()
            .filter(|p| p.name == name && p.attributes.get("http.route").and_then(Value::as_str) == route)
            .collect()
    }

    /// One line per kind of span the SDK sent, for failure messages.
    fn span_summary(&self) -> String {
        self.spans
            .iter()
            .map(|s| {
                format!(
                    "{} x{} {} {:?} under {} events {}",
                    s["scope"], s["count"], s["kind"], s["name"], s["parent"], s["events"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }
}

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

/// A reporter on loopback with a store of its own, fresh.
async fn start(tag: &str) -> (Running, PathBuf) {
    let dir = std::env::temp_dir().join(format!("kuroko-interop-node-sdk-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("kuroko.db");
    let reporter = kuroko_reporter::serve::start(&Config {
        store: store.clone(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    })
    .await
    .unwrap();
    (reporter, store)
}

/// Runs service.js against `endpoint` and returns what it wrote; fails the
/// test, saying how to fix it, when node or the packages are missing, and
/// with the service's output when it failed.
fn run_service(conventions: Conventions, endpoint: &str, output: &Path) -> Truth {
    let mut command = Command::new("node");
    command
        .arg(SERVICE_JS)
        .arg(conventions.arg())
        .arg(output)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SDK_DISABLED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // With the old conventions, half the traces are sampled, as many
    // services do: runs must then come from the metric, which sees them all,
    // and the breakdown's shares from the traced runs.
    match conventions {
        Conventions::Old => command
            .env_remove("OTEL_SEMCONV_STABILITY_OPT_IN")
            .env("OTEL_TRACES_SAMPLER", "traceidratio")
            .env("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        Conventions::Stable => command
            .env("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env_remove("OTEL_TRACES_SAMPLER_ARG"),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("node is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run node {SERVICE_JS}: {error}"),
    };
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > SERVICE_TIMEOUT {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "node {SERVICE_JS} {} took more than {SERVICE_TIMEOUT:?}:\n{}\n{}",
                conventions.arg(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    if result.status.code() == Some(3) {
        panic!("the npm packages of tests/node are not installed: {HOW_TO_INSTALL}\n{stderr}");
    }
    assert!(
        result.status.success(),
        "node {SERVICE_JS} {} failed ({}):\n{}\n{stderr}",
        conventions.arg(),
        result.status,
        String::from_utf8_lossy(&result.stdout)
    );
    let text = std::fs::read_to_string(output).unwrap_or_else(|e| panic!("{}: {e}", output.display()));
    Truth::parse(&text)
}

/// Every mismatch found, reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn equal<T: PartialEq + Debug>(&mut self, what: &str, stored: T, expected: T) {
        self.check(stored == expected, || {
            format!("{what}: stored {stored:?}, true {expected:?}")
        });
    }
}

/// The nearest-rank quantile of `sorted`, as the reporter ranks runs.
fn nearest_rank(sorted: &[f64], q: f64) -> (usize, f64) {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    (rank, sorted[rank - 1])
}

/// The explicit bucket `(low, high]` of `bounds` holding `value`.
fn bucket_of(bounds: &[f64], value: f64) -> (f64, f64) {
    let i = bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len());
    bucket(bounds, i)
}

/// Bucket `i` of `bounds`: `(bounds[i-1], bounds[i]]`, open at the ends.
fn bucket(bounds: &[f64], i: usize) -> (f64, f64) {
    let low = if i == 0 { f64::NEG_INFINITY } else { bounds[i - 1] };
    let high = bounds.get(i).copied().unwrap_or(f64::INFINITY);
    (low, high)
}

/// The bucket the SDK put the `rank`-th run in, over its `points` (same bounds).
fn sdk_bucket(points: &[&SentPoint], rank: usize) -> Option<(f64, f64)> {
    let bounds = &points.first()?.bounds;
    let mut counts = vec![0u64; bounds.len() + 1];
    for point in points {
        for (total, count) in counts.iter_mut().zip(&point.counts) {
            *total += count;
        }
    }
    let mut seen = 0;
    for (i, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank as u64 {
            return Some(bucket(bounds, i));
        }
    }
    None
}

fn inside(value: f64, (low, high): (f64, f64)) -> bool {
    value > low / RESOLUTION && value <= high * RESOLUTION
}

/// The route's row against the requests the service answered on it.
fn check_route(problems: &mut Problems, conventions: Conventions, truth: &Truth, rows: &[EndpointRow], route: &str) {
    let name = format!("GET {route}");
    let requests = truth.on(Some(route));
    let Some(row) = rows.iter().find(|r| r.transaction == name) else {
        return problems
            .0
            .push(format!("no row for {name} ({} requests served)", requests.len()));
    };
    let n = requests.len() as u64;
    let failed = requests.iter().filter(|r| r.status >= 500).count() as u64;
    problems.equal(&format!("{name}: runs"), row.count, n);
    problems.equal(&format!("{name}: errors (5xx)"), row.errors, failed);
    let rate = failed as f64 / n as f64;
    problems.check(row.error_rate.is_some_and(|r| (r - rate).abs() < 1e-9), || {
        format!(
            "{name}: error rate: stored {:?}, true {rate} ({failed} of {n})",
            row.error_rate
        )
    });
    let sorted = |seconds: &dyn Fn(&Request) -> f64| {
        let mut all: Vec<f64> = requests.iter().map(|r| seconds(r)).collect();
        all.sort_by(f64::total_cmp);
        all
    };
    let seconds = sorted(&|r| r.seconds);
    let sdk_seconds = sorted(&|r| r.sdk_seconds.unwrap_or(f64::NAN));
    let mean = |all: &[f64]| all.iter().sum::<f64>() / all.len() as f64;
    let true_mean = mean(&seconds);

    let points = truth.sent(conventions, Some(route));
    let Some(first) = points.first() else {
        return problems
            .0
            .push(format!("{name}: the SDK sent no duration metric for it"));
    };
    // Bounds in seconds, as the SDK sent them.
    let factor = if first.unit == "ms" { 1e-3 } else { 1.0 };
    // The mean is the SDK's own: exactly its metric's sum over its count when
    // the metric counts the runs (an `estimated` row), its spans' otherwise.
    // Its clock ends a request at 'close', a little after the service's
    // 'finish': the service's own mean is shown, not held to.
    let (sdk_mean, tolerance) = if row.estimated {
        let (sum, count) = points.iter().fold((0.0, 0u64), |(s, c), p| (s + p.sum, c + p.count));
        (sum * factor / count as f64, 1e-9)
    } else {
        (mean(&sdk_seconds), 1e-6)
    };
    problems.check((row.mean - sdk_mean).abs() <= tolerance * sdk_mean, || {
        format!(
            "{name}: mean: stored {:.6} s, the SDK's {sdk_mean:.6} s (the service's own {true_mean:.6} s)",
            row.mean
        )
    });
    let bounds: Vec<f64> = first.bounds.iter().map(|b| b * factor).collect();
    for (q, stored) in [(0.50, row.p50), (0.95, row.p95), (0.99, row.p99)] {
        let (rank, value) = nearest_rank(&seconds, q);
        let expected = bucket_of(&bounds, value);
        let sdk = sdk_bucket(&points, rank).map(|(low, high)| (low * factor, high * factor));
        let percentile = (q * 100.0).round();
        if row.estimated {
            let ok = inside(stored, expected) || sdk.is_some_and(|b| inside(stored, b));
            problems.check(ok, || {
                format!(
                    "{name}: p{percentile} (estimated): stored {stored:.6} s, outside ({}, {}] s, the explicit \
                     bucket of the true {value:.6} s (the SDK's bucket for rank {rank}: {sdk:?})",
                    expected.0, expected.1
                )
            });
        } else {
            let (_, measured) = nearest_rank(&sdk_seconds, q);
            problems.check((stored - measured).abs() <= 0.01 * measured, || {
                format!(
                    "{name}: p{percentile} (not estimated): stored {stored:.6} s, the SDK's {measured:.6} s (the \
                     service's own {value:.6} s)"
                )
            });
        }
    }
}

/// `GET /checkout`'s external call: one per run, its share of the time.
fn check_breakdown(problems: &mut Problems, truth: &Truth, breakdown: &Breakdown) {
    let name = format!("GET {CHECKOUT}");
    // The traced requests: all of them, or the sampled ones.
    let requests: Vec<&Request> = truth
        .on(Some(CHECKOUT))
        .into_iter()
        .filter(|r| r.sdk_seconds.is_some())
        .collect();
    let total: f64 = requests.iter().map(|r| r.seconds).sum();
    let outgoing: f64 = requests.iter().filter_map(|r| r.outgoing_seconds).sum();
    let share = outgoing / total;
    // The SDK's clock ends a request at its response's 'close', a little
    // after 'finish': its share is accepted too.
    let sdk_total: f64 = requests.iter().filter_map(|r| r.sdk_seconds).sum();
    let sdk_share = outgoing / sdk_total;
    let external = breakdown.kinds.iter().find(|k| k.kind == "external");
    problems.equal(
        &format!("{name}: external calls"),
        external.map(|k| k.calls),
        Some(requests.len() as f64),
    );
    let stored = external.map_or(0.0, |k| k.share);
    problems.check(
        (stored - share).abs() <= 0.02 || (stored - sdk_share).abs() <= 0.02,
        || {
            format!(
                "{name}: external share of the time: stored {:.1}%, true {:.1}% ({outgoing:.3} s of {total:.3} s; \
             by the SDK's clock {:.1}%); stored kinds {:?}",
                stored * 100.0,
                share * 100.0,
                sdk_share * 100.0,
                breakdown
                    .kinds
                    .iter()
                    .map(|k| (&k.kind, k.calls, k.share))
                    .collect::<Vec<_>>()
            )
        },
    );
}

/// The one error group of `GET /boom`'s thrown error.
fn check_errors(problems: &mut Problems, truth: &Truth, groups: &[ErrorGroup]) {
    let name = format!("GET {BOOM}");
    // Recorded on spans: the traced requests' (all, or the sampled ones).
    let n = truth.on(Some(BOOM)).iter().filter(|r| r.sdk_seconds.is_some()).count() as u64;
    let boom: Vec<&ErrorGroup> = groups
        .iter()
        .filter(|g| g.title.contains(BOOM_MESSAGE) || g.samples.iter().any(|s| s.contains(BOOM_MESSAGE)))
        .collect();
    let summary = || {
        groups
            .iter()
            .map(|g| format!("{:?} x{} in {:?}", g.title, g.count, g.transactions))
            .collect::<Vec<_>>()
    };
    let [group] = boom[..] else {
        return problems.0.push(format!(
            "error groups of {BOOM_MESSAGE:?}: stored {}, true 1 (thrown {n} times in {name}); all groups: {:?}",
            boom.len(),
            summary()
        ));
    };
    problems.equal(&format!("{name}: occurrences of its error group"), group.count, n);
    let transactions: Vec<(&str, &str, u64)> = group
        .transactions
        .iter()
        .map(|t| (t.service.as_str(), t.transaction.as_str(), t.count))
        .collect();
    problems.equal(
        &format!("{name}: transactions of its error group"),
        transactions,
        vec![(SERVICE, name.as_str(), n)],
    );
}

/// The 404s: one row, not named after a raw path, no errors; and no row
/// beside the routes and that one.
fn check_unrouted(problems: &mut Problems, truth: &Truth, rows: &[EndpointRow]) {
    let requests = truth.on(None);
    let names: Vec<String> = ROUTES.iter().map(|r| format!("GET {r}")).collect();
    let others: Vec<&EndpointRow> = rows.iter().filter(|r| !names.contains(&r.transaction)).collect();
    let summary: Vec<(&str, u64)> = others.iter().map(|r| (r.transaction.as_str(), r.count)).collect();
    let [row] = others[..] else {
        return problems.0.push(format!(
            "the {} requests to unknown paths (404): stored under {} names {summary:?}, true 1",
            requests.len(),
            others.len()
        ));
    };
    problems.check(!row.transaction.contains("/no/such"), || {
        format!("the 404s are named after a raw path: {:?}", row.transaction)
    });
    problems.equal(
        &format!("{}: runs (404s of unknown paths)", row.transaction),
        row.count,
        requests.len() as u64,
    );
    problems.equal(
        &format!("{}: errors (404s are not 5xx)", row.transaction),
        row.errors,
        0,
    );
}

/// What the harness itself must have done; a failure here is not the reporter's.
fn check_harness(conventions: Conventions, truth: &Truth) {
    let counts = [
        truth.on(Some(PRODUCT)).len(),
        truth.on(Some(CHECKOUT)).len(),
        truth.on(Some(BOOM)).len(),
        truth.on(None).len(),
    ];
    assert_eq!(counts, PLANNED, "requests served per route, by service.js");
    assert!(truth.requests.iter().all(|r| r.method == "GET"), "only GETs");
    let statuses = |route, status: u16| truth.on(route).iter().filter(|r| r.status == status).count();
    assert_eq!(statuses(Some(BOOM), 500), PLANNED[2], "every /boom answers 500");
    assert_eq!(statuses(None, 404), PLANNED[3], "every unknown path answers 404");
    assert!(
        truth.on(None).iter().all(|r| r.path.starts_with("/no/such/")),
        "404s only for the unknown paths"
    );
    let failed = statuses(Some(PRODUCT), 500);
    assert!(
        (10..=25).contains(&failed),
        "about 7% of products answer 500, not {failed}"
    );
    assert!(
        truth.on(Some(CHECKOUT)).iter().all(|r| r.outgoing_seconds.is_some()),
        "every checkout timed its outgoing call"
    );
    let unexported: Vec<&str> = truth
        .requests
        .iter()
        .filter(|r| r.sdk_seconds.is_none())
        .map(|r| r.path.as_str())
        .collect();
    match conventions {
        Conventions::Stable => assert!(
            unexported.is_empty(),
            "requests without a SERVER span from the SDK: {unexported:?}"
        ),
        Conventions::Old => {
            let share = unexported.len() as f64 / truth.requests.len() as f64;
            assert!(
                (0.3..=0.7).contains(&share),
                "half the traces sampled, not {:.0}%",
                share * 100.0
            );
        }
    }
    assert_eq!(truth.exports["failures"], serde_json::json!([]), "export failures");
    let (metric, unit) = conventions.metric();
    let sent: Vec<&SentPoint> = truth.points.iter().filter(|p| p.name == metric).collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|p| p.unit == unit && p.temporality == "cumulative"),
        "{conventions:?}: the SDK should send {metric} in {unit}, cumulative; it sent {:?}",
        truth
            .points
            .iter()
            .map(|p| (&p.scope, &p.name, &p.unit))
            .collect::<Vec<_>>()
    );
    // What the SDK sent holds the right answers: a reporter can get them.
    for route in [Some(PRODUCT), Some(CHECKOUT), Some(BOOM), None] {
        let requests = truth.on(route);
        let points = truth.sent(conventions, route);
        let runs: u64 = points.iter().map(|p| p.count).sum();
        assert_eq!(runs, requests.len() as u64, "{route:?}: runs in the SDK's {metric}");
        let status = |p: &SentPoint| {
            ["http.response.status_code", "http.status_code"]
                .iter()
                .find_map(|k| p.attributes.get(*k).and_then(Value::as_u64))
        };
        let failed: u64 = points
            .iter()
            .filter(|p| status(p).is_some_and(|s| s >= 500))
            .map(|p| p.count)
            .sum();
        let true_failed = requests.iter().filter(|r| r.status >= 500).count() as u64;
        assert_eq!(failed, true_failed, "{route:?}: 5xx runs in the SDK's {metric}");
    }
}

/// Runs the service with `conventions` against a fresh reporter and checks
/// the reporter's answers against its ground truth.
async fn answers_match_the_ground_truth(conventions: Conventions) {
    let (reporter, path) = start(conventions.arg()).await;
    let from = now_minute() - 1;
    let endpoint = format!("http://{}", reporter.http);
    let output = path.with_file_name("truth.jsonl");
    let truth = {
        let output = output.clone();
        tokio::task::spawn_blocking(move || run_service(conventions, &endpoint, &output))
            .await
            .unwrap()
    };
    // Every export was answered, and an answer means the batch is stored.
    let rejected = reporter
        .receiver
        .stats
        .rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    reporter.stop().await;
    check_harness(conventions, &truth);

    let store = SqliteStore::open(&path).unwrap();
    let owners = Owners::empty();
    let analysis = Analysis::new(&store, &owners);
    let scope = Scope {
        service: Some(SERVICE.to_owned()),
        host: Some(HOST.to_owned()),
        ..Scope::window(from, now_minute() + 2)
    };
    let rows = analysis.slowest(&scope, Rank::P50, 1000).unwrap().rows;
    let breakdown = analysis
        .breakdown(&scope, SERVICE, &format!("GET {CHECKOUT}"), 5)
        .unwrap();
    let groups = analysis.errors(&scope).unwrap();

    let mut problems = Problems::default();
    problems.equal("points the reporter rejected", rejected, 0);
    for route in ROUTES {
        check_route(&mut problems, conventions, &truth, &rows, route);
    }
    check_breakdown(&mut problems, &truth, &breakdown);
    check_errors(&mut problems, &truth, &groups);
    check_unrouted(&mut problems, &truth, &rows);

    let stored: BTreeMap<&str, String> = rows
        .iter()
        .map(|r| {
            (
                r.transaction.as_str(),
                format!(
                    "count {} errors {} rate {:?} mean {:.4} p50 {:.4} p95 {:.4} p99 {:.4} estimated {}",
                    r.count, r.errors, r.error_rate, r.mean, r.p50, r.p95, r.p99, r.estimated
                ),
            )
        })
        .collect();
    assert!(
        problems.0.is_empty(),
        "Node SDK, {conventions:?} HTTP conventions ({}): {} problem(s):\n- {}\n\nstored rows:\n  {}\nspans the SDK \
         sent:\n  {}",
        truth.sdk["versions"],
        problems.0.len(),
        problems.0.join("\n- "),
        stored
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n  "),
        truth.span_summary()
    );
    drop(store);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_old_http_conventions_answers_match_the_service() {
    answers_match_the_ground_truth(Conventions::Old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_stable_http_conventions_answers_match_the_service() {
    answers_match_the_ground_truth(Conventions::Stable).await;
}
