//! `/errors` and `/errors/{id}`: error groups, per server, against the window
//! before, with their status (open, resolved, regressed, ignored), the team
//! they are assigned to, and on a group's page the forms that change them
//! (posted to `/errors/{id}/triage`, see `ui::triage`).

use super::*;
use crate::analysis::triage::{GroupTriage, Status};

/// A group's status as a badge: none when open and unassigned.
pub(super) fn status_badge(triage: &GroupTriage) -> Markup {
    html! {
        @match triage.status {
            Status::Open => {},
            status => { " " span.badge.(status.as_str()) { (status.as_str()) } },
        }
        @if let Some(team) = &triage.assigned_team { " " span.badge.assigned { "→ " (team) } }
    }
}

/// `2026-12-05 09:00 UTC` for a unix minute.
fn minute_utc(minute: i64) -> String {
    format::utc(minute, "%Y-%m-%d %H:%M UTC")
}

/// `2026-12-05 09:00 UTC` for unix nanoseconds; `–` for none.
fn nanos_utc(nanos: u64) -> String {
    if nanos == 0 {
        return "–".to_owned();
    }
    minute_utc(i64::try_from(nanos / 60_000_000_000).unwrap_or(i64::MAX))
}

/// Error groups as a table: count against the previous window, servers, teams.
pub(super) fn errors_table(groups: &[ErrorGroup], carried: &Params, with_teams: bool) -> Markup {
    html! {
        @if groups.is_empty() { p.empty { "No errors in this window." } } @else {
            table.rows.errors {
                thead { tr {
                    th { "Error" } th { "Location" } th.num { "Count" } th.num { "Window before" } th.num { "Increase" }
                    th { "Per server" } th { "First / last seen" } @if with_teams { th { "Teams" } }
                } }
                tbody {
                    @for group in groups {
                        tr data-error=(group.id) {
                            td.name {
                                a href=(carried.href(&format!("/errors/{}", format::url_component(&group.id)))) { (charts::shorten(&group.title, 120)) }
                                br; small { (group.error_type) }
                                @if group.new { " " span.badge.new { "new" } }
                                (status_badge(&group.triage))
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
                            td.seen { small { (minute_utc(group.first_seen_minute)) br; (nanos_utc(group.last_seen)) } }
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
    let path = format!("/errors/{}", format::url_component(id));
    // A group with nothing in this window (a link from an older email, a
    // window chosen by hand) is shown from the whole history kept, and the
    // page says so; only a group the store never held is not found.
    let (group, absent) = match groups.into_iter().find(|g| g.id == id) {
        Some(group) => (group, None),
        None => {
            let history = Scope {
                from: 0,
                to: now + 1,
                ..scope.clone()
            };
            let none = Scope {
                from: 0,
                to: 0,
                ..scope.clone()
            };
            let Some(group) = app
                .analysis()
                .errors_against(&history, &none)?
                .into_iter()
                .find(|g| g.id == id)
            else {
                return Err(PageError::NotFound(format!(
                    "no error group {id} in what the store holds (with these filters): go back to the errors"
                )));
            };
            let note = absent_note(&group, &scope, params, &path);
            (group, Some(note))
        }
    };
    let group = &group;
    let page = params.href(&path);
    let api = api_params(params, DEFAULT_SINCE);
    let carried = params.only(&CARRIED);
    let servers: Vec<(String, f64)> = group
        .servers
        .iter()
        .take(20)
        .map(|s| (format!("{} ({})", s.host, s.service), s.count as f64))
        .collect();
    let triage_action = params
        .only(&CARRIED)
        .href(&format!("/errors/{}/triage", format::url_component(id)));
    let body = html! {
        (filter_bar(&path, params, Some(DEFAULT_SINCE), &EDITABLE))
        @if let Some(note) = &absent { (note) }
        dl.summary {
            div { dt { "Status" } dd.status data-status=(group.triage.status.as_str()) { (status_line(&group.triage)) } }
            div { dt { "Assigned to" } dd.assigned { (group.triage.assigned_team.as_deref().unwrap_or("–")) } }
            div { dt { "Type" } dd { (group.error_type) } }
            div { dt { "Location" } dd { (group.location) } }
            div { dt { "Count" } dd { (format::count(group.count)) } }
            div { dt { "Window before" } dd { (format::count(group.previous_count)) } }
            div { dt { "First seen" } dd.first-seen { (minute_utc(group.first_seen_minute)) } }
            div { dt { "Last seen" } dd.last-seen { (nanos_utc(group.last_seen)) } }
            div { dt { "Teams" } dd { (if group.teams.is_empty() { "–".to_owned() } else { group.teams.join(", ") }) } }
            div { dt { "Fingerprint" } dd { code { (group.id) } @if group.custom { " (the service's own)" } } }
        }
        (triage_forms(&triage_action, &group.triage, &app.owners))
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
            (section("stacktrace", "Stack trace (the latest sent)", &page, None, html! { pre.sample.stacktrace { (group.stacktrace) } }))
        }
    };
    Ok(document(&charts::shorten(&group.title, 90), Nav::Errors, body))
}

/// What a group's page says when the group has no occurrence in its
/// window: the window, its history's span and links to the day it was last
/// seen and to all of it.
fn absent_note(group: &ErrorGroup, scope: &Scope, params: &Params, path: &str) -> Markup {
    let last_minute = i64::try_from(group.last_seen / 60_000_000_000).unwrap_or(i64::MAX);
    let day = last_minute.div_euclid(1_440) * 1_440;
    let date = |minute: i64| format::utc(minute, "%Y-%m-%d");
    let last_day = params
        .with("since", Some(&date(day)))
        .with("until", Some(&date(day + 1_440)))
        .href(path);
    let everything = params
        .with("since", Some(&date(group.first_seen_minute)))
        .with("until", None)
        .href(path);
    html! {
        p.note.advice.absent {
            "No occurrence of this group between " (minute_utc(scope.from)) " and " (minute_utc(scope.to)) ". "
            "Below is all of its history the store keeps: " (format::count(group.count)) " occurrences, "
            "first seen " (minute_utc(group.first_seen_minute)) ", last seen " (nanos_utc(group.last_seen)) ". "
            "Open " a href=(last_day) { "the day it was last seen" } " or " a href=(everything) { "its whole history" } "."
        }
    }
}

/// `Regressed: resolved 2026-12-06 10:00 UTC (by cli), seen since`, and the like.
pub(super) fn status_line(triage: &GroupTriage) -> String {
    let when = |at: Option<i64>| {
        at.map(|s| format!("{} (by {})", minute_utc(s.div_euclid(60)), triage.decided_by))
            .unwrap_or_default()
    };
    match triage.status {
        Status::Open if triage.ignore_until.is_some() || triage.ignore_count.is_some() => {
            format!("Open: its ignore ran out (ignored {})", when(triage.decided_at))
        }
        Status::Open => "Open".to_owned(),
        Status::Resolved => format!("Resolved {}", when(triage.decided_at)),
        Status::Regressed => format!("Regressed: resolved {}, seen again since", when(triage.decided_at)),
        Status::Ignored => {
            let mut line = format!("Ignored {}", when(triage.decided_at));
            if let Some(until) = triage.ignore_until {
                line.push_str(&format!(", until {}", minute_utc(until.div_euclid(60))));
            }
            if let Some(count) = triage.ignore_count {
                let since = triage.since_decided.unwrap_or(0);
                line.push_str(&format!(
                    ", until it occurs {} more times ({} so far)",
                    format::count(count),
                    format::count(since)
                ));
            }
            line
        }
    }
}

/// The forms that change a group's triage: resolve or reopen, ignore
/// (with an optional date or count), assign to a team of `owners.toml`.
pub(super) fn triage_forms(action: &str, triage: &GroupTriage, owners: &crate::owners::Owners) -> Markup {
    let open_again = matches!(triage.status, Status::Resolved | Status::Ignored);
    html! {
        div.triage {
            form.custom method="post" action=(action) {
                @if open_again {
                    input type="hidden" name="action" value="reopen";
                    button type="submit" { "Reopen" }
                } @else {
                    input type="hidden" name="action" value="resolve";
                    button type="submit" { "Resolve" }
                }
            }
            form.custom method="post" action=(action) {
                input type="hidden" name="action" value="ignore";
                label { "until " input type="text" name="until" placeholder="14d or 2026-12-31" size="14"; }
                label { "or " input type="number" name="count" min="1" placeholder="count" size="8"; " more" }
                button type="submit" { "Ignore" }
            }
            form.custom method="post" action=(action) {
                input type="hidden" name="action" value="assign";
                label { "team "
                    select name="team" {
                        option value="" { "(nobody)" }
                        @for team in owners.teams() {
                            option value=(team.name) selected[triage.assigned_team.as_deref() == Some(team.name.as_str())] { (team.label()) }
                        }
                    }
                }
                button type="submit" { "Assign" }
            }
        }
    }
}
