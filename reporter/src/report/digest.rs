//! The morning error digest: yesterday's errors grouped by fingerprint, rendered
//! for Slack (Block Kit, through an incoming webhook) and for email (plain text
//! and HTML).
//!
//! The digest is a view model ([`Digest`]) that the analysis layer fills in;
//! nothing here reads the store, so the rendering can be tested on its own and
//! the analysis can change without touching it. Every renderer presents the
//! groups in the same order ([`compare_groups`]): new groups first, then the
//! biggest increases, then the biggest counts.
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

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

/// How many groups the email forms list before linking to the rest.
pub const EMAIL_MAX_GROUPS: usize = 100;

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
    /// Set when the digest goes out after its time: said at the top.
    pub late: Option<super::late::Late>,
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
    pub fn sort_groups(&mut self) {
        self.groups.sort_by(compare_groups);
    }

    /// How many groups are new.
    pub fn new_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.new).count()
    }

    /// The web UI's list of the day's errors, where summaries link to.
    pub fn full_list_url(&self) -> String {
        format!(
            "{}/errors?day={}",
            self.base_url.trim_end_matches('/'),
            url_component(&self.day)
        )
    }
}

/// The digest's order: new groups first (biggest first), then the biggest
/// absolute increase against the day before, then the biggest count; the
/// fingerprint breaks ties so the order is stable.
pub fn compare_groups(a: &DigestGroup, b: &DigestGroup) -> Ordering {
    b.new
        .cmp(&a.new)
        .then_with(|| if a.new { b.total.cmp(&a.total) } else { Ordering::Equal })
        .then_with(|| b.increase().cmp(&a.increase()))
        .then_with(|| b.total.cmp(&a.total))
        .then_with(|| a.fingerprint_id.cmp(&b.fingerprint_id))
}

fn ordered(digest: &Digest) -> Vec<&DigestGroup> {
    let mut groups: Vec<&DigestGroup> = digest.groups.iter().collect();
    groups.sort_by(|a, b| compare_groups(a, b));
    groups
}

/// What one chat message may hold. The defaults are Slack's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlackLimits {
    /// Blocks per message (Slack: 50).
    pub max_blocks: usize,
    /// Characters per section text (Slack: 3,000).
    pub max_section_chars: usize,
    /// Characters of text per message, all blocks together; kept well under
    /// the 40,000 characters past which Slack cuts a message.
    pub max_message_chars: usize,
    /// Messages per digest; groups that do not fit are summarised with a link.
    pub max_messages: usize,
}

impl Default for SlackLimits {
    fn default() -> Self {
        SlackLimits {
            max_blocks: 50,
            max_section_chars: 3_000,
            max_message_chars: 20_000,
            max_messages: 3,
        }
    }
}

impl SlackLimits {
    /// The limits raised to what a message needs at least: a header, a
    /// summary, a divider, one group and the "more groups" line.
    fn usable(self) -> SlackLimits {
        let max_section_chars = self.max_section_chars.max(300);
        SlackLimits {
            max_blocks: self.max_blocks.max(5),
            max_section_chars,
            max_message_chars: self.max_message_chars.max(3 * max_section_chars + HEADER_CHARS),
            max_messages: self.max_messages.max(1),
        }
    }
}

/// The digest's late sentence for Slack and a line break, or nothing.
fn late_line(digest: &Digest) -> String {
    digest
        .late
        .as_ref()
        .map_or_else(String::new, |late| format!("{}\n", slack_escape(&late.sentence())))
}

