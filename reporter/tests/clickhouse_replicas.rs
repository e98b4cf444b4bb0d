//! Two reporter replicas on one ClickHouse (the proof of issue 9): two real
//! `kuroko serve` processes share `clickhouse://…/kuroko_replicas`, six
//! in-process agents export to them (half to each), and both schedulers run.
//!
//! - Everything the six agents recorded is in the store exactly once, and
//!   two connections (as each replica opens one) give the same answers.
//! - The weekly report goes out once per team, and the digest once, to a real
//!   SMTP sink (`tests/python/smtp_sink.py`), although both replicas' schedulers
//!   found them due at the same minute: the delivery ledger in ClickHouse lets
//!   one replica claim each delivery.
//!
//! The schedule is honest: `weekly` and `digest` are set to the next whole
//! minute (UTC), so both replicas' once-a-minute passes, which wake at the
//! start of each minute, find the reports due at the same moment. Nothing is
//! seeded: a target never sent anything gets the period whose time has just
//! come. The test therefore runs for up to about 80 seconds.
//!
//! Needs Debian's `clickhouse-server` and python3's `aiosmtpd`
//! (`tests/run-all.sh` installs both); without them it fails, saying so.

#[path = "support/smtp_sink.rs"]
mod smtp_sink;
use smtp_sink::Sink;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use kuroko_agent::export::{ExportConfig, Protocol};
use kuroko_agent::{Agent, Outcome, TransactionSpec};
use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::state::{DeliveryState, LedgerStatus};
use kuroko_reporter::store::{Filter, Store};

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;

const DATABASE: &str = "kuroko_replicas";
const AGENTS: usize = 6;

