//! Interop: the official Python OpenTelemetry SDK (`opentelemetry-sdk` and the
//! OTLP exporters on PyPI) sends metrics, traces and logs to the reporter over
//! gRPC and over HTTP (`tests/python/sdk_sender.py`), and the store holds
//! exactly what it sent. `tests/run-all.sh` installs the packages; without
//! them these tests fail, saying so.
//!
//! What the sender does, and so what is expected (its summary gives the
//! numbers):
//! - `GET /orders/{id}`: 200 durations in an explicit-bucket histogram (the
//!   SDK's default aggregation), cumulative, exported in several snapshots
//!   between which the minimum drops. Stored: 200 runs, flagged `estimated`,
//!   the median in the explicit bucket that holds the true one.
//! - `GET /search`: 200 durations in an exponential histogram, cumulative,
//!   the SDK downscaling between snapshots. Stored: 200 runs, not estimated,
//!   the median within a bucket of the SDK's last scale.
//! - `GET /orders`: 5 SERVER spans (one answering 500), each with a CLIENT
//!   child `SELECT orders` (`db.system.name`). Stored: 5 runs with their exact
//!   durations, outcomes 4 ok and 1 5xx, 5 calls of a database segment, and
//!   the 5 traces, slowest first. The spans have a route of their own because
//!   the reporter adds a SERVER span's run to its transaction on top of any
//!   metric points for it.
//! - One ERROR log record (`OrderLost`) and one INFO record: one error.
//!
//! Every mismatch of a run is listed at once, so that one wrong number does
//! not hide the others. The SDK's data is checked through a ClickHouse
//! replica too (its journal, then ClickHouse's tables and roll-ups).

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::serve::Running;
use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{ErrorSummary, Filter, SeriesKey, Store, TracePoint};

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;

const SENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/sdk_sender.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-sdk, \
     opentelemetry-exporter-otlp-proto-grpc and opentelemetry-exporter-otlp-proto-http packages";

const SERVICE: &str = "py-shop";
const HOST: &str = "py-host-1";
const ORDER: &str = "GET /orders/{id}";
const SEARCH: &str = "GET /search";
const ORDERS: &str = "GET /orders";
const DATABASE_SEGMENT: &str = "kuroko.segment.kind=database,kuroko.segment.name=SELECT orders";

/// One histogram the sender recorded (a `metric=` line).
#[derive(Debug)]
struct SentMetric {
    transaction: String,
    aggregation: String,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    p50: f64,
    /// Explicit: the bucket holding the median, `(low, high]`; exponential:
    /// the scales of the first and the last snapshot.
    detail: (f64, f64),
}

/// One span the sender ended (a `span=` line).
#[derive(Debug)]
struct SentSpan {
    name: String,
    kind: String,
    status: String,
    seconds: f64,
}

/// What the sender says it sent.
#[derive(Debug, Default)]
struct Sent {
    sdk: String,
    metrics: Vec<SentMetric>,
    metric_exports: u64,
    spans: Vec<SentSpan>,
    /// (severity, exception type, message, location)
    logs: Vec<[String; 4]>,
}

impl Sent {
    fn parse(stdout: &str) -> Sent {
        let mut sent = Sent::default();
        for line in stdout.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let fields: Vec<&str> = value.split('\t').collect();
            let number = |i: usize| -> f64 {
                fields[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("field {i} of {line:?} is not a number"))
            };
            match key {
                "sdk" => sent.sdk = value.to_owned(),
                "metric_exports" => sent.metric_exports = value.parse().unwrap(),
                "metric" => {
                    assert_eq!(fields.len(), 8, "{line:?}");
                    let (a, b) = fields[7]
                        .split_once(',')
                        .unwrap_or_else(|| panic!("two numbers in the last field of {line:?}"));
                    sent.metrics.push(SentMetric {
                        transaction: fields[0].to_owned(),
                        aggregation: fields[1].to_owned(),
                        count: fields[2].parse().unwrap(),
                        sum: number(3),
                        min: number(4),
                        max: number(5),
                        p50: number(6),
                        detail: (a.parse().unwrap(), b.parse().unwrap()),
                    });
                }
                "span" => {
                    assert_eq!(fields.len(), 4, "{line:?}");
                    sent.spans.push(SentSpan {
                        name: fields[0].to_owned(),
                        kind: fields[1].to_owned(),
                        status: fields[2].to_owned(),
                        seconds: number(3),
                    });
                }
                "log" => {
                    assert_eq!(fields.len(), 4, "{line:?}");
                    sent.logs.push([0, 1, 2, 3].map(|i| fields[i].to_owned()));
                }
                _ => {}
            }
        }
        assert_eq!(sent.metrics.len(), 2, "two histograms sent: {stdout}");
        assert_eq!(sent.spans.len(), 10, "ten spans sent: {stdout}");
        assert_eq!(sent.logs.len(), 2, "two log records sent: {stdout}");
        sent
    }

    fn metric(&self, transaction: &str) -> &SentMetric {
        self.metrics
            .iter()
            .find(|m| m.transaction == transaction)
            .unwrap_or_else(|| panic!("the sender reported no metric for {transaction}: {self:?}"))
    }

    /// Durations of the spans of `kind`, shortest first.
    fn seconds(&self, kind: &str) -> Vec<f64> {
        let mut seconds: Vec<f64> = self
            .spans
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.seconds)
            .collect();
        seconds.sort_by(f64::total_cmp);
        seconds
    }
}

