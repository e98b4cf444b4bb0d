//! OTLP logs → error points.
//!
//! A record is an error when it carries `exception.type` or
//! `exception.message`, or its severity is ERROR or worse. Its type is
//! `exception.type` (else `error`); its message `exception.message` (else the
//! body); its stack trace `exception.stacktrace`, cut to
//! `max_stacktrace_bytes`; its location `code.file.path:code.line.number`
//! (or the older `code.filepath`/`code.lineno`), else the innermost frame of
//! the service's own code in the stack trace; its transaction
//! `kuroko.transaction` or `METHOD route`, else `(none)` with the record's
//! trace id, which ties it to its transaction once the transaction span
//! arrives (SDKs export logs before the spans of their request, see
//! `exceptions.rs`); its count `kuroko.error.count` (Kuroko's agent sends
//! one record per distinct error with its count), else 1; its grouping key
//! `kuroko.error.fingerprint` when the service sends one (see
//! `docs/fingerprints.md`), trimmed, else empty. The stack trace and the
//! message are never a reason to reject a record: they are cut instead.
//! Other records are accepted and not stored.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;

use super::exceptions::{self, id_hex, UNLIMITED};
use super::otlp::{check_except, cut, get, key, minute, resource_identity, text, transaction, Converted, Limits, Rule};
use crate::analysis::fingerprint::MAX_INPUT_BYTES;
use crate::store::{ErrorPoint, NO_TRANSACTION};

/// The most occurrences one record may count (`kuroko.error.count`): 2^30,
/// a billion, far beyond what one service raises in one export interval,
/// and so far below `i64::MAX` (the stores' integers) that no sum of
/// records in an hour or a window can overflow one.
pub(crate) const MAX_ERROR_COUNT: u64 = 1 << 30;

