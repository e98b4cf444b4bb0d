//! The pages themselves: each a function from the shared state, the page's
//! filters and the current minute to a whole HTML document, so tests render
//! them without a server.
//!
//! Each page asks [`Analysis`](crate::analysis::Analysis) its questions and
//! lays the answers out as tables and [`charts`]. Every section has an
//! anchor (`…#features`), and a JSON and a CSV link to the same question
//! under `/api/v1` with the same parameters (its window written out, so the
//! download is of exactly what is shown).

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup, DOCTYPE};

use super::charts::{self, Bin, Line, Unit};
use super::dashboards::{Chart, Dashboard, Dashboards, Metric, Panel, Source};
use super::pager::Pager;
use super::{PageError, Params};
use crate::analysis::endpoints::{Advice, EndpointRow, Group, Rank};
use crate::analysis::errors::ErrorGroup;
use crate::analysis::memo::Memo;
use crate::analysis::regressions::{self, RegressionRow};
use crate::analysis::stats::{Change, RegressionRule};
use crate::analysis::timeseries::{Point, Step, TimeSeries};
use crate::analysis::{Analysis, AnalysisError, Scope};
use crate::app::App;
use crate::format;
use crate::histogram::{bucket_bounds, Histogram};

/// The window of the overview, feature, transaction and errors pages when
/// the URL names none.
pub const DEFAULT_SINCE: &str = "1d";
/// The regressions page's default: this week against last.
pub const REGRESSIONS_SINCE: &str = "7d";
/// The window selector's choices.
pub const WINDOWS: [&str; 4] = ["1h", "1d", "7d", "30d"];
/// Kept traces shown on a transaction page.
pub const TRACES: usize = 5;

const RANKS: &str = "p50, p95, p99, average, apdex, time_consumed";
const STEPS: &str = "minute, hour, day";
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

/// Per service over `scope`: runs, mean, p95 and throughput from the
/// service's histograms merged, error rate and Apdex weighted by runs from
/// its transactions' `rows`.
fn service_summaries(
    analysis: &Analysis<'_>,
    scope: &Scope,
    rows: &[EndpointRow],
) -> Result<BTreeMap<String, Summary>, AnalysisError> {
    let mut merged: BTreeMap<String, Histogram> = BTreeMap::new();
    for (key, histogram) in analysis.histograms(&scope.store_filter(analysis.owners), scope.from, scope.to)? {
        if !scope.matches(&key, analysis.owners) {
            continue;
        }
        match merged.get_mut(&key.service) {
            Some(sum) => sum.merge(&histogram),
            None => {
                merged.insert(key.service, histogram);
            }
        }
    }
    // (runs with an error rate, errors-weighted sum, runs with an Apdex, Apdex-weighted sum)
    let mut weights: HashMap<&str, [f64; 4]> = HashMap::new();
    for row in rows {
        let w = weights.entry(row.service.as_str()).or_default();
        let runs = row.count as f64;
        if let Some(rate) = row.error_rate {
            w[0] += runs;
            w[1] += rate * runs;
        }
        if let Some(apdex) = row.apdex {
            w[2] += runs;
            w[3] += apdex * runs;
        }
    }
    let minutes = scope.minutes().max(1) as f64;
    Ok(merged
        .into_iter()
        .map(|(service, h)| {
            let w = weights.get(service.as_str()).copied().unwrap_or_default();
            let summary = Summary {
                runs: h.count,
                mean: h.mean(),
                p95: h.quantile(0.95),
                throughput: h.count as f64 / minutes,
                error_rate: (w[0] > 0.0).then(|| w[1] / w[0]),
                apdex: (w[2] > 0.0).then(|| w[3] / w[2]),
                estimated: h.estimated,
            };
            (service, summary)
        })
        .collect())
}

/// The step of the overview's trends: days for windows of three days or
/// more (the store reads one day row per series and day rather than 24 hour
/// rows), hours down to six hours, minutes below.
fn trend_step(minutes: i64) -> i64 {
    if minutes >= 3 * 1_440 {
        1_440
    } else if minutes >= 6 * 60 {
        60
    } else {
        1
    }
}

/// Average response time per step, per service and per feature: the
/// overview's trend column. Read from the histograms' counts and sums only
/// (no outcome counters, no percentiles), at [`trend_step`].
#[allow(clippy::type_complexity)]
fn trends(
    app: &App,
    scope: &Scope,
) -> Result<(BTreeMap<String, Vec<Option<f64>>>, BTreeMap<String, Vec<Option<f64>>>), AnalysisError> {
    let step = trend_step(scope.minutes());
    let first = scope.from.div_euclid(step) * step;
    let steps = usize::try_from((scope.to - first + step - 1) / step).unwrap_or(0);
    let mut services: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    let mut features: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    let rows = app
        .store
        .totals_steps(&scope.store_filter(&app.owners), scope.from, scope.to, step)?;
    for (key, start, count, sum) in rows {
        if !scope.matches(&key, &app.owners) {
            continue;
        }
        let Some(index) = usize::try_from((start - first) / step).ok().filter(|i| *i < steps) else {
            continue;
        };
        let tagged = Some(key.feature.as_str()).filter(|f| !f.is_empty());
        let feature = app
            .owners
            .feature_of(&key.service, &key.transaction, tagged)
            .map(str::to_owned);
        let add = |map: &mut BTreeMap<String, Vec<(f64, u64)>>, name: String| {
            let cell = &mut map.entry(name).or_insert_with(|| vec![(0.0, 0); steps])[index];
            cell.0 += sum;
            cell.1 += count;
        };
        if let Some(feature) = feature {
            add(&mut features, feature);
        }
        add(&mut services, key.service);
    }
    let averages = |map: BTreeMap<String, Vec<(f64, u64)>>| {
        map.into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|(s, c)| (c > 0).then(|| s / c as f64)).collect()))
            .collect()
    };
    Ok((averages(services), averages(features)))
}

