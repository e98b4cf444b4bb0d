//! The embedded store's error triage ([`ErrorTriage`]): one row per
//! decision in `error_triage`, the latest per group read back.

use rusqlite::params;

use super::schema::{table_exists, TRIAGE_SCHEMA};
use super::SqliteStore;
use crate::store::triage::{ErrorTriage, Triage, TriageStatus};
use crate::store::StoreError;

impl ErrorTriage for SqliteStore {
    fn triage(&self) -> Result<Vec<Triage>, StoreError> {
        self.triage_rows().map_err(|e| self.error(e))
    }

    fn triage_put(&self, decision: &Triage) -> Result<(), StoreError> {
        self.triage_insert(decision).map_err(|e| self.error(e))
    }
}

impl SqliteStore {
    fn triage_rows(&self) -> Result<Vec<Triage>, rusqlite::Error> {
        let connection = self.connection();
        // A file another process owns, written by a build without triage:
        // nothing decided yet.
        if !table_exists(&connection, "error_triage")? {
            return Ok(Vec::new());
        }
        let mut statement = connection.prepare_cached(
            "SELECT t.group_id, t.status, t.at, t.ignore_until, t.ignore_count, t.team, t.by
             FROM error_triage t
             JOIN (SELECT group_id, MAX(seq) AS seq FROM error_triage GROUP BY group_id) latest
               ON latest.seq = t.seq
             ORDER BY t.group_id",
        )?;
        let rows = statement.query_map([], |row| {
            let status: String = row.get("status")?;
            Ok(Triage {
                group: row.get("group_id")?,
                status: status.parse::<TriageStatus>().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
                })?,
                at: row.get("at")?,
                ignore_until: row.get("ignore_until")?,
                ignore_count: row.get::<_, Option<i64>>("ignore_count")?.map(|c| c.max(0) as u64),
                team: row.get("team")?,
                by: row.get("by")?,
            })
        })?;
        rows.collect()
    }

    fn triage_insert(&self, d: &Triage) -> Result<(), rusqlite::Error> {
        let connection = self.connection();
        connection.execute_batch(TRIAGE_SCHEMA)?;
        connection.execute(
            "INSERT INTO error_triage (group_id, status, at, ignore_until, ignore_count, team, by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                d.group,
                d.status.as_str(),
                d.at,
                d.ignore_until,
                d.ignore_count.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
                d.team,
                d.by
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_decision_of_each_group_is_read_back_after_reopening() {
        let dir = std::env::temp_dir().join(format!("kuroko-triage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.triage().unwrap().is_empty());
        let resolved = Triage {
            group: "00000000000000aa".into(),
            status: TriageStatus::Resolved,
            at: 1_000,
            by: "cli".into(),
            ..Triage::default()
        };
        store.triage_put(&resolved).unwrap();
        let ignored = Triage {
            group: "00000000000000bb".into(),
            status: TriageStatus::Ignored,
            at: 1_100,
            ignore_until: Some(9_000),
            ignore_count: Some(50),
            team: Some("payments".into()),
            by: "ui".into(),
        };
        store.triage_put(&ignored).unwrap();
        let reopened = Triage {
            status: TriageStatus::Open,
            at: 1_200,
            ..resolved.clone()
        };
        store.triage_put(&reopened).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.triage().unwrap(), [reopened, ignored]);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
