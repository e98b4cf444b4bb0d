//! A store younger than the two windows compared: a new installation's
//! first Monday holds 7 days and 30 minutes. The default `kuroko query
//! regressions` (the last 7 days against the 7 before) and the weekly email
//! then have 30 minutes of baseline; they must say so and call nothing,
//! even though one transaction's 30 minutes of baseline were 50% faster
//! than its week (the old finder listed it, and most others, as regressions).
//!
//! Real parts: a SQLite store file, the `kuroko` binary (`query` and
//! `report weekly --dry-run`), its configuration and owners files.

use std::path::{Path, PathBuf};
use std::process::Command;

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, HistogramPoint, SeriesKey, Store};
use rand::{rngs::SmallRng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

const DAY: i64 = 1_440;

fn key(transaction: &str) -> SeriesKey {
    SeriesKey {
        service: "shop".into(),
        host: "shop-1".into(),
        transaction: transaction.into(),
        feature: String::new(),
        kind: "web".into(),
        environment: String::new(),
    }
}

/// A store at `dir`/kuroko.db holding the minutes `from..to`: `GET /cart`
/// at 20 ms for its first 30 minutes and 30 ms after, `GET /list` at 50 ms
/// throughout, 20 runs a minute each.
fn store(dir: &Path, from: i64, to: i64) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("kuroko.db");
    let store = SqliteStore::open(&path).unwrap();
    let mut rng = SmallRng::seed_from_u64(17);
    let mut batch = Batch::default();
    for minute in from..to {
        for (transaction, median) in [
            ("GET /cart", if minute < from + 30 { 0.020 } else { 0.030 }),
            ("GET /list", 0.050),
        ] {
            let shape = LogNormal::new(f64::ln(median), 0.4).unwrap();
            let mut histogram = Histogram::empty();
            for _ in 0..20 {
                histogram.record(shape.sample(&mut rng)).unwrap();
            }
            batch.histograms.push(HistogramPoint {
                key: key(transaction).into(),
                minute,
                histogram,
            });
        }
        if batch.histograms.len() >= 5_000 {
            store.write(&std::mem::take(&mut batch)).unwrap();
        }
    }
    store.write(&batch).unwrap();
    store.flush().unwrap();
    path
}

fn kuroko(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(args)
        .env_remove("KUROKO_STORE")
        .env_remove("KUROKO_QUERY_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kuroko {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn now_minute() -> i64 {
    jiff::Timestamp::now().as_second().div_euclid(60)
}

#[test]
fn the_default_regressions_answer_says_the_baseline_is_too_thin() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("thin-baseline-query");
    let now = now_minute();
    let path = store(&dir, now - 7 * DAY - 30, now + 1);
    let store = path.to_str().unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(&kuroko(&["query", "regressions", "--store", store, "--format", "json"])).unwrap();
    assert_eq!(answer["regressions"].as_array().map(Vec::len), Some(0), "{answer:#}");
    assert_eq!(answer["counts"]["not_judged"], 2, "{answer:#}");
    assert_eq!(answer["coverage"]["enough"], false, "{answer:#}");
    let note = answer["not_enough_baseline"].as_str().unwrap_or_default();
    assert!(note.starts_with("Not enough baseline"), "{answer:#}");
    assert!(note.contains("no regression"), "{note}");
    // The table says it too.
    let text = kuroko(&["query", "regressions", "--store", store]);
    assert!(
        text.contains("Not enough baseline: the previous window holds data in "),
        "{text}"
    );
}

#[test]
fn the_weekly_email_calls_no_regression_on_thirty_minutes_of_baseline() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("thin-baseline-weekly");
    // Last full ISO week (Monday to Monday, UTC), and 30 minutes before it.
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let monday = today
        .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        .unwrap();
    let week_start = monday.checked_sub(jiff::Span::new().days(7)).unwrap();
    let first = week_start
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second()
        / 60;
    let path = store(&dir, first - 30, first + 7 * DAY);
    let owners = dir.join("owners.toml");
    std::fs::write(
        &owners,
        "[teams.shop]\n[features.cart]\nteam = \"shop\"\npatterns = [ { service = \"shop\" } ]\n",
    )
    .unwrap();
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nowners = {:?}\n",
            path.to_str().unwrap(),
            owners.to_str().unwrap()
        ),
    )
    .unwrap();
    let week = week_start.iso_week_date();
    let period = format!("{}-W{:02}", week.year(), week.week());
    let out = dir.join("preview");
    kuroko(&[
        "report",
        "weekly",
        "--config",
        config.to_str().unwrap(),
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
        "--team",
        "shop",
        "--period",
        &period,
    ]);
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("Regressions not judged: not enough baseline."), "{text}");
    let section = text.split("\nREGRESSIONS\n").nth(1).unwrap_or_default();
    let section = section.split("\n\n").next().unwrap_or_default();
    assert!(
        section
            .trim_start()
            .starts_with("Not enough baseline: the previous window holds data in 1 of its 168 hours"),
        "{text}"
    );
    assert!(!section.contains("GET /cart"), "no regression listed: {text}");
    // Nor a change against a week the store barely holds.
    assert!(!text.contains("+33"), "{text}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Not enough baseline"), "{html}");
}
