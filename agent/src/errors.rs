//! Error capture: distinct errors counted per harvest interval.
//!
//! The agent does not ship one record per occurrence: it keeps one entry per
//! distinct (transaction, type, message, location) with a count, bounded in
//! number and in the size of each field, so a flood of errors costs a
//! bounded amount of memory and export.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::clock::Stamp;
use crate::sync::lock;

/// One error as captured from the service, before aggregation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedError {
    /// The error's type, e.g. `sqlx::Error` or `panic` (`exception.type`).
    pub error_type: String,
    /// The error's message (`exception.message`).
    pub message: String,
    /// Where it was raised or noticed, `file:line`.
    pub location: Option<String>,
    /// A backtrace, when one was taken (`exception.stacktrace`).
    pub backtrace: Option<String>,
}

impl CapturedError {
    /// An error of `error_type` with `message`, located at the caller.
    #[track_caller]
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        CapturedError {
            error_type: error_type.into(),
            message: message.into(),
            location: Some(location_string(Location::caller())),
            backtrace: None,
        }
    }

    /// Captures a `std::error::Error`: its type name, its message with the
    /// chain of sources, and the caller's location.
    #[track_caller]
    pub fn from_error<E: std::error::Error + 'static>(error: &E) -> Self {
        Self::from_error_at(error, Location::caller())
    }

    /// Like [`from_error`](Self::from_error), located at `location`.
    pub fn from_error_at<E: std::error::Error + 'static>(error: &E, location: &Location<'_>) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        CapturedError {
            error_type: std::any::type_name::<E>().to_owned(),
            message,
            location: Some(location_string(location)),
            backtrace: None,
        }
    }

    /// Adds a backtrace.
    pub fn with_backtrace(mut self, backtrace: impl Into<String>) -> Self {
        self.backtrace = Some(backtrace.into());
        self
    }
}

fn location_string(location: &Location<'_>) -> String {
    format!("{}:{}", location.file(), location.line())
}

/// One distinct error of one interval, with how often it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorSnapshot {
    /// The transaction it happened in.
    pub transaction: Arc<str>,
    /// The error as first captured in the interval (fields cut to the limit).
    pub error: CapturedError,
    /// How many times it happened in the interval.
    pub count: u64,
    /// When it was first seen in the interval.
    pub first_seen: SystemTime,
    /// When it was last seen in the interval.
    pub last_seen: SystemTime,
}

#[derive(Hash, PartialEq, Eq)]
struct ErrorKey {
    transaction: Arc<str>,
    error_type: String,
    message: String,
    location: Option<String>,
}

struct ErrorCount {
    backtrace: Option<String>,
    count: u64,
    first_seen: Stamp,
    last_seen: Stamp,
}

/// The agent's bounded table of this interval's errors.
pub(crate) struct ErrorLog {
    entries: Mutex<FxHashMap<ErrorKey, ErrorCount>>,
    max_entries: usize,
    max_bytes: usize,
    dropped: AtomicU64,
}

impl ErrorLog {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        ErrorLog {
            entries: Mutex::new(FxHashMap::default()),
            max_entries,
            max_bytes,
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn capture(&self, transaction: &Arc<str>, error: CapturedError) {
        let now = Stamp::now();
        let key = ErrorKey {
            transaction: transaction.clone(),
            error_type: truncate(error.error_type, self.max_bytes),
            message: truncate(error.message, self.max_bytes),
            location: error.location.map(|l| truncate(l, self.max_bytes)),
        };
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get_mut(&key) {
            entry.count += 1;
            entry.last_seen = now;
        } else if entries.len() < self.max_entries {
            let backtrace = error.backtrace.map(|b| truncate(b, self.max_bytes * 8));
            entries.insert(
                key,
                ErrorCount {
                    backtrace,
                    count: 1,
                    first_seen: now,
                    last_seen: now,
                },
            );
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes this interval's errors, leaving the table empty; `now` and
    /// `wall` are the harvest's stamp and wall-clock time.
    pub(crate) fn drain(&self, now: Stamp, wall: SystemTime) -> Vec<ErrorSnapshot> {
        let at = |stamp: Stamp| stamp.wall_time(now, wall);
        let entries = std::mem::take(&mut *lock(&self.entries));
        entries
            .into_iter()
            .map(|(key, value)| ErrorSnapshot {
                transaction: key.transaction,
                error: CapturedError {
                    error_type: key.error_type,
                    message: key.message,
                    location: key.location,
                    backtrace: value.backtrace,
                },
                count: value.count,
                first_seen: at(value.first_seen),
                last_seen: at(value.last_seen),
            })
            .collect()
    }

    /// Errors not kept because the table was full, since the agent started.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_errors_and_bounds_the_table() {
        let log = ErrorLog::new(2, 8);
        let tx: Arc<str> = Arc::from("job");
        for _ in 0..3 {
            log.capture(&tx, CapturedError::new("Timeout", "took too long"));
        }
        log.capture(&tx, CapturedError::new("Refused", "no"));
        log.capture(&tx, CapturedError::new("Third", "dropped"));
        let mut drained = log.drain(Stamp::now(), SystemTime::now());
        drained.sort_by_key(|e| std::cmp::Reverse(e.count));
        assert_eq!(drained.len(), 2);
        assert_eq!(drained[0].count, 3);
        assert_eq!(drained[0].error.message, "took too");
        assert_eq!(log.dropped(), 1);
        assert!(log.drain(Stamp::now(), SystemTime::now()).is_empty());
    }

    #[test]
    fn truncates_at_char_boundary() {
        assert_eq!(truncate("héllo".to_owned(), 2), "h");
    }
}
