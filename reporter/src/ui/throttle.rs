//! Login throttling: wrong query tokens are counted per client address and
//! in total over a window; past either budget, the reporter answers 429
//! with `Retry-After` until the window ends, right token or not (else a
//! guesser would keep guessing and learn when it hit). Wrong tokens are
//! counted wherever they decide the answer: `/login`'s form, and
//! `authorization: Bearer` or the cookie on the API, the pages and
//! `/metrics` ([`guard`]); not on `/login`, `/logout` or static files,
//! where a stale cookie rides along and decides nothing. The total budget
//! closes only `/login`: closing the API and the pages too would let one
//! guesser with a few addresses shut every script, scraper and open page
//! out; their guesses are held by the per-address budget.
//!
//! Addresses are the TCP peer's (a proxy's `X-Forwarded-For` is not
//! trusted: anyone can write it); an IPv6 client counts by its /64, which a
//! single host can hop within. At most [`MAX_ADDRESSES`] addresses are
//! tracked; past that, new addresses count only toward the total.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// Most client addresses whose failures are remembered at once.
pub(crate) const MAX_ADDRESSES: usize = 10_000;

/// How many wrong tokens are allowed, per what window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoginLimits {
    /// Wrong tokens one address may send per window.
    pub per_address: u32,
    /// Wrong tokens all addresses together may send per window.
    pub total: u32,
    /// The window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_address: 10,
            total: 100,
            window: Duration::from_secs(60),
        }
    }
}

/// Failures since `start`.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    /// How long until the window ends, when it is still open and full.
    fn closed_for(&self, limit: u32, length: Duration, now: Instant) -> Option<Duration> {
        let ends = self.start + length;
        (self.failures >= limit && now < ends).then(|| ends - now)
    }

    /// Counts a failure at `now`, opening a new window when the last ended.
    fn add(&mut self, length: Duration, now: Instant) {
        if now >= self.start + length {
            *self = Window {
                start: now,
                failures: 0,
            };
        }
        self.failures = self.failures.saturating_add(1);
    }
}

/// The wrong tokens seen, per address and in total.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    limits: LoginLimits,
    state: Mutex<Failures>,
    /// Wrong tokens sent to `/login`.
    pub failed: AtomicU64,
    /// Attempts refused with 429.
    pub throttled: AtomicU64,
}

/// Which budgets a check asks.
#[derive(Clone, Copy)]
enum Budgets {
    Address,
    AddressAndTotal,
}

#[derive(Debug)]
struct Failures {
    by_address: HashMap<IpAddr, Window>,
    total: Window,
}

/// The address failures are counted under: an IPv6 address's /64.
fn bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl LoginThrottle {
    /// A throttle allowing `limits`.
    pub(crate) fn new(limits: LoginLimits) -> Self {
        LoginThrottle {
            limits,
            state: Mutex::new(Failures {
                by_address: HashMap::new(),
                total: Window {
                    start: Instant::now(),
                    failures: 0,
                },
            }),
            failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// `Err(wait)` when `address` (or everyone) has used its budget of wrong
    /// tokens: a `/login` attempt is refused without checking its token, and
    /// counted.
    pub(crate) fn check(&self, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        self.check_in(Budgets::AddressAndTotal, address, now)
    }

    /// `Err(wait)` when `address` has used its budget: a request carrying a
    /// token is refused without checking it, and counted. The total is not
    /// asked: spent, it would shut every script, scraper and open page out.
    pub(crate) fn check_address(&self, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        self.check_in(Budgets::Address, address, now)
    }

    fn check_in(&self, budgets: Budgets, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let LoginLimits {
            per_address,
            total,
            window,
        } = self.limits;
        let state = crate::sync::lock(&self.state);
        let own = address
            .and_then(|a| state.by_address.get(&bucket(a)))
            .and_then(|w| w.closed_for(per_address, window, now));
        let everyone = match budgets {
            Budgets::AddressAndTotal => state.total.closed_for(total, window, now),
            Budgets::Address => None,
        };
        match own.into_iter().chain(everyone).max() {
            Some(wait) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                Err(wait)
            }
            None => Ok(()),
        }
    }

    /// Counts a wrong token from `address` at `now`.
    pub(crate) fn failure(&self, address: Option<IpAddr>, now: Instant) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let window = self.limits.window;
        let mut state = crate::sync::lock(&self.state);
        state.total.add(window, now);
        let Some(address) = address.map(bucket) else {
            return;
        };
        if !state.by_address.contains_key(&address) && state.by_address.len() >= MAX_ADDRESSES {
            state.by_address.retain(|_, w| now < w.start + window);
            if state.by_address.len() >= MAX_ADDRESSES {
                return;
            }
        }
        state
            .by_address
            .entry(address)
            .or_insert(Window {
                start: now,
                failures: 0,
            })
            .add(window, now);
    }
}

/// Whole seconds of `wait`, rounded up: a client that waits that long is let in.
pub(crate) fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The client's address, as the TCP connection gives it (absent when the
/// router is served without connection info, as in tests).
pub(crate) fn client_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// Whether `request` carries a query token of its own (a header or the
/// cookie) that decides its answer.
fn carries_token(request: &Request) -> bool {
    let path = request.uri().path();
    let decides = !(path == "/login" || path == "/logout" || path.starts_with("/static/"));
    let headers = request.headers();
    decides
        && (headers.contains_key(header::AUTHORIZATION)
            || headers
                .get_all(header::COOKIE)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains(super::TOKEN_COOKIE))))
}

/// Middleware for the API, the pages and `/metrics` (not OTLP, whose
/// token is another): a request carrying a query token from an address
/// over its budget is refused with 429; a wrong one is counted.
pub(crate) async fn guard(
    State((app, throttle)): State<(App, std::sync::Arc<LoginThrottle>)>,
    request: Request,
    next: Next,
) -> Response {
    if !app.requires_token() || !carries_token(&request) {
        return next.run(request).await;
    }
    let address = client_address(&request);
    let now = Instant::now();
    if let Err(wait) = throttle.check_address(address, now) {
        let seconds = retry_seconds(wait);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong tokens: try again in {seconds} s\n"),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    if !super::authorized(&app, request.headers()) {
        throttle.failure(address, now);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_budget_waits_for_the_window_others_do_not() {
        let throttle = LoginThrottle::new(LoginLimits {
            per_address: 3,
            total: 5,
            window: Duration::from_secs(60),
        });
        let t = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(throttle.check(Some(a), t).is_ok());
            throttle.failure(Some(a), t);
        }
        let wait = throttle.check(Some(a), t + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(throttle.check(Some(b), t).is_ok(), "another address is not held");
        throttle.failure(Some(b), t);
        throttle.failure(Some(b), t);
        assert!(
            throttle.check(Some("10.0.0.3".parse().unwrap()), t).is_err(),
            "the total is spent"
        );
        assert!(
            throttle.check(Some(a), t + Duration::from_secs(60)).is_ok(),
            "the window ended"
        );
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let fresh = LoginThrottle::new(LoginLimits {
            per_address: 1,
            ..LoginLimits::default()
        });
        fresh.failure(v6("2001:db8::1"), t);
        assert!(fresh.check(v6("2001:db8::ffff"), t).is_err(), "one /64 is one client");
        assert!(fresh.check(v6("2001:db8:0:1::1"), t).is_ok());
    }
}
