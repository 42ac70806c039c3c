//! The atomics the kernel layer's own state machine uses, from one place: `core`'s in the
//! driver, [`loom`]'s when the crate is built with `--cfg loom` so the model checker can
//! explore every interleaving of that state machine (see `kernel::deferred`'s loom tests).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
