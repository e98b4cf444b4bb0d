//! The pages themselves: each a function from the shared state, the page's
//! filters and the current minute to a whole HTML document, so tests render
//! them without a server.
//!
//! Each page asks [`Analysis`] its questions and
//! lays the answers out as tables and [`charts`]. Every section has an
//! anchor (`…#features`), and a JSON and a CSV link to the same question
//! under `/api/v1` with the same parameters (its window written out, so the
//! download is of exactly what is shown).
//!
//! One file per page (or pair of pages: a list and its detail); what several
//! pages share — the document around a page, the filter bar, sections with
//! their download links, changes and summary cells, the transactions table
//! and metric lines — is here, and each page module starts with `use
//! super::*` to use it.

mod dashboard;
mod errors;
mod feature;
mod overview;
mod problems;
mod regressions;
mod trace;
mod transaction;
mod why;

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup, DOCTYPE};

use super::charts::{self, Bin, Line, Unit};
use super::dashboards::{Chart, Dashboard, Dashboards, Metric, Panel, Source};
use super::pager::Pager;
use super::{PageError, Params};
use crate::analysis::endpoints::{Advice, EndpointRow, Group, Rank};
use crate::analysis::errors::ErrorGroup;
use crate::analysis::memo::Memo;
use crate::analysis::regressions::RegressionRow;
use crate::analysis::stats::{Change, RegressionRule};
use crate::analysis::timeseries::{Point, Series, Step, TimeSeries};
use crate::analysis::{Analysis, AnalysisError, Scope};
use crate::app::App;
use crate::format;
use crate::histogram::{bucket_bounds, Histogram};

pub use dashboard::{dashboard, dashboard_list};
pub use errors::{error_group, errors};
pub use feature::feature;
pub use overview::overview;
pub use problems::{problem_group, problems};
pub use regressions::regressions;
pub use trace::trace;
pub use transaction::{distribution, transaction};

/// The window of the overview, feature, transaction and errors pages when
/// the URL names none.
pub(crate) const DEFAULT_SINCE: &str = "1d";
/// The regressions page's default: this week against last.
pub(crate) const REGRESSIONS_SINCE: &str = "7d";
/// The window selector's choices.
pub(crate) const WINDOWS: [&str; 4] = ["1h", "1d", "7d", "30d"];
/// Kept traces shown on a transaction page.
pub const TRACES: usize = 5;

const RANKS: &str = "p50, p95, p99, average, apdex, time_consumed";
const STEPS: &str = "minute, hour, day";
/// The deploys of `scope`'s services in its window, as the markers every
/// chart of time draws (the transaction, feature and overview pages, and
/// dashboards' line panels).
fn deploy_markers(analysis: &Analysis<'_>, scope: &Scope) -> Result<Vec<charts::Marker>, AnalysisError> {
    Ok(analysis.deploys(scope)?.iter().map(charts::Marker::from).collect())
}

/// Filters the window form lets a reader type.
const EDITABLE: [&str; 3] = ["service", "environment", "team"];
/// Filters kept when following a link to another page.
const CARRIED: [&str; 6] = ["since", "until", "service", "host", "environment", "team"];

/// Which top-level page is shown, for the navigation bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    /// None of them (login, errors).
    None,
    /// The overview.
    Overview,
    /// Error groups.
    Errors,
    /// Performance problems.
    Problems,
    /// Regressions.
    Regressions,
    /// Dashboards.
    Dashboards,
    /// The agents' health.
    Health,
}

