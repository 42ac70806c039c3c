//! The protocol's edges that PROTOCOL.md now states (issue 19, item 3), each pinned by a
//! test named after the behaviour: statuses after device removal, WAIT's step order for a
//! `min_records` above the ring capacity, and used-up ids while a timer is live. (The cancel
//! between a one-shot's expiry and its DPC run, and a relative arming between ticks, are in
//! `service_accounting.rs`.)
#![cfg(not(windows))]

mod service_common;

use kernel_sim::Config;
use ktimer_abi::ioctl::{IOCTL_KTIMER_CREATE, IOCTL_KTIMER_QUERY, IOCTL_KTIMER_WAIT};
use ktimer_abi::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_QUOTA_EXCEEDED,
};
use ktimer_service::ServiceConfig;
use ktimer_service::ids::LAST_GENERATION;
use service_common::*;

#[test]
fn after_removal_requests_get_invalid_device_state_and_opens_delete_pending_then_no_such_device() {
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_once(1000 * MS));
    rig.driver.framework.remove_device(rig.driver.device);
    // The queue stops accepting: every IOCTL, whatever its code, is refused by the framework.
    for (code, input) in [
        (IOCTL_KTIMER_QUERY, encode(&timer_request(id))),
        (
            IOCTL_KTIMER_CREATE,
            encode(&create_request(schedule_once(MS))),
        ),
        (IOCTL_KTIMER_WAIT, wait_request(1)),
    ] {
        assert_eq!(
            raw(&handle, code, &input, 256).status,
            kernel_sim::STATUS_INVALID_DEVICE_STATE
        );
    }
    // An open while the removed device still exists (a handle holds it) is refused as
    // delete-pending; once the last handle closed and the device is gone, there is none.
    assert_eq!(
        rig.driver.open().err(),
        Some(kernel_sim::STATUS_DELETE_PENDING)
    );
    drop(handle);
    assert_eq!(
        rig.driver.open().err(),
        Some(kernel_sim::STATUS_NO_SUCH_DEVICE)
    );
    rig.finish();
}

#[test]
fn wait_min_records_above_the_ring_capacity_is_a_step_5_invalid_parameter_before_the_output_size() {
    let rig = Rig::with(
        Config::default(),
        ServiceConfig {
            event_ring_capacity: 4,
            ..ServiceConfig::default()
        },
    );
    let handle = rig.open();
    // Above the ring capacity: a value judged against the driver's configuration (step 5),
    // so it wins over an output too short (step 6), even an empty one.
    for output_len in [0, 8, 24, 24 + 48 * 8] {
        assert_eq!(
            raw(&handle, IOCTL_KTIMER_WAIT, &wait_request(5), output_len).status,
            STATUS_INVALID_PARAMETER,
            "output {output_len}"
        );
    }
    // Within the capacity: the output size (step 6) first, then what fits (step 7).
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_WAIT, &wait_request(3), 0).status,
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_WAIT, &wait_request(3), 24 + 48).status,
        STATUS_INVALID_PARAMETER
    );
    drop(handle);
    rig.finish();
}

#[test]
fn ids_used_up_with_a_live_timer_whose_slot_has_ids_left_is_a_quota_that_closing_it_frees() {
    let rig = Rig::with(
        Config::default(),
        ServiceConfig {
            max_timers_per_handle: 2,
            ..ServiceConfig::default()
        },
    );
    let handle = rig.open();
    let request = create_request(schedule_once(1000 * MS));
    // Slot 0 used up: moved to its last generation, created and closed, so it is retired.
    let first = create_with(&handle, &request).unwrap();
    let live = create_with(&handle, &request).unwrap();
    assert_eq!(close_timer(&handle, first), Ok(()));
    handle.skip_timer_id_generations(LAST_GENERATION);
    let last = create_with(&handle, &request).unwrap();
    assert_eq!(close_timer(&handle, last), Ok(()));
    // One slot retired, one live timer whose slot has ids left: closing it makes room, so
    // the status is the quota one.
    assert_eq!(create_with(&handle, &request), Err(STATUS_QUOTA_EXCEEDED));
    assert_eq!(close_timer(&handle, live), Ok(()));
    let again = create_with(&handle, &request).unwrap();
    assert_ne!(again, live);
    // Its slot moved to its last generation as well: now closing it would not help either.
    assert_eq!(close_timer(&handle, again), Ok(()));
    handle.skip_timer_id_generations(LAST_GENERATION);
    let final_live = create_with(&handle, &request).unwrap();
    assert_eq!(
        create_with(&handle, &request),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    assert_eq!(close_timer(&handle, final_live), Ok(()));
    assert_eq!(
        create_with(&handle, &request),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    drop(handle);
    rig.finish();
}
