//! What the benchmarks against a real server share: their settings from the environment, one
//! run's waits summed up, and medians over runs.

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

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
