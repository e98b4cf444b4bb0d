//! Side by side with OpenTelemetry (feature `opentelemetry`): a run inside
//! an OpenTelemetry span takes that span's trace id, span id and sampling
//! decision, so one id opens the same request in both tools.

use opentelemetry::trace::TraceContextExt;

use crate::traces::RunIds;

/// The ids of the span active in `context`, as a run's ids; `None` when no
/// valid span is active (no OpenTelemetry layer, or a no-op tracer).
/// `parent` is the trace and span id of the enclosing span or the caller, if
/// known: it is the run's parent when it belongs to the same trace.
pub(crate) fn run_ids(context: &opentelemetry::Context, parent: Option<([u8; 16], [u8; 8])>) -> Option<RunIds> {
    let span = context.span();
    let own = span.span_context();
    if !own.is_valid() {
        return None;
    }
    let (trace_id, span_id) = (own.trace_id().to_bytes(), own.span_id().to_bytes());
    let parent_span_id = parent
        .filter(|(parent_trace, parent_span)| *parent_trace == trace_id && *parent_span != span_id)
        .map_or([0; 8], |(_, parent_span)| parent_span);
    let state = own.trace_state().header();
    Some(RunIds {
        trace_id,
        span_id,
        parent_span_id,
        sampled: own.is_sampled(),
        tracestate: (!state.is_empty()).then(|| state.into()),
    })
}

/// The trace and span id of the span active in `context`, if valid.
pub(crate) fn ids(context: &opentelemetry::Context) -> Option<([u8; 16], [u8; 8])> {
    let span = context.span();
    let own = span.span_context();
    own.is_valid()
        .then(|| (own.trace_id().to_bytes(), own.span_id().to_bytes()))
}

/// The run's ids from the current `tracing` span's OpenTelemetry span, if
/// `tracing-opentelemetry` is in the subscriber and the span is valid.
#[cfg(feature = "tower")]
pub(crate) fn current_run_ids(caller: Option<([u8; 16], [u8; 8])>) -> Option<RunIds> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    run_ids(&span.context(), caller)
}
