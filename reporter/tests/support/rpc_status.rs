//! `google.rpc.Status` and the details Kuroko sends in it, written out as a
//! client would decode them (from an OTLP/HTTP failure's body, or gRPC's
//! `grpc-status-details-bin`).
#![allow(dead_code)] // Each test uses what it needs.

use prost::Message;

/// `google.rpc.Status`, written out here as a client would decode it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcBadRequest {
    #[prost(message, repeated, tag = "1")]
    pub field_violations: Vec<RpcFieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcFieldViolation {
    #[prost(string, tag = "1")]
    pub field: String,
    #[prost(string, tag = "2")]
    pub description: String,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcRetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<RpcDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The seconds of the `google.rpc.RetryInfo` in a gRPC status's details,
/// as an OTLP exporter reads them; `None` without one.
pub fn retry_delay(status: &tonic::Status) -> Option<i64> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|any| any.type_url == "type.googleapis.com/google.rpc.RetryInfo")?;
    RpcRetryInfo::decode(any.value.as_slice())
        .ok()?
        .retry_delay
        .map(|d| d.seconds)
}
