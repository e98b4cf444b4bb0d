//! One question with its parameters, as the API and the CLI both take it:
//! `key=value` pairs (a URL's query string, or `kuroko query`'s flags turned
//! into the same pairs), checked here once so both report the same mistakes
//! with the same words, and answered as JSON.
//!
//! The answer is a [`serde_json::Value`] made from the analysis' own types
//! (regressions get a flat shape of their own here). The CLI renders that
//! value whether it computed it or fetched it from a reporter, so both paths
//! print the same thing.

use serde::Serialize;

use crate::analysis::attribution::{Attribution, Cause};
use crate::analysis::endpoints::{ApdexRow, Group, Rank};
use crate::analysis::errors::ErrorGroup;
use crate::analysis::problems::Problems;
use crate::analysis::regressions::{self, Comparison, Coverage, RegressionRow};
use crate::analysis::scope::{parse_time, parse_window};
use crate::analysis::stats::{self as stats, Change, Outcome, RegressionRule};
use crate::analysis::timeseries::Step;
use crate::analysis::{Analysis, AnalysisError, Scope};
use crate::owners::Owners;

/// Rows returned when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 20;

/// Slowest kept traces a breakdown lists when `traces` is not given.
pub(crate) const DEFAULT_TRACES: usize = 5;

/// The questions, each `GET /api/v1/<name>` and `kuroko query <name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Question {
    /// Slowest transactions (or features), by p95 unless `by` says otherwise.
    Slowest,
    /// Where the time goes: the slowest table ranked by time consumed.
    Consumers,
    /// Latency, throughput and errors per step.
    Timeseries,
    /// Where one transaction's time goes: database, external calls, code.
    Breakdown,
    /// What got slower, this period against the one before.
    Regressions,
    /// Error groups, against the window before.
    Errors,
    /// Apdex per transaction (or feature), worst first.
    Apdex,
    /// Performance problems found in kept traces (N+1, sequential calls,
    /// a dominant query, time outside segments), the most time a day first.
    Problems,
}

impl Question {
    /// Every question, in the order the docs list them.
    pub const ALL: [Question; 8] = [
        Question::Slowest,
        Question::Consumers,
        Question::Timeseries,
        Question::Breakdown,
        Question::Regressions,
        Question::Errors,
        Question::Apdex,
        Question::Problems,
    ];

    /// Its name in URLs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Question::Slowest => "slowest",
            Question::Consumers => "consumers",
            Question::Timeseries => "timeseries",
            Question::Breakdown => "breakdown",
            Question::Regressions => "regressions",
            Question::Errors => "errors",
            Question::Apdex => "apdex",
            Question::Problems => "problems",
        }
    }

    /// The window when `since` is not given: a day for errors (the morning
    /// digest's question), a week for the rest.
    pub(crate) fn default_since(self) -> &'static str {
        match self {
            Question::Errors => "24h",
            _ => "7d",
        }
    }
}

/// Every parameter a question may take.
pub const PARAMETERS: [&str; 22] = [
    "since",
    "until",
    "service",
    "host",
    "environment",
    "transaction",
    "feature",
    "team",
    "by",
    "group",
    "step",
    "limit",
    "format",
    "include",
    "p_value",
    "min_change",
    "min_count",
    "compare",
    "baseline_since",
    "baseline_until",
    "traces",
    "explain",
];

/// How an answer is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal (the CLI only).
    Table,
    /// JSON, as the API returns it.
    #[default]
    Json,
    /// CSV: one row per table row (per point for time series).
    Csv,
}

/// A question that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is wrong: the message says which and what to write.
    #[error("{0}")]
    Invalid(String),
    /// The analysis failed: a wrong window or team (the caller's mistake),
    /// or the store.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
}

impl QueryError {
    /// Whether the caller can fix it by changing the parameters (HTTP 400),
    /// rather than the store failing (HTTP 500).
    pub(crate) fn is_caller_mistake(&self) -> bool {
        !matches!(self, QueryError::Analysis(AnalysisError::Store(_)))
    }

    /// The message with its causes, for people: the store's errors name the
    /// file first and SQLite's reason in their source.
    pub fn message(&self) -> String {
        crate::errors::chain(self)
    }
}

impl From<crate::analysis::scope::ScopeError> for QueryError {
    fn from(error: crate::analysis::scope::ScopeError) -> Self {
        QueryError::Analysis(error.into())
    }
}

