//! The digest as a plain-text email body.

use std::fmt::Write as _;

use super::{
    group_change, marker, one_line, ordered, safe_url, seen_line, servers_line, text_summary, truncate, Digest,
    EMAIL_MAX_GROUPS, PROBLEMS_HEADING, SAMPLE_CHARS, SERVICE_CHARS, TYPE_CHARS,
};
use crate::format;

/// The digest as a plain-text email body.
pub fn render_text(digest: &Digest) -> String {
    let groups = ordered(digest);
    let mut out = format!(
        "Errors on {} ({})\n",
        one_line(&digest.day),
        one_line(&digest.time_zone)
    );
    if let Some(late) = &digest.late {
        let _ = writeln!(out, "\n{}", late.sentence());
    }
    if groups.is_empty() {
        out.push_str("\nNo errors yesterday.\n");
        if let Some(ignored) = digest.ignored_line() {
            let _ = writeln!(out, "{ignored}");
        }
        problems(&mut out, digest);
        return out;
    }
    let _ = writeln!(out, "{}\n", text_summary(digest, groups.len()));
    for group in groups.iter().take(EMAIL_MAX_GROUPS) {
        let marker = marker(group);
        let _ = writeln!(
            out,
            "{marker}{}: {}, {}",
            truncate(&one_line(&group.error_type), TYPE_CHARS),
            format::count(group.total),
            group_change(group)
        );
        if !group.title.is_empty() {
            let _ = writeln!(out, "  {}", truncate(&one_line(&group.title), SAMPLE_CHARS));
        }
        if !group.sample_message.is_empty() && group.sample_message != group.title {
            let _ = writeln!(
                out,
                "  Sample: {}",
                truncate(&one_line(&group.sample_message), SAMPLE_CHARS)
            );
        }
        let servers = servers_line(&group.servers);
        if !servers.is_empty() {
            let _ = writeln!(out, "  Servers: {servers}");
        }
        if let Some(seen) = seen_line(group) {
            let _ = writeln!(out, "  {seen}");
        }
        if !group.assigned_team.is_empty() {
            let _ = writeln!(
                out,
                "  Assigned to {}",
                truncate(&one_line(&group.assigned_team), SERVICE_CHARS)
            );
        }
        if let Some(url) = safe_url(&group.link) {
            let _ = writeln!(out, "  {url}");
        }
        out.push('\n');
    }
    if groups.len() > EMAIL_MAX_GROUPS {
        let rest = groups.len() - EMAIL_MAX_GROUPS;
        let _ = writeln!(out, "...and {} more groups.", format::count(rest as u64));
    }
    let _ = writeln!(out, "Full list: {}", digest.full_list_url());
    problems(&mut out, digest);
    out
}

/// The performance problems first seen on the day, when there are some.
fn problems(out: &mut String, digest: &Digest) {
    if digest.problems.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{PROBLEMS_HEADING} ({}):\n", digest.problems.len());
    for problem in &digest.problems {
        let _ = writeln!(out, "- {}", problem.line());
        let _ = writeln!(out, "  {}", problem.cost());
        if let Some(url) = safe_url(&problem.link) {
            let _ = writeln!(out, "  {url}");
        }
    }
}
