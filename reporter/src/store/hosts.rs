//! Answers merged across hosts ([`Filter::across_hosts`](super::Filter)):
//! a per-series answer with each key's host emptied and the rows of one
//! transaction series (the key without its host) merged. What a store
//! without roll-ups across hosts answers with, and what one with them must
//! equal.

use std::collections::BTreeMap;

use super::{SeriesKey, StepTotal};
use crate::histogram::Histogram;

/// `key` without its host: its transaction series.
pub(crate) fn transaction_series(key: &SeriesKey) -> SeriesKey {
    SeriesKey {
        host: String::new(),
        ..key.clone()
    }
}

/// Adds `histogram` to the one merged under `at`.
fn merge_into<K: Ord>(merged: &mut BTreeMap<K, Histogram>, at: K, histogram: Histogram) {
    match merged.entry(at) {
        std::collections::btree_map::Entry::Occupied(mut total) => total.get_mut().merge(&histogram),
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(histogram);
        }
    }
}

/// [`Store::histograms`](super::Store::histograms)'s answer merged across
/// hosts, ordered by key.
pub(crate) fn histograms(rows: Vec<(SeriesKey, Histogram)>) -> Vec<(SeriesKey, Histogram)> {
    let mut merged = BTreeMap::new();
    for (key, histogram) in rows {
        merge_into(&mut merged, transaction_series(&key), histogram);
    }
    merged.into_iter().collect()
}

/// [`Store::counters`](super::Store::counters)'s answer summed across hosts,
/// ordered by transaction, labels and key (as the stores order it).
pub(crate) fn counters(rows: Vec<(SeriesKey, String, f64)>) -> Vec<(SeriesKey, String, f64)> {
    let mut sums: BTreeMap<(String, String, SeriesKey), f64> = BTreeMap::new();
    for (key, labels, value) in rows {
        *sums
            .entry((key.transaction.clone(), labels, transaction_series(&key)))
            .or_default() += value;
    }
    sums.into_iter().map(|((_, labels, key), v)| (key, labels, v)).collect()
}

/// [`Store::histogram_steps`](super::Store::histogram_steps)'s answer merged
/// across hosts, ordered by key and step.
pub(crate) fn histogram_steps(rows: Vec<(SeriesKey, i64, Histogram)>) -> Vec<(SeriesKey, i64, Histogram)> {
    let mut merged = BTreeMap::new();
    for (key, start, histogram) in rows {
        merge_into(&mut merged, (transaction_series(&key), start), histogram);
    }
    merged.into_iter().map(|((key, start), h)| (key, start, h)).collect()
}

/// [`Store::counter_steps`](super::Store::counter_steps)'s answer summed
/// across hosts, ordered by key, labels and step.
pub(crate) fn counter_steps(rows: Vec<(SeriesKey, String, i64, f64)>) -> Vec<(SeriesKey, String, i64, f64)> {
    let mut sums: BTreeMap<(SeriesKey, String, i64), f64> = BTreeMap::new();
    for (key, labels, start, value) in rows {
        *sums.entry((transaction_series(&key), labels, start)).or_default() += value;
    }
    sums.into_iter()
        .map(|((key, labels, start), v)| (key, labels, start, v))
        .collect()
}

/// [`Store::totals_steps`](super::Store::totals_steps)'s answer summed
/// across hosts, ordered by key and step.
pub(crate) fn totals_steps(rows: Vec<StepTotal>) -> Vec<StepTotal> {
    let mut sums: BTreeMap<(SeriesKey, i64), (u64, f64)> = BTreeMap::new();
    for (key, start, count, sum) in rows {
        let total = sums.entry((transaction_series(&key), start)).or_default();
        total.0 = total.0.saturating_add(count);
        total.1 += sum;
    }
    sums.into_iter()
        .map(|((key, start), (count, sum))| (key, start, count, sum))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, transaction: &str) -> SeriesKey {
        SeriesKey {
            service: "shop".into(),
            host: host.into(),
            transaction: transaction.into(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        }
    }

    #[test]
    fn hosts_of_one_transaction_become_one_row() {
        let one = |v: f64| {
            let mut h = Histogram::empty();
            h.record(v).unwrap();
            h
        };
        let rows = vec![
            (key("b", "GET /"), one(0.5)),
            (key("a", "GET /"), one(0.25)),
            (key("a", "POST /"), one(1.0)),
        ];
        let merged = histograms(rows);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].0, key("", "GET /"));
        assert_eq!((merged[0].1.count, merged[0].1.sum), (2, 0.75));
        let counted = counters(vec![
            (key("a", "GET /"), "x=1".into(), 1.0),
            (key("b", "GET /"), "x=1".into(), 2.0),
        ]);
        assert_eq!(counted, vec![(key("", "GET /"), "x=1".to_owned(), 3.0)]);
    }
}
