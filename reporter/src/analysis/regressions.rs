//! What got slower: this period against the one before, per transaction or
//! per feature.
//!
//! Each transaction (service, transaction and environment, merged across the
//! hosts in scope) or feature (every transaction `owners.toml` or the agent's
//! tag puts in it, per environment) gets one histogram per period from the
//! store, and [`stats::judge`](super::stats::judge) compares them under a
//! [`RegressionRule`]: a change is a regression only when a test says it is
//! not noise *and* it is large enough, and a transaction with too few runs in
//! either period is not judged at all but listed as such, so silence is never
//! mistaken for "no change". Regressions are ranked by impact: the extra time
//! the period consumed, so a small slowdown of a hot path outranks a large one
//! of a rare job.
//!
//! Environments are kept apart because a staging load test in one period and
//! not the other would otherwise look like production getting slower; narrow
//! with [`Scope::environment`] to judge one.

use std::collections::BTreeMap;

use super::stats::{judge, Outcome, RegressionRule, Verdict};
use super::{Analysis, AnalysisError, Scope};
use crate::histogram::Histogram;

/// A week, in minutes: the default period.
pub const WEEK_MINUTES: i64 = 7 * 1_440;

/// The default question: the last 7 days (against the 7 before, through
/// [`Scope::previous`]), with `now_minute` in unix minutes.
pub fn last_week(now_minute: i64) -> Scope {
    Scope::window(now_minute - WEEK_MINUTES, now_minute)
}

/// What one row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// One transaction of one service, all hosts in scope.
    Transaction,
    /// One feature: every transaction in it, across services.
    Feature,
}

/// One transaction or feature judged across the two periods.
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionRow {
    /// Whether this is a transaction or a feature.
    pub group: Group,
    /// The service (empty for a feature).
    pub service: String,
    /// The transaction (empty for a feature).
    pub transaction: String,
    /// The feature: the row's own, or the transaction's (tagged or from
    /// `owners.toml`); `None` when the transaction has none.
    pub feature: Option<String>,
    /// `deployment.environment.name`, empty when none.
    pub environment: String,
    /// The owning team per `owners.toml`, when there is one.
    pub team: Option<String>,
    /// The judgement: p50, p95, p99 and mean in both periods, the trigger
    /// (metric, test, p-value), run counts, impact and whether estimated.
    pub verdict: Verdict,
}

impl RegressionRow {
    /// How to name the row: `service transaction` or `feature name`.
    pub fn label(&self) -> String {
        match self.group {
            Group::Transaction => format!("{} {}", self.service, self.transaction),
            Group::Feature => format!("feature {}", self.feature.as_deref().unwrap_or("")),
        }
    }
}

/// Every row of a comparison, sorted by what it concluded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Slower, significantly and by enough: most extra time first.
    pub regressions: Vec<RegressionRow>,
    /// Faster, significantly and by enough: most time saved first.
    pub improvements: Vec<RegressionRow>,
    /// Not judged: a period had fewer runs than the rule's minimum (new or
    /// gone transactions among them); busiest first.
    pub too_little_traffic: Vec<RegressionRow>,
    /// Judged and found unchanged (or changed too little, or only by noise).
    pub unchanged: usize,
}

/// A row's identity while merging: (service, transaction, environment) for a
/// transaction, (feature, "", environment) for a feature.
type Subject = (String, String, String);

/// A subject's merged histogram, with its feature and team.
struct Merged {
    histogram: Histogram,
    feature: Option<String>,
    team: Option<String>,
}

