//! `ktimer.sys`: the kernel image. It adds to the driver's KMDF side (`ktimer-kmdf`, its
//! logic hosted in the KMDF shell) only what a kernel binary needs, and only for Windows
//! targets:
//!
//! - the `DriverEntry` export, which the framework's `FxDriverEntry` (the image's entry
//!   point, set by wdk-build's `/ENTRY:FxDriverEntry`) calls after binding to KMDF;
//! - the global allocator (wdk-alloc: non-paged pool, tag `rust`);
//! - the panic handler (wdk-panic);
//! - the kernel-mode link, configured by `build.rs`.
//!
//! Off Windows this crate is empty: the simulator consumers load the same shell through
//! `ktimer_kmdf::DRIVER_ENTRY` on kernel-sim's KMDF model.
// Off Windows the crate is empty, and std supplies what an empty cdylib needs.
#![cfg_attr(windows, no_std)]

// wdk-panic 0.5.0's handler: in a release build, bug check 0x52504E43 ("RPNC") with the
// panic's file, line and column in the parameters; in a debug build (the default `cargo wdk
// build` profile) it first executes a breakpoint, which without an attached kernel debugger
// is bug check 0x1E (KMODE_EXCEPTION_NOT_HANDLED, exception 0x80000003). A panic is a bug in
// this driver; the driver code is written not to panic.
#[cfg(windows)]
extern crate wdk_panic;

#[cfg(windows)]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

#[cfg(windows)]
use ktimer_seam::wdf::{NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT};

/// `DriverEntry`, exported under that name: the KMDF shell's driver entry. `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Called once, by the kernel through `FxDriverEntry`, with the driver object and the
/// driver's registry path.
// SAFETY: `DriverEntry` is the symbol `FxDriverEntry` calls; nothing else in the image
// exports that name.
#[cfg(windows)]
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the kernel's own DriverEntry arguments, passed on unchanged, once.
    unsafe { ktimer_kmdf::driver_entry(driver, registry_path) }
}
