//! Arming, cancelling and the expiry path allocate nothing.
//!
//! A counting global allocator attributes every heap allocation either to the expiry path
//! (made while a simulated processor runs a DPC routine or an `EX_TIMER` callback, i.e. the
//! driver's trampoline and callback) or to the thread that made it. Pool allocations are
//! counted by the simulator. In the real driver the heap *is* pool (wdk-alloc), so both must
//! stay flat.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Counter, TAG, ms};
use kernel_sim::{Config, Kernel};
use ktimer_kernel::hr_timer::HighResolutionTimer;
use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::time::{DueTime, Interval, Period, TolerableDelay};
use ktimer_kernel::timer::{Timer, TimerCallback, TimerKind};

/// Heap allocations made while a simulated processor ran a DPC routine or `EX_TIMER`
/// callback.
static IN_EXPIRY_PATH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Heap allocations made by this thread.
    static BY_THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: forwards to the system allocator unchanged; the bookkeeping neither allocates
// nor panics (`in_callback` is documented as allocation- and panic-free).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if kernel_sim::in_callback() {
            IN_EXPIRY_PATH.fetch_add(1, Ordering::Relaxed);
        }
        let _ = BY_THIS_THREAD.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_by_this_thread() -> u64 {
    BY_THIS_THREAD.with(Cell::get)
}

/// A realistic callback: counts into a spin lock shared with PASSIVE-level code.
struct CountsUnderLock {
    count: Arc<SpinLock<u64>>,
}

impl TimerCallback for CountsUnderLock {
    fn expired(&self, irql: &DispatchLevel) {
        *self.count.lock_at_dpc(irql) += 1;
    }
}

fn quiet_kernel() -> Kernel {
    // No event log: the simulator's own bookkeeping should not be what is measured.
    Kernel::new(Config {
        time_increment: 10_000,
        trace: false,
        ..Config::default()
    })
}

#[test]
fn arming_cancelling_and_expiry_allocate_nothing() {
    let kernel = quiet_kernel();
    let _bound = kernel.enter();
    let count = Arc::new(SpinLock::new(0_u64));
    let timer = Timer::new(
        TimerKind::Notification,
        CountsUnderLock {
            count: Arc::clone(&count),
        },
        TAG,
    )
    .unwrap();
    let counter = Counter::new();
    let hr_timer = HighResolutionTimer::new(Arc::clone(&counter), TAG).unwrap();
    let due = DueTime::after(ms(2)).unwrap();
    let period = Period::from_millis(1).unwrap();
    let hr_due = Interval::from_duration(ms(1)).unwrap();

    // Warm-up round: lets the simulator size its own queues.
    let _ = timer.set_periodic(due, period);
    let _ = hr_timer.set_periodic(hr_due, hr_due);
    kernel.advance(ms(5));
    let _ = (timer.cancel(), hr_timer.cancel());

    let pool_before = kernel.pool_stats().allocations;
    let expiry_before = IN_EXPIRY_PATH.load(Ordering::SeqCst);
    let fired_before = (*count.lock(), counter.fired());

    let thread_before = allocations_by_this_thread();
    let _ = timer.set_once(due);
    let _ = timer.set_periodic(due, period);
    let _ = timer.set_coalescable(due, Some(period), TolerableDelay::from_millis(1));
    let _ = timer.set_periodic(due, period);
    let _ = timer.is_signaled();
    let _ = hr_timer.set_once(hr_due);
    let _ = hr_timer.set_periodic(hr_due, hr_due);
    let arming = allocations_by_this_thread() - thread_before;

    kernel.advance(ms(200));

    let thread_before = allocations_by_this_thread();
    let cancelled = (timer.cancel(), hr_timer.cancel());
    let cancelling = allocations_by_this_thread() - thread_before;

    let fired = (
        *count.lock() - fired_before.0,
        counter.fired() - fired_before.1,
    );
    assert_eq!(fired, (199, 200), "the measured window saw real expiries");
    assert_eq!(cancelled, (true, true));
    assert_eq!(
        IN_EXPIRY_PATH.load(Ordering::SeqCst) - expiry_before,
        0,
        "the expiry path allocated"
    );
    assert_eq!(arming, 0, "arming allocated");
    assert_eq!(cancelling, 0, "cancelling allocated");
    assert_eq!(
        kernel.pool_stats().allocations,
        pool_before,
        "pool allocations after construction"
    );
    drop((timer, hr_timer));
    assert_eq!(kernel.unload(), Ok(()));
}
