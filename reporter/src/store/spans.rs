//! The spans of a kept trace as the store holds them ([`TracePoint::spans`]):
//! a JSON array, the transaction's root span first, then its subtree, as
//! `ingest::traces` writes it for Kuroko's agent and for any SDK's spans.
//! One reader for every consumer (the breakdown's waterfalls, the
//! performance problems' detectors, the joined trace across services).

use std::collections::HashMap;

use super::TracePoint;

/// One span of a kept trace. Fields missing from older rows read as empty.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct KeptSpan {
    /// The span's name.
    #[serde(default)]
    pub name: String,
    /// `database`, `external`, `messaging`, `code` (or the span's own kind).
    #[serde(default)]
    pub kind: String,
    /// Span id (16 hex digits); empty in traces kept before ids were.
    #[serde(default)]
    pub span_id: String,
    /// The parent's span id; empty for a root without one, or when unknown.
    #[serde(default)]
    pub parent: String,
    /// Start, unix nanoseconds.
    #[serde(default)]
    pub start: u64,
    /// Duration, nanoseconds.
    #[serde(default)]
    pub duration_ns: u64,
    /// The attributes kept (text values, within the kept-trace budget).
    #[serde(default)]
    pub attributes: HashMap<String, serde_json::Value>,
}

impl KeptSpan {
    /// The text attribute `key`, if kept.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(serde_json::Value::as_str)
    }

    /// End, unix nanoseconds.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.duration_ns)
    }
}

impl TracePoint {
    /// Its spans, root first; none when the stored JSON cannot be read (a
    /// trace with unreadable spans still counts as a run).
    pub fn kept_spans(&self) -> Vec<KeptSpan> {
        serde_json::from_str(&self.spans).unwrap_or_default()
    }
}
