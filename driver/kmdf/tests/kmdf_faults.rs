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