/// Runs the sender; fails the test, saying how to fix it, when python3 or the
/// packages are missing, and with the sender's output when it failed.
fn run_sender(protocol: &str, endpoint: &str) -> Sent {
    let output = match Command::new("python3").arg(SENDER).arg(protocol).arg(endpoint).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run python3 {SENDER}: {error}"),
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if output.status.code() == Some(3) {
        panic!("python3 lacks the OpenTelemetry SDK packages: {HOW_TO_INSTALL}\n{stderr}");
    }
    assert!(
        output.status.success(),
        "{SENDER} {protocol} {endpoint} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let sent = Sent::parse(&stdout);
    assert!(
        sent.metric_exports >= 4,
        "the metrics should arrive in several cumulative snapshots, not {}",
        sent.metric_exports
    );
    sent
}

/// Runs one sender per protocol at once, each its own process (with its own
/// `service.instance.id`), against `reporter`.
async fn send(reporter: &Running, protocols: &[&'static str]) -> Vec<Sent> {
    let senders: Vec<_> = protocols
        .iter()
        .map(|&protocol| {
            let address = if protocol == "grpc" {
                reporter.grpc
            } else {
                reporter.http
            };
            let endpoint = format!("http://{address}");
            tokio::task::spawn_blocking(move || run_sender(protocol, &endpoint))
        })
        .collect();
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(sender.await.unwrap());
    }
    sent
}

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

/// A reporter on loopback with a store of its own, fresh: a SQLite file in
/// its folder, or a database of the test ClickHouse server (`clickhouse`),
/// its journal in the folder. The store's location, and the folder.
async fn start(tag: &str, clickhouse: bool) -> (Running, String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("kuroko-interop-python-sdk-{}-{tag}", std::process::id()));
    let (reporter, store) =
        clickhouse_server::serve_fresh(&dir, &format!("interop_python_sdk_{tag}"), clickhouse).await;
    (reporter, store, dir)
}

/// The series of runs counted from `transaction`'s spans.
fn spans_key(transaction: &str) -> SeriesKey {
    SeriesKey {
        kind: "web.spans".to_owned(),
        ..key(transaction)
    }
}

fn key(transaction: &str) -> SeriesKey {
    SeriesKey {
        service: SERVICE.to_owned(),
        host: HOST.to_owned(),
        transaction: transaction.to_owned(),
        feature: String::new(),
        kind: "web".to_owned(),
        environment: String::new(),
    }
}

/// Everything the store holds for the service, around now.
struct Stored {
    histograms: Vec<(SeriesKey, Histogram)>,
    outcomes: Vec<(SeriesKey, String, f64)>,
    calls: Vec<(SeriesKey, String, f64)>,
    segment_seconds: Vec<(SeriesKey, String, f64)>,
    traces: Vec<TracePoint>,
    errors: Vec<ErrorSummary>,
}

