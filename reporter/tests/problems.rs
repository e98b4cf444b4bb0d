//! Performance problems found in real data with planted patterns: runs
//! recorded by Kuroko's agent and spans sent by the official Python
//! OpenTelemetry SDK (`tests/python/sdk_problems.py`), each through a
//! reporter on loopback into its store. In both, an N+1 loop, two
//! sequential independent calls and one query at 80% of its run are each
//! found once, with their statement, count and time; transactions that
//! repeat cheap queries or make cheap calls one after the other are not
//! flagged. The answer is checked as the API and `kuroko query problems`
//! give it too, and a problem is resolved and ignored like an error group;
//! the SDK's case also through a ClickHouse replica.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kuroko_agent::export::{ExportConfig, Protocol};
use kuroko_agent::{Agent, SegmentKind, TransactionSpec};
use kuroko_reporter::analysis::problems::{Pattern, ProblemGroup, Problems, Thresholds};
use kuroko_reporter::analysis::triage::Status;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::api::{self, query::Question};
use kuroko_reporter::app::App;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::Store;

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;

const SENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/sdk_problems.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-sdk and \
     opentelemetry-exporter-otlp-proto-http packages";

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

/// A reporter on loopback with a fresh store: a SQLite file in a folder of
/// its own, or a database of the test ClickHouse server (`clickhouse`, its
/// journal in the folder). The reporter and the store's location.
async fn start(tag: &str, clickhouse: bool) -> (kuroko_reporter::serve::Running, String) {
    let dir = std::env::temp_dir().join(format!("kuroko-problems-{}-{tag}", std::process::id()));
    clickhouse_server::serve_fresh(&dir, &format!("problems_{tag}"), clickhouse).await
}

fn open(location: &str) -> Arc<dyn Store> {
    if ClickHouseStore::is_url(location) {
        Arc::new(ClickHouseStore::connect(location).unwrap())
    } else {
        Arc::new(SqliteStore::open(Path::new(location)).unwrap())
    }
}

/// The problems the store at `location` holds over the last minutes.
fn problems(location: &str, thresholds: &Thresholds) -> Problems {
    let store = open(location);
    let owners = Owners::empty();
    let analysis = Analysis::new(store.as_ref(), &owners).with_problem_thresholds(thresholds);
    analysis
        .problems(&Scope::window(now_minute() - 10, now_minute() + 2))
        .unwrap()
}

/// The one group of `pattern` in `transaction`; fails listing every group otherwise.
fn one<'a>(problems: &'a Problems, transaction: &str, pattern: Pattern) -> &'a ProblemGroup {
    let found: Vec<&ProblemGroup> = problems
        .groups
        .iter()
        .filter(|g| g.transaction == transaction && g.pattern == pattern)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {pattern:?} in {transaction}: {:#?}",
        listing(problems)
    );
    found[0]
}

fn listing(problems: &Problems) -> Vec<String> {
    problems
        .groups
        .iter()
        .map(|g| {
            format!(
                "{} {:?} {:?} ×{} {:.3}s cost {:.3}s",
                g.transaction, g.pattern, g.statement, g.count_per_run, g.seconds_per_run, g.cost_per_run
            )
        })
        .collect()
}

/// `got` within 2% (and 3 ms) of `expected`: the agent's clock and the
/// test's `Instant` read the same sleeps.
fn close(what: &str, got: f64, expected: f64) {
    assert!(
        (got - expected).abs() <= expected * 0.02 + 0.003,
        "{what}: {got:.4} s, expected {expected:.4} s"
    );
}