/// The overview: services, features and the transactions that matter most,
/// each against the previous window.
pub fn overview(app: &App, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(DEFAULT_SINCE, now)?;
    scope.check_team(&app.owners)?;
    let previous = scope.previous();
    let by: Rank = params.choice("by", RANKS)?.unwrap_or(Rank::TimeConsumed);
    let limit = params.limit(15)?;
    // Transactions, features and services are all read from one window's
    // histograms and counters (and the previous window's): read each once.
    let memo = Memo::default();
    let analysis = app.analysis().remembering(&memo);
    let transactions = analysis.slowest_grouped(&scope, Group::Transaction, by, usize::MAX)?;
    let transactions_before = analysis.slowest_grouped(&previous, Group::Transaction, by, usize::MAX)?;
    let features = analysis.slowest_grouped(&scope, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
    let features_before = analysis.slowest_grouped(&previous, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
    let services = service_summaries(&analysis, &scope, &transactions.rows)?;
    let services_before = service_summaries(&analysis, &previous, &transactions_before.rows)?;
    let (service_trends, feature_trends) = trends(app, &scope)?;

    let page = params.href("/");
    let api = api_params(params, DEFAULT_SINCE);
    let carried = params.only(&CARRIED);
    let features_before: HashMap<Option<&str>, Summary> = features_before
        .rows
        .iter()
        .map(|r| (r.feature.as_deref(), Summary::from(r)))
        .collect();
    let transactions_before: HashMap<(&str, &str), Summary> = transactions_before
        .rows
        .iter()
        .map(|r| ((r.service.as_str(), r.transaction.as_str()), Summary::from(r)))
        .collect();
    let no_trend = Vec::new();
    // The services that take the most time first, a page at a time.
    let mut services: Vec<(String, Summary)> = services.into_iter().collect();
    services.sort_by(|(a, x), (b, y)| {
        (y.runs as f64 * y.mean)
            .total_cmp(&(x.runs as f64 * x.mean))
            .then(a.cmp(b))
    });
    let services_pager = Pager::new(params, "/", "services_from", "services", services.len())?;
    let features_pager = Pager::new(params, "/", "features_from", "features", features.rows.len())?;

    let services_table = html! {
        @if services.is_empty() { p.empty { "No runs in this window." } } @else {
            (services_pager.nav())
            table.rows id="services-table" {
                thead { tr { th { "Service" } @for h in SUMMARY_HEADS { th.num { (h) } } th { "Average over time" } } }
                tbody {
                    @for (service, now) in services_pager.page(&services) {
                        tr data-service=(service) {
                            td { a href=(params.with("service", Some(service)).href("/")) { (service) } }
                            (summary_cells(now, Some(services_before.get(service))))
                            td { (charts::sparkline("average", service_trends.get(service).unwrap_or(&no_trend))) }
                        }
                    }
                }
            }
        }
    };
    let features_table = html! {
        @if features.rows.is_empty() { p.empty { "No runs in this window." } } @else {
            (features_pager.nav())
            table.rows id="features-table" {
                thead { tr { th { "Feature" } th { "Team" } @for h in SUMMARY_HEADS { th.num { (h) } } th { "Average over time" } } }
                tbody {
                    @for row in features_pager.page(&features.rows) {
                        tr data-feature=(row.feature.as_deref().unwrap_or("")) {
                            td {
                                @match &row.feature {
                                    Some(name) => a href=(carried.href(&format!("/features/{}", format::url_component(name)))) { (name) },
                                    None => em { "no feature" },
                                }
                            }
                            td { (row.team.as_deref().unwrap_or("–")) }
                            (summary_cells(&Summary::from(row), Some(features_before.get(&row.feature.as_deref()))))
                            td { (charts::sparkline("average", row.feature.as_ref().and_then(|f| feature_trends.get(f)).unwrap_or(&no_trend))) }
                        }
                    }
                }
            }
        }
    };
    let ranks = [
        (Rank::TimeConsumed, "time_consumed", "time consumed"),
        (Rank::P95, "p95", "p95"),
        (Rank::Average, "average", "average"),
        (Rank::Apdex, "apdex", "Apdex"),
    ];
    let transactions_table = html! {
        p.ranks {
            "Ranked by "
            @for (i, (rank, name, label)) in ranks.iter().enumerate() {
                @if i > 0 { " · " }
                @if *rank == by { strong { (label) } } @else { a href=(params.with("by", Some(name)).href("/")) { (label) } }
            }
            " (" (transactions.total_rows) " transactions in scope)"
        }
        (transactions_table(&transactions.rows[..transactions.rows.len().min(limit)], &carried, Some(&transactions_before)))
        (estimates_note(transactions.estimated || features.estimated, &transactions.advice))
    };
    let body = html! {
        (filter_bar("/", params, Some(DEFAULT_SINCE), &EDITABLE))
        p.context { "Each number is for the window; the small one is its change against the window of the same length before it." }
        (section("services", "Services", &page, Some(("slowest", &api.with("group", Some("transaction")))), services_table))
        (section("features", "Features", &page, Some(("slowest", &api.with("group", Some("feature")))), features_table))
        (section("transactions", "Transactions", &page, Some(("slowest", &api.with("by", Some(rank_name(by))).with("limit", Some(&limit.to_string())))), transactions_table))
    };
    Ok(document("Overview", Nav::Overview, body))
}

fn rank_name(rank: Rank) -> &'static str {
    match rank {
        Rank::P50 => "p50",
        Rank::P95 => "p95",
        Rank::P99 => "p99",
        Rank::Average => "average",
        Rank::Apdex => "apdex",
        Rank::TimeConsumed => "time_consumed",
    }
}

/// `/transactions?service=…&transaction=…` with `carried` filters.
fn transaction_href(carried: &Params, service: &str, transaction: &str) -> String {
    carried
        .with("service", Some(service))
        .with("transaction", Some(transaction))
        .href("/transactions")
}

/// A table of transaction rows, with changes when `before` is given.
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
        .map(|&metric| Line {
            key: metric.name().to_owned(),
            label: metric.name().replace('_', " "),
            points: points.iter().map(|p| (p.minute, point_value(p, metric))).collect(),
        })
        .collect()
}

