//! A global allocator that counts allocations per thread, for the tests that hold the hot paths
//! to "nothing allocated per message" (other threads of the test harness do not disturb the
//! count). A test binary installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator (the system allocator underneath).
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes to the system allocator unchanged; only a thread-local counter is
// touched beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // The system's calloc, not the default alloc + memset: fresh zeroed pages stay unmapped
        // until written, as in a production binary, so page-fault counts stay true.
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) this thread made while `f` ran.
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Page faults (minor and major) this thread took while `f` ran: memory the allocator handed out
/// earlier but nobody wrote yet is mapped on its first write, which is as much a hot-path cost
/// as an allocation.
pub fn page_faults_during(f: impl FnOnce()) -> u64 {
    fn faults() -> u64 {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage; RUSAGE_THREAD is Linux's per-thread figure.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        assert_eq!(
            rc,
            0,
            "getrusage(RUSAGE_THREAD): {}",
            std::io::Error::last_os_error()
        );
        (usage.ru_minflt + usage.ru_majflt) as u64
    }
    let before = faults();
    f();
    faults() - before
}
