//! Hostile clients against a real `kuroko serve` (the binary cargo built
//! for these tests) on loopback: memory bombs through cumulative streams,
//! slow and idle connections, too many bytes in flight, and malformed or
//! unauthenticated gRPC. Each test asserts what a user would notice: the
//! reporter stays up and small (its RSS, read from /proc), the attack gets
//! its documented status or partial-success reason, and good data sent
//! alongside is stored exactly (read back through the running reporter's
//! API, which flushes before it reads).

#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
use kuroko_serve::{kv, Serve};

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

#[path = "support/requests.rs"]
mod requests;
#[path = "support/rpc_status.rs"]
mod rpc_status;
use rpc_status::retry_delay;

/// The RSS the reporter may reach while it takes these attacks.
const RSS_CEILING_BYTES: u64 = 300 << 20;

/// How long a small hostile request may take to be answered, even on a
/// loaded machine with a debug build (the stream bombs took 5 s (protobuf)
/// and 62 s (JSON) when a resource's attributes were hashed per point;
/// 0.2 s and 0.3 s since).
const PROMPT: std::time::Duration = std::time::Duration::from_secs(20);

/// A `kuroko serve` process on a store of its own.
struct Reporter {
    serve: Serve,
    dir: PathBuf,
}

impl Reporter {
    /// With `config` as its kuroko.toml.
    fn start(tag: &str, config: &str) -> Reporter {
        let dir = std::env::temp_dir().join(format!("kuroko-hostile-net-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let serve = Serve::start_in(&dir, config);
        Reporter { serve, dir }
    }

    fn http(&self) -> &str {
        &self.serve.http
    }

    fn rss(&self) -> u64 {
        self.serve.rss()
    }

    /// Still running, and under the RSS ceiling: its RSS.
    fn assert_up_and_small(&mut self, after: &str) -> u64 {
        assert!(
            self.serve.child.try_wait().unwrap().is_none(),
            "the reporter died after {after}"
        );
        let rss = self.rss();
        eprintln!("RSS after {after}: {} MiB", rss >> 20);
        assert!(rss < RSS_CEILING_BYTES, "RSS {} MiB after {after}", rss >> 20);
        rss
    }

    /// `/metrics`: the value of `name`.
    async fn self_metric(&self, name: &str) -> f64 {
        kuroko_serve::self_metric(self.http(), name).await
    }

    /// Runs of `transaction` in the last hour, as the API answers.
    async fn runs(&self, transaction: &str) -> u64 {
        let url = format!("http://{}/api/v1/slowest?since=1h&limit=1000", self.http());
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["transaction"] == transaction)
            .map(|row| row["count"].as_u64().unwrap())
            .sum()
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.serve.child.kill();
        let _ = self.serve.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// POSTs `body` to `/v1/metrics` as `content_type`, gzipped when `gzipped`:
/// the status and the answer.
async fn post_metrics(
    reporter: &Reporter,
    content_type: &str,
    body: Vec<u8>,
    gzipped: bool,
) -> (u16, ExportMetricsServiceResponse) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", reporter.http()))
        .header("content-type", content_type);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let answer = if content_type == "application/json" {
        serde_json::from_slice(&bytes).unwrap_or_default()
    } else {
        ExportMetricsServiceResponse::decode(bytes.as_ref()).unwrap_or_default()
    };
    (status, answer)
}

fn resource(service: &str, more: Vec<KeyValue>) -> Option<Resource> {
    let mut attributes = vec![kv("service.name", service), kv("host.name", "h1")];
    attributes.extend(more);
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn resource_metrics(resource: Option<Resource>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource,
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Three good runs of GET /good (10, 20 and 30 ms), as a delta point of
/// the service `shop`.
fn good(time: u64) -> ResourceMetrics {
    let metric = requests::histogram_metric(vec![requests::good_point(time)]);
    resource_metrics(resource("shop", Vec::new()), vec![metric])
}

/// The issue's stream bomb: a resource with a `filler` attribute of
/// `filler_bytes`, and `sums` cumulative sums of one transaction, each its
/// own stream; started at `start`.
fn sum_bomb(filler_bytes: usize, sums: usize, start: u64, time: u64) -> ResourceMetrics {
    let points = (0..sums)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("kuroko.transaction", "bomb"),
                kv("kuroko.outcome", "ok"),
                kv("stream", &i.to_string()),
            ],
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(1.0)),
            ..Default::default()
        })
        .collect();
    let metric = Metric {
        name: "kuroko.transaction.outcomes".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let filler = kv("filler", &"x".repeat(filler_bytes));
    resource_metrics(resource("bomb", vec![filler]), vec![metric])
}

/// The issue's item 1, as it reproduced it: a 7 KB gzipped request (a 200
/// KB resource attribute, 2,000 cumulative sums) and a 2 MB OTLP/JSON one,
/// each sent three times, as the issue did. Stream ids
/// are hashes (the resource is hashed once per resource, not per point), so
/// the reporter stays small and answers at once; the sums are within every
/// limit and stored,
/// and the good point of each request is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issues_stream_bombs_cost_little_memory() {
    let mut reporter = Reporter::start("sum-bomb", "");
    let before = reporter.rss();
    let time = now_nanos();
    for round in 0..3u64 {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![sum_bomb(200_000, 2_000, time - 60_000_000_000, time), good(time)],
        };
        let body = gzip(&request.encode_to_vec());
        assert!(body.len() < 10_000, "a small request: {} bytes gzipped", body.len());
        let started = std::time::Instant::now();
        let (status, answer) = post_metrics(&reporter, "application/x-protobuf", body, true).await;
        eprintln!("protobuf bomb {round}: {status} in {:?}", started.elapsed());
        assert!(started.elapsed() < PROMPT, "answered in {:?}", started.elapsed());
        assert_eq!((status, answer.partial_success), (200, None));
        reporter.assert_up_and_small("the gzipped protobuf bomb");
    }
    for round in 3..6u64 {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![sum_bomb(1_000_000, 4_000, time - 60_000_000_000, time), good(time)],
        };
        let body = serde_json::to_vec(&request).unwrap();
        assert!(
            (1_500_000..2_500_000).contains(&body.len()),
            "{} bytes of JSON",
            body.len()
        );
        let started = std::time::Instant::now();
        let (status, answer) = post_metrics(&reporter, "application/json", body, false).await;
        eprintln!("JSON bomb {round}: {status} in {:?}", started.elapsed());
        assert!(started.elapsed() < PROMPT, "answered in {:?}", started.elapsed());
        assert_eq!((status, answer.partial_success), (200, None));
        reporter.assert_up_and_small("the OTLP/JSON bomb");
    }
    let grew = reporter.rss().saturating_sub(before);
    assert!(grew < 150 << 20, "six bombs added {} MiB of RSS", grew >> 20);
    assert_eq!(
        reporter.self_metric("kuroko_reporter_cumulative_streams").await,
        6_000.0
    );
    assert_eq!(reporter.runs("GET /good").await, 6 * 3, "every good run, once");
    assert_eq!(reporter.runs("bomb").await, 0, "sums are not runs");
}

