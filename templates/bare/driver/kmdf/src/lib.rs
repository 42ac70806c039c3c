//! The ktimer driver's logic, hosted in the KMDF shell (`ktimer-shell`): what makes the shell
//! this driver, and all of it. The shell owns `DriverEntry`, the device, its queue, the file
//! objects and the requests; this crate gives it:
//!
//! - [`IDENTITY`]: the device's names, security descriptor, interface GUID and pool tag
//!   (from `ktimer-abi`'s `device` module, which the app reads too);
//! - [`PingLogic`] (the device's state) and [`PingHandle`] (each open handle's), with what
//!   each framework event does to them;
//! - [`dispatch`]: the IOCTL dispatcher, bytes in and bytes out, testable without a kernel;
//! - [`driver_entry`], which the `.sys` package exports as `DriverEntry`, and
//!   [`DRIVER_ENTRY`], the same for the simulator.
//!
//! To grow it: a new IOCTL is a code and messages in `ktimer-abi`, an arm in [`dispatch`]
//! and scenarios in the app. State a DPC or timer touches lives in non-paged pool
//! (`ktimer_kernel::pool`); the safe kernel layer has the timer, DPC, spin lock and IRQL
//! types. README.md, "Growing the driver".
//!
//! IRQL: every event but `cancel` runs at `PASSIVE_LEVEL` (the shell proves it with a
//! token); this driver never parks a request, so the shell never calls `cancel`.

#![no_std]

use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicU64, Ordering};

use ktimer_abi::device::{
    DEVICE_INTERFACE_GUID_U128, DEVICE_NAME_KERNEL_UTF16, DEVICE_SDDL_UTF16,
    SYMBOLIC_LINK_KERNEL_UTF16,
};
use ktimer_abi::ioctl::IOCTL_KTIMER_PING;
use ktimer_abi::ping::{PING_RESPONSE_SIZE, PingRequest, PingResponse};
use ktimer_abi::status::{
    NtStatus, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST, STATUS_SUCCESS,
};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_kernel::pool::{PoolArc, PoolTag};
use ktimer_shell::{
    DeviceIdentity, DriverEntry, DriverLogic, HandleStorage, NTSTATUS, PCUNICODE_STRING,
    PDRIVER_OBJECT, Request,
};

/// The device this driver creates.
pub const IDENTITY: DeviceIdentity = DeviceIdentity {
    driver_name: "ktimer",
    device_name: &DEVICE_NAME_KERNEL_UTF16,
    symbolic_link: &SYMBOLIC_LINK_KERNEL_UTF16,
    sddl: &DEVICE_SDDL_UTF16,
    interface: DEVICE_INTERFACE_GUID_U128,
    // The framework's allocations on the driver's behalf, and the device's logic.
    pool_tag: *b"KTwf",
};

/// At least the longest request of this driver (`ktimer_abi::ping::PING_REQUEST_SIZE`).
const MAX_INPUT: usize = 64;

const _: () = assert!(ktimer_abi::ping::PING_REQUEST_SIZE <= MAX_INPUT);

/// The tag of each handle's state.
const HANDLE_POOL_TAG: PoolTag = PoolTag::new(*b"KTsv");

/// The device's state: pings answered on every handle.
#[derive(Debug, Default)]
pub struct PingLogic {
    device_pings: AtomicU64,
}

/// One open handle's state: pings answered on it. Shared with nobody but the file object's
/// context, it lives in non-paged pool like any state the kernel layer's objects might
/// reach.
#[derive(Debug, Default)]
pub struct HandleState {
    pings: AtomicU64,
}

/// An open handle: its state, kept in the file object's context by the shell.
pub struct PingHandle(PoolArc<HandleState>);

impl PingHandle {
    /// The handle's state.
    #[must_use]
    pub fn state(&self) -> &HandleState {
        &self.0
    }
}