impl Stored {
    fn read(location: &str, from: i64, to: i64) -> Stored {
        let store: Box<dyn Store> = if ClickHouseStore::is_url(location) {
            Box::new(ClickHouseStore::connect(location).unwrap())
        } else {
            Box::new(SqliteStore::open(Path::new(location)).unwrap())
        };
        let service = Filter {
            service: Some(SERVICE.to_owned()),
            ..Filter::default()
        };
        let counters = |name: &str| store.counters(&service, name, from, to).unwrap();
        Stored {
            histograms: store.histograms(&service, from, to).unwrap(),
            outcomes: counters("kuroko.transaction.outcomes"),
            calls: counters("kuroko.segment.calls"),
            segment_seconds: counters("kuroko.segment.duration"),
            traces: store.slowest_traces(&service, from, to, 100).unwrap(),
            errors: store.errors(&service, from, to).unwrap(),
        }
    }

    /// The histogram of `transaction`'s runs, counted from its metric or,
    /// when none counts them, from its spans.
    fn histogram(&self, transaction: &str) -> Option<&Histogram> {
        self.histograms
            .iter()
            .find(|(k, _)| *k == key(transaction) || *k == spans_key(transaction))
            .map(|(_, h)| h)
    }

    /// One line per series, for the failure message.
    fn summary(&self) -> String {
        self.histograms
            .iter()
            .map(|(k, h)| {
                format!(
                    "{}: count {} sum {} min {} max {} p50 {} scale {} estimated {}",
                    k.transaction,
                    h.count,
                    h.sum,
                    h.min,
                    h.max,
                    h.quantile(0.5),
                    h.scale,
                    h.estimated
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }
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
            format!("{what}: stored {stored:?}, expected {expected:?}")
        });
    }

    fn close(&mut self, what: &str, stored: f64, expected: f64) {
        self.check((stored - expected).abs() <= 1e-9 * expected.abs().max(1.0), || {
            format!("{what}: stored {stored}, expected {expected}")
        });
    }

    fn finish(self, run: &str, stored: &Stored, sent: &[Sent]) {
        assert!(
            self.0.is_empty(),
            "{run}: {} problem(s):\n- {}\n\nstored:\n  {}\nsent: {sent:?}",
            self.0.len(),
            self.0.join("\n- "),
            stored.summary()
        );
    }
}

/// The histograms of the two metrics: each run once, however many cumulative
/// snapshots carried it; `senders` processes sent the same.
fn check_metrics(problems: &mut Problems, stored: &Stored, sent: &Sent, senders: u64) {
    let (n, f) = (senders, senders as f64);
    let Some(order) = stored.histogram(ORDER) else {
        return problems.0.push(format!("no histogram for {ORDER}"));
    };
    let sent_order = sent.metric(ORDER);
    problems.equal(
        "GET /orders/{id} aggregation sent",
        sent_order.aggregation.as_str(),
        "explicit",
    );
    problems.equal(
        "runs of GET /orders/{id} (explicit buckets, cumulative snapshots between which the minimum drops)",
        order.count,
        n * sent_order.count,
    );
    problems.equal("GET /orders/{id} estimated (explicit buckets)", order.estimated, true);
    problems.close("sum of GET /orders/{id}", order.sum, f * sent_order.sum);
    problems.close("min of GET /orders/{id}", order.min, sent_order.min);
    problems.close("max of GET /orders/{id}", order.max, sent_order.max);
    let ((low, high), p50) = (sent_order.detail, order.quantile(0.5));
    problems.check(p50 > low && p50 <= high, || {
        format!(
            "p50 of GET /orders/{{id}}: stored {p50}, outside ({low}, {high}], the explicit bucket of the true \
             median {}",
            sent_order.p50
        )
    });

    let Some(search) = stored.histogram(SEARCH) else {
        return problems.0.push(format!("no histogram for {SEARCH}"));
    };
    let sent_search = sent.metric(SEARCH);
    problems.equal(
        "GET /search aggregation sent",
        sent_search.aggregation.as_str(),
        "exponential",
    );
    let (first_scale, last_scale) = sent_search.detail;
    problems.check(first_scale > last_scale, || {
        format!(
            "the SDK no longer downscales GET /search between snapshots ({first_scale}, {last_scale}): \
             tests/python/sdk_sender.py should make it"
        )
    });
    problems.equal(
        "runs of GET /search (exponential buckets, cumulative snapshots, downscaled)",
        search.count,
        n * sent_search.count,
    );
    problems.equal("GET /search estimated (exponential buckets)", search.estimated, false);
    problems.close("sum of GET /search", search.sum, f * sent_search.sum);
    problems.close("min of GET /search", search.min, sent_search.min);
    problems.close("max of GET /search", search.max, sent_search.max);
    // The metrics' outcomes: their points carry no status, so every run is ok.
    let metric_outcomes: Vec<_> = stored
        .outcomes
        .iter()
        .filter(|(k, _, _)| k.transaction != ORDERS)
        .cloned()
        .collect();
    problems.equal(
        "outcomes of the metrics' runs",
        metric_outcomes,
        vec![
            (key(ORDER), "kuroko.outcome=ok".to_owned(), f * sent_order.count as f64),
            (
                key(SEARCH),
                "kuroko.outcome=ok".to_owned(),
                f * sent_search.count as f64,
            ),
        ],
    );
    // Within a bucket of the last scale (at most the reporter's 7).
    let ratio = f64::exp2(f64::exp2(-last_scale.min(7.0)));
    let p50 = search.quantile(0.5);
    problems.check(p50 >= sent_search.p50 / ratio && p50 <= sent_search.p50 * ratio, || {
        format!(
            "p50 of GET /search: stored {p50}, more than a bucket (x{ratio}) from the true median {}",
            sent_search.p50
        )
    });
}

