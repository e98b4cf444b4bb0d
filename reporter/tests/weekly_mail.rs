//! The weekly report sent to a real SMTP server: `tests/python/smtp_sink.py`
//! (Python's `aiosmtpd`) on loopback keeps what it receives, and the message
//! is parsed back as a mail client would (`mailparse`): recipients, subject,
//! the text and HTML parts, the inline charts and their Content-IDs, and a
//! hostile transaction name escaped. Also: a dead server and a permanent
//! refusal end in a `MailError`, after the configured attempts and after one.
//!
//! `tests/run-all.sh` installs `aiosmtpd`; without it these tests fail, saying so.

#[path = "support/smtp_sink.rs"]
mod smtp_sink;
use smtp_sink::Sink;

use std::time::Duration;

use kuroko_reporter::report::chart::render_charts;
use kuroko_reporter::report::mail::{build_message, send, MailError, Retry, Security, SmtpConfig};
use kuroko_reporter::report::weekly::{
    DailyPoint, EndpointRow, ErrorRow, FeatureRow, RegressionRow, ServerCount, WeeklyReport,
};
use mailparse::{DispositionType, MailHeaderMap, ParsedMail};

const HOSTILE: &str = "<script>alert(1)</script> & \"quotes\"";

fn report() -> WeeklyReport {
    let daily: Vec<DailyPoint> = (0..28)
        .map(|d| DailyPoint {
            day: format!("d{d:02}"),
            avg_s: Some(0.1 + 0.002 * f64::from(d)),
            p95_s: Some(0.4 + 0.01 * f64::from(d)),
        })
        .collect();
    WeeklyReport {
        team: "payments".into(),
        week_start: "2026-03-09".into(),
        week_end: "2026-03-15".into(),
        base_url: "https://kuroko.example.com".into(),
        features: vec![
            FeatureRow {
                name: "checkout".into(),
                avg_s: 0.12,
                p95_s: 0.48,
                throughput_per_min: 12.34,
                apdex: Some(0.94),
                avg_change: Some(0.05),
                p95_change: Some(0.31),
                throughput_change: Some(-0.02),
                apdex_change: Some(-0.03),
                daily: daily.clone(),
                deploys: Vec::new(),
                link: "/features?name=checkout".into(),
                estimated: false,
            },
            FeatureRow {
                name: "refunds".into(),
                avg_s: 0.9,
                p95_s: 2.1,
                throughput_per_min: 0.5,
                apdex: None,
                daily,
                ..FeatureRow::default()
            },
        ],
        slowest: vec![EndpointRow {
            service: "shop".into(),
            transaction: HOSTILE.into(),
            feature: Some("checkout".into()),
            count: 12345,
            avg_s: 0.8,
            p95_s: 2.5,
            p99_s: 4.0,
            share_of_time: 0.23,
            link: "/transactions?name=x".into(),
            estimated: false,
        }],
        consumers: vec![],
        regressions_note: None,
        regressions: vec![RegressionRow {
            service: "shop".into(),
            transaction: HOSTILE.into(),
            metric: "p95".into(),
            before_s: 0.366,
            after_s: 0.48,
            change: 0.31,
            p_value: 0.0004,
            q_value: 0.003,
            change_low: 0.24,
            change_high: Some(0.38),
            test: "block share test".into(),
            impact_s: 5400.0,
            cause: format!("`{HOSTILE}` +31 ms per run, 84% of the change, on all hosts"),
            link: String::new(),
        }],
        errors: vec![ErrorRow {
            title: "TimeoutError".into(),
            message: "</td><img src=x onerror=alert(1)>".into(),
            count: 340,
            previous_count: 12,
            new: false,
            growing: true,
            servers: vec![ServerCount {
                host: "web-1".into(),
                count: 340,
            }],
            link: "/errors/42".into(),
            ..ErrorRow::default()
        }],
        late: None,
        ..WeeklyReport::default()
    }
}

fn header(part: &ParsedMail<'_>, name: &str) -> String {
    part.headers.get_first_value(name).unwrap_or_default()
}

