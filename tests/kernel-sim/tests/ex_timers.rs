//! `ExAllocateTimer` family: exact expiry for high resolution, tick expiry otherwise,
//! cancel/delete semantics and the checks on attributes, due times and IRQL.

mod common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Gate, TICK};
use kernel_sim::bugcheck::{codes, routine};
use kernel_sim::{
    BugCheck, Config, EX_TIMER_HIGH_RESOLUTION, EX_TIMER_NO_WAKE, Kernel, PEX_TIMER, PVOID,
    catch_bug_check, ntddk,
};

/// What an `EX_TIMER` callback saw.
#[derive(Default)]
struct ExProbe {
    /// Precise interrupt time at each run.
    runs: Mutex<Vec<u64>>,
    /// IRQL and processor of the last run.
    last: Mutex<Option<(u8, Option<usize>)>>,
    /// Optional gate to block on, and a flag set just before returning.
    gate: Option<Arc<Gate>>,
    finished: AtomicBool,
}

unsafe extern "C" fn ex_callback(_timer: PEX_TIMER, context: PVOID) {
    // SAFETY: `context` is the Arc'd ExProbe the test keeps alive past the timer's deletion.
    let probe = unsafe { &*context.cast::<ExProbe>() };
    let mut qpc = 0_u64;
    // SAFETY: `qpc` is a live local.
    let now = unsafe { ntddk::KeQueryInterruptTimePrecise(&raw mut qpc) };
    probe.runs.lock().unwrap().push(now);
    // SAFETY: no pointers.
    let irql = unsafe { ntddk::KeGetCurrentIrql() };
    *probe.last.lock().unwrap() = Some((irql, kernel_sim::current_processor()));
    if let Some(gate) = &probe.gate {
        gate.arrive_and_wait();
    }
    probe.finished.store(true, Ordering::SeqCst);
}

struct ExTimer {
    timer: PEX_TIMER,
    probe: Arc<ExProbe>,
}

// SAFETY: the EX_TIMER is owned by the kernel and only used through its routines.
unsafe impl Send for ExTimer {}
// SAFETY: as above.
unsafe impl Sync for ExTimer {}

impl ExTimer {
    fn new(attributes: u32, probe: ExProbe) -> Self {
        let probe = Arc::new(probe);
        let context = Arc::as_ptr(&probe).cast_mut().cast::<c_void>();
        // SAFETY: the probe outlives the timer (the test deletes the timer first or lets the
        // kernel go).
        let timer = unsafe { ntddk::ExAllocateTimer(Some(ex_callback), context, attributes) };
        assert!(!timer.is_null());
        Self { timer, probe }
    }

    fn set(&self, due: i64, period: i64) -> bool {
        // SAFETY: a live timer from ExAllocateTimer; NULL parameters are allowed.
        unsafe { ntddk::ExSetTimer(self.timer, due, period, std::ptr::null_mut()) != 0 }
    }

    fn cancel(&self) -> bool {
        // SAFETY: a live timer.
        unsafe { ntddk::ExCancelTimer(self.timer, std::ptr::null_mut()) != 0 }
    }

    fn delete(&self, cancel: bool, wait: bool) -> bool {
        // SAFETY: a live timer; the test does not use it afterwards.
        unsafe {
            ntddk::ExDeleteTimer(
                self.timer,
                u8::from(cancel),
                u8::from(wait),
                std::ptr::null_mut(),
            ) != 0
        }
    }

    fn runs(&self) -> Vec<u64> {
        self.probe.runs.lock().unwrap().clone()
    }
}

#[test]
fn high_resolution_timer_expires_at_its_exact_due_time_between_ticks() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(EX_TIMER_HIGH_RESOLUTION, ExProbe::default());
    assert!(!timer.set(-50_000, 0)); // 5 ms
    kernel.advance(Duration::from_millis(10));
    assert_eq!(
        timer.runs(),
        vec![50_000],
        "at 5 ms, not at the 15.625 ms tick"
    );
    let (irql, cpu) = timer.probe.last.lock().unwrap().unwrap();
    assert_eq!(
        (u32::from(irql), cpu),
        (kernel_sim::DISPATCH_LEVEL, Some(0))
    );
    assert!(!timer.delete(true, true));
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn periodic_high_resolution_timer_fires_at_exact_multiples_of_its_period() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(EX_TIMER_HIGH_RESOLUTION, ExProbe::default());
    timer.set(-10_000, 10_000); // 1 ms, then every 1 ms
    kernel.advance(Duration::from_millis(5));
    assert_eq!(timer.runs(), vec![10_000, 20_000, 30_000, 40_000, 50_000]);
    assert!(timer.delete(true, true), "it was set");
}

