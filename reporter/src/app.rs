//! What the reporter's HTTP API (`/api/v1`) and web UI read: the store,
//! who owns what, and the token they require.
//!
//! `kuroko serve` builds one [`App`] and hands a clone to each router; the
//! CLI builds one over a store file to answer `kuroko query` without a
//! running reporter.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::analysis::problems::Thresholds;
use crate::analysis::Analysis;
use crate::config::Secret;
use crate::owners::Owners;
use crate::store::Store;

/// Shared state of the API and the UI.
#[derive(Clone)]
pub struct App {
    /// Where the data is.
    pub store: Arc<dyn Store>,
    /// Who owns what (`owners.toml`; empty when none is configured).
    pub owners: Arc<Owners>,
    /// The UI's public address, for links (may be empty: links are then relative).
    pub base_url: String,
    /// What the performance problems' detectors flag (`[problems]`).
    pub problems: Arc<Thresholds>,
    /// Whether the reporter serves its HTTP port over TLS (`[tls]`).
    pub tls: bool,
    /// `Bearer <token>` that API and UI requests must carry, when set.
    expected_authorization: Option<String>,
}

impl App {
    /// State over `store` and `owners`, requiring `token` when given.
    pub fn new(store: Arc<dyn Store>, owners: Arc<Owners>, base_url: String, token: Option<Secret>) -> App {
        App {
            store,
            owners,
            base_url,
            problems: Arc::new(Thresholds::default()),
            tls: false,
            expected_authorization: token.map(|t| format!("Bearer {}", t.expose())),
        }
    }

    /// The same state, finding performance problems with `thresholds`.
    #[must_use]
    pub fn with_problem_thresholds(self, thresholds: Thresholds) -> App {
        App {
            problems: Arc::new(thresholds),
            ..self
        }
    }

    /// The same state, served over TLS when `tls` (the login cookie is
    /// then `Secure`).
    #[must_use]
    pub fn with_tls(self, tls: bool) -> App {
        App { tls, ..self }
    }

    /// The questions, over this state.
    pub fn analysis(&self) -> Analysis<'_> {
        Analysis::new(self.store.as_ref(), &self.owners).with_problem_thresholds(&self.problems)
    }

    /// Whether auth is on.
    pub(crate) fn requires_token(&self) -> bool {
        self.expected_authorization.is_some()
    }

    /// Whether a request carrying `authorization` (the header's value, or
    /// `Bearer <token>` rebuilt from a cookie) may proceed: always when auth
    /// is off; else only with the exact token, compared in constant time.
    pub(crate) fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        match &self.expected_authorization {
            None => true,
            Some(expected) => authorization.is_some_and(|given| bool::from(given.ct_eq(expected.as_bytes()))),
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("base_url", &self.base_url)
            .field("requires_token", &self.requires_token())
            .finish_non_exhaustive()
    }
}
