//! The dispatch routines: each IRP is turned into one call of the timer service, the same
//! calls the KMDF shell makes (`EvtDeviceFileCreate` → `open`, `EvtFileCleanup` → `cleanup`,
//! `EvtFileClose` → `close`, `EvtIoDeviceControl` → `ktimer_service::dispatch::dispatch`). All run at
//! `PASSIVE_LEVEL` (the I/O manager calls a top-level driver's dispatch routines there).

use alloc::boxed::Box;
use core::ffi::c_void;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use ktimer_abi::status::{STATUS_PENDING, STATUS_SUCCESS};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::{self, Pended};
use ktimer_service::{FileHandle, Service};
use windows_sys::Wdk::Foundation::{DEVICE_OBJECT, IRP};
use windows_sys::Win32::Foundation::{NTSTATUS, STATUS_INVALID_DEVICE_STATE};

use crate::irp;
use crate::request::WdmRequest;

/// The transfer-method bits of an IOCTL code, and `METHOD_BUFFERED`.
const METHOD_MASK: u32 = 0x3;
const METHOD_BUFFERED: u32 = 0x0;

/// The service behind the device, installed by `DriverEntry` before the device exists and
/// taken back by unload after it is gone.
static SERVICE: AtomicPtr<Service<Pended<WdmRequest>>> = AtomicPtr::new(null_mut());

/// Installs the service (`DriverEntry`). `PASSIVE_LEVEL`.
pub fn install(service: Box<Service<Pended<WdmRequest>>>) {
    SERVICE.store(Box::into_raw(service), Ordering::Release);
}

/// Takes the service back (unload, after the device is deleted). `PASSIVE_LEVEL`.
pub fn uninstall() -> Option<Box<Service<Pended<WdmRequest>>>> {
    let service = SERVICE.swap(null_mut(), Ordering::AcqRel);
    // SAFETY: a non-null pointer here came from `Box::into_raw` in `install`, and the swap
    // makes this the only taker.
    NonNull::new(service).map(|service| unsafe { Box::from_raw(service.as_ptr()) })
}

/// The installed service. Lives from `DriverEntry` to unload, which the I/O manager orders
/// after every IRP of the device. Any IRQL.
fn service() -> Option<&'static Service<Pended<WdmRequest>>> {
    let service = SERVICE.load(Ordering::Acquire);
    // SAFETY: installed from a Box that unload frees only after the last IRP (see above).
    unsafe { service.as_ref() }
}

/// Completes `request` with `status` and returns it (for synchronous outcomes).
///
/// # Safety
/// The caller owns the IRP and gives it up.
unsafe fn finish(request: *mut IRP, status: NTSTATUS) -> NTSTATUS {
    // SAFETY: the caller's contract.
    unsafe { irp::complete(request, status, 0) }
}

/// `IRP_MJ_CREATE`: opens a service handle and keeps it in the file object's `FsContext`.
pub unsafe extern "system" fn create(_device: *const DEVICE_OBJECT, request: *mut IRP) -> NTSTATUS {
    let (Some(service), Some(passive)) = (service(), PassiveLevel::current()) else {
        // SAFETY: we own the IRP handed to the dispatch routine.
        return unsafe { finish(request, STATUS_INVALID_DEVICE_STATE) };
    };
    match service.open(&passive) {
        Ok(file) => {
            // SAFETY: a live IRP in its dispatch routine, ours until completed.
            let fields = unsafe { &*request };
            // SAFETY: a create IRP.
            let context = unsafe { irp::file_context(fields) };
            // SAFETY: the new file object's context is ours to set during create.
            unsafe { context.write(file.into_raw()) };
            // SAFETY: we own the IRP.
            unsafe { finish(request, STATUS_SUCCESS) }
        }
        // SAFETY: we own the IRP.
        Err(status) => unsafe { finish(request, status) },
    }
}

/// The handle stored at create, borrowed.
///
/// # Safety
/// `request` is a live IRP on a file object that create opened and close has not closed.
unsafe fn borrowed_handle(
    request: &IRP,
) -> Option<core::mem::ManuallyDrop<FileHandle<Pended<WdmRequest>>>> {
    // SAFETY: the caller's contract.
    let context = unsafe { irp::file_context(request) };
    // SAFETY: the context was written at create.
    let raw: *mut c_void = unsafe { context.read() };
    if raw.is_null() {
        return None;
    }
    // SAFETY: `raw` came from `FileHandle::into_raw` at create and is taken back only at close.
    Some(unsafe { FileHandle::borrow_raw(raw) })
}

