//! The ClickHouse store's deploys ([`Deploys`]): a row per sighting in
//! `deploys`, the earliest minute per service, environment and version
//! read back, so every replica sees the same first seen.

use serde::Deserialize;

use super::{quote, ClickHouseStore};
use crate::store::deploys::{Deploys, VersionSeen};
use crate::store::StoreError;

#[derive(Deserialize)]
struct VersionOut {
    service: String,
    environment: String,
    version: String,
    first_minute: i64,
}

impl Deploys for ClickHouseStore {
    fn versions(&self) -> Result<Vec<VersionSeen>, StoreError> {
        let rows: Vec<VersionOut> = self.select(
            "SELECT service, environment, version, min(first_minute) AS first_minute FROM deploys
             GROUP BY service, environment, version
             ORDER BY service, environment, first_minute, version",
        )?;
        Ok(rows
            .into_iter()
            .map(|r| VersionSeen {
                service: r.service,
                environment: r.environment,
                version: r.version,
                first_minute: r.first_minute,
            })
            .collect())
    }

    fn versions_seen(&self, seen: &[VersionSeen]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = seen
            .iter()
            .map(|v| {
                format!(
                    "({}, {}, {}, toInt64({}))",
                    quote(&v.service),
                    quote(&v.environment),
                    quote(&v.version),
                    v.first_minute
                )
            })
            .collect();
        self.execute(&format!(
            "INSERT INTO deploys (service, environment, version, first_minute) VALUES {}",
            rows.join(", ")
        ))
    }
}
