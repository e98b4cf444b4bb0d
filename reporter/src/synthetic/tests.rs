//! The generator's own checks: reproducible, exact, and its planted truths hold.

use std::collections::BTreeMap;

use super::*;
use crate::histogram::Histogram;
use crate::store::sqlite::SqliteStore;
use crate::store::HistogramPoint;

/// Histograms merged per (service, transaction).
fn merged_by_transaction<'a>(
    points: impl Iterator<Item = &'a HistogramPoint>,
) -> BTreeMap<(String, String), Histogram> {
    let mut merged: BTreeMap<(String, String), Histogram> = BTreeMap::new();
    for point in points {
        merged
            .entry((point.key.service.clone(), point.key.transaction.clone()))
            .or_insert_with(Histogram::empty)
            .merge(&point.histogram);
    }
    merged
}

/// Midnight UTC, Monday 2024-01-01.
const MONDAY: i64 = 28_401_120;

fn batches(spec: &Spec) -> (Vec<Batch>, Truths) {
    let mut out = Vec::new();
    let truths = generate(spec, |b| {
        out.push(b);
        Ok::<_, ()>(())
    })
    .unwrap();
    (out, truths)
}

fn two_days() -> Spec {
    Spec {
        minutes: 2 * DAY,
        ..Spec::small(MONDAY)
    }
}

#[test]
fn the_same_seed_gives_the_same_data() {
    let (a, truths_a) = batches(&two_days());
    let (b, truths_b) = batches(&two_days());
    assert_eq!(truths_a, truths_b);
    assert!(a == b, "batches differ for the same seed");
    let (c, _) = batches(&Spec { seed: 1, ..two_days() });
    assert_eq!(a.len(), c.len());
    assert!(a != c, "another seed gives the same data");
}

#[test]
fn raw_samples_are_the_histograms_samples() {
    let spec = two_days();
    let generator = Generator::new(&spec);
    let (batches, truths) = batches(&spec);
    let points: Vec<&HistogramPoint> = batches.iter().flat_map(|b| &b.histograms).collect();
    assert_eq!(points.len() as u64, truths.histogram_points);
    for point in points.iter().step_by(97) {
        let series = generator.series().iter().position(|k| *k == *point.key).unwrap();
        let mut replayed = Histogram::empty();
        for value in generator.raw_samples(series, point.minute) {
            replayed.record(value).unwrap();
        }
        assert_eq!(replayed, point.histogram);
    }
    assert!(generator.raw_samples(0, MONDAY + 1).is_empty(), "not a step");
    let total: u64 = points.iter().map(|p| p.histogram.count).sum();
    assert_eq!(total, truths.runs);
}

#[test]
fn the_database_segment_dominates_the_planted_transaction() {
    let (batches, truths) = batches(&two_days());
    let histograms = merged_by_transaction(batches.iter().flat_map(|b| &b.histograms));
    let mut database: BTreeMap<(String, String), f64> = BTreeMap::new();
    for point in batches.iter().flat_map(|b| &b.counters) {
        if point.name == "kuroko.segment.exclusive_duration"
            && point.labels.starts_with("kuroko.segment.kind=database,")
        {
            *database
                .entry((point.key.service.clone(), point.key.transaction.clone()))
                .or_default() += point.value;
        }
    }
    let planted = (
        truths.database_heavy.service.clone(),
        truths.database_heavy.transaction.clone(),
    );
    for (id, histogram) in &histograms {
        let share = database[id] / histogram.sum;
        if *id == planted {
            assert!(share > 0.7, "{id:?}: database share {share}");
        } else {
            assert!(share < 0.5, "{id:?}: database share {share}");
        }
    }
    let labels = format!(
        "kuroko.segment.kind=database,kuroko.segment.name={}",
        truths.database_segment
    );
    assert!(batches
        .iter()
        .flat_map(|b| &b.counters)
        .any(|c| c.labels == labels && c.key.transaction == planted.1));
}

#[test]
fn slow_endpoints_are_several_times_slower_than_any_other() {
    let (batches, truths) = batches(&two_days());
    let histograms = merged_by_transaction(batches.iter().flat_map(|b| &b.histograms));
    let slow: Vec<(String, String)> = truths
        .slow_endpoints
        .iter()
        .map(|p| (p.service.clone(), p.transaction.clone()))
        .collect();
    assert_eq!(slow.len(), 2);
    let fastest_slow = slow
        .iter()
        .map(|id| histograms[id].quantile(0.95))
        .fold(f64::MAX, f64::min);
    let slowest_other = histograms
        .iter()
        .filter(|(id, _)| !slow.contains(id))
        .map(|(_, h)| h.quantile(0.95))
        .fold(0.0, f64::max);
    assert!(fastest_slow > 3.0 * slowest_other, "{fastest_slow} vs {slowest_other}");
    assert!(truths.traces > 0);
    let trace = batches.iter().flat_map(|b| &b.traces).next().unwrap();
    let spans: serde_json::Value = serde_json::from_str(&trace.spans).unwrap();
    assert_eq!(spans[0]["name"], trace.key.transaction.as_str());
    assert!(spans.as_array().unwrap().len() > 1, "segments as child spans");
}

