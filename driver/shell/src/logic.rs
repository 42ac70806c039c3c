//! What the shell asks of the driver logic it hosts: its identity, its events, and the
//! per-handle value the shell keeps for it.
//!
//! The shell owns the KMDF plumbing: the device and its context, the default queue, the
//! file objects and their contexts, the request wrapper with its cancel hand-off. The
//! logic owns what the driver does: one value per device ([`DriverLogic`], created in
//! `EvtDriverDeviceAdd`, kept in the device context, unloaded and dropped in the device's
//! cleanup) and one per open handle ([`DriverLogic::Handle`], created in
//! `EvtDeviceFileCreate` and kept in the file object's context until `EvtFileClose`), and
//! its device's identity ([`DeviceIdentity`]).
//!
//! IRQL: every method runs at `PASSIVE_LEVEL` (the shell proves it with the token it
//! passes), except [`DriverLogic::cancel`], which the cancel routine calls at
//! `<= DISPATCH_LEVEL`.

use core::ffi::c_void;
use core::mem::ManuallyDrop;

use crate::request::Request;
use crate::sys::NTSTATUS;
use ktimer_kernel::irql::PassiveLevel;

/// A per-handle value that can live in a file object's context as one pointer.
///
/// # Safety
///
/// [`into_raw`](HandleStorage::into_raw) returns a non-null pointer that stays valid until
/// it is given back to [`from_raw`](HandleStorage::from_raw); the shell guarantees that it
/// does so exactly once, and that it calls [`borrow_raw`](HandleStorage::borrow_raw) only
/// in between, never dropping the borrowed value.
pub unsafe trait HandleStorage: Sized {
    /// Gives up the value as a pointer. `PASSIVE_LEVEL`.
    fn into_raw(self) -> *mut c_void;

    /// Takes the value back.
    ///
    /// # Safety
    ///
    /// `raw` came from [`into_raw`](HandleStorage::into_raw) and is taken back once.
    unsafe fn from_raw(raw: *mut c_void) -> Self;

    /// Borrows the value without taking it back. `<= DISPATCH_LEVEL`.
    ///
    /// # Safety
    ///
    /// `raw` came from [`into_raw`](HandleStorage::into_raw) and is not taken back while
    /// the borrow lives; the borrow is never dropped as a value.
    unsafe fn borrow_raw(raw: *mut c_void) -> ManuallyDrop<Self>;
}

/// Who the device is: what the shell names, protects and registers in
/// `EvtDriverDeviceAdd`, and how it tags and traces. The texts are UTF-16 without a
/// terminator (for `UNICODE_STRING`s).
#[derive(Clone, Copy, Debug)]
pub struct DeviceIdentity {
    /// The prefix of every trace line (`name: driver loaded`).
    pub driver_name: &'static str,
    /// The NT name of the device object (`\Device\Name`). Fixed, so the framework refuses
    /// a second device (`STATUS_OBJECT_NAME_COLLISION`) and the first keeps serving.
    pub device_name: &'static [u16],
    /// The symbolic link to it (`\DosDevices\Name`), which user mode opens as
    /// `\\.\Name`.
    pub symbolic_link: &'static [u16],
    /// The security descriptor of the named device object (SDDL), the same as the INF gives
    /// the device, so the name is never less protected than the interface.
    pub sddl: &'static [u16],
    /// The device interface class user mode finds the device by: the GUID's text read as
    /// one big-endian number (`{E7A5882E-BD5A-...}` is `0xE7A5_882E_BD5A_...`), the form
    /// `windows_sys::core::GUID::from_u128` takes.
    pub interface: u128,
    /// The tag of the framework's allocations on the driver's behalf (`DriverPoolTag`) and
    /// of the shell's one allocation (the device's logic).
    pub pool_tag: [u8; 4],
}

/// The driver logic a device hosts: what each framework event becomes.
pub trait DriverLogic: Sized + Send + Sync + 'static {
    /// The device this logic is hosted in.
    const IDENTITY: DeviceIdentity;

    /// The settings the logic is made with: the defaults in the driver; on the simulator a
    /// test may choose them ([`crate::sim::set_config`]).
    type Config: Copy + Default + Send + 'static;

    /// The logic's state for one open handle: the shell's per-handle context.
    type Handle: HandleStorage;

    /// `EvtDriverDeviceAdd`: makes the device's logic.
    ///
    /// # Errors
    ///
    /// The status the device creation fails with.
    fn create(config: Self::Config, passive: &PassiveLevel) -> Result<Self, NTSTATUS>;

    /// `EvtDeviceFileCreate` (a `CreateFile` of the device without a file name).
    ///
    /// # Errors
    ///
    /// The status the create completes with.
    fn open(&self, passive: &PassiveLevel) -> Result<Self::Handle, NTSTATUS>;

    /// `EvtIoDeviceControl`: the logic completes `request` (now or, if it parks it, later).
    fn device_control(
        &self,
        handle: &Self::Handle,
        code: u32,
        request: Request,
        passive: &PassiveLevel,
    );

    /// `EvtRequestCancel` for a request the logic parked (`key`: the request's
    /// [`Request::key`]). `Some`: it was still parked, and the shell completes it
    /// with `STATUS_CANCELLED`. `None`: the logic no longer holds it (`request`, "Completing
    /// a cancelled wait exactly once"). `<= DISPATCH_LEVEL`.
    fn cancel(&self, handle: &Self::Handle, key: usize) -> Option<Request>;

    /// `EvtFileCleanup`: the handle's last `CloseHandle`.
    fn cleanup(&self, handle: &Self::Handle, passive: &PassiveLevel);

    /// `EvtFileClose`: the handle is gone.
    fn close(&self, handle: Self::Handle, passive: &PassiveLevel);

    /// The device's `EvtCleanupCallback`, before the logic is dropped.
    fn unload(&self, passive: &PassiveLevel);
}
