//! The embedded store (SQLite) against the shared one (ClickHouse), side by
//! side on the same synthetic week (issue #9): ingest rate, the `slowest`
//! question over 7 days and over one day, and bytes on disk.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example store_compare -- --services 1 --writers 2
//! cargo run --release -p kuroko-reporter --example store_compare -- --clickhouse clickhouse://127.0.0.1:8123/bench
//! ```
//!
//! The data is `Spec::fleet` cut to `--services` services (each: 10 hosts ×
//! 20 transactions = 200 series, a week at minute resolution, ~10 runs per
//! series-minute, hourly counters). It is generated a few batches at a time
//! (one batch: one service's hour) and each lot is written by `--writers`
//! threads at once; only the writing is timed, so generation does not count.
//! The same lots go to a fresh SQLite file and a fresh ClickHouse database
//! (Debian's `clickhouse-server` started on free ports, as the tests do, or
//! `--clickhouse URL`), with the store's defaults (ClickHouse: group commit
//! every 200 ms). SQLite's roll-ups run afterwards and are timed apart
//! (ClickHouse rolls up at insert time, in its materialised views).
//! `slowest` (p95, every transaction) is asked `--runs` times of each store;
//! medians. Bytes on disk: SQLite's file (WAL included) after roll-up;
//! ClickHouse's `system.parts` after `OPTIMIZE … FINAL` (merged, as it will
//! be at rest).

#[path = "../tests/support/clickhouse_server.rs"]
mod clickhouse_server;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kuroko_reporter::analysis::endpoints::Rank;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, Store};
use kuroko_reporter::synthetic::{Generator, Spec};

/// Midnight UTC, Monday 2024-01-01: the same data on every run.
const START: i64 = 28_401_120;

struct Options {
    services: usize,
    writers: usize,
    runs: usize,
    clickhouse: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        services: 1,
        writers: 2,
        runs: 5,
        clickhouse: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--services" => options.services = value()?.parse()?,
            "--writers" => options.writers = value()?.parse()?,
            "--runs" => options.runs = value()?.parse()?,
            "--clickhouse" => options.clickhouse = Some(value()?),
            other => bail!(
                "unknown argument {other:?}: store_compare [--services N] [--writers N] [--runs N] [--clickhouse URL]"
            ),
        }
    }
    if options.services == 0 || options.writers == 0 || options.runs == 0 {
        bail!("--services, --writers and --runs take a number above 0");
    }
    Ok(options)
}

/// Time spent writing, and what was written.
#[derive(Default)]
struct Ingest {
    elapsed: Duration,
    histogram_points: u64,
    all_points: u64,
}

