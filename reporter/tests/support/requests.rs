//! OTLP requests the hostile-input tests send: a service's resource, a
//! route's attributes, duration histograms and a good point to store beside
//! each attack.

#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::kuroko_serve::kv;

/// The resource of `service` on host h1.
pub fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("host.name", "h1")],
        ..Default::default()
    })
}

/// The attributes of `GET route`.
pub fn route(route: &str) -> Vec<KeyValue> {
    vec![kv("http.request.method", "GET"), kv("http.route", route)]
}

/// `http.server.request.duration` in seconds, with `data`.
pub fn duration_metric(data: metric::Data) -> Metric {
    Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(data),
        ..Default::default()
    }
}

/// Delta explicit-bucket duration `points`.
pub fn histogram_metric(points: Vec<HistogramDataPoint>) -> Metric {
    duration_metric(metric::Data::Histogram(Histogram {
        data_points: points,
        aggregation_temporality: AggregationTemporality::Delta as i32,
    }))
}

/// A request of `metrics` per service.
pub fn metrics_request(resources: Vec<(&str, Vec<Metric>)>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: resources
            .into_iter()
            .map(|(service, metrics)| ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Three good runs of GET /good ending at `time`: 10, 20 and 30 ms.
pub fn good_point(time: u64) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: route("/good"),
        start_time_unix_nano: time - 60_000_000_000,
        time_unix_nano: time,
        count: 3,
        sum: Some(0.06),
        bucket_counts: vec![0, 1, 2, 0],
        explicit_bounds: vec![0.005, 0.01, 0.05],
        min: Some(0.01),
        max: Some(0.03),
        ..Default::default()
    }
}