/// Which extra lists `regressions` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Include {
    /// What got faster.
    pub improvements: bool,
    /// What had too few runs in a period to be judged.
    pub too_little_traffic: bool,
}

/// A question with its parameters checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The question.
    pub question: Question,
    /// Window and filters.
    pub scope: Scope,
    /// Ranking of slowest and consumers.
    pub by: Rank,
    /// Rows per transaction or per feature.
    pub group: Group,
    /// Time series step; `None` fits the window.
    pub step: Option<Step>,
    /// Most rows (groups, segments) returned.
    pub limit: usize,
    /// When a change is a regression.
    pub rule: RegressionRule,
    /// Extra lists of `regressions`.
    pub include: Include,
    /// The window errors are compared with.
    pub baseline: Scope,
    /// Regressions: the window is from the latest deploy of `service` on,
    /// against as long a window before it (`compare=deploy`), resolved
    /// when answered.
    pub since_deploy: bool,
    /// Kept traces listed by a breakdown.
    pub traces: usize,
    /// Regressions: each row also carries its statistics and its whole
    /// decomposition (`explain`), not only its cause.
    pub explain: bool,
    /// How the answer is written.
    pub format: Format,
    /// Whether the window's last minute is the current one, still
    /// arriving (the answer says so: `partial_last_minute`).
    pub partial: bool,
}

impl Query {
    /// Checks `pairs` (URL query parameters, or the CLI's flags as the same
    /// pairs) for `question`, with `now_minute` in unix minutes. Empty values
    /// count as absent, so a web form's blank fields do no harm.
    pub fn parse(
        question: Question,
        pairs: &[(String, String)],
        owners: &Owners,
        now_minute: i64,
    ) -> Result<Query, QueryError> {
        let mut given: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
        for (key, value) in pairs {
            let Some(known) = PARAMETERS.iter().find(|p| **p == key.as_str()) else {
                return Err(invalid(format!(
                    "unknown parameter `{key}`: the parameters are {}",
                    PARAMETERS.join(", ")
                )));
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if given.insert(known, value).is_some() {
                return Err(invalid(format!("`{key}` is given twice: give it once")));
            }
        }
        let get = |key: &str| given.get(key).copied();
        let text = |key: &str| get(key).map(str::to_owned);

        let since = get("since").unwrap_or(question.default_since());
        let (from, to) = parse_window(since, get("until"), now_minute)?;
        let scope = Scope {
            from,
            to,
            service: text("service"),
            host: text("host"),
            environment: text("environment"),
            transaction: text("transaction"),
            feature: text("feature"),
            team: text("team"),
        };
        if scope.team.is_some() && owners.path().is_empty() {
            return Err(invalid(
                "`team` needs an owners file: set `owners = \"owners.toml\"` in kuroko.toml (kuroko query: --config)"
                    .to_owned(),
            ));
        }
        scope.check_team(owners)?;
        if question == Question::Breakdown && (scope.service.is_none() || scope.transaction.is_none()) {
            return Err(invalid(
                "a breakdown is of one transaction: give `service` and `transaction` (e.g. service=api, transaction=GET /cards/{id}; `kuroko query slowest` lists them)".to_owned(),
            ));
        }

        let default_rank = match question {
            Question::Consumers => Rank::TimeConsumed,
            _ => Rank::P95,
        };
        let by = get("by").map(parse_rank).transpose()?.unwrap_or(default_rank);
        let group = match get("group") {
            None | Some("transaction") => Group::Transaction,
            Some("feature") => Group::Feature,
            Some(other) => return Err(invalid(format!("`group={other}`: write `transaction` or `feature`"))),
        };
        let step = match get("step") {
            None | Some("auto") => None,
            Some("minute") => Some(Step::Minute),
            Some("hour") => Some(Step::Hour),
            Some("day") => Some(Step::Day),
            Some(other) => return Err(invalid(format!("`step={other}`: write `minute`, `hour` or `day`"))),
        };
        let limit = number::<usize>(get("limit"), "limit", "a count of rows such as 20")?.unwrap_or(DEFAULT_LIMIT);
        let traces = number::<usize>(get("traces"), "traces", "a count such as 5")?.unwrap_or(DEFAULT_TRACES);

        let defaults = RegressionRule::default();
        let rule = RegressionRule {
            p_value: number::<f64>(get("p_value"), "p_value", "a probability such as 0.01")?
                .map(|p| in_range(p, "p_value", p > 0.0 && p <= 1.0, "above 0 and at most 1"))
                .transpose()?
                .unwrap_or(defaults.p_value),
            min_change: number::<f64>(get("min_change"), "min_change", "a fraction such as 0.1 (10%)")?
                .map(|c| in_range(c, "min_change", c >= 0.0 && c.is_finite(), "0 or more"))
                .transpose()?
                .unwrap_or(defaults.min_change),
            min_count: number::<u64>(get("min_count"), "min_count", "a count of runs such as 100")?
                .unwrap_or(defaults.min_count),
        };
        let include = parse_include(get("include"))?;
        let since_deploy = get("compare") == Some("deploy");
        if since_deploy {
            if question != Question::Regressions {
                return Err(invalid(
                    "`compare=deploy` (--since-deploy) is for regressions".to_owned(),
                ));
            }
            if scope.service.is_none() {
                return Err(invalid(
                    "`compare=deploy` (--since-deploy) needs `service`: whose deploy to compare around".to_owned(),
                ));
            }
            if get("baseline_since").is_some() || get("baseline_until").is_some() {
                return Err(invalid(
                    "give either `compare` or `baseline_since`/`baseline_until`, not both".to_owned(),
                ));
            }
        }
        let baseline = baseline(
            &scope,
            get("compare").filter(|c| *c != "deploy"),
            get("baseline_since"),
            get("baseline_until"),
            now_minute,
        )?;
        let explain = match get("explain") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => return Err(invalid(format!("`explain={other}`: write `true` or `false`"))),
        };
        let format = match get("format") {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("table") => Format::Table,
            Some(other) => return Err(invalid(format!("`format={other}`: write `json` or `csv`"))),
        };
        let partial = scope.to > now_minute;
        Ok(Query {
            question,
            scope,
            by,
            group,
            step,
            limit,
            rule,
            include,
            baseline,
            since_deploy,
            traces,
            explain,
            format,
            partial,
        })
    }

