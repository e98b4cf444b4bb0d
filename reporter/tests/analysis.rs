//! The analysis layer's core questions against seeded synthetic data whose
//! answers are known: slowest endpoints, percentiles against the exact
//! samples, time series, breakdowns and Apdex.
//!
//! One store per kind is written for the whole file (two weeks of
//! `Spec::small`, rolled into hours and days with every minute kept, so
//! windows are answered from all three resolutions), plus an untagged legacy
//! service that sends explicit-bucket histograms and no Apdex counters, as an
//! OpenTelemetry SDK would. Every test runs on SQLite and on ClickHouse
//! (`sqlite::<test>`, `clickhouse::<test>`; `support/stores.rs`), with the
//! same assertions.

#[macro_use]
#[path = "support/stores.rs"]
mod stores;
use stores::{Kind, TestStore};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use kuroko_reporter::analysis::endpoints::{ApdexSource, Group, Rank, APDEX};
use kuroko_reporter::analysis::timeseries::Step;
use kuroko_reporter::analysis::{Analysis, Scope};
use kuroko_reporter::histogram::Histogram;
use kuroko_reporter::owners::Owners;
use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::{Batch, CounterPoint, Filter, HistogramPoint, SeriesKey};
use kuroko_reporter::synthetic::{Generator, Planted, Spec, Truths};

/// Midnight UTC, Monday 2024-01-01.
const START: i64 = 28_401_120;
const DAY: i64 = 1_440;
const LEGACY: &str = "legacy";
const LEGACY_TRANSACTION: &str = "GET /legacy/report";

const OWNERS: &str = r#"
[teams.insights]
email = ["insights@example.com"]

[teams.shop]
email = ["shop@example.com"]

[features.reporting]
team = "insights"
patterns = [ { service = "legacy", transaction = "GET /legacy/*" } ]

[features.checkout]
team = "shop"
"#;

struct Fixture {
    store: TestStore,
    spec: Spec,
    truths: Truths,
    owners: Owners,
}

/// The fixture on `kind`'s store, written once per kind.
fn fixture(kind: Kind) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; 2] = [OnceLock::new(), OnceLock::new()];
    FIXTURES[kind.index()].get_or_init(|| {
        let store = TestStore::open(kind, "analysis-fixture");
        let spec = Spec::small(START);
        let truths = store.write_synthetic(&spec);
        store.write(&legacy_batch()).unwrap();
        // Hours and days made whole, every minute kept.
        let retention = Retention {
            minute_days: 60,
            ..Retention::default()
        };
        store.roll_up(retention, spec.end_minute() + 60);
        let owners = Owners::parse(OWNERS, "owners.toml").unwrap();
        Fixture {
            store,
            spec,
            truths,
            owners,
        }
    })
}

/// An untagged transaction from an SDK: explicit buckets, outcomes, no Apdex.
fn legacy_batch() -> Batch {
    let key = SeriesKey {
        service: LEGACY.into(),
        host: "legacy-0".into(),
        transaction: LEGACY_TRANSACTION.into(),
        feature: String::new(),
        kind: "web".into(),
        environment: "production".into(),
    };
    let mut batch = Batch::default();
    for hour in 0..14 * 24 {
        let minute = START + hour * 60;
        let histogram =
            Histogram::from_explicit(&[0.1, 0.25, 0.5, 1.0], &[10, 20, 15, 4, 1], 50, Some(16.0), None).unwrap();
        batch.histograms.push(HistogramPoint {
            key: key.clone().into(),
            minute,
            histogram,
        });
        for (outcome, value) in [("ok", 48.0), ("5xx", 2.0)] {
            batch.counters.push(CounterPoint {
                key: key.clone().into(),
                minute,
                name: "kuroko.transaction.outcomes".into(),
                labels: format!("kuroko.outcome={outcome}"),
                value,
            });
        }
    }
    batch
}

fn analysis(f: &Fixture) -> Analysis<'_> {
    Analysis::new(&*f.store, &f.owners)
}

fn whole(f: &Fixture) -> Scope {
    Scope::window(f.spec.start_minute, f.spec.end_minute())
}

fn names(planted: &[Planted]) -> BTreeSet<(String, String)> {
    planted
        .iter()
        .map(|p| (p.service.clone(), p.transaction.clone()))
        .collect()
}

