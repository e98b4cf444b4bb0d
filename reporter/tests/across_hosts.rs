//! Reads across hosts (`Filter::across_hosts`, issue #19): one row per
//! transaction series, hosts merged. ClickHouse answers them from its
//! roll-ups across hosts, SQLite by merging its per-series rows; on both,
//! the answer must equal the per-host answer merged by hand, for every
//! histogram and counter read, over windows read from minutes, hours and
//! days, with late points and after retention; runs counted from spans stay
//! left out on the hosts a duration metric counts. Every test runs on both
//! stores (`support/stores.rs`).

#[macro_use]
#[path = "support/stores.rs"]
mod stores;
use stores::{Kind, TestStore};

use std::collections::BTreeMap;
use std::sync::Arc;

use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::{Batch, CounterPoint, Filter, HistogramPoint, SeriesKey, Store};

/// Midnight UTC, Monday 2024-01-01.
const START: i64 = 28_401_120;
const DAY: i64 = 1_440;
const OUTCOMES: &str = "kuroko.transaction.outcomes";

fn key(service: &str, host: &str, transaction: &str, kind: &str) -> SeriesKey {
    SeriesKey {
        service: service.into(),
        host: host.into(),
        transaction: transaction.into(),
        feature: if transaction.starts_with("GET") {
            "browse".into()
        } else {
            String::new()
        },
        kind: kind.into(),
        environment: "prod".into(),
    }
}

/// The series written: three hosts of `shop` (one of them also runs
/// `POST /pay` and is the only one whose duration metric counts `GET /a`,
/// so its runs of `GET /a` counted from spans are left out while the other
/// hosts' are read), `GET /b` counted by the metric on both its hosts (its
/// span-counted series left out whole), and a second service.
fn series() -> Vec<SeriesKey> {
    let mut out = Vec::new();
    for host in ["h1", "h2", "h3"] {
        out.push(key("shop", host, "GET /a", "web.spans"));
        out.push(key("shop", host, "GET /c", "web"));
    }
    out.push(key("shop", "h1", "GET /a", "web"));
    out.push(key("shop", "h1", "POST /pay", "web"));
    for host in ["h1", "h2"] {
        out.push(key("shop", host, "GET /b", "web"));
        out.push(key("shop", host, "GET /b", "web.spans"));
    }
    for host in ["w1", "w2"] {
        out.push(key("worker", host, "resize", "job"));
    }
    out
}

/// Durations that are powers of two, so that every sum is exact whatever
/// order a store adds them in; spread over a wide range on some hosts, so
/// that histograms of different scales are merged.
fn point(series: usize, minute: i64) -> Histogram {
    let mut h = Histogram::empty();
    let spread = if series.is_multiple_of(3) { 12 } else { 3 };
    for i in 0..(1 + (minute + series as i64) % 4) {
        let exponent = ((minute / 7 + i + series as i64) % spread) as i32 - 4;
        h.record(2f64.powi(exponent)).unwrap();
    }
    h
}

/// Points of every series every `every` minutes over `from..to`.
fn batch(from: i64, to: i64, every: i64) -> Batch {
    let mut batch = Batch::default();
    for (index, key) in series().into_iter().enumerate() {
        let key = Arc::new(key);
        let mut minute = from + (index as i64 % every);
        while minute < to {
            let histogram = point(index, minute);
            for (outcome, share) in [("2xx", 3), ("5xx", 1)] {
                batch.counters.push(CounterPoint {
                    key: key.clone(),
                    minute,
                    name: OUTCOMES.into(),
                    labels: format!("kuroko.outcome={outcome}"),
                    value: (histogram.count * share) as f64,
                });
            }
            batch.histograms.push(HistogramPoint {
                key: key.clone(),
                minute,
                histogram,
            });
            minute += every;
        }
    }
    batch
}

fn across(filter: &Filter) -> Filter {
    Filter {
        across_hosts: true,
        ..filter.clone()
    }
}

fn without_host(key: &SeriesKey) -> SeriesKey {
    SeriesKey {
        host: String::new(),
        ..key.clone()
    }
}

fn merge_into<K: Ord>(merged: &mut BTreeMap<K, Histogram>, at: K, histogram: &Histogram) {
    match merged.get_mut(&at) {
        Some(total) => total.merge(histogram),
        None => {
            merged.insert(at, histogram.clone());
        }
    }
}

