//! The demo's past: synthetic history for the fleet's own names, written
//! straight into the store before the reporter starts.
//!
//! Week-over-week questions need a previous week, and the weekly report
//! covers the last full ISO week against the one before; so the backfill
//! runs from the Monday two ISO weeks back (UTC) up to now, 14 to 21 days,
//! at 10-minute points. It is marked synthetic twice: its hosts are
//! `synthetic-<service>-<n>` (service, transaction, feature and environment
//! are the live fleet's, because regressions compare per service,
//! transaction and environment across hosts), and the store's `meta` table
//! holds `synthetic_backfill = "<from>..<to>"` (RFC 3339) for the UI and
//! reports to show. The fleet's versions are recorded as if it had been
//! exporting all along: shop-api's new one when its regression began (a
//! deploy, which the charts mark).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::fleet;
use super::DemoError;
use crate::store::deploys::{Deploys, VersionSeen};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::synthetic::{Generator, Spec, Truths};

/// The `meta` key that marks the synthetic stretch.
pub(crate) const META_KEY: &str = "synthetic_backfill";
/// Minutes per backfilled point.
const STEP_MINUTES: i64 = 10;
/// Runs per series and minute at average popularity and hour.
const RUNS_PER_MINUTE: f64 = 20.0;

/// What the backfill covers, in unix minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First minute: Monday 00:00 UTC, two ISO weeks before `now`'s.
    pub from: i64,
    /// The minute after the last: now.
    pub to: i64,
    /// Where the regressing endpoint's p95 +40% starts: a week before now,
    /// so that the default question (the last 7 days against the 7 before)
    /// holds it all in its current week and none of it in its baseline.
    pub regression_start: i64,
}

impl Window {
    /// The window ending at `now_minute` (unix minutes).
    pub(crate) fn ending_at(now_minute: i64) -> Window {
        const DAY: i64 = 1_440;
        // 1970-01-01 was a Thursday: Monday is 3 days before day 0 of an epoch-aligned week.
        let monday = (now_minute + 3 * DAY).div_euclid(7 * DAY) * 7 * DAY - 3 * DAY;
        Window {
            from: monday - 14 * DAY,
            to: now_minute,
            // Rounded up to the backfill's step, so no point of the week before mixes both.
            regression_start: (now_minute - 7 * DAY).div_euclid(STEP_MINUTES) * STEP_MINUTES + STEP_MINUTES,
        }
    }

    /// `from..to` in RFC 3339, the marking's value.
    pub fn marking(&self) -> String {
        let at = |minute: i64| {
            jiff::Timestamp::from_second(minute * 60).map_or_else(|_| minute.to_string(), |t| t.to_string())
        };
        format!("{}..{}", at(self.from), at(self.to))
    }
}

/// The generator for `window`: the fleet's services, hosts and transactions.
pub fn generator(window: &Window) -> Generator {
    let spec = Spec {
        seed: 0x6b75_726f_6b6f,
        services: fleet::SERVICES.len(),
        hosts_per_service: fleet::HOSTS,
        transactions_per_service: fleet::TRANSACTIONS,
        start_minute: window.from,
        minutes: window.to - window.from,
        step_minutes: STEP_MINUTES,
        runs_per_minute: RUNS_PER_MINUTE,
        apdex_threshold: 0.5,
        hourly_counters: true,
    };
    Generator::with_overrides(&spec, &fleet::overrides(window))
}