/// The sample at quantile `q`, by the rank a histogram uses: ceil(q n).
fn exact(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

suite! {
#[test]
fn slowest_by_p95_puts_the_planted_slow_endpoints_first(kind: Kind) {
    let f = fixture(kind);
    let table = analysis(f).slowest(&whole(f), Rank::P95, 5).unwrap();
    assert_eq!(table.rows.len(), 5);
    assert_eq!(table.total_rows, 13, "12 synthetic transactions and the legacy one");
    let top: BTreeSet<(String, String)> = table.rows[..2]
        .iter()
        .map(|r| (r.service.clone(), r.transaction.clone()))
        .collect();
    assert_eq!(top, names(&f.truths.slow_endpoints));
    assert!(table.rows.windows(2).all(|w| w[0].p95 >= w[1].p95));
    let slow = &table.rows[0];
    assert!(slow.p95 > 3.0 * table.rows[2].p95, "{table:#?}");
    assert_eq!(slow.apdex_source, ApdexSource::Counters);
    assert_eq!(slow.apdex_threshold, Some(0.5));
    assert!(!slow.estimated && slow.stddev.unwrap() > 0.0);
    assert!((slow.throughput - slow.count as f64 / (14 * DAY) as f64).abs() < 1e-9);
    // The table says it is partly estimated: the legacy row is explicit buckets.
    assert!(table.estimated);
}

#[test]
fn time_consumed_ranks_by_total_time_and_shares_add_up_per_service(kind: Kind) {
    let f = fixture(kind);
    let table = analysis(f).slowest(&whole(f), Rank::TimeConsumed, usize::MAX).unwrap();
    // The expected order, from the store's merged histograms directly.
    let mut sums: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (key, h) in f
        .store
        .histograms(&Filter::default(), f.spec.start_minute, f.spec.end_minute())
        .unwrap()
    {
        *sums.entry((key.service, key.transaction)).or_default() += h.sum;
    }
    let mut expected: Vec<_> = sums.into_iter().collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got: Vec<(String, String)> = table
        .rows
        .iter()
        .map(|r| (r.service.clone(), r.transaction.clone()))
        .collect();
    let want: Vec<(String, String)> = expected.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, want);
    let mut shares: BTreeMap<&str, f64> = BTreeMap::new();
    for row in &table.rows {
        *shares.entry(row.service.as_str()).or_default() += row.share;
    }
    for (service, share) in shares {
        assert!((share - 1.0).abs() < 1e-9, "{service}: {share}");
    }
    // A transaction filter keeps the share of its service's total.
    let database = &f.truths.database_heavy;
    let one = Scope {
        service: Some(database.service.clone()),
        transaction: Some(database.transaction.clone()),
        ..whole(f)
    };
    let alone = analysis(f).slowest(&one, Rank::P50, 10).unwrap();
    assert_eq!(alone.rows.len(), 1);
    let same = table
        .rows
        .iter()
        .find(|r| r.transaction == database.transaction)
        .unwrap();
    assert!((alone.rows[0].share - same.share).abs() < 1e-12 && same.share < 0.5);
}

#[test]
fn team_and_feature_filters_cover_tagged_and_pattern_assigned_transactions(kind: Kind) {
    let f = fixture(kind);
    let generator = Generator::new(&f.spec);
    let mut reporting: BTreeSet<(String, String)> = generator
        .series()
        .iter()
        .filter(|k| k.feature == "reporting")
        .map(|k| (k.service.clone(), k.transaction.clone()))
        .collect();
    reporting.insert((LEGACY.into(), LEGACY_TRANSACTION.into()));
    let rows = |scope: Scope| -> BTreeSet<(String, String)> {
        let table = analysis(f).slowest(&scope, Rank::P50, 100).unwrap();
        assert!(table
            .rows
            .iter()
            .all(|r| r.feature.as_deref() == Some("reporting") && r.team.as_deref() == Some("insights")));
        table
            .rows
            .iter()
            .map(|r| (r.service.clone(), r.transaction.clone()))
            .collect()
    };
    let team = Scope {
        team: Some("insights".into()),
        ..whole(f)
    };
    assert_eq!(rows(team), reporting);
    let feature = Scope {
        feature: Some("reporting".into()),
        ..whole(f)
    };
    assert_eq!(rows(feature.clone()), reporting);
    // The same, one row per feature.
    let by_feature = analysis(f)
        .slowest_grouped(&feature, Group::Feature, Rank::P50, 10)
        .unwrap();
    assert_eq!(by_feature.rows.len(), 1);
    let per_transaction = analysis(f).slowest(&feature, Rank::P50, 100).unwrap();
    let count: u64 = per_transaction.rows.iter().map(|r| r.count).sum();
    assert_eq!(by_feature.rows[0].count, count);
    assert_eq!(by_feature.rows[0].apdex_source, ApdexSource::Mixed);
    assert!(by_feature.rows[0].estimated);
    // A team owning nothing that ran gets an empty table.
    let shop = analysis(f)
        .slowest(
            &Scope {
                team: Some("shop".into()),
                service: Some(LEGACY.into()),
                ..whole(f)
            },
            Rank::P50,
            10,
        )
        .unwrap();
    assert!(shop.rows.is_empty());
}

#[test]
fn percentiles_are_within_one_percent_of_the_exact_samples(kind: Kind) {
    let f = fixture(kind);
    let generator = Generator::new(&f.spec);
    // Neither day- nor hour-aligned: minutes, hours and a day are read.
    let (from, to) = (START + 3 * DAY - 130, START + 5 * DAY + 70);
    let truths = &f.truths;
    for planted in [
        &truths.noisy,
        &truths.regression,
        &truths.database_heavy,
        &truths.slow_endpoints[1],
    ] {
        let mut samples: Vec<f64> = Vec::new();
        for (index, key) in generator.series().iter().enumerate() {
            if key.service == planted.service && key.transaction == planted.transaction {
                for minute in generator.steps().filter(|m| (from..to).contains(m)) {
                    samples.extend(generator.raw_samples(index, minute));
                }
            }
        }
        samples.sort_by(f64::total_cmp);
        let scope = Scope {
            service: Some(planted.service.clone()),
            transaction: Some(planted.transaction.clone()),
            ..Scope::window(from, to)
        };
        let table = analysis(f).slowest(&scope, Rank::P50, 1).unwrap();
        let row = &table.rows[0];
        assert_eq!(row.count, samples.len() as u64);
        assert!(!row.estimated);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((row.mean / mean - 1.0).abs() < 1e-9);
        assert_eq!((row.min, row.max), (samples[0], samples[samples.len() - 1]));
        for (q, got) in [(0.50, row.p50), (0.95, row.p95), (0.99, row.p99)] {
            let want = exact(&samples, q);
            assert!(
                (got / want - 1.0).abs() < 0.01,
                "{} p{q}: {got} vs {want}",
                planted.transaction
            );
        }
        let n = samples.len() as f64;
        let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert!((row.stddev.unwrap() / variance.sqrt() - 1.0).abs() < 0.01);
    }
    // An explicit-bucket source says its percentiles are estimates.
    let legacy = Scope {
        service: Some(LEGACY.into()),
        ..Scope::window(from, to)
    };
    let row = &analysis(f).slowest(&legacy, Rank::P50, 1).unwrap().rows[0];
    assert!(row.estimated);
    assert_eq!(row.apdex_source, ApdexSource::Histogram);
    assert_eq!(row.error_rate, Some(0.04));
}

#[test]
fn hourly_and_daily_steps_add_up_to_the_window_and_minutes_give_throughput(kind: Kind) {
    let f = fixture(kind);
    let planted = &f.truths.regression;
    let scope = Scope {
        service: Some(planted.service.clone()),
        transaction: Some(planted.transaction.clone()),
        ..Scope::window(START + 2 * DAY, START + 4 * DAY)
    };
    let row = analysis(f).slowest(&scope, Rank::P50, 1).unwrap().rows[0].clone();
    let hourly = analysis(f).timeseries(&scope, Group::Transaction, None).unwrap();
    assert_eq!(hourly.step, Step::Hour);
    assert_eq!(hourly.series.len(), 1);
    let points = &hourly.series[0].points;
    assert_eq!(points.len(), 48);
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), row.count);
    assert_eq!(points.iter().map(|p| p.errors).sum::<u64>(), row.errors);
    for p in points {
        assert!((p.throughput * 60.0 - p.count as f64).abs() < 1e-9);
        assert!(p.p50.unwrap() <= p.p95.unwrap() && p.p95.unwrap() <= p.p99.unwrap());
    }
    // Days (read from day rows) add up too.
    let daily = analysis(f)
        .timeseries(&whole(f), Group::Transaction, Some(Step::Day))
        .unwrap();
    let slowest = analysis(f).slowest(&whole(f), Rank::P50, 100).unwrap();
    for series in &daily.series {
        assert_eq!(series.points.len(), 14);
        let row = slowest
            .rows
            .iter()
            .find(|r| r.service == series.service && r.transaction == series.transaction)
            .unwrap();
        assert_eq!(series.points.iter().map(|p| p.count).sum::<u64>(), row.count);
    }
    // Minutes: a point every 10 minutes (the spec's step), each run counted
    // in its minute; empty minutes are there, with nothing in them.
    let generator = Generator::new(&f.spec);
    let two_hours = Scope::window(START + 3 * DAY + 600, START + 3 * DAY + 720);
    let minutes = analysis(f)
        .timeseries(
            &Scope {
                service: scope.service.clone(),
                transaction: scope.transaction.clone(),
                ..two_hours
            },
            Group::Transaction,
            None,
        )
        .unwrap();
    assert_eq!(minutes.step, Step::Minute);
    let points = &minutes.series[0].points;
    assert_eq!(points.len(), 120);
    for p in points {
        let runs: usize = generator
            .series()
            .iter()
            .enumerate()
            .filter(|(_, k)| k.service == planted.service && k.transaction == planted.transaction)
            .map(|(i, _)| generator.raw_samples(i, p.minute).len())
            .sum();
        assert_eq!(p.count, runs as u64, "minute {}", p.minute);
        assert_eq!(p.throughput, runs as f64);
        assert_eq!(p.p50.is_none(), runs == 0);
    }
}

