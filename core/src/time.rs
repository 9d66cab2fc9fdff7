//! Time as a plain value: the core never reads a clock.

use core::time::Duration;

/// A point in time, in nanoseconds from an origin the driver picks (process start, boot, epoch...).
///
/// no_std targets and WebAssembly have no `std::time::Instant`, so the driver passes `Time` with every
/// input and the core compares values only. Time that goes backwards is clamped (see `Pool::advance`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// `nanos` nanoseconds after the origin.
    #[inline]
    pub const fn from_nanos(nanos: u64) -> Time {
        Time(nanos)
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the far future rather than wrapping.
    #[inline]
    pub fn saturating_add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(nanos(d)))
    }

    /// `self + d`, or `None` past the end of time.
    #[inline]
    pub(crate) fn checked_add(self, d: Duration) -> Option<Time> {
        self.0
            .checked_add(u64::try_from(d.as_nanos()).ok()?)
            .map(Time)
    }

    /// How long after `earlier` this is; zero if it is not after.
    #[inline]
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in whole nanoseconds, saturating (a `Duration` can exceed 584 years; a `Time` cannot).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
