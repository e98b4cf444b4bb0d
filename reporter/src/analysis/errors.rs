//! Which errors are the same error, where they happen, and which are new.
//!
//! The store keeps one row per distinct (type, raw message, location) per
//! series; raw messages carry ids, so one bug is thousands of rows. Here the
//! rows in scope are grouped by [`super::fingerprint::fingerprint`]
//! (type and the stack trace's in-app frames when it has some, else type,
//! normalised message and file; or the service's own
//! `kuroko.error.fingerprint`, see `docs/fingerprints.md`), and each group says
//! how often it happened, on which servers and in which transactions, who owns
//! it, a few of its raw messages, and how it compares with a baseline window
//! (by default the window of the same length just before: for a daily digest,
//! yesterday against the day before). Groups are sorted for a reader who
//! wants to know what changed: new groups first, then the biggest increase,
//! then the most frequent.
//!
//! A group's first and last seen are over all the history the store keeps
//! (within the scope's filters), not only the window, and it carries its
//! triage (`super::triage`): open, resolved, regressed or ignored, and the
//! team it is assigned to.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::fingerprint::{fingerprint, fingerprint_with_frames, Fingerprint};
use super::stack::in_app_frames;
use super::triage::{settle, GroupTriage, Seen};
use super::{Analysis, AnalysisError, Scope};
use crate::store::triage::TriageStatus;
use crate::store::ErrorSummary;

/// How far past the current minute the history of a group is read: a
/// client's clock a little ahead still counts.
pub(crate) const HISTORY_AHEAD_MINUTES: i64 = 1_440;

/// Raw messages kept per group.
pub(crate) const SAMPLES: usize = 5;

/// A group's occurrences on one server.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServerCount {
    /// The service.
    pub service: String,
    /// `host.name`.
    pub host: String,
    /// Occurrences in the window.
    pub count: u64,
}

/// A group's occurrences in one transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TransactionCount {
    /// The service.
    pub service: String,
    /// The transaction (`(none)` when the error came with none).
    pub transaction: String,
    /// Occurrences in the window.
    pub count: u64,
}

/// One error group over a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ErrorGroup {
    /// The fingerprint, 16 hex digits: stable across runs and builds.
    pub id: String,
    /// Grouped by the service's own fingerprint rather than by the rules.
    pub custom: bool,
    /// The error type of its most frequent member.
    pub error_type: String,
    /// `type: normalised message` of its most frequent member.
    pub title: String,
    /// Its most frequent member's location without line, e.g. `src/db.rs`.
    pub location: String,
    /// Occurrences in the window.
    pub count: u64,
    /// Occurrences in the baseline window.
    pub previous_count: u64,
    /// First seen in the window: never before it in the store's history
    /// (within the scope's filters), so not in the baseline window either.
    pub new: bool,
    /// `count - previous_count` (negative when it decreased).
    pub increase: i64,
    /// `count / previous_count - 1` (1.0 is +100%); `None` when new.
    pub relative_increase: Option<f64>,
    /// First minute it was ever seen, over all the history the store keeps
    /// and within the scope's filters (unix minutes).
    pub first_seen_minute: i64,
    /// Its last occurrence, over the same history (unix nanoseconds): after
    /// the window when it occurred since.
    pub last_seen: u64,
    /// First minute it was seen in the window (unix minutes).
    pub first_in_window_minute: i64,
    /// Per server, most occurrences first.
    pub servers: Vec<ServerCount>,
    /// Per transaction, most occurrences first.
    pub transactions: Vec<TransactionCount>,
    /// Up to [`SAMPLES`] distinct raw messages, most frequent first.
    pub samples: Vec<String>,
    /// The stack trace of its most recent occurrence in the window that
    /// carries one (as sent, cut to the reporter's limit); empty when none
    /// has one.
    pub stacktrace: String,
    /// Teams owning the transactions it happened in, per `owners.toml`.
    pub teams: Vec<String>,
    /// What people decided about it, as it stands now.
    pub triage: GroupTriage,
}

/// A group while its rows are added.
#[derive(Default)]
struct Builder {
    custom: bool,
    count: u64,
    first_seen_minute: Option<i64>,
    last_seen: u64,
    servers: BTreeMap<(String, String), u64>,
    transactions: BTreeMap<(String, String), u64>,
    /// Occurrences per (type, raw message, location): picks the title and samples.
    members: HashMap<(String, String, String), u64>,
    /// The last occurrence per stack trace: picks the one shown.
    stacks: HashMap<Arc<str>, u64>,
    teams: BTreeSet<String>,
}

