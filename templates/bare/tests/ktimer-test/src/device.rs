//! The one interface scenarios reach the driver through: open a handle, send an IOCTL with
//! byte buffers, close. Each backend (`sim`, `windows`) implements it; the tests add fakes.

use ktimer_abi::status::{NtStatus, status_name};

/// An open handle on the device, as its backend numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(pub usize);

/// The driver's device, as the scenarios see it.
pub trait Device {
    /// What this backend is, for the report.
    fn backend(&self) -> String;

    /// Pings the device had answered before the first scenario, when the backend knows it:
    /// 0 for a freshly loaded driver, `None` for an installed device that may have answered
    /// earlier runs (then the first ping sets the baseline).
    fn pings_before(&self) -> Option<u64>;

    /// Opens a handle (`CreateFileW`).
    ///
    /// # Errors
    /// Why the device could not be opened.
    fn open(&mut self) -> Result<Handle, String>;

    /// Sends `code` with `input` and room for `output_len` bytes (`DeviceIoControl`).
    ///
    /// # Errors
    /// The NTSTATUS the request failed with.
    fn control(
        &mut self,
        handle: Handle,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NtStatus>;

    /// Closes a handle (`CloseHandle`); an unknown handle is ignored.
    fn close(&mut self, handle: Handle);

    /// Ends the session after the last scenario: `Some` with the outcome of what the
    /// backend checks at the end (the simulator: removal and unload under its verifier),
    /// `None` if there is nothing to check (an installed device stays installed).
    fn finish(&mut self) -> Option<Result<String, String>> {
        None
    }
}

/// `status` by name when it is one of the driver's, else in hex.
#[must_use]
pub fn show_status(status: NtStatus) -> String {
    status_name(status).map_or_else(
        || format!("NTSTATUS {:#010x}", status.cast_unsigned()),
        str::to_owned,
    )
}
