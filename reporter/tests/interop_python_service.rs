//! Interop with ground truth: a Python HTTP service instrumented with the
//! official OpenTelemetry SDK (`tests/python/sdk_service.py`) serves a seeded
//! set of requests and writes down each one's route, status and duration; a
//! real `kuroko serve` (the binary cargo built for these tests) receives its
//! OTLP, and is killed with SIGKILL and restarted on the same ports halfway,
//! between two exports of the same cumulative streams. The answers a user
//! reads (`kuroko query slowest`'s rows, through `Analysis`) must match what
//! the service did:
//! - runs per route: exact (the restart must not count the first half again,
//!   and the SERVER spans must not count the runs a second time);
//! - errors (5xx) and error rate: exact, from the metric's
//!   `http.response.status_code`;
//! - p50, p95, p99: inside the explicit bucket that holds the true value
//!   (explicit buckets, then the row says `estimated`), or within 1% of it
//!   (exponential buckets, scale ≤ 7);
//! - the mean: exact;
//! - `GET /orders/{id}`'s breakdown: one external call per run, its share of
//!   the time within 2 points of the service's own (half of each run is a
//!   CLIENT span), and one error group for its declined payments (recorded
//!   as exception span events), in its transaction, counted once per 500.
//!
//! Three shapes: explicit buckets with the advised bounds and cumulative
//! temporality over HTTP, exponential buckets cumulative over gRPC, and
//! exponential buckets delta over HTTP; and the common mistake of recording
//! seconds into the SDK's default (millisecond) bounds, which Kuroko must
//! detect and explain.
//!
//! `tests/run-all.sh` installs the Python packages; without them these tests
//! fail, saying so.

#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
use kuroko_serve::Serve;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kuroko_reporter::analysis::endpoints::{EndpointRow, Rank};
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::sqlite::SqliteStore;

const SERVICE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/sdk_service.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-sdk and \
     opentelemetry-exporter-otlp-proto-{grpc,http} packages";
const SERVICE: &str = "py-orders";
const ADVISED: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The reporter's resolution: a bucket of scale 7.
const RESOLUTION: f64 = 1.005_430_9;

/// `kuroko serve` on `store`, at the given addresses (port 0: any).
fn start_reporter(store: &Path, grpc: &str, http: &str) -> Serve {
    Serve::start(&[
        OsStr::new("--grpc"),
        grpc.as_ref(),
        "--http".as_ref(),
        http.as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
    ])
}

/// The service's ground truth: per route, (status, seconds) of each request.
#[derive(Debug, Default)]
struct Truth {
    sdk: String,
    /// (status, seconds, seconds in the outgoing call).
    requests: BTreeMap<String, Vec<(u16, f64, Option<f64>)>>,
}

/// Runs the service against `reporter`; with `restart`, kills the reporter
/// when the service pauses halfway and starts it again on the same ports.
fn run_service(reporter: Serve, store: &Path, shape: [&str; 3], restart: bool) -> (Truth, Serve) {
    let [protocol, temporality, aggregation] = shape;
    let address = if protocol == "grpc" {
        &reporter.grpc
    } else {
        &reporter.http
    };
    let mut command = Command::new("python3");
    command
        .arg(SERVICE_SCRIPT)
        .args([protocol, &format!("http://{address}"), temporality, aggregation])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if restart {
        command.arg("--pause");
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run python3 {SERVICE_SCRIPT}: {error}"),
    };
    let mut stdin: ChildStdin = child.stdin.take().unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut truth = Truth::default();
    let mut reporter = Some(reporter);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "paused" {
            let (grpc, http) = reporter.take().unwrap().kill();
            reporter = Some(start_reporter(store, &grpc, &http));
            writeln!(stdin, "go on").unwrap();
            stdin.flush().unwrap();
        } else if let Some(version) = line.strip_prefix("sdk=") {
            truth.sdk = version.to_owned();
        } else if let Some(request) = line.strip_prefix("request=") {
            let fields: Vec<&str> = request.split('\t').collect();
            assert_eq!(fields.len(), 4, "{line:?}");
            truth.requests.entry(fields[0].to_owned()).or_default().push((
                fields[1].parse().unwrap(),
                fields[2].parse().unwrap(),
                fields[3].parse().ok(),
            ));
        }
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!("python3 lacks the OpenTelemetry SDK packages: {HOW_TO_INSTALL}\n{stderr}");
    }
    assert!(
        output.status.success(),
        "{SERVICE_SCRIPT} {shape:?} failed ({}): {stderr}",
        output.status
    );
    assert_eq!(truth.requests.values().map(Vec::len).sum::<usize>(), 240, "{truth:?}");
    (truth, reporter.unwrap())
}

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

fn temp_store(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-py-service-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("kuroko.db")
}