/// Sleeps `ms` inside a segment of `run`; how long the segment took, as the test measured it.
fn segment(run: &kuroko_agent::TransactionGuard, kind: SegmentKind, name: &str, ms: u64) -> f64 {
    let started = Instant::now();
    let guard = run.segment(kind, name);
    std::thread::sleep(Duration::from_millis(ms));
    drop(guard);
    started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_problems_in_the_agents_runs_are_found_once_and_clean_runs_are_not() {
    let (reporter, dir) = start("agent", false).await;
    let agent = Agent::default();
    let exporter = agent
        .export(
            ExportConfig::default()
                .with_protocol(Protocol::HttpProtobuf)
                .with_endpoint(format!("http://{}", reporter.http))
                .with_interval(Duration::from_millis(200))
                .with_service_name("shop")
                .with_host_name("web-1"),
        )
        .unwrap();
    let apdex = Duration::from_millis(5);
    let export = agent.register(TransactionSpec::web("GET", "/orders/{id}/export").apdex(apdex));
    let quote = agent.register(TransactionSpec::web("GET", "/quote").apdex(apdex));
    let report = agent.register(TransactionSpec::web("GET", "/reports/{id}").apdex(apdex));
    let products = agent.register(TransactionSpec::web("GET", "/products").apdex(apdex));
    let cart = agent.register(TransactionSpec::web("GET", "/cart").apdex(apdex));
    let (mut loop_seconds, mut saved, mut slow, mut runs) = (0.0, 0.0, (0.0, 0.0), 0.0);
    for _ in 0..2 {
        runs += 1.0;
        {
            let run = export.start();
            segment(&run, SegmentKind::Database, "SELECT orders", 2);
            for _ in 0..8 {
                loop_seconds += segment(&run, SegmentKind::Database, "SELECT order_lines", 15);
            }
        }
        {
            let run = quote.start();
            let first = segment(&run, SegmentKind::External, "GET prices.internal/quote", 120);
            let second = segment(&run, SegmentKind::External, "GET stock.internal/levels", 150);
            saved += first.min(second);
        }
        {
            let started = Instant::now();
            let run = report.start();
            let query = segment(&run, SegmentKind::Database, "SELECT totals", 400);
            segment(&run, SegmentKind::Code, "render", 100);
            drop(run);
            slow.0 += query;
            slow.1 += query / started.elapsed().as_secs_f64();
        }
        {
            let run = products.start();
            for _ in 0..20 {
                segment(&run, SegmentKind::Database, "SELECT price", 1);
            }
        }
        {
            let run = cart.start();
            segment(&run, SegmentKind::External, "GET prices.internal/cart", 10);
            segment(&run, SegmentKind::External, "GET stock.internal/cart", 10);
        }
    }
    exporter.shutdown().await;
    reporter.stop().await;

    // A generous gap between calls: the thread may be descheduled between
    // two segments on a loaded machine (the default, 20 ms, is tested on
    // exact spans below and in the unit tests).
    let mut thresholds = Thresholds::default();
    thresholds.sequential.max_gap_seconds = 0.1;
    let found = problems(&dir, &thresholds);
    assert_eq!(found.groups.len(), 3, "{:#?}", listing(&found));
    let n_plus_one = one(&found, "GET /orders/{id}/export", Pattern::NPlusOne);
    assert_eq!(
        (n_plus_one.statement.as_str(), n_plus_one.count_per_run),
        ("SELECT order_lines", 8.0)
    );
    assert_eq!((n_plus_one.runs_affected, n_plus_one.runs_examined), (2, 2));
    close("the N+1's time a run", n_plus_one.seconds_per_run, loop_seconds / runs);
    let sequential = one(&found, "GET /quote", Pattern::Sequential);
    assert_eq!(
        (sequential.statement.as_str(), sequential.count_per_run),
        ("GET prices.internal/quote → GET stock.internal/levels", 2.0)
    );
    close("the time overlapping would save", sequential.cost_per_run, saved / runs);
    let dominant = one(&found, "GET /reports/{id}", Pattern::Dominant);
    assert_eq!(
        (dominant.statement.as_str(), dominant.count_per_run),
        ("SELECT totals", 1.0)
    );
    close("the slow query's time", dominant.seconds_per_run, slow.0 / runs);
    assert!(
        (dominant.cost_share - slow.1 / runs).abs() < 0.02,
        "the slow query's share: {} against {}",
        dominant.cost_share,
        slow.1 / runs
    );
    // Every marked span of the example is the statement's.
    let marked: Vec<&str> = n_plus_one
        .example
        .spans
        .iter()
        .filter(|s| s.marked)
        .map(|s| s.statement.as_str())
        .collect();
    assert_eq!(marked, ["SELECT order_lines"; 8]);
    recorded_at_shutdown(&dir, n_plus_one);
}

/// The reporter recorded `group` when it stopped, from its first run on:
/// its first seen outlives the kept traces.
fn recorded_at_shutdown(location: &str, group: &ProblemGroup) {
    let recorded = open(location).problems_seen().unwrap();
    assert!(
        recorded
            .iter()
            .any(|seen| seen.group == group.id && seen.first_seen == group.first_seen),
        "{} first seen at {} recorded: {recorded:?}",
        group.id,
        group.first_seen
    );
}

/// Runs the SDK sender against `endpoint`; fails saying how to fix it when
/// python3 or the packages are missing.
fn run_sender(endpoint: &str) {
    let output = match Command::new("python3").arg(SENDER).arg(endpoint).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run python3 {SENDER}: {error}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!("python3 lacks the OpenTelemetry SDK packages: {HOW_TO_INSTALL}\n{stderr}");
    }
    assert!(
        output.status.success(),
        "{SENDER} failed ({}):\n{stderr}",
        output.status
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "runs=3", "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_problems_in_python_sdk_spans_are_found_once_with_exact_numbers() {
    sdk_problems(false).await;
}

/// The same through a ClickHouse replica: its kept traces read back as the
/// embedded store's are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_problems_in_python_sdk_spans_are_found_through_clickhouse() {
    sdk_problems(true).await;
}

