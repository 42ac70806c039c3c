//! THE dispatch entry: every front end (the KMDF shell, on Windows or on kernel-sim's KMDF
//! model, and the Wine WDM front end) hands its device-control requests to [`dispatch`].
//!
//! One request flows down once and its answer up once: [`dispatch`] decodes the input
//! ([`Request::decode`], generated from the ABI's IOCTL declaration), validates what depends on the driver's configuration and the
//! output size (the order of `docs/PROTOCOL.md`), calls one operation of the [`Service`],
//! which returns its typed response or a status, encodes the response and completes the
//! request. The service never encodes or completes, with one exception: a wait it cannot
//! answer at once is parked, and completed later through the wait port
//! ([`PendingWait`], implemented here by [`Pended`]) by the expiry path, the cancel path
//! ([`cancel_wait`]), handle cleanup or unload, exactly once (the claim protocol:
//! [`crate::waits`]).
//!
//! A front end implements [`IoRequest`] for its request type (KMDF: a `WDFREQUEST`; WDM:
//! an `IRP`): buffers and completion. A front end whose requests can pend (this driver's
//! waits) also implements [`CancelableRequest`]: the cancel key and the I/O system's
//! cancelability, the only wait-specific methods. Its service is a `Service<Pended<R>>`.

use core::mem::size_of;

use ktimer_abi::ExpiryRecord;
use ktimer_abi::WaitRequest;
use ktimer_abi::codec::{DecodeError, Encode, encode_wait_response, records_fitting};
use ktimer_abi::ioctl::{Cancel, Close, Create, Empty, GetInfo, Ioctl, Query, Request, Set};
use ktimer_abi::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_PARAMETER, STATUS_PENDING, STATUS_SUCCESS,
};

use crate::waits::{Parking, PendingWait};
use crate::{FileHandle, Service};
use ktimer_kernel::irql::PassiveLevel;

/// A device-control request as a front end's I/O system delivers it (`METHOD_BUFFERED`):
/// its buffers and its completion.
///
/// Dropping a request must **not** complete it: the service drops a pended request exactly
/// when the front end's cancel routine owns it (the claim protocol, [`crate::waits`]).
pub trait IoRequest: Send + Sized + 'static {
    /// The input bytes (`InputBufferLength` of them; empty if none). Called once, by
    /// [`dispatch`], at `PASSIVE_LEVEL`, before [`IoRequest::output`]. With `METHOD_BUFFERED`
    /// the input and the output share one system buffer: the dispatcher copies the input out
    /// before it asks for the output, and never holds both.
    fn input(&self) -> &[u8];

    /// The output buffer (`OutputBufferLength` bytes; empty if none). `<= DISPATCH_LEVEL`
    /// (the expiry path fills a claimed wait from its DPC, under the handle's spin lock).
    fn output(&mut self) -> &mut [u8];

    /// Completes the request with `status`, `information` bytes of output. `<=
    /// DISPATCH_LEVEL`; called at most once, never under the service's locks.
    fn complete(self, status: NtStatus, information: usize);
}

/// The wait-only part of a request: what the service needs to park it, cancelable, and
/// take it back (the claim protocol, [`crate::waits`]). Only a front end whose requests can
/// pend implements it.
pub trait CancelableRequest: IoRequest {
    /// A value that identifies this request among the handle's pending ones, for
    /// [`cancel_wait`] (KMDF: the `WDFREQUEST` handle value). Any IRQL.
    fn key(&self) -> usize;

    /// Lets the I/O system cancel the request (KMDF: `WdfRequestMarkCancelableEx` with the
    /// cancel routine). Returns `false` if it has already been cancelled; it is then
    /// completed with `STATUS_CANCELLED`. Called once, at `DISPATCH_LEVEL` under the
    /// handle's spin lock: it must not call into the service.
    fn mark_cancelable(&mut self) -> bool;

    /// Takes the request back from the I/O system's cancellation (KMDF:
    /// `WdfRequestUnmarkCancelable`, which returns `STATUS_CANCELLED` when the cancel routine
    /// has it). `true`: the service owns it again and will complete it. `false`: the cancel
    /// routine owns it; the service drops it uncompleted. `<= DISPATCH_LEVEL`, possibly under
    /// the handle's spin lock: it must not call into the service.
    fn claim(&mut self) -> bool;
}

/// A front end's request as the service holds a wait: the [`PendingWait`] port, which fills
/// a wait response into the request's output and completes it. What [`Service`] and
/// [`FileHandle`] are generic over for a front end with request type `R`.
#[derive(Debug)]
pub struct Pended<R>(R);

impl<R> Pended<R> {
    /// Wraps a request as a wait the service can hold. The dispatcher does this for every
    /// wait it hands to [`Service::wait`]; models of the wait protocol (`tests/loom_waits.rs`)
    /// do it to drive [`crate::waits`] directly.
    pub const fn new(request: R) -> Self {
        Self(request)
    }

    /// The front end's request (for a cancel routine that got it back from
    /// [`Service::cancel_wait`]).
    pub fn into_request(self) -> R {
        self.0
    }
}