/// Every histogram and counter read of `filter` over `from..to`, across
/// hosts and per host merged by hand, must be equal; returns how many rows
/// the answers across hosts held.
fn compare(store: &dyn Store, filter: &Filter, from: i64, to: i64) -> usize {
    let what = format!("{filter:?} over {from}..{to}");
    let mut rows = 0;

    let mut expected = BTreeMap::new();
    for (key, h) in store.histograms(filter, from, to).unwrap() {
        merge_into(&mut expected, without_host(&key), &h);
    }
    let got: BTreeMap<SeriesKey, Histogram> = store
        .histograms(&across(filter), from, to)
        .unwrap()
        .into_iter()
        .collect();
    assert!(got.keys().all(|k| k.host.is_empty()), "hosts are emptied: {what}");
    assert_eq!(got, expected, "histograms {what}");
    rows += got.len();

    let mut expected: BTreeMap<(SeriesKey, String), f64> = BTreeMap::new();
    for (key, labels, v) in store.counters(filter, OUTCOMES, from, to).unwrap() {
        *expected.entry((without_host(&key), labels)).or_default() += v;
    }
    let got: BTreeMap<(SeriesKey, String), f64> = store
        .counters(&across(filter), OUTCOMES, from, to)
        .unwrap()
        .into_iter()
        .map(|(k, l, v)| ((k, l), v))
        .collect();
    assert_eq!(got, expected, "counters {what}");

    for step in [7, 60, 1_440] {
        let mut expected = BTreeMap::new();
        for (key, start, h) in store.histogram_steps(filter, from, to, step).unwrap() {
            merge_into(&mut expected, (without_host(&key), start), &h);
        }
        let got: BTreeMap<(SeriesKey, i64), Histogram> = store
            .histogram_steps(&across(filter), from, to, step)
            .unwrap()
            .into_iter()
            .map(|(k, s, h)| ((k, s), h))
            .collect();
        assert_eq!(got, expected, "histogram steps of {step} {what}");

        let mut expected: BTreeMap<(SeriesKey, String, i64), f64> = BTreeMap::new();
        for (key, labels, start, v) in store.counter_steps(filter, OUTCOMES, from, to, step).unwrap() {
            *expected.entry((without_host(&key), labels, start)).or_default() += v;
        }
        let got: BTreeMap<(SeriesKey, String, i64), f64> = store
            .counter_steps(&across(filter), OUTCOMES, from, to, step)
            .unwrap()
            .into_iter()
            .map(|(k, l, s, v)| ((k, l, s), v))
            .collect();
        assert_eq!(got, expected, "counter steps of {step} {what}");

        // Totals are the steps' histograms' counts and sums.
        let totals: BTreeMap<(SeriesKey, i64), (u64, f64)> = store
            .totals_steps(filter, from, to, step)
            .unwrap()
            .into_iter()
            .map(|(k, s, c, t)| ((k, s), (c, t)))
            .collect();
        let from_histograms: BTreeMap<(SeriesKey, i64), (u64, f64)> = store
            .histogram_steps(filter, from, to, step)
            .unwrap()
            .into_iter()
            .filter(|(_, _, h)| h.count > 0)
            .map(|(k, s, h)| ((k, s), (h.count, h.sum)))
            .collect();
        let nonzero: BTreeMap<_, _> = totals.clone().into_iter().filter(|(_, (c, _))| *c > 0).collect();
        assert_eq!(nonzero, from_histograms, "totals of steps of {step} {what}");
        let mut expected: BTreeMap<(SeriesKey, i64), (u64, f64)> = BTreeMap::new();
        for (key, start, count, sum) in store.totals_steps(filter, from, to, step).unwrap() {
            let total = expected.entry((without_host(&key), start)).or_default();
            total.0 += count;
            total.1 += sum;
        }
        let got: BTreeMap<(SeriesKey, i64), (u64, f64)> = store
            .totals_steps(&across(filter), from, to, step)
            .unwrap()
            .into_iter()
            .map(|(k, s, c, t)| ((k, s), (c, t)))
            .collect();
        assert_eq!(got, expected, "totals steps of {step} {what}");

        // Grouped by transaction: the groups see transaction series.
        let mut by_transaction = |key: &SeriesKey| {
            assert!(key.host.is_empty(), "groups see keys without hosts");
            Some(usize::from(key.transaction.len().is_multiple_of(2)))
        };
        let grouped = store
            .histogram_steps_grouped(&across(filter), from, to, step, &mut by_transaction)
            .unwrap();
        let mut expected = BTreeMap::new();
        for (key, start, h) in store.histogram_steps(filter, from, to, step).unwrap() {
            merge_into(
                &mut expected,
                (usize::from(key.transaction.len().is_multiple_of(2)), start),
                &h,
            );
        }
        let grouped: BTreeMap<(usize, i64), Histogram> = grouped.into_iter().map(|(g, s, h)| ((g, s), h)).collect();
        assert_eq!(grouped, expected, "grouped steps of {step} {what}");
    }
    rows
}

