//! The ClickHouse store against a real ClickHouse server (Debian's
//! `clickhouse-server` 18.16, installed by tests/run-all.sh; or a current
//! engine, chDB, with `KUROKO_TEST_CLICKHOUSE=chdb`): the same batches
//! written to it and to the embedded store give the same answers; several
//! replicas write at once; the delivery ledger and alert states follow the
//! embedded store's rules, and two replicas racing for the same deliveries
//! win each exactly once.
//!
//! The server is started by `support/clickhouse_server.rs`. Each test uses
//! a database of its own. No server, no pass: a test fails with the reason.
//!
//! Over 800 lines on purpose: one capability (the ClickHouse store), its
//! cases sharing one server and the comparison helpers below.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kuroko_reporter::deliver::ledger;
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::store::clickhouse::ClickHouseStore;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::state::{AlertState, DeliveryState, LedgerEntry, LedgerStatus, LEASE_SECONDS};
use kuroko_reporter::store::{
    Batch, CounterPoint, DatabaseError, ErrorPoint, Filter, HistogramPoint, SeriesKey, Store, StoreError, TraceLink,
    TracePoint, NO_TRANSACTION,
};
use kuroko_reporter::synthetic::AgentMinutes;

#[path = "support/exported.rs"]
mod exported;
use exported::at_scale;

#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;
use clickhouse_server::{clickhouse, connect_again, free_port, server, url};

/// The run is on the engine it asked for: with `KUROKO_TEST_CLICKHOUSE=chdb`
/// a current release (chDB), not 18.16 a second time.
#[test]
fn the_engine_is_the_one_the_run_asked_for() {
    let version = clickhouse_server::query("SELECT version()").unwrap();
    let major: u32 = version
        .trim()
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("not a version: {version:?}"));
    let least = if clickhouse_server::on_chdb() { 24 } else { 18 };
    assert!(major >= least, "ClickHouse {} answered", version.trim());
}

