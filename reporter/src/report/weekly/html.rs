//! The weekly report as email HTML.
//!
//! Email HTML is its own dialect: Gmail and Outlook for Windows drop external
//! CSS, web fonts, scripts and SVG, and honour `<style>` blocks only in part.
//! So the layout is tables with inline styles, and charts are PNG images
//! referenced as `cid:` parts of the message, each with alt text and its
//! numbers in a table next to it, for readers who block images.
//!
//! Transaction names, error messages, hosts, feature and team names come from
//! the monitored services and are not trusted: the page is a [`maud`]
//! template, which escapes every value it splices in (attributes are always
//! double-quoted). A link is rendered only when it is a path starting with
//! `/`, so no `javascript:` URL can get in.

use maud::{html, Markup, DOCTYPE};

use super::{
    clean, error_mark, full_url, ignored_line, seen_line, shows_estimates, summary, truncate, DailyPoint, EndpointRow,
    FeatureRow, WeeklyReport, ESTIMATE_NOTE, MAX_MESSAGE_CHARS,
};
use crate::format;
use crate::report::chart::{ChartRef, CHART_HEIGHT, CHART_WIDTH};

const FONT: &str = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;";
const MUTED: &str = "color:#59636e;";
const TABLE: &str = "border-collapse:collapse;width:100%;font-size:13px;margin:0 0 8px 0;";
const TH: &str = "text-align:left;padding:4px 6px;border-bottom:2px solid #d1d9e0;color:#59636e;font-weight:600;";
const TH_NUM: &str = "text-align:right;padding:4px 6px;border-bottom:2px solid #d1d9e0;color:#59636e;\
                      font-weight:600;white-space:nowrap;";
const TD: &str = "padding:4px 6px;border-bottom:1px solid #eaeef2;vertical-align:top;word-break:break-word;";
const TD_NUM: &str =
    "padding:4px 6px;border-bottom:1px solid #eaeef2;vertical-align:top;text-align:right;white-space:nowrap;";
const H2: &str = "font-size:16px;margin:24px 0 8px 0;color:#1f2328;";
const SMALL_MUTED: &str = "font-size:11px;color:#59636e;";
const EMPTY: &str = "font-size:13px;color:#59636e;";

/// Which way a change is good.
#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
    Neither,
}

fn change_color(change: Option<f64>, better: Better, threshold: f64) -> &'static str {
    let Some(c) = change.filter(|c| c.is_finite() && c.abs() >= threshold) else {
        return "#59636e";
    };
    match (better, c > 0.0) {
        (Better::Neither, _) => "#59636e",
        (Better::Lower, true) | (Better::Higher, false) => "#cf222e",
        _ => "#1a7f37",
    }
}

/// `text` as a link when `link` is a usable path of the web UI.
fn linked(report: &WeeklyReport, text: &str, link: &str) -> Markup {
    html! {
        @match full_url(report, link) {
            Some(url) => a href=(url) style="color:#0969da;text-decoration:none;" { (text) },
            None => (text),
        }
    }
}

fn h2(title: &str) -> Markup {
    html! { h2 style=(H2) { (title) } }
}

/// A table's opening and its header row: `(name, numeric)` per column; the
/// rows follow in `rows`.
fn table(columns: &[(&str, bool)], rows: Markup) -> Markup {
    html! {
        table role="presentation" cellpadding="0" cellspacing="0" style=(TABLE) {
            tr {
                @for (name, numeric) in columns {
                    th style=(if *numeric { TH_NUM } else { TH }) { (name) }
                }
            }
            (rows)
        }
    }
}

fn num(value: &str) -> Markup {
    html! { td style=(TD_NUM) { (value) } }
}

/// A number with its change below it, coloured by whether it is better.
fn num_change(value: &str, change: &str, color: &str) -> Markup {
    html! {
        td style=(TD_NUM) { (value) br; span style={ "font-size:11px;color:" (color) ";" } { (change) } }
    }
}

/// The report as email HTML. `charts` are the features' chart images
/// (matched to features by name); each is referenced as `cid:<content_id>`.
pub fn render_html(report: &WeeklyReport, charts: &[ChartRef]) -> String {
    render_html_with(report, charts, |chart| format!("cid:{}", chart.content_id))
}

