//! What got slower: this period against the one before, per transaction or
//! per feature.
//!
//! Each transaction (service, transaction and environment, merged across the
//! hosts in scope) or feature (every transaction `owners.toml` or the agent's
//! tag puts in it, per environment) gets one histogram per block of each
//! period from the store (an hour each, [`super::blocks`]), and
//! [`stats::judge_all`](super::stats::judge_all) judges them all as one
//! answer under a [`RegressionRule`]: a change is a regression only when its
//! test says it is not noise once every comparison is accounted for, its
//! interval excludes small changes *and* it is large enough; a transaction with too few
//! runs in either period is not judged at all but listed as such, so silence
//! is never mistaken for "no change". When one window holds data in far
//! fewer of its blocks than the other (a store younger than the two windows),
//! nothing is judged and the answer says so ([`Coverage`]). Regressions are
//! ranked by impact: the extra time
//! the period consumed, so a small slowdown of a hot path outranks a large one
//! of a rare job.
//!
//! Environments are kept apart because a staging load test in one period and
//! not the other would otherwise look like production getting slower; narrow
//! with [`Scope::environment`] to judge one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::attribution::Attribution;
use super::blocks::{block_minutes, Block};
use super::stats::{explain, judge_all_with_history, Explanation, History, Outcome, RegressionRule, Verdict, MIN_DAYS};
use super::{Analysis, AnalysisError, Scope};
use crate::histogram::Histogram;
use crate::store::SeriesKey;

/// Days before a short baseline read for its [`History`].
const HISTORY_DAYS: i64 = 7;

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
    /// Why it changed, once asked ([`Analysis::attribute_rows`]); `None`
    /// until then, and for rows not shown.
    pub attribution: Option<Box<Attribution>>,
    /// What the verdict rests on (distributions, blocks, intervals), for the
    /// rows explained ([`Analysis::compare_explained`]); `None` for the others.
    pub explanation: Option<Box<Explanation>>,
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
    /// gone transactions among them), or the periods share too few times of
    /// day with runs; busiest first.
    pub too_little_traffic: Vec<RegressionRow>,
    /// Judged and found unchanged (or changed too little, or only by
    /// noise): busiest first.
    pub unchanged: Vec<RegressionRow>,
    /// How much of each window holds data, and whether that is enough to
    /// compare them at all.
    pub coverage: Coverage,
    /// Transactions (or features) not judged because the coverage is not
    /// enough (none otherwise).
    pub not_judged: usize,
    /// Tests whose p-values were adjusted together (Benjamini–Hochberg):
    /// every metric tested of every subject judged.
    pub tests: usize,
}

/// How much of each window holds data: blocks (of [`Coverage::block_minutes`])
/// in which anything in scope ran. A window that holds data in under half as
/// many of its blocks as the other (a store that began 30 minutes before
/// this week) cannot serve as its baseline: regressions are not called.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Coverage {
    /// Length of a block, minutes.
    pub block_minutes: i64,
    /// Blocks of the current window with data.
    pub current_blocks: usize,
    /// Blocks the current window has.
    pub current_total: usize,
    /// Blocks of the baseline window with data.
    pub previous_blocks: usize,
    /// Blocks the baseline window has.
    pub previous_total: usize,
    /// Whether the windows can be compared.
    pub enough: bool,
}

/// A window must hold data in at least this share of the blocks the other
/// holds data in (each as a share of its own length).
pub const MIN_WINDOW_COVERAGE: f64 = 0.5;

impl Coverage {
    fn new(block_minutes: i64, current: (usize, usize), previous: (usize, usize)) -> Coverage {
        let share = |(with, total): (usize, usize)| with as f64 / total.max(1) as f64;
        let (now, before) = (share(current), share(previous));
        Coverage {
            block_minutes,
            current_blocks: current.0,
            current_total: current.1,
            previous_blocks: previous.0,
            previous_total: previous.1,
            enough: current.0 >= 2 && previous.0 >= 2 && now.min(before) >= MIN_WINDOW_COVERAGE * now.max(before),
        }
    }

    /// What is missing, for people: `None` when the coverage is enough.
    /// "Not enough baseline: the previous window holds data in 1 of its 168
    /// hours, this one in 168: no regression is called."
    pub fn shortfall(&self) -> Option<String> {
        if self.enough {
            return None;
        }
        let unit = if self.block_minutes == 60 {
            "hours".to_owned()
        } else {
            format!("{}-minute blocks", self.block_minutes)
        };
        let now = self.current_blocks as f64 / self.current_total.max(1) as f64;
        let before = self.previous_blocks as f64 / self.previous_total.max(1) as f64;
        let thin = if before <= now { "baseline" } else { "current data" };
        Some(format!(
            "Not enough {thin}: the previous window holds data in {} of its {} {unit}, the current one in {} of {}; no regression or improvement is called.",
            self.previous_blocks, self.previous_total, self.current_blocks, self.current_total
        ))
    }
}

