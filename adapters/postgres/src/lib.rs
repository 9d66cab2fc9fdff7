//! The sanspool `Connector` for the blocking `postgres` crate.

pub mod tracked;
mod wire;
