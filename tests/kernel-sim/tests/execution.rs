//! The two execution modes (`Config::execution`): the same scenarios run with processor
//! threads (`Threaded`) and on the dispatching thread (`Inline`) give the same trace where the
//! order is defined (serial dispatch, virtual clock); what inline execution guarantees about
//! the thread a routine runs on, its IRQL, processor and binding; and how each mode reports a
//! bug check inside a DPC.

mod common;

use std::ffi::c_void;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::{Dpc, Gate, PoolObjects, Probe, SharedPtr, TAG, Timer, flush, relative_ms};
use kernel_sim::bugcheck::codes;
use kernel_sim::{
    Config, EX_TIMER_HIGH_RESOLUTION, Event, Execution, KDPC, KTIMER, Kernel, LARGE_INTEGER,
    PEX_TIMER, PVOID, TraceEvent, catch_bug_check, ntddk,
};

fn config(execution: Execution) -> Config {
    Config {
        execution,
        ..Config::default()
    }
}

const BOTH: [Execution; 2] = [Execution::Threaded, Execution::Inline];

/// Runs `scenario` on a fresh kernel in each mode and returns the two traces and stats,
/// checking that the scenario did run DPCs.
fn in_both_modes(scenario: impl Fn(&Kernel)) -> Vec<(Vec<TraceEvent>, kernel_sim::Stats)> {
    BOTH.iter()
        .map(|execution| {
            let kernel = Kernel::new(config(*execution));
            {
                let _bound = kernel.enter();
                scenario(&kernel);
            }
            assert_eq!(kernel.bug_check(), None);
            let trace = kernel.take_trace();
            assert!(
                trace
                    .iter()
                    .any(|e| matches!(e.event, Event::DpcStarted { .. })),
                "the scenario runs DPCs"
            );
            (trace, kernel.stats())
        })
        .collect()
}

fn assert_same_in_both_modes(scenario: impl Fn(&Kernel)) {
    let runs = in_both_modes(scenario);
    let (threaded, inline) = (&runs[0], &runs[1]);
    assert_eq!(threaded.1, inline.1, "same counters");
    assert_eq!(threaded.0.len(), inline.0.len(), "same number of events");
    for (index, (a, b)) in threaded.0.iter().zip(&inline.0).enumerate() {
        assert_eq!(a, b, "event {index} differs (threaded, inline)");
    }
}

#[test]
fn periodic_and_one_shot_timers_give_the_same_trace_in_both_modes() {
    assert_same_in_both_modes(|kernel| {
        let timers: Vec<Timer> = (0..4).map(|_| Timer::notification()).collect();
        let dpcs: Vec<Dpc> = (0..4).map(|_| Dpc::new()).collect();
        timers[0].set(relative_ms(10), 10, Some(&dpcs[0]));
        timers[1].set(relative_ms(40), 0, Some(&dpcs[1]));
        timers[2].set(relative_ms(25), 7, Some(&dpcs[2]));
        timers[3].set_coalescable(relative_ms(5), 20, 60, Some(&dpcs[3]));
        dpcs[1].insert(0, 0);
        kernel.advance(Duration::from_millis(120));
        timers[0].cancel();
        kernel.advance_without_running_dpcs(Duration::from_millis(50));
        kernel.run_until_idle();
        timers[2].cancel();
        timers[3].cancel();
        flush();
    });
}

#[test]
fn dpcs_queued_from_dpcs_removed_and_flushed_give_the_same_trace_in_both_modes() {
    assert_same_in_both_modes(|kernel| {
        // A DPC that queues a second one (which goes to the same processor).
        let second = Arc::new(Dpc::new());
        let second_for_hook = Arc::clone(&second);
        let first = Dpc::with_hook(move |_| {
            second_for_hook.insert(7, 8);
        });
        let timer = Timer::notification();
        timer.set(relative_ms(1), 16, Some(&first));
        let removed = Dpc::new();
        removed.insert(1, 2);
        assert!(removed.remove());
        let flushed = Dpc::new();
        flushed.insert(3, 4);
        flush();
        kernel.advance(Duration::from_millis(100));
        timer.cancel();
        kernel.run_until_idle();
    });
}

#[test]
fn synchronization_timer_waits_and_system_time_changes_give_the_same_trace_in_both_modes() {
    assert_same_in_both_modes(|kernel| {
        let timer = Timer::synchronization();
        let dpc = Dpc::new();
        timer.set(relative_ms(20), 0, Some(&dpc));
        assert_eq!(timer.wait(Some(0)), kernel_sim::STATUS_TIMEOUT);
        kernel.advance(Duration::from_millis(40));
        assert_eq!(timer.wait(Some(0)), kernel_sim::STATUS_SUCCESS);
        let absolute = Timer::notification();
        let absolute_dpc = Dpc::new();
        let due = kernel.system_time() + 500 * common::MS;
        absolute.set(common::due(due), 0, Some(&absolute_dpc));
        kernel.set_system_time(due + common::MS);
        kernel.advance(Duration::from_millis(20));
        assert_eq!(absolute_dpc.runs(), 1);
    });
}

