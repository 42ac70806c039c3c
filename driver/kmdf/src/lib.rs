//! The KMDF shell: the driver's entry points, as a library. On Windows it runs on KMDF
//! through wdk-sys, linked into `ktimer.sys` (the `driver` package, which exports
//! [`driver_entry`] as `DriverEntry`); on every other target the same code runs on
//! kernel-sim's KMDF model, reached through the same seam (`ktimer-seam`'s `wdf` names),
//! which is how the tests, the fuzzer and `ktimer-test --sim` load the driver
//! ([`DRIVER_ENTRY`]).
//!
//! It translates between the framework and the driver logic it hosts, and keeps no logic
//! of its own. What it asks of that logic is one trait, `logic::DriverLogic` (a value per
//! device, a per-handle value kept in each file object's context, and what each framework
//! event becomes); the logic hosted here is the timer service, bound in `timer_logic` and
//! named once by `Logic`. A driver made from this template for something other than timers
//! replaces that module and that alias; the rest of the shell stays.
//!
//! | framework event | shell | timer logic |
//! | --- | --- | --- |
//! | `DriverEntry` | `WdfDriverCreate` | — |
//! | `EvtDriverDeviceAdd` | [`device`]: file-object callbacks, name, SDDL, `WdfDeviceCreate`, device interface, symbolic link; [`queue`]: the default queue | `Service::new` (owned by the device context) |
//! | `EvtDeviceFileCreate` | [`file`] | `Service::open` → `FileHandle` in the file-object context |
//! | `EvtIoDeviceControl` | [`queue`]: wraps the `WDFREQUEST` as a [`request`] | `dispatch::dispatch` |
//! | `EvtRequestCancel` | [`queue`] | `dispatch::cancel_wait` (`Service::cancel_wait`) |
//! | `EvtFileCleanup` / `EvtFileClose` | [`file`] | `Service::cleanup` / `Service::close` |
//! | device `EvtCleanupCallback` | [`device`] | `Service::unload`, then drop |
//! | `EvtDriverUnload` | trace | — |
//!
//! Modules, each importing only those before it (no import circle; `xtask`'s
//! `import_graph` test checks): [`sys`] (the seam's names) and [`wdf`] (KMDF plumbing);
//! [`request`] (the `WDFREQUEST` wrapper, handed its cancel routine by the queue);
//! [`logic`] (what the shell asks of the hosted logic) and [`timer_logic`] (the timer
//! service behind it); [`contexts`] (the device's and file objects' contexts: the logic
//! and its per-handle values);
//! [`queue`] and [`file`] (the I/O callbacks); [`device`] (creation and cleanup); this root.
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

#![no_std]

// The simulator's test hooks keep per-kernel settings in std collections.
#[cfg(not(windows))]
extern crate std;

/// Writes one line of driver trace output.
///
/// `wdk::println!` (`DbgPrint`, usable at IRQL <= DIRQL) in the real driver; the simulated
/// kernel's log elsewhere. Never used on a request's or a timer's hot path.
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
pub mod sim_hooks;
mod sys;
mod timer_logic;
mod wdf;

/// The driver logic this shell hosts, named once: the timer service. A driver made from
/// this template without timers replaces `timer_logic` and this alias.
type Logic = timer_logic::TimerService;

use crate::sys::{
    NT_SUCCESS, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, ULONG, WDF_DRIVER_CONFIG,
    WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use self::wdf::ulong_size_of;

const WDF_DRIVER_CONFIG_SIZE: ULONG = ulong_size_of::<WDF_DRIVER_CONFIG>();

/// Pool tag of the framework's allocations on the driver's behalf (`KTwf`).
const WDF_POOL_TAG: ULONG = ULONG::from_le_bytes(*b"KTwf");

/// `DriverEntry`: registers the driver with the framework. `PASSIVE_LEVEL`.
///
/// The image's entry point is the framework's `FxDriverEntry` (wdk-build links with
/// `/ENTRY:FxDriverEntry`), which binds to KMDF and then calls `DriverEntry`: the `.sys`
/// package exports this function under that name.
///
/// # Safety
///
/// Called once per driver object, by the kernel (through `FxDriverEntry` and the image's
/// `DriverEntry`) or the simulated I/O manager, with the driver object and the driver's
/// registry path.
pub unsafe extern "system" fn driver_entry(
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
pub const DRIVER_ENTRY: unsafe extern "system" fn(PDRIVER_OBJECT, PCUNICODE_STRING) -> NTSTATUS =
    driver_entry;

/// `EvtDriverUnload`: the last callback, after every device is gone (each device's cleanup
/// has already unloaded its timer service, see [`device`]). `PASSIVE_LEVEL`.
extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    trace!("ktimer: driver unloaded");
}
