//! Verifier checks: for each, a test that makes it fire (exact code and parameters) and a test
//! that correct use does not.

mod common;

use std::time::Duration;

use common::{Dpc, Gate, PoolObjects, Probe, TAG, TICK, Timer, flush, relative_ms};
use kernel_sim::bugcheck::{codes, routine};
use kernel_sim::{
    BugCheck, Config, KIRQL, KSPIN_LOCK, KTIMER, Kernel, POOL_FLAG_NON_PAGED, catch_bug_check,
    ntddk,
};

fn ticks(n: u64) -> Duration {
    Duration::from_nanos(n * TICK * 100)
}

fn raise_to(level: u32) -> KIRQL {
    let mut old: KIRQL = 0;
    // SAFETY: `old` is a live local.
    unsafe { ntddk::KeRaiseIrql(KIRQL::try_from(level).unwrap(), &raw mut old) };
    old
}

fn lower_to(level: KIRQL) {
    // SAFETY: no pointers.
    unsafe { ntddk::KeLowerIrql(level) };
}

// ----- 0xC7: freeing pool that holds a set timer / queued or running DPC ------------------

#[test]
fn freeing_pool_holding_a_set_timer_bugchecks_0xc7_timer() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let objects = PoolObjects::new(Probe::new());
    objects.set(relative_ms(100), 0);
    let start = objects.block.addr() as u64;
    let error = catch_bug_check(|| objects.free()).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(codes::TIMER_OR_DPC_INVALID, [0, start, start, start + 128])
    );
    assert_eq!(kernel.bug_check(), Some(error), "recorded in the kernel");
}

/// Many timers and DPCs outside the block: the free looks up the block's own addresses
/// instead of scanning every object (the same checks either way).
fn many_other_objects() -> (Vec<Timer>, Vec<Dpc>) {
    let timers: Vec<Timer> = (0..64).map(|_| Timer::notification()).collect();
    let dpcs: Vec<Dpc> = (0..64).map(|_| Dpc::new()).collect();
    for (timer, dpc) in timers.iter().zip(&dpcs) {
        timer.set(relative_ms(1000), 0, Some(dpc));
    }
    (timers, dpcs)
}

#[test]
fn freeing_pool_holding_a_set_timer_among_many_objects_bugchecks_0xc7_timer() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let _others = many_other_objects();
    let objects = PoolObjects::new(Probe::new());
    objects.set(relative_ms(100), 0);
    let start = objects.block.addr() as u64;
    let error = catch_bug_check(|| objects.free()).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(codes::TIMER_OR_DPC_INVALID, [0, start, start, start + 128])
    );
}

#[test]
fn freeing_pool_holding_a_queued_dpc_among_many_objects_bugchecks_0xc7_dpc() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let _others = many_other_objects();
    let objects = PoolObjects::new(Probe::new());
    assert!(objects.insert());
    let start = objects.block.addr() as u64;
    let error = catch_bug_check(|| objects.free()).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::TIMER_OR_DPC_INVALID,
            [1, objects.dpc.addr() as u64, start, start + 128]
        )
    );
}

#[test]
fn freeing_pool_among_many_objects_forgets_only_the_objects_in_the_block() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timers, dpcs) = many_other_objects();
    let objects = PoolObjects::new(Probe::new());
    objects.set(relative_ms(1), 0);
    kernel.advance(ticks(1));
    flush();
    objects.free();
    assert_eq!(kernel.bug_check(), None);
    // The others are still known: still set, and their DPCs still run.
    assert!(timers.iter().all(|t| kernel.timer_is_set(t.ptr())));
    kernel.advance(Duration::from_secs(1));
    assert!(dpcs.iter().all(|d| d.runs() == 1));
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn freeing_pool_after_cancelling_the_timer_and_flushing_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let objects = PoolObjects::new(Probe::new());
    objects.set(relative_ms(1), 10);
    kernel.advance(ticks(3));
    objects.cancel();
    flush();
    objects.free();
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(kernel.pool_stats().outstanding_allocations, 0);
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn freeing_pool_holding_a_queued_dpc_bugchecks_0xc7_dpc() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let objects = PoolObjects::new(Probe::new());
    objects.insert();
    let start = objects.block.addr() as u64;
    let error = catch_bug_check(|| objects.free()).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::TIMER_OR_DPC_INVALID,
            [1, start + 64, start, start + 128]
        )
    );
}

