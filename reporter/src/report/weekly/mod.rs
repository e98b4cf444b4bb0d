//! The weekly per-team performance report: a plain view model, and its
//! rendering as the HTML ([`render_html`], in `html.rs`) and plain-text
//! ([`render_text`], in `text.rs`) parts of an email.
//!
//! The view model ([`WeeklyReport`]) holds numbers already computed: the
//! analysis fills it, this module only lays it out, so rendering can be built
//! and tested apart from the analysis, and the same model serialises for the
//! web UI's API. Links are paths into the web UI (see [`ui_path`]), joined to
//! the report's `base_url` when rendered. Numbers are written by
//! [`crate::format`], as everywhere else.

mod html;
#[cfg(test)]
pub(crate) mod tests;
mod text;

use std::borrow::Cow;

use serde::Serialize;

use crate::format;

pub(crate) use html::render_html_with;
pub use html::{chart_alt, render_html};
pub use text::render_text;

/// One team's week, ready to render.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WeeklyReport {
    /// The team, as named in `owners.toml`.
    pub team: String,
    /// The team as shown to people: its `display_name` in `owners.toml`
    /// (e.g. `Search & Catalog`); empty for none, when [`Self::team`] is shown.
    pub team_name: String,
    /// The first day of the week, e.g. `2026-03-09`.
    pub week_start: String,
    /// The last day of the week, e.g. `2026-03-15`.
    pub week_end: String,
    /// The web UI's address, e.g. `https://kuroko.example.com`; item links are
    /// paths under it. Empty: the report has no links.
    pub base_url: String,
    /// The team's features, in the order to show them.
    pub features: Vec<FeatureRow>,
    /// The slowest endpoints (by p95), slowest first.
    pub slowest: Vec<EndpointRow>,
    /// The endpoints that took the most time in all (count × average), most first.
    pub consumers: Vec<EndpointRow>,
    /// The regressions found against last week, as the analysis ranks them.
    pub regressions: Vec<RegressionRow>,
    /// Why no regression could be called this week (e.g. "Not enough
    /// baseline: …", when the store holds too little of last week), shown in
    /// place of the list; `None` when the weeks were compared.
    pub regressions_note: Option<String>,
    /// New, growing and regressed error groups, as the analysis ranks
    /// them; none that someone ignored.
    pub errors: Vec<ErrorRow>,
    /// Error groups of the week that someone ignored: counted, not listed.
    pub ignored_groups: u64,
    /// Open performance problems of the team's transactions found in the
    /// week's kept traces, the most time a day first (at most
    /// [`TOP_PROBLEMS`]); none that someone resolved or ignored.
    pub problems: Vec<ProblemRow>,
    /// Open problems in all, listed or not.
    pub open_problems: u64,
    /// The request time they cost a day, all of them, seconds.
    pub open_problems_seconds_per_day: f64,
    /// Open problems not seen before this week, listed or not.
    pub new_problems: u64,
    /// The request time those cost a day, seconds.
    pub new_problems_seconds_per_day: f64,
    /// Set when the report goes out after its time: said in the subject and
    /// at the top.
    pub late: Option<super::late::Late>,
    /// Deploys of the team's services during the week (a new
    /// `service.version`), oldest first.
    pub deploys: Vec<DeployRow>,
}

/// A deploy of one of the team's services.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeployRow {
    /// The service.
    pub service: String,
    /// The version deployed.
    pub version: String,
    /// The version before it.
    pub previous_version: String,
    /// When it was first seen, in the report's time zone, e.g. `2026-11-30 12:20`.
    pub at: String,
    /// Path into the web UI; empty for none.
    pub link: String,
}

impl DeployRow {
    /// `shop-api 1.42.0 (after 1.41.0), first seen 2026-11-30 12:20`.
    pub fn text(&self) -> String {
        format!(
            "{} {} (after {}), first seen {}",
            clean(&self.service),
            clean(&self.version),
            clean(&self.previous_version),
            clean(&self.at)
        )
    }
}

