//! ktimer's WDM front end: a test vehicle that loads the driver's portable core (timer
//! service, IOCTL dispatch entry, safe kernel layer on the rig's windows-sys binding of the
//! seam, tests/wine/wdk-sys) into
//! Wine, which implements the NT kernel API but has no KMDF. It is deliberately thin — the
//! product is the KMDF driver; this crate only turns IRPs into calls of the same dispatch
//! entry the KMDF shell uses. See docs/WINE.md and tests/wine/run.sh.
//!
//! Off Windows the crate is empty (it is a workspace member so that fmt and clippy cover it).
#![cfg_attr(windows, no_std)]

#[cfg(windows)]
extern crate alloc;

// The allocator, panic handler and C runtime symbols of this kernel image.
#[cfg(windows)]
extern crate ktimer_wdm_rt;

#[cfg(windows)]
mod dispatch;
#[cfg(windows)]
mod driver_entry;
#[cfg(windows)]
mod irp;
#[cfg(windows)]
mod request;
#[cfg(windows)]
mod unicode;