#[test]
fn freeing_pool_holding_a_dpc_whose_timer_expired_but_not_yet_ran_bugchecks_0xc7_dpc() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let objects = PoolObjects::new(Probe::new());
    objects.set(relative_ms(1), 0);
    kernel.advance_without_running_dpcs(ticks(1));
    assert!(!objects.cancel(), "one-shot already expired");
    let error = catch_bug_check(|| objects.free()).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::TIMER_OR_DPC_INVALID, 1)
    );
}

#[test]
fn freeing_pool_after_removing_the_queued_dpc_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let objects = PoolObjects::new(Probe::new());
    objects.insert();
    assert!(objects.remove());
    objects.free();
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn freeing_pool_holding_a_dpc_that_is_running_on_another_processor_bugchecks_0xc7_dpc() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let objects = PoolObjects::new(Probe::with_hook(move |_| hook_gate.arrive_and_wait()));
    objects.insert();
    let start = objects.block.addr() as u64;
    let error = std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let runner = scope.spawn(|| catch_bug_check(|| kernel.run_until_idle()));
        gate.wait_arrived(1);
        let error = catch_bug_check(|| objects.free()).unwrap_err();
        gate.open();
        assert_eq!(
            runner.join().unwrap(),
            Err(error),
            "the machine stopped for everyone"
        );
        common::wait_until_no_dpc_runs(&kernel);
        error
    });
    assert_eq!(
        error,
        BugCheck::new(
            codes::TIMER_OR_DPC_INVALID,
            [1, start + 64, start, start + 128]
        )
    );
}

#[test]
fn a_dpc_routine_may_free_the_pool_holding_its_own_one_shot_timer_and_dpc() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let block = std::sync::Arc::new(std::sync::OnceLock::<common::SharedPtr>::new());
    let block_for_hook = block.clone();
    let objects = PoolObjects::new(Probe::with_hook(move |_| {
        let pointer = block_for_hook.get().map_or(std::ptr::null_mut(), |p| p.0);
        // SAFETY: the block is the live pool allocation holding this DPC and its expired
        // one-shot timer; nothing uses it afterwards.
        unsafe { ntddk::ExFreePoolWithTag(pointer, TAG) };
    }));
    let _ = block.set(common::SharedPtr(objects.block));
    objects.set(relative_ms(1), 0);
    kernel.advance(ticks(1));
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(kernel.pool_stats().outstanding_allocations, 0);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a halted processor thread never ends; Miri reports that at exit"
)]
fn a_dpc_routine_freeing_its_periodic_timer_bugchecks_0xc7_timer_and_halts_that_processor() {
    // A bug check inside a DPC: needs a processor thread to halt.
    let kernel = Kernel::new(common::threaded());
    let _bound = kernel.enter();
    let block = std::sync::Arc::new(std::sync::OnceLock::<common::SharedPtr>::new());
    let block_for_hook = block.clone();
    let objects = PoolObjects::new(Probe::with_hook(move |_| {
        let pointer = block_for_hook.get().map_or(std::ptr::null_mut(), |p| p.0);
        // SAFETY: the live pool block; the kernel refuses the free (the timer is still set).
        unsafe { ntddk::ExFreePoolWithTag(pointer, TAG) };
    }));
    let _ = block.set(common::SharedPtr(objects.block));
    objects.set(relative_ms(1), 10);
    let error = catch_bug_check(|| kernel.advance(ticks(1))).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::TIMER_OR_DPC_INVALID, 0)
    );
    assert_eq!(kernel.bug_check(), Some(error));
    // The halted processor's stack still refers to the probe: like a crashed machine's
    // memory, it is never freed.
    std::mem::forget(objects);
}

