//! THE dispatch entry: every front end (the KMDF shell, on Windows or on kernel-sim's KMDF
//! model, and the Wine WDM front end) hands its device-control requests to [`dispatch`].
//!
//! A front end implements [`IoRequest`] for its request type (KMDF: a `WDFREQUEST`; WDM: an
//! `IRP`). `dispatch` decodes the input, runs the operation on the
//! [`Service`], encodes the output and completes the request, or, for a wait that cannot be
//! satisfied yet, parks it in the handle's wait list, from where the expiry path, the cancel
//! path ([`Service::cancel_wait`]), handle cleanup ([`Service::cleanup`]) or unload
//! ([`Service::unload`]) completes it exactly once.
//!
//! # Who completes a pending wait: the claim protocol
//!
//! A parked request is cancelable by the I/O system (`CancelIoEx`, thread exit). Two paths
//! can then race to finish it: the service (records arrived, handle closed) and the front
//! end's cancel routine. The rule that makes exactly one of them complete it, and lose no
//! record:
//! - The service parks a request under the handle's spin lock, calling
//!   [`IoRequest::mark_cancelable`] there: if the request was already cancelled the service
//!   completes it with `STATUS_CANCELLED` at once; otherwise the cancel routine, which takes
//!   the same lock in [`Service::cancel_wait`], can only run after the request is in the list.
//! - Before the service writes records into a parked request it **claims** it with
//!   [`IoRequest::claim`] (KMDF: `WdfRequestUnmarkCancelable`). If the claim fails, the
//!   cancel routine owns the request: the service drops its handle to it without completing
//!   it and without taking any record from the ring.
//! - The cancel routine calls [`Service::cancel_wait`]. `Some(request)`: it was still parked,
//!   complete it with `STATUS_CANCELLED`. `None`: the service has already taken it out of
//!   its list, and its claim fails (or has failed): the service will drop its `R` without
//!   completing it, and the request must be completed with `STATUS_CANCELLED` exactly once,
//!   after both sides have let go of it. How is the front end's business: the KMDF shell's
//!   cancel routine cannot complete it at once, because the service's `R` may still call
//!   `WdfRequestUnmarkCancelable` on it, so the cancel routine and the dropped `R` each
//!   release it once and the second release completes it (`crate::kmdf::request`).

use ktimer_abi::codec::{Decode, DecodeError, Encode};
use ktimer_abi::ioctl::{
    IOCTL_KTIMER_CANCEL, IOCTL_KTIMER_CLOSE, IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO,
    IOCTL_KTIMER_QUERY, IOCTL_KTIMER_SET, IOCTL_KTIMER_WAIT,
};
use ktimer_abi::status::{
    NtStatus, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST, STATUS_SUCCESS,
};
use ktimer_abi::{CreateRequest, SetRequest, TimerRequest, WaitRequest};

use crate::{FileHandle, Service};
use ktimer_kernel::irql::PassiveLevel;

/// A device-control request as a front end's I/O system delivers it (`METHOD_BUFFERED`).
///
/// Dropping a request must **not** complete it: the service drops a request exactly when
/// the front end's cancel routine owns it (see the module documentation).
pub trait IoRequest: Send + Sized + 'static {
    /// The input bytes (`InputBufferLength` of them; empty if none). Called once, by
    /// [`dispatch`], at `PASSIVE_LEVEL`, before [`IoRequest::output`]. With `METHOD_BUFFERED`
    /// the input and the output share one system buffer: the service copies the input out
    /// before it asks for the output, and never holds both.
    fn input(&self) -> &[u8];

    /// The output buffer (`OutputBufferLength` bytes; empty if none). `<= DISPATCH_LEVEL`
    /// (the expiry path fills a claimed wait from its DPC, under the handle's spin lock).
    fn output(&mut self) -> &mut [u8];

    /// Completes the request with `status`, `information` bytes of output. `<=
    /// DISPATCH_LEVEL`; called at most once, never under the service's locks.
    fn complete(self, status: NtStatus, information: usize);

    /// A value that identifies this request among the handle's pending ones, for
    /// [`Service::cancel_wait`] (KMDF: the `WDFREQUEST` handle value). Any IRQL.
    fn key(&self) -> usize;

    /// Lets the I/O system cancel the request (KMDF: `WdfRequestMarkCancelableEx` with the
    /// cancel routine). Returns `false` if it has already been cancelled; the service then
    /// completes it with `STATUS_CANCELLED`. Called once, at `DISPATCH_LEVEL` under the
    /// handle's spin lock: it must not call into the service.
    fn mark_cancelable(&mut self) -> bool;

    /// Takes the request back from the I/O system's cancellation (KMDF:
    /// `WdfRequestUnmarkCancelable`, which returns `STATUS_CANCELLED` when the cancel routine
    /// has it). `true`: the service owns it again and will complete it. `false`: the cancel
    /// routine owns it; the service drops it uncompleted. `<= DISPATCH_LEVEL`, possibly under
    /// the handle's spin lock: it must not call into the service.
    fn claim(&mut self) -> bool;
}

