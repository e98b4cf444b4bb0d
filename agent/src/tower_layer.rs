//! A `tower::Layer` that times every request of a tower HTTP service: axum,
//! hyper, or any `tower::Service` of `http::Request`.
//!
//! Each request becomes a web transaction named `METHOD /route/{template}`.
//! The route comes from, in order: axum's `MatchedPath` (with the `axum`
//! feature, present when the layer is added with `Router::layer`); a
//! [`RouteTemplate`] request extension the application inserts; the layer's
//! [route function](KurokoLayer::route_fn), which maps a request's URI to its
//! template (for plain tower/hyper services without a router that knows
//! one); else the layer's fallback (`(unmatched)` by default). The raw path
//! is never used, since one series per id would exhaust the cardinality
//! limit.
//!
//! The response status sets the outcome (5xx is an error). A panic inside the
//! handler is captured as an error of type `panic` with its message, recorded
//! as a failed run, and then resumed, so the service behaves exactly as it
//! would without the layer. A request dropped before its response (the client
//! went away) is recorded as cancelled.
//!
//! # Trace context
//!
//! A request that carries a valid W3C `traceparent` header continues that
//! trace: if the run turns out slow, its trace (and the exemplar on its
//! duration histogram) carries the caller's trace id, with the caller's span
//! as parent, and the caller's `tracestate` is kept. A request without one
//! starts a new trace. A caller that did not sample the trace (flags `00`)
//! still has its run recorded in the histograms, but the run is never kept
//! as a trace. See [`crate::trace_context`]. With the `opentelemetry`
//! feature, a request served inside an OpenTelemetry span (a
//! `tracing-opentelemetry` request span entered around this layer, such as
//! `tower-http`'s `TraceLayer`) takes that span's trace and span ids instead.
//!
//! Calls to other services made through a client wrapped in
//! [`KurokoClientLayer`] (or, for clients that are not tower services such
//! as reqwest, through an [`OutgoingCall`]) while a request is being served
//! are timed as *external* segments of its run, and carry a `traceparent`
//! naming the call's own span, so the callee's run joins the same trace as a
//! child of that call.
//!
//! Handlers reach the current transaction through the [`CurrentTransaction`]
//! request extension, to time segments or capture errors (this example needs
//! the `axum` feature):
//!
//! ```
//! # #[cfg(feature = "axum")] {
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
//! # }
//! ```
//!
//! A plain tower service names its routes with a route function:
//!
//! ```
//! use std::borrow::Cow;
//! use kuroko_agent::{tower_layer::KurokoLayer, Agent};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), std::convert::Infallible> {
//! let agent = Agent::default();
//! let layer = KurokoLayer::new(agent.clone()).route_fn(|uri| match uri.path().strip_prefix("/cards/") {
//!     Some(id) if !id.contains('/') => Some(Cow::Borrowed("/cards/{id}")),
//!     _ => None,
//! });
//! let mut service = layer.layer(tower::service_fn(|_request: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("card")))
//! }));
//! let request = http::Request::get("/cards/42").body(String::new()).unwrap();
//! service.ready().await?.call(request).await?;
//! assert_eq!(agent.harvest().transaction("GET /cards/{id}").unwrap().count, 1);
//! # Ok(()) }
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, Uri};

use crate::clock::Stamp;
use crate::errors::CapturedError;
use crate::segments::SegmentStats;
use crate::trace_context::{random_id, TraceContext, TRACEPARENT, TRACESTATE};
use crate::traces::{RunIds, RunTrace};
use crate::transaction::{Outcome, Segment, SegmentKind, Transaction, TransactionGuard, TransactionSpec};
use crate::Agent;

/// A route template for the request, inserted by the application when the
/// router does not provide axum's `MatchedPath` (the `axum` feature).
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
    /// The trace id of this request's run: the caller's when the request
    /// carried a `traceparent`, else a new one, drawn now if not yet drawn.
    pub fn trace_id(&self) -> Option<[u8; 16]> {
        Some(self.run.as_ref()?.ids().trace_id)
    }

    /// Serves `future` as part of this request: calls made through
    /// [`KurokoClientLayer`] or [`OutgoingCall::start`] while it runs (in a
    /// task spawned by the handler, say) are timed as segments of this
    /// request's run and carry its trace context.
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            future,
            current: Some(self.clone()),
        }
    }

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

