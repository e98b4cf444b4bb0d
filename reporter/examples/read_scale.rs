//! How the reads that do not tell hosts apart grow with hosts (issue #19):
//! the overview page, `slowest` and the fleet-overview dashboard over
//! fleets of 2,000, 8,000 and 32,000 series (10 services × 40 transactions
//! × 5, 20 and 80 hosts) holding 7 days, on SQLite and on ClickHouse.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example read_scale -- \
//!     [--sizes 2000,8000,32000] [--stores sqlite,clickhouse] [--clickhouse URL] [--runs 3] \
//!     [--now MINUTE] [--reuse] [--reads "overview 1d,fleet dashboard"]
//! ```
//!
//! `--reads` times only the reads named (the table's column names, comma
//! separated); the others show as `–`.
//!
//! Without `--clickhouse` a ClickHouse server is started as the tests start
//! one (Debian's `clickhouse-server` on PATH); with it (`clickhouse://HOST:PORT`,
//! no credentials), the databases `read_scale_N` there are dropped and
//! written afresh, and kept afterwards; `--reuse` reads a database kept so
//! (give the `--now` it was written with, the minute its data ends). Each size is written afresh
//! into a new SQLite file and a new ClickHouse database, ending at the
//! current minute, so that every window ends now, not on an hour.
//!
//! The data, written through each store's own write path (minute rows,
//! rolled up to hours and days by SQLite's roller and ClickHouse's views):
//! 7 days at minute resolution for 32,000 series would be 322 M rows, too
//! many to generate here, so every series has ONE histogram point per hour
//! for the 7 days before the last hour (at a minute of the hour that
//! differs per series), and one per minute in the last hour. A point is one
//! of 16 histograms of 100 runs (40 to 60 buckets); each point comes with
//! an outcomes counter (`ok`, and `5xx` on a quarter of the series). The
//! hour and day rows, which the 7-day windows mostly read, have the shape
//! a fleet's have; the minute rows at the windows' edges are fewer than a
//! fleet's (one per hour outside the last hour).
//!
//! Timed, median wall time of `--runs` (3), and CPU per run: the
//! reporter's (this process) plus, on ClickHouse, the server's (its
//! `query_log`), which the machine's load does not inflate as it does the
//! wall time: the overview page over 1 day and over 7
//! days (rendered in process, as the web UI would), `slowest` over 7 days,
//! and the fleet-overview dashboard (7-day and 1-day panels); and, for the
//! store alone, one histogram per transaction over 7 days read per series
//! then merged (as before roll-ups across hosts) and read across hosts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use kuroko_reporter::analysis::endpoints::Rank;
use kuroko_reporter::analysis::Scope;
use kuroko_reporter::app::App;
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Batch, CounterPoint, Filter, HistogramPoint, SeriesKey, Store};
use kuroko_reporter::ui::{pages, Params};

#[path = "../tests/support/clickhouse_server.rs"]
mod clickhouse_server;

const SERVICES: usize = 10;
const TRANSACTIONS: usize = 40;
const DAY: i64 = 1_440;
const POINTS_PER_WRITE: usize = 50_000;

struct Options {
    sizes: Vec<usize>,
    stores: Vec<String>,
    clickhouse: Option<String>,
    runs: usize,
    now: Option<i64>,
    reuse: bool,
    /// The reads timed (all by default).
    reads: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        sizes: vec![2_000, 8_000, 32_000],
        stores: vec!["sqlite".into(), "clickhouse".into()],
        clickhouse: None,
        runs: 3,
        now: None,
        reuse: false,
        reads: READS.iter().map(|r| (*r).to_owned()).collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                options.sizes = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?
            }
            "--stores" => options.stores = value()?.split(',').map(str::to_owned).collect(),
            "--clickhouse" => options.clickhouse = Some(value()?),
            "--runs" => options.runs = value()?.parse::<usize>()?.max(1),
            "--now" => options.now = Some(value()?.parse()?),
            "--reuse" => options.reuse = true,
            "--reads" => {
                options.reads = value()?.split(',').map(|r| r.trim().to_owned()).collect();
                if let Some(unknown) = options.reads.iter().find(|r| !READS.contains(&r.as_str())) {
                    anyhow::bail!("unknown read {unknown:?}: one of {}", READS.join(", "));
                }
            }
            other => anyhow::bail!(
                "unknown argument {other:?}: read_scale [--sizes N,N] [--stores sqlite,clickhouse] [--clickhouse URL] [--runs N] [--now MINUTE] [--reuse] [--reads NAME,NAME]"
            ),
        }
    }
    Ok(options)
}

