//! The ledger: what was sent, to whom, for which period, and how it went.
//!
//! Every delivery — one report (or alert notification) to one target over
//! one channel — is a row keyed by `(kind, target, period)`, e.g.
//! `("weekly", "payments:email", "2026-W11")`. Before sending, a sender
//! *claims* the row ([`DeliveryState::ledger_claim`](crate::store::state::DeliveryState::ledger_claim)); the claim is
//! atomic in the store, so of two replicas, or of `kuroko serve` and a
//! `kuroko report weekly --send` run at the same time, exactly one wins and
//! the other sends nothing. After sending it *records* the outcome
//! ([`DeliveryState::ledger_record`](crate::store::state::DeliveryState::ledger_record)).
//!
//! A claim is a lease of [`LEASE_SECONDS`]: a sender that dies mid-delivery
//! leaves a claim that becomes claimable again once the lease runs out, and
//! a delivery recorded as [`LedgerStatus::Retrying`] is tried again once the
//! lease since its last claim has passed (the lease doubles as the pause
//! between rounds of retries). [`LedgerStatus::Sent`],
//! [`LedgerStatus::Failed`], [`LedgerStatus::Unknown`] and
//! [`LedgerStatus::Skipped`] (a period missed while the reporter was down,
//! past what `[delivery]` catches up) are final: such a
//! row is never claimed again, so a restart never sends twice (only
//! `--force` resends, bypassing the claim). `unknown` is a chat message
//! sent but not answered in time: it may have arrived, and resending it
//! blindly could post it twice, so a person decides (`--force` resends it
//! with the same `Idempotency-Key`).

use std::str::FromStr;

pub use crate::store::state::{LedgerEntry, LedgerStatus, UnknownStatus, LEASE_SECONDS};

/// The latest period among `entries` sent for `(kind, target)`; periods
/// that do not parse are skipped.
pub(crate) fn last_sent<P: FromStr + Ord>(entries: &[LedgerEntry], kind: &str, target: &str) -> Option<P> {
    entries
        .iter()
        .filter(|e| e.kind == kind && e.target == target && e.status == LedgerStatus::Sent)
        .filter_map(|e| e.period.parse::<P>().ok())
        .max()
}

/// The entry for `(kind, target, period)` among `entries`.
pub fn find<'a>(entries: &'a [LedgerEntry], kind: &str, target: &str, period: &str) -> Option<&'a LedgerEntry> {
    entries
        .iter()
        .find(|e| e.kind == kind && e.target == target && e.period == period)
}

