//! Every operation through the dispatch entry, on the simulator in virtual time, with exact
//! counts.
#![cfg(not(windows))]

mod service_common;

use ktimer_abi::status::{STATUS_NOT_FOUND, STATUS_SUCCESS};
use ktimer_abi::{
    ABI_VERSION, CREATE_HIGH_RESOLUTION, SCHEDULE_ABSOLUTE, STATE_ARMED, STATE_CANCELLED,
    STATE_EXPIRED, Schedule, TIMER_TYPE_SYNCHRONIZATION,
};
use ktimer_service::{DRIVER_VERSION, ServiceConfig};
use service_common::*;

#[test]
fn get_info_reports_versions_clock_and_limits() {
    let rig = Rig::new();
    let handle = rig.open();
    let info = info(&handle);
    let config = ServiceConfig::default();
    assert_eq!(info.header.abi_version, ABI_VERSION);
    assert_eq!(
        (
            info.driver_version_major,
            info.driver_version_minor,
            info.driver_version_patch
        ),
        DRIVER_VERSION
    );
    assert_eq!(i64::from(info.clock_increment), TICK);
    assert_eq!(
        info.max_timers_per_handle as usize,
        config.max_timers_per_handle
    );
    assert_eq!(
        info.max_pending_waits_per_handle as usize,
        config.max_pending_waits_per_handle
    );
    assert_eq!(
        info.event_ring_capacity as usize,
        config.event_ring_capacity
    );
    assert_eq!(info.min_period_ms, config.min_period_ms);
    assert_eq!(info.interrupt_time, rig.kernel.interrupt_time());
    assert_eq!(info.system_time, rig.kernel.system_time());
    drop(handle);
    rig.finish();
}

#[test]
fn a_relative_one_shot_fires_once_at_the_first_tick_after_its_due_time() {
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_once(100 * MS));
    let armed = query(&handle, id).unwrap();
    assert_eq!(
        (armed.state, armed.expirations, armed.due_time),
        (STATE_ARMED, 0, 100 * MS)
    );

    rig.advance_ms(100);
    assert_eq!(
        query(&handle, id).unwrap().expirations,
        0,
        "ticks at 93.75 ms, then 109.375 ms"
    );
    rig.advance_ms(400);

    let fired = query(&handle, id).unwrap();
    // 100 ms is due at the 7th tick (7 x 15.625 = 109.375 ms).
    let fire_time = 7 * TICK;
    assert_eq!(
        (
            fired.state,
            fired.expirations,
            fired.dpc_runs,
            fired.coalesced
        ),
        (STATE_EXPIRED, 1, 1, 0)
    );
    assert_eq!(fired.lateness_last, fire_time - 100 * MS);
    assert_eq!(
        (fired.lateness_min, fired.lateness_max, fired.lateness_mean),
        (93_750, 93_750, 93_750)
    );
    assert_eq!(fired.signaled, 1);

    let (response, records) = drain(&handle, 8);
    assert_eq!(response.overruns, 0);
    assert_eq!(records.len(), 1);
    let record = records[0];
    assert_eq!(
        (
            record.timer_id,
            record.sequence,
            record.due_time,
            record.fire_time,
            record.lateness,
            record.expirations
        ),
        (id, 1, 100 * MS, fire_time, fire_time - 100 * MS, 1)
    );
    drop(handle);
    rig.finish();
}

#[test]
fn a_periodic_timer_fires_every_period() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(10 * MS, 10));
    rig.advance_ms(105);
    let stats = query(&handle, id).unwrap();
    assert_eq!(
        (
            stats.state,
            stats.expirations,
            stats.dpc_runs,
            stats.coalesced
        ),
        (STATE_ARMED, 10, 10, 0)
    );
    assert_eq!((stats.lateness_min, stats.lateness_max), (0, 0));
    let (_, records) = drain(&handle, 64);
    let sequences: Vec<u64> = records.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, (1..=10).collect::<Vec<_>>());
    for record in &records {
        let n = i64::try_from(record.sequence).unwrap();
        assert_eq!(record.due_time, n * 10 * MS);
        assert_eq!(record.fire_time, record.due_time);
    }
    drop(handle);
    rig.finish();
}

#[test]
fn a_period_shorter_than_the_tick_counts_one_expiration_per_tick_as_the_kernel_does() {
    // A 1 ms period on a 15.625 ms tick: the kernel expires the timer once per tick (the due
    // times that passed within the tick are one expiration), so each DPC run covers one.
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(MS, 1));
    rig.advance_ms(1000);
    let stats = query(&handle, id).unwrap();
    let (_, records) = drain(&handle, 4096);
    assert_eq!(stats.dpc_runs, u64::try_from(records.len()).unwrap());
    assert_eq!(stats.expirations, rig.kernel.stats().timer_expirations);
    assert_eq!(stats.expirations, 64, "one per tick in 1 s");
    assert_eq!(stats.coalesced, 0);
    for record in &records {
        assert_eq!(record.expirations, 1);
        // Dated at the latest due time the tick covered, the whole millisecond before it.
        assert_eq!(record.due_time, record.fire_time / MS * MS, "{record:?}");
    }
    drop(handle);
    rig.finish();
}

