//! The weekly report's rendering, on a sample week with one of everything.

use super::*;
use crate::format;
use crate::report::chart::ChartRef;

/// A team's week with one of everything, and a hostile transaction name.
pub(crate) fn sample() -> WeeklyReport {
    let daily = (0..14)
        .map(|d| DailyPoint {
            day: format!("03-{:02}", d + 2),
            avg_s: if d == 5 { None } else { Some(0.1 + 0.01 * f64::from(d)) },
            p95_s: if d == 5 { None } else { Some(0.4 + 0.02 * f64::from(d)) },
        })
        .collect();
    WeeklyReport {
        team: "payments".into(),
        week_start: "2026-03-09".into(),
        week_end: "2026-03-15".into(),
        base_url: "https://kuroko.example.com/".into(),
        features: vec![FeatureRow {
            name: "checkout".into(),
            avg_s: 0.12,
            p95_s: 0.48,
            throughput_per_min: 12.34,
            apdex: Some(0.94),
            avg_change: Some(0.05),
            p95_change: Some(0.31),
            throughput_change: Some(-0.02),
            apdex_change: Some(-0.03),
            daily,
            deploys: Vec::new(),
            link: ui_path("/features", &[("name", "checkout")]),
            estimated: false,
        }],
        slowest: vec![EndpointRow {
            service: "shop".into(),
            transaction: "<script>alert(1)</script> & \"quotes\"".into(),
            feature: Some("checkout".into()),
            count: 12345,
            avg_s: 0.8,
            p95_s: 2.5,
            p99_s: 4.0,
            share_of_time: 0.23,
            link: ui_path("/transactions", &[("name", "<script>alert(1)</script> & \"quotes\"")]),
            estimated: false,
        }],
        consumers: vec![],
        regressions_note: None,
        regressions: vec![RegressionRow {
            service: "shop".into(),
            transaction: "POST /pay".into(),
            metric: "p95".into(),
            before_s: 0.366,
            after_s: 0.48,
            change: 0.31,
            p_value: 0.0004,
            q_value: 0.003,
            change_low: 0.24,
            change_high: Some(0.38),
            test: "block share test".into(),
            impact_s: 5400.0,
            cause: "`SELECT <orders>` +31 ms per run, 84% of the change (78% to 90%), on all hosts".into(),
            link: "javascript:alert(1)".into(),
        }],
        errors: vec![ErrorRow {
            title: "TimeoutError in pay()".into(),
            message: "upstream <bank> timed out".into(),
            count: 340,
            previous_count: 0,
            new: true,
            growing: false,
            servers: vec![ServerCount {
                host: "web-1".into(),
                count: 300,
            }],
            link: "/errors/42".into(),
            ..ErrorRow::default()
        }],
        late: None,
        ..WeeklyReport::default()
    }
}

#[test]
fn estimated_percentiles_are_marked_with_what_the_mark_means() {
    let exact = sample();
    assert!(!render_text(&exact).contains('≈'));
    let mut estimated = sample();
    estimated.features[0].estimated = true;
    estimated.slowest[0].estimated = true;
    let text = render_text(&estimated);
    let html = render_html(&estimated, &[]);
    for out in [&text, &html] {
        assert!(
            out.contains(&format!("p95 ≈{}", format::duration(estimated.features[0].p95_s)))
                || out.contains(&format!("≈{}", format::duration(estimated.features[0].p95_s)))
        );
        assert!(out.contains(&format!("≈{}", format::duration(estimated.slowest[0].p99_s))));
    }
    assert!(text.contains(ESTIMATE_NOTE));
    assert!(html.contains(ESTIMATE_NOTE));
}

#[test]
fn summary_names_the_worst_regression_and_the_errors() {
    let lines = summary(&sample());
    assert!(
        lines[0].starts_with("1 regression, worst: POST /pay p95 +31%"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "Errors: 1 new group, 0 growing"), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("Slowest: <script>")), "{lines:?}");
    let quiet = WeeklyReport::default();
    assert_eq!(
        summary(&quiet),
        [
            "No runs recorded for this team this week.",
            "No regressions found.",
            "No new or growing errors."
        ]
    );
}

#[test]
fn html_escapes_user_strings_and_refuses_script_links() {
    let html = render_html(&sample(), &[]);
    assert!(!html.contains("<script>"), "raw script tag in the HTML");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
    assert!(html.contains("upstream &lt;bank&gt; timed out"));
    assert!(html.contains("p95 +31%: `SELECT &lt;orders&gt;` +31 ms per run, 84% of the change"));
    assert!(!html.contains("javascript:"), "a javascript: link was rendered");
    assert!(html.contains(
        "href=\"https://kuroko.example.com/transactions?name=%3Cscript%3Ealert%281%29%3C%2Fscript%3E%20%26%20%22quotes%22\""
    ));
    assert!(!html.contains("<svg") && !html.contains("<script") && !html.contains("<link"));
}

