//! The reports end to end, from stored data to what people receive: a seeded
//! synthetic fortnight (`synthetic::Spec::small`, with its planted regression
//! and error burst) plus a transaction with a hostile name goes into a real
//! store; the delivery `Runner`, with the analysis-backed producer and an
//! injected clock, crosses the digest's and the weekly report's scheduled
//! times; a real SMTP server on loopback (`tests/python/smtp_sink.py`, Python's
//! `aiosmtpd`) and an axum webhook receiver keep what arrives. The received
//! MIME is parsed as a mail client would: one email per team to its
//! addresses, its numbers equal to what `Analysis` answers directly, the
//! planted regression in its owner's email only, inline charts that are PNGs
//! referenced by `cid:`, the hostile name escaped. The digest lists the burst
//! first, as new, with its host and count. With the SMTP server down, the
//! ledger records the failures and the digest is posted all the same. Every
//! test runs on SQLite and on ClickHouse (`sqlite::<test>`,
//! `clickhouse::<test>`; `support/stores.rs`).
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

use jiff::tz::TimeZone;
use jiff::Timestamp;
use kuroko_reporter::analysis::endpoints::{Group, Rank};
use kuroko_reporter::analysis::regressions;
use kuroko_reporter::analysis::stats::{self, RegressionRule};
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::deliver::ledger::LedgerStatus;
use kuroko_reporter::deliver::schedule::{Period, Schedule, ScheduleConfig};
use kuroko_reporter::deliver::{analysis_producer, DeliveryConfig, DigestDelivery, Runner, Settings};
use kuroko_reporter::format;
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::report::mail::{self, SmtpConfig};
use kuroko_reporter::report::webhook;
use kuroko_reporter::store::{Batch, HistogramPoint, SeriesKey, Store};
use kuroko_reporter::synthetic::{Spec, Truths};
use mailparse::{DispositionType, MailHeaderMap, ParsedMail};

const TIME_ZONE: &str = "Europe/Berlin";
/// Monday 3 February 2025, 00:00 in Berlin (23:00 UTC the day before), in
/// unix minutes: the fortnight ends right before Monday 17 February, so the
/// week reported on 17 February (2025-W07) is the synthetic data's last.
const START: i64 = 20_122 * 1_440 - 60;
const WEEK: &str = "2025-W07";
const HOSTILE: &str = "<img src=x onerror=alert(1)> & \"quotes\"";

const OWNERS: &str = r#"
[teams.payments]
email = ["payments@example.com", "lead@example.com"]
[teams.discovery]
email = ["discovery@example.com"]
[teams.accounts]
email = ["accounts@example.com"]

[features.checkout]
team = "payments"
[features.search]
team = "discovery"
[features.catalog]
team = "discovery"
[features.accounts]
team = "accounts"
[features.reporting]
team = "accounts"
[features.notifications]
team = "accounts"
"#;

fn owners() -> Owners {
    Owners::parse(OWNERS, "owners.toml").unwrap()
}

fn tz() -> TimeZone {
    TimeZone::get(TIME_ZONE).unwrap()
}

