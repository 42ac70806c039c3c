//! The device abstraction: what the scenarios need from "a ktimer device", independent of
//! whether it is the real driver behind `DeviceIoControl` (Windows) or the driver's service
//! running in-process on the kernel simulator (`--sim`).
//!
//! The contract is deliberately the shape of the Win32 I/O model, byte buffers in and out:
//! the scenarios encode and decode with `ktimer-abi`, so both backends carry exactly the bytes
//! the real driver sees, and bad-input scenarios can send malformed buffers.

use std::fmt;
use std::time::Duration;

/// An NTSTATUS value as the driver completed a request with.
pub type NtStatus = i32;

/// How a request failed, as precisely as the backend can tell.
///
/// The simulator backend always knows the driver's NTSTATUS. On Windows the status is read
/// from the completed `OVERLAPPED`; when the I/O manager failed the call before it pended,
/// only the Win32 error (the NTSTATUS mapped by `RtlNtStatusToDosError`) is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoFailure {
    /// The driver's completion status.
    Status(NtStatus),
    /// Only the Win32 error code is known (Windows backend).
    Win32(u32),
}

impl IoFailure {
    /// Whether this failure is the documented status `expected`.
    #[must_use]
    pub fn is(self, expected: NtStatus) -> bool {
        match self {
            Self::Status(status) => status == expected,
            Self::Win32(code) => is_win32_error_of(code, expected),
        }
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // NTSTATUS values are conventionally shown as 32-bit hex.
            Self::Status(status) => write!(f, "NTSTATUS {:#010x}", status.cast_unsigned()),
            Self::Win32(code) => write!(f, "Win32 error {code}"),
        }
    }
}

/// Whether `code` is the Win32 error the system reports for `status` (Windows only;
/// elsewhere only the simulator reports, and it reports NTSTATUS values directly).
#[cfg(windows)]
fn is_win32_error_of(code: u32, status: NtStatus) -> bool {
    crate::windows::nt_status_to_win32(status) == code
}

#[cfg(not(windows))]
fn is_win32_error_of(_code: u32, _status: NtStatus) -> bool {
    false
}

/// Why a device could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// No ktimer device is present (driver not installed or device not started).
    NotFound(String),
    /// The device exists but could not be opened (e.g. access denied).
    Failed(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(why) | Self::Failed(why) => f.write_str(why),
        }
    }
}

/// A ktimer device: opens handles (file objects) on it.
pub trait Device {
    /// Opens a new handle; each handle owns its own timers in the driver.
    ///
    /// # Errors
    /// [`OpenError`] if the device is missing or refuses the open.
    fn open(&self) -> Result<Box<dyn Handle>, OpenError>;

    /// One line naming the backend and device, for the report.
    fn describe(&self) -> String;

    /// Unloads the driver and checks the unload, where the backend can (the simulator:
    /// the verifier's leak check). `None` where it cannot (a real device stays loaded).
    /// After this, the device serves no more requests.
    fn unload(&self) -> Option<Result<String, String>> {
        None
    }
}

/// One open handle on the device.
pub trait Handle {
    /// A synchronous device I/O control: sends `input`, receives into `output`, returns the
    /// number of bytes the driver wrote.
    ///
    /// # Errors
    /// The driver's failure status.
    fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoFailure>;

    /// An asynchronous device I/O control (overlapped on Windows): the request may pend in
    /// the driver. The returned request can be waited on or cancelled.
    ///
    /// # Errors
    /// The failure status if the request failed before it could pend.
    fn submit(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn PendingRequest>, IoFailure>;

    /// Closes the handle now (cleanup + close in the driver). Requests still pending on it
    /// remain waitable: the driver must complete them.
    fn close(self: Box<Self>);
}

/// A request that may still be pending in the driver.
pub trait PendingRequest {
    /// Waits up to `timeout` for completion; `None` if still pending. Once it has returned
    /// `Some`, later calls return the same completion.
    fn wait(&mut self, timeout: Duration) -> Option<Reply>;

    /// Asks the driver to cancel the request (like `CancelIoEx`); it still has to be waited
    /// for.
    fn cancel(&self);
}

/// How a request completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Success (or an informational/warning status): the bytes the driver returned.
    Done(Vec<u8>),
    /// Failure status.
    Failed(IoFailure),
}
