//! The whole path, run as a user runs it: `kuroko serve`, two instrumented
//! services (the agent's axum example) exporting OTLP from their own
//! processes under their own traffic, then the questions (`kuroko query`),
//! the web UI, the weekly email at a real SMTP server and the morning digest
//! at a chat webhook, all on loopback.
//!
//! The example service plants what there is to find: `POST /cards/{id}/scan`
//! is slow, `POST /payments` fails one time in ten (`PaymentDeclined`), and
//! with `--regress-after` `GET /cards/{id}`'s database query gets twice as
//! slow part-way through the run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kuroko_e2e::{example, kuroko, output, serve, workspace_root, Running};
use kuroko_reporter::format;
use serde_json::Value;

/// Seconds of traffic before `GET /cards/{id}` regresses: over a minute, so
/// that at least part of a minute before the switch's own holds only the
/// normal latency.
const REGRESS_AFTER: u64 = 75;
/// Seconds each service runs: well into the minute after the switch's.
const RUN_FOR: u64 = 150;

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn rfc3339(minute: u64) -> String {
    jiff::Timestamp::from_second((minute * 60) as i64).unwrap().to_string()
}

/// The SMTP server on loopback (`tests/python/smtp_sink.py`, aiosmtpd).
struct Sink {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sink {
    fn start(dir: &Path) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/python/smtp_sink.py"))
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (tests/run-all.sh installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("the SMTP sink did not start (is aiosmtpd installed? tests/run-all.sh installs it): {line:?}")
            });
        Sink {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    /// Every message received: (recipients, raw message).
    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        (1..)
            .map_while(|n| {
                let recipients = std::fs::read_to_string(self.dir.join(format!("{n}.rcpt"))).ok()?;
                let raw = std::fs::read(self.dir.join(format!("{n}.eml"))).ok()?;
                Some((recipients.trim().to_owned(), raw))
            })
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chat webhook receiver on loopback: every JSON body posted.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let posts: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

/// The text part of a MIME message.
fn text_part(raw: &[u8]) -> String {
    fn find(part: &mailparse::ParsedMail<'_>) -> Option<String> {
        if part.ctype.mimetype == "text/plain" {
            return part.get_body().ok();
        }
        part.subparts.iter().find_map(find)
    }
    find(&mailparse::parse_mail(raw).unwrap()).expect("a text/plain part")
}

/// `kuroko query <args> --server <reporter> --format json`, parsed.
fn query(server: &str, args: &[&str]) -> Value {
    let mut all = vec!["query"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", server, "--format", "json"]);
    serde_json::from_str(&output(&kuroko(), &all, &[])).expect("kuroko query prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_is_recorded_questioned_shown_and_reported() {
    let dir = std::env::temp_dir().join(format!("kuroko-whole-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sink = Sink::start(&dir.join("mail"));
    let (hook, posts) = webhook().await;

    std::fs::write(
        dir.join("owners.toml"),
        r#"
[teams.cards]
email = ["cards@example.com"]

[teams.payments]
email = ["payments@example.com"]

[features.cards]
team = "cards"

[features.card-scan]
team = "cards"

[features.payments]
team = "payments"
"#,
    )
    .unwrap();
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            r#"
store = "{store}"
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
owners = "{owners}"
base_url = "http://kuroko.example"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Kuroko <kuroko@example.com>"

[digest]
webhook_env = "KUROKO_E2E_WEBHOOK"

# This test sends the reports by hand: the reporter's own schedule (by
# default Monday 08:00 and daily 08:30 UTC) would otherwise add last week's
# report, or yesterday's digest, when the test runs past those times.
[schedule]
weekly = "off"
digest = "off"
"#,
            store = dir.join("kuroko.db").display(),
            owners = dir.join("owners.toml").display(),
            port = sink.port,
        ),
    )
    .unwrap();
    // The reporter, as `kuroko serve` is run.
    let (reporter, server) = serve(&config);
    let config = config.to_str().unwrap().to_owned();

    // Two hosts of one service, each its own process exporting every 5 s.
    let endpoint = server.clone();
    let start = |host: &str| {
        let attributes = format!("host.name={host},deployment.environment.name=production");
        Running::start_with(
            &example("axum_service"),
            &[
                "--addr",
                "127.0.0.1:0",
                "--for",
                &RUN_FOR.to_string(),
                "--export-every",
                "5",
                "--regress-after",
                &REGRESS_AFTER.to_string(),
            ],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_SERVICE_NAME", "cards-api"),
                ("OTEL_RESOURCE_ATTRIBUTES", attributes.as_str()),
            ],
        )
    };
    let mut services = [start("web-1"), start("web-2")];
    let mut started = Vec::new();
    for service in &mut services {
        service.wait_for("listening on", Duration::from_secs(60));
        started.push(unix_seconds());
    }
    // The first minute fully regressed on both hosts, and the ones before.
    let regressed_at = started.iter().max().unwrap() + REGRESS_AFTER;
    let (first_minute, switch_minute) = (started.iter().min().unwrap() / 60, regressed_at / 60);
    for service in services {
        service.finish(Duration::from_secs(RUN_FOR + 120));
    }

    // The slow endpoint, where the time goes.
    let window = ["--since", "15m"];
    let slowest = query(&server, &[&["slowest"][..], &window[..]].concat());
    let rows = slowest["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["transaction"], "POST /cards/{id}/scan", "{slowest:#}");
    let hosts_runs: f64 = rows.iter().map(|r| r["count"].as_f64().unwrap()).sum();
    assert!(hosts_runs > 1_000.0, "both hosts' traffic arrived: {hosts_runs} runs");

    // The regression: the minute after the switch against the minutes
    // before it. One minute on each side is too little evidence for the
    // hourly-block method (docs/regressions.md: four blocks a side at the
    // least), so nothing is called and the answer says why; the slowdown
    // itself is in the numbers: the minute after the switch against the
    // ones before it, per transaction.
    let (since, until) = (rfc3339(switch_minute + 1), rfc3339(switch_minute + 2));
    let (baseline_since, baseline_until) = (rfc3339(first_minute), rfc3339(switch_minute));
    let regressions = query(
        &server,
        &[
            "regressions",
            "--since",
            &since,
            "--until",
            &until,
            "--baseline-since",
            &baseline_since,
            "--baseline-until",
            &baseline_until,
        ],
    );
    assert!(
        regressions["not_enough_baseline"]
            .as_str()
            .is_some_and(|why| why.starts_with("Not enough baseline")),
        "one minute against one: not enough to judge, and said: {regressions:#}"
    );
    assert_eq!(
        regressions["regressions"].as_array().map(Vec::len),
        Some(0),
        "{regressions:#}"
    );
    let mean_of = |from: &str, to: &str, transaction: &str| -> f64 {
        let slowest = query(&server, &["slowest", "--since", from, "--until", to, "--limit", "50"]);
        let rows = slowest["rows"].as_array().expect("rows");
        let row = rows
            .iter()
            .find(|r| r["transaction"] == transaction)
            .unwrap_or_else(|| panic!("{transaction} between {from} and {to}: {slowest:#}"));
        row["mean"].as_f64().expect("mean")
    };
    let (before, after) = (
        mean_of(&baseline_since, &baseline_until, "GET /cards/{id}"),
        mean_of(&since, &until, "GET /cards/{id}"),
    );
    assert!(
        after > 1.3 * before,
        "GET /cards/{{id}} slowed by the planted regression: mean {before} s before, {after} s after"
    );
    let (before, after) = (
        mean_of(&baseline_since, &baseline_until, "POST /payments"),
        mean_of(&since, &until, "POST /payments"),
    );
    assert!(
        (after / before - 1.0).abs() < 0.3,
        "no change there: POST /payments mean {before} s before, {after} s after"
    );

    // The web UI's feature pages show them.
    let client = reqwest::Client::new();
    let page = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(path).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let scan = page(format!("{server}/features/card-scan?since=15m")).await;
    assert!(
        scan.contains("POST /cards/{id}/scan"),
        "the feature page lists the slow endpoint"
    );
    let cards = page(format!("{server}/features/cards?since={since}&until={until}")).await;
    assert!(
        cards.contains("GET /cards/{id}"),
        "the feature page lists the regressed endpoint"
    );

    // The weekly report for this week, to each team, with the numbers the
    // analysis gives.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let week = today.iso_week_date();
    let period = format!("{}-W{:02}", week.year(), week.week());
    let monday = week.first_of_week().unwrap().date();
    let (week_since, week_until) = (
        format!("{monday}"),
        format!("{}", monday.checked_add(jiff::ToSpan::days(7)).unwrap()),
    );
    let env = [("KUROKO_E2E_WEBHOOK", hook.as_str())];
    output(
        &kuroko(),
        &["report", "weekly", "--send", "--config", &config, "--period", &period],
        &env,
    );
    let mail = sink.messages();
    let to: Vec<&str> = {
        let mut to: Vec<&str> = mail.iter().map(|(r, _)| r.as_str()).collect();
        to.sort_unstable();
        to
    };
    assert_eq!(to, ["cards@example.com", "payments@example.com"], "one email per team");
    let features = query(
        &server,
        &[
            "slowest",
            "--group",
            "feature",
            "--since",
            &week_since,
            "--until",
            &week_until,
        ],
    );
    for (team, feature) in [("cards@example.com", "card-scan"), ("payments@example.com", "payments")] {
        let row = features["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["feature"] == feature)
            .unwrap_or_else(|| panic!("{feature} in {features:#}"));
        let text = text_part(&mail.iter().find(|(r, _)| r == team).unwrap().1);
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("- {feature}:")))
            .unwrap_or_else(|| panic!("{feature} in {team}'s report:\n{text}"));
        for number in [row["mean"].as_f64().unwrap(), row["p95"].as_f64().unwrap()] {
            assert!(
                line.contains(&format::duration(number)),
                "{line} has {}",
                format::duration(number)
            );
        }
    }

    // The morning digest (today's, so there is something in it) at the webhook.
    output(
        &kuroko(),
        &[
            "report",
            "digest",
            "--send",
            "--config",
            &config,
            "--period",
            &today.to_string(),
        ],
        &env,
    );
    let posted = posts.lock().unwrap().clone();
    let digest = serde_json::to_string(&posted).unwrap();
    assert!(!posted.is_empty() && digest.contains("PaymentDeclined"), "{digest}");
    assert!(
        digest.contains("web-1") && digest.contains("web-2"),
        "servers named: {digest}"
    );

    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}
