//! How fast `slowest` answers over a week of a 2,000-series fleet, against
//! answering the same question (p50/p95/p99 per transaction) the naive way:
//! every raw sample, sorted per transaction.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example analysis_bench -- --store /tmp/fleet.db
//! ```
//!
//! The first run writes `Spec::fleet` (a week at minute resolution, ~20M
//! histogram points, ~2 GiB) into the store and rolls it up (on 2 busy cores:
//! 8 minutes to write, 5 to roll); later runs reuse it. `slowest` is timed over the last 7 days of the
//! data, day-aligned (answered from day rows) and shifted by 37 minutes
//! (days, hours and minutes), median of 5 runs each. The naive scan replays
//! the generator's samples (the very runs the histograms were built from),
//! one transaction at a time, and sorts them; it also gives the exact
//! percentiles, so the benchmark reports how far the histogram's are.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use kuroko_reporter::analysis::endpoints::Rank;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::Store;
use kuroko_reporter::synthetic::{write_to, Generator, Spec};

/// Midnight UTC, Monday 2024-01-01: the data is the same on every run.
const START: i64 = 28_401_120;
const RUNS: usize = 5;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut path: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => path = args.next().map(PathBuf::from),
            other => anyhow::bail!("unknown argument {other:?}: usage: analysis_bench --store PATH"),
        }
    }
    let path = path.context("usage: analysis_bench --store PATH")?;
    let spec = Spec::fleet(START);
    let store = SqliteStore::open(&path)?;
    if store.series()?.is_empty() {
        println!("writing the fleet into {} (once)", path.display());
        let started = Instant::now();
        let mut shown = 0;
        write_to(&store, &spec, |done, total| {
            let percent = done * 100 / total.max(1);
            if percent >= shown + 5 {
                shown = percent;
                println!(
                    "  {percent:>3}% ({done}/{total} batches, {:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        })?;
        store.flush()?;
        println!("written in {:.1} s", started.elapsed().as_secs_f64());
    }
    // Roll as a reporter would an hour after the data ends (a no-op once done).
    let started = Instant::now();
    let pass = store.roller(Default::default())?.run(spec.end_minute() + 60)?;
    if pass.hours + pass.days > 0 {
        println!(
            "rolled {} hours and {} days in {:.1} s",
            pass.hours,
            pass.days,
            started.elapsed().as_secs_f64()
        );
    }
    println!("store: {:.2} GiB", store.size_bytes() as f64 / (1u64 << 30) as f64);

    let owners = Owners::empty();
    let analysis = Analysis::new(&store, &owners);
    let end = spec.end_minute();
    let week = Scope::window(end - 7 * 1_440, end);
    let shifted = Scope::window(week.from - 37, week.to - 37);
    let mut answer = None;
    let mut medians = Vec::new();
    for (name, scope) in [("day-aligned", &week), ("shifted 37 min", &shifted)] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let table = analysis.slowest(scope, Rank::P95, usize::MAX)?;
            times.push(started.elapsed());
            answer.get_or_insert(table);
        }
        let median = median(times);
        medians.push(median);
        println!(
            "slowest over 7 days, {name}: median {:.1} ms of {RUNS} runs",
            median.as_secs_f64() * 1e3
        );
    }
    let table = answer.context("no answer")?;
    let slowest_time = medians[0];

    // The naive way: every sample of every run, sorted per transaction.
    let generator = Generator::new(&spec);
    let mut by_transaction: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (index, key) in generator.series().iter().enumerate() {
        by_transaction
            .entry((key.service.clone(), key.transaction.clone()))
            .or_default()
            .push(index);
    }
    let started = Instant::now();
    let (mut sorting, mut samples_seen, mut worst) = (Duration::ZERO, 0usize, 0.0f64);
    for ((service, transaction), series) in &by_transaction {
        let mut samples = Vec::new();
        for &index in series {
            for minute in generator.steps().filter(|m| (week.from..week.to).contains(m)) {
                samples.extend(generator.raw_samples(index, minute));
            }
        }
        let sort_started = Instant::now();
        samples.sort_by(f64::total_cmp);
        sorting += sort_started.elapsed();
        samples_seen += samples.len();
        let row = table
            .rows
            .iter()
            .find(|r| &r.service == service && &r.transaction == transaction);
        for (q, estimate) in [
            (0.50, row.map(|r| r.p50)),
            (0.95, row.map(|r| r.p95)),
            (0.99, row.map(|r| r.p99)),
        ] {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
            if let (Some(exact), Some(estimate)) = (samples.get(rank - 1), estimate) {
                worst = worst.max((estimate / exact - 1.0).abs());
            }
        }
    }
    let naive = started.elapsed();
    println!(
        "naive: {samples_seen} raw samples of {} transactions replayed and sorted in {:.1} s (sorting alone {:.1} s)",
        by_transaction.len(),
        naive.as_secs_f64(),
        sorting.as_secs_f64()
    );
    println!(
        "slowest (day-aligned, {:.1} ms) is {:.0}x faster than the naive scan, {:.0}x faster than its sorting alone",
        slowest_time.as_secs_f64() * 1e3,
        naive.as_secs_f64() / slowest_time.as_secs_f64(),
        sorting.as_secs_f64() / slowest_time.as_secs_f64()
    );
    println!(
        "largest p50/p95/p99 error against the exact samples: {:.3}%",
        worst * 100.0
    );
    Ok(())
}
