//! Analysis of stored data: what is slow, where the time goes, what
//! changed, what regressed, and which errors are the same error.
//!
//! Every question takes a [`Scope`] (a window and filters) and is answered
//! by an [`Analysis`] from the [`Store`] (which merges histograms itself)
//! and `owners.toml` (which gives untagged transactions their feature and
//! every feature its team). The CLI (`kuroko query`), the HTTP API, the web
//! UI and the reports all ask through here.

pub mod breakdown;
pub mod endpoints;
pub mod error;
pub mod errors;
pub mod fingerprint;
pub mod regressions;
pub mod scope;
pub mod stats;
pub mod timeseries;

pub use error::AnalysisError;
pub use scope::Scope;

use crate::owners::Owners;
use crate::store::Store;

/// The questions, asked of one store with one owners file.
#[derive(Clone, Copy)]
pub struct Analysis<'a> {
    /// Where the data is.
    pub store: &'a dyn Store,
    /// Who owns what.
    pub owners: &'a Owners,
}

impl<'a> Analysis<'a> {
    /// Questions about `store`, with features and teams from `owners`.
    pub fn new(store: &'a dyn Store, owners: &'a Owners) -> Self {
        Analysis { store, owners }
    }
}
