//! Driver entry and unload: the seam binding's start, the timer service, the device object
//! and its symbolic link, the dispatch table. Both run at `PASSIVE_LEVEL`.

use alloc::alloc::{Layout, alloc};
use alloc::boxed::Box;
use core::ptr::null_mut;

use ktimer_abi::device::{DEVICE_NAME_KERNEL_UTF16, SYMBOLIC_LINK_KERNEL_UTF16};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::Pended;
use ktimer_service::{Service, ServiceConfig};
use windows_sys::Wdk::Foundation::{DEVICE_OBJECT, DRIVER_OBJECT};
use windows_sys::Wdk::System::SystemServices::{
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IoCreateDevice,
    IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
};
use windows_sys::Win32::Foundation::{
    NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE, STATUS_SUCCESS,
    UNICODE_STRING,
};
use windows_sys::Win32::System::Ioctl::FILE_DEVICE_UNKNOWN;

use crate::dispatch;
use crate::request::WdmRequest;
use crate::unicode;

/// `\Device\KTimer`, the name the KMDF driver gives its device too.
static DEVICE_NAME: [u16; DEVICE_NAME_KERNEL_UTF16.len()] = DEVICE_NAME_KERNEL_UTF16;
/// `\DosDevices\KTimer`: user mode opens `\\.\KTimer`. This legacy (non-Plug and Play)
/// driver has no physical device object to register a device interface on, so the app
/// finds the device by this link, its documented fallback.
static LINK_NAME: [u16; SYMBOLIC_LINK_KERNEL_UTF16.len()] = SYMBOLIC_LINK_KERNEL_UTF16;

/// `FILE_DEVICE_SECURE_OPEN`: apply the device's security to opens of names below it.
const FILE_DEVICE_SECURE_OPEN: u32 = 0x100;

/// Moves `value` into a new pool block; `None` (instead of a bug check) if the pool is out.
fn try_box<T>(value: T) -> Option<Box<T>> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Some(Box::new(value));
    }
    // SAFETY: a non-zero-sized layout.
    let block = unsafe { alloc(layout) }.cast::<T>();
    if block.is_null() {
        return None;
    }
    // SAFETY: `block` is a fresh allocation for one T from the global allocator.
    unsafe { block.write(value) };
    // SAFETY: allocated with T's layout by the global allocator and initialised above.
    Some(unsafe { Box::from_raw(block) })
}

/// Starts the seam binding and the timer service, creates the device and its symbolic link,
/// and installs the dispatch routines.
///
/// # Safety
/// Called once by the I/O manager with its driver object, at `PASSIVE_LEVEL`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    if let Err(status) = wdk_sys::start() {
        return status;
    }
    let status = start_service_and_device(driver);
    if status < 0 {
        wdk_sys::stop();
    }
    status
}

fn start_service_and_device(driver: *mut DRIVER_OBJECT) -> NTSTATUS {
    let Some(passive) = PassiveLevel::current() else {
        return STATUS_INVALID_DEVICE_STATE;
    };
    let service = match Service::<Pended<WdmRequest>>::new(ServiceConfig::default(), &passive) {
        Ok(service) => service,
        Err(status) => return status,
    };
    let Some(service) = try_box(service) else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    // Before the device exists, so no IRP can arrive without a service.
    dispatch::install(service);
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
        drop_service(&passive);
        return status;
    }
    // SAFETY: both are valid counted strings; the device of that name exists now.
    let status = unsafe { IoCreateSymbolicLink(&raw const link_name, &raw const device_name) };
    if status < 0 {
        // SAFETY: `device` was created above and nothing refers to it yet.
        unsafe { IoDeleteDevice(device) };
        drop_service(&passive);
        return status;
    }
    // SAFETY: the driver object is ours to fill in during DriverEntry.
    let driver = unsafe { &mut *driver };
    driver.MajorFunction[IRP_MJ_CREATE as usize] = Some(dispatch::create);
    driver.MajorFunction[IRP_MJ_CLEANUP as usize] = Some(dispatch::cleanup);
    driver.MajorFunction[IRP_MJ_CLOSE as usize] = Some(dispatch::close);
    driver.MajorFunction[IRP_MJ_DEVICE_CONTROL as usize] = Some(dispatch::device_control);
    driver.DriverUnload = Some(unload);
    STATUS_SUCCESS
}

/// Tears the service down (every handle's waits cancelled, every timer destroyed and freed)
/// and frees it.
fn drop_service(passive: &PassiveLevel) {
    if let Some(service) = dispatch::uninstall() {
        service.unload(passive);
        drop(service);
    }
}

/// Undoes `DriverEntry`. The I/O manager calls it only when no file object is open.
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
    if let Some(passive) = PassiveLevel::current() {
        drop_service(&passive);
    }
    wdk_sys::stop();
}