// ----- IRQL: routines above their maximum ---------------------------------------------------

#[test]
fn set_timer_above_dispatch_level_bugchecks_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    raise_to(kernel_sim::HIGH_LEVEL);
    let error = catch_bug_check(|| timer.set(relative_ms(1), 0, None)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [timer.ptr().addr() as u64, 15, 2, routine::KE_SET_TIMER]
        )
    );
}

#[test]
fn timer_routines_at_dispatch_level_are_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    let old = raise_to(kernel_sim::DISPATCH_LEVEL);
    timer.init();
    timer.set(relative_ms(1), 0, None);
    assert!(!timer.signaled());
    assert!(timer.cancel());
    lower_to(old);
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn wait_with_a_nonzero_timeout_at_dispatch_level_bugchecks_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    raise_to(kernel_sim::DISPATCH_LEVEL);
    let error = catch_bug_check(|| timer.wait(Some(-10_000))).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [
                timer.ptr().addr() as u64,
                2,
                1,
                routine::KE_WAIT_FOR_SINGLE_OBJECT
            ]
        )
    );
}

#[test]
fn wait_forever_at_dispatch_level_bugchecks_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    raise_to(kernel_sim::DISPATCH_LEVEL);
    let error = catch_bug_check(|| timer.wait(None)).unwrap_err();
    assert_eq!(error.code, codes::IRQL_NOT_LESS_OR_EQUAL);
}

#[test]
fn wait_with_a_zero_timeout_at_dispatch_level_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    let old = raise_to(kernel_sim::DISPATCH_LEVEL);
    assert_eq!(timer.wait(Some(0)), kernel_sim::STATUS_TIMEOUT);
    lower_to(old);
    assert_eq!(kernel.bug_check(), None);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a halted processor thread never ends; Miri reports that at exit"
)]
fn wait_with_a_zero_timeout_inside_a_dpc_is_fine_but_a_nonzero_one_bugchecks_0x0a() {
    // A bug check inside a DPC: needs a processor thread to halt.
    let kernel = Kernel::new(common::threaded());
    let _bound = kernel.enter();
    let timer = std::sync::Arc::new(Timer::notification());
    let timer_for_hook = timer.clone();
    let zero = Dpc::with_hook(move |_| {
        timer_for_hook.wait(Some(0));
    });
    zero.insert(0, 0);
    kernel.run_until_idle();
    assert_eq!(kernel.bug_check(), None);
    let timer_for_hook = timer.clone();
    let blocking = Dpc::with_hook(move |_| {
        timer_for_hook.wait(Some(-10_000));
    });
    blocking.insert(0, 0);
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    // The halted processor's stack still refers to the probe (see above).
    std::mem::forget(blocking);
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [
                timer.ptr().addr() as u64,
                2,
                1,
                routine::KE_WAIT_FOR_SINGLE_OBJECT
            ]
        )
    );
}

#[test]
fn flush_queued_dpcs_above_passive_level_bugchecks_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    raise_to(kernel_sim::APC_LEVEL);
    let error = catch_bug_check(flush).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [0, 1, 0, routine::KE_FLUSH_QUEUED_DPCS]
        )
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a halted processor thread never ends; Miri reports that at exit"
)]
fn flush_queued_dpcs_inside_a_dpc_bugchecks_0x0a() {
    // A bug check inside a DPC: needs a processor thread to halt.
    let kernel = Kernel::new(common::threaded());
    let _bound = kernel.enter();
    let dpc = Dpc::with_hook(|_| flush());
    dpc.insert(0, 0);
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    // The halted processor's stack still refers to the probe (see above).
    std::mem::forget(dpc);
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [0, 2, 0, routine::KE_FLUSH_QUEUED_DPCS]
        )
    );
}

