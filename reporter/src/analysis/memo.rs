//! Store answers kept for the length of one page: the web UI's overview asks
//! for transactions, features and services over the same window, and each
//! question would otherwise merge the same histograms again.
//!
//! A [`Memo`] lives as long as one request; nothing in it expires, so it is
//! not for long-lived analyses (a report run asks each window once anyway).

use std::collections::HashMap;
use std::sync::Mutex;

use super::AnalysisError;
use crate::histogram::Histogram;
use crate::store::{Filter, SeriesKey, Store};

/// Merged histograms per series.
type Histograms = Vec<(SeriesKey, Histogram)>;
/// Counter totals per series and label set.
type Counters = Vec<(SeriesKey, String, f64)>;

/// Answers already read, by question.
#[derive(Default)]
pub(crate) struct Memo {
    histograms: Mutex<HashMap<(Filter, i64, i64), Histograms>>,
    counters: Mutex<HashMap<(Filter, String, i64, i64), Counters>>,
}

impl Memo {
    /// [`Store::histograms`], read once per filter and window.
    pub(crate) fn histograms(
        &self,
        store: &dyn Store,
        filter: &Filter,
        from: i64,
        to: i64,
    ) -> Result<Histograms, AnalysisError> {
        remembered(&self.histograms, (filter.clone(), from, to), || {
            store.histograms(filter, from, to)
        })
    }

    /// [`Store::counters`], read once per filter, name and window.
    pub(crate) fn counters(
        &self,
        store: &dyn Store,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Counters, AnalysisError> {
        remembered(&self.counters, (filter.clone(), name.to_owned(), from, to), || {
            store.counters(filter, name, from, to)
        })
    }
}

/// The answer kept under `key`, else `read`'s, kept.
fn remembered<K: std::hash::Hash + Eq, V: Clone>(
    kept: &Mutex<HashMap<K, V>>,
    key: K,
    read: impl FnOnce() -> Result<V, crate::store::StoreError>,
) -> Result<V, AnalysisError> {
    fn lock<T>(kept: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        crate::sync::lock(kept)
    }
    if let Some(answer) = lock(kept).get(&key) {
        return Ok(answer.clone());
    }
    // Read without holding the lock: a slow store must not stall others.
    let answer = read()?;
    lock(kept).insert(key, answer.clone());
    Ok(answer)
}
