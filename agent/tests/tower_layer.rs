//! The tower Layer on a real axum server on loopback, driven by real HTTP requests.

use std::time::Duration;

mod support;

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use kuroko_agent::tower_layer::{CurrentTransaction, KurokoLayer};
use kuroko_agent::{Agent, SegmentKind, TransactionKind, TransactionSpec};

async fn show_card(Path(id): Path<u32>, Extension(tx): Extension<CurrentTransaction>) -> String {
    let _query = tx.segment(SegmentKind::Database, "SELECT cards").start();
    tokio::time::sleep(Duration::from_millis(2)).await;
    format!("card {id}")
}

async fn export_report(Extension(tx): Extension<CurrentTransaction>) -> &'static str {
    let _render = tx.segment(SegmentKind::Code, "render PDF").start();
    tokio::time::sleep(Duration::from_millis(25)).await;
    "report"
}

async fn pay() -> StatusCode {
    StatusCode::BAD_GATEWAY
}

async fn explode() -> &'static str {
    panic!("card reader on fire")
}

async fn serve(agent: Agent) -> String {
    let app = Router::new()
        .route("/cards/{id}", get(show_card))
        .route("/payments", post(pay))
        .route("/explode", get(explode))
        .route("/reports/{id}", get(export_report))
        .layer(KurokoLayer::new(agent));
    support::http::listen(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_become_route_template_transactions() {
    let agent = Agent::default();
    // Reports are slow from 4 × 5 ms on: their runs are kept as traces.
    agent.register(TransactionSpec::web("GET", "/reports/{id}").apdex(Duration::from_millis(5)));
    let base = serve(agent.clone()).await;
    let client = reqwest::Client::new();

    for id in [1, 22, 333, 4444, 55555] {
        let response = client.get(format!("{base}/cards/{id}")).send().await.expect("GET card");
        assert_eq!(response.text().await.unwrap(), format!("card {id}"));
    }
    for _ in 0..2 {
        let response = client
            .post(format!("{base}/payments"))
            .send()
            .await
            .expect("POST payment");
        assert_eq!(response.status(), 502);
    }
    client
        .get(format!("{base}/reports/9"))
        .send()
        .await
        .expect("GET report");
    let missing = client.get(format!("{base}/nope/42")).send().await.expect("GET missing");
    assert_eq!(missing.status(), 404);
    // The handler panics: the connection drops, the panic is recorded and re-raised.
    assert!(client.get(format!("{base}/explode")).send().await.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;

    let harvest = agent.harvest();
    let names: Vec<&str> = harvest.transactions.iter().map(|t| &*t.meta.name).collect();
    assert!(
        names.iter().all(|n| !n.contains("333")),
        "raw paths never become names: {names:?}"
    );

    let cards = harvest.transaction("GET /cards/{id}").expect("card transaction");
    assert_eq!(cards.meta.kind, TransactionKind::Web);
    assert_eq!(cards.meta.route.as_deref(), Some("/cards/{id}"));
    assert_eq!((cards.count, cards.outcomes.ok, cards.error_count), (5, 5, 0));
    assert!(cards.min_ns >= 2_000_000);
    assert_eq!(cards.segments[0].count, 5);
    assert_eq!(&*cards.segments[0].name, "SELECT cards");

    let payments = harvest.transaction("POST /payments").expect("payment transaction");
    assert_eq!(
        (payments.count, payments.outcomes.server_error, payments.error_count),
        (2, 2, 2)
    );

    let unmatched = harvest.transaction("GET (unmatched)").expect("unmatched requests");
    assert_eq!((unmatched.count, unmatched.outcomes.client_error), (1, 1));

    let exploded = harvest.transaction("GET /explode").expect("panicking route");
    assert_eq!((exploded.count, exploded.error_count), (1, 1));
    let panic = harvest
        .errors
        .iter()
        .find(|e| &*e.transaction == "GET /explode")
        .expect("panic captured");
    assert_eq!(panic.error.error_type, "panic");
    assert_eq!(panic.error.message, "card reader on fire");

    // The slow request's trace holds the segment its handler timed.
    let trace = harvest
        .traces
        .iter()
        .find(|t| &*t.meta.name == "GET /reports/{id}")
        .expect("slow request traced");
    assert_eq!(trace.outcome, kuroko_agent::Outcome::Status(200));
    assert_eq!(trace.segments.len(), 1);
    assert_eq!(
        (&*trace.segments[0].name, trace.segments[0].kind),
        ("render PDF", SegmentKind::Code)
    );
    assert!(trace.segments[0].duration >= Duration::from_millis(25));
    assert!(trace.segments[0].start >= trace.start);
    assert!(
        harvest.traces.iter().all(|t| &*t.meta.name == "GET /reports/{id}"),
        "fast requests are not traced"
    );

    // The server survived its handler's panic.
    let again = client
        .get(format!("{base}/cards/7"))
        .send()
        .await
        .expect("server still up");
    assert_eq!(again.status(), 200);
}
