//! Running the kit's futures where nothing ever waits: the blocking driver's connector is
//! synchronous, so the futures the kit builds over it are ready at their first poll.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// `fut`'s output, polled on this thread until ready. For futures over synchronous calls only:
/// one that waits on something is polled again and again (it is never put to sleep).
pub fn run_ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        debug_assert!(false, "a future over a blocking connector waited");
        std::thread::yield_now();
    }
}
