//! The digest as Slack incoming-webhook payloads (Block Kit), within Slack's
//! limits on blocks and characters.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{
    group_change, one_line, ordered, safe_url, servers_line, total_change, truncate, Digest, DigestGroup, HEADER_CHARS,
    PROBLEMS_HEADING, SAMPLE_CHARS, TYPE_CHARS,
};
use crate::format;

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
    pub(super) fn usable(self) -> SlackLimits {
        let max_section_chars = self.max_section_chars.max(300);
        SlackLimits {
            max_blocks: self.max_blocks.max(5),
            max_section_chars,
            max_message_chars: self.max_message_chars.max(3 * max_section_chars + HEADER_CHARS),
            max_messages: self.max_messages.max(1),
        }
    }
}

impl SlackLimits {
    /// [`SlackLimits::usable`], with room in the first message for the
    /// performance problems' section when the digest has one.
    pub(super) fn usable_for(self, digest: &Digest) -> SlackLimits {
        let limits = self.usable();
        if digest.problems.is_empty() {
            return limits;
        }
        SlackLimits {
            max_blocks: limits.max_blocks.max(6),
            max_message_chars: limits
                .max_message_chars
                .max(4 * limits.max_section_chars + HEADER_CHARS),
            ..limits
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
    let limits = limits.usable_for(digest);
    let groups = ordered(digest);
    let title = truncate(&format!("Errors on {}", one_line(&digest.day)), HEADER_CHARS);
    let problems = problems_section(digest, limits.max_section_chars);
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
        let blocks: Vec<Value> = std::iter::once(section(text.clone())).chain(problems).collect();
        return vec![json!({ "text": text, "blocks": blocks })];
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
    if let Some(block) = problems {
        head.insert(head.len() - 1, block);
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
            format::count(digest.total_errors),
            format::count(groups.len() as u64),
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

/// The performance problems first seen on the day, as one section: each a
/// line linked to its page; none when there are none.
fn problems_section(digest: &Digest, max_chars: usize) -> Option<Value> {
    if digest.problems.is_empty() {
        return None;
    }
    let mut lines = vec![format!("*{PROBLEMS_HEADING}* ({})", digest.problems.len())];
    for problem in &digest.problems {
        let line = slack_escape(&problem.line());
        let line = match safe_url(&problem.link) {
            Some(url) => format!("• <{}|{}>", slack_escape(url), bold_safe(&line).replace('|', "¦")),
            None => format!("• {line}"),
        };
        lines.push(format!("{line} · {}", slack_escape(&problem.cost())));
    }
    Some(section(fit_mrkdwn(&lines.join("\n"), max_chars)))
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
            format::count(rest as u64),
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
        format::count(digest.total_errors),
        format::count(groups as u64),
        if groups == 1 { "group" } else { "groups" },
        slack_escape(&truncate(&one_line(&digest.day), 40)),
        slack_escape(&truncate(&one_line(&digest.time_zone), 60)),
        total_change(digest)
    );
    let new = digest.new_groups();
    if new > 0 {
        let _ = write!(text, "; *{} new*", format::count(new as u64));
    }
    let regressed = digest.regressed_groups();
    if regressed > 0 {
        let _ = write!(text, "; *{} regressed*", format::count(regressed as u64));
    }
    if let Some(ignored) = digest.ignored_line() {
        let _ = write!(text, "; {}", slack_escape(&ignored));
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
    let head = if group.new {
        format!(":new: {name}")
    } else if group.regressed {
        format!(":rotating_light: *regressed* {name}")
    } else {
        name
    };
    let mut counts = format!("*{}* · {}", format::count(group.total), group_change(group));
    if group.new && !group.first_seen.is_empty() {
        let first_seen = fit_mrkdwn(&slack_escape(&one_line(&group.first_seen)), 40);
        let _ = write!(counts, ", first seen {first_seen}");
    }
    if !group.assigned_team.is_empty() {
        let team = fit_mrkdwn(&slack_escape(&one_line(&group.assigned_team)), 40);
        let _ = write!(counts, " · assigned to {team}");
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

/// Escaped mrkdwn cut to `max` characters, ending in an ellipsis when cut,
/// without splitting an entity (`&amp;`) or a link (`<url|label>`).
pub(super) fn fit_mrkdwn(text: &str, max: usize) -> String {
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
