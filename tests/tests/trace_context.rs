//! One slow request across two services, as a team running OpenTelemetry
//! would look at it: `kuroko serve` on loopback; service A (axum, Kuroko's
//! tower layer, `tracing-opentelemetry` with the OpenTelemetry SDK) calls
//! service B (axum, Kuroko's tower layer) over HTTP with reqwest, the call
//! timed and given its `traceparent` by Kuroko's `OutgoingCall` (the tower
//! client layer is proved in agent/tests/trace_context.rs); both agents and A's SDK export to the reporter. The reporter's
//! kept traces of A's and B's transactions carry one trace id, the one the
//! OpenTelemetry SDK gave A's request span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use kuroko_agent::export::ExportConfig;
use kuroko_agent::tower_layer::{KurokoLayer, OutgoingCall};
use kuroko_agent::{Agent, AgentConfig, TransactionSpec};
use kuroko_e2e::{kuroko, output, serve};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message;
use serde_json::Value;
use tower::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

/// How long B takes: far over both services' slow threshold (4 × 5 ms).
const B_TAKES: Duration = Duration::from_millis(150);

/// What A's OpenTelemetry SDK exports, kept to be sent as OTLP/HTTP (the
/// official conversion of opentelemetry-proto, as opentelemetry-otlp does).
#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

async fn listen<S>(service: S) -> String
where
    S: Service<http::Request<axum::body::Body>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, tower::make::Shared::new(service)).await });
    format!("http://{address}")
}

/// An agent of `service` whose `route` is slow from 20 ms on, exporting to
/// the reporter at `endpoint`.
fn agent(service: &str, route: &str, endpoint: &str) -> (Agent, kuroko_agent::export::Exporter) {
    let agent = Agent::new(AgentConfig::default().with_service_name(service)).expect("agent");
    agent.register(TransactionSpec::web("GET", route).apdex(Duration::from_millis(5)));
    let exporter = agent
        .export(
            ExportConfig::default()
                .with_endpoint(endpoint)
                .with_interval(Duration::from_secs(60)),
        )
        .expect("exporter");
    (agent, exporter)
}

