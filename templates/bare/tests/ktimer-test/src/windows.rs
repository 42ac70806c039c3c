//! The Windows backend: the installed ktimer device through Win32 (`windows-sys`).
//!
//! Discovery as in the KMDF samples' apps: the first present interface of the driver's
//! interface class (`CM_Get_Device_Interface_List_SizeW` / `CM_Get_Device_Interface_ListW`),
//! else the driver's symbolic link (`DEVICE_PATH_USER_UTF16Z`). Requests are synchronous
//! `DeviceIoControl` calls on a handle opened with `CreateFileW`.
//!
//! Not verified here: this module is cross-compiled for `x86_64-pc-windows-gnu` on Linux and
//! has not been run on Windows.

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use ktimer_abi::device::{DEVICE_INTERFACE_GUID_U128, DEVICE_PATH_USER, DEVICE_PATH_USER_UTF16Z};
use ktimer_abi::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER,
    STATUS_REVISION_MISMATCH,
};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
    CM_Get_Device_Interface_ListW, CR_BUFFER_SMALL, CR_SUCCESS,
};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BAD_LENGTH, ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER,
    ERROR_INVALID_FUNCTION, ERROR_INVALID_HANDLE, ERROR_INVALID_PARAMETER,
    ERROR_NO_SYSTEM_RESOURCES, ERROR_PATH_NOT_FOUND, ERROR_REVISION_MISMATCH, GENERIC_READ,
    GENERIC_WRITE, GetLastError, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::core::GUID;

use crate::device::{Device, Handle};

/// The installed device.
pub struct WindowsDevice {
    /// The NUL-terminated UTF-16 path `CreateFileW` opens.
    path: Vec<u16>,
    /// How the path was found, for the report and messages.
    shown: String,
    /// Open handles by [`Handle`] number; `None` once closed (dropping one is `CloseHandle`).
    handles: Vec<Option<OwnedHandle>>,
}

impl WindowsDevice {
    /// Finds the device and opens it once, so that a missing device is reported before
    /// any scenario runs.
    ///
    /// # Errors
    /// The device is missing or cannot be opened.
    pub fn find() -> Result<Self, String> {
        let (path, shown) = match interface_path() {
            Some(path) => {
                let text = String::from_utf16_lossy(&path[..path.len() - 1]);
                (path, format!("{text} (device interface)"))
            }
            None => (
                DEVICE_PATH_USER_UTF16Z.to_vec(),
                format!("{DEVICE_PATH_USER} (symbolic link)"),
            ),
        };
        let mut device = Self {
            path,
            shown,
            handles: Vec::new(),
        };
        let probe = device.open()?;
        device.close(probe);
        Ok(device)
    }
}

fn last_error() -> u32 {
    // SAFETY: GetLastError only reads the calling thread's last-error value; it is called
    // right after the failed call, before another call could change it.
    unsafe { GetLastError() }
}