/// One `kuroko serve` process, killed when dropped.
struct Replica {
    child: Child,
    grpc: String,
    http: String,
    /// Its log (stderr), line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn start(dir: &Path, name: &str, config: &str) -> Replica {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .args(["serve", "--config"])
            .arg(&path)
            .env(
                "RUST_LOG",
                "info,kuroko_reporter::serve=debug,kuroko_reporter::deliver=debug",
            )
            .env("HOSTNAME", name)
            // Each replica keeps its own journal.
            .env("KUROKO_JOURNAL_DIR", dir.join(format!("{name}-journal")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = |label: &str| {
            line.split(label)
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .unwrap_or_else(|| panic!("{name} did not start: {line:?}\n{}", log.lock().unwrap().join("\n")))
                .trim()
                .to_owned()
        };
        let (grpc, http) = (address("OTLP/gRPC on "), address("OTLP/HTTP on "));
        Replica { child, grpc, http, log }
    }

    /// Bytes its journal holds not yet sent to ClickHouse (`/metrics`).
    async fn waiting_bytes(&self) -> f64 {
        kuroko_serve::self_metric(&self.http, "kuroko_reporter_journal_waiting_bytes").await
    }

    /// The instants of the delivery passes it has finished.
    fn passes(&self) -> Vec<Timestamp> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("delivery pass finished"))
            .filter_map(|line| line.split("at=").nth(1)?.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weekly = "DAY HH:MM"` and `digest = "HH:MM"` for the instant `at` (UTC).
fn slots(at: Timestamp) -> (String, String) {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    let time = utc.strftime("%H:%M").to_string();
    let day = utc.strftime("%a").to_string().to_uppercase();
    (format!("{day} {time}"), time)
}

/// Runs of `GET /cards/{id}` and `POST /checkout` agent `i` records.
fn runs(i: usize) -> (u64, u64) {
    (100 + 10 * i as u64, 7 + i as u64)
}

fn now_minute() -> i64 {
    Timestamp::now().as_second() / 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_data_and_send_each_report_once() {
    let dir = std::env::temp_dir().join(format!("kuroko-replicas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    drop(
        tokio::task::spawn_blocking(|| clickhouse_server::clickhouse(DATABASE))
            .await
            .unwrap(),
    );
    let sink = Sink::start_in(dir.join("mail"));

    // The next whole minute, unless it is too close for both replicas to start first.
    let now = Timestamp::now();
    let mut due = Timestamp::from_second((now.as_second() / 60 + 1) * 60).unwrap();
    if due.duration_since(now).as_secs() < 15 {
        due = due.checked_add(1.minute()).unwrap();
    }
    let (weekly, digest) = slots(due);
    std::fs::write(
        dir.join("owners.toml"),
        r#"
[teams.payments]
email = ["payments@example.com"]

[teams.search]
email = ["search@example.com"]

[features.checkout]
team = "payments"
patterns = [{ service = "shop", transaction = "POST /checkout" }]

[features.cards]
team = "search"
patterns = [{ service = "shop", transaction = "GET /cards/{id}" }]
"#,
    )
    .unwrap();
    let config = format!(
        r#"
store = "{store}"
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
owners = "{owners}"

[schedule]
time_zone = "UTC"
weekly = "{weekly}"
digest = "{digest}"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Kuroko <kuroko@example.com>"

[digest]
email = ["dev@example.com"]
"#,
        store = clickhouse_server::url(DATABASE),
        owners = dir.join("owners.toml").display(),
        port = sink.port,
    );
    let replicas = [
        Replica::start(&dir, "replica-a", &config),
        Replica::start(&dir, "replica-b", &config),
    ];

    // Six agents, half to each replica, over gRPC and HTTP.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..AGENTS {
        let replica = &replicas[i % 2];
        let (protocol, endpoint) = if i % 4 < 2 {
            (Protocol::Grpc, &replica.grpc)
        } else {
            (Protocol::HttpProtobuf, &replica.http)
        };
        let host = format!("web-{i}");
        let agent = Agent::default();
        let exporter = agent
            .export(
                ExportConfig::default()
                    .with_protocol(protocol)
                    .with_endpoint(format!("http://{endpoint}"))
                    .with_interval(Duration::from_millis(200))
                    .with_service_name("shop")
                    .with_host_name(host.clone()),
            )
            .unwrap();
        let cards = agent.register(TransactionSpec::web("GET", "/cards/{id}").feature("cards"));
        let checkout = agent.register(TransactionSpec::web("POST", "/checkout").feature("checkout"));
        let (card_runs, checkout_runs) = runs(i);
        for n in 0..card_runs {
            cards.record_nanos(1_000_000 + n * 50_000, Outcome::Status(200));
        }
        for n in 0..checkout_runs {
            checkout.record_nanos(20_000_000 + n * 1_000_000, Outcome::Status(201));
        }
        exporter.shutdown().await;
        expected.insert((host.clone(), "GET /cards/{id}".into()), card_runs);
        expected.insert((host, "POST /checkout".into()), checkout_runs);
    }

    // Acknowledged means journaled: wait until both replicas have sent
    // their journals to ClickHouse.
    for replica in &replicas {
        let started = Instant::now();
        while replica.waiting_bytes().await > 0.0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "a replica's journal was not sent within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // What is stored, read through two connections as the two replicas read it.
    let window = (now_minute() - 10, now_minute() + 10);
    let answers = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| {
                let view = ClickHouseStore::connect(&clickhouse_server::url(DATABASE)).unwrap();
                let histograms = view.histograms(&Filter::default(), window.0, window.1).unwrap();
                let outcomes = view
                    .counters(&Filter::default(), "kuroko.transaction.outcomes", window.0, window.1)
                    .unwrap();
                let counts: BTreeMap<(String, String), u64> = histograms
                    .iter()
                    .map(|(key, h)| ((key.host.clone(), key.transaction.clone()), h.count))
                    .collect();
                let outcome_total: f64 = outcomes.iter().map(|(_, _, v)| v).sum();
                (counts, outcome_total)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let runs_total: u64 = expected.values().sum();
    for (counts, outcome_total) in &answers {
        assert_eq!(counts, &expected, "every agent's runs, each stored once");
        assert_eq!(*outcome_total, runs_total as f64, "outcome counters, each stored once");
    }

    // Both schedulers run their pass at the due minute; wait for both to finish it.
    let started = Instant::now();
    let limit = Duration::from_secs(due.duration_since(Timestamp::now()).as_secs().max(0) as u64 + 90);
    while !replicas.iter().all(|r| r.passes().iter().any(|&at| at >= due)) {
        assert!(
            started.elapsed() < limit,
            "the replicas did not finish their delivery pass at {due}:\n{}\n---\n{}",
            replicas[0].log.lock().unwrap().join("\n"),
            replicas[1].log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        sink.recipients(),
        ["dev@example.com", "payments@example.com", "search@example.com"],
        "one weekly report per team and one digest, although two replicas found them due"
    );

    // The ledger agrees: one sent row per delivery, each by one replica.
    let ledger = tokio::task::spawn_blocking(|| {
        ClickHouseStore::connect(&clickhouse_server::url(DATABASE))
            .unwrap()
            .ledger(0)
            .unwrap()
    })
    .await
    .unwrap();
    let mut sent: Vec<(String, String)> = ledger
        .iter()
        .filter(|e| e.status == LedgerStatus::Sent)
        .map(|e| (e.kind.clone(), e.target.clone()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("digest".to_owned(), "company:email".to_owned()),
            ("weekly".to_owned(), "payments:email".to_owned()),
            ("weekly".to_owned(), "search:email".to_owned()),
        ]
    );
    let claims = clickhouse_server::query(&format!(
        "SELECT target, count() FROM {DATABASE}.delivery_ledger WHERE event = 'claim' GROUP BY target ORDER BY target"
    ))
    .unwrap();
    let winners: Vec<&str> = ledger.iter().map(|e| e.holder.as_str()).collect();
    println!("claims made per target (both replicas when they raced):\n{claims}winners: {winners:?}");
    drop(replicas);
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
}
