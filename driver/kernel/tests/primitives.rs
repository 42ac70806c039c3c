//! The kernel layer's building blocks on the simulator: `SpinLock`, `PoolBox`, `PoolArc`,
//! the clocks.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;

use common::{TAG, assert_clean_unload, kernel_with_tick_ms, ms};
use kernel_sim::{Config, DEFAULT_BOOT_SYSTEM_TIME, DEFAULT_TIME_INCREMENT, Kernel};
use ktimer_kernel::clock::{self, InterruptTime};
use ktimer_kernel::irql::{DispatchLevel, current_irql};
use ktimer_kernel::pool::{AllocationFailed, POOL_ALIGNMENT, PoolArc, PoolBox, PoolTag};
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::time::{DueTime, Interval};
use ktimer_kernel::timer::{Timer, TimerCallback, TimerKind};

#[test]
fn a_spin_lock_raises_to_dispatch_level_and_restores_the_previous_level() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let outer = SpinLock::new(1_u32);
    let inner = SpinLock::new(10_u32);
    {
        let mut guard = outer.lock();
        assert_eq!(current_irql(), 2);
        *guard += 1;
        // Already at DISPATCH_LEVEL: the guard's token opens a second lock without
        // changing the IRQL.
        let mut nested = inner.lock_at_dpc(guard.dispatch_level());
        *nested += 5;
        drop(nested);
        assert_eq!(current_irql(), 2);
    }
    assert_eq!(current_irql(), 0, "back to PASSIVE_LEVEL");
    assert_eq!((*outer.lock(), *inner.lock()), (2, 15));
    assert_clean_unload(&kernel);
}

#[test]
fn a_spin_lock_serialises_threads_exactly() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let count = Arc::new(SpinLock::new(0_u64));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let kernel = kernel.clone();
            let count = Arc::clone(&count);
            thread::spawn(move || {
                let _bound = kernel.enter();
                for _ in 0..500 {
                    let mut guard = count.lock();
                    let seen = *guard;
                    thread::yield_now();
                    *guard = seen + 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(*count.lock(), 2_000);
    let mut count = Arc::into_inner(count).unwrap();
    *count.get_mut() += 1;
    assert_eq!(count.into_inner(), 2_001);
    assert_clean_unload(&kernel);
}

/// Takes a lock the ordinary way from inside a DPC and records the IRQL after release.
struct LocksInsideDpc {
    lock: SpinLock<u32>,
    irql_after_release: AtomicU8,
}

impl TimerCallback for LocksInsideDpc {
    fn expired(&self, _irql: &DispatchLevel) {
        *self.lock.lock() += 1;
        self.irql_after_release
            .store(current_irql(), Ordering::SeqCst);
    }
}

#[test]
fn releasing_a_lock_taken_inside_a_dpc_stays_at_dispatch_level() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let timer = Timer::new(
        TimerKind::Notification,
        LocksInsideDpc {
            lock: SpinLock::new(0),
            irql_after_release: AtomicU8::new(u8::MAX),
        },
        TAG,
    )
    .unwrap();
    let _ = timer.set_once(DueTime::after(ms(1)).unwrap());
    kernel.advance(ms(1));
    assert_eq!(*timer.callback().lock.lock(), 1);
    assert_eq!(
        timer.callback().irql_after_release.load(Ordering::SeqCst),
        2,
        "the release restored DISPATCH_LEVEL, not PASSIVE_LEVEL"
    );
    drop(timer);
    assert_clean_unload(&kernel);
}

#[repr(align(16))]
#[derive(Debug, PartialEq)]
struct Aligned([u8; 48]);

#[test]
fn a_pool_box_is_a_tagged_aligned_non_paged_allocation() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let tag = PoolTag::new(*b"KtmP");
    assert_eq!(format!("{tag:?}"), "PoolTag(\"KtmP\")");
    let mut boxed = PoolBox::new(Aligned([7; 48]), tag).unwrap();
    assert_eq!(PoolBox::tag(&boxed), tag);
    boxed.0[0] = 1;
    assert_eq!(boxed.0[..2], [1, 7]);
    assert_eq!(std::ptr::from_ref(&*boxed).addr() % POOL_ALIGNMENT, 0);
    let usage = kernel.pool_by_tag();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].tag, usage[0].allocations), (tag.as_u32(), 1));
    assert_eq!(usage[0].bytes, 48);
    let pinned = PoolBox::pin(Aligned([0; 48]), tag).unwrap();
    assert_eq!(*pinned, Aligned([0; 48]));
    drop((boxed, pinned));
    assert_eq!(kernel.pool_stats().outstanding_allocations, 0);
    assert_clean_unload(&kernel);
}

