//! Error groups as people triage them, end to end: a real `kuroko serve`
//! (the binary cargo built for the tests) takes real OTLP log records over
//! HTTP; groups are resolved, assigned and ignored through `kuroko errors
//! … --server`, the JSON API and the group page's form; the morning digest
//! is sent by `kuroko report digest --send` to a real SMTP server on
//! loopback (`tests/python/smtp_sink.py`) and read as a mail client would.
//!
//! What a user would notice: a group first seen three days ago says so
//! under a one-hour window; a resolved group that occurs again is
//! "regressed" in the digest (text and HTML) and on its page, with its
//! team; an ignored group leaves the digest and is only counted; the page
//! shows the latest stack trace, escaped. Run on SQLite and on ClickHouse
//! (`support/clickhouse_server.rs`: no server, no pass).
//!
//! `tests/run-all.sh` installs `aiosmtpd`; without it these tests fail, saying so.

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
#[path = "support/reporter.rs"]
mod reporter;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kuroko_serve::kv;
use mailparse::MailHeaderMap;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use reporter::{now_nanos, Reporter};
use serde_json::Value;
use smtp_sink::Sink;

const OWNERS: &str = r#"
[teams.payments]
display_name = "Payments"
[teams.search]

[features.checkout]
team = "payments"
patterns = [{ service = "shop", transaction = "POST /checkout" }]
"#;

const DAY_NANOS: u64 = 86_400_000_000_000;

/// A Python traceback whose innermost frame is at `line` (the group is the
/// same whatever the line: it is grouped by file and function).
fn traceback(line: u32) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"/app/shop/checkout.py\", line 42, in <module>\n    \
         pay(order)\n  File \"/app/shop/payments.py\", line {line}, in pay\n    \
         raise TimeoutError(\"upstream timed out\")\nTimeoutError: upstream timed out"
    )
}

/// An exception log record at `time` (unix nanoseconds).
fn exception(time: u64, error_type: &str, message: &str, stacktrace: &str) -> LogRecord {
    let mut attributes = vec![
        kv("exception.type", error_type),
        kv("exception.message", message),
        kv("kuroko.transaction", "POST /checkout"),
    ];
    if !stacktrace.is_empty() {
        attributes.push(kv("exception.stacktrace", stacktrace));
    }
    LogRecord {
        time_unix_nano: time,
        severity_number: 17,
        attributes,
        ..Default::default()
    }
}

/// Sends `records` from service `shop` on host `web-1` as OTLP/HTTP protobuf.
async fn send(reporter: &Reporter, records: Vec<LogRecord>) {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop"), kv("host.name", "web-1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, answer) = reporter
        .post::<ExportLogsServiceResponse>("logs", request.encode_to_vec())
        .await;
    assert_eq!(status, 200, "{answer:?}");
    assert!(
        answer
            .partial_success
            .as_ref()
            .is_none_or(|p| p.rejected_log_records == 0),
        "{answer:?}"
    );
    // Acknowledged means journaled: on ClickHouse, wait until it is sent.
    reporter.stored().await;
}

/// The groups of the last hour, as the API answers them.
async fn groups(reporter: &Reporter) -> Vec<Value> {
    reporter.api("errors", "").await["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The group whose error type is `error_type`.
fn group<'a>(groups: &'a [Value], error_type: &str) -> &'a Value {
    groups
        .iter()
        .find(|g| g["error_type"] == error_type)
        .unwrap_or_else(|| panic!("no {error_type} group in {groups:#?}"))
}

