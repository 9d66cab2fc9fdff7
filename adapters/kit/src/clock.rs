//! [`Clock`]: a pool's time, as the core counts it (nanoseconds since the pool was built).

use sanspool_core::{Time, Wait};
use std::time::{Duration, Instant};

/// A pool's clock: the CPU's time-stamp counter, calibrated against the OS's monotonic clock
/// (`quanta`; the OS's clock itself where the counter is not reliable), counted from the pool's
/// start. Read on every checkout and checkin made while checkouts wait, where `Instant::now`
/// costs 23 ns here and the counter 9 (`docs/tuning.md`).
///
/// Its rate and the OS clock's may differ a little (the counter's calibration, the OS clock's
/// NTP slewing), so a pool time becomes an `Instant` only for a sleep, counted from the moment
/// of the conversion: no difference adds up over a pool's life, and one that shows within a
/// sleep (parts per million of it) is a sleeper that wakes a moment before its deadline has
/// passed on this clock, which every driver's wait already handles.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: quanta::Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock {
            origin: quanta::Instant::now(),
        }
    }

    /// The pool's time: since the pool was built.
    #[inline]
    pub fn now(&self) -> Time {
        let since = quanta::Instant::now().saturating_duration_since(self.origin);
        Time::from_nanos(nanos(since))
    }

    /// The instant at which the pool's time will be `t`, for a sleep until then (now if `t`
    /// has passed); `None` if it is beyond what `Instant` holds.
    pub fn instant(&self, t: Time) -> Option<Instant> {
        // The pool's time first: the `Instant` read after it is no earlier than that moment,
        // so the sleep does not end before `t`.
        let left = t.saturating_since(self.now());
        Instant::now().checked_add(left)
    }

    /// Until when a checkout that waits `wait` sleeps; `None`: until woken (also for a deadline
    /// beyond what `Instant` holds, which nobody lives to see).
    pub fn deadline(&self, wait: Wait) -> Option<Instant> {
        match wait {
            Wait::Until(t) => self.instant(t),
            Wait::No | Wait::Forever => None,
        }
    }
}

/// Whole nanoseconds, saturating (the core's `Time` is a `u64` of them).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether the core's next deadline `next` comes before `alarm`, the one the driver's
/// maintenance sleeps until (`None`: it sleeps until woken): then it must be woken.
#[inline]
pub fn sooner(next: Option<Time>, alarm: Option<Time>) -> bool {
    match (next, alarm) {
        (Some(n), Some(a)) => n < a,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// A sleep until `instant(t)` ends with the pool's clock at `t` or later (so the core's
    /// timeout has come when a sleeping checkout wakes).
    #[test]
    fn a_sleep_until_the_instant_of_a_time_ends_past_it() {
        let clock = Clock::start();
        for ms in [0, 1, 2, 5] {
            let t = clock.now().saturating_add(Duration::from_millis(ms));
            let at = clock
                .instant(t)
                .expect("a time of this run fits in an Instant");
            while let Some(left) = at.checked_duration_since(Instant::now()) {
                thread::sleep(left);
            }
            let now = clock.now();
            assert!(now >= t, "woke at {now:?}, before {t:?}");
        }
    }

    /// The pool's clock keeps the OS clock's rate (within 1% and 100 µs over 20 ms).
    #[test]
    fn the_pool_clock_runs_with_the_os_clock() {
        let clock = Clock::start();
        let (i0, t0) = (Instant::now(), clock.now());
        thread::sleep(Duration::from_millis(20));
        let (t1, i1) = (clock.now(), Instant::now());
        let (pool, os) = (t1.saturating_since(t0), i1 - i0);
        assert!(
            pool >= Duration::from_millis(20) - os / 100,
            "{pool:?} over {os:?}"
        );
        assert!(
            pool <= os + os / 100 + Duration::from_micros(100),
            "{pool:?} over {os:?}"
        );
    }

    /// A time already past is an instant of now, not of the past.
    #[test]
    fn a_past_time_is_now() {
        let clock = Clock::start();
        thread::sleep(Duration::from_millis(2));
        let before = Instant::now();
        let at = clock.instant(Time::ZERO).expect("now fits in an Instant");
        assert!(at >= before);
    }
}