    /// Asks the question. Blocking: the store is read synchronously.
    pub fn answer(&self, analysis: &Analysis<'_>) -> Result<serde_json::Value, QueryError> {
        let scope = &self.scope;
        let value = match self.question {
            Question::Slowest | Question::Consumers => {
                let mut value = json(&analysis.slowest_grouped(scope, self.group, self.by, self.limit)?);
                // Each transaction's shape against its peers' typical one.
                if self.group == Group::Transaction {
                    let shapes = analysis.shapes(scope)?;
                    let rows = value.get_mut("rows").and_then(serde_json::Value::as_array_mut);
                    for row in rows.into_iter().flatten() {
                        let id = |key: &str| {
                            row.get(key)
                                .and_then(serde_json::Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        if let (Some(shape), Some(object)) =
                            (shapes.get(&(id("service"), id("transaction"))), row.as_object_mut())
                        {
                            object.insert("shape".to_owned(), json(shape));
                        }
                    }
                }
                value
            }
            Question::Timeseries => {
                let mut answer = analysis.timeseries(scope, self.group, self.step)?;
                let total_series = answer.series.len();
                keep_busiest(&mut answer.series, self.limit);
                let mut value = json(&answer);
                if let Some(object) = value.as_object_mut() {
                    object.insert("total_series".to_owned(), total_series.into());
                }
                value
            }
            Question::Breakdown => {
                // Checked in `parse`.
                let service = scope.service.as_deref().unwrap_or_default();
                let transaction = scope.transaction.as_deref().unwrap_or_default();
                let mut breakdown = analysis.breakdown(scope, service, transaction, self.traces)?;
                breakdown.segments.truncate(self.limit);
                json(&breakdown)
            }
            Question::Regressions => {
                let group = match self.group {
                    Group::Transaction => regressions::Group::Transaction,
                    Group::Feature => regressions::Group::Feature,
                };
                // Since the latest deploy: the window from it, against as
                // long a window before it.
                let deployed = match self.since_deploy {
                    true => {
                        let Some(deploy) = analysis.latest_deploy(scope)? else {
                            return Err(invalid(format!(
                                "no deploy of {} is recorded: a deploy is a new `service.version` resource attribute in what the service sends",
                                scope.service.as_deref().unwrap_or_default()
                            )));
                        };
                        let mut query = self.clone();
                        query.scope.from = deploy.minute;
                        query.baseline = Scope {
                            from: deploy.minute - (scope.to - deploy.minute),
                            to: deploy.minute,
                            ..scope.clone()
                        };
                        Some((query, deploy))
                    }
                    false => None,
                };
                let query = deployed.as_ref().map_or(self, |(query, _)| query);
                // Explained: the rows shown (every row of a named transaction is).
                let explained = if self.explain { self.limit } else { 0 };
                let mut comparison =
                    analysis.compare_explained(&query.scope, &query.baseline, &self.rule, group, explained)?;
                // Each finding shown carries its cause.
                let shown = self.limit.min(comparison.regressions.len());
                analysis.attribute_rows(&query.scope, &query.baseline, &mut comparison.regressions[..shown])?;
                if self.include.improvements {
                    let shown = self.limit.min(comparison.improvements.len());
                    analysis.attribute_rows(&query.scope, &query.baseline, &mut comparison.improvements[..shown])?;
                }
                let mut value = json(&RegressionsAnswer::new(query, comparison));
                if let (Some((_, deploy)), Some(object)) = (&deployed, value.as_object_mut()) {
                    object.insert("deploy".to_owned(), json(deploy));
                }
                value
            }
            Question::Errors => {
                let mut groups = analysis.errors_against(scope, &self.baseline)?;
                let total_groups = groups.len();
                groups.truncate(self.limit);
                json(&ErrorsAnswer {
                    scope: scope.clone(),
                    baseline: self.baseline.clone(),
                    groups,
                    total_groups,
                })
            }
            Question::Problems => {
                let mut problems = analysis.problems(scope)?;
                let total_groups = problems.groups.len();
                problems.groups.truncate(self.limit);
                json(&ProblemsAnswer { total_groups, problems })
            }
            Question::Apdex => {
                let mut rows = analysis.apdex(scope, self.group)?;
                let total_rows = rows.len();
                rows.truncate(self.limit);
                json(&ApdexAnswer {
                    scope: scope.clone(),
                    group: self.group,
                    estimated: rows.iter().any(|r| r.estimated),
                    rows,
                    total_rows,
                })
            }
        };
        Ok(self.with_partial_flag(value))
    }

    /// `answer` with `partial_last_minute`: whether its window's last minute
    /// is the current one, whose data is still arriving.
    fn with_partial_flag(&self, mut answer: serde_json::Value) -> serde_json::Value {
        if let Some(object) = answer.as_object_mut() {
            object.insert("partial_last_minute".to_owned(), serde_json::Value::Bool(self.partial));
        }
        answer
    }
}

/// Keeps the `limit` series with the most runs, in their order: a window
/// of thousands of transactions would otherwise answer a line for each
/// (200,000 services made gigabytes of points).
fn keep_busiest(series: &mut Vec<crate::analysis::timeseries::Series>, limit: usize) {
    if series.len() <= limit {
        return;
    }
    let runs = |s: &crate::analysis::timeseries::Series| s.points.iter().map(|p| p.count).sum::<u64>();
    let mut ranked: Vec<(u64, usize)> = series.iter().enumerate().map(|(i, s)| (runs(s), i)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut keep = vec![false; series.len()];
    for &(_, i) in ranked.iter().take(limit) {
        keep[i] = true;
    }
    let mut index = 0;
    series.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

/// `value` as JSON; the analysis' types hold only strings, numbers, options
/// and lists, so this cannot fail (a non-finite number becomes `null`).
fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn invalid(message: String) -> QueryError {
    QueryError::Invalid(message)
}

fn number<T: std::str::FromStr>(value: Option<&str>, key: &str, expected: &str) -> Result<Option<T>, QueryError> {
    value
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| invalid(format!("`{key}={v}` is not a number: write {expected}")))
        })
        .transpose()
}

fn in_range(value: f64, key: &str, fits: bool, range: &str) -> Result<f64, QueryError> {
    if fits {
        Ok(value)
    } else {
        Err(invalid(format!("`{key}={value}` is out of range: it must be {range}")))
    }
}

fn parse_rank(text: &str) -> Result<Rank, QueryError> {
    Ok(match text {
        "p50" | "median" => Rank::P50,
        "p95" => Rank::P95,
        "p99" => Rank::P99,
        "average" | "mean" => Rank::Average,
        "apdex" => Rank::Apdex,
        "time" | "time_consumed" => Rank::TimeConsumed,
        other => {
            return Err(invalid(format!(
                "`by={other}`: write p50, p95, p99, average, apdex or time (time consumed)"
            )))
        }
    })
}

fn parse_include(text: Option<&str>) -> Result<Include, QueryError> {
    let mut include = Include::default();
    for part in text
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part {
            "improvements" => include.improvements = true,
            "too_little_traffic" => include.too_little_traffic = true,
            "all" => {
                include.improvements = true;
                include.too_little_traffic = true;
            }
            other => {
                return Err(invalid(format!(
                    "`include={other}`: write improvements, too_little_traffic or all (comma-separated)"
                )))
            }
        }
    }
    Ok(include)
}

