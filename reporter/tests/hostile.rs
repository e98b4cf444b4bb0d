//! Hostile input against a real `kuroko serve` (the binary cargo built for
//! these tests) on loopback: each attack of the hostile-input issue that the
//! reporter now refuses is replayed beside good data, and the test asserts
//! what a user would notice: the reporter stays up and small (its RSS, read
//! from /proc), the attack gets its partial-success reason, the good data
//! sent in the same request is stored exactly, and the store still answers
//! (`kuroko query` exits 0 with the good data).
//!
//! Replayed so far: a poisoned error count (`kuroko.error.count` =
//! i64::MAX, twice), an 8 MB `service.name`, an exponential point at scale
//! 20 with offset 2^31 − 1 and no min or max, explicit bounds of 1e300
//! holding a run, a count near u64::MAX, unique `service.name`s past the
//! reporter's series limit, and stalled uploads without the token.

#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
#[path = "support/reporter.rs"]
mod reporter;
#[path = "support/requests.rs"]
mod requests;
use kuroko_serve::{int, kv};
use reporter::{now_nanos, Reporter};
use requests::{good_point, histogram_metric, metrics_request, resource, route};

use std::process::Command;

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
};
use prost::Message;

/// The RSS the reporter may reach while refusing these attacks.
const RSS_CEILING_BYTES: u64 = 300 << 20;

/// A poisoned error count (i64::MAX, twice, as the issue reproduced) is
/// refused with its reason; the good record of the same request is one
/// error group the store still answers about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_error_count_is_refused_and_the_store_still_answers() {
    let mut reporter = Reporter::start("error-count", "");
    let record = |message: &str, count: i64| LogRecord {
        time_unix_nano: now_nanos(),
        severity_number: 17,
        attributes: {
            let mut a = route("/pay");
            a.push(kv("exception.type", "PaymentDeclined"));
            a.push(kv("exception.message", message));
            a.push(int("kuroko.error.count", count));
            a
        },
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("shop"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record("poison", i64::MAX),
                    record("poison", i64::MAX),
                    record("card 4242 declined", 3),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, answer): (u16, ExportLogsServiceResponse) = reporter.post("logs", request.encode_to_vec()).await;
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("a partial-success answer");
    assert_eq!(partial.rejected_log_records, 2, "{partial:?}");
    assert!(partial.error_message.contains("kuroko.error.count"), "{partial:?}");
    let errors = reporter.query_until("errors", &["PaymentDeclined"]);
    assert!(
        errors.contains("PaymentDeclined") && errors.contains('3'),
        "the good error is answered: {errors}"
    );
    assert!(reporter.alive());
    let rss = reporter.rss();
    assert!(rss < RSS_CEILING_BYTES, "RSS {rss} bytes");
}

/// An 8 MB `service.name` (7 KB gzipped is all it takes) is refused with all
/// of its resource's points, with the reason; the good resource in the same
/// request is stored exactly, and no answer carries the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_service_name_is_refused_and_the_rest_is_kept() {
    let mut reporter = Reporter::start("service-name", "");
    let time = now_nanos();
    let huge = "s".repeat(8 << 20);
    let request = metrics_request(vec![
        (huge.as_str(), vec![histogram_metric(vec![good_point(time)])]),
        ("shop", vec![histogram_metric(vec![good_point(time)])]),
    ]);
    let (status, answer): (u16, ExportMetricsServiceResponse) = reporter.post("metrics", request.encode_to_vec()).await;
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("a partial-success answer");
    assert_eq!(partial.rejected_data_points, 1, "{partial:?}");
    assert!(partial.error_message.contains("service.name"), "{partial:?}");
    let slowest = reporter.query_until("slowest", &["GET /good"]);
    assert!(slowest.contains("shop") && slowest.contains("GET /good"), "{slowest}");
    assert!(!slowest.contains("sssssssss"), "the huge name is nowhere");
    assert!(slowest.len() < 10_000, "a small answer: {} bytes", slowest.len());
    assert!(reporter.alive());
    let rss = reporter.rss();
    assert!(rss < RSS_CEILING_BYTES, "RSS {rss} bytes");
}

