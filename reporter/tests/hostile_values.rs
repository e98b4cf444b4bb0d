//! Values a client may send that poison answers, traces too big to keep,
//! and lists too long to show, against a real `kuroko serve` on loopback
//! (items 4, 5 and 7 of the hostile-input issue). Each test asserts what a
//! user would notice: the reporter stays up and under an RSS ceiling (read
//! from /proc), the attack gets its reason, and good data sent alongside is
//! read back exactly through the API.

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
#[path = "support/reporter.rs"]
mod reporter;
#[path = "support/requests.rs"]
mod requests;

use kuroko_serve::kv;
use reporter::{now_nanos, Reporter};
use requests::{duration_metric, good_point, histogram_metric, metrics_request, resource, route};

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// The RSS the reporter may reach in these tests.
const RSS_CEILING_BYTES: u64 = 300 << 20;

fn exponential(points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    duration_metric(metric::Data::ExponentialHistogram(ExponentialHistogram {
        data_points: points,
        aggregation_temporality: AggregationTemporality::Delta as i32,
    }))
}

/// The slowest answer's row of `transaction`.
fn row<'a>(answer: &'a serde_json::Value, transaction: &str) -> Option<&'a serde_json::Value> {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["transaction"] == transaction)
}

/// The good route's row reads back exactly: 3 runs, 20 ms on average, from
/// 10 to 30 ms.
fn assert_good(answer: &serde_json::Value) {
    let good = row(answer, "GET /good").unwrap_or_else(|| panic!("GET /good answered: {answer}"));
    assert_eq!(good["count"], 3, "{good}");
    assert!((good["mean"].as_f64().unwrap() - 0.02).abs() < 1e-9, "{good}");
    assert_eq!(
        (good["min"].as_f64(), good["max"].as_f64()),
        (Some(0.01), Some(0.03)),
        "{good}"
    );
}

/// 1,000 runs of a real service's latency (20 to 80 ms, log-uniform), as an
/// exponential point at scale 7 (as Kuroko's agent sends): (offset, counts,
/// sum, min, max, the exact p50).
fn real_series() -> (i32, Vec<u64>, f64, f64, f64, f64) {
    let runs: Vec<f64> = (0..1_000).map(|i| 0.02 * 4f64.powf(i as f64 / 999.0)).collect();
    let index = |v: f64| ((v.log2() * 128.0).ceil() - 1.0) as i32;
    let (low, high) = (index(runs[0]), index(runs[999]));
    let mut counts = vec![0u64; (high - low + 1) as usize];
    for &run in &runs {
        counts[(index(run) - low) as usize] += 1;
    }
    (low, counts, runs.iter().sum(), runs[0], runs[999], runs[499])
}

/// Item 7: values no run can have. A run below a nanosecond in a real
/// 1,000-run series (which used to make every merge of the series coarse
/// enough to move its p50 by several percent), sums that are NaN,
/// negative or outside count × [min, max] are refused with their reasons;
/// the real series' p50 stays where its own runs put it; the good route in
/// the same request is stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_would_poison_answers_are_refused() {
    let mut reporter = Reporter::start("poison", "");
    let time = now_nanos();
    let (offset, counts, sum, min, max, p50) = real_series();
    let point = |path: &str, offset: i32, counts: Vec<u64>, sum: f64, min_max: Option<(f64, f64)>| {
        ExponentialHistogramDataPoint {
            attributes: route(path),
            start_time_unix_nano: time - 60_000_000_000,
            time_unix_nano: time,
            count: counts.iter().sum(),
            sum: Some(sum),
            scale: 7,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts,
            }),
            min: min_max.map(|m| m.0),
            max: min_max.map(|m| m.1),
            ..Default::default()
        }
    };
    let bad_sum = |path: &str, sum: f64| HistogramDataPoint {
        sum: Some(sum),
        attributes: route(path),
        ..good_point(time)
    };
    let request = metrics_request(vec![(
        "shop",
        vec![
            exponential(vec![
                point("/real", offset, counts, sum, Some((min, max))),
                // One crafted run at 2^-16777216 s, without min or max:
                // merged, the series went to scale -11 and its p50 doubled.
                point("/real", i32::MIN, vec![1], 0.0, None),
            ]),
            histogram_metric(vec![
                good_point(time),
                // A run in a first bucket ending at 1e-300 s.
                HistogramDataPoint {
                    attributes: route("/real"),
                    count: 1,
                    sum: Some(0.0),
                    bucket_counts: vec![1, 0],
                    explicit_bounds: vec![1e-300],
                    min: None,
                    max: None,
                    ..good_point(time)
                },
                // Three runs of 10 to 30 ms that would average 100 s.
                bad_sum("/mean", 300.0),
                bad_sum("/nan", f64::NAN),
                bad_sum("/negative", -1.0),
            ]),
        ],
    )]);
    let (status, answer): (u16, ExportMetricsServiceResponse) = reporter.post("metrics", request.encode_to_vec()).await;
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("a partial-success answer");
    assert_eq!(partial.rejected_data_points, 5, "{partial:?}");
    for reason in [
        "below a nanosecond",
        "sum is not a finite number",
        "sum is negative",
        "outside [min, max]",
    ] {
        assert!(partial.error_message.contains(reason), "{reason:?} in {partial:?}");
    }
    let slowest = reporter.api("slowest", "limit=100").await;
    assert_good(&slowest);
    let real = row(&slowest, "GET /real").unwrap_or_else(|| panic!("GET /real answered: {slowest}"));
    assert_eq!(real["count"], 1_000, "the crafted runs are not counted: {real}");
    let read = real["p50"].as_f64().unwrap();
    assert!(
        (read / p50 - 1.0).abs() < 0.01,
        "p50 {read} s against the runs' {p50} s: within the scale-7 error"
    );
    for absent in ["GET /nan", "GET /negative", "GET /mean"] {
        assert!(row(&slowest, absent).is_none(), "{absent} in {slowest}");
    }
    reporter.assert_up_and_under(RSS_CEILING_BYTES);
}

