//! The KMDF shell: the driver's entry points. On Windows (`cfg(ktimer_seam = "wdk")`) it
//! runs on KMDF through wdk-sys; on every other host (`cfg(ktimer_seam = "sim")`) the same
//! code runs on kernel-sim's KMDF model, reached through the same seam
//! (`crate::kernel::sys`), which is how the tests, the fuzzer and `ktimer-test --sim` load
//! the driver.
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
//! Tracing: the seam's `trace!` (`DbgPrint` on Windows, the simulated kernel's log here),
//! every line prefixed `ktimer:`; load, device creation, unload and every failure. Nothing
//! is traced per request.
//!
//! **Executed on a model of KMDF, never on Windows**: on Linux the shell runs on
//! kernel-sim's KMDF model (docs/SIMULATOR.md); its wdk arm is type-checked and linted
//! against wdk-sys bindings generated from the public KMDF 1.33 headers
//! (`../shared/wdk-real-headers/`), but no Windows machine has run it.

mod device;
mod file;
mod request;
#[cfg(ktimer_seam = "sim")]
pub mod sim_hooks;
mod wdf;

use crate::kernel::sys::{
    NT_SUCCESS, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, ULONG, WDF_DRIVER_CONFIG,
    WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding, trace,
};

use self::wdf::ulong_size_of;

// The kernel has no unwinding and no default allocator: wdk-panic's handler and wdk-alloc's
// pool allocator (tag `rust`, `POOL_FLAG_NON_PAGED`). wdk-panic 0.5.0's handler bug-checks
// with code 0x52504E43 ("RPNC"), the panic's file, line and column in the parameters (it
// breaks into a debugger first in a debug build); 0.4.1 looped forever instead. A panic is
// a bug in this driver; the driver code is written not to panic. Left out of panic=unwind
// builds (test and bench profiles only, never a driver: lib.rs), where std provides both.
#[cfg(all(ktimer_seam = "wdk", panic = "abort"))]
extern crate wdk_panic;

#[cfg(all(ktimer_seam = "wdk", panic = "abort"))]
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
#[cfg_attr(ktimer_seam = "wdk", unsafe(export_name = "DriverEntry"))]
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
        trace!("ktimer: driver loaded");
    } else {
        trace!("ktimer: WdfDriverCreate failed: {status:#010x}");
    }
    status
}

/// The driver's `DriverEntry` as a value, for the simulated I/O manager
/// (`kernel_sim::wdf::Framework::load`).
#[cfg(ktimer_seam = "sim")]
pub const DRIVER_ENTRY: unsafe extern "system" fn(PDRIVER_OBJECT, PCUNICODE_STRING) -> NTSTATUS =
    driver_entry;

/// `EvtDriverUnload`: the last callback, after every device is gone (each device's cleanup
/// has already unloaded its timer service, see [`device`]). `PASSIVE_LEVEL`.
extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    trace!("ktimer: driver unloaded");
}
