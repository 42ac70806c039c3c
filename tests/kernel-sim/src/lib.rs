//! A user-mode model of the Windows kernel's timer, DPC and IRQL semantics, with the
//! misuse checks Driver Verifier and the kernel make (raised as simulated bug checks).
//!
//! The crate mirrors wdk-sys' module structure so the driver's seam is a list of `pub use`:
//! types and constants at the crate root, kernel routines in [`ntddk`]. The control API for
//! tests ([`Kernel`], [`Config`], [`Kernel::advance`], [`catch_bug_check`], pool accounting,
//! the event log) is also at the root. [`wdf`] is the KMDF model: the framework a KMDF
//! driver's callbacks run on (types at the root like wdk-sys', DDIs through
//! [`call_unsafe_wdf_function_binding!`]) and the simulated I/O and `PnP` managers that load
//! and drive the driver. docs/SIMULATOR.md describes what is modelled, the deterministic
//! scheduling rules and every verifier check.
//!
//! ```
//! use kernel_sim::{Config, Kernel, LARGE_INTEGER, KTIMER, ntddk};
//! let kernel = Kernel::new(Config::default());
//! let _bound = kernel.enter();
//! let mut timer = KTIMER::default();
//! let timer: *mut KTIMER = &mut timer;
//! // SAFETY: `timer` points to live storage that does not move while it is used.
//! unsafe {
//!     ntddk::KeInitializeTimer(timer);
//!     ntddk::KeSetTimer(timer, LARGE_INTEGER { QuadPart: -10_000 }, core::ptr::null_mut());
//! }
//! kernel.advance(std::time::Duration::from_millis(16));
//! // SAFETY: as above.
//! assert_eq!(unsafe { ntddk::KeReadStateTimer(timer) }, 1);
//! ```

mod addr_map;
pub mod bugcheck;
mod kernel;
pub mod ntddk;
mod signal;
mod trace;
mod types;
pub mod wdf;

pub use bugcheck::{BugCheck, catch_bug_check};
pub use kernel::{
    COALESCING_BOUNDARIES_MS, Clock, Config, DEFAULT_BOOT_SYSTEM_TIME, DEFAULT_TIME_INCREMENT,
    Entered, Execution, Kernel, PERFORMANCE_FREQUENCY, PoolStats, Stats, TagUsage, TimerExpiry,
    current_kernel_id, current_processor, in_callback, print, wall_time_budget,
};
pub use trace::{Event, ObjectId, TraceEvent};
pub use types::*;
pub use wdf::types::*;