/// A feature: its response time, throughput and error rate over time, and
/// its transactions ranked slowest and most time-consuming.
pub fn feature(app: &App, name: &str, params: &Params, now: i64) -> Result<Markup, PageError> {
    let params = params.with("feature", None);
    let mut scope = params.scope(DEFAULT_SINCE, now)?;
    scope.check_team(&app.owners)?;
    scope.feature = Some(name.to_owned());
    let step: Option<Step> = params.choice("step", STEPS)?;
    let limit = params.limit(20)?;
    // A feature without owners.toml patterns is read from its own series
    // only (`Scope::store_filter`).
    let analysis = app.analysis();
    let series = analysis.timeseries(&scope, Group::Feature, step)?;
    let points = series
        .series
        .iter()
        .find(|s| s.feature.as_deref() == Some(name))
        .map_or(&[][..], |s| &s.points[..]);
    let mut rows = analysis
        .slowest_grouped(&scope, Group::Transaction, Rank::P95, usize::MAX)?
        .rows;
    let slowest: Vec<EndpointRow> = rows.iter().take(limit).cloned().collect();
    rows.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
    rows.truncate(limit);

    let path = format!("/features/{}", format::url_component(name));
    let page = params.href(&path);
    let api = api_params(&params, DEFAULT_SINCE).with("feature", Some(name));
    let carried = params.only(&CARRIED);
    let declared = app.owners.feature(name);
    let team = app.owners.team_of_feature(name);
    let chart =
        |metrics: &[Metric], unit| charts::line_chart(&metric_lines(points, metrics), unit, scope.from, scope.to);
    let series_api = api.with("group", Some("feature"));
    let body = html! {
        (filter_bar(&path, &params, Some(DEFAULT_SINCE), &EDITABLE))
        p.context {
            @if let Some(team) = team { "Owned by " strong { (team.label()) } ". " }
            @if let Some(description) = declared.and_then(|f| f.description.as_deref()) { (description) ". " }
            @if declared.is_some() {
                a href=(format!("/dashboards/{}", format::url_component(&format!("feature-{name}")))) { "Its dashboard" } ". "
            }
            "Step: " (step_name(series.step)) "."
        }
        div.grid {
            (section("response-time", "Response time", &page, Some(("timeseries", &series_api)), chart(&[Metric::Average, Metric::P95], Unit::Seconds)))
            (section("throughput", "Throughput", &page, Some(("timeseries", &series_api)), chart(&[Metric::Throughput], Unit::PerMinute)))
            (section("error-rate", "Error rate", &page, Some(("timeseries", &series_api)), chart(&[Metric::ErrorRate], Unit::Ratio)))
        }
        (section("slowest", "Slowest transactions (by p95)", &page,
            Some(("slowest", &api.with("by", Some("p95")).with("limit", Some(&limit.to_string())))),
            transactions_table(&slowest, &carried, None)))
        (section("time-consumed", "Most time-consuming transactions", &page,
            Some(("slowest", &api.with("by", Some("time_consumed")).with("limit", Some(&limit.to_string())))),
            transactions_table(&rows, &carried, None)))
    };
    Ok(document(&format!("Feature {name}"), Nav::Overview, body))
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Minute => "a minute",
        Step::Hour => "an hour",
        Step::Day => "a day",
    }
}

/// At most this many bars in a latency distribution.
const MAX_BINS: i64 = 48;