/// The report as HTML, with each chart's `src` given by `source`: `cid:`
/// references in the email, file names in a preview.
pub(crate) fn render_html_with(
    report: &WeeklyReport,
    charts: &[ChartRef],
    source: impl Fn(&ChartRef) -> String,
) -> String {
    let summary = summary(report);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (super::subject(report)) }
            }
            body style="margin:0;padding:0;background:#f6f8fa;" {
                // The preview line mail clients show after the subject.
                @if let Some(first) = summary.first() {
                    div style="display:none;max-height:0;overflow:hidden;" { (first) }
                }
                table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f6f8fa;" {
                    tr { td align="center" style="padding:16px 8px;" {
                        table role="presentation" width="640" cellpadding="0" cellspacing="0"
                            style={ "width:100%;max-width:640px;background:#ffffff;border:1px solid #d1d9e0;" (FONT) "color:#1f2328;" } {
                            tr { td style="padding:20px 20px 28px 20px;" {
                                (content(report, &summary, charts, &source))
                            } }
                        }
                    } }
                }
            }
        }
    };
    let mut out = page.into_string();
    out.push('\n');
    out
}

/// What the card holds: title, summary, sections and footer.
fn content(
    report: &WeeklyReport,
    summary: &[String],
    charts: &[ChartRef],
    source: &impl Fn(&ChartRef) -> String,
) -> Markup {
    html! {
        h1 style="font-size:20px;margin:0 0 4px 0;" { "Weekly performance: " (report.team_label()) }
        p style={ "margin:0 0 16px 0;" (MUTED) "font-size:13px;" } { (report.week_start) " to " (report.week_end) }
        @if let Some(late) = &report.late {
            p style="margin:0 0 16px 0;color:#9a6700;font-weight:600;" { (late.sentence()) }
        }
        table role="presentation" cellpadding="0" cellspacing="0" style="width:100%;background:#f6f8fa;border-left:4px solid #0969da;" {
            tr { td style="padding:8px 12px;font-size:14px;line-height:1.5;" {
                @for line in summary { div { (line) } }
            } }
        }
        (features_html(report))
        (regressions_html(report))
        @if !report.deploys.is_empty() {
            (h2("Deploys this week"))
            ul style="margin:0 0 8px 0;padding-left:18px;font-size:13px;" {
                @for d in &report.deploys { li { (linked(report, &d.text(), &d.link)) } }
            }
        }
        (endpoints_html(report, "Slowest endpoints (by p95)", &report.slowest))
        (endpoints_html(report, "Most time-consuming endpoints", &report.consumers))
        (problems_html(report))
        (errors_html(report))
        (charts_html(report, charts, source))
        @if shows_estimates(report) {
            p style="margin:16px 0 0 0;font-size:12px;color:#59636e;" { (ESTIMATE_NOTE) }
        }
        p style="margin:24px 0 0 0;font-size:12px;color:#59636e;" {
            "Sent by Kuroko"
            @if let Some(url) = full_url(report, "/") {
                " · " a href=(url) style="color:#0969da;" { "Open the dashboard" }
            }
        }
    }
}

fn features_html(report: &WeeklyReport) -> Markup {
    let columns = [
        ("Feature", false),
        ("Average", true),
        ("p95", true),
        ("Throughput", true),
        ("Apdex", true),
    ];
    html! {
        (h2("Features"))
        @if report.features.is_empty() {
            p style=(EMPTY) { "No feature had runs this week." }
        } @else {
            (table(&columns, html! {
                @for f in &report.features {
                    tr {
                        td style=(TD) { (linked(report, &f.name, &f.link)) }
                        (num_change(&format::duration(f.avg_s), &format::change(f.avg_change),
                            change_color(f.avg_change, Better::Lower, 0.05)))
                        (num_change(&format::percentile(f.p95_s, f.estimated), &format::change(f.p95_change),
                            change_color(f.p95_change, Better::Lower, 0.05)))
                        (num_change(&format::rate(f.throughput_per_min), &format::change(f.throughput_change),
                            change_color(f.throughput_change, Better::Neither, 0.0)))
                        (num_change(&format::apdex(f.apdex), &format::apdex_change(f.apdex_change),
                            change_color(f.apdex_change, Better::Higher, 0.01)))
                    }
                }
            }))
            p style="margin:0;font-size:11px;color:#59636e;" { "Changes are against last week." }
        }
    }
}

