//! Export over OTLP to real receivers on loopback: what arrives decodes to
//! percentiles within 1% of the exact samples; a collector that is down loses
//! nothing within the buffer and is caught up with; one that refuses is not
//! retried forever; the buffer stays bounded and says what it dropped.

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuroko_agent::export::{ExportConfig, Protocol};
use kuroko_agent::{Agent, AgentConfig, CapturedError, Outcome, TransactionSpec};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ExponentialHistogramDataPoint};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tonic::codec::CompressionEncoding;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Accept,
    Refuse,
    Partial(i64),
}

/// A receiver's state: what it got, and how it answers.
#[derive(Clone)]
struct Received {
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    headers: Arc<Mutex<Vec<(String, String)>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Received {
    fn new(answer: Answer) -> Self {
        Received {
            metrics: Arc::default(),
            logs: Arc::default(),
            traces: Arc::default(),
            headers: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
        }
    }

    fn answer(&self) -> Answer {
        *self.answer.lock().unwrap()
    }

    fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.metrics.lock().unwrap().clone()
    }

    /// Every exponential-histogram point of the transaction `name`.
    fn points(&self, name: &str) -> Vec<ExponentialHistogramDataPoint> {
        let mut points = Vec::new();
        for request in self.metrics() {
            for metric in request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                if let Some(metric::Data::ExponentialHistogram(h)) = &metric.data {
                    points.extend(
                        h.data_points
                            .iter()
                            .filter(|p| attribute(&p.attributes, "kuroko.transaction") == Some(name.to_owned()))
                            .cloned(),
                    );
                }
            }
        }
        points
    }

    fn spans(&self) -> Vec<Span> {
        let traces = self.traces.lock().unwrap().clone();
        traces
            .into_iter()
            .flat_map(|t| t.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }

    fn count(&self, name: &str) -> u64 {
        self.points(name).iter().map(|p| p.count).sum()
    }

    /// The last value of a cumulative `kuroko.agent.*` counter.
    fn agent_counter(&self, name: &str) -> Option<i64> {
        let mut last = None;
        for request in self.metrics() {
            for metric in request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                if let (true, Some(metric::Data::Sum(sum))) = (metric.name == name, &metric.data) {
                    for point in &sum.data_points {
                        if let Some(number_data_point::Value::AsInt(v)) = point.value {
                            last = Some(last.map_or(v, |l: i64| l.max(v)));
                        }
                    }
                }
            }
        }
        last
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        for (key, value) in request.metadata().clone().into_headers() {
            if let (Some(key), Ok(value)) = (key, value.to_str()) {
                self.headers.lock().unwrap().push((key.to_string(), value.to_owned()));
            }
        }
        let answer = self.answer();
        if answer == Answer::Refuse {
            return Err(tonic::Status::invalid_argument("this receiver refuses everything"));
        }
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: partial(answer),
        }))
    }
}

fn partial(answer: Answer) -> Option<ExportMetricsPartialSuccess> {
    match answer {
        Answer::Partial(rejected) => Some(ExportMetricsPartialSuccess {
            rejected_data_points: rejected,
            error_message: "too old".to_owned(),
        }),
        _ => None,
    }
}

#[tonic::async_trait]
impl LogsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.logs.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A receiver running on loopback; [`Server::stop`] closes it and all its
/// connections, as a collector that goes down would.
struct Server {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    fn abort(self) {
        self.task.abort();
    }
}

/// Serves OTLP/gRPC on `listener`.
fn serve_grpc(listener: tokio::net::TcpListener, received: Received) -> Server {
    let metrics = MetricsServiceServer::new(received.clone()).accept_compressed(CompressionEncoding::Gzip);
    let logs = LogsServiceServer::new(received.clone()).accept_compressed(CompressionEncoding::Gzip);
    let traces = TraceServiceServer::new(received).accept_compressed(CompressionEncoding::Gzip);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(metrics)
            .add_service(logs)
            .add_service(traces)
            .serve_with_incoming_shutdown(incoming, async {
                // Only an explicit stop closes it; a dropped handle leaves it serving.
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await;
    });
    Server { task, stop }
}

