//! The driver kit's conformance suite through the blocking pool: the rules every driver keeps,
//! and the core's named scenarios replayed against its simulated driver.

use sanspool::{BuildError, Connector, CoreError, GetError, OwnedConn, Pool, PooledConn, Returned};
use sanspool_core::{Liveness, Stats};
use sanspool_kit::conformance::{self, Driver, Fake, FakeConn, FakeError, Options};

/// The kit's fake as a blocking connector.
struct Blocking(Fake);

impl Connector for Blocking {
    type Conn = FakeConn;
    type Error = FakeError;

    fn connect(&self) -> Result<FakeConn, FakeError> {
        self.0.open()
    }
    fn state(&self, conn: &mut FakeConn) -> Returned {
        conn.state
    }
    fn reset(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.0.reset_conn(conn)
    }
    fn check(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.0.check_conn(conn)
    }
    fn probes(&self) -> bool {
        self.0.probing()
    }
    fn probe(&self, conn: &mut FakeConn) -> Liveness {
        self.0.probe_conn(conn)
    }
    fn is_permanent(&self, _: &FakeError) -> bool {
        self.0.permanent_failures()
    }
    fn is_abandoned(&self, _: &FakeError) -> bool {
        self.0.abandoned()
    }
    fn close(&self, conn: FakeConn) -> Result<(), FakeError> {
        self.0.close_conn(conn);
        Ok(())
    }
}

struct Threads;

impl Driver for Threads {
    type Pool = Pool<Blocking>;
    type Guard = OwnedConn<Blocking>;

    fn build(&self, fake: &Fake, o: &Options) -> Result<Pool<Blocking>, BuildError<FakeError>> {
        let mut b = Pool::builder(Blocking(fake.clone()))
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
        b.build()
    }

    fn get(&self, pool: &Pool<Blocking>) -> Result<OwnedConn<Blocking>, GetError<FakeError>> {
        pool.get().map(PooledConn::into_owned)
    }

    fn get_elsewhere(
        &self,
        pool: &Pool<Blocking>,
    ) -> Box<dyn FnOnce() -> Result<u32, GetError<FakeError>> + Send> {
        let pool = pool.clone();
        let waiter = std::thread::spawn(move || pool.get().map(|conn| conn.id));
        Box::new(move || waiter.join().expect("the waiter thread"))
    }

    fn close_conn(&self, guard: OwnedConn<Blocking>) {
        PooledConn::close(guard);
    }

    fn detach(&self, guard: OwnedConn<Blocking>) -> FakeConn {
        PooledConn::detach(guard)
    }

    fn stats(&self, pool: &Pool<Blocking>) -> Stats {
        pool.stats()
    }

    fn close(&self, pool: &Pool<Blocking>) -> Result<(), CoreError> {
        pool.close()
    }

    fn check(&self, pool: &Pool<Blocking>) -> Result<usize, CoreError> {
        pool.check()
    }

    fn drain(&self, pool: &Pool<Blocking>) -> Result<(), CoreError> {
        pool.drain()
    }

    fn resize(&self, pool: &Pool<Blocking>, min: usize, max: usize) -> Result<(), CoreError> {
        pool.resize(min, max)
    }
}

#[test]
fn the_blocking_pool_conforms() {
    conformance::run(&Threads);
}
