//! One test per row of the table in docs/agent-config.md: the `OTEL_*`
//! variables, given through `ExportConfig::with_lookup` (never the process's
//! environment, so tests run side by side), and what a loopback sink then
//! receives: paths, headers, compression, timing, resource.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kuroko_agent::export::{ExportConfig, Exporter, Protocol};
use kuroko_agent::{Agent, CapturedError, TransactionSpec};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use support::sink::{paths, Received, Sink};

const GRPC_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn lookup(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name| map.get(name).cloned()
}

/// An agent with one error and one slow run waiting, so that the first
/// interval sends all three signals.
fn busy_agent() -> Agent {
    let agent = Agent::default();
    let slow = agent.register(TransactionSpec::web("GET", "/slow").apdex(Duration::from_millis(1)));
    let run = slow.start();
    std::thread::sleep(Duration::from_millis(8));
    drop(run);
    agent.capture_error("GET /slow", CapturedError::new("Timeout", "upstream took too long"));
    agent
}

/// Exports `agent` every 100 ms with `code` as the program's settings and
/// `env` as the variables.
fn export(agent: &Agent, code: ExportConfig, env: &[(&str, String)]) -> Exporter {
    let interval = code.interval.unwrap_or(Duration::from_millis(100));
    let config = code.with_interval(interval).with_lookup(lookup(env));
    agent.export(config).expect("a valid configuration")
}

fn has(path: &str) -> impl Fn(&[Received]) -> bool + '_ {
    move |received| received.iter().any(|r| r.path == path)
}

fn first<'a>(received: &'a [Received], path: &str) -> &'a Received {
    received
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("nothing at {path}: {:?}", paths(received)))
}