/// The ledger as a table for `kuroko report status`, newest first.
pub fn render_status(entries: &[LedgerEntry], time_zone: &jiff::tz::TimeZone) -> String {
    if entries.is_empty() {
        return "nothing sent yet in this window\n".to_owned();
    }
    let when = |seconds: i64| {
        jiff::Timestamp::from_second(seconds)
            .map(|t| t.to_zoned(time_zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|_| seconds.to_string())
    };
    let mut rows: Vec<&LedgerEntry> = entries.iter().collect();
    rows.sort_by_key(|e| std::cmp::Reverse((e.finished_at.unwrap_or(e.claimed_at), e.claimed_at)));
    let mut out = String::new();
    for e in rows {
        let at = e.finished_at.unwrap_or(e.claimed_at);
        out.push_str(&format!(
            "{:<22} {:<8} {:<10} {:<28} {:<9}{} attempts {}, scheduled {}",
            when(at),
            e.kind,
            e.period,
            e.target,
            e.status,
            if e.late { " LATE" } else { "" },
            e.attempts,
            when(e.scheduled_at),
        ));
        out.push('\n');
        if let Some(error) = &e.error {
            out.push_str(&format!("    error: {error}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::state::DeliveryState;

    fn temp_store(name: &str) -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("kuroko-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.db");
        (SqliteStore::open(&path).unwrap(), dir)
    }

    fn entry(status: LedgerStatus, holder: &str, claimed_at: i64) -> LedgerEntry {
        LedgerEntry {
            kind: "weekly".into(),
            target: "payments:email".into(),
            period: "2026-W11".into(),
            holder: holder.into(),
            status,
            attempts: 2,
            rounds: 1,
            error: (status != LedgerStatus::Sent).then(|| "connection refused".into()),
            late: true,
            scheduled_at: 1_000,
            claimed_at,
            finished_at: Some(claimed_at + 5),
        }
    }

    #[test]
    fn of_two_claimers_one_wins_and_a_sent_delivery_is_never_claimed_again() {
        let (store, dir) = temp_store("claim");
        let t = 1_773_000_000;
        assert!(store
            .ledger_claim("weekly", "payments:email", "2026-W11", "a", t)
            .unwrap());
        assert!(!store
            .ledger_claim("weekly", "payments:email", "2026-W11", "b", t)
            .unwrap());
        // Other targets and periods are independent.
        assert!(store
            .ledger_claim("weekly", "search:email", "2026-W11", "b", t)
            .unwrap());
        assert!(store
            .ledger_claim("weekly", "payments:email", "2026-W12", "b", t)
            .unwrap());

        store.ledger_record(&entry(LedgerStatus::Sent, "a", t)).unwrap();
        let much_later = t + 100 * LEASE_SECONDS;
        assert!(!store
            .ledger_claim("weekly", "payments:email", "2026-W11", "b", much_later)
            .unwrap());

        let all = store.ledger(0).unwrap();
        let sent = find(&all, "weekly", "payments:email", "2026-W11").unwrap();
        assert_eq!(sent, &entry(LedgerStatus::Sent, "a", t));
        assert_eq!(
            last_sent::<crate::deliver::schedule::Period>(&all, "weekly", "payments:email").map(|p| p.to_string()),
            Some("2026-W11".into())
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn racing_claimers_on_two_connections_win_each_delivery_exactly_once() {
        let (first, dir) = temp_store("race");
        let second = SqliteStore::open(&dir.join("k.db")).unwrap();
        let t = 1_773_000_000;
        let periods: Vec<String> = (0..40).map(|d| format!("period-{d}")).collect();
        let won = |store: &SqliteStore, holder: &str| -> Vec<bool> {
            periods
                .iter()
                .map(|p| store.ledger_claim("digest", "company:chat", p, holder, t).unwrap())
                .collect()
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| won(&first, "a"));
            let b = s.spawn(|| won(&second, "b"));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(
            a.iter().zip(&b).all(|(a, b)| a != b),
            "each delivery has exactly one winner"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_dead_holders_claim_and_a_retrying_delivery_expire_after_the_lease() {
        let (store, dir) = temp_store("lease");
        let t = 1_773_000_000;
        assert!(store
            .ledger_claim("digest", "company:chat", "2026-03-15", "dead", t)
            .unwrap());
        assert!(!store
            .ledger_claim("digest", "company:chat", "2026-03-15", "b", t + LEASE_SECONDS - 1)
            .unwrap());
        assert!(store
            .ledger_claim("digest", "company:chat", "2026-03-15", "b", t + LEASE_SECONDS)
            .unwrap());
        let mut retrying = entry(LedgerStatus::Retrying, "b", t + LEASE_SECONDS);
        retrying.kind = "digest".into();
        retrying.target = "company:chat".into();
        retrying.period = "2026-03-15".into();
        store.ledger_record(&retrying).unwrap();
        let again = t + 2 * LEASE_SECONDS;
        assert!(store
            .ledger_claim("digest", "company:chat", "2026-03-15", "c", again)
            .unwrap());
        let row = store.ledger(0).unwrap().pop().unwrap();
        assert_eq!(
            (row.status, row.holder.as_str(), row.claimed_at),
            (LedgerStatus::Claimed, "c", again)
        );
        assert_eq!(
            (row.attempts, row.error.as_deref()),
            (2, Some("connection refused")),
            "history kept"
        );
        // A final failure is not retried.
        store
            .ledger_record(&LedgerEntry {
                status: LedgerStatus::Failed,
                ..row
            })
            .unwrap();
        assert!(!store
            .ledger_claim("digest", "company:chat", "2026-03-15", "d", again + 10 * LEASE_SECONDS)
            .unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
