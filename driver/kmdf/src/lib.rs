//! The ktimer driver's KMDF side: the timer service (`ktimer-service`) hosted in the KMDF
//! shell (`ktimer-shell`). This crate is what makes the shell a timer driver, and all it
//! adds: the device's identity (names, security descriptor, interface GUID, pool tag, from
//! `ktimer-abi`), the binding of the service and its IOCTL dispatcher to the shell's
//! events ([`timer_logic`]), `DriverEntry` ([`driver_entry`], exported by the `.sys`
//! package) and, off Windows, the hooks tests use ([`sim_hooks`]).
//!
//! On the simulator the tests, the fuzzer, the benchmarks and `ktimer-test --sim` load the
//! driver through [`DRIVER_ENTRY`] on kernel-sim's KMDF model.
//!
//! | framework event | timer logic |
//! | --- | --- |
//! | `EvtDriverDeviceAdd` | `Service::new` (owned by the device context) |
//! | `EvtDeviceFileCreate` | `Service::open` → `FileHandle` in the file-object context |
//! | `EvtIoDeviceControl` | `dispatch::dispatch` |
//! | `EvtRequestCancel` | `dispatch::cancel_wait` (`Service::cancel_wait`) |
//! | `EvtFileCleanup` / `EvtFileClose` | `Service::cleanup` / `Service::close` |
//! | device `EvtCleanupCallback` | `Service::unload`, then drop |
//!
//! **Executed on a model of KMDF, never on Windows** (see `ktimer-shell`).

#![no_std]

// The simulator's test hooks are std code.
#[cfg(not(windows))]
extern crate std;

#[cfg(not(windows))]
pub mod sim_hooks;
pub mod timer_logic;

use ktimer_shell::{DriverEntry, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT};

pub use timer_logic::TimerLogic;

/// `DriverEntry` of ktimer: the shell's, hosting the timer service. `PASSIVE_LEVEL`.
///
/// # Safety
///
/// As [`ktimer_shell::driver_entry`]: called once per driver object, by the kernel
/// (through `FxDriverEntry` and the image's `DriverEntry`) or the simulated I/O manager,
/// with the driver object and the driver's registry path.
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: our caller's contract is the shell's.
    unsafe { ktimer_shell::driver_entry::<TimerLogic>(driver, registry_path) }
}

/// [`driver_entry`] as a value, for the simulated I/O manager
/// (`kernel_sim::wdf::Framework::load`).
pub const DRIVER_ENTRY: DriverEntry = driver_entry;