/// The digest as Slack incoming-webhook payloads (`{"text": …, "blocks": […]}`),
/// to be posted in order. Each obeys `limits`; an empty digest is one short
/// "No errors yesterday" message.
pub fn slack_messages(digest: &Digest, limits: SlackLimits) -> Vec<Value> {
    let limits = limits.usable();
    let groups = ordered(digest);
    let title = truncate(&format!("Errors on {}", one_line(&digest.day)), HEADER_CHARS);
    if groups.is_empty() {
        let text = fit_mrkdwn(
            &format!(
                "{}No errors yesterday ({}, {}).",
                late_line(digest),
                slack_escape(&digest.day),
                slack_escape(&digest.time_zone)
            ),
            limits.max_section_chars,
        );
        return vec![json!({ "text": text, "blocks": [section(text.clone())] })];
    }

    let mut head = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": title, "emoji": false } }),
        section(fit_mrkdwn(
            &slack_summary(digest, groups.len()),
            limits.max_section_chars,
        )),
        json!({ "type": "divider" }),
    ];
    if digest.late.is_some() {
        head.insert(
            1,
            section(fit_mrkdwn(late_line(digest).trim_end(), limits.max_section_chars)),
        );
    }
    let continuation_chars = continuation(digest, limits.max_messages, limits.max_messages).1;
    let more_chars = more_groups(digest, groups.len(), limits).1;

    // Greedy packing: groups fill a message until its blocks or characters
    // run out; the last allowed message keeps room for the "more" line.
    let mut messages: Vec<Vec<Value>> = Vec::new();
    let mut blocks = head;
    let mut chars: usize = blocks.iter().map(block_chars).sum();
    let mut placed = 0;
    for (i, group) in groups.iter().enumerate() {
        let block = section(group_section(group, limits.max_section_chars));
        let len = block_chars(&block);
        let last_message = messages.len() + 1 == limits.max_messages;
        let needs_more_line = last_message && i + 1 < groups.len();
        let (reserve_blocks, reserve_chars) = if needs_more_line { (1, more_chars) } else { (0, 0) };
        let fits = blocks.len() + 1 + reserve_blocks <= limits.max_blocks
            && chars + len + reserve_chars <= limits.max_message_chars;
        if !fits {
            if last_message {
                break;
            }
            messages.push(std::mem::take(&mut blocks));
            blocks.push(Value::Null); // the continuation line, written once the count is known
            chars = continuation_chars;
        }
        chars += len;
        blocks.push(block);
        placed += 1;
    }
    if placed < groups.len() {
        blocks.push(more_groups(digest, groups.len() - placed, limits).0);
    }
    messages.push(blocks);

    let count = messages.len();
    let fallback = truncate(
        &format!(
            "{}Kuroko: {} errors in {} groups on {}",
            if digest.late.is_some() { "[late] " } else { "" },
            super::weekly::format_count(digest.total_errors),
            super::weekly::format_count(groups.len() as u64),
            one_line(&digest.day)
        ),
        HEADER_CHARS,
    );
    messages
        .into_iter()
        .enumerate()
        .map(|(n, mut blocks)| {
            let text = if n == 0 {
                slack_escape(&fallback)
            } else {
                let (line, _) = continuation(digest, n + 1, count);
                let text = line["elements"][0]["text"].as_str().unwrap_or_default().to_string();
                blocks[0] = line;
                text
            };
            json!({ "text": text, "blocks": blocks })
        })
        .collect()
}