fn settings(smtp: SmtpConfig, weekly: &str, digest_email: Vec<String>) -> Settings {
    Settings {
        schedule: Schedule::from_config(&ScheduleConfig {
            time_zone: TIME_ZONE.into(),
            weekly: weekly.into(),
            digest: "08:30".into(),
        })
        .unwrap(),
        owners: owners(),
        smtp: Some(smtp),
        digest: DigestDelivery {
            webhook_env: Some("HOOK_DIGEST".into()),
            email: digest_email,
        },
        base_url: "https://kuroko.example.com".into(),
        alerts: vec![],
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

fn runner(store: Arc<dyn Store>, settings: Settings, hooks: &str) -> Runner {
    let hooks = hooks.to_owned();
    let producer = analysis_producer(store.clone(), Arc::new(settings.owners.clone()));
    Runner::new(store, settings, producer, "e2e").with_env(move |name| match name {
        "HOOK_DIGEST" => Some(format!("{hooks}/digest")),
        _ => None,
    })
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A store holding the synthetic fortnight and, in its last week, a slow
/// transaction of the `search` feature whose name is an HTML injection.
fn seeded(kind: Kind, name: &str) -> (TestStore, Truths) {
    let store = TestStore::open(kind, &format!("e2e-{name}"));
    let spec = Spec::small(START);
    let truths = store.write_synthetic(&spec);
    let key = SeriesKey {
        service: "shop-api".into(),
        host: "shop-api-1".into(),
        transaction: HOSTILE.into(),
        feature: "search".into(),
        kind: "web".into(),
        environment: "production".into(),
    };
    let histograms = (0..5)
        .map(|day| {
            let mut histogram = Histogram::empty();
            for i in 0..10 {
                histogram.record(3.0 + 0.1 * f64::from(i)).unwrap();
            }
            HistogramPoint {
                key: key.clone().into(),
                minute: START + (7 + day) * 1_440 + 12 * 60,
                histogram,
            }
        })
        .collect();
    store
        .write(&Batch {
            histograms,
            ..Batch::default()
        })
        .unwrap();
    (store, truths)
}

fn header(part: &ParsedMail<'_>, name: &str) -> String {
    part.headers.get_first_value(name).unwrap_or_default()
}

/// The line of `text` starting with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// The scope of the reported week for `team`.
fn week_scope(team: &str) -> Scope {
    let period: Period = WEEK.parse().unwrap();
    let (from, to) = period.window(&tz()).unwrap();
    Scope {
        team: Some(team.into()),
        ..Scope::window(from.as_second() / 60, to.as_second() / 60)
    }
}

/// Checks one team's email against what the analysis answers for the team.
fn check_email(analysis: &Analysis<'_>, team: &str, raw: &[u8], truths: &Truths) {
    let mail = mailparse::parse_mail(raw).unwrap();
    assert_eq!(
        header(&mail, "Subject"),
        format!("Kuroko weekly: {team}, 2025-02-10 to 2025-02-16")
    );
    let [text_part, related] = &mail.subparts[..] else {
        panic!("{team}: expected text and related parts, got {}", mail.subparts.len());
    };
    let text = text_part.get_body().unwrap().replace("\r\n", "\n");
    let (html_part, images) = related.subparts.split_first().unwrap();
    let html = html_part.get_body().unwrap();
    let scope = week_scope(team);

    // Each feature's week: average, p95 and throughput as the analysis has them.
    let features = analysis
        .slowest_grouped(&scope, Group::Feature, Rank::P95, usize::MAX)
        .unwrap()
        .rows;
    assert!(!features.is_empty(), "{team} has features with runs");
    for f in &features {
        let name = f.feature.as_deref().unwrap();
        let row = line(&text, &format!("- {name}: avg "));
        for expected in [
            format!("avg {} (", format::duration(f.mean)),
            format!("p95 {} (", format::duration(f.p95)),
            format!(", {} (", format::rate(f.throughput)),
        ] {
            assert!(row.contains(&expected), "{team}: {expected:?} not in {row:?}");
        }
        assert!(
            text.contains(&format!(
                "https://kuroko.example.com/features/{name}?since=2025-02-09T23%3A00%3A00Z"
            )),
            "{team}: no link to {name}"
        );
    }
    // The endpoint that took the most time, with its count for the week.
    let top = &analysis.slowest(&scope, Rank::TimeConsumed, 1).unwrap().rows[0];
    let expected = format!(
        "- {} ({}): {} calls, avg {}, p95 {}",
        top.transaction,
        top.service,
        format::count(top.count),
        format::duration(top.mean),
        format::duration(top.p95)
    );
    assert!(text.contains(&expected), "{team}: {expected:?} not in:\n{text}");

    // The planted regression: in its owner's email only, with its change and p-value.
    let planted = format!("- {} ({}): ", truths.regression.transaction, truths.regression.service);
    let comparison = analysis
        .compare(&scope, &RegressionRule::default(), regressions::Group::Transaction)
        .unwrap();
    if team == "payments" {
        let found = &comparison.regressions[0];
        assert_eq!(found.transaction, truths.regression.transaction);
        let trigger = found.verdict.trigger.unwrap();
        let row = line(&text, &planted);
        let change = found.verdict.changes.get(trigger.metric);
        // The change, its interval, p and q (adjusted across the week's comparisons).
        let expected = format!(
            "{} {} -> {} ({} ({})), {}, {} ({})",
            trigger.metric,
            format::duration(change.previous),
            format::duration(change.current),
            format::change(Some(trigger.relative)),
            stats::interval_text(trigger.low, trigger.high),
            format::p_value(trigger.p_value),
            format::q_value(trigger.q_value),
            trigger.test
        );
        assert!(row.contains(&expected), "{expected:?} not in {row:?}");
        assert!((trigger.relative - 0.3).abs() < 0.1, "about +30%: {trigger}");
        assert!(
            html.contains("1 regression, worst: GET /orders/{id} p95 +"),
            "the summary names it"
        );
    } else {
        assert!(comparison.regressions.is_empty());
        assert!(!text.contains(&planted), "{team} got another team's regression");
        assert!(text.contains("REGRESSIONS\n  None found this week."), "{team}");
    }

    // Charts: one inline PNG per feature, each shown by its Content-ID.
    assert_eq!(images.len(), features.len(), "{team}");
    for image in images {
        assert_eq!(image.ctype.mimetype, "image/png");
        assert_eq!(image.get_content_disposition().disposition, DispositionType::Inline);
        let content_id = header(image, "Content-ID");
        let cid = content_id.trim_start_matches('<').trim_end_matches('>');
        assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{team}: {cid} not shown");
        assert_eq!(&image.get_body_raw().unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    }
    assert_eq!(html.matches("src=\"cid:").count(), images.len());
    assert!(!html.contains("<img src=x"), "{team}: a raw hostile tag in the HTML");
}

suite! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_week_reaches_each_team_and_the_digest_channel_with_the_analysis_numbers(kind: Kind) {
    let sink = Sink::start(&format!("weekly-{}", kind.name()));
    let (hooks, posts) = receiver().await;
    let (store, truths) = seeded(kind, "weekly");
    let runner = runner(store.shared(), settings(sink.config(5), "MON 08:00", vec![]), &hooks);
    let owners = owners();
    let analysis = Analysis::new(&*store, &owners);

    // Sunday 16 February, 08:29 in Berlin: nothing was ever sent, nothing is due.
    assert!(runner.tick(at("2025-02-16T07:29:00Z")).await.is_empty());
    // 08:30:30: the digest of Saturday, the burst's day.
    let burst = &truths.error_burst;
    let sent = runner.tick(at("2025-02-16T07:30:30Z")).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].target.as_str(), sent[0].period.as_str()),
        ("company:chat", "2025-02-15")
    );
    assert_eq!(sent[0].status, LedgerStatus::Sent, "{:?}", sent[0].error);
    {
        let posts = posts.lock().unwrap();
        assert_eq!(posts.len(), 1, "one message holds the day's groups");
        let (path, message) = &posts[0];
        assert_eq!(path, "/hooks/digest");
        let first_group = message["blocks"][3]["text"]["text"].as_str().unwrap();
        let day: Period = "2025-02-15".parse().unwrap();
        let (from, to) = day.window(&tz()).unwrap();
        let groups = analysis
            .errors(&Scope::window(from.as_second() / 60, to.as_second() / 60))
            .unwrap();
        let top = &groups[0];
        assert_eq!(
            (top.error_type.as_str(), top.count, top.new),
            (burst.error_type.as_str(), burst.count, true)
        );
        // The group's link opens the digest's day (in the schedule's time
        // zone), not the UI's default last 24 hours.
        let at = |t: jiff::Timestamp| t.to_string().replace(':', "%3A");
        assert!(
            first_group.starts_with(&format!(
                ":new: *<https://kuroko.example.com/errors/{}?since={}&amp;until={}|{}>*",
                top.id,
                at(from),
                at(to),
                burst.error_type
            )),
            "{first_group}"
        );
        let count = format::count(burst.count);
        assert!(
            first_group.contains(&format!("{} (shop-api) {count}", burst.host)),
            "{first_group}"
        );
        assert!(first_group.contains(&format!("*{count}*")), "{first_group}");
    }

    // Monday 17 February, 08:00:30: each team's report on the week before.
    let sent = runner.tick(at("2025-02-17T07:00:30Z")).await;
    let mut targets: Vec<(&str, &str, LedgerStatus)> = sent
        .iter()
        .map(|r| (r.target.as_str(), r.period.as_str(), r.status))
        .collect();
    targets.sort_by_key(|t| (t.0, t.1));
    assert_eq!(
        targets,
        [
            ("accounts:email", WEEK, LedgerStatus::Sent),
            ("discovery:email", WEEK, LedgerStatus::Sent),
            ("payments:email", WEEK, LedgerStatus::Sent),
        ]
    );
    let received = sink.received();
    assert_eq!(received.len(), 3, "one email per team");
    let mut by_team: Vec<(&str, &Vec<u8>)> = Vec::new();
    for (recipients, raw) in &received {
        let team = match recipients.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["payments@example.com", "lead@example.com"] => "payments",
            ["discovery@example.com"] => "discovery",
            ["accounts@example.com"] => "accounts",
            ref other => panic!("unexpected recipients {other:?}"),
        };
        check_email(&analysis, team, raw, &truths);
        by_team.push((team, raw));
    }
    by_team.sort();
    assert_eq!(
        by_team.iter().map(|t| t.0).collect::<Vec<_>>(),
        ["accounts", "discovery", "payments"]
    );

    // The hostile name, owned by discovery: escaped in its HTML, plain in its text.
    let discovery = mailparse::parse_mail(by_team[1].1).unwrap();
    let text = discovery.subparts[0].get_body().unwrap();
    let html = discovery.subparts[1].subparts[0].get_body().unwrap();
    assert!(text.contains(&format!("- {HOSTILE} (shop-api): 50 calls")), "{text}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;"));
    for (team, raw) in [by_team[0], by_team[2]] {
        let text = mailparse::parse_mail(raw).unwrap().subparts[0].get_body().unwrap();
        assert!(!text.contains("onerror"), "{team} got discovery's transaction");
    }
    // The burst, in checkout's transaction, is a new error group for payments.
    let payments = mailparse::parse_mail(by_team[2].1).unwrap();
    let text = payments.subparts[0].get_body().unwrap();
    assert!(text.contains(&format!("- [new] {}: ", burst.error_type)), "{text}");

    assert!(
        runner.tick(at("2025-02-17T07:01:30Z")).await.is_empty(),
        "nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_smtp_server_down_the_ledger_shows_it_and_the_digest_is_posted(kind: Kind) {
    let (hooks, posts) = receiver().await;
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (store, truths) = seeded(kind, "smtp-down");
    // The weekly report and the digest at the same minute.
    let settings = settings(
        smtp_sink::smtp_to(dead_port, 5),
        "SUN 08:30",
        vec!["dev@example.com".into()],
    );
    let runner = runner(store.shared(), settings, &hooks);

    let rows = runner.tick(at("2025-02-16T07:30:30Z")).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let ledger = store.ledger(0).unwrap();
    for target in ["payments:email", "discovery:email", "accounts:email", "company:email"] {
        let entry = ledger.iter().find(|e| e.target == target).unwrap();
        let error = entry.error.clone().unwrap_or_default();
        assert_eq!((entry.status, entry.attempts), (LedgerStatus::Retrying, 2), "{target}");
        assert!(error.contains(&format!("127.0.0.1:{dead_port}")), "{target}: {error}");
    }
    let chat = ledger.iter().find(|e| e.target == "company:chat").unwrap();
    assert_eq!((chat.status, chat.period.as_str()), (LedgerStatus::Sent, "2025-02-15"));
    let posts = posts.lock().unwrap();
    assert_eq!(posts.len(), 1);
    let first_group = posts[0].1["blocks"][3]["text"]["text"].as_str().unwrap();
    assert!(
        first_group.starts_with(":new: *<https://kuroko.example.com/errors/")
            && first_group.contains(&truths.error_burst.error_type),
        "{first_group}"
    );
}
}
