//! Driver entry and unload: the device object, its symbolic link and the dispatch table.
//! Both run at `PASSIVE_LEVEL`.

use core::ptr::null_mut;

use windows_sys::Wdk::Foundation::{DEVICE_OBJECT, DRIVER_OBJECT, IRP};
use windows_sys::Wdk::System::SystemServices::{
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IoCreateDevice,
    IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
};
use windows_sys::Win32::Foundation::{
    NTSTATUS, STATUS_INVALID_DEVICE_REQUEST, STATUS_SUCCESS, UNICODE_STRING,
};
use windows_sys::Win32::System::Ioctl::FILE_DEVICE_UNKNOWN;

use ktimer_abi::device::{DEVICE_NAME_KERNEL_UTF16, SYMBOLIC_LINK_KERNEL_UTF16};

use crate::irp;
use crate::unicode;

/// `\Device\KTimer`, the name the KMDF driver gives its device too.
static DEVICE_NAME: [u16; DEVICE_NAME_KERNEL_UTF16.len()] = DEVICE_NAME_KERNEL_UTF16;
/// `\DosDevices\KTimer`: user mode opens `\\.\KTimer`. This legacy (non-Plug and Play)
/// driver has no physical device object to register a device interface on, so the app
/// finds the device by this link, its documented fallback.
static LINK_NAME: [u16; SYMBOLIC_LINK_KERNEL_UTF16.len()] = SYMBOLIC_LINK_KERNEL_UTF16;

/// `FILE_DEVICE_SECURE_OPEN`: apply the device's security to opens of names below it.
const FILE_DEVICE_SECURE_OPEN: u32 = 0x100;

/// Creates the device and its symbolic link and installs the dispatch routines.
///
/// # Safety
/// Called once by the I/O manager with its driver object, at `PASSIVE_LEVEL`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    let device_name = unicode::counted(&DEVICE_NAME);
    let link_name = unicode::counted(&LINK_NAME);
    let mut device: *mut DEVICE_OBJECT = null_mut();
    // SAFETY: `driver` is the I/O manager's driver object; the name is a valid counted string
    // and `device` a valid out pointer.
    let status = unsafe {
        IoCreateDevice(
            driver,
            0,
            &raw const device_name,
            FILE_DEVICE_UNKNOWN,
            FILE_DEVICE_SECURE_OPEN,
            false,
            &raw mut device,
        )
    };
    if status < 0 {
        return status;
    }
    // SAFETY: both are valid counted strings; the device of that name exists now.
    let status = unsafe { IoCreateSymbolicLink(&raw const link_name, &raw const device_name) };
    if status < 0 {
        // SAFETY: `device` was created above and nothing refers to it yet.
        unsafe { IoDeleteDevice(device) };
        return status;
    }
    // SAFETY: the driver object is ours to fill in during DriverEntry.
    let driver = unsafe { &mut *driver };
    for major in [IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
        driver.MajorFunction[major as usize] = Some(dispatch_open_close);
    }
    driver.MajorFunction[IRP_MJ_DEVICE_CONTROL as usize] = Some(dispatch_device_control);
    driver.DriverUnload = Some(unload);
    STATUS_SUCCESS
}

/// Undoes `DriverEntry`.
unsafe extern "system" fn unload(driver: *const DRIVER_OBJECT) {
    let link_name = unicode::counted(&LINK_NAME);
    // SAFETY: the link was created in DriverEntry; deleting it at unload is the rule.
    unsafe { IoDeleteSymbolicLink(&raw const link_name) };
    // SAFETY: the I/O manager passes our live driver object.
    let device = unsafe { (*driver).DeviceObject };
    if !device.is_null() {
        // SAFETY: our only device; no handle is open when unload runs.
        unsafe { IoDeleteDevice(device) };
    }
}

/// `IRP_MJ_CREATE`, `IRP_MJ_CLEANUP`, `IRP_MJ_CLOSE`.
unsafe extern "system" fn dispatch_open_close(
    _device: *const DEVICE_OBJECT,
    request: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the I/O manager handed us the IRP; we complete it once and drop it.
    unsafe { irp::complete(request, STATUS_SUCCESS, 0) }
}

/// `IRP_MJ_DEVICE_CONTROL`.
unsafe extern "system" fn dispatch_device_control(
    _device: *const DEVICE_OBJECT,
    request: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the I/O manager handed us this live IRP; we are its only user until completion.
    let request_fields = unsafe { &*request };
    // SAFETY: a device-control IRP in its dispatch routine.
    let _control = unsafe { irp::device_control(request_fields) };
    // SAFETY: as above; completed once.
    unsafe { irp::complete(request, STATUS_INVALID_DEVICE_REQUEST, 0) }
}