// SAFETY: `PoolArc::into_raw`/`from_raw` give a non-null pointer that owns one reference
// until taken back once; a borrow is a `ManuallyDrop` of a value taken back from the same
// pointer, which never releases that reference. `PingHandle` is the `PoolArc` alone.
unsafe impl HandleStorage for PingHandle {
    fn into_raw(self) -> *mut c_void {
        PoolArc::into_raw(self.0)
    }

    unsafe fn from_raw(raw: *mut c_void) -> Self {
        // SAFETY: `raw` came from `into_raw` and is taken back once (the caller's contract).
        Self(unsafe { PoolArc::from_raw(raw) })
    }

    unsafe fn borrow_raw(raw: *mut c_void) -> ManuallyDrop<Self> {
        // SAFETY: `raw` came from `into_raw` and stays owned by the context; the
        // `ManuallyDrop` never gives the reference back (the caller's contract).
        ManuallyDrop::new(Self(unsafe { PoolArc::from_raw(raw) }))
    }
}

impl DriverLogic for PingLogic {
    const IDENTITY: DeviceIdentity = IDENTITY;
    type Config = ();
    type Handle = PingHandle;

    fn create((): (), _passive: &PassiveLevel) -> Result<Self, NTSTATUS> {
        Ok(Self::default())
    }

    fn open(&self, _passive: &PassiveLevel) -> Result<PingHandle, NTSTATUS> {
        PoolArc::new(HandleState::default(), HANDLE_POOL_TAG)
            .map(PingHandle)
            .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)
    }

    fn device_control(
        &self,
        handle: &PingHandle,
        code: u32,
        mut request: Request,
        _passive: &PassiveLevel,
    ) {
        // The input is copied out first: the system buffer is both input and output. An
        // input longer than `MAX_INPUT` is cut to one byte more, still too long for every
        // request of this driver.
        let mut copy = [0; MAX_INPUT + 1];
        let length = request.input().len().min(copy.len());
        copy[..length].copy_from_slice(&request.input()[..length]);
        let input = &copy[..length];
        let (status, information) =
            match dispatch(self, handle.state(), code, input, request.output()) {
                Ok(written) => (STATUS_SUCCESS, written),
                Err(status) => (status, 0),
            };
        request.complete(status, information);
    }

    fn cancel(&self, _handle: &PingHandle, _key: usize) -> Option<Request> {
        // Never parks a request, so never marks one cancelable: nothing to give back.
        None
    }

    fn cleanup(&self, _handle: &PingHandle, _passive: &PassiveLevel) {
        // Nothing in progress to end: every request is completed in `device_control`.
    }

    fn close(&self, handle: PingHandle, _passive: &PassiveLevel) {
        drop(handle);
    }

    fn unload(&self, _passive: &PassiveLevel) {}
}

/// The IOCTL dispatcher: decodes `input` for `code`, acts on the device's and the handle's
/// state, writes the response to `output`; returns the bytes written. `PASSIVE_LEVEL`
/// (nothing here would mind `DISPATCH_LEVEL`: no allocation, no wait).
///
/// # Errors
///
/// The status the request completes with (`ktimer_abi::ping`'s table);
/// `STATUS_INVALID_DEVICE_REQUEST` for a code that is not this driver's (including any
/// code that is not `METHOD_BUFFERED`, which the shell gives no buffers).
pub fn dispatch(
    logic: &PingLogic,
    handle: &HandleState,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, NtStatus> {
    match code {
        IOCTL_KTIMER_PING => {
            let request = PingRequest::decode(input)?;
            if output.len() < PING_RESPONSE_SIZE {
                return Err(ktimer_abi::status::STATUS_BUFFER_TOO_SMALL);
            }
            // Counted only once the request is known to succeed.
            let handle_pings = handle.pings.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let device_pings = logic
                .device_pings
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            PingResponse::new(request.cookie, handle_pings, device_pings).encode(output)
        }
        _ => Err(STATUS_INVALID_DEVICE_REQUEST),
    }
}

/// `DriverEntry` of this driver: the shell's, hosting [`PingLogic`]. `PASSIVE_LEVEL`.
///
/// # Safety
///
/// As `ktimer_shell::driver_entry`: called once per driver object, by the kernel (through
/// `FxDriverEntry` and the image's `DriverEntry`) or the simulated I/O manager, with the
/// driver object and the driver's registry path.
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: our caller's contract is the shell's.
    unsafe { ktimer_shell::driver_entry::<PingLogic>(driver, registry_path) }
}