/// Converts `request`, received at `now_unix_nano`.
pub fn convert(request: &ExportLogsServiceRequest, limits: &Limits, now_unix_nano: u64) -> Converted {
    let mut out = Converted::default();
    for resource_logs in &request.resource_logs {
        let sender = match resource_identity(resource_logs.resource.as_ref(), limits) {
            Ok(sender) => sender,
            Err(reason) => {
                let records = resource_logs
                    .scope_logs
                    .iter()
                    .map(|s| s.log_records.len() as u64)
                    .sum();
                out.reject_many("resource", Rule::Resource, reason, records);
                continue;
            }
        };
        for record in resource_logs.scope_logs.iter().flat_map(|s| &s.log_records) {
            let attributes = record.attributes.as_slice();
            let exception =
                get(attributes, "exception.type").is_some() || get(attributes, "exception.message").is_some();
            if !exception && record.severity_number < SeverityNumber::Error as i32 {
                continue;
            }
            let time = if record.time_unix_nano > 0 {
                record.time_unix_nano
            } else {
                record.observed_time_unix_nano
            };
            if let Err(refusal) = check_except(attributes, &UNLIMITED, time, now_unix_nano, limits) {
                out.refuse("log record", refusal);
                continue;
            }
            let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => text.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            let message = get(attributes, "exception.message").and_then(text).unwrap_or(body);
            let stacktrace = exceptions::stacktrace(attributes, limits);
            let location = exceptions::location(attributes, &stacktrace);
            let tied = transaction(false, attributes);
            // Untied: the record's trace ties it once its transaction span arrives.
            let trace_id = match tied {
                Some(_) => None,
                None => id_hex(&record.trace_id, 16),
            };
            let (transaction, kind) = tied.unwrap_or_else(|| (NO_TRANSACTION.to_owned(), "job"));
            let count = get(attributes, "kuroko.error.count")
                .and_then(text)
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(1)
                .max(1);
            if count > MAX_ERROR_COUNT {
                out.reject(
                    "log record",
                    Rule::ErrorCount,
                    format!("kuroko.error.count {count} is more than 2^30 occurrences in one record"),
                );
                continue;
            }
            out.batch.errors.push(ErrorPoint {
                key: key(&sender, transaction, kind, attributes),
                minute: minute(time),
                error_type: get(attributes, "exception.type")
                    .and_then(text)
                    .unwrap_or_else(|| "error".to_owned()),
                message: cut(&message, limits.max_value_bytes.max(256) * 4).to_owned(),
                location: cut(&location, limits.max_value_bytes).to_owned(),
                count,
                last_seen: time,
                fingerprint: get(attributes, "kuroko.error.fingerprint")
                    .and_then(text)
                    .map(|f| cut(f.trim(), MAX_INPUT_BYTES).to_owned())
                    .unwrap_or_default(),
                stacktrace,
                trace_id: trace_id.unwrap_or_default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn record(attributes: Vec<KeyValue>, trace_id: Vec<u8>) -> LogRecord {
        LogRecord {
            time_unix_nano: NOW - 1_000_000_000,
            severity_number: SeverityNumber::Error as i32,
            attributes,
            trace_id,
            span_id: vec![7; 8],
            ..LogRecord::default()
        }
    }

    fn converted(records: Vec<LogRecord>) -> Converted {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "shop")],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        convert(&request, &Limits::default(), NOW)
    }

    /// Python's and Java's stack traces are usually longer than the
    /// attribute limit (1 KiB): the record used to be rejected whole, and
    /// SDKs drop what a partial success rejects.
    #[test]
    fn a_long_stack_trace_or_message_never_rejects_an_exception_record() {
        let frames: String = (0..400)
            .map(|i| format!("  File \"/app/shop/views.py\", line {i}, in view{i}\n    call()\n"))
            .collect();
        let stack = format!("Traceback (most recent call last):\n{frames}KeyError: 'user_id'");
        assert!(stack.len() > 16 << 10);
        let out = converted(vec![record(
            vec![
                kv("exception.type", "KeyError"),
                kv("exception.message", &"m".repeat(3_000)),
                kv("exception.stacktrace", &stack),
            ],
            vec![],
        )]);
        assert_eq!((out.rejected, out.batch.errors.len()), (0, 1), "{:?}", out.reasons);
        let error = &out.batch.errors[0];
        assert_eq!(error.message.len(), 3_000);
        assert!(error.stacktrace.len() <= 16 << 10);
        assert!(error.stacktrace.starts_with("Traceback (most recent call last):\n"));
        assert!(error.stacktrace.ends_with("KeyError: 'user_id'"));
        // No code.* attributes: the innermost frame of the service's code.
        assert_eq!(error.location, "/app/shop/views.py:399");
        // Other attributes are still held to the limit.
        let out = converted(vec![record(
            vec![kv("exception.type", "KeyError"), kv("user.note", &"x".repeat(2_000))],
            vec![],
        )]);
        assert_eq!((out.rejected, out.batch.errors.len()), (1, 0));
    }

    /// A record without a transaction keeps its trace id, which ties it once
    /// the transaction span arrives; one with a transaction does not need it.
    #[test]
    fn a_record_without_a_transaction_keeps_its_trace_id() {
        let error = || vec![kv("exception.type", "KeyError"), kv("exception.message", "'id'")];
        let mut routed = error();
        routed.extend([kv("http.request.method", "GET"), kv("http.route", "/a")]);
        let out = converted(vec![
            record(error(), vec![0xab; 16]),
            record(routed, vec![0xab; 16]),
            record(error(), vec![0; 16]),
            record(error(), vec![]),
        ]);
        let seen: Vec<(&str, &str)> = out
            .batch
            .errors
            .iter()
            .map(|e| (e.key.transaction.as_str(), e.trace_id.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (NO_TRANSACTION, "abababababababababababababababab"),
                ("GET /a", ""),
                (NO_TRANSACTION, ""),
                (NO_TRANSACTION, ""),
            ]
        );
    }
}