#[test]
fn normal_ex_timer_expires_on_the_clock_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    timer.set(-50_000, 0);
    kernel.advance(Duration::from_millis(20));
    assert_eq!(timer.runs(), vec![TICK]);
    timer.delete(true, true);
}

#[test]
fn ex_set_timer_returns_whether_it_was_set_and_ex_cancel_timer_whether_it_cancelled() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(EX_TIMER_HIGH_RESOLUTION, ExProbe::default());
    assert!(!timer.set(-100_000, 0));
    assert!(timer.set(-200_000, 0), "re-setting a set timer");
    assert!(timer.cancel());
    assert!(!timer.cancel());
    kernel.advance(Duration::from_millis(30));
    assert!(timer.runs().is_empty());
    assert!(!timer.delete(true, true));
}

#[test]
fn ex_delete_timer_with_wait_returns_only_after_the_running_callback_finished() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let timer = ExTimer::new(
        EX_TIMER_HIGH_RESOLUTION,
        ExProbe {
            gate: Some(gate.clone()),
            ..ExProbe::default()
        },
    );
    timer.set(-10_000, 10_000);
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let clock = scope.spawn(|| kernel.advance(Duration::from_millis(1)));
        gate.wait_arrived(1);
        let deleter = scope.spawn(|| {
            let _bound = kernel.enter();
            let cancelled = timer.delete(true, true);
            (cancelled, timer.probe.finished.load(Ordering::SeqCst))
        });
        // Let the deleter reach its wait; whether or not it has, the callback is still held.
        std::thread::yield_now();
        gate.open();
        assert_eq!(
            deleter.join().unwrap(),
            (true, true),
            "returned after the callback"
        );
        clock.join().unwrap();
    });
    assert_eq!(kernel.unload(), Ok(()), "the EX_TIMER was released");
}

#[test]
fn ex_cancel_timer_does_not_wait_for_a_running_callback() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let timer = ExTimer::new(
        EX_TIMER_HIGH_RESOLUTION,
        ExProbe {
            gate: Some(gate.clone()),
            ..ExProbe::default()
        },
    );
    timer.set(-10_000, 10_000);
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let clock = scope.spawn(|| kernel.advance(Duration::from_millis(1)));
        gate.wait_arrived(1);
        assert!(timer.cancel());
        assert!(
            !timer.probe.finished.load(Ordering::SeqCst),
            "callback still running"
        );
        gate.open();
        clock.join().unwrap();
    });
    timer.delete(true, true);
}

#[test]
fn ex_allocate_timer_with_high_resolution_and_no_wake_bugchecks_0x139_invalid_argument() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let attributes = EX_TIMER_HIGH_RESOLUTION | EX_TIMER_NO_WAKE;
    let error = catch_bug_check(|| {
        // SAFETY: no live context is needed for a call the kernel refuses.
        unsafe { ntddk::ExAllocateTimer(Some(ex_callback), std::ptr::null_mut(), attributes) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [5, 0, u64::from(attributes), routine::EX_ALLOCATE_TIMER]
        )
    );
}

#[test]
fn ex_allocate_timer_with_unknown_attributes_fails_with_null() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    // SAFETY: the call fails before the context could be used.
    let timer = unsafe { ntddk::ExAllocateTimer(Some(ex_callback), std::ptr::null_mut(), 0x100) };
    assert!(timer.is_null());
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn ex_timers_with_each_valid_attribute_set_are_accepted() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    for attributes in [0, EX_TIMER_HIGH_RESOLUTION, EX_TIMER_NO_WAKE] {
        let timer = ExTimer::new(attributes, ExProbe::default());
        timer.set(-10_000, 0);
        kernel.advance(Duration::from_millis(16));
        assert_eq!(timer.runs().len(), 1);
        timer.delete(true, true);
    }
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn high_resolution_timer_with_an_absolute_due_time_bugchecks_0x139_invalid_argument() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(EX_TIMER_HIGH_RESOLUTION, ExProbe::default());
    let absolute = kernel.system_time() + 10_000;
    let error = catch_bug_check(|| timer.set(absolute, 0)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [
                5,
                timer.timer.addr() as u64,
                absolute.cast_unsigned(),
                routine::EX_SET_TIMER
            ]
        )
    );
}