/// [`compare`] for every filter and window ending at `now`; some rows found.
fn compare_every_window(store: &dyn Store, now: i64) {
    let mut found = 0;
    for filter in filters() {
        for (from, to) in windows(now) {
            found += compare(store, &filter, from, to);
        }
    }
    assert!(found > 0);
}

/// The windows compared: unaligned (minute edges around hours), whole days,
/// and one reaching into what retention cut.
fn windows(now: i64) -> Vec<(i64, i64)> {
    vec![
        (now - DAY + 17, now - 5),
        (now - 3 * DAY, now),
        (now - 2 * DAY - 333, now - DAY + 1_000),
        (START + 10, now - 61),
    ]
}

fn filters() -> Vec<Filter> {
    vec![
        Filter::default(),
        Filter {
            service: Some("shop".into()),
            ..Filter::default()
        },
        Filter {
            transaction: Some("GET /a".into()),
            ..Filter::default()
        },
        Filter {
            feature: Some("browse".into()),
            environment: Some("prod".into()),
            ..Filter::default()
        },
        // A host named: read per series, the host emptied.
        Filter {
            host: Some("h2".into()),
            ..Filter::default()
        },
    ]
}

suite! {
    #[test]
    fn reads_across_hosts_equal_the_hosts_merged(kind: Kind) {
        let store = TestStore::open(kind, "across_hosts_equal");
        let now = START + 5 * DAY;
        store.write(&batch(START, now - 2 * DAY, 13)).unwrap();
        store.roll_up(Retention { minute_days: 3, hour_days: 90, day_days: 730 }, now - 2 * DAY);
        // Late points: into hours and days already rolled, and the rest.
        store.write(&batch(START + DAY + 5, START + DAY + 200, 11)).unwrap();
        store.write(&batch(now - 2 * DAY, now, 13)).unwrap();
        store.roll_up(Retention { minute_days: 3, hour_days: 90, day_days: 730 }, now);
        let mut rows = 0;
        for filter in filters() {
            for (from, to) in windows(now) {
                rows += compare(&*store, &filter, from, to);
            }
        }
        assert!(rows > 0, "the reads found data");
        // `GET /a` from spans: h1's left out (its metric counts it), h2's and
        // h3's read; `GET /b` from spans left out whole.
        let a = store
            .histograms(&across(&Filter { transaction: Some("GET /a".into()), ..Filter::default() }), now - DAY, now)
            .unwrap();
        let kinds: Vec<&str> = a.iter().map(|(k, _)| k.kind.as_str()).collect();
        assert_eq!(kinds, ["web", "web.spans"]);
        let b = store
            .histograms(&across(&Filter { transaction: Some("GET /b".into()), ..Filter::default() }), now - DAY, now)
            .unwrap();
        assert_eq!(b.iter().map(|(k, _)| k.kind.as_str()).collect::<Vec<_>>(), ["web"]);
        let spans: u64 = a.iter().filter(|(k, _)| k.kind == "web.spans").map(|(_, h)| h.count).sum();
        let per_host: u64 = store
            .histograms(&Filter { transaction: Some("GET /a".into()), ..Filter::default() }, now - DAY, now)
            .unwrap()
            .iter()
            .filter(|(k, _)| k.kind == "web.spans")
            .map(|(k, h)| {
                assert_ne!(k.host, "h1", "h1's runs from spans are counted by its metric");
                h.count
            })
            .sum();
        assert!(spans > 0);
        assert_eq!(spans, per_host);
    }
}

/// A database of schema 2 (minute rows without `txn_id`, no roll-ups across
/// hosts) is migrated on connect: reads across hosts of the hours before
/// the migration are answered per series, those after from the roll-ups,
/// both equal to the hosts merged.
#[test]
fn a_schema_2_database_reads_its_old_hours_per_series() {
    use stores::clickhouse_server::{clickhouse, query};
    let database = "t_across_hosts_schema_2";
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
    let now = START + 3 * DAY;
    let store = clickhouse(database);
    store.write(&batch(START, now, 13)).unwrap();
    drop(store);
    // What schema 2 had: no roll-ups across hosts, no `txn_id`; the rows
    // written stay in the per-series tables.
    for view in ["histogram", "bucket", "counter"]
        .iter()
        .flat_map(|w| ["minute", "hour", "day"].map(|r| format!("txn_{w}_{r}")))
    {
        query(&format!("DROP TABLE {database}.{view}_mv")).unwrap();
        query(&format!("DROP TABLE {database}.{view}")).unwrap();
    }
    query(&format!("DROP TABLE {database}.txn")).unwrap();
    for table in ["histogram_minute", "counter_minute"] {
        query(&format!("ALTER TABLE {database}.{table} DROP COLUMN txn_id")).unwrap();
    }
    query(&format!(
        "INSERT INTO {database}.meta (key, value, at) VALUES ('schema_version', '2', 1)"
    ))
    .unwrap();
    // Migrated on connect: the roll-ups across hosts are empty for the old
    // hours, which are read per series.
    reads_across_a_migration(database, now);
}

