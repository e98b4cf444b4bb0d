//! The weekly report as plain text, the email's alternative part.

use std::fmt::Write as _;

use super::{
    clean, error_mark, full_url, ignored_line, seen_line, shows_estimates, summary, truncate, WeeklyReport,
    ESTIMATE_NOTE, MAX_MESSAGE_CHARS,
};
use crate::format;

/// The report as plain text, the message's alternative for clients that
/// show no HTML; links are full URLs.
pub fn render_text(report: &WeeklyReport) -> String {
    let mut out = String::with_capacity(4096);
    let link = |out: &mut String, path: &str| {
        if let Some(url) = full_url(report, path) {
            let _ = writeln!(out, "    {url}");
        }
    };
    let _ = writeln!(out, "Weekly performance: {}", clean(report.team_label()));
    let _ = writeln!(out, "{} to {}\n", clean(&report.week_start), clean(&report.week_end));
    if let Some(late) = &report.late {
        let _ = writeln!(out, "{}\n", late.sentence());
    }
    for line in summary(report) {
        let _ = writeln!(out, "* {line}");
    }

    let _ = writeln!(out, "\nFEATURES (change against last week)");
    if report.features.is_empty() {
        let _ = writeln!(out, "  No feature had runs this week.");
    }
    for f in &report.features {
        let _ = writeln!(
            out,
            "- {}: avg {} ({}), p95 {} ({}), {} ({}), Apdex {} ({})",
            clean(&f.name),
            format::duration(f.avg_s),
            format::change(f.avg_change),
            format::percentile(f.p95_s, f.estimated),
            format::change(f.p95_change),
            format::rate(f.throughput_per_min),
            format::change(f.throughput_change),
            format::apdex(f.apdex),
            format::apdex_change(f.apdex_change),
        );
        link(&mut out, &f.link);
    }

    let _ = writeln!(out, "\nREGRESSIONS");
    if let Some(note) = &report.regressions_note {
        let _ = writeln!(out, "  {}", clean(note));
    } else if report.regressions.is_empty() {
        let _ = writeln!(out, "  None found this week.");
    }
    for r in &report.regressions {
        let _ = writeln!(
            out,
            "- {} ({}): {} {} -> {} ({}), {} ({}), {} extra time",
            clean(&r.transaction),
            clean(&r.service),
            clean(&r.metric),
            format::duration(r.before_s),
            format::duration(r.after_s),
            r.change_text(),
            r.significance_text(),
            clean(&r.test),
            format::duration(r.impact_s),
        );
        if !r.cause.is_empty() {
            let _ = writeln!(out, "  why: {}", clean(&r.cause_text()));
        }
        link(&mut out, &r.link);
    }

    if !report.deploys.is_empty() {
        let _ = writeln!(out, "\nDEPLOYS THIS WEEK");
        for d in &report.deploys {
            let _ = writeln!(out, "- {}", d.text());
            link(&mut out, &d.link);
        }
    }

    for (title, rows) in [
        ("SLOWEST ENDPOINTS (by p95)", &report.slowest),
        ("MOST TIME-CONSUMING ENDPOINTS", &report.consumers),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for e in rows {
            let _ = writeln!(
                out,
                "- {} ({}): {} calls, avg {}, p95 {}, p99 {}, {} of the time",
                clean(&e.transaction),
                clean(&e.service),
                format::count(e.count),
                format::duration(e.avg_s),
                format::percentile(e.p95_s, e.estimated),
                format::percentile(e.p99_s, e.estimated),
                format::percent(e.share_of_time),
            );
            link(&mut out, &e.link);
        }
    }

    if !report.problems.is_empty() {
        let _ = writeln!(out, "\nPERFORMANCE PROBLEMS");
    }
    for p in &report.problems {
        let marker = if p.new { "[new] " } else { "" };
        let _ = writeln!(
            out,
            "- {marker}{}: {} ({}), {} spans and {} a run, {} a day",
            clean(&p.title),
            clean(&p.transaction),
            clean(&p.service),
            format::number(p.count_per_run),
            format::duration(p.cost_per_run_s),
            format::duration(p.seconds_per_day),
        );
        if !p.statement.is_empty() {
            let _ = writeln!(out, "    {}", clean(&truncate(&p.statement, MAX_MESSAGE_CHARS)));
        }
        link(&mut out, &p.link);
    }

    let _ = writeln!(out, "\nNEW AND GROWING ERRORS");
    if report.errors.is_empty() {
        let _ = writeln!(out, "  None this week.");
    }
    for e in &report.errors {
        let marker = error_mark(e).map_or_else(String::new, |mark| format!("[{mark}] "));
        let _ = writeln!(
            out,
            "- {marker}{}: {} this week, {} last week",
            clean(&e.title),
            format::count(e.count),
            format::count(e.previous_count)
        );
        let _ = writeln!(out, "    {}", clean(&truncate(&e.message, MAX_MESSAGE_CHARS)));
        if !e.servers.is_empty() {
            let hosts: Vec<String> = e
                .servers
                .iter()
                .map(|s| format!("{} {}", clean(&s.host), format::count(s.count)))
                .collect();
            let _ = writeln!(out, "    hosts: {}", hosts.join(", "));
        }
        if let Some(seen) = seen_line(e) {
            let _ = writeln!(out, "    {seen}");
        }
        if !e.assigned_team.is_empty() {
            let _ = writeln!(out, "    assigned to {}", clean(&e.assigned_team));
        }
        link(&mut out, &e.link);
    }
    if let Some(ignored) = ignored_line(report) {
        let _ = writeln!(out, "  {ignored}");
    }
    if shows_estimates(report) {
        let _ = writeln!(out, "\n{ESTIMATE_NOTE}");
    }
    if let Some(url) = full_url(report, "/") {
        let _ = writeln!(out, "\nDashboard: {url}");
    }
    out
}