/// A whole HTML document: the navigation bar, `title` and `body`.
pub fn document(title: &str, nav: Nav, body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(nav == target).then_some("active")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kuroko" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/static/ui.css";
                script src="/static/ui.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Kuroko" }
                    nav {
                        (item(Nav::Overview, "/", "Overview"))
                        (item(Nav::Errors, "/errors", "Errors"))
                        (item(Nav::Problems, "/problems", "Problems"))
                        (item(Nav::Regressions, "/regressions", "Regressions"))
                        (item(Nav::Dashboards, "/dashboards", "Dashboards"))
                        (item(Nav::Health, "/health", "Agents"))
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The window selector (1h, 1d, 7d, 30d), a form for a custom window and
/// the `editable` filters, and the filters in force, each removable.
fn filter_bar(path: &str, params: &Params, default_since: Option<&str>, editable: &[&str]) -> Markup {
    let since = params.get("since").or(default_since);
    let until = params.get("until");
    html! {
        div.filters {
            nav.windows aria-label="window" {
                @for window in WINDOWS {
                    a href=(params.with("since", Some(window)).with("until", None).href(path)) data-window=(window)
                        class=[(since == Some(window) && until.is_none()).then_some("active")] { (window) }
                }
            }
            form.custom method="get" action=(path) {
                label { "since " input name="since" value=[since] placeholder="per panel" size="10"; }
                label { "until " input name="until" value=[until] placeholder="now" size="10"; }
                @for key in editable {
                    label { (key) " " input name=(key) value=[params.get(key)] size="12"; }
                }
                @for (key, value) in params.pairs() {
                    @if key != "since" && key != "until" && !editable.contains(&key) {
                        input type="hidden" name=(key) value=(value);
                    }
                }
                button type="submit" { "Apply" }
            }
            @if until.is_none() {
                p.partial-note { "The last minute is still arriving: its numbers are partial." }
            }
            (refresh_toggle(until.is_none()))
            @let chips: Vec<(&str, &str)> = params.pairs().filter(|(k, _)| editable.contains(k) || *k == "host").collect();
            @if !chips.is_empty() {
                div.chips {
                    @for (key, value) in chips {
                        span.chip data-filter=(key) {
                            (key) ": " strong { (value) } " "
                            a href=(params.with(key, None).href(path)) title=(format!("remove the {key} filter")) { "×" }
                        }
                    }
                }
            }
        }
    }
}

/// How often a page whose window ends now reloads itself, in seconds.
pub(crate) const REFRESH_SECONDS: u32 = 60;

/// The auto-refresh of a `live` window (one that ends now): a toggle,
/// "auto-refresh: on", that `ui.js` acts on — it reloads the page every
/// [`REFRESH_SECONDS`] unless the reader turned it off (remembered for the
/// tab). A window that ended has nothing new to show: it says so, and
/// nothing reloads it.
fn refresh_toggle(live: bool) -> Markup {
    html! {
        @if live {
            p.refresh data-refresh=(REFRESH_SECONDS) {
                button type="button" aria-pressed="true" title="reload this page every minute while its window ends now" {
                    "auto-refresh: on"
                }
            }
        } @else {
            p.refresh.off { "auto-refresh: off (this window has ended)" }
        }
    }
}

/// A titled section with a link to itself and, for `api`, JSON and CSV
/// downloads of the same question.
fn section(id: &str, title: &str, page: &str, api: Option<(&str, &Params)>, body: Markup) -> Markup {
    html! {
        section.panel id=(id) {
            header {
                h2 { (title) }
                span.links {
                    a href=(format!("{page}#{id}")) title="a link to this, with its filters" { "link" }
                    @if let Some((question, params)) = api {
                        " · " a href=(api_href(question, params, "json")) data-download="json" { "JSON" }
                        " · " a href=(api_href(question, params, "csv")) data-download="csv" { "CSV" }
                    }
                }
            }
            (body)
        }
    }
}

/// `/api/v1/{question}` with `params` and `format`.
fn api_href(question: &str, params: &Params, format: &str) -> String {
    let query = params.query();
    let join = if query.is_empty() { "" } else { "&" };
    format!("/api/v1/{question}?{query}{join}format={format}")
}

/// The parameters of a download: the page's, with its window written out.
fn api_params(params: &Params, default_since: &str) -> Params {
    let since = params.get("since").unwrap_or(default_since).to_owned();
    params.with("since", Some(&since))
}

/// How a change of a metric reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sense {
    /// Up is bad (latency, errors).
    HigherIsWorse,
    /// Neither (throughput).
    Neutral,
}

