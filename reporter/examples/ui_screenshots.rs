//! Screenshots of the web UI, for the README, taken from the demo itself:
//! runs `kuroko demo` (its synthetic past, the reporter and its live fleet)
//! in a folder of its own, lets the fleet export for a while, then has
//! headless Chromium (Debian's `chromium`) save a PNG of each page the
//! README shows: the overview (the demo's performance problem, its N+1
//! queries, first), the regressing transaction (its p95 after the deploy
//! that began it, marked on its chart) and the Regressions page (it
//! first). The demo stops by itself once they are taken.
//!
//! ```text
//! cargo run -p kuroko-reporter --example ui_screenshots                # PNGs into docs/screenshots/
//! cargo run -p kuroko-reporter --example ui_screenshots -- OUT_DIR
//! cargo run -p kuroko-reporter --example ui_screenshots -- --serve     # just the demo on port 8080, to look around
//! ```

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use kuroko_reporter::demo;

/// The pages shot, as (file name, path and query).
const PAGES: [(&str, &str); 3] = [
    ("overview", "/?since=1d"),
    (
        "transaction",
        "/transactions?since=10d&service=shop-api&transaction=GET+%2Fproducts%2F%7Bid%7D",
    ),
    ("regressions", "/regressions?since=7d"),
];

/// How long the live fleet exports before the screenshots: its kept traces
/// and this minute's numbers are on the pages by then.
const SETTLE: Duration = Duration::from_secs(90);
/// How long the demo runs once ready: the settling, the screenshots, and
/// a margin.
const DEMO_MINUTES: f64 = 3.0;

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
    let options = demo::Options {
        dir: dir.join("demo"),
        port: if serve_only { 8080 } else { 0 },
        minutes: (!serve_only).then_some(DEMO_MINUTES),
        export_interval: Duration::from_secs(5),
        program: "kuroko".to_owned(),
    };
    let running = {
        let options = options.clone();
        tokio::spawn(async move { demo::run(&options).await })
    };
    if serve_only {
        running.await??;
        return Ok(());
    }
    let http = ready(&options.dir.join("kuroko.toml"), Duration::from_secs(600))?;
    eprintln!("the demo is ready on http://{http}/; letting its fleet export for {SETTLE:?}");
    tokio::time::sleep(SETTLE).await;
    std::fs::create_dir_all(&out)?;
    for (name, page) in PAGES {
        let file = out.join(format!("{name}.png"));
        let (url, scratch) = (format!("http://{http}{page}"), dir.clone());
        tokio::task::spawn_blocking(move || screenshot(&url, &file, &scratch)).await??;
        println!("{}", out.join(format!("{name}.png")).display());
    }
    eprintln!("waiting for the demo to stop by itself ({DEMO_MINUTES} minutes after it was ready)");
    running.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The demo's web UI address, once it answers: read from the `kuroko.toml`
/// it writes first, then waited for while it backfills its past.
fn ready(config: &Path, within: Duration) -> anyhow::Result<SocketAddr> {
    let start = Instant::now();
    let address = loop {
        let listen = std::fs::read_to_string(config).ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("http_listen = "))
                .and_then(|value| value.trim_matches('"').parse::<SocketAddr>().ok())
        });
        if let Some(address) = listen {
            break address;
        }
        anyhow::ensure!(start.elapsed() < within, "the demo wrote no {}", config.display());
        std::thread::sleep(Duration::from_millis(200));
    };
    while TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
        anyhow::ensure!(
            start.elapsed() < within,
            "the demo's web UI never answered on {address}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(address)
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
