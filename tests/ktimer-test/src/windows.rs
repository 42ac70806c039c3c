//! The Windows backend: the installed ktimer device through Win32 (`windows-sys`).
//!
//! Discovery follows the KMDF echo sample's app: the device interface list for the driver's
//! interface GUID (`CM_Get_Device_Interface_List_SizeW` / `CM_Get_Device_Interface_ListW`),
//! falling back to the driver's symbolic link. When neither opens, the configuration manager
//! is asked about devices of the driver's hardware id (`CM_Get_DevNode_Status`), so that an
//! installed device that did not start (problem code 52, unsigned; 39, failed to load) is
//! reported as such rather than as "not installed" ([`crate::install`]). Every request is overlapped (the handle is
//! opened with `FILE_FLAG_OVERLAPPED`) so that waits can pend and be cancelled with
//! `CancelIoEx`, and so that the driver's exact NTSTATUS can be read from the completed
//! `OVERLAPPED`.
//!
//! Also here: the high-resolution waitable timer used as the user-mode comparison.
//!
//! Not verified here: this module is cross-compiled and linked for `x86_64-pc-windows-gnu`
//! on Linux; it has not been run on Windows by this project's CI.

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_DRP_HARDWAREID, CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_GETIDLIST_FILTER_NONE,
    CM_Get_DevNode_Registry_PropertyW, CM_Get_DevNode_Status, CM_Get_Device_ID_List_SizeW,
    CM_Get_Device_ID_ListW, CM_Get_Device_Interface_List_SizeW, CM_Get_Device_Interface_ListW,
    CM_LOCATE_DEVNODE_PHANTOM, CM_Locate_DevNodeW, CR_BUFFER_SMALL, CR_NO_SUCH_DEVINST, CR_SUCCESS,
    DN_HAS_PROBLEM, DN_STARTED,
};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_IO_PENDING, ERROR_PATH_NOT_FOUND, FALSE,
    GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE, RtlNtStatusToDosError,
    TRUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::{CancelIoEx, DeviceIoControl, OVERLAPPED};
use windows_sys::Win32::System::Threading::{
    CREATE_WAITABLE_TIMER_HIGH_RESOLUTION, CancelWaitableTimer, CreateEventW,
    CreateWaitableTimerExW, INFINITE, SetWaitableTimer, TIMER_ALL_ACCESS, WaitForSingleObject,
};
use windows_sys::core::GUID;

use crate::clock::units_100ns;
use crate::device::{Device, Handle, IoFailure, NtStatus, OpenError, PendingRequest, Reply};
use crate::install::{DeviceState, InstalledDevice, missing_device_line, names_hardware_id};
use crate::user_timer::{UserTimer, signed_lateness};

/// The Win32 error the system reports for `status` (`RtlNtStatusToDosError`).
#[must_use]
pub fn nt_status_to_win32(status: NtStatus) -> u32 {
    // SAFETY: RtlNtStatusToDosError is a pure table lookup on an integer argument.
    unsafe { RtlNtStatusToDosError(status) }
}

fn last_error() -> u32 {
    // SAFETY: GetLastError only reads the calling thread's last-error value; callers call it
    // right after the failed Win32 call, before any other call could overwrite it.
    unsafe { GetLastError() }
}

/// A NUL-terminated UTF-16 copy of `text`.
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The installed ktimer device.
#[derive(Debug)]
pub struct WindowsDevice {
    /// NUL-terminated UTF-16 path passed to `CreateFileW`.
    path: Vec<u16>,
    /// The path as text, for the report.
    shown: String,
    /// How the path was found.
    found_by: &'static str,
}

impl WindowsDevice {
    /// Finds the device: first interface of the driver's interface class, else the symbolic
    /// link. Opens it once to tell "missing" from "present but refused".
    ///
    /// # Errors
    /// [`OpenError::NotFound`] if neither exists, [`OpenError::Failed`] if opening fails.
    pub fn locate() -> Result<Self, OpenError> {
        let guid = interface_guid();
        let device = match interface_paths(&guid) {
            Ok(paths) if !paths.is_empty() => {
                let shown = paths.into_iter().next().unwrap_or_default();
                Self {
                    path: wide(&shown),
                    shown,
                    found_by: "device interface",
                }
            }
            // No interface registered (or the configuration manager failed): try the link.
            Ok(_) | Err(_) => {
                let shown = symbolic_link_path();
                Self {
                    path: wide(&shown),
                    shown,
                    found_by: "symbolic link",
                }
            }
        };
        // Probe: a missing device is reported once, here, with the install hint.
        drop(device.open_file()?);
        Ok(device)
    }