/// Points that no run's duration can be — an exponential point at scale 20
/// and offset 2^31 − 1 without min or max (2^2048 s), runs in a bucket from
/// 1e300 s, a count near u64::MAX — are refused with their reasons; bounds
/// of 1e300 above the runs are an open end, not a duration; and the slowest
/// answer is the good route's, in milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_durations_and_counts_are_refused() {
    let mut reporter = Reporter::start("durations", "");
    let time = now_nanos();
    let exponential = Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: route("/far"),
                start_time_unix_nano: time - 60_000_000_000,
                time_unix_nano: time,
                count: 1,
                sum: Some(1.0),
                scale: 20,
                positive: Some(Buckets {
                    offset: i32::MAX,
                    bucket_counts: vec![1],
                }),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    };
    // 2^22 minutes (eight years) in an exponential point whose unit is
    // minutes: within a year as a number, not once in seconds. Found by the
    // structured fuzz target.
    let minutes = Metric {
        name: "http.server.request.duration".into(),
        unit: "min".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: route("/minutes"),
                start_time_unix_nano: time - 60_000_000_000,
                time_unix_nano: time,
                count: 1,
                sum: Some(4_194_304.5),
                scale: 0,
                positive: Some(Buckets {
                    offset: 22,
                    bucket_counts: vec![1],
                }),
                min: Some(4_194_304.5),
                max: Some(4_194_304.5),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    };
    // An attribute's name of 2 KB: names are kept in labels and spans too.
    let mut long_key = good_point(time);
    long_key.attributes = route("/long-key");
    long_key.attributes.push(kv(&"k".repeat(2_048), "v"));
    let explicit = |path: &str, bounds: Vec<f64>, counts: Vec<u64>, count: u64| HistogramDataPoint {
        attributes: route(path),
        start_time_unix_nano: time - 60_000_000_000,
        time_unix_nano: time,
        count,
        sum: Some(0.05),
        bucket_counts: counts,
        explicit_bounds: bounds,
        ..Default::default()
    };
    let request = metrics_request(vec![(
        "shop",
        vec![
            exponential,
            minutes,
            histogram_metric(vec![
                good_point(time),
                long_key,
                // Runs beyond 1e300 s: refused.
                explicit("/beyond", vec![0.01, 1e300], vec![0, 0, 1], 1),
                // 1e300 as the top bound of runs at 20 ms: an open end.
                explicit("/open", vec![0.01, 1e300], vec![0, 1, 0], 1),
                // A count near u64::MAX: refused.
                explicit("/many", vec![0.01], vec![u64::MAX - 1, 0], u64::MAX - 1),
            ]),
        ],
    )]);
    let (status, answer): (u16, ExportMetricsServiceResponse) = reporter.post("metrics", request.encode_to_vec()).await;
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("a partial-success answer");
    assert_eq!(partial.rejected_data_points, 5, "{partial:?}");
    for reason in [
        "beyond a year",
        "more than 2^53 runs",
        "an attribute's name is 2048 bytes long",
    ] {
        assert!(partial.error_message.contains(reason), "{reason:?} in {partial:?}");
    }
    let slowest = reporter.query_until("slowest", &["GET /good", "GET /open"]);
    assert!(
        slowest.contains("GET /good") && slowest.contains("GET /open"),
        "{slowest}"
    );
    for absent in [
        "GET /far",
        "GET /beyond",
        "GET /many",
        "GET /minutes",
        "GET /long-key",
        " h ",
    ] {
        assert!(!slowest.contains(absent), "{absent:?} in {slowest}");
    }
    // Each refusal counted by the rule it broke.
    for (rule, count) in [("value", 4.0), ("attribute_length", 1.0), ("time", 0.0)] {
        let name = format!("kuroko_reporter_points_refused_total{{rule=\"{rule}\"}}");
        assert_eq!(reporter.metric(&name).await, count, "{name}");
    }
    assert!(reporter.alive());
    let rss = reporter.rss();
    assert!(rss < RSS_CEILING_BYTES, "RSS {rss} bytes");
}

/// Unique `service.name`s past the reporter's series limit (here 20, by
/// `[limits] max_series`) fold into the service `kuroko.overflow`: every run
/// is still counted, and an answer lists at most the limit's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_service_names_fold_past_the_reporters_series_limit() {
    let mut reporter = Reporter::start("services", "[limits]\nmax_series = 20\n");
    let time = now_nanos();
    let names: Vec<String> = (0..200).map(|i| format!("svc-{i:03}")).collect();
    let request = metrics_request(
        names
            .iter()
            .map(|name| (name.as_str(), vec![histogram_metric(vec![good_point(time)])]))
            .collect(),
    );
    let (status, answer): (u16, ExportMetricsServiceResponse) = reporter.post("metrics", request.encode_to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(answer.partial_success, None, "folded, not refused");
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let json = reporter.query_until("slowest", &["kuroko.overflow"]);
    assert!(json.contains("kuroko.overflow"), "{json}");
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args([
            "query",
            "slowest",
            "--since",
            "1h",
            "--until",
            &until.to_string(),
            "--limit",
            "1000",
        ])
        .args(["--format", "json", "--store"])
        .arg(reporter.store())
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = answer["rows"].as_array().unwrap();
    assert!(rows.len() <= 21, "{} rows", rows.len());
    let runs: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(runs, 200 * 3, "every run counted, folded or not");
    assert!(reporter.alive());
}

/// With `[auth]` on, an upload without the token is refused from its
/// headers: the reporter answers 401 (a `google.rpc.Status`) before the
/// body comes, so stalled uploads cannot hold its memory; with the token,
/// the same request is read and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_without_the_token_are_refused_before_their_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut reporter = Reporter::start("auth", "[auth]\ningest_token = \"s3cr3t\"\n");
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(&reporter.http).await.unwrap();
        let head = "POST /v1/metrics HTTP/1.1\r\nhost: kuroko\r\ncontent-type: application/x-protobuf\r\n\
                    content-length: 16000000\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        // A few bytes of the 16 MB promised, then nothing.
        socket.write_all(&[0; 1024]).await.unwrap();
        stalled.push(socket);
    }
    for socket in &mut stalled {
        let mut answer = vec![0u8; 512];
        let read = tokio::time::timeout(std::time::Duration::from_secs(20), socket.read(&mut answer))
            .await
            .expect("an answer before the body: the token is checked first")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..read]);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    }
    let time = now_nanos();
    let request = metrics_request(vec![("shop", vec![histogram_metric(vec![good_point(time)])])]);
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", reporter.http))
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer s3cr3t")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let slowest = reporter.query_until("slowest", &["GET /good"]);
    assert!(slowest.contains("GET /good"), "{slowest}");
    assert!(reporter.alive());
    let rss = reporter.rss();
    assert!(rss < RSS_CEILING_BYTES, "RSS {rss} bytes");
    drop(stalled);
}
