//! Login throttling: wrong tokens sent to `/login` are counted per client
//! address and in total over a window; past either budget, `/login`
//! answers 429 with `Retry-After` until the window ends, right token or not
//! (else a guesser would keep guessing and learn when it hit).
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

/// Most client addresses whose failures are remembered at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// How many wrong tokens are allowed, per what window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
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
pub struct LoginThrottle {
    limits: LoginLimits,
    state: Mutex<State>,
    /// Wrong tokens sent to `/login`.
    pub failed: AtomicU64,
    /// Attempts refused with 429.
    pub throttled: AtomicU64,
}

#[derive(Debug)]
struct State {
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
    pub fn new(limits: LoginLimits) -> Self {
        LoginThrottle {
            limits,
            state: Mutex::new(State {
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
    /// tokens: the attempt is refused without checking its token, and counted.
    pub fn check(&self, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let LoginLimits {
            per_address,
            total,
            window,
        } = self.limits;
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let own = address
            .and_then(|a| state.by_address.get(&bucket(a)))
            .and_then(|w| w.closed_for(per_address, window, now));
        let everyone = state.total.closed_for(total, window, now);
        match own.into_iter().chain(everyone).max() {
            Some(wait) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                Err(wait)
            }
            None => Ok(()),
        }
    }

    /// Counts a wrong token from `address` at `now`.
    pub fn failure(&self, address: Option<IpAddr>, now: Instant) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let window = self.limits.window;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
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
