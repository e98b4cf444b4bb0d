//! What people decided about an error group, and what it means now: a
//! group's status as the list, its page, the digest and the weekly email
//! show it ([`GroupTriage`]), and the decisions the web UI, the API and
//! `kuroko errors` record ([`Action`], [`Analysis::decide`]).
//!
//! The store keeps only decisions ([`crate::store::triage`]); what they
//! mean is settled here, when read, against the group's occurrences:
//!
//! - *resolved*, and it occurred again after it was resolved: **regressed**
//!   (it stays so until someone resolves it again, or reopens it);
//! - *ignored* until a date: open again once that date has passed;
//! - *ignored* until a count: open again once it has occurred that many
//!   times since it was ignored;
//! - the team a group is assigned to is kept whatever the status.
//!
//! Nothing is written when a group regresses or an ignore runs out, so no
//! reporter has to watch for it and replicas cannot disagree.

use std::collections::HashMap;

use serde::Serialize;

use super::scope::{parse_time, ScopeError};
use super::{Analysis, AnalysisError, Scope};
use crate::owners::Owners;
use crate::store::triage::{Triage, TriageStatus};
use crate::store::StoreError;

/// A group's status as shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Needs someone: nobody decided, it was reopened, or its ignore ran out.
    #[default]
    Open,
    /// Resolved, and not seen since.
    Resolved,
    /// Resolved, then seen again.
    Regressed,
    /// Ignored, and its ignore has not run out.
    Ignored,
}

impl Status {
    /// The name shown and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Regressed => "regressed",
            Status::Ignored => "ignored",
        }
    }
}

/// A group's triage as shown: its status now, and the decision behind it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupTriage {
    /// Where it stands now.
    pub status: Status,
    /// The team it is assigned to (a team of `owners.toml`), if any.
    pub assigned_team: Option<String>,
    /// When the decision in force was made (unix seconds); none when
    /// nobody decided anything.
    pub decided_at: Option<i64>,
    /// Who made it (`ui`, `api`, `cli`).
    pub decided_by: String,
    /// Ignored: until this instant (unix seconds), when set.
    pub ignore_until: Option<i64>,
    /// Ignored: until it occurs this many times after `decided_at`, when set.
    pub ignore_count: Option<u64>,
    /// Ignored until a count: occurrences since it was ignored.
    pub since_decided: Option<u64>,
}

/// What a group's occurrences say about its decision.
pub(crate) struct Seen {
    /// Its last occurrence, unix nanoseconds (0: none).
    pub(crate) last_seen: u64,
    /// Occurrences since the decision (counted only for an ignore until a count).
    pub(crate) since_decided: Option<u64>,
}

/// `decision` as it stands at `now` (unix seconds), given what was seen.
pub(crate) fn settle(decision: Option<&Triage>, seen: &Seen, now: i64) -> GroupTriage {
    let Some(d) = decision else {
        return GroupTriage::default();
    };
    let seen_after = i64::try_from(seen.last_seen / 1_000_000_000).unwrap_or(i64::MAX) > d.at;
    let status = match d.status {
        TriageStatus::Open => Status::Open,
        TriageStatus::Resolved if seen_after => Status::Regressed,
        TriageStatus::Resolved => Status::Resolved,
        TriageStatus::Ignored => {
            let date_passed = d.ignore_until.is_some_and(|until| now >= until);
            let count_reached = d
                .ignore_count
                .is_some_and(|count| seen.since_decided.unwrap_or(0) >= count);
            if date_passed || count_reached {
                Status::Open
            } else {
                Status::Ignored
            }
        }
    };
    GroupTriage {
        status,
        assigned_team: d.team.clone(),
        decided_at: Some(d.at),
        decided_by: d.by.clone(),
        ignore_until: d.ignore_until,
        ignore_count: d.ignore_count,
        since_decided: seen.since_decided.filter(|_| d.ignore_count.is_some()),
    }
}

/// A decision someone asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Mark it fixed: its next occurrence makes it regressed.
    Resolve,
    /// Open again (after resolving or ignoring).
    Reopen,
    /// Leave it out of reports, for good or until a date (unix seconds) or a count.
    Ignore {
        /// Until this instant, unix seconds.
        until: Option<i64>,
        /// Until this many more occurrences.
        count: Option<u64>,
    },
    /// Assign it to a team of `owners.toml`, or to nobody.
    Assign {
        /// The team; `None` unassigns.
        team: Option<String>,
    },
}

/// The names of [`Action`]s, as URLs and the command line write them.
pub const ACTIONS: [&str; 4] = ["resolve", "reopen", "ignore", "assign"];

