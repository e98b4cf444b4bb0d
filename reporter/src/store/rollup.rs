//! Roll-ups and retention of the embedded store, in the background.
//!
//! Minutes are rolled into hours once an hour is over (plus a two-minute
//! grace), hours into days once a day is over; each finished period is
//! recorded in `meta` (`rolled_hours_until`, `rolled_days_until`, in unix
//! minutes). A point that arrives for an already rolled hour marks it dirty,
//! and the next pass rolls it again. The roller has its own connection: it
//! reads minutes in a read transaction, which does not stop ingest (WAL),
//! merges them in memory, and writes each hour in one short transaction.
//!
//! One hour or day that cannot be rolled (a row an older build stored with
//! a count whose sum overflows, a corrupt histogram) does not stop the
//! pass: it is *quarantined*, recorded with its cause in
//! `rollup_quarantine` (readable with `kuroko sql`), logged once with the
//! period, the table and SQLite's error, and counted in `/metrics`; the
//! other periods are rolled and retention runs. Its finer rows are kept
//! past retention, and every pass tries it again: once it rolls, it leaves
//! the quarantine. Failures that say nothing about the period (a full
//! disk, a busy database) stop the pass instead, to be tried again whole.
//!
//! Retention, after rolling: minutes for `minute_days` (8), hours for
//! `hour_days` (90), days for `day_days` (730); kept traces as long as
//! minutes, trace links (`store::links`) as long as hours. Nothing is
//! deleted before it was rolled up. Deletes go in chunks so that no
//! transaction holds the write lock for long.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;

use super::sqlite::txn::{self, BACKFILL_PER_PASS, NOT_YET};
use super::sqlite::{row_histogram, write_histogram, Late, HISTOGRAM_COLUMNS};
use super::StoreError;
use crate::histogram::Histogram;

/// How long each resolution is kept.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Days of minute resolution (and kept traces). Default: 8.
    pub minute_days: i64,
    /// Days of hourly resolution. Default: 90.
    pub hour_days: i64,
    /// Days of daily resolution. Default: 730.
    pub day_days: i64,
}

/// Nothing rolled, nothing cut.
impl Default for Rolled {
    fn default() -> Self {
        let never = || AtomicI64::new(super::plan::NEVER);
        Rolled {
            hours_until: never(),
            days_until: never(),
            minutes_from: never(),
            hours_from: never(),
            txn_minutes_from: AtomicI64::new(NOT_YET),
            txn_hours_from: AtomicI64::new(NOT_YET),
            txn_days_from: AtomicI64::new(NOT_YET),
            quarantined: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            minute_days: 8,
            hour_days: 90,
            day_days: 730,
        }
    }
}

/// How far roll-ups have got, shared by the store (to plan its reads and mark
/// late data dirty) and the roller (to advance it), in unix minutes.
#[derive(Debug)]
pub struct Rolled {
    /// Hours before this minute are rolled.
    pub hours_until: AtomicI64,
    /// Days before this minute are rolled.
    pub days_until: AtomicI64,
    /// Minute rows are kept from this minute on (retention's last cut).
    pub minutes_from: AtomicI64,
    /// Hour rows are kept from this minute on.
    pub hours_from: AtomicI64,
    /// Minute rows across hosts (`sqlite::txn`) are whole from this minute on.
    pub txn_minutes_from: AtomicI64,
    /// Hour rows across hosts are whole from this minute on.
    pub txn_hours_from: AtomicI64,
    /// Day rows across hosts are whole from this minute on.
    pub txn_days_from: AtomicI64,
    /// Hours and days in quarantine after the last pass.
    pub quarantined: AtomicU64,
    /// Roll-ups of one period that failed, since start.
    pub failures: AtomicU64,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Hours rolled (dirty ones again).
    pub hours: usize,
    /// Days rolled.
    pub days: usize,
    /// Rows deleted by retention.
    pub deleted: usize,
    /// Hours and days that failed to roll this pass (quarantined, or still).
    pub failed: usize,
    /// Hours and days rolled before the roll-ups across hosts existed whose
    /// rows across hosts this pass filled in (see `sqlite::txn`).
    pub backfilled: usize,
}