/// The SERVER spans' runs, outcomes, segments and kept traces.
fn check_traces(problems: &mut Problems, stored: &Stored, sent: &Sent) {
    let servers = sent.seconds("server");
    problems.equal("server spans sent", servers.len(), 5);
    problems.check(
        sent.spans
            .iter()
            .all(|s| s.name == if s.kind == "server" { ORDERS } else { "SELECT orders" }),
        || format!("spans sent under other names: {:?}", sent.spans),
    );
    let Some(runs) = stored.histogram(ORDERS) else {
        return problems.0.push(format!("no histogram for {ORDERS}"));
    };
    problems.equal("runs of GET /orders (SERVER spans)", runs.count, 5);
    problems.equal("GET /orders estimated (from spans)", runs.estimated, false);
    problems.close("sum of GET /orders", runs.sum, servers.iter().sum());
    problems.close("min of GET /orders", runs.min, servers[0]);
    problems.close("max of GET /orders", runs.max, servers[4]);
    let p50 = runs.quantile(0.5);
    problems.check((p50 / servers[2] - 1.0).abs() < 0.006, || {
        format!("p50 of GET /orders: stored {p50}, true {}", servers[2])
    });

    // The spans' outcomes from http.response.status_code, on the series of
    // runs counted from spans.
    let failed = sent.spans.iter().filter(|s| s.status.starts_with('5')).count() as f64;
    problems.equal("server spans answering 5xx sent", failed, 1.0);
    let span_outcomes: Vec<_> = stored
        .outcomes
        .iter()
        .filter(|(k, _, _)| k.transaction == ORDERS)
        .cloned()
        .collect();
    problems.equal(
        "outcomes of GET /orders",
        span_outcomes,
        vec![
            (spans_key(ORDERS), "kuroko.outcome=5xx".to_owned(), failed),
            (spans_key(ORDERS), "kuroko.outcome=ok".to_owned(), 5.0 - failed),
        ],
    );

    // The CLIENT children, with db.* attributes: a database segment.
    let clients = sent.seconds("client");
    problems.equal(
        "segment calls",
        stored.calls.clone(),
        vec![(key(ORDERS), DATABASE_SEGMENT.to_owned(), 5.0)],
    );
    match &stored.segment_seconds[..] {
        [(k, labels, seconds)] if *k == key(ORDERS) && labels == DATABASE_SEGMENT => {
            problems.close("segment duration", *seconds, clients.iter().sum());
        }
        other => problems.0.push(format!("segment duration: stored {other:?}")),
    }

    // The kept traces: all five, slowest first, each with its child.
    let traces = &stored.traces;
    problems.equal("kept traces", traces.len(), 5);
    problems.check(
        traces.iter().all(|t| t.key == key(ORDERS) && t.trace_id.len() == 32),
        || format!("kept traces of another series or with a malformed id: {traces:?}"),
    );
    let mut ids: Vec<&str> = traces.iter().map(|t| t.trace_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    problems.equal("distinct kept traces", ids.len(), traces.len());
    let durations: Vec<f64> = traces.iter().map(|t| t.duration).collect();
    let expected: Vec<f64> = servers.iter().rev().copied().collect();
    problems.check(
        durations.len() == expected.len() && durations.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-9),
        || format!("kept traces' durations: stored {durations:?}, expected {expected:?}"),
    );
    let Some(slowest) = traces.first() else {
        return;
    };
    let spans: serde_json::Value = serde_json::from_str(&slowest.spans).unwrap();
    let field = |i: usize, name: &str| spans[i][name].as_str().map(str::to_owned);
    let attribute = |i: usize, name: &str| spans[i]["attributes"][name].as_str().map(str::to_owned);
    problems.equal("spans in the slowest trace", spans.as_array().map(Vec::len), Some(2));
    problems.equal(
        "the slowest trace's run",
        (
            field(0, "name"),
            field(0, "kind"),
            attribute(0, "http.response.status_code"),
        ),
        (Some(ORDERS.to_owned()), Some("web".to_owned()), Some("500".to_owned())),
    );
    problems.equal(
        "the slowest trace's child",
        (field(1, "name"), field(1, "kind"), attribute(1, "db.system.name")),
        (
            Some("SELECT orders".to_owned()),
            Some("database".to_owned()),
            Some("postgresql".to_owned()),
        ),
    );
}

