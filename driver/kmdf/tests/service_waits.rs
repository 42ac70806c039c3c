//! Waits: completed from the expiry path, batched, overrun, cancelled (`CancelIoEx`), and
//! completed by handle close and unload.
#![cfg(not(windows))]

mod service_common;

use service_common::*;
use std::time::Duration;

use kernel_sim::Config;
use ktimer_abi::status::{STATUS_CANCELLED, STATUS_SUCCESS};
use ktimer_service::ServiceConfig;

#[test]
fn a_pending_wait_is_completed_by_the_expiry() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_once(5 * MS));
    let wait = submit_wait(&handle, 1, 8);
    assert_eq!(wait.result(), None, "nothing ready: pended");
    assert_eq!(handle.pending_waits(), 1);
    rig.advance_ms(4);
    assert_eq!(wait.result(), None);
    rig.advance_ms(1);
    let (response, records) = records_of(&wait.result().expect("the DPC completed it"));
    assert_eq!((response.record_count, response.overruns), (1, 0));
    assert_eq!((records[0].timer_id, records[0].fire_time), (id, 5 * MS));
    assert_eq!((handle.pending_waits(), handle.ready_records()), (0, 0));
    drop(handle);
    rig.finish();
}

#[test]
fn a_wait_for_several_records_completes_with_all_of_them_at_once() {
    let rig = Rig::fine();
    let handle = rig.open();
    let ids: Vec<u64> = (1..=3)
        .map(|ms| create(&handle, schedule_once(ms * MS)))
        .collect();
    let wait = submit_wait(&handle, 3, 16);
    rig.advance_ms(2);
    assert_eq!(wait.result(), None, "two of three ready");
    assert_eq!(handle.ready_records(), 2);
    rig.advance_ms(1);
    let (_, records) = records_of(&wait.result().unwrap());
    assert_eq!(records.iter().map(|r| r.timer_id).collect::<Vec<_>>(), ids);
    drop(handle);
    rig.finish();
}