/// A database of schema 3 (roll-ups across hosts sorted by transaction,
/// with `sumMap` states) is migrated on connect to schema 4's (sorted by
/// time, buckets in rows): the old hours are read per series, those after
/// from the new roll-ups, both equal to the hosts merged.
#[test]
fn a_schema_3_database_gets_schema_4_roll_ups() {
    use stores::clickhouse_server::{clickhouse, query};
    let database = "t_across_hosts_schema_3";
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
    let now = START + 3 * DAY;
    let store = clickhouse(database);
    store.write(&batch(START, now, 13)).unwrap();
    drop(store);
    // What schema 3 had: roll-ups across hosts sorted by transaction first,
    // their buckets in `sumMap` states, no bucket rows.
    let states = "scale Int8, count_state AggregateFunction(sum, UInt64), sum_state AggregateFunction(sum, Float64),
        min_state AggregateFunction(minIf, Float64, UInt8), max_state AggregateFunction(maxIf, Float64, UInt8),
        zero_count_state AggregateFunction(sum, UInt64), zero_threshold_state AggregateFunction(max, Float64),
        estimated_state AggregateFunction(max, UInt8), buckets_state AggregateFunction(sumMap, Array(Int32), Array(UInt64))";
    for r in ["minute", "hour", "day"] {
        for table in [
            format!("txn_bucket_{r}"),
            format!("txn_histogram_{r}"),
            format!("txn_counter_{r}"),
        ] {
            query(&format!("DROP TABLE {database}.{table}_mv")).unwrap();
            query(&format!("DROP TABLE {database}.{table}")).unwrap();
        }
        query(&format!(
            "CREATE TABLE {database}.txn_histogram_{r} (txn_id UInt64, {r} Int64, {states})
             ENGINE = AggregatingMergeTree ORDER BY (txn_id, {r}, scale)"
        ))
        .unwrap();
        query(&format!(
            "CREATE TABLE {database}.txn_counter_{r}
             (txn_id UInt64, name String, labels String, {r} Int64, value_state AggregateFunction(sum, Float64))
             ENGINE = AggregatingMergeTree ORDER BY (txn_id, name, labels, {r})"
        ))
        .unwrap();
    }
    query(&format!(
        "INSERT INTO {database}.meta (key, value, at) VALUES ('schema_version', '3', 1)"
    ))
    .unwrap();
    reads_across_a_migration(database, now);
}

