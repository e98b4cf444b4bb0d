//! Writes a synthetic week into a SQLite store, and says what it planted and
//! how long generating and writing took.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example synthetic_week -- [small|fleet] [PATH]
//! ```
//!
//! `small` (default): 2 services × 2 hosts × 6 transactions, two weeks at
//! 10-minute steps. `fleet`: 2,000 series, one week at minute resolution, the
//! `slowest` benchmark's store. Without `PATH` the store goes to a temporary
//! directory and is deleted at the end. The data ends at the last full hour.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::Store;
use kuroko_reporter::synthetic::{write_to, Generator, Spec};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let preset = args.next().unwrap_or_else(|| "small".to_owned());
    let kept = args.next();
    let now = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 60) as i64;
    let end = now.div_euclid(60) * 60;
    let spec = match preset.as_str() {
        "small" => Spec::small(0),
        "fleet" => Spec::fleet(0),
        other => anyhow::bail!("unknown preset {other:?}: small or fleet"),
    };
    let spec = Spec {
        start_minute: end - spec.minutes,
        ..spec
    };
    let generator = Generator::new(&spec);
    println!(
        "{preset}: {} series, {} minutes from minute {} at {}-minute steps, ~{} runs per series-minute",
        generator.series().len(),
        spec.minutes,
        spec.start_minute,
        spec.step_minutes,
        spec.runs_per_minute
    );

    // Generating alone: how fast the model is.
    let started = Instant::now();
    let mut points = 0usize;
    generator.generate(|batch| {
        points += batch.len();
        Ok::<_, std::convert::Infallible>(())
    })?;
    let generated = started.elapsed().as_secs_f64();
    println!("generated {points} points in {generated:.1} s");

    let dir = std::env::temp_dir().join(format!("kuroko-synthetic-{}", std::process::id()));
    let path = match &kept {
        Some(path) => path.into(),
        None => {
            std::fs::create_dir_all(&dir)?;
            dir.join("kuroko.db")
        }
    };
    let store = SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let truths = write_to(&store, &spec, |done, total| {
        if last_report.elapsed().as_secs() >= 10 {
            last_report = Instant::now();
            eprintln!("  {done}/{total} batches, {:.0} s", started.elapsed().as_secs_f64());
        }
    })?;
    let total = started.elapsed().as_secs_f64();
    let write = (total - generated).max(f64::EPSILON);
    println!(
        "generated and written in {total:.1} s: ~{write:.1} s writing, {:.0} histogram points/s and {:.0} points/s overall in the store; {} bytes on disk",
        truths.histogram_points as f64 / write,
        points as f64 / write,
        store.size_bytes()
    );
    println!(
        "{} runs; {} histogram, {} counter, {} error points; {} traces",
        truths.runs, truths.histogram_points, truths.counter_points, truths.error_points, truths.traces
    );
    println!("planted:");
    for slow in &truths.slow_endpoints {
        println!("  slow endpoint      {} {}", slow.service, slow.transaction);
    }
    println!(
        "  p95 regression     {} {}: x{} from minute {}",
        truths.regression.service, truths.regression.transaction, truths.regression_factor, truths.regression_start
    );
    println!(
        "  noisy, no change   {} {}",
        truths.noisy.service, truths.noisy.transaction
    );
    let burst = &truths.error_burst;
    println!(
        "  error burst        {} {} on {}: {} x {} ({}) at {}, minutes {}..{}; {} background errors elsewhere",
        burst.transaction.service,
        burst.transaction.transaction,
        burst.host,
        burst.count,
        burst.error_type,
        burst.message_pattern,
        burst.location,
        burst.from_minute,
        burst.to_minute,
        truths.background_errors
    );
    println!(
        "  database-heavy     {} {}: {:.0}% in {:?}",
        truths.database_heavy.service,
        truths.database_heavy.transaction,
        truths.database_share * 100.0,
        truths.database_segment
    );
    drop(store);
    match kept {
        Some(path) => println!("store kept at {path}"),
        None => std::fs::remove_dir_all(&dir)?,
    }
    Ok(())
}
