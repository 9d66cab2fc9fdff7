use sanspool_tokio::postgres::PgConnector;
use sanspool_tokio::Pool;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dsn = std::env::args().nth(1).unwrap_or("host=localhost user=postgres".into());
    let pool = Pool::builder(PgConnector::new(&dsn)?)
        .min(2)
        .max(8)
        .timeout(Duration::from_secs(5))
        .build()
        .await?;

    // Eight tasks share the pool; each guard derefs to `tokio_postgres::Client`.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let conn = pool.get().await?;
            let row = conn.query_one("SELECT $1::int + 1", &[&i]).await?;
            Ok::<i32, Box<dyn std::error::Error + Send + Sync>>(row.get(0))
        }));
    }
    for task in tasks {
        print!("{} ", task.await?.map_err(|e| e.to_string())?);
    }
    println!("\nasync: {:?}", pool.stats());
    pool.close().await?;
    Ok(())
}
