//! Interop: exceptions from the official Python OpenTelemetry SDK, the two
//! ways Python services send them (`tests/python/sdk_exceptions.py`), over
//! gRPC and over HTTP. `tests/run-all.sh` installs the packages; without them
//! these tests fail, saying so.
//!
//! - `KeyError` raised in `GET /orders/{id}`: recorded with
//!   `span.record_exception()` on an INTERNAL span of another tracer inside
//!   the SERVER span, and again by the SERVER span it escapes (status ERROR,
//!   500), twice (two order ids).
//! - `CardDeclined` raised deep in `POST /checkout`: logged as an ERROR log
//!   record with the exception (a traceback over 1 KiB) in the SERVER span's
//!   context but without any route attribute, twice (two users); the logs
//!   are exported before the spans.
//!
//! Expected: no point rejected, and exactly one error group per real error,
//! each in its own transaction (none under `(none)`), counted once per
//! occurrence, with its stack trace; the failed runs are outcomes of their
//! transactions, not error groups. Read from the store after the reporter
//! stopped, so the log records' tie to their transaction holds across a
//! restart.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::config::Config;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::serve::Running;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Filter, Store, NO_TRANSACTION};

const SENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/sdk_exceptions.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-sdk, \
     opentelemetry-exporter-otlp-proto-grpc and opentelemetry-exporter-otlp-proto-http packages";
const SERVICE: &str = "py-shop";

/// One real error the sender raised (an `error=` line).
#[derive(Debug)]
struct SentError {
    error_type: String,
    transaction: String,
    occurrences: u64,
    function: String,
    /// The lengths of the stack traces sent for it (one per occurrence
    /// and span, some equal).
    stack_bytes: Vec<usize>,
}

/// Requests of one transaction (a `request=` line).
#[derive(Debug)]
struct SentRequests {
    transaction: String,
    status: u16,
    runs: u64,
}

fn run_sender(protocol: &str, endpoint: &str) -> (Vec<SentError>, Vec<SentRequests>) {
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
    let (mut errors, mut requests) = (Vec::new(), Vec::new());
    for line in stdout.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let fields: Vec<&str> = value.split('\t').collect();
        match (key, fields.as_slice()) {
            ("error", [error_type, transaction, occurrences, function, stack_bytes]) => errors.push(SentError {
                error_type: (*error_type).to_owned(),
                transaction: (*transaction).to_owned(),
                occurrences: occurrences.parse().unwrap(),
                function: (*function).to_owned(),
                stack_bytes: stack_bytes.split(',').map(|n| n.parse().unwrap()).collect(),
            }),
            ("request", [transaction, status, runs]) => requests.push(SentRequests {
                transaction: (*transaction).to_owned(),
                status: status.parse().unwrap(),
                runs: runs.parse().unwrap(),
            }),
            _ => {}
        }
    }
    assert_eq!((errors.len(), requests.len()), (2, 2), "{stdout}");
    (errors, requests)
}

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

async fn start(tag: &str) -> (Running, PathBuf) {
    let dir = std::env::temp_dir().join(format!("kuroko-interop-exceptions-{}-{tag}", std::process::id()));
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

async fn exceptions_are_one_group_each_in_their_transaction(protocol: &'static str) {
    let (reporter, path) = start(protocol).await;
    let from = now_minute() - 1;
    let address = if protocol == "grpc" {
        reporter.grpc
    } else {
        reporter.http
    };
    let endpoint = format!("http://{address}");
    let (sent, requests) = tokio::task::spawn_blocking(move || run_sender(protocol, &endpoint))
        .await
        .unwrap();
    let rejected = reporter
        .receiver
        .stats
        .rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    reporter.stop().await;
    let to = now_minute() + 2;

    let store = SqliteStore::open(&path).unwrap();
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem);
        }
    };
    check(rejected == 0, format!("the reporter rejected {rejected} points"));
    let service = Filter {
        service: Some(SERVICE.to_owned()),
        ..Filter::default()
    };
    let rows = store.errors(&service, from, to).unwrap();
    check(
        rows.iter().all(|e| e.key.transaction != NO_TRANSACTION),
        format!("errors left without a transaction: {rows:#?}"),
    );

    let owners = Owners::empty();
    let groups = Analysis::new(&store, &owners).errors(&Scope::window(from, to)).unwrap();
    check(
        groups.len() == sent.len(),
        format!(
            "{} error groups, expected one per real error ({}): {:#?}",
            groups.len(),
            sent.len(),
            groups
                .iter()
                .map(|g| (&g.title, g.count, &g.transactions))
                .collect::<Vec<_>>()
        ),
    );
    for error in &sent {
        let Some(group) = groups.iter().find(|g| g.error_type == error.error_type) else {
            check(false, format!("no group of {}", error.error_type));
            continue;
        };
        let transactions: Vec<(&str, &str, u64)> = group
            .transactions
            .iter()
            .map(|t| (t.service.as_str(), t.transaction.as_str(), t.count))
            .collect();
        check(
            transactions == [(SERVICE, error.transaction.as_str(), error.occurrences)],
            format!(
                "{}: in {transactions:?}, expected {} {} times",
                error.error_type, error.transaction, error.occurrences
            ),
        );
        check(
            group.count == error.occurrences,
            format!(
                "{}: {} occurrences, sent {}",
                error.error_type, group.count, error.occurrences
            ),
        );
        check(
            error.stack_bytes.contains(&group.stacktrace.len())
                && group.stacktrace.contains(&format!(", in {}\n", error.function)),
            format!(
                "{}: stored stack trace of {} bytes, sent {:?} raised in {}:\n{}",
                error.error_type,
                group.stacktrace.len(),
                error.stack_bytes,
                error.function,
                group.stacktrace
            ),
        );
    }
    check(
        sent.iter().any(|e| e.stack_bytes.iter().any(|&n| n > 1024)),
        format!("a log record's traceback should be longer than the 1 KiB attribute limit: {sent:?}"),
    );

    // The failed runs: outcomes of their transactions, counted once each.
    let outcomes = store
        .counters(&service, "kuroko.transaction.outcomes", from, to)
        .unwrap();
    for request in &requests {
        let class = format!("kuroko.outcome={}xx", request.status / 100);
        let counted: Vec<(&str, f64)> = outcomes
            .iter()
            .filter(|(key, _, _)| key.transaction == request.transaction)
            .map(|(_, labels, value)| (labels.as_str(), *value))
            .collect();
        check(
            counted == [(class.as_str(), request.runs as f64)],
            format!(
                "outcomes of {}: {counted:?}, expected {} {class}",
                request.transaction, request.runs
            ),
        );
    }
    assert!(problems.is_empty(), "over {protocol}:\n- {}", problems.join("\n- "));
    drop(store);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_exceptions_over_grpc_are_one_group_each() {
    exceptions_are_one_group_each_in_their_transaction("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_exceptions_over_http_are_one_group_each() {
    exceptions_are_one_group_each_in_their_transaction("http").await;
}