#[test]
fn flush_queued_dpcs_at_passive_level_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    flush();
    assert_eq!(kernel.bug_check(), None);
}

// ----- re-initialisation ---------------------------------------------------------------------

#[test]
fn reinitialising_a_set_timer_bugchecks_0x139_corrupt_list() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    timer.set(relative_ms(10), 0, None);
    let error = catch_bug_check(|| timer.init()).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [
                3,
                timer.ptr().addr() as u64,
                0,
                routine::KE_INITIALIZE_TIMER
            ]
        )
    );
}

#[test]
fn reinitialising_a_cancelled_or_expired_timer_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    timer.set(relative_ms(10), 0, None);
    timer.cancel();
    timer.init();
    timer.set(relative_ms(1), 0, None);
    kernel.advance(ticks(1));
    timer.init();
    assert!(!timer.signaled(), "initialisation resets the state");
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn reinitialising_a_queued_dpc_bugchecks_0x139_corrupt_list() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    dpc.insert(0, 0);
    let error = catch_bug_check(|| dpc.init()).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [3, dpc.ptr().addr() as u64, 0, routine::KE_INITIALIZE_DPC]
        )
    );
}

#[test]
fn reinitialising_a_dpc_that_ran_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    dpc.insert(0, 0);
    kernel.run_until_idle();
    dpc.init();
    dpc.insert(0, 0);
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 2);
    assert_eq!(kernel.bug_check(), None);
}

// ----- unload ---------------------------------------------------------------------------------

#[test]
fn unload_with_pool_still_allocated_bugchecks_0xc4_0x62_with_the_tag() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let leaked = u32::from_le_bytes(*b"Leak");
    // SAFETY: no pointer arguments.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 40, leaked) };
    assert!(!block.is_null());
    // SAFETY: as above.
    let second = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 24, TAG) };
    assert!(!second.is_null());
    let error = kernel.unload().unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [0x62, u64::from(leaked), 64, 2]
        )
    );
    assert_eq!(kernel.bug_check(), Some(error));
    let usage = kernel.pool_by_tag();
    assert_eq!(
        usage.iter().map(|u| (u.tag, u.bytes)).collect::<Vec<_>>(),
        {
            let mut expected = vec![(leaked, 40), (TAG, 24)];
            expected.sort_unstable();
            expected
        }
    );
}

#[test]
fn unload_after_freeing_everything_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    // SAFETY: no pointer arguments.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 40, TAG) };
    // SAFETY: `block` came from ExAllocatePool2 with TAG.
    unsafe { ntddk::ExFreePoolWithTag(block, TAG) };
    assert_eq!(kernel.unload(), Ok(()));
    let stats = kernel.pool_stats();
    assert_eq!(
        (stats.allocations, stats.frees, stats.outstanding_bytes),
        (1, 1, 0)
    );
}

#[test]
fn unload_with_a_timer_still_set_bugchecks_0xce() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    timer.set(relative_ms(100), 0, None);
    assert_eq!(
        kernel.unload(),
        Err(BugCheck::new(
            codes::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
            [timer.ptr().addr() as u64, 0, 0, 0]
        ))
    );
}

#[test]
fn unload_with_a_dpc_still_queued_bugchecks_0xce() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    dpc.insert(0, 0);
    assert_eq!(
        kernel.unload(),
        Err(BugCheck::new(
            codes::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
            [dpc.ptr().addr() as u64, 1, 0, 0]
        ))
    );
}

// ----- DPC watchdog ---------------------------------------------------------------------------

#[test]
fn a_dpc_running_longer_than_the_watchdog_budget_bugchecks_0x133() {
    // The DPC is blocked on a processor thread while the test's thread watches it.
    let kernel = Kernel::new(Config {
        dpc_watchdog: Duration::from_millis(20),
        ..common::threaded()
    });
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let dpc = Dpc::with_hook(move |_| hook_gate.arrive_and_wait());
    dpc.insert(0, 0);
    let _open_on_exit = gate.opener();
    // The routine blocks until the watchdog has fired; then the test lets it return.
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    gate.open();
    common::wait_until_no_dpc_runs(&kernel);
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::DPC_WATCHDOG_VIOLATION, 0)
    );
    assert_eq!(
        error.parameters[2], 1,
        "budget in whole ticks: 20 ms / 15.625 ms"
    );
}

