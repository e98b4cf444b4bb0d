//! `/errors` and `/errors/{id}`: error groups, per server, against the window
//! before.

use super::*;

/// Error groups as a table: count against the previous window, servers, teams.
pub(super) fn errors_table(groups: &[ErrorGroup], carried: &Params, with_teams: bool) -> Markup {
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