/// An `EX_TIMER` callback that counts its runs.
unsafe extern "C" fn counting_callback(_timer: PEX_TIMER, context: PVOID) {
    // SAFETY: `context` is the test's `Mutex<u32>`, which outlives the timer.
    let runs = unsafe { &*context.cast::<Mutex<u32>>() };
    *runs.lock().unwrap() += 1;
}

#[test]
fn ex_timers_give_the_same_trace_in_both_modes() {
    assert_same_in_both_modes(|kernel| {
        let runs = Mutex::new(0_u32);
        let context = (&raw const runs).cast_mut().cast::<c_void>();
        // SAFETY: the context outlives the timer (deleted with Wait below).
        let high = unsafe {
            ntddk::ExAllocateTimer(Some(counting_callback), context, EX_TIMER_HIGH_RESOLUTION)
        };
        // SAFETY: as above.
        let normal = unsafe { ntddk::ExAllocateTimer(Some(counting_callback), context, 0) };
        // SAFETY: live timers from ExAllocateTimer; NULL parameters are allowed.
        unsafe { ntddk::ExSetTimer(high, -3 * common::MS, 2 * common::MS, std::ptr::null_mut()) };
        // SAFETY: as above.
        unsafe { ntddk::ExSetTimer(normal, -common::MS, 0, std::ptr::null_mut()) };
        kernel.advance(Duration::from_millis(40));
        // SAFETY: live timers, deleted once, with Wait at PASSIVE_LEVEL.
        unsafe { ntddk::ExDeleteTimer(high, 1, 1, std::ptr::null_mut()) };
        // SAFETY: as above.
        unsafe { ntddk::ExDeleteTimer(normal, 1, 1, std::ptr::null_mut()) };
        assert!(*runs.lock().unwrap() > 10);
    });
}

#[test]
fn a_dpc_held_mid_run_on_a_helper_thread_gives_the_same_trace_in_both_modes() {
    // The hold-a-DPC pattern of docs/SIMULATOR.md: inline, the helper thread that drives the
    // clock is the one running (and blocked in) the routine.
    assert_same_in_both_modes(|kernel| {
        let gate = Gate::new();
        let hook_gate = Arc::clone(&gate);
        let dpc = Dpc::with_hook(move |_| hook_gate.arrive_and_wait());
        let timer = Timer::notification();
        timer.set(relative_ms(1), 0, Some(&dpc));
        std::thread::scope(|scope| {
            let _open_on_exit = gate.opener();
            let clock = scope.spawn(|| kernel.advance(Duration::from_millis(16)));
            gate.wait_arrived(1);
            assert_eq!(kernel.dpc_running(dpc.ptr()), 1);
            assert!(!timer.cancel(), "a one-shot that expired is no longer set");
            gate.open();
            clock.join().unwrap();
        });
        assert_eq!(kernel.running_dpcs(), 0);
    });
}

#[test]
fn inline_with_parallel_dpcs_two_dispatching_threads_run_dpcs_on_two_processors_at_once() {
    let kernel = Kernel::new(Config {
        parallel_dpcs: true,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let gate = Gate::new();
    let dpcs: Vec<Dpc> = (0..2)
        .map(|_| {
            let hook_gate = Arc::clone(&gate);
            Dpc::with_hook(move |_| hook_gate.arrive_and_wait())
        })
        .collect();
    for dpc in &dpcs {
        assert!(dpc.insert(0, 0), "queued round-robin: processors 0 and 1");
    }
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let dispatchers: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| kernel.run_until_idle()))
            .collect();
        gate.wait_arrived(2);
        assert_eq!(
            kernel.running_dpcs(),
            2,
            "both routines are mid-run at once"
        );
        gate.open();
        for dispatcher in dispatchers {
            dispatcher.join().unwrap();
        }
    });
    let cpus: Vec<Option<usize>> = dpcs.iter().map(|d| d.probe.log()[0].cpu).collect();
    assert_eq!(cpus, vec![Some(0), Some(1)]);
}

/// What a routine saw of its thread: the thread, processor, IRQL, callback flag and kernel.
type Seen = (ThreadId, Option<usize>, u8, bool, u64);

fn recording_dpc(seen: &Arc<Mutex<Vec<Seen>>>) -> Dpc {
    let seen = Arc::clone(seen);
    Dpc::with_hook(move |run| {
        seen.lock().unwrap().push((
            std::thread::current().id(),
            run.cpu,
            run.irql,
            run.in_callback,
            kernel_sim::current_kernel_id(),
        ));
    })
}

