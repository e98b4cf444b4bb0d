//! The reporter receiving real OTLP on loopback: from Kuroko's agent over
//! gRPC and HTTP, bad input refused with reasons, cumulative streams turned
//! into deltas, and nothing acknowledged lost when the process is killed.
//!
//! Over 800 lines on purpose: one capability (ingest over the wire), its
//! cases sharing the reporter they start and the helpers below.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kuroko_agent::export::{ExportConfig, Protocol};
use kuroko_agent::{Agent, Outcome, TransactionSpec};
use kuroko_reporter::config::Config;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Filter, Store};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn temp_store() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kuroko-ingest-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("kuroko.db")
}

fn loopback_config(store: std::path::PathBuf) -> Config {
    Config {
        store,
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

fn samples(n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let u = ((i * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
            (400_000.0 * (u * 8.0).exp()) as u64
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_data_arrives_over_grpc_and_http_with_exact_counts() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let store_path = temp_store();
        let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
            .await
            .unwrap();
        let endpoint = match protocol {
            Protocol::Grpc => reporter.grpc,
            Protocol::HttpProtobuf => reporter.http,
        };
        let agent = Agent::default();
        let exporter = agent
            .export(
                ExportConfig::default()
                    .with_protocol(protocol)
                    .with_endpoint(format!("http://{endpoint}"))
                    .with_interval(Duration::from_millis(100))
                    .with_service_name("cards-api")
                    .with_host_name("web-1"),
            )
            .unwrap();
        let cards = agent.register(TransactionSpec::web("GET", "/cards/{id}").feature("cards"));
        let mut exact = samples(5_000);
        for (i, &ns) in exact.iter().enumerate() {
            cards.record_nanos(
                ns,
                if i % 50 == 0 {
                    Outcome::Status(503)
                } else {
                    Outcome::Status(200)
                },
            );
        }
        agent.record("nightly-rollup", Duration::from_secs(2));
        for _ in 0..3 {
            agent.capture_error(
                "GET /cards/{id}",
                kuroko_agent::CapturedError::new("DbTimeout", "SELECT cards took 5 s"),
            );
        }
        // A slow run (over 4 x its 5 ms Apdex T) with a segment: kept as a trace.
        let slow = agent.register(TransactionSpec::job("export-report").apdex(Duration::from_millis(5)));
        {
            let run = slow.start();
            let _render = run.segment(kuroko_agent::SegmentKind::Code, "render PDF");
            std::thread::sleep(Duration::from_millis(25));
        }
        exporter.shutdown().await;
        reporter.stop().await;

        let store = SqliteStore::open(&store_path).unwrap();
        let window = (now_minute() - 5, now_minute() + 5);
        let filter = Filter {
            transaction: Some("GET /cards/{id}".into()),
            ..Filter::default()
        };
        let histograms = store.histograms(&filter, window.0, window.1).unwrap();
        assert_eq!(histograms.len(), 1, "{protocol:?}");
        let (key, histogram) = &histograms[0];
        assert_eq!(
            (
                key.service.as_str(),
                key.host.as_str(),
                key.feature.as_str(),
                key.kind.as_str()
            ),
            ("cards-api", "web-1", "cards", "web")
        );
        assert_eq!(histogram.count, 5_000);
        assert!(!histogram.estimated);
        exact.sort_unstable();
        for q in [0.5, 0.95, 0.99] {
            let truth = exact[((q * exact.len() as f64).ceil() as usize) - 1] as f64 / 1e9;
            let got = histogram.quantile(q);
            assert!(
                (got - truth).abs() / truth < 0.01,
                "{protocol:?} p{q}: {got} vs {truth}"
            );
        }
        let outcomes = store
            .counters(&filter, "kuroko.transaction.outcomes", window.0, window.1)
            .unwrap();
        let failed: f64 = outcomes
            .iter()
            .filter(|(_, labels, _)| labels == "kuroko.outcome=5xx")
            .map(|(_, _, v)| v)
            .sum();
        assert_eq!(failed, 100.0);
        let errors = store.errors(&Filter::default(), window.0, window.1).unwrap();
        assert_eq!(errors.len(), 1, "{protocol:?}: {errors:?}");
        assert_eq!(
            (
                errors[0].error_type.as_str(),
                errors[0].message.as_str(),
                errors[0].count
            ),
            ("DbTimeout", "SELECT cards took 5 s", 3)
        );
        assert_eq!(errors[0].key.transaction, "GET /cards/{id}");
        assert!(errors[0].location.contains("ingest.rs:"), "{}", errors[0].location);
        let traces = store
            .slowest_traces(&Filter::default(), window.0, window.1, 10)
            .unwrap();
        assert_eq!(traces.len(), 1, "{protocol:?}: the slow run's trace");
        assert_eq!(traces[0].key.transaction, "export-report");
        assert!(traces[0].duration >= 0.025);
        assert!(traces[0].spans.contains("render PDF"), "{}", traces[0].spans);
        let export_filter = Filter {
            transaction: Some("export-report".into()),
            ..Filter::default()
        };
        let counted = store.histograms(&export_filter, window.0, window.1).unwrap();
        assert_eq!(
            counted[0].1.count, 1,
            "{protocol:?}: the agent's trace is not counted a second time"
        );
        let jobs = store
            .histograms(
                &Filter {
                    transaction: Some("nightly-rollup".into()),
                    ..Filter::default()
                },
                window.0,
                window.1,
            )
            .unwrap();
        assert_eq!((jobs[0].0.kind.as_str(), jobs[0].1.count), ("job", 1));
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn request(metric: Metric) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "sdk-svc"), kv("host.name", "h1")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn exponential_point(route: &str, counts: Vec<u64>, count: u64) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        attributes: vec![kv("http.request.method", "GET"), kv("http.route", route)],
        start_time_unix_nano: unix_nanos() - 1_000_000_000,
        time_unix_nano: unix_nanos(),
        count,
        sum: Some(0.01 * count as f64),
        scale: 3,
        positive: Some(Buckets {
            offset: -60,
            bucket_counts: counts,
        }),
        ..Default::default()
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut request = client.post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

/// Sends `bytes` as an OTLP/gRPC metrics export, as they are.
async fn grpc_export(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    bytes: Vec<u8>,
) -> Result<ExportMetricsServiceResponse, tonic::Status> {
    grpc_send(
        grpc,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        bytes,
    )
    .await
}

/// Sends `bytes` to the gRPC method at `path`, as they are, and decodes the answer as `R`.
async fn grpc_send<R: Message + Default + Send + 'static>(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    bytes: Vec<u8>,
) -> Result<R, tonic::Status> {
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes),
        path.parse().unwrap(),
        Bytes(std::marker::PhantomData),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A gRPC codec sending bytes as they are, and decoding OTLP's answer `R`.
struct Bytes<R>(std::marker::PhantomData<fn() -> R>);

impl<R> Clone for Bytes<R> {
    fn clone(&self) -> Self {
        Bytes(std::marker::PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> tonic::codec::Codec for Bytes<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = Bytes<R>;
    type Decoder = Bytes<R>;
    fn encoder(&mut self) -> Bytes<R> {
        self.clone()
    }
    fn decoder(&mut self) -> Bytes<R> {
        self.clone()
    }
}

impl<R: Send + 'static> tonic::codec::Encoder for Bytes<R> {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl<R: Message + Default + Send + 'static> tonic::codec::Decoder for Bytes<R> {
    type Item = R;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason_and_the_rest_is_kept() {
    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    let url = format!("http://{}/v1/metrics", reporter.http);
    let client = reqwest::Client::new();
    let protobuf = [("content-type", "application/x-protobuf")];

    let (status, body) = post(&client, &url, b"\x0a\xff\xff garbage".to_vec(), &protobuf).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not OTLP/protobuf metrics"));
    let (status, body) = post(
        &client,
        &url,
        b"not gzip".to_vec(),
        &[("content-type", "application/x-protobuf"), ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("gzip body is malformed"));

    // One good point, one whose buckets do not add up, one with a NaN sum.
    let good = exponential_point("/ok", vec![3, 4, 5], 12);
    let mut mismatch = exponential_point("/bad-count", vec![1, 1], 5);
    mismatch.count = 5;
    let mut nan = exponential_point("/nan", vec![1], 1);
    nan.sum = Some(f64::NAN);
    let metric = Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![good, mismatch, nan],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    };
    let (status, body) = post(&client, &url, request(metric.clone()).encode_to_vec(), &protobuf).await;
    assert_eq!(status, 200);
    let response = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();

    // Over gRPC, the same bytes get the same answers.
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", reporter.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let status = grpc_export(&mut grpc, b"\x0a\xff\xff garbage".to_vec())
        .await
        .expect_err("garbage is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("not OTLP/protobuf metrics"), "{status:?}");
    let over_grpc = grpc_export(&mut grpc, request(metric.clone()).encode_to_vec())
        .await
        .expect("a partial success");
    assert_eq!(over_grpc.partial_success, response.partial_success);

    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 2);
    assert!(
        partial
            .error_message
            .contains("bucket counts add up to 2, but count is 5"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("sum is not a finite number"),
        "{}",
        partial.error_message
    );

    // OTLP/JSON is accepted too.
    let json = serde_json::to_vec(&request(Metric {
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![exponential_point("/json", vec![2], 2)],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..metric
    }))
    .unwrap();
    let (status, _) = post(&client, &url, json, &[("content-type", "application/json")]).await;
    assert_eq!(status, 200);
    reporter.stop().await;

    let store = SqliteStore::open(&store_path).unwrap();
    let stored = store
        .histograms(&Filter::default(), now_minute() - 5, now_minute() + 5)
        .unwrap();
    let names: Vec<&str> = stored.iter().map(|(k, _)| k.transaction.as_str()).collect();
    assert_eq!(names, ["GET /json", "GET /ok"], "only the valid points were kept");
    assert_eq!(stored[1].1.count, 24, "12 runs sent over HTTP, and again over gRPC");
    assert_eq!(stored[1].1.scale, 3, "kept at its own, coarser scale");
}

/// SDKs send cumulative explicit-bucket histograms by default: the reporter
/// stores the deltas between consecutive points, flagged as estimates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_explicit_histograms_become_deltas() {
    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    let url = format!("http://{}/v1/metrics", reporter.http);
    let client = reqwest::Client::new();
    let start = unix_nanos() - 10_000_000_000;
    for counts in [vec![1u64, 2, 3, 0], vec![2, 5, 6, 1], vec![2, 9, 6, 1]] {
        let count = counts.iter().sum();
        let point = HistogramDataPoint {
            attributes: vec![kv("http.request.method", "POST"), kv("http.route", "/pay")],
            start_time_unix_nano: start,
            time_unix_nano: unix_nanos(),
            count,
            sum: Some(0.05 * count as f64),
            bucket_counts: counts,
            explicit_bounds: vec![10.0, 50.0, 100.0],
            ..Default::default()
        };
        let metric = Metric {
            name: "http.server.request.duration".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let (status, _) = post(
            &client,
            &url,
            request(metric).encode_to_vec(),
            &[("content-type", "application/x-protobuf")],
        )
        .await;
        assert_eq!(status, 200);
    }
    reporter.stop().await;
    let store = SqliteStore::open(&store_path).unwrap();
    let stored = store
        .histograms(&Filter::default(), now_minute() - 5, now_minute() + 5)
        .unwrap();
    let (key, histogram) = &stored[0];
    assert_eq!(key.transaction, "POST /pay");
    assert_eq!(histogram.count, 18, "the last cumulative count, not 6 + 14 + 18");
    assert!(histogram.estimated, "explicit buckets are estimates");
    let p50 = histogram.quantile(0.5);
    assert!((0.010..=0.050).contains(&p50), "milliseconds became seconds: p50 {p50}");
}

/// `kill -9` during a load: every request the reporter acknowledged is in
/// the store afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_nothing_acknowledged() {
    let store_path = temp_store();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store"])
        .arg(&store_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let http = line
        .split("OTLP/HTTP on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the address line")
        .to_owned();
    let url = format!("http://{http}/v1/metrics");

    let client = reqwest::Client::new();
    let sender = tokio::spawn(async move {
        let mut acknowledged = 0u64;
        for i in 0..100_000u64 {
            let metric = Metric {
                name: "kuroko.job.duration".into(),
                unit: "s".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: vec![kv("kuroko.transaction", "crash-test")],
                        time_unix_nano: unix_nanos(),
                        start_time_unix_nano: unix_nanos() - 1,
                        count: 3,
                        sum: Some(0.3),
                        scale: 7,
                        positive: Some(Buckets {
                            offset: -425 + (i % 7) as i32,
                            bucket_counts: vec![1, 1, 1],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                })),
                ..Default::default()
            };
            let sent = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(request(metric).encode_to_vec())
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 200 => acknowledged += 1,
                _ => break, // killed
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acknowledged = sender.await.unwrap();
    assert!(
        acknowledged > 20,
        "the load ran before the kill ({acknowledged} requests)"
    );

    let store = SqliteStore::open(&store_path).unwrap();
    let stored: u64 = store
        .histograms(&Filter::default(), now_minute() - 5, now_minute() + 5)
        .unwrap()
        .iter()
        .map(|(_, h)| h.count)
        .sum();
    assert!(
        stored >= 3 * acknowledged,
        "stored {stored} runs, acknowledged {}",
        3 * acknowledged
    );
    assert!(
        stored <= 3 * (acknowledged + 1),
        "at most the one request in flight beyond them"
    );
}

fn span(
    name: &str,
    kind: i32,
    id: u8,
    parent: Option<u8>,
    start: u64,
    millis: u64,
    attributes: Vec<KeyValue>,
) -> opentelemetry_proto::tonic::trace::v1::Span {
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + millis * 1_000_000,
        attributes,
        ..Default::default()
    }
}

/// A service instrumented only with a stock OpenTelemetry SDK: its SERVER
/// spans become transactions, their CLIENT children segments, and its ERROR
/// log records errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_traces_and_logs_become_transactions_segments_and_errors() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let resource = Some(Resource {
        attributes: vec![kv("service.name", "py-shop"), kv("host.name", "py-1")],
        ..Default::default()
    });
    let start = unix_nanos() - 2_000_000_000;
    let mut status_500 = vec![kv("http.request.method", "GET"), kv("http.route", "/orders/{id}")];
    status_500.push(KeyValue {
        key: "http.response.status_code".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(500)),
        }),
        ..Default::default()
    });
    let spans = vec![
        span("GET /orders/{id}", 2, 1, None, start, 120, status_500),
        span(
            "SELECT orders",
            3,
            2,
            Some(1),
            start + 5_000_000,
            80,
            vec![kv("db.system.name", "postgresql")],
        ),
        span(
            "GET inventory",
            3,
            3,
            Some(1),
            start + 90_000_000,
            20,
            vec![kv("http.request.method", "GET"), kv("url.full", "http://inv/x")],
        ),
    ];
    let traces = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource.clone(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let protobuf = [("content-type", "application/x-protobuf")];
    let (status, _) = post(
        &client,
        &format!("http://{}/v1/traces", reporter.http),
        traces.encode_to_vec(),
        &protobuf,
    )
    .await;
    assert_eq!(status, 200);

    let record = |severity: i32, body: &str| LogRecord {
        time_unix_nano: unix_nanos(),
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes: vec![kv("http.request.method", "GET"), kv("http.route", "/orders/{id}")],
        ..Default::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(17, "order 42 vanished"), record(9, "all good")],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _) = post(
        &client,
        &format!("http://{}/v1/logs", reporter.http),
        logs.encode_to_vec(),
        &protobuf,
    )
    .await;
    assert_eq!(status, 200);
    reporter.stop().await;

    let store = SqliteStore::open(&store_path).unwrap();
    let window = (now_minute() - 5, now_minute() + 5);
    let histograms = store.histograms(&Filter::default(), window.0, window.1).unwrap();
    assert_eq!(histograms.len(), 1);
    let (key, histogram) = &histograms[0];
    // The run counted from its span: on the transaction's series of runs
    // counted from spans, read while no duration metric counts it.
    assert_eq!(
        (key.service.as_str(), key.transaction.as_str(), key.kind.as_str()),
        ("py-shop", "GET /orders/{id}", "web.spans")
    );
    assert_eq!(key.transaction_kind(), "web");
    assert_eq!(histogram.count, 1);
    assert!((histogram.max - 0.120).abs() < 1e-9);
    let outcomes = store
        .counters(&Filter::default(), "kuroko.transaction.outcomes", window.0, window.1)
        .unwrap();
    assert_eq!(outcomes[0].1, "kuroko.outcome=5xx");
    let segments = store
        .counters(&Filter::default(), "kuroko.segment.duration", window.0, window.1)
        .unwrap();
    let labels: Vec<&str> = segments.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "kuroko.segment.kind=database,kuroko.segment.name=SELECT orders",
            "kuroko.segment.kind=external,kuroko.segment.name=GET inventory"
        ]
    );
    let kept = store.slowest_traces(&Filter::default(), window.0, window.1, 5).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_id, "07".repeat(16));
    let errors = store.errors(&Filter::default(), window.0, window.1).unwrap();
    assert_eq!(errors.len(), 1, "the INFO record is not an error");
    assert_eq!(
        (errors[0].message.as_str(), errors[0].key.transaction.as_str()),
        ("order 42 vanished", "GET /orders/{id}")
    );
}

