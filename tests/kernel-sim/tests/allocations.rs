//! Heap-allocation attribution: a counting global allocator uses `kernel_sim::in_callback()`
//! to count what DPC routines allocate, and checks that the simulator's own expiry path
//! (tick processing, queuing, dispatch) allocates nothing per expiry once warmed up.
//!
//! One test per binary: the global counters are process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use kernel_sim::{Config, KDPC, KTIMER, Kernel, LARGE_INTEGER, PVOID, ntddk};

struct Counting;

static IN_CALLBACK: AtomicUsize = AtomicUsize::new(0);
static ON_KERNEL_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the test thread while it drives the clock.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if kernel_sim::in_callback() {
            IN_CALLBACK.fetch_add(1, Ordering::Relaxed);
        }
        let measuring = MEASURING.try_with(Cell::get).unwrap_or(false);
        if measuring || kernel_sim::current_processor().is_some() {
            ON_KERNEL_THREADS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { System.dealloc(ptr, layout) };
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static RUNS: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn quiet_dpc(_: *mut KDPC, _: PVOID, _: PVOID, _: PVOID) {
    RUNS.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn allocating_dpc(_: *mut KDPC, _: PVOID, _: PVOID, _: PVOID) {
    RUNS.fetch_add(1, Ordering::Relaxed);
    drop(std::hint::black_box(Box::new([0_u8; 32])));
}

fn counts() -> (usize, usize) {
    (
        IN_CALLBACK.load(Ordering::Relaxed),
        ON_KERNEL_THREADS.load(Ordering::Relaxed),
    )
}

#[test]
fn expiry_path_allocates_nothing_and_callback_allocations_are_attributed() {
    let kernel = Kernel::new(Config {
        trace: false, // the event log grows by design; evidence runs turn it off
        time_increment: 10_000,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let mut timer = Box::new(KTIMER::default());
    let mut dpc = Box::new(KDPC::default());
    let (timer, dpc): (*mut KTIMER, *mut KDPC) = (&raw mut *timer, &raw mut *dpc);
    // SAFETY: boxed storage that outlives every use below (cancelled and flushed at the end).
    unsafe { ntddk::KeInitializeTimer(timer) };
    // SAFETY: as above.
    unsafe { ntddk::KeInitializeDpc(dpc, Some(quiet_dpc), std::ptr::null_mut::<c_void>()) };
    let period = LARGE_INTEGER { QuadPart: -10_000 };
    // SAFETY: as above.
    unsafe { ntddk::KeSetTimerEx(timer, period, 1, dpc) };
    kernel.advance(Duration::from_millis(10)); // warm-up: queues and scratch reach capacity
    let before = counts();
    MEASURING.with(|m| m.set(true));
    kernel.advance(Duration::from_millis(100));
    MEASURING.with(|m| m.set(false));
    assert_eq!(RUNS.load(Ordering::Relaxed), 110);
    assert_eq!(
        counts(),
        before,
        "100 expiries: no allocation on the expiry path"
    );

    // SAFETY: as above; the DPC is not queued (every run finished inside advance).
    unsafe { ntddk::KeInitializeDpc(dpc, Some(allocating_dpc), std::ptr::null_mut()) };
    kernel.advance(Duration::from_millis(10));
    let (in_callback, _) = counts();
    assert_eq!(
        in_callback - before.0,
        10,
        "one attributed allocation per DPC run"
    );

    // SAFETY: as above.
    unsafe { ntddk::KeCancelTimer(timer) };
    // SAFETY: no pointers.
    unsafe { ntddk::KeFlushQueuedDpcs() };
}
