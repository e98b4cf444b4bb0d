//! Bytes in flight: the request bodies being read (and decompressed) at
//! once, bounded per connection and in total, and the time a body may take
//! to arrive.
//!
//! Every OTLP body, over HTTP or gRPC, is read through [`Metered`]: each
//! chunk is counted against the connection's and the reporter's budget as
//! it arrives (a request that would go past either is refused at once, 503
//! or RESOURCE_EXHAUSTED, to be retried later), and the whole body must
//! arrive within its deadline (408 or DEADLINE_EXCEEDED). The bytes are
//! given back when the request is answered.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use prost::bytes::Buf;

/// The client connection a request came on (a request extension the
/// HTTP port's accept loop sets), for the per-connection budget.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// It did not arrive in time.
    #[error("the body did not arrive within {0:?} of its headers")]
    Slow(Duration),
    /// It would take the bytes in flight past a budget.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
}

/// A request's body would take the bytes in flight past a budget: the
/// client is to retry later.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("too many bytes in flight {which} (over {limit} bytes, {setting}); retry later")]
pub struct Exhausted {
    which: &'static str,
    limit: usize,
    setting: &'static str,
}

/// The budgets, and what is held against them.
pub(crate) struct Inflight {
    max_total: usize,
    max_per_connection: usize,
    held: Mutex<Held>,
    /// Requests refused for a budget.
    pub(crate) refused: AtomicU64,
    /// Bodies that did not arrive in time.
    pub(crate) slow: AtomicU64,
}

#[derive(Default)]
struct Held {
    total: usize,
    by_connection: HashMap<SocketAddr, usize>,
}

impl Inflight {
    /// Budgets of `max_total` bytes in all, `max_per_connection` per client
    /// connection.
    pub(crate) fn new(max_total: usize, max_per_connection: usize) -> Self {
        Inflight {
            max_total,
            max_per_connection,
            held: Mutex::new(Held::default()),
            refused: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    /// Bytes held now, all connections together.
    pub(crate) fn held(&self) -> usize {
        crate::sync::lock(&self.held).total
    }

    /// Takes `bytes` more for a request on `connection` that holds `mine`
    /// already, or refuses them all. A request that no other holds bytes
    /// beside (on its connection, or at all) is never refused: alone, it
    /// would be refused at every retry.
    fn take(&self, connection: Option<SocketAddr>, mine: usize, bytes: usize) -> Result<(), Exhausted> {
        let mut held = crate::sync::lock(&self.held);
        let refuse = |which, limit, setting| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Exhausted { which, limit, setting })
        };
        let total = held.total.saturating_add(bytes);
        if total > self.max_total && held.total > mine {
            return refuse("in all", self.max_total, "max_inflight_bytes");
        }
        if let Some(connection) = connection {
            let on = held.by_connection.entry(connection).or_default();
            if on.saturating_add(bytes) > self.max_per_connection && *on > mine {
                if *on == 0 {
                    held.by_connection.remove(&connection);
                }
                return refuse(
                    "on this connection",
                    self.max_per_connection,
                    "max_inflight_bytes_per_connection",
                );
            }
            *on += bytes;
        }
        held.total = total;
        Ok(())
    }

    /// Gives back `bytes` of `connection`.
    fn give(&self, connection: Option<SocketAddr>, bytes: usize) {
        let mut held = crate::sync::lock(&self.held);
        held.total = held.total.saturating_sub(bytes);
        if let Some(connection) = connection {
            if let Some(on) = held.by_connection.get_mut(&connection) {
                *on = on.saturating_sub(bytes);
                if *on == 0 {
                    held.by_connection.remove(&connection);
                }
            }
        }
    }
}

/// What one request holds against the budgets, given back when dropped
/// (once the request is answered: its body, compressed and not, and what
/// was decoded from it live until then).
#[derive(Clone)]
pub(crate) struct Reservation(Arc<Reserved>);

struct Reserved {
    inflight: Arc<Inflight>,
    connection: Option<SocketAddr>,
    bytes: Mutex<usize>,
}

impl Reservation {
    /// Nothing yet, for a request on `connection` (unknown: counted in the
    /// total only).
    pub(crate) fn new(inflight: Arc<Inflight>, connection: Option<SocketAddr>) -> Self {
        Reservation(Arc::new(Reserved {
            inflight,
            connection,
            bytes: Mutex::new(0),
        }))
    }

    /// Holds `bytes` more, or refuses them.
    pub(crate) fn grow(&self, bytes: usize) -> Result<(), Exhausted> {
        let mut held = crate::sync::lock(&self.0.bytes);
        self.0.inflight.take(self.0.connection, *held, bytes)?;
        *held += bytes;
        Ok(())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let bytes = *self.bytes.get_mut().unwrap_or_else(|e| e.into_inner());
        self.inflight.give(self.connection, bytes);
    }
}

pin_project_lite::pin_project! {
    /// A request body read within a deadline, each chunk held against the
    /// budgets as it arrives ([module documentation](self)).
    pub(crate) struct Metered<B> {
        #[pin]
        body: B,
        #[pin]
        deadline: tokio::time::Sleep,
        timeout: Duration,
        reservation: Reservation,
    }
}

impl<B> Metered<B> {
    /// `body`, which must arrive within `timeout` from now.
    pub(crate) fn new(body: B, timeout: Duration, reservation: Reservation) -> Self {
        Metered {
            body,
            deadline: tokio::time::sleep(timeout),
            timeout,
            reservation,
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, Buf::remaining);
                if let Err(exhausted) = this.reservation.grow(bytes) {
                    return Poll::Ready(Some(Err(BodyError::from(exhausted).into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => {
                    this.reservation.0.inflight.slow.fetch_add(1, Ordering::Relaxed);
                    Poll::Ready(Some(Err(BodyError::Slow(*this.timeout).into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The [`BodyError`] among an error's causes, if any.
pub(crate) fn body_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<BodyError>() {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_hold_per_connection_and_in_total() {
        let inflight = Arc::new(Inflight::new(100, 60));
        let (a, b) = (
            Some(SocketAddr::from(([127, 0, 0, 1], 1))),
            Some(SocketAddr::from(([127, 0, 0, 1], 2))),
        );
        let first = Reservation::new(inflight.clone(), a);
        first.grow(50).unwrap();
        let beside = Reservation::new(inflight.clone(), a);
        let refused = beside.grow(20).unwrap_err().to_string();
        assert!(refused.contains("max_inflight_bytes_per_connection"), "{refused}");
        let second = Reservation::new(inflight.clone(), b);
        second.grow(50).unwrap();
        let refused = second.grow(10).unwrap_err().to_string();
        assert!(refused.contains("(over 100 bytes, max_inflight_bytes)"), "{refused}");
        assert_eq!(inflight.held(), 100);
        drop(first);
        assert_eq!(inflight.held(), 50);
        second.grow(10).unwrap();
        drop(second);
        assert_eq!(inflight.held(), 0);
        // Alone, a request is never refused, however large.
        let alone = Reservation::new(inflight.clone(), a);
        alone.grow(500).unwrap();
        assert!(
            Reservation::new(inflight.clone(), b).grow(1).is_err(),
            "beside it, others are"
        );
        drop(alone);
        assert!(inflight.held.lock().unwrap().by_connection.is_empty());
        assert_eq!(inflight.refused.load(Ordering::Relaxed), 3);
    }
}