#[test]
fn a_dpc_that_keeps_requeuing_itself_beyond_the_budget_bugchecks_0x133_cumulative() {
    let kernel = Kernel::new(Config {
        dpc_watchdog: Duration::from_mins(1),
        dpc_watchdog_cumulative: Duration::from_millis(20),
        time_increment: 10_000,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let dpc = std::sync::Arc::new(std::sync::OnceLock::<Dpc>::new());
    // Weak: the DPC's own hook must not keep the DPC alive (no reference cycle).
    let dpc_for_hook = std::sync::Arc::downgrade(&dpc);
    let storm = Dpc::with_hook(move |_| {
        if let Some(cell) = dpc_for_hook.upgrade()
            && let Some(me) = cell.get()
        {
            me.insert(0, 0);
        }
    });
    let _ = dpc.set(storm);
    dpc.get().unwrap().insert(0, 0);
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::DPC_WATCHDOG_VIOLATION, 1)
    );
    assert_eq!(
        error.parameters[2], 20,
        "budget in ticks: 20 ms of 1 ms ticks"
    );
}

#[test]
fn short_dpcs_within_the_watchdog_budget_are_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(relative_ms(1), 1, Some(&dpc));
    kernel.advance(Duration::from_secs(2));
    timer.cancel();
    assert_eq!(dpc.runs(), 128);
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn a_dpc_returning_below_dispatch_level_bugchecks_0xc8() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::with_hook(|_| lower_to(0));
    dpc.insert(0, 0);
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::IRQL_UNEXPECTED_VALUE, 2)
    );
}

// ----- bad input -------------------------------------------------------------------------------

#[test]
fn null_timer_pointer_bugchecks_0x7e_access_violation() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let error = catch_bug_check(|| {
        // SAFETY: NULL is what the test passes; the simulator must refuse it.
        unsafe { ntddk::KeInitializeTimer(std::ptr::null_mut()) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::SYSTEM_THREAD_EXCEPTION_NOT_HANDLED,
            [
                u64::from(kernel_sim::STATUS_ACCESS_VIOLATION.cast_unsigned()),
                0,
                0,
                routine::KE_INITIALIZE_TIMER
            ]
        )
    );
}

#[test]
fn null_dpc_pointer_bugchecks_0x7e_access_violation() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let null = std::ptr::null_mut();
    let error = catch_bug_check(|| {
        // SAFETY: NULL is what the test passes; the simulator must refuse it.
        unsafe { ntddk::KeInsertQueueDpc(null, null.cast(), null.cast()) }
    })
    .unwrap_err();
    assert_eq!(error.code, codes::SYSTEM_THREAD_EXCEPTION_NOT_HANDLED);
    assert_eq!(error.parameters[3], routine::KE_INSERT_QUEUE_DPC);
}

#[test]
fn misaligned_timer_pointer_bugchecks_0x7e_datatype_misalignment() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let mut storage = [0_u64; 10];
    // Four bytes into 8-aligned storage: a misaligned KTIMER address.
    let misaligned = storage.as_mut_ptr().wrapping_byte_add(4).cast::<KTIMER>();
    let error = catch_bug_check(|| {
        // SAFETY: the pointer is inside live storage; the simulator refuses it before use.
        unsafe { ntddk::KeInitializeTimer(misaligned) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::SYSTEM_THREAD_EXCEPTION_NOT_HANDLED,
            [
                u64::from(kernel_sim::STATUS_DATATYPE_MISALIGNMENT.cast_unsigned()),
                0,
                misaligned.addr() as u64,
                routine::KE_INITIALIZE_TIMER
            ]
        )
    );
}

