//! The embedded store's deploys ([`Deploys`]): one row per service,
//! environment and version in `deploys`, its earliest minute kept.

use rusqlite::params;

use super::schema::{table_exists, DEPLOYS_SCHEMA};
use super::SqliteStore;
use crate::store::deploys::{Deploys, VersionSeen};
use crate::store::StoreError;

impl Deploys for SqliteStore {
    fn versions(&self) -> Result<Vec<VersionSeen>, StoreError> {
        self.version_rows().map_err(|e| self.error(e))
    }

    fn versions_seen(&self, seen: &[VersionSeen]) -> Result<(), StoreError> {
        self.version_upsert(seen).map_err(|e| self.error(e))
    }
}

impl SqliteStore {
    fn version_rows(&self) -> Result<Vec<VersionSeen>, rusqlite::Error> {
        let connection = self.connection();
        // A file written by a build without deploys: none seen.
        if !table_exists(&connection, "deploys")? {
            return Ok(Vec::new());
        }
        let mut statement = connection.prepare_cached(
            "SELECT service, environment, version, first_minute FROM deploys
             ORDER BY service, environment, first_minute, version",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(VersionSeen {
                service: row.get(0)?,
                environment: row.get(1)?,
                version: row.get(2)?,
                first_minute: row.get(3)?,
            })
        })?;
        rows.collect()
    }

    fn version_upsert(&self, seen: &[VersionSeen]) -> Result<(), rusqlite::Error> {
        if seen.is_empty() {
            return Ok(());
        }
        let connection = self.connection();
        connection.execute_batch(DEPLOYS_SCHEMA)?;
        let mut statement = connection.prepare_cached(
            "INSERT INTO deploys (service, environment, version, first_minute) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (service, environment, version)
             DO UPDATE SET first_minute = MIN(first_minute, excluded.first_minute)",
        )?;
        for v in seen {
            statement.execute(params![v.service, v.environment, v.version, v.first_minute])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_keeps_its_earliest_minute_after_reopening() {
        let dir = std::env::temp_dir().join(format!("kuroko-deploys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.versions().unwrap().is_empty());
        let seen = |version: &str, first_minute| VersionSeen {
            service: "shop".into(),
            environment: "production".into(),
            version: version.into(),
            first_minute,
        };
        store.versions_seen(&[seen("1.0", 100), seen("1.1", 500)]).unwrap();
        store.versions_seen(&[seen("1.1", 400), seen("1.0", 200)]).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.versions().unwrap(), [seen("1.0", 100), seen("1.1", 400)]);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
