//! The Wine rig's stand-in for wdk-sys: the seam's kernel names bound to windows-sys, with
//! Wine's gaps and DPC semantics handled (binding.rs explains each). tests/wine/Cargo.toml
//! plugs it in with `[patch.crates-io]`, so the product crates, which name only wdk-sys,
//! build against it in this workspace and nowhere else. Off Windows the crate is empty.
#![cfg_attr(windows, no_std)]

#[cfg(windows)]
mod binding;

#[cfg(windows)]
pub use binding::*;
