//! How `Timer<C>` goes away: dropping while the DPC is mid-run on another processor,
//! cancelling and re-arming mid-run, a periodic DPC queued again while an earlier run is
//! still going, drops at `DISPATCH_LEVEL` (deferred, then reclaimed), and a callback that
//! drops its own timer. Every test ends with the verifier's unload check.

// On the kernel simulator, the driver's binding on every target but Windows.
#![cfg(not(windows))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use common::{
    Counter, Held, TAG, assert_clean_unload, kernel_with_tick_ms, last_position, ms,
    outstanding_test_blocks, position, wait_for_trace,
};
use kernel_sim::{Config, Event, Kernel};
use ktimer_kernel::deferred::reclaim_deferred;
use ktimer_kernel::irql::{DispatchLevel, PassiveLevel};
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::time::{DueTime, Period};
use ktimer_kernel::timer::{Timer, TimerCallback, TimerKind};

fn after(millis: u64) -> DueTime {
    DueTime::after(ms(millis)).unwrap()
}

fn is_test_pool_free(event: &Event) -> bool {
    matches!(event, Event::PoolFreed { tag, .. } if *tag == TAG.as_u32())
}

/// Runs `kernel.advance(duration)` on its own bound thread (it returns once the DPCs it
/// queued have run, so a held callback keeps it waiting).
fn advance_in_background(kernel: &Kernel, duration: std::time::Duration) -> thread::JoinHandle<()> {
    let kernel = kernel.clone();
    thread::spawn(move || {
        let _bound = kernel.enter();
        kernel.advance(duration);
    })
}

#[test]
fn dropping_a_timer_whose_callback_is_mid_run_waits_for_it_before_freeing() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let held = Held::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&held), TAG).unwrap();
    let _ = timer.set_once(after(5));
    let advancer = advance_in_background(&kernel, ms(10));
    held.wait_until_entered();

    // The DPC is running on a simulated processor. Drop the timer from another thread.
    let dropper = {
        let kernel = kernel.clone();
        thread::spawn(move || {
            let _bound = kernel.enter();
            drop(timer);
        })
    };
    // The drop has begun (its cancel is in the trace) while the callback is held.
    wait_for_trace(&kernel, |trace| {
        position(trace, |e| matches!(e, Event::TimerCancelled { .. })).is_some()
    });
    assert_eq!(held.finished(), 0, "the callback is still mid-run");
    assert_eq!(
        outstanding_test_blocks(&kernel),
        1,
        "and its storage is alive"
    );
    held.release();
    dropper.join().unwrap();
    advancer.join().unwrap();

    assert_eq!((held.started(), held.finished()), (1, 1));
    let trace = kernel.trace();
    let finished = last_position(&trace, |e| matches!(e, Event::DpcFinished { .. })).unwrap();
    let freed = position(&trace, is_test_pool_free).unwrap();
    assert!(
        finished < freed,
        "the storage was freed only after the callback returned"
    );
    assert_eq!(outstanding_test_blocks(&kernel), 0);
    assert_clean_unload(&kernel);
}

#[test]
fn cancel_returns_while_the_callback_is_mid_run_and_does_not_stop_it() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let held = Held::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&held), TAG).unwrap();
    let _ = timer.set_once(after(5));
    let advancer = advance_in_background(&kernel, ms(10));
    held.wait_until_entered();
    assert!(
        !timer.cancel(),
        "the one-shot expiry already took it out of the queue"
    );
    assert_eq!(held.finished(), 0, "cancel did not wait for the callback");
    held.release();
    advancer.join().unwrap();
    assert_eq!((held.started(), held.finished()), (1, 1));
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn re_arming_while_the_callback_is_mid_run_fires_again_later() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let held = Held::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&held), TAG).unwrap();
    let _ = timer.set_once(after(5));
    let advancer = advance_in_background(&kernel, ms(5));
    held.wait_until_entered();
    assert!(
        !timer.set_once(after(20)),
        "not set: it expired, its DPC is running"
    );
    held.release();
    advancer.join().unwrap();
    assert_eq!(held.finished(), 1);
    kernel.advance(ms(19));
    assert_eq!(held.started(), 1);
    kernel.advance(ms(1));
    assert_eq!(
        (held.started(), held.finished()),
        (2, 2),
        "the new setting fired"
    );
    drop(timer);
    assert_clean_unload(&kernel);
}

