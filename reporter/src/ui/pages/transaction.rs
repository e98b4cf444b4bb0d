//! `/transactions?service=…&transaction=…`: percentiles over time, the latency
//! distribution, where the time goes, its performance problems, the slowest
//! kept traces as waterfalls, and the transaction's errors.

use super::errors::errors_table;
use super::problems::problems_table;
use super::why;
use super::*;

/// At most this many bars in a latency distribution.
const MAX_BINS: i64 = 48;

/// The bins of a latency distribution: `histogram` made coarser until its
/// buckets fit `MAX_BINS` (48), empty buckets between kept as empty bars.
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
    // The service's deploys (new `service.version`s) in the window.
    let deploys = analysis.deploys(&scope)?;
    let markers: Vec<charts::Marker> = deploys.iter().map(charts::Marker::from).collect();
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
    let problems = analysis.problems(&Scope {
        service: Some(service.to_owned()),
        transaction: Some(name.to_owned()),
        ..scope.clone()
    })?;
    let change = why::against_previous(app, &scope, service, name)?;
    let shape = why::shape_note(app, &scope, service, name)?;
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
            (shape)
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
                    " · trace " a.trace-link href=(trace_href(&trace.trace_id, trace.start)) title="the whole request, across services" { code { (trace.trace_id) } }
                }
                (charts::waterfall(trace))
            }
        }
    };
    let title = format!("{service} · {name}");
    let body = html! {
        (filter_bar("/transactions", params, Some(DEFAULT_SINCE), &["environment"]))
        (summary)
        (section("change", "Against the window before", &page, Some(("regressions", &api)), change))
        div.grid {
            (section("percentiles", "Percentiles over time", &page, Some(("timeseries", &api)), html! {
                (charts::line_chart(&percentile_lines, Unit::Seconds, scope.from, scope.to, &markers))
                @if !deploys.is_empty() {
                    ul.deploys {
                        @for d in &deploys {
                            li data-deploy=(d.version) {
                                "Deployed " strong { (d.service) " " (d.version) } " (after " (d.previous_version) ") at "
                                (format::utc(d.minute, "%Y-%m-%d %H:%M UTC"))
                                @if d.environment.is_empty() { } @else { " in " (d.environment) }
                            }
                        }
                    }
                }
            }))
            (section("distribution", "Latency distribution", &page, Some(("slowest", &api)), distribution_chart))
        }
        (section("segments", "Where the time goes", &page, Some(("breakdown", &api)), segments))
        (section("problems", "Performance problems", &page, Some(("problems", &api)), problems_table(&problems.groups, &carried, false)))
        (section("traces", "Slowest kept traces", &page, Some(("breakdown", &api)), traces))
        (section("errors", "Errors", &page, Some(("errors", &api)), html! {
            (errors_pager.nav())
            (errors_table(errors_pager.page(&errors), &carried, false))
        }))
    };
    Ok(document(&title, Nav::Overview, body))
}
