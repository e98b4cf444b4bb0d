//! OTLP/gRPC: the metrics, logs and trace services over one [`Receiver`].
//!
//! Each service is our own (`Raw`), with the path and framing of the one
//! `opentelemetry-proto` generates, whose codec hands over the message's
//! bytes: metrics, the bulk of what agents send, are then read in place
//! ([`super::wire`]) rather than decoded into prost's types first, and a
//! message of any signal that does not decode is INVALID_ARGUMENT (not
//! retried), as OTLP asks, where the generated services' codec answers
//! INTERNAL.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::SERVICE_NAME as LOGS_SERVICE;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::SERVICE_NAME as METRICS_SERVICE;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::SERVICE_NAME as TRACE_SERVICE;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};

use http_body_util::BodyExt;

use super::inflight::{body_error, BodyError, Metered, Reservation};
use super::status::exhausted_retry_later;
use super::{Accepted, IngestError, Receiver};

/// Seconds a client refused for the in-flight budgets is told to wait (as
/// OTLP/HTTP's `Retry-After`).
const RETRY_SECONDS: i64 = 1;

/// The response's protobuf; a malformed message is INVALID_ARGUMENT; a
/// store failure is UNAVAILABLE: the client keeps the data and retries.
fn answer<R: Message>(
    receiver: &Receiver,
    result: Result<Accepted, IngestError>,
    response: fn(Accepted) -> R,
) -> Result<Vec<u8>, tonic::Status> {
    result
        .map(|accepted| response(accepted).encode_to_vec())
        .map_err(|error| match error {
            IngestError::Malformed { .. } => {
                receiver
                    .stats
                    .malformed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tonic::Status::invalid_argument(error.to_string())
            }
            IngestError::Busy(_) => exhausted_retry_later(error.to_string(), RETRY_SECONDS),
            _ => tonic::Status::unavailable(error.to_string()),
        })
}

/// One OTLP signal's `Export` method, served from the message's bytes.
pub(crate) trait Method: Send + Sync + 'static {
    /// The service's full name.
    const SERVICE: &'static str;
    /// The path of its `Export` method.
    const PATH: &'static str;
    /// Converts and stores one message, holding what it decodes to against
    /// `held`; the response's protobuf.
    fn export(
        receiver: Arc<Receiver>,
        body: Bytes,
        held: Reservation,
    ) -> impl Future<Output = Result<Vec<u8>, tonic::Status>> + Send;
}

/// `MetricsService/Export`: read in place.
pub(crate) struct ExportMetrics;

impl Method for ExportMetrics {
    const SERVICE: &'static str = METRICS_SERVICE;
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    async fn export(receiver: Arc<Receiver>, body: Bytes, held: Reservation) -> Result<Vec<u8>, tonic::Status> {
        answer(
            &receiver,
            receiver.metrics_protobuf(body, &held).await,
            Accepted::metrics_response,
        )
    }
}

/// `LogsService/Export`.
pub(crate) struct ExportLogs;

impl Method for ExportLogs {
    const SERVICE: &'static str = LOGS_SERVICE;
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    async fn export(receiver: Arc<Receiver>, body: Bytes, held: Reservation) -> Result<Vec<u8>, tonic::Status> {
        answer(
            &receiver,
            receiver.logs_protobuf(&body, &held).await,
            Accepted::logs_response,
        )
    }
}

/// `TraceService/Export`.
pub(crate) struct ExportTraces;

impl Method for ExportTraces {
    const SERVICE: &'static str = TRACE_SERVICE;
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    async fn export(receiver: Arc<Receiver>, body: Bytes, held: Reservation) -> Result<Vec<u8>, tonic::Status> {
        answer(
            &receiver,
            receiver.traces_protobuf(&body, &held).await,
            Accepted::traces_response,
        )
    }
}

/// An OTLP service whose one method `M` takes the message's bytes.
pub(crate) struct Raw<M> {
    receiver: Arc<Receiver>,
    max_bytes: usize,
    method: PhantomData<fn() -> M>,
}

impl<M> Clone for Raw<M> {
    fn clone(&self) -> Self {
        Raw {
            receiver: self.receiver.clone(),
            max_bytes: self.max_bytes,
            method: PhantomData,
        }
    }
}

