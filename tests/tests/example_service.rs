//! The agent's example service, which the README names: run as a real
//! process, sent real HTTP requests, and read from what it prints.

use std::time::Duration;

use kuroko_e2e::{example, Running};

/// One printed row: (count, err%, p50, p95, p99, max, apdex).
fn row(table: &[String], name: &str) -> Vec<f64> {
    let line = table
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{}", table.join("\n")));
    line.trim_start()[name.len()..]
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

#[tokio::test]
async fn example_service_times_real_requests_and_prints_percentiles() {
    let mut service = Running::start(
        &example("axum_service"),
        &["--addr", "127.0.0.1:0", "--for", "4", "--every", "1", "--no-load"],
    );
    let listening = service.wait_for("listening on http://", Duration::from_secs(60));
    let base = listening.trim_start_matches("listening on ").trim().to_owned();

    let client = reqwest::Client::new();
    for id in 0..20 {
        let response = client
            .get(format!("{base}/cards/{id}"))
            .send()
            .await
            .expect("GET /cards/{id}");
        assert_eq!(response.status(), 200);
    }
    for id in 0..3 {
        let response = client
            .post(format!("{base}/cards/{id}/scan"))
            .send()
            .await
            .expect("POST scan");
        assert_eq!(response.status(), 200);
    }
    for _ in 0..5 {
        let status = client
            .post(format!("{base}/payments"))
            .send()
            .await
            .expect("POST /payments")
            .status();
        assert!(status == 201 || status == 502, "{status}");
    }

    let output = service.finish(Duration::from_secs(30));
    let cards = row(&output, "GET /cards/{id}");
    let scans = row(&output, "POST /cards/{id}/scan");
    let payments = row(&output, "POST /payments");
    assert_eq!(cards[0], 20.0, "every card request counted once");
    assert_eq!(scans[0], 3.0);
    assert_eq!(payments[0], 5.0);
    assert!(scans[1] == 0.0 && cards[1] == 0.0, "no errors where none happened");
    assert!(
        scans[2] > 10.0 * cards[3],
        "the slow endpoint stands out: scan p50 {} ms vs cards p95 {} ms",
        scans[2],
        cards[3]
    );
    assert!(
        cards[2] <= cards[3] && cards[3] <= cards[4] && cards[4] <= cards[5],
        "p50 <= p95 <= p99 <= max"
    );
    assert!(
        row(&output, "settle-ledger")[0] >= 1.0,
        "the background job, timed through tracing, is there"
    );
    assert!(output.iter().any(|l| l.starts_with("stopped after")));
}