/// A relative change as a small note, coloured by `sense` when 5% or more.
fn delta(change: Option<f64>, sense: Sense) -> Markup {
    let class = match change {
        Some(c) if c.abs() >= 0.05 && sense != Sense::Neutral => {
            if c > 0.0 {
                "delta worse"
            } else {
                "delta better"
            }
        }
        _ => "delta",
    };
    html! { small class=(class) { (format::change(change)) } }
}

/// A difference of two fractions (× `scale`, in `unit`) as a small coloured
/// note; differences under `neutral` are not coloured.
fn delta_points(now: Option<f64>, before: Option<f64>, higher_is_worse: bool, scale: f64, unit: &str) -> Markup {
    let Some(diff) = now.zip(before).map(|(a, b)| (a - b) * scale) else {
        return html! { small.delta { "–" } };
    };
    let class = if diff.abs() < 0.01 {
        "delta"
    } else if (diff > 0.0) == higher_is_worse {
        "delta worse"
    } else {
        "delta better"
    };
    html! { small class=(class) { (format!("{diff:+.2}{unit}")) } }
}

fn relative(now: f64, before: Option<f64>) -> Option<f64> {
    before.filter(|b| *b > 0.0).map(|b| now / b - 1.0)
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| format::NONE.to_owned(), format::percent)
}

/// The numbers a row of the overview shows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Summary {
    runs: u64,
    mean: f64,
    p95: f64,
    throughput: f64,
    error_rate: Option<f64>,
    apdex: Option<f64>,
    /// Percentiles read from explicit buckets: estimates.
    estimated: bool,
}

impl From<&EndpointRow> for Summary {
    fn from(row: &EndpointRow) -> Self {
        Summary {
            runs: row.count,
            mean: row.mean,
            p95: row.p95,
            throughput: row.throughput,
            error_rate: row.error_rate,
            apdex: row.apdex,
            estimated: row.estimated,
        }
    }
}

/// A percentile as a cell shows it: marked `≈` when it is an estimate.
fn percentile_text(seconds: f64, estimated: bool) -> Markup {
    html! {
        @if estimated {
            span.estimate title=(ESTIMATE_TITLE) { "≈" } (format::duration(seconds))
        } @else {
            (format::duration(seconds))
        }
    }
}

/// What the `≈` mark means.
const ESTIMATE_TITLE: &str = "an estimate: interpolated within the explicit bucket an OpenTelemetry SDK sent, \
     so the true value lies in that bucket (exponential buckets are within 1%)";

/// The note under a table that holds estimates, and what the senders should
/// change in their instrumentation.
fn estimates_note(estimated: bool, advice: &[Advice]) -> Markup {
    html! {
        @if estimated {
            p.note { "≈: " (ESTIMATE_TITLE) "." }
        }
        @for a in advice {
            p.note.advice data-advice=(a.problem) {
                strong { "To fix in " (a.service) " (" (a.transactions.join(", ")) "): " }
                (format::count(a.runs.round() as u64)) " runs " (a.message) "."
            }
        }
    }
}

/// The summary cells of a row; with `before`, each with its change against
/// that (`Some(None)`: the row is new).
fn summary_cells(now: &Summary, before: Option<Option<&Summary>>) -> Markup {
    let Some(before) = before else {
        return html! {
            td.num { (format::count(now.runs)) }
            td.num { (format::duration(now.mean)) }
            td.num data-metric="p95" { (percentile_text(now.p95, now.estimated)) }
            td.num { (format::rate(now.throughput)) }
            td.num { (ratio_text(now.error_rate)) }
            td.num { (format::apdex(now.apdex)) }
        };
    };
    html! {
        td.num { (format::count(now.runs)) }
        td.num { (format::duration(now.mean)) br; (delta(relative(now.mean, before.map(|b| b.mean)), Sense::HigherIsWorse)) }
        td.num data-metric="p95" { (percentile_text(now.p95, now.estimated)) br; (delta(relative(now.p95, before.map(|b| b.p95)), Sense::HigherIsWorse)) }
        td.num { (format::rate(now.throughput)) br; (delta(relative(now.throughput, before.map(|b| b.throughput)), Sense::Neutral)) }
        td.num { (ratio_text(now.error_rate)) br; (delta_points(now.error_rate, before.and_then(|b| b.error_rate), true, 100.0, " pt")) }
        td.num { (format::apdex(now.apdex)) br; (delta_points(now.apdex, before.and_then(|b| b.apdex), false, 1.0, "")) }
    }
}