#[test]
fn dropping_a_periodic_timer_whose_dpc_was_queued_again_while_running_is_safe() {
    // Processors run their queues concurrently, so a periodic DPC queued again after it
    // was dequeued can start on the other processor while the first run is held.
    let kernel = Kernel::new(Config {
        time_increment: 10_000,
        parallel_dpcs: true,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let held = Held::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&held), TAG).unwrap();
    let _ = timer.set_periodic(after(1), Period::from_millis(1).unwrap());
    let advancer = advance_in_background(&kernel, ms(1));
    held.wait_until_entered();
    // Expire it again without waiting for DPCs: the DPC is queued a second time.
    kernel.advance_without_running_dpcs(ms(1));
    let trace = kernel.trace();
    let queued = trace
        .iter()
        .filter(|e| matches!(e.event, Event::DpcQueued { .. }))
        .count();
    assert_eq!(queued, 2, "queued again while the first run is mid-run");

    let dropper = {
        let kernel = kernel.clone();
        thread::spawn(move || {
            let _bound = kernel.enter();
            drop(timer);
        })
    };
    wait_for_trace(&kernel, |trace| {
        position(trace, |e| matches!(e, Event::TimerCancelled { .. })).is_some()
    });
    held.release();
    dropper.join().unwrap();
    advancer.join().unwrap();

    // The second queuing was either dequeued by the drop or ran (and, seeing the timer
    // torn down, did not call back, or called back before the drop began): either way
    // every run that started finished, and nothing ran after the storage was freed.
    assert_eq!(held.started(), held.finished());
    assert!(held.started() <= 2);
    let trace = kernel.trace();
    let freed = position(&trace, is_test_pool_free).unwrap();
    let last_dpc = last_position(&trace, |e| {
        matches!(e, Event::DpcStarted { .. } | Event::DpcFinished { .. })
    })
    .unwrap();
    assert!(
        last_dpc < freed,
        "no DPC activity after the storage was freed"
    );
    assert_clean_unload(&kernel);
}

#[test]
fn after_a_passive_drop_returns_the_callback_never_runs_again() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_periodic(after(1), Period::from_millis(1).unwrap());
    kernel.advance(ms(5));
    assert_eq!(counter.fired(), 5);
    // Expire once more without running the DPC: it is queued when the drop happens.
    kernel.advance_without_running_dpcs(ms(1));
    assert_eq!(kernel.queued_dpcs(), 1);
    drop(timer);
    assert_eq!(kernel.queued_dpcs(), 0, "the drop dequeued the pending DPC");
    kernel.advance(ms(100));
    assert_eq!(counter.fired(), 5);
    let trace = kernel.trace();
    assert!(position(&trace, |e| matches!(e, Event::DpcRemoved { .. })).is_some());
    assert_eq!(
        Arc::strong_count(&counter),
        1,
        "the callback was dropped with the timer"
    );
    assert_clean_unload(&kernel);
}

#[test]
fn a_drop_at_dispatch_level_is_deferred_until_a_passive_reclaim() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let passive = PassiveLevel::current().unwrap();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_periodic(after(1), Period::from_millis(1).unwrap());
    kernel.advance(ms(3));
    assert_eq!(counter.fired(), 3);

    let slot = SpinLock::new(Some(timer));
    {
        let mut guard = slot.lock();
        // Dropped while the spin lock keeps this thread at DISPATCH_LEVEL.
        drop(guard.take());
    }
    assert_eq!(kernel.bug_check(), None, "no bug check");
    assert_eq!(outstanding_test_blocks(&kernel), 1, "parked, not freed");
    kernel.advance(ms(50));
    assert_eq!(counter.fired(), 3, "but stopped: cancelled and torn down");
    assert_eq!(
        Arc::strong_count(&counter),
        2,
        "the parked storage still owns the callback"
    );

    assert_eq!(reclaim_deferred(&passive), 1);
    assert_eq!(outstanding_test_blocks(&kernel), 0);
    assert_eq!(
        Arc::strong_count(&counter),
        1,
        "dropped at PASSIVE_LEVEL by the reclaim"
    );
    assert_eq!(reclaim_deferred(&passive), 0, "nothing left");
    assert_clean_unload(&kernel);
}

#[test]
fn a_passive_drop_also_frees_timers_parked_earlier() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let parked = SpinLock::new(Some(
        Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap(),
    ));
    drop(parked.lock().take());
    assert_eq!(outstanding_test_blocks(&kernel), 1);
    let other = Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap();
    drop(other);
    assert_eq!(outstanding_test_blocks(&kernel), 0, "one flush freed both");
    assert_clean_unload(&kernel);
}

#[test]
fn unloading_with_a_parked_timer_is_reported_as_a_pool_leak() {
    // Why the driver must call reclaim_deferred before unload.
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let parked = SpinLock::new(Some(
        Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap(),
    ));
    drop(parked.lock().take());
    let bug_check = kernel.unload().unwrap_err();
    assert_eq!(bug_check.code, 0xC4);
    assert_eq!(bug_check.parameters[0], 0x62);
    assert_eq!(bug_check.parameters[1], u64::from(TAG.as_u32()));
    // The machine has stopped; reclaiming now only drops the callback the parked storage
    // still owns (so the test itself leaks nothing).
    assert_eq!(reclaim_deferred(&PassiveLevel::current().unwrap()), 1);
}

