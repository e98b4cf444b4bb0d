//! Performance problems found in kept traces, grouped like errors.
//!
//! Every kept trace in scope (the slowest runs of each transaction, from
//! Kuroko's agent or from any SDK's spans) is read ([`run`]) and handed to
//! each detector, one module each: [`n_plus_one`] (one statement repeated
//! in a run), [`sequential`] (independent calls one after the other that
//! could overlap), [`dominant`] (one query taking most of the run) and
//! [`outside`] (a slow run's time mostly in no segment). [`growth`] reads
//! the segment counters of every run instead: a query or call made many
//! more times per run than in the window before. Statements are compared
//! normalised ([`statement`]: literals become `?`).
//!
//! A finding's group is its fingerprint: service, transaction, pattern and
//! normalised statement ([`group_id`], 16 hex digits, as error groups'). A
//! group says when it was first and last seen (over the kept traces of the
//! last `history_days`, 8 by default as long as the store keeps traces),
//! how many of the transaction's kept runs in the window show it, what it
//! costs a run, and from the transaction's runs a day (its histograms,
//! which count every run) an estimate of the runs it affects a day (runs a
//! day × the share of kept runs that show it) and of the time it costs a
//! day (the transaction's time a day × that share × the share of an
//! affected run's time it costs). Kept runs are the slowest, so for a
//! problem of slow runs only these are upper bounds (and for one every run
//! has at a fixed cost, the time a day is low: docs/problems.md). Each group
//! carries its owning team
//! (`owners.toml`), an example (its costliest run in the window, the
//! offending spans marked) and its triage: error groups' workflow (open,
//! resolved, regressed, ignored, assigned), kept in the same store rows
//! ([`super::triage`]).
//!
//! Thresholds are `[problems]` of `kuroko.toml` ([`Thresholds`], in
//! `thresholds.rs`; docs/problems.md).

pub(crate) mod dominant;
pub(crate) mod growth;
pub(crate) mod n_plus_one;
pub(crate) mod outside;
pub(crate) mod run;
pub(crate) mod sequential;
pub(crate) mod statement;
mod thresholds;

use std::collections::{BTreeMap, HashMap};

pub(crate) use thresholds::DEFAULT_THRESHOLDS;
pub use thresholds::{
    DominantThresholds, GrowthThresholds, NPlusOneThresholds, OutsideThresholds, SequentialThresholds, Thresholds,
};

use super::triage::{settle, GroupTriage, Seen};
use super::{Analysis, AnalysisError, Scope};
use crate::store::sightings::ProblemSeen;
use crate::store::{Filter, TracePoint};

/// What kind of problem a group is; named in JSON as in CSV, the
/// fingerprint and docs/openapi.json ([`Pattern::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Pattern {
    /// One statement run again and again in one run.
    #[serde(rename = "n_plus_one")]
    NPlusOne,
    /// Independent calls one after the other that could run at once.
    #[serde(rename = "sequential_calls")]
    Sequential,
    /// One query taking most of the run.
    #[serde(rename = "dominant_query")]
    Dominant,
    /// A slow run's time mostly outside any segment.
    #[serde(rename = "outside_segments")]
    Outside,
    /// A segment called many more times per run than in the window before.
    #[serde(rename = "calls_per_run_grew")]
    Grew,
}

impl Pattern {
    /// Its name in JSON, CSV and the fingerprint.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::NPlusOne => "n_plus_one",
            Pattern::Sequential => "sequential_calls",
            Pattern::Dominant => "dominant_query",
            Pattern::Outside => "outside_segments",
            Pattern::Grew => "calls_per_run_grew",
        }
    }

    /// What a person reads, given the kind of its spans.
    pub fn title(self, kind: &str) -> &'static str {
        match (self, kind) {
            (Pattern::NPlusOne, "external") => "N+1 calls",
            (Pattern::NPlusOne, _) => "N+1 queries",
            (Pattern::Sequential, "database") => "Sequential queries",
            (Pattern::Sequential, _) => "Sequential calls",
            (Pattern::Dominant, _) => "Slow query dominating",
            (Pattern::Outside, _) => "Time outside segments",
            (Pattern::Grew, "external") => "More calls per run",
            (Pattern::Grew, _) => "More queries per run",
        }
    }
}

