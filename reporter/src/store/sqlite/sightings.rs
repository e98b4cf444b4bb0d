//! The embedded store's problem sightings ([`ProblemSightings`]): one row
//! per group in `problem_seen`, its earliest first and latest last seen kept
//! (retention deletes a group not seen for as long as hour rows are kept).

use rusqlite::params;

use super::schema::{table_exists, SIGHTINGS_SCHEMA};
use super::SqliteStore;
use crate::store::sightings::{ProblemSeen, ProblemSightings};
use crate::store::StoreError;

impl ProblemSightings for SqliteStore {
    fn problems_seen(&self) -> Result<Vec<ProblemSeen>, StoreError> {
        self.sighting_rows().map_err(|e| self.error(e))
    }

    fn problems_seen_put(&self, seen: &[ProblemSeen]) -> Result<(), StoreError> {
        self.sighting_upsert(seen).map_err(|e| self.error(e))
    }
}

/// SQLite's integers are signed: nanoseconds past 2262 are kept as the largest.
fn signed(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

impl SqliteStore {
    fn sighting_rows(&self) -> Result<Vec<ProblemSeen>, rusqlite::Error> {
        let connection = self.connection();
        // A file written by a build without sightings: none kept.
        if !table_exists(&connection, "problem_seen")? {
            return Ok(Vec::new());
        }
        let mut statement =
            connection.prepare_cached("SELECT group_id, first_seen, last_seen FROM problem_seen ORDER BY group_id")?;
        let rows = statement.query_map([], |row| {
            Ok(ProblemSeen {
                group: row.get(0)?,
                first_seen: row.get::<_, i64>(1)?.max(0) as u64,
                last_seen: row.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        rows.collect()
    }

    fn sighting_upsert(&self, seen: &[ProblemSeen]) -> Result<(), rusqlite::Error> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection();
        connection.execute_batch(SIGHTINGS_SCHEMA)?;
        let transaction = connection.transaction()?;
        {
            let mut statement = transaction.prepare_cached(
                "INSERT INTO problem_seen (group_id, first_seen, last_seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_id)
                 DO UPDATE SET first_seen = MIN(first_seen, excluded.first_seen),
                               last_seen = MAX(last_seen, excluded.last_seen)",
            )?;
            for s in seen {
                statement.execute(params![s.group, signed(s.first_seen), signed(s.last_seen)])?;
            }
        }
        transaction.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_keeps_its_earliest_first_and_latest_last_seen_after_reopening() {
        let dir = std::env::temp_dir().join(format!("kuroko-sightings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.problems_seen().unwrap().is_empty());
        let seen = |group: &str, first_seen, last_seen| ProblemSeen {
            group: group.into(),
            first_seen,
            last_seen,
        };
        store
            .problems_seen_put(&[seen("00000000000000aa", 100, 200), seen("00000000000000bb", 500, 600)])
            .unwrap();
        store
            .problems_seen_put(&[seen("00000000000000aa", 150, 900), seen("00000000000000bb", 400, 450)])
            .unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.problems_seen().unwrap(),
            [seen("00000000000000aa", 100, 900), seen("00000000000000bb", 400, 600)]
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