#[test]
fn uninitialised_timer_bugchecks_0x139_corrupt_list() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    let error = catch_bug_check(|| timer.set(relative_ms(1), 0, None)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [3, timer.ptr().addr() as u64, 0, routine::KE_SET_TIMER]
        )
    );
}

#[test]
fn garbage_timer_contents_bugcheck_0x139_even_at_a_known_address() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    // Overwrite the storage as a driver bug would (e.g. a memset of a live object).
    // SAFETY: the fixture's storage is live and no other thread uses it.
    unsafe { timer.ptr().write(KTIMER::default()) };
    let error = catch_bug_check(|| timer.cancel()).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::KERNEL_SECURITY_CHECK_FAILURE, 3)
    );
}

#[test]
fn uninitialised_dpc_passed_to_set_timer_bugchecks_0x139_corrupt_list() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::uninitialized());
    let error = catch_bug_check(|| timer.set(relative_ms(1), 0, Some(&dpc))).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [3, dpc.ptr().addr() as u64, 0, routine::KE_SET_TIMER]
        )
    );
}

#[test]
fn unknown_timer_type_bugchecks_0x139_invalid_argument() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    let error = catch_bug_check(|| timer.init_ex(7)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [
                5,
                timer.ptr().addr() as u64,
                7,
                routine::KE_INITIALIZE_TIMER
            ]
        )
    );
}

#[test]
fn negative_period_bugchecks_0x139_invalid_argument() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    let error = catch_bug_check(|| timer.set(relative_ms(1), -5, None)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [
                5,
                timer.ptr().addr() as u64,
                (-5_i64).cast_unsigned(),
                routine::KE_SET_TIMER
            ]
        )
    );
    assert!(!kernel.timer_is_set(timer.ptr()), "never a silent success");
}

#[test]
fn initialised_objects_and_valid_arguments_are_accepted() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (notification, synchronization, dpc) = (Timer::new(), Timer::new(), Dpc::new());
    notification.init_ex(kernel_sim::_TIMER_TYPE::NotificationTimer);
    synchronization.init_ex(kernel_sim::_TIMER_TYPE::SynchronizationTimer);
    notification.set(relative_ms(1), 0, Some(&dpc));
    synchronization.set(relative_ms(1), i32::MAX, None);
    kernel.advance(ticks(1));
    synchronization.cancel();
    assert_eq!(dpc.runs(), 1);
    assert_eq!(kernel.bug_check(), None);
}

#[test]
fn null_deferred_routine_bugchecks_0x139_invalid_argument() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::uninitialized();
    let error = catch_bug_check(|| {
        // SAFETY: live fixture storage; the routine is the invalid part.
        unsafe { ntddk::KeInitializeDpc(dpc.ptr(), None, std::ptr::null_mut()) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::KERNEL_SECURITY_CHECK_FAILURE,
            [5, dpc.ptr().addr() as u64, 0, routine::KE_INITIALIZE_DPC]
        )
    );
}

// ----- spin locks and IRQL transitions ----------------------------------------------------------

#[test]
fn acquiring_an_owned_spin_lock_again_bugchecks_0x0f() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let mut lock: KSPIN_LOCK = 0;
    let lock_ptr = &raw mut lock;
    // SAFETY: `lock` is a live local used only through the spin lock routines.
    unsafe { ntddk::KeInitializeSpinLock(lock_ptr) };
    // SAFETY: as above.
    let _old = unsafe { ntddk::KeAcquireSpinLockRaiseToDpc(lock_ptr) };
    let error = catch_bug_check(|| {
        // SAFETY: as above.
        unsafe { ntddk::KeAcquireSpinLockAtDpcLevel(lock_ptr) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::SPIN_LOCK_ALREADY_OWNED,
            [lock_ptr.addr() as u64, 0, 0, routine::KE_ACQUIRE_SPIN_LOCK]
        )
    );
}

