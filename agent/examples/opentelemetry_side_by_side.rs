//! Kuroko beside OpenTelemetry in one service: one trace id opens the same
//! slow request in Kuroko and in the OpenTelemetry trace view.
//!
//! ```text
//! cargo run -p kuroko-agent --features opentelemetry --example opentelemetry_side_by_side
//! ```
//!
//! Two services in one process, on loopback: `checkout` (port 3001) calls
//! `quotes` (port 3002) over HTTP with reqwest, the call timed by Kuroko's
//! `OutgoingCall`, which gives it the W3C `traceparent` to send. Both are timed by Kuroko's tower layer inside a
//! `tracing` request span that `tracing-opentelemetry` turns into an
//! OpenTelemetry span (the OpenTelemetry SDK here prints the spans it would
//! export). The example sends one slow request and prints, for each
//! service, Kuroko's slow trace and the OpenTelemetry span: the same trace id
//! throughout, and Kuroko's span id is the OpenTelemetry span's.
//!
//! The two lines that put Kuroko beside an existing OpenTelemetry setup are
//! marked `(1)` and `(2)`: the `opentelemetry` feature, and Kuroko's layer
//! in the same subscriber as `tracing_opentelemetry::layer()`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use kuroko_agent::tower_layer::{KurokoLayer, OutgoingCall};
use kuroko_agent::{tracing_layer, Agent, TransactionSpec};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tower::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

/// Stands in for the OTLP exporter: keeps what the SDK would send.
#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .map_err(|_| opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)?
            .extend(batch);
        Ok(())
    }
}

/// Serves `app` inside a `tracing` request span continuing the caller's
/// `traceparent` through OpenTelemetry's propagator (what tower-http's
/// `TraceLayer` plus an extractor do in a real service).
async fn serve(port: u16, app: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let service = tower::service_fn(move |request: http::Request<axum::body::Body>| {
        let headers: HashMap<String, String> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let span = tracing::info_span!("request", otel.kind = "server", http.route = %request.uri().path());
        let _ = span.set_parent(TraceContextPropagator::new().extract(&headers));
        let mut app = app.clone();
        let future = span.in_scope(|| app.call(request));
        future.instrument(span)
    });
    axum::serve(listener, tower::make::Shared::new(service)).await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let (checkout, quotes) = (Agent::default(), Agent::default());
    for (agent, route) in [(&checkout, "/checkout"), (&quotes, "/quote")] {
        // Slow from 4 × 5 ms on: the request below is kept as a trace.
        agent.register(TransactionSpec::web("GET", route).apdex(Duration::from_millis(5)));
    }
    checkout.register(TransactionSpec::job("reconcile-quotes").apdex(Duration::from_millis(5)));
    // (1) Cargo.toml: kuroko-agent = { ..., features = ["opentelemetry"] }
    // (2) Kuroko's tracing layer in the same subscriber as
    //     tracing-opentelemetry's, for transactions marked by a
    //     `kuroko.transaction` span (the job below). Kuroko's tower layer
    //     needs only (1): it reads the request span it is served in.
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("example")))
        .with(tracing_layer::KurokoLayer::new(checkout.clone()))
        .init();

    let quote_app = Router::new()
        .route(
            "/quote",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                "42"
            }),
        )
        .layer(KurokoLayer::new(quotes.clone()));
    // The call to `quotes` with reqwest: `OutgoingCall` times it as an
    // external segment and gives it the traceparent to send (a tower client
    // would use `KurokoClientLayer` instead).
    let checkout_app = Router::new()
        .route(
            "/checkout",
            get(|State(client): State<reqwest::Client>| async move {
                let call = OutgoingCall::start("quotes");
                let mut request = client.get("http://127.0.0.1:3002/quote");
                if let Some(call) = &call {
                    request = request.headers(call.headers());
                }
                let quote = request.send().await.map_err(|e| e.to_string())?;
                let quote = quote.text().await.map_err(|e| e.to_string())?;
                drop(call);
                Ok::<_, String>(format!("total {quote}\n"))
            }),
        )
        .with_state(reqwest::Client::new())
        .layer(KurokoLayer::new(checkout.clone()));
    tokio::spawn(serve(3002, quote_app));
    tokio::spawn(serve(3001, checkout_app));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let body = reqwest::get("http://127.0.0.1:3001/checkout").await?.text().await?;
    print!("GET /checkout: {body}");
    // A slow background job: a transaction of Kuroko's tracing layer.
    async {
        let _query = tracing::info_span!("UPDATE quotes", db.system = "postgresql").entered();
        std::thread::sleep(Duration::from_millis(30));
    }
    .instrument(tracing::info_span!(
        "reconcile",
        kuroko.transaction = "reconcile-quotes"
    ))
    .await;
    provider.force_flush()?;

    for (service, agent) in [("checkout", &checkout), ("quotes", &quotes)] {
        for trace in agent.harvest().traces {
            println!(
                "{service}: Kuroko slow trace {} · trace {} · span {} · parent {}",
                trace.meta.name,
                hex(&trace.trace_id),
                hex(&trace.span_id),
                trace.parent_span_id.map_or("(none)".to_owned(), |p| hex(&p)),
            );
        }
    }
    let spans = exported.0.lock().map_err(|_| anyhow::anyhow!("exporter poisoned"))?;
    for span in spans.iter() {
        println!(
            "OpenTelemetry span {} {} · trace {} · span {} · parent {}",
            span.name,
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "http.route")
                .map_or(String::new(), |kv| kv.value.to_string()),
            hex(&span.span_context.trace_id().to_bytes()),
            hex(&span.span_context.span_id().to_bytes()),
            hex(&span.parent_span_id.to_bytes()),
        );
    }
    Ok(())
}