/// The nearest-rank value at `q` of sorted `values`.
fn nearest_rank(values: &[f64], q: f64) -> f64 {
    let rank = ((q * values.len() as f64).ceil() as usize).max(1);
    values[rank - 1]
}

/// The explicit bucket `(low, high]` of `bounds` that holds `value`.
fn bucket_of(bounds: &[f64], value: f64) -> (f64, f64) {
    let at = bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len());
    let low = if at == 0 { 0.0 } else { bounds[at - 1] };
    (low, bounds.get(at).copied().unwrap_or(f64::INFINITY))
}

/// Every mismatch, reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }
}

/// The rows a user reads for the service, from the store the reporter left.
fn rows(store: &Path, from: i64) -> Vec<EndpointRow> {
    let store = SqliteStore::open(store).unwrap();
    let owners = Owners::empty();
    Analysis::new(&store, &owners)
        .slowest(&scope(from), Rank::P50, 100)
        .unwrap()
        .rows
}

fn scope(from: i64) -> Scope {
    Scope {
        service: Some(SERVICE.to_owned()),
        ..Scope::window(from, now_minute() + 2)
    }
}

/// Where `GET /orders/{id}` spends its time, and the service's error groups,
/// against the service's record: the outgoing call's share of the time
/// within 2 points, and one error group for its declined payments, in its
/// transaction, counted once per 500.
fn check_breakdown_and_errors(problems: &mut Problems, store: &Path, from: i64, truth: &Truth) {
    let store = SqliteStore::open(store).unwrap();
    let owners = Owners::empty();
    let analysis = Analysis::new(&store, &owners);
    let name = "GET /orders/{id}";
    let orders = &truth.requests["/orders/{id}"];
    let total: f64 = orders.iter().map(|(_, s, _)| s).sum();
    let outgoing: f64 = orders.iter().filter_map(|(_, _, o)| *o).sum();
    let share = outgoing / total;
    let breakdown = analysis.breakdown(&scope(from), SERVICE, name, 5).unwrap();
    let external = breakdown.kinds.iter().find(|k| k.kind == "external");
    problems.check(external.is_some_and(|k| k.calls == orders.len() as f64), || {
        format!("{name}: external calls {external:?}, served {}", orders.len())
    });
    let stored = external.map_or(0.0, |k| k.share);
    problems.check((stored - share).abs() <= 0.02, || {
        format!("{name}: external share {stored:.3}, true {share:.3}")
    });
    let declined = orders.iter().filter(|(status, _, _)| *status >= 500).count() as u64;
    let groups = analysis.errors(&scope(from)).unwrap();
    // (title, occurrences, occurrences per transaction), per group.
    type Found = (String, u64, Vec<(String, u64)>);
    let found: Vec<Found> = groups
        .iter()
        .map(|g| {
            let transactions = g
                .transactions
                .iter()
                .map(|t| (t.transaction.clone(), t.count))
                .collect();
            (g.title.clone(), g.count, transactions)
        })
        .collect();
    problems.check(
        found.len() == 1
            && found[0].0.contains("PaymentDeclined")
            && found[0].1 == declined
            && found[0].2 == [(name.to_owned(), declined)],
        || format!("error groups: stored {found:?}, true one PaymentDeclined x{declined} in {name}"),
    );
}

/// Kuroko's rows against the service's own record.
fn check(problems: &mut Problems, rows: &[EndpointRow], truth: &Truth, bounds: Option<&[f64]>) {
    let names: Vec<&str> = rows.iter().map(|r| r.transaction.as_str()).collect();
    problems.check(names.len() == truth.requests.len(), || {
        format!("transactions: stored {names:?}, served {:?}", truth.requests.keys())
    });
    for (route, requests) in &truth.requests {
        let name = format!("GET {route}");
        let Some(row) = rows.iter().find(|r| r.transaction == name) else {
            problems.0.push(format!("no row for {name}"));
            continue;
        };
        let n = requests.len() as u64;
        let failed = requests.iter().filter(|(status, _, _)| *status >= 500).count() as u64;
        problems.check(row.count == n, || {
            format!("{name}: runs: stored {}, served {n}", row.count)
        });
        problems.check(row.errors == failed, || {
            format!("{name}: errors: stored {}, served {failed} 5xx", row.errors)
        });
        let rate = failed as f64 / n as f64;
        problems.check(row.error_rate.is_some_and(|r| (r - rate).abs() < 1e-9), || {
            format!("{name}: error rate: stored {:?}, true {rate}", row.error_rate)
        });
        let mut seconds: Vec<f64> = requests.iter().map(|(_, s, _)| *s).collect();
        seconds.sort_by(f64::total_cmp);
        let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
        problems.check((row.mean - mean).abs() <= 1e-9 * mean, || {
            format!("{name}: mean: stored {}, true {mean}", row.mean)
        });
        for (q, stored) in [(0.5, row.p50), (0.95, row.p95), (0.99, row.p99)] {
            let value = nearest_rank(&seconds, q);
            match bounds {
                Some(bounds) => {
                    let (low, high) = bucket_of(bounds, value);
                    problems.check(row.estimated && stored > low && stored <= high * RESOLUTION, || {
                        format!(
                            "{name}: p{}: stored {stored} (estimated: {}), outside ({low}, {high}], the explicit \
                             bucket of the true {value}",
                            q * 100.0,
                            row.estimated
                        )
                    });
                }
                None => problems.check((stored / value - 1.0).abs() <= 0.01, || {
                    format!(
                        "{name}: p{}: stored {stored}, true {value}: off by more than 1%",
                        q * 100.0
                    )
                }),
            }
        }
    }
}