/// [`driver_entry`] as a value, for the simulated I/O manager
/// (`kernel_sim::wdf::Framework::load`).
pub const DRIVER_ENTRY: DriverEntry = driver_entry;

#[cfg(test)]
mod tests {
    use super::*;
    use ktimer_abi::ABI_VERSION;
    use ktimer_abi::ioctl::{FILE_DEVICE_KTIMER, METHOD_NEITHER, ctl_code};
    use ktimer_abi::ping::PING_REQUEST_SIZE;
    use ktimer_abi::status::{STATUS_BUFFER_TOO_SMALL, STATUS_REVISION_MISMATCH};

    #[test]
    fn a_ping_echoes_and_counts_per_handle_and_per_device() {
        let logic = PingLogic::default();
        let (first, second) = (HandleState::default(), HandleState::default());
        let mut output = [0; PING_RESPONSE_SIZE];
        for (handle, cookie, handle_pings, device_pings) in
            [(&first, 1, 1, 1), (&first, 2, 2, 2), (&second, 3, 1, 3)]
        {
            let input = PingRequest::new(cookie).to_bytes();
            let written = dispatch(&logic, handle, IOCTL_KTIMER_PING, &input, &mut output);
            assert_eq!(written, Ok(PING_RESPONSE_SIZE));
            let response = PingResponse::decode(&output).unwrap();
            assert_eq!(
                (
                    response.cookie,
                    response.handle_pings,
                    response.device_pings
                ),
                (cookie, handle_pings, device_pings)
            );
        }
    }

    #[test]
    fn refused_requests_count_nothing_and_write_nothing() {
        let logic = PingLogic::default();
        let handle = HandleState::default();
        let valid = PingRequest::new(5).to_bytes();
        let mut output = [0xEE; PING_RESPONSE_SIZE];
        let mut bad_version = PingRequest::new(5);
        bad_version.version = ABI_VERSION + 1;
        let neither = ctl_code(FILE_DEVICE_KTIMER, 0x800, METHOD_NEITHER, 1);
        let cases: [(u32, &[u8], usize, NtStatus); 4] = [
            (
                IOCTL_KTIMER_PING,
                &valid,
                PING_RESPONSE_SIZE - 1,
                STATUS_BUFFER_TOO_SMALL,
            ),
            (
                IOCTL_KTIMER_PING,
                &bad_version.to_bytes(),
                PING_RESPONSE_SIZE,
                STATUS_REVISION_MISMATCH,
            ),
            (
                IOCTL_KTIMER_PING + 4,
                &valid,
                PING_RESPONSE_SIZE,
                STATUS_INVALID_DEVICE_REQUEST,
            ),
            (
                neither,
                &valid,
                PING_RESPONSE_SIZE,
                STATUS_INVALID_DEVICE_REQUEST,
            ),
        ];
        for (code, input, room, status) in cases {
            assert_eq!(
                dispatch(&logic, &handle, code, input, &mut output[..room]),
                Err(status)
            );
        }
        assert_eq!(output, [0xEE; PING_RESPONSE_SIZE]);
        assert_eq!(handle.pings.load(Ordering::Relaxed), 0);
        assert_eq!(logic.device_pings.load(Ordering::Relaxed), 0);
        assert_eq!(valid.len(), PING_REQUEST_SIZE);
    }
}