/// One detector's finding in one run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    pub(crate) pattern: Pattern,
    /// The kind of the offending spans (`database`, `external`, `code`).
    pub(crate) kind: String,
    /// The normalised statement (statements joined by ` → ` for sequential
    /// calls; empty for time outside segments).
    pub(crate) statement: String,
    /// Spans involved (calls; for time outside segments, the run's spans).
    pub(crate) count: usize,
    /// Time in the offending spans (outside segments: the time outside), seconds.
    pub(crate) seconds: f64,
    /// What it costs the run, seconds: the time a fix would save at most
    /// (sequential calls: their sum less the longest).
    pub(crate) cost: f64,
    /// The offending spans, as indexes into the run's spans.
    pub(crate) spans: Vec<usize>,
}

/// Every detector's findings in `run`, one per group (a group found twice
/// in one run, such as two chains of the same calls, counts once, its
/// costs added).
pub(crate) fn detect(run: &run::Run, thresholds: &Thresholds) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    let all = n_plus_one::detect(run, thresholds)
        .into_iter()
        .chain(sequential::detect(run, thresholds))
        .chain(dominant::detect(run, thresholds))
        .chain(outside::detect(run, thresholds));
    for finding in all {
        match findings
            .iter_mut()
            .find(|f| f.pattern == finding.pattern && f.statement == finding.statement)
        {
            Some(same) => {
                same.count += finding.count;
                same.seconds += finding.seconds;
                same.cost += finding.cost;
                same.spans.extend(finding.spans);
            }
            None => findings.push(finding),
        }
    }
    findings
}

/// A group's fingerprint: service, transaction, pattern and normalised
/// statement, 16 hex digits.
pub fn group_id(service: &str, transaction: &str, pattern: Pattern, statement: &str) -> String {
    let hash = crate::stable_hash::fnv1a64(&[
        b"problem",
        service.as_bytes(),
        transaction.as_bytes(),
        pattern.as_str().as_bytes(),
        statement.as_bytes(),
    ]);
    format!("{hash:016x}")
}

/// A span of a group's example run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExampleSpan {
    /// `database`, `external`, `code`…
    pub kind: String,
    /// The span's name.
    pub name: String,
    /// What it ran, normalised.
    pub statement: String,
    /// Start, seconds after the run's.
    pub offset: f64,
    /// Duration, seconds.
    pub duration: f64,
    /// One of the spans the problem is about.
    pub marked: bool,
}

/// A group's example: one run that shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Example {
    /// Trace id, hex.
    pub trace_id: String,
    /// Where it ran.
    pub host: String,
    /// Start, unix nanoseconds.
    pub start: u64,
    /// Duration, seconds.
    pub duration: f64,
    /// The problem's cost in this run, seconds.
    pub cost: f64,
    /// Its spans in start order, the offending ones marked.
    pub spans: Vec<ExampleSpan>,
}

