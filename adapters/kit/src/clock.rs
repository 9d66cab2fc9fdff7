//! [`Clock`]: a pool's time, as the core counts it (nanoseconds since the pool was built), read
//! precisely or cheaply.

use sanspool_core::{Time, Wait};
use std::time::{Duration, Instant};

/// A pool's clock: its origin, and the coarse clock's zero.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    /// The coarse clock's reading (in its 32.32 fixed-point seconds) that is [`recent`]'s zero:
    /// when the pool was built, plus [`COARSE_LAG`].
    ///
    /// [`recent`]: Clock::recent
    coarse_zero: u64,
}

/// How far behind the precise clock [`Clock::recent`] is taken: more than the kernel's coarse
/// clock's tick (1 to 10 ms), so that it never runs ahead of [`Clock::now`].
const COARSE_LAG: Duration = Duration::from_millis(20);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
            coarse_zero: coarsetime::Instant::now_without_cache_update()
                .as_u64()
                .saturating_add(coarsetime::Duration::from(COARSE_LAG).as_u64()),
        }
    }

    /// The pool's time, cheaply (the kernel's coarse clock: a few ns against ~20 for the precise
    /// one) and a little behind: for inputs whose time no waiter depends on — a checkout served
    /// at once, a checkin nobody waits for. Idle times and lifetimes are minutes; the pool's
    /// clock never goes back, so a reading behind it is simply its latest time.
    #[inline]
    pub fn recent(&self) -> Time {
        let now = coarsetime::Instant::now_without_cache_update().as_u64();
        let since = now.saturating_sub(self.coarse_zero);
        // Fixed-point seconds to nanoseconds: whole seconds, then the fraction.
        let (secs, frac) = (since >> 32, since & 0xFFFF_FFFF);
        Time::from_nanos(secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32))
    }

    /// The pool's time: since the pool was built.
    pub fn now(&self) -> Time {
        self.time(Instant::now())
    }

    /// The pool's time at `at`.
    pub fn time(&self, at: Instant) -> Time {
        Time::from_nanos(nanos(at.saturating_duration_since(self.origin)))
    }

    /// The instant of a pool time; `None` if it is beyond what `Instant` holds.
    pub fn instant(&self, t: Time) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(t.as_nanos()))
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