/// Item 7: counts near u64::MAX. Each point may hold at most 2^53 runs, but
/// 2,048 of them in one series and minute add up to 2^64, which SQLite
/// stored as −1: the stored count saturates at 2^49 runs (so that no read's
/// sum over a series' rows can overflow), and the good route is stored
/// exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_add_up_past_the_stores_integers_saturate() {
    let mut reporter = Reporter::start("counts", "");
    let count = send_counts_past_the_stores_integers(&reporter).await;
    assert_eq!(count, 1 << 49, "saturated, not wrapped");
    reporter.assert_up_and_under(RSS_CEILING_BYTES);
}

/// The same on ClickHouse, whose `UInt64` sums wrapped instead (each point
/// was a row of 2^53 runs: 2,100 of them add up past 2^64): the request's
/// points of one series and minute are one row, saturated at 2^49 runs, and
/// the answer is what the rows add up to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_add_up_past_the_stores_integers_saturate_on_clickhouse() {
    let database = "hostile_counts";
    drop(clickhouse_server::clickhouse(database));
    let url = clickhouse_server::url(database);
    let mut reporter = Reporter::start_on("counts-clickhouse", "", Some(&url));
    let count = send_counts_past_the_stores_integers(&reporter).await;
    let rows = clickhouse_server::query(&format!(
        "SELECT count FROM {database}.histogram_minute \
         WHERE series_id IN (SELECT id FROM {database}.series WHERE txn = 'GET /many')"
    ))
    .unwrap();
    let counts: Vec<u128> = rows.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(
        !counts.is_empty() && counts.iter().all(|c| *c <= 1 << 49),
        "each row saturated: {rows}"
    );
    assert_eq!(
        u128::from(count),
        counts.iter().sum::<u128>(),
        "the answer is the rows' sum, unwrapped"
    );
    assert_eq!(count, 1 << 49, "saturated, not wrapped");
    reporter.assert_up_and_under(RSS_CEILING_BYTES);
}

/// 2,100 points of 2^53 runs of GET /many and the good point, in one
/// request: the answered count of GET /many, once the good route reads
/// back exactly.
async fn send_counts_past_the_stores_integers(reporter: &Reporter) -> u64 {
    let time = now_nanos();
    let many = |i: u64| HistogramDataPoint {
        attributes: route("/many"),
        start_time_unix_nano: time - 60_000_000_000 + i,
        time_unix_nano: time,
        count: 1 << 53,
        sum: Some(0.0),
        bucket_counts: vec![1 << 53],
        explicit_bounds: vec![],
        ..Default::default()
    };
    let mut points: Vec<HistogramDataPoint> = (0..2_100).map(many).collect();
    points.push(good_point(time));
    let request = metrics_request(vec![("shop", vec![histogram_metric(points)])]);
    let (status, answer): (u16, ExportMetricsServiceResponse) = reporter.post("metrics", request.encode_to_vec()).await;
    assert_eq!((status, answer.partial_success), (200, None));
    reporter.stored().await;
    let slowest = reporter.api("slowest", "limit=100").await;
    assert_good(&slowest);
    let many = row(&slowest, "GET /many").unwrap_or_else(|| panic!("GET /many answered: {slowest}"));
    many["count"].as_u64().unwrap_or_else(|| panic!("a count: {many}"))
}

