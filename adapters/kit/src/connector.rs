//! The connection-maker trait as every driver sees it (async), and the hooks a pool runs on
//! connections. The async pool's `Connector` is this one; the blocking pool's is synchronous and
//! reaches the kit through an adapter whose futures never wait.

use sanspool_core::{Liveness, Returned};
use std::future::Future;

/// Opens, judges, resets, checks and closes connections of one kind, asynchronously.
///
/// The async pool runs [`connect`](Connector::connect), [`reset`](Connector::reset),
/// [`check`](Connector::check) and [`close`](Connector::close) on tasks of their own (never under
/// its lock, never inside a borrower's `get()`), so a slow server delays nobody an idle connection
/// could serve. [`state`](Connector::state) runs when a guard is dropped, so it must not do I/O.
/// A method that panics counts as a failure (the connection is closed, or the open reported
/// failed), so the pool's bookkeeping stays whole.
pub trait Connector: Send + Sync + 'static {
    /// The connection.
    type Conn: Send + 'static;
    /// What opening or using a connection can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// The state of a returned connection, judged locally, without I/O: [`Returned::Clean`]
    /// (reuse as it is), [`Returned::Dirty`] ([`reset`](Connector::reset) before reuse),
    /// [`Returned::Broken`] (close and replace).
    fn state(&self, conn: &mut Self::Conn) -> Returned;

    /// Makes a dirty connection clean again (for a database: `ROLLBACK`). `Ok` means clean: the
    /// connection goes back in service as it is, not judged again. On error it is closed.
    fn reset(&self, conn: &mut Self::Conn) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Checks that the connection still works (a round trip). On error it is closed and replaced.
    fn check(&self, conn: &mut Self::Conn) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether [`probe`](Connector::probe) looks at anything (the same answer every time). When
    /// it does, the pool vets every idle connection before a checkout gets it
    /// ([`Config::vet`](sanspool_core::Config::vet)): a dead one is closed and the next taken,
    /// and nobody's query fails on it. By default it does not.
    fn probes(&self) -> bool {
        false
    }

    /// Whether an idle connection is still there, told without waiting on anything (a look at
    /// its socket): [`Liveness::Dead`] closes it, [`Liveness::Unsure`] has it
    /// [`check`](Connector::check)ed first. Called only when [`probes`](Connector::probes) says
    /// so, on the thread or task about to hand the connection out. By default
    /// [`Liveness::Alive`].
    fn probe(&self, conn: &mut Self::Conn) -> Liveness {
        let _ = conn;
        Liveness::Alive
    }

    /// Whether a failed [`connect`](Connector::connect) will fail again until someone fixes
    /// something (bad credentials, no such database): every queued checkout then fails at once.
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
    fn close(&self, conn: Self::Conn) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async move {
            drop(conn);
            Ok(())
        }
    }
}

/// A hook a pool runs on a connection (after it is opened, or before it is reused): a plain
/// function (the blocking pool's), or one returning a future (the async pool's). An error closes
/// the connection.
pub enum Hook<C, E> {
    /// Runs to its end on the spot.
    Sync(SyncHook<C, E>),
    /// Its future is awaited.
    Async(AsyncHook<C, E>),
}

/// A [`Hook::Sync`]'s function.
pub type SyncHook<C, E> = Box<dyn Fn(&mut C) -> Result<(), E> + Send + Sync>;

/// A [`Hook::Async`]'s function.
pub type AsyncHook<C, E> = Box<
    dyn for<'a> Fn(&'a mut C) -> futures_util::future::BoxFuture<'a, Result<(), E>> + Send + Sync,
>;

impl<C, E> Hook<C, E> {
    /// Runs the hook on `conn`.
    pub async fn run(&self, conn: &mut C) -> Result<(), E> {
        match self {
            Hook::Sync(f) => f(conn),
            Hook::Async(f) => f(conn).await,
        }
    }
}

impl<C, E> std::fmt::Debug for Hook<C, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::Sync(_) => "Hook::Sync",
            Hook::Async(_) => "Hook::Async",
        })
    }
}
