//! The driver kit's conformance suite through the async pool: the rules every driver keeps, and
//! the core's named scenarios replayed against its simulated driver.

use sanspool_core::Stats;
use sanspool_kit::conformance::{self, Driver, Fake, FakeConn, FakeError, Options};
use sanspool_tokio::{BuildError, CoreError, GetError, Pool, PooledConn};
use tokio::runtime::Runtime;

struct Tasks(Runtime);

impl Driver for Tasks {
    type Pool = Pool<Fake>;
    type Guard = PooledConn<Fake>;

    fn build(&self, fake: &Fake, o: &Options) -> Result<Pool<Fake>, BuildError<FakeError>> {
        let mut b = Pool::builder(fake.clone())
            .min(o.min)
            .max(o.max)
            .leak_after(o.leak_after)
            .check_on_checkout(o.check_on_checkout);
        if !o.refill {
            b = b.psycopg2();
        }
        b = b.timeout(o.timeout);
        if let Some(keep) = o.keep_idle {
            b = b.keep_idle(keep);
        }
        if let Some(order) = o.idle_order {
            b = b.idle_order(order);
        }
        if let Some(fairness) = o.fairness {
            b = b.fairness(fairness);
        }
        if let Some(n) = o.max_waiting {
            b = b.max_waiting(n);
        }
        if let Some(events) = &o.events {
            b = b.events(events.clone());
        }
        self.0.block_on(b.build())
    }

    fn get(&self, pool: &Pool<Fake>) -> Result<PooledConn<Fake>, GetError<FakeError>> {
        self.0.block_on(pool.get())
    }

    fn get_elsewhere(
        &self,
        pool: &Pool<Fake>,
    ) -> Box<dyn FnOnce() -> Result<u32, GetError<FakeError>> + Send> {
        let pool = pool.clone();
        let waiter = self
            .0
            .spawn(async move { pool.get().await.map(|conn| conn.id) });
        let handle = self.0.handle().clone();
        Box::new(move || handle.block_on(waiter).expect("the waiter task"))
    }

    fn close_conn(&self, guard: PooledConn<Fake>) {
        PooledConn::close(guard);
    }

    fn detach(&self, guard: PooledConn<Fake>) -> FakeConn {
        PooledConn::detach(guard)
    }

    fn stats(&self, pool: &Pool<Fake>) -> Stats {
        pool.stats()
    }

    fn close(&self, pool: &Pool<Fake>) -> Result<(), CoreError> {
        self.0.block_on(pool.close())
    }

    fn check(&self, pool: &Pool<Fake>) -> Result<usize, CoreError> {
        self.0.block_on(pool.check())
    }

    fn drain(&self, pool: &Pool<Fake>) -> Result<(), CoreError> {
        pool.drain()
    }

    fn resize(&self, pool: &Pool<Fake>, min: usize, max: usize) -> Result<(), CoreError> {
        pool.resize(min, max)
    }
}

#[test]
fn the_async_pool_conforms() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    conformance::run(&Tasks(runtime));
}