/// `kuroko ARGS` in `dir`: its standard output; fails the test with its
/// error output when it does not exit 0.
fn kuroko(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(args)
        .current_dir(dir)
        .env_remove("KUROKO_STORE")
        .env_remove("KUROKO_QUERY_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kuroko {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A unix minute as the UI writes it.
fn minute_utc(nanos: u64) -> String {
    let minute = i64::try_from(nanos / 60_000_000_000).unwrap();
    jiff::Timestamp::from_second(minute * 60)
        .unwrap()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// A folder of the test's own (owners.toml, the digest's configuration).
fn folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-triage-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("owners.toml"), OWNERS).unwrap();
    dir
}

/// The text and HTML parts of the one digest the sink received.
fn digest_parts(sink: &Sink) -> (String, String, String) {
    let received = sink.received();
    assert_eq!(received.len(), 1, "one digest email");
    let (recipients, raw) = &received[0];
    assert_eq!(recipients, &["dev@example.com"]);
    let mail = mailparse::parse_mail(raw).unwrap();
    let subject = mail.headers.get_first_value("Subject").unwrap_or_default();
    let mut text = String::new();
    let mut html = String::new();
    for part in mail.parts() {
        match part.ctype.mimetype.as_str() {
            "text/plain" => text = part.get_body().unwrap(),
            "text/html" => html = part.get_body().unwrap(),
            _ => {}
        }
    }
    assert!(
        !text.is_empty() && !html.is_empty(),
        "a text and an HTML part: {subject}"
    );
    (subject, text, html)
}

async fn resolved_errors_come_back_regressed_and_ignored_ones_leave_the_digest(tag: &str, store: Option<String>) {
    let dir = folder(tag);
    let owners = dir.join("owners.toml");
    // Roll-ups every second: a point three days old lands in an hour
    // already rolled, and is read once that hour is rolled again.
    let config = format!(
        "owners = {:?}\nrollup_interval_seconds = 1\n",
        owners.display().to_string()
    );
    let reporter = Reporter::start_on(tag, &config, store.as_deref());
    let server = format!("http://{}", reporter.http);

    // The timeout was first seen three days ago; it and a KeyError happen again now.
    // Everything of today's digest happens on one UTC day: not in the last
    // minutes before midnight, nor before it.
    let to_midnight = DAY_NANOS - now_nanos() % DAY_NANOS;
    if to_midnight < 300_000_000_000 {
        tokio::time::sleep(Duration::from_nanos(to_midnight + 1_000_000_000)).await;
    }
    let now = now_nanos();
    let recently = (now - 120_000_000_000).max(now - now % DAY_NANOS);
    let today = jiff::Timestamp::from_nanosecond(i128::from(now))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let three_days_ago = now - 3 * DAY_NANOS;
    send(
        &reporter,
        vec![
            exception(three_days_ago, "TimeoutError", "upstream timed out", &traceback(17)),
            exception(recently, "TimeoutError", "upstream timed out", &traceback(17)),
            exception(recently, "KeyError", "cart 17 missing", ""),
        ],
    )
    .await;
    let started = Instant::now();
    let listed = loop {
        let listed = groups(&reporter).await;
        let first = listed
            .iter()
            .find(|g| g["error_type"] == "TimeoutError")
            .map(|g| g["first_seen_minute"].clone());
        if first.and_then(|f| f.as_u64()) == Some(three_days_ago / 60_000_000_000)
            || started.elapsed() > Duration::from_secs(60)
        {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let timeout = group(&listed, "TimeoutError");
    let timeout_id = timeout["id"].as_str().unwrap().to_owned();
    let key_id = group(&listed, "KeyError")["id"].as_str().unwrap().to_owned();
    assert_eq!(
        timeout["first_seen_minute"].as_u64(),
        Some(three_days_ago / 60_000_000_000),
        "first seen three days ago, though the window is an hour: {timeout:#}"
    );
    assert_eq!(timeout["count"], 1, "one occurrence in the hour");
    assert_eq!(timeout["new"], false, "seen before the window: not new");
    assert_eq!(group(&listed, "KeyError")["new"], true);
    assert_eq!(timeout["triage"]["status"], "open");

    // Resolved and assigned from the command line, the KeyError ignored through the API.
    let said = kuroko(&dir, &["errors", "resolve", &timeout_id, "--server", &server]);
    assert_eq!(
        said,
        format!("error group {timeout_id}: resolved, assigned to no team\n")
    );
    let said = kuroko(
        &dir,
        &["errors", "assign", &timeout_id, "payments", "--server", &server],
    );
    assert_eq!(
        said,
        format!("error group {timeout_id}: resolved, assigned to payments\n")
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let ignored = client
        .post(format!("{server}/api/v1/errors/{key_id}/ignore"))
        .form(&[("until", "30d")])
        .send()
        .await
        .unwrap();
    assert_eq!(ignored.status(), 200);
    let ignored: Value = serde_json::from_str(&ignored.text().await.unwrap()).unwrap();
    assert_eq!(
        (ignored["status"].as_str(), ignored["by"].as_str()),
        (Some("ignored"), Some("api"))
    );
    // Mistakes are named: an unknown team, a group that never happened.
    let unknown = client
        .post(format!("{server}/api/v1/errors/{timeout_id}/assign"))
        .form(&[("team", "billing")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("teams are payments, search"));
    let never = client
        .post(format!("{server}/api/v1/errors/0123456789abcdef/resolve"))
        .send()
        .await
        .unwrap();
    assert_eq!(never.status(), 404);

    let get = |path: String| {
        let client = client.clone();
        let url = format!("{server}{path}");
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.text().await.unwrap()
        }
    };
    let resolved_page = get(format!("/errors/{timeout_id}?since=1h")).await;
    assert!(resolved_page.contains("data-status=\"resolved\""), "{resolved_page}");

    // It happens again after it was resolved, with a new stack trace.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    send(
        &reporter,
        vec![exception(
            now_nanos(),
            "TimeoutError",
            "upstream timed out",
            &traceback(18),
        )],
    )
    .await;
    let started = Instant::now();
    let timeout = loop {
        let listed = groups(&reporter).await;
        let timeout = group(&listed, "TimeoutError").clone();
        if timeout["triage"]["status"] == "regressed" {
            break timeout;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not regressed within 60 s: {timeout:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(timeout["triage"]["assigned_team"], "payments");
    assert_eq!(timeout["count"], 2);

    // The page says so, first seen three days ago, with the latest stack trace escaped.
    let page = get(format!("/errors/{timeout_id}?since=1h")).await;
    assert!(page.contains("data-status=\"regressed\""), "{page}");
    assert!(page.contains("Regressed: resolved "), "{page}");
    assert!(
        page.contains(&format!("<dd class=\"first-seen\">{}</dd>", minute_utc(three_days_ago))),
        "{page}"
    );
    assert!(page.contains("<dd class=\"assigned\">payments</dd>"), "{page}");
    assert!(
        page.contains("line 18, in pay") && !page.contains("line 17, in pay"),
        "the latest trace: {page}"
    );
    assert!(
        page.contains("in &lt;module&gt;") && !page.contains("<module>"),
        "escaped: {page}"
    );
    let list = get("/errors?since=1h".to_owned()).await;
    assert!(
        list.contains("<span class=\"badge regressed\">regressed</span>")
            && list.contains("<span class=\"badge ignored\">ignored</span>"),
        "{list}"
    );

    // The group page's form: back to the page with its filters; never from another site.
    let reassigned = client
        .post(format!("{server}/errors/{timeout_id}/triage?since=1h"))
        .form(&[("action", "assign"), ("team", "search")])
        .send()
        .await
        .unwrap();
    assert_eq!(reassigned.status(), 303);
    assert_eq!(
        reassigned.headers()["location"].to_str().unwrap(),
        format!("/errors/{timeout_id}?since=1h")
    );
    let forged = client
        .post(format!("{server}/errors/{timeout_id}/triage"))
        .header("origin", "https://evil.example")
        .form(&[("action", "resolve")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let back = client
        .post(format!("{server}/errors/{timeout_id}/triage?since=1h"))
        .header("origin", &server)
        .form(&[("action", "assign"), ("team", "payments")])
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303);
    assert_eq!(
        groups(&reporter)
            .await
            .iter()
            .find(|g| g["id"] == timeout_id.as_str())
            .unwrap()["triage"]["status"],
        "regressed",
        "assigning keeps the status"
    );

    // The morning digest of today, sent as it would be, to a real SMTP server.
    reporter.stored().await;
    let sink = Sink::start(tag);
    let store_line = match &store {
        Some(url) => format!("store = {url:?}"),
        None => format!("store = {:?}", reporter.store().display().to_string()),
    };
    std::fs::write(
        dir.join("digest.toml"),
        format!(
            "{store_line}\nowners = \"owners.toml\"\nbase_url = \"https://kuroko.example.com\"\n\
             [schedule]\ntime_zone = \"UTC\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"Kuroko <kuroko@example.com>\"\n\
             [digest]\nemail = [\"dev@example.com\"]\n",
            sink.port
        ),
    )
    .unwrap();
    kuroko(
        &dir,
        &[
            "report",
            "digest",
            "--send",
            "--period",
            &today,
            "--config",
            "digest.toml",
        ],
    );
    let (subject, text, html) = digest_parts(&sink);
    assert!(
        text.contains("[REGRESSED] TimeoutError: 2"),
        "{subject}: the resolved group came back:\n{text}"
    );
    assert!(text.lines().any(|line| line == "  Assigned to payments"), "{text}");
    let first_seen = minute_utc(three_days_ago).trim_end_matches(" UTC").to_owned();
    assert!(
        text.contains(&format!("  First seen {first_seen}, last seen ")),
        "first seen three days before the digest's day: {text}"
    );
    assert!(
        text.contains("; 1 regressed. 1 ignored group (1 error) not listed."),
        "{text}"
    );
    assert!(
        !text.contains("KeyError") && !html.contains("KeyError"),
        "the ignored group is left out:\n{text}"
    );
    assert!(
        text.contains(&format!("https://kuroko.example.com/errors/{timeout_id}?since=")),
        "{text}"
    );
    assert!(
        html.contains(">REGRESSED</span>") && html.contains("Assigned to payments"),
        "{html}"
    );

    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_resolved_errors_come_back_regressed_and_ignored_ones_leave_the_digest() {
    resolved_errors_come_back_regressed_and_ignored_ones_leave_the_digest("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_clickhouse_resolved_errors_come_back_regressed_and_ignored_ones_leave_the_digest() {
    let database = "kuroko_error_triage";
    drop(clickhouse_server::clickhouse(database));
    let url = clickhouse_server::url(database);
    resolved_errors_come_back_regressed_and_ignored_ones_leave_the_digest("clickhouse", Some(url)).await;
}