/// 16 histograms of 100 runs each, from 10 ms to a few seconds.
fn templates() -> Vec<Histogram> {
    (0..16)
        .map(|j| {
            let mut h = Histogram::empty();
            for i in 0..100 {
                let value = 0.01 * (1.0 + j as f64 / 4.0) * 1.06f64.powi(i % 70);
                h.record(value).expect("a finite positive duration");
            }
            h
        })
        .collect()
}

/// The fleet's series: `size / 400` hosts per service.
fn series(size: usize) -> Vec<Arc<SeriesKey>> {
    let hosts = (size / (SERVICES * TRANSACTIONS)).max(1);
    let mut out = Vec::with_capacity(SERVICES * TRANSACTIONS * hosts);
    for s in 0..SERVICES {
        for h in 0..hosts {
            for t in 0..TRANSACTIONS {
                out.push(Arc::new(SeriesKey {
                    service: format!("svc-{s:02}"),
                    host: format!("svc-{s:02}-host-{h:03}"),
                    transaction: format!("GET /route-{t:02}/{{id}}"),
                    feature: format!("feature-{}", t % 8),
                    kind: "web".into(),
                    environment: "prod".into(),
                }));
            }
        }
    }
    out
}

/// Writes the fleet's 7 days ending at `now` (see the module documentation).
fn fill(store: &dyn Store, size: usize, now: i64) -> anyhow::Result<usize> {
    let templates = templates();
    let keys = series(size);
    let first_hour = (now - 7 * DAY - 60).div_euclid(60);
    let last_hour = (now - 60).div_euclid(60);
    let mut minutes: Vec<(i64, bool)> = Vec::new();
    for hour in first_hour..last_hour {
        minutes.push((hour * 60, true));
    }
    for minute in (last_hour * 60)..now {
        minutes.push((minute, false));
    }
    let mut batch = Batch::default();
    let mut written = 0;
    for (point, &(minute, hourly)) in minutes.iter().enumerate() {
        for (index, key) in keys.iter().enumerate() {
            let minute = if hourly { minute + (index % 60) as i64 } else { minute };
            if minute >= now {
                continue;
            }
            let histogram = templates[(index + point) % templates.len()].clone();
            let runs = histogram.count as f64;
            batch.counters.push(CounterPoint {
                key: key.clone(),
                minute,
                name: "kuroko.transaction.outcomes".into(),
                labels: "kuroko.outcome=ok".into(),
                value: runs,
            });
            if index % 4 == 0 {
                batch.counters.push(CounterPoint {
                    key: key.clone(),
                    minute,
                    name: "kuroko.transaction.outcomes".into(),
                    labels: "kuroko.outcome=5xx".into(),
                    value: 1.0,
                });
            }
            batch.histograms.push(HistogramPoint {
                key: key.clone(),
                minute,
                histogram,
            });
            if batch.len() >= POINTS_PER_WRITE {
                written += batch.len();
                store.write(&std::mem::take(&mut batch))?;
            }
        }
    }
    written += batch.len();
    store.write(&batch)?;
    Ok(written)
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the line, in clock ticks (100 a second).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// The ClickHouse server the reads go to, for its CPU per query
/// (`system.query_log`, `UserTimeMicroseconds` + `SystemTimeMicroseconds`).
struct Server {
    http: String,
}

impl Server {
    fn query(&self, sql: &str) -> anyhow::Result<String> {
        let mut response = ureq::post(format!("{}/", self.http))
            .send(sql.to_owned())
            .with_context(|| format!("{sql} on {}", self.http))?;
        Ok(response.body_mut().read_to_string()?)
    }

    /// CPU seconds of the SELECTs that started at or after `from` and
    /// ended by `to` (unix seconds).
    fn cpu(&self, from: u64, to: u64) -> anyhow::Result<f64> {
        self.query("SYSTEM FLUSH LOGS")?;
        let micros = self.query(&format!(
            "SELECT sum(arraySum(arrayMap((n, v) -> if(n IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds'), v, 0),
                                      ProfileEvents.Names, ProfileEvents.Values)))
             FROM system.query_log
             WHERE type = 2 AND query_start_time >= toDateTime({from}) AND event_time <= toDateTime({to})
               AND query LIKE 'SELECT%' AND query NOT LIKE '%system.query_log%'"
        ))?;
        Ok(micros.trim().parse::<f64>().unwrap_or(0.0) / 1e6)
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One read measured: its median wall time and its mean CPU per run (the
/// reporter's, and the ClickHouse server's when there is one), in ms.
#[derive(Clone, Copy, Default)]
struct Measured {
    wall: f64,
    cpu: f64,
    /// False for a read left out by `--reads`.
    timed: bool,
}

fn measure<T>(
    runs: usize,
    server: Option<&Server>,
    mut read: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<Measured> {
    // Queries of the read before are logged by the second they ended: let
    // it pass, so that the server's CPU is counted for the right read.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let (from, cpu_before) = (unix_seconds(), process_cpu());
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        read()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let reporter = process_cpu() - cpu_before;
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let server = match server {
        Some(server) => server.cpu(from, unix_seconds())?,
        None => 0.0,
    };
    times.sort_by(f64::total_cmp);
    Ok(Measured {
        wall: times[times.len() / 2],
        cpu: (reporter + server) * 1e3 / runs as f64,
        timed: true,
    })
}

/// The timed reads, in the table's column order.
const READS: [&str; 6] = [
    "overview 1d",
    "overview 7d",
    "slowest 7d",
    "fleet dashboard",
    "hist 7d per series",
    "hist 7d across hosts",
];

fn time_reads(
    store: Arc<dyn Store>,
    server: Option<&Server>,
    root: &Path,
    now: i64,
    runs: usize,
    reads: &[String],
) -> anyhow::Result<Vec<Measured>> {
    let owners = Arc::new(Owners::empty());
    let dashboards = kuroko_reporter::ui::dashboards::load(&root.join("dashboards"), &owners);
    let app = App::new(store.clone(), owners, String::new(), None);
    let day = Params::parse(Some("since=1d"))?;
    let week = Params::parse(Some("since=7d"))?;
    let scope = Scope::window(now - 7 * DAY, now);
    let per_series = Filter::default();
    let across = Filter {
        across_hosts: true,
        ..Filter::default()
    };
    // The read in column `$i` of `READS`, timed unless `--reads` leaves it out.
    macro_rules! timed {
        ($i:expr, $read:expr) => {
            if reads.iter().any(|r| r == READS[$i]) {
                measure(runs, server, $read)?
            } else {
                Measured::default()
            }
        };
    }
    Ok(vec![
        timed!(0, || Ok(pages::overview(&app, &day, now)?)),
        timed!(1, || Ok(pages::overview(&app, &week, now)?)),
        timed!(2, || Ok(app.analysis().slowest(&scope, Rank::P95, 20)?)),
        timed!(3, || Ok(pages::dashboard(
            &app,
            &dashboards,
            "fleet-overview",
            &week,
            now
        )?)),
        timed!(4, || {
            let mut merged: std::collections::BTreeMap<(String, String), Histogram> = Default::default();
            for (key, h) in store.histograms(&per_series, now - 7 * DAY, now)? {
                merged
                    .entry((key.service, key.transaction))
                    .or_insert_with(Histogram::empty)
                    .merge(&h);
            }
            Ok(merged)
        }),
        timed!(5, || Ok(store.histograms(&across, now - 7 * DAY, now)?)),
    ])
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let now = match options.now {
        Some(now) => now,
        None => i64::try_from(unix_seconds() / 60)?,
    };
    println!(
        "read_scale: {SERVICES} services × {TRANSACTIONS} transactions; 7 days ending at minute {now}: one point per series and hour, per minute in the last hour"
    );
    let mut table: Vec<(String, usize, Vec<Measured>, String)> = Vec::new();
    for store_name in &options.stores {
        for &size in &options.sizes {
            let mut sqlite: Option<(Arc<SqliteStore>, PathBuf)> = None;
            let mut server: Option<Server> = None;
            let mut reused = false;
            let store: Arc<dyn Store> = match store_name.as_str() {
                "sqlite" => {
                    let dir = std::env::temp_dir().join(format!("kuroko-read-scale-{size}-{}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    std::fs::create_dir_all(&dir)?;
                    let store = Arc::new(SqliteStore::open(&dir.join("kuroko.db"))?);
                    sqlite = Some((store.clone(), dir));
                    store
                }
                "clickhouse" => {
                    let database = format!("read_scale_{size}");
                    let base = match &options.clickhouse {
                        Some(url) => url.trim_end_matches('/').to_owned(),
                        None => format!("clickhouse://127.0.0.1:{}", clickhouse_server::server().port),
                    };
                    let http = Server {
                        http: base.replacen("clickhouse://", "http://", 1),
                    };
                    let store = ClickHouseStore::connect(&format!("{base}/{database}"))?;
                    reused = options.reuse && !store.series()?.is_empty();
                    if !reused {
                        http.query(&format!("DROP DATABASE IF EXISTS {database}"))?;
                    }
                    server = Some(http);
                    Arc::new(ClickHouseStore::connect(&format!("{base}/{database}"))?)
                }
                other => anyhow::bail!("unknown store {other:?}: sqlite or clickhouse"),
            };
            if reused {
                println!(
                    "{store_name} {size} series: the data written before, reused (--reuse); load {}",
                    load()
                );
            } else {
                let started = Instant::now();
                let points = fill(store.as_ref(), size, now)?;
                let written = started.elapsed().as_secs_f64();
                // Rolled as a running reporter would have by now (ClickHouse's
                // views rolled up at insert).
                if let Some((sqlite, _)) = &sqlite {
                    sqlite.flush()?;
                    sqlite.roller(Default::default())?.run(now)?;
                }
                println!(
                    "{store_name} {size} series: {points} points written in {written:.0} s, rolled in {:.0} s; load {}",
                    started.elapsed().as_secs_f64() - written,
                    load()
                );
            }
            let measured = time_reads(store.clone(), server.as_ref(), &root, now, options.runs, &options.reads)?;
            let line: Vec<String> = READS
                .iter()
                .zip(&measured)
                .filter(|(_, m)| m.timed)
                .map(|(r, m)| format!("{r} {:.0} ms (CPU {:.0} ms)", m.wall, m.cpu))
                .collect();
            println!("  {}; load {}", line.join(", "), load());
            table.push((store_name.clone(), size, measured, load()));
            drop(store);
            if let Some((sqlite, dir)) = sqlite {
                drop(sqlite);
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    for (title, pick) in [
        ("wall time, median", (|m: &Measured| m.wall) as fn(&Measured) -> f64),
        ("CPU per run (reporter + ClickHouse server)", |m: &Measured| m.cpu),
    ] {
        println!();
        println!("{title}:");
        println!();
        println!("| store | series | {} | load after |", READS.join(" | "));
        println!("|---|---:|{}---|", "---:|".repeat(READS.len()));
        for (store, size, measured, load) in &table {
            let cells: Vec<String> = measured
                .iter()
                .map(|m| {
                    if m.timed {
                        format!("{:.0} ms", pick(m))
                    } else {
                        "–".to_owned()
                    }
                })
                .collect();
            println!("| {store} | {size} | {} | {load} |", cells.join(" | "));
            // Growth against the size a quarter as big, when measured.
            if let Some((_, _, before, _)) = table.iter().find(|(s, n, _, _)| s == store && n * 4 == *size) {
                let ratios: Vec<String> = measured
                    .iter()
                    .zip(before)
                    .map(|(m, b)| {
                        if m.timed && b.timed {
                            format!("×{:.2}", pick(m) / pick(b).max(0.001))
                        } else {
                            "–".to_owned()
                        }
                    })
                    .collect();
                println!("| {store} | growth from {} | {} | |", size / 4, ratios.join(" | "));
            }
        }
    }
    Ok(())
}