/// With a token configured, OTLP without it (or with a wrong one) is refused
/// over HTTP and gRPC; with it, accepted. Series past the per-service limit
/// fold into one overflow series. /metrics says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_the_door_and_series_are_bounded() {
    let mut config = loopback_config(temp_store());
    config.auth.ingest_token = Some(kuroko_reporter::config::Secret::new("s3cr3t"));
    config.limits.max_series_per_service = 3;
    let reporter = kuroko_reporter::serve::start(&config).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/metrics", reporter.http);
    let body = |route: &str| {
        request(Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![exponential_point(route, vec![1], 1)],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        })
        .encode_to_vec()
    };
    let protobuf = ("content-type", "application/x-protobuf");
    let (status, content_type, answer) = post_full(&client, &url, body("/a"), &[protobuf]).await;
    assert_eq!(status, 401);
    let (rpc, _) = protobuf_status(&content_type, &answer);
    assert_eq!(rpc.code, 16, "UNAUTHENTICATED: {rpc:?}");
    assert!(rpc.message.contains("authorization: Bearer <token>"), "{rpc:?}");
    let (status, content_type, answer) =
        post_full(&client, &url, b"{}".to_vec(), &[("content-type", "application/json")]).await;
    assert_eq!(status, 401);
    assert_eq!(json_status(&content_type, &answer)["code"], 16);
    assert_eq!(
        post(
            &client,
            &url,
            body("/a"),
            &[protobuf, ("authorization", "Bearer wrong")]
        )
        .await
        .0,
        401
    );
    for route in ["/a", "/b", "/c", "/d", "/e"] {
        assert_eq!(
            post(
                &client,
                &url,
                body(route),
                &[protobuf, ("authorization", "Bearer s3cr3t")]
            )
            .await
            .0,
            200
        );
    }

    // gRPC: the agent without the token is refused (one more unauthorized
    // request in /metrics below), the one with it gets in (one run stored).
    for token in [None, Some("Bearer s3cr3t")] {
        let agent = Agent::default();
        let mut config = ExportConfig::default()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(format!("http://{}", reporter.grpc))
            .with_service_name("grpc-svc");
        if let Some(token) = token {
            config = config.with_header("authorization", token);
        }
        let exporter = agent.export(config).unwrap();
        agent.record("GET /grpc", Duration::from_millis(3));
        exporter.shutdown().await;
    }

    let metrics = client
        .get(format!("http://{}/metrics", reporter.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kuroko_reporter_requests_unauthorized_total 4"),
        "{metrics}"
    );
    // Two series past the limit: each one's histogram point and the outcome
    // counter the SDK's point gives.
    assert!(metrics.contains("kuroko_reporter_points_folded_total 4"), "{metrics}");
    assert!(
        metrics.contains("kuroko_reporter_ingest_seconds{quantile=\"0.99\"}"),
        "{metrics}"
    );
    let store_path = config.store.clone();
    reporter.stop().await;

    let store = SqliteStore::open(&store_path).unwrap();
    let window = (now_minute() - 5, now_minute() + 5);
    let sdk = Filter {
        service: Some("sdk-svc".into()),
        ..Filter::default()
    };
    let names: Vec<String> = store
        .histograms(&sdk, window.0, window.1)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k.transaction)
        .collect();
    assert_eq!(
        names,
        ["GET /a", "GET /b", "GET /c", "kuroko.overflow"],
        "three series, then the overflow"
    );
    let grpc = Filter {
        service: Some("grpc-svc".into()),
        ..Filter::default()
    };
    let grpc_runs: u64 = store
        .histograms(&grpc, window.0, window.1)
        .unwrap()
        .iter()
        .map(|(_, h)| h.count)
        .sum();
    assert_eq!(grpc_runs, 1, "only the agent with the token got in");
}