/// One shape, sent across a kill -9 and restart of the reporter.
fn exact_across_a_restart(shape: [&str; 3], bounds: Option<&[f64]>) {
    let store = temp_store(&shape.join("-"));
    let from = now_minute() - 1;
    let reporter = start_reporter(&store, "127.0.0.1:0", "127.0.0.1:0");
    let started = Instant::now();
    let (truth, reporter) = run_service(reporter, &store, shape, true);
    reporter.kill();
    let rows = rows(&store, from);
    let mut problems = Problems::default();
    check(&mut problems, &rows, &truth, bounds);
    check_breakdown_and_errors(&mut problems, &store, from, &truth);
    assert!(
        problems.0.is_empty(),
        "SDK {} {shape:?}, reporter killed and restarted halfway ({:.1} s): {} problem(s):\n- {}\nrows: {rows:#?}",
        truth.sdk,
        started.elapsed().as_secs_f64(),
        problems.0.len(),
        problems.0.join("\n- ")
    );
    let _ = std::fs::remove_dir_all(store.parent().unwrap());
}

#[test]
fn explicit_cumulative_over_http_is_exact_across_a_restart() {
    exact_across_a_restart(["http", "cumulative", "advised"], Some(&ADVISED));
}

#[test]
fn exponential_cumulative_over_grpc_is_exact_across_a_restart() {
    exact_across_a_restart(["grpc", "cumulative", "exponential"], None);
}

#[test]
fn exponential_delta_over_http_is_exact_across_a_restart() {
    exact_across_a_restart(["http", "delta", "exponential"], None);
}

/// Seconds recorded into the SDK's default bounds, which are milliseconds:
/// every run lands in the bucket (0, 5]. Kuroko spreads them between the
/// stream's exact min and max (so the median is no longer the bucket's 2.5 s
/// but lies within the runs' range), flags the row estimated, and says what
/// to change in the SDK, in `kuroko query slowest`'s output.
#[test]
fn seconds_in_millisecond_bounds_are_detected_and_explained() {
    let store = temp_store("default-ms");
    let from = now_minute() - 1;
    let reporter = start_reporter(&store, "127.0.0.1:0", "127.0.0.1:0");
    let (truth, reporter) = run_service(reporter, &store, ["http", "cumulative", "default-ms"], false);
    reporter.kill();
    let rows = rows(&store, from);
    let mut problems = Problems::default();
    for (route, requests) in &truth.requests {
        let name = format!("GET {route}");
        let Some(row) = rows.iter().find(|r| r.transaction == name) else {
            problems.0.push(format!("no row for {name}"));
            continue;
        };
        let (min, max) = requests
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), (_, s, _)| (lo.min(*s), hi.max(*s)));
        problems.check(row.count == requests.len() as u64, || {
            format!("{name}: runs {}", row.count)
        });
        problems.check(row.estimated, || format!("{name}: not flagged estimated"));
        for stored in [row.p50, row.p95, row.p99] {
            problems.check(stored >= min && stored <= max, || {
                format!("{name}: a percentile {stored} outside the runs' range [{min}, {max}]")
            });
        }
    }
    // Until a minute from now: the runs of this very minute included.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args([
            "query",
            "slowest",
            "--since",
            "1h",
            "--until",
            &until.to_string(),
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    problems.check(output.status.success(), || {
        format!("kuroko query slowest failed: {output:?}")
    });
    for needed in [
        "py-orders",
        "seconds into millisecond bucket bounds",
        "explicit_bucket_boundaries_advisory",
    ] {
        problems.check(text.contains(needed), || {
            format!("kuroko query slowest does not say {needed:?}:\n{text}")
        });
    }
    assert!(
        problems.0.is_empty(),
        "{} problem(s):\n- {}",
        problems.0.len(),
        problems.0.join("\n- ")
    );
    let _ = std::fs::remove_dir_all(store.parent().unwrap());
}
