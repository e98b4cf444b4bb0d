//! Services' versions as they arrive: a metrics or traces resource's
//! `service.version`, noted the first time this process sees it (per
//! service and deployment environment) and recorded in the store's
//! [`Deploys`](crate::store::deploys::Deploys), whose earliest minute per
//! version is the deploy the charts and `regressions --since-deploy` use.
//! At most [`MAX_VERSIONS`] are remembered in memory (past that, each
//! sighting is recorded again: the store keeps the earliest anyway).

use std::collections::HashSet;
use std::sync::Mutex;

use super::otlp::{get, identity, text, Attribute, Limits};
use crate::store::deploys::VersionSeen;

/// Most versions remembered as recorded.
pub(crate) const MAX_VERSIONS: usize = 10_000;

/// (service, environment, version) recorded by this process.
#[derive(Debug, Default)]
pub(crate) struct VersionBook {
    recorded: Mutex<HashSet<(String, String, String)>>,
}

impl VersionBook {
    /// The versions of `resources` (each a resource's attributes) not yet
    /// recorded, seen at `minute`.
    pub(crate) fn new_in<'a, A: Attribute + 'a>(
        &self,
        resources: impl Iterator<Item = &'a [A]>,
        limits: &Limits,
        minute: i64,
    ) -> Vec<VersionSeen> {
        let recorded = crate::sync::lock(&self.recorded);
        let mut out: Vec<VersionSeen> = Vec::new();
        for attributes in resources {
            let Some(version) = get(attributes, "service.version")
                .and_then(text)
                .filter(|v| !v.is_empty() && v.len() <= limits.max_value_bytes)
            else {
                continue;
            };
            let Ok(sender) = identity(attributes, limits) else {
                continue;
            };
            let key = (sender.service, sender.environment, version);
            if recorded.contains(&key)
                || out
                    .iter()
                    .any(|v| (&v.service, &v.environment, &v.version) == (&key.0, &key.1, &key.2))
            {
                continue;
            }
            out.push(VersionSeen {
                service: key.0,
                environment: key.1,
                version: key.2,
                first_minute: minute,
            });
        }
        out
    }

    /// Remembers `seen` as recorded in the store.
    pub(crate) fn recorded(&self, seen: &[VersionSeen]) {
        let mut recorded = crate::sync::lock(&self.recorded);
        for v in seen {
            if recorded.len() >= MAX_VERSIONS {
                return;
            }
            recorded.insert((v.service.clone(), v.environment.clone(), v.version.clone()));
        }
    }
}
