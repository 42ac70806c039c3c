//! The runtime a `no_std` Windows kernel image needs when it is built without the WDK (with
//! `windows-sys` and rust-lld), for ktimer's Wine test rig (`tests/wine`, see docs/WINE.md):
//! a global allocator over non-paged pool, a panic handler that bug-checks, and the symbols
//! the compiler and libcore expect from a C runtime (`_fltused`, `__CxxFrameHandler3`, the
//! `mem*` routines, `__chkstk`). The KMDF driver gets the same from wdk-alloc and wdk-panic.
//!
//! The front end (tests/wine/wdm) links it into its `.sys`.
//!
//! Off Windows the crate is empty (it is a workspace member so that fmt and clippy cover it).
#![cfg_attr(windows, no_std)]

#[cfg(windows)]
mod kernel_runtime;
