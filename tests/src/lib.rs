//! Integration, fault and load tests of sanspool against a real PostgreSQL server.
//!
//! The library part is the [`harness`]: throwaway PostgreSQL servers for the tests and the demo;
//! [`bench`](mod@bench), what the benchmarks share; and [`alloc`], the allocation tests' counting
//! allocator.

pub mod alloc;
pub mod bench;
pub mod harness;

pub use harness::{
    shared_dsn, test_db, Frozen, HarnessError, PgBouncer, PgServer, PoolMode, Setup, TestDb,
    BOUNCER_ROLE,
};
