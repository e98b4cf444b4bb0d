//! Interop: what the agent sends decodes with the official Python classes (the
//! `opentelemetry-proto` package on PyPI) and passes the checks a strict
//! backend makes (`tests/python/check_otlp.py`). `tests/run-all.sh` installs
//! the package; without it these tests fail, saying so.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kuroko_agent::export::{Encoder, ExportConfig, ExportStats};
use kuroko_agent::{Agent, CapturedError, Harvest, Outcome, SegmentKind, TransactionSpec};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;

const CHECKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/check_otlp.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-proto package";

const GET_CARD: &str = "GET /cards/{id}";
const POST_CARD: &str = "POST /cards";
const ROLLUP: &str = "nightly-rollup";

/// SplitMix64: deterministic, varied samples without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Log-uniform between `low` and `high`, like real latencies.
    fn latency(&mut self, low: Duration, high: Duration) -> Duration {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let (low, high) = (low.as_secs_f64().ln(), high.as_secs_f64().ln());
        Duration::from_secs_f64((low + u * (high - low)).exp())
    }
}

/// A realistic interval: two web transactions with varied latencies and
/// outcomes (5xx among them) and segments, a job, and two distinct errors.
struct Scenario {
    harvest: Harvest,
    /// Runs recorded per transaction, in the order of the constants above.
    runs: [(&'static str, u64); 3],
}

fn scenario() -> Scenario {
    let agent = Agent::default();
    let mut random = Random(0x6b75_726f_6b6f);

    let get = agent.register(TransactionSpec::web("GET", "/cards/{id}").feature("cards"));
    let select = get.segment(SegmentKind::Database, "SELECT cards");
    let inventory = get.segment(SegmentKind::External, "GET inventory");
    let mut get_runs = 0;
    for i in 0..500u64 {
        let outcome = match i {
            _ if i % 50 == 7 => Outcome::Status(500),
            _ if i % 37 == 3 => Outcome::Status(503),
            _ if i % 23 == 5 => Outcome::Status(404),
            _ if i % 97 == 11 => Outcome::Status(301),
            _ if i % 61 == 13 => Outcome::Cancelled,
            _ => Outcome::Status(200),
        };
        let duration = random.latency(Duration::from_micros(300), Duration::from_millis(2_500));
        get.record_outcome(duration, outcome);
        get_runs += 1;
        if i % 4 != 0 {
            select.record(duration / 3);
        }
        if i % 10 == 0 {
            inventory.record(duration / 5);
        }
    }

    let post = agent.register(TransactionSpec::web("POST", "/cards").feature("cards"));
    let mut post_runs = 0;
    for i in 0..150u64 {
        let outcome = match i % 30 {
            0 => Outcome::Status(500),
            1 | 2 => Outcome::Status(422),
            _ => Outcome::Status(201),
        };
        post.record_outcome(
            random.latency(Duration::from_millis(2), Duration::from_millis(900)),
            outcome,
        );
        post_runs += 1;
    }

    agent.register(TransactionSpec::job(ROLLUP).feature("billing"));
    let mut rollup_runs = 0;
    for i in 0..40u64 {
        let duration = random.latency(Duration::from_secs(1), Duration::from_secs(3));
        if i % 13 == 4 {
            agent.record_outcome(ROLLUP, duration, Outcome::Error);
        } else {
            agent.record(ROLLUP, duration);
        }
        rollup_runs += 1;
    }
    agent.record(ROLLUP, Duration::from_secs(2));
    rollup_runs += 1;

    // The same error three times (one record, counted), and another.
    for _ in 0..3 {
        agent.capture_error(GET_CARD, CapturedError::new("DbTimeout", "SELECT cards took 5 s"));
    }
    agent.capture_error(
        ROLLUP,
        CapturedError::new("RollupFailed", "partition 2024-06 is missing"),
    );

    let harvest = agent.harvest();
    let runs = [(GET_CARD, get_runs), (POST_CARD, post_runs), (ROLLUP, rollup_runs)];
    for (name, count) in runs {
        let snapshot = harvest
            .transactions
            .iter()
            .find(|t| &*t.meta.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the harvest"));
        assert_eq!(snapshot.count, count, "the agent recorded every run of {name}");
    }
    Scenario { harvest, runs }
}

/// The agent's metrics request for `harvest` (decoded) and the number of
/// data points the agent counted in it.
fn metrics_request(harvest: &Harvest) -> (ExportMetricsServiceRequest, u64) {
    let started = SystemTime::now() - Duration::from_secs(3600);
    let encoded = encoder().metrics(harvest, ExportStats::default(), started);
    let request = ExportMetricsServiceRequest::decode(encoded.as_bytes()).expect("the agent's metrics decode");
    (request, encoded.items())
}

fn encoder() -> Encoder {
    Encoder::new(&ExportConfig::default().with_service_name("cards-api"), "fallback")
}

fn requests_without_errors(harvest: &Harvest) -> (ExportMetricsServiceRequest, Option<ExportLogsServiceRequest>) {
    let logs = encoder()
        .logs(harvest)
        .map(|logs| ExportLogsServiceRequest::decode(logs.as_bytes()).expect("the agent's logs decode"));
    (metrics_request(harvest).0, logs)
}

fn requests(harvest: &Harvest) -> (ExportMetricsServiceRequest, ExportLogsServiceRequest) {
    let (metrics, logs) = requests_without_errors(harvest);
    (metrics, logs.expect("the harvest has errors"))
}

/// A fresh directory for one run of the checker.
fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "kuroko-interop-{}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        tag
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the checker on `bytes`; fails the test, saying how to fix it, when
/// python3 or the package is missing.
fn run_checker(kind: &str, bytes: &[u8]) -> (Output, PathBuf) {
    let dir = scratch_dir(kind);
    let file = dir.join(format!("{kind}.pb"));
    std::fs::write(&file, bytes).unwrap();
    let output = match Command::new("python3").arg(CHECKER).arg(kind).arg(&file).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run python3 {CHECKER}: {error}"),
    };
    if output.status.code() == Some(3) {
        panic!(
            "python3 lacks the opentelemetry-proto package: {HOW_TO_INSTALL}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (output, dir)
}

/// The checker's `key=value` lines.
struct Summary(Vec<(String, String)>);

impl Summary {
    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> &str {
        match self.all(key)[..] {
            [value] => value,
            ref values => panic!("expected one {key}= line, got {values:?}"),
        }
    }

    /// Count of the histogram point of `transaction` in `metric`.
    fn histogram_count(&self, metric: &str, transaction: &str) -> u64 {
        let counts: Vec<u64> = self
            .all("histogram")
            .into_iter()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                let (name, count, tx) = (fields.next()?, fields.next()?, fields.next()?);
                (name == metric && tx == transaction).then(|| count.parse().unwrap())
            })
            .collect();
        assert_eq!(counts.len(), 1, "one {metric} point for {transaction}: {counts:?}");
        counts[0]
    }
}

/// Checks `bytes` as a strict backend would; panics with the checker's
/// findings if it refuses them.
fn check(kind: &str, bytes: &[u8]) -> Summary {
    let (output, dir) = run_checker(kind, bytes);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "check_otlp.py ({}) refused what the agent sends as {kind} (bytes kept in {}):\n{}{stdout}",
        output.status,
        dir.display(),
        String::from_utf8_lossy(&output.stderr),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let summary = Summary(
        stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    assert_eq!(summary.one("kind"), kind);
    assert_eq!(summary.one("roundtrip"), "ok");
    // Valid but questionable (see the checker): shown, not failed on.
    for warning in summary.all("warning") {
        eprintln!("check_otlp.py {kind}: warning: {warning}");
    }
    summary
}

#[test]
fn python_decodes_and_validates_metrics() {
    let scenario = scenario();
    let (metrics, _) = requests(&scenario.harvest);
    let summary = check("metrics", &metrics.encode_to_vec());

    assert_eq!(summary.one("service.name"), "cards-api");
    assert_eq!(summary.one("telemetry.sdk.name"), "kuroko-agent");
    assert_eq!(summary.one("scope"), "kuroko-agent");
    let [(_, get_runs), (_, post_runs), (_, rollup_runs)] = scenario.runs;
    assert_eq!(
        summary.histogram_count("http.server.request.duration", GET_CARD),
        get_runs
    );
    assert_eq!(
        summary.histogram_count("http.server.request.duration", POST_CARD),
        post_runs
    );
    assert_eq!(summary.histogram_count("kuroko.job.duration", ROLLUP), rollup_runs);

    let metrics_seen: Vec<&str> = summary
        .all("metric")
        .into_iter()
        .map(|line| line.split('\t').next().unwrap())
        .collect();
    for name in [
        "http.server.request.duration",
        "kuroko.job.duration",
        "kuroko.transaction.outcomes",
        "kuroko.transaction.apdex",
        "kuroko.segment.calls",
        "kuroko.segment.duration",
        "kuroko.segment.exclusive_duration",
        "kuroko.agent.series",
        "kuroko.agent.memory",
    ] {
        assert!(
            metrics_seen.contains(&name),
            "Python did not see {name}: {metrics_seen:?}"
        );
    }
    // Python saw every metric and data point the agent encoded.
    let encoded = &metrics.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics_seen.len(), encoded.len());
    assert_eq!(summary.one("points"), metrics_request(&scenario.harvest).1.to_string());
    let histograms = encoded
        .iter()
        .filter(|m| matches!(m.data, Some(metric::Data::ExponentialHistogram(_))))
        .count();
    assert_eq!(histograms, 2);
}

#[test]
fn python_decodes_and_validates_logs() {
    let scenario = scenario();
    let (_, logs) = requests(&scenario.harvest);
    let summary = check("logs", &logs.encode_to_vec());

    assert_eq!(summary.one("service.name"), "cards-api");
    assert_eq!(summary.one("scope"), "kuroko-agent");
    assert_eq!(summary.one("logs"), "2");
    let mut records = summary.all("log");
    records.sort_unstable();
    assert_eq!(
        records,
        [
            format!("1\tRollupFailed\t{ROLLUP}"),
            format!("3\tDbTimeout\t{GET_CARD}"),
        ]
    );
}

/// Runs of zero duration (a millisecond clock reads 0 for quick work) are
/// values of exactly zero: the data model counts them in `zero_count`, and a
/// positive bucket cannot hold them.
#[test]
fn python_sees_zero_durations_in_zero_count() {
    let agent = Agent::default();
    agent.register(TransactionSpec::job("cache-warmup"));
    let mut zeros = 0;
    for ms in 0..60u64 {
        let duration = Duration::from_millis(ms % 6);
        zeros += u64::from(duration.is_zero());
        agent.record("cache-warmup", duration);
    }
    let harvest = agent.harvest();
    let (metrics, _) = requests_without_errors(&harvest);
    let summary = check("metrics", &metrics.encode_to_vec());
    assert_eq!(summary.histogram_count("kuroko.job.duration", "cache-warmup"), 60);
    let Some(metric::Data::ExponentialHistogram(histogram)) =
        &metrics.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("the first metric is the job's histogram")
    };
    assert!(histogram.data_points[0].zero_count >= zeros);
}

/// The checks bite: messages a strict backend would refuse are refused.
#[test]
fn python_checker_refuses_invalid_messages() {
    let scenario = scenario();
    let (metrics, logs) = requests(&scenario.harvest);

    let refused = |kind: &str, bytes: Vec<u8>, expected: &str| {
        let (output, dir) = run_checker(kind, &bytes);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{kind} with {expected:?} accepted:\n{stderr}"
        );
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
        std::fs::remove_dir_all(dir).unwrap();
    };

    let mut bad = metrics.clone();
    for metric in &mut bad.resource_metrics[0].scope_metrics[0].metrics {
        if let Some(metric::Data::ExponentialHistogram(h)) = &mut metric.data {
            h.data_points[0].count += 1;
        }
    }
    refused("metrics", bad.encode_to_vec(), "!= zero_count");

    let mut bad = metrics.clone();
    for metric in &mut bad.resource_metrics[0].scope_metrics[0].metrics {
        if let Some(metric::Data::Sum(sum)) = &mut metric.data {
            sum.data_points[0].value = None;
        }
    }
    refused("metrics", bad.encode_to_vec(), "no value");

    let mut bad = metrics;
    bad.resource_metrics[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .retain(|kv| kv.key != "service.name");
    refused("metrics", bad.encode_to_vec(), "no service.name");

    let mut bad = logs.clone();
    bad.resource_logs[0].scope_logs[0].log_records[0].severity_number = 9;
    refused("logs", bad.encode_to_vec(), "expected ERROR (17)");

    refused("logs", vec![0xff, 0xff, 0xff], "does not parse");
}