/// A database of schema 4, whose roll-ups across hosts were fed by views on
/// every series' minute rows, gets schema 5's views on rows merged across
/// hosts: the old views are dropped (else each point would be counted twice
/// from then on), the roll-ups' rows stay and are read as they were,
/// nothing is re-marked.
#[test]
fn a_schema_4_database_feeds_its_roll_ups_once() {
    use stores::clickhouse_server::{clickhouse, connect_again, query};
    let database = "t_across_hosts_schema_4";
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
    let now = START + 3 * DAY;
    let store = clickhouse(database);
    store.write(&batch(START, START + DAY, 13)).unwrap();
    drop(store);
    // What schema 4 had: the views on the minute rows, no feeds.
    let states = "scale, sumState(count) AS count_state, sumState(sum) AS sum_state,
        minIfState(min, count > 0) AS min_state, maxIfState(max, count > 0) AS max_state,
        sumState(zero_count) AS zero_count_state, maxState(zero_threshold) AS zero_threshold_state,
        maxState(estimated) AS estimated_state";
    for (r, key) in [
        ("minute", "minute"),
        ("hour", "intDiv(minute, 60)"),
        ("day", "intDiv(minute, 1440)"),
    ] {
        for view in ["histogram", "bucket", "counter"] {
            query(&format!("DROP TABLE {database}.txn_{view}_{r}_mv")).unwrap();
        }
        query(&format!(
            "CREATE MATERIALIZED VIEW {database}.txn_histogram_{r}_mv TO {database}.txn_histogram_{r} AS
             SELECT txn_id, {key} AS {r}, {states} FROM {database}.histogram_minute GROUP BY txn_id, {r}, scale"
        ))
        .unwrap();
        query(&format!(
            "CREATE MATERIALIZED VIEW {database}.txn_bucket_{r}_mv TO {database}.txn_bucket_{r} AS
             SELECT {key} AS {r}, txn_id, scale, idx, sum(cnt) AS n
             FROM {database}.histogram_minute ARRAY JOIN bucket_index AS idx, bucket_count AS cnt
             GROUP BY {r}, txn_id, scale, idx"
        ))
        .unwrap();
        query(&format!(
            "CREATE MATERIALIZED VIEW {database}.txn_counter_{r}_mv TO {database}.txn_counter_{r} AS
             SELECT txn_id, name, labels, {key} AS {r}, sumState(value) AS value_state
             FROM {database}.counter_minute GROUP BY txn_id, name, labels, {r}"
        ))
        .unwrap();
    }
    for feed in ["txn_histogram_in", "txn_counter_in"] {
        query(&format!("DROP TABLE {database}.{feed}")).unwrap();
    }
    query(&format!(
        "INSERT INTO {database}.meta (key, value, at) VALUES ('schema_version', '4', 1)"
    ))
    .unwrap();
    let store = connect_again(database);
    let on_minutes = query(&format!(
        "SELECT count() FROM system.tables WHERE database = '{database}' AND name LIKE 'txn\\_%\\_mv'
         AND (create_table_query LIKE '%FROM {database}.histogram_minute%'
              OR create_table_query LIKE '%FROM {database}.counter_minute%')"
    ))
    .unwrap();
    assert_eq!(on_minutes.trim(), "0", "no view across hosts reads the minute rows");
    store.write(&batch(START + DAY, now, 13)).unwrap();
    compare_every_window(&store, now);
    let marked = query(&format!(
        "SELECT count() FROM {database}.meta WHERE key = 'txn_rollup_from'"
    ))
    .unwrap();
    assert_eq!(marked.trim(), "0", "the roll-ups stay whole: nothing re-marked");
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
}

