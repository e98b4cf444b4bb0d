//! W3C Trace Context (`traceparent`, `tracestate`): parsing what a caller
//! sent and formatting what the agent sends on.
//!
//! A run that received a valid `traceparent` continues that trace: its slow
//! trace and its exemplars carry the caller's trace id, and its span names
//! the caller's span as parent. A run without one starts a new trace (its id
//! is drawn the first time it is needed: an outgoing call or a kept trace).
//! The caller's *sampled* flag is respected: a run whose caller did not
//! sample it is still recorded in the histograms but never kept as a trace.
//!
//! Parsing follows the W3C recommendation (level 1, version `00`, and
//! forward-compatible with later versions): lower-case hex only, version
//! `ff` refused, all-zero trace and parent ids refused. `tracestate` is kept
//! as received (up to 512 bytes, the length the specification asks vendors
//! to propagate) and passed on unchanged.
//!
//! ```
//! use kuroko_agent::TraceContext;
//!
//! let context = TraceContext::parse(
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
//!     Some("vendor=opaque"),
//! )
//! .unwrap();
//! assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(context.is_sampled());
//! assert_eq!(
//!     context.traceparent(),
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
//! );
//! assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
//! ```

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Name of the header that carries the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// Name of the header that carries vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` kept; longer values are dropped, as the
/// specification allows.
const MAX_TRACESTATE: usize = 512;

/// The sampled bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A W3C trace context: a trace id, a span id, the trace flags and the
/// vendors' `tracestate`.
///
/// Received from a caller, the span id is the caller's span (the parent of
/// this service's run); sent on, it is the span of the outgoing call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    tracestate: Option<Arc<str>>,
}

impl TraceContext {
    /// A context with these ids; `None` when either is all zeros, which the
    /// specification forbids.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            flags: if sampled { SAMPLED } else { 0 },
            tracestate: None,
        })
    }

    /// Parses a `traceparent` header value and, if given, a `tracestate`
    /// header value. `None` when `traceparent` is not valid, in which case
    /// the specification says to start a new trace (and drop `tracestate`).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let bytes = traceparent.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version: [u8; 1] = hex(&bytes[0..2])?;
        match version[0] {
            0xff => return None,
            // Version 00 is exactly 55 characters.
            0x00 if bytes.len() != 55 => return None,
            // Later versions may append fields after a dash.
            _ if bytes.len() > 55 && bytes[55] != b'-' => return None,
            _ => {}
        }
        let trace_id: [u8; 16] = hex(&bytes[3..35])?;
        let span_id: [u8; 8] = hex(&bytes[36..52])?;
        let flags: [u8; 1] = hex(&bytes[53..55])?;
        let mut context = TraceContext::new(trace_id, span_id, false)?;
        context.flags = flags[0];
        context.tracestate = tracestate
            .map(|s| s.trim_matches(|c| c == ' ' || c == '\t'))
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE && s.is_ascii())
            .map(Arc::from);
        Some(context)
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span id: the caller's span for a received context, the outgoing
    /// call's span for a context being sent.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace id as 32 lower-case hex digits, as trace views show it.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// Whether the caller sampled this trace (the flags' sampled bit).
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The vendors' `tracestate`, as received.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The same context with this `tracestate`.
    pub fn with_tracestate(mut self, tracestate: Option<Arc<str>>) -> Self {
        self.tracestate = tracestate;
        self
    }

    /// The `traceparent` header value (version `00`).
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        let _ = write!(out, "-{:02x}", self.flags & SAMPLED);
        out
    }
}

/// Decodes lower-case hex into exactly `N` bytes.
fn hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Random bytes for trace and span ids (never all zero, which W3C and OTLP
/// forbid).
pub(crate) fn random_id<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    if out.iter().all(|b| *b == 0) {
        out[0] = 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_version_00() {
        let context = TraceContext::parse(VALID, Some(" rojo=00f067aa0ba902b7,congo=t61rcWkgMzE ")).unwrap();
        assert_eq!(context.span_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(context.is_sampled());
        assert_eq!(context.tracestate(), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert_eq!(context.traceparent(), VALID);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn later_versions_are_read_forward_compatibly() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let context = TraceContext::parse(later, None).unwrap();
        assert_eq!(context.traceparent(), VALID);
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", None).is_none());
    }

    #[test]
    fn overlong_tracestate_is_dropped() {
        let long = "a=".to_owned() + &"b".repeat(600);
        assert_eq!(TraceContext::parse(VALID, Some(&long)).unwrap().tracestate(), None);
    }

    #[test]
    fn ids_are_random_and_never_zero() {
        let (a, b): ([u8; 16], [u8; 16]) = (random_id(), random_id());
        assert_ne!(a, b);
        assert!(a.iter().any(|x| *x != 0));
    }
}