/// The window errors are compared with: `baseline_since`..`baseline_until`
/// when given, else `compare=previous` (the window just before, default) or
/// `compare=week` (the same window a week earlier).
fn baseline(
    scope: &Scope,
    compare: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    now_minute: i64,
) -> Result<Scope, QueryError> {
    match (since, until, compare) {
        (Some(since), until, None) => {
            let (from, to) = parse_window(since, until, now_minute)?;
            Ok(Scope { from, to, ..scope.clone() })
        }
        (None, Some(until), _) => {
            // Checked only to say what is missing.
            parse_time(until, now_minute)?;
            Err(invalid("`baseline_until` needs `baseline_since`".to_owned()))
        }
        (Some(_), _, Some(_)) => Err(invalid(
            "give either `compare` or `baseline_since`/`baseline_until`, not both".to_owned(),
        )),
        (None, None, None | Some("previous")) => Ok(scope.previous()),
        (None, None, Some("week")) => Ok(Scope {
            from: scope.from - regressions::WEEK_MINUTES,
            to: scope.to - regressions::WEEK_MINUTES,
            ..scope.clone()
        }),
        (None, None, Some(other)) => Err(invalid(format!(
            "`compare={other}`: write `previous` (the window just before), `week` (the same window a week earlier) or, for regressions of a service, `deploy` (since its latest deploy), or give baseline_since and baseline_until"
        ))),
    }
}

