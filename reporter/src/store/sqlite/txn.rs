//! Roll-ups across hosts in the embedded store: what lets a read that does
//! not tell hosts apart ([`Filter::across_hosts`]) read O(transactions)
//! rows, not O(series), as ClickHouse's `txn_*` tables do
//! (`store/clickhouse/txn.rs`).
//!
//! A transaction series is a series key without its host (`txn_series`).
//! Each flush adds its points to the minute rows across hosts
//! (`txn_histogram_minute`, `txn_counter_minute`: [`merge_minutes`]), in
//! the transaction that writes the per-series minutes, so a read of the
//! current hour's minutes reads one row per transaction and minute.
//! Whenever the roller writes a series' hour or day row, it rebuilds that
//! period's rows across hosts ([`roll`]): each transaction series' hosts
//! merged into one histogram row (`txn_histogram_hour`, `_day`) and one
//! counter row per label (`txn_counter_hour`, `_day`), keyed as the
//! per-series rows are (a read seeks each transaction series' stretch of
//! time) and indexed by period (for rolling and retention). Late
//! points merged into rolled rows (`writes.rs`) rebuild their periods the
//! same way, and retention cuts them with the per-series rows.
//!
//! A store written before these tables has hour and day rows without them:
//! the roller records from which minute each resolution is whole
//! (`txn_hours_from`, `txn_days_from` in `meta`, and [`Rolled`]) and fills
//! older periods backwards, a few per pass ([`BACKFILL_PER_PASS`]); minute
//! rows are whole from the minute after the last one such a file held
//! (`txn_minutes_from`, [`mark_minutes`]), and older minutes are not filled
//! in (retention drops them within days). Reads
//! take the roll-ups only where they are whole ([`split`]); the rest, and
//! minutes, are read per series and merged.
//!
//! Runs counted from spans (kind `*.spans`) are left out on the hosts where
//! a duration metric counts the transaction (`metric_transaction`, per
//! host, see `reads.rs`): a transaction series of spans whose hosts are
//! all so counted is left out whole, one whose hosts are partly so counted
//! is read per series ([`Exclusions`]), the rest from the roll-ups.
//!
//! [`Filter::across_hosts`]: crate::store::Filter::across_hosts
//! [`Rolled`]: crate::store::rollup::Rolled

use std::collections::BTreeMap;

use rusqlite::{params, Connection, Transaction};
use rustc_hash::FxHashMap;

use super::writes::read_histogram;
use super::{row_histogram, write_histogram, HISTOGRAM_COLUMNS};
use crate::histogram::Histogram;
use crate::store::pending::Pending;
use crate::store::plan::{ceil_to, minutes_of, Stretch, NEVER};

/// Hours and days whose roll-ups across hosts a roller pass fills in for
/// periods rolled before they existed, each.
pub(crate) const BACKFILL_PER_PASS: usize = 48;

/// A minute no data reaches: "not whole yet" (far from `i64::MAX`, so that
/// rounding it cannot overflow).
pub(crate) const NOT_YET: i64 = i64::MAX / 4;

/// Joins a per-series row `h` (through `series s`) to its transaction series `t`.
const TO_TXN: &str = "JOIN series s ON s.id = h.series
     JOIN txn_series t ON t.service = s.service AND t.txn = s.txn AND t.feature = s.feature
                      AND t.kind = s.kind AND t.environment = s.environment";

/// Records, once, from which minute the minute rows across hosts are
/// whole: from the start in a store without minute rows, else from the
/// minute after the latest one it holds (those were flushed without them).
pub(crate) fn mark_minutes(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection.execute(
        "INSERT OR IGNORE INTO meta (key, value)
         SELECT 'txn_minutes_from', CAST(COALESCE(MAX(m) + 1, ?1) AS TEXT)
         FROM (SELECT MAX(minute) AS m FROM histogram_minute UNION ALL SELECT MAX(minute) FROM counter_minute)",
        [NEVER],
    )?;
    Ok(())
}

/// The transaction series of `series`, created when new.
pub(crate) fn txn_id(connection: &Connection, series: i64) -> Result<i64, rusqlite::Error> {
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO txn_series (service, txn, feature, kind, environment)
             SELECT service, txn, feature, kind, environment FROM series WHERE id = ?1",
        )?
        .execute([series])?;
    connection
        .prepare_cached(&format!("SELECT t.id FROM (SELECT ?1 AS series) h {TO_TXN}"))?
        .query_row([series], |row| row.get(0))
}

