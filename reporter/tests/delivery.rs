//! Scheduled delivery end to end: the runner's tick, driven by an injected
//! clock, sends to a real SMTP sink (`tests/python/smtp_sink.py`, as in
//! `weekly_mail.rs`) and an axum webhook receiver on loopback, and keeps its
//! ledger in a real store. Exactly one email per team and one digest post per
//! period; a restart sends nothing again; a dead SMTP server is recorded
//! with its error while the digest's chat post goes out; downtime across
//! scheduled times sends each missed period once, oldest first, saying it is
//! late and why, back to `[delivery]`'s limit, and records older ones
//! skipped; an alert tells
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
use kuroko_reporter::deliver::ledger::{self, LedgerEntry, LedgerStatus};
use kuroko_reporter::deliver::schedule::{Report, Schedule, ScheduleConfig};
use kuroko_reporter::deliver::{
    analysis_producer, placeholder_producer, DeliveryConfig, DigestDelivery, Producer, Runner, Settings,
};
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::report::mail::{self, SmtpConfig};
use kuroko_reporter::report::webhook;
use kuroko_reporter::store::{Batch, HistogramPoint, SeriesKey, Store};
use mailparse::MailHeaderMap;

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
        delivery: DeliveryConfig::default(),
        problems: Default::default(),
    }
}

fn runner(store: Arc<dyn Store>, settings: Settings, holder: &str, hooks: &str) -> Runner {
    runner_with(store, settings, placeholder_producer(), holder, hooks)
}

