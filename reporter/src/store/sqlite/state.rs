//! The embedded store's delivery ledger and alert states
//! ([`DeliveryState`]): one atomic statement per claim, in the store's file.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::store::state::{AlertState, DeliveryState, LedgerEntry, LedgerStatus, LEASE_SECONDS};
use crate::store::StoreError;

impl DeliveryState for SqliteStore {
    fn ledger_claim(&self, kind: &str, target: &str, period: &str, holder: &str, now: i64) -> Result<bool, StoreError> {
        self.delivery_claim(kind, target, period, holder, now)
            .map_err(|e| self.error(e))
    }

    fn ledger_record(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.delivery_record(entry).map_err(|e| self.error(e))
    }

    fn ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        self.delivery_ledger(since).map_err(|e| self.error(e))
    }

    fn alert_state_get(&self, name: &str) -> Result<Option<AlertState>, StoreError> {
        self.alert_get(name).map_err(|e| self.error(e))
    }

    fn alert_state_put(&self, name: &str, state: &AlertState) -> Result<(), StoreError> {
        self.alert_put(name, state).map_err(|e| self.error(e))
    }
}

impl SqliteStore {
    /// One statement, so the claim is atomic across connections and
    /// processes: a new row, or a takeover of a row still open (claimed or
    /// retrying) whose lease has run out.
    fn delivery_claim(
        &self,
        kind: &str,
        target: &str,
        period: &str,
        holder: &str,
        now: i64,
    ) -> Result<bool, rusqlite::Error> {
        let changed = self.connection().execute(
            "INSERT INTO delivery_ledger (kind, target, period, holder, status, claimed_at)
             VALUES (?1, ?2, ?3, ?4, 'claimed', ?5)
             ON CONFLICT (kind, target, period) DO UPDATE
                SET holder = excluded.holder, status = 'claimed', claimed_at = excluded.claimed_at
                WHERE delivery_ledger.status IN ('claimed', 'retrying')
                  AND delivery_ledger.claimed_at <= ?5 - ?6",
            params![kind, target, period, holder, now, LEASE_SECONDS],
        )?;
        Ok(changed == 1)
    }

    fn delivery_record(&self, e: &LedgerEntry) -> Result<(), rusqlite::Error> {
        self.connection().execute(
            "INSERT OR REPLACE INTO delivery_ledger
             (kind, target, period, holder, status, attempts, rounds, error, late, scheduled_at, claimed_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                e.kind,
                e.target,
                e.period,
                e.holder,
                e.status.as_str(),
                e.attempts,
                e.rounds,
                e.error,
                e.late,
                e.scheduled_at,
                e.claimed_at,
                e.finished_at
            ],
        )?;
        Ok(())
    }

    fn delivery_ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, rusqlite::Error> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT kind, target, period, holder, status, attempts, rounds, error, late, scheduled_at,
                    claimed_at, finished_at
             FROM delivery_ledger WHERE claimed_at >= ?1 OR finished_at >= ?1
             ORDER BY claimed_at, kind, target, period",
        )?;
        let rows = statement.query_map([since], |row| {
            let status: String = row.get("status")?;
            Ok(LedgerEntry {
                kind: row.get("kind")?,
                target: row.get("target")?,
                period: row.get("period")?,
                holder: row.get("holder")?,
                status: status.parse::<LedgerStatus>().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
                })?,
                attempts: row.get("attempts")?,
                rounds: row.get("rounds")?,
                error: row.get("error")?,
                late: row.get("late")?,
                scheduled_at: row.get("scheduled_at")?,
                claimed_at: row.get("claimed_at")?,
                finished_at: row.get("finished_at")?,
            })
        })?;
        rows.collect()
    }

    fn alert_get(&self, name: &str) -> Result<Option<AlertState>, rusqlite::Error> {
        self.connection()
            .query_row(
                "SELECT firing, since, value, notified FROM alert_state WHERE name = ?1",
                [name],
                |row| {
                    Ok(AlertState {
                        firing: row.get("firing")?,
                        since: row.get("since")?,
                        value: row.get("value")?,
                        notified: row.get("notified")?,
                    })
                },
            )
            .optional()
    }

    fn alert_put(&self, name: &str, state: &AlertState) -> Result<(), rusqlite::Error> {
        self.connection().execute(
            "INSERT OR REPLACE INTO alert_state (name, firing, since, value, notified) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, state.firing, state.since, state.value, state.notified],
        )?;
        Ok(())
    }
}
