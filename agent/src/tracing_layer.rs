//! A `tracing_subscriber::Layer` that turns spans into transactions and segments.
//!
//! # Marking spans
//!
//! - A span with a `kuroko.transaction` field is a **transaction** named by
//!   that field's value (`"GET /cards/{id}"`, `"nightly-rollup"`). An optional
//!   `kuroko.feature` field names its product feature (used when the
//!   transaction is first seen).
//! - Every span opened inside a transaction is a **segment** of it, named by
//!   its `otel.name` field or else the span's name. Its kind comes from a
//!   `kuroko.segment` field (`database`, `external`, `code`), or else from
//!   OpenTelemetry attribute names: any `db.*` field makes it a database
//!   segment, `http.request.method`, `url.full`, `server.address`,
//!   `rpc.system` or `peer.service` an external one; anything else is code.
//!   Segments record their whole time and their exclusive time (less nested
//!   segments), so a breakdown by kind never double counts.
//! - Spans outside any transaction are left alone (one field-name scan).
//!
//! # Outcomes and errors
//!
//! - `http.response.status_code` on the transaction span sets its status
//!   (5xx is an error); `otel.status_code = "ERROR"` fails it.
//! - An `error` field on the transaction or any of its segments, or an
//!   `ERROR`-level event inside it, fails the transaction and captures the
//!   error: its type from an `error.type` or `exception.type` field (else the
//!   event's target), its message from the `error` and `message` fields, and
//!   the event's `file:line`.
//!
//! Timing is from the span's creation to its close, on the agent's monotonic clock,
//! so an async span counts the time it waited. The layer composes with any
//! other layer (`fmt`, `tracing-opentelemetry`) in the same subscriber. Do not
//! also wrap the same requests with [`crate::tower_layer`]: each would count them.
//!
//! # Side by side with `tracing-opentelemetry`
//!
//! With the `opentelemetry` feature, a transaction span that is also an
//! OpenTelemetry span (a `tracing_opentelemetry` layer in the same
//! subscriber) carries that span's trace id and span id into Kuroko: its slow
//! trace and the exemplar on its histogram name the same ids as the span the
//! OpenTelemetry SDK exports, so one id opens the request in both tools. The
//! OpenTelemetry sampler's decision is respected (an unsampled span's run is
//! recorded but not kept as a trace), and the enclosing span, when there is
//! one, is the trace's parent. The ids are read when the transaction span is
//! first entered, so set a remote parent (`OpenTelemetrySpanExt::set_parent`)
//! before entering it, as `tracing-opentelemetry` requires anyway:
//!
//! ```ignore
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(tracer))
//!     .with(kuroko_agent::tracing_layer::KurokoLayer::new(agent.clone()));
//! ```
//!
//! ```
//! use kuroko_agent::{tracing_layer::KurokoLayer, Agent};
//! use tracing_subscriber::prelude::*;
//!
//! let agent = Agent::default();
//! let subscriber = tracing_subscriber::registry().with(KurokoLayer::new(agent.clone()));
//! tracing::subscriber::with_default(subscriber, || {
//!     let request = tracing::info_span!("request", kuroko.transaction = "GET /cards/{id}");
//!     let _enter = request.enter();
//!     let _query = tracing::info_span!("SELECT cards", db.system = "postgresql").entered();
//! });
//! let harvest = agent.harvest();
//! let card = harvest.transaction("GET /cards/{id}").unwrap();
//! assert_eq!(card.segments[0].kind, kuroko_agent::SegmentKind::Database);
//! ```

use std::fmt;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock::Stamp;
use crate::errors::CapturedError;
use crate::segments::SegmentStats;
use crate::traces::RunTrace;
use crate::transaction::{Outcome, SegmentKind, Transaction, TransactionSpec};
use crate::Agent;

/// Field that marks a span as a transaction and names it.
pub const TRANSACTION_FIELD: &str = "kuroko.transaction";
/// Field that names a transaction's product feature.
pub const FEATURE_FIELD: &str = "kuroko.feature";
/// Field that sets a segment's kind.
pub const SEGMENT_FIELD: &str = "kuroko.segment";

