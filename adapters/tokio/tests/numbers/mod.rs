//! Connections that are numbers: a connector without I/O, for what measures the pool alone.

use sanspool_tokio::{Connector, Returned};

/// Opens connections that are the number 7, always clean.
pub struct Numbers;

impl Connector for Numbers {
    type Conn = u64;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u64, Self::Error> {
        Ok(7)
    }

    fn state(&self, _: &mut u64) -> Returned {
        Returned::Clean
    }

    async fn reset(&self, _: &mut u64) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn check(&self, _: &mut u64) -> Result<(), Self::Error> {
        Ok(())
    }
}