#[test]
fn parked_timers_of_one_kernel_are_not_reclaimed_by_another() {
    let first = kernel_with_tick_ms(1);
    let second = kernel_with_tick_ms(1);
    {
        let _bound = first.enter();
        let parked = SpinLock::new(Some(
            Timer::new(TimerKind::Notification, Counter::new(), TAG).unwrap(),
        ));
        drop(parked.lock().take());
    }
    {
        let _bound = second.enter();
        let passive = PassiveLevel::current().unwrap();
        assert_eq!(
            reclaim_deferred(&passive),
            0,
            "the other kernel's block is not ours"
        );
        assert_clean_unload(&second);
    }
    let _bound = first.enter();
    assert_eq!(outstanding_test_blocks(&first), 1);
    assert_eq!(reclaim_deferred(&PassiveLevel::current().unwrap()), 1);
    assert_clean_unload(&first);
}

/// A callback that owns its own timer (through a shared slot) and drops it on its first run.
struct DropsItself {
    slot: Arc<SpinLock<Option<Timer<DropsItself>>>>,
    runs: Arc<AtomicU32>,
}

impl TimerCallback for DropsItself {
    fn expired(&self, irql: &DispatchLevel) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let own_timer = self.slot.lock_at_dpc(irql).take();
        // Dropped at DISPATCH_LEVEL, inside its own DPC.
        drop(own_timer);
    }
}

#[test]
fn a_callback_can_drop_its_own_timer() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let slot = Arc::new(SpinLock::new(None));
    let runs = Arc::new(AtomicU32::new(0));
    let timer = Timer::new(
        TimerKind::Notification,
        DropsItself {
            slot: Arc::clone(&slot),
            runs: Arc::clone(&runs),
        },
        TAG,
    )
    .unwrap();
    let _ = timer.set_periodic(after(1), Period::from_millis(1).unwrap());
    *slot.lock() = Some(timer);
    kernel.advance(ms(10));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "stopped by its own drop");
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(
        outstanding_test_blocks(&kernel),
        1,
        "parked until PASSIVE_LEVEL"
    );
    assert_eq!(reclaim_deferred(&PassiveLevel::current().unwrap()), 1);
    assert_clean_unload(&kernel);
}

#[test]
fn a_timer_dropped_on_another_thread_than_its_creator_is_torn_down_normally() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let counter = Counter::new();
    let timer = Timer::new(TimerKind::Notification, Arc::clone(&counter), TAG).unwrap();
    let _ = timer.set_periodic(after(1), Period::from_millis(1).unwrap());
    kernel.advance(ms(2));
    let other = kernel.clone();
    thread::spawn(move || {
        let _bound = other.enter();
        drop(timer);
    })
    .join()
    .unwrap();
    kernel.advance(ms(10));
    assert_eq!(counter.fired(), 2);
    assert_clean_unload(&kernel);
}

/// A callback that re-arms its own one-shot timer a few times. It reaches its timer through
/// a slot guarded by a spin lock, which is also how the owner takes it back: re-arming and
/// the drop can never overlap.
struct RearmsItself {
    slot: Arc<SpinLock<Option<Timer<RearmsItself>>>>,
    remaining: AtomicU32,
    runs: Arc<AtomicU32>,
}

impl TimerCallback for RearmsItself {
    fn expired(&self, irql: &DispatchLevel) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let slot = self.slot.lock_at_dpc(irql);
        if let Some(own_timer) = slot.as_ref()
            && self.remaining.load(Ordering::SeqCst) > 0
        {
            self.remaining.fetch_sub(1, Ordering::SeqCst);
            assert!(
                !own_timer.set_once(after(5)),
                "a one-shot timer is not set while its DPC runs"
            );
        }
    }
}

#[test]
fn a_callback_can_re_arm_its_own_timer_and_the_owner_can_still_drop_it() {
    let kernel = kernel_with_tick_ms(1);
    let _bound = kernel.enter();
    let slot = Arc::new(SpinLock::new(None));
    let runs = Arc::new(AtomicU32::new(0));
    let timer = Timer::new(
        TimerKind::Notification,
        RearmsItself {
            slot: Arc::clone(&slot),
            remaining: AtomicU32::new(3),
            runs: Arc::clone(&runs),
        },
        TAG,
    )
    .unwrap();
    let _ = timer.set_once(after(5));
    *slot.lock() = Some(timer);
    kernel.advance(ms(5));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    kernel.advance(ms(100));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "the first run and three re-arms"
    );

    // Re-arm once more from outside, then take the timer back and drop it at PASSIVE_LEVEL
    // (the guard is released at the end of the statement, before the drop).
    let taken = slot.lock().take();
    let timer = taken.unwrap();
    let _ = timer.set_once(after(5));
    drop(timer);
    kernel.advance(ms(100));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "the drop cancelled the pending setting"
    );
    assert_eq!(
        outstanding_test_blocks(&kernel),
        0,
        "freed at once, not parked"
    );
    assert_clean_unload(&kernel);
}
