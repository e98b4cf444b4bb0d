//! `/dashboards` and `/dashboards/{name}`: the dashboards of `dashboards/*.toml`
//! and one per feature of `owners.toml`, each panel a question drawn as a chart
//! or a table.

use super::*;

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

/// Each line's colour, the same for the same feature on every chart: the
/// features owners.toml declares, in its order (by name), then the other
/// lines by name.
struct SeriesColours(Vec<String>);

impl SeriesColours {
    fn new(owners: &crate::owners::Owners, series: &TimeSeries, group: Group) -> SeriesColours {
        let mut names: Vec<String> = match group {
            Group::Feature => owners.features().map(|f| f.name.clone()).collect(),
            Group::Transaction => Vec::new(),
        };
        let mut others: Vec<String> = series
            .series
            .iter()
            .map(|s| series_label(s, group))
            .filter(|name| !names.contains(name))
            .collect();
        others.sort();
        others.dedup();
        names.extend(others);
        SeriesColours(names)
    }

    /// The colour of the line labelled `label`.
    fn of(&self, label: &str) -> usize {
        self.0.iter().position(|name| name == label).unwrap_or(self.0.len())
    }
}

/// A line's name: its feature, or its service and transaction.
fn series_label(series: &Series, group: Group) -> String {
    match group {
        Group::Feature => series.feature.clone().unwrap_or_else(|| "no feature".to_owned()),
        Group::Transaction => format!("{} {}", series.service, series.transaction),
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
        let colours = SeriesColours::new(analysis.owners, series, panel.group);
        let mut ranked: Vec<_> = series.series.iter().collect();
        ranked.sort_by_key(|s| std::cmp::Reverse(s.points.iter().map(|p| p.count).sum::<u64>()));
        let lines: Vec<Line> = ranked
            .into_iter()
            .take(panel.limit)
            .map(|s| {
                let label = series_label(s, panel.group);
                Line {
                    key: label.clone(),
                    colour: colours.of(&label),
                    label,
                    points: s
                        .points
                        .iter()
                        .map(|p| (p.minute, point_value(p, panel.metric)))
                        .collect(),
                }
            })
            .collect();
        let markers = deploy_markers(analysis, &scope)?;
        return Ok(charts::line_chart(&lines, unit, scope.from, scope.to, &markers));
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
                thead { tr {
                    th { (if panel.group == Group::Feature { "Feature" } else { "Transaction" }) }
                    th.num { (panel.metric.name().replace('_', " ")) }
                    th.num { "Runs" }
                    @if panel.metric != Metric::Average { th.num { "Average" } }
                    @if panel.metric != Metric::P95 { th.num { "p95" } }
                } }
                tbody {
                    @for row in &rows {
                        tr {
                            td.name { (row_label(row, panel.group)) }
                            td.num { (row_value(row, panel.metric).map_or_else(|| "–".to_owned(), |v| unit.format(v))) }
                            td.num { (format::count(row.count)) }
                            // The panel's own metric is in the second column already.
                            @if panel.metric != Metric::Average { td.num { (format::duration(row.mean)) } }
                            @if panel.metric != Metric::P95 { td.num { (format::duration(row.p95)) } }
                        }
                    }
                }
            }
        }
    })
}

/// Reads what the panels need before they are drawn, the lines' series on
/// this thread while the tables' and bars' rows are read on another (kept
/// in `analysis`'s memo): a dashboard's reads are independent, and each
/// waits mostly on the store, so the page takes the longest of them rather
/// than their sum. Errors are left for the panels to show.
fn warm(analysis: &Analysis<'_>, drawn: &mut Drawn, panels: &[Panel], params: &Params, now: i64) {
    let (lines, rows): (Vec<&Panel>, Vec<&Panel>) = panels.iter().partition(|p| p.chart == Chart::Line);
    std::thread::scope(|threads| {
        if !rows.is_empty() {
            threads.spawn(|| {
                for p in rows {
                    if let Ok(scope) = panel_scope(p, params, now) {
                        let _ = analysis.slowest_grouped(&scope, p.group, Rank::TimeConsumed, usize::MAX);
                    }
                }
            });
        }
        for p in lines {
            if let Ok(scope) = panel_scope(p, params, now) {
                let _ = drawn.timeseries(analysis, &scope, p.group);
            }
        }
    });
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
    warm(&analysis, &mut drawn, &dashboard.panels, params, now);
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
