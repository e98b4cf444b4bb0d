//! Histograms as an OpenTelemetry exporter sends them, for the tests that
//! check merges across scales (`clickhouse_store.rs`,
//! `grafana_dashboards.rs`), included with `#[path]`.

use std::collections::BTreeMap;

use kuroko_reporter::histogram::{bucket_index, Histogram};

/// A histogram of `values` at `scale`, as an exporter at that scale sends it:
/// dense counts from the first bucket used to the last.
pub fn at_scale(values: &[f64], scale: i32) -> Histogram {
    let mut counts = BTreeMap::new();
    for &v in values {
        *counts.entry(bucket_index(v, scale)).or_insert(0u64) += 1;
    }
    let offset = *counts.keys().next().unwrap();
    let last = *counts.keys().next_back().unwrap();
    let dense: Vec<u64> = (offset..=last).map(|i| counts.get(&i).copied().unwrap_or(0)).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    Histogram::from_exponential(
        scale,
        0,
        0.0,
        offset,
        &dense,
        values.len() as u64,
        Some(values.iter().sum()),
        Some((min, max)),
    )
    .unwrap()
}
