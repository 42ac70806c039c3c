//! The framework object contexts that hold the driver's state, and their typed getters:
//! the device's (the hosted logic, `crate::Logic`) and each file object's (the logic's
//! per-handle value, stored through [`HandleStorage`]). Every other module of the shell
//! reaches the logic through here; the request context, used only by the cancel hand-off,
//! is `request`'s own.

use core::ffi::c_void;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::Logic;
use crate::logic::{DriverLogic, HandleStorage};
use crate::sys::{WDFDEVICE, WDFFILEOBJECT, call_unsafe_wdf_function_binding};
use crate::wdf::ContextType;

/// The hosted logic's per-handle value.
pub(crate) type LogicHandle = <Logic as DriverLogic>::Handle;

/// The device's context: the hosted logic.
///
/// The framework zero-fills context memory, so `ready` reads `false` until
/// `device::create_device` has stored the service, including on a device whose creation failed
/// before that (the cleanup callback then has nothing to do). Atomic because a cancel
/// routine may read it while the device's cleanup runs (see `device::evt_device_cleanup`).
pub(crate) struct DeviceContext {
    pub(crate) ready: AtomicBool,
    pub(crate) service: MaybeUninit<Logic>,
}

pub(crate) static DEVICE_CONTEXT: ContextType<DeviceContext> =
    ContextType::new(c"KTimerDeviceContext", &raw const DEVICE_CONTEXT);

/// The logic of `device`, if it has one. `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `device` is a valid ktimer device handle and the reference is used only within a
/// framework callback of that device or of one of its children (queue, file object,
/// request), during which the device and its context exist and the service is neither
/// stored nor removed (that happens only in `device::create_device` and
/// `device::evt_device_cleanup`, which no I/O callback overlaps).
pub(crate) unsafe fn service<'a>(device: WDFDEVICE) -> Option<&'a Logic> {
    // SAFETY: `device` is a valid handle (the caller's contract).
    let context = unsafe { DEVICE_CONTEXT.get(device.cast()) };
    // SAFETY: a non-null context pointer from the framework points to this device's
    // DeviceContext, zero-filled or initialised, alive as long as the device; nothing
    // writes it while the caller's callback runs (the caller's contract).
    let context = unsafe { context.as_ref() }?;
    if !context.ready.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: `ready` is set only after `service` was written, and cleared before it is
    // moved out.
    Some(unsafe { context.service.assume_init_ref() })
}

/// A file object's context: the logic's handle, as [`HandleStorage::into_raw`] made it.
/// Null (the framework zero-fills the context) until the create succeeds, and again once
/// the close has taken it back.
pub(crate) struct FileContext {
    pub(crate) handle: *mut c_void,
}

pub(crate) static FILE_CONTEXT: ContextType<FileContext> =
    ContextType::new(c"KTimerFileContext", &raw const FILE_CONTEXT);

/// The service handle stored in `file`'s context, borrowed, or `None` if the file object
/// has none (its create failed, or it was closed). `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `file` is null or a valid ktimer file object, and the borrow is used only within a
/// callback that the framework does not overlap with that file object's `EvtFileClose`
/// (every I/O and cleanup callback: close comes after all of them).
pub(crate) unsafe fn handle(file: WDFFILEOBJECT) -> Option<ManuallyDrop<LogicHandle>> {
    if file.is_null() {
        return None;
    }
    // SAFETY: `file` is a valid file object handle (the caller's contract).
    let context = unsafe { FILE_CONTEXT.get(file.cast()) };
    // SAFETY: a non-null context pointer points to this file object's FileContext; only
    // create (before) and close (after every other callback) write it.
    let raw = unsafe { context.as_ref() }?.handle;
    if raw.is_null() {
        return None;
    }
    // SAFETY: `raw` was stored by `file::evt_device_file_create` from
    // `HandleStorage::into_raw` of a `LogicHandle` and is taken back only by
    // `file::evt_file_close`, which cannot run while the caller's callback does (the caller's
    // contract).
    Some(unsafe { <LogicHandle as HandleStorage>::borrow_raw(raw) })
}

/// The logic of the device `file` belongs to. `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `file` is null or a valid ktimer file object; the reference is used only within one of
/// its callbacks (see [`service`]).
pub(crate) unsafe fn service_of<'a>(file: WDFFILEOBJECT) -> Option<&'a Logic> {
    if file.is_null() {
        return None;
    }
    // SAFETY: `file` is a valid file object handle (the caller's contract).
    let device: WDFDEVICE =
        unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetDevice, file) };
    // SAFETY: a live file object's device is live; the reference stays within the
    // caller's callback (the caller's contract).
    unsafe { service(device) }
}
