//! The decode-and-validate path under hostile input, on stable Rust in CI:
//! real payloads from Kuroko's agent and SDK-shaped ones, mutated thousands of
//! times (bit flips, truncations, splices, huge varints), must never panic —
//! the same entry point the `cargo fuzz` target in `reporter/fuzz` drives.
//! Every mutation the in-place metrics reader reads must also decode with
//! prost to the same request and the same conversion.

use std::time::{Duration, SystemTime};

use kuroko_agent::export::{Encoded, Encoder, ExportConfig, ExportStats};
use kuroko_agent::{Agent, CapturedError, Outcome, SegmentKind, TransactionSpec};
use kuroko_reporter::ingest::{decode_and_validate, metrics_paths_agree, wire};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

#[path = "support/seeded.rs"]
mod seeded;
use seeded::Rng;

fn seeds() -> Vec<Vec<u8>> {
    let agent = Agent::default();
    let tx = agent.register(
        TransactionSpec::web("GET", "/cards/{id}")
            .feature("cards")
            .apdex(Duration::from_millis(1)),
    );
    for i in 0..200u64 {
        tx.record_nanos(
            50_000 + i * 997_003,
            if i % 9 == 0 { Outcome::Status(503) } else { Outcome::Ok },
        );
    }
    {
        let run = tx.start();
        let _db = run.segment(SegmentKind::Database, "SELECT cards");
        std::thread::sleep(Duration::from_millis(5));
    }
    agent.capture_error("GET /cards/{id}", CapturedError::new("DbTimeout", "took 5 s"));
    let harvest = agent.harvest();
    let encoder = Encoder::new(&ExportConfig::default(), "svc");
    let mut seeds = vec![encoder
        .metrics(&harvest, ExportStats::default(), SystemTime::now())
        .into_bytes()];
    seeds.extend(encoder.logs(&harvest).map(Encoded::into_bytes));
    seeds.extend(encoder.traces(&harvest).map(Encoded::into_bytes));
    seeds.push(Vec::new());
    seeds.push(sdk_metrics(false).encode_to_vec());
    seeds.push(sdk_metrics(true).encode_to_vec());
    seeds
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// What a stock OpenTelemetry SDK sends: a cumulative explicit-bucket
/// duration histogram in ms with integer and string attributes, an integer
/// sum, a gauge, scope attributes, an exemplar; with `summary`, a summary
/// too (which the in-place reader leaves to prost).
fn sdk_metrics(summary: bool) -> ExportMetricsServiceRequest {
    use any_value::Value::{BoolValue, DoubleValue, IntValue, StringValue};
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    let attributes = vec![
        kv("http.request.method", StringValue("POST".into())),
        kv("http.route", StringValue("/orders/{id}".into())),
        kv("http.response.status_code", IntValue(201)),
        kv("server.port", DoubleValue(8080.0)),
        kv("retry", BoolValue(false)),
    ];
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = vec![
        Metric {
            name: "http.server.request.duration".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: now - 60_000_000_000,
                    time_unix_nano: now,
                    count: 6,
                    sum: Some(180.0),
                    bucket_counts: vec![1, 2, 3, 0],
                    explicit_bounds: vec![10.0, 25.0, 50.0],
                    min: Some(4.0),
                    max: Some(49.0),
                    exemplars: vec![Exemplar {
                        time_unix_nano: now,
                        filtered_attributes: vec![kv("user", StringValue("u1".into()))],
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        value: Some(exemplar::Value::AsDouble(49.0)),
                    }],
                    ..HistogramDataPoint::default()
                }],
                aggregation_temporality: cumulative,
            })),
            ..Metric::default()
        },
        Metric {
            name: "kuroko.transaction.outcomes".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: now - 60_000_000_000,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsInt(6)),
                    ..NumberDataPoint::default()
                }],
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Metric::default()
        },
        Metric {
            name: "process.memory.usage".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(1e6)),
                    ..NumberDataPoint::default()
                }],
            })),
            ..Metric::default()
        },
    ];
    let metrics = if summary {
        let mut metrics = metrics;
        metrics.push(Metric {
            name: "rpc.duration".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: now,
                    count: 1,
                    ..SummaryDataPoint::default()
                }],
            })),
            ..Metric::default()
        });
        metrics
    } else {
        metrics
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", StringValue("orders".into())),
                    kv("host.name", StringValue("orders-1".into())),
                ],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.0".into(),
                    attributes: vec![kv("lib", StringValue("x".into()))],
                    ..InstrumentationScope::default()
                }),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            3 => {
                let at = rng.below(bytes.len() + 1);
                let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            4 => {
                // An over-long varint or a huge length prefix.
                let at = rng.below(bytes.len() + 1);
                bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
            }
            _ if bytes.len() > 2 => {
                let (a, b) = (rng.below(bytes.len()), rng.below(bytes.len()));
                let (a, b) = (a.min(b), a.max(b));
                let copy = bytes[a..b].to_vec();
                bytes.extend(copy);
            }
            _ => {}
        }
    }
    bytes
}

#[test]
fn mutated_payloads_never_panic_and_both_metrics_readers_agree() {
    let seeds = seeds();
    let [metrics, logs, traces] = decode_and_validate(&seeds[0]);
    assert!(
        metrics > 0 && logs == 0 && traces == 0,
        "the untouched metrics seed is stored: {metrics}"
    );
    assert!(decode_and_validate(&seeds[1])[1] > 0, "the logs seed is stored");
    // The agent's and the SDK's metrics are read in place; a request with a
    // summary is left to prost; both are stored.
    let (sdk, with_summary) = (&seeds[seeds.len() - 2], &seeds[seeds.len() - 1]);
    assert!(wire::read(&seeds[0]).is_ok() && wire::read(sdk).is_ok());
    assert_eq!(wire::read(with_summary), Err(wire::Unusual));
    // The histogram, its outcome count (an SDK's point) and the sum.
    assert_eq!(
        decode_and_validate(sdk)[0],
        3,
        "the SDK's histogram, outcomes and sum are stored"
    );
    assert_eq!(decode_and_validate(with_summary)[0], 3, "so are they beside a summary");
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let (mut decoded, mut read_in_place) = (0, 0);
    for round in 0..20_000 {
        let seed = &seeds[round % seeds.len()];
        let bytes = mutate(seed, &mut rng);
        read_in_place += usize::from(wire::read(&bytes).is_ok_and(|r| !r.resources.is_empty()));
        let outcome = std::panic::catch_unwind(|| {
            assert!(
                metrics_paths_agree(&bytes),
                "round {round}: the in-place reader and prost disagree"
            );
            decode_and_validate(&bytes)
        });
        match outcome {
            Ok(points) => decoded += usize::from(points.iter().any(|p| *p > 0)),
            Err(_) => panic!(
                "round {round} panicked on {} bytes: {:02x?}",
                bytes.len(),
                &bytes[..bytes.len().min(64)]
            ),
        }
    }
    assert!(
        read_in_place > 250,
        "the two metrics readers are compared on many mutations ({read_in_place})"
    );
    assert!(
        decoded > 1_000,
        "mutations still reach the conversion, not just the decoder ({decoded})"
    );
}