/// The layer; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct KurokoLayer {
    agent: Agent,
    /// The subscriber this layer is part of, to ask `tracing-opentelemetry`
    /// for a span's context.
    #[cfg(feature = "opentelemetry")]
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl KurokoLayer {
    /// A layer recording into `agent`.
    pub fn new(agent: Agent) -> Self {
        KurokoLayer {
            agent,
            #[cfg(feature = "opentelemetry")]
            dispatch: std::sync::OnceLock::new(),
        }
    }

    /// Takes the trace and span ids of the OpenTelemetry span `id` (and its
    /// parent's) for the transaction's run, the first time it is entered.
    #[cfg(feature = "opentelemetry")]
    fn take_otel_ids<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        use tracing_opentelemetry::get_otel_context;
        let Some(span) = ctx.span(id) else { return };
        // Only a transaction's first enter asks (segments and later enters
        // cost one extension lookup).
        match span.extensions().get::<TxSpan>() {
            Some(tx_span) if !tx_span.otel_asked.swap(true, Relaxed) => {}
            _ => return,
        }
        // No extensions are held here: `get_otel_context` locks them.
        let Some(dispatch) = self.dispatch.get().and_then(|weak| weak.upgrade()) else {
            return;
        };
        let Some(context) = get_otel_context(id, &dispatch) else {
            return;
        };
        let parent = span
            .parent()
            .and_then(|parent| get_otel_context(&parent.id(), &dispatch));
        if let Some(ids) = crate::otel::run_ids(&context, parent.as_ref().and_then(crate::otel::ids)) {
            if let Some(tx_span) = span.extensions().get::<TxSpan>() {
                tx_span.run().set_ids(ids);
            }
        }
    }
}

/// Extension of a transaction span.
struct TxSpan {
    tx: Transaction,
    start: Stamp,
    outcome: Outcome,
    /// The run's segments, for its trace; created by its first segment.
    run: std::sync::OnceLock<Arc<RunTrace>>,
    /// Whether the OpenTelemetry span's ids were asked for (first enter).
    #[cfg(feature = "opentelemetry")]
    otel_asked: std::sync::atomic::AtomicBool,
}

impl TxSpan {
    fn run(&self) -> Arc<RunTrace> {
        self.run.get_or_init(|| self.tx.series.run_trace(self.start)).clone()
    }
}

/// Extension of a segment span. It holds no handle to its transaction (one
/// reference count less per span); nested segments and errors find the
/// transaction by walking up to its span.
struct SegSpan {
    stats: Arc<SegmentStats>,
    run: Arc<RunTrace>,
    start: Stamp,
    nested_ns: u64,
    /// Whether the parent span is a segment that wants this one's time.
    in_segment: bool,
}

/// The fields of a span or event that the layer reads. String fields are
/// empty when absent, and the buffers are reused from span to span (see
/// [`with_fields`]) so reading a span allocates nothing in the steady state.
#[derive(Default)]
struct Fields {
    transaction: String,
    feature: String,
    otel_name: String,
    error: String,
    error_type: String,
    message: String,
    segment: Option<SegmentKind>,
    inferred: Option<SegmentKind>,
    status: Option<u16>,
    failed: bool,
}

thread_local! {
    static FIELDS: std::cell::RefCell<Fields> = std::cell::RefCell::default();
}

/// Runs `f` with this thread's cleared field buffers (fresh ones if they are
/// in use further up the stack or the thread is exiting).
fn with_fields<R>(f: impl FnOnce(&mut Fields) -> R) -> R {
    let mut f = Some(f);
    let reused = FIELDS.try_with(|cell| {
        let mut fields = cell.try_borrow_mut().ok()?;
        fields.clear();
        f.take().map(|f| f(&mut fields))
    });
    match (reused, f) {
        (Ok(Some(result)), _) => result,
        (_, Some(f)) => f(&mut Fields::default()),
        (_, None) => unreachable!("`f` is taken only when it is called"),
    }
}

fn put(buffer: &mut String, value: &FieldValue<'_>) {
    use std::fmt::Write;
    buffer.clear();
    let _ = write!(buffer, "{value}");
}

/// Applies `f` to the value's text, borrowing it when it is already a string.
fn text<R>(value: &FieldValue<'_>, f: impl FnOnce(&str) -> R) -> R {
    match value {
        FieldValue::Str(text) => f(text),
        other => f(&other.to_string()),
    }
}

