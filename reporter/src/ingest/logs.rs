//! OTLP logs → error points.
//!
//! A record is an error when it carries `exception.type` or
//! `exception.message`, or its severity is ERROR or worse. Its type is
//! `exception.type` (else `error`); its message `exception.message` (else the
//! body); its location `code.file.path:code.line.number` (or the older
//! `code.filepath`/`code.lineno`); its transaction `kuroko.transaction` or
//! `METHOD route` (else `(none)`); its count `kuroko.error.count` (Kuroko's
//! agent sends one record per distinct error with its count), else 1; its
//! grouping key `kuroko.error.fingerprint` when the service sends one (see
//! `docs/fingerprints.md`), trimmed, else empty.
//! Other records are accepted and not stored.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;

use super::otlp::{check, cut, get, key, minute, resource_identity, text, transaction, Converted, Limits};
use crate::analysis::fingerprint::MAX_INPUT_BYTES;
use crate::store::ErrorPoint;

/// Converts `request`, received at `now_unix_nano`.
pub fn convert(request: &ExportLogsServiceRequest, limits: &Limits, now_unix_nano: u64) -> Converted {
    let mut out = Converted::default();
    for resource_logs in &request.resource_logs {
        let sender = resource_identity(resource_logs.resource.as_ref());
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
            if let Err(reason) = check(attributes, time, now_unix_nano, limits) {
                out.reject("log record", reason);
                continue;
            }
            let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => text.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            let message = get(attributes, "exception.message").and_then(text).unwrap_or(body);
            let file = get(attributes, "code.file.path")
                .or_else(|| get(attributes, "code.filepath"))
                .and_then(text);
            let line = get(attributes, "code.line.number")
                .or_else(|| get(attributes, "code.lineno"))
                .and_then(text);
            let location = match (file, line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                (Some(file), None) => file,
                _ => String::new(),
            };
            let (transaction, kind) = transaction("", attributes).unwrap_or_else(|| ("(none)".to_owned(), "job"));
            let count = get(attributes, "kuroko.error.count")
                .and_then(text)
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(1)
                .max(1);
            out.batch.errors.push(ErrorPoint {
                key: key(&sender, transaction, kind, attributes),
                minute: minute(time),
                error_type: get(attributes, "exception.type")
                    .and_then(text)
                    .unwrap_or_else(|| "error".to_owned()),
                message: cut(&message, limits.max_value_bytes.max(256) * 4).to_owned(),
                location,
                count,
                last_seen: time,
                fingerprint: get(attributes, "kuroko.error.fingerprint")
                    .and_then(text)
                    .map(|f| cut(f.trim(), MAX_INPUT_BYTES).to_owned())
                    .unwrap_or_default(),
                stacktrace: String::new(),
                trace_id: String::new(),
            });
        }
    }
    out
}
