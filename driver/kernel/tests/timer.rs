//! `Timer<C>` on the simulator, in virtual time: arming, expiry counts, cancelling,
//! signaled state, waiting, coalescing, absolute due times, allocation failure.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{Counter, TAG, assert_clean_unload, kernel_with_tick_ms, ms};
use kernel_sim::{Config, Event, Kernel};
use ktimer_kernel::clock;
use ktimer_kernel::irql::{DispatchLevel, PassiveLevel};
use ktimer_kernel::pool::AllocationFailed;
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::time::{DueTime, Interval, Period, TolerableDelay};
use ktimer_kernel::timer::{Timer, TimerCallback, TimerKind, WaitOutcome};

fn after(millis: u64) -> DueTime {
    DueTime::after(ms(millis)).unwrap()
}

fn period(millis: u32) -> Period {
    Period::from_millis(millis).unwrap()
}

#[test]
fn a_one_shot_timer_fires_once_on_the_first_tick_at_or_after_its_due_time() {
    // The default tick is 15.625 ms: due at 20 ms means the tick at 31.25 ms.
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    assert!(!timer.set_once(after(20)), "a new timer was not set");

    kernel.advance(ms(31));
    assert_eq!(
        counter.fired(),
        0,
        "the 15.625 ms tick is before the due time"
    );
    kernel.advance(std::time::Duration::from_micros(250));
    assert_eq!(counter.fired(), 1, "the 31.25 ms tick expires it");
    kernel.advance(ms(500));
    assert_eq!(counter.fired(), 1, "a one-shot timer fires once");
    assert!(
        !timer.cancel(),
        "an expired one-shot timer is no longer set"
    );

    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn the_callback_runs_at_dispatch_level_where_no_passive_token_can_be_made() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_once(after(1));
    kernel.advance(ms(1));
    assert_eq!(counter.fired(), 1);
    assert_eq!(counter.last_irql(), 2, "DISPATCH_LEVEL");
    assert!(!counter.passive_token_was_available());
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_periodic_timer_fires_once_per_period_until_cancelled() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    assert!(!timer.set_periodic(after(10), period(10)));

    kernel.advance(ms(9));
    assert_eq!(counter.fired(), 0);
    kernel.advance(ms(1));
    assert_eq!(counter.fired(), 1, "first expiry at the due time");
    kernel.advance(ms(90));
    assert_eq!(counter.fired(), 10, "then one per 10 ms period");
    assert!(
        timer.cancel(),
        "a periodic timer stays set between expiries"
    );
    kernel.advance(ms(100));
    assert_eq!(counter.fired(), 10, "no expiry after cancel");
    assert!(!timer.cancel());

    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn setting_reports_whether_the_timer_was_set_and_replaces_the_old_setting() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    assert!(!timer.set_once(after(10)));
    assert!(
        timer.set_once(after(50)),
        "re-arming a set timer reports it was set"
    );

    kernel.advance(ms(49));
    assert_eq!(counter.fired(), 0, "the 10 ms setting was replaced");
    kernel.advance(ms(1));
    assert_eq!(counter.fired(), 1);

    assert!(!timer.set_periodic(after(5), period(5)));
    assert!(
        timer.set_once(after(5)),
        "a periodic setting is replaced by a one-shot"
    );
    kernel.advance(ms(100));
    assert_eq!(counter.fired(), 2, "exactly one more expiry");

    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn cancelling_before_expiry_prevents_the_callback() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_once(after(10));
    kernel.advance(ms(5));
    assert!(timer.cancel(), "it was set");
    assert!(!timer.cancel(), "and is no longer");
    kernel.advance(ms(100));
    assert_eq!(counter.fired(), 0);
    assert!(!timer.is_signaled());
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_notification_timer_stays_signaled_until_set_again() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let passive = PassiveLevel::current().unwrap();
    let timer = Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap();
    assert!(!timer.is_signaled(), "a new timer is not signaled");
    let _ = timer.set_once(after(3));
    kernel.advance(ms(3));
    assert!(timer.is_signaled());
    assert_eq!(timer.wait(&passive, Some(ms(0))), WaitOutcome::Signaled);
    assert_eq!(timer.wait(&passive, None), WaitOutcome::Signaled);
    assert!(
        timer.is_signaled(),
        "waits do not reset a notification timer"
    );
    let _ = timer.set_once(after(3));
    assert!(!timer.is_signaled(), "setting resets it");
    assert_eq!(timer.wait(&passive, Some(ms(0))), WaitOutcome::TimedOut);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_synchronization_timer_releases_one_wait_then_resets() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let passive = PassiveLevel::current().unwrap();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Synchronization, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_once(after(2));
    kernel.advance(ms(2));
    assert_eq!(
        counter.fired(),
        1,
        "the DPC runs for a synchronization timer too"
    );
    assert!(timer.is_signaled());
    assert_eq!(timer.wait(&passive, Some(ms(0))), WaitOutcome::Signaled);
    assert!(!timer.is_signaled(), "the satisfied wait reset it");
    assert_eq!(timer.wait(&passive, Some(ms(0))), WaitOutcome::TimedOut);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_wait_blocks_until_the_timer_expires_in_virtual_time() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let timer = Arc::new(Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap());
    let _ = timer.set_once(after(20));
    let waiter = {
        let kernel = kernel.clone();
        let timer = Arc::clone(&timer);
        std::thread::spawn(move || {
            let _bound = kernel.enter();
            let passive = PassiveLevel::current().unwrap();
            timer.wait(&passive, None)
        })
    };
    while kernel.waiting_threads() == 0 {
        std::thread::yield_now();
    }
    kernel.advance(ms(19));
    assert_eq!(
        kernel.waiting_threads(),
        1,
        "still waiting before the due time"
    );
    kernel.advance(ms(1));
    assert_eq!(waiter.join().unwrap(), WaitOutcome::Signaled);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_wait_times_out_in_virtual_time() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let timer = Arc::new(Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap());
    let waiter = {
        let kernel = kernel.clone();
        let timer = Arc::clone(&timer);
        std::thread::spawn(move || {
            let _bound = kernel.enter();
            let passive = PassiveLevel::current().unwrap();
            timer.wait(&passive, Some(ms(30)))
        })
    };
    while kernel.waiting_threads() == 0 {
        std::thread::yield_now();
    }
    kernel.advance(ms(29));
    assert_eq!(kernel.waiting_threads(), 1);
    kernel.advance(ms(1));
    assert_eq!(waiter.join().unwrap(), WaitOutcome::TimedOut);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_passive_token_held_under_a_spin_lock_cannot_make_the_thread_wait() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let passive = PassiveLevel::current().unwrap();
    let timer = Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap();
    let lock = SpinLock::new(());
    {
        let _guard = lock.lock();
        assert_eq!(
            timer.wait(&passive, Some(ms(10))),
            WaitOutcome::NotAtPassiveLevel
        );
    }
    assert_eq!(timer.wait(&passive, Some(ms(0))), WaitOutcome::TimedOut);
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn an_absolute_due_time_follows_the_system_clock() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let now = clock::system_time();
    let due = now
        .checked_add(Interval::from_duration(ms(40)).unwrap())
        .unwrap();
    let _ = timer.set_once(DueTime::At(due));
    kernel.advance(ms(39));
    assert_eq!(counter.fired(), 0);
    kernel.advance(ms(1));
    assert_eq!(counter.fired(), 1, "due at the absolute time");

    // Moving the wall clock past an absolute due time expires it at the next tick; a
    // relative timer set at the same moment is not affected.
    let relative = Counter::new();
    let relative_timer = Timer::new(TimerKind::Notification, Arc::clone(&relative), TAG).unwrap();
    let due = clock::system_time()
        .checked_add(Interval::from_duration(ms(1_000)).unwrap())
        .unwrap();
    let _ = timer.set_once(DueTime::At(due));
    let _ = relative_timer.set_once(after(1_000));
    let jumped = i64::try_from(due.as_hundred_ns_since_1601()).unwrap();
    kernel.set_system_time(jumped);
    kernel.advance(ms(1));
    assert_eq!(counter.fired(), 2, "the clock jump made it due");
    assert_eq!(relative.fired(), 0, "relative timers ignore the wall clock");

    drop((timer, relative_timer));
    assert_clean_unload(&kernel);
}

