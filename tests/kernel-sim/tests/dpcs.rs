//! KDPC rules: queued at most once, expirations coalesce, cancel does not wait, remove,
//! flush, processors and IRQL, re-queuing while running.

mod common;

use std::time::Duration;

use common::{Dpc, Gate, Probe, TICK, Timer, flush, relative_ms};
use kernel_sim::{Config, Event, Kernel};

fn ticks(n: u64) -> Duration {
    Duration::from_nanos(n * TICK * 100)
}

#[test]
fn dpc_object_is_queued_at_most_once_and_runs_once_per_queuing() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    assert!(dpc.insert(1, 2));
    assert!(!dpc.insert(3, 4), "already queued: FALSE, nothing changes");
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 1);
    assert_eq!(
        dpc.probe.log()[0].arguments,
        (1, 2),
        "arguments of the first queuing"
    );
    assert!(dpc.insert(5, 6), "after it ran it can be queued again");
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 2);
}

#[test]
fn periodic_expirations_coalesce_while_the_dpc_is_still_queued() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000, // 1 ms
        ..Config::default()
    });
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(relative_ms(5), 5, Some(&dpc));
    kernel.advance_without_running_dpcs(Duration::from_millis(20));
    let stats = kernel.stats();
    assert_eq!(stats.timer_expirations, 4);
    assert_eq!(stats.dpcs_queued, 1);
    assert_eq!(stats.dpcs_already_queued, 3);
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 1, "four expirations, one DPC run");
}

#[test]
fn cancel_timer_returns_false_for_a_one_shot_whose_dpc_is_queued_and_the_dpc_still_runs() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(relative_ms(1), 0, Some(&dpc));
    kernel.advance_without_running_dpcs(ticks(1));
    assert!(kernel.dpc_is_queued(dpc.ptr()));
    assert!(
        !timer.cancel(),
        "the expiry already took it out of the queue"
    );
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 1, "cancel did not remove the queued DPC");
}

#[test]
fn cancel_timer_returns_while_the_dpc_is_still_running() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let (timer, dpc) = (
        Timer::notification(),
        Dpc::with_hook(move |_| hook_gate.arrive_and_wait()),
    );
    timer.set(relative_ms(1), 20, Some(&dpc));
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let clock = scope.spawn(|| kernel.advance(ticks(1)));
        gate.wait_arrived(1);
        assert!(timer.cancel(), "periodic timer was set");
        assert_eq!(
            kernel.dpc_running(dpc.ptr()),
            1,
            "cancel returned; DPC still running"
        );
        gate.open();
        clock.join().unwrap();
    });
    assert_eq!(kernel.dpc_running(dpc.ptr()), 0);
    assert_eq!(dpc.runs(), 1);
}

#[test]
fn remove_queue_dpc_dequeues_a_queued_dpc_so_it_never_runs() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    assert!(!dpc.remove(), "not queued");
    dpc.insert(0, 0);
    assert!(dpc.remove());
    assert!(!dpc.remove());
    kernel.run_until_idle();
    assert_eq!(dpc.runs(), 0);
}

#[test]
fn remove_queue_dpc_does_not_stop_a_running_dpc() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let dpc = Dpc::with_hook(move |_| hook_gate.arrive_and_wait());
    dpc.insert(0, 0);
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let runner = scope.spawn(|| kernel.run_until_idle());
        gate.wait_arrived(1);
        assert!(!dpc.remove(), "running, not queued");
        gate.open();
        runner.join().unwrap();
    });
    assert_eq!(dpc.runs(), 1);
}

#[test]
fn flush_queued_dpcs_returns_after_every_dpc_queued_before_it_has_run() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpcs: Vec<Dpc> = (0..4).map(|_| Dpc::new()).collect();
    for dpc in &dpcs {
        dpc.insert(0, 0);
    }
    flush();
    assert!(dpcs.iter().all(|d| d.runs() == 1));
    assert_eq!(kernel.queued_dpcs(), 0);
}

#[test]
fn flush_queued_dpcs_does_not_wait_for_dpcs_queued_after_it_started() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let (early, late) = (
        Dpc::with_hook(move |_| hook_gate.arrive_and_wait()),
        Dpc::new(),
    );
    early.insert(0, 0);
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let flusher = scope.spawn(|| {
            let _bound = kernel.enter();
            flush();
            (late.runs(), kernel.dpc_is_queued(late.ptr()))
        });
        gate.wait_arrived(1); // the flush is under way: it made the early DPC run
        late.insert(0, 0);
        gate.open();
        assert_eq!(
            flusher.join().unwrap(),
            (0, true),
            "flush returned; late DPC still queued"
        );
    });
    kernel.run_until_idle();
    assert_eq!(late.runs(), 1);
}

#[test]
fn dpc_runs_at_dispatch_level_on_a_simulated_processor_inside_a_callback() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    dpc.insert(0, 0);
    kernel.run_until_idle();
    let run = dpc.probe.log()[0];
    assert_eq!(u32::from(run.irql), kernel_sim::DISPATCH_LEVEL);
    assert_eq!(run.cpu, Some(0));
    assert!(run.in_callback);
    assert!(
        !kernel_sim::in_callback(),
        "the test thread is not in a callback"
    );
    assert_eq!(kernel_sim::current_processor(), None);
    assert_eq!(
        run.dpc,
        dpc.ptr().addr(),
        "the routine receives its own KDPC"
    );
}