#[test]
fn inline_dpcs_run_on_the_calling_thread_as_a_simulated_processor_at_dispatch_level() {
    for execution in BOTH {
        let kernel = Kernel::new(config(execution));
        let _bound = kernel.enter();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let dpcs: Vec<Dpc> = (0..4).map(|_| recording_dpc(&seen)).collect();
        let timers: Vec<Timer> = (0..4).map(|_| Timer::notification()).collect();
        for (timer, dpc) in timers.iter().zip(&dpcs) {
            timer.set(relative_ms(1), 0, Some(dpc));
        }
        kernel.advance(Duration::from_millis(16));
        let me = std::thread::current().id();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        for (index, (thread, cpu, irql, in_callback, kernel_id)) in seen.into_iter().enumerate() {
            assert_eq!(cpu, Some(index % 2), "round-robin over the two processors");
            assert_eq!(u32::from(irql), kernel_sim::DISPATCH_LEVEL);
            assert!(in_callback);
            assert_eq!(kernel_id, kernel_sim::current_kernel_id());
            assert_eq!(
                thread == me,
                execution == Execution::Inline,
                "inline: the caller's thread; threaded: a processor thread"
            );
        }
        // Back on the caller: its own IRQL, no processor, not in a callback.
        // SAFETY: no arguments; the thread is bound.
        assert_eq!(unsafe { ntddk::KeGetCurrentIrql() }, 0);
        assert_eq!(kernel_sim::current_processor(), None);
        assert!(!kernel_sim::in_callback());
    }
}

#[test]
fn inline_dispatch_binds_an_unbound_or_otherwise_bound_thread_only_while_it_runs_dpcs() {
    let kernel = Kernel::new(Config::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (timer, dpc) = {
        let _bound = kernel.enter();
        let timer = Timer::notification();
        let dpc = recording_dpc(&seen);
        timer.set(relative_ms(1), 16, Some(&dpc));
        (timer, dpc)
    };
    assert!(seen.lock().unwrap().is_empty());
    // Unbound caller.
    assert_eq!(kernel_sim::current_kernel_id(), 0);
    kernel.advance(Duration::from_millis(16));
    assert_eq!(kernel_sim::current_kernel_id(), 0, "unbound again");
    // A caller bound to another kernel.
    let other = Kernel::new(Config::default());
    let other_bound = other.enter();
    let other_id = kernel_sim::current_kernel_id();
    kernel.advance(Duration::from_millis(16));
    assert_eq!(
        kernel_sim::current_kernel_id(),
        other_id,
        "bound to the other again"
    );
    drop(other_bound);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.4 != 0 && s.4 != other_id));
    let _bound = kernel.enter();
    timer.cancel();
    flush();
    drop(dpc);
}

#[test]
fn inline_flush_and_ex_delete_timer_run_the_queued_callbacks_on_the_caller_at_its_irql() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dpc = recording_dpc(&seen);
    dpc.insert(0, 0);
    assert!(
        kernel.dpc_is_queued(dpc.ptr()),
        "queued until someone dispatches"
    );
    flush();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap()[0].0, std::thread::current().id());

    // ExDeleteTimer(Wait) at APC_LEVEL: the callback queued by the expiry runs inline and
    // the caller is back at APC_LEVEL afterwards.
    let runs = Mutex::new(0_u32);
    let context = (&raw const runs).cast_mut().cast::<c_void>();
    // SAFETY: the context outlives the timer (deleted with Wait below).
    let timer = unsafe { ntddk::ExAllocateTimer(Some(counting_callback), context, 0) };
    // SAFETY: a live timer; NULL parameters are allowed.
    unsafe { ntddk::ExSetTimer(timer, -common::MS, 0, std::ptr::null_mut()) };
    kernel.advance_without_running_dpcs(Duration::from_millis(16));
    assert_eq!(kernel.queued_dpcs(), 1);
    let mut old = 0;
    // SAFETY: raising from PASSIVE_LEVEL to APC_LEVEL; `old` is a live local.
    unsafe { ntddk::KeRaiseIrql(1, &raw mut old) };
    // SAFETY: a live timer, deleted once, with Wait at APC_LEVEL.
    unsafe { ntddk::ExDeleteTimer(timer, 1, 1, std::ptr::null_mut()) };
    // SAFETY: no arguments.
    assert_eq!(unsafe { ntddk::KeGetCurrentIrql() }, 1);
    // SAFETY: lowering back to the level raised from.
    unsafe { ntddk::KeLowerIrql(old) };
    assert_eq!(*runs.lock().unwrap(), 1);
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
fn inline_a_dpc_longer_than_the_watchdog_budget_bugchecks_0x133_when_it_returns() {
    let kernel = Kernel::new(Config {
        dpc_watchdog: Duration::from_millis(20),
        ..Config::default()
    });
    let _bound = kernel.enter();
    let dpc = Dpc::with_hook(|_| std::thread::sleep(Duration::from_millis(40)));
    dpc.insert(0, 0);
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    assert_eq!(
        (error.code, error.parameters[0]),
        (codes::DPC_WATCHDOG_VIOLATION, 0)
    );
    assert_eq!(
        kernel.dpc_running(dpc.ptr()),
        0,
        "it returned; nothing halted"
    );
}