#[test]
fn releasing_a_spin_lock_not_owned_bugchecks_0x10() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let mut lock: KSPIN_LOCK = 0;
    let lock_ptr = &raw mut lock;
    // SAFETY: `lock` is a live local used only through the spin lock routines.
    unsafe { ntddk::KeInitializeSpinLock(lock_ptr) };
    let error = catch_bug_check(|| {
        // SAFETY: as above.
        unsafe { ntddk::KeReleaseSpinLock(lock_ptr, 0) }
    })
    .unwrap_err();
    assert_eq!(error.code, codes::SPIN_LOCK_NOT_OWNED);
}

#[test]
fn acquire_at_dpc_level_below_dispatch_bugchecks_0x09() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let mut lock: KSPIN_LOCK = 0;
    let lock_ptr = &raw mut lock;
    let error = catch_bug_check(|| {
        // SAFETY: `lock` is a live local used only through the spin lock routines.
        unsafe { ntddk::KeAcquireSpinLockAtDpcLevel(lock_ptr) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_GREATER_OR_EQUAL,
            [lock_ptr.addr() as u64, 0, 2, routine::KE_ACQUIRE_SPIN_LOCK]
        )
    );
}

#[test]
fn raising_irql_to_a_lower_level_bugchecks_0x09_and_lowering_to_a_higher_one_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    raise_to(kernel_sim::DISPATCH_LEVEL);
    let error = catch_bug_check(|| raise_to(kernel_sim::APC_LEVEL)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_GREATER_OR_EQUAL,
            [0, 2, 1, routine::KE_RAISE_LOWER_IRQL]
        )
    );
    let other = Kernel::new(Config::default());
    let _bound_other = other.enter();
    let error = catch_bug_check(|| lower_to(2)).unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::IRQL_NOT_LESS_OR_EQUAL,
            [0, 0, 2, routine::KE_RAISE_LOWER_IRQL]
        )
    );
}

#[test]
fn spin_lock_and_irql_routines_used_correctly_are_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let mut lock: KSPIN_LOCK = 0;
    let lock_ptr = &raw mut lock;
    // SAFETY: `lock` is a live local used only through the spin lock routines.
    unsafe { ntddk::KeInitializeSpinLock(lock_ptr) };
    // SAFETY: as above.
    let old = unsafe { ntddk::KeAcquireSpinLockRaiseToDpc(lock_ptr) };
    // SAFETY: no pointers.
    let irql = unsafe { ntddk::KeGetCurrentIrql() };
    assert_eq!(u32::from(irql), kernel_sim::DISPATCH_LEVEL);
    // SAFETY: as above.
    unsafe { ntddk::KeReleaseSpinLock(lock_ptr, old) };
    // SAFETY: no pointers.
    assert_eq!(unsafe { ntddk::KeGetCurrentIrql() }, 0);
    let old = raise_to(kernel_sim::DISPATCH_LEVEL);
    // SAFETY: as above.
    unsafe { ntddk::KeAcquireSpinLockAtDpcLevel(lock_ptr) };
    // SAFETY: as above.
    unsafe { ntddk::KeReleaseSpinLockFromDpcLevel(lock_ptr) };
    lower_to(old);
    assert_eq!(kernel.bug_check(), None);
}

// ----- pool misuse -----------------------------------------------------------------------------

