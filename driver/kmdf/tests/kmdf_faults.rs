//! The KMDF model's `Fault` on the request-path DDIs (issue 19, item 4): each failure the
//! framework can return to the driver while it handles a request is injected once, and the
//! request still completes exactly once with a documented status; nothing leaks.
#![cfg(not(windows))]

mod service_common;

use kernel_sim::wdf::Fault;
use ktimer_abi::ioctl::{IOCTL_KTIMER_CREATE, IOCTL_KTIMER_QUERY};
use ktimer_abi::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_HANDLE, STATUS_SUCCESS,
};
use service_common::*;

#[test]
fn a_failed_input_buffer_retrieval_is_answered_as_a_short_input() {
    let rig = Rig::new();
    let handle = rig.open();
    rig.driver.framework.fail_next(
        Fault::RequestRetrieveInputBuffer,
        STATUS_INSUFFICIENT_RESOURCES,
    );
    let request = encode(&create_request(schedule_once(MS)));
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_CREATE, &request, 16).status,
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_CREATE, &request, 16).status,
        STATUS_SUCCESS
    );
    drop(handle);
    rig.finish();
}

#[test]
fn a_failed_output_buffer_retrieval_is_answered_as_a_short_output() {
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_once(1000 * MS));
    rig.driver.framework.fail_next(
        Fault::RequestRetrieveOutputBuffer,
        STATUS_INSUFFICIENT_RESOURCES,
    );
    let request = encode(&timer_request(id));
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_QUERY, &request, 104).status,
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_QUERY, &request, 104).status,
        STATUS_SUCCESS
    );
    drop(handle);
    rig.finish();
}

#[test]
fn a_wait_that_cannot_be_marked_cancelable_completes_cancelled_instead_of_pending() {
    // WdfRequestMarkCancelableEx fails with a status other than STATUS_CANCELLED: the wait
    // must not be parked uncancelable; it completes at once with STATUS_CANCELLED.
    let rig = Rig::new();
    let handle = rig.open();
    rig.driver.framework.fail_next(
        Fault::RequestMarkCancelableEx,
        kernel_sim::STATUS_INVALID_DEVICE_REQUEST,
    );
    let wait = submit_wait(&handle, 1, 4);
    assert_eq!(
        wait.result().map(|done| done.status),
        Some(STATUS_CANCELLED)
    );
    assert_eq!(handle.pending_waits(), 0);
    // The next wait parks as usual and is cancelled by the handle's close.
    let parked = submit_wait(&handle, 1, 4);
    assert!(parked.result().is_none());
    drop(handle);
    assert_eq!(
        parked.result().map(|done| done.status),
        Some(STATUS_CANCELLED)
    );
    rig.finish();
}

#[test]
fn a_request_without_a_file_object_is_refused_as_an_invalid_handle() {
    let rig = Rig::new();
    let handle = rig.open();
    let id = create(&handle, schedule_once(1000 * MS));
    rig.driver
        .framework
        .fail_next(Fault::RequestGetFileObject, STATUS_SUCCESS);
    let request = encode(&timer_request(id));
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_QUERY, &request, 104).status,
        STATUS_INVALID_HANDLE
    );
    assert_eq!(
        raw(&handle, IOCTL_KTIMER_QUERY, &request, 104).status,
        STATUS_SUCCESS
    );
    drop(handle);
    rig.finish();
}

#[test]
fn a_cancel_routine_that_cannot_reach_the_handle_leaves_the_wait_to_complete_once_at_close() {
    // `CancelIoEx` on a parked wait whose cancel routine cannot get the file object: the
    // routine must not complete a request the service still holds (its later claim would
    // touch a completed request). It releases its half; the service's failed claim at close
    // releases the other, and the wait completes once, with STATUS_CANCELLED. The KMDF
    // model bug-checks a second completion (`rig.finish` would report it).
    let rig = Rig::new();
    let handle = rig.open();
    let parked = submit_wait(&handle, 1, 4);
    assert!(parked.result().is_none(), "parked");
    rig.driver
        .framework
        .fail_next(Fault::RequestGetFileObject, STATUS_SUCCESS);
    parked.cancel();
    assert!(
        parked.result().is_none(),
        "the cancel routine alone does not complete it"
    );
    drop(handle);
    assert_eq!(
        parked.result().map(|done| done.status),
        Some(STATUS_CANCELLED)
    );
    rig.finish();
}