/// One feature's week and its change against last week.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FeatureRow {
    /// The feature's name.
    pub name: String,
    /// Average duration over the week, in seconds.
    pub avg_s: f64,
    /// 95th percentile over the week, in seconds.
    pub p95_s: f64,
    /// Runs per minute over the week.
    pub throughput_per_min: f64,
    /// Apdex score (0–1); `None` when no threshold applies.
    pub apdex: Option<f64>,
    /// Relative change of the average against last week (0.31 = +31 %);
    /// `None` when last week had no runs.
    pub avg_change: Option<f64>,
    /// Relative change of the p95 against last week.
    pub p95_change: Option<f64>,
    /// Relative change of the throughput against last week.
    pub throughput_change: Option<f64>,
    /// Change of the Apdex score in points (0.94 → 0.91 is -0.03).
    pub apdex_change: Option<f64>,
    /// Daily values over the last 4–8 weeks, oldest first, for the chart.
    pub daily: Vec<DailyPoint>,
    /// The deploys of the services that run the feature's transactions
    /// within [`Self::daily`]'s days, oldest first: marked on its chart.
    pub deploys: Vec<ChartDeploy>,
    /// Its percentiles are estimates (an SDK's explicit buckets).
    pub estimated: bool,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A deploy on a feature's chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChartDeploy {
    /// The day it happened: an index into [`FeatureRow::daily`].
    pub day: usize,
    /// What was deployed, e.g. `shop-api 1.42.0`.
    pub label: String,
}

/// One day of a feature's chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DailyPoint {
    /// The day's label, e.g. `03-09` or `2026-03-09`.
    pub day: String,
    /// Average duration that day in seconds; `None` for a day without runs.
    pub avg_s: Option<f64>,
    /// 95th percentile that day in seconds; `None` for a day without runs.
    pub p95_s: Option<f64>,
}

/// One endpoint (transaction) of the team.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EndpointRow {
    /// The service that serves it.
    pub service: String,
    /// The transaction's name, e.g. `POST /pay`.
    pub transaction: String,
    /// The feature it belongs to, if tagged.
    pub feature: Option<String>,
    /// Runs this week.
    pub count: u64,
    /// Average duration in seconds.
    pub avg_s: f64,
    /// 95th percentile in seconds.
    pub p95_s: f64,
    /// 99th percentile in seconds.
    pub p99_s: f64,
    /// Its share (0–1) of the time spent by all the team's endpoints.
    pub share_of_time: f64,
    /// Its percentiles are estimates (an SDK's explicit buckets).
    pub estimated: bool,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A regression the analysis found significant.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegressionRow {
    /// The service that serves it.
    pub service: String,
    /// The transaction's name.
    pub transaction: String,
    /// The metric that regressed, e.g. `p95` or `avg`.
    pub metric: String,
    /// Last week's value, in seconds.
    pub before_s: f64,
    /// This week's value, in seconds.
    pub after_s: f64,
    /// Relative change (0.31 = +31 %).
    pub change: f64,
    /// The test's p-value.
    pub p_value: f64,
    /// The p-value adjusted for every comparison of the week (Benjamini–Hochberg).
    pub q_value: f64,
    /// The interval for the change, low end (0.09 = +9 %).
    pub change_low: f64,
    /// The interval's high end; `None` when the buckets bound it from below only.
    pub change_high: Option<f64>,
    /// The test's name, e.g. `Mann-Whitney U`.
    pub test: String,
    /// Extra time the regression cost this week, in seconds (runs × added time).
    pub impact_s: f64,
    /// Why: the part of the change of mean time per run that explains most
    /// of it ("`SELECT orders` +31 ms per run, 84% of the change (78% to
    /// 90%), on all hosts"), or "no single cause: …"; empty when unknown.
    pub cause: String,
    /// Path into the web UI; empty for none.
    pub link: String,
}

impl RegressionRow {
    /// The cause sentence: "p95 +38%: `SELECT orders` +31 ms per run, 84% of
    /// the change (78% to 90%), on all hosts"; empty without a cause.
    pub fn cause_text(&self) -> String {
        if self.cause.is_empty() {
            return String::new();
        }
        format!("{} {}: {}", self.metric, format::change(Some(self.change)), self.cause)
    }

    /// The change with its interval: `+12% (+9% to +15%)`.
    pub fn change_text(&self) -> String {
        format!(
            "{} ({})",
            format::change(Some(self.change)),
            crate::analysis::stats::interval_text(self.change_low, self.change_high.unwrap_or(f64::INFINITY))
        )
    }