impl Fields {
    fn clear(&mut self) {
        for buffer in [
            &mut self.transaction,
            &mut self.feature,
            &mut self.otel_name,
            &mut self.error,
            &mut self.error_type,
            &mut self.message,
        ] {
            buffer.clear();
        }
        self.segment = None;
        self.inferred = None;
        self.status = None;
        self.failed = false;
    }

    fn set(&mut self, field: &Field, value: FieldValue<'_>) {
        match field.name() {
            TRANSACTION_FIELD => put(&mut self.transaction, &value),
            FEATURE_FIELD => put(&mut self.feature, &value),
            SEGMENT_FIELD => self.segment = text(&value, SegmentKind::parse),
            "otel.name" => put(&mut self.otel_name, &value),
            "http.response.status_code" => self.status = value.as_u16(),
            "otel.status_code" => self.failed |= text(&value, |code| code.eq_ignore_ascii_case("error")),
            "error" => {
                self.failed = true;
                put(&mut self.error, &value);
            }
            "error.type" | "exception.type" => put(&mut self.error_type, &value),
            "message" | "exception.message" => put(&mut self.message, &value),
            name if name.starts_with("db.") => self.inferred = Some(SegmentKind::Database),
            "http.request.method" | "url.full" | "server.address" | "rpc.system" | "peer.service" => {
                self.inferred.get_or_insert(SegmentKind::External);
            }
            _ => {}
        }
    }

    fn outcome(&self, current: Outcome) -> Outcome {
        let outcome = self.status.map_or(current, Outcome::Status);
        if self.failed && !outcome.is_error() {
            Outcome::Error
        } else {
            outcome
        }
    }

    /// The error these fields describe, if any, located at `metadata`.
    fn captured(&self, default_type: &str, metadata: &tracing::Metadata<'_>) -> Option<CapturedError> {
        if !self.failed {
            return None;
        }
        let message = match (self.error.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.message, self.error),
            (false, true) => self.error.clone(),
            (true, _) => self.message.clone(),
        };
        let error_type = if self.error_type.is_empty() {
            default_type
        } else {
            &self.error_type
        };
        Some(CapturedError {
            error_type: error_type.to_owned(),
            message,
            location: location(metadata),
            backtrace: None,
        })
    }
}

enum FieldValue<'a> {
    Str(&'a str),
    U64(u64),
    I64(i64),
    Debug(&'a dyn fmt::Debug),
    Error(&'a (dyn std::error::Error + 'static)),
}

