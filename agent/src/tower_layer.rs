//! A `tower::Layer` that times every request of an axum or hyper service.
//!
//! Each request becomes a web transaction named `METHOD /route/{template}`:
//! the route comes from axum's [`MatchedPath`](axum::extract::MatchedPath)
//! (present when the layer is added with `Router::layer`), else from a
//! [`RouteTemplate`] request extension the application inserts, else from
//! the layer's fallback (`(unmatched)` by default). The raw path is never
//! used, since one series per id would exhaust the cardinality limit.
//!
//! The response status sets the outcome (5xx is an error). A panic inside the
//! handler is captured as an error of type `panic` with its message, recorded
//! as a failed run, and then resumed, so the service behaves exactly as it
//! would without the layer. A request dropped before its response (the client
//! went away) is recorded as cancelled.
//!
//! Handlers reach the current transaction through the [`CurrentTransaction`]
//! request extension, to time segments or capture errors:
//!
//! ```
//! use axum::{extract::Extension, routing::get, Router};
//! use kuroko_agent::{tower_layer::{CurrentTransaction, KurokoLayer}, Agent, SegmentKind};
//!
//! async fn show_card(Extension(tx): Extension<CurrentTransaction>) -> &'static str {
//!     let _query = tx.segment(SegmentKind::Database, "SELECT cards").start();
//!     "card"
//! }
//!
//! let agent = Agent::default();
//! let app: Router = Router::new()
//!     .route("/cards/{id}", get(show_card))
//!     .layer(KurokoLayer::new(agent.clone()));
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};

use std::sync::Arc;

use crate::errors::CapturedError;
use crate::traces::RunTrace;
use crate::transaction::{Outcome, Segment, SegmentKind, Transaction, TransactionGuard, TransactionSpec};
use crate::Agent;

/// A route template for the request, inserted by the application when the
/// router does not provide axum's `MatchedPath`.
#[derive(Clone, Debug)]
pub struct RouteTemplate(pub Cow<'static, str>);

/// The transaction of the request being served, as a request extension.
/// Segments timed through it belong to this request's run, so they appear in
/// its trace if the request turns out slow.
#[derive(Clone, Debug)]
pub struct CurrentTransaction {
    tx: Transaction,
    run: Option<Arc<RunTrace>>,
}

impl CurrentTransaction {
    /// The transaction.
    pub fn transaction(&self) -> &Transaction {
        &self.tx
    }

    /// A segment of this request's run.
    pub fn segment(&self, kind: SegmentKind, name: &str) -> Segment {
        let stats = self.tx.series.segments.resolve(kind, name);
        match &self.run {
            Some(run) => Segment::in_run(stats, run.clone()),
            None => self.tx.segment(kind, name),
        }
    }
}

impl std::ops::Deref for CurrentTransaction {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        &self.tx
    }
}

/// The layer; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct KurokoLayer {
    agent: Agent,
    unmatched: Cow<'static, str>,
}

impl KurokoLayer {
    /// A layer recording into `agent`.
    pub fn new(agent: Agent) -> Self {
        KurokoLayer {
            agent,
            unmatched: Cow::Borrowed("(unmatched)"),
        }
    }

    /// The route name for requests with no matched route (default `(unmatched)`).
    pub fn unmatched_route(mut self, route: impl Into<Cow<'static, str>>) -> Self {
        self.unmatched = route.into();
        self
    }
}

impl<S> tower::Layer<S> for KurokoLayer {
    type Service = KurokoService<S>;

    fn layer(&self, inner: S) -> KurokoService<S> {
        KurokoService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps around yours.
#[derive(Clone, Debug)]
pub struct KurokoService<S> {
    inner: S,
    layer: KurokoLayer,
}

thread_local! {
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S> KurokoService<S> {
    fn transaction<B>(&self, request: &Request<B>) -> Transaction {
        let method = request.method().as_str();
        let route: &str = if let Some(path) = request.extensions().get::<axum::extract::MatchedPath>() {
            path.as_str()
        } else if let Some(RouteTemplate(route)) = request.extensions().get::<RouteTemplate>() {
            route
        } else {
            &self.layer.unmatched
        };
        let agent = &self.layer.agent;
        let spec = || TransactionSpec::web(method, route);
        // Build the name in a reused per-thread buffer: no allocation per request.
        NAME.try_with(|buffer| {
            let mut name = buffer.try_borrow_mut().ok()?;
            name.clear();
            name.push_str(method);
            name.push(' ');
            name.push_str(route);
            Some(agent.with_spec(&name, spec, Transaction::clone))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| agent.register(spec()))
    }
}

impl<S, B, RB> tower::Service<Request<B>> for KurokoService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let tx = self.transaction(&request);
        let mut guard = tx.start();
        guard.set_outcome(Outcome::Cancelled);
        let run = guard.run_trace();
        request.extensions_mut().insert(CurrentTransaction { tx, run });
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture {
                future,
                guard: Some(guard),
            },
            Err(panic) => {
                fail_with_panic(guard, panic.as_ref());
                resume_unwind(panic)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`KurokoService`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        guard: Option<TransactionGuard>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        let result = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result,
            Err(panic) => {
                if let Some(guard) = this.guard.take() {
                    fail_with_panic(guard, panic.as_ref());
                }
                resume_unwind(panic)
            }
        };
        if let Some(mut guard) = this.guard.take() {
            match &result {
                Ok(response) => guard.set_status(response.status().as_u16()),
                Err(_) => guard.set_outcome(Outcome::Error),
            }
        }
        Poll::Ready(result)
    }
}

fn fail_with_panic(mut guard: TransactionGuard, panic: &(dyn Any + Send)) {
    let message = if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    guard.fail_with(CapturedError {
        error_type: "panic".to_owned(),
        message,
        location: None,
        backtrace: None,
    });
}
