//! The logic this shell hosts: the timer service (`ktimer-service`), reached through its
//! IOCTL dispatcher. The only module of the shell that names the service: a driver built
//! from this template without timers replaces this module and `crate::Logic`.

use core::ffi::c_void;
use core::mem::ManuallyDrop;

use crate::logic::{DriverLogic, HandleStorage};
use crate::request::Request;
use crate::sys::NTSTATUS;
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::{self, CancelableRequest, IoRequest, Pended};
use ktimer_service::{FileHandle, Service, ServiceConfig};

/// The timer service as this shell instantiates it: its waits are the shell's requests.
pub(crate) type TimerService = Service<Pended<Request>>;

/// An open handle of [`TimerService`].
pub(crate) type TimerHandle = FileHandle<Pended<Request>>;

// SAFETY: `FileHandle::into_raw`/`from_raw`/`borrow_raw` have exactly the contract of
// `HandleStorage` (a non-null pointer to the handle's shared core, valid until taken back
// once; borrows in between are `ManuallyDrop`).
unsafe impl HandleStorage for TimerHandle {
    fn into_raw(self) -> *mut c_void {
        FileHandle::into_raw(self)
    }

    unsafe fn from_raw(raw: *mut c_void) -> Self {
        // SAFETY: the caller's contract is `FileHandle::from_raw`'s.
        unsafe { FileHandle::from_raw(raw) }
    }

    unsafe fn borrow_raw(raw: *mut c_void) -> ManuallyDrop<Self> {
        // SAFETY: the caller's contract is `FileHandle::borrow_raw`'s.
        unsafe { FileHandle::borrow_raw(raw) }
    }
}

impl DriverLogic for TimerService {
    type Config = ServiceConfig;
    type Handle = TimerHandle;

    fn create(config: ServiceConfig, passive: &PassiveLevel) -> Result<Self, NTSTATUS> {
        Service::new(config, passive)
    }

    fn open(&self, passive: &PassiveLevel) -> Result<TimerHandle, NTSTATUS> {
        Service::open(self, passive)
    }

    fn device_control(
        &self,
        handle: &TimerHandle,
        code: u32,
        request: Request,
        passive: &PassiveLevel,
    ) {
        let _status = dispatch::dispatch(self, handle, code, request, passive);
    }

    fn cancel(&self, handle: &TimerHandle, key: usize) -> Option<Request> {
        dispatch::cancel_wait(self, handle, key)
    }

    fn cleanup(&self, handle: &TimerHandle, passive: &PassiveLevel) {
        Service::cleanup(self, handle, passive);
    }

    fn close(&self, handle: TimerHandle, passive: &PassiveLevel) {
        Service::close(self, handle, passive);
    }

    fn unload(&self, passive: &PassiveLevel) {
        Service::unload(self, passive);
    }
}

// The shell's request as the dispatcher sees it: each method is the request's own.
impl IoRequest for Request {
    fn input(&self) -> &[u8] {
        Request::input(self)
    }

    fn output(&mut self) -> &mut [u8] {
        Request::output(self)
    }

    fn complete(self, status: NTSTATUS, information: usize) {
        Request::complete(self, status, information);
    }
}

impl CancelableRequest for Request {
    fn key(&self) -> usize {
        Request::key(self)
    }

    fn mark_cancelable(&mut self) -> bool {
        Request::mark_cancelable(self)
    }

    fn claim(&mut self) -> bool {
        Request::claim(self)
    }
}