/// `GET /api/v1/errors`.
#[derive(Serialize)]
struct ErrorsAnswer {
    scope: Scope,
    baseline: Scope,
    groups: Vec<ErrorGroup>,
    total_groups: usize,
}

/// `GET /api/v1/problems`.
#[derive(Serialize)]
struct ProblemsAnswer {
    #[serde(flatten)]
    problems: Problems,
    total_groups: usize,
}

/// `GET /api/v1/apdex`.
#[derive(Serialize)]
struct ApdexAnswer {
    scope: Scope,
    group: Group,
    rows: Vec<ApdexRow>,
    total_rows: usize,
    estimated: bool,
}

/// `GET /api/v1/regressions`: the comparison, flattened for JSON and CSV.
#[derive(Serialize)]
struct RegressionsAnswer {
    scope: Scope,
    previous: Scope,
    group: Group,
    rule: Rule,
    counts: Counts,
    /// How much of each window holds data.
    coverage: Coverage,
    /// Set when the windows cannot be compared ("Not enough baseline: …"):
    /// nothing is judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_enough_baseline: Option<String>,
    regressions: Vec<Judged>,
    #[serde(skip_serializing_if = "Option::is_none")]
    improvements: Option<Vec<Judged>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    too_little_traffic: Option<Vec<Judged>>,
    /// Judged unchanged: listed when a transaction is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged: Option<Vec<Judged>>,
}

#[derive(Serialize)]
struct Rule {
    p_value: f64,
    min_change: f64,
    min_count: u64,
}

#[derive(Serialize)]
struct Counts {
    regressions: usize,
    improvements: usize,
    too_little_traffic: usize,
    unchanged: usize,
    not_judged: usize,
}

/// One judged transaction or feature.
#[derive(Serialize)]
struct Judged {
    service: String,
    transaction: String,
    feature: Option<String>,
    environment: String,
    team: Option<String>,
    outcome: &'static str,
    trigger: Option<TriggerJson>,
    p50: Change2,
    p95: Change2,
    p99: Change2,
    mean: Change2,
    previous_count: u64,
    current_count: u64,
    impact_seconds: f64,
    estimated: bool,
    /// Where the change most likely began (unix minutes), for a regression
    /// or improvement that began inside the window.
    began_minute: Option<i64>,
    /// Why it changed (regressions and improvements shown): the cause, or
    /// "no single cause".
    cause: Option<CauseJson>,
    /// With `explain=true`: the tests and the whole decomposition.
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Explain>,
}

