//! Errors tied to their transaction through their trace, when they are read.
//!
//! SDKs export log records before the spans of the same request (their
//! batches leave on different timers), and a record rarely carries the
//! request's route: such an error is stored under [`NO_TRANSACTION`] with
//! its trace id, and the transaction span, when it arrives, writes a
//! [`TraceLink`](super::TraceLink). Reads tie them: an untied error takes
//! the transaction (and feature and kind) of the link of its trace and
//! service that covers its time, else the nearest in time; its host stays
//! its own. Both are plain rows, so the tie survives a restart and works
//! across replicas writing one ClickHouse; links live as long as hour rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ErrorSummary, Filter, SeriesKey, NO_TRANSACTION};

/// An error row as a store reads it, with the trace it waits for (empty
/// when it was tied at ingest).
pub(crate) type TracedError = (ErrorSummary, String);

/// A stored link, read back.
#[derive(Clone, Debug)]
pub(crate) struct StoredLink {
    /// The transaction's series.
    pub(crate) key: SeriesKey,
    /// Its trace.
    pub(crate) trace_id: String,
    /// The span's start and end, unix nanoseconds.
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// The key of the rows' stack trace column: FNV-1a of the text (0 when
/// there is none), so rows with different stacks stay apart without the
/// text in the key.
pub(crate) fn stack_hash(stacktrace: &str) -> u64 {
    if stacktrace.is_empty() {
        0
    } else {
        crate::stable_hash::fnv1a64(&[stacktrace.as_bytes()])
    }
}

/// The link `error` is tied to among its trace's: same service and
/// environment, the one whose span covers the error's time (the innermost
/// when spans nest), else the nearest in time.
fn link_for<'a>(error: &ErrorSummary, links: &'a [&StoredLink]) -> Option<&'a StoredLink> {
    let at = error.last_seen;
    links
        .iter()
        .filter(|l| l.key.service == error.key.service && l.key.environment == error.key.environment)
        .min_by(|a, b| {
            let rank = |l: &StoredLink| {
                let distance = l.start.saturating_sub(at).max(at.saturating_sub(l.end));
                (distance, l.end.saturating_sub(l.start))
            };
            rank(a).cmp(&rank(b)).then_with(|| a.key.cmp(&b.key))
        })
        .copied()
}

/// `rows` with untied errors tied through `links` where they can be, kept
/// when their (tied) series matches `filter`, merged per distinct error and
/// series, most frequent first (ties in the order of series and error), as
/// [`super::Store::errors`] answers.
pub(crate) fn tie_and_merge(rows: Vec<TracedError>, links: &[StoredLink], filter: &Filter) -> Vec<ErrorSummary> {
    let mut by_trace: BTreeMap<&str, Vec<&StoredLink>> = BTreeMap::new();
    for link in links {
        by_trace.entry(&link.trace_id).or_default().push(link);
    }
    type Distinct = (SeriesKey, String, String, String, String, Arc<str>);
    let mut merged: BTreeMap<Distinct, ErrorSummary> = BTreeMap::new();
    for (mut row, trace_id) in rows {
        if !trace_id.is_empty() && row.key.transaction == NO_TRANSACTION {
            let tied = by_trace.get(trace_id.as_str()).and_then(|l| link_for(&row, l));
            if let Some(link) = tied {
                row.key.transaction.clone_from(&link.key.transaction);
                row.key.feature.clone_from(&link.key.feature);
                row.key.kind.clone_from(&link.key.kind);
            }
        }
        if !filter.matches(&row.key) {
            continue;
        }
        let id = (
            row.key.clone(),
            row.error_type.clone(),
            row.message.clone(),
            row.location.clone(),
            row.fingerprint.clone(),
            row.stacktrace.clone(),
        );
        match merged.get_mut(&id) {
            Some(total) => {
                total.count += row.count;
                total.first_minute = total.first_minute.min(row.first_minute);
                total.last_seen = total.last_seen.max(row.last_seen);
            }
            None => {
                merged.insert(id, row);
            }
        }
    }
    let mut errors: Vec<ErrorSummary> = merged.into_values().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    errors
}