/// One performance problem over a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProblemGroup {
    /// The fingerprint, 16 hex digits ([`group_id`]).
    pub id: String,
    /// What kind of problem.
    pub pattern: Pattern,
    /// What a person reads (`N+1 queries`, `Sequential calls`…).
    pub title: String,
    /// The kind of the offending spans.
    pub kind: String,
    /// The normalised statement (` → ` between sequential calls; empty for
    /// time outside segments).
    pub statement: String,
    /// The service.
    pub service: String,
    /// The transaction.
    pub transaction: String,
    /// Its feature, per `owners.toml` or its tag.
    pub feature: Option<String>,
    /// The team that owns the feature.
    pub team: Option<String>,
    /// Its first run seen, over the kept traces of the history (unix ns).
    pub first_seen: u64,
    /// Its last run seen, the end of it (unix ns).
    pub last_seen: u64,
    /// Not seen in the kept traces before the window.
    pub new: bool,
    /// The transaction's kept runs in the window.
    pub runs_examined: u64,
    /// Those that show it.
    pub runs_affected: u64,
    /// Mean spans involved per affected run (the N+1's count; for calls
    /// per run grown, the segment's calls per run over every run).
    pub count_per_run: f64,
    /// Calls per run grown: the segment's calls per run in the window
    /// before; `None` for the other patterns.
    pub baseline_count_per_run: Option<f64>,
    /// Mean time in the offending spans per affected run, seconds.
    pub seconds_per_run: f64,
    /// Mean cost per affected run, seconds (what a fix would save at most).
    pub cost_per_run: f64,
    /// The transaction's runs a day in the window (every run, from its histograms).
    pub runs_per_day: f64,
    /// Estimated runs a day it affects: `runs_per_day` × affected / examined.
    pub affected_runs_per_day: f64,
    /// Mean share of an affected kept run's time it costs, 0 to 1.
    pub cost_share: f64,
    /// Estimated time it costs a day, seconds: the transaction's time a day
    /// (every run, from its histograms) × affected / examined × `cost_share`.
    /// Scaled by shares rather than by `cost_per_run`, since kept runs are
    /// the slowest: an upper bound for a problem only slow runs have, low
    /// for one every run has at a fixed cost (docs/problems.md). For calls
    /// per run grown, the added calls' time a run × runs a day.
    pub seconds_per_day: f64,
    /// Its costliest run in the window.
    pub example: Example,
    /// What people decided about it, as it stands now.
    pub triage: GroupTriage,
}

/// The performance problems in a scope.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Problems {
    /// What was asked about.
    pub scope: Scope,
    /// The groups, the most time a day first.
    pub groups: Vec<ProblemGroup>,
    /// Kept runs read in the window.
    pub runs_examined: u64,
}

impl ProblemGroup {
    /// What it is about, in a line as people read it: `12 × SELECT
    /// report_rows` for an N+1, `1 → 12 a run: SELECT report_rows` for
    /// calls per run grown, the statement otherwise.
    pub fn what(&self) -> String {
        use crate::format;
        match self.pattern {
            Pattern::NPlusOne => format!("{} × {}", format::number(self.count_per_run), self.statement),
            Pattern::Outside => "time in no segment".to_owned(),
            Pattern::Grew => format!(
                "{} → {} a run: {}",
                format::number(self.baseline_count_per_run.unwrap_or_default()),
                format::number(self.count_per_run),
                self.statement
            ),
            Pattern::Sequential | Pattern::Dominant => self.statement.clone(),
        }
    }
}

impl Problems {
    /// The groups not resolved or ignored (open or regressed).
    pub fn open(&self) -> impl Iterator<Item = &ProblemGroup> {
        use super::triage::Status;
        self.groups
            .iter()
            .filter(|g| matches!(g.triage.status, Status::Open | Status::Regressed))
    }
}

/// A group while runs are added.
struct Builder {
    finding: Finding,
    service: String,
    transaction: String,
    first_seen: u64,
    last_seen: u64,
    affected: u64,
    count: f64,
    seconds: f64,
    cost: f64,
    /// Sum of cost over run duration.
    share: f64,
    /// Run starts (seconds) of every run showing it, for ignore counts.
    starts: Vec<i64>,
    example: Option<(f64, TracePoint, run::Run, Vec<usize>)>,
}

/// Per transaction: runs and their seconds in the window, and the feature
/// tag its series carry.
type Transactions = BTreeMap<(String, String), (u64, f64, Option<String>)>;