/// Item 5: a trace with 100,000 children, one of them with a 4 MB attribute
/// (once stored as 17.5 MB, its page taking 8.6 s), in the same request as
/// a good transaction. The big trace is kept within its budgets
/// (`max_trace_spans`, `max_trace_bytes`, `max_span_attribute_bytes`) and
/// the answer says what was left out, as a warning (no span is rejected:
/// every one still counts as a segment); `/metrics` counts it; the stored
/// trace and its transaction's page stay small; the good transaction's run
/// and its trace are stored exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_trace_is_kept_within_its_budgets() {
    let mut reporter = Reporter::start("trace", "");
    let end = now_nanos();
    let span = |trace: u8, id: u64, parent: Option<u64>, name: &str, kind: SpanKind, attributes: Vec<KeyValue>| Span {
        trace_id: vec![trace; 16],
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: end - 2_000_000_000,
        end_time_unix_nano: end - 1_000_000_000 + id % 1_000,
        attributes,
        ..Default::default()
    };
    let mut spans = vec![span(1, 1, None, "GET /big", SpanKind::Server, route("/big"))];
    for id in 2..100_002u64 {
        // The one walked first (children are walked from the last) carries 4 MB.
        let attributes = if id == 100_001 {
            vec![kv("payload", &"x".repeat(4 << 20))]
        } else {
            vec![]
        };
        spans.push(span(1, id, Some(1), "work", SpanKind::Internal, attributes));
    }
    // The good transaction: 1 s, a query and a step.
    spans.push(span(2, 1, None, "GET /good", SpanKind::Server, route("/good")));
    spans.push(span(
        2,
        2,
        Some(1),
        "SELECT cards",
        SpanKind::Client,
        vec![kv("db.system", "postgresql")],
    ));
    spans.push(span(
        2,
        3,
        Some(1),
        "render",
        SpanKind::Internal,
        vec![kv("template", "card.html")],
    ));
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("shop"),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = request.encode_to_vec();
    assert!(body.len() < 16 << 20, "within the body limit: {} bytes", body.len());
    let (status, answer): (u16, ExportTraceServiceResponse) = reporter.post("traces", body).await;
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("a partial-success warning");
    assert_eq!(partial.rejected_spans, 0, "{partial:?}");
    assert!(partial.error_message.contains("max_trace_bytes"), "{partial:?}");
    assert!(reporter.metric("kuroko_reporter_trace_spans_trimmed_total").await >= 9_000.0);
    assert!(reporter.metric("kuroko_reporter_trace_attributes_trimmed_total").await >= 1.0);

    // Stored: the big trace within 256 KiB, the good one whole.
    let rows = reporter.sql_until(
        "SELECT trace_id, length(spans) AS bytes, spans FROM kept_trace",
        |rows| rows.len() == 2,
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let big = rows.iter().find(|r| r["trace_id"] == "01".repeat(16)).unwrap();
    let bytes = big["bytes"].as_u64().unwrap();
    assert!(bytes <= 256 << 10, "the big trace is stored in {bytes} bytes");
    let good = rows.iter().find(|r| r["trace_id"] == "02".repeat(16)).unwrap();
    let good: serde_json::Value = serde_json::from_str(good["spans"].as_str().unwrap()).unwrap();
    let spans = good.as_array().unwrap();
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {good}"))
    };
    assert_eq!(spans.len(), 3, "{good}");
    assert_eq!(spans[0]["name"], "GET /good");
    assert_eq!(named("SELECT cards")["attributes"]["db.system"], "postgresql");
    assert_eq!(named("render")["attributes"]["template"], "card.html");

    // Read back: the good run exactly, the big one counted.
    let slowest = reporter.api("slowest", "limit=100").await;
    let good_run = row(&slowest, "GET /good").unwrap_or_else(|| panic!("GET /good answered: {slowest}"));
    assert_eq!(good_run["count"], 1, "{good_run}");
    assert!(
        (good_run["mean"].as_f64().unwrap() - 1.000_000_003).abs() < 1e-3,
        "{good_run}"
    );
    assert_eq!(row(&slowest, "GET /big").map(|r| r["count"].clone()), Some(1.into()));

    // The big trace's page: small and quick (generously, under load).
    let (status, page, took) = reporter
        .get("/transactions?service=shop&transaction=GET%20/big&since=1h")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.len() < 2 << 20, "the page is {} bytes", page.len());
    assert!(took.as_secs() < 20, "the page took {took:?}");
    assert!(!page.contains(&"x".repeat(2_000)), "the payload is not on the page");
    let rss = reporter.assert_up_and_under(RSS_CEILING_BYTES);
    eprintln!(
        "trace: stored {bytes} bytes, page {} bytes in {took:?}, RSS {} MB",
        page.len(),
        rss >> 20
    );
}

