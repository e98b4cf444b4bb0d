//! Cumulative streams across replicas: an SDK's cumulative points for an
//! hour (one export a minute, as OpenTelemetry SDKs send by default) go to
//! two reporter replicas on one ClickHouse store, alternating, as a load
//! balancer would send them. Each replica must turn each point into what
//! was added since the stream's previous point, whichever replica took that
//! one; a point sent twice (a retry) or late (overtaken) must add nothing;
//! and a restart of the SDK's process (a new start time) must count whole.
//! Spans of the same transactions arrive too, some before the first metric
//! point: they must not count runs the metric counts.
//!
//! Needs Debian's `clickhouse-server` (`tests/run-all.sh` installs it);
//! without it the test fails, saying so.

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Histogram as ExplicitHistogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};

use kuroko_reporter::ingest::otlp::Limits;
use kuroko_reporter::ingest::Receiver;
use kuroko_reporter::store::{Filter, Store};

const DATABASE: &str = "kuroko_cumulative_replicas";
const BOUNDS: [f64; 5] = [0.01, 0.05, 0.1, 0.5, 1.0];

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "fleet-svc"),
            kv("host.name", "fleet-1"),
            kv("service.instance.id", "pod-a"),
        ],
        ..Default::default()
    })
}

/// One stream's cumulative value: counts per explicit bucket (for
/// `GET /pay`, status 200 or 500) or per exponential bucket at scale 3
/// (`GET /list`), and a counter.
#[derive(Clone, Default)]
struct Cumulative {
    pay_ok: [u64; 6],
    pay_failed: [u64; 6],
    list: Vec<u64>,
    list_sum: f64,
    pay_sum: [f64; 2],
}

/// What minute `m` adds: a few runs per stream, varying.
fn add_minute(c: &mut Cumulative, m: u64) -> (u64, u64, u64) {
    let ok = 3 + m % 5;
    let failed = u64::from(m.is_multiple_of(7));
    let list = 2 + m % 3;
    c.pay_ok[(m % 4) as usize] += ok;
    c.pay_sum[0] += ok as f64 * [0.005, 0.03, 0.07, 0.3][(m % 4) as usize];
    c.pay_failed[4] += failed;
    c.pay_sum[1] += failed as f64 * 0.8;
    if c.list.is_empty() {
        c.list = vec![0; 8];
    }
    c.list[(m % 8) as usize] += list;
    c.list_sum += list as f64 * 0.02 * f64::exp2((m % 8) as f64 / 8.0);
    (ok, failed, list)
}

