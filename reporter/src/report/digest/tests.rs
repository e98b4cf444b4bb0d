//! The digest's order, Slack limits and escaping, and its email forms.

use serde_json::Value;

use super::slack::fit_mrkdwn;
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
        ..DigestGroup::default()
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
        window: vec![
            ("since".into(), "2026-11-28T23:00:00Z".into()),
            ("until".into(), "2026-11-29T23:00:00Z".into()),
        ],
        late: None,
        ..Digest::default()
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
    assert!(pos("new-big") < pos("new-small") && pos("new-small") < pos("up-100") && pos("steady-small") < pos("down"));
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
                "…and {rest} more groups: <https://kuroko.example.com/errors?since=2026-11-28T23%3A00%3A00Z&amp;until=2026-11-29T23%3A00%3A00Z|full list>"
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
    assert!(all.contains("`&lt;!channel&gt; @\u{200B}everyone &lt;http://evil.example|click&gt; &amp; &lt;@U123&gt;`"));
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
    assert_eq!(
        group_change(&group("a", 1_234_567, 1, false)),
        "+1,234,566 (+123456600%)"
    );
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
    assert!(html.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;"));
    assert!(html.contains("and 50 more groups: <a href=\"https://kuroko.example.com/errors?since=2026-11-28T23%3A00%3A00Z&amp;until=2026-11-29T23%3A00%3A00Z\""));
    assert_eq!(html.matches("<tr style=\"border-top").count(), EMAIL_MAX_GROUPS);
    let text = render_text(&d);
    assert!(text.starts_with("Errors on 2026-11-29 (Europe/Paris)\n"));
    assert!(text.contains("TimeoutError: 99, +94 (+1880%)"), "{text}");
    assert!(text.contains("...and 50 more groups."));
    assert!(text.contains(
        "Full list: https://kuroko.example.com/errors?since=2026-11-28T23%3A00%3A00Z&until=2026-11-29T23%3A00%3A00Z"
    ));
}

#[test]
fn regressed_groups_come_after_new_ones_marked_with_their_team_and_ignored_ones_are_counted_apart() {
    let mut back = group("b", 10, 40, false);
    back.regressed = true;
    back.assigned_team = "payments".to_string();
    let mut d = digest(vec![group("a", 500, 100, false), back, group("n", 5, 0, true)]);
    d.ignored_groups = 2;
    d.ignored_errors = 35;
    d.sort_groups();
    let order: Vec<&str> = d.groups.iter().map(|g| g.fingerprint_id.as_str()).collect();
    assert_eq!(order, ["n", "b", "a"], "new, then regressed, then the rest");
    let text = render_text(&d);
    assert!(text.contains("[REGRESSED] TimeoutError: 10"), "{text}");
    assert!(text.contains("  Assigned to payments\n"), "{text}");
    assert!(
        text.contains("; 1 new; 1 regressed. 2 ignored groups (35 errors) not listed."),
        "{text}"
    );
    let html = render_html(&d);
    assert!(
        html.contains(">REGRESSED</span>") && html.contains("Assigned to payments"),
        "{html}"
    );
    let slack = texts(&slack_messages(&d, SlackLimits::default())[0]).join("\n");
    assert!(
        slack.contains("*regressed*") && slack.contains("assigned to payments"),
        "{slack}"
    );
    assert!(slack.contains("2 ignored groups (35 errors) not listed"), "{slack}");
}

fn hostile_problem(i: usize) -> DigestProblem {
    DigestProblem {
        id: format!("{i:016x}"),
        title: "N+1 queries".into(),
        what: format!(
            "{i} × SELECT * FROM t WHERE a = ? <!channel> <http://evil.example|click> *|{}",
            "é".repeat(i * 40)
        ),
        service: "shop&co".into(),
        transaction: format!("GET /x/{i}|<y>"),
        cost_per_run: "1.2 s".into(),
        time_a_day: "41 min".into(),
        link: if i.is_multiple_of(2) {
            format!("https://kuroko.example.com/problems/{i:016x}?since=a&until=b")
        } else {
            "javascript:alert(1)".into()
        },
    }
}

#[test]
fn new_problems_show_in_every_form_with_their_links_and_stay_within_slack_limits() {
    let mut d = digest((0..400).map(hostile_group).collect());
    d.problems = (0..12).map(hostile_problem).collect();
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
        assert_within_limits(&messages, limits.usable_for(&d));
        let first = texts(&messages[0]).join("\n");
        assert!(
            first.contains("*Performance problems new yesterday* (12)"),
            "{limits:?}: {first}"
        );
    }
    let first = texts(&slack_messages(&d, SlackLimits::default())[0]).join("\n");
    assert!(
        first.contains("• <https://kuroko.example.com/problems/0000000000000000?since=a&amp;until=b|N+1 queries in GET /x/0¦&lt;y&gt; (shop&amp;co)"),
        "{first}"
    );
    let text = render_text(&d);
    assert!(text.contains("Performance problems new yesterday (12):"), "{text}");
    assert!(
        text.contains("  https://kuroko.example.com/problems/0000000000000002?since=a&until=b"),
        "{text}"
    );
    assert!(!text.contains("javascript:"), "{text}");
    assert!(text.contains("  costs 1.2 s a run, 41 min a day"), "{text}");
    let html = render_html(&d);
    assert!(
        html.contains("href=\"https://kuroko.example.com/problems/0000000000000000?since=a&amp;until=b\""),
        "{html}"
    );
    assert!(!html.contains("<!channel>") && !html.contains("javascript:"), "{html}");

    // A day without errors still lists them; a day without new problems has no section.
    let mut quiet = digest(vec![]);
    quiet.problems = vec![hostile_problem(0)];
    let messages = slack_messages(&quiet, SlackLimits::default());
    assert_within_limits(&messages, SlackLimits::default().usable_for(&quiet));
    assert!(texts(&messages[0])
        .join("\n")
        .contains("Performance problems new yesterday"));
    assert!(render_text(&quiet).contains("No errors yesterday.\n\nPerformance problems new yesterday (1):"));
    let none = digest(vec![group("a", 3, 1, false)]);
    assert!(!render_text(&none).contains("Performance problems"));
    assert!(!render_html(&none).contains("Performance problems"));
    assert!(!slack_messages(&none, SlackLimits::default())[0]
        .to_string()
        .contains("Performance problems"));
}
