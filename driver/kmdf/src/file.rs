//! File objects (open handles): `EvtDeviceFileCreate` opens a service handle and keeps it in
//! the file object's context; `EvtFileCleanup` (the last `CloseHandle`) cleans it up;
//! `EvtFileClose` (the last reference gone, every request completed) closes it. All three
//! run at `PASSIVE_LEVEL` (the device's execution level, and where the I/O manager sends
//! create, cleanup and close anyway).

use crate::sys::{
    NTSTATUS, STATUS_INVALID_DEVICE_STATE, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, WDFDEVICE,
    WDFFILEOBJECT, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::contexts::{self, FILE_CONTEXT, FileContext, service_of};
use crate::logic::{DriverLogic, HandleStorage};
use ktimer_kernel::irql::PassiveLevel;

/// `EvtDeviceFileCreate`: opens a service handle for the new file object and completes
/// the create request. `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called by the framework with the device, the create request (which this routine must
/// complete) and the new file object.
pub(super) unsafe extern "C" fn evt_device_file_create(
    device: WDFDEVICE,
    request: WDFREQUEST,
    file: WDFFILEOBJECT,
) {
    // SAFETY: the framework's handles, valid for this callback (our contract).
    let status = unsafe { open(device, file) };
    // SAFETY: `request` is the create request, completed exactly once, here.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
}

/// Opens a service handle and stores it in `file`'s context. `PASSIVE_LEVEL`.
///
/// Only the device itself can be opened: a name below it (`\\.\KTimer\anything`, which
/// reaches the driver as the file object's name `\anything`) is refused with
/// `STATUS_OBJECT_NAME_NOT_FOUND`, as for a name that does not exist.
///
/// # Safety
///
/// `device` and `file` are the handles of an `EvtDeviceFileCreate` call.
unsafe fn open(device: WDFDEVICE, file: WDFFILEOBJECT) -> NTSTATUS {
    let Some(passive) = PassiveLevel::current() else {
        trace!("ktimer: EvtDeviceFileCreate above PASSIVE_LEVEL");
        return STATUS_INVALID_DEVICE_STATE;
    };
    // SAFETY: `file` is the new file object (our contract).
    let name = unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetFileName, file) };
    // SAFETY: null or the framework's UNICODE_STRING for this file object, alive as long
    // as the file object.
    if unsafe { name.as_ref() }.is_some_and(|name| name.Length != 0) {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    // SAFETY: `device` is valid during this create (our contract), which no cleanup of the
    // device overlaps.
    let Some(service) = (unsafe { contexts::service(device) }) else {
        trace!("ktimer: create on a device without its logic");
        return STATUS_INVALID_DEVICE_STATE;
    };
    // SAFETY: `file` is the new file object, created with FILE_CONTEXT.
    let context = unsafe { FILE_CONTEXT.get(file.cast()) };
    if context.is_null() {
        trace!("ktimer: the file object has no context");
        return STATUS_INVALID_DEVICE_STATE;
    }
    match DriverLogic::open(service, &passive) {
        Ok(handle) => {
            // SAFETY: `context` is this file object's (non-null) FileContext; nothing else
            // touches it before the create completes.
            unsafe {
                context.write(FileContext {
                    handle: HandleStorage::into_raw(handle),
                });
            }
            STATUS_SUCCESS
        }
        // Too many handles, no memory, or unloading: the documented statuses, for the app.
        Err(status) => status,
    }
}

/// `EvtFileCleanup`: the handle's last `CloseHandle`. Completes its pending waits with
/// `STATUS_CANCELLED` and destroys its timers. `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called by the framework with a file object of this device, before its `EvtFileClose`.
pub(super) unsafe extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    let Some(passive) = PassiveLevel::current() else {
        trace!("ktimer: EvtFileCleanup above PASSIVE_LEVEL; handle left to close");
        return;
    };
    // SAFETY: `file` is valid for this callback, which close does not overlap.
    let Some(service) = (unsafe { service_of(file) }) else {
        return;
    };
    // SAFETY: as above.
    let Some(handle) = (unsafe { contexts::handle(file) }) else {
        return;
    };
    DriverLogic::cleanup(service, &handle, &passive);
}

/// `EvtFileClose`: takes the handle back from the context and closes it (cleans up if
/// that has not happened, and releases the service's registration). `PASSIVE_LEVEL`; if
/// called above it the handle is leaked rather than torn down at the wrong level.
///
/// # Safety
///
/// Called by the framework with a file object of this device, once, after every other
/// callback of that file object.
pub(super) unsafe extern "C" fn evt_file_close(file: WDFFILEOBJECT) {
    let Some(passive) = PassiveLevel::current() else {
        trace!("ktimer: EvtFileClose above PASSIVE_LEVEL; the handle is leaked");
        return;
    };
    // SAFETY: `file` is valid for this callback (our contract).
    let context = unsafe { FILE_CONTEXT.get(file.cast()) };
    // SAFETY: a non-null context pointer points to this file object's FileContext; no
    // other callback of the file object runs during its close (our contract).
    let Some(context) = (unsafe { context.as_mut() }) else {
        return;
    };
    let raw = core::mem::replace(&mut context.handle, core::ptr::null_mut());
    if raw.is_null() {
        return;
    }
    // SAFETY: `raw` came from `HandleStorage::into_raw` in the create and the context no
    // longer holds it, so it is taken back exactly once.
    let handle = unsafe { <contexts::LogicHandle as HandleStorage>::from_raw(raw) };
    // SAFETY: `file` is valid for this callback (our contract).
    match unsafe { service_of(file) } {
        Some(service) => DriverLogic::close(service, handle, &passive),
        // Not reachable (a handle exists only if the service did); dropping it at
        // PASSIVE_LEVEL is still correct.
        None => drop(handle),
    }
}