/// The ERROR record is the one error, `senders` times; the INFO record is none.
fn check_logs(problems: &mut Problems, stored: &Stored, sent: &Sent, senders: u64) {
    let [_, error_type, message, location] = sent
        .logs
        .iter()
        .find(|l| l[0] == "ERROR")
        .expect("the sender logged an error")
        .clone();
    let errors: Vec<_> = stored
        .errors
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                e.error_type.clone(),
                e.message.clone(),
                e.location.clone(),
                e.count,
            )
        })
        .collect();
    problems.equal(
        "errors",
        errors,
        vec![(key(ORDER), error_type, message, location, senders)],
    );
}

/// Sends everything with the SDK over `protocol` and checks the store
/// (ClickHouse's, through a replica, when `clickhouse`).
async fn sdk_data_is_stored_exactly(protocol: &'static str, clickhouse: bool) {
    let tag = format!("{protocol}{}", if clickhouse { "_clickhouse" } else { "" });
    let (reporter, path, dir) = start(&tag, clickhouse).await;
    let from = now_minute() - 1;
    let sent = send(&reporter, &[protocol]).await;
    let rejected = reporter
        .receiver
        .stats
        .rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    reporter.stop().await;
    let stored = Stored::read(&path, from, now_minute() + 2);

    let mut problems = Problems::default();
    problems.equal("points the reporter rejected", rejected, 0);
    let mut series: Vec<&str> = stored.histograms.iter().map(|(k, _)| k.transaction.as_str()).collect();
    series.sort_unstable();
    problems.equal(
        "series (all on the resource's service and host)",
        series,
        vec![ORDERS, ORDER, SEARCH],
    );
    check_metrics(&mut problems, &stored, &sent[0], 1);
    check_traces(&mut problems, &stored, &sent[0]);
    check_logs(&mut problems, &stored, &sent[0], 1);
    problems.finish(&format!("SDK {} over {tag}", sent[0].sdk), &stored, &sent);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc_is_stored_exactly() {
    sdk_data_is_stored_exactly("grpc", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_is_stored_exactly() {
    sdk_data_is_stored_exactly("http", false).await;
}

/// The same through a ClickHouse replica: acknowledged from its journal,
/// then in ClickHouse's tables, read back as exactly what the SDK sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_through_a_clickhouse_replica_is_stored_exactly() {
    sdk_data_is_stored_exactly("http", true).await;
}

/// Two processes of one service on one host, as a Python web server's
/// workers are: same resource `service.name` and `host.name`, each its own
/// `service.instance.id` and its own cumulative streams. Each run counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_python_processes_of_one_service_each_count_once() {
    let (reporter, path, dir) = start("two-processes", false).await;
    let from = now_minute() - 1;
    let sent = send(&reporter, &["grpc", "http"]).await;
    reporter.stop().await;
    let stored = Stored::read(&path, from, now_minute() + 2);

    let mut problems = Problems::default();
    check_metrics(&mut problems, &stored, &sent[0], 2);
    problems.equal(
        "runs of GET /orders (SERVER spans of both)",
        stored.histogram(ORDERS).map(|h| h.count),
        Some(10),
    );
    check_logs(&mut problems, &stored, &sent[0], 2);
    problems.finish("two SDK processes", &stored, &sent);
    let _ = std::fs::remove_dir_all(dir);
}