const SUMMARY_HEADS: [&str; 6] = ["Runs", "Average", "p95", "Throughput", "Error rate", "Apdex"];

/// `/transactions?service=…&transaction=…` with `carried` filters.
fn transaction_href(carried: &Params, service: &str, transaction: &str) -> String {
    carried
        .with("service", Some(service))
        .with("transaction", Some(transaction))
        .href("/transactions")
}

/// A table of transaction rows, with changes when `before` is given.
/// The page of the whole request `trace_id` across services
/// (`/traces/{id}`), its window the hours around `start` (unix ns).
fn trace_href(trace_id: &str, start: u64) -> String {
    let minute = i64::try_from(start / 60_000_000_000).unwrap_or(0);
    let at = |minute: i64| {
        jiff::Timestamp::from_second(minute.saturating_mul(60))
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    format!(
        "/traces/{}?since={}&until={}",
        format::url_component(trace_id),
        format::url_component(&at(minute - 60)),
        format::url_component(&at(minute + 61))
    )
}

fn transactions_table(
    rows: &[EndpointRow],
    carried: &Params,
    before: Option<&HashMap<(&str, &str), Summary>>,
) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "No runs in this window." } } @else {
            table.rows.transactions {
                thead { tr {
                    th { "Service" } th { "Transaction" } th { "Feature" }
                    @for h in SUMMARY_HEADS { th.num { (h) } }
                    th.num { "p99" } th.num { "Time consumed" }
                } }
                tbody {
                    @for row in rows {
                        tr data-transaction=(row.transaction) data-service=(row.service) {
                            td { (row.service) }
                            td.name { a href=(transaction_href(carried, &row.service, &row.transaction)) { (row.transaction) } }
                            td { (row.feature.as_deref().unwrap_or("–")) }
                            (summary_cells(&Summary::from(row), before.map(|b| b.get(&(row.service.as_str(), row.transaction.as_str())))))
                            td.num { (percentile_text(row.p99, row.estimated)) }
                            td.num { (format::duration(row.total_seconds)) br; small { (format::percent(row.share)) " of its service" } }
                        }
                    }
                }
            }
        }
    }
}

/// A metric's value at a point of a time series.
fn point_value(point: &Point, metric: Metric) -> Option<f64> {
    match metric {
        Metric::P50 => point.p50,
        Metric::P95 => point.p95,
        Metric::P99 => point.p99,
        Metric::Average => point.mean,
        Metric::Throughput => Some(point.throughput),
        Metric::ErrorRate => point.error_rate,
        Metric::Apdex => None,
    }
}

fn unit_of(metric: Metric) -> Unit {
    match metric {
        Metric::Throughput => Unit::PerMinute,
        Metric::ErrorRate => Unit::Ratio,
        Metric::Apdex => Unit::Number,
        _ => Unit::Seconds,
    }
}

/// One line per metric of one series' points.
fn metric_lines(points: &[Point], metrics: &[Metric]) -> Vec<Line> {
    metrics
        .iter()
        .enumerate()
        .map(|(i, &metric)| Line {
            key: metric.name().to_owned(),
            label: metric.name().replace('_', " "),
            points: points.iter().map(|p| (p.minute, point_value(p, metric))).collect(),
            colour: i,
        })
        .collect()
}