/// A decision that could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// Not a group id.
    #[error("{0:?} is not an error group: a group is named by 16 hex digits, as `kuroko query errors` (its id column) and the web UI's /errors/<id> show it")]
    BadGroup(String),
    /// No such group in the store's history.
    #[error("no error group or performance problem {0} in the store's history")]
    UnknownGroup(String),
    /// An action or one of its parameters is wrong.
    #[error("{0}")]
    BadAction(String),
    /// Reading or writing the store failed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
}

impl From<StoreError> for TriageError {
    fn from(error: StoreError) -> Self {
        TriageError::Analysis(error.into())
    }
}

impl TriageError {
    /// Whether the caller can fix it (400) rather than the store failing (500).
    pub fn is_caller_mistake(&self) -> bool {
        !matches!(self, TriageError::Analysis(AnalysisError::Store(_)))
    }
}

impl Action {
    /// The action `name` with its parameters from `field` (`until`: a date,
    /// an RFC 3339 instant or a duration from `now` such as `7d`; `count`;
    /// `team`, empty to unassign), `now` in unix seconds; `owners` must
    /// know the team.
    pub fn parse(
        name: &str,
        field: impl Fn(&str) -> Option<String>,
        owners: &Owners,
        now: i64,
    ) -> Result<Action, TriageError> {
        let bad = |text: String| Err(TriageError::BadAction(text));
        let field = |key: &str| field(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        match name {
            "resolve" => Ok(Action::Resolve),
            "reopen" => Ok(Action::Reopen),
            "ignore" => {
                let until = field("until").map(|text| ignore_until(&text, now)).transpose()?;
                let count = match field("count") {
                    None => None,
                    Some(text) => match text.parse::<u64>() {
                        Ok(count) if count > 0 => Some(count),
                        _ => return bad(format!("count={text} is not a whole number above 0")),
                    },
                };
                Ok(Action::Ignore { until, count })
            }
            "assign" => {
                let team = field("team");
                if let Some(team) = &team {
                    if owners.team(team).is_none() {
                        let teams: Vec<&str> = owners.teams().map(|t| t.name.as_str()).collect();
                        return bad(if teams.is_empty() {
                            format!(
                                "no team {team:?}: owners.toml names no teams (give the reporter its `owners` file)"
                            )
                        } else {
                            format!("no team {team:?} in owners.toml: teams are {}", teams.join(", "))
                        });
                    }
                }
                Ok(Action::Assign { team })
            }
            other => bad(format!("no action {other:?}: one of {}", ACTIONS.join(", "))),
        }
    }

    /// The decision that follows `current` (the group's latest, if any).
    fn apply(self, group: &str, current: Option<Triage>, by: &str, now: i64) -> Triage {
        let current = current.unwrap_or_else(|| Triage {
            group: group.to_owned(),
            ..Triage::default()
        });
        let team = current.team.clone();
        let fresh = |status| Triage {
            group: group.to_owned(),
            status,
            at: now,
            ignore_until: None,
            ignore_count: None,
            team: team.clone(),
            by: by.to_owned(),
        };
        match self {
            Action::Resolve => fresh(TriageStatus::Resolved),
            Action::Reopen => fresh(TriageStatus::Open),
            Action::Ignore { until, count } => Triage {
                ignore_until: until,
                ignore_count: count,
                ..fresh(TriageStatus::Ignored)
            },
            // Assigning keeps the status and when it was decided (a resolved
            // group stays resolved since then); only the team and who changes.
            Action::Assign { team } => Triage {
                team,
                by: by.to_owned(),
                ..current
            },
        }
    }
}

/// `until` of an ignore: a date, an instant, or a duration ahead of `now`.
fn ignore_until(text: &str, now: i64) -> Result<i64, TriageError> {
    let now_minute = now.div_euclid(60);
    let bad = |e: ScopeError| TriageError::BadAction(format!("until: {e}"));
    let minute = parse_time(text, now_minute).map_err(bad)?;
    let is_duration = text.chars().last().is_some_and(|c| c.is_ascii_alphabetic()) && !text.contains('-');
    let minute = if is_duration {
        now_minute + (now_minute - minute)
    } else {
        minute
    };
    if minute <= now_minute {
        return Err(TriageError::BadAction(format!(
            "until={text} is not in the future: give a later date or a duration such as 7d"
        )));
    }
    Ok(minute * 60)
}

/// `group` as a group id: 16 lowercase hex digits.
pub(crate) fn group_id(group: &str) -> Result<String, TriageError> {
    let id = group.trim().to_ascii_lowercase();
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(TriageError::BadGroup(group.to_owned()))
    }
}

