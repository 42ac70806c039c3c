//! ktimer's WDM front end: a test vehicle that loads the driver's portable core (timer
//! service, IOCTL dispatch entry, safe kernel layer on the `windows_sys` seam binding) into
//! Wine, which implements the NT kernel API but has no KMDF. It is deliberately thin — the
//! product is the KMDF driver; this crate only turns IRPs into calls of the same dispatch
//! entry the KMDF shell uses. See docs/WINE.md and tests/wine/run.sh.
//!
//! Off Windows the crate is empty (it is a workspace member so that fmt and clippy cover it).
#![cfg_attr(windows, no_std)]

#[cfg(windows)]
extern crate alloc;

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