impl Analysis<'_> {
    /// The regressions in `scope` against [`Scope::previous`] under `rule`,
    /// per transaction or per feature, the most extra time first.
    pub fn regressions(
        &self,
        scope: &Scope,
        rule: &RegressionRule,
        group: Group,
    ) -> Result<Vec<RegressionRow>, AnalysisError> {
        Ok(self.compare(scope, rule, group)?.regressions)
    }

    /// Every transaction (or feature) in `scope` judged against
    /// [`Scope::previous`] under `rule`: regressions, improvements, those with
    /// too little traffic to judge, and how many did not change.
    pub fn compare(&self, scope: &Scope, rule: &RegressionRule, group: Group) -> Result<Comparison, AnalysisError> {
        self.compare_against(scope, &scope.previous(), rule, group)
    }

    /// Like [`Analysis::compare`], against the window of `baseline` (its
    /// filters are `scope`'s): e.g. the hour after a deploy against the hour
    /// before it.
    pub(crate) fn compare_against(
        &self,
        scope: &Scope,
        baseline: &Scope,
        rule: &RegressionRule,
        group: Group,
    ) -> Result<Comparison, AnalysisError> {
        scope.check_team(self.owners)?;
        let mut current = self.merged(scope, group)?;
        let before = Scope {
            from: baseline.from,
            to: baseline.to,
            ..scope.clone()
        };
        let mut previous = self.merged(&before, group)?;
        let mut subjects: Vec<Subject> = current.keys().chain(previous.keys()).cloned().collect();
        subjects.sort_unstable();
        subjects.dedup();
        let mut comparison = Comparison::default();
        for subject in subjects {
            let now = current.remove(&subject);
            let before = previous.remove(&subject);
            let empty = Histogram::empty();
            let verdict = judge(
                now.as_ref().map_or(&empty, |m| &m.histogram),
                before.as_ref().map_or(&empty, |m| &m.histogram),
                rule,
            );
            // Names come from the current period, else the previous one.
            let (feature, team) = match now.or(before) {
                Some(m) => (m.feature, m.team),
                None => (None, None),
            };
            let (first, second, environment) = subject;
            let row = match group {
                Group::Transaction => RegressionRow {
                    group,
                    service: first,
                    transaction: second,
                    feature,
                    environment,
                    team,
                    verdict,
                },
                Group::Feature => RegressionRow {
                    group,
                    service: String::new(),
                    transaction: String::new(),
                    feature: Some(first),
                    environment,
                    team,
                    verdict,
                },
            };
            match verdict.outcome {
                Outcome::Regression => comparison.regressions.push(row),
                Outcome::Improvement => comparison.improvements.push(row),
                Outcome::TooLittleTraffic => comparison.too_little_traffic.push(row),
                Outcome::NoChange => comparison.unchanged += 1,
            }
        }
        let impact = |row: &RegressionRow| row.verdict.impact_seconds;
        comparison.regressions.sort_by(|a, b| impact(b).total_cmp(&impact(a)));
        comparison.improvements.sort_by(|a, b| impact(a).total_cmp(&impact(b)));
        let runs = |row: &RegressionRow| row.verdict.current_count.max(row.verdict.previous_count);
        comparison
            .too_little_traffic
            .sort_by_key(|row| std::cmp::Reverse(runs(row)));
        Ok(comparison)
    }

    /// One histogram per subject over `scope`'s window: the store's series
    /// (merged per host already) in scope, merged per transaction or feature.
    fn merged(&self, scope: &Scope, group: Group) -> Result<BTreeMap<Subject, Merged>, AnalysisError> {
        let series = self
            .store
            .histograms(&scope.store_filter(self.owners), scope.from, scope.to)?;
        let mut merged: BTreeMap<Subject, Merged> = BTreeMap::new();
        for (key, histogram) in series {
            if !scope.matches(&key, self.owners) {
                continue;
            }
            let tagged = Some(key.feature.as_str()).filter(|f| !f.is_empty());
            let feature = self.owners.feature_of(&key.service, &key.transaction, tagged);
            let (subject, team) = match (group, feature) {
                (Group::Transaction, _) => (
                    (key.service.clone(), key.transaction.clone(), key.environment.clone()),
                    self.owners.team_of(&key.service, &key.transaction, tagged),
                ),
                (Group::Feature, Some(feature)) => (
                    (feature.to_owned(), String::new(), key.environment.clone()),
                    self.owners.team_of_feature(feature),
                ),
                (Group::Feature, None) => continue,
            };
            let feature = feature.map(str::to_owned);
            let team = team.map(|t| t.name.clone());
            match merged.get_mut(&subject) {
                Some(total) => {
                    total.histogram.merge(&histogram);
                    // Hosts may disagree on a transaction's tag: keep one that names something.
                    if total.feature.is_none() {
                        total.feature = feature;
                    }
                    if total.team.is_none() {
                        total.team = team;
                    }
                }
                None => {
                    merged.insert(
                        subject,
                        Merged {
                            histogram,
                            feature,
                            team,
                        },
                    );
                }
            }
        }
        Ok(merged)
    }
}
