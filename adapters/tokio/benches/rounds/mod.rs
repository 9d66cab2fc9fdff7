//! What the async benches share: tasks released together, and ratios paired by round.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Each round's throughput over the best peer's of the same round (measured seconds apart, so
/// the machine's drift cancels out): the median, lowest and highest over the rounds.
///
/// # Panics
/// If there are no rounds.
pub fn paired(per_sec: &[f64], best: &[f64]) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = per_sec.iter().zip(best).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    )
}
