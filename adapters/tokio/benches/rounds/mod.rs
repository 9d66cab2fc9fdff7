//! What the async benches share: which pools and concurrencies run, in which order, tasks
//! released together, and throughput ratios paired by round.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pools to run: `all`, or those `POOLS` names (comma-separated).
pub fn chosen(all: &[&'static str]) -> Vec<&'static str> {
    let only = std::env::var("POOLS").ok();
    all.iter()
        .copied()
        .filter(|k| {
            only.as_ref()
                .is_none_or(|o| o.split(',').any(|n| *k == n.trim()))
        })
        .collect()
}

/// The concurrencies to run: `TASKS` (comma-separated), or 1, 16 and 256.
pub fn concurrencies() -> Vec<usize> {
    std::env::var("TASKS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 256])
}

/// The order in which round `round` runs `n` pools: the first changes from round to round.
pub fn order(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n)
}

/// Spawns `tasks` tasks, the `t`-th running `task(t)`, releases them together, and returns their
/// outputs in task order with the time from their release to the end of the last.
pub async fn together<T, F, Fut>(tasks: usize, task: F) -> (Vec<T>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let (run, start) = (task(t), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                run.await
            })
        })
        .collect();
    start.wait().await;
    let t0 = Instant::now();
    let mut outputs = Vec::with_capacity(tasks);
    for w in workers {
        outputs.push(w.await.expect("a bench task panicked"));
    }
    (outputs, t0.elapsed())
}

/// Whether a pool is one of the peers the ratios are to: deadpool's or bb8's.
fn is_peer(kind: &str) -> bool {
    kind.starts_with("deadpool") || kind.starts_with("bb8")
}

/// For each pool, its throughput in each round over the better peer's in the same round
/// (measured seconds apart, so the machine's drift cancels out): the median, lowest and highest
/// over the rounds. `per_sec[i][r]`: pool `kinds[i]`'s throughput in round `r`.
pub fn paired(kinds: &[&str], per_sec: &[Vec<f64>]) -> Vec<(f64, f64, f64)> {
    let rounds = per_sec.first().map_or(0, Vec::len);
    let best: Vec<f64> = (0..rounds)
        .map(|r| {
            kinds
                .iter()
                .zip(per_sec)
                .filter(|(k, _)| is_peer(k))
                .map(|(_, runs)| runs[r])
                .fold(f64::NAN, f64::max)
        })
        .collect();
    per_sec
        .iter()
        .map(|runs| {
            let mut ratios: Vec<f64> = runs.iter().zip(&best).map(|(a, b)| a / b).collect();
            ratios.sort_by(f64::total_cmp);
            (
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1],
            )
        })
        .collect()
}
