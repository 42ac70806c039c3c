//! The KMDF shell: the driver's entry points on Windows. Compiled only with
//! `cfg(ktimer_seam = "wdk")` (a Windows target with the default feature `kmdf`).
//!
//! It translates between the framework and the portable timer service and keeps no timer
//! logic of its own:
//!
//! | framework event | shell | service |
//! | --- | --- | --- |
//! | `DriverEntry` | `WdfDriverCreate` | — |
//! | `EvtDriverDeviceAdd` | [`device`]: file-object callbacks, name, SDDL, `WdfDeviceCreate`, device interface, symbolic link, default queue | `Service::new` (owned by the device context) |
//! | `EvtDeviceFileCreate` | [`file`] | `Service::open` → `FileHandle` in the file-object context |
//! | `EvtIoDeviceControl` | [`request`]: wraps the `WDFREQUEST` | `ioctl::dispatch` |
//! | `EvtRequestCancel` | [`request`] | `Service::cancel_wait` |
//! | `EvtFileCleanup` / `EvtFileClose` | [`file`] | `Service::cleanup` / `Service::close` |
//! | device `EvtCleanupCallback` | [`device`] | `Service::unload`, then drop |
//! | `EvtDriverUnload` | trace | — |
//!
//! IRQL: the device is created with `WdfExecutionLevelPassive`, which its queue and file
//! objects inherit, so `EvtIoDeviceControl` and the file callbacks run at `PASSIVE_LEVEL`
//! as the service's PASSIVE-only operations require (each callback still checks, through
//! `PassiveLevel::current`, and refuses instead of proceeding at a higher level). Only the
//! cancel routine can run at `DISPATCH_LEVEL`; it uses nothing but `<= DISPATCH_LEVEL`
//! service routines.
//!
//! Tracing: `wdk::println!` (`DbgPrint`), every line prefixed `ktimer:`; load, device
//! creation, unload and every failure. Nothing is traced per request.
//!
//! **Not compiled or run here**: the machines this project is developed on have no WDK, and
//! wdk-sys generates its bindings from one. Every framework call was written against the
//! wdk-sys 0.5.1, wdk 0.4.1, wdk-alloc 0.4.1 and wdk-panic 0.4.1 sources (rechecked against
//! wdk-sys 0.5.2, wdk 0.5.0, wdk-alloc 0.4.2 and wdk-panic 0.5.0, and type-checked against
//! the real KMDF headers: docs/WINDOWS.md, "What was verified on Linux"), the
//! `call_unsafe_wdf_function_binding!` expansions in windows-drivers-rs' macro tests, the
//! Windows-rust-driver-samples echo driver and Microsoft's DDI reference (see
//! docs/WINDOWS.md).

mod device;
mod file;
mod request;
mod wdf;

use wdk::println;
use wdk_sys::{
    NT_SUCCESS, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, ULONG, WDF_DRIVER_CONFIG,
    WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use self::wdf::ulong_size_of;

// The kernel has no unwinding and no default allocator: wdk-panic's handler and wdk-alloc's
// pool allocator (tag `rust`, `POOL_FLAG_NON_PAGED`). wdk-panic 0.5.0's handler bug-checks
// with code 0x52504E43 ("RPNC"), the panic's file, line and column in the parameters (it
// breaks into a debugger first in a debug build); 0.4.1 looped forever instead. A panic is
// a bug in this driver; the driver code is written not to panic. Left out of panic=unwind
// builds (test and bench profiles only, never a driver: lib.rs), where std provides both.
#[cfg(panic = "abort")]
extern crate wdk_panic;

#[cfg(panic = "abort")]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

const WDF_DRIVER_CONFIG_SIZE: ULONG = ulong_size_of::<WDF_DRIVER_CONFIG>();

/// Pool tag of the framework's allocations on the driver's behalf (`KTwf`).
const WDF_POOL_TAG: ULONG = ULONG::from_le_bytes(*b"KTwf");

/// `DriverEntry`: registers the driver with the framework. `PASSIVE_LEVEL`.
///
/// The image's entry point is the framework's `FxDriverEntry` (wdk-build links with
/// `/ENTRY:FxDriverEntry`), which binds to KMDF and then calls this.
///
/// # Safety
///
/// Called once, by the kernel through `FxDriverEntry`, with the driver object and the
/// driver's registry path.
// SAFETY: `DriverEntry` is the symbol `FxDriverEntry` calls; nothing else in the image
// exports that name.
#[unsafe(export_name = "DriverEntry")]
unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: WDF_DRIVER_CONFIG_SIZE,
        EvtDriverDeviceAdd: Some(device::evt_driver_device_add),
        EvtDriverUnload: Some(evt_driver_unload),
        DriverPoolTag: WDF_POOL_TAG,
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: `driver` and `registry_path` are the kernel's DriverEntry arguments, passed on
    // unchanged; the attributes are optional (WDF_NO_OBJECT_ATTRIBUTES); `config` is a
    // live, initialised WDF_DRIVER_CONFIG with its size set; the output handle is optional
    // and not wanted (null).
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>(),
        )
    };
    if NT_SUCCESS(status) {
        println!("ktimer: driver loaded");
    } else {
        println!("ktimer: WdfDriverCreate failed: {status:#010x}");
    }
    status
}

/// `EvtDriverUnload`: the last callback, after every device is gone (each device's cleanup
/// has already unloaded its timer service, see [`device`]). `PASSIVE_LEVEL`.
extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    println!("ktimer: driver unloaded");
}
