//! How long the web UI takes to render its pages on a big store: the
//! overview, a feature, a transaction, the errors, the regressions and a
//! feature's dashboard over a day and a week, rendered in process (no HTTP,
//! no browser), five times each.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example ui_render_bench -- \
//!     --store /tmp/fleet.db --until 2024-01-08
//! ```
//!
//! Use a store written by `analysis_bench` (`Spec::fleet`: 2,000 series, a
//! week at minute resolution). The store is only read; nothing rolls up or
//! applies retention. `--owners FILE` replaces `tests/ui/owners.toml`, and
//! `--feature NAME` the feature page's `checkout` (a feature given by
//! owners.toml patterns cannot be filtered by the store's feature column).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use kuroko_reporter::analysis::scope::parse_time;
use kuroko_reporter::app::App;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::ui::{pages, Params};

/// Renders one page.
type Render<'a> = dyn Fn() -> Result<maud::Markup, kuroko_reporter::ui::PageError> + 'a;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let store = PathBuf::from(value("--store").context("--store PATH")?);
    let until = value("--until").context("--until DATE (the end of the store's data)")?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let owners = match value("--owners") {
        Some(path) => Owners::load(std::path::Path::new(path))?,
        None => Owners::load(&root.join("tests/ui/owners.toml"))?,
    };
    let feature = value("--feature").map_or("checkout", String::as_str);
    let app = App::new(
        Arc::new(SqliteStore::open(&store)?),
        Arc::new(owners),
        String::new(),
        None,
    );
    let now = parse_time(until, 0)?;
    for since in ["1d", "7d"] {
        let params = Params::parse(Some(&format!("since={since}")))?;
        let transaction = Params::parse(Some(&format!(
            "since={since}&service=shop-api&transaction=GET+%2Forders%2F%7Bid%7D"
        )))?;
        let dashboards = kuroko_reporter::ui::dashboards::load(&root.join("dashboards"), &app.owners);
        let dashboard = format!("feature-{feature}");
        let pages: [(&str, &Render); 6] = [
            ("overview", &|| pages::overview(&app, &params, now)),
            ("feature", &|| pages::feature(&app, feature, &params, now)),
            ("transaction", &|| pages::transaction(&app, &transaction, now)),
            ("errors", &|| pages::errors(&app, &params, now)),
            ("regressions", &|| pages::regressions(&app, &params, now)),
            ("feature dashboard", &|| {
                pages::dashboard(&app, &dashboards, &dashboard, &params, now)
            }),
        ];
        for (name, render) in pages {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..5 {
                let started = Instant::now();
                bytes = render()?.into_string().len();
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{name}, since={since}: median {:.0} ms (min {:.0}, max {:.0}) of 5, {} KiB",
                times[2],
                times[0],
                times[4],
                bytes / 1024
            );
        }
    }
    Ok(())
}
