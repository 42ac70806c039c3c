//! KTIMER rules: due times, periods, tick granularity, signaled state, set/cancel results.

mod common;

use std::time::Duration;

use common::{Dpc, MS, TICK, Timer, due, relative_ms};
use kernel_sim::{Config, Kernel, STATUS_SUCCESS, STATUS_TIMEOUT};

fn ticks(n: u64) -> Duration {
    Duration::from_nanos(n * TICK * 100)
}

#[test]
fn one_shot_relative_timer_queues_its_dpc_once_on_the_first_tick_at_or_after_due() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    assert!(!timer.set(relative_ms(20), 0, Some(&dpc)));
    kernel.advance(ticks(1));
    assert_eq!(dpc.runs(), 0, "20 ms is not due at the 15.625 ms tick");
    kernel.advance(ticks(1));
    assert_eq!(dpc.runs(), 1);
    assert_eq!(
        dpc.probe.log()[0].at,
        2 * TICK,
        "expires on the 31.25 ms tick"
    );
    kernel.advance(ticks(10));
    assert_eq!(dpc.runs(), 1, "a one-shot timer expires once");
    assert!(!kernel.timer_is_set(timer.ptr()));
    assert!(timer.signaled());
}

#[test]
fn relative_due_time_of_exactly_one_tick_expires_on_the_next_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    timer.set(due(-TICK.cast_signed()), 0, Some(&dpc));
    kernel.advance(ticks(1));
    assert_eq!(dpc.runs(), 1);
    assert_eq!(dpc.probe.log()[0].at, TICK);
}

#[test]
fn zero_due_time_expires_at_the_next_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    kernel.advance(ticks(3));
    timer.init();
    timer.set(due(0), 0, Some(&dpc));
    assert_eq!(dpc.runs(), 0, "never inside KeSetTimerEx");
    kernel.advance(ticks(1));
    assert_eq!(dpc.runs(), 1);
    assert_eq!(dpc.probe.log()[0].at, 4 * TICK);
}

#[test]
fn absolute_due_time_in_the_past_expires_at_the_next_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    let past = kernel.system_time() - 1000 * MS;
    timer.set(due(past), 0, Some(&dpc));
    kernel.advance(ticks(1));
    assert_eq!(dpc.runs(), 1);
    assert_eq!(dpc.probe.log()[0].at, TICK);
}

#[test]
fn absolute_due_time_follows_a_system_clock_change_but_relative_does_not() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (absolute, relative) = (Timer::new(), Timer::new());
    let (absolute_dpc, relative_dpc) = (Dpc::new(), Dpc::new());
    absolute.init();
    relative.init();
    let in_one_second = kernel.system_time() + 1000 * MS;
    absolute.set(due(in_one_second), 0, Some(&absolute_dpc));
    relative.set(relative_ms(1000), 0, Some(&relative_dpc));
    // Move the wall clock forward by 2 s: the absolute timer is now in the past.
    kernel.set_system_time(kernel.system_time() + 2000 * MS);
    kernel.advance(ticks(1));
    assert_eq!(absolute_dpc.runs(), 1, "absolute timer follows the clock");
    assert_eq!(relative_dpc.runs(), 0, "relative timer is unaffected");
    kernel.advance(Duration::from_secs(1));
    assert_eq!(relative_dpc.runs(), 1);
}

#[test]
fn periodic_timer_rearms_from_its_due_time_without_drift() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000, // 1 ms ticks make every 10 ms due time land on a tick
        ..Config::default()
    });
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    timer.set(relative_ms(10), 10, Some(&dpc));
    kernel.advance(Duration::from_secs(1));
    assert_eq!(dpc.runs(), 100);
    let expiry_times: Vec<u64> = dpc.probe.log().iter().map(|r| r.at).collect();
    let expected: Vec<u64> = (1..=100).map(|k| k * 10 * 10_000).collect();
    assert_eq!(expiry_times, expected);
    assert!(
        kernel.timer_is_set(timer.ptr()),
        "a periodic timer stays in the queue"
    );
}

#[test]
fn periodic_timer_with_a_period_that_is_not_a_tick_multiple_keeps_its_average_rate() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    // 10 ms period on a 15.625 ms tick: due times 10, 20, 30, ... ms; each expires on the
    // first tick at or after it, and a tick that covers two due times expires once.
    timer.set(relative_ms(10), 10, Some(&dpc));
    kernel.advance(Duration::from_secs(1));
    // Ticks at 15.625k ms, k = 1..=64. Due times 10j, j = 1..=100. Tick k catches every due
    // time in (15.625(k-1), 15.625k]; all 64 ticks catch at least one.
    assert_eq!(dpc.runs(), 64);
    assert_eq!(kernel.stats().timer_expirations, 64);
}

