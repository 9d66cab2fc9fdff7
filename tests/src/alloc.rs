//! A counting global allocator for the allocation tests: it wraps the system allocator and counts
//! allocations only on a thread that is armed (a thread-local flag), so the threads a test does
//! not measure (maintenance, I/O, the test harness) are not counted.
//!
//! A test binary installs it with `#[global_allocator] static GLOBAL: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator.
pub struct Counting;

thread_local! {
    // `const` and without a destructor: using them never allocates, so the allocator may.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only `const`
// thread-local `Cell`s, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting this thread's allocations; [`stop`] says how many there were.
pub fn start() {
    ALLOCS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
}

/// Stops counting; the allocations since [`start`].
pub fn stop() -> usize {
    ARMED.with(|a| a.set(false));
    ALLOCS.with(Cell::get)
}

/// How many allocations this thread makes in `f` (only if [`Counting`] is the global allocator).
pub fn counted(f: impl FnOnce()) -> usize {
    start();
    f();
    stop()
}
