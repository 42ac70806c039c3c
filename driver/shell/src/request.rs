//! Device-control requests: `EvtIoDeviceControl` hands each `WDFREQUEST`, wrapped as a
//! [`Request`], to the hosted logic (`crate::logic`); [`Request`] offers its buffers,
//! completion, and, for requests the logic parks, the cancel key, cancelability
//! (`WdfRequestMarkCancelableEx`) and claim (`WdfRequestUnmarkCancelable`).
//! `EvtRequestCancel` ends a parked request the I/O system cancels (`CancelIoEx`, thread
//! exit).
//!
//! # Completing a cancelled request exactly once
//!
//! The logic's claim protocol (in the template's timer driver, its service's `waits`
//! module) decides between itself and the cancel routine. One window remains on the KMDF side: the logic may
//! have taken a request out of its list and not yet called [`Request::claim`]
//! (`WdfRequestUnmarkCancelable`) when the cancel routine runs and finds the request gone. If
//! the cancel routine completed the request then, the claim would touch a completed request.
//! So in that case neither side completes alone: each bumps a counter in the request's
//! context, and the second one completes the request with `STATUS_CANCELLED` — the cancel
//! routine when it finds the request gone, and the logic's [`Request`] when it is dropped
//! after a lost claim.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::sys::{
    NT_SUCCESS, NTSTATUS, PVOID, STATUS_CANCELLED, STATUS_SUCCESS, ULONG_PTR, WDFREQUEST,
    call_unsafe_wdf_function_binding,
};

use crate::wdf::ContextType;

/// Every request's context (set for the device with `WdfDeviceInitSetRequestAttributes`):
/// the cancel hand-off counter described in the module documentation.
pub(crate) struct RequestContext {
    cancel_releases: AtomicU32,
}

pub(crate) static REQUEST_CONTEXT: ContextType<RequestContext> =
    ContextType::new(c"ShellRequestContext", &raw const REQUEST_CONTEXT);

/// Who may complete a [`Request`] right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The driver (the logic, or this shell): not cancelable.
    Driver,
    /// Marked cancelable: the cancel routine may run.
    Cancelable,
    /// The claim failed: the cancel routine runs or has run; releasing (dropping) this
    /// value is this side's half of the cancel hand-off.
    CancelRoutine,
}

/// A `WDFREQUEST` of `IRP_MJ_DEVICE_CONTROL` (`METHOD_BUFFERED`), as the logic sees it.
/// The logic completes it exactly once ([`Request::complete`]); dropping it uncompleted
/// leaves the caller's I/O pending (except after a lost [`Request::claim`], where the drop
/// is this side's half of the cancel hand-off).
pub struct Request {
    handle: WDFREQUEST,
    /// The system buffer as input: `input_length` bytes (null and zero if none).
    input: *const u8,
    input_length: usize,
    /// The same system buffer as output: `output_length` bytes (null and zero if none).
    output: *mut u8,
    output_length: usize,
    owner: Owner,
    /// The cancel routine to mark it cancelable with (the queue's `EvtRequestCancel`).
    cancel: CancelRoutine,
}

/// An `EvtRequestCancel` routine (`PFN_WDF_REQUEST_CANCEL`'s function type).
pub(crate) type CancelRoutine = unsafe extern "C" fn(WDFREQUEST);

// SAFETY: a framework request may be completed, marked and unmarked from any thread, and
// its system buffer is nonpaged pool, valid until completion. A `Request` is the only
// value that refers to its buffers, and it is moved between threads, never shared.
unsafe impl Send for Request {}

