//! The pool driven against an in-memory async connector: waiting, timeouts, fairness (strict and
//! bounded, with barging), cancellation, dirty and broken returns, failed opens, maintenance,
//! close.

use sanspool_tokio::{
    BuildError, Builder, Connector, CoreError, Fairness, GetError, Pool, Returned,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct FakeError(&'static str);

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for FakeError {}

#[derive(Debug)]
struct FakeConn {
    id: u32,
    /// What the borrower left it as.
    state: Returned,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU32,
    closed: AtomicU32,
    resets: AtomicU32,
    fail_opens: AtomicBool,
    permanent: AtomicBool,
    /// Connection ids whose checks fail.
    failing_checks: Mutex<Vec<u32>>,
    checks: AtomicU32,
    fail_resets: AtomicBool,
    /// Closes fail (the connection is gone all the same).
    fail_closes: AtomicBool,
    /// Failed resets, checks and closes were cut off at their bound (`is_abandoned`).
    abandon: AtomicBool,
}

/// The error of an operation cut off at its bound.
const TIMED_OUT: &str = "timed out at its bound";

impl Fake {
    /// A failure: `why`, or cut off at its bound if `abandon` is set.
    fn failure(&self, why: &'static str) -> FakeError {
        FakeError(if self.0.abandon.load(Ordering::SeqCst) {
            TIMED_OUT
        } else {
            why
        })
    }
}

#[derive(Clone, Default)]
struct Fake(Arc<Counters>);

impl Connector for Fake {
    type Conn = FakeConn;
    type Error = FakeError;

    async fn connect(&self) -> Result<FakeConn, FakeError> {
        tokio::task::yield_now().await;
        if self.0.fail_opens.load(Ordering::SeqCst) {
            return Err(FakeError("refused"));
        }
        let id = self.0.opened.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(FakeConn {
            id,
            state: Returned::Clean,
        })
    }

    fn state(&self, conn: &mut FakeConn) -> Returned {
        conn.state
    }

    async fn reset(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        tokio::task::yield_now().await;
        self.0.resets.fetch_add(1, Ordering::SeqCst);
        if self.0.fail_resets.load(Ordering::SeqCst) {
            return Err(self.failure("reset failed"));
        }
        conn.state = Returned::Clean;
        Ok(())
    }

    async fn check(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        // Answered later, so the pool really waits for the answers.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.checks.fetch_add(1, Ordering::SeqCst);
        if self.0.failing_checks.lock().unwrap().contains(&conn.id) {
            return Err(self.failure("check failed"));
        }
        Ok(())
    }

    fn is_permanent(&self, _: &FakeError) -> bool {
        self.0.permanent.load(Ordering::SeqCst)
    }

    fn is_abandoned(&self, error: &FakeError) -> bool {
        error.0 == TIMED_OUT
    }

    async fn close(&self, conn: FakeConn) -> Result<(), FakeError> {
        let _ = conn;
        self.0.closed.fetch_add(1, Ordering::SeqCst);
        if self.0.fail_closes.load(Ordering::SeqCst) {
            return Err(self.failure("close failed"));
        }
        Ok(())
    }
}

/// Polls until `done`, within a generous bound (the tasks run on the same runtime).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn pool(fake: &Fake, min: usize, max: usize, timeout: Duration) -> Pool<Fake> {
    Builder::new(fake.clone())
        .min(min)
        .max(max)
        .timeout(timeout)
        .build()
        .await
        .expect("builds")
}

/// Polls a future once (it then sits queued, if it waits).
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    std::pin::Pin::new(f).poll(&mut cx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_opens_min_and_a_clean_return_is_reused() {
    let fake = Fake::default();
    let pool = pool(&fake, 2, 4, Duration::from_secs(5)).await;
    assert_eq!(pool.stats().idle, 2);
    for _ in 0..10 {
        let conn = pool.get().await.unwrap();
        assert!(conn.id <= 2);
    }
    let s = pool.stats();
    assert_eq!((s.checkouts, s.opens, s.resets), (10, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_first_come_first_served() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 1, Duration::from_secs(10)).await;
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (p, order) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let conn = p.get().await.unwrap();
            order.lock().unwrap().push(i);
            drop(conn);
        }));
        // Each queues before the next starts: the queue order is known.
        eventually("queued", || pool.stats().waiting == i + 1).await;
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(pool.stats().waits, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_times_out_within_its_bound() {
    let fake = Fake::default();
    let timeout = Duration::from_millis(200);
    let pool = pool(&fake, 1, 1, timeout).await;
    let _held = pool.get().await.unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_secs(2), "{took:?}");
    let s = pool.stats();
    assert_eq!((s.timeouts, s.waiting), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_get_leaves_no_trace() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 1, Duration::from_secs(10)).await;
    let held = pool.get().await.unwrap();
    let mut get = Box::pin(pool.get());
    assert!(poll_once(&mut get).is_pending());
    assert_eq!(pool.stats().waiting, 1);
    drop(get);
    assert_eq!(pool.stats().waiting, 0);
    drop(held);
    // Not granted to the gone waiter: idle again, and the next checkout takes it at once.
    assert_eq!(pool.stats().idle, 1);
    let mut next = Box::pin(pool.get());
    assert!(poll_once(&mut next).is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_dropped_after_its_grant_gives_the_connection_back() {
    let fake = Fake::default();
    // Strict: the return is granted, not left idle for a wake (the bounded case, a grant at the
    // bound to a woken checkout, is its own test below).
    let pool = pool_with(&fake, 1, Fairness::Strict).await;
    let held = pool.get().await.unwrap();
    let mut get = Box::pin(pool.get());
    assert!(poll_once(&mut get).is_pending());
    // The grant waits in the queued future's entry; the future is never polled again.
    drop(held);
    assert_eq!(pool.stats().in_use, 1);
    drop(get);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.waiting), (0, 1, 0));
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 1);
}