#[test]
fn breakdown_shows_where_the_planted_transaction_spends_its_time(kind: Kind) {
    let f = fixture(kind);
    let planted = &f.truths.database_heavy;
    let breakdown = analysis(f)
        .breakdown(&whole(f), &planted.service, &planted.transaction, 5)
        .unwrap();
    let database = &breakdown.segments[0];
    assert_eq!(
        (database.kind.as_str(), database.name.as_str()),
        ("database", f.truths.database_segment.as_str())
    );
    assert!(
        (database.share - f.truths.database_share).abs() < 1e-6,
        "{breakdown:#?}"
    );
    assert!((database.calls_per_run - 4.0).abs() < 1e-9);
    let per_call = database.total_seconds / database.calls;
    assert!((database.seconds_per_call.unwrap() - per_call).abs() < 1e-12);
    assert_eq!(breakdown.kinds[0].kind, "database");
    let shares: f64 = breakdown.segments.iter().map(|s| s.share).sum::<f64>() + breakdown.other_share;
    assert!((shares - 1.0).abs() < 1e-9);
    // A slow endpoint has kept traces, slowest first, with their segments.
    let slow = &f.truths.slow_endpoints[0];
    let breakdown = analysis(f)
        .breakdown(&whole(f), &slow.service, &slow.transaction, 3)
        .unwrap();
    assert_eq!(breakdown.traces.len(), 3);
    assert!(breakdown.traces.windows(2).all(|w| w[0].duration >= w[1].duration));
    let trace = &breakdown.traces[0];
    assert!(trace.segments.iter().any(|s| s.kind == "database"));
    assert!(trace
        .segments
        .iter()
        .all(|s| s.offset + s.duration <= trace.duration + 1e-6));
}