/// Waits until `done` holds, failing if `seconds` pass from `started` first.
async fn within(started: std::time::Instant, seconds: u64, what: &str, done: impl Fn() -> bool) {
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(seconds),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_grpc_sends_every_signal_over_grpc() {
    let sink = Sink::plain().await;
    let agent = busy_agent();
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
        ],
    );
    let received = sink
        .wait_for("the three gRPC exports", |r| {
            [GRPC_METRICS, GRPC_LOGS, GRPC_TRACES].iter().all(|p| has(p)(r))
        })
        .await;
    assert!(received.iter().all(Received::grpc), "{:?}", paths(&received));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_protocol_wins_over_the_generic_one() {
    let sink = Sink::plain().await;
    let agent = busy_agent();
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
        ],
    );
    let received = sink
        .wait_for("metrics over HTTP, traces over gRPC", |r| {
            has("/v1/metrics")(r) && has(GRPC_TRACES)(r)
        })
        .await;
    assert!(!first(&received, "/v1/metrics").grpc());
    assert!(!has(GRPC_METRICS)(&received));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_endpoint_gets_the_signal_paths_appended() {
    let sink = Sink::plain().await;
    let agent = busy_agent();
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}/base/", sink.address))],
    );
    sink.wait_for("/base/v1/{metrics,logs,traces}", |r| {
        ["/base/v1/metrics", "/base/v1/logs", "/base/v1/traces"]
            .iter()
            .all(|p| has(p)(r))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_endpoint_is_used_as_is_over_http() {
    let sink = Sink::plain().await;
    let agent = busy_agent();
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                format!("http://{}/custom/m", sink.address),
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("http://{}", sink.address)),
        ],
    );
    let received = sink
        .wait_for("metrics at /custom/m, traces at /, logs at /v1/logs", |r| {
            has("/custom/m")(r) && has("/")(r) && has("/v1/logs")(r)
        })
        .await;
    assert!(!has("/v1/metrics")(&received) && !has("/v1/traces")(&received));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_endpoints_count_with_grpc_too() {
    let (generic, traces) = (Sink::plain().await, Sink::plain().await);
    let agent = busy_agent();
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", generic.address)),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{}", traces.address),
            ),
        ],
    );
    traces.wait_for("traces at their own endpoint", has(GRPC_TRACES)).await;
    let received = generic
        .wait_for("metrics and logs at the generic endpoint", |r| {
            has(GRPC_METRICS)(r) && has(GRPC_LOGS)(r)
        })
        .await;
    assert!(!has(GRPC_TRACES)(&received), "traces went to the generic endpoint too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_gives_a_grpc_target_without_scheme_plain_text() {
    let sink = Sink::plain().await;
    let agent = busy_agent();
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.address.to_string()),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true".into()),
        ],
    );
    sink.wait_for("metrics over plain gRPC", has(GRPC_METRICS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_percent_decoded_and_a_signal_variable_replaces_the_generic() {
    for protocol in ["http/protobuf", "grpc"] {
        let sink = Sink::plain().await;
        let agent = busy_agent();
        let code = ExportConfig::default()
            .with_header("x-from-code", "1")
            .with_header("x-team", "code");
        let _exporter = export(
            &agent,
            code,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20abc%3D, x-team=cards".into(),
                ),
                ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-only=logs".into()),
            ],
        );
        let (metrics, logs) = match protocol {
            "grpc" => (GRPC_METRICS, GRPC_LOGS),
            _ => ("/v1/metrics", "/v1/logs"),
        };
        let received = sink
            .wait_for("metrics and logs", |r| has(metrics)(r) && has(logs)(r))
            .await;
        let metrics = first(&received, metrics);
        assert_eq!(metrics.header("authorization"), Some("Bearer abc="), "{protocol}");
        assert_eq!(
            metrics.header("x-team"),
            Some("cards"),
            "{protocol}: the variable wins on a name"
        );
        assert_eq!(metrics.header("x-from-code"), Some("1"), "{protocol}");
        assert_eq!(metrics.header("x-only"), None, "{protocol}");
        let logs = first(&received, logs);
        assert_eq!(logs.header("x-only"), Some("logs"), "{protocol}");
        assert_eq!(
            logs.header("authorization"),
            None,
            "{protocol}: replaced by the logs variable"
        );
        assert_eq!(logs.header("x-team"), Some("code"), "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_timeout_wins_over_the_generic_one() {
    // The sink answers after 30 s; the generic 60 s timeout would wait for it.
    let sink = Sink::start(None, Duration::from_secs(30)).await;
    let agent = Agent::default();
    let started = std::time::Instant::now();
    let exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000".into()),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "300".into()),
        ],
    );
    sink.wait_for("a metrics export", has("/v1/metrics")).await;
    within(started, 20, "the 300 ms metrics timeout to end the export", || {
        exporter.stats().failed_exports > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_timeout_applies_and_zero_means_no_limit() {
    let sink = Sink::start(None, Duration::from_millis(1_500)).await;
    let agent = Agent::default();
    let started = std::time::Instant::now();
    let exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "200".into()),
        ],
    );
    within(started, 20, "the 200 ms timeout to end the export", || {
        exporter.stats().failed_exports > 0
    })
    .await;
    // 0: no limit, so the 1.5 s answer is waited for.
    let agent = Agent::default();
    let exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0".into()),
        ],
    );
    within(started, 30, "an export to be accepted", || exporter.sent_requests() > 0).await;
    assert_eq!(exporter.stats().failed_exports, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_generic_and_per_signal() {
    for (protocol, metrics, traces) in [
        ("http/protobuf", "/v1/metrics", "/v1/traces"),
        ("grpc", GRPC_METRICS, GRPC_TRACES),
    ] {
        let sink = Sink::plain().await;
        let agent = busy_agent();
        let _exporter = export(
            &agent,
            ExportConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "none".into()),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip".into()),
            ],
        );
        let received = sink
            .wait_for("metrics and traces", |r| has(metrics)(r) && has(traces)(r))
            .await;
        assert!(!first(&received, metrics).gzip, "{protocol}: metrics uncompressed");
        assert!(first(&received, traces).gzip, "{protocol}: traces gzip");
        ExportMetricsServiceRequest::decode(first(&received, metrics).body.as_slice())
            .expect("an uncompressed protobuf body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metric_export_interval_sets_the_pace() {
    let sink = Sink::plain().await;
    let agent = Agent::default();
    // Interval left unset in code: the variable's 250 ms apply (not 60 s).
    let config = ExportConfig::default().with_lookup(lookup(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
        ("OTEL_METRIC_EXPORT_INTERVAL", "250".into()),
    ]));
    let _exporter = agent.export(config).unwrap();
    let received = sink
        .wait_for("four metrics exports", |r| {
            r.iter().filter(|r| r.path == "/v1/metrics").count() >= 4
        })
        .await;
    let times: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/v1/metrics")
        .map(|r| r.at)
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(150),
            "exports {gap:?} apart, interval 250 ms"
        );
    }
}

