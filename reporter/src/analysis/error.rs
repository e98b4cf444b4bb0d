//! Why a question could not be answered.

/// A question's failure: the store failed, or the scope was not understood.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The window or a filter is not understood.
    #[error(transparent)]
    Scope(#[from] crate::analysis::scope::ScopeError),
}
