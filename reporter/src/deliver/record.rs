//! Recording: each delivery's outcome written to the ledger, with what a
//! failure leaves to do (retry next round, give up, or leave it to a person),
//! and periods missed past the catch-up recorded skipped.

use jiff::Timestamp;
use std::time::Instant;

use super::ledger::{self, LedgerEntry, LedgerStatus};
use super::schedule::{Due, Report};
use super::send::{Round, Settle};
use super::{target_key, Channel, Runner, Target};

/// What is being sent, for the ledger.
pub(super) struct Sending<'a> {
    pub(super) kind: &'a str,
    pub(super) period: &'a str,
    pub(super) scheduled_at: Timestamp,
    pub(super) late: bool,
    pub(super) now: Timestamp,
    pub(super) started: Instant,
    pub(super) previous: &'a [LedgerEntry],
}

impl Runner {
    /// Records each channel's round of `sending` to `target` in the ledger:
    /// sent, or what a failure leaves to do; returns the rows written.
    pub(super) fn record(
        &self,
        target: &Target,
        rounds: Vec<(Channel, Round)>,
        sending: &Sending<'_>,
    ) -> Vec<LedgerEntry> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let elapsed = i64::try_from(sending.started.elapsed().as_secs()).unwrap_or(0);
        let mut written = Vec::new();
        for (channel, round) in rounds {
            let key = target_key(&target.name, channel);
            let before = ledger::find(sending.previous, sending.kind, &key, sending.period);
            let rounds = before.map_or(0, |b| b.rounds) + 1;
            let (status, error) = match round.result {
                Ok(()) => (LedgerStatus::Sent, None),
                Err((error, Settle::Unknown)) => (LedgerStatus::Unknown, Some(error)),
                Err((error, settle)) if settle == Settle::Permanent || rounds >= settings.max_rounds => {
                    (LedgerStatus::Failed, Some(error))
                }
                Err((error, _)) => (LedgerStatus::Retrying, Some(error)),
            };
            let entry = LedgerEntry {
                kind: sending.kind.to_owned(),
                target: key,
                period: sending.period.to_owned(),
                holder: inner.holder.clone(),
                status,
                attempts: before.map_or(0, |b| b.attempts) + round.attempts,
                rounds,
                error,
                late: sending.late,
                scheduled_at: sending.scheduled_at.as_second(),
                claimed_at: sending.now.as_second(),
                finished_at: Some(sending.now.as_second() + elapsed),
            };
            match &entry.error {
                None => tracing::info!(kind = %entry.kind, target = %entry.target, period = %entry.period,
                    late = entry.late, "delivered"),
                Some(error) => tracing::error!(kind = %entry.kind, target = %entry.target, period = %entry.period,
                    status = %entry.status, %error, "delivery failed"),
            }
            if let Err(error) = inner.store.ledger_record(&entry) {
                tracing::error!(%error, target = %entry.target, "recording a delivery in the ledger failed");
            }
            written.push(entry);
        }
        written
    }

    /// Records `due` to `target` over `channel` as skipped: missed while the
    /// reporter was down, longer ago than `[delivery]` catches up. Claimed
    /// first, so that of two replicas one records it; `None` when the other
    /// did (or the store failed, logged).
    pub(super) fn skip(
        &self,
        report: Report,
        target: &Target,
        channel: Channel,
        due: &Due,
        now: Timestamp,
    ) -> Option<LedgerEntry> {
        let inner = &self.inner;
        let key = target_key(&target.name, channel);
        let period = due.period.to_string();
        if !self.claim(report.as_str(), &key, &period, now) {
            return None;
        }
        let (catch_up, setting) = inner.settings.delivery.catch_up(report);
        let entry = LedgerEntry {
            kind: report.as_str().to_owned(),
            target: key,
            period,
            holder: inner.holder.clone(),
            status: LedgerStatus::Skipped,
            attempts: 0,
            rounds: 0,
            error: Some(format!(
                "missed while the reporter was not running; only the {catch_up} most recent are sent late \
                 ([delivery] {setting} = {catch_up})"
            )),
            late: true,
            scheduled_at: due.scheduled_at.as_second(),
            claimed_at: now.as_second(),
            finished_at: Some(now.as_second()),
        };
        tracing::warn!(kind = %entry.kind, target = %entry.target, period = %entry.period, "missed, not sent late: skipped");
        if let Err(error) = inner.store.ledger_record(&entry) {
            tracing::error!(%error, target = %entry.target, "recording a skipped delivery in the ledger failed");
        }
        Some(entry)
    }
}
