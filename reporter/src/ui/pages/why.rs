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

/// The transaction `service` `name` in `scope` against the window before:
/// a regression or improvement with its cause and evidence, or that none was found.
pub(super) fn against_previous(app: &App, scope: &Scope, service: &str, name: &str) -> Result<Markup, PageError> {
    let analysis = app.analysis();
    let narrowed = Scope {
        service: Some(service.to_owned()),
        transaction: Some(name.to_owned()),
        ..scope.clone()
    };
    let previous = narrowed.previous();
    let comparison = analysis.compare(&narrowed, &RegressionRule::default(), RegressionGroup::Transaction)?;
    let found = comparison
        .regressions
        .iter()
        .map(|r| (r, "Regression"))
        .chain(comparison.improvements.iter().map(|r| (r, "Improvement")))
        .find(|(r, _)| r.service == service && r.transaction == name);
    let Some((row, what)) = found else {
        return Ok(html! {
            p.empty {
                "No regression or improvement against the window before ("
                (format::utc(previous.from, "%Y-%m-%d %H:%M")) " → " (format::utc(previous.to, "%Y-%m-%d %H:%M UTC")) ")."
            }
        });
    };
    let mut rows = vec![row.clone()];
    analysis.attribute_rows(&narrowed, &previous, &mut rows)?;
    let attribution = rows[0].attribution.as_deref();
    Ok(html! {
        p.verdict data-outcome=(what) {
            strong { (what) } ": " (row.verdict.trigger.map(|t| t.to_string()).unwrap_or_default())
            ", against " (format::utc(previous.from, "%Y-%m-%d %H:%M")) " → " (format::utc(previous.to, "%Y-%m-%d %H:%M UTC")) "."
        }
        p.cause { "Cause: " (cause_text(attribution)) }
        @if let Some(evidence) = attribution.and_then(|a| a.evidence.as_ref()) {
            (side_by_side(evidence))
        }
    })
}