/// A queued `get()` served but then neither polled nor dropped keeps its connection while
/// thousands of later checkouts queue and are served past it; polled at last it gets that
/// connection, and another such future, dropped at last, gives its own back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_get_left_unpolled_keeps_its_connection_while_many_pass() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 3, Fairness::Strict).await;
    let (a, b, mut c) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    let (a_id, b_id) = (a.id, b.id);
    let mut kept = Box::pin(pool.get());
    let mut dropped = Box::pin(pool.get());
    assert!(poll_once(&mut kept).is_pending());
    assert!(poll_once(&mut dropped).is_pending());
    // Served in line: `a` to `kept`, `b` to `dropped`; neither future is polled.
    drop(a);
    drop(b);
    assert_eq!(pool.stats().waiting, 0);
    for _ in 0..5000 {
        let mut next = Box::pin(pool.get());
        assert!(poll_once(&mut next).is_pending());
        drop(c);
        c = next.await.unwrap();
    }
    drop(dropped);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.waiting), (2, 1, 0));
    let Poll::Ready(got) = poll_once(&mut kept) else {
        panic!("served long ago")
    };
    assert_eq!(got.unwrap().id, a_id);
    drop(c);
    // `b` is idle again, and nothing was opened or closed on the way.
    let conns = [pool.get().await.unwrap(), pool.get().await.unwrap()];
    assert!(conns.iter().any(|c| c.id == b_id));
    assert_eq!(fake.0.opened.load(Ordering::SeqCst), 3);
    assert_eq!(fake.0.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_returns_are_reset_and_broken_ones_replaced() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 1, Duration::from_secs(5)).await;
    {
        let mut conn = pool.get().await.unwrap();
        conn.state = Returned::Dirty;
    }
    // The next checkout waits for the reset, and gets the same, clean connection.
    let mut conn = pool.get().await.unwrap();
    assert_eq!((conn.id, conn.state), (1, Returned::Clean));
    assert_eq!(fake.0.resets.load(Ordering::SeqCst), 1);
    conn.state = Returned::Broken;
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 2);
    assert_eq!(fake.0.closed.load(Ordering::SeqCst), 1);
    assert_eq!(pool.stats().broken_returns, 1);
}