fn section(text: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

/// The characters of text a block carries.
fn block_chars(block: &Value) -> usize {
    match block {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(block_chars).sum(),
        Value::Object(fields) => fields
            .iter()
            .filter(|(k, _)| *k == "text" || *k == "elements")
            .map(|(_, v)| block_chars(v))
            .sum(),
        _ => 0,
    }
}

/// The context line that opens message `n` of `count`, and its length.
fn continuation(digest: &Digest, n: usize, count: usize) -> (Value, usize) {
    let text = format!(
        "Errors on {}, continued ({n}/{count})",
        slack_escape(&truncate(&one_line(&digest.day), 40))
    );
    let len = text.chars().count();
    (
        json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": text }] }),
        len,
    )
}

/// The section that summarises `rest` groups left out, and its length.
fn more_groups(digest: &Digest, rest: usize, limits: SlackLimits) -> (Value, usize) {
    let noun = if rest == 1 { "group" } else { "groups" };
    let text = fit_mrkdwn(
        &format!(
            "…and {} more {noun}: {}",
            super::weekly::format_count(rest as u64),
            slack_link(&digest.full_list_url(), "full list")
        ),
        limits.max_section_chars,
    );
    let len = text.chars().count();
    (section(text), len)
}

fn slack_summary(digest: &Digest, groups: usize) -> String {
    let mut text = format!(
        "*{} errors* in *{} {}* on {} ({}), {}",
        super::weekly::format_count(digest.total_errors),
        super::weekly::format_count(groups as u64),
        if groups == 1 { "group" } else { "groups" },
        slack_escape(&truncate(&one_line(&digest.day), 40)),
        slack_escape(&truncate(&one_line(&digest.time_zone), 60)),
        total_change(digest)
    );
    let new = digest.new_groups();
    if new > 0 {
        let _ = write!(text, "; *{} new*", super::weekly::format_count(new as u64));
    }
    let _ = write!(text, " · {}", slack_link(&digest.full_list_url(), "open in Kuroko"));
    text
}

/// One group's section: its name, sample and servers, and its counts. The
/// name and counts always show; the sample and servers share what is left.
fn group_section(group: &DigestGroup, max_chars: usize) -> String {
    let part = max_chars / 4;
    let name = bold_safe(&truncate(&one_line(&group.error_type), TYPE_CHARS));
    let name = fit_mrkdwn(&slack_escape(if name.is_empty() { "error" } else { &name }), part);
    let name = match safe_url(&group.link)
        .map(slack_escape)
        .filter(|url| url.chars().count() <= part)
    {
        Some(url) => format!("*<{url}|{name}>*"),
        None => format!("*{name}*"),
    };
    let head = if group.new { format!(":new: {name}") } else { name };
    let mut counts = format!(
        "*{}* · {}",
        super::weekly::format_count(group.total),
        group_change(group)
    );
    if group.new && !group.first_seen.is_empty() {
        let first_seen = fit_mrkdwn(&slack_escape(&one_line(&group.first_seen)), 40);
        let _ = write!(counts, ", first seen {first_seen}");
    }

    let mut budget = max_chars.saturating_sub(head.chars().count() + 1 + counts.chars().count());
    let mut lines = vec![head];
    let sample = if group.sample_message.trim().is_empty() {
        &group.title
    } else {
        &group.sample_message
    };
    let sample = truncate(&one_line(sample).replace('`', "ˋ"), SAMPLE_CHARS);
    if !sample.trim().is_empty() && budget > 12 {
        let line = format!("`{}`", fit_mrkdwn(&slack_escape(&sample), budget - 3));
        budget -= line.chars().count() + 1;
        lines.push(line);
    }
    let servers = servers_line(&group.servers);
    if !servers.is_empty() && budget > 12 {
        lines.push(fit_mrkdwn(&slack_escape(&servers), budget - 1));
    }
    lines.push(counts);
    fit_mrkdwn(&lines.join("\n"), max_chars)
}

/// `web-1 (api) 800 · web-2 (api) 434 · 3 more servers`, unescaped.
fn servers_line(servers: &[ServerCount]) -> String {
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
            super::weekly::format_count(rest as u64),
            if rest == 1 { "server" } else { "servers" }
        ));
    }
    parts.join(" · ")
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
        format!("{host} {}", super::weekly::format_count(server.count))
    } else {
        format!("{host} ({service}) {}", super::weekly::format_count(server.count))
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
    let abs = super::weekly::format_count(u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX));
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
        return format!("as many as the day before ({})", super::weekly::format_count(before));
    }
    format!(
        "{} vs the day before ({})",
        percent(now, before),
        super::weekly::format_count(before)
    )
}

/// The signed relative change from `before` (non-zero) to `now`, rounded.
fn percent(now: u64, before: u64) -> String {
    let change = (now as f64 - before as f64) * 100.0 / before as f64;
    format!("{change:+.0}%")
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

/// Bold is `*…*` in mrkdwn: a `*` inside would end it.
fn bold_safe(s: &str) -> String {
    s.replace('*', "∗")
}

/// Escapes what Slack parses in text: `&`, `<` and `>`, as Slack's docs ask;
/// and breaks `@channel`, `@here` and `@everyone` with a zero-width space in
/// case a client still parses them bare.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                let rest = &s[i + 1..];
                let word: String = rest.chars().take(8).collect::<String>().to_lowercase();
                if ["channel", "here", "everyone"].iter().any(|w| word.starts_with(w)) {
                    out.push('\u{200B}');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A link in mrkdwn, or the bare label when the URL is not a plain http(s) URL.
fn slack_link(url: &str, label: &str) -> String {
    match safe_url(url) {
        Some(url) => format!("<{}|{}>", slack_escape(url), slack_escape(label)),
        None => slack_escape(label),
    }
}

/// `url` if it is an absolute http(s) URL with nothing that could break out of a link.
fn safe_url(url: &str) -> Option<&str> {
    let plain = url
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | '|' | '"'));
    let web = url.starts_with("https://") || url.starts_with("http://");
    (plain && web && url.len() > "https://".len()).then_some(url)
}

