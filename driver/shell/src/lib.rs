//! A KMDF shell for any driver logic, as a library: `DriverEntry` and every framework
//! callback of a software device with one default queue and per-handle state. On Windows it
//! runs on KMDF through wdk-sys, linked into the driver's `.sys`; on every other target the
//! same code runs on kernel-sim's KMDF model, reached through the same seam (`ktimer-seam`'s
//! `wdf` names), which is how the tests, the fuzzer and the companion app's `--sim` load a
//! driver.
//!
//! The shell owns the KMDF plumbing and no logic of its own. What it hosts is one type
//! implementing [`DriverLogic`]: a value per device, a value per open handle, what each
//! framework event becomes, and the device's identity ([`DeviceIdentity`]: names, security
//! descriptor, interface GUID, pool tag). A driver instantiates it once, as
//! [`driver_entry::<Logic>`](driver_entry), in its logic crate (`driver/kmdf`: the timer
//! service in the template's own driver, a one-IOCTL example in a bare project).
//!
//! | framework event | shell | hosted logic |
//! | --- | --- | --- |
//! | `DriverEntry` | `WdfDriverCreate` | — |
//! | `EvtDriverDeviceAdd` | `device`: file-object callbacks, name, SDDL, `WdfDeviceCreate`, device interface, symbolic link; `queue`: the default queue | [`DriverLogic::create`] (owned by the device context) |
//! | `EvtDeviceFileCreate` | `file` | [`DriverLogic::open`] → its handle value in the file-object context |
//! | `EvtIoDeviceControl` | `queue`: wraps the `WDFREQUEST` as a [`Request`] | [`DriverLogic::device_control`] |
//! | `EvtRequestCancel` | `queue` | [`DriverLogic::cancel`] |
//! | `EvtFileCleanup` / `EvtFileClose` | `file` | [`DriverLogic::cleanup`] / [`DriverLogic::close`] |
//! | device `EvtCleanupCallback` | `device` | [`DriverLogic::unload`], then drop |
//! | `EvtDriverUnload` | trace | — |
//!
//! Modules, each importing only those before it (no import circle; `xtask`'s
//! `import_graph` test checks): `sys` (the seam's names) and `wdf` (KMDF plumbing);
//! `request` (the `WDFREQUEST` wrapper, handed its cancel routine by the queue);
//! `logic` (what the shell asks of the hosted logic); `contexts` (the device's and file
//! objects' contexts: the logic and its per-handle values); `queue` and `file` (the I/O
//! callbacks); `device` (creation and cleanup); [`sim`] (simulator builds only: the
//! hooks tests use); this root.
//!
//! IRQL: the device is created with `WdfExecutionLevelPassive`, which its queue and file
//! objects inherit, so `EvtIoDeviceControl` and the file callbacks run at `PASSIVE_LEVEL`
//! (each callback still checks, through `PassiveLevel::current`, and refuses instead of
//! proceeding at a higher level). Only the cancel routine can run at `DISPATCH_LEVEL`.
//!
//! Tracing: the seam's `trace!` (`DbgPrint` on Windows, the simulated kernel's log here),
//! every line prefixed with the identity's driver name; load, device creation, unload and
//! every failure. Nothing is traced per request.
//!
//! **Executed on a model of KMDF, never on Windows**: on Linux the shell runs on
//! kernel-sim's KMDF model (docs/SIMULATOR.md); its wdk arm is type-checked and linted
//! against wdk-sys bindings generated from the public KMDF 1.33 headers
//! (`tests/wdk-real-headers/`), but no Windows machine has run it.

#![no_std]

// The simulator's test hooks keep per-kernel settings in std collections.
#[cfg(not(windows))]
extern crate std;

/// Writes one line of driver trace output.
///
/// `wdk::println!` (`DbgPrint`, usable at IRQL <= DIRQL) in the real driver; the simulated
/// kernel's log elsewhere. Never used on a request's hot path.
macro_rules! trace {
    ($($arg:tt)*) => {{
        #[cfg(windows)]
        {
            ::wdk::println!($($arg)*);
        }
        #[cfg(not(windows))]
        {
            ::kernel_sim::print(format_args!($($arg)*));
        }
    }};
}

mod contexts;
mod device;
mod file;
mod logic;
mod queue;
mod request;
#[cfg(not(windows))]
pub mod sim;
mod sys;
mod wdf;

/// The seam's names in this crate's signatures: `NTSTATUS`, and the `DriverEntry`
/// arguments.
pub use ktimer_seam::wdf::{NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT};
pub use logic::{DeviceIdentity, DriverLogic, HandleStorage};
pub use request::Request;

use crate::sys::{
    NT_SUCCESS, ULONG, WDF_DRIVER_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER,
    call_unsafe_wdf_function_binding,
};

use self::wdf::ulong_size_of;

const WDF_DRIVER_CONFIG_SIZE: ULONG = ulong_size_of::<WDF_DRIVER_CONFIG>();

/// A driver's `DriverEntry`, as a value (for the simulated I/O manager,
/// `kernel_sim::wdf::Framework::load`).
pub type DriverEntry = unsafe extern "system" fn(PDRIVER_OBJECT, PCUNICODE_STRING) -> NTSTATUS;

/// `DriverEntry` of a driver hosting `L`: registers the driver with the framework.
/// `PASSIVE_LEVEL`.
///
/// The image's entry point is the framework's `FxDriverEntry` (wdk-build links with
/// `/ENTRY:FxDriverEntry`), which binds to KMDF and then calls `DriverEntry`: the `.sys`
/// package exports a function of that name that calls this one.
///
/// # Safety
///
/// Called once per driver object, by the kernel (through `FxDriverEntry` and the image's
/// `DriverEntry`) or the simulated I/O manager, with the driver object and the driver's
/// registry path.
pub unsafe extern "system" fn driver_entry<L: DriverLogic>(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: WDF_DRIVER_CONFIG_SIZE,
        EvtDriverDeviceAdd: Some(device::evt_driver_device_add::<L>),
        EvtDriverUnload: Some(evt_driver_unload::<L>),
        DriverPoolTag: ULONG::from_le_bytes(L::IDENTITY.pool_tag),
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
    let name = L::IDENTITY.driver_name;
    if NT_SUCCESS(status) {
        trace!("{name}: driver loaded");
    } else {
        trace!("{name}: WdfDriverCreate failed: {status:#010x}");
    }
    status
}

/// `EvtDriverUnload`: the last callback, after every device is gone (each device's cleanup
/// has already unloaded its logic, see `device`). `PASSIVE_LEVEL`.
extern "C" fn evt_driver_unload<L: DriverLogic>(_driver: WDFDRIVER) {
    trace!("{}: driver unloaded", L::IDENTITY.driver_name);
}