impl Analysis<'_> {
    /// The performance problems of the transactions in `scope`, with the
    /// thresholds this analysis was given (defaults unless
    /// [`Analysis::with_problem_thresholds`]).
    pub fn problems(&self, scope: &Scope) -> Result<Problems, AnalysisError> {
        let thresholds = self.problem_thresholds;
        let mut transactions: Transactions = BTreeMap::new();
        for (key, histogram) in self.histograms(&scope.transactions_filter(self.owners), scope.from, scope.to)? {
            if !scope.matches(&key, self.owners) {
                continue;
            }
            let entry = transactions
                .entry((key.service.clone(), key.transaction.clone()))
                .or_default();
            entry.0 += histogram.count;
            entry.1 += histogram.sum;
            if !key.feature.is_empty() {
                entry.2 = Some(key.feature.clone());
            }
        }
        let history_from = scope.to - thresholds.history_days * 1_440;
        let days = scope.minutes().max(1) as f64 / 1_440.0;
        let window_ns = |minute: i64| u64::try_from(minute.max(0)).unwrap_or(0).saturating_mul(60_000_000_000);
        let window_start = window_ns(scope.from);
        let mut groups: HashMap<String, Builder> = HashMap::new();
        let mut examined_of: HashMap<(String, String), u64> = HashMap::new();
        let mut kept_in_window: HashMap<(String, String), Vec<(TracePoint, run::Run)>> = HashMap::new();
        let mut runs_examined = 0;
        // Every transaction's slowest kept runs in one read per window (one
        // read per transaction cost ClickHouse 800 queries at 400).
        let filter = Filter {
            service: scope.service.clone(),
            transaction: scope.transaction.clone(),
            host: scope.host.clone(),
            environment: scope.environment.clone(),
            feature: None,
            across_hosts: false,
        };
        let mut runs_of = self.runs_with_findings(&filter, scope.from, scope.to)?;
        if history_from < scope.from {
            for (transaction, runs) in self.runs_with_findings(&filter, history_from, scope.from)? {
                runs_of.entry(transaction).or_default().extend(runs);
            }
        }
        for (service, transaction) in transactions.keys() {
            let runs = runs_of
                .remove(&(service.clone(), transaction.clone()))
                .unwrap_or_default();
            for (trace, run, findings) in runs {
                if !scope.matches(&trace.key, self.owners) {
                    continue;
                }
                let in_window = trace.start >= window_start;
                if in_window {
                    runs_examined += 1;
                    *examined_of.entry((service.clone(), transaction.clone())).or_default() += 1;
                    kept_in_window
                        .entry((service.clone(), transaction.clone()))
                        .or_default()
                        .push((trace.clone(), run.clone()));
                }
                let end = trace.start.saturating_add((trace.duration * 1e9) as u64);
                for finding in findings {
                    let id = group_id(service, transaction, finding.pattern, &finding.statement);
                    let group = groups.entry(id).or_insert_with(|| Builder {
                        finding: finding.clone(),
                        service: service.clone(),
                        transaction: transaction.clone(),
                        first_seen: trace.start,
                        last_seen: end,
                        affected: 0,
                        count: 0.0,
                        seconds: 0.0,
                        cost: 0.0,
                        share: 0.0,
                        starts: Vec::new(),
                        example: None,
                    });
                    group.first_seen = group.first_seen.min(trace.start);
                    group.last_seen = group.last_seen.max(end);
                    group
                        .starts
                        .push(i64::try_from(trace.start / 1_000_000_000).unwrap_or(i64::MAX));
                    if !in_window {
                        continue;
                    }
                    group.affected += 1;
                    group.count += finding.count as f64;
                    group.seconds += finding.seconds;
                    group.cost += finding.cost;
                    if run.duration > 0 {
                        group.share += (finding.cost * 1e9 / run.duration as f64).min(1.0);
                    }
                    if group.example.as_ref().is_none_or(|(cost, ..)| finding.cost > *cost) {
                        group.example = Some((finding.cost, trace.clone(), run.clone(), finding.spans.clone()));
                    }
                }
            }
        }
        // Sightings recorded before (`record_sightings`) reach past the
        // kept traces: first and last seen over the store's retention.
        let recorded: HashMap<String, ProblemSeen> = self
            .store
            .problems_seen()?
            .into_iter()
            .map(|seen| (seen.group.clone(), seen))
            .collect();
        for (id, group) in &mut groups {
            if let Some(seen) = recorded.get(id) {
                group.first_seen = group.first_seen.min(seen.first_seen);
                group.last_seen = group.last_seen.max(seen.last_seen);
            }
        }
        let decisions = self.decisions()?;
        let now = jiff::Timestamp::now().as_second();
        let mut out: Vec<ProblemGroup> = groups
            .into_iter()
            .filter_map(|(id, group)| {
                let (cost, trace, run, marked) = group.example?;
                let key = (group.service.clone(), group.transaction.clone());
                let (runs, seconds, tag) = transactions.get(&key).cloned().unwrap_or_default();
                let examined = examined_of.get(&key).copied().unwrap_or(0).max(group.affected);
                let affected = group.affected as f64;
                let runs_per_day = runs as f64 / days;
                let affected_runs_per_day = runs_per_day * affected / examined.max(1) as f64;
                let cost_per_run = group.cost / affected;
                let cost_share = group.share / affected;
                let affected_share = affected / examined.max(1) as f64;
                let decision = decisions.get(&id);
                let seen = Seen {
                    last_seen: group.last_seen,
                    since_decided: decision.map(|d| group.starts.iter().filter(|&&s| s > d.at).count() as u64),
                };
                let (feature, team) = self.owned(&group.service, &group.transaction, tag.as_deref());
                Some(ProblemGroup {
                    title: group.finding.pattern.title(&group.finding.kind).to_owned(),
                    pattern: group.finding.pattern,
                    kind: group.finding.kind,
                    statement: group.finding.statement,
                    feature,
                    team,
                    first_seen: group.first_seen,
                    last_seen: group.last_seen,
                    new: group.first_seen >= window_start,
                    runs_examined: examined,
                    runs_affected: group.affected,
                    count_per_run: group.count / affected,
                    baseline_count_per_run: None,
                    seconds_per_run: group.seconds / affected,
                    cost_per_run,
                    runs_per_day,
                    affected_runs_per_day,
                    cost_share,
                    seconds_per_day: seconds / days * affected_share * cost_share,
                    example: example(&trace, &run, &marked, cost),
                    triage: settle(decision, &seen, now),
                    service: group.service,
                    transaction: group.transaction,
                    id,
                })
            })
            .collect();
        for growth in self.grown_segments(scope)? {
            let key = (growth.service.clone(), growth.transaction.clone());
            let (runs, seconds, tag) = transactions.get(&key).cloned().unwrap_or_default();
            let kept = kept_in_window.get(&key).map(Vec::as_slice).unwrap_or_default();
            let window_end = window_ns(scope.to).min(u64::try_from(now).unwrap_or(0).saturating_mul(1_000_000_000));
            let group = growth_group(
                &growth,
                kept,
                GrowthContext {
                    runs_per_day: runs as f64 / days,
                    mean: if runs > 0 { seconds / runs as f64 } else { 0.0 },
                    window: (window_start, window_end.max(window_start)),
                    recorded: &recorded,
                    decisions: &decisions,
                    now,
                    owned: self.owned(&growth.service, &growth.transaction, tag.as_deref()),
                },
            );
            out.push(group);
        }
        out.sort_by(|a, b| {
            b.seconds_per_day
                .total_cmp(&a.seconds_per_day)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(Problems {
            scope: scope.clone(),
            groups: out,
            runs_examined,
        })
    }

    /// The ids of the problem groups the store's kept traces show, over all
    /// its history up to `now` (unix seconds): those a decision may name.
    pub(crate) fn problem_ids(&self, now: i64) -> Result<std::collections::HashSet<String>, AnalysisError> {
        let to = now.div_euclid(60) + super::errors::HISTORY_AHEAD_MINUTES;
        let mut ids: std::collections::HashSet<String> = self
            .problems(&Scope::window(0, to))?
            .groups
            .into_iter()
            .map(|g| g.id)
            .collect();
        ids.extend(self.store.problems_seen()?.into_iter().map(|seen| seen.group));
        Ok(ids)
    }

    /// The feature and team of a transaction, per `owners.toml` or its tag.
    fn owned(&self, service: &str, transaction: &str, tag: Option<&str>) -> (Option<String>, Option<String>) {
        (
            self.owners.feature_of(service, transaction, tag).map(str::to_owned),
            self.owners.team_of(service, transaction, tag).map(|t| t.name.clone()),
        )
    }

    /// The kept runs of each transaction `filter` names over `[from, to)`
    /// (unix minutes; at most `max_traces_per_transaction` of each, the
    /// slowest, slowest first), each read with what the detectors find in it.
    fn runs_with_findings(&self, filter: &Filter, from: i64, to: i64) -> Result<RunsOf, AnalysisError> {
        let thresholds = self.problem_thresholds;
        let traces = self
            .store
            .slowest_traces_each(filter, from, to, thresholds.max_traces_per_transaction)?;
        let mut runs: RunsOf = HashMap::new();
        for trace in traces {
            let Some(run) = run::read(&trace) else { continue };
            let findings = detect(&run, thresholds);
            runs.entry((trace.key.service.clone(), trace.key.transaction.clone()))
                .or_default()
                .push((trace, run, findings));
        }
        Ok(runs)
    }

    /// Records in the store when each problem the kept traces of `[from,
    /// to)` (unix minutes) show was first and last seen, read day by day
    /// (UTC) as [`Analysis::problems`] reads a window: the slowest
    /// `max_traces_per_transaction` runs of each transaction a day; and the
    /// segments whose calls per run grew, each day against the one before. Kept
    /// traces last as long as minute rows; what is recorded lasts as long
    /// as hour rows, so a problem's first seen, and whether it is new,
    /// outlive its traces. `kuroko serve` records at start (over
    /// `history_days`), every hour and at shutdown. Returns the groups
    /// recorded.
    pub fn record_sightings(&self, from: i64, to: i64) -> Result<usize, AnalysisError> {
        let mut seen: HashMap<String, ProblemSeen> = HashMap::new();
        let mut day = from.div_euclid(1_440) * 1_440;
        while day < to {
            let (start, end) = (day.max(from), (day + 1_440).min(to));
            for ((service, transaction), runs) in self.runs_with_findings(&Filter::default(), start, end)? {
                for (trace, _, findings) in runs {
                    let last = trace.start.saturating_add((trace.duration * 1e9) as u64);
                    for finding in findings {
                        let id = group_id(&service, &transaction, finding.pattern, &finding.statement);
                        let entry = seen.entry(id.clone()).or_insert(ProblemSeen {
                            group: id,
                            first_seen: trace.start,
                            last_seen: last,
                        });
                        entry.first_seen = entry.first_seen.min(trace.start);
                        entry.last_seen = entry.last_seen.max(last);
                    }
                }
            }
            // Calls per run grown: the day against the day before.
            let ns = |minute: i64| u64::try_from(minute.max(0)).unwrap_or(0).saturating_mul(60_000_000_000);
            for growth in self.grown_segments(&Scope::window(start, end))? {
                let id = group_id(&growth.service, &growth.transaction, Pattern::Grew, &growth.statement);
                let entry = seen.entry(id.clone()).or_insert(ProblemSeen {
                    group: id,
                    first_seen: ns(start),
                    last_seen: ns(end),
                });
                entry.first_seen = entry.first_seen.min(ns(start));
                entry.last_seen = entry.last_seen.max(ns(end));
            }
            day += 1_440;
        }
        let mut seen: Vec<ProblemSeen> = seen.into_values().collect();
        seen.sort();
        self.store.problems_seen_put(&seen)?;
        Ok(seen.len())
    }
}

/// Kept runs by (service, transaction), each with what the detectors found.
type RunsOf = HashMap<(String, String), Vec<(TracePoint, run::Run, Vec<Finding>)>>;

/// What a group of calls per run grown is read with, beside the growth.
struct GrowthContext<'a> {
    /// The transaction's runs a day (every run, from its histograms).
    runs_per_day: f64,
    /// Its mean run, seconds.
    mean: f64,
    /// The window, unix ns (its end no later than now).
    window: (u64, u64),
    recorded: &'a HashMap<String, ProblemSeen>,
    decisions: &'a HashMap<String, crate::store::triage::Triage>,
    /// Unix seconds.
    now: i64,
    /// Feature and team.
    owned: (Option<String>, Option<String>),
}

