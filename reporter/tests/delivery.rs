//! Scheduled delivery end to end: the runner's tick, driven by an injected
//! clock, sends to a real SMTP sink (`tests/python/smtp_sink.py`, as in
//! `weekly_mail.rs`) and an axum webhook receiver on loopback, and keeps its
//! ledger in a real store. Exactly one email per team and one digest post per
//! period; a restart sends nothing again; a dead SMTP server is recorded
//! with its error while the digest's chat post goes out; downtime across a
//! scheduled time sends the missed period once, marked late; an alert tells
//! its team once when it fires and once when it resolves. Every test runs
//! with its ledger and alert states in SQLite and in ClickHouse
//! (`sqlite::<test>`, `clickhouse::<test>`; `support/stores.rs`).
//!
//! `tests/run-all.sh` installs `aiosmtpd`; without it these tests fail, saying so.

#[path = "support/smtp_sink.rs"]
mod smtp_sink;
use smtp_sink::{receiver, Sink};
#[macro_use]
#[path = "support/stores.rs"]
mod stores;
use stores::{Kind, TestStore};

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kuroko_reporter::deliver::alerts::AlertRule;
use kuroko_reporter::deliver::ledger::{LedgerEntry, LedgerStatus};
use kuroko_reporter::deliver::schedule::{Report, Schedule, ScheduleConfig};
use kuroko_reporter::deliver::{placeholder_producer, DigestDelivery, Runner, Settings};
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::report::mail::{self, SmtpConfig};
use kuroko_reporter::report::webhook;
use kuroko_reporter::store::{Batch, HistogramPoint, SeriesKey, Store};

const OWNERS: &str = r#"
[teams.payments]
email = ["payments@example.com"]
chat_webhook_env = "HOOK_PAYMENTS"

[teams.search]
email = ["search@example.com"]

[features.checkout]
team = "payments"
patterns = [{ service = "shop", transaction = "POST /checkout" }]
"#;

fn settings(smtp: SmtpConfig, digest_email: Vec<String>, alerts: Vec<AlertRule>) -> Settings {
    Settings {
        schedule: Schedule::from_config(&ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            weekly: "MON 08:00".into(),
            digest: "08:30".into(),
        })
        .unwrap(),
        owners: Owners::parse(OWNERS, "owners.toml").unwrap(),
        smtp: Some(smtp),
        digest: DigestDelivery {
            webhook_env: Some("HOOK_DIGEST".into()),
            email: digest_email,
        },
        base_url: "https://kuroko.example.com".into(),
        alerts,
        mail_retry: mail::Retry {
            attempts: 2,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
        webhook_retry: webhook::Retry {
            attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            pacing: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
        },
        max_rounds: 3,
    }
}

fn runner(store: Arc<dyn Store>, settings: Settings, holder: &str, hooks: &str) -> Runner {
    let hooks = hooks.to_owned();
    Runner::new(store, settings, placeholder_producer(), holder).with_env(move |name| match name {
        "HOOK_DIGEST" => Some(format!("{hooks}/digest")),
        "HOOK_PAYMENTS" => Some(format!("{hooks}/payments")),
        _ => None,
    })
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// (kind, target, period, status, late) of each row, sorted.
fn summary(rows: &[LedgerEntry]) -> Vec<(String, String, String, LedgerStatus, bool)> {
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| (r.kind.clone(), r.target.clone(), r.period.clone(), r.status, r.late))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    out
}

fn row(kind: &str, target: &str, period: &str, late: bool) -> (String, String, String, LedgerStatus, bool) {
    (kind.into(), target.into(), period.into(), LedgerStatus::Sent, late)
}