/// `IRP_MJ_CLEANUP` (last user handle closed): completes the handle's pending waits with
/// `STATUS_CANCELLED` and destroys its timers.
pub unsafe extern "system" fn cleanup(
    _device: *const DEVICE_OBJECT,
    request: *mut IRP,
) -> NTSTATUS {
    if let (Some(service), Some(passive)) = (service(), PassiveLevel::current()) {
        // SAFETY: a live IRP in its dispatch routine, ours until completed.
        let fields = unsafe { &*request };
        // SAFETY: a cleanup IRP on a file object create opened.
        if let Some(file) = unsafe { borrowed_handle(fields) } {
            service.cleanup(&file, &passive);
        }
    }
    // SAFETY: we own the IRP.
    unsafe { finish(request, STATUS_SUCCESS) }
}

/// `IRP_MJ_CLOSE` (last reference to the file object gone): forgets the handle.
pub unsafe extern "system" fn close(_device: *const DEVICE_OBJECT, request: *mut IRP) -> NTSTATUS {
    // SAFETY: a live IRP in its dispatch routine, ours until completed.
    let fields = unsafe { &*request };
    // SAFETY: a close IRP on a file object create opened.
    let context = unsafe { irp::file_context(fields) };
    // SAFETY: the context was written at create; close is its last user.
    let raw: *mut c_void = unsafe { context.read() };
    if let (false, Some(service), Some(passive)) =
        (raw.is_null(), service(), PassiveLevel::current())
    {
        // SAFETY: as above; cleared right after so it is taken back once.
        unsafe { context.write(null_mut()) };
        // SAFETY: `raw` came from `FileHandle::into_raw` at create and is taken back once.
        let file = unsafe { FileHandle::from_raw(raw) };
        service.close(file, &passive);
    }
    // SAFETY: we own the IRP.
    unsafe { finish(request, STATUS_SUCCESS) }
}

/// `IRP_MJ_DEVICE_CONTROL`: the service's dispatch entry. The IRP is marked pending first
/// and the routine always returns `STATUS_PENDING`: a wait may be completed from a DPC
/// before `dispatch` returns, and an IRP marked pending may be completed at any time (the
/// I/O manager then takes the status from the IRP).
pub unsafe extern "system" fn device_control(
    _device: *const DEVICE_OBJECT,
    request: *mut IRP,
) -> NTSTATUS {
    let Some(request) = NonNull::new(request) else {
        return STATUS_INVALID_DEVICE_STATE;
    };
    let (Some(service), Some(passive)) = (service(), PassiveLevel::current()) else {
        // SAFETY: we own the IRP.
        return unsafe { finish(request.as_ptr(), STATUS_INVALID_DEVICE_STATE) };
    };
    // SAFETY: a live device-control IRP in its dispatch routine.
    let fields = unsafe { request.as_ref() };
    // SAFETY: as above; on a file object create opened.
    let Some(file) = (unsafe { borrowed_handle(fields) }) else {
        // SAFETY: we own the IRP.
        return unsafe { finish(request.as_ptr(), STATUS_INVALID_DEVICE_STATE) };
    };
    // SAFETY: as above.
    let mut control = unsafe { irp::device_control(fields) };
    if control.code & METHOD_MASK != METHOD_BUFFERED {
        // Not a code of the ABI (all are METHOD_BUFFERED), and its buffers are not the
        // system buffer: present none, so `dispatch` rejects the unknown code.
        control.input_length = 0;
        control.output_length = 0;
        control.system_buffer = null_mut();
    }
    // SAFETY: as above; not completed yet.
    unsafe { irp::mark_pending(fields) };
    // SAFETY: we hand our ownership of the IRP to the request, whose buffer description is
    // the system buffer of a METHOD_BUFFERED request (or none, above).
    let wrapped = unsafe { WdmRequest::new(request, &control) };
    let _status = dispatch::dispatch(service, &file, control.code, wrapped, &passive);
    STATUS_PENDING
}

/// For the cancel routine: takes the parked request with `key` back from the service.
/// `DISPATCH_LEVEL` (the service takes the handle's spin lock).
///
/// # Safety
/// `request` is the live, cancelled IRP (owned by the cancel routine) on an open file object.
pub unsafe fn cancel_wait(request: NonNull<IRP>, key: usize) -> Option<WdmRequest> {
    let service = service()?;
    // SAFETY: the caller's contract: a live IRP the cancel routine owns.
    let fields = unsafe { request.as_ref() };
    // SAFETY: the caller's contract.
    let file = unsafe { borrowed_handle(fields) }?;
    dispatch::cancel_wait(service, &file, key)
}
