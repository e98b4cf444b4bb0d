//! The morning error digest: yesterday's errors grouped by fingerprint, rendered
//! for Slack (Block Kit, through an incoming webhook) and for email (plain text
//! and HTML).
//!
//! The digest is a view model ([`Digest`]) that the analysis layer fills in;
//! nothing here reads the store, so the rendering can be tested on its own and
//! the analysis can change without touching it. Every renderer presents the
//! groups in the same order ([`compare_groups`]): new groups first, then
//! regressed ones (resolved, and back), then the biggest increases, then the
//! biggest counts. Groups someone ignored are not listed, only counted
//! ([`Digest::ignored_groups`]); a group assigned to a team says which.
//!
//! Error messages come from the monitored services, so they are untrusted: in
//! Slack, `&`, `<` and `>` are escaped as Slack asks, so a message containing
//! `<!channel>` or `<http://evil|click>` can neither ping nor link; in HTML
//! everything is escaped. Slack takes at most 50 blocks per message and 3,000
//! characters per section text: a long digest is split into a few messages and
//! what still does not fit is summarised with a link to the full list, so a
//! digest is never refused for its size. Lengths are counted in characters and
//! cut on character boundaries, never inside a multi-byte character, an HTML
//! entity or a Slack link.
//!
//! The Slack form is [`slack_messages`] (`slack.rs`), the plain-text email
//! body [`render_text`] (`text.rs`) and the HTML one [`render_html`]
//! (`html.rs`, a [`maud`] template); what they share — the order of the
//! groups, their servers and changes, one-line strings — is here.

mod html;
mod slack;
#[cfg(test)]
mod tests;
mod text;

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;

use crate::format;

pub use html::render_html;
pub use slack::{slack_escape, slack_messages, SlackLimits};
pub use text::render_text;

/// How many groups the email forms list before linking to the rest.
pub(crate) const EMAIL_MAX_GROUPS: usize = 100;

/// How many servers a group shows before counting the rest.
const MAX_SERVERS: usize = 5;
/// Display lengths of untrusted strings, in characters, before escaping.
const TYPE_CHARS: usize = 120;
const SAMPLE_CHARS: usize = 300;
const HOST_CHARS: usize = 60;
const SERVICE_CHARS: usize = 40;
/// Slack's limit on a header block's text.
const HEADER_CHARS: usize = 150;

/// Yesterday's errors, grouped by fingerprint: what the digest shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// The day reported, e.g. `2026-11-29`.
    pub day: String,
    /// The time zone the day is taken in, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// The web UI's address, for links, e.g. `https://kuroko.example.com`.
    pub base_url: String,
    /// The groups, in any order: renderers order them with [`compare_groups`].
    pub groups: Vec<DigestGroup>,
    /// Errors on the day, all groups together.
    pub total_errors: u64,
    /// Errors on the day before.
    pub previous_total_errors: u64,
    /// The day's window as the UI's query parameters (`since`, `until`:
    /// RFC 3339), which every link carries.
    pub window: Vec<(String, String)>,
    /// Set when the digest goes out after its time: said at the top.
    pub late: Option<super::late::Late>,
    /// Groups with errors on the day that someone ignored: not listed, and
    /// not in the totals.
    pub ignored_groups: u64,
    /// Their errors on the day.
    pub ignored_errors: u64,
    /// Performance problems first seen on the day, open, the most time a
    /// day first (at most [`MAX_PROBLEMS`]); the digest's section of them
    /// shows only when there are some.
    pub problems: Vec<DigestProblem>,
}

/// Performance problems the digest lists, at most.
pub(crate) const MAX_PROBLEMS: usize = 10;

/// A performance problem first seen on the day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DigestProblem {
    /// Its fingerprint, as the web UI names it.
    pub id: String,
    /// `N+1 queries`, `Sequential calls`, …
    pub title: String,
    /// What it is about, in a line (`12 × SELECT report_rows`).
    pub what: String,
    /// The service.
    pub service: String,
    /// The transaction.
    pub transaction: String,
    /// What it costs an affected run, formatted (`5.3 s`).
    pub cost_per_run: String,
    /// What it costs a day, formatted (`41 min`).
    pub time_a_day: String,
    /// The problem in the web UI (absolute `http(s)` URL), or empty.
    pub link: String,
}

