//! Pool tags: each pool's own, whichever driver built it, so that one pool refuses another's
//! handles.

use sanspool_core::Config;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};

/// The next tag, for every pool of the process (the blocking and the async drivers alike).
static NEXT_TAG: AtomicU32 = AtomicU32::new(1);

/// `config` with a tag of its own and a random seed (for lifetime jitter).
pub fn tagged(mut config: Config) -> Config {
    config.tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    config.seed = RandomState::new().hash_one(config.tag);
    config
}