/// Serves OTLP/HTTP (protobuf, gzip) on `listener`.
fn serve_http(listener: tokio::net::TcpListener, received: Received) -> Server {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    fn body(headers: &HeaderMap, bytes: &Bytes) -> Vec<u8> {
        if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
            out
        } else {
            bytes.to_vec()
        }
    }
    let for_metrics = received.clone();
    let for_traces = received.clone();
    let app = axum::Router::new()
        .route(
            "/v1/metrics",
            axum::routing::post(move |headers: HeaderMap, bytes: Bytes| {
                let received = for_metrics.clone();
                async move {
                    for (key, value) in &headers {
                        received
                            .headers
                            .lock()
                            .unwrap()
                            .push((key.to_string(), value.to_str().unwrap_or("").to_owned()));
                    }
                    if received.answer() == Answer::Refuse {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    }
                    let request =
                        ExportMetricsServiceRequest::decode(body(&headers, &bytes).as_slice()).expect("valid protobuf");
                    received.metrics.lock().unwrap().push(request);
                    let response = ExportMetricsServiceResponse {
                        partial_success: partial(received.answer()),
                    };
                    (StatusCode::OK, response.encode_to_vec())
                }
            }),
        )
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, bytes: Bytes| {
                let received = for_traces.clone();
                async move {
                    let request =
                        ExportTraceServiceRequest::decode(body(&headers, &bytes).as_slice()).expect("valid protobuf");
                    received.traces.lock().unwrap().push(request);
                    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
                }
            }),
        )
        .route(
            "/v1/logs",
            axum::routing::post(move |headers: HeaderMap, bytes: Bytes| {
                let received = received.clone();
                async move {
                    let request =
                        ExportLogsServiceRequest::decode(body(&headers, &bytes).as_slice()).expect("valid protobuf");
                    received.logs.lock().unwrap().push(request);
                    (StatusCode::OK, ExportLogsServiceResponse::default().encode_to_vec())
                }
            }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // Only an explicit stop closes it; a dropped handle leaves it serving.
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await;
    });
    Server { task, stop }
}

/// Serves OTLP over `protocol` on `listener`.
fn serve(protocol: Protocol, listener: tokio::net::TcpListener, received: Received) -> Server {
    match protocol {
        Protocol::Grpc => serve_grpc(listener, received),
        Protocol::HttpProtobuf => serve_http(listener, received),
    }
}

fn config(protocol: Protocol, address: std::net::SocketAddr) -> ExportConfig {
    ExportConfig::default()
        .with_protocol(protocol)
        .with_endpoint(format!("http://{address}"))
        .with_interval(Duration::from_millis(100))
        .with_timeout(Duration::from_secs(2))
        .with_header("authorization", "Bearer test-token")
        .with_service_name("cards-api")
        .with_environment("test")
}

/// Waits until `done` holds, up to 20 s, polling every 20 ms.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Deterministic log-normal-ish latencies, 300 µs to ~3 s.
fn samples(n: u64, seed: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let u = (((i + seed) * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
            (300_000.0 * (u * 9.2).exp()) as u64
        })
        .collect()
}

