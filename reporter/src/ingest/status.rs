//! `google.rpc.Status`: the body of every OTLP/HTTP failure (4xx and 5xx),
//! as the OTLP specification's "Failures" section asks, in the request's
//! encoding: protobuf for `application/x-protobuf`, JSON for
//! `application/json`. A 400 carries a `google.rpc.BadRequest` in its
//! details, naming the field at fault when it is known. A gRPC
//! RESOURCE_EXHAUSTED carries a `google.rpc.RetryInfo`, without which OTLP
//! clients may not retry it.
//!
//! These are our own prost messages (a few fields each):
//! nothing light in the dependency tree has them. `tonic` keeps its
//! `google.rpc.Status` private to its `grpc-status-details-bin` header, and
//! `tonic-types` (or `prost-types`, for `Any`) would add a crate for a few
//! fields.

use prost::Message;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Status {
    /// A `google.rpc.Code` (the gRPC status code).
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// What went wrong, for developers.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// Details, each a message packed in an `Any`.
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Any {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    /// The message's protobuf.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct BadRequest {
    /// What is wrong, field by field.
    #[prost(message, repeated, tag = "1")]
    pub(crate) field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct FieldViolation {
    /// The field's path (`resourceMetrics[0].scopeMetrics[0]...`); empty
    /// when the body as a whole is at fault.
    #[prost(string, tag = "1")]
    pub(crate) field: String,
    /// What is wrong with it.
    #[prost(string, tag = "2")]
    pub(crate) description: String,
}

/// The type URL of a [`BadRequest`] in an [`Any`].
pub(crate) const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// `google.rpc.RetryInfo`: when to try again. The OTLP specification lets a
/// client retry RESOURCE_EXHAUSTED only when the status carries it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    /// How long to wait.
    #[prost(message, optional, tag = "1")]
    pub(crate) retry_delay: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Duration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    /// And nanoseconds.
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

/// The type URL of a [`RetryInfo`] in an [`Any`].
pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// A RESOURCE_EXHAUSTED gRPC status saying `message`, with a [`RetryInfo`]
/// of `seconds` in its details (`grpc-status-details-bin`): an OTLP client
/// retries it (without, the specification has it drop the data).
pub(crate) fn exhausted_retry_later(message: String, seconds: i64) -> tonic::Status {
    let retry = RetryInfo {
        retry_delay: Some(Duration { seconds, nanos: 0 }),
    };
    let status = Status {
        details: vec![Any {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: retry.encode_to_vec(),
        }],
        ..Status::new(tonic::Code::ResourceExhausted, message.clone())
    };
    tonic::Status::with_details(tonic::Code::ResourceExhausted, message, status.encode_to_vec().into())
}

impl Status {
    /// A status of `code` saying `message`, without details.
    pub(crate) fn new(code: tonic::Code, message: String) -> Status {
        Status {
            code: code as i32,
            message,
            details: Vec::new(),
        }
    }

    /// An `INVALID_ARGUMENT` status saying `message`, with a [`BadRequest`]
    /// naming `field` (empty: the body as a whole).
    pub(crate) fn bad_request(message: String, field: &str) -> Status {
        let violation = BadRequest {
            field_violations: vec![FieldViolation {
                field: field.to_owned(),
                description: message.clone(),
            }],
        };
        Status {
            details: vec![Any {
                type_url: BAD_REQUEST_TYPE.to_owned(),
                value: violation.encode_to_vec(),
            }],
            ..Status::new(tonic::Code::InvalidArgument, message)
        }
    }

    /// The status in the proto3 JSON mapping: `details` as `Any`'s JSON
    /// (`@type` and the message's own fields).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let details: Vec<serde_json::Value> = self
            .details
            .iter()
            .map(|any| match any.type_url.as_str() {
                BAD_REQUEST_TYPE => {
                    let violations: Vec<serde_json::Value> = BadRequest::decode(any.value.as_slice())
                        .map(|b| b.field_violations)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| serde_json::json!({ "field": v.field, "description": v.description }))
                        .collect();
                    serde_json::json!({ "@type": any.type_url, "fieldViolations": violations })
                }
                // Only gRPC answers carry the others; an unknown one keeps its type.
                other => serde_json::json!({ "@type": other }),
            })
            .collect();
        serde_json::json!({ "code": self.code, "message": self.message, "details": details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_request_names_its_field_in_both_encodings() {
        let status = Status::bad_request("sum: not a number".to_owned(), "resourceMetrics[0].sum");
        let decoded = Status::decode(status.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, status);
        assert_eq!(decoded.code, 3);
        let detail = BadRequest::decode(decoded.details[0].value.as_slice()).unwrap();
        assert_eq!(detail.field_violations[0].field, "resourceMetrics[0].sum");
        assert_eq!(
            status.to_json(),
            serde_json::json!({
                "code": 3,
                "message": "sum: not a number",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{ "field": "resourceMetrics[0].sum", "description": "sum: not a number" }]
                }]
            })
        );
    }
}
