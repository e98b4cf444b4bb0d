//! The digest as an HTML email body: a whole document with inline styles only
//! (as mail clients want), a [`maud`] template, so every string from the data
//! is escaped.

use maud::{html, Markup, DOCTYPE};

use super::{
    group_change, one_line, ordered, safe_url, seen_line, server_parts, text_summary, truncate, Digest, DigestGroup,
    EMAIL_MAX_GROUPS, PROBLEMS_HEADING, SAMPLE_CHARS, SERVICE_CHARS, TYPE_CHARS,
};
use crate::format;

/// `label` linked to `url`, or the bare label when the URL is not a plain http(s) URL.
fn link(url: &str, label: &str) -> Markup {
    html! {
        @match safe_url(url) {
            Some(url) => a href=(url) style="color:#0b57d0;" { (label) },
            None => (label),
        }
    }
}

/// The digest as an HTML email body: a whole document, inline styles only (as
/// mail clients want), every string from the data escaped.
pub fn render_html(digest: &Digest) -> String {
    let groups = ordered(digest);
    let title = format!("Errors on {}", one_line(&digest.day));
    let page = html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { (title) } }
            body style="margin:0;padding:16px;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328;" {
                h1 style="font-size:20px;margin:0 0 8px;" {
                    (title) " " span style="font-weight:normal;color:#59636e;" { "(" (one_line(&digest.time_zone)) ")" }
                }
                @if let Some(late) = &digest.late {
                    p style="margin:0 0 16px;color:#9a6700;font-weight:600;" { (late.sentence()) }
                }
                @if groups.is_empty() {
                    p { "No errors yesterday." }
                    @if let Some(ignored) = digest.ignored_line() { p style="color:#59636e;" { (ignored) } }
                } @else {
                    p style="margin:0 0 16px;" {
                        (text_summary(digest, groups.len())) " " (link(&digest.full_list_url(), "Open in Kuroko"))
                    }
                    table role="presentation" cellpadding="6" cellspacing="0" style="border-collapse:collapse;width:100%;" {
                        tr style="text-align:left;color:#59636e;" {
                            th { "Error" } th { "Servers" } th style="text-align:right;" { "Count" } th { "Change" }
                        }
                        @for group in groups.iter().take(EMAIL_MAX_GROUPS) { (group_row(group)) }
                    }
                    @if groups.len() > EMAIL_MAX_GROUPS {
                        p {
                            "…and " (format::count((groups.len() - EMAIL_MAX_GROUPS) as u64)) " more groups: "
                            (link(&digest.full_list_url(), "full list"))
                        }
                    }
                }
                @if !digest.problems.is_empty() {
                    h2 style="font-size:16px;margin:24px 0 8px;" { (PROBLEMS_HEADING) }
                    ul style="margin:0;padding-left:20px;" {
                        @for problem in &digest.problems {
                            li style="margin:0 0 8px;" {
                                strong { (link(&problem.link, &one_line(&problem.title))) }
                                " in " (truncate(&one_line(&problem.transaction), TYPE_CHARS))
                                " (" (truncate(&one_line(&problem.service), SERVICE_CHARS)) ")"
                                br;
                                code style="font-family:Menlo,Consolas,monospace;font-size:12px;background:#f6f8fa;" {
                                    (truncate(&one_line(&problem.what), SAMPLE_CHARS))
                                }
                                br; small style="color:#59636e;" { (problem.cost()) }
                            }
                        }
                    }
                }
            }
        }
    };
    let mut out = page.into_string();
    out.push('\n');
    out
}

fn group_row(group: &DigestGroup) -> Markup {
    let name = truncate(&one_line(&group.error_type), TYPE_CHARS);
    let name = if name.is_empty() { "error".to_string() } else { name };
    let sample = if group.sample_message.trim().is_empty() {
        &group.title
    } else {
        &group.sample_message
    };
    html! {
        tr style="border-top:1px solid #d1d9e0;vertical-align:top;" {
            td {
                @if group.new {
                    span style="background:#1a7f37;color:#ffffff;border-radius:3px;padding:0 4px;font-size:12px;" { "NEW" } " "
                } @else if group.regressed {
                    span style="background:#cf222e;color:#ffffff;border-radius:3px;padding:0 4px;font-size:12px;" { "REGRESSED" } " "
                }
                strong { (link(&group.link, &name)) }
                @if !sample.trim().is_empty() {
                    br;
                    code style="font-family:Menlo,Consolas,monospace;font-size:12px;background:#f6f8fa;" {
                        (truncate(&one_line(sample), SAMPLE_CHARS))
                    }
                }
                @if let Some(seen) = seen_line(group) {
                    br; small style="color:#59636e;" { (seen) }
                }
                @if !group.assigned_team.is_empty() {
                    br; small style="color:#59636e;" { "Assigned to " (truncate(&one_line(&group.assigned_team), SERVICE_CHARS)) }
                }
            }
            td {
                @for (i, part) in server_parts(&group.servers).iter().enumerate() {
                    @if i > 0 { br; }
                    (part)
                }
            }
            td style="text-align:right;" { (format::count(group.total)) }
            td { (group_change(group)) }
        }
    }
}
