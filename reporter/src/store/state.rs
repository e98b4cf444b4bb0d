//! What the reporter keeps about its own deliveries, beside the data: the
//! delivery ledger (what was sent, to whom, for which period, and how it
//! went) and the alert rules' states, behind [`DeliveryState`].
//!
//! The rules of sending belong to the delivery layer (`deliver/`: its `ledger` and
//! `alerts` modules explain them); this module holds only the rows and the
//! atomic operations a store must offer for them, so that the store layer
//! depends on nothing above it.
//!
//! Every [`Store`](super::Store) is a [`DeliveryState`] too (its supertrait),
//! rather than the two being separate handles: the ledger must live where
//! the data lives, since the reporters that share a store (replicas on one
//! ClickHouse) are the ones that must agree on who sends each delivery. A
//! second handle could point elsewhere; the supertrait keeps one store, one
//! ledger, and the scheduler needs only the `Arc<dyn Store>` it reads the
//! data through. Both backends implement it in their `state` module
//! ([`super::sqlite`]'s with one atomic statement, [`super::clickhouse`]'s
//! by replaying events).

use std::fmt;
use std::str::FromStr;

use super::StoreError;

/// How long a claim holds, in seconds, before another sender may take over.
pub const LEASE_SECONDS: i64 = 15 * 60;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedgerStatus {
    /// A sender holds it and is delivering.
    Claimed,
    /// Delivered.
    Sent,
    /// Failed this round; tried again after the lease.
    Retrying,
    /// Given up: refused for good, or failed every round.
    Failed,
    /// Sent, but not answered in time: it may have arrived. Not resent
    /// unless forced.
    Unknown,
    /// Missed while the reporter was down, longer ago than `[delivery]`
    /// catches up: never sent (unless forced).
    Skipped,
}

impl LedgerStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Claimed => "claimed",
            LedgerStatus::Sent => "sent",
            LedgerStatus::Retrying => "retrying",
            LedgerStatus::Failed => "failed",
            LedgerStatus::Unknown => "unknown",
            LedgerStatus::Skipped => "skipped",
        }
    }

    /// Whether the row is settled and never claimed again.
    pub(crate) fn is_final(self) -> bool {
        matches!(
            self,
            LedgerStatus::Sent | LedgerStatus::Failed | LedgerStatus::Unknown | LedgerStatus::Skipped
        )
    }
}

impl fmt::Display for LedgerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one.
#[derive(Debug, thiserror::Error)]
#[error("unknown ledger status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for LedgerStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, UnknownStatus> {
        Ok(match text {
            "claimed" => LedgerStatus::Claimed,
            "sent" => LedgerStatus::Sent,
            "retrying" => LedgerStatus::Retrying,
            "failed" => LedgerStatus::Failed,
            "unknown" => LedgerStatus::Unknown,
            "skipped" => LedgerStatus::Skipped,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// One delivery in the ledger. Times are unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// `weekly`, `digest` or `alert`.
    pub kind: String,
    /// Who and how, e.g. `payments:email`, `company:chat`.
    pub target: String,
    /// What it covers, e.g. `2026-W11`, `2026-03-15`, or an alert's transition.
    pub period: String,
    /// The sender holding or last holding the claim.
    pub holder: String,
    /// Where it stands.
    pub status: LedgerStatus,
    /// Attempts made, over every round.
    pub attempts: u32,
    /// Rounds of attempts (claims) made.
    pub rounds: u32,
    /// The last failure, when there was one.
    pub error: Option<String>,
    /// Sent more than the delivery layer's `LATE_AFTER` after its scheduled
    /// time.
    pub late: bool,
    /// When it was scheduled.
    pub scheduled_at: i64,
    /// When it was last claimed.
    pub claimed_at: i64,
    /// When the last round ended.
    pub finished_at: Option<i64>,
}

/// A rule's state, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertState {
    /// Whether the rule is firing.
    pub firing: bool,
    /// The unix minute of the last transition (or of the first evaluation).
    pub since: i64,
    /// The value measured at the last transition.
    pub value: Option<f64>,
    /// Whether the last transition has been notified.
    pub notified: bool,
}

/// The delivery ledger and alert states a store keeps; see the
/// [module documentation](self).
pub trait DeliveryState: Send + Sync {
    /// Claims the delivery `(kind, target, period)` for `holder` at `now`
    /// (unix seconds), atomically: `true` when this caller may send it;
    /// `false` when it is sent, given up, or claimed by someone whose lease
    /// ([`LEASE_SECONDS`]) has not run out.
    fn ledger_claim(&self, kind: &str, target: &str, period: &str, holder: &str, now: i64) -> Result<bool, StoreError>;

    /// Writes `entry` over the ledger row of its `(kind, target, period)`.
    fn ledger_record(&self, entry: &LedgerEntry) -> Result<(), StoreError>;

    /// Ledger rows claimed or finished at or after `since` (unix seconds).
    fn ledger(&self, since: i64) -> Result<Vec<LedgerEntry>, StoreError>;

    /// The stored state of the alert rule `name`, if any.
    fn alert_state_get(&self, name: &str) -> Result<Option<AlertState>, StoreError>;

    /// Stores the state of the alert rule `name`.
    fn alert_state_put(&self, name: &str, state: &AlertState) -> Result<(), StoreError>;
}