/// Percent-encodes all but unreserved characters, for a URL's query value.
fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escaped mrkdwn cut to `max` characters, ending in an ellipsis when cut,
/// without splitting an entity (`&amp;`) or a link (`<url|label>`).
fn fit_mrkdwn(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&') {
        if !cut[amp..].contains(';') {
            cut.truncate(amp);
        }
    }
    if let Some(open) = cut.rfind('<') {
        if !cut[open..].contains('>') {
            cut.truncate(open);
        }
    }
    cut.push('…');
    cut
}

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
        return out;
    }
    let _ = writeln!(out, "{}\n", text_summary(digest, groups.len()));
    for group in groups.iter().take(EMAIL_MAX_GROUPS) {
        let marker = if group.new { "[NEW] " } else { "" };
        let _ = writeln!(
            out,
            "{marker}{}: {}, {}",
            truncate(&one_line(&group.error_type), TYPE_CHARS),
            super::weekly::format_count(group.total),
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
        if let Some(url) = safe_url(&group.link) {
            let _ = writeln!(out, "  {url}");
        }
        out.push('\n');
    }
    if groups.len() > EMAIL_MAX_GROUPS {
        let rest = groups.len() - EMAIL_MAX_GROUPS;
        let _ = writeln!(out, "...and {} more groups.", super::weekly::format_count(rest as u64));
    }
    let _ = writeln!(out, "Full list: {}", digest.full_list_url());
    out
}

fn text_summary(digest: &Digest, groups: usize) -> String {
    let mut text = format!(
        "{} errors in {} {}, {}",
        super::weekly::format_count(digest.total_errors),
        super::weekly::format_count(groups as u64),
        if groups == 1 { "group" } else { "groups" },
        total_change(digest)
    );
    let new = digest.new_groups();
    if new > 0 {
        let _ = write!(text, "; {} new", super::weekly::format_count(new as u64));
    }
    text.push('.');
    text
}

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

/// Escapes text for HTML content and attribute values.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn html_link(url: &str, label: &str) -> String {
    match safe_url(url) {
        Some(url) => format!(
            "<a href=\"{}\" style=\"color:#0b57d0;\">{}</a>",
            html_escape(url),
            html_escape(label)
        ),
        None => html_escape(label),
    }
}