#[test]
fn freeing_pool_twice_bugchecks_0xc2_7_and_with_the_wrong_tag_0xc2_0x0a() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    // SAFETY: no pointer arguments.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG) };
    let wrong = u32::from_le_bytes(*b"Nope");
    let error = catch_bug_check(|| {
        // SAFETY: a live block; the tag is the invalid part.
        unsafe { ntddk::ExFreePoolWithTag(block, wrong) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::BAD_POOL_CALLER,
            [0x0A, block.addr() as u64, u64::from(TAG), u64::from(wrong)]
        )
    );
    let other = Kernel::new(Config::default());
    let _bound_other = other.enter();
    // SAFETY: no pointer arguments.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG) };
    // SAFETY: a live block.
    unsafe { ntddk::ExFreePoolWithTag(block, TAG) };
    let error = catch_bug_check(|| {
        // SAFETY: the block is gone; the simulator looks the address up without touching it.
        unsafe { ntddk::ExFreePoolWithTag(block, TAG) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(codes::BAD_POOL_CALLER, [0x07, 0, 0, block.addr() as u64])
    );
}

#[test]
fn pool_allocation_above_dispatch_or_of_zero_bytes_bugchecks_0xc4() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let error = catch_bug_check(|| {
        // SAFETY: no pointer arguments.
        unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 0, TAG) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [0, 0, POOL_FLAG_NON_PAGED, 0]
        )
    );
    let other = Kernel::new(Config::default());
    let _bound_other = other.enter();
    raise_to(kernel_sim::HIGH_LEVEL);
    let error = catch_bug_check(|| {
        // SAFETY: no pointer arguments.
        unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG) }
    })
    .unwrap_err();
    assert_eq!(
        error,
        BugCheck::new(
            codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [2, 15, POOL_FLAG_NON_PAGED, 8]
        )
    );
}

#[test]
fn pool_allocation_at_dispatch_level_is_fine_and_tracked_by_tag() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let old = raise_to(kernel_sim::DISPATCH_LEVEL);
    // SAFETY: no pointer arguments.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG) };
    lower_to(old);
    assert!(!block.is_null());
    assert_eq!(block.addr() % 16, 0, "pool blocks are 16-byte aligned");
    // SAFETY: a fresh zeroed block of 100 bytes.
    let bytes = unsafe { std::slice::from_raw_parts(block.cast::<u8>(), 100) };
    assert!(bytes.iter().all(|b| *b == 0), "zeroed");
    let stats = kernel.pool_stats();
    assert_eq!((stats.allocations, stats.outstanding_bytes), (1, 100));
    assert_eq!(kernel.pool_by_tag()[0].tag, TAG);
    // SAFETY: the block came from ExAllocatePool2 with TAG.
    unsafe { ntddk::ExFreePoolWithTag(block, TAG) };
    kernel.fail_next_pool_allocations(1);
    // SAFETY: no pointer arguments.
    assert!(unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG) }.is_null());
    assert_eq!(kernel.pool_stats().failed_allocations, 1);
    assert_eq!(kernel.bug_check(), None);
}

// ----- KeBugCheckEx -------------------------------------------------------------------------------

#[test]
fn ke_bug_check_ex_stops_the_machine_with_the_given_code() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let error = catch_bug_check(|| {
        // SAFETY: no pointers.
        unsafe { ntddk::KeBugCheckEx(0xDEAD, 1, 2, 3, 4) }
    })
    .unwrap_err();
    assert_eq!(error, BugCheck::new(0xDEAD, [1, 2, 3, 4]));
    assert_eq!(kernel.bug_check(), Some(error));
    // After the stop the routines are inert: no second unwind from clean-up code.
    let timer = Timer::new();
    timer.init();
    assert!(!timer.set(relative_ms(1), 0, None));
    assert_eq!(catch_bug_check(|| kernel.advance(ticks(1))), Err(error));
}

#[test]
fn no_bug_check_is_recorded_by_a_kernel_that_is_used_correctly() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    dpc.insert(0, 0);
    kernel.run_until_idle();
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn unload_after_cancelling_timers_and_flushing_dpcs_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(relative_ms(1), 5, Some(&dpc));
    kernel.advance(ticks(2));
    timer.cancel();
    dpc.insert(0, 0);
    flush();
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn a_dpc_that_raises_and_lowers_irql_back_before_returning_is_fine() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::with_hook(|_| {
        let old = raise_to(kernel_sim::HIGH_LEVEL);
        lower_to(old);
    });
    dpc.insert(0, 0);
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 1);
    assert_eq!(kernel.bug_check(), None);
}