fn resource_attribute(request: &ExportMetricsServiceRequest, key: &str) -> Option<String> {
    let resource = request.resource_metrics.first()?.resource.as_ref()?;
    let value = resource.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_name_and_resource_attributes_fill_what_the_code_left() {
    let sink = Sink::plain().await;
    let agent = Agent::default();
    let code = ExportConfig::default().with_environment("staging");
    let _exporter = export(
        &agent,
        code,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
            ("OTEL_SERVICE_NAME", "cards-api".into()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=loses,deployment.environment.name=prod,k8s.pod.name=api%2C7".into(),
            ),
        ],
    );
    let received = sink.wait_for("a metrics export", has("/v1/metrics")).await;
    let request = ExportMetricsServiceRequest::decode(first(&received, "/v1/metrics").body.as_slice()).unwrap();
    assert_eq!(
        resource_attribute(&request, "service.name").as_deref(),
        Some("cards-api")
    );
    assert_eq!(
        resource_attribute(&request, "deployment.environment.name").as_deref(),
        Some("staging"),
        "the code's value wins"
    );
    assert_eq!(resource_attribute(&request, "k8s.pod.name").as_deref(), Some("api,7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_set_in_code_win_over_the_variables() {
    let (code_sink, env_sink) = (Sink::plain().await, Sink::plain().await);
    let agent = Agent::default();
    let code = ExportConfig::default()
        .with_protocol(Protocol::HttpProtobuf)
        .with_endpoint(format!("http://{}", code_sink.address))
        .with_compression(kuroko_agent::export::Compression::Gzip);
    let _exporter = export(
        &agent,
        code,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", env_sink.address)),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                format!("http://{}/m", env_sink.address),
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none".into()),
        ],
    );
    let received = code_sink
        .wait_for("metrics where the code said", has("/v1/metrics"))
        .await;
    assert!(first(&received, "/v1/metrics").gzip);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env_sink.received().is_empty(),
        "the variables' endpoint got {:?}",
        paths(&env_sink.received())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_are_logged_by_name_and_the_defaults_apply() {
    support::logs::capture();
    let sink = Sink::plain().await;
    let agent = Agent::default();
    // The log is shared by the tests of this binary: a value no other test uses.
    let mark = "2500ms";
    let _exporter = export(
        &agent,
        ExportConfig::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.address)),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", mark.into()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd".into()),
        ],
    );
    let line = support::logs::wait_for_line(&["OTEL_EXPORTER_OTLP_TIMEOUT=\"2500ms\" ignored"]).await;
    assert!(line.contains("the default (10000 ms) applies"), "{line}");
    assert!(line.contains("WARN"), "{line}");
    assert!(!support::logs::lines(&["OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" ignored"]).is_empty());
    assert!(!support::logs::lines(&["OTEL_EXPORTER_OTLP_COMPRESSION=\"zstd\" ignored"]).is_empty());
    let received = sink.wait_for("metrics over the defaults", has("/v1/metrics")).await;
    let metrics = first(&received, "/v1/metrics");
    assert!(!metrics.grpc() && metrics.gzip, "http/protobuf with gzip, the defaults");
}