#[test]
fn the_weekly_report_arrives_whole_and_escaped() {
    let sink = Sink::start("whole");
    let report = report();
    let charts = render_charts(&report).unwrap();
    assert_eq!(charts.len(), 2);
    let to = vec!["alice@example.com".to_owned(), "bob@example.com".to_owned()];
    let message = build_message(&report, &to, &sink.config(30).from, &charts).unwrap();
    let attempts = send(&sink.config(30), &message, Retry::default()).unwrap();
    assert_eq!(attempts, 1);

    let received = sink.received();
    assert_eq!(received.len(), 1, "one message expected");
    let (recipients, raw) = &received[0];
    assert_eq!(recipients, &to);
    let mail = mailparse::parse_mail(raw).unwrap();
    assert_eq!(
        header(&mail, "Subject"),
        "Kuroko weekly: payments, 2026-03-09 to 2026-03-15"
    );
    assert_eq!(header(&mail, "To"), "alice@example.com, bob@example.com");
    assert!(header(&mail, "From").contains("kuroko@example.com"));

    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let [text_part, related] = &mail.subparts[..] else {
        panic!("expected text and related parts, got {}", mail.subparts.len());
    };
    assert_eq!(text_part.ctype.mimetype, "text/plain");
    assert_eq!(related.ctype.mimetype, "multipart/related");

    let text = text_part.get_body().unwrap();
    assert!(
        text.contains("- checkout: avg 120 ms (+5.0%), p95 480 ms (+31%), 12.3/min (-2.0%), Apdex 0.94 (-0.03)"),
        "{text}"
    );
    assert!(
        text.contains("12,345 calls, avg 800 ms, p95 2.50 s, p99 4.00 s, 23% of the time"),
        "{text}"
    );
    assert!(
        text.contains("- [growing] TimeoutError: 340 this week, 12 last week"),
        "{text}"
    );
    assert!(text.contains("https://kuroko.example.com/errors/42"), "{text}");

    let (html_part, images) = related.subparts.split_first().unwrap();
    assert_eq!(html_part.ctype.mimetype, "text/html");
    let html = html_part.get_body().unwrap();
    assert!(!html.contains("<script"), "a raw <script> tag in the HTML");
    assert!(
        !html.contains("<img src=x"),
        "a raw <img> from an error message in the HTML"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
    assert!(
        html.contains("1 regression, worst: &lt;script&gt;"),
        "the summary is missing"
    );

    assert_eq!(images.len(), 2);
    for image in images {
        assert_eq!(image.ctype.mimetype, "image/png");
        assert_eq!(image.get_content_disposition().disposition, DispositionType::Inline);
        let content_id = header(image, "Content-ID");
        let cid = content_id.trim_start_matches('<').trim_end_matches('>');
        assert!(
            !cid.is_empty() && content_id.starts_with('<'),
            "Content-ID {content_id:?}"
        );
        assert!(
            html.contains(&format!("src=\"cid:{cid}\"")),
            "the HTML does not show {cid}"
        );
        let png = image.get_body_raw().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{cid} is not a PNG");
    }
    // Every image the HTML shows is in the message, with its alt text.
    assert_eq!(html.matches("src=\"cid:").count(), images.len());
    assert_eq!(html.matches("alt=\"Daily average and p95 of ").count(), images.len());
}

#[test]
fn a_dead_server_is_a_mail_error_after_the_configured_attempts() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        security: Security::None,
        username: None,
        password_file: None,
        password_env: None,
        from: "kuroko@example.com".into(),
        timeout_seconds: 5,
        file_dir: None,
    };
    let report = report();
    let message = build_message(&report, &["team@example.com".to_owned()], &cfg.from, &[]).unwrap();
    let retry = Retry {
        attempts: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    };
    match send(&cfg, &message, retry) {
        Err(MailError::Send {
            attempts, permanent, ..
        }) => assert_eq!((attempts, permanent), (3, false)),
        other => panic!("expected a send error after 3 attempts, got {other:?}"),
    }
}

#[test]
fn a_permanent_refusal_is_not_retried() {
    let sink = Sink::start("refused");
    let report = report();
    let message = build_message(&report, &["refused@example.com".to_owned()], &sink.config(30).from, &[]).unwrap();
    let retry = Retry {
        attempts: 4,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    };
    let err = send(&sink.config(30), &message, retry).unwrap_err();
    let MailError::Send {
        attempts,
        permanent,
        ref last,
        ..
    } = err
    else {
        panic!("expected a send error, got {err:?}");
    };
    assert_eq!((attempts, permanent), (1, true), "{err}");
    assert!(last.contains("550"), "{err}");
    assert!(sink.received().is_empty());
}
