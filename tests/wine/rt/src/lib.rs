//! The runtime a `no_std` Windows kernel image needs when it is built without the WDK (with
//! `windows-sys` and rust-lld), for ktimer's Wine test rig (`tests/wine`, see docs/WINE.md):
//! a global allocator over non-paged pool, a panic handler that bug-checks, and the symbols
//! the compiler and libcore expect from a C runtime (`_fltused`, `__CxxFrameHandler3`, the
//! `mem*` routines, `__chkstk`). The KMDF driver gets the same from wdk-alloc and wdk-panic.
//!
//! Package `ktimer` pulls this crate in with its `wdm-windows-sys` feature, not the front end
//! alone: Cargo builds every dependency's `cdylib` crate type too, and ktimer's `cdylib` is a
//! `no_std` link that needs a panic handler and an allocator of its own. Linked once, these
//! items serve both that by-product and the front end's `.sys`.
//!
//! Off Windows the crate is empty (it is a workspace member so that fmt and clippy cover it).
#![cfg_attr(windows, no_std)]

#[cfg(windows)]
mod kernel_runtime;
