//! The HTTP port's connections (OTLP/HTTP, the API, the web UI): accepted,
//! timed out and shut down gracefully.
//!
//! `axum::serve` sets no timeout on a connection, so a client that never
//! finishes its headers, or keeps an idle connection open, would hold it
//! for ever. Here each connection must send a request's headers within
//! `[limits] header_timeout_seconds` of opening or of its last answer, or
//! it is closed (hyper's header read timeout, which also runs while a
//! kept-alive connection waits for its next request). Each request carries
//! its connection's address ([`Peer`]), for the per-connection byte budget,
//! and as axum's `ConnectInfo`, for the login throttle.
//!
//! With `[tls]`, each connection's TLS handshake is done on its own task
//! (a slow client never holds up the accepting loop) and must finish within
//! the same header timeout.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::ingest::inflight::Peer;
use crate::ingest::Receiver;

/// How long shutting down waits for the requests under way.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` (through `tls` when given) until `shutdown`
/// completes, then waits (up to [`DRAIN`]) for the requests under way.
/// Connections closed by the header timeout (or a TLS handshake that
/// outlasts it) are counted in `receiver`'s stats.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    receiver: Arc<Receiver>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let header_timeout = Duration::from_secs(receiver.limits().header_timeout_seconds.max(1));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, most often: let some close.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone().map_request(move |mut request: axum::extract::Request| {
            request.extensions_mut().insert(Peer(peer));
            // The client's address, for the login throttle (as axum's
            // `into_make_service_with_connect_info` gives it).
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            request
        });
        let service = TowerToHyperService::new(
            app.map_request(|request: hyper::Request<hyper::body::Incoming>| request.map(axum::body::Body::new)),
        );
        let (watcher, http, receiver, tls) = (graceful.watcher(), http.clone(), receiver.clone(), tls.clone());
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Ok(Err(error)) => {
                        // Plain HTTP to a TLS port, an untrusted or missing
                        // client certificate: the client sees the alert.
                        tracing::debug!(%error, %peer, "a TLS handshake on the HTTP port failed");
                        return;
                    }
                    Err(_) => {
                        receiver.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
            };
            if let Err(error) = served {
                if error.is_timeout() {
                    receiver.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                } else {
                    tracing::debug!(%error, "an HTTP connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still under way after {DRAIN:?}; stopping anyway");
    }
}
