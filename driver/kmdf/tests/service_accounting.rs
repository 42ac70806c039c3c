//! Timer accounting at the edges (issue 19): a late DPC run, a clock change between the
//! kernel's expiry and the first DPC run, absolute due times in the past, a relative arming
//! between ticks and a cancel between a one-shot's expiry and its DPC run. Every test runs
//! through `DriverEntry` on kernel-sim's KMDF model and checks the driver's counts against
//! the simulated kernel's own expiries (`Kernel::record_expiries`).
#![cfg(not(windows))]

mod service_common;

use std::time::Duration;

use kernel_sim::ObjectId;
use ktimer_abi::{
    EXPIRATIONS_SATURATED, ExpiryRecord, SCHEDULE_ABSOLUTE, STATE_ARMED, STATE_CANCELLED, Schedule,
};
use service_common::*;

const SECOND: i64 = 1000 * MS;

fn absolute(schedule: Schedule) -> Schedule {
    Schedule {
        flags: SCHEDULE_ABSOLUTE,
        ..schedule
    }
}

fn advance_to(rig: &Rig, at: i64, run_dpcs: bool) {
    let now = i64::try_from(rig.kernel.interrupt_time_precise()).unwrap();
    let by = Duration::from_nanos(u64::try_from((at - now) * 100).unwrap());
    if run_dpcs {
        rig.kernel.advance(by);
    } else {
        rig.kernel.advance_without_running_dpcs(by);
    }
}

/// Creates a timer and returns its id with the kernel's name for its KTIMER.
fn create_tracked(rig: &Rig, handle: &Handle, schedule: Schedule) -> (u64, ObjectId) {
    let id = create(handle, schedule);
    (id, rig.kernel.last_timer_initialized().unwrap())
}

fn kernel_expiries(rig: &Rig, timer: ObjectId) -> u64 {
    rig.kernel
        .take_expiries()
        .iter()
        .filter(|expiry| expiry.timer == timer)
        .count() as u64
}

#[test]
fn a_late_dpc_run_counts_only_the_expirations_the_kernel_produced() {
    // Issue 19, defect 0: tick 15.625 ms, period 18 ms, first due 18 ms.
    let rig = Rig::new();
    rig.kernel.record_expiries(true);
    let handle = rig.open();
    let (id, ktimer) = create_tracked(&rig, &handle, schedule_periodic(18 * MS, 18));
    let other = create(&handle, schedule_once(SECOND));
    // The kernel expires due 18 ms at the 31.25 ms tick; the DPC stays queued to 40 ms.
    advance_to(&rig, 2 * TICK, false);
    advance_to(&rig, 40 * MS, false);
    // A set on another timer flushes the DPCs: this one runs late, at 40 ms.
    assert_eq!(set(&handle, other, schedule_once(SECOND)), Ok(true));
    advance_to(&rig, 3 * TICK, true);
    let (_, records) = drain(&handle, 16);
    let got: Vec<(u64, i64, u32)> = records
        .iter()
        .map(|r| (r.sequence, r.due_time, r.expirations))
        .collect();
    assert_eq!(got, vec![(1, 18 * MS, 1), (2, 36 * MS, 1)]);
    assert!(records.iter().all(|r| r.lateness >= 0), "{records:?}");
    // At 1,046.875 ms the kernel has expired it 58 times; the driver says the same.
    advance_to(&rig, 67 * TICK, true);
    let state = query(&handle, id).unwrap();
    assert_eq!(state.expirations, 58);
    assert_eq!(kernel_expiries(&rig, ktimer), 58);
    let (_, records) = drain(&handle, 128);
    assert!(records.iter().all(|r| r.lateness >= 0));
    drop(handle);
    rig.finish();
}

fn clock_moved_in_the_window(moved: i64, periodic: bool) -> (Vec<ExpiryRecord>, u64) {
    let rig = Rig::new();
    rig.kernel.record_expiries(true);
    let handle = rig.open();
    let system_now = rig.kernel.system_time();
    let schedule = if periodic {
        schedule_periodic(system_now + SECOND, 100)
    } else {
        schedule_once(system_now + SECOND)
    };
    let (id, ktimer) = create_tracked(&rig, &handle, absolute(schedule));
    // The kernel expires it at the first tick at or after 1 s; its DPC stays queued.
    advance_to(&rig, 65 * TICK, false);
    assert_eq!(kernel_expiries(&rig, ktimer), 1);
    rig.kernel.set_system_time(rig.kernel.system_time() + moved);
    advance_to(&rig, 65 * TICK + 1, true);
    advance_to(&rig, 2 * SECOND, true);
    let kernel = 1 + kernel_expiries(&rig, ktimer);
    let (_, records) = drain(&handle, 64);
    let counted = query(&handle, id).unwrap().expirations;
    assert!(counted <= kernel, "{counted} counted, {kernel} expired");
    drop(handle);
    rig.finish();
    (records, kernel)
}