impl<M: Method> NamedService for Raw<M> {
    const NAME: &'static str = M::SERVICE;
}

impl<M, B> Service<http::Request<B>> for Raw<M>
where
    M: Method,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != M::PATH {
            return Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) });
        }
        let (receiver, max_bytes) = (self.receiver.clone(), self.max_bytes);
        // The token first: a request without it is refused before its
        // message is read, decompressed or decoded.
        let given = request.headers().get("authorization").map(|v| v.as_bytes());
        if !receiver.authorized(given) {
            let refused = tonic::Status::unauthenticated("missing or wrong token: send authorization: Bearer <token>");
            return Box::pin(async move { Ok(refused.into_http()) });
        }
        // The message is read within the body timeout, held against the
        // in-flight budgets as it arrives (and once decompressed) until it
        // is answered.
        let connection = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr());
        let reservation = receiver.reserve(connection);
        let timeout = std::time::Duration::from_secs(receiver.limits().body_timeout_seconds);
        let gzipped = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|e| e.as_bytes() == b"gzip");
        let request = request.map(|body| Metered::new(body, timeout, reservation.clone()).map_err(as_status));
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let codec = Bytewise(gzipped.then(|| reservation.clone()));
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max_bytes), None);
            let export = Export::<M>(receiver, reservation.clone(), PhantomData);
            let answer = grpc.unary(export, request).await;
            drop(reservation);
            Ok(answer)
        })
    }
}

/// One export: checked, converted, stored.
struct Export<M>(Arc<Receiver>, Reservation, PhantomData<fn() -> M>);

impl<M: Method> UnaryService<Bytes> for Export<M> {
    type Response = Vec<u8>;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (receiver, held) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            M::export(receiver, request.into_inner(), held)
                .await
                .map(tonic::Response::new)
        })
    }
}

/// A body's error as the gRPC status to answer: a body too slow is
/// DEADLINE_EXCEEDED, one past the in-flight budgets RESOURCE_EXHAUSTED.
fn as_status(error: StdError) -> StdError {
    match body_error(&*error) {
        Some(BodyError::Slow(_)) => Box::new(tonic::Status::deadline_exceeded(error.to_string())),
        Some(BodyError::Exhausted(_)) => Box::new(exhausted_retry_later(error.to_string(), RETRY_SECONDS)),
        None => error,
    }
}

/// Requests as their (decompressed) bytes; responses as the protobuf the
/// method encoded. A compressed message's decompressed bytes are held
/// against the request's reservation, when given.
struct Bytewise(Option<Reservation>);

impl Codec for Bytewise {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = Bytewise;
    type Decoder = Bytewise;

    fn encoder(&mut self) -> Self::Encoder {
        Bytewise(None)
    }

    fn decoder(&mut self) -> Self::Decoder {
        Bytewise(self.0.take())
    }
}

impl Encoder for Bytewise {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Bytewise {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        if let Some(reservation) = &self.0 {
            reservation
                .grow(src.remaining())
                .map_err(|exhausted| exhausted_retry_later(exhausted.to_string(), RETRY_SECONDS))?;
        }
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn raw<M: Method>(receiver: &Arc<Receiver>, max_bytes: usize) -> Raw<M> {
    Raw {
        receiver: receiver.clone(),
        max_bytes,
        method: PhantomData,
    }
}

/// The gRPC router with all three services, accepting gzip and messages up
/// to `max_bytes`; a connection that stops answering HTTP/2 pings (sent
/// every `grpc_keepalive_seconds` of `limits`) is dropped after
/// `grpc_keepalive_timeout_seconds`.
pub(crate) fn router(
    receiver: Arc<Receiver>,
    max_bytes: usize,
    limits: &super::otlp::Limits,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::server::Router, tonic::transport::Error> {
    let keepalive = std::time::Duration::from_secs(limits.grpc_keepalive_seconds.max(1));
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    Ok(server
        // Small answers must not wait on Nagle and delayed ACKs (40 ms stalls).
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(
            limits.grpc_keepalive_timeout_seconds.max(1),
        )))
        .add_service(raw::<ExportMetrics>(&receiver, max_bytes))
        .add_service(raw::<ExportLogs>(&receiver, max_bytes))
        .add_service(raw::<ExportTraces>(&receiver, max_bytes)))
}