#[test]
fn overrides_rename_the_fleet_and_move_the_regression() {
    let spec = two_days();
    let overrides = Overrides {
        services: vec!["shop".into()],
        hosts: vec![vec!["synthetic-shop-1".into()]],
        transactions: vec![vec![TransactionName {
            name: "GET /export".into(),
            feature: "reports".into(),
            kind: "web".into(),
        }]],
        environment: Some("demo".into()),
        regression: Some((spec.start_minute + DAY, 2.0)),
        burst: Some((spec.start_minute, spec.end_minute(), 0.1)),
    };
    let generator = Generator::with_overrides(&spec, &overrides);
    let keys = generator.series();
    assert_eq!(keys.len(), Generator::new(&spec).series().len());
    let first = &keys[0];
    assert_eq!(
        (first.service.as_str(), first.host.as_str(), first.transaction.as_str()),
        ("shop", "synthetic-shop-1", "GET /export")
    );
    assert_eq!(keys[6].host, "shop-1", "unnamed hosts follow the service's new name");
    assert!(keys.iter().all(|k| k.environment == "demo"));
    let models = generator.models();
    assert_eq!((models[0].role, models[0].feature.as_str()), (Role::Slow, "reports"));
    let planted = generator.planted();
    assert_eq!(planted.slow_endpoints[0].transaction, "GET /export");
    assert_eq!(planted.error_burst.host, "synthetic-shop-1");
    assert_eq!(
        (planted.error_burst.from_minute, planted.error_burst.to_minute),
        (spec.start_minute, spec.end_minute())
    );
    assert_eq!(
        (planted.regression_start, planted.regression_factor),
        (spec.start_minute + DAY, 2.0)
    );
    // The model is unchanged: the same samples under the new names.
    assert_eq!(
        generator.raw_samples(3, spec.start_minute),
        Generator::new(&spec).raw_samples(3, spec.start_minute)
    );
}

/// The small spec written to a SQLite file, then read back the way the
/// analysis layer will.
#[test]
fn planted_truths_hold_in_the_store() {
    let dir = std::env::temp_dir().join(format!(
        "kuroko-synthetic-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("kuroko.db")).unwrap();
    let spec = Spec::small(MONDAY);
    let mut calls = 0u64;
    let truths = write_to(&store, &spec, |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .unwrap();
    assert_eq!(calls, Generator::new(&spec).batch_count());
    let (start, middle, end) = (spec.start_minute, spec.start_minute + WEEK, spec.end_minute());
    assert_eq!(truths.regression_start, middle);

    let merged = |filter: &Filter, from, to| {
        let mut total = Histogram::empty();
        for (_, h) in store.histograms(filter, from, to).unwrap() {
            total.merge(&h);
        }
        total
    };
    let ratio = |planted: &Planted, q: f64| {
        merged(&planted.filter(), middle, end).quantile(q) / merged(&planted.filter(), start, middle).quantile(q)
    };
    let regression = ratio(&truths.regression, 0.95);
    assert!((1.27..=1.33).contains(&regression), "p95 regression {regression}");
    let median = ratio(&truths.regression, 0.5);
    assert!((0.97..=1.03).contains(&median), "p50 moved by {median}");
    let noisy = ratio(&truths.noisy, 0.95);
    assert!((0.97..=1.03).contains(&noisy), "noisy p95 moved by {noisy}");

    // Apdex zones and outcomes both count every run.
    let all = Filter::default();
    let total = |name: &str| -> f64 {
        store
            .counters(&all, name, start, end)
            .unwrap()
            .iter()
            .map(|(_, _, v)| v)
            .sum()
    };
    let runs: u64 = store
        .histograms(&all, start, end)
        .unwrap()
        .iter()
        .map(|(_, h)| h.count)
        .sum();
    assert_eq!(runs, truths.runs);
    assert_eq!(total("kuroko.transaction.apdex"), runs as f64);
    assert_eq!(total("kuroko.transaction.outcomes"), runs as f64);
    let apdex = store.counters(&all, "kuroko.transaction.apdex", start, end).unwrap();
    let threshold_label = "kuroko.apdex.threshold=0.5,kuroko.apdex.zone=";
    assert!(apdex.iter().all(|(_, labels, _)| labels.starts_with(threshold_label)));

    // Errors: the burst on one host only, over a background elsewhere,
    // and every failed run is an error occurrence.
    let burst = &truths.error_burst;
    let errors = store.errors(&all, start, end).unwrap();
    let bursts: Vec<_> = errors.iter().filter(|e| e.error_type == burst.error_type).collect();
    assert!(bursts.iter().all(|e| e.key.host == burst.host
        && e.key.transaction == burst.transaction.transaction
        && e.location == burst.location
        && (burst.from_minute..burst.to_minute).contains(&e.first_minute)));
    assert_eq!(bursts.iter().map(|e| e.count).sum::<u64>(), burst.count);
    assert!(burst.count > 500, "{} burst errors", burst.count);
    assert!(bursts.len() as u64 > burst.count / 2, "the ids vary");
    assert_eq!(
        (burst.from_minute.div_euclid(DAY), (burst.to_minute - 1).div_euclid(DAY)),
        (end.div_euclid(DAY) - 2, end.div_euclid(DAY) - 2),
        "on one day"
    );
    let background: Vec<_> = errors.iter().filter(|e| e.error_type != burst.error_type).collect();
    let hosts: std::collections::BTreeSet<&str> = background.iter().map(|e| e.key.host.as_str()).collect();
    assert!(hosts.len() >= 3, "background errors on {hosts:?}");
    let occurrences: u64 = errors.iter().map(|e| e.count).sum();
    assert_eq!(occurrences, burst.count + truths.background_errors);
    let failed: f64 = store
        .counters(&all, "kuroko.transaction.outcomes", start, end)
        .unwrap()
        .iter()
        .filter(|(_, labels, _)| labels == "kuroko.outcome=5xx" || labels == "kuroko.outcome=error")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(failed, occurrences as f64);

    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