#[test]
fn html_references_each_chart_by_content_id_with_alt_text_and_numbers() {
    let report = sample();
    let chart = ChartRef {
        feature: "checkout".into(),
        content_id: "chart-0@kuroko".into(),
        file_name: "chart-0.png".into(),
        png: vec![],
    };
    let html = render_html(&report, &[chart]);
    assert!(html.contains("src=\"cid:chart-0@kuroko\""));
    assert!(html.contains("alt=\"Daily average and p95 of checkout from 03-02 to 03-15; latest p95 660 ms."));
    // The table beside the chart: a day's numbers; the day without runs
    // is not a row of dashes but counted under the table.
    assert!(html.contains(">03-02</td>"));
    assert!(html.contains(">400 ms</td>"));
    assert!(!html.contains(">03-07</td>") && !html.contains(">–</td>"), "{html}");
    assert!(html.contains("1 day without runs not listed."));
}

#[test]
fn text_has_the_numbers_and_full_links() {
    let text = render_text(&sample());
    assert!(text.contains("- checkout: avg 120 ms (+5.0%), p95 480 ms (+31%), 12.3/min (-2.0%), Apdex 0.94 (-0.03)"));
    assert!(text.contains("https://kuroko.example.com/features?name=checkout"));
    assert!(text.contains("- [new] TimeoutError in pay(): 340 this week, 0 last week"));
    assert!(text.contains("12,345 calls"));
    assert!(!text.contains("javascript:"));
    assert!(text
        .contains("  why: p95 +31%: `SELECT <orders>` +31 ms per run, 84% of the change (78% to 90%), on all hosts"));
}

#[test]
fn control_characters_cannot_break_the_text_layout() {
    let mut report = sample();
    report.slowest[0].transaction = "GET /a\r\nBcc: x@example.com".into();
    let text = render_text(&report);
    assert!(text.contains("GET /a  Bcc: x@example.com"));
    assert!(!text.contains("\r"));
}

#[test]
fn new_performance_problems_are_counted_with_their_time_a_day_and_listed() {
    let problem = |new: bool, minutes: f64| ProblemRow {
        title: "N+1 queries".into(),
        statement: "SELECT <lines> WHERE id = ?".into(),
        service: "shop".into(),
        transaction: "GET /orders/{id}/export".into(),
        new,
        count_per_run: 12.0,
        cost_per_run_s: 0.7,
        seconds_per_day: minutes * 60.0,
        link: "/problems/00000000000000aa".into(),
    };
    let report = WeeklyReport {
        problems: vec![problem(true, 30.0), problem(true, 8.0), problem(false, 100.0)],
        open_problems: 4,
        open_problems_seconds_per_day: 141.0 * 60.0,
        new_problems: 3,
        new_problems_seconds_per_day: 41.0 * 60.0,
        ..sample()
    };
    let lines = summary(&report);
    assert!(
        lines.iter().any(|l| *l
            == format!(
                "3 new performance problems, costing {} of request time a day",
                format::duration(41.0 * 60.0)
            )),
        "{lines:?}"
    );
    let none_new = WeeklyReport {
        new_problems: 0,
        new_problems_seconds_per_day: 0.0,
        ..report.clone()
    };
    assert!(
        summary(&none_new).iter().any(|l| *l
            == format!(
                "4 open performance problems, costing {} of request time a day",
                format::duration(141.0 * 60.0)
            )),
        "{:?}",
        summary(&none_new)
    );
    assert!(!summary(&sample()).iter().any(|l| l.contains("performance problem")));
    let text = render_text(&report);
    assert!(text.contains("PERFORMANCE PROBLEMS"), "{text}");
    let line = format!(
        "- [new] N+1 queries: GET /orders/{{id}}/export (shop), 12 spans and {} a run, {} a day",
        format::duration(0.7),
        format::duration(1_800.0)
    );
    assert!(text.contains(&line), "{text}");
    let html = render_html(&report, &[]);
    assert!(html.contains("SELECT &lt;lines&gt; WHERE id = ?"), "escaped: {html}");
    assert!(
        html.contains("https://kuroko.example.com/problems/00000000000000aa"),
        "{html}"
    );
}
