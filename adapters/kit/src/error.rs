//! The drivers' typed errors, the same in every driver: one type per kind of call, with psycopg2's
//! texts where the behaviour is psycopg2's. Each text ends with the connector error behind it, if
//! any (which is also the [`source`](std::error::Error::source)); that error is shared (`Arc`),
//! since one failed open can be the reason for many failed checkouts.

use sanspool_core::Error as Core;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why a checkout failed (`get`, `getconn`, `wait_ready`). `E` is the connector's error.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError<E> {
    /// The pool was closed (psycopg2: "connection pool is closed").
    Closed,
    /// No idle connection and no room to open one, and the checkout does not wait
    /// (psycopg2: "connection pool exhausted").
    Exhausted,
    /// The checkout waited its whole timeout. Carries the last connect error if opens were failing
    /// (and says it: "timed out waiting for a connection: " then the error, as r2d2 does).
    Timeout(Option<Arc<E>>),
    /// Too many checkouts are already waiting (`max_waiting`).
    TooManyWaiters,
    /// The key is busy: a guard holds it, or another checkout of it is still under way.
    KeyBusy,
    /// Opening the connection this checkout needed failed (psycopg2 raises the connect error).
    Connect(Arc<E>),
    /// A connector method or hook panicked while opening the connection this checkout needed.
    Panicked(Panic),
}

/// Why a pool could not be built: the settings were refused, or opening `min` connections failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError<E> {
    /// The core refused the settings (`min > max`, `max == 0`, ...).
    Config(Core),
    /// Opening one of the `min` connections failed (psycopg2 raises the connect error).
    Connect(Arc<E>),
    /// A connector method or hook panicked while opening one of the `min` connections.
    Panicked(Panic),
    /// The `min` connections were not open within the build's bound; carries the last connect
    /// error, if opens were failing.
    Timeout(Option<Arc<E>>),
}

/// Why the last open failed (what a later checkout's error carries).
#[derive(Debug)]
pub enum Failure<E> {
    /// The connector's error.
    Error(Arc<E>),
    /// The connector (or a hook) panicked.
    Panic(Panic),
}

/// What a panic in a connector method or hook said: its message, if it was a string (as
/// `panic!` with a message makes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic(Arc<str>);

impl Panic {
    /// The panic's message, from its payload.
    pub fn of(payload: &(dyn std::any::Any + Send)) -> Panic {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            s
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.as_str()
        } else {
            "a panic without a message"
        };
        Panic(message.into())
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn cause<E>(last: Option<&Failure<E>>) -> Option<Arc<E>> {
    match last {
        Some(Failure::Error(e)) => Some(Arc::clone(e)),
        _ => None,
    }
}

impl<E> GetError<E> {
    /// The error for a core refusal of a checkout, given the last connect failure.
    pub fn from_core(error: Core, last: Option<&Failure<E>>) -> Self {
        match error {
            Core::Closed => GetError::Closed,
            Core::Exhausted => GetError::Exhausted,
            Core::Timeout => GetError::Timeout(cause(last)),
            Core::TooManyWaiters => GetError::TooManyWaiters,
            // The driver records the failure before it reports a failed open, so `last` is set.
            Core::OpenFailed => match last {
                Some(Failure::Error(e)) => GetError::Connect(Arc::clone(e)),
                Some(Failure::Panic(p)) => GetError::Panicked(p.clone()),
                None => GetError::Panicked(Panic("no failure was recorded".into())),
            },
            // A key's second checkout while its first still waits; the core refuses nothing else
            // on a checkout.
            _ => GetError::KeyBusy,
        }
    }
}

impl<E> BuildError<E> {
    /// A build fails as a checkout would: on a failed open, or out of time.
    pub fn from_open(error: GetError<E>) -> Self {
        match error {
            GetError::Connect(e) => BuildError::Connect(e),
            GetError::Timeout(e) => BuildError::Timeout(e),
            GetError::Panicked(p) => BuildError::Panicked(p),
            // The build's pool is not shared yet: nothing else can refuse its opens.
            _ => BuildError::Config(Core::Closed),
        }
    }
}

/// The text of a failed open, with its cause (shared by checkouts and builds).
fn open_failed(f: &mut fmt::Formatter<'_>, cause: &dyn fmt::Display) -> fmt::Result {
    write!(f, "could not open a connection: {cause}")
}

fn panicked(f: &mut fmt::Formatter<'_>, panic: &Panic) -> fmt::Result {
    write!(f, "opening a connection panicked: {panic}")
}

fn timed_out<E: fmt::Display>(f: &mut fmt::Formatter<'_>, last: Option<&E>) -> fmt::Result {
    fmt::Display::fmt(&Core::Timeout, f)?;
    match last {
        Some(e) => write!(f, ": {e}"),
        None => Ok(()),
    }
}

impl<E: fmt::Display> fmt::Display for GetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => fmt::Display::fmt(&Core::Closed, f),
            GetError::Exhausted => fmt::Display::fmt(&Core::Exhausted, f),
            GetError::Timeout(e) => timed_out(f, e.as_deref()),
            GetError::TooManyWaiters => fmt::Display::fmt(&Core::TooManyWaiters, f),
            GetError::KeyBusy => f.write_str("this key's connection is busy"),
            GetError::Connect(e) => open_failed(f, &**e),
            GetError::Panicked(p) => panicked(f, p),
        }
    }
}