/// Item 4's second half: thousands of services (each within the series
/// limits) made an overview without a row limit (180 MB of HTML for
/// 200,000). The overview's services and features, and the errors page's
/// groups, show a page of rows with "Showing 1–50 of N" and a link to the
/// next page, which shows the next rows; the time series API answers the
/// `limit` busiest lines with their total; every service's runs are still
/// answered by the API, and the good service's exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lists_are_shown_a_page_at_a_time() {
    const SERVICES: usize = 3_000;
    let mut reporter = Reporter::start("lists", "");
    let time = now_nanos();
    let names: Vec<String> = (0..SERVICES).map(|i| format!("svc-{i:04}")).collect();
    let mut resources: Vec<(&str, Vec<Metric>)> = names
        .iter()
        .map(|name| {
            let point = HistogramDataPoint {
                attributes: route("/work"),
                ..good_point(time)
            };
            (name.as_str(), vec![histogram_metric(vec![point])])
        })
        .collect();
    resources.push(("shop", vec![histogram_metric(vec![good_point(time)])]));
    let (status, answer): (u16, ExportMetricsServiceResponse) = reporter
        .post("metrics", metrics_request(resources).encode_to_vec())
        .await;
    assert_eq!((status, answer.partial_success), (200, None));
    // An error group per service, too.
    let logs = ExportLogsServiceRequest {
        resource_logs: names
            .iter()
            .map(|name| ResourceLogs {
                resource: resource(name),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: time,
                        severity_number: 17,
                        attributes: {
                            let mut a = route("/work");
                            a.push(kv("exception.type", &format!("Failure{name}")));
                            a.push(kv("exception.message", "it broke"));
                            a
                        },
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    let (status, answer): (u16, ExportLogsServiceResponse) = reporter.post("logs", logs.encode_to_vec()).await;
    assert_eq!((status, answer.partial_success), (200, None));

    let total = format!("{},{:03}", (SERVICES + 1) / 1000, (SERVICES + 1) % 1000);
    let (status, page, took) = reporter.get("/?since=1h").await;
    assert_eq!(status, 200, "{page}");
    eprintln!("overview: {} bytes in {took:?}", page.len());
    assert!(page.len() < 1 << 20, "the overview is {} bytes", page.len());
    assert!(took.as_secs() < 60, "the overview took {took:?}");
    assert!(
        page.contains(&format!("Showing 1–50 of {total} services")),
        "{}",
        &page[..4_000]
    );
    let shown = page.matches("<tr data-service=").count();
    assert_eq!(shown, 50, "service rows shown");
    // The next page: the next 50, and a way back.
    let next = "/?since=1h&amp;services_from=50";
    assert!(page.contains(next), "a link to the next page");
    let (status, second, _) = reporter.get(&next.replace("&amp;", "&")).await;
    assert_eq!(status, 200);
    assert!(second.contains(&format!("Showing 51–100 of {total} services")));
    assert!(second.contains("Previous"));

    let (status, errors, took) = reporter.get("/errors?since=1h").await;
    assert_eq!(status, 200, "{errors}");
    eprintln!("errors: {} bytes in {took:?}", errors.len());
    assert!(errors.len() < 1 << 20, "the errors page is {} bytes", errors.len());
    assert!(
        errors.contains(&format!(
            "Showing 1–50 of {},{:03} groups",
            SERVICES / 1000,
            SERVICES % 1000
        )),
        "{}",
        &errors[..4_000]
    );
    assert_eq!(errors.matches("data-error=").count(), 50);

    // Time series: the 20 busiest lines by default, with how many there are.
    let lines = reporter.api("timeseries", "").await;
    assert_eq!(lines["series"].as_array().unwrap().len(), 20);
    assert_eq!(lines["total_series"], SERVICES + 1);

    // The API still answers every service, and the good one exactly.
    let slowest = reporter.api("slowest", "limit=5000").await;
    assert_eq!(slowest["rows"].as_array().unwrap().len(), SERVICES + 1);
    assert_good(&slowest);
    let rss = reporter.assert_up_and_under(RSS_CEILING_BYTES);
    eprintln!("lists: RSS {} MB", rss >> 20);
}