/// A cumulative exponential point whose buckets span 7,000 indexes at
/// scale 7 (1 ns to 0.9 years; one run at each end): its stream's last
/// point takes 56 KB however small the request (zeros gzip to nothing).
fn wide_point(stream: usize, start: u64, time: u64) -> ExponentialHistogramDataPoint {
    let mut counts = vec![0; 7_000];
    counts[0] = 1;
    counts[6_999] = 1;
    ExponentialHistogramDataPoint {
        attributes: vec![kv("kuroko.transaction", "wide"), kv("stream", &stream.to_string())],
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: 2,
        sum: Some(2.6e7),
        scale: 7,
        positive: Some(Buckets {
            // 2^(-3826/128) s is just above a nanosecond, the shortest run
            // a point may hold.
            offset: -3_826,
            bucket_counts: counts,
        }),
        ..Default::default()
    }
}

/// `kuroko.job.duration` in seconds: `points`, of `temporality`.
fn job_durations(points: Vec<ExponentialHistogramDataPoint>, temporality: AggregationTemporality) -> Metric {
    Metric {
        name: "kuroko.job.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: temporality as i32,
        })),
        ..Default::default()
    }
}

/// Item 1's other half: stream state is bounded by bytes. Each of eight
/// requests holds 1,000 new cumulative streams whose last points are 56 KB
/// histograms (56 MB of state from about 12 KB gzipped; one request of 2,000
/// took the reporter to 523 MiB of RSS before the budget). Past
/// `max_cumulative_stream_bytes` (here 32 MiB) their points are refused
/// with the setting named, counted in `/metrics`, and the good point of
/// each request is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_streams_are_bounded_by_bytes() {
    let budget = 32 << 20;
    let mut reporter = Reporter::start(
        "wide-streams",
        &format!("[limits]\nmax_cumulative_stream_bytes = {budget}\n"),
    );
    let time = now_nanos();
    let mut refused = 0;
    for round in 0..8 {
        let points = (0..1_000)
            .map(|i| wide_point(round * 1_000 + i, time - 60_000_000_000, time))
            .collect();
        let wide = job_durations(points, AggregationTemporality::Cumulative);
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![resource_metrics(resource("wide", Vec::new()), vec![wide]), good(time)],
        };
        let body = gzip(&request.encode_to_vec());
        let (status, answer) = post_metrics(&reporter, "application/x-protobuf", body, true).await;
        assert_eq!(status, 200);
        let partial = answer.partial_success.expect("points past the budget are refused");
        assert!(
            partial.error_message.contains("max_cumulative_stream_bytes"),
            "{partial:?}"
        );
        refused += partial.rejected_data_points;
        reporter.assert_up_and_small("histogram streams");
    }
    let held = reporter.self_metric("kuroko_reporter_cumulative_stream_bytes").await;
    assert!(
        held <= f64::from(budget) && held > f64::from(budget) * 0.9,
        "{held} bytes held"
    );
    let admitted = reporter.self_metric("kuroko_reporter_cumulative_streams").await;
    assert_eq!(refused as f64 + admitted, 8_000.0, "every point admitted or refused");
    eprintln!("{admitted} streams admitted, {refused} points refused");
    assert_eq!(
        reporter
            .self_metric("kuroko_reporter_stream_points_refused_total")
            .await,
        refused as f64
    );
    assert_eq!(reporter.runs("GET /good").await, 8 * 3, "every good run, once");
    assert_eq!(
        reporter.runs("wide").await,
        2 * admitted as u64,
        "the admitted streams' runs"
    );
}