#[test]
fn apdex_is_the_counters_value(kind: Kind) {
    let f = fixture(kind);
    let scope = Scope::window(START + DAY, START + 8 * DAY);
    let rows = analysis(f).apdex(&scope, Group::Transaction).unwrap();
    assert!(rows.windows(2).all(|w| w[0].apdex <= w[1].apdex));
    let mut zones: BTreeMap<(String, String), [f64; 3]> = BTreeMap::new();
    for (key, labels, value) in f
        .store
        .counters(&Filter::default(), APDEX, scope.from, scope.to)
        .unwrap()
    {
        let zone = ["satisfied", "tolerating", "frustrated"]
            .iter()
            .position(|z| labels.ends_with(&format!("zone={z}")))
            .unwrap();
        zones.entry((key.service, key.transaction)).or_default()[zone] += value;
    }
    assert_eq!(zones.len(), 12);
    for ((service, transaction), [s, t, fr]) in zones {
        let row = rows
            .iter()
            .find(|r| r.service == service && r.transaction == transaction)
            .unwrap();
        assert_eq!(row.source, ApdexSource::Counters);
        assert_eq!((row.satisfied, row.tolerating, row.frustrated), (s, t, fr));
        let want = (s + t / 2.0) / (s + t + fr);
        assert!((row.apdex.unwrap() - want).abs() < 1e-12, "{transaction}");
    }
    // The slow endpoints, at T = 0.5 s with medians near 2 s, are the worst.
    let worst: BTreeSet<(String, String)> = rows[..2]
        .iter()
        .map(|r| (r.service.clone(), r.transaction.clone()))
        .collect();
    assert_eq!(worst, names(&f.truths.slow_endpoints));
    let legacy = rows.iter().find(|r| r.service == LEGACY).unwrap();
    assert_eq!(legacy.source, ApdexSource::Histogram);
    assert_eq!(legacy.threshold, Some(0.5));
}
}