#[test]
fn set_timer_returns_whether_it_was_already_set_and_replaces_the_old_setting() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, first, second) = (Timer::new(), Dpc::new(), Dpc::new());
    timer.init();
    assert!(!timer.set(relative_ms(100), 0, Some(&first)));
    assert!(timer.set(relative_ms(20), 0, Some(&second)));
    kernel.advance(Duration::from_millis(200));
    assert_eq!(first.runs(), 0, "the old DPC association is gone");
    assert_eq!(second.runs(), 1);
    assert!(
        !timer.set(relative_ms(20), 0, None),
        "expired one-shot is not set"
    );
}

#[test]
fn set_timer_resets_the_signaled_state() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    timer.init();
    timer.set(relative_ms(1), 0, None);
    kernel.advance(ticks(1));
    assert!(timer.signaled());
    timer.set(relative_ms(100), 0, None);
    assert!(!timer.signaled());
}

#[test]
fn cancel_timer_returns_true_only_while_the_timer_is_set() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (one_shot, periodic, dpc) = (Timer::new(), Timer::new(), Dpc::new());
    one_shot.init();
    periodic.init();
    assert!(!one_shot.cancel(), "never set");
    one_shot.set(relative_ms(100), 0, None);
    assert!(one_shot.cancel());
    assert!(!one_shot.cancel(), "already cancelled");
    one_shot.set(relative_ms(1), 0, None);
    kernel.advance(ticks(1));
    assert!(!one_shot.cancel(), "expired one-shot has left the queue");
    periodic.set(relative_ms(1), 5, Some(&dpc));
    kernel.advance(ticks(3));
    assert!(periodic.cancel(), "a periodic timer is set until cancelled");
    let runs = dpc.runs();
    kernel.advance(ticks(3));
    assert_eq!(dpc.runs(), runs, "no expiry after cancel");
}

#[test]
fn timer_is_tick_granular_so_a_sub_tick_due_time_fires_up_to_one_tick_late() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    timer.set(relative_ms(1), 0, Some(&dpc));
    kernel.advance(Duration::from_millis(15));
    assert_eq!(dpc.runs(), 0, "no tick yet at 15 ms");
    kernel.advance(Duration::from_micros(625));
    assert_eq!(dpc.runs(), 1);
    assert_eq!(dpc.probe.log()[0].at, TICK);
}

#[test]
fn notification_timer_releases_every_waiter_and_stays_signaled() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    timer.init();
    timer.set(relative_ms(30), 0, None);
    std::thread::scope(|scope| {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let _bound = kernel.enter();
                    timer.wait(None)
                })
            })
            .collect();
        while kernel.waiting_threads() < 3 {
            std::thread::yield_now();
        }
        kernel.advance(ticks(2));
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), STATUS_SUCCESS);
        }
    });
    assert!(timer.signaled(), "a notification timer stays signaled");
    assert_eq!(timer.wait(Some(0)), STATUS_SUCCESS);
}

#[test]
fn synchronization_timer_releases_one_waiter_and_resets() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    timer.init_ex(kernel_sim::_TIMER_TYPE::SynchronizationTimer);
    timer.set(relative_ms(30), 0, None);
    std::thread::scope(|scope| {
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let _bound = kernel.enter();
                    timer.wait(Some(-100 * MS))
                })
            })
            .collect();
        while kernel.waiting_threads() < 2 {
            std::thread::yield_now();
        }
        kernel.advance(ticks(2));
        assert_eq!(kernel.waiting_threads(), 1, "exactly one waiter released");
        assert!(!timer.signaled(), "reset after releasing a waiter");
        kernel.advance(Duration::from_millis(200));
        let mut results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        results.sort_unstable();
        assert_eq!(results, vec![STATUS_SUCCESS, STATUS_TIMEOUT]);
    });
}

#[test]
fn synchronization_timer_without_waiters_stays_signaled_until_one_wait_consumes_it() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let timer = Timer::new();
    timer.init_ex(kernel_sim::_TIMER_TYPE::SynchronizationTimer);
    timer.set(relative_ms(1), 0, None);
    kernel.advance(ticks(1));
    assert!(timer.signaled());
    assert_eq!(timer.wait(Some(0)), STATUS_SUCCESS);
    assert!(!timer.signaled());
    assert_eq!(timer.wait(Some(0)), STATUS_TIMEOUT);
}

