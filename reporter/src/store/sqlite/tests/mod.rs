//! Tests of the embedded store: answers against minutes, roll-ups and
//! retention, step reads, reopening, trace links and the journal. Its
//! schema migrations are tested in [`migrations`].

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::histogram::Histogram;
use crate::store::journal::Journal;
use crate::store::plan::floor_to;
use crate::store::rollup::Retention;
use crate::store::{Batch, Filter, SeriesKey, StepTotal, Store};
use crate::store::{CounterPoint, HistogramPoint};

mod migrations;

pub(super) fn key(host: &str) -> SeriesKey {
    SeriesKey {
        service: "cards-api".into(),
        host: host.into(),
        transaction: "GET /cards/{id}".into(),
        feature: "cards".into(),
        kind: "web".into(),
        environment: String::new(),
    }
}

pub(super) fn histogram(values: &[f64]) -> Histogram {
    let mut h = Histogram::empty();
    for &v in values {
        let mut one = Histogram::empty();
        one.buckets.add(crate::histogram::bucket_index(v, 7), 1);
        one.count = 1;
        one.sum = v;
        one.min = v;
        one.max = v;
        h.merge(&one);
    }
    h
}

#[test]
fn roll_ups_answer_like_minutes_and_retention_keeps_what_is_rolled() {
    let dir = std::env::temp_dir().join(format!("kuroko-rollup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let _ = std::fs::remove_file(&path);
    let store = SqliteStore::open(&path).unwrap();
    let now = 30_000_000; // a unix minute
    let start = now - 3 * 1_440; // three days ago
    let mut batch = Batch::default();
    for i in 0..(3 * 1_440 / 7) {
        let minute = start + i * 7;
        let value = 0.001 * (1 + i % 50) as f64;
        batch.histograms.push(HistogramPoint {
            key: key("a").into(),
            minute,
            histogram: histogram(&[value, value * 2.0]),
        });
        batch.counters.push(CounterPoint {
            key: key("a").into(),
            minute,
            name: "kuroko.transaction.outcomes".into(),
            labels: "kuroko.outcome=ok".into(),
            value: 2.0,
        });
    }
    store.write(&batch).unwrap();
    let window = (start - 30, now);
    let before = store.histograms(&Filter::default(), window.0, window.1).unwrap();

    let mut roller = store
        .roller(Retention {
            minute_days: 1,
            hour_days: 2,
            day_days: 30,
        })
        .unwrap();
    let pass = roller.run(now).unwrap();
    assert!(
        pass.hours >= 3 * 24 - 1 && pass.days >= 2,
        "{pass:?}: the current hour is not over yet"
    );
    assert!(pass.deleted > 0, "minutes past one day and hours past two went");
    let after = store.histograms(&Filter::default(), window.0, window.1).unwrap();
    assert_eq!(
        after[0].1.count, before[0].1.count,
        "the same runs, read from days, hours and minutes"
    );
    assert_eq!(after[0].1.buckets, before[0].1.buckets);
    let counted = store
        .counters(&Filter::default(), "kuroko.transaction.outcomes", window.0, window.1)
        .unwrap();
    assert_eq!(counted[0].2, 2.0 * batch.counters.len() as f64);

    // Late data for a rolled hour is rolled again on the next pass.
    let late = now - 300;
    store
        .write(&Batch {
            histograms: vec![HistogramPoint {
                key: key("a").into(),
                minute: late,
                histogram: histogram(&[0.5]),
            }],
            ..Batch::default()
        })
        .unwrap();
    store.flush().unwrap();
    roller.run(now).unwrap();
    let hour = store
        .histograms(&Filter::default(), floor_to(late, 60), floor_to(late, 60) + 60)
        .unwrap();
    assert!(hour[0].1.max >= 0.5, "the late run is in its hour");

    // Late data for an hour whose minutes retention deleted (a day and
    // ten hours ago: minutes are kept one day, hours two) merges into
    // that hour and its day: it does not rebuild them from the minutes
    // that are left.
    let old_hour = floor_to(now - 1_440 - 600, 60);
    let count = |from: i64, to: i64| -> u64 {
        let read = store.histograms(&Filter::default(), from, to).unwrap();
        read.iter().map(|(_, h)| h.count).sum()
    };
    let outcomes = |from: i64, to: i64| -> f64 {
        let read = store
            .counters(&Filter::default(), "kuroko.transaction.outcomes", from, to)
            .unwrap();
        read.iter().map(|(_, _, v)| v).sum()
    };
    let day = (floor_to(old_hour, 1_440), floor_to(old_hour, 1_440) + 1_440);
    let (hour_before, day_before) = (count(old_hour, old_hour + 60), count(day.0, day.1));
    let outcomes_before = outcomes(old_hour, old_hour + 60);
    assert!(hour_before > 0 && day_before > hour_before);
    store
        .write(&Batch {
            histograms: vec![HistogramPoint {
                key: key("a").into(),
                minute: old_hour + 30,
                histogram: histogram(&[0.25, 0.75]),
            }],
            counters: vec![CounterPoint {
                key: key("a").into(),
                minute: old_hour + 30,
                name: "kuroko.transaction.outcomes".into(),
                labels: "kuroko.outcome=ok".into(),
                value: 2.0,
            }],
            ..Batch::default()
        })
        .unwrap();
    store.flush().unwrap();
    roller.run(now).unwrap();
    assert_eq!(
        count(old_hour, old_hour + 60),
        hour_before + 2,
        "the hour kept its runs"
    );
    assert_eq!(count(day.0, day.1), day_before + 2, "so did its day");
    assert_eq!(outcomes(old_hour, old_hour + 60), outcomes_before + 2.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The step reads (per series, grouped, and totals only) give what one
/// [`Store::histograms`] per step gives, over days, hours and minutes.
#[test]
fn step_reads_agree_with_one_read_per_step() {
    let dir = std::env::temp_dir().join(format!("kuroko-steps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let _ = std::fs::remove_file(&path);
    let store = SqliteStore::open(&path).unwrap();
    let now = 30_000_000;
    let start = now - 3 * 1_440;
    let mut batch = Batch::default();
    for i in 0..(3 * 1_440 / 5) {
        for host in ["a", "b", "c"] {
            let value = 0.001 * (1 + (i + host.len() as i64 * 7) % 40) as f64;
            batch.histograms.push(HistogramPoint {
                key: key(host).into(),
                minute: start + i * 5,
                histogram: histogram(&[value, value * 3.0]),
            });
            batch.counters.push(CounterPoint {
                key: key(host).into(),
                minute: start + i * 5,
                name: "kuroko.transaction.outcomes".into(),
                labels: format!("kuroko.outcome={}", if i % 9 == 0 { "5xx" } else { "ok" }),
                value: 2.0,
            });
        }
    }
    store.write(&batch).unwrap();
    let retention = Retention {
        minute_days: 8,
        hour_days: 90,
        day_days: 730,
    };
    store.roller(retention).unwrap().run(now).unwrap();
    let filter = Filter::default();
    for (from, step) in [(start - 30, 60), (start + 17, 1_440), (start, 1), (start + 3, 37)] {
        let to = if step == 1 { start + 300 } else { now };
        let mut expected = Vec::new();
        let mut first = from.div_euclid(step) * step;
        while first < to {
            for (key, h) in store
                .histograms(&filter, first.max(from), (first + step).min(to))
                .unwrap()
            {
                expected.push((key, first, h));
            }
            first += step;
        }
        expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let steps = store.histogram_steps(&filter, from, to, step).unwrap();
        assert_eq!(steps, expected, "step {step} from {from}");
        let totals = store.totals_steps(&filter, from, to, step).unwrap();
        let expected_totals: Vec<StepTotal> = expected
            .iter()
            .map(|(key, start, h)| (key.clone(), *start, h.count, h.sum))
            .collect();
        assert_eq!(totals.len(), expected_totals.len());
        for (got, want) in totals.iter().zip(&expected_totals) {
            assert_eq!((&got.0, got.1, got.2), (&want.0, want.1, want.2));
            assert!(
                (got.3 - want.3).abs() <= 1e-9 * want.3.abs(),
                "{got:?} against {want:?}"
            );
        }
        // Hosts b and c in one group, a left out.
        let grouped = store
            .histogram_steps_grouped(&filter, from, to, step, &mut |key| (key.host != "a").then_some(7))
            .unwrap();
        let mut merged: BTreeMap<i64, Histogram> = BTreeMap::new();
        for (key, start, h) in &expected {
            if key.host != "a" {
                merged.entry(*start).or_insert_with(Histogram::empty).merge(h);
            }
        }
        let merged: Vec<(usize, i64, Histogram)> = merged.into_iter().map(|(s, h)| (7, s, h)).collect();
        assert_eq!(grouped.len(), merged.len(), "step {step}");
        for (got, want) in grouped.iter().zip(&merged) {
            assert_eq!(
                (got.0, got.1, got.2.count, &got.2.buckets),
                (want.0, want.1, want.2.count, &want.2.buckets)
            );
        }
        let name = "kuroko.transaction.outcomes";
        let mut sums: BTreeMap<(String, i64), f64> = BTreeMap::new();
        for (key, labels, start, value) in store.counter_steps(&filter, name, from, to, step).unwrap() {
            if key.host != "a" {
                *sums.entry((labels, start)).or_default() += value;
            }
        }
        assert!(!sums.is_empty());
        let want: Vec<(usize, String, i64, f64)> = sums.into_iter().map(|((l, s), v)| (7, l, s, v)).collect();
        let got = store
            .counter_steps_grouped(&filter, name, from, to, step, &mut |key| (key.host != "a").then_some(7))
            .unwrap();
        assert_eq!(got, want, "counters, step {step}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merges_across_hosts_and_minutes_and_survives_reopening() {
    let dir = std::env::temp_dir().join(format!("kuroko-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let _ = std::fs::remove_file(&path);
    {
        let store = SqliteStore::open(&path).unwrap();
        let batch = Batch {
            errors: vec![],
            traces: vec![],
            links: vec![],
            histograms: vec![
                HistogramPoint {
                    key: key("a").into(),
                    minute: 100,
                    histogram: histogram(&[0.010, 0.020]),
                },
                HistogramPoint {
                    key: key("b").into(),
                    minute: 100,
                    histogram: histogram(&[0.030]),
                },
                HistogramPoint {
                    key: key("a").into(),
                    minute: 101,
                    histogram: histogram(&[0.040]),
                },
            ],
            counters: vec![CounterPoint {
                key: key("a").into(),
                minute: 100,
                name: "kuroko.transaction.outcomes".into(),
                labels: "kuroko.outcome=5xx".into(),
                value: 2.0,
            }],
            streams: Vec::new(),
        };
        store.write(&batch).unwrap();
        // The same minute again merges into the stored row.
        store
            .write(&Batch {
                errors: vec![],
                traces: vec![],
                links: vec![],
                histograms: vec![batch.histograms[0].clone()],
                counters: batch.counters.clone(),
                streams: Vec::new(),
            })
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let all = store.histograms(&Filter::default(), 0, 1_000).unwrap();
    assert_eq!(all.len(), 2, "one merged histogram per series (host)");
    let a = &all.iter().find(|(k, _)| k.host == "a").unwrap().1;
    assert_eq!(a.count, 5);
    assert!((a.sum - 0.100).abs() < 1e-12);
    assert_eq!((a.min, a.max), (0.010, 0.040));
    let only_minute_100 = store
        .histograms(
            &Filter {
                host: Some("a".into()),
                ..Filter::default()
            },
            100,
            101,
        )
        .unwrap();
    assert_eq!(only_minute_100[0].1.count, 4);
    let counters = store
        .counters(&Filter::default(), "kuroko.transaction.outcomes", 0, 1_000)
        .unwrap();
    assert_eq!(counters, [(key("a"), "kuroko.outcome=5xx".to_owned(), 4.0)]);

    // A file from a newer reporter is refused, with what to do.
    store
        .connection()
        .execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", [])
        .unwrap();
    drop(store);
    let error = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "schema version 99, newer than this kuroko's {SCHEMA_VERSION}: upgrade kuroko"
        )),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Errors that came with a trace but no transaction, their links
/// arriving later (or earlier, for a failed request), across a reopen
/// and a roll-up.
#[test]
fn untied_errors_take_their_traces_transaction_once_its_link_arrives() {
    let dir = std::env::temp_dir().join(format!("kuroko-links-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let minute = 28_000_000;
    let at = |second: u64| (minute as u64 * 60 + second) * 1_000_000_000;
    let untied = |message: &str, trace: &str, stacktrace: &str| crate::store::ErrorPoint {
        key: SeriesKey {
            transaction: crate::store::NO_TRANSACTION.into(),
            feature: String::new(),
            kind: "job".into(),
            ..key("a")
        },
        minute,
        error_type: "KeyError".into(),
        message: message.into(),
        location: String::new(),
        count: 1,
        last_seen: at(10),
        fingerprint: String::new(),
        stacktrace: stacktrace.into(),
        trace_id: trace.into(),
    };
    let link = |trace: &str, failed: bool| crate::store::TraceLink {
        key: key("b"),
        trace_id: trace.into(),
        span_id: "00f067aa0ba902b7".into(),
        start: at(5),
        end: at(15),
        failed,
    };
    let transactions = |store: &SqliteStore, filter: &Filter| {
        let mut found: Vec<(String, String, String, String)> = store
            .errors(filter, minute - 60, minute + 120)
            .unwrap()
            .into_iter()
            .map(|e| (e.message, e.key.transaction, e.key.host, e.stacktrace.to_string()))
            .collect();
        found.sort();
        found
    };
    {
        let store = SqliteStore::open(&path).unwrap();
        // A failed request's link arrives before its error and is kept;
        // t4's request did not fail and nothing waits for it when it is
        // flushed: not kept (its error, later, stays untied).
        store
            .write(&Batch {
                links: vec![link("t3", true), link("t4", false)],
                ..Batch::default()
            })
            .unwrap();
        store.flush().unwrap();
        store
            .write(&Batch {
                errors: vec![
                    untied("a", "t1", "stack one"),
                    untied("b", "t2", ""),
                    untied("c", "t3", ""),
                    untied("d", "t4", ""),
                ],
                // Roll-ups start at the oldest histogram minute.
                histograms: vec![HistogramPoint {
                    key: key("b").into(),
                    minute,
                    histogram: histogram(&[0.01]),
                }],
                ..Batch::default()
            })
            .unwrap();
        store
            .write(&Batch {
                links: vec![link("t1", false)],
                ..Batch::default()
            })
            .unwrap();
        let links: i64 = {
            store.flush().unwrap();
            store
                .connection()
                .query_row("SELECT COUNT(*) FROM trace_link", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(links, 2, "t1 (waited for) and t3 (failed)");
    }
    let store = SqliteStore::open(&path).unwrap();
    let tied = |m: &str, stack: &str| {
        (
            m.to_owned(),
            "GET /cards/{id}".to_owned(),
            "a".to_owned(),
            stack.to_owned(),
        )
    };
    let none = |m: &str| (m.to_owned(), "(none)".to_owned(), "a".to_owned(), String::new());
    let expected = [tied("a", "stack one"), none("b"), tied("c", ""), none("d")];
    assert_eq!(transactions(&store, &Filter::default()), expected);
    let only = Filter {
        transaction: Some("GET /cards/{id}".into()),
        host: Some("a".into()),
        ..Filter::default()
    };
    assert_eq!(transactions(&store, &only), [tied("a", "stack one"), tied("c", "")]);
    // Rolled into hours (and the minutes past retention): the same.
    let mut roller = store
        .roller(Retention {
            minute_days: 0,
            hour_days: 2,
            day_days: 30,
        })
        .unwrap();
    roller.run(minute + 180).unwrap();
    let minutes: i64 = store
        .connection()
        .query_row("SELECT COUNT(*) FROM error_minute", [], |r| r.get(0))
        .unwrap();
    assert_eq!(minutes, 0, "read from hour rows");
    assert_eq!(transactions(&store, &Filter::default()), expected);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Many requests for the same series and minute make many journal
/// records and one row: flushed by age alone (five seconds), the journal
/// grew to about a hundred times the rows. A flush is now due once the
/// journal holds a quarter of the headroom (at least 1 MiB), so it stays
/// near that size however fast requests come.
#[test]
fn the_journal_is_flushed_by_size_before_it_outgrows_the_headroom() {
    let dir = std::env::temp_dir().join(format!("kuroko-journal-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.db");
    let store = SqliteStore::open(&path).unwrap();
    store.set_min_free_bytes(4 << 20);
    let wide: Vec<f64> = (0..2_000).map(|i| 0.001 * 1.01f64.powi(i)).collect();
    let point = Batch {
        histograms: (0..20)
            .map(|minute| HistogramPoint {
                key: key("a").into(),
                minute,
                histogram: histogram(&wide),
            })
            .collect(),
        ..Batch::default()
    };
    let journal = |dir: &Path| -> u64 {
        std::fs::read_dir(Journal::dir_of(dir))
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let (mut written, mut largest) = (0u64, 0u64);
    let started = std::time::Instant::now();
    while written < 8 << 20 {
        let before = journal(&path);
        store.write(&point).unwrap();
        let after = journal(&path);
        written += after.saturating_sub(before).max(1);
        largest = largest.max(after);
    }
    assert!(started.elapsed() < FLUSH_EVERY, "written faster than the age flush");
    assert!(
        largest < (1 << 20) + (256 << 10),
        "the journal stays near 1 MiB (a quarter of the headroom): {largest} bytes"
    );
    store.flush().unwrap();
    let runs = store.histograms(&Filter::default(), 0, 100).unwrap();
    assert_eq!(runs[0].1.count % 2_000, 0, "every write is in the tables");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_process_reads_but_leaves_the_journal_to_its_owner() {
    let dir = std::env::temp_dir().join(format!("kuroko-second-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.db");
    let owner = SqliteStore::open(&path).unwrap();
    let point = Batch {
        histograms: vec![HistogramPoint {
            key: key("a").into(),
            minute: 10,
            histogram: histogram(&[0.25]),
        }],
        ..Batch::default()
    };
    owner.write(&point).unwrap();
    // Opening beside the owner must not replay (and so double) what it holds.
    let reader = SqliteStore::open(&path).unwrap();
    let refused = reader.write(&point).unwrap_err().to_string();
    assert!(refused.contains("being written by another kuroko process"), "{refused}");
    owner.flush().unwrap();
    let seen = reader.histograms(&Filter::default(), 0, 100).unwrap();
    assert_eq!(seen[0].1.count, 1, "the owner's point, once");
    drop(owner);
    drop(reader);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.histograms(&Filter::default(), 0, 100).unwrap()[0].1.count, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