/// The bins of a latency distribution: `histogram` made coarser until its
/// buckets fit [`MAX_BINS`], empty buckets between kept as empty bars.
pub fn distribution(histogram: &Histogram) -> Vec<Bin> {
    let mut h = histogram.clone();
    loop {
        let mut buckets = h.iter_buckets();
        let first = buckets.next();
        let last = buckets.last().or(first);
        match first.zip(last) {
            Some(((low, _), (high, _))) if i64::from(high) - i64::from(low) >= MAX_BINS && h.scale > -10 => {
                h.downscale(h.scale - 1);
            }
            _ => break,
        }
    }
    let mut bins = Vec::new();
    if h.zero_count > 0 {
        bins.push(Bin {
            low: 0.0,
            high: h.zero_threshold,
            count: h.zero_count,
        });
    }
    let mut next: Option<i32> = None;
    for (index, count) in h.iter_buckets() {
        if let Some(expected) = next {
            for gap in expected..index {
                let (low, high) = bucket_bounds(gap, h.scale);
                bins.push(Bin { low, high, count: 0 });
            }
        }
        let (low, high) = bucket_bounds(index, h.scale);
        bins.push(Bin { low, high, count });
        next = Some(index + 1);
    }
    bins
}

/// A transaction: percentiles over time, its latency distribution, where
/// its time goes, its slowest kept traces and its errors.
pub fn transaction(app: &App, params: &Params, now: i64) -> Result<Markup, PageError> {
    let (Some(service), Some(name)) = (params.get("service"), params.get("transaction")) else {
        return Err(PageError::BadRequest(
            "choose a transaction: /transactions?service=…&transaction=… (the overview links to each)".to_owned(),
        ));
    };
    let scope = params.scope(DEFAULT_SINCE, now)?;
    scope.check_team(&app.owners)?;
    let step: Option<Step> = params.choice("step", STEPS)?;
    let analysis = app.analysis();
    let table = analysis.slowest_grouped(&scope, Group::Transaction, Rank::P95, 1)?;
    let advice: Vec<Advice> = table
        .advice
        .into_iter()
        .filter(|a| a.service == service && a.transactions.iter().any(|t| t == name))
        .collect();
    let row = table.rows.into_iter().next();
    let series = analysis.timeseries(&scope, Group::Transaction, step)?;
    let points = series
        .series
        .iter()
        .find(|s| s.service == service && s.transaction == name)
        .map_or(&[][..], |s| &s.points[..]);
    let mut merged: Option<Histogram> = None;
    for (key, h) in app
        .store
        .histograms(&scope.store_filter(&app.owners), scope.from, scope.to)
        .map_err(AnalysisError::from)?
    {
        if scope.matches(&key, &app.owners) {
            match &mut merged {
                Some(sum) => sum.merge(&h),
                None => merged = Some(h),
            }
        }
    }
    let breakdown = analysis.breakdown(&scope, service, name, TRACES)?;
    let errors = analysis.errors(&scope)?;
    let errors_pager = Pager::new(params, "/transactions", "from", "error groups", errors.len())?;

    let page = params.href("/transactions");
    let api = api_params(params, DEFAULT_SINCE);
    let carried = params.only(&CARRIED);
    let percentile_lines = metric_lines(points, &[Metric::P50, Metric::P95, Metric::P99, Metric::Average]);
    let summary = html! {
        @match &row {
            None => p.empty { "No runs in this window." },
            Some(row) => dl.summary {
                div { dt { "Runs" } dd { (format::count(row.count)) } }
                div { dt { "Throughput" } dd { (format::rate(row.throughput)) } }
                div { dt { "Average" } dd { (format::duration(row.mean)) } }
                div { dt { "p50" } dd { (percentile_text(row.p50, row.estimated)) } }
                div { dt { "p95" } dd { (percentile_text(row.p95, row.estimated)) } }
                div { dt { "p99" } dd { (percentile_text(row.p99, row.estimated)) } }
                div { dt { "Slowest" } dd { (format::duration(row.max)) } }
                div { dt { "Error rate" } dd { (ratio_text(row.error_rate)) } }
                div { dt { "Apdex" } dd { (format::apdex(row.apdex)) } }
                div { dt { "Feature" } dd {
                    @match &row.feature {
                        Some(f) => a href=(carried.with("service", None).href(&format!("/features/{}", format::url_component(f)))) { (f) },
                        None => "–",
                    }
                } }
                div { dt { "Team" } dd { (row.team.as_deref().unwrap_or("–")) } }
            },
        }
        (estimates_note(row.as_ref().is_some_and(|r| r.estimated), &advice))
    };
    let distribution_chart = match &merged {
        Some(h) if h.count > 0 => {
            let chart = charts::histogram_chart(
                &distribution(h),
                &[
                    ("p50", h.quantile(0.5)),
                    ("p95", h.quantile(0.95)),
                    ("p99", h.quantile(0.99)),
                ],
            );
            html! {
                (chart)
                @if h.estimated {
                    p.note { "Some of these runs came in an SDK's explicit buckets: within each of its buckets the \
                              bars spread the bucket's runs evenly between its bounds (an interpolation, not a \
                              measurement); only the bucket totals are known." }
                }
            }
        }
        _ => html! { p.empty { "No runs in this window." } },
    };
    let segment_rows: Vec<(String, f64)> = breakdown
        .segments
        .iter()
        .take(12)
        .map(|s| {
            (
                format!("{} {}", s.kind, s.name),
                s.total_seconds / breakdown.runs.max(1) as f64,
            )
        })
        .chain((breakdown.other_seconds > 0.0).then(|| {
            (
                "own code (no segment)".to_owned(),
                breakdown.other_seconds / breakdown.runs.max(1) as f64,
            )
        }))
        .collect();
    let segments = html! {
        @if breakdown.segments.is_empty() { p.empty { "No segments recorded in this window." } } @else {
            p.context { "Time per run in each segment (exclusive of nested segments)." }
            (charts::bars("segments", &segment_rows, Unit::Seconds))
            table.rows id="segments-table" {
                thead { tr { th { "Kind" } th { "Segment" } th.num { "Calls per run" } th.num { "Time per call" } th.num { "Time per run" } th.num { "Share" } } }
                tbody {
                    @for s in &breakdown.segments {
                        tr data-segment=(s.name) {
                            td { (s.kind) } td.name { (s.name) }
                            td.num { (format::number(s.calls_per_run)) }
                            td.num { (s.seconds_per_call.map_or_else(|| format::NONE.to_owned(), format::duration)) }
                            td.num { (format::duration(s.total_seconds / breakdown.runs.max(1) as f64)) }
                            td.num { (format::percent(s.share)) }
                        }
                    }
                    tr { td { "own code" } td.name { em { "time in no segment" } } td.num { "–" } td.num { "–" }
                        td.num { (format::duration(breakdown.other_seconds / breakdown.runs.max(1) as f64)) }
                        td.num { (format::percent(breakdown.other_share)) } }
                }
            }
        }
    };
    let traces = html! {
        @if breakdown.traces.is_empty() { p.empty { "No kept traces in this window." } }
        @for (i, trace) in breakdown.traces.iter().enumerate() {
            details.trace open[i == 0] data-trace=(trace.trace_id) {
                summary {
                    strong { (format::duration(trace.duration)) } " on " (trace.host) " at "
                    (format::nanos(trace.start)) " UTC"
                    " · trace " code { (trace.trace_id) }
                }
                (charts::waterfall(trace))
            }
        }
    };
    let title = format!("{service} · {name}");
    let body = html! {
        (filter_bar("/transactions", params, Some(DEFAULT_SINCE), &["environment"]))
        (summary)
        div.grid {
            (section("percentiles", "Percentiles over time", &page, Some(("timeseries", &api)), charts::line_chart(&percentile_lines, Unit::Seconds, scope.from, scope.to)))
            (section("distribution", "Latency distribution", &page, Some(("slowest", &api)), distribution_chart))
        }
        (section("segments", "Where the time goes", &page, Some(("breakdown", &api)), segments))
        (section("traces", "Slowest kept traces", &page, Some(("breakdown", &api)), traces))
        (section("errors", "Errors", &page, Some(("errors", &api)), html! {
            (errors_pager.nav())
            (errors_table(errors_pager.page(&errors), &carried, false))
        }))
    };
    Ok(document(&title, Nav::Overview, body))
}

