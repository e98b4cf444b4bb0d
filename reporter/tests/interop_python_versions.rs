//! Deploys from `service.version`: the official Python OpenTelemetry SDK
//! (`tests/python/sdk_versions.py`) sends a service's request durations as
//! version 1.0.0, then, as a new process after a deploy, as 2.0.0. The
//! reporter records each version's first minute; the second is a deploy:
//! `kuroko query regressions --since-deploy` splits its windows there, and
//! every chart of time marks it: the transaction's, its feature's, and the
//! overview's trends of its service and feature. `tests/run-all.sh` installs the
//! packages; without them this test fails, saying so.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kuroko_reporter::analysis::Analysis;
use kuroko_reporter::app::App;
use kuroko_reporter::config::Config;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::deploys::Deploys;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::ui::{pages, Params};

const SENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/sdk_versions.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's opentelemetry-sdk and \
     opentelemetry-exporter-otlp-proto-http packages";

fn send(endpoint: &str) -> String {
    let output = match Command::new("python3").arg(SENDER).arg(endpoint).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 is not installed, and this test needs it: {HOW_TO_INSTALL}")
        }
        Err(error) => panic!("could not run python3 {SENDER}: {error}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!("python3 lacks the OpenTelemetry SDK packages: {HOW_TO_INSTALL}\n{stderr}");
    }
    assert!(
        output.status.success(),
        "{SENDER} {endpoint} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_service_version_is_a_deploy_on_the_chart_and_for_regressions() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-versions");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kuroko.db");
    let reporter = kuroko_reporter::serve::start(&Config {
        store: path.clone(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    })
    .await
    .unwrap();
    let endpoint = format!("http://{}", reporter.http);
    let sent = tokio::task::spawn_blocking(move || send(&endpoint)).await.unwrap();
    assert_eq!(sent.matches("version=").count(), 2, "{sent}");
    reporter.stop().await;

    // The store: both versions, 1.0.0 first seen no later than 2.0.0.
    let store = SqliteStore::open(&path).unwrap();
    let versions = store.versions().unwrap();
    let names: Vec<(&str, &str, &str)> = versions
        .iter()
        .map(|v| (v.service.as_str(), v.environment.as_str(), v.version.as_str()))
        .collect();
    assert_eq!(
        names,
        [("py-shop", "production", "1.0.0"), ("py-shop", "production", "2.0.0")],
        "{versions:?}"
    );
    let owners = Owners::empty();
    let analysis = Analysis::new(&store, &owners);
    let now = jiff::Timestamp::now().as_second() / 60;
    let scope = kuroko_reporter::analysis::Scope {
        service: Some("py-shop".into()),
        ..kuroko_reporter::analysis::Scope::window(now - 60, now + 1)
    };
    let deploy = analysis.latest_deploy(&scope).unwrap().expect("a deploy");
    assert_eq!(
        (deploy.version.as_str(), deploy.previous_version.as_str()),
        ("2.0.0", "1.0.0")
    );
    assert!((now - 5..=now).contains(&deploy.minute), "{deploy:?} at {now}");

    // `--since-deploy`: the window from the deploy on, against as long a one before.
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args([
            "query",
            "regressions",
            "--service",
            "py-shop",
            "--since-deploy",
            "--format",
            "json",
            "--store",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["deploy"]["version"], "2.0.0", "{answer:#}");
    assert_eq!(answer["scope"]["from"], deploy.minute, "{answer:#}");
    assert_eq!(answer["previous"]["to"], deploy.minute, "{answer:#}");
    // Without a service it says whose deploy it needs.
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["query", "regressions", "--since-deploy", "--store"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs `service`"));

    // The transaction's chart marks the deploy, and the page lists it.
    let owners = Owners::parse(
        "[teams.shop]\nemail = [\"shop@example.com\"]\n\n\
         [features.orders]\nteam = \"shop\"\npatterns = [{ service = \"py-shop\" }]\n",
        "owners.toml",
    )
    .unwrap();
    let app = App::new(Arc::new(store), Arc::new(owners), String::new(), None);
    let page = pages::transaction(
        &app,
        &Params::parse(Some("service=py-shop&transaction=GET%20%2Forders%2F%7Bid%7D&since=1h")).unwrap(),
        now,
    )
    .unwrap()
    .into_string();
    assert!(page.contains("data-marker=\"py-shop 2.0.0\""), "{page}");
    assert!(
        page.contains("Deployed <strong>py-shop 2.0.0</strong> (after 1.0.0)"),
        "{page}"
    );
    // So do the feature's charts (response time, throughput, error rate),
    // and the overview's trends of the service and of the feature.
    let marker = "data-marker=\"py-shop 2.0.0\"";
    let feature = pages::feature(&app, "orders", &Params::parse(Some("since=1h")).unwrap(), now)
        .unwrap()
        .into_string();
    assert_eq!(feature.matches(marker).count(), 3, "{feature}");
    let overview = pages::overview(&app, &Params::parse(Some("since=1h")).unwrap(), now)
        .unwrap()
        .into_string();
    for row in ["data-service=\"py-shop\"", "data-feature=\"orders\""] {
        let (_, rest) = overview
            .split_once(row)
            .unwrap_or_else(|| panic!("{row} in {overview}"));
        let row_html = rest.split("</tr>").next().unwrap();
        assert_eq!(row_html.matches(marker).count(), 1, "{row}: {row_html}");
    }
    // A window before the deploy marks nothing.
    let before = format!(
        "since=2h&until={}",
        jiff::Timestamp::from_second((deploy.minute - 5) * 60).unwrap()
    );
    let earlier = pages::feature(&app, "orders", &Params::parse(Some(&before)).unwrap(), now)
        .unwrap()
        .into_string();
    assert!(!earlier.contains(marker), "{earlier}");

    // The Regressions page of the service offers the deploy as the split, and uses it.
    let regressions =
        |query: &str| pages::regressions(&app, &Params::parse(Some(query)).unwrap(), now).map(|p| p.into_string());
    let offered = regressions("service=py-shop").unwrap();
    assert!(
        offered.contains("Latest deploy: <strong>py-shop 2.0.0</strong>"),
        "{offered}"
    );
    assert!(offered.contains("compare=deploy"), "{offered}");
    let split = regressions("service=py-shop&compare=deploy").unwrap();
    assert!(
        split.contains("Since the deploy of <strong>py-shop 2.0.0</strong> (after 1.0.0)"),
        "{split}"
    );
    // Without a service (the form's service cleared), the page still
    // compares, this window against the one before, and says why.
    let nobody = regressions("compare=deploy").unwrap();
    assert!(nobody.contains("Comparing since a deploy needs a service"), "{nobody}");
    assert!(!nobody.contains("Since the deploy of"), "{nobody}");
    std::fs::remove_dir_all(&dir).unwrap();
}
