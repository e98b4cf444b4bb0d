//! What people decided about error groups, beside the data: each group's
//! triage (open, resolved, ignored, and the team it is assigned to), behind
//! [`ErrorTriage`].
//!
//! The rules that read it belong to the analysis layer (`analysis/triage.rs`
//! says when a resolved group has *regressed* and when an ignore has run
//! out); this module holds only the rows and the two operations a store
//! offers for them, so that the store layer depends on nothing above it.
//! Like the delivery ledger ([`super::state`]), triage lives where the data
//! lives, so that the replicas sharing a ClickHouse store, the web UI and
//! `kuroko errors` all see one decision: every [`Store`](super::Store) is an
//! [`ErrorTriage`] (a supertrait). Both backends keep every decision as a
//! row of its own and read the latest per group ([`super::sqlite`]'s and
//! [`super::clickhouse`]'s `triage` modules), so that a group's history
//! (who resolved it when) is kept.

use std::fmt;
use std::str::FromStr;

use super::StoreError;

/// The state a person set on a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriageStatus {
    /// Nobody has decided anything, or it was reopened.
    #[default]
    Open,
    /// Fixed: its next occurrence makes it *regressed*.
    Resolved,
    /// Left out of the digest and the weekly email, until a date or a count
    /// if one is set.
    Ignored,
}

impl TriageStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TriageStatus::Open => "open",
            TriageStatus::Resolved => "resolved",
            TriageStatus::Ignored => "ignored",
        }
    }
}

impl fmt::Display for TriageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A triage status name that is not one.
#[derive(Debug, thiserror::Error)]
#[error("unknown triage status {0:?}: one of open, resolved, ignored")]
pub struct UnknownTriageStatus(pub String);

impl FromStr for TriageStatus {
    type Err = UnknownTriageStatus;

    fn from_str(text: &str) -> Result<Self, UnknownTriageStatus> {
        Ok(match text {
            "open" => TriageStatus::Open,
            "resolved" => TriageStatus::Resolved,
            "ignored" => TriageStatus::Ignored,
            other => return Err(UnknownTriageStatus(other.to_owned())),
        })
    }
}

/// One decision about an error group: the whole triage from then on.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Triage {
    /// The group's fingerprint id, 16 hex digits (as `kuroko query errors`
    /// and the web UI name it).
    pub group: String,
    /// Where it stands.
    pub status: TriageStatus,
    /// When this decision was made, unix seconds: a resolved group that
    /// occurs after it has regressed; an ignore's count starts here.
    pub at: i64,
    /// Ignored: until this instant (unix seconds), when set.
    pub ignore_until: Option<i64>,
    /// Ignored: until it occurs this many more times, when set.
    pub ignore_count: Option<u64>,
    /// The team it is assigned to (a team of `owners.toml`), when any.
    pub team: Option<String>,
    /// Who decided: `ui`, `api`, `cli`, with a name when one was given.
    pub by: String,
}

/// The triage decisions a store keeps; see the [module documentation](self).
pub trait ErrorTriage: Send + Sync {
    /// The latest decision of every group that has one.
    fn triage(&self) -> Result<Vec<Triage>, StoreError>;

    /// Records `decision` as its group's latest.
    fn triage_put(&self, decision: &Triage) -> Result<(), StoreError>;
}
