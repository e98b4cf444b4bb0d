//! Roll-ups across hosts: what lets a read that does not tell hosts apart
//! ([`Filter::across_hosts`]) read O(transactions) rows, not O(series).
//!
//! A transaction series is a series key without its host. Each histogram
//! and counter minute row carries its transaction series' id ([`txn_id`]),
//! `txn` names them. The writer also merges each block's minute rows across
//! hosts, one per transaction series and minute, into `txn_histogram_in` and
//! `txn_counter_in` (engine `Null`: not kept), and materialised views on
//! those fill `txn_histogram_*` (the histograms' scalars as states),
//! `txn_bucket_*` (their buckets, one row each) and `txn_counter_*` (minute,
//! hour, day) keyed by it; retention drops their partitions as the
//! per-series tables'. They are sorted by time first: a read across hosts
//! takes a stretch of time for every transaction.
//!
//! A read across hosts takes them ([`ClickHouseStore::selections`]) unless
//! the filter names a host, or the window reaches before the roll-ups are
//! whole: a database that had minute rows before schema 3 records the first
//! whole hour after its views were created (`txn_rollup_from` in `meta`),
//! and older windows are read per series and merged.
//!
//! Runs counted from spans (kind `*.spans`) are left out on the hosts where
//! a duration metric counts the transaction (`metric_transaction`, per
//! host): a transaction series of spans whose hosts are all so counted is
//! left out whole, one whose hosts are partly so counted is read per series
//! (rare: hosts of one service sending differently), the rest from the
//! roll-ups.

use std::collections::HashMap;

use serde::Deserialize;

use super::reads::{key_conditions, series_where, Level, Planned, Selection};
use super::{now_nanos, quote, series_id, ClickHouseStore};
use crate::store::hosts::transaction_series;
use crate::store::plan::minutes_of;
use crate::store::{Filter, SeriesKey, StoreError};

/// The key in `meta` of the first minute the roll-ups across hosts hold
/// whole, in a database that had minute rows before them.
pub(super) const TXN_ROLLUP_FROM: &str = "txn_rollup_from";

/// The views that fill the roll-ups across hosts.
const VIEWS: [&str; 9] = [
    "txn_histogram_minute_mv",
    "txn_histogram_hour_mv",
    "txn_histogram_day_mv",
    "txn_bucket_minute_mv",
    "txn_bucket_hour_mv",
    "txn_bucket_day_mv",
    "txn_counter_minute_mv",
    "txn_counter_hour_mv",
    "txn_counter_day_mv",
];

/// The id of `key`'s transaction series: [`series_id`] of the key with an
/// empty host. Stored: it must never change.
pub(super) fn txn_id(key: &SeriesKey) -> u64 {
    series_id(&transaction_series(key))
}

#[derive(Deserialize)]
struct TxnOut {
    id: u64,
    service: String,
    txn: String,
    feature: String,
    kind: String,
    environment: String,
}

/// A transaction series of runs counted from spans on hosts of which a
/// duration metric counts the transaction.
#[derive(Deserialize)]
struct Counted {
    service: String,
    txn: String,
    feature: String,
    kind: String,
    environment: String,
    hosts: u64,
    counted: u64,
}