/// A finding's cause ([`crate::analysis::attribution`]).
#[derive(Serialize)]
struct CauseJson {
    /// "`SELECT orders` +31 ms per run, 84% of the change (78% to 90%), on all hosts".
    summary: String,
    /// The same, short: "`SELECT orders` +31 ms/run (84%), all hosts".
    headline: String,
    /// Whether one part explains most of the change.
    found: bool,
    /// The change of mean time per run that is decomposed, seconds.
    change_seconds_per_run: f64,
    /// The part and where it happened, when found.
    #[serde(flatten)]
    cause: Option<Cause>,
}

/// `explain=true`: how a row was judged and what its change is made of.
#[derive(Serialize)]
struct Explain {
    /// Why it was or was not called, in words: "not called: p95 +3.1% (…), q = 0.410, not below 0.01".
    reason: String,
    /// Both periods' runs and where they lie.
    distributions: Distributions,
    statistics: Statistics,
    attribution: Option<Attribution>,
}

/// Both periods' runs: counts, percentiles, mean and a coarse histogram.
#[derive(Serialize)]
struct Distributions {
    /// Where the bands are cut, seconds: the baseline's p50, p95 and p99;
    /// `null` when the baseline has no runs (or the row was not explained).
    band_edges: Option<[f64; 3]>,
    current: Distribution,
    previous: Distribution,
}

/// One period's runs.
#[derive(Serialize)]
struct Distribution {
    runs: u64,
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    /// Shares of the runs at or below the first band edge, between each
    /// two, and above the last.
    bands: Option<[f64; 4]>,
}

/// The blocks and each metric's test.
#[derive(Serialize)]
struct Statistics {
    /// Length of a block, minutes.
    block_minutes: i64,
    /// Blocks with runs in the current window; `None` when not compared.
    current_blocks: Option<usize>,
    /// Blocks with runs in the baseline.
    previous_blocks: Option<usize>,
    /// Width of the time-of-day strata, hours (24: none).
    stratum_hours: Option<i64>,
    /// Not compared block by block: the share of each window's runs in times
    /// of day both hold, `[current, previous]`.
    shared_runs: Option<[f64; 2]>,
    /// How many tests' p-values were adjusted together (Benjamini–Hochberg).
    tests_adjusted: usize,
    /// Each metric's test, in the order p50, p95, p99, mean; untested ones left out.
    tests: Vec<TestJson>,
}

#[derive(Serialize)]
struct TestJson {
    metric: String,
    test: String,
    relative: Option<f64>,
    statistic: f64,
    degrees_of_freedom: f64,
    p_value: f64,
    q_value: f64,
    /// Share test: share of runs above the edge, current then previous.
    shares_above: Option<(f64, f64)>,
    /// The interval for the relative change (at the calls' level when q is
    /// below the threshold, else at 1 − threshold).
    interval: Option<IntervalJson>,
    /// Share test: the bucket edge compared, seconds.
    edge_seconds: Option<f64>,
    /// Share test: the buckets' relative width there (0.0054 is 0.54%).
    resolution: Option<f64>,
    /// Per block with runs, the value the test compares (mean seconds, or
    /// share of runs above the edge): smallest, median, largest.
    per_block: Option<PerBlock>,
    /// The test of the rule it stopped at: not_significant, no_interval,
    /// direction, small, unresolved or passed.
    gate: &'static str,
    /// Why, in words.
    reason: String,
}

#[derive(Serialize)]
struct IntervalJson {
    low: f64,
    /// `null` when the buckets bound it from below only.
    high: Option<f64>,
    confidence: f64,
}

#[derive(Serialize)]
struct PerBlock {
    current: SpreadJson,
    previous: SpreadJson,
}

#[derive(Serialize)]
struct SpreadJson {
    min: f64,
    median: f64,
    max: f64,
}

impl From<stats::Spread> for SpreadJson {
    fn from(spread: stats::Spread) -> Self {
        SpreadJson {
            min: spread.min,
            median: spread.median,
            max: spread.max,
        }
    }
}

/// What a row's `explain` is computed from besides the row.
#[derive(Clone, Copy)]
struct Context<'a> {
    rule: &'a RegressionRule,
    block_minutes: i64,
    tests_adjusted: usize,
}

