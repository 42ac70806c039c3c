//! Timer semantics users meet: absolute due times when the system clock is changed, and a
//! re-arm while the previous arming's DPC is still queued (issue 11, items 1 and 2). Each
//! test is named after the behaviour it pins; all run on the default 15.625 ms tick.
#![cfg(not(windows))]

mod service_common;

use std::time::Duration;

use ktimer_abi::{SCHEDULE_ABSOLUTE, STATE_ARMED, STATE_EXPIRED, Schedule};
use service_common::*;

/// 100 ns units per second.
const SECOND: i64 = 1000 * MS;

fn absolute(schedule: Schedule) -> Schedule {
    Schedule {
        flags: SCHEDULE_ABSOLUTE,
        ..schedule
    }
}

#[test]
fn an_absolute_one_shot_expires_when_the_clock_is_moved_past_its_due_time() {
    let rig = Rig::new();
    let handle = rig.open();
    let system_now = rig.kernel.system_time();
    let due = system_now + 2 * SECOND;
    let id = create(&handle, absolute(schedule_once(due)));
    let wait = submit_wait(&handle, 1, 4);
    rig.kernel.set_system_time(system_now + 10 * SECOND);
    rig.advance_ms(16);
    let done = wait
        .result()
        .expect("the expiry completed the pending wait");
    let (_, records) = records_of(&done);
    assert_eq!(records.len(), 1);
    let record = records[0];
    assert_eq!((record.timer_id, record.sequence), (id, 1));
    // Lateness of an absolute timer is measured on the system clock: the clock read the
    // due time 8 s before the run (the jump), plus the wait for the tick.
    assert_eq!(record.fire_time, TICK);
    assert_eq!(record.lateness, 8 * SECOND + TICK);
    assert_eq!(record.due_time, record.fire_time - record.lateness);
    let state = query(&handle, id).unwrap();
    assert_eq!(
        (state.state, state.expirations, state.dpc_runs),
        (STATE_EXPIRED, 1, 1)
    );
    drop(handle);
    rig.finish();
}

#[test]
fn an_absolute_one_shot_is_not_reported_late_when_the_clock_is_moved_back() {
    let rig = Rig::new();
    let handle = rig.open();
    let system_now = rig.kernel.system_time();
    let id = create(&handle, absolute(schedule_once(system_now + 2 * SECOND)));
    rig.kernel.set_system_time(system_now - 10 * SECOND);
    // The clock now reads the due time 12 s of interrupt time from now, and query says so.
    assert_eq!(query(&handle, id).unwrap().due_time, 12 * SECOND);
    rig.kernel.advance(Duration::from_millis(11_990));
    assert_eq!(query(&handle, id).unwrap().state, STATE_ARMED);
    let wait = submit_wait(&handle, 1, 4);
    rig.advance_ms(20);
    let (_, records) = records_of(&wait.result().expect("expired"));
    assert_eq!(records.len(), 1);
    // 12 s is a whole number of ticks: it fires on time, not 10 s late.
    assert_eq!(records[0].fire_time, 12 * SECOND);
    assert_eq!(records[0].due_time, 12 * SECOND);
    assert_eq!(records[0].lateness, 0);
    drop(handle);
    rig.finish();
}

#[test]
fn an_absolute_periodic_timer_after_a_forward_clock_jump_is_never_reported_early() {
    let rig = Rig::new();
    // Uptime longer than the jump, so the due time stays after boot in interrupt time.
    rig.kernel.advance(Duration::from_secs(20));
    let handle = rig.open();
    let system_now = rig.kernel.system_time();
    let id = create(
        &handle,
        absolute(schedule_periodic(system_now + 100 * MS, 50)),
    );
    rig.kernel.set_system_time(system_now + 10 * SECOND);
    rig.kernel.advance(Duration::from_secs(1));
    let (_, records) = drain(&handle, 64);
    assert!(records.len() >= 19, "{} records", records.len());
    // The jump put the due time 9.9 s in the past: the kernel expires it once, at the next
    // tick, not once per skipped period; later periods are intervals on its grid.
    assert_eq!(records[0].sequence, 1, "{:?}", records[0]);
    assert_eq!(records[0].expirations, 1);
    for pair in records.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence + 1, "{pair:?}");
    }
    for record in &records {
        assert!(
            (0..=TICK).contains(&record.lateness),
            "lateness within one tick, never negative: {record:?}"
        );
    }
    let state = query(&handle, id).unwrap();
    assert_eq!(state.state, STATE_ARMED);
    assert!(state.lateness_min >= 0);
    drop(handle);
    rig.finish();
}

#[test]
fn a_dpc_queued_by_the_previous_arming_is_not_counted_for_a_re_arm() {
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_once(10 * MS));
    let wait = submit_wait(&handle, 1, 4);
    // The timer expires at the 15.625 ms tick; its DPC stays queued.
    rig.kernel
        .advance_without_running_dpcs(Duration::from_millis(16));
    assert!(wait.result().is_none());
    // Re-armed for 10 ms from now: not in the kernel's timer queue any more.
    assert_eq!(set(&handle, id, schedule_once(10 * MS)), Ok(false));
    // The previous arming's expiry was delivered, as that arming's, before the re-arm.
    let (_, records) = records_of(&wait.result().expect("the old arming's expiry"));
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].sequence,
            records[0].due_time,
            records[0].fire_time
        ),
        (1, 10 * MS, 16 * MS)
    );
    rig.kernel.run_until_idle();
    let state = query(&handle, id).unwrap();
    assert_eq!(
        (state.state, state.expirations, state.dpc_runs),
        (STATE_ARMED, 0, 0),
        "no stale run counted for the new arming"
    );
    // The new arming: due at 15.625 + 10 ms (dated from the last tick), expires at the
    // 31.25 ms tick.
    let wait = submit_wait(&handle, 1, 4);
    rig.advance_ms(10);
    assert!(wait.result().is_none(), "not before its own expiry");
    rig.advance_ms(10);
    let (_, records) = records_of(&wait.result().expect("the new arming's expiry"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].due_time, TICK + 10 * MS);
    assert_eq!(records[0].fire_time, 2 * TICK);
    assert!(records[0].lateness >= 0);
    let state = query(&handle, id).unwrap();
    assert_eq!((state.state, state.expirations), (STATE_EXPIRED, 1));
    drop(handle);
    rig.finish();
}

#[test]
fn a_dpc_queued_before_a_cancel_is_not_counted_for_a_later_re_arm() {
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(5 * MS, 5));
    rig.kernel
        .advance_without_running_dpcs(Duration::from_millis(16));
    assert_eq!(cancel(&handle, id), Ok(true));
    assert_eq!(set(&handle, id, schedule_once(100 * MS)), Ok(false));
    rig.kernel.run_until_idle();
    assert_eq!(
        handle.ready_records(),
        0,
        "the cancelled arming's run makes no record"
    );
    let state = query(&handle, id).unwrap();
    assert_eq!((state.state, state.dpc_runs), (STATE_ARMED, 0));
    drop(handle);
    rig.finish();
}