#[test]
fn timer_dpcs_are_queued_round_robin_over_the_processors() {
    let kernel = Kernel::new(Config {
        processors: 3,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let timers: Vec<Timer> = (0..4).map(|_| Timer::notification()).collect();
    let dpcs: Vec<Dpc> = (0..4).map(|_| Dpc::new()).collect();
    for (timer, dpc) in timers.iter().zip(&dpcs) {
        timer.set(relative_ms(10), 0, Some(dpc));
    }
    kernel.advance(ticks(1));
    let cpus: Vec<Option<usize>> = dpcs.iter().map(|d| d.probe.log()[0].cpu).collect();
    assert_eq!(
        cpus,
        vec![Some(0), Some(1), Some(2), Some(0)],
        "setting order, round-robin"
    );
}

#[test]
fn dpc_queued_from_a_dpc_runs_on_the_same_processor() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let inner = std::sync::Arc::new(Dpc::new());
    let inner_for_hook = inner.clone();
    let outer = Dpc::with_hook(move |_| {
        inner_for_hook.insert(0, 0);
    });
    outer.insert(0, 0); // round-robin: processor 0
    let other = Dpc::new();
    other.insert(0, 0); // processor 1
    let late = Dpc::new();
    late.insert(0, 0); // processor 0 again
    kernel.run_until_idle();
    assert_eq!(outer.probe.log()[0].cpu, Some(0));
    assert_eq!(inner.probe.log()[0].cpu, Some(0));
}

#[test]
fn timer_dpc_system_arguments_carry_the_expiry_system_time() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(relative_ms(1), 0, Some(&dpc));
    kernel.advance(ticks(1));
    let expected = kernel_sim::DEFAULT_BOOT_SYSTEM_TIME.cast_unsigned() + TICK;
    let (low, high) = dpc.probe.log()[0].arguments;
    assert_eq!(((high as u64) << 32) | low as u64, expected);
}

#[test]
fn periodic_dpc_is_queued_again_on_another_processor_while_still_running() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let (timer, dpc) = (
        Timer::notification(),
        Dpc::with_hook(move |_| hook_gate.arrive_and_wait()),
    );
    timer.set(due_ticks(1), 15, Some(&dpc)); // due 15.625 ms, then 30.625 ms (tick 2)
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let clock = scope.spawn(|| kernel.advance(ticks(1)));
        gate.wait_arrived(1);
        // The DPC is running on processor 0; the clock moves on without waiting for it.
        kernel.advance_without_running_dpcs(ticks(1));
        assert_eq!(kernel.dpc_running(dpc.ptr()), 1);
        assert!(
            kernel.dpc_is_queued(dpc.ptr()),
            "queued again while still running"
        );
        gate.open();
        clock.join().unwrap();
    });
    let cpus: Vec<Option<usize>> = dpc.probe.log().iter().map(|r| r.cpu).collect();
    assert_eq!(cpus, vec![Some(0), Some(1)]);
    assert!(timer.cancel());
}

#[test]
fn with_parallel_dpcs_a_periodic_dpc_runs_on_two_processors_at_once() {
    // Two runs at once need two processor threads.
    let kernel = Kernel::new(Config {
        parallel_dpcs: true,
        ..common::threaded()
    });
    let _bound = kernel.enter();
    let gate = Gate::new();
    let hook_gate = gate.clone();
    let (timer, dpc) = (
        Timer::notification(),
        Dpc::with_hook(move |_| hook_gate.arrive_and_wait()),
    );
    timer.set(due_ticks(1), 15, Some(&dpc));
    std::thread::scope(|scope| {
        let _open_on_exit = gate.opener();
        let clock = scope.spawn(|| kernel.advance(ticks(1)));
        gate.wait_arrived(1);
        kernel.advance_without_running_dpcs(ticks(1));
        gate.wait_arrived(2); // the second queuing started on processor 1
        assert_eq!(kernel.dpc_running(dpc.ptr()), 2);
        gate.open();
        clock.join().unwrap();
    });
    assert!(timer.cancel());
    assert_eq!(dpc.runs(), 2);
}

#[test]
fn the_same_test_produces_the_same_trace() {
    fn scenario() -> Vec<kernel_sim::TraceEvent> {
        let kernel = Kernel::new(Config::default());
        let _bound = kernel.enter();
        let timers: Vec<Timer> = (0..3).map(|_| Timer::notification()).collect();
        let dpcs: Vec<Dpc> = (0..3).map(|_| Dpc::new()).collect();
        timers[0].set(relative_ms(10), 10, Some(&dpcs[0]));
        timers[1].set(relative_ms(40), 0, Some(&dpcs[1]));
        timers[2].set(relative_ms(25), 7, Some(&dpcs[2]));
        dpcs[1].insert(0, 0);
        kernel.advance(Duration::from_millis(100));
        timers[0].cancel();
        timers[2].cancel();
        kernel.take_trace()
    }
    let first = scenario();
    assert!(
        first
            .iter()
            .any(|e| matches!(e.event, Event::DpcStarted { .. }))
    );
    for _ in 0..3 {
        assert_eq!(scenario(), first);
    }
}

#[test]
fn kernels_in_parallel_threads_share_no_state() {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=4_u32)
            .map(|n| {
                scope.spawn(move || {
                    let kernel = Kernel::new(Config::default());
                    let _bound = kernel.enter();
                    let (timer, probe) = (Timer::notification(), Probe::new());
                    let dpc = Dpc::with_probe(probe);
                    timer.set(relative_ms(1), 10 * i32::try_from(n).unwrap(), Some(&dpc));
                    kernel.advance(Duration::from_secs(1));
                    dpc.runs()
                })
            })
            .collect();
        let runs: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Due at 1 ms + k * period (10/20/30/40 ms) within one second: 100/50/34/25 due
        // times; with 10 ms, the 64 ticks each catch one or two of them (coalesced).
        assert_eq!(runs, vec![64, 50, 34, 25]);
    });
}

fn due_ticks(n: i64) -> kernel_sim::LARGE_INTEGER {
    common::due(-n * TICK.cast_signed())
}