/// Adds a flush's points to the minute rows across hosts: each transaction
/// series' hosts (`txn_of`: series id to transaction series id) merged per
/// minute, then with what earlier flushes left in the row.
pub(crate) fn merge_minutes(
    transaction: &Transaction<'_>,
    pending: &Pending,
    txn_of: &FxHashMap<i64, i64>,
) -> Result<(), rusqlite::Error> {
    let mut merged: FxHashMap<(i64, i64), Histogram> = FxHashMap::default();
    for (&(series, minute), histogram) in &pending.histograms {
        let Some(&txn) = txn_of.get(&series) else { continue };
        match merged.entry((txn, minute)) {
            std::collections::hash_map::Entry::Occupied(mut total) => total.get_mut().merge(histogram),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(histogram.clone());
            }
        }
    }
    const TABLE: (&str, &str) = ("txn_histogram_minute", "minute");
    for ((txn, minute), histogram) in merged {
        if !write_histogram(transaction, TABLE, txn, minute, &histogram, false)? {
            if let Some(mut stored) = read_histogram(transaction, TABLE.0, txn, minute)? {
                stored.merge(&histogram);
                write_histogram(transaction, TABLE, txn, minute, &stored, true)?;
            }
        }
    }
    let mut sums: FxHashMap<(i64, i64, i64), f64> = FxHashMap::default();
    for (&(series, label, minute), value) in &pending.counters {
        if let Some(&txn) = txn_of.get(&series) {
            *sums.entry((txn, label, minute)).or_default() += value;
        }
    }
    let mut add = transaction.prepare_cached(
        "INSERT INTO txn_counter_minute (series, label, minute, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (series, label, minute) DO UPDATE SET value = value + excluded.value",
    )?;
    for ((txn, label, minute), value) in sums {
        add.execute(params![txn, label, minute, value])?;
    }
    Ok(())
}

/// Rebuilds the rows across hosts of `resolution` (`hour` or `day`) for
/// `period` (hours or days since the epoch) from its per-series rows.
pub(crate) fn roll(transaction: &Transaction<'_>, resolution: &str, period: i64) -> Result<(), rusqlite::Error> {
    let r = resolution;
    for table in ["histogram", "counter"] {
        transaction
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO txn_series (service, txn, feature, kind, environment)
                 SELECT DISTINCT s.service, s.txn, s.feature, s.kind, s.environment
                 FROM {table}_{r} h JOIN series s ON s.id = h.series WHERE h.{r} = ?1"
            ))?
            .execute([period])?;
    }
    transaction
        .prepare_cached(&format!("DELETE FROM txn_histogram_{r} WHERE {r} = ?1"))?
        .execute([period])?;
    let mut merged: BTreeMap<i64, Histogram> = BTreeMap::new();
    {
        let mut statement = transaction.prepare_cached(&format!(
            "SELECT t.id, {HISTOGRAM_COLUMNS} FROM histogram_{r} h {TO_TXN} WHERE h.{r} = ?1"
        ))?;
        let rows = statement.query_map([period], |row| Ok((row.get::<_, i64>(0)?, row_histogram(row, 1)?)))?;
        for row in rows {
            let (id, histogram) = row?;
            match merged.entry(id) {
                std::collections::btree_map::Entry::Occupied(mut total) => total.get_mut().merge(&histogram),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(histogram);
                }
            }
        }
    }
    let table = format!("txn_histogram_{r}");
    for (id, histogram) in &merged {
        write_histogram(transaction, (&table, r), *id, period, histogram, true)?;
    }
    transaction
        .prepare_cached(&format!("DELETE FROM txn_counter_{r} WHERE {r} = ?1"))?
        .execute([period])?;
    transaction
        .prepare_cached(&format!(
            "INSERT INTO txn_counter_{r} (series, label, {r}, value)
             SELECT t.id, h.label, ?1, SUM(h.value) FROM counter_{r} h {TO_TXN} WHERE h.{r} = ?1
             GROUP BY t.id, h.label"
        ))?
        .execute([period])?;
    Ok(())
}

