//! Deploys: when each `service.version` of a service (per deployment
//! environment) was first seen, behind the [`Deploys`] trait that both
//! stores implement (`deploys.rs` in [`super::sqlite`] and
//! [`super::clickhouse`]).
//!
//! Ingest notes a resource's `service.version` the first time this process
//! sees it and records it here; a store keeps the earliest minute per
//! (service, environment, version), so replicas and restarts agree. A
//! version's first seen is its deploy: the charts mark it and
//! `regressions --since-deploy` compares after it with before it. What a
//! deploy means for an analysis belongs to the analysis layer.

use super::StoreError;

/// One version of one service, and when it was first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct VersionSeen {
    /// `service.name`.
    pub service: String,
    /// The deployment environment, empty when none.
    pub environment: String,
    /// `service.version`.
    pub version: String,
    /// The first minute (unix minutes) it was seen.
    pub first_minute: i64,
}

/// The versions a store keeps; see the [module documentation](self).
pub trait Deploys: Send + Sync {
    /// Every version of every service, with its first minute; ordered by
    /// service, environment, then first minute.
    fn versions(&self) -> Result<Vec<VersionSeen>, StoreError>;

    /// Records that each of `seen` was seen at its minute: a version
    /// already kept keeps the earlier of the two.
    fn versions_seen(&self, seen: &[VersionSeen]) -> Result<(), StoreError>;
}
