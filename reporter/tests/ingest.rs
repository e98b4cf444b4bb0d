//! The reporter receiving real OTLP on loopback: from Kuroko's agent over
//! gRPC and HTTP, bad input refused with reasons, cumulative streams turned
//! into deltas, and nothing acknowledged lost when the process is killed.

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
            .export(ExportConfig {
                protocol,
                endpoint: Some(format!("http://{endpoint}")),
                interval: Duration::from_millis(100),
                service_name: Some("cards-api".into()),
                host_name: Some("web-1".into()),
                ..ExportConfig::default()
            })
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
    grpc.ready().await.unwrap();
    let path = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        .parse()
        .unwrap();
    grpc.unary(tonic::Request::new(bytes), path, Bytes)
        .await
        .map(tonic::Response::into_inner)
}

/// A gRPC codec sending bytes as they are, and decoding OTLP's answer.
#[derive(Clone, Copy)]
struct Bytes;

impl tonic::codec::Codec for Bytes {
    type Encode = Vec<u8>;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = Bytes;
    type Decoder = Bytes;
    fn encoder(&mut self) -> Bytes {
        Bytes
    }
    fn decoder(&mut self) -> Bytes {
        Bytes
    }
}

impl tonic::codec::Encoder for Bytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Bytes {
    type Item = ExportMetricsServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportMetricsServiceResponse::decode(src)
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
    let (status, text) = post(&client, &url, body("/a"), &[protobuf]).await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&text).contains("authorization: Bearer <token>"));
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
        let exporter = agent
            .export(ExportConfig {
                protocol: Protocol::Grpc,
                endpoint: Some(format!("http://{}", reporter.grpc)),
                headers: token
                    .map(|t| vec![("authorization".to_owned(), t.to_owned())])
                    .unwrap_or_default(),
                service_name: Some("grpc-svc".into()),
                ..ExportConfig::default()
            })
            .unwrap();
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
        metrics.contains("kuroko_reporter_requests_unauthorized_total 3"),
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