#[test]
fn an_absolute_one_shot_fires_at_its_system_time() {
    let rig = Rig::fine();
    let handle = rig.open();
    let now = info(&handle).system_time;
    let id = create(
        &handle,
        Schedule {
            flags: SCHEDULE_ABSOLUTE,
            ..schedule_once(now + 50 * MS)
        },
    );
    rig.advance_ms(49);
    assert_eq!(query(&handle, id).unwrap().expirations, 0);
    rig.advance_ms(10);
    let (_, records) = drain(&handle, 4);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].due_time, records[0].fire_time),
        (50 * MS, 50 * MS)
    );
    drop(handle);
    rig.finish();
}

#[test]
fn cancel_before_expiry_means_no_fire() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_once(20 * MS));
    rig.advance_ms(10);
    assert_eq!(cancel(&handle, id), Ok(true));
    assert_eq!(
        cancel(&handle, id),
        Ok(false),
        "no longer in the timer queue"
    );
    rig.advance_ms(100);
    let stats = query(&handle, id).unwrap();
    assert_eq!(
        (
            stats.state,
            stats.expirations,
            stats.dpc_runs,
            stats.signaled
        ),
        (STATE_CANCELLED, 0, 0, 0)
    );
    assert_eq!(handle.ready_records(), 0);
    drop(handle);
    rig.finish();
}

#[test]
fn a_cancelled_periodic_timer_fires_no_more() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(5 * MS, 5));
    rig.advance_ms(16);
    assert_eq!(cancel(&handle, id), Ok(true));
    rig.advance_ms(100);
    let stats = query(&handle, id).unwrap();
    assert_eq!((stats.state, stats.expirations), (STATE_CANCELLED, 3));
    assert_eq!(drain(&handle, 16).1.len(), 3);
    drop(handle);
    rig.finish();
}

#[test]
fn set_re_arms_with_a_new_schedule_and_fresh_statistics() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(5 * MS, 5));
    rig.advance_ms(12);
    assert_eq!(query(&handle, id).unwrap().expirations, 2);
    // Re-arm as a one-shot 30 ms from now (t = 12 ms).
    assert_eq!(set(&handle, id, schedule_once(30 * MS)), Ok(true));
    let rearmed = query(&handle, id).unwrap();
    assert_eq!(
        (
            rearmed.state,
            rearmed.expirations,
            rearmed.dpc_runs,
            rearmed.due_time
        ),
        (STATE_ARMED, 0, 0, 42 * MS)
    );
    rig.advance_ms(100);
    let stats = query(&handle, id).unwrap();
    assert_eq!((stats.state, stats.expirations), (STATE_EXPIRED, 1));
    let (_, records) = drain(&handle, 16);
    let dues: Vec<i64> = records.iter().map(|r| r.due_time).collect();
    assert_eq!(dues, vec![5 * MS, 10 * MS, 42 * MS]);
    // An expired one-shot is no longer queued: re-arming reports false.
    assert_eq!(set(&handle, id, schedule_once(MS)), Ok(false));
    drop(handle);
    rig.finish();
}

#[test]
fn notification_and_synchronization_timers_report_their_signaled_state() {
    let rig = Rig::fine();
    let handle = rig.open();
    let notification = create(&handle, schedule_once(5 * MS));
    let mut sync_request = create_request(schedule_once(5 * MS));
    sync_request.timer_type = TIMER_TYPE_SYNCHRONIZATION;
    let synchronization = create_with(&handle, &sync_request).unwrap();
    assert_eq!(query(&handle, notification).unwrap().signaled, 0);
    assert_eq!(query(&handle, synchronization).unwrap().signaled, 0);
    rig.advance_ms(10);
    // No thread waits on either, so both stay signaled after expiry.
    assert_eq!(query(&handle, notification).unwrap().signaled, 1);
    let sync_state = query(&handle, synchronization).unwrap();
    assert_eq!(
        (sync_state.signaled, sync_state.timer_type),
        (1, TIMER_TYPE_SYNCHRONIZATION)
    );
    // Re-arming resets the signaled state.
    set(&handle, notification, schedule_once(50 * MS)).unwrap();
    assert_eq!(query(&handle, notification).unwrap().signaled, 0);
    drop(handle);
    rig.finish();
}

