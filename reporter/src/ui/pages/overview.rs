//! `/`: the open performance problems that cost most, then services,
//! features and the transactions that consume most time, each against the
//! window before it, with a trend per row.

use super::*;

/// Open performance problems the overview lists (the most time a day first).
const OVERVIEW_PROBLEMS: usize = 5;

/// Per service over `scope`: runs, mean, p95 and throughput from the
/// service's histograms merged, error rate and Apdex weighted by runs from
/// its transactions' `rows`.
fn service_summaries(
    analysis: &Analysis<'_>,
    scope: &Scope,
    rows: &[EndpointRow],
) -> Result<BTreeMap<String, Summary>, AnalysisError> {
    let mut merged: BTreeMap<String, Histogram> = BTreeMap::new();
    for (key, histogram) in analysis.histograms(&scope.transactions_filter(analysis.owners), scope.from, scope.to)? {
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

/// The steps of the overview's trends over `scope`: [`trend_step`]s from
/// the one that holds its first minute.
fn trend_steps(scope: &Scope) -> charts::Steps {
    let step = trend_step(scope.minutes());
    charts::Steps {
        first: scope.from.div_euclid(step) * step,
        step,
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
    let charts::Steps { first, step } = trend_steps(scope);
    let steps = usize::try_from((scope.to - first + step - 1) / step).unwrap_or(0);
    let mut services: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    let mut features: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    let rows = app
        .store
        .totals_steps(&scope.transactions_filter(&app.owners), scope.from, scope.to, step)?;
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
    // The two windows and the trends are independent reads that wait
    // mostly on the store: read side by side. Features and services then
    // come from the memo.
    let (transactions, transactions_before, trends) = std::thread::scope(|threads| {
        let before = threads.spawn(|| analysis.slowest_grouped(&previous, Group::Transaction, by, usize::MAX));
        let trends = threads.spawn(|| trends(app, &scope));
        let transactions = analysis.slowest_grouped(&scope, Group::Transaction, by, usize::MAX);
        (transactions, crate::sync::joined(before), crate::sync::joined(trends))
    });
    let (transactions, transactions_before) = (transactions?, transactions_before?);
    let (service_trends, feature_trends) = trends?;
    let features = analysis.slowest_grouped(&scope, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
    let features_before = analysis.slowest_grouped(&previous, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
    let services = service_summaries(&analysis, &scope, &transactions.rows)?;
    let services_before = service_summaries(&analysis, &previous, &transactions_before.rows)?;
    // Each trend marks the deploys of its service, or of the services
    // that run its feature's transactions.
    let steps = trend_steps(&scope);
    let markers = deploy_markers(&analysis, &scope)?;
    let mut feature_services: HashMap<&str, Vec<&str>> = HashMap::new();
    for row in &transactions.rows {
        if let Some(feature) = &row.feature {
            feature_services.entry(feature).or_default().push(&row.service);
        }
    }
    let markers_of = |services: &[&str]| -> Vec<charts::Marker> {
        markers
            .iter()
            .filter(|m| services.contains(&m.service.as_str()))
            .cloned()
            .collect()
    };

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
                            td { (charts::sparkline("average", service_trends.get(service).unwrap_or(&no_trend), steps, &markers_of(&[service]))) }
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
                            td { (charts::sparkline("average", row.feature.as_ref().and_then(|f| feature_trends.get(f)).unwrap_or(&no_trend), steps,
                                &markers_of(row.feature.as_deref().and_then(|f| feature_services.get(f)).map_or(&[][..], Vec::as_slice)))) }
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
    let problems = analysis.problems(&scope)?;
    let open: Vec<_> = problems.open().take(OVERVIEW_PROBLEMS).cloned().collect();
    let problems_table = html! {
        @if problems.open().count() > open.len() {
            p.context { a href=(carried.href("/problems")) { "All " (problems.open().count()) " open problems" } }
        }
        (super::problems::problems_table(&open, &carried, true))
    };
    let body = html! {
        (filter_bar("/", params, Some(DEFAULT_SINCE), &EDITABLE))
        p.context { "Each number is for the window; the small one is its change against the window of the same length before it." }
        (section("problems", "Performance problems", &page, Some(("problems", &api)), problems_table))
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