/// Error groups as a table: count against the previous window, servers, teams.
fn errors_table(groups: &[ErrorGroup], carried: &Params, with_teams: bool) -> Markup {
    html! {
        @if groups.is_empty() { p.empty { "No errors in this window." } } @else {
            table.rows.errors {
                thead { tr {
                    th { "Error" } th { "Location" } th.num { "Count" } th.num { "Window before" } th.num { "Increase" }
                    th { "Per server" } @if with_teams { th { "Teams" } }
                } }
                tbody {
                    @for group in groups {
                        tr data-error=(group.id) {
                            td.name {
                                a href=(carried.href(&format!("/errors/{}", format::url_component(&group.id)))) { (charts::shorten(&group.title, 120)) }
                                br; small { (group.error_type) }
                                @if group.new { " " span.badge.new { "new" } }
                            }
                            td { small { (group.location) } }
                            td.num { (format::count(group.count)) }
                            td.num { (format::count(group.previous_count)) }
                            td.num {
                                (format!("{:+}", group.increase))
                                @if let Some(r) = group.relative_increase { br; (delta(Some(r), Sense::HigherIsWorse)) }
                            }
                            td {
                                @for (i, server) in group.servers.iter().take(3).enumerate() {
                                    @if i > 0 { br; }
                                    small { (server.host) " (" (server.service) "): " (format::count(server.count)) }
                                }
                                @if group.servers.len() > 3 { br; small { "and " (group.servers.len() - 3) " more" } }
                            }
                            @if with_teams { td { (group.teams.join(", ")) } }
                        }
                    }
                }
            }
        }
    }
}

/// Error groups of the window against the window before (day over day by default).
pub fn errors(app: &App, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(DEFAULT_SINCE, now)?;
    let groups = app.analysis().errors(&scope)?;
    let page = params.href("/errors");
    let api = api_params(params, DEFAULT_SINCE);
    let carried = params.only(&CARRIED);
    let total: u64 = groups.iter().map(|g| g.count).sum();
    let pager = Pager::new(params, "/errors", "from", "groups", groups.len())?;
    let body = html! {
        (filter_bar("/errors", params, Some(DEFAULT_SINCE), &EDITABLE))
        p.context {
            (format::count(groups.len() as u64)) " groups, " (format::count(total)) " errors; each against the window of the same length before it "
            "(with the default 1d: the day before). New groups first, then the largest increase."
        }
        (section("groups", "Error groups", &page, Some(("errors", &api)), html! {
            (pager.nav())
            (errors_table(pager.page(&groups), &carried, true))
        }))
    };
    Ok(document("Errors", Nav::Errors, body))
}