/// A raw OTLP/HTTP request's head: `POST path` promising `length` bytes.
fn head(path: &str, length: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: kuroko\r\ncontent-type: application/x-protobuf\r\ncontent-length: {length}\r\n\r\n")
}

/// Reads what the server sends until it closes the connection (or `wait`
/// passes: `None`).
async fn until_closed(socket: &mut tokio::net::TcpStream, wait: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut text = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buffer = [0u8; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => text.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&text).into_owned())
}

/// A good metrics request (three runs of GET /good), as sent.
fn good_request() -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![good(now_nanos())],
    }
    .encode_to_vec()
}

/// Item 2 over HTTP: with `header_timeout_seconds` and
/// `body_timeout_seconds` set to 2, a connection that sends half a header,
/// one that sends nothing, one kept alive idle after its answer, and twenty
/// uploads that stop after 1 MB of a promised 16 are all closed (the
/// uploads answered 408 first); all are counted in `/metrics`; a good
/// upload meanwhile is stored exactly, and the reporter stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_http_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let wait = std::time::Duration::from_secs(30);
    let mut reporter = Reporter::start(
        "slow-http",
        "[limits]\nheader_timeout_seconds = 2\nbody_timeout_seconds = 2\n",
    );
    let connect = || tokio::net::TcpStream::connect(reporter.http().to_owned());
    let mut half_header = connect().await.unwrap();
    half_header
        .write_all(b"POST /v1/metrics HTTP/1.1\r\nhost: kuroko\r\n")
        .await
        .unwrap();
    let mut silent = connect().await.unwrap();
    let mut kept_alive = connect().await.unwrap();
    kept_alive
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: kuroko\r\n\r\n")
        .await
        .unwrap();
    let mut uploads = Vec::new();
    for _ in 0..20 {
        let mut upload = connect().await.unwrap();
        upload
            .write_all(head("/v1/metrics", 16_000_000).as_bytes())
            .await
            .unwrap();
        upload.write_all(&vec![0; 1 << 20]).await.unwrap();
        uploads.push(upload);
    }
    // Meanwhile, good data on a connection of its own.
    let (status, answer) = post_metrics(&reporter, "application/x-protobuf", good_request(), false).await;
    assert_eq!((status, answer.partial_success), (200, None));
    reporter.assert_up_and_small("20 stalled uploads");

    for (what, socket) in [
        ("half a header", &mut half_header),
        ("nothing", &mut silent),
        ("nothing after its answer", &mut kept_alive),
    ] {
        let closed = until_closed(socket, wait).await;
        assert!(
            closed.is_some(),
            "a connection that sent {what} is still open after {wait:?}"
        );
    }
    for upload in &mut uploads {
        let answer = until_closed(upload, wait).await.expect("a stalled upload is closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 2s"), "{answer}");
    }
    assert!(reporter.self_metric("kuroko_reporter_header_timeouts_total").await >= 3.0);
    assert_eq!(reporter.self_metric("kuroko_reporter_body_timeouts_total").await, 20.0);
    assert_eq!(reporter.self_metric("kuroko_reporter_inflight_bytes").await, 0.0);
    assert_eq!(reporter.runs("GET /good").await, 3, "the good upload, exactly");
    reporter.assert_up_and_small("the timeouts");
}

