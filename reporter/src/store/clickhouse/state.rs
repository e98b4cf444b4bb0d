//! The ClickHouse store's delivery ledger and alert states
//! ([`DeliveryState`]): claims and outcomes are event rows replayed in the
//! server's order, with the embedded store's rules.

use std::time::Duration;

use serde::Deserialize;

use super::{now_nanos, quote, token, ClickHouseStore};
use crate::store::state::{AlertState, DeliveryState, LedgerEntry, LedgerStatus, LEASE_SECONDS};
use crate::store::StoreError;

/// How long [`DeliveryState::ledger_claim`] waits between inserting its claim and
/// reading the delivery's events back, by default: longer than any competing INSERT takes.
pub(crate) const DEFAULT_CLAIM_SETTLE: Duration = Duration::from_secs(2);

/// The shortest settle delay used: claims are stamped with the server's
/// `now()`, in whole seconds, so waiting at least a second guarantees that a
/// claim made after the read-back sorts after the claim being settled.
const MIN_CLAIM_SETTLE: Duration = Duration::from_secs(1);

/// One row of `delivery_ledger`: a claim (`event = 'claim'`: `holder`
/// claimed at `claimed_at`, the caller's `now`) or a recorded outcome
/// (`event = 'record'`: the whole entry).
#[derive(Clone, Debug, Deserialize)]
struct LedgerEvent {
    kind: String,
    target: String,
    period: String,
    event: String,
    holder: String,
    status: String,
    attempts: u32,
    rounds: u32,
    error: String,
    has_error: u8,
    late: u8,
    scheduled_at: i64,
    claimed_at: i64,
    finished_at: i64,
    has_finished: u8,
    token: u64,
}

/// The columns of `delivery_ledger` read back, in replay order.
const LEDGER_COLUMNS: &str = "kind, target, period, event, holder, status, attempts, rounds, error, has_error, late,
     scheduled_at, claimed_at, finished_at, has_finished, token";
const LEDGER_ORDER: &str = "ORDER BY kind, target, period, at, written, token";

#[derive(Deserialize)]
struct AlertOut {
    firing: u8,
    since: i64,
    value: f64,
    has_value: u8,
    notified: u8,
}

impl DeliveryState for ClickHouseStore {
    fn ledger_claim(&self, kind: &str, target: &str, period: &str, holder: &str, now: i64) -> Result<bool, StoreError> {
        let mine = token();
        let key = format!(
            "kind = {} AND target = {} AND period = {}",
            quote(kind),
            quote(target),
            quote(period)
        );
        // Nothing to claim once the delivery is settled: skip the settle delay.
        let events = self.ledger_events(&key)?;
        let (state, _) = replay_ledger(&events, None).map_err(|e| self.error(e.to_string()))?;
        if state.as_ref().is_some_and(|s| s.status.is_final()) {
            return Ok(false);
        }
        self.execute(&format!(
            "INSERT INTO delivery_ledger (kind, target, period, event, holder, status, claimed_at, at, written, token)
             SELECT {}, {}, {}, 'claim', {}, 'claimed', toInt64({now}), now(), {}, {mine}",
            quote(kind),
            quote(target),
            quote(period),
            quote(holder),
            now_nanos()
        ))?;
        std::thread::sleep(self.claim_settle.max(MIN_CLAIM_SETTLE));
        let events = self.ledger_events(&key)?;
        let (_, won) = replay_ledger(&events, Some(mine)).map_err(|e| self.error(e.to_string()))?;
        Ok(won)
    }