#[test]
fn absolute_periodic_timer_after_a_year_long_clock_jump_expires_once_per_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(due(kernel.system_time() + 10 * MS), 1, Some(&dpc));
    kernel.set_system_time(kernel.system_time() + 365 * 24 * 3600 * 1000 * MS);
    kernel.advance(ticks(2));
    assert_eq!(
        dpc.runs(),
        2,
        "all missed periods coalesce; one expiry per tick"
    );
    assert!(timer.cancel());
}

#[test]
fn absolute_periodic_timer_later_periods_are_intervals_that_ignore_clock_changes() {
    let kernel = Kernel::new(Config {
        time_increment: 10_000, // 1 ms ticks
        ..Config::default()
    });
    let _bound = kernel.enter();
    let (timer, dpc) = (Timer::notification(), Dpc::new());
    timer.set(due(kernel.system_time() + 10 * MS), 10, Some(&dpc));
    kernel.advance(Duration::from_millis(10));
    assert_eq!(
        dpc.runs(),
        1,
        "the first expiry is when the system clock reads the due time"
    );
    // After the first expiry the period is an interval: moving the clock does not move it.
    kernel.set_system_time(kernel.system_time() + 1000 * MS);
    kernel.advance(Duration::from_millis(9));
    assert_eq!(dpc.runs(), 1, "not due before one period of interrupt time");
    kernel.advance(Duration::from_millis(1));
    assert_eq!(dpc.runs(), 2);
    kernel.set_system_time(kernel.system_time() - 5000 * MS);
    kernel.advance(Duration::from_millis(10));
    assert_eq!(
        dpc.runs(),
        3,
        "moving the clock back does not delay it either"
    );
    let at: Vec<u64> = dpc.probe.log().iter().map(|r| r.at).collect();
    assert_eq!(at, [100_000, 200_000, 300_000]);
    assert!(timer.cancel());
}

#[test]
fn a_relative_due_time_counts_from_the_last_tick_so_it_may_fire_up_to_a_tick_early() {
    // Set 10 ms after a tick with a 10 ms delay: due at tick + 10 ms (not at 20 ms after the
    // tick), so it expires on the next tick, 5.625 ms before "set time + delay".
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.advance(Duration::from_millis(10)); // last tick 0, now 10 ms
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    timer.set(relative_ms(10), 0, Some(&dpc));
    kernel.advance(Duration::from_millis(10)); // now 20 ms, the 15.625 ms tick passed
    assert_eq!(dpc.runs(), 1);
    assert_eq!(dpc.probe.log()[0].at, TICK);
    assert!(
        dpc.probe.log()[0].at < 200_000,
        "earlier than set time + delay"
    );
}

#[test]
fn the_expiry_log_has_one_expiry_per_tick_for_a_period_shorter_than_the_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.record_expiries(true);
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    let id = kernel.last_timer_initialized().expect("initialised");
    timer.set(relative_ms(1), 1, Some(&dpc));
    kernel.advance(ticks(3));
    let log = kernel.take_expiries();
    assert_eq!(
        log.iter()
            .map(|e| (e.timer, e.at, e.due))
            .collect::<Vec<_>>(),
        vec![
            (id, TICK, 150_000),     // due 1..15 ms: the latest is 15 ms
            (id, 2 * TICK, 310_000), // 16..31 ms
            (id, 3 * TICK, 460_000), // 32..46 ms
        ]
    );
    assert_eq!(dpc.runs(), 3, "one DPC run per expiry");
    assert!(kernel.take_expiries().is_empty(), "taken");
    timer.cancel();
}

#[test]
fn the_expiry_log_dates_a_past_absolute_periodic_due_time_once_at_the_next_tick() {
    let kernel = Kernel::new(Config::default());
    let _bound = kernel.enter();
    kernel.record_expiries(true);
    let (timer, dpc) = (Timer::new(), Dpc::new());
    timer.init();
    let hour_ago = kernel.system_time() - 36_000_000_000;
    timer.set(due(hour_ago), 7, Some(&dpc));
    kernel.advance(ticks(1));
    let log = kernel.take_expiries();
    assert_eq!(
        log.len(),
        1,
        "one expiry at the next tick, not one per period"
    );
    assert_eq!(log[0].at, TICK);
    let tick = i64::try_from(TICK).unwrap();
    assert!(
        log[0].due <= tick && tick - log[0].due < 70_000,
        "latest due on the grid"
    );
    timer.cancel();
}
