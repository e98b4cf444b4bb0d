//! Side by side with `tracing-opentelemetry` (feature `opentelemetry`): a
//! transaction that is also an OpenTelemetry span carries that span's trace
//! and span ids into Kuroko's slow trace and exemplar, so that one id opens
//! the same request in both tools; the SDK's sampler is respected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::Router;
use kuroko_agent::export::{Encoder, ExportConfig, ExportStats};
use kuroko_agent::{tower_layer, tracing_layer, Agent, Harvest, TraceSnapshot, TransactionSpec};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use prost::Message;
use tracing::{info_span, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::Registry;

/// What the OpenTelemetry SDK exported.
#[derive(Clone, Debug, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Collect {
    fn span(&self, name: &str) -> SpanData {
        let spans = self.0.lock().unwrap();
        let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one exported span {name}: {:#?}", *spans);
        found[0].clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn only_trace<'a>(harvest: &'a Harvest, name: &str) -> &'a TraceSnapshot {
    let traces: Vec<&TraceSnapshot> = harvest.traces.iter().filter(|t| &*t.meta.name == name).collect();
    assert_eq!(traces.len(), 1, "one slow trace of {name}: {traces:#?}");
    traces[0]
}

/// (trace id, span id) of each exemplar, as exported.
fn exemplars(harvest: &Harvest) -> Vec<(String, String)> {
    let encoded = Encoder::new(&ExportConfig::default().with_histogram_scale(3), "test").metrics(
        harvest,
        ExportStats::default(),
        SystemTime::now(),
    );
    let request = ExportMetricsServiceRequest::decode(encoded.as_bytes()).expect("the agent's metrics decode");
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter_map(|m| match &m.data {
            Some(metric::Data::ExponentialHistogram(h)) => Some(h),
            _ => None,
        })
        .flat_map(|h| &h.data_points)
        .flat_map(|p| &p.exemplars)
        .map(|e| (hex(&e.trace_id), hex(&e.span_id)))
        .collect()
}

/// An agent whose `checkout` job is slow from 4 × 2 ms on, and an SDK
/// exporting into `Collect` with `sampler`.
fn setup(sampler: Sampler) -> (Agent, Collect, SdkTracerProvider) {
    let agent = Agent::default();
    agent.register(TransactionSpec::job("checkout").apdex(Duration::from_millis(2)));
    agent.register(TransactionSpec::web("GET", "/checkout").apdex(Duration::from_millis(2)));
    let exported = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exported.clone())
        .build();
    (agent, exported, provider)
}

/// A slow `checkout` transaction inside a `request` span, with a query.
fn slow_checkout() {
    let request = info_span!("request");
    let _request = request.enter();
    let checkout = info_span!("checkout", kuroko.transaction = "checkout");
    let _checkout = checkout.enter();
    let _query = info_span!("SELECT carts", db.system = "postgresql").entered();
    std::thread::sleep(Duration::from_millis(20));
}

fn assert_same_ids(agent: &Agent, exported: &Collect) {
    let harvest = agent.harvest();
    let kuroko = only_trace(&harvest, "checkout");
    let otel = exported.span("checkout");
    let request = exported.span("request");
    let (trace_id, span_id) = (
        hex(&otel.span_context.trace_id().to_bytes()),
        hex(&otel.span_context.span_id().to_bytes()),
    );
    assert_eq!(
        hex(&kuroko.trace_id),
        trace_id,
        "Kuroko's trace id is the OpenTelemetry span's"
    );
    assert_eq!(hex(&kuroko.span_id), span_id, "and so is its span id");
    assert_eq!(
        kuroko.parent_span_id.map(|id| hex(&id)),
        Some(hex(&request.span_context.span_id().to_bytes())),
        "the enclosing span is the parent"
    );
    assert_eq!(
        exemplars(&harvest),
        vec![(trace_id, span_id)],
        "the exemplar opens the same span"
    );
    assert_eq!(kuroko.segments.len(), 1, "{:#?}", kuroko.segments);
}

