//! [`WdmRequest`]: an `IRP_MJ_DEVICE_CONTROL` IRP as the timer service's
//! [`IoRequest`](ktimer_service::dispatch::IoRequest), with the WDM cancel protocol behind
//! [`CancelableRequest`](ktimer_service::dispatch::CancelableRequest)'s
//! `mark_cancelable`/`claim` (the service's claim protocol, `ktimer_service::dispatch`, maps onto
//! `IoSetCancelRoutine` exactly as it maps onto KMDF's `WdfRequestMarkCancelableEx` /
//! `WdfRequestUnmarkCancelable`).

use core::ptr::NonNull;

use ktimer_abi::status::{NtStatus, STATUS_CANCELLED};
use ktimer_service::dispatch::{CancelableRequest, IoRequest};
use windows_sys::Wdk::Foundation::{DEVICE_OBJECT, IRP};

use crate::irp;

/// A device-control IRP the front end owns until it completes it.
///
/// Dropping it does not complete the IRP: the service drops a request exactly when the
/// cancel routine owns it (see `ktimer_service::dispatch`).
pub struct WdmRequest {
    irp: NonNull<IRP>,
    input_length: usize,
    output_length: usize,
    /// The system buffer (`METHOD_BUFFERED`), null when both lengths are 0.
    system_buffer: *mut u8,
}

// SAFETY: an IRP is not tied to a thread: the I/O manager lets any thread complete it, and
// the service hands a request from the dispatch thread to the DPC that completes it.
unsafe impl Send for WdmRequest {}

impl WdmRequest {
    /// Wraps a device-control IRP.
    ///
    /// # Safety
    /// `request` is a live `IRP_MJ_DEVICE_CONTROL` IRP in its dispatch routine, with a
    /// `METHOD_BUFFERED` code, owned by the caller, who hands ownership to the result.
    pub unsafe fn new(request: NonNull<IRP>, control: &irp::DeviceControl) -> Self {
        Self {
            irp: request,
            input_length: control.input_length,
            output_length: control.output_length,
            system_buffer: control.system_buffer,
        }
    }

    /// The system buffer's first `length` bytes, or nothing if there is no buffer.
    fn buffer_parts(&self, length: usize) -> Option<(*mut u8, usize)> {
        (length != 0 && !self.system_buffer.is_null()).then_some((self.system_buffer, length))
    }
}

impl IoRequest for WdmRequest {
    fn input(&self) -> &[u8] {
        let Some((buffer, length)) = self.buffer_parts(self.input_length) else {
            return &[];
        };
        // SAFETY: for METHOD_BUFFERED the I/O manager allocated the system buffer with room
        // for max(input, output) bytes and copied the input into it; it lives until the IRP
        // is completed, which consumes `self`. The service never holds the input and the
        // output slice at once (IoRequest's contract), so they never alias.
        unsafe { core::slice::from_raw_parts(buffer, length) }
    }

    fn output(&mut self) -> &mut [u8] {
        let Some((buffer, length)) = self.buffer_parts(self.output_length) else {
            return &mut [];
        };
        // SAFETY: as for `input`; `&mut self` makes this the only slice of the buffer.
        unsafe { core::slice::from_raw_parts_mut(buffer, length) }
    }

    fn complete(self, status: NtStatus, information: usize) {
        // SAFETY: we own the live IRP; `self` is consumed, so it is completed once.
        unsafe { irp::complete(self.irp.as_ptr(), status, information) };
    }
}

impl CancelableRequest for WdmRequest {
    fn key(&self) -> usize {
        self.irp.as_ptr().addr()
    }

    fn mark_cancelable(&mut self) -> bool {
        // SAFETY: we own the live IRP; the routine has the DRIVER_CANCEL signature.
        unsafe { irp::set_cancel_routine(self.irp, Some(cancel_pending_wait)) };
        // SAFETY: as above.
        if unsafe { irp::cancel_requested(self.irp) } {
            // Cancelled before (or while) the routine was set. If we can take the routine back,
            // the I/O manager will not call it: the service completes the IRP. Otherwise the
            // cancel routine is running or about to: it owns the IRP, and finds it parked.
            // SAFETY: as above.
            return unsafe { irp::set_cancel_routine(self.irp, None) }.is_none();
        }
        true
    }

    fn claim(&mut self) -> bool {
        // SAFETY: the IRP is live (the service still holds it); taking the routine back
        // succeeds exactly when the cancel routine has not been, and will not be, called.
        unsafe { irp::set_cancel_routine(self.irp, None) }.is_some()
    }
}

/// The cancel routine of a pending wait (`CancelIoEx`, thread exit). Runs with the I/O
/// manager's cancel spin lock held, which it releases first; then it asks the service for
/// the request and completes it with `STATUS_CANCELLED` either way (see `ktimer_service::dispatch`).
/// `DISPATCH_LEVEL`.
///
/// # Safety
/// Called by the I/O manager only, for an IRP whose cancel routine this was.
unsafe extern "system" fn cancel_pending_wait(_device: *mut DEVICE_OBJECT, request: *mut IRP) {
    let Some(request) = NonNull::new(request) else {
        return;
    };
    // SAFETY: the I/O manager calls us with the cancel spin lock held, to be released with
    // the IRQL it saved in the IRP.
    unsafe { irp::release_cancel_spin_lock(request) };
    let key = request.as_ptr().addr();
    // SAFETY: the IRP is live (we own it now); its file object is open (a pending IRP holds
    // a reference), so its context is the handle stored at create.
    let returned = unsafe { crate::dispatch::cancel_wait(request, key) };
    match returned {
        Some(parked) => parked.complete(STATUS_CANCELLED, 0),
        // SAFETY: the service lost the claim and dropped its copy: we own the IRP.
        None => unsafe {
            irp::complete(request.as_ptr(), STATUS_CANCELLED, 0);
        },
    }
}