    /// The evidence: `p < 0.001, q = 0.004`.
    pub fn significance_text(&self) -> String {
        format!("{}, {}", format::p_value(self.p_value), format::q_value(self.q_value))
    }
}

/// Performance problems a weekly report lists, at most.
pub const TOP_PROBLEMS: usize = 5;

/// An open performance problem (`crate::analysis::problems`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProblemRow {
    /// `N+1 queries`, `Sequential calls`…
    pub title: String,
    /// The normalised statement (empty for time outside segments).
    pub statement: String,
    /// The service.
    pub service: String,
    /// The transaction.
    pub transaction: String,
    /// Not seen in the kept traces before this week.
    pub new: bool,
    /// Spans per affected run (the N+1's count).
    pub count_per_run: f64,
    /// What it costs an affected run, seconds.
    pub cost_per_run_s: f64,
    /// Estimated request time it costs a day, seconds.
    pub seconds_per_day: f64,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A new or growing error group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ErrorRow {
    /// The group's title, e.g. the exception type and where it was raised.
    pub title: String,
    /// One message of the group.
    pub message: String,
    /// Occurrences this week.
    pub count: u64,
    /// Occurrences last week.
    pub previous_count: u64,
    /// Whether the group first appeared this week (never seen before in the
    /// store's retention).
    pub new: bool,
    /// Resolved by someone, and seen again since.
    pub regressed: bool,
    /// The team it is assigned to; empty for none.
    pub assigned_team: String,
    /// First seen ever (over the store's history), in the report's time
    /// zone, e.g. `2026-11-29 10:03`; empty when unknown.
    pub first_seen: String,
    /// Last seen, the same way.
    pub last_seen: String,
    /// Whether its rate per run grew significantly against last week, with
    /// enough occurrences ([`crate::analysis::stats::error_growing`]).
    pub growing: bool,
    /// The hosts that reported it, with their counts, most first.
    pub servers: Vec<ServerCount>,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A host and how often it reported an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerCount {
    /// The host's name.
    pub host: String,
    /// Occurrences on it.
    pub count: u64,
}

/// Longest error message shown, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// A web UI path: `route` (a fixed path such as `/transactions`) with
/// `params` percent-encoded as its query, for the rows' `link` fields.
pub(crate) fn ui_path(route: &str, params: &[(&str, &str)]) -> String {
    let mut path = route.to_owned();
    for (i, (key, value)) in params.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(&format::url_component(key));
        path.push('=');
        path.push_str(&format::url_component(value));
    }
    path
}

/// What `≈` means, under a report that shows one.
pub(crate) const ESTIMATE_NOTE: &str = "≈: an estimate, interpolated within the explicit bucket an OpenTelemetry SDK \
     sent; the true value lies in that bucket (counts, averages and error rates are exact).";

/// Whether the report shows an estimated percentile.
fn shows_estimates(report: &WeeklyReport) -> bool {
    report.features.iter().any(|f| f.estimated) || report.slowest.iter().chain(&report.consumers).any(|e| e.estimated)
}

/// User strings in plain text: control characters (a newline in a
/// transaction name) would break the layout, so they become spaces.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

fn is_growing(error: &ErrorRow) -> bool {
    !error.new && error.growing
}

/// `new`, `regressed`, `growing` or nothing: the mark an error row carries.
fn error_mark(error: &ErrorRow) -> Option<&'static str> {
    if error.new {
        Some("new")
    } else if error.regressed {
        Some("regressed")
    } else if is_growing(error) {
        Some("growing")
    } else {
        None
    }
}

/// `first seen 2026-11-29 10:03, last seen 2026-12-06 08:00`, as far as known.
fn seen_line(error: &ErrorRow) -> Option<String> {
    match (error.first_seen.is_empty(), error.last_seen.is_empty()) {
        (true, true) => None,
        (false, true) => Some(format!("first seen {}", clean(&error.first_seen))),
        (true, false) => Some(format!("last seen {}", clean(&error.last_seen))),
        (false, false) => Some(format!(
            "first seen {}, last seen {}",
            clean(&error.first_seen),
            clean(&error.last_seen)
        )),
    }
}