impl Request {
    /// Wraps a request delivered to `EvtIoDeviceControl`, retrieving its buffers; `cancel`
    /// is the routine the I/O system calls if it cancels the request while the logic has
    /// it parked. `PASSIVE_LEVEL` (any IRQL `<= DISPATCH_LEVEL` would do).
    ///
    /// # Safety
    ///
    /// `handle` is a request the driver owns and has not completed, whose buffers are at
    /// least `input_length` and `output_length` bytes (zero: not retrieved); the returned
    /// value becomes the only owner of that request. `cancel` takes the request back from
    /// the logic (`DriverLogic::cancel`) and, when the logic no longer has it, calls
    /// [`release_by_cancel_routine`].
    pub(crate) unsafe fn new(
        handle: WDFREQUEST,
        input_length: usize,
        output_length: usize,
        cancel: CancelRoutine,
    ) -> Self {
        let mut input: PVOID = core::ptr::null_mut();
        let mut input_found = 0_usize;
        if input_length > 0 {
            // SAFETY: `handle` is an owned, uncompleted request (our contract); the two out
            // pointers are locals.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveInputBuffer,
                    handle,
                    input_length,
                    &raw mut input,
                    &raw mut input_found,
                )
            };
            if !NT_SUCCESS(status) || input.is_null() {
                input = core::ptr::null_mut();
                input_found = 0;
            }
        }
        let mut output: PVOID = core::ptr::null_mut();
        let mut output_found = 0_usize;
        if output_length > 0 {
            // SAFETY: as above.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveOutputBuffer,
                    handle,
                    output_length,
                    &raw mut output,
                    &raw mut output_found,
                )
            };
            if !NT_SUCCESS(status) || output.is_null() {
                output = core::ptr::null_mut();
                output_found = 0;
            }
        }
        Self {
            handle,
            input: input.cast_const().cast(),
            input_length: input_found,
            output: output.cast(),
            output_length: output_found,
            owner: Owner::Driver,
            cancel,
        }
    }

    /// Completes the request with `status` and `information` bytes of output. Called once,
    /// by the logic (through the dispatcher's `IoRequest::complete`) or by the shell's cancel
    /// routine for a request the logic gave back, only while the driver, not the cancel
    /// routine, owns it. `<= DISPATCH_LEVEL`.
    pub fn complete(mut self, status: NTSTATUS, information: usize) {
        // `usize` and `ULONG_PTR` are both 64 bits on the targets this driver builds for.
        let information = ULONG_PTR::try_from(information).unwrap_or(0);
        // Completed by this call: dropping `self` afterwards must not release it again.
        self.owner = Owner::Driver;
        // SAFETY: `handle` is an uncompleted request this value owns; `complete` consumes it,
        // so it runs once, and only while the driver (not the cancel routine) owns it.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCompleteWithInformation,
                self.handle,
                status,
                information
            );
        }
    }
}

impl Request {
    /// The input bytes (`METHOD_BUFFERED`; empty if none). `PASSIVE_LEVEL` (dispatch).
    #[must_use]
    pub fn input(&self) -> &[u8] {
        if self.input.is_null() {
            return &[];
        }
        // SAFETY: `input` is the system buffer WdfRequestRetrieveInputBuffer returned,
        // `input_length` bytes, valid until the request completes, which consumes `self`.
        // It is the same memory as `output` (METHOD_BUFFERED: the framework returns the
        // same system-buffer pointer twice, so both stay valid side by side); the borrow of
        // `self` keeps `output()` (which needs `&mut self`) from making a mutable view while
        // this shared one lives.
        unsafe { core::slice::from_raw_parts(self.input, self.input_length) }
    }

    /// The output buffer (`METHOD_BUFFERED`; empty if none). `<= DISPATCH_LEVEL`.
    pub fn output(&mut self) -> &mut [u8] {
        if self.output.is_null() {
            return &mut [];
        }
        // SAFETY: `output` is the system buffer WdfRequestRetrieveOutputBuffer returned,
        // `output_length` bytes, writable and valid until the request completes, which
        // consumes `self`; `&mut self` makes this the only live view of it.
        unsafe { core::slice::from_raw_parts_mut(self.output, self.output_length) }
    }

    /// The value that identifies the request among a handle's parked ones: the
    /// `WDFREQUEST` handle. Any IRQL.
    #[must_use]
    pub fn key(&self) -> usize {
        self.handle.addr()
    }

