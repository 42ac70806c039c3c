//! File objects (open handles): `EvtDeviceFileCreate` opens a handle of the logic and keeps
//! it in the file object's context; `EvtFileCleanup` (the last `CloseHandle`) cleans it up;
//! `EvtFileClose` (the last reference gone, every request completed) closes it. All three
//! run at `PASSIVE_LEVEL` (the device's execution level, and where the I/O manager sends
//! create, cleanup and close anyway).

use crate::sys::{
    NTSTATUS, STATUS_INVALID_DEVICE_STATE, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, WDFDEVICE,
    WDFFILEOBJECT, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::contexts::{self, FILE_CONTEXT, FileContext, logic_of};
use crate::logic::{DriverLogic, HandleStorage};
use ktimer_kernel::irql::PassiveLevel;

/// `EvtDeviceFileCreate`: opens a handle of the logic for the new file object and completes
/// the create request. `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called by the framework with the device, the create request (which this routine must
/// complete) and the new file object.
pub(super) unsafe extern "C" fn evt_device_file_create<L: DriverLogic>(
    device: WDFDEVICE,
    request: WDFREQUEST,
    file: WDFFILEOBJECT,
) {
    // SAFETY: the framework's handles, valid for this callback (our contract).
    let status = unsafe { open::<L>(device, file) };
    // SAFETY: `request` is the create request, completed exactly once, here.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
}

/// Opens a handle of the logic and stores it in `file`'s context. `PASSIVE_LEVEL`.
///
/// Only the device itself can be opened: a name below it (`\\.\Name\anything`, which
/// reaches the driver as the file object's name `\anything`) is refused with
/// `STATUS_OBJECT_NAME_NOT_FOUND`, as for a name that does not exist.
///
/// # Safety
///
/// `device` and `file` are the handles of an `EvtDeviceFileCreate` call.
unsafe fn open<L: DriverLogic>(device: WDFDEVICE, file: WDFFILEOBJECT) -> NTSTATUS {
    let name = L::IDENTITY.driver_name;
    let Some(passive) = PassiveLevel::current() else {
        trace!("{name}: EvtDeviceFileCreate above PASSIVE_LEVEL");
        return STATUS_INVALID_DEVICE_STATE;
    };
    // SAFETY: `file` is the new file object (our contract).
    let file_name = unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetFileName, file) };
    // SAFETY: null or the framework's UNICODE_STRING for this file object, alive as long
    // as the file object.
    if unsafe { file_name.as_ref() }.is_some_and(|file_name| file_name.Length != 0) {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    // SAFETY: `device` is valid during this create (our contract), which no cleanup of the
    // device overlaps.
    let Some(logic) = (unsafe { contexts::logic::<L>(device) }) else {
        trace!("{name}: create on a device without its logic");
        return STATUS_INVALID_DEVICE_STATE;
    };
    // SAFETY: `file` is the new file object, created with FILE_CONTEXT.
    let context = unsafe { FILE_CONTEXT.get(file.cast()) };
    if context.is_null() {
        trace!("{name}: the file object has no context");
        return STATUS_INVALID_DEVICE_STATE;
    }
    match logic.open(&passive) {
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
        // The logic's refusal (too many handles, no memory, unloading: the logic's
        // documented statuses), as the create's status.
        Err(status) => status,
    }
}

/// `EvtFileCleanup`: the handle's last `CloseHandle`; the logic ends what the handle has in
/// progress (a timer service, for example, completes its pending waits with
/// `STATUS_CANCELLED` and destroys its timers). `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called by the framework with a file object of this device, before its `EvtFileClose`.
pub(super) unsafe extern "C" fn evt_file_cleanup<L: DriverLogic>(file: WDFFILEOBJECT) {
    let Some(passive) = PassiveLevel::current() else {
        trace!(
            "{}: EvtFileCleanup above PASSIVE_LEVEL; handle left to close",
            L::IDENTITY.driver_name
        );
        return;
    };
    // SAFETY: `file` is valid for this callback, which close does not overlap.
    let Some(logic) = (unsafe { logic_of::<L>(file) }) else {
        return;
    };
    // SAFETY: as above.
    let Some(handle) = (unsafe { contexts::handle::<L>(file) }) else {
        return;
    };
    logic.cleanup(&handle, &passive);
}

/// `EvtFileClose`: takes the handle back from the context and gives it to the logic to
/// close (a timer service, for example, cleans up if that has not happened, and releases
/// the handle's registration). `PASSIVE_LEVEL`; if
/// called above it the handle is leaked rather than torn down at the wrong level.
///
/// # Safety
///
/// Called by the framework with a file object of this device, once, after every other
/// callback of that file object.
pub(super) unsafe extern "C" fn evt_file_close<L: DriverLogic>(file: WDFFILEOBJECT) {
    let Some(passive) = PassiveLevel::current() else {
        trace!(
            "{}: EvtFileClose above PASSIVE_LEVEL; the handle is leaked",
            L::IDENTITY.driver_name
        );
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
    let handle = unsafe { <L::Handle as HandleStorage>::from_raw(raw) };
    // SAFETY: `file` is valid for this callback (our contract).
    match unsafe { logic_of::<L>(file) } {
        Some(logic) => logic.close(handle, &passive),
        // Not reachable (a handle exists only if the logic did); dropping it at
        // PASSIVE_LEVEL is still correct.
        None => drop(handle),
    }
}