/// Stack traces shared: rows that carry the same one hold one copy.
#[derive(Default)]
pub(crate) struct Stacks(std::collections::HashMap<u64, Arc<str>>);

impl Stacks {
    /// The shared copy of `stacktrace`, whose [`stack_hash`] is `hash`.
    pub(crate) fn share(&mut self, hash: u64, stacktrace: String) -> Arc<str> {
        self.0.entry(hash).or_insert_with(|| Arc::from(stacktrace)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(transaction: &str, host: &str) -> SeriesKey {
        SeriesKey {
            service: "shop".into(),
            host: host.into(),
            transaction: transaction.into(),
            feature: String::new(),
            kind: "job".into(),
            environment: String::new(),
        }
    }

    fn error(transaction: &str, message: &str, at: u64) -> ErrorSummary {
        ErrorSummary {
            key: key(transaction, "h1"),
            error_type: "KeyError".into(),
            message: message.into(),
            location: String::new(),
            count: 1,
            first_minute: 0,
            last_seen: at,
            fingerprint: String::new(),
            stacktrace: Arc::from(""),
        }
    }

    fn link(transaction: &str, trace: &str, start: u64, end: u64) -> StoredLink {
        let mut key = key(transaction, "h2");
        key.kind = "web".into();
        key.feature = "checkout".into();
        StoredLink {
            key,
            trace_id: trace.into(),
            start,
            end,
        }
    }

    #[test]
    fn an_untied_error_takes_its_traces_transaction_and_keeps_its_host() {
        let rows = vec![
            (error(NO_TRANSACTION, "a", 50), "t1".to_owned()),
            (error(NO_TRANSACTION, "a", 60), "t2".to_owned()),
            (error(NO_TRANSACTION, "a", 70), "t-unknown".to_owned()),
            (error("GET /x", "a", 80), String::new()),
        ];
        let links = [
            link("GET /outer", "t1", 0, 100),
            link("GET /inner", "t1", 40, 60),
            link("GET /later", "t1", 200, 300),
            link("GET /x", "t2", 500, 600),
        ];
        let tied = tie_and_merge(rows, &links, &Filter::default());
        let mut seen: Vec<(&str, &str, &str, u64)> = tied
            .iter()
            .map(|e| {
                (
                    e.key.transaction.as_str(),
                    e.key.host.as_str(),
                    e.key.kind.as_str(),
                    e.count,
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                // No link of its trace: untied.
                (NO_TRANSACTION, "h1", "job", 1),
                // Nested spans: the innermost that covers it.
                ("GET /inner", "h1", "web", 1),
                // Tied at ingest.
                ("GET /x", "h1", "job", 1),
                // The nearest span of t2, though it does not cover it.
                ("GET /x", "h1", "web", 1),
            ]
        );
        // Filters apply to the tied series.
        let only = Filter {
            transaction: Some("GET /inner".into()),
            ..Filter::default()
        };
        let rows = vec![(error(NO_TRANSACTION, "a", 50), "t1".to_owned())];
        assert_eq!(tie_and_merge(rows, &links, &only).len(), 1);
        let rows = vec![(error(NO_TRANSACTION, "a", 50), "t1".to_owned())];
        let none = Filter {
            transaction: Some(NO_TRANSACTION.into()),
            ..Filter::default()
        };
        assert!(tie_and_merge(rows, &links, &none).is_empty());
    }

    #[test]
    fn another_services_span_in_the_trace_is_not_a_tie() {
        let mut other = link("GET /gateway", "t1", 0, 100);
        other.key.service = "gateway".into();
        let rows = vec![(error(NO_TRANSACTION, "a", 50), "t1".to_owned())];
        let tied = tie_and_merge(rows, &[other], &Filter::default());
        assert_eq!(tied[0].key.transaction, NO_TRANSACTION);
    }
}