impl FieldValue<'_> {
    fn as_u16(&self) -> Option<u16> {
        match self {
            FieldValue::U64(v) => u16::try_from(*v).ok(),
            FieldValue::I64(v) => u16::try_from(*v).ok(),
            FieldValue::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Str(s) => f.write_str(s),
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::Debug(d) => write!(f, "{d:?}"),
            FieldValue::Error(e) => write!(f, "{e}"),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, FieldValue::Str(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, FieldValue::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, FieldValue::I64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if value || field.name() != "error" {
            self.set(field, FieldValue::Debug(&value));
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, FieldValue::Error(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, FieldValue::Debug(value));
    }
}

fn location(metadata: &tracing::Metadata<'_>) -> Option<String> {
    Some(format!("{}:{}", metadata.file()?, metadata.line()?))
}

impl<S> Layer<S> for KurokoLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    #[cfg(feature = "opentelemetry")]
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    #[cfg(feature = "opentelemetry")]
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.take_otel_ids(id, &ctx);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if attrs.metadata().fields().field(TRANSACTION_FIELD).is_some() {
            let started = with_fields(|fields| {
                attrs.record(fields);
                if fields.transaction.is_empty() {
                    return None;
                }
                let (name, feature) = (fields.transaction.as_str(), fields.feature.as_str());
                let spec = || match feature {
                    "" => TransactionSpec::new(name),
                    feature => TransactionSpec::new(name).feature(feature),
                };
                let tx = self.agent.with_spec(name, spec, Transaction::clone);
                if let Some(error) = fields.captured("error", attrs.metadata()) {
                    tx.capture_error(error);
                }
                Some(TxSpan {
                    tx,
                    start: Stamp::now(),
                    outcome: fields.outcome(Outcome::Ok),
                    run: std::sync::OnceLock::new(),
                    #[cfg(feature = "opentelemetry")]
                    otel_asked: std::sync::atomic::AtomicBool::new(false),
                })
            });
            if let Some(tx_span) = started {
                span.extensions_mut().insert(tx_span);
            }
            return;
        }
        // A segment when the parent is a transaction or a segment.
        let Some(parent) = span.parent() else { return };
        let (in_segment, direct, run) = {
            let extensions = parent.extensions();
            match (extensions.get::<TxSpan>(), extensions.get::<SegSpan>()) {
                (Some(transaction), _) => (false, Some(transaction.tx.clone()), transaction.run()),
                (None, Some(segment)) => (true, None, segment.run.clone()),
                (None, None) => return,
            }
        };
        let Some(tx) = direct.or_else(|| enclosing_transaction(&parent)) else {
            return;
        };
        let (stats, error) = with_fields(|fields| {
            attrs.record(fields);
            let kind = fields.segment.or(fields.inferred).unwrap_or(SegmentKind::Code);
            let name = if fields.otel_name.is_empty() {
                attrs.metadata().name()
            } else {
                &fields.otel_name
            };
            (
                tx.series.segments.resolve(kind, name),
                fields.captured("error", attrs.metadata()),
            )
        });
        if error.is_some() {
            fail_transaction(&parent, error);
        }
        span.extensions_mut().insert(SegSpan {
            stats,
            run,
            start: Stamp::now(),
            nested_ns: 0,
            in_segment,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some((outcome, captured)) = with_fields(|fields| {
            values.record(fields);
            let changed = fields.status.is_some() || fields.failed;
            changed.then(|| {
                (
                    fields.status.map(Outcome::Status),
                    fields.captured("error", span.metadata()),
                )
            })
        }) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(tx_span) = extensions.get_mut::<TxSpan>() {
            if let Some(status) = outcome {
                tx_span.outcome = status;
            }
            if let Some(error) = captured {
                if !tx_span.outcome.is_error() {
                    tx_span.outcome = Outcome::Error;
                }
                tx_span.tx.capture_error(error);
            }
        } else if extensions.get_mut::<SegSpan>().is_some() && captured.is_some() {
            drop(extensions);
            fail_transaction(&span, captured);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let Some(span) = ctx.event_span(event) else { return };
        let error = with_fields(|fields| {
            event.record(fields);
            fields.failed = true;
            fields.captured(event.metadata().target(), event.metadata())
        });
        fail_transaction(&span, error);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(tx_span) = extensions.remove::<TxSpan>() {
            let ns = tx_span.start.elapsed_ns();
            tx_span
                .tx
                .series
                .finish(tx_span.start, ns, tx_span.outcome, tx_span.run.into_inner());
        } else if let Some(segment) = extensions.remove::<SegSpan>() {
            drop(extensions);
            let total = segment.start.elapsed_ns();
            segment.stats.record(total, total.saturating_sub(segment.nested_ns));
            segment.run.add(segment.stats, segment.start, total);
            if segment.in_segment {
                if let Some(outer) = span.parent() {
                    if let Some(outer) = outer.extensions_mut().get_mut::<SegSpan>() {
                        outer.nested_ns = outer.nested_ns.saturating_add(total);
                    }
                }
            }
        }
    }
}

/// The transaction whose span is `span` or its nearest ancestor that is one.
fn enclosing_transaction<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Option<Transaction>
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope()
        .find_map(|ancestor| ancestor.extensions().get::<TxSpan>().map(|t| t.tx.clone()))
}

/// Fails the transaction whose span is `span` or its nearest ancestor that
/// is one, and captures `error` for it. No-op outside any transaction.
fn fail_transaction<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>, error: Option<CapturedError>)
where
    S: for<'a> LookupSpan<'a>,
{
    for ancestor in span.scope() {
        let mut extensions = ancestor.extensions_mut();
        if let Some(tx_span) = extensions.get_mut::<TxSpan>() {
            if !tx_span.outcome.is_error() {
                tx_span.outcome = Outcome::Error;
            }
            if let Some(error) = error {
                tx_span.tx.capture_error(error);
            }
            return;
        }
    }
}