/// One error group: where it happens, in which transactions, and samples.
pub fn error_group(app: &App, id: &str, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(DEFAULT_SINCE, now)?;
    let groups = app.analysis().errors(&scope)?;
    let Some(group) = groups.iter().find(|g| g.id == id) else {
        return Err(PageError::NotFound(format!(
            "no error group {id} in this window: widen it (since=7d) or go back to the errors"
        )));
    };
    let path = format!("/errors/{}", format::url_component(id));
    let page = params.href(&path);
    let api = api_params(params, DEFAULT_SINCE);
    let carried = params.only(&CARRIED);
    let servers: Vec<(String, f64)> = group
        .servers
        .iter()
        .take(20)
        .map(|s| (format!("{} ({})", s.host, s.service), s.count as f64))
        .collect();
    let first_seen = format::utc(group.first_seen_minute, "%Y-%m-%d %H:%M UTC");
    let body = html! {
        (filter_bar(&path, params, Some(DEFAULT_SINCE), &EDITABLE))
        dl.summary {
            div { dt { "Type" } dd { (group.error_type) } }
            div { dt { "Location" } dd { (group.location) } }
            div { dt { "Count" } dd { (format::count(group.count)) } }
            div { dt { "Window before" } dd { (format::count(group.previous_count)) } }
            div { dt { "First seen" } dd { (first_seen) } }
            div { dt { "Teams" } dd { (if group.teams.is_empty() { "–".to_owned() } else { group.teams.join(", ") }) } }
            div { dt { "Fingerprint" } dd { code { (group.id) } @if group.custom { " (the service's own)" } } }
        }
        (section("servers", "Per server", &page, Some(("errors", &api)), html! {
            (charts::bars("servers", &servers, Unit::Number))
        }))
        (section("transactions", "In transactions", &page, Some(("errors", &api)), html! {
            table.rows {
                thead { tr { th { "Service" } th { "Transaction" } th.num { "Count" } } }
                tbody {
                    @for t in &group.transactions {
                        tr { td { (t.service) } td.name { a href=(transaction_href(&carried, &t.service, &t.transaction)) { (t.transaction) } } td.num { (format::count(t.count)) } }
                    }
                }
            }
        }))
        (section("samples", "Sample messages", &page, None, html! {
            @for sample in &group.samples { pre.sample { (sample) } }
        }))
        @if !group.stacktrace.is_empty() {
            (section("stacktrace", "Stack trace", &page, None, html! { pre.sample { (group.stacktrace) } }))
        }
    };
    Ok(document(&charts::shorten(&group.title, 90), Nav::Errors, body))
}

/// A change as `before → now (+x%)`.
fn change_text(change: &Change) -> Markup {
    html! {
        (format::duration(change.previous)) " → " (format::duration(change.current)) " "
        (delta(change.relative, Sense::HigherIsWorse))
    }
}

/// A table of judged rows.
fn regression_table(rows: &[RegressionRow], carried: &Params, impact_label: &str) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "None." } } @else {
            table.rows.regressions {
                thead { tr {
                    th { "#" } th { "What" } th { "Environment" } th { "Team" } th { "Why" }
                    th.num { "p50" } th.num { "p95" } th.num { "Average" } th.num { "Runs (before)" } th.num { (impact_label) }
                } }
                tbody {
                    @for (i, row) in rows.iter().enumerate() {
                        tr data-subject=(row.label()) {
                            td.num { (i + 1) }
                            td.name {
                                @match row.group {
                                    regressions::Group::Transaction => a href=(transaction_href(carried, &row.service, &row.transaction)) { (row.service) " " (row.transaction) },
                                    regressions::Group::Feature => a href=(carried.href(&format!("/features/{}", format::url_component(row.feature.as_deref().unwrap_or(""))))) { "feature " (row.feature.as_deref().unwrap_or("")) },
                                }
                            }
                            td { (if row.environment.is_empty() { "–" } else { &row.environment }) }
                            td { (row.team.as_deref().unwrap_or("–")) }
                            td { small { (row.verdict.trigger.map(|t| t.to_string()).unwrap_or_default()) } }
                            td.num { (change_text(&row.verdict.changes.p50)) }
                            td.num { (change_text(&row.verdict.changes.p95)) }
                            td.num { (change_text(&row.verdict.changes.mean)) }
                            td.num { (format::count(row.verdict.current_count)) " (" (format::count(row.verdict.previous_count)) ")" }
                            td.num { (format::duration(row.verdict.impact_seconds.abs())) }
                        }
                    }
                }
            }
        }
    }
}