impl<E: fmt::Display> fmt::Display for BuildError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => fmt::Display::fmt(e, f),
            BuildError::Connect(e) => open_failed(f, &**e),
            BuildError::Panicked(p) => panicked(f, p),
            BuildError::Timeout(e) => timed_out(f, e.as_deref()),
        }
    }
}

impl<E: Error + 'static> Error for GetError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GetError::Connect(e) | GetError::Timeout(Some(e)) => Some(&**e),
            _ => None,
        }
    }
}

impl<E: Error + 'static> Error for BuildError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BuildError::Connect(e) | BuildError::Timeout(Some(e)) => Some(&**e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Cause;

    impl fmt::Display for Cause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("password authentication failed for user \"app\"")
        }
    }

    impl Error for Cause {}

    const CAUSE: &str = "password authentication failed for user \"app\"";

    /// Every error that has a cause says it, and chains it as its source.
    #[test]
    fn every_error_with_a_cause_says_it() {
        let with_cause: [(GetError<Cause>, &str); 2] = [
            (
                GetError::Connect(Arc::new(Cause)),
                "could not open a connection: ",
            ),
            (
                GetError::Timeout(Some(Arc::new(Cause))),
                "timed out waiting for a connection: ",
            ),
        ];
        for (err, lead) in with_cause {
            assert_eq!(err.to_string(), format!("{lead}{CAUSE}"));
            assert_eq!(err.source().map(|e| e.to_string()).as_deref(), Some(CAUSE));
        }
        let with_cause: [(BuildError<Cause>, &str); 2] = [
            (
                BuildError::Connect(Arc::new(Cause)),
                "could not open a connection: ",
            ),
            (
                BuildError::Timeout(Some(Arc::new(Cause))),
                "timed out waiting for a connection: ",
            ),
        ];
        for (err, lead) in with_cause {
            assert_eq!(err.to_string(), format!("{lead}{CAUSE}"));
            assert_eq!(err.source().map(|e| e.to_string()).as_deref(), Some(CAUSE));
        }
        // A refused setting is its own cause; a panic is said with its message.
        let config: BuildError<Cause> = BuildError::Config(Core::MinAboveMax);
        assert_eq!(
            config.to_string(),
            "min connections is greater than max connections"
        );
        let payload = std::panic::catch_unwind(|| panic!("no route to {}", "db1")).unwrap_err();
        let panicked: BuildError<Cause> = BuildError::Panicked(Panic::of(&*payload));
        assert_eq!(
            panicked.to_string(),
            "opening a connection panicked: no route to db1"
        );
        let payload = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        let last = Failure::<Cause>::Panic(Panic::of(&*payload));
        let err = GetError::from_core(Core::OpenFailed, Some(&last));
        assert_eq!(err.to_string(), "opening a connection panicked: static");
        // A checkout's error after a failed open keeps that open's cause, as a build's does.
        let last = Failure::Error(Arc::new(Cause));
        for core in [Core::OpenFailed, Core::Timeout] {
            let err = GetError::from_core(core, Some(&last));
            assert!(err.to_string().ends_with(CAUSE), "{err}");
            let err = BuildError::from_open(err);
            assert!(err.to_string().ends_with(CAUSE), "{err}");
        }
    }
}