#[test]
fn a_transaction_span_carries_the_opentelemetry_ids() {
    let (agent, exported, provider) = setup(Sampler::AlwaysOn);
    let subscriber = Registry::default()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(tracing_layer::KurokoLayer::new(agent.clone()));
    tracing::subscriber::with_default(subscriber, slow_checkout);
    provider.force_flush().expect("flush");
    assert_same_ids(&agent, &exported);
}

#[test]
fn the_order_of_the_layers_does_not_matter() {
    let (agent, exported, provider) = setup(Sampler::AlwaysOn);
    let subscriber = Registry::default()
        .with(tracing_layer::KurokoLayer::new(agent.clone()))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, slow_checkout);
    provider.force_flush().expect("flush");
    assert_same_ids(&agent, &exported);
}

#[test]
fn a_remote_parent_set_through_opentelemetry_is_followed() {
    let (agent, exported, provider) = setup(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let subscriber = Registry::default()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(tracing_layer::KurokoLayer::new(agent.clone()));
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let headers = HashMap::from([(
        "traceparent".to_owned(),
        format!("00-{caller_trace}-00f067aa0ba902b7-01"),
    )]);
    tracing::subscriber::with_default(subscriber, || {
        let parent = TraceContextPropagator::new().extract(&headers);
        let checkout = info_span!("checkout", kuroko.transaction = "checkout");
        checkout.set_parent(parent).expect("set the remote parent");
        let _checkout = checkout.enter();
        std::thread::sleep(Duration::from_millis(20));
    });
    provider.force_flush().expect("flush");
    let harvest = agent.harvest();
    let kuroko = only_trace(&harvest, "checkout");
    let otel = exported.span("checkout");
    assert_eq!(hex(&kuroko.trace_id), caller_trace);
    assert_eq!(hex(&otel.span_context.trace_id().to_bytes()), caller_trace);
    assert_eq!(kuroko.span_id, otel.span_context.span_id().to_bytes());
}

#[test]
fn what_the_sampler_drops_is_timed_but_not_kept() {
    let (agent, exported, provider) = setup(Sampler::AlwaysOff);
    let subscriber = Registry::default()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(tracing_layer::KurokoLayer::new(agent.clone()));
    tracing::subscriber::with_default(subscriber, slow_checkout);
    provider.force_flush().expect("flush");
    assert!(exported.0.lock().unwrap().is_empty(), "the SDK exported nothing");
    let harvest = agent.harvest();
    assert!(harvest.traces.is_empty(), "{:#?}", harvest.traces);
    assert_eq!(harvest.transaction("checkout").expect("timed").count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_inside_a_request_span_takes_its_ids() {
    let (agent, exported, provider) = setup(Sampler::AlwaysOn);
    let subscriber = Registry::default().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);
    // The request span entered around Kuroko's layer, as tower-http's
    // TraceLayer does.
    let app = Router::new()
        .route(
            "/checkout",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                "ok"
            }),
        )
        .layer(tower_layer::KurokoLayer::new(agent.clone()));
    let service = tower::service_fn(move |request: http::Request<axum::body::Body>| {
        let span = info_span!("request");
        let mut app = app.clone();
        let future = span.in_scope(|| tower::Service::call(&mut app, request));
        future.instrument(span)
    });
    let mut service = service;
    let request = http::Request::get("/checkout")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = tower::Service::call(&mut service, request).await.expect("served");
    assert_eq!(response.status(), 200);
    provider.force_flush().expect("flush");
    let harvest = agent.harvest();
    let kuroko = only_trace(&harvest, "GET /checkout");
    let otel = exported.span("request");
    assert_eq!(kuroko.trace_id, otel.span_context.trace_id().to_bytes());
    assert_eq!(kuroko.span_id, otel.span_context.span_id().to_bytes());
}