fn regressions_html(report: &WeeklyReport) -> Markup {
    let columns = [
        ("Endpoint", false),
        ("Metric", false),
        ("Last week", true),
        ("This week", true),
        ("Change", true),
        ("Significance", true),
        ("Extra time", true),
    ];
    html! {
        (h2("Regressions"))
        @if let Some(note) = &report.regressions_note {
            p style=(EMPTY) { (note) }
        } @else if report.regressions.is_empty() {
            p style=(EMPTY) { "None found this week." }
        } @else {
            (table(&columns, html! {
                @for r in &report.regressions {
                    tr {
                        td style=(TD) {
                            (linked(report, &r.transaction, &r.link)) br;
                            span style=(SMALL_MUTED) { (r.service) }
                        }
                        td style=(TD) { (r.metric) }
                        (num(&format::duration(r.before_s)))
                        (num(&format::duration(r.after_s)))
                        td style={ (TD_NUM) "color:#cf222e;" } { (r.change_text()) }
                        td style=(TD_NUM) { (r.significance_text()) br; span style=(SMALL_MUTED) { (r.test) } }
                        (num(&format::duration(r.impact_s)))
                    }
                    @if !r.cause.is_empty() {
                        tr {
                            td style=(TD) colspan=(columns.len()) {
                                span style=(SMALL_MUTED) { "Why: " } (r.cause_text())
                            }
                        }
                    }
                }
            }))
        }
    }
}

fn endpoints_html(report: &WeeklyReport, title: &str, rows: &[EndpointRow]) -> Markup {
    let columns = [
        ("Endpoint", false),
        ("Calls", true),
        ("Average", true),
        ("p95", true),
        ("p99", true),
        ("Share of time", true),
    ];
    html! {
        @if !rows.is_empty() {
            (h2(title))
            (table(&columns, html! {
                @for e in rows {
                    tr {
                        td style=(TD) {
                            (linked(report, &e.transaction, &e.link)) br;
                            span style=(SMALL_MUTED) {
                                (e.service)
                                @if let Some(feature) = &e.feature { " · " (feature) }
                            }
                        }
                        (num(&format::count(e.count)))
                        (num(&format::duration(e.avg_s)))
                        (num(&format::percentile(e.p95_s, e.estimated)))
                        (num(&format::percentile(e.p99_s, e.estimated)))
                        (num(&format::percent(e.share_of_time)))
                    }
                }
            }))
        }
    }
}

fn problems_html(report: &WeeklyReport) -> Markup {
    let columns = [("Problem", false), ("Per run", true), ("Time a day", true)];
    html! {
        @if !report.problems.is_empty() {
            (h2("Performance problems"))
            (table(&columns, html! {
                @for p in &report.problems {
                    tr {
                        td style=(TD) {
                            @if p.new {
                                span style="font-size:11px;font-weight:600;color:#ffffff;padding:0 4px;background:#cf222e;" { "NEW" } " "
                            }
                            (linked(report, &format!("{}: {}", p.title, p.transaction), &p.link)) br;
                            span style={ (SMALL_MUTED) "font-family:Consolas,Menlo,monospace;" } {
                                (truncate(&p.statement, MAX_MESSAGE_CHARS))
                            }
                            br; span style=(SMALL_MUTED) { (p.service) }
                        }
                        (num(&format!("{} × {}", format::number(p.count_per_run), format::duration(p.cost_per_run_s))))
                        (num(&format::duration(p.seconds_per_day)))
                    }
                }
            }))
        }
    }
}

