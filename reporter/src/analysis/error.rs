//! Why a question could not be answered: the store failed, or the scope
//! (window, filters) was not understood. One error type for every question,
//! so the CLI and the API report them the same way.

use super::scope::ScopeError;
use crate::store::StoreError;

/// A question that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The window or a filter is wrong.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}