#[test]
fn a_wait_returns_as_many_records_as_fit_and_the_rest_stay_ready() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(MS, 1));
    rig.advance_ms(10);
    let (_, first) = drain(&handle, 4);
    assert_eq!(
        first.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let (_, rest) = drain(&handle, 64);
    assert_eq!(
        rest.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
    assert!(rest.iter().all(|r| r.timer_id == id));
    drop(handle);
    rig.finish();
}

#[test]
fn a_full_ring_counts_overruns_and_reports_them_once() {
    let rig = Rig::with(
        Config {
            time_increment: 10_000,
            ..Config::default()
        },
        ServiceConfig {
            event_ring_capacity: 4,
            ..ServiceConfig::default()
        },
    );
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(MS, 1));
    rig.advance_ms(10);
    let (response, records) = drain(&handle, 16);
    assert_eq!(response.overruns, 6);
    // The ring keeps the oldest records.
    assert_eq!(
        records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Statistics still count every expiration.
    assert_eq!(query(&handle, id).unwrap().expirations, 10);
    rig.advance_ms(2);
    let (response, records) = drain(&handle, 16);
    assert_eq!((response.overruns, records.len()), (0, 2));
    assert_eq!(records[0].sequence, 11);
    drop(handle);
    rig.finish();
}

#[test]
fn cancelling_a_pending_wait_completes_it_cancelled_and_loses_no_record() {
    let rig = Rig::fine();
    let handle = rig.open();
    let wait = submit_wait(&handle, 1, 8);
    wait.cancel();
    let done = wait.result().expect("the cancel routine completed it");
    assert_eq!((done.status, done.output.len()), (STATUS_CANCELLED, 0));
    assert_eq!(handle.pending_waits(), 0);
    // Cancelling again, or a completed request, does nothing.
    wait.cancel();
    assert_eq!(wait.result().map(|d| d.status), Some(STATUS_CANCELLED));

    let id = create(&handle, schedule_once(MS));
    rig.advance_ms(2);
    let (_, records) = drain(&handle, 8);
    assert_eq!(
        records.iter().map(|r| r.timer_id).collect::<Vec<_>>(),
        vec![id]
    );
    drop(handle);
    rig.finish();
}

#[test]
fn cancelling_a_completed_wait_changes_nothing() {
    let rig = Rig::fine();
    let handle = rig.open();
    create(&handle, schedule_once(MS));
    let wait = submit_wait(&handle, 1, 8);
    rig.advance_ms(1);
    wait.cancel();
    assert_eq!(wait.result().map(|d| d.status), Some(STATUS_SUCCESS));
    assert_eq!(records_of(&wait.result().unwrap()).1.len(), 1);
    drop(handle);
    rig.finish();
}

#[test]
fn waits_complete_oldest_first() {
    let rig = Rig::fine();
    let handle = rig.open();
    let first = submit_wait(&handle, 1, 8);
    let second = submit_wait(&handle, 1, 8);
    create(&handle, schedule_once(MS));
    create(&handle, schedule_once(2 * MS));
    rig.advance_ms(1);
    assert!(first.result().is_some() && second.result().is_none());
    rig.advance_ms(1);
    let (_, second_records) = records_of(&second.result().unwrap());
    assert_eq!(second_records[0].due_time, 2 * MS);
    drop(handle);
    rig.finish();
}

#[test]
fn closing_a_handle_cancels_its_waits_and_destroys_its_timers() {
    let rig = Rig::fine();
    let keep = rig.open();
    let kept = create(&keep, schedule_periodic(MS, 1));
    let pool_one = rig.kernel.pool_stats().outstanding_allocations;
    let handle = rig.open();
    for _ in 0..5 {
        create(&handle, schedule_periodic(MS, 1));
    }
    let waits: Vec<_> = (0..3).map(|_| submit_wait(&handle, 100, 128)).collect();
    rig.advance_ms(3);
    assert!(waits.iter().all(|w| w.result().is_none()));
    handle.close();
    for wait in &waits {
        assert_eq!(wait.result().map(|d| d.status), Some(STATUS_CANCELLED));
    }
    assert_eq!(
        rig.kernel.pool_stats().outstanding_allocations,
        pool_one,
        "the closed handle's timers are freed"
    );
    assert_eq!(rig.driver.open_handle_count(), 1);
    // The other handle is untouched.
    rig.advance_ms(2);
    assert_eq!(query(&keep, kept).unwrap().expirations, 5);
    drop(keep);
    rig.finish();
}

#[test]
fn removal_with_open_handles_cancels_the_waits_and_the_last_close_frees_everything() {
    let rig = Rig::fine();
    let handles: Vec<_> = (0..3).map(|_| rig.open()).collect();
    let mut waits = Vec::new();
    for handle in &handles {
        for period in 1..=4 {
            create(handle, schedule_periodic(MS, period));
        }
        waits.push(submit_wait(handle, 1000, 1000));
    }
    rig.advance_ms(7);
    // A surprise removal: the queue's cancelable requests get EvtRequestCancel and the
    // removal waits for them; the device itself goes once its handles are closed.
    rig.driver.framework.remove_device(rig.driver.device);
    for wait in &waits {
        assert_eq!(wait.result().map(|d| d.status), Some(STATUS_CANCELLED));
    }
    // Handles still held: the queue accepts nothing more; no new handle opens.
    for handle in &handles {
        assert_eq!(
            raw(
                handle,
                ktimer_abi::ioctl::IOCTL_KTIMER_CREATE,
                &encode(&create_request(schedule_once(MS))),
                16
            )
            .status,
            kernel_sim::STATUS_INVALID_DEVICE_STATE
        );
    }
    assert_eq!(
        rig.driver.open().err(),
        Some(kernel_sim::STATUS_DELETE_PENDING)
    );
    // The last close deletes the device: its cleanup unloads the service.
    drop(handles);
    assert_eq!(rig.kernel.pool_stats().outstanding_allocations, 0);
    let dpc_runs = rig.kernel.stats().dpc_runs;
    rig.advance_ms(20);
    assert_eq!(
        rig.kernel.stats().dpc_runs,
        dpc_runs,
        "no DPC after the device is gone"
    );
    rig.finish();
}

#[test]
fn on_the_real_time_clock_a_blocking_wait_is_woken_by_the_dpc() {
    let rig = Rig::with(
        Config::real_time(Duration::from_millis(1)),
        ServiceConfig::default(),
    );
    let handle = rig.open();
    let id = create(&handle, schedule_once(20 * MS));
    let wait = submit_wait(&handle, 1, 8);
    // Generous: this checks that the DPC thread completes the wait, not how fast.
    let done = wait
        .wait(Some(kernel_sim::wall_time_budget(Duration::from_secs(30))))
        .expect("the expiry completes the wait");
    let (_, records) = records_of(&done);
    assert_eq!(
        records.iter().map(|r| r.timer_id).collect::<Vec<_>>(),
        vec![id]
    );
    assert!(records[0].fire_time >= records[0].due_time - TICK);
    // A blocking wait that nothing completes returns None at its timeout.
    let idle = submit_wait(&handle, 1, 8);
    assert_eq!(idle.wait(Some(Duration::from_millis(10))), None);
    idle.cancel();
    assert_eq!(idle.wait(None).map(|d| d.status), Some(STATUS_CANCELLED));
    drop(handle);
    rig.finish();
}
