//! The framework object contexts that hold the driver's state, and their typed getters:
//! the device's (the hosted logic, in a pool allocation of its own) and each file
//! object's (the logic's per-handle value, stored through [`HandleStorage`]). Every other
//! module of the shell reaches the logic through here; the request context, used only by
//! the cancel hand-off, is `request`'s own.
//!
//! The contexts hold pointers, not the values: a context type is one `static` per type
//! (the framework identifies it by address), and a shell generic over its logic cannot
//! declare a `static` per logic type.

use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::logic::{DriverLogic, HandleStorage};
use crate::sys::{WDFDEVICE, WDFFILEOBJECT, call_unsafe_wdf_function_binding};
use crate::wdf::ContextType;
use ktimer_kernel::pool::PoolArc;

/// The device's context: its logic, as `PoolArc::into_raw` of a `PoolArc<L>` made in
/// `device::create_device`.
///
/// The framework zero-fills context memory, so `logic` reads null until the logic is
/// stored, including on a device whose creation failed before that (the cleanup callback
/// then has nothing to do). Atomic because a cancel routine may read it while the
/// device's cleanup runs (see `device::evt_device_cleanup`).
pub(crate) struct DeviceContext {
    pub(crate) logic: AtomicPtr<c_void>,
}

pub(crate) static DEVICE_CONTEXT: ContextType<DeviceContext> =
    ContextType::new(c"ShellDeviceContext", &raw const DEVICE_CONTEXT);

/// The device context of `device`, if the framework gave it one. `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `device` is a valid device handle of this driver; the reference is used only while the
/// device exists (within one of its callbacks or its children's).
pub(crate) unsafe fn device_context<'a>(device: WDFDEVICE) -> Option<&'a DeviceContext> {
    // SAFETY: `device` is a valid handle (the caller's contract).
    let context = unsafe { DEVICE_CONTEXT.get(device.cast()) };
    // SAFETY: a non-null context pointer from the framework points to this device's
    // DeviceContext, zero-filled or initialised, alive as long as the device; it is only
    // ever accessed through atomics, so a shared reference is sound.
    unsafe { context.as_ref() }
}

/// The logic of `device`, if it has one. `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `device` is a valid device handle of a driver hosting `L`, and the reference is used
/// only within a framework callback of that device or of one of its children (queue, file
/// object, request), during which the logic is neither stored nor released (that happens
/// only in `device::create_device` and `device::evt_device_cleanup`, which no I/O
/// callback overlaps).
pub(crate) unsafe fn logic<'a, L: DriverLogic>(device: WDFDEVICE) -> Option<&'a L> {
    // SAFETY: the caller's contract.
    let context = unsafe { device_context(device) }?;
    let raw = context.logic.load(Ordering::Acquire);
    if raw.is_null() {
        return None;
    }
    // SAFETY: a non-null `logic` was stored from `PoolArc::<L>::into_raw` (`L` is the one
    // logic this driver hosts) and is released only by the device's cleanup, after it
    // clears the slot; taking the owner back without dropping it leaves the count as is.
    let owner = ManuallyDrop::new(unsafe { PoolArc::<L>::from_raw(raw) });
    // SAFETY: the value lives as long as the raw owner in the context, which outlives the
    // caller's callback (the caller's contract).
    Some(unsafe { &*PoolArc::as_ptr(&owner) })
}

/// A file object's context: the logic's handle, as [`HandleStorage::into_raw`] made it.
/// Null (the framework zero-fills the context) until the create succeeds, and again once
/// the close has taken it back.
pub(crate) struct FileContext {
    pub(crate) handle: *mut c_void,
}

pub(crate) static FILE_CONTEXT: ContextType<FileContext> =
    ContextType::new(c"ShellFileContext", &raw const FILE_CONTEXT);

/// The logic's handle stored in `file`'s context, borrowed, or `None` if the file object
/// has none (its create failed, or it was closed). `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `file` is null or a valid file object of a driver hosting `L`, and the borrow is used
/// only within a callback that the framework does not overlap with that file object's
/// `EvtFileClose` (every I/O and cleanup callback: close comes after all of them).
pub(crate) unsafe fn handle<L: DriverLogic>(
    file: WDFFILEOBJECT,
) -> Option<ManuallyDrop<L::Handle>> {
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
    // `HandleStorage::into_raw` of an `L::Handle` and is taken back only by
    // `file::evt_file_close`, which cannot run while the caller's callback does (the caller's
    // contract).
    Some(unsafe { <L::Handle as HandleStorage>::borrow_raw(raw) })
}

/// The logic of the device `file` belongs to. `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `file` is null or a valid file object of a driver hosting `L`; the reference is used
/// only within one of its callbacks (see [`logic`]).
pub(crate) unsafe fn logic_of<'a, L: DriverLogic>(file: WDFFILEOBJECT) -> Option<&'a L> {
    if file.is_null() {
        return None;
    }
    // SAFETY: `file` is a valid file object handle (the caller's contract).
    let device: WDFDEVICE =
        unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetDevice, file) };
    // SAFETY: a live file object's device is live; the reference stays within the
    // caller's callback (the caller's contract).
    unsafe { logic::<L>(device) }
}