fn checkout(minute: i64, seconds: f64) -> HistogramPoint {
    let mut histogram = Histogram::empty();
    for _ in 0..20 {
        histogram.record(seconds).unwrap();
    }
    HistogramPoint {
        key: SeriesKey {
            service: "shop".into(),
            host: "h1".into(),
            transaction: "POST /checkout".into(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        }
        .into(),
        minute,
        histogram,
    }
}

suite! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_period_is_sent_once_across_restarts_and_downtime_is_caught_up_late(kind: Kind) {
    let sink = Sink::start(&format!("once-{}", kind.name()));
    let (hooks, posts) = receiver().await;
    let store = TestStore::open(kind, "delivery-once");
    let first = runner(store.shared(), settings(sink.config(5), vec![], vec![]), "first", &hooks);

    // Monday 9 March 2026, 07:59 in Berlin: nothing was ever sent, nothing is due.
    assert!(first.tick(at("2026-03-09T06:59:00Z")).await.is_empty());
    // 08:00:30: each team's weekly report for the week before.
    let sent = first.tick(at("2026-03-09T07:00:30Z")).await;
    assert_eq!(
        summary(&sent),
        [
            row("weekly", "payments:email", "2026-W10", false),
            row("weekly", "search:email", "2026-W10", false)
        ]
    );
    assert_eq!(sink.recipients(), ["payments@example.com", "search@example.com"]);
    // 08:30:30: the digest for Sunday, to the chat webhook.
    let sent = first.tick(at("2026-03-09T07:30:30Z")).await;
    assert_eq!(summary(&sent), [row("digest", "company:chat", "2026-03-08", false)]);
    assert!(first.tick(at("2026-03-09T07:31:30Z")).await.is_empty(), "nothing twice");
    {
        let posts = posts.lock().unwrap();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].0, "/hooks/digest");
        assert!(
            posts[0].1["text"].as_str().unwrap().contains("2026-03-08"),
            "{:?}",
            posts[0].1
        );
    }

    // Restart: a new runner (another holder) on the reopened store sends nothing again.
    drop(first);
    let store = store.reopen();
    let second = runner(
        store.shared(),
        settings(sink.config(5), vec![], vec![]),
        "second",
        &hooks,
    );
    assert!(second.tick(at("2026-03-09T07:45:00Z")).await.is_empty());
    // Nor does `kuroko report weekly --send` for the same period; --force does.
    assert!(second
        .send_now(
            Report::Weekly,
            Some("payments"),
            None,
            false,
            at("2026-03-09T08:00:00Z")
        )
        .await
        .unwrap()
        .is_empty());
    let forced = second
        .send_now(Report::Weekly, Some("payments"), None, true, at("2026-03-09T08:00:00Z"))
        .await
        .unwrap();
    assert_eq!(summary(&forced), [row("weekly", "payments:email", "2026-W10", true)]);
    assert_eq!(sink.recipients().len(), 3);

    // Down from Monday 9 March to Tuesday 17 March, 11:00: the missed week
    // and the latest missed digest go out once each, marked late.
    let sent = second.tick(at("2026-03-17T10:00:00Z")).await;
    assert_eq!(
        summary(&sent),
        [
            row("digest", "company:chat", "2026-03-16", true),
            row("weekly", "payments:email", "2026-W11", true),
            row("weekly", "search:email", "2026-W11", true)
        ]
    );
    assert!(second.tick(at("2026-03-17T10:01:00Z")).await.is_empty());
    assert_eq!(sink.recipients().len(), 5);
    assert_eq!(posts.lock().unwrap().len(), 2);
    // The ledger shows all of it.
    let ledger = store.ledger(0).unwrap();
    assert_eq!(ledger.len(), 6);
    assert!(ledger
        .iter()
        .all(|e| e.status == LedgerStatus::Sent && e.error.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_smtp_server_is_recorded_and_the_digest_chat_goes_out_anyway(kind: Kind) {
    let (hooks, posts) = receiver().await;
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = TestStore::open(kind, "delivery-dead-smtp");
    let digest_email = vec!["dev@example.com".to_owned()];
    let mut settings = settings(smtp_sink::smtp_to(dead_port, 5), digest_email, vec![]);
    // The weekly report and the digest at the same time.
    settings.schedule = Schedule::from_config(&ScheduleConfig {
        time_zone: "Europe/Berlin".into(),
        weekly: "MON 08:30".into(),
        digest: "08:30".into(),
    })
    .unwrap();
    let runner = runner(store.shared(), settings, "r", &hooks);

    let rows = runner.tick(at("2026-03-09T07:30:30Z")).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let status = |rows: &[LedgerEntry], target: &str| {
        rows.iter()
            .find(|r| r.target == target)
            .map(|r| (r.status, r.attempts, r.error.clone().unwrap_or_default()))
            .unwrap()
    };
    let (chat, ..) = status(&rows, "company:chat");
    assert_eq!(chat, LedgerStatus::Sent);
    assert_eq!(posts.lock().unwrap().len(), 1, "the digest's chat post is not held up");
    let ledger = store.ledger(0).unwrap();
    for target in ["payments:email", "search:email", "company:email"] {
        let (state, attempts, error) = status(&ledger, target);
        assert_eq!((state, attempts), (LedgerStatus::Retrying, 2), "{target}");
        assert!(
            error.contains(&format!("127.0.0.1:{dead_port}")) && error.contains("2 attempt"),
            "{target}: {error}"
        );
    }
    // Within the lease nothing is retried; after it, the next round is.
    assert!(runner.tick(at("2026-03-09T07:40:00Z")).await.is_empty());
    let retried = runner.tick(at("2026-03-09T07:46:00Z")).await;
    assert_eq!(retried.len(), 3, "{retried:?}");
    assert!(retried
        .iter()
        .all(|r| r.rounds == 2 && r.attempts == 4 && r.late && r.status == LedgerStatus::Retrying));
    assert_eq!(posts.lock().unwrap().len(), 1, "the chat post is not repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_tells_the_owning_team_once_on_firing_and_once_on_resolving(kind: Kind) {
    let (hooks, posts) = receiver().await;
    let store = TestStore::open(kind, "delivery-alert");
    let rule: AlertRule = toml::from_str(
        "name = \"checkout slow\"\nmetric = \"p95\"\ntransaction = \"POST /checkout\"\nabove = 0.8\nfor = \"5m\"",
    )
    .unwrap();
    // Outside any scheduled time, so only the alert speaks; no SMTP needed for chat.
    let settings = settings(smtp_sink::smtp_to(1, 5), vec![], vec![rule]);
    let settings = Settings { smtp: None, ..settings };
    let now = at("2026-03-10T12:00:00Z");
    let minute = now.as_second() / 60;
    let slow: Vec<_> = (1..=5).map(|m| checkout(minute - m, 2.0)).collect();
    store
        .write(&Batch {
            histograms: slow,
            ..Batch::default()
        })
        .unwrap();

    let first = runner(store.shared(), settings.clone(), "first", &hooks);
    let fired = first.tick(now).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].kind.as_str(), fired[0].target.as_str()),
        ("alert", "payments:chat")
    );
    // Still slow a minute later, and after a restart: no repeat.
    store
        .write(&Batch {
            histograms: vec![checkout(minute, 2.0)],
            ..Batch::default()
        })
        .unwrap();
    assert!(first.tick(now + Duration::from_secs(60)).await.is_empty());
    drop(first);
    let second = runner(store.shared(), settings, "second", &hooks);
    assert!(second.tick(now + Duration::from_secs(90)).await.is_empty());
    // Fast again for the whole window: resolved, once.
    let later = now + Duration::from_secs(20 * 60);
    let fast: Vec<_> = (1..=5).map(|m| checkout(later.as_second() / 60 - m, 0.1)).collect();
    store
        .write(&Batch {
            histograms: fast,
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(second.tick(later).await.len(), 1);
    assert!(second.tick(later + Duration::from_secs(60)).await.is_empty());

    let posts = posts.lock().unwrap();
    let texts: Vec<&str> = posts.iter().map(|(_, v)| v["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("firing") && texts[0].contains("POST /checkout"),
        "{}",
        texts[0]
    );
    assert!(texts[1].contains("resolved"), "{}", texts[1]);
    assert!(posts.iter().all(|(path, _)| path == "/hooks/payments"));
}
}