/// `2 ignored error groups are not listed.`, when there are some.
fn ignored_line(report: &WeeklyReport) -> Option<String> {
    (report.ignored_groups > 0).then(|| {
        format!(
            "{} ignored error {} not listed.",
            format::count(report.ignored_groups),
            if report.ignored_groups == 1 {
                "group is"
            } else {
                "groups are"
            }
        )
    })
}

/// The report's short summary, most important first: a busy reader can stop
/// after it. Plain strings (escape them for HTML).
pub fn summary(report: &WeeklyReport) -> Vec<String> {
    let mut lines = Vec::new();
    if report.features.is_empty() && report.slowest.is_empty() && report.consumers.is_empty() {
        lines.push("No runs recorded for this team this week.".to_owned());
    }
    let worst = report
        .regressions
        .iter()
        .max_by(|a, b| a.impact_s.total_cmp(&b.impact_s).then(a.change.total_cmp(&b.change)));
    match worst {
        None if report.regressions_note.is_some() => {
            lines.push("Regressions not judged: not enough baseline.".to_owned())
        }
        None => lines.push("No regressions found.".to_owned()),
        Some(w) => {
            let n = report.regressions.len();
            lines.push(format!(
                "{n} regression{}, worst: {} {} {} ({} → {}, {} more time this week)",
                if n == 1 { "" } else { "s" },
                clean(&w.transaction),
                w.metric,
                format::change(Some(w.change)),
                format::duration(w.before_s),
                format::duration(w.after_s),
                format::duration(w.impact_s),
            ));
        }
    }
    let largest_change = report
        .features
        .iter()
        .filter_map(|f| f.p95_change.filter(|c| c.is_finite()).map(|c| (f, c)))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    if let Some((feature, change)) = largest_change {
        lines.push(format!(
            "Largest feature change: {} p95 {} ({})",
            clean(&feature.name),
            format::change(Some(change)),
            format::duration(feature.p95_s)
        ));
    }
    if let Some(slowest) = report.slowest.first() {
        lines.push(format!(
            "Slowest: {} p95 {} ({})",
            clean(&slowest.transaction),
            format::duration(slowest.p95_s),
            clean(&slowest.service)
        ));
    }
    if let Some(top) = report.consumers.first() {
        lines.push(format!(
            "Most time: {}, {} of the team's time",
            clean(&top.transaction),
            format::percent(top.share_of_time)
        ));
    }
    if let Some(line) = problems_line(report) {
        lines.push(line);
    }
    let new = report.errors.iter().filter(|e| e.new).count();
    let growing = report.errors.iter().filter(|e| is_growing(e)).count();
    if new + growing == 0 {
        lines.push("No new or growing errors.".to_owned());
    } else {
        lines.push(format!(
            "Errors: {new} new group{}, {growing} growing",
            if new == 1 { "" } else { "s" }
        ));
    }
    lines
}

/// `3 new performance problems, costing 41 min of request time a day`; the
/// open ones when none is new; `None` when there is none.
fn problems_line(report: &WeeklyReport) -> Option<String> {
    let (n, what, cost) = if report.new_problems > 0 {
        (report.new_problems, "new", report.new_problems_seconds_per_day)
    } else if report.open_problems > 0 {
        (report.open_problems, "open", report.open_problems_seconds_per_day)
    } else {
        return None;
    };
    Some(format!(
        "{n} {what} performance problem{}, costing {} of request time a day",
        if n == 1 { "" } else { "s" },
        format::duration(cost)
    ))
}

impl WeeklyReport {
    /// The team's name for people: its display name, else its key.
    pub fn team_label(&self) -> &str {
        if self.team_name.is_empty() {
            &self.team
        } else {
            &self.team_name
        }
    }
}

/// The message's subject line.
pub fn subject(report: &WeeklyReport) -> String {
    let subject = format!(
        "Kuroko weekly: {}, {} to {}",
        clean(report.team_label()),
        clean(&report.week_start),
        clean(&report.week_end)
    );
    super::late::subject(report.late.as_ref(), subject)
}

/// The full URL of an item's link, when it has a usable one.
fn full_url(report: &WeeklyReport, link: &str) -> Option<String> {
    if report.base_url.is_empty() || !link.starts_with('/') || link.starts_with("//") {
        return None;
    }
    Some(format!("{}{link}", report.base_url.trim_end_matches('/')))
}