fn explanation(row: &RegressionRow, attribution: Option<Attribution>, context: Context<'_>) -> Explain {
    let verdict = &row.verdict;
    let explained = row.explanation.as_deref();
    let bands = explained.and_then(|e| e.bands);
    let distribution = |side: fn(&Change) -> f64, runs: u64, bands: Option<[f64; 4]>| Distribution {
        runs,
        p50: side(&verdict.changes.p50),
        p95: side(&verdict.changes.p95),
        p99: side(&verdict.changes.p99),
        mean: side(&verdict.changes.mean),
        bands,
    };
    let reasons = stats::metric_reasons(verdict, context.rule, explained);
    let tests = reasons
        .into_iter()
        .filter_map(|(metric, gate, reason)| {
            let t = verdict.tests.get(metric)?;
            let detail = explained.and_then(|e| e.metric(metric));
            Some(TestJson {
                metric: metric.to_string(),
                test: t.test.to_string(),
                relative: verdict.changes.get(metric).relative,
                statistic: t.statistic,
                degrees_of_freedom: t.degrees_of_freedom,
                p_value: t.p_value,
                q_value: t.q_value,
                shares_above: t.shares_above,
                interval: t.interval.or(detail.and_then(|d| d.interval)).map(|i| IntervalJson {
                    low: i.low,
                    high: i.high.is_finite().then_some(i.high),
                    confidence: i.confidence,
                }),
                edge_seconds: detail.and_then(|d| d.edge),
                resolution: detail.and_then(|d| d.resolution),
                per_block: detail.map(|d| PerBlock {
                    current: d.per_block[0].into(),
                    previous: d.per_block[1].into(),
                }),
                gate: match gate {
                    stats::Gate::NotSignificant => "not_significant",
                    stats::Gate::NoInterval => "no_interval",
                    stats::Gate::Direction => "direction",
                    stats::Gate::Small => "small",
                    stats::Gate::Unresolved => "unresolved",
                    stats::Gate::Passed => "passed",
                },
                reason,
            })
        })
        .collect();
    Explain {
        reason: stats::reason(verdict, context.rule, explained),
        distributions: Distributions {
            band_edges: bands.map(|b| b.edges),
            current: distribution(|c| c.current, verdict.current_count, bands.map(|b| b.current)),
            previous: distribution(|c| c.previous, verdict.previous_count, bands.map(|b| b.previous)),
        },
        statistics: Statistics {
            block_minutes: context.block_minutes,
            current_blocks: verdict.design.map(|d| d.current_blocks),
            previous_blocks: verdict.design.map(|d| d.previous_blocks),
            stratum_hours: verdict.design.map(|d| d.stratum_hours),
            shared_runs: verdict.shared_runs,
            tests_adjusted: context.tests_adjusted,
            tests,
        },
        attribution,
    }
}

#[derive(Serialize)]
struct TriggerJson {
    metric: String,
    relative: f64,
    /// The interval for `relative`: its low end.
    low: f64,
    /// Its high end; `null` when the buckets bound it from below only.
    high: Option<f64>,
    test: String,
    p_value: f64,
    /// `p_value` adjusted by Benjamini–Hochberg across every test of the answer.
    q_value: f64,
    summary: String,
}

/// A metric in both periods (the analysis' [`Change`], serialisable).
#[derive(Serialize)]
struct Change2 {
    previous: f64,
    current: f64,
    relative: Option<f64>,
}

impl From<Change> for Change2 {
    fn from(change: Change) -> Self {
        Change2 {
            previous: change.previous,
            current: change.current,
            relative: change.relative,
        }
    }
}

impl RegressionsAnswer {
    fn new(query: &Query, comparison: Comparison) -> Self {
        let context = query.explain.then_some(Context {
            rule: &query.rule,
            block_minutes: comparison.coverage.block_minutes,
            tests_adjusted: comparison.tests,
        });
        let rows = |list: Vec<RegressionRow>| {
            list.into_iter()
                .take(query.limit)
                .map(|row| judged(row, context))
                .collect()
        };
        let counts = Counts {
            regressions: comparison.regressions.len(),
            improvements: comparison.improvements.len(),
            too_little_traffic: comparison.too_little_traffic.len(),
            unchanged: comparison.unchanged.len(),
            not_judged: comparison.not_judged,
        };
        // A named transaction is listed whatever its verdict.
        let named = query.scope.transaction.is_some() && query.group == Group::Transaction;
        RegressionsAnswer {
            scope: query.scope.clone(),
            previous: query.baseline.clone(),
            group: query.group,
            rule: Rule {
                p_value: query.rule.p_value,
                min_change: query.rule.min_change,
                min_count: query.rule.min_count,
            },
            counts,
            coverage: comparison.coverage,
            not_enough_baseline: comparison.coverage.shortfall(),
            regressions: rows(comparison.regressions),
            improvements: (query.include.improvements || named).then(|| rows(comparison.improvements)),
            too_little_traffic: (query.include.too_little_traffic || named)
                .then(|| rows(comparison.too_little_traffic)),
            unchanged: named.then(|| rows(comparison.unchanged)),
        }
    }
}