    fn ledger_record(&self, e: &LedgerEntry) -> Result<(), StoreError> {
        self.execute(&format!(
            "INSERT INTO delivery_ledger (kind, target, period, event, holder, status, attempts, rounds, error,
                 has_error, late, scheduled_at, claimed_at, finished_at, has_finished, at, written, token)
             SELECT {}, {}, {}, 'record', {}, {}, toUInt32({}), toUInt32({}), {}, {}, {}, toInt64({}), toInt64({}),
                    toInt64({}), {}, now(), {}, {}",
            quote(&e.kind),
            quote(&e.target),
            quote(&e.period),
            quote(&e.holder),
            quote(e.status.as_str()),
            e.attempts,
            e.rounds,
            quote(e.error.as_deref().unwrap_or_default()),
            u8::from(e.error.is_some()),
            u8::from(e.late),
            e.scheduled_at,
            e.claimed_at,
            e.finished_at.unwrap_or(0),
            u8::from(e.finished_at.is_some()),
            now_nanos(),
            token()
        ))
    }

    fn ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        let events: Vec<LedgerEvent> = self.select(&format!(
            "SELECT {LEDGER_COLUMNS} FROM delivery_ledger
             WHERE (kind, target, period) IN (
                 SELECT kind, target, period FROM delivery_ledger
                 WHERE claimed_at >= {since} OR (has_finished = 1 AND finished_at >= {since}))
             {LEDGER_ORDER}"
        ))?;
        let mut entries = Vec::new();
        for delivery in events.chunk_by(|a, b| (&a.kind, &a.target, &a.period) == (&b.kind, &b.target, &b.period)) {
            let (state, _) = replay_ledger(delivery, None).map_err(|e| self.error(e.to_string()))?;
            entries.extend(state.filter(|s| s.claimed_at >= since || s.finished_at.is_some_and(|f| f >= since)));
        }
        entries.sort_by(|a, b| {
            (a.claimed_at, &a.kind, &a.target, &a.period).cmp(&(b.claimed_at, &b.kind, &b.target, &b.period))
        });
        Ok(entries)
    }

    fn alert_state_get(&self, name: &str) -> Result<Option<AlertState>, StoreError> {
        let rows: Vec<AlertOut> = self.select(&format!(
            "SELECT firing, since, value, has_value, notified FROM alert_state WHERE name = {}
             ORDER BY at DESC, written DESC, token DESC LIMIT 1",
            quote(name)
        ))?;
        Ok(rows.into_iter().next().map(|row| AlertState {
            firing: row.firing > 0,
            since: row.since,
            value: (row.has_value > 0).then_some(row.value),
            notified: row.notified > 0,
        }))
    }

    fn alert_state_put(&self, name: &str, state: &AlertState) -> Result<(), StoreError> {
        let value = state.value.filter(|v| v.is_finite());
        self.execute(&format!(
            "INSERT INTO alert_state (name, firing, since, value, has_value, notified, at, written, token)
             SELECT {}, {}, toInt64({}), toFloat64({:?}), {}, {}, now(), {}, {}",
            quote(name),
            u8::from(state.firing),
            state.since,
            value.unwrap_or(0.0),
            u8::from(value.is_some()),
            u8::from(state.notified),
            now_nanos(),
            token()
        ))
    }
}

/// Replays the events of one delivery, in order, with the embedded store's
/// rules: a claim takes a delivery that has no row yet, or one still open
/// (claimed or retrying) whose last claim is a lease old; it keeps the
/// delivery's history (attempts, rounds, error). Any other claim loses. A
/// recorded outcome replaces the row. Returns the delivery's state and
/// whether the claim with token `mine` won.
fn replay_ledger(
    events: &[LedgerEvent],
    mine: Option<u64>,
) -> Result<(Option<LedgerEntry>, bool), crate::store::state::UnknownStatus> {
    let mut state: Option<LedgerEntry> = None;
    let mut won = false;
    for e in events {
        if e.event == "claim" {
            let takes = match &state {
                None => true,
                Some(s) => {
                    matches!(s.status, LedgerStatus::Claimed | LedgerStatus::Retrying)
                        && s.claimed_at <= e.claimed_at - LEASE_SECONDS
                }
            };
            if takes {
                let row = state.get_or_insert_with(|| LedgerEntry {
                    kind: e.kind.clone(),
                    target: e.target.clone(),
                    period: e.period.clone(),
                    holder: String::new(),
                    status: LedgerStatus::Claimed,
                    attempts: 0,
                    rounds: 0,
                    error: None,
                    late: false,
                    scheduled_at: 0,
                    claimed_at: 0,
                    finished_at: None,
                });
                row.holder.clone_from(&e.holder);
                row.status = LedgerStatus::Claimed;
                row.claimed_at = e.claimed_at;
            }
            if Some(e.token) == mine {
                won = takes;
            }
        } else {
            state = Some(LedgerEntry {
                kind: e.kind.clone(),
                target: e.target.clone(),
                period: e.period.clone(),
                holder: e.holder.clone(),
                status: e.status.parse()?,
                attempts: e.attempts,
                rounds: e.rounds,
                error: (e.has_error > 0).then(|| e.error.clone()),
                late: e.late > 0,
                scheduled_at: e.scheduled_at,
                claimed_at: e.claimed_at,
                finished_at: (e.has_finished > 0).then_some(e.finished_at),
            });
        }
    }
    Ok((state, won))
}