/// A kuroko.toml with bodies of 4 MiB at most and in-flight budgets of 16
/// MiB in all and 8 MiB per connection, and `body_timeout` seconds.
fn small_budgets(body_timeout: u64) -> String {
    format!(
        "max_body_bytes = 4194304\n[limits]\nbody_timeout_seconds = {body_timeout}\n\
         max_inflight_bytes = 16777216\nmax_inflight_bytes_per_connection = 8388608\n"
    )
}

/// Item 3 over HTTP: twenty concurrent uploads that each send 3 MB of a
/// promised 4 and stop, against `max_inflight_bytes` of 16 MiB: at most
/// five are held (5 × 3 MB), the others are answered 503 with
/// `Retry-After` and the setting named, as they cross the budget; the
/// held ones get their 408 at the body timeout. A small good upload
/// meanwhile is stored exactly, and the reporter stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_inflight_budget_are_refused() {
    use tokio::io::AsyncWriteExt;
    let mut reporter = Reporter::start("inflight-http", &small_budgets(10));
    let mut answers = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpStream::connect(reporter.http().to_owned())
            .await
            .unwrap();
        let (mut read, mut write) = socket.into_split();
        tokio::spawn(async move {
            let _ = write.write_all(head("/v1/metrics", 4_000_000).as_bytes()).await;
            let _ = write.write_all(&vec![0; 3 << 20]).await;
            // Stalled: the socket's write half stays open.
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            drop(write);
        });
        answers.push(tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut text = vec![0u8; 4096];
            let n = tokio::time::timeout(std::time::Duration::from_secs(40), read.read(&mut text))
                .await
                .expect("an answer")
                .unwrap_or(0);
            String::from_utf8_lossy(&text[..n]).into_owned()
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (status, answer) = post_metrics(&reporter, "application/x-protobuf", good_request(), false).await;
    assert_eq!(
        (status, answer.partial_success),
        (200, None),
        "a small upload fits beside them"
    );
    reporter.assert_up_and_small("20 concurrent 3 MB uploads");
    let (mut refused, mut timed_out) = (0, 0);
    for answer in answers {
        let answer = answer.await.unwrap();
        if answer.starts_with("HTTP/1.1 503") {
            let lower = answer.to_ascii_lowercase();
            assert!(lower.contains("retry-after: 1"), "{answer}");
            assert!(answer.contains("max_inflight_bytes"), "{answer}");
            refused += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            timed_out += 1;
        }
    }
    eprintln!("{refused} refused, {timed_out} held until their timeout");
    assert!(refused >= 15 && timed_out <= 5, "{refused} refused, {timed_out} held");
    assert_eq!(
        reporter
            .self_metric("kuroko_reporter_requests_over_inflight_total")
            .await,
        f64::from(refused)
    );
    assert_eq!(reporter.self_metric("kuroko_reporter_inflight_bytes").await, 0.0);
    assert_eq!(reporter.runs("GET /good").await, 3, "the good upload, exactly");
    reporter.assert_up_and_small("the refusals");
}

