//! W3C Trace Context across two real services on loopback: service A (axum +
//! Kuroko's tower layer) calls service B (axum + Kuroko's tower layer) over
//! HTTP through Kuroko's client layer. A slow request must be one trace in
//! both services' Kuroko slow traces and in the exemplar on A's histogram.

use std::time::{Duration, SystemTime};

mod support;

use axum::extract::{Extension, State};
use axum::routing::get;
use axum::Router;
use kuroko_agent::export::{Encoder, ExportConfig, ExportStats};
use kuroko_agent::tower_layer::{
    CurrentTransaction, KurokoClientLayer, KurokoClientService, KurokoLayer, OutgoingCall,
};
use kuroko_agent::{Agent, Harvest, SegmentKind, TraceSnapshot, TransactionSpec};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;
use support::http::{listen, Reqwest};
use tower::{Layer, Service, ServiceExt};

/// How long B's slow route takes: far over both services' slow threshold
/// (4 × 5 ms), so every run of it (and of A's route that waits for it) is
/// kept as a trace, however loaded the machine.
const B_TAKES: Duration = Duration::from_millis(40);

fn slow_routes(agent: &Agent, route: &str) {
    agent.register(TransactionSpec::web("GET", route).apdex(Duration::from_millis(5)));
}

/// Service B: `GET /quote` takes [`B_TAKES`].
async fn service_b(agent: Agent) -> String {
    slow_routes(&agent, "/quote");
    let app = Router::new()
        .route(
            "/quote",
            get(|| async {
                tokio::time::sleep(B_TAKES).await;
                "42"
            }),
        )
        .layer(KurokoLayer::new(agent));
    listen(app).await
}

/// Service A: `GET /checkout` asks B for a quote through the client layer.
async fn service_a(agent: Agent, b: String) -> String {
    slow_routes(&agent, "/checkout");
    let client = KurokoClientLayer::new().layer(Reqwest(reqwest::Client::new()));
    let app = Router::new()
        .route(
            "/checkout",
            get(
                |State((mut client, b)): State<(KurokoClientService<Reqwest>, String)>| async move {
                    let request = http::Request::get(format!("{b}/quote"))
                        .body(String::new())
                        .expect("request");
                    let quote = client.ready().await.map_err(|e| e.to_string())?.call(request).await;
                    let quote = quote.map_err(|e| e.to_string())?;
                    Ok::<_, String>(format!("total {}", quote.body()))
                },
            ),
        )
        .with_state((client, b))
        .layer(KurokoLayer::new(agent));
    listen(app).await
}

struct Services {
    a_agent: Agent,
    b_agent: Agent,
    a: String,
    b_port: String,
}

async fn start() -> Services {
    let (a_agent, b_agent) = (Agent::default(), Agent::default());
    let b = service_b(b_agent.clone()).await;
    let b_port = b.trim_start_matches("http://").to_owned();
    let a = service_a(a_agent.clone(), b).await;
    Services {
        a_agent,
        b_agent,
        a,
        b_port,
    }
}

/// GET A's checkout, with these extra headers.
async fn checkout(a: &str, headers: &[(&str, &str)]) {
    let mut request = reqwest::Client::new().get(format!("{a}/checkout"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("GET /checkout");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "total 42");
}

fn only_trace<'a>(harvest: &'a Harvest, name: &str) -> &'a TraceSnapshot {
    let traces: Vec<&TraceSnapshot> = harvest.traces.iter().filter(|t| &*t.meta.name == name).collect();
    assert_eq!(traces.len(), 1, "one slow trace of {name}: {traces:#?}");
    traces[0]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trace ids of the exemplars on A's duration histogram, as exported.