/// Fingerprints computed once per distinct error, whatever the series, and
/// the in-app frames of each stack trace read once, however many errors
/// carry it.
#[derive(Default)]
struct Fingerprints {
    ids: HashMap<(String, String, String, String, Arc<str>), Fingerprint>,
    frames: HashMap<Arc<str>, Vec<String>>,
}

impl Fingerprints {
    fn of(&mut self, row: &ErrorSummary) -> &Fingerprint {
        let key = (
            row.error_type.clone(),
            row.message.clone(),
            row.location.clone(),
            row.fingerprint.clone(),
            row.stacktrace.clone(),
        );
        let frames = &mut self.frames;
        self.ids.entry(key).or_insert_with(|| {
            let frames = frames
                .entry(row.stacktrace.clone())
                .or_insert_with(|| in_app_frames(&row.stacktrace));
            let custom = Some(row.fingerprint.as_str());
            fingerprint_with_frames(&row.error_type, &row.message, &row.location, frames, custom)
        })
    }
}

impl Analysis<'_> {
    /// The error groups of `scope`, compared with the window of the same
    /// length just before ([`Scope::previous`]).
    pub fn errors(&self, scope: &Scope) -> Result<Vec<ErrorGroup>, AnalysisError> {
        self.errors_against(scope, &scope.previous())
    }

    /// The error groups of `scope`, compared with `baseline` (whose window
    /// and filters are used as given): new groups first, then the biggest
    /// increase, then the most frequent.
    pub(crate) fn errors_against(&self, scope: &Scope, baseline: &Scope) -> Result<Vec<ErrorGroup>, AnalysisError> {
        scope.check_team(self.owners)?;
        baseline.check_team(self.owners)?;
        let mut fingerprints = Fingerprints::default();
        let mut groups: HashMap<u64, Builder> = HashMap::new();
        for row in self.error_rows(scope)? {
            let (id, custom) = {
                let fingerprint = fingerprints.of(&row);
                (fingerprint.id, fingerprint.custom)
            };
            let group = groups.entry(id).or_default();
            group.custom |= custom;
            let key = &row.key;
            let tagged = Some(key.feature.as_str()).filter(|f| !f.is_empty());
            if let Some(team) = self.owners.team_of(&key.service, &key.transaction, tagged) {
                group.teams.insert(team.name.clone());
            }
            group.count += row.count;
            group.first_seen_minute = Some(
                group
                    .first_seen_minute
                    .map_or(row.first_minute, |m| m.min(row.first_minute)),
            );
            group.last_seen = group.last_seen.max(row.last_seen);
            *group
                .servers
                .entry((key.service.clone(), key.host.clone()))
                .or_default() += row.count;
            *group
                .transactions
                .entry((key.service.clone(), key.transaction.clone()))
                .or_default() += row.count;
            if !row.stacktrace.is_empty() {
                let last = group.stacks.entry(row.stacktrace.clone()).or_default();
                *last = (*last).max(row.last_seen);
            }
            *group
                .members
                .entry((row.error_type, row.message, row.location))
                .or_default() += row.count;
        }
        let mut previous: HashMap<u64, u64> = HashMap::new();
        for row in self.error_rows(baseline)? {
            *previous.entry(fingerprints.of(&row).id).or_default() += row.count;
        }
        let mut out: Vec<ErrorGroup> = groups
            .into_iter()
            .map(|(id, group)| finish(id, group, previous.get(&id).copied().unwrap_or(0)))
            .collect();
        self.add_history(scope, &mut fingerprints, &mut out)?;
        for group in &mut out {
            group.new = group.first_seen_minute >= scope.from;
        }
        out.sort_by(|a, b| {
            (b.new, b.increase, b.count)
                .cmp(&(a.new, a.increase, a.count))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Gives `groups` their first and last seen over the store's whole
    /// history within `scope`'s filters, and their triage as it stands now.
    fn add_history(
        &self,
        scope: &Scope,
        fingerprints: &mut Fingerprints,
        groups: &mut [ErrorGroup],
    ) -> Result<(), AnalysisError> {
        if groups.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now().as_second();
        let to = scope.to.max(now.div_euclid(60) + HISTORY_AHEAD_MINUTES);
        let history = Scope {
            from: 0,
            to,
            ..scope.clone()
        };
        let mut seen: HashMap<String, (i64, u64)> = HashMap::new();
        for row in self.error_rows(&history)? {
            let id = format!("{:016x}", fingerprints.of(&row).id);
            let entry = seen.entry(id).or_insert((row.first_minute, row.last_seen));
            entry.0 = entry.0.min(row.first_minute);
            entry.1 = entry.1.max(row.last_seen);
        }
        let decisions = self.decisions()?;
        // An ignore until a count needs the occurrences since it was
        // decided: one read per moment decided (ignores are few).
        let mut counted: HashMap<i64, HashMap<String, u64>> = HashMap::new();
        for group in groups.iter() {
            let Some(d) = decisions.get(&group.id) else { continue };
            if d.status != TriageStatus::Ignored || d.ignore_count.is_none() {
                continue;
            }
            let since = d.at.div_euclid(60);
            if let std::collections::hash_map::Entry::Vacant(slot) = counted.entry(since) {
                let mut counts: HashMap<String, u64> = HashMap::new();
                let after = Scope {
                    from: since,
                    to,
                    ..scope.clone()
                };
                for row in self.error_rows(&after)? {
                    *counts.entry(format!("{:016x}", fingerprints.of(&row).id)).or_default() += row.count;
                }
                slot.insert(counts);
            }
        }
        for group in groups.iter_mut() {
            if let Some(&(first, last)) = seen.get(&group.id) {
                group.first_seen_minute = group.first_seen_minute.min(first);
                group.last_seen = group.last_seen.max(last);
            }
            let decision = decisions.get(&group.id);
            let since_decided = decision
                .and_then(|d| counted.get(&d.at.div_euclid(60)))
                .map(|counts| counts.get(&group.id).copied().unwrap_or(0));
            let seen = Seen {
                last_seen: group.last_seen,
                since_decided,
            };
            group.triage = settle(decision, &seen, now);
        }
        Ok(())
    }

    /// The ids of the groups with errors in `scope`.
    pub(crate) fn group_ids(&self, scope: &Scope) -> Result<HashSet<String>, AnalysisError> {
        let mut fingerprints = Fingerprints::default();
        Ok(self
            .error_rows(scope)?
            .iter()
            .map(|row| format!("{:016x}", fingerprints.of(row).id))
            .collect())
    }

    /// The store's distinct errors over `scope`'s window, those in scope.
    fn error_rows(&self, scope: &Scope) -> Result<Vec<ErrorSummary>, AnalysisError> {
        let mut rows = self
            .store
            .errors(&scope.store_filter(self.owners), scope.from, scope.to)?;
        rows.retain(|row| scope.matches(&row.key, self.owners));
        Ok(rows)
    }
}

/// A finished group: title from its most frequent member, counts sorted.
fn finish(id: u64, group: Builder, previous_count: u64) -> ErrorGroup {
    let mut members: Vec<((String, String, String), u64)> = group.members.into_iter().collect();
    members.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut messages: HashMap<&str, u64> = HashMap::new();
    for ((_, message, _), count) in &members {
        *messages.entry(message.as_str()).or_default() += count;
    }
    let mut samples: Vec<(&str, u64)> = messages.into_iter().collect();
    samples.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let (error_type, message, location) = members.first().map(|m| m.0.clone()).unwrap_or_default();
    let stacktrace = group
        .stacks
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(stack, _)| stack.to_string())
        .unwrap_or_default();
    // Only for the title and location: the id is the group's.
    let shown = fingerprint(&error_type, &message, &location, None);
    let by_count = |a: &u64, b: &u64| b.cmp(a);
    let mut servers: Vec<ServerCount> = group
        .servers
        .into_iter()
        .map(|((service, host), count)| ServerCount { service, host, count })
        .collect();
    servers.sort_by(|a, b| by_count(&a.count, &b.count));
    let mut transactions: Vec<TransactionCount> = group
        .transactions
        .into_iter()
        .map(|((service, transaction), count)| TransactionCount {
            service,
            transaction,
            count,
        })
        .collect();
    transactions.sort_by(|a, b| by_count(&a.count, &b.count));
    let increase = i64::try_from(group.count)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(previous_count).unwrap_or(i64::MAX));
    ErrorGroup {
        id: format!("{id:016x}"),
        custom: group.custom,
        error_type,
        title: shown.title,
        location: shown.location,
        count: group.count,
        previous_count,
        new: previous_count == 0,
        increase,
        relative_increase: (previous_count > 0).then(|| group.count as f64 / previous_count as f64 - 1.0),
        first_seen_minute: group.first_seen_minute.unwrap_or_default(),
        last_seen: group.last_seen,
        first_in_window_minute: group.first_seen_minute.unwrap_or_default(),
        servers,
        transactions,
        samples: samples.into_iter().take(SAMPLES).map(|(m, _)| m.to_owned()).collect(),
        stacktrace,
        teams: group.teams.into_iter().collect(),
        triage: GroupTriage::default(),
    }
}