/// The errors of one fingerprint on the day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DigestGroup {
    /// The fingerprint, as the web UI names the group.
    pub fingerprint_id: String,
    /// `exception.type`, e.g. `TimeoutError`.
    pub error_type: String,
    /// The normalised message the group is named by.
    pub title: String,
    /// One message as it was recorded.
    pub sample_message: String,
    /// Occurrences on the day.
    pub total: u64,
    /// Occurrences on the day before.
    pub previous_total: u64,
    /// First seen on the day.
    pub new: bool,
    /// Resolved by someone, and seen again since.
    pub regressed: bool,
    /// The team it is assigned to; empty for none.
    pub assigned_team: String,
    /// Where it happened.
    pub servers: Vec<ServerCount>,
    /// First occurrence ever, formatted in the digest's time zone.
    pub first_seen: String,
    /// Last occurrence, formatted in the digest's time zone.
    pub last_seen: String,
    /// The group in the web UI (absolute `http(s)` URL), or empty.
    pub link: String,
}

/// Occurrences of a group on one server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerCount {
    /// `host.name`.
    pub host: String,
    /// `service.name`.
    pub service: String,
    /// Occurrences on that host and service.
    pub count: u64,
}

impl DigestGroup {
    /// Occurrences on the day minus those on the day before.
    pub fn increase(&self) -> i128 {
        i128::from(self.total) - i128::from(self.previous_total)
    }
}

impl Digest {
    /// Orders the groups as every renderer shows them (see [`compare_groups`]).
    pub(crate) fn sort_groups(&mut self) {
        self.groups.sort_by(compare_groups);
    }

    /// How many groups are new.
    pub(crate) fn new_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.new).count()
    }

    /// How many groups have regressed.
    pub(crate) fn regressed_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.regressed).count()
    }

    /// `2 ignored groups (35 errors) are not listed.`, when there are some.
    pub(crate) fn ignored_line(&self) -> Option<String> {
        (self.ignored_groups > 0).then(|| {
            format!(
                "{} ignored {} ({} {}) not listed.",
                format::count(self.ignored_groups),
                if self.ignored_groups == 1 { "group" } else { "groups" },
                format::count(self.ignored_errors),
                if self.ignored_errors == 1 { "error" } else { "errors" },
            )
        })
    }

    /// The web UI's list of the day's errors, where summaries link to.
    pub(crate) fn full_list_url(&self) -> String {
        let window: Vec<(&str, &str)> = self.window.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        format!(
            "{}{}",
            self.base_url.trim_end_matches('/'),
            crate::report::weekly::ui_path("/errors", &window)
        )
    }
}

/// The heading of the digest's performance problems.
pub(crate) const PROBLEMS_HEADING: &str = "Performance problems new yesterday";

impl DigestProblem {
    /// `N+1 queries in GET /export (shop): 12 × SELECT …`, cut for showing.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} in {} ({}): {}",
            one_line(&self.title),
            truncate(&one_line(&self.transaction), TYPE_CHARS),
            truncate(&one_line(&self.service), SERVICE_CHARS),
            truncate(&one_line(&self.what), SAMPLE_CHARS)
        )
    }

    /// `costs 5.3 s a run, 41 min a day`.
    pub(crate) fn cost(&self) -> String {
        format!("costs {} a run, {} a day", self.cost_per_run, self.time_a_day)
    }
}

/// The digest's order: new groups first (biggest first), then regressed
/// ones (biggest first), then the biggest absolute increase against the day
/// before, then the biggest count; the fingerprint breaks ties so the order
/// is stable.
pub(crate) fn compare_groups(a: &DigestGroup, b: &DigestGroup) -> Ordering {
    b.new
        .cmp(&a.new)
        .then_with(|| if a.new { b.total.cmp(&a.total) } else { Ordering::Equal })
        .then_with(|| b.regressed.cmp(&a.regressed))
        .then_with(|| {
            if a.regressed {
                b.total.cmp(&a.total)
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| b.increase().cmp(&a.increase()))
        .then_with(|| b.total.cmp(&a.total))
        .then_with(|| a.fingerprint_id.cmp(&b.fingerprint_id))
}

fn ordered(digest: &Digest) -> Vec<&DigestGroup> {
    let mut groups: Vec<&DigestGroup> = digest.groups.iter().collect();
    groups.sort_by(|a, b| compare_groups(a, b));
    groups
}

/// `web-1 (api) 800 · web-2 (api) 434 · 3 more servers`, unescaped.
fn servers_line(servers: &[ServerCount]) -> String {
    server_parts(servers).join(" · ")
}

/// The parts of [`servers_line`]: the busiest servers, then how many more.
fn server_parts(servers: &[ServerCount]) -> Vec<String> {
    let mut sorted: Vec<&ServerCount> = servers.iter().collect();
    sorted.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.host, &a.service).cmp(&(&b.host, &b.service)))
    });
    let mut parts: Vec<String> = sorted.iter().take(MAX_SERVERS).map(|s| server_label(s)).collect();
    if sorted.len() > MAX_SERVERS {
        let rest = sorted.len() - MAX_SERVERS;
        parts.push(format!(
            "{} more {}",
            format::count(rest as u64),
            if rest == 1 { "server" } else { "servers" }
        ));
    }
    parts
}