#[test]
fn a_coalescable_timer_may_fire_late_within_its_tolerance() {
    let rig = Rig::fine();
    let handle = rig.open();
    // The simulator coalesces onto a 50 ms grid when the tolerance allows it (a model of
    // the kernel's batching, see kernel-sim's COALESCING_BOUNDARIES_MS): 30 ms becomes 50 ms.
    let one_shot = create(
        &handle,
        Schedule {
            tolerable_delay_ms: 60,
            ..schedule_once(30 * MS)
        },
    );
    // With a tolerance below every grid step nothing moves.
    let exact = create(
        &handle,
        Schedule {
            tolerable_delay_ms: 4,
            ..schedule_once(30 * MS)
        },
    );
    rig.advance_ms(100);
    let (_, records) = drain(&handle, 8);
    let fired: Vec<(u64, i64, i64)> = records
        .iter()
        .map(|r| (r.timer_id, r.due_time, r.fire_time))
        .collect();
    assert_eq!(
        fired,
        vec![(exact, 30 * MS, 30 * MS), (one_shot, 30 * MS, 50 * MS)]
    );
    let stats = query(&handle, one_shot).unwrap();
    assert_eq!((stats.expirations, stats.lateness_last), (1, 20 * MS));
    drop(handle);
    rig.finish();
}

#[test]
fn a_high_resolution_timer_fires_at_its_exact_due_time() {
    let rig = Rig::new();
    let handle = rig.open();
    let mut request = create_request(schedule_periodic(3 * MS, 2));
    request.flags = CREATE_HIGH_RESOLUTION;
    let id = create_with(&handle, &request).unwrap();
    rig.advance_ms(10);
    let stats = query(&handle, id).unwrap();
    // Due at 3, 5, 7, 9 ms, between ticks: a high-resolution timer does not wait for one.
    assert_eq!(
        (
            stats.expirations,
            stats.dpc_runs,
            stats.signaled,
            stats.flags
        ),
        (4, 4, 0, CREATE_HIGH_RESOLUTION)
    );
    assert_eq!((stats.lateness_min, stats.lateness_max), (0, 0));
    let (_, records) = drain(&handle, 8);
    let fires: Vec<i64> = records.iter().map(|r| r.fire_time).collect();
    assert_eq!(fires, vec![3 * MS, 5 * MS, 7 * MS, 9 * MS]);
    drop(handle);
    rig.finish();
}

#[test]
fn close_destroys_the_timer_and_its_id_becomes_stale() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(MS, 1));
    let pool_with_timer = rig.kernel.pool_stats().outstanding_allocations;
    assert!(pool_with_timer > 0);
    rig.advance_ms(3);
    assert_eq!(close_timer(&handle, id), Ok(()));
    assert_eq!(
        rig.kernel.pool_stats().outstanding_allocations,
        pool_with_timer - 1
    );
    assert_eq!(query(&handle, id), Err(STATUS_NOT_FOUND));
    assert_eq!(close_timer(&handle, id), Err(STATUS_NOT_FOUND));
    rig.advance_ms(10);
    // The records it made before closing are still delivered; none after.
    assert_eq!(drain(&handle, 16).1.len(), 3);
    // The slot is reused under a new id.
    let next = create(&handle, schedule_once(MS));
    assert_ne!(next, id);
    assert_eq!(query(&handle, id), Err(STATUS_NOT_FOUND));
    assert_eq!(query(&handle, next).map(|q| q.timer_id), Ok(next));
    drop(handle);
    rig.finish();
}