fn errors_html(report: &WeeklyReport) -> Markup {
    let columns = [
        ("Error", false),
        ("This week", true),
        ("Last week", true),
        ("Hosts", false),
    ];
    html! {
        (h2("New and growing errors"))
        @if report.errors.is_empty() {
            p style=(EMPTY) { "None this week." }
        } @else {
            (table(&columns, html! {
                @for e in &report.errors {
                    tr {
                        td style=(TD) {
                            @if let Some(mark) = error_mark(e) {
                                span style={ "font-size:11px;font-weight:600;color:#ffffff;padding:0 4px;background:" (if mark == "growing" { "#9a6700" } else { "#cf222e" }) ";" } { (mark.to_uppercase()) } " "
                            }
                            (linked(report, &e.title, &e.link)) br;
                            span style={ (SMALL_MUTED) "font-family:Consolas,Menlo,monospace;" } {
                                (truncate(&e.message, MAX_MESSAGE_CHARS))
                            }
                            @if let Some(seen) = seen_line(e) {
                                br; span style=(SMALL_MUTED) { (seen) }
                            }
                            @if !e.assigned_team.is_empty() {
                                br; span style=(SMALL_MUTED) { "Assigned to " (e.assigned_team) }
                            }
                        }
                        (num(&format::count(e.count)))
                        (num(&format::count(e.previous_count)))
                        td style={ (TD) "font-size:12px;" } {
                            @for (i, s) in e.servers.iter().enumerate() {
                                @if i > 0 { br; }
                                (s.host) ": " (format::count(s.count))
                            }
                        }
                    }
                }
            }))
        }
        @if let Some(ignored) = ignored_line(report) { p style=(EMPTY) { (ignored) } }
    }
}

/// Alt text for a feature's chart: what it shows and where it ends.
pub fn chart_alt(feature: &FeatureRow) -> String {
    let first = feature.daily.first().map_or("", |p| p.day.as_str());
    let last = feature.daily.last().map_or("", |p| p.day.as_str());
    let last_p95 = feature
        .daily
        .iter()
        .rev()
        .find_map(|p| p.p95_s)
        .map_or_else(|| "no runs".to_owned(), format::duration);
    let deploys: Vec<String> = feature
        .deploys
        .iter()
        .filter_map(|d| Some(format!("{} on {}", clean(&d.label), feature.daily.get(d.day)?.day)))
        .collect();
    let deploys = if deploys.is_empty() {
        String::new()
    } else {
        format!("; deploys marked: {}", deploys.join(", "))
    };
    format!(
        "Daily average and p95 of {} from {first} to {last}; latest p95 {last_p95}{deploys}. The numbers are in the table beside the chart.",
        clean(&feature.name)
    )
}

fn charts_html(report: &WeeklyReport, charts: &[ChartRef], source: &impl Fn(&ChartRef) -> String) -> Markup {
    let with_days: Vec<&FeatureRow> = report.features.iter().filter(|f| !f.daily.is_empty()).collect();
    html! {
        @if !with_days.is_empty() {
            (h2("Daily average and p95 by feature"))
            @for feature in with_days {
                h3 style="font-size:14px;margin:16px 0 6px 0;" { (linked(report, &feature.name, &feature.link)) }
                @if let Some(chart) = charts.iter().find(|c| c.feature == feature.name) {
                    img src=(source(chart)) width=(CHART_WIDTH) height=(CHART_HEIGHT) alt=(chart_alt(feature))
                        style={ "display:block;width:100%;max-width:" (CHART_WIDTH) "px;height:auto;border:0;margin:0 0 6px 0;" };
                }
                (daily_table(&feature.daily))
            }
        }
    }
}

/// The chart's numbers, in two column groups so that weeks of days stay a
/// short table; days without runs are left out and counted under it.
fn daily_table(days: &[DailyPoint]) -> Markup {
    let held: Vec<&DailyPoint> = days.iter().filter(|p| p.avg_s.is_some() || p.p95_s.is_some()).collect();
    let without = days.len() - held.len();
    let rows = held.len().div_ceil(2);
    let shown = |value: Option<f64>| value.map_or_else(|| format::NONE.to_owned(), format::duration);
    html! {
        @if !held.is_empty() {
            table role="presentation" cellpadding="0" cellspacing="0" style={ (TABLE) "font-size:11px;" } {
                tr {
                    @for _ in 0..2.min(held.len()) {
                        th style=(TH) { "Day" } th style=(TH_NUM) { "Average" } th style=(TH_NUM) { "p95" }
                    }
                }
                @for row in 0..rows {
                    tr {
                        @for point in [held.get(row), held.get(row + rows)].into_iter().flatten() {
                            td style=(TD) { (point.day) }
                            (num(&shown(point.avg_s)))
                            (num(&shown(point.p95_s)))
                        }
                    }
                }
            }
        }
        @if without > 0 {
            p style=(SMALL_MUTED) {
                (without) @if without == 1 { " day" } @else { " days" } " without runs not listed."
            }
        }
    }
}