/// A segment whose calls per run grew, as a group: seen over the window
/// (and whenever it was recorded before), its example the kept run of the
/// window with the most of its calls, every run affected.
fn growth_group(growth: &growth::Growth, kept: &[(TracePoint, run::Run)], c: GrowthContext<'_>) -> ProblemGroup {
    let id = group_id(&growth.service, &growth.transaction, Pattern::Grew, &growth.statement);
    let calls_of = |run: &run::Run| -> Vec<usize> {
        run.spans
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.kind == growth.kind
                    && (s.statement == growth.statement || statement::normalise(&s.name) == growth.statement)
            })
            .map(|(i, _)| i)
            .collect()
    };
    let showing: Vec<(&TracePoint, &run::Run, Vec<usize>)> = kept
        .iter()
        .map(|(trace, run)| (trace, run, calls_of(run)))
        .filter(|(.., calls)| !calls.is_empty())
        .collect();
    let cost = growth.cost_per_run();
    let example = match showing
        .iter()
        .max_by_key(|(trace, _, calls)| (calls.len(), trace.start))
    {
        Some((trace, run, calls)) => example(trace, run, calls, cost),
        None => Example {
            trace_id: String::new(),
            host: String::new(),
            start: c.window.0,
            duration: 0.0,
            cost,
            spans: Vec::new(),
        },
    };
    let (mut first_seen, mut last_seen) = c.window;
    if let Some(seen) = c.recorded.get(&id) {
        first_seen = first_seen.min(seen.first_seen);
        last_seen = last_seen.max(seen.last_seen);
    }
    let decision = c.decisions.get(&id);
    let seen = Seen {
        last_seen,
        // Its runs count once the window starts after the decision.
        since_decided: decision.map(|d| {
            let after = i64::try_from(c.window.0 / 1_000_000_000).unwrap_or(i64::MAX) >= d.at;
            if after {
                growth.runs as u64
            } else {
                0
            }
        }),
    };
    let cost_share = if c.mean > 0.0 { (cost / c.mean).min(1.0) } else { 0.0 };
    ProblemGroup {
        id: id.clone(),
        pattern: Pattern::Grew,
        title: Pattern::Grew.title(&growth.kind).to_owned(),
        kind: growth.kind.clone(),
        statement: growth.statement.clone(),
        service: growth.service.clone(),
        transaction: growth.transaction.clone(),
        feature: c.owned.0,
        team: c.owned.1,
        first_seen,
        last_seen,
        new: first_seen >= c.window.0,
        runs_examined: kept.len() as u64,
        runs_affected: showing.len() as u64,
        count_per_run: growth.calls_per_run,
        baseline_count_per_run: Some(growth.baseline_calls_per_run),
        seconds_per_run: growth.calls_per_run * growth.seconds_per_call,
        cost_per_run: cost,
        runs_per_day: c.runs_per_day,
        affected_runs_per_day: c.runs_per_day,
        cost_share,
        seconds_per_day: cost * c.runs_per_day,
        example,
        triage: settle(decision, &seen, c.now),
    }
}

fn example(trace: &TracePoint, run: &run::Run, marked: &[usize], cost: f64) -> Example {
    Example {
        trace_id: trace.trace_id.clone(),
        host: trace.key.host.clone(),
        start: trace.start,
        duration: trace.duration,
        cost,
        spans: run
            .spans
            .iter()
            .enumerate()
            .map(|(index, span)| ExampleSpan {
                kind: span.kind.clone(),
                name: span.name.clone(),
                statement: span.statement.clone(),
                offset: span.offset as f64 / 1e9,
                duration: span.duration as f64 / 1e9,
                marked: marked.contains(&index),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
