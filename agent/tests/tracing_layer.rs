//! The tracing Layer beside `fmt` and `tracing-opentelemetry` in one subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuroko_agent::tracing_layer::KurokoLayer;
use kuroko_agent::{Agent, SegmentKind, TransactionKind};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::{error, info_span};
use tracing_subscriber::prelude::*;

/// Collects what the OpenTelemetry SDK exports, to prove it still sees every span.
#[derive(Clone, Debug, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap()
            .extend(batch.into_iter().map(|s| s.name.into_owned()));
        Ok(())
    }
}

/// `fmt` output captured in memory.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn spans_become_transactions_and_segments_beside_other_layers() {
    let agent = Agent::default();
    // The import job is slow from 4 × 1 ms on: its runs are kept as traces.
    agent.register(kuroko_agent::TransactionSpec::job("import-cards").apdex(Duration::from_millis(1)));
    let exported = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let output = Output::default();
    let writer = output.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false),
        )
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(KurokoLayer::new(agent.clone()));

    tracing::subscriber::with_default(subscriber, || {
        for i in 0..3 {
            let request = info_span!(
                "request",
                kuroko.transaction = "GET /cards/{id}",
                kuroko.feature = "cards",
                http.response.status_code = tracing::field::Empty
            );
            let _request = request.enter();
            {
                let _load = info_span!("load card", db.system = "postgresql", otel.name = "SELECT cards").entered();
                std::thread::sleep(Duration::from_millis(2));
            }
            {
                let _render = info_span!("render").entered();
                let _fetch = info_span!("fetch avatar", http.request.method = "GET").entered();
                std::thread::sleep(Duration::from_millis(1));
            }
            request.record("http.response.status_code", if i == 2 { 503 } else { 200 });
        }
        // A job that fails through an error event in a nested span.
        let job = info_span!("job", kuroko.transaction = "nightly-rollup");
        let _job = job.enter();
        let _step = info_span!("rollup step", kuroko.segment = "database").entered();
        error!(error.type = "RollupError", "partition {} is locked", 17);
        drop(_step);
        drop(_job);
        // A segment that carries an `error` field fails its transaction too.
        let import = info_span!("import", kuroko.transaction = "import-cards");
        import.in_scope(|| {
            let _parse = info_span!("parse row", error = "row 9: bad checksum").entered();
            let _insert = info_span!("INSERT cards", db.system = "postgresql").entered();
            std::thread::sleep(Duration::from_millis(5));
        });
        // A span outside any transaction is ignored.
    });
    tracing::subscriber::with_default(
        tracing_subscriber::registry().with(KurokoLayer::new(agent.clone())),
        || {
            let _lonely = info_span!("lonely").entered();
        },
    );

    let harvest = agent.harvest();
    let cards = harvest.transaction("GET /cards/{id}").expect("the request transaction");
    assert_eq!(cards.meta.kind, TransactionKind::Web);
    assert_eq!(cards.meta.feature.as_deref(), Some("cards"));
    assert_eq!(cards.count, 3);
    assert_eq!(
        (cards.outcomes.ok, cards.outcomes.server_error, cards.error_count),
        (2, 1, 1)
    );
    let segment = |name: &str| {
        cards
            .segments
            .iter()
            .find(|s| &*s.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let db = segment("SELECT cards");
    assert_eq!((db.kind, db.count), (SegmentKind::Database, 3));
    assert!(db.total_ns >= 6_000_000);
    let render = segment("render");
    let avatar = segment("fetch avatar");
    assert_eq!((render.kind, avatar.kind), (SegmentKind::Code, SegmentKind::External));
    assert!(render.exclusive_ns < render.total_ns, "nested time is not exclusive");
    assert_eq!(render.total_ns - render.exclusive_ns, avatar.total_ns);
    assert!(
        cards.time_by_kind().iter().sum::<u64>() <= cards.sum_ns,
        "breakdown never double counts"
    );

    let job = harvest.transaction("nightly-rollup").expect("the job transaction");
    assert_eq!(
        (job.meta.kind, job.count, job.error_count),
        (TransactionKind::Job, 1, 1)
    );
    let error = harvest
        .errors
        .iter()
        .find(|e| &*e.transaction == "nightly-rollup")
        .expect("captured error");
    assert_eq!(error.error.error_type, "RollupError");
    assert_eq!(error.error.message, "partition 17 is locked");
    assert!(error.error.location.as_deref().unwrap().contains("tracing_layer.rs"));
    let trace = harvest
        .traces
        .iter()
        .find(|t| &*t.meta.name == "import-cards")
        .expect("the slow job's trace");
    let names: Vec<&str> = trace.segments.iter().map(|s| &*s.name).collect();
    assert_eq!(names, ["INSERT cards", "parse row"], "segments in the order they ended");
    assert_eq!(trace.segments[0].kind, SegmentKind::Database);
    assert!(trace.outcome.is_error());
    let import = harvest.transaction("import-cards").expect("the import transaction");
    assert_eq!((import.count, import.error_count), (1, 1));
    let bad_row = harvest
        .errors
        .iter()
        .find(|e| &*e.transaction == "import-cards")
        .expect("segment error");
    assert_eq!(bad_row.error.message, "row 9: bad checksum");
    assert_eq!(harvest.transactions.len(), 3, "the lonely span made no transaction");

    // The other layers saw everything too.
    let spans = exported.0.lock().unwrap().clone();
    assert_eq!(spans.iter().filter(|n| n.as_str() == "request").count(), 3);
    assert!(spans.iter().any(|n| n == "SELECT cards"));
    let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("partition 17 is locked"), "fmt output: {text}");
}