/// This window against the one before (a week against the week before by
/// default), regressions ranked by the extra time they cost.
pub fn regressions(app: &App, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(REGRESSIONS_SINCE, now)?;
    let group = match params.get("group") {
        None | Some("transaction") => regressions::Group::Transaction,
        Some("feature") => regressions::Group::Feature,
        Some(other) => {
            return Err(PageError::BadRequest(format!(
                "group={other} is not one of transaction, feature"
            )))
        }
    };
    let comparison = app.analysis().compare(&scope, &RegressionRule::default(), group)?;
    let page = params.href("/regressions");
    let api = api_params(params, REGRESSIONS_SINCE);
    let carried = params.only(&CARRIED);
    let grouped = group == regressions::Group::Feature;
    // Each list pages alone.
    let worse = Pager::new(
        params,
        "/regressions",
        "from",
        "regressions",
        comparison.regressions.len(),
    )?;
    let better = Pager::new(
        params,
        "/regressions",
        "improvements_from",
        "improvements",
        comparison.improvements.len(),
    )?;
    let body = html! {
        (filter_bar("/regressions", params, Some(REGRESSIONS_SINCE), &EDITABLE))
        p.ranks {
            "Per "
            @if grouped { a href=(params.with("group", None).href("/regressions")) { "transaction" } " · " strong { "feature" } }
            @else { strong { "transaction" } " · " a href=(params.with("group", Some("feature")).href("/regressions")) { "feature" } }
            ". A change counts when a test says it is not noise (p < 0.01) and it is at least 10%; "
            "each period needs 100 runs to be judged."
        }
        (section("regressions", "Regressions", &page, Some(("regressions", &api)), html! {
            (worse.nav())
            (regression_table(worse.page(&comparison.regressions), &carried, "Extra time"))
        }))
        (section("improvements", "Improvements", &page, Some(("regressions", &api)), html! {
            (better.nav())
            (regression_table(better.page(&comparison.improvements), &carried, "Time saved"))
        }))
        (section("too-little-traffic", "Not judged: too little traffic", &page, None, html! {
            p { (comparison.too_little_traffic.len()) " not judged; " (comparison.unchanged) " judged unchanged." }
            @if !comparison.too_little_traffic.is_empty() {
                details { summary { "Show them" }
                    ul { @for row in comparison.too_little_traffic.iter().take(50) {
                        li { (row.label()) " — " (format::count(row.verdict.current_count)) " runs now, " (format::count(row.verdict.previous_count)) " before" }
                    } }
                }
            }
        }))
    };
    Ok(document("Regressions", Nav::Regressions, body))
}