/// Resets, checks and closes cut off at their bound (`Connector::is_abandoned`) are handled as
/// failures — the connection closed and replaced — and counted apart in the stats; plain failures
/// are not counted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_resets_checks_and_closes_are_counted() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 1, Duration::from_secs(5)).await;
    let abandoned = |pool: &Pool<Fake>| {
        let s = pool.stats();
        [s.abandoned_resets, s.abandoned_checks, s.abandoned_closes]
    };
    let closed = |n: u32| {
        let fake = fake.clone();
        move || fake.0.closed.load(Ordering::SeqCst) == n
    };
    // A plain failed reset and check: closed and replaced, not counted.
    fake.0.fail_resets.store(true, Ordering::SeqCst);
    pool.get().await.unwrap().state = Returned::Dirty;
    eventually("the failed reset's close", closed(1)).await;
    *fake.0.failing_checks.lock().unwrap() = (1..=10).collect();
    eventually("refilled", || pool.stats().idle == 1).await;
    assert_eq!(pool.check().await.unwrap(), 1);
    eventually("the failed check's close", closed(2)).await;
    assert_eq!(abandoned(&pool), [0, 0, 0]);

    // Cut off at their bound: the same, and counted.
    fake.0.abandon.store(true, Ordering::SeqCst);
    eventually("refilled", || pool.stats().idle == 1).await;
    pool.get().await.unwrap().state = Returned::Dirty;
    eventually("the abandoned reset's close", closed(3)).await;
    assert_eq!(abandoned(&pool), [1, 0, 0]);
    eventually("refilled", || pool.stats().idle == 1).await;
    assert_eq!(pool.check().await.unwrap(), 1);
    eventually("the abandoned check's close", closed(4)).await;
    assert_eq!(abandoned(&pool), [1, 1, 0]);

    // A close cut off at its bound still frees its place: the pool refills.
    fake.0.fail_closes.store(true, Ordering::SeqCst);
    eventually("refilled", || pool.stats().idle == 1).await;
    pool.get().await.unwrap().state = Returned::Broken;
    eventually("the abandoned close", || abandoned(&pool) == [1, 1, 1]).await;
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 6, "the place was freed and refilled");
    drop(conn);
    fake.0.abandon.store(false, Ordering::SeqCst);
    pool.get().await.unwrap().state = Returned::Broken;
    eventually("the failed close", closed(6)).await;
    eventually("refilled", || pool.stats().idle == 1).await;
    assert_eq!(
        abandoned(&pool),
        [1, 1, 1],
        "a failed close is no abandonment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_timeout_a_full_pool_is_exhausted() {
    let fake = Fake::default();
    let pool = Builder::new(fake.clone())
        .min(1)
        .max(1)
        .psycopg2()
        .build()
        .await
        .unwrap();
    let _held = pool.get().await.unwrap();
    assert!(matches!(pool.get().await, Err(GetError::Exhausted)));
}

