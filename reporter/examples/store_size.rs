//! How much disk the embedded store takes per series-minute, measured.
//!
//! ```text
//! cargo run --release -p kuroko-reporter --example store_size -- 2000 60
//! ```
//!
//! Writes `SERIES` series (default 2,000) × `MINUTES` minutes (default 60) of
//! agent-shaped data into a fresh store — per series and minute one duration
//! histogram of ~100 log-normal runs (median 50 ms, as the agent exports them
//! at scale 7) and five counters (outcomes, Apdex, one segment's calls and
//! time) — then rolls it up and reports bytes per series-minute and what a
//! week of 2,000 series comes to (minutes for 8 days plus hourly roll-ups).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::Store;
use kuroko_reporter::synthetic::AgentMinutes;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<i64>());
    let series = args.next().transpose()?.unwrap_or(2_000);
    let minutes = args.next().transpose()?.unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("kuroko-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("kuroko.db");
    let store = SqliteStore::open(&path)?;
    let now = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 60) as i64;
    let first = (now - minutes - 5).div_euclid(60) * 60;
    let mut minutes_of = AgentMinutes::default();
    let started = Instant::now();
    for minute in first..first + minutes {
        let batch = minutes_of.batch(series as usize, minute);
        store.write(&batch)?;
    }
    let written = started.elapsed();
    // What waits in memory and in the journal goes to the tables first.
    store.flush()?;
    let minute_bytes = store.size_bytes();
    let mut roller = store.roller(Default::default())?;
    roller.run(now)?;
    let rolled_bytes = store.size_bytes();
    let series_minutes = (series * minutes) as f64;
    let per_minute = minute_bytes as f64 / series_minutes;
    let hour_share = (rolled_bytes.saturating_sub(minute_bytes)) as f64 / series_minutes;
    println!(
        "{series} series x {minutes} minutes written in {:.1} s ({:.0} series-minutes/s)",
        written.as_secs_f64(),
        series_minutes / written.as_secs_f64()
    );
    println!(
        "minute resolution: {minute_bytes} bytes, {per_minute:.0} bytes per series-minute (histogram + 5 counters)"
    );
    println!("with hourly roll-ups: {rolled_bytes} bytes (+{hour_share:.0} bytes per series-minute)");
    let week = 2_000.0 * 7.0 * 1_440.0 * (per_minute + hour_share);
    let kept = 2_000.0 * 8.0 * 1_440.0 * per_minute + 2_000.0 * 90.0 * 1_440.0 * hour_share;
    println!(
        "a week of 2,000 series: {:.2} GiB; steady state (8 days of minutes, 90 of hours): {:.2} GiB",
        week / (1u64 << 30) as f64,
        kept / (1u64 << 30) as f64
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