impl ClickHouseStore {
    /// Brings a database of schema 2 to 3 before the views are created:
    /// minute rows gain `txn_id` (0 in the rows already there, which the
    /// views never see), and when a view across hosts is still to be
    /// created, `meta` records the first whole hour after now as the one
    /// from which the roll-ups across hosts are whole (the latest such mark
    /// wins, so a migration cut short and resumed later stays right).
    pub(super) fn migrate_txn_columns(&self) -> Result<(), StoreError> {
        if self.columns("histogram_minute")?.is_empty() {
            // A new database: whole from its first row.
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Count {
            n: u64,
        }
        let views: Vec<String> = VIEWS.iter().map(|v| quote(v)).collect();
        let present: Vec<Count> = self.select(&format!(
            "SELECT count() AS n FROM system.tables WHERE database = {} AND name IN ({})",
            quote(&self.database),
            views.join(", ")
        ))?;
        if present.first().map_or(0, |c| c.n) < VIEWS.len() as u64 {
            let minute = i64::try_from(now_nanos() / 60_000_000_000).unwrap_or(i64::MAX);
            self.set_meta(TXN_ROLLUP_FROM, (minute.div_euclid(60) + 1) * 60)?;
        }
        for table in ["histogram_minute", "counter_minute"] {
            if self.columns(table)?.contains("txn_id") {
                continue;
            }
            let altered = self.execute(&format!(
                "ALTER TABLE {table} ADD COLUMN {}",
                super::schema::TXN_ID_COLUMN
            ));
            // Another replica may have added it meanwhile.
            match altered {
                Err(_) if self.columns(table)?.contains("txn_id") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Brings the roll-ups across hosts of schema 3 to schema 4's: sorted
    /// by time first, since a read across hosts takes a stretch of time for
    /// every transaction (sorted by transaction, a window's edge read its
    /// whole partition, a day of minutes), and with their buckets in rows
    /// of their own (`txn_bucket_*`), not `sumMap` states (whose reading
    /// cost ~100 ns a bucket on 18.16 and more on 26.9). ClickHouse cannot
    /// re-sort a table or change a view, so their views and tables are
    /// dropped (the schema creates them anew) and `meta` marks the first
    /// whole hour after now as the one from which they are whole: older
    /// windows are read per series and merged, as after schema 3's
    /// migration, until retention has passed the mark.
    pub(super) fn migrate_txn_rollups(&self) -> Result<(), StoreError> {
        if !self.columns("txn_histogram_minute")?.contains("buckets_state") {
            return Ok(());
        }
        let minute = i64::try_from(now_nanos() / 60_000_000_000).unwrap_or(i64::MAX);
        self.set_meta(TXN_ROLLUP_FROM, (minute.div_euclid(60) + 1) * 60)?;
        for view in VIEWS {
            self.execute(&format!("DROP TABLE IF EXISTS {view}"))?;
        }
        for view in VIEWS {
            self.execute(&format!("DROP TABLE IF EXISTS {}", view.trim_end_matches("_mv")))?;
        }
        tracing::info!(
            database = %self.database,
            "re-created the roll-ups across hosts (schema 4); reads across hosts of the time before the next hour are read per series"
        );
        Ok(())
    }

    /// Brings schema 4's roll-ups across hosts to schema 5's feed before
    /// the views are created: their views read every series' minute rows
    /// (`histogram_minute`, `counter_minute`) and are dropped, so that the
    /// schema creates them anew on the rows the writer merges across hosts
    /// (`txn_*_in`). The roll-ups' rows stay, whole: nothing is re-marked.
    /// Every replica of a database must run schema 5 from then on: a
    /// schema 4 replica still writing would not feed the roll-ups.
    pub(super) fn migrate_txn_feed(&self) -> Result<(), StoreError> {
        if self.columns("histogram_minute")?.is_empty() || !self.columns("txn_histogram_in")?.is_empty() {
            return Ok(());
        }
        for view in VIEWS {
            self.execute(&format!("DROP TABLE IF EXISTS {view}"))?;
        }
        tracing::info!(
            database = %self.database,
            "the roll-ups across hosts are now fed by rows merged across hosts (schema 5); every replica of this database must run this version"
        );
        Ok(())
    }

    /// What a histogram or counter read of `filter` over `planned` takes:
    /// per series (hosts emptied in the keys when the filter asks across
    /// hosts but names a host, or the window reaches before the roll-ups
    /// are whole), or the roll-ups across hosts and the few transaction
    /// series read per series (see the [module documentation](self)).
    pub(super) fn selections(&self, filter: &Filter, planned: &Planned) -> Result<Vec<Selection>, StoreError> {
        let whole = planned
            .stretches
            .iter()
            .all(|s| s.from * minutes_of(s.resolution) >= planned.marks.across_hosts_from);
        if !filter.across_hosts || filter.host.is_some() || !whole {
            let mut keys = self.keys_where(&key_conditions(filter), Some(planned.marks.parts))?;
            if filter.across_hosts {
                keys.values_mut().for_each(|key| key.host.clear());
            }
            return Ok(vec![Selection {
                level: Level::Series,
                only: super::reads::series_filter(filter),
                keys,
            }]);
        }
        let mut conditions: Vec<String> = [
            ("service", &filter.service),
            ("txn", &filter.transaction),
            ("feature", &filter.feature),
            ("environment", &filter.environment),
        ]
        .into_iter()
        .filter_map(|(column, value)| value.as_ref().map(|v| format!("{column} = {}", quote(v))))
        .collect();
        // Transaction series of spans a metric counts on some of their hosts.
        let counted = self.select_kept::<Counted>(
            planned.marks.parts,
            &format!(
                "SELECT service, txn, feature, kind, environment, uniqExact(host) AS hosts,
                    uniqExactIf(host, (service, host, txn, environment) IN
                        (SELECT service, host, txn, environment FROM metric_transaction)) AS counted
             FROM series WHERE endsWith(kind, '.spans'){}
             GROUP BY service, txn, feature, kind, environment HAVING counted > 0",
                conditions.iter().map(|c| format!(" AND {c}")).collect::<String>()
            ),
        )?;
        let mut selections = Vec::new();
        let partly: Vec<String> = counted
            .iter()
            .filter(|c| c.counted < c.hosts)
            .map(|c| {
                format!(
                    "({}, {}, {}, {}, {})",
                    quote(&c.service),
                    quote(&c.txn),
                    quote(&c.feature),
                    quote(&c.kind),
                    quote(&c.environment)
                )
            })
            .collect();
        if !partly.is_empty() {
            let mut per_series = key_conditions(filter);
            per_series.push(format!(
                "(service, txn, feature, kind, environment) IN ({})",
                partly.join(", ")
            ));
            let mut keys = self.keys_where(&per_series, Some(planned.marks.parts))?;
            keys.values_mut().for_each(|key| key.host.clear());
            selections.push(Selection {
                level: Level::Series,
                only: series_where(&per_series),
                keys,
            });
        }
        let left_out: Vec<String> = counted
            .iter()
            .map(|c| {
                txn_id(&SeriesKey {
                    service: c.service.clone(),
                    host: String::new(),
                    transaction: c.txn.clone(),
                    feature: c.feature.clone(),
                    kind: c.kind.clone(),
                    environment: c.environment.clone(),
                })
                .to_string()
            })
            .collect();
        if !left_out.is_empty() {
            conditions.push(format!("id NOT IN ({})", left_out.join(", ")));
        }
        let keys = self.transaction_keys(&conditions, planned.marks.parts)?;
        let only = if conditions.is_empty() {
            String::new()
        } else {
            format!(" AND txn_id IN (SELECT id FROM txn WHERE {})", conditions.join(" AND "))
        };
        selections.push(Selection {
            level: Level::Transaction,
            only,
            keys,
        });
        Ok(selections)
    }

    /// The transaction series meeting `conditions` (on `txn`), by id, as
    /// keys with an empty host; as kept for `parts`.
    fn transaction_keys(&self, conditions: &[String], parts: u64) -> Result<HashMap<u64, SeriesKey>, StoreError> {
        let only = super::reads::where_clause(conditions);
        let rows = self.select_kept::<TxnOut>(
            parts,
            &format!("SELECT DISTINCT id, service, txn, feature, kind, environment FROM txn{only}"),
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let key = SeriesKey {
                    service: r.service.clone(),
                    host: String::new(),
                    transaction: r.txn.clone(),
                    feature: r.feature.clone(),
                    kind: r.kind.clone(),
                    environment: r.environment.clone(),
                };
                (r.id, key)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_one_transaction_share_its_id() {
        let key = |host: &str| SeriesKey {
            service: "shop".into(),
            host: host.into(),
            transaction: "GET /".into(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        };
        assert_eq!(txn_id(&key("a")), txn_id(&key("b")));
        assert_eq!(txn_id(&key("a")), series_id(&key("")));
        assert_ne!(txn_id(&key("a")), series_id(&key("a")));
    }
}
