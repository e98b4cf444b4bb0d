//! A tiny OTLP sink on loopback: HTTP/1.1 and HTTP/2 on one port, so it
//! takes OTLP/HTTP posts and OTLP/gRPC calls alike, on any path; plain or
//! TLS, optionally requiring a client certificate. It records what a
//! collector would see of each request (path, headers, compression, arrival
//! time, the client's certificate) and answers "accepted", after `hold`.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::rustls;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    /// The URL path, e.g. `/v1/metrics` or
    /// `/opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.
    pub path: String,
    /// Header names in lower case, values as text.
    pub headers: Vec<(String, String)>,
    /// Whether the body was gzip-compressed (HTTP `content-encoding`, or the
    /// gRPC message's compressed flag).
    pub gzip: bool,
    /// The protobuf message, decompressed.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The client certificate the TLS peer presented (DER).
    pub client_certificate: Option<Vec<u8>>,
}

impl Received {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether it was a gRPC call.
    pub fn grpc(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("application/grpc"))
    }
}

/// A running sink; it stops when dropped.
pub struct Sink {
    /// Where it listens (127.0.0.1).
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// A plain-text sink that answers at once.
    pub async fn plain() -> Sink {
        Sink::start(None, Duration::ZERO).await
    }

    /// A sink speaking TLS with `tls` when given, answering each request
    /// after `hold`.
    pub async fn start(tls: Option<Arc<rustls::ServerConfig>>, hold: Duration) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the sink");
        let address = listener.local_addr().expect("the sink's address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, acceptor) = (log.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            // A handshake the client gives up on is its business.
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.to_vec());
                            serve(stream, log, certificate, hold).await
                        }
                        None => serve(stream, log, None, hold).await,
                    }
                });
            }
        });
        Sink {
            address,
            received,
            task,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until what was received satisfies `done`; panics
    /// naming `what` otherwise.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..1_000 {
            let received = self.received();
            if done(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}; received: {:#?}", paths(&self.received()));
    }
}

/// The paths of `received`, for messages.
pub fn paths(received: &[Received]) -> Vec<&str> {
    received.iter().map(|r| r.path.as_str()).collect()
}

async fn serve<S>(stream: S, log: Arc<Mutex<Vec<Received>>>, certificate: Option<Vec<u8>>, hold: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let (log, certificate) = (log.clone(), certificate.clone());
        async move { Ok::<_, Infallible>(answer(request, log, certificate, hold).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip body");
    out
}

async fn answer(
    request: hyper::Request<Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
    certificate: Option<Vec<u8>>,
    hold: Duration,
) -> hyper::Response<UnsyncBoxBody<Bytes, Infallible>> {
    let at = Instant::now();
    let path = request.uri().path().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut received = Received {
        path,
        headers,
        gzip: false,
        body: Vec::new(),
        at,
        client_certificate: certificate,
    };
    if received.grpc() {
        // One length-prefixed message: flag (1 = compressed), length, bytes.
        received.gzip = bytes.first() == Some(&1);
        let message = bytes.get(5..).unwrap_or_default();
        received.body = if received.gzip {
            gunzip(message)
        } else {
            message.to_vec()
        };
    } else {
        received.gzip = received.header("content-encoding") == Some("gzip");
        received.body = if received.gzip { gunzip(&bytes) } else { bytes.to_vec() };
    }
    let grpc = received.grpc();
    log.lock().unwrap().push(received);
    tokio::time::sleep(hold).await;
    if grpc {
        // An empty Export…ServiceResponse, then grpc-status 0 in the trailers.
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
        let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
            .with_trailers(std::future::ready(Some(Ok(trailers))))
            .boxed_unsync();
        hyper::Response::builder()
            .header("content-type", "application/grpc")
            .body(body)
            .expect("a valid response")
    } else {
        hyper::Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()).boxed_unsync())
            .expect("a valid response")
    }
}