fn runner_with(store: Arc<dyn Store>, settings: Settings, producer: Producer, holder: &str, hooks: &str) -> Runner {
    let hooks = hooks.to_owned();
    Runner::new(store, settings, producer, holder).with_env(move |name| match name {
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
    // and each missed digest go out once, marked late, oldest first; of the
    // eight digests missed, the seven most recent (`[delivery]
    // catch_up_days`) are sent and the oldest is recorded skipped.
    let sent = second.tick(at("2026-03-17T10:00:00Z")).await;
    let mut expected = vec![(
        "digest".to_owned(),
        "company:chat".to_owned(),
        "2026-03-09".to_owned(),
        LedgerStatus::Skipped,
        true,
    )];
    expected.extend((10..=16).map(|day| row("digest", "company:chat", &format!("2026-03-{day}"), true)));
    expected.extend([
        row("weekly", "payments:email", "2026-W11", true),
        row("weekly", "search:email", "2026-W11", true),
    ]);
    assert_eq!(summary(&sent), expected);
    assert!(second.tick(at("2026-03-17T10:01:00Z")).await.is_empty());
    assert_eq!(sink.recipients().len(), 5);
    {
        let posts = posts.lock().unwrap();
        let texts: Vec<&str> = posts.iter().map(|p| p.1["text"].as_str().unwrap()).collect();
        assert_eq!(texts.len(), 8, "{texts:?}");
        for (text, day) in texts[1..].iter().zip(10..=16) {
            assert!(
                text.contains(&format!("Late: this report for 2026-03-{day} was due")),
                "oldest first, each saying late: {texts:?}"
            );
        }
    }
    // The ledger shows all of it.
    let ledger = store.ledger(0).unwrap();
    assert_eq!(ledger.len(), 13);
    assert!(ledger
        .iter()
        .filter(|e| e.period != "2026-03-09")
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

/// Down for three Mondays with `catch_up_weeks = 2`: the two most recent
/// missed weekly reports go out late, oldest first, each built from its own
/// week's data and saying in its subject and body that it is late and why;
/// the oldest week is recorded skipped (as `kuroko report status` shows);
/// the missed digests are posted to the chat, each saying it is late; a
/// second pass and a restart send nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_weeks_are_caught_up_once_each_late_oldest_first_back_to_the_limit(kind: Kind) {
    let sink = Sink::start(&format!("catch-up-{}", kind.name()));
    let (hooks, posts) = receiver().await;
    let store = TestStore::open(kind, "delivery-catch-up");
    // Checkout took 100 ms in 2026-W10, 200 ms in W11 and 400 ms in W12.
    let weeks = [
        ("2026-03-04T11:00:00Z", 0.1),
        ("2026-03-11T11:00:00Z", 0.2),
        ("2026-03-18T11:00:00Z", 0.4),
    ];
    let points = weeks
        .iter()
        .flat_map(|(day, seconds)| {
            let minute = at(day).as_second() / 60;
            (0..5).map(move |m| checkout(minute + m, *seconds))
        })
        .collect();
    store
        .write(&Batch {
            histograms: points,
            ..Batch::default()
        })
        .unwrap();
    // Sent before the reporter went down: W09 to each team on Monday 2
    // March, the digest for Thursday 19 March on Friday the 20th.
    for (kind, target, period, scheduled) in [
        ("weekly", "payments:email", "2026-W09", "2026-03-02T07:00:00Z"),
        ("weekly", "search:email", "2026-W09", "2026-03-02T07:00:00Z"),
        ("digest", "company:chat", "2026-03-19", "2026-03-20T07:30:00Z"),
    ] {
        let scheduled = at(scheduled).as_second();
        assert!(store.ledger_claim(kind, target, period, "before", scheduled).unwrap());
        store
            .ledger_record(&LedgerEntry {
                kind: kind.into(),
                target: target.into(),
                period: period.into(),
                holder: "before".into(),
                status: LedgerStatus::Sent,
                attempts: 1,
                rounds: 1,
                error: None,
                late: false,
                scheduled_at: scheduled,
                claimed_at: scheduled,
                finished_at: Some(scheduled + 1),
            })
            .unwrap();
    }
    let mut settings = settings(sink.config(5), vec![], vec![]);
    settings.delivery.catch_up_weeks = 2;
    let producer = || analysis_producer(store.shared(), Arc::new(settings.owners.clone()));
    let first = runner_with(store.shared(), settings.clone(), producer(), "first", &hooks);

    // Back on Tuesday 24 March, 11:00 in Berlin.
    let now = at("2026-03-24T10:00:00Z");
    let written = first.tick(now).await;
    let skipped = |target: &str| {
        (
            "weekly".to_owned(),
            target.to_owned(),
            "2026-W10".to_owned(),
            LedgerStatus::Skipped,
            true,
        )
    };
    assert_eq!(
        summary(&written),
        [
            row("digest", "company:chat", "2026-03-20", true),
            row("digest", "company:chat", "2026-03-21", true),
            row("digest", "company:chat", "2026-03-22", true),
            row("digest", "company:chat", "2026-03-23", true),
            skipped("payments:email"),
            row("weekly", "payments:email", "2026-W11", true),
            row("weekly", "payments:email", "2026-W12", true),
            skipped("search:email"),
            row("weekly", "search:email", "2026-W11", true),
            row("weekly", "search:email", "2026-W12", true),
        ]
    );

    // Each team's emails, in the order they arrived: oldest first, each
    // saying it is late, when it was due and why, with its own week's data.
    let received = sink.received();
    assert_eq!(received.len(), 4);
    let emails = |address: &str| -> Vec<(String, String, String)> {
        received
            .iter()
            .filter(|(to, _)| to.iter().any(|t| t == address))
            .map(|(_, raw)| {
                let mail = mailparse::parse_mail(raw).unwrap();
                let subject = mail.headers.get_first_value("Subject").unwrap();
                let text = mail.subparts[0].get_body().unwrap().replace("\r\n", "\n");
                let html = mail.subparts[1].subparts[0].get_body().unwrap();
                (subject, text, html)
            })
            .collect()
    };
    let payments = emails("payments@example.com");
    let subjects: Vec<&str> = payments.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "[late] Kuroko weekly: payments, 2026-03-09 to 2026-03-15",
            "[late] Kuroko weekly: payments, 2026-03-16 to 2026-03-22"
        ]
    );
    let w11 = "Late: this report for the week of 2026-03-09 was due Mon 2026-03-16 08:00 CET; \
               the reporter was not running then.";
    let w12 = "Late: this report for the week of 2026-03-16 was due Mon 2026-03-23 08:00 CET; \
               the reporter was not running then.";
    for ((_, text, html), (late, avg)) in payments.iter().zip([(w11, "avg 200 ms"), (w12, "avg 400 ms")]) {
        assert!(text.contains(late) && html.contains(late), "{late}\n{text}");
        assert!(text.contains(&format!("checkout: {avg}")), "its own week's data: {avg}\n{text}");
    }
    let search = emails("search@example.com");
    assert_eq!(search.len(), 2);
    assert!(search[0].1.contains(w11.replace("payments", "search").as_str()) && search[1].1.contains(w12));

    // The digests in the chat, oldest first, each saying it is late.
    {
        let posts = posts.lock().unwrap();
        assert_eq!(posts.len(), 4);
        for ((path, body), day) in posts.iter().zip(20..=23) {
            assert_eq!(path, "/hooks/digest");
            let all = body.to_string();
            assert!(
                all.contains(&format!("Late: this report for 2026-03-{day} was due"))
                    && all.contains("the reporter was not running then"),
                "{all}"
            );
        }
        assert!(posts[3].1.to_string().contains("was due Tue 2026-03-24 08:30 CET"));
    }

    // Nothing more: not on the next pass, nor after a restart.
    assert!(first.tick(now + Duration::from_secs(60)).await.is_empty());
    drop(first);
    let store = store.reopen();
    let producer = analysis_producer(store.shared(), Arc::new(settings.owners.clone()));
    let second = runner_with(store.shared(), settings, producer, "second", &hooks);
    assert!(second.tick(now + Duration::from_secs(120)).await.is_empty());
    assert_eq!(sink.received().len(), 4);
    assert_eq!(posts.lock().unwrap().len(), 4);

    // `kuroko report status` shows the skipped week and why.
    let status = ledger::render_status(&store.ledger(0).unwrap(), &jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    let w10: Vec<&str> = status.lines().filter(|l| l.contains("2026-W10")).collect();
    assert_eq!(w10.len(), 2, "{status}");
    assert!(w10.iter().all(|l| l.contains("skipped") && l.contains("LATE")), "{status}");
    assert!(
        status.contains("only the 2 most recent are sent late ([delivery] catch_up_weeks = 2)"),
        "{status}"
    );
}
}