/// The first present interface of the driver's class, NUL-terminated; `None` if there is
/// none or the configuration manager fails (the caller falls back to the symbolic link).
fn interface_path() -> Option<Vec<u16>> {
    let guid = GUID::from_u128(DEVICE_INTERFACE_GUID_U128);
    // The list can grow between asking its size and reading it: then read again.
    for _attempt in 0..4 {
        let mut length: u32 = 0;
        // SAFETY: `length` and `guid` are valid for the call; a null device id asks for the
        // interfaces of every device.
        let sized = unsafe {
            CM_Get_Device_Interface_List_SizeW(
                &raw mut length,
                &raw const guid,
                ptr::null(),
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if sized != CR_SUCCESS {
            return None;
        }
        let mut list = vec![0_u16; usize::try_from(length).ok()?];
        // SAFETY: `list` holds `length` UTF-16 units, the length passed; `guid` is valid.
        let read = unsafe {
            CM_Get_Device_Interface_ListW(
                &raw const guid,
                ptr::null(),
                list.as_mut_ptr(),
                length,
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        match read {
            // A multi-string: entries ended by NUL, the list by an empty entry.
            CR_SUCCESS => {
                let first = list.split(|&unit| unit == 0).next()?;
                return (!first.is_empty()).then(|| [first, &[0]].concat());
            }
            CR_BUFFER_SMALL => {}
            _ => return None,
        }
    }
    None
}

/// The driver's NTSTATUS from the Win32 error a failed `DeviceIoControl` reports.
///
/// Win32 turns the status into an error with `RtlNtStatusToDosError`; this reverses that
/// for the statuses the driver completes requests with, from that function's documented
/// table (Microsoft's "Mapping NT Status Error Codes to Win32 Error Codes"). Unverified on
/// Windows here. Any other error becomes `NTSTATUS_FROM_WIN32(error)` (`0xC007xxxx`), which
/// is none of the driver's statuses, so a scenario expecting one fails.
#[must_use]
pub fn status_from_win32(error: u32) -> NtStatus {
    match error {
        ERROR_INVALID_FUNCTION => STATUS_INVALID_DEVICE_REQUEST,
        ERROR_INSUFFICIENT_BUFFER => STATUS_BUFFER_TOO_SMALL,
        ERROR_BAD_LENGTH => STATUS_INFO_LENGTH_MISMATCH,
        ERROR_REVISION_MISMATCH => STATUS_REVISION_MISMATCH,
        ERROR_INVALID_PARAMETER => STATUS_INVALID_PARAMETER,
        ERROR_INVALID_HANDLE => STATUS_INVALID_HANDLE,
        ERROR_NO_SYSTEM_RESOURCES => STATUS_INSUFFICIENT_RESOURCES,
        other => (0xC007_0000 | (other & 0xFFFF)).cast_signed(),
    }
}

impl Device for WindowsDevice {
    fn backend(&self) -> String {
        format!("Windows device {}", self.shown)
    }

    fn pings_before(&self) -> Option<u64> {
        None
    }

    fn open(&mut self) -> Result<Handle, String> {
        // SAFETY: `path` is NUL-terminated UTF-16 that outlives the call; null security
        // attributes and template handle are documented as allowed.
        let raw = unsafe {
            CreateFileW(
                self.path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                ptr::null(),
                OPEN_EXISTING,
                FILE_ATTRIBUTE_NORMAL,
                ptr::null_mut(),
            )
        };
        if raw == INVALID_HANDLE_VALUE {
            return Err(match last_error() {
                ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => format!(
                    "no ktimer device at {}: install the driver (README, \"On Windows\")",
                    self.shown
                ),
                ERROR_ACCESS_DENIED => format!(
                    "access to {} denied: the device admits Administrators and SYSTEM only; \
                     run ktimer-test elevated",
                    self.shown
                ),
                other => format!("could not open {} (Win32 error {other})", self.shown),
            });
        }
        // SAFETY: `raw` is a valid handle CreateFileW just returned, owned by nothing else;
        // the OwnedHandle closes it.
        let file = unsafe { OwnedHandle::from_raw_handle(raw) };
        self.handles.push(Some(file));
        Ok(Handle(self.handles.len() - 1))
    }

    fn control(
        &mut self,
        handle: Handle,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Vec<u8>, NtStatus> {
        let file = self
            .handles
            .get(handle.0)
            .and_then(Option::as_ref)
            .ok_or(STATUS_INVALID_HANDLE)?;
        let input_len = u32::try_from(input.len()).map_err(|_| STATUS_INVALID_PARAMETER)?;
        let room = u32::try_from(output_len).map_err(|_| STATUS_INVALID_PARAMETER)?;
        let mut output = vec![0_u8; output_len];
        // Empty buffers are passed as null, as the documentation shows them.
        let input_ptr = if input.is_empty() {
            ptr::null()
        } else {
            input.as_ptr().cast()
        };
        let output_ptr = if output.is_empty() {
            ptr::null_mut()
        } else {
            output.as_mut_ptr().cast()
        };
        let mut returned: u32 = 0;
        // SAFETY: the input is valid for `input_len` bytes of reads and the output for
        // `room` bytes of writes (or null with length 0), `returned` for one write, all
        // outliving the call; the handle is open and synchronous, so no OVERLAPPED.
        let done = unsafe {
            DeviceIoControl(
                file.as_raw_handle(),
                code,
                input_ptr,
                input_len,
                output_ptr,
                room,
                &raw mut returned,
                ptr::null_mut(),
            )
        };
        if done == 0 {
            return Err(status_from_win32(last_error()));
        }
        output.truncate(usize::try_from(returned).unwrap_or(usize::MAX));
        Ok(output)
    }

    fn close(&mut self, handle: Handle) {
        if let Some(slot) = self.handles.get_mut(handle.0) {
            drop(slot.take());
        }
    }
}
