//! The connection-maker trait: what a blocking client implements to be pooled.

use sanspool_core::{Liveness, Returned};

/// Opens, judges, resets, checks and closes connections of one kind.
///
/// The pools call these methods *outside* their locks, from whichever thread needs the work done:
/// [`connect`](Connector::connect) on a background opener thread (threaded and persistent pools) or
/// inline (simple pool); the others on the thread that returns, checks out or maintains. A method
/// that panics counts as a failure (the panic hook still prints it): the connection is closed, or the
/// open reported failed, so the pool's bookkeeping stays whole.
pub trait Connector: Send + Sync + 'static {
    /// The connection.
    type Conn: Send + 'static;
    /// What opening or using a connection can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn connect(&self) -> Result<Self::Conn, Self::Error>;

    /// The state of a returned connection, judged locally without I/O when possible:
    /// [`Returned::Clean`] (reuse as it is), [`Returned::Dirty`] (inside a transaction or mid-request:
    /// [`reset`](Connector::reset) before reuse), [`Returned::Broken`] (close and replace).
    fn state(&self, conn: &mut Self::Conn) -> Returned;

    /// Makes a dirty connection clean again (for a database: `ROLLBACK`). `Ok` means clean: the
    /// connection goes back in service as it is, not judged again. On error it is closed.
    fn reset(&self, conn: &mut Self::Conn) -> Result<(), Self::Error>;

    /// Checks that the connection still works (a round trip). On error it is closed and replaced.
    fn check(&self, conn: &mut Self::Conn) -> Result<(), Self::Error>;

    /// Whether [`probe`](Connector::probe) looks at anything (the same answer every time). When
    /// it does, the pool vets every idle connection before a checkout gets it: a dead one is
    /// closed and the next taken, and nobody's query fails on it. By default it does not.
    fn probes(&self) -> bool {
        false
    }

    /// Whether an idle connection is still there, told without blocking (a look at its socket):
    /// [`Liveness::Dead`] closes it, [`Liveness::Unsure`] has it [`check`](Connector::check)ed
    /// first. Called only when [`probes`](Connector::probes) says so, on the thread about to hand
    /// the connection out. By default [`Liveness::Alive`].
    fn probe(&self, conn: &mut Self::Conn) -> Liveness {
        let _ = conn;
        Liveness::Alive
    }

    /// Whether a failed [`connect`](Connector::connect) will fail again until someone fixes
    /// something (bad credentials, no such database). Then every queued checkout fails at once with
    /// this error, rather than waiting out its timeout behind retries that cannot succeed (and may
    /// lock an account); refills go on with backoff. By default no failure is permanent.
    fn is_permanent(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Whether a failed [`reset`](Connector::reset), [`check`](Connector::check) or
    /// [`close`](Connector::close) was cut off at a bound of its own (the server did not answer in
    /// time). The connection is handled as for any failure (closed, or gone), and the pool counts
    /// it apart: `abandoned_resets`, `abandoned_checks` or
    /// `abandoned_closes` in [`Stats`](sanspool_core::Stats). By default none is.
    fn is_abandoned(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Closes a connection the pool no longer keeps. By default, drops it. The connection is gone
    /// whatever the result; an error says the close did not finish cleanly (one cut off at its
    /// bound: see [`is_abandoned`](Connector::is_abandoned)).
    fn close(&self, conn: Self::Conn) -> Result<(), Self::Error> {
        drop(conn);
        Ok(())
    }
}

/// A blocking [`Connector`] as the driver kit sees one: its futures never wait (they run the
/// blocking call in their first poll), and the pool runs them with
/// [`run_ready`](sanspool_kit::run_ready) on the thread that does the I/O.
pub(crate) struct Blocking<M>(pub(crate) M);

impl<M: std::fmt::Debug> std::fmt::Debug for Blocking<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<M: Connector> sanspool_kit::Connector for Blocking<M> {
    type Conn = M::Conn;
    type Error = M::Error;

    async fn connect(&self) -> Result<M::Conn, M::Error> {
        self.0.connect()
    }

    fn state(&self, conn: &mut M::Conn) -> Returned {
        self.0.state(conn)
    }

    async fn reset(&self, conn: &mut M::Conn) -> Result<(), M::Error> {
        self.0.reset(conn)
    }

    async fn check(&self, conn: &mut M::Conn) -> Result<(), M::Error> {
        self.0.check(conn)
    }

    fn probes(&self) -> bool {
        self.0.probes()
    }

    fn probe(&self, conn: &mut M::Conn) -> Liveness {
        self.0.probe(conn)
    }

    fn is_permanent(&self, error: &M::Error) -> bool {
        self.0.is_permanent(error)
    }

    fn is_abandoned(&self, error: &M::Error) -> bool {
        self.0.is_abandoned(error)
    }

    async fn close(&self, conn: M::Conn) -> Result<(), M::Error> {
        self.0.close(conn)
    }
}