#[path = "support/rpc_status.rs"]
mod rpc_status;
use rpc_status::{RpcBadRequest, RpcStatus};

/// Posts `body` and returns the status, the content type and the body.
async fn post_full(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut request = client.post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        response.status().as_u16(),
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

/// A refusal's body as protobuf: the status, and its BadRequest when it has one.
fn protobuf_status(content_type: &str, body: &[u8]) -> (RpcStatus, Option<RpcBadRequest>) {
    assert_eq!(
        content_type,
        "application/x-protobuf",
        "{}",
        String::from_utf8_lossy(body)
    );
    let status = RpcStatus::decode(body).expect("a google.rpc.Status");
    let bad = status
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.BadRequest")
        .map(|d| RpcBadRequest::decode(d.value.as_slice()).unwrap());
    (status, bad)
}

/// A refusal's body as JSON, checked to be a `google.rpc.Status`.
fn json_status(content_type: &str, body: &[u8]) -> serde_json::Value {
    assert_eq!(content_type, "application/json", "{}", String::from_utf8_lossy(body));
    let status: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    assert!(status["code"].is_i64() && status["message"].is_string(), "{status}");
    status
}

/// Every refusal is a `google.rpc.Status` in the request's encoding, with
/// the HTTP status a client retries or not by; malformed logs and traces
/// are INVALID_ARGUMENT over gRPC, as metrics are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_google_rpc_status_in_the_requests_encoding() {
    let mut config = loopback_config(temp_store());
    config.max_body_bytes = 64 << 10;
    let reporter = kuroko_reporter::serve::start(&config).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/metrics", reporter.http);
    let protobuf = ("content-type", "application/x-protobuf");
    let json = ("content-type", "application/json");

    // Not protobuf: 400 with a BadRequest.
    let (status, content_type, body) = post_full(&client, &url, b"\x0a\xff\xff garbage".to_vec(), &[protobuf]).await;
    assert_eq!(status, 400);
    let (rpc, bad) = protobuf_status(&content_type, &body);
    assert_eq!(rpc.code, 3, "INVALID_ARGUMENT");
    assert!(rpc.message.contains("not OTLP/protobuf metrics"), "{rpc:?}");
    let bad = bad.expect("a BadRequest detail");
    assert_eq!(bad.field_violations[0].description, rpc.message);

    // A gzip body that is not gzip: 400, in JSON for a JSON request.
    let (status, content_type, body) = post_full(
        &client,
        &url,
        b"not gzip".to_vec(),
        &[json, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 400);
    let rpc = json_status(&content_type, &body);
    assert_eq!(rpc["code"], 3);
    assert!(
        rpc["message"].as_str().unwrap().contains("gzip body is malformed"),
        "{rpc}"
    );
    assert_eq!(rpc["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");

    // An encoding other than gzip: 415.
    let (status, content_type, body) =
        post_full(&client, &url, vec![1, 2, 3], &[protobuf, ("content-encoding", "br")]).await;
    assert_eq!(status, 415);
    let (rpc, _) = protobuf_status(&content_type, &body);
    assert!(
        rpc.message.contains("content-encoding \"br\" is not supported"),
        "{rpc:?}"
    );

    // Over the limit as sent, and once decompressed: 413.
    let (status, content_type, body) = post_full(&client, &url, vec![0; 100 << 10], &[protobuf]).await;
    assert_eq!(status, 413);
    let (rpc, _) = protobuf_status(&content_type, &body);
    assert_eq!(rpc.code, 8, "RESOURCE_EXHAUSTED: {rpc:?}");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, &vec![0; 1 << 20]).unwrap();
    let bomb = gzip.finish().unwrap();
    let (status, content_type, body) = post_full(&client, &url, bomb, &[json, ("content-encoding", "gzip")]).await;
    assert_eq!(status, 413);
    let rpc = json_status(&content_type, &body);
    assert!(rpc["message"].as_str().unwrap().contains("once decompressed"), "{rpc}");

    // Logs and traces over HTTP too.
    for (signal, path) in [("logs", "/v1/logs"), ("traces", "/v1/traces")] {
        let url = format!("http://{}{path}", reporter.http);
        let (status, content_type, body) =
            post_full(&client, &url, b"\x0a\xff\xff garbage".to_vec(), &[protobuf]).await;
        assert_eq!(status, 400, "{signal}");
        let (rpc, _) = protobuf_status(&content_type, &body);
        assert!(rpc.message.contains(&format!("not OTLP/protobuf {signal}")), "{rpc:?}");
    }

    // gRPC: garbage logs and traces are INVALID_ARGUMENT (not retried), as metrics are.
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", reporter.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let logs = grpc_send::<ExportLogsServiceResponse>(
        &mut grpc,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        b"\x0a\xff\xff garbage".to_vec(),
    )
    .await
    .expect_err("garbage logs are refused");
    assert_eq!(logs.code(), tonic::Code::InvalidArgument, "{logs:?}");
    assert!(logs.message().contains("not OTLP/protobuf logs"), "{logs:?}");
    let traces = grpc_send::<ExportTraceServiceResponse>(
        &mut grpc,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        b"\x0a\xff\xff garbage".to_vec(),
    )
    .await
    .expect_err("garbage traces are refused");
    assert_eq!(traces.code(), tonic::Code::InvalidArgument, "{traces:?}");
    // Well-formed logs still go through the same service.
    let accepted = grpc_send::<ExportLogsServiceResponse>(
        &mut grpc,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Vec::new(),
    )
    .await
    .expect("an empty request is a success");
    assert_eq!(accepted.partial_success, None);
    reporter.stop().await;
}