/// A database of schema 5 kept each series' hour and day buckets in `sumMap`
/// states, whose merges took a third of ClickHouse's time per block
/// written; schema 6 sums them into maps (`series_bucket_*`). The hours
/// rolled before keep their buckets in their states: per-series reads of
/// windows before, across and after the migration (an hour and a day part
/// rolled each way) equal the points written, merged by hand.
#[test]
fn a_schema_5_database_reads_its_old_hour_buckets_with_the_new() {
    use stores::clickhouse_server::{clickhouse, connect_again, query};
    let database = "t_across_hosts_schema_5";
    let now = START + 3 * DAY;
    let store = clickhouse(database);
    // What schema 5 had: views keeping the buckets in states, no maps.
    let states = "scale, sumState(count) AS count_state, sumState(sum) AS sum_state,
        minIfState(min, count > 0) AS min_state, maxIfState(max, count > 0) AS max_state,
        sumState(zero_count) AS zero_count_state, maxState(zero_threshold) AS zero_threshold_state,
        maxState(estimated) AS estimated_state, sumMapState(bucket_index, bucket_count) AS buckets_state";
    for (r, key) in [("hour", "intDiv(minute, 60)"), ("day", "intDiv(minute, 1440)")] {
        for table in [
            format!("series_bucket_{r}_mv"),
            format!("series_bucket_{r}"),
            format!("histogram_{r}_mv"),
        ] {
            query(&format!("DROP TABLE {database}.{table}")).unwrap();
        }
        query(&format!(
            "CREATE MATERIALIZED VIEW {database}.histogram_{r}_mv TO {database}.histogram_{r} AS
             SELECT series_id, {key} AS {r}, {states} FROM {database}.histogram_minute GROUP BY series_id, {r}, scale"
        ))
        .unwrap();
    }
    query(&format!(
        "INSERT INTO {database}.meta (key, value, at) VALUES ('schema_version', '5', 1)"
    ))
    .unwrap();
    // Written through schema 5's views (this connection migrated before
    // they were put back), up to 10:17 of the second day.
    let split = START + DAY + 617;
    let old = batch(START, split, 13);
    store.write(&old).unwrap();
    drop(store);

    let store = connect_again(database);
    let count = |sql: String| -> u64 { query(&sql).unwrap().trim().parse().unwrap() };
    assert_eq!(
        count(format!(
            "SELECT count() FROM system.tables WHERE database = '{database}'
             AND create_table_query LIKE '%sumMapState(bucket_index%'"
        )),
        0,
        "no view keeps buckets in states"
    );
    let new = batch(split, now, 13);
    store.write(&new).unwrap();
    // The old hours' buckets are in their states, the new ones' in maps.
    let stated = |r: &str, at: i64| {
        count(format!(
            "SELECT count() FROM (SELECT sumMapMerge(buckets_state) AS m FROM {database}.histogram_{r}
             WHERE {r} = {at} GROUP BY series_id) WHERE length(tupleElement(m, 1)) > 0"
        ))
    };
    let mapped = |r: &str, at: i64| {
        count(format!(
            "SELECT count() FROM {database}.series_bucket_{r} WHERE {r} = {at} AND length(bucketsMap.idx) > 0"
        ))
    };
    let (old_hour, new_hour) = (START / 60, (now - 60) / 60);
    assert!(stated("hour", old_hour) > 0 && mapped("hour", old_hour) == 0);
    assert!(stated("hour", new_hour) == 0 && mapped("hour", new_hour) > 0);
    assert!(
        stated("hour", split / 60) > 0 && mapped("hour", split / 60) > 0,
        "the hour of the migration: both"
    );

    let points: Vec<HistogramPoint> = old.histograms.into_iter().chain(new.histograms).collect();
    let one_host = Filter {
        host: Some("h2".into()),
        ..Filter::default()
    };
    let mut read = 0;
    for filter in [Filter::default(), one_host] {
        for (from, to) in windows(now).into_iter().chain([(split - 61, split + 61)]) {
            // Runs counted from spans are left out where a metric counts
            // them, which other tests check: the duration metrics' series.
            let mut expected = BTreeMap::new();
            for p in points.iter().filter(|p| {
                p.minute >= from
                    && p.minute < to
                    && !p.key.kind.ends_with(".spans")
                    && filter.host.as_ref().is_none_or(|host| *host == p.key.host)
            }) {
                merge_into(&mut expected, (*p.key).clone(), &p.histogram);
            }
            let got: BTreeMap<SeriesKey, Histogram> = store
                .histograms(&filter, from, to)
                .unwrap()
                .into_iter()
                .filter(|(key, _)| !key.kind.ends_with(".spans"))
                .collect();
            let keys = |m: &BTreeMap<SeriesKey, Histogram>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&got), keys(&expected), "series read {filter:?} over {from}..{to}");
            for (key, want) in &expected {
                let h = &got[key];
                let summary = |h: &Histogram| {
                    (
                        h.scale,
                        h.count,
                        h.sum,
                        h.min,
                        h.max,
                        h.iter_buckets().collect::<Vec<_>>(),
                    )
                };
                assert_eq!(summary(h), summary(want), "{key:?} over {from}..{to}");
            }
            read += got.len();
        }
    }
    assert!(read > 0);
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
}

/// Reopens `database`, written up to `now` before a migration that left its
/// roll-ups across hosts empty: reads of the old hours are per series, the
/// first whole hour after the migration is marked, and points after it are
/// read from the roll-ups, all equal to the hosts merged.
fn reads_across_a_migration(database: &str, now: i64) {
    use stores::clickhouse_server::{connect_again, query};
    let store = connect_again(database);
    let sorted = query(&format!(
        "SELECT count() FROM system.tables WHERE database = '{database}' AND name LIKE 'txn\\_%'
         AND engine_full LIKE '%ORDER BY (txn_id%'"
    ))
    .unwrap();
    assert_eq!(sorted.trim(), "0", "every roll-up across hosts sorted by time");
    let buckets = query(&format!(
        "SELECT count() FROM system.tables WHERE database = '{database}' AND name LIKE 'txn\\_bucket\\_%'"
    ))
    .unwrap();
    assert_eq!(buckets.trim(), "6", "bucket rows across hosts and their views");
    compare_every_window(&store, now);
    let marked = query(&format!(
        "SELECT max(toInt64(value)) FROM {database}.meta WHERE key = 'txn_rollup_from'"
    ))
    .unwrap();
    let marked: i64 = marked.trim().parse().unwrap();
    let wall = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60) as i64;
    assert!(
        marked > wall && marked <= wall + 60,
        "the first whole hour after the migration: {marked}"
    );
    // Points after the mark are read from the roll-ups, equal to the hosts merged.
    let later = marked + 2 * 60;
    store.write(&batch(later, later + DAY, 13)).unwrap();
    let mut found = 0;
    for filter in filters() {
        found += compare(&store, &filter, later + 17, later + DAY - 5);
    }
    assert!(found > 0);
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
}

