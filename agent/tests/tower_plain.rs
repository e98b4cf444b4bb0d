//! The tower layer around a plain `tower::service_fn` served by hyper on
//! loopback, no axum anywhere: what a tower/hyper service without a router
//! gets with `default-features = false, features = ["tower"]`
//! (`cargo test -p kuroko-agent --no-default-features -F tower --test tower_plain`).

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use kuroko_agent::tower_layer::{CurrentTransaction, KurokoLayer};
use kuroko_agent::{Agent, Outcome, SegmentKind, TransactionKind, TransactionSpec};
use tower::Layer;

/// The application: no router, one match on the path.
async fn app(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let current = request.extensions().get::<CurrentTransaction>().cloned();
    let path = request.uri().path().to_owned();
    let (status, body) = if let Some(id) = path.strip_prefix("/cards/") {
        let _query = current
            .as_ref()
            .map(|tx| tx.segment(SegmentKind::Database, "SELECT cards").start());
        tokio::time::sleep(Duration::from_millis(2)).await;
        (StatusCode::OK, format!("card {id}"))
    } else if path == "/reports" {
        let _render = current
            .as_ref()
            .map(|tx| tx.segment(SegmentKind::Code, "render PDF").start());
        tokio::time::sleep(Duration::from_millis(25)).await;
        (StatusCode::OK, "report".to_owned())
    } else if path == "/payments" {
        (StatusCode::BAD_GATEWAY, String::new())
    } else {
        (StatusCode::NOT_FOUND, String::new())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    Ok(response)
}

/// The route template of a URI the application knows; `None` for the rest.
fn route(uri: &Uri) -> Option<Cow<'static, str>> {
    match uri.path() {
        path if path.starts_with("/cards/") => Some(Cow::Borrowed("/cards/{id}")),
        "/reports" | "/payments" => Some(Cow::Owned(uri.path().to_owned())),
        _ => None,
    }
}

/// Serves `app` wrapped in the layer on a free loopback port, with hyper.
async fn serve(agent: Agent) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    let service = KurokoLayer::new(agent).route_fn(route).layer(tower::service_fn(app));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tower_service_is_timed_under_its_route_templates() {
    let agent = Agent::default();
    // Reports are slow from 4 × 5 ms on: their runs are kept as traces.
    agent.register(TransactionSpec::web("GET", "/reports").apdex(Duration::from_millis(5)));
    let base = serve(agent.clone()).await;
    let client = reqwest::Client::new();

    for id in [1, 22, 333] {
        let response = client.get(format!("{base}/cards/{id}")).send().await.expect("GET card");
        assert_eq!(response.text().await.expect("card body"), format!("card {id}"));
    }
    let payment = client
        .post(format!("{base}/payments"))
        .send()
        .await
        .expect("POST payment");
    assert_eq!(payment.status(), 502);
    let missing = client.get(format!("{base}/nope/42")).send().await.expect("GET missing");
    assert_eq!(missing.status(), 404);
    // A caller's trace context is continued, as behind axum.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let report = client
        .get(format!("{base}/reports"))
        .header("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("GET report");
    assert_eq!(report.status(), 200);

    let harvest = agent.harvest();
    let names: Vec<&str> = harvest.transactions.iter().map(|t| &*t.meta.name).collect();
    assert!(
        names.iter().all(|n| !n.contains("333") && !n.contains("nope")),
        "raw paths never become names: {names:?}"
    );

    let cards = harvest
        .transaction("GET /cards/{id}")
        .expect("cards named by the route function");
    assert_eq!(cards.meta.kind, TransactionKind::Web);
    assert_eq!(cards.meta.route.as_deref(), Some("/cards/{id}"));
    assert_eq!((cards.count, cards.outcomes.ok, cards.error_count), (3, 3, 0));
    assert!(cards.min_ns >= 2_000_000, "the handler's time is in the run");
    assert_eq!(&*cards.segments[0].name, "SELECT cards");
    assert_eq!(cards.segments[0].count, 3);

    let payments = harvest.transaction("POST /payments").expect("payments");
    assert_eq!(
        (payments.count, payments.outcomes.server_error, payments.error_count),
        (1, 1, 1)
    );

    let unmatched = harvest
        .transaction("GET (unmatched)")
        .expect("unknown paths share the fallback");
    assert_eq!((unmatched.count, unmatched.outcomes.client_error), (1, 1));

    let trace = harvest
        .traces
        .iter()
        .find(|t| &*t.meta.name == "GET /reports")
        .expect("slow request traced");
    assert_eq!(trace.outcome, Outcome::Status(200));
    let trace_id: String = trace.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(trace_id, caller_trace, "the caller's trace continues");
    assert_eq!(
        trace.parent_span_id,
        Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
    );
    assert_eq!(&*trace.segments[0].name, "render PDF");
}