/// The digest as an HTML email body: a whole document, inline styles only (as
/// mail clients want), every string from the data escaped.
pub fn render_html(digest: &Digest) -> String {
    let groups = ordered(digest);
    let title = format!("Errors on {}", one_line(&digest.day));
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"margin:0;padding:16px;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
         font-size:14px;color:#1f2328;\">\n<h1 style=\"font-size:20px;margin:0 0 8px;\">{} \
         <span style=\"font-weight:normal;color:#59636e;\">({})</span></h1>\n",
        html_escape(&title),
        html_escape(&title),
        html_escape(&one_line(&digest.time_zone))
    );
    if let Some(late) = &digest.late {
        let _ = writeln!(
            out,
            "<p style=\"margin:0 0 16px;color:#9a6700;font-weight:600;\">{}</p>",
            html_escape(&late.sentence())
        );
    }
    if groups.is_empty() {
        out.push_str("<p>No errors yesterday.</p>\n</body></html>\n");
        return out;
    }
    let _ = writeln!(
        out,
        "<p style=\"margin:0 0 16px;\">{} {}</p>",
        html_escape(&text_summary(digest, groups.len())),
        html_link(&digest.full_list_url(), "Open in Kuroko")
    );
    out.push_str(
        "<table role=\"presentation\" cellpadding=\"6\" cellspacing=\"0\" style=\"border-collapse:collapse;width:100%;\">\n\
         <tr style=\"text-align:left;color:#59636e;\"><th>Error</th><th>Servers</th>\
         <th style=\"text-align:right;\">Count</th><th>Change</th></tr>\n",
    );
    for group in groups.iter().take(EMAIL_MAX_GROUPS) {
        html_group_row(&mut out, group);
    }
    out.push_str("</table>\n");
    if groups.len() > EMAIL_MAX_GROUPS {
        let rest = groups.len() - EMAIL_MAX_GROUPS;
        let _ = writeln!(
            out,
            "<p>&hellip;and {} more groups: {}</p>",
            super::weekly::format_count(rest as u64),
            html_link(&digest.full_list_url(), "full list")
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn html_group_row(out: &mut String, group: &DigestGroup) {
    let name = truncate(&one_line(&group.error_type), TYPE_CHARS);
    let name = if name.is_empty() { "error".to_string() } else { name };
    let badge = if group.new {
        "<span style=\"background:#1a7f37;color:#ffffff;border-radius:3px;padding:0 4px;font-size:12px;\">NEW</span> "
    } else {
        ""
    };
    let _ = write!(
        out,
        "<tr style=\"border-top:1px solid #d1d9e0;vertical-align:top;\"><td>{badge}<strong>{}</strong>",
        html_link(&group.link, &name)
    );
    let sample = if group.sample_message.trim().is_empty() {
        &group.title
    } else {
        &group.sample_message
    };
    if !sample.trim().is_empty() {
        let _ = write!(
            out,
            "<br><code style=\"font-family:Menlo,Consolas,monospace;font-size:12px;background:#f6f8fa;\">{}</code>",
            html_escape(&truncate(&one_line(sample), SAMPLE_CHARS))
        );
    }
    if let Some(seen) = seen_line(group) {
        let _ = write!(
            out,
            "<br><small style=\"color:#59636e;\">{}</small>",
            html_escape(&seen)
        );
    }
    let servers = servers_line(&group.servers);
    let _ = writeln!(
        out,
        "</td><td>{}</td><td style=\"text-align:right;\">{}</td><td>{}</td></tr>",
        html_escape(&servers).replace(" · ", "<br>"),
        super::weekly::format_count(group.total),
        html_escape(&group_change(group))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, total: u64, previous: u64, new: bool) -> DigestGroup {
        DigestGroup {
            fingerprint_id: id.to_string(),
            error_type: "TimeoutError".to_string(),
            title: "timed out after ? ms".to_string(),
            sample_message: "timed out after 500 ms".to_string(),
            total,
            previous_total: previous,
            new,
            servers: vec![ServerCount {
                host: "web-1".to_string(),
                service: "api".to_string(),
                count: total,
            }],
            first_seen: "2026-11-29 08:14".to_string(),
            last_seen: "2026-11-29 23:59".to_string(),
            link: format!("https://kuroko.example.com/errors/{id}"),
        }
    }

    fn digest(groups: Vec<DigestGroup>) -> Digest {
        let total_errors = groups.iter().map(|g| g.total).sum();
        let previous_total_errors = groups.iter().map(|g| g.previous_total).sum();
        Digest {
            day: "2026-11-29".to_string(),
            time_zone: "Europe/Paris".to_string(),
            base_url: "https://kuroko.example.com/".to_string(),
            groups,
            total_errors,
            previous_total_errors,
            late: None,
        }
    }

    /// Every text of every block, for searching.
    fn texts(message: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for block in message["blocks"].as_array().unwrap() {
            if let Some(t) = block["text"]["text"].as_str() {
                out.push(t.to_string());
            }
            for e in block["elements"].as_array().into_iter().flatten() {
                out.push(e["text"].as_str().unwrap().to_string());
            }
        }
        out
    }

    fn assert_within_limits(messages: &[Value], limits: SlackLimits) {
        assert!(!messages.is_empty() && messages.len() <= limits.max_messages);
        for m in messages {
            let blocks = m["blocks"].as_array().unwrap();
            assert!(blocks.len() <= limits.max_blocks, "{} blocks", blocks.len());
            assert!(m["text"].as_str().is_some_and(|t| !t.is_empty()));
            let mut total = 0;
            for b in blocks {
                let kind = b["type"].as_str().unwrap();
                assert!(["header", "section", "divider", "context"].contains(&kind), "{kind}");
                if kind == "header" {
                    assert!(b["text"]["text"].as_str().unwrap().chars().count() <= HEADER_CHARS);
                }
                if kind == "section" {
                    assert_eq!(b["text"]["type"], "mrkdwn");
                    let n = b["text"]["text"].as_str().unwrap().chars().count();
                    assert!(n <= limits.max_section_chars, "section of {n} chars");
                }
            }
            for t in texts(m) {
                total += t.chars().count();
                // Neither a ping nor a link from the data: every `<` opens one of ours.
                for link in t.split('<').skip(1) {
                    assert!(link.starts_with("https://kuroko.example.com/"), "stray link in {t:?}");
                }
            }
            assert!(total <= limits.max_message_chars);
        }
    }

    #[test]
    fn new_groups_first_then_biggest_increase_then_biggest_count() {
        let mut d = digest(vec![
            group("steady-big", 900, 900, false),
            group("up-10", 20, 10, false),
            group("new-small", 3, 0, true),
            group("down", 5, 50, false),
            group("up-100", 150, 50, false),
            group("new-big", 40, 0, true),
            group("steady-small", 7, 7, false),
        ]);
        d.sort_groups();
        let order: Vec<&str> = d.groups.iter().map(|g| g.fingerprint_id.as_str()).collect();
        assert_eq!(
            order,
            [
                "new-big",
                "new-small",
                "up-100",
                "up-10",
                "steady-big",
                "steady-small",
                "down"
            ]
        );
        // The renderers use that order whatever order the digest came in.
        d.groups.reverse();
        let text = render_text(&d);
        let pos = |id: &str| text.find(&format!("/errors/{id}\n")).unwrap();
        assert!(
            pos("new-big") < pos("new-small") && pos("new-small") < pos("up-100") && pos("steady-small") < pos("down")
        );
    }

    #[test]
    fn a_small_digest_is_one_message_with_header_summary_and_groups() {
        let d = digest(vec![group("a", 1234, 912, false), group("b", 40, 0, true)]);
        let messages = slack_messages(&d, SlackLimits::default());
        assert_eq!(messages.len(), 1);
        let blocks = messages[0]["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Errors on 2026-11-29");
        let all = texts(&messages[0]).join("\n");
        assert!(all.contains("*1,274 errors* in *2 groups*"), "{all}");
        assert!(all.contains("+40% vs the day before (912); *1 new*"), "{all}");
        assert!(all.contains("*1,234* · +322 (+35%)"), "{all}");
        assert!(
            all.contains(":new: *<https://kuroko.example.com/errors/b|TimeoutError>*"),
            "{all}"
        );
        assert!(all.contains("*40* · new, first seen 2026-11-29 08:14"), "{all}");
        assert!(all.contains("`timed out after 500 ms`"), "{all}");
        assert!(all.contains("web-1 (api) 1,234"), "{all}");
        assert!(!all.contains("more group"));
    }

    #[test]
    fn an_empty_digest_is_one_short_message() {
        let messages = slack_messages(&digest(vec![]), SlackLimits::default());
        assert_eq!(messages.len(), 1);
        assert!(messages[0]["text"].as_str().unwrap().starts_with("No errors yesterday"));
        assert_eq!(messages[0]["blocks"].as_array().unwrap().len(), 1);
        assert!(render_text(&digest(vec![])).contains("No errors yesterday."));
        assert!(render_html(&digest(vec![])).contains("No errors yesterday."));
    }

    fn hostile_group(i: usize) -> DigestGroup {
        let mut g = group(&format!("fp{i}"), 1000 - i as u64, (i as u64) % 7, i.is_multiple_of(50));
        g.error_type = format!("Err*{i}<!channel>&`\n{}", "é".repeat(i % 200));
        g.sample_message = match i % 4 {
            0 => format!("<!channel> <http://evil.example|click> {}", "&<>".repeat(2000)),
            1 => "日本語のエラー🙂".repeat(500),
            2 => "a`b\nc\r\u{0}d".repeat(800),
            _ => String::new(),
        };
        g.servers = (0..i % 12)
            .map(|s| ServerCount {
                host: format!("host-{s}-{}", "<&>".repeat(40)),
                service: "ü".repeat(100),
                count: s as u64,
            })
            .collect();
        g.link = if i.is_multiple_of(3) {
            format!("https://kuroko.example.com/errors/fp{i}")
        } else {
            "javascript:alert(1)".into()
        };
        g
    }

    #[test]
    fn four_hundred_hostile_groups_stay_within_slack_limits_and_link_the_rest() {
        let d = digest((0..400).map(hostile_group).collect());
        for limits in [
            SlackLimits::default(),
            SlackLimits {
                max_blocks: 10,
                max_section_chars: 300,
                max_message_chars: 2_000,
                max_messages: 2,
            },
            SlackLimits {
                max_blocks: 0,
                max_section_chars: 0,
                max_message_chars: 0,
                max_messages: 0,
            },
        ] {
            let messages = slack_messages(&d, limits);
            assert_within_limits(&messages, limits.usable());
            let last = texts(messages.last().unwrap()).join("\n");
            let shown: usize = messages.iter().flat_map(texts).filter(|t| t.contains("·")).count() - 1;
            let rest = 400 - shown;
            assert!(
                last.contains(&format!(
                    "…and {rest} more groups: <https://kuroko.example.com/errors?day=2026-11-29|full list>"
                )),
                "{limits:?}: {last}"
            );
        }
        // With Slack's limits, three messages of 50 blocks carry most of it.
        let messages = slack_messages(&d, SlackLimits::default());
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[1]["blocks"][0]["elements"][0]["text"],
            "Errors on 2026-11-29, continued (2/3)"
        );
    }

    #[test]
    fn a_digest_that_fits_in_two_messages_has_no_summary_line() {
        let d = digest((0..60).map(|i| group(&format!("g{i}"), 100, 90, false)).collect());
        let messages = slack_messages(&d, SlackLimits::default());
        assert_eq!(messages.len(), 2);
        let sections: usize = messages
            .iter()
            .flat_map(texts)
            .filter(|t| t.contains("/errors/g"))
            .count();
        assert_eq!(sections, 60);
        assert!(!messages.iter().flat_map(texts).any(|t| t.contains("more group")));
    }

    #[test]
    fn data_cannot_ping_or_link_in_slack() {
        let mut g = group("x", 5, 1, false);
        g.error_type = "Boom <!here>".into();
        g.sample_message = "<!channel> @everyone <http://evil.example|click> & <@U123>".into();
        g.servers[0].host = "<!subteam^S1>".into();
        let messages = slack_messages(&digest(vec![g]), SlackLimits::default());
        let all = texts(&messages[0]).join("\n");
        assert!(
            !all.contains("<!") && !all.contains("<http://evil") && !all.contains("<@"),
            "{all}"
        );
        assert!(
            all.contains("`&lt;!channel&gt; @\u{200B}everyone &lt;http://evil.example|click&gt; &amp; &lt;@U123&gt;`")
        );
        assert!(all.contains("/errors/x|Boom &lt;!here&gt;>*"), "{all}");
        assert!(all.contains("&lt;!subteam^S1&gt; (api) 5"));
    }

    #[test]
    fn truncation_counts_characters_and_keeps_entities_whole() {
        assert_eq!(truncate("日本語🙂🙂", 4), "日本語…");
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(fit_mrkdwn("abc&amp;def", 6), "abc…");
        assert_eq!(fit_mrkdwn("see <https://x.example|it> now", 12), "see …");
        let long = slack_escape(&"<".repeat(3000));
        let fitted = fit_mrkdwn(&long, 3000);
        assert_eq!(fitted.chars().count(), 2997);
        assert!(fitted.ends_with("&lt;…"));
    }

    #[test]
    fn changes_read_as_people_expect() {
        assert_eq!(group_change(&group("a", 162, 120, false)), "+42 (+35%)");
        assert_eq!(group_change(&group("a", 30, 60, false)), "-30 (-50%)");
        assert_eq!(group_change(&group("a", 7, 0, false)), "+7");
        assert_eq!(group_change(&group("a", 7, 7, false)), "no change");
        assert_eq!(group_change(&group("a", 7, 0, true)), "new");
        assert_eq!(crate::report::weekly::format_count(1_234_567), "1,234,567");
        assert_eq!(crate::report::weekly::format_count(999), "999");
    }

    #[test]
    fn email_forms_escape_and_link_the_rest() {
        let mut groups: Vec<DigestGroup> = (0..150).map(|i| group(&format!("g{i}"), 10, 5, false)).collect();
        groups[0].sample_message = "<script>alert('x')</script> & \"q\"".into();
        groups[0].total = 99;
        groups[0].link = "javascript:alert(1)".into();
        let d = digest(groups);
        let html = render_html(&d);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("<script>") && !html.contains("javascript:"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
        assert!(html.contains("and 50 more groups: <a href=\"https://kuroko.example.com/errors?day=2026-11-29\""));
        assert_eq!(html.matches("<tr style=\"border-top").count(), EMAIL_MAX_GROUPS);
        let text = render_text(&d);
        assert!(text.starts_with("Errors on 2026-11-29 (Europe/Paris)\n"));
        assert!(text.contains("TimeoutError: 99, +94 (+1880%)"), "{text}");
        assert!(text.contains("...and 50 more groups."));
        assert!(text.contains("Full list: https://kuroko.example.com/errors?day=2026-11-29"));
    }
}
