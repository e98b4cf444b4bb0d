//! The ClickHouse store's problem sightings ([`ProblemSightings`]): a row
//! per group and recording in `problem_seen`, partitioned by the week of its
//! last seen (retention drops them as it drops hour rows); a group's earliest
//! first and latest last seen read back, so every replica sees the same.

use serde::Deserialize;

use super::{quote, ClickHouseStore};
use crate::store::sightings::{ProblemSeen, ProblemSightings};
use crate::store::StoreError;

#[derive(Deserialize)]
struct SeenOut {
    group_id: String,
    first_seen: u64,
    last_seen: u64,
}

impl ProblemSightings for ClickHouseStore {
    fn problems_seen(&self) -> Result<Vec<ProblemSeen>, StoreError> {
        let rows: Vec<SeenOut> = self.select(
            "SELECT group_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM problem_seen
             GROUP BY group_id ORDER BY group_id",
        )?;
        Ok(rows
            .into_iter()
            .map(|r| ProblemSeen {
                group: r.group_id,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
            })
            .collect())
    }

    fn problems_seen_put(&self, seen: &[ProblemSeen]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = seen
            .iter()
            .map(|s| {
                format!(
                    "({}, toInt64({}), toUInt64({}), toUInt64({}))",
                    quote(&s.group),
                    s.last_seen / 3_600_000_000_000,
                    s.first_seen,
                    s.last_seen
                )
            })
            .collect();
        self.execute(&format!(
            "INSERT INTO problem_seen (group_id, hour, first_seen, last_seen) VALUES {}",
            rows.join(", ")
        ))
    }
}
