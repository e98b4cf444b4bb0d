//! `/problems` and `/problems/{id}`: performance problems found in kept
//! traces (N+1, sequential calls, a dominant query, time outside segments)
//! and segment counters (calls per run grown),
//! the most time a day first, with their status and team; a problem's page
//! shows its example run with the offending spans marked and the forms that
//! change its triage (posted to `/problems/{id}/triage`, see `ui::triage`).
//! The overview and the transaction page show the same table.

use super::errors::{status_badge, status_line, triage_forms};
use super::*;
use crate::analysis::breakdown::{TraceSegment, TraceSummary};
use crate::analysis::problems::{ProblemGroup, Problems};

/// The window of `/problems` when none is chosen: kept traces are few a
/// day, so a week.
pub(crate) const PROBLEMS_SINCE: &str = "7d";

/// Problems as a table: what, where, cost per run and a day, team, status.
pub(super) fn problems_table(groups: &[ProblemGroup], carried: &Params, with_transaction: bool) -> Markup {
    html! {
        @if groups.is_empty() { p.empty { "No performance problems in the kept traces of this window." } } @else {
            table.rows.problems {
                thead { tr {
                    th { "Problem" } @if with_transaction { th { "Transaction" } }
                    th.num { "Cost per run" } th.num { "Of the run" } th.num { "Kept runs" } th.num { "Runs a day" }
                    th.num { "Time a day" } th { "Team" } th { "First / last seen" }
                } }
                tbody {
                    @for group in groups {
                        tr data-problem=(group.id) data-pattern=(group.pattern.as_str()) {
                            td.name {
                                a href=(carried.href(&format!("/problems/{}", format::url_component(&group.id)))) { (group.title) }
                                @if group.new { " " span.badge.new { "new" } }
                                (status_badge(&group.triage))
                                br; small.statement { (charts::shorten(&group.what(), 120)) }
                            }
                            @if with_transaction {
                                td { a href=(transaction_href(carried, &group.service, &group.transaction)) { (group.transaction) } br; small { (group.service) } }
                            }
                            td.num { (format::duration(group.cost_per_run)) }
                            td.num { (format::percent(group.cost_share)) }
                            td.num { (format::count(group.runs_affected)) " of " (format::count(group.runs_examined)) }
                            td.num { (format::number(group.affected_runs_per_day)) }
                            td.num.cost { (format::duration(group.seconds_per_day)) }
                            td { (group.team.as_deref().unwrap_or("–")) }
                            td.seen { small { (format::nanos(group.first_seen)) br; (format::nanos(group.last_seen)) } }
                        }
                    }
                }
            }
        }
    }
}

/// A line that says what the numbers are.
fn explanation(problems: &Problems) -> Markup {
    html! {
        p.context {
            "Found in " (format::count(problems.runs_examined)) " kept runs (the slowest of each transaction). "
            "Time a day: the transaction's time a day × the share of its kept runs that show the problem × "
            "the share of such a run it costs; kept runs are the slowest, so this is at most what a fix saves."
        }
    }
}

/// Every problem of the window.
pub fn problems(app: &App, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(PROBLEMS_SINCE, now)?;
    scope.check_team(&app.owners)?;
    let problems = app.analysis().problems(&scope)?;
    let page = params.href("/problems");
    let api = api_params(params, PROBLEMS_SINCE);
    let carried = params.only(&CARRIED);
    let pager = Pager::new(params, "/problems", "from", "problems", problems.groups.len())?;
    let open = problems.open().count();
    let body = html! {
        (filter_bar("/problems", params, Some(PROBLEMS_SINCE), &EDITABLE))
        (explanation(&problems))
        (section("problems", &format!("Performance problems ({open} open)"), &page, Some(("problems", &api)), html! {
            (pager.nav())
            (problems_table(pager.page(&problems.groups), &carried, true))
        }))
    };
    Ok(document("Performance problems", Nav::Problems, body))
}