#[test]
fn every_handle_gets_its_own_records() {
    let rig = Rig::fine();
    let first = rig.open();
    let second = rig.open();
    let a = create(&first, schedule_once(2 * MS));
    let b = create(&second, schedule_once(3 * MS));
    assert_ne!(a >> 32, b >> 32, "ids carry the handle's serial");
    rig.advance_ms(5);
    let (_, first_records) = drain(&first, 4);
    let (_, second_records) = drain(&second, 4);
    assert_eq!(
        first_records.iter().map(|r| r.timer_id).collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(
        second_records
            .iter()
            .map(|r| r.timer_id)
            .collect::<Vec<_>>(),
        vec![b]
    );
    let status = raw(&first, ktimer_abi::ioctl::IOCTL_KTIMER_GET_INFO, &[], 72).status;
    assert_eq!(status, STATUS_SUCCESS);
    drop(first);
    drop(second);
    rig.finish();
}

#[test]
fn a_dpc_already_queued_when_its_timer_is_cancelled_makes_no_record() {
    let rig = Rig::fine();
    let handle = rig.open();
    let one_shot = create(&handle, schedule_once(2 * MS));
    let periodic = create(&handle, schedule_periodic(2 * MS, 5));
    // Both expire at 2 ms; their DPCs are queued but not run yet.
    rig.kernel
        .advance_without_running_dpcs(std::time::Duration::from_millis(3));
    // The one-shot left the timer queue on expiry; the periodic one is still in it.
    assert_eq!(cancel(&handle, one_shot), Ok(false));
    assert_eq!(cancel(&handle, periodic), Ok(true));
    rig.kernel.run_until_idle();
    rig.advance_ms(20);
    for id in [one_shot, periodic] {
        let stats = query(&handle, id).unwrap();
        assert_eq!(
            (stats.state, stats.expirations, stats.dpc_runs),
            (STATE_CANCELLED, 0, 0)
        );
    }
    assert_eq!(handle.ready_records(), 0);
    drop(handle);
    rig.finish();
}

#[test]
fn coalesced_periodic_expirations_of_a_late_dpc_are_all_counted() {
    let rig = Rig::fine();
    let handle = rig.open();
    let id = create(&handle, schedule_periodic(MS, 1));
    // Four ticks pass with the DPC queued once and not run: one run covers four expirations.
    rig.kernel
        .advance_without_running_dpcs(std::time::Duration::from_millis(4));
    rig.kernel.run_until_idle();
    let stats = query(&handle, id).unwrap();
    assert_eq!(
        (stats.expirations, stats.dpc_runs, stats.coalesced),
        (4, 1, 3)
    );
    let (_, records) = drain(&handle, 8);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].sequence,
            records[0].expirations,
            records[0].due_time
        ),
        (4, 4, 4 * MS)
    );
    drop(handle);
    rig.finish();
}

/// Opening a handle allocates its shared core from pool; when that fails the open fails
/// with `STATUS_INSUFFICIENT_RESOURCES` (no allocation-error handler, no bug check), nothing
/// is registered, and the next open succeeds.
#[test]
fn a_failed_pool_allocation_at_open_is_insufficient_resources() {
    let rig = Rig::fine();
    let before = rig.kernel.pool_stats().outstanding_allocations;
    rig.kernel.fail_next_pool_allocations(1);
    assert_eq!(
        rig.driver.open().err(),
        Some(ktimer_abi::status::STATUS_INSUFFICIENT_RESOURCES)
    );
    assert_eq!(rig.driver.open_handle_count(), 0);
    assert_eq!(rig.kernel.pool_stats().outstanding_allocations, before);
    let handle = rig.open();
    assert_eq!(
        rig.kernel.pool_stats().outstanding_allocations,
        before + 1,
        "the handle's core is one pool block"
    );
    let id = create(&handle, schedule_once(MS));
    rig.advance_ms(2);
    assert_eq!(query(&handle, id).unwrap().expirations, 1);
    drop(handle);
    assert_eq!(rig.kernel.pool_stats().outstanding_allocations, before);
    rig.finish();
}

/// A completed request keeps nothing of the driver (like an `OVERLAPPED`, its `Io` outlives
/// the completion): with completed requests of every kind still held — at once, a wait
/// satisfied by an expiry, a wait cancelled by `CancelIoEx`, a wait cancelled by the close —
/// closing the handle frees its pool core, and the driver unloads with no pool left.
#[test]
fn a_completed_request_does_not_keep_the_handle_core_alive() {
    let rig = Rig::fine();
    let before = rig.kernel.pool_stats().outstanding_allocations;
    let handle = rig.open();
    let at_once = handle.submit(ktimer_abi::ioctl::IOCTL_KTIMER_GET_INFO, &[], 72);
    create(&handle, schedule_once(MS));
    let satisfied = submit_wait(&handle, 1, 8);
    let cancelled = submit_wait(&handle, 5, 8);
    cancelled.cancel();
    rig.advance_ms(2);
    let pending_at_close = submit_wait(&handle, 5, 8);
    assert_eq!(
        at_once.result().map(|done| done.status),
        Some(STATUS_SUCCESS)
    );
    assert_eq!(records_of(&satisfied.result().unwrap()).1.len(), 1);
    assert_eq!(
        cancelled.result().map(|done| done.status),
        Some(ktimer_abi::status::STATUS_CANCELLED)
    );
    assert!(pending_at_close.result().is_none());
    assert!(rig.kernel.pool_stats().outstanding_allocations > before);
    handle.close();
    assert_eq!(
        pending_at_close.result().map(|done| done.status),
        Some(ktimer_abi::status::STATUS_CANCELLED)
    );
    assert_eq!(rig.driver.open_handle_count(), 0);
    assert_eq!(
        rig.kernel.pool_stats().outstanding_allocations,
        before,
        "the closed handle's core and timers are freed while its completed requests are held"
    );
    rig.finish();
    drop((at_once, satisfied, cancelled, pending_at_close));
}
