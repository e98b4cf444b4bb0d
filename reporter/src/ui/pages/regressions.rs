//! `/regressions`: this week against last, ranked by impact.

use super::why;
use super::*;
use crate::analysis::regressions::Group as RegressionGroup;
use crate::analysis::stats;

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
                    th { "#" } th { "What" } th { "Environment" } th { "Team" } th { "Why" } th { "Cause" }
                    th.num { "p50" } th.num { "p95" } th.num { "Average" } th.num { "Runs (before)" } th.num { (impact_label) }
                } }
                tbody {
                    @for (i, row) in rows.iter().enumerate() {
                        tr data-subject=(row.label()) {
                            td.num { (i + 1) }
                            td.name {
                                @match row.group {
                                    RegressionGroup::Transaction => a href=(transaction_href(carried, &row.service, &row.transaction)) { (row.service) " " (row.transaction) },
                                    RegressionGroup::Feature => a href=(carried.href(&format!("/features/{}", format::url_component(row.feature.as_deref().unwrap_or(""))))) { "feature " (row.feature.as_deref().unwrap_or("")) },
                                }
                            }
                            td { (if row.environment.is_empty() { "–" } else { &row.environment }) }
                            td { (row.team.as_deref().unwrap_or("–")) }
                            td { small { (row.verdict.trigger.map(|t| t.to_string()).unwrap_or_default()) } }
                            td.cause {
                                small { (why::cause_text(row.attribution.as_deref())) }
                                @if let Some(evidence) = row.attribution.as_ref().and_then(|a| a.evidence.as_ref()) {
                                    details.evidence { summary { "Slowest kept traces, before and now" } (why::side_by_side(evidence)) }
                                }
                            }
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
        None | Some("transaction") => RegressionGroup::Transaction,
        Some("feature") => RegressionGroup::Feature,
        Some(other) => {
            return Err(PageError::BadRequest(format!(
                "group={other} is not one of transaction, feature"
            )))
        }
    };
    // With a service, its latest deploy: offered as the split, and used
    // with `compare=deploy` (from the deploy on, against as long before).
    let analysis = app.analysis();
    let deploy = match &scope.service {
        Some(_) => analysis.latest_deploy(&scope)?,
        None => None,
    };
    let since_deploy = params.get("compare") == Some("deploy");
    // The windows compared, which the causes are found between too.
    let (current, previous) = match (&deploy, since_deploy) {
        (Some(d), true) => (
            Scope {
                from: d.minute,
                ..scope.clone()
            },
            Scope {
                from: d.minute - (scope.to - d.minute),
                to: d.minute,
                ..scope.clone()
            },
        ),
        _ => (scope.clone(), scope.previous()),
    };
    // Asked to split at a deploy that cannot be had (no service, as when
    // the form's service is cleared, or none recorded): the window against
    // the one before, saying why, rather than a page of its own.
    let mut no_split = None;
    let comparison = match (&deploy, since_deploy) {
        (Some(_), true) => analysis.compare_against(&current, &previous, &RegressionRule::default(), group)?,
        (None, true) => {
            no_split = Some(match &scope.service {
                None => "Comparing since a deploy needs a service: choose one, then its latest deploy is the split. \
                         Meanwhile, this window against the one before."
                    .to_owned(),
                Some(service) => format!(
                    "No deploy of {service} is recorded before this window's end (a deploy is a new service.version \
                     in what it sends): this window against the one before instead."
                ),
            });
            analysis.compare(&scope, &RegressionRule::default(), group)?
        }
        (_, false) => analysis.compare(&scope, &RegressionRule::default(), group)?,
    };
    let page = params.href("/regressions");
    let api = api_params(params, REGRESSIONS_SINCE);
    let carried = params.only(&CARRIED);
    let grouped = group == RegressionGroup::Feature;
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
    // Each finding shown names its cause.
    let analysis = app.analysis();
    let mut worse_rows = worse.page(&comparison.regressions).to_vec();
    analysis.attribute_rows(&current, &previous, &mut worse_rows)?;
    let mut better_rows = better.page(&comparison.improvements).to_vec();
    analysis.attribute_rows(&current, &previous, &mut better_rows)?;
    let body = html! {
        (filter_bar("/regressions", params, Some(REGRESSIONS_SINCE), &EDITABLE))
        p.ranks {
            "Per "
            @if grouped { a href=(params.with("group", None).href("/regressions")) { "transaction" } " · " strong { "feature" } }
            @else { strong { "transaction" } " · " a href=(params.with("group", Some("feature")).href("/regressions")) { "feature" } }
            ". Each period is read in hourly blocks, compared within the same hours of the day; "
            "a change counts when its test stays significant across every comparison on this page "
            "(q < 0.01), it is at least 10%, and its interval excludes changes under 5%; "
            "each period needs 100 runs to be judged. "
            "The cause is the segment, host, traffic mix or release that explains most of the change of mean time per run."
        }
        @if let Some(d) = &deploy {
            p.deploy data-deploy=(d.version) {
                @if since_deploy {
                    "Since the deploy of " strong { (d.service) " " (d.version) } " (after " (d.previous_version) ") at "
                    (format::utc(d.minute, "%Y-%m-%d %H:%M UTC")) ", against as long a time before it. "
                    a href=(params.with("compare", None).href("/regressions")) { "This window against the one before instead" }
                } @else {
                    "Latest deploy: " strong { (d.service) " " (d.version) } " at " (format::utc(d.minute, "%Y-%m-%d %H:%M UTC")) ". "
                    a href=(params.with("compare", Some("deploy")).href("/regressions")) { "Compare since it, against as long before" }
                }
            }
        }
        @if let Some(note) = &no_split {
            p.note.advice.no-split { (note) " " a href=(params.with("compare", None).href("/regressions")) { "Leave the deploy split" } }
        }
        @if let Some(note) = comparison.coverage.shortfall() {
            p.note.advice { (note) }
        }
        (section("regressions", "Regressions", &page, Some(("regressions", &api)), html! {
            (worse.nav())
            (regression_table(&worse_rows, &carried, "Extra time"))
        }))
        (section("improvements", "Improvements", &page, Some(("regressions", &api)), html! {
            (better.nav())
            (regression_table(&better_rows, &carried, "Time saved"))
        }))
        (section("too-little-traffic", "Unchanged, and not judged", &page, None, html! {
            p {
                (format::count(comparison.unchanged.len() as u64)) " judged unchanged. "
                @if comparison.too_little_traffic.is_empty() {
                    "Every transaction had the traffic to be judged."
                } @else {
                    (format::count(comparison.too_little_traffic.len() as u64)) " not judged: too little traffic in one of the windows (fewer runs than the rule's minimum)."
                }
            }
            @if !comparison.unchanged.is_empty() {
                details.unchanged { summary { "Why each was not called (the busiest first)" }
                    ul { @for row in comparison.unchanged.iter().take(50) {
                        li {
                            @match row.group {
                                RegressionGroup::Transaction => a href=(format!("{}#why", transaction_href(&carried, &row.service, &row.transaction))) { (row.label()) },
                                RegressionGroup::Feature => (row.label()),
                            }
                            " — " (stats::reason(&row.verdict, &RegressionRule::default(), None))
                        }
                    } }
                }
            }
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