/// Maps a request's URI to its route template; see [`KurokoLayer::route_fn`].
type RouteFn = dyn Fn(&Uri) -> Option<Cow<'static, str>> + Send + Sync;

/// The layer; see the [module documentation](self).
#[derive(Clone)]
pub struct KurokoLayer {
    agent: Agent,
    unmatched: Cow<'static, str>,
    route_fn: Option<Arc<RouteFn>>,
}

impl std::fmt::Debug for KurokoLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurokoLayer")
            .field("agent", &self.agent)
            .field("unmatched", &self.unmatched)
            .field("route_fn", &self.route_fn.is_some())
            .finish()
    }
}

impl KurokoLayer {
    /// A layer recording into `agent`.
    pub fn new(agent: Agent) -> Self {
        KurokoLayer {
            agent,
            unmatched: Cow::Borrowed("(unmatched)"),
            route_fn: None,
        }
    }

    /// Names requests that carry neither axum's `MatchedPath` nor a
    /// [`RouteTemplate`] by what `route` returns for their URI: a route
    /// template such as `/cards/{id}`, never the raw path (one series per id
    /// would exhaust the cardinality limit), or `None` for the fallback
    /// ([`unmatched_route`](Self::unmatched_route)). It runs on every such
    /// request: return `Cow::Borrowed` to avoid an allocation.
    pub fn route_fn(mut self, route: impl Fn(&Uri) -> Option<Cow<'static, str>> + Send + Sync + 'static) -> Self {
        self.route_fn = Some(Arc::new(route));
        self
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
    /// The request being served on this thread, while its future is polled.
    static CURRENT: Cell<Option<CurrentTransaction>> = const { Cell::new(None) };
}

/// Puts `current` in place as this thread's request while `f` runs, and
/// takes it back afterwards (moves only: no reference count changes).
fn with_current<R>(current: &mut Option<CurrentTransaction>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        slot: &'a mut Option<CurrentTransaction>,
        previous: Option<CurrentTransaction>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let previous = self.previous.take();
            if let Ok(mine) = CURRENT.try_with(|cell| cell.replace(previous)) {
                *self.slot = mine;
            }
        }
    }
    // The closure (and so the take) runs only if the thread-local is alive.
    let Ok(previous) = CURRENT.try_with(|cell| cell.replace(current.take())) else {
        return f();
    };
    let _restore = Restore {
        slot: current,
        previous,
    };
    f()
}

/// A clone of the request being served on this thread, if any.
fn current() -> Option<CurrentTransaction> {
    CURRENT
        .try_with(|cell| {
            let current = cell.take();
            let copy = current.clone();
            cell.set(current);
            copy
        })
        .ok()
        .flatten()
}

/// The W3C trace context in `headers`, if valid (several `tracestate`
/// headers are joined with commas, as the specification says).
fn incoming_context(headers: &HeaderMap) -> Option<TraceContext> {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let parent = parents.next()?.to_str().ok()?;
    if parents.next().is_some() {
        // Several traceparent headers: the specification says to restart.
        return None;
    }
    let mut states = headers.get_all(TRACESTATE).iter().filter_map(|v| v.to_str().ok());
    let state: Option<Cow<'_, str>> = match (states.next(), states.next()) {
        (None, _) => None,
        (Some(one), None) => Some(Cow::Borrowed(one)),
        (Some(first), Some(second)) => {
            let mut joined = format!("{first},{second}");
            for more in states {
                joined.push(',');
                joined.push_str(more);
            }
            Some(Cow::Owned(joined))
        }
    };
    TraceContext::parse(parent, state.as_deref())
}

/// The route axum matched for `request`.
#[cfg(feature = "axum")]
fn matched_path<B>(request: &Request<B>) -> Option<&str> {
    Some(request.extensions().get::<axum::extract::MatchedPath>()?.as_str())
}