/// Writes `lot` into `store` from `writers` threads at once, timed.
fn write_lot(store: &dyn Store, lot: &[Batch], writers: usize, ingest: &mut Ingest) -> anyhow::Result<()> {
    let next = Mutex::new(lot.iter());
    let started = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let batch = next.lock().map_err(|_| anyhow::anyhow!("a writer panicked"))?.next();
                        match batch {
                            Some(batch) => store.write(batch)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?)
    })?;
    ingest.elapsed += started.elapsed();
    ingest.histogram_points += lot.iter().map(|b| b.histograms.len() as u64).sum::<u64>();
    ingest.all_points += lot.iter().map(|b| b.len() as u64).sum::<u64>();
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `sql` on the ClickHouse server of a `clickhouse://` URL.
fn clickhouse_sql(url: &str, sql: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("clickhouse://");
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:8123")
    };
    let mut response = ureq::post(format!("http://{host}/")).send(sql)?;
    Ok(response.body_mut().read_to_string()?)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let spec = Spec {
        services: options.services,
        ..Spec::fleet(START)
    };
    let generator = Generator::new(&spec);
    let series = generator.series().len();
    let series_minutes = (series as i64 * spec.minutes) as f64;
    println!(
        "{series} series × {} minutes ({} services), {} writer threads, {} runs per question",
        spec.minutes, options.services, options.writers, options.runs
    );

    let dir = std::env::temp_dir().join(format!("kuroko-store-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let sqlite = SqliteStore::open(&dir.join("kuroko.db"))?;
    let url = match &options.clickhouse {
        Some(url) => url.clone(),
        None => {
            let port = clickhouse_server::server().port;
            format!("clickhouse://127.0.0.1:{port}/store_compare")
        }
    };
    let database = url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default();
    clickhouse_sql(&url, &format!("DROP DATABASE IF EXISTS {database}"))?;
    let clickhouse = ClickHouseStore::connect(&url)?;

    // Ingest: the same lots, generated once, written to each store in turn.
    let (mut sqlite_ingest, mut clickhouse_ingest) = (Ingest::default(), Ingest::default());
    let lot_size = options.writers * 2;
    let mut lot = Vec::with_capacity(lot_size);
    let started = Instant::now();
    let mut write = |lot: &mut Vec<Batch>| -> anyhow::Result<()> {
        write_lot(&sqlite, lot, options.writers, &mut sqlite_ingest)?;
        write_lot(&clickhouse, lot, options.writers, &mut clickhouse_ingest)?;
        lot.clear();
        Ok(())
    };
    let mut failed = None;
    generator
        .generate(|batch| {
            lot.push(batch);
            if lot.len() == lot_size {
                if let Err(error) = write(&mut lot) {
                    failed = Some(error);
                    return Err(());
                }
            }
            Ok(())
        })
        .ok();
    if let Some(error) = failed {
        return Err(error);
    }
    write(&mut lot)?;
    let flushed = Instant::now();
    sqlite.flush()?;
    sqlite_ingest.elapsed += flushed.elapsed();
    let rolling = Instant::now();
    let pass = sqlite.roller(Default::default())?.run(spec.end_minute() + 60)?;
    let roll = rolling.elapsed();
    println!(
        "generated and written in {:.0} s; SQLite rolled {} hours and {} days in {:.1} s",
        started.elapsed().as_secs_f64(),
        pass.hours,
        pass.days,
        roll.as_secs_f64()
    );
    for (name, ingest, extra) in [
        ("SQLite", &sqlite_ingest, roll),
        ("ClickHouse", &clickhouse_ingest, Duration::ZERO),
    ] {
        let with_rollups = ingest.elapsed + extra;
        println!(
            "ingest {name:<10}: {:>9} histogram points in {:>6.1} s = {:>7.0} histogram points/s ({:>7.0} points/s); with roll-ups {:>7.0} histogram points/s",
            ingest.histogram_points,
            ingest.elapsed.as_secs_f64(),
            ingest.histogram_points as f64 / ingest.elapsed.as_secs_f64(),
            ingest.all_points as f64 / ingest.elapsed.as_secs_f64(),
            ingest.histogram_points as f64 / with_rollups.as_secs_f64(),
        );
    }

    // `slowest`, over the week and over one day, on whole days and shifted
    // by 37 minutes (so minute rows are read at the edges).
    let owners = Owners::empty();
    let end = spec.end_minute();
    let windows = [
        ("7 days, whole days", Scope::window(end - 7 * 1_440, end)),
        ("7 days, shifted 37 min", Scope::window(end - 7 * 1_440 - 37, end - 37)),
        ("1 day, whole", Scope::window(end - 1_440, end)),
        ("1 day, shifted 37 min", Scope::window(end - 1_440 - 37, end - 37)),
    ];
    for (name, scope) in &windows {
        let mut medians = Vec::new();
        let mut answers = Vec::new();
        for store in [&sqlite as &dyn Store, &clickhouse] {
            let analysis = Analysis::new(store, &owners);
            let mut times = Vec::new();
            let mut rows = 0;
            for _ in 0..options.runs {
                let started = Instant::now();
                let table = analysis.slowest(scope, Rank::P95, usize::MAX)?;
                times.push(started.elapsed());
                rows = table.rows.len();
            }
            medians.push(median(times));
            answers.push(rows);
        }
        println!(
            "slowest, {name:<24}: SQLite {:>8.1} ms, ClickHouse {:>8.1} ms (SQLite/ClickHouse {:.2}); {} and {} transactions",
            ms(medians[0]),
            ms(medians[1]),
            medians[0].as_secs_f64() / medians[1].as_secs_f64(),
            answers[0],
            answers[1]
        );
    }

    // Bytes on disk.
    let tables = clickhouse_sql(
        &url,
        &format!("SELECT DISTINCT table FROM system.parts WHERE database = '{database}' AND active"),
    )?;
    let before = clickhouse.size_bytes();
    for table in tables.lines().filter(|t| !t.is_empty()) {
        clickhouse_sql(&url, &format!("OPTIMIZE TABLE {database}.{table} FINAL"))?;
    }
    let sqlite_bytes = sqlite.size_bytes() as f64;
    let clickhouse_bytes = clickhouse.size_bytes() as f64;
    println!(
        "on disk: SQLite {:.0} MB = {:.0} B per series-minute; ClickHouse {:.0} MB = {:.0} B per series-minute merged ({:.0} B before merges)",
        sqlite_bytes / 1e6,
        sqlite_bytes / series_minutes,
        clickhouse_bytes / 1e6,
        clickhouse_bytes / series_minutes,
        before as f64 / series_minutes
    );
    let by_table = clickhouse_sql(
        &url,
        &format!(
            "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = '{database}' AND active
             GROUP BY table ORDER BY sum(bytes_on_disk) DESC FORMAT TSV"
        ),
    )?;
    for line in by_table.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [table, rows, bytes] = fields[..] {
            let bytes: f64 = bytes.parse().unwrap_or(0.0);
            println!(
                "  ClickHouse {table:<18} {rows:>9} rows {:>9.1} MB {:>7.1} B per series-minute",
                bytes / 1e6,
                bytes / series_minutes
            );
        }
    }
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