/// The build retries a failing open until its bound (r2d2's and bb8's), then names the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_times_out_with_the_connect_error() {
    let fake = Fake::default();
    fake.0.fail_opens.store(true, Ordering::SeqCst);
    let err = Builder::new(fake.clone())
        .min(1)
        .timeout(Duration::from_millis(10))
        .build()
        .await
        .unwrap_err();
    match &err {
        BuildError::Timeout(Some(e)) => assert_eq!(e.to_string(), "refused"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "timed out waiting for a connection: refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_fails_waiters_at_once() {
    let fake = Fake::default();
    let pool = pool(&fake, 0, 1, Duration::from_secs(30)).await;
    fake.0.fail_opens.store(true, Ordering::SeqCst);
    fake.0.permanent.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, GetError::Connect(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_opens_are_retried_by_the_maintenance_task() {
    let fake = Fake::default();
    let pool = Builder::new(fake.clone())
        .min(0)
        .max(2)
        .backoff(Duration::from_millis(20), Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    fake.0.fail_opens.store(true, Ordering::SeqCst);
    pool.resize(2, 2).unwrap();
    eventually("opens failed", || pool.stats().open_failures >= 2).await;
    fake.0.fail_opens.store(false, Ordering::SeqCst);
    // Nobody calls the pool: the maintenance task retries after the backoff.
    eventually("refilled", || pool.stats().idle == 2).await;
    pool.wait_ready(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_expire_without_any_input() {
    let fake = Fake::default();
    let pool = Builder::new(fake.clone())
        .min(1)
        .max(3)
        .max_idle(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let (a, b, c) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    drop((a, b, c));
    assert_eq!(pool.stats().idle, 3);
    eventually("expired", || pool.stats().size == 1).await;
    assert_eq!(pool.stats().expired, 2);
    eventually("closed", || fake.0.closed.load(Ordering::SeqCst) == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_fails_waiters_and_closes_every_connection() {
    let fake = Fake::default();
    let pool = pool(&fake, 2, 2, Duration::from_secs(30)).await;
    let held = pool.get().await.unwrap();
    let _other = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    pool.close().await.unwrap();
    assert!(matches!(waiter.await.unwrap(), Err(GetError::Closed)));
    assert!(matches!(pool.get().await, Err(GetError::Closed)));
    assert!(matches!(pool.close().await, Err(CoreError::Closed)));
    drop(held);
    drop(_other);
    eventually("closed", || fake.0.closed.load(Ordering::SeqCst) == 2).await;
    assert_eq!(pool.stats().size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_the_pool() {
    let fake = Fake::default();
    let pool = pool(&fake, 2, 2, Duration::from_secs(5)).await;
    drop(pool);
    eventually("closed", || fake.0.closed.load(Ordering::SeqCst) == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_few_connections() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 4, Duration::from_secs(30)).await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let conn = pool.get().await.unwrap();
                tokio::task::yield_now().await;
                drop(conn);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.checkouts, 64 * 50);
    assert!(s.size <= 4 && s.opens <= 4, "{s:?}");
    assert_eq!((s.in_use, s.waiting), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_connection_leaves_and_is_replaced() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 1, Duration::from_secs(5)).await;
    let conn = sanspool_tokio::PooledConn::detach(pool.get().await.unwrap());
    assert_eq!(conn.id, 1);
    let again = pool.get().await.unwrap();
    assert_eq!(again.id, 2);
    assert_eq!(pool.stats().detached, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_after_connect_and_before_reuse() {
    let fake = Fake::default();
    let refuse = Arc::new(AtomicBool::new(false));
    let no = Arc::clone(&refuse);
    let pool = Builder::new(fake.clone())
        .min(1)
        .max(1)
        .after_connect(|conn| {
            Box::pin(async move {
                conn.id += 100;
                Ok(())
            })
        })
        .before_reuse(move |_| {
            let refused = no.load(Ordering::SeqCst);
            Box::pin(async move {
                if refused {
                    Err(FakeError("stale"))
                } else {
                    Ok(())
                }
            })
        })
        .build()
        .await
        .unwrap();
    assert_eq!(pool.get().await.unwrap().id, 101);
    refuse.store(true, Ordering::SeqCst);
    // Every reused one fails the hook and is closed; only a connection opened for this very
    // checkout (which the hook does not vet) is handed out. (The refill to `min` may race the
    // checkout and be reused, and refused, first.)
    let conn = pool.get().await.unwrap();
    assert!(conn.id > 101);
    assert_eq!(
        pool.stats().stale,
        u64::from(conn.id - 101),
        "closed by their vets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_after_connect_fails_the_build() {
    let fake = Fake::default();
    let err = Builder::new(fake.clone())
        .min(1)
        .psycopg2()
        .after_connect(|_| Box::pin(async { Err(FakeError("hook")) }))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::Connect(e) if e.to_string() == "hook"));
    eventually("closed", || fake.0.closed.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_on_another_runtime_thread_or_outside_is_given_back() {
    let fake = Fake::default();
    let pool = pool(&fake, 1, 1, Duration::from_secs(5)).await;
    let conn = pool.get().await.unwrap();
    // Dropped on a plain thread: the check-in needs no runtime context.
    std::thread::spawn(move || drop(conn)).join().unwrap();
    assert_eq!(pool.stats().idle, 1);
    assert_eq!(pool.get().await.unwrap().id, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_waits_for_the_answers_and_counts_the_failures() {
    let fake = Fake::default();
    let pool = pool(&fake, 4, 4, Duration::from_secs(5)).await;
    assert_eq!(pool.stats().idle, 4);
    *fake.0.failing_checks.lock().unwrap() = vec![1, 3];
    assert_eq!(pool.check().await.unwrap(), 2);
    // Every answer is in when it returns; the failed two are closed (on tasks of their own).
    assert_eq!(fake.0.checks.load(Ordering::SeqCst), 4);
    eventually("closed", || fake.0.closed.load(Ordering::SeqCst) == 2).await;
    eventually("replaced", || pool.stats().idle == 4).await;
    let mut ids: Vec<u32> = Vec::new();
    let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
    for conn in &held {
        ids.push(conn.as_ref().unwrap().id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [2, 4, 5, 6]);
    drop(held);
    // The replacements pass; a held connection is not checked.
    let _one = pool.get().await.unwrap();
    assert_eq!(pool.check().await.unwrap(), 0);
    assert_eq!(fake.0.checks.load(Ordering::SeqCst), 7);
    pool.close().await.unwrap();
    assert!(matches!(pool.check().await, Err(CoreError::Closed)));
}

/// The pool's futures can be spawned on a multi-thread runtime.
#[allow(dead_code)]
fn futures_are_send(pool: &Pool<Fake>) {
    fn send<T: Send>(_: T) {}
    send(pool.get());
    send(pool.check());
    send(pool.wait_ready(Duration::ZERO));
    send(pool.close());
}

/// Polls `get` until it waits, then drops it as soon as it is woken (by a wake or by its
/// outcome), without polling it again.
async fn drop_when_woken<F: Future + Unpin>(mut get: F) -> Option<F::Output> {
    let mut polled = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut polled, true) {
            return Poll::Ready(None);
        }
        Pin::new(&mut get).poll(cx).map(Some)
    })
    .await
}

/// 32 tasks on 2 connections drop `get()` futures while queued, while woken, while their grant
/// is on its way, and after it arrived; no connection is lost or leaked.
async fn drops_lose_no_connection(fairness: Fairness) {
    let fake = Fake::default();
    let pool = Builder::new(fake.clone())
        .min(2)
        .max(2)
        .timeout(Duration::from_secs(30))
        .fairness(fairness)
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u64 {
                let got = if (t + i) % 3 == 0 {
                    // Dropped at its first wake: mostly a `Wake` (or a grant) not yet claimed.
                    drop_when_woken(Box::pin(pool.get())).await
                } else {
                    // Timeouts of 0-40 µs drop get() futures at any point.
                    let bound = Duration::from_micros((t * 7 + i * 13) % 41);
                    tokio::time::timeout(bound, pool.get()).await.ok()
                };
                if let Some(conn) = got {
                    let conn = conn.unwrap();
                    tokio::task::yield_now().await;
                    drop(conn);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting, s.idle, s.size), (0, 0, 2, 2), "{s:?}");
    assert_eq!(fake.0.opened.load(Ordering::SeqCst), 2);
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    assert_ne!(a.id, b.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_dropped_at_any_moment_lose_no_connection() {
    drops_lose_no_connection(Fairness::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_dropped_at_any_moment_lose_no_connection_strict() {
    drops_lose_no_connection(Fairness::Strict).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_dropped_at_any_moment_lose_no_connection_with_a_long_bound() {
    // Barging nearly always allowed: most returns wake rather than grant.
    drops_lose_no_connection(Fairness::Bounded(Duration::from_secs(60))).await;
}

async fn pool_with(fake: &Fake, max: usize, fairness: Fairness) -> Pool<Fake> {
    Builder::new(fake.clone())
        .min(max)
        .max(max)
        .timeout(Duration::from_secs(30))
        .fairness(fairness)
        .build()
        .await
        .expect("builds")
}

// One thread: a woken waiter runs only when the test yields, so what a running task does first
// is known.
#[tokio::test]
async fn a_returned_connection_is_retaken_by_a_running_task_while_another_waits() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 1, Fairness::Bounded(Duration::from_secs(60))).await;
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.unwrap().id }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    // Given back: idle, and the waiter woken (not served)...
    drop(held);
    assert_eq!(pool.stats().idle, 1);
    // ...so this task, still running, takes it again at once: it barges.
    let mut again = Box::pin(pool.get());
    let Poll::Ready(again) = poll_once(&mut again) else {
        panic!("the idle connection was not retaken");
    };
    let again = again.unwrap();
    assert_eq!(again.id, 1);
    // The woken waiter claims, finds nothing, and waits on in its place.
    tokio::task::yield_now().await;
    let s = pool.stats();
    assert_eq!((s.waiting, s.in_use, s.waits), (1, 1, 0), "{s:?}");
    drop(again);
    assert_eq!(waiter.await.unwrap(), 1);
    let s = pool.stats();
    assert_eq!(
        (s.checkouts, s.waits, s.in_use, s.idle),
        (3, 1, 0, 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn with_strict_fairness_a_returned_connection_goes_to_the_waiter() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 1, Fairness::Strict).await;
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.unwrap().id }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    drop(held);
    // Granted to the waiter on return: nothing idle, and this task queues behind it.
    assert_eq!((pool.stats().idle, pool.stats().in_use), (0, 1));
    let mut again = Box::pin(pool.get());
    assert!(poll_once(&mut again).is_pending());
    assert_eq!(waiter.await.unwrap(), 1);
    assert_eq!(again.await.unwrap().id, 1);
}

/// `tasks` tasks queue in a known order on one connection, then each takes it `rounds` times,
/// asking again at once after each return (no yield in between). Returns who was served, in
/// order.
async fn service_order(pool: &Pool<Fake>, tasks: usize, rounds: usize) -> Vec<usize> {
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..tasks {
        let (p, order) = (pool.clone(), Arc::clone(&order));
        handles.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let conn = p.get().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(conn);
            }
        }));
        eventually("queued", || pool.stats().waiting == i + 1).await;
    }
    drop(held);
    for h in handles {
        h.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), tasks * rounds);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_strict_fairness_every_return_goes_to_the_oldest_waiter() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 1, Fairness::Strict).await;
    // A task that gives the connection back and asks again queues behind every other: round
    // robin, whatever the scheduling.
    let order = service_order(&pool, 5, 20).await;
    let fifo: Vec<usize> = (0..20).flat_map(|_| 0..5).collect();
    assert_eq!(order, fifo);
    assert_eq!(pool.stats().waits, 100);
}

#[tokio::test]
async fn with_a_bound_a_task_asking_again_keeps_its_connection() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 1, Fairness::Bounded(Duration::from_secs(60))).await;
    // Under the bound the running task takes its connection back each time: no hand-off.
    let order = service_order(&pool, 3, 10).await;
    let runs: Vec<usize> = (0..3).flat_map(|i| std::iter::repeat_n(i, 10)).collect();
    assert_eq!(order, runs);
}

// One thread, so a woken waiter never runs before the greedy task asks again: without the bound
// the greedy task would barge forever.
#[tokio::test]
async fn barging_does_not_starve_waiters_past_the_bound() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 1, Fairness::default()).await;
    let served = Arc::new(AtomicU32::new(0));
    let mut waiters = Vec::new();
    // Gives the connection back and asks again at once, yielding only while it holds it (when
    // the waiters, started along the way, queue and claim in vain).
    let until = Instant::now() + Duration::from_secs(10);
    let mut greedy = 0u32;
    while served.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < until, "waiters starved by a barging task");
        let conn = pool.get().await.unwrap();
        greedy += 1;
        if waiters.len() < 4 {
            let (p, served) = (pool.clone(), Arc::clone(&served));
            waiters.push(tokio::spawn(async move {
                let start = Instant::now();
                let conn = p.get().await.unwrap();
                served.fetch_add(1, Ordering::SeqCst);
                drop(conn);
                start.elapsed()
            }));
        }
        tokio::task::yield_now().await;
        drop(conn);
    }
    for w in waiters {
        // Generous: the bound is the default, under 1 ms; starvation would be the 10 s above.
        assert!(w.await.unwrap() < Duration::from_secs(5));
    }
    assert!(greedy >= 4);
    let s = pool.stats();
    assert_eq!(
        (s.waiting, s.in_use, s.idle, s.checkouts),
        (0, 0, 1, u64::from(greedy) + 4),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_get_dropped_while_woken_cancels_and_loses_nothing() {
    let fake = Fake::default();
    let pool = pool_with(&fake, 1, Fairness::Bounded(Duration::from_secs(60))).await;
    let held = pool.get().await.unwrap();
    let mut get = Box::pin(pool.get());
    assert!(poll_once(&mut get).is_pending());
    // Woken, not yet claimed: the connection is idle.
    drop(held);
    assert_eq!(pool.stats().idle, 1);
    drop(get);
    let s = pool.stats();
    assert_eq!((s.waiting, s.idle, s.in_use), (0, 1, 0), "{s:?}");
    assert_eq!(pool.get().await.unwrap().id, 1);
}

#[tokio::test]
async fn a_woken_get_granted_at_the_bound_takes_or_gives_back_its_connection() {
    let fake = Fake::default();
    let bound = Duration::from_millis(50);
    let pool = pool_with(&fake, 1, Fairness::Bounded(bound)).await;
    for take in [true, false] {
        let held = pool.get().await.unwrap();
        let mut get = Box::pin(pool.get());
        assert!(poll_once(&mut get).is_pending());
        drop(held);
        // Woken, never claimed: at the bound the maintenance task grants it the idle connection.
        eventually("granted", || pool.stats().in_use == 1).await;
        assert_eq!(pool.stats().idle, 0);
        if take {
            let conn = get.await.unwrap();
            assert_eq!(conn.id, 1);
        } else {
            drop(get);
        }
        let s = pool.stats();
        assert_eq!((s.waiting, s.idle, s.in_use), (0, 1, 0), "{s:?}");
    }
}

/// Connections that are numbers, vetted by a probe that passes at once (as a look at a live
/// socket does).
struct Probed;

impl Connector for Probed {
    type Conn = u32;
    type Error = FakeError;

    async fn connect(&self) -> Result<u32, FakeError> {
        Ok(1)
    }

    fn state(&self, _: &mut u32) -> Returned {
        Returned::Clean
    }

    async fn reset(&self, _: &mut u32) -> Result<(), FakeError> {
        Ok(())
    }

    async fn check(&self, _: &mut u32) -> Result<(), FakeError> {
        Ok(())
    }

    fn probes(&self) -> bool {
        true
    }
}

/// A checkout whose vet the probe passes at once has its connection in the poll that asked: it
/// queues for the vet, but is neither woken nor polled again for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vet_passed_at_once_serves_the_checkout_in_the_poll_that_asked() {
    let pool = Builder::new(Probed).min(1).max(1).build().await.unwrap();
    for _ in 0..3 {
        let mut get = Box::pin(pool.get());
        let Poll::Ready(got) = poll_once(&mut get) else {
            panic!("the checkout waits on a vet that passed");
        };
        assert_eq!(*got.unwrap(), 1);
    }
    assert_eq!(pool.stats().vets, 3);
}
