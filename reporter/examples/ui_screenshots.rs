//! Screenshots of the web UI, for the README: writes two weeks of synthetic
//! data (`Spec::small`, ending now), starts the reporter on it with the
//! synthetic fleet's owners (`tests/ui/owners.toml`) and the repository's
//! dashboards, and has headless Chromium (Debian's `chromium`) save a PNG of
//! each page.
//!
//! ```text
//! cargo run -p kuroko-reporter --example ui_screenshots                # PNGs into docs/screenshots/
//! cargo run -p kuroko-reporter --example ui_screenshots -- OUT_DIR
//! cargo run -p kuroko-reporter --example ui_screenshots -- --serve     # just serve, to look around
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use kuroko_reporter::config::Config;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::synthetic::{self, Spec};

/// The pages shot, as (file name, path and query).
const PAGES: [(&str, &str); 7] = [
    ("overview", "/?since=1d"),
    ("feature", "/features/checkout?since=7d"),
    (
        "transaction",
        "/transactions?since=1d&service=shop-api&transaction=GET+%2Freports%2F%7Bid%7D%2Fexport",
    ),
    ("errors", "/errors?since=1d"),
    ("regressions", "/regressions?since=7d"),
    ("dashboards", "/dashboards"),
    ("dashboard", "/dashboards/checkout"),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve_only = args.iter().any(|a| a == "--serve");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the reporter lives in the workspace")?
        .to_owned();
    let out = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| root.join("docs/screenshots"), PathBuf::from);

    let dir = std::env::temp_dir().join(format!("kuroko-ui-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store_path = dir.join("kuroko.db");
    eprintln!("writing two weeks of synthetic data to {}", store_path.display());
    write_demo_store(&store_path)?;

    let config = Config {
        store: store_path,
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: if serve_only { "127.0.0.1:8080" } else { "127.0.0.1:0" }.parse()?,
        owners: Some(root.join("tests/ui/owners.toml")),
        dashboards: root.join("dashboards"),
        ..Config::default()
    };
    let running = kuroko_reporter::serve::start(&config).await?;
    let base = format!("http://{}", running.http);
    if serve_only {
        println!("the web UI is on {base}/ ; Ctrl-C stops it");
        tokio::signal::ctrl_c().await?;
    } else {
        std::fs::create_dir_all(&out)?;
        for (name, page) in PAGES {
            let file = out.join(format!("{name}.png"));
            screenshot(&format!("{base}{page}"), &file, &dir)?;
            println!("{}", file.display());
        }
    }
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Two weeks of `Spec::small` ending about now, rolled into hours and days.
fn write_demo_store(path: &Path) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_second() / 60;
    let start = (now - 14 * 1_440).div_euclid(60) * 60;
    let store = SqliteStore::open(path)?;
    let spec = Spec::small(start);
    synthetic::write_to(&store, &spec, |_, _| {})?;
    store.flush()?;
    store.roller(Retention::default())?.run(now)?;
    Ok(())
}

/// Saves a PNG of `url` with headless Chromium.
fn screenshot(url: &str, file: &Path, scratch: &Path) -> anyhow::Result<()> {
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,860",
            // Nothing in the background reaches for the network.
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-domain-reliability",
            "--no-pings",
        ])
        .arg(format!("--user-data-dir={}", scratch.join("chromium").display()))
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running chromium (apt-get install chromium)")?;
    anyhow::ensure!(status.success(), "chromium failed on {url}: {status}");
    Ok(())
}
