//! Time queries, coalescable timers, wait timeouts in virtual time, and the real-time clock.

mod common;

use std::time::{Duration, Instant};

use common::{Dpc, MS, TICK, Timer, due, relative_ms};
use kernel_sim::{
    Config, DEFAULT_BOOT_SYSTEM_TIME, Event, Kernel, LARGE_INTEGER, STATUS_SUCCESS, STATUS_TIMEOUT,
    ntddk,
};

#[test]
fn time_queries_follow_the_virtual_clock() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    // SAFETY: no pointers.
    assert_eq!(unsafe { ntddk::KeQueryTimeIncrement() }, 156_250);
    kernel.advance(Duration::from_millis(40));
    // SAFETY: no pointers.
    let interrupt_time = unsafe { ntddk::KeQueryInterruptTime() };
    assert_eq!(interrupt_time, 2 * TICK, "updated on ticks only");
    let mut qpc = 0;
    // SAFETY: `qpc` is a live local.
    let precise = unsafe { ntddk::KeQueryInterruptTimePrecise(&raw mut qpc) };
    assert_eq!((precise, qpc), (400_000, 400_000));
    let mut system = LARGE_INTEGER::default();
    // SAFETY: `system` is a live local.
    unsafe { ntddk::KeQuerySystemTimePrecise(&raw mut system) };
    // SAFETY: plain integer view.
    let system = unsafe { system.QuadPart };
    assert_eq!(system, DEFAULT_BOOT_SYSTEM_TIME + 400_000);
    let mut frequency = LARGE_INTEGER::default();
    // SAFETY: `frequency` is a live local.
    let counter = unsafe { ntddk::KeQueryPerformanceCounter(&raw mut frequency) };
    // SAFETY: plain integer view.
    let counter = unsafe { counter.QuadPart };
    // SAFETY: plain integer view.
    let frequency = unsafe { frequency.QuadPart };
    assert_eq!((counter, frequency), (400_000, 10_000_000));
    assert_eq!(kernel.ticks(), 2);
}

#[test]
fn time_increment_is_configurable() {
    let kernel = Kernel::new(Config {
        time_increment: 5_000,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(due(-7_000), 0, Some(&dpc));
    kernel.advance(Duration::from_millis(2));
    assert_eq!(
        dpc.probe.log()[0].at,
        10_000,
        "first 0.5 ms tick at or after 0.7 ms"
    );
}

#[test]
fn coalescable_timer_expiry_is_rounded_up_to_the_largest_boundary_within_the_tolerable_delay() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000, // 1 ms ticks
        ..Config::default()
    });
    let _bound = kernel.enter();
    let timers: Vec<Timer> = (0..4).map(|_| Timer::notification()).collect();
    let dpcs: Vec<Dpc> = (0..4).map(|_| Dpc::new()).collect();
    timers[0].set_coalescable(relative_ms(130), 0, 100, Some(&dpcs[0])); // 100 ms grid
    timers[1].set_coalescable(relative_ms(180), 0, 100, Some(&dpcs[1])); // same batch
    timers[2].set_coalescable(relative_ms(130), 0, 60, Some(&dpcs[2])); // 50 ms grid
    timers[3].set_coalescable(relative_ms(130), 0, 10, Some(&dpcs[3])); // no coalescing
    kernel.advance(Duration::from_millis(300));
    let at: Vec<u64> = dpcs.iter().map(|d| d.probe.log()[0].at).collect();
    assert_eq!(
        at,
        vec![200 * 10_000, 200 * 10_000, 150 * 10_000, 130 * 10_000]
    );
}

#[test]
fn coalescable_periodic_timer_keeps_its_period_on_the_grid() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000,
        ..Config::default()
    });
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set_coalescable(relative_ms(30), 100, 50, Some(&dpc));
    kernel.advance(Duration::from_millis(400));
    let at: Vec<u64> = dpc.probe.log().iter().map(|r| r.at / 10_000).collect();
    assert_eq!(
        at,
        vec![50, 150, 250, 350],
        "30 + 100k ms, each delayed to the 50 ms grid"
    );
}

#[test]
fn wait_timeout_is_measured_in_virtual_time_and_ends_on_a_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let _bound = kernel.enter();
            timer.wait(Some(-20 * MS))
        });
        while kernel.waiting_threads() < 1 {
            std::thread::yield_now();
        }
        kernel.advance(Duration::from_millis(100));
        assert_eq!(waiter.join().unwrap(), STATUS_TIMEOUT);
    });
    let timed_out: Vec<u64> = kernel
        .trace()
        .iter()
        .filter(|e| matches!(e.event, Event::WaitTimedOut { .. }))
        .map(|e| e.at)
        .collect();
    assert_eq!(timed_out, vec![2 * TICK], "20 ms ends on the 31.25 ms tick");
}

#[test]
fn wait_with_an_absolute_timeout_follows_the_system_clock() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    let deadline = kernel.system_time() + 1000 * MS;
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let _bound = kernel.enter();
            timer.wait(Some(deadline))
        });
        while kernel.waiting_threads() < 1 {
            std::thread::yield_now();
        }
        kernel.set_system_time(deadline);
        kernel.advance(Duration::from_millis(16));
        assert_eq!(waiter.join().unwrap(), STATUS_TIMEOUT);
    });
}

#[test]
fn wait_returns_success_when_the_timer_expires_before_the_timeout() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::notification();
    timer.set(relative_ms(10), 0, None);
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let _bound = kernel.enter();
            timer.wait(Some(-500 * MS))
        });
        while kernel.waiting_threads() < 1 {
            std::thread::yield_now();
        }
        kernel.advance(Duration::from_millis(20));
        assert_eq!(waiter.join().unwrap(), STATUS_SUCCESS);
    });
}

#[test]
#[cfg_attr(miri, ignore = "wall-clock thread; covered by the virtual-clock tests")]
fn real_time_clock_expires_a_periodic_timer_on_wall_clock_ticks() {
    let kernel = Kernel::new(Config::real_time(Duration::from_millis(1)));
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(relative_ms(2), 2, Some(&dpc));
    // Progress check, not a timing assertion: wait (generously) until ten runs happened.
    let give_up = Instant::now() + Duration::from_secs(30);
    while dpc.runs() < 10 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(timer.cancel());
    common::flush();
    let runs = dpc.probe.log();
    assert!(runs.len() >= 10);
    assert!(
        runs.windows(2).all(|w| w[0].at < w[1].at),
        "interrupt time moves forward"
    );
    assert!(
        runs.iter().all(|r| r.at % 10_000 == 0),
        "expiry on 1 ms ticks"
    );
    assert_eq!(kernel.unload(), Ok(()));
}

#[test]
#[cfg_attr(miri, ignore = "wall-clock thread; covered by the virtual-clock tests")]
fn real_time_clock_runs_a_queued_dpc_without_any_advance() {
    let kernel = Kernel::new(Config::real_time(Duration::from_millis(1)));
    let _bound = kernel.enter();
    let dpc = Dpc::new();
    dpc.insert(0, 0);
    common::flush();
    assert_eq!(dpc.runs(), 1);
}

#[test]
#[should_panic(expected = "virtual clock")]
fn advance_is_refused_on_a_real_time_kernel() {
    let kernel = Kernel::new(Config::real_time(Duration::from_millis(1)));
    kernel.advance(Duration::from_millis(1));
}
