//! Integration, fault and load tests of sanspool against a real PostgreSQL server.
//!
//! The library part is the [`harness`]: throwaway PostgreSQL servers for the tests and the demo;
//! and [`bench`](mod@bench), what the benchmarks share.

pub mod bench;
pub mod harness;

pub use harness::{
    shared_dsn, test_db, Frozen, HarnessError, PgBouncer, PgServer, PoolMode, Setup, TestDb,
    BOUNCER_ROLE,
};
