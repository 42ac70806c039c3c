//! The user/kernel contract of the ktimer driver, defined once and shared by the driver and
//! the companion app. `no_std`, no dependencies.
//!
//! What this crate owns:
//! - [`device`]: the device interface GUID and the device/symbolic-link names.
//! - [`ioctl`]: the IOCTL codes, built like the SDK's `CTL_CODE`.
//! - [`ping`]: the example IOCTL's request and response, their byte forms and layout checks.
//! - [`status`]: the NTSTATUS values the driver returns, and when.
//!
//! Every request starts with a version and its own size; every response with the
//! driver's version and its size. Integers are in the machine's native byte order (the
//! driver and the app always run on the same machine).
//!
//! To add an IOCTL: a code in [`ioctl`], its messages in a module like [`ping`] (with
//! their layout checks), its statuses in [`status`]'s table; then the driver's dispatcher
//! and the app's scenarios (README, "Adding an IOCTL").
#![no_std]

pub mod device;
pub mod ioctl;
pub mod ping;
pub mod status;

/// The version of this contract. A request that carries another version is refused with
/// [`status::STATUS_REVISION_MISMATCH`].
pub const ABI_VERSION: u32 = 1;
