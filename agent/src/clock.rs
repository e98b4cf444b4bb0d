//! The agent's monotonic clock.
//!
//! Timing a transaction takes two clock reads, and a span with a segment four,
//! so the read is worth making cheap. Where the CPU has an invariant TSC,
//! `quanta` reads it directly (a few nanoseconds, no system call, no vDSO
//! bookkeeping) and scales it to nanoseconds; elsewhere it falls back to the
//! OS monotonic clock. Either way time never runs backwards: a reading earlier
//! than its start gives zero. Wall-clock time is read only at harvest.

use std::sync::OnceLock;

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
static EPOCH: OnceLock<Stamp> = OnceLock::new();

fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Calibrates the clock now (once per process, at most 200 ms, usually
/// 10-20 ms), so that no request pays for it. Called by `Agent::new`.
pub(crate) fn warm() {
    clock();
    EPOCH.get_or_init(Stamp::now);
}

/// A point in time on the agent's clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// Now.
    #[inline]
    pub(crate) fn now() -> Stamp {
        Stamp(clock().raw())
    }

    /// Nanoseconds since this stamp.
    #[inline]
    pub(crate) fn elapsed_ns(self) -> u64 {
        let clock = clock();
        clock.delta_as_nanos(self.0, clock.raw())
    }

    /// Nanoseconds from `earlier` to this stamp (zero if it is not earlier).
    pub(crate) fn since(self, earlier: Stamp) -> u64 {
        clock().delta_as_nanos(earlier.0, self.0)
    }

    /// The wall-clock time of this stamp, given a later stamp `now` read at
    /// wall-clock time `wall` (never panics, whatever the wall clock says).
    pub(crate) fn wall_time(self, now: Stamp, wall: std::time::SystemTime) -> std::time::SystemTime {
        wall.checked_sub(std::time::Duration::from_nanos(now.since(self)))
            .unwrap_or(std::time::UNIX_EPOCH)
    }

    /// Whole minutes since the clock's first stamp of the process.
    pub(crate) fn minutes(self) -> u64 {
        self.since(*EPOCH.get_or_init(Stamp::now)) / 60_000_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_like_the_os_clock() {
        let (stamp, reference) = (Stamp::now(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(30));
        let ours = stamp.elapsed_ns() as f64;
        let os = reference.elapsed().as_nanos() as f64;
        assert!((ours - os).abs() / os < 0.05, "ours {ours} ns, the OS's {os} ns");
    }
}
