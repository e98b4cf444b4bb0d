//! Deploys as the analysis reads them: a service's versions as the store
//! first saw them ([`crate::store::deploys`]), each version after the first
//! one known per service and environment being a deploy (the first is only
//! when Kuroko began to see the service). The charts mark them; a
//! regressions question "since the deploy" compares the window after the
//! latest one with as long a window just before it.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Analysis, AnalysisError, Scope};

/// A deploy: a service's new version, first seen at a minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deploy {
    /// `service.name`.
    pub service: String,
    /// The deployment environment, empty when none.
    pub environment: String,
    /// The version deployed (`service.version`).
    pub version: String,
    /// The version before it, as last known.
    pub previous_version: String,
    /// When it was first seen, unix minutes.
    pub minute: i64,
}

impl Analysis<'_> {
    /// The deploys of the services in `scope` within its window, oldest
    /// first: what every chart of the scope marks. A scope narrower than a
    /// service and environment (a feature, a team, a host, a transaction)
    /// has the deploys of the services with a series in it.
    pub fn deploys(&self, scope: &Scope) -> Result<Vec<Deploy>, AnalysisError> {
        let mut deploys: Vec<Deploy> = self
            .all_deploys(scope)?
            .into_iter()
            .filter(|d| (scope.from..scope.to).contains(&d.minute))
            .collect();
        let narrower =
            scope.feature.is_some() || scope.team.is_some() || scope.host.is_some() || scope.transaction.is_some();
        if narrower && !deploys.is_empty() {
            let services: BTreeSet<String> = self
                .store
                .series()?
                .into_iter()
                .filter(|key| scope.matches(key, self.owners))
                .map(|key| key.service)
                .collect();
            deploys.retain(|d| services.contains(&d.service));
        }
        Ok(deploys)
    }

    /// The latest deploy of the services in `scope` before its end, if any.
    pub fn latest_deploy(&self, scope: &Scope) -> Result<Option<Deploy>, AnalysisError> {
        Ok(self
            .all_deploys(scope)?
            .into_iter()
            .filter(|d| d.minute < scope.to)
            .max_by_key(|d| d.minute))
    }

    fn all_deploys(&self, scope: &Scope) -> Result<Vec<Deploy>, AnalysisError> {
        let versions = self.store.versions()?;
        let mut out = Vec::new();
        // Ordered by service, environment, first minute.
        for pair in versions.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            if (&before.service, &before.environment) != (&after.service, &after.environment) {
                continue;
            }
            if scope.service.as_ref().is_some_and(|s| *s != after.service)
                || scope.environment.as_ref().is_some_and(|e| *e != after.environment)
            {
                continue;
            }
            out.push(Deploy {
                service: after.service.clone(),
                environment: after.environment.clone(),
                version: after.version.clone(),
                previous_version: before.version.clone(),
                minute: after.first_minute,
            });
        }
        out.sort_by_key(|d| d.minute);
        Ok(out)
    }
}
