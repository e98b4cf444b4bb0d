//! The ClickHouse store's error triage ([`ErrorTriage`]): one event row per
//! decision in `error_triage`, the latest per group (in the server's order,
//! as the alert states) read back, so every replica sees the same one.

use serde::Deserialize;

use super::{now_nanos, quote, token, ClickHouseStore};
use crate::store::triage::{ErrorTriage, Triage, TriageStatus};
use crate::store::StoreError;

#[derive(Deserialize)]
struct TriageOut {
    group_id: String,
    status: String,
    at: i64,
    ignore_until: i64,
    has_ignore_until: u8,
    ignore_count: u64,
    has_ignore_count: u8,
    team: String,
    has_team: u8,
    by: String,
}

impl ErrorTriage for ClickHouseStore {
    fn triage(&self) -> Result<Vec<Triage>, StoreError> {
        let rows: Vec<TriageOut> = self.select(
            "SELECT group_id, status, at, ignore_until, has_ignore_until, ignore_count, has_ignore_count,
                    team, has_team, by
             FROM error_triage ORDER BY group_id, written_at DESC, written DESC, token DESC LIMIT 1 BY group_id",
        )?;
        rows.into_iter()
            .map(|row| {
                Ok(Triage {
                    status: row
                        .status
                        .parse::<TriageStatus>()
                        .map_err(|e| self.error(e.to_string()))?,
                    group: row.group_id,
                    at: row.at,
                    ignore_until: (row.has_ignore_until > 0).then_some(row.ignore_until),
                    ignore_count: (row.has_ignore_count > 0).then_some(row.ignore_count),
                    team: (row.has_team > 0).then_some(row.team),
                    by: row.by,
                })
            })
            .collect()
    }

    fn triage_put(&self, d: &Triage) -> Result<(), StoreError> {
        self.execute(&format!(
            "INSERT INTO error_triage (group_id, status, at, ignore_until, has_ignore_until, ignore_count,
                 has_ignore_count, team, has_team, by, written_at, written, token)
             SELECT {}, {}, toInt64({}), toInt64({}), {}, toUInt64({}), {}, {}, {}, {}, now(), {}, {}",
            quote(&d.group),
            quote(d.status.as_str()),
            d.at,
            d.ignore_until.unwrap_or(0),
            u8::from(d.ignore_until.is_some()),
            d.ignore_count.unwrap_or(0),
            u8::from(d.ignore_count.is_some()),
            quote(d.team.as_deref().unwrap_or_default()),
            u8::from(d.team.is_some()),
            quote(&d.by),
            now_nanos(),
            token()
        ))
    }
}
