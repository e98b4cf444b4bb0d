//! Times a full regression pass: every transaction of a big store judged,
//! this week against last (median of 3 passes), and prints what it found.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example regression_bench -- --store PATH [--fill-days N] [--days N]
//! ```
//!
//! The store is the `analysis_bench`'s (`Spec::fleet`: 2,000 series, one week
//! at minute resolution). When it holds two weeks, the pass is the last 7
//! days against the 7 before; with one week, the last 3.5 days against the 3.5
//! before, and it says so; `--days N` judges the last N days against the N
//! before instead (under 5, the pass also reads the 7 days before the
//! baseline for the variance of whole days). An empty store is first filled with `Spec::fleet`
//! over `--fill-days` days (default 14, so that a week can be compared with a
//! week), ending at the last full hour, with progress on stderr. The store is
//! rolled up to hours and days first, as `kuroko serve` does in the
//! background (every minute is kept).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kuroko_reporter::analysis::regressions::{Comparison, Group};
use kuroko_reporter::analysis::stats::RegressionRule;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Filter, Store};
use kuroko_reporter::synthetic::{write_to, Spec};

const DAY: i64 = 1_440;

fn main() -> anyhow::Result<()> {
    let mut store_path = None;
    let mut fill_days = 14;
    let mut days: Option<i64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => store_path = args.next(),
            "--fill-days" => fill_days = args.next().context("--fill-days needs a number")?.parse()?,
            "--days" => days = Some(args.next().context("--days needs a number")?.parse()?),
            other => anyhow::bail!("unknown argument {other:?}: --store PATH [--fill-days N] [--days N]"),
        }
    }
    let path = store_path.context("--store PATH is required")?;
    let store = SqliteStore::open(path.as_ref()).with_context(|| format!("opening {path}"))?;
    let now = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 60) as i64;

    if store.series()?.is_empty() {
        let end = now.div_euclid(60) * 60;
        let spec = Spec {
            minutes: fill_days * DAY,
            ..Spec::fleet(end - fill_days * DAY)
        };
        eprintln!("{path} is empty: writing Spec::fleet over {fill_days} days");
        let started = Instant::now();
        let mut last = Instant::now();
        write_to(&store, &spec, |done, total| {
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                eprintln!("  {done}/{total} batches, {:.0} s", started.elapsed().as_secs_f64());
            }
        })?;
        store.flush()?;
        eprintln!("written in {:.0} s", started.elapsed().as_secs_f64());
    }

    // `kuroko serve` rolls minutes into hours and days in the background, and
    // reads of whole days use them: roll up first (keeping every minute, so
    // that the other benchmarks' store is left as it was, only rolled).
    let started = Instant::now();
    let keep_all = Retention {
        minute_days: 100_000,
        hour_days: 100_000,
        day_days: 100_000,
    };
    let mut roller = store.roller(keep_all)?;
    let pass = roller.run(now)?;
    // A store rolled by an older build gets its roll-ups across hosts filled
    // in a few periods per pass, as `kuroko serve` would over its first passes.
    let mut backfilled = pass.backfilled;
    let mut more = pass.backfilled;
    while more > 0 {
        more = roller.run(now)?.backfilled;
        backfilled += more;
    }
    println!(
        "rolled up {} hours and {} days, and filled in {backfilled} periods across hosts, in {:.1} s",
        pass.hours,
        pass.days,
        started.elapsed().as_secs_f64()
    );

    let end = data_end(&store, now)?.context("the store holds no durations")?;
    let two_weeks = has_data(&store, end - 14 * DAY, end - 14 * DAY + 60)?;
    let period = match days {
        Some(days) => days * DAY,
        None if two_weeks => 7 * DAY,
        None => 7 * DAY / 2,
    };
    let scope = Scope::window(end - period, end);
    let length = format!("{}", period as f64 / DAY as f64);
    println!(
        "the last {length} days: minutes {}..{} against the {length} before{}",
        scope.from,
        scope.to,
        if days.is_none() && !two_weeks {
            " (the store holds one week)"
        } else {
            ""
        }
    );

    let owners = Owners::empty();
    let analysis = Analysis::new(&store, &owners);
    let rule = RegressionRule::default();
    let mut times = Vec::new();
    let mut last: Option<Comparison> = None;
    for _ in 0..3 {
        let started = Instant::now();
        last = Some(analysis.compare(&scope, &rule, Group::Transaction)?);
        times.push(started.elapsed());
    }
    times.sort();
    let comparison = last.context("three passes ran")?;
    let judged = comparison.regressions.len()
        + comparison.improvements.len()
        + comparison.unchanged.len()
        + comparison.too_little_traffic.len();
    println!(
        "regression pass over {judged} transactions: median {:.2} s (min {:.2}, max {:.2})",
        times[1].as_secs_f64(),
        times[0].as_secs_f64(),
        times[2].as_secs_f64()
    );
    println!(
        "{} regressions, {} improvements, {} unchanged, {} with too little traffic",
        comparison.regressions.len(),
        comparison.improvements.len(),
        comparison.unchanged.len(),
        comparison.too_little_traffic.len()
    );
    for row in comparison.regressions.iter().take(5) {
        if let Some(trigger) = row.verdict.trigger {
            println!(
                "  {}: {trigger}, {:.0} s extra",
                row.label(),
                row.verdict.impact_seconds
            );
        }
    }
    Ok(())
}

/// Whether any series has durations in `from..to`. One series is enough to
/// ask about: every synthetic series runs all the time.
fn has_data(store: &SqliteStore, from: i64, to: i64) -> anyhow::Result<bool> {
    let Some(key) = store.series()?.into_iter().next() else {
        return Ok(false);
    };
    let filter = Filter {
        service: Some(key.service),
        host: Some(key.host),
        transaction: Some(key.transaction),
        ..Filter::default()
    };
    Ok(!store.histograms(&filter, from, to)?.is_empty())
}

/// The end of the last hour with data, looking back at most 400 days from `now`.
fn data_end(store: &SqliteStore, now: i64) -> anyhow::Result<Option<i64>> {
    let today = now.div_euclid(DAY) * DAY;
    for back in 0..400 {
        let day = today - back * DAY;
        if has_data(store, day, day + DAY)? {
            for hour in (0..24).rev() {
                let from = day + hour * 60;
                if has_data(store, from, from + 60)? {
                    return Ok(Some(from + 60));
                }
            }
        }
    }
    Ok(None)
}