/// Splits `stretches` into those read from the roll-ups across hosts
/// (minutes, hours and days from `whole_from`'s minutes, each a unix
/// minute) and those read per series: periods before the roll-ups are whole.
pub(super) fn split(stretches: Vec<Stretch>, whole_from: [i64; 3]) -> (Vec<Stretch>, Vec<Stretch>) {
    let (mut rolled, mut per_series) = (Vec::new(), Vec::new());
    for stretch in stretches {
        let minutes = minutes_of(stretch.resolution);
        let whole_from = match stretch.resolution {
            "day" => whole_from[2],
            "hour" => whole_from[1],
            _ => whole_from[0],
        };
        // The first period whose rows across hosts are whole.
        let first = ceil_to(whole_from, minutes) / minutes;
        if stretch.from >= first {
            rolled.push(stretch);
        } else if stretch.to <= first {
            per_series.push(stretch);
        } else {
            per_series.push(Stretch { to: first, ..stretch });
            rolled.push(Stretch { from: first, ..stretch });
        }
    }
    (rolled, per_series)
}

/// Transaction series of spans that a duration metric counts on some of
/// their hosts: left out of the roll-ups' reads, and those counted on only
/// some hosts read per series instead.
pub(super) struct Exclusions {
    /// SQL on `txn_series s`: the transaction series read from the roll-ups.
    pub(super) rolled_only: String,
    /// SQL on `series s`: the series of the partly counted ones, when any.
    pub(super) partly: Option<String>,
}

impl Exclusions {
    pub(super) fn read(connection: &Connection) -> Result<Exclusions, rusqlite::Error> {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT t.id, COUNT(*) AS hosts,
                    SUM(EXISTS (SELECT 1 FROM metric_transaction m WHERE m.service = s.service AND m.host = s.host
                                AND m.txn = s.txn AND m.environment = s.environment)) AS counted
             FROM (SELECT id AS series FROM series WHERE kind LIKE '%.spans') h {TO_TXN}
             GROUP BY t.id HAVING counted > 0"
        ))?;
        let counted: Vec<(i64, i64, i64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let list = |ids: &mut dyn Iterator<Item = i64>| ids.map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        let rolled_only = if counted.is_empty() {
            "1".to_owned()
        } else {
            format!("s.id NOT IN ({})", list(&mut counted.iter().map(|c| c.0)))
        };
        let partly: Vec<i64> = counted.iter().filter(|c| c.2 < c.1).map(|c| c.0).collect();
        let partly = if partly.is_empty() {
            None
        } else {
            let mut statement = connection.prepare(&format!(
                "SELECT s.id FROM (SELECT id AS series FROM series) h {TO_TXN} WHERE t.id IN ({})",
                list(&mut partly.into_iter())
            ))?;
            let series: Vec<i64> = statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
            Some(format!("s.id IN ({})", list(&mut series.into_iter())))
        };
        Ok(Exclusions { rolled_only, partly })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stretch(resolution: &'static str, from: i64, to: i64) -> Stretch {
        Stretch { resolution, from, to }
    }

    #[test]
    fn stretches_before_the_roll_ups_are_whole_are_read_per_series() {
        // Minutes whole from minute 6,610, hours from hour 100, days from day 5.
        let (rolled, per_series) = split(
            vec![
                stretch("day", 3, 8),
                stretch("hour", 90, 110),
                stretch("minute", 6_600, 6_630),
            ],
            [6_610, 100 * 60, 5 * 1_440],
        );
        assert_eq!(
            rolled,
            vec![
                stretch("day", 5, 8),
                stretch("hour", 100, 110),
                stretch("minute", 6_610, 6_630)
            ]
        );
        assert_eq!(
            per_series,
            vec![
                stretch("day", 3, 5),
                stretch("hour", 90, 100),
                stretch("minute", 6_600, 6_610)
            ]
        );
        // A mark inside a period: that period is not whole.
        let (rolled, _) = split(vec![stretch("hour", 90, 110)], [NOT_YET, 100 * 60 + 1, NOT_YET]);
        assert_eq!(rolled, vec![stretch("hour", 101, 110)]);
        let (rolled, per_series) = split(vec![stretch("day", 3, 8)], [0, 0, NOT_YET]);
        assert!(rolled.is_empty());
        assert_eq!(per_series, vec![stretch("day", 3, 8)]);
    }
}