/// Without the `axum` feature, no router tells the route.
#[cfg(not(feature = "axum"))]
fn matched_path<B>(_request: &Request<B>) -> Option<&str> {
    None
}

impl<S> KurokoService<S> {
    fn transaction<B>(&self, request: &Request<B>) -> Transaction {
        let method = request.method().as_str();
        let from_fn;
        let route: &str = if let Some(path) = matched_path(request) {
            path
        } else if let Some(RouteTemplate(route)) = request.extensions().get::<RouteTemplate>() {
            route
        } else if let Some(route) = self.layer.route_fn.as_ref().and_then(|route| route(request.uri())) {
            from_fn = route;
            &from_fn
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
        if let Some(run) = &run {
            let remote = incoming_context(request.headers());
            // Inside an OpenTelemetry span (tracing-opentelemetry), the run
            // takes its ids; the caller's span is its parent if in its trace.
            #[cfg(feature = "opentelemetry")]
            let remote = match crate::otel::current_run_ids(remote.as_ref().map(|r| (r.trace_id(), r.span_id()))) {
                Some(ids) => {
                    run.set_ids(ids);
                    None
                }
                None => remote,
            };
            if let Some(remote) = remote {
                run.set_ids(RunIds::child_of(&remote));
            }
        }
        let current = CurrentTransaction { tx, run };
        request.extensions_mut().insert(current.clone());
        let mut current = Some(current);
        let called = with_current(&mut current, || {
            catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
        });
        match called {
            Ok(future) => ResponseFuture {
                future,
                guard: Some(guard),
                current,
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
        current: Option<CurrentTransaction>,
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
        let polled = with_current(this.current, || catch_unwind(AssertUnwindSafe(|| future.poll(cx))));
        let result = match polled {
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

pin_project_lite::pin_project! {
    /// A future served as part of a request; see [`CurrentTransaction::scope`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        #[pin]
        future: F,
        current: Option<CurrentTransaction>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        with_current(this.current, || future.poll(cx))
    }
}

/// A `tower::Layer` for HTTP clients (any `tower::Service` of
/// `http::Request`): calls made while a request is being served by
/// [`KurokoLayer`] are timed as *external* segments of that request's run
/// and carry its W3C trace context (`traceparent` naming the call's own
/// span, and `tracestate`), so the callee continues the same trace.
///
/// The request being served is found on the current thread while its
/// handler runs; for calls made from a task the handler spawned, wrap that
/// task in [`CurrentTransaction::scope`], or put the [`CurrentTransaction`]
/// in the outgoing request's extensions. Calls made outside any request
/// pass through untouched.
///
/// Each call is a segment named `METHOD host:port` by default (never the
/// path, which would make one segment per id); see
/// [`segment_name`](Self::segment_name).
///
/// ```
/// use kuroko_agent::tower_layer::KurokoClientLayer;
/// use tower::{Layer, Service};
///
/// # async fn example() -> Result<(), std::convert::Infallible> {
/// let send = tower::service_fn(|request: http::Request<String>| async move {
///     // Hand the request to hyper, reqwest (`reqwest::Request::try_from`), ...
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// });
/// let mut client = KurokoClientLayer::new().segment_name("billing").layer(send);
/// let response = client.call(http::Request::new(String::new())).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct KurokoClientLayer {
    name: Option<Cow<'static, str>>,
}

impl KurokoClientLayer {
    /// A client layer naming each call `METHOD host:port`.
    pub fn new() -> Self {
        KurokoClientLayer::default()
    }

    /// Names every call's segment `name` (the service called, say).
    pub fn segment_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<S> tower::Layer<S> for KurokoClientLayer {
    type Service = KurokoClientService<S>;

    fn layer(&self, inner: S) -> KurokoClientService<S> {
        KurokoClientService {
            inner,
            name: self.name.clone(),
        }
    }
}

/// The client service [`KurokoClientLayer`] wraps around yours.
#[derive(Clone, Debug)]
pub struct KurokoClientService<S> {
    inner: S,
    name: Option<Cow<'static, str>>,
}

impl<S> KurokoClientService<S> {
    /// Starts timing `request` as an external call of the request being
    /// served, and writes the trace context into its headers.
    fn start_call<B>(&self, request: &mut Request<B>) -> Option<OutgoingCall> {
        let current = request
            .extensions()
            .get::<CurrentTransaction>()
            .cloned()
            .or_else(current)?;
        let call = match &self.name {
            Some(name) => OutgoingCall::start_in(&current, name),
            None => {
                let host = request
                    .uri()
                    .authority()
                    .map(|a| a.as_str())
                    .or_else(|| request.headers().get(http::header::HOST)?.to_str().ok())
                    .unwrap_or("(no host)");
                OutgoingCall::start_in(&current, &format!("{} {host}", request.method()))
            }
        }?;
        call.inject(request.headers_mut());
        Some(call)
    }
}

impl<S, B, RB> tower::Service<Request<B>> for KurokoClientService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let call = self.start_call(&mut request);
        ClientFuture {
            future: self.inner.call(request),
            call,
        }
    }
}

/// One call to another service, made while a request is being served:
/// timed as an *external* segment of the request's run (recorded when
/// dropped: when the response arrived, the call failed, or the caller gave up
/// on it) and given a span of its own, whose W3C trace context goes with the
/// call so that the callee's run joins the trace as its child.
///
/// [`KurokoClientLayer`] does this for tower clients; `OutgoingCall` is the
/// same for any other client, reqwest say:
///
/// ```no_run
/// use kuroko_agent::tower_layer::OutgoingCall;
///
/// # async fn quote(client: reqwest::Client) -> Result<String, reqwest::Error> {
/// // In a handler served by KurokoLayer (None outside any request).
/// let call = OutgoingCall::start("GET billing");
/// let mut request = client.get("http://billing.internal/quote");
/// if let Some(call) = &call {
///     request = request.headers(call.headers());
/// }
/// let quote = request.send().await?.text().await;
/// drop(call); // the segment ends here
/// quote
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the call is timed until it is dropped"]
pub struct OutgoingCall {
    stats: Arc<SegmentStats>,
    run: Arc<RunTrace>,
    context: TraceContext,
    start: Stamp,
}

impl OutgoingCall {
    /// Starts a call named `name` (the service or host called, never a path
    /// with ids in it) of the request being served on this thread; `None`
    /// outside any request (in a spawned task, see
    /// [`CurrentTransaction::scope`] or [`start_in`](Self::start_in)).
    pub fn start(name: &str) -> Option<OutgoingCall> {
        OutgoingCall::start_in(&current()?, name)
    }

    /// Starts a call named `name` of the request `current`.
    pub fn start_in(current: &CurrentTransaction, name: &str) -> Option<OutgoingCall> {
        let run = current.run.clone()?;
        let context = run.outgoing(random_id())?;
        Some(OutgoingCall {
            stats: current.tx.series.segments.resolve(SegmentKind::External, name),
            run,
            context,
            start: Stamp::now(),
        })
    }

    /// The trace context sent with the call: the run's trace id and sampled
    /// flag, the call's own span id, and the caller's `tracestate`.
    pub fn context(&self) -> &TraceContext {
        &self.context
    }

    /// `traceparent` (and `tracestate`, if any) as headers to send.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.inject(&mut headers);
        headers
    }

    /// Writes `traceparent` and `tracestate` into `headers`, replacing what
    /// was there.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.context.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        headers.remove(TRACESTATE);
        if let Some(Ok(value)) = self.context.tracestate().map(HeaderValue::from_str) {
            headers.insert(TRACESTATE, value);
        }
    }
}

impl Drop for OutgoingCall {
    fn drop(&mut self) {
        let ns = self.start.elapsed_ns();
        self.stats.record(ns, ns);
        self.run
            .add_span(self.stats.clone(), self.start, ns, self.context.span_id());
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`KurokoClientService`].
    pub struct ClientFuture<F> {
        #[pin]
        future: F,
        call: Option<OutgoingCall>,
    }
}

impl<F: Future> Future for ClientFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        // Recorded as soon as the response head is in.
        this.call.take();
        Poll::Ready(output)
    }
}
