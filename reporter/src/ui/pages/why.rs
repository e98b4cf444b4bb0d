//! Why a transaction changed, as the pages show it: the transaction page's
//! comparison with the window before (its verdict, its cause or "no single
//! cause stands out", and the slowest kept traces side by side), and the
//! side-by-side table the regressions page shows under a cause; and where
//! its time goes against the typical shape of its kind.

use super::*;
use crate::analysis::attribution::Attribution;
use crate::analysis::evidence::SideBySide;
use crate::analysis::regressions::Group as RegressionGroup;

/// The slowest kept traces before and after, aligned by segment, the one
/// that grew most first (and marked).
pub(super) fn side_by_side(evidence: &SideBySide) -> Markup {
    html! {
        table.rows.side-by-side {
            thead { tr {
                th { "Segment (slowest kept traces: " (evidence.before.len()) " before, " (evidence.after.len()) " now)" }
                th.num { "Before, per trace" } th.num { "Now, per trace" } th.num { "Change" } th.num { "Calls" }
            } }
            tbody {
                @for (i, s) in evidence.segments.iter().take(8).enumerate() {
                    tr.grown[i == 0 && s.change > 0.0] data-segment=(s.name) {
                        td.name { (s.kind) " " (s.name) }
                        td.num { (format::duration(s.previous)) }
                        td.num { (format::duration(s.current)) }
                        td.num { (format::signed_duration(s.change)) }
                        td.num { (format::number(s.previous_calls)) " → " (format::number(s.current_calls)) }
                    }
                }
                tr {
                    td.name { em { "the whole run" } }
                    td.num { (format::duration(evidence.durations[0])) }
                    td.num { (format::duration(evidence.durations[1])) }
                    td.num { (format::signed_duration(evidence.durations[1] - evidence.durations[0])) }
                    td.num { "" }
                }
            }
        }
    }
}

/// Where the transaction's time goes against its peers' typical shape
/// ([`crate::analysis::shape`]): "82% database, 70% in `SELECT orders`
/// alone; typical for shop: 35% database (6 web transactions)".
pub(super) fn shape_note(app: &App, scope: &Scope, service: &str, name: &str) -> Result<Markup, PageError> {
    let narrowed = Scope {
        service: Some(service.to_owned()),
        transaction: Some(name.to_owned()),
        ..scope.clone()
    };
    let shape = app
        .analysis()
        .shapes(&narrowed)?
        .remove(&(service.to_owned(), name.to_owned()));
    Ok(html! {
        @if let Some(shape) = shape {
            p.shape { "Its shape: " (shape.summary) "." }
        }
    })
}

/// The cause as a sentence, "no single cause stands out" when none does.
pub(super) fn cause_text(attribution: Option<&Attribution>) -> String {
    match attribution {
        Some(a) if a.cause.is_some() => a.summary.clone(),
        Some(a) => a.summary.replacen("no single cause", "no single cause stands out", 1),
        None => "–".to_owned(),
    }
}