#[test]
fn a_pool_box_of_a_zero_sized_value_still_owns_a_block() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let boxed = PoolBox::new((), TAG).unwrap();
    assert_eq!(kernel.pool_stats().outstanding_allocations, 1);
    drop(boxed);
    assert_clean_unload(&kernel);
}

#[test]
fn an_exhausted_pool_is_an_error_not_a_panic() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.fail_next_pool_allocations(1);
    assert_eq!(PoolBox::new(5_u32, TAG).err(), Some(AllocationFailed));
    assert_eq!(*PoolBox::new(5_u32, TAG).unwrap(), 5);
    assert_clean_unload(&kernel);
}

#[test]
fn a_pool_arc_is_one_block_freed_by_its_last_owner_on_any_thread() {
    /// Counts its drops.
    struct Dropped(Arc<AtomicU8>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let drops = Arc::new(AtomicU8::new(0));
    let shared = PoolArc::new(Dropped(Arc::clone(&drops)), TAG).unwrap();
    assert_eq!(kernel.pool_stats().outstanding_allocations, 1);
    let clones: Vec<_> = (0..4).map(|_| PoolArc::clone(&shared)).collect();
    assert!(clones.iter().all(|clone| PoolArc::ptr_eq(clone, &shared)));
    // The value's address is the same through every owner, and stays while the raw form
    // is the only owner left (the KMDF shell reads its device's logic that way).
    let value = PoolArc::as_ptr(&shared);
    assert!(clones.iter().all(|clone| PoolArc::as_ptr(clone) == value));
    assert!(core::ptr::eq(value, &raw const *shared));
    // Through the raw form and back, as a file-object context keeps it.
    let raw = PoolArc::into_raw(shared);
    thread::scope(|scope| {
        for clone in clones {
            let kernel = kernel.clone();
            scope.spawn(move || {
                let _bound = kernel.enter();
                drop(clone);
            });
        }
    });
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "an owner is left: the raw form"
    );
    assert_eq!(kernel.pool_stats().outstanding_allocations, 1);
    // SAFETY: `raw` came from `into_raw` of a `PoolArc<Dropped>` and is taken back once.
    let last = unsafe { PoolArc::<Dropped>::from_raw(raw) };
    assert_eq!(PoolArc::as_ptr(&last), value);
    drop(last);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped once, by the last owner"
    );
    assert_eq!(kernel.pool_stats().outstanding_allocations, 0);
    assert_clean_unload(&kernel);
}

#[test]
fn a_pool_arc_allocation_failure_is_an_error_not_a_panic() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.fail_next_pool_allocations(1);
    assert_eq!(PoolArc::new(5_u32, TAG).err(), Some(AllocationFailed));
    assert_eq!(*PoolArc::new(5_u32, TAG).unwrap(), 5);
    assert_clean_unload(&kernel);
}

#[test]
fn the_clocks_follow_virtual_time_exactly() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    assert_eq!(
        clock::time_increment(),
        Interval::from_hundred_ns(u64::from(DEFAULT_TIME_INCREMENT)).unwrap()
    );
    let start = clock::interrupt_time();
    assert_eq!(start.as_hundred_ns(), kernel.interrupt_time());
    let system_start = clock::system_time();
    assert_eq!(
        system_start.as_hundred_ns_since_1601(),
        DEFAULT_BOOT_SYSTEM_TIME.unsigned_abs() + start.as_hundred_ns()
    );

    kernel.advance(ms(1_000));
    let later = clock::interrupt_time();
    assert_eq!(later.as_hundred_ns(), kernel.interrupt_time());
    assert_eq!(later.saturating_duration_since(start), ms(1_000));
    assert_eq!(start.saturating_duration_since(later), ms(0));
    assert!(clock::interrupt_time_precise() >= later);
    assert_eq!(
        clock::system_time().as_hundred_ns_since_1601() - system_start.as_hundred_ns_since_1601(),
        10_000_000,
        "one second of system time"
    );
    assert_eq!(
        InterruptTime::from_hundred_ns(u64::MAX).saturating_duration_since(start),
        Interval::MAX.as_duration(),
        "saturates instead of overflowing"
    );
    assert_clean_unload(&kernel);
}