impl<R: CancelableRequest> PendingWait for Pended<R> {
    fn key(&self) -> usize {
        self.0.key()
    }

    fn mark_cancelable(&mut self) -> bool {
        self.0.mark_cancelable()
    }

    fn claim(&mut self) -> bool {
        self.0.claim()
    }

    fn fill(
        &mut self,
        overruns: u64,
        records: impl Iterator<Item = ExpiryRecord>,
    ) -> Result<usize, NtStatus> {
        encode_wait_response(overruns, records, self.0.output())
            .map(|(_, written)| written)
            .map_err(DecodeError::status)
    }

    fn complete(self, result: Result<usize, NtStatus>) {
        let _status = finish(self.0, result);
    }
}

/// Completes `request` with a result: success with its bytes of output, or a failure with
/// none. Returns the status.
fn finish<R: IoRequest>(request: R, result: Result<usize, NtStatus>) -> NtStatus {
    let (status, information) = match result {
        Ok(written) => (STATUS_SUCCESS, written),
        Err(status) => (status, 0),
    };
    request.complete(status, information);
    status
}

/// Steps 6 and 7 of the order in `docs/PROTOCOL.md`, then the encoding, for the IOCTL `I`:
/// refuses an output shorter than `I`'s declared output before the operation runs (so a
/// refused request changes nothing), runs it, and encodes its response (of the declared
/// type: the handler cannot answer with another) into `output`.
fn answer<I: Ioctl>(
    output: &mut [u8],
    operation: impl FnOnce() -> Result<I::Output, NtStatus>,
) -> Result<usize, NtStatus> {
    if output.len() < size_of::<I::Output>() {
        return Err(STATUS_BUFFER_TOO_SMALL);
    }
    operation()?.encode(output).map_err(DecodeError::status)
}

/// The dispatch entry: runs one device-control request of the handle `file` and completes
/// it, or parks it (a wait) to be completed later. Returns the status the request was
/// completed with, or `STATUS_PENDING` if it was parked.
///
/// `PASSIVE_LEVEL` (closing a timer flushes its DPCs): the KMDF shell configures its queue
/// with `WdfExecutionLevelPassive` so that `EvtIoDeviceControl` runs there.
pub fn dispatch<R: CancelableRequest>(
    service: &Service<Pended<R>>,
    file: &FileHandle<Pended<R>>,
    code: u32,
    mut request: R,
    passive: &PassiveLevel,
) -> NtStatus {
    let decoded = match Request::decode(code, request.input()) {
        Ok(decoded) => decoded,
        Err(status) => return finish(request, Err(status)),
    };
    let output = request.output();
    // One arm per declared IOCTL (the match is exhaustive: a new declaration does not build
    // until it has its arm), each the handler call; `answer::<I>` takes the declared output.
    let result = match decoded {
        Request::GetInfo(Empty) => answer::<GetInfo>(output, || service.get_info(file)),
        Request::Create(create) => service.prepare(create.schedule).and_then(|prepared| {
            answer::<Create>(output, || service.create(file, &create, &prepared))
        }),
        Request::Set(set) => service.prepare(set.schedule).and_then(|prepared| {
            answer::<Set>(output, || service.set(file, &set, &prepared, passive))
        }),
        Request::Cancel(timer) => answer::<Cancel>(output, || service.cancel(file, &timer)),
        Request::Query(timer) => answer::<Query>(output, || service.query(file, &timer)),
        Request::Close(timer) => {
            answer::<Close>(output, || service.close_timer(file, &timer).map(|()| Empty))
        }
        Request::Wait(wait) => return dispatch_wait(service, file, &wait, request),
    };
    finish(request, result)
}

/// A wait: its checks against the ring and the output (steps 5 and 6), then the service
/// answers it at once (completed here) or parks it.
fn dispatch_wait<R: CancelableRequest>(
    service: &Service<Pended<R>>,
    file: &FileHandle<Pended<R>>,
    wait: &WaitRequest,
    mut request: R,
) -> NtStatus {
    let min_records = usize::try_from(wait.min_records).unwrap_or(usize::MAX);
    let fitting = records_fitting(request.output().len());
    if min_records > service.config().event_ring_capacity {
        return finish(request, Err(STATUS_INVALID_PARAMETER));
    }
    if fitting == 0 {
        return finish(request, Err(STATUS_BUFFER_TOO_SMALL));
    }
    if min_records > fitting {
        return finish(request, Err(STATUS_INVALID_PARAMETER));
    }
    match service.wait(file, min_records, Pended(request)) {
        Parking::Answered(Pended(request), result) => finish(request, result),
        Parking::Parked => STATUS_PENDING,
    }
}

/// The front end's cancel routine for a pending wait ([`Service::cancel_wait`]): the request
/// if it was still parked (the caller completes it with `STATUS_CANCELLED`), `None` if the
/// service took it first (see [`crate::waits`]). `<= DISPATCH_LEVEL`.
pub fn cancel_wait<R: CancelableRequest>(
    service: &Service<Pended<R>>,
    file: &FileHandle<Pended<R>>,
    key: usize,
) -> Option<R> {
    service.cancel_wait(file, key).map(Pended::into_request)
}
