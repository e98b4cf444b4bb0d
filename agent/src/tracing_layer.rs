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
//! Timing is from the span's creation to its close, on the monotonic clock,
//! so an async span counts the time it waited. The layer composes with any
//! other layer (`fmt`, `tracing-opentelemetry`) in the same subscriber. Do not
//! also wrap the same requests with [`crate::tower_layer`]: each would count them.
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
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::nanos;
use crate::errors::CapturedError;
use crate::segments::SegmentStats;
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
}

impl KurokoLayer {
    /// A layer recording into `agent`.
    pub fn new(agent: Agent) -> Self {
        KurokoLayer { agent }
    }
}

/// Extension of a transaction span.
struct TxSpan {
    tx: Transaction,
    start: Instant,
    outcome: Outcome,
}

/// Extension of a segment span.
struct SegSpan {
    tx: Transaction,
    stats: Arc<SegmentStats>,
    start: Instant,
    nested_ns: u64,
}

/// The fields of a span or event that the layer reads.
#[derive(Default)]
struct Fields {
    transaction: Option<String>,
    feature: Option<String>,
    segment: Option<SegmentKind>,
    inferred: Option<SegmentKind>,
    otel_name: Option<String>,
    status: Option<u16>,
    failed: bool,
    error: Option<String>,
    error_type: Option<String>,
    message: Option<String>,
}

impl Fields {
    fn set(&mut self, field: &Field, value: FieldValue<'_>) {
        match field.name() {
            TRANSACTION_FIELD => self.transaction = Some(value.to_string()),
            FEATURE_FIELD => self.feature = Some(value.to_string()),
            SEGMENT_FIELD => self.segment = SegmentKind::parse(&value.to_string()),
            "otel.name" => self.otel_name = Some(value.to_string()),
            "http.response.status_code" => self.status = value.as_u16(),
            "otel.status_code" => self.failed |= value.to_string().eq_ignore_ascii_case("error"),
            "error" => {
                self.failed = true;
                self.error = Some(value.to_string());
            }
            "error.type" | "exception.type" => self.error_type = Some(value.to_string()),
            "message" | "exception.message" => self.message = Some(value.to_string()),
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

    /// The error these fields describe, if any.
    fn captured(&self, default_type: &str, location: Option<String>) -> Option<CapturedError> {
        if !self.failed {
            return None;
        }
        let message = match (&self.error, &self.message) {
            (Some(error), Some(message)) => format!("{message}: {error}"),
            (Some(only), None) | (None, Some(only)) => only.clone(),
            (None, None) => String::new(),
        };
        Some(CapturedError {
            error_type: self.error_type.clone().unwrap_or_else(|| default_type.to_owned()),
            message,
            location,
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
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if attrs.metadata().fields().field(TRANSACTION_FIELD).is_some() {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            let Some(name) = fields.transaction.as_deref() else {
                return;
            };
            let feature = fields.feature.as_deref();
            let tx = self.agent.with_spec(
                name,
                || {
                    let spec = TransactionSpec::new(name);
                    match feature {
                        Some(feature) => spec.feature(feature),
                        None => spec,
                    }
                },
                Transaction::clone,
            );
            if let Some(error) = fields.captured("error", location(attrs.metadata())) {
                tx.capture_error(error);
            }
            let outcome = fields.outcome(Outcome::Ok);
            span.extensions_mut().insert(TxSpan {
                tx,
                start: Instant::now(),
                outcome,
            });
            return;
        }
        // A segment when an ancestor is a transaction or a segment.
        let Some(parent) = span.parent() else { return };
        let tx = {
            let extensions = parent.extensions();
            match (extensions.get::<SegSpan>(), extensions.get::<TxSpan>()) {
                (Some(segment), _) => segment.tx.clone(),
                (None, Some(transaction)) => transaction.tx.clone(),
                (None, None) => return,
            }
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let kind = fields.segment.or(fields.inferred).unwrap_or(SegmentKind::Code);
        let name = fields.otel_name.as_deref().unwrap_or(attrs.metadata().name());
        let stats = tx.series.segments.resolve(kind, name);
        if let Some(error) = fields.captured("error", location(attrs.metadata())) {
            mark_failed(&span);
            tx.capture_error(error);
        }
        span.extensions_mut().insert(SegSpan {
            tx,
            stats,
            start: Instant::now(),
            nested_ns: 0,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if fields.status.is_none() && !fields.failed {
            return;
        }
        let captured = fields.captured("error", location(span.metadata()));
        let mut extensions = span.extensions_mut();
        if let Some(tx_span) = extensions.get_mut::<TxSpan>() {
            tx_span.outcome = fields.outcome(tx_span.outcome);
            if let Some(error) = captured {
                tx_span.tx.capture_error(error);
            }
        } else if let Some(segment) = extensions.get_mut::<SegSpan>() {
            if let Some(error) = captured {
                segment.tx.capture_error(error);
                drop(extensions);
                mark_failed(&span);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else { return };
        for span in scope {
            let mut extensions = span.extensions_mut();
            let Some(tx_span) = extensions.get_mut::<TxSpan>() else {
                continue;
            };
            let mut fields = Fields {
                failed: true,
                ..Default::default()
            };
            event.record(&mut fields);
            if !tx_span.outcome.is_error() {
                tx_span.outcome = Outcome::Error;
            }
            if let Some(error) = fields.captured(event.metadata().target(), location(event.metadata())) {
                tx_span.tx.capture_error(error);
            }
            return;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(tx_span) = extensions.remove::<TxSpan>() {
            tx_span.tx.record_nanos(nanos(tx_span.start.elapsed()), tx_span.outcome);
        } else if let Some(segment) = extensions.remove::<SegSpan>() {
            drop(extensions);
            let total = nanos(segment.start.elapsed());
            segment.stats.record(total, total.saturating_sub(segment.nested_ns));
            if let Some(parent) = span.parent() {
                if let Some(outer) = parent.extensions_mut().get_mut::<SegSpan>() {
                    outer.nested_ns = outer.nested_ns.saturating_add(total);
                }
            }
        }
    }
}

/// Marks the transaction that encloses `span` as failed.
fn mark_failed<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    for ancestor in span.scope() {
        if let Some(tx_span) = ancestor.extensions_mut().get_mut::<TxSpan>() {
            if !tx_span.outcome.is_error() {
                tx_span.outcome = Outcome::Error;
            }
            return;
        }
    }
}
