//! The error digest posted to a real HTTP receiver on loopback: payloads
//! arrive in order and in Block Kit's shape; a busy receiver is waited for; a
//! failing or dead one ends in an error that names no secret, without hanging.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use kuroko_reporter::report::digest::{slack_messages, Digest, DigestGroup, ServerCount, SlackLimits};
use kuroko_reporter::report::webhook::{post_json, Retry, WebhookError};
use serde_json::Value;
use tracing::instrument::WithSubscriber;

/// The secret part of every webhook URL in these tests.
const SECRET: &str = "/services/T0001/B0001/s3cr3tT0k3n";

/// What the receiver answers, in turn; `200 ok` once the script runs out.
#[derive(Default)]
struct Receiver {
    script: VecDeque<(u16, Option<&'static str>)>,
    requests: usize,
    accepted: Vec<Value>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(State(receiver): State<Shared>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let mut receiver = receiver.lock().unwrap();
    receiver.requests += 1;
    assert_eq!(headers["content-type"], "application/json");
    let (status, retry_after) = receiver.script.pop_front().unwrap_or((200, None));
    if status == 200 {
        receiver.accepted.push(serde_json::from_str(&body).unwrap());
    }
    let mut out = HeaderMap::new();
    if let Some(seconds) = retry_after {
        out.insert("retry-after", seconds.parse().unwrap());
    }
    let text = if status == 200 { "ok" } else { "no_service" };
    (StatusCode::from_u16(status).unwrap(), out, text)
}

async fn start(script: Vec<(u16, Option<&'static str>)>) -> (String, Shared) {
    let receiver = Arc::new(Mutex::new(Receiver {
        script: script.into(),
        ..Receiver::default()
    }));
    let app = Router::new().route(SECRET, post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}{SECRET}"), receiver)
}

fn quick() -> Retry {
    Retry {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(5),
        pacing: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

fn digest(groups: usize) -> Digest {
    let groups: Vec<DigestGroup> = (0..groups)
        .map(|i| DigestGroup {
            fingerprint_id: format!("fp{i}"),
            error_type: "ConnectionError".into(),
            title: "connection to ? refused".into(),
            sample_message: format!("connection to db-{i} refused <!channel>"),
            total: 1000 - i as u64,
            previous_total: 500,
            new: i % 40 == 0,
            servers: vec![ServerCount {
                host: "web-1".into(),
                service: "api".into(),
                count: 1000 - i as u64,
            }],
            first_seen: "2026-11-29 07:00".into(),
            last_seen: "2026-11-29 23:00".into(),
            link: format!("https://kuroko.example.com/errors/fp{i}"),
            ..DigestGroup::default()
        })
        .collect();
    Digest {
        day: "2026-11-29".into(),
        time_zone: "UTC".into(),
        base_url: "https://kuroko.example.com".into(),
        total_errors: groups.iter().map(|g| g.total).sum(),
        previous_total_errors: 500 * groups.len() as u64,
        groups,
        window: vec![
            ("since".into(), "2026-11-29T00:00:00Z".into()),
            ("until".into(), "2026-11-30T00:00:00Z".into()),
        ],
        late: None,
        ..Digest::default()
    }
}

/// A log sink, to check what the sender logs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let sink = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || sink.clone())
            .finish()
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn a_long_digest_arrives_in_order_as_block_kit_messages() {
    let (url, receiver) = start(vec![]).await;
    let payloads = slack_messages(&digest(400), SlackLimits::default());
    assert_eq!(payloads.len(), 3);

    let delivery = post_json(&url, &payloads, quick()).await.unwrap();
    assert_eq!((delivery.messages, delivery.attempts), (3, 3));
    assert_eq!(delivery.target, url.trim_end_matches(SECRET));

    let accepted = receiver.lock().unwrap().accepted.clone();
    assert_eq!(accepted, payloads);
    for message in &accepted {
        assert!(message["text"].as_str().is_some_and(|t| !t.is_empty()));
        let blocks = message["blocks"].as_array().unwrap();
        assert!(!blocks.is_empty() && blocks.len() <= 50);
        for block in blocks {
            match block["type"].as_str().unwrap() {
                "header" => assert_eq!(block["text"]["type"], "plain_text"),
                "section" => {
                    assert_eq!(block["text"]["type"], "mrkdwn");
                    let text = block["text"]["text"].as_str().unwrap();
                    assert!(text.chars().count() <= 3000);
                    assert!(!text.contains("<!channel>"));
                }
                "context" => assert_eq!(block["elements"][0]["type"], "mrkdwn"),
                "divider" => {}
                other => panic!("unexpected block type {other}"),
            }
        }
    }
    let first = accepted[0]["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(first, "Errors on 2026-11-29");
    let last = accepted[2]["blocks"].as_array().unwrap().last().unwrap()["text"]["text"]
        .as_str()
        .unwrap();
    assert!(
        last.contains("more groups: <https://kuroko.example.com/errors?since=2026-11-29T00%3A00%3A00Z&amp;until=2026-11-30T00%3A00%3A00Z|full list>"),
        "{last}"
    );
}

#[tokio::test]
async fn a_busy_receiver_is_retried_after_the_wait_it_asks_for() {
    let (url, receiver) = start(vec![(429, Some("1"))]).await;
    let payloads = slack_messages(&digest(3), SlackLimits::default());
    let delivery = post_json(&url, &payloads, quick()).await.unwrap();
    assert_eq!((delivery.messages, delivery.attempts), (1, 2));
    let receiver = receiver.lock().unwrap();
    assert_eq!(receiver.requests, 2);
    assert_eq!(receiver.accepted, payloads);
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_given_up_on_after_the_attempts() {
    let (url, receiver) = start(vec![(500, None); 10]).await;
    let payloads = slack_messages(&digest(3), SlackLimits::default());
    let logs = Logs::default();
    let err = post_json(&url, &payloads, quick())
        .with_subscriber(logs.subscriber())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WebhookError::GaveUp {
                message: 1,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.delivered(), 0);
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(receiver.lock().unwrap().requests, 3);
    // The secret is neither in the error nor in the logs; the host is.
    let logs = logs.text();
    assert!(logs.contains("http://127.0.0.1:"), "{logs}");
    assert!(
        !logs.contains("s3cr3t") && !err.to_string().contains("s3cr3t"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_refusal_fails_at_once_with_the_answer() {
    let (url, receiver) = start(vec![(200, None), (404, None)]).await;
    let payloads = slack_messages(&digest(120), SlackLimits::default());
    let err = post_json(&url, &payloads, quick()).await.unwrap_err();
    match &err {
        WebhookError::Refused {
            message,
            of,
            status,
            body,
            ..
        } => {
            assert_eq!((*message, *of, *status, body.as_str()), (2, 3, 404, "no_service"))
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.delivered(), 1);
    assert_eq!(receiver.lock().unwrap().requests, 2);
}

#[tokio::test]
async fn a_dead_port_is_an_error_not_a_hang() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let payloads = slack_messages(&digest(1), SlackLimits::default());
    let url = format!("http://127.0.0.1:{port}{SECRET}");
    let err = post_json(&url, &payloads, quick()).await.unwrap_err();
    assert!(matches!(err, WebhookError::GaveUp { attempts: 3, .. }), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    // Accepted by the kernel's backlog, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let payloads = slack_messages(&digest(1), SlackLimits::default());
    let retry = Retry {
        attempts: 2,
        timeout: Duration::from_millis(200),
        ..quick()
    };
    let err = post_json(&format!("http://{addr}{SECRET}"), &payloads, retry)
        .await
        .unwrap_err();
    // Connected and sent, never answered: it may have been taken, so it is
    // not sent again (a second post could be a duplicate in the channel).
    assert!(matches!(err, WebhookError::Unknown { attempts: 1, .. }), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    drop(silent);
}
