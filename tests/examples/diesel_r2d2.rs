//! A small diesel program that pools its PostgreSQL connections with diesel's r2d2
//! `ConnectionManager` — under a sanspool pool. Moving it from r2d2 to sanspool changed one line,
//! the pool's construction (r2d2's is kept beside it, in a comment); the rest is as it was.
//!
//! ```sh
//! cargo run -p sanspool-tests --example diesel_r2d2 -- "host=127.0.0.1 user=postgres dbname=postgres"
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo run -p sanspool-tests --example diesel_r2d2
//! ```
//!
//! Eight threads share four connections; each records a visit in a transaction. The table is
//! dropped at the end.

use std::error::Error;
use std::process::ExitCode;
use std::thread;

use diesel::prelude::*;
use diesel::r2d2::ConnectionManager;

diesel::table! {
    sanspool_example_visits (id) {
        id -> Int4,
        visitor -> Text,
    }
}

use sanspool_example_visits as visits;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let Some(dsn) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
    else {
        eprintln!("usage: diesel_r2d2 DSN (or set DATABASE_URL): a libpq connection string or URL");
        return ExitCode::from(2);
    };
    match run(&dsn) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diesel_r2d2 failed: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run(dsn: &str) -> Result<()> {
    let manager = ConnectionManager::<PgConnection>::new(dsn);
    // let pool = diesel::r2d2::Pool::builder().max_size(4).build(manager)?;
    let pool = sanspool::Pool::builder(sanspool::r2d2::Manager::new(manager))
        .max(4)
        .build()?;

    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS sanspool_example_visits \
         (id serial PRIMARY KEY, visitor text NOT NULL)",
    )
    .execute(&mut *pool.get()?)?;

    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let pool = pool.clone();
            thread::spawn(move || -> Result<i32> {
                let mut conn = pool.get()?;
                let id = conn.transaction(|conn| {
                    diesel::insert_into(visits::table)
                        .values(visits::visitor.eq(format!("worker {worker}")))
                        .returning(visits::id)
                        .get_result(conn)
                })?;
                Ok(id)
            })
        })
        .collect();
    for worker in workers {
        let id = worker.join().map_err(|_| "a worker panicked")??;
        println!("recorded visit {id}");
    }

    let mut conn = pool.get()?;
    let total: i64 = visits::table.count().get_result(&mut *conn)?;
    println!("{total} visits recorded");
    diesel::sql_query("DROP TABLE sanspool_example_visits").execute(&mut *conn)?;
    drop(conn);

    // What sanspool adds: its counters (r2d2's `pool.state()` has two gauges).
    println!("{:?}", pool.stats());
    Ok(())
}