fn exemplar_trace_ids(harvest: &Harvest) -> Vec<String> {
    let encoded = Encoder::new(&ExportConfig::default().with_histogram_scale(3), "test").metrics(
        harvest,
        ExportStats::default(),
        SystemTime::now(),
    );
    let request = ExportMetricsServiceRequest::decode(encoded.as_bytes()).expect("the agent's metrics decode");
    let mut ids = Vec::new();
    for metric in request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "http.server.request.duration")
    {
        if let Some(metric::Data::ExponentialHistogram(histogram)) = &metric.data {
            ids.extend(
                histogram
                    .data_points
                    .iter()
                    .flat_map(|p| &p.exemplars)
                    .map(|e| hex(&e.trace_id)),
            );
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_is_one_trace_across_both_services_and_the_exemplar() {
    let services = start().await;
    checkout(&services.a, &[]).await;
    let (a, b) = (services.a_agent.harvest(), services.b_agent.harvest());

    let a_trace = only_trace(&a, "GET /checkout");
    let b_trace = only_trace(&b, "GET /quote");
    assert_eq!(a_trace.parent_span_id, None, "A started the trace");
    assert_eq!(
        hex(&b_trace.trace_id),
        hex(&a_trace.trace_id),
        "B's slow trace continues A's trace"
    );
    // The call to B is an external segment of A's run, and B's run hangs from it.
    let call = &a_trace.segments;
    assert_eq!(call.len(), 1, "{call:#?}");
    assert_eq!(call[0].kind, SegmentKind::External);
    assert_eq!(&*call[0].name, format!("GET {}", services.b_port));
    assert!(
        call[0].duration >= B_TAKES,
        "the call took B's time: {:?}",
        call[0].duration
    );
    assert_eq!(b_trace.parent_span_id, Some(call[0].span_id), "B's parent is A's call");
    assert_eq!(
        exemplar_trace_ids(&a),
        vec![hex(&a_trace.trace_id)],
        "the exemplar on A's histogram opens the same trace"
    );
    let stats = a.transaction("GET /checkout").expect("A's checkout");
    assert_eq!(stats.segments.len(), 1);
    assert_eq!(stats.segments[0].count, 1, "the call counted once as a segment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_is_continued_through_both_services() {
    let services = start().await;
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    checkout(
        &services.a,
        &[("traceparent", &traceparent), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await;
    let (a, b) = (services.a_agent.harvest(), services.b_agent.harvest());

    let a_trace = only_trace(&a, "GET /checkout");
    let b_trace = only_trace(&b, "GET /quote");
    assert_eq!(hex(&a_trace.trace_id), caller_trace, "A continues the caller's trace");
    assert_eq!(a_trace.parent_span_id.map(|id| hex(&id)).as_deref(), Some(caller_span));
    assert_eq!(hex(&b_trace.trace_id), caller_trace, "and so does B");
    assert_eq!(b_trace.parent_span_id, Some(a_trace.segments[0].span_id));
    assert_eq!(a_trace.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
    assert_eq!(
        b_trace.trace_state.as_deref(),
        Some("congo=t61rcWkgMzE"),
        "tracestate is passed on"
    );
    assert_eq!(exemplar_trace_ids(&a), vec![caller_trace.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_trace_is_timed_but_not_kept() {
    let services = start().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    checkout(&services.a, &[("traceparent", traceparent)]).await;
    let (a, b) = (services.a_agent.harvest(), services.b_agent.harvest());

    assert!(
        a.traces.is_empty() && b.traces.is_empty(),
        "{:#?} {:#?}",
        a.traces,
        b.traces
    );
    assert!(
        exemplar_trace_ids(&a).is_empty(),
        "no exemplar points at a trace nobody kept"
    );
    let (checkout, quote) = (
        a.transaction("GET /checkout").expect("A timed the run"),
        b.transaction("GET /quote").expect("B timed the run"),
    );
    assert_eq!((checkout.count, quote.count), (1, 1), "histograms see every run");
    assert!(quote.histogram.value_at_quantile(0.5) >= 39_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_traceparent_starts_a_new_trace() {
    let services = start().await;
    let invalid = "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01";
    checkout(&services.a, &[("traceparent", invalid), ("tracestate", "congo=x")]).await;
    let (a, b) = (services.a_agent.harvest(), services.b_agent.harvest());

    let a_trace = only_trace(&a, "GET /checkout");
    assert_eq!(a_trace.parent_span_id, None);
    assert_eq!(
        a_trace.trace_state, None,
        "tracestate is dropped with an invalid traceparent"
    );
    assert_ne!(hex(&a_trace.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(only_trace(&b, "GET /quote").trace_id, a_trace.trace_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outside_any_request_pass_through_untouched() {
    let b_agent = Agent::default();
    let b = service_b(b_agent.clone()).await;
    let mut client = KurokoClientLayer::new().layer(Reqwest(reqwest::Client::new()));
    let request = http::Request::get(format!("{b}/quote"))
        .body(String::new())
        .expect("request");
    let response = client
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("GET /quote");
    assert_eq!(response.body(), "42");
    let harvest = b_agent.harvest();
    let trace = only_trace(&harvest, "GET /quote");
    assert_eq!(trace.parent_span_id, None, "no context was sent, so B started a trace");
}

/// Service A': calls B with reqwest directly, through [`OutgoingCall`], from
/// a task the handler spawns (carried there by `CurrentTransaction::scope`).
async fn service_a_with_reqwest(agent: Agent, b: String) -> String {
    slow_routes(&agent, "/checkout");
    let app = Router::new()
        .route(
            "/checkout",
            get(
                |State(b): State<String>, Extension(current): Extension<CurrentTransaction>| async move {
                    let task = current.scope(async move {
                        let call = OutgoingCall::start("quote-api").ok_or("not inside the request")?;
                        let quote = reqwest::Client::new()
                            .get(format!("{b}/quote"))
                            .headers(call.headers())
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        let quote = quote.text().await.map_err(|e| e.to_string())?;
                        drop(call);
                        Ok::<_, String>(format!("total {quote}"))
                    });
                    tokio::spawn(task).await.map_err(|e| e.to_string())?
                },
            ),
        )
        .with_state(b)
        .layer(KurokoLayer::new(agent));
    listen(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_client_joins_the_trace_through_an_outgoing_call_even_from_a_spawned_task() {
    let (a_agent, b_agent) = (Agent::default(), Agent::default());
    let b = service_b(b_agent.clone()).await;
    let a = service_a_with_reqwest(a_agent.clone(), b).await;
    checkout(&a, &[]).await;
    let (a, b) = (a_agent.harvest(), b_agent.harvest());

    let a_trace = only_trace(&a, "GET /checkout");
    let b_trace = only_trace(&b, "GET /quote");
    assert_eq!(hex(&b_trace.trace_id), hex(&a_trace.trace_id));
    assert_eq!(a_trace.segments.len(), 1, "{:#?}", a_trace.segments);
    let call = &a_trace.segments[0];
    assert_eq!((call.kind, &*call.name), (SegmentKind::External, "quote-api"));
    assert!(call.duration >= B_TAKES, "{:?}", call.duration);
    assert_eq!(b_trace.parent_span_id, Some(call.span_id));
}

#[test]
fn a_job_continues_the_trace_its_message_carried() {
    use kuroko_agent::TraceContext;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

    let agent = Agent::default();
    let job = agent.register(TransactionSpec::job("apply-payment").apdex(Duration::from_millis(1)));
    let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for traceparent in [sent, &sent.replace("-01", "-00")] {
        let message = TraceContext::parse(traceparent, Some("congo=t61rcWkgMzE")).expect("a valid traceparent");
        let run = job.start();
        run.continue_trace(&message);
        let _query = run.segment(SegmentKind::Database, "UPDATE balances");
        std::thread::sleep(Duration::from_millis(10));
    }
    let harvest = agent.harvest();
    assert_eq!(harvest.transaction("apply-payment").expect("timed").count, 2);
    let trace = only_trace(&harvest, "apply-payment");
    assert_eq!(hex(&trace.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(
        trace.parent_span_id.map(|p| hex(&p)).as_deref(),
        Some("b7ad6b7169203331")
    );
    let encoded = Encoder::new(&ExportConfig::default(), "test")
        .traces(&harvest)
        .expect("a trace to export");
    let exported = ExportTraceServiceRequest::decode(encoded.as_bytes()).expect("the agent's spans decode");
    let spans = &exported.resource_spans[0].scope_spans[0].spans;
    let root = spans
        .iter()
        .find(|s| s.name == "apply-payment")
        .expect("the run's span");
    assert_eq!(
        root.kind,
        SpanKind::Consumer as i32,
        "a job continuing a trace consumes a message"
    );
    assert_eq!(hex(&root.parent_span_id), "b7ad6b7169203331");
    assert_eq!(root.trace_state, "congo=t61rcWkgMzE");
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
}
