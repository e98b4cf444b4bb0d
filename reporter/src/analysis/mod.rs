//! Analysis of stored data: what is slow, where the time goes, what
//! changed, what regressed, which errors are the same error, and which
//! kept traces show a performance problem.
//!
//! Every question takes a [`Scope`] (a window and filters) and is answered
//! by an [`Analysis`] from the [`Store`] (which merges histograms itself)
//! and `owners.toml` (which gives untagged transactions their feature and
//! every feature its team). The CLI (`kuroko query`), the HTTP API, the web
//! UI and the reports all ask through here.

pub mod attribution;
pub mod blocks;
pub mod breakdown;
pub mod deploys;
pub mod distributed;
pub mod endpoints;
pub(crate) mod error;
pub mod errors;
pub mod evidence;
pub(crate) mod fingerprint;
pub(crate) mod memo;
pub mod problems;
pub mod regressions;
pub mod scope;
pub mod shape;
pub(crate) mod stack;
pub mod stats;
pub mod timeseries;
pub mod triage;

pub use error::AnalysisError;
pub use scope::Scope;

use crate::histogram::Histogram;
use crate::owners::Owners;
use crate::store::{Filter, SeriesKey, Store};
use memo::Memo;

/// The questions, asked of one store with one owners file.
#[derive(Clone, Copy)]
pub struct Analysis<'a> {
    /// Where the data is.
    pub store: &'a dyn Store,
    /// Who owns what.
    pub owners: &'a Owners,
    /// Store answers kept for reuse, when asked for ([`Analysis::remembering`]).
    memo: Option<&'a Memo>,
    /// What the performance problems' detectors flag.
    problem_thresholds: &'a problems::Thresholds,
}

impl<'a> Analysis<'a> {
    /// Questions about `store`, with features and teams from `owners`.
    pub fn new(store: &'a dyn Store, owners: &'a Owners) -> Self {
        Analysis {
            store,
            owners,
            memo: None,
            problem_thresholds: &problems::DEFAULT_THRESHOLDS,
        }
    }

    /// The same questions, finding performance problems with `thresholds`
    /// (`[problems]` of `kuroko.toml`) instead of the defaults.
    pub fn with_problem_thresholds(self, thresholds: &'a problems::Thresholds) -> Self {
        Analysis {
            problem_thresholds: thresholds,
            ..self
        }
    }

    /// The same questions, reading each window's merged histograms and
    /// counters from the store once and then from `memo` (a page that asks
    /// several questions of one window reads it once).
    pub(crate) fn remembering(self, memo: &'a Memo) -> Self {
        Analysis {
            memo: Some(memo),
            ..self
        }
    }

    /// [`Store::histograms`], through the memo if there is one.
    pub fn histograms(
        &self,
        filter: &Filter,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, Histogram)>, AnalysisError> {
        match self.memo {
            Some(memo) => memo.histograms(self.store, filter, from, to),
            None => Ok(self.store.histograms(filter, from, to)?),
        }
    }

    /// [`Store::counters`], through the memo if there is one.
    pub fn counters(
        &self,
        filter: &Filter,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(SeriesKey, String, f64)>, AnalysisError> {
        match self.memo {
            Some(memo) => memo.counters(self.store, filter, name, from, to),
            None => Ok(self.store.counters(filter, name, from, to)?),
        }
    }
}
