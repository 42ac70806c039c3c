//! Timer semantics users meet: a re-arm while the previous arming's DPC is still queued
//! (issue 11, item 2). Each test is named after the behaviour it pins; all run on the
//! default 15.625 ms tick.
#![cfg(ktimer_seam = "sim")]

mod service_common;

use std::time::Duration;

use ktimer_abi::{STATE_ARMED, STATE_EXPIRED};
use service_common::*;

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
