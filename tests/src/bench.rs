//! What the benchmarks against a real server share: their settings from the environment, one
//! run's waits summed up, medians over runs, and what the process spent.

use std::time::Duration;

/// The environment variable `name` as a number, else `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One run's checkouts: how many per second, and the waits for a connection.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// Checkouts per second.
    pub per_sec: f64,
    /// The median wait: where a regime in which most checkouts wait shows first.
    pub p50: Duration,
    /// The 99th percentile wait.
    pub p99: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Waits {
    /// The figures of `waits`, one per checkout, done in `elapsed`.
    ///
    /// # Panics
    /// If `waits` is empty.
    pub fn of(mut waits: Vec<Duration>, elapsed: Duration) -> Waits {
        waits.sort();
        Waits {
            per_sec: waits.len() as f64 / elapsed.as_secs_f64(),
            p50: waits[waits.len() / 2],
            p99: waits[waits.len() * 99 / 100],
            max: waits[waits.len() - 1],
        }
    }

    /// Each figure's median over `runs` (figure by figure: not one run's).
    ///
    /// # Panics
    /// If `runs` is empty.
    pub fn median(runs: &[Waits]) -> Waits {
        Waits {
            per_sec: median_by(runs, |r| r.per_sec).per_sec,
            p50: median_by(runs, |r| r.p50.as_secs_f64()).p50,
            p99: median_by(runs, |r| r.p99.as_secs_f64()).p99,
            max: median_by(runs, |r| r.max.as_secs_f64()).max,
        }
    }
}

/// The run whose `key` is the median of `runs`.
///
/// # Panics
/// If `runs` is empty.
pub fn median_by<T: Copy>(runs: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted[sorted.len() / 2]
}

/// `a[r] / b[r]` for each round `r` (figures measured seconds apart, so the machine's drift
/// cancels out): the median, lowest and highest over the rounds.
///
/// # Panics
/// If `a` is empty or longer than `b`.
pub fn paired(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    )
}

/// Upper edges of [`histogram`]'s buckets, in microseconds: fine around the default fairness
/// bound (0.7 ms), so that waits piled up at it stand apart from those served before it.
pub const BUCKETS_US: [u64; 12] = [10, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000, 2000];

/// The share of `waits` (in percent) below each edge of [`BUCKETS_US`] and not below the one
/// before, and last the share at 2 ms or more.
pub fn histogram(waits: &[Duration]) -> [f64; 13] {
    let mut counts = [0usize; 13];
    for w in waits {
        let us = w.as_micros();
        let b = BUCKETS_US
            .iter()
            .position(|&edge| us < u128::from(edge))
            .unwrap_or(BUCKETS_US.len());
        counts[b] += 1;
    }
    counts.map(|c| 100.0 * c as f64 / waits.len().max(1) as f64)
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// This process's CPU time (user and system) and context switches so far.
pub fn usage() -> (Duration, u64) {
    // SAFETY: getrusage writes only the struct it is given.
    let ru = unsafe {
        let mut ru = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let switches = (ru.ru_nvcsw + ru.ru_nivcsw) as u64;
    (tv(ru.ru_utime) + tv(ru.ru_stime), switches)
}