/// One problem: what, where, how much, its status, and its example run.
pub fn problem_group(app: &App, id: &str, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(PROBLEMS_SINCE, now)?;
    let problems = app.analysis().problems(&scope)?;
    let Some(group) = problems.groups.iter().find(|g| g.id == id) else {
        return Err(PageError::NotFound(format!(
            "no performance problem {id} in this window: widen it (since=30d) or go back to the problems"
        )));
    };
    let path = format!("/problems/{}", format::url_component(id));
    let page = params.href(&path);
    let api = api_params(params, PROBLEMS_SINCE);
    let carried = params.only(&CARRIED);
    let action = carried.href(&format!("/problems/{}/triage", format::url_component(id)));
    let example = &group.example;
    let summary = TraceSummary {
        trace_id: example.trace_id.clone(),
        host: example.host.clone(),
        start: example.start,
        duration: example.duration,
        segments: example
            .spans
            .iter()
            .map(|s| TraceSegment {
                kind: s.kind.clone(),
                name: if s.statement.is_empty() {
                    s.name.clone()
                } else {
                    s.statement.clone()
                },
                offset: s.offset,
                duration: s.duration,
            })
            .collect(),
    };
    let marked: Vec<bool> = example.spans.iter().map(|s| s.marked).collect();
    let body = html! {
        (filter_bar(&path, params, Some(PROBLEMS_SINCE), &EDITABLE))
        dl.summary {
            div { dt { "Status" } dd.status data-status=(group.triage.status.as_str()) { (status_line(&group.triage)) } }
            div { dt { "Assigned to" } dd.assigned { (group.triage.assigned_team.as_deref().unwrap_or("–")) } }
            div { dt { "Transaction" } dd { a href=(transaction_href(&carried, &group.service, &group.transaction)) { (group.transaction) } " (" (group.service) ")" } }
            div { dt { "Team" } dd { (group.team.as_deref().unwrap_or("–")) } }
            div { dt { "Per affected run" } dd.count { (format::number(group.count_per_run)) " spans, " (format::duration(group.seconds_per_run)) } }
            div { dt { "Cost per run" } dd.cost { (format::duration(group.cost_per_run)) " (" (format::percent(group.cost_share)) ")" } }
            div { dt { "Kept runs showing it" } dd { (format::count(group.runs_affected)) " of " (format::count(group.runs_examined)) } }
            div { dt { "Runs a day" } dd { (format::number(group.affected_runs_per_day)) } }
            div { dt { "Time a day" } dd.time-a-day { (format::duration(group.seconds_per_day)) } }
            div { dt { "First seen" } dd.first-seen { (format::nanos(group.first_seen)) } }
            div { dt { "Last seen" } dd.last-seen { (format::nanos(group.last_seen)) } }
            div { dt { "Fingerprint" } dd { code { (group.id) } } }
        }
        @if !group.statement.is_empty() { pre.sample.statement { (group.statement) } }
        @if let Some(before) = group.baseline_count_per_run {
            p.growth { "Calls per run: " (format::number(before)) " in the window before, " (format::number(group.count_per_run)) " in this one (every run, from the segment counters)." }
        }
        (triage_forms(&action, &group.triage, &app.owners))
        (section("example", "Example run (the costliest in the window), offending spans marked", &page, Some(("problems", &api)), html! {
            @if example.spans.is_empty() {
                p.empty { "No kept run of this window shows it." }
            } @else {
                p.context {
                    (format::duration(example.duration)) " on " (example.host) " at " (format::nanos(example.start)) " UTC · trace "
                    a.trace-link href=(trace_href(&example.trace_id, example.start)) title="the whole request, across services" { code { (example.trace_id) } } " · the problem costs it " (format::duration(example.cost))
                }
                (charts::waterfall_marked(&summary, &marked))
            }
        }))
    };
    Ok(document(
        &format!("{} · {}", group.title, group.transaction),
        Nav::Problems,
        body,
    ))
}