impl ClickHouseStore {
    /// The events of one delivery (`key` is its SQL condition), in replay order.
    fn ledger_events(&self, key: &str) -> Result<Vec<LedgerEvent>, StoreError> {
        self.select(&format!(
            "SELECT {LEDGER_COLUMNS} FROM delivery_ledger WHERE {key} {LEDGER_ORDER}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::{LedgerStatus, LEASE_SECONDS};

    fn event(event: &str, holder: &str, token: u64, claimed_at: i64, status: &str) -> LedgerEvent {
        LedgerEvent {
            kind: "weekly".into(),
            target: "payments:email".into(),
            period: "2026-W11".into(),
            event: event.into(),
            holder: holder.into(),
            status: status.into(),
            attempts: if event == "record" { 2 } else { 0 },
            rounds: u32::from(event == "record"),
            error: "connection refused".into(),
            has_error: u8::from(event == "record" && status != "sent"),
            late: 0,
            scheduled_at: 1_000,
            claimed_at,
            finished_at: claimed_at + 5,
            has_finished: u8::from(event == "record"),
            token,
        }
    }

    #[test]
    fn the_ledger_replays_claims_and_outcomes_with_the_embedded_stores_rules() {
        let t = 1_773_000_000;
        let mut events = vec![
            event("claim", "a", 1, t, "claimed"),
            event("claim", "b", 2, t, "claimed"),
        ];
        assert!(
            replay_ledger(&events, Some(1)).unwrap().1,
            "the first claim takes a new delivery"
        );
        assert!(
            !replay_ledger(&events, Some(2)).unwrap().1,
            "a second one within the lease loses"
        );
        events.push(event("claim", "c", 3, t + LEASE_SECONDS, "claimed"));
        assert!(
            replay_ledger(&events, Some(3)).unwrap().1,
            "a claim a lease old is taken over"
        );
        events.push(event("record", "c", 4, t + LEASE_SECONDS, "retrying"));
        events.push(event("claim", "d", 5, t + 2 * LEASE_SECONDS, "claimed"));
        let (state, won) = replay_ledger(&events, Some(5)).unwrap();
        let state = state.unwrap();
        assert!(won, "a retrying delivery is claimed again after the lease");
        assert_eq!(
            (
                state.status,
                state.holder.as_str(),
                state.attempts,
                state.error.as_deref()
            ),
            (LedgerStatus::Claimed, "d", 2, Some("connection refused")),
            "the claim keeps the history"
        );
        events.push(event("record", "d", 6, t + 2 * LEASE_SECONDS, "sent"));
        events.push(event("claim", "e", 7, t + 100 * LEASE_SECONDS, "claimed"));
        let (state, won) = replay_ledger(&events, Some(7)).unwrap();
        assert!(!won, "a sent delivery is never claimed again");
        assert_eq!(state.unwrap().status, LedgerStatus::Sent);
        events.push(event("record", "d", 8, t, "lost"));
        assert!(replay_ledger(&events, None).is_err(), "an unknown status is an error");
    }
}