/// `kuroko query breakdown` of one transaction, its kept traces' ids.
fn kept_trace_ids(server: &str, service: &str, transaction: &str) -> Vec<String> {
    let args = [
        "query",
        "breakdown",
        "--service",
        service,
        "--transaction",
        transaction,
        "--since",
        "2h",
        "--server",
        server,
        "--format",
        "json",
    ];
    let answer: Value = serde_json::from_str(&output(&kuroko(), &args, &[])).expect("kuroko query prints JSON");
    answer["traces"]
        .as_array()
        .map(|traces| {
            traces
                .iter()
                .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_is_one_trace_in_the_reporter_across_two_services_and_opentelemetry() {
    let dir = std::env::temp_dir().join(format!("kuroko-trace-context-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test folder");
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{}\"\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n[schedule]\nweekly = \"off\"\ndigest = \"off\"\n",
            dir.join("kuroko.db").display()
        ),
    )
    .expect("config");
    let (reporter, server) = serve(&config);

    // A's OpenTelemetry SDK and tracing-opentelemetry.
    let resource = Resource::builder().with_service_name("checkout-api").build();
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_simple_exporter(exported.clone())
        .build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("checkout")));
    tracing::subscriber::set_global_default(subscriber).expect("the test's only subscriber");

    // B: axum + Kuroko.
    let (b_agent, b_exporter) = agent("quote-api", "/quote", &server);
    let quote = Router::new()
        .route(
            "/quote",
            get(|| async {
                tokio::time::sleep(B_TAKES).await;
                "42"
            }),
        )
        .layer(KurokoLayer::new(b_agent.clone()));
    let b = listen(quote).await;

    // A: axum + Kuroko inside an OpenTelemetry request span that continues
    // the caller's traceparent (what tower-http's TraceLayer and an
    // extractor do), calling B with reqwest through an `OutgoingCall`.
    let (a_agent, a_exporter) = agent("checkout-api", "/checkout", &server);
    let checkout = Router::new()
        .route(
            "/checkout",
            get(|State(b): State<String>| async move {
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
            }),
        )
        .with_state(b)
        .layer(KurokoLayer::new(a_agent.clone()));
    let traced = tower::service_fn(move |request: http::Request<axum::body::Body>| {
        let headers: HashMap<String, String> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let span = tracing::info_span!(
            "GET /checkout",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/checkout"
        );
        let _ = span.set_parent(TraceContextPropagator::new().extract(&headers));
        let mut app = checkout.clone();
        let future = span.in_scope(|| app.call(request));
        future.instrument(span)
    });
    let a = listen(traced).await;

    let response = reqwest::get(format!("{a}/checkout")).await.expect("GET /checkout");
    assert_eq!(response.text().await.expect("body"), "total 42");

    // Everything leaves: both agents' last interval, and A's SDK spans.
    a_exporter.shutdown().await;
    b_exporter.shutdown().await;
    provider.force_flush().expect("flush the SDK");
    let spans = std::mem::take(&mut *exported.0.lock().unwrap());
    let request_span = spans
        .iter()
        .find(|s| s.name == "GET /checkout")
        .expect("the SDK exported A's request span")
        .clone();
    let otel_trace = hex(&request_span.span_context.trace_id().to_bytes());
    let body = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &ResourceAttributesWithSchema::from(&resource)),
    }
    .encode_to_vec();
    let sent = reqwest::Client::new()
        .post(format!("{server}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("POST /v1/traces");
    assert!(
        sent.status().is_success(),
        "the reporter took the SDK's spans: {}",
        sent.status()
    );

    // What a user sees in the reporter: the kept traces of both services'
    // transactions, one trace id, the OpenTelemetry span's.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (a_traces, b_traces) = loop {
        let server = server.clone();
        let found = tokio::task::spawn_blocking(move || {
            (
                kept_trace_ids(&server, "checkout-api", "GET /checkout"),
                kept_trace_ids(&server, "quote-api", "GET /quote"),
            )
        })
        .await
        .expect("query");
        if (!found.0.is_empty() && !found.1.is_empty()) || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!a_traces.is_empty(), "the reporter kept A's slow request");
    assert_eq!(b_traces, vec![otel_trace.clone()], "B's kept trace is the same trace");
    assert!(
        a_traces.iter().all(|t| *t == otel_trace),
        "A's kept traces (Kuroko's and the SDK's) are the OpenTelemetry trace {otel_trace}: {a_traces:?}"
    );

    // The reporter joins A and B into one waterfall: B's run under the
    // span of A that called it, on A's time line.
    let joined = reqwest::get(format!("{server}/api/v1/traces/{otel_trace}"))
        .await
        .expect("GET /api/v1/traces")
        .text()
        .await
        .expect("answer");
    let joined: Value = serde_json::from_str(&joined).unwrap_or_else(|_| panic!("JSON: {joined}"));
    let runs = joined["runs"].as_array().expect("runs");
    let services: Vec<(&str, u64)> = runs
        .iter()
        .map(|run| {
            (
                run["service"].as_str().unwrap_or(""),
                run["depth"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(services, [("checkout-api", 0), ("quote-api", 1)], "{joined:#}");
    let quote = &runs[1];
    assert_eq!(quote["called_by"], "checkout-api: quote-api", "{joined:#}");
    let call = runs[0]["segments"]
        .as_array()
        .and_then(|segments| segments.iter().find(|s| s["name"] == "quote-api"))
        .expect("A's outgoing call");
    let (call_start, call_end) = (
        call["offset"].as_f64().unwrap_or(f64::NAN),
        call["offset"].as_f64().unwrap_or(f64::NAN) + call["duration"].as_f64().unwrap_or(f64::NAN),
    );
    let (b_start, b_end) = (
        quote["offset"].as_f64().unwrap_or(f64::NAN),
        quote["offset"].as_f64().unwrap_or(f64::NAN) + quote["duration"].as_f64().unwrap_or(f64::NAN),
    );
    assert!(
        call_start <= b_start && b_end <= call_end + 0.005,
        "B ran within A's call: call {call_start}..{call_end}, B {b_start}..{b_end}"
    );
    // The web UI: A's transaction page links its kept trace to the page of
    // the whole request, one waterfall naming both services.
    let a_page = reqwest::get(format!(
        "{server}/transactions?service=checkout-api&transaction=GET%20%2Fcheckout&since=1h"
    ))
    .await
    .expect("GET /transactions")
    .text()
    .await
    .expect("page");
    let link = a_page
        .split("href=\"")
        .map(|rest| rest.split('"').next().unwrap_or(""))
        .find(|href| href.starts_with(&format!("/traces/{otel_trace}?")))
        .unwrap_or_else(|| panic!("A's page links the whole request: {a_page}"))
        .replace("&amp;", "&");
    let page = reqwest::get(format!("{server}{link}"))
        .await
        .expect("GET /traces")
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("checkout-api · GET /checkout") && page.contains("quote-api · GET /quote"),
        "{page}"
    );
    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}