impl Analysis<'_> {
    /// The decisions in force, per group id.
    pub(crate) fn decisions(&self) -> Result<HashMap<String, Triage>, AnalysisError> {
        Ok(self.store.triage()?.into_iter().map(|t| (t.group.clone(), t)).collect())
    }

    /// Records `action` on `group` (an id of a group in the store's history)
    /// by `by` at `now` (unix seconds), and returns the decision written.
    pub fn decide(&self, group: &str, action: Action, by: &str, now: i64) -> Result<Triage, TriageError> {
        let id = group_id(group)?;
        let history = Scope::window(0, now.div_euclid(60) + super::errors::HISTORY_AHEAD_MINUTES);
        if !self.group_ids(&history)?.contains(&id) && !self.problem_ids(now)?.contains(&id) {
            return Err(TriageError::UnknownGroup(id));
        }
        let current = self.decisions()?.remove(&id);
        let decision = action.apply(&id, current, by, now);
        self.store.triage_put(&decision)?;
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(status: TriageStatus) -> Triage {
        Triage {
            group: "00000000000000aa".into(),
            status,
            at: 1_000,
            by: "cli".into(),
            ..Triage::default()
        }
    }

    fn seen(last_second: u64, since: Option<u64>) -> Seen {
        Seen {
            last_seen: last_second * 1_000_000_000,
            since_decided: since,
        }
    }

    #[test]
    fn a_resolved_group_seen_again_has_regressed_and_an_ignore_runs_out() {
        let resolved = decision(TriageStatus::Resolved);
        assert_eq!(
            settle(Some(&resolved), &seen(1_000, None), 2_000).status,
            Status::Resolved
        );
        assert_eq!(
            settle(Some(&resolved), &seen(1_001, None), 2_000).status,
            Status::Regressed
        );
        assert_eq!(settle(None, &seen(1_001, None), 2_000).status, Status::Open);
        let ignored = Triage {
            ignore_until: Some(1_500),
            ..decision(TriageStatus::Ignored)
        };
        assert_eq!(
            settle(Some(&ignored), &seen(1_400, None), 1_499).status,
            Status::Ignored
        );
        assert_eq!(settle(Some(&ignored), &seen(1_400, None), 1_500).status, Status::Open);
        let counted = Triage {
            ignore_count: Some(10),
            team: Some("pay".into()),
            ..decision(TriageStatus::Ignored)
        };
        let shown = settle(Some(&counted), &seen(5_000, Some(9)), 9_000);
        assert_eq!(
            (shown.status, shown.assigned_team.as_deref()),
            (Status::Ignored, Some("pay"))
        );
        assert_eq!(
            settle(Some(&counted), &seen(5_000, Some(10)), 9_000).status,
            Status::Open
        );
    }

    #[test]
    fn assigning_keeps_the_status_and_resolving_keeps_the_team() {
        let assigned = Action::Assign {
            team: Some("pay".into()),
        }
        .apply("00000000000000aa", Some(decision(TriageStatus::Resolved)), "ui", 5_000);
        assert_eq!(
            (
                assigned.status,
                assigned.at,
                assigned.team.as_deref(),
                assigned.by.as_str()
            ),
            (TriageStatus::Resolved, 1_000, Some("pay"), "ui")
        );
        let reopened = Action::Reopen.apply("00000000000000aa", Some(assigned), "cli", 6_000);
        assert_eq!(
            (reopened.status, reopened.at, reopened.team.as_deref()),
            (TriageStatus::Open, 6_000, Some("pay"))
        );
    }

    #[test]
    fn actions_are_read_with_their_parameters_and_mistakes_named() {
        let owners = Owners::parse("[teams.pay]\n", "owners.toml").unwrap();
        let now = 1_765_000_000; // 2025-12-06T05:46:40Z
        let fields = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(
            Action::parse("ignore", fields(&[("until", "7d"), ("count", "100")]), &owners, now).unwrap(),
            Action::Ignore {
                until: Some((now / 60 + 7 * 1_440) * 60),
                count: Some(100)
            }
        );
        assert_eq!(
            Action::parse("ignore", fields(&[("until", "2026-01-01")]), &owners, now).unwrap(),
            Action::Ignore {
                until: Some(1_767_225_600),
                count: None
            }
        );
        assert!(Action::parse("ignore", fields(&[("until", "2020-01-01")]), &owners, now).is_err());
        assert!(Action::parse("ignore", fields(&[("count", "0")]), &owners, now).is_err());
        assert_eq!(
            Action::parse("assign", fields(&[("team", "")]), &owners, now).unwrap(),
            Action::Assign { team: None }
        );
        let unknown = Action::parse("assign", fields(&[("team", "search")]), &owners, now).unwrap_err();
        assert!(unknown.to_string().contains("teams are pay"), "{unknown}");
        assert!(Action::parse("delete", fields(&[]), &owners, now).is_err());
        assert_eq!(group_id(" 00000000000000AA ").unwrap(), "00000000000000aa");
        assert!(group_id("12345").is_err());
    }
}