fn server_label(server: &ServerCount) -> String {
    let host = truncate(&one_line(&server.host), HOST_CHARS);
    let host = if host.is_empty() {
        "(unknown host)".to_string()
    } else {
        host
    };
    let service = truncate(&one_line(&server.service), SERVICE_CHARS);
    if service.is_empty() {
        format!("{host} {}", format::count(server.count))
    } else {
        format!("{host} ({service}) {}", format::count(server.count))
    }
}

/// `+120 (+35%)`, `-30 (-12%)`, `+7` (none the day before), `no change`, or `new`.
fn group_change(group: &DigestGroup) -> String {
    if group.new {
        return "new".to_string();
    }
    let delta = group.increase();
    if delta == 0 {
        return "no change".to_string();
    }
    let sign = if delta > 0 { '+' } else { '-' };
    let abs = format::count(u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX));
    if group.previous_total == 0 {
        return format!("{sign}{abs}");
    }
    format!("{sign}{abs} ({})", percent(group.total, group.previous_total))
}

/// `+35% vs the day before (912)`, and its variants.
fn total_change(digest: &Digest) -> String {
    let (now, before) = (digest.total_errors, digest.previous_total_errors);
    if before == 0 {
        return "none the day before".to_string();
    }
    if now == before {
        return format!("as many as the day before ({})", format::count(before));
    }
    format!("{} vs the day before ({})", percent(now, before), format::count(before))
}

/// The relative change from `before` (non-zero) to `now`: `+35%`.
fn percent(now: u64, before: u64) -> String {
    format::change(Some(now as f64 / before as f64 - 1.0))
}

/// At most `max` characters, the last one an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Control characters (newlines included) as spaces: one line of text.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `url` if it is an absolute http(s) URL with nothing that could break out of a link.
fn safe_url(url: &str) -> Option<&str> {
    let plain = url
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | '|' | '"'));
    let web = url.starts_with("https://") || url.starts_with("http://");
    (plain && web && url.len() > "https://".len()).then_some(url)
}

/// `First seen …, last seen …`, as far as they are known.
fn seen_line(group: &DigestGroup) -> Option<String> {
    let first = truncate(&one_line(&group.first_seen), 40);
    let last = truncate(&one_line(&group.last_seen), 40);
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (false, true) => Some(format!("First seen {first}")),
        (true, false) => Some(format!("Last seen {last}")),
        (false, false) => Some(format!("First seen {first}, last seen {last}")),
    }
}

/// `1,234 errors in 3 groups, +35% vs the day before (912); 1 new.`, unescaped.
fn text_summary(digest: &Digest, groups: usize) -> String {
    let mut text = format!(
        "{} errors in {} {}, {}",
        format::count(digest.total_errors),
        format::count(groups as u64),
        if groups == 1 { "group" } else { "groups" },
        total_change(digest)
    );
    let new = digest.new_groups();
    if new > 0 {
        let _ = write!(text, "; {} new", format::count(new as u64));
    }
    let regressed = digest.regressed_groups();
    if regressed > 0 {
        let _ = write!(text, "; {} regressed", format::count(regressed as u64));
    }
    text.push('.');
    if let Some(ignored) = digest.ignored_line() {
        let _ = write!(text, " {ignored}");
    }
    text
}

/// `[NEW] `, `[REGRESSED] ` or nothing: what a group's line starts with.
fn marker(group: &DigestGroup) -> &'static str {
    if group.new {
        "[NEW] "
    } else if group.regressed {
        "[REGRESSED] "
    } else {
        ""
    }
}