    fn open_file(&self) -> Result<OwnedHandle, OpenError> {
        // SAFETY: `path` is a NUL-terminated UTF-16 string that outlives the call; null
        // security attributes and template handle are documented as allowed.
        let raw = unsafe {
            CreateFileW(
                self.path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED,
                ptr::null_mut(),
            )
        };
        if raw == INVALID_HANDLE_VALUE {
            let error = last_error();
            return Err(match error {
                ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => {
                    // Installed but not started (unsigned, failed to load) looks the same from
                    // here: ask the configuration manager before saying "install it".
                    let missing = format!("{} {}", self.found_by, self.shown);
                    OpenError::NotFound(missing_device_line(&missing, &installed_devices()))
                }
                ERROR_ACCESS_DENIED => OpenError::Failed(format!(
                    "access to {} denied: the device admits only Administrators and SYSTEM; \
                     run ktimer-test from an elevated prompt",
                    self.shown
                )),
                other => OpenError::Failed(format!(
                    "could not open {} (Win32 error {other})",
                    self.shown
                )),
            });
        }
        // SAFETY: `raw` is a valid file handle just returned by CreateFileW that nothing
        // else owns; OwnedHandle takes over closing it.
        Ok(unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) })
    }
}

impl Device for WindowsDevice {
    fn open(&self) -> Result<Box<dyn Handle>, OpenError> {
        let file = self.open_file()?;
        Ok(Box::new(WindowsHandle {
            file: Arc::new(Mutex::new(Some(file))),
        }))
    }

    fn describe(&self) -> String {
        format!("Windows device {} (found by {})", self.shown, self.found_by)
    }
}

/// The driver's device interface class as a Win32 GUID.
fn interface_guid() -> GUID {
    GUID::from_u128(ktimer_abi::device::DEVICE_INTERFACE_GUID_U128)
}

/// The user-mode path of the driver's symbolic link.
fn symbolic_link_path() -> String {
    ktimer_abi::device::DEVICE_PATH_USER.to_owned()
}

/// A configuration-manager multi-string list, read the documented way: ask its size, read it
/// into a buffer of that many UTF-16 units, and retry when it grew in between
/// (`CR_BUFFER_SMALL`). `size` and `read` wrap the two calls of one list.
fn configuration_manager_list(
    mut size: impl FnMut(&mut u32) -> u32,
    mut read: impl FnMut(&mut [u16]) -> u32,
) -> Result<Vec<String>, u32> {
    for _attempt in 0..8 {
        let mut length: u32 = 0;
        let result = size(&mut length);
        if result != CR_SUCCESS {
            return Err(result);
        }
        let mut buffer = vec![0_u16; usize::try_from(length).map_err(|_| CR_BUFFER_SMALL)?];
        let result = read(&mut buffer);
        if result == CR_BUFFER_SMALL {
            continue;
        }
        if result != CR_SUCCESS {
            return Err(result);
        }
        // A multi-string: entries separated by NUL, ended by an empty entry.
        return Ok(buffer
            .split(|&unit| unit == 0)
            .take_while(|entry| !entry.is_empty())
            .map(String::from_utf16_lossy)
            .collect());
    }
    Err(CR_BUFFER_SMALL)
}

