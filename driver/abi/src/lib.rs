//! The user/kernel contract of the ktimer driver, defined once and shared by the driver and
//! the companion app. `no_std`, no dependencies.
//!
//! What this crate owns:
//! - [`ioctl`]: the IOCTL codes, built like the SDK's `CTL_CODE`.
//! - [`device`]: the device interface GUID and the device/symbolic-link names.
//! - [`status`]: the NTSTATUS values the driver returns, and when.
//! - [`layout`]: the `#[repr(C)]` requests and responses, with compile-time layout checks.
//! - [`codec`]: validating decoders and encoders between those types and byte buffers.
//!
//! Every request starts with a [`layout::Header`] carrying [`ABI_VERSION`] and the request's
//! size; every response starts with a header carrying the driver's ABI version and the
//! response's size. All integers are in the machine's native byte order (the driver and the
//! app always run on the same machine). Times are in 100 ns units. See `docs/PROTOCOL.md`.
#![no_std]

pub mod codec;
pub mod device;
pub mod ioctl;
pub mod layout;
pub mod status;

pub use codec::{Decode, DecodeError, Encode};
pub use layout::*;

/// The version of this contract. A request whose header carries another version is rejected
/// with [`status::STATUS_REVISION_MISMATCH`]; [`ioctl::IOCTL_KTIMER_GET_INFO`] takes no request
/// so that any client can learn the driver's version.
pub const ABI_VERSION: u32 = 1;

/// An [`ExpiryRecord`]'s `expirations` when the run covered this many or more (the field
/// saturates, it never wraps): the flag that the count is a lower bound. The record's
/// `sequence` and the query's `expirations` are u64 and exact. A run covers at most one
/// expiration per clock tick since the previous run, so this needs a DPC left unrun for
/// 2^32 - 1 ticks (24.8 days at the shortest, 0.5 ms, tick). See docs/PROTOCOL.md.
pub const EXPIRATIONS_SATURATED: u32 = u32::MAX;
