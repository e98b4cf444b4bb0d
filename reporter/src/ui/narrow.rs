//! Asking the store only about a feature's series when that is exact.
//!
//! A scope's feature filter is applied after the store has read every series
//! ([`Scope::store_filter`](crate::analysis::Scope::store_filter) leaves it
//! out), because `owners.toml`'s patterns can put an untagged transaction in
//! a feature. On a fleet of 2,000 series a feature page then reads all of
//! them to draw a sixth. When `owners.toml` gives the feature no patterns,
//! only the agent's tag can put a series in it, so the store may filter by
//! the tag itself: [`FeatureStore`] adds that filter to every read.

use crate::histogram::Histogram;
use crate::owners::Owners;
use crate::store::{Batch, ErrorSummary, Filter, SeriesKey, Store, StoreError, TracePoint};

/// A store whose reads see only the series tagged with one feature.
pub struct FeatureStore<'a> {
    inner: &'a dyn Store,
    feature: String,
}

impl<'a> FeatureStore<'a> {
    /// `inner` narrowed to `feature`, when only tags can put a series in it
    /// (`owners` declares no pattern for it); `None` otherwise.
    pub fn narrowing(inner: &'a dyn Store, owners: &Owners, feature: &str) -> Option<FeatureStore<'a>> {
        tags_only(owners, feature).then(|| FeatureStore {
            inner,
            feature: feature.to_owned(),
        })
    }

    fn narrow(&self, filter: &Filter) -> Filter {
        Filter {
            feature: Some(filter.feature.clone().unwrap_or_else(|| self.feature.clone())),
            ..filter.clone()
        }
    }
}

/// Whether only the agent's tag can put a series in `feature`: `owners`
/// declares no pattern for it.
pub fn tags_only(owners: &Owners, feature: &str) -> bool {
    owners.feature(feature).is_none_or(|f| f.patterns.is_empty())
}

impl Store for FeatureStore<'_> {
    fn write(&self, _batch: &Batch) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("writing through a narrowed view"))
    }

    fn histograms(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<(SeriesKey, Histogram)>, StoreError> {
        self.inner.histograms(&self.narrow(filter), from, to)
    }

    fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, StoreError> {
        self.inner.counters(&self.narrow(filter), name, from, to)
    }

    fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        Ok(self
            .inner
            .series()?
            .into_iter()
            .filter(|k| k.feature == self.feature)
            .collect())
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn errors(&self, filter: &Filter, from: i64, to: i64) -> Result<Vec<ErrorSummary>, StoreError> {
        self.inner.errors(&self.narrow(filter), from, to)
    }

    fn slowest_traces(&self, filter: &Filter, from: i64, to: i64, limit: usize) -> Result<Vec<TracePoint>, StoreError> {
        self.inner.slowest_traces(&self.narrow(filter), from, to, limit)
    }

    fn claim(&self, _key: &str, _holder: &str, _ttl_seconds: u64) -> Result<bool, StoreError> {
        Err(StoreError::Unsupported("claims through a narrowed view"))
    }

    fn histogram_steps(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, i64, Histogram)>, StoreError> {
        self.inner.histogram_steps(&self.narrow(filter), from, to, step)
    }

    fn counter_steps(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(SeriesKey, String, i64, f64)>, StoreError> {
        self.inner.counter_steps(&self.narrow(filter), name, from, to, step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_feature_without_patterns_is_narrowed_in_the_store() {
        let owners = Owners::parse(
            "[teams.t]\n[features.tagged]\nteam = \"t\"\n[features.patterned]\nteam = \"t\"\n\
             patterns = [{ service = \"shop\" }]\n",
            "owners.toml",
        )
        .unwrap();
        assert!(!tags_only(&owners, "patterned"), "a pattern may add untagged series");
        assert!(tags_only(&owners, "tagged"));
        assert!(
            tags_only(&owners, "undeclared"),
            "only a tag can name an undeclared feature"
        );
    }
}
