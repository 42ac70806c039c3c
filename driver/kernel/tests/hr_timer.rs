//! `HighResolutionTimer<C>` on the simulator: exact (not tick-rounded) expiry, periods in
//! 100 ns units, cancel, and teardown mid-callback and at `DISPATCH_LEVEL`.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{
    Counter, Held, TAG, assert_clean_unload, last_position, ms, outstanding_test_blocks, position,
    wait_for_trace,
};
use kernel_sim::{Config, Event, Kernel};
use ktimer_kernel::deferred::reclaim_deferred;
use ktimer_kernel::hr_timer::HighResolutionTimer;
use ktimer_kernel::irql::PassiveLevel;
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::time::Interval;

fn interval(duration: Duration) -> Interval {
    Interval::from_duration(duration).unwrap()
}

#[test]
fn a_high_resolution_timer_fires_at_its_due_time_not_on_the_clock_tick() {
    // Default tick: 15.625 ms. The timer is due at 2.5 ms.
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = HighResolutionTimer::new(Arc::clone(&counter), TAG).unwrap();
    assert!(!timer.set_once(interval(Duration::from_micros(2_500))));
    kernel.advance(Duration::from_micros(2_499));
    assert_eq!(counter.fired(), 0);
    kernel.advance(Duration::from_micros(1));
    assert_eq!(
        counter.fired(),
        1,
        "exactly at 2.5 ms, long before the first tick"
    );
    assert_eq!(counter.last_irql(), 2, "callbacks run at DISPATCH_LEVEL");
    assert!(!counter.passive_token_was_available());
    kernel.advance(ms(100));
    assert_eq!(counter.fired(), 1, "one-shot");
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_periodic_high_resolution_timer_fires_once_per_period() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = HighResolutionTimer::new(Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_periodic(interval(ms(1)), interval(Duration::from_micros(500)));
    kernel.advance(ms(10));
    assert_eq!(counter.fired(), 19, "at 1.0, 1.5, ..., 10.0 ms");
    assert!(timer.cancel());
    assert!(!timer.cancel());
    kernel.advance(ms(10));
    assert_eq!(counter.fired(), 19);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_zero_due_time_stays_relative_and_fires_at_once() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = HighResolutionTimer::new(Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_once(Interval::ZERO);
    kernel.advance(Duration::from_micros(1));
    assert_eq!(counter.fired(), 1);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn re_setting_a_high_resolution_timer_reports_that_it_was_set() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = HighResolutionTimer::new(Arc::clone(&counter), TAG).unwrap();
    assert!(!timer.set_once(interval(ms(5))));
    assert!(timer.set_once(interval(ms(8))));
    kernel.advance(ms(7));
    assert_eq!(counter.fired(), 0, "the 5 ms setting was replaced");
    kernel.advance(ms(1));
    assert_eq!(counter.fired(), 1);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn dropping_a_high_resolution_timer_mid_callback_waits_for_it() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let held = Held::new();
    let timer = HighResolutionTimer::new(Arc::clone(&held), TAG).unwrap();
    let _ = timer.set_once(interval(ms(1)));
    let advancer = {
        let kernel = kernel.clone();
        thread::spawn(move || {
            let _bound = kernel.enter();
            kernel.advance(ms(2));
        })
    };
    held.wait_until_entered();
    let dropper = {
        let kernel = kernel.clone();
        thread::spawn(move || {
            let _bound = kernel.enter();
            drop(timer);
        })
    };
    // ExDeleteTimer's cancel step is traced before it starts waiting.
    wait_for_trace(&kernel, |trace| {
        position(trace, |e| matches!(e, Event::ExTimerCancelled { .. })).is_some()
    });
    assert_eq!(held.finished(), 0);
    assert_eq!(outstanding_test_blocks(&kernel), 1);
    held.release();
    dropper.join().unwrap();
    advancer.join().unwrap();
    assert_eq!((held.started(), held.finished()), (1, 1));
    let trace = kernel.trace();
    let finished = last_position(&trace, |e| matches!(e, Event::DpcFinished { .. })).unwrap();
    let freed = position(
        &trace,
        |e| matches!(e, Event::PoolFreed { tag, .. } if *tag == TAG.as_u32()),
    )
    .unwrap();
    assert!(
        finished < freed,
        "storage freed only after the callback returned"
    );
    assert!(position(&trace, |e| matches!(e, Event::ExTimerDeleted { .. })).is_some());
    assert_clean_unload(&kernel);
}

#[test]
fn a_high_resolution_timer_dropped_at_dispatch_level_is_reclaimed_later() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = HighResolutionTimer::new(Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_periodic(interval(ms(1)), interval(ms(1)));
    kernel.advance(ms(3));
    assert_eq!(counter.fired(), 3);
    let slot = SpinLock::new(Some(timer));
    drop(slot.lock().take());
    assert_eq!(kernel.bug_check(), None);
    kernel.advance(ms(10));
    assert_eq!(counter.fired(), 3, "cancelled and torn down at once");
    assert_eq!(outstanding_test_blocks(&kernel), 1, "storage parked");
    let trace = kernel.trace();
    assert!(
        position(&trace, |e| matches!(e, Event::ExTimerDeleted { .. })).is_none(),
        "not deleted yet: ExDeleteTimer must wait, which needs PASSIVE_LEVEL"
    );
    assert_eq!(reclaim_deferred(&PassiveLevel::current().unwrap()), 1);
    assert!(
        position(&kernel.trace(), |e| matches!(
            e,
            Event::ExTimerDeleted { .. }
        ))
        .is_some()
    );
    assert_eq!(Arc::strong_count(&counter), 1);
    assert_clean_unload(&kernel);
}

#[test]
fn a_failed_allocation_of_a_high_resolution_timer_is_an_error() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.fail_next_pool_allocations(1);
    assert!(HighResolutionTimer::new(Counter::new(), TAG).is_err());
    assert_clean_unload(&kernel);
}
