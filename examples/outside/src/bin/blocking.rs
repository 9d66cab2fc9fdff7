use sanspool_postgres::psycopg2::ThreadedConnectionPool;
use sanspool_postgres::{postgres, PgConnector, Pool};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dsn = std::env::args().nth(1).unwrap_or("host=localhost user=postgres".into());
    let pool = Pool::builder(PgConnector::new(&dsn)?)
        .min(2)
        .max(8)
        .timeout(Duration::from_secs(5))
        .build()?;

    // A guard: derefs to `postgres::Client`, goes back to the pool when dropped.
    let mut conn = pool.get()?;
    let row = conn.query_one("SELECT $1::text", &[&"hello"])?;
    println!("blocking: {}", row.get::<_, &str>(0));

    // Left inside a transaction: the pool rolls it back before anyone else gets it.
    conn.batch_execute("BEGIN; CREATE TEMP TABLE scratch (x int)")?;
    drop(conn);

    // A real `postgres::Client`, for any library that takes one.
    fn count(client: &mut postgres::Client) -> Result<i64, postgres::Error> {
        Ok(client.query_one("SELECT count(*) FROM pg_class", &[])?.get(0))
    }
    let mut conn = pool.get()?;
    println!("blocking: {} relations", count(&mut conn)?);
    drop(conn);
    println!("blocking: {:?}", pool.stats());
    pool.close()?;

    // psycopg2's names and behaviour: minconn 1, maxconn 8; at maxconn a getconn fails at once.
    let pool = ThreadedConnectionPool::new(1, 8, PgConnector::new(&dsn)?)?;
    let conn = pool.getconn(Some(7))?;
    conn.lock()?.execute("SELECT 1", &[])?;
    pool.putconn(conn, Some(&7), false)?;
    pool.closeall()?;
    Ok(())
}