/// ClickHouse reads across hosts from its roll-ups, not from the per-series
/// rows: emptied, the answer across hosts holds only the transaction series
/// read per series (runs from spans on hosts partly counted by a metric).
#[test]
fn clickhouse_reads_across_hosts_from_its_roll_ups() {
    use stores::clickhouse_server::query;
    let store = TestStore::open(Kind::ClickHouse, "across_hosts_roll_ups");
    let now = START + DAY;
    store.write(&batch(START, now, 13)).unwrap();
    let all = Filter::default();
    let (from, to) = (START + 17, now - 5);
    assert!(!store.histograms(&across(&all), from, to).unwrap().is_empty());
    assert!(!store.counters(&across(&all), OUTCOMES, from, to).unwrap().is_empty());
    for table in ["histogram", "bucket", "counter"]
        .iter()
        .flat_map(|w| ["minute", "hour", "day"].map(|r| format!("txn_{w}_{r}")))
    {
        query(&format!("TRUNCATE TABLE t_across_hosts_roll_ups.{table}")).unwrap();
    }
    let per_series_only = |key: &SeriesKey| key.transaction == "GET /a" && key.kind == "web.spans";
    let left = store.histograms(&across(&all), from, to).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left.iter().all(|(k, _)| per_series_only(k)), "{left:?}");
    let left = store.counters(&across(&all), OUTCOMES, from, to).unwrap();
    assert!(left.iter().all(|(k, _, _)| per_series_only(k)), "{left:?}");
    assert!(store.histograms(&all, from, to).unwrap().len() > 10);
}