/// Why one period could not be rolled: the table being written, and what
/// SQLite said.
#[derive(Debug)]
struct RollError {
    table: &'static str,
    source: rusqlite::Error,
}

/// Names the table a step of a roll-up writes, for its error.
fn at(table: &'static str) -> impl FnOnce(rusqlite::Error) -> RollError {
    move |source| RollError { table, source }
}

/// Whether an error says nothing about the period being rolled (the disk,
/// the lock, memory): the pass stops and is tried again whole.
fn transient(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, OutOfMemory, SystemIoFailure};
    matches!(
        error.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked | CannotOpen | OutOfMemory)
    )
}

/// A resolution rolled from the next finer one.
#[derive(Clone, Copy)]
struct Resolution {
    /// `hour` or `day`.
    name: &'static str,
    /// Its length in minutes.
    minutes: i64,
    /// Its progress's key in `meta`.
    progress: &'static str,
    /// Whether a period (its first minute) can be rolled again from the finer rows.
    rebuilds: fn(&Late, i64) -> bool,
    /// Rolls one period.
    roll: fn(&mut Roller, i64) -> Result<(), RollError>,
}

const HOURS: Resolution = Resolution {
    name: "hour",
    minutes: 60,
    progress: "rolled_hours_until",
    rebuilds: Late::hour_rebuilds,
    roll: Roller::roll_hour,
};

const DAYS: Resolution = Resolution {
    name: "day",
    minutes: 1_440,
    progress: "rolled_days_until",
    rebuilds: Late::day_rebuilds,
    roll: Roller::roll_day,
};

/// A resolution of the roll-ups across hosts (`sqlite::txn`), and where
/// they are whole.
struct AcrossHosts {
    /// `hour` or `day`.
    name: &'static str,
    /// Its length in minutes.
    minutes: i64,
    /// The key in `meta` of the minute from which they are whole.
    progress: &'static str,
}

const TXN_HOURS: AcrossHosts = AcrossHosts {
    name: "hour",
    minutes: 60,
    progress: "txn_hours_from",
};

const TXN_DAYS: AcrossHosts = AcrossHosts {
    name: "day",
    minutes: 1_440,
    progress: "txn_days_from",
};

impl AcrossHosts {
    /// Where they are whole from, shared with the store's reads.
    fn shared<'a>(&self, rolled: &'a Rolled) -> &'a AtomicI64 {
        if self.name == "hour" {
            &rolled.txn_hours_from
        } else {
            &rolled.txn_days_from
        }
    }

    /// Where the per-series rows of the resolution are rolled until.
    fn rolled_until<'a>(&self, rolled: &'a Rolled) -> &'a AtomicI64 {
        if self.name == "hour" {
            &rolled.hours_until
        } else {
            &rolled.days_until
        }
    }
}

/// A period of a resolution, for the quarantine and its log lines.
#[derive(Clone, Copy, Debug)]
struct Period {
    /// `hour` or `day`.
    resolution: &'static str,
    /// Hours or days since the epoch.
    number: i64,
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self
            .number
            .saturating_mul(if self.resolution == "hour" { 3_600 } else { 86_400 });
        match jiff::Timestamp::from_second(seconds) {
            Ok(start) => write!(f, "the {} from {start}", self.resolution),
            Err(_) => write!(f, "{} {}", self.resolution, self.number),
        }
    }
}

/// Minutes of grace after the end of an hour before it is rolled.
const GRACE_MINUTES: i64 = 2;
/// Rows per retention delete.
const CHUNK: i64 = 5_000;

/// The roller; see the [module documentation](self).
pub struct Roller {
    path: String,
    connection: Connection,
    rolled: Arc<Rolled>,
    retention: Retention,
}

