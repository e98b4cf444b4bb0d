//! Why it got slower, on an SDK's spans (#22): the official Python
//! OpenTelemetry SDK (`tests/python/sdk_attribution.py`) sends two days of
//! traced requests to a real reporter over OTLP/HTTP; its SERVER spans become
//! runs and their CLIENT spans segments (`ingest/traces.rs`). On the second
//! day `GET /orders/{id}`'s database span `SELECT orders` takes 60 ms instead
//! of 30: the regression found must name that segment, with at least 80% of
//! the change, per traced run; `GET /search`, unchanged, is no regression
//! and claims no cause. A second service, `py-release`, is deployed between
//! the days (its resource's `service.version` 3.1.0, then 3.2.0) and its
//! `SELECT cart` grows with the new version: the cause names the segment
//! "since version 3.2.0", dated by the spans' own time though both days
//! arrive within seconds. `py-hosts` slows on one host of three (that host
//! is named), and `py-mix`'s feature slows only because its slow route's
//! share grew (put on the mix). `tests/run-all.sh` installs the packages; without
//! them this test fails, saying so.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kuroko_reporter::analysis::attribution::{Axis, Place};
use kuroko_reporter::analysis::regressions::Group;
use kuroko_reporter::analysis::stats::RegressionRule;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::config::Config;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::sqlite::SqliteStore;

const SENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/sdk_attribution.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-sdk and \
     opentelemetry-exporter-otlp-proto-http packages";

fn now_minute() -> i64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60) as i64
}