/// gRPC requests as their bytes, to send what no generated client would.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// One connection to the reporter's gRPC port.
async fn channel(reporter: &Reporter) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", reporter.serve.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A request of `body` for `path`, with `token` when given.
fn grpc_request<T>(body: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Sends `body` as one message to `path`.
async fn export(
    channel: tonic::transport::Channel,
    path: &'static str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(grpc_request(body, token), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Sends `body` as one message to `path`, then holds the stream open
/// without ending it.
async fn export_stalled(
    channel: tonic::transport::Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    use tonic::codegen::tokio_stream::{self, StreamExt};
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let messages = tokio_stream::once(body).chain(tokio_stream::pending());
    grpc.client_streaming(grpc_request(messages, None), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Items 2 and 3 over gRPC: six messages of 3 MB on one connection, each
/// stream held open after its message, against
/// `max_inflight_bytes_per_connection` of 8 MiB: at most two are held
/// (and answered DEADLINE_EXCEEDED at the body timeout), the others
/// RESOURCE_EXHAUSTED with the setting named; a good export on another
/// connection meanwhile is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_grpc_streams_time_out_within_the_connections_budget() {
    let mut reporter = Reporter::start("inflight-grpc", &small_budgets(5));
    let shared = channel(&reporter).await;
    let stalled: Vec<_> = (0..6)
        .map(|_| tokio::spawn(export_stalled(shared.clone(), METRICS, vec![0; 3 << 20])))
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let good = export(channel(&reporter).await, METRICS, good_request(), None).await;
    assert!(good.is_ok(), "{good:?}");
    reporter.assert_up_and_small("six stalled gRPC streams");
    let (mut exhausted, mut late) = (0, 0);
    for stream in stalled {
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), stream)
            .await
            .expect("every stalled stream is answered")
            .unwrap()
            .expect_err("a stalled stream is refused");
        match status.code() {
            tonic::Code::ResourceExhausted => {
                assert!(
                    status.message().contains("max_inflight_bytes_per_connection"),
                    "{status:?}"
                );
                // OTLP clients retry RESOURCE_EXHAUSTED only with a RetryInfo.
                assert_eq!(retry_delay(&status), Some(1), "{status:?}");
                exhausted += 1;
            }
            tonic::Code::DeadlineExceeded => {
                assert!(status.message().contains("did not arrive within 5s"), "{status:?}");
                late += 1;
            }
            _ => panic!("{status:?}"),
        }
    }
    eprintln!("{exhausted} over the connection's budget, {late} timed out");
    assert!(
        exhausted >= 4 && (1..=2).contains(&late),
        "{exhausted} refused, {late} timed out"
    );
    assert_eq!(
        reporter.self_metric("kuroko_reporter_body_timeouts_total").await,
        f64::from(late)
    );
    assert_eq!(reporter.self_metric("kuroko_reporter_inflight_bytes").await, 0.0);
    assert_eq!(reporter.runs("GET /good").await, 3, "the good export, exactly");
}

/// Item 4: the same malformed message is INVALID_ARGUMENT on every signal
/// (logs and traces used to answer INTERNAL); with `[auth]` on, ten
/// concurrent 11 MB log exports without the token are UNAUTHENTICATED
/// without being read (the reporter's RSS does not grow by them), and a
/// good export with the token is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_faults_answer_alike_and_the_token_comes_first() {
    let mut reporter = Reporter::start("grpc-faults", "[auth]\ningest_token = \"s3cr3t\"\n");
    let connection = channel(&reporter).await;
    for path in [METRICS, LOGS, TRACES] {
        let status = export(connection.clone(), path, vec![0xff; 16], Some("s3cr3t"))
            .await
            .expect_err("a malformed message is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{path}: {status:?}");
        assert!(status.message().contains("not OTLP/protobuf"), "{path}: {status:?}");
    }
    let before = reporter.rss();
    let refused: Vec<_> = (0..10)
        .map(|_| tokio::spawn(export(connection.clone(), LOGS, vec![0x0a; 11 << 20], None)))
        .collect();
    for request in refused {
        let status = request.await.unwrap().expect_err("no token, no export");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let grew = reporter.rss().saturating_sub(before);
    eprintln!("ten 11 MB exports without the token: RSS grew {} MiB", grew >> 20);
    assert!(grew < 20 << 20, "RSS grew {} MiB", grew >> 20);
    let good = export(connection, METRICS, good_request(), Some("s3cr3t")).await;
    assert!(good.is_ok(), "{good:?}");
    assert_eq!(reporter.runs("GET /good").await, 3, "the good export, exactly");
    assert_eq!(
        reporter.self_metric("kuroko_reporter_requests_malformed_total").await,
        3.0,
        "the three malformed messages, counted"
    );
    reporter.assert_up_and_small("the gRPC faults");
}

/// Item 3, what decoding adds: a 3 MB body of zero bucket counts (a few KB
/// gzipped) decodes to 24 MB of counts. While two stalled uploads hold 6 MB
/// of the 16 MiB budget, such a request is refused, 503 with the setting
/// named, once decoded (it was read whole before: only the body was
/// counted); a small good upload beside them is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_request_decodes_to_counts_against_the_budget() {
    use tokio::io::AsyncWriteExt;
    let mut reporter = Reporter::start("inflight-decoded", &small_budgets(30));
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut upload = tokio::net::TcpStream::connect(reporter.http().to_owned())
            .await
            .unwrap();
        upload
            .write_all(head("/v1/metrics", 4_000_000).as_bytes())
            .await
            .unwrap();
        upload.write_all(&vec![0; 3 << 20]).await.unwrap();
        stalled.push(upload);
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut point = wide_point(0, now_nanos() - 60_000_000_000, now_nanos());
    point.positive = Some(Buckets {
        offset: 0,
        bucket_counts: vec![0; 3_000_000],
    });
    let zeros = job_durations(vec![point], AggregationTemporality::Delta);
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![resource_metrics(resource("zeros", Vec::new()), vec![zeros])],
    };
    let body = gzip(&request.encode_to_vec());
    assert!(body.len() < 20_000, "{} bytes gzipped", body.len());
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", reporter.http()))
        .header("content-encoding", "gzip")
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let text = String::from_utf8_lossy(&response.bytes().await.unwrap()).into_owned();
    assert!(text.contains("(over 16777216 bytes, max_inflight_bytes)"), "{text}");
    let (status, answer) = post_metrics(&reporter, "application/x-protobuf", good_request(), false).await;
    assert_eq!(
        (status, answer.partial_success),
        (200, None),
        "a small upload fits beside them"
    );
    assert_eq!(reporter.runs("GET /good").await, 3, "the good upload, exactly");
    reporter.assert_up_and_small("a request that decodes to 24 MB");
    drop(stalled);
}

/// Item 2 over gRPC: a client that opens an HTTP/2 connection and then
/// stops reading (it never answers a ping) is dropped once a ping has gone
/// unanswered for `grpc_keepalive_timeout_seconds` (here pings every
/// second, dropped after one; with pings every 1,000 s it stays open); a
/// good export on another connection is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_stops_reading_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let mut reporter = Reporter::start(
        "grpc-keepalive",
        "[limits]\ngrpc_keepalive_seconds = 1\ngrpc_keepalive_timeout_seconds = 1\n",
    );
    let mut deaf = tokio::net::TcpStream::connect(&reporter.serve.grpc).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame; then nothing is read
    // or answered until the server gives up.
    deaf.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let closed = until_closed(&mut deaf, std::time::Duration::from_secs(30)).await;
    assert!(closed.is_some(), "a connection that answers no ping is still open");
    let good = export(channel(&reporter).await, METRICS, good_request(), None).await;
    assert!(good.is_ok(), "{good:?}");
    assert_eq!(reporter.runs("GET /good").await, 3, "the good export, exactly");
    reporter.assert_up_and_small("a deaf gRPC client");
}
