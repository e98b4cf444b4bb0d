//! `/traces/{id}`: one request across services as one waterfall: every
//! service's kept run of the trace id, each callee right under the span of
//! its caller that called it ([`crate::analysis::distributed`]).

use super::*;
use crate::analysis::breakdown::{TraceSegment, TraceSummary};

/// How far back a trace is looked for unless `since` says.
const TRACE_SINCE: &str = "7d";

/// The request `id` across services, with a table of its runs.
pub fn trace(app: &App, id: &str, params: &Params, now: i64) -> Result<Markup, PageError> {
    let scope = params.scope(TRACE_SINCE, now)?;
    let Some(joined) = app.analysis().joined_trace(id, scope.from, scope.to)? else {
        return Err(PageError::NotFound(format!(
            "no service kept a run of trace {id} in this window: only slow runs are kept; widen it (since=30d)"
        )));
    };
    let carried = params.only(&CARRIED);
    let (summary, marked) = waterfall_rows(&joined);
    let services: std::collections::BTreeSet<&str> = joined.runs.iter().map(|r| r.service.as_str()).collect();
    let body = html! {
        dl.summary {
            div { dt { "Trace" } dd { code { (joined.trace_id) } } }
            div { dt { "Started" } dd { (format::nanos(joined.start)) " UTC" } }
            div { dt { "Duration" } dd.duration { (format::duration(joined.duration)) } }
            div { dt { "Services" } dd.services { (services.len()) } }
        }
        section #waterfall {
            h2 { "Waterfall" }
            p.context { "Each service's kept run on one time line (each service's own clock); a run called by another sits under the span that called it, outlined." }
            (charts::waterfall_marked(&summary, &marked))
        }
        section #runs {
            h2 { "Runs" }
            table.rows.runs {
                thead { tr { th { "service" } th { "transaction" } th { "host" } th { "called by" } th.num { "starts at" } th.num { "duration" } } }
                tbody {
                    @for run in &joined.runs {
                        tr data-service=(run.service) data-depth=(run.depth) {
                            td { (run.service) }
                            td { a href=(transaction_href(&carried, &run.service, &run.transaction)) { (run.transaction) } }
                            td { (run.host) }
                            td.called-by { (run.called_by.as_deref().unwrap_or("–")) }
                            td.num { "+" (format::duration(run.offset)) }
                            td.num { (format::duration(run.duration)) }
                        }
                    }
                }
            }
        }
    };
    Ok(document(&format!("Trace {}", shorten_id(id)), Nav::None, body))
}

/// The joined trace as one waterfall's rows: each run as a row named after
/// its service and transaction (marked), indented by its depth, then its
/// segments.
fn waterfall_rows(joined: &crate::analysis::distributed::JoinedTrace) -> (TraceSummary, Vec<bool>) {
    let mut segments = Vec::new();
    let mut marked = Vec::new();
    // One run is the chart's whole run: its segments follow it directly.
    let alone = joined.runs.len() == 1;
    for run in &joined.runs {
        let indent = "\u{a0}\u{a0}".repeat(run.depth);
        if !alone {
            segments.push(TraceSegment {
                kind: "transaction".into(),
                name: format!("{indent}{} · {}", run.service, run.transaction),
                offset: run.offset,
                duration: run.duration,
            });
            marked.push(true);
        }
        for segment in &run.segments {
            segments.push(TraceSegment {
                name: format!("{indent}\u{a0}\u{a0}{}", segment.name),
                ..segment.clone()
            });
            marked.push(false);
        }
    }
    let summary = TraceSummary {
        trace_id: joined.trace_id.clone(),
        host: String::new(),
        start: joined.start,
        duration: joined.duration,
        segments,
    };
    (summary, marked)
}

/// The first 8 hex digits of a trace id, for a title.
fn shorten_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