fn sqlite(name: &str) -> (SqliteStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!("kuroko-chcmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (SqliteStore::open(&dir.join("store.db")).unwrap(), dir)
}

fn key(host: &str) -> SeriesKey {
    SeriesKey {
        service: "cards-api".into(),
        host: host.into(),
        transaction: "GET /cards/{id}".into(),
        feature: "cards".into(),
        kind: "web".into(),
        environment: String::new(),
    }
}

fn recorded(values: &[f64]) -> Histogram {
    let mut h = Histogram::empty();
    for &v in values {
        h.record(v).unwrap();
    }
    h
}

/// Scale, count, zero count, buckets, min, max and estimated.
type Exact = (i32, u64, u64, Vec<(i32, u64)>, f64, f64, bool);

/// Everything but the float sum, which may be added in another order.
fn exact(h: &Histogram) -> Exact {
    (
        h.scale,
        h.count,
        h.zero_count,
        h.iter_buckets().collect(),
        h.min,
        h.max,
        h.estimated,
    )
}

fn assert_same_histograms(a: &[(SeriesKey, Histogram)], b: &[(SeriesKey, Histogram)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: series");
    for ((ka, ha), (kb, hb)) in a.iter().zip(b) {
        assert_eq!(ka, kb, "{what}");
        assert_eq!(exact(ha), exact(hb), "{what}: {ka:?}");
        assert!((ha.sum - hb.sum).abs() <= 1e-9 * ha.sum.abs().max(1.0), "{what}: sums");
    }
}

/// The embedded store's test batches, with errors, traces, zeros, an
/// environment and mixed scales.
fn batches() -> Vec<Batch> {
    let outcome = |host: &str, minute, labels: &str, value| CounterPoint {
        key: key(host).into(),
        minute,
        name: "kuroko.transaction.outcomes".into(),
        labels: labels.into(),
        value,
    };
    let error = |host: &str, minute, message: &str, count, last_seen| ErrorPoint {
        key: key(host),
        minute,
        error_type: "TimeoutError".into(),
        message: message.into(),
        location: "cards.rs:42".into(),
        count,
        last_seen,
        // One of them with the service's own grouping key, which both stores keep.
        fingerprint: if message.contains("pool") {
            "cards-pool".into()
        } else {
            String::new()
        },
        stacktrace: String::new(),
        trace_id: String::new(),
    };
    // Errors that came with a trace but no transaction, one with a stack
    // trace: tied to the transaction when its trace's link is kept.
    let untied = |host: &str, minute: i64, trace: &str, stacktrace: &str| ErrorPoint {
        key: SeriesKey {
            transaction: NO_TRANSACTION.into(),
            feature: String::new(),
            kind: "job".into(),
            ..key(host)
        },
        minute,
        error_type: "KeyError".into(),
        message: format!("'{trace}'"),
        location: String::new(),
        count: 1,
        last_seen: minute as u64 * 60_000_000_000 + 30_000_000_000,
        fingerprint: String::new(),
        stacktrace: stacktrace.into(),
        trace_id: trace.into(),
    };
    let link = |host: &str, minute: u64, trace: &str, failed: bool| TraceLink {
        key: key(host),
        trace_id: trace.into(),
        span_id: "00f067aa0ba902b7".into(),
        start: minute * 60_000_000_000,
        end: minute * 60_000_000_000 + 59_000_000_000,
        failed,
    };
    let stack = "Traceback (most recent call last):\n  File \"/app/cards.py\", line 3, in get\nKeyError: 'x'";
    let trace = |host: &str, id: &str, minute: u64, duration| TracePoint {
        key: key(host),
        trace_id: id.into(),
        start: minute * 60_000_000_000 + 5,
        duration,
        spans: format!("[{{\"name\":\"{id}\"}}]"),
    };
    let mut production = key("a");
    production.environment = "production".into();
    let mut quoted = key("c");
    quoted.service = r"o'brien \ api".into();
    let mut with_zeros = Histogram::from_exponential(7, 3, 0.000_001, -300, &[2, 0, 1], 6, Some(0.02), None).unwrap();
    with_zeros.estimated = true;
    let first = Batch {
        histograms: vec![
            HistogramPoint {
                key: key("a").into(),
                minute: 100,
                histogram: recorded(&[0.010, 0.020]),
            },
            HistogramPoint {
                key: key("b").into(),
                minute: 100,
                histogram: recorded(&[0.030]),
            },
            HistogramPoint {
                key: key("a").into(),
                minute: 101,
                histogram: recorded(&[0.040]),
            },
            HistogramPoint {
                key: production.clone().into(),
                minute: 990,
                histogram: at_scale(&[0.25, 0.5, 3.0], 3),
            },
            HistogramPoint {
                key: quoted.clone().into(),
                minute: 500,
                histogram: with_zeros,
            },
        ],
        counters: vec![
            outcome("a", 100, "kuroko.outcome=5xx", 2.0),
            outcome("a", 100, "kuroko.outcome=ok", 7.0),
            outcome("b", 700, "kuroko.outcome=ok", 1.0),
        ],
        errors: vec![
            error("a", 100, "upstream timed out", 3, 6_000_000_000_001),
            error("a", 130, "upstream timed out", 1, 7_900_000_000_000),
            error("b", 101, "pool exhausted", 5, 6_070_000_000_000),
            untied("a", 100, "4bf92f3577b34da6a3ce929d0e0e4736", stack),
            untied("a", 130, "5bf92f3577b34da6a3ce929d0e0e4736", ""),
            untied("b", 700, "6bf92f3577b34da6a3ce929d0e0e4736", stack),
        ],
        traces: vec![
            trace("a", "t1", 100, 0.9),
            trace("a", "t2", 101, 1.7),
            trace("b", "t3", 700, 0.4),
        ],
        links: vec![],
        streams: Vec::new(),
    };
    // The same minute again merges; a finer scale arrives for a's minute 101.
    let second = Batch {
        histograms: vec![
            first.histograms[0].clone(),
            HistogramPoint {
                key: key("a").into(),
                minute: 101,
                histogram: at_scale(&[0.041, 0.7], 5),
            },
            HistogramPoint {
                key: production.into(),
                minute: 991,
                histogram: at_scale(&[0.26], 7),
            },
        ],
        counters: vec![first.counters[0].clone()],
        errors: vec![error("a", 100, "upstream timed out", 2, 6_000_000_000_500)],
        traces: vec![trace("b", "t4", 701, 2.5)],
        // The first two errors' traces: one waited for, one failed (the
        // second error's trace is another); one that nothing waits for.
        links: vec![
            link("b", 100, "4bf92f3577b34da6a3ce929d0e0e4736", false),
            link("a", 700, "6bf92f3577b34da6a3ce929d0e0e4736", true),
            link("a", 700, "7bf92f3577b34da6a3ce929d0e0e4736", false),
        ],
        streams: Vec::new(),
    };
    vec![first, second]
}

fn filters() -> Vec<Filter> {
    vec![
        Filter::default(),
        Filter {
            host: Some("a".into()),
            ..Filter::default()
        },
        Filter {
            environment: Some("production".into()),
            ..Filter::default()
        },
        Filter {
            service: Some(r"o'brien \ api".into()),
            ..Filter::default()
        },
        Filter {
            service: Some("' OR 1 = 1 OR '".into()),
            ..Filter::default()
        },
    ]
}

#[test]
fn answers_as_the_embedded_store_does() {
    let (embedded, dir) = sqlite("answers");
    let shared = clickhouse("kuroko_answers");
    for batch in batches() {
        embedded.write(&batch).unwrap();
        shared.write(&batch).unwrap();
    }
    let mut series = shared.series().unwrap();
    let mut expected = embedded.series().unwrap();
    series.sort();
    expected.sort();
    assert_eq!(series, expected);
    // Four with points, and the untied errors' series of hosts a and b.
    assert_eq!(series.len(), 6);

    for filter in filters() {
        for (from, to) in [(0, 1_000), (100, 101), (101, 1_000), (0, 3_000), (-500, 95), (950, 991)] {
            let what = format!("{filter:?} {from}..{to}");
            assert_same_histograms(
                &shared.histograms(&filter, from, to).unwrap(),
                &embedded.histograms(&filter, from, to).unwrap(),
                &what,
            );
            assert_eq!(
                shared
                    .counters(&filter, "kuroko.transaction.outcomes", from, to)
                    .unwrap(),
                embedded
                    .counters(&filter, "kuroko.transaction.outcomes", from, to)
                    .unwrap(),
                "{what}"
            );
            assert_eq!(
                shared.errors(&filter, from, to).unwrap(),
                embedded.errors(&filter, from, to).unwrap(),
                "{what}"
            );
            assert_eq!(
                shared.slowest_traces(&filter, from, to, 3).unwrap(),
                embedded.slowest_traces(&filter, from, to, 3).unwrap(),
                "{what}"
            );
            // Every transaction's slowest at once: each transaction's own, from both.
            let by_transaction = |mut traces: Vec<TracePoint>| {
                traces.sort_by(|a, b| {
                    (&a.key.service, &a.key.transaction)
                        .cmp(&(&b.key.service, &b.key.transaction))
                        .then(b.duration.total_cmp(&a.duration))
                        .then(a.trace_id.cmp(&b.trace_id))
                });
                traces
            };
            for limit in [1, 2] {
                let each = by_transaction(embedded.slowest_traces_each(&filter, from, to, limit).unwrap());
                assert_eq!(
                    by_transaction(shared.slowest_traces_each(&filter, from, to, limit).unwrap()),
                    each,
                    "each, {limit}: {what}"
                );
                let mut transactions: Vec<(String, String)> = embedded
                    .slowest_traces(&filter, from, to, 1_000)
                    .unwrap()
                    .into_iter()
                    .map(|t| (t.key.service, t.key.transaction))
                    .collect();
                transactions.sort();
                transactions.dedup();
                let mut own = Vec::new();
                for (service, transaction) in transactions {
                    let one = Filter {
                        service: Some(service),
                        transaction: Some(transaction),
                        ..filter.clone()
                    };
                    own.extend(embedded.slowest_traces(&one, from, to, limit).unwrap());
                }
                assert_eq!(by_transaction(own), each, "each, {limit}, against one by one: {what}");
            }
        }
    }
    // A request's runs by trace id (the joined waterfall): the same from both.
    let kept = embedded.slowest_traces(&Filter::default(), -1_000, 3_000, 100).unwrap();
    assert!(!kept.is_empty(), "the batches keep traces");
    for trace in &kept {
        for (from, to) in [(-1_000, 3_000), (0, 1_000), (950, 991)] {
            assert_eq!(
                shared.traces_with_id(&trace.trace_id, from, to).unwrap(),
                embedded.traces_with_id(&trace.trace_id, from, to).unwrap(),
                "trace {} in {from}..{to}",
                trace.trace_id
            );
        }
        assert!(shared
            .traces_with_id(&trace.trace_id, -1_000, 3_000)
            .unwrap()
            .contains(trace));
    }
    assert!(shared
        .traces_with_id("no-such-trace", -1_000, 3_000)
        .unwrap()
        .is_empty());
    assert!(
        shared.traces_with_id("it's", -1_000, 3_000).unwrap().is_empty(),
        "quoted"
    );

    // What a user would see: a's five runs, merged across pieces, minutes and scales.
    let a = shared
        .histograms(
            &Filter {
                host: Some("a".into()),
                environment: Some(String::new()),
                ..Filter::default()
            },
            0,
            1_000,
        )
        .unwrap();
    assert_eq!((a[0].1.count, a[0].1.scale), (7, 5));
    assert_eq!(a[0].1.max, 0.7);
    // The errors that came without a transaction: tied through their trace
    // where its link was kept, with their stack traces.
    let untied: Vec<(String, String, String, bool)> = shared
        .errors(&Filter::default(), 0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.error_type == "KeyError")
        .map(|e| (e.message, e.key.host, e.key.transaction, !e.stacktrace.is_empty()))
        .collect();
    let mut untied = untied;
    untied.sort();
    let row =
        |m: &str, host: &str, transaction: &str, stack| (format!("'{m}'"), host.into(), transaction.into(), stack);
    assert_eq!(
        untied,
        [
            row("4bf92f3577b34da6a3ce929d0e0e4736", "a", "GET /cards/{id}", true),
            row("5bf92f3577b34da6a3ce929d0e0e4736", "a", NO_TRANSACTION, false),
            row("6bf92f3577b34da6a3ce929d0e0e4736", "b", "GET /cards/{id}", true),
        ]
    );
    let injected = Filter {
        service: Some("' OR 1 = 1 OR '".into()),
        ..Filter::default()
    };
    assert!(shared.histograms(&injected, 0, 1_000).unwrap().is_empty());
    assert!(shared.size_bytes() > 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// The end of [`days_of_points`]: midnight UTC (a unix minute).
const DAYS_END: i64 = 20_833 * 1_440;

/// Three days of a point every 7 minutes (mixed scales, two outcomes),
/// starting off the hour, after the test batches.
fn days_of_points() -> Batch {
    let start = DAYS_END - 3 * 1_440 + 13;
    let mut batch = Batch::default();
    for i in 0..(3 * 1_440 / 7) {
        let minute = start + i * 7;
        let value = 0.001 * (1 + i % 50) as f64;
        let histogram = if i % 3 == 0 {
            at_scale(&[value, value * 2.0], 5)
        } else {
            recorded(&[value, value * 2.0])
        };
        batch.histograms.push(HistogramPoint {
            key: key(if i % 2 == 0 { "a" } else { "b" }).into(),
            minute,
            histogram,
        });
        for (labels, value) in [("kuroko.outcome=ok", 2.0), ("kuroko.outcome=5xx", (i % 3) as f64)] {
            batch.counters.push(CounterPoint {
                key: key("a").into(),
                minute,
                name: "kuroko.transaction.outcomes".into(),
                labels: labels.into(),
                value,
            });
        }
    }
    batch
}

#[test]
fn steps_answer_as_the_embedded_store_does() {
    let (embedded, dir) = sqlite("steps");
    let shared = clickhouse("kuroko_steps");
    for batch in batches().into_iter().chain([days_of_points()]) {
        embedded.write(&batch).unwrap();
        shared.write(&batch).unwrap();
    }
    let days = (DAYS_END - 3 * 1_440, DAYS_END);
    let windows = [
        (0, 1_000),
        (-500, 95),
        (100, 102),
        (days.0, days.1),
        (days.0 - 45, days.1 + 17),
        (days.0 + 600, days.0 + 2_000),
    ];
    let mut compared = 0;
    for filter in filters() {
        for (from, to) in windows {
            for step in [1, 7, 60, 90, 1_440, 2_880] {
                let what = format!("{filter:?} {from}..{to} by {step}");
                let got = shared.histogram_steps(&filter, from, to, step).unwrap();
                let want = embedded.histogram_steps(&filter, from, to, step).unwrap();
                assert_eq!(got.len(), want.len(), "{what}: steps");
                for ((kg, sg, hg), (kw, sw, hw)) in got.iter().zip(&want) {
                    assert_eq!((kg, sg), (kw, sw), "{what}");
                    assert_eq!(exact(hg), exact(hw), "{what}: {kg:?} at {sg}");
                    assert!((hg.sum - hw.sum).abs() <= 1e-9 * hw.sum.abs().max(1.0), "{what}: sums");
                }
                assert_eq!(
                    shared
                        .counter_steps(&filter, "kuroko.transaction.outcomes", from, to, step)
                        .unwrap(),
                    embedded
                        .counter_steps(&filter, "kuroko.transaction.outcomes", from, to, step)
                        .unwrap(),
                    "{what}"
                );
                compared += want.len();
            }
        }
    }
    assert!(compared > 1_000, "the windows hold steps: {compared}");
    // What a chart shows: a's day in steps of 6 hours, 4 points per day,
    // every run counted once though read from hour rows.
    let a = Filter {
        host: Some("a".into()),
        ..Filter::default()
    };
    let quarters = shared.histogram_steps(&a, days.0, days.0 + 1_440, 360).unwrap();
    assert_eq!(
        quarters.iter().map(|(_, start, _)| start - days.0).collect::<Vec<_>>(),
        vec![0, 360, 720, 1_080]
    );
    let runs: u64 = quarters.iter().map(|(_, _, h)| h.count).sum();
    let whole = shared.histograms(&a, days.0, days.0 + 1_440).unwrap();
    assert_eq!(runs, whole[0].1.count);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mixed_scales_merge_exactly_in_sql() {
    let shared = clickhouse("kuroko_scales");
    // Sub-second durations have negative bucket indexes: downscaling must floor.
    let pieces = [
        (at_scale(&[0.0011, 0.0013, 0.2, 0.21], 7), 10),
        (at_scale(&[0.0012, 0.5, 30.0], 4), 11),
        (at_scale(&[0.0009, 0.05], 1), 70),
        (at_scale(&[0.3, 0.31, 0.32], 7), 2_000),
    ];
    let mut expected = pieces[0].0.clone();
    for (h, _) in &pieces[1..] {
        expected.merge(h);
    }
    shared
        .write(&Batch {
            histograms: pieces
                .iter()
                .map(|(histogram, minute)| HistogramPoint {
                    key: key("a").into(),
                    minute: *minute,
                    histogram: histogram.clone(),
                })
                .collect(),
            ..Batch::default()
        })
        .unwrap();
    // Minutes, hours and a day, all in one window.
    let merged = shared.histograms(&Filter::default(), 0, 2_001).unwrap();
    assert_eq!(merged.len(), 1);
    assert_eq!(exact(&merged[0].1), exact(&expected));
    assert_eq!(merged[0].1.scale, 1, "the coarsest scale present");
    let minute_ten = shared.histograms(&Filter::default(), 10, 11).unwrap();
    assert_eq!(
        exact(&minute_ten[0].1),
        exact(&pieces[0].0),
        "one piece keeps its scale"
    );
}

#[test]
fn replicas_write_at_once_and_a_reader_sees_all() {
    let database = "kuroko_replicas";
    drop(clickhouse(database));
    let replicas: Vec<Arc<ClickHouseStore>> = (0..2).map(|_| Arc::new(connect_again(database))).collect();
    let threads: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(r, replica)| {
            let replica = replica.clone();
            std::thread::spawn(move || {
                for minute in 0..20 {
                    let batch = Batch {
                        histograms: vec![
                            HistogramPoint {
                                key: key(&format!("replica-{r}")).into(),
                                minute,
                                histogram: recorded(&[0.01, 0.02]),
                            },
                            HistogramPoint {
                                key: key("shared").into(),
                                minute,
                                histogram: recorded(&[0.05]),
                            },
                        ],
                        counters: vec![CounterPoint {
                            key: key("shared").into(),
                            minute,
                            name: "kuroko.transaction.outcomes".into(),
                            labels: "kuroko.outcome=ok".into(),
                            value: 1.0,
                        }],
                        ..Batch::default()
                    };
                    replica.write(&batch).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let reader = connect_again(database);
    let all = reader.histograms(&Filter::default(), 0, 20).unwrap();
    let counts: BTreeMap<String, u64> = all.iter().map(|(k, h)| (k.host.clone(), h.count)).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("replica-0".to_owned(), 40),
            ("replica-1".to_owned(), 40),
            ("shared".to_owned(), 40)
        ])
    );
    assert_eq!(
        reader.series().unwrap().len(),
        3,
        "each series once, though both wrote it"
    );
    let counted = reader
        .counters(&Filter::default(), "kuroko.transaction.outcomes", 0, 20)
        .unwrap();
    assert_eq!(counted[0].2, 40.0);
}

/// A replica keeps what it learnt of which series exist between reads
/// (`store/clickhouse/kept.rs`): series another replica writes afterwards
/// are still in its next answers, per series and across hosts.
#[test]
fn a_reader_sees_series_written_by_another_replica_after_it_read() {
    let database = "kuroko_kept_series";
    drop(clickhouse(database));
    let (reader, writer) = (connect_again(database), connect_again(database));
    let across = Filter {
        across_hosts: true,
        ..Filter::default()
    };
    let hosts = |store: &ClickHouseStore| -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = store
            .histograms(&Filter::default(), 0, 10)
            .unwrap()
            .into_iter()
            .map(|(k, h)| (k.host, h.count))
            .collect();
        found.sort();
        found
    };
    let runs = |store: &ClickHouseStore| -> (u64, f64) {
        let histograms = store.histograms(&across, 0, 10).unwrap();
        let counters = store.counters(&across, "kuroko.transaction.outcomes", 0, 10).unwrap();
        (
            histograms.iter().map(|(_, h)| h.count).sum(),
            counters.iter().map(|(_, _, v)| v).sum(),
        )
    };
    writer.write(&one_minute("a", 0)).unwrap();
    assert_eq!(hosts(&reader), vec![("a".to_owned(), 2)]);
    assert_eq!(runs(&reader), (2, 2.0));
    // Asked again with nothing new: the same answers.
    assert_eq!(hosts(&reader), vec![("a".to_owned(), 2)]);
    writer.write(&one_minute("b", 1)).unwrap();
    assert_eq!(
        hosts(&reader),
        vec![("a".to_owned(), 2), ("b".to_owned(), 2)],
        "a series written after the reader's last read is in its next answer"
    );
    assert_eq!(runs(&reader), (4, 4.0), "and in its answers across hosts");
}

/// One histogram point and one counter of `host` at `minute`.
fn one_minute(host: &str, minute: i64) -> Batch {
    Batch {
        histograms: vec![HistogramPoint {
            key: key(host).into(),
            minute,
            histogram: recorded(&[0.01, 0.02]),
        }],
        counters: vec![CounterPoint {
            key: key(host).into(),
            minute,
            name: "kuroko.transaction.outcomes".into(),
            labels: "kuroko.outcome=ok".into(),
            value: 2.0,
        }],
        ..Batch::default()
    }
}

#[test]
fn concurrent_writes_share_inserts_and_return_once_their_rows_are_stored() {
    let database = "kuroko_group_commit";
    let store = Arc::new(clickhouse(database));
    let (writers, writes) = (16, 10);
    let barrier = Arc::new(std::sync::Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let host = format!("writer-{w}");
                let id = kuroko_reporter::store::clickhouse::series_id(&key(&host));
                for minute in 1_000..1_000 + writes {
                    store.write(&one_minute(&host, minute)).unwrap();
                    // Acknowledged means stored: another connection sees it at once.
                    let seen = clickhouse_server::query(&format!(
                        "SELECT count() FROM {database}.histogram_minute WHERE series_id = {id} AND minute = {minute}"
                    ))
                    .unwrap();
                    assert_eq!(seen.trim(), "1", "{host} at {minute}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let all = store.histograms(&Filter::default(), 0, 2_000).unwrap();
    assert_eq!(all.len(), writers);
    assert!(all.iter().all(|(_, h)| h.count == 2 * writes as u64), "every run once");
    let counted = store
        .counters(&Filter::default(), "kuroko.transaction.outcomes", 0, 2_000)
        .unwrap();
    assert_eq!(
        counted.iter().map(|c| c.2).sum::<f64>(),
        2.0 * (writers * writes as usize) as f64
    );
    // Each INSERT makes one level-0 part (kept a while after merges too).
    let parts: usize = clickhouse_server::query(&format!(
        "SELECT count() FROM system.parts WHERE database = '{database}' AND table = 'histogram_minute' AND level = 0"
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let total = writers * writes as usize;
    assert!(parts * 4 <= total, "{parts} INSERTs for {total} writes");
    println!("{total} writes in {parts} INSERTs");
}

#[test]
fn a_failed_insert_fails_every_write_whose_rows_it_held() {
    let database = "kuroko_group_failure";
    let store = Arc::new(clickhouse(database));
    store.write(&one_minute("before", 10)).unwrap();
    clickhouse_server::query(&format!("DROP TABLE {database}.counter_minute")).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.write(&one_minute(&format!("writer-{w}"), 11))
            })
        })
        .collect();
    for thread in threads {
        match thread.join().unwrap() {
            Err(StoreError::Database {
                detail: DatabaseError::ClickHouse(message),
                ..
            }) => assert!(message.contains("counter_minute"), "{message}"),
            other => panic!("a write whose counters were refused returned {other:?}"),
        }
    }
}

#[test]
fn roll_ups_answer_like_minutes_and_retention_drops_whole_days() {
    let shared = clickhouse("kuroko_retention");
    let now = 30_000_000; // a unix minute
    let start = now - 3 * 1_440;
    let mut batch = Batch::default();
    for i in 0..(3 * 1_440 / 7) {
        let minute = start + i * 7;
        let value = 0.001 * (1 + i % 50) as f64;
        batch.histograms.push(HistogramPoint {
            key: key("a").into(),
            minute,
            histogram: recorded(&[value, value * 2.0]),
        });
        batch.counters.push(CounterPoint {
            key: key("a").into(),
            minute,
            name: "kuroko.transaction.outcomes".into(),
            labels: "kuroko.outcome=ok".into(),
            value: 2.0,
        });
    }
    shared.write(&batch).unwrap();
    let (embedded, dir) = sqlite("retention");
    embedded.write(&batch).unwrap();
    let window = (start - 30, now);
    let before = shared.histograms(&Filter::default(), window.0, window.1).unwrap();
    assert_same_histograms(
        &before,
        &embedded.histograms(&Filter::default(), window.0, window.1).unwrap(),
        "days, hours and minutes",
    );
    let retention = Retention {
        minute_days: 1,
        hour_days: 2,
        day_days: 30,
    };
    let dropped = shared.retain(&retention, now).unwrap();
    assert!(dropped >= 4, "whole days of minutes and of traces went: {dropped}");
    let after = shared.histograms(&Filter::default(), window.0, window.1).unwrap();
    assert_eq!(
        exact(&after[0].1),
        exact(&before[0].1),
        "the same runs, read from roll-ups"
    );
    let counted = shared
        .counters(&Filter::default(), "kuroko.transaction.outcomes", window.0, window.1)
        .unwrap();
    assert_eq!(counted[0].2, 2.0 * batch.counters.len() as f64);
    let _ = std::fs::remove_dir_all(dir);
}

/// A database created by schema 1 (error rows without trace or stack, rolled
/// into `error_hour` by its view): migrated on connect, its hours still
/// read, and what arrives after it tied and rolled up with its stack trace.
#[test]
fn a_schema_1_database_is_migrated_and_keeps_its_error_hours() {
    use clickhouse_server::query;
    let database = "kuroko_schema_1";
    query(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
    query(&format!("CREATE DATABASE {database}")).unwrap();
    let hour = "intDiv(minute, 60) - (modulo(minute, 60) < 0)";
    for statement in [
        "CREATE TABLE {db}.meta (key String, value String, at UInt64) ENGINE = ReplacingMergeTree(at) ORDER BY key"
            .to_owned(),
        "CREATE TABLE {db}.series
         (id UInt64, service String, host String, txn String, feature String, kind String, environment String)
         ENGINE = ReplacingMergeTree ORDER BY id"
            .to_owned(),
        "CREATE TABLE {db}.error_minute
         (series_id UInt64, minute Int64, error_type String, message String, location String,
          count UInt64, last_seen UInt64, fingerprint String)
         ENGINE = MergeTree PARTITION BY intDiv(minute, 1440) ORDER BY (series_id, minute)"
            .to_owned(),
        "CREATE TABLE {db}.error_hour
         (series_id UInt64, hour Int64, error_type String, message String, location String, fingerprint String,
          count_state AggregateFunction(sum, UInt64), last_seen_state AggregateFunction(max, UInt64),
          first_minute_state AggregateFunction(min, Int64))
         ENGINE = AggregatingMergeTree PARTITION BY intDiv(hour, 168)
         ORDER BY (series_id, hour, error_type, message, location, fingerprint)"
            .to_owned(),
        format!(
            "CREATE MATERIALIZED VIEW {{db}}.error_hour_mv TO {{db}}.error_hour AS
             SELECT series_id, {hour} AS hour, error_type, message, location, fingerprint,
                    sumState(count) AS count_state, maxState(last_seen) AS last_seen_state,
                    minState(minute) AS first_minute_state
             FROM {{db}}.error_minute GROUP BY series_id, hour, error_type, message, location, fingerprint"
        ),
        "INSERT INTO {db}.meta VALUES ('schema_version', '1', 1)".to_owned(),
    ] {
        query(&statement.replace("{db}", database)).unwrap();
    }
    let id = kuroko_reporter::store::clickhouse::series_id(&key("a"));
    query(&format!(
        "INSERT INTO {database}.series VALUES ({id}, 'cards-api', 'a', 'GET /cards/{{id}}', 'cards', 'web', '')"
    ))
    .unwrap();
    query(&format!(
        "INSERT INTO {database}.error_minute VALUES ({id}, 100, 'E', 'before', 'cards.rs:1', 3, 6000000000000, '')"
    ))
    .unwrap();

    let store = connect_again(database);
    let version = query(&format!(
        "SELECT max(toInt64(value)) FROM {database}.meta WHERE key = 'schema_version'"
    ))
    .unwrap();
    assert_eq!(version.trim(), "6");
    // The rows from before, in whole hours (read from `error_hour`).
    let before = store.errors(&Filter::default(), 60, 120).unwrap();
    assert_eq!(
        before.iter().map(|e| (e.message.as_str(), e.count)).collect::<Vec<_>>(),
        [("before", 3)]
    );
    // What arrives after: from the next hour on, with its trace and stack.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    let minute = (now / 60 + 2) * 60 + 10;
    let untied = ErrorPoint {
        key: SeriesKey {
            transaction: NO_TRANSACTION.into(),
            feature: String::new(),
            kind: "job".into(),
            ..key("a")
        },
        minute,
        error_type: "KeyError".into(),
        message: "'id'".into(),
        location: String::new(),
        count: 2,
        last_seen: minute as u64 * 60_000_000_000,
        fingerprint: String::new(),
        stacktrace: "Traceback (most recent call last):\n  File \"/app/a.py\", line 1, in f\nKeyError: 'id'".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
    };
    store
        .write(&Batch {
            errors: vec![untied.clone()],
            ..Batch::default()
        })
        .unwrap();
    // The link through a second replica.
    connect_again(database)
        .write(&Batch {
            links: vec![TraceLink {
                key: key("b"),
                trace_id: untied.trace_id.clone(),
                span_id: "00f067aa0ba902b7".into(),
                start: untied.last_seen - 1,
                end: untied.last_seen + 1,
                failed: false,
            }],
            ..Batch::default()
        })
        .unwrap();
    let hour_start = minute / 60 * 60;
    for (from, to) in [(hour_start, hour_start + 60), (minute, minute + 1)] {
        let after = store.errors(&Filter::default(), from, to).unwrap();
        assert_eq!(after.len(), 1, "{from}..{to}");
        assert_eq!(
            (
                after[0].key.transaction.as_str(),
                after[0].key.host.as_str(),
                after[0].count
            ),
            ("GET /cards/{id}", "a", 2)
        );
        assert_eq!(*after[0].stacktrace, *untied.stacktrace);
    }
}

#[test]
fn a_database_from_a_newer_reporter_is_refused() {
    let database = "kuroko_newer";
    drop(clickhouse(database));
    let port = server().port;
    ureq::post(format!("http://127.0.0.1:{port}/"))
        .send(format!(
            "INSERT INTO {database}.meta (key, value, at) VALUES ('schema_version', '99', 1)"
        ))
        .unwrap();
    match ClickHouseStore::connect(&format!("clickhouse://127.0.0.1:{port}/{database}")) {
        Err(StoreError::NewerSchema { found: 99, .. }) => {}
        other => panic!("{other:?}"),
    }
    let unreachable = ClickHouseStore::connect(&format!("clickhouse://127.0.0.1:{}/kuroko", free_port()));
    let message = unreachable.unwrap_err().to_string();
    assert!(message.contains("cannot reach the server"), "{message}");
}

/// Ingest rate and size on disk, printed (`--nocapture`); no timing is asserted.
#[test]
fn ingests_a_hundred_thousand_points_in_one_batch() {
    let shared = clickhouse("kuroko_rate");
    let mut batch = Batch::default();
    for i in 0..100_000u32 {
        let mut h = Histogram::empty();
        for j in 0..20u32 {
            h.record(0.001 * f64::from(1 + (i * 7 + j * 13) % 900)).unwrap();
        }
        batch.histograms.push(HistogramPoint {
            key: key(&format!("host-{}", i % 1_000)).into(),
            minute: 28_000_000 + i64::from(i / 1_000),
            histogram: h,
        });
    }
    let started = Instant::now();
    shared.write(&batch).unwrap();
    let elapsed = started.elapsed();
    let read = shared.histograms(&Filter::default(), 28_000_000, 28_000_100).unwrap();
    assert_eq!(read.len(), 1_000);
    assert_eq!(read.iter().map(|(_, h)| h.count).sum::<u64>(), 2_000_000);
    let port = server().port;
    let size = ureq::post(format!("http://127.0.0.1:{port}/"))
        .send(
            "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts
             WHERE database = 'kuroko_rate' AND active GROUP BY table ORDER BY table",
        )
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    println!(
        "clickhouse: wrote 100000 histogram points (20 runs each) in {elapsed:?}: {:.0} points/s\n\
         parts (table, rows, bytes on disk):\n{size}",
        100_000.0 / elapsed.as_secs_f64()
    );
}

/// `store = "clickhouse://..."` in the configuration: the reporter keeps what
/// the agent sends in ClickHouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporter_serves_into_clickhouse_when_configured() {
    use kuroko_agent::export::{ExportConfig, Protocol};
    use kuroko_agent::{Agent, Outcome, TransactionSpec};
    let database = "kuroko_serve";
    drop(tokio::task::spawn_blocking(|| clickhouse(database)).await.unwrap());
    let config = kuroko_reporter::config::Config {
        store: PathBuf::from(format!("clickhouse://127.0.0.1:{}/{database}", server().port)),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        journal: kuroko_reporter::config::JournalConfig {
            dir: std::env::temp_dir().join(format!("kuroko-serve-journal-{}", std::process::id())),
            ..kuroko_reporter::config::JournalConfig::default()
        },
        ..kuroko_reporter::config::Config::default()
    };
    let reporter = kuroko_reporter::serve::start(&config).await.unwrap();
    let agent = Agent::default();
    let exporter = agent
        .export(
            ExportConfig::default()
                .with_protocol(Protocol::HttpProtobuf)
                .with_endpoint(format!("http://{}", reporter.http))
                .with_interval(Duration::from_millis(100))
                .with_service_name("cards-api")
                .with_host_name("web-1"),
        )
        .unwrap();
    let cards = agent.register(TransactionSpec::web("GET", "/cards/{id}"));
    for i in 0..1_000u64 {
        cards.record_nanos(1_000_000 + i * 10_000, Outcome::Status(200));
    }
    exporter.shutdown().await;
    // Stopping sends what the journal holds.
    reporter.stop().await;
    let _ = std::fs::remove_dir_all(&config.journal.dir);
    let histograms = tokio::task::spawn_blocking(move || {
        let now = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60) as i64;
        let filter = Filter {
            transaction: Some("GET /cards/{id}".into()),
            ..Filter::default()
        };
        connect_again(database).histograms(&filter, now - 5, now + 5).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(histograms.len(), 1);
    assert_eq!(histograms[0].0.host, "web-1");
    assert_eq!(histograms[0].1.count, 1_000, "every run recorded, once");
}

fn ledger_entry(status: LedgerStatus, holder: &str, claimed_at: i64) -> LedgerEntry {
    LedgerEntry {
        kind: "weekly".into(),
        target: "payments:email".into(),
        period: "2026-W11".into(),
        holder: holder.into(),
        status,
        attempts: 2,
        rounds: 1,
        error: (status != LedgerStatus::Sent).then(|| "connection refused 'quoted' \\ here".into()),
        late: true,
        scheduled_at: 1_000,
        claimed_at,
        finished_at: Some(claimed_at + 5),
    }
}

/// The ledger's rules, as `deliver/ledger.rs` tests them on the embedded
/// store: one claimer wins, a sent delivery is never claimed again, a dead
/// holder's claim and a retrying delivery are taken over after the lease
/// with their history kept, a failed one is final.
fn ledger_rules(store: &dyn Store) {
    let t = 1_773_000_000;
    let claim = |kind: &str, target: &str, period: &str, holder: &str, now: i64| {
        store.ledger_claim(kind, target, period, holder, now).unwrap()
    };
    assert!(claim("weekly", "payments:email", "2026-W11", "a", t));
    assert!(!claim("weekly", "payments:email", "2026-W11", "b", t));
    assert!(
        claim("weekly", "search:email", "2026-W11", "b", t),
        "other targets are independent"
    );
    assert!(
        claim("weekly", "payments:email", "2026-W12", "b", t),
        "other periods too"
    );
    store.ledger_record(&ledger_entry(LedgerStatus::Sent, "a", t)).unwrap();
    assert!(!claim(
        "weekly",
        "payments:email",
        "2026-W11",
        "b",
        t + 100 * LEASE_SECONDS
    ));
    let all = store.ledger(0).unwrap();
    assert_eq!(
        ledger::find(&all, "weekly", "payments:email", "2026-W11"),
        Some(&ledger_entry(LedgerStatus::Sent, "a", t))
    );

    assert!(claim("digest", "company:chat", "2026-03-15", "dead", t));
    assert!(!claim(
        "digest",
        "company:chat",
        "2026-03-15",
        "b",
        t + LEASE_SECONDS - 1
    ));
    assert!(claim("digest", "company:chat", "2026-03-15", "b", t + LEASE_SECONDS));
    let retrying = LedgerEntry {
        kind: "digest".into(),
        target: "company:chat".into(),
        period: "2026-03-15".into(),
        ..ledger_entry(LedgerStatus::Retrying, "b", t + LEASE_SECONDS)
    };
    store.ledger_record(&retrying).unwrap();
    let again = t + 2 * LEASE_SECONDS;
    assert!(claim("digest", "company:chat", "2026-03-15", "c", again));
    let all = store.ledger(0).unwrap();
    let row = ledger::find(&all, "digest", "company:chat", "2026-03-15")
        .unwrap()
        .clone();
    assert_eq!(
        (row.status, row.holder.as_str(), row.claimed_at, row.attempts),
        (LedgerStatus::Claimed, "c", again, 2),
        "taken over, history kept"
    );
    assert_eq!(row.error, retrying.error);
    store
        .ledger_record(&LedgerEntry {
            status: LedgerStatus::Failed,
            ..row
        })
        .unwrap();
    assert!(
        !claim("digest", "company:chat", "2026-03-15", "d", again + 10 * LEASE_SECONDS),
        "failed is final"
    );
    // `since` keeps rows claimed or finished from then on.
    let recent = store.ledger(again).unwrap();
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0].target, "company:chat");
}

fn alert_states(store: &dyn Store) {
    assert_eq!(store.alert_state_get("p95 checkout").unwrap(), None);
    let firing = AlertState {
        firing: true,
        since: 29_550_000,
        value: Some(1.25e-3),
        notified: false,
    };
    store.alert_state_put("p95 checkout", &firing).unwrap();
    let notified = AlertState {
        notified: true,
        ..firing.clone()
    };
    // Written right after: the later write wins even within one second.
    store.alert_state_put("p95 checkout", &notified).unwrap();
    let resolved = AlertState {
        firing: false,
        since: 29_550_010,
        value: None,
        notified: false,
    };
    store.alert_state_put("error rate", &resolved).unwrap();
    assert_eq!(store.alert_state_get("p95 checkout").unwrap(), Some(notified));
    assert_eq!(store.alert_state_get("error rate").unwrap(), Some(resolved));
}

#[test]
fn the_delivery_ledger_and_alert_states_behave_as_in_the_embedded_store() {
    let (embedded, dir) = sqlite("ledger");
    let shared = clickhouse("kuroko_ledger");
    for store in [&embedded as &dyn Store, &shared] {
        ledger_rules(store);
        alert_states(store);
    }
    assert_eq!(shared.ledger(0).unwrap(), embedded.ledger(0).unwrap(), "the same rows");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Error groups' triage: the latest decision of each group, its history
/// kept, the same on both stores (a second connection, as another replica,
/// reads what the first wrote).
#[test]
fn error_triage_keeps_the_latest_decision_per_group_as_in_the_embedded_store() {
    use kuroko_reporter::store::triage::{ErrorTriage, Triage, TriageStatus};
    let (embedded, dir) = sqlite("triage");
    let database = "kuroko_triage";
    let shared = clickhouse(database);
    let resolved = Triage {
        group: "00000000000000aa".into(),
        status: TriageStatus::Resolved,
        at: 1_000,
        team: Some("payments".into()),
        by: "cli".into(),
        ..Triage::default()
    };
    let ignored = Triage {
        group: "00000000000000bb".into(),
        status: TriageStatus::Ignored,
        at: 1_100,
        ignore_until: Some(9_000),
        ignore_count: Some(50),
        team: None,
        by: "ui".into(),
    };
    let reopened = Triage {
        status: TriageStatus::Open,
        at: 1_200,
        ..resolved.clone()
    };
    for store in [&embedded as &dyn Store, &shared] {
        assert!(store.triage().unwrap().is_empty());
        for decision in [&resolved, &ignored, &reopened] {
            store.triage_put(decision).unwrap();
        }
    }
    let expected = [reopened, ignored];
    assert_eq!(embedded.triage().unwrap(), expected);
    assert_eq!(
        connect_again(database).triage().unwrap(),
        expected,
        "another replica reads the same"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Deploys: each service version's earliest minute, whichever replica saw
/// it first, the same on both stores.
#[test]
fn deploys_keep_each_versions_earliest_minute_as_in_the_embedded_store() {
    use kuroko_reporter::store::deploys::{Deploys, VersionSeen};
    let (embedded, dir) = sqlite("deploys");
    let database = "kuroko_deploys";
    let shared = clickhouse(database);
    let seen = |service: &str, version: &str, first_minute| VersionSeen {
        service: service.into(),
        environment: "production".into(),
        version: version.into(),
        first_minute,
    };
    for store in [&embedded as &dyn Store, &shared] {
        assert!(store.versions().unwrap().is_empty());
        store
            .versions_seen(&[seen("shop", "1.0", 100), seen("shop", "1.1", 500), seen("api", "7", 50)])
            .unwrap();
        store
            .versions_seen(&[seen("shop", "1.1", 400), seen("shop", "1.0", 200)])
            .unwrap();
    }
    let expected = [seen("api", "7", 50), seen("shop", "1.0", 100), seen("shop", "1.1", 400)];
    assert_eq!(embedded.versions().unwrap(), expected);
    assert_eq!(shared.versions().unwrap(), expected);
    assert_eq!(
        connect_again(database).versions().unwrap(),
        expected,
        "another replica reads the same"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two replicas claim the same deliveries at the same time: each delivery
/// has exactly one winner (the ClickHouse version of the embedded store's
/// two-connection race).
#[test]
fn racing_replicas_win_each_delivery_exactly_once() {
    let database = "kuroko_ledger_race";
    drop(clickhouse(database));
    let (first, second) = (connect_again(database), connect_again(database));
    let t = 1_773_000_000;
    let periods: Vec<String> = (0..6).map(|d| format!("period-{d}")).collect();
    let won = |store: &ClickHouseStore, holder: &str| -> Vec<bool> {
        periods
            .iter()
            .map(|p| store.ledger_claim("digest", "company:chat", p, holder, t).unwrap())
            .collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| won(&first, "a"));
        let b = s.spawn(|| won(&second, "b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.iter().zip(&b).all(|(a, b)| a != b),
        "each delivery has exactly one winner: {a:?} {b:?}"
    );
    let holders: Vec<String> = first.ledger(0).unwrap().into_iter().map(|e| e.holder).collect();
    let expected: Vec<&str> = a.iter().map(|&a| if a { "a" } else { "b" }).collect();
    let mut sorted = holders.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "the ledger names the winners");
}

/// The measurement behind `docs/scaling.md` (run with `--ignored
/// --nocapture`): agent-shaped data as `examples/store_size.rs` writes it to
/// the embedded store — per series and minute one histogram of 100
/// log-normal runs (median 50 ms) and five counters — then every table
/// merged (`OPTIMIZE … FINAL`), and bytes on disk per series-minute read from
/// `system.parts`.
#[test]
#[ignore = "a measurement: about a minute"]
fn bytes_per_series_minute_on_disk() {
    let database = "kuroko_size";
    let store = clickhouse(database);
    let (series, minutes) = (1_000i64, 60i64);
    let mut minutes_of = AgentMinutes::default();
    let first = 29_000_000 / 60 * 60;
    for minute in first..first + minutes {
        let batch = minutes_of.batch(series as usize, minute);
        store.write(&batch).unwrap();
    }
    let tables = clickhouse_server::query(&format!(
        "SELECT DISTINCT table FROM system.parts WHERE database = '{database}' AND active"
    ))
    .unwrap();
    for table in tables.lines() {
        clickhouse_server::query(&format!("OPTIMIZE TABLE {database}.{table} FINAL")).unwrap();
    }
    let parts = clickhouse_server::query(&format!(
        "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts
         WHERE database = '{database}' AND active GROUP BY table ORDER BY table FORMAT TSV"
    ))
    .unwrap();
    let series_minutes = (series * minutes) as f64;
    let mut by_table = BTreeMap::new();
    for line in parts.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bytes: f64 = fields[2].parse().unwrap();
        by_table.insert(fields[0].to_owned(), bytes);
        println!(
            "{:<18} rows {:>8}  on disk {:>10} B  ({:.1} B per series-minute; uncompressed {} B)",
            fields[0],
            fields[1],
            fields[2],
            bytes / series_minutes,
            fields[3]
        );
    }
    let minute_tables: f64 = ["histogram_minute", "counter_minute", "series"]
        .iter()
        .filter_map(|t| by_table.get(*t))
        .sum();
    let rollups: f64 = [
        "histogram_hour",
        "histogram_day",
        "series_bucket_hour",
        "series_bucket_day",
        "counter_hour",
        "counter_day",
    ]
    .iter()
    .filter_map(|t| by_table.get(*t))
    .sum();
    println!(
        "per series-minute: {:.1} B of minutes (with series), {:.1} B of hour and day roll-ups",
        minute_tables / series_minutes,
        rollups / series_minutes
    );
    assert!(minute_tables > 0.0 && rollups > 0.0, "{parts}");
}

/// `kuroko report status` and `kuroko query` with `store = "clickhouse://…"`
/// in kuroko.toml read that ClickHouse, as `kuroko serve` does: never a
/// SQLite file named after the URL (which used to be created, empty, and
/// reported from).
#[test]
fn the_command_line_reads_the_clickhouse_store_its_configuration_names() {
    let database = "kuroko_cli";
    let store = clickhouse(database);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let minute = now / 60 - 30;
    store.write(&one_minute("cards-cli-host", minute)).unwrap();
    store
        .ledger_record(&LedgerEntry {
            target: "cli-check:email".into(),
            ..ledger_entry(LedgerStatus::Sent, "replica-a", now - 3_600)
        })
        .unwrap();

    let dir = std::env::temp_dir().join(format!("kuroko-cli-clickhouse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sink = smtp_sink::Sink::start("clickhouse-cli");
    std::fs::write(
        dir.join("kuroko.toml"),
        format!(
            "store = \"{}\"\nowners = \"owners.toml\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"Kuroko <kuroko@example.com>\"\n",
            url(database),
            sink.port
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("owners.toml"),
        "[teams.cards]\nemail = [\"cards@example.com\"]\n\n[features.cards]\nteam = \"cards\"\n\
         patterns = [{ service = \"cards-api\" }]\n",
    )
    .unwrap();
    let kuroko = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .args(args)
            .current_dir(&dir)
            .env_remove("KUROKO_STORE")
            .env_remove("KUROKO_QUERY_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kuroko {args:?}: {stdout}{stderr}");
        stdout
    };

    let status = kuroko(&["report", "status", "--config", "kuroko.toml", "--days", "2"]);
    assert!(
        status.contains("cli-check:email") && status.contains("2026-W11"),
        "the ledger row written to ClickHouse:\n{status}"
    );
    let slowest = kuroko(&[
        "query",
        "slowest",
        "--config",
        "kuroko.toml",
        "--since",
        "2h",
        "--format",
        "csv",
    ]);
    assert!(
        slowest.contains("GET /cards/{id}"),
        "the point written to ClickHouse:\n{slowest}"
    );
    // A weekly report sent by hand reads ClickHouse, and records its send
    // in ClickHouse's ledger.
    let week = jiff::Timestamp::from_second(minute * 60)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .iso_week_date();
    let period = format!("{}-W{:02}", week.year(), week.week());
    kuroko(&[
        "report",
        "weekly",
        "--send",
        "--config",
        "kuroko.toml",
        "--period",
        &period,
    ]);
    let mail = sink.received();
    assert_eq!(mail.len(), 1, "one email, to the team");
    assert_eq!(mail[0].0, ["cards@example.com"]);
    let body = String::from_utf8_lossy(&mail[0].1).replace("=\r\n", "");
    assert!(
        body.contains("/cards/{id}"),
        "the report holds the run stored in ClickHouse:\n{body}"
    );
    let sent = clickhouse_server::query(&format!(
        "SELECT count() FROM {database}.delivery_ledger WHERE kind = 'weekly' AND period = '{period}' \
         AND target = 'cards:email'"
    ))
    .unwrap();
    assert!(
        sent.trim().parse::<u64>().unwrap() >= 1,
        "the send is in ClickHouse's ledger: {sent}"
    );
    let status = kuroko(&["report", "status", "--config", "kuroko.toml", "--days", "2"]);
    assert!(
        status.contains("cards:email") && status.contains(&period),
        "report status reads the send back from ClickHouse:\n{status}"
    );

    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["kuroko.toml", "owners.toml"], "no SQLite file made of the URL");
    std::fs::remove_dir_all(&dir).unwrap();
}