#[test]
fn normal_ex_timer_accepts_an_absolute_due_time() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    timer.set(kernel.system_time() + 10_000, 0);
    kernel.advance(Duration::from_millis(16));
    assert_eq!(timer.runs(), vec![TICK]);
    timer.delete(true, true);
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn negative_ex_timer_period_bugchecks_0x139_invalid_argument() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    let error = catch_bug_check(|| timer.set(-10_000, -1)).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::KERNEL_SECURITY_CHECK_FAILURE, 5)
    );
}

#[test]
fn ex_delete_timer_with_wait_above_apc_level_bugchecks_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    let mut old = 0;
    // SAFETY: `old` is a live local.
    unsafe { ntddk::KeRaiseIrql(2, &raw mut old) };
    let error = catch_bug_check(|| timer.delete(true, true)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [timer.timer.addr() as u64, 2, 1, routine::EX_DELETE_TIMER]
        )
    );
}

#[test]
fn ex_delete_timer_without_wait_at_dispatch_level_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    timer.set(-10_000, 0);
    let mut old = 0;
    // SAFETY: `old` is a live local.
    unsafe { ntddk::KeRaiseIrql(2, &raw mut old) };
    assert!(timer.delete(true, false));
    // SAFETY: no pointers.
    unsafe { ntddk::KeLowerIrql(old) };
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn using_a_deleted_ex_timer_bugchecks_0x139_corrupt_list() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let timer = ExTimer::new(
        0,
        ExProbe {
            gate: Some(gate.clone()),
            ..ExProbe::default()
        },
    );
    timer.set(-10_000, 0);
    // Keep the storage alive (a callback is queued) so the stale pointer is still mapped.
    kernel.advance_without_running_dpcs(Duration::from_millis(16));
    timer.delete(false, false);
    let error = catch_bug_check(|| timer.set(-10_000, 0)).unwrap_err();
    gate.open();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [3, timer.timer.addr() as u64, 0, routine::EX_SET_TIMER]
        )
    );
}

#[test]
fn one_shot_ex_timer_deleted_without_cancel_fires_then_is_released() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    timer.set(-10_000, 0);
    assert!(!timer.delete(false, false), "nothing cancelled");
    kernel.advance(Duration::from_millis(16));
    assert_eq!(timer.runs().len(), 1, "the pending expiry still happened");
    assert!(
        kernel
            .trace()
            .iter()
            .any(|e| matches!(e.event, kernel_sim::Event::ExTimerDeleted { .. }))
    );
    assert_eq!(kernel.unload(), Ok(()), "released after its callback");
}

#[test]
fn unload_with_an_ex_timer_not_deleted_bugchecks_0xce() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = ExTimer::new(0, ExProbe::default());
    assert_eq!(
        kernel.unload(),
        Err(BugCheck::new(
            codes::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
            [timer.timer.addr() as u64, 3, 0, 0]
        ))
    );
}

#[test]
fn a_ktimer_due_at_the_last_tick_expires_at_the_next_tick_not_at_a_high_resolution_stop() {
    // A KTIMER set exactly on a tick with due time 0 is due at that tick, already processed:
    // it expires on the next tick. A high-resolution timer's stop in between is not a tick.
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.advance(Duration::from_nanos(TICK * 100));
    let timer = common::Timer::new();
    let dpc = common::Dpc::new();
    timer.init();
    timer.set(common::due(0), 0, Some(&dpc));
    let hr = ExTimer::new(EX_TIMER_HIGH_RESOLUTION, ExProbe::default());
    hr.set(-10_000, 0); // a stop 1 ms after the tick
    kernel.advance(Duration::from_millis(2));
    assert_eq!(
        hr.runs(),
        vec![TICK + 10_000],
        "the high-resolution stop happened"
    );
    assert_eq!(dpc.runs(), 0, "the KTIMER waits for the next tick");
    kernel.advance(Duration::from_nanos(TICK * 100));
    assert_eq!(dpc.runs(), 1);
    assert_eq!(dpc.probe.log()[0].at, 2 * TICK, "expired on the tick");
    assert!(!hr.delete(true, true));
}