fn judged(mut row: RegressionRow, context: Option<Context<'_>>) -> Judged {
    let verdict = row.verdict;
    let attribution = row.attribution.take().map(|a| *a);
    Judged {
        cause: attribution.as_ref().map(|a| CauseJson {
            summary: a.summary.clone(),
            headline: a.headline.clone(),
            found: a.cause.is_some(),
            change_seconds_per_run: a.change,
            cause: a.cause.clone(),
        }),
        explain: context.map(|context| explanation(&row, attribution, context)),
        service: row.service,
        transaction: row.transaction,
        feature: row.feature,
        environment: row.environment,
        team: row.team,
        outcome: match verdict.outcome {
            Outcome::Regression => "regression",
            Outcome::Improvement => "improvement",
            Outcome::NoChange => "no_change",
            Outcome::TooLittleTraffic => "too_little_traffic",
        },
        trigger: verdict.trigger.map(|t| TriggerJson {
            metric: t.metric.to_string(),
            relative: t.relative,
            low: t.low,
            high: t.high.is_finite().then_some(t.high),
            test: t.test.to_string(),
            p_value: t.p_value,
            q_value: t.q_value,
            summary: t.to_string(),
        }),
        p50: verdict.changes.p50.into(),
        p95: verdict.changes.p95.into(),
        p99: verdict.changes.p99.into(),
        mean: verdict.changes.mean.into(),
        previous_count: verdict.previous_count,
        current_count: verdict.current_count,
        impact_seconds: verdict.impact_seconds,
        estimated: verdict.estimated,
        began_minute: verdict.began_minute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 29_000_000;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(question: Question, list: &[(&str, &str)]) -> Result<Query, QueryError> {
        Query::parse(question, &pairs(list), &Owners::empty(), NOW)
    }

    #[test]
    fn defaults_fit_the_question() {
        // A week of minutes, the last the current one (partial).
        let slowest = parse(Question::Slowest, &[]).unwrap();
        assert_eq!((slowest.scope.from, slowest.scope.to), (NOW + 1 - 7 * 1_440, NOW + 1));
        assert!(slowest.partial);
        assert_eq!((slowest.by, slowest.limit), (Rank::P95, DEFAULT_LIMIT));
        assert_eq!(parse(Question::Consumers, &[]).unwrap().by, Rank::TimeConsumed);
        let errors = parse(Question::Errors, &[]).unwrap();
        assert_eq!(errors.scope.from, NOW + 1 - 1_440, "a day of errors");
        assert_eq!(errors.baseline, errors.scope.previous());
        let week = parse(Question::Errors, &[("compare", "week")]).unwrap();
        assert_eq!(week.baseline.to, NOW + 1 - 7 * 1_440);
        let past = parse(Question::Slowest, &[("since", "2h"), ("until", "1h")]).unwrap();
        assert!(!past.partial, "a window that ended is whole");
        let blank = parse(Question::Slowest, &[("service", ""), ("by", "time")]).unwrap();
        assert_eq!((blank.scope.service, blank.by), (None, Rank::TimeConsumed));
    }

    #[test]
    fn mistakes_say_what_to_write() {
        let message = |list: &[(&str, &str)]| parse(Question::Slowest, list).unwrap_err().to_string();
        assert!(message(&[("since", "yesterday")]).contains("`yesterday` is not a time"));
        assert!(message(&[("by", "p42")]).contains("write p50, p95"));
        assert!(message(&[("limt", "5")]).contains("unknown parameter `limt`"));
        assert!(message(&[("limit", "five")]).contains("`limit=five` is not a number"));
        assert!(message(&[("team", "shop")]).contains("needs an owners file"));
        assert!(message(&[("host", "a"), ("host", "b")]).contains("given twice"));
        let breakdown = parse(Question::Breakdown, &[("service", "api")]).unwrap_err();
        assert!(breakdown.to_string().contains("give `service` and `transaction`"));
        assert!(breakdown.is_caller_mistake());
        let rule = parse(Question::Regressions, &[("p_value", "2")]).unwrap_err();
        assert!(rule.to_string().contains("out of range"), "{rule}");
    }
}