async fn sdk_problems(clickhouse: bool) {
    let (reporter, dir) = start(if clickhouse { "sdk_clickhouse" } else { "sdk" }, clickhouse).await;
    let endpoint = format!("http://{}", reporter.http);
    tokio::task::spawn_blocking(move || run_sender(&endpoint))
        .await
        .unwrap();
    reporter.stop().await;

    let found = problems(&dir, &Thresholds::default());
    assert_eq!(found.groups.len(), 3, "{:#?}", listing(&found));
    assert_eq!(found.runs_examined, 15, "five transactions, three runs each");
    let exact =
        |what: &str, got: f64, expected: f64| assert!((got - expected).abs() < 1e-6, "{what}: {got} ≠ {expected}");
    let n_plus_one = one(&found, "GET /orders/{id}/export", Pattern::NPlusOne);
    assert_eq!(n_plus_one.statement, "SELECT * FROM order_lines WHERE order_id = ?");
    assert_eq!((n_plus_one.count_per_run, n_plus_one.runs_affected), (8.0, 3));
    exact("the N+1's time a run", n_plus_one.seconds_per_run, 0.2);
    exact("its share of the run", n_plus_one.cost_share, 0.2 / 0.3);
    let sequential = one(&found, "GET /quote", Pattern::Sequential);
    assert_eq!(
        sequential.statement,
        "GET prices.internal/quote → GET stock.internal/levels/?"
    );
    assert_eq!(sequential.count_per_run, 2.0);
    exact("the calls' time", sequential.seconds_per_run, 0.35);
    exact("the time overlapping saves", sequential.cost_per_run, 0.15);
    let dominant = one(&found, "GET /reports/{id}", Pattern::Dominant);
    assert_eq!(dominant.statement, "SELECT sum(total) FROM orders WHERE day > ?");
    exact("the slow query's time", dominant.seconds_per_run, 0.8);
    exact("its share", dominant.cost_share, 0.8);
    // Every run is traced here: the time a day is the runs' own.
    let days = found.scope.minutes() as f64 / 1_440.0;
    exact("the N+1's time a day", n_plus_one.seconds_per_day, 3.0 * 0.2 / days);
    recorded_at_shutdown(&dir, n_plus_one);

    // The same answer through the API's question and `kuroko query`'s table.
    let app = App::new(open(&dir), Arc::new(Owners::empty()), String::new(), None);
    let (_, answer) = api::answer_now(&app, Question::Problems, &[("since".into(), "15m".into())]).unwrap();
    assert_eq!(answer["total_groups"], 3, "{answer}");
    let table = api::render::table(Question::Problems, &answer);
    assert!(
        table.contains("SELECT * FROM order_lines WHERE order_id = ?"),
        "{table}"
    );
    assert!(!table.contains("/products") && !table.contains("/cart"), "{table}");

    // Triage as for error groups: resolved, then ignored.
    let id = n_plus_one.id.clone();
    api::decide_now(&app, &id, "resolve", &[], "test").unwrap();
    let (_, answer) = api::answer_now(&app, Question::Problems, &[("since".into(), "15m".into())]).unwrap();
    let group = answer["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id.as_str())
        .unwrap();
    assert_eq!(group["triage"]["status"], Status::Resolved.as_str(), "{group}");
    api::decide_now(&app, &id, "ignore", &[], "test").unwrap();
    let again = problems(&dir, &Thresholds::default());
    assert_eq!(again.open().count(), 2, "an ignored problem is not open");
    let unknown = api::decide_now(&app, "00000000000000aa", "resolve", &[], "test").unwrap_err();
    assert!(
        unknown.to_string().contains("no error group or performance problem"),
        "{unknown}"
    );
}