/// Writes `generator`'s data into the store at `path` and marks it,
/// calling `progress(done, total)` after each batch; stops early (with
/// [`DemoError::Interrupted`]) once `cancel` is set. The store is closed
/// (flushed) on return, for the reporter to open.
pub fn write(
    path: &Path,
    generator: &Generator,
    window: &Window,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Truths, DemoError> {
    let store = SqliteStore::open(path)?;
    let total = generator.batch_count();
    let mut done = 0;
    let truths = generator.generate(|batch| {
        if cancel.load(Ordering::Relaxed) {
            return Err(DemoError::Interrupted);
        }
        if !batch.is_empty() {
            store.write(&batch)?;
        }
        done += 1;
        progress(done, total);
        Ok(())
    })?;
    // The fleet's versions as if they had been exporting all along: every
    // service's at the start, and shop-api's new one when its regression
    // began (a deploy).
    let mut versions = Vec::new();
    for service in fleet::SERVICES {
        for (since, minute) in [(false, window.from), (true, window.regression_start)] {
            versions.push(VersionSeen {
                service: service.to_owned(),
                environment: fleet::ENVIRONMENT.to_owned(),
                version: fleet::version(service, since).to_owned(),
                first_minute: minute,
            });
        }
    }
    store.versions_seen(&versions)?;
    store.flush()?;
    drop(store);
    mark(path, window)?;
    Ok(truths)
}

/// Records the synthetic window in the store's `meta` table.
fn mark(path: &Path, window: &Window) -> Result<(), StoreError> {
    let error = |source| StoreError::sqlite(path.display().to_string(), source);
    let connection = rusqlite::Connection::open(path).map_err(error)?;
    connection
        .execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            [META_KEY, &window.marking()],
        )
        .map_err(error)?;
    Ok(())
}

/// The synthetic window recorded in the store at `path`, if any.
pub fn marked(path: &Path) -> Result<Option<String>, StoreError> {
    let error = |source| StoreError::sqlite(path.display().to_string(), source);
    let connection =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(error)?;
    let mut statement = connection
        .prepare("SELECT value FROM meta WHERE key = ?1")
        .map_err(error)?;
    let mut rows = statement.query([META_KEY]).map_err(error)?;
    match rows.next().map_err(error)? {
        Some(row) => Ok(Some(row.get(0).map_err(error)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Filter;

    /// Wednesday 2024-01-10 12:00 UTC.
    const WEDNESDAY_NOON: i64 = 28_401_120 + 9 * 1_440 + 720;

    #[test]
    fn the_window_covers_the_last_full_week_and_the_one_before() {
        let window = Window::ending_at(WEDNESDAY_NOON);
        // Monday 2024-01-08 is this week's; the backfill starts two Mondays before.
        assert_eq!(window.from, 28_401_120 - 7 * 1_440);
        // A week before now (rounded up to the next 10-minute point).
        assert_eq!(window.regression_start, WEDNESDAY_NOON - 7 * 1_440 + 10);
        assert_eq!(window.to, WEDNESDAY_NOON);
        assert_eq!(window.marking(), "2023-12-25T00:00:00Z..2024-01-10T12:00:00Z");
    }

    #[test]
    fn the_backfill_is_in_the_store_and_marked() {
        let dir = std::env::temp_dir().join(format!("kuroko-demo-backfill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let window = Window {
            from: WEDNESDAY_NOON - 2 * 1_440,
            to: WEDNESDAY_NOON,
            regression_start: WEDNESDAY_NOON - 1_440,
        };
        let generator = generator(&window);
        let mut last = (0, 0);
        let truths = write(&path, &generator, &window, &AtomicBool::new(false), |done, total| {
            last = (done, total)
        })
        .unwrap();
        assert_eq!(last.0, last.1);
        assert_eq!(marked(&path).unwrap(), Some(window.marking()));
        let store = SqliteStore::open(&path).unwrap();
        let series = store.histograms(&Filter::default(), window.from, window.to).unwrap();
        let hosts: std::collections::BTreeSet<&str> = series.iter().map(|(k, _)| k.host.as_str()).collect();
        assert_eq!(hosts.len(), fleet::SERVICES.len() * fleet::HOSTS);
        assert!(hosts.iter().all(|h| h.starts_with("synthetic-")), "{hosts:?}");
        assert_eq!(truths.series, series.len());

        let cancelled = write(
            &dir.join("other.db"),
            &generator,
            &window,
            &AtomicBool::new(true),
            |_, _| {},
        );
        assert!(matches!(cancelled, Err(DemoError::Interrupted)));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