/// A row's identity while merging: (service, transaction, environment) for a
/// transaction, (feature, "", environment) for a feature.
type Subject = (String, String, String);

/// A subject's feature and team, when it has them.
type Names = (Option<String>, Option<String>);

/// One subject's histogram over one block: (subject, block start, histogram, names).
type Piece = (Subject, i64, Histogram, Names);

/// A subject's blocks in both windows, with its feature and team.
struct Gathered {
    blocks: [Vec<Block>; 2],
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
        self.compare_explained(scope, baseline, rule, group, 0)
    }

    /// Like [`Analysis::compare_against`], with the first `explained` rows of
    /// each list (regressions, improvements, too little traffic, unchanged)
    /// carrying their [`Explanation`].
    ///
    /// Per transaction, `scope.transaction` picks the rows, not what is
    /// judged: the transactions of `scope` without it are judged together
    /// (their q-values adjusted as one answer), so a transaction's verdict
    /// is the one the list without `transaction` gives it.
    pub(crate) fn compare_explained(
        &self,
        scope: &Scope,
        baseline: &Scope,
        rule: &RegressionRule,
        group: Group,
        explained: usize,
    ) -> Result<Comparison, AnalysisError> {
        let picked = match group {
            Group::Transaction => scope.transaction.clone(),
            Group::Feature => None,
        };
        let family;
        let scope = match picked {
            Some(_) => {
                family = Scope {
                    transaction: None,
                    ..scope.clone()
                };
                &family
            }
            None => scope,
        };
        scope.check_team(self.owners)?;
        let block = block_minutes(scope.minutes().min(baseline.minutes()).max(1));
        let before = Scope {
            from: baseline.from,
            to: baseline.to,
            ..scope.clone()
        };
        let mut gathered: BTreeMap<Subject, Gathered> = BTreeMap::new();
        let mut with_data = [BTreeSet::new(), BTreeSet::new()];
        for (side, window) in [scope, &before].into_iter().enumerate() {
            for (subject, start, histogram, (feature, team)) in self.blocks(window, group, block)? {
                with_data[side].insert(start);
                let entry = gathered.entry(subject).or_insert_with(|| Gathered {
                    blocks: [Vec::new(), Vec::new()],
                    feature: None,
                    team: None,
                });
                // Names come from the current period, else the previous one.
                if entry.feature.is_none() {
                    entry.feature = feature;
                }
                if entry.team.is_none() {
                    entry.team = team;
                }
                entry.blocks[side].push(Block { start, histogram });
            }
        }
        let blocks_in = |window: &Scope| {
            let first = window.from.div_euclid(block);
            ((window.to - 1).div_euclid(block) - first + 1).max(0) as usize
        };
        let coverage = Coverage::new(
            block,
            (with_data[0].len(), blocks_in(scope)),
            (with_data[1].len(), blocks_in(&before)),
        );
        let mut comparison = Comparison {
            coverage,
            ..Comparison::default()
        };
        if !coverage.enough {
            comparison.not_judged = gathered
                .keys()
                .filter(|subject| picked.as_ref().is_none_or(|t| *t == subject.1))
                .count();
            return Ok(comparison);
        }
        let mut history = self.history(scope, &before, group, block)?;
        let (subjects, gathered): (Vec<Subject>, Vec<Gathered>) = gathered.into_iter().unzip();
        let histories: Vec<Option<History>> = subjects
            .iter()
            .map(|subject| history.remove(subject).map(History::of))
            .collect();
        let (blocks, names): (Vec<[Vec<Block>; 2]>, Vec<Names>) =
            gathered.into_iter().map(|g| (g.blocks, (g.feature, g.team))).unzip();
        let verdicts = judge_all_with_history(&blocks, &histories, rule);
        comparison.tests = verdicts
            .iter()
            .map(|v| {
                [v.tests.p50, v.tests.p95, v.tests.p99, v.tests.mean]
                    .iter()
                    .flatten()
                    .count()
            })
            .sum();
        // Each row with its subject's number, to find its blocks when explained.
        let mut numbered: [Vec<(usize, RegressionRow)>; 4] = Default::default();
        for (number, ((subject, (feature, team)), verdict)) in subjects.into_iter().zip(names).zip(verdicts).enumerate()
        {
            if picked.as_ref().is_some_and(|t| *t != subject.1) {
                continue;
            }
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
                    attribution: None,
                    explanation: None,
                },
                Group::Feature => RegressionRow {
                    group,
                    service: String::new(),
                    transaction: String::new(),
                    feature: Some(first),
                    environment,
                    team,
                    verdict,
                    attribution: None,
                    explanation: None,
                },
            };
            let list = match verdict.outcome {
                Outcome::Regression => 0,
                Outcome::Improvement => 1,
                Outcome::TooLittleTraffic => 2,
                Outcome::NoChange => 3,
            };
            numbered[list].push((number, row));
        }
        let impact = |row: &RegressionRow| row.verdict.impact_seconds;
        let runs = |row: &RegressionRow| row.verdict.current_count.max(row.verdict.previous_count);
        let [regressions, improvements, too_little_traffic, unchanged] = &mut numbered;
        regressions.sort_by(|(_, a), (_, b)| impact(b).total_cmp(&impact(a)));
        improvements.sort_by(|(_, a), (_, b)| impact(a).total_cmp(&impact(b)));
        too_little_traffic.sort_by_key(|(_, row)| std::cmp::Reverse(runs(row)));
        unchanged.sort_by_key(|(_, row)| std::cmp::Reverse(runs(row)));
        let [regressions, improvements, too_little_traffic, unchanged] = numbered.map(|list| {
            list.into_iter()
                .enumerate()
                .map(|(rank, (number, mut row))| {
                    if rank < explained {
                        row.explanation = Some(Box::new(explain(
                            &blocks[number],
                            histories[number].as_ref(),
                            &row.verdict,
                            rule,
                        )));
                    }
                    row
                })
                .collect::<Vec<_>>()
        });
        comparison.regressions = regressions;
        comparison.improvements = improvements;
        comparison.too_little_traffic = too_little_traffic;
        comparison.unchanged = unchanged;
        Ok(comparison)
    }

    /// For windows of hour blocks too short to measure how whole days
    /// wobble (under [`MIN_DAYS`] days each): each subject's hour blocks over
    /// the [`HISTORY_DAYS`] days before `baseline`, whose days measure it
    /// instead ([`History`]). Empty for longer windows, and for shorter
    /// blocks (windows under a day), whose two windows share most of a day.
    fn history(
        &self,
        scope: &Scope,
        baseline: &Scope,
        group: Group,
        block: i64,
    ) -> Result<HashMap<Subject, Vec<Block>>, AnalysisError> {
        let mut history: HashMap<Subject, Vec<Block>> = HashMap::new();
        let short = scope.minutes().min(baseline.minutes()) < MIN_DAYS as i64 * 1_440;
        if block != 60 || !short {
            return Ok(history);
        }
        let days_before = Scope {
            from: baseline.from - HISTORY_DAYS * 1_440,
            to: baseline.from,
            ..scope.clone()
        };
        for (subject, start, histogram, _) in self.blocks(&days_before, group, block)? {
            history.entry(subject).or_default().push(Block { start, histogram });
        }
        Ok(history)
    }

    /// Each subject's histogram per block of `block` minutes over `scope`'s
    /// window: the store's series in scope, merged per transaction or
    /// feature and block, with the subject's feature and team.
    fn blocks(&self, scope: &Scope, group: Group, block: i64) -> Result<Vec<Piece>, AnalysisError> {
        let mut subjects: Vec<(Subject, Option<String>, Option<String>)> = Vec::new();
        let mut numbers: HashMap<Subject, usize> = HashMap::new();
        let owners = self.owners;
        let mut number = |key: &SeriesKey| {
            if !scope.matches(key, owners) {
                return None;
            }
            let tagged = Some(key.feature.as_str()).filter(|f| !f.is_empty());
            let feature = owners.feature_of(&key.service, &key.transaction, tagged);
            let (subject, team) = match (group, feature) {
                (Group::Transaction, _) => (
                    (key.service.clone(), key.transaction.clone(), key.environment.clone()),
                    owners.team_of(&key.service, &key.transaction, tagged),
                ),
                (Group::Feature, Some(feature)) => (
                    (feature.to_owned(), String::new(), key.environment.clone()),
                    owners.team_of_feature(feature),
                ),
                (Group::Feature, None) => return None,
            };
            let feature = feature.map(str::to_owned);
            let team = team.map(|t| t.name.clone());
            let number = match numbers.get(&subject) {
                Some(&n) => {
                    // Hosts may disagree on a transaction's tag: keep one that names something.
                    let known = &mut subjects[n];
                    if known.1.is_none() {
                        known.1 = feature;
                    }
                    if known.2.is_none() {
                        known.2 = team;
                    }
                    n
                }
                None => {
                    numbers.insert(subject.clone(), subjects.len());
                    subjects.push((subject, feature, team));
                    subjects.len() - 1
                }
            };
            Some(number)
        };
        let steps = self.store.histogram_steps_grouped(
            &scope.transactions_filter(self.owners),
            scope.from,
            scope.to,
            block,
            &mut number,
        )?;
        Ok(steps
            .into_iter()
            .filter_map(|(n, start, histogram)| {
                let (subject, feature, team) = subjects.get(n)?.clone();
                Some((subject, start, histogram, (feature, team)))
            })
            .collect())
    }
}
