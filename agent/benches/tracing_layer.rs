//! Cost of the tracing Layer per span, beside `tracing-opentelemetry`.
//!
//! ```text
//! cargo bench -p kuroko-agent --bench tracing_layer
//! ```
//!
//! Each iteration is one request: a transaction span with one database
//! segment span inside it, each created, entered, exited and closed. Three
//! subscribers in one run: the bare `tracing_subscriber::registry()` (the
//! floor every layer pays), the registry with Kuroko's layer, and the registry
//! with `tracing-opentelemetry` over the OpenTelemetry SDK's tracer (sampled,
//! no exporter: the SDK's own cost only). A layer's cost per span is
//! (its time − the registry's) / 2.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kuroko_agent::tracing_layer::KurokoLayer;
use kuroko_agent::Agent;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

fn one_request() {
    let request = tracing::info_span!("request", kuroko.transaction = "GET /cards/{id}");
    let _request = request.enter();
    let query = tracing::info_span!("SELECT cards", db.system = "postgresql");
    let _query = black_box(query.enter());
}

fn bench(c: &mut Criterion) {
    let agent = Agent::default();
    let provider = SdkTracerProvider::builder().build();
    // The bare registry runs last: measured first, its estimate swung widely
    // from run to run (warm-up of the span slab), which made the net figures noisy.
    let subscribers = [
        (
            "kuroko",
            Dispatch::new(tracing_subscriber::registry().with(KurokoLayer::new(agent.clone()))),
        ),
        (
            "tracing-opentelemetry",
            Dispatch::new(
                tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
            ),
        ),
        ("registry", Dispatch::new(tracing_subscriber::registry())),
    ];
    let mut group = c.benchmark_group("tracing/request-with-one-segment");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, dispatch) in &subscribers {
        tracing::dispatcher::with_default(dispatch, || {
            group.bench_function(*name, |b| b.iter(one_request));
        });
        agent.harvest();
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
