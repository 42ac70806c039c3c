//! The default I/O queue: its creation (parallel, not power-managed, device-control only),
//! `EvtIoDeviceControl`, which wraps each request and hands it to the dispatcher, and
//! `EvtRequestCancel`, the cancel routine handed to every [`Request`] it makes.

use crate::contexts;
use crate::logic::DriverLogic;
use crate::request::{self, Request};
use crate::sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, NTSTATUS, STATUS_CANCELLED,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_HANDLE, ULONG, WDF_IO_QUEUE_CONFIG, WDF_NO_HANDLE,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDEVICE, WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};
use crate::wdf::{check, ulong_size_of};
use ktimer_kernel::irql::PassiveLevel;

const WDF_IO_QUEUE_CONFIG_SIZE: ULONG = ulong_size_of::<WDF_IO_QUEUE_CONFIG>();

/// `METHOD_BUFFERED`, the transfer type in an IOCTL code's low two bits (`CTL_CODE`).
const METHOD_BUFFERED: ULONG = 0;

/// The default queue: parallel (a pending wait must not hold up other requests), not
/// power-managed (a software device; a power-managed queue would make a system sleep wait
/// for the pending waits the driver holds), `EvtIoDeviceControl` only. Its execution
/// level is the device's (`PASSIVE_LEVEL`). `PASSIVE_LEVEL`.
pub(crate) fn create_default_queue<L: DriverLogic>(device: WDFDEVICE) -> Result<(), NTSTATUS> {
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: WDF_IO_QUEUE_CONFIG_SIZE,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: u8::from(true),
        EvtIoDeviceControl: Some(evt_io_device_control::<L>),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    // `Settings` is a union whose only member, `Parallel`, is a structure whose only field
    // is the ULONG `NumberOfPresentedRequests` (wdfio.h): the union starts with that ULONG.
    // ULONG::MAX is the header's `(ULONG)-1`, "no limit", which WDF_IO_QUEUE_CONFIG_INIT
    // sets for a parallel queue.
    let presented = (&raw mut config.Settings).cast::<ULONG>();
    // SAFETY: `presented` points to the first ULONG of `config.Settings` (see above): in
    // bounds, aligned (the union contains that ULONG) and writable (a local).
    unsafe { presented.write(ULONG::MAX) };

    let mut queue: WDFQUEUE = WDF_NO_HANDLE.cast();
    // SAFETY: `device` is a valid device handle (created by our caller); `config` is
    // initialised and live; the queue needs no attributes of its own; `queue` receives
    // the handle.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue,
        )
    };
    check(L::IDENTITY.driver_name, status, "WdfIoQueueCreate")
}

/// `EvtIoDeviceControl`: hands the request to the logic, which completes it or parks it
/// (a wait, in a timer service). `PASSIVE_LEVEL` (the queue inherits the device's
/// `WdfExecutionLevelPassive`).
///
/// # Safety
///
/// Called by the framework with the default queue and a request the driver now owns.
unsafe extern "C" fn evt_io_device_control<L: DriverLogic>(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    output_buffer_length: usize,
    input_buffer_length: usize,
    io_control_code: ULONG,
) {
    let Some(passive) = PassiveLevel::current() else {
        // SAFETY: the driver owns `request` (our contract).
        unsafe { request::complete(request, STATUS_INVALID_DEVICE_STATE) };
        return;
    };
    // SAFETY: `queue` is the framework's, valid for this callback.
    let device = unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueGetDevice, queue) };
    // SAFETY: the queue's device is live for this callback, which its cleanup does not
    // overlap.
    let Some(logic) = (unsafe { contexts::logic::<L>(device) }) else {
        // SAFETY: the driver owns `request` (our contract).
        unsafe { request::complete(request, STATUS_INVALID_DEVICE_STATE) };
        return;
    };
    // SAFETY: `request` is valid for this callback (our contract).
    let file_object =
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
    // SAFETY: a request's file object outlives it, and its close cannot run while one of
    // its requests is being dispatched.
    let Some(handle) = (unsafe { contexts::handle::<L>(file_object) }) else {
        // SAFETY: the driver owns `request` (our contract).
        unsafe { request::complete(request, STATUS_INVALID_HANDLE) };
        return;
    };
    // The shell serves METHOD_BUFFERED codes only. Any other code gets no buffers at all
    // (nothing maps a direct-I/O MDL or touches a METHOD_NEITHER user address), and the
    // logic rejects it as a code it does not know.
    let (input_length, output_length) = if io_control_code & 0x3 == METHOD_BUFFERED {
        (input_buffer_length, output_buffer_length)
    } else {
        (0, 0)
    };
    // SAFETY: the driver owns `request`, uncompleted, with buffers of at least these lengths
    // (our contract); the `Request` takes that ownership over.
    let request = unsafe {
        Request::new(
            request,
            input_length,
            output_length,
            evt_request_cancel::<L>,
        )
    };
    // Completed, or parked (STATUS_PENDING): either way the logic has the request now.
    logic.device_control(&handle, io_control_code, request, &passive);
}

/// `EvtRequestCancel` of a parked request: takes it back from the logic and completes it
/// with `STATUS_CANCELLED`, or, if the logic already took it out of its list, does this
/// side's half of the hand-off (`request`'s documentation). `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// Called by the framework, once, for a request marked cancelable by a [`Request`] made in [`evt_io_device_control`] and
/// cancelled since; the request is uncompleted.
unsafe extern "C" fn evt_request_cancel<L: DriverLogic>(request: WDFREQUEST) {
    // SAFETY: `request` is valid until completed (our contract).
    let file_object =
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
    // SAFETY: the request's file object outlives it; its close waits for this request.
    let handle = unsafe { contexts::handle::<L>(file_object) };
    // SAFETY: as above, and the device outlives its file objects' requests.
    let logic = unsafe { contexts::logic_of::<L>(file_object) };
    let (Some(handle), Some(logic)) = (handle, logic) else {
        // The handle or the logic cannot be reached (`WdfRequestGetFileObject` failed, or
        // the device's logic is gone). Only a request the logic parked has this cancel
        // routine, and the logic still holds it (or is letting it go): its claim will fail,
        // since the request is cancelled, and it will release the request when it drops it
        // (at the next expiry, the handle's cleanup or unload). So this routine must not
        // complete it alone: it does its half of the hand-off, and the second release
        // completes the request with STATUS_CANCELLED, exactly once.
        // SAFETY: a cancelled request marked cancelable by a `Request`; this is the cancel
        // routine's one release of it.
        unsafe { request::release_by_cancel_routine(request) };
        return;
    };
    match logic.cancel(&handle, request.addr()) {
        // Still parked: ours alone now.
        Some(parked) => parked.complete(STATUS_CANCELLED, 0),
        // SAFETY: the logic took it out of its list and loses its claim (the request is
        // cancelled): this is the cancel routine's release.
        None => unsafe { request::release_by_cancel_routine(request) },
    }
}