impl Roller {
    pub(crate) fn open(path: &Path, rolled: Arc<Rolled>, retention: Retention) -> Result<Roller, StoreError> {
        let name = path.display().to_string();
        let connection = Connection::open(path).map_err(|source| StoreError::sqlite(name.clone(), source))?;
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 4194304;",
            )
            .map_err(|source| StoreError::sqlite(name.clone(), source))?;
        Ok(Roller {
            path: name,
            connection,
            rolled,
            retention,
        })
    }

    fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::sqlite(self.path.clone(), source)
    }

    /// Rolls every finished hour and day, then applies retention.
    pub fn run(&mut self, now_minute: i64) -> Result<Pass, StoreError> {
        self.pass(now_minute).map_err(|e| self.error(e))
    }

    fn pass(&mut self, now_minute: i64) -> Result<Pass, rusqlite::Error> {
        let mut pass = Pass::default();
        // Before the first roll of this pass: periods rolled from here on
        // get their rows across hosts as they roll.
        self.mark_across_hosts(&TXN_HOURS)?;
        self.mark_across_hosts(&TXN_DAYS)?;
        let hours_target = (now_minute - GRACE_MINUTES).div_euclid(60) * 60;
        let hours_until = self.start(
            "rolled_hours_until",
            "SELECT MIN(minute) FROM histogram_minute",
            60,
            hours_target,
        )?;
        let hours_until = self.roll_through(&mut pass, HOURS, hours_until, hours_target)?;
        let days_target = hours_until.div_euclid(1_440) * 1_440;
        let days_until = self.start(
            "rolled_days_until",
            "SELECT MIN(hour) * 60 FROM histogram_hour",
            1_440,
            days_target,
        )?;
        let days_until = self.roll_through(&mut pass, DAYS, days_until, days_target)?;
        pass.backfilled = self.backfill_across_hosts(&TXN_HOURS)? + self.backfill_across_hosts(&TXN_DAYS)?;
        pass.deleted = self.retain(now_minute, hours_until, days_until)?;
        let quarantined: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM rollup_quarantine", [], |row| row.get(0))?;
        self.rolled
            .quarantined
            .store(u64::try_from(quarantined).unwrap_or(0), Ordering::Relaxed);
        Ok(pass)
    }

    /// Rolls the dirty and quarantined periods of `resolution` before
    /// `until`, then each period from `until` to `target`; returns where
    /// that resolution is now rolled until.
    fn roll_through(
        &mut self,
        pass: &mut Pass,
        resolution: Resolution,
        mut until: i64,
        target: i64,
    ) -> Result<i64, rusqlite::Error> {
        let Resolution { name, minutes, .. } = resolution;
        let period = |number| Period {
            resolution: name,
            number,
        };
        let quarantined = self.quarantined(name)?;
        let dirty = self.dirty(name)?;
        for &number in &dirty {
            if !(resolution.rebuilds)(&Late::of(&self.rolled), number.saturating_mul(minutes))
                && !quarantined.contains(&number)
            {
                // Its finer rows are partly gone: rebuilt from them, it
                // would lose what was rolled (late points for such a period
                // are merged into it on flush instead).
                self.connection.execute(
                    "DELETE FROM dirty WHERE resolution = ?1 AND period = ?2",
                    params![name, number],
                )?;
                continue;
            }
            self.isolated(pass, period(number), resolution.roll)?;
        }
        for &number in &quarantined {
            // Tried again every pass (its finer rows are kept).
            if number.saturating_mul(minutes) < until && !dirty.contains(&number) {
                self.isolated(pass, period(number), resolution.roll)?;
            }
        }
        while until < target {
            self.isolated(pass, period(until / minutes), resolution.roll)?;
            until += minutes;
            let shared = if name == "hour" {
                &self.rolled.hours_until
            } else {
                &self.rolled.days_until
            };
            self.advance(resolution.progress, shared, until)?;
        }
        Ok(until)
    }

    /// Rolls `period` with `roll`; when that fails for a reason of the
    /// period's own, quarantines it (logged once, with the table and the
    /// cause) and goes on. A transient failure stops the pass.
    fn isolated(
        &mut self,
        pass: &mut Pass,
        period: Period,
        roll: fn(&mut Roller, i64) -> Result<(), RollError>,
    ) -> Result<(), rusqlite::Error> {
        let error = match roll(self, period.number) {
            Ok(()) => {
                if period.resolution == "hour" {
                    pass.hours += 1;
                } else {
                    pass.days += 1;
                }
                let released = self.connection.execute(
                    "DELETE FROM rollup_quarantine WHERE resolution = ?1 AND period = ?2",
                    params![period.resolution, period.number],
                )?;
                if released > 0 {
                    tracing::warn!(period = %period, "a quarantined roll-up rolled this time: out of quarantine");
                }
                return Ok(());
            }
            Err(error) if transient(&error.source) => return Err(error.source),
            Err(error) => error,
        };
        pass.failed += 1;
        let cause = error.source.to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let new = self.connection.execute(
            "INSERT OR IGNORE INTO rollup_quarantine (resolution, period, table_name, cause, since)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![period.resolution, period.number, error.table, cause, now],
        )?;
        if new > 0 {
            self.rolled.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                period = %period,
                table = error.table,
                store = %self.path,
                error = %cause,
                "could not roll up {period}: quarantined (its finer rows are kept and it is tried again each pass; \
                 see the rollup_quarantine table), the other periods and retention go on"
            );
        } else {
            self.connection.execute(
                "UPDATE rollup_quarantine SET table_name = ?3, cause = ?4 WHERE resolution = ?1 AND period = ?2",
                params![period.resolution, period.number, error.table, cause],
            )?;
        }
        Ok(())
    }

    /// The periods of `resolution` in quarantine, ascending.
    fn quarantined(&self, resolution: &str) -> Result<Vec<i64>, rusqlite::Error> {
        let mut statement = self
            .connection
            .prepare("SELECT period FROM rollup_quarantine WHERE resolution = ?1 ORDER BY period")?;
        let rows = statement.query_map([resolution], |row| row.get(0))?;
        rows.collect()
    }

    /// Where rolling starts: the recorded progress, else the oldest data
    /// (floored to `period` minutes), else `target`.
    fn start(&self, key: &str, oldest: &str, period: i64, target: i64) -> Result<i64, rusqlite::Error> {
        let recorded: Option<i64> = self
            .connection
            .query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?;
        let start = match recorded {
            Some(minute) => minute,
            None => {
                let oldest: Option<i64> = self.connection.query_row(oldest, [], |row| row.get(0))?;
                oldest.map_or(target, |m| m.div_euclid(period) * period).min(target)
            }
        };
        let shared = if key == "rolled_hours_until" {
            &self.rolled.hours_until
        } else {
            &self.rolled.days_until
        };
        shared.store(start, Ordering::Relaxed);
        Ok(start)
    }

    fn advance(&self, key: &str, shared: &AtomicI64, minute: i64) -> Result<(), rusqlite::Error> {
        self.connection.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, minute.to_string()],
        )?;
        shared.store(minute, Ordering::Relaxed);
        Ok(())
    }

    fn dirty(&self, resolution: &str) -> Result<Vec<i64>, rusqlite::Error> {
        let mut statement = self
            .connection
            .prepare("SELECT period FROM dirty WHERE resolution = ?1 ORDER BY period")?;
        let rows = statement.query_map([resolution], |row| row.get(0))?;
        rows.collect()
    }

    /// Merged histograms per series of `table` rows with `column` in
    /// `from..to`, read through `connection` (the roll's own transaction).
    fn merged(
        connection: &rusqlite::Connection,
        table: &str,
        column: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, Histogram>, rusqlite::Error> {
        let sql =
            format!("SELECT h.series, {HISTOGRAM_COLUMNS} FROM {table} h WHERE h.{column} >= ?1 AND h.{column} < ?2");
        let mut statement = connection.prepare(&sql)?;
        let rows = statement.query_map(params![from, to], |row| {
            Ok((row.get::<_, i64>(0)?, row_histogram(row, 1)?))
        })?;
        let mut merged: BTreeMap<i64, Histogram> = BTreeMap::new();
        for row in rows {
            let (series, histogram) = row?;
            match merged.get_mut(&series) {
                Some(total) => total.merge(&histogram),
                None => {
                    merged.insert(series, histogram);
                }
            }
        }
        Ok(merged)
    }

    fn roll_hour(&mut self, hour: i64) -> Result<(), RollError> {
        let (from, to) = (hour * 60, hour * 60 + 60);
        let days_until = self.rolled.days_until.load(Ordering::Relaxed);
        // The minutes are read and the dirty mark cleared in one write
        // transaction, taken before the read: a flush that lands late
        // points in this hour (and marks it dirty) comes wholly before it
        // or wholly after, never between (which rolled the hour without
        // them and then cleared their mark).
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(at("histogram_hour"))?;
        let histograms =
            Self::merged(&transaction, "histogram_minute", "minute", from, to).map_err(at("histogram_minute"))?;
        transaction
            .execute("DELETE FROM histogram_hour WHERE hour = ?1", [hour])
            .and_then(|_| write_histograms(&transaction, ("histogram_hour", "hour"), hour, &histograms))
            .map_err(at("histogram_hour"))?;
        transaction
            .execute("DELETE FROM counter_hour WHERE hour = ?1", [hour])
            .map_err(at("counter_hour"))?;
        transaction
            .execute(
                "INSERT INTO counter_hour (series, label, hour, value)
             SELECT series, label, ?1, SUM(value) FROM counter_minute WHERE minute >= ?2 AND minute < ?3
             GROUP BY series, label",
                params![hour, from, to],
            )
            .map_err(at("counter_hour"))?;
        txn::roll(&transaction, "hour", hour).map_err(at("txn_histogram_hour"))?;
        transaction
            .execute("DELETE FROM error_hour WHERE hour = ?1", [hour])
            .map_err(at("error_hour"))?;
        transaction
            .execute(
                "INSERT INTO error_hour (series, hour, error_type, message, location, count, last_seen, fingerprint,
                                     first_minute, trace_id, stack_hash, stacktrace)
             SELECT series, ?1, error_type, message, location, SUM(count), MAX(last_seen), MAX(fingerprint),
                    MIN(minute), trace_id, stack_hash, MAX(stacktrace)
             FROM error_minute
             WHERE minute >= ?2 AND minute < ?3 GROUP BY series, error_type, message, location, trace_id, stack_hash",
                params![hour, from, to],
            )
            .map_err(at("error_hour"))?;
        transaction
            .execute("DELETE FROM dirty WHERE resolution = 'hour' AND period = ?1", [hour])
            .map_err(at("dirty"))?;
        // A day that can no longer be rolled from its hours had the late
        // points merged into it on flush.
        if from < days_until && Late::of(&self.rolled).day_rebuilds(from) {
            transaction
                .execute(
                    "INSERT OR IGNORE INTO dirty (resolution, period) VALUES ('day', ?1)",
                    [from.div_euclid(1_440)],
                )
                .map_err(at("dirty"))?;
        }
        transaction.commit().map_err(at("histogram_hour"))
    }

    fn roll_day(&mut self, day: i64) -> Result<(), RollError> {
        let (from, to) = (day * 24, day * 24 + 24);
        // As for an hour: read and cleared in one write transaction.
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(at("histogram_day"))?;
        let histograms =
            Self::merged(&transaction, "histogram_hour", "hour", from, to).map_err(at("histogram_hour"))?;
        transaction
            .execute("DELETE FROM histogram_day WHERE day = ?1", [day])
            .and_then(|_| write_histograms(&transaction, ("histogram_day", "day"), day, &histograms))
            .map_err(at("histogram_day"))?;
        transaction
            .execute("DELETE FROM counter_day WHERE day = ?1", [day])
            .map_err(at("counter_day"))?;
        transaction
            .execute(
                "INSERT INTO counter_day (series, label, day, value)
             SELECT series, label, ?1, SUM(value) FROM counter_hour WHERE hour >= ?2 AND hour < ?3
             GROUP BY series, label",
                params![day, from, to],
            )
            .map_err(at("counter_day"))?;
        txn::roll(&transaction, "day", day).map_err(at("txn_histogram_day"))?;
        transaction
            .execute("DELETE FROM dirty WHERE resolution = 'day' AND period = ?1", [day])
            .map_err(at("dirty"))?;
        transaction.commit().map_err(at("histogram_day"))
    }

    /// Records from which minute `across`'s rows across hosts are whole,
    /// once: from the start on a store without rolled rows of its
    /// resolution, else from the next period to roll (older ones are
    /// filled in by [`Roller::backfill_across_hosts`]).
    fn mark_across_hosts(&mut self, across: &AcrossHosts) -> Result<(), rusqlite::Error> {
        let recorded: Option<i64> = self
            .connection
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1",
                [across.progress],
                |row| row.get(0),
            )
            .optional()?;
        let shared = across.shared(&self.rolled);
        if let Some(minute) = recorded {
            shared.store(minute, Ordering::Relaxed);
            return Ok(());
        }
        let rolled: bool = self.connection.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM histogram_{} UNION ALL SELECT 1 FROM counter_{0})",
                across.name
            ),
            [],
            |row| row.get(0),
        )?;
        let from = if rolled {
            across.rolled_until(&self.rolled).load(Ordering::Relaxed)
        } else {
            super::plan::NEVER
        };
        self.advance(across.progress, shared, from)
    }

    /// Fills in the rows across hosts of up to [`BACKFILL_PER_PASS`]
    /// periods of `across` rolled before they existed, newest first;
    /// returns how many.
    fn backfill_across_hosts(&mut self, across: &AcrossHosts) -> Result<usize, rusqlite::Error> {
        let minutes = across.minutes;
        let mut done = 0;
        while done < BACKFILL_PER_PASS {
            let from = across.shared(&self.rolled).load(Ordering::Relaxed);
            if from <= super::plan::NEVER {
                break;
            }
            let oldest: Option<i64> = self.connection.query_row(
                &format!(
                    "SELECT MIN(p) FROM (SELECT MIN({0}) AS p FROM histogram_{0} UNION ALL SELECT MIN({0}) FROM counter_{0})",
                    across.name
                ),
                [],
                |row| row.get(0),
            )?;
            let period = from.div_euclid(minutes) - 1;
            match oldest {
                Some(oldest) if oldest <= period => {
                    // Write-locked from the read on, as a roll is: a late
                    // point's merge into the period comes wholly before or after.
                    let transaction = self
                        .connection
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    txn::roll(&transaction, across.name, period)?;
                    transaction.commit()?;
                    let shared = across.shared(&self.rolled);
                    self.advance(across.progress, shared, period * minutes)?;
                    done += 1;
                }
                // Nothing older: whole from the start.
                _ => {
                    let shared = across.shared(&self.rolled);
                    self.advance(across.progress, shared, super::plan::NEVER)?;
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Deletes what is past its retention and already rolled up.
    fn retain(&mut self, now_minute: i64, hours_until: i64, days_until: i64) -> Result<usize, rusqlite::Error> {
        let r = &self.retention;
        let minute_cutoff = (now_minute - r.minute_days * 1_440).min(hours_until);
        let hour_cutoff = (now_minute - r.hour_days * 1_440).min(days_until) / 60;
        let day_cutoff = (now_minute - r.day_days * 1_440) / 1_440;
        let trace_cutoff = i128::from(now_minute - r.minute_days * 1_440) * 60_000_000_000;
        let trace_cutoff = i64::try_from(trace_cutoff).unwrap_or(0);
        let seen_cutoff = i64::try_from(i128::from(hour_cutoff) * 3_600_000_000_000).unwrap_or(0);
        // Readers widen windows that reach past what is kept (see `plan`).
        self.advance("minutes_kept_from", &self.rolled.minutes_from, minute_cutoff)?;
        self.advance("hours_kept_from", &self.rolled.hours_from, hour_cutoff * 60)?;
        // The finer rows of a quarantined period are kept: it is rolled
        // from them once it can be.
        let kept_hours =
            "NOT EXISTS (SELECT 1 FROM rollup_quarantine q WHERE q.resolution = 'hour' AND q.period = minute / 60)";
        let kept_days =
            "NOT EXISTS (SELECT 1 FROM rollup_quarantine q WHERE q.resolution = 'day' AND q.period = hour / 24)";
        let mut deleted = 0;
        for (table, key, column, cutoff) in [
            ("histogram_minute", "series, minute", "minute", minute_cutoff),
            ("txn_histogram_minute", "series, minute", "minute", minute_cutoff),
            ("txn_counter_minute", "series, label, minute", "minute", minute_cutoff),
            ("counter_minute", "series, label, minute", "minute", minute_cutoff),
            (
                "error_minute",
                "series, minute, error_type, message, location, trace_id, stack_hash",
                "minute",
                minute_cutoff,
            ),
            ("kept_trace", "series, hour, trace_id", "start", trace_cutoff),
            ("histogram_hour", "series, hour", "hour", hour_cutoff),
            ("counter_hour", "series, label, hour", "hour", hour_cutoff),
            (
                "error_hour",
                "series, hour, error_type, message, location, trace_id, stack_hash",
                "hour",
                hour_cutoff,
            ),
            // Links tie errors in hour rows too: kept as long as those.
            ("trace_link", "trace_id, span_id", "minute", hour_cutoff * 60),
            // Problems not seen for as long as hour rows are kept are forgotten.
            ("problem_seen", "group_id", "last_seen", seen_cutoff),
            ("histogram_day", "series, day", "day", day_cutoff),
            ("counter_day", "series, label, day", "day", day_cutoff),
            ("txn_histogram_hour", "series, hour", "hour", hour_cutoff),
            ("txn_counter_hour", "series, label, hour", "hour", hour_cutoff),
            ("txn_histogram_day", "series, day", "day", day_cutoff),
            ("txn_counter_day", "series, label, day", "day", day_cutoff),
            // A stream silent for as long as minutes are kept has ended; were
            // it to come back, its next point would count whole.
            ("stream", "id", "time", trace_cutoff),
        ] {
            let kept = match table {
                "histogram_minute"
                | "counter_minute"
                | "error_minute"
                | "txn_histogram_minute"
                | "txn_counter_minute" => kept_hours,
                "histogram_hour" | "counter_hour" | "txn_histogram_hour" | "txn_counter_hour" => kept_days,
                _ => "1",
            };
            let sql = format!(
                "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {column} < ?1 AND {kept} LIMIT {CHUNK})"
            );
            loop {
                let removed = self.connection.execute(&sql, [cutoff])?;
                deleted += removed;
                if removed < CHUNK as usize {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

fn write_histograms(
    transaction: &rusqlite::Transaction<'_>,
    table: (&str, &str),
    period: i64,
    histograms: &BTreeMap<i64, Histogram>,
) -> Result<(), rusqlite::Error> {
    for (series, histogram) in histograms {
        write_histogram(transaction, table, *series, period, histogram, true)?;
    }
    Ok(())
}
