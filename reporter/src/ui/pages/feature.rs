//! `/features/{name}`: a feature's response time, throughput and errors over
//! time, and its transactions ranked.

use super::*;

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
    // The deploys of the services that run the feature's transactions.
    let markers = deploy_markers(&analysis, &scope)?;
    let chart = |metrics: &[Metric], unit| {
        charts::line_chart(&metric_lines(points, metrics), unit, scope.from, scope.to, &markers)
    };
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