/// Every dashboard, and the problems of the files that could not be read.
pub fn dashboard_list(found: &Dashboards, params: &Params) -> Markup {
    let window = params.only(&["since", "until"]);
    let body = html! {
        p.context { "Dashboards are files in the dashboards folder (" code { "*.toml" } "), and one per feature of owners.toml." }
        @if !found.problems.is_empty() {
            section.panel id="problems" {
                header { h2 { "Files with problems" } }
                ul.problems { @for problem in &found.problems { li { code { (problem.to_string()) } } } }
            }
        }
        section.panel id="dashboards" {
            header { h2 { "Dashboards" } }
            @if found.dashboards.is_empty() { p.empty { "No dashboards yet." } } @else {
                table.rows {
                    thead { tr { th { "Dashboard" } th { "What" } th.num { "Panels" } th { "From" } } }
                    tbody {
                        @for d in &found.dashboards {
                            tr data-dashboard=(d.name) {
                                td { a href=(window.href(&format!("/dashboards/{}", format::url_component(&d.name)))) { (d.title) } }
                                td { (d.description.as_deref().unwrap_or("")) }
                                td.num { (d.panels.len()) }
                                td { @match &d.source {
                                    Source::File(path) => code { (path.display().to_string()) },
                                    Source::Owners => "owners.toml",
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    document("Dashboards", Nav::Dashboards, body)
}

/// The scope of a panel: its window (or the page's, when the URL sets one)
/// and its filter.
fn panel_scope(panel: &Panel, params: &Params, now: i64) -> Result<Scope, PageError> {
    let since = params.get("since").unwrap_or(&panel.window);
    let (from, to) = crate::analysis::scope::parse_window(since, params.get("until"), now)?;
    Ok(Scope {
        from,
        to,
        service: panel.filter.service.clone(),
        host: None,
        environment: panel.filter.environment.clone(),
        transaction: panel.filter.transaction.clone(),
        feature: panel.filter.feature.clone(),
        team: panel.filter.team.clone(),
    })
}

/// A row's name: its feature, or its service and transaction.
fn row_label(row: &EndpointRow, group: Group) -> String {
    match group {
        Group::Feature => row.feature.clone().unwrap_or_else(|| "no feature".to_owned()),
        Group::Transaction => format!("{} {}", row.service, row.transaction),
    }
}

fn row_value(row: &EndpointRow, metric: Metric) -> Option<f64> {
    match metric {
        Metric::P50 => Some(row.p50),
        Metric::P95 => Some(row.p95),
        Metric::P99 => Some(row.p99),
        Metric::Average => Some(row.mean),
        Metric::Throughput => Some(row.throughput),
        Metric::ErrorRate => row.error_rate,
        Metric::Apdex => row.apdex,
    }
}

/// Time series already drawn by a dashboard's panels, per scope and group
/// (a feature's dashboard draws four charts from one).
#[derive(Default)]
struct Drawn(Vec<(Scope, Group, TimeSeries)>);

impl Drawn {
    fn timeseries(&mut self, analysis: &Analysis<'_>, scope: &Scope, group: Group) -> Result<&TimeSeries, PageError> {
        let at = match self.0.iter().position(|(s, g, _)| s == scope && *g == group) {
            Some(at) => at,
            None => {
                let series = analysis.timeseries(scope, group, None)?;
                self.0.push((scope.clone(), group, series));
                self.0.len() - 1
            }
        };
        Ok(&self.0[at].2)
    }
}

/// One panel: its chart over its scope.
fn panel(
    analysis: &Analysis<'_>,
    drawn: &mut Drawn,
    panel: &Panel,
    params: &Params,
    now: i64,
) -> Result<Markup, PageError> {
    let scope = panel_scope(panel, params, now)?;
    scope.check_team(analysis.owners)?;
    let unit = unit_of(panel.metric);
    if panel.chart == Chart::Line {
        let series = drawn.timeseries(analysis, &scope, panel.group)?;
        let mut ranked: Vec<_> = series.series.iter().collect();
        ranked.sort_by_key(|s| std::cmp::Reverse(s.points.iter().map(|p| p.count).sum::<u64>()));
        let lines: Vec<Line> = ranked
            .into_iter()
            .take(panel.limit)
            .map(|s| {
                let label = match panel.group {
                    Group::Feature => s.feature.clone().unwrap_or_else(|| "no feature".to_owned()),
                    Group::Transaction => format!("{} {}", s.service, s.transaction),
                };
                Line {
                    key: label.clone(),
                    label,
                    points: s
                        .points
                        .iter()
                        .map(|p| (p.minute, point_value(p, panel.metric)))
                        .collect(),
                }
            })
            .collect();
        return Ok(charts::line_chart(&lines, unit, scope.from, scope.to));
    }
    let mut rows = analysis
        .slowest_grouped(&scope, panel.group, Rank::TimeConsumed, usize::MAX)?
        .rows;
    rows.retain(|r| row_value(r, panel.metric).is_some());
    // Worst first: highest, except Apdex (lowest).
    let sign = if panel.metric == Metric::Apdex { -1.0 } else { 1.0 };
    rows.sort_by(|a, b| {
        let (a, b) = (row_value(a, panel.metric), row_value(b, panel.metric));
        (sign * b.unwrap_or(0.0)).total_cmp(&(sign * a.unwrap_or(0.0)))
    });
    rows.truncate(panel.limit);
    if panel.chart == Chart::Bar {
        let bars: Vec<(String, f64)> = rows
            .iter()
            .map(|r| (row_label(r, panel.group), row_value(r, panel.metric).unwrap_or(0.0)))
            .collect();
        return Ok(charts::bars(panel.metric.name(), &bars, unit));
    }
    Ok(html! {
        @if rows.is_empty() { p.empty { "No runs in this window." } } @else {
            table.rows data-series=(panel.metric.name()) {
                thead { tr { th { (if panel.group == Group::Feature { "Feature" } else { "Transaction" }) } th.num { (panel.metric.name().replace('_', " ")) } th.num { "Runs" } th.num { "Average" } th.num { "p95" } } }
                tbody {
                    @for row in &rows {
                        tr {
                            td.name { (row_label(row, panel.group)) }
                            td.num { (row_value(row, panel.metric).map_or_else(|| "–".to_owned(), |v| unit.format(v))) }
                            td.num { (format::count(row.count)) }
                            td.num { (format::duration(row.mean)) }
                            td.num { (format::duration(row.p95)) }
                        }
                    }
                }
            }
        }
    })
}

/// The API question and parameters behind a panel.
fn panel_api(panel: &Panel, params: &Params) -> (&'static str, Params) {
    let mut api = Params::default();
    api.set("since", Some(params.get("since").unwrap_or(&panel.window)));
    api.set("until", params.get("until"));
    api.set("service", panel.filter.service.as_deref());
    api.set("feature", panel.filter.feature.as_deref());
    api.set("transaction", panel.filter.transaction.as_deref());
    api.set("team", panel.filter.team.as_deref());
    api.set("environment", panel.filter.environment.as_deref());
    api.set(
        "group",
        Some(match panel.group {
            Group::Feature => "feature",
            Group::Transaction => "transaction",
        }),
    );
    match panel.chart {
        Chart::Line => ("timeseries", api),
        Chart::Bar | Chart::Table => {
            api.set("limit", Some(&panel.limit.to_string()));
            ("slowest", api)
        }
    }
}

/// A dashboard's panels, each over its own window unless the URL sets one.
pub fn dashboard(app: &App, found: &Dashboards, name: &str, params: &Params, now: i64) -> Result<Markup, PageError> {
    let Some(dashboard): Option<&Dashboard> = found.get(name) else {
        return Err(PageError::NotFound(format!(
            "no dashboard `{name}`: see /dashboards for the list (and any file with problems)"
        )));
    };
    let path = format!("/dashboards/{}", format::url_component(name));
    let page = params.href(&path);
    let mut panels = Vec::new();
    // Panels over the same window read it once, and draw the same series once.
    let memo = Memo::default();
    let analysis = app.analysis().remembering(&memo);
    let mut drawn = Drawn::default();
    for (i, p) in dashboard.panels.iter().enumerate() {
        let (question, api) = panel_api(p, params);
        let body = match panel(&analysis, &mut drawn, p, params, now) {
            Ok(markup) => markup,
            // One panel's unknown team or bad window does not hide the others.
            Err(PageError::BadRequest(message)) => html! { p.problem { (message) } },
            Err(other) => return Err(other),
        };
        let window = params.get("since").unwrap_or(&p.window);
        panels.push(section(
            &format!("panel-{}", i + 1),
            &format!("{} ({})", p.title, window),
            &page,
            Some((question, &api)),
            body,
        ));
    }
    let body = html! {
        (filter_bar(&path, params, None, &[]))
        @if let Some(description) = &dashboard.description { p.context { (description) } }
        div.grid { @for panel in panels { (panel) } }
    };
    Ok(document(&dashboard.title, Nav::Dashboards, body))
}
