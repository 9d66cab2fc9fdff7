//! Opening a blocking client: each address of the opener's [`Plan`] in turn, through
//! `postgres::Config::connect` with the opener's hook (the only way to build a
//! `postgres::Client`), each try within one bound.

use std::sync::Arc;
use std::time::Duration;

use postgres::error::DbError;
use postgres::{Client, SimpleQueryMessage};
use sanspool_pgconn::{Attempt, CancelToken, Error, Failure, Op, Opener, StatusCell, Step};

/// The notice callback a client gets (postgres's default logs notices).
pub(crate) type Notices = Arc<dyn Fn(DbError) + Send + Sync>;

/// An open client, its status cell and cancel token.
pub(crate) struct Opened {
    pub(crate) client: Client,
    pub(crate) cell: StatusCell,
    pub(crate) cancel: CancelToken,
}

/// Opens a client, trying the opener's addresses in turn within `bound` each (or the
/// configuration's `connect_timeout`); the last failure if none opens.
pub(crate) fn open(
    opener: &Opener,
    bound: Duration,
    notices: Option<&Notices>,
) -> Result<Opened, Error> {
    let bound = opener.connect_bound(bound);
    let mut plan = opener.plan()?;
    loop {
        let target = match plan.step() {
            Step::Resolve(lookup) => {
                plan.resolved(lookup.resolve_blocking(bound));
                continue;
            }
            Step::Connect(target) => target,
            Step::Failed(e) => return Err(e),
        };
        let attempt = match opener.attempt(target.clone(), bound) {
            Ok(attempt) => attempt,
            Err(e) => {
                plan.failed(Failure::after_connect(target, e));
                continue;
            }
        };
        match connect(&attempt, notices) {
            Ok(client) => {
                let (cell, cancel) = attempt.finish();
                return Ok(Opened {
                    client,
                    cell,
                    cancel,
                });
            }
            Err(e) => plan.failed(attempt.failure(e)),
        }
    }
}

fn connect(attempt: &Attempt, notices: Option<&Notices>) -> Result<Client, Error> {
    let mut config = postgres::Config::from(attempt.handed().clone());
    if let Some(notices) = notices {
        let notices = notices.clone();
        config.notice_callback(move |notice| notices(notice));
    }
    let mut client = config
        .connect(attempt.negotiator())
        .map_err(|e| attempt.error(e))?;
    if attempt.wants_read_only().is_some() {
        // Still under the try's deadline.
        let messages = client
            .simple_query(Attempt::READ_ONLY_QUERY)
            .map_err(Error::during(Op::Connect))?;
        let value = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        attempt.check_read_only(value)?;
    }
    Ok(client)
}
