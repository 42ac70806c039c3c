//! Compiles `driver/src/kmdf` (the KMDF shell, which the driver itself only builds for a
//! Windows target with the WDK) against stand-ins for windows-drivers-rs (`mocks/`) and the
//! real timer service of the `ktimer` crate, so that the shell's Rust (types, borrows,
//! `unsafe` blocks, the workspace lints) is checked on any host. It does not check the
//! shell against the real WDK bindings: only a Windows build does that.
#![no_std]

extern crate alloc;

// The shell names `crate::service`, `crate::ioctl` and `crate::kernel`.
pub use ktimer::{ioctl, kernel, service};

#[path = "../../../driver/src/kmdf/mod.rs"]
mod kmdf;
