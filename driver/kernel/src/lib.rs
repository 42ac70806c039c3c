//! The safe kernel layer: everything the driver needs from the kernel, as types that make
//! misuse a compile error (or, where the kernel's rules are dynamic, a handled case) instead
//! of a bug check.
//!
//! | module | owns |
//! | --- | --- |
//! | [`irql`] | `PassiveLevel` / `DispatchLevel` proof tokens |
//! | [`pool`] | `PoolBox`: tagged non-paged allocations, pinned storage |
//! | [`time`] | typed due times, periods and their one conversion to kernel units |
//! | [`clock`] | interrupt time, system time, tick length |
//! | [`timer`] | `Timer<C>`: KTIMER + KDPC with a safe callback and a waiting drop |
//! | [`hr_timer`] | `HighResolutionTimer<C>`: the `EX_TIMER` equivalent |
//! | [`spin_lock`] | `SpinLock<T>` over `KSPIN_LOCK`, for state shared with DPCs |
//! | [`deferred`] | freeing timers dropped above `PASSIVE_LEVEL`, later and safely |
//!
//! It reaches the kernel only through the seam (`ktimer-seam`, imported here as `sys`), and
//! needs no build script and no feature: the seam's binding follows the target. The safety
//! argument as a whole is in `docs/SAFETY.md`.
#![no_std]

extern crate alloc;
// The simulator binding keeps one deferred-teardown list per simulated kernel (deferred.rs).
#[cfg(not(windows))]
extern crate std;

use ktimer_seam as sys;

pub mod clock;
pub mod deferred;
pub mod hr_timer;
pub mod irql;
pub mod pool;
pub mod spin_lock;
pub mod time;
pub mod timer;

mod sync;

#[cfg(all(test, loom))]
mod loom_model;