/// A decoded request, copied out of the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `IOCTL_KTIMER_GET_INFO`.
    GetInfo,
    /// `IOCTL_KTIMER_CREATE`.
    Create(CreateRequest),
    /// `IOCTL_KTIMER_SET`.
    Set(SetRequest),
    /// `IOCTL_KTIMER_CANCEL`.
    Cancel(TimerRequest),
    /// `IOCTL_KTIMER_QUERY`.
    Query(TimerRequest),
    /// `IOCTL_KTIMER_WAIT`.
    Wait(WaitRequest),
    /// `IOCTL_KTIMER_CLOSE`.
    Close(TimerRequest),
}

impl Operation {
    /// Decodes an input buffer for `code`: the code, the header, the length and the field
    /// values (steps 1-5 of the order in `docs/PROTOCOL.md`). Any IRQL; never panics.
    ///
    /// # Errors
    /// The documented status of the first check that fails.
    pub fn decode(code: u32, input: &[u8]) -> Result<Self, NtStatus> {
        fn typed<T: Decode>(input: &[u8]) -> Result<T, NtStatus> {
            T::decode(input).map_err(DecodeError::status)
        }
        match code {
            IOCTL_KTIMER_GET_INFO => {
                if input.is_empty() {
                    Ok(Self::GetInfo)
                } else {
                    Err(STATUS_INFO_LENGTH_MISMATCH)
                }
            }
            IOCTL_KTIMER_CREATE => typed(input).map(Self::Create),
            IOCTL_KTIMER_SET => typed(input).map(Self::Set),
            IOCTL_KTIMER_CANCEL => typed(input).map(Self::Cancel),
            IOCTL_KTIMER_QUERY => typed(input).map(Self::Query),
            IOCTL_KTIMER_WAIT => typed(input).map(Self::Wait),
            IOCTL_KTIMER_CLOSE => typed(input).map(Self::Close),
            _ => Err(STATUS_INVALID_DEVICE_REQUEST),
        }
    }
}

/// The outcome of an operation that completes at once: status and bytes of output written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The status to complete with.
    pub status: NtStatus,
    /// Bytes of output written.
    pub information: usize,
}

impl Completion {
    /// A failure: no output.
    #[must_use]
    pub const fn failed(status: NtStatus) -> Self {
        Self {
            status,
            information: 0,
        }
    }

    /// Success with `information` bytes written.
    #[must_use]
    pub const fn success(information: usize) -> Self {
        Self {
            status: STATUS_SUCCESS,
            information,
        }
    }
}

/// Encodes a response into an output buffer: success with its size, or
/// `STATUS_BUFFER_TOO_SMALL` (nothing written).
pub(crate) fn respond<T: Encode>(response: &T, output: &mut [u8]) -> Completion {
    match response.encode(output) {
        Ok(written) => Completion::success(written),
        Err(error) => Completion::failed(error.status()),
    }
}

/// The dispatch entry: runs one device-control request of the handle `file` and completes
/// it, or parks it (a wait) to be completed later. Returns the status the request was
/// completed with, or `STATUS_PENDING` if it was parked.
///
/// `PASSIVE_LEVEL` (closing a timer flushes its DPCs): the KMDF shell configures its queue
/// with `WdfExecutionLevelPassive` so that `EvtIoDeviceControl` runs there.
pub fn dispatch<R: IoRequest>(
    service: &Service<R>,
    file: &FileHandle<R>,
    code: u32,
    mut request: R,
    passive: &PassiveLevel,
) -> NtStatus {
    let operation = match Operation::decode(code, request.input()) {
        Ok(operation) => operation,
        Err(status) => {
            request.complete(status, 0);
            return status;
        }
    };
    if let Operation::Wait(wait) = operation {
        return service.wait(file, &wait, request);
    }
    let completion = service.execute(file, &operation, request.output(), passive);
    request.complete(completion.status, completion.information);
    completion.status
}