#[test]
fn a_clock_change_between_expiry_and_first_run_neither_invents_expirations_nor_dates_early() {
    // Issue 19, defect 1: back 10 s, forward 10 s; one-shot and periodic 100 ms.
    for moved in [-10 * SECOND, 10 * SECOND] {
        let (records, _) = clock_moved_in_the_window(moved, false);
        assert_eq!(records.len(), 1);
        assert_eq!(
            (
                records[0].sequence,
                records[0].due_time,
                records[0].lateness
            ),
            (1, SECOND, 65 * TICK - SECOND),
            "moved {moved}"
        );
        let (records, kernel) = clock_moved_in_the_window(moved, true);
        assert_eq!((records[0].sequence, records[0].expirations), (1, 1));
        assert_eq!(records[0].due_time, SECOND, "moved {moved}");
        let last = records.last().unwrap();
        assert!(last.sequence <= kernel, "{last:?}, kernel {kernel}");
        assert!(
            records.iter().all(|r| (0..=TICK).contains(&r.lateness)),
            "moved {moved}: {records:?}"
        );
    }
}

#[test]
fn a_past_absolute_periodic_due_time_is_one_expiration_at_the_next_tick() {
    // Issue 19, defect 2: due 1 h ago with a 7 ms period; due at 100 ns after 1601 with 1 ms.
    for (ago, period) in [(None, 7), (Some(1), 1)] {
        let rig = Rig::new();
        rig.kernel.record_expiries(true);
        let handle = rig.open();
        let system_now = rig.kernel.system_time();
        let due = ago.unwrap_or(system_now - 3_600 * SECOND);
        let (id, ktimer) = create_tracked(&rig, &handle, absolute(schedule_periodic(due, period)));
        rig.advance_ms(16);
        let (_, records) = drain(&handle, 16);
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].sequence, records[0].expirations), (1, 1));
        assert_ne!(records[0].expirations, EXPIRATIONS_SATURATED);
        assert!((0..=TICK).contains(&records[0].lateness), "{records:?}");
        let state = query(&handle, id).unwrap();
        assert_eq!(state.expirations, 1);
        assert_eq!(kernel_expiries(&rig, ktimer), 1);
        drop(handle);
        rig.finish();
    }
}

#[test]
fn a_relative_arming_between_ticks_is_due_from_the_last_tick() {
    // Armed 10 ms after the tick at 0 with a 10 ms delay: due 10 ms (the last tick plus the
    // delay), as the kernel counts it, so it fires on the 15.625 ms tick, 5.625 ms late.
    let rig = Rig::new();
    let handle = rig.open();
    rig.kernel.advance(Duration::from_millis(10));
    let id = create(&handle, schedule_once(10 * MS));
    assert_eq!(query(&handle, id).unwrap().due_time, 10 * MS);
    rig.advance_ms(10);
    let (_, records) = drain(&handle, 4);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].due_time,
            records[0].fire_time,
            records[0].lateness
        ),
        (10 * MS, TICK, TICK - 10 * MS)
    );
    drop(handle);
    rig.finish();
}

#[test]
fn cancel_between_a_one_shots_expiry_and_its_dpc_run_cancels_it_without_a_record() {
    // The kernel expired it (signaled, out of the timer queue) but its DPC has not run: the
    // cancel is too late for the kernel (was_armed 0) and in time for the driver, which
    // ignores the queued run: CANCELLED, 0 expirations, no record.
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_once(10 * MS));
    rig.kernel
        .advance_without_running_dpcs(Duration::from_millis(16));
    assert_eq!(cancel(&handle, id), Ok(false));
    rig.advance_ms(1);
    let state = query(&handle, id).unwrap();
    assert_eq!(
        (
            state.state,
            state.signaled,
            state.expirations,
            state.dpc_runs
        ),
        (STATE_CANCELLED, 1, 0, 0)
    );
    assert_eq!(handle.ready_records(), 0);
    // A re-arm after that starts afresh.
    assert_eq!(set(&handle, id, schedule_once(0)), Ok(false));
    assert_eq!(query(&handle, id).unwrap().state, STATE_ARMED);
    drop(handle);
    rig.finish();
}