/// The embedded store reads whole hours and days across hosts from its own
/// roll-ups (`txn_*`, filled by its roller): emptied, only the series they
/// cannot answer (spans partly counted by a metric) are left. A file rolled
/// before those tables existed (schema 3) is read per series until the
/// roller has filled them in backwards, then from them, with equal answers.
#[test]
fn sqlite_reads_across_hosts_from_its_roll_ups() {
    use kuroko_reporter::store::sqlite::SqliteStore;
    let dir = std::env::temp_dir().join(format!("kuroko-across-rollups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kuroko.db");
    let store = SqliteStore::open(&path).unwrap();
    let now = START + 3 * DAY;
    store.write(&batch(START, now, 13)).unwrap();
    store.flush().unwrap();
    let retention = Retention::default;
    store.roller(retention()).unwrap().run(now + 5).unwrap();
    let all = Filter::default();
    // Whole days and hours only: nothing read from minutes.
    let (from, to) = (START, now - 120);
    let answers = |store: &SqliteStore| {
        (
            store.histograms(&across(&all), from, to).unwrap(),
            store.counters(&across(&all), OUTCOMES, from, to).unwrap(),
            store.histogram_steps(&across(&all), from, to, 60).unwrap(),
        )
    };
    let rolled = answers(&store);
    assert!(rolled.0.len() > 3 && !rolled.1.is_empty() && !rolled.2.is_empty());
    compare(&store, &all, from, to);
    // Minutes only (the last hour is not rolled): from the minute rows
    // across hosts, which each flush fills.
    let minutes = (now - 50, now - 5);
    assert!(store.histograms(&across(&all), minutes.0, minutes.1).unwrap().len() > 3);
    compare(&store, &all, minutes.0, minutes.1);

    let sql = rusqlite::Connection::open(&path).unwrap();
    let empty_roll_ups = || {
        for table in [
            "txn_histogram_minute",
            "txn_counter_minute",
            "txn_histogram_hour",
            "txn_histogram_day",
            "txn_counter_hour",
            "txn_counter_day",
        ] {
            sql.execute(&format!("DELETE FROM {table}"), []).unwrap();
        }
    };
    empty_roll_ups();
    let per_series_only = |key: &SeriesKey| key.transaction == "GET /a" && key.kind == "web.spans";
    let left = store.histograms(&across(&all), from, to).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left.iter().all(|(k, _)| per_series_only(k)), "{left:?}");
    let left = store.counters(&across(&all), OUTCOMES, from, to).unwrap();
    assert!(left.iter().all(|(k, _, _)| per_series_only(k)), "{left:?}");
    let left = store.histograms(&across(&all), minutes.0, minutes.1).unwrap();
    assert!(left.iter().all(|(k, _)| per_series_only(k)), "{left:?}");
    drop(store);

    // As a schema 3 file: rolled, without roll-ups across hosts or their marks.
    sql.execute(
        "DELETE FROM meta WHERE key IN ('txn_minutes_from', 'txn_hours_from', 'txn_days_from')",
        [],
    )
    .unwrap();
    sql.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'", [])
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(answers(&store), rolled, "before the roller ran: read per series");
    // Minutes flushed before the upgrade are read per series.
    assert!(store.histograms(&across(&all), minutes.0, minutes.1).unwrap().len() > 3);
    compare(&store, &all, minutes.0, minutes.1);
    let mut roller = store.roller(retention()).unwrap();
    let first = roller.run(now + 5).unwrap();
    assert_eq!(first.backfilled, 48 + 3, "48 hours (the most per pass) and the 3 days");
    assert_eq!(answers(&store), rolled, "partly filled in");
    let mut passes = 1;
    while roller.run(now + 5).unwrap().backfilled > 0 {
        passes += 1;
    }
    assert_eq!(passes, 2, "72 hours take two passes");
    assert_eq!(answers(&store), rolled, "filled in");
    let txn_hours: i64 = sql
        .query_row("SELECT COUNT(DISTINCT hour) FROM txn_histogram_hour", [], |r| r.get(0))
        .unwrap();
    assert_eq!(txn_hours, 72);
    empty_roll_ups();
    assert_eq!(
        store.histograms(&across(&all), from, to).unwrap().len(),
        1,
        "read from the roll-ups"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A window that ends after the last point is read from the roll-up of the
/// day it ends in (nothing lies past its end); a point written past the end
/// then stops that, and is never counted.
#[test]
fn points_past_a_window_are_not_read_with_it() {
    let store = TestStore::open(Kind::ClickHouse, "across_hosts_past_the_end");
    let now = START + 2 * DAY + 437;
    store.write(&batch(START, now, 13)).unwrap();
    let all = across(&Filter::default());
    let (from, to) = (now - DAY + 17, now + 1);
    let read = |store: &TestStore| {
        let histograms = store.histograms(&all, from, to).unwrap();
        let counters = store.counters(&all, OUTCOMES, from, to).unwrap();
        let steps = store.histogram_steps(&all, from, to, 60).unwrap();
        (histograms, counters, steps)
    };
    let before = read(&store);
    assert!(!before.0.is_empty());
    let sqlite = TestStore::open(Kind::Sqlite, "across_hosts_past_the_end");
    sqlite.write(&batch(START, now, 13)).unwrap();
    sqlite.roll_up(Retention::default(), now + 60);
    assert_eq!(read(&sqlite), before, "the same as the embedded store's minutes");
    for later in [now + 1, now + 70] {
        store.write(&batch(later, later + 1, 1)).unwrap();
        assert_eq!(read(&store), before, "a point at {later}, past the window, is not read");
    }
}

/// More transaction series than a query numbers in SQL (5,000): ClickHouse
/// reads them by id and groups them itself, and the answer is still the
/// hosts merged by hand.
#[test]
fn more_transactions_than_a_query_numbers_are_grouped_alike() {
    let store = TestStore::open(Kind::ClickHouse, "across_hosts_many");
    let now = START + DAY;
    let mut batch = Batch::default();
    for index in 0..5_200usize {
        for host in ["h1", "h2"] {
            let key = Arc::new(key("shop", host, &format!("GET /t{index}"), "web"));
            for minute in [now - 70, now - 20] {
                batch.histograms.push(HistogramPoint {
                    key: key.clone(),
                    minute: minute + (index % 7) as i64,
                    histogram: point(index, minute),
                });
            }
        }
    }
    store.write(&batch).unwrap();
    let group_of = |key: &SeriesKey| key.transaction.len() % 3;
    let (from, to, step) = (now - 120, now, 60);
    let mut expected = BTreeMap::new();
    for (key, start, h) in store.histogram_steps(&Filter::default(), from, to, step).unwrap() {
        merge_into(&mut expected, (group_of(&key), start), &h);
    }
    let mut by_group = |key: &SeriesKey| {
        assert!(key.host.is_empty(), "groups see keys without hosts");
        Some(group_of(key))
    };
    let grouped: BTreeMap<(usize, i64), Histogram> = store
        .histogram_steps_grouped(&across(&Filter::default()), from, to, step, &mut by_group)
        .unwrap()
        .into_iter()
        .map(|(g, s, h)| ((g, s), h))
        .collect();
    assert_eq!(grouped.len(), 6, "three groups, two steps");
    assert_eq!(grouped, expected, "grouped steps of 5,200 transactions");
}
