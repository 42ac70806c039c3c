//! IRQL tracking and the spin lock: a real lock on the `KSPIN_LOCK` word that raises IRQL.

mod common;

use std::cell::UnsafeCell;
use std::sync::Arc;

use common::Dpc;
use kernel_sim::{Config, DISPATCH_LEVEL, Event, KIRQL, KSPIN_LOCK, Kernel, ntddk};

/// A counter guarded only by a simulated spin lock.
struct Guarded {
    lock: UnsafeCell<KSPIN_LOCK>,
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is only touched between KeAcquireSpinLock* and KeReleaseSpinLock*, and the
// lock word only through the spin lock routines (atomically).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn increment(&self, times: u32) -> u64 {
        let mut highest_irql_seen = 0;
        for _ in 0..times {
            // SAFETY: the lock word lives as long as `self`.
            let old = unsafe { ntddk::KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
            // SAFETY: no pointers.
            highest_irql_seen = highest_irql_seen.max(unsafe { ntddk::KeGetCurrentIrql() });
            // SAFETY: the spin lock is held: no other thread touches `count`.
            unsafe { *self.count.get() += 1 };
            // SAFETY: as above.
            unsafe { ntddk::KeReleaseSpinLock(self.lock.get(), old) };
        }
        u64::from(highest_irql_seen)
    }
}

#[test]
fn spin_lock_gives_mutual_exclusion_and_raises_to_dispatch_level() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let guarded = Guarded {
        lock: UnsafeCell::new(0),
        count: UnsafeCell::new(0),
    };
    // SAFETY: the lock word is live and not yet shared.
    unsafe { ntddk::KeInitializeSpinLock(guarded.lock.get()) };
    let per_thread = if cfg!(miri) { 20 } else { 2000 };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let _bound = kernel.enter();
                    guarded.increment(per_thread)
                })
            })
            .collect();
        for worker in workers {
            assert_eq!(worker.join().unwrap(), u64::from(DISPATCH_LEVEL));
        }
    });
    // SAFETY: every worker has finished.
    assert_eq!(unsafe { *guarded.count.get() }, 3 * u64::from(per_thread));
    // SAFETY: no pointers.
    let irql = unsafe { ntddk::KeGetCurrentIrql() };
    assert_eq!(irql, 0, "restored to PASSIVE_LEVEL");
}

#[test]
fn a_dpc_and_a_passive_thread_exclude_each_other_with_the_spin_lock() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let guarded = Arc::new(Guarded {
        lock: UnsafeCell::new(0),
        count: UnsafeCell::new(0),
    });
    // SAFETY: the lock word is live and not yet shared.
    unsafe { ntddk::KeInitializeSpinLock(guarded.lock.get()) };
    let for_dpc = guarded.clone();
    let dpc = Dpc::with_hook(move |_| {
        // Already at DISPATCH_LEVEL inside a DPC: the "at DPC level" variants.
        // SAFETY: the lock word lives in the Arc the hook holds.
        unsafe { ntddk::KeAcquireSpinLockAtDpcLevel(for_dpc.lock.get()) };
        // SAFETY: the spin lock is held.
        unsafe { *for_dpc.count.get() += 100 };
        // SAFETY: as above.
        unsafe { ntddk::KeReleaseSpinLockFromDpcLevel(for_dpc.lock.get()) };
    });
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let _bound = kernel.enter();
            guarded.increment(if cfg!(miri) { 10 } else { 500 })
        });
        for _ in 0..5 {
            dpc.insert(0, 0);
            kernel.run_until_idle();
        }
        worker.join().unwrap();
    });
    let expected = 500 + if cfg!(miri) { 10 } else { 500 };
    // SAFETY: the worker finished and no DPC is queued or running.
    assert_eq!(unsafe { *guarded.count.get() }, expected);
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn irql_is_tracked_per_thread() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let mut old: KIRQL = 0;
    // SAFETY: `old` is a live local.
    unsafe { ntddk::KeRaiseIrql(2, &raw mut old) };
    let other = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _bound = kernel.enter();
                // SAFETY: no pointers.
                unsafe { ntddk::KeGetCurrentIrql() }
            })
            .join()
            .unwrap()
    });
    assert_eq!(other, 0, "another thread is still at PASSIVE_LEVEL");
    // SAFETY: no pointers.
    assert_eq!(unsafe { ntddk::KeGetCurrentIrql() }, 2);
    // SAFETY: no pointers.
    unsafe { ntddk::KeLowerIrql(old) };
}

#[test]
fn print_lines_go_into_the_trace_of_the_bound_kernel() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel_sim::print(format_args!("timer {} armed", 7));
    let lines: Vec<Event> = kernel
        .trace()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| matches!(e, Event::Print(_)))
        .collect();
    assert_eq!(lines, vec![Event::Print("timer 7 armed".into())]);
}