/// The value at `q` of merged exponential points, estimated at the middle of
/// the bucket that holds it, computed here from the OTLP definition of the
/// buckets ((base^i, base^(i+1)], base = 2^(2^-scale)) rather than by the agent.
fn quantile(points: &[ExponentialHistogramDataPoint], q: f64) -> f64 {
    let scale = points[0].scale;
    let mut counts = std::collections::BTreeMap::<i32, u64>::new();
    for point in points {
        assert_eq!(point.scale, scale);
        let positive = point.positive.as_ref().expect("positive buckets");
        for (i, count) in positive.bucket_counts.iter().enumerate() {
            *counts.entry(positive.offset + i as i32).or_default() += count;
        }
    }
    let total: u64 = counts.values().sum();
    let target = ((q * total as f64).ceil() as u64).max(1);
    let base = 2f64.powf(2f64.powi(-scale));
    let mut seen = 0;
    for (index, count) in counts {
        seen += count;
        if seen >= target {
            return (base.powi(index) + base.powi(index + 1)) / 2.0;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_decodes_to_percentiles_within_one_percent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Received::new(Answer::Accept);
    let _server = serve_grpc(listener, received.clone());

    let agent = Agent::new(AgentConfig::default().with_service_name("ignored-in-favour-of-export-config")).unwrap();
    let exporter = agent.export(config(Protocol::Grpc, address)).unwrap();
    let cards = agent.register(TransactionSpec::web("GET", "/cards/{id}").feature("cards"));
    let mut exact = samples(20_000, 0);
    for (i, &ns) in exact.iter().enumerate() {
        cards.record_nanos(
            ns,
            if i % 100 == 0 {
                Outcome::Status(503)
            } else {
                Outcome::Status(200)
            },
        );
        if i % 5_000 == 0 {
            tokio::time::sleep(Duration::from_millis(120)).await; // spread over several intervals
        }
    }
    for _ in 0..2 {
        // One call site: the same error twice (location is part of an error's identity).
        agent.capture_error(
            "GET /cards/{id}",
            CapturedError::new("DbTimeout", "SELECT cards took 5 s"),
        );
    }
    exporter.shutdown().await; // flushes what the last tick did not take

    eventually("all 20,000 runs", || received.count("GET /cards/{id}") == 20_000).await;
    exact.sort_unstable();
    let points = received.points("GET /cards/{id}");
    assert!(points.len() >= 2, "several intervals, {} points", points.len());
    for q in [0.5, 0.95, 0.99] {
        let truth = exact[((q * exact.len() as f64).ceil() as usize) - 1] as f64 / 1e9;
        let got = quantile(&points, q);
        assert!(
            (got - truth).abs() / truth < 0.01,
            "p{}: {got} s vs exact {truth} s",
            q * 100.0
        );
    }
    let sum: f64 = points.iter().map(|p| p.sum.unwrap()).sum();
    let exact_sum = exact.iter().sum::<u64>() as f64 / 1e9;
    assert!((sum - exact_sum).abs() < 1e-6 * exact_sum);
    let min = points.iter().map(|p| p.min.unwrap()).fold(f64::MAX, f64::min);
    let max = points.iter().map(|p| p.max.unwrap()).fold(0.0, f64::max);
    assert_eq!((min, max), (exact[0] as f64 / 1e9, *exact.last().unwrap() as f64 / 1e9));

    // Names and attributes per the semantic conventions, and the resource.
    let request = &received.metrics()[0];
    let resource = request.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        attribute(&resource.attributes, "service.name").as_deref(),
        Some("cards-api")
    );
    assert_eq!(
        attribute(&resource.attributes, "deployment.environment.name").as_deref(),
        Some("test")
    );
    assert!(attribute(&resource.attributes, "host.name").is_some_and(|h| !h.is_empty()));
    let metric_names: HashSet<String> = received
        .metrics()
        .iter()
        .flat_map(|r| {
            r.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
        })
        .map(|m| m.name.clone())
        .collect();
    for name in [
        "http.server.request.duration",
        "kuroko.transaction.outcomes",
        "kuroko.transaction.apdex",
        "kuroko.agent.series",
    ] {
        assert!(metric_names.contains(name), "{name} in {metric_names:?}");
    }
    let point = &points[0];
    assert_eq!(
        attribute(&point.attributes, "http.route").as_deref(),
        Some("/cards/{id}")
    );
    assert_eq!(
        attribute(&point.attributes, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(attribute(&point.attributes, "kuroko.feature").as_deref(), Some("cards"));
    assert!(received
        .headers
        .lock()
        .unwrap()
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer test-token"));

    // One log record for the two identical errors, with its count.
    let logs = received.logs.lock().unwrap().clone();
    let records: Vec<_> = logs
        .iter()
        .flat_map(|l| &l.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(
        attribute(&records[0].attributes, "exception.type").as_deref(),
        Some("DbTimeout")
    );
    assert_eq!(
        attribute(&records[0].attributes, "exception.message").as_deref(),
        Some("SELECT cards took 5 s")
    );
    assert_eq!(
        attribute(&records[0].attributes, "kuroko.error.count").as_deref(),
        Some("2")
    );
    assert!(attribute(&records[0].attributes, "code.file.path").is_some_and(|f| f.ends_with("export.rs")));
}

/// Without a tokio runtime, the exporter runs on its own thread; OTLP/HTTP
/// bodies are gzipped and carry the configured headers.
#[test]
fn http_export_from_a_program_without_a_runtime() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let received = Received::new(Answer::Accept);
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        serve_http(listener, received.clone());
        address
    });

    let agent = Agent::default();
    let exporter = agent.export(config(Protocol::HttpProtobuf, address)).unwrap();
    for ns in samples(1_000, 7) {
        agent.record("nightly-rollup", Duration::from_nanos(ns));
    }
    exporter.shutdown_blocking();
    runtime.block_on(eventually("1,000 job runs", || {
        received.count("nightly-rollup") == 1_000
    }));
    let headers = received.headers.lock().unwrap().clone();
    assert!(headers.iter().any(|(k, v)| k == "content-encoding" && v == "gzip"));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer test-token"));
    let jobs = received.metrics().iter().any(|r| {
        r.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .any(|m| m.name == "kuroko.job.duration")
    });
    assert!(jobs, "jobs are exported as kuroko.job.duration");
}

/// The collector goes down mid-run while the service records, then comes
/// back on the same port: every run arrives, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_dies_mid_run_loses_nothing_within_the_buffer() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let before = Received::new(Answer::Accept);
        let server = serve(protocol, listener, before.clone());
        let agent = Agent::default();
        let exporter = agent.export(config(protocol, address)).unwrap();
        let tx = agent.transaction("GET /outage");
        let mut runs = samples(3_000, 3).into_iter();
        for ns in runs.by_ref().take(1_000) {
            tx.record_nanos(ns, Outcome::Ok);
        }
        eventually("the first 1,000 runs", || before.count("GET /outage") == 1_000).await;

        server.stop().await; // the collector dies: connections closed, port free
        let failed_before = exporter.stats().failed_exports;
        for (i, ns) in runs.by_ref().enumerate() {
            tx.record_nanos(ns, Outcome::Ok);
            if i % 500 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        eventually("failed exports during the outage", || {
            exporter.stats().failed_exports >= failed_before + 3
        })
        .await;
        assert_eq!(
            before.count("GET /outage"),
            1_000,
            "{protocol:?}: nothing reached a dead collector"
        );

        let after = Received::new(Answer::Accept);
        let server = serve(
            protocol,
            tokio::net::TcpListener::bind(address).await.unwrap(),
            after.clone(),
        );
        eventually("the outage's runs", || after.count("GET /outage") >= 2_000).await;
        exporter.shutdown().await;
        assert_eq!(after.count("GET /outage"), 2_000, "{protocol:?}: each run exactly once");
        assert!(
            after.metrics().iter().any(|r| r.resource_metrics.len() > 1),
            "{protocol:?}: the backlog went in merged requests"
        );
        assert_eq!(exporter_stats_dropped(&after), 0);
        server.abort();
    }
}

fn exporter_stats_dropped(received: &Received) -> i64 {
    received
        .agent_counter("kuroko.agent.export.dropped_points")
        .unwrap_or(0)
}

/// A long outage overflows a small buffer: the oldest intervals are dropped,
/// and the count of dropped points reaches the collector once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_oldest_and_says_so() {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let agent = Agent::default();
    let exporter = agent
        .export(config(Protocol::HttpProtobuf, address).with_buffer_intervals(3))
        .unwrap();
    let tx = agent.transaction("GET /long-outage");
    for _ in 0..12 {
        tx.record(Duration::from_millis(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(exporter.queued_intervals() <= 3, "the buffer holds at most 3 intervals");
    }
    assert_eq!(exporter.queued_intervals(), 3, "a full buffer during the outage");
    eventually("dropped intervals", || exporter.stats().dropped_points > 0).await;

    let received = Received::new(Answer::Accept);
    serve_http(tokio::net::TcpListener::bind(address).await.unwrap(), received.clone());
    eventually("the dropped-points self-metric", || {
        exporter_stats_dropped(&received) > 0
    })
    .await;
    let delivered = received.count("GET /long-outage");
    assert!(
        delivered < 12,
        "only the newest intervals survive: {delivered} of 12 runs"
    );
    exporter.shutdown().await;
}

/// A collector that refuses (4xx / INVALID_ARGUMENT) is not retried: no
/// interval is ever sent twice; one that partly accepts is not resent either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_partial_success_are_not_retried() {
    for (protocol, answer) in [
        (Protocol::Grpc, Answer::Refuse),
        (Protocol::HttpProtobuf, Answer::Refuse),
        (Protocol::Grpc, Answer::Partial(3)),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Received::new(answer);
        let server = serve(protocol, listener, received.clone());
        let agent = Agent::default();
        let exporter = agent.export(config(protocol, address)).unwrap();
        for _ in 0..6 {
            agent.record("GET /refused", Duration::from_millis(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eventually("several answered exports", || {
            received
                .headers
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k == "authorization")
                .count()
                >= 4
        })
        .await;
        let stats = exporter.stats();
        assert!(stats.rejected_points > 0, "{protocol:?} {answer:?}: {stats:?}");
        if answer == Answer::Refuse {
            // Every attempt was one interval's first and only one. The
            // exporter counts a refusal once the answer is back, a moment
            // after the server saw the request: wait for the two to agree
            // (the next export is at least 100 ms away).
            let attempts = || {
                received
                    .headers
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k == "authorization")
                    .count() as u64
            };
            eventually("every refused export counted", || {
                exporter.stats().failed_exports == attempts()
            })
            .await;
            assert_eq!(exporter.stats().failed_exports, attempts());
        } else {
            let mut seen = HashSet::new();
            for request in received.metrics() {
                let stamp = request.resource_metrics[0].scope_metrics[0].metrics[0].data.clone();
                assert!(seen.insert(format!("{stamp:?}")), "an interval was sent twice");
            }
        }
        exporter.shutdown().await;
        server.abort();
    }
}

/// Runs over 4 × Apdex T arrive as traces — the run and its segments — at
/// most 10 a minute per transaction, and the duration histogram carries
/// exemplars pointing at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_runs_arrive_as_traces_with_exemplars() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Received::new(Answer::Accept);
        let server = serve(protocol, listener, received.clone());
        let agent = Agent::default();
        let exporter = agent.export(config(protocol, address)).unwrap();
        // T = 5 ms, so runs of 20 ms or more are slow.
        let report = agent.register(TransactionSpec::web("GET", "/reports/{id}").apdex(Duration::from_millis(5)));
        for i in 0..15 {
            let mut run = report.start();
            {
                let _query = run.segment(kuroko_agent::SegmentKind::Database, "SELECT report_rows");
                tokio::time::sleep(Duration::from_millis(22)).await;
            }
            if i == 0 {
                run.set_status(500);
            }
        }
        for _ in 0..5 {
            drop(report.start()); // fast: not traced
        }
        exporter.shutdown().await;
        eventually("10 traces", || {
            received.spans().iter().filter(|s| s.parent_span_id.is_empty()).count() >= 10
        })
        .await;

        let spans = received.spans();
        let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
        assert_eq!(
            roots.len(),
            10,
            "{protocol:?}: at most 10 traces a minute per transaction"
        );
        for root in &roots {
            assert_eq!(root.name, "GET /reports/{id}");
            assert_eq!(root.kind, 2, "SERVER");
            assert!(root.end_time_unix_nano - root.start_time_unix_nano >= 20_000_000);
            let children: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == root.span_id).collect();
            assert_eq!(children.len(), 1);
            let query = children[0];
            assert_eq!(
                (query.name.as_str(), query.kind, &query.trace_id),
                ("SELECT report_rows", 3, &root.trace_id)
            );
            assert!(query.start_time_unix_nano >= root.start_time_unix_nano);
            assert!(query.end_time_unix_nano <= root.end_time_unix_nano + 1_000_000);
            assert!(query.end_time_unix_nano - query.start_time_unix_nano >= 20_000_000);
        }
        assert!(
            roots.iter().any(|r| r.status.as_ref().is_some_and(|s| s.code == 2)),
            "the 500 is an error span"
        );

        let trace_ids: HashSet<Vec<u8>> = roots.iter().map(|r| r.trace_id.clone()).collect();
        let exemplars: Vec<_> = received
            .points("GET /reports/{id}")
            .into_iter()
            .flat_map(|p| p.exemplars)
            .collect();
        assert_eq!(exemplars.len(), 10, "one exemplar per kept trace");
        assert!(
            exemplars.iter().all(|e| trace_ids.contains(&e.trace_id)),
            "exemplars point at the traces"
        );
        server.abort();
    }
}