#[test]
fn a_coalescable_timer_fires_no_earlier_than_due_and_within_its_tolerance() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_coalescable(after(30), None, TolerableDelay::from_millis(100));
    kernel.advance(ms(29));
    assert_eq!(counter.fired(), 0, "never before the due time");
    kernel.advance(ms(101));
    assert_eq!(
        counter.fired(),
        1,
        "by the due time plus the tolerable delay"
    );
    kernel.advance(ms(1_000));
    assert_eq!(counter.fired(), 1, "one-shot");

    let set = kernel
        .trace()
        .into_iter()
        .filter_map(|event| match event.event {
            Event::TimerSet { period_ms, .. } => Some(period_ms),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(set, [0]);

    // Periodic with a tolerance: each expiry may be delayed, none is lost for good.
    assert!(!timer.set_coalescable(after(50), Some(period(50)), TolerableDelay::NONE));
    kernel.advance(ms(500));
    assert_eq!(counter.fired(), 11, "ten 50 ms periods without tolerance");
    assert!(timer.cancel());
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn a_failed_allocation_is_an_error_and_leaks_nothing() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    kernel.fail_next_pool_allocations(1);
    let counter = Counter::new();
    let result = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG);
    assert_eq!(
        result.err().map(|_| AllocationFailed),
        Some(AllocationFailed)
    );
    assert_eq!(Arc::strong_count(&counter), 1, "the callback was dropped");
    assert_eq!(kernel.pool_stats().failed_allocations, 1);
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    assert!(!timer.is_signaled());
    drop(timer);
    assert_clean_unload(&kernel);
}

/// A callback that counts into a `SpinLock` shared with PASSIVE-level code.
struct CountsUnderLock {
    count: Arc<SpinLock<u32>>,
}

impl TimerCallback for CountsUnderLock {
    fn expired(&self, irql: &DispatchLevel) {
        *self.count.lock_at_dpc(irql) += 1;
    }
}

#[test]
fn the_callback_and_passive_code_share_state_through_a_spin_lock() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let count = Arc::new(SpinLock::new(0_u32));
    let timer = Timer::new(
        TimerKind::Notification,
        CountsUnderLock {
            count: Arc::clone(&count),
        },
        TAG,
    )
    .unwrap();
    let _ = timer.set_periodic(after(2), period(2));
    kernel.advance(ms(20));
    assert_eq!(*count.lock(), 10);
    assert!(Arc::ptr_eq(&timer.callback().count, &count));
    drop(timer);
    assert_clean_unload(&kernel);
}

/// Counts runs; used to show `callback()` reaches the live callback.
#[derive(Default)]
struct Runs(AtomicU32);

impl TimerCallback for Runs {
    fn expired(&self, _irql: &DispatchLevel) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_callback_is_reachable_through_the_timer() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let timer = Timer::new(TimerKind::Notification, Runs::default(), TAG).unwrap();
    let _ = timer.set_periodic(after(1), period(1));
    kernel.advance(ms(7));
    assert_eq!(timer.callback().0.load(Ordering::SeqCst), 7);
    drop(timer);
    assert_clean_unload(&kernel);
}
