//! The timer service as the shell's hosted logic: the device's identity, and each framework
//! event forwarded to the service or its IOCTL dispatcher. Two newtypes let this crate
//! join the shell's traits to the service's types (neither crate owns both):
//! [`TimerLogic`] (the service) and [`ShellRequest`] (the shell's request, as the
//! dispatcher's `IoRequest` and `CancelableRequest`).

use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ops::Deref;

use ktimer_abi::device::{
    DEVICE_INTERFACE_GUID_U128, DEVICE_NAME_KERNEL_UTF16, DEVICE_SDDL_UTF16,
    SYMBOLIC_LINK_KERNEL_UTF16,
};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::{self, CancelableRequest, IoRequest, Pended};
use ktimer_service::{FileHandle, Service, ServiceConfig};
use ktimer_shell::{DeviceIdentity, DriverLogic, HandleStorage, NTSTATUS, Request};

/// The ktimer device (`ktimer-abi`'s names and GUID).
const IDENTITY: DeviceIdentity = DeviceIdentity {
    driver_name: "ktimer",
    device_name: &DEVICE_NAME_KERNEL_UTF16,
    symbolic_link: &SYMBOLIC_LINK_KERNEL_UTF16,
    sddl: &DEVICE_SDDL_UTF16,
    interface: DEVICE_INTERFACE_GUID_U128,
    // The framework's allocations on the driver's behalf (`KTwf`); the service tags its
    // own `KTsv`.
    pool_tag: *b"KTwf",
};

/// The shell's request as the dispatcher sees it: each method is the request's own.
pub struct ShellRequest(Request);

impl IoRequest for ShellRequest {
    fn input(&self) -> &[u8] {
        self.0.input()
    }

    fn output(&mut self) -> &mut [u8] {
        self.0.output()
    }

    fn complete(self, status: NTSTATUS, information: usize) {
        self.0.complete(status, information);
    }
}

impl CancelableRequest for ShellRequest {
    fn key(&self) -> usize {
        self.0.key()
    }

    fn mark_cancelable(&mut self) -> bool {
        self.0.mark_cancelable()
    }

    fn claim(&mut self) -> bool {
        self.0.claim()
    }
}

/// The timer service as this driver instantiates it: its waits are the shell's requests.
pub type TimerService = Service<Pended<ShellRequest>>;

/// The timer service, hosted by the shell.
pub struct TimerLogic(TimerService);

impl Deref for TimerLogic {
    type Target = TimerService;

    fn deref(&self) -> &TimerService {
        &self.0
    }
}

/// An open handle of the service, kept in a file object's context.
pub struct TimerHandle(FileHandle<Pended<ShellRequest>>);

impl Deref for TimerHandle {
    type Target = FileHandle<Pended<ShellRequest>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

// SAFETY: `FileHandle::into_raw`/`from_raw`/`borrow_raw` have exactly the contract of
// `HandleStorage` (a non-null pointer to the handle's shared core, valid until taken back
// once; borrows in between are `ManuallyDrop`), and `TimerHandle` is that handle alone.
unsafe impl HandleStorage for TimerHandle {
    fn into_raw(self) -> *mut c_void {
        FileHandle::into_raw(self.0)
    }

    unsafe fn from_raw(raw: *mut c_void) -> Self {
        // SAFETY: the caller's contract is `FileHandle::from_raw`'s.
        Self(unsafe { FileHandle::from_raw(raw) })
    }

    unsafe fn borrow_raw(raw: *mut c_void) -> ManuallyDrop<Self> {
        // SAFETY: the caller's contract is `FileHandle::borrow_raw`'s.
        let handle = unsafe { FileHandle::borrow_raw(raw) };
        ManuallyDrop::new(Self(ManuallyDrop::into_inner(handle)))
    }
}

impl DriverLogic for TimerLogic {
    const IDENTITY: DeviceIdentity = IDENTITY;
    type Config = ServiceConfig;
    type Handle = TimerHandle;

    fn create(config: ServiceConfig, passive: &PassiveLevel) -> Result<Self, NTSTATUS> {
        Service::new(config, passive).map(Self)
    }

    fn open(&self, passive: &PassiveLevel) -> Result<TimerHandle, NTSTATUS> {
        self.0.open(passive).map(TimerHandle)
    }

    fn device_control(
        &self,
        handle: &TimerHandle,
        code: u32,
        request: Request,
        passive: &PassiveLevel,
    ) {
        let _status = dispatch::dispatch(&self.0, &handle.0, code, ShellRequest(request), passive);
    }

    fn cancel(&self, handle: &TimerHandle, key: usize) -> Option<Request> {
        dispatch::cancel_wait(&self.0, &handle.0, key).map(|parked| parked.0)
    }

    fn cleanup(&self, handle: &TimerHandle, passive: &PassiveLevel) {
        self.0.cleanup(&handle.0, passive);
    }

    fn close(&self, handle: TimerHandle, passive: &PassiveLevel) {
        self.0.close(handle.0, passive);
    }

    fn unload(&self, passive: &PassiveLevel) {
        self.0.unload(passive);
    }
}