    /// `WdfRequestMarkCancelableEx` with the queue's cancel routine; `false` if the
    /// request was already cancelled. `<= DISPATCH_LEVEL`.
    pub fn mark_cancelable(&mut self) -> bool {
        // The cancel routine can run only after a successful mark, so the hand-off counter
        // is reset before it can be used.
        // SAFETY: `handle` is a valid request created with REQUEST_CONTEXT.
        let context = unsafe { REQUEST_CONTEXT.get(self.handle.cast()) };
        // SAFETY: a non-null context pointer points to this request's RequestContext, alive
        // until the request completes; its only field is an atomic.
        if let Some(context) = unsafe { context.as_ref() } {
            context.cancel_releases.store(0, Ordering::Relaxed);
        }
        // SAFETY: `handle` is an uncompleted request this value owns. The Ex variant never
        // calls the cancel routine from inside this call (it returns STATUS_CANCELLED for
        // a request already cancelled), so it is safe under the logic's lock.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestMarkCancelableEx,
                self.handle,
                Some(self.cancel)
            )
        };
        if NT_SUCCESS(status) {
            self.owner = Owner::Cancelable;
            true
        } else {
            // STATUS_CANCELLED: already cancelled; the logic completes it as such.
            false
        }
    }

    /// `WdfRequestUnmarkCancelable`: `true` if the driver owns the request again, `false`
    /// if the cancel routine has it. `<= DISPATCH_LEVEL`.
    pub fn claim(&mut self) -> bool {
        if self.owner != Owner::Cancelable {
            return true;
        }
        // SAFETY: `handle` is an uncompleted request marked cancelable by this value: the
        // cancel routine, even if it runs, does not complete it before this value is
        // released (the hand-off in the module documentation).
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, self.handle) };
        // Only STATUS_SUCCESS gives the request back. STATUS_CANCELLED: the cancel routine
        // will run or has run. Any other status (KMDF's verifier returns
        // STATUS_INVALID_DEVICE_REQUEST for a request that is no longer cancelable, which is
        // what a cancel routine that already ran leaves behind) also means this side does
        // not own it: completing it could complete it twice, while leaving it to the
        // hand-off completes it once (or, if no cancel routine ever runs, leaves it pending,
        // which a handle close or device removal still ends).
        if status == STATUS_SUCCESS {
            self.owner = Owner::Driver;
            true
        } else {
            self.owner = Owner::CancelRoutine;
            false
        }
    }
}

impl Drop for Request {
    /// Dropping a request never completes it, except for this side's half of the cancel
    /// hand-off after a lost claim. `<= DISPATCH_LEVEL`.
    fn drop(&mut self) {
        if self.owner == Owner::CancelRoutine {
            // SAFETY: the request is not completed: after a lost claim only the hand-off
            // completes it, and this is one of its two releases.
            unsafe { release_cancelled(self.handle, Releaser::Service) };
        }
    }
}

/// The two sides of the cancel hand-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Releaser {
    /// The cancel routine, which found the wait gone from the logic's list.
    CancelRoutine,
    /// The logic's [`Request`], dropped after its lost claim.
    Service,
}

/// One of the two releases of a cancelled request whose wait the logic had already
/// taken out of its list; the second completes it with `STATUS_CANCELLED`.
/// `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `handle` is an uncompleted, cancelled request; each side calls this once for it.
unsafe fn release_cancelled(handle: WDFREQUEST, releaser: Releaser) {
    // SAFETY: `handle` is a valid request created with REQUEST_CONTEXT (our contract).
    let context = unsafe { REQUEST_CONTEXT.get(handle.cast()) };
    // SAFETY: a non-null context pointer points to this request's RequestContext, alive
    // until the request completes; its only field is an atomic.
    let second = match unsafe { context.as_ref() } {
        Some(context) => context.cancel_releases.fetch_add(1, Ordering::AcqRel) == 1,
        // Not reachable: every request of this device has the context. Without one, the
        // cancel routine alone completes, so that the request is completed at most once.
        None => releaser == Releaser::CancelRoutine,
    };
    if second {
        // SAFETY: both sides have released the request; it is completed once, here.
        unsafe { complete(handle, STATUS_CANCELLED) };
    }
}

/// The cancel routine's release of a cancelled request whose wait the logic had already
/// taken out of its list, or that it cannot reach (module documentation). `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `handle` is an uncompleted, cancelled request, marked cancelable by a [`Request`]; the
/// cancel routine calls this once for it.
pub(crate) unsafe fn release_by_cancel_routine(handle: WDFREQUEST) {
    // SAFETY: the caller's contract; the request's [`Request`] does the other release.
    unsafe { release_cancelled(handle, Releaser::CancelRoutine) };
}

/// Completes a request with `status` and no output. `<= DISPATCH_LEVEL`.
///
/// # Safety
///
/// `handle` is an uncompleted request the caller owns; it is invalid afterwards.
pub(crate) unsafe fn complete(handle: WDFREQUEST, status: NTSTATUS) {
    // SAFETY: the caller's contract.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, handle, status) };
}