/// Runs the sender against `endpoint` for the two days before `end_minute`;
/// the SERVER spans it sent.
fn send(endpoint: &str, end_minute: i64) -> u64 {
    let output = match Command::new("python3")
        .arg(SENDER)
        .arg(endpoint)
        .arg(end_minute.to_string())
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run python3 {SENDER}: {error}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!("python3 lacks the OpenTelemetry SDK packages: {HOW_TO_INSTALL}\n{stderr}");
    }
    assert!(output.status.success(), "the sender failed:\n{stdout}\n{stderr}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("runs="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no runs= line:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_grown_database_span_is_named_as_the_cause() {
    let dir = std::env::temp_dir().join(format!("kuroko-interop-python-attribution-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kuroko.db");
    let mut config = Config {
        store: path.clone(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.journal.dir = dir.join("journal");
    let reporter = kuroko_reporter::serve::start(&config).await.unwrap();
    // Two whole days, ending on the hour just begun.
    let end = now_minute() / 60 * 60;
    let endpoint = format!("http://{}", reporter.http);
    let sent = tokio::task::spawn_blocking(move || send(&endpoint, end)).await.unwrap();
    assert_eq!(
        sent,
        48 * (2 * 15 + 15 + 3 * 10 + 20),
        "an hour: py-attr's two routes, py-release's, py-hosts' three hosts, py-mix's"
    );
    reporter.stop().await;

    let store = SqliteStore::open(Path::new(&path)).unwrap();
    let owners = Owners::empty();
    let analysis = Analysis::new(&store, &owners);
    let scope = Scope {
        service: Some("py-attr".into()),
        ..Scope::window(end - 1_440, end)
    };
    let mut comparison = analysis
        .compare(&scope, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    let names: Vec<String> = comparison.regressions.iter().map(|r| r.label()).collect();
    assert_eq!(names, ["py-attr GET /orders/{id}"], "the planted regression alone");
    assert_eq!(comparison.unchanged.len(), 1, "GET /search is judged unchanged");
    analysis
        .attribute_rows(&scope, &scope.previous(), &mut comparison.regressions)
        .unwrap();
    let row = &comparison.regressions[0];
    let a = row.attribution.as_deref().unwrap();
    assert!(a.traced, "the segments are per traced run: {a:?}");
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(
        (cause.part.axis, cause.part.kind.as_str()),
        (Axis::Segment, "database"),
        "{}",
        a.summary
    );
    assert_eq!(cause.part.name, "SELECT orders", "{}", a.summary);
    assert!(cause.part.share >= 0.8, "{}", a.summary);
    assert_eq!(cause.place, Place::OnlyHost("py-host-1".into()), "{}", a.summary);
    // The partner call and the own code did not move.
    let partner = a.segments.iter().find(|p| p.name == "GET partner-api").unwrap();
    assert_eq!(partner.kind, "external");
    assert!(partner.share.abs() < 0.1, "{:?}", a.segments);

    let mut search = row.clone();
    search.transaction = "GET /search".into();
    let quiet = analysis.attribute(&scope, &scope.previous(), &search).unwrap();
    assert!(quiet.cause.is_none(), "{}", quiet.summary);
    eprintln!("GET /orders/{{id}}: {}\nGET /search: {}", a.summary, quiet.summary);

    // py-release slowed with its new version: named, with the version.
    let scope = Scope {
        service: Some("py-release".into()),
        ..Scope::window(end - 1_440, end)
    };
    let mut comparison = analysis
        .compare(&scope, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    let names: Vec<String> = comparison.regressions.iter().map(|r| r.label()).collect();
    assert_eq!(names, ["py-release GET /cart"]);
    analysis
        .attribute_rows(&scope, &scope.previous(), &mut comparison.regressions)
        .unwrap();
    let a = comparison.regressions[0].attribution.as_deref().unwrap();
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(cause.part.name, "SELECT cart", "{}", a.summary);
    assert!(cause.part.share >= 0.8, "{}", a.summary);
    assert_eq!(cause.since.as_deref(), Some("3.2.0"), "{}", a.summary);
    let release = a.release.as_ref().expect("two versions in the windows");
    assert_eq!(
        (release.previous_version.as_str(), release.part.name.as_str()),
        ("3.1.0", "3.2.0")
    );
    // Dated by its first span (in the second day's first minutes), not by
    // its arrival (now, a day later).
    assert!(
        (end - 1_440..end - 1_440 + 5).contains(&release.minute),
        "deployed at {} (the second day starts at {})",
        release.minute,
        end - 1_440
    );
    assert!(a.summary.contains("since version 3.2.0"), "{}", a.summary);
    eprintln!("py-release GET /cart: {}", a.summary);

    // py-hosts: one host of three slower: that host is named.
    let scope = Scope {
        service: Some("py-hosts".into()),
        ..Scope::window(end - 1_440, end)
    };
    let mut comparison = analysis
        .compare(&scope, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    let names: Vec<String> = comparison.regressions.iter().map(|r| r.label()).collect();
    assert_eq!(names, ["py-hosts GET /items"]);
    analysis
        .attribute_rows(&scope, &scope.previous(), &mut comparison.regressions)
        .unwrap();
    let a = comparison.regressions[0].attribution.as_deref().unwrap();
    assert!(a.cause.is_some(), "no cause: {}", a.summary);
    let web3 = a.hosts.iter().find(|p| p.name == "py-web-3").expect("py-web-3's part");
    assert!(web3.share >= 0.8, "py-web-3 carries the change: {:?}", a.hosts);
    assert!(a.summary.ends_with("on host py-web-3"), "{}", a.summary);
    eprintln!("py-hosts GET /items: {}", a.summary);

    // py-mix: neither route changed, the slow one's share grew: the
    // feature's regression is put on the mix.
    let owners = Owners::parse(
        "[teams.shop]\nemail = [\"shop@example.com\"]\n[features.basket]\nteam = \"shop\"\n\
         patterns = [{ service = \"py-mix\" }]\n",
        "owners.toml",
    )
    .unwrap();
    let analysis = Analysis::new(&store, &owners);
    let scope = Scope {
        service: Some("py-mix".into()),
        ..Scope::window(end - 1_440, end)
    };
    let routes = analysis
        .compare(&scope, &RegressionRule::default(), Group::Transaction)
        .unwrap();
    assert!(
        routes.regressions.is_empty(),
        "neither route got slower: {:?}",
        routes.regressions
    );
    let mut features = analysis
        .compare(&scope, &RegressionRule::default(), Group::Feature)
        .unwrap();
    let names: Vec<Option<String>> = features.regressions.iter().map(|r| r.feature.clone()).collect();
    assert_eq!(names, [Some("basket".to_owned())]);
    analysis
        .attribute_rows(&scope, &scope.previous(), &mut features.regressions)
        .unwrap();
    let a = features.regressions[0].attribution.as_deref().unwrap();
    let cause = a.cause.as_ref().unwrap_or_else(|| panic!("no cause: {}", a.summary));
    assert_eq!(
        (cause.part.axis, cause.part.name.as_str()),
        (Axis::Mix, "POST /basket/slow"),
        "{}",
        a.summary
    );
    assert!(cause.part.share >= 0.8, "{}", a.summary);
    eprintln!("feature basket: {}", a.summary);
    let _ = std::fs::remove_dir_all(dir);
}