fn request(c: &Cumulative, start: u64, time: u64) -> ExportMetricsServiceRequest {
    let attrs = |route: &str, status: Option<i64>| {
        let mut a = vec![kv("http.request.method", "GET"), kv("http.route", route)];
        if let Some(status) = status {
            a.push(int("http.response.status_code", status));
        }
        a
    };
    let explicit = |counts: [u64; 6], sum: f64, status: i64| HistogramDataPoint {
        attributes: attrs("/pay", Some(status)),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts.to_vec(),
        explicit_bounds: BOUNDS.to_vec(),
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = vec![
        Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(ExplicitHistogram {
                data_points: vec![
                    explicit(c.pay_ok, c.pay_sum[0], 200),
                    explicit(c.pay_failed, c.pay_sum[1], 500),
                ],
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        },
        Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: attrs("/list", None),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: c.list.iter().sum(),
                    sum: Some(c.list_sum),
                    scale: 3,
                    positive: Some(Buckets {
                        // 0.02 s is bucket -46 at scale 3 (2^(-45/8) = 0.0204).
                        offset: -46,
                        bucket_counts: c.list.clone(),
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        },
        Metric {
            name: "kuroko.segment.calls".into(),
            unit: "{call}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    attributes: vec![
                        kv("kuroko.transaction", "GET /pay"),
                        kv("http.route", "/pay"),
                        kv("kuroko.segment.kind", "database"),
                        kv("kuroko.segment.name", "SELECT cards"),
                    ],
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsDouble(
                        c.pay_ok.iter().chain(&c.pay_failed).sum::<u64>() as f64,
                    )),
                    ..Default::default()
                }],
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "fleet-svc.http".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// SERVER spans of `GET /pay`, ending at `time`: runs the metric counts too.
fn spans(count: u8, time: u64) -> ExportTraceServiceRequest {
    let spans = (0..count)
        .map(|i| Span {
            trace_id: vec![i + 1; 16],
            span_id: vec![i + 1; 8],
            name: "GET /pay".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: time - 20_000_000,
            end_time_unix_nano: time,
            attributes: vec![
                kv("http.request.method", "GET"),
                kv("http.route", "/pay"),
                int("http.response.status_code", 200),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_of_cumulative_points_through_two_replicas_counts_each_run_once() {
    let first: Arc<dyn Store> = Arc::new(clickhouse_server::clickhouse(DATABASE));
    let second: Arc<dyn Store> = Arc::new(clickhouse_server::connect_again(DATABASE));
    let replicas = [
        Receiver::new(first.clone(), Limits::default(), None).unwrap(),
        Receiver::new(second, Limits::default(), None).unwrap(),
    ];
    const MINUTE: u64 = 60_000_000_000;
    let now = now_nanos();
    let hour_ago = now - 62 * MINUTE;
    // The SDK's process starts an hour ago; its spans come before its first
    // metric export, through either replica.
    replicas[0].traces(spans(4, hour_ago + MINUTE / 2)).await.unwrap();
    replicas[1].traces(spans(3, hour_ago + MINUTE / 2)).await.unwrap();

    let (mut runs, mut failures, mut list_runs, mut calls) = (0u64, 0u64, 0u64, 0u64);
    let mut stream = Cumulative::default();
    let mut start = hour_ago;
    let mut previous: Option<ExportMetricsServiceRequest> = None;
    for m in 1..=60u64 {
        if m == 40 {
            // The process restarts: a new start time, counts from zero.
            stream = Cumulative::default();
            start = hour_ago + m * MINUTE - MINUTE / 2;
        }
        let (ok, failed, list) = add_minute(&mut stream, m);
        runs += ok + failed;
        failures += failed;
        list_runs += list;
        calls += ok + failed;
        let point = request(&stream, start, hour_ago + m * MINUTE);
        let replica = &replicas[(m % 2) as usize];
        let accepted = replica.metrics(point.clone()).await.unwrap();
        assert_eq!(accepted.rejected, 0, "minute {m}: {}", accepted.message);
        // Every ninth minute the SDK retries the same export through the
        // other replica; every eleventh, the previous minute's point arrives
        // late there.
        let other = &replicas[((m + 1) % 2) as usize];
        if m.is_multiple_of(9) {
            other.metrics(point.clone()).await.unwrap();
        }
        if m.is_multiple_of(11) {
            if let Some(late) = &previous {
                other.metrics(late.clone()).await.unwrap();
            }
        }
        previous = Some(point);
    }

    let window = ((hour_ago / MINUTE) as i64 - 1, (now / MINUTE) as i64 + 2);
    let filter = Filter {
        service: Some("fleet-svc".into()),
        ..Filter::default()
    };
    let histograms = first.histograms(&filter, window.0, window.1).unwrap();
    let count = |transaction: &str| -> u64 {
        histograms
            .iter()
            .filter(|(k, _)| k.transaction == transaction)
            .map(|(_, h)| h.count)
            .sum()
    };
    assert_eq!(
        count("GET /pay"),
        runs,
        "runs of GET /pay (explicit buckets, with spans too)"
    );
    assert_eq!(count("GET /list"), list_runs, "runs of GET /list (exponential)");
    let outcomes = first
        .counters(&filter, "kuroko.transaction.outcomes", window.0, window.1)
        .unwrap();
    let outcome = |label: &str| -> f64 {
        outcomes
            .iter()
            .filter(|(k, l, _)| k.transaction == "GET /pay" && l == label)
            .map(|(_, _, v)| v)
            .sum()
    };
    assert_eq!(
        outcome("kuroko.outcome=5xx"),
        failures as f64,
        "failed runs of GET /pay"
    );
    assert_eq!(
        outcome("kuroko.outcome=ok"),
        (runs - failures) as f64,
        "good runs of GET /pay"
    );
    let segment_calls: f64 = first
        .counters(&filter, "kuroko.segment.calls", window.0, window.1)
        .unwrap()
        .iter()
        .filter(|(k, l, _)| k.transaction == "GET /pay" && l.contains("SELECT cards"))
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(
        segment_calls, calls as f64,
        "a cumulative counter through both replicas"
    );
}
