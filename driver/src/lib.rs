//! ktimer: a KMDF driver that exposes one-shot and periodic kernel timers to user mode.
// The driver links no standard library, with one exception: a Windows build with
// panic=unwind. Only the test and bench profiles make one (Cargo ignores `panic = "abort"`
// there), as a dependency of test targets (`cargo test` or `--all-targets` at the root on a
// Windows host); it is never a driver, and a no_std cdylib cannot unwind. That build links
// std and leaves out wdk-panic, wdk-alloc (kmdf/mod.rs) and the kernel-mode link (build.rs).
#![cfg_attr(not(all(ktimer_seam = "wdk", panic = "unwind")), no_std)]

extern crate alloc;

// On the simulator the driver is ordinary user-mode code, so std supplies the allocator and
// the panic handler. In the real driver, wdk-alloc and wdk-panic do (see the KMDF shell).
#[cfg(ktimer_seam = "sim")]
extern crate std;

// The Wine test binding has no wdk-alloc/wdk-panic: its allocator, panic handler and C runtime
// symbols come from the Wine front end's runtime crate (tests/wine/rt explains why here).
#[cfg(ktimer_seam = "windows_sys")]
extern crate ktimer_wdm_rt;

/// Load-time start and unload-time stop of the seam's Wine test binding, for the WDM front
/// end in `tests/wine` (see `kernel::sys::windows_sys`).
#[cfg(ktimer_seam = "windows_sys")]
pub mod wine_binding {
    pub use crate::kernel::sys::windows_sys::{is_wine, start, stop};
}

pub mod ioctl;
pub mod kernel;
pub mod service;

// The KMDF shell: DriverEntry and the framework callbacks. On Windows it runs on KMDF
// (wdk-sys); on the simulator, on kernel-sim's KMDF model, through the same seam.
#[cfg(any(ktimer_seam = "sim", ktimer_seam = "wdk"))]
mod kmdf;

/// The driver's `DriverEntry`, for the simulated I/O manager (`kernel_sim::wdf::Framework::load`):
/// the same function the Windows image exports under that name.
#[cfg(ktimer_seam = "sim")]
pub use kmdf::{DRIVER_ENTRY, sim_hooks};