/// The present interfaces of class `guid`, as device paths.
fn interface_paths(guid: &GUID) -> Result<Vec<String>, u32> {
    configuration_manager_list(
        |length| {
            // SAFETY: `length` and `guid` are valid for the call; a null device id asks for
            // interfaces of every device.
            unsafe {
                CM_Get_Device_Interface_List_SizeW(
                    length,
                    guid,
                    ptr::null(),
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            }
        },
        |buffer| {
            let length = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
            // SAFETY: `buffer` holds at least `length` UTF-16 units (`length` is its length,
            // clamped), the length passed in.
            unsafe {
                CM_Get_Device_Interface_ListW(
                    guid,
                    ptr::null(),
                    buffer.as_mut_ptr(),
                    length,
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            }
        },
    )
}

/// Every device instance the system knows (present or not) with the driver's hardware id,
/// and its state. Empty if there is none or the configuration manager cannot be asked.
fn installed_devices() -> Vec<InstalledDevice> {
    let Ok(ids) = device_instance_ids() else {
        return Vec::new();
    };
    ids.into_iter()
        .filter_map(|instance_id| {
            let wide_id = wide(&instance_id);
            let mut devinst: u32 = 0;
            // SAFETY: `devinst` is valid for a write; `wide_id` is NUL-terminated and
            // outlives the call. PHANTOM also finds devices that are not present.
            let located = unsafe {
                CM_Locate_DevNodeW(
                    &raw mut devinst,
                    wide_id.as_ptr(),
                    CM_LOCATE_DEVNODE_PHANTOM,
                )
            };
            if located != CR_SUCCESS || !has_driver_hardware_id(devinst) {
                return None;
            }
            Some(InstalledDevice {
                instance_id,
                state: devnode_state(devinst),
            })
        })
        .collect()
}

/// Every device instance id, present or not.
fn device_instance_ids() -> Result<Vec<String>, u32> {
    configuration_manager_list(
        |length| {
            // SAFETY: `length` is valid for a write; a null filter with FILTER_NONE asks for
            // every device instance.
            unsafe { CM_Get_Device_ID_List_SizeW(length, ptr::null(), CM_GETIDLIST_FILTER_NONE) }
        },
        |buffer| {
            let length = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
            // SAFETY: `buffer` holds at least `length` UTF-16 units (`length` is its length,
            // clamped), the length passed in.
            unsafe {
                CM_Get_Device_ID_ListW(
                    ptr::null(),
                    buffer.as_mut_ptr(),
                    length,
                    CM_GETIDLIST_FILTER_NONE,
                )
            }
        },
    )
}

/// Whether the devnode's hardware ids include the driver's.
fn has_driver_hardware_id(devinst: u32) -> bool {
    // Hardware ids are short; 2 KiB of UTF-16 holds many of them.
    let mut buffer = vec![0_u16; 1024];
    let mut bytes = u32::try_from(buffer.len() * 2).unwrap_or(0);
    let mut kind: u32 = 0;
    // SAFETY: `buffer` is valid for `bytes` bytes of writes; `kind` and `bytes` for one
    // write each.
    let result = unsafe {
        CM_Get_DevNode_Registry_PropertyW(
            devinst,
            CM_DRP_HARDWAREID,
            &raw mut kind,
            buffer.as_mut_ptr().cast(),
            &raw mut bytes,
            0,
        )
    };
    result == CR_SUCCESS && names_hardware_id(&buffer)
}

/// The devnode's state, from `CM_Get_DevNode_Status`.
fn devnode_state(devinst: u32) -> DeviceState {
    let (mut status, mut problem) = (0_u32, 0_u32);
    // SAFETY: both out-pointers are valid for a write.
    let result = unsafe { CM_Get_DevNode_Status(&raw mut status, &raw mut problem, devinst, 0) };
    match result {
        CR_SUCCESS if status & DN_HAS_PROBLEM != 0 => DeviceState::Problem(problem),
        CR_SUCCESS if status & DN_STARTED != 0 => DeviceState::Started,
        CR_NO_SUCH_DEVINST => DeviceState::NotPresent,
        // Present without a problem code, or a status that could not be read: say nothing
        // more specific than "not started".
        _ => DeviceState::NotStarted,
    }
}

/// The file handle, shared with in-flight requests so they can be cancelled; `None` once
/// closed.
type SharedFile = Arc<Mutex<Option<OwnedHandle>>>;

/// One open handle on the device.
#[derive(Debug)]
struct WindowsHandle {
    file: SharedFile,
}

/// How long a synchronous request may take before it is cancelled.
const SYNC_LIMIT: Duration = Duration::from_secs(30);

impl Handle for WindowsHandle {
    fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Result<usize, IoFailure> {
        let mut request = IoRequest::start(&self.file, code, input, output.len())?;
        let completion = request.wait(SYNC_LIMIT).unwrap_or_else(|| {
            request.cancel();
            request
                .wait(SYNC_LIMIT)
                .unwrap_or(Reply::Failed(IoFailure::Status(
                    windows_sys::Win32::Foundation::STATUS_CANCELLED,
                )))
        });
        match completion {
            Reply::Done(bytes) => {
                let length = bytes.len().min(output.len());
                output[..length].copy_from_slice(&bytes[..length]);
                Ok(length)
            }
            Reply::Failed(failure) => Err(failure),
        }
    }

    fn submit(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn PendingRequest>, IoFailure> {
        Ok(Box::new(IoRequest::start(
            &self.file, code, input, output_len,
        )?))
    }

    fn close(self: Box<Self>) {
        // Dropping the OwnedHandle is CloseHandle: cleanup and close reach the driver, which
        // completes this handle's pending requests.
        drop(
            self.file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl Drop for WindowsHandle {
    fn drop(&mut self) {
        drop(
            self.file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

/// One overlapped `DeviceIoControl`. The `OVERLAPPED` and the output buffer are on the
/// heap and stay put until the request has completed (see `Drop`).
struct IoRequest {
    file: SharedFile,
    overlapped: Box<OVERLAPPED>,
    /// Signalled by the I/O manager on completion (manual reset).
    event: OwnedHandle,
    output: Vec<u8>,
    completion: Option<Reply>,
}

impl IoRequest {
    fn start(
        file: &SharedFile,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<Self, IoFailure> {
        let invalid = IoFailure::Win32(windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER);
        let input_len = u32::try_from(input.len()).map_err(|_| invalid)?;
        let output_len_u32 = u32::try_from(output_len).map_err(|_| invalid)?;
        // Held for the whole call so the handle cannot be closed under it.
        let guard = file.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(handle) = guard.as_ref() else {
            // Closed handle: what Win32 reports for an invalid handle.
            return Err(IoFailure::Win32(
                windows_sys::Win32::Foundation::ERROR_INVALID_HANDLE,
            ));
        };
        // SAFETY: null attributes and name are allowed; manual-reset, initially unsignalled.
        let raw_event = unsafe { CreateEventW(ptr::null(), TRUE, FALSE, ptr::null()) };
        if raw_event.is_null() {
            return Err(IoFailure::Win32(last_error()));
        }
        // SAFETY: `raw_event` is a fresh event handle nobody else owns.
        let event = unsafe { OwnedHandle::from_raw_handle(raw_event as RawHandle) };
        let mut request = Self {
            file: Arc::clone(file),
            overlapped: Box::new(OVERLAPPED {
                hEvent: raw_event,
                ..OVERLAPPED::default()
            }),
            event,
            output: vec![0; output_len],
            completion: None,
        };
        let input_ptr = if input.is_empty() {
            ptr::null()
        } else {
            input.as_ptr().cast()
        };
        let output_ptr = if output_len == 0 {
            ptr::null_mut()
        } else {
            request.output.as_mut_ptr().cast()
        };
        // SAFETY: the handle is open (held under the lock); input is read during the call
        // only (METHOD_BUFFERED copies it); the output buffer and the OVERLAPPED live on the
        // heap in `request`, which does not free them before completion (see Drop).
        let ok = unsafe {
            DeviceIoControl(
                handle.as_raw_handle() as HANDLE,
                code,
                input_ptr,
                input_len,
                output_ptr,
                output_len_u32,
                ptr::null_mut(),
                &raw mut *request.overlapped,
            )
        };
        if ok == FALSE {
            let error = last_error();
            if error != ERROR_IO_PENDING {
                // Failed before it pended: the I/O manager does not fill the OVERLAPPED for
                // a synchronous failure, so only the Win32 error is known.
                request.completion = Some(Reply::Failed(IoFailure::Win32(error)));
            }
        }
        drop(guard);
        Ok(request)
    }

    /// Reads the outcome from the completed OVERLAPPED (what `GetOverlappedResult` reads;
    /// done directly so it also works after the file handle was closed).
    fn read_completion(&mut self) -> Reply {
        let status = overlapped_status(self.overlapped.Internal);
        if status < 0 {
            return Reply::Failed(IoFailure::Status(status));
        }
        let length = self.overlapped.InternalHigh.min(self.output.len());
        let mut bytes = std::mem::take(&mut self.output);
        bytes.truncate(length);
        Reply::Done(bytes)
    }
}

/// The NTSTATUS in `OVERLAPPED::Internal`: a `ULONG_PTR` whose low 32 bits are the status.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the status is the low 32 bits by definition"
)]
fn overlapped_status(internal: usize) -> NtStatus {
    (internal as u32).cast_signed()
}

impl PendingRequest for IoRequest {
    fn wait(&mut self, timeout: Duration) -> Option<Reply> {
        if let Some(done) = &self.completion {
            return Some(done.clone());
        }
        let millis = u32::try_from(timeout.as_millis())
            .unwrap_or(INFINITE - 1)
            .min(INFINITE - 1);
        // SAFETY: the event handle is owned by `self` and open.
        let waited = unsafe { WaitForSingleObject(self.event.as_raw_handle() as HANDLE, millis) };
        if waited != WAIT_OBJECT_0 {
            return None;
        }
        let done = self.read_completion();
        self.completion = Some(done.clone());
        Some(done)
    }

    fn cancel(&self) {
        if self.completion.is_some() {
            return;
        }
        let guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = guard.as_ref() {
            // SAFETY: the handle is open (held under the lock) and the OVERLAPPED identifies
            // a request issued on it; cancelling a request that already completed only
            // returns ERROR_NOT_FOUND, which is fine here.
            unsafe {
                CancelIoEx(
                    handle.as_raw_handle() as HANDLE,
                    &raw const *self.overlapped,
                )
            };
        }
    }
}

impl Drop for IoRequest {
    fn drop(&mut self) {
        if self.completion.is_some() {
            return;
        }
        self.cancel();
        if self.wait(SYNC_LIMIT).is_none() {
            // The driver never completed the request: the kernel may still write into the
            // OVERLAPPED and the buffer, so they must never be freed.
            std::mem::forget(std::mem::take(&mut self.output));
            let leaked = std::mem::replace(&mut self.overlapped, Box::new(OVERLAPPED::default()));
            std::mem::forget(leaked);
        }
    }
}

/// A high-resolution waitable timer (`CREATE_WAITABLE_TIMER_HIGH_RESOLUTION`, Windows 10
/// 1803+), the user-mode comparison on Windows.
#[derive(Debug, Default)]
pub struct HighResolutionWaitableTimer;

impl UserTimer for HighResolutionWaitableTimer {
    fn name(&self) -> String {
        "user-mode high-resolution waitable timer (CreateWaitableTimerExW)".to_owned()
    }

    fn run_periodic(&self, period: Duration, count: u32) -> Result<Vec<i64>, String> {
        // SetWaitableTimer takes its period in whole milliseconds.
        if !period.subsec_nanos().is_multiple_of(1_000_000) || period.is_zero() {
            return Err(format!(
                "period {period:?} is not a whole number of milliseconds"
            ));
        }
        let period_ms = i32::try_from(period.as_millis()).map_err(|_| "period too long")?;
        // SAFETY: null attributes and name are allowed; the flag and access mask are
        // documented values.
        let raw = unsafe {
            CreateWaitableTimerExW(
                ptr::null(),
                ptr::null(),
                CREATE_WAITABLE_TIMER_HIGH_RESOLUTION,
                TIMER_ALL_ACCESS,
            )
        };
        if raw.is_null() {
            return Err(format!(
                "CreateWaitableTimerExW(HIGH_RESOLUTION) failed: Win32 error {}",
                last_error()
            ));
        }
        // SAFETY: `raw` is a fresh timer handle nobody else owns.
        let timer = unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) };
        let timer_handle = timer.as_raw_handle() as HANDLE;
        // Negative = relative, in 100 ns units: first expiry one period from now.
        let due = -units_100ns(period);
        let start = Instant::now();
        // SAFETY: `due` outlives the call; no completion routine.
        let ok = unsafe {
            SetWaitableTimer(
                timer_handle,
                &raw const due,
                period_ms,
                None,
                ptr::null(),
                FALSE,
            )
        };
        if ok == FALSE {
            return Err(format!(
                "SetWaitableTimer failed: Win32 error {}",
                last_error()
            ));
        }
        let limit = u32::try_from(period.as_millis().saturating_mul(4).saturating_add(1000))
            .unwrap_or(INFINITE - 1);
        let mut lateness = Vec::new();
        for k in 1..=count {
            // SAFETY: the timer handle is owned by `timer` and open.
            let waited = unsafe { WaitForSingleObject(timer_handle, limit) };
            if waited != WAIT_OBJECT_0 {
                break;
            }
            lateness.push(signed_lateness(Instant::now(), start + period * k));
        }
        // SAFETY: the timer handle is owned by `timer` and open.
        unsafe { CancelWaitableTimer(timer_handle) };
        Ok(lateness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitable_timer_runs_every_period() {
        let lateness = HighResolutionWaitableTimer
            .run_periodic(Duration::from_millis(2), 5)
            .expect("a high-resolution waitable timer (Windows 10 1803 or later)");
        assert_eq!(lateness.len(), 5);
    }

    #[test]
    fn waitable_timer_refuses_sub_millisecond_periods() {
        assert!(
            HighResolutionWaitableTimer
                .run_periodic(Duration::from_micros(1500), 1)
                .is_err()
        );
    }

    #[test]
    fn statuses_map_to_their_win32_errors() {
        use windows_sys::Win32::Foundation::{ERROR_INVALID_PARAMETER, ERROR_OPERATION_ABORTED};
        assert_eq!(
            nt_status_to_win32(ktimer_abi::status::STATUS_INVALID_PARAMETER),
            ERROR_INVALID_PARAMETER
        );
        assert_eq!(
            nt_status_to_win32(ktimer_abi::status::STATUS_CANCELLED),
            ERROR_OPERATION_ABORTED
        );
        assert!(IoFailure::Win32(ERROR_OPERATION_ABORTED).is(ktimer_abi::status::STATUS_CANCELLED));
    }
}