#[test]
fn inline_a_dpc_within_the_watchdog_budget_is_fine() {
    let kernel = Kernel::new(Config {
        dpc_watchdog: Duration::from_millis(500),
        ..Config::default()
    });
    let _bound = kernel.enter();
    let dpc = Dpc::with_hook(|_| std::thread::sleep(Duration::from_millis(5)));
    dpc.insert(0, 0);
    kernel.run_until_idle();
    assert_eq!(kernel.bug_check(), None);
    assert_eq!(dpc.runs(), 1);
}

/// The environment variable that makes [`inline_bug_check_inside_a_dpc_child`] run.
const CHILD: &str = "KERNEL_SIM_INLINE_BUG_CHECK_CHILD";

/// Run by [`a_bug_check_inside_an_inline_dpc_stops_the_process_with_the_bug_check`] in a
/// child process: a DPC routine frees the pool holding its own periodic (still set) timer.
#[test]
#[ignore = "run as a child process by the test below"]
fn inline_bug_check_inside_a_dpc_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let block = Arc::new(std::sync::OnceLock::<SharedPtr>::new());
    let block_for_hook = Arc::clone(&block);
    let objects = PoolObjects::new(Probe::with_hook(move |_| {
        let pointer = block_for_hook.get().map_or(std::ptr::null_mut(), |p| p.0);
        // SAFETY: the live pool block; the kernel refuses the free (the timer is still set).
        unsafe { ntddk::ExFreePoolWithTag(pointer, TAG) };
    }));
    let _ = block.set(SharedPtr(objects.block));
    objects.set(relative_ms(1), 5);
    kernel.advance(Duration::from_millis(16));
    unreachable!("the bug check inside the DPC stops the process");
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_bug_check_inside_an_inline_dpc_stops_the_process_with_the_bug_check() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inline_bug_check_inside_a_dpc_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the child stopped: {stderr}");
    assert!(
        stderr.contains("bug check 0xC7 (TIMER_OR_DPC_INVALID)")
            && stderr.contains("inside a driver callback running inline"),
        "the child said why: {stderr}"
    );
}

#[test]
#[cfg_attr(miri, ignore = "the halted processor thread never ends")]
fn threaded_a_bug_check_inside_a_dpc_halts_that_processor_and_the_test_sees_it() {
    let kernel = Kernel::new(common::threaded());
    let _bound = kernel.enter();
    let dpc = Dpc::with_hook(|_| {
        // SAFETY: a driver-raised bug check; no pointers.
        unsafe { ntddk::KeBugCheckEx(0xE2, 1, 2, 3, 4) };
    });
    dpc.insert(0, 0);
    let error = catch_bug_check(|| kernel.run_until_idle()).unwrap_err();
    assert_eq!((error.code, error.parameters), (0xE2, [1, 2, 3, 4]));
    // The halted processor's stack still refers to the probe.
    std::mem::forget(dpc);
}

#[test]
#[cfg_attr(miri, ignore = "real-time clock")]
fn the_real_time_clock_uses_processor_threads_even_when_inline_is_asked_for() {
    let kernel = Kernel::new(Config {
        execution: Execution::Inline,
        ..Config::real_time(Duration::from_millis(1))
    });
    let _bound = kernel.enter();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dpc = recording_dpc(&seen);
    let mut timer = KTIMER::default();
    let timer_ptr: *mut KTIMER = &raw mut timer;
    let dpc_ptr: *mut KDPC = dpc.ptr();
    // SAFETY: a live local KTIMER, cancelled and flushed before it goes.
    unsafe { ntddk::KeInitializeTimer(timer_ptr) };
    // SAFETY: as above; the DPC fixture outlives the flush.
    unsafe {
        ntddk::KeSetTimer(
            timer_ptr,
            LARGE_INTEGER {
                QuadPart: -common::MS,
            },
            dpc_ptr,
        )
    };
    while seen.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: as above.
    unsafe { ntddk::KeCancelTimer(timer_ptr) };
    flush();
    let seen = seen.lock().unwrap().clone();
    assert_ne!(
        seen[0].0,
        std::thread::current().id(),
        "ran on a processor thread"
    );
}