/// An OTLP/JSON metrics body with one explicit-bucket point, to be spoilt.
fn json_histogram(route: &str) -> serde_json::Value {
    let now = unix_nanos();
    serde_json::json!({
        "resourceMetrics": [{
            "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "json-svc" } }] },
            "scopeMetrics": [{ "metrics": [{
                "name": "http.server.request.duration",
                "unit": "s",
                "histogram": {
                    "aggregationTemporality": 1,
                    "dataPoints": [{
                        "attributes": [
                            { "key": "http.request.method", "value": { "stringValue": "GET" } },
                            { "key": "http.route", "value": { "stringValue": route } }
                        ],
                        "startTimeUnixNano": (now - 1_000_000_000).to_string(),
                        "timeUnixNano": now.to_string(),
                        "count": "3",
                        "sum": 0.3,
                        "bucketCounts": ["1", "2", "0"],
                        "explicitBounds": [0.05, 0.5]
                    }]
                }
            }] }]
        }]
    })
}

/// A mistyped value in OTLP/JSON is a 400 naming the field (it was a 200
/// with nothing stored); what the JSON mapping allows (doubles and 64-bit
/// integers as strings) is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_type_errors_are_refused_naming_the_field() {
    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let json = [("content-type", "application/json")];
    let point = "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0]";
    let url = format!("http://{}/v1/metrics", reporter.http);

    let refused: [(&str, serde_json::Value, String); 4] = [
        ("sum", serde_json::json!(true), format!("{point}.sum")),
        ("sum", serde_json::json!("fast"), format!("{point}.sum")),
        (
            "explicitBounds",
            serde_json::json!(["fast", "slow"]),
            format!("{point}.explicitBounds[0]"),
        ),
        ("count", serde_json::json!(-3), format!("{point}.count")),
    ];
    for (field, value, path) in refused {
        let mut body = json_histogram("/refused");
        body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["dataPoints"][0][field] =
            value.clone();
        let (status, content_type, answer) = post_full(&client, &url, body.to_string().into_bytes(), &json).await;
        assert_eq!(
            status,
            400,
            "{field}: {value} was answered {}",
            String::from_utf8_lossy(&answer)
        );
        let rpc = json_status(&content_type, &answer);
        assert_eq!(rpc["code"], 3);
        assert!(rpc["message"].as_str().unwrap().contains(&path), "{rpc}");
        assert_eq!(rpc["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
        assert_eq!(rpc["details"][0]["fieldViolations"][0]["field"], path.as_str(), "{rpc}");
    }
    // Enums are integers in OTLP/JSON: a name is refused, and said so.
    let mut body = json_histogram("/refused");
    body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["aggregationTemporality"] =
        serde_json::json!("AGGREGATION_TEMPORALITY_DELTA");
    let (status, content_type, answer) = post_full(&client, &url, body.to_string().into_bytes(), &json).await;
    assert_eq!(status, 400);
    let rpc = json_status(&content_type, &answer);
    assert_eq!(
        rpc["details"][0]["fieldViolations"][0]["field"],
        "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.aggregationTemporality"
    );
    assert!(rpc["message"].as_str().unwrap().contains("integer"), "{rpc}");

    // Logs and traces: the same, with their own paths.
    let logs = serde_json::json!({ "resourceLogs": [{ "scopeLogs": [{ "logRecords": [{
        "timeUnixNano": unix_nanos().to_string(), "severityNumber": "SEVERITY_NUMBER_ERROR",
        "body": { "stringValue": "boom" } }] }] }] });
    let (status, content_type, answer) = post_full(
        &client,
        &format!("http://{}/v1/logs", reporter.http),
        logs.to_string().into_bytes(),
        &json,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    let rpc = json_status(&content_type, &answer);
    assert_eq!(
        rpc["details"][0]["fieldViolations"][0]["field"],
        "resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber"
    );
    let traces = serde_json::json!({ "resourceSpans": [{ "scopeSpans": [{ "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "GET /x", "kind": "SPAN_KIND_SERVER" }] }] }] });
    let (status, content_type, answer) = post_full(
        &client,
        &format!("http://{}/v1/traces", reporter.http),
        traces.to_string().into_bytes(),
        &json,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    let rpc = json_status(&content_type, &answer);
    assert_eq!(
        rpc["details"][0]["fieldViolations"][0]["field"],
        "resourceSpans[0].scopeSpans[0].spans[0].kind"
    );

    // Doubles and 64-bit integers as strings are OTLP/JSON: stored.
    let mut body = json_histogram("/strings");
    let data = &mut body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["dataPoints"][0];
    data["sum"] = serde_json::json!("0.3");
    data["explicitBounds"] = serde_json::json!(["0.05", "0.5"]);
    let (status, content_type, answer) = post_full(&client, &url, body.to_string().into_bytes(), &json).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    reporter.stop().await;

    let store = SqliteStore::open(&store_path).unwrap();
    let stored = store
        .histograms(&Filter::default(), now_minute() - 5, now_minute() + 5)
        .unwrap();
    let names: Vec<(&str, u64)> = stored.iter().map(|(k, h)| (k.transaction.as_str(), h.count)).collect();
    assert_eq!(names, [("GET /strings", 3)], "only the valid request was kept");
}

/// Data sent a second ago is in the answer to a question with the default
/// window, which says its last minute is partial; and the store file, read
/// by another process, has it within seconds of its acknowledgement, though
/// nothing else arrives after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_a_second_ago_is_answered_and_reaches_the_store_file_within_seconds() {
    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    // Idle first: the roll-up pass at start has run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    let send = |route: &'static str| {
        let metric = Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![exponential_point(route, vec![1, 2, 1], 4)],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        };
        let (client, url) = (client.clone(), format!("http://{}/v1/metrics", reporter.http));
        async move {
            let (status, _) = post(
                &client,
                &url,
                request(metric).encode_to_vec(),
                &[("content-type", "application/x-protobuf")],
            )
            .await;
            assert_eq!(status, 200);
        }
    };

    // One request, then nothing: the store file, opened beside the running
    // reporter (which owns it, so this only reads what it has flushed), has
    // it within seconds. Nothing reads through the reporter meanwhile (its
    // reads flush first).
    send("/fresh").await;
    let acknowledged = std::time::Instant::now();
    let path = store_path.clone();
    let lag = tokio::task::spawn_blocking(move || loop {
        let store = SqliteStore::open(&path).unwrap();
        let filter = Filter {
            transaction: Some("GET /fresh".into()),
            ..Filter::default()
        };
        if !store
            .histograms(&filter, now_minute() - 5, now_minute() + 5)
            .unwrap()
            .is_empty()
        {
            return acknowledged.elapsed();
        }
        assert!(
            acknowledged.elapsed() < Duration::from_secs(30),
            "the store file still lacks a point acknowledged 30 s ago"
        );
        std::thread::sleep(Duration::from_millis(100));
    })
    .await
    .unwrap();
    eprintln!("the store file had the point {lag:?} after it was acknowledged");
    assert!(lag < Duration::from_secs(15), "the store file lagged {lag:?}");

    // The API (as `kuroko query --server` asks it), default window: a point
    // sent a second ago is in it, and the answer says its last minute is partial.
    let into_minute = unix_nanos() / 1_000_000_000 % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    send("/fresher").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = client
        .get(format!("http://{}/api/v1/slowest", reporter.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let rows = answer["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["transaction"] == "GET /fresher" && r["count"] == 4),
        "the point sent a second ago is in the answer: {answer}"
    );
    assert_eq!(answer["partial_last_minute"], true, "{answer}");

    // `kuroko query` on the file, in a process of its own, sees it too and
    // says the last minute is partial.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["query", "slowest", "--store"])
        .arg(&store_path)
        .env_remove("KUROKO_STORE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("GET /fresher"), "{text}");
    assert!(text.contains("(partial: the last minute"), "{text}");
    reporter.stop().await;
}

/// A request no route matched (a 404), sent by an SDK as both a duration
/// metric and a SERVER span, is one transaction under one name, counted
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_route_is_one_transaction_whichever_signal_brings_it() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let protobuf = [("content-type", "application/x-protobuf")];
    let not_found = || {
        vec![
            kv("http.request.method", "GET"),
            KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(404)),
                }),
                ..Default::default()
            },
        ]
    };
    let mut point = exponential_point("unused", vec![1, 1, 1], 3);
    point.attributes = not_found();
    let metric = Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    };
    let (status, _) = post(
        &client,
        &format!("http://{}/v1/metrics", reporter.http),
        request(metric).encode_to_vec(),
        &protobuf,
    )
    .await;
    assert_eq!(status, 200);

    // The same three requests as SERVER spans, named as SDKs name a
    // route-less request: by its method alone.
    let start = unix_nanos() - 1_000_000_000;
    let spans = (1..=3)
        .map(|id| span("GET", 2, id, None, start, 10, not_found()))
        .collect();
    let traces = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: request(Metric::default()).resource_metrics[0].resource.clone(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _) = post(
        &client,
        &format!("http://{}/v1/traces", reporter.http),
        traces.encode_to_vec(),
        &protobuf,
    )
    .await;
    assert_eq!(status, 200);
    reporter.stop().await;

    let store = SqliteStore::open(&store_path).unwrap();
    let window = (now_minute() - 5, now_minute() + 5);
    let names: Vec<(String, u64)> = store
        .histograms(&Filter::default(), window.0, window.1)
        .unwrap()
        .into_iter()
        .map(|(k, h)| (k.transaction, h.count))
        .collect();
    assert_eq!(names, [("GET (no route)".to_owned(), 3)], "one name, each request once");
    let kept = store.slowest_traces(&Filter::default(), window.0, window.1, 5).unwrap();
    assert!(
        kept.iter().all(|t| t.key.transaction == "GET (no route)") && !kept.is_empty(),
        "its spans are kept as its traces"
    );
}

/// A deploy is the data's own time: a new `service.version`'s earliest data
/// point, not when the reporter happened to receive it. Data sent again
/// leaves it where it is, later data never moves it later, and late data
/// from before moves it to that earlier minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_deployed_at_its_datas_time_and_never_later() {
    use kuroko_reporter::store::deploys::Deploys;
    let store_path = temp_store();
    let reporter = kuroko_reporter::serve::start(&loopback_config(store_path.clone()))
        .await
        .unwrap();
    let url = format!("http://{}/v1/metrics", reporter.http);
    let client = reqwest::Client::new();
    let protobuf = [("content-type", "application/x-protobuf")];
    let now = now_minute();
    // Version `version`'s points at each of `minutes_ago` (delta
    // exponential histograms of one route), sent at once.
    let send = |version: &'static str, minutes_ago: Vec<i64>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let points = minutes_ago
                .iter()
                .map(|ago| {
                    let mut point = exponential_point("/orders", vec![2, 3], 5);
                    point.time_unix_nano = ((now - ago) * 60 + 30) as u64 * 1_000_000_000;
                    point.start_time_unix_nano = point.time_unix_nano - 60_000_000_000;
                    point
                })
                .collect();
            let mut request = request(Metric {
                name: "http.server.request.duration".into(),
                unit: "s".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                })),
                ..Default::default()
            });
            let resource = request.resource_metrics[0].resource.as_mut().unwrap();
            resource.attributes.push(kv("service.version", version));
            let (status, body) = post(&client, &url, request.encode_to_vec(), &protobuf).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
    };
    let deploys = || -> Vec<(String, i64)> {
        let store = SqliteStore::open(&store_path).unwrap();
        store
            .versions()
            .unwrap()
            .into_iter()
            .map(|v| (v.version, now - v.first_minute))
            .collect()
    };
    let expect = |one: i64, two: i64| vec![("1.0".to_owned(), one), ("2.0".to_owned(), two)];

    // 1.0 ran until two hours ago; 2.0's data, sent now, began two hours ago.
    send("1.0", vec![300, 240, 121]).await;
    send("2.0", vec![60, 120, 90]).await;
    assert_eq!(deploys(), expect(300, 120), "each version at its earliest point");
    // The same data sent again (a replay, a retry): nothing moves.
    send("2.0", vec![60, 120, 90]).await;
    // Newer data: never later.
    send("2.0", vec![1, 0]).await;
    assert_eq!(deploys(), expect(300, 120), "replayed and newer data move nothing");
    // Late data from before it: the deploy is earlier.
    send("2.0", vec![150]).await;
    assert_eq!(deploys(), expect(300, 150), "late data of an earlier minute");
    // A point too old to be accepted (past max_age_seconds, 8 days) is
    // not a sighting.
    send("2.0", vec![9 * 1_440]).await;
    assert_eq!(deploys(), expect(300, 150), "a refused point dates nothing");
    reporter.stop().await;
    std::fs::remove_dir_all(store_path.parent().unwrap()).unwrap();
}