/// Why `row` was or was not called under `rule`, in one sentence, and how
/// it was judged: both periods' runs (percentiles, shares per duration
/// band), the blocks (of `block_minutes`; q-values adjusted across `tests`)
/// and each metric's test with its interval and verdict.
pub(super) fn explanation(row: &RegressionRow, rule: &RegressionRule, block_minutes: i64, tests: usize) -> Markup {
    use crate::analysis::stats;
    let verdict = &row.verdict;
    let explained = row.explanation.as_deref();
    let bands = explained.and_then(|e| e.bands);
    let side = |label: &str, runs: u64, pick: fn(&Change) -> f64, shares: Option<[f64; 4]>| {
        html! {
            tr {
                td { (label) }
                td.num { (format::count(runs)) }
                td.num { (format::duration(pick(&verdict.changes.p50))) }
                td.num { (format::duration(pick(&verdict.changes.p95))) }
                td.num { (format::duration(pick(&verdict.changes.p99))) }
                td.num { (format::duration(pick(&verdict.changes.mean))) }
                @if let Some(shares) = shares { @for share in shares { td.num { (format::percent(share)) } } }
            }
        }
    };
    // "p = 0.721" as "0.721", "p < 0.001" as "< 0.001", under a "p" heading.
    let bare = |text: String| text[1..].trim_start().trim_start_matches('=').trim_start().to_owned();
    let spread = |s: stats::Spread, seconds: bool| {
        let value = |v: f64| {
            if seconds {
                format::duration(v)
            } else {
                format::percent(v)
            }
        };
        format!("{} ({} to {})", value(s.median), value(s.min), value(s.max))
    };
    html! {
        div.explain id="why" {
            p.reason { strong { "Why: " } (stats::reason(verdict, rule, explained)) "." }
            details {
                summary { "How it was judged: both periods' runs, the blocks and each test" }
                table.rows.distributions {
                    thead { tr {
                        th { "Period" } th.num { "Runs" } th.num { "p50" } th.num { "p95" } th.num { "p99" } th.num { "Average" }
                        @if let Some(b) = bands {
                            th.num { "≤ " (format::duration(b.edges[0])) }
                            th.num { (format::duration(b.edges[0])) "–" (format::duration(b.edges[1])) }
                            th.num { (format::duration(b.edges[1])) "–" (format::duration(b.edges[2])) }
                            th.num { "> " (format::duration(b.edges[2])) }
                        }
                    } }
                    tbody {
                        (side("Before", verdict.previous_count, |c| c.previous, bands.map(|b| b.previous)))
                        (side("Now", verdict.current_count, |c| c.current, bands.map(|b| b.current)))
                    }
                }
                @if bands.is_some() {
                    p.note { "Runs by duration: the bands are cut at the previous period's p50, p95 and p99." }
                }
                @if let Some(d) = verdict.design {
                    p.blocks {
                        "Blocks of " (block_minutes) " min: " (d.current_blocks) " with runs now, " (d.previous_blocks) " before, "
                        "compared within time-of-day strata " (d.stratum_hours) " h wide; q is p adjusted (Benjamini–Hochberg) across the "
                        (format::count(tests as u64)) " tests of this comparison."
                    }
                }
                table.rows.tests {
                    thead { tr {
                        th { "Metric" } th { "Test" } th.num { "Change" } th { "Interval" } th.num { "t" } th.num { "df" }
                        th.num { "p" } th.num { "q" } th { "Per block: median (min to max), now · before" } th { "Verdict" }
                    } }
                    tbody {
                        @for (metric, _, why) in stats::metric_reasons(verdict, rule, explained) {
                            @if let Some(test) = verdict.tests.get(metric) {
                                @let detail = explained.and_then(|e| e.metric(metric));
                                @let interval = test.interval.or(detail.and_then(|d| d.interval));
                                tr data-metric=(metric.to_string()) {
                                    td { (metric.to_string()) }
                                    td { (test.test.to_string()) }
                                    td.num { (format::change(verdict.changes.get(metric).relative)) }
                                    td {
                                        @if let Some(i) = interval { (i.to_string()) " (" (format!("{:.1}%", i.confidence * 100.0)) ")" } @else { "–" }
                                        @if let Some(r) = detail.and_then(|d| d.resolution) { br; small { "buckets " (format::percent(r)) " wide here" } }
                                    }
                                    td.num { (format!("{:.2}", test.statistic)) }
                                    td.num { (format!("{:.0}", test.degrees_of_freedom)) }
                                    td.num { (bare(format::p_value(test.p_value))) }
                                    td.num { (bare(format::q_value(test.q_value))) }
                                    td {
                                        @if let Some(d) = detail {
                                            @let seconds = d.edge.is_none();
                                            (if seconds { "mean " } else { "share above " })
                                            @if let Some(edge) = d.edge { (format::duration(edge)) ": " }
                                            (spread(d.per_block[0], seconds)) " · " (spread(d.per_block[1], seconds))
                                        } @else { "–" }
                                    }
                                    td { small { (why) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The transaction `service` `name` in `scope` against the window before,
/// whatever its verdict: a regression or improvement with its cause and
/// evidence, or that none was found; each with why it was (not) called.
pub(super) fn against_previous(app: &App, scope: &Scope, service: &str, name: &str) -> Result<Markup, PageError> {
    let analysis = app.analysis();
    let narrowed = Scope {
        service: Some(service.to_owned()),
        transaction: Some(name.to_owned()),
        ..scope.clone()
    };
    let previous = narrowed.previous();
    let rule = RegressionRule::default();
    // Judged with the service's other transactions, as its list judges it;
    // only its own rows come back, each explained.
    let comparison =
        analysis.compare_explained(&narrowed, &previous, &rule, RegressionGroup::Transaction, usize::MAX)?;
    let lists = [
        (&comparison.regressions, "Regression"),
        (&comparison.improvements, "Improvement"),
        (&comparison.too_little_traffic, ""),
        (&comparison.unchanged, ""),
    ];
    let found = lists
        .iter()
        .flat_map(|(rows, what)| rows.iter().map(move |r| (r, *what)))
        .find(|(r, _)| r.service == service && r.transaction == name);
    let window = format!(
        "{} → {}",
        format::utc(previous.from, "%Y-%m-%d %H:%M"),
        format::utc(previous.to, "%Y-%m-%d %H:%M UTC")
    );
    let none = html! { p.empty { "No regression or improvement against the window before (" (window) ")." } };
    let Some((row, what)) = found else {
        return Ok(html! {
            (none)
            @if let Some(note) = comparison.coverage.shortfall() { p.note.advice { (note) } }
        });
    };
    let why = explanation(row, &rule, comparison.coverage.block_minutes, comparison.tests);
    if what.is_empty() {
        return Ok(html! { (none) (why) });
    }
    let mut rows = vec![row.clone()];
    analysis.attribute_rows(&narrowed, &previous, &mut rows)?;
    let attribution = rows[0].attribution.as_deref();
    Ok(html! {
        p.verdict data-outcome=(what) {
            strong { (what) } ": " (row.verdict.trigger.map(|t| t.to_string()).unwrap_or_default())
            ", against " (window) "."
        }
        p.cause { "Cause: " (cause_text(attribution)) }
        @if let Some(evidence) = attribution.and_then(|a| a.evidence.as_ref()) {
            (side_by_side(evidence))
        }
        (why)
    })
}
